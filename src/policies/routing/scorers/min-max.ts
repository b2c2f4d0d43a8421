import type { InstanceView } from '../../../core/view.ts';

/**
 * Writes `out[i] = (max - v_i) / (max - min)` for `v_i = value(candidates[i])`: 1 for the least
 * loaded candidate, 0 for the most, linear in between; all equal gives 1 to everyone (nobody is
 * worse). The normalisation of llm-d's queue scorer, shared by the load scorers.
 */
export function lowerIsBetter(
  candidates: readonly InstanceView[],
  out: Float64Array,
  value: (instance: InstanceView) => number,
): void {
  const n = candidates.length;
  let min = Number.POSITIVE_INFINITY;
  let max = Number.NEGATIVE_INFINITY;
  for (let i = 0; i < n; i++) {
    const v = value(candidates[i] as InstanceView);
    out[i] = v;
    if (v < min) min = v;
    if (v > max) max = v;
  }
  const range = max - min;
  for (let i = 0; i < n; i++) out[i] = range > 0 ? (max - (out[i] as number)) / range : 1;
}
