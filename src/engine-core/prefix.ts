import { assert } from '../core/assert.ts';
import { CHAIN_ROOT, chainHash } from '../core/hash.ts';
import type { PrefixChain } from '../core/request.ts';

/**
 * Converts a request's prefix chain (hashes of `blockTokens`-token blocks, e.g. 512 for Mooncake
 * traces) into chained hashes of the engine's `blockSize`-token blocks, for EngineRequest.blockHashes.
 *
 * Only full engine blocks inside both the prompt (`inputTokens`) and the chain's coverage
 * (`hashes.length * blockTokens`) get a hash; the rest of the prompt is treated as unique.
 *
 * Engine block e covers tokens [e * blockSize, (e + 1) * blockSize). Its content, given everything
 * before it, is fixed by the chain block holding its last token, because a chain hash stands for the
 * whole prefix up to the end of its block. So its hash is
 * `chainHash(previous engine hash, chainHash(chainHashes[c], sub))` with c that chain block and `sub`
 * the engine block's index counted from the first engine block that ends inside c. This covers every
 * ratio the same way:
 * - blockTokens a multiple of blockSize (512 / 16): each chain block splits into 32 sub-blocks;
 * - blockTokens smaller than blockSize: an engine block spanning several chain blocks takes the last
 *   one, which already encodes the ones before it;
 * - blockTokens not a multiple: an engine block straddling two chain blocks takes the later one, so
 *   two prompts share it only if they share both.
 * Equal chains give equal results, chains sharing k blocks share exactly the engine blocks that end
 * within those k blocks, and the result is itself a chain (each hash mixes in its parent).
 */
export function engineBlockHashes(prefix: PrefixChain, inputTokens: number, blockSize: number): number[] {
  return fillEngineBlockHashes(prefix, inputTokens, blockSize, (count) => new Array<number>(count));
}

/**
 * `engineBlockHashes` in a Uint32Array (the hashes are uint32): 4 bytes a block instead of a double's
 * 8, for the twin, whose per-block mode holds a request's hashes from routing to admission, so a deep
 * queue of long prompts held them all at once.
 */
export function engineBlockHashesU32(
  prefix: PrefixChain,
  inputTokens: number,
  blockSize: number,
): Uint32Array {
  return fillEngineBlockHashes(prefix, inputTokens, blockSize, (count) => new Uint32Array(count));
}

function fillEngineBlockHashes<T extends { [index: number]: number }>(
  prefix: PrefixChain,
  inputTokens: number,
  blockSize: number,
  make: (count: number) => T,
): T {
  const chainTokens = prefix.blockTokens;
  assert(Number.isInteger(chainTokens) && chainTokens >= 1, `bad prefix blockTokens ${chainTokens}`);
  assert(Number.isInteger(blockSize) && blockSize >= 1, `bad blockSize ${blockSize}`);
  const chain = prefix.hashes;
  const coveredTokens = Math.min(inputTokens, chain.length * chainTokens);
  const count = coveredTokens > 0 ? Math.floor(coveredTokens / blockSize) : 0;
  const out = make(count);
  let parent = CHAIN_ROOT;
  let chainIndex = -1;
  let firstInChain = 0;
  for (let e = 0; e < count; e++) {
    const c = Math.floor(((e + 1) * blockSize - 1) / chainTokens);
    if (c !== chainIndex) {
      chainIndex = c;
      firstInChain = e;
    }
    parent = chainHash(parent, chainHash(chain[c]!, e - firstInChain));
    out[e] = parent;
  }
  return out;
}
