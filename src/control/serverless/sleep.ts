/**
 * Sleep mode (vLLM `--enable-sleep-mode`, level 1): an idle engine offloads its weights to host DRAM
 * and discards its KV cache, but keeps its process, allocator, compiled kernels and CUDA graphs on
 * the GPUs it ran on. Waking it copies the weights back over PCIe and re-allocates the KV cache: no
 * engine initialisation. This module keeps the books a host needs for that: which GPU holds which
 * awake instance and which sleepers, the memory rule, the wake time, and the GPU time billed to
 * GPUs that only sleepers hold. Pure and deterministic: times arrive as `nowMs`; README.md in this
 * folder has the rule, the defaults and their sources.
 */
import { invalidArgument } from '../../core/errors.ts';
import type { ModelId } from '../../core/ids.ts';
import { GiB, MS_PER_S } from '../../core/units.ts';

/**
 * GPU memory a sleeping engine keeps per GPU: CUDA context, captured CUDA graphs and allocator
 * pools. vLLM's own profile reports ~1.3 GiB of non-torch memory for an 8B engine (PR #11743's log)
 * and CUDA graphs of ~1.5 GB (issue #47654); a level-2 sleep of an engine reported 4.75 GiB still in
 * use (issue #17117). 3 GiB is an assumption between them; a parameter.
 */
export const SLEEP_RESIDUAL_BYTES_PER_GPU_DEFAULT = 3 * GiB;
/**
 * Fixed part of a wake: re-mapping the allocator's pools and resuming the engine loop. Assumption,
 * a parameter: the Embedded LLM measurements (vllm-project.github.io PR #89) put whole wakes of
 * small models at ~0.1-0.4 s, weights included.
 */
export const WAKE_OVERHEAD_MS_DEFAULT = 200;
/** Re-allocating the discarded KV cache on wake (physical pages for the pool; assumption). */
export const KV_REALLOC_MS_DEFAULT = 100;
/**
 * How long a GPU may be held by sleepers alone (billed, serving nothing) before they are stopped:
 * the fixed keep-alive's 60 s, so a lone sleeper costs no more GPU time than the baselines spend on
 * an idle model after its last request.
 */
export const LONE_SLEEP_MAX_MS_DEFAULT = 60_000;
/** Sleepers one GPU may hold at most, whatever the memory says (bounds the per-GPU lists). */
export const SLEEPERS_PER_GPU_MAX = 64;

/** Sleep-mode parameters, all optional. */
export interface SleepParams {
  readonly residualBytesPerGpu?: number | undefined;
  readonly wakeOverheadMs?: number | undefined;
  readonly kvReallocMs?: number | undefined;
  readonly loneSleepMaxMs?: number | undefined;
}

/** Resolved sleep-mode parameters. */
export interface SleepConfig {
  readonly residualBytesPerGpu: number;
  readonly wakeOverheadMs: number;
  readonly kvReallocMs: number;
  readonly loneSleepMaxMs: number;
}

/** Fills in the defaults; SY_ERR_INVALID_ARGUMENT for negative figures. */
export function resolveSleep(params: SleepParams = {}): SleepConfig {
  const c: SleepConfig = {
    residualBytesPerGpu: params.residualBytesPerGpu ?? SLEEP_RESIDUAL_BYTES_PER_GPU_DEFAULT,
    wakeOverheadMs: params.wakeOverheadMs ?? WAKE_OVERHEAD_MS_DEFAULT,
    kvReallocMs: params.kvReallocMs ?? KV_REALLOC_MS_DEFAULT,
    loneSleepMaxMs: params.loneSleepMaxMs ?? LONE_SLEEP_MAX_MS_DEFAULT,
  };
  for (const [k, v] of Object.entries(c)) if (!(v >= 0)) throw invalidArgument(k, v, '>= 0');
  return c;
}

/**
 * Time to wake a sleeping engine: its shard of the weights over one GPU's host link (the shards
 * move in parallel), plus the fixed overhead and the KV cache re-allocation.
 */
export function wakeTimeMs(shardBytes: number, hostLinkBytesPerS: number, c: SleepConfig): number {
  return (shardBytes / hostLinkBytesPerS) * MS_PER_S + c.wakeOverheadMs + c.kvReallocMs;
}

/** A sleeping engine. */
export interface Sleeper {
  readonly id: string;
  readonly model: ModelId;
  readonly node: string;
  /** GPU indices on its node: the process stays there, so it can only wake there. */
  readonly gpus: readonly number[];
  readonly sinceMs: number;
}

interface Gpu {
  awake: string | undefined;
  readonly sleepers: Set<string>;
  /** Since when only sleepers hold it (billed, serving nothing); undefined otherwise. */
  aloneSinceMs: number | undefined;
}

/**
 * Per-GPU books of one cluster: at most one awake (or starting) instance per GPU, any number of
 * sleepers as long as the largest awake shard plus every sleeper's residual fits the GPU's memory
 * budget (so whichever instance is awake there, it fits), and the GPU-ms billed to GPUs held by
 * sleepers alone.
 */
export class SleepBook {
  private readonly gpus = new Map<string, Gpu[]>();
  private readonly sleepers = new Map<string, Sleeper>();
  private readonly awakeAt = new Map<string, { node: string; gpus: number[] }>();
  private loneGpuMsClosed = 0;
  private seq = 0;

  /**
   * @param nodes each node's id and GPU count
   * @param budgetBytesPerGpu what one GPU may hold (its memory times the engine's utilisation)
   * @param largestAwakeBytesPerGpu the largest shard plus reserve any served model needs on one GPU
   */
  constructor(
    nodes: readonly { id: string; gpus: number }[],
    private readonly budgetBytesPerGpu: number,
    private readonly largestAwakeBytesPerGpu: number,
    readonly config: SleepConfig,
  ) {
    for (const n of nodes) {
      this.gpus.set(
        n.id,
        Array.from({ length: n.gpus }, () => ({
          awake: undefined,
          sleepers: new Set(),
          aloneSinceMs: undefined,
        })),
      );
    }
  }

  /** Sleepers one GPU can hold beside the largest awake instance (memory), at most SLEEPERS_PER_GPU_MAX. */
  get sleepersPerGpuMax(): number {
    const room = this.budgetBytesPerGpu - this.largestAwakeBytesPerGpu;
    if (this.config.residualBytesPerGpu <= 0) return SLEEPERS_PER_GPU_MAX;
    return Math.max(0, Math.min(SLEEPERS_PER_GPU_MAX, Math.floor(room / this.config.residualBytesPerGpu)));
  }

  /**
   * An awake instance starting on `tp` GPUs of `node` that no awake instance holds; GPUs holding
   * sleepers first (they are billed anyway; an awake instance there makes them pay), lowest index
   * on ties. Returns the indices; throws when too few are free (the caller's cache said they were).
   */
  placeAwake(instanceId: string, node: string, tp: number, nowMs: number): number[] {
    const gpus = this.node(node);
    const free = gpus.map((g, i) => ({ g, i })).filter(({ g }) => g.awake === undefined);
    free.sort((a, b) => Number(b.g.sleepers.size > 0) - Number(a.g.sleepers.size > 0) || a.i - b.i);
    if (free.length < tp) throw new Error(`node ${node}: ${free.length} GPUs free, ${tp} asked`);
    const picked = free.slice(0, tp).map(({ i }) => i);
    this.placeAt(instanceId, node, picked, nowMs);
    return picked;
  }

  /** An awake instance on given GPUs (a woken sleeper's own). */
  placeAt(instanceId: string, node: string, indices: readonly number[], nowMs: number): void {
    const gpus = this.node(node);
    for (const i of indices) {
      const g = gpus[i] as Gpu;
      if (g.awake !== undefined) throw new Error(`GPU ${node}/${i} already runs ${g.awake}`);
    }
    for (const i of indices) {
      const g = gpus[i] as Gpu;
      this.closeLone(g, nowMs);
      g.awake = instanceId;
    }
    this.awakeAt.set(instanceId, { node, gpus: [...indices] });
  }

  /** An awake instance left its GPUs (stopped, or about to sleep there); its GPUs, if it had any. */
  releaseAwake(instanceId: string, nowMs: number): { node: string; gpus: number[] } | undefined {
    const at = this.awakeAt.get(instanceId);
    if (at === undefined) return undefined;
    this.awakeAt.delete(instanceId);
    const gpus = this.node(at.node);
    for (const i of at.gpus) {
      const g = gpus[i] as Gpu;
      g.awake = undefined;
      this.openLone(g, nowMs);
    }
    return at;
  }

  /** Whether one more sleeper fits each of these GPUs (memory rule, per-GPU bound). */
  canSleepOn(node: string, indices: readonly number[]): boolean {
    const gpus = this.node(node);
    const max = this.sleepersPerGpuMax;
    return indices.every((i) => (gpus[i] as Gpu).sleepers.size < max);
  }

  /** Puts a sleeper of `model` on these GPUs (no awake instance of its own there any more). */
  sleep(model: ModelId, node: string, indices: readonly number[], nowMs: number): Sleeper {
    if (!this.canSleepOn(node, indices)) throw new Error(`no room for a sleeper on ${node}`);
    this.seq += 1;
    const s: Sleeper = {
      id: `zz-${model}@${node}#${this.seq}`,
      model,
      node,
      gpus: [...indices],
      sinceMs: nowMs,
    };
    const gpus = this.node(node);
    for (const i of indices) {
      const g = gpus[i] as Gpu;
      g.sleepers.add(s.id);
      this.openLone(g, nowMs);
    }
    this.sleepers.set(s.id, s);
    return s;
  }

  /** Drops a sleeper (it wakes, or is stopped); its residual leaves its GPUs. */
  remove(sleeperId: string, nowMs: number): Sleeper {
    const s = this.sleepers.get(sleeperId);
    if (s === undefined) throw new Error(`no sleeper ${sleeperId}`);
    this.sleepers.delete(sleeperId);
    const gpus = this.node(s.node);
    for (const i of s.gpus) {
      const g = gpus[i] as Gpu;
      g.sleepers.delete(sleeperId);
      if (g.sleepers.size === 0) this.closeLone(g, nowMs);
    }
    return s;
  }

  /** The sleepers of `model`, oldest first. */
  sleepersOf(model: ModelId): Sleeper[] {
    return [...this.sleepers.values()].filter((s) => s.model === model);
  }

  /** How many sleepers `model` has. */
  countOf(model: ModelId): number {
    let n = 0;
    for (const s of this.sleepers.values()) if (s.model === model) n++;
    return n;
  }

  /** The awake instances on a sleeper's GPUs (none: it can wake now). */
  blockers(s: Sleeper): string[] {
    const gpus = this.node(s.node);
    const out = new Set<string>();
    for (const i of s.gpus) {
      const a = (gpus[i] as Gpu).awake;
      if (a !== undefined) out.add(a);
    }
    return [...out];
  }

  /** Sleepers on a GPU that sleepers alone have held since `nowMs - maxMs` or longer. */
  loneExpired(nowMs: number, maxMs: number): string[] {
    const out = new Set<string>();
    for (const gpus of this.gpus.values()) {
      for (const g of gpus) {
        if (g.aloneSinceMs !== undefined && nowMs - g.aloneSinceMs >= maxMs)
          for (const id of g.sleepers) out.add(id);
      }
    }
    return [...out].sort();
  }

  /** Sleepers on one GPU (for checks and reports). */
  sleepersOn(node: string, index: number): number {
    return (this.node(node)[index] as Gpu).sleepers.size;
  }

  /** Whether a GPU has an awake instance. */
  awakeOn(node: string, index: number): string | undefined {
    return (this.node(node)[index] as Gpu).awake;
  }

  /** GPU-ms billed to GPUs held by sleepers alone, up to `endMs`. */
  loneGpuMs(endMs: number): number {
    let ms = this.loneGpuMsClosed;
    for (const gpus of this.gpus.values()) {
      for (const g of gpus) if (g.aloneSinceMs !== undefined) ms += Math.max(0, endMs - g.aloneSinceMs);
    }
    return ms;
  }

  /** GPUs held by sleepers alone now (billed, serving nothing). */
  get loneGpus(): number {
    let n = 0;
    for (const gpus of this.gpus.values()) for (const g of gpus) if (g.aloneSinceMs !== undefined) n++;
    return n;
  }

  /** Sleepers now. */
  get size(): number {
    return this.sleepers.size;
  }

  private openLone(g: Gpu, nowMs: number): void {
    if (g.awake === undefined && g.sleepers.size > 0 && g.aloneSinceMs === undefined) g.aloneSinceMs = nowMs;
  }

  private closeLone(g: Gpu, nowMs: number): void {
    if (g.aloneSinceMs === undefined) return;
    this.loneGpuMsClosed += Math.max(0, nowMs - g.aloneSinceMs);
    g.aloneSinceMs = undefined;
  }

  private node(id: string): Gpu[] {
    const gpus = this.gpus.get(id);
    if (gpus === undefined) throw new Error(`unknown node ${id}`);
    return gpus;
  }
}
