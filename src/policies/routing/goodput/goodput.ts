import { z } from 'zod';
import { type RoutingDecision, reject, routeTo } from '../../../core/decision.ts';
import type { InstanceId, RequestId } from '../../../core/ids.ts';
import type { Request } from '../../../core/request.ts';
import type { InstanceView } from '../../../core/view.ts';
import type { PerfModel, StepShape } from '../../../model/types.ts';
import { OutputLengthEstimator } from '../../estimation/output-length.ts';
import { isEligible, noEligibleInstance } from '../eligible.ts';
import { PrefixCacheIndex } from '../prefix-cache-index.ts';
import type { PolicyContext, RoutingPolicy } from '../types.ts';

/** Parameters of `goodput`; every key has a default. README.md gives the measurements behind each. */
export const goodputParams = z.strictObject({
  /** TTFT SLO for requests that carry none. */
  ttftSloMs: z.number().positive().default(2000),
  /** TPOT SLO for requests that carry none. */
  tpotSloMs: z.number().positive().default(100),
  /** Refuse (SY_ERR_SLO_UNREACHABLE) what the prediction says would miss or make others miss. */
  rejectEarly: z.boolean().default(true),
  /**
   * Admit while predicted TTFT <= ttftSlack x SLO. Below 1 refuses the near misses: they are the
   * longest prompts, so each one refused frees much prefill for requests that can still make it.
   */
  ttftSlack: z.number().positive().default(0.8),
  /** Admit while predicted TPOT <= tpotSlack x SLO. */
  tpotSlack: z.number().positive().default(1),
  /** Refuse a request whose best placement would push more than this many others past their TPOT SLO. */
  harmMax: z.number().int().min(0).default(0),
  /** Weight of one request pushed past its TPOT SLO against this request's own SLO ratio (0..1). */
  harmWeight: z.number().min(0).default(1),
  /** Bonus, in SLO-ratio units, per fraction of the prompt an instance holds (keeps conversations together). */
  affinityWeight: z.number().min(0).default(0.5),
  /** Requests whose TPOT can absorb less than this much prefill stall are watched (fragile). */
  fragileBudgetMs: z.number().nonnegative().default(10_000),
  /** Fragile requests watched per instance; past it the sturdiest is dropped. */
  fragilePerInstanceMax: z.number().int().min(0).max(1024).default(32),
  /** Prefill tokens an engine step computes (vLLM max_num_batched_tokens). */
  chunkTokens: z.number().int().positive().default(8192),
  /** Fraction of an instance's KV cache the router fills, counting each request at its peak. */
  kvHeadroom: z.number().gt(0).max(2).default(0.9),
  /** With `rejectEarly`, refuse a request whose KV fits on no instance beside those in flight. */
  rejectOnKvFull: z.boolean().default(true),
  /** Time constant of the decayed prefill-work rate that predicts prefill interference on decodes. */
  rateWindowMs: z.number().positive().default(10_000),
  /** Interference is capped here so the TPOT prediction stays finite on a saturated instance. */
  interferenceMax: z.number().gt(0).lt(1).default(0.95),
  /** Requests tracked between routing and completion; past it the oldest is forgotten. */
  requestsTrackedMax: z.number().int().positive().default(100_000),
  /** Upper bound on the Retry-After hint of a rejection. */
  retryAfterMaxMs: z.number().positive().default(60_000),
});
/** Validated `goodput` parameters. */
export type GoodputParams = z.infer<typeof goodputParams>;

/** One routed request's share of its instance's accounting, until it completes. */
interface Outstanding {
  readonly slot: number;
  readonly generation: number;
  /** Prompt tokens the instance must compute (not in its cache when routed). */
  readonly prefillTokens: number;
  /** Attention work of that prefill in query-key pairs: u x cached + u (u + 1) / 2. */
  readonly prefillPairs: number;
  /** Mean KV context over its decode (prompt plus half its output). */
  readonly decodeContext: number;
  /** Peak KV tokens (prompt plus estimated output). */
  readonly kvTokens: number;
  /** Output tokens estimated when routed (never the true length: the router cannot know it). */
  readonly estOutputTokens: number;
  decoding: boolean;
  // Fragile requests only (see `watch`): the projected decode window and the stall budget.
  decodeStartMs: number;
  decodeEndMs: number;
  /** Prefill stall its TPOT can absorb: (output - 1) x (TPOT SLO - decode step). */
  stallBudgetMs: number;
  /** Stall the router has knowingly routed onto it since. */
  stallMs: number;
  /** Decode step time when routed: its token gap without prefill. */
  decodeStepMs: number;
}

/** Batches the decode-step table covers; past it the last two entries extrapolate linearly. */
const DECODE_TABLE_SEQS = 1024;
/** Distinct perf models and instances remembered; past it the memo starts over. */
const MEMO_MAX = 16_384;

/**
 * Per perf model constants, computed once. A full chunked-prefill step is linearised: prefill time
 * is tokens x msPerToken + attention pairs x msPerPair, which adds up over the requests of a queue, so
 * the hooks keep sums of tokens and pairs and `decide` prices them per instance. A decode step is
 * exactly f(batch) + g x total context in the roofline model (its attention is linear in context),
 * so f is a table and g a constant.
 */
interface PerfConstants {
  readonly perf: PerfModel;
  /** A full chunk's time per prompt token, step overheads included (queues run in full chunks). */
  readonly msPerToken: number;
  /** Prefill attention time per query-key pair. */
  readonly msPerPair: number;
  /** Extra time per decode sequence riding along a full prefill chunk. */
  readonly rideMsPerSeq: number;
  /** Extra time per token of decode context riding along a full prefill chunk. */
  readonly rideMsPerContextToken: number;
  /** Decode-only step time by batch size, without the context term. */
  readonly decodeMs: Float64Array;
  /** Decode step time per token of context read. */
  readonly decodeMsPerContextToken: number;
}

/** What one placement would give; written by `predict`, read right after. */
interface Prediction {
  ttftMs: number;
  tpotMs: number;
  /** When this request's prefill would start, how long it would take and over how many steps. */
  prefillStartMs: number;
  prefillMs: number;
  prefillSteps: number;
  decodeStepMs: number;
  /** Fragile requests on the instance this placement would push past their TPOT SLO. */
  harm: number;
  /** KV demand past the instance's headroom, as a fraction of it (0: fits). */
  kvOver: number;
}

/**
 * `goodput`: Switchyard's router, built to maximise goodput (requests per second that meet both
 * their TTFT and TPOT SLOs). For every eligible instance it predicts, from the router's own
 * accounting of what it sent there (never stale) and the instance's perf model, this request's TTFT
 * and TPOT and how many fragile requests already there its prefill would push past their TPOT SLO;
 * it takes the instance with the lowest
 *   max(TTFT / (slack x SLO), TPOT / SLO) + harmWeight x harm - affinityWeight x cached / prompt
 * and refuses the request (SY_ERR_SLO_UNREACHABLE with a Retry-After) when even that instance misses
 * its SLO, would push someone else past theirs, or has no KV left for it. README.md has the formulas,
 * the defaults and the measurements.
 */
export function createGoodput(params: GoodputParams, context: PolicyContext): RoutingPolicy {
  const index = new PrefixCacheIndex();
  /** Output lengths learnt from completions: the router never knows a request's true length. */
  const lengths = new OutputLengthEstimator();
  const active = new Map<RequestId, Outstanding>();
  const constants: PerfConstants[] = [];
  /**
   * The perf constants of every instance a decision priced: a memo of a pure function of its GPU,
   * model and TP, written by `decide` for the `onRouted` that follows (hooks see no view). It never
   * changes a decision.
   */
  const chosenConstants = new Map<InstanceId, PerfConstants>();
  // Per slot of the prefix index, the router's own accounting; only hooks move it.
  let pendPairs = new Float64Array(16);
  let pendTokens = new Float64Array(16);
  let pendSeqs = new Float64Array(16);
  let pendContext = new Float64Array(16);
  let decSeqs = new Float64Array(16);
  let decContext = new Float64Array(16);
  let kvTokens = new Float64Array(16);
  let rateTokens = new Float64Array(16);
  let ratePairs = new Float64Array(16);
  let rateAtMs = new Float64Array(16);
  const fragile: Outstanding[][] = [];
  const generations: number[] = [];
  // Decision scratch.
  const p: Prediction = {
    ttftMs: 0,
    tpotMs: 0,
    prefillStartMs: 0,
    prefillMs: 0,
    prefillSteps: 1,
    decodeStepMs: 0,
    harm: 0,
    kvOver: 0,
  };

  const remember = (id: InstanceId, k: PerfConstants): void => {
    if (chosenConstants.size >= MEMO_MAX) chosenConstants.clear();
    chosenConstants.set(id, k);
  };

  const constantsFor = (perf: PerfModel): PerfConstants => {
    for (const c of constants) if (c.perf === perf) return c;
    if (constants.length >= MEMO_MAX) constants.length = 0;
    const c = computeConstants(perf, params.chunkTokens);
    constants.push(c);
    return c;
  };

  const register = (instanceId: InstanceId): number => {
    const slot = index.register(instanceId);
    if (slot >= pendTokens.length) {
      const n = slot * 2;
      pendPairs = grow(pendPairs, n);
      pendTokens = grow(pendTokens, n);
      pendSeqs = grow(pendSeqs, n);
      pendContext = grow(pendContext, n);
      decSeqs = grow(decSeqs, n);
      decContext = grow(decContext, n);
      kvTokens = grow(kvTokens, n);
      rateTokens = grow(rateTokens, n);
      ratePairs = grow(ratePairs, n);
      rateAtMs = grow(rateAtMs, n);
    }
    const generation = index.generation(slot);
    if (generations[slot] !== generation) {
      // A new slot, or one recycled from an instance gone from the fleet: start from nothing.
      generations[slot] = generation;
      pendPairs[slot] = 0;
      pendTokens[slot] = 0;
      pendSeqs[slot] = 0;
      pendContext[slot] = 0;
      decSeqs[slot] = 0;
      decContext[slot] = 0;
      kvTokens[slot] = 0;
      rateTokens[slot] = 0;
      ratePairs[slot] = 0;
      rateAtMs[slot] = 0;
      fragile[slot] = [];
    }
    return slot;
  };

  const current = (slot: number | undefined): slot is number =>
    slot !== undefined && generations[slot] === index.generation(slot);

  const endPrefill = (rec: Outstanding): void => {
    const s = rec.slot;
    pendPairs[s] = (pendPairs[s] as number) - rec.prefillPairs;
    pendTokens[s] = (pendTokens[s] as number) - rec.prefillTokens;
    pendSeqs[s] = (pendSeqs[s] as number) - 1;
    pendContext[s] = (pendContext[s] as number) - rec.decodeContext;
  };

  const release = (id: RequestId): void => {
    const rec = active.get(id);
    if (rec === undefined) return;
    active.delete(id);
    if (rec.generation !== index.generation(rec.slot)) return;
    const s = rec.slot;
    if (rec.decoding) {
      decSeqs[s] = (decSeqs[s] as number) - 1;
      decContext[s] = (decContext[s] as number) - rec.decodeContext;
    } else {
      endPrefill(rec);
    }
    kvTokens[s] = (kvTokens[s] as number) - rec.kvTokens;
    const list = fragile[s];
    const at = list === undefined ? -1 : list.indexOf(rec);
    if (at >= 0) (list as Outstanding[]).splice(at, 1);
  };

  /**
   * Predicts what placing `request` on the instance in `slot` (undefined: one never routed to) would
   * give; writes `p`. Read-only.
   *   queue  = queued prefill (tokens x msPerToken + pairs x msPerPair) + steps x ride
   *   TTFT   = queue + own uncached prefill priced the same way; ride = decodes riding each chunk
   *   TPOT   = decodeStep(batch it joins, their context) / (1 - recent prefill-work rate)
   *   harm   = fragile requests whose stall budget this prefill would exhaust (see stallOn)
   */
  const predict = (
    slot: number | undefined,
    k: PerfConstants,
    request: Request,
    outTokens: number,
    cached: number,
    kvCapTokens: number,
    nowMs: number,
  ): void => {
    const input = request.inputTokens;
    const u = input - cached;
    const ownPairs = u * cached + (u * (u + 1)) / 2;
    const live = current(slot);
    const qPairs = live ? (pendPairs[slot] as number) : 0;
    const qTokens = live ? (pendTokens[slot] as number) : 0;
    const qSeqs = live ? (pendSeqs[slot] as number) : 0;
    const qContext = live ? (pendContext[slot] as number) : 0;
    const dSeqs = live ? (decSeqs[slot] as number) : 0;
    const dContext = live ? (decContext[slot] as number) : 0;
    const kv = live ? (kvTokens[slot] as number) : 0;
    let rho = 0;
    if (live && (rateTokens[slot] as number) > 0) {
      const decay = Math.exp(-Math.max(0, nowMs - (rateAtMs[slot] as number)) / params.rateWindowMs);
      const work = (rateTokens[slot] as number) * k.msPerToken + (ratePairs[slot] as number) * k.msPerPair;
      rho = Math.min(params.interferenceMax, (decay * work) / params.rateWindowMs);
    }
    const perStep = Math.max(1, params.chunkTokens - dSeqs);
    const rideMs = k.rideMsPerSeq * dSeqs + k.rideMsPerContextToken * dContext;
    const queueMs = qTokens * k.msPerToken + qPairs * k.msPerPair + Math.ceil(qTokens / perStep) * rideMs;
    const steps = Math.max(1, Math.ceil(u / perStep));
    const ownMs = u * k.msPerToken + ownPairs * k.msPerPair + steps * rideMs;
    p.prefillStartMs = nowMs + queueMs;
    p.prefillMs = ownMs;
    p.prefillSteps = steps;
    p.ttftMs = queueMs + ownMs;
    const batch = dSeqs + qSeqs + 1;
    p.decodeStepMs = decodeStepMs(k, batch, dContext + qContext + input + outTokens / 2);
    p.tpotMs = p.decodeStepMs / (1 - rho);
    p.kvOver = Math.max(0, kv + input + outTokens - kvCapTokens) / kvCapTokens;
    let harm = 0;
    const list = live ? fragile[slot] : undefined;
    if (list !== undefined) {
      for (let i = 0; i < list.length; i++) {
        const j = list[i] as Outstanding;
        if (j.stallMs > j.stallBudgetMs) continue; // already past its SLO: nothing left to protect
        const stall = stallOn(j, p.prefillStartMs, ownMs, steps);
        if (stall > 0 && j.stallMs + stall > j.stallBudgetMs) harm++;
      }
    }
    p.harm = harm;
  };

  /** Prompt tokens the index says `slot` holds (the last prompt token is always computed). */
  const cachedTokens = (slot: number | undefined, request: Request): number =>
    Math.min(Math.max(0, request.inputTokens - 1), index.matchedBlocks(slot) * request.prefix.blockTokens);

  return {
    name: 'goodput',
    decide(view, request, rng) {
      index.observe(view);
      index.match(request.prefix.hashes);
      const ttftSloMs = request.slo?.ttftMs ?? params.ttftSloMs;
      const tpotSloMs = request.slo?.tpotMs ?? params.tpotSloMs;
      const ttftBudget = ttftSloMs * params.ttftSlack;
      const tpotBudget = tpotSloMs * params.tpotSlack;
      const outTokens = lengths.estimate(request);
      let best: InstanceView | undefined;
      let bestK: PerfConstants | undefined;
      let bestCost = Number.POSITIVE_INFINITY;
      let ties = 0;
      let bestTtft = 0;
      let bestTpot = 0;
      let bestHarm = 0;
      let bestKvOver = 0;
      // A pool is usually one or two kinds of instance: reuse the last one's constants when equal.
      let k: PerfConstants | undefined;
      let kGpu = '';
      let kModel = '';
      let kTp = 0;
      for (const instance of view.instances) {
        if (!isEligible(instance, request.model)) continue;
        const model = instance.models[0] ?? '';
        if (k === undefined || instance.gpu !== kGpu || model !== kModel || instance.tp !== kTp) {
          k = constantsFor(context.perfModel(instance));
          kGpu = instance.gpu;
          kModel = model;
          kTp = instance.tp;
        }
        // Remembered for every instance priced, so that the hooks can price a placement another
        // policy chose (goodput as the early-rejection judge, src/policies/admission/early-reject.ts).
        if (chosenConstants.get(instance.id) !== k) remember(instance.id, k);
        const slot = index.slotOf(instance.id);
        const cached = cachedTokens(slot, request);
        const kvCap = instance.kvBlocksTotal * instance.blockSize * params.kvHeadroom;
        predict(slot, k, request, outTokens, cached, kvCap, view.nowMs);
        const ratio = Math.max(p.ttftMs / ttftBudget, p.tpotMs / tpotBudget);
        // Its own SLO first, then the others' (harm), then load, with a pull towards its cache.
        let cost =
          ratio + params.harmWeight * p.harm - (params.affinityWeight * cached) / request.inputTokens;
        if (ratio > 1) cost += OWN_MISS_COST;
        if (p.kvOver > 0) cost += 1 + p.kvOver;
        if (cost < bestCost) {
          best = instance;
          bestK = k;
          bestCost = cost;
          ties = 1;
          bestTtft = p.ttftMs;
          bestTpot = p.tpotMs;
          bestHarm = p.harm;
          bestKvOver = p.kvOver;
        } else if (cost === bestCost && rng.int(++ties) === 0) {
          best = instance;
          bestK = k;
        }
      }
      if (best === undefined || bestK === undefined) return noEligibleInstance(request.model);
      if (params.rejectEarly) {
        const refusal = refuse(best.id, bestTtft, bestTpot, bestHarm, bestKvOver, ttftBudget, tpotBudget);
        if (refusal !== undefined) return refusal;
      }
      return routeTo(best.id);
    },

    onRouted(request: Request, instanceId: InstanceId, nowMs: number) {
      release(request.id);
      const slot = register(instanceId);
      const prefix = request.prefix;
      const input = request.inputTokens;
      const cached = Math.min(
        Math.max(0, input - 1),
        index.longestMatch(slot, prefix.hashes) * prefix.blockTokens,
      );
      const u = input - cached;
      const outTokens = lengths.estimate(request);
      const rec: Outstanding = {
        slot,
        generation: index.generation(slot),
        prefillTokens: u,
        prefillPairs: u * cached + (u * (u + 1)) / 2,
        decodeContext: input + outTokens / 2,
        kvTokens: input + outTokens,
        estOutputTokens: outTokens,
        decoding: false,
        decodeStartMs: 0,
        decodeEndMs: 0,
        stallBudgetMs: 0,
        stallMs: 0,
        decodeStepMs: 0,
      };
      // Prices need the instance's perf model, known when this policy chose the instance itself.
      const k = chosenConstants.get(instanceId);
      if (k !== undefined) {
        predict(slot, k, request, outTokens, cached, Number.POSITIVE_INFINITY, nowMs);
        const list = fragile[slot] as Outstanding[];
        // This prefill stalls the fragile requests whose decode it overlaps: charge them.
        for (const j of list) {
          const stall = stallOn(j, p.prefillStartMs, p.prefillMs, p.prefillSteps);
          j.stallMs += stall;
          j.decodeEndMs += stall;
        }
        const gaps = Math.max(0, outTokens - 1);
        const tpotSloMs = request.slo?.tpotMs ?? params.tpotSloMs;
        rec.decodeStepMs = p.decodeStepMs;
        rec.stallBudgetMs = gaps * (tpotSloMs - p.decodeStepMs);
        rec.decodeStartMs = p.prefillStartMs + p.prefillMs;
        rec.decodeEndMs = rec.decodeStartMs + gaps * p.decodeStepMs;
        if (gaps > 0 && rec.stallBudgetMs < params.fragileBudgetMs) watch(list, rec);
      }
      active.set(request.id, rec);
      pendPairs[slot] = (pendPairs[slot] as number) + rec.prefillPairs;
      pendTokens[slot] = (pendTokens[slot] as number) + rec.prefillTokens;
      pendSeqs[slot] = (pendSeqs[slot] as number) + 1;
      pendContext[slot] = (pendContext[slot] as number) + rec.decodeContext;
      kvTokens[slot] = (kvTokens[slot] as number) + rec.kvTokens;
      const decay = Math.exp(-Math.max(0, nowMs - (rateAtMs[slot] as number)) / params.rateWindowMs);
      rateTokens[slot] = (rateTokens[slot] as number) * decay + rec.prefillTokens;
      ratePairs[slot] = (ratePairs[slot] as number) * decay + rec.prefillPairs;
      rateAtMs[slot] = nowMs;
      // Map order is insertion order: the longest-tracked request is the likeliest lost completion.
      if (active.size > params.requestsTrackedMax) release(active.keys().next().value as RequestId);
      index.learn(slot, prefix);
    },

    onFirstToken(request: Request, _instanceId: InstanceId, nowMs: number) {
      const rec = active.get(request.id);
      if (rec === undefined || rec.decoding) return;
      rec.decoding = true;
      if (rec.generation !== index.generation(rec.slot)) return;
      endPrefill(rec);
      decSeqs[rec.slot] = (decSeqs[rec.slot] as number) + 1;
      decContext[rec.slot] = (decContext[rec.slot] as number) + rec.decodeContext;
      // The decode window moves to the real first token; stalls already charged keep their length.
      rec.decodeStartMs = nowMs;
      rec.decodeEndMs = nowMs + Math.max(0, rec.estOutputTokens - 1) * rec.decodeStepMs + rec.stallMs;
    },

    onCompleted(request: Request, _instanceId: InstanceId, _nowMs: number, generatedTokens?: number) {
      lengths.observe(request, generatedTokens);
      release(request.id);
    },

    onFailed(request: Request) {
      release(request.id);
    },
  };

  /** Keeps a bounded list of fragile requests: past the bound, the one with the most budget left goes. */
  function watch(list: Outstanding[], rec: Outstanding): void {
    list.push(rec);
    if (list.length <= params.fragilePerInstanceMax) return;
    let sturdiest = 0;
    for (let i = 1; i < list.length; i++) {
      const x = list[i] as Outstanding;
      const y = list[sturdiest] as Outstanding;
      if (x.stallBudgetMs - x.stallMs > y.stallBudgetMs - y.stallMs) sturdiest = i;
    }
    list.splice(sturdiest, 1);
  }

  /** The refusal for the best placement, or undefined to route it. */
  function refuse(
    id: InstanceId,
    ttftMs: number,
    tpotMs: number,
    harm: number,
    kvOver: number,
    ttftBudget: number,
    tpotBudget: number,
  ): RoutingDecision | undefined {
    if (ttftMs > ttftBudget) {
      return reject(
        'SY_ERR_SLO_UNREACHABLE',
        `predicted TTFT ${ttftMs.toFixed(0)} ms at best (instance ${id}) exceeds the TTFT budget ${ttftBudget.toFixed(0)} ms`,
        retryAfter(ttftMs - ttftBudget),
      );
    }
    if (tpotMs > tpotBudget) {
      return reject(
        'SY_ERR_SLO_UNREACHABLE',
        `predicted TPOT ${tpotMs.toFixed(1)} ms at best (instance ${id}) exceeds the TPOT budget ${tpotBudget.toFixed(1)} ms`,
        retryAfter(ttftMs),
      );
    }
    if (kvOver > 0 && params.rejectOnKvFull) {
      return reject(
        'SY_ERR_SLO_UNREACHABLE',
        `its KV fits on no instance beside the requests in flight (best ${id}, ${(kvOver * 100).toFixed(0)}% over): it would preempt others`,
        retryAfter(ttftMs),
      );
    }
    if (harm > params.harmMax) {
      return reject(
        'SY_ERR_SLO_UNREACHABLE',
        `its prefill would push ${harm} running request(s) past their TPOT SLO at best (instance ${id})`,
        retryAfter(ttftMs),
      );
    }
    return undefined;
  }

  function retryAfter(ms: number): number {
    return Math.min(params.retryAfterMaxMs, Math.max(1, Math.ceil(ms)));
  }
}

/** Added to a placement's cost when it misses the request's own SLO: any placement that meets it wins. */
const OWN_MISS_COST = 1000;

/** Builds the constants of a perf model (see PerfConstants). */
function computeConstants(perf: PerfModel, chunk: number): PerfConstants {
  const shape: StepShape = {
    prefillSeqs: 1,
    prefillTokens: chunk,
    prefillAttentionPairs: 0,
    decodeSeqs: 0,
    decodeContextTokens: 0,
    commonPrefixTokens: 0,
  };
  const gemmOnly = perf.stepTimeMs(shape);
  const pairs = (chunk * (chunk + 1)) / 2;
  shape.prefillAttentionPairs = pairs;
  const withAttention = perf.stepTimeMs(shape);
  shape.decodeSeqs = 64;
  const withDecodes = perf.stepTimeMs(shape);
  shape.decodeContextTokens = 64 * 8192;
  const withContext = perf.stepTimeMs(shape);
  const contextProbe = 1_000_000;
  const decodeMsPerContextToken =
    (perf.decodeStepTimeMs(1, 2 * contextProbe) - perf.decodeStepTimeMs(1, contextProbe)) / contextProbe;
  const decodeMs = new Float64Array(DECODE_TABLE_SEQS + 1);
  for (let b = 1; b <= DECODE_TABLE_SEQS; b++) {
    decodeMs[b] = perf.decodeStepTimeMs(b, contextProbe) - decodeMsPerContextToken * b * contextProbe;
  }
  return {
    perf,
    msPerToken: gemmOnly / chunk,
    msPerPair: (withAttention - gemmOnly) / pairs,
    rideMsPerSeq: (withDecodes - withAttention) / 64,
    rideMsPerContextToken: (withContext - withDecodes) / (64 * 8192),
    decodeMs,
    decodeMsPerContextToken,
  };
}

/** Decode step time of `batch` sequences reading `contextTokens` of KV in all. */
function decodeStepMs(k: PerfConstants, batch: number, contextTokens: number): number {
  const table = k.decodeMs;
  const top = DECODE_TABLE_SEQS;
  const b = Math.max(1, Math.ceil(batch));
  const base =
    b <= top
      ? (table[b] as number)
      : (table[top] as number) + (b - top) * ((table[top] as number) - (table[top - 1] as number));
  return base + k.decodeMsPerContextToken * contextTokens;
}

/**
 * The stall a prefill of `prefillMs` spread over `steps` engine steps, starting at `startMs`, adds to
 * fragile request `j`: every token gap of j that falls in one of those steps grows by that step's
 * share of the prefill (a chunk step is ~250 ms where a decode step is ~10). j's gaps left at
 * `startMs` come from its projected decode window.
 */
function stallOn(j: Outstanding, startMs: number, prefillMs: number, steps: number): number {
  if (startMs >= j.decodeEndMs) return 0;
  const gaps = Math.max(0, j.estOutputTokens - 1);
  const left =
    startMs <= j.decodeStartMs
      ? gaps
      : Math.min(gaps, (j.decodeEndMs - startMs) / Math.max(1e-3, j.decodeStepMs));
  return (Math.min(left, steps) * prefillMs) / steps;
}

function grow(a: Float64Array, n: number): Float64Array<ArrayBuffer> {
  const out = new Float64Array(Math.max(16, n));
  out.set(a);
  return out;
}
