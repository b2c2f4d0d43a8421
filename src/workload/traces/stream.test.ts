import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { Worker } from 'node:worker_threads';
import { gzipSync } from 'node:zlib';
import { Rng } from '../../core/rng.ts';
import { createWorkload, traceLimit } from '../create.ts';
import { traceRequests } from '../trace-source.ts';
import type { TwinRequest } from '../types.ts';
import { GunzipPieces } from './gunzip-stream.ts';
import { readTrace } from './read.ts';
import { SAMPLES_DIR } from './samples.ts';
import { fileLines, nonBlankLines } from './text.ts';

const dir = mkdtempSync(join(tmpdir(), 'sy-trace-stream-'));
after(() => rmSync(dir, { recursive: true, force: true }));

/** Two good rows, then a broken one: a run that needs only the first two never reads it. */
const AZURE_BROKEN_ROW_3 = [
  'TIMESTAMP,ContextTokens,GeneratedTokens',
  '2023-11-16 18:15:46.6805900,374,44',
  '2023-11-16 18:15:50.0000000,200,10',
  '2023-11-16 18:15:55.0000000,oops,10',
  '2023-11-16 18:15:56.0000000,100,10',
].join('\n');

function requests(spec: Record<string, unknown>): TwinRequest[] {
  return [...createWorkload({ kind: 'trace', ...spec } as never, new Rng(1))];
}

describe('streamed trace reading', () => {
  it('a replay of N requests reads only as far as its N-th row', () => {
    const file = join(dir, 'broken-row-3.csv');
    writeFileSync(file, AZURE_BROKEN_ROW_3);
    const two = requests({ trace: file, maxRequests: 2 });
    assert.deepEqual(
      two.map((r) => [r.arrivalMs, r.inputTokens]),
      [
        [0, 374],
        [3319.41, 200],
      ],
    );
    // The whole file still fails on row 3, naming it, as before.
    assert.throws(() => requests({ trace: file }), /broken-row-3\.csv:4: ContextTokens 'oops'/);
    assert.throws(() => requests({ trace: file, maxRequests: 3 }), /:4: ContextTokens/);
  });

  it('a replay with a duration stops at the first row past it (gzip too)', () => {
    const file = join(dir, 'broken-row-3.csv.gz');
    writeFileSync(file, gzipSync(AZURE_BROKEN_ROW_3));
    assert.equal(requests({ trace: file, durationS: 3 }).length, 1);
    assert.throws(() => requests({ trace: file, durationS: 9 }), /:4: ContextTokens/);
  });

  it('the slice replays as the whole file would, on the bundled samples', () => {
    for (const sample of ['sample:azure-conv', 'sample:mooncake-conversation']) {
      const slices: { startS?: number; durationS?: number; maxRequests?: number }[] = [
        { maxRequests: 1 },
        { maxRequests: 500 },
        { durationS: 30 },
        { startS: 60, maxRequests: 40 },
      ];
      for (const o of slices) {
        // Every record read, then sliced by the replay (as before), against the limited read.
        const whole = [...traceRequests(readTrace(sample), o)];
        const limit = traceLimit(o.startS, o.durationS, o.maxRequests);
        const part = readTrace(sample, undefined, limit);
        assert.ok(part.records.length < readTrace(sample).records.length, `${sample} read it all`);
        assert.deepEqual([...traceRequests(part, o)], whole, `${sample} ${JSON.stringify(o)}`);
      }
      assert.equal(readTrace(sample, undefined, { maxRecords: 10 }).records.length, 10);
    }
  });

  it('cuts lines across read chunks as a whole-text split does (CRLF, UTF-8, BOM, no final newline)', () => {
    // Over 2 MiB, so lines, CRLFs and multi-byte characters straddle the 1 MiB reads.
    const rows: string[] = ['\uFEFFh\u00e9ader'];
    // The joined length kept as rows are added (joining at every step was quadratic: minutes on a
    // loaded machine).
    for (let i = 0, length = (rows[0] as string).length; length < 2.5 * 2 ** 20; i++) {
      const row = i % 7 === 0 ? '' : `${i},\u00e9\u20ac\u{1F600},${'x'.repeat(i % 300)}`;
      rows.push(row);
      length += 2 + row.length;
    }
    const text = rows.join('\r\n');
    for (const [name, bytes] of [
      ['plain.csv', Buffer.from(text)],
      ['zipped.csv', gzipSync(text)],
    ] as const) {
      const file = join(dir, name);
      writeFileSync(file, bytes);
      assert.deepEqual([...fileLines(file, file)], nonBlankLines(text.slice(1)), name);
    }
  });

  it('a gzip trace streams as a plain one: a reader that stops early never inflates the rest', () => {
    // 4 MiB of text under a 1 MiB bound: the whole text is never held, only what is read.
    const rows = ['arrived_at,num_prefill_tokens,num_decode_tokens'];
    for (let i = 0; rows.length < 300_000; i++) rows.push(`${i},100,10`);
    const text = `${rows.join('\n')}\n`;
    const file = join(dir, 'long.csv.gz');
    writeFileSync(file, gzipSync(text));
    const bound = 2 ** 20;
    assert.ok(text.length > 3 * bound);
    const lines = fileLines(file, file, bound);
    const first = [lines.next().value, lines.next().value, lines.next().value];
    lines.return();
    assert.deepEqual(first, nonBlankLines(text).slice(0, 3));
    // Read on past the bound, it fails as a plain file does, naming the line it reached.
    assert.throws(() => [...fileLines(file, file, bound)], {
      code: 'SY_ERR_TRACE_PARSE',
      message:
        /long\.csv\.gz:\d+: the rows this run replays go on past the first 1,048,576 bytes \(1 MiB\) of the file's decompressed text/,
    });
    assert.equal([...fileLines(file, file, 8 * bound)].length, rows.length);
    // And a replay limited to its start gives the plain file's requests.
    const plain = join(dir, 'long.csv');
    writeFileSync(plain, text);
    for (const limits of [{ maxRequests: 3 }, { durationS: 40 }, {}])
      assert.deepEqual(
        requests({ trace: file, ...limits }),
        requests({ trace: plain, ...limits }),
        JSON.stringify(limits),
      );
  });

  it('a gzip reader whose next piece never comes fails as a timeout naming the file and the bound, not as corrupt data', {
    skip: process.platform === 'win32' ? 'needs mkfifo' : false,
  }, () => {
    // A pipe that starts like a gzip file, then sends nothing while its writer stays open: the
    // worker's read blocks, as on a stalled network file.
    const fifo = join(dir, 'stalled.csv.gz');
    execFileSync('mkfifo', [fifo]);
    // Read-write on Linux never blocks, and keeps a writer open so the reader's open does not block.
    const writer = openSync(fifo, 'r+');
    try {
      writeSync(writer, Buffer.from([0x1f, 0x8b]));
      assert.throws(
        () => [...fileLines(fifo, 'stalled.csv.gz', 2 ** 20, 200)],
        (err: Error & { code?: string }) => {
          assert.equal(err.code, 'SY_ERR_TIMEOUT');
          assert.match(
            err.message,
            /^stalled\.csv\.gz:1: no decompressed text came for 0\.2 s, the bound on one wait/,
          );
          assert.doesNotMatch(err.message, /corrupt/);
          return true;
        },
      );
    } finally {
      // Its last writer gone, the worker's blocked read ends.
      closeSync(writer);
    }
  });

  it('a gzip reader woken with no piece waits on instead of ending the text there', {
    skip: process.platform === 'win32' ? 'needs mkfifo' : false,
  }, () => {
    // A pipe whose gzip bytes come only after a helper thread has woken the waiting reader five
    // times with the piece slot still empty (as V8 was seen to do); the reader must read the whole
    // text, not take the empty slot for the end of the file.
    const fifo = join(dir, 'late.jsonl.gz');
    execFileSync('mkfifo', [fifo]);
    const text = Array.from({ length: 2000 }, (_, i) => `{"timestamp": ${i}, "input_length": 9}`).join('\n');
    const pieces = new GunzipPieces(fifo, 30_000);
    const helper = new Worker(
      `const { workerData } = require('node:worker_threads');
       const fs = require('node:fs');
       const pause = new Int32Array(new SharedArrayBuffer(4));
       for (let i = 0; i < 5; i++) {
         Atomics.wait(pause, 0, 0, 30);
         Atomics.notify(workerData.control, 0);
       }
       const fd = fs.openSync(workerData.fifo, 'w');
       fs.writeSync(fd, workerData.gz);
       fs.closeSync(fd);`,
      { eval: true, workerData: { control: pieces.controlForTests, fifo, gz: gzipSync(text) } },
    );
    try {
      const read: Buffer[] = [];
      for (let piece = pieces.next(); piece.length > 0; piece = pieces.next()) read.push(piece);
      assert.equal(Buffer.concat(read).toString('utf8'), text);
    } finally {
      pieces.close();
      void helper.terminate();
    }
  });

  it('the bundled Azure sample streams to the same lines', () => {
    const file = join(SAMPLES_DIR, 'azure-conv.csv');
    assert.deepEqual([...fileLines(file, file)], nonBlankLines(readFileSync(file, 'utf8')));
  });
});
