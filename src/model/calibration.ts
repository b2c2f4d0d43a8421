import { assertNever } from '../core/assert.ts';
import type { GpuId, ModelId } from '../core/ids.ts';
import { calibrationFor, engineProfile } from './engines.ts';
import { gpuSpec } from './gpus.ts';
import { modelSpec } from './models.ts';
import { OPERATOR_COEFFICIENTS } from './operators/coefficients.ts';
import {
  allReduceMs,
  allReduceRegimesFor,
  contextAttentionMs,
  gemmMs,
  generationAttentionMs,
  moeCoefficientsFor,
  moeMs,
  type Roofline,
} from './operators/operators.ts';
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
  'op-gemm',
  'op-context-attention',
  'op-generation-attention',
  'op-all-reduce-graph',
  'op-all-reduce-eager',
  'op-moe',
  'op-moe-pooled',
] as const;

/** A report group. */
export type CalibrationGroup = (typeof CALIBRATION_GROUPS)[number];

/** What a point measured. */
export type CalibrationOp =
  | 'step'
  | 'gemm'
  | 'attention-prefill'
  | 'attention-decode'
  | 'all-reduce'
  | OperatorTableOp;

/** Rows of the AIConfigurator operator tables (vLLM 0.14.0 kernels), one kernel each. */
export type OperatorTableOp =
  | 'op-gemm'
  | 'op-context-attention'
  | 'op-generation-attention'
  | 'op-all-reduce-graph'
  | 'op-all-reduce-eager'
  | 'op-moe'
  | 'op-moe-pooled';

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
  /**
   * `op-*`: the table row's key columns, in the CSV's order: gemm m, n, k; attention batch,
   * tokens (context: per sequence; generation: KV length - 1), heads, KV heads; all-reduce
   * elements; MoE tokens, hidden, inter, top-k, experts, MoE tp.
   */
  readonly args?: readonly number[];
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
      // The calibration is already merged into `gpu`, so the model runs under the empty profile,
      // keeping only the engine's choice of model (operators or classic roofline).
      const profile = {
        ...engineProfile('vllm'),
        classicRoofline: engineProfile(engine).classicRoofline === true,
      };
      perf = createPerfModel(gpu, modelSpec(modelId), tp, { engine: profile });
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
  if (point.op.startsWith('op-')) return predictOperatorRow(point);
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
      // Vidur measured NCCL, which is what the classic model's ring formula describes.
      return perf.ncclAllReduceTimeMs(required(point.bytes, 'bytes', point));
    case 'op-gemm':
    case 'op-context-attention':
    case 'op-generation-attention':
    case 'op-all-reduce-graph':
    case 'op-all-reduce-eager':
    case 'op-moe':
    case 'op-moe-pooled':
      return predictOperatorRow(point);
    default:
      return assertNever(point.op, 'calibration op');
  }
}

/** The GPU table each operator row was measured on, by catalogue GPU. */
const TABLE_OF_GPU: Readonly<Record<string, keyof typeof OPERATOR_COEFFICIENTS>> = {
  h100: 'h100',
  h200: 'h200',
  'a100-80gb': 'a100',
};

/** Predicts one operator-table row with the fitted operator formulas (src/model/operators). */
export function predictOperatorRow(point: CalibrationPoint): number {
  const table = TABLE_OF_GPU[point.gpu];
  if (table === undefined) throw new Error(`no operator table for gpu ${point.gpu}`);
  const c = OPERATOR_COEFFICIENTS[table];
  const gpu = gpuSpec(point.gpu);
  const r: Roofline = { flopsPerMs: gpu.peakFlopsPerS / 1000, bytesPerMs: gpu.hbmBandwidthBytesPerS / 1000 };
  const a = required(point.args, 'args', point);
  const at = (i: number): number => a[i]!;
  switch (point.op) {
    case 'op-gemm':
      return gemmMs(c.gemm, r, at(0), at(1), at(2));
    case 'op-context-attention': {
      const [b, s] = [at(0), at(1)];
      return contextAttentionMs(c.contextAttention, r, b * s, (b * s * (s + 1)) / 2, at(2), at(3));
    }
    case 'op-generation-attention':
      return generationAttentionMs(c.generationAttention, r, at(0), at(0) * (at(1) + 1), at(2), at(3));
    case 'op-all-reduce-graph':
    case 'op-all-reduce-eager': {
      const byTp = point.op === 'op-all-reduce-graph' ? c.allReduce.graph : c.allReduce.eager;
      const regimes = required(allReduceRegimesFor(byTp, point.tp), 'regimes', point);
      return allReduceMs(regimes, at(0) * 2);
    }
    case 'op-moe':
    case 'op-moe-pooled': {
      // The table routes tokens evenly: T tokens touch min(E, T k) experts. `op-moe` uses the
      // shape's own coefficients (as the step model does for a catalogue model), `op-moe-pooled`
      // the pooled curve an unmeasured shape would get.
      const touched = Math.min(at(4), at(0) * at(3));
      const moe = point.op === 'op-moe' ? moeCoefficientsFor(c, at(1), at(2), at(3), at(4), at(5)) : c.moe;
      return moeMs(moe, r, at(0), at(1), at(2) / at(5), at(3), touched);
    }
    default:
      throw new Error(`not an operator row: ${point.op}`);
  }
}

/** The catalogue GPU each AIConfigurator table folder stands for. */
export const OPERATOR_TABLE_GPUS: Readonly<Record<string, GpuId>> = {
  h100: 'h100',
  h200: 'h200',
  a100: 'a100-80gb',
};

/** The committed CSV of each operator group, under data/samples/calibration/aiconfigurator/<gpu>/. */
export const OPERATOR_TABLE_FILES: Readonly<Record<OperatorTableOp, string>> = {
  'op-gemm': 'gemm.csv',
  'op-context-attention': 'context-attention.csv',
  'op-generation-attention': 'generation-attention.csv',
  'op-all-reduce-graph': 'all-reduce.csv',
  'op-all-reduce-eager': 'all-reduce.csv',
  'op-moe': 'moe.csv',
  'op-moe-pooled': 'moe.csv',
};

/**
 * The held-out rows of one committed operator table as calibration points. The fit
 * (scripts/fit-operators.py) sorts each table by its key columns and fits on the even rows; the
 * odd rows, returned here, were never seen by it. Pure: the caller reads the file.
 */
export function operatorHeldOutPoints(table: string, op: OperatorTableOp, csv: string): CalibrationPoint[] {
  const gpu = OPERATOR_TABLE_GPUS[table];
  if (gpu === undefined) throw new Error(`unknown operator table ${table}`);
  const lines = csv.trim().split('\n').slice(1);
  const isAllReduce = op === 'op-all-reduce-graph' || op === 'op-all-reduce-eager';
  const backend = op === 'op-all-reduce-graph' ? 'graph' : 'eager';
  const rows = lines.map((line) => line.split(','));
  const out: CalibrationPoint[] = [];
  const emit = (series: string[][], tp: number, keys: number): void => {
    const parsed = series.map((row) => row.map(Number));
    // Stable sort on the key columns, first column first: numpy's lexsort, as the fit does.
    const order = parsed
      .map((row, i) => ({ row, i }))
      .sort((x, y) => {
        for (let k = 0; k < keys; k++) {
          const d = x.row[k]! - y.row[k]!;
          if (d !== 0) return d;
        }
        return x.i - y.i;
      });
    for (let i = 1; i < order.length; i += 2) {
      const row = order[i]!.row;
      const args = row.slice(0, keys);
      out.push({
        group: op,
        source: `aiconfigurator-${table}`,
        engine: 'vllm',
        gpu,
        tp,
        op,
        args,
        measuredMs: row[row.length - 1]!,
        label: `${op.slice(3)} ${args.join('x')}`,
      });
    }
  };
  if (isAllReduce) {
    for (const tp of [2, 4, 8]) {
      const series = rows.filter((r) => r[0] === backend && Number(r[1]) === tp).map((r) => r.slice(2));
      if (series.length > 0) emit(series, tp, 1);
    }
  } else {
    const keys = rows[0]!.length - 1;
    emit(rows, 1, keys);
  }
  return op === 'op-moe' || op === 'op-moe-pooled' ? out.map((p) => ({ ...p, tp: p.args![5]! })) : out;
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
