import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import {
  comparisonToJson,
  roundFloat,
  stringifyJson,
  summaryToJson,
  toJsonValue,
  writeJsonFile,
} from './json.ts';
import { sampleReportData } from './sample.ts';
import type { SimSummary } from './types.ts';

/** The same object with its keys inserted in reverse, at every level. */
function reversedKeys<T>(value: T): T {
  if (Array.isArray(value)) return value.map(reversedKeys) as T;
  if (value === null || typeof value !== 'object') return value;
  const out: Record<string, unknown> = {};
  for (const k of Object.keys(value).reverse()) out[k] = reversedKeys((value as Record<string, unknown>)[k]);
  return out as T;
}

test('roundFloat keeps integers, rounds to 6 significant digits, maps non-finite to null', () => {
  assert.equal(roundFloat(12.3456789), 12.3457);
  assert.equal(roundFloat(0.987654321), 0.987654);
  assert.equal(roundFloat(1234567.891), 1234570);
  assert.equal(roundFloat(123456789), 123456789);
  assert.equal(roundFloat(1e-9 / 3), 3.33333e-10);
  assert.ok(Object.is(roundFloat(-0), 0));
  assert.equal(roundFloat(Number.NaN), null);
  assert.equal(roundFloat(Number.POSITIVE_INFINITY), null);
});

test('summaryToJson is deterministic whatever the key order and float noise', () => {
  const { summary } = sampleReportData({ instances: 3 });
  const a = stringifyJson(summaryToJson(summary));
  const b = stringifyJson(summaryToJson(reversedKeys(summary)));
  assert.equal(a, b);
  const noisy: SimSummary = {
    ...summary,
    ttftMs: { ...summary.ttftMs, p99: summary.ttftMs.p99 * (1 + 1e-12) },
  };
  assert.equal(stringifyJson(summaryToJson(noisy)), a);
  const json = summaryToJson(summary);
  assert.deepEqual(Object.keys(json).slice(0, 4), ['policy', 'seed', 'workload', 'instances']);
  assert.equal(Object.keys(json).at(-1), 'perInstance');
  assert.deepEqual(Object.keys(json['ttftMs'] as object), ['mean', 'p50', 'p90', 'p99', 'count']);
  assert.deepEqual(Object.keys(json['sloAttainment'] as object), ['ttft', 'tpot', 'both']);
  const first = (json['perInstance'] as Record<string, unknown>[])[0] as Record<string, unknown>;
  assert.deepEqual(Object.keys(first).slice(0, 3), ['id', 'gpu', 'model']);
  assert.equal(json['requests'], summary.requests);
});

test('wall-clock fields can be left out, fields added later are kept in sorted order', () => {
  const { summary } = sampleReportData({ instances: 2 });
  const slow = { ...summary, wallSeconds: 99, eventsPerWallS: 1 };
  assert.equal(
    stringifyJson(summaryToJson(summary, { wallClock: false })),
    stringifyJson(summaryToJson(slow, { wallClock: false })),
  );
  assert.ok(!('wallSeconds' in summaryToJson(summary, { wallClock: false })));
  const extended = { ...summary, zeta: 1.23456789, alpha: { b: 1, a: 2 } } as SimSummary;
  const keys = Object.keys(summaryToJson(extended));
  assert.deepEqual(keys.slice(-2), ['alpha', 'zeta']);
  assert.deepEqual(Object.keys(summaryToJson(extended)['alpha'] as object), ['a', 'b']);
  assert.deepEqual(toJsonValue({ b: [1.23456789, Number.NaN], a: undefined, c: null }), {
    b: [1.23457, null],
    c: null,
  });
});

test('the not-served breakdown sits beside rejected: refusals by code, then failures by reason', () => {
  const { summary } = sampleReportData({ instances: 2 });
  const s: SimSummary = {
    ...summary,
    failedByReason: { upstream: 2 },
    reliability: { faults: 1, failed: 2, retried: 0, connectFailures: 1, ejections: 1, readmissions: 0 },
    rejectedByCode: { SY_ERR_SLO_UNREACHABLE: 1 },
  };
  const keys = Object.keys(summaryToJson(s));
  const at = keys.indexOf('rejected');
  assert.deepEqual(keys.slice(at, at + 3), ['rejected', 'rejectedByCode', 'failedByReason']);
});

test('comparisonToJson keeps the given order and accepts a Map or rows', () => {
  const a = sampleReportData({ policy: 'b-policy' }).summary;
  const b = sampleReportData({ policy: 'a-policy', seed: 2 }).summary;
  const fromMap = comparisonToJson(
    new Map([
      ['b-policy', a],
      ['a-policy', b],
    ]),
  );
  assert.deepEqual(Object.keys(fromMap), ['b-policy', 'a-policy']);
  const fromRows = comparisonToJson([
    { name: 'b-policy', summary: a, goodputRps: 7.123456789 },
    { name: 'a-policy', summary: b },
  ]);
  const entry = fromRows['b-policy'] as Record<string, unknown>;
  assert.equal(Object.keys(entry)[0], 'goodputRps');
  assert.equal(entry['goodputRps'], 7.12346);
  assert.deepEqual(fromRows['a-policy'], fromMap['a-policy']);
  assert.equal(
    stringifyJson(fromMap),
    stringifyJson(
      comparisonToJson(
        new Map([
          ['b-policy', a],
          ['a-policy', b],
        ]),
      ),
    ),
  );
});

test('writeJsonFile writes the canonical text, creating folders', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'sy-json-'));
  try {
    const path = join(dir, 'nested', 'out.json');
    const value = summaryToJson(sampleReportData().summary);
    await writeJsonFile(path, value);
    const text = await readFile(path, 'utf8');
    assert.equal(text, stringifyJson(value));
    assert.ok(text.endsWith('}\n'));
    assert.deepEqual(JSON.parse(text), value);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
