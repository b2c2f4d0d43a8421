import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ClusterSeriesRecorder } from './cluster-series.ts';

test('cluster series: cumulative totals survive decimation, every other point kept', () => {
  const recorder = new ClusterSeriesRecorder(8);
  for (let k = 0; k < 8; k++) {
    recorder.sample(k * 1000, { completed: 10 * k, rejected: k, outputTokens: 100 * k, sloMet: 9 * k });
  }
  const r = recorder.result();
  // The eighth point reached the bound: points 0, 2, 4, 6 remain, with their own totals.
  assert.deepEqual(r.tS, [0, 2, 4, 6]);
  assert.deepEqual(r.completed, [0, 20, 40, 60]);
  assert.deepEqual(r.rejected, [0, 2, 4, 6]);
  assert.deepEqual(r.outputTokens, [0, 200, 400, 600]);
  assert.deepEqual(r.sloMet, [0, 18, 36, 54]);
  // A later sample still carries the whole count to date: no count lost with the dropped points.
  recorder.sample(9000, { completed: 95, rejected: 9, outputTokens: 950, sloMet: 80 });
  assert.equal(recorder.result().completed.at(-1), 95);
});
