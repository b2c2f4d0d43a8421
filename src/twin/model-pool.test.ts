import assert from 'node:assert/strict';
import { test } from 'node:test';
import { GpuBill, OPEN_INTERVALS_MAX } from '../control/serverless/gpu-bill.ts';
import type { Request } from '../core/request.ts';
import type { FinishedRequest } from '../engine-core/types.ts';
import { limitsConfigSchema } from '../gateway/config.ts';
import type { SimInstance } from './cluster.ts';
import { HELD_REQUESTS_MAX_DEFAULT, type InstanceCountPoint, ModelPool } from './model-pool.ts';

/** The pool reads only these of an instance; an idle one (nothing in flight) stops at once. */
function instances(n: number, tp: number): SimInstance[] {
  return Array.from(
    { length: n },
    (_, index) =>
      ({
        index,
        id: `m#${index}`,
        tp,
        inFlight: 0,
        draining: true,
        restartEngine: () => {},
      }) as unknown as SimInstance,
  );
}

function pool(n: number, tp: number): ModelPool {
  return new ModelPool(instances(n, tp), {
    variant: { model: 'llama-3.1-8b', gpu: 'h100', tp, role: 'both' },
    startupMs: 1000,
    objectives: {},
    onChange: () => {},
  });
}

/** A request of the pool's model that completed at `finishMs`. */
function completed(finishMs: number): FinishedRequest {
  return {
    request: { outputTokens: 8 },
    arrivalMs: finishMs - 100,
    firstScheduledMs: finishMs - 90,
    firstTokenMs: finishMs - 80,
    finishMs,
    cachedPromptTokens: 0,
    preemptions: 0,
  } as unknown as FinishedRequest;
}

/** GPU-hours under the series up to `endMs`: each point's instances until the next point, times tp. */
function integralGpuHours(series: readonly InstanceCountPoint[], endMs: number, tp: number): number {
  let ms = 0;
  for (const [i, p] of series.entries()) {
    const next = series[i + 1]?.timeS ?? endMs / 1000;
    ms += (p.ready + p.starting + p.draining) * tp * (Math.min(next * 1000, endMs) - p.timeS * 1000);
  }
  return ms / 3_600_000;
}

test('a pool bills each instance up to the run’s end, as its instance counts end there, stopped after it or not', () => {
  const tp = 2;
  const p = pool(3, tp);
  // Ticks every second; every start and stop falls on a tick, so the series is exact.
  p.start(0, 0);
  p.start(2, 0);
  p.record(0, 2, false);
  for (let t = 1000; t <= 10_000; t += 1000) {
    if (t === 2000) p.start(1, t);
    if (t === 5000) p.drain(1, t);
    p.finishStarts(t);
    if (t === 6000) p.completion(completed(6000)); // the run's last completion
    if (t === 9000) p.drain(0, t); // a keep-alive runs out after the run's end
    p.record(t, p.count('ready') + p.count('starting'), true);
  }
  const endMs = 6000;
  // Slot 0: 0..6 s (stopped at 9 s), slot 1: 2..5 s, slot 2: 0..6 s (still running): 15 s x 2 GPUs.
  const billed = p.gpuHoursAt(endMs);
  assert.equal(billed, ((6000 + 3000 + 6000) * tp) / 3_600_000);
  const series = p.instancesUntil(endMs);
  assert.equal(series.at(-1)?.timeS, 6);
  assert.ok(
    Math.abs(integralGpuHours(series, endMs, tp) - billed) < 1e-12,
    `${integralGpuHours(series, endMs, tp)} vs ${billed}`,
  );
  // The full series goes on to the last tick; only the part up to the end is the run's.
  assert.equal(p.instancesOverTime.at(-1)?.timeS, 10);
});

test('an instance started after the run’s end bills nothing, stopped or not', () => {
  const p = pool(2, 1);
  p.start(0, 0);
  p.completion(completed(1000));
  p.start(1, 3000);
  p.drain(0, 4000);
  assert.equal(p.gpuHoursAt(1000), 1000 / 3_600_000);
  p.drain(1, 5000);
  assert.equal(p.gpuHoursAt(1000), 1000 / 3_600_000);
});

test('GpuBill clips each closed interval at the end and folds those closed before a completion', () => {
  const bill = new GpuBill();
  bill.close(0, 1000, 2);
  bill.settle(1500);
  assert.equal(bill.unsettled, 0);
  bill.close(500, 1200, 1); // closed before the latest completion: final
  bill.close(1000, 4000, 1); // closed after it: clipped at the end
  assert.equal(bill.unsettled, 1);
  assert.equal(bill.totalMs(2000), 2000 + 700 + 1000);
  assert.equal(bill.totalMs(5000), 2000 + 700 + 3000);
  bill.settle(4000);
  assert.equal(bill.unsettled, 0);
  assert.equal(bill.totalMs(4000), 2000 + 700 + 3000);
  // An end before a completion seen is a programming error.
  assert.throws(() => bill.totalMs(3000), /precedes a completion/);
  bill.close(3000, 3000, 4);
  bill.close(3000, 3500, 0);
  assert.equal(bill.totalMs(4000), 5700);
});

test('GpuBill keeps a bounded list for a pool that never completes, and bills exactly at any end after what it folded', () => {
  const bill = new GpuBill();
  // 10,000 starts and stops of 1-3 GPUs, 20 s held every 30 s, and no completion: nothing settles.
  const intervals: [number, number, number][] = [];
  for (let k = 0; k < 10_000; k++) intervals.push([k * 30_000, k * 30_000 + 20_000, 1 + (k % 3)]);
  for (const [from, to, gpus] of intervals) {
    bill.close(from, to, gpus);
    assert.ok(bill.unsettled <= OPEN_INTERVALS_MAX, `${bill.unsettled} unsettled`);
  }
  const folded = bill.foldedThroughMs;
  const lastMs = (intervals.at(-1) as [number, number, number])[1];
  assert.ok(folded > 0 && folded < lastMs, `folded through ${folded}`);
  const exact = (endMs: number): number =>
    intervals.reduce((ms, [from, to, gpus]) => ms + Math.max(0, Math.min(to, endMs) - from) * gpus, 0);
  // Ends inside the kept tail, in a gap, past everything: clipped exactly as without the bound.
  for (const endMs of [folded, folded + 10_000, lastMs - 5000, lastMs - 15_000, lastMs, lastMs + 1e6])
    assert.equal(bill.totalMs(endMs), exact(endMs), `end ${endMs}`);
  // An end before what was billed whole cannot be billed exactly: the bill is an upper bound, never a
  // failed run (over by what the folded intervals held past the end).
  const early = folded - 1;
  assert.ok(bill.totalMs(early) >= exact(early) && bill.totalMs(early) <= exact(folded), `end ${early}`);
  // A completion folds the rest as before.
  bill.settle(lastMs);
  assert.equal(bill.unsettled, 0);
  assert.equal(bill.totalMs(lastMs), exact(lastMs));
});

test('a model at zero holds every arrival of a 47 s cold start at 20 req/s by default, as the gateway would', () => {
  // The gateway's default and the twin's are one constant.
  assert.equal(HELD_REQUESTS_MAX_DEFAULT, limitsConfigSchema.parse({}).scaleFromZeroBufferMax);
  const p = pool(1, 1);
  p.start(0, 0, 47_000);
  const verdicts = new Map<string, number>();
  // 20 req/s until the start completes: 940 arrivals, all within the 120 s wait.
  for (let t = 0; t < 47_000; t += 50) {
    const v = p.hold({ id: `r${t}` } as unknown as Request, false, t);
    verdicts.set(v, (verdicts.get(v) ?? 0) + 1);
  }
  assert.deepEqual([...verdicts], [['held', 940]]);
  p.finishStarts(47_000);
  assert.equal(p.releaseHeld().length, 940);
});
