/**
 * Starts one built-in engine (`switchyard engine sim|llama`) at a time as a child process on a free
 * port, for the local actuator (src/control/local-actuator.ts): the child is supervised by
 * `startLocalEngines` (one engine, with its restart policy), and the launch resolves only once the
 * engine also answers its health check, so the gateway never gets a backend that cannot answer.
 */
import type { EngineLauncher, LaunchedEngine } from '../control/local-actuator.ts';
import { SwitchyardError } from '../core/errors.ts';
import { type RestartPolicy, startLocalEngines } from './local-engines.ts';

/** Time between health probes of a starting engine. */
export const HEALTH_POLL_MS = 100;
/** Deadline of one health probe. */
export const HEALTH_PROBE_TIMEOUT_MS = 1000;

/** Options of `localEngineLauncher`. */
export interface LocalEngineLauncherOptions {
  readonly engine: 'sim' | 'llama';
  /** Flags for every child (`--port 0` is appended). */
  readonly args: readonly string[];
  /** Longest wait from spawn to a passing health check. */
  readonly startTimeoutMs: number;
  /** The engine's health path (default /health). */
  readonly healthPath?: string;
  readonly restart?: RestartPolicy;
  /** Where the children's stderr goes, one line at a time. */
  readonly log?: (line: string) => void;
  /** A ready engine of slot `index` exited, or its supervisor gave up restarting it (`gaveUp`). */
  onExit?(index: number, gaveUp: boolean): void;
}

/** A launcher of local child engines. */
export function localEngineLauncher(options: LocalEngineLauncherOptions): EngineLauncher {
  const log = options.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  return {
    async launch(index: number): Promise<LaunchedEngine> {
      const startMs = performance.now();
      const engines = await startLocalEngines({
        count: 1,
        engine: options.engine,
        args: options.args,
        readyTimeoutMs: options.startTimeoutMs,
        ...(options.restart !== undefined ? { restart: options.restart } : {}),
        log: (line) => log(line.replace(/^\[engine 0\]/, `[engine ${index}]`)),
        onExit: () => options.onExit?.(index, false),
        onGiveUp: () => options.onExit?.(index, true),
      });
      const engine = engines.engines[0] as (typeof engines.engines)[number];
      const leftMs = options.startTimeoutMs - (performance.now() - startMs);
      try {
        await waitHealthy(engine.url + (options.healthPath ?? '/health'), leftMs);
      } catch (error) {
        await engines.stop();
        throw error;
      }
      return {
        url: engine.url,
        kvEvents: engine.kvEvents,
        model: engine.model,
        get pid() {
          return engine.pid;
        },
        stop: () => engines.stop(),
      };
    },
  };
}

/** Probes `url` every HEALTH_POLL_MS until it answers 2xx; throws SY_ERR_UPSTREAM after `timeoutMs`. */
async function waitHealthy(url: string, timeoutMs: number): Promise<void> {
  const deadlineMs = performance.now() + Math.max(0, timeoutMs);
  let last = 'no answer';
  for (;;) {
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(HEALTH_PROBE_TIMEOUT_MS) });
      await res.arrayBuffer();
      if (res.ok) return;
      last = `answered ${res.status}`;
    } catch (error) {
      last = (error as Error).message;
    }
    if (performance.now() + HEALTH_POLL_MS > deadlineMs)
      throw new SwitchyardError('SY_ERR_UPSTREAM', `engine at ${url} failed its health check: ${last}`, {
        param: 'engine',
      });
    await new Promise((resolve) => setTimeout(resolve, HEALTH_POLL_MS));
  }
}
