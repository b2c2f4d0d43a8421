import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { gunzipSync, gzipSync } from 'node:zlib';
import { SwitchyardError } from '../../core/errors.ts';
import { assertArrivalsOrdered, assertSameRecords, assertTraceParseError } from './conformance.ts';
import { detectTraceFormat, readTrace, readTraceLengths } from './read.ts';
import { resolveTraceRef, SAMPLES_DIR } from './samples.ts';
import { decodeTraceBytes, TRACE_TEXT_BYTES_MAX } from './text.ts';

const dir = mkdtempSync(join(tmpdir(), 'sy-traces-'));
after(() => rmSync(dir, { recursive: true, force: true }));

function isCode(code: string) {
  return (err: unknown) => err instanceof SwitchyardError && err.code === code;
}

describe('bundled samples', () => {
  it('sample:azure-conv has 3,000 rows with the original first and last values', () => {
    const t = readTrace('sample:azure-conv');
    assert.equal(t.format, 'azure');
    assert.equal(t.source, 'sample:azure-conv');
    assert.equal(t.blockTokens, undefined);
    assert.equal(t.records.length, 3000);
    assertArrivalsOrdered(t.records);
    assert.deepEqual(t.records[0], { arrivalMs: 0, inputTokens: 374, outputTokens: 44, hashIds: [] });
    const last = t.records.at(-1);
    // 18:15:46.6805900 -> 18:26:15.3839880
    assert.ok(last && Math.abs(last.arrivalMs - 628_703.398) < 1e-6, String(last?.arrivalMs));
    assert.equal(last?.inputTokens, 181);
    assert.equal(last?.outputTokens, 105);
  });

  it('sample:mooncake-conversation has 3,000 rows with prefix ids of 512 tokens', () => {
    const t = readTrace('sample:mooncake-conversation');
    assert.equal(t.format, 'mooncake');
    assert.equal(t.blockTokens, 512);
    assert.equal(t.records.length, 3000);
    assertArrivalsOrdered(t.records);
    assert.deepEqual(t.records[0], {
      arrivalMs: 0,
      inputTokens: 6758,
      outputTokens: 500,
      hashIds: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13],
    });
    assert.equal(t.records.at(-1)?.arrivalMs, 987_000);
    assert.equal(t.records.at(-1)?.inputTokens, 900);
    assert.equal(t.records.at(-1)?.outputTokens, 50);
  });

  it('Mooncake ids are already chained: each id has one position and one parent', () => {
    // This is why traceRequests keeps the ids as the chain instead of re-hashing them.
    const seen = new Map<number, string>();
    for (const r of readTrace('sample:mooncake-conversation').records) {
      r.hashIds.forEach((id, i) => {
        const where = `${i}:${i === 0 ? -1 : r.hashIds[i - 1]}`;
        assert.equal(seen.get(id) ?? where, where, `id ${id}`);
        seen.set(id, where);
      });
    }
  });

  it('gzipped and plain Mooncake parse identically', () => {
    const plainPath = join(dir, 'plain.jsonl');
    writeFileSync(plainPath, gunzipSync(readFileSync(join(SAMPLES_DIR, 'mooncake-conversation.jsonl.gz'))));
    const plain = readTrace(plainPath);
    assert.equal(plain.format, 'mooncake');
    assertSameRecords(plain.records, readTrace('sample:mooncake-conversation').records);
  });

  it('resolve from any working directory', () => {
    const cwd = process.cwd();
    try {
      process.chdir(tmpdir());
      assert.equal(readTrace('sample:azure-conv').records.length, 3000);
    } finally {
      process.chdir(cwd);
    }
  });

  it('an unknown sample name lists the valid ones', () => {
    assert.throws(
      () => readTrace('sample:nope'),
      (err: unknown) =>
        isCode('SY_ERR_UNKNOWN_NAME')(err) &&
        /sample:azure-conv/.test((err as Error).message) &&
        /sample:mooncake-conversation/.test((err as Error).message),
    );
    assert.throws(() => resolveTraceRef('sample:toString'), isCode('SY_ERR_UNKNOWN_NAME'));
  });
});

describe('readTrace', () => {
  it('a missing file is SY_ERR_NOT_FOUND naming the path', () => {
    const path = join(dir, 'missing.csv');
    assert.throws(
      () => readTrace(path),
      (err: unknown) => isCode('SY_ERR_NOT_FOUND')(err) && (err as Error).message.includes(path),
    );
  });

  it('detects each format from the header, whatever the extension', () => {
    const files = {
      'a.txt': 'TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46.6805900,374,44\n',
      'b.csv': '{"timestamp": 5, "input_length": 1, "output_length": 2, "hash_ids": [1]}\n',
      'c.dat': 'arrived_at,num_prefill_tokens,num_decode_tokens\n0.5,1,2\n',
    };
    for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text);
    assert.equal(readTrace(join(dir, 'a.txt')).format, 'azure');
    assert.equal(readTrace(join(dir, 'b.csv')).format, 'mooncake');
    assert.equal(readTrace(join(dir, 'c.dat')).format, 'vidur');
    assert.equal(readTrace(join(dir, 'c.dat')).records[0]?.arrivalMs, 0);
    assert.equal(detectTraceFormat('', 'x.jsonl.gz'), 'mooncake');
  });

  it('gunzips by magic bytes, not by name', () => {
    const path = join(dir, 'gz-without-extension.csv');
    writeFileSync(path, gzipSync('arrived_at,num_prefill_tokens,num_decode_tokens\n0,10,20\n1.5,30,40\n'));
    const t = readTrace(path);
    assert.equal(t.records.length, 2);
    assert.equal(t.records[1]?.arrivalMs, 1500);
  });

  it('an undetectable format is a parse error naming the file', () => {
    const path = join(dir, 'mystery.txt');
    writeFileSync(path, 'a,b,c\n1,2,3\n');
    assertTraceParseError(() => readTrace(path), path, 1);
    assertTraceParseError(() => readTrace(path, 'vidur'), path, 1);
  });

  it('a malformed line names the real path and line', () => {
    const path = join(dir, 'bad.csv');
    writeFileSync(
      path,
      'TIMESTAMP,ContextTokens,GeneratedTokens\r\n2023-11-16 18:15:46.68,1,2\r\n2023-11-16 18:15:47,1\r\n',
    );
    assertTraceParseError(() => readTrace(path), path, 3);
  });

  it('corrupt gzip is a parse error', () => {
    const path = join(dir, 'corrupt.jsonl.gz');
    writeFileSync(path, Buffer.from([0x1f, 0x8b, 8, 0, 1, 2, 3]));
    assertTraceParseError(() => readTrace(path), path, 1);
  });
});

describe('traces over the size bound', () => {
  it('a plain file over the bound is refused before it is read, in one line', () => {
    // Sparse: no disk or memory is spent on it. Before, V8's "Cannot create a string longer than
    // 0x1fffffe8 characters" came out with a stack trace.
    const path = join(dir, 'huge.csv');
    writeFileSync(path, 'arrived_at,num_prefill_tokens,num_decode_tokens\n');
    truncateSync(path, TRACE_TEXT_BYTES_MAX + 1);
    assertTraceParseError(() => readTrace(path), path, 1);
    assert.throws(
      () => readTrace(path),
      /bytes \(512 MiB\) on disk; a trace is read whole, at most 536,870,888 bytes \(512 MiB\) of text/,
    );
    assert.throws(() => readTraceLengths(path), /on disk/);
  });

  it('text or gzip over the bound says so (not "corrupt gzip")', () => {
    const text = Buffer.from('arrived_at,num_prefill_tokens,num_decode_tokens\n0,1,2\n');
    assert.equal(decodeTraceBytes(text, 'ok.csv', text.length), text.toString());
    assert.throws(
      () => decodeTraceBytes(text, 'big.csv', text.length - 1),
      /^.*big\.csv:1: .* of text; a trace is read whole/,
    );
    assert.throws(
      () => decodeTraceBytes(gzipSync(text), 'big.csv.gz', text.length - 1),
      (err: unknown) =>
        err instanceof SwitchyardError &&
        err.code === 'SY_ERR_TRACE_PARSE' &&
        /big\.csv\.gz:1: decompresses to more than/.test(err.message) &&
        !/corrupt/.test(err.message),
    );
  });

  it('a folder is SY_ERR_NOT_FOUND naming it, not a raw EISDIR', () => {
    const path = join(dir, 'a-folder.csv');
    mkdirSync(path);
    assert.throws(() => readTrace(path), isCode('SY_ERR_NOT_FOUND'));
  });
});

describe('readTraceLengths', () => {
  it('reads Vidur length-statistics files that readTrace refuses', () => {
    const path = join(dir, 'stats.csv.gz');
    writeFileSync(
      path,
      gzipSync('num_prefill_tokens,num_decode_tokens,num_total_tokens,pd_ratio\n3772,54,3826,69.8\n'),
    );
    assert.throws(() => readTrace(path), /no 'arrived_at' column/);
    assert.deepEqual(
      readTraceLengths(path).map((r) => [r.inputTokens, r.outputTokens]),
      [[3772, 54]],
    );
  });

  it('reads the lengths of any trace', () => {
    assert.equal(readTraceLengths('sample:azure-conv').length, 3000);
  });
});
