/**
 * Trace files as an outsider's tools write them: quoted CSV cells, a JSON array instead of JSON
 * lines, an empty file, `hash_ids: null`, rows out of order. Each either reads as the plain file
 * does (rows out of order: sorted, with a warning) or fails with one line naming the file, the line
 * and the field.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { assertTraceParseError } from './conformance.ts';
import { readTrace } from './read.ts';

const dir = mkdtempSync(join(tmpdir(), 'sy-outsider-'));
after(() => rmSync(dir, { recursive: true, force: true }));

function file(name: string, text: string): string {
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
}

describe('trace files as other tools write them', () => {
  it('quoted CSV cells (a spreadsheet export) read as the plain file', () => {
    const plain = file(
      'azure.csv',
      'TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46.68,374,44\n2023-11-16 18:15:50.99,396,109\n',
    );
    const quoted = file(
      'azure-quoted.csv',
      '"TIMESTAMP","ContextTokens","GeneratedTokens"\n"2023-11-16 18:15:46.68","374","44"\n"2023-11-16 18:15:50.99","396","109"\n',
    );
    assert.deepEqual(readTrace(quoted).records, readTrace(plain).records);
    const vidur = file(
      'vidur-quoted.csv',
      '"arrived_at","num_prefill_tokens","num_decode_tokens"\n"0.0","374","44"\n"4.314579","396","109"\n',
    );
    assert.deepEqual(
      readTrace(vidur).records.map((r) => [r.arrivalMs, r.inputTokens, r.outputTokens]),
      [
        [0, 374, 44],
        [4314.579, 396, 109],
      ],
    );
  });

  it('token counts written as floats (a pandas float column) read as the integers; a fraction is refused', () => {
    const floats = file(
      'vidur-floats.csv',
      'arrived_at,num_prefill_tokens,num_decode_tokens\n0.0,374.0,44.0\n4.314579,396.,109.00\n',
    );
    assert.deepEqual(
      readTrace(floats).records.map((r) => [r.inputTokens, r.outputTokens]),
      [
        [374, 44],
        [396, 109],
      ],
    );
    const azure = file(
      'azure-floats.csv',
      'TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46.68,374.0,44.0\n',
    );
    assert.deepEqual(
      readTrace(azure).records.map((r) => [r.inputTokens, r.outputTokens]),
      [[374, 44]],
    );
    const half = file('vidur-half.csv', 'arrived_at,num_prefill_tokens,num_decode_tokens\n0,374.5,44\n');
    assertTraceParseError(() => readTrace(half), half, 2);
    assert.throws(
      () => readTrace(half),
      /num_prefill_tokens '374\.5' is not a non-negative integer token count/,
    );
  });

  it('an empty file says it is empty', () => {
    for (const name of ['empty.csv', 'empty.jsonl']) {
      const path = file(name, '\n\n');
      assertTraceParseError(() => readTrace(path), path, 1);
      assert.throws(() => readTrace(path), /: empty file/);
    }
  });

  it('a JSON array is named as such, with how to turn it into JSON lines', () => {
    const path = file('mooncake.json', '[{"timestamp": 0, "input_length": 10, "output_length": 2}]\n');
    assertTraceParseError(() => readTrace(path), path, 1);
    assert.throws(() => readTrace(path), /a JSON array: a Mooncake trace is JSON lines/);
  });

  it('Mooncake hash_ids null means no prefix ids, as absent does', () => {
    const path = file(
      'nulls.jsonl',
      '{"timestamp": 0, "input_length": 10, "output_length": 2, "hash_ids": null}\n{"timestamp": 5, "input_length": 10, "output_length": 2}\n',
    );
    assert.deepEqual(
      readTrace(path).records.map((r) => r.hashIds),
      [[], []],
    );
  });

  it('rows out of order are replayed sorted, with one warning naming the field', () => {
    const cases: [string, string, string][] = [
      [
        'azure-unsorted.csv',
        'TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:50,1,2\n2023-11-16 18:15:46,3,4\n',
        'TIMESTAMP',
      ],
      [
        'mc-unsorted.jsonl',
        '{"timestamp": 5000, "input_length": 1, "output_length": 2}\n{"timestamp": 1000, "input_length": 3, "output_length": 4}\n',
        'timestamp',
      ],
      [
        'vidur-unsorted.csv',
        'arrived_at,num_prefill_tokens,num_decode_tokens\n4,1,2\n\n0,3,4\n',
        'arrived_at',
      ],
    ];
    for (const [name, text, field] of cases) {
      const path = file(name, text);
      const warnings: string[] = [];
      const records = readTrace(path, undefined, undefined, (l) => warnings.push(l)).records;
      assert.deepEqual(
        records.map((r) => [r.arrivalMs, r.inputTokens]),
        [
          [0, 3],
          [4000, 1],
        ],
      );
      assert.deepEqual(warnings, [
        `trace ${path}: 1 row was out of order (up to 4 s back); replayed sorted by ${field}`,
      ]);
    }
  });
});
