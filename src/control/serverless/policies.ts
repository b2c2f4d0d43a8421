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
import { LONE_HOLD_MAX_MS_DEFAULT, LONE_SLEEP_MAX_MS_DEFAULT } from './sleep.ts';

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
/**
 * Switchyard (aging, against lock-out): how long a model's requests may wait held with no instance
 * of it starting or ready before it may take victims the victim rule otherwise spares (instances
 * pausing within a burst, or worth more than its start). Normally a start begins within a decision
 * or two of the first held request (a free GPU, a wake, a swap or a victim); a model still waiting
 * after 30 s is being passed over, and with the host's 120 s deadline on held requests (the twin's
 * HELD_WAIT_MS_DEFAULT) and a ~45-100 s start-up, waiting much longer means serving none of them.
 */
export const STARVED_WAIT_MS_DEFAULT = 30_000;

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
  /**
   * How long requests have been held with no break, ms: from the first request held while none was
   * (the host resets it when the buffer empties), so at least the oldest held request's wait; 0 or
   * absent when none is held.
   */
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

/** A GPU held by sleepers alone (billed, serving nothing), as the host's per-GPU ledger has it. */
export interface LoneGpuView {
  /** How long sleepers alone have held it, ms. */
  readonly aloneMs: number;
  /** Its sleepers' models, as indices into `plan`'s models (one per sleeper). */
  readonly models: readonly number[];
}

/** One decision: instances per model, and which GPUs held by sleepers alone keep their sleepers. */
export interface ServerlessPlan {
  /** Instances each model should have now (starting or ready), in the order given. */
  readonly instances: number[];
  /** Per GPU held by sleepers alone, in the order given: keep its sleepers (true) or stop them. */
  readonly keepLone: boolean[];
}

/** Where a start goes: the least start-up (ServerlessLLM) or the first node with room. */
export type NodeChoiceRule = 'startup-aware' | 'first-fit';

/** One serverless policy (see the file comment). */
export interface ServerlessPolicy {
  readonly name: ServerlessPolicyName;
  readonly nodeChoice: NodeChoiceRule;
  /**
   * Instances each model should have now (starting or ready), in the order given, and which GPUs
   * held by sleeping engines alone (`lone`, billed, serving nothing) keep their sleepers. Called
   * once per decision with every model, so a policy may weigh models against each other. A lone
   * GPU is kept for `loneHoldMinMs` whatever it is worth and never past `loneHoldMaxMs`; between,
   * the baselines stop it (they never sleep) and Switchyard keeps it while its sleepers are worth
   * the GPU time and its GPU account allows (README.md, "Sleep mode").
   */
  plan(models: readonly ServerlessModelView[], nowMs: number, lone?: readonly LoneGpuView[]): ServerlessPlan;
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
  /** A GPU held by sleepers alone is kept this long whatever its value (sleep.ts `loneSleepMaxMs`). */
  readonly loneHoldMinMs?: number | undefined;
  /** ... and stopped after this long whatever its value (sleep.ts `loneHoldMaxMs`). */
  readonly loneHoldMaxMs?: number | undefined;
  /** Held this long with no instance, a model may take instances the victim rule spares (`starved`). */
  readonly starvedWaitMs?: number | undefined;
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
  readonly loneHoldMinMs: number;
  readonly loneHoldMaxMs: number;
  readonly starvedWaitMs: number;
}

/** Builds a policy by name; SY_ERR_UNKNOWN_NAME lists the valid names. */
export function createServerlessPolicy(name: string, params: ServerlessParams = {}): ServerlessPolicy {
  const p = resolve(params);
  switch (name) {
    case 'keep-alive':
      return {
        name,
        nodeChoice: 'first-fit',
        plan: (models, _nowMs, lone = []) => ({
          instances: models.map((m) => fixedKeepAlive(m, p)),
          keepLone: lone.map((g) => g.aloneMs < p.loneHoldMinMs),
        }),
        // Knative's activator never stops one revision for another: a start waits for GPUs.
        victims: () => [],
      };
    case 'serverlessllm':
      return {
        name,
        nodeChoice: 'startup-aware',
        plan: (models, _nowMs, lone = []) => ({
          instances: models.map((m) => fixedKeepAlive(m, p)),
          keepLone: lone.map((g) => g.aloneMs < p.loneHoldMinMs),
        }),
        victims: (candidates, forModel) => (forModel.held > 0 ? leastRecentlyUsed(candidates) : []),
      };
    case 'switchyard': {
      const budget = new IdleAccount();
      const gpuBudget = new GpuAccount();
      const loaded = new LoadedSince();
      return {
        name,
        nodeChoice: 'startup-aware',
        plan: (models, nowMs, lone = []) => {
          loaded.update(models, nowMs);
          const keepLone = holdLone(models, nowMs, p, gpuBudget, lone);
          return { instances: forecastPlan(models, nowMs, p, budget, keepLone), keepLone };
        },
        victims: (candidates, forModel, nowMs) => cheapestVictims(candidates, forModel, nowMs, p, loaded),
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
    loneHoldMinMs: params.loneHoldMinMs ?? LONE_SLEEP_MAX_MS_DEFAULT,
    loneHoldMaxMs: params.loneHoldMaxMs ?? LONE_HOLD_MAX_MS_DEFAULT,
    starvedWaitMs: params.starvedWaitMs ?? STARVED_WAIT_MS_DEFAULT,
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
  if (!(r.loneHoldMinMs >= 0)) throw invalidArgument('loneHoldMinMs', r.loneHoldMinMs, 'ms >= 0');
  if (!(r.loneHoldMaxMs >= r.loneHoldMinMs))
    throw invalidArgument('loneHoldMaxMs', r.loneHoldMaxMs, `ms >= loneHoldMinMs (${r.loneHoldMinMs})`);
  if (!(r.starvedWaitMs >= 0)) throw invalidArgument('starvedWaitMs', r.starvedWaitMs, 'ms >= 0');
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
 * hold (every model with no request in the system and one within the keep-alive), debited with the
 * idle GPUs Switchyard holds (GPUs held by sleepers alone included), both over the time since the
 * last decision. Spending it keeps Switchyard's idle GPU time level with the fixed keep-alive's, so
 * the comparison is at equal GPU-seconds; it is bounded to one keep-alive's worth of every GPU
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
 * Switchyard's whole-GPU account (sleep mode), in GPU-ms, kept against the fixed keep-alive run on
 * the same arrivals: credited with every GPU the fixed keep-alive would bill (a model's idle GPUs
 * within the keep-alive, the instances its requests in flight need, and one start-up of GPU time
 * each time it would start a model from zero), debited with every GPU Switchyard bills (its
 * instances starting or ready, and the GPUs its sleepers alone hold), both over the time since the
 * last decision. Sleep mode saves start-ups (a wake is ~1 s, a start ~45 s) and shares GPUs in
 * turns, which the idle account does not see; this account's surplus is what pays for holding GPUs
 * held by sleepers alone past the minimum hold. Bounded like the idle account.
 */
class GpuAccount {
  private creditGpuMs = 0;
  private lastMs: number | undefined;
  /** Per model: whether the fixed keep-alive would be at zero now (rebuilt each decision). */
  private fixedAtZero = new Map<ModelId, boolean>();

  /**
   * The GPUs Switchyard may bill from now to the next decision. `billedGpus`: those it bills now,
   * standing for the time since the last decision.
   */
  allowance(models: readonly ServerlessModelView[], nowMs: number, p: Resolved, billedGpus: number): number {
    let fixed = 0;
    let totalGpus = 0;
    let startsGpuMs = 0;
    const atZero = new Map<ModelId, boolean>();
    for (const m of models) {
      totalGpus += m.gpus;
      if (m.inSystem === 0 && m.idleMs < p.keepAliveMs) fixed += m.gpus;
      // Requests held for a start: the fixed rule's start-up is the one-off credit below instead.
      if (m.inSystem > 0 && m.held === 0) fixed += demand(m, p) * m.gpus;
      const zero = m.inSystem === 0 && m.idleMs >= p.keepAliveMs;
      // Used since the last decision after a keep-alive's silence: the fixed rule starts it afresh.
      if (!zero && (this.fixedAtZero.get(m.id) ?? true)) startsGpuMs += m.startupMs * m.gpus;
      atZero.set(m.id, zero);
    }
    this.fixedAtZero = atZero;
    const dt = this.lastMs === undefined ? 0 : nowMs - this.lastMs;
    const boundGpuMs = Math.max(1, p.keepAliveMs) * totalGpus;
    this.creditGpuMs += dt * (fixed - billedGpus) + startsGpuMs;
    this.creditGpuMs = Math.max(-boundGpuMs, Math.min(boundGpuMs, this.creditGpuMs));
    this.runBalanceGpuMs += dt * (fixed - billedGpus) + startsGpuMs;
    this.peakBilledGpus = Math.max(this.peakBilledGpus, billedGpus);
    this.lastMs = nowMs;
    return fixed + this.creditGpuMs / Math.max(1, p.keepAliveMs);
  }

  /** The same balance over the whole run, unbounded: one number, what the run's bill is judged by. */
  private runBalanceGpuMs = 0;
  /** The most GPUs Switchyard has billed at once in the run. */
  private peakBilledGpus = 0;

  /**
   * Whether Switchyard has billed more GPU time than the fixed keep-alive would have over the run so
   * far, by more than `slackMs` of every GPU it has held at once (what one round of minimum holds
   * costs: a start-up transient, not an overrun).
   */
  overRun(slackMs: number): boolean {
    return this.runBalanceGpuMs < -slackMs * this.peakBilledGpus;
  }
}

/**
 * What one sleeper of `m` is worth: keepValue (the cold requests a fresh start would make wait,
 * times the chance of a request before it could finish, per GPU), since without the sleeper the
 * model's next start is a fresh one. 0 for a model with an instance starting or ready: its next
 * request goes there, the sleeper only speeds a scale-up.
 */
export function sleeperValue(m: ServerlessModelView, nowMs: number, intervalMs: number): number {
  return m.active > 0 ? 0 : keepValue(m, nowMs, intervalMs);
}

/** What keeping one GPU held by sleepers alone is worth: the sum of its sleepers' values. */
export function loneGpuValue(
  g: LoneGpuView,
  models: readonly ServerlessModelView[],
  nowMs: number,
  intervalMs: number,
): number {
  let value = 0;
  for (const i of g.models) {
    const m = models[i];
    if (m === undefined) throw new Error(`lone GPU names model ${i} of ${models.length}`);
    value += sleeperValue(m, nowMs, intervalMs);
  }
  return value;
}

/**
 * Which GPUs held by sleepers alone keep their sleepers (sleep mode). Kept whatever they are worth
 * for loneHoldMinMs (the fixed rule it replaced) while the run's bill is over the fixed
 * keep-alive's by no more than one minimum hold of the most GPUs billed at once (`overRun`); past that, those within the minimum hold are paid from the
 * account too, first in line, so an account in debt keeps none (short bursts after long idle
 * periods: every release held 60 s whatever the account said billed 1.19x the best baseline's
 * GPU-hours, README "Unseen settings (stop 36)"). Stopped at loneHoldMaxMs; between, kept in
 * order of value (loneGpuValue, at least keepValueMin; ties by their order, node then index) while
 * the whole-GPU account's allowance exceeds what Switchyard bills: the GPU time sleep mode saved
 * against the fixed keep-alive pays for the hold. Without a GPU held by sleepers alone, the account
 * is still kept (it must see the whole run).
 */
function holdLone(
  models: readonly ServerlessModelView[],
  nowMs: number,
  p: Resolved,
  gpuBudget: GpuAccount,
  lone: readonly LoneGpuView[],
): boolean[] {
  let billed = lone.length;
  for (const m of models) billed += m.active * m.gpus;
  const allowance = gpuBudget.allowance(models, nowMs, p, billed);
  // The minimum hold is free while the run's bill is within the fixed rule's; past it, it is paid
  // from the account like the rest, first in line.
  const free = !gpuBudget.overRun(p.loneHoldMinMs);
  const keep = lone.map((g) => free && g.aloneMs < p.loneHoldMinMs);
  // Forward: what stays billed whatever is decided here (instances, GPUs within the minimum hold).
  let left = allowance - (billed - lone.length) - keep.filter(Boolean).length;
  const ranked: { i: number; value: number; young: boolean }[] = [];
  for (const [i, g] of lone.entries()) {
    if (keep[i] || g.aloneMs >= p.loneHoldMaxMs) continue;
    const young = g.aloneMs < p.loneHoldMinMs;
    const value = loneGpuValue(g, models, nowMs, p.intervalMs);
    if (young || value >= p.keepValueMin) ranked.push({ i, value, young });
  }
  ranked.sort((a, b) => Number(b.young) - Number(a.young) || b.value - a.value || a.i - b.i);
  // While any allowance is left a GPU is kept: the account carries the overdraft (less than one GPU
  // for one decision) and repays it from later credit.
  for (const { i } of ranked) {
    if (left <= 0) break;
    keep[i] = true;
    left -= 1;
  }
  return keep;
}

/**
 * Switchyard's plan. Models with requests get what the requests need, and so do models pausing
 * within a burst. The idle GPUs the fixed keep-alive would hold (the account's allowance) pay first
 * for the GPUs held by sleepers alone that `holdLone` keeps, then go to the loaded idle models worth
 * the most (keepValue at least keepValueMin), then, if some budget is left, to stopped models worth
 * at least prewarmValueMin (pre-warming). A loaded model goes before a stopped one whatever their
 * values, so a pre-warm never displaces a loaded model (each swap would pay a start-up). A model
 * with too little history to forecast keeps the fixed keep-alive, out of the same budget.
 */
function forecastPlan(
  models: readonly ServerlessModelView[],
  nowMs: number,
  p: Resolved,
  budget: IdleAccount,
  keepLone: readonly boolean[],
): number[] {
  const allowance = budget.allowance(models, nowMs, p.keepAliveMs);
  let left = allowance - keepLone.filter(Boolean).length;
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
 * Whether `m` is starved (aging): requests held for at least `starvedWaitMs` with no instance of it
 * starting or ready. `heldWaitedMs` runs from the first request held while none was (the host resets
 * it only once nothing is held), so a model whose held requests keep being refused at their deadline
 * while new ones arrive keeps aging.
 */
export function starved(m: ServerlessModelView, starvedWaitMs: number): boolean {
  return m.held > 0 && m.active === 0 && (m.heldWaitedMs ?? 0) >= starvedWaitMs;
}

/**
 * Since when each model has had an instance starting or ready without a break, as the decisions saw
 * it (one entry per model with one: bounded by the models). What a starved model may take from a
 * model within a burst depends on it: only a model that has served (held its GPUs past its start-up)
 * for at least as long as the starved one has waited has had its turn.
 */
class LoadedSince {
  private readonly sinceMs = new Map<ModelId, number>();

  update(models: readonly ServerlessModelView[], nowMs: number): void {
    for (const m of models) {
      if (m.active === 0) this.sinceMs.delete(m.id);
      else if (!this.sinceMs.has(m.id)) this.sinceMs.set(m.id, nowMs);
    }
  }

  /** How long `m` has served: loaded for this long, less one start-up; 0 if not seen loaded yet. */
  servedMs(m: ServerlessModelView, nowMs: number): number {
    const since = this.sinceMs.get(m.id);
    return since === undefined ? 0 : Math.max(0, nowMs - since - m.startupMs);
  }
}

/**
 * Switchyard's victims: instances idle for an idle period (not a pause within a burst), the
 * cheapest to lose first (keepValue: load time x popularity, ties by instance id), and only those
 * worth less than what the start gains: for a model with requests
 * waiting, the requests it expects over one start-up (those held and those coming at its busy pace)
 * per GPU; for a pre-warm, prewarmEvictRatio of its own keepValue.
 *
 * Aging, against lock-out: a starved model (`starved`) may also take any idle instance whose model
 * has served at least as long as the starved model has waited (`LoadedSince`: ready since before its
 * wait began), whether within a burst or worth more than the start; after those the rule above
 * offers, past-a-pause ones first, each cheapest first. Without it a model whose start needs more
 * GPUs than the pauses ever leave idle at once (a TP 4 start among busy 8Bs), or one worth less than
 * every loaded model, waits all hour; with the condition, a model that got its GPUs while the starved
 * one waited (a cluster's first minute, every model waiting) keeps its turn.
 */
function cheapestVictims(
  candidates: readonly VictimCandidate[],
  forModel: ServerlessModelView,
  nowMs: number,
  p: Resolved,
  loaded: LoadedSince,
): VictimCandidate[] {
  const gain =
    forModel.held > 0
      ? (forModel.held + forModel.arrivals.burstRate() * forModel.startupMs) / forModel.gpus
      : keepValue(forModel, nowMs, p.intervalMs) * p.prewarmEvictRatio;
  // Aging: a starved model may also take an instance its model has had a turn on at least as long.
  const waitedMs = starved(forModel, p.starvedWaitMs)
    ? (forModel.heldWaitedMs ?? 0)
    : Number.POSITIVE_INFINITY;
  return (
    candidates
      .map((c) => ({
        c,
        // An instance paused within a burst is as good as busy: stopping it only moves the cold start.
        paused: pausedInBurst(c.model, p.keepAliveMs),
        value: keepValue(c.model, nowMs, p.intervalMs),
      }))
      .filter((v) => (!v.paused && v.value < gain) || loaded.servedMs(v.c.model, nowMs) >= waitedMs)
      // Those the rule offers without aging first: they come first whether or not it applies.
      .sort(
        (a, b) =>
          Number(a.paused) - Number(b.paused) ||
          a.value - b.value ||
          compareStrings(a.c.instanceId, b.c.instanceId),
      )
      .map((v) => v.c)
  );
}

function compareStrings(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
