/**
 * Rows out of order (jittered stamps, per-client files interleaved): the reader sorts them stably,
 * rebases the earliest to 0 and says once how many stepped back and how far; a read that stops at
 * --requests/--duration says rows further on were not read.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { Rng } from '../../core/rng.ts';
import { createWorkload, replayStats } from '../create.ts';
import type { TraceRecord } from '../types.ts';
import { readTrace } from './read.ts';
import { NO_HASH_IDS, sortByArrival } from './text.ts';

const dir = mkdtempSync(join(tmpdir(), 'sy-trace-order-'));
after(() => rmSync(dir, { recursive: true, force: true }));

function rec(arrivalMs: number, inputTokens: number): TraceRecord {
  return { arrivalMs, inputTokens, outputTokens: 1, hashIds: NO_HASH_IDS };
}

function mooncake(rows: readonly [number, number][]): string {
  return rows.map(([t, n]) => JSON.stringify({ timestamp: t, input_length: n, output_length: 1 })).join('\n');
}

describe('rows out of order', () => {
  it('sort stably: equal stamps keep file order', () => {
    const warnings: string[] = [];
    const sorted = sortByArrival(
      [rec(0, 1), rec(500, 2), rec(200, 3), rec(500, 4), rec(200, 5), rec(900, 6)],
      'f',
      'timestamp',
      false,
      (l) => warnings.push(l),
    );
    assert.deepEqual(
      sorted.map((r) => [r.arrivalMs, r.inputTokens]),
      [
        [0, 1],
        [200, 3],
        [200, 5],
        [500, 2],
        [500, 4],
        [900, 6],
      ],
    );
    assert.deepEqual(warnings, [
      'trace f: 2 rows were out of order (up to 300 ms back); replayed sorted by timestamp',
    ]);
  });

  it('rebase so the earliest row arrives at 0', () => {
    const sorted = sortByArrival([rec(0, 1), rec(-800, 2), rec(400, 3)], 'f', 'timestamp', false);
    assert.deepEqual(
      sorted.map((r) => [r.arrivalMs, r.inputTokens]),
      [
        [0, 2],
        [800, 1],
        [1200, 3],
      ],
    );
  });

  it('rows in order come back as they are, without a warning', () => {
    const records = [rec(0, 1), rec(0, 2), rec(5, 3)];
    const warnings: string[] = [];
    assert.equal(
      sortByArrival(records, 'f', 'timestamp', true, (l) => warnings.push(l)),
      records,
    );
    assert.deepEqual(warnings, []);
  });

  it('a whole-file replay sends the rows sorted; its span and rate are those of the sorted rows', () => {
    const path = join(dir, 'jitter.jsonl');
    // A second client's rows (2000, 4000, 500) appended after the first client's block.
    writeFileSync(
      path,
      mooncake([
        [1000, 1],
        [3000, 2],
        [5000, 3],
        [2000, 4],
        [4000, 5],
        [500, 6],
      ]),
    );
    const warnings: string[] = [];
    const trace = readTrace(path, undefined, undefined, (l) => warnings.push(l));
    assert.deepEqual(
      trace.records.map((r) => [r.arrivalMs, r.inputTokens]),
      [
        [0, 6],
        [500, 1],
        [1500, 4],
        [2500, 2],
        [3500, 5],
        [4500, 3],
      ],
    );
    assert.deepEqual(warnings, [
      `trace ${path}: 3 rows were out of order (up to 4.5 s back); replayed sorted by timestamp`,
    ]);
    const sent = [...createWorkload({ kind: 'trace', trace: path } as never, new Rng(1))];
    assert.deepEqual(
      sent.map((r) => r.inputTokens),
      [6, 1, 4, 2, 5, 3],
    );
    const stats = replayStats(sent.map((r) => r.arrivalMs));
    assert.equal(stats.spanS, 4.5);
    assert.equal(stats.requests, 6);
    // Same file, same output.
    assert.deepEqual(readTrace(path, undefined, undefined, () => {}).records, trace.records);
  });

  it('a read stopped at --requests sorts what it read and says later rows were not read', () => {
    const path = join(dir, 'jitter-long.jsonl');
    writeFileSync(
      path,
      mooncake([
        [0, 1],
        [300, 2],
        [100, 3],
        [400, 4],
        [200, 5],
        [500, 6],
      ]),
    );
    const warnings: string[] = [];
    const trace = readTrace(path, undefined, { maxRecords: 3 }, (l) => warnings.push(l));
    // The stop counts rows in file order: the first three rows, then sorted.
    assert.deepEqual(
      trace.records.map((r) => r.inputTokens),
      [1, 3, 2],
    );
    assert.equal(warnings.length, 1);
    assert.match(
      warnings[0] as string,
      /1 row was out of order \(up to 200 ms back\); replayed sorted by timestamp; the read stopped at the --requests\/--duration point, so a row further on in the file stamped before it is not replayed$/,
    );
  });
});
