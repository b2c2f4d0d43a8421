import assert from 'node:assert/strict';
import { test } from 'node:test';
import { fmtMs } from '../../stats/format.ts';
import { sampleReportData } from './sample.ts';
import { formatComparisonTable, formatSummaryTable } from './table.ts';

const ESC = '\u001b[';

test('summary table shows the key figures', () => {
  const { summary } = sampleReportData({ instances: 20 });
  const text = formatSummaryTable(summary);
  for (const figure of [
    fmtMs(summary.ttftMs.p99),
    fmtMs(summary.ttftMs.mean),
    fmtMs(summary.tpotMs.p90),
    fmtMs(summary.e2eMs.p50),
    '5,000',
    'TTFT ≤ 500 ms',
    'TPOT ≤ 50 ms',
    'tok/s',
    'req/s',
    'prefix hit rate 41.0%',
    'GPU-seconds',
    'events/s',
  ]) {
    assert.ok(text.includes(figure), `missing ${figure}`);
  }
  assert.match(text, /│ TTFT\s+│/);
  assert.match(text, /│ ITL\s+│/);
  // 16 instance rows, then the rest in one line.
  assert.ok(text.includes('i15'));
  assert.ok(!text.includes('i16'));
  assert.ok(text.includes('… 4 more instances'));
  assert.ok(!text.includes(ESC), 'no ANSI codes without color');
});

test('summary table honours instanceRowsMax and colour', () => {
  const { summary } = sampleReportData({ instances: 3 });
  const all = formatSummaryTable(summary, { instanceRowsMax: 16 });
  assert.ok(all.includes('i2') && !all.includes('more instances'));
  const none = formatSummaryTable(summary, { instanceRowsMax: 0 });
  assert.ok(!none.includes('│ instance'));
  assert.ok(formatSummaryTable(summary, { color: true }).includes(ESC));
});

test('comparison table has one row per policy and goodput only when given', () => {
  const a = sampleReportData({ policy: 'least-request' }).summary;
  const b = sampleReportData({ policy: 'prefix-aware', seed: 2, slowdown: 0.8 }).summary;
  const c = sampleReportData({ policy: 'random', seed: 3, slowdown: 1.3 }).summary;
  const rows = [
    { name: 'least-request', summary: a },
    { name: 'prefix-aware', summary: b, goodputRps: 8.25 },
    { name: 'random', summary: c },
  ];
  const text = formatComparisonTable(rows);
  const lines = text.split('\n');
  for (const r of rows) assert.equal(lines.filter((l) => l.includes(`│ ${r.name} `)).length, 1, r.name);
  // Header box, 2 heading lines, rule, 3 rows, bottom box.
  assert.equal(lines.length, 8);
  assert.ok(text.includes('goodput'));
  assert.ok(text.includes('8.25'));
  assert.ok(text.includes(fmtMs(b.ttftMs.p99)));
  assert.ok(!text.includes(ESC));
  assert.ok(!formatComparisonTable(rows.map(({ name, summary }) => ({ name, summary }))).includes('goodput'));
  const colored = formatComparisonTable(rows, { color: true });
  assert.ok(colored.includes(`${ESC}32m`), 'best values are green');
});

test('comparison percentiles and hit rate count rejected requests: ∞ where a percentile lands among them', () => {
  const base = sampleReportData({ policy: 'a' }).summary;
  const served = { ...base, rejected: 0, ttftMsAll: { p50: 40, p90: 90, p99: 300, count: 100 } };
  // 5% rejected: their +∞ holds the p99 of TTFT, so it prints ∞, and the rejected column says 5.
  const refusing = {
    ...base,
    rejected: 5,
    ttftMsAll: { p50: 30, p90: 60, p99: Number.POSITIVE_INFINITY, count: 100 },
    prefixHitRate: 0.5,
    prefixHitRateAll: 0.25,
  };
  const text = formatComparisonTable([
    { name: 'served', summary: served },
    { name: 'refusing', summary: refusing },
  ]);
  const row = text.split('\n').find((l) => l.includes('│ refusing ')) ?? '';
  assert.ok(row.includes('∞'), row);
  assert.ok(row.includes('25.0%') && !row.includes('50.0%'), `hit rate over all prompt tokens: ${row}`);
  assert.match(row, /│\s+5 │$/);
  assert.ok(text.includes('rejected'));
});

test('summary table adds the all-requests rows only when something was rejected', () => {
  const { summary } = sampleReportData({ instances: 2 });
  assert.ok(!formatSummaryTable({ ...summary, rejected: 0 }).includes('TTFT all'));
  const text = formatSummaryTable({
    ...summary,
    rejected: 3,
    ttftMsAll: { p50: 10, p90: 20, p99: Number.POSITIVE_INFINITY, count: 50 },
  });
  assert.ok(/│ TTFT all\s+│.*∞/.test(text), text);
});
