import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { BackendProgress, findStalls, type StallInput } from './stall.ts';

const STALL_AFTER_MS = 1000;

function backend(lastByteMs: number, outstanding: number, options: Partial<StallInput> = {}): StallInput {
  const progress = new BackendProgress();
  progress.lastByteMs = lastByteMs;
  return { progress, outstanding, healthy: true, probeFailing: true, ...options };
}

describe('findStalls', () => {
  it('finds a quiet backend with work while another delivers', () => {
    const backends = [backend(5000, 3), backend(9800, 2), backend(9900, 0)];
    assert.deepEqual(findStalls(backends, 10_000, STALL_AFTER_MS), [0]);
  });

  it('sees no stall when every backend is quiet (a cluster-wide slowdown)', () => {
    const backends = [backend(5000, 3), backend(8000, 2), backend(8500, 1)];
    assert.deepEqual(findStalls(backends, 10_000, STALL_AFTER_MS), []);
  });

  it('ignores an idle backend, and one that became busy within the window', () => {
    const idle = backend(1000, 0);
    const justBusy = backend(1000, 1);
    justBusy.progress.started(9500, 0);
    const active = backend(9900, 4);
    assert.deepEqual(findStalls([idle, justBusy, active], 10_000, STALL_AFTER_MS), []);
    assert.deepEqual(findStalls([idle, justBusy, active], 10_400, STALL_AFTER_MS), []);
    // Once the window has passed since it became busy, it is stalled.
    assert.deepEqual(findStalls([idle, justBusy, active], 10_501, STALL_AFTER_MS), [1]);
  });

  it("takes no backend's own bytes as evidence against it", () => {
    assert.deepEqual(findStalls([backend(5000, 1)], 10_000, STALL_AFTER_MS), []);
    assert.deepEqual(findStalls([backend(8000, 1), backend(7000, 1)], 10_000, STALL_AFTER_MS), []);
    const withThird = [backend(8000, 1), backend(7000, 1), backend(9500, 0)];
    assert.deepEqual(findStalls(withThird, 10_000, STALL_AFTER_MS), [0, 1]);
  });

  it('does not blame a quiet backend whose health checks pass (long non-streaming answers)', () => {
    const busy = backend(5000, 3, { probeFailing: false });
    const backends = [busy, backend(9900, 2)];
    assert.deepEqual(findStalls(backends, 10_000, STALL_AFTER_MS), []);
    // Once a check fails, the same silence is a stall.
    assert.deepEqual(
      findStalls([{ ...busy, probeFailing: true }, backend(9900, 2)], 10_000, STALL_AFTER_MS),
      [0],
    );
  });

  it('takes an idle backend whose check passes as the contrast (it has nothing left to send)', () => {
    // The others answered their share long ago and sit idle; only the frozen one fails its checks.
    const frozen = backend(5000, 3);
    const idle = backend(5100, 0, { probeFailing: false });
    assert.deepEqual(findStalls([frozen, idle], 10_000, STALL_AFTER_MS), [0]);
    // With the other one failing its checks too, nothing contrasts: no stall.
    assert.deepEqual(findStalls([frozen, backend(5100, 0)], 10_000, STALL_AFTER_MS), []);
  });

  it('counts an ejected backend as stalled without evidence from others', () => {
    const backends = [backend(5000, 2, { healthy: false }), backend(5000, 0)];
    assert.deepEqual(findStalls(backends, 10_000, STALL_AFTER_MS), [0]);
  });

  it('does not blame a backend whose only work is paused by slow clients', () => {
    const paused = backend(5000, 2);
    paused.progress.pausedAttempts = 2;
    const active = backend(9900, 1);
    assert.deepEqual(findStalls([paused, active], 10_000, STALL_AFTER_MS), []);
    paused.progress.pausedAttempts = 1;
    assert.deepEqual(findStalls([paused, active], 10_000, STALL_AFTER_MS), [0]);
  });

  it('reports a stall once: a declared one is skipped until a byte or re-admission clears it', () => {
    const backends = [backend(5000, 2), backend(9900, 1)];
    const b0 = (backends[0] as StallInput).progress;
    assert.deepEqual(findStalls(backends, 10_000, STALL_AFTER_MS), [0]);
    b0.stalled = true;
    assert.deepEqual(findStalls(backends, 10_100, STALL_AFTER_MS), []);
    b0.byte(10_100);
    assert.equal(b0.stalled, false);
    b0.stalled = true;
    b0.readmitted(10_200);
    assert.equal(b0.stalled, false);
    assert.equal(b0.busySinceMs, 10_200);
  });

  it('keeps busySince from the first outstanding attempt', () => {
    const p = new BackendProgress();
    p.started(100, 0);
    p.started(900, 1);
    assert.equal(p.busySinceMs, 100);
  });
});
