import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { MinHeap } from './heap.ts';

test('heap: pops in order after any pushes and removals', () => {
  fc.assert(
    fc.property(fc.array(fc.integer({ min: -50, max: 50 })), fc.array(fc.nat()), (values, removals) => {
      const heap = new MinHeap<number>((a, b) => a < b);
      for (const v of values) heap.push(v);
      const kept = [...values];
      for (const r of removals) {
        if (heap.size === 0) break;
        const removed = heap.removeAt(r % heap.size) as number;
        kept.splice(kept.indexOf(removed), 1);
      }
      const out: number[] = [];
      for (let v = heap.pop(); v !== undefined; v = heap.pop()) out.push(v);
      assert.deepEqual(
        out,
        kept.sort((a, b) => a - b),
      );
    }),
  );
});
