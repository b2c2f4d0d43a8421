import { z } from 'zod';
import { type RoutingDecision, reject, routeTo } from '../../../core/decision.ts';
import type { InstanceId } from '../../../core/ids.ts';
import type { Request } from '../../../core/request.ts';
import type { Rng } from '../../../core/rng.ts';
import { MS_PER_S } from '../../../core/units.ts';
import type { InstanceView } from '../../../core/view.ts';
import { KV_LINK_NAMES, type KvLink, kvLink, kvTransfer } from '../../../model/kv-link.ts';
import type { PerfModel } from '../../../model/types.ts';
import { OutputLengthEstimator } from '../../estimation/output-length.ts';
import { eligibleInto, noEligibleInstance } from '../eligible.ts';
import { PrefixCacheIndex } from '../prefix-cache-index.ts';
import type { PolicyContext, RoutingPolicy } from '../types.ts';

/** Parameters of `mooncake`; every key has a default. */
export const mooncakeParams = z.strictObject({
  /** The link a remote prefix is fetched over (src/model/kv-link.ts). */
  link: z.enum(KV_LINK_NAMES).default('roce-200'),
  /** Reject a request whose SLOs no instance is estimated to meet (HTTP 429 live). */
  rejectEarly: z.boolean().default(true),
  /** TTFT SLO for requests that carry none. */
  ttftSloMs: z.number().positive().default(2000),
  /** TPOT SLO for requests that carry none. */
  tpotSloMs: z.number().positive().default(100),
  /** Both SLOs are multiplied by this before comparing: above 1 tolerates estimation error. */
  sloSlack: z.number().positive().default(1),
  /** Prefill tokens an engine step computes (vLLM max_num_batched_tokens): how queues are chunked. */
  chunkTokens: z.number().int().positive().default(8192),
  /** Prefix tokens the approximate index remembers per instance (see kv-cost). */
  indexCapacityTokens: z.number().int().positive().default(450_000),
  /** Upper bound on the Retry-After hint of a rejection. */
  retryAfterMaxMs: z.number().positive().default(60_000),
});
/** Validated `mooncake` parameters. */
export type MooncakeParams = z.infer<typeof mooncakeParams>;

/** Per-decision memo of the times that depend only on the perf model (usually one or two in a pool). */
interface PerfMemo {
  perf: PerfModel;
  /** Prefill of the whole prompt, nothing cached. */
  coldMs: number;
  /** Prefill of the prompt after the best remote prefix. */
  afterRemoteMs: number;
  /** One full chunk of prefill. */
  chunkMs: number;
}

/**
 * Mooncake's Conductor (FAST'25), for colocated instances. For each eligible instance estimate
 *   TTFT = queue + prefill + interference
 *   queue        = prefill time of the engine's pending prompt tokens, chunked
 *   prefill      = prefill of the prompt after the locally cached prefix, or, when a longer prefix is
 *                  held elsewhere and fetching it over `link` is cheaper than recomputing it, the
 *                  transfer of the difference plus prefill after the longer prefix
 *   interference = steps to clear queue and prompt x time to read the running batch's KV each step
 * and route to the minimum. With `rejectEarly`, a request is refused (SY_ERR_SLO_UNREACHABLE) when no
 * instance is estimated to meet both its TTFT and TPOT SLOs.
 */
export function createMooncake(params: MooncakeParams, context: PolicyContext): RoutingPolicy {
  const index = new PrefixCacheIndex({ capacity: { tokens: params.indexCapacityTokens } });
  const link: KvLink = kvLink(params.link);
  /** Output lengths learnt from completions (the TPOT estimate's context), never the true length. */
  const lengths = new OutputLengthEstimator();
  const candidates: InstanceView[] = [];
  const memos: PerfMemo[] = [];
  let ttft = new Float64Array(64);

  const memoFor = (perf: PerfModel, input: number, remote: number): PerfMemo => {
    for (const m of memos) if (m.perf === perf) return m;
    const m: PerfMemo = {
      perf,
      coldMs: perf.prefillTimeMs(input, 0),
      afterRemoteMs: remote > 0 ? perf.prefillTimeMs(input - remote, remote) : 0,
      chunkMs: perf.prefillTimeMs(params.chunkTokens, 0),
    };
    memos.push(m);
    return m;
  };

  /** Prefill time of `tokens` queued tokens of other requests, computed `chunkTokens` per step. */
  const queueMs = (perf: PerfModel, memo: PerfMemo, tokens: number): number => {
    if (tokens <= 0) return 0;
    if (tokens <= params.chunkTokens) return perf.prefillTimeMs(tokens, 0);
    return (tokens / params.chunkTokens) * memo.chunkMs;
  };

  return {
    name: 'mooncake',
    decide(view, request, rng) {
      eligibleInto(view.instances, request.model, candidates);
      const n = candidates.length;
      if (n === 0) return noEligibleInstance(request.model);
      if (ttft.length < n) ttft = new Float64Array(n * 2);
      const input = request.inputTokens;
      // At least one prompt token is always computed: the engine needs its logits.
      const cacheable = Math.max(0, input - 1);
      const prefix = request.prefix;
      index.match(prefix.hashes);
      // The longest prefix any healthy instance of the model holds: what a fetch could bring.
      let remote = 0;
      for (const instance of view.instances) {
        if (!instance.healthy || !servesModel(instance, request.model)) continue;
        remote = Math.max(remote, index.matchedBlocks(index.slotOf(instance.id)) * prefix.blockTokens);
      }
      remote = Math.min(remote, cacheable);
      memos.length = 0;
      let best = -1;
      let ties = 0;
      for (let i = 0; i < n; i++) {
        const instance = candidates[i] as InstanceView;
        const perf = context.perfModel(instance);
        const memo = memoFor(perf, input, remote);
        const cached = Math.min(
          cacheable,
          index.matchedBlocks(index.slotOf(instance.id)) * prefix.blockTokens,
        );
        let prefillMs = cached > 0 ? perf.prefillTimeMs(input - cached, cached) : memo.coldMs;
        if (remote > cached) {
          const fetchMs =
            memo.afterRemoteMs +
            kvTransfer(perf.model, remote - cached, link, { prefillTp: instance.tp, decodeTp: instance.tp })
              .transferMs;
          if (fetchMs < prefillMs) prefillMs = fetchMs;
        }
        const pending = instance.pendingPrefillTokens;
        const steps = Math.ceil((pending + input - cached) / params.chunkTokens);
        const t = queueMs(perf, memo, pending) + prefillMs + steps * kvReadMs(perf, instance);
        ttft[i] = t;
        if (best < 0 || t < (ttft[best] as number)) {
          best = i;
          ties = 1;
        } else if (t === ttft[best] && rng.int(++ties) === 0) {
          best = i;
        }
      }
      if (!params.rejectEarly) return routeTo((candidates[best] as InstanceView).id);
      return admit(request, best, rng);
    },
    onRouted(request: Request, instanceId: InstanceId) {
      const slot = index.register(instanceId);
      const prefix = request.prefix;
      index.learn(slot, prefix);
    },
    onCompleted(request: Request, _instanceId: InstanceId, _nowMs: number, generatedTokens?: number) {
      lengths.observe(request, generatedTokens);
    },
  };

  /**
   * Checks the SLOs. The TTFT-best instance usually meets the TPOT SLO too; only when it does not
   * are the others checked, taking the best TTFT among those that meet both.
   */
  function admit(request: Request, best: number, rng: Rng): RoutingDecision {
    const ttftBudgetMs = (request.slo?.ttftMs ?? params.ttftSloMs) * params.sloSlack;
    const tpotBudgetMs = (request.slo?.tpotMs ?? params.tpotSloMs) * params.sloSlack;
    const bestTtft = ttft[best] as number;
    const bestInstance = candidates[best] as InstanceView;
    if (bestTtft > ttftBudgetMs) {
      return reject(
        'SY_ERR_SLO_UNREACHABLE',
        `estimated TTFT ${bestTtft.toFixed(0)} ms at best (instance ${bestInstance.id}) exceeds the ` +
          `TTFT budget ${ttftBudgetMs.toFixed(0)} ms`,
        retryAfter(bestTtft - ttftBudgetMs),
      );
    }
    const bestTpot = tpotMs(bestInstance, request);
    if (bestTpot <= tpotBudgetMs) return routeTo(bestInstance.id);
    let chosen = -1;
    let ties = 0;
    let lowestTpot = bestTpot;
    for (let i = 0; i < candidates.length; i++) {
      const t = ttft[i] as number;
      if (i === best || t > ttftBudgetMs) continue;
      const tpot = tpotMs(candidates[i] as InstanceView, request);
      lowestTpot = Math.min(lowestTpot, tpot);
      if (tpot > tpotBudgetMs) continue;
      if (chosen < 0 || t < (ttft[chosen] as number)) {
        chosen = i;
        ties = 1;
      } else if (t === ttft[chosen] && rng.int(++ties) === 0) {
        chosen = i;
      }
    }
    if (chosen >= 0) return routeTo((candidates[chosen] as InstanceView).id);
    return reject(
      'SY_ERR_SLO_UNREACHABLE',
      `estimated TPOT ${lowestTpot.toFixed(1)} ms at best exceeds the TPOT budget ${tpotBudgetMs.toFixed(1)} ms`,
      // The batch turns over on the scale of one request's decode.
      retryAfter(lowestTpot * lengths.estimate(request)),
    );
  }

  /** TPOT if this request joined the running batch: one decode step of running + 1 sequences. */
  function tpotMs(instance: InstanceView, request: Request): number {
    const kvTokens = kvTokensInUse(instance);
    const outTokens = lengths.estimate(request);
    const meanContext = (kvTokens + request.inputTokens + outTokens / 2) / (instance.running + 1);
    return context.perfModel(instance).decodeStepTimeMs(instance.running + 1, meanContext);
  }

  function retryAfter(ms: number): number {
    return Math.min(params.retryAfterMaxMs, Math.max(1, Math.ceil(ms)));
  }
}

/** KV tokens the instance holds for its running and waiting sequences. */
function kvTokensInUse(instance: InstanceView): number {
  return instance.kvUsage * instance.kvBlocksTotal * instance.blockSize;
}

/**
 * What the running batch adds to each engine step while a prompt is prefilled: reading its KV
 * (weights are read by the prefill chunk anyway). The roofline's decode-attention memory term, from
 * the perf model's public GPU figures: bytes / (tp x HBM bandwidth x achieved fraction).
 */
function kvReadMs(perf: PerfModel, instance: InstanceView): number {
  if (instance.running <= 0) return 0;
  const bytes = kvTokensInUse(instance) * perf.kvBytesPerToken();
  const bytesPerMs =
    (perf.tp * perf.gpu.hbmBandwidthBytesPerS * perf.gpu.calibration.memoryEfficiency) / MS_PER_S;
  return bytes / bytesPerMs;
}

function servesModel(instance: InstanceView, model: string): boolean {
  return model === 'default' || instance.models.includes(model);
}
