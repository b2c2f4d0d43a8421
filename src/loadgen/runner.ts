/**
 * The open-loop runner: sends each planned request at its scheduled time whether or not earlier
 * ones have answered, up to a bound on outstanding requests. Beyond the bound, `wait` holds the
 * schedule until a slot frees (like vLLM's --max-concurrency; the delay shows as send lag) and
 * `drop` counts the request as failed with reason `dropped` and moves on. Either way the report
 * says how many requests hit the bound.
 */
import { setMaxListeners } from 'node:events';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { assert } from '../core/assert.ts';
import type { Attempt, CompletionCall, Endpoint } from './client.ts';
import { type ConcurrencyFacts, MetricsCollector, type RunDescription, type SloTargets } from './metrics.ts';
import { type BenchPriorityOrder, sentPriority } from './priority-order.ts';
import type { PromptSynth } from './prompts.ts';
import type { BenchPlan, BenchSummary, PlannedRequest, RequestRecord } from './types.ts';

/** What happens to a request due while every slot is taken. */
export const OVERFLOW_MODES = ['wait', 'drop'] as const;
export type OverflowMode = (typeof OVERFLOW_MODES)[number];

/** The one method of a client the runner needs (OpenAiClient, or a fake in tests). */
export interface Sender {
  send(call: CompletionCall, cancel?: AbortSignal): Promise<Attempt>;
}

/** Settings of one run. */
export interface RunSettings {
  readonly endpoint: Endpoint;
  readonly model: string;
  readonly stream: boolean;
  readonly ignoreEos: boolean;
  /** Bound on outstanding requests. */
  readonly maxConcurrency: number;
  readonly overflow: OverflowMode;
  readonly slo: SloTargets;
  readonly saveRequests: boolean;
  /** API keys by tenant name (--tenant-key): a request of such a tenant is sent with its key. */
  readonly tenantKeys?: ReadonlyMap<string, string> | undefined;
  /** The order the target reads a body's `priority` in (priority-order.ts); default `gateway`, as planned. */
  readonly priorityOrder?: BenchPriorityOrder | undefined;
}

/** Progress of a run, for a progress bar. */
export interface RunProgress {
  readonly sent: number;
  readonly done: number;
  readonly failed: number;
  readonly outstanding: number;
}

/** Hooks into a run. */
export interface RunHooks {
  /** Called after every send and every finished request. */
  readonly onProgress?: (p: RunProgress) => void;
  /** Stops the schedule and cancels outstanding requests; the summary covers what finished. */
  readonly signal?: AbortSignal;
  /** Monotonic clock in ms (performance.now by default). */
  readonly now?: () => number;
}

/** Sleeps shorter than this are skipped: a timer cannot be more precise. */
const SLEEP_MS_MIN = 1;

/**
 * Runs a plan against a sender and returns the summary. The run's duration goes from t = 0 of the
 * schedule to the last response.
 */
export async function runPlan(
  plan: BenchPlan,
  prompts: PromptSynth,
  sender: Sender,
  settings: RunSettings,
  run: RunDescription,
  hooks: RunHooks = {},
): Promise<BenchSummary> {
  assert(settings.maxConcurrency >= 1, 'maxConcurrency must be at least 1');
  const now = hooks.now ?? (() => performance.now());
  const metrics = new MetricsCollector(settings.slo, settings.saveRequests);
  const cancel = new AbortController();
  // Every outstanding request listens to `cancel`, and the slot wait and the schedule's sleep too.
  setMaxListeners(settings.maxConcurrency + 8, cancel.signal);
  const onAbort = (): void => cancel.abort();
  hooks.signal?.addEventListener('abort', onAbort, { once: true });
  if (hooks.signal?.aborted === true) cancel.abort();
  const inFlight = new Set<Promise<void>>();
  let slotWaiters: (() => void)[] = [];
  let scheduled = 0;
  let sent = 0;
  let peak = 0;
  let overLimit = 0;
  const progress = (): void =>
    hooks.onProgress?.({ sent, done: metrics.done, failed: metrics.failedCount, outstanding: inFlight.size });

  /** Resolves when a request finishes and frees its slot, or when the run is cancelled. */
  const waitForSlot = (): Promise<void> =>
    new Promise<void>((resolve) => {
      const done = (): void => {
        cancel.signal.removeEventListener('abort', done);
        resolve();
      };
      slotWaiters.push(done);
      cancel.signal.addEventListener('abort', done, { once: true });
    });

  const t0 = now();
  const priorityOrder = settings.priorityOrder ?? 'gateway';
  const launch = (item: PlannedRequest, sentMs: number): void => {
    const priority = sentPriority(priorityOrder, item.priority);
    const call: CompletionCall = {
      endpoint: settings.endpoint,
      model: item.model ?? settings.model,
      prompt: prompts.promptFor(item),
      maxTokens: item.outputTokens,
      stream: settings.stream,
      ignoreEos: settings.ignoreEos,
      ...(item.sessionId !== undefined ? { sessionId: item.sessionId } : {}),
      ...(priority !== undefined ? { priority } : {}),
      ...tenantKey(settings.tenantKeys, item.tenant),
    };
    const task = sender.send(call, cancel.signal).then((attempt) => {
      metrics.add(toRecord(item, sentMs, attempt));
      inFlight.delete(task);
      const waiter = slotWaiters.shift();
      waiter?.();
      progress();
    });
    inFlight.add(task);
    sent++;
    if (inFlight.size > peak) peak = inFlight.size;
    progress();
  };

  try {
    for (const item of plan.requests) {
      if (cancel.signal.aborted) break;
      const waitMs = t0 + item.atMs - now();
      if (waitMs >= SLEEP_MS_MIN) {
        try {
          await sleep(waitMs, undefined, { signal: cancel.signal });
        } catch {
          break;
        }
      }
      scheduled++;
      if (inFlight.size >= settings.maxConcurrency) {
        overLimit++;
        if (settings.overflow === 'drop') {
          metrics.add(droppedRecord(item, now() - t0));
          progress();
          continue;
        }
        await waitForSlot();
        if (cancel.signal.aborted) {
          scheduled--;
          break;
        }
      }
      launch(item, now() - t0);
    }
    while (inFlight.size > 0) await Promise.all(inFlight);
  } finally {
    hooks.signal?.removeEventListener('abort', onAbort);
    slotWaiters = [];
  }
  const facts: ConcurrencyFacts = {
    max: settings.maxConcurrency,
    overflow: settings.overflow,
    peak,
    overLimit,
  };
  return metrics.summary(run, now() - t0, scheduled, facts);
}

function toRecord(item: PlannedRequest, sentMs: number, a: Attempt): RequestRecord {
  return {
    index: item.index,
    scheduledMs: item.atMs,
    sentMs,
    ok: a.ok,
    reason: a.reason,
    status: a.status,
    error: a.error,
    ttftMs: a.ttftMs,
    e2eMs: a.e2eMs,
    itlMs: a.itlMs,
    inputTokens: a.promptTokens ?? item.inputTokens,
    maxTokens: item.outputTokens,
    outputTokens: a.outputTokens,
    outputTokensFrom: a.outputTokensFrom,
    ...(item.model !== undefined ? { model: item.model } : {}),
  };
}

function droppedRecord(item: PlannedRequest, atMs: number): RequestRecord {
  return {
    index: item.index,
    scheduledMs: item.atMs,
    sentMs: atMs,
    ok: false,
    reason: 'dropped',
    status: undefined,
    error: 'every slot of --max-concurrency was taken',
    ttftMs: undefined,
    e2eMs: undefined,
    itlMs: [],
    inputTokens: item.inputTokens,
    maxTokens: item.outputTokens,
    outputTokens: 0,
    outputTokensFrom: 'chunks',
    ...(item.model !== undefined ? { model: item.model } : {}),
  };
}

/** A tenant's API key as a call's `apiKey`; none (the run's key) for no tenant or one without a key. */
function tenantKey(
  keys: ReadonlyMap<string, string> | undefined,
  tenant: string | undefined,
): { apiKey?: string } {
  const key = tenant === undefined ? undefined : keys?.get(tenant);
  return key === undefined ? {} : { apiKey: key };
}
