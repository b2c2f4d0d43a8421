/**
 * A request for several choices, as vLLM serves it (serving_completion.py, serving_chat.py): a
 * completions list of prompts and/or `n` > 1. One generation per choice; one answer whose
 * `choices[k]` (`index` k = prompt index x n + j) is the j-th sample for prompt `k / n`, and whose
 * `usage` counts each prompt's tokens once and sums the completions. LangChain's `OpenAI` /
 * `VLLMOpenAI` sends its `batch()` and `generate()` as one list (up to 20 prompts a request). The
 * built-in engines serve these without streaming; a streamed one is still refused
 * (builtinEngineRefusal).
 *
 * Each choice is its own generation for the engine's accounting (as vLLM's are its own requests):
 * `generationEnded` once per choice. The answer goes out when all have ended; the first error
 * answers the request and stops the rest.
 */
import type { ServerResponse } from 'node:http';
import { performance } from 'node:perf_hooks';
import type { FinishReason, GenerationSink, GenerationUsage, StopReason } from './backend.ts';
import { sendError, sendJson } from './respond.ts';

/** What a prompt-list answer needs of the engine server. */
export interface PromptListHost {
  firstToken(seconds: number): void;
  generationEnded(reason: FinishReason | undefined, seconds: number): void;
  closingHeaders(): Record<string, string>;
}

interface Choice {
  text: string;
  reason?: FinishReason;
  stopReason?: StopReason;
  usage?: GenerationUsage;
}

/** One answer over `count` generations, each fed through `sink(i)`. */
export class MultiChoiceResponse {
  private readonly choices: Choice[];
  private settledCount = 0;
  private started = false;
  /** Nothing more may be written: the answer (or an error) went out, or the client left. */
  private ended = false;

  constructor(
    private readonly host: PromptListHost,
    private readonly res: ServerResponse,
    private readonly kind: 'chat' | 'completion',
    private readonly model: string,
    private readonly id: string,
    private readonly created: number,
    private readonly arrivalMs: number,
    count: number,
    /** Choices per prompt (`n`): choice k answers prompt floor(k / n). */
    private readonly perPrompt: number,
    /** Stops the generations still running (after an error). */
    private readonly stopAll: () => void,
  ) {
    this.choices = Array.from({ length: count }, () => ({ text: '' }));
  }

  get done(): boolean {
    return this.ended;
  }

  /** The sink of prompt `index`'s generation. */
  sink(index: number): GenerationSink {
    const choice = this.choices[index] as Choice;
    let settled = false;
    return {
      onText: (text) => {
        if (!this.started) {
          this.started = true;
          this.host.firstToken((performance.now() - this.arrivalMs) / 1000);
        }
        choice.text += text;
      },
      onFinish: (reason, usage, stopReason) => {
        if (settled) return;
        settled = true;
        this.host.generationEnded(reason, (performance.now() - this.arrivalMs) / 1000);
        choice.reason = reason;
        choice.usage = usage;
        if (stopReason !== undefined) choice.stopReason = stopReason;
        this.settledOne();
      },
      onError: (error) => {
        if (settled) return;
        settled = true;
        this.host.generationEnded(undefined, 0);
        this.onError(error);
        this.settledOne();
      },
    };
  }

  /** Answers the request with `error` (the first one wins) and stops the other generations. */
  onError(error: Error): void {
    if (this.ended) return;
    this.ended = true;
    sendError(this.res, error, this.host.closingHeaders());
    this.stopAll();
  }

  /** The client went away before the end. */
  abandon(): void {
    this.ended = true;
  }

  private settledOne(): void {
    this.settledCount++;
    if (this.settledCount < this.choices.length || this.ended) return;
    this.ended = true;
    let promptTokens = 0;
    let completionTokens = 0;
    let cachedTokens = 0;
    const parts: string[] = [];
    for (const [i, c] of this.choices.entries()) {
      // A prompt's tokens count once, however many samples it has (as vLLM's usage).
      if (i % this.perPrompt === 0) {
        promptTokens += c.usage?.promptTokens ?? 0;
        cachedTokens += c.usage?.cachedTokens ?? 0;
      }
      completionTokens += c.usage?.completionTokens ?? 0;
      const stop = c.reason === 'stop' && c.stopReason !== undefined ? JSON.stringify(c.stopReason) : 'null';
      const output =
        this.kind === 'chat'
          ? `"message":{"role":"assistant","content":${JSON.stringify(c.text)},"refusal":null}`
          : `"text":${JSON.stringify(c.text)}`;
      parts.push(
        `{"index":${i},${output},"logprobs":null,"finish_reason":${JSON.stringify(c.reason ?? null)},"stop_reason":${stop}}`,
      );
    }
    const usage =
      `{"prompt_tokens":${promptTokens},"completion_tokens":${completionTokens},` +
      `"total_tokens":${promptTokens + completionTokens},"prompt_tokens_details":{"cached_tokens":${cachedTokens}}}`;
    const object = this.kind === 'chat' ? 'chat.completion' : 'text_completion';
    const body = `{"id":"${this.id}","object":"${object}","created":${this.created},"model":${JSON.stringify(this.model)},"choices":[${parts.join(',')}],"usage":${usage}}`;
    sendJson(this.res, 200, body, this.host.closingHeaders());
  }
}
