/**
 * The gateway's counters and their Prometheus exposition. The hot path only bumps plain numbers
 * (and observes two label-less histograms); prom-client reads the numbers when /metrics is scraped.
 *
 * The invariant a test checks: accepted = completed + sum(failed) + inFlight, at every moment.
 * "Accepted" means it passed parsing, authentication and the model check and was not refused by
 * admission (refusals before that point are `rejected{code}`), or it was held for a model at zero
 * engines (it fails, rather than being rejected, if it leaves the buffer other than to admission).
 */
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { ErrorCode } from '../core/errors.ts';
import type { LiveView } from './live-view.ts';

/** Why an accepted request failed: the error code's name in lower case, or client_abort. */
export type FailureReason = string;

/** The failure reason of an error code: SY_ERR_UPSTREAM -> upstream. */
export function reasonOf(code: ErrorCode): FailureReason {
  return code.slice('SY_ERR_'.length).toLowerCase();
}

/**
 * How a vLLM tokenizer-route request (/tokenize, /detokenize, /tokenizer_info; tokenize-route.ts)
 * ended: `ok`, the backend's 2xx relayed; `backend_error`, its non-2xx relayed (an SGLang backend's
 * 404, the sim's /detokenize 400); `rejected`, refused by the gateway before any backend (bad body,
 * model not served, no API key, no healthy instance, shutting down: also in `rejected{code}`);
 * `failed`, the backend gave no answer (connection error, timeout, a cut answer).
 */
export type TokenizerOutcome = 'ok' | 'backend_error' | 'rejected' | 'failed';

/** Plain counters, updated on the hot path. */
export class GatewayStats {
  accepted = 0;
  completed = 0;
  failedTotal = 0;
  readonly failed = new Map<FailureReason, number>();
  readonly rejected = new Map<ErrorCode, number>();
  retries = 0;
  /**
   * Client connections closed with 408 at the head timeout before they sent a byte: no request
   * came, so they are not in `rejected` (client-errors.ts).
   */
  idleConnectionsTimedOut = 0;
  /**
   * Tokenizer-route requests by route, then outcome. They generate nothing and are never accepted,
   * so they stay out of accepted/completed/failed (their refusals are in `rejected` too).
   */
  readonly tokenizer = new Map<string, Map<TokenizerOutcome, number>>();
  /** Requests held in the admission queue (part of inFlight). */
  queued = 0;
  /**
   * Requests held in the scale-from-zero buffer (model-buffer.ts) while their model's engine starts:
   * accepted when held, so part of inFlight, and waiting for an instance, so part of `queuedTotal`.
   */
  held = 0;

  /** Requests waiting for an instance: in the admission queue or the scale-from-zero buffer. */
  get queuedTotal(): number {
    return this.queued + this.held;
  }

  /** Accepted and not yet completed or failed (queued and held ones included). */
  get inFlight(): number {
    return this.accepted - this.completed - this.failedTotal;
  }

  fail(reason: FailureReason): void {
    this.failedTotal++;
    this.failed.set(reason, (this.failed.get(reason) ?? 0) + 1);
  }

  reject(code: ErrorCode): void {
    this.rejected.set(code, (this.rejected.get(code) ?? 0) + 1);
  }

  /** One tokenizer-route request on `route` ended with `outcome`. */
  tokenizerRequest(route: string, outcome: TokenizerOutcome): void {
    let byOutcome = this.tokenizer.get(route);
    if (byOutcome === undefined) {
      byOutcome = new Map();
      this.tokenizer.set(route, byOutcome);
    }
    byOutcome.set(outcome, (byOutcome.get(outcome) ?? 0) + 1);
  }

  /** The JSON form served by /stats and /admin/stats. */
  toJSON(): Record<string, unknown> {
    return {
      accepted: this.accepted,
      completed: this.completed,
      failed: Object.fromEntries([...this.failed].sort(([a], [b]) => (a < b ? -1 : 1))),
      failedTotal: this.failedTotal,
      idleConnectionsTimedOut: this.idleConnectionsTimedOut,
      inFlight: this.inFlight,
      queued: this.queuedTotal,
      rejected: Object.fromEntries([...this.rejected].sort(([a], [b]) => (a < b ? -1 : 1))),
      retries: this.retries,
      tokenizer: Object.fromEntries(
        [...this.tokenizer]
          .sort(([a], [b]) => (a < b ? -1 : 1))
          .map(([route, byOutcome]) => [
            route,
            Object.fromEntries([...byOutcome].sort(([a], [b]) => (a < b ? -1 : 1))),
          ]),
      ),
    };
  }
}

const LATENCY_BUCKETS_S = [
  0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300,
];

/** The Prometheus side: a registry of its own (several gateways may share a process in tests). */
export class GatewayMetrics {
  readonly registry = new Registry();
  readonly ttftSeconds: Histogram;
  readonly e2eSeconds: Histogram;

  constructor(stats: GatewayStats, view: LiveView, policyName: () => string) {
    const registry = this.registry;
    const p = 'switchyard_gateway_';
    const counter = (name: string, help: string, value: () => number): void => {
      new Counter({
        name: p + name,
        help,
        registers: [registry],
        collect() {
          this.reset();
          this.inc(value());
        },
      });
    };
    counter(
      'requests_accepted_total',
      'Requests accepted (past parsing, auth and admission)',
      () => stats.accepted,
    );
    counter('requests_completed_total', 'Accepted requests that completed', () => stats.completed);
    counter('retries_total', 'Upstream attempts retried on another instance', () => stats.retries);
    counter(
      'idle_connections_timed_out_total',
      'Client connections closed with 408 at the head timeout before sending a byte (no request: not in requests_rejected_total)',
      () => stats.idleConnectionsTimedOut,
    );
    new Counter({
      name: `${p}requests_failed_total`,
      help: 'Accepted requests that failed, by reason',
      labelNames: ['reason'],
      registers: [registry],
      collect() {
        this.reset();
        for (const [reason, n] of stats.failed) this.inc({ reason }, n);
      },
    });
    new Counter({
      name: `${p}requests_rejected_total`,
      help: 'Requests refused before acceptance, by error code',
      labelNames: ['code'],
      registers: [registry],
      collect() {
        this.reset();
        for (const [code, n] of stats.rejected) this.inc({ code }, n);
      },
    });
    new Counter({
      name: `${p}tokenizer_requests_total`,
      help:
        "vLLM's tokenizer routes (/tokenize, /detokenize, /tokenizer_info), by route and outcome: ok (the backend's 2xx relayed), " +
        'backend_error (its non-2xx relayed), rejected (refused by the gateway; also in requests_rejected_total), failed (no answer from the backend; when none came at all, its 502 is also in requests_rejected_total)',
      labelNames: ['route', 'outcome'],
      registers: [registry],
      collect() {
        this.reset();
        for (const [route, byOutcome] of stats.tokenizer)
          for (const [outcome, n] of byOutcome) this.inc({ route, outcome }, n);
      },
    });
    new Gauge({
      name: `${p}requests_in_flight`,
      help: 'Accepted requests not yet finished (queued and scale-from-zero held included)',
      registers: [registry],
      collect() {
        this.set(stats.inFlight);
      },
    });
    new Gauge({
      name: `${p}requests_queued`,
      help: 'Requests waiting for an instance: in the admission queue or the scale-from-zero buffer',
      registers: [registry],
      collect() {
        this.set(stats.queuedTotal);
      },
    });
    new Gauge({
      name: `${p}routing_policy_info`,
      help: 'The active routing policy (value 1)',
      labelNames: ['policy'],
      registers: [registry],
      collect() {
        this.reset();
        this.set({ policy: policyName() }, 1);
      },
    });
    const perInstance = (name: string, help: string, value: (i: LiveView['instances'][number]) => number) => {
      new Gauge({
        name: `${p}instance_${name}`,
        help,
        labelNames: ['instance'],
        registers: [registry],
        collect() {
          this.reset();
          const nowMs = performance.now();
          view.at(nowMs);
          for (const i of view.instances) this.set({ instance: i.id }, value(i));
        },
      });
    };
    perInstance(
      'in_flight',
      'Requests the gateway sent to the instance and not yet finished',
      (i) => i.inFlight,
    );
    perInstance(
      'running',
      'Sequences running in the engine (scraped; host accounting when stale)',
      (i) => i.running,
    );
    perInstance('waiting', 'Sequences queued in the engine (scraped; 0 when stale)', (i) => i.waiting);
    perInstance('kv_usage', 'Engine KV-cache usage, 0..1 (scraped)', (i) => i.kvUsage);
    perInstance(
      'pending_prefill_tokens',
      'Input tokens sent and awaiting a first byte',
      (i) => i.pendingPrefillTokens,
    );
    perInstance('prefix_hit_rate', 'Engine prefix-cache hit rate, 0..1 (scraped)', (i) => i.prefixHitRate);
    perInstance('healthy', '1 when the instance takes traffic (health checks)', (i) => (i.healthy ? 1 : 0));
    perInstance('draining', '1 when the instance is drained through the admin API', (i) =>
      i.draining ? 1 : 0,
    );
    perInstance('signals_stale', '1 when scraped signals are stale and host accounting stands in', (i) =>
      i.stale ? 1 : 0,
    );
    this.ttftSeconds = new Histogram({
      name: `${p}ttft_seconds`,
      help: 'Time from request arrival to the first body byte from the engine',
      buckets: LATENCY_BUCKETS_S,
      registers: [registry],
    });
    this.e2eSeconds = new Histogram({
      name: `${p}e2e_seconds`,
      help: 'Time from request arrival to the last byte (completed requests)',
      buckets: LATENCY_BUCKETS_S,
      registers: [registry],
    });
  }
}
