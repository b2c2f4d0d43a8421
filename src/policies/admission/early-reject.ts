/**
 * Early rejection as an admission step of its own, in front of any routing policy. Before the
 * policy places a request, the step predicts the request's TTFT and TPOT on every eligible instance
 * and refuses it (SY_ERR_SLO_UNREACHABLE, with a Retry-After) when even the best placement is
 * predicted to miss: serving it would only take capacity from requests that can still make their SLO,
 * and a refused request counts as a miss anyway. Otherwise the wrapped policy decides as it would
 * alone. Wrapping every policy of a comparison in the same step holds admission equal, so what
 * remains between them is placement.
 *
 * Two predictors:
 * - `goodput` (default): the `goodput` policy's own prediction and refusal rule, run as a judge with
 *   its own accounting, fed by the same hooks: queued prefill priced per token and attention pair,
 *   prefill interference on decodes, the stall a prefill puts on fragile decodes (harm), KV headroom,
 *   and the TTFT slack. It is goodput's early rejection factored out, so `goodput` with
 *   `rejectEarly: false` behind this step refuses exactly as `goodput` alone would.
 * - `optimistic`: refuses only the hopeless, where no instance can meet both budgets even by the
 *   simplest account: TTFT(i) = pending prefill tokens × msPerToken + prefill(prompt after i's
 *   cached prefix); TPOT(i) = decodeStep(decoding on i + 1, their mean context with this one).
 *
 * Both use only what a live gateway has: the host's own accounting, a prefix index learnt from the
 * step's own routings, output lengths estimated from completions (OutputLengthEstimator, never the
 * true length), and the perf model through PolicyContext.
 */
import { z } from 'zod';
import { reject } from '../../core/decision.ts';
import { SwitchyardError } from '../../core/errors.ts';
import type { InstanceId, RequestId } from '../../core/ids.ts';
import type { KvEvent } from '../../core/kv-events.ts';
import type { Request } from '../../core/request.ts';
import { Rng } from '../../core/rng.ts';
import type { InstanceView } from '../../core/view.ts';
import type { PerfModel } from '../../model/types.ts';
import { OutputLengthEstimator } from '../estimation/output-length.ts';
import { isEligible } from '../routing/eligible.ts';
import { createGoodput, goodputParams } from '../routing/goodput/goodput.ts';
import { PrefixCacheIndex } from '../routing/prefix-cache-index.ts';
import type { PolicyContext, RoutingPolicy } from '../routing/types.ts';

/** Parameters of the early-rejection step; every key has a default. */
export const earlyRejectParams = z.strictObject({
  /** Which prediction decides: goodput's (default) or the optimistic one (see the module comment). */
  predictor: z.enum(['goodput', 'optimistic']).default('goodput'),
  /**
   * Parameters of the goodput judge (goodput's own keys: ttftSlack, harmMax, kvHeadroom, …); its
   * SLO defaults follow ttftSloMs and tpotSloMs below.
   */
  goodput: z.record(z.string(), z.unknown()).default({}),
  /** TTFT SLO for requests that carry none. */
  ttftSloMs: z.number().positive().default(2000),
  /** TPOT SLO for requests that carry none. */
  tpotSloMs: z.number().positive().default(100),
  /** Optimistic predictor: refuse while the best TTFT exceeds ttftSlack × SLO (above 1 tolerates error). */
  ttftSlack: z.number().positive().default(1),
  /** Optimistic predictor: refuse while the best TPOT exceeds tpotSlack × SLO. */
  tpotSlack: z.number().positive().default(1),
  /** Prefill tokens an engine step computes (vLLM max_num_batched_tokens): the queue's pricing chunk. */
  chunkTokens: z.number().int().positive().default(8192),
  /** Requests tracked between routing and completion; past it the oldest is forgotten. */
  requestsTrackedMax: z.number().int().positive().default(100_000),
  /** Upper bound on the Retry-After hint of a rejection. */
  retryAfterMaxMs: z.number().positive().default(60_000),
});
/** Validated early-rejection parameters. */
export type EarlyRejectParams = z.infer<typeof earlyRejectParams>;
/** Early-rejection parameters as written (every key optional). */
export type EarlyRejectParamsInput = z.input<typeof earlyRejectParams>;

/** A routed request's share of its instance's decode accounting. */
interface Tracked {
  readonly instanceId: InstanceId;
  readonly contextTokens: number;
  decoding: boolean;
}

/** Per instance: the decoding batch the step knows of. */
interface Decoding {
  seqs: number;
  contextTokens: number;
}

/** Memo of a perf model's linear prefill price. */
interface PerfPrice {
  readonly perf: PerfModel;
  readonly msPerToken: number;
}

/** Perf models remembered; past it the memo starts over. */
const PRICE_MEMO_MAX = 1024;

/**
 * `policy` behind the early-rejection step: same name, same hooks (the step listens too), refusals
 * added in front of its decisions.
 */
export function withEarlyReject(
  policy: RoutingPolicy,
  params: EarlyRejectParamsInput,
  context: PolicyContext,
): RoutingPolicy {
  const parsed = earlyRejectParams.safeParse(params);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((i) => `${i.path.join('.') || '(params)'}: ${i.message}`);
    throw new SwitchyardError('SY_ERR_INVALID_CONFIG', `earlyReject: ${problems.join('; ')}`, {
      param: 'earlyReject',
      problems,
    });
  }
  const p = parsed.data;
  if (p.predictor === 'goodput') return behindJudge(policy, p, context);
  const index = new PrefixCacheIndex();
  const lengths = new OutputLengthEstimator();
  const tracked = new Map<RequestId, Tracked>();
  const decoding = new Map<InstanceId, Decoding>();
  const prices: PerfPrice[] = [];

  const priceOf = (perf: PerfModel): PerfPrice => {
    for (const x of prices) if (x.perf === perf) return x;
    if (prices.length >= PRICE_MEMO_MAX) prices.length = 0;
    const x = { perf, msPerToken: perf.prefillTimeMs(p.chunkTokens) / p.chunkTokens };
    prices.push(x);
    return x;
  };

  const forget = (id: RequestId): void => {
    const t = tracked.get(id);
    if (t === undefined) return;
    tracked.delete(id);
    if (!t.decoding) return;
    const d = decoding.get(t.instanceId);
    if (d === undefined) return;
    d.seqs -= 1;
    d.contextTokens -= t.contextTokens;
    if (d.seqs <= 0) decoding.delete(t.instanceId);
  };

  /** Predicted TTFT and TPOT of `request` on `instance`, as SLO ratios: the larger of the two. */
  const ratioOn = (instance: InstanceView, request: Request, outTokens: number, budgets: Budgets): Miss => {
    const perf = context.perfModel(instance);
    const slot = index.slotOf(instance.id);
    const cached = Math.min(
      Math.max(0, request.inputTokens - 1),
      index.matchedBlocks(slot) * request.prefix.blockTokens,
    );
    const ttftMs =
      instance.pendingPrefillTokens * priceOf(perf).msPerToken +
      perf.prefillTimeMs(request.inputTokens - cached, cached);
    const d = decoding.get(instance.id);
    const seqs = (d?.seqs ?? 0) + 1;
    const contextTokens = (d?.contextTokens ?? 0) + request.inputTokens + outTokens / 2;
    const tpotMs = perf.decodeStepTimeMs(seqs, contextTokens / seqs);
    return { ttftMs, tpotMs, ratio: Math.max(ttftMs / budgets.ttftMs, tpotMs / budgets.tpotMs) };
  };

  return {
    name: policy.name,
    decide(view, request, rng) {
      index.observe(view);
      index.match(request.prefix.hashes);
      const budgets: Budgets = {
        ttftMs: (request.slo?.ttftMs ?? p.ttftSloMs) * p.ttftSlack,
        tpotMs: (request.slo?.tpotMs ?? p.tpotSloMs) * p.tpotSlack,
      };
      const outTokens = lengths.estimate(request);
      let best: Miss | undefined;
      let bestId = '';
      for (const instance of view.instances) {
        if (!isEligible(instance, request.model)) continue;
        const m = ratioOn(instance, request, outTokens, budgets);
        if (m.ratio <= 1) return policy.decide(view, request, rng);
        if (best === undefined || m.ratio < best.ratio) {
          best = m;
          bestId = instance.id;
        }
      }
      // No eligible instance at all is the policy's own verdict (SY_ERR_NO_INSTANCE), not a miss.
      if (best === undefined) return policy.decide(view, request, rng);
      const retryMs = Math.min(p.retryAfterMaxMs, Math.max(1, Math.ceil(best.ttftMs - budgets.ttftMs)));
      return reject(
        'SY_ERR_SLO_UNREACHABLE',
        `no instance is predicted to meet the SLO: at best (instance ${bestId}) TTFT ${best.ttftMs.toFixed(0)} ms ` +
          `against ${budgets.ttftMs.toFixed(0)}, TPOT ${best.tpotMs.toFixed(1)} ms against ${budgets.tpotMs.toFixed(1)}`,
        retryMs,
      );
    },
    onRouted(request, instanceId, nowMs) {
      forget(request.id);
      const slot = index.register(instanceId);
      index.learn(slot, request.prefix);
      const outTokens = lengths.estimate(request);
      tracked.set(request.id, {
        instanceId,
        contextTokens: request.inputTokens + outTokens / 2,
        decoding: false,
      });
      if (tracked.size > p.requestsTrackedMax) forget(tracked.keys().next().value as RequestId);
      policy.onRouted?.(request, instanceId, nowMs);
    },
    onFirstToken(request, instanceId, nowMs) {
      const t = tracked.get(request.id);
      if (t !== undefined && !t.decoding) {
        t.decoding = true;
        const d = decoding.get(t.instanceId) ?? { seqs: 0, contextTokens: 0 };
        d.seqs += 1;
        d.contextTokens += t.contextTokens;
        decoding.set(t.instanceId, d);
      }
      policy.onFirstToken?.(request, instanceId, nowMs);
    },
    onCompleted(request, instanceId, nowMs, generatedTokens) {
      lengths.observe(request, generatedTokens);
      forget(request.id);
      policy.onCompleted?.(request, instanceId, nowMs, generatedTokens);
    },
    onFailed(request, instanceId, nowMs) {
      forget(request.id);
      policy.onFailed?.(request, instanceId, nowMs);
    },
    ...(policy.onKvEvent !== undefined
      ? { onKvEvent: (id: InstanceId, event: KvEvent, nowMs: number) => policy.onKvEvent?.(id, event, nowMs) }
      : {}),
  };
}

/** The TTFT and TPOT budgets of one request. */
interface Budgets {
  readonly ttftMs: number;
  readonly tpotMs: number;
}

/** One instance's prediction. */
interface Miss {
  readonly ttftMs: number;
  readonly tpotMs: number;
  readonly ratio: number;
}

/** Seed of the goodput judge's own tie-breaking stream: its verdicts never draw from the host's Rng. */
const JUDGE_SEED = 0x6a756467;

/** `policy` behind a goodput judge: the judge refuses, the policy places, both hear every hook. */
function behindJudge(policy: RoutingPolicy, p: EarlyRejectParams, context: PolicyContext): RoutingPolicy {
  const params = goodputParams.safeParse({
    ttftSloMs: p.ttftSloMs,
    tpotSloMs: p.tpotSloMs,
    ...p.goodput,
    rejectEarly: true,
  });
  if (!params.success) {
    const problems = params.error.issues.map((i) => `${i.path.join('.') || '(params)'}: ${i.message}`);
    throw new SwitchyardError('SY_ERR_INVALID_CONFIG', `earlyReject.goodput: ${problems.join('; ')}`, {
      param: 'earlyReject.goodput',
      problems,
    });
  }
  const judge = createGoodput(params.data, context);
  const judgeRng = new Rng(JUDGE_SEED);
  return {
    name: policy.name,
    decide(view, request, rng) {
      const verdict = judge.decide(view, request, judgeRng);
      return verdict.kind === 'reject' ? verdict : policy.decide(view, request, rng);
    },
    onRouted(request, instanceId, nowMs) {
      judge.onRouted?.(request, instanceId, nowMs);
      policy.onRouted?.(request, instanceId, nowMs);
    },
    onFirstToken(request, instanceId, nowMs) {
      judge.onFirstToken?.(request, instanceId, nowMs);
      policy.onFirstToken?.(request, instanceId, nowMs);
    },
    onCompleted(request, instanceId, nowMs, generatedTokens) {
      judge.onCompleted?.(request, instanceId, nowMs, generatedTokens);
      policy.onCompleted?.(request, instanceId, nowMs, generatedTokens);
    },
    onFailed(request, instanceId, nowMs) {
      judge.onFailed?.(request, instanceId, nowMs);
      policy.onFailed?.(request, instanceId, nowMs);
    },
    ...(policy.onKvEvent !== undefined
      ? { onKvEvent: (id: InstanceId, event: KvEvent, nowMs: number) => policy.onKvEvent?.(id, event, nowMs) }
      : {}),
  };
}
