/**
 * Each backend's context length per model, read from its own `GET /v1/models`: vLLM's and SGLang's
 * ModelCard carry `max_model_len` (vllm/entrypoints/openai/models/protocol.py), and so do the
 * built-in engines' (the sim's catalogue context, a llama engine's `--context-size`). The gateway's
 * /v1/models lists, for each model, the smallest length its backends report (a request longer than
 * that may reach the backend that refuses it), and no `max_model_len` when none reports one (a
 * hosted OpenAI-compatible API).
 *
 * Asked after a passed health check (health.ts), like the P/D role (engine-role.ts): until the
 * backend answered once, and again whenever it comes back from being ejected (a restarted engine
 * may have another `--max-model-len`). A failure to answer changes nothing about its health.
 */
import type { Dispatcher } from 'undici';
import { fetchBounded } from './engine-role.ts';

/** The listing's path on every OpenAI-compatible server. */
export const MODELS_PATH = '/v1/models';

/**
 * `max_model_len` of each of `models` in a /v1/models answer's body: positive integers only, an
 * entry matched by its `id`. Models the answer does not list, or lists without a length, are absent.
 */
export function modelLensOf(body: string, models: readonly string[]): Map<string, number> {
  const lens = new Map<string, number>();
  let parsed: unknown;
  try {
    parsed = JSON.parse(body);
  } catch {
    return lens;
  }
  const data = (parsed as { data?: unknown } | null)?.data;
  if (!Array.isArray(data)) return lens;
  for (const entry of data) {
    if (typeof entry !== 'object' || entry === null) continue;
    const { id, max_model_len: len } = entry as { id?: unknown; max_model_len?: unknown };
    if (typeof id === 'string' && models.includes(id) && Number.isSafeInteger(len) && (len as number) > 0)
      lens.set(id, len as number);
  }
  return lens;
}

/** One backend's reported context lengths, asked at its passed health checks. */
export class ModelLenProbe {
  /** The reported `max_model_len` of each of the backend's models that has one. */
  lens: ReadonlyMap<string, number> = new Map();
  /** Set once the backend answered its listing (2xx or 4xx); never cleared: `due` asks again while it is out. */
  answered = false;

  /**
   * `onChange` runs when `lens` changed (the gateway rebuilds its /v1/models answer).
   * `models`: the backend's configured models (what its listing's ids are matched against).
   */
  constructor(
    private readonly baseUrl: string,
    private readonly models: readonly string[],
    private readonly onChange: () => void,
  ) {}

  /** Whether a passed check should ask: not answered yet, or the backend was out of service. */
  due(healthy: boolean): boolean {
    return !this.answered || !healthy;
  }

  /**
   * GETs the backend's /v1/models (`headers` as the health check's, `signal` the round's) and
   * records its lengths. A connection error, a cut answer or a 5xx leaves everything as it was.
   */
  async ask(dispatcher: Dispatcher, headers: Record<string, string>, signal: AbortSignal): Promise<void> {
    let answer: { status: number; body: string; truncated: boolean };
    try {
      answer = await fetchBounded(this.baseUrl + MODELS_PATH, dispatcher, headers, signal);
    } catch {
      return;
    }
    if (answer.status >= 500) return;
    this.answered = true;
    // A 4xx (no such route, a key it refuses) or a listing past the bound: no lengths to report.
    const lens = answer.status < 300 && !answer.truncated ? modelLensOf(answer.body, this.models) : new Map();
    if (sameLens(lens, this.lens)) return;
    this.lens = lens;
    this.onChange();
  }
}

function sameLens(a: ReadonlyMap<string, number>, b: ReadonlyMap<string, number>): boolean {
  if (a.size !== b.size) return false;
  for (const [k, v] of a) if (b.get(k) !== v) return false;
  return true;
}

/** The smallest `max_model_len` that `probes` report for `model`, or undefined when none does. */
export function smallestModelLen(probes: Iterable<ModelLenProbe>, model: string): number | undefined {
  let min: number | undefined;
  for (const p of probes) {
    const len = p.lens.get(model);
    if (len !== undefined && (min === undefined || len < min)) min = len;
  }
  return min;
}
