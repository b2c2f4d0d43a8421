/**
 * The actuator for a gateway in front of engines Switchyard does not run (a Kubernetes Deployment
 * behind a Service, a fleet started by hand): it acts on nothing. The loop's decisions reach the
 * world only as the `switchyard_desired_replicas` gauge, for an HPA or KEDA to act on
 * (docs/autoscaling.md, "Live"); it reports the gateway's backends of the model as instances, so the
 * loop and `switchyard_replicas` see what the gateway routes to: healthy undrained backends are
 * ready, drained ones draining, ejected ones are left out.
 */
import type { InstanceView } from '../core/view.ts';
import type { LiveActuator } from './live-runner.ts';
import type { ControlAction, InstancePhase, ManagedInstance, Variant } from './types.ts';

/** Reports the gateway's backends; changes nothing. */
export class ExportOnlyActuator implements LiveActuator {
  readonly startFailures = 0;

  /**
   * @param variant what the backends run
   * @param backends the gateway's instances of the model now (its live view)
   * @param nowMs the host's clock, for `sinceMs` (the gateway does not track phase changes: now)
   */
  constructor(
    private readonly variant: Variant,
    private readonly backends: () => readonly InstanceView[],
    private readonly nowMs: () => number,
  ) {}

  instances(): readonly ManagedInstance[] {
    const out: ManagedInstance[] = [];
    const sinceMs = this.nowMs();
    for (const b of this.backends()) {
      if (!b.healthy) continue;
      out.push({ id: b.id, variant: this.variant, phase: b.draining ? 'draining' : 'ready', sinceMs });
    }
    return out;
  }

  apply(): readonly ControlAction[] {
    return [];
  }

  settle(): void {}

  counts(): Record<InstancePhase, number> {
    const c: Record<InstancePhase, number> = { pending: 0, starting: 0, ready: 0, draining: 0 };
    for (const i of this.instances()) c[i.phase]++;
    return c;
  }
}
