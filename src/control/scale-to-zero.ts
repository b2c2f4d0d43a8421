/**
 * Scale to zero with a keep-alive, the host-neutral rule: a model whose pool may shrink to zero
 * instances keeps one while it has requests or within its keep-alive after the last one (Ollama's
 * `keep_alive`), and none past it. It bounds what the model's control loop asks for; the loop still
 * sizes the pool above one under load. Pure: the host passes its own clock's readings in.
 *
 * - Requests at the host (held for an instance, or in flight): at least one instance, whatever the
 *   loop says: a model never sits at zero with requests waiting (Knative's activator rule).
 * - No request, and the keep-alive has passed since the last arrival or end: zero.
 * - No request within the keep-alive: what the loop wants, at least one, while an instance is up;
 *   none when none is (an idle model is not started; only a request wakes it).
 */

/** What the rule reads for one model at one decision. */
export interface KeepAliveInput {
  /** Instances the model's loop wants. */
  readonly loopReplicas: number;
  /** Instances starting or ready now. */
  readonly active: number;
  /** Requests held at the host waiting for an instance (scale-from-zero buffer, admission queue). */
  readonly waiting: number;
  /** Requests of the model arrived and not yet ended (held ones included). */
  readonly inSystem: number;
  /** Time since the model's last arrival or end (0 while requests are in the system). */
  readonly idleMs: number;
  /** How long the model stays loaded after its last request. */
  readonly keepAliveMs: number;
}

/** The rule's answer: the instances to ask for, and why when it overrode the loop. */
export interface KeepAliveDecision {
  readonly replicas: number;
  /** Set when the rule changed the loop's number. */
  readonly override: string | undefined;
}

/** Applies the keep-alive rule (see the file comment) to a loop's wish. */
export function keepAliveReplicas(i: KeepAliveInput): KeepAliveDecision {
  const loop = Math.max(0, Math.round(i.loopReplicas));
  if (i.waiting > 0 || i.inSystem > 0) {
    if (loop >= 1) return { replicas: loop, override: undefined };
    return {
      replicas: 1,
      override: `scale from zero: ${Math.max(i.waiting, i.inSystem)} request(s) at the host`,
    };
  }
  if (i.idleMs >= i.keepAliveMs)
    return {
      replicas: 0,
      override:
        loop === 0
          ? undefined
          : `keep-alive: no request for ${Math.round(i.idleMs)} ms >= ${i.keepAliveMs} ms`,
    };
  if (i.active === 0)
    return { replicas: 0, override: loop === 0 ? undefined : 'idle at zero: only a request wakes the model' };
  if (loop >= 1) return { replicas: loop, override: undefined };
  return { replicas: 1, override: `keep-alive: ${Math.round(i.keepAliveMs - i.idleMs)} ms left` };
}
