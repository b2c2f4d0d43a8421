import { InvalidArgumentError } from 'commander';

/** Commander parser for a positive integer flag. */
export function positiveInt(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError(`'${value}' is not a positive integer.`);
  return n;
}

/** Commander parser for a non-negative integer flag. */
export function nonNegativeInt(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0)
    throw new InvalidArgumentError(`'${value}' is not a non-negative integer.`);
  return n;
}

/** Commander parser for a positive number flag. */
export function positiveNumber(value: string): number {
  const n = Number(value);
  if (!Number.isFinite(n) || n <= 0) throw new InvalidArgumentError(`'${value}' is not a positive number.`);
  return n;
}

/** Commander parser for a fraction in (0, 1]. */
export function fraction(value: string): number {
  const n = Number(value);
  if (!Number.isFinite(n) || n <= 0 || n > 1) throw new InvalidArgumentError(`'${value}' is not in (0, 1].`);
  return n;
}

/** Commander parser for a non-negative number flag. */
export function nonNegativeNumber(value: string): number {
  const n = Number(value);
  if (!Number.isFinite(n) || n < 0)
    throw new InvalidArgumentError(`'${value}' is not a non-negative number.`);
  return n;
}
