import type { Request } from '../core/request.ts';

/**
 * A twin request: what the client sent (Request, with its declared maxTokens) plus the output length
 * the modelled engine will generate. `trueOutputTokens` is the twin's knowledge from the trace; only
 * the simulator reads it, to build the engine request. Policies take `Request` and live in a layer
 * that cannot import this type, so they never see it (see DESIGN.md, the twin rule).
 */
export interface TwinRequest extends Request {
  /** Output tokens the engine generates (the trace's length, cut at a declared cap). */
  readonly trueOutputTokens: number;
}

/**
 * A stream of requests in arrival order. Lazy, so that a million-request workload never sits in
 * memory at once. The simulator pulls one at a time.
 */
export type RequestSource = Iterable<TwinRequest>;

/** One row of a trace, before it becomes a Request. */
export interface TraceRecord {
  /** Arrival time relative to the trace start. */
  readonly arrivalMs: number;
  readonly inputTokens: number;
  readonly outputTokens: number;
  /** Prefix block ids (Mooncake `hash_ids`), each covering `blockTokens` tokens; empty when unknown. */
  readonly hashIds: readonly number[];
}

/** A parsed trace. */
export interface Trace {
  /** Where it came from (a path or a `sample:` name), for reports. */
  readonly source: string;
  readonly format: TraceFormat;
  /** Tokens per hash id (512 for Mooncake); undefined where the trace has no prefix ids. */
  readonly blockTokens: number | undefined;
  readonly records: readonly TraceRecord[];
}

export type TraceFormat = 'azure' | 'mooncake' | 'vidur';
