import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ManualClock } from '../core/clock.ts';
import type { Request } from '../core/request.ts';
import { TEST_VARIANT } from './autoscalers/test-support.ts';
import { LiveControlRunner } from './live-runner.ts';
import { LocalActuator } from './local-actuator.ts';
import { neverStartingLauncher } from './test-support.ts';
import { TrafficWindowAccumulator } from './traffic-window.ts';
import type { ControlLoop, ControlObservation } from './types.ts';

describe('TrafficWindowAccumulator', () => {
  it('integrates concurrency over the window whatever the report order', () => {
    const w = new TrafficWindowAccumulator({}, 0);
    // One request in for the whole second, one for its second half; the end reported before the arrival.
    w.arrival(100, 0);
    w.completion(50, 10, 20, 1000);
    w.arrival(300, 500);
    const window = w.close(1000, 3);
    assert.equal(window.meanConcurrency, 1.5);
    assert.equal(window.arrivals, 2);
    assert.equal(window.meanInputTokens, 200);
    assert.equal(window.completions, 1);
    assert.equal(window.meanOutputTokens, 20);
    assert.equal(window.queuedAtEnd, 3);
    assert.ok(Number.isNaN(window.sloAttainment), 'no SLO: no attainment');
    // The request still in the system carries into the next window.
    assert.equal(w.inSystem, 1);
    assert.equal(w.close(2000, 0).meanConcurrency, 1);
  });

  it('measures attainment against the objectives and keeps a bounded history', () => {
    const w = new TrafficWindowAccumulator({ ttftMs: 100, tpotMs: 20 }, 0, 2);
    for (const [ttft, tpot] of [
      [50, 10],
      [150, 10],
      [50, 30],
      [90, 20],
    ] as const) {
      w.arrival(10, 0);
      w.completion(ttft, tpot, 5, 10);
    }
    w.failure(10);
    const window = w.close(100, 0);
    assert.equal(window.sloAttainment, 0.5);
    assert.equal(window.failures, 1);
    assert.equal(window.tpotMsMean, 17.5);
    w.close(200, 0);
    w.close(300, 0);
    assert.deepEqual(
      w.history.map((h) => h.startMs),
      [100, 200],
    );
  });
});

describe('LiveControlRunner', () => {
  it('hands the loop a window of what the tap heard and applies its decision', () => {
    const clock = new ManualClock(0);
    const launched: number[] = [];
    const launcher = neverStartingLauncher(launched);
    const actuator = new LocalActuator({
      variant: TEST_VARIANT,
      maxInstances: 3,
      launcher,
      clock,
      backends: { add() {}, setDraining() {}, inFlight: () => 0, remove() {} },
      initial: [{ url: 'http://127.0.0.1:1', kvEvents: null, model: 'm', pid: 1, stop: async () => {} }],
    });
    const seen: ControlObservation[] = [];
    const loop: ControlLoop = {
      name: 'scripted',
      decide(o) {
        seen.push(o);
        return { targets: [{ variant: TEST_VARIANT, replicas: 2 }], reason: 'two please' };
      },
    };
    const runner = new LiveControlRunner({
      loop,
      actuator,
      model: 'm',
      variant: TEST_VARIANT,
      intervalMs: 1000,
      objectives: { ttftMs: 100 },
      clock,
      view: (nowMs) => ({ nowMs, instances: [] }),
      queued: () => 4,
    });
    const request = (id: string, model: string): Request =>
      ({ id, model, inputTokens: 100, arrivalMs: 0 }) as unknown as Request;
    const a = request('a', 'm');
    const b = request('b', 'm');
    const other = request('c', 'elsewhere');
    runner.arrived(a, 0);
    runner.arrived(b, 0);
    runner.arrived(other, 0);
    runner.firstByte(a, 80);
    runner.ended(a, true, 11, 180);
    runner.firstByte(b, 150);
    runner.ended(b, true, 1, 150);
    runner.ended(other, false, 0, 200);
    clock.set(1000);
    const decision = runner.tick();
    assert.equal(decision?.reason, 'two please');
    const w = seen[0]?.window;
    assert.equal(w?.arrivals, 2, 'only the model counted');
    assert.equal(w?.completions, 2);
    assert.equal(w?.failures, 0);
    assert.equal(w?.queuedAtEnd, 4);
    assert.equal(w?.sloAttainment, 0.5);
    assert.equal(w?.tpotMsMean, (10 + 0) / 2);
    assert.ok(Math.abs((w?.meanConcurrency ?? 0) - (180 + 150) / 1000) < 1e-9);
    assert.equal(runner.desired, 2);
    assert.deepEqual(launched, [1]);
  });
});
