/**
 * Cost-aware choice of GPU types and TP degrees, after Mélange (Griggs et al., 2024): profile each
 * (GPU, TP) variant's highest rate per request-size bucket within the SLO (profile.ts), then solve
 * the cost-minimising allocation as a small mixed-integer program:
 *
 *   minimise   sum_v usdPerHour_v * n_v
 *   subject to sum_v x_bv = 1                              for every bucket b
 *              sum_b x_bv * rate_b / capacity_bv <= n_v    for every variant v
 *              n_v integer >= 0, 0 <= x_bv <= 1
 *
 * x_bv is the fraction of bucket b's requests sent to variant v (Mélange's load slices, made
 * continuous), rate_b / capacity_bv the instances of v one bucket's whole load would need. The
 * solver is javascript-lp-solver (simplex with branch and bound), exact at this size; variants
 * another variant beats on price and on every bucket are dropped first, which keeps the branch and
 * bound small. Pure: no clock, no randomness, no I/O; the same inputs give the same plan.
 */

import type { Model as LpModel, SolveResult as LpResult } from 'javascript-lp-solver';
import * as lpSolverModule from 'javascript-lp-solver';
import { invalidArgument, SwitchyardError } from '../../core/errors.ts';
import type { GpuId, ModelId } from '../../core/ids.ts';
import { gpuIds, modelSpec } from '../../model/index.ts';
import type { Variant } from '../types.ts';
import type { GpuPriceTable } from './prices.ts';
import {
  type BucketCapacity,
  isProfiled,
  type PlanObjectives,
  type ProfileOptions,
  profileVariant,
  type SkippedVariant,
  TP_DEGREES,
  type VariantProfile,
} from './profile.ts';
import { bucketize, type LengthBucket, type LengthSample } from './workload.ts';

interface LpSolver {
  Solve(model: LpModel): unknown;
}
/**
 * The solver object. Node loads the package's ESM build, whose default export is the solver; its
 * type declarations are read as CommonJS, where that export sits one `default` deeper. Take
 * whichever holds `Solve`.
 */
const lpSolver: LpSolver = ((): LpSolver => {
  const exported = (lpSolverModule as unknown as { default: LpSolver | { default: LpSolver } }).default;
  return 'Solve' in exported ? exported : exported.default;
})();

/** Slack allowed between the solver's loads and the integer instance counts (float round-off). */
const LOAD_EPSILON = 1e-6;
/** Fractions below this are solver noise, not a slice of a bucket. */
const FRACTION_EPSILON = 1e-9;

/** What a plan is for. */
export interface GpuPlanRequest {
  readonly model: ModelId;
  /** Request lengths (samples or weighted histogram cells); or pass `buckets` already built. */
  readonly samples?: readonly LengthSample[];
  readonly buckets?: readonly LengthBucket[];
  /** Total arrival rate to serve, requests per second. */
  readonly rateRps: number;
  readonly objectives: PlanObjectives;
  /** USD per GPU-hour; GPUs without a price are skipped. */
  readonly prices: GpuPriceTable;
  /** GPUs that may be used (default: the whole catalogue). */
  readonly gpus?: readonly GpuId[];
  /** TP degrees that may be used (default 1, 2, 4, 8). */
  readonly tpDegrees?: readonly number[];
  readonly profile?: ProfileOptions;
}

/** Instances of one variant in a plan. */
export interface PlannedVariant {
  readonly variant: Variant;
  readonly instances: number;
  /** instances * tp * USD per GPU-hour. */
  readonly usdPerHour: number;
  /** Fraction of the instances' capacity the assigned load uses, (0, 1]. */
  readonly utilization: number;
}

/** Where one bucket's requests go. */
export interface BucketAssignment {
  readonly bucket: string;
  readonly share: number;
  readonly rateRps: number;
  /** Slices of the bucket by variant key (`variantKey`), fractions summing to 1. */
  readonly slices: readonly { readonly gpu: GpuId; readonly tp: number; readonly fraction: number }[];
}

/** The cheapest mix found, with how it was found. */
export interface GpuPlan {
  readonly model: ModelId;
  readonly rateRps: number;
  readonly usdPerHour: number;
  readonly gpuCount: number;
  readonly variants: readonly PlannedVariant[];
  readonly buckets: readonly BucketAssignment[];
  /** Every profiled variant's capacity per bucket (what the choice was made from). */
  readonly profiles: readonly VariantProfile[];
  /** Variants left out: no price, TP does not split the model, model does not fit. */
  readonly skipped: readonly SkippedVariant[];
}

interface Candidate {
  readonly key: string;
  readonly profile: VariantProfile;
  /** USD per instance-hour: tp GPUs at the GPU's price. */
  readonly usdPerHour: number;
}

function validateRequest(req: GpuPlanRequest): void {
  modelSpec(req.model);
  if (!(Number.isFinite(req.rateRps) && req.rateRps > 0)) {
    throw invalidArgument('rateRps', req.rateRps, 'a positive number of requests per second');
  }
  for (const [name, value] of [
    ['ttftMs', req.objectives.ttftMs],
    ['tpotMs', req.objectives.tpotMs],
  ] as const) {
    if (value !== undefined && !(Number.isFinite(value) && value > 0)) {
      throw invalidArgument(name, value, 'a positive number of milliseconds');
    }
  }
}

function bucketsOf(req: Pick<GpuPlanRequest, 'samples' | 'buckets'>): readonly LengthBucket[] {
  if (req.buckets !== undefined && req.buckets.length > 0) return req.buckets;
  return bucketize(req.samples ?? []);
}

/** Profiles every priced (GPU, TP) pair; the ones the model fits on become candidates. */
function profileAll(
  req: Pick<GpuPlanRequest, 'model' | 'objectives' | 'prices' | 'gpus' | 'tpDegrees' | 'profile'>,
  buckets: readonly LengthBucket[],
): { candidates: Candidate[]; skipped: SkippedVariant[] } {
  const candidates: Candidate[] = [];
  const skipped: SkippedVariant[] = [];
  for (const gpu of req.gpus ?? gpuIds()) {
    const price = req.prices.get(gpu);
    for (const tp of req.tpDegrees ?? TP_DEGREES) {
      if (price === undefined) {
        skipped.push({ gpu, tp, reason: `no price for ${gpu} in the price table` });
        continue;
      }
      const result = profileVariant(gpu, req.model, tp, buckets, req.objectives, req.profile);
      if (isProfiled(result))
        candidates.push({ key: `${gpu}/tp${tp}`, profile: result, usdPerHour: price * tp });
      else skipped.push(result);
    }
  }
  return { candidates, skipped };
}

function refuseUnfit(model: ModelId, skipped: readonly SkippedVariant[]): never {
  const tried = skipped.map((s) => `${s.tp} x ${s.gpu}`).join(', ');
  const largest = skipped.filter((s) => !s.reason.startsWith('no price')).at(-1);
  throw new SwitchyardError(
    'SY_ERR_CAPACITY',
    `${model} fits no priced GPU variant (tried ${tried})${largest === undefined ? '' : `; e.g. ${largest.reason}`}`,
    { param: 'model', model, skipped: skipped.map((s) => ({ gpu: s.gpu, tp: s.tp, reason: s.reason })) },
  );
}

function fmtMs(ms: number): string {
  return Number.isFinite(ms) ? `${ms.toFixed(1)} ms` : 'unbounded';
}

/** The bucket no variant can serve within the objectives, with the best each variant gets alone. */
function refuseUnreachable(
  model: ModelId,
  bucket: LengthBucket,
  index: number,
  candidates: readonly Candidate[],
  objectives: PlanObjectives,
): never {
  const lone = candidates.map((c) => ({ key: c.key, cap: c.profile.capacities[index] as BucketCapacity }));
  const fits = lone.filter((l) => l.cap.limitedBy !== 'context');
  const [first] = fits;
  let best = 'no variant holds the request in its KV cache and context';
  if (first !== undefined) {
    const bestTpot = fits.reduce((a, b) => (b.cap.tpotMs < a.cap.tpotMs ? b : a), first);
    const bestTtft = fits.reduce((a, b) => (b.cap.ttftMs < a.cap.ttftMs ? b : a), first);
    best = `best alone: TPOT ${fmtMs(bestTpot.cap.tpotMs)} on ${bestTpot.key}, TTFT ${fmtMs(bestTtft.cap.ttftMs)} on ${bestTtft.key}`;
  }
  throw new SwitchyardError(
    'SY_ERR_SLO_UNREACHABLE',
    `no GPU variant serves ${model} requests of ${bucket.inputTokens} input / ${bucket.generatedTokens} output tokens ` +
      `within TTFT ${objectives.ttftMs ?? 'any'} ms and TPOT ${objectives.tpotMs ?? 'any'} ms (${best}); loosen the objectives or add GPUs`,
    { param: 'objectives', bucket: bucket.label, ttftMs: objectives.ttftMs, tpotMs: objectives.tpotMs },
  );
}

/** True when `a` is no more expensive than `b` and at least as fast on every bucket. */
function dominates(a: Candidate, b: Candidate): boolean {
  if (a.usdPerHour > b.usdPerHour) return false;
  return a.profile.capacities.every(
    (cap, i) => cap.maxRateRps >= (b.profile.capacities[i] as BucketCapacity).maxRateRps,
  );
}

/** Drops dominated variants; of two equal ones, the first in catalogue order stays. */
function undominated(candidates: readonly Candidate[]): Candidate[] {
  return candidates.filter(
    (c, i) => !candidates.some((d, j) => j !== i && dominates(d, c) && (!dominates(c, d) || j < i)),
  );
}

interface Solved {
  readonly instances: ReadonlyMap<string, number>;
  readonly fractions: ReadonlyMap<string, number>;
}

function xName(b: number, key: string): string {
  return `x|${b}|${key}`;
}

/** Builds and solves the MILP; throws SY_ERR_INTERNAL if the solver reports no solution. */
function solveMix(
  buckets: readonly LengthBucket[],
  rateRps: number,
  candidates: readonly Candidate[],
): Solved {
  const constraints: Record<string, { equal?: number; max?: number }> = {};
  const variables: Record<string, Record<string, number>> = {};
  const ints: Record<string, 1> = {};
  for (const c of candidates) {
    constraints[`cap|${c.key}`] = { max: 0 };
    variables[`n|${c.key}`] = { cost: c.usdPerHour, [`cap|${c.key}`]: -1 };
    ints[`n|${c.key}`] = 1;
  }
  buckets.forEach((bucket, b) => {
    constraints[`bucket|${b}`] = { equal: 1 };
    for (const c of candidates) {
      const cap = (c.profile.capacities[b] as BucketCapacity).maxRateRps;
      if (cap <= 0) continue;
      variables[xName(b, c.key)] = { [`bucket|${b}`]: 1, [`cap|${c.key}`]: (bucket.share * rateRps) / cap };
    }
  });
  const result = lpSolver.Solve({
    optimize: 'cost',
    opType: 'min',
    constraints,
    variables,
    ints,
  }) as LpResult;
  if (result.feasible !== true) {
    throw new SwitchyardError(
      'SY_ERR_INTERNAL',
      'the GPU mix solver found no solution to a feasible problem',
    );
  }
  const instances = new Map<string, number>();
  const fractions = new Map<string, number>();
  for (const [name, value] of Object.entries(result)) {
    if (typeof value !== 'number') continue;
    if (name.startsWith('n|')) instances.set(name.slice(2), value);
    else if (name.startsWith('x|')) fractions.set(name, value);
  }
  return { instances, fractions };
}

/** Turns the solver's values into a plan: integer counts that cover the assigned load exactly. */
function assemble(
  req: GpuPlanRequest,
  buckets: readonly LengthBucket[],
  candidates: readonly Candidate[],
  solved: Solved,
): Pick<GpuPlan, 'variants' | 'buckets' | 'usdPerHour' | 'gpuCount'> {
  const load = new Map<string, number>();
  const assignments: BucketAssignment[] = buckets.map((bucket, b) => {
    const raw = candidates
      .map((c) => ({ c, fraction: Math.max(0, solved.fractions.get(xName(b, c.key)) ?? 0) }))
      .filter((s) => s.fraction > FRACTION_EPSILON);
    const total = raw.reduce((sum, s) => sum + s.fraction, 0);
    const slices = raw.map(({ c, fraction }) => {
      const share = fraction / total;
      const cap = (c.profile.capacities[b] as BucketCapacity).maxRateRps;
      load.set(c.key, (load.get(c.key) ?? 0) + (share * bucket.share * req.rateRps) / cap);
      return { gpu: c.profile.gpu, tp: c.profile.tp, fraction: share };
    });
    return { bucket: bucket.label, share: bucket.share, rateRps: bucket.share * req.rateRps, slices };
  });
  const variants: PlannedVariant[] = [];
  for (const c of candidates) {
    const used = load.get(c.key) ?? 0;
    if (used <= 0) continue;
    const solverCount = Math.round(solved.instances.get(c.key) ?? 0);
    // The solver's count covers its load up to its tolerance; never plan less than the load needs.
    const instances = Math.max(solverCount, Math.ceil(used - LOAD_EPSILON), 1);
    variants.push({
      variant: { model: req.model, gpu: c.profile.gpu, tp: c.profile.tp, role: 'both' },
      instances,
      usdPerHour: instances * c.usdPerHour,
      utilization: used / instances,
    });
  }
  const usdPerHour = variants.reduce((sum, v) => sum + v.usdPerHour, 0);
  const gpuCount = variants.reduce((sum, v) => sum + v.instances * v.variant.tp, 0);
  return { variants, buckets: assignments, usdPerHour, gpuCount };
}

/**
 * The cheapest mix of (GPU, TP) instances that serves `rateRps` of the workload within the
 * objectives. Throws SY_ERR_INVALID_ARGUMENT for a bad rate, objective or sample;
 * SY_ERR_CAPACITY when the model fits no priced variant; SY_ERR_SLO_UNREACHABLE when some request
 * size cannot meet the objectives on any variant (the message names it and the best latencies).
 */
export function planGpuMix(req: GpuPlanRequest): GpuPlan {
  validateRequest(req);
  const buckets = bucketsOf(req);
  const { candidates, skipped } = profileAll(req, buckets);
  if (candidates.length === 0) refuseUnfit(req.model, skipped);
  buckets.forEach((bucket, b) => {
    if (!candidates.some((c) => (c.profile.capacities[b] as BucketCapacity).maxRateRps > 0)) {
      refuseUnreachable(req.model, bucket, b, candidates, req.objectives);
    }
  });
  const useful = undominated(
    candidates.filter((c) => c.profile.capacities.some((cap) => cap.maxRateRps > 0)),
  );
  const solved = solveMix(buckets, req.rateRps, useful);
  const plan = assemble(req, buckets, useful, solved);
  return {
    model: req.model,
    rateRps: req.rateRps,
    ...plan,
    profiles: candidates.map((c) => c.profile),
    skipped,
  };
}

/** What an autoscaler asks when it must add capacity: which variant, for the traffic it sees. */
export interface VariantQuery {
  readonly model: ModelId;
  readonly samples?: readonly LengthSample[];
  readonly buckets?: readonly LengthBucket[];
  readonly objectives: PlanObjectives;
  readonly prices: GpuPriceTable;
  /** The variants the loop may start (its ControlContext.variants); default every (GPU, TP). */
  readonly candidates?: readonly Variant[];
  readonly profile?: ProfileOptions;
}

/** The variant to add, and what one instance of it buys. */
export interface VariantChoice {
  readonly variant: Variant;
  readonly usdPerHour: number;
  /** Requests per second one instance serves of this length mix within the objectives. */
  readonly capacityRps: number;
  /** usdPerHour / capacityRps: the figure the choice minimises. */
  readonly usdPerHourPerRps: number;
}

/**
 * The variant whose one instance serves the workload's length mix within the objectives at the
 * lowest cost per request per second. An instance given the mix spends share_b / capacity_b of its
 * time per request rate on bucket b, so its capacity is 1 / sum_b (share_b / capacity_b); variants
 * that cannot serve some bucket at all are not considered. Ties go to the earlier candidate.
 * Throws like `planGpuMix` when no candidate fits or none serves every bucket.
 */
export function cheapestVariantFor(query: VariantQuery): VariantChoice {
  validateRequest({ ...query, rateRps: 1 });
  const buckets = bucketsOf(query);
  const allowed = query.candidates?.filter((v) => v.model === query.model);
  const gpus = allowed === undefined ? undefined : [...new Set(allowed.map((v) => v.gpu))];
  const tps = allowed === undefined ? undefined : [...new Set(allowed.map((v) => v.tp))];
  const role = allowed?.[0]?.role ?? 'both';
  const profiled = profileAll(
    { ...query, ...(gpus === undefined ? {} : { gpus }), ...(tps === undefined ? {} : { tpDegrees: tps }) },
    buckets,
  );
  const candidates = profiled.candidates.filter(
    (c) => allowed === undefined || allowed.some((v) => v.gpu === c.profile.gpu && v.tp === c.profile.tp),
  );
  if (candidates.length === 0) refuseUnfit(query.model, profiled.skipped);
  let best: VariantChoice | undefined;
  for (const c of candidates) {
    let secondsPerRequest = 0;
    c.profile.capacities.forEach((cap, b) => {
      const share = (buckets[b] as LengthBucket).share;
      secondsPerRequest += cap.maxRateRps > 0 ? share / cap.maxRateRps : Number.POSITIVE_INFINITY;
    });
    const capacityRps = 1 / secondsPerRequest;
    if (!(capacityRps > 0)) continue;
    const usdPerHourPerRps = c.usdPerHour / capacityRps;
    if (best === undefined || usdPerHourPerRps < best.usdPerHourPerRps) {
      best = {
        variant: { model: query.model, gpu: c.profile.gpu, tp: c.profile.tp, role },
        usdPerHour: c.usdPerHour,
        capacityRps,
        usdPerHourPerRps,
      };
    }
  }
  if (best !== undefined) return best;
  const b = buckets.findIndex((_, i) =>
    candidates.every((c) => (c.profile.capacities[i] as BucketCapacity).maxRateRps <= 0),
  );
  const index = b >= 0 ? b : 0;
  return refuseUnreachable(query.model, buckets[index] as LengthBucket, index, candidates, query.objectives);
}
