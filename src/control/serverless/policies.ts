/**
 * Serverless policies: for many models sharing few GPUs, how many instances each model keeps
 * (scale to zero, keep-alive, pre-warming), on which node a start goes, and which idle instance is
 * stopped when a start finds no free GPU. Written once against what a live gateway sees: the
 * arrivals it received, its own requests in flight or held, its instances, and the start-up time
 * its checkpoint tiers give. Pure and deterministic; README.md in this folder has the rules, the
 * defaults and their sources.
 */
import { invalidArgument, unknownName } from '../../core/errors.ts';
import type { ModelId } from '../../core/ids.ts';
import { keepAliveReplicas } from '../scale-to-zero.ts';
import { type ArrivalHistory, IDLE_GAP_MIN_MS } from './forecast.ts';

/** The policies `--serverless-policy` names. */
export const SERVERLESS_POLICY_NAMES = ['keep-alive', 'serverlessllm', 'switchyard'] as const;
export type ServerlessPolicyName = (typeof SERVERLESS_POLICY_NAMES)[number];

/** Fixed keep-alive after a model's last request, ms: Knative's 60 s stable window. */
export const KEEP_ALIVE_MS_DEFAULT = 60_000;
/** Requests in flight per instance before a model asks for another (the "how many" rule). */
export const CONCURRENCY_TARGET_DEFAULT = 64;
/** Instances one model may have at most. */
export const MAX_REPLICAS_DEFAULT = 4;
/**
 * Switchyard: the least keepValue (cold requests avoided per GPU over one start-up) for which an
 * idle model is kept or pre-warmed at all, budget permitting: below it a loaded GPU is likely to
 * sit idle through a whole start-up for nothing.
 */
export const KEEP_VALUE_MIN_DEFAULT = 0.1;
/**
 * Switchyard: the least keepValue for which a stopped model is started ahead of its requests: one
 * cold request avoided per GPU over a start-up, so a pre-warm pays for the start-up it costs.
 */
export const PREWARM_VALUE_MIN_DEFAULT = 1;
/** Switchyard: gaps a model's history needs before its forecast replaces the fixed keep-alive. */
export const FORECAST_GAPS_MIN_DEFAULT = 4;
/**
 * Switchyard: a pre-warm (no request waiting) stops an idle instance only if that instance's value
 * is below this share of the pre-warmed model's, so two models of similar value do not trade GPUs
 * back and forth, each trade paying a start-up.
 */
export const PREWARM_EVICT_RATIO_DEFAULT = 0.5;

/** What the gateway knows about one model at a decision. */
export interface ServerlessModelView {
  readonly id: ModelId;
  /** GPUs one instance takes (its tp). */
  readonly gpus: number;
  /** Instances starting or ready. */
  readonly active: number;
  /** Requests held for an instance plus those in flight. */
  readonly inSystem: number;
  /** Requests held for an instance (the scale-from-zero buffer). */
  readonly held: number;
  /** How long the oldest held request has waited, ms (0 or absent when none is held). */
  readonly heldWaitedMs?: number | undefined;
  /** Time since the last arrival or end; 0 while requests are in the system. */
  readonly idleMs: number;
  /** Last arrival or end, ms (-Infinity before any): the LRU order. */
  readonly lastUsedMs: number;
  /** Start-up time of an instance started now on the model's best node (checkpoint tiers). */
  readonly startupMs: number;
  /** The model's arrivals as the gateway received them. */
  readonly arrivals: ArrivalHistory;
}

/** An idle instance that could be stopped to free its GPUs. */
export interface VictimCandidate {
  readonly instanceId: string;
  readonly node: string;
  readonly gpus: number;
  readonly model: ServerlessModelView;
}

/** Where a start goes: the least start-up (ServerlessLLM) or the first node with room. */
export type NodeChoiceRule = 'startup-aware' | 'first-fit';

/** One serverless policy (see the file comment). */
export interface ServerlessPolicy {
  readonly name: ServerlessPolicyName;
  readonly nodeChoice: NodeChoiceRule;
  /**
   * Instances each model should have now (starting or ready), in the order given. Called once per
   * decision with every model, so a policy may weigh models against each other. `sleeperGpus`:
   * GPUs the host holds for sleeping engines alone (billed, serving nothing); Switchyard counts
   * them as idle GPUs it holds, so sleep mode spends the same idle GPU time, not more.
   */
  plan(models: readonly ServerlessModelView[], nowMs: number, sleeperGpus?: number): number[];
  /**
   * Idle instances that may be stopped so `forModel` can start, the preferred first; empty: the
   * start waits for GPUs to free up.
   */
  victims(
    candidates: readonly VictimCandidate[],
    forModel: ServerlessModelView,
    nowMs: number,
  ): VictimCandidate[];
}

/** Parameters, all optional. */
export interface ServerlessParams {
  readonly keepAliveMs?: number | undefined;
  readonly concurrencyTarget?: number | undefined;
  readonly maxReplicas?: number | undefined;
  /** The host's decision interval: a forecast looks one start-up plus one interval ahead. */
  readonly intervalMs?: number | undefined;
  readonly forecastGapsMin?: number | undefined;
  readonly prewarmEvictRatio?: number | undefined;
  readonly keepValueMin?: number | undefined;
  readonly prewarmValueMin?: number | undefined;
}

interface Resolved {
  readonly keepAliveMs: number;
  readonly concurrencyTarget: number;
  readonly maxReplicas: number;
  readonly intervalMs: number;
  readonly forecastGapsMin: number;
  readonly prewarmEvictRatio: number;
  readonly keepValueMin: number;
  readonly prewarmValueMin: number;
}

/** Builds a policy by name; SY_ERR_UNKNOWN_NAME lists the valid names. */
export function createServerlessPolicy(name: string, params: ServerlessParams = {}): ServerlessPolicy {
  const p = resolve(params);
  switch (name) {
    case 'keep-alive':
      return {
        name,
        nodeChoice: 'first-fit',
        plan: (models) => models.map((m) => fixedKeepAlive(m, p)),
        // Knative's activator never stops one revision for another: a start waits for GPUs.
        victims: () => [],
      };
    case 'serverlessllm':
      return {
        name,
        nodeChoice: 'startup-aware',
        plan: (models) => models.map((m) => fixedKeepAlive(m, p)),
        victims: (candidates, forModel) => (forModel.held > 0 ? leastRecentlyUsed(candidates) : []),
      };
    case 'switchyard': {
      const budget = new IdleAccount();
      return {
        name,
        nodeChoice: 'startup-aware',
        plan: (models, nowMs, sleeperGpus = 0) => forecastPlan(models, nowMs, p, budget, sleeperGpus),
        victims: (candidates, forModel, nowMs) => cheapestVictims(candidates, forModel, nowMs, p),
      };
    }
    default:
      throw unknownName('serverless policy', name, [...SERVERLESS_POLICY_NAMES]);
  }
}

function resolve(params: ServerlessParams): Resolved {
  const r: Resolved = {
    keepAliveMs: params.keepAliveMs ?? KEEP_ALIVE_MS_DEFAULT,
    concurrencyTarget: params.concurrencyTarget ?? CONCURRENCY_TARGET_DEFAULT,
    maxReplicas: params.maxReplicas ?? MAX_REPLICAS_DEFAULT,
    intervalMs: params.intervalMs ?? 2000,
    forecastGapsMin: params.forecastGapsMin ?? FORECAST_GAPS_MIN_DEFAULT,
    prewarmEvictRatio: params.prewarmEvictRatio ?? PREWARM_EVICT_RATIO_DEFAULT,
    keepValueMin: params.keepValueMin ?? KEEP_VALUE_MIN_DEFAULT,
    prewarmValueMin: params.prewarmValueMin ?? PREWARM_VALUE_MIN_DEFAULT,
  };
  if (!(r.keepAliveMs >= 0)) throw invalidArgument('keepAliveMs', r.keepAliveMs, 'ms >= 0');
  if (!(r.concurrencyTarget > 0)) throw invalidArgument('concurrencyTarget', r.concurrencyTarget, '> 0');
  if (!Number.isInteger(r.maxReplicas) || r.maxReplicas < 1)
    throw invalidArgument('maxReplicas', r.maxReplicas, 'an integer >= 1');
  if (!(r.intervalMs > 0)) throw invalidArgument('intervalMs', r.intervalMs, 'ms > 0');
  if (!(r.keepValueMin >= 0)) throw invalidArgument('keepValueMin', r.keepValueMin, '>= 0');
  if (!(r.prewarmValueMin >= 0)) throw invalidArgument('prewarmValueMin', r.prewarmValueMin, '>= 0');
  if (!(r.prewarmEvictRatio >= 0 && r.prewarmEvictRatio <= 1))
    throw invalidArgument('prewarmEvictRatio', r.prewarmEvictRatio, 'a fraction in [0, 1]');
  return r;
}

/** Instances the requests in the system need: one per `concurrencyTarget`, at most maxReplicas. */
function demand(m: ServerlessModelView, p: Resolved): number {
  if (m.inSystem === 0) return 0;
  return Math.min(p.maxReplicas, Math.ceil(m.inSystem / p.concurrencyTarget));
}

/** Both baselines: the gateway's keep-alive rule (src/control/scale-to-zero.ts) over the demand. */
function fixedKeepAlive(m: ServerlessModelView, p: Resolved): number {
  return keepAliveReplicas({
    loopReplicas: demand(m, p),
    active: m.active,
    waiting: m.held,
    inSystem: m.inSystem,
    idleMs: m.idleMs,
    keepAliveMs: p.keepAliveMs,
  }).replicas;
}

/**
 * The chance of a request before an instance started now could serve it: the forecast's answer for
 * one start-up plus one decision interval ahead.
 */
export function loadChance(m: ServerlessModelView, nowMs: number, intervalMs: number): number {
  return m.arrivals.chanceWithin(nowMs, m.startupMs + intervalMs);
}

/**
 * Requests one cold start of `m` makes wait: the first, and those arriving at the model's busy pace
 * during its start-up.
 */
export function coldRequestsPerStart(m: ServerlessModelView): number {
  return 1 + m.arrivals.burstRate() * m.startupMs;
}

/** Gaps of its own pace (median gap) an idle model is still taken to be within a burst. */
export const BURST_PAUSE_GAPS = 3;

/**
 * Whether an idle model is only pausing within a burst: idle for less than IDLE_GAP_MIN_MS or
 * BURST_PAUSE_GAPS of its median gap, whichever is longer, and never past the keep-alive (a model
 * asked once an hour is not "in a burst" for three hours).
 */
export function pausedInBurst(m: ServerlessModelView, keepAliveMs: number): boolean {
  const rate = m.arrivals.burstRate();
  const pauseMs = Math.max(IDLE_GAP_MIN_MS, rate > 0 ? BURST_PAUSE_GAPS / rate : 0);
  return m.idleMs < Math.min(keepAliveMs, pauseMs);
}

/**
 * What keeping one instance of `m` loaded over the next start-up is worth, in cold requests avoided
 * per GPU: the chance of a request before a restart could finish (popularity) times the requests a
 * cold start makes wait (which grows with the load time), over the GPUs it holds.
 */
export function keepValue(m: ServerlessModelView, nowMs: number, intervalMs: number): number {
  return (loadChance(m, nowMs, intervalMs) * coldRequestsPerStart(m)) / m.gpus;
}

/**
 * Switchyard's idle-GPU account, in GPU-ms: credited with the idle GPUs the fixed keep-alive would
 * hold (every model with no request in the system and one within the keep-alive), debited with the idle GPUs Switchyard holds, both over the time since
 * the last decision. Spending it keeps Switchyard's idle GPU time level with the fixed keep-alive's,
 * so the comparison is at equal GPU-seconds; it is bounded to one keep-alive's worth of every GPU
 * either way, so an old surplus or debt does not decide the present.
 */
class IdleAccount {
  private creditGpuMs = 0;
  private lastMs: number | undefined;
  private heldIdleGpus = 0;

  /** The idle GPUs Switchyard may hold from now to the next decision. */
  allowance(models: readonly ServerlessModelView[], nowMs: number, keepAliveMs: number): number {
    let fixedIdle = 0;
    let totalGpus = 0;
    for (const m of models) {
      totalGpus += m.gpus;
      if (m.inSystem === 0 && m.idleMs < keepAliveMs) fixedIdle += m.gpus;
    }
    const dt = this.lastMs === undefined ? 0 : nowMs - this.lastMs;
    const boundGpuMs = Math.max(1, keepAliveMs) * totalGpus;
    this.creditGpuMs += dt * (fixedIdle - this.heldIdleGpus);
    this.creditGpuMs = Math.max(-boundGpuMs, Math.min(boundGpuMs, this.creditGpuMs));
    this.lastMs = nowMs;
    return fixedIdle + this.creditGpuMs / Math.max(1, keepAliveMs);
  }

  /** The idle GPUs the plan holds until the next decision. */
  holding(gpus: number): void {
    this.heldIdleGpus = gpus;
  }
}

/**
 * Switchyard's plan. Models with requests get what the requests need, and so do models pausing
 * within a burst. The idle GPUs the fixed keep-alive would hold (the account's allowance) go first to the loaded idle models worth the most
 * (keepValue at least keepValueMin), then, if some budget is left, to stopped models worth at least
 * prewarmValueMin (pre-warming). A loaded model goes before a stopped one whatever their values, so
 * a pre-warm never displaces a loaded model (each swap would pay a start-up). A model with too
 * little history to forecast keeps the fixed keep-alive, out of the same budget.
 */
function forecastPlan(
  models: readonly ServerlessModelView[],
  nowMs: number,
  p: Resolved,
  budget: IdleAccount,
  sleeperGpus: number,
): number[] {
  const allowance = budget.allowance(models, nowMs, p.keepAliveMs);
  let left = allowance - sleeperGpus;
  const out = models.map(() => 0);
  const ranked: { i: number; value: number; loaded: boolean }[] = [];
  for (const [i, m] of models.entries()) {
    if (m.inSystem > 0) {
      out[i] = Math.max(1, demand(m, p));
    } else if (m.arrivals.count < p.forecastGapsMin) {
      out[i] = fixedKeepAlive(m, p);
      left -= out[i] * m.gpus;
    } else {
      const value = keepValue(m, nowMs, p.intervalMs);
      const loaded = m.active > 0;
      if (loaded && pausedInBurst(m, p.keepAliveMs) && value >= p.keepValueMin) {
        // A pause within a burst: kept first, whatever the account says (it is still debited).
        out[i] = 1;
        left -= m.gpus;
      } else if (value >= (loaded ? p.keepValueMin : p.prewarmValueMin)) {
        ranked.push({ i, value, loaded });
      }
    }
  }
  ranked.sort((a, b) => Number(b.loaded) - Number(a.loaded) || b.value - a.value || a.i - b.i);
  // While any allowance is left a model is taken whole: the account carries the overdraft (at most
  // one instance's GPUs for one decision) and repays it from later credit.
  for (const { i } of ranked) {
    if (left <= 0) break;
    out[i] = 1;
    left -= (models[i] as ServerlessModelView).gpus;
  }
  budget.holding(allowance - left);
  return out;
}

/** ServerlessLLM's victims: idle instances, least recently used first (ties by instance id). */
function leastRecentlyUsed(candidates: readonly VictimCandidate[]): VictimCandidate[] {
  return [...candidates].sort(
    (a, b) => a.model.lastUsedMs - b.model.lastUsedMs || compareStrings(a.instanceId, b.instanceId),
  );
}

/**
 * Switchyard's victims: instances idle for an idle period (not a pause within a burst), the
 * cheapest to lose first (keepValue: load time x popularity, ties by instance id), and only those
 * worth less than what the start gains: for a model with requests
 * waiting, the requests it expects over one start-up (those held and those coming at its busy pace)
 * per GPU; for a pre-warm, prewarmEvictRatio of its own keepValue.
 */
function cheapestVictims(
  candidates: readonly VictimCandidate[],
  forModel: ServerlessModelView,
  nowMs: number,
  p: Resolved,
): VictimCandidate[] {
  // An instance paused within a burst is as good as busy: stopping it only moves the cold start.
  const valued = candidates
    .filter((c) => !pausedInBurst(c.model, p.keepAliveMs))
    .map((c) => ({ c, value: keepValue(c.model, nowMs, p.intervalMs) }));
  const gain =
    forModel.held > 0
      ? (forModel.held + forModel.arrivals.burstRate() * forModel.startupMs) / forModel.gpus
      : keepValue(forModel, nowMs, p.intervalMs) * p.prewarmEvictRatio;
  return valued
    .filter((v) => v.value < gain)
    .sort((a, b) => a.value - b.value || compareStrings(a.c.instanceId, b.c.instanceId))
    .map((v) => v.c);
}

function compareStrings(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
