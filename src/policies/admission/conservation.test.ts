/**
 * Property: whatever the arrivals, completions, failures and load, every offered request ends exactly
 * once (dispatched, rejected, or expired) or is still queued; nothing is lost or duplicated; the
 * controller's counts agree with what the host saw; the same inputs give the same decisions.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import type { Request } from '../../core/request.ts';
import type { ClusterView } from '../../core/view.ts';
import { admissionStep, BatchTracker } from './batch.ts';
import { createAdmissionController } from './controller.ts';
import { req, view } from './test-support.ts';

type Op =
  | {
      kind: 'arrive';
      tenant: number;
      priority: number;
      input: number;
      output: number;
      ttftMs: number | undefined;
      dtMs: number;
      load: number;
    }
  | { kind: 'complete' | 'fail'; pick: number; dtMs: number }
  | { kind: 'drain'; dtMs: number; load: number }
  | { kind: 'batch'; size: number; windowMs: number; tenant: number };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 5,
    arbitrary: fc.record({
      kind: fc.constant('arrive' as const),
      tenant: fc.integer({ min: 0, max: 3 }),
      priority: fc.integer({ min: -1, max: 2 }),
      input: fc.integer({ min: 1, max: 3000 }),
      output: fc.integer({ min: 1, max: 500 }),
      ttftMs: fc.option(fc.integer({ min: 20, max: 3000 }), { nil: undefined }),
      dtMs: fc.integer({ min: 0, max: 300 }),
      load: fc.integer({ min: 0, max: 4 }),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constantFrom('complete' as const, 'fail' as const),
      pick: fc.nat(),
      dtMs: fc.integer({ min: 0, max: 300 }),
    }),
  },
  {
    weight: 3,
    arbitrary: fc.record({
      kind: fc.constant('drain' as const),
      dtMs: fc.integer({ min: 0, max: 500 }),
      load: fc.integer({ min: 0, max: 4 }),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      kind: fc.constant('batch' as const),
      size: fc.integer({ min: 1, max: 12 }),
      windowMs: fc.integer({ min: 100, max: 5000 }),
      tenant: fc.integer({ min: 0, max: 3 }),
    }),
  },
);

/** 0 idle, 1 some engine queueing, 2 one instance saturated, 3 all saturated, 4 no instance. */
function loadView(nowMs: number, load: number): ClusterView {
  switch (load) {
    case 0:
      return view(nowMs, 2);
    case 1:
      return view(nowMs, 2, { waiting: 2, kvUsage: 0.5, inFlight: 10 });
    case 2:
      return {
        nowMs,
        instances: [
          ...view(nowMs, 1, { waiting: 9 }).instances,
          ...view(nowMs, 1, { inFlight: 3 }).instances,
        ],
      };
    case 3:
      return view(nowMs, 2, { waiting: 9, kvUsage: 0.99 });
    default:
      return { nowMs, instances: [] };
  }
}

type Outcome = 'queued' | 'dispatched' | 'rejected' | 'expired';

function run(ops: readonly Op[]): string[] {
  const ctl = createAdmissionController({
    bands: [
      { name: 'high', minPriority: 1, deadlineMs: 2000, queueDepthMax: 4 },
      { name: 'online', minPriority: 0, deadlineMs: 4000, queueDepthMax: 6 },
      { name: 'batch', minPriority: -1, deadlineMs: 20_000, queueDepthMax: 5 },
    ],
    tenants: { t0: { rpm: 20 }, t1: { tpm: 3000 }, t2: { weight: 2, priority: 1 } },
    tenantsMax: 3,
    shedding: { drainRateWindowMs: 2000 },
  });
  const tracker = new BatchTracker({ queuedPerJobMax: 3 });
  const log: string[] = [];
  const outcome = new Map<string, Outcome>();
  const inFlight: Request[] = [];
  const batchIds = new Set<string>();
  let nowMs = 0;
  let next = 0;

  const release = (r: Request) => {
    assert.ok(
      outcome.get(r.id) === 'queued' || batchIds.has(r.id),
      `${r.id} released from ${outcome.get(r.id)}`,
    );
    assert.ok(!inFlight.includes(r), `${r.id} released twice`);
    outcome.set(r.id, 'dispatched');
    ctl.onDispatched(r, nowMs);
    tracker.onDispatched(r, nowMs);
    inFlight.push(r);
  };
  const step = (v: ClusterView) => {
    const { dispatch, expired } = admissionStep(ctl, tracker, v);
    for (const e of expired) {
      const was = outcome.get(e.request.id);
      assert.ok(was === 'queued' || batchIds.has(e.request.id), `${e.request.id} expired from ${was}`);
      outcome.set(e.request.id, 'expired');
    }
    for (const r of dispatch) release(r);
    log.push(
      `d ${dispatch.map((r) => r.id).join(',')} x ${expired.map((e) => `${e.request.id}:${e.code}`).join(',')}`,
    );
    // After a drain the host has heard of every request that left the queue.
    let queued = 0;
    for (const [id, o] of outcome) if (o === 'queued' && !batchIds.has(id)) queued += 1;
    let batchQueued = 0;
    for (const job of tracker.jobs(nowMs)) batchQueued += job.queued;
    assert.equal(ctl.queued, queued + batchQueued);
  };

  for (const op of ops) {
    switch (op.kind) {
      case 'arrive': {
        nowMs += op.dtMs;
        const r = req(`r${next++}`, {
          tenant: `t${op.tenant}`,
          priority: op.priority,
          inputTokens: op.input,
          maxTokens: op.output,
          arrivalMs: nowMs,
          slo: op.ttftMs === undefined ? undefined : { ttftMs: op.ttftMs, tpotMs: 50 },
        });
        const result = ctl.offer(r, loadView(nowMs, op.load));
        log.push(
          `${r.id} ${result.kind}${result.kind === 'reject' ? ` ${result.code} ${result.retryAfterMs}` : ''}`,
        );
        if (result.kind === 'reject') {
          assert.ok(result.retryAfterMs === undefined || result.retryAfterMs > 0);
          outcome.set(r.id, 'rejected');
        } else {
          outcome.set(r.id, 'queued');
          if (result.kind === 'dispatch') release(r);
        }
        break;
      }
      case 'complete':
      case 'fail': {
        nowMs += op.dtMs;
        if (inFlight.length === 0) break;
        const [r] = inFlight.splice(op.pick % inFlight.length, 1) as [Request];
        if (op.kind === 'complete') {
          ctl.onCompleted(r, { inputTokens: r.inputTokens, completionTokens: r.maxTokens ?? 0 }, nowMs);
          tracker.onCompleted(r, nowMs);
        } else {
          ctl.onFailed(r, nowMs);
          tracker.onFailed(r, nowMs);
        }
        break;
      }
      case 'drain':
        nowMs += op.dtMs;
        step(loadView(nowMs, op.load));
        break;
      case 'batch': {
        const id = `job${next++}`;
        const tenant = `t${op.tenant}`;
        const requests = Array.from({ length: op.size }, (_, i) =>
          req(`${id}-${i}`, { tenant, arrivalMs: nowMs }),
        );
        for (const r of requests) batchIds.add(r.id);
        const accepted = tracker.submit({
          id,
          tenant,
          requests,
          completionWindowMs: op.windowMs,
          submittedMs: nowMs,
        });
        log.push(`${id} ${accepted.kind}`);
        break;
      }
    }
    const s = ctl.stats;
    assert.equal(s.offered, s.dispatched + s.rejected + s.expired + s.queued, JSON.stringify(s));
    const wake = ctl.nextWakeMs(nowMs);
    if (ctl.queued > 0) assert.ok(wake !== undefined && wake >= nowMs && wake <= nowMs + 50);
  }

  // Let everything finish on an idle cluster, waking when the controller asks: the queue must empty.
  for (
    let i = 0;
    i < 100_000 && (ctl.queued > 0 || inFlight.length > 0 || tracker.nextWakeMs(nowMs) !== undefined);
    i++
  ) {
    for (const r of inFlight.splice(0)) {
      ctl.onCompleted(r, { inputTokens: r.inputTokens, completionTokens: 1 }, nowMs);
      tracker.onCompleted(r, nowMs);
    }
    nowMs = Math.max(
      nowMs + 1,
      Math.min(ctl.nextWakeMs(nowMs) ?? Infinity, tracker.nextWakeMs(nowMs) ?? Infinity),
    );
    step(view(nowMs, 1));
  }
  assert.equal(ctl.queued, 0);
  assert.equal(inFlight.length, 0);
  for (const [id, o] of outcome) if (!batchIds.has(id)) assert.notEqual(o, 'queued', id);
  const s = ctl.stats;
  assert.equal(s.offered, s.dispatched + s.rejected + s.expired);
  assert.equal(ctl.offlineInFlight, 0);
  // Every batch job settled, and its counts add up.
  for (const job of tracker.jobs(nowMs)) {
    assert.equal(job.completed + job.failed + job.expired, job.total, JSON.stringify(job));
    assert.notEqual(job.status, 'in_progress');
    assert.equal(job.withinWindow, job.status === 'completed');
  }
  return log;
}

test('conservation: offered = dispatched + rejected + expired + queued, and every accepted request ends', () => {
  fc.assert(
    fc.property(fc.array(opArb, { minLength: 10, maxLength: 200, size: 'max' }), (ops) => {
      run(ops);
    }),
    { numRuns: 300 },
  );
});

test('determinism: the same sequence gives the same decision log', () => {
  fc.assert(
    fc.property(fc.array(opArb, { minLength: 10, maxLength: 150, size: 'max' }), (ops) => {
      assert.deepEqual(run(ops), run(ops));
    }),
    { numRuns: 50 },
  );
});
