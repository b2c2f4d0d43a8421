/**
 * The workload a GPU plan is made for: request lengths grouped into (input, output) buckets, each
 * with its share of the requests. Mélange buckets requests by size because a GPU's cost-efficiency
 * depends on it: small requests favour cheap, low-bandwidth GPUs, long prompts favour compute.
 */
import { invalidArgument } from '../../core/errors.ts';

/**
 * One past request's lengths, or one histogram cell when `weight` is given. `generatedTokens` is
 * what the request did generate, known once it completed (a trace's history, or a host's completed
 * requests): the planner sizes for a distribution, never for a pending request's future.
 */
export interface LengthSample {
  readonly inputTokens: number;
  readonly generatedTokens: number;
  /** Relative weight (a histogram count); default 1. */
  readonly weight?: number;
}

/** Requests whose lengths fall in one cell of the bucket grid. */
export interface LengthBucket {
  /** Stable label, e.g. `in 512-2047 / out 64-255`. */
  readonly label: string;
  readonly inputTokensMin: number;
  /** Inclusive; Infinity for the last edge. */
  readonly inputTokensMax: number;
  readonly generatedTokensMin: number;
  readonly generatedTokensMax: number;
  /**
   * The lengths the bucket is profiled at: the largest input and output of its samples, so every
   * request in the bucket is no harder to serve than the profile says.
   */
  readonly inputTokens: number;
  readonly generatedTokens: number;
  /** Fraction of all requests in this bucket, (0, 1]; the shares of a workload sum to 1. */
  readonly share: number;
}

/**
 * Bucket edges, tokens: each bucket spans a factor of 4, from short chat turns to long-context
 * prompts. Bucket i holds lengths in [edge[i-1], edge[i]).
 */
export const INPUT_TOKEN_EDGES: readonly number[] = [128, 512, 2048, 8192, 32_768];
export const OUTPUT_TOKEN_EDGES: readonly number[] = [64, 256, 1024, 4096];
/** A workload is at most this many samples (a histogram is a handful of weighted cells). */
export const LENGTH_SAMPLES_MAX = 1_000_000;

function cellOf(edges: readonly number[], tokens: number): number {
  let i = 0;
  while (i < edges.length && tokens >= (edges[i] as number)) i++;
  return i;
}

function cellRange(edges: readonly number[], cell: number): [number, number] {
  const min = cell === 0 ? 1 : (edges[cell - 1] as number);
  const max = cell < edges.length ? (edges[cell] as number) - 1 : Number.POSITIVE_INFINITY;
  return [min, max];
}

function validateSample(s: LengthSample, i: number): number {
  if (!Number.isInteger(s.inputTokens) || s.inputTokens < 1) {
    throw invalidArgument(`samples[${i}].inputTokens`, s.inputTokens, 'a positive integer');
  }
  if (!Number.isInteger(s.generatedTokens) || s.generatedTokens < 1) {
    throw invalidArgument(`samples[${i}].generatedTokens`, s.generatedTokens, 'a positive integer');
  }
  const weight = s.weight ?? 1;
  if (!(Number.isFinite(weight) && weight >= 0)) {
    throw invalidArgument(`samples[${i}].weight`, weight, 'a finite number >= 0');
  }
  return weight;
}

interface Cell {
  weight: number;
  inputMax: number;
  outputMax: number;
}

/**
 * Groups length samples (or weighted histogram cells) into buckets on the fixed grid, dropping
 * empty cells; buckets come out ordered by input then output cell, so the result is deterministic.
 * Throws SY_ERR_INVALID_ARGUMENT for no samples, bad lengths or an all-zero weight.
 */
export function bucketize(samples: readonly LengthSample[]): LengthBucket[] {
  if (samples.length === 0) throw invalidArgument('samples', '[]', 'at least one request length');
  if (samples.length > LENGTH_SAMPLES_MAX) {
    throw invalidArgument('samples', samples.length, `at most ${LENGTH_SAMPLES_MAX} samples`);
  }
  const cells = new Map<number, Cell>();
  let total = 0;
  samples.forEach((s, i) => {
    const weight = validateSample(s, i);
    if (weight === 0) return;
    const key =
      cellOf(INPUT_TOKEN_EDGES, s.inputTokens) * 100 + cellOf(OUTPUT_TOKEN_EDGES, s.generatedTokens);
    const cell = cells.get(key) ?? { weight: 0, inputMax: 0, outputMax: 0 };
    cell.weight += weight;
    cell.inputMax = Math.max(cell.inputMax, s.inputTokens);
    cell.outputMax = Math.max(cell.outputMax, s.generatedTokens);
    cells.set(key, cell);
    total += weight;
  });
  if (total <= 0) throw invalidArgument('samples', 'all weights 0', 'some weight > 0');
  return [...cells.keys()]
    .sort((a, b) => a - b)
    .map((key) => {
      const cell = cells.get(key) as Cell;
      const [inMin, inMax] = cellRange(INPUT_TOKEN_EDGES, Math.floor(key / 100));
      const [outMin, outMax] = cellRange(OUTPUT_TOKEN_EDGES, key % 100);
      const range = (lo: number, hi: number): string =>
        hi === Number.POSITIVE_INFINITY ? `${lo}+` : `${lo}-${hi}`;
      return {
        label: `in ${range(inMin, inMax)} / out ${range(outMin, outMax)}`,
        inputTokensMin: inMin,
        inputTokensMax: inMax,
        generatedTokensMin: outMin,
        generatedTokensMax: outMax,
        inputTokens: cell.inputMax,
        generatedTokens: cell.outputMax,
        share: cell.weight / total,
      };
    });
}
