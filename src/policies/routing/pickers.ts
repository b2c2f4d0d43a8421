import { z } from 'zod';
import type { Rng } from '../../core/rng.ts';
import type { InstanceView } from '../../core/view.ts';
import type { Picker } from './types.ts';

/**
 * The highest total wins; ties (within 1e-12) are broken uniformly at random with the seeded
 * generator, never by array or map order (llm-d's max-score picker).
 */
export const maxScorePicker: Picker = {
  name: 'max-score',
  pick(candidates: readonly InstanceView[], totals: Float64Array, rng: Rng): number {
    let best = Number.NEGATIVE_INFINITY;
    let ties = 0;
    let chosen = 0;
    for (let i = 0; i < candidates.length; i++) {
      const t = totals[i] as number;
      if (t > best + 1e-12) {
        best = t;
        ties = 1;
        chosen = i;
      } else if (t >= best - 1e-12) {
        // Reservoir sampling over the tied set: each tie ends up chosen with equal probability.
        ties++;
        if (rng.int(ties) === 0) chosen = i;
      }
    }
    return chosen;
  },
};

/** Samples in proportion to exp(total / temperature): softmax sampling (Dynamo's temperature option). */
export function softmaxPicker(temperature: number): Picker {
  return {
    name: 'softmax',
    pick(candidates, totals, rng) {
      if (temperature <= 0) return maxScorePicker.pick(candidates, totals, rng);
      let max = Number.NEGATIVE_INFINITY;
      for (let i = 0; i < candidates.length; i++) max = Math.max(max, totals[i] as number);
      let sum = 0;
      for (let i = 0; i < candidates.length; i++)
        sum += Math.exp(((totals[i] as number) - max) / temperature);
      let u = rng.next() * sum;
      for (let i = 0; i < candidates.length; i++) {
        u -= Math.exp(((totals[i] as number) - max) / temperature);
        if (u <= 0) return i;
      }
      return candidates.length - 1;
    },
  };
}

/** One picker type a profile in config may name: a description, a strict parameter schema, a factory. */
export interface PickerEntry<P = Record<string, unknown>> {
  readonly description: string;
  readonly params: z.ZodType<P>;
  create(params: P): Picker;
}

function pickerEntry<P>(e: PickerEntry<P>): PickerEntry<unknown> {
  return e as unknown as PickerEntry<unknown>;
}

/** Pickers by the name a profile uses. */
export const PICKER_CATALOGUE: Readonly<Record<string, PickerEntry<unknown>>> = {
  'max-score': pickerEntry({
    description: 'highest total; ties uniformly at random (seeded)',
    params: z.strictObject({}),
    create: () => maxScorePicker,
  }),
  softmax: pickerEntry({
    description: 'samples in proportion to exp(total / temperature); temperature 0: max-score',
    params: z.strictObject({ temperature: z.number().min(0) }),
    create: (p) => softmaxPicker(p.temperature),
  }),
};
