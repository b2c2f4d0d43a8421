import type { ModelId, RequestId, TenantId } from './ids.ts';

/** Latency targets a request wants met. */
export interface Slo {
  /** Time to first token target. */
  readonly ttftMs: number;
  /** Time per output token target (mean inter-token time after the first). */
  readonly tpotMs: number;
}

/**
 * The identity of a prompt's prefix: a chain of block hashes, each depending on every block before
 * it (so equal hash at position i means an equal prefix up to block i). `blockTokens` is the number
 * of tokens each hash covers (512 for Mooncake traces; the gateway's text blocks are approximate).
 */
export interface PrefixChain {
  readonly blockTokens: number;
  readonly hashes: readonly number[];
  /**
   * The hashes are the engine's own block hashes (low 32 bits of vLLM's, from the prompt's token
   * ids; `core/token-blocks.ts`), one per engine block of `blockTokens` tokens: KV-event matching
   * uses them as they are instead of deriving engine hashes from the chain.
   */
  readonly exact?: boolean;
}

/** The empty chain: nothing shared. */
export const NO_PREFIX: PrefixChain = Object.freeze({
  blockTokens: 16,
  hashes: Object.freeze([]) as readonly number[],
});

/** One inference request as policies and engines see it. */
export interface Request {
  readonly id: RequestId;
  readonly model: ModelId;
  readonly tenant: TenantId;
  /** Higher is more important; 0 is the default online band. */
  readonly priority: number;
  readonly inputTokens: number;
  /**
   * The output limit the client declared (`max_tokens` / `max_completion_tokens`), or undefined when
   * it sent none. This is all a policy may know of the output length: the true length is known only
   * once the request completes (the twin keeps it on its own engine-side type, never here).
   */
  readonly maxTokens: number | undefined;
  /**
   * Generations the request asks for when more than one: `n` choices for each prompt of a
   * completions prompt list (n x prompts); absent means one. `maxTokens` bounds each generation, so
   * the request may generate up to generations x maxTokens, and its usage counts them all.
   */
  readonly generations?: number | undefined;
  /** Arrival time on the host's clock. */
  readonly arrivalMs: number;
  readonly slo: Slo | undefined;
  readonly prefix: PrefixChain;
  /** Conversation or session key, for affinity policies. */
  readonly sessionId: string | undefined;
}

/** Fills the optional fields of a request with their defaults. */
export function makeRequest(
  fields: Pick<Request, 'id' | 'inputTokens' | 'arrivalMs'> & Partial<Request>,
): Request {
  return {
    model: 'default',
    tenant: 'default',
    priority: 0,
    slo: undefined,
    prefix: NO_PREFIX,
    sessionId: undefined,
    maxTokens: undefined,
    ...fields,
  };
}
