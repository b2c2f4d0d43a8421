/**
 * Latency statistics for the twin's reports: exact percentiles over collected samples, CDF points
 * for the charts, and a bounded log-bucketed histogram for streams too large to keep.
 *
 * Percentile convention, everywhere in this module: q is a fraction in [0, 1] (p99 is 0.99) and
 * exact percentiles interpolate linearly between closest ranks (Hyndman and Fan type 7, numpy's
 * default): rank = q * (n - 1), value = v[floor(rank)] + frac(rank) * (v[ceil(rank)] - v[floor(rank)]).
 */

import { assert } from '../core/assert.ts';

/** Mean and percentiles of one latency, in ms. */
export interface LatencyStats {
  readonly mean: number;
  readonly p50: number;
  readonly p90: number;
  readonly p99: number;
  /**
   * Number of samples behind the figures. With no samples every figure is 0 (not NaN, which JSON
   * cannot carry) and count is 0. Optional so older producers stay valid.
   */
  readonly count?: number;
}

/** Stats for no samples: zeros, because NaN does not survive JSON. `count: 0` tells them apart. */
export const EMPTY_LATENCY_STATS: LatencyStats = Object.freeze({ mean: 0, p50: 0, p90: 0, p99: 0, count: 0 });

function assertFraction(q: number): void {
  if (!(q >= 0 && q <= 1)) throw new RangeError(`percentile q must be a fraction in [0, 1], got ${q}`);
}

/**
 * The q-quantile of ascending `sorted[0..count)`, interpolated linearly between closest ranks.
 * Returns 0 when count is 0.
 */
export function quantileSorted(sorted: ArrayLike<number>, q: number, count = sorted.length): number {
  assertFraction(q);
  if (count <= 0) return 0;
  const rank = q * (count - 1);
  const lo = Math.floor(rank);
  const hi = Math.min(lo + 1, count - 1);
  const vLo = sorted[lo] as number;
  const vHi = sorted[hi] as number;
  return vLo + (rank - lo) * (vHi - vLo);
}

/** An ascending copy of the first `count` values; Float64Array sorts numerically, no comparator. */
function sortedCopy(values: Float64Array | readonly number[], count: number): Float64Array {
  const out =
    values instanceof Float64Array ? values.slice(0, count) : Float64Array.from(values.slice(0, count));
  return out.sort();
}

/**
 * Mean, p50, p90 and p99 of the first `count` values (all of them by default). `values` is not
 * modified. No samples gives zeros with `count: 0` (see EMPTY_LATENCY_STATS). The samples must be
 * finite: a NaN would make the order undefined.
 */
export function latencyStats(values: Float64Array | readonly number[], count = values.length): LatencyStats {
  assert(count >= 0 && count <= values.length, `count ${count} outside [0, ${values.length}]`);
  if (count === 0) return EMPTY_LATENCY_STATS;
  const sorted = sortedCopy(values, count);
  return latencyStatsSorted(sorted);
}

/** Like latencyStats, for values already in ascending order (skips the copy and sort). */
export function latencyStatsSorted(sorted: ArrayLike<number>, count = sorted.length): LatencyStats {
  if (count === 0) return EMPTY_LATENCY_STATS;
  let sum = 0;
  for (let i = 0; i < count; i++) sum += sorted[i] as number;
  return {
    mean: sum / count,
    p50: quantileSorted(sorted, 0.5, count),
    p90: quantileSorted(sorted, 0.9, count),
    p99: quantileSorted(sorted, 0.99, count),
    count,
  };
}

/**
 * At most `maxPoints` values from ascending `sorted` that keep its distribution: the quantiles at
 * evenly spaced fractions 0, 1/(m-1), ..., 1, so the minimum and maximum always survive. Returns a
 * plain copy when the input already fits. The result is ascending and is what the simulator
 * stores in SimReportData.samples.
 */
export function downsampleSorted(sorted: ArrayLike<number>, maxPoints: number): number[] {
  assert(
    Number.isInteger(maxPoints) && maxPoints >= 2,
    `maxPoints must be an integer >= 2, got ${maxPoints}`,
  );
  const n = sorted.length;
  if (n <= maxPoints) return Array.from(sorted);
  const out = new Array<number>(maxPoints);
  for (let k = 0; k < maxPoints; k++) out[k] = quantileSorted(sorted, k / (maxPoints - 1), n);
  return out;
}

/** Points of an empirical CDF: x ascending, y the cumulative fraction in [0, 1]. */
export interface CdfPoints {
  readonly x: number[];
  readonly y: number[];
}

/**
 * CDF points for a chart from samples in any order, at most `maxPoints` of them. The i-th of n
 * ascending values gets y = i / (n - 1): under the type-7 convention that value is exactly the
 * i/(n-1) quantile, so the line drawn through the points is the inverse of quantileSorted, and
 * points made by downsampleSorted land back on the same curve.
 */
export function cdfPoints(values: Float64Array | readonly number[], maxPoints = 1000): CdfPoints {
  const sorted = sortedCopy(values, values.length);
  const x = downsampleSorted(sorted, maxPoints);
  const n = x.length;
  const y = x.map((_, i) => (n === 1 ? 1 : i / (n - 1)));
  return { x, y };
}

// --- LatencyHistogram -------------------------------------------------------------------------

/**
 * Sub-buckets per power of two. 128 makes each bucket at most 1/128 wide relative to its lower
 * bound, so any value inside is within 0.8% of any other and within 0.4% of the midpoint.
 */
const SUB_BUCKET_BITS = 7;
const SUB_BUCKETS = 1 << SUB_BUCKET_BITS;
/** Smallest resolved value: 2^-20 ms, about 1 ns. Smaller positive values share the first bucket. */
const EXP_MIN = -20;
/** Values at or above 2^30 ms (about 12 days) share the last bucket. */
const EXP_MAX = 30;
const BUCKETS = (EXP_MAX - EXP_MIN) * SUB_BUCKETS;
/** IEEE 754 biased exponent, shifted to line up with the sub-bucket bits of the high word. */
const HIGH_WORD_MIN = ((EXP_MIN + 1023) << SUB_BUCKET_BITS) >>> 0;

/**
 * Scratch space shared by all histograms to read a double's bits without allocating. The high
 * word (sign, 11 exponent bits, top 20 mantissa bits) sits at index 1 on little-endian machines.
 */
const scratchF64 = new Float64Array(1);
const scratchU32 = new Uint32Array(scratchF64.buffer);
const HIGH = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1 ? 1 : 0;

/** Lower bound of bucket `i`. */
function bucketLow(i: number): number {
  const exp = EXP_MIN + Math.floor(i / SUB_BUCKETS);
  return 2 ** exp * (1 + (i % SUB_BUCKETS) / SUB_BUCKETS);
}

/**
 * A log-bucketed latency histogram for streams too large to keep (inter-token latencies: hundreds
 * of millions of samples). Percentiles are within about 0.4% of the exact value for values in
 * [1 ns, 12 days]; the mean, minimum and maximum are exact. Memory is fixed (about 51 KB) and
 * `record` is O(1) without allocation: the bucket comes from the double's exponent and top
 * mantissa bits, not from a logarithm. Values are in ms; zero, negative and NaN values count as 0.
 */
export class LatencyHistogram {
  private readonly counts = new Float64Array(BUCKETS);
  /** Values <= 0 (tokens emitted in the same step) are kept apart: they have no logarithm. */
  private zeroCount = 0;
  private total = 0;
  private sum = 0;
  private minValue = Number.POSITIVE_INFINITY;
  private maxValue = Number.NEGATIVE_INFINITY;

  /** Records `count` occurrences of `valueMs` (counts stay exact up to 2^53 in total). */
  record(valueMs: number, count = 1): void {
    if (count <= 0) return;
    let v = valueMs;
    // Zero, negatives and NaN all count as 0, so one bad sample cannot poison the sum or the order.
    if (!(v > 0)) v = 0;
    this.total += count;
    this.sum += v * count;
    if (v < this.minValue) this.minValue = v;
    if (v > this.maxValue) this.maxValue = v;
    if (v === 0) {
      this.zeroCount += count;
      return;
    }
    scratchF64[0] = v;
    let i = ((scratchU32[HIGH] as number) >>> (20 - SUB_BUCKET_BITS)) - HIGH_WORD_MIN;
    if (i < 0) i = 0;
    else if (i >= BUCKETS) i = BUCKETS - 1;
    this.counts[i] = (this.counts[i] as number) + count;
  }

  /**
   * Records `count` occurrences of each gap `endsMs[j] - endsMs[j - 1]`, j from `from` to `to - 1`,
   * in that order: the same result as that many `record` calls, to the last bit (the same sum in the
   * same order; bucket counts are whole numbers, so adding a run of equal buckets at once is exact).
   * For a fused decode step's sub-steps: one call instead of one per token, with the running
   * figures in locals instead of read and written back through the object on every sample.
   */
  recordGaps(endsMs: Float64Array, from: number, to: number, count: number): void {
    if (count <= 0) return;
    const counts = this.counts;
    let total = this.total;
    let sum = this.sum;
    let minValue = this.minValue;
    let maxValue = this.maxValue;
    let zeroCount = this.zeroCount;
    // Consecutive gaps mostly fall in one bucket: its count is added once per run of them.
    let bucket = -1;
    let pending = 0;
    for (let j = from; j < to; j++) {
      let v = (endsMs[j] as number) - (endsMs[j - 1] as number);
      if (!(v > 0)) v = 0;
      total += count;
      sum += v * count;
      if (v < minValue) minValue = v;
      if (v > maxValue) maxValue = v;
      if (v === 0) {
        zeroCount += count;
        continue;
      }
      scratchF64[0] = v;
      let i = ((scratchU32[HIGH] as number) >>> (20 - SUB_BUCKET_BITS)) - HIGH_WORD_MIN;
      if (i < 0) i = 0;
      else if (i >= BUCKETS) i = BUCKETS - 1;
      if (i !== bucket) {
        if (bucket >= 0) counts[bucket] = (counts[bucket] as number) + pending;
        bucket = i;
        pending = 0;
      }
      pending += count;
    }
    if (bucket >= 0) counts[bucket] = (counts[bucket] as number) + pending;
    this.total = total;
    this.sum = sum;
    this.minValue = minValue;
    this.maxValue = maxValue;
    this.zeroCount = zeroCount;
  }

  /** Adds every sample of `other` to this histogram. */
  merge(other: LatencyHistogram): void {
    for (let i = 0; i < BUCKETS; i++)
      this.counts[i] = (this.counts[i] as number) + (other.counts[i] as number);
    this.zeroCount += other.zeroCount;
    this.total += other.total;
    this.sum += other.sum;
    if (other.minValue < this.minValue) this.minValue = other.minValue;
    if (other.maxValue > this.maxValue) this.maxValue = other.maxValue;
  }

  /** Forgets every sample. */
  reset(): void {
    this.counts.fill(0);
    this.zeroCount = 0;
    this.total = 0;
    this.sum = 0;
    this.minValue = Number.POSITIVE_INFINITY;
    this.maxValue = Number.NEGATIVE_INFINITY;
  }

  /** Number of samples recorded. */
  get count(): number {
    return this.total;
  }

  /** Exact mean in ms; 0 when empty. */
  mean(): number {
    return this.total === 0 ? 0 : this.sum / this.total;
  }

  /** Exact minimum in ms; 0 when empty. */
  min(): number {
    return this.total === 0 ? 0 : this.minValue;
  }

  /** Exact maximum in ms; 0 when empty. */
  max(): number {
    return this.total === 0 ? 0 : this.maxValue;
  }

  /**
   * The q-quantile (q a fraction in [0, 1]) in ms, under the same type-7 rank convention as
   * quantileSorted; inside a bucket the samples are taken as evenly spread. Clamped to the exact
   * minimum and maximum, so percentile(0) and percentile(1) are exact. 0 when empty.
   */
  percentile(q: number): number {
    assertFraction(q);
    if (this.total === 0) return 0;
    const rank = q * (this.total - 1);
    if (rank <= 0) return this.minValue;
    if (rank >= this.total - 1) return this.maxValue;
    if (rank < this.zeroCount) return 0;
    let seen = this.zeroCount;
    for (let i = 0; i < BUCKETS; i++) {
      const c = this.counts[i] as number;
      if (c === 0) continue;
      if (rank < seen + c) {
        const low = bucketLow(i);
        const high = bucketLow(i + 1);
        // Sample j of the bucket's c sits at the centre of the j-th of c equal slices.
        const v = low + Math.min((rank - seen + 0.5) / c, 1) * (high - low);
        return Math.min(Math.max(v, this.minValue), this.maxValue);
      }
      seen += c;
    }
    return this.maxValue;
  }

  /** Mean, p50, p90 and p99 as LatencyStats (zeros with count 0 when empty). */
  stats(): LatencyStats {
    if (this.total === 0) return EMPTY_LATENCY_STATS;
    return {
      mean: this.mean(),
      p50: this.percentile(0.5),
      p90: this.percentile(0.9),
      p99: this.percentile(0.99),
      count: this.total,
    };
  }
}
