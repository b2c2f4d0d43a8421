/** The load generator's data: what to send when, what came back, and the summary of a run. */
import type { LatencyStats } from '../twin/report/types.ts';
import type { TokenSource } from './client.ts';

export type { LatencyStats };

/** One request of a plan, before its prompt is written. */
export interface PlannedRequest {
  /** Position in the plan, from 0; names the request's unique text. */
  readonly index: number;
  /** When to send it, in ms from the start of the run. */
  readonly atMs: number;
  /** Prompt length in tokens (prefix included). */
  readonly inputTokens: number;
  /** max_tokens to ask for. */
  readonly outputTokens: number;
  /** Prefix block ids (Mooncake hash_ids); empty when none. */
  readonly hashIds: readonly number[];
  /** Shared system-prompt group, for synthetic workloads with --prefix-groups. */
  readonly group: number | undefined;
  /** Tokens of the group prefix (0 without a group). */
  readonly prefixTokens: number;
  /**
   * Tokens each of `hashIds` covers, when it differs from the plan's default (a twin workload's
   * prefix chain: 16-token blocks for system prompts and sessions).
   */
  readonly blockTokens?: number | undefined;
  /** The model to ask for, when the workload names one per request (multi-model); else the run's. */
  readonly model?: string | undefined;
  /** The conversation this request belongs to (a twin `sessions` workload), sent as `x-session-id`. */
  readonly sessionId?: string | undefined;
  /**
   * The twin request's tenant, when not the twin's `default`: the gateway takes a tenant from the API
   * key, so it is sent as that tenant's key (`--tenant-key NAME=KEY`).
   */
  readonly tenant?: string | undefined;
  /** The twin request's priority, when not 0: sent as the body's `priority`, which the gateway reads. */
  readonly priority?: number | undefined;
}

/** A plan: the requests in send order (lazy), and what it is, for the report. */
export interface BenchPlan {
  /** How many requests the plan holds, when known in advance (for the progress bar). */
  readonly total: number | undefined;
  readonly requests: Iterable<PlannedRequest>;
  /** The workload as the JSON report shows it. */
  readonly workload: Readonly<Record<string, unknown>>;
  /**
   * True when the plan's requests name their own models (a multi-model workload, or a workload with
   * its own `model`): the run then needs no model of its own, and the report counts per model.
   */
  readonly ownModels?: boolean;
}

/** How one request ended. */
export interface RequestRecord {
  readonly index: number;
  /** Scheduled send time, ms from the start of the run. */
  readonly scheduledMs: number;
  /** Actual send time, ms from the start (later than scheduled when the client fell behind or waited for a slot). */
  readonly sentMs: number;
  readonly ok: boolean;
  /** Why it failed (see FAILURE_REASONS); undefined when ok. */
  readonly reason: string | undefined;
  /** The HTTP status, when a response arrived. */
  readonly status: number | undefined;
  /** A short error message from the server or the network, when failed. */
  readonly error: string | undefined;
  /** Time to the first content token, from the send. Undefined when none arrived. */
  readonly ttftMs: number | undefined;
  /** Send to the end of the response (undefined for requests never sent). */
  readonly e2eMs: number | undefined;
  /** Gaps between consecutive content chunks after the first. */
  readonly itlMs: readonly number[];
  /** Prompt tokens: from the server's usage, else the client's estimate. */
  readonly inputTokens: number;
  /** max_tokens asked for. */
  readonly maxTokens: number;
  /** Output tokens: from the server's usage, else the number of content chunks. */
  readonly outputTokens: number;
  /** Where outputTokens came from. */
  readonly outputTokensFrom: TokenSource;
  /** The model asked for, when the plan names one per request. */
  readonly model?: string;
}

/** One model's requests in a run whose requests name their models. */
export interface ModelCounts {
  /** Requests recorded (sent or dropped). */
  readonly requests: number;
  readonly completed: number;
  readonly failed: number;
}

/** The summary of a run: what the table shows and `--json` writes. */
export interface BenchSummary {
  readonly url: string;
  readonly endpoint: 'chat' | 'completions';
  readonly model: string;
  readonly stream: boolean;
  readonly seed: number;
  readonly workload: Readonly<Record<string, unknown>>;
  /** Wall time from the first scheduled send to the last response, in seconds. */
  readonly durationS: number;
  readonly requests: {
    /** Requests the plan scheduled before the run ended (all of them unless interrupted). */
    readonly scheduled: number;
    /** Requests put on the wire. */
    readonly sent: number;
    readonly completed: number;
    readonly failed: number;
  };
  /** Failed requests by reason (`http_503`, `http_429:SY_ERR_OVERLOADED`, `timeout`, ...). */
  readonly failures: Readonly<Record<string, number>>;
  readonly ttftMs: LatencyStats;
  readonly tpotMs: LatencyStats;
  readonly itlMs: LatencyStats;
  readonly e2eMs: LatencyStats;
  readonly throughput: {
    readonly requestsPerS: number;
    readonly outputTokensPerS: number;
    /** Prompt plus output tokens per second. */
    readonly totalTokensPerS: number;
    readonly inputTokens: number;
    readonly outputTokens: number;
    /** Completed requests whose output count came from the server's usage (the rest counted chunks). */
    readonly outputTokensFromUsage: number;
  };
  /** SLO targets and goodput; absent unless --slo-ttft-ms or --slo-tpot-ms was given. */
  readonly goodput:
    | {
        readonly sloTtftMs: number | undefined;
        readonly sloTpotMs: number | undefined;
        /** Completed requests meeting every given target. */
        readonly requestsMeeting: number;
        /** requestsMeeting / scheduled requests (failures count as missing). */
        readonly attainment: number;
        /** requestsMeeting / durationS: DistServe's goodput. */
        readonly requestsPerS: number;
      }
    | undefined;
  /** The client-side bound on outstanding requests and what it did. */
  readonly concurrency: {
    readonly max: number;
    readonly overflow: 'wait' | 'drop';
    /** Most requests outstanding at once. */
    readonly peak: number;
    /** Requests that found every slot taken (waited under `wait`, were dropped under `drop`). */
    readonly overLimit: number;
    /** How late requests went out against their schedule (client lag plus waiting for a slot). */
    readonly sendLagMs: LatencyStats;
  };
  /** Requests per model, when the plan's requests name their models (multi-model workloads). */
  readonly models?: Readonly<Record<string, ModelCounts>>;
  /** Per-request records, with --save-requests. */
  readonly records?: readonly RequestRecord[];
}
