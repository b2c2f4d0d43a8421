import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { azureDeltaMs, azureReader, formatAzureTimestamp, parseAzureTimestamp } from './azure.ts';
import { traceReaderConformance } from './conformance.ts';
import { NO_HASH_IDS } from './text.ts';

const HEADER = 'TIMESTAMP,ContextTokens,GeneratedTokens';

traceReaderConformance(azureReader, {
  valid: {
    text: [
      HEADER,
      '2023-11-16 18:15:46.6805900,374,44',
      '2023-11-16 18:15:50.9951690,396,109',
      '2023-11-16 18:15:50.9951691,879,55',
      '2023-11-16 23:59:59.9999999,91,16',
      '2023-11-17 00:00:00.0000000,0,0',
    ].join('\r\n'),
    expected: [
      { arrivalMs: 0, inputTokens: 374, outputTokens: 44, hashIds: NO_HASH_IDS },
      { arrivalMs: 4314.579, inputTokens: 396, outputTokens: 109, hashIds: NO_HASH_IDS },
      { arrivalMs: 4314.5791, inputTokens: 879, outputTokens: 55, hashIds: NO_HASH_IDS },
      { arrivalMs: 20_653_319.4099, inputTokens: 91, outputTokens: 16, hashIds: NO_HASH_IDS },
      { arrivalMs: 20_653_319.41, inputTokens: 0, outputTokens: 0, hashIds: NO_HASH_IDS },
    ],
  },
  malformed: [
    { name: 'a wrong header', text: 'time,in,out\n2023-11-16 18:15:46.68,1,2', line: 1 },
    { name: 'a header with no rows', text: `${HEADER}\n`, line: 2 },
    {
      name: 'a missing column',
      text: `${HEADER}\n2023-11-16 18:15:46.68,1,2\n2023-11-16 18:15:47.00,5`,
      line: 3,
    },
    { name: 'an extra column', text: `${HEADER}\n2023-11-16 18:15:46.68,1,2,3`, line: 2 },
    { name: 'a non-numeric token count', text: `${HEADER}\n2023-11-16 18:15:46.68,abc,2`, line: 2 },
    { name: 'a negative token count', text: `${HEADER}\n2023-11-16 18:15:46.68,1,-2`, line: 2 },
    { name: 'a fractional token count', text: `${HEADER}\n2023-11-16 18:15:46.68,1.5,2`, line: 2 },
    { name: 'a malformed timestamp', text: `${HEADER}\n2023/11/16 18:15:46,1,2`, line: 2 },
    { name: 'an impossible date', text: `${HEADER}\n2023-02-30 18:15:46.1,1,2`, line: 2 },
    { name: 'an impossible time', text: `${HEADER}\n2023-11-16 24:00:00.1,1,2`, line: 2 },
  ],
  arrivalQuantumMs: 1e-4,
  carriesHashIds: false,
});

describe('Azure timestamps', () => {
  it('parse without time zones and keep 100 ns precision', () => {
    const a = parseAzureTimestamp('2023-11-16 18:17:03.9799600');
    const b = parseAzureTimestamp('2023-11-16 18:17:03.9799601');
    assert.ok(a && b);
    assert.equal(azureDeltaMs(a, b), 0.0001);
  });

  it('cross month, year and leap-day boundaries', () => {
    const dec31 = parseAzureTimestamp('2023-12-31 23:59:59');
    const jan1 = parseAzureTimestamp('2024-01-01 00:00:00');
    const feb29 = parseAzureTimestamp('2024-02-29 12:00:00');
    assert.ok(dec31 && jan1 && feb29);
    assert.equal(azureDeltaMs(dec31, jan1), 1000);
    assert.equal(azureDeltaMs(jan1, feb29), (59 * 24 + 12) * 3_600_000);
    assert.equal(parseAzureTimestamp('2023-02-29 12:00:00'), undefined);
  });

  it('format and parse back', () => {
    const base = parseAzureTimestamp('2023-11-16 00:00:00');
    assert.ok(base);
    for (const ms of [0, 0.0001, 4314.579, 86_400_000 * 45 + 1.5]) {
      const t = parseAzureTimestamp(formatAzureTimestamp(ms));
      assert.ok(t);
      assert.ok(Math.abs(azureDeltaMs(base, t) - ms) < 1e-9 * Math.max(1, ms));
    }
  });
});

describe('Azure 2024 timestamps (UTC offsets)', () => {
  it('read the week-long files: offsets, and rows with and without a fraction', () => {
    // As AzureLLMInferenceTrace_conv_1week.csv writes them (DynamoLLM, HPCA'25).
    const text = [
      HEADER,
      '2024-05-10 00:00:00+00:00,1020,129',
      '2024-05-10 00:00:00.009930+00:00,374,44',
      '2024-05-10 00:00:01.5+00:00,396,109',
    ].join('\n');
    const records = azureReader.parse(text, 'conv_1week.csv');
    assert.deepEqual(
      records.map((r) => r.arrivalMs),
      [0, 9.93, 1500],
    );
    assert.equal(records[1]?.inputTokens, 374);
  });

  it('convert an offset to UTC, across midnight', () => {
    const utc = parseAzureTimestamp('2024-05-10 00:30:00Z');
    const east = parseAzureTimestamp('2024-05-10 02:30:00+02:00');
    const west = parseAzureTimestamp('2024-05-09T17:30:00-0700');
    const naive = parseAzureTimestamp('2024-05-10 00:30:00');
    assert.ok(utc && east && west && naive);
    assert.deepEqual(east, utc);
    assert.deepEqual(west, utc);
    assert.deepEqual(naive, utc);
    const lateWest = parseAzureTimestamp('2024-05-10 23:00:00-02:00');
    const nextDay = parseAzureTimestamp('2024-05-11 01:00:00');
    assert.ok(lateWest && nextDay);
    assert.equal(azureDeltaMs(lateWest, nextDay), 0);
  });

  it('refuse an impossible offset, naming the row and the column', () => {
    assert.equal(parseAzureTimestamp('2024-05-10 00:00:00+25:00'), undefined);
    assert.throws(
      () => azureReader.parse(`${HEADER}\n2024-05-10 00:00:00+00:99,1,2`, 'x.csv'),
      /x\.csv:2: TIMESTAMP '2024-05-10 00:00:00\+00:99'/,
    );
  });
});
