/**
 * Scale from zero, the gateway's half: a model that may run with no instance ("on demand") has its
 * requests held here, in a bounded FIFO per model, while the control loop starts an engine for it
 * (Knative's activator plays this part in front of a revision at zero). The first request held asks
 * the host for an instance at once (`wake`), not at the loop's next tick; when an instance of the
 * model is in service the gateway releases the model's requests, in arrival order, into admission
 * and routing like any other. Nothing is dropped silently: a request past the model's bound, or past
 * the bound on all models' held requests together, is refused 429 `SY_ERR_SCALE_BUFFER_FULL` (their
 * bodies also count against the gateway's queued bytes), one that waits `waitMs` gets 503
 * `SY_ERR_COLD_START_TIMEOUT`, and when the engine fails to start the host fails the model's held
 * requests with 503 `SY_ERR_COLD_START_FAILED` (each with Retry-After). A client that leaves while
 * held is removed (`remove`). `stats` counts every way out. The gateway counts a held request as
 * accepted, in flight and queued (metrics.ts `held`) from `hold` until one of those ways out.
 *
 * It also keeps each on-demand model's keep-alive (Ollama's `keep_alive`): a request may carry a
 * `keep_alive` body field (seconds as a number, or a duration such as "90s", "5m"; negative: as long
 * as allowed), which sets how long the model stays loaded after its last request, bounded by
 * `keepAliveMsMax`; a request without one sets the default. The control host reads it.
 */
import { SwitchyardError } from '../core/errors.ts';

/**
 * Requests one model may hold while it has no instance (`limits.scaleFromZeroBufferMax`'s default,
 * and the twin's). 4096 holds every arrival of a whole default wait (120 s) at up to 34 req/s, so a
 * model's cold start (about 47 s for an 8B from NVMe) at 20 req/s, about 940 arrivals, is decided by
 * the deadline, not cut by the bound (256 refused 670-736 of 6,100 such requests); it equals the
 * admission `online` band's queue depth the held requests are released into, and stays below
 * Knative's activator, which queues up to 10,000 per revision (knative/serving
 * pkg/activator/net/throttler.go `breakerQueueDepth`).
 */
export const SCALE_FROM_ZERO_BUFFER_MAX = 4096;
/**
 * Requests all models together may hold (`limits.scaleFromZeroHeldMax`'s default): four full model
 * buffers. With many on-demand models it bounds the held requests' fixed cost (connection, parsed
 * request: about 12 KiB of the gateway's RSS each, measured with 2,000 and 4,000 small chat requests
 * held, so about 190 MiB when full); their bodies are bounded by `limits.queuedBytesMax`, which they
 * count against.
 */
export const SCALE_FROM_ZERO_HELD_MAX = 16_384;
/**
 * Longest wait of a held request for an instance (`limits.scaleFromZeroWaitMs`'s default): a few
 * minutes covers a large model's cold start from a remote store; the built-in engines start in seconds.
 */
export const SCALE_FROM_ZERO_WAIT_MS = 120_000;
/** A model's keep-alive when neither the request nor the config says: Ollama's 5 minutes. */
export const KEEP_ALIVE_MS_DEFAULT = 300_000;
/** The longest keep-alive a request may ask for (`limits.keepAliveMsMax`'s default): one hour. */
export const KEEP_ALIVE_MS_MAX = 3_600_000;
/** Retry-After of a buffer refusal (full, timed out): about one small engine's start. */
export const SCALE_FROM_ZERO_RETRY_AFTER_MS = 2000;
/** Retry-After when the model's engine failed to start: the next request tries a fresh start. */
export const COLD_START_FAILED_RETRY_AFTER_MS = 5000;

/** The bounds a buffer runs under. */
export interface ModelBufferLimits {
  /** Held requests per model. */
  readonly perModelMax: number;
  /** Held requests, all models together. */
  readonly totalMax: number;
  /** Longest wait of one held request. */
  readonly waitMs: number;
  /** A model's keep-alive when a request does not set one. */
  readonly keepAliveMsDefault: number;
  /** The largest keep-alive a request may set. */
  readonly keepAliveMsMax: number;
}

/** What the buffer needs of its host (the gateway). */
export interface ModelBufferHost<T> {
  nowMs(): number;
  /** The model has an instance in service: send `item` on (admission, routing). */
  release(item: T): void;
  /**
   * Answer `item` with `error` and Retry-After. `held` is false for a request refused at the door
   * (the model's buffer was full: never held), true for one that leaves the buffer this way.
   */
  reject(item: T, error: SwitchyardError, retryAfterMs: number, held: boolean): void;
  /** `model` holds `waiting` requests and has no instance: ask for one now. */
  wake(model: string, waiting: number): void;
  /** Runs `fn` once after `delayMs`; returns a cancel. Default: an unref'd setTimeout. */
  schedule?(delayMs: number, fn: () => void): () => void;
}

/** Counts of what went in and every way out (`/stats` `scaleFromZero`). */
export interface ModelBufferStats {
  /** Requests held (each counted once, on entry). */
  held: number;
  /** Sent on to an instance that came up. */
  released: number;
  /** Refused because the model's buffer was full (never held). */
  overflowed: number;
  /** Waited past `waitMs`. */
  expired: number;
  /** Failed because the model's engine failed to start, or the gateway shut down. */
  failed: number;
  /** Their clients left while they waited. */
  abandoned: number;
}

interface Entry<T> {
  readonly item: T;
  readonly deadlineMs: number;
}

const defaultSchedule = (delayMs: number, fn: () => void): (() => void) => {
  const timer = setTimeout(fn, delayMs);
  timer.unref();
  return () => clearTimeout(timer);
};

/** Per-model bounded FIFOs of requests waiting for a first instance (see the file comment). */
export class ModelBuffer<T> {
  readonly stats: ModelBufferStats = {
    held: 0,
    released: 0,
    overflowed: 0,
    expired: 0,
    failed: 0,
    abandoned: 0,
  };
  private readonly queues = new Map<string, Entry<T>[]>();
  private readonly keepAlive = new Map<string, number>();
  private cancelTimer: (() => void) | undefined;
  private timerAtMs = Number.POSITIVE_INFINITY;
  private readonly schedule: (delayMs: number, fn: () => void) => () => void;

  /**
   * @param models the on-demand models (they may have no instance)
   */
  constructor(
    models: readonly string[],
    private readonly limits: ModelBufferLimits,
    private readonly host: ModelBufferHost<T>,
  ) {
    if (!(Number.isInteger(limits.perModelMax) && limits.perModelMax >= 1))
      throw new RangeError(`perModelMax ${limits.perModelMax}: expected an integer >= 1`);
    if (!(Number.isInteger(limits.totalMax) && limits.totalMax >= 1))
      throw new RangeError(`totalMax ${limits.totalMax}: expected an integer >= 1`);
    if (!(limits.waitMs > 0)) throw new RangeError(`waitMs ${limits.waitMs}: expected > 0`);
    for (const m of models) this.queues.set(m, []);
    this.schedule = host.schedule?.bind(host) ?? defaultSchedule;
  }

  /** The on-demand models, in the order given. */
  get models(): readonly string[] {
    return [...this.queues.keys()];
  }

  /** `model` is on demand (its requests may be held here). */
  serves(model: string): boolean {
    return this.queues.has(model);
  }

  /** Requests `model` holds now. */
  waiting(model: string): number {
    return this.queues.get(model)?.length ?? 0;
  }

  /** Requests held, all models together. */
  get size(): number {
    let n = 0;
    for (const q of this.queues.values()) n += q.length;
    return n;
  }

  /** How long `model` stays loaded after its last request: the latest request's keep_alive, or the default. */
  keepAliveMs(model: string): number {
    return this.keepAlive.get(model) ?? this.limits.keepAliveMsDefault;
  }

  /**
   * A request for on-demand `model` with this JSON `body` arrived: it sets the model's keep-alive.
   * Throws SY_ERR_INVALID_ARGUMENT (and sets nothing) for a malformed or too large `keep_alive`.
   */
  noteRequest(model: string, body: Buffer): void {
    const ms = keepAliveMsOf(body, this.limits.keepAliveMsMax);
    this.keepAlive.set(model, ms ?? this.limits.keepAliveMsDefault);
  }

  /**
   * Holds `item` for `model` (which has no instance in service) and wakes the host; past the model's
   * bound, or the bound on all models' held requests, it is refused at once (429
   * SY_ERR_SCALE_BUFFER_FULL) instead. Returns whether it is held.
   */
  hold(model: string, item: T): boolean {
    const queue = this.queues.get(model);
    if (queue === undefined) throw new RangeError(`model '${model}' is not on demand`);
    const full = this.fullReason(model, queue.length);
    if (full !== undefined) {
      this.stats.overflowed++;
      const error = new SwitchyardError('SY_ERR_SCALE_BUFFER_FULL', full, { param: 'model' });
      this.host.reject(item, error, SCALE_FROM_ZERO_RETRY_AFTER_MS, false);
      this.host.wake(model, queue.length);
      return false;
    }
    const nowMs = this.host.nowMs();
    queue.push({ item, deadlineMs: nowMs + this.limits.waitMs });
    this.stats.held++;
    this.arm(nowMs);
    this.host.wake(model, queue.length);
    return true;
  }

  /** Why one more request for `model` (holding `waiting`) cannot be held, or undefined when it can. */
  private fullReason(model: string, waiting: number): string | undefined {
    if (waiting >= this.limits.perModelMax)
      return `model '${model}' has no instance yet and already holds ${waiting} requests waiting for one (limits.scaleFromZeroBufferMax ${this.limits.perModelMax}); retry later`;
    const total = this.size;
    if (total >= this.limits.totalMax)
      return `model '${model}' has no instance yet and the gateway already holds ${total} requests waiting for instances of their models (limits.scaleFromZeroHeldMax ${this.limits.totalMax}); retry later`;
    return undefined;
  }

  /** `item`'s client left while it waited: drop it (nothing to answer). False when it is not held. */
  remove(model: string, item: T): boolean {
    const queue = this.queues.get(model);
    const k = queue?.findIndex((e) => e.item === item) ?? -1;
    if (queue === undefined || k < 0) return false;
    queue.splice(k, 1);
    this.stats.abandoned++;
    return true;
  }

  /** Sends every request held for a model `inService` says has an instance on, oldest first. */
  releaseWhere(inService: (model: string) => boolean): number {
    let n = 0;
    for (const [model, queue] of this.queues) {
      if (queue.length === 0 || !inService(model)) continue;
      // Emptied first: a release that re-enters (an instant failure holding it again) sees a clean queue.
      const entries = queue.splice(0, queue.length);
      for (const e of entries) {
        this.stats.released++;
        this.host.release(e.item);
        n++;
      }
    }
    return n;
  }

  /** The engine started for `model` failed (`why`): its held requests get 503 SY_ERR_COLD_START_FAILED. */
  fail(model: string, why: string): number {
    const error = new SwitchyardError(
      'SY_ERR_COLD_START_FAILED',
      `the engine for model '${model}' failed to start: ${why}`,
      { param: 'model' },
    );
    return this.failEntries(model, error, COLD_START_FAILED_RETRY_AFTER_MS);
  }

  /** Fails every held request with `error` (the gateway shuts down). */
  failAll(error: SwitchyardError, retryAfterMs: number): number {
    return this.failWhere(() => true, error, retryAfterMs);
  }

  /**
   * Fails with `error` the held requests of every model `which` picks (a shutdown: the models whose
   * engine is not starting); returns how many.
   */
  failWhere(which: (model: string) => boolean, error: SwitchyardError, retryAfterMs: number): number {
    let n = 0;
    for (const model of this.queues.keys())
      if (this.waiting(model) > 0 && which(model)) n += this.failEntries(model, error, retryAfterMs);
    return n;
  }

  /** Answers every request held past its deadline (503 SY_ERR_COLD_START_TIMEOUT); returns how many. */
  expire(nowMs: number): number {
    let n = 0;
    for (const [model, queue] of this.queues) {
      // FIFO with one wait for all: deadlines rise along the queue.
      let k = 0;
      while (k < queue.length && (queue[k] as Entry<T>).deadlineMs <= nowMs) k++;
      if (k === 0) continue;
      const expired = queue.splice(0, k);
      const error = new SwitchyardError(
        'SY_ERR_COLD_START_TIMEOUT',
        `model '${model}' had no instance ready within ${this.limits.waitMs} ms (limits.scaleFromZeroWaitMs); its engine may still be starting (or, under --max-loaded-models, waiting for a loaded model to turn idle); retry later`,
        { param: 'model' },
      );
      for (const e of expired) {
        this.stats.expired++;
        this.host.reject(e.item, error, SCALE_FROM_ZERO_RETRY_AFTER_MS, true);
        n++;
      }
    }
    return n;
  }

  private failEntries(model: string, error: SwitchyardError, retryAfterMs: number): number {
    const queue = this.queues.get(model);
    if (queue === undefined || queue.length === 0) return 0;
    const entries = queue.splice(0, queue.length);
    for (const e of entries) {
      this.stats.failed++;
      this.host.reject(e.item, error, retryAfterMs, true);
    }
    return entries.length;
  }

  /** `/stats` `scaleFromZero`: the counts, and the requests each model holds now (`waiting`). */
  statsJson(): ModelBufferStats & { readonly waiting: Readonly<Record<string, number>> } {
    const waiting: Record<string, number> = {};
    for (const [model, queue] of this.queues) waiting[model] = queue.length;
    return { ...this.stats, waiting };
  }

  /** Keeps one timer at the earliest deadline held. */
  private arm(nowMs: number): void {
    let earliest = Number.POSITIVE_INFINITY;
    for (const q of this.queues.values()) {
      const head = q[0];
      if (head !== undefined && head.deadlineMs < earliest) earliest = head.deadlineMs;
    }
    if (earliest === this.timerAtMs) return;
    this.cancelTimer?.();
    this.cancelTimer = undefined;
    this.timerAtMs = earliest;
    if (earliest === Number.POSITIVE_INFINITY) return;
    this.cancelTimer = this.schedule(Math.max(1, earliest - nowMs), () => {
      this.cancelTimer = undefined;
      this.timerAtMs = Number.POSITIVE_INFINITY;
      const now = this.host.nowMs();
      this.expire(now);
      this.arm(now);
    });
  }
}

const DURATION = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/;
const UNIT_MS: Readonly<Record<string, number>> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** The last `"keep_alive": <number>` of a body as written (JSON.parse keeps the last of duplicates). */
const KEEP_ALIVE_NUMBER = /"keep_alive"\s*:\s*(-?[0-9][0-9.eE+-]*)/g;

/**
 * `value` as the client wrote it, for an error message: a number too large for a double (1e999)
 * parses to Infinity, which JSON.stringify would show as null; its text is found in the body.
 */
function sentText(body: Buffer, value: unknown): string {
  if (typeof value !== 'number' || Number.isFinite(value)) return JSON.stringify(value);
  let last: string | undefined;
  for (const m of body.toString('utf8').matchAll(KEEP_ALIVE_NUMBER)) last = m[1];
  return last ?? String(value);
}

/**
 * The `keep_alive` of a JSON request body in ms, or undefined when it has none. As Ollama: a number
 * is seconds, a string a duration ("500ms", "90s", "5m", "1h"; a bare number is seconds), a negative
 * value means as long as allowed (`maxMs`). Throws SY_ERR_INVALID_ARGUMENT for anything else or a
 * value above `maxMs`. Only a body that contains the key is parsed a second time.
 */
export function keepAliveMsOf(body: Buffer, maxMs: number): number | undefined {
  if (!body.includes('"keep_alive"')) return undefined;
  let value: unknown;
  try {
    value = (JSON.parse(body.toString('utf8')) as Record<string, unknown>)['keep_alive'];
  } catch {
    return undefined;
  }
  if (value === undefined || value === null) return undefined;
  const bad = (): SwitchyardError =>
    new SwitchyardError(
      'SY_ERR_INVALID_ARGUMENT',
      `invalid keep_alive ${sentText(body, value)}: expected seconds (a number) or a duration like "90s", "5m", "1h", at most ${maxMs} ms (limits.keepAliveMsMax)`,
      { param: 'keep_alive' },
    );
  let ms: number;
  if (typeof value === 'number' && Number.isFinite(value)) ms = value * 1000;
  else if (typeof value === 'string') {
    const text = value.trim();
    const negative = text.startsWith('-');
    const m = DURATION.exec(negative ? text.slice(1) : text);
    if (m === null) throw bad();
    ms = Number(m[1]) * (UNIT_MS[m[2] ?? 's'] as number) * (negative ? -1 : 1);
  } else throw bad();
  if (ms < 0) return maxMs;
  if (ms > maxMs) throw bad();
  return Math.round(ms);
}
