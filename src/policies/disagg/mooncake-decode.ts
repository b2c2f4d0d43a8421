/**
 * The decode side of Mooncake's pair selection: the decode instance with the least estimated TPOT,
 * refusing the request when none meets the TPOT SLO (Mooncake's TBT check). The prefill side is the
 * `mooncake` routing policy (src/policies/routing/mooncake/).
 */
import { type RoutingDecision, reject, routeTo } from '../../core/decision.ts';
import type { Request } from '../../core/request.ts';
import type { InstanceView } from '../../core/view.ts';
import { OutputLengthEstimator } from '../estimation/output-length.ts';
import { eligibleInto, noEligibleInstance } from '../routing/eligible.ts';
import type { MooncakeParams } from '../routing/mooncake/mooncake.ts';
import type { PolicyContext, RoutingPolicy } from '../routing/types.ts';

/** What the decode side reads of the `mooncake` parameters. */
export type MooncakeDecodeParams = Pick<
  MooncakeParams,
  'rejectEarly' | 'tpotSloMs' | 'sloSlack' | 'retryAfterMaxMs'
>;

/**
 * For each eligible decode instance:
 *   sequences = max(inFlight, running)        (host accounting is fresh; running is as scraped)
 *   inbound   = (sequences - running) x mean prompt   (sent here, not in the scraped batch yet)
 *   context   = (kvUsage x kvBlocksTotal x blockSize + inbound + prompt + output / 2) / (sequences + 1)
 *   TPOT      = perf.decodeStepTimeMs(sequences + 1, context)
 * Route to the least TPOT (ties at random, seeded). With `rejectEarly`, refuse with
 * SY_ERR_SLO_UNREACHABLE when even the least exceeds the request's TPOT SLO (or `tpotSloMs`) times
 * `sloSlack`; Retry-After is that TPOT times the request's estimated output (a batch turns over on
 * that scale). `output` and the mean prompt are learnt from completions, never the request's true
 * length. The inbound term matters when the pick is made at arrival (`decodeAt: 'arrival'`): about
 * one TTFT's worth of requests are then assigned but still prefilling, counted in `inFlight` while
 * their KV is not yet in `kvUsage`; left out, it diluted the context and the estimate undershot.
 */
export function createMooncakeDecode(params: MooncakeDecodeParams, context: PolicyContext): RoutingPolicy {
  const lengths = new OutputLengthEstimator();
  const prompts = new PromptMean();
  const candidates: InstanceView[] = [];
  return {
    name: 'mooncake-decode',
    decide(view, request, rng) {
      eligibleInto(view.instances, request.model, candidates);
      if (candidates.length === 0) return noEligibleInstance(request.model);
      const outputTokens = lengths.estimate(request);
      let best: InstanceView | undefined;
      let bestTpotMs = Number.POSITIVE_INFINITY;
      let ties = 0;
      for (const instance of candidates) {
        const t = tpotMs(instance, request.inputTokens, outputTokens);
        if (t < bestTpotMs) {
          best = instance;
          bestTpotMs = t;
          ties = 1;
        } else if (t === bestTpotMs && rng.int(++ties) === 0) {
          best = instance;
        }
      }
      const chosen = best as InstanceView;
      if (!params.rejectEarly) return routeTo(chosen.id);
      return admit(request, chosen, bestTpotMs, outputTokens);
    },
    onCompleted(request, _instanceId, _nowMs, generatedTokens) {
      lengths.observe(request, generatedTokens);
      prompts.observe(request.inputTokens);
    },
  };

  function admit(
    request: Request,
    chosen: InstanceView,
    tpot: number,
    outputTokens: number,
  ): RoutingDecision {
    const budgetMs = (request.slo?.tpotMs ?? params.tpotSloMs) * params.sloSlack;
    if (tpot <= budgetMs) return routeTo(chosen.id);
    return reject(
      'SY_ERR_SLO_UNREACHABLE',
      `decode pool: estimated TPOT ${tpot.toFixed(1)} ms at best (instance ${chosen.id}) exceeds the ` +
        `TPOT budget ${budgetMs.toFixed(1)} ms`,
      Math.min(params.retryAfterMaxMs, Math.max(1, Math.ceil(tpot * outputTokens))),
    );
  }

  /** One decode step of the instance's sequences plus this one. */
  function tpotMs(instance: InstanceView, promptTokens: number, outputTokens: number): number {
    const sequences = Math.max(instance.inFlight, instance.running);
    const kvTokens = instance.kvUsage * instance.kvBlocksTotal * instance.blockSize;
    // Requests sent here but not in the scraped batch (picked at arrival and still prefilling, or on
    // the way) join it with their prompts, which the scraped KV does not hold yet.
    const inboundTokens = (sequences - instance.running) * prompts.mean(promptTokens);
    const meanContext = (kvTokens + inboundTokens + promptTokens + outputTokens / 2) / (sequences + 1);
    return context.perfModel(instance).decodeStepTimeMs(sequences + 1, meanContext);
  }
}

/**
 * The mean prompt length of the requests the decode pool finished: what an inbound request (sent,
 * not yet in the batch) is expected to bring. An exponential mean, so it follows a drifting workload
 * in constant memory; before any completion, the request being judged stands in.
 */
class PromptMean {
  /** Weight of each new completion (about the last 100 count). */
  private static readonly ALPHA = 0.01;
  private meanTokens: number | undefined;

  observe(promptTokens: number): void {
    this.meanTokens =
      this.meanTokens === undefined
        ? promptTokens
        : this.meanTokens + PromptMean.ALPHA * (promptTokens - this.meanTokens);
  }

  mean(fallbackTokens: number): number {
    return this.meanTokens ?? fallbackTokens;
  }
}
