import { type RoutingDecision, reject } from '../../core/decision.ts';
import type { InstanceView } from '../../core/view.ts';

/** An instance may take new work: healthy, not draining, and serving the model (when one is named). */
export function isEligible(instance: InstanceView, model: string): boolean {
  return instance.healthy && !instance.draining && (model === 'default' || instance.models.includes(model));
}

/** Fills `out` (reused by the caller, so a decision allocates nothing) with the eligible instances. */
export function eligibleInto(
  instances: readonly InstanceView[],
  model: string,
  out: InstanceView[],
): InstanceView[] {
  out.length = 0;
  for (const instance of instances) if (isEligible(instance, model)) out.push(instance);
  return out;
}

/** The rejection every policy gives when no instance may take the request. */
export function noEligibleInstance(model: string): RoutingDecision {
  return reject('SY_ERR_NO_INSTANCE', `no eligible instance for model '${model}'`);
}
