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
import { GpuBill } from './gpu-bill.ts';

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
 * How long a GPU held by sleepers alone (billed, serving nothing) is kept whatever its value: the
 * fixed keep-alive's 60 s, so a lone sleeper costs no more GPU time than the baselines spend on an
 * idle model after its last request. Past it, the serverless policy keeps the GPU only while its
 * sleepers are worth the GPU time and its idle account allows (`ServerlessPolicy.plan`); the live
 * host (no per-GPU ledger) stops its sleepers here.
 */
export const LONE_SLEEP_MAX_MS_DEFAULT = 60_000;
/**
 * The longest a GPU is held by sleepers alone, whatever their value: 15 min, so a value forecast
 * that keeps saying "soon" cannot hold a GPU for the hour; past it the sleepers are stopped.
 * An assumption, a parameter; never below `loneSleepMaxMs`.
 */
export const LONE_HOLD_MAX_MS_DEFAULT = 15 * 60_000;
/**
 * KV cache an awake engine keeps on each GPU at least, beside the sleepers there: vLLM sizes its KV
 * pool once, at start, from `--gpu-memory-utilization` (the share of the GPU this one instance may
 * use; a wake re-allocates the same pool), so an engine meant to share its GPU with sleepers is
 * started with a share that leaves them room, its KV pool at least this.
 * 10 GiB holds ~80k tokens of an 8B's KV (128 KiB a token): 64 requests (the concurrency target)
 * of ~1.2k tokens. A model whose weights leave less than this keeps what it has, and no sleeper
 * shares its GPUs. An assumption, a parameter.
 */
export const KV_FLOOR_BYTES_PER_GPU_DEFAULT = 10 * GiB;
/** Sleepers one GPU may hold at most, whatever the memory says (bounds the per-GPU lists). */
export const SLEEPERS_PER_GPU_MAX = 64;
/**
 * Boot into sleep: models never started in the run are started straight into sleep on free GPUs
 * (no awake instance there) while no demand waits for a GPU, so the hour's first starts are wakes.
 * Off by default (opt-in, where sleep mode is): over seeds 1-8 it made the p99 after 10 min worse
 * in A (39.8 vs 37.9 s, 6 of 8 seeds) and C (34.0 vs 31.8 s) and cost C 1.03x the GPU-hours, for
 * 0.8 s off C's headline; README.md in this folder has the rule and the figures.
 */
export const BOOT_INTO_SLEEP_DEFAULT = false;
/**
 * Re-targeting (`retarget.ts`): a model whose requests would wait for a fresh start takes a sleeping
 * engine (or an idle one the victim rule offers) of another model of the same base, TP and GPU type,
 * and loads its own weights into it in place: its weights' read instead of ~44 s of engine init.
 * Off by default (opt-in, where sleep mode is): on the results page's settings it fires 1-9 times an
 * hour (most models already have a sleeper of their own) and failed the acceptance rule fixed
 * beforehand (A, seed 3: headline p99 52.5 -> 56.4 s); README.md in this folder, "Re-target", has
 * the rule and the figures.
 */
export const RETARGET_DEFAULT = false;

/** Sleep-mode parameters, all optional. */
export interface SleepParams {
  readonly residualBytesPerGpu?: number | undefined;
  readonly wakeOverheadMs?: number | undefined;
  readonly kvReallocMs?: number | undefined;
  readonly loneSleepMaxMs?: number | undefined;
  readonly loneHoldMaxMs?: number | undefined;
  readonly kvFloorBytesPerGpu?: number | undefined;
  /** Start never-started models into sleep on free GPUs (default BOOT_INTO_SLEEP_DEFAULT). */
  readonly bootIntoSleep?: boolean | undefined;
  /** Re-target engines of the same base instead of fresh starts (default RETARGET_DEFAULT). */
  readonly retarget?: boolean | undefined;
}

/** Resolved sleep-mode parameters. */
export interface SleepConfig {
  readonly residualBytesPerGpu: number;
  readonly wakeOverheadMs: number;
  readonly kvReallocMs: number;
  /** The least hold of a GPU held by sleepers alone (see LONE_SLEEP_MAX_MS_DEFAULT). */
  readonly loneSleepMaxMs: number;
  /** The most hold of a GPU held by sleepers alone; at least `loneSleepMaxMs`. */
  readonly loneHoldMaxMs: number;
  readonly kvFloorBytesPerGpu: number;
  /** Whether never-started models boot into sleep on free GPUs (see BOOT_INTO_SLEEP_DEFAULT). */
  readonly bootIntoSleep: boolean;
  /** Whether engines of the same base are re-targeted instead of fresh starts (see RETARGET_DEFAULT). */
  readonly retarget: boolean;
}

/**
 * Fills in the defaults; SY_ERR_INVALID_ARGUMENT for negative figures, and for a `loneHoldMaxMs`
 * given below `loneSleepMaxMs` (only the default maximum is raised to a larger minimum).
 */
export function resolveSleep(params: SleepParams = {}): SleepConfig {
  const loneSleepMaxMs = params.loneSleepMaxMs ?? LONE_SLEEP_MAX_MS_DEFAULT;
  if (params.loneHoldMaxMs !== undefined && params.loneHoldMaxMs < loneSleepMaxMs)
    throw invalidArgument('loneHoldMaxMs', params.loneHoldMaxMs, `ms >= loneSleepMaxMs (${loneSleepMaxMs})`);
  const c = {
    residualBytesPerGpu: params.residualBytesPerGpu ?? SLEEP_RESIDUAL_BYTES_PER_GPU_DEFAULT,
    wakeOverheadMs: params.wakeOverheadMs ?? WAKE_OVERHEAD_MS_DEFAULT,
    kvReallocMs: params.kvReallocMs ?? KV_REALLOC_MS_DEFAULT,
    loneSleepMaxMs,
    // A minimum hold above the default maximum raises the maximum with it (never held less).
    loneHoldMaxMs: Math.max(loneSleepMaxMs, params.loneHoldMaxMs ?? LONE_HOLD_MAX_MS_DEFAULT),
    kvFloorBytesPerGpu: params.kvFloorBytesPerGpu ?? KV_FLOOR_BYTES_PER_GPU_DEFAULT,
  };
  for (const [k, v] of Object.entries(c)) if (!(v >= 0)) throw invalidArgument(k, v, '>= 0');
  return {
    ...c,
    bootIntoSleep: params.bootIntoSleep ?? BOOT_INTO_SLEEP_DEFAULT,
    retarget: params.retarget ?? RETARGET_DEFAULT,
  };
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
  /**
   * When it can first wake: its start for a sleeper that was awake; for one started straight into
   * sleep (`prestart`), when its engine initialisation ends.
   */
  readonly readyAtMs: number;
  /** GPU memory it takes per GPU until `readyAtMs` (an initialising engine: weights, reserve, KV). */
  readonly initBytesPerGpu: number;
}

/** A GPU held by sleepers alone, as `SleepBook.loneGpuList` reports it. */
export interface LoneGpu {
  readonly node: string;
  readonly index: number;
  /**
   * How long sleepers alone have held it, ms, counted from when its last engine initialising there
   * (booted or started into sleep) became wakeable: an engine's initialisation is its start-up, not
   * idle time, so the hold rule's clock (60 s whatever it is worth, then by value) starts once it
   * could serve. 0 while one still initialises. (The bill counts from the first moment:
   * `loneGpuMs`.)
   */
  readonly aloneMs: number;
  /** Its sleepers' models, one per sleeper. */
  readonly models: readonly ModelId[];
}

interface Gpu {
  awake: string | undefined;
  /** What the awake instance needs of this GPU (weights, reserve, its KV floor); 0 when none. */
  awakeNeedBytes: number;
  readonly sleepers: Set<string>;
  /** Since when only sleepers hold it (billed, serving nothing); undefined otherwise. */
  aloneSinceMs: number | undefined;
}

/**
 * Per-GPU books of one cluster: at most one awake (or starting) instance per GPU, and sleepers as
 * long as the awake instance's need (weights, reserve, KV floor: `awakeNeedBytes`) plus every
 * sleeper's residual fits the GPU's memory budget; on a GPU with nothing awake, as long as the
 * smallest served model could still start or wake there. Placing a larger instance stops the oldest
 * sleepers its GPUs cannot keep beside it (their processes are killed). Also the GPU-ms billed to
 * GPUs held by sleepers alone.
 */
export class SleepBook {
  private readonly gpus = new Map<string, Gpu[]>();
  private readonly sleepers = new Map<string, Sleeper>();
  private readonly awakeAt = new Map<string, { node: string; gpus: number[] }>();
  /** GPUs no longer held by sleepers alone: their GPU-ms, clipped at the run's end. */
  private readonly loneBill = new GpuBill();
  private seq = 0;

  /**
   * @param nodes each node's id and GPU count
   * @param budgetBytesPerGpu what one GPU may hold (its memory times the engine's utilisation)
   * @param smallestAwakeBytesPerGpu the smallest shard plus reserve any served model needs on one GPU
   */
  constructor(
    nodes: readonly { id: string; gpus: number }[],
    private readonly budgetBytesPerGpu: number,
    private readonly smallestAwakeBytesPerGpu: number,
    readonly config: SleepConfig,
  ) {
    for (const n of nodes) {
      this.gpus.set(
        n.id,
        Array.from({ length: n.gpus }, () => ({
          awake: undefined,
          awakeNeedBytes: 0,
          sleepers: new Set(),
          aloneSinceMs: undefined,
        })),
      );
    }
  }

  /**
   * What an awake instance of a model needing `perGpuBytes` (shard plus reserve) takes of each GPU
   * beside sleepers: that plus the KV floor, at most the whole budget (a model too large for the
   * floor keeps its GPU to itself).
   */
  awakeNeedBytes(perGpuBytes: number): number {
    return Math.min(this.budgetBytesPerGpu, perGpuBytes + this.config.kvFloorBytesPerGpu);
  }

  /** Sleepers a GPU can hold beside an awake instance needing `needBytes`, at most SLEEPERS_PER_GPU_MAX. */
  sleepersBeside(needBytes: number): number {
    if (this.config.residualBytesPerGpu <= 0) return SLEEPERS_PER_GPU_MAX;
    const room = this.budgetBytesPerGpu - needBytes;
    return Math.max(0, Math.min(SLEEPERS_PER_GPU_MAX, Math.floor(room / this.config.residualBytesPerGpu)));
  }

  /** Sleepers a GPU with nothing awake can hold: so many that the smallest served model still fits. */
  get sleepersPerGpuMax(): number {
    return this.sleepersBeside(this.awakeNeedBytes(this.smallestAwakeBytesPerGpu));
  }

  /**
   * An awake instance needing `perGpuBytes` starting on `tp` GPUs of `node` that no awake instance
   * holds: GPUs where its sleepers all stay first, then GPUs holding sleepers (they are billed
   * anyway; an awake instance there makes them pay), lowest index on ties. Returns the indices and
   * the sleepers stopped to make room; throws when too few are free (the caller's cache said they
   * were).
   */
  placeAwake(
    instanceId: string,
    node: string,
    tp: number,
    nowMs: number,
    perGpuBytes = 0,
  ): { gpus: number[]; stopped: Sleeper[] } {
    const gpus = this.node(node);
    const need = this.awakeNeedBytes(perGpuBytes);
    const free = gpus
      .map((g, i) => ({ g, i, over: need + this.sleeperBytes(g, nowMs) > this.budgetBytesPerGpu }))
      .filter(({ g }) => g.awake === undefined);
    free.sort(
      (a, b) =>
        Number(a.over) - Number(b.over) ||
        Number(b.g.sleepers.size > 0) - Number(a.g.sleepers.size > 0) ||
        a.i - b.i,
    );
    if (free.length < tp) throw new Error(`node ${node}: ${free.length} GPUs free, ${tp} asked`);
    const picked = free.slice(0, tp).map(({ i }) => i);
    const stopped = this.placeAt(instanceId, node, picked, nowMs, perGpuBytes);
    return { gpus: picked, stopped };
  }

  /**
   * An awake instance on given GPUs (a woken sleeper's own); the oldest sleepers there that no
   * longer fit beside it are stopped, and returned.
   */
  placeAt(
    instanceId: string,
    node: string,
    indices: readonly number[],
    nowMs: number,
    perGpuBytes = 0,
  ): Sleeper[] {
    const gpus = this.node(node);
    for (const i of indices) {
      const g = gpus[i] as Gpu;
      if (g.awake !== undefined) throw new Error(`GPU ${node}/${i} already runs ${g.awake}`);
    }
    const need = this.awakeNeedBytes(perGpuBytes);
    const stopped = this.makeRoom(node, indices, need, nowMs);
    for (const i of indices) {
      const g = gpus[i] as Gpu;
      this.closeLone(g, nowMs);
      g.awake = instanceId;
      g.awakeNeedBytes = need;
    }
    this.awakeAt.set(instanceId, { node, gpus: [...indices] });
    return stopped;
  }

  /**
   * Stops sleepers on these GPUs until `needBytes` fits beside the rest on each: an engine still
   * initialising first (a boot or start into sleep is abandoned before a wakeable sleeper is lost:
   * it holds the most memory and is furthest from use), then the oldest.
   */
  private makeRoom(node: string, indices: readonly number[], needBytes: number, nowMs: number): Sleeper[] {
    const gpus = this.node(node);
    const stopped: Sleeper[] = [];
    for (const i of indices) {
      const g = gpus[i] as Gpu;
      while (g.sleepers.size > 0 && needBytes + this.sleeperBytes(g, nowMs) > this.budgetBytesPerGpu) {
        const first = [...g.sleepers]
          .map((id) => this.sleepers.get(id) as Sleeper)
          .sort(
            (a, b) =>
              Number(b.readyAtMs > nowMs) - Number(a.readyAtMs > nowMs) ||
              a.sinceMs - b.sinceMs ||
              (a.id < b.id ? -1 : 1),
          )[0] as Sleeper;
        stopped.push(this.remove(first.id, nowMs));
      }
    }
    return stopped;
  }

  /** The GPUs an awake (or starting) instance holds, if the book has it. */
  awakeGpus(instanceId: string): { node: string; gpus: readonly number[] } | undefined {
    return this.awakeAt.get(instanceId);
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
      g.awakeNeedBytes = 0;
      this.openLone(g, nowMs);
    }
    return at;
  }

  /**
   * Whether one more sleeper fits each of these GPUs (memory rule, per-GPU bound): beside the
   * awake instance there, or, with none, beside the smallest served model.
   */
  canSleepOn(node: string, indices: readonly number[], nowMs: number): boolean {
    const gpus = this.node(node);
    const idleNeed = this.awakeNeedBytes(this.smallestAwakeBytesPerGpu);
    const res = this.config.residualBytesPerGpu;
    return indices.every((i) => {
      const g = gpus[i] as Gpu;
      const base = g.awake === undefined ? idleNeed : g.awakeNeedBytes;
      return (
        g.sleepers.size < SLEEPERS_PER_GPU_MAX &&
        base + this.sleeperBytes(g, nowMs) + res <= this.budgetBytesPerGpu
      );
    });
  }

  /**
   * Whether an engine needing `initBytesPerGpu` (weights, reserve and the KV pool it will wake
   * with) can initialise on these GPUs beside what is there, to go straight to sleep: only on GPUs
   * with an awake instance (billed anyway), one initialising engine per GPU at a time.
   */
  canPrestartOn(node: string, indices: readonly number[], initBytesPerGpu: number, nowMs: number): boolean {
    const gpus = this.node(node);
    return indices.every((i) => {
      const g = gpus[i] as Gpu;
      if (g.awake === undefined || g.sleepers.size >= SLEEPERS_PER_GPU_MAX) return false;
      for (const id of g.sleepers) if (this.initialising(id, nowMs)) return false;
      return g.awakeNeedBytes + this.sleeperBytes(g, nowMs) + initBytesPerGpu <= this.budgetBytesPerGpu;
    });
  }

  /** `tp` GPUs of `node` where an engine can initialise into sleep (`canPrestartOn`), lowest first. */
  prestartGpus(node: string, tp: number, initBytesPerGpu: number, nowMs: number): number[] | undefined {
    const picked: number[] = [];
    for (let i = 0; i < this.node(node).length && picked.length < tp; i++) {
      if (this.canPrestartOn(node, [i], initBytesPerGpu, nowMs)) picked.push(i);
    }
    return picked.length === tp ? picked : undefined;
  }

  /**
   * Whether an engine needing `initBytesPerGpu` can boot into sleep on these GPUs though no awake
   * instance holds them (a free GPU, billed from then on as held by sleepers alone): one
   * initialising engine per GPU at a time, its whole need beside the sleepers there, and once
   * asleep, room left for the smallest served model to start or wake (`canSleepOn`'s rule). It
   * never takes a GPU's awake place: a demand start still goes there (`placeAwake`), and abandons
   * the boot if both do not fit (`makeRoom`).
   */
  canBootOn(node: string, indices: readonly number[], initBytesPerGpu: number, nowMs: number): boolean {
    const gpus = this.node(node);
    const idleNeed = this.awakeNeedBytes(this.smallestAwakeBytesPerGpu);
    const res = this.config.residualBytesPerGpu;
    return indices.every((i) => {
      const g = gpus[i] as Gpu;
      if (g.awake !== undefined || g.sleepers.size >= SLEEPERS_PER_GPU_MAX) return false;
      for (const id of g.sleepers) if (this.initialising(id, nowMs)) return false;
      const held = this.sleeperBytes(g, nowMs);
      return (
        held + initBytesPerGpu <= this.budgetBytesPerGpu && idleNeed + held + res <= this.budgetBytesPerGpu
      );
    });
  }

  /**
   * `tp` GPUs of `node` where an engine can boot into sleep (`canBootOn`): GPUs already holding
   * sleepers first (packed, so fewer GPUs are held by sleepers alone), lowest index on ties; an
   * empty GPU only when `emptyOk`.
   */
  bootGpus(
    node: string,
    tp: number,
    initBytesPerGpu: number,
    nowMs: number,
    emptyOk = true,
  ): number[] | undefined {
    const gpus = this.node(node);
    const ok = gpus
      .map((g, i) => ({ i, n: g.sleepers.size }))
      .filter(({ i, n }) => (emptyOk || n > 0) && this.canBootOn(node, [i], initBytesPerGpu, nowMs));
    ok.sort((a, b) => b.n - a.n || a.i - b.i);
    return ok.length >= tp ? ok.slice(0, tp).map(({ i }) => i) : undefined;
  }

  /** GPUs of the cluster holding at least one sleeper. */
  get gpusWithSleepers(): number {
    let n = 0;
    for (const gpus of this.gpus.values()) for (const g of gpus) if (g.sleepers.size > 0) n++;
    return n;
  }

  /** An engine booted into sleep on free GPUs (`canBootOn`): a sleeper wakeable from `readyAtMs`. */
  boot(
    model: ModelId,
    node: string,
    indices: readonly number[],
    nowMs: number,
    readyAtMs: number,
    initBytesPerGpu: number,
  ): Sleeper {
    if (!this.canBootOn(node, indices, initBytesPerGpu, nowMs))
      throw new Error(`no free GPU to boot ${model} on ${node}`);
    return this.add(model, node, indices, nowMs, readyAtMs, initBytesPerGpu);
  }

  /** An engine started straight into sleep: a sleeper that can wake from `readyAtMs` on. */
  prestart(
    model: ModelId,
    node: string,
    indices: readonly number[],
    nowMs: number,
    readyAtMs: number,
    initBytesPerGpu: number,
  ): Sleeper {
    if (!this.canPrestartOn(node, indices, initBytesPerGpu, nowMs))
      throw new Error(`no room to initialise ${model} on ${node}`);
    return this.add(model, node, indices, nowMs, readyAtMs, initBytesPerGpu);
  }

  /** Whether a sleeper's engine is still initialising (it cannot wake yet). */
  initialising(sleeperId: string, nowMs: number): boolean {
    const s = this.sleepers.get(sleeperId);
    return s !== undefined && s.readyAtMs > nowMs;
  }

  /** Bytes the sleepers on a GPU take now: residuals, and initialising engines' whole need. */
  private sleeperBytes(g: Gpu, nowMs: number): number {
    let bytes = 0;
    for (const id of g.sleepers) {
      const s = this.sleepers.get(id) as Sleeper;
      bytes +=
        s.readyAtMs > nowMs
          ? Math.max(s.initBytesPerGpu, this.config.residualBytesPerGpu)
          : this.config.residualBytesPerGpu;
    }
    return bytes;
  }

  /** Puts a sleeper of `model` on these GPUs (no awake instance of its own there any more). */
  sleep(model: ModelId, node: string, indices: readonly number[], nowMs: number): Sleeper {
    if (!this.canSleepOn(node, indices, nowMs)) throw new Error(`no room for a sleeper on ${node}`);
    return this.add(model, node, indices, nowMs, nowMs, 0);
  }

  private add(
    model: ModelId,
    node: string,
    indices: readonly number[],
    nowMs: number,
    readyAtMs: number,
    initBytesPerGpu: number,
  ): Sleeper {
    this.seq += 1;
    const s: Sleeper = {
      id: `zz-${model}@${node}#${this.seq}`,
      model,
      node,
      gpus: [...indices],
      sinceMs: nowMs,
      readyAtMs,
      initBytesPerGpu,
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

  /**
   * Every GPU held by sleepers alone now, node by node (in the order given) and by index: how long
   * it has been so (from its last engine's readiness: `LoneGpu.aloneMs`), and its sleepers' models (one entry per sleeper, oldest id first). At most one
   * entry per GPU of the cluster.
   */
  loneGpuList(nowMs: number): LoneGpu[] {
    const out: LoneGpu[] = [];
    for (const [node, gpus] of this.gpus) {
      for (const [index, g] of gpus.entries()) {
        if (g.aloneSinceMs === undefined) continue;
        const held = [...g.sleepers].sort().map((id) => this.sleepers.get(id) as Sleeper);
        // Engines started into sleep (an init of their own) count from their readiness.
        const fromMs = Math.max(
          g.aloneSinceMs,
          ...held.map((s) => (s.initBytesPerGpu > 0 ? s.readyAtMs : 0)),
        );
        out.push({ node, index, aloneMs: Math.max(0, nowMs - fromMs), models: held.map((s) => s.model) });
      }
    }
    return out;
  }

  /** Stops every sleeper on one GPU (a sleeper on several GPUs leaves them all); returns them. */
  stopOn(node: string, index: number, nowMs: number): Sleeper[] {
    const g = this.node(node)[index];
    if (g === undefined) throw new Error(`no GPU ${node}/${index}`);
    return [...g.sleepers].sort().map((id) => this.remove(id, nowMs));
  }

  /** Sleepers on one GPU (for checks and reports). */
  sleepersOn(node: string, index: number): number {
    return (this.node(node)[index] as Gpu).sleepers.size;
  }

  /** Whether a GPU has an awake instance. */
  awakeOn(node: string, index: number): string | undefined {
    return (this.node(node)[index] as Gpu).awake;
  }

  /**
   * GPU-ms billed to GPUs held by sleepers alone, up to the run's end `endMs` (no earlier than any
   * `settle`): a GPU released after it is billed up to it, as one still held is.
   */
  loneGpuMs(endMs: number): number {
    let ms = this.loneBill.totalMs(endMs);
    for (const gpus of this.gpus.values()) {
      for (const g of gpus) if (g.aloneSinceMs !== undefined) ms += Math.max(0, endMs - g.aloneSinceMs);
    }
    return ms;
  }

  /** The run's end is at or after `atMs` (a completion then): lone GPUs released by then are billed whole. */
  settle(atMs: number): void {
    this.loneBill.settle(atMs);
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
    this.loneBill.close(g.aloneSinceMs, nowMs, 1);
    g.aloneSinceMs = undefined;
  }

  private node(id: string): Gpu[] {
    const gpus = this.gpus.get(id);
    if (gpus === undefined) throw new Error(`unknown node ${id}`);
    return gpus;
  }
}

/**
 * Drain-and-swap: the least time an instance stays awake before it may be drained so a sleeper on
 * its GPUs can wake. Each swap costs a drain (its running requests finish, a few seconds of decode)
 * and a wake (~1 s), and the drained model's next requests wait for a swap back: 15 s keeps that
 * overhead under a tenth of the GPU's time while two models take turns, and each turn's wait well
 * under a ~45 s engine start. An assumption, a parameter of `swapVerdict`.
 */
export const SWAP_RESIDENCY_MIN_MS_DEFAULT = 15_000;

/** An awake instance on a sleeper's GPUs, as the host knows it. */
export interface SwapBlocker {
  /** When it took its GPUs (its start or wake began). */
  readonly sinceMs: number;
  /** When it is (or was) ready to serve: it cannot be drained before. */
  readonly readyAtMs: number;
  /** Requests of its own model waiting for an instance (held by the gateway). */
  readonly modelHeld: number;
  /** Whether it is already draining (for another swap, or stopping). */
  readonly draining: boolean;
}

/** The model with requests waiting, as `swapVerdict` needs it. */
export interface SwapWaiting {
  /** Its requests held for an instance. */
  readonly held: number;
  /** Its fresh start's estimate, ms. */
  readonly startupMs: number;
  /** Whether a node has room for a fresh start of it now, no instance stopped (default false). */
  readonly freeGpu?: boolean;
  /** When its oldest held request came (default: now). */
  readonly waitingSinceMs?: number | undefined;
}

/**
 * What a model with requests waiting does about a sleeper of its own whose GPUs run awake (busy)
 * instances of other models: `drain` them now (stop admitting, let their requests finish, put them
 * to sleep, then wake the sleeper); `wait` for that (they are draining, or still within their
 * minimum residency and the wait is shorter than a fresh start; with a node that has room for a fresh
 * start, `freeGpu`, only until the oldest held request has waited one residency); or `none` (start
 * elsewhere).
 * Who yields: a blocker whose own model has nothing waiting yields to a model with requests
 * waiting; one whose model has requests waiting too keeps its GPU. Uses only what a live gateway
 * knows: its held requests and its instances' states and ready times.
 */
export function swapVerdict(
  waiting: SwapWaiting,
  blockers: readonly SwapBlocker[],
  nowMs: number,
  residencyMinMs = SWAP_RESIDENCY_MIN_MS_DEFAULT,
): 'drain' | 'wait' | 'none' {
  if (waiting.held === 0 || blockers.length === 0) return 'none';
  if (blockers.some((b) => !b.draining && b.modelHeld > 0)) return 'none';
  const pending = blockers.filter((b) => !b.draining);
  // All draining already: the wake is the time their running requests take to finish.
  if (pending.length === 0) return 'wait';
  const freeAtMs = Math.max(...pending.map((b) => Math.max(b.readyAtMs, b.sinceMs + residencyMinMs)));
  if (freeAtMs <= nowMs) return 'drain';
  // Waiting out a residency is a bet that the GPU frees first; with a free GPU, a fresh start is a
  // sure one. The bet lost over and over: other models' wakes took the shared GPU in turn, each a
  // new blocker with a new residency, and the waiting model's requests timed out (S06, 128 models
  // on 32 GPUs: m097 waited 135 s, 57 verdicts 'wait' in a row, while other GPUs were free).
  // A blocker still starting counts too: sparing those waits (ready when it is) put the results
  // page's A at 0.95x / 0.83x the best baseline's p99 / after 10 min (0.89x / 0.36x with them).
  const waitedMs = waiting.waitingSinceMs === undefined ? 0 : nowMs - waiting.waitingSinceMs;
  if (waiting.freeGpu === true && waitedMs >= residencyMinMs) return 'none';
  return freeAtMs - nowMs < waiting.startupMs ? 'wait' : 'none';
}

/**
 * A fixed order of model ids that carries nothing of their names' order (FNV-1a, 32 bits): a
 * generator that names models by popularity (m00 the most asked) must not leak its ranks into an
 * order a live gateway could not justify.
 */
export function nameHash(id: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < id.length; i++) h = Math.imul(h ^ id.charCodeAt(i), 0x01000193) >>> 0;
  return h;
}

/** What the boot rule needs of one model, as the host knows it. */
export interface BootCandidate {
  readonly id: ModelId;
  /** Whether it has had an instance or an engine (awake, starting or asleep) in this run. */
  readonly everStarted: boolean;
  /** Instances starting or ready. */
  readonly active: number;
  /** Requests held for an instance. */
  readonly held: number;
}

/**
 * Boot into sleep (sleep mode, `bootIntoSleep`): the models to start straight into sleep on free
 * GPUs now, in the order to try. Empty while any model's requests wait with no instance of it
 * starting or ready (demand first: they may need a free GPU's awake place this decision); else
 * every model never started in the run and with no request held, in `nameHash` order (such a model
 * has no arrivals yet, so no observed figure can rank it, and a name order would leak a generator's
 * popularity ranks). Once per model: a model that ran is back to today's rules (a sleeper stopped
 * by the hold rule is not booted again, or a GPU could be held in a boot-and-stop loop).
 */
export function bootQueue(models: readonly BootCandidate[]): ModelId[] {
  if (models.some((m) => m.held > 0 && m.active === 0)) return [];
  return models
    .filter((m) => !m.everStarted && m.active === 0 && m.held === 0)
    .map((m) => m.id)
    .sort((a, b) => nameHash(a) - nameHash(b) || (a < b ? -1 : a > b ? 1 : 0));
}
