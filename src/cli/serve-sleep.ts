/**
 * Sleep mode for `switchyard serve --sleep`: engines launched with `--enable-sleep-mode` whose
 * `LaunchedEngine` can be put to sleep and woken over vLLM's HTTP API (`POST /sleep?level=1`,
 * `POST /wake_up`), which the built-in sim engine serves as vLLM does (src/engine-servers/sleep-mode.ts).
 * The local actuator (src/control/local-actuator.ts) decides when; this only speaks to the engine.
 * `SleepBooter` boots never-started models into sleep at start-up (the twin's boot into sleep).
 */
import { Counter, Gauge, type Registry } from 'prom-client';
import { handedOn } from '../adapters/engine-launcher.ts';
import type { EngineLauncher, LaunchedEngine, LocalActuator } from '../control/local-actuator.ts';
import { type LiveBootCandidate, liveBootList, type SleeperCount } from '../control/serverless/live-sleep.ts';
import { SwitchyardError } from '../core/errors.ts';

/** The engine flag that turns its sleep-mode API on (vLLM's, and the sim engine's). */
export const ENABLE_SLEEP_MODE_FLAG = '--enable-sleep-mode';

/**
 * POSTs `path` on the engine; resolves on a 2xx within `timeoutMs`, rejects otherwise naming the
 * status and the engine's message (a dead engine: the connection error).
 */
export async function postSleepApi(url: string, path: string, timeoutMs: number): Promise<void> {
  const res = await fetch(`${url}${path}`, { method: 'POST', signal: AbortSignal.timeout(timeoutMs) });
  const text = await res.text();
  if (res.ok) return;
  let message = text.slice(0, 200);
  try {
    message = (JSON.parse(text) as { error?: { message?: string } }).error?.message ?? message;
  } catch {
    // Not JSON: the raw text is the message.
  }
  throw new SwitchyardError(
    'SY_ERR_UPSTREAM',
    `engine at ${url}: POST ${path} answered ${res.status}: ${message}`,
    {
      param: 'engine',
    },
  );
}

/**
 * `launcher`'s engines, able to sleep (level 1: weights kept in host memory) and wake. A sleep or
 * wake call gets `timeoutMs` (the engine start's bound: a wake never takes longer than a start).
 */
export function sleepingLauncher(launcher: EngineLauncher, timeoutMs: number): EngineLauncher {
  return {
    async launch(index: number, signal?: AbortSignal): Promise<LaunchedEngine> {
      const e = await launcher.launch(index, signal);
      return handedOn(e, {
        stop: () => e.stop(),
        sleep: () => postSleepApi(e.url, '/sleep?level=1', timeoutMs),
        wakeUp: () => postSleepApi(e.url, '/wake_up', timeoutMs),
      });
    },
  };
}

/**
 * The phases `switchyard_sleeping_replicas` always reports (0 when none): going to sleep (`POST
 * /sleep` sent, out of the gateway) and asleep (its process kept, its weights in host memory).
 */
export const SLEEP_PHASES = ['sleeping', 'asleep'] as const;

/** What the sleeping-engine gauge reads of one model's pool. */
export interface SleepingPool {
  readonly model: string;
  readonly role: string;
  /** Its engines per sleep phase now (the local actuator's `counts()`). */
  counts(): Readonly<Record<(typeof SLEEP_PHASES)[number], number>>;
  /** Boot into sleep: boot launches begun and those that failed (the actuator's `bootCounts`). */
  boots(): { readonly boots: number; readonly bootFailures: number };
}

/**
 * Registers `switchyard_sleeping_replicas{model,role,phase}` on `registry` (the gateway's): a
 * sleeper is no instance, so `switchyard_replicas` (whose phases sum to the engines holding their
 * model's GPU memory, what an HPA reads) leaves it out; without this gauge it was invisible.
 */
export function registerSleepMetrics(registry: Registry, pools: readonly SleepingPool[]): void {
  new Gauge({
    name: 'switchyard_sleeping_replicas',
    help: 'Engines of the model and role in sleep mode, by phase (sleeping: going to sleep; asleep), not counted in switchyard_replicas',
    labelNames: ['model', 'role', 'phase'],
    registers: [registry],
    collect() {
      this.reset();
      for (const p of pools) {
        const counts = p.counts();
        for (const phase of SLEEP_PHASES) this.set({ model: p.model, role: p.role, phase }, counts[phase]);
      }
    },
  });
  // Boots happen at most once per model: counters, read from the actuators at each scrape.
  const bootCounter = (name: string, help: string, key: 'boots' | 'bootFailures') =>
    new Counter({
      name,
      help,
      labelNames: ['model', 'role'],
      registers: [registry],
      collect() {
        this.reset();
        for (const p of pools) this.inc({ model: p.model, role: p.role }, p.boots()[key]);
      },
    });
  bootCounter(
    'switchyard_sleep_boots_total',
    'Engines of the model launched straight into sleep (boot into sleep), before any request',
    'boots',
  );
  bootCounter(
    'switchyard_sleep_boot_failures_total',
    'Boots into sleep whose engine failed to start (the model stays at zero; its first request starts it)',
    'bootFailures',
  );
}

/** One model's pool as the booter reads it. */
export interface BootPool {
  readonly model: string;
  readonly maxInstances: number;
  readonly actuator: Pick<LocalActuator, 'everStarted' | 'active' | 'booting' | 'boot' | 'abandonBoot'>;
  /** Its requests held at the gateway for an engine (the scale-from-zero buffer). */
  held(): number;
}

/** A cap on loaded models as the booter reads it (src/control/loaded-model-cap.ts). */
export interface BootCap {
  readonly maxLoadedModels: number;
  loadedModels(): readonly string[];
  /** Models waiting for the cap to let them start. */
  readonly blockedCount: number;
}

/**
 * Boot into sleep in `serve` (docs/serverless.md, "Sleep mode (live)"): from start-up, each pass
 * boots the models `liveBootList` names (the twin's `bootQueue`: demand first, name-hash order, once
 * per model; within the sleeper counts and the cap's free room, boots still launching taking a
 * loaded model's place). Passes run every `everyMs` while any model never started: as the twin boots
 * at every decision, a model skipped for the bounds boots once a place frees (a sleeper stopped, a
 * model unloaded). They end when every model has run, as none is booted twice.
 */
export class SleepBooter {
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly pools: readonly BootPool[],
    private readonly sleepers: SleeperCount,
    private readonly cap: BootCap | undefined,
    private readonly nowMs: () => number,
  ) {}

  /** Runs a pass now, then every `everyMs` until done. */
  start(everyMs: number): void {
    if (!this.pass(this.nowMs())) return;
    this.timer = setInterval(() => {
      if (!this.pass(this.nowMs())) this.stop();
    }, everyMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
  }

  /** Boots what the rule allows now; false when there is nothing left to wait for (every model ran). */
  pass(nowMs: number): boolean {
    const candidates: LiveBootCandidate[] = this.pools.map((p) => ({
      id: p.model,
      everStarted: p.actuator.everStarted,
      active: p.actuator.active,
      held: p.held(),
      modelSleepers: this.sleepers.countOf(p.model),
      maxInstances: p.maxInstances,
    }));
    const list = liveBootList(candidates, this.sleepers.size, this.roomForBoots(), this.sleepers.config);
    const byModel = new Map(this.pools.map((p) => [p.model, p]));
    const booted = list.filter((model) => byModel.get(model)?.actuator.boot(nowMs) === true);
    const demandWaits = candidates.some((c) => c.held > 0 && c.active === 0);
    const neverStarted = this.pools.some((p) => !p.actuator.everStarted);
    return booted.length > 0 || demandWaits || this.launching() > 0 || neverStarted;
  }

  /**
   * A demand start of `model` was let through the cap: boots of other models still launching give
   * way (abandoned) until the loaded models, it and the boots fit the cap (the twin abandons a boot
   * when a demand start needs its GPU).
   */
  makeRoomFor(model: string, nowMs: number): void {
    if (this.cap === undefined) return;
    const others = this.pools.filter((p) => p.model !== model);
    const loaded = this.cap.loadedModels().filter((m) => m !== model).length + 1;
    let over = loaded + others.reduce((n, p) => n + p.actuator.booting, 0) - this.cap.maxLoadedModels;
    for (const p of [...others].reverse()) {
      while (over > 0 && p.actuator.abandonBoot(nowMs, `room for a start of ${model} under the cap`)) over--;
    }
  }

  /** Boots still launching (each holds a whole engine's memory until asleep). */
  private launching(): number {
    return this.pools.reduce((n, p) => n + p.actuator.booting, 0);
  }

  /** Boots that fit now: unbounded without a cap; with one, its free room, none while a model waits for it. */
  private roomForBoots(): number {
    const cap = this.cap;
    if (cap === undefined) return Number.POSITIVE_INFINITY;
    if (cap.blockedCount > 0) return 0;
    return Math.max(0, cap.maxLoadedModels - cap.loadedModels().length - this.launching());
  }
}
