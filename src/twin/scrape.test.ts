import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Rng } from '../core/rng.ts';
import { DEFAULT_ENGINE_CONFIG } from '../engine-core/types.ts';
import { createRoutingPolicy } from '../policies/routing/registry.ts';
import { createWorkload } from '../workload/create.ts';
import { parseFault } from './faults.ts';
import { runSimulation, type SimOptions } from './simulator.ts';

/** Summary fields that depend on how the work was cut into events, or on the wall clock. */
const EVENT_DEPENDENT = new Set(['wallSeconds', 'eventsPerWallS', 'decisionUs', 'events', 'itlMs']);

function run(policy: string, extra: Partial<SimOptions>, rateRps = 40) {
  const source = createWorkload(
    {
      kind: 'poisson',
      rateRps,
      maxRequests: 1200,
      input: { kind: 'uniform', lo: 128, hi: 2048 },
      output: { kind: 'uniform', lo: 16, hi: 400 },
    },
    new Rng(3).fork('workload'),
  );
  return runSimulation(source, {
    seed: 3,
    cluster: { groups: [{ count: 4, gpu: 'h100', model: 'llama-3.1-8b', tp: 1 }] },
    engine: DEFAULT_ENGINE_CONFIG,
    policy: createRoutingPolicy(policy),
    slo: { ttftMs: 2000, tpotMs: 100 },
    workload: 'test',
    ...extra,
  });
}

const cases: [string, Partial<SimOptions>, number][] = [
  ['queue', {}, 40],
  ['kv-cost', { scrapeIntervalMs: 500 }, 40],
  ['queue', { admission: {} }, 120],
  ['least-kv', { faults: [parseFault('crash:i1@5s+8s'), parseFault('slow-scrape:i2@3s+9s')] }, 40],
];

for (const [policy, extra, rateRps] of cases) {
  test(`skipping unread scrape ticks changes nothing: ${policy} ${JSON.stringify(extra).slice(0, 60)}`, () => {
    const lazy = run(policy, extra, rateRps);
    const every = run(policy, { ...extra, scrapeEveryTick: true }, rateRps);
    assert.equal(lazy.decisionDigest, every.decisionDigest);
    const strip = (o: object) => JSON.stringify(o, (k, v) => (EVENT_DEPENDENT.has(k) ? undefined : v));
    assert.equal(strip(lazy.summary), strip(every.summary));
    // Inter-token gaps are summed in a different order when steps fuse: equal up to rounding.
    assert.ok(Math.abs(lazy.summary.itlMs.mean - every.summary.itlMs.mean) < 1e-9);
    assert.ok(
      lazy.summary.events < every.summary.events,
      `events ${lazy.summary.events} vs ${every.summary.events}`,
    );
  });
}
