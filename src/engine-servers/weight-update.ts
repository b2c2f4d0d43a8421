/**
 * SGLang's in-place checkpoint swap for the built-in engines: `POST /update_weights_from_disk`
 * with `{"model_path": P}` loads another checkpoint of the same architecture into the running
 * engine, without a new process (SGLang: python/sglang/srt/entrypoints/http_server.py,
 * `update_weights_from_disk`; tokenizer_manager.py). SGLang answers 200 with
 * `{"success": true, "message": ..., "num_paused_requests": N}` and 400 with `success: false` when the
 * load fails (its model runner rolls back to the old weights); after a swap it serves the new
 * checkpoint under `served_model_name = model_path`.
 *
 * The built-in engines follow that shape, with these differences, each bounded:
 * - `served_model_name` (Switchyard's field) names the id served from then on; absent, the llama
 *   engine serves the file's name without `.gguf` (what a fresh engine on the file serves) and the
 *   sim engine `model_path` itself (a catalogue id, SGLang's rule).
 * - SGLang waits for running requests under a writer lock (or aborts them with
 *   `abort_all_requests`); these engines answer 409 SY_ERR_ENGINE_BUSY while any request runs or
 *   waits, as `POST /sleep` does, so a swap never waits without bound and never loses a request.
 *   `abort_all_requests: true` is refused (400 SY_ERR_UNSUPPORTED_PARAMETER).
 * - One swap at a time: a second one while the first runs gets 409 SY_ERR_ENGINE_BUSY.
 * - The load has a timeout (504 SY_ERR_TIMEOUT; the engine keeps its model, and a load that ends
 *   later is thrown away).
 * - Errors carry the OpenAI error object beside SGLang's `success: false` and `message`.
 * - A checkpoint of another architecture or other shapes: 400 SY_ERR_MODEL_MISMATCH, engine unchanged.
 * - While the new weights load, generations get 503 SY_ERR_NO_INSTANCE (another instance may take
 *   them); on an engine asleep (vLLM's sleep mode) the swap only records the checkpoint, which the
 *   next `POST /wake_up` loads instead of the old one.
 */
import type { ServerResponse } from 'node:http';
import { invalidArgument, SwitchyardError } from '../core/errors.ts';
import { errorBody, sendJson } from './respond.ts';

/** How long a swap's load may take by default before it is given up (504), ms. */
export const WEIGHT_UPDATE_TIMEOUT_MS_DEFAULT = 120_000;

/** The path of the swap endpoint (SGLang's). */
export const WEIGHT_UPDATE_PATH = '/update_weights_from_disk';

/** A parsed `POST /update_weights_from_disk` body. */
export interface WeightUpdateRequest {
  /** The checkpoint to load (llama: a GGUF path; sim: a catalogue model id). */
  readonly modelPath: string;
  /** The id served after the swap; undefined: the engine's default for `modelPath`. */
  readonly servedModelName?: string | undefined;
}

/** What a swap did. */
export interface WeightUpdateResult {
  /** The id the engine serves now. */
  readonly modelId: string;
  readonly message: string;
}

/** A backend's in-place checkpoint swap. */
export interface EngineWeightUpdate {
  /** Resolves once the engine serves the checkpoint; rejects with a SwitchyardError otherwise. */
  updateWeightsFromDisk(request: WeightUpdateRequest): Promise<WeightUpdateResult>;
  /** Swaps completed. */
  readonly weightUpdates: number;
}

/** Checks a `POST /update_weights_from_disk` body (see the file comment). */
export function parseWeightUpdateBody(body: unknown): WeightUpdateRequest {
  if (typeof body !== 'object' || body === null || Array.isArray(body))
    throw invalidArgument('body', JSON.stringify(body), 'a JSON object with "model_path"');
  const fields = body as Record<string, unknown>;
  const path = fields['model_path'];
  if (typeof path !== 'string' || path.trim() === '')
    throw invalidArgument(
      'model_path',
      path === undefined ? '(absent)' : JSON.stringify(path),
      'a non-empty string',
    );
  const name = fields['served_model_name'];
  if (name !== undefined && name !== null && (typeof name !== 'string' || name.trim() === ''))
    throw invalidArgument('served_model_name', JSON.stringify(name), 'a non-empty string');
  if (fields['abort_all_requests'] === true)
    throw new SwitchyardError(
      'SY_ERR_UNSUPPORTED_PARAMETER',
      "parameter 'abort_all_requests' is not supported: the engine refuses a swap while requests run (409); drain it first",
      { param: 'abort_all_requests' },
    );
  return { modelPath: path, ...(typeof name === 'string' ? { servedModelName: name } : {}) };
}

/** 409 for a swap while requests run or wait. */
export function engineBusyToSwap(unfinished: number): SwitchyardError {
  return new SwitchyardError(
    'SY_ERR_ENGINE_BUSY',
    `cannot load new weights with ${unfinished} unfinished request(s): drain the engine first`,
  );
}

/** 503 for a generation while new weights load. */
export function engineSwapping(): SwitchyardError {
  return new SwitchyardError(
    'SY_ERR_NO_INSTANCE',
    'the engine is loading new weights (POST /update_weights_from_disk); retry shortly',
  );
}

/** 400 for a checkpoint whose shapes differ from the engine's model (`differences`: "field a vs b"). */
export function modelMismatch(modelPath: string, differences: readonly string[]): SwitchyardError {
  return new SwitchyardError(
    'SY_ERR_MODEL_MISMATCH',
    `model_path '${modelPath}' has another architecture than the engine's model (${differences.join('; ')}): ` +
      'only a checkpoint of the same architecture and shapes loads in place; start a new engine for it',
    { param: 'model_path' },
  );
}

/**
 * The field-by-field differences of two shape records (`name a vs b`), in `a`'s key order; empty when
 * they are equal. Values compare by their JSON text (a per-layer head count is an array in GGUF).
 */
export function shapeDifferences<T extends object>(current: T, wanted: T): string[] {
  const out: string[] = [];
  for (const key of Object.keys(current) as (keyof T)[]) {
    const a = JSON.stringify(current[key]);
    const b = JSON.stringify(wanted[key]);
    if (a !== b) out.push(`${String(key)} ${a} vs ${b}`);
  }
  return out;
}

/**
 * One engine's swap bookkeeping: one at a time (a second gets 409), and a timeout. `run` starts the
 * swap's work, which is handed `given()` to ask, before it commits, whether the caller was already
 * answered 504 (the work then throws its load away and keeps the old model). The slot frees only
 * when the work settles, so a swap that timed out still blocks the next one until its load ends.
 */
export class WeightSwapGate {
  /** A swap's work is running. */
  running = false;
  /** Swaps completed. */
  completed = 0;

  constructor(private readonly timeoutMs: number = WEIGHT_UPDATE_TIMEOUT_MS_DEFAULT) {}

  run<T>(work: (given: () => boolean) => Promise<T>): Promise<T> {
    if (this.running)
      return Promise.reject(
        new SwitchyardError('SY_ERR_ENGINE_BUSY', 'another weight update is in progress: one at a time'),
      );
    this.running = true;
    let timedOut = false;
    const done = work(() => timedOut).finally(() => {
      this.running = false;
    });
    done.then(
      () => {
        if (!timedOut) this.completed++;
      },
      () => {},
    );
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        timedOut = true;
        reject(
          new SwitchyardError(
            'SY_ERR_TIMEOUT',
            `loading new weights took longer than ${this.timeoutMs / 1000} s: given up, the engine keeps its model`,
          ),
        );
      }, this.timeoutMs);
    });
    return Promise.race([done, timeout]).finally(() => clearTimeout(timer));
  }
}

/** Writes a swap's error: the OpenAI error object, with SGLang's `success: false` and `message` beside it. */
export function sendWeightUpdateError(
  res: ServerResponse,
  error: Error,
  headers: Record<string, string> = {},
): void {
  const { status, body } = errorBody(error);
  const parsed = JSON.parse(body) as { error: { message: string } };
  sendJson(
    res,
    status,
    JSON.stringify({ success: false, message: parsed.error.message, ...parsed }),
    headers,
  );
}

/** Writes a swap's success in SGLang's shape. */
export function sendWeightUpdateDone(res: ServerResponse, result: WeightUpdateResult): void {
  sendJson(
    res,
    200,
    JSON.stringify({
      success: true,
      message: result.message,
      num_paused_requests: 0,
      model: result.modelId,
    }),
  );
}

/**
 * `switchyard_engine_weight_updates_total` (swaps completed) and `switchyard_engine_weight_update_running`
 * (1 while a swap runs, its load included) as Prometheus text.
 */
export function weightUpdateMetricsText(modelName: string, completed: number, running: boolean): string {
  const label = `{model_name=${JSON.stringify(modelName)}}`;
  const total = 'switchyard_engine_weight_updates_total';
  const gauge = 'switchyard_engine_weight_update_running';
  return (
    `# HELP ${total} In-place checkpoint swaps completed (POST /update_weights_from_disk)\n` +
    `# TYPE ${total} counter\n${total}${label} ${completed}\n` +
    `# HELP ${gauge} Whether a checkpoint swap runs (1) or not (0)\n` +
    `# TYPE ${gauge} gauge\n${gauge}${label} ${Number(running)}\n`
  );
}
