/**
 * Workloads with shared prefixes, whose requests carry PrefixChains built with chainHash at
 * `blockTokens` per block. A chain covers the prompt's full blocks only (floor(input /
 * blockTokens) hashes), as a paged KV cache can share only full blocks.
 *
 * Block content is modelled by keys: a block's hash is chainHash(parent hash, key), and blocks
 * with the same key under the same parent are the same tokens. Keys come from a per-stream salt,
 * so two workloads with different seeds never share a prefix by accident.
 */
import { CHAIN_ROOT, chainHash } from '../core/hash.ts';
import { MinHeap } from '../core/heap.ts';
import type { PrefixChain } from '../core/request.ts';
import type { Rng } from '../core/rng.ts';
import { gammaArrivals } from './arrivals.ts';
import { buildRequest, defaultsOf } from './common.ts';
import { type LengthsLoader, lengthSampler, pairSampler } from './lengths.ts';
import type { WorkloadSpecOf } from './spec.ts';
import { limitsOf } from './synthetic.ts';
import type { TwinRequest } from './types.ts';

/** Picks group g with probability ∝ 1 / (g + 1)^exponent (exponent 0: uniform). */
export class ZipfSampler {
  private readonly cdf: Float64Array;

  constructor(
    readonly groups: number,
    readonly exponent: number,
  ) {
    this.cdf = new Float64Array(groups);
    let total = 0;
    for (let g = 0; g < groups; g++) {
      total += 1 / (g + 1) ** exponent;
      this.cdf[g] = total;
    }
    for (let g = 0; g < groups; g++) this.cdf[g] = (this.cdf[g] as number) / total;
  }

  /** A group index in [0, groups). */
  sample(rng: Rng): number {
    const u = rng.next();
    let lo = 0;
    let hi = this.groups - 1;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if ((this.cdf[mid] as number) > u) hi = mid;
      else lo = mid + 1;
    }
    return lo;
  }
}

/** Keys for blocks shared by a group, and for blocks unique to one request or session. */
const SHARED_NS = 1;
const UNIQUE_NS = 2;

/**
 * System-prompt workload: each request is its group's `prefixTokens` plus a unique suffix. Members
 * of a group share exactly the floor(prefixTokens / blockTokens) leading hashes; the block holding
 * the end of the prefix (if partial) and everything after are unique to the request.
 */
export function* systemPromptRequests(
  spec: WorkloadSpecOf<'system-prompts'>,
  rng: Rng,
  load: LengthsLoader,
): Generator<TwinRequest> {
  const arrivals = gammaArrivals(spec.rateRps, spec.cv, rng.fork('arrivals'));
  const lengths = pairSampler(spec.suffix, spec.output, rng.fork('lengths'), load);
  const groupRng = rng.fork('groups');
  const salt = rng.fork('salt').nextUint32();
  const sharedSalt = chainHash(salt, SHARED_NS);
  const uniqueSalt = chainHash(salt, UNIQUE_NS);
  const zipf = new ZipfSampler(spec.groups, spec.zipfExponent);
  const { blockTokens, prefixTokens } = spec;
  const prefixBlocks = Math.floor(prefixTokens / blockTokens);
  const { maxRequests, durationMs } = limitsOf(spec);
  const defaults = defaultsOf(spec);
  let t = 0;
  for (let i = 0; i < maxRequests; i++) {
    t += arrivals.nextGapMs();
    if (t >= durationMs) return;
    lengths.sample();
    const group = zipf.sample(groupRng);
    const inputTokens = prefixTokens + lengths.inputTokens;
    const blocks = Math.floor(inputTokens / blockTokens);
    const hashes = new Array<number>(blocks);
    const groupKey = chainHash(sharedSalt, group);
    const requestKey = chainHash(uniqueSalt, i);
    let h = CHAIN_ROOT;
    for (let j = 0; j < blocks; j++) {
      h = chainHash(h, chainHash(j < prefixBlocks ? groupKey : requestKey, j));
      hashes[j] = h;
    }
    const prefix: PrefixChain = { blockTokens, hashes };
    yield buildRequest(defaults, i, inputTokens, lengths.outputTokens, t, prefix, undefined);
  }
}

/** One conversation between turns. */
interface Session {
  readonly id: string;
  readonly key: number;
  /** Order of creation, to break ties in arrival time deterministically. */
  readonly seq: number;
  turnsLeft: number;
  promptTokens: number;
  outputTokens: number;
  readonly hashes: number[];
  nextMs: number;
}

function earlier(a: Session, b: Session): boolean {
  return a.nextMs < b.nextMs || (a.nextMs === b.nextMs && a.seq < b.seq);
}

/**
 * Multi-turn sessions. A session's tokens are one growing stream (system prompt, user message,
 * answer, user message, …), so turn n + 1's chain extends turn n's: same leading hashes, more
 * blocks. The system prompt's full blocks are shared by all sessions. Sessions overlap in time; a
 * heap of open sessions (bounded by how many are active at once) yields turns in arrival order.
 */
export function* sessionRequests(
  spec: WorkloadSpecOf<'sessions'>,
  rng: Rng,
  load: LengthsLoader,
): Generator<TwinRequest> {
  const starts = gammaArrivals(spec.sessionRateRps, spec.cv, rng.fork('arrivals'));
  const lengths = pairSampler(spec.userTokens, spec.output, rng.fork('lengths'), load);
  const turns = lengthSampler(spec.turns, 'input', rng.fork('turns'), load);
  const thinkRng = rng.fork('think');
  const salt = rng.fork('salt').nextUint32();
  const sharedKey = chainHash(chainHash(salt, SHARED_NS), 0);
  const uniqueSalt = chainHash(salt, UNIQUE_NS);
  const { blockTokens, systemPromptTokens, contextTokensMax } = spec;
  const systemBlocks = Math.floor(systemPromptTokens / blockTokens);
  const thinkRatePerMs = 1 / (spec.thinkTimeMeanS * 1000);
  const { maxRequests, durationMs } = limitsOf(spec);
  const defaults = defaultsOf(spec);
  // Open sessions by (nextMs, seq): seq is unique, so the pop order is fixed.
  const open = new MinHeap<Session>(earlier);
  let nextStartMs = starts.nextGapMs();
  let sessions = 0;
  let emitted = 0;

  const extendChain = (s: Session): PrefixChain => {
    const blocks = Math.floor(s.promptTokens / blockTokens);
    let h = s.hashes.length === 0 ? CHAIN_ROOT : (s.hashes[s.hashes.length - 1] as number);
    for (let j = s.hashes.length; j < blocks; j++) {
      h = chainHash(h, chainHash(j < systemBlocks ? sharedKey : s.key, j));
      s.hashes.push(h);
    }
    return { blockTokens, hashes: s.hashes.slice() };
  };

  while (emitted < maxRequests) {
    const pending = open.peek();
    let s: Session;
    if (pending === undefined || nextStartMs < pending.nextMs) {
      if (nextStartMs >= durationMs) return;
      lengths.sample();
      s = {
        id: `s${sessions}`,
        key: chainHash(uniqueSalt, sessions),
        seq: sessions,
        turnsLeft: Math.max(1, turns.sample()),
        promptTokens: systemPromptTokens + lengths.inputTokens,
        outputTokens: lengths.outputTokens,
        hashes: [],
        nextMs: nextStartMs,
      };
      sessions++;
      nextStartMs += starts.nextGapMs();
    } else {
      if (pending.nextMs >= durationMs) return;
      open.pop();
      s = pending;
      lengths.sample();
      const promptTokens = s.promptTokens + s.outputTokens + lengths.inputTokens;
      // The session has outgrown its context window: it ends here, before this turn.
      if (promptTokens + lengths.outputTokens > contextTokensMax) continue;
      s.promptTokens = promptTokens;
      s.outputTokens = lengths.outputTokens;
    }
    yield buildRequest(defaults, emitted, s.promptTokens, s.outputTokens, s.nextMs, extendChain(s), s.id);
    emitted++;
    s.turnsLeft--;
    if (s.turnsLeft > 0) {
      s.nextMs += thinkRng.exponential(thinkRatePerMs);
      open.push(s);
    }
  }
}
