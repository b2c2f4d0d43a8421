/**
 * Switchyard's SLO planner: the fewest replicas that meet the TTFT and TPOT objectives, provisioned
 * a start-up time ahead of demand. See README.md for the rule and why it holds up where
 * latency-driven planners do not.
 */
import { z } from 'zod';
import { type CapacityFn, perfModelCapacity } from '../../capacity.ts';
import type {
  ControlContext,
  ControlDecision,
  ControlLoop,
  ControlObservation,
  ServiceObjectives,
} from '../../types.ts';
import { singleVariantDecision } from '../../types.ts';
import { BurstTracker } from './bursts.ts';
import { ErrorBudget } from './error-budget.ts';
import { JUMP_CONFIRM_MS, POISSON_DISPERSION_MAX, type RateForecast, RateForecaster } from './forecast.ts';

const positive = z.number().positive().finite();

/** See `seasonMinCorrelation`. */
const SEASON_MIN_CORRELATION = 0.8;

/** Parameters (all optional); the README explains each default. */
export const sloPlannerParams = z.strictObject({
  /** Fraction of a replica's SLO-bound capacity to plan on: headroom for bursts within a window. */
  targetUtilization: z.number().gt(0).max(1).default(0.8),
  /** Start-to-ready time when the host gives none (ControlContext.startupMs), ms. */
  startupMs: z.number().nonnegative().finite().default(60_000),
  /**
   * How long a lower count must hold before the planner scales down, ms. Default two start-ups: one
   * is the break-even for a single swing (a replica given back costs a start-up to get back), and
   * bursty clients come back within it often enough that one more halves the restarts.
   */
  scaleDownDelayMs: z.number().nonnegative().finite().optional(),
  /**
   * Once the hold has passed, the count comes down as an exponential decay with this time constant,
   * ms (default: the scale-down delay; 0: at once, the step the hold alone gives). The count itself
   * decays, towards zero, never below the need: from N it reaches the need after tau x ln(N / need).
   * Without it a count held by a burst last seen just inside the hold falls in one tick (24 -> 9
   * replicas on the held-out day) and the next burst within a start-up meets too few.
   */
  releaseTimeConstantMs: z.number().nonnegative().finite().optional(),
  /**
   * A confident season: one whose autocorrelation at its period reaches this (a configured
   * `periodMs` counts as 1). Under it (1: never) the scale-down hold keeps no more than the season's
   * own forecast over the next start-up needs, so a falling half comes down as fast as the season
   * does instead of waiting the hold and decaying (the hold is for rates that come back within a
   * start-up, which a season repeating this closely already forecasts); and bursts are the spans'
   * excess over the rate on top of the forecast peak's span (`burstSize`), so a trough does not
   * keep prefill standing for the peak's spans. Default 0.8: a noisy sinusoid scores 0.95 to 0.99,
   * the ServeGen days none, a non-periodic step series's spurious season 0.64 to 0.72.
   */
  seasonMinCorrelation: z.number().gt(0).max(1).default(SEASON_MIN_CORRELATION),
  /** Objectives when the context has none, ms. */
  ttftMs: positive.default(2000),
  tpotMs: positive.default(100),
  /** Mean lengths assumed until the host has measured some. */
  inputTokens: positive.default(1024),
  outputTokens: positive.default(256),
  /** Weight of each window's measured mean lengths (EWMA). */
  lengthAlpha: z.number().gt(0).max(1).default(0.2),
  /** Rate-history bucket, ms, and a fixed seasonal period (0: none; unset: detected). */
  bucketMs: positive.default(10_000),
  periodMs: z.number().nonnegative().finite().optional(),
  /** Requests waiting at the host or in engines are served within this many ms of the new replicas. */
  backlogDrainMs: positive.default(30_000),
  /** How far back the burst sizes are taken from, ms. */
  burstLookbackMs: positive.default(1_800_000),
  /**
   * Under Poisson arrivals (learnt index of dispersion at most 1.5), no confident season and a
   * burst quantile that is mostly excess over the level (a spike, not a peak of the rate), a
   * burst size is planned for only while a span at least that large arrived within this long, ms
   * (default 10 minutes, a third of the lookback): a lone spike on a Poisson stream stops holding
   * prefill capacity this long after it ended (and its dispersion has settled) instead of for the
   * whole lookback. A bursty client's arrivals are over-dispersed and keep the lookback's quantile.
   * At least the lookback: off.
   */
  burstRecurMs: positive.default(600_000),
  /**
   * The request-weighted quantile of burst sizes planned for (default: the attainment target).
   * Lower trades standing capacity for the tail of the largest bursts waiting past the TTFT target.
   */
  burstQuantile: z.number().gt(0).max(1).optional(),
  /** Fraction of a replica's prefill throughput planned on for bursts. */
  burstUtilization: z.number().gt(0).max(1).default(0.8),
  /** Attainment feedback: headroom grows by this factor a minute while attainment is short, up to `headroomMax`. */
  headroomStep: z.number().min(1).max(2).default(1.1),
  headroomMax: z.number().min(1).max(4).default(1.5),
  /**
   * Error budget (`error-budget.ts`): the SLO's period, ms. Default a day, the period the objective
   * is stated over (>= 99% of the day's requests).
   */
  budgetPeriodMs: positive.default(86_400_000),
  /**
   * The long burn-rate window, ms, and the budget floor's time constant. Default an hour, the SRE
   * Workbook's long window for its fastest burn-rate alert: long enough to span the next burst of a
   * bursty hour, short against the day.
   */
  burnWindowMs: positive.default(3_600_000),
  /**
   * The most the budget floor may raise the headroom to. Default 1: off. It passed its tuning
   * protocol but bought 0.0-0.11 attainment points for 6-10% more GPU-hours on the held-out day and
   * the sinusoid (README, "An error-budget floor"); 1.5 (`headroomMax`) is the setting measured.
   */
  budgetHeadroomMax: z.number().min(1).max(4).default(1),
});
export type SloPlannerParams = z.infer<typeof sloPlannerParams>;

/** The span the attainment feedback reads, ms: long enough that one burst is not a trend. */
const HEADROOM_WINDOW_MS = 300_000;

/** One control window's completions and the requests of them that met the SLO. */
interface Attained {
  readonly endMs: number;
  readonly completions: number;
  readonly met: number;
}

/**
 * Builds the planner. `capacity` (default: the performance model's, `perfModelCapacity`) says how
 * many requests per second one replica sustains within the objectives.
 */
export function createSloPlanner(
  context: ControlContext,
  params: SloPlannerParams,
  capacity: CapacityFn = perfModelCapacity(),
): ControlLoop {
  const state = new PlannerState(context, params, capacity);
  return { name: 'slo-planner', decide: (o) => state.decide(o) };
}

class PlannerState {
  private readonly forecaster: RateForecaster;
  private readonly bursts: BurstTracker;
  private readonly burstScale: number;
  /** `burstRecurMs` in control windows. */
  private readonly burstRecurWindows: number;
  /** The largest burst size taken for a spike that has not come back (0: none); see `burstSize`. */
  private spikeSpan = 0;
  private readonly objectives: ServiceObjectives;
  private readonly startupMs: number;
  private readonly downDelayMs: number;
  /**
   * Mean lengths the capacity is planned at: what the windows measured (arrivals' prompts, completed
   * requests' outputs; EWMA), seeded by the `inputTokens`/`outputTokens` parameters until measured.
   */
  private meanInputTokens: number;
  private meanOutputTokens: number;
  private headroom = 1;
  /** The day's error budget and the headroom floor it sets while the budget is being lost. */
  private readonly budget: ErrorBudget;
  /** The forecast's level at the last decision, req/s: what the next window is expected to bring. */
  private lastLevelRps = 0;
  /**
   * The windows of the last HEADROOM_WINDOW_MS with completions, oldest first, and their sums: the
   * attainment feedback reads their met requests over their completions.
   */
  private readonly attained: Attained[] = [];
  private attainedCompletions = 0;
  private attainedMet = 0;
  /** Counts wanted at recent ticks, newest last, for the scale-down delay (bounded by the delay). */
  private readonly recent: { atMs: number; replicas: number }[] = [];
  /** The released count's decaying level and when it was last set (see `releaseTimeConstantMs`). */
  private releaseLevel = 0;
  private releaseAtMs = Number.NaN;

  constructor(
    private readonly context: ControlContext,
    private readonly params: SloPlannerParams,
    private readonly capacity: CapacityFn,
  ) {
    this.startupMs = context.startupMs ?? params.startupMs;
    this.forecaster = new RateForecaster({
      bucketMs: params.bucketMs,
      periodMs: params.periodMs,
      // A swing shorter than a start-up is over before a replica asked for it could serve it.
      levelTauMs: Math.max(context.intervalMs, this.startupMs / 2),
      jumpConfirmMs: Math.min(JUMP_CONFIRM_MS, this.startupMs / 2),
    });
    const o = context.objectives;
    this.objectives = {
      ttftMs: o.ttftMs ?? params.ttftMs,
      tpotMs: o.tpotMs ?? params.tpotMs,
      attainment: o.attainment ?? 0.99,
    };
    this.downDelayMs = params.scaleDownDelayMs ?? 2 * this.startupMs;
    this.budget = new ErrorBudget({
      target: this.objectives.attainment ?? 0.99,
      periodMs: params.budgetPeriodMs,
      burnWindowMs: params.burnWindowMs,
      maxExtra: params.budgetHeadroomMax - 1,
    });
    this.meanInputTokens = params.inputTokens;
    // A configured prior (what operators expect), replaced by finished answers' lengths as they come.
    this.meanOutputTokens = params.outputTokens;
    const ttftMs = this.objectives.ttftMs ?? params.ttftMs;
    const spanWindows = Math.max(1, Math.round(ttftMs / context.intervalMs));
    this.bursts = new BurstTracker(
      spanWindows,
      Math.max(1, Math.round(params.burstLookbackMs / context.intervalMs)),
    );
    this.burstRecurWindows = Math.max(1, Math.round(params.burstRecurMs / context.intervalMs));
    // Windows longer than the TTFT target: count a TTFT's share of them (arrivals spread evenly).
    this.burstScale = Math.min(1, ttftMs / (spanWindows * context.intervalMs));
  }

  decide(o: ControlObservation): ControlDecision {
    const w = o.window;
    this.forecaster.observe(w.startMs, w.endMs, w.arrivals);
    // What the level before this window expected of it: a burst is the excess over that.
    this.bursts.observe(w.arrivals, (this.lastLevelRps * (w.endMs - w.startMs)) / 1000);
    this.learnLengths(o);
    this.adjustHeadroom(o);
    this.observeBudget(o);
    const variant = this.context.variants[0];
    if (variant === undefined)
      return singleVariantDecision(this.context, this.context.minReplicas, 'no variant');
    const cap = this.capacity(variant, this.objectives, this.meanInputTokens, this.meanOutputTokens);
    if (cap.requestsPerS <= 0) {
      return singleVariantDecision(
        this.context,
        this.context.maxReplicas,
        `objectives unreachable for ${Math.round(this.meanInputTokens)}/${Math.round(this.meanOutputTokens)} tokens (${cap.limitedBy}): all replicas`,
      );
    }
    const horizonMs = this.startupMs + this.context.intervalMs;
    const f = this.forecaster.forecast(o.nowMs, horizonMs);
    this.lastLevelRps = f.levelRps;
    const demandRps = f.peakRps;
    const backlog = backlogOf(o);
    const backlogRps = (backlog * 1000) / (this.params.backlogDrainMs + this.startupMs);
    const perReplica = cap.requestsPerS * this.params.targetUtilization;
    const forRate = (demandRps + backlogRps) / perReplica;
    // The bursts its requests arrive in must be prefilled within the TTFT target.
    const q = this.params.burstQuantile ?? this.objectives.attainment ?? 0.99;
    const burst = this.burstSize(q, f) * this.burstScale;
    const ttftMs = this.objectives.ttftMs ?? this.params.ttftMs;
    const forBursts = (burst * cap.prefillMs) / (ttftMs * this.params.burstUtilization);
    // Attainment feedback scales whichever requirement binds, never under the error budget's floor.
    const headroom = Math.max(this.headroom, this.budget.floor());
    const needed = replicasFor(Math.max(forRate, forBursts) * headroom);
    const seasonNeed = this.seasonNeed(f, backlogRps, perReplica, forBursts, headroom);
    const wanted = this.holdForScaleDown(o.nowMs, needed, seasonNeed);
    return singleVariantDecision(
      this.context,
      wanted,
      `${this.reason(f, backlog, perReplica, needed, wanted)}; bursts of ${burst.toFixed(0)} a TTFT need ${Math.ceil(forBursts)}`,
    );
  }

  /**
   * The arrivals per TTFT span to provision prefill for: the lookback's quantile of span counts.
   * Under a confident season the spans at the season's peak are not the bursts of its trough: the
   * planner then takes the quantile of the spans' excess over the level that expected them, on top
   * of a span at the horizon's forecast peak, when that is less.
   */
  private burstSize(q: number, f: RateForecast): number {
    const spans = this.bursts.quantile(q);
    if (!this.confidentSeason(f)) {
      // Poisson arrivals (a bursty client's never are) bring no bursts of their own beyond what
      // their rate's spans show. When most of the quantile's span was excess over what the level
      // expected (a spike, not a peak of the rate: a season not yet confident brings its peak back
      // within the lookback), a size no span reached within `burstRecurMs` was a spike that has not
      // come back, so plan for what the recent spans reached instead.
      if (this.forecaster.dispersionIndex > POISSON_DISPERSION_MAX) return spans;
      if (this.burstRecurWindows >= this.bursts.lookbackWindows) return spans;
      const recent = this.bursts.recentMax(this.burstRecurWindows);
      if (recent >= spans) {
        // Nothing left to cut: any spike taken for one has left the quantile.
        this.spikeSpan = 0;
        return spans;
      }
      // A quantile no larger than a spike already taken for one is that spike's spans: its early
      // ones, of high excess, leave the lookback first, and the rest must not read as a rate's peak.
      if (2 * this.bursts.excessQuantile(q) <= spans && spans > this.spikeSpan) return spans;
      this.spikeSpan = Math.max(this.spikeSpan, spans);
      return recent;
    }
    const spanS = (this.bursts.spanWindows * this.context.intervalMs) / 1000;
    return Math.min(spans, this.bursts.excessQuantile(q) + f.peakRps * spanS);
  }

  /** A season detected (or configured) that repeats closely enough to plan releases and bursts on. */
  private confidentSeason(f: RateForecast): boolean {
    const min = this.params.seasonMinCorrelation;
    return min < 1 && f.periodCorrelation >= min;
  }

  /**
   * What a confident season says the count must be over the horizon: the seasonal-naive peak (the
   * rate one period before the horizon, not shifted by the level, whose noise the need already
   * carries) with the backlog, bursts and headroom as in the need. Infinite (no bound on the hold)
   * without a season whose autocorrelation reaches `seasonMinCorrelation`, or without the
   * history one period back.
   */
  private seasonNeed(
    f: RateForecast,
    backlogRps: number,
    perReplica: number,
    forBursts: number,
    headroom: number,
  ): number {
    if (!this.confidentSeason(f)) return Number.POSITIVE_INFINITY;
    if (!Number.isFinite(f.seasonalNaivePeakRps)) return Number.POSITIVE_INFINITY;
    const forSeason = (f.seasonalNaivePeakRps + backlogRps) / perReplica;
    return Math.ceil(Math.max(forSeason, forBursts) * headroom * (1 - 1e-9));
  }

  /** EWMA of the measured mean lengths; a window without completions or arrivals changes nothing. */
  private learnLengths(o: ControlObservation): void {
    const a = this.params.lengthAlpha;
    const { meanInputTokens: i, meanOutputTokens: out } = o.window;
    if (Number.isFinite(i) && i > 0) this.meanInputTokens += a * (i - this.meanInputTokens);
    if (Number.isFinite(out) && out > 0) this.meanOutputTokens += a * (out - this.meanOutputTokens);
  }

  /**
   * Slow feedback from measured attainment: the attainment of the last HEADROOM_WINDOW_MS (the
   * windows' met requests over their completions) under the target grows the headroom by
   * `headroomStep` a minute (never past `headroomMax`); at or over it, the headroom shrinks back at
   * the same pace. A sliding window, not an average with that time constant: after a deep miss
   * (half the requests of a rise that outran the start-up) an EWMA stays under 99% for
   * ln(0.5 / 0.01) = 3.9 time constants, 20 minutes of 1.5x capacity that met every request, where
   * the window lets go five minutes after the last miss. Latency itself never enters the count, so
   * a queue that builds in a burst cannot inflate it.
   */
  private adjustHeadroom(o: ControlObservation): void {
    const w = o.window;
    if (Number.isFinite(w.sloAttainment) && w.completions > 0) {
      const met = w.completions * w.sloAttainment;
      this.attained.push({ endMs: w.endMs, completions: w.completions, met });
      this.attainedCompletions += w.completions;
      this.attainedMet += met;
    }
    // Bounded: windows within HEADROOM_WINDOW_MS of the newest (at most that over the interval).
    while (this.attained.length > 0 && (this.attained[0] as Attained).endMs <= w.endMs - HEADROOM_WINDOW_MS) {
      const gone = this.attained.shift() as Attained;
      this.attainedCompletions -= gone.completions;
      this.attainedMet -= gone.met;
    }
    // No completion within the window: nothing measured, the headroom stays as it is.
    if (this.attained.length === 0 || !(this.attainedCompletions > 0)) return;
    const attainment = this.attainedMet / this.attainedCompletions;
    const perMinute = (w.endMs - w.startMs) / 60_000;
    const step = this.params.headroomStep ** perMinute;
    this.headroom =
      attainment < (this.objectives.attainment ?? 0.99)
        ? Math.min(this.params.headroomMax, this.headroom * step)
        : Math.max(1, this.headroom / step);
  }

  /**
   * Error-budget accounting: a window's requests are its completions and failures, its misses the
   * failures and the completions that missed the SLO (1 - attainment of them). A window whose
   * attainment is unmeasured (no SLO set) counts nothing.
   */
  private observeBudget(o: ControlObservation): void {
    const w = o.window;
    const met = w.completions > 0 ? w.sloAttainment : 1;
    if (!Number.isFinite(met)) return;
    const misses = w.failures + w.completions * (1 - met);
    this.budget.observe(w.endMs, w.endMs - w.startMs, w.completions + w.failures, misses);
  }

  /**
   * Scale up at once; scale down only to the largest count wanted over the last `downDelayMs`,
   * then gradually (`release`); what is held past the need never exceeds `seasonNeed`, the count a
   * confident season forecasts over the horizon (infinite without one).
   */
  private holdForScaleDown(nowMs: number, needed: number, seasonNeed: number): number {
    const recent = this.recent;
    recent.push({ atMs: nowMs, replicas: needed });
    while (recent.length > 0 && (recent[0] as { atMs: number }).atMs < nowMs - this.downDelayMs)
      recent.shift();
    let held = needed;
    for (const r of recent) if (r.replicas > held) held = r.replicas;
    return Math.max(needed, Math.min(this.release(nowMs, held), seasonNeed));
  }

  /** The held count, or the decaying level of a higher one given back since (never a step down). */
  private release(nowMs: number, held: number): number {
    const tauMs = this.params.releaseTimeConstantMs ?? this.downDelayMs;
    const dtMs = Number.isNaN(this.releaseAtMs) ? 0 : nowMs - this.releaseAtMs;
    this.releaseAtMs = nowMs;
    const decayed = tauMs > 0 ? this.releaseLevel * Math.exp(-dtMs / tauMs) : 0;
    // The decay starts from what was granted: a need above the pool bound was held at the bound.
    this.releaseLevel = Math.max(Math.min(held, this.context.maxReplicas), decayed);
    // The epsilon keeps a level that has decayed to an integer from rounding up to the next one.
    return Math.max(held, Math.ceil(this.releaseLevel - 1e-9));
  }

  /** The budget floor in the reason, only while it binds above 1. */
  private budgetNote(): string {
    const f = this.budget.floor();
    if (f <= 1.005) return '';
    return ` (budget floor ${f.toFixed(2)}: ${(this.budget.spentRatio() * 100).toFixed(0)}% of the budget spent, burn ${this.budget.burnRate().toFixed(1)} over the window)`;
  }

  private reason(
    f: RateForecast,
    backlog: number,
    perReplica: number,
    needed: number,
    wanted: number,
  ): string {
    const season =
      f.periodMs > 0
        ? `, season ${(f.periodMs / 60_000).toFixed(0)} min r ${f.periodCorrelation.toFixed(2)} ${f.seasonalPeakRps.toFixed(2)}`
        : '';
    const hold = wanted > needed ? `; holding ${wanted} (scale-down delay)` : '';
    return (
      `demand ${f.peakRps.toFixed(2)} req/s over the next ${((this.startupMs + this.context.intervalMs) / 1000).toFixed(0)} s ` +
      `(level ${f.levelRps.toFixed(2)}, trend ${f.trendRps.toFixed(2)}${season}) x headroom ${this.headroom.toFixed(2)}${this.budgetNote()}, ` +
      `backlog ${backlog}; ${perReplica.toFixed(2)} req/s per replica -> ${needed}${hold}`
    );
  }
}

/**
 * Replicas for a requirement in replicas: rounded up, less a relative epsilon so a requirement that
 * is an integer up to rounding does not round up to the next one. A requirement under
 * NEED_EPSILON_REPLICAS is none: the level's EWMA decays geometrically after the last arrival and in
 * floating point never reaches 0 (it stops at the smallest subnormal, which x (1 - alpha) rounds back
 * to), so without this floor `ceil` kept one replica for ever and a pool with minReplicas 0 never
 * went back to zero however long it stood idle.
 */
function replicasFor(requirement: number): number {
  return requirement < NEED_EPSILON_REPLICAS ? 0 : Math.ceil(requirement * (1 - 1e-9));
}

/** A requirement below this many replicas counts as none (the release's level uses the same epsilon). */
const NEED_EPSILON_REPLICAS = 1e-9;

/** Requests waiting: held at the host plus queued inside engines (as scraped). */
function backlogOf(o: ControlObservation): number {
  let waiting = o.window.queuedAtEnd;
  for (const i of o.view.instances) waiting += i.waiting;
  return waiting;
}
