import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Request } from '../../core/request.ts';
import { admissionStep, type BatchJob, BatchTracker } from './batch.ts';
import { createAdmissionController } from './controller.ts';
import { req, saturated, view } from './test-support.ts';

function job(id: string, n: number, fields: Partial<BatchJob> = {}): BatchJob {
  const tenant = fields.tenant ?? 'acme';
  return {
    id,
    tenant,
    requests: Array.from({ length: n }, (_, i) =>
      req(`${id}-${String(i).padStart(3, '0')}`, { tenant, arrivalMs: 0 }),
    ),
    completionWindowMs: 1000,
    submittedMs: 0,
    ...fields,
  };
}

test('batch: a job flows through spare capacity and completes within its window', () => {
  const ctl = createAdmissionController();
  const tracker = new BatchTracker();
  assert.deepEqual(tracker.submit(job('j1', 10)), { kind: 'accepted' });
  const running: Request[] = [];
  for (let t = 0; t < 1000 && tracker.job('j1', t)?.finishedMs === undefined; t += 10) {
    for (const r of running.splice(0)) {
      ctl.onCompleted(r, { inputTokens: r.inputTokens, completionTokens: r.maxTokens ?? 0 }, t);
      tracker.onCompleted(r, t);
    }
    const { dispatch, expired } = admissionStep(ctl, tracker, view(t, 1));
    assert.deepEqual(expired, []);
    // The offline cap: 4 per instance.
    assert.ok(dispatch.length <= 4);
    for (const r of dispatch) {
      ctl.onDispatched(r, t);
      tracker.onDispatched(r, t);
      running.push(r);
    }
  }
  const s = tracker.job('j1', 40);
  assert.ok(s !== undefined);
  assert.equal(s.status, 'completed');
  assert.equal(s.withinWindow, true);
  assert.deepEqual(
    [s.total, s.dispatched, s.completed, s.failed, s.expired, s.queued, s.pending],
    [10, 10, 10, 0, 0, 0, 0],
  );
  assert.equal(s.finishedMs, 30);
  assert.equal(s.deadlineMs, 1000);
});

test('batch: the window passes while queued; requests expire and the job is expired', () => {
  const ctl = createAdmissionController();
  const tracker = new BatchTracker({ queuedPerJobMax: 3 });
  tracker.submit(job('j1', 10));
  const first = admissionStep(ctl, tracker, saturated(0));
  assert.deepEqual(first.dispatch, []);
  let s = tracker.job('j1', 0)!;
  assert.equal(s.status, 'in_progress');
  assert.deepEqual([s.queued, s.pending], [3, 7]);
  assert.equal(tracker.nextWakeMs(0), 1000);
  assert.equal(ctl.nextWakeMs(900), 950); // gate re-check while queued
  const atWindow = admissionStep(ctl, tracker, saturated(1000));
  assert.equal(atWindow.expired.length, 3);
  assert.ok(atWindow.expired.every((e) => e.code === 'SY_ERR_SLO_UNREACHABLE'));
  s = tracker.job('j1', 1000)!;
  assert.equal(s.status, 'expired');
  assert.equal(s.withinWindow, false);
  assert.deepEqual([s.expired, s.queued, s.pending, s.dispatched], [10, 0, 0, 0]);
  assert.equal(s.finishedMs, 1000);
  assert.equal(ctl.queued, 0);
});

test('batch: a job with requests still running at the deadline is expired, then finishes late', () => {
  const ctl = createAdmissionController();
  const tracker = new BatchTracker();
  tracker.submit(job('j1', 2));
  const { dispatch } = admissionStep(ctl, tracker, view(0, 1));
  assert.equal(dispatch.length, 2);
  for (const r of dispatch) tracker.onDispatched(r, 0);
  tracker.onCompleted(dispatch[0]!, 500);
  assert.equal(tracker.job('j1', 999)!.status, 'in_progress');
  assert.equal(tracker.job('j1', 1000)!.status, 'expired');
  tracker.onFailed(dispatch[1]!, 1500);
  const s = tracker.job('j1', 1500)!;
  assert.deepEqual(
    [s.status, s.withinWindow, s.completed, s.failed, s.finishedMs],
    ['expired', false, 1, 1, 1500],
  );
});

test('batch: a large lazy job is fed a few at a time, round-robin with other jobs', () => {
  const ctl = createAdmissionController();
  const tracker = new BatchTracker({ queuedPerJobMax: 5 });
  let generated = 0;
  tracker.submit({
    id: 'big',
    tenant: 'a',
    requests: {
      count: 50_000,
      generate(i) {
        generated += 1;
        return req(`big-${i}`, { tenant: 'a', arrivalMs: 0 });
      },
    },
    completionWindowMs: 86_400_000,
    submittedMs: 0,
  });
  tracker.submit(job('small', 3, { tenant: 'b', completionWindowMs: 86_400_000 }));
  admissionStep(ctl, tracker, saturated(0));
  assert.equal(generated, 5);
  assert.equal(ctl.queued, 8);
  assert.deepEqual(
    tracker.jobs(0).map((j) => [j.id, j.queued, j.pending]),
    [
      ['big', 5, 49_995],
      ['small', 3, 0],
    ],
  );
  // VTC shares the offline band between the two tenants.
  const { dispatch } = admissionStep(ctl, tracker, view(1, 1));
  assert.deepEqual(
    dispatch.map((r) => r.tenant),
    ['a', 'b', 'a', 'b'],
  );
});

test('batch: the offline band bound holds; pushed-out job requests are offered again', () => {
  const bands = [
    { name: 'online', minPriority: 0, deadlineMs: 30_000, queueDepthMax: 10 },
    { name: 'batch', minPriority: -1, deadlineMs: 86_400_000, queueDepthMax: 4 },
  ];
  const ctl = createAdmissionController({ bands });
  const tracker = new BatchTracker({ queuedPerJobMax: 10 });
  tracker.submit(job('j1', 20));
  admissionStep(ctl, tracker, saturated(0));
  assert.equal(ctl.queued, 4);
  assert.equal(ctl.offlineRoom, 0);
  // Another tenant's low-priority request pushes one of j1's out; the tracker takes it back.
  assert.equal(ctl.offer(req('other', { tenant: 'other', priority: -1 }), saturated(1)).kind, 'queued');
  const step = admissionStep(ctl, tracker, saturated(2));
  assert.equal(step.expired.length, 1);
  assert.equal(step.expired[0]?.code, 'SY_ERR_OVERLOADED');
  const s = tracker.job('j1', 2)!;
  assert.deepEqual([s.queued, s.pending, s.expired], [3, 17, 0]);
});

test('batch: submit validates the job', () => {
  const tracker = new BatchTracker({ jobsMax: 1, requestsPerJobMax: 5 });
  assert.equal(tracker.submit(job('too-big', 6)).kind, 'reject');
  assert.equal(tracker.submit(job('empty', 0)).kind, 'reject');
  assert.equal(tracker.submit(job('no-window', 1, { completionWindowMs: 0 })).kind, 'reject');
  const mixed = job('mixed', 2);
  const stranger = { ...mixed, requests: [...(mixed.requests as Request[]), req('x', { tenant: 'else' })] };
  assert.equal(tracker.submit(stranger).kind, 'reject');
  assert.equal(tracker.submit(job('ok', 1)).kind, 'accepted');
  const dup = tracker.submit(job('ok', 1));
  assert.ok(dup.kind === 'reject' && dup.code === 'SY_ERR_INVALID_ARGUMENT');
  const full = tracker.submit(job('second', 1));
  assert.ok(full.kind === 'reject' && full.code === 'SY_ERR_OVERLOADED');
});

test('batch: finished jobs are remembered up to finishedJobsMax', () => {
  const ctl = createAdmissionController();
  const tracker = new BatchTracker({ finishedJobsMax: 1 });
  for (const id of ['a', 'b']) {
    tracker.submit(job(id, 1));
    const { dispatch } = admissionStep(ctl, tracker, view(0, 1));
    for (const r of dispatch) {
      ctl.onCompleted(r, { inputTokens: 1, completionTokens: 1 }, 1);
      tracker.onCompleted(r, 1);
    }
  }
  assert.equal(tracker.job('a', 2), undefined);
  assert.equal(tracker.job('b', 2)?.status, 'completed');
});
