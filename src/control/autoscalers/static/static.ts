import type { ControlContext, ControlDecision, ControlLoop } from '../../types.ts';
import { singleVariantDecision } from '../../types.ts';

/**
 * Peak provisioning: always wants `maxReplicas` of the default variant, whatever the load. The
 * baseline every other autoscaler's GPU-hours are compared with.
 */
export function createStatic(context: ControlContext): ControlLoop {
  const decision: ControlDecision = singleVariantDecision(
    context,
    context.maxReplicas,
    `static: peak provisioning at maxReplicas ${context.maxReplicas}`,
  );
  return {
    name: 'static',
    decide: () => decision,
  };
}
