import assert from 'node:assert/strict';
import { test } from 'node:test';
import { MetricsCollector, meetsSlo, type RunDescription, tpotMs } from './metrics.ts';
import type { RequestRecord } from './types.ts';

const RUN: RunDescription = {
  url: 'http://x',
  endpoint: 'completions',
  model: 'm',
  stream: true,
  seed: 1,
  workload: { kind: 'poisson' },
};
const FACTS = { max: 4, overflow: 'wait' as const, peak: 2, overLimit: 0 };

function ok(
  index: number,
  ttftMs: number,
  e2eMs: number,
  outputTokens: number,
  itlMs: number[] = [],
): RequestRecord {
  return {
    index,
    scheduledMs: index * 100,
    sentMs: index * 100 + 1,
    ok: true,
    reason: undefined,
    status: 200,
    error: undefined,
    ttftMs,
    e2eMs,
    itlMs,
    inputTokens: 100,
    maxTokens: outputTokens,
    outputTokens,
    outputTokensFrom: 'usage',
  };
}

function failed(index: number, reason: string): RequestRecord {
  return {
    ...ok(index, 0, 5, 0),
    ok: false,
    reason,
    status: 503,
    ttftMs: undefined,
    outputTokens: 0,
  };
}

test('TPOT is (E2E - TTFT) / (tokens - 1); one output token has none', () => {
  assert.equal(tpotMs({ ttftMs: 100, e2eMs: 1000, outputTokens: 10 }), 100);
  assert.equal(tpotMs({ ttftMs: 100, e2eMs: 1000, outputTokens: 1 }), undefined);
  assert.equal(tpotMs({ ttftMs: undefined, e2eMs: 1000, outputTokens: 10 }), undefined);
});

test('an SLO check needs every given target met; a missing TPOT meets the TPOT target', () => {
  const r = ok(0, 200, 1100, 10); // TPOT 100
  assert.equal(meetsSlo(r, { ttftMs: 200, tpotMs: 100 }), true);
  assert.equal(meetsSlo(r, { ttftMs: 199, tpotMs: undefined }), false);
  assert.equal(meetsSlo(r, { ttftMs: undefined, tpotMs: 99 }), false);
  assert.equal(meetsSlo(ok(1, 10, 20, 1), { ttftMs: 50, tpotMs: 1 }), true);
  assert.equal(meetsSlo(failed(2, 'http_503'), { ttftMs: undefined, tpotMs: undefined }), false);
});

test('the summary: latency stats, throughput over the duration, failures by reason, goodput', () => {
  const m = new MetricsCollector({ ttftMs: 150, tpotMs: 20 }, false);
  m.add(ok(0, 100, 280, 10, [20, 20, 20, 20, 20, 20, 20, 20, 20])); // TPOT 20: meets
  m.add(ok(1, 200, 290, 10, [10, 10, 10, 10, 10, 10, 10, 10, 10])); // TTFT 200: misses
  m.add(ok(2, 50, 1050, 11)); // TPOT 100: misses
  m.add(ok(3, 120, 120, 1)); // one token: no TPOT, meets
  m.add(failed(4, 'http_503'));
  m.add(failed(5, 'http_503'));
  m.add(failed(6, 'timeout'));
  const s = m.summary(RUN, 2000, 7, FACTS);
  assert.equal(s.durationS, 2);
  assert.deepEqual(s.requests, { scheduled: 7, sent: 7, completed: 4, failed: 3 });
  assert.deepEqual(s.failures, { http_503: 2, timeout: 1 });
  assert.deepEqual(Object.keys(s.failures), ['http_503', 'timeout'], 'most frequent first');
  assert.equal(s.ttftMs.mean, (100 + 200 + 50 + 120) / 4);
  assert.equal(s.ttftMs.p50, 110); // type 7 between 100 and 120
  assert.equal(s.ttftMs.count, 4);
  assert.equal(s.tpotMs.count, 3);
  assert.equal(s.tpotMs.mean, (20 + 10 + 100) / 3);
  assert.equal(s.itlMs.count, 18);
  assert.equal(s.itlMs.mean, 15);
  assert.ok(Math.abs(s.e2eMs.p99 - (290 + 0.97 * (1050 - 290))) < 1e-9, String(s.e2eMs.p99));
  assert.equal(s.throughput.requestsPerS, 2);
  assert.equal(s.throughput.outputTokens, 32);
  assert.equal(s.throughput.outputTokensPerS, 16);
  assert.equal(s.throughput.totalTokensPerS, (400 + 32) / 2);
  assert.ok(s.goodput !== undefined);
  assert.equal(s.goodput.requestsMeeting, 2);
  assert.equal(s.goodput.requestsPerS, 1);
  assert.equal(s.goodput.attainment, 2 / 7);
  assert.equal(s.records, undefined);
});

test('no SLO, no goodput; records kept in index order with --save-requests', () => {
  const m = new MetricsCollector({ ttftMs: undefined, tpotMs: undefined }, true);
  m.add(ok(2, 10, 20, 2));
  m.add(ok(0, 10, 20, 2));
  m.add(failed(1, 'dropped'));
  const s = m.summary(RUN, 1000, 3, FACTS);
  assert.equal(s.goodput, undefined);
  assert.deepEqual(
    s.records?.map((r) => r.index),
    [0, 1, 2],
  );
});

test('an empty run gives zeros, not NaN', () => {
  const s = new MetricsCollector({ ttftMs: 1, tpotMs: 1 }, false).summary(RUN, 0, 0, FACTS);
  assert.equal(s.ttftMs.count, 0);
  assert.equal(s.throughput.requestsPerS, 0);
  assert.equal(s.goodput?.attainment, 0);
  assert.ok(!JSON.stringify(s).includes('null'));
});

test('send lag: sent minus scheduled, for requests that went out', () => {
  const m = new MetricsCollector({ ttftMs: undefined, tpotMs: undefined }, false);
  m.add({ ...ok(0, 1, 2, 2), scheduledMs: 0, sentMs: 4 });
  m.add({ ...ok(1, 1, 2, 2), scheduledMs: 10, sentMs: 12 });
  m.add({ ...failed(2, 'dropped'), e2eMs: undefined });
  const s = m.summary(RUN, 100, 3, FACTS);
  assert.equal(s.requests.sent, 2);
  assert.equal(s.concurrency.sendLagMs.mean, 3);
  assert.equal(s.concurrency.sendLagMs.count, 2);
});
