/**
 * Length distributions: fixed, uniform, lognormal (by mean and CV), normal (by mean and standard
 * deviation, clipped) and empirical (resampled from a trace). A PairSampler draws a request's (input, output) pair; when both sides are empirical over
 * the same trace it draws one record for both, keeping the trace's length correlation.
 */
import { assertNever } from '../core/assert.ts';
import type { Rng } from '../core/rng.ts';
import { servableTokens } from './common.ts';
import type { LengthDist } from './spec.ts';
import { type LengthPair, readTraceLengths } from './traces/read.ts';
import type { TraceFormat } from './types.ts';

/** Which column an empirical distribution reads when its `column` is not given. */
export type LengthRole = 'input' | 'output';

/** Loads a trace's lengths; createWorkload passes a cached one so each file is read once. */
export type LengthsLoader = (trace: string, format: TraceFormat | undefined) => readonly LengthPair[];

/**
 * A loader that reads each (trace, format) once. A row's 0 prompt or 0 output tokens become 1
 * (servableTokens: the engine serves no empty prompt and no zero-token answer).
 */
export function cachedLengthsLoader(read: LengthsLoader = readTraceLengths): LengthsLoader {
  const cache = new Map<string, readonly LengthPair[]>();
  return (trace, format) => {
    const key = `${format ?? ''}\u0000${trace}`;
    let lengths = cache.get(key);
    if (lengths === undefined) {
      lengths = servableLengths(read(trace, format));
      cache.set(key, lengths);
    }
    return lengths;
  };
}

/** The pairs with every count at least 1; the same array when none is 0. */
function servableLengths(lengths: readonly LengthPair[]): readonly LengthPair[] {
  if (lengths.every((p) => p.inputTokens >= 1 && p.outputTokens >= 1)) return lengths;
  return lengths.map((p) => ({
    inputTokens: servableTokens(p.inputTokens),
    outputTokens: servableTokens(p.outputTokens),
  }));
}

/** Draws one count per call. */
export interface LengthSampler {
  sample(): number;
}

class Fixed implements LengthSampler {
  constructor(private readonly tokens: number) {}
  sample(): number {
    return this.tokens;
  }
}

class Uniform implements LengthSampler {
  constructor(
    private readonly rng: Rng,
    private readonly lo: number,
    private readonly hi: number,
  ) {}
  sample(): number {
    return this.lo + this.rng.int(this.hi - this.lo + 1);
  }
}

/** Lognormal with the given mean and CV: sigma² = ln(1 + cv²), mu = ln(mean) - sigma² / 2. */
class LogNormal implements LengthSampler {
  private readonly mu: number;
  private readonly sigma: number;
  constructor(
    private readonly rng: Rng,
    mean: number,
    cv: number,
    private readonly min: number,
    private readonly max: number,
  ) {
    const variance = Math.log(1 + cv * cv);
    this.sigma = Math.sqrt(variance);
    this.mu = Math.log(mean) - variance / 2;
  }
  sample(): number {
    const x = Math.round(Math.exp(this.mu + this.sigma * this.rng.normal()));
    return Math.max(this.min, Math.min(this.max, x));
  }
}

/** Normal with the given mean and standard deviation, clipped to [min, max], then rounded. */
class Normal implements LengthSampler {
  constructor(
    private readonly rng: Rng,
    private readonly mean: number,
    private readonly stdDev: number,
    private readonly min: number,
    private readonly max: number,
  ) {}
  sample(): number {
    const x = this.mean + this.stdDev * this.rng.normal();
    return Math.round(Math.max(this.min, Math.min(this.max, x)));
  }
}

class Empirical implements LengthSampler {
  constructor(
    private readonly rng: Rng,
    private readonly values: Float64Array,
  ) {}
  sample(): number {
    return this.values[this.rng.int(this.values.length)] as number;
  }
}

function column(lengths: readonly LengthPair[], role: LengthRole): Float64Array {
  const out = new Float64Array(lengths.length);
  for (let i = 0; i < lengths.length; i++) {
    const p = lengths[i] as LengthPair;
    out[i] = role === 'input' ? p.inputTokens : p.outputTokens;
  }
  return out;
}

/** A sampler for one distribution; `role` picks the column of an empirical one. */
export function lengthSampler(
  dist: LengthDist,
  role: LengthRole,
  rng: Rng,
  load: LengthsLoader,
): LengthSampler {
  switch (dist.kind) {
    case 'fixed':
      return new Fixed(dist.tokens);
    case 'uniform':
      return new Uniform(rng, dist.lo, dist.hi);
    case 'lognormal':
      return dist.cv === 0
        ? new Fixed(Math.max(dist.min, Math.min(dist.max ?? Number.POSITIVE_INFINITY, Math.round(dist.mean))))
        : new LogNormal(rng, dist.mean, dist.cv, dist.min, dist.max ?? Number.POSITIVE_INFINITY);
    case 'normal':
      return dist.stdDev === 0
        ? new Fixed(Math.round(Math.max(dist.min, Math.min(dist.max ?? Number.POSITIVE_INFINITY, dist.mean))))
        : new Normal(rng, dist.mean, dist.stdDev, dist.min, dist.max ?? Number.POSITIVE_INFINITY);
    case 'empirical':
      return new Empirical(rng, column(load(dist.trace, dist.format), dist.column ?? role));
    default:
      return assertNever(dist, 'length distribution');
  }
}

/** Draws a request's input and output lengths into its two fields (no allocation per draw). */
export interface PairSampler {
  inputTokens: number;
  outputTokens: number;
  sample(): void;
}

class IndependentPair implements PairSampler {
  inputTokens = 0;
  outputTokens = 0;
  constructor(
    private readonly input: LengthSampler,
    private readonly output: LengthSampler,
  ) {}
  sample(): void {
    this.inputTokens = this.input.sample();
    this.outputTokens = this.output.sample();
  }
}

class JointEmpiricalPair implements PairSampler {
  inputTokens = 0;
  outputTokens = 0;
  constructor(
    private readonly rng: Rng,
    private readonly lengths: readonly LengthPair[],
  ) {}
  sample(): void {
    const p = this.lengths[this.rng.int(this.lengths.length)] as LengthPair;
    this.inputTokens = p.inputTokens;
    this.outputTokens = p.outputTokens;
  }
}

/** True when both sides resample the same trace's own input and output columns. */
function isJoint(input: LengthDist, output: LengthDist): boolean {
  return (
    input.kind === 'empirical' &&
    output.kind === 'empirical' &&
    input.trace === output.trace &&
    input.format === output.format &&
    (input.column ?? 'input') === 'input' &&
    (output.column ?? 'output') === 'output'
  );
}

/**
 * A sampler for (input, output). Independent sides get independent streams (`rng.fork`), so
 * changing one distribution does not shift the other's numbers.
 */
export function pairSampler(
  input: LengthDist,
  output: LengthDist,
  rng: Rng,
  load: LengthsLoader,
): PairSampler {
  if (isJoint(input, output) && input.kind === 'empirical') {
    return new JointEmpiricalPair(rng.fork('joint'), load(input.trace, input.format));
  }
  return new IndependentPair(
    lengthSampler(input, 'input', rng.fork('input'), load),
    lengthSampler(output, 'output', rng.fork('output'), load),
  );
}
