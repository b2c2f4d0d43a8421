/**
 * Sleep mode for `switchyard serve --sleep`: engines launched with `--enable-sleep-mode` whose
 * `LaunchedEngine` can be put to sleep and woken over vLLM's HTTP API (`POST /sleep?level=1`,
 * `POST /wake_up`), which the built-in sim engine serves as vLLM does (src/engine-servers/sleep-mode.ts).
 * The local actuator (src/control/local-actuator.ts) decides when; this only speaks to the engine.
 */
import { Gauge, type Registry } from 'prom-client';
import type { EngineLauncher, LaunchedEngine } from '../control/local-actuator.ts';
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
    async launch(index: number): Promise<LaunchedEngine> {
      const e = await launcher.launch(index);
      return {
        url: e.url,
        kvEvents: e.kvEvents,
        model: e.model,
        // A getter: the pid follows the supervisor's restarts.
        get pid() {
          return e.pid;
        },
        stop: () => e.stop(),
        sleep: () => postSleepApi(e.url, '/sleep?level=1', timeoutMs),
        wakeUp: () => postSleepApi(e.url, '/wake_up', timeoutMs),
      };
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
}
