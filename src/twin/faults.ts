/**
 * Faults the twin can inject, and the reliability rules it answers them with (the gateway's own:
 * bounded retries with backoff before the first token, health-based ejection and re-admission).
 *
 * A fault names one instance, when it starts and how long it lasts:
 * - `crash`: the engine dies. Requests on it fail (those without a first token are retried
 *   elsewhere, as the gateway retries a broken connection; the others fail, as a broken stream
 *   does); new requests sent to it fail to connect; health checks fail, so it is ejected after
 *   `failuresToEject` failures, and re-admitted after `successesToReadmit` checks once it is back.
 * - `stall`: the engine stops making progress (no step ends) but stays reachable: requests queue
 *   up on it, health checks pass, scrapes report its growing queue.
 * - `slow-scrape`: its metrics stop arriving; past the stale limit policies see host accounting
 *   for it instead of engine signals (src/core/view.ts).
 *
 * Written `kind:instance@start+duration`, e.g. `crash:i2@30s+20s`, `stall:i0@1m+500ms`; units ms, s
 * or m. In a config file, `faults:` is a list of such strings or `{ kind, instance, atS, forS }`.
 */
import { z } from 'zod';
import { SwitchyardError } from '../core/errors.ts';
import { MinHeap } from '../core/heap.ts';
import type { Request } from '../core/request.ts';
import { type BackoffConfig, HealthState, type HealthThresholds } from '../policies/reliability.ts';

/** What goes wrong. */
export type FaultKind = 'crash' | 'stall' | 'slow-scrape';
const FAULT_KINDS: readonly FaultKind[] = ['crash', 'stall', 'slow-scrape'];

/** One scheduled fault. */
export interface Fault {
  readonly kind: FaultKind;
  /** The instance id (`i0`, `i1`, ...). */
  readonly instance: string;
  readonly atMs: number;
  readonly durationMs: number;
}

/** How many faults one run may schedule (a bound, like every list here). */
export const FAULTS_MAX = 10_000;

const DURATION = /^(\d+(?:\.\d+)?)(ms|s|m)$/;
const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000 };

function durationMs(text: string, what: string, spec: string): number {
  const m = DURATION.exec(text.trim());
  if (m === null)
    throw new SwitchyardError(
      'SY_ERR_INVALID_ARGUMENT',
      `fault '${spec}': ${what} '${text}' is not a duration (a number with ms, s or m, e.g. 30s)`,
    );
  return Number(m[1]) * (UNIT_MS[m[2] as string] as number);
}

/** Parses `kind:instance@start+duration` (e.g. `crash:i2@30s+20s`). */
export function parseFault(spec: string): Fault {
  const m = /^([a-z-]+):([^@\s]+)@([^+\s]+)\+(\S+)$/.exec(spec.trim());
  if (m === null)
    throw new SwitchyardError(
      'SY_ERR_INVALID_ARGUMENT',
      `fault '${spec}': expected kind:instance@start+duration, e.g. crash:i2@30s+20s`,
    );
  const kind = m[1] as string;
  if (!(FAULT_KINDS as readonly string[]).includes(kind))
    throw new SwitchyardError(
      'SY_ERR_INVALID_ARGUMENT',
      `fault '${spec}': unknown kind '${kind}'; expected one of ${FAULT_KINDS.join(', ')}`,
    );
  const fault: Fault = {
    kind: kind as FaultKind,
    instance: m[2] as string,
    atMs: durationMs(m[3] as string, 'start', spec),
    durationMs: durationMs(m[4] as string, 'duration', spec),
  };
  if (fault.durationMs <= 0)
    throw new SwitchyardError('SY_ERR_INVALID_ARGUMENT', `fault '${spec}': the duration must be positive`);
  return fault;
}

/** One entry of a config file's `faults:` list. */
export const faultEntrySchema = z.union([
  z.string(),
  z.strictObject({
    kind: z.enum(['crash', 'stall', 'slow-scrape']),
    instance: z.string(),
    atS: z.number().nonnegative().finite(),
    forS: z.number().positive().finite(),
  }),
]);
export type FaultEntry = z.infer<typeof faultEntrySchema>;

/** A config entry (string or object) as a Fault. */
export function toFault(entry: FaultEntry): Fault {
  if (typeof entry === 'string') return parseFault(entry);
  return {
    kind: entry.kind,
    instance: entry.instance,
    atMs: entry.atS * 1000,
    durationMs: entry.forS * 1000,
  };
}

/** The reliability rules the twin applies under faults; defaults are the gateway's. */
export interface ReliabilityConfig extends BackoffConfig, HealthThresholds {
  /** Further instances tried before the first token (the gateway's `limits.retries`). */
  readonly retries: number;
  /** Health-check period (the gateway's `healthCheck.intervalMs`). */
  readonly healthCheckIntervalMs: number;
}

/** The gateway's defaults (src/gateway/config.ts); faults.test.ts checks they stay equal. */
export const RELIABILITY_DEFAULTS: ReliabilityConfig = {
  retries: 2,
  retryBackoffBaseMs: 20,
  retryBackoffMaxMs: 1000,
  healthCheckIntervalMs: 1000,
  failuresToEject: 3,
  successesToReadmit: 2,
};

/** Some reliability fields, as a config file or flags give them (undefined: the default). */
export type ReliabilityInput = { readonly [K in keyof ReliabilityConfig]?: ReliabilityConfig[K] | undefined };

/** Fills unset fields with the gateway's defaults. */
export function reliabilityWithDefaults(input: ReliabilityInput | undefined): ReliabilityConfig {
  const merged: Record<string, number> = { ...RELIABILITY_DEFAULTS };
  for (const [key, value] of Object.entries(input ?? {})) if (value !== undefined) merged[key] = value;
  return merged as unknown as ReliabilityConfig;
}

/** A config file's `reliability:` section. */
export const reliabilitySchema = z
  .strictObject({
    retries: z.number().int().min(0).max(16),
    retryBackoffBaseMs: z.number().min(0).max(60_000),
    retryBackoffMaxMs: z.number().min(0).max(600_000),
    healthCheckIntervalMs: z.number().int().min(10).max(600_000),
    failuresToEject: z.number().int().min(1).max(1000),
    successesToReadmit: z.number().int().min(1).max(1000),
  })
  .partial();

/** One start or end of a fault, in time order. */
export interface FaultEdge {
  readonly atMs: number;
  readonly fault: Fault;
  readonly start: boolean;
}

/**
 * Checks every fault names a known instance and returns their starts and ends in time order (ties:
 * ends before starts, then schedule order), so back-to-back faults on one instance chain cleanly.
 */
export function faultEdges(faults: readonly Fault[], instanceIds: readonly string[]): FaultEdge[] {
  if (faults.length > FAULTS_MAX)
    throw new SwitchyardError('SY_ERR_INVALID_CONFIG', `${faults.length} faults: at most ${FAULTS_MAX}`);
  const known = new Set(instanceIds);
  const edges: { edge: FaultEdge; order: number }[] = [];
  faults.forEach((fault, k) => {
    if (!known.has(fault.instance))
      throw new SwitchyardError(
        'SY_ERR_INVALID_CONFIG',
        `fault ${fault.kind}:${fault.instance}: no instance '${fault.instance}' (instances are i0..i${instanceIds.length - 1})`,
      );
    edges.push({ edge: { atMs: fault.atMs, fault, start: true }, order: 2 * k + 1 });
    edges.push({ edge: { atMs: fault.atMs + fault.durationMs, fault, start: false }, order: 2 * k });
  });
  edges.sort(
    (a, b) => a.edge.atMs - b.edge.atMs || Number(a.edge.start) - Number(b.edge.start) || a.order - b.order,
  );
  return edges.map((e) => e.edge);
}

/** What a run under faults reports (`reliability` in the summary). */
export interface ReliabilitySummary {
  readonly faults: number;
  /** Requests that ended failed: killed mid-stream, or out of retries (summary `failedByReason.upstream`). */
  readonly failed: number;
  /** Retries sent (each a further attempt of one request). */
  readonly retried: number;
  /** Attempts that found their instance down (connection refused or broken before the first token). */
  readonly connectFailures: number;
  readonly ejections: number;
  readonly readmissions: number;
}

/** A request waiting out its backoff before another attempt. */
export interface PendingRetry {
  readonly atMs: number;
  readonly seq: number;
  readonly request: Request;
  /** A batch job's request (its metrics stay apart). */
  readonly offline: boolean;
  /** Attempts made so far (1 after the first failed one). */
  readonly attempt: number;
  /** Instances already tried, avoided while any other can take it (as the gateway does). */
  readonly tried: readonly string[];
}

/**
 * The twin's fault state over one run: which instances are down, stalled or unscraped now, each
 * instance's health state machine, the requests in flight per instance (what a crash kills), the
 * retries waiting out their backoff, and the counters the summary reports. Pure bookkeeping: the
 * simulator decides what each edge and tick does to its engines.
 */
export class FaultRuntime<R> {
  /** Overlapping faults of one kind on one instance nest: each counts. */
  readonly down: Int32Array;
  readonly stalled: Int32Array;
  readonly unscraped: Int32Array;
  /** While stalled, no step of the instance ends before this time. */
  readonly stalledUntilMs: Float64Array;
  readonly health: HealthState[];
  /** Requests sent to each instance and not yet ended, in send order (a crash fails them in order). */
  readonly live: Set<R>[];
  /** Bounded by the requests in flight: each request has at most one retry pending. */
  readonly retries = new MinHeap<PendingRetry>(
    (a, b) => a.atMs < b.atMs || (a.atMs === b.atMs && a.seq < b.seq),
  );
  private retrySeq = 0;
  private nextEdge = 0;
  nextHealthMs = Number.POSITIVE_INFINITY;
  failed = 0;
  retried = 0;
  connectFailures = 0;
  ejections = 0;
  readmissions = 0;

  constructor(
    private readonly edges: readonly FaultEdge[],
    readonly config: ReliabilityConfig,
    instances: number,
  ) {
    this.down = new Int32Array(instances);
    this.stalled = new Int32Array(instances);
    this.unscraped = new Int32Array(instances);
    this.stalledUntilMs = new Float64Array(instances);
    this.health = Array.from({ length: instances }, () => new HealthState(config));
    this.live = Array.from({ length: instances }, () => new Set<R>());
  }

  /** Time of the next fault start or end (Infinity when none is left). */
  get nextEdgeMs(): number {
    const edge = this.edges[this.nextEdge];
    return edge === undefined ? Number.POSITIVE_INFINITY : edge.atMs;
  }

  /** Takes the next edge (the caller checked its time has come). */
  takeEdge(): FaultEdge {
    return this.edges[this.nextEdge++] as FaultEdge;
  }

  /** Time of the earliest pending retry (Infinity when none). */
  get nextRetryMs(): number {
    return this.retries.peek()?.atMs ?? Number.POSITIVE_INFINITY;
  }

  /** Queues another attempt of `request` at `atMs`. */
  scheduleRetry(
    request: Request,
    offline: boolean,
    atMs: number,
    attempt: number,
    tried: readonly string[],
  ): void {
    this.retried++;
    this.retries.push({ atMs, seq: this.retrySeq++, request, offline, attempt, tried });
  }

  /**
   * A health verdict for instance `index` (a check, or a connection error when `ok` is false).
   * Returns 'ejected' or 'readmitted' when the verdict changed its health, else undefined.
   */
  verdict(index: number, ok: boolean): 'ejected' | 'readmitted' | undefined {
    const state = this.health[index] as HealthState;
    if (ok ? state.succeed() : state.fail()) {
      if (ok) this.readmissions++;
      else this.ejections++;
      return ok ? 'readmitted' : 'ejected';
    }
    return undefined;
  }

  summary(faults: number): ReliabilitySummary {
    return {
      faults,
      failed: this.failed,
      retried: this.retried,
      connectFailures: this.connectFailures,
      ejections: this.ejections,
      readmissions: this.readmissions,
    };
  }
}
