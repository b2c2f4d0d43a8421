import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Rng } from '../core/rng.ts';
import type { InstanceView } from '../core/view.ts';
import { DEFAULT_ENGINE_CONFIG } from '../engine-core/types.ts';
import { modelSpec } from '../model/models.ts';
import { perfModelFor } from '../model/perf.ts';
import { createPairPolicy } from '../policies/disagg/pair.ts';
import { createRoutingPolicy } from '../policies/routing/registry.ts';
import type { RoutingPolicy } from '../policies/routing/types.ts';
import { makeTwinRequest } from '../workload/common.ts';
import { createWorkload } from '../workload/create.ts';
import type { TwinRequest } from '../workload/types.ts';
import { PdHandoffs, type PdSettings } from './pd-host.ts';
import { runSimulation, type SimOptions, type SimResult } from './simulator.ts';

/** Disaggregated (P/D) clusters in the twin: src/twin/pd-host.ts and its hooks in simulator.ts. */

const GROUP = { gpu: 'h100', model: 'llama-3.1-8b', tp: 1 };

function pd(prefillInstances: number, decodeInstances: number, link = 'ib-400'): PdSettings {
  return { prefillInstances, decodeInstances, link, decodePolicy: createRoutingPolicy('least-request') };
}

function options(count: number, more: Partial<SimOptions> = {}): SimOptions {
  return {
    seed: 1,
    cluster: { groups: [{ count, ...GROUP }] },
    engine: DEFAULT_ENGINE_CONFIG,
    policy: createRoutingPolicy('least-request'),
    slo: { ttftMs: 2000, tpotMs: 50 },
    workload: 'test',
    ...more,
  };
}

function poisson(n: number, rateRps: number, seed = 1): TwinRequest[] {
  const source = createWorkload(
    {
      kind: 'poisson',
      rateRps,
      maxRequests: n,
      input: { kind: 'uniform', lo: 256, hi: 4096 },
      output: { kind: 'uniform', lo: 16, hi: 256 },
    },
    new Rng(seed),
  );
  return [...source];
}

function runPd(requests: readonly TwinRequest[], settings: PdSettings, seed = 1): SimResult {
  return runSimulation(
    requests,
    options(settings.prefillInstances + settings.decodeInstances, { pd: settings, seed }),
  );
}

test('a P/D run completes every request, prefills on prefill instances and decodes on decode ones', () => {
  const requests = poisson(400, 12);
  const result = runPd(requests, pd(1, 2));
  const s = result.summary;
  assert.equal(s.completed, 400);
  assert.equal(s.rejected, 0);
  assert.equal(
    s.outputTokens,
    requests.reduce((sum, r) => sum + r.trueOutputTokens, 0),
  );
  const out = result.pd;
  assert.ok(out !== undefined);
  assert.equal(out.transfers, 400);
  assert.equal(out.link, 'ib-400');
  // Every prompt's KV crossed the link once: 128 KiB a token for Llama-3.1-8B (32 layers, 8 KV heads of 128, fp16).
  const tokens = requests.reduce((sum, r) => sum + r.inputTokens, 0);
  assert.equal(out.kvBytesMoved, tokens * 32 * 2 * 8 * 128 * 2);
  assert.ok(out.transferMsMean > 0 && out.transferMsP99 >= out.transferMsMean);
  // The prefill instance saw every request once; the two decode instances shared them.
  const routed = s.perInstance.map((x) => x.requests);
  assert.equal(routed[0], 400);
  assert.equal((routed[1] as number) + (routed[2] as number), 400);
  assert.ok((routed[1] as number) > 0 && (routed[2] as number) > 0);
  // Without --pd-conditional every request disaggregates.
  assert.equal(out.remotePrefills, 400);
  assert.equal(out.localPrefills, 0);
});

test('decode instances never run a prefill chunk of more than one token', () => {
  const result = runPd(poisson(300, 20), pd(2, 1));
  assert.equal(result.summary.preemptions, 0);
  assert.equal(result.pd?.decodePrefillTokensMax, 1);
});

test('TTFT includes the transfer: a slower link gives a higher TTFT, same seed', () => {
  const requests = poisson(200, 6);
  const fast = runPd(requests, pd(1, 1, 'nvlink'));
  const slow = runPd(requests, pd(1, 1, 'tcp-100'));
  const fastPd = fast.pd as NonNullable<SimResult['pd']>;
  const slowPd = slow.pd as NonNullable<SimResult['pd']>;
  assert.ok(slowPd.transferMsMean > 10 * fastPd.transferMsMean);
  // The decode side never waits for blocks here, so TTFT grows by the transfer's difference (within
  // a step or so: the decode's first step lands at another point of its batches).
  const grew = slow.summary.ttftMs.mean - fast.summary.ttftMs.mean;
  const diff = slowPd.transferMsMean - fastPd.transferMsMean;
  assert.ok(Math.abs(grew - diff) < 0.05 * diff, `TTFT grew ${grew} ms for ${diff} ms more transfer`);
});

test('one request: TTFT = prefill + transfer + the decode first step', () => {
  const request = makeTwinRequest({ id: 'r', inputTokens: 2000, trueOutputTokens: 20, arrivalMs: 0 });
  const nv = runPd([request], pd(1, 1, 'nvlink'));
  const tcp = runPd([request], pd(1, 1, 'tcp-100'));
  const added = (tcp.pd?.transferMsMean as number) - (nv.pd?.transferMsMean as number);
  assert.ok(Math.abs(tcp.summary.ttftMs.mean - nv.summary.ttftMs.mean - added) < 1e-6);
  // A colocated engine's TTFT is the prefill alone: the P/D one adds the transfer and a decode step.
  const colocated = runSimulation([request], options(1));
  assert.ok(nv.summary.ttftMs.mean > colocated.summary.ttftMs.mean + (nv.pd?.transferMsMean as number));
});

/** A burst of long prompts arriving while short ones decode: what disaggregation protects TPOT from. */
function longPromptBurst(): TwinRequest[] {
  const requests: TwinRequest[] = [];
  for (let i = 0; i < 16; i++)
    requests.push(
      makeTwinRequest({ id: `d${i}`, inputTokens: 256, trueOutputTokens: 400, arrivalMs: i * 5 }),
    );
  for (let i = 0; i < 12; i++)
    requests.push(
      makeTwinRequest({ id: `p${i}`, inputTokens: 8000, trueOutputTokens: 400, arrivalMs: 200 + i * 50 }),
    );
  return requests.sort((a, b) => a.arrivalMs - b.arrivalMs);
}

test('under a long-prompt burst TPOT is lower disaggregated than colocated on as many GPUs', () => {
  const requests = longPromptBurst();
  const colocated = runSimulation(requests, options(2));
  const disaggregated = runPd(requests, pd(1, 1));
  assert.equal(colocated.summary.completed, requests.length);
  assert.equal(disaggregated.summary.completed, requests.length);
  const c = colocated.summary.tpotMs;
  const d = disaggregated.summary.tpotMs;
  assert.ok(d.p99 < c.p99, `TPOT p99 ${d.p99} disaggregated vs ${c.p99} colocated`);
  assert.ok(d.mean < c.mean, `TPOT mean ${d.mean} disaggregated vs ${c.mean} colocated`);
});

test('the decode side waits for blocks: a full decode instance delays transfers, nothing is lost', () => {
  const requests = poisson(120, 40);
  const engine = { ...DEFAULT_ENGINE_CONFIG, numGpuBlocksOverride: 1200 };
  const result = runSimulation(requests, options(3, { pd: pd(2, 1), engine }));
  assert.equal(result.summary.completed, 120);
  assert.ok((result.pd?.reserveWaitMsMean as number) > 0, 'no hand-off waited for blocks');
});

test('the same seed gives the same P/D run; colocated runs carry no pd block', () => {
  const requests = poisson(300, 15);
  const strip = (r: SimResult) =>
    JSON.stringify({ ...r.summary, wallSeconds: 0, eventsPerWallS: 0, decisionUs: 0, pd: r.pd });
  const a = runPd(requests, { ...pd(1, 2), decodePolicy: createRoutingPolicy('random') }, 7);
  const b = runPd(requests, { ...pd(1, 2), decodePolicy: createRoutingPolicy('random') }, 7);
  const c = runPd(requests, { ...pd(1, 2), decodePolicy: createRoutingPolicy('random') }, 8);
  assert.equal(strip(a), strip(b));
  assert.equal(a.decisionDigest, b.decisionDigest);
  assert.notEqual(a.decisionDigest, c.decisionDigest);
  assert.equal(runSimulation(requests, options(3)).pd, undefined);
});

test('a P/D cluster refuses what it cannot run with, and a cluster of the wrong size', () => {
  assert.throws(() => runSimulation([], options(3, { pd: pd(1, 1) })), /1 \+ 1 instances/);
  assert.throws(
    () =>
      runSimulation(
        [],
        options(2, { pd: pd(1, 1), faults: [{ kind: 'crash', instance: 'i0', atMs: 1, durationMs: 1 }] }),
      ),
    /P\/D cluster \(--prefill-instances, --decode-instances\) runs without faults \(--fault\)/,
  );
});

/** An instance as the gateway sees it, with the fields the conditional rules read. */
function view(role: 'prefill' | 'decode', more: Partial<InstanceView> = {}): InstanceView {
  return {
    id: `${role}0`,
    models: ['llama-3.1-8b'],
    gpu: 'h100',
    tp: 1,
    role,
    healthy: true,
    draining: false,
    inFlight: 0,
    running: 0,
    waiting: 0,
    kvUsage: 0,
    kvBlocksTotal: 10_000,
    blockSize: 16,
    pendingPrefillTokens: 0,
    prefixHitRate: 0,
    updatedAtMs: 0,
    ...more,
  } as InstanceView;
}

function conditionalHandoffs(rule: 'dynamo' | 'switchyard' | 'slo'): PdHandoffs<null> {
  return new PdHandoffs<null>({ ...pd(1, 1), conditional: rule }, modelSpec('llama-3.1-8b'), 1, 16);
}

const PERF = perfModelFor('h100', 'llama-3.1-8b', 1);
const decodeBusy = view('decode', { running: 16, inFlight: 16, kvUsage: 0.2 });

test('--pd-conditional dynamo: short prompts stay local, long ones go remote, a busy pool keeps them local', () => {
  const h = conditionalHandoffs('dynamo');
  const idlePool = [view('prefill')];
  const busyPool = [view('prefill', { inFlight: 3, pendingPrefillTokens: 9000 })];
  const ask = (inputTokens: number, hit: number, pool: InstanceView[]) =>
    h.prefillsRemotely(
      makeTwinRequest({ id: 'r', inputTokens, trueOutputTokens: 10, arrivalMs: 0 }),
      hit,
      decodeBusy,
      pool,
      PERF,
      8192,
    );
  assert.equal(ask(500, 0, idlePool), false);
  assert.equal(ask(3000, 0, idlePool), true);
  assert.equal(ask(3000, 2500, idlePool), false, 'the uncached part is short');
  assert.equal(ask(3000, 0, busyPool), false);
  const req = makeTwinRequest({ id: 'r', inputTokens: 3000, trueOutputTokens: 10, arrivalMs: 0 });
  h.handoff(req, null, 0, 0, 0);
  assert.deepEqual(
    [h.outcome().localPrefills, h.outcome().remotePrefills],
    [3, 1],
    'three kept local; one hand-off made',
  );
});

test('--pd-conditional switchyard: local behind a queued prefill pool, remote for a long prompt, deterministic', () => {
  const queued = [view('prefill', { inFlight: 2, pendingPrefillTokens: 4000 })];
  const decide = (h: PdHandoffs<null>, inputTokens: number) =>
    h.prefillsRemotely(
      makeTwinRequest({ id: 'r', inputTokens, trueOutputTokens: 10, arrivalMs: 0 }),
      0,
      decodeBusy,
      queued,
      PERF,
      8192,
    );
  const a = conditionalHandoffs('switchyard');
  const b = conditionalHandoffs('switchyard');
  const sizes = [64, 200, 1000, 3000, 6000, 12_000];
  const da = sizes.map((n) => decide(a, n));
  assert.deepEqual(
    da,
    sizes.map((n) => decide(b, n)),
  );
  assert.equal(da[0], false);
  assert.equal(da[da.length - 1], true);
  assert.equal(a.outcome().localPrefills, da.filter((r) => !r).length);
  // Without a rule the decode instance never prefills.
  const off = new PdHandoffs<null>(pd(1, 1), modelSpec('llama-3.1-8b'), 1, 16);
  assert.equal(decide(off, 64), true);
  assert.equal(off.outcome().localPrefills, 0);
});

test('--pd-conditional slo: remote while the pool is quick, then local within the decode budget, which recovers', () => {
  const slo = { ttftMs: 500, tpotMs: 25 };
  const quick = [view('prefill', { inFlight: 1, pendingPrefillTokens: 1000 })];
  const slow = [view('prefill', { inFlight: 8, pendingPrefillTokens: 20_000 })];
  const h = conditionalHandoffs('slo');
  const decide = (arrivalMs: number, pool: InstanceView[], withSlo = true) =>
    h.prefillsRemotely(
      makeTwinRequest({
        id: `r${arrivalMs}`,
        inputTokens: 1000,
        trueOutputTokens: 10,
        arrivalMs,
        ...(withSlo ? { slo } : {}),
      }),
      0,
      decodeBusy,
      pool,
      PERF,
      8192,
    );
  assert.equal(decide(0, quick), true);
  // Behind a slow pool: a burst 1 ms apart stays local only while the decode instance's budget lasts.
  const burst = Array.from({ length: 100 }, (_, i) => decide(1 + i, slow));
  const local = burst.filter((r) => !r).length;
  assert.equal(burst[0], false);
  assert.equal(burst[burst.length - 1], true, 'the budget is spent: later arrivals go remote');
  assert.ok(local > 1 && local < 50, `${local} local`);
  assert.equal(h.outcome().localPrefills, local);
  // Five TTFT SLOs later the recorded stall has decayed (e^-5): local again.
  assert.equal(decide(101 + 5 * slo.ttftMs, slow), false);
  // Without an SLO the request is decided as `switchyard` decides it, and records nothing.
  const sw = conditionalHandoffs('switchyard');
  const swDecide = sw.prefillsRemotely(
    makeTwinRequest({ id: 'x', inputTokens: 1000, trueOutputTokens: 10, arrivalMs: 102 }),
    0,
    decodeBusy,
    slow,
    PERF,
    8192,
  );
  assert.equal(decide(102, slow, false), swDecide);
});

/** A prefill-side policy (least-request) that notes the prefill instance's KV blocks in use at each pick. */
function probedPolicy(seen: Map<string, number>): RoutingPolicy {
  const inner = createRoutingPolicy('least-request');
  return {
    name: 'probe',
    decide(view, request, rng) {
      const p = view.instances[0] as InstanceView;
      seen.set(request.id, Math.round(p.kvUsage * p.kvBlocksTotal));
      return inner.decide(view, request, rng);
    },
  };
}

test('the prefill instance holds the request KV blocks until the transfer ends, then frees them', () => {
  // 16,000 tokens over tcp-100 take ~170 ms to move; a probe arrives mid-transfer, another after.
  const long = makeTwinRequest({ id: 'long', inputTokens: 16_000, trueOutputTokens: 4, arrivalMs: 0 });
  const lone = runPd([long], pd(1, 1, 'tcp-100'));
  const transferMs = lone.pd?.transferMsMean as number;
  const ttftMs = lone.summary.ttftMs.mean;
  assert.ok(transferMs > 100, `transfer ${transferMs} ms`);
  const probes = [
    long,
    makeTwinRequest({
      id: 'during',
      inputTokens: 16,
      trueOutputTokens: 2,
      arrivalMs: ttftMs - transferMs / 2,
    }),
    makeTwinRequest({ id: 'after', inputTokens: 16, trueOutputTokens: 2, arrivalMs: ttftMs + 50 }),
  ];
  const seen = new Map<string, number>();
  // Live engine signals (scrape interval 0), so the probe reads the blocks in use at that instant.
  const result = runSimulation(
    probes,
    options(2, { pd: pd(1, 1, 'tcp-100'), policy: probedPolicy(seen), scrapeIntervalMs: 0 }),
  );
  assert.equal(result.summary.completed, 3);
  assert.equal(seen.get('long'), 0);
  assert.equal(seen.get('during'), 16_000 / 16, 'held during the transfer: exactly the prompt blocks');
  assert.equal(seen.get('after'), 0, 'freed once the decode side has read them');
});

test('a prefill instance whose blocks are held for transfers holds its queue back, and loses nothing', () => {
  // 520 blocks: two 4,000-token prompts (250 blocks each) prefill together; a third waits for blocks.
  const engine = { ...DEFAULT_ENGINE_CONFIG, numGpuBlocksOverride: 520 };
  const prompt = (id: string, arrivalMs: number) =>
    makeTwinRequest({ id, inputTokens: 4000, trueOutputTokens: 2, arrivalMs });
  const pair = runSimulation(
    [prompt('a', 0), prompt('b', 0)],
    options(2, { pd: pd(1, 1, 'tcp-100'), engine }),
  );
  const transferMs = pair.pd?.transferMsMean as number;
  const midTransferMs = pair.summary.ttftMs.mean - transferMs / 2;
  const seen = new Map<string, number>();
  const waiting = new Map<string, number>();
  const inner = probedPolicy(seen);
  const policy: RoutingPolicy = {
    name: 'probe',
    decide(view, request, rng) {
      waiting.set(request.id, (view.instances[0] as InstanceView).waiting);
      return inner.decide(view, request, rng);
    },
  };
  const probe = makeTwinRequest({
    id: 'probe',
    inputTokens: 16,
    trueOutputTokens: 2,
    arrivalMs: midTransferMs,
  });
  const result = runSimulation(
    [prompt('a', 0), prompt('b', 0), prompt('c', 1), probe],
    options(2, { pd: pd(1, 1, 'tcp-100'), engine, policy, scrapeIntervalMs: 0 }),
  );
  assert.equal(result.summary.completed, 4);
  // Mid-transfer, a's and b's blocks are still held, so c (which would fit in freed blocks) still waits.
  assert.equal(seen.get('probe'), 500);
  assert.equal(waiting.get('probe'), 1);
});

function conditional(rule: 'dynamo' | 'switchyard' | 'slo', p = 1, d = 1): PdSettings {
  return { ...pd(p, d), conditional: rule };
}

test('conditional dynamo in the twin: a short prompt runs whole on its decode instance, a long one goes remote', () => {
  const short = makeTwinRequest({ id: 's', inputTokens: 500, trueOutputTokens: 20, arrivalMs: 0 });
  const long = makeTwinRequest({ id: 'l', inputTokens: 3000, trueOutputTokens: 20, arrivalMs: 0 });
  const local = runPd([short], conditional('dynamo'));
  assert.equal(local.summary.completed, 1);
  assert.deepEqual([local.pd?.localPrefills, local.pd?.remotePrefills, local.pd?.transfers], [1, 0, 0]);
  assert.deepEqual(
    local.summary.perInstance.map((x) => x.requests),
    [0, 1],
    'the prefill instance never saw it',
  );
  assert.ok((local.pd?.decodePrefillTokensMax as number) >= 500, 'the decode instance prefilled it');
  const remote = runPd([long], conditional('dynamo'));
  assert.deepEqual([remote.pd?.localPrefills, remote.pd?.remotePrefills, remote.pd?.transfers], [0, 1, 1]);
  assert.deepEqual(
    remote.summary.perInstance.map((x) => x.requests),
    [1, 1],
  );
  assert.equal(remote.pd?.decodePrefillTokensMax, 1);
  // Against the unconditional run: the same single request, the same path and TTFT.
  const always = runPd([long], pd(1, 1));
  assert.equal(remote.summary.ttftMs.mean, always.summary.ttftMs.mean);
});

test('conditional dynamo: a long prompt whose prefix the decode instance already holds stays local', () => {
  const prefix = { blockTokens: 16, hashes: Array.from({ length: 180 }, (_, i) => 1000 + i) };
  const first = makeTwinRequest({ id: 'a', inputTokens: 3000, trueOutputTokens: 4, arrivalMs: 0, prefix });
  const again = makeTwinRequest({ id: 'b', inputTokens: 3100, trueOutputTokens: 4, arrivalMs: 2000, prefix });
  const result = runPd([first, again], conditional('dynamo'));
  assert.equal(result.summary.completed, 2);
  // The first goes remote (nothing cached); the second's uncached part is 3,100 - 2,880 = 220 tokens.
  assert.deepEqual([result.pd?.remotePrefills, result.pd?.localPrefills], [1, 1]);
});

test('conditional runs: every request completes, short ones local, remote ones never prefill on the decode side', () => {
  const requests = poisson(300, 4);
  const result = runPd(requests, conditional('dynamo', 2, 2));
  const out = result.pd as NonNullable<SimResult['pd']>;
  assert.equal(result.summary.completed, 300);
  assert.equal(out.localPrefills + out.remotePrefills, 300);
  // No prefix sharing and a light load (the pool's queue never full): the length alone decides.
  assert.equal(out.localPrefills, requests.filter((r) => r.inputTokens <= 1000).length);
  assert.equal(out.transfers, out.remotePrefills);
  assert.equal(out.importRecomputes, 0, 'a remote request recomputed its prompt on the decode side');
  assert.equal(result.summary.preemptions, 0);
  // Only long prompts: every one remote, and each decode step's prefill chunks are 1 token.
  const longOnly = requests.filter((r) => r.inputTokens > 1000);
  const remote = runPd(longOnly, conditional('dynamo', 2, 2));
  assert.equal(remote.summary.completed, longOnly.length);
  assert.equal(remote.pd?.localPrefills, 0);
  assert.equal(remote.pd?.decodePrefillTokensMax, 1);
  for (const rule of ['dynamo', 'switchyard', 'slo'] as const) {
    const s = runPd(requests, conditional(rule, 2, 2));
    assert.equal(s.summary.completed, 300, rule);
    assert.equal(s.pd?.conditional, rule);
  }
});

test('conditional slo in the twin: requests with an SLO run to completion on both paths, a tighter TPOT keeps fewer local', () => {
  // 300 Poisson requests at 40 req/s on 1 prefill + 2 decode instances: the prefill pool queues.
  const withSlo = (tpotMs: number) => poisson(300, 40).map((r) => ({ ...r, slo: { ttftMs: 400, tpotMs } }));
  const loose = runPd(withSlo(60), conditional('slo', 1, 2));
  const tight = runPd(withSlo(12), conditional('slo', 1, 2));
  for (const r of [loose, tight]) {
    assert.equal(r.summary.completed, 300);
    assert.equal((r.pd?.localPrefills as number) + (r.pd?.remotePrefills as number), 300);
    assert.equal(r.pd?.importRecomputes, 0);
  }
  assert.ok((loose.pd?.localPrefills as number) > 0, 'a queued pool and a loose TPOT: some local');
  assert.ok((loose.pd?.remotePrefills as number) > 0, 'a quick pool takes some');
  assert.ok(
    (tight.pd?.localPrefills as number) < (loose.pd?.localPrefills as number),
    `tight ${tight.pd?.localPrefills} vs loose ${loose.pd?.localPrefills}`,
  );
});

test('conditional runs are deterministic: the same seed gives the same JSON', () => {
  const requests = poisson(300, 15);
  const strip = (r: SimResult) =>
    JSON.stringify({ ...r.summary, wallSeconds: 0, eventsPerWallS: 0, decisionUs: 0, pd: r.pd });
  for (const rule of ['dynamo', 'switchyard', 'slo'] as const) {
    const settings = () => ({ ...conditional(rule, 1, 2), decodePolicy: createRoutingPolicy('random') });
    const a = runPd(requests, settings(), 7);
    const b = runPd(requests, settings(), 7);
    const c = runPd(requests, settings(), 8);
    assert.equal(strip(a), strip(b), rule);
    assert.equal(a.decisionDigest, b.decisionDigest, rule);
    assert.notEqual(a.decisionDigest, c.decisionDigest, rule);
  }
});

/** A TPOT SLO (ms) the decode pool meets for some requests of `poisson(400, 30)` and not for others. */
const TIGHT_TPOT_MS = 9;

/** A mooncake pair over 2 + 2 instances; `decodeAtArrival` false puts its decode pick at the prefill's end. */
function mooncakeRun(
  requests: readonly TwinRequest[],
  tpotSloMs: number,
  decodeAtArrival: boolean,
): SimResult {
  const pair = createPairPolicy(
    'mooncake',
    { tpotSloMs, ttftSloMs: 1e9, decodeAt: 'arrival' },
    { perfModel: () => PERF },
  );
  assert.equal(pair.decodeAt, 'arrival');
  const settings: PdSettings = { ...pd(2, 2), decodePolicy: pair.decode, decodeAtArrival };
  return runSimulation(requests, options(4, { pd: settings, policy: pair.prefill }));
}

test('mooncake decides the pair at arrival: a TPOT refusal never reaches a prefill instance', () => {
  const requests = poisson(400, 30);
  const result = mooncakeRun(requests, TIGHT_TPOT_MS, true);
  const s = result.summary;
  assert.ok(s.rejected > 0 && s.completed > 0, `rejected ${s.rejected}, completed ${s.completed}`);
  assert.equal(s.completed + s.rejected, 400);
  assert.equal(s.rejectedByCode?.['SY_ERR_SLO_UNREACHABLE'], s.rejected);
  // The prefill instances (the first two) got exactly the accepted requests, each prefilled once.
  const prefilled = s.perInstance.slice(0, 2).reduce((n, x) => n + x.requests, 0);
  assert.equal(prefilled, s.completed);
  assert.equal(result.pd?.transfers, s.completed);
  // The same pair deciding at the prefill's end prefills every request, refused ones included.
  const late = mooncakeRun(requests, TIGHT_TPOT_MS, false).summary;
  assert.ok(late.rejected > 0);
  assert.equal(
    late.perInstance.slice(0, 2).reduce((n, x) => n + x.requests, 0),
    400,
  );
});

/** A decode-side policy that records the pending prefill tokens it sees, then defers to least-request. */
function recordingDecodePolicy(seen: number[]): RoutingPolicy {
  const inner = createRoutingPolicy('least-request');
  return {
    name: 'recording',
    decide(view, request, rng) {
      for (const i of view.instances) seen.push(i.pendingPrefillTokens);
      return inner.decide(view, request, rng);
    },
  };
}

test('a decode instance counts no pending prefill for transferred requests, as the live gateway counts it', () => {
  // Picked when the prefill ends, and at arrival (a pair deciding there): every request is transferred.
  for (const decodeAtArrival of [false, true]) {
    const seen: number[] = [];
    const requests = poisson(300, 20).map((r) => makeTwinRequest({ ...r, inputTokens: 3000 }));
    const settings: PdSettings = { ...pd(1, 2), decodePolicy: recordingDecodePolicy(seen), decodeAtArrival };
    const result = runPd(requests, settings);
    assert.equal(result.summary.completed, 300, `every request completes (at arrival: ${decodeAtArrival})`);
    assert.equal(result.pd?.localPrefills, 0);
    assert.equal(seen.length > 0, true, 'the decode policy decided');
    assert.equal(Math.max(...seen), 0, `decode-side pending prefill tokens (at arrival: ${decodeAtArrival})`);
  }
});
