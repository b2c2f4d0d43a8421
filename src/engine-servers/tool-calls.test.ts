import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { SwitchyardError } from '../core/errors.ts';
import { minimalInstance } from './structured-output.ts';
import { type ToolCalling, toolCallingOf } from './tool-calls.ts';

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

  it('refuses auto (and its default), unknown names, bad lists, unholdable schemas, clashing $defs', () => {
    assert.equal(
      refusal(() => toolCallingOf({ tools })),
      'SY_ERR_UNSUPPORTED_PARAMETER:tool_choice',
    );
    assert.equal(
      refusal(() => toolCallingOf({ tools, tool_choice: 'auto' })),
      'SY_ERR_UNSUPPORTED_PARAMETER:tool_choice',
    );
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
