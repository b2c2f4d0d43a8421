import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  bodyWithEnginePriority,
  enginePriorityOf,
  enginePriorityValue,
  noteBodyPriority,
} from './engine-priority.ts';
import { bodyFields } from './request-build.ts';

const rewrite = (body: string, order: Parameters<typeof bodyWithEnginePriority>[1], p: number): string =>
  bodyWithEnginePriority(Buffer.from(body), order, p).toString();

describe('enginePriorityOf', () => {
  it('defaults: built-in engines lower-first, the rest none; a configured order wins', () => {
    assert.equal(enginePriorityOf({ type: 'sim' }), 'lower-first');
    assert.equal(enginePriorityOf({ type: 'llama' }), 'lower-first');
    for (const type of ['vllm', 'sglang', 'llamacpp', 'openai'])
      assert.equal(enginePriorityOf({ type }), 'none');
    assert.equal(enginePriorityOf({ type: 'vllm', enginePriority: 'lower-first' }), 'lower-first');
    assert.equal(enginePriorityOf({ type: 'sglang', enginePriority: 'higher-first' }), 'higher-first');
    assert.equal(enginePriorityOf({ type: 'sim', enginePriority: 'none' }), 'none');
  });
});

describe('enginePriorityValue', () => {
  it('vLLM negates (0 is the absent default); SGLang keeps the sign and always names it', () => {
    assert.equal(enginePriorityValue('lower-first', 5), -5);
    assert.equal(enginePriorityValue('lower-first', -1), 1);
    assert.equal(enginePriorityValue('lower-first', 0), undefined);
    assert.equal(enginePriorityValue('higher-first', 5), 5);
    assert.equal(enginePriorityValue('higher-first', 0), 0);
    assert.equal(enginePriorityValue('none', 5), undefined);
  });
});

describe('bodyWithEnginePriority', () => {
  it('priority 0 and no priority in the body: the very same Buffer (no copy)', () => {
    const body = Buffer.from('{"model":"m","prompt":"hi","max_tokens":3}');
    assert.equal(bodyWithEnginePriority(body, 'lower-first', 0), body);
    assert.equal(bodyWithEnginePriority(body, 'none', 7), body);
    const said = Buffer.from('{"model":"m","priority":-5}');
    assert.equal(bodyWithEnginePriority(said, 'lower-first', 5), said);
  });

  it('inserts the engine value as the first member, keeping every other byte', () => {
    assert.equal(rewrite('{"model":"m"}', 'lower-first', 5), '{"priority":-5,"model":"m"}');
    assert.equal(rewrite(' { } ', 'lower-first', -1), ' {"priority":1 } ');
    assert.equal(rewrite('{"model":"m"}', 'higher-first', 0), '{"priority":0,"model":"m"}');
    // An integer past 2^53 elsewhere is not touched (no JSON.parse / stringify round trip).
    assert.equal(
      rewrite('{"seed": 12345678901234567890, "model":"m"}', 'lower-first', 2),
      '{"priority":-2,"seed": 12345678901234567890, "model":"m"}',
    );
  });

  it("replaces a client's own value (Switchyard's meaning wins), the last of duplicates", () => {
    assert.equal(
      rewrite('{"model":"m","priority": 5 ,"n":1}', 'lower-first', 5),
      '{"model":"m","priority": -5 ,"n":1}',
    );
    assert.equal(
      rewrite('{"priority":-9223372036854775808,"model":"m"}', 'lower-first', 0),
      '{"priority":0,"model":"m"}',
    );
    assert.equal(rewrite('{"priority":1,"priority":2}', 'higher-first', 3), '{"priority":1,"priority":3}');
    assert.equal(rewrite('{"priority":2}', 'higher-first', 0), '{"priority":0}');
  });

  it('reads a key spelled with escapes, and ignores `priority` inside strings and nested objects', () => {
    assert.equal(
      rewrite('{"priorit\\u0079":5,"model":"m"}', 'lower-first', 0),
      '{"priorit\\u0079":0,"model":"m"}',
    );
    const nested = '{"messages":[{"role":"user","content":"\\"priority\\": 9"}],"meta":{"priority":3}}';
    assert.equal(rewrite(nested, 'lower-first', 0), nested);
    assert.equal(rewrite(nested, 'lower-first', 4), `{"priority":-4,${nested.slice(1)}`);
    const backslash = '{"a":"x\\\\","priority":2}';
    assert.equal(rewrite(backslash, 'higher-first', 1), '{"a":"x\\\\","priority":1}');
  });

  it('every rewrite parses to the body with only priority changed', () => {
    const bodies = [
      '{"model":"m","messages":[{"role":"user","content":"hi"}],"max_tokens":3}',
      '{ "priority" : 7 , "stream" : true , "stop" : ["a", "}"] }',
      '{"x":{"y":[1,2,{"priority":1}]},"priority":null}',
    ];
    for (const body of bodies)
      for (const order of ['lower-first', 'higher-first'] as const)
        for (const p of [-3, -1, 0, 1, 6]) {
          const out = JSON.parse(rewrite(body, order, p)) as Record<string, unknown>;
          const expected = { ...(JSON.parse(body) as Record<string, unknown>) };
          const value = enginePriorityValue(order, p);
          if (value !== undefined) expected['priority'] = value;
          else if (expected['priority'] !== undefined) expected['priority'] = 0;
          assert.deepEqual(out, expected, `${body} ${order} ${p}`);
        }
  });

  it('a body the gateway parsed is judged by its parsed priority, the bytes only read to edit them', () => {
    const quoted = Buffer.from('{"model":"m","prompt":"say \\"priority\\": 1","max_tokens":3}');
    noteBodyPriority(quoted, undefined);
    assert.equal(bodyWithEnginePriority(quoted, 'lower-first', 0), quoted);
    assert.equal(
      bodyWithEnginePriority(quoted, 'lower-first', 2).toString(),
      '{"priority":-2,"model":"m","prompt":"say \\"priority\\": 1","max_tokens":3}',
    );
    const said = Buffer.from('{"model":"m","prompt":"hi","priority":3}');
    noteBodyPriority(said, 3);
    assert.equal(bodyWithEnginePriority(said, 'higher-first', 3), said);
    assert.equal(
      bodyWithEnginePriority(said, 'lower-first', 0).toString(),
      '{"model":"m","prompt":"hi","priority":0}',
    );
  });

  it('a body opening with a UTF-8 BOM (which the gateway and the engines read) is edited past it', () => {
    const bom = Buffer.from([0xef, 0xbb, 0xbf]);
    const insert = Buffer.concat([bom, Buffer.from(' {"model":"m"}')]);
    assert.deepEqual(
      bodyWithEnginePriority(insert, 'lower-first', 5),
      Buffer.concat([bom, Buffer.from(' {"priority":-5,"model":"m"}')]),
    );
    const replace = Buffer.concat([bom, Buffer.from('{"model":"m","priority":5}')]);
    noteBodyPriority(replace, 5);
    assert.deepEqual(
      bodyWithEnginePriority(replace, 'lower-first', 5),
      Buffer.concat([bom, Buffer.from('{"model":"m","priority":-5}')]),
    );
  });

  it('bodyFields notes what it parsed (escaped key included)', () => {
    const body = Buffer.from('{"model":"m","prompt":"hi","max_tokens":3,"priorit\\u0079":-4}');
    assert.equal(bodyFields({ tokenizers: new Map() }, 'completion', body).priority, -4);
    assert.equal(bodyWithEnginePriority(body, 'lower-first', 4), body);
  });
});
