/**
 * Shared prompt prefixes for fidelity cases, as benchmarks send them: `vllm bench serve
 * --random-prefix-len N` puts one fixed prefix of N tokens before every random prompt, its
 * `prefix_repetition` dataset and SGLang's generated-shared-prefix dataset spread requests over G
 * prefixes, and a suite that sends a few fixed prompts over and over repeats whole prompts.
 *
 * A case's `workload.prefix` ({tokens, groups, zipfExponent}) turns the requests its workload drew
 * into prompts of `tokens` shared tokens followed by the request's own `input` tokens, as vLLM's
 * random dataset does (its total prompt is the prefix plus the sampled length). Each request
 * carries a PrefixChain over the prefix's full blocks at the engine's block size, so the engine's
 * prefix cache (`enablePrefixCaching`, on by default as in vLLM V1) reuses exactly the blocks a
 * real engine could: the block holding the end of the prefix, if partial, and the request's own
 * part are unique to it.
 */
import { z } from 'zod';
import { CHAIN_ROOT, chainHash } from '../../core/hash.ts';
import type { PrefixChain } from '../../core/request.ts';
import type { Rng } from '../../core/rng.ts';
import { ZipfSampler } from '../../workload/shared-prefix.ts';
import type { TwinRequest } from '../../workload/types.ts';

/** Longest shared prefix a case may declare (tokens; twice the longest context in the catalogue). */
export const PREFIX_TOKENS_MAX = 262_144;
/** Most distinct prefixes a case may declare. */
export const PREFIX_GROUPS_MAX = 10_000;
/** Most prefix tokens over all groups (tokens × groups): bounds the chains a run holds (~4M hashes at 16 tokens a block). */
export const PREFIX_TOTAL_TOKENS_MAX = 67_108_864;

/**
 * `workload.prefix`: every prompt starts with one of `groups` shared prefixes of `tokens` tokens,
 * picked per request with P(group g) ∝ 1 / (g + 1)^zipfExponent (0, the default: uniform, as the
 * benchmarks' datasets give each prefix an equal share). The workload's `input` is the part after
 * the prefix, so a prompt is `tokens` + input tokens long.
 */
export const casePrefixSchema = z
  .strictObject({
    tokens: z.number().int().min(1).max(PREFIX_TOKENS_MAX),
    groups: z.number().int().min(1).max(PREFIX_GROUPS_MAX).default(1),
    zipfExponent: z.number().nonnegative().finite().default(0),
  })
  .refine((p) => p.tokens * p.groups <= PREFIX_TOTAL_TOKENS_MAX, {
    message: `tokens × groups may be at most ${PREFIX_TOTAL_TOKENS_MAX}`,
    path: ['groups'],
  });

/** A validated `workload.prefix`. */
export type CasePrefix = z.output<typeof casePrefixSchema>;

/**
 * The requests with `prefix.tokens` shared tokens put in front of each prompt. `blockTokens` is the
 * engine's block size, so chain block j is engine block j. Group picks and the block keys come from
 * `rng` alone, so the same case gives the same prompts; other fields (ids, arrivals, output
 * lengths) are kept.
 */
export function withSharedPrefix(
  requests: readonly TwinRequest[],
  prefix: CasePrefix,
  blockTokens: number,
  rng: Rng,
): TwinRequest[] {
  const chains = groupChains(prefix, blockTokens, rng.fork('salt').nextUint32());
  const zipf = new ZipfSampler(prefix.groups, prefix.zipfExponent);
  const pick = rng.fork('groups');
  return requests.map((r) => ({
    ...r,
    inputTokens: r.inputTokens + prefix.tokens,
    prefix: chains[zipf.sample(pick)] as PrefixChain,
  }));
}

/**
 * One chain per group over the prefix's full blocks. Chains are shared by the requests of a group
 * (they are read-only), so a run holds `groups` chains rather than one per request.
 */
function groupChains(prefix: CasePrefix, blockTokens: number, salt: number): PrefixChain[] {
  const blocks = Math.floor(prefix.tokens / blockTokens);
  const chains: PrefixChain[] = [];
  for (let g = 0; g < prefix.groups; g++) {
    const key = chainHash(salt, g);
    const hashes = new Array<number>(blocks);
    let h = CHAIN_ROOT;
    for (let j = 0; j < blocks; j++) {
      h = chainHash(h, chainHash(key, j));
      hashes[j] = h;
    }
    chains.push(Object.freeze({ blockTokens, hashes: Object.freeze(hashes) }));
  }
  return chains;
}
