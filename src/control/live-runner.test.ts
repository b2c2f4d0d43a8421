import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Registry } from 'prom-client';
import { ManualClock } from '../core/clock.ts';
import type { Request } from '../core/request.ts';
import { createAutoscaler } from './autoscalers/registry.ts';
import { TEST_VARIANT, testContext } from './autoscalers/test-support.ts';
import { registerRunnerMetrics } from './live-runner.ts';
import { type EngineLauncher, LocalActuator } from './local-actuator.ts';
import {
  fakeEngine,
  fixedLoop,
  flush,
  IDLE_BACKENDS,
  neverStartingLauncher,
  oneSlotActuator,
  testRunner,
} from './test-support.ts';

/** A model's pool of at most one engine, at zero, whose launches resolve at once. */
function zeroPool(model: string, keepAliveMs: number, loopReplicas = 0) {
  const clock = new ManualClock(0);
  const launched: number[] = [];
  const stopped: number[] = [];
  const launcher: EngineLauncher = {
    launch: async (index) => {
      launched.push(index);
      return fakeEngine(model, () => stopped.push(index));
    },
  };
  const actuator = oneSlotActuator(launcher, clock);
  let waiting = 0;
  const runner = testRunner({
    loop: fixedLoop(loopReplicas),
    actuator,
    model,
    intervalMs: 1000,
    clock,
    queued: () => waiting,
    scaleToZero: { keepAliveMs: () => keepAliveMs },
  });
  const setWaiting = (n: number) => {
    waiting = n;
  };
  return { clock, launched, stopped, actuator, runner, setWaiting };
}

const request = (model: string): Request =>
  ({ id: 'r', model, inputTokens: 10, arrivalMs: 0 }) as unknown as Request;

describe('LiveControlRunner, scale to zero', () => {
  it('a wake-up starts one engine at once, only when none is up or starting', async () => {
    const p = zeroPool('m', 5000);
    assert.equal(p.runner.desired, 0);
    p.runner.wake(2);
    assert.deepEqual(p.launched, [0]);
    assert.equal(p.runner.desired, 1);
    assert.match(p.runner.reason, /scale from zero: 2 request/);
    p.runner.wake(3);
    await flush();
    p.runner.wake(4);
    assert.deepEqual(p.launched, [0], 'starting, then ready: no second start');
  });

  it('keeps the engine through the keep-alive after the last request, then stops it', async () => {
    const p = zeroPool('m', 1500);
    const r = request('m');
    p.runner.arrived(r, 0);
    p.setWaiting(1);
    p.runner.wake(1, 0);
    await flush();
    p.setWaiting(0);
    p.runner.ended(r, true, 5, 400);
    p.clock.set(1000);
    p.runner.tick();
    assert.equal(p.runner.desired, 1, 'within the keep-alive, although the loop wants 0');
    assert.match(p.runner.reason, /keep-alive: 900 ms left/);
    p.clock.set(2000);
    p.runner.tick();
    assert.equal(p.runner.desired, 0);
    await flush();
    assert.deepEqual(p.stopped, [0]);
    assert.equal(p.actuator.active, 0);
    // Idle at zero: the next ticks start nothing, even for a loop that wants one.
    p.clock.set(3000);
    p.runner.tick();
    assert.deepEqual(p.launched, [0]);
  });

  it('requests at the host keep at least one whatever the loop says', () => {
    const p = zeroPool('m', 0);
    p.runner.arrived(request('m'), 10);
    p.setWaiting(1);
    p.clock.set(1000);
    p.runner.tick();
    assert.equal(p.runner.desired, 1);
    assert.deepEqual(p.launched, [0]);
  });

  it('exports one series per model when several runners share a registry', async () => {
    const a = zeroPool('a', 1000);
    const b = zeroPool('b', 1000);
    a.runner.wake(1);
    const registry = new Registry();
    registerRunnerMetrics(registry, [a.runner, b.runner]);
    const text = await registry.metrics();
    assert.match(text, /switchyard_desired_replicas\{model="a",role="both"\} 1/);
    assert.match(text, /switchyard_desired_replicas\{model="b",role="both"\} 0/);
    assert.match(text, /switchyard_replicas\{model="a",role="both",phase="starting"\} 1/);
  });
});

describe('LiveControlRunner, a cold start under load', () => {
  it("APA sizes the pool from the gateway's held requests while none is ready", () => {
    const clock = new ManualClock(0);
    const launched: number[] = [];
    // Engines that never finish starting: the whole test is one cold start.
    const launcher = neverStartingLauncher(launched);
    const actuator = new LocalActuator({
      variant: TEST_VARIANT,
      maxInstances: 16,
      launcher,
      clock,
      backends: IDLE_BACKENDS,
    });
    const context = testContext({ minReplicas: 0, maxReplicas: 16, intervalMs: 1000 });
    let held = 0;
    const runner = testRunner({
      loop: createAutoscaler('apa', context),
      actuator,
      model: TEST_VARIANT.model,
      intervalMs: 1000,
      clock,
      queued: () => held,
      scaleToZero: { keepAliveMs: () => 300_000 },
    });
    const desired: number[] = [];
    for (let second = 0; second < 5; second++) {
      // 20 requests a second of 8,000-token prompts, all held by the gateway's buffer.
      for (let k = 0; k < 20; k++) {
        const atMs = second * 1000 + k * 50;
        runner.arrived(
          { id: `r${held}`, model: TEST_VARIANT.model, inputTokens: 8000, arrivalMs: atMs } as Request,
          atMs,
        );
        held++;
        runner.wake(held, atMs);
      }
      clock.set((second + 1) * 1000);
      runner.tick();
      desired.push(runner.desired);
    }
    // 20, 40, ... 100 held x 8,000 tokens over one H100's 419,648-token cache, at 0.5 per replica:
    // 1, 2, 3, 4, 4 instances wanted, each step at most doubling what is on the way.
    assert.deepEqual(desired, [1, 2, 3, 4, 4]);
    assert.equal(launched.length, 4);
    assert.match(runner.reason, /apa .*ready 0, current 4, from 100 request\(s\) held at the host/);
  });
});
