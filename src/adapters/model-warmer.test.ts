import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { ModelWarmer, preReadFile } from './model-warmer.ts';

test('preReadFile reads a file to its end in chunks, and stops when aborted', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'sy-warm-'));
  try {
    const path = join(dir, 'm.bin');
    writeFileSync(path, Buffer.alloc(10_000, 7));
    const all = await preReadFile(path, { chunkBytes: 4096 });
    assert.equal(all.bytes, 10_000);
    assert.equal(all.aborted, false);
    const controller = new AbortController();
    controller.abort();
    const none = await preReadFile(path, { chunkBytes: 4096, signal: controller.signal });
    assert.deepEqual([none.bytes, none.aborted], [0, true]);
    await assert.rejects(preReadFile(join(dir, 'missing.bin')), /ENOENT/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('the warmer keeps the most recently warmed files within its budget', async () => {
  const sizes: Record<string, number> = { a: 40, b: 30, c: 50, huge: 200 };
  const reads: string[] = [];
  const warmer = new ModelWarmer({
    budgetBytes: 100,
    sizeOf: async (p) => sizes[p] ?? 0,
    read: async (p) => {
      if (!(p in sizes)) throw new Error('gone');
      reads.push(p);
    },
  });
  assert.deepEqual(await warmer.warm('a'), { warmed: true, bytes: 40, dropped: [] });
  await warmer.warm('b');
  // c (50) does not fit beside a (40) and b (30): a, the least recently warmed, goes.
  assert.deepEqual(await warmer.warm('c'), { warmed: true, bytes: 50, dropped: ['a'] });
  assert.deepEqual(warmer.kept, ['b', 'c']);
  assert.equal(warmer.bytes, 80);
  // Warming b again makes it the most recent; a file over the whole budget is refused, nothing dropped.
  await warmer.warm('b');
  assert.deepEqual(warmer.kept, ['c', 'b']);
  assert.deepEqual(await warmer.warm('huge'), { warmed: false, bytes: 200, reason: 'over-budget' });
  assert.deepEqual(warmer.kept, ['c', 'b']);
  reads.length = 0;
  delete sizes['c'];
  await warmer.refresh();
  assert.deepEqual(reads, ['b']);
  assert.deepEqual(warmer.kept, ['b']);
});
