/**
 * Units. Names carry their unit last (`latencyMs`, `bandwidthBytesPerS`); these constants keep the
 * conversions in one place.
 */
export const KiB = 1024;
export const MiB = 1024 * KiB;
export const GiB = 1024 * MiB;
/** Decimal units, as GPU vendors quote bandwidth and FLOP/s. */
export const KB = 1e3;
export const MB = 1e6;
export const GB = 1e9;
export const TB = 1e12;
export const TFLOPS = 1e12;
export const MS_PER_S = 1000;
/** Gigabits per second to bytes per second. */
export function gbpsToBytesPerS(gbps: number): number {
  return (gbps * 1e9) / 8;
}
