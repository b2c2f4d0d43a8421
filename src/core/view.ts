import type { GpuId, InstanceId, ModelId } from './ids.ts';

/** The role an instance plays: both phases, or one side of a disaggregated pair. */
export type InstanceRole = 'both' | 'prefill' | 'decode';

/**
 * What a policy may read about one instance. Both hosts fill it: the twin from its engine cores,
 * the gateway from scraped metrics and its own accounting. Read-only: policies never mutate views.
 */
export interface InstanceView {
  readonly id: InstanceId;
  readonly models: readonly ModelId[];
  readonly gpu: GpuId;
  readonly tp: number;
  readonly role: InstanceRole;
  readonly healthy: boolean;
  readonly draining: boolean;
  /** Requests the host has sent and not yet seen finish (the gateway's own accounting). */
  readonly inFlight: number;
  /** Sequences in the engine's running batch. */
  readonly running: number;
  /** Sequences queued inside the engine. */
  readonly waiting: number;
  /** Fraction of KV blocks in use, 0..1. */
  readonly kvUsage: number;
  readonly kvBlocksTotal: number;
  readonly blockSize: number;
  /** Prefill tokens admitted but not yet computed (queued + in progress). */
  readonly pendingPrefillTokens: number;
  /** Lifetime prefix-cache hit rate, tokens hit / tokens queried, 0..1. */
  readonly prefixHitRate: number;
  /** Host time at which the signals above were last refreshed. */
  readonly updatedAtMs: number;
}

/** A read-only snapshot of the cluster for one decision. */
export interface ClusterView {
  readonly nowMs: number;
  readonly instances: readonly InstanceView[];
}
