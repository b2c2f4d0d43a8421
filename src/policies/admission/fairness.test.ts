import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Request } from '../../core/request.ts';
import { createAdmissionController } from './controller.ts';
import { req, view } from './test-support.ts';
import type { AdmissionQueue } from './types.ts';

/** One instance that holds one request at a time: each step completes it and drains the next. */
function oneSlot(extra: Record<string, unknown> = {}): AdmissionQueue {
  return createAdmissionController({
    gate: { inFlightMax: 1, waitingMax: 1000 },
    shedding: { shedOnEstimatedWait: false },
    ...extra,
  });
}

class OneSlotHost {
  running: Request | undefined = undefined;
  nowMs = 0;
  readonly served: Request[] = [];

  constructor(readonly ctl: AdmissionQueue) {}

  offer(request: Request): void {
    const v = view(this.nowMs, 1, { inFlight: this.running === undefined ? 0 : 1 });
    const result = this.ctl.offer(request, v);
    assert.notEqual(result.kind, 'reject');
    if (result.kind === 'dispatch') this.start(request);
  }

  /** Completes what runs and dispatches what the controller releases next. */
  step(): Request | undefined {
    this.nowMs += 10;
    if (this.running !== undefined) {
      const r = this.running;
      this.ctl.onCompleted(r, { inputTokens: r.inputTokens, completionTokens: r.maxTokens ?? 0 }, this.nowMs);
      this.running = undefined;
    }
    const { dispatch } = this.ctl.drain(view(this.nowMs, 1));
    assert.ok(dispatch.length <= 1);
    const next = dispatch[0];
    if (next !== undefined) this.start(next);
    return next;
  }

  private start(request: Request): void {
    this.running = request;
    this.ctl.onDispatched(request, this.nowMs);
    this.served.push(request);
  }
}

function tokensOf(requests: readonly Request[], tenant: string): number {
  return requests
    .filter((r) => r.tenant === tenant)
    .reduce((sum, r) => sum + r.inputTokens + 2 * (r.maxTokens ?? 0), 0);
}

test('VTC: two tenants with equal demand get equal service', () => {
  const host = new OneSlotHost(oneSlot());
  host.offer(req('warm', { tenant: 'x' })); // occupies the slot so the rest queue
  for (let i = 0; i < 100; i++) {
    host.offer(req(`a${i}`, { tenant: 'a', arrivalMs: i }));
    host.offer(req(`b${i}`, { tenant: 'b', arrivalMs: i }));
  }
  const order: string[] = [];
  for (let i = 0; i < 100; i++) order.push(host.step()?.tenant ?? '-');
  const a = order.filter((t) => t === 'a').length;
  assert.equal(a, 50, `a got ${a} of 100`);
  // At every prefix the two differ by at most one request: VTC alternates.
  let diff = 0;
  for (const t of order) {
    diff += t === 'a' ? 1 : -1;
    assert.ok(Math.abs(diff) <= 1, order.join(''));
  }
});

test('VTC: service is equal in weighted tokens, not in requests', () => {
  const host = new OneSlotHost(oneSlot());
  host.offer(req('warm', { tenant: 'x' }));
  for (let i = 0; i < 200; i++) {
    host.offer(req(`big${i}`, { tenant: 'big', inputTokens: 1000, maxTokens: 100, arrivalMs: i }));
    host.offer(req(`small${i}`, { tenant: 'small', inputTokens: 100, maxTokens: 10, arrivalMs: i }));
  }
  for (let i = 0; i < 120; i++) host.step();
  const served = host.served.slice(1);
  const big = tokensOf(served, 'big');
  const small = tokensOf(served, 'small');
  // VTC bounds the gap between backlogged tenants by about two of the largest requests' cost.
  assert.ok(Math.abs(big - small) <= 2 * 1200, `big ${big} small ${small}`);
  assert.ok(
    served.filter((r) => r.tenant === 'small').length > 5 * served.filter((r) => r.tenant === 'big').length,
  );
});

test('VTC: a heavy tenant cannot starve a light one', () => {
  const host = new OneSlotHost(oneSlot());
  host.offer(req('warm', { tenant: 'x' }));
  for (let i = 0; i < 300; i++) host.offer(req(`h${i}`, { tenant: 'heavy', arrivalMs: 0 }));
  for (let round = 0; round < 20; round++) {
    for (let i = 0; i < 9; i++) host.step();
    const light = req(`l${round}`, { tenant: 'light', arrivalMs: host.nowMs });
    host.offer(light);
    // The light request goes out at the next dispatch (or the one after), not behind 300 heavy ones.
    const next = [host.step(), host.step()].map((r) => r?.id);
    assert.ok(next.includes(light.id), `round ${round}: ${next.join(',')}`);
  }
});

test('VTC: weights divide the charge (weight 3 gets three times the service)', () => {
  const host = new OneSlotHost(oneSlot({ tenants: { gold: { weight: 3 } } }));
  host.offer(req('warm', { tenant: 'x' }));
  for (let i = 0; i < 200; i++) {
    host.offer(req(`g${i}`, { tenant: 'gold', arrivalMs: i }));
    host.offer(req(`s${i}`, { tenant: 'silver', arrivalMs: i }));
  }
  for (let i = 0; i < 100; i++) host.step();
  const gold = host.served.filter((r) => r.tenant === 'gold').length;
  assert.ok(gold >= 74 && gold <= 76, `gold got ${gold} of 100`);
});

test('VTC: a tenant returning from idle gets no banked credit', () => {
  const host = new OneSlotHost(oneSlot());
  host.offer(req('warm', { tenant: 'x' }));
  for (let i = 0; i < 20; i++) host.offer(req(`b${i}`, { tenant: 'b', arrivalMs: 0 }));
  for (let i = 0; i < 400; i++) host.offer(req(`a${i}`, { tenant: 'a', arrivalMs: 0 }));
  // Both backlogged, then b runs dry and a is served alone for a long while.
  for (let i = 0; i < 240; i++) host.step();
  assert.equal(host.served.filter((r) => r.tenant === 'b').length, 20);
  const ctl = host.ctl;
  assert.ok((ctl.counter('a', 'online') ?? 0) > (ctl.counter('b', 'online') ?? 0) + 100 * 200);
  // b comes back with a backlog: it shares evenly from now on instead of spending its idle time.
  for (let i = 0; i < 40; i++) host.offer(req(`b2-${i}`, { tenant: 'b', arrivalMs: host.nowMs }));
  const order: string[] = [];
  for (let i = 0; i < 40; i++) order.push(host.step()?.tenant ?? '-');
  const b = order.filter((t) => t === 'b').length;
  assert.ok(b >= 19 && b <= 21, `b got ${b} of 40: ${order.join('')}`);
});

test('EDF within a tenant: earliest deadline first, then arrival, then id', () => {
  const host = new OneSlotHost(oneSlot());
  host.offer(req('warm', { tenant: 'x' }));
  const slo = (ttftMs: number) => ({ ttftMs, tpotMs: 100 });
  host.offer(req('late', { arrivalMs: 0, slo: slo(5000) }));
  host.offer(req('soon', { arrivalMs: 5, slo: slo(100) }));
  host.offer(req('mid-b', { arrivalMs: 3, slo: slo(997) })); // deadline 1000
  host.offer(req('mid-a', { arrivalMs: 2, slo: slo(998) })); // deadline 1000, earlier arrival
  host.offer(req('default', { arrivalMs: 1 })); // online band default: 30 s
  host.offer(req('same-z', { arrivalMs: 4, slo: slo(2000) }));
  host.offer(req('same-y', { arrivalMs: 4, slo: slo(2000) }));
  const order: string[] = [];
  for (let i = 0; i < 7; i++) order.push(host.step()?.id ?? '-');
  assert.deepEqual(order, ['soon', 'mid-a', 'mid-b', 'same-y', 'same-z', 'late', 'default']);
});
