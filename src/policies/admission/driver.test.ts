import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Request } from '../../core/request.ts';
import type { ClusterView } from '../../core/view.ts';
import { createAdmissionController } from './controller.ts';
import { AdmissionDriver, type AdmissionHost } from './driver.ts';
import { req, saturated, view } from './test-support.ts';
import type { QueueRejection } from './types.ts';

/** A host with a settable clock and view that records what the driver asked of it. */
class RecordingHost implements AdmissionHost {
  now = 0;
  current: ClusterView = saturated(0);
  readonly sent: string[] = [];
  readonly rejected: QueueRejection[] = [];
  readonly armed: number[] = [];
  refuse = new Set<string>();
  onSend: ((request: Request) => void) | undefined;

  nowMs(): number {
    return this.now;
  }
  view(nowMs: number): ClusterView {
    return { ...this.current, nowMs };
  }
  send(request: Request): boolean {
    this.onSend?.(request);
    if (this.refuse.has(request.id)) return false;
    this.sent.push(request.id);
    return true;
  }
  reject(rejection: QueueRejection): void {
    this.rejected.push(rejection);
  }
  armWake(atMs: number): number {
    this.armed.push(atMs);
    return atMs;
  }
}

test('offer sends at once when there is room; otherwise drain sends once room opens', () => {
  const host = new RecordingHost();
  const ctl = createAdmissionController();
  const driver = new AdmissionDriver(ctl, host);
  host.current = view(0);
  let sentNow = 0;
  assert.equal(driver.offer(req('a'), () => ++sentNow > 0).kind, 'dispatch');
  assert.equal(sentNow, 1);
  host.current = saturated(0);
  assert.equal(driver.offer(req('b'), () => ++sentNow > 0).kind, 'queued');
  driver.drain();
  assert.deepEqual(host.sent, []);
  assert.equal(host.armed.length, 1, 'a queued request arms one wake-up');
  host.now = 10;
  host.current = view(10);
  driver.drain();
  assert.deepEqual(host.sent, ['b']);
  assert.equal(ctl.stats.dispatched, 2);
  assert.equal(ctl.queued, 0);
});

test('a send that fails tells admission the request failed; expired requests go to reject', () => {
  const host = new RecordingHost();
  const ctl = createAdmissionController();
  const driver = new AdmissionDriver(ctl, host);
  driver.offer(req('gone'), () => true);
  driver.offer(req('late', { slo: { ttftMs: 100, tpotMs: 50 } }), () => true);
  assert.equal(ctl.queued, 2);
  host.refuse.add('gone');
  host.now = 50;
  host.current = view(50);
  driver.drain();
  // 'gone' was released, refused by the host, and no longer counts as in flight for its tenant.
  assert.deepEqual(host.sent, ['late']);
  assert.equal(ctl.stats.dispatched, 2);
  const h2 = new RecordingHost();
  const again = new AdmissionDriver(createAdmissionController(), h2);
  again.offer(req('x', { slo: { ttftMs: 100, tpotMs: 50 } }), () => true);
  h2.now = 500;
  again.wake();
  assert.equal(h2.rejected.length, 1);
  assert.equal(h2.rejected[0]?.code, 'SY_ERR_SLO_UNREACHABLE');
});

test('a drain started from inside a send coalesces into one more round, never nests', () => {
  const host = new RecordingHost();
  const ctl = createAdmissionController();
  const driver = new AdmissionDriver(ctl, host);
  for (const id of ['a', 'b', 'c']) driver.offer(req(id), () => true);
  let depth = 0;
  let maxDepth = 0;
  host.onSend = () => {
    depth++;
    maxDepth = Math.max(maxDepth, depth);
    driver.drain();
    depth--;
  };
  host.current = view(0);
  driver.drain();
  assert.deepEqual(host.sent, ['a', 'b', 'c']);
  assert.equal(maxDepth, 1);
});

test('one wake-up is armed at a time; an earlier one replaces it, a later one does not', () => {
  const host = new RecordingHost();
  const driver = new AdmissionDriver(createAdmissionController(), host);
  driver.offer(req('a', { slo: { ttftMs: 5000, tpotMs: 50 } }), () => true);
  driver.drain();
  const first = host.armed.at(-1) as number;
  assert.equal(driver.wakeAtMs, first);
  driver.drain();
  assert.equal(host.armed.length, 1, 'the same or a later wake-up is not armed again');
  driver.offer(req('b', { slo: { ttftMs: 1, tpotMs: 50 } }), () => true);
  driver.drain();
  assert.ok((host.armed.at(-1) as number) < first, 'an earlier deadline re-arms earlier');
  host.now = driver.wakeAtMs;
  driver.wake();
  assert.ok(driver.wakeAtMs >= host.now);
});
