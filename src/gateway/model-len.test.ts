import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ModelLenProbe, modelLensOf, smallestModelLen } from './model-len.ts';

describe('modelLensOf', () => {
  it("reads positive integer max_model_len of the backend's own models only", () => {
    const body = JSON.stringify({
      object: 'list',
      data: [
        { id: 'a', max_model_len: 8192 },
        { id: 'b' },
        { id: 'c', max_model_len: 0 },
        { id: 'd', max_model_len: 1.5 },
        { id: 'e', max_model_len: '4096' },
        { id: 'other', max_model_len: 10 },
        null,
        7,
      ],
    });
    assert.deepEqual([...modelLensOf(body, ['a', 'b', 'c', 'd', 'e'])], [['a', 8192]]);
  });

  it('is empty for a body that is not a listing', () => {
    for (const body of ['', 'not json', 'null', '[]', '{"data": 3}', '{"object": "list"}'])
      assert.equal(modelLensOf(body, ['a']).size, 0, body);
  });
});

describe('smallestModelLen', () => {
  it('the smallest reported; undefined when none reports', () => {
    const probe = (lens: [string, number][]): ModelLenProbe => {
      const p = new ModelLenProbe('http://127.0.0.1:1', ['a', 'b'], () => {});
      p.lens = new Map(lens);
      return p;
    };
    const probes = [probe([['a', 4096]]), probe([]), probe([['a', 2048]])];
    assert.equal(smallestModelLen(probes, 'a'), 2048);
    assert.equal(smallestModelLen(probes, 'b'), undefined);
    assert.equal(smallestModelLen([], 'a'), undefined);
  });

  it('asks until answered, and again while the backend is out of service', () => {
    const p = new ModelLenProbe('http://127.0.0.1:1', ['a'], () => {});
    assert.equal(p.due(true), true);
    p.answered = true;
    assert.equal(p.due(true), false);
    assert.equal(p.due(false), true);
  });
});
