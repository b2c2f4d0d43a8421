import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { SwitchyardError } from '../core/errors.ts';
import { parseWeightUpdateBody, shapeDifferences, WeightSwapGate } from './weight-update.ts';

const code = (error: unknown) => (error as SwitchyardError).code;

describe('parseWeightUpdateBody', () => {
  test("takes SGLang's model_path and Switchyard's served_model_name", () => {
    assert.deepEqual(parseWeightUpdateBody({ model_path: '/m/a.gguf' }), { modelPath: '/m/a.gguf' });
    assert.deepEqual(parseWeightUpdateBody({ model_path: 'x', served_model_name: 'y', load_format: null }), {
      modelPath: 'x',
      servedModelName: 'y',
    });
  });

  test('refuses a missing or empty path, a bad name, abort_all_requests and a non-object body', () => {
    for (const body of [
      {},
      { model_path: '' },
      { model_path: 3 },
      { model_path: 'x', served_model_name: 2 },
      [],
      'x',
      null,
    ])
      assert.throws(
        () => parseWeightUpdateBody(body),
        (e) => code(e) === 'SY_ERR_INVALID_ARGUMENT',
        JSON.stringify(body),
      );
    assert.throws(
      () => parseWeightUpdateBody({ model_path: 'x', abort_all_requests: true }),
      (e) => code(e) === 'SY_ERR_UNSUPPORTED_PARAMETER',
    );
  });
});

test('shapeDifferences names each differing field with both values', () => {
  assert.deepEqual(shapeDifferences({ a: 1, b: [2, 2], c: 'x' }, { a: 1, b: [2, 3], c: 'y' }), [
    'b [2,2] vs [2,3]',
    'c "x" vs "y"',
  ]);
  assert.deepEqual(shapeDifferences({ a: 1 }, { a: 1 }), []);
});

describe('WeightSwapGate', () => {
  test('one swap at a time: a second while the first runs gets 409; the slot frees when it settles', async () => {
    const gate = new WeightSwapGate(60_000);
    let release!: () => void;
    const first = gate.run(() => new Promise<string>((r) => (release = () => r('done'))));
    await assert.rejects(
      gate.run(async () => 'second'),
      (e) => code(e) === 'SY_ERR_ENGINE_BUSY',
    );
    release();
    assert.equal(await first, 'done');
    assert.equal(await gate.run(async () => 'third'), 'third');
    assert.equal(gate.completed, 2);
  });

  test('a load past the timeout answers 504, tells the work it was given up, and holds the slot until it ends', async () => {
    const gate = new WeightSwapGate(5);
    let release!: () => void;
    let givenUp: (() => boolean) | undefined;
    const work = gate.run(
      (given) =>
        new Promise<string>((r) => {
          givenUp = given;
          release = () => r('late');
        }),
    );
    await assert.rejects(work, (e) => code(e) === 'SY_ERR_TIMEOUT');
    assert.equal(givenUp?.(), true);
    await assert.rejects(
      gate.run(async () => 'next'),
      (e) => code(e) === 'SY_ERR_ENGINE_BUSY',
    );
    release();
    await new Promise((r) => setImmediate(r));
    assert.equal(gate.running, false);
    assert.equal(gate.completed, 0, 'a swap given up is not counted');
  });
});
