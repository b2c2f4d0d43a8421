/**
 * The capacity gate: may a request leave the admission queue now? It reads the cluster view and, within
 * one `drain` call, projects the effect of the requests it has already released (the view is a
 * snapshot and does not see them), so one call cannot flood the cluster.
 */
import type { Request } from '../../core/request.ts';
import type { ClusterView } from '../../core/view.ts';
import { isEligible } from '../routing/eligible.ts';
import type { GateConfig } from './config.ts';

/**
 * A view of the cluster plus what this controller released since the view was taken.
 *
 * Stale signals: an instance whose engine signals are older than `signalStaleAfterMs` shows
 * `waiting = 0` (both views' rule), which says nothing about its engine queue. The gate then falls
 * back to the host's own accounting, always fresh in both hosts: the instance is also saturated at
 * `staleInFlightMax` in-flight requests or `stalePrefillTokensMax` prompt tokens sent without a
 * first token, so the admission queue, not the engine's FCFS queue, keeps holding the backlog.
 */
export class CapacityProjection {
  private readonly inFlight: Float64Array;
  private readonly waiting: Float64Array;
  private readonly kvUsage: Float64Array;
  private readonly prefillTokens: Float64Array;
  /** 1 where the instance's engine signals are stale (bounded by host accounting), else 0. */
  private readonly stale: Uint8Array;
  /** Engine waiting that counts against spare capacity: the view's, plus online releases. */
  private spareWaitingAdded = 0;

  constructor(
    private readonly view: ClusterView,
    private readonly gate: GateConfig,
    signalStaleAfterMs = Number.POSITIVE_INFINITY,
  ) {
    const n = view.instances.length;
    this.inFlight = new Float64Array(n);
    this.waiting = new Float64Array(n);
    this.kvUsage = new Float64Array(n);
    this.prefillTokens = new Float64Array(n);
    this.stale = new Uint8Array(n);
    for (let i = 0; i < n; i++) {
      const instance = view.instances[i];
      if (instance === undefined) continue;
      this.inFlight[i] = instance.inFlight;
      this.waiting[i] = instance.waiting;
      this.kvUsage[i] = instance.kvUsage;
      this.prefillTokens[i] = instance.pendingPrefillTokens;
      this.stale[i] = view.nowMs - instance.updatedAtMs > signalStaleAfterMs ? 1 : 0;
    }
  }

  /**
   * Online gate: some eligible instance is not saturated. Saturated means waiting >= waitingMax, or
   * kvUsage >= kvUsageMax, or inFlight >= inFlightMax. No eligible instance at all counts as saturated
   * (requests wait for one to come up, as behind Knative's activator).
   */
  onlineOpen(model: string): boolean {
    return this.leastLoadedOpen(model) >= 0;
  }

  /**
   * Offline gate: the online gate is open, and there is spare capacity: engines' total waiting at most
   * spareWaitingMax, mean KV usage below spareKvUsageMax, mean in-flight below
   * spareInFlightPerInstanceMax, and offline in-flight below
   * offlineInFlightPerInstanceMax per eligible instance.
   */
  offlineOpen(model: string, offlineInFlight: number): boolean {
    if (!this.onlineOpen(model)) return false;
    let eligible = 0;
    let waiting = this.spareWaitingAdded;
    let kvUsage = 0;
    let inFlight = 0;
    const instances = this.view.instances;
    for (let i = 0; i < instances.length; i++) {
      const instance = instances[i];
      if (instance === undefined || !isEligible(instance, model)) continue;
      eligible += 1;
      waiting += instance.waiting;
      kvUsage += this.kvUsage[i] ?? 0;
      inFlight += this.inFlight[i] ?? 0;
    }
    return (
      waiting <= this.gate.spareWaitingMax &&
      inFlight / eligible < this.gate.spareInFlightPerInstanceMax &&
      kvUsage / eligible < this.gate.spareKvUsageMax &&
      offlineInFlight < this.gate.offlineInFlightPerInstanceMax * eligible
    );
  }

  /**
   * Counts a released request against the least-loaded open instance (a stand-in for the router's
   * choice: the projection only needs to stop the gate from passing a burst, not to be exact). The
   * request waits in that engine until its next step and takes KV for its prompt.
   */
  add(request: Request, offline: boolean): void {
    if (!offline) this.spareWaitingAdded += 1;
    const i = this.leastLoadedOpen(request.model);
    const instance = this.view.instances[i];
    if (instance === undefined) return;
    this.inFlight[i] = (this.inFlight[i] ?? 0) + 1;
    this.waiting[i] = (this.waiting[i] ?? 0) + 1;
    this.prefillTokens[i] = (this.prefillTokens[i] ?? 0) + request.inputTokens;
    const kvTokens = instance.kvBlocksTotal * instance.blockSize;
    if (kvTokens > 0) this.kvUsage[i] = (this.kvUsage[i] ?? 0) + request.inputTokens / kvTokens;
  }

  /** Index of the open eligible instance with the fewest in-flight requests (lowest index on ties), or -1. */
  private leastLoadedOpen(model: string): number {
    const gate = this.gate;
    const instances = this.view.instances;
    let best = -1;
    let bestInFlight = Number.POSITIVE_INFINITY;
    for (let i = 0; i < instances.length; i++) {
      const instance = instances[i];
      if (instance === undefined || !isEligible(instance, model)) continue;
      const inFlight = this.inFlight[i] ?? 0;
      const saturated =
        (this.waiting[i] ?? 0) >= gate.waitingMax ||
        (this.kvUsage[i] ?? 0) >= gate.kvUsageMax ||
        inFlight >= gate.inFlightMax ||
        (this.stale[i] === 1 &&
          (inFlight >= gate.staleInFlightMax || (this.prefillTokens[i] ?? 0) >= gate.stalePrefillTokensMax));
      if (!saturated && inFlight < bestInFlight) {
        best = i;
        bestInFlight = inFlight;
      }
    }
    return best;
  }
}
