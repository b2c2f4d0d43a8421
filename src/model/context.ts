/**
 * A model's context limit as a serving engine enforces it on each request, before any work: vLLM
 * refuses with 400 a request whose prompt plus `max_tokens` passes the model's context length
 * (`max_model_len`; the catalogue's `contextTokensMax`), and one without `max_tokens` whose prompt
 * leaves no room for a single output token (vLLM's tests/v1/e2e/test_context_length.py: prompt_len +
 * max_tokens <= max_model_len is served, one more is refused). One rule for both hosts: the built-in sim engine
 * refuses what it refuses (src/engine-servers/sim/sim-backend.ts), and the twin fails the same
 * requests where an instance receives them (src/twin/simulator.ts), as the gateway counts an
 * engine's 400 (`failed{upstream_4xx}`). Pure.
 */

/**
 * Whether a request fits the context: `promptTokens + maxTokens <= contextTokensMax` when
 * `maxTokens` is given (so a request that reaches the limit exactly is served), else
 * `promptTokens < contextTokensMax` (room for one token). Boundary:
 * `fitsContext(4096, 4000, 96)` is true, `fitsContext(4096, 4000, 97)` false.
 */
export function fitsContext(
  contextTokensMax: number,
  promptTokens: number,
  maxTokens: number | undefined,
): boolean {
  const room = contextTokensMax - promptTokens;
  return room >= 1 && (maxTokens === undefined || maxTokens <= room);
}

/** What a refusal by `fitsContext` reports: the tokens asked for and the parameter to blame. */
export interface ContextOverflow {
  /** The prompt plus `max_tokens` (plus 1 without it): what the request asked the context for. */
  readonly requestedTokens: number;
  /** The completion tokens counted in `requestedTokens` (`max_tokens`, or 1 without it). */
  readonly completionTokens: number;
  /** `max_tokens` when the prompt alone fits and the completion passes the limit; else `prompt`. */
  readonly param: 'max_tokens' | 'prompt';
}

/** The figures of a refusal of a request that does not fit (`fitsContext` false), as vLLM states them. */
export function contextOverflow(
  contextTokensMax: number,
  promptTokens: number,
  maxTokens: number | undefined,
): ContextOverflow {
  const completionTokens = maxTokens ?? 1;
  const promptFits = contextTokensMax - promptTokens >= 1;
  return {
    requestedTokens: promptTokens + completionTokens,
    completionTokens,
    param: maxTokens !== undefined && promptFits ? 'max_tokens' : 'prompt',
  };
}
