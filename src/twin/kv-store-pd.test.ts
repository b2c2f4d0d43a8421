import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { routeTo } from '../core/decision.ts';
import type { ClusterView } from '../core/view.ts';
import { KV_LINKS, kvTransfer } from '../model/kv-link.ts';
import { perfModelFor } from '../model/perf.ts';
import { createPairPolicy, type PdPairPolicyName } from '../policies/disagg/pair.ts';
import type { RoutingPolicy } from '../policies/routing/types.ts';
import type { TwinRequest } from '../workload/types.ts';
import { toEngineConfig } from './config.ts';
import type { KvStoreOptions } from './kv-store.ts';
import {
  assertClose,
  GPU,
  kvStoreOf,
  MODEL,
  mooncakeSample,
  PREFIX_TOKENS,
  ROCE,
  runRecord,
  sameSeedJson,
  withPrefix,
} from './kv-store-test-support.ts';
import type { PdSettings } from './pd-host.ts';
import { runSimulation, type SimOptions } from './simulator.ts';

/**
 * A KV store on a P/D cluster (Mooncake's design: prefill instances fetch a prefix another prefill
 * instance holds), and a fetching request counted in its instance's `waiting` as vLLM counts it.
 */

const PERF = perfModelFor(GPU, MODEL, 1, undefined, { maxNumSeqs: toEngineConfig({}, GPU).maxNumSeqs });

// ---- the view's `waiting` counts a request while it fetches ----

interface Seen {
  waiting: number;
  running: number;
  kvUsage: number;
  pendingPrefillTokens: number;
}

/**
 * Sends each request to the instance named in `to` (by request id) and notes what the view showed
 * of instance i1 at each decision.
 */
function scripted(to: Readonly<Record<string, string>>, seen: Map<string, Seen>): RoutingPolicy {
  return {
    name: 'scripted',
    decide(view: ClusterView, request) {
      const i1 = view.instances.find((i) => i.id === 'i1');
      if (i1 !== undefined) {
        const { waiting, running, kvUsage, pendingPrefillTokens } = i1;
        seen.set(request.id, { waiting, running, kvUsage, pendingPrefillTokens });
      }
      return routeTo(to[request.id] as string);
    },
  };
}

for (const scrapeIntervalMs of [0, 1]) {
  test(`scrape ${scrapeIntervalMs} ms: an instance fetching a prefix shows the request waiting, as vLLM does`, () => {
    const seen = new Map<string, Seen>();
    // a fills i0 with the prefix; b goes to i1 and fetches it (about 25 ms over RoCE); c arrives 10.5 ms
    // into that fetch and looks at i1.
    const requests = [withPrefix('a', 0, 100), withPrefix('b', 10_000, 200), withPrefix('c', 10_010.5, 50)];
    const result = runSimulation(requests, {
      seed: 1,
      cluster: { groups: [{ count: 2, gpu: GPU, model: MODEL, tp: 1 }] },
      engine: toEngineConfig({ kvStore: ROCE }, GPU),
      policy: scripted({ a: 'i0', b: 'i1', c: 'i0' }, seen),
      slo: { ttftMs: 2000, tpotMs: 100 },
      workload: 'fetch waiting',
      scrapeIntervalMs,
    });
    const store = kvStoreOf(result);
    assert.equal(store.perInstance[1]?.fetches, 1, 'b fetched on i1');
    assert.ok((store.perInstance[1]?.fetchMs as number) > 10, 'c arrives while the fetch is in flight');
    const atC = seen.get('c') as Seen;
    // WAITING_FOR_REMOTE_KVS sits in vLLM's waiting queue: vllm:num_requests_waiting counts it.
    assert.equal(atC.waiting, 1, 'the fetching request is waiting');
    assert.equal(atC.running, 0, 'and not running');
    // Its blocks are allocated during the load, so the KV usage shows them, as vLLM's does.
    assert.ok(atC.kvUsage > 0);
    // The gateway's own accounting: b's whole prompt is sent and not yet answered.
    assert.equal(atC.pendingPrefillTokens, PREFIX_TOKENS + 200);
    // Before b, nothing waits there; after the run, no fetch is counted anywhere.
    assert.equal(seen.get('b')?.waiting, 0);
    assert.equal(result.summary.completed, 3);
  });
}

// ---- P/D: a prefill instance fetches what another prefill instance holds ----

/** A 2P+1D cluster under pair policy `pair`; engine store `kvStore` (undefined: none). */
function pdOptions(
  kvStore: KvStoreOptions | undefined,
  pair: PdPairPolicyName,
  prefillInstances = 2,
  decodeInstances = 1,
): SimOptions {
  const policy = createPairPolicy(pair, {}, { perfModel: () => PERF });
  const pd: PdSettings = {
    prefillInstances,
    decodeInstances,
    link: 'ib-400',
    decodePolicy: policy.decode,
    decodeAtArrival: policy.decodeAt === 'arrival',
    pdPolicy: pair,
  };
  return {
    seed: 1,
    cluster: { groups: [{ count: prefillInstances + decodeInstances, gpu: GPU, model: MODEL, tp: 1 }] },
    engine: toEngineConfig(kvStore === undefined ? {} : { kvStore }, GPU),
    policy: policy.prefill,
    slo: { ttftMs: 3000, tpotMs: 100 },
    workload: 'kv-store P/D',
    pd,
  };
}

/** The model's TTFT of a P/D request: what its prefill instance does, the hand-off, the decode's first step. */
function pdTtftMs(prefillMs: number, inputTokens: number): number {
  const handoffMs = kvTransfer(PERF.model, inputTokens, KV_LINKS['ib-400']).transferMs;
  return prefillMs + handoffMs + PERF.prefillTimeMs(1, inputTokens - 1);
}

test('2P+1D: prefill B fetches the 4k prefix prefill A holds; TTFT = fetch + rest + hand-off + first step', () => {
  // Round robin on the prefill pool: a to p0 (i0), b to p1 (i1); the one decode instance is i2.
  const requests = [withPrefix('a', 0, 100), withPrefix('b', 10_000, 200)];
  const result = runSimulation(requests, pdOptions(ROCE, 'round-robin'));
  const store = kvStoreOf(result);
  assert.deepEqual(
    store.perInstance.map((i) => [i.id, i.fetches, i.fetchedTokens]),
    [
      ['i0', 0, 0],
      ['i1', 1, PREFIX_TOKENS],
      ['i2', 0, 0],
    ],
  );
  const fetchMs = kvTransfer(PERF.model, PREFIX_TOKENS, KV_LINKS['roce-200']).transferMs;
  assert.equal(store.perInstance[1]?.fetchMs, fetchMs);
  const ttftA = pdTtftMs(PERF.prefillTimeMs(PREFIX_TOKENS + 100, 0), PREFIX_TOKENS + 100);
  const ttftB = pdTtftMs(fetchMs + PERF.prefillTimeMs(200, PREFIX_TOKENS), PREFIX_TOKENS + 200);
  // (The report's samples are sorted: b, fetching, now comes first.)
  const ttft = result.report.samples.ttftMs;
  assert.equal(ttft.length, 2);
  assertClose(ttft[0] as number, ttftB);
  assertClose(ttft[1] as number, ttftA);
  // The decode instance got the whole prompt by transfer both times: the P/D figures are unchanged.
  assert.equal(result.pd?.transfers, 2);
  assert.equal(result.pd?.remotePrefills, 2);
  // Prompt tokens computed, as the store counts them on the prefill side.
  assert.equal(store.promptTokensComputed, PREFIX_TOKENS + 100 + 200);
  assert.equal(result.summary.completed, 2);

  // Without the store B recomputes the prefix.
  const none = runSimulation(requests, pdOptions(undefined, 'round-robin'));
  assert.equal(none.kvStore, undefined);
  const noneB = pdTtftMs(PERF.prefillTimeMs(PREFIX_TOKENS + 200, 0), PREFIX_TOKENS + 200);
  assertClose(none.report.samples.ttftMs[0] as number, ttftA);
  assertClose(none.report.samples.ttftMs[1] as number, noneB);
  assert.ok(ttftB < noneB / 1.5, 'fetching 4k tokens beats computing them');
});

test('P/D: the store holds only the prefill pool: a prefix only a decode instance caches is not fetched', () => {
  // Dynamo's rule keeps a (768-token prefix X + 100, under its 1,000 uncached tokens) local on the
  // decode instance i2, so only i2 caches X; b (X + 2,000) goes to the prefill pool (i0), which has
  // no X and finds no prefill instance holding it: it computes all of b.
  const X = { blockTokens: 256, hashes: [41, 42, 43] };
  const request = (id: string, arrivalMs: number, inputTokens: number) =>
    ({ ...withPrefix(id, arrivalMs, 0), inputTokens, prefix: X }) as TwinRequest;
  const options = pdOptions(ROCE, 'round-robin');
  const result = runSimulation([request('a', 0, 868), request('b', 10_000, 2768)], {
    ...options,
    pd: { ...(options.pd as PdSettings), conditional: 'dynamo', decodeAtArrival: false },
  });
  assert.equal(result.summary.completed, 2);
  assert.equal(result.pd?.localPrefills, 1, 'a ran on the decode instance');
  assert.equal(result.pd?.remotePrefills, 1, 'b on the prefill pool');
  const store = kvStoreOf(result);
  assert.equal(store.fetches, 0, 'the decode instance is no holder');
  // a computed on i2 (a decode-local prefill counts), b all of its prompt on i0.
  assert.equal(store.promptTokens, 868 + 2768);
  assert.equal(store.promptTokensComputed, 868 + 2768);
});

test('P/D with a store: the same seed gives the same JSON', () => {
  const source = () => mooncakeSample(300, 7);
  for (const pair of ['mooncake', 'load-aware'] as const) {
    const one = runSimulation(source(), pdOptions(ROCE, pair, 4, 4));
    const two = runSimulation(source(), pdOptions(ROCE, pair, 4, 4));
    assert.ok(
      kvStoreOf(one).fetches > 0,
      `${pair}: the sample's prefixes are fetched across prefill instances`,
    );
    assert.equal(sameSeedJson(one), sameSeedJson(two));
  }
});

test('autoscaled P/D pools with a store: prefill instances the loop starts fetch; the same seed gives the same JSON', () => {
  const run = () => {
    const options = pdOptions(ROCE, 'load-aware', 4, 4);
    return runSimulation(mooncakeSample(300, 7), {
      ...options,
      pdPools: {
        startupMs: 5000,
        intervalMs: 2000,
        prefill: { autoscaler: 'slo-planner', minInstances: 1, maxInstances: 4, initialInstances: 1 },
        decode: { autoscaler: 'slo-planner', minInstances: 1, maxInstances: 4, initialInstances: 2 },
      },
    });
  };
  const one = run();
  const store = kvStoreOf(one);
  assert.ok(store.fetches > 0);
  // i0 is the one prefill instance at time 0; i1-i3 are prefill slots the loop started, i4-i7 decode.
  const ids = (from: number, to: number) =>
    store.perInstance.slice(from, to).reduce((n, i) => n + i.fetches, 0);
  assert.ok(ids(1, 4) > 0, `prefill instances the loop added fetch (${JSON.stringify(store.perInstance)})`);
  assert.equal(ids(4, 8), 0, 'decode instances have no store');
  assert.ok((one.pdPools?.prefill.coldStarts ?? 0) > 0);
  assert.equal(one.summary.completed, one.summary.requests);
  assert.equal(sameSeedJson(one), sameSeedJson(run()));
});

/**
 * A store-less P/D replay of the Mooncake sample (4P+4D, three pairs): summary without wall-clock
 * fields, the decision digest, a digest of the report's samples and series.
 */
function storelessPdRecord(): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const pair of ['mooncake', 'load-aware', 'prefix-aware'] as const) {
    const source = mooncakeSample(600, 1);
    const result = runSimulation(source, pdOptions(undefined, pair, 4, 4));
    out[pair] = runRecord(result);
  }
  return JSON.parse(JSON.stringify(out));
}

test('a store-less P/D run gives the output recorded before stores were allowed with P/D', () => {
  const recorded = JSON.parse(readFileSync(new URL('./fixtures/storeless-pd.json', import.meta.url), 'utf8'));
  assert.deepEqual(storelessPdRecord(), recorded);
});

/** Writes the fixture: `RECORD_STORELESS_PD=1 node --import tsx --test src/twin/kv-store-pd.test.ts`. */
if (process.env.RECORD_STORELESS_PD === '1') {
  const { writeFileSync } = await import('node:fs');
  writeFileSync(
    new URL('./fixtures/storeless-pd.json', import.meta.url),
    `${JSON.stringify(storelessPdRecord(), null, 2)}\n`,
  );
}
