import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { SwitchyardError } from '../core/errors.ts';
import { minimalInstance } from './structured-output.ts';
import { type AutoTurn, autoToolChoice, autoTurnsOf, type ToolCalling, toolCallingOf } from './tool-calls.ts';

/** The schema a tool calling is generated under. */
function schemaOf(calling: ToolCalling | undefined): Record<string, unknown> {
  assert.ok(calling !== undefined && calling.structured.kind === 'json');
  return calling.structured.schema as Record<string, unknown>;
}

const A = { type: 'object', properties: { x: { type: 'integer', minimum: 0 } }, required: ['x'] };
const B = {
  type: 'object',
  properties: { item: { $ref: '#/$defs/Item' } },
  required: ['item'],
  $defs: { Item: { type: 'object', properties: { n: { type: 'string' } }, required: ['n'] } },
};
const tools = [
  { type: 'function', function: { name: 'a', parameters: A } },
  { type: 'function', function: { name: 'b', parameters: B } },
  { type: 'function', function: { name: 'c' } },
];

/** The error `f` throws, as code:param. */
function refusal(f: () => unknown): string {
  try {
    f();
  } catch (error) {
    assert.ok(error instanceof SwitchyardError, String(error));
    return `${error.code}:${String(error.toJSON().error.param)}`;
  }
  assert.fail('no error');
}

describe('toolCallingOf', () => {
  it('none, no tools, and auto without tools: nothing to call', () => {
    assert.equal(toolCallingOf({ tools, tool_choice: 'none' }), undefined);
    assert.equal(toolCallingOf({}), undefined);
    assert.equal(toolCallingOf({ tools: [], tool_choice: 'auto' }), undefined);
  });

  it('named: the function schema; required: an array of {name, parameters} alternatives, $defs at the root', () => {
    const named = toolCallingOf({ tools, tool_choice: { type: 'function', function: { name: 'b' } } });
    assert.equal(named?.mode, 'named');
    assert.deepEqual(named?.names, ['b']);
    assert.deepEqual(minimalInstance(schemaOf(named) as never), {
      item: { n: '' },
    });
    const required = toolCallingOf({ tools, tool_choice: 'required', parallel_tool_calls: false });
    assert.equal(required?.mode, 'required');
    const schema = schemaOf(required);
    assert.equal(schema['minItems'], 1);
    assert.equal(schema['maxItems'], 1);
    assert.ok('Item' in (schema['$defs'] as object));
    // The sim's answer: one call to the first tool, its minimal arguments.
    assert.deepEqual(minimalInstance(schema as never), [{ name: 'a', parameters: { x: 0 } }]);
    // No function parameters: an empty object of arguments.
    const c = toolCallingOf({ tools, tool_choice: { type: 'function', function: { name: 'c' } } });
    assert.deepEqual(minimalInstance(schemaOf(c) as never), {});
  });

  it('refuses unknown names, bad lists, unholdable schemas, clashing $defs', () => {
    assert.equal(
      refusal(() => toolCallingOf({ tools, tool_choice: { type: 'function', function: { name: 'z' } } })),
      'SY_ERR_INVALID_ARGUMENT:tool_choice',
    );
    assert.equal(
      refusal(() => toolCallingOf({ tool_choice: 'required' })),
      'SY_ERR_INVALID_ARGUMENT:tool_choice',
    );
    assert.equal(
      refusal(() => toolCallingOf({ tools, tool_choice: 'sometimes' })),
      'SY_ERR_INVALID_ARGUMENT:tool_choice',
    );
    assert.equal(
      refusal(() => toolCallingOf({ tools: [{ type: 'web' }], tool_choice: 'required' })),
      'SY_ERR_UNSUPPORTED_PARAMETER:tools[0]',
    );
    assert.equal(
      refusal(() => toolCallingOf({ tools: [{ function: { name: 'f' } }], tool_choice: 'required' })),
      'SY_ERR_INVALID_ARGUMENT:tools[0]',
    );
    assert.equal(
      refusal(() =>
        toolCallingOf({ tools: Array.from({ length: 129 }, () => tools[2]), tool_choice: 'required' }),
      ),
      'SY_ERR_INVALID_ARGUMENT:tools',
    );
    const patterned = [
      { type: 'function', function: { name: 'p', parameters: { type: 'string', pattern: 'a' } } },
    ];
    assert.equal(
      refusal(() => toolCallingOf({ tools: patterned, tool_choice: 'required' })),
      'SY_ERR_UNSUPPORTED_PARAMETER:tools[0].function.parameters',
    );
    const other = { ...B, $defs: { Item: { type: 'integer' } } };
    const clash = [tools[1], { type: 'function', function: { name: 'd', parameters: other } }];
    assert.equal(
      refusal(() => toolCallingOf({ tools: clash, tool_choice: 'required' })),
      'SY_ERR_UNSUPPORTED_PARAMETER:tools[1].function.parameters',
    );
  });
});

describe('autoToolChoice (the rule auto follows)', () => {
  const user = (text: string): AutoTurn => ({ kind: 'user', text });
  const result: AutoTurn = { kind: 'tool-result', text: '' };
  const other: AutoTurn = { kind: 'other', text: '' };
  const names = ['get_time', 'get_weather', 'search'];

  it('calls the first listed tool named in the last user turn, else the first tool', () => {
    assert.equal(autoToolChoice(names, [user('use get_weather or search')]), 'get_weather');
    assert.equal(autoToolChoice(names, [user('search, then get_time')]), 'get_time');
    assert.equal(autoToolChoice(names, [user('hello')]), 'get_time');
    // A whole word only: not inside a longer word or name.
    assert.equal(autoToolChoice(names, [user('research my_get_weather, then search.')]), 'search');
    assert.equal(autoToolChoice(['a', 'b'], [user('please b')]), 'b');
    // Only the last user turn counts, and case matters.
    assert.equal(autoToolChoice(names, [user('search'), other, user('GET_WEATHER')]), 'get_time');
    assert.equal(autoToolChoice(names, []), 'get_time');
    assert.equal(autoToolChoice([], [user('x')]), undefined);
  });

  it('answers in text once a tool result follows the last user turn; a new user turn calls again', () => {
    assert.equal(autoToolChoice(names, [user('search'), other, result]), undefined);
    assert.equal(autoToolChoice(names, [user('a'), other, result, other]), undefined);
    assert.equal(autoToolChoice(names, [user('a'), other, result, other, user('search')]), 'search');
    assert.equal(autoToolChoice(names, [other, result]), undefined);
  });

  it('reads chat messages (tool and legacy function results) and Responses input', () => {
    const chat = {
      messages: [
        { role: 'system', content: 'S' },
        {
          role: 'user',
          content: [{ type: 'text', text: 'a' }, { type: 'image_url' }, { type: 'text', text: 'b' }],
        },
        { role: 'assistant', content: null, tool_calls: [] },
        { role: 'tool', tool_call_id: 'c', content: 'r' },
        { role: 'function', name: 'f', content: 'r' },
      ],
    };
    assert.deepEqual(
      autoTurnsOf(chat, 'chat').map((t) => `${t.kind}:${t.text}`),
      ['other:', 'user:a\nb', 'other:', 'tool-result:', 'tool-result:'],
    );
    assert.deepEqual(autoTurnsOf({ input: 'hi' }, 'responses'), [{ kind: 'user', text: 'hi' }]);
    const input = [
      { role: 'user', content: 'q' },
      { type: 'function_call', call_id: 'c', name: 'f', arguments: '{}' },
      { type: 'function_call_output', call_id: 'c', output: 'r' },
    ];
    assert.deepEqual(
      autoTurnsOf({ input }, 'responses').map((t) => t.kind),
      ['user', 'other', 'tool-result'],
    );
    assert.deepEqual(autoTurnsOf({ messages: 'x' }, 'chat'), []);
  });
});

describe('toolCallingOf: auto and the legacy functions', () => {
  const ask = (text: string) => [{ role: 'user', content: text }];

  it('auto (sent or the default) is a named call marked auto, by the rule; a tool result: text', () => {
    for (const body of [
      { tools, messages: ask('please b') },
      { tools, tool_choice: 'auto', messages: ask('please b') },
    ]) {
      const calling = toolCallingOf(body);
      assert.equal(calling?.mode, 'named');
      assert.deepEqual(calling?.names, ['b']);
      assert.equal(calling?.auto, true);
      assert.equal(calling?.legacy, false);
      // Generated under that tool's schema, as a named call is.
      assert.deepEqual(minimalInstance(schemaOf(calling) as never), { item: { n: '' } });
    }
    assert.deepEqual(toolCallingOf({ tools, messages: ask('hi') })?.names, ['a']);
    const answered = [...ask('b'), { role: 'assistant', tool_calls: [] }, { role: 'tool', content: '1' }];
    assert.equal(toolCallingOf({ tools, messages: answered }), undefined);
    assert.equal(
      toolCallingOf({ tools, tool_choice: { type: 'function', function: { name: 'a' } } })?.auto,
      false,
    );
    // Responses: flat tools, the input's function_call_output.
    const flat = [{ type: 'function', name: 'f', parameters: A }];
    assert.deepEqual(toolCallingOf({ tools: flat, input: 'go' }, 'responses')?.names, ['f']);
    const done = [
      { role: 'user', content: 'go' },
      { type: 'function_call_output', call_id: 'c', output: '1' },
    ];
    assert.equal(toolCallingOf({ tools: flat, input: done }, 'responses'), undefined);
  });

  it('maps functions and function_call: a name is named, auto (or none given) by the rule, none is text', () => {
    const functions = [{ name: 'a', parameters: A }, { name: 'c' }];
    const named = toolCallingOf({ functions, function_call: { name: 'c' }, messages: ask('x') });
    assert.equal(named?.legacy, true);
    assert.equal(named?.auto, false);
    assert.deepEqual(named?.names, ['c']);
    const auto = toolCallingOf({ functions, messages: ask('use c') });
    assert.equal(auto?.legacy, true);
    assert.equal(auto?.auto, true);
    assert.deepEqual(auto?.names, ['c']);
    assert.deepEqual(toolCallingOf({ functions, function_call: 'auto', messages: ask('x') })?.names, ['a']);
    assert.equal(toolCallingOf({ functions, function_call: 'none', messages: ask('x') }), undefined);
    const answered = [...ask('c'), { role: 'function', name: 'c', content: '1' }];
    assert.equal(toolCallingOf({ functions, messages: answered }), undefined);
    assert.equal(toolCallingOf({ function_call: 'auto', messages: ask('x') }), undefined);
  });

  it('refuses legacy mixed with tools, a bad function_call, unknown names and bad functions, naming them', () => {
    const functions = [{ name: 'a', parameters: A }];
    assert.equal(
      refusal(() => toolCallingOf({ functions, tools })),
      'SY_ERR_INVALID_ARGUMENT:functions',
    );
    assert.equal(
      refusal(() => toolCallingOf({ function_call: 'auto', tool_choice: 'required', tools })),
      'SY_ERR_INVALID_ARGUMENT:function_call',
    );
    assert.equal(
      refusal(() => toolCallingOf({ functions, function_call: 'required' })),
      'SY_ERR_INVALID_ARGUMENT:function_call',
    );
    assert.equal(
      refusal(() => toolCallingOf({ functions, function_call: { name: 'z' } })),
      'SY_ERR_INVALID_ARGUMENT:function_call',
    );
    assert.equal(
      refusal(() => toolCallingOf({ function_call: { name: 'a' } })),
      'SY_ERR_INVALID_ARGUMENT:function_call',
    );
    assert.equal(
      refusal(() => toolCallingOf({ functions: [{}] })),
      'SY_ERR_INVALID_ARGUMENT:functions[0].name',
    );
    assert.equal(
      refusal(() =>
        toolCallingOf({ functions: [{ name: 'p', parameters: { type: 'string', pattern: 'a' } }] }),
      ),
      'SY_ERR_UNSUPPORTED_PARAMETER:functions[0].parameters',
    );
  });
});

describe('toolCallingOf: allowed_tools, and the order a required list is generated in', () => {
  const rTools = [
    { type: 'function', name: 'get_weather', parameters: A },
    { type: 'function', name: 'final_result', parameters: B },
  ];
  /** The tool names of a required schema's alternatives, in order. */
  const order = (calling: ToolCalling | undefined): string[] => {
    const items = schemaOf(calling)['items'] as Record<string, unknown>;
    const alternatives = (items['oneOf'] as Record<string, unknown>[] | undefined) ?? [items];
    return alternatives.map(
      (alt) => ((alt['properties'] as Record<string, { const: string }>)['name'] as { const: string }).const,
    );
  };

  it('reads both forms: its mode over the subset it lists (pydantic-ai, Responses: required over two)', () => {
    const responses = toolCallingOf(
      {
        input: 'weather?',
        tools: rTools,
        tool_choice: {
          type: 'allowed_tools',
          mode: 'required',
          tools: [
            { type: 'function', name: 'final_result' },
            { type: 'function', name: 'get_weather' },
          ],
        },
      },
      'responses',
    );
    assert.equal(responses?.mode, 'required');
    assert.deepEqual(order(responses), ['get_weather', 'final_result']);
    const chat = toolCallingOf({
      messages: [{ role: 'user', content: 'x' }],
      tools,
      tool_choice: {
        type: 'allowed_tools',
        allowed_tools: { mode: 'required', tools: [{ type: 'function', function: { name: 'c' } }] },
      },
    });
    assert.equal(chat?.mode, 'required');
    assert.deepEqual(chat?.names, ['c']);
    // auto over the subset: the rule's first tool among those kept, not the first listed.
    const auto = toolCallingOf({
      messages: [{ role: 'user', content: 'x' }],
      tools,
      tool_choice: {
        type: 'allowed_tools',
        allowed_tools: { mode: 'auto', tools: [{ type: 'function', function: { name: 'b' } }] },
      },
    });
    assert.deepEqual([auto?.mode, auto?.names, auto?.auto], ['named', ['b'], true]);
  });

  it('refuses an unlisted name, another tool type and a malformed choice, naming the place', () => {
    const chat = (allowed: unknown) => () =>
      toolCallingOf({ messages: [], tools, tool_choice: { type: 'allowed_tools', allowed_tools: allowed } });
    assert.equal(
      refusal(chat({ mode: 'auto', tools: [{ type: 'function', function: { name: 'z' } }] })),
      'SY_ERR_INVALID_ARGUMENT:tool_choice.allowed_tools.tools[0]',
    );
    assert.equal(
      refusal(chat({ mode: 'sometimes', tools: [] })),
      'SY_ERR_INVALID_ARGUMENT:tool_choice.allowed_tools.mode',
    );
    assert.equal(
      refusal(chat({ mode: 'auto', tools: [] })),
      'SY_ERR_INVALID_ARGUMENT:tool_choice.allowed_tools.tools',
    );
    assert.equal(
      refusal(() =>
        toolCallingOf(
          {
            input: 'x',
            tools: rTools,
            tool_choice: { type: 'allowed_tools', mode: 'required', tools: [{ type: 'image_generation' }] },
          },
          'responses',
        ),
      ),
      'SY_ERR_UNSUPPORTED_PARAMETER:tool_choice.tools[0]',
    );
  });

  it('required puts the tools not yet called since the last user turn first (chat and Responses)', () => {
    const user = { role: 'user', content: 'weather?' };
    const chatAfter = (name: string) => [
      user,
      {
        role: 'assistant',
        content: null,
        tool_calls: [{ id: '1', type: 'function', function: { name, arguments: '{}' } }],
      },
      { role: 'tool', tool_call_id: '1', content: 'ok' },
    ];
    const chatTools = rTools.map(({ name, parameters }) => ({
      type: 'function',
      function: { name, parameters },
    }));
    const chat = (messages: unknown[]) =>
      order(toolCallingOf({ messages, tools: chatTools, tool_choice: 'required' }));
    assert.deepEqual(chat([user]), ['get_weather', 'final_result']);
    assert.deepEqual(chat(chatAfter('get_weather')), ['final_result', 'get_weather']);
    // A new user turn starts over.
    assert.deepEqual(chat([...chatAfter('get_weather'), user]), ['get_weather', 'final_result']);
    const responses = order(
      toolCallingOf(
        {
          input: [
            user,
            { type: 'function_call', call_id: 'c', name: 'get_weather', arguments: '{}' },
            { type: 'function_call_output', call_id: 'c', output: 'ok' },
          ],
          tools: rTools,
          tool_choice: 'required',
        },
        'responses',
      ),
    );
    assert.deepEqual(responses, ['final_result', 'get_weather']);
  });
});
