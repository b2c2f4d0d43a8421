import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { TEST_VARIANT } from '../control/autoscalers/test-support.ts';
import { type LaunchedEngine, LocalActuator } from '../control/local-actuator.ts';
import {
  resolveLiveSleep,
  SLEEPERS_MAX_DEFAULT,
  SLEEPERS_PER_MODEL_MAX_DEFAULT,
  SleeperCount,
} from '../control/serverless/live-sleep.ts';
import {
  BOOT_INTO_SLEEP_DEFAULT,
  bootQueue,
  LONE_SLEEP_MAX_MS_DEFAULT,
} from '../control/serverless/sleep.ts';
import { ManualClock } from '../core/clock.ts';
import { SwitchyardError } from '../core/errors.ts';
import { parseGatewayConfig } from '../gateway/config.ts';
import { autoscaleSettings } from './serve-autoscale.ts';
import { SleepBooter } from './serve-sleep.ts';

const config = parseGatewayConfig({}, {});
const refused = (f: () => unknown, param: string) =>
  assert.throws(
    f,
    (e: unknown) =>
      e instanceof SwitchyardError && e.code === 'SY_ERR_INVALID_ARGUMENT' && e.details?.['param'] === param,
  );

describe('serve --sleep settings', () => {
  it('default to the named bounds, and take the flags', () => {
    const on = autoscaleSettings({ autoscaler: 'static', minInstances: 0, sleep: true }, config, 4);
    assert.deepEqual(on?.sleep, {
      sleepersPerModelMax: SLEEPERS_PER_MODEL_MAX_DEFAULT,
      sleepersMax: SLEEPERS_MAX_DEFAULT,
      sleepMaxMs: LONE_SLEEP_MAX_MS_DEFAULT,
      boot: BOOT_INTO_SLEEP_DEFAULT,
      retarget: false,
    });
    const flagged = autoscaleSettings(
      {
        autoscaler: 'static',
        minInstances: 0,
        sleep: true,
        maxSleepers: 3,
        maxSleepersPerModel: 2,
        sleepMaxMs: 5,
      },
      config,
      4,
    );
    assert.deepEqual(flagged?.sleep, {
      sleepersPerModelMax: 2,
      sleepersMax: 3,
      sleepMaxMs: 5,
      boot: false,
      retarget: false,
    });
    assert.equal(autoscaleSettings({ autoscaler: 'static', minInstances: 0 }, config, 4)?.sleep, undefined);
  });

  it('refuses --sleep without models at zero, and its bounds without it; takes llama engines', () => {
    refused(
      () => autoscaleSettings({ autoscaler: 'static', minInstances: 1, sleep: true }, config, 4),
      'sleep',
    );
    assert.ok(
      autoscaleSettings({ autoscaler: 'static', minInstances: 0, sleep: true, engine: 'llama' }, config, 1)
        ?.sleep,
    );
    refused(
      () => autoscaleSettings({ autoscaler: 'static', minInstances: 0, maxSleepers: 2 }, config, 4),
      'max-sleepers',
    );
    refused(() => autoscaleSettings({ sleep: true }, config, 4), 'sleep');
  });

  it('takes sleep mode from the config block, a flag winning over the same field', () => {
    const withBlock = (sleep: unknown) =>
      parseGatewayConfig({ autoscaler: { name: 'static', minInstances: 0, sleep } }, {});
    assert.deepEqual(autoscaleSettings({}, withBlock(true), 4)?.sleep, {
      sleepersPerModelMax: SLEEPERS_PER_MODEL_MAX_DEFAULT,
      sleepersMax: SLEEPERS_MAX_DEFAULT,
      sleepMaxMs: LONE_SLEEP_MAX_MS_DEFAULT,
      boot: BOOT_INTO_SLEEP_DEFAULT,
      retarget: false,
    });
    assert.equal(autoscaleSettings({}, withBlock(false), 4)?.sleep, undefined);
    const bounded = withBlock({ maxSleepers: 5, sleepMaxMs: 9000 });
    assert.deepEqual(autoscaleSettings({}, bounded, 4)?.sleep, {
      sleepersPerModelMax: SLEEPERS_PER_MODEL_MAX_DEFAULT,
      sleepersMax: 5,
      sleepMaxMs: 9000,
      boot: false,
      retarget: false,
    });
    assert.deepEqual(autoscaleSettings({ maxSleepers: 2 }, bounded, 4)?.sleep?.sleepersMax, 2);
    // The flag turns it on over a config that leaves it off; bounds need one or the other.
    assert.ok(autoscaleSettings({ sleep: true }, withBlock(false), 4)?.sleep);
    refused(() => autoscaleSettings({ maxSleepers: 2 }, withBlock(false), 4), 'max-sleepers');
    // Models at zero only, wherever sleep mode was asked for.
    const warm = parseGatewayConfig({ autoscaler: { name: 'static', minInstances: 1, sleep: true } }, {});
    refused(() => autoscaleSettings({}, warm, 4), 'sleep');
    // The refusal names where sleep mode was asked for: the config file here, no flag.
    assert.throws(() => autoscaleSettings({}, warm, 4), /autoscaler\.sleep/);
    assert.throws(() => autoscaleSettings({ maxSleepers: 2 }, withBlock(false), 4), /autoscaler\.sleep/);
    assert.throws(() => withBlock({ maxSleepers: 0 }), /maxSleepers/);
    assert.throws(() => withBlock({ sleepers: 2 }), /sleepers/);
  });

  it('boot into sleep: off by default with sleep mode; on by --boot-sleep or the block, refused without sleep mode', () => {
    const withBlock = (sleep: unknown) =>
      parseGatewayConfig({ autoscaler: { name: 'static', minInstances: 0, sleep } }, {});
    const zero = { autoscaler: 'static', minInstances: 0 } as const;
    // Opt-in, as in the twin (BOOT_INTO_SLEEP_DEFAULT false: the 8-seed figures in its README).
    assert.equal(BOOT_INTO_SLEEP_DEFAULT, false);
    assert.equal(autoscaleSettings({ ...zero, sleep: true }, config, 4)?.sleep?.boot, false);
    assert.equal(autoscaleSettings({ ...zero, sleep: true, bootSleep: true }, config, 4)?.sleep?.boot, true);
    assert.equal(autoscaleSettings({}, withBlock(true), 4)?.sleep?.boot, false);
    assert.equal(autoscaleSettings({}, withBlock({ boot: true }), 4)?.sleep?.boot, true);
    assert.equal(autoscaleSettings({}, withBlock({ boot: false }), 4)?.sleep?.boot, false);
    // The flag wins over the block's field.
    assert.equal(autoscaleSettings({ bootSleep: true }, withBlock({ boot: false }), 4)?.sleep?.boot, true);
    // Without sleep mode (no --sleep, no block), or without a loop, --boot-sleep is refused.
    refused(() => autoscaleSettings({ ...zero, bootSleep: true }, config, 4), 'boot-sleep');
    refused(() => autoscaleSettings({ bootSleep: true }, config, 4), 'boot-sleep');
    refused(() => autoscaleSettings({ bootSleep: true }, withBlock(false), 4), 'boot-sleep');
    assert.throws(() => autoscaleSettings({ bootSleep: true }, config, 4), /--boot-sleep needs --autoscaler/);
    assert.throws(
      () => autoscaleSettings({ ...zero, bootSleep: true }, config, 4),
      /--boot-sleep needs --sleep/,
    );
    assert.throws(() => withBlock({ boot: 'no' }), /autoscaler\.sleep/);
  });

  it("re-target: off by default; on by --retarget or the block's retarget, refused without sleep mode", () => {
    const withBlock = (sleep: unknown) =>
      parseGatewayConfig({ autoscaler: { name: 'static', minInstances: 0, sleep } }, {});
    const zero = { autoscaler: 'static', minInstances: 0 } as const;
    assert.equal(autoscaleSettings({ ...zero, sleep: true }, config, 4)?.sleep?.retarget, false);
    assert.equal(
      autoscaleSettings({ ...zero, sleep: true, retarget: true }, config, 4)?.sleep?.retarget,
      true,
    );
    assert.equal(autoscaleSettings({}, withBlock({ retarget: true }), 4)?.sleep?.retarget, true);
    assert.equal(
      autoscaleSettings({ retarget: true }, withBlock({ retarget: false }), 4)?.sleep?.retarget,
      true,
    );
    refused(() => autoscaleSettings({ ...zero, retarget: true }, config, 4), 'retarget');
    refused(() => autoscaleSettings({ retarget: true }, config, 4), 'retarget');
    assert.throws(
      () => autoscaleSettings({ ...zero, retarget: true }, config, 4),
      /--retarget needs --sleep/,
    );
    assert.throws(() => withBlock({ retarget: 'yes' }), /autoscaler\.sleep/);
  });
});

describe('SleepBooter', () => {
  /** Pools at zero with real actuators whose launches the test resolves by hand. */
  function booterSetup(names: readonly string[], cap?: { max: number; loaded: string[]; blocked: number }) {
    const count = new SleeperCount(resolveLiveSleep({ sleepersMax: 8, boot: true }));
    const launches = new Map<string, (e: LaunchedEngine) => void>();
    const held = new Map<string, number>();
    const pools = names.map((model) => ({
      model,
      maxInstances: 1,
      held: () => held.get(model) ?? 0,
      actuator: new LocalActuator({
        variant: TEST_VARIANT,
        maxInstances: 1,
        clock: new ManualClock(0),
        backends: { add() {}, setDraining() {}, inFlight: () => 0, remove() {} },
        launcher: { launch: () => new Promise((resolve) => launches.set(model, resolve)) },
        sleep: { take: () => count.take(model, 1), release: () => count.release(model), sleepMaxMs: 60_000 },
      }),
    }));
    const bootCap =
      cap === undefined
        ? undefined
        : { maxLoadedModels: cap.max, loadedModels: () => cap.loaded, blockedCount: cap.blocked };
    const booter = new SleepBooter(pools, count, bootCap, () => 0);
    const engine = (pid: number): LaunchedEngine => ({
      pid,
      url: `http://127.0.0.1:${pid}`,
      kvEvents: null,
      model: 'm',
      stop: async () => {},
      sleep: async () => {},
      wakeUp: async () => {},
    });
    const finish = async (model: string) => {
      launches.get(model)?.(engine(1));
      for (let i = 0; i < 5; i++) await new Promise((resolve) => setImmediate(resolve));
    };
    const booted = () => pools.filter((p) => p.actuator.bootCounts.boots > 0).map((p) => p.model);
    return { pools, booter, count, held, finish, booted };
  }

  it('boots every model at once without a cap, then has nothing left to do', async () => {
    const { booter, finish, booted } = booterSetup(['a', 'b', 'c']);
    assert.equal(booter.pass(0), true);
    assert.deepEqual(booted(), ['a', 'b', 'c']);
    for (const m of ['a', 'b', 'c']) await finish(m);
    assert.equal(booter.pass(0), false, 'done');
  });

  it("under a cap boots into its free room one at a time in bootQueue's order", async () => {
    const { booter, finish, booted } = booterSetup(['a', 'b', 'c'], { max: 2, loaded: ['x'], blocked: 0 });
    const order = bootQueue(['a', 'b', 'c'].map((id) => ({ id, everStarted: false, active: 0, held: 0 })));
    booter.pass(0);
    assert.deepEqual(booted(), [order[0]]);
    booter.pass(0);
    assert.deepEqual(booted(), [order[0]], 'the room is taken while it launches');
    await finish(order[0] as string);
    booter.pass(0);
    assert.deepEqual(booted().sort(), [order[0], order[1]].sort());
  });

  it('waits while demand waits, and a demand start under the cap abandons boots over it', async () => {
    const { pools, booter, held, booted } = booterSetup(['a', 'b'], { max: 1, loaded: [], blocked: 0 });
    held.set('a', 1);
    assert.equal(booter.pass(0), true, 'demand waits: not done');
    assert.deepEqual(booted(), []);
    held.set('a', 0);
    booter.pass(0);
    const [first] = booted();
    const other = first === 'a' ? 'b' : 'a';
    booter.makeRoomFor(other, 0);
    const p = pools.find((x) => x.model === first);
    assert.deepEqual([p?.actuator.bootCounts.bootsAbandoned, p?.actuator.booting], [1, 0]);
  });
});
