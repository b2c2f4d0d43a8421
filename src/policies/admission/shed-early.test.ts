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
  const BANDS = {
    bands: [
      { name: 'online', minPriority: 0, deadlineMs: 5_000, queueDepthMax: 1000 },
      { name: 'batch', minPriority: -1, deadlineMs: 86_400_000, queueDepthMax: 10 },
    ],
    shedding: { drainRateWindowMs: 10_000, retryAfterMinMs: 1000, retryAfterMaxMs: 60_000 },
  };

  /** `slots` requests sent at 0 fill the cluster, then 40 queue behind it from four tenants. */
  function burst(slots: number) {
    const ctl = createAdmissionController(BANDS);
    const running = Array.from({ length: slots }, (_, i) => req(`run${i}`, { arrivalMs: 0 }));
    for (const r of running) {
      assert.equal(ctl.offer(r, view(0)).kind, 'dispatch');
      ctl.onDispatched(r, 0);
    }
    for (let i = 0; i < 40; i++)
      assert.equal(
        ctl.offer(req(`r${i}`, { arrivalMs: 0, tenant: `t${i % 4}` }), saturated(0)).kind,
        'queued',
      );
    return { ctl, running };
  }

  it('refuses a queued request at the first drain its estimated wait passes its deadline', () => {
    const { ctl, running } = burst(8);
    assert.deepEqual(ctl.drain(saturated(500)).expired, []);
    // Two of the eight complete after 4 s: the cluster serves about 6 in flight / 4 s = 1.5 per
    // second, so a head that still has three other tenants' turns before it cannot make 5 s.
    for (const r of running.slice(0, 2)) ctl.onCompleted(r, { inputTokens: 100, completionTokens: 50 }, 4000);
    const { dispatch, expired } = ctl.drain(saturated(4000));
    assert.equal(dispatch.length, 0);
    assert.ok(expired.length >= 30, `${expired.length} refused`);
    for (const e of expired) {
      assert.equal(e.code, 'SY_ERR_SLO_UNREACHABLE');
      assert.ok(e.retryAfterMs >= 1000 && e.retryAfterMs <= 60_000, String(e.retryAfterMs));
      assert.match(e.reason, /estimated queueing wait/);
    }
    // Before the 5 s deadline, and without waiting for it, the queue is (almost) empty.
    assert.ok(ctl.queued <= 10, `${ctl.queued} still queued`);
  });

  it('does not read a quiet start behind a full cluster as its speed (a burst behind full engines)', () => {
    // vllm bench serve without --max-concurrency: the first wave fills every slot and nothing leaves
    // the queue for seconds. No dispatch in 3 s says little: 64 requests that have run 3 s may all
    // end in the next second. (The old bound, one dispatch per busy span, refused them all at 2 s.)
    const { ctl } = burst(64);
    for (const t of [500, 1000, 2000, 3000]) assert.deepEqual(ctl.drain(saturated(t)).expired, [], `at ${t}`);
    assert.equal(ctl.offer(req('late', { arrivalMs: 3000 }), saturated(3000)).kind, 'queued');
    assert.equal(ctl.queued, 41);
    // Then the batch ends and queued requests go out again.
    assert.ok(ctl.drain(view(3100)).dispatch.length > 0);
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
    // Nothing has completed yet: no estimate, nothing refused early.
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
