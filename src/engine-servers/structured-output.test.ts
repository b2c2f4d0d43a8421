import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as z from 'zod';
import { choiceGbnf, GrammarCache, gbnfLiteral, numberGbnf } from './llama/structured-output.ts';
import {
  minimalInstance,
  normalizeSchema,
  responsesStructuredOutput,
  type StructuredOutput,
  schemaInText,
  structuredOutputOf,
} from './structured-output.ts';

type Coded = Error & { code?: string; details?: { param?: string } };
const refusedWith = (code: string, param: string, message: RegExp) => (e: Coded) => {
  assert.equal(e.code, code, e.message);
  assert.equal(e.details?.param, param);
  assert.match(e.message, message);
  return true;
};

test('each wire shape is read: response_format, structured_outputs, guided_json/choice, text.format', () => {
  const schema = { type: 'object', properties: { a: { type: 'string' } }, required: ['a'] };
  const json = (o: StructuredOutput | undefined) => (o?.kind === 'json' ? o.schema : undefined);
  assert.deepEqual(
    json(
      structuredOutputOf({ response_format: { type: 'json_schema', json_schema: { name: 'x', schema } } }),
    ),
    schema,
  );
  assert.deepEqual(json(structuredOutputOf({ structured_outputs: { json: schema } })), schema);
  assert.deepEqual(json(structuredOutputOf({ guided_json: JSON.stringify(schema) })), schema);
  assert.deepEqual(
    json(responsesStructuredOutput({ text: { format: { type: 'json_schema', name: 'x', schema } } })),
    schema,
  );
  assert.equal(structuredOutputOf({ response_format: { type: 'json_object' } })?.kind, 'json');
  assert.equal(structuredOutputOf({ structured_outputs: { json_object: true } })?.kind, 'json');
  assert.deepEqual(structuredOutputOf({ guided_choice: ['a', 'b', 'a'] }), {
    kind: 'choice',
    choices: ['a', 'b'],
    key: 'choice:["a","b"]',
    param: 'guided_choice',
  });
  // What asks for nothing.
  for (const body of [
    {},
    { response_format: null },
    { response_format: { type: 'text' } },
    { structured_outputs: { json: null, disable_any_whitespace: true } },
    { guided_json: null, guided_choice: [] },
  ])
    assert.equal(structuredOutputOf(body), undefined, JSON.stringify(body));
  assert.equal(responsesStructuredOutput({ text: { format: { type: 'text' } } }), undefined);
});

test('refusals name the field: other types, regex, two constraints, malformed', () => {
  assert.throws(
    () => structuredOutputOf({ response_format: { type: 'structural_tag' } }),
    refusedWith('SY_ERR_UNSUPPORTED_PARAMETER', 'response_format', /structural_tag/),
  );
  assert.throws(
    () => structuredOutputOf({ structured_outputs: { grammar: 'root ::= "a"' } }),
    refusedWith('SY_ERR_UNSUPPORTED_PARAMETER', 'structured_outputs', /'grammar'/),
  );
  assert.throws(
    () => structuredOutputOf({ guided_json: { type: 'object' }, guided_choice: ['a'] }),
    refusedWith('SY_ERR_INVALID_ARGUMENT', 'guided_choice', /only one/),
  );
  assert.throws(
    () => structuredOutputOf({ guided_json: '{not json' }),
    refusedWith('SY_ERR_INVALID_ARGUMENT', 'guided_json', /JSON Schema/),
  );
  assert.throws(
    () => structuredOutputOf({ response_format: { type: 'json_schema', json_schema: { name: 'x' } } }),
    refusedWith('SY_ERR_INVALID_ARGUMENT', 'response_format.json_schema.schema', /expected/),
  );
  assert.throws(
    () => structuredOutputOf({ guided_choice: ['a', 3] }),
    refusedWith('SY_ERR_INVALID_ARGUMENT', 'guided_choice', /list of strings/),
  );
});

test('unenforceable keywords are 400 naming the keyword and where it is', () => {
  const cases: [object, string, RegExp][] = [
    [{ type: 'string', pattern: 'a' }, 'SY_ERR_UNSUPPORTED_PARAMETER', /'pattern' at #\/pattern/],
    [{ properties: { a: { not: {} } } }, 'SY_ERR_UNSUPPORTED_PARAMETER', /'not' at #\/properties\/a\/not/],
    [{ allOf: [{ type: 'string' }, { maxLength: 3 }] }, 'SY_ERR_UNSUPPORTED_PARAMETER', /'allOf'/],
    [{ $ref: 'https://example.com/s.json' }, 'SY_ERR_UNSUPPORTED_PARAMETER', /'\$ref'/],
    [{ $ref: '#/$defs/Missing' }, 'SY_ERR_INVALID_ARGUMENT', /points to no definition/],
    [{ type: 'string', format: 'email' }, 'SY_ERR_UNSUPPORTED_PARAMETER', /'format'.*'email'/],
    [{ type: 'array', uniqueItems: true }, 'SY_ERR_UNSUPPORTED_PARAMETER', /'uniqueItems'/],
    [
      { type: 'object', properties: {}, required: ['a'] },
      'SY_ERR_UNSUPPORTED_PARAMETER',
      /'a' is not in properties/,
    ],
    [{ type: 'integer', minimum: 2 }, 'SY_ERR_UNSUPPORTED_PARAMETER', /'minimum'/],
    [{ type: 'number', maximum: 5 }, 'SY_ERR_UNSUPPORTED_PARAMETER', /'maximum'/],
    [{ type: 'string', minLength: 5000 }, 'SY_ERR_INVALID_ARGUMENT', /from 0 to 1024/],
    [{ type: 'string', minLength: 5, maxLength: 2 }, 'SY_ERR_INVALID_ARGUMENT', /above maxLength/],
    [{ oneOf: [{ type: 'string' }], type: 'string' }, 'SY_ERR_UNSUPPORTED_PARAMETER', /'type'.*beside oneOf/],
    [{ enum: [{ a: 1 }] }, 'SY_ERR_UNSUPPORTED_PARAMETER', /'enum'/],
    [{ type: 'strin' }, 'SY_ERR_INVALID_ARGUMENT', /expected one of/],
  ];
  for (const [schema, code, message] of cases)
    assert.throws(
      () => normalizeSchema(schema, 'p'),
      refusedWith(code, 'p', message),
      JSON.stringify(schema),
    );
});

test('size and nesting are bounded', () => {
  let deep: object = { type: 'string' };
  for (let i = 0; i < 40; i++) deep = { type: 'array', items: deep };
  assert.throws(
    () => normalizeSchema(deep, 'p'),
    refusedWith('SY_ERR_INVALID_ARGUMENT', 'p', /nests deeper than 32/),
  );
  const wide = {
    type: 'object',
    properties: Object.fromEntries(Array.from({ length: 5000 }, (_, i) => [`k${i}`, {}])),
  };
  assert.throws(
    () => normalizeSchema(wide, 'p'),
    refusedWith('SY_ERR_INVALID_ARGUMENT', 'p', /above the bound of 32768/),
  );
  assert.throws(
    () => structuredOutputOf({ guided_choice: Array.from({ length: 300 }, (_, i) => `c${i}`) }),
    refusedWith('SY_ERR_INVALID_ARGUMENT', 'guided_choice', /bound of 256/),
  );
});

test('normalised for the grammar: anyOf, definitions, type lists, one-element allOf, wide bounds', () => {
  assert.deepEqual(
    normalizeSchema(
      {
        title: 'T',
        type: 'object',
        properties: {
          a: { anyOf: [{ $ref: '#/definitions/A' }, { type: 'null' }], default: null },
          b: { type: ['string', 'null'], maxLength: 3 },
          c: { allOf: [{ $ref: '#/definitions/A' }], description: 'the A' },
          n: { type: 'integer', minimum: -9007199254740991, maximum: 9007199254740991 },
          m: { type: 'integer', exclusiveMinimum: 0 },
          f: { type: 'number', minimum: 0 },
          r: { type: 'integer', minimum: 1, exclusiveMaximum: 4 },
          e: { type: 'integer', enum: [-1, 2, 30], minimum: 0, maximum: 9 },
        },
        definitions: { A: { type: 'string' } },
      },
      'p',
    ),
    {
      type: 'object',
      properties: {
        a: { oneOf: [{ $ref: '#/$defs/A' }, { type: 'null' }] },
        b: {
          oneOf: [
            { maxLength: 3, type: 'string' },
            { maxLength: 3, type: 'null' },
          ],
        },
        c: { $ref: '#/$defs/A' },
        n: { type: 'integer', 'x-sy-number': { negative: true, nonZero: false, digits: 15 } },
        m: { type: 'integer', 'x-sy-number': { negative: false, nonZero: true, digits: 16 } },
        f: { type: 'number', 'x-sy-number': { negative: false, nonZero: false, digits: 16 } },
        r: { type: 'integer', enum: [1, 2, 3] },
        e: { type: 'integer', enum: [2] },
      },
      $defs: { A: { type: 'string' } },
    },
  );
});

test("the sim's minimal instance validates against its schema", () => {
  const schemas: object[] = [
    {
      type: 'object',
      properties: {
        name: { type: 'string', minLength: 2 },
        role: { enum: ['admin', 'user'] },
        tags: { type: 'array', items: { type: 'string' }, minItems: 2 },
        when: { type: 'string', format: 'date-time' },
        kind: { const: 'cat' },
        n: { type: 'integer', exclusiveMinimum: 0 },
        stars: { type: 'integer', minimum: 1, maximum: 5 },
        tree: { $ref: '#/$defs/Node' },
        extra: { type: 'object', additionalProperties: { type: 'boolean' }, minProperties: 2 },
      },
      required: ['name', 'role', 'tags', 'when', 'kind', 'n', 'stars', 'tree', 'extra'],
      additionalProperties: false,
      $defs: {
        Node: {
          type: 'object',
          properties: { child: { anyOf: [{ $ref: '#/$defs/Node' }, { type: 'null' }] } },
          required: ['child'],
        },
      },
    },
    { type: 'array', prefixItems: [{ type: 'integer' }, { type: 'boolean' }], minItems: 2 },
    { type: ['null', 'string'] },
    { type: 'object', additionalProperties: true },
  ];
  for (const schema of schemas) {
    const value = minimalInstance(normalizeSchema(schema, 'p'));
    const check = z.fromJSONSchema(schema as never).safeParse(value);
    assert.ok(check.success, `${JSON.stringify(value)} against ${JSON.stringify(schema)}`);
  }
  // A schema whose every instance is infinite: 400, not a stack overflow.
  const endless = {
    $ref: '#/$defs/N',
    $defs: { N: { type: 'object', properties: { c: { $ref: '#/$defs/N' } }, required: ['c'] } },
  };
  assert.throws(
    () => minimalInstance(normalizeSchema(endless, 'p'), 'p'),
    refusedWith('SY_ERR_INVALID_ARGUMENT', 'p', /no instance/),
  );
});

test('GBNF pieces: literals escaped, choices alternated, bounded numbers by sign and digits', () => {
  assert.equal(gbnfLiteral('a"b\\c\nd\u0001é'), '"a\\"b\\\\c\\nd\\x01é"');
  assert.equal(choiceGbnf(['yes', 'no']), 'root ::= "yes" | "no"\n');
  assert.equal(
    numberGbnf({ negative: true, nonZero: false, digits: 15 }, false),
    '("-"? ("0" | [1-9] [0-9]{0,14}))',
  );
  assert.equal(numberGbnf({ negative: false, nonZero: true, digits: 1 }, false), '([1-9])');
  assert.equal(
    numberGbnf({ negative: false, nonZero: false, digits: 2 }, true),
    '(("0" | [1-9] [0-9]{0,1}) ("." [0-9]{1,16})?)',
  );
});

test('the grammar cache is a bounded LRU, and a failed compile is not kept', async () => {
  let compiles = 0;
  const llama = {
    createGrammar: async ({ grammar }: { grammar: string }) => {
      compiles++;
      if (grammar.includes('bad')) throw new Error('parse error');
      return { grammar };
    },
    createGrammarForJsonSchema: async () => ({ grammar: 'root ::= "x"' }),
  };
  const cache = new GrammarCache(llama as never, 2);
  const choice = (c: string): StructuredOutput => ({
    kind: 'choice',
    choices: [c],
    key: c,
    param: 'guided_choice',
  });
  await cache.grammar(choice('a'));
  await cache.grammar(choice('b'));
  await cache.grammar(choice('a')); // a hit: 'a' is now the most recent
  assert.equal(compiles, 2);
  await cache.grammar(choice('c')); // evicts 'b'
  assert.equal(cache.size, 2);
  await cache.grammar(choice('a'));
  assert.equal(compiles, 3);
  await cache.grammar(choice('b'));
  assert.equal(compiles, 4);
  await assert.rejects(
    cache.grammar(choice('bad')),
    refusedWith('SY_ERR_UNSUPPORTED_PARAMETER', 'guided_choice', /parse error/),
  );
  await new Promise((r) => setImmediate(r));
  assert.equal(cache.size, 1, "the failed compile is not kept (it took the oldest entry's place)");
  const before = compiles;
  await assert.rejects(cache.grammar(choice('bad')));
  assert.equal(compiles, before + 1, 'compiled again, not served from the cache');
});

test('schemaInText finds the last JSON Schema a JSON-mode prompt carries, and nothing else', () => {
  const schema = { type: 'object', properties: { name: { type: 'string' } }, required: ['name'] };
  // The AI SDK's JSON mode (openai-compatible without supportsStructuredOutputs) writes this.
  const prompt = `<|system|>\nJSON schema:\n${JSON.stringify(schema)}\nYou MUST answer with a JSON object that matches the JSON schema above.\n<|user|>\nA person {please}, "quoted" text\n`;
  assert.deepEqual(schemaInText(prompt), schema);
  assert.deepEqual(minimalInstance(schemaInText(prompt)!), { name: '' });
  assert.equal(schemaInText('no schema here {"a": 1} and {not json}'), undefined);
  // One no grammar holds is passed over, not refused (the request asked for any object).
  assert.equal(
    schemaInText(JSON.stringify({ type: 'object', properties: { a: { pattern: 'x' } } })),
    undefined,
  );
  assert.equal(schemaInText('{'.repeat(100_000)), undefined);
});
