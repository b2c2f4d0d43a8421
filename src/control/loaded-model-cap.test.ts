import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Registry } from 'prom-client';
import { ManualClock } from '../core/clock.ts';
import type { Request } from '../core/request.ts';
import type { LiveControlRunner } from './live-runner.ts';
import { LoadedModelCap } from './loaded-model-cap.ts';
import type { LaunchedEngine } from './local-actuator.ts';
import type { EvictionPolicy } from './serverless/live-eviction.ts';
import { fakeEngine, fixedLoop, flush, oneSlotActuator, testRunner } from './test-support.ts';

/**
 * Models at zero behind one cap, each a real runner and actuator of one slot. A launch completes
 * when the test says (`ready`), so start-up times are what the test advances the clock by.
 */
function node(models: readonly string[], maxLoadedModels: number, eviction: EvictionPolicy) {
  const clock = new ManualClock(1000);
  const cap = new LoadedModelCap({ maxLoadedModels, eviction });
  const started: string[] = [];
  const stopped: string[] = [];
  const pendingLaunch = new Map<string, (e: LaunchedEngine) => void>();
  const waiting = new Map<string, number>();
  const runners = new Map<string, LiveControlRunner>();
  for (const model of models) {
    const actuator = oneSlotActuator(
      {
        launch: () => {
          started.push(model);
          return new Promise((resolve) => pendingLaunch.set(model, resolve));
        },
      },
      clock,
    );
    const runner = testRunner({
      loop: fixedLoop(0, 'zero'),
      actuator,
      model,
      intervalMs: 1000,
      clock,
      queued: () => waiting.get(model) ?? 0,
      scaleToZero: {
        keepAliveMs: () => 60_000,
        admit: (nowMs) => cap.admit(model, nowMs),
        stoppedIdle: (nowMs) => cap.unloadedIdle(model, nowMs),
      },
    });
    runners.set(model, runner);
    cap.add({
      model,
      loaded: () => runner.loaded,
      inSystem: () => runner.inSystem,
      waiting: () => waiting.get(model) ?? 0,
      lastUsedMs: () => runner.lastUsedMs,
      startupMs: () => actuator.lastStartupMs,
      unload: (reason, nowMs) => runner.unload(reason, nowMs),
      wake: (n, nowMs) => runner.wake(n, nowMs),
    });
  }
  const r = (m: string) => runners.get(m) as LiveControlRunner;
  const requests = new Map<string, Request[]>();
  /** A request for `m` arrives; held (and the model woken) while `m` has no engine. */
  const arrive = (m: string) => {
    const req = {
      id: `r${clock.nowMs()}`,
      model: m,
      inputTokens: 10,
      arrivalMs: clock.nowMs(),
    } as unknown as Request;
    requests.set(m, [...(requests.get(m) ?? []), req]);
    r(m).arrived(req, clock.nowMs());
    cap.arrived(m, clock.nowMs());
    if (!r(m).loaded) {
      waiting.set(m, (waiting.get(m) ?? 0) + 1);
      r(m).wake(waiting.get(m) as number, clock.nowMs());
    }
  };
  /** `m`'s engine comes up `startupMs` after its start; its held requests go on. */
  const ready = async (m: string, startupMs: number) => {
    clock.advance(startupMs);
    const resolve = pendingLaunch.get(m);
    assert.ok(resolve !== undefined, `${m} is starting`);
    pendingLaunch.delete(m);
    resolve(fakeEngine(m, () => stopped.push(m)));
    await flush();
    waiting.set(m, 0);
  };
  /** Every request of `m` ends. */
  const finish = (m: string) => {
    for (const req of requests.get(m) ?? []) r(m).ended(req, true, 4, clock.nowMs());
    requests.set(m, []);
    cap.retry(clock.nowMs());
  };
  return { clock, cap, started, stopped, arrive, ready, finish, r };
}

describe('LoadedModelCap', () => {
  it('starts models freely under the cap, then evicts the least recently used idle one', async () => {
    const n = node(['a', 'b', 'c'], 2, 'lru');
    n.arrive('a');
    await n.ready('a', 500);
    n.finish('a');
    n.clock.advance(100);
    n.arrive('b');
    await n.ready('b', 500);
    n.finish('b');
    assert.deepEqual(n.cap.loadedModels(), ['a', 'b']);
    n.clock.advance(100);
    n.arrive('c');
    assert.deepEqual(n.started, ['a', 'b', 'c']);
    await flush();
    assert.deepEqual(n.stopped, ['a'], 'a was used least recently');
    assert.deepEqual(n.cap.loadedModels(), ['b', 'c']);
    assert.deepEqual(n.cap.evictions(), { lru: 1, 'cost-aware': 0, 'keep-alive': 0 });
    const stats = n.cap.stats(n.clock.nowMs()) as { recentEvictions: { model: string; for: string }[] };
    assert.equal(stats.recentEvictions[0]?.model, 'a');
    assert.equal(stats.recentEvictions[0]?.for, 'c');
  });

  it('cost-aware keeps the model slow to reload and popular, where LRU would stop it', async () => {
    const n = node(['a', 'b', 'c'], 2, 'cost-aware');
    n.arrive('a');
    await n.ready('a', 3000);
    for (let k = 0; k < 5; k++) n.arrive('a');
    n.finish('a');
    n.clock.advance(100);
    n.arrive('b');
    await n.ready('b', 500);
    n.finish('b');
    n.clock.advance(100);
    n.arrive('c');
    await flush();
    assert.deepEqual(n.stopped, ['b'], 'b: 500 ms x 1 request beats a: 3000 ms x 6 requests');
    assert.deepEqual(n.cap.evictions(), { lru: 0, 'cost-aware': 1, 'keep-alive': 0 });
  });

  it('holds a start while every loaded model is busy, and makes it when one turns idle', async () => {
    const n = node(['a', 'b', 'c'], 2, 'lru');
    n.arrive('a');
    await n.ready('a', 500);
    n.arrive('b');
    await n.ready('b', 500);
    n.arrive('c');
    assert.deepEqual(n.started, ['a', 'b'], 'a and b have requests in flight: c waits');
    assert.deepEqual((n.cap.stats(n.clock.nowMs()) as { waiting: string[] }).waiting, ['c']);
    // A tick of c's runner asks again (its requests are held): still refused.
    n.r('c').tick(n.clock.nowMs());
    assert.deepEqual(n.started, ['a', 'b']);
    assert.equal(n.r('c').desired, 0);
    n.clock.advance(50);
    n.finish('b');
    await flush();
    assert.deepEqual(n.stopped, ['b'], 'b turned idle first');
    assert.deepEqual(n.started, ['a', 'b', 'c']);
    assert.deepEqual(n.cap.loadedModels(), ['a', 'c']);
  });

  it('serves waiting models oldest first, one per freed slot', async () => {
    const n = node(['a', 'b', 'c', 'd'], 1, 'lru');
    n.arrive('a');
    await n.ready('a', 500);
    n.arrive('c');
    n.clock.advance(10);
    n.arrive('b');
    n.clock.advance(10);
    // A later arrival for b wakes it again: it still waits behind c.
    n.arrive('b');
    assert.deepEqual(n.started, ['a']);
    n.finish('a');
    await flush();
    assert.deepEqual(n.started, ['a', 'c'], 'c waited longest');
    n.cap.retry(n.clock.nowMs());
    assert.deepEqual(n.started, ['a', 'c'], 'c is starting with its requests: b goes on waiting');
  });

  it('counts a keep-alive stop and exports the gauge and counter', async () => {
    const n = node(['a', 'b'], 1, 'lru');
    const registry = new Registry();
    n.cap.registerMetrics(registry);
    n.arrive('a');
    await n.ready('a', 500);
    n.finish('a');
    n.clock.advance(60_001);
    n.r('a').tick(n.clock.nowMs());
    await flush();
    assert.deepEqual(n.stopped, ['a']);
    assert.deepEqual(n.cap.evictions(), { lru: 0, 'cost-aware': 0, 'keep-alive': 1 });
    const text = await registry.metrics();
    assert.match(text, /switchyard_loaded_models 0/);
    assert.match(text, /switchyard_model_evictions_total\{model="a",reason="keep-alive"\} 1/);
  });

  it('refuses a cap below 1', () => {
    assert.throws(() => new LoadedModelCap({ maxLoadedModels: 0, eviction: 'lru' }), /maxLoadedModels 0/);
  });
});
