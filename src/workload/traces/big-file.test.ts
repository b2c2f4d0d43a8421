/**
 * A trace file over the text bound (512 MiB; the week-long Azure 2024 files pass it): the whole file
 * is refused before it is read, but a replay that needs only its start (--requests N, --duration)
 * streams it and stops there. The file here is sparse: its first rows, then zero bytes to 600 MiB.
 */
import assert from 'node:assert/strict';
import { closeSync, ftruncateSync, mkdtempSync, openSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { traceLimit } from '../create.ts';
import { readTrace, readTraceLengths } from './read.ts';
import { fileLines, TRACE_TEXT_BYTES_MAX } from './text.ts';

const dir = mkdtempSync(join(tmpdir(), 'sy-trace-big-'));
after(() => rmSync(dir, { recursive: true, force: true }));

/** A file of `head` then zero bytes up to `size` bytes, written sparse (no disk for the zeros). */
function sparseFile(name: string, head: string, size: number): string {
  const path = join(dir, name);
  const fd = openSync(path, 'w');
  try {
    writeSync(fd, head);
    ftruncateSync(fd, size);
  } finally {
    closeSync(fd);
  }
  return path;
}

const ROWS = [
  'TIMESTAMP,ContextTokens,GeneratedTokens',
  ...Array.from(
    { length: 50 },
    (_, i) => `2024-05-10 00:00:${String(i).padStart(2, '0')}.000000+00:00,${100 + i},10`,
  ),
].join('\n');

describe('a trace file past the text bound', () => {
  const size = TRACE_TEXT_BYTES_MAX + 64 * 2 ** 20;
  const path = sparseFile('week.csv', `${ROWS}\n`, size);

  it('is refused whole before it is read, naming the file and the bound', () => {
    assert.throws(() => readTrace(path), {
      code: 'SY_ERR_TRACE_PARSE',
      message: /week\.csv:1: .* on disk; a trace is read whole, at most .*MiB\) of text/,
    });
  });

  it('a replay is told of --requests/--duration; a read of its lengths (plan-gpus, plan-pd) only of a slice', () => {
    assert.throws(
      () => readTrace(path),
      /replay its start \(--requests N or --duration S stop the reading there\) or a slice/,
    );
    assert.throws(
      () => readTraceLengths(path),
      (err: Error) => {
        assert.match(err.message, /of text: use a slice of it/);
        assert.doesNotMatch(err.message, /--requests/);
        return true;
      },
    );
  });

  it('replays its first requests or its first seconds when that is all a run needs', () => {
    const first = readTrace(path, undefined, traceLimit(undefined, undefined, 10));
    assert.deepEqual(
      first.records.map((r) => r.inputTokens),
      Array.from({ length: 10 }, (_, i) => 100 + i),
    );
    const span = readTrace(path, undefined, traceLimit(undefined, 20, undefined));
    // Rows at 0..20 s: the one at 20 s ends the read and the replay leaves it out.
    assert.equal(span.records.length, 21);
  });

  it('fails on the line past the rows when what follows has no line break', () => {
    // 1000 requests are not in the 50 rows; the zeros after them are one line, refused at 16 MiB.
    assert.throws(() => readTrace(path, undefined, traceLimit(undefined, undefined, 1000)), {
      code: 'SY_ERR_TRACE_PARSE',
      message:
        /week\.csv:52: no line break in [\d,]+ bytes \(\d+ MiB\): a trace holds one request per line, none longer than 16 MiB/,
    });
  });
});

describe('a streamed read past the text bound', () => {
  it('fails naming the line it reached, the bound and what to do', () => {
    const rows = ['arrived_at,num_prefill_tokens,num_decode_tokens'];
    for (let i = 0; rows.length < 200_000; i++) rows.push(`${i},100,10`);
    const path = join(dir, 'long.csv');
    writeFileSync(path, `${rows.join('\n')}\n`);
    const bound = 2 ** 20;
    assert.throws(() => [...fileLines(path, path, bound)], {
      code: 'SY_ERR_TRACE_PARSE',
      message:
        /long\.csv:\d+: the rows this run replays go on past the first 1,048,576 bytes \(1 MiB\) of the file.*--requests/,
    });
    // Under the bound every line comes out.
    assert.equal([...fileLines(path, path, 64 * bound)].length, rows.length);
  });
});
