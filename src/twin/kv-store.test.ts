import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { serverlessFromFlags } from '../cli/sim-serverless.ts';
import type { EngineConfig } from '../engine-core/types.ts';
import { KV_LINKS, kvTransfer } from '../model/kv-link.ts';
import { perfModelFor } from '../model/perf.ts';
import { createRoutingPolicy } from '../policies/routing/registry.ts';
import type { TwinRequest } from '../workload/types.ts';
import { engineOptionsSchema, parseWithSchema, toEngineConfig } from './config.ts';
import type { KvStoreOptions } from './kv-store.ts';
import {
  assertClose,
  GPU,
  kvStoreOf,
  MODEL,
  mooncakeSample,
  PREFIX_TOKENS,
  ROCE,
  routedBy,
  runRecord,
  sameSeedJson,
  scriptedControl,
  withPrefix,
} from './kv-store-test-support.ts';
import { type PlacementSettings, placementCluster } from './placement-host.ts';
import { summaryToJson } from './report/json.ts';
import { runTwin } from './run.ts';
import { serverlessTwinSettings } from './serverless-test-support.ts';
import { type PrefixCacheMode, runSimulation, type SimOptions, type SimResult } from './simulator.ts';

/**
 * An engine with a KV store (`engine.kvStore`) loads a longer prefix another instance caches instead
 * of computing it; without one it recomputes, and a store-less run is what the twin ran before.
 */

/**
 * Two instances, round robin: `a` runs on i0 and is done long before `b`, with the same prefix,
 * arrives and goes to i1.
 */
function twoInstances(kvStore: KvStoreOptions | undefined, mode: PrefixCacheMode = 'runs'): SimResult {
  const engine = toEngineConfig(kvStore === undefined ? {} : { kvStore }, GPU);
  return runSimulation([withPrefix('a', 0, 100), withPrefix('b', 10_000, 200)], {
    seed: 1,
    cluster: { groups: [{ count: 2, gpu: GPU, model: MODEL, tp: 1 }] },
    engine,
    policy: createRoutingPolicy('round-robin'),
    slo: { ttftMs: 2000, tpotMs: 100 },
    workload: 'kv-store test',
    prefixCache: mode,
  });
}

/** The engines' perf model, as the twin builds it for this engine config. */
function perfOf(engine: EngineConfig) {
  return perfModelFor(GPU, MODEL, 1, undefined, { maxNumSeqs: engine.maxNumSeqs });
}

for (const mode of ['runs', 'blocks', 'blocks-32bit'] as const) {
  test(`${mode}: with a store, B loads the 4k prefix A holds: TTFT = transfer + prefill of the rest`, () => {
    const perf = perfOf(toEngineConfig({}, GPU));
    const result = twoInstances(ROCE, mode);
    const store = kvStoreOf(result);
    assert.equal(store.fetches, 1);
    assert.equal(store.fetchedTokens, PREFIX_TOKENS);
    assert.deepEqual(
      store.perInstance.map((i) => [i.id, i.fetches, i.fetchedTokens]),
      [
        ['i0', 0, 0],
        ['i1', 1, PREFIX_TOKENS],
      ],
    );
    const transferMs = kvTransfer(perf.model, PREFIX_TOKENS, KV_LINKS['roce-200']).transferMs;
    assert.ok(transferMs > 1, `a 4k-token fetch over 200 Gb/s takes ms (${transferMs})`);
    assert.equal(store.perInstance[1]?.fetchMs, transferMs);
    // a prefills its whole prompt; b only the 200 tokens past the fetched prefix, after the fetch.
    const ttftA = perf.prefillTimeMs(PREFIX_TOKENS + 100, 0);
    const ttftB = transferMs + perf.prefillTimeMs(200, PREFIX_TOKENS);
    const ttft = result.report.samples.ttftMs;
    assert.equal(ttft.length, 2);
    assertClose(Math.min(...ttft), Math.min(ttftA, ttftB));
    assertClose(Math.max(...ttft), Math.max(ttftA, ttftB));
    assert.ok(ttftB < ttftA, 'fetching 4k tokens beats computing them here');
    // b computes 200 prompt tokens instead of 4,296; a fetch is not a prefix-cache hit.
    assert.equal(store.promptTokens, 2 * PREFIX_TOKENS + 300);
    assert.equal(store.promptTokensComputed, PREFIX_TOKENS + 100 + 200);
    assert.equal(result.summary.prefixHitRate, 0);
    assert.equal(result.summary.completed, 2);
  });

  test(`${mode}: without a store, B recomputes the prefix A holds`, () => {
    const perf = perfOf(toEngineConfig({}, GPU));
    const result = twoInstances(undefined, mode);
    assert.equal(result.kvStore, undefined);
    assert.equal('kvStore' in result.summary, false);
    const ttft = [...result.report.samples.ttftMs].sort((x, y) => x - y);
    assertClose(ttft[0] as number, perf.prefillTimeMs(PREFIX_TOKENS + 100, 0));
    assertClose(ttft[1] as number, perf.prefillTimeMs(PREFIX_TOKENS + 200, 0));
  });
}

test('a prefix B already holds is not fetched; a gain under minTokens is not fetched', () => {
  // b goes to i1 (round robin), then c with the same prefix to i0, which holds it: no fetch there.
  const engine = toEngineConfig({ kvStore: ROCE }, GPU);
  const run = (kvStore: KvStoreOptions) =>
    runSimulation([withPrefix('a', 0, 100), withPrefix('b', 10_000, 200), withPrefix('c', 20_000, 300)], {
      seed: 1,
      cluster: { groups: [{ count: 2, gpu: GPU, model: MODEL, tp: 1 }] },
      engine: { ...engine, kvStore },
      policy: createRoutingPolicy('round-robin'),
      slo: { ttftMs: 2000, tpotMs: 100 },
      workload: 'kv-store test',
    });
  const store = kvStoreOf(run(ROCE));
  assert.equal(store.fetches, 1, 'only b fetches; c finds the prefix at home');
  assert.equal(store.perInstance[0]?.fetches, 0);
  const high = kvStoreOf(run({ ...ROCE, minTokens: PREFIX_TOKENS + 1 }));
  assert.equal(high.fetches, 0, 'a 4,096-token gain is under minTokens 4,097');
  // b recomputes the prefix; c hits it at home on i0.
  assert.equal(high.promptTokensComputed, PREFIX_TOKENS + 100 + (PREFIX_TOKENS + 200) + 300);
});

/**
 * Two instances, round robin: a on i0 at 0, then b at 10 s on i1, which fetches a's prefix from i0;
 * `instance` crashes 5 ms into that fetch (for 60 s).
 */
function crashDuringFetch(instance: 'i0' | 'i1'): SimResult {
  return runSimulation([withPrefix('a', 0, 100), withPrefix('b', 10_000, 200)], {
    seed: 1,
    cluster: { groups: [{ count: 2, gpu: GPU, model: MODEL, tp: 1 }] },
    engine: toEngineConfig({ kvStore: ROCE }, GPU),
    policy: createRoutingPolicy('round-robin'),
    slo: { ttftMs: 2000, tpotMs: 100 },
    workload: `kv-store crash of ${instance}`,
    faults: [{ kind: 'crash', instance, atMs: 10_005, durationMs: 60_000 }],
  });
}

test('an engine that crashes while fetching: the request is retried elsewhere, the fetch dropped', () => {
  // b's fetch to i1 takes about 25 ms; i1 dies 5 ms into it.
  const result = crashDuringFetch('i1');
  assert.equal(kvStoreOf(result).fetches, 1);
  assert.equal(kvStoreOf(result).failedFetches, 0, 'its own engine died, not the holder');
  assert.equal(result.summary.completed, 2);
  assert.equal(result.summary.reliability?.retried, 1);
  // The retry went to i0, which holds the prefix itself: a prefix-cache hit there, no second fetch.
  assert.ok(result.summary.prefixHitRate > 0);
});

test('the holder crashes during a fetch: the fetch fails and the request recomputes its prompt where it is', () => {
  const perf = perfOf(toEngineConfig({}, GPU));
  // b's fetch from i0 takes about 25 ms; i0 (idle, a long done) dies 5 ms into it.
  const result = crashDuringFetch('i0');
  const store = kvStoreOf(result);
  assert.equal(store.fetches, 1);
  assert.equal(store.failedFetches, 1, 'the fetch failed with its holder');
  assert.deepEqual(
    store.perInstance.map((i) => [i.id, i.fetches, i.failedFetches]),
    [
      ['i0', 0, 0],
      ['i1', 1, 1],
    ],
  );
  assert.equal(result.summary.completed, 2);
  assert.equal(result.summary.reliability?.retried, 0, 'b stays on i1');
  // b computes its whole prompt on i1 from the crash on: nothing imported.
  assert.equal(store.promptTokensComputed, PREFIX_TOKENS + 100 + PREFIX_TOKENS + 200);
  const ttftB = Math.max(...result.report.samples.ttftMs);
  assertClose(ttftB, 5 + perf.prefillTimeMs(PREFIX_TOKENS + 200, 0));
});

test('the same seed gives the same JSON with a store', () => {
  const source = () => mooncakeSample(300, 7);
  const options = {
    seed: 7,
    cluster: { groups: [{ count: 4, gpu: GPU, model: MODEL, tp: 1 }] },
    engine: toEngineConfig({ kvStore: ROCE }, GPU),
    slo: { ttftMs: 2000, tpotMs: 100 },
    workload: 'kv-store determinism',
  };
  const one = runSimulation(source(), { ...options, policy: createRoutingPolicy('least-request') });
  const two = runSimulation(source(), { ...options, policy: createRoutingPolicy('least-request') });
  assert.ok(kvStoreOf(one).fetches > 0, 'the sample shares prefixes across instances');
  assert.equal(sameSeedJson(one), sameSeedJson(two));
  assert.match(sameSeedJson(one), /"kvStore":\{"failedFetches":0,"fetchMsMax":/);
});

test('engine.kvStore is validated: unknown kind, link or key refused, naming the path', () => {
  const parse = (engine: unknown) => parseWithSchema(engineOptionsSchema, engine, 'engine');
  assert.deepEqual(parse({ kvStore: { kind: 'peer', link: 'ib-400', minTokens: 512 } }).kvStore, {
    kind: 'peer',
    link: 'ib-400',
    minTokens: 512,
  });
  assert.ok(parse({ kvStore: { kind: 'peer', link: { gbps: 50, latencyUs: 30 } } }).kvStore);
  assert.throws(() => parse({ kvStore: { kind: 'disk', link: 'ib-400' } }), /kvStore\.kind/);
  assert.throws(() => parse({ kvStore: { kind: 'peer', link: 'carrier-pigeon' } }), /kvStore\.link/);
  assert.throws(() => parse({ kvStore: { kind: 'peer', link: 'ib-400', size: 1 } }), /kvStore/);
  assert.throws(() => parse({ kvStore: { kind: 'peer', link: 'ib-400', minTokens: 0 } }), /minTokens/);
});

test('a store-less run gives the output recorded before the store existed', () => {
  const recorded = JSON.parse(
    readFileSync(new URL('./fixtures/storeless-mooncake.json', import.meta.url), 'utf8'),
  );
  assert.deepEqual(storelessRecord(), recorded);
});

test('a store that never fetches (minTokens past every prompt) runs as no store', () => {
  const run = (kvStore: KvStoreOptions | undefined) => {
    const result = runSimulation(mooncakeSample(400, 3), {
      seed: 3,
      cluster: { groups: [{ count: 4, gpu: GPU, model: MODEL, tp: 1 }] },
      engine: toEngineConfig(kvStore === undefined ? {} : { kvStore }, GPU),
      policy: createRoutingPolicy('least-request'),
      slo: { ttftMs: 2000, tpotMs: 100 },
      workload: 'never fetches',
    });
    const { kvStore: _k, ...summary } = summaryToJson(result.summary, { wallClock: false });
    return { json: JSON.stringify({ summary, digest: result.decisionDigest }), kvStore: result.kvStore };
  };
  const never = run({ ...ROCE, minTokens: 10_000_000 });
  assert.equal(never.kvStore?.fetches, 0);
  assert.ok((never.kvStore?.promptTokensComputed ?? 0) > 0);
  assert.equal(never.json, run(undefined).json);
});

// ---- a store on an autoscaled colocated pool (control) ----

test('autoscaled (kpa): instances the loop starts fetch from older ones; the same seed gives the same JSON', () => {
  const run = () =>
    runSimulation(mooncakeSample(600, 7), {
      seed: 7,
      cluster: { groups: [{ count: 4, gpu: GPU, model: MODEL, tp: 1 }] },
      engine: toEngineConfig({ kvStore: ROCE }, GPU),
      policy: createRoutingPolicy('least-request'),
      slo: { ttftMs: 2000, tpotMs: 100 },
      workload: 'kv-store autoscaled',
      control: {
        autoscaler: 'kpa',
        minInstances: 1,
        maxInstances: 4,
        initialInstances: 1,
        startupMs: 5000,
        intervalMs: 2000,
      },
    });
  const one = run();
  assert.ok((one.coldStarts ?? 0) > 0, 'the loop started instances');
  const store = kvStoreOf(one);
  // i0 is the one instance at time 0; every other one was started by the loop, with its connector.
  const added = store.perInstance.slice(1).reduce((n, i) => n + i.fetches, 0);
  assert.ok(added > 0, `instances the loop added fetch (${JSON.stringify(store.perInstance)})`);
  assert.equal(one.summary.completed, one.summary.requests);
  assert.equal(sameSeedJson(one), sameSeedJson(run()));
});

/** Two slots, both ready at 0, a to i1 and b to i0; the loop wants `plan(nowMs)` instances. */
function scaledDown(plan: (nowMs: number) => number, bArrivalMs: number): SimResult {
  return runSimulation([withPrefix('a', 0, 100), withPrefix('b', bArrivalMs, 200)], {
    seed: 1,
    cluster: { groups: [{ count: 2, gpu: GPU, model: MODEL, tp: 1 }] },
    engine: toEngineConfig({ kvStore: ROCE }, GPU),
    policy: routedBy({ a: 'i1', b: 'i0' }),
    slo: { ttftMs: 2000, tpotMs: 100 },
    workload: 'kv-store scale-down',
    control: scriptedControl(plan, 2, 2),
  });
}

test('a holder the loop stopped is not read: the prefix only it held is computed', () => {
  // a leaves the prefix on i1; at 5 s the loop drains i1 (idle: it stops at once); b on i0 at 10 s.
  const stopped = scaledDown((t) => (t >= 5000 ? 1 : 2), 10_000);
  assert.equal(stopped.coldStarts, 0);
  assert.equal(stopped.instancesOverTime?.at(-1)?.ready, 1, 'i1 stopped');
  const store = kvStoreOf(stopped);
  assert.equal(store.fetches, 0, 'the stopped instance left the store');
  assert.equal(store.promptTokensComputed, PREFIX_TOKENS + 100 + PREFIX_TOKENS + 200);
  assert.equal(stopped.summary.completed, 2);
  // Kept, i1 is read.
  const kept = kvStoreOf(scaledDown(() => 2, 10_000));
  assert.deepEqual(
    kept.perInstance.map((i) => [i.id, i.fetches]),
    [
      ['i0', 1],
      ['i1', 0],
    ],
  );
});

test('a draining holder still serving is read until it stops', () => {
  // a (2,000 output tokens) runs on i1 when the loop drains i1 at 2 s; b fetches from it at 3 s.
  const long = { ...withPrefix('a', 0, 100), maxTokens: 2000, trueOutputTokens: 2000 } as TwinRequest;
  const result = runSimulation([long, withPrefix('b', 3000, 200)], {
    seed: 1,
    cluster: { groups: [{ count: 2, gpu: GPU, model: MODEL, tp: 1 }] },
    engine: toEngineConfig({ kvStore: ROCE }, GPU),
    policy: routedBy({ a: 'i1', b: 'i0' }),
    slo: { ttftMs: 2000, tpotMs: 100 },
    workload: 'kv-store draining holder',
    control: scriptedControl((t) => (t >= 2000 ? 1 : 2), 2, 2),
  });
  const draining = result.instancesOverTime?.find((p) => p.timeS === 3);
  assert.equal(draining?.draining, 1, 'i1 drains while a runs');
  const store = kvStoreOf(result);
  assert.deepEqual(
    store.perInstance.map((i) => [i.id, i.fetches, i.failedFetches]),
    [
      ['i0', 1, 0],
      ['i1', 0, 0],
    ],
  );
  assert.equal(result.summary.completed, 2);
});

test('a holder that stops during a fetch fails it: the request recomputes its prompt where it is', () => {
  const perf = perfOf(toEngineConfig({}, GPU));
  // b arrives at 9,990 ms and fetches from i1 (about 25 ms); the tick at 10 s stops i1 (idle).
  const result = scaledDown((t) => (t >= 10_000 ? 1 : 2), 9990);
  const store = kvStoreOf(result);
  assert.equal(store.fetches, 1);
  assert.equal(store.failedFetches, 1, 'its holder released its GPUs mid-transfer');
  assert.equal(store.perInstance[0]?.failedFetches, 1);
  assert.equal(store.promptTokensComputed, PREFIX_TOKENS + 100 + PREFIX_TOKENS + 200);
  assert.equal(result.summary.completed, 2);
  const ttftB = Math.max(...result.report.samples.ttftMs);
  assertClose(ttftB, 10 + perf.prefillTimeMs(PREFIX_TOKENS + 200, 0));
});

test('a kvStore is refused with placement and serverless, saying why', () => {
  const placement: PlacementSettings = {
    nodes: [{ id: 'node-1', gpu: GPU, gpus: 2 }],
    intervalMs: 1000,
    models: [
      {
        id: 'chat',
        base: MODEL,
        gpu: GPU,
        tp: 1,
        priority: 1,
        autoscaler: 'static',
        minInstances: 1,
        maxInstances: 2,
        startupMs: 1000,
      },
    ],
  };
  const options: SimOptions = {
    seed: 1,
    cluster: placementCluster(placement),
    engine: toEngineConfig({ kvStore: ROCE }, GPU),
    policy: createRoutingPolicy('least-request'),
    slo: { ttftMs: 2000, tpotMs: 100 },
    workload: 'kv-store placement',
    placement,
  };
  const why = /not with placement or serverless: their instances come and go per model and node/;
  assert.throws(() => runSimulation([{ ...withPrefix('a', 0, 10), model: 'chat' }], options), why);
  const workload = {
    kind: 'multi-model',
    models: 2,
    bases: [MODEL, 'qwen2.5-7b'],
    modelRatesRps: [0.3, 0.3],
    onMeanS: 60,
    offMeanS: 90,
    durationS: 60,
    input: { kind: 'fixed', tokens: 512 },
    output: { kind: 'fixed', tokens: 64 },
  };
  const serverless = serverlessFromFlags(
    { serverlessPolicy: 'keep-alive', gpus: 1, keepAliveS: 30, gpu: GPU },
    workload,
  );
  assert.ok(serverless !== undefined);
  assert.throws(() => runTwin(serverlessTwinSettings(workload, serverless, { kvStore: ROCE })), why);
});

/**
 * A store-less replay of the Mooncake sample on 8 instances under three policies: the summary
 * (without wall-clock fields), the decision digest and a digest of the report's samples and series.
 */
function storelessRecord(): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const policy of ['mooncake', 'least-request', 'preble']) {
    const source = mooncakeSample(800, 1);
    const result = runSimulation(source, {
      seed: 1,
      cluster: { groups: [{ count: 8, gpu: GPU, model: MODEL, tp: 1 }] },
      engine: toEngineConfig({}, GPU),
      policy: createRoutingPolicy(policy),
      slo: { ttftMs: 2000, tpotMs: 100 },
      workload: 'store-less record',
    });
    out[policy] = runRecord(result);
  }
  return JSON.parse(JSON.stringify(out));
}

/**
 * Writes the fixture: `RECORD_STORELESS=1 node --import tsx --test src/twin/kv-store.test.ts`. Only
 * for a change meant to move the twin's figures (say why in the commit): the run above must then
 * match what it writes.
 */
if (process.env.RECORD_STORELESS === '1') {
  const { writeFileSync } = await import('node:fs');
  writeFileSync(
    new URL('./fixtures/storeless-mooncake.json', import.meta.url),
    `${JSON.stringify(storelessRecord(), null, 2)}\n`,
  );
}
