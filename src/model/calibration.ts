import { assertNever } from '../core/assert.ts';
import type { GpuId, ModelId } from '../core/ids.ts';
import { calibrationFor, engineProfile } from './engines.ts';
import { gpuSpec } from './gpus.ts';
import { modelSpec } from './models.ts';
import { createPerfModel, type RooflinePerfModel } from './perf.ts';
import type { GpuCalibration, GpuSpec, StepShape } from './types.ts';

/**
 * Calibration points and their evaluation. Pure: the points arrive already parsed (the committed
 * JSON under data/samples/calibration/), so the report script and the tests share this code.
 */

/** Report groups, in report order. */
export const CALIBRATION_GROUPS = [
  'prefill',
  'decode',
  'gemm',
  'attention',
  'all-reduce',
  'derived-prefill',
  'derived-decode',
] as const;

/** A report group. */
export type CalibrationGroup = (typeof CALIBRATION_GROUPS)[number];

/** What a point measured. */
export type CalibrationOp = 'step' | 'gemm' | 'attention-prefill' | 'attention-decode' | 'all-reduce';

/** One measured (or derived) time beside the inputs needed to predict it. */
export interface CalibrationPoint {
  readonly group: CalibrationGroup;
  /** Key into the data set's sources (see data/samples/calibration/README.md). */
  readonly source: string;
  /** Engine profile the measurement ran under. */
  readonly engine: string;
  readonly gpu: GpuId;
  readonly tp: number;
  /** Absent for all-reduce points (only the GPU and tp matter). */
  readonly model?: ModelId;
  readonly op: CalibrationOp;
  /** `step`: the engine step measured. */
  readonly shape?: StepShape;
  /** `gemm`: tokens in the batch (sum of the four projection GEMMs of one layer). */
  readonly tokens?: number;
  /** `attention-prefill`: query-key pairs of one layer; `attention-decode`: KV tokens read. */
  readonly pairs?: number;
  readonly contextTokens?: number;
  /** `all-reduce`: message size. */
  readonly bytes?: number;
  readonly measuredMs: number;
  /** Human-readable description of the point. */
  readonly label: string;
  /** Set when the point is kept for the record but left out of the statistics, with the reason. */
  readonly excluded?: string;
}

/** A committed calibration file: where the numbers came from, and the points. */
export interface CalibrationFile {
  readonly source: string;
  readonly description: string;
  readonly licence: string;
  readonly url: string;
  readonly points: readonly CalibrationPoint[];
}

/** Supplies the calibration to use for a GPU under an engine profile (the fitter swaps this). */
export type CalibrationLookup = (gpu: GpuSpec, engine: string) => GpuCalibration;

/** The committed calibration: the GPU catalogue's factors with the engine profile applied. */
export const committedCalibration: CalibrationLookup = (gpu, engine) =>
  calibrationFor(gpu, engineProfile(engine));

/** A tp every all-reduce point can use with a real model (64 heads, 8 KV heads). */
const ALL_REDUCE_CARRIER_MODEL = 'llama-2-70b';

/** Builds perf models once per (gpu, model, tp, engine) for one calibration lookup. */
export class PerfModelCache {
  private readonly cache = new Map<string, RooflinePerfModel>();
  constructor(private readonly lookup: CalibrationLookup = committedCalibration) {}

  get(gpuId: GpuId, modelId: ModelId, tp: number, engine: string): RooflinePerfModel {
    const key = `${gpuId}|${modelId}|${tp}|${engine}`;
    let perf = this.cache.get(key);
    if (perf === undefined) {
      const base = gpuSpec(gpuId);
      const gpu: GpuSpec = { ...base, calibration: this.lookup(base, engine) };
      // The calibration is already merged into `gpu`, so the model runs under the empty profile.
      perf = createPerfModel(gpu, modelSpec(modelId), tp, { engine: engineProfile('vllm') });
      this.cache.set(key, perf);
    }
    return perf;
  }
}

function required<T>(value: T | undefined, field: string, point: CalibrationPoint): T {
  if (value === undefined) throw new Error(`calibration point '${point.label}' lacks ${field}`);
  return value;
}

/** Predicts one point's time with the perf model. */
export function predictPoint(point: CalibrationPoint, cache: PerfModelCache): number {
  const modelId =
    point.op === 'all-reduce' ? ALL_REDUCE_CARRIER_MODEL : required(point.model, 'model', point);
  const perf = cache.get(point.gpu, modelId, point.tp, point.engine);
  switch (point.op) {
    case 'step':
      return perf.stepTimeMs(required(point.shape, 'shape', point));
    case 'gemm':
      return perf.layerGemmTimeMs(required(point.tokens, 'tokens', point));
    case 'attention-prefill':
      return perf.prefillAttentionTimeMs(required(point.pairs, 'pairs', point));
    case 'attention-decode':
      return perf.decodeAttentionTimeMs(required(point.contextTokens, 'contextTokens', point));
    case 'all-reduce':
      return perf.allReduceTimeMs(required(point.bytes, 'bytes', point));
    default:
      return assertNever(point.op, 'calibration op');
  }
}

/** A point with its prediction. */
export interface EvaluatedPoint {
  readonly point: CalibrationPoint;
  readonly predictedMs: number;
  /** (predicted - measured) / measured. */
  readonly relativeError: number;
}

/** Error statistics of one group (excluded points left out). */
export interface GroupStats {
  readonly group: CalibrationGroup;
  readonly count: number;
  readonly medianAbsError: number;
  readonly worstAbsError: number;
  /** Median signed error: a bias towards over (+) or under (-) prediction. */
  readonly medianError: number;
}

/** Predicts every point. */
export function evaluatePoints(
  points: readonly CalibrationPoint[],
  lookup: CalibrationLookup = committedCalibration,
): EvaluatedPoint[] {
  const cache = new PerfModelCache(lookup);
  return points.map((point) => {
    const predictedMs = predictPoint(point, cache);
    return { point, predictedMs, relativeError: (predictedMs - point.measuredMs) / point.measuredMs };
  });
}

/** The median of a non-empty list (mean of the middle two for even lengths). */
export function median(values: readonly number[]): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/** Error statistics of the evaluated points (excluded ones left out), bucketed by `key`. */
export function statsBy(
  evaluated: readonly EvaluatedPoint[],
  key: (p: CalibrationPoint) => string,
): Map<string, Omit<GroupStats, 'group'>> {
  const buckets = new Map<string, number[]>();
  for (const e of evaluated) {
    if (e.point.excluded !== undefined) continue;
    const k = key(e.point);
    let list = buckets.get(k);
    if (list === undefined) {
      list = [];
      buckets.set(k, list);
    }
    list.push(e.relativeError);
  }
  const out = new Map<string, Omit<GroupStats, 'group'>>();
  for (const [k, errors] of buckets) {
    const abs = errors.map(Math.abs);
    out.set(k, {
      count: errors.length,
      medianAbsError: median(abs),
      worstAbsError: Math.max(...abs),
      medianError: median(errors),
    });
  }
  return out;
}

/** Per-group statistics, in report order (groups without points are left out). */
export function groupStats(evaluated: readonly EvaluatedPoint[]): GroupStats[] {
  const byGroup = statsBy(evaluated, (p) => p.group);
  const out: GroupStats[] = [];
  for (const group of CALIBRATION_GROUPS) {
    const s = byGroup.get(group);
    if (s !== undefined) out.push({ group, ...s });
  }
  return out;
}

/** Target: median absolute error of the measured prefill and decode groups. */
export const CALIBRATION_TARGET_MEDIAN_ABS_ERROR = 0.1;
