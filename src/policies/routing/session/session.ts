import { assert } from '../../../core/assert.ts';
import { routeTo } from '../../../core/decision.ts';
import { CHAIN_ROOT, chainHash } from '../../../core/hash.ts';
import type { InstanceId } from '../../../core/ids.ts';
import type { Request } from '../../../core/request.ts';
import { hashString } from '../../../core/rng.ts';
import type { InstanceView } from '../../../core/view.ts';
import { isEligible, noEligibleInstance } from '../eligible.ts';
import type { RoutingPolicy } from '../types.ts';

/** Parameters of session affinity. */
export interface SessionParams {
  /** Points on the ring per instance. */
  readonly virtualNodes: number;
  /** Load slack: an instance may hold up to ceil((1 + epsilon) x mean) in-flight requests. */
  readonly epsilon: number;
}

/** Defaults: 100 virtual nodes, epsilon 0.25 (HAProxy's `hash-balance-factor 125`). */
export const SESSION_DEFAULTS: SessionParams = { virtualNodes: 100, epsilon: 0.25 };

/** Most instances on one ring: owners are packed next to 32-bit positions in a double. */
export const SESSION_RING_INSTANCES_MAX = 1 << 20;

/**
 * The affinity key: the session, else the tenant, else the request itself. The tenant `default`
 * (what a request without one carries) counts as no tenant, or every anonymous request would share
 * one key and pile onto one instance.
 */
export function sessionKey(request: Request): string {
  if (request.sessionId !== undefined && request.sessionId !== '') return `s:${request.sessionId}`;
  if (request.tenant !== '' && request.tenant !== 'default') return `t:${request.tenant}`;
  return `r:${request.id}`;
}

/** The ring position of a key or a virtual node: FNV-1a, then a full-avalanche mix. */
function position(text: string, salt: number): number {
  return chainHash(CHAIN_ROOT ^ salt, hashString(text));
}

/**
 * Consistent hashing with bounded loads (Mirrokni, Thorup, Zadimoghaddam, SODA 2018): each instance
 * owns `virtualNodes` points on a 32-bit ring; a key goes to the owner of the first point at or
 * after its hash that is eligible and not full, walking clockwise. With `n` eligible instances and
 * `m` requests in flight on them, an instance is full when taking this request would put it over
 * `ceil((1 + epsilon) x (m + 1) / n)`; at least one instance is never full, so the walk always
 * ends. A key keeps its instance while that instance has room, and moves to the same next one for
 * everyone when it has not.
 *
 * The ring covers every instance in the view, eligible or not, so a health flap does not move the
 * keys of other instances; it is rebuilt only when the list of instance ids changes (checked with
 * one identity comparison per instance, no hashing).
 */
export function createSession(params: SessionParams = SESSION_DEFAULTS): RoutingPolicy {
  const { virtualNodes, epsilon } = params;
  // The ring, derived from the instance ids alone: a cache of the view, rebuilt when the ids change.
  let ringIds: InstanceId[] = [];
  let positions = new Uint32Array(0);
  let owners = new Int32Array(0);

  const ensureRing = (instances: readonly InstanceView[]): void => {
    let same = instances.length === ringIds.length;
    for (let i = 0; same && i < instances.length; i++)
      same = (instances[i] as InstanceView).id === ringIds[i];
    if (same) return;
    assert(instances.length <= SESSION_RING_INSTANCES_MAX, `at most ${SESSION_RING_INSTANCES_MAX} instances`);
    ringIds = instances.map((x) => x.id);
    // Pack (position, owner) in one double so one numeric sort orders by position, then by owner:
    // equal positions never fall back to an unstable or map order.
    const packed = new Float64Array(instances.length * virtualNodes);
    let k = 0;
    for (let owner = 0; owner < instances.length; owner++) {
      const id = ringIds[owner] as InstanceId;
      for (let v = 0; v < virtualNodes; v++)
        packed[k++] = position(id, v + 1) * SESSION_RING_INSTANCES_MAX + owner;
    }
    packed.sort();
    positions = new Uint32Array(packed.length);
    owners = new Int32Array(packed.length);
    for (let i = 0; i < packed.length; i++) {
      const x = packed[i] as number;
      const owner = x % SESSION_RING_INSTANCES_MAX;
      owners[i] = owner;
      positions[i] = (x - owner) / SESSION_RING_INSTANCES_MAX;
    }
  };

  return {
    name: 'session',
    decide(view, request) {
      const instances = view.instances;
      let eligible = 0;
      let inFlight = 0;
      for (const instance of instances) {
        if (!isEligible(instance, request.model)) continue;
        eligible++;
        inFlight += instance.inFlight;
      }
      if (eligible === 0) return noEligibleInstance(request.model);
      ensureRing(instances);
      const bound = Math.ceil(((1 + epsilon) * (inFlight + 1)) / eligible);
      const start = lowerBound(positions, position(sessionKey(request), 0));
      const points = positions.length;
      for (let step = 0; step < points; step++) {
        const instance = instances[owners[(start + step) % points] as number] as InstanceView;
        if (instance.inFlight + 1 <= bound && isEligible(instance, request.model))
          return routeTo(instance.id);
      }
      // Unreachable while in-flight counts are whole numbers: the least loaded instance fits.
      let least: InstanceView | undefined;
      for (const instance of instances) {
        if (
          isEligible(instance, request.model) &&
          (least === undefined || instance.inFlight < least.inFlight)
        )
          least = instance;
      }
      return routeTo((least as InstanceView).id);
    },
  };
}

/** The first index whose position is >= `key`, or 0 past the end (the ring wraps). */
function lowerBound(positions: Uint32Array, key: number): number {
  let lo = 0;
  let hi = positions.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if ((positions[mid] as number) < key) lo = mid + 1;
    else hi = mid;
  }
  return lo === positions.length ? 0 : lo;
}
