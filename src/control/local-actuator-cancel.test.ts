/**
 * LocalActuator: a start, boot or shutdown that no longer wants a launch in progress aborts it
 * (the launcher's signal), instead of waiting for the engine to finish loading its model and only
 * then stopping it. A launch here never completes on its own: it ends only when aborted, as a
 * large model's load would outlast the test.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ManualClock } from '../core/clock.ts';
import { TEST_VARIANT } from './autoscalers/test-support.ts';
import {
  type BackendPool,
  type EngineLauncher,
  type LaunchedEngine,
  LocalActuator,
} from './local-actuator.ts';
import type { ControlDecision } from './types.ts';

/** A launcher whose launches load forever: each rejects only when its signal aborts. */
class EndlessLauncher implements EngineLauncher {
  readonly signals: (AbortSignal | undefined)[] = [];
  launch(_index: number, signal?: AbortSignal): Promise<LaunchedEngine> {
    this.signals.push(signal);
    return new Promise((_, reject) => {
      signal?.addEventListener('abort', () => reject(new Error('engine start cancelled')), { once: true });
    });
  }
}

const pool: BackendPool = {
  add: () => {},
  setDraining: () => {},
  inFlight: () => 0,
  remove: () => {},
};

const want = (replicas: number): ControlDecision => ({
  targets: [{ variant: TEST_VARIANT, replicas }],
  reason: 'test',
});

function setup(sleep = false) {
  const launcher = new EndlessLauncher();
  const clock = new ManualClock(0);
  const actuator = new LocalActuator({
    variant: TEST_VARIANT,
    maxInstances: 2,
    launcher,
    backends: pool,
    clock,
    ...(sleep ? { sleep: { take: () => true, release: () => {}, sleepMaxMs: 60_000 } } : {}),
  });
  return { launcher, actuator };
}

describe('LocalActuator cancels launches in progress', () => {
  it('close() aborts a start still loading and resolves without waiting for it', async () => {
    const { launcher, actuator } = setup();
    actuator.apply('m', want(1), 0);
    assert.equal(launcher.signals[0]?.aborted, false);
    // Before the launcher had a signal, close() awaited this launch forever.
    await actuator.close();
    assert.equal(launcher.signals[0]?.aborted, true);
  });

  it('a start the loop no longer wants is aborted, and its slot is free again once it ended', async () => {
    const { launcher, actuator } = setup();
    actuator.apply('m', want(2), 0);
    actuator.apply('m', want(1), 1);
    assert.deepEqual(
      launcher.signals.map((s) => s?.aborted),
      [false, true],
    );
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(actuator.counts().stopped, 1);
    await actuator.close();
  });

  it('an abandoned boot into sleep is aborted', async () => {
    const { launcher, actuator } = setup(true);
    assert.equal(actuator.boot(0), true);
    assert.equal(actuator.abandonBoot(1, 'test'), true);
    assert.equal(launcher.signals[0]?.aborted, true);
    await actuator.close();
  });
});
