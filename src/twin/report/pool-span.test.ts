import assert from 'node:assert/strict';
import { test } from 'node:test';
import { gpuSecondsText, poolSpan } from './pool.ts';

/**
 * A controlled run billed past its last completion (46ae0aa: to the workload's declared end,
 * `billedUntilS`): the pool's ceiling and the text span the bills, not the summary's simulated
 * seconds; without a later end both stay the summary's.
 */

const SUMMARY = { gpuSeconds: 296, instances: 4, simulatedSeconds: 74 };

test('the ceiling spans billedUntilS when the bills run past the last completion', () => {
  const pool = { gpuHours: 1.333, gpus: 4, shared: false, billedUntilS: 1200, slotGpus: 4 };
  assert.deepEqual(poolSpan(SUMMARY, pool), { seconds: 1200, ceilingGpuSeconds: 4800 });
  const text = gpuSecondsText(SUMMARY, pool);
  assert.ok(text.includes('pool ceiling 4,800 (all 4 slots for the whole run, billed to 1,200.0 s)'), text);
});

test("without a later end the span is the summary's own, and the text names no end", () => {
  const plain = { gpuHours: 0.082, gpus: 4, shared: false };
  assert.deepEqual(poolSpan(SUMMARY, plain), { seconds: 74, ceilingGpuSeconds: 296 });
  const same = { ...plain, billedUntilS: 74, slotGpus: 4 };
  assert.deepEqual(poolSpan(SUMMARY, same), { seconds: 74, ceilingGpuSeconds: 296 });
  const text = gpuSecondsText(SUMMARY, same);
  assert.ok(text.endsWith('pool ceiling 296 (all 4 slots for the whole run)'), text);
});
