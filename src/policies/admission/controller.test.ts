import assert from 'node:assert/strict';
import { test } from 'node:test';
import { SwitchyardError } from '../../core/errors.ts';
import type { Request } from '../../core/request.ts';
import { admissionConfigSchema } from './config.ts';
import { createAdmissionController } from './controller.ts';
import { req, saturated, view } from './test-support.ts';

test('an unloaded cluster passes requests straight through', () => {
  const ctl = createAdmissionController();
  for (let i = 0; i < 4; i++)
    assert.deepEqual(ctl.offer(req(`r${i}`), view(0, 2, { inFlight: i })), { kind: 'dispatch' });
  assert.equal(ctl.queued, 0);
  assert.equal(ctl.nextWakeMs(0), undefined);
  assert.deepEqual(ctl.drain(view(0)), { dispatch: [], expired: [] });
});

test('saturated means every eligible instance is saturated', () => {
  const ctl = createAdmissionController();
  const oneFree = { nowMs: 0, instances: [...saturated(0, 3).instances.slice(1), view(0, 1).instances[0]!] };
  assert.equal(ctl.offer(req('a'), oneFree).kind, 'dispatch');
  // Unhealthy or draining instances do not count as room.
  const sick = view(0, 1, { healthy: false });
  const draining = view(0, 1, { draining: true });
  assert.equal(
    ctl.offer(req('b'), { nowMs: 0, instances: [...saturated(0, 1).instances, ...sick.instances] }).kind,
    'queued',
  );
  assert.equal(ctl.offer(req('c'), draining).kind, 'queued');
  // Each criterion alone saturates an instance.
  const fresh = createAdmissionController();
  assert.equal(fresh.offer(req('w'), view(0, 1, { waiting: 5 })).kind, 'queued');
  assert.equal(createAdmissionController().offer(req('k'), view(0, 1, { kvUsage: 0.95 })).kind, 'queued');
  assert.equal(createAdmissionController().offer(req('f'), view(0, 1, { inFlight: 256 })).kind, 'queued');
  // No instance at all: hold (scale from zero), do not reject.
  assert.equal(createAdmissionController().offer(req('z'), { nowMs: 0, instances: [] }).kind, 'queued');
});

test('a request queues behind others in its band even when capacity opens', () => {
  const ctl = createAdmissionController();
  assert.equal(ctl.offer(req('first'), saturated(0)).kind, 'queued');
  assert.equal(ctl.offer(req('second', { arrivalMs: 1 }), view(1)).kind, 'queued');
  assert.deepEqual(
    ctl.drain(view(2)).dispatch.map((r) => r.id),
    ['first', 'second'],
  );
});

test('drain releases no more than the gate projects room for', () => {
  const ctl = createAdmissionController({ gate: { waitingMax: 3 } });
  for (let i = 0; i < 20; i++) ctl.offer(req(`r${i}`, { arrivalMs: i }), saturated(0));
  // Two idle instances with waitingMax 3: three land on each before both look saturated.
  assert.equal(ctl.drain(view(10, 2)).dispatch.length, 6);
  assert.equal(ctl.drain(view(20, 2, { waiting: 2 })).dispatch.length, 2);
  // KV: each request's prompt takes its share of the KV pool in the projection.
  const kv = createAdmissionController({ gate: { waitingMax: 1000 } });
  for (let i = 0; i < 20; i++) kv.offer(req(`k${i}`, { inputTokens: 16_000 }), view(0, 1, { inFlight: 256 }));
  // 10,000 blocks x 16 tokens = 160,000 tokens: 0.1 per request, from 0.7 to >= 0.95 in 3.
  assert.equal(kv.drain(view(10, 1, { kvUsage: 0.7 })).dispatch.length, 3);
});

test('strict priority: a higher band always goes first, and lower bands wait while it waits', () => {
  const ctl = createAdmissionController({ gate: { waitingMax: 1 } });
  ctl.offer(req('online-1', { arrivalMs: 0 }), saturated(0));
  ctl.offer(req('online-2', { arrivalMs: 1 }), saturated(1));
  ctl.offer(req('batch-1', { priority: -5, arrivalMs: 0 }), saturated(1));
  ctl.offer(req('high-1', { priority: 7, arrivalMs: 2 }), saturated(2));
  ctl.offer(req('high-2', { priority: 1, arrivalMs: 3 }), saturated(3));
  // Room for one request per drain.
  const order: string[] = [];
  for (let t = 10; t < 60; t += 10) order.push(...ctl.drain(view(t, 1)).dispatch.map((r) => r.id));
  assert.deepEqual(order, ['high-1', 'high-2', 'online-1', 'online-2', 'batch-1']);
  // A new online arrival while batch waits: online goes straight through; batch is not ahead of it.
  const ctl2 = createAdmissionController();
  ctl2.offer(req('b', { priority: -1 }), view(0, 1, { waiting: 1 }));
  assert.equal(ctl2.offer(req('o'), view(0, 1, { waiting: 1 })).kind, 'dispatch');
});

test('tenant config priority replaces the request priority', () => {
  const ctl = createAdmissionController({ tenants: { vip: { priority: 5 }, bulk: { priority: -1 } } });
  ctl.offer(req('bulk', { tenant: 'bulk', priority: 9 }), saturated(0));
  ctl.offer(req('plain', { priority: 0 }), saturated(0));
  ctl.offer(req('vip', { tenant: 'vip', priority: 0 }), saturated(0));
  const bands = ctl.bands(0).map((b) => [b.name, b.queued]);
  assert.deepEqual(bands, [
    ['interactive', 1],
    ['online', 1],
    ['batch', 1],
  ]);
});

test('RPM: a token bucket rejects with the exact wait and refills over time', () => {
  const ctl = createAdmissionController({ tenants: { t: { rpm: 60 } } });
  for (let i = 0; i < 60; i++)
    assert.equal(ctl.offer(req(`r${i}`, { tenant: 't' }), view(0)).kind, 'dispatch');
  const over = ctl.offer(req('over', { tenant: 't' }), view(0));
  assert.equal(over.kind, 'reject');
  assert.ok(over.kind === 'reject');
  assert.equal(over.code, 'SY_ERR_RATE_LIMITED');
  assert.equal(over.retryAfterMs, 1000);
  assert.equal(ctl.offer(req('early', { tenant: 't' }), view(999)).kind, 'reject');
  assert.equal(ctl.offer(req('on-time', { tenant: 't' }), view(1000)).kind, 'dispatch');
  // Other tenants are not limited by t's bucket.
  assert.equal(ctl.offer(req('other', { tenant: 'u' }), view(1000)).kind, 'dispatch');
});

test('RPM below 1: one request passes, then one every 60/rpm s, each refusal with the wait as Retry-After', () => {
  const ctl = createAdmissionController({ tenants: { t: { rpm: 0.5 } } });
  assert.equal(ctl.offer(req('first', { tenant: 't' }), view(0)).kind, 'dispatch');
  const over = ctl.offer(req('over', { tenant: 't' }), view(0));
  assert.ok(over.kind === 'reject' && over.code === 'SY_ERR_RATE_LIMITED');
  // One token at 0.5 per minute: two minutes.
  assert.equal(over.retryAfterMs, 120_000);
  const later = ctl.offer(req('later', { tenant: 't' }), view(30_000));
  assert.ok(later.kind === 'reject');
  assert.equal(later.retryAfterMs, 90_000);
  assert.equal(ctl.offer(req('early', { tenant: 't' }), view(119_999)).kind, 'reject');
  assert.equal(ctl.offer(req('on-time', { tenant: 't' }), view(120_000)).kind, 'dispatch');
  // The burst stays one: four idle minutes do not bank two requests.
  assert.equal(ctl.offer(req('idle-1', { tenant: 't' }), view(360_000)).kind, 'dispatch');
  assert.equal(ctl.offer(req('idle-2', { tenant: 't' }), view(360_000)).kind, 'reject');
});

test('TPM counts input + expected output (capped by max_tokens) at admission; retryAfterMs is the time until the bucket has room', () => {
  const ctl = createAdmissionController({ tenants: { t: { tpm: 6000 } } });
  // No completion seen yet: the expected output is the estimator's prior (256), capped here at 200.
  const big = (id: string) => req(id, { tenant: 't', inputTokens: 800, maxTokens: 200 });
  for (let i = 0; i < 6; i++) assert.equal(ctl.offer(big(`r${i}`), view(0)).kind, 'dispatch');
  const over = ctl.offer(big('over'), view(0));
  assert.ok(over.kind === 'reject' && over.code === 'SY_ERR_RATE_LIMITED');
  // 1000 tokens at 6000 per minute = 10 s.
  assert.equal(over.retryAfterMs, 10_000);
  const partial = ctl.offer(big('partial'), view(4000));
  assert.ok(partial.kind === 'reject');
  assert.equal(partial.retryAfterMs, 6000);
  assert.equal(ctl.offer(big('refilled'), view(10_000)).kind, 'dispatch');
  // A request larger than the whole bucket can never pass: not a 429 (clients retry those) but
  // SY_ERR_REQUEST_OVER_TPM, with no Retry-After, naming the bucket's size.
  const huge = ctl.offer(req('huge', { tenant: 't', inputTokens: 7000 }), view(60_000));
  assert.ok(huge.kind === 'reject' && huge.code === 'SY_ERR_REQUEST_OVER_TPM', JSON.stringify(huge));
  assert.match(huge.reason, /more than tenant 't''s whole tpm of 6000 tokens a minute, so no wait admits it/);
  assert.equal(huge.retryAfterMs, undefined);
  // A refused request takes nothing from the buckets.
  assert.equal(ctl.offer(big('after-huge'), view(60_000)).kind, 'dispatch');
});

test('defaultTenant limits apply to tenants not named in config', () => {
  const ctl = createAdmissionController({ defaultTenant: { rpm: 1 }, tenants: { named: {} } });
  assert.equal(ctl.offer(req('a1', { tenant: 'anon' }), view(0)).kind, 'dispatch');
  assert.equal(ctl.offer(req('a2', { tenant: 'anon' }), view(0)).kind, 'reject');
  assert.equal(ctl.offer(req('n1', { tenant: 'named' }), view(0)).kind, 'dispatch');
  assert.equal(ctl.offer(req('n2', { tenant: 'named' }), view(0)).kind, 'dispatch');
  // Names that are Object.prototype keys are tenants like any other.
  assert.equal(ctl.offer(req('p1', { tenant: 'constructor' }), view(0)).kind, 'dispatch');
  assert.equal(ctl.offer(req('p2', { tenant: 'constructor' }), view(0)).kind, 'reject');
});

test('queue bound: a full band rejects with SY_ERR_OVERLOADED and a positive Retry-After', () => {
  const bands = [
    { name: 'online', minPriority: 0, deadlineMs: 30_000, queueDepthMax: 3 },
    { name: 'batch', minPriority: -1, deadlineMs: 86_400_000, queueDepthMax: 3 },
  ];
  const ctl = createAdmissionController({ bands });
  for (let i = 0; i < 3; i++) assert.equal(ctl.offer(req(`r${i}`), saturated(0)).kind, 'queued');
  const full = ctl.offer(req('r3'), saturated(0));
  assert.ok(full.kind === 'reject' && full.code === 'SY_ERR_OVERLOADED');
  // No drain history yet: the hint is the configured maximum.
  assert.equal(full.retryAfterMs, 60_000);
  assert.equal(ctl.queued, 3);
  // The batch band has its own bound.
  assert.equal(ctl.offer(req('b0', { priority: -1 }), saturated(0)).kind, 'queued');
});

test('queue bound: a light tenant pushes the heaviest tenant out of a full queue', () => {
  const bands = [
    { name: 'online', minPriority: 0, deadlineMs: 30_000, queueDepthMax: 4 },
    { name: 'batch', minPriority: -1, deadlineMs: 86_400_000, queueDepthMax: 4 },
  ];
  const ctl = createAdmissionController({ bands });
  for (let i = 0; i < 4; i++) ctl.offer(req(`h${i}`, { tenant: 'heavy', arrivalMs: i }), saturated(i));
  assert.equal(ctl.offer(req('h4', { tenant: 'heavy', arrivalMs: 4 }), saturated(4)).kind, 'reject');
  assert.equal(ctl.offer(req('l0', { tenant: 'light', arrivalMs: 5 }), saturated(5)).kind, 'queued');
  assert.equal(ctl.queued, 4);
  const { expired } = ctl.drain(saturated(6));
  assert.deepEqual(
    expired.map((e) => [e.request.id, e.code]),
    [['h3', 'SY_ERR_OVERLOADED']],
  );
  // heavy (3 queued) vs light (1): light may push out once more, then the two are level.
  assert.equal(ctl.offer(req('l1', { tenant: 'light', arrivalMs: 7 }), saturated(7)).kind, 'queued');
  assert.equal(ctl.offer(req('l2', { tenant: 'light', arrivalMs: 8 }), saturated(8)).kind, 'reject');
  assert.equal(ctl.stats.offered, ctl.stats.dispatched + ctl.stats.rejected + ctl.stats.expired + ctl.queued);
});

/** Builds a backlog drained at `perS` dispatches per second for `forMs`, returning the controller. */
function drainedAt(perS: number, forMs: number, config: Record<string, unknown> = {}) {
  const ctl = createAdmissionController({ gate: { waitingMax: 1 }, ...config });
  let n = 0;
  const offer = (t: number) => ctl.offer(req(`q${n++}`, { arrivalMs: t }), saturated(t));
  for (let i = 0; i < 5; i++) offer(0);
  const stepMs = 1000 / perS;
  // Each request completes SERVICE_MS after it is sent: five in flight over 500 ms (Little's law:
  // the same rate as the drain), the evidence shedding waits for.
  const SERVICE_MS = 5 * stepMs;
  const sent: { request: Request; atMs: number }[] = [];
  for (let t = stepMs; t <= forMs; t += stepMs) {
    while (sent.length > 0 && (sent[0]?.atMs ?? 0) + SERVICE_MS <= t) {
      const done = sent.shift() as { request: Request; atMs: number };
      ctl.onCompleted(done.request, { inputTokens: 100, completionTokens: 50 }, t);
    }
    for (const r of ctl.drain(view(t, 1)).dispatch) {
      ctl.onDispatched(r, t);
      sent.push({ request: r, atMs: t });
    }
    offer(t); // keep the backlog at five
  }
  return ctl;
}

test('shedding: Retry-After comes from the drain rate', () => {
  const bands = [
    { name: 'online', minPriority: 0, deadlineMs: 30_000, queueDepthMax: 5 },
    { name: 'batch', minPriority: -1, deadlineMs: 86_400_000, queueDepthMax: 5 },
  ];
  const ctl = drainedAt(10, 5000, { bands, shedding: { retryAfterMinMs: 0 } });
  const rate = ctl.bands(5000)[0]?.drainRatePerS;
  assert.ok(rate !== undefined && Math.abs(rate - 10) < 0.5, `rate ${rate}`);
  const full = ctl.offer(req('x', { arrivalMs: 5000 }), saturated(5000));
  assert.ok(full.kind === 'reject' && full.code === 'SY_ERR_OVERLOADED');
  // Five ahead plus itself at ten per second: about 600 ms.
  assert.ok(
    full.retryAfterMs !== undefined && Math.abs(full.retryAfterMs - 600) <= 30,
    `${full.retryAfterMs}`,
  );
});

test('shedding: an online request whose estimated wait passes its deadline is refused at once', () => {
  const ctl = drainedAt(10, 5000);
  const slo = (ttftMs: number) => ({ ttftMs, tpotMs: 100 });
  const tight = ctl.offer(req('tight', { arrivalMs: 5000, slo: slo(300) }), saturated(5000));
  assert.ok(tight.kind === 'reject' && tight.code === 'SY_ERR_OVERLOADED', JSON.stringify(tight));
  assert.ok((tight.retryAfterMs ?? 0) >= 1000);
  assert.equal(ctl.offer(req('loose', { arrivalMs: 5000, slo: slo(2000) }), saturated(5000)).kind, 'queued');
  // Another tenant with nothing queued waits only for its fair turn, not for the whole backlog.
  assert.equal(
    ctl.offer(req('other', { tenant: 'other', arrivalMs: 5000, slo: slo(400) }), saturated(5000)).kind,
    'queued',
  );
  // Offline work is never shed on the estimate.
  assert.equal(ctl.offer(req('batch', { priority: -1, arrivalMs: 5000 }), saturated(5000)).kind, 'queued');
});

test('expired deadlines come out of drain as rejections, and nextWakeMs names them', () => {
  const ctl = createAdmissionController({ gate: { recheckMs: 500 } });
  const slo = (ttftMs: number) => ({ ttftMs, tpotMs: 100 });
  ctl.offer(req('a', { arrivalMs: 0, slo: slo(100) }), saturated(0));
  ctl.offer(req('b', { arrivalMs: 0, slo: slo(200) }), saturated(0));
  ctl.offer(req('c', { arrivalMs: 0, slo: slo(5000) }), saturated(0));
  assert.equal(ctl.nextWakeMs(0), 100);
  assert.equal(ctl.nextWakeMs(60), 100);
  assert.equal(ctl.nextWakeMs(150), 150); // 'a' is already due
  assert.equal(ctl.nextWakeMs(1000), 1000);
  const first = ctl.drain(saturated(100));
  assert.deepEqual(first.dispatch, []);
  assert.deepEqual(
    first.expired.map((e) => [e.request.id, e.code]),
    [['a', 'SY_ERR_SLO_UNREACHABLE']],
  );
  const second = ctl.drain(view(250));
  assert.deepEqual(
    second.expired.map((e) => e.request.id),
    ['b'],
  );
  assert.deepEqual(
    second.dispatch.map((r) => r.id),
    ['c'],
  );
  assert.equal(ctl.nextWakeMs(250), undefined);
  // A request whose deadline has passed before it could queue is refused at once.
  const late = ctl.offer(req('late', { arrivalMs: 0, slo: slo(100) }), saturated(300));
  assert.ok(late.kind === 'reject' && late.code === 'SY_ERR_OVERLOADED');
});

test('offline band: dispatches only into spare capacity, and stops when online load appears', () => {
  const ctl = createAdmissionController();
  const batch = (i: number) => req(`b${i}`, { priority: -1, arrivalMs: i });
  // Idle 2-instance cluster: offline in-flight is capped at 4 per instance.
  const released: Request[] = [];
  for (let i = 0; i < 12; i++) if (ctl.offer(batch(i), view(0)).kind === 'dispatch') released.push(batch(i));
  assert.equal(released.length, 8);
  assert.equal(ctl.offlineInFlight, 8);
  assert.equal(ctl.queued, 4);
  // One finishes: room for one more, no more.
  ctl.onCompleted(released[0]!, { inputTokens: 100, completionTokens: 50 }, 10);
  assert.deepEqual(
    ctl.drain(view(10)).dispatch.map((r) => r.id),
    ['b8'],
  );
  ctl.onCompleted(released[1]!, { inputTokens: 100, completionTokens: 50 }, 20);
  // Any request waiting in an engine: no spare capacity, although the online gate is open.
  assert.deepEqual(ctl.drain(view(20, 2, { waiting: 1 })).dispatch, []);
  // Mean KV usage at or above 0.7: no spare capacity.
  assert.deepEqual(ctl.drain(view(20, 2, { kvUsage: 0.7 })).dispatch, []);
  // Online requests queued: they take the room first, and batch waits for a later drain.
  ctl.offer(req('o1', { arrivalMs: 20 }), saturated(20));
  assert.deepEqual(
    ctl.drain(view(30)).dispatch.map((r) => r.id),
    ['o1'],
  );
  assert.deepEqual(
    ctl.drain(view(40)).dispatch.map((r) => r.id),
    ['b9'],
  );
});

test('onFailed and onCompleted free offline in-flight slots; unknown requests are ignored', () => {
  const ctl = createAdmissionController();
  const r = req('b', { priority: -1 });
  assert.equal(ctl.offer(r, view(0)).kind, 'dispatch');
  assert.equal(ctl.offlineInFlight, 1);
  ctl.onFailed(r, 5);
  assert.equal(ctl.offlineInFlight, 0);
  ctl.onFailed(r, 6);
  ctl.onCompleted(req('never-seen'), { inputTokens: 1, completionTokens: 1 }, 7);
  ctl.onDispatched(req('never-seen'), 7);
  assert.equal(ctl.offlineInFlight, 0);
});

test('tenantsMax: idle tenants are forgotten to make room; busy ones are not', () => {
  const ctl = createAdmissionController({ tenantsMax: 2 });
  ctl.offer(req('a', { tenant: 'a' }), saturated(0));
  ctl.offer(req('b', { tenant: 'b' }), saturated(0));
  const refused = ctl.offer(req('c', { tenant: 'c' }), saturated(0));
  assert.ok(refused.kind === 'reject' && refused.code === 'SY_ERR_OVERLOADED');
  const { dispatch } = ctl.drain(view(1));
  for (const r of dispatch) ctl.onCompleted(r, { inputTokens: 100, completionTokens: 50 }, 2);
  assert.equal(ctl.offer(req('c2', { tenant: 'c' }), view(3)).kind, 'dispatch');
});

test('determinism: the same inputs give the same decisions', () => {
  const run = () => {
    const ctl = createAdmissionController({ tenants: { t1: { rpm: 30 }, t2: { weight: 2 } } });
    const log: string[] = [];
    const inFlight: Request[] = [];
    for (let i = 0; i < 400; i++) {
      const t = i * 7;
      const r = req(`r${i}`, {
        tenant: `t${(i * 7) % 4}`,
        priority: (i % 3) - 1,
        inputTokens: 50 + ((i * 37) % 900),
        arrivalMs: t,
        slo: i % 5 === 0 ? { ttftMs: 200 + (i % 7) * 100, tpotMs: 50 } : undefined,
      });
      const busy = i % 3 !== 0;
      const result = ctl.offer(r, busy ? saturated(t) : view(t));
      log.push(`${r.id}:${result.kind}`);
      if (result.kind === 'dispatch') inFlight.push(r);
      if (i % 4 === 0) {
        const done = inFlight.shift();
        if (done !== undefined)
          ctl.onCompleted(done, { inputTokens: done.inputTokens, completionTokens: 40 }, t);
        const out = ctl.drain(view(t, 1, { waiting: i % 2 }));
        for (const d of out.dispatch) {
          ctl.onDispatched(d, t);
          inFlight.push(d);
        }
        log.push(
          `d:${out.dispatch.map((d) => d.id).join(',')} x:${out.expired.map((e) => e.request.id).join(',')}`,
        );
      }
    }
    return log.join('\n');
  };
  assert.equal(run(), run());
});

test('config: strict schema with defaults; bad values are SY_ERR_INVALID_CONFIG', () => {
  const parsed = admissionConfigSchema.parse({});
  assert.equal(parsed.gate.spareKvUsageMax, 0.7);
  assert.equal(parsed.vtc.outputWeight, 2);
  assert.equal(parsed.bands.length, 3);
  assert.throws(
    () => createAdmissionController({ gate: { waitingMax: 0 } }),
    (e: unknown) =>
      e instanceof SwitchyardError &&
      e.code === 'SY_ERR_INVALID_CONFIG' &&
      e.message.includes('gate.waitingMax'),
  );
  assert.throws(() => createAdmissionController({ tenants: { a: { rpm: 5, burst: 3 } } }), SwitchyardError);
  assert.throws(() =>
    createAdmissionController({ bands: [{ name: 'only', minPriority: 0, deadlineMs: 1, queueDepthMax: 1 }] }),
  );
  assert.throws(() => createAdmissionController({ shedding: { retryAfterMinMs: 10, retryAfterMaxMs: 5 } }));
});

test('offline band: a busy decode batch is not spare capacity (spareInFlightPerInstanceMax)', () => {
  const ctl = createAdmissionController({ gate: { spareInFlightPerInstanceMax: 10 } });
  const batch = (i: number) => req(`b${i}`, { priority: -1, arrivalMs: i });
  // Nothing queued anywhere, KV nearly empty, but 10 requests in flight per instance: hold the batch.
  assert.equal(ctl.offer(batch(0), view(0, 2, { inFlight: 10 })).kind, 'queued');
  assert.deepEqual(ctl.drain(view(1, 2, { inFlight: 12 })).dispatch, []);
  // The online load falls below the bound: the batch goes.
  assert.deepEqual(
    ctl.drain(view(2, 2, { inFlight: 3 })).dispatch.map((r) => r.id),
    ['b0'],
  );
});
