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
import { ERRORS, type ErrorCode, invalidArgument, SwitchyardError } from '../core/errors.ts';

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

function answer(res: ServerResponse, status: number, body: string): void {
  res.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(body),
  });
  res.end(body);
}

function answerError(res: ServerResponse, error: Error & { code?: string }, headers = {}): void {
  const e =
    error instanceof SwitchyardError
      ? error
      : new SwitchyardError(
          (error.code !== undefined && error.code in ERRORS ? error.code : 'SY_ERR_INTERNAL') as ErrorCode,
          error.message,
        );
  const body = JSON.stringify(e.toJSON());
  res.writeHead(e.status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(body),
    ...headers,
  });
  res.end(body);
}

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
    answerError(
      res,
      new SwitchyardError(
        'SY_ERR_METHOD_NOT_ALLOWED',
        `method ${method} not allowed on ${path}; use ${allow}`,
        {
          param: 'method',
        },
      ),
      { allow },
    );
    return true;
  }
  const query = new URLSearchParams(search);
  if (path === '/is_sleeping') {
    answer(res, 200, JSON.stringify({ is_sleeping: sleep.isSleeping }));
    return true;
  }
  let done: Promise<void>;
  try {
    done = path === '/sleep' ? sleep.sleep(parseSleepLevel(query)) : sleep.wakeUp(parseWakeTags(query));
  } catch (error) {
    answerError(res, error as Error);
    return true;
  }
  done.then(
    () => {
      // vLLM answers an empty 200.
      res.writeHead(200, { 'content-length': 0 });
      res.end();
    },
    (error: Error) => answerError(res, error),
  );
  return true;
}
