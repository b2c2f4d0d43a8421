/**
 * Sleep mode for `switchyard serve --sleep`: engines launched with `--enable-sleep-mode` whose
 * `LaunchedEngine` can be put to sleep and woken over vLLM's HTTP API (`POST /sleep?level=1`,
 * `POST /wake_up`), which the built-in sim engine serves as vLLM does (src/engine-servers/sleep-mode.ts).
 * The local actuator (src/control/local-actuator.ts) decides when; this only speaks to the engine.
 */
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
