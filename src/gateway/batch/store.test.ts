import assert from 'node:assert/strict';
import { appendFileSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { BatchStore } from './store.ts';

const dir = mkdtempSync(join(tmpdir(), 'switchyard-store-'));
after(() => rmSync(dir, { recursive: true, force: true }));

describe('batch store', () => {
  it('cuts a torn last result line, so its request counts as not done', () => {
    const store = new BatchStore(dir);
    const { output } = store.resultPaths('batch_x');
    const fd = store.openAppend(output);
    store.appendLine(fd, JSON.stringify({ custom_id: 'a' }));
    store.appendLine(fd, JSON.stringify({ custom_id: 'b' }));
    appendFileSync(store.abs(output), '{"custom_id":"c","respo');
    const read = store.readResults(output);
    assert.deepEqual([...read.customIds], ['a', 'b']);
    assert.equal(read.lines, 2);
    assert.equal(readFileSync(store.abs(output), 'utf8'), '{"custom_id":"a"}\n{"custom_id":"b"}\n');
    // Appends after the repair start on a fresh line.
    store.appendLine(fd, JSON.stringify({ custom_id: 'c' }));
    assert.deepEqual([...store.readResults(output).customIds], ['a', 'b', 'c']);
  });

  it('rewrites records atomically and drops leftovers of interrupted writes', () => {
    const store = new BatchStore(dir);
    store.writeJsonAtomic(store.batchPath('batch_1'), { id: 'batch_1', v: 1 });
    store.writeJsonAtomic(store.batchPath('batch_1'), { id: 'batch_1', v: 2 });
    appendFileSync(`${store.batchPath('batch_2')}.tmp`, '{"id":"batch_2"');
    assert.deepEqual(store.readAll(store.batchesDir), [{ id: 'batch_1', v: 2 }]);
    assert.deepEqual(store.readAll(store.batchesDir), [{ id: 'batch_1', v: 2 }]);
  });
});
