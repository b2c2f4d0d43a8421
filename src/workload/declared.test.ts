import assert from 'node:assert/strict';
import { test } from 'node:test';
import { SwitchyardError } from '../core/errors.ts';
import { declaredMaxTokens, generatedTokens, parseDeclaredMaxTokens } from './declared.ts';
import { traceRequests } from './trace-source.ts';
import type { Trace } from './types.ts';

const trace: Trace = {
  source: 'test',
  format: 'azure',
  blockTokens: undefined,
  records: [10, 300, 5000].map((out, i) => ({
    arrivalMs: i,
    inputTokens: 50,
    outputTokens: out,
    hashIds: [],
  })),
};

function replay(declared: string): Array<[number | undefined, number]> {
  const requests = traceRequests(trace, { declaredMaxTokens: parseDeclaredMaxTokens(declared) });
  return [...requests].map((r) => [r.maxTokens, r.trueOutputTokens]);
}

test('each declaration gives its max_tokens; a cap also cuts what the engine generates', () => {
  assert.deepEqual(replay('exact'), [
    [10, 10],
    [300, 300],
    [5000, 5000],
  ]);
  assert.deepEqual(replay('cap:4096'), [
    [4096, 10],
    [4096, 300],
    [4096, 4096],
  ]);
  assert.deepEqual(replay('factor:2'), [
    [20, 10],
    [600, 300],
    [10_000, 5000],
  ]);
  assert.deepEqual(replay('none'), [
    [undefined, 10],
    [undefined, 300],
    [undefined, 5000],
  ]);
});

test('the default replay declares a cap, not the true length', () => {
  const [first] = [...traceRequests(trace)];
  assert.equal(first?.maxTokens, 4096);
});

test('factor rounds up and never declares 0; generatedTokens cuts at the declaration', () => {
  assert.equal(declaredMaxTokens({ kind: 'factor', factor: 1.5 }, 3), 5);
  assert.equal(declaredMaxTokens({ kind: 'factor', factor: 1 }, 0), 1);
  assert.equal(generatedTokens(undefined, 900), 900);
  assert.equal(generatedTokens(100, 900), 100);
});

test('a bad declaration names the accepted forms', () => {
  assert.throws(
    () => parseDeclaredMaxTokens('cap:-1'),
    (err: unknown) =>
      err instanceof SwitchyardError &&
      err.code === 'SY_ERR_INVALID_ARGUMENT' &&
      /exact, cap:N/.test(err.message),
  );
});
