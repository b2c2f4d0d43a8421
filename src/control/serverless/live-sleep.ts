/**
 * Sleep mode in the live host (`switchyard serve --min-instances 0 --sleep`): which engine past its
 * keep-alive sleeps (vLLM `POST /sleep?level=1`) instead of stopping, and how long it may sleep.
 * The twin's rule (README.md, "Sleep mode") is (a) the model has fewer sleepers than its instance
 * bound, (b) every GPU it ran on has room for one more residual (`SleepBook.canSleepOn`), (c) the
 * node's DRAM can pin its weights. `serve` keeps no per-GPU ledger or DRAM tier (its engines name a
 * GPU model, not a device), so (b) and (c) become counts: at most `sleepersPerModelMax` sleepers per
 * model and `sleepersMax` on the node, both named bounds. Rule (a) is kept as the per-model bound
 * (capped by the model's instance bound). Sleepers are stopped after `sleepMaxMs` asleep, default
 * `loneSleepMaxMs`: the twin keeps a GPU held by sleepers alone that long whatever it is worth, then by
 * value within its GPU account (policies.ts `plan`), which needs the per-GPU ledger and the bill of
 * GPUs `serve` does not keep, so live stays on the fixed rule (every live sleeper is alone on its GPU
 * as far as `serve` knows). Boot into sleep (`boot`, the twin's `bootIntoSleep`, off by default): `liveBootList` is
 * the twin's `bootQueue` (demand first, name-hash order, once per model) cut by the same counts and
 * by the room a cap on loaded models leaves. Pure.
 */
import { invalidArgument } from '../../core/errors.ts';
import type { ModelId } from '../../core/ids.ts';
import {
  BOOT_INTO_SLEEP_DEFAULT,
  type BootCandidate,
  bootQueue,
  LONE_SLEEP_MAX_MS_DEFAULT,
} from './sleep.ts';

/**
 * Sleepers one model keeps by default: one engine asleep answers the model's next request after a
 * ~1 s wake; a second only helps a burst that needs two engines at once, and holds host memory for
 * a second copy of the weights.
 */
export const SLEEPERS_PER_MODEL_MAX_DEFAULT = 1;
/**
 * Sleepers on the node by default: each holds its weights in host DRAM (an 8B: 16 GB) and a
 * residual on its GPU (~3 GiB, `SLEEP_RESIDUAL_BYTES_PER_GPU_DEFAULT`); 8 is an assumption that
 * fits an 8-GPU node with 256 GB of DRAM for 8B models, a parameter (`--max-sleepers`).
 */
export const SLEEPERS_MAX_DEFAULT = 8;

/** The live sleep bounds. */
export interface LiveSleepConfig {
  readonly sleepersPerModelMax: number;
  readonly sleepersMax: number;
  /** A sleeper asleep this long is stopped. */
  readonly sleepMaxMs: number;
  /**
   * Boot into sleep: at start-up, models never started are launched straight into sleep, so a
   * model's first request is a wake. Opt-in (BOOT_INTO_SLEEP_DEFAULT, false, as in the twin: its
   * 8-seed figures are in README.md).
   */
  readonly boot: boolean;
  /**
   * Re-target (`serve --retarget`, the twin's `sleep.retarget`): a model whose requests wait for a
   * fresh start takes an asleep engine of another model of the same shape (live-retarget.ts). Opt-in,
   * as in the twin.
   */
  readonly retarget: boolean;
}

/** The bounds with their defaults; SY_ERR_INVALID_ARGUMENT naming a bad one. */
export function resolveLiveSleep(p: Partial<LiveSleepConfig> = {}): LiveSleepConfig {
  const c: LiveSleepConfig = {
    sleepersPerModelMax: p.sleepersPerModelMax ?? SLEEPERS_PER_MODEL_MAX_DEFAULT,
    sleepersMax: p.sleepersMax ?? SLEEPERS_MAX_DEFAULT,
    sleepMaxMs: p.sleepMaxMs ?? LONE_SLEEP_MAX_MS_DEFAULT,
    boot: p.boot ?? BOOT_INTO_SLEEP_DEFAULT,
    retarget: p.retarget ?? false,
  };
  for (const k of ['sleepersPerModelMax', 'sleepersMax'] as const)
    if (!(Number.isInteger(c[k]) && c[k] >= 1)) throw invalidArgument(k, c[k], 'an integer >= 1');
  if (!(Number.isFinite(c.sleepMaxMs) && c.sleepMaxMs > 0))
    throw invalidArgument('sleepMaxMs', c.sleepMaxMs, 'ms > 0');
  return c;
}

/** What the live verdict reads for one drained engine. */
export interface LiveSleepInput {
  /** Its model's sleepers now (asleep or going to sleep). */
  readonly modelSleepers: number;
  /** Sleepers on the node now. */
  readonly sleepers: number;
  /** The model's instance bound (the twin's rule (a)). */
  readonly maxInstances: number;
  /** The engine was serving (not lost, not a cancelled start): only a ready engine can sleep. */
  readonly ready: boolean;
}

/** Sleep or stop a drained engine (see the file comment). */
export function liveSleepVerdict(i: LiveSleepInput, c: LiveSleepConfig): 'sleep' | 'stop' {
  if (!i.ready) return 'stop';
  if (i.modelSleepers >= Math.min(c.sleepersPerModelMax, i.maxInstances)) return 'stop';
  return i.sleepers >= c.sleepersMax ? 'stop' : 'sleep';
}

/** The node's sleepers by model, shared by every model's actuator (the bounds are per node). */
export class SleeperCount {
  private readonly byModel = new Map<ModelId, number>();
  private total = 0;

  constructor(readonly config: LiveSleepConfig) {}

  /** Takes a sleeper's place for `model` when the verdict says sleep; false: stop it instead. */
  take(model: ModelId, maxInstances: number): boolean {
    const verdict = liveSleepVerdict(
      { modelSleepers: this.countOf(model), sleepers: this.total, maxInstances, ready: true },
      this.config,
    );
    if (verdict === 'stop') return false;
    this.byModel.set(model, this.countOf(model) + 1);
    this.total++;
    return true;
  }

  /** A sleeper of `model` woke, stopped or died: its place is free. */
  release(model: ModelId): void {
    const n = this.countOf(model);
    if (n <= 0) throw new Error(`no sleeper of ${model} to release`);
    if (n === 1) this.byModel.delete(model);
    else this.byModel.set(model, n - 1);
    this.total--;
  }

  countOf(model: ModelId): number {
    return this.byModel.get(model) ?? 0;
  }

  /** Sleepers on the node. */
  get size(): number {
    return this.total;
  }
}

/** One model as the live boot rule reads it: the twin's `BootCandidate` and its sleeper counts. */
export interface LiveBootCandidate extends BootCandidate {
  /** Its sleepers now (asleep, going to sleep or booting). */
  readonly modelSleepers: number;
  /** Its instance bound (the twin's rule (a)). */
  readonly maxInstances: number;
}

/**
 * The models to boot into sleep now, in order: `bootQueue` (empty while any model's requests wait
 * with no engine of it starting or ready; else never-started models in name-hash order), each kept
 * only where `liveSleepVerdict` would let one more engine of it sleep beside those already chosen
 * (a model past `sleepersPerModelMax` is skipped; once `sleepersMax` is reached nothing more is),
 * at most `roomForBoots` of them (the free room under a cap on loaded models: a booting engine holds
 * a whole engine's memory until it is asleep; unbounded without a cap).
 */
export function liveBootList(
  models: readonly LiveBootCandidate[],
  sleepers: number,
  roomForBoots: number,
  c: LiveSleepConfig,
): ModelId[] {
  if (!c.boot) return [];
  const byId = new Map(models.map((m) => [m.id, m]));
  const out: ModelId[] = [];
  for (const id of bootQueue(models)) {
    if (out.length >= roomForBoots) break;
    const m = byId.get(id) as LiveBootCandidate;
    const input = {
      modelSleepers: m.modelSleepers,
      sleepers: sleepers + out.length,
      maxInstances: m.maxInstances,
    };
    if (liveSleepVerdict({ ...input, ready: true }, c) === 'sleep') out.push(id);
  }
  return out;
}
