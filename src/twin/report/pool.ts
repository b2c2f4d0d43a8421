/**
 * What the text and HTML summaries say about a run under a control loop (`--autoscaler`, a
 * multi-model cluster, `--serverless-policy`, P/D pools). Such a run's summary describes the whole
 * pool: `instances` counts every slot a loop may fill and `gpuSeconds` bills every slot for the
 * whole run, a ceiling (a serverless run of 32 models on 8 GPUs has 128 slots, 16x what the GPUs
 * can give). The loop's cost is `gpuHours`; these helpers print both, each under its own name. The
 * JSON keeps its fields and meanings (docs/autoscaling.md).
 */

import { fmtNumber, fmtQty, fmtSeconds } from '../../stats/format.ts';
import type { SimSummary } from './types.ts';

/** A controlled run's pool as the summaries print it. */
export interface PoolFigures {
  /** GPU-hours the loop's instances were billed (the JSON's `gpuHours`). */
  readonly gpuHours: number;
  /**
   * GPUs the pool runs on: the nodes' GPUs where its slots share them (`shared`), else the slots'
   * own GPUs (the sum of their TP degrees).
   */
  readonly gpus: number;
  /** Whether the slots share the nodes' GPUs (multi-model placement, serverless). */
  readonly shared: boolean;
  /** Most GPUs held at once (a multi-model cluster's `gpuBudget`), when the run sets one. */
  readonly budget?: number;
  /**
   * Where the bills end, s (the result's `billedUntilS`: the later of the last completion and the
   * workload's declared end), when known; the pool's ceiling and what its GPUs give span it.
   */
  readonly billedUntilS?: number;
  /** The slots' own GPUs (the sum of their TP degrees), for the ceiling over `billedUntilS`. */
  readonly slotGpus?: number;
}

/** The nodes behind a run, where its slots share them: a serverless run's or a multi-model cluster's. */
export interface SharedNodes {
  readonly serverless?: { readonly nodes: readonly { readonly gpus: number }[] } | undefined;
  readonly placement?:
    | { readonly nodes: readonly { readonly gpus: number }[]; readonly gpuBudget?: number | undefined }
    | undefined;
}

/** GPUs of the nodes a run's slots share; undefined when each slot has its own (or no loop runs). */
export function sharedGpus(settings: SharedNodes): number | undefined {
  const nodes = settings.serverless?.nodes ?? settings.placement?.nodes;
  return nodes?.reduce((n, node) => n + node.gpus, 0);
}

/** A multi-model cluster's GPU budget (most GPUs held at once), when it sets one. */
export function gpuBudget(settings: SharedNodes): number | undefined {
  return settings.placement?.gpuBudget;
}

/**
 * The pool figures of a run, or undefined for a run without a control loop (no `gpuHours`).
 * `shared`: the GPUs of the nodes the slots share (`sharedGpus`), when they do; `budget`: the most
 * of them held at once (`gpuBudget`), when set.
 */
export function poolFigures(
  result: {
    readonly gpuHours?: number | undefined;
    readonly billedUntilS?: number | undefined;
    readonly summary: Pick<SimSummary, 'perInstance'>;
  },
  shared?: number,
  budget?: number,
): PoolFigures | undefined {
  if (result.gpuHours === undefined) return undefined;
  const own = result.summary.perInstance.reduce((n, p) => n + p.tp, 0);
  const until = result.billedUntilS !== undefined ? { billedUntilS: result.billedUntilS, slotGpus: own } : {};
  if (shared !== undefined)
    return {
      gpuHours: result.gpuHours,
      gpus: shared,
      shared: true,
      ...(budget !== undefined ? { budget } : {}),
      ...until,
    };
  return { gpuHours: result.gpuHours, gpus: own, shared: false, ...until };
}

/**
 * The span a pool's figures cover, s, and its ceiling (every slot for that span), GPU-seconds: the
 * summary's simulated seconds and `gpuSeconds`, or the bills' longer span when they run past the
 * last completion to the workload's declared end.
 */
export function poolSpan(
  s: Pick<SimSummary, 'gpuSeconds' | 'simulatedSeconds'>,
  pool: PoolFigures,
): { readonly seconds: number; readonly ceilingGpuSeconds: number } {
  const until = pool.billedUntilS;
  if (until === undefined || pool.slotGpus === undefined || !(until > s.simulatedSeconds))
    return { seconds: s.simulatedSeconds, ceilingGpuSeconds: s.gpuSeconds };
  return { seconds: until, ceilingGpuSeconds: pool.slotGpus * until };
}

/** `1 instance`, `8 instances`: a count with its noun, singular for one. */
export function countText(n: number, noun: string): string {
  return `${fmtNumber(n)} ${noun}${n === 1 ? '' : 's'}`;
}

/**
 * The instances phrase of a summary's header: `8 instances`, or a pool's `pool of 128 instance
 * slots on 8 GPUs`, with `, budget 6 GPUs` when a budget caps the GPUs held at once.
 */
export function instancesText(instances: number, pool: PoolFigures | undefined): string {
  if (pool === undefined) return countText(instances, 'instance');
  const budget = pool.budget !== undefined ? `, budget ${fmtNumber(pool.budget)} GPUs` : '';
  return `pool of ${fmtNumber(instances)} instance slots on ${fmtNumber(pool.gpus)} GPUs${budget}`;
}

/**
 * What the shared GPUs could give over `seconds`, and how to say so: the budget's GPUs where one
 * caps them (`a budget of 6 of the 8 GPUs`), else all of the nodes' (`8 GPUs`).
 */
export function gpusGiving(
  pool: PoolFigures,
  seconds: number,
): { readonly gpuSeconds: number; readonly text: string } {
  if (pool.budget !== undefined && pool.budget < pool.gpus)
    return {
      gpuSeconds: pool.budget * seconds,
      text: `a budget of ${fmtNumber(pool.budget)} of the ${fmtNumber(pool.gpus)} GPUs`,
    };
  return { gpuSeconds: pool.gpus * seconds, text: `${fmtNumber(pool.gpus)} GPUs` };
}

/** GPU-seconds billed to the loop's instances (gpuHours in seconds). */
export function billedGpuSeconds(pool: PoolFigures): number {
  return pool.gpuHours * 3600;
}

/**
 * A controlled run's GPU-seconds line: billed, what shared GPUs could give over the run, and the
 * summary's `gpuSeconds` named as the pool's ceiling, e.g. `GPU-seconds billed 14,443 (of 14,446
 * that 8 GPUs give in 1,805.7 s) · pool ceiling 231,133 (all 128 slots for the whole run)`.
 */
export function gpuSecondsText(
  s: Pick<SimSummary, 'gpuSeconds' | 'instances' | 'simulatedSeconds'>,
  pool: PoolFigures,
): string {
  const span = poolSpan(s, pool);
  const giving = gpusGiving(pool, span.seconds);
  const verb = giving.text.startsWith('a budget') ? 'gives' : 'give';
  const of = pool.shared
    ? ` (of ${fmtQty(giving.gpuSeconds)} that ${giving.text} ${verb} in ${fmtSeconds(span.seconds)})`
    : '';
  // Past the last completion the bills run to the workload's declared end: say so.
  const to = span.seconds > s.simulatedSeconds ? `, billed to ${fmtSeconds(span.seconds)}` : '';
  return (
    `GPU-seconds billed ${fmtQty(billedGpuSeconds(pool))}${of} · ` +
    `pool ceiling ${fmtQty(span.ceilingGpuSeconds)} (all ${fmtNumber(s.instances)} slots for the whole run${to})`
  );
}
