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
import type { ArrivalHistory } from './forecast.ts';

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
 * Switchyard: the chance of a request before a cold start could finish above which a model is
 * worth keeping (or making) loaded. 1/2 is the break-even when a cold start's cost is counted twice
 * its start-up time (the GPUs billed while loading, and as much again for the requests waiting).
 */
export const LOAD_CHANCE_MIN_DEFAULT = 0.5;
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
  /** Instances the model should have now (starting or ready). */
  replicas(model: ServerlessModelView, nowMs: number): number;
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
  readonly loadChanceMin?: number | undefined;
  readonly forecastGapsMin?: number | undefined;
  readonly prewarmEvictRatio?: number | undefined;
}

interface Resolved {
  readonly keepAliveMs: number;
  readonly concurrencyTarget: number;
  readonly maxReplicas: number;
  readonly intervalMs: number;
  readonly loadChanceMin: number;
  readonly forecastGapsMin: number;
  readonly prewarmEvictRatio: number;
}

/** Builds a policy by name; SY_ERR_UNKNOWN_NAME lists the valid names. */
export function createServerlessPolicy(name: string, params: ServerlessParams = {}): ServerlessPolicy {
  const p = resolve(params);
  switch (name) {
    case 'keep-alive':
      return {
        name,
        nodeChoice: 'first-fit',
        replicas: (m) => fixedKeepAlive(m, p),
        // Knative's activator never stops one revision for another: a start waits for GPUs.
        victims: () => [],
      };
    case 'serverlessllm':
      return {
        name,
        nodeChoice: 'startup-aware',
        replicas: (m) => fixedKeepAlive(m, p),
        victims: (candidates, forModel) => (forModel.held > 0 ? leastRecentlyUsed(candidates) : []),
      };
    case 'switchyard':
      return {
        name,
        nodeChoice: 'startup-aware',
        replicas: (m, nowMs) => forecastReplicas(m, nowMs, p),
        victims: (candidates, forModel, nowMs) => cheapestVictims(candidates, forModel, nowMs, p),
      };
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
    loadChanceMin: params.loadChanceMin ?? LOAD_CHANCE_MIN_DEFAULT,
    forecastGapsMin: params.forecastGapsMin ?? FORECAST_GAPS_MIN_DEFAULT,
    prewarmEvictRatio: params.prewarmEvictRatio ?? PREWARM_EVICT_RATIO_DEFAULT,
  };
  if (!(r.keepAliveMs >= 0)) throw invalidArgument('keepAliveMs', r.keepAliveMs, 'ms >= 0');
  if (!(r.concurrencyTarget > 0)) throw invalidArgument('concurrencyTarget', r.concurrencyTarget, '> 0');
  if (!Number.isInteger(r.maxReplicas) || r.maxReplicas < 1)
    throw invalidArgument('maxReplicas', r.maxReplicas, 'an integer >= 1');
  if (!(r.intervalMs > 0)) throw invalidArgument('intervalMs', r.intervalMs, 'ms > 0');
  if (!(r.loadChanceMin > 0 && r.loadChanceMin <= 1))
    throw invalidArgument('loadChanceMin', r.loadChanceMin, 'a fraction in (0, 1]');
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
 * Switchyard's count: the demand while requests are in the system; otherwise one instance when a
 * request is likely (>= loadChanceMin) before a cold start could finish — kept loaded if it is,
 * started ahead (pre-warmed) if it is not — and none when unlikely. With too little history to
 * forecast, the fixed keep-alive.
 */
function forecastReplicas(m: ServerlessModelView, nowMs: number, p: Resolved): number {
  if (m.inSystem > 0) return Math.max(1, demand(m, p));
  if (m.arrivals.count < p.forecastGapsMin) return fixedKeepAlive(m, p);
  return loadChance(m, nowMs, p.intervalMs) >= p.loadChanceMin ? 1 : 0;
}

/** ServerlessLLM's victims: idle instances, least recently used first (ties by instance id). */
function leastRecentlyUsed(candidates: readonly VictimCandidate[]): VictimCandidate[] {
  return [...candidates].sort(
    (a, b) => a.model.lastUsedMs - b.model.lastUsedMs || compareStrings(a.instanceId, b.instanceId),
  );
}

/**
 * What keeping an instance of `m` loaded is worth: the chance of a request before a restart could
 * finish times the restart's time (load time x popularity), per GPU it holds.
 */
export function keepValue(m: ServerlessModelView, nowMs: number, intervalMs: number): number {
  return (loadChance(m, nowMs, intervalMs) * m.startupMs) / m.gpus;
}

/**
 * Switchyard's victims: the cheapest to lose first (keepValue, ties by instance id). A start with
 * requests waiting may stop any idle instance; a pre-warm only those worth less than
 * prewarmEvictRatio of the model it warms.
 */
function cheapestVictims(
  candidates: readonly VictimCandidate[],
  forModel: ServerlessModelView,
  nowMs: number,
  p: Resolved,
): VictimCandidate[] {
  const valued = candidates.map((c) => ({ c, value: keepValue(c.model, nowMs, p.intervalMs) }));
  const limit =
    forModel.held > 0
      ? Number.POSITIVE_INFINITY
      : keepValue(forModel, nowMs, p.intervalMs) * p.prewarmEvictRatio;
  return valued
    .filter((v) => v.value < limit)
    .sort((a, b) => a.value - b.value || compareStrings(a.c.instanceId, b.c.instanceId))
    .map((v) => v.c);
}

function compareStrings(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
