import { z } from 'zod';
import { routeTo } from '../../../core/decision.ts';
import type { InstanceId } from '../../../core/ids.ts';
import type { Request } from '../../../core/request.ts';
import type { InstanceView } from '../../../core/view.ts';
import type { PerfModel } from '../../../model/types.ts';
import { OutputLengthEstimator } from '../../estimation/output-length.ts';
import { eligibleInto, noEligibleInstance } from '../eligible.ts';
import { PrefixCacheIndex } from '../prefix-cache-index.ts';
import type { PolicyContext, RoutingPolicy } from '../types.ts';

/** Parameters of `preble`; every key has a default. */
export const prebleParams = z.strictObject({
  /**
   * Exploit when the longest cached prefix covers more than this share of the prompt. At 0.5 this
   * is Preble's rule: exploit when the cached tokens outnumber the missed ones.
   */
  exploreThreshold: z.number().min(0).max(1).default(0.5),
  /** The recent history an instance's load is summed over. */
  windowMs: z.number().positive().default(180_000),
  /** Routed requests remembered per instance within the window; past it the oldest is dropped. */
  windowRequestsMax: z.number().int().positive().default(4096),
  /** Prefix tokens the approximate index remembers per instance (see kv-cost). */
  indexCapacityTokens: z.number().int().positive().default(450_000),
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

/**
 * Preble's E2 rule (ICLR'25). Let `matched_i` be the prompt tokens instance i holds (approximate
 * index). If max_i matched_i > exploreThreshold x prompt tokens, exploit: route to an instance with
 * that longest match, the least loaded among them. Otherwise explore: route to
 *   argmin_i load_i + prefill_i(prompt - matched_i, matched_i)
 * where load_i is Preble's windowed compute estimate: over the last `windowMs`, the predicted prefill
 * time of each routed request's missed tokens plus its decode time on instance i.
 */
export function createPreble(params: PrebleParams, context: PolicyContext): RoutingPolicy {
  const index = new PrefixCacheIndex({ capacity: { tokens: params.indexCapacityTokens } });
  const lengths = new OutputLengthEstimator(); // learnt from completions: never the true length
  const rings: WindowRing[] = [];
  const ringGenerations: number[] = [];
  const candidates: InstanceView[] = [];
  const sums = new Float64Array(4);
  let matchedOf = new Float64Array(64);

  /** Windowed load of an instance in ms of GPU time. */
  const loadMs = (instance: InstanceView, perf: PerfModel, nowMs: number): number => {
    const slot = index.slotOf(instance.id);
    const ring = slot === undefined ? undefined : rings[slot];
    if (ring === undefined || ringGenerations[slot as number] !== index.generation(slot as number)) return 0;
    ring.peek(nowMs - params.windowMs, sums);
    const count = sums[0] as number;
    if (count <= 0) return 0;
    const missed = sums[1] as number;
    const cached = sums[2] as number;
    // The prefill model is not linear (attention grows with context), so the sum is evaluated at the
    // window's mean request; the hooks cannot price each request on its own (they lack the view).
    const prefillMs = missed > 0 ? count * perf.prefillTimeMs(missed / count, cached / count) : 0;
    // A decoding request owns 1/batch of each step it is part of.
    const batch = Math.max(1, instance.running);
    const meanContext =
      instance.running > 0
        ? (instance.kvUsage * instance.kvBlocksTotal * instance.blockSize) / instance.running
        : (missed + cached) / count;
    const decodeMs = ((sums[3] as number) * perf.decodeStepTimeMs(batch, meanContext)) / batch;
    return prefillMs + decodeMs;
  };

  return {
    name: 'preble',
    decide(view, request, rng) {
      eligibleInto(view.instances, request.model, candidates);
      const n = candidates.length;
      if (n === 0) return noEligibleInstance(request.model);
      if (matchedOf.length < n) matchedOf = new Float64Array(n * 2);
      const input = request.inputTokens;
      const prefix = request.prefix;
      index.match(prefix.hashes);
      let longest = 0;
      for (let i = 0; i < n; i++) {
        const slot = index.slotOf((candidates[i] as InstanceView).id);
        const matched = Math.min(input, index.matchedBlocks(slot) * prefix.blockTokens);
        matchedOf[i] = matched;
        if (matched > longest) longest = matched;
      }
      const exploit = longest > 0 && longest > params.exploreThreshold * input;
      let best = -1;
      let bestCost = Number.POSITIVE_INFINITY;
      let ties = 0;
      for (let i = 0; i < n; i++) {
        if (exploit && matchedOf[i] !== longest) continue;
        const instance = candidates[i] as InstanceView;
        const perf = context.perfModel(instance);
        let cost = loadMs(instance, perf, view.nowMs);
        if (!exploit) {
          // At least one token is computed, so a fully cached prompt still costs one step.
          const cached = Math.min(matchedOf[i] as number, Math.max(0, input - 1));
          cost += perf.prefillTimeMs(input - cached, cached);
        }
        if (cost < bestCost) {
          best = i;
          bestCost = cost;
          ties = 1;
        } else if (cost === bestCost && rng.int(++ties) === 0) {
          best = i;
        }
      }
      return routeTo((candidates[best] as InstanceView).id);
    },
    onRouted(request: Request, instanceId: InstanceId, nowMs: number) {
      const slot = index.register(instanceId);
      const prefix = request.prefix;
      const cached = Math.min(
        request.inputTokens,
        index.longestMatch(slot, prefix.hashes) * prefix.blockTokens,
      );
      let ring = rings[slot];
      if (ring === undefined || ringGenerations[slot] !== index.generation(slot)) {
        // A new slot, or one recycled from an instance gone from the fleet: an empty window.
        ring = new WindowRing(params.windowRequestsMax);
        rings[slot] = ring;
        ringGenerations[slot] = index.generation(slot);
      }
      ring.expire(nowMs - params.windowMs);
      ring.push(nowMs, request.inputTokens - cached, cached, lengths.estimate(request));
      index.learn(slot, prefix);
    },
    onCompleted(request: Request, _id: InstanceId, _nowMs: number, generatedTokens?: number) {
      lengths.observe(request, generatedTokens);
    },
  };
}
