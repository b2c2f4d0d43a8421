import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import type { GpuSpec, ModelSpec, PerfModel } from '../model/types.ts';
import { EngineCore } from './engine-core.ts';
import {
  DEFAULT_ENGINE_CONFIG,
  type EngineConfig,
  type EngineRequest,
  type FinishedRequest,
} from './types.ts';
import { PriorityWaitQueue } from './wait-queue.ts';

const perf: PerfModel = {
  gpu: {} as GpuSpec,
  model: {} as ModelSpec,
  tp: 1,
  stepTimeMs: (shape) => 1 + 0.01 * shape.prefillTokens + 0.05 * shape.decodeSeqs,
  prefillTimeMs: (tokens) => 1 + 0.01 * tokens,
  decodeStepTimeMs: (batch) => 1 + 0.05 * batch,
  kvBytesPerToken: () => 1,
  weightBytes: () => 1,
};

function config(overrides: Partial<EngineConfig>): EngineConfig {
  return { ...DEFAULT_ENGINE_CONFIG, schedulingPolicy: 'priority', ...overrides };
}

function req(id: string, input: number, output: number, arrivalMs: number, priority: number): EngineRequest {
  return { id, inputTokens: input, outputTokens: output, arrivalMs, blockHashes: [], priority };
}

/** Runs requests to completion, checking invariants after every step; returns the finishes. */
function run(core: EngineCore, requests: EngineRequest[], finished: Map<string, FinishedRequest>): void {
  const arrivals = [...requests].sort((a, b) => a.arrivalMs - b.arrivalMs);
  let now = 0;
  let next = 0;
  for (let steps = 0; steps < 1e6; steps++) {
    while (next < arrivals.length && (arrivals[next] as EngineRequest).arrivalMs <= now) {
      core.add(arrivals[next++] as EngineRequest, now);
    }
    const d = core.startStep(now);
    if (d === undefined) {
      if (next >= arrivals.length) return;
      now = (arrivals[next] as EngineRequest).arrivalMs;
      continue;
    }
    now += d;
    core.finishStep(now);
    core.checkInvariants();
  }
  assert.fail(`did not finish; ${finished.size} done`);
}

test('priority wait queue: highest level first, FCFS within a level, preempted to the front', () => {
  const q = new PriorityWaitQueue<{ id: string; p: number }>((x) => x.p);
  const a = { id: 'a', p: 0 };
  const b = { id: 'b', p: -1 };
  const c = { id: 'c', p: 1 };
  const d = { id: 'd', p: 0 };
  for (const x of [a, b, c, d]) q.pushBack(x);
  const e = { id: 'e', p: 0 };
  q.pushFront(e);
  assert.deepEqual(
    [0, 1, 2, 3, 4].map((i) => q.at(i)?.id),
    ['c', 'e', 'a', 'd', 'b'],
  );
  assert.equal(q.remove(a), true);
  assert.deepEqual(
    [q.popFront()?.id, q.popFront()?.id, q.popFront()?.id, q.popFront()?.id],
    ['c', 'e', 'd', 'b'],
  );
  assert.equal(q.size, 0);
});

test('an online request preempts running batch work instead of waiting behind it', () => {
  const run1 = (policy: 'fcfs' | 'priority') => {
    const finished = new Map<string, FinishedRequest>();
    const core = new EngineCore(config({ maxNumSeqs: 4, schedulingPolicy: policy }), perf, 1000, {
      onFinish: (r) => finished.set(r.request.id, r),
    });
    const batch = [0, 1, 2, 3].map((i) => req(`b${i}`, 64, 400, 0, -1));
    run(core, [...batch, req('online', 64, 8, 5, 0)], finished);
    const online = finished.get('online') as FinishedRequest;
    return { ttft: online.firstTokenMs - online.arrivalMs, preemptions: core.preemptions, finished };
  };
  const fcfs = run1('fcfs');
  const priority = run1('priority');
  assert.ok(priority.ttft < 10, `priority TTFT ${priority.ttft}`);
  assert.ok(fcfs.ttft > 100, `fcfs TTFT ${fcfs.ttft}: it waits for a batch request to finish`);
  assert.equal(priority.preemptions, 1);
  assert.equal(priority.finished.size, 5, 'the preempted batch request still finishes');
});

test('priority scheduling keeps every invariant and finishes every request (random mixes)', () => {
  fc.assert(
    fc.property(
      fc.array(
        fc.record({
          input: fc.integer({ min: 1, max: 300 }),
          output: fc.integer({ min: 1, max: 60 }),
          at: fc.integer({ min: 0, max: 200 }),
          priority: fc.constantFrom(-1, 0, 1),
        }),
        { minLength: 1, maxLength: 40 },
      ),
      fc.integer({ min: 1, max: 6 }),
      fc.integer({ min: 30, max: 120 }),
      (specs, maxNumSeqs, blocks) => {
        const finished = new Map<string, FinishedRequest>();
        const rejected: string[] = [];
        const core = new EngineCore(config({ maxNumSeqs, maxNumBatchedTokens: 128 }), perf, blocks, {
          onFinish: (r) => finished.set(r.request.id, r),
          onReject: (r) => rejected.push(r.id),
        });
        const requests = specs.map((s, i) => req(`r${i}`, s.input, s.output, s.at, s.priority));
        run(core, requests, finished);
        assert.equal(finished.size + rejected.length, requests.length);
        assert.equal(core.running + core.waiting, 0);
      },
    ),
    { numRuns: 150 },
  );
});
