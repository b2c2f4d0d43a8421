/**
 * Which node holds which model's weights where, as models come and go: a pure state machine over
 * the nodes' tiers (tiers.ts). Loading a model starts an instance on `tp` free GPUs of a node; its
 * weights are read from the fastest tier that holds them, queueing FIFO for that tier's lanes, and
 * land in the node's DRAM and SSD caches on the way (LRU by capacity). Unloading keeps the weights
 * in DRAM. Time arrives as `nowMs` (virtual in the twin); no clock, no randomness, no I/O.
 * Start-up times come from src/model/startup.ts, whose weights term this module computes per tier.
 */
import { invalidArgument, SwitchyardError, unknownName } from '../../core/errors.ts';
import type { ModelId } from '../../core/ids.ts';
import { GiB, MS_PER_S } from '../../core/units.ts';
import { gpuSpec } from '../../model/gpus.ts';
import { activationReserveBytes, weightBytesPerGpu } from '../../model/kv.ts';
import { modelSpec, modelWeightBytes } from '../../model/models.ts';
import { type CompileMode, type StartupTerms, startupBreakdown } from '../../model/startup.ts';
import { DEFAULT_GPU_MEMORY_UTILIZATION } from '../placement/placement.ts';
import { type CacheTier, type NodeTiers, SOURCE_TIERS, type SourceTier, type TierSpec } from './tiers.ts';

/** Most models one cache tracks (bounds every tier's LRU list and the per-model tables). */
export const CACHED_MODELS_MAX = 10_000;
/** Most nodes one cache tracks (the cluster config's own bound). */
export const CACHE_NODES_MAX = 10_000;

/**
 * A servable model: its served id, the catalogue model whose weights it has (`base`, default the
 * id itself: see notes/s19/shared-ids.md) and its tensor-parallel degree (default 1).
 */
export interface CachedModel {
  readonly id: ModelId;
  readonly base?: ModelId | undefined;
  readonly tp?: number | undefined;
}

/** How an instance's start-up is put together. */
export interface ModelCacheOptions {
  readonly nodes: readonly NodeTiers[];
  readonly models: readonly CachedModel[];
  /** torch.compile at start-up (startup.ts; default `cached`). */
  readonly compile?: CompileMode | undefined;
  /** Overrides of startup.ts's fixed terms (process init, compile, CUDA-graph capture). */
  readonly terms?: Partial<StartupTerms> | undefined;
  /** Fraction of a GPU's memory an engine may use, for the fit check (default 0.9, as placement). */
  readonly gpuMemoryUtilization?: number | undefined;
}

/** The start-up of one instance of a model on a node, term by term, in ms. */
export interface StartupEstimate {
  readonly model: ModelId;
  readonly node: string;
  /** The tier the weights are read from: the one holding them that delivers them soonest. */
  readonly fromTier: SourceTier;
  /** Waiting for a free lane of that tier (loads ahead of this one). */
  readonly queuedMs: number;
  /** Reading the weights: the tier's latency, then its bandwidth or the GPUs' PCIe links. */
  readonly weightsMs: number;
  /** Everything else startup.ts counts: process init, compilation, CUDA-graph capture. */
  readonly engineInitMs: number;
  /** queuedMs + weightsMs + engineInitMs. */
  readonly startupMs: number;
}

/** What `load` did. */
export interface LoadResult extends StartupEstimate {
  readonly instanceId: string;
  /** When the instance answers its first request: nowMs + startupMs. */
  readonly readyAtMs: number;
  /** Weights dropped from a cache tier to make room, in the order dropped. */
  readonly evicted: readonly TierEviction[];
}

/** What `unload` did. */
export interface UnloadResult {
  readonly instanceId: string;
  readonly evicted: readonly TierEviction[];
}

/** One model's weights dropped from one tier of one node. */
export interface TierEviction {
  readonly node: string;
  readonly tier: SourceTier;
  readonly model: ModelId;
}

/** A running (or starting) instance, as callers and reports see it. */
export interface InstanceInfo {
  readonly id: string;
  readonly model: ModelId;
  readonly node: string;
  readonly gpus: number;
  readonly loadedAtMs: number;
  readonly readyAtMs: number;
  /** Last time the host said the instance served something (`touch`), else its ready time. */
  readonly lastUsedMs: number;
  readonly fromTier: SourceTier;
}

/** One tier of one node in a snapshot: its models from least to most recently used. */
export interface TierSnapshot {
  readonly capacityBytes: number;
  readonly usedBytes: number;
  readonly models: readonly ModelId[];
  /** When each lane finishes the loads given to it so far. */
  readonly laneFreeAtMs: readonly number[];
}

/** A node in a snapshot. */
export interface NodeSnapshot {
  readonly id: string;
  readonly gpus: number;
  readonly gpusFree: number;
  readonly instances: readonly InstanceInfo[];
  readonly dram: TierSnapshot;
  readonly ssd: TierSnapshot;
  readonly remote: { readonly laneFreeAtMs: readonly number[] };
}

/** The whole cache, for reports: plain data, safe to JSON.stringify. */
export interface ModelCacheSnapshot {
  readonly nowMs: number;
  readonly nodes: readonly NodeSnapshot[];
  readonly loadsByTier: Readonly<Record<SourceTier, number>>;
  readonly evictionsByTier: Readonly<Record<SourceTier, number>>;
}

interface ModelEntry {
  readonly id: ModelId;
  readonly base: ModelId;
  readonly tp: number;
  readonly weightBytes: number;
  readonly shardBytes: number;
  /** Weights of one shard plus the engine's reserve: what must fit in one GPU. */
  readonly perGpuBytes: number;
}

interface TierState {
  readonly spec: TierSpec;
  /** Models held, least recently used first (Map order is insertion order: deterministic). */
  readonly lru: Map<ModelId, number>;
  usedBytes: number;
  readonly laneFreeAtMs: number[];
}

interface NodeState {
  readonly spec: NodeTiers;
  readonly tiers: Record<SourceTier, TierState>;
  readonly instances: Map<string, InstanceState>;
  gpusUsed: number;
  /** Host DRAM held by sleeping engines' offloaded weights (pinDram): counted, never LRU-evicted. */
  pinnedDramBytes: number;
}

/** An instance as the cache keeps it: what callers see, its last use updated by `touch`. */
type InstanceState = Omit<InstanceInfo, 'lastUsedMs'> & { lastUsedMs: number };

/**
 * The model cache of a cluster. Every method is deterministic: the same calls in the same order
 * give the same results. `nowMs` may not go backwards between calls that change state.
 */
export class ModelCache {
  readonly #models = new Map<ModelId, ModelEntry>();
  readonly #nodes = new Map<string, NodeState>();
  readonly #compile: CompileMode;
  readonly #terms: Partial<StartupTerms> | undefined;
  readonly #utilization: number;
  readonly #loadsByTier: Record<SourceTier, number> = { dram: 0, ssd: 0, remote: 0 };
  readonly #evictionsByTier: Record<SourceTier, number> = { dram: 0, ssd: 0, remote: 0 };
  #nowMs = 0;
  #instanceSeq = 0;

  constructor(options: ModelCacheOptions) {
    if (options.nodes.length === 0 || options.nodes.length > CACHE_NODES_MAX) {
      throw invalidArgument('nodes', options.nodes.length, `1 to ${CACHE_NODES_MAX} nodes`);
    }
    if (options.models.length > CACHED_MODELS_MAX) {
      throw invalidArgument('models', options.models.length, `at most ${CACHED_MODELS_MAX} models`);
    }
    this.#compile = options.compile ?? 'cached';
    this.#terms = options.terms;
    this.#utilization = options.gpuMemoryUtilization ?? DEFAULT_GPU_MEMORY_UTILIZATION;
    if (!(this.#utilization > 0 && this.#utilization <= 1)) {
      throw invalidArgument('gpuMemoryUtilization', this.#utilization, 'a fraction in (0, 1]');
    }
    for (const model of options.models) this.#addModel(model);
    for (const node of options.nodes) this.#addNode(node);
  }

  /** The node ids, in the order given. */
  nodeIds(): string[] {
    return [...this.#nodes.keys()];
  }

  /** GPUs of `node` no instance holds. */
  freeGpus(node: string): number {
    const n = this.#node(node);
    return n.spec.gpus - n.gpusUsed;
  }

  /** GPUs one instance of `model` takes (its tp). */
  gpusPerInstance(model: ModelId): number {
    return this.#model(model).tp;
  }

  /** Whether one shard of `model` (weights and engine reserve) fits a GPU of `node`. */
  fits(model: ModelId, node: string): boolean {
    const m = this.#model(model);
    const n = this.#node(node);
    return m.tp <= n.spec.gpus && m.perGpuBytes <= gpuSpec(n.spec.gpu).hbmBytes * this.#utilization;
  }

  /** The tiers of `node` holding `model`'s weights, nearest the GPU first (`remote` always). */
  contains(model: ModelId, node: string): CacheTier[] {
    this.#model(model);
    const n = this.#node(node);
    const held: CacheTier[] = [];
    if ([...n.instances.values()].some((i) => i.model === model)) held.push('gpu');
    for (const tier of SOURCE_TIERS) if (holds(tier, n.tiers[tier], model)) held.push(tier);
    return held;
  }

  /** The instances on `node`, oldest first. */
  instances(node: string): InstanceInfo[] {
    return [...this.#node(node).instances.values()].map((i) => ({ ...i }));
  }

  /**
   * The start-up of an instance of `model` on `node` if its load began at `atMs` (now or later),
   * whatever the node's free GPUs: pure, changes nothing. The tier is the holder whose lane
   * wait plus read time is least, ties to the tier nearer the GPU.
   */
  estimate(model: ModelId, node: string, atMs: number): StartupEstimate {
    const m = this.#model(model);
    const n = this.#node(node);
    let best: { tier: SourceTier; queuedMs: number; weightsMs: number } | undefined;
    for (const tier of SOURCE_TIERS) {
      const state = n.tiers[tier];
      if (!holds(tier, state, model)) continue;
      const queuedMs = Math.max(0, earliestLane(state).freeAtMs - atMs);
      const weightsMs = readTimeMs(state.spec, m, n.spec.hostLinkBytesPerS);
      if (best === undefined || queuedMs + weightsMs < best.queuedMs + best.weightsMs) {
        best = { tier, queuedMs, weightsMs };
      }
    }
    // The remote store holds every model, so some tier always does.
    if (best === undefined) throw new Error(`no tier of ${node} holds ${model}`);
    const breakdown = startupBreakdown({
      gpu: n.spec.gpu,
      model: m.base,
      tp: m.tp,
      compile: this.#compile,
      terms: this.#terms,
      weightsMs: best.weightsMs,
    });
    const engineInitMs = breakdown.processInitMs + breakdown.compileMs + breakdown.cudaGraphCaptureMs;
    return {
      model,
      node,
      fromTier: best.tier,
      queuedMs: best.queuedMs,
      weightsMs: best.weightsMs,
      engineInitMs,
      startupMs: best.queuedMs + best.weightsMs + engineInitMs,
    };
  }

  /**
   * Starts an instance of `model` on `node` at `nowMs`: takes `tp` free GPUs, queues the read on the
   * fastest tier holding the weights, and caches them in DRAM (and in SSD when read from remote).
   * Throws SY_ERR_CAPACITY when the node has too few free GPUs (unload first) or the model does not
   * fit its GPUs.
   */
  load(model: ModelId, node: string, nowMs: number): LoadResult {
    this.#advance(nowMs);
    const m = this.#model(model);
    const n = this.#node(node);
    if (!this.fits(model, node)) {
      throw new SwitchyardError(
        'SY_ERR_CAPACITY',
        `${model} at tp${m.tp} needs ${(m.perGpuBytes / GiB).toFixed(1)} GiB on each of ${m.tp} GPUs; ` +
          `node ${node} has ${n.spec.gpus} ${n.spec.gpu}`,
        { param: 'model', model, node },
      );
    }
    requireFreeGpus(n, m);
    const estimate = this.estimate(model, node, nowMs);
    const lane = earliestLane(n.tiers[estimate.fromTier]);
    n.tiers[estimate.fromTier].laneFreeAtMs[lane.index] = nowMs + estimate.queuedMs + estimate.weightsMs;
    this.#loadsByTier[estimate.fromTier] += 1;
    const evicted = this.#landWeights(n, m, estimate.fromTier);
    const instance = this.#startInstance(n, m, nowMs, estimate);
    return { ...estimate, instanceId: instance.id, readyAtMs: instance.readyAtMs, evicted };
  }

  /**
   * Reads `model`'s weights for an engine started straight into sleep on `node` at `nowMs` (its GPUs
   * are the sleep books', its DRAM copy the caller's `pinDram`): as a load does, from the fastest
   * tier holding them, queueing FIFO for that tier's lane, landing in the SSD cache when read from the
   * remote store, and counted as a load of that tier. Returns the start-up it takes from now.
   */
  readForSleep(model: ModelId, node: string, nowMs: number): StartupEstimate {
    this.#advance(nowMs);
    const m = this.#model(model);
    const n = this.#node(node);
    const estimate = this.estimate(model, node, nowMs);
    const lane = earliestLane(n.tiers[estimate.fromTier]);
    n.tiers[estimate.fromTier].laneFreeAtMs[lane.index] = nowMs + estimate.queuedMs + estimate.weightsMs;
    this.#loadsByTier[estimate.fromTier] += 1;
    if (estimate.fromTier === 'remote') this.#insert(n, 'ssd', m);
    return estimate;
  }

  /** Stops the newest instance of `model` on `node`; SY_ERR_NOT_FOUND when there is none. */
  unload(model: ModelId, node: string, nowMs: number): UnloadResult {
    this.#model(model);
    const instances = [...this.#node(node).instances.values()].filter((i) => i.model === model);
    const newest = instances.at(-1);
    if (newest === undefined) {
      throw new SwitchyardError('SY_ERR_NOT_FOUND', `no instance of ${model} on node ${node}`, {
        param: 'model',
      });
    }
    return this.unloadInstance(newest.id, nowMs);
  }

  /**
   * Stops one instance: frees its GPUs and keeps its weights in the node's DRAM cache (evicting
   * least recently used models there if need be; weights larger than the cache are dropped).
   */
  unloadInstance(instanceId: string, nowMs: number): UnloadResult {
    this.#advance(nowMs);
    const { node, instance } = this.#instance(instanceId);
    node.instances.delete(instanceId);
    node.gpusUsed -= instance.gpus;
    const evicted = this.#insert(node, 'dram', this.#model(instance.model));
    return { instanceId, evicted };
  }

  /** Records that an instance served something at `nowMs` (the order idle victims are taken in). */
  touch(instanceId: string, nowMs: number): void {
    this.#advance(nowMs);
    const { instance } = this.#instance(instanceId);
    instance.lastUsedMs = Math.max(instance.lastUsedMs, nowMs);
  }

  /**
   * Reserves room in `node`'s DRAM for one copy of `model`'s weights that a sleeping engine has
   * offloaded (vLLM sleep level 1): least recently used cached weights are dropped to fit; the pin
   * itself is never evicted, only released by `unpinDram`. False (and nothing changed) when the
   * DRAM tier cannot hold it beside the other pins.
   */
  pinDram(model: ModelId, node: string, nowMs: number): { ok: boolean; evicted: TierEviction[] } {
    this.#advance(nowMs);
    const m = this.#model(model);
    const n = this.#node(node);
    const dram = n.tiers.dram;
    if (n.pinnedDramBytes + m.weightBytes > dram.spec.capacityBytes) return { ok: false, evicted: [] };
    const evicted: TierEviction[] = [];
    for (const [victim, bytes] of dram.lru) {
      if (dram.usedBytes + m.weightBytes <= dram.spec.capacityBytes) break;
      dram.lru.delete(victim);
      dram.usedBytes -= bytes;
      this.#evictionsByTier.dram += 1;
      evicted.push({ node: n.spec.id, tier: 'dram', model: victim });
    }
    n.pinnedDramBytes += m.weightBytes;
    dram.usedBytes += m.weightBytes;
    return { ok: true, evicted };
  }

  /** Releases one `pinDram` of `model` on `node` (the engine woke up or stopped). */
  unpinDram(model: ModelId, node: string, nowMs: number): void {
    this.#advance(nowMs);
    const m = this.#model(model);
    const n = this.#node(node);
    if (n.pinnedDramBytes < m.weightBytes) throw new Error(`no pinned copy of ${model} on ${node}`);
    n.pinnedDramBytes -= m.weightBytes;
    n.tiers.dram.usedBytes -= m.weightBytes;
  }

  /** Host DRAM of `node` pinned by sleeping engines, bytes (also counted in the DRAM tier's use). */
  pinnedDramBytes(node: string): number {
    return this.#node(node).pinnedDramBytes;
  }

  /** Bytes of one GPU's shard of `model`'s weights, and what one GPU must hold with the reserve. */
  shardBytes(model: ModelId): { shardBytes: number; perGpuBytes: number; weightBytes: number } {
    const m = this.#model(model);
    return { shardBytes: m.shardBytes, perGpuBytes: m.perGpuBytes, weightBytes: m.weightBytes };
  }

  /**
   * An instance of `model` on `node` whose engine already exists (a sleeping engine waking up): it
   * takes `tp` free GPUs and is ready after `startupMs` the caller computed; no tier is read and no
   * load is counted. SY_ERR_CAPACITY when too few GPUs are free.
   */
  resume(model: ModelId, node: string, nowMs: number, startupMs: number): LoadResult {
    this.#advance(nowMs);
    const m = this.#model(model);
    const n = this.#node(node);
    requireFreeGpus(n, m);
    const estimate: StartupEstimate = {
      model,
      node,
      fromTier: 'dram',
      queuedMs: 0,
      weightsMs: startupMs,
      engineInitMs: 0,
      startupMs,
    };
    const instance = this.#startInstance(n, m, nowMs, estimate);
    return { ...estimate, instanceId: instance.id, readyAtMs: instance.readyAtMs, evicted: [] };
  }

  /**
   * An instance of `model` on `node` made from an engine already initialised there for another
   * model of the same base (re-targeted: its weights replaced in place, src/control/serverless/
   * retarget.ts). It takes `tp` free GPUs (the caller freed the engine's), reads `model`'s weights
   * as a load does (the fastest tier holding them, FIFO on that tier's lane, landing in DRAM and in
   * SSD when read from the store; counted as a load of that tier), and adds `overheadMs` in place of
   * the engine initialisation. `released`, the model whose weights the engine dropped, is kept in the
   * node's DRAM cache first (as a stopped instance's are), so the new weights are the more recent.
   * SY_ERR_CAPACITY when too few GPUs are free.
   */
  retarget(model: ModelId, node: string, nowMs: number, overheadMs: number, released?: ModelId): LoadResult {
    this.#advance(nowMs);
    const m = this.#model(model);
    const n = this.#node(node);
    requireFreeGpus(n, m);
    if (released !== undefined) this.#insert(n, 'dram', this.#model(released));
    const read = this.estimate(model, node, nowMs);
    const lane = earliestLane(n.tiers[read.fromTier]);
    n.tiers[read.fromTier].laneFreeAtMs[lane.index] = nowMs + read.queuedMs + read.weightsMs;
    this.#loadsByTier[read.fromTier] += 1;
    const evicted = this.#landWeights(n, m, read.fromTier);
    const estimate: StartupEstimate = {
      ...read,
      engineInitMs: overheadMs,
      startupMs: read.queuedMs + read.weightsMs + overheadMs,
    };
    const instance = this.#startInstance(n, m, nowMs, estimate);
    return { ...estimate, instanceId: instance.id, readyAtMs: instance.readyAtMs, evicted };
  }

  /** The cache's state as plain data, nodes in the order given. */
  snapshot(): ModelCacheSnapshot {
    return {
      nowMs: this.#nowMs,
      nodes: [...this.#nodes.values()].map((n) => ({
        id: n.spec.id,
        gpus: n.spec.gpus,
        gpusFree: n.spec.gpus - n.gpusUsed,
        instances: [...n.instances.values()].map((i) => ({ ...i })),
        dram: tierSnapshot(n.tiers.dram),
        ssd: tierSnapshot(n.tiers.ssd),
        remote: { laneFreeAtMs: [...n.tiers.remote.laneFreeAtMs] },
      })),
      loadsByTier: { ...this.#loadsByTier },
      evictionsByTier: { ...this.#evictionsByTier },
    };
  }

  #addModel(model: CachedModel): void {
    if (this.#models.has(model.id)) throw invalidArgument('models', model.id, 'unique model ids');
    const base = model.base ?? model.id;
    const tp = model.tp ?? 1;
    if (!Number.isInteger(tp) || tp < 1) throw invalidArgument(`tp of ${model.id}`, tp, 'a positive integer');
    const spec = modelSpec(base); // SY_ERR_UNKNOWN_NAME for a base outside the catalogue
    const shardBytes = weightBytesPerGpu(spec, tp);
    this.#models.set(model.id, {
      id: model.id,
      base,
      tp,
      weightBytes: modelWeightBytes(spec),
      shardBytes,
      perGpuBytes: shardBytes + activationReserveBytes(spec, tp),
    });
  }

  #addNode(spec: NodeTiers): void {
    if (this.#nodes.has(spec.id)) throw invalidArgument('nodes', spec.id, 'unique node ids');
    gpuSpec(spec.gpu); // SY_ERR_UNKNOWN_NAME for a GPU outside the catalogue
    const tiers = {} as Record<SourceTier, TierState>;
    for (const tier of SOURCE_TIERS) {
      const t = spec.tiers[tier];
      tiers[tier] = {
        spec: t,
        lru: new Map(),
        usedBytes: 0,
        laneFreeAtMs: new Array<number>(t.lanes).fill(0),
      };
    }
    this.#nodes.set(spec.id, { spec, tiers, instances: new Map(), gpusUsed: 0, pinnedDramBytes: 0 });
  }

  /** Weights read from `from` now sit in every faster cache tier too; `from` counts as just used. */
  #landWeights(node: NodeState, model: ModelEntry, from: SourceTier): TierEviction[] {
    const evicted: TierEviction[] = [];
    if (from === 'remote') evicted.push(...this.#insert(node, 'ssd', model));
    if (from !== 'dram') evicted.push(...this.#insert(node, 'dram', model));
    else this.#insert(node, 'dram', model); // refreshes its recency; evicts nothing
    return evicted;
  }

  /** Puts (or refreshes) `model` in a cache tier, dropping least recently used models to fit. */
  #insert(node: NodeState, tier: 'dram' | 'ssd', model: ModelEntry): TierEviction[] {
    const state = node.tiers[tier];
    if (state.lru.delete(model.id)) {
      state.lru.set(model.id, model.weightBytes);
      return [];
    }
    if (model.weightBytes > state.spec.capacityBytes) return [];
    const evicted: TierEviction[] = [];
    for (const [victim, bytes] of state.lru) {
      if (state.usedBytes + model.weightBytes <= state.spec.capacityBytes) break;
      state.lru.delete(victim);
      state.usedBytes -= bytes;
      this.#evictionsByTier[tier] += 1;
      evicted.push({ node: node.spec.id, tier, model: victim });
    }
    // Pinned weights (sleeping engines) are not evictable: with them the room may still be short.
    if (state.usedBytes + model.weightBytes > state.spec.capacityBytes) return evicted;
    state.lru.set(model.id, model.weightBytes);
    state.usedBytes += model.weightBytes;
    return evicted;
  }

  #startInstance(
    node: NodeState,
    model: ModelEntry,
    nowMs: number,
    estimate: StartupEstimate,
  ): InstanceState {
    this.#instanceSeq += 1;
    const readyAtMs = nowMs + estimate.startupMs;
    const instance: InstanceState = {
      id: `${model.id}@${node.spec.id}#${this.#instanceSeq}`,
      model: model.id,
      node: node.spec.id,
      gpus: model.tp,
      loadedAtMs: nowMs,
      readyAtMs,
      lastUsedMs: readyAtMs,
      fromTier: estimate.fromTier,
    };
    node.instances.set(instance.id, instance);
    node.gpusUsed += model.tp;
    return instance;
  }

  #advance(nowMs: number): void {
    if (!Number.isFinite(nowMs) || nowMs < this.#nowMs) {
      throw invalidArgument('nowMs', nowMs, `a finite time not before the last call's ${this.#nowMs}`);
    }
    this.#nowMs = nowMs;
  }

  #model(id: ModelId): ModelEntry {
    const m = this.#models.get(id);
    if (m === undefined) throw unknownName('model', id, [...this.#models.keys()].slice(0, 50));
    return m;
  }

  #node(id: string): NodeState {
    const n = this.#nodes.get(id);
    if (n === undefined) throw unknownName('node', id, [...this.#nodes.keys()].slice(0, 50));
    return n;
  }

  #instance(id: string): { node: NodeState; instance: InstanceState } {
    for (const node of this.#nodes.values()) {
      const instance = node.instances.get(id);
      if (instance !== undefined) return { node, instance };
    }
    throw new SwitchyardError('SY_ERR_NOT_FOUND', `no instance '${id}'`, { param: 'instanceId' });
  }
}

/**
 * Time to read a model's weights from a tier into its GPUs: the tier's latency, then the slower of
 * the tier delivering all the bytes and each GPU's PCIe link taking its shard (the two overlap as
 * loaders pipeline them), as src/model/loading.ts's `weightLoadTimeMs` does for its fixed tiers.
 */
export function readTimeMs(
  tier: TierSpec,
  model: { weightBytes: number; shardBytes: number },
  hostLinkBytesPerS: number,
): number {
  const sourceMs = (model.weightBytes / tier.readBytesPerS) * MS_PER_S;
  const linkMs = (model.shardBytes / hostLinkBytesPerS) * MS_PER_S;
  return tier.latencyMs + Math.max(sourceMs, linkMs);
}

/** Throws SY_ERR_CAPACITY when `n` has fewer free GPUs than an instance of `m` takes (`tp`). */
function requireFreeGpus(n: NodeState, m: ModelEntry): void {
  const free = n.spec.gpus - n.gpusUsed;
  if (free < m.tp) {
    throw new SwitchyardError(
      'SY_ERR_CAPACITY',
      `${m.id} needs ${m.tp} GPUs; node ${n.spec.id} has ${free} free`,
      {
        param: 'node',
        model: m.id,
        node: n.spec.id,
      },
    );
  }
}

/** The remote store holds every model; a cache tier holds what its LRU list does. */
function holds(tier: SourceTier, state: TierState, model: ModelId): boolean {
  return tier === 'remote' || state.lru.has(model);
}

/** The lane that frees first, lowest index on ties. */
function earliestLane(state: TierState): { index: number; freeAtMs: number } {
  let index = 0;
  for (let i = 1; i < state.laneFreeAtMs.length; i++) {
    if ((state.laneFreeAtMs[i] ?? 0) < (state.laneFreeAtMs[index] ?? 0)) index = i;
  }
  return { index, freeAtMs: state.laneFreeAtMs[index] ?? 0 };
}

function tierSnapshot(state: TierState): TierSnapshot {
  return {
    capacityBytes: state.spec.capacityBytes,
    usedBytes: state.usedBytes,
    models: [...state.lru.keys()],
    laneFreeAtMs: [...state.laneFreeAtMs],
  };
}
