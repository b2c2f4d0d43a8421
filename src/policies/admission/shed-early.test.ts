/**
 * Refusing sooner, with a Retry-After: a queued request whose estimated wait already passes its
 * deadline leaves at the next drain (not at the deadline), every queue rejection carries a bounded
 * Retry-After, and a host that cannot hold a request (`unqueueable`) gets a refusal instead of a queue.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createAdmissionController } from './controller.ts';
import { req, saturated, view } from './test-support.ts';

describe('admission: refusing sooner', () => {
  it('refuses a queued request at the first drain its estimated wait passes its deadline', () => {
    const ctl = createAdmissionController({
      bands: [
        { name: 'online', minPriority: 0, deadlineMs: 5_000, queueDepthMax: 1000 },
        { name: 'batch', minPriority: -1, deadlineMs: 86_400_000, queueDepthMax: 10 },
      ],
      shedding: { drainRateWindowMs: 10_000, retryAfterMinMs: 1000, retryAfterMaxMs: 60_000 },
    });
    // 40 requests queue against a saturated cluster; nothing leaves for 2 s.
    for (let i = 0; i < 40; i++)
      assert.equal(
        ctl.offer(req(`r${i}`, { arrivalMs: 0, tenant: `t${i % 4}` }), saturated(0)).kind,
        'queued',
      );
    assert.deepEqual(ctl.drain(saturated(500)).expired, []);
    // 2 s busy without a dispatch: the queue drains at most 1 per 2 s, so no head can make 5 s.
    const { dispatch, expired } = ctl.drain(saturated(2000));
    assert.equal(dispatch.length, 0);
    assert.ok(expired.length >= 4, `${expired.length} refused`);
    for (const e of expired) {
      assert.equal(e.code, 'SY_ERR_SLO_UNREACHABLE');
      assert.ok(e.retryAfterMs >= 1000 && e.retryAfterMs <= 60_000, String(e.retryAfterMs));
      assert.match(e.reason, /estimated queueing wait/);
    }
    // Long before the 5 s deadline, and without waiting for it, the queue is empty.
    for (let t = 2100; ctl.queued > 0 && t < 4000; t += 100) ctl.drain(saturated(t));
    assert.equal(ctl.queued, 0);
    assert.equal(ctl.stats.expired, 40);
  });

  it('gives the deadline expiry a Retry-After too', () => {
    const ctl = createAdmissionController({ shedding: { shedOnEstimatedWait: false } });
    ctl.offer(req('a', { arrivalMs: 0 }), saturated(0));
    const { expired } = ctl.drain(saturated(30_000));
    assert.equal(expired.length, 1);
    assert.equal(expired[0]?.code, 'SY_ERR_SLO_UNREACHABLE');
    // No drain-rate history under shedOnEstimatedWait false still bounds the hint (busy 30 s, 0 out).
    assert.ok((expired[0]?.retryAfterMs ?? 0) >= 1000);
  });

  it('keeps requests that can still make it', () => {
    const ctl = createAdmissionController();
    for (let i = 0; i < 4; i++) ctl.offer(req(`r${i}`, { arrivalMs: 0 }), saturated(0));
    // Busy only 500 ms (under a tenth of the 10 s window): no estimate, nothing refused early.
    assert.deepEqual(ctl.drain(saturated(500)).expired, []);
    assert.equal(ctl.drain(view(600)).dispatch.length, 4);
  });

  it('refuses an unqueueable request instead of queueing it, and still dispatches one the gate passes', () => {
    const ctl = createAdmissionController();
    const hints = { unqueueable: { code: 'SY_ERR_QUEUE_BYTES_FULL', reason: 'bytes' } } as const;
    assert.deepEqual(ctl.offer(req('ok'), view(0), hints), { kind: 'dispatch' });
    const refused = ctl.offer(req('held'), saturated(0), hints);
    assert.equal(refused.kind, 'reject');
    if (refused.kind === 'reject') {
      assert.equal(refused.code, 'SY_ERR_QUEUE_BYTES_FULL');
      assert.ok((refused.retryAfterMs ?? 0) >= 1000);
    }
    assert.equal(ctl.queued, 0);
    assert.deepEqual(ctl.stats, { offered: 2, dispatched: 1, rejected: 1, expired: 0, queued: 0 });
  });
});
