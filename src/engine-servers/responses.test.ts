import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { SwitchyardError } from '../core/errors.ts';
import { parseCompletionBody } from '../core/openai-api.ts';
import { responsesMessages } from '../core/responses-api.ts';
import { parseResponsesBody } from './responses.ts';

const MODEL = 'm';
const CALL = {
  type: 'function_call',
  id: 'fc_1',
  call_id: 'call_1',
  name: 'get_weather',
  arguments: '{"city":"Paris"}',
  status: 'completed',
};
const OUTPUT = { type: 'function_call_output', call_id: 'call_1', output: '{"temp":21,"sky":"sunny"}' };
const TURN = [{ role: 'user', content: 'Weather in Paris?' }, CALL, OUTPUT];

/** The SwitchyardError parseResponsesBody refuses `input` with. */
function refusal(input: unknown[]): SwitchyardError {
  try {
    parseResponsesBody({ model: MODEL, input });
  } catch (error) {
    assert.ok(error instanceof SwitchyardError, String(error));
    return error;
  }
  assert.fail(`accepted ${JSON.stringify(input)}`);
}

describe('Responses function_call / function_call_output input items (a tool round trip)', () => {
  it("become chat's assistant tool_calls turn and tool message, in order", () => {
    assert.deepEqual(responsesMessages('Be brief.', TURN), [
      { role: 'system', content: 'Be brief.' },
      { role: 'user', content: 'Weather in Paris?' },
      {
        role: 'assistant',
        content: '',
        tool_calls: [
          {
            id: 'call_1',
            type: 'function',
            function: { name: 'get_weather', arguments: '{"city":"Paris"}' },
          },
        ],
      },
      { role: 'tool', content: '{"temp":21,"sky":"sunny"}', tool_call_id: 'call_1' },
    ]);
    // An output given as input_text parts: their text joined by "\n", as a message's parts.
    const parts = responsesMessages(undefined, [
      CALL,
      {
        ...OUTPUT,
        output: [
          { type: 'input_text', text: 'line 1' },
          { type: 'input_text', text: 'line 2' },
        ],
      },
    ]);
    assert.deepEqual(parts[1], { role: 'tool', content: 'line 1\nline 2', tool_call_id: 'call_1' });
  });

  it('count in the prompt: the same text as the chat request with the same turns, longer than without them', () => {
    const responses = parseResponsesBody({ model: MODEL, input: TURN });
    const chat = parseCompletionBody('chat', {
      model: MODEL,
      messages: [
        { role: 'user', content: 'Weather in Paris?' },
        {
          role: 'assistant',
          content: null,
          tool_calls: [
            {
              id: 'call_1',
              type: 'function',
              function: { name: 'get_weather', arguments: '{"city":"Paris"}' },
            },
          ],
        },
        { role: 'tool', tool_call_id: 'call_1', content: '{"temp":21,"sky":"sunny"}' },
      ],
    });
    assert.equal(responses.promptText, chat.promptText);
    assert.deepEqual(responses.prefix, chat.prefix);
    assert.match(responses.promptText, /get_weather/);
    assert.match(responses.promptText, /sunny/);
    const bare = parseResponsesBody({ model: MODEL, input: [TURN[0]] });
    assert.ok(
      responses.promptTokens > bare.promptTokens + 10,
      `${responses.promptTokens} vs ${bare.promptTokens}`,
    );
  });

  it('an output whose call_id no earlier function_call carries is 400 SY_ERR_INVALID_ARGUMENT naming the item', () => {
    for (const [input, param] of [
      [[TURN[0], OUTPUT], 'input[1]'],
      [[TURN[0], CALL, { ...OUTPUT, call_id: 'call_2' }], 'input[2]'],
      // The output before its call.
      [[TURN[0], OUTPUT, CALL], 'input[1]'],
    ] as const) {
      const e = refusal([...input]);
      assert.equal(e.code, 'SY_ERR_INVALID_ARGUMENT', JSON.stringify(input));
      assert.equal(e.toJSON().error.param, param);
      assert.match(e.message, /no function_call item with call_id "call_[12]"/);
    }
    // Two calls, their outputs in another order: served.
    const second = { ...CALL, call_id: 'call_2', id: 'fc_2' };
    parseResponsesBody({
      model: MODEL,
      input: [TURN[0], CALL, second, { ...OUTPUT, call_id: 'call_2' }, OUTPUT],
    });
  });

  it('an output part that is not text, a reasoning item and an item reference are 400 SY_ERR_UNSUPPORTED_PARAMETER naming them', () => {
    const image = refusal([
      TURN[0],
      CALL,
      {
        ...OUTPUT,
        output: [
          { type: 'input_text', text: 'a chart' },
          { type: 'input_image', image_url: 'data:,' },
        ],
      },
    ]);
    assert.deepEqual(
      [image.code, image.toJSON().error.param],
      ['SY_ERR_UNSUPPORTED_PARAMETER', 'input[2].output[1]'],
    );
    for (const item of [
      { type: 'reasoning', id: 'rs_1', summary: [] },
      { type: 'item_reference', id: 'msg_1' },
    ]) {
      const e = refusal([TURN[0], item]);
      assert.deepEqual(
        [e.code, e.toJSON().error.param],
        ['SY_ERR_UNSUPPORTED_PARAMETER', 'input[1]'],
        item.type,
      );
    }
  });
});
