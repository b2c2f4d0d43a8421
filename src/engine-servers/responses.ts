/**
 * OpenAI's Responses API (`POST /v1/responses`) on the built-in engines: the body is read as the
 * chat request with the same conversation (`instructions` as a system message, then the input
 * messages: src/core/responses-api.ts) and generated on the same path as chat, with the same
 * timing; only the answer's shape differs.
 *
 * - Without `stream`: one `response` object (`object: 'response'`, `status: 'completed'`, `output`
 *   with one assistant `message` item holding one `output_text` part, `usage` with `input_tokens`,
 *   `output_tokens`, `total_tokens` and the cached prompt tokens).
 * - With `stream`: typed events (an `event:` line and `data:` JSON with the same `type` and a
 *   `sequence_number`): `response.created` (the response in progress, no output yet), one
 *   `response.output_text.delta` per text delivery (one per engine step: a token on a decode step),
 *   then `response.completed` with the whole response. No `[DONE]`: the Responses stream has none.
 *   As for chat, the head goes out with the first token, so a refusal keeps its HTTP status.
 *
 * Like the engine's length-bound chat (it ignores EOS), a response ends at `max_output_tokens`; it
 * is still reported `completed`. Stored responses (`previous_response_id`, `conversation`), tools
 * and background mode are refused with 400 SY_ERR_UNSUPPORTED_PARAMETER naming the field.
 */
import type { ServerResponse } from 'node:http';
import { performance } from 'node:perf_hooks';
import { SwitchyardError } from '../core/errors.ts';
import { type ParsedCompletionRequest, parseCompletionBody } from '../core/openai-api.ts';
import { responsesMaxOutputTokens, responsesMessages } from '../core/responses-api.ts';
import type { FinishReason, GenerationSink, GenerationUsage } from './backend.ts';
import { errorBody, sendError, sendJson } from './respond.ts';

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
  readonly asked: (v: unknown) => boolean;
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
    param: 'tools',
    asked: (v) => Array.isArray(v) && v.length > 0,
    why: 'the built-in engines generate filler text and call no tools',
  },
  {
    param: 'background',
    asked: (v) => v === true,
    why: 'the built-in engines answer in the foreground only',
  },
];

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
    if (asked(b[param]))
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
  if (maxTokens !== undefined) chat['max_tokens'] = maxTokens;
  // The sampling fields mean the same in both APIs; anything else the engine ignores, as vLLM does.
  for (const field of ['stream', 'temperature', 'top_p', 'seed', 'priority', 'user'])
    if (b[field] !== undefined && b[field] !== null) chat[field] = b[field];
  return parseCompletionBody('chat', chat);
}

/** The `usage` object of a Responses answer. */
function usageJson(usage: GenerationUsage): string {
  return (
    `{"input_tokens":${usage.promptTokens},"input_tokens_details":{"cached_tokens":${usage.cachedTokens}},` +
    `"output_tokens":${usage.completionTokens},"output_tokens_details":{"reasoning_tokens":0},` +
    `"total_tokens":${usage.promptTokens + usage.completionTokens}}`
  );
}

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
  /** A delta event up to its sequence number, built once; then the number, the text and the end. */
  private readonly deltaHead: string;

  constructor(
    private readonly host: ResponsesHost,
    private readonly res: ServerResponse,
    private readonly parsed: ParsedCompletionRequest,
    private readonly id: string,
    private readonly createdAtS: number,
    private readonly arrivalMs: number,
  ) {
    this.messageId = `msg_${id.slice(id.indexOf('_') + 1)}`;
    this.deltaHead =
      'event: response.output_text.delta\n' +
      `data: {"type":"response.output_text.delta","item_id":"${this.messageId}","output_index":0,"content_index":0,"logprobs":[],"sequence_number":`;
  }

  /** The client is gone (or the response ended): nothing more may be written. */
  get done(): boolean {
    return this.ended;
  }

  onText(text: string, _tokens: number): void {
    if (this.ended) return;
    if (!this.started) this.start();
    this.text += text;
    if (this.parsed.stream)
      this.res.write(`${this.deltaHead}${this.sequence++},"delta":${JSON.stringify(text)}}\n\n`);
  }

  onFinish(reason: FinishReason, usage: GenerationUsage): void {
    if (this.settled) return;
    this.settled = true;
    this.host.generationEnded(reason, (performance.now() - this.arrivalMs) / 1000);
    if (this.ended) return;
    this.ended = true;
    if (!this.parsed.stream) {
      sendJson(this.res, 200, this.responseJson('completed', usage), this.host.closingHeaders());
      return;
    }
    if (!this.started) this.start();
    this.res.end(this.event('response.completed', `"response":${this.responseJson('completed', usage)}`));
  }

  onError(error: Error & { status?: number; code?: string }): void {
    if (this.settled) return;
    this.settled = true;
    this.host.generationEnded(undefined, 0);
    if (this.ended) return;
    this.ended = true;
    if (!this.started) {
      sendError(this.res, error, this.host.closingHeaders());
      return;
    }
    // Mid-stream: the status is out already, so the error travels as the Responses `error` event.
    const e = (
      JSON.parse(errorBody(error).body) as { error: { code: unknown; message: unknown; param: unknown } }
    ).error;
    this.res.end(
      this.event(
        'error',
        `"code":${JSON.stringify(e.code)},"message":${JSON.stringify(e.message)},"param":${JSON.stringify(e.param)}`,
      ),
    );
  }

  /** The client went away before the end. */
  abandon(): void {
    this.ended = true;
  }

  private start(): void {
    this.started = true;
    this.host.firstToken((performance.now() - this.arrivalMs) / 1000);
    if (!this.parsed.stream) return;
    this.res.writeHead(200, {
      'content-type': 'text/event-stream',
      'cache-control': 'no-cache',
      ...this.host.closingHeaders(),
    });
    this.res.write(
      this.event('response.created', `"response":${this.responseJson('in_progress', undefined)}`),
    );
  }

  /** One typed event: `event: type`, then its data with `type`, the next sequence number and `fields`. */
  private event(type: string, fields: string): string {
    return `event: ${type}\ndata: {"type":"${type}","sequence_number":${this.sequence++},${fields}}\n\n`;
  }

  /** The response object: in progress (no output, no usage yet) or completed with the text so far. */
  private responseJson(status: 'in_progress' | 'completed', usage: GenerationUsage | undefined): string {
    const p = this.parsed;
    const output =
      status === 'completed'
        ? `[{"type":"message","id":"${this.messageId}","status":"completed","role":"assistant","content":[{"type":"output_text","text":${JSON.stringify(this.text)},"annotations":[]}]}]`
        : '[]';
    return (
      `{"id":"${this.id}","object":"response","created_at":${this.createdAtS},"status":"${status}",` +
      `"error":null,"incomplete_details":null,"model":${JSON.stringify(p.model)},"output":${output},` +
      `"max_output_tokens":${p.maxTokensGiven ? p.maxTokens : null},` +
      `"temperature":${p.temperature ?? null},"top_p":${p.topP ?? null},` +
      `"parallel_tool_calls":false,"tool_choice":"none","tools":[],"store":false,` +
      `"usage":${usage === undefined ? null : usageJson(usage)}}`
    );
  }
}
