/**
 * Re-targeting in the live host (`switchyard serve --sleep --retarget`): which asleep engine of
 * another model a model whose requests wait for a fresh start takes over, by the twin's rule
 * (`retargetSleepers` in retarget.ts, used as is). What `serve` sees differs from the twin's
 * catalogue: an engine's "base" is its model's shape key (a llama GGUF's `readGgufShape`, a sim
 * engine's catalogue shapes, as JSON text), its TP is 1 and its GPU the pool's GPU name, so
 * `retargetable` holds exactly when the engine's `POST /update_weights_from_disk` would accept the
 * wanted model. Live, a candidate's model must also hold no request at all (none running, none
 * held): a model with a request running has an awake engine the swap must not race. Pure.
 */
import type { ModelId } from '../../core/ids.ts';
import type { ServerlessModelView } from './policies.ts';
import { type EngineShape, retargetSleepers } from './retarget.ts';

/** One model's pool as the live re-target rule reads it. */
export interface LiveRetargetPool {
  /** The name requests use. */
  readonly model: ModelId;
  /** Its model's shape as text (equal texts: one loads in place of the other); undefined: unknown. */
  readonly shapeKey: string | undefined;
  /** The GPU its engines run on (`cpu` for llama). */
  readonly gpu: string;
  /** Its engines asleep now (each a candidate). */
  readonly asleep: number;
  /** Its model as the twin's value rule reads it (held and in-system requests, arrivals, start-up). */
  readonly view: ServerlessModelView;
}

/** The engine shape `retargetable` compares, for a live pool. */
function shapeOf(p: LiveRetargetPool): EngineShape {
  return { model: p.model, base: p.shapeKey as string, tp: 1, gpu: p.gpu };
}

/**
 * The model whose asleep engine `wanted` takes over, or undefined when none can: `wanted` must hold
 * requests (a pre-warm or a scale-up with nothing waiting starts as before, as in the twin) and its
 * shape be known; candidates are the other pools with an engine asleep, a known equal shape and GPU,
 * and no request in the system, ordered by `retargetSleepers` (least valuable sleeper first, ties by
 * name). `nowMs` and `intervalMs` are the host's clock reading and decision interval.
 */
export function chooseLiveRetarget(
  wanted: LiveRetargetPool,
  pools: readonly LiveRetargetPool[],
  nowMs: number,
  intervalMs: number,
): ModelId | undefined {
  if (wanted.shapeKey === undefined || wanted.view.held === 0) return undefined;
  const candidates = pools
    .filter((p) => p.model !== wanted.model && p.shapeKey !== undefined && p.asleep > 0)
    .filter((p) => p.view.inSystem === 0)
    .map((p) => ({ id: p.model, engine: shapeOf(p), model: p.view }));
  return retargetSleepers(candidates, shapeOf(wanted), nowMs, intervalMs)[0]?.model.id;
}
