/**
 * The contract between the built-in engines' shared OpenAI HTTP surface (`openai-server.ts`) and
 * what generates the tokens: the `sim` backend (the engine core in wall time) and the `llama`
 * backend (node-llama-cpp on the CPU). The server parses bodies, streams SSE, serves /metrics,
 * /health and /v1/models; a backend only generates and reports its signals.
 */
import { SwitchyardError } from '../core/errors.ts';
import type { ParsedCompletionRequest } from '../core/openai-api.ts';
import type { EngineSleep } from './sleep-mode.ts';
import type { StructuredOutput } from './structured-output.ts';
import type { Tokenized, TokenizeRequest } from './tokenize.ts';
import type { VllmSampling } from './vllm-extras.ts';
import type { EngineWeightUpdate } from './weight-update.ts';

/** Why a generation ended, in OpenAI's words. */
export type FinishReason = 'stop' | 'length' | 'abort';

/** vLLM's `stop_reason`: the stop string matched, or the stop token id sampled. */
export type StopReason = string | number;

/** Token counts of a finished generation. */
export interface GenerationUsage {
  readonly promptTokens: number;
  readonly completionTokens: number;
  /** Prompt tokens served from the prefix cache (vLLM's `prompt_tokens_details.cached_tokens`). */
  readonly cachedTokens: number;
}

/** Where a backend delivers one generation's output. Exactly one of onFinish / onError ends it. */
export interface GenerationSink {
  /** One or more new tokens, as text. */
  onText(text: string, tokens: number): void;
  /**
   * The generation ended. `stopReason` is vLLM's `stop_reason`: with reason 'stop', the stop string
   * that ended it (or the token id, for `stop_token_ids`); absent for an EOS or any other end.
   */
  onFinish(reason: FinishReason, usage: GenerationUsage, stopReason?: StopReason): void;
  /** The generation failed (the backend refused it or broke); `status` is the HTTP status to answer with. */
  onError(error: Error & { status?: number; code?: string }): void;
}

/**
 * The 400 for a prompt given as token ids with one outside a vocabulary of `vocabSize` tokens, in
 * vLLM's words ("Token id X is out of vocabulary", vllm/v1/engine/input_processor.py, a 400 from its
 * OpenAI server); undefined when every id is below `vocabSize` (or no ids were given).
 */
export function outOfVocabulary(
  ids: readonly number[] | undefined,
  vocabSize: number,
): SwitchyardError | undefined {
  if (ids === undefined) return undefined;
  for (const id of ids) {
    if (id < vocabSize) continue;
    return new SwitchyardError(
      'SY_ERR_INVALID_ARGUMENT',
      `Token id ${id} is out of vocabulary: this model's ids run from 0 to ${vocabSize - 1}`,
      { param: 'prompt' },
    );
  }
  return undefined;
}

/** One generation to run. */
export interface GenerationInput {
  readonly id: string;
  readonly request: ParsedCompletionRequest;
  /** Fires when the client went away; the backend frees the sequence. */
  readonly signal: AbortSignal;
  /**
   * vLLM's `min_tokens`: no end (EOS or a stop string) before this many tokens. Set (above 0) for a
   * backend with `honoursMinTokens`, or for a request that runs to its max_tokens anyway
   * (`ignore_eos`, no stop strings: openai-server.ts minTokensOf); the server refuses it otherwise.
   */
  readonly minTokens?: number;
  /** vLLM's sampling extras the request set (top_k, min_p, repetition_penalty), checked. */
  readonly sampling?: VllmSampling;
  /**
   * Structured output (response_format, text.format, vLLM's structured_outputs / guided_json /
   * guided_choice), checked and normalised (structured-output.ts): the text must be a JSON value
   * valid under the schema, or one of the choices, and the generation ends when it is complete.
   */
  readonly structured?: StructuredOutput;
  /**
   * True when the client set no output limit (chat without `max_tokens` / `max_completion_tokens`,
   * completions without `max_tokens`, Responses without `max_output_tokens`): the request's
   * `maxTokens` is the server's default, not a limit the client asked for. The `sim` engine, which
   * has no end-of-sequence token, then reports a generation that reaches that default as ended on
   * its own ('stop'), as a real model ending on EOS would be; a real model's backend ignores it.
   */
  readonly noLimitSet?: boolean;
}

/** The live signals a backend exposes under vLLM's metric names. */
export interface BackendSignals {
  readonly running: number;
  readonly waiting: number;
  /** 0..1 */
  readonly kvUsage: number;
  readonly kvBlocksTotal: number;
  readonly blockSize: number;
  readonly prefixQueriesTokens: number;
  readonly prefixHitsTokens: number;
  readonly promptTokensTotal: number;
  readonly generationTokensTotal: number;
  readonly preemptionsTotal: number;
}

/** A generator of tokens behind the built-in OpenAI server. */
export interface EngineBackend {
  /** The model id served (what /v1/models lists and requests must name). */
  readonly modelId: string;
  /**
   * Optional: the most tokens (prompt plus output) one request may hold, the limit the backend's
   * context-length 400 enforces; /v1/models lists it as vLLM's `max_model_len`.
   */
  readonly maxModelLen?: number | undefined;
  /** Optional: true when `generate` honours `GenerationInput.minTokens` (vLLM's min_tokens). */
  readonly honoursMinTokens?: boolean;
  /**
   * Optional: true when each request must stay one generation under its own id (a P/D side: the KV
   * transfer is keyed by the request id), so the server refuses a prompt list or `n` > 1 rather than
   * serving them as several generations (multi-choice.ts).
   */
  readonly oneGenerationPerRequest?: boolean;
  /** Starts a generation; output arrives through the sink, asynchronously. */
  generate(input: GenerationInput, sink: GenerationSink): void;
  signals(): BackendSignals;
  /**
   * Optional: embeddings of each input text, for `POST /v1/embeddings`. A backend without it leaves
   * the endpoint to the server, which answers with deterministic pseudo-embeddings of the text.
   */
  embed?(inputs: readonly string[]): Promise<readonly (readonly number[])[]>;
  /**
   * Optional: vLLM's `POST /tokenize` (tokenize.ts): the prompt's tokens as `generate` would count
   * them (throws a SwitchyardError for a prompt it refuses). Without it the route answers 404.
   */
  tokenize?(request: TokenizeRequest): Tokenized;
  /**
   * Optional: vLLM's `POST /detokenize`: the text of token ids (throws a SwitchyardError for ids
   * outside the vocabulary, or when the backend's ids carry no text). Without it the route answers 404.
   */
  detokenize?(tokens: readonly number[]): string;
  /**
   * Optional: vLLM's `GET /tokenizer_info` (tokenize.ts ggufTokenizerInfo): the tokenizer's
   * configuration (special tokens, model_max_length, chat_template, tokenizer_class). Without it
   * the route answers 404.
   */
  tokenizerInfo?(): Record<string, unknown>;
  /**
   * Optional: more Prometheus exposition text appended to `/metrics` (the llama engine's start-up
   * timings), for series that are the backend's own rather than vLLM's.
   */
  extraMetricsText?(): string;
  /**
   * Optional: vLLM's sleep mode (`--enable-sleep-mode`): the server then routes `POST /sleep`,
   * `POST /wake_up` and `GET /is_sleeping` to it (sleep-mode.ts); without it they answer 404.
   */
  readonly sleepMode?: EngineSleep | undefined;
  /**
   * Optional: SGLang's in-place checkpoint swap: the server then routes `POST /update_weights_from_disk`
   * to it (weight-update.ts); without it the route answers 404.
   */
  readonly weightUpdate?: EngineWeightUpdate | undefined;
  /** Optional: called once the server listens and the ready line is out (the start-up's end). */
  markReady?(): void;
  /** Stops accepting work and frees resources; pending generations end with onError. */
  close(): Promise<void>;
}
