/**
 * KV events in vLLM's vocabulary: what an engine says about the blocks in its prefix cache. The
 * engine core emits them, the live gateway receives them over ZMQ, and precise prefix-aware
 * policies consume them; so the type lives in core.
 */
export type KvEvent =
  | {
      readonly type: 'BlockStored';
      readonly hashes: readonly number[];
      readonly parentHash: number | undefined;
    }
  | { readonly type: 'BlockRemoved'; readonly hashes: readonly number[] }
  | { readonly type: 'AllBlocksCleared' };
