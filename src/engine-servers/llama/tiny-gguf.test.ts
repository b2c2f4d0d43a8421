import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { byteToUnicode, ensureTinyLlamaGguf, TINY_LLAMA_SHAPE, tinyLlamaGguf } from './tiny-gguf.ts';

test('the tiny model is a GGUF v3 file under 5 MB, the same bytes every time', () => {
  const a = Buffer.from(tinyLlamaGguf());
  const b = Buffer.from(tinyLlamaGguf());
  assert.equal(Buffer.compare(a, b), 0);
  assert.equal(a.toString('latin1', 0, 4), 'GGUF');
  assert.equal(a.readUInt32LE(4), 3);
  const tensors = Number(a.readBigUInt64LE(8));
  // token_embd, output_norm, output, and nine per layer.
  assert.equal(tensors, 3 + 9 * TINY_LLAMA_SHAPE.blockCount);
  assert.ok(a.length < 5 << 20, `${a.length} bytes`);
  const other = Buffer.from(tinyLlamaGguf({ ...TINY_LLAMA_SHAPE, seed: 1 }));
  assert.equal(other.length, a.length);
  assert.notEqual(Buffer.compare(a, other), 0);
});

test("GPT-2's byte-to-unicode map is a bijection onto 256 one-character tokens", () => {
  const map = byteToUnicode();
  assert.equal(new Set(map).size, 256);
  assert.equal(map[0x41], 'A');
  assert.equal(map[0x20], 'Ġ');
  assert.equal(map[0x0a], 'Ċ');
});

test('ensureTinyLlamaGguf writes once, keeps an identical file, replaces a different one', () => {
  const dir = mkdtempSync(join(tmpdir(), 'sy-tiny-'));
  try {
    const path = join(dir, 'models', 'tiny.gguf');
    assert.equal(ensureTinyLlamaGguf(path), path);
    const first = statSync(path);
    ensureTinyLlamaGguf(path);
    assert.equal(statSync(path).ino, first.ino);
    writeFileSync(path, 'stale');
    ensureTinyLlamaGguf(path);
    assert.equal(Buffer.compare(readFileSync(path), Buffer.from(tinyLlamaGguf())), 0);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
