/**
 * Placement: which node and which GPUs each model instance runs on, for several models sharing one
 * cluster (README.md in this folder has the rule and its sources). Pure: no clock, no randomness,
 * no I/O; ties break by node id and instance id, so the same inputs give the same plan. The state
 * is the nodes and the placements passed in; nothing is kept between calls.
 */
import { invalidArgument, SwitchyardError } from '../../core/errors.ts';
import type { InstanceId, ModelId } from '../../core/ids.ts';
import { GiB } from '../../core/units.ts';
import { gpuSpec } from '../../model/gpus.ts';
import type { KvSizingOptions } from '../../model/kv.ts';
import { modelSpec } from '../../model/models.ts';
import {
  GPU_MEMORY_UTILIZATION_DEFAULT,
  smallestFittingTp,
  type TpFitOptions,
  tpFit,
} from '../../model/tp-fit.ts';
import type { ReplicaTarget, Variant } from '../types.ts';
import { variantKey } from '../types.ts';
import type { ClusterNode } from './nodes.ts';

/** Most placements one call accepts (every running and draining instance of the cluster). */
export const PLACEMENTS_MAX = 100_000;
/** The share of a GPU's memory an engine may use when none is given (vLLM's default). */
export const DEFAULT_GPU_MEMORY_UTILIZATION = GPU_MEMORY_UTILIZATION_DEFAULT;

/** An instance holding GPUs: where it runs. */
export interface Placement {
  readonly instanceId: InstanceId;
  readonly variant: Variant;
  readonly node: string;
  /** The node's GPUs it holds, `variant.tp` of them. */
  readonly gpuIndices: readonly number[];
  /**
   * Draining: it still holds its GPUs until it stops, but no longer counts as a replica or against
   * the budget, and a new instance may be placed on its GPUs (that one waits for it to stop).
   */
  readonly draining?: boolean;
}

/** What one model wants, from its own autoscaler. */
export interface ModelWant {
  /** The served id (keys the wants, names new instances). */
  readonly model: ModelId;
  /**
   * The catalogue model whose weights it loads, when the served id is another name for it (a
   * fine-tune `m07` of `llama-3.1-8b`); default `model`.
   */
  readonly base?: ModelId | undefined;
  /** Higher is served first and may take GPUs from lower ones. */
  readonly priority: number;
  /** Instances wanted per variant; variants not listed are wanted at zero. */
  readonly targets: readonly ReplicaTarget[];
  /** Instances a higher-priority model may never take below. */
  readonly minReplicas: number;
  /**
   * The batch limits its engines run with (max_num_seqs, max_num_batched_tokens): they size the
   * engine's reserve and the KV cache a TP must leave (src/model/tp-fit.ts). Unset fields: `vllm
   * serve`'s defaults on the variant's GPU.
   */
  readonly engine?: KvSizingOptions | undefined;
}

/** Optional limits. */
export interface PlacementOptions {
  /** Most GPUs all non-draining instances together may hold; unset: the nodes' total. */
  readonly gpuBudget?: number;
  /** Share of each GPU's memory an engine may use, for the fit check (default 0.9). */
  readonly gpuMemoryUtilization?: number;
}

/** One step for the actuator, with the decision-log line saying why. */
export type PlacementAction =
  | {
      readonly kind: 'place';
      readonly instanceId: InstanceId;
      readonly variant: Variant;
      readonly node: string;
      readonly gpuIndices: readonly number[];
      /** Draining instances that hold some of these GPUs (or the budget): start after they stop. */
      readonly waitsFor: readonly InstanceId[];
      readonly reason: string;
    }
  | {
      /** Drain, then stop: the instance finishes what it runs before its GPUs are free. */
      readonly kind: 'evict';
      readonly instanceId: InstanceId;
      readonly variant: Variant;
      readonly node: string;
      readonly gpuIndices: readonly number[];
      readonly cause: 'scale-down' | 'preempted';
      readonly reason: string;
    };

/** Instances of one variant that could not be placed. */
export interface Unplaced {
  readonly model: ModelId;
  readonly variant: Variant;
  readonly missing: number;
  readonly code: 'SY_ERR_CAPACITY';
  /** `unfit`: never placeable on these nodes; `short`: not enough free GPUs or budget now. */
  readonly kind: 'unfit' | 'short';
  readonly reason: string;
}

/** The answer of one call. */
export interface PlacementPlan {
  /** In the order to take them. */
  readonly actions: readonly PlacementAction[];
  /** The placements after the actions: evicted instances marked draining, new ones added. */
  readonly placements: readonly Placement[];
  readonly unplaced: readonly Unplaced[];
  /** One line per action, then one per unplaced variant. */
  readonly log: readonly string[];
}

/** One GPU's holders: at most one live instance, and draining ones not yet stopped. */
interface GpuSlot {
  live: InstanceId | undefined;
  draining: InstanceId[];
}

interface LiveInstance {
  readonly placement: Placement;
  readonly priority: number | undefined;
}

/** The working state of one call. */
interface State {
  /** Sorted by id. */
  readonly nodes: readonly ClusterNode[];
  readonly nodeById: ReadonlyMap<string, ClusterNode>;
  /** Index in `placements` of each instance, live or draining. */
  readonly placementIndex: Map<InstanceId, number>;
  readonly slots: Map<string, GpuSlot[]>;
  readonly live: Map<InstanceId, LiveInstance>;
  readonly placements: Placement[];
  readonly actions: PlacementAction[];
  readonly unplaced: Unplaced[];
  readonly wants: ReadonlyMap<ModelId, ModelWant>;
  readonly nextOrdinal: Map<ModelId, number>;
  readonly budgetGpus: number;
  readonly utilization: number;
  usedGpus: number;
}

/**
 * Places the instances the models want on the nodes, keeping running instances where they are.
 * First each variant above its target sheds its newest instances; then models in priority order
 * (ties by model id) place what they miss: best fit on a node of the variant's GPU type with `tp`
 * free GPUs (the fewest left over, ties by node id); when none fits, a model takes GPUs from
 * lower-priority models' instances above their minimum, lowest priority first. Throws
 * SY_ERR_INVALID_ARGUMENT for inconsistent input (a placement on a missing node, overlapping GPUs).
 */
export function placeReplicas(
  nodes: readonly ClusterNode[],
  current: readonly Placement[],
  wants: readonly ModelWant[],
  options: PlacementOptions = {},
): PlacementPlan {
  const state = initialState(nodes, current, wants, options);
  for (const want of [...wants].sort((a, b) => compareStrings(a.model, b.model))) scaleDown(state, want);
  const byPriority = [...wants].sort((a, b) => b.priority - a.priority || compareStrings(a.model, b.model));
  for (const want of byPriority) {
    for (const target of want.targets) scaleUp(state, want, target);
  }
  const log = [...state.actions.map((a) => a.reason), ...state.unplaced.map((u) => u.reason)];
  return { actions: state.actions, placements: state.placements, unplaced: state.unplaced, log };
}

// ---------------------------------------------------------------------------------------------
// Input checks and the initial state

function initialState(
  nodes: readonly ClusterNode[],
  current: readonly Placement[],
  wants: readonly ModelWant[],
  options: PlacementOptions,
): State {
  checkWants(wants);
  if (current.length > PLACEMENTS_MAX) {
    throw invalidArgument('placements', current.length, `at most ${PLACEMENTS_MAX} placements`);
  }
  const totalGpus = nodes.reduce((n, node) => n + node.gpus, 0);
  const budgetGpus = options.gpuBudget ?? totalGpus;
  if (!Number.isInteger(budgetGpus) || budgetGpus < 0) {
    throw invalidArgument('gpuBudget', budgetGpus, 'a non-negative integer');
  }
  const utilization = options.gpuMemoryUtilization ?? DEFAULT_GPU_MEMORY_UTILIZATION;
  if (!(utilization > 0 && utilization <= 1)) {
    throw invalidArgument('gpuMemoryUtilization', utilization, 'a fraction in (0, 1]');
  }
  const slots = new Map<string, GpuSlot[]>();
  for (const node of nodes) {
    if (slots.has(node.id)) throw invalidArgument('nodes.id', node.id, 'unique node ids');
    slots.set(
      node.id,
      Array.from({ length: node.gpus }, () => ({ live: undefined, draining: [] })),
    );
  }
  const state: State = {
    nodes: [...nodes].sort((a, b) => compareStrings(a.id, b.id)),
    nodeById: new Map(nodes.map((n) => [n.id, n])),
    placementIndex: new Map(),
    slots,
    live: new Map(),
    placements: [],
    actions: [],
    unplaced: [],
    wants: new Map(wants.map((w) => [w.model, w])),
    nextOrdinal: new Map(),
    budgetGpus,
    utilization,
    usedGpus: 0,
  };
  for (const [i, p] of current.entries()) addCurrent(state, p, i);
  return state;
}

function checkWants(wants: readonly ModelWant[]): void {
  const models = new Set<ModelId>();
  for (const want of wants) {
    if (models.has(want.model)) throw invalidArgument('wants.model', want.model, 'one entry per model');
    models.add(want.model);
    modelSpec(want.base ?? want.model); // SY_ERR_UNKNOWN_NAME listing the catalogue's models
    if (!Number.isFinite(want.priority)) throw invalidArgument('priority', want.priority, 'a finite number');
    if (!Number.isInteger(want.minReplicas) || want.minReplicas < 0) {
      throw invalidArgument('minReplicas', want.minReplicas, 'a non-negative integer');
    }
    const keys = new Set<string>();
    for (const t of want.targets) {
      const key = variantKey(t.variant);
      if (t.variant.model !== want.model) throw invalidArgument('targets.variant.model', key, want.model);
      if (keys.has(key)) throw invalidArgument('targets.variant', key, 'each variant once');
      keys.add(key);
      gpuSpec(t.variant.gpu); // SY_ERR_UNKNOWN_NAME listing the catalogue's GPUs
      if (!Number.isInteger(t.variant.tp) || t.variant.tp < 1) {
        throw invalidArgument('targets.variant.tp', t.variant.tp, 'a positive integer');
      }
      if (!Number.isInteger(t.replicas) || t.replicas < 0) {
        throw invalidArgument('targets.replicas', t.replicas, 'a non-negative integer');
      }
    }
  }
}

/** Records one given placement, checking it against the nodes and the placements before it. */
function addCurrent(state: State, p: Placement, i: number): void {
  const where = `placements[${i}]`;
  const node = state.nodeById.get(p.node);
  if (node === undefined) throw invalidArgument(`${where}.node`, p.node, 'a node of the cluster');
  if (node.gpu !== p.variant.gpu) {
    throw invalidArgument(`${where}.variant.gpu`, p.variant.gpu, `node ${node.id}'s GPU type ${node.gpu}`);
  }
  const indices = new Set(p.gpuIndices);
  const valid = p.gpuIndices.every((g) => Number.isInteger(g) && g >= 0 && g < node.gpus);
  if (!valid || indices.size !== p.variant.tp || p.gpuIndices.length !== p.variant.tp) {
    throw invalidArgument(
      `${where}.gpuIndices`,
      p.gpuIndices.join(','),
      `${p.variant.tp} distinct GPU indices below ${node.gpus}`,
    );
  }
  if (state.placementIndex.has(p.instanceId)) {
    throw invalidArgument(`${where}.instanceId`, p.instanceId, 'unique instance ids');
  }
  const slots = nodeSlots(state, node.id);
  for (const g of p.gpuIndices) {
    const slot = slots[g] as GpuSlot;
    if (p.draining === true) {
      slot.draining.push(p.instanceId);
    } else if (slot.live !== undefined) {
      throw invalidArgument(`${where}.gpuIndices`, g, `a GPU not held by ${slot.live}`);
    } else {
      slot.live = p.instanceId;
    }
  }
  state.placementIndex.set(p.instanceId, state.placements.length);
  state.placements.push(p);
  noteOrdinal(state, p.instanceId);
  if (p.draining !== true) {
    state.live.set(p.instanceId, { placement: p, priority: state.wants.get(p.variant.model)?.priority });
    state.usedGpus += p.variant.tp;
  }
}

// ---------------------------------------------------------------------------------------------
// Scale-down

/** Evicts the newest instances of each of the model's variants above its target. */
function scaleDown(state: State, want: ModelWant): void {
  const wanted = new Map(want.targets.map((t) => [variantKey(t.variant), t.replicas]));
  const byVariant = new Map<string, Placement[]>();
  for (const { placement } of state.live.values()) {
    if (placement.variant.model !== want.model) continue;
    const key = variantKey(placement.variant);
    byVariant.set(key, [...(byVariant.get(key) ?? []), placement]);
  }
  for (const key of [...byVariant.keys()].sort(compareStrings)) {
    const running = (byVariant.get(key) ?? []).sort((a, b) => compareIds(b.instanceId, a.instanceId));
    const target = wanted.get(key) ?? 0;
    for (const victim of running.slice(0, Math.max(0, running.length - target))) {
      const reason = `${victim.instanceId} evicted: scale-down, ${key} wants ${target}, has ${running.length}`;
      evict(state, victim, 'scale-down', reason);
    }
  }
}

/** Marks an instance draining: its GPUs may take a new instance, which then waits for it. */
function evict(state: State, victim: Placement, cause: 'scale-down' | 'preempted', reason: string): void {
  const slots = nodeSlots(state, victim.node);
  for (const g of victim.gpuIndices) {
    const slot = slots[g] as GpuSlot;
    slot.live = undefined;
    slot.draining.push(victim.instanceId);
  }
  state.live.delete(victim.instanceId);
  state.usedGpus -= victim.variant.tp;
  const index = state.placementIndex.get(victim.instanceId) as number;
  state.placements[index] = { ...victim, draining: true };
  const { instanceId, variant, node, gpuIndices } = victim;
  state.actions.push({ kind: 'evict', instanceId, variant, node, gpuIndices, cause, reason });
}

// ---------------------------------------------------------------------------------------------
// Scale-up

/** Places the instances one target misses, preempting lower priorities when GPUs run out. */
function scaleUp(state: State, want: ModelWant, target: ReplicaTarget): void {
  const { variant } = target;
  const key = variantKey(variant);
  const missing = target.replicas - liveCount(state, (p) => variantKey(p.variant) === key);
  if (missing <= 0) return;
  const unfit = unfitReason(state.nodes, want, variant, state.utilization);
  if (unfit !== undefined) {
    state.unplaced.push({
      model: want.model,
      variant,
      missing,
      code: 'SY_ERR_CAPACITY',
      kind: 'unfit',
      reason: `${key}: ${missing} wanted, none placed: SY_ERR_CAPACITY ${unfit}`,
    });
    return;
  }
  for (let placed = 0; placed < missing; placed++) {
    if (placeBestFit(state, variant) || placeByPreemption(state, want, variant)) continue;
    const why = hasRoom(state, variant)
      ? `GPU budget ${state.budgetGpus} reached (${state.usedGpus} in use)`
      : `no ${variant.gpu} node has ${variant.tp} free GPU${variant.tp > 1 ? 's' : ''}`;
    state.unplaced.push({
      model: want.model,
      variant,
      missing: missing - placed,
      code: 'SY_ERR_CAPACITY',
      kind: 'short',
      reason:
        `${key}: ${placed} of ${missing} wanted placed, ${missing - placed} short: SY_ERR_CAPACITY ` +
        `${why}, and no lower-priority instances above their models' min free enough room`,
    });
    return;
  }
}

/** The node with the fewest free GPUs left after taking `tp` (ties by node id); false when none. */
function placeBestFit(state: State, variant: Variant): boolean {
  if (state.usedGpus + variant.tp > state.budgetGpus) return false;
  let best: { node: ClusterNode; left: number } | undefined;
  for (const node of state.nodes) {
    if (node.gpu !== variant.gpu) continue;
    const left = freeCount(state, node.id) - variant.tp;
    if (left >= 0 && (best === undefined || left < best.left)) best = { node, left };
  }
  if (best === undefined) return false;
  place(state, variant, best.node, [], `best fit: ${best.left} left`);
  return true;
}

interface PreemptionChoice {
  readonly node: ClusterNode;
  readonly victims: readonly Placement[];
  readonly maxVictimPriority: number;
  readonly victimGpus: number;
  /** Free GPUs left on the node after the evictions and the placement. */
  readonly left: number;
}

/**
 * Kubernetes-style preemption: on each node of the right type, the fewest lowest-priority victims
 * (instances above their model's minimum, of models with a lower priority) that free `tp` GPUs
 * there and room in the budget; the node whose victims have the lowest top priority wins, then the
 * fewest GPUs evicted, then the best fit, then the node id.
 */
function placeByPreemption(state: State, want: ModelWant, variant: Variant): boolean {
  const candidates = victimCandidates(state, want.priority);
  if (candidates.all.length === 0) return false;
  let best: PreemptionChoice | undefined;
  for (const node of state.nodes) {
    if (node.gpu !== variant.gpu || node.gpus < variant.tp) continue;
    const choice = victimsOn(state, node, variant.tp, candidates);
    if (choice !== undefined && (best === undefined || betterPreemption(choice, best))) best = choice;
  }
  if (best === undefined) return false;
  for (const victim of best.victims) {
    const victimWant = state.wants.get(victim.variant.model) as ModelWant;
    const reason =
      `${victim.instanceId} evicted: ${want.model} (priority ${want.priority}) needs ${variant.tp} GPUs, ` +
      `${victimWant.model} (priority ${victimWant.priority}) above its min ${victimWant.minReplicas}`;
    evict(state, victim, 'preempted', reason);
  }
  const waitsFor = best.victims.map((v) => v.instanceId);
  const left = freeCount(state, best.node.id) - variant.tp;
  place(state, variant, best.node, waitsFor, `preempting: ${left} left`);
  return true;
}

/** The instances a model may take, computed once per preemption. */
interface Candidates {
  /** Lowest priority first, then model id, then newest first. */
  readonly all: readonly Placement[];
  /** The same order, per node. */
  readonly byNode: ReadonlyMap<string, readonly Placement[]>;
  /** Per candidate model, how many instances it may lose before reaching its minimum. */
  readonly aboveMin: ReadonlyMap<ModelId, number>;
}

/** Live instances a model of `priority` may take, lowest priority first, newest first. */
function victimCandidates(state: State, priority: number): Candidates {
  const out: { p: Placement; priority: number }[] = [];
  const liveByModel = new Map<ModelId, number>();
  for (const { placement, priority: theirs } of state.live.values()) {
    const model = placement.variant.model;
    liveByModel.set(model, (liveByModel.get(model) ?? 0) + 1);
    if (theirs !== undefined && theirs < priority) out.push({ p: placement, priority: theirs });
  }
  out.sort(
    (a, b) =>
      a.priority - b.priority ||
      compareStrings(a.p.variant.model, b.p.variant.model) ||
      compareIds(b.p.instanceId, a.p.instanceId),
  );
  const all = out.map((c) => c.p);
  const byNode = new Map<string, Placement[]>();
  const aboveMin = new Map<ModelId, number>();
  for (const p of all) {
    const list = byNode.get(p.node);
    if (list === undefined) byNode.set(p.node, [p]);
    else list.push(p);
    const model = p.variant.model;
    const min = state.wants.get(model)?.minReplicas ?? Number.POSITIVE_INFINITY;
    aboveMin.set(model, (liveByModel.get(model) ?? 0) - min);
  }
  return { all, byNode, aboveMin };
}

/** Victims that free `tp` GPUs on `node` and room in the budget; undefined when none do. */
function victimsOn(
  state: State,
  node: ClusterNode,
  tp: number,
  candidates: Candidates,
): PreemptionChoice | undefined {
  const aboveMin = new Map(candidates.aboveMin);
  const taken = new Set<Placement>();
  let nodeShort = tp - freeCount(state, node.id);
  let budgetShort = state.usedGpus + tp - state.budgetGpus;
  const take = (p: Placement): void => {
    const model = p.variant.model;
    const room = aboveMin.get(model) ?? 0;
    if (room <= 0 || taken.has(p)) return;
    aboveMin.set(model, room - 1);
    taken.add(p);
    budgetShort -= p.variant.tp;
    if (p.node === node.id) nodeShort -= p.variant.tp;
  };
  // First free GPUs on this node, then, if the budget still binds, anywhere.
  for (const p of candidates.byNode.get(node.id) ?? []) {
    if (nodeShort <= 0) break;
    take(p);
  }
  if (nodeShort <= 0) {
    for (const p of candidates.all) {
      if (budgetShort <= 0) break;
      take(p);
    }
  }
  if (nodeShort > 0 || budgetShort > 0 || taken.size === 0) return undefined;
  const victims = [...taken];
  const priorities = victims.map((p) => state.wants.get(p.variant.model)?.priority ?? 0);
  return {
    node,
    victims,
    maxVictimPriority: Math.max(...priorities),
    victimGpus: victims.reduce((n, p) => n + p.variant.tp, 0),
    left: -nodeShort,
  };
}

function betterPreemption(a: PreemptionChoice, b: PreemptionChoice): boolean {
  if (a.maxVictimPriority !== b.maxVictimPriority) return a.maxVictimPriority < b.maxVictimPriority;
  if (a.victimGpus !== b.victimGpus) return a.victimGpus < b.victimGpus;
  if (a.left !== b.left) return a.left < b.left;
  return compareStrings(a.node.id, b.node.id) < 0;
}

/** Takes `tp` free GPUs on the node (ones no draining instance holds first, then lowest index). */
function place(state: State, variant: Variant, node: ClusterNode, waits: InstanceId[], why: string): void {
  const slots = nodeSlots(state, node.id);
  const free = slots
    .map((slot, index) => ({ slot, index }))
    .filter((s) => s.slot.live === undefined)
    .sort((a, b) => a.slot.draining.length - b.slot.draining.length || a.index - b.index)
    .slice(0, variant.tp);
  const instanceId = newInstanceId(state, variant.model);
  const gpuIndices = free.map((s) => s.index).sort((a, b) => a - b);
  const waitsFor = [...new Set([...waits, ...free.flatMap((s) => s.slot.draining)])].sort(compareIds);
  for (const { slot } of free) slot.live = instanceId;
  const placement: Placement = { instanceId, variant, node: node.id, gpuIndices };
  state.placementIndex.set(instanceId, state.placements.length);
  state.placements.push(placement);
  state.live.set(instanceId, { placement, priority: state.wants.get(variant.model)?.priority });
  state.usedGpus += variant.tp;
  const after =
    waitsFor.length > 0 ? `; after ${waitsFor.join(', ')} stop${waitsFor.length > 1 ? '' : 's'}` : '';
  const reason = `${instanceId} -> ${node.id} gpus ${formatGpus(gpuIndices)} (${why}${after})`;
  state.actions.push({ kind: 'place', instanceId, variant, node: node.id, gpuIndices, waitsFor, reason });
}

// ---------------------------------------------------------------------------------------------
// Fit: can the variant ever be placed on these nodes?

/**
 * Why the variant can never be placed here, or undefined when it can: its GPU type on no node, no
 * node of the type with `tp` GPUs, or no room at this TP (src/model/tp-fit.ts, the rule the
 * serverless host's TP choice uses): one shard's weights and the engine's reserve must fit one GPU's
 * share with KV cache left for one step's tokens (or the model's context if shorter). A TP that fits
 * the weights alone, as Llama-3.1-70B at TP 2 on H100s does, leaves KV for so few tokens that its
 * engine refuses nearly every request. The message says which (GPU type, TP) present would fit, if
 * any. A host may ask before its run starts, to refuse a model that could never be placed.
 */
export function unfitReason(
  nodes: readonly ClusterNode[],
  want: Pick<ModelWant, 'base' | 'engine'>,
  variant: Variant,
  gpuMemoryUtilization = DEFAULT_GPU_MEMORY_UTILIZATION,
): string | undefined {
  const sizes = nodes.filter((n) => n.gpu === variant.gpu).map((n) => n.gpus);
  const base = want.base ?? variant.model;
  const model = modelSpec(base);
  const options: TpFitOptions = { engine: want.engine, gpuMemoryUtilization };
  const hint = (): string => fitHint(nodes, base, options);
  if (sizes.length === 0) {
    return `no node has ${variant.gpu} GPUs (${hint()})`;
  }
  if (Math.max(...sizes) < variant.tp) {
    return `no ${variant.gpu} node has ${variant.tp} GPUs (largest: ${Math.max(...sizes)}) (${hint()})`;
  }
  const fit = tpFit(base, variant.gpu, variant.tp, options);
  if (fit.fits) return undefined;
  const gib = (x: number): string => (x / GiB).toFixed(1);
  const name = variant.model === model.id ? model.id : `${variant.model} (${model.id})`;
  const where = `a ${variant.gpu} gives ${gib(fit.budgetBytes)} GiB at gpu_memory_utilization ${gpuMemoryUtilization}`;
  if (fit.needBytes > fit.budgetBytes) {
    return `${name} at tp${variant.tp} needs ${gib(fit.needBytes)} GiB per GPU (weights and engine reserve), ${where} (${hint()})`;
  }
  return (
    `${name} at tp${variant.tp} leaves KV cache for ${fit.kvTokens} tokens, under the ${fit.kvTokensNeeded} ` +
    `of one step (max_num_batched_tokens, or the model's context if shorter): its weights and engine reserve ` +
    `take ${gib(fit.needBytes)} GiB per GPU, ${where} (${hint()})`
  );
}

/** For each GPU type present, the smallest power-of-two TP that fits the model within one node. */
function fitHint(nodes: readonly ClusterNode[], model: ModelId, options: TpFitOptions): string {
  const largest = new Map<string, number>();
  for (const n of nodes) largest.set(n.gpu, Math.max(largest.get(n.gpu) ?? 0, n.gpus));
  const fits: string[] = [];
  for (const gpu of [...largest.keys()].sort(compareStrings)) {
    const tp = smallestFittingTp(model, gpu, largest.get(gpu) ?? 0, options);
    if (tp !== undefined) fits.push(`${gpu} tp${tp}`);
  }
  return fits.length > 0 ? `fits on: ${fits.join(', ')}` : `${model} fits no GPU type present`;
}

// ---------------------------------------------------------------------------------------------
// Small helpers

function nodeSlots(state: State, node: string): GpuSlot[] {
  const slots = state.slots.get(node);
  if (slots === undefined) throw new SwitchyardError('SY_ERR_INTERNAL', `placement: no slots for ${node}`);
  return slots;
}

function freeCount(state: State, node: string): number {
  return nodeSlots(state, node).filter((s) => s.live === undefined).length;
}

/** Whether some node of the variant's type has `tp` free GPUs (the budget aside). */
function hasRoom(state: State, variant: Variant): boolean {
  return state.nodes.some((n) => n.gpu === variant.gpu && freeCount(state, n.id) >= variant.tp);
}

function liveCount(state: State, match: (p: Placement) => boolean): number {
  let n = 0;
  for (const { placement } of state.live.values()) if (match(placement)) n++;
  return n;
}

/** The ordinal of `model#N` ids, or undefined for ids of another form. */
function ordinalOf(id: InstanceId): { prefix: string; n: number } | undefined {
  const m = /^(.*)#(\d+)$/.exec(id);
  return m === null ? undefined : { prefix: m[1] as string, n: Number(m[2]) };
}

function noteOrdinal(state: State, id: InstanceId): void {
  const o = ordinalOf(id);
  if (o !== undefined)
    state.nextOrdinal.set(o.prefix, Math.max(state.nextOrdinal.get(o.prefix) ?? 1, o.n + 1));
}

/** `model#N`, N one past the highest among the placements given and made (from 1). */
function newInstanceId(state: State, model: ModelId): InstanceId {
  const n = state.nextOrdinal.get(model) ?? 1;
  state.nextOrdinal.set(model, n + 1);
  return `${model}#${n}`;
}

/** Code-unit order: the same in every locale. */
function compareStrings(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** `x#2` before `x#10`; other ids by code units. */
function compareIds(a: InstanceId, b: InstanceId): number {
  const oa = ordinalOf(a);
  const ob = ordinalOf(b);
  if (oa !== undefined && ob !== undefined && oa.prefix === ob.prefix) return oa.n - ob.n;
  return compareStrings(a, b);
}

/** `4-7`, `0,2,5-6`. */
export function formatGpus(indices: readonly number[]): string {
  const parts: string[] = [];
  let i = 0;
  while (i < indices.length) {
    let j = i;
    while (j + 1 < indices.length && (indices[j + 1] as number) === (indices[j] as number) + 1) j++;
    parts.push(i === j ? `${indices[i]}` : `${indices[i]}-${indices[j]}`);
    i = j + 1;
  }
  return parts.join(',');
}
