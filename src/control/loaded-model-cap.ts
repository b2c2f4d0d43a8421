/**
 * A cap on the models loaded at once on one node (`switchyard serve --max-loaded-models N`), live.
 * A model is loaded while it holds an engine slot: its pool wants one or has one starting or ready.
 * Every start from zero asks `admit` first. Under the cap it goes ahead; at the cap the cap stops
 * one idle loaded model (no request in flight or held), chosen by the eviction policy
 * (./serverless/live-eviction.ts), and the start goes ahead; when every loaded model is busy the
 * start is refused and the model waits, its requests held in the gateway's buffer (where their
 * deadline still runs). Waiting models are retried oldest first, whenever a request ends and on a
 * short timer, so one turns loaded as soon as a loaded model turns idle or stops.
 *
 * It also keeps what the policy reads: each model's last use and decayed request rate (from the
 * gateway's request tap) and its start-up time, measured by the host (spawn to ready). It reads no
 * clock: hosts pass their readings.
 */
import { Counter, Gauge, type Registry } from 'prom-client';
import {
  chooseEviction,
  type DecayedRate,
  type EvictionCandidate,
  type EvictionPolicy,
  POPULARITY_TAU_MS,
  RATE_NONE,
  rateAt,
  withArrival,
} from './serverless/live-eviction.ts';

/** Evictions `/stats` lists (the most recent first); older ones are only counted. */
export const RECENT_EVICTIONS_MAX = 32;
/** How often waiting models are retried besides on each request end (ms). */
export const CAP_RETRY_EVERY_MS = 100;

/** Why a loaded model was stopped (the `reason` label of `switchyard_model_evictions_total`). */
export type UnloadReason = EvictionPolicy | 'keep-alive';

/** What the cap needs of one model's pool (its runner and the gateway's buffer, in serve). */
export interface CappedModel {
  readonly model: string;
  /** It holds an engine slot: wanted, starting or ready. */
  loaded(): boolean;
  /** Requests of it in flight or held (0: it may be evicted). */
  inSystem(): number;
  /** Requests held for a first instance. */
  waiting(): number;
  /** Its last arrival or end. */
  lastUsedMs(): number;
  /** Its engine's last start, spawn to ready, in ms (undefined: none finished yet). */
  startupMs(): number | undefined;
  /** Stops its engines now (it is idle). */
  unload(reason: string, nowMs: number): void;
  /** Asks for an engine again (it waited for the cap); the ask comes back through `admit`. */
  wake(waiting: number, nowMs: number): void;
}

/** Options of a `LoadedModelCap`. */
export interface LoadedModelCapOptions {
  readonly maxLoadedModels: number;
  readonly eviction: EvictionPolicy;
  /** Time constant of the request-rate estimate (default POPULARITY_TAU_MS). */
  readonly popularityTauMs?: number;
  /** One line per eviction and per model that has to wait. */
  readonly log?: (line: string) => void;
}

/** One eviction, as `/stats` lists it. */
export interface EvictionRecord {
  readonly model: string;
  readonly reason: UnloadReason;
  /** The model whose start needed the slot (undefined for a keep-alive stop). */
  readonly for: string | undefined;
  /** The policy's inputs for the model evicted. */
  readonly startupMs: number;
  readonly requestsPerS: number;
  readonly idleMs: number;
}

/** The cap over several models' pools (see the file comment). */
export class LoadedModelCap {
  private readonly models = new Map<string, CappedModel>();
  private readonly rates = new Map<string, DecayedRate>();
  /** Models refused a start, with when they first were (retried oldest first). */
  private readonly blocked = new Map<string, number>();
  private readonly counts = new Map<string, number>();
  private readonly recent: EvictionRecord[] = [];
  private readonly log: (line: string) => void;
  private readonly tauMs: number;
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly options: LoadedModelCapOptions) {
    if (!(Number.isInteger(options.maxLoadedModels) && options.maxLoadedModels >= 1))
      throw new RangeError(`maxLoadedModels ${options.maxLoadedModels}: expected an integer >= 1`);
    this.log = options.log ?? (() => {});
    this.tauMs = options.popularityTauMs ?? POPULARITY_TAU_MS;
  }

  /** Puts `m` under the cap. */
  add(m: CappedModel): void {
    this.models.set(m.model, m);
  }

  /** A request for `model` arrived (its popularity). */
  arrived(model: string, nowMs: number): void {
    if (!this.models.has(model)) return;
    this.rates.set(model, withArrival(this.rates.get(model) ?? RATE_NONE, nowMs, this.tauMs));
  }

  /** Models loaded now. */
  loadedModels(): string[] {
    return [...this.models.values()].filter((m) => m.loaded()).map((m) => m.model);
  }

  /**
   * `model` (not loaded) wants an engine: true when it may start now, after evicting an idle model
   * if the cap is reached; false when it must wait (every loaded model is busy, or models that
   * waited longer go first).
   */
  admit(model: string, nowMs: number): boolean {
    const m = this.models.get(model);
    if (m === undefined || m.loaded()) return true;
    if (!this.blocked.has(model)) this.blocked.set(model, nowMs);
    const since = this.blocked.get(model) as number;
    let ahead = 0;
    for (const [other, otherSince] of this.blocked)
      if (other !== model && otherSince < since && this.stillWaits(other)) ahead++;
    const free = this.options.maxLoadedModels - this.loadedModels().length;
    if (free > ahead) return this.admitted(model);
    // Only the first in line evicts, and only to take the slot it frees.
    if (ahead > 0 || free !== 0) return false;
    const victim = this.chooseVictim(model, nowMs);
    if (victim === undefined) {
      if (since === nowMs)
        this.log(
          `'${model}' waits: ${this.options.maxLoadedModels} model(s) loaded (--max-loaded-models), none idle`,
        );
      return false;
    }
    this.evict(victim, this.options.eviction, model, nowMs);
    return this.admitted(model);
  }

  /** A loaded model stopped after its keep-alive (counted; frees its slot for a waiting model). */
  unloadedIdle(model: string, nowMs: number): void {
    this.record({
      model,
      reason: 'keep-alive',
      for: undefined,
      startupMs: this.models.get(model)?.startupMs() ?? 0,
      requestsPerS: rateAt(this.rates.get(model) ?? RATE_NONE, nowMs, this.tauMs),
      idleMs: nowMs - (this.models.get(model)?.lastUsedMs() ?? nowMs),
    });
  }

  /** Models refused a start that may still wait (retry has work to do). */
  get blockedCount(): number {
    return this.blocked.size;
  }

  /** Asks the models that wait for the cap again, oldest first. */
  retry(nowMs: number): void {
    if (this.blocked.size === 0) return;
    const order = [...this.blocked].sort((a, b) => a[1] - b[1] || (a[0] < b[0] ? -1 : 1));
    for (const [model] of order) {
      if (!this.stillWaits(model)) {
        this.blocked.delete(model);
        continue;
      }
      const m = this.models.get(model) as CappedModel;
      m.wake(m.waiting(), nowMs);
    }
  }

  /** Retries waiting models every CAP_RETRY_EVERY_MS on `nowMs`'s clock until `stop`. */
  start(nowMs: () => number): void {
    if (this.timer !== undefined) return;
    this.timer = setInterval(() => this.retry(nowMs()), CAP_RETRY_EVERY_MS);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
  }

  /** Evictions so far by reason. */
  evictions(): Readonly<Record<UnloadReason, number>> {
    return {
      lru: this.counts.get('lru') ?? 0,
      'cost-aware': this.counts.get('cost-aware') ?? 0,
      'keep-alive': this.counts.get('keep-alive') ?? 0,
    };
  }

  /** `/stats` `loadedModels`: the cap, who is loaded and waits, the policy's inputs, evictions. */
  stats(nowMs: number): Record<string, unknown> {
    const models: Record<string, unknown> = {};
    for (const m of this.models.values())
      models[m.model] = {
        loaded: m.loaded(),
        inSystem: m.inSystem(),
        startupMs: m.startupMs() ?? null,
        requestsPerS: rateAt(this.rates.get(m.model) ?? RATE_NONE, nowMs, this.tauMs),
        lastUsedMs: m.lastUsedMs(),
      };
    return {
      maxLoadedModels: this.options.maxLoadedModels,
      eviction: this.options.eviction,
      loaded: this.loadedModels(),
      waiting: [...this.blocked.keys()].filter((m) => this.stillWaits(m)),
      evictions: this.evictions(),
      recentEvictions: this.recent,
      models,
    };
  }

  /**
   * Registers `switchyard_loaded_models` (gauge) and `switchyard_model_evictions_total{model,reason}`
   * on `registry` (the gateway's own, so they appear on its /metrics).
   */
  registerMetrics(registry: Registry): void {
    const cap = this;
    new Gauge({
      name: 'switchyard_loaded_models',
      help: 'Models with an engine slot on this node (wanted, starting or ready), at most --max-loaded-models',
      registers: [registry],
      collect() {
        this.set(cap.loadedModels().length);
      },
    });
    const evictions = new Counter({
      name: 'switchyard_model_evictions_total',
      help: 'Loaded models stopped: by the eviction policy to make room (lru, cost-aware) or after their keep-alive',
      labelNames: ['model', 'reason'],
      registers: [registry],
    });
    this.onRecord = (r) => evictions.inc({ model: r.model, reason: r.reason });
  }

  private onRecord: ((r: EvictionRecord) => void) | undefined;

  private admitted(model: string): boolean {
    this.blocked.delete(model);
    return true;
  }

  private stillWaits(model: string): boolean {
    const m = this.models.get(model);
    return m !== undefined && !m.loaded() && m.waiting() > 0;
  }

  private chooseVictim(forModel: string, nowMs: number): EvictionCandidate | undefined {
    const candidates: EvictionCandidate[] = [];
    for (const m of this.models.values()) {
      if (m.model === forModel || !m.loaded() || m.inSystem() > 0 || m.waiting() > 0) continue;
      candidates.push({
        model: m.model,
        lastUsedMs: m.lastUsedMs(),
        // None measured yet (its first start is under way, and it already has no request): 0.
        startupMs: m.startupMs() ?? 0,
        requestsPerS: rateAt(this.rates.get(m.model) ?? RATE_NONE, nowMs, this.tauMs),
      });
    }
    return chooseEviction(this.options.eviction, candidates);
  }

  private evict(c: EvictionCandidate, reason: EvictionPolicy, forModel: string, nowMs: number): void {
    const m = this.models.get(c.model) as CappedModel;
    const why = `evicted (${reason}) for '${forModel}': ${this.options.maxLoadedModels} model(s) loaded (--max-loaded-models); start-up ${Math.round(c.startupMs)} ms x ${c.requestsPerS.toFixed(3)} req/s, idle ${Math.round(nowMs - c.lastUsedMs)} ms`;
    this.log(`'${c.model}' ${why}`);
    m.unload(why, nowMs);
    this.record({
      model: c.model,
      reason,
      for: forModel,
      startupMs: c.startupMs,
      requestsPerS: c.requestsPerS,
      idleMs: nowMs - c.lastUsedMs,
    });
  }

  private record(r: EvictionRecord): void {
    this.counts.set(r.reason, (this.counts.get(r.reason) ?? 0) + 1);
    this.recent.unshift(r);
    if (this.recent.length > RECENT_EVICTIONS_MAX) this.recent.length = RECENT_EVICTIONS_MAX;
    this.onRecord?.(r);
  }
}
