/**
 * The body parse that parse-pool.ts runs on a worker thread: decoding, JSON.parse and the routing
 * fields (prefix chain included) of one large body, the work that otherwise blocks the gateway's
 * event loop for tens of milliseconds per 8 MB body. It runs the very function the main thread runs
 * (`parseBodyFields`), so both give the same fields and the same errors; only the shape crossing the
 * thread boundary differs (see ParseReply).
 */
import { SwitchyardError } from '../core/errors.ts';
import type { ExchangeKind } from './proxy.ts';
import { type BodyFields, parseBodyFields } from './request-build.ts';

/** One body to parse: its kind and bytes (a copy, or a view of shared memory). */
export interface ParseTask {
  readonly kind: ExchangeKind;
  readonly body: Uint8Array;
}

/**
 * What a worker answers. Fields travel flat, the prefix chain's hashes as one Float64Array (a single
 * copy, every number kept exactly) rather than an array of 16,384 numbers to clone one by one. A
 * handled error travels as its code, message and details, for the main thread to rebuild the same
 * SwitchyardError; anything else thrown (a bug) rejects the task.
 */
export type ParseReply =
  | (Omit<BodyFields, 'prefix'> & {
      readonly ok: true;
      /** The prefix chain, flattened to cross the thread boundary (BodyFields['prefix'] rebuilt). */
      readonly blockTokens: number;
      readonly hashes: Float64Array;
      readonly exact: boolean | undefined;
    })
  | {
      readonly ok: false;
      readonly code: SwitchyardError['code'];
      readonly message: string;
      readonly details: Readonly<Record<string, unknown>> | undefined;
    };

/** Parses one body (piscina calls the default export with each task). */
export default function parseTask(task: ParseTask): ParseReply {
  const body = Buffer.from(task.body.buffer, task.body.byteOffset, task.body.byteLength);
  try {
    const f = parseBodyFields(task.kind, body);
    return {
      ok: true,
      model: f.model,
      inputTokens: f.inputTokens,
      inputTokensCapped: f.inputTokensCapped,
      generations: f.generations,
      maxTokens: f.maxTokens,
      stream: f.stream,
      priority: f.priority,
      user: f.user,
      blockTokens: f.prefix.blockTokens,
      hashes: Float64Array.from(f.prefix.hashes),
      exact: f.prefix.exact,
    };
  } catch (error) {
    if (!(error instanceof SwitchyardError)) throw error;
    return { ok: false, code: error.code, message: error.message, details: error.details };
  }
}
