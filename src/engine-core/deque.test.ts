import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { Deque } from './deque.ts';

test('deque matches an array model under random operations', () => {
  fc.assert(
    fc.property(
      fc.array(
        fc.oneof(
          fc.constant('popFront'),
          fc.integer({ min: 0, max: 1000 }),
          fc.integer({ min: -1000, max: -1 }),
        ),
      ),
      (ops) => {
        const deque = new Deque<number>(2);
        const model: number[] = [];
        for (const op of ops) {
          if (op === 'popFront') {
            assert.equal(deque.popFront(), model.shift());
          } else if (op >= 0) {
            deque.pushBack(op);
            model.push(op);
          } else {
            deque.pushFront(op);
            model.unshift(op);
          }
          assert.equal(deque.size, model.length);
          assert.equal(deque.peekFront(), model[0]);
        }
        for (let i = 0; i < model.length; i++) assert.equal(deque.at(i), model[i]);
      },
    ),
  );
});

test('deque remove keeps the order of the rest', () => {
  const deque = new Deque<string>(2);
  for (const s of ['a', 'b', 'c', 'd', 'e']) deque.pushBack(s);
  deque.popFront();
  deque.pushBack('f');
  assert.equal(deque.remove('c'), true);
  assert.equal(deque.remove('zz'), false);
  const out: string[] = [];
  while (deque.size > 0) out.push(deque.popFront()!);
  assert.deepEqual(out, ['b', 'd', 'e', 'f']);
});
