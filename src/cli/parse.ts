import { InvalidArgumentError } from 'commander';
import { WORKLOAD_DURATION_MAX_S, WORKLOAD_REQUESTS_MAX } from '../workload/spec.ts';

/**
 * A number written in decimal (digits, an optional fraction and exponent, a sign). Number() alone
 * also reads '0x10' as 16, '0b11' as 3 and '' as 0: a typo would then run an experiment nobody asked for.
 */
const DECIMAL_RE = /^[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?$/;

/** `value` as a number when it is written in decimal, else NaN (which every parser below refuses). */
export function decimalNumber(value: string): number {
  const s = value.trim();
  return DECIMAL_RE.test(s) ? Number(s) : Number.NaN;
}

/** Commander parser for a positive integer flag. */
export function positiveInt(value: string): number {
  const n = decimalNumber(value);
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError(`'${value}' is not a positive integer.`);
  return n;
}

/**
 * A commander parser for an integer flag in [min, max]. The bound is a flag's own where the config
 * file's schema has one (the same limit either way): past it a run would build, say, 10^11 instances
 * and never finish instead of failing at once.
 */
export function intInRange(min: number, max: number): (value: string) => number {
  return (value: string): number => {
    const n = decimalNumber(value);
    if (!Number.isInteger(n) || n < min || n > max)
      throw new InvalidArgumentError(`'${value}' is not an integer in ${min}..${max}.`);
    return n;
  };
}

/** Most instances of a cluster from flags (sim, demo): the config schema's bound on `cluster.instances`. */
export const INSTANCES_MAX = 100_000;
/** Largest tensor-parallel degree from a flag: the config schema's bound on `cluster.tp`. */
export const TP_MAX = 64;

/** Commander parser for a file path flag: an empty one would otherwise fail later, naming no flag. */
export function filePath(value: string): string {
  if (value.trim() === '') throw new InvalidArgumentError('a file path may not be empty.');
  return value;
}

/** Commander parser for a non-negative integer flag. */
export function nonNegativeInt(value: string): number {
  const n = decimalNumber(value);
  if (!Number.isInteger(n) || n < 0)
    throw new InvalidArgumentError(`'${value}' is not a non-negative integer.`);
  return n;
}

/** The largest seed: the twin's Rng keeps 32 bits, as a config file's `seed` says. */
export const SEED_MAX = 0xffff_ffff;

/**
 * Commander parser for a seed: an integer in [0, 2^32 - 1]. Past it the Rng kept the low 32 bits,
 * so `--seed 4294967296` ran seed 0's run, byte for byte, where a config file's `seed` refuses it.
 */
export function seedInt(value: string): number {
  const n = nonNegativeInt(value);
  if (n > SEED_MAX)
    throw new InvalidArgumentError(`'${value}' is past the largest seed, ${SEED_MAX} (seeds are 32-bit).`);
  return n;
}

/** The largest TCP port number (ports are 16-bit). */
export const TCP_PORT_MAX = 65_535;

/**
 * Commander parser for a TCP port flag: an integer in [0, 65535], 0 meaning any free port. A plain
 * non-negative integer would let 65536 through to listen(), which fails late with a RangeError.
 */
export function tcpPort(value: string): number {
  // Digits only: Number('') and Number(' ') are 0, which would quietly mean "any free port".
  const n = /^\d+$/.test(value) ? Number(value) : Number.NaN;
  if (!Number.isInteger(n) || n > TCP_PORT_MAX)
    throw new InvalidArgumentError(`'${value}' is not a TCP port (0-${TCP_PORT_MAX}; 0: any free port).`);
  return n;
}

/** Commander parser for a positive number flag. */
export function positiveNumber(value: string): number {
  const n = decimalNumber(value);
  if (!Number.isFinite(n) || n <= 0) throw new InvalidArgumentError(`'${value}' is not a positive number.`);
  return n;
}

/**
 * The longest simulated time `sim --duration` takes: the workload spec's own bound on `durationS`
 * (31 days, past the longest public trace the twin replays, ServeGen's 14 days), so the flag and a
 * config file agree. Without a bound `--duration 1e12` generated arrivals for hours.
 */
export const SIM_DURATION_MAX_S = WORKLOAD_DURATION_MAX_S;

/** Commander parser for `sim --duration`: a positive number of seconds, at most SIM_DURATION_MAX_S. */
export function simDurationSeconds(value: string): number {
  const n = positiveNumber(value);
  if (n > SIM_DURATION_MAX_S)
    throw new InvalidArgumentError(
      `'${value}' is more than ${SIM_DURATION_MAX_S} s (31 days) of simulated time.`,
    );
  return n;
}

/**
 * Commander parser for `sim --requests`: a positive integer, at most WORKLOAD_REQUESTS_MAX (the
 * workload spec's own bound on maxRequests), so the refusal names the flag.
 */
export function simRequestCount(value: string): number {
  const n = positiveInt(value);
  if (n > WORKLOAD_REQUESTS_MAX)
    throw new InvalidArgumentError(
      `'${value}' is more than ${WORKLOAD_REQUESTS_MAX} requests, the most one run holds (the twin keeps each request's latencies).`,
    );
  return n;
}

/** Commander parser for a fraction in (0, 1]. */
export function fraction(value: string): number {
  const n = decimalNumber(value);
  if (!Number.isFinite(n) || n <= 0 || n > 1) throw new InvalidArgumentError(`'${value}' is not in (0, 1].`);
  return n;
}

/** Commander parser for a non-negative number flag. */
export function nonNegativeNumber(value: string): number {
  const n = decimalNumber(value);
  if (!Number.isFinite(n) || n < 0)
    throw new InvalidArgumentError(`'${value}' is not a non-negative number.`);
  return n;
}
