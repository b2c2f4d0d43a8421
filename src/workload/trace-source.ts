/**
 * Trace replay: a parsed Trace as a RequestSource, optionally sliced, rate-scaled and tagged.
 *
 * Prefixes: Mooncake `hash_ids` become the request's PrefixChain as they are, with
 * `blockTokens = trace.blockTokens` (512). They are already chained in meaning (Mooncake hashes
 * each 512-token block together with everything before it, then remaps the hashes to small
 * integers; in the bundled sample every id has exactly one position and one parent), so equal id
 * at position i means equal prefix to i, and keeping them avoids the collisions that re-hashing
 * 180k+ distinct blocks into 32 bits would add. The last id may cover a partial block, as in the
 * trace. The ids live in a different number space from generated chains, so do not mix a Mooncake
 * replay and a shared-prefix generator in one prefix cache and expect them never to match.
 */
import { invalidArgument } from '../core/errors.ts';
import type { ModelId, TenantId } from '../core/ids.ts';
import { NO_PREFIX, type PrefixChain, type Slo } from '../core/request.ts';
import {
  buildRequest,
  DEFAULT_REQUEST_FIELDS,
  type RequestDefaults,
  restartable,
  servableTokens,
} from './common.ts';
import type { DeclaredMaxTokens } from './declared.ts';
import type { RequestSource, Trace, TraceRecord, TwinRequest } from './types.ts';

/** How to replay a trace. */
export interface TraceRequestOptions {
  /**
   * Arrival-rate multiplier K: arrival times are divided by K (2 replays twice as fast, halving the
   * span; 0.5 doubles it). Default 1.
   */
  readonly rateScale?: number;
  /** Start of the slice in trace time (seconds from the trace's first record). Default 0. */
  readonly startS?: number;
  /**
   * Length of the slice in trace time, before scaling: records with arrival in
   * [startS, startS + durationS) are replayed. Default: to the end.
   */
  readonly durationS?: number;
  /** Stop after this many requests. */
  readonly maxRequests?: number;
  readonly model?: ModelId;
  readonly tenant?: TenantId;
  readonly priority?: number;
  readonly slo?: Slo;
  /** What each request declares as max_tokens. Default: DEFAULT_DECLARED_MAX_TOKENS. */
  readonly declaredMaxTokens?: DeclaredMaxTokens;
}

/** Index of the first record arriving at or after `ms` (records are sorted by arrival). */
export function firstAtOrAfter(records: readonly TraceRecord[], ms: number): number {
  let lo = 0;
  let hi = records.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if ((records[mid] as TraceRecord).arrivalMs < ms) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

function validate(o: TraceRequestOptions): void {
  const { rateScale, startS, durationS, maxRequests } = o;
  if (rateScale !== undefined && !(rateScale > 0 && Number.isFinite(rateScale))) {
    throw invalidArgument('rateScale', rateScale, 'a positive number');
  }
  if (startS !== undefined && !(startS >= 0 && Number.isFinite(startS))) {
    throw invalidArgument('startS', startS, 'a non-negative number of seconds');
  }
  if (durationS !== undefined && !(durationS > 0)) {
    throw invalidArgument('durationS', durationS, 'a positive number of seconds');
  }
  if (maxRequests !== undefined && !(Number.isSafeInteger(maxRequests) && maxRequests >= 0)) {
    throw invalidArgument('maxRequests', maxRequests, 'a non-negative integer');
  }
}

/**
 * The requests of a trace, in order, with ids `r0`, `r1`, … (numbered within the slice). Output
 * arrival = (record arrival - startS) / rateScale, so the slice starts at 0. A row with 0 prompt or
 * 0 output tokens is served with 1 (servableTokens). Re-iterable: each iteration replays from the
 * start.
 */
export function traceRequests(trace: Trace, options: TraceRequestOptions = {}): RequestSource {
  validate(options);
  const rateScale = options.rateScale ?? 1;
  const startMs = (options.startS ?? 0) * 1000;
  const endMs =
    options.durationS === undefined ? Number.POSITIVE_INFINITY : startMs + options.durationS * 1000;
  const maxRequests = options.maxRequests ?? Number.POSITIVE_INFINITY;
  const defaults: RequestDefaults = {
    model: options.model ?? DEFAULT_REQUEST_FIELDS.model,
    tenant: options.tenant ?? DEFAULT_REQUEST_FIELDS.tenant,
    priority: options.priority ?? DEFAULT_REQUEST_FIELDS.priority,
    slo: options.slo,
    declared: options.declaredMaxTokens ?? DEFAULT_REQUEST_FIELDS.declared,
  };
  const blockTokens = trace.blockTokens ?? NO_PREFIX.blockTokens;
  const records = trace.records;

  function* replay(): Generator<TwinRequest> {
    let n = 0;
    for (let i = firstAtOrAfter(records, startMs); i < records.length && n < maxRequests; i++, n++) {
      const r = records[i] as TraceRecord;
      if (r.arrivalMs >= endMs) return;
      const prefix: PrefixChain = r.hashIds.length === 0 ? NO_PREFIX : { blockTokens, hashes: r.hashIds };
      yield buildRequest(
        defaults,
        n,
        servableTokens(r.inputTokens),
        servableTokens(r.outputTokens),
        (r.arrivalMs - startMs) / rateScale,
        prefix,
        undefined,
      );
    }
  }
  return restartable(replay);
}
