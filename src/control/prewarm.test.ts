import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ManualClock } from '../core/clock.ts';
import type { Request } from '../core/request.ts';
import type { EngineLauncher } from './local-actuator.ts';
import { prewarmVerdict } from './prewarm.ts';
import { ArrivalHistory } from './serverless/forecast.ts';
import { fakeEngine, fixedLoop, flush, oneSlotActuator, testRunner } from './test-support.ts';

const PERIOD_MS = 60_000;
/** A slow start-up (a large model): a third of the period. */
const STARTUP_MS = 20_000;
const KEEP_ALIVE_MS = 10_000;
const TICK_MS = 1000;

const request = (k: number): Request =>
  ({ id: `r${k}`, model: 'm', inputTokens: 10, arrivalMs: k * PERIOD_MS }) as unknown as Request;

/** A model at zero whose launches resolve at once, its runner pre-warming with a fixed start-up. */
function pool(prewarm: boolean, roomFor?: () => boolean) {
  const clock = new ManualClock(0);
  const launchedAtMs: number[] = [];
  const launcher: EngineLauncher = {
    launch: async () => {
      launchedAtMs.push(clock.nowMs());
      return fakeEngine('m');
    },
  };
  const actuator = oneSlotActuator(launcher, clock);
  const runner = testRunner({
    loop: fixedLoop(0),
    actuator,
    model: 'm',
    intervalMs: TICK_MS,
    clock,
    queued: () => 0,
    scaleToZero: {
      keepAliveMs: () => KEEP_ALIVE_MS,
      ...(prewarm
        ? { prewarm: { startupMs: () => STARTUP_MS, ...(roomFor === undefined ? {} : { roomFor }) } }
        : {}),
    },
  });
  return { clock, launchedAtMs, actuator, runner };
}

/**
 * Drives `p` through `cycles` requests, one every PERIOD_MS (each 100 ms long), ticking every
 * TICK_MS; a request that finds no engine wakes the runner as the gateway's buffer would. Returns,
 * per request, whether an engine was already starting or up when it arrived.
 */
async function periodic(p: ReturnType<typeof pool>, cycles: number): Promise<boolean[]> {
  const warm: boolean[] = [];
  for (let k = 0; k < cycles; k++) {
    const atMs = k * PERIOD_MS;
    for (let t = p.clock.nowMs() + TICK_MS; t < atMs; t += TICK_MS) {
      p.clock.set(t);
      p.runner.tick(t);
      await flush();
    }
    p.clock.set(atMs);
    const r = request(k);
    warm.push(p.actuator.active > 0);
    p.runner.arrived(r, atMs);
    p.runner.wake(1, atMs);
    await flush();
    p.clock.set(atMs + 100);
    p.runner.ended(r, true, 4, atMs + 100);
  }
  return warm;
}

describe('live pre-warming (forecast from the twin policy)', () => {
  it('starts a periodic model ahead of its request once its history can forecast it', async () => {
    const p = pool(true);
    const warm = await periodic(p, 8);
    // The first requests are cold (no history); from the fifth on (4 gaps) each finds an engine.
    assert.deepEqual(warm, [false, false, false, false, false, true, true, true]);
    assert.equal(p.runner.prewarms, 3);
    // Each pre-warm came after the keep-alive had stopped the engine, early enough for its start-up.
    const prewarmsAtMs = p.launchedAtMs.filter((t) => t % PERIOD_MS !== 0);
    assert.equal(prewarmsAtMs.length, 3);
    for (const t of prewarmsAtMs) {
      const beforeNextMs = PERIOD_MS - (t % PERIOD_MS);
      assert.ok(beforeNextMs >= STARTUP_MS, `pre-warmed ${beforeNextMs} ms ahead, start-up ${STARTUP_MS}`);
      assert.ok(t % PERIOD_MS > KEEP_ALIVE_MS, 'not before the keep-alive stopped it');
    }
    assert.match(p.runner.reason, /pre-warm|keep-alive|scale from zero|loop/);
  });

  it('does nothing without --prewarm or without room under the cap, and pre-warms once per idle period when no request comes', async () => {
    const off = pool(false);
    assert.deepEqual(await periodic(off, 7), [false, false, false, false, false, false, false]);
    assert.equal(off.runner.prewarms, 0);
    // A cap on loaded models with no free slot: a forecast alone never starts (or evicts) anything.
    const full = pool(true, () => false);
    assert.deepEqual(await periodic(full, 7), [false, false, false, false, false, false, false]);
    assert.equal(full.runner.prewarms, 0);

    const p = pool(true);
    await periodic(p, 6);
    const before = p.runner.prewarms;
    // The seventh request never comes: one pre-warm, stopped after its keep-alive, not repeated.
    for (let t = p.clock.nowMs() + TICK_MS; t < 9 * PERIOD_MS; t += TICK_MS) {
      p.clock.set(t);
      p.runner.tick(t);
      await flush();
    }
    assert.equal(p.runner.prewarms, before + 1);
    assert.equal(p.actuator.active, 0, 'stopped after the keep-alive counted from the pre-warm');
  });

  it('the rule needs a measured start-up, enough gaps, and a model at rest', () => {
    const arrivals = new ArrivalHistory();
    for (let k = 0; k < 6; k++) arrivals.record(k * PERIOD_MS);
    const at = {
      model: 'm',
      arrivals,
      active: 0,
      inSystem: 0,
      lastUsedMs: 5 * PERIOD_MS,
      intervalMs: TICK_MS,
    };
    const nowMs = 5 * PERIOD_MS + 45_000;
    assert.equal(prewarmVerdict({ ...at, startupMs: STARTUP_MS }, nowMs).start, true);
    assert.equal(prewarmVerdict({ ...at, startupMs: undefined }, nowMs).start, false);
    assert.equal(prewarmVerdict({ ...at, startupMs: STARTUP_MS, active: 1 }, nowMs).start, false);
    assert.equal(prewarmVerdict({ ...at, startupMs: STARTUP_MS }, nowMs, { gapsMin: 6 }).start, false);
    // Too early in the gap: the forecast does not reach the next request.
    assert.equal(prewarmVerdict({ ...at, startupMs: STARTUP_MS }, 5 * PERIOD_MS + 15_000).start, false);
  });
});
