/**
 * The built-in engines' shared HTTP surface: an OpenAI-compatible server over an `EngineBackend`.
 *
 * - `POST /v1/chat/completions`, `POST /v1/completions`: JSON or SSE in OpenAI's shapes, with
 *   `usage.prompt_tokens_details.cached_tokens`; `stream_options.include_usage` adds a usage chunk.
 *   Headers go out with the first token (or the error), so a refusal keeps its HTTP status.
 * - `POST /v1/responses`: OpenAI's Responses API on the same generation path as chat (responses.ts).
 * - `POST /v1/embeddings`: the backend's, or deterministic pseudo-embeddings of the input text
 *   (hash vectors, no meaning: /v1/models says `"embeddings": "hash"`); inputs, tokens, dimensions
 *   and the answer's size are bounded, and the answer streams in slices (see embeddings.ts).
 * - `GET /v1/models`, `GET /v1/models/{id}`, `GET /health`, `GET /metrics` (vLLM's metric names).
 * - vLLM's `POST /tokenize` and `POST /detokenize` (tokenize.ts), on a backend with a tokenizer.
 * - Tool calls on chat and Responses (`tool_choice` "required", a named function, or "auto" by
 *   tool-calls.ts's fixed rule; the legacy `functions`) are generated under the structured-output
 *   grammar and answered as `tool_calls` (chat) or `function_call` items (Responses).
 * - OpenAI parameters the engines do not implement (logprobs, echo, ...) get 400
 *   SY_ERR_UNSUPPORTED_PARAMETER naming them (`builtinEngineRefusal`), never silence. vLLM's extras
 *   likewise (`vllm-extras.ts`: regex and grammar constraints, prompt_logprobs, ...); its sampling
 *   extras (top_k, min_p, repetition_penalty) are checked and handed to the backend.
 * - Structured output (`response_format`, Responses `text.format`, vLLM's `structured_outputs`,
 *   `guided_json`, `guided_choice`) is checked here (structured-output.ts) and handed to the backend,
 *   which makes the text a value of the schema (or one of the choices).
 * - Several choices (a completions list of prompts, `n` > 1), not streamed: one generation per
 *   choice, one answer (`multi-choice.ts`), as vLLM's.
 * - A known path with the wrong method: 405 SY_ERR_METHOD_NOT_ALLOWED with an Allow header.
 *
 * Errors are OpenAI-style JSON from SwitchyardError: a bad body 400, a body not sent as
 * `application/json` 415 (the gateway's rule, core/content-type.ts), a wrong model 404, a body past
 * `bodyBytesMax` 413, more than `maxWaiting` queued 429 with Retry-After (the gateway retries it on
 * another instance), shutting down 503. A client that disconnects aborts its generation. A request
 * Node's HTTP parser refuses (garbage, HTTP/1.1 without Host) gets a JSON 400 too, then the
 * connection closes.
 */
import { isUtf8 } from 'node:buffer';
import { randomBytes } from 'node:crypto';
import {
  createServer,
  type IncomingMessage,
  type Server,
  type ServerResponse,
  STATUS_CODES,
} from 'node:http';
import { performance } from 'node:perf_hooks';
import type { Duplex } from 'node:stream';
import { listenOn } from '../adapters/listen.ts';
import { contentTypeRefusal } from '../core/content-type.ts';
import { invalidArgument, SwitchyardError } from '../core/errors.ts';
import {
  builtinEngineRefusal,
  type ParsedCompletionRequest,
  parseCompletionBody,
  SSE_DONE,
} from '../core/openai-api.ts';
import { VERSION_BODY } from '../gateway/version.ts';
import type { EngineBackend, FinishReason, GenerationSink, GenerationUsage, StopReason } from './backend.ts';
import { refuseNonTextParts } from './content-parts.ts';
import { type EmbeddingRequest, parseEmbeddingBody, writeEmbeddings } from './embeddings.ts';
import { MultiChoiceResponse } from './multi-choice.ts';
import { errorBody, sendError, sendJson, sendMethodNotAllowed } from './respond.ts';
import { parseResponsesBody, ResponsesResponse, responsesEcho, responsesToolCalling } from './responses.ts';
import { engineAsleep, handleSleepRoute } from './sleep-mode.ts';
import { responsesStructuredOutput, type StructuredOutput, structuredOutputOf } from './structured-output.ts';
import { parseDetokenizeBody, parseTokenizeBody, tokenizeResponse } from './tokenize.ts';
import { type ToolCalling, ToolCallResponse, toolCallingOf } from './tool-calls.ts';
import { refuseUnhonouredVllmExtras, type VllmSampling, vllmSamplingOf } from './vllm-extras.ts';
import { VllmMetrics } from './vllm-metrics.ts';
import {
  parseWeightUpdateBody,
  sendWeightUpdateDone,
  sendWeightUpdateError,
  WEIGHT_UPDATE_PATH,
} from './weight-update.ts';

export {
  EMBEDDING_DIMENSIONS_DEFAULT,
  EMBEDDING_DIMENSIONS_MAX,
  EMBEDDING_INPUTS_MAX,
  EMBEDDING_OUTPUT_FLOATS_MAX,
  EMBEDDING_TOKENS_MAX,
  pseudoEmbedding,
} from './embeddings.ts';

/** Default bound on a request body. */
export const BODY_BYTES_MAX_DEFAULT = 32 << 20;
/**
 * `max_tokens` of a completions request that leaves the field out: OpenAI's documented default and
 * vLLM's (`CompletionRequest.max_tokens = 16`); an explicit null means no such cap, as in vLLM.
 * Chat has none: its answers run to the end of text (for the sim, the core's default).
 */
export const COMPLETIONS_MAX_TOKENS_DEFAULT = 16;
/** Default wait for in-flight generations when closing. */
export const CLOSE_GRACE_MS_DEFAULT = 30_000;

/** Options of the OpenAI-compatible engine server. */
export interface OpenAiServerOptions {
  /** Interface to listen on; default 127.0.0.1. */
  readonly host?: string;
  /** Port; 0 (the default) picks a free one. */
  readonly port?: number;
  /**
   * Bound on requests waiting in the backend: a request arriving when `waiting >= maxWaiting` gets
   * 429 SY_ERR_OVERLOADED with Retry-After. Unset: no bound.
   */
  readonly maxWaiting?: number;
  /** Retry-After seconds on a 429; default 1. */
  readonly retryAfterS?: number;
  /** Largest request body; default BODY_BYTES_MAX_DEFAULT. */
  readonly bodyBytesMax?: number;
  /** `owned_by` in /v1/models, e.g. 'switchyard-sim'. */
  readonly ownedBy?: string;
}

/** A running engine server. */
export interface OpenAiServer {
  /** `http://host:port`. */
  readonly url: string;
  readonly port: number;
  /** Generations in progress, and embeddings answers still being written. */
  readonly inFlight: number;
  /**
   * Stops accepting (new requests get 503), waits up to `graceMs` (default CLOSE_GRACE_MS_DEFAULT)
   * for in-flight generations, ends those still running with 503 SY_ERR_DRAINING (mid-stream: an SSE
   * error event and `[DONE]`), then drops the remaining connections and closes the backend.
   */
  close(graceMs?: number): Promise<void>;
}

function usageJson(usage: GenerationUsage): string {
  return (
    `{"prompt_tokens":${usage.promptTokens},"completion_tokens":${usage.completionTokens},` +
    `"total_tokens":${usage.promptTokens + usage.completionTokens},` +
    `"prompt_tokens_details":{"cached_tokens":${usage.cachedTokens}}}`
  );
}

/** The engine's paths and the methods each takes (the Allow header of a 405). */
const ENGINE_ROUTE_METHODS: ReadonlyMap<string, string> = new Map([
  ['/v1/chat/completions', 'POST'],
  ['/v1/completions', 'POST'],
  ['/v1/embeddings', 'POST'],
  ['/v1/responses', 'POST'],
  ['/v1/models', 'GET, HEAD'],
  ['/tokenize', 'POST'],
  ['/detokenize', 'POST'],
  ['/tokenizer_info', 'GET, HEAD'],
  ['/version', 'GET, HEAD'],
  ['/health', 'GET, HEAD'],
  ['/metrics', 'GET, HEAD'],
]);

/** A path segment, percent-decoded; the raw text when it is not valid percent-encoding. */
function safeDecode(segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    return segment;
  }
}

/** Reads a request body up to `limit` bytes; rejects with 413 past it. */
function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const declared = Number(req.headers['content-length']);
    if (declared > limit) {
      reject(tooLarge(declared, limit));
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) {
        reject(tooLarge(size, limit));
        req.removeAllListeners('data');
        req.resume();
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => resolve(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

function tooLarge(bytes: number, limit: number): SwitchyardError {
  return new SwitchyardError(
    'SY_ERR_REQUEST_TOO_LARGE',
    `request body of ${bytes} bytes or more exceeds the limit of ${limit} bytes`,
    { param: 'body' },
  );
}

function parseJson(buffer: Buffer): unknown {
  // Bytes that are not UTF-8 are refused, not decoded with U+FFFD in their place (vLLM: 400).
  if (!isUtf8(buffer))
    throw new SwitchyardError('SY_ERR_INVALID_ARGUMENT', 'invalid request body: not JSON (not UTF-8)', {
      param: 'body',
    });
  try {
    // A leading UTF-8 byte order mark is skipped, as vLLM's server (Python's json.loads) skips it.
    const bom = buffer.length >= 3 && buffer[0] === 0xef && buffer[1] === 0xbb && buffer[2] === 0xbf;
    return JSON.parse(buffer.toString('utf8', bom ? 3 : 0));
  } catch (error) {
    throw new SwitchyardError(
      'SY_ERR_INVALID_ARGUMENT',
      `invalid request body: not JSON (${(error as Error).message})`,
      { param: 'body' },
    );
  }
}

/**
 * One generation's response: a GenerationSink that writes OpenAI JSON or SSE. The SSE framing of a
 * token chunk is built once per request; each token then costs one JSON string escape and a write.
 * With vLLM's `stream_options.continuous_usage_stats` (and `include_usage`) every chunk carries the
 * usage so far, as vLLM's do: the prompt tokens and the completion tokens delivered up to it.
 *
 * As vLLM's streams do, the finish_reason rides on the last token's chunk (vLLM's serving_chat.py
 * and serving_completion.py stream one chunk per engine output, the finishing output's carrying the
 * finish_reason; chat's adds `stop_reason`), not on an extra empty chunk: a token chunk is written a
 * microtask late, so a finish that comes in the same turn as the last token (the sim's always does;
 * the llama backend's too) is merged into it. A finish with no token before it (an EOS, a stop
 * string cut at a chunk's start) gets a chunk of its own with empty text, as vLLM's EOS step does.
 */
class CompletionResponse implements GenerationSink {
  private started = false;
  /** Nothing more may be written: the response ended or the client left. */
  private ended = false;
  /** The backend ended the generation (onFinish or onError came). */
  private settled = false;
  private readonly chunkHead: string;
  private readonly chunkTail: string;
  /** The chunk's end before its usage member (continuous usage only). */
  private readonly chunkChoiceEnd: string;
  /** Tokens delivered so far (continuous usage). */
  private completionTokens = 0;
  /** The last token chunk's text, not written yet (streams): the finish may still join it. */
  private pendingText: string | undefined = undefined;
  /** `completionTokens` when the pending text came. */
  private pendingTokens = 0;
  /** A microtask will write the pending chunk. */
  private flushQueued = false;
  private readonly flushCallback = (): void => {
    this.flushQueued = false;
    this.flushPending();
  };
  private text = '';
  private readonly arrivalMs: number;

  constructor(
    private readonly server: EngineHttpServer,
    private readonly res: ServerResponse,
    private readonly parsed: ParsedCompletionRequest,
    private readonly id: string,
    private readonly created: number,
    arrivalMs: number,
    /** `stream_options.continuous_usage_stats` with `include_usage`: usage in every chunk. */
    private readonly continuousUsage: boolean,
  ) {
    this.arrivalMs = arrivalMs;
    if (parsed.kind === 'chat') {
      this.chunkHead = `data: {"id":"${id}","object":"chat.completion.chunk","created":${created},"model":${JSON.stringify(parsed.model)},"choices":[{"index":0,"delta":{"content":`;
      this.chunkChoiceEnd = '},"logprobs":null,"finish_reason":null}]';
    } else {
      this.chunkHead = `data: {"id":"${id}","object":"text_completion","created":${created},"model":${JSON.stringify(parsed.model)},"choices":[{"index":0,"text":`;
      this.chunkChoiceEnd = ',"logprobs":null,"finish_reason":null,"stop_reason":null}]';
    }
    this.chunkTail = `${this.chunkChoiceEnd}${this.usageMember(0)}}\n\n`;
  }

  /**
   * A chunk's usage member. With continuous usage, the counts so far. Otherwise as vLLM serialises
   * its chunks: chat's leave the key out (serving_chat.py dumps them with `exclude_unset=True`, the
   * usage unset), completions' always carry `"usage":null` (serving_completion.py dumps them with
   * `exclude_unset=False`), whether or not `include_usage` asked for the usage chunk.
   */
  private usageMember(completionTokens: number, promptTokens = this.parsed.promptTokens): string {
    if (this.continuousUsage)
      return `,"usage":{"prompt_tokens":${promptTokens},"completion_tokens":${completionTokens},"total_tokens":${promptTokens + completionTokens}}`;
    return this.parsed.kind === 'chat' ? '' : ',"usage":null';
  }

  /** The client is gone (or the response ended): nothing more may be written. */
  get done(): boolean {
    return this.ended;
  }

  onText(text: string, tokens: number): void {
    if (this.ended) return;
    if (!this.started) this.start();
    this.completionTokens += tokens;
    if (!this.parsed.stream) {
      this.text += text;
      return;
    }
    this.flushPending();
    this.pendingText = text;
    this.pendingTokens = this.completionTokens;
    if (!this.flushQueued) {
      this.flushQueued = true;
      queueMicrotask(this.flushCallback);
    }
  }

  /** Writes the pending token chunk, if any (no finish came in its turn). */
  private flushPending(): void {
    const text = this.pendingText;
    if (text === undefined) return;
    this.pendingText = undefined;
    if (this.ended) return;
    if (!this.continuousUsage) this.res.write(this.chunkHead + JSON.stringify(text) + this.chunkTail);
    else
      this.res.write(
        `${this.chunkHead}${JSON.stringify(text)}${this.chunkChoiceEnd}${this.usageMember(this.pendingTokens)}}\n\n`,
      );
  }

  onFinish(reason: FinishReason, usage: GenerationUsage, stopReason?: StopReason): void {
    if (this.settled) return;
    this.settled = true;
    this.server.generationEnded(reason, (performance.now() - this.arrivalMs) / 1000);
    if (this.ended) return;
    const res = this.res;
    const parsed = this.parsed;
    const reasonJson = JSON.stringify(reason);
    // vLLM's stop_reason: the stop string (or stop token id) that ended it, else null.
    const stopJson = reason === 'stop' && stopReason !== undefined ? JSON.stringify(stopReason) : 'null';
    if (parsed.stream) {
      if (!this.started) this.start();
      this.ended = true;
      // The last token's text, with the finish (vLLM's finishing chunk); "" when none is pending.
      const lastText = JSON.stringify(this.pendingText ?? '');
      this.pendingText = undefined;
      let out =
        parsed.kind === 'chat'
          ? `data: {"id":"${this.id}","object":"chat.completion.chunk","created":${this.created},"model":${JSON.stringify(parsed.model)},"choices":[{"index":0,"delta":{"content":${lastText}},"logprobs":null,"finish_reason":${reasonJson},"stop_reason":${stopJson}}]${this.usageMember(usage.completionTokens, usage.promptTokens)}}\n\n`
          : `data: {"id":"${this.id}","object":"text_completion","created":${this.created},"model":${JSON.stringify(parsed.model)},"choices":[{"index":0,"text":${lastText},"logprobs":null,"finish_reason":${reasonJson},"stop_reason":${stopJson}}]${this.usageMember(usage.completionTokens, usage.promptTokens)}}\n\n`;
      if (parsed.includeUsage) {
        const object = parsed.kind === 'chat' ? 'chat.completion.chunk' : 'text_completion';
        out += `data: {"id":"${this.id}","object":"${object}","created":${this.created},"model":${JSON.stringify(parsed.model)},"choices":[],"usage":${usageJson(usage)}}\n\n`;
      }
      res.end(out + SSE_DONE);
      return;
    }
    this.ended = true;
    // `refusal: null` as OpenAI and vLLM send it: the openai SDKs type ChatCompletionMessage.refusal
    // as `string | null` (required), so a client testing `message.refusal === null` needs the key.
    const choice =
      parsed.kind === 'chat'
        ? `{"index":0,"message":{"role":"assistant","content":${JSON.stringify(this.text)},"refusal":null},"logprobs":null,"finish_reason":${reasonJson},"stop_reason":${stopJson}}`
        : `{"index":0,"text":${JSON.stringify(this.text)},"logprobs":null,"finish_reason":${reasonJson},"stop_reason":${stopJson}}`;
    const object = parsed.kind === 'chat' ? 'chat.completion' : 'text_completion';
    const body = `{"id":"${this.id}","object":"${object}","created":${this.created},"model":${JSON.stringify(parsed.model)},"choices":[${choice}],"usage":${usageJson(usage)}}`;
    sendJson(res, 200, body, this.server.closingHeaders());
  }

  onError(error: Error & { status?: number; code?: string }): void {
    if (this.settled) return;
    this.settled = true;
    this.server.generationEnded(undefined, 0);
    if (this.ended) return;
    // Tokens delivered before the error go out first.
    this.flushPending();
    this.ended = true;
    // A whole answer is sent at the end: nothing of it went out yet, whatever was generated.
    if (!this.started || !this.parsed.stream) {
      sendError(this.res, error, this.server.closingHeaders());
      return;
    }
    // Mid-stream: the status is out already, so the error travels as an event (as vLLM does).
    this.res.end(`data: ${errorBody(error).body}\n\n${SSE_DONE}`);
  }

  /** The client went away before the end. */
  abandon(): void {
    this.ended = true;
  }

  private start(): void {
    this.started = true;
    this.server.firstToken((performance.now() - this.arrivalMs) / 1000);
    if (!this.parsed.stream) return;
    this.res.writeHead(200, {
      'content-type': 'text/event-stream',
      'cache-control': 'no-cache',
      ...this.server.closingHeaders(),
    });
    if (this.parsed.kind === 'chat') {
      this.res.write(
        `data: {"id":"${this.id}","object":"chat.completion.chunk","created":${this.created},"model":${JSON.stringify(this.parsed.model)},"choices":[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}]${this.usageMember(0)}}\n\n`,
      );
    }
  }
}

/** A completions request without `max_tokens` gets COMPLETIONS_MAX_TOKENS_DEFAULT, as OpenAI's and vLLM's do. */
function withCompletionsDefault(parsed: ParsedCompletionRequest, body: unknown): ParsedCompletionRequest {
  if (parsed.kind !== 'completion' || (body as { max_tokens?: unknown }).max_tokens !== undefined)
    return parsed;
  return { ...parsed, maxTokens: COMPLETIONS_MAX_TOKENS_DEFAULT, maxTokensGiven: true };
}

/**
 * vLLM's `stream_options.continuous_usage_stats`: usage in every chunk of a stream, only together
 * with `include_usage` (as vLLM reads it).
 */
function continuousUsage(parsed: ParsedCompletionRequest, body: unknown): boolean {
  if (!parsed.stream || !parsed.includeUsage) return false;
  const options = (body as { stream_options?: { continuous_usage_stats?: unknown } }).stream_options;
  return options?.continuous_usage_stats === true;
}

/**
 * vLLM's `min_tokens` (absent or null: 0): an integer from 0 to the request's max_tokens (its
 * default when absent), else 400 naming it, as vLLM answers; above 0 on a backend that cannot honour
 * it, 400 SY_ERR_UNSUPPORTED_PARAMETER rather than an answer that ignores it, unless the request
 * cannot end before max_tokens anyway: `ignore_eos: true`, no `stop` strings (a `stop_token_ids`
 * list is refused on its own) and a max_tokens given. Benchmarks send exactly that to fix the
 * output length (genai-perf's and aiperf's `--extra-inputs max_tokens:N min_tokens:N
 * ignore_eos:true`); the llama engine then runs to max_tokens, which meets any min_tokens up to it.
 */
function minTokensOf(body: unknown, parsed: ParsedCompletionRequest, honoured: boolean): number {
  const v = (body as { min_tokens?: unknown }).min_tokens;
  if (v === undefined || v === null) return 0;
  if (!(Number.isSafeInteger(v) && (v as number) >= 0 && (v as number) <= parsed.maxTokens))
    throw new SwitchyardError(
      'SY_ERR_INVALID_ARGUMENT',
      `invalid request body: min_tokens: expected an integer from 0 to max_tokens (${parsed.maxTokens}), got ${String(JSON.stringify(v)).slice(0, 40)}`,
      { param: 'min_tokens' },
    );
  // A given max_tokens: the engine refuses one past its context, so the generation reaches it.
  const runsToMax =
    (body as { ignore_eos?: unknown }).ignore_eos === true &&
    parsed.stop.length === 0 &&
    parsed.maxTokensGiven;
  if ((v as number) > 0 && !honoured && !runsToMax)
    throw new SwitchyardError(
      'SY_ERR_UNSUPPORTED_PARAMETER',
      "parameter 'min_tokens' is not supported by this engine: it may end a sequence earlier; remove it, send it with ignore_eos: true, max_tokens and no stop strings (the generation then runs to max_tokens), or route the model to a vllm or sglang backend",
      { param: 'min_tokens' },
    );
  return v as number;
}

/**
 * Refuses what cannot hold with structured output: the text ends when its value closes (the grammar
 * then allows only an end), so vLLM's `min_tokens` and `ignore_eos`, which forbid that end, are 400
 * SY_ERR_UNSUPPORTED_PARAMETER naming them rather than a text that runs past the value.
 */
function refuseEndlessStructured(minTokens: number, sampling: VllmSampling): void {
  const param = minTokens > 0 ? 'min_tokens' : sampling.ignoreEos === true ? 'ignore_eos' : undefined;
  if (param === undefined) return;
  throw new SwitchyardError(
    'SY_ERR_UNSUPPORTED_PARAMETER',
    `parameter '${param}' is not supported with structured output by the built-in engines: the text ends ` +
      'when its JSON value (or choice) is complete; remove it, or route the model to a vllm or sglang backend',
    { param },
  );
}

/**
 * vLLM's `stop_token_ids`: absent, null or empty is served; a list of token ids is refused with 400
 * SY_ERR_UNSUPPORTED_PARAMETER (the built-in engines match no token ids: the sim's filler has none,
 * the llama backend does not read them), rather than an answer that ignores it; anything else is
 * 400 SY_ERR_INVALID_ARGUMENT naming it, as vLLM answers.
 */
function checkStopTokenIds(body: unknown): void {
  const v = (body as { stop_token_ids?: unknown }).stop_token_ids;
  if (v === undefined || v === null) return;
  if (!(Array.isArray(v) && v.every((id) => Number.isSafeInteger(id) && (id as number) >= 0)))
    throw new SwitchyardError(
      'SY_ERR_INVALID_ARGUMENT',
      `invalid request body: stop_token_ids: expected a list of token ids, got ${String(JSON.stringify(v)).slice(0, 40)}`,
      { param: 'stop_token_ids' },
    );
  if (v.length > 0)
    throw new SwitchyardError(
      'SY_ERR_UNSUPPORTED_PARAMETER',
      "parameter 'stop_token_ids' is not supported by the built-in engines: they match no token ids; remove it, or route the model to a vllm or sglang backend",
      { param: 'stop_token_ids' },
    );
}

/** The most choices (prompts x n) a built-in engine generates for one request. */
export const BUILTIN_CHOICES_MAX = 2048;

/**
 * The choices a built-in engine serves as several generations (multi-choice.ts), for a request
 * that asks for more than one: a completions list of more than one prompt (strings, or lists of
 * token ids) and/or `n` > 1. Undefined for one choice. A streamed one, or more than
 * BUILTIN_CHOICES_MAX, is 400 SY_ERR_UNSUPPORTED_PARAMETER naming `n` (or `prompt`).
 */
function servedChoices(
  kind: 'chat' | 'completion',
  body: unknown,
): { readonly prompts: readonly unknown[] | undefined; readonly n: number } | undefined {
  const b = body as { prompt?: unknown; stream?: unknown; n?: unknown };
  const prompt = b.prompt;
  const prompts =
    kind === 'completion' && Array.isArray(prompt) && prompt.length > 1 && typeof prompt[0] !== 'number'
      ? prompt
      : undefined;
  const n = typeof b.n === 'number' && Number.isSafeInteger(b.n) && b.n > 1 ? b.n : 1;
  if (prompts === undefined && n === 1) return undefined;
  if (b.stream === true)
    throw new SwitchyardError(
      'SY_ERR_UNSUPPORTED_PARAMETER',
      n > 1
        ? `n=${n} is not supported on a stream by the built-in engines: they stream one choice per request; send stream: false, or n streamed requests`
        : `a prompt list of ${prompts?.length} prompts is not supported on a stream by the built-in engines: send stream: false, or one streamed request per prompt`,
      { param: n > 1 ? 'n' : 'prompt' },
    );
  const count = (prompts?.length ?? 1) * n;
  if (count > BUILTIN_CHOICES_MAX)
    throw new SwitchyardError(
      'SY_ERR_UNSUPPORTED_PARAMETER',
      `${count} choices (prompts x n) are more than the built-in engines generate for one request (${BUILTIN_CHOICES_MAX}); split the request`,
      { param: 'n' },
    );
  return { prompts, n };
}

/** A generation whose response is open, as a shutdown past its grace ends it. */
interface RunningGeneration {
  readonly response: CompletionResponse | ResponsesResponse | MultiChoiceResponse | ToolCallResponse;
  readonly controller: AbortController;
  readonly res: ServerResponse;
}

/** What a request the engine will not start gets once it shuts down: another engine may serve it. */
function shuttingDown(): SwitchyardError {
  return new SwitchyardError('SY_ERR_NO_INSTANCE', 'the engine is shutting down');
}

/** After a shutdown's grace, the longest wait for the error answers to reach the sockets. */
const FLUSH_MS_MAX = 1000;

/** The server proper; `startOpenAiServer` is its public face. */
class EngineHttpServer {
  readonly metrics: VllmMetrics;
  private readonly http: Server;
  private readonly idBase = randomBytes(4).toString('hex');
  private nextId = 0;
  private active = 0;
  private closing = false;
  private drained: (() => void) | undefined;
  /** Generations whose response is still open: what a shutdown past its grace ends with an error. */
  private readonly running = new Set<RunningGeneration>();
  /** Requests whose body is still arriving: a shutdown waits for them too, then answers them 503. */
  private readonly reading = new Set<ServerResponse>();
  private readonly bodyBytesMax: number;
  private readonly retryAfter: string;
  /** /v1/models and /v1/models/{id}: rebuilt when a weight swap changes the model served. */
  private modelsBody = '';
  private modelBody = '';

  constructor(
    readonly backend: EngineBackend,
    private readonly options: OpenAiServerOptions,
  ) {
    this.metrics = new VllmMetrics(backend.modelId);
    this.bodyBytesMax = options.bodyBytesMax ?? BODY_BYTES_MAX_DEFAULT;
    this.retryAfter = String(options.retryAfterS ?? 1);
    this.describeModel();
    // Host-less HTTP/1.1 requests reach `handle`, which answers them in JSON: with Node's own check
    // they would get its empty 400.
    this.http = createServer({ keepAlive: true, noDelay: true, requireHostHeader: false }, (req, res) =>
      this.handle(req, res),
    );
    this.http.keepAliveTimeout = 30_000;
    this.http.headersTimeout = 35_000;
    this.http.on('clientError', (error: NodeJS.ErrnoException, socket: Duplex) => clientError(error, socket));
  }

  get inFlight(): number {
    return this.active;
  }

  /** Builds the /v1/models bodies for the model the backend serves now. */
  private describeModel(): void {
    const model = {
      id: this.backend.modelId,
      object: 'model',
      created: Math.floor(Date.now() / 1000),
      owned_by: this.options.ownedBy ?? 'switchyard',
      root: this.backend.modelId,
      parent: null,
      // vLLM's and SGLang's: what the context-length 400 enforces (left out when the model names none).
      ...(this.backend.maxModelLen === undefined ? {} : { max_model_len: this.backend.maxModelLen }),
      // Switchyard's extension: whether /v1/embeddings carries meaning ('model') or is a hash of
      // the text ('hash': deterministic unit vectors, fine for plumbing, useless for similarity).
      embeddings: this.backend.embed === undefined ? 'hash' : 'model',
    };
    this.modelBody = JSON.stringify(model);
    this.modelsBody = JSON.stringify({ object: 'list', data: [model] });
  }

  /**
   * SGLang's `POST /update_weights_from_disk` (weight-update.ts): the backend loads the checkpoint in
   * place; on success /v1/models and the metrics' model_name follow the new id.
   */
  private async updateWeights(req: IncomingMessage, res: ServerResponse, method: string): Promise<void> {
    const update = this.backend.weightUpdate;
    if (update === undefined) return;
    if (method !== 'POST') {
      req.resume();
      sendMethodNotAllowed(res, method, WEIGHT_UPDATE_PATH, 'POST');
      return;
    }
    // Refused bodies (415, 413, bad JSON, shutting down) carry SGLang's success/message too.
    const body = await this.body(req, res, sendWeightUpdateError);
    if (body === undefined) return;
    try {
      const result = await update.updateWeightsFromDisk(parseWeightUpdateBody(body));
      this.describeModel();
      this.metrics.renameModel(this.backend.modelId);
      sendWeightUpdateDone(res, result);
    } catch (error) {
      sendWeightUpdateError(res, error as Error);
    }
  }

  listen(host: string, port: number): Promise<number> {
    return listenOn(this.http, host, port);
  }

  async close(graceMs: number): Promise<void> {
    if (!this.closing) {
      this.closing = true;
      const closed = new Promise<void>((resolve) => this.http.close(() => resolve()));
      this.http.closeIdleConnections();
      if (this.active > 0 || this.reading.size > 0) {
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, graceMs);
          this.drained = () => {
            clearTimeout(timer);
            resolve();
          };
        });
      }
      this.drained = undefined;
      await this.endRunning(graceMs);
      this.http.closeAllConnections();
      await this.backend.close();
      await closed;
    }
  }

  /**
   * Ends every generation still running when the grace ran out with 503 SY_ERR_DRAINING, as each
   * protocol carries an error (a JSON error before the answer began; an SSE error event and `[DONE]`
   * mid-stream; a Responses `error` event), stops it, and waits (at most FLUSH_MS_MAX) until those
   * answers were handed to the sockets, so that closing the connections next cuts nothing.
   */
  private async endRunning(graceMs: number): Promise<void> {
    if (this.running.size === 0 && this.reading.size === 0) return;
    const flushed: Promise<void>[] = [];
    // Not started: answered as a request that came after the shutdown began.
    for (const res of [...this.reading]) {
      if (res.headersSent || res.destroyed) continue;
      flushed.push(new Promise<void>((resolve) => res.once('close', () => resolve())));
      sendError(res, shuttingDown(), { connection: 'close' });
    }
    const error = new SwitchyardError(
      'SY_ERR_DRAINING',
      `the engine shut down before this request finished: its shutdown timeout (${graceMs / 1000} s) ran out`,
    );
    for (const g of [...this.running]) {
      if (g.response.done) continue;
      flushed.push(new Promise<void>((resolve) => g.res.once('close', () => resolve())));
      g.response.onError(error);
      g.controller.abort();
    }
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      Promise.all(flushed),
      new Promise<void>((resolve) => {
        timer = setTimeout(resolve, FLUSH_MS_MAX);
      }),
    ]);
    clearTimeout(timer);
  }

  /** Headers that end keep-alive while the server drains. */
  closingHeaders(): Record<string, string> {
    return this.closing ? { connection: 'close' } : {};
  }

  firstToken(seconds: number): void {
    this.metrics.observeFirstToken(seconds);
  }

  /** A generation ended: `reason` undefined for an error. */
  generationEnded(reason: FinishReason | undefined, seconds: number): void {
    this.active--;
    if (reason !== undefined) this.metrics.observeFinish(reason, seconds);
    this.settle();
  }

  /** Ends the shutdown's wait once nothing runs and no body is still arriving. */
  private settle(): void {
    if (this.active === 0 && this.reading.size === 0) this.drained?.();
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    if (req.headers.host === undefined && req.httpVersion === '1.1') {
      // RFC 9112 section 3.2: a server answers 400 to an HTTP/1.1 request without Host.
      req.resume();
      res.shouldKeepAlive = false;
      sendError(
        res,
        new SwitchyardError(
          'SY_ERR_INVALID_ARGUMENT',
          'malformed HTTP request: HTTP/1.1 without a Host header',
          {
            param: 'host',
          },
        ),
        { connection: 'close' },
      );
      return;
    }
    const url = req.url ?? '/';
    const q = url.indexOf('?');
    const path = q < 0 ? url : url.slice(0, q);
    const method = req.method ?? 'GET';
    const route = `${method === 'HEAD' ? 'GET' : method} ${path}`;
    switch (route) {
      case 'POST /v1/chat/completions':
        void this.completion('chat', req, res);
        return;
      case 'POST /v1/completions':
        void this.completion('completion', req, res);
        return;
      case 'POST /v1/embeddings':
        void this.embeddings(req, res);
        return;
      case 'POST /v1/responses':
        void this.completion('responses', req, res);
        return;
      case 'POST /tokenize':
      case 'POST /detokenize':
        if (this.backend.tokenize === undefined || this.backend.detokenize === undefined) {
          req.resume();
          sendError(
            res,
            new SwitchyardError('SY_ERR_NOT_FOUND', `no route for ${method} ${path}`, { param: 'path' }),
          );
        } else void this.tokenization(path, req, res);
        return;
      case 'GET /tokenizer_info':
        this.tokenizerInfo(req, res);
        return;
      case 'GET /health':
        res.writeHead(this.closing ? 503 : 200, { 'content-length': 0 });
        res.end();
        return;
      case 'GET /v1/models':
        sendJson(res, 200, this.modelsBody);
        return;
      case 'GET /version':
        // vLLM's `{"version": ...}`: a built-in engine is Switchyard's, so Switchyard's version.
        sendJson(res, 200, VERSION_BODY);
        return;
      case 'GET /metrics':
        void this.scrape(res);
        return;
      default:
        if (path === WEIGHT_UPDATE_PATH && this.backend.weightUpdate !== undefined) {
          void this.updateWeights(req, res, method);
          return;
        }
        // vLLM's sleep-mode routes, only on an engine started with --enable-sleep-mode.
        if (this.backend.sleepMode !== undefined)
          if (handleSleepRoute(this.backend.sleepMode, req, res, method, path, q < 0 ? '' : url.slice(q)))
            return;
        req.resume();
        this.noRoute(res, method, path);
    }
  }

  /** 200 for GET /v1/models/{this model}, 405 for a known path's wrong method, else 404. */
  private noRoute(res: ServerResponse, method: string, path: string): void {
    const get = method === 'GET' || method === 'HEAD';
    if (get && path.startsWith('/v1/models/')) {
      const id = safeDecode(path.slice('/v1/models/'.length));
      if (id === this.backend.modelId) {
        sendJson(res, 200, this.modelBody);
        return;
      }
      sendError(
        res,
        new SwitchyardError(
          'SY_ERR_NOT_FOUND',
          `model '${id}' not found: this engine serves '${this.backend.modelId}'`,
          {
            param: 'model',
          },
        ),
      );
      return;
    }
    const allow = ENGINE_ROUTE_METHODS.get(path);
    if (allow !== undefined) {
      sendMethodNotAllowed(res, method, path, allow);
      return;
    }
    sendError(
      res,
      new SwitchyardError('SY_ERR_NOT_FOUND', `no route for ${method} ${path}`, { param: 'path' }),
    );
  }

  private async scrape(res: ServerResponse): Promise<void> {
    try {
      const text =
        (await this.metrics.render(this.backend.signals())) + (this.backend.extraMetricsText?.() ?? '');
      res.writeHead(200, {
        'content-type': this.metrics.contentType,
        'content-length': Buffer.byteLength(text),
      });
      res.end(text);
    } catch (error) {
      sendError(res, error as Error);
    }
  }

  /** Reads, parses and checks a body; answers the error itself and returns undefined on failure. */
  private async body(
    req: IncomingMessage,
    res: ServerResponse,
    send: (res: ServerResponse, error: Error, headers?: Record<string, string>) => void = sendError,
  ): Promise<unknown> {
    if (this.closing) {
      req.resume();
      send(res, shuttingDown(), { connection: 'close' });
      return undefined;
    }
    // Not JSON by its Content-Type: 415, as the gateway answers (one rule, core/content-type.ts).
    // The body is still read (within its bound) so a client still sending sees the answer.
    const refusal = contentTypeRefusal(req.headers['content-type']);
    this.reading.add(res);
    let body: unknown;
    try {
      const raw = await readBody(req, this.bodyBytesMax);
      if (refusal !== undefined) throw refusal;
      body = parseJson(raw);
    } catch (error) {
      // Answered already (the shutdown's grace ran out while it arrived): nothing more to say.
      if (res.headersSent) return undefined;
      const tooBig = error instanceof SwitchyardError && error.code === 'SY_ERR_REQUEST_TOO_LARGE';
      // Past the body bound the refusal still wins, as at the gateway, and the connection closes.
      send(res, refusal ?? (error as Error), tooBig ? { connection: 'close' } : {});
      return undefined;
    } finally {
      this.reading.delete(res);
      this.settle();
    }
    // Arrived whole after the shutdown began (or was answered by it): not started.
    if (this.closing) {
      if (!res.headersSent) send(res, shuttingDown(), { connection: 'close' });
      return undefined;
    }
    return body;
  }

  private checkModel(model: string): void {
    if (model !== this.backend.modelId) {
      throw new SwitchyardError(
        'SY_ERR_NOT_FOUND',
        `model '${model}' not found: this engine serves '${this.backend.modelId}'`,
        { param: 'model' },
      );
    }
  }

  /**
   * vLLM's `POST /tokenize` and `POST /detokenize` (tokenize.ts) on the backend's tokenizer: a bad
   * body 400 naming the field, another model 404 (as completions answer), an asleep engine 503.
   */
  private async tokenization(path: string, req: IncomingMessage, res: ServerResponse): Promise<void> {
    const body = await this.body(req, res);
    if (body === undefined) return;
    const backend = this.backend;
    try {
      if (backend.sleepMode?.isSleeping === true) throw engineAsleep();
      if (path === '/tokenize') {
        const request = parseTokenizeBody(body, backend.modelId);
        this.checkModel(request.request.model);
        const tokenized = (backend.tokenize as NonNullable<EngineBackend['tokenize']>)(request);
        sendJson(res, 200, tokenizeResponse(tokenized, backend.maxModelLen), this.closingHeaders());
        return;
      }
      const request = parseDetokenizeBody(body, backend.modelId);
      this.checkModel(request.model);
      const prompt = (backend.detokenize as NonNullable<EngineBackend['detokenize']>)(request.tokens);
      sendJson(res, 200, JSON.stringify({ prompt }), this.closingHeaders());
    } catch (error) {
      sendError(res, error as Error, this.closingHeaders());
    }
  }

  /**
   * vLLM's `GET /tokenizer_info` (served there with --enable-tokenizer-info-endpoint): the
   * backend's tokenizer configuration. A backend without one (the sim: no vocabulary) answers 404
   * saying so; an asleep engine 503.
   */
  private tokenizerInfo(req: IncomingMessage, res: ServerResponse): void {
    req.resume();
    const backend = this.backend;
    try {
      if (backend.tokenizerInfo === undefined)
        throw new SwitchyardError(
          'SY_ERR_NOT_FOUND',
          'no route for GET /tokenizer_info: this engine has no tokenizer configuration (no vocabulary ' +
            'or special tokens); tokenize on the client',
          { param: 'path' },
        );
      if (backend.sleepMode?.isSleeping === true) throw engineAsleep();
      sendJson(res, 200, JSON.stringify(backend.tokenizerInfo()), this.closingHeaders());
    } catch (error) {
      sendError(res, error as Error, this.closingHeaders());
    }
  }

  private async completion(
    kind: 'chat' | 'completion' | 'responses',
    req: IncomingMessage,
    res: ServerResponse,
  ): Promise<void> {
    const arrivalMs = performance.now();
    const body = await this.body(req, res);
    if (body === undefined) return;
    let parsed: ParsedCompletionRequest;
    /** A Responses answer's echoed request fields (responses.ts). */
    let echo = '';
    /** vLLM's min_tokens (0: none). */
    let minTokens = 0;
    /** vLLM's sampling extras (top_k, min_p, repetition_penalty) the request set. */
    let sampling: VllmSampling = {};
    /** vLLM's body `request_id` (chat, completions and Responses), when a string. */
    let bodyRequestId: string | undefined;
    /** Structured output the request asks for (structured-output.ts); undefined for free text. */
    let structured: StructuredOutput | undefined;
    /** Several choices, one generation each (multi-choice.ts), and `n`; else undefined. */
    let listed: { readonly requests: ParsedCompletionRequest[]; readonly n: number } | undefined;
    /** Forced tool calls (tool-calls.ts), chat and Responses; undefined for none. */
    let calling: ToolCalling | undefined;
    try {
      // A Responses body is generated as the chat request with its conversation (responses.ts).
      parsed =
        kind === 'responses'
          ? parseResponsesBody(body)
          : withCompletionsDefault(parseCompletionBody(kind, body), body);
      if (kind === 'responses') {
        echo = responsesEcho(body);
        refuseNonTextParts((body as { input?: unknown }).input, 'input');
        bodyRequestId = requestIdOf(body);
        structured = responsesStructuredOutput(body);
        calling = responsesToolCalling(body);
        if (calling !== undefined) structured = calling.structured;
      } else {
        minTokens = minTokensOf(body, parsed, this.backend.honoursMinTokens === true);
        checkStopTokenIds(body);
        refuseUnhonouredVllmExtras(body);
        bodyRequestId = requestIdOf(body);
        if (kind === 'chat') refuseNonTextParts((body as { messages?: unknown }).messages, 'messages');
        sampling = vllmSamplingOf(body, kind);
        structured = structuredOutputOf(body);
        if (kind === 'chat') calling = toolCallingOf(body);
        // A call leaves the format aside: an auto turn the rule answers with a call leaves it to the
        // text turn that follows (as a model with a tool parser would); a forced call (named or
        // required) has no text to answer in it, and vLLM drops it then (its tool parser's
        // adjust_request: a forced tool choice overrides the structured output settings).
        if (calling !== undefined) structured = calling.structured;
        if (structured !== undefined) refuseEndlessStructured(minTokens, sampling);
      }
      this.checkModel(parsed.model);
      if (
        calling !== undefined &&
        typeof (body as { n?: unknown }).n === 'number' &&
        (body as { n: number }).n > 1
      )
        throw new SwitchyardError(
          'SY_ERR_UNSUPPORTED_PARAMETER',
          'n > 1 is not supported with tools that may be called (named, "required" or "auto") by the built-in engines; send n requests',
          { param: 'n' },
        );
      const choices =
        kind === 'responses' || this.backend.oneGenerationPerRequest === true
          ? undefined
          : servedChoices(kind, body);
      // Served as several generations: each is a one-prompt, one-choice request.
      const one =
        choices === undefined
          ? body
          : {
              ...(body as object),
              n: 1,
              ...(choices.prompts === undefined ? {} : { prompt: choices.prompts[0] }),
            };
      const refusal = kind === 'responses' ? undefined : builtinEngineRefusal(kind, one);
      if (refusal !== undefined) throw refusal;
      if (choices !== undefined) {
        const perPrompt =
          choices.prompts === undefined
            ? [parsed]
            : choices.prompts.map((prompt) =>
                withCompletionsDefault(
                  parseCompletionBody('completion', { ...(body as object), prompt }),
                  body,
                ),
              );
        // A seed gives the request's j-th sample seed + j, so the n samples differ (and repeat).
        const requests = perPrompt.flatMap((r) =>
          Array.from({ length: choices.n }, (_, j) =>
            r.seed === undefined ? r : { ...r, seed: sampleSeed(r.seed, j) },
          ),
        );
        listed = { requests, n: choices.n };
      }
      const maxWaiting = this.options.maxWaiting;
      if (maxWaiting !== undefined) {
        const waiting = this.backend.signals().waiting;
        if (waiting >= maxWaiting) {
          sendError(
            res,
            new SwitchyardError(
              'SY_ERR_OVERLOADED',
              `engine overloaded: ${waiting} requests waiting, the bound is ${maxWaiting}`,
              { param: null },
            ),
            { 'retry-after': this.retryAfter },
          );
          return;
        }
      }
    } catch (error) {
      sendError(res, error as Error);
      return;
    }
    // As vLLM's _base_request_id: the X-Request-Id header, else the body's `request_id` (vLLM's
    // extra field, which the engines ignored), else a fresh id.
    const usable = (v: unknown): v is string => typeof v === 'string' && v.length > 0 && v.length <= 128;
    const named = [req.headers['x-request-id'], bodyRequestId].find(usable);
    const tag = named ?? `${this.idBase}${(this.nextId++).toString(36)}`;
    // vLLM's Responses answer is named after the body's request_id itself (ResponsesResponse's
    // id = request.request_id, default resp_<uuid>), which the header does not override.
    const id =
      kind === 'responses'
        ? usable(bodyRequestId)
          ? bodyRequestId
          : `resp_${tag}`
        : `${kind === 'chat' ? 'chatcmpl' : 'cmpl'}-${tag}`;
    // The answers write the id between JSON quotes as it is: a client's id (a header may hold a quote
    // or a backslash, a body request_id any character) goes in JSON-escaped, or one quote broke the
    // JSON and one line break cut a streamed event in two. The backend gets the id as sent.
    const idJson = JSON.stringify(id).slice(1, -1);
    const created = Math.floor(Date.now() / 1000);
    // Completions' default of 16 reads as given (withCompletionsDefault); the body says whether it was.
    const noLimitSet =
      kind === 'completion'
        ? (body as { max_tokens?: unknown }).max_tokens === undefined ||
          (body as { max_tokens?: unknown }).max_tokens === null
        : !parsed.maxTokensGiven;
    if (listed !== undefined) {
      this.serveChoices(
        res,
        listed.requests,
        listed.n,
        id,
        idJson,
        created,
        arrivalMs,
        minTokens,
        sampling,
        structured,
        noLimitSet,
      );
      return;
    }
    const response =
      kind === 'responses'
        ? new ResponsesResponse(this, res, parsed, idJson, created, arrivalMs, echo, calling)
        : calling !== undefined
          ? new ToolCallResponse(this, res, parsed, idJson, created, arrivalMs, calling)
          : new CompletionResponse(
              this,
              res,
              parsed,
              idJson,
              created,
              arrivalMs,
              continuousUsage(parsed, body),
            );
    const controller = new AbortController();
    this.track({ response, controller, res });
    this.active++;
    this.generate(id, parsed, controller.signal, minTokens, sampling, response, structured, noLimitSet);
  }

  /** Several choices: one generation each, one answer (multi-choice.ts); `idJson` is `id` JSON-escaped. */
  private serveChoices(
    res: ServerResponse,
    listed: readonly ParsedCompletionRequest[],
    n: number,
    id: string,
    idJson: string,
    created: number,
    arrivalMs: number,
    minTokens: number,
    sampling: VllmSampling,
    structured: StructuredOutput | undefined,
    noLimitSet: boolean,
  ): void {
    const controller = new AbortController();
    const first = listed[0] as ParsedCompletionRequest;
    const response = new MultiChoiceResponse(
      this,
      res,
      first.kind,
      first.model,
      idJson,
      created,
      arrivalMs,
      listed.length,
      n,
      () => controller.abort(),
    );
    this.track({ response, controller, res });
    for (const [i, request] of listed.entries()) {
      this.active++;
      this.generate(
        `${id}-${i}`,
        request,
        controller.signal,
        minTokens,
        sampling,
        response.sink(i),
        structured,
        noLimitSet,
      );
    }
  }

  /** Counts a generation as running until its connection closes; an unfinished one is then abandoned and aborted. */
  private track(generation: RunningGeneration): void {
    const { response, controller, res } = generation;
    this.running.add(generation);
    res.on('close', () => {
      this.running.delete(generation);
      if (response.done) return;
      response.abandon();
      controller.abort();
    });
  }

  /**
   * Hands one generation to the backend (min_tokens, sampling extras, structured output, no limit
   * set only when set); a throw goes to `sink`.
   */
  private generate(
    id: string,
    request: ParsedCompletionRequest,
    signal: AbortSignal,
    minTokens: number,
    sampling: VllmSampling,
    sink: GenerationSink,
    structured: StructuredOutput | undefined,
    noLimitSet: boolean,
  ): void {
    try {
      this.backend.generate(
        {
          id,
          request,
          signal,
          ...(minTokens > 0 ? { minTokens } : {}),
          ...(Object.keys(sampling).length > 0 ? { sampling } : {}),
          ...(structured === undefined ? {} : { structured }),
          ...(noLimitSet ? { noLimitSet } : {}),
        },
        sink,
      );
    } catch (error) {
      sink.onError(error as Error);
    }
  }

  private async embeddings(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const body = await this.body(req, res);
    if (body === undefined) return;
    let request: EmbeddingRequest;
    let vectors: readonly (readonly number[])[] | undefined;
    try {
      request = parseEmbeddingBody(body);
      this.checkModel(request.model);
      if (this.backend.sleepMode?.isSleeping === true) throw engineAsleep();
      if (this.backend.embed !== undefined && !request.tokenIds)
        vectors = await this.backend.embed(request.texts);
    } catch (error) {
      sendError(res, error as Error);
      return;
    }
    // Counted with the generations: a drain waits for an answer still streaming out.
    this.active++;
    try {
      await writeEmbeddings(res, request, vectors, this.closingHeaders());
    } finally {
      this.generationEnded(undefined, 0);
    }
  }
}

/**
 * Requests Node's parser refused (garbage, a head past Node's limit, a stalled head): one JSON error
 * in OpenAI's shape, then close. A socket already answering a request, or no longer writable, just
 * closes: a second status line would corrupt the answer under way.
 */
function clientError(error: NodeJS.ErrnoException, socket: Duplex): void {
  const pending = (socket as { _httpMessage?: ServerResponse | null })._httpMessage;
  if ((pending !== undefined && pending !== null) || !socket.writable || error.code === 'ECONNRESET') {
    socket.destroy();
    return;
  }
  const e =
    error.code === 'HPE_HEADER_OVERFLOW'
      ? new SwitchyardError('SY_ERR_REQUEST_TOO_LARGE', 'request head too large', { param: 'headers' })
      : error.code === 'ERR_HTTP_REQUEST_TIMEOUT'
        ? new SwitchyardError('SY_ERR_REQUEST_TIMEOUT', 'request not received in time')
        : new SwitchyardError(
            'SY_ERR_INVALID_ARGUMENT',
            `malformed HTTP request (${error.code ?? 'parse error'})`,
          );
  const body = JSON.stringify(e.toJSON());
  socket.end(
    `HTTP/1.1 ${e.status} ${STATUS_CODES[e.status] ?? 'Error'}\r\nconnection: close\r\n` +
      `content-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
  );
}

/** Starts the OpenAI-compatible server over `backend`; resolves once it listens. */
export async function startOpenAiServer(
  backend: EngineBackend,
  options: OpenAiServerOptions = {},
): Promise<OpenAiServer> {
  const { maxWaiting } = options;
  if (maxWaiting !== undefined && !(Number.isInteger(maxWaiting) && maxWaiting >= 1)) {
    throw invalidArgument('maxWaiting', maxWaiting, 'an integer >= 1');
  }
  const server = new EngineHttpServer(backend, options);
  const host = options.host ?? '127.0.0.1';
  const port = await server.listen(host, options.port ?? 0);
  const urlHost = host.includes(':') ? `[${host}]` : host;
  return {
    url: `http://${urlHost}:${port}`,
    port,
    get inFlight() {
      return server.inFlight;
    },
    close: (graceMs = CLOSE_GRACE_MS_DEFAULT) => server.close(graceMs),
  };
}

/**
 * vLLM's body `request_id` (a string: its pydantic model refuses anything else, 400 naming it);
 * undefined when absent or null.
 */
function requestIdOf(body: unknown): string | undefined {
  const value = (body as { request_id?: unknown }).request_id;
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'string')
    throw new SwitchyardError(
      'SY_ERR_INVALID_ARGUMENT',
      'invalid request body: request_id: expected a string',
      {
        param: 'request_id',
      },
    );
  return value;
}

/**
 * The seed of sample `j` of a seeded request: `seed + j`. A seed past 2^52 in magnitude (an int64
 * seed: JSON numbers there are spaced 2 and more apart, so `seed + j` would round back to `seed` and
 * the n samples would repeat one another) is first taken modulo 2^52, keeping `+ j` exact.
 */
export function sampleSeed(seed: number, j: number): number {
  const base = Math.abs(seed) < 2 ** 52 ? seed : seed % 2 ** 52;
  return base + j;
}
