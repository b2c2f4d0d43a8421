/**
 * Where to start an instance of a model: ServerlessLLM's start-up-time-optimized rule (the node
 * with the least estimated start-up, queueing for the tier included), with evicting idle
 * instances as an option where it beats waiting for GPUs; and a locality-blind first fit to
 * compare it with. Pure: reads the cache (cache.ts) and the caller's view of its instances,
 * changes nothing; the caller applies a choice with `unloadInstance` for each victim, then `load`.
 */
import type { ModelId } from '../../core/ids.ts';
import type { InstanceInfo, ModelCache, StartupEstimate } from './cache.ts';

/** How the GPUs for the new instance are found on the chosen node. */
export type GpuSource = 'free' | 'evict' | 'wait';

/** One way to start the model on one node, costed from now. */
export interface NodeChoice extends StartupEstimate {
  readonly how: GpuSource;
  /** When the load begins: now, after the victims stop, or when enough GPUs are released. */
  readonly startAtMs: number;
  /** startAtMs - now: waiting for GPUs or for victims to stop, before any tier queueing. */
  readonly gpuWaitMs: number;
  /** Instances to stop first (`how` is `evict`), least recently used first. */
  readonly evict: readonly string[];
  /** From now until the instance answers: gpuWaitMs + the estimate's startupMs. */
  readonly readyInMs: number;
}

/** What the caller knows about its instances that the cache does not. */
export interface ChooseOptions {
  /** Instances with no request in flight that may be stopped for this one. Default: none. */
  readonly isIdle?: ((instance: InstanceInfo) => boolean) | undefined;
  /**
   * When a busy instance will release its GPUs anyway (draining, keep-alive ending), or undefined
   * when unknown. Default: never known, so there is nothing to wait for.
   */
  readonly releaseAtMs?: ((instance: InstanceInfo) => number | undefined) | undefined;
  /**
   * Whether stopping idle instances competes with free GPUs elsewhere (ServerlessLLM's scheduler
   * weighs migration against every node). Default false: eviction is weighed only against
   * waiting, since the stopped model pays a cold start of its own when it is next asked for.
   */
  readonly evictBesideFree?: boolean | undefined;
  /** Time to stop an idle instance and free its GPU memory before the load starts. Default 0. */
  readonly evictStopMs?: number | undefined;
}

/** Picks where to start `model` at `nowMs` from its `nodeChoices`; undefined when there is none. */
export type NodeChooser = (
  cache: ModelCache,
  model: ModelId,
  nowMs: number,
  options?: ChooseOptions,
) => NodeChoice | undefined;

/** A chooser that costs every way with `nodeChoices` and lets `pick` take one. */
function chooser(
  pick: (choices: readonly NodeChoice[], options: ChooseOptions) => NodeChoice | undefined,
): NodeChooser {
  return (cache, model, nowMs, options = {}) => pick(nodeChoices(cache, model, nowMs, options), options);
}

/**
 * ServerlessLLM's rule: among every node whose GPUs fit the model, and every way to get GPUs there
 * (free now, evict idle instances, wait for known releases), the one that answers soonest
 * (`readyInMs`). Ties go to free GPUs over waiting over evicting, then to the node id in code-unit
 * order. Undefined when no node has GPUs now, idle instances to stop, or known releases.
 */
export const startupAwareNode: NodeChooser = chooser((choices, options) => {
  // Stopping an idle instance costs its model a cold start later: only worth it against waiting.
  const anyFree = choices.some((c) => c.how === 'free');
  let best: NodeChoice | undefined;
  for (const choice of choices) {
    if (anyFree && choice.how === 'evict' && options.evictBesideFree !== true) continue;
    if (best === undefined || better(choice, best)) best = choice;
  }
  return best;
});

/**
 * A locality-blind baseline: the first node in the cache's order with enough free GPUs; if none,
 * the first where idle instances can be stopped; if none, the node whose GPUs are released
 * soonest. Where the weights are does not enter; the returned start-up is still what loading there
 * costs.
 */
export const firstFitNode: NodeChooser = chooser((choices) => {
  const free = choices.find((c) => c.how === 'free');
  if (free !== undefined) return free;
  const evict = choices.find((c) => c.how === 'evict');
  if (evict !== undefined) return evict;
  let soonest: NodeChoice | undefined;
  for (const c of choices) if (soonest === undefined || c.startAtMs < soonest.startAtMs) soonest = c;
  return soonest;
});

/** Every way to start `model`, per node in the cache's order: free, then evict, then wait. */
export function nodeChoices(
  cache: ModelCache,
  model: ModelId,
  nowMs: number,
  options: ChooseOptions = {},
): NodeChoice[] {
  const choices: NodeChoice[] = [];
  const need = cache.gpusPerInstance(model);
  for (const node of cache.nodeIds()) {
    if (!cache.fits(model, node)) continue;
    const free = cache.freeGpus(node);
    if (free >= need) {
      choices.push(costed(cache, model, node, nowMs, nowMs, 'free', []));
      continue;
    }
    const instances = cache.instances(node);
    const victims = idleVictims(instances, need - free, options);
    if (victims !== undefined) {
      const startAtMs = nowMs + (options.evictStopMs ?? 0);
      choices.push(costed(cache, model, node, nowMs, startAtMs, 'evict', victims));
    }
    const releasedAtMs = releaseTimeMs(instances, need - free, nowMs, options);
    if (releasedAtMs !== undefined) choices.push(costed(cache, model, node, nowMs, releasedAtMs, 'wait', []));
  }
  return choices;
}

function costed(
  cache: ModelCache,
  model: ModelId,
  node: string,
  nowMs: number,
  startAtMs: number,
  how: GpuSource,
  evict: readonly string[],
): NodeChoice {
  const estimate = cache.estimate(model, node, startAtMs);
  const gpuWaitMs = startAtMs - nowMs;
  return { ...estimate, how, startAtMs, gpuWaitMs, evict, readyInMs: gpuWaitMs + estimate.startupMs };
}

/** The fewest idle instances, least recently used first, that free `short` GPUs; else undefined. */
function idleVictims(
  instances: readonly InstanceInfo[],
  short: number,
  options: ChooseOptions,
): string[] | undefined {
  const isIdle = options.isIdle;
  if (isIdle === undefined) return undefined;
  const idle = instances
    .filter((i) => isIdle(i))
    .sort((a, b) => a.lastUsedMs - b.lastUsedMs || compareStrings(a.id, b.id));
  const victims: string[] = [];
  let freed = 0;
  for (const i of idle) {
    if (freed >= short) break;
    victims.push(i.id);
    freed += i.gpus;
  }
  return freed >= short ? victims : undefined;
}

/** When known releases free `short` more GPUs (not before now); else undefined. */
function releaseTimeMs(
  instances: readonly InstanceInfo[],
  short: number,
  nowMs: number,
  options: ChooseOptions,
): number | undefined {
  const releaseAtMs = options.releaseAtMs;
  if (releaseAtMs === undefined) return undefined;
  const releases = instances
    .map((i) => ({ atMs: releaseAtMs(i), gpus: i.gpus }))
    .filter((r): r is { atMs: number; gpus: number } => r.atMs !== undefined && Number.isFinite(r.atMs))
    .sort((a, b) => a.atMs - b.atMs);
  let freed = 0;
  for (const r of releases) {
    freed += r.gpus;
    if (freed >= short) return Math.max(nowMs, r.atMs);
  }
  return undefined;
}

const HOW_ORDER: Readonly<Record<GpuSource, number>> = { free: 0, wait: 1, evict: 2 };

function better(a: NodeChoice, b: NodeChoice): boolean {
  if (a.readyInMs !== b.readyInMs) return a.readyInMs < b.readyInMs;
  if (a.how !== b.how) return HOW_ORDER[a.how] < HOW_ORDER[b.how];
  return compareStrings(a.node, b.node) < 0;
}

function compareStrings(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
