import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Rng } from '../core/rng.ts';
import { DEFAULT_ENGINE_CONFIG } from '../engine-core/types.ts';
import { createRoutingPolicy } from '../policies/routing/registry.ts';
import { makeTwinRequest } from '../workload/common.ts';
import { createWorkload } from '../workload/create.ts';
import type { TwinRequest } from '../workload/types.ts';
import { runSimulation, type SimOptions } from './simulator.ts';

function options(overrides: Partial<SimOptions> = {}): SimOptions {
  return {
    seed: 1,
    cluster: { groups: [{ count: 2, gpu: 'h100', model: 'llama-3.1-8b', tp: 1 }] },
    engine: DEFAULT_ENGINE_CONFIG,
    policy: createRoutingPolicy('round-robin'),
    slo: { ttftMs: 1000, tpotMs: 50 },
    workload: 'test',
    ...overrides,
  };
}

function poisson(n: number, rateRps: number, seed = 1): Iterable<TwinRequest> {
  return createWorkload(
    {
      kind: 'poisson',
      rateRps,
      maxRequests: n,
      input: { kind: 'uniform', lo: 64, hi: 2048 },
      output: { kind: 'uniform', lo: 1, hi: 300 },
    },
    new Rng(seed),
  );
}

test('every request ends: completed plus rejected equals arrived, tokens add up', () => {
  const requests = [...poisson(500, 30)];
  const result = runSimulation(requests, options());
  const s = result.summary;
  assert.equal(s.requests, 500);
  assert.equal(s.completed + s.rejected, 500);
  assert.equal(s.rejected, 0);
  assert.equal(
    s.outputTokens,
    requests.reduce((sum, r) => sum + r.trueOutputTokens, 0),
  );
  assert.ok(s.ttftMs.p50 > 0 && s.ttftMs.p99 >= s.ttftMs.p90 && s.ttftMs.p90 >= s.ttftMs.p50);
  assert.ok(s.e2eMs.mean >= s.ttftMs.mean);
  assert.equal(
    s.perInstance.reduce((sum, x) => sum + x.requests, 0),
    500,
  );
  assert.ok(s.simulatedSeconds > 0 && s.events > 1000);
});

test('the same seed and input give the same decisions and summary', () => {
  const run = (seed: number) =>
    runSimulation(poisson(300, 40), options({ seed, policy: createRoutingPolicy('random') }));
  const a = run(5);
  const b = run(5);
  const c = run(6);
  assert.equal(a.decisionDigest, b.decisionDigest);
  const strip = (x: object) => JSON.stringify({ ...x, wallSeconds: 0, eventsPerWallS: 0, decisionUs: 0 });
  assert.equal(strip(a.summary), strip(b.summary));
  assert.notEqual(a.decisionDigest, c.decisionDigest);
});

test('a request whose KV can never fit is rejected, not looped on', () => {
  const requests = [
    makeTwinRequest({ id: 'small', inputTokens: 100, trueOutputTokens: 10, arrivalMs: 0 }),
    makeTwinRequest({ id: 'huge', inputTokens: 50_000, trueOutputTokens: 10, arrivalMs: 1 }),
  ];
  const result = runSimulation(
    requests,
    options({ engine: { ...DEFAULT_ENGINE_CONFIG, numGpuBlocksOverride: 64 } }),
  );
  assert.equal(result.summary.completed, 1);
  assert.equal(result.summary.rejected, 1);
});

test('a faster GPU gives lower latency for the same work; mixed groups run together', () => {
  const work = () => poisson(300, 8);
  const on = (gpu: string) =>
    runSimulation(work(), options({ cluster: { groups: [{ count: 2, gpu, model: 'llama-3.1-8b', tp: 1 }] } }))
      .summary;
  const h100 = on('h100');
  const l4 = on('l4');
  assert.ok(h100.e2eMs.mean < l4.e2eMs.mean, `h100 ${h100.e2eMs.mean} vs l4 ${l4.e2eMs.mean}`);
  const mixed = runSimulation(
    work(),
    options({
      cluster: {
        groups: [
          { count: 1, gpu: 'h100', model: 'llama-3.1-8b', tp: 1 },
          { count: 1, gpu: 'a100-80gb', model: 'llama-3.1-8b', tp: 2 },
        ],
      },
    }),
  ).summary;
  assert.deepEqual(
    mixed.perInstance.map((x) => [x.gpu, x.tp]),
    [
      ['h100', 1],
      ['a100-80gb', 2],
    ],
  );
  assert.equal(mixed.gpuSeconds, mixed.simulatedSeconds * 3);
});

test('least-request beats random on tail latency under load', () => {
  const run = (name: string) =>
    runSimulation(
      poisson(1500, 60, 9),
      options({
        policy: createRoutingPolicy(name),
        cluster: { groups: [{ count: 4, gpu: 'h100', model: 'llama-3.1-8b', tp: 1 }] },
      }),
    ).summary;
  const random = run('random');
  const least = run('least-request');
  assert.ok(least.e2eMs.p99 < random.e2eMs.p99, `least ${least.e2eMs.p99} vs random ${random.e2eMs.p99}`);
});

test('an unsorted workload is refused with a clear error', () => {
  const requests = [
    makeTwinRequest({ id: 'a', inputTokens: 10, trueOutputTokens: 2, arrivalMs: 100 }),
    makeTwinRequest({ id: 'b', inputTokens: 10, trueOutputTokens: 2, arrivalMs: 50 }),
  ];
  assert.throws(() => runSimulation(requests, options()), /not sorted by arrival/);
});

test('a batch job fills spare capacity and finishes within its window; online requests keep their SLO', () => {
  const online = () => poisson(400, 10, 3);
  const base = runSimulation(online(), options()).summary;
  const withBatch = runSimulation(
    online(),
    options({
      batchJobs: [
        {
          id: 'nightly',
          tenant: 'batch',
          completionWindowMs: 3_600_000,
          submittedMs: 0,
          requests: {
            count: 2000,
            generate: (i) =>
              makeTwinRequest({
                id: `b${i}`,
                tenant: 'batch',
                priority: -1,
                inputTokens: 512,
                maxTokens: 64,
                trueOutputTokens: 64,
                arrivalMs: 0,
              }),
          },
        },
      ],
    }),
  ).summary;
  assert.equal(withBatch.requests, 400, 'batch requests are not online requests');
  assert.equal(withBatch.completed, 400);
  const job = withBatch.batchJobs?.[0];
  assert.ok(job !== undefined);
  assert.equal(job.status, 'completed');
  assert.equal(job.completed, 2000);
  assert.ok(job.withinWindow);
  assert.ok(Math.abs(withBatch.sloAttainment.both - base.sloAttainment.both) <= 0.01);
});

test('the admission queue sheds with stable codes when asked to keep its queue tiny', () => {
  const result = runSimulation(
    poisson(600, 400, 4),
    options({
      admission: {
        bands: [
          { name: 'online', minPriority: 0, deadlineMs: 2000, queueDepthMax: 4 },
          { name: 'batch', minPriority: -1000, deadlineMs: 86_400_000, queueDepthMax: 16 },
        ],
        gate: { waitingMax: 1 },
      },
    }),
  ).summary;
  assert.ok(result.rejected > 0, 'an overloaded cluster with a 4-deep queue must shed');
  assert.equal(result.completed + result.rejected, 600, 'every accepted request ends');
  const codes = Object.keys(result.rejectedByCode ?? {});
  assert.ok(
    codes.every((c) => ['SY_ERR_OVERLOADED', 'SY_ERR_SLO_UNREACHABLE'].includes(c)),
    codes.join(),
  );
});

test('scraped signals go stale: a queue-based policy herds onto the instance that looked idle', () => {
  const run = (scrapeIntervalMs: number) =>
    runSimulation(
      poisson(1500, 60, 11),
      options({
        policy: createRoutingPolicy('queue'),
        scrapeIntervalMs,
        cluster: { groups: [{ count: 4, gpu: 'h100', model: 'llama-3.1-8b', tp: 1 }] },
        engine: { ...DEFAULT_ENGINE_CONFIG, maxNumSeqs: 8 },
      }),
    ).summary;
  const fresh = run(0);
  const stale = run(2000);
  assert.ok(stale.ttftMs.p99 > fresh.ttftMs.p99, `stale ${stale.ttftMs.p99} vs fresh ${fresh.ttftMs.p99}`);
});
