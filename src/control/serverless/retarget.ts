/**
 * Re-targeting: an engine already initialised for one model (asleep, or awake and idle) loads the
 * weights of another model of the same base architecture in place, without restarting, and serves
 * that model instead. Every fine-tune of a base has the same architecture and tensor shapes, so
 * the engine's process, compiled kernels and CUDA graphs (its ~44 s of initialisation,
 * src/model/startup.ts) stay valid; only the weights change. SGLang serves this natively
 * (`POST /update_weights_from_disk {"model_path": ...}`: "update model weights from disk without
 * restarting the server", same architecture only; sglang `scheduler_update_weights_mixin.py`,
 * mirrored for diffusion in sgl-project/sglang PR #18306), and vLLM's RLHF integrations do the
 * same into a sleeping engine (level-2 sleep discards the weights; the new ones are loaded into
 * the same tensors, so the captured CUDA graphs stay valid). Pure and deterministic; README.md in
 * this folder has the rule and its cost.
 */
import type { GpuId, ModelId } from '../../core/ids.ts';
import { type ServerlessModelView, sleeperValue } from './policies.ts';
import type { SleepConfig } from './sleep.ts';

/** What decides whether one engine can serve another model: its base, TP and GPU type. */
export interface EngineShape {
  readonly model: ModelId;
  readonly base: ModelId;
  readonly tp: number;
  readonly gpu: GpuId;
}

/**
 * Whether an engine initialised for `from` can be re-targeted to `to`: another model of the same
 * base (architecture and shapes), at the same TP (the same shards per GPU) on the same GPU type
 * (the same compiled kernels and CUDA graphs).
 */
export function retargetable(from: EngineShape, to: EngineShape): boolean {
  return from.model !== to.model && from.base === to.base && from.tp === to.tp && from.gpu === to.gpu;
}

/**
 * A re-target's time: `model`'s weights read from the fastest tier that holds them on the node
 * (`weightsMs`, lane wait included, as a start reads them) plus a wake's fixed part and the KV
 * cache's re-allocation (`wakeOverheadMs + kvReallocMs`: the engine resumes its loop and re-maps
 * its pools as a wake does; the prefix cache of the old weights is dropped with the KV pool).
 */
export function retargetTimeMs(
  weightsMs: number,
  c: Pick<SleepConfig, 'wakeOverheadMs' | 'kvReallocMs'>,
): number {
  return weightsMs + c.wakeOverheadMs + c.kvReallocMs;
}

/** A sleeping engine of another model that `forModel` could take by re-targeting it. */
export interface RetargetCandidate {
  /** The sleeper's id (ties). */
  readonly id: string;
  readonly engine: EngineShape;
  /** Its model as the policy sees it. */
  readonly model: ServerlessModelView;
}

/**
 * Sleepers `forModel` may take by re-targeting, the least valuable first: only engines
 * `retargetable` to it, of models with no request waiting (a model with held requests needs its
 * sleeper itself), ordered by `sleeperValue` (0 for a model with an instance starting or ready; else
 * the cold requests a fresh start of that model would make wait, times the chance of a request
 * before it could finish, per GPU: the order the victim rule stops idle instances in), ties by id.
 */
export function retargetSleepers(
  candidates: readonly RetargetCandidate[],
  forModel: EngineShape,
  nowMs: number,
  intervalMs: number,
): RetargetCandidate[] {
  return candidates
    .filter((c) => c.model.held === 0 && retargetable(c.engine, forModel))
    .map((c) => ({ c, value: sleeperValue(c.model, nowMs, intervalMs) }))
    .sort((a, b) => a.value - b.value || (a.c.id < b.c.id ? -1 : a.c.id > b.c.id ? 1 : 0))
    .map((v) => v.c);
}
