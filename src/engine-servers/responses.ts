/**
 * OpenAI's Responses API (`POST /v1/responses`) on the built-in engines: the body is read as the
 * chat request with the same conversation (`instructions` as a system message, then the input
 * messages: src/core/responses-api.ts) and generated on the same path as chat, with the same
 * timing; only the answer's shape differs.
 *
 * A tool round trip sent back as input items (an agent's second turn: the OpenAI Agents SDK, the
 * AI SDK's `@ai-sdk/openai` Responses model with `store: false`, LangChain's `useResponsesApi`) is
 * read as chat's: a `function_call` item (`{type, call_id, name, arguments, id?, status?}`) is an
 * assistant turn with `tool_calls: [{id: call_id, type: "function", function: {name, arguments}}]`,
 * a `function_call_output` item (`{type, call_id, output}`, output a string or `input_text` parts)
 * a `{role: "tool", tool_call_id, content}` message, so both count in the prompt (the chat
 * renderer's tool-call text) and in the gateway's routing text alike. An output whose call_id no
 * earlier function_call item carries is 400 SY_ERR_INVALID_ARGUMENT naming `input[i]` (as OpenAI
 * answers one with no stored call to answer); an output part that is not text (an image, a file)
 * is 400 SY_ERR_UNSUPPORTED_PARAMETER naming `input[i].output[j]`.
 *
 * - Without `stream`: one `response` object (`object: 'response'`, `output` with one assistant
 *   `message` item holding one `output_text` part, `usage` with `input_tokens`, `output_tokens`,
 *   `total_tokens` and the cached prompt tokens; `instructions`, `metadata`, `user` and
 *   `tool_choice` echoed, and `temperature`/`top_p` as sent, else 1, the sampling the engines use).
 * - With `stream`: typed events (an `event:` line and `data:` JSON with the same `type` and a
 *   `sequence_number`) in OpenAI's order, so the SDKs' stream helpers (`client.responses.stream`),
 *   which build the response from the events, can follow it: `response.created` and
 *   `response.in_progress` (no output yet), `response.output_item.added` (the message, empty) and
 *   `response.content_part.added` (its empty text part), one `response.output_text.delta` per text
 *   delivery (one per engine step: a token on a decode step), then `response.output_text.done`,
 *   `response.content_part.done`, `response.output_item.done` with the whole text, and
 *   `response.completed` (or `response.incomplete`) with the whole response. No `[DONE]`: the
 *   Responses stream has none. As for chat, the head goes out with the first token, so a refusal
 *   keeps its HTTP status.
 * - A generation cut by its token limit (finish reason `length`: `max_output_tokens`, or the
 *   llama engine's default without it) is `status: "incomplete"` with `incomplete_details:
 *   {"reason": "max_output_tokens"}` and its message item `incomplete`, as OpenAI answers; one that
 *   ends on its own is `completed`. The sim, which has no end-of-sequence token, ends a request
 *   without `max_output_tokens` `completed` at its default (GenerationInput.noLimitSet).
 *
 * Function tools are served as on chat (tool-calls.ts), in the Responses API's flat form: `tools:
 * [{"type": "function", "name", "parameters", "strict"?}]` with `tool_choice: {"type": "function",
 * "name"}` or "required" generates the arguments under the grammar and answers `function_call`
 * output items (`{"type": "function_call", "id": "fc_...", "call_id": "call_...", "name",
 * "arguments", "status"}`) instead of the message; streamed, a named call's item is added first and
 * its arguments follow as `response.function_call_arguments.delta` events, then `.done` and
 * `response.output_item.done`; a required list's items go out when it closes. "auto", or tools
 * without a tool_choice, follows chat's rule (tool-calls.ts autoToolChoice: text once a
 * `function_call_output` follows the last user turn, else one `function_call` item; 400 to stop 34);
 * "none" is text; `{"type": "allowed_tools", "mode", "tools"}` is its mode over the tools it lists. Stored responses (`previous_response_id`, `conversation`), input items that are neither
 * messages nor a tool round trip (reasoning items, item references), log probabilities and
 * background mode are refused with 400 SY_ERR_UNSUPPORTED_PARAMETER naming the field, never ignored. Structured output
 * (`text.format` `json_object` or `json_schema`) is served (structured-output.ts), and the response
 * object echoes the format as sent; beside tools, an auto call turn leaves it aside and the text turn
 * after the `function_call_output` is served under it (stop 35), a forced call beside it is
 * made and the format dropped, as vLLM does (400 to stop 36).
 */
import { randomBytes } from 'node:crypto';
import type { ServerResponse } from 'node:http';
import { performance } from 'node:perf_hooks';
import { SwitchyardError } from '../core/errors.ts';
import { type ParsedCompletionRequest, parseCompletionBody } from '../core/openai-api.ts';
import { responsesMaxOutputTokens, responsesMessages } from '../core/responses-api.ts';
import type { FinishReason, GenerationSink, GenerationUsage } from './backend.ts';
import { errorBody, sendError, sendJson } from './respond.ts';
import { type Call, requiredCalls, type ToolCalling, toolCallingOf } from './tool-calls.ts';

/** What a Responses answer needs of the engine's HTTP server (EngineHttpServer has these). */
export interface ResponsesHost {
  firstToken(seconds: number): void;
  /** `reason` undefined for an error. */
  generationEnded(reason: FinishReason | undefined, seconds: number): void;
  closingHeaders(): Record<string, string>;
}

/** Responses fields the built-in engines refuse, and why (each is 400 naming the field). */
const UNSUPPORTED: readonly {
  readonly param: string;
  /** Whether the body asks for it: `v` is the field's value. */
  readonly asked: (v: unknown, body: Record<string, unknown>) => boolean;
  readonly why: string;
}[] = [
  {
    param: 'previous_response_id',
    asked: (v) => v !== undefined && v !== null,
    why: 'the built-in engines store no responses; send the whole conversation as input',
  },
  {
    param: 'conversation',
    asked: (v) => v !== undefined && v !== null,
    why: 'the built-in engines store no conversations; send the whole conversation as input',
  },
  {
    param: 'background',
    asked: (v) => v === true,
    why: 'the built-in engines answer in the foreground only',
  },
  {
    param: 'top_logprobs',
    asked: (v) => typeof v === 'number' && v > 0,
    why: 'log probabilities are not computed',
  },
  {
    param: 'include',
    asked: (v) => Array.isArray(v) && v.includes('message.output_text.logprobs'),
    why: 'log probabilities are not computed',
  },
];

/** Where each UNSUPPORTED entry's value is in the body (a dotted param names its parent field). */
function unsupportedValue(body: Record<string, unknown>, param: string): unknown {
  return body[param.split('.')[0] as string];
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Keys `metadata` may hold, and the longest key and value (OpenAI's documented bounds). */
const METADATA_KEYS_MAX = 16;
const METADATA_KEY_CHARS_MAX = 64;
const METADATA_VALUE_CHARS_MAX = 512;

/**
 * The request fields a response object echoes (`parallel_tool_calls`, `tools`, `tool_choice`,
 * `instructions`, `metadata`, `user`, `text.format`), as the JSON members to splice into it; a
 * `metadata` that is not a map of at most 16 short strings is 400. `tools` is echoed as sent;
 * `tool_choice` is the request's `none`, `required`, named function or `allowed_tools` (its type,
 * mode and tools), else `auto`, OpenAI's default (responsesToolCalling refuses any other).
 */
export function responsesEcho(body: unknown): string {
  const b = isObject(body) ? body : {};
  const metadata = b['metadata'] ?? {};
  const bad = (): SwitchyardError =>
    invalid(
      'metadata',
      `expected an object of at most ${METADATA_KEYS_MAX} string values (keys up to ${METADATA_KEY_CHARS_MAX} characters, values up to ${METADATA_VALUE_CHARS_MAX})`,
    );
  if (!isObject(metadata)) throw bad();
  const entries = Object.entries(metadata);
  if (entries.length > METADATA_KEYS_MAX) throw bad();
  for (const [k, v] of entries)
    if (k.length > METADATA_KEY_CHARS_MAX || typeof v !== 'string' || v.length > METADATA_VALUE_CHARS_MAX)
      throw bad();
  const text = (v: unknown): string => (typeof v === 'string' ? JSON.stringify(v) : 'null');
  // A forced call's choice as sent (responsesToolCalling read it); else none, or OpenAI's default.
  const choice = b['tool_choice'];
  const toolChoice =
    choice === 'none' || choice === 'required'
      ? `"${choice}"`
      : isObject(choice) && choice['type'] === 'function' && typeof choice['name'] === 'string'
        ? `{"type":"function","name":${JSON.stringify(choice['name'])}}`
        : isObject(choice) && choice['type'] === 'allowed_tools'
          ? JSON.stringify({ type: 'allowed_tools', mode: choice['mode'], tools: choice['tools'] })
          : '"auto"';
  const tools = Array.isArray(b['tools']) ? JSON.stringify(b['tools']) : '[]';
  // OpenAI's default is true; a request with no tools makes no calls either way.
  const parallel = typeof b['parallel_tool_calls'] === 'boolean' ? b['parallel_tool_calls'] : tools !== '[]';
  // The format as sent (OpenAI echoes it); a malformed one is refused by responsesStructuredOutput.
  const sent = isObject(b['text']) ? b['text']['format'] : undefined;
  const format =
    isObject(sent) && typeof sent['type'] === 'string' ? JSON.stringify(sent) : '{"type":"text"}';
  return (
    `"parallel_tool_calls":${parallel},"tools":${tools},"tool_choice":${toolChoice},"instructions":${text(b['instructions'])},"metadata":${JSON.stringify(metadata)},` +
    `"user":${text(b['user'])},"previous_response_id":null,"text":{"format":${format}},` +
    `"truncation":"disabled"`
  );
}

function invalid(param: string, what: string): SwitchyardError {
  return new SwitchyardError('SY_ERR_INVALID_ARGUMENT', `invalid request body: ${param}: ${what}`, { param });
}

/**
 * A Responses body as the chat request the engine generates: a bad body throws 400 naming the
 * Responses field, an unsupported one 400 SY_ERR_UNSUPPORTED_PARAMETER.
 */
export function parseResponsesBody(body: unknown): ParsedCompletionRequest {
  if (typeof body !== 'object' || body === null || Array.isArray(body))
    throw invalid('body', 'expected a JSON object');
  const b = body as Record<string, unknown>;
  for (const { param, asked, why } of UNSUPPORTED)
    if (asked(unsupportedValue(b, param), b))
      throw new SwitchyardError(
        'SY_ERR_UNSUPPORTED_PARAMETER',
        `parameter '${param}' is not supported by the built-in engines: ${why}`,
        { param },
      );
  const maxTokens = responsesMaxOutputTokens(b);
  const chat: Record<string, unknown> = {
    model: b['model'],
    messages: responsesMessages(b['instructions'], b['input']),
  };
  checkInputItems(b['input']);
  if (maxTokens !== undefined) chat['max_tokens'] = maxTokens;
  // The sampling fields mean the same in both APIs; anything else the engine ignores, as vLLM does.
  for (const field of ['stream', 'temperature', 'top_p', 'seed', 'priority', 'user', 'cache_salt'])
    if (b[field] !== undefined && b[field] !== null) chat[field] = b[field];
  // The limit is max_output_tokens here: an error blaming it names that.
  return { ...parseCompletionBody('chat', chat), maxTokensField: 'max_output_tokens' };
}

/**
 * The function tool calls a Responses body asks for (tool-calls.ts, flat form), or 400: a choice
 * naming no listed tool, a schema the engines cannot hold, a tool that is no function. A call
 * beside `text.format` leaves the format aside: an auto call leaves it to the text turn after it
 * (the OpenAI Agents SDK with an `outputType` sends both on every turn); a forced one (named,
 * required, `allowed_tools` required) has no text to answer in it, and vLLM drops it then (to stop
 * 36 this was 400 naming text.format).
 */
export function responsesToolCalling(body: unknown): ToolCalling | undefined {
  return toolCallingOf(body, 'responses');
}

/** Text part types a `function_call_output`'s output list may hold for the built-in engines. */
const OUTPUT_TEXT_PARTS: ReadonlySet<string> = new Set(['input_text', 'output_text', 'text']);

/**
 * The input items the built-in engines read besides messages: a tool round trip's `function_call`
 * and `function_call_output` items (responsesMessages puts them in the prompt). An output must
 * answer a call sent earlier in the same input (the engines store nothing, so no other call can be
 * meant; OpenAI answers such an input 400 too): else 400 SY_ERR_INVALID_ARGUMENT naming the item.
 * An output part that is not text (an image, a file) is 400 SY_ERR_UNSUPPORTED_PARAMETER naming it,
 * as a message's media part is (content-parts.ts). Any other item that is not a message (a
 * reasoning item, a reference to a stored item) is refused with 400 naming it rather than left out
 * of the prompt. The item count is bounded by the input's (RESPONSES_INPUT_ITEMS_MAX).
 */
function checkInputItems(input: unknown): void {
  if (!Array.isArray(input)) return;
  /** The call_ids of the function_call items read so far. */
  const calls = new Set<string>();
  for (let i = 0; i < input.length; i++) {
    const item: unknown = input[i];
    if (!isObject(item) || item['role'] !== undefined) continue;
    const type = item['type'];
    if (type === undefined || type === 'message') continue;
    // responsesMessages checked both items' shapes already (call_id a string, output a string or list).
    if (type === 'function_call') {
      calls.add(item['call_id'] as string);
      continue;
    }
    if (type === 'function_call_output') {
      const callId = item['call_id'] as string;
      if (!calls.has(callId))
        throw invalid(
          `input[${i}]`,
          `no function_call item with call_id ${JSON.stringify(callId.slice(0, 64))} comes before this ` +
            'function_call_output; send the call back before its output (the built-in engines store no earlier responses)',
        );
      const output = item['output'];
      if (Array.isArray(output))
        for (let j = 0; j < output.length; j++) {
          const partType = (output[j] as Record<string, unknown>)['type'];
          if (typeof partType === 'string' && OUTPUT_TEXT_PARTS.has(partType)) continue;
          throw new SwitchyardError(
            'SY_ERR_UNSUPPORTED_PARAMETER',
            `output part of type ${String(JSON.stringify(partType)).slice(0, 64)} is not supported by the built-in engines: ` +
              'they serve text models and read input_text parts only; send the tool output as text',
            { param: `input[${i}].output[${j}]` },
          );
        }
      continue;
    }
    // A reference to an earlier answer is what the Vercel AI SDK's @ai-sdk/openai sends for the
    // assistant turns of a conversation unless told the server stores nothing: say how.
    const hint =
      type === 'item_reference'
        ? '; send earlier answers as assistant messages (the Vercel AI SDK does with providerOptions: { openai: { store: false } })'
        : '';
    throw new SwitchyardError(
      'SY_ERR_UNSUPPORTED_PARAMETER',
      `input item of type ${String(JSON.stringify(type)).slice(0, 64)} is not supported by the built-in engines: ` +
        `they read messages and function_call / function_call_output items only and store nothing${hint}`,
      { param: `input[${i}]` },
    );
  }
}

/**
 * The `usage` object of a Responses answer. OpenAI's schema makes `input_tokens_details` carry
 * both `cached_tokens` and `cache_write_tokens` (required in both SDKs' types: openai-python's
 * pydantic model fails validation without it); the built-in engines report no cache writes, so 0.
 */
function usageJson(usage: GenerationUsage): string {
  return (
    `{"input_tokens":${usage.promptTokens},` +
    `"input_tokens_details":{"cached_tokens":${usage.cachedTokens},"cache_write_tokens":0},` +
    `"output_tokens":${usage.completionTokens},"output_tokens_details":{"reasoning_tokens":0},` +
    `"total_tokens":${usage.promptTokens + usage.completionTokens}}`
  );
}

/** How a response ended: `length` (its token limit cut it) is incomplete, as OpenAI reports it. */
type ResponseStatus = 'in_progress' | 'completed' | 'incomplete';

/** OpenAI's reason for an incomplete response: the only one a built-in engine can give. */
const INCOMPLETE_DETAILS = '{"reason":"max_output_tokens"}';

/** One Responses generation's answer: a GenerationSink writing a response object or typed SSE events. */
export class ResponsesResponse implements GenerationSink {
  private started = false;
  /** Nothing more may be written: the response ended or the client left. */
  private ended = false;
  /** The backend ended the generation (onFinish or onError came). */
  private settled = false;
  private text = '';
  private sequence = 0;
  private readonly messageId: string;
  /** `"item_id":...,"output_index":0,"content_index":0`: where the text part is, in its events. */
  private readonly partAt: string;
  /** A delta event up to its sequence number, built once; then the number, the text and the end. */
  private readonly deltaHead: string;
  /** Each function_call item's ids (`fc_...`, `call_...`), made when first written, then kept. */
  private readonly callIds: { readonly id: string; readonly callId: string }[] = [];

  /**
   * `echo`: the request fields the response object repeats (`responsesEcho`), as JSON members.
   */
  constructor(
    private readonly host: ResponsesHost,
    private readonly res: ServerResponse,
    private readonly parsed: ParsedCompletionRequest,
    private readonly id: string,
    private readonly createdAtS: number,
    private readonly arrivalMs: number,
    private readonly echo: string,
    /** A forced tool call (responsesToolCalling): answered as `function_call` items, not a message. */
    private readonly calling?: ToolCalling,
  ) {
    this.messageId = `msg_${id.slice(id.indexOf('_') + 1)}`;
    this.partAt = `"item_id":"${this.messageId}","output_index":0,"content_index":0`;
    this.deltaHead =
      'event: response.output_text.delta\n' +
      `data: {"type":"response.output_text.delta",${this.partAt},"logprobs":[],"sequence_number":`;
  }

  /** The client is gone (or the response ended): nothing more may be written. */
  get done(): boolean {
    return this.ended;
  }

  onText(text: string, _tokens: number): void {
    if (this.ended) return;
    if (!this.started) this.start();
    this.text += text;
    if (!this.parsed.stream) return;
    if (this.calling === undefined)
      this.res.write(`${this.deltaHead}${this.sequence++},"delta":${JSON.stringify(text)}}\n\n`);
    // A named call's arguments stream as they come; a required list is sent when it closes.
    else if (this.calling.mode === 'named' && text !== '')
      this.res.write(
        this.event(
          'response.function_call_arguments.delta',
          `"item_id":"${this.ids(0).id}","output_index":0,"delta":${JSON.stringify(text)}`,
        ),
      );
  }

  onFinish(reason: FinishReason, usage: GenerationUsage): void {
    if (this.settled) return;
    this.settled = true;
    this.host.generationEnded(reason, (performance.now() - this.arrivalMs) / 1000);
    if (this.ended) return;
    this.ended = true;
    const status: ResponseStatus = reason === 'length' ? 'incomplete' : 'completed';
    if (!this.parsed.stream) {
      sendJson(this.res, 200, this.responseJson(status, usage), this.host.closingHeaders());
      return;
    }
    if (!this.started) this.start();
    const calls = this.calls();
    if (calls === undefined) {
      const text = JSON.stringify(this.text);
      // A message not announced yet: a required call list cut short, sent whole as text.
      const head =
        this.calling === undefined
          ? ''
          : this.event(
              'response.output_item.added',
              `"output_index":0,"item":${this.messageJson('in_progress', '')}`,
            ) +
            this.event('response.content_part.added', `${this.partAt},"part":${this.partJson('""')}`) +
            this.event('response.output_text.delta', `${this.partAt},"logprobs":[],"delta":${text}`);
      this.res.end(
        head +
          this.event('response.output_text.done', `${this.partAt},"text":${text},"logprobs":[]`) +
          this.event('response.content_part.done', `${this.partAt},"part":${this.partJson(text)}`) +
          this.event(
            'response.output_item.done',
            `"output_index":0,"item":${this.messageJson(status, text)}`,
          ) +
          this.event(`response.${status}`, `"response":${this.responseJson(status, usage)}`),
      );
      return;
    }
    let out = '';
    for (const [i, call] of calls.entries()) {
      const { id } = this.ids(i);
      const args = JSON.stringify(call.arguments);
      // The named call's item and argument pieces went out already (start, onText).
      if (this.calling?.mode !== 'named')
        out +=
          this.event(
            'response.output_item.added',
            `"output_index":${i},"item":${this.functionCallJson(call.name, '', 'in_progress', i)}`,
          ) +
          this.event(
            'response.function_call_arguments.delta',
            `"item_id":"${id}","output_index":${i},"delta":${args}`,
          );
      out +=
        this.event(
          'response.function_call_arguments.done',
          `"item_id":"${id}","output_index":${i},"name":${JSON.stringify(call.name)},"arguments":${args}`,
        ) +
        this.event(
          'response.output_item.done',
          `"output_index":${i},"item":${this.functionCallJson(call.name, call.arguments, status, i)}`,
        );
    }
    this.res.end(out + this.event(`response.${status}`, `"response":${this.responseJson(status, usage)}`));
  }

  /** The calls generated (undefined without tools, or for a required list that does not parse). */
  private calls(): Call[] | undefined {
    if (this.calling === undefined) return undefined;
    return this.calling.mode === 'named'
      ? [{ name: this.calling.names[0] as string, arguments: this.text }]
      : requiredCalls(this.text);
  }

  /** The ids of the `i`th function_call item: made once, as vLLM's (`fc_`, `call_` and random hex). */
  private ids(i: number): { readonly id: string; readonly callId: string } {
    while (this.callIds.length <= i)
      this.callIds.push({
        id: `fc_${randomBytes(16).toString('hex')}`,
        callId: `call_${randomBytes(12).toString('hex')}`,
      });
    return this.callIds[i] as { readonly id: string; readonly callId: string };
  }

  /** The `i`th `function_call` output item. */
  private functionCallJson(name: string, args: string, status: ResponseStatus, i: number): string {
    const { id, callId } = this.ids(i);
    return (
      `{"type":"function_call","id":"${id}","call_id":"${callId}","name":${JSON.stringify(name)},` +
      `"arguments":${JSON.stringify(args)},"status":"${status}"}`
    );
  }

  onError(error: Error & { status?: number; code?: string }): void {
    if (this.settled) return;
    this.settled = true;
    this.host.generationEnded(undefined, 0);
    if (this.ended) return;
    this.ended = true;
    // A whole answer is sent at the end: nothing of it went out yet, whatever was generated.
    if (!this.started || !this.parsed.stream) {
      sendError(this.res, error, this.host.closingHeaders());
      return;
    }
    // Mid-stream: the status is out already, so the error travels as the Responses `error` event,
    // with the error object nested too, as the gateway's own (responsesErrorEvent): the openai SDKs
    // raise an APIError with its code for data carrying `error`, and read the flat event as a mere event.
    const e = (
      JSON.parse(errorBody(error).body) as { error: { code: unknown; message: unknown; param: unknown } }
    ).error;
    this.res.end(
      this.event(
        'error',
        `"code":${JSON.stringify(e.code)},"message":${JSON.stringify(e.message)},"param":${JSON.stringify(e.param)},` +
          `"error":${JSON.stringify(e)}`,
      ),
    );
  }

  /** The client went away before the end. */
  abandon(): void {
    this.ended = true;
  }

  /** The head and the events before the first delta: the response, then its empty message and part. */
  private start(): void {
    this.started = true;
    this.host.firstToken((performance.now() - this.arrivalMs) / 1000);
    if (!this.parsed.stream) return;
    this.res.writeHead(200, {
      'content-type': 'text/event-stream',
      'cache-control': 'no-cache',
      ...this.host.closingHeaders(),
    });
    const inProgress = this.responseJson('in_progress', undefined);
    const head =
      this.event('response.created', `"response":${inProgress}`) +
      this.event('response.in_progress', `"response":${inProgress}`);
    if (this.calling !== undefined) {
      // A named call's item opens now, its arguments stream; a required list's items wait for its end.
      const name = this.calling.names[0] as string;
      this.res.write(
        this.calling.mode === 'named'
          ? head +
              this.event(
                'response.output_item.added',
                `"output_index":0,"item":${this.functionCallJson(name, '', 'in_progress', 0)}`,
              )
          : head,
      );
      return;
    }
    this.res.write(
      head +
        this.event(
          'response.output_item.added',
          `"output_index":0,"item":${this.messageJson('in_progress', '')}`,
        ) +
        this.event('response.content_part.added', `${this.partAt},"part":${this.partJson('""')}`),
    );
  }

  /** One typed event: `event: type`, then its data with `type`, the next sequence number and `fields`. */
  private event(type: string, fields: string): string {
    return `event: ${type}\ndata: {"type":"${type}","sequence_number":${this.sequence++},${fields}}\n\n`;
  }

  /** The text part, `textJson` its text as a JSON string. */
  private partJson(textJson: string): string {
    return `{"type":"output_text","text":${textJson},"annotations":[],"logprobs":[]}`;
  }

  /** The assistant message item: in progress with no parts yet, or ended with its one text part. */
  private messageJson(status: ResponseStatus, textJson: string): string {
    const content = status === 'in_progress' ? '[]' : `[${this.partJson(textJson)}]`;
    return `{"type":"message","id":"${this.messageId}","status":"${status}","role":"assistant","content":${content}}`;
  }

  /**
   * The response object: in progress (no output, no usage yet) or ended with the text so far.
   * `usage` comes last: the gateway reads a stream's output tokens from the last `"output_tokens":`
   * of its last event.
   */
  private responseJson(status: ResponseStatus, usage: GenerationUsage | undefined): string {
    const p = this.parsed;
    const calls = status === 'in_progress' ? undefined : this.calls();
    const output =
      status === 'in_progress'
        ? '[]'
        : calls === undefined
          ? `[${this.messageJson(status, JSON.stringify(this.text))}]`
          : `[${calls.map((c, i) => this.functionCallJson(c.name, c.arguments, status, i)).join(',')}]`;
    return (
      `{"id":"${this.id}","object":"response","created_at":${this.createdAtS},"status":"${status}",` +
      `"error":null,"incomplete_details":${status === 'incomplete' ? INCOMPLETE_DETAILS : null},` +
      `"model":${JSON.stringify(p.model)},"output":${output},` +
      `"max_output_tokens":${p.maxTokensGiven ? p.maxTokens : null},` +
      // The sampling the engine used: the request's, else 1, the built-in engines' default (and OpenAI's).
      `"temperature":${p.temperature ?? 1},"top_p":${p.topP ?? 1},` +
      `"store":false,${this.echo},` +
      `"usage":${usage === undefined ? null : usageJson(usage)}}`
    );
  }
}
