import { z } from 'zod';
import { routeTo } from '../../../core/decision.ts';
import type { InstanceId, RequestId } from '../../../core/ids.ts';
import type { Request } from '../../../core/request.ts';
import type { Rng } from '../../../core/rng.ts';
import type { InstanceView } from '../../../core/view.ts';
import type { PerfModel } from '../../../model/types.ts';
import { OutputLengthEstimator } from '../../estimation/output-length.ts';
import { eligibleInto, noEligibleInstance } from '../eligible.ts';
import { PrefixCacheIndex } from '../prefix-cache-index.ts';
import type { PolicyContext, RoutingPolicy } from '../types.ts';

/** Parameters of `preble`; every key has a default. */
export const prebleParams = z.strictObject({
  /**
   * Exploit (follow the cache) when the longest cached prefix is longer than this many times the
   * missed part of the prompt. At 1 this is Preble's rule (§3.2): cached tokens outnumber missed ones.
   */
  exploitRatio: z.number().min(0).default(1),
  /** The recent history H an instance's load sums over (Preble: 3 minutes). */
  windowMs: z.number().positive().default(180_000),
  /** Routed requests remembered per instance within the window; past it the oldest is dropped. */
  windowRequestsMax: z.number().int().positive().default(4096),
  /** Prefix tokens the approximate index remembers per instance (about an H100's KV for an 8B model). */
  indexCapacityTokens: z.number().int().positive().default(450_000),
  /**
   * Post-assignment rebalancing: when the instance exploitation picks would carry more than this many
   * times the load of the best explored one, the request goes to the explored one instead, which
   * then holds a replica of the prefix (Preble's load adjustment and prefix autoscaling, §3.2).
   */
  rebalanceRatio: z.number().min(1).default(2),
  /**
   * Which requests' decode time the load counts: `window`, every request routed in the window (the
   * paper's text, §3.2); `in-flight`, only those routed and not yet finished (the authors' code).
   */
  decodeLoad: z.enum(['window', 'in-flight']).default('in-flight'),
  /** Requests the in-flight account remembers; past it the oldest is taken as finished. */
  inFlightMax: z.number().int().positive().default(65_536),
});
/** Validated `preble` parameters. */
export type PrebleParams = z.infer<typeof prebleParams>;

/**
 * The requests routed to one instance within the window, as token counts, with running sums. Token
 * counts rather than times because the hooks do not see the instance (nor so its perf model); the
 * decision converts the sums to time.
 */
class WindowRing {
  private at = new Float64Array(16);
  private missed = new Float64Array(16);
  private cached = new Float64Array(16);
  private output = new Float64Array(16);
  private head = 0;
  count = 0;
  sumMissed = 0;
  sumCached = 0;
  sumOutput = 0;

  constructor(private readonly capacity: number) {}

  push(atMs: number, missed: number, cached: number, output: number): void {
    if (this.count === this.capacity) this.shift();
    if (this.count === this.at.length) this.grow();
    const i = (this.head + this.count) % this.at.length;
    this.at[i] = atMs;
    this.missed[i] = missed;
    this.cached[i] = cached;
    this.output[i] = output;
    this.count++;
    this.sumMissed += missed;
    this.sumCached += cached;
    this.sumOutput += output;
  }

  /** Drops entries routed before `cutoffMs`. */
  expire(cutoffMs: number): void {
    while (this.count > 0 && (this.at[this.head] as number) < cutoffMs) this.shift();
  }

  /**
   * The sums as they would be after `expire(cutoffMs)`, without expiring: for `decide`, which must not
   * change state. Writes into `out` [count, missed, cached, output].
   */
  peek(cutoffMs: number, out: Float64Array): void {
    let count = this.count;
    let missed = this.sumMissed;
    let cached = this.sumCached;
    let output = this.sumOutput;
    const len = this.at.length;
    for (
      let k = 0, i = this.head;
      k < this.count && (this.at[i] as number) < cutoffMs;
      k++, i = (i + 1) % len
    ) {
      count--;
      missed -= this.missed[i] as number;
      cached -= this.cached[i] as number;
      output -= this.output[i] as number;
    }
    out[0] = count;
    out[1] = Math.max(0, missed);
    out[2] = Math.max(0, cached);
    out[3] = Math.max(0, output);
  }

  private shift(): void {
    const i = this.head;
    this.sumMissed -= this.missed[i] as number;
    this.sumCached -= this.cached[i] as number;
    this.sumOutput -= this.output[i] as number;
    this.head = (i + 1) % this.at.length;
    this.count--;
    if (this.count === 0) {
      // Exact zero again, so rounding does not accumulate over a long run.
      this.sumMissed = 0;
      this.sumCached = 0;
      this.sumOutput = 0;
    }
  }

  private grow(): void {
    const n = Math.min(this.capacity, this.at.length * 2);
    const copy = (a: Float64Array): Float64Array<ArrayBuffer> => {
      const out = new Float64Array(n);
      for (let k = 0; k < this.count; k++) out[k] = a[(this.head + k) % a.length] as number;
      return out;
    };
    this.at = copy(this.at);
    this.missed = copy(this.missed);
    this.cached = copy(this.cached);
    this.output = copy(this.output);
    this.head = 0;
  }
}

/** What the decision knows of one candidate instance. */
interface Candidate {
  matchedTokens: number;
  loadMs: number;
  /** load + eviction + this request's prefill there: the instance's load once it takes the request. */
  exploreCostMs: number;
}

/**
 * Preble's E2 global scheduler (ICLR'25, §3.2), per request:
 *
 * - exploit when the longest cached prefix (over all instances, approximate index) is longer than
 *   `exploitRatio` x the rest of the prompt: among the instances holding it, the least loaded;
 * - otherwise explore: the instance with the least `load + eviction + prefill` cost;
 * - post-assignment rebalancing: if the exploited instance's load once it takes the request is over
 *   `rebalanceRatio` x the explored one's, send it to the explored one, which so gains a replica of
 *   the prefix (later requests of the prefix split between the holders by load).
 *
 * `load` is the instance's compute: the prefill time of the missed tokens of each request routed
 * there in the last `windowMs`, plus the decode time (estimated output tokens x the instance's TPOT)
 * of the requests still in flight there (`decodeLoad: in-flight`) or routed in the window (`window`).
 */
export function createPreble(params: PrebleParams, context: PolicyContext): RoutingPolicy {
  const index = new PrefixCacheIndex({ capacity: { tokens: params.indexCapacityTokens } });
  const lengths = new OutputLengthEstimator(); // learnt from completions: never the true length
  const rings: WindowRing[] = [];
  const ringGenerations: number[] = [];
  const candidates: InstanceView[] = [];
  const sums = new Float64Array(4);
  let costs: Candidate[] = [];
  /** Estimated output tokens of the requests in flight per slot, and each request's share. */
  const inFlightOutput: number[] = [];
  const inFlight = new Map<RequestId, { slot: number; generation: number; estOutputTokens: number }>();

  const finish = (id: RequestId): void => {
    const entry = inFlight.get(id);
    if (entry === undefined) return;
    inFlight.delete(id);
    if (index.generation(entry.slot) !== entry.generation) return;
    inFlightOutput[entry.slot] = Math.max(0, (inFlightOutput[entry.slot] ?? 0) - entry.estOutputTokens);
  };

  /** Output tokens whose decode time the load counts on `slot`: in flight, or routed in the window. */
  const decodeTokens = (slot: number | undefined, windowOutputTokens: number): number => {
    if (params.decodeLoad === 'window') return windowOutputTokens;
    if (slot === undefined || ringOf(slot) === undefined) return 0;
    return inFlightOutput[slot] ?? 0;
  };

  /** The live window of `slot`, or undefined when it has none (or its slot was recycled). */
  const ringOf = (slot: number | undefined): WindowRing | undefined => {
    if (slot === undefined) return undefined;
    const ring = rings[slot];
    return ring !== undefined && ringGenerations[slot] === index.generation(slot) ? ring : undefined;
  };

  /** Fills `out` for one instance: its windowed load and its explore cost for `request`. */
  const price = (instance: InstanceView, request: Request, nowMs: number, out: Candidate): void => {
    const perf = context.perfModel(instance);
    const slot = index.slotOf(instance.id);
    const input = request.inputTokens;
    const matched = Math.min(input, index.matchedBlocks(slot) * request.prefix.blockTokens);
    // At least one token is computed, so a fully cached prompt still costs one step.
    const cached = Math.min(matched, Math.max(0, input - 1));
    const missed = input - cached;
    out.matchedTokens = matched;
    out.loadMs = 0;
    let windowCachedTokens = 0;
    const ring = ringOf(slot);
    if (ring !== undefined) {
      ring.peek(nowMs - params.windowMs, sums);
      out.loadMs = windowLoadMs(instance, perf, sums, decodeTokens(slot, sums[3] as number));
      windowCachedTokens = sums[2] as number;
    }
    const evictMs = evictionCostMs(perf, slot, missed, windowCachedTokens, request.prefix.blockTokens);
    out.exploreCostMs = out.loadMs + evictMs + perf.prefillTimeMs(missed, cached);
  };

  /**
   * Preble's eviction cost M_i: the prefill time of the cached tokens this request would push out,
   * weighted by how often the instance's cache was hit in the window (hit tokens per resident token).
   * The index does not count hits per block, so every evicted token is priced at the instance mean.
   */
  const evictionCostMs = (
    perf: PerfModel,
    slot: number | undefined,
    missedTokens: number,
    windowCachedTokens: number,
    blockTokens: number,
  ): number => {
    const residentTokens = index.size(slot) * blockTokens;
    const evictedTokens = residentTokens + missedTokens - params.indexCapacityTokens;
    if (evictedTokens <= 0 || residentTokens <= 0 || windowCachedTokens <= 0) return 0;
    return (windowCachedTokens / residentTokens) * perf.prefillTimeMs(evictedTokens, 0);
  };

  /** Index of the least `key` among `costs[0..n)` passing `keep`, seeded ties; -1 if none passes. */
  const argmin = (n: number, key: (c: Candidate) => number, keep: (c: Candidate) => boolean, rng: Rng) => {
    let best = -1;
    let bestKey = Number.POSITIVE_INFINITY;
    let ties = 0;
    for (let i = 0; i < n; i++) {
      const c = costs[i] as Candidate;
      if (!keep(c)) continue;
      const k = key(c);
      if (k < bestKey) {
        best = i;
        bestKey = k;
        ties = 1;
      } else if (k === bestKey && rng.int(++ties) === 0) {
        best = i;
      }
    }
    return best;
  };

  return {
    name: 'preble',
    decide(view, request, rng) {
      eligibleInto(view.instances, request.model, candidates);
      const n = candidates.length;
      if (n === 0) return noEligibleInstance(request.model);
      while (costs.length < n) costs = [...costs, { matchedTokens: 0, loadMs: 0, exploreCostMs: 0 }];
      index.match(request.prefix.hashes);
      let longest = 0;
      for (let i = 0; i < n; i++) {
        const c = costs[i] as Candidate;
        price(candidates[i] as InstanceView, request, view.nowMs, c);
        if (c.matchedTokens > longest) longest = c.matchedTokens;
      }
      const explored = argmin(
        n,
        (c) => c.exploreCostMs,
        () => true,
        rng,
      );
      const exploit = longest > 0 && longest > params.exploitRatio * (request.inputTokens - longest);
      if (!exploit) return routeTo((candidates[explored] as InstanceView).id);
      // The holders of the longest prefix compute the same missed tokens: their load decides.
      const held = argmin(
        n,
        (c) => c.exploreCostMs,
        (c) => c.matchedTokens === longest,
        rng,
      );
      const heldCost = (costs[held] as Candidate).exploreCostMs;
      const rebalance = heldCost > params.rebalanceRatio * (costs[explored] as Candidate).exploreCostMs;
      return routeTo((candidates[rebalance ? explored : held] as InstanceView).id);
    },
    onRouted(request: Request, instanceId: InstanceId, nowMs: number) {
      const slot = index.register(instanceId);
      const prefix = request.prefix;
      const cached = Math.min(
        request.inputTokens,
        index.longestMatch(slot, prefix.hashes) * prefix.blockTokens,
      );
      let ring = ringOf(slot);
      if (ring === undefined) {
        // A new slot, or one recycled from an instance gone from the fleet: an empty window.
        ring = new WindowRing(params.windowRequestsMax);
        inFlightOutput[slot] = 0;
        rings[slot] = ring;
        ringGenerations[slot] = index.generation(slot);
      }
      ring.expire(nowMs - params.windowMs);
      const outputTokens = lengths.estimate(request);
      ring.push(nowMs, request.inputTokens - cached, cached, outputTokens);
      index.learn(slot, prefix);
      finish(request.id); // a retried request is counted once, where it went last
      if (inFlight.size >= params.inFlightMax) finish(inFlight.keys().next().value as RequestId);
      inFlight.set(request.id, { slot, generation: index.generation(slot), estOutputTokens: outputTokens });
      inFlightOutput[slot] = (inFlightOutput[slot] ?? 0) + outputTokens;
    },
    onCompleted(request: Request, _id: InstanceId, _nowMs: number, generatedTokens?: number) {
      lengths.observe(request, generatedTokens);
      finish(request.id);
    },
    onFailed(request: Request) {
      finish(request.id);
    },
  };
}

/**
 * Preble's load L_i in ms of GPU time from the window's sums [count, missed, cached, output]:
 * the prefill of the missed tokens plus the decode of the (estimated) output tokens at the
 * instance's current TPOT. The prefill model is not linear (attention grows with context) and the
 * hooks cannot price each request (they lack the view), so the window is priced at its mean request.
 */
function windowLoadMs(
  instance: InstanceView,
  perf: PerfModel,
  sums: Float64Array,
  decodeTokens: number,
): number {
  const count = sums[0] as number;
  if (count <= 0 && decodeTokens <= 0) return 0;
  const missed = sums[1] as number;
  const cached = sums[2] as number;
  const prefillMs = missed > 0 ? count * perf.prefillTimeMs(missed / count, cached / count) : 0;
  const meanContext =
    instance.running > 0
      ? (instance.kvUsage * instance.kvBlocksTotal * instance.blockSize) / instance.running
      : (missed + cached) / Math.max(1, count);
  // Each decoding request takes one step per output token: its decode time is output x TPOT, and
  // TPOT grows with the batch the instance runs now.
  const tpotMs = perf.decodeStepTimeMs(Math.max(1, instance.running), meanContext);
  return prefillMs + decodeTokens * tpotMs;
}
