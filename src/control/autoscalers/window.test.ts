import assert from 'node:assert/strict';
import { test } from 'node:test';
import { trafficWindow } from './test-support.ts';
import { TRAILING_WINDOW_VALUES_MAX, TrailingWindow, trailingMean } from './window.ts';

test('trailingMean weighs each window by its overlap with the span and skips NaN', () => {
  const history = [
    trafficWindow(0, 2000, { meanConcurrency: 100 }),
    trafficWindow(2000, 4000, { meanConcurrency: 10 }),
    trafficWindow(4000, 6000, { meanConcurrency: Number.NaN }),
    trafficWindow(6000, 8000, { meanConcurrency: 40 }),
  ];
  const c = (w: { meanConcurrency: number }) => w.meanConcurrency;
  assert.equal(trailingMean(history, 8000, 2000, c), 40);
  // (3000, 8000]: half of the 10 window, the NaN one skipped, all of the 40 one: (10 + 2 x 40) / 3.
  assert.equal(trailingMean(history, 8000, 5000, c), 30);
  assert.ok(Number.isNaN(trailingMean(history, 20_000, 2000, c)), 'nothing in the span');
});

test('a TrailingWindow keeps (at - span, at], always its newest value, and at most its bound', () => {
  const w = new TrailingWindow(4000);
  for (const [at, v] of [
    [0, 5],
    [2000, 1],
    [4000, 3],
  ] as const)
    w.record(at, v);
  assert.deepEqual([w.size, w.min(), w.max(), w.mean()], [2, 1, 3, 2], 'the value at 0 left at 4000');
  const now = new TrailingWindow(0);
  now.record(0, 7);
  now.record(1, 9);
  assert.deepEqual([now.size, now.max()], [1, 9]);
  const dense = new TrailingWindow(3_600_000);
  for (let i = 0; i < TRAILING_WINDOW_VALUES_MAX + 10; i++) dense.record(i, i);
  assert.equal(dense.size, TRAILING_WINDOW_VALUES_MAX);
  assert.equal(dense.min(), 10, 'the oldest values go first');
  dense.clear();
  assert.deepEqual([dense.max(), Number.isNaN(dense.mean())], [Number.NEGATIVE_INFINITY, true], 'cleared');
  dense.record(5, 2);
  assert.deepEqual([dense.size, dense.mean()], [1, 2], 'and it fills again from the next value');
});
