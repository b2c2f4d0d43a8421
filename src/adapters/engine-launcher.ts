/**
 * Starts one built-in engine (`switchyard engine sim|llama`) at a time as a child process on a free
 * port, for the local actuator (src/control/local-actuator.ts): the child is supervised by
 * `startLocalEngines` (one engine, with its restart policy), and the launch resolves only once the
 * engine also answers its health check, so the gateway never gets a backend that cannot answer.
 * With `standby` (llama only), a launch first takes a standby engine from the node's pool
 * (src/adapters/standby-engines.ts) and hands it the model; only when none is waiting does it
 * spawn a fresh engine.
 */
import type { EngineAssignment, EngineLauncher, LaunchedEngine } from '../control/local-actuator.ts';
import { SwitchyardError } from '../core/errors.ts';
import { type RestartPolicy, startLocalEngines } from './local-engines.ts';
import type { StandbyEngines } from './standby-engines.ts';

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
  /** Hand cold starts to this pool's standby engines (llama): the GGUF and the name requests use. */
  readonly standby?: {
    readonly pool: StandbyEngines;
    readonly model: string;
    readonly servedModelName: string;
  };
}

/** How each launch came up, for /stats: handed to a standby engine, or a fresh process. */
export interface LaunchCounts {
  standby: number;
  fresh: number;
}

/** A launcher of local child engines. */
export function localEngineLauncher(
  options: LocalEngineLauncherOptions,
  counts: LaunchCounts = { standby: 0, fresh: 0 },
): EngineLauncher {
  const log = options.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  return {
    async launch(index: number, signal?: AbortSignal): Promise<LaunchedEngine> {
      const startMs = performance.now();
      // Where the process's lines and exits go: this slot's, until a re-target hands it to another
      // pool (its slot index and its model's log from then on).
      let slot = index;
      let sink = log;
      let exitTo = (gaveUp: boolean): void => options.onExit?.(index, gaveUp);
      const say = (line: string): void => sink(`[engine ${slot}] ${line}`);
      const reassigned = (to: EngineAssignment): void => {
        slot = to.index;
        sink = to.log;
        exitTo = to.onExit;
      };
      const taken = options.standby?.pool.take();
      if (taken !== undefined && options.standby !== undefined) {
        counts.standby++;
        say(`handed to standby engine (pid ${taken.pid})`);
        const { model, servedModelName } = options.standby;
        // Not restarted in place: a handed engine that dies is lost, and the next request starts another.
        const engine = await taken.hand(
          { model, servedModelName },
          say,
          options.startTimeoutMs,
          () => exitTo(true),
          signal,
        );
        return healthy({ ...engine, reassign: reassigned }, options, startMs, signal);
      }
      counts.fresh++;
      let readies = 0;
      const engines = await startLocalEngines({
        count: 1,
        engine: options.engine,
        args: options.args,
        readyTimeoutMs: options.startTimeoutMs,
        ...(options.restart !== undefined ? { restart: options.restart } : {}),
        // The supervisor names its one child `engine 0`: the slot's (current) index replaces it.
        log: (line) => sink(line.replace(/^\[engine 0\]/, `[engine ${slot}]`)),
        // The first ready is the actuator's to announce; a restart's only shows here.
        onReady: (_, engine, elapsedMs) => {
          if (readies++ > 0)
            say(`restarted: ready at ${engine.url} (pid ${engine.pid}, ${(elapsedMs / 1000).toFixed(1)} s)`);
        },
        onExit: (_, code, exitSignal) => {
          say(`exited (${exitSignal ?? `code ${code}`})`);
          exitTo(false);
        },
        onRestart: (_, restarts, delayMs) =>
          say(
            `restarting in ${(delayMs / 1000).toFixed(1)} s (restart ${restarts} of at most ${options.restart?.restartsMax})`,
          ),
        onGiveUp: (_, restarts) => {
          say(`died after ${restarts} restarts; giving up on it`);
          exitTo(true);
        },
        ...(signal === undefined ? {} : { signal }),
      }).catch((error: unknown) => {
        throw slotError(error, index);
      });
      const engine = engines.engines[0] as (typeof engines.engines)[number];
      const reassign = (to: EngineAssignment): void => {
        reassigned(to);
        engines.setArgs(to.args);
      };
      return healthy(handedOn(engine, { stop: () => engines.stop(), reassign }), options, startMs, signal);
    },
  };
}

/**
 * `engine` as a launcher hands it on: its URL, KV-event endpoint and model, its pid read through (a
 * getter, so it follows the supervisor's restarts), its `reassign` and `retargeted` (re-target) passed through, and
 * `calls` (its stop and, with sleep mode, its sleep and wake) in place of any of its own. Launchers
 * that wrap another's engines build theirs so.
 */
export function handedOn(
  engine: Pick<LaunchedEngine, 'url' | 'kvEvents' | 'model' | 'pid' | 'reassign' | 'retargeted'>,
  calls: Pick<LaunchedEngine, 'stop' | 'sleep' | 'wakeUp' | 'reassign'>,
): LaunchedEngine {
  const reassign = calls.reassign ?? engine.reassign;
  return {
    url: engine.url,
    kvEvents: engine.kvEvents,
    model: engine.model,
    get pid() {
      return engine.pid;
    },
    ...(reassign === undefined ? {} : { reassign }),
    ...(engine.retargeted === true ? { retargeted: true } : {}),
    ...calls,
  };
}

/**
 * The supervisor's error names its one child `engine 0`: renamed to the slot's index, so a failure
 * of engine 3 does not read as one of engine 0.
 */
function slotError(error: unknown, index: number): unknown {
  if (!(error instanceof SwitchyardError) || index === 0) return error;
  return new SwitchyardError(error.code, error.message.replace(/^engine 0 /, `engine ${index} `), {
    ...error.details,
    index,
  });
}

/** Resolves with `engine` once it answers its health check (stopping it when it never does). */
async function healthy(
  engine: LaunchedEngine,
  options: LocalEngineLauncherOptions,
  startMs: number,
  signal: AbortSignal | undefined,
): Promise<LaunchedEngine> {
  const leftMs = options.startTimeoutMs - (performance.now() - startMs);
  try {
    await waitHealthy(engine.url + (options.healthPath ?? '/health'), leftMs, signal);
  } catch (error) {
    await engine.stop();
    throw error;
  }
  return engine;
}

/**
 * Probes `url` every HEALTH_POLL_MS until it answers 2xx; throws SY_ERR_UPSTREAM after `timeoutMs`,
 * or once `signal` aborted (a cancelled start).
 */
async function waitHealthy(url: string, timeoutMs: number, signal: AbortSignal | undefined): Promise<void> {
  const deadlineMs = performance.now() + Math.max(0, timeoutMs);
  let last = 'no answer';
  for (;;) {
    if (signal?.aborted === true)
      throw new SwitchyardError('SY_ERR_UPSTREAM', 'engine start cancelled', {
        param: 'engine',
        cancelled: true,
      });
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
