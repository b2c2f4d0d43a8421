import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { readGgufFileInfo } from 'node-llama-cpp';
import {
  byteToUnicode,
  ensureSizedLlamaGguf,
  ensureTinyLlamaGguf,
  llamaGgufBytes,
  sizedLlamaShape,
  TINY_LLAMA_SHAPE,
  tinyLlamaGguf,
  writeLlamaGguf,
} from './tiny-gguf.ts';

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

test('a sized model is about the size asked, and its file is exactly the size computed', () => {
  for (const sizeMb of [2, 8, 40, 600, 4000]) {
    const shape = sizedLlamaShape(sizeMb * 1e6);
    const bytes = llamaGgufBytes(shape);
    // Within half a layer, and a layer is at most an eighth of the size.
    assert.ok(Math.abs(bytes - sizeMb * 1e6) <= sizeMb * 1e6 * 0.07, `${sizeMb} MB asked, ${bytes} bytes`);
    assert.ok(shape.blockCount >= 1 && shape.embeddingLength % shape.headCount === 0);
  }
  // 600 MB: a wide model of several layers, as llama-sized models are (computed, not written).
  const big = sizedLlamaShape(600e6);
  assert.ok(big.embeddingLength >= 1024 && big.blockCount >= 8, JSON.stringify(big));
  assert.throws(() => sizedLlamaShape(100_000), /too small/);
});

test('a sized model is written as a well-formed GGUF that node-llama-cpp parses', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'sy-sized-'));
  try {
    const shape = sizedLlamaShape(3e6, 7);
    const path = join(dir, 'sized.gguf');
    const written = writeLlamaGguf(path, shape);
    assert.equal(written, llamaGgufBytes(shape));
    assert.equal(statSync(path).size, written);
    const info = await readGgufFileInfo(path, { readTensorInfo: true });
    assert.equal(info.version, 3);
    const meta = info.metadata as unknown as {
      llama: { block_count: number; embedding_length: number };
      general: { name: string };
    };
    assert.equal(meta.llama.block_count, shape.blockCount);
    assert.equal(meta.llama.embedding_length, shape.embeddingLength);
    assert.match(meta.general.name, /-seed7$/);
    const tensors = info.tensorInfo ?? [];
    assert.equal(tensors.length, 3 + 9 * shape.blockCount);
    // Every tensor's data lies after the one before, and the last ends (padded) where the file does.
    const dataBytes = (t: (typeof tensors)[number]) =>
      4 * t.dimensions.reduce((a: number, b) => a * Number(b), 1);
    let end = 0;
    for (const t of tensors) {
      const offset = Number(t.offset);
      assert.ok(offset >= end, `${t.name} at ${offset} overlaps ${end}`);
      end = offset + dataBytes(t);
    }
    const headerBytes = written - Math.ceil(end / 32) * 32;
    assert.ok(headerBytes > 1000 && headerBytes < 20_000, `header of ${headerBytes} bytes`);
    // Same shape and seed: ensureSizedLlamaGguf keeps the file; the weights are not all alike.
    const ino = statSync(path).ino;
    ensureSizedLlamaGguf(path, shape);
    assert.equal(statSync(path).ino, ino);
    const head = readFileSync(path).subarray(written - 4096);
    assert.ok(new Set(head).size > 100);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
