/**
 * Re-targeting in `switchyard serve --sleep --retarget` (docs/serverless.md, "Another checkpoint in
 * place (live engines)"): a model whose requests wait for a fresh start takes over an asleep engine of
 * another model of the same shape instead, by the twin's rule (src/control/serverless/live-retarget.ts).
 * Each pool's launcher is wrapped (`launcher`): before it spawns or hands a standby engine, it asks
 * the rule for a victim model; that model's actuator gives its asleep slot up without stopping the
 * process (`LocalActuator.giveUpSleeper`); the engine gets SGLang's `POST /update_weights_from_disk`
 * with the wanted model's file and name, then `POST /wake_up`, and is returned as the launch (same
 * pid). Its supervisor restarts it, if it dies, on the wanted model's flags, and its lines carry the
 * wanted model's prefix (`reassign`). A swap or wake that fails (4xx, 5xx, timeout, a dead engine)
 * stops that process and the launch goes on as a fresh one. Counted in `switchyard_retargets_total{model,from}` (and `_failures_total`), /stats
 * `retarget`, and one log line each.
 */
import { resolve } from 'node:path';
import { Counter, type Registry } from 'prom-client';
import { handedOn } from '../adapters/engine-launcher.ts';
import type { EngineLauncher, LaunchedEngine, LocalActuator } from '../control/local-actuator.ts';
import { ArrivalHistory } from '../control/serverless/forecast.ts';
import { chooseLiveRetarget, type LiveRetargetPool } from '../control/serverless/live-retarget.ts';
import type { ServerlessModelView } from '../control/serverless/policies.ts';
import { SwitchyardError } from '../core/errors.ts';
import { simModelShape } from '../engine-servers/sim/sim-backend.ts';
import { modelSpec } from '../model/models.ts';
import { postSleepApi } from './serve-sleep.ts';

/** One model's pool as the re-targeter reads it (accessors: the actuator and runner come later). */
export interface RetargetPool {
  /** The name requests use. */
  readonly served: string;
  /** The engine's checkpoint: a GGUF path (llama) or a catalogue id (sim). */
  readonly modelPath: string;
  /** The GPU its engines run on (`cpu` for llama). */
  readonly gpu: string;
  /** The engine flags of a start of this model (sleep mode's included): a restart's after a swap. */
  readonly args: readonly string[];
  actuator(): LocalActuator | undefined;
  /** Requests held for an engine (the scale-from-zero buffer). */
  held(): number;
  /** Requests arrived and not ended, held ones included. */
  inSystem(): number;
  lastUsedMs(): number;
  /** Where this pool's engines' lines go (the launcher's `log`): a re-targeted engine's from then on. */
  log(line: string): void;
  /** A process of this pool's slot `index` exited (`gaveUp`: no restart): the launcher's `onExit`. */
  onExit(index: number, gaveUp: boolean): void;
}

/** Options of a `Retargeter`. */
export interface RetargeterOptions {
  readonly engine: 'sim' | 'llama';
  /** Bound on the swap and on the wake, each (the engine start's bound: neither is longer). */
  readonly timeoutMs: number;
  /** The loops' decision interval (the twin's value rule reads it). */
  readonly intervalMs: number;
  /** The host's clock. */
  readonly nowMs: () => number;
  readonly say: (line: string) => void;
  /** `model`'s asleep engine was taken by another model: its checkpoint is no longer loaded. */
  readonly gaveUp?: (model: string) => void;
}

/** Most (to, from) pairs counted: one per ordered pair of models, bounded by the models served. */
const key = (to: string, from: string): string => `${to}\u0000${from}`;

/** The node's re-target bookkeeping, shared by every model's pool (see the file comment). */
export class Retargeter {
  /** Re-targets done and failed, by (wanted model, victim model). */
  readonly done = new Map<string, number>();
  readonly failed = new Map<string, number>();
  private readonly pools = new Map<string, RetargetPool>();
  private readonly shapes = new Map<string, Promise<string | undefined>>();
  private readonly arrivals = new Map<string, ArrivalHistory>();
  /** The engines each pool's launcher returned, by URL, as the launcher returned them (one per process). */
  private readonly engines = new Map<string, LaunchedEngine>();

  constructor(
    pools: readonly RetargetPool[],
    private readonly options: RetargeterOptions,
  ) {
    for (const p of pools) {
      this.pools.set(p.served, p);
      this.arrivals.set(p.served, new ArrivalHistory());
      this.shapes.set(p.served, shapeKeyOf(options.engine, p.modelPath));
    }
  }

  /** A request for `model` arrived (the value rule's history). */
  arrived(model: string, nowMs: number): void {
    this.arrivals.get(model)?.record(nowMs);
  }

  /** `inner` (pool `served`'s launcher), trying a re-target before each launch. */
  launcher(inner: EngineLauncher, served: string): EngineLauncher {
    return {
      launch: async (index, signal) => {
        const taken = await this.retarget(served, index, signal);
        if (taken !== undefined) return taken;
        return this.remember(await inner.launch(index, signal));
      },
    };
  }

  /** Keeps `engine` findable by URL until it stops (a victim's slot hands back its outer wrapper). */
  private remember(engine: LaunchedEngine): LaunchedEngine {
    const kept = handedOn(engine, {
      stop: () => {
        if (this.engines.get(engine.url) === kept) this.engines.delete(engine.url);
        return engine.stop();
      },
    });
    this.engines.set(engine.url, kept);
    return kept;
  }

  /** Takes another model's asleep engine for `to` when the rule names one; undefined: launch as before. */
  private async retarget(
    to: string,
    index: number,
    signal?: AbortSignal,
  ): Promise<LaunchedEngine | undefined> {
    const wanted = this.pools.get(to);
    if (wanted === undefined) return undefined;
    const keys = new Map<string, string | undefined>();
    for (const [model, shape] of this.shapes) keys.set(model, await shape);
    // From here to the hand-over nothing awaits: the views and the victim's slot agree.
    const nowMs = this.options.nowMs();
    const views = [...this.pools.values()].map((p) => this.view(p, keys.get(p.served), nowMs));
    const from = chooseLiveRetarget(
      views.find((v) => v.model === to) as LiveRetargetPool,
      views,
      nowMs,
      this.options.intervalMs,
    );
    if (from === undefined || signal?.aborted === true) return undefined;
    const given = this.pools.get(from)?.actuator()?.giveUpSleeper(nowMs);
    if (given === undefined) return undefined;
    const engine = this.engines.get(given.url);
    if (engine === undefined) {
      await given.stop().catch(() => {});
      return undefined;
    }
    engine.reassign?.({
      args: wanted.args,
      index,
      log: (line) => wanted.log(line),
      onExit: (gaveUp) => wanted.onExit(index, gaveUp),
    });
    this.options.gaveUp?.(from);
    return this.swap(engine, wanted, from, index, signal);
  }

  /** The swap and wake; the engine as `to`'s launch, or undefined after a failure (its process stopped). */
  private async swap(
    engine: LaunchedEngine,
    to: RetargetPool,
    from: string,
    index: number,
    signal: AbortSignal | undefined,
  ): Promise<LaunchedEngine | undefined> {
    const t0 = performance.now();
    const pid = engine.pid;
    try {
      const modelPath = this.options.engine === 'llama' ? resolve(to.modelPath) : to.modelPath;
      await updateWeights(engine.url, modelPath, to.served, this.options.timeoutMs, signal);
      await postSleepApi(engine.url, '/wake_up', this.options.timeoutMs);
      if (signal?.aborted === true) throw cancelledStart();
    } catch (error) {
      bump(this.failed, key(to.served, from));
      this.options.say(
        `${to.served}: re-target of ${from}'s asleep engine (pid ${pid}) failed (${(error as Error).message}): stopping it${signal?.aborted === true ? '' : `; engine ${index} starts afresh`}`,
      );
      await engine.stop().catch(() => {});
      if (signal?.aborted === true) throw cancelledStart();
      return undefined;
    }
    bump(this.done, key(to.served, from));
    this.options.say(
      `${to.served}: engine ${index} re-targeted from ${from}'s asleep engine (pid ${pid}, swap and wake ${Math.round(performance.now() - t0)} ms)`,
    );
    // The same process under the wanted model's name (the gateway lists the backend under it).
    return handedOn(
      {
        url: engine.url,
        kvEvents: engine.kvEvents,
        model: to.served,
        get pid() {
          return engine.pid;
        },
        ...(engine.reassign === undefined ? {} : { reassign: engine.reassign }),
        retargeted: true,
      },
      { stop: () => engine.stop() },
    );
  }

  /** One pool as the rule reads it now. */
  private view(p: RetargetPool, shapeKey: string | undefined, nowMs: number): LiveRetargetPool {
    const actuator = p.actuator();
    const inSystem = p.inSystem();
    const view: ServerlessModelView = {
      id: p.served,
      gpus: 1,
      active: actuator?.active ?? 0,
      inSystem,
      held: p.held(),
      idleMs: inSystem > 0 ? 0 : Math.max(0, nowMs - p.lastUsedMs()),
      lastUsedMs: p.lastUsedMs(),
      startupMs: actuator?.lastStartupMs ?? 0,
      arrivals: this.arrivals.get(p.served) as ArrivalHistory,
    };
    return { model: p.served, shapeKey, gpu: p.gpu, asleep: actuator?.counts().asleep ?? 0, view };
  }

  /** `switchyard_retargets_total{model,from}` and `switchyard_retarget_failures_total{model,from}`. */
  registerMetrics(registry: Registry): void {
    const counter = (name: string, help: string, counts: Map<string, number>) =>
      new Counter({
        name,
        help,
        labelNames: ['model', 'from'],
        registers: [registry],
        collect() {
          this.reset();
          for (const [k, n] of counts) {
            const [model, from] = k.split('\u0000') as [string, string];
            this.inc({ model, from }, n);
          }
        },
      });
    counter(
      'switchyard_retargets_total',
      "Launches of the model served by another model's asleep engine, its weights swapped in place (serve --retarget), by that model",
      this.done,
    );
    counter(
      'switchyard_retarget_failures_total',
      'Re-targets whose swap or wake failed: the engine was stopped and the model started afresh',
      this.failed,
    );
  }

  /** /stats `retarget`: `{done: {model: {from: n}}, failed: {...}}`. */
  stats(): Record<string, Record<string, Record<string, number>>> {
    const nest = (counts: Map<string, number>) => {
      const out: Record<string, Record<string, number>> = {};
      for (const [k, n] of counts) {
        const [model, from] = k.split('\u0000') as [string, string];
        out[model] = { ...out[model], [from]: n };
      }
      return out;
    };
    return { done: nest(this.done), failed: nest(this.failed) };
  }
}

function bump(counts: Map<string, number>, k: string): void {
  counts.set(k, (counts.get(k) ?? 0) + 1);
}

function cancelledStart(): SwitchyardError {
  return new SwitchyardError('SY_ERR_UPSTREAM', 'engine start cancelled', {
    param: 'engine',
    cancelled: true,
  });
}

/**
 * A model's shape as text, read once: a GGUF's header (`readGgufShape`, what the llama engine's swap
 * compares) or a catalogue model's shapes (`simModelShape`, the sim engine's). Undefined when it cannot
 * be read: that model neither takes nor gives an engine by re-targeting.
 */
async function shapeKeyOf(engine: 'sim' | 'llama', modelPath: string): Promise<string | undefined> {
  try {
    if (engine === 'sim') return JSON.stringify(simModelShape(modelSpec(modelPath)));
    // Loaded on first use: serve with sim engines never pulls node-llama-cpp in.
    const { readGgufShape } = await import('../engine-servers/llama/gguf-shape.ts');
    return JSON.stringify((await readGgufShape(modelPath)).shape);
  } catch {
    return undefined;
  }
}

/**
 * SGLang's `POST /update_weights_from_disk` with a checkpoint (a GGUF made absolute: the engine
 * resolves it from its own working directory) and the name served after it, within `timeoutMs` (or
 * until `signal` aborts); rejects naming the status and the engine's message unless it answers 2xx.
 */
async function updateWeights(
  url: string,
  modelPath: string,
  served: string,
  timeoutMs: number,
  signal: AbortSignal | undefined,
): Promise<void> {
  const bound = AbortSignal.timeout(timeoutMs);
  const res = await fetch(`${url}/update_weights_from_disk`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model_path: modelPath, served_model_name: served }),
    signal: signal === undefined ? bound : AbortSignal.any([signal, bound]),
  });
  const text = await res.text();
  if (res.ok) return;
  let message = text.slice(0, 200);
  try {
    message = (JSON.parse(text) as { message?: string }).message ?? message;
  } catch {
    // Not JSON: the raw text is the message.
  }
  throw new SwitchyardError(
    'SY_ERR_UPSTREAM',
    `engine at ${url}: POST /update_weights_from_disk answered ${res.status}: ${message}`,
    { param: 'engine' },
  );
}
