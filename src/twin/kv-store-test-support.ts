/**
 * Fixtures shared by the KV-store tests (kv-store.test.ts: colocated; kv-store-pd.test.ts: P/D):
 * the model and GPU they run, a request behind one shared 4k-token prefix, and the record a
 * store-less run is compared against. Test code only.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import type { ControlContext, ControlLoop } from '../control/types.ts';
import { singleVariantDecision } from '../control/types.ts';
import { routeTo } from '../core/decision.ts';
import { Rng } from '../core/rng.ts';
import type { RoutingPolicy } from '../policies/routing/types.ts';
import { createWorkload } from '../workload/create.ts';
import type { TwinRequest } from '../workload/types.ts';
import type { ControlSettings } from './control-host.ts';
import type { KvStoreOptions, KvStoreOutcome } from './kv-store.ts';
import { summaryToJson } from './report/json.ts';
import type { SimResult } from './simulator.ts';

export const GPU = 'h100';
export const MODEL = 'llama-3.1-8b';
/** Tokens of the prefix every `withPrefix` request shares. */
export const PREFIX_TOKENS = 4096;
export const ROCE: KvStoreOptions = { kind: 'peer', link: 'roce-200' };

/** A request whose prompt starts with the shared 4k-token prefix (8 chain blocks of 512 tokens). */
export function withPrefix(id: string, arrivalMs: number, ownTokens: number): TwinRequest {
  return {
    id,
    model: MODEL,
    tenant: 't',
    priority: 0,
    inputTokens: PREFIX_TOKENS + ownTokens,
    maxTokens: 4,
    trueOutputTokens: 4,
    arrivalMs,
    slo: undefined,
    prefix: { blockTokens: 512, hashes: [11, 12, 13, 14, 15, 16, 17, 18] },
    sessionId: undefined,
  } as TwinRequest;
}

/** The run's store outcome, which a run with a store must report. */
export function kvStoreOf(result: SimResult): KvStoreOutcome {
  assert.ok(result.kvStore !== undefined, 'a run with a store reports it');
  return result.kvStore;
}

export function assertClose(actual: number, expected: number): void {
  assert.ok(Math.abs(actual - expected) < 1e-6, `${actual} != ${expected}`);
}

/** What a recorded run keeps: the summary without wall clock, the decision digest, the report's hash. */
export function runRecord(result: SimResult): Record<string, unknown> {
  const { summary: _s, ...report } = result.report;
  return {
    summary: summaryToJson(result.summary, { wallClock: false }),
    decisionDigest: result.decisionDigest,
    reportSha256: createHash('sha256').update(JSON.stringify(report)).digest('hex'),
  };
}

/** Sends each request to the instance named in `to` by its id. */
export function routedBy(to: Readonly<Record<string, string>>): RoutingPolicy {
  return { name: 'routed-by-id', decide: (_view, request) => routeTo(to[request.id] as string) };
}

/**
 * A colocated control block over `maxInstances` slots whose loop wants `plan(nowMs)` instances,
 * asked every second; starts take `startupMs`; `initialInstances` are ready at time 0.
 */
export function scriptedControl(
  plan: (nowMs: number) => number,
  maxInstances: number,
  initialInstances: number,
  startupMs = 0,
): ControlSettings {
  return {
    autoscaler: 'scripted',
    create: (context: ControlContext): ControlLoop => ({
      name: 'scripted',
      decide: (o) => singleVariantDecision(context, plan(o.nowMs), 'script'),
    }),
    minInstances: 1,
    maxInstances,
    initialInstances,
    intervalMs: 1000,
    startupMs,
  };
}

/** The first `maxRequests` of the committed Mooncake conversation sample, drawn with `seed`. */
export function mooncakeSample(maxRequests: number, seed: number): Iterable<TwinRequest> {
  return createWorkload(
    { kind: 'trace', trace: 'sample:mooncake-conversation', maxRequests },
    new Rng(seed).fork('workload'),
  );
}

/** A run as same-seed comparisons read it: the summary without wall-clock fields, and the decision digest. */
export function sameSeedJson(r: SimResult): string {
  return JSON.stringify({
    summary: summaryToJson(r.summary, { wallClock: false }),
    digest: r.decisionDigest,
  });
}
