import type { InstanceView } from '../../core/view.ts';

/** An instance may take new work: healthy, not draining, and serving the model (when one is named). */
export function isEligible(instance: InstanceView, model: string): boolean {
  return instance.healthy && !instance.draining && (model === 'default' || instance.models.includes(model));
}
