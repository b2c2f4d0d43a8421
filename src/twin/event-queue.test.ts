import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { EventQueue } from './event-queue.ts';

test('event queue pops in time order with insertion order breaking ties', () => {
  fc.assert(
    fc.property(fc.array(fc.integer({ min: 0, max: 20 }), { maxLength: 300 }), (times) => {
      const q = new EventQueue(2);
      times.forEach((t, i) => {
        q.push(t, i);
      });
      const expected = times.map((t, i) => ({ t, i })).sort((a, b) => a.t - b.t || a.i - b.i);
      for (const e of expected) {
        assert.equal(q.peekTime(), e.t);
        assert.equal(q.pop(), e.i);
      }
      assert.equal(q.length, 0);
      assert.equal(q.peekTime(), Number.POSITIVE_INFINITY);
    }),
  );
});

test('event queue refuses to pop when empty', () => {
  assert.throws(() => new EventQueue().pop(), RangeError);
});
