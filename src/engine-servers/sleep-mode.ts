/**
 * vLLM's sleep-mode HTTP API for the built-in engines, served when the engine runs with
 * `--enable-sleep-mode` (vLLM serves these only with `VLLM_SERVER_DEV_MODE=1`; without it they are
 * not routed and answer 404, which is what an engine without the flag answers here):
 *
 * - `POST /sleep?level=1|2` (default 1) returns 200 with an empty body once the engine is asleep.
 *   Level 1 keeps the weights in host memory; level 2 discards them (a wake reloads them). Either
 *   discards the KV cache and the prefix cache.
 * - `POST /wake_up` (optionally `?tags=weights` and/or `?tags=kv_cache`, repeatable) returns 200
 *   with an empty body once what was asked is awake; a tag already awake is skipped (vLLM's
 *   best-effort rule since PR #31613). Without tags everything wakes.
 * - `GET /is_sleeping` returns `{"is_sleeping": true|false}`: true while any part sleeps.
 *
 * Source: vllm/entrypoints/serve/sleep/api_router.py and docs.vllm.ai "Sleep Mode". vLLM itself does
 * not refuse generation while asleep (issue #15483: the engine crashes) nor sleep with requests
 * running (issue #45520); the built-in engines answer both with a stable error instead
 * (503 SY_ERR_ENGINE_ASLEEP, 409 SY_ERR_ENGINE_BUSY), so nothing hangs.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { invalidArgument, SwitchyardError } from '../core/errors.ts';
import { sendError, sendJson, sendMethodNotAllowed } from './respond.ts';

/** What a part of an engine's memory is called in vLLM's `wake_up?tags=`. */
export const SLEEP_TAGS = ['weights', 'kv_cache'] as const;
/** A part of a sleeping engine that wakes on its own. */
export type SleepTag = (typeof SLEEP_TAGS)[number];
/** vLLM's sleep levels: 1 keeps the weights in host memory, 2 discards them. */
export type SleepLevel = 1 | 2;

/** A backend's sleep mode (an engine started with `--enable-sleep-mode`). */
export interface EngineSleep {
  /** Resolves once asleep; rejects SY_ERR_ENGINE_BUSY while requests run. */
  sleep(level: SleepLevel): Promise<void>;
  /** Resolves once the given parts (all when undefined) are awake. */
  wakeUp(tags: readonly SleepTag[] | undefined): Promise<void>;
  /** Whether any part sleeps (or is still waking). */
  readonly isSleeping: boolean;
}

/** The error a generation gets from a sleeping engine. */
export function engineAsleep(): SwitchyardError {
  return new SwitchyardError(
    'SY_ERR_ENGINE_ASLEEP',
    'the engine is in sleep mode: POST /wake_up before sending requests',
  );
}

const SLEEP_ROUTES: ReadonlyMap<string, string> = new Map([
  ['/sleep', 'POST'],
  ['/wake_up', 'POST'],
  ['/is_sleeping', 'GET, HEAD'],
]);

/** `level` of `POST /sleep`: '1' when absent, else 1 or 2. */
export function parseSleepLevel(query: URLSearchParams): SleepLevel {
  const raw = query.get('level') ?? '1';
  if (raw === '1' || raw === '2') return Number(raw) as SleepLevel;
  throw invalidArgument('level', raw, '1 or 2');
}

/** `tags` of `POST /wake_up` (repeatable): undefined when none (wake everything). */
export function parseWakeTags(query: URLSearchParams): SleepTag[] | undefined {
  const tags = query.getAll('tags');
  if (tags.length === 0) return undefined;
  for (const t of tags)
    if (!(SLEEP_TAGS as readonly string[]).includes(t))
      throw invalidArgument('tags', t, SLEEP_TAGS.join(' or '));
  return [...new Set(tags)] as SleepTag[];
}

/**
 * Answers a sleep-mode route of `sleep` (see the file comment); false when `path` is none of them
 * (the caller routes it). A wrong method gets 405 with Allow.
 */
export function handleSleepRoute(
  sleep: EngineSleep,
  req: IncomingMessage,
  res: ServerResponse,
  method: string,
  path: string,
  search: string,
): boolean {
  const allow = SLEEP_ROUTES.get(path);
  if (allow === undefined) return false;
  req.resume();
  const verb = method === 'HEAD' ? 'GET' : method;
  if (!allow.split(', ').includes(verb)) {
    sendMethodNotAllowed(res, method, path, allow);
    return true;
  }
  const query = new URLSearchParams(search);
  if (path === '/is_sleeping') {
    sendJson(res, 200, JSON.stringify({ is_sleeping: sleep.isSleeping }));
    return true;
  }
  let done: Promise<void>;
  try {
    done = path === '/sleep' ? sleep.sleep(parseSleepLevel(query)) : sleep.wakeUp(parseWakeTags(query));
  } catch (error) {
    sendError(res, error as Error);
    return true;
  }
  done.then(
    () => {
      // vLLM answers an empty 200.
      res.writeHead(200, { 'content-length': 0 });
      res.end();
    },
    (error: Error) => sendError(res, error),
  );
  return true;
}

/**
 * Runs sleep-mode calls one at a time, in order (both built-in engines' rule), and a weight swap
 * (weight-update.ts) between them; a failed call does not stop the ones after it.
 */
export class SleepCallQueue {
  private chain: Promise<unknown> = Promise.resolve();

  /** Runs `step` after every call queued before it. */
  run<T = void>(step: () => Promise<T>): Promise<T> {
    const run = this.chain.then(step);
    this.chain = run.catch(() => {});
    return run;
  }
}

/** The error `POST /sleep` gets while the engine holds `unfinished` requests. */
export function engineBusyToSleep(unfinished: number): SwitchyardError {
  return new SwitchyardError(
    'SY_ERR_ENGINE_BUSY',
    `cannot sleep with ${unfinished} unfinished request(s): drain the engine first`,
  );
}

/** The error a sleep-mode call gets once the engine shuts down. */
export function engineShuttingDown(): SwitchyardError {
  return new SwitchyardError('SY_ERR_NO_INSTANCE', 'the engine is shutting down');
}

/** The counters both built-in engines' sleep modes export. */
export interface SleepCounts {
  readonly isSleeping: boolean;
  readonly sleeps: number;
  readonly wakes: number;
}

/**
 * Prometheus text: `switchyard_engine_sleeping` (1 while any part sleeps or wakes),
 * `switchyard_engine_sleeps_total`, `switchyard_engine_wakes_total`, and the engine's own last-wake
 * gauge `lastWake` ([name, help, seconds]).
 */
export function sleepMetricsText(
  modelName: string,
  counts: SleepCounts,
  lastWake: readonly [name: string, help: string, seconds: number],
): string {
  const label = `{model_name=${JSON.stringify(modelName)}}`;
  const series: [string, string, string, number][] = [
    [
      'switchyard_engine_sleeping',
      'gauge',
      'Whether the engine sleeps or is waking (1) or is awake (0)',
      Number(counts.isSleeping),
    ],
    ['switchyard_engine_sleeps_total', 'counter', 'Sleeps completed (POST /sleep)', counts.sleeps],
    ['switchyard_engine_wakes_total', 'counter', 'Wakes completed (POST /wake_up)', counts.wakes],
    [lastWake[0], 'gauge', lastWake[1], lastWake[2]],
  ];
  return series
    .map(([name, type, help, v]) => `# HELP ${name} ${help}\n# TYPE ${name} ${type}\n${name}${label} ${v}\n`)
    .join('');
}
