import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { INT_TABLE_MISSING, IntTable } from './int-table.ts';

test('int table: behaves as a Map through sets, overwrites, deletes and growth', () => {
  const op = fc.tuple(
    fc.constantFrom('set', 'set', 'delete'),
    // A small key range forces collisions and long probe runs; extremes check the int32 edges.
    fc.oneof(fc.integer({ min: -40, max: 40 }), fc.constantFrom(-0x80000000, 0x7fffffff, 0)),
    fc.integer({ min: -1000, max: 1000 }),
  );
  fc.assert(
    fc.property(fc.array(op, { maxLength: 300 }), (ops) => {
      const table = new IntTable(16);
      const map = new Map<number, number>();
      for (const [kind, key, value] of ops) {
        if (kind === 'set') {
          table.set(key, value);
          map.set(key, value);
        } else {
          assert.equal(table.delete(key), map.delete(key));
        }
        assert.equal(table.size, map.size);
      }
      for (let key = -45; key <= 45; key++) assert.equal(table.get(key), map.get(key) ?? INT_TABLE_MISSING);
      for (const [key, value] of map) assert.equal(table.get(key), value);
    }),
    { numRuns: 300 },
  );
});

test('int table: the reserved value is refused', () => {
  assert.throws(() => new IntTable().set(1, INT_TABLE_MISSING), RangeError);
});

test('int table: getMany equals get key by key', () => {
  fc.assert(
    fc.property(
      fc.array(fc.integer({ min: -60, max: 60 }), { maxLength: 100 }),
      fc.array(fc.integer({ min: -80, max: 80 }), { maxLength: 40 }),
      (stored, queried) => {
        const table = new IntTable(16);
        for (const key of stored) table.set(key, key * 3);
        // A few deletes, so lookups cross runs that a backward shift has rearranged.
        for (const key of stored.slice(0, 10)) if (key % 2 === 0) table.delete(key);
        const keys = Int32Array.from(queried);
        const out = new Int32Array(keys.length + 1).fill(7);
        table.getMany(keys, out, keys.length);
        for (let j = 0; j < keys.length; j++) assert.equal(out[j], table.get(keys[j] as number));
        assert.equal(out[keys.length], 7, 'nothing written past count');
      },
    ),
  );
});
