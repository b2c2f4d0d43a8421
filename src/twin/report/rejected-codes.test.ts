import assert from 'node:assert/strict';
import { test } from 'node:test';
import { sampleReportData } from './sample.ts';
import { formatSummaryTable } from './table.ts';

/**
 * A run whose requests were refused says why in the terminal, not only in the JSON: a multi-model
 * workload on a cluster that serves none of its models printed "rejected 12,536 (100.0%)" and
 * nothing else (every one SY_ERR_NO_INSTANCE).
 */
test('the summary names the codes of the rejected requests, most first', () => {
  const base = sampleReportData({ instances: 2 }).summary;
  const summary = {
    ...base,
    rejected: 12,
    rejectedByCode: { SY_ERR_QUEUE_FULL: 2, SY_ERR_NO_INSTANCE: 10, SY_ERR_RATE_LIMITED: 0 },
  };
  const text = formatSummaryTable(summary);
  assert.match(
    text,
    /"all" rows count the 12 rejected requests as ∞ \(an SLO miss\); rejected by code: SY_ERR_NO_INSTANCE 10, SY_ERR_QUEUE_FULL 2\n/,
  );
  assert.doesNotMatch(text, /SY_ERR_RATE_LIMITED/);
  // Without rejections there is no such line.
  assert.doesNotMatch(formatSummaryTable({ ...base, rejected: 0, rejectedByCode: {} }), /rejected by code/);
});
