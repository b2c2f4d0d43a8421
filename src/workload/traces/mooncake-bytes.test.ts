import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { gunzipSync, gzipSync } from 'node:zlib';
import fc from 'fast-check';
import type { TraceRecord } from '../types.ts';
import { mooncakeFastPathReads, mooncakeReader } from './mooncake.ts';
import { readTrace } from './read.ts';
import { SAMPLES_DIR } from './samples.ts';
import { fileLines } from './text.ts';

const dir = mkdtempSync(join(tmpdir(), 'sy-mooncake-bytes-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const parseBytes = mooncakeReader.parseBytes as NonNullable<typeof mooncakeReader.parseBytes>;

/** What a parse gave: the records, or the error's code and message. */
function outcome(parse: () => TraceRecord[]): unknown {
  try {
    return { records: parse() };
  } catch (err) {
    return { code: (err as { code?: string }).code, message: (err as Error).message };
  }
}

/** The byte parser and the line parser on one text agree, records or error, warnings too. */
function assertSameAsLines(text: string): void {
  const warnedBytes: string[] = [];
  const warnedLines: string[] = [];
  const bytes = outcome(() => parseBytes(Buffer.from(text, 'utf8'), 'f.jsonl', (w) => warnedBytes.push(w)));
  const path = join(dir, 'case.jsonl');
  writeFileSync(path, text);
  const lines = outcome(() =>
    mooncakeReader.parseLines(fileLines(path, 'f.jsonl'), 'f.jsonl', undefined, (w) => warnedLines.push(w)),
  );
  assert.deepEqual(bytes, lines, `text: ${JSON.stringify(text)}`);
  assert.deepEqual(warnedBytes, warnedLines);
}

/** Numbers as a trace might write them, the fast path's shape and the ones it leaves to JSON.parse. */
const numberText = fc.oneof(
  fc.nat({ max: 100_000 }).map(String),
  fc.constantFrom('0', '00', '01', '7.0', '12.5', '1e3', '2E2', '-1', '-0', '999999999999999'),
  fc.constantFrom('1234567890123456', '12345678901234567890', '"5"', 'null', 'true', '[]', '1.5e-3'),
);
const sep = fc.constantFrom(', ', ',', ' , ', ',  ');
const colon = fc.constantFrom(': ', ':', ' : ');
const ids = fc.array(numberText, { maxLength: 6 });

/** One line: mostly the published shape with variations, sometimes something else entirely. */
const line = fc.oneof(
  {
    weight: 6,
    arbitrary: fc
      .tuple(numberText, numberText, numberText, ids, sep, colon, fc.constantFrom('', ' ', '\r', ' \r', '\t'))
      .map(
        ([t, i, o, h, s, c, tail]) =>
          `{"timestamp"${c}${t}${s}"input_length"${c}${i}${s}"output_length"${c}${o}${s}"hash_ids"${c}[${h.join(s)}]}${tail}`,
      ),
  },
  {
    weight: 2,
    arbitrary: fc
      .tuple(
        fc.nat({ max: 5000 }),
        fc.nat({ max: 9000 }),
        fc.nat({ max: 900 }),
        fc.array(fc.nat({ max: 50 }), { maxLength: 5 }),
      )
      .map(([t, i, o, h]) =>
        JSON.stringify({ hash_ids: h, output_length: o, input_length: i, timestamp: t }),
      ),
  },
  {
    weight: 1,
    arbitrary: fc.constantFrom(
      '',
      '   ',
      '\r',
      '{ "timestamp": 1, "input_length": 2, "output_length": 3, "hash_ids": [4]}',
      '{"timestamp": 1, "input_length": 2, "output_length": 3, "hash_ids": [4], "x": 1}',
      '{"timestamp": 1, "input_length": 2, "output_length": 3}',
      '{"timestamp": 1, "input_length": 2, "output_length": 3, "hash_ids": null}',
      '{"timestamp": 1, "input_length": 2, "output_length": 3, "hash_ids": [4,]}',
      '{"timestamp": 1, "input_length": 2, "output_length": 3, "hash_ids": [4] } x',
      '{"timestamp": 1, "input_length": 2, "output_length": 3, "hash_ids": [4]}}',
      '{"timestamp": 1, "input_length": 2, "output_length": 3, "hash_ids": [4]',
      '{"timestamp": 1, "input_length": 2, "output_length": 3, "hash_ids": [4]}\u00a0',
      '{"tim\u00e9stamp": 1, "input_length": 2, "output_length": 3, "hash_ids": [4]}',
      '{"timestamp": 1, "timestamp": 9, "input_length": 2, "output_length": 3, "hash_ids": [4]}',
      '[1, 2]',
      'nonsense',
    ),
  },
);

describe('Mooncake rows read from bytes', () => {
  it('give the records, warnings and errors the line reader gives (property)', () => {
    fc.assert(
      fc.property(
        fc.array(line, { minLength: 0, maxLength: 8 }),
        fc.constantFrom('\n', '\r\n'),
        fc.boolean(),
        (rows, eol, lastEol) => assertSameAsLines(rows.join(eol) + (lastEol ? eol : '')),
      ),
      { numRuns: 2000 },
    );
  });

  it('the published shape takes the fast path; other shapes do not', () => {
    // Every row of the bundled sample (as the traces write them), compact separators, CRLF.
    const sample = gunzipSync(readFileSync(join(SAMPLES_DIR, 'mooncake-conversation.jsonl.gz'))).toString(
      'utf8',
    );
    const rows = sample.split('\n').filter((l) => l !== '');
    assert.equal(rows.length, 3000);
    for (const row of rows) assert.ok(mooncakeFastPathReads(row), row);
    for (const row of [
      '{"timestamp":5,"input_length":6,"output_length":7,"hash_ids":[8,9]}',
      '{"timestamp": 5, "input_length": 6, "output_length": 7, "hash_ids": []}\r',
      '{"timestamp": 999999999999999, "input_length": 0, "output_length": 0, "hash_ids": [0]} ',
    ])
      assert.ok(mooncakeFastPathReads(row), row);
    for (const row of [
      '{"timestamp": 5.5, "input_length": 6, "output_length": 7, "hash_ids": [8]}',
      '{"timestamp": 5, "input_length": 06, "output_length": 7, "hash_ids": [8]}',
      '{"timestamp": 1e3, "input_length": 6, "output_length": 7, "hash_ids": [8]}',
      '{"timestamp": 1234567890123456, "input_length": 6, "output_length": 7, "hash_ids": [8]}',
      '{"input_length": 6, "timestamp": 5, "output_length": 7, "hash_ids": [8]}',
      '{"timestamp": 5, "input_length": 6, "output_length": 7}',
      '{"timestamp": 5, "input_length": 6, "output_length": 7, "hash_ids": [8]}\t',
      '{"timestamp": 5, "input_length": 6, "output_length": 7, "hash_ids": [8,]}',
      '',
    ])
      assert.ok(!mooncakeFastPathReads(row), row);
  });

  it('keep file order on equal stamps and sort rows out of order, warning once', () => {
    const text = [
      '{"timestamp": 500, "input_length": 1, "output_length": 1, "hash_ids": [1]}',
      '{"timestamp": 100, "input_length": 2, "output_length": 1, "hash_ids": [2]}',
      '{"timestamp": 100, "input_length": 3, "output_length": 1, "hash_ids": []}',
    ].join('\n');
    assertSameAsLines(text);
    const warned: string[] = [];
    const records = parseBytes(Buffer.from(text), 'f.jsonl', (w) => warned.push(w));
    assert.deepEqual(
      records.map((r) => [r.arrivalMs, r.inputTokens]),
      [
        [0, 2],
        [0, 3],
        [400, 1],
      ],
    );
    assert.equal(warned.length, 1);
  });

  it('a whole read of the bundled sample (gzip) gives what the streamed read gives', () => {
    const whole = readTrace('sample:mooncake-conversation');
    // A limit past the end streams the file (read.ts reads whole only without a limit) and keeps every row.
    const streamed = readTrace('sample:mooncake-conversation', undefined, { maxRecords: 1e9 });
    assert.equal(whole.records.length, 3000);
    assert.deepEqual(whole, streamed);
  });

  it('a whole read of a gzip file whose data is corrupt fails as the streamed read does', () => {
    const path = join(dir, 'bad.jsonl.gz');
    const good = gzipSync('{"timestamp": 0, "input_length": 1, "output_length": 1, "hash_ids": [1]}\n');
    writeFileSync(path, good.subarray(0, good.length - 6));
    assert.deepEqual(
      outcome(() => [...readTrace(path).records]),
      outcome(() => [...readTrace(path, undefined, { maxRecords: 1e9 }).records]),
    );
    assert.throws(() => readTrace(path), { code: 'SY_ERR_TRACE_PARSE' });
  });
});
