/**
 * OpenAI's Responses API (`POST /v1/responses`) as far as Switchyard reads it: the conversation a
 * body carries (`instructions`, then `input`: a string, or input items whose messages hold a
 * string or content parts, and a tool round trip's `function_call` and `function_call_output`
 * items). Shared by the gateway (routing text) and the built-in engines (the prompt), so both see
 * the same conversation and refuse the same bad shapes.
 */
import { SwitchyardError } from './errors.ts';
import { chatPartsText, MAX_TOKENS_LIMIT } from './openai-api.ts';
import type { ChatText } from './text-prefix.ts';

/** Input items a body may carry (chat's bound on messages). */
export const RESPONSES_INPUT_ITEMS_MAX = 100_000;
/** The longest `call_id` and function `name` a tool item may carry (names as tool-calls.ts bounds them). */
const CALL_ID_CHARS_MAX = 512;
const FUNCTION_NAME_CHARS_MAX = 256;
/** Roles an input message may have (OpenAI's EasyInputMessage roles). */
const ROLES: ReadonlySet<string> = new Set(['user', 'system', 'developer', 'assistant']);

function invalid(param: string, what: string): SwitchyardError {
  return new SwitchyardError('SY_ERR_INVALID_ARGUMENT', `invalid request body: ${param}: ${what}`, { param });
}

/**
 * A body's `max_output_tokens`: undefined when absent or null, else an integer in [1,
 * MAX_TOKENS_LIMIT] (chat's bound on max_tokens), or the 400 naming it.
 */
export function responsesMaxOutputTokens(body: Record<string, unknown>): number | undefined {
  const v = body['max_output_tokens'];
  if (v === undefined || v === null) return undefined;
  if (!(Number.isSafeInteger(v) && (v as number) >= 1 && (v as number) <= MAX_TOKENS_LIMIT))
    throw invalid('max_output_tokens', `expected an integer in [1, ${MAX_TOKENS_LIMIT}]`);
  return v as number;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** One tool call of an assistant turn, in chat's shape (what the chat renderer reads). */
export interface ChatToolCall {
  readonly id: string;
  readonly type: 'function';
  readonly function: { readonly name: string; readonly arguments: string };
}

/**
 * A chat message of a Responses conversation: a message's text, or a tool round trip in chat's
 * shape: a `function_call` item as an assistant turn with `tool_calls` (content ''), its
 * `function_call_output` as a `tool` message with `tool_call_id` (as vLLM's
 * construct_chat_message_with_tool_call converts them, one message per item).
 */
export interface ResponsesChatMessage extends ChatText {
  readonly tool_calls?: readonly ChatToolCall[];
  readonly tool_call_id?: string;
}

/** A string of 1 to `max` characters at `at`, or the 400 naming it. */
function boundedString(v: unknown, at: string, max: number): string {
  if (typeof v !== 'string' || v.length === 0 || v.length > max)
    throw invalid(at, `expected a string of 1 to ${max} characters`);
  return v;
}

/**
 * A `function_call` item (`{type, call_id, name, arguments, id?, status?}`, what a client sends back
 * of the model's call) as an assistant turn with one chat tool call, or the 400 naming the field.
 */
function functionCallMessage(item: Record<string, unknown>, at: string): ResponsesChatMessage {
  const callId = boundedString(item['call_id'], `${at}.call_id`, CALL_ID_CHARS_MAX);
  const name = boundedString(item['name'], `${at}.name`, FUNCTION_NAME_CHARS_MAX);
  const args = item['arguments'];
  if (typeof args !== 'string') throw invalid(`${at}.arguments`, 'expected the arguments as a JSON string');
  return {
    role: 'assistant',
    content: '',
    tool_calls: [{ id: callId, type: 'function', function: { name, arguments: args } }],
  };
}

/**
 * A `function_call_output` item (`{type, call_id, output}`: the tool's result; `output` a string or
 * a list of `input_text` / `input_image` / `input_file` parts) as a `tool` message: its text, the
 * parts' text joined as a message's parts are (parts without text add none), or the 400 naming the
 * field.
 */
function functionCallOutputMessage(item: Record<string, unknown>, at: string): ResponsesChatMessage {
  const callId = boundedString(item['call_id'], `${at}.call_id`, CALL_ID_CHARS_MAX);
  const output = item['output'];
  if (typeof output !== 'string' && !Array.isArray(output))
    throw invalid(`${at}.output`, 'expected a string or an array of content parts');
  return { role: 'tool', content: contentText(output, `${at}.output`), tool_call_id: callId };
}

/**
 * The conversation of `instructions` and `input` as chat messages, in order: each message's text,
 * and a tool round trip's `function_call` / `function_call_output` items in chat's shape
 * (ResponsesChatMessage), so the routing text and the built-in engines' prompt hold them; a bad
 * shape throws the 400 naming where. Other items that are not messages (no `role`: a reasoning
 * item, an item reference) carry no routing text and pass through for the engine to judge.
 */
export function responsesMessages(instructions: unknown, input: unknown): ResponsesChatMessage[] {
  const messages: ResponsesChatMessage[] = [];
  if (instructions !== undefined && instructions !== null) {
    if (typeof instructions !== 'string') throw invalid('instructions', 'expected a string');
    messages.push({ role: 'system', content: instructions });
  }
  if (input === undefined || input === null) throw invalid('input', 'required');
  if (typeof input === 'string') {
    messages.push({ role: 'user', content: input });
    return messages;
  }
  if (!Array.isArray(input)) throw invalid('input', 'expected a string or an array of input items');
  if (input.length === 0 || input.length > RESPONSES_INPUT_ITEMS_MAX)
    throw invalid('input', `expected 1 to ${RESPONSES_INPUT_ITEMS_MAX} input items`);
  for (let i = 0; i < input.length; i++) {
    const item: unknown = input[i];
    const at = `input[${i}]`;
    if (!isObject(item)) throw invalid(at, 'expected an object');
    const role = item['role'];
    const type = item['type'];
    if (role === undefined && type === 'function_call') messages.push(functionCallMessage(item, at));
    else if (role === undefined && type === 'function_call_output')
      messages.push(functionCallOutputMessage(item, at));
    if (role === undefined && type !== undefined && type !== 'message') continue;
    if (typeof role !== 'string' || !ROLES.has(role))
      throw invalid(`${at}.role`, `expected one of ${[...ROLES].join(', ')}`);
    messages.push({ role, content: contentText(item['content'], `${at}.content`) });
  }
  return messages;
}

/**
 * The text of a message's content: a string, or its parts' text as chat reads it (chatPartsText:
 * joined by "\n", as vLLM parses a Responses message through its chat parser).
 */
function contentText(content: unknown, at: string): string {
  if (typeof content === 'string') return content;
  if (!Array.isArray(content)) throw invalid(at, 'expected a string or an array of content parts');
  for (let j = 0; j < content.length; j++) {
    const part: unknown = content[j];
    if (!isObject(part) || typeof part['type'] !== 'string')
      throw invalid(`${at}[${j}]`, 'expected a content part with a string type');
    const t = part['text'];
    if (t !== undefined && typeof t !== 'string') throw invalid(`${at}[${j}].text`, 'expected a string');
  }
  return chatPartsText(content);
}

/**
 * The event that ends a Responses stream an error cut after its head went out (an engine gone
 * mid-stream, a timeout, a drain): OpenAI's `error` event (`type`, `sequence_number`, `code`,
 * `message`, `param`), plus the error object nested as `error`. A chat stream's bare
 * `data: {"error": ...}` is no Responses event: the Vercel AI SDK's `@ai-sdk/openai` validates every
 * event against its Responses schemas and reported a page of schema mismatches instead of the
 * message. The nested object keeps the openai SDKs raising an APIError with the code, as they do
 * for any event whose data has `error`; the AI SDK reads either form. `sequenceNumber` continues the
 * stream's numbering (the events relayed so far). No `[DONE]` follows: a Responses stream has none.
 */
export function responsesErrorEvent(error: SwitchyardError, sequenceNumber: number): string {
  const e = error.toJSON().error;
  const data = {
    type: 'error',
    sequence_number: sequenceNumber,
    code: e.code,
    message: e.message,
    param: e.param,
    error: e,
  };
  return `event: error\ndata: ${JSON.stringify(data)}\n\n`;
}
