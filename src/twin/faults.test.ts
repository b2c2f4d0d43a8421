import assert from 'node:assert/strict';
import { test } from 'node:test';
import { SwitchyardError } from '../core/errors.ts';
import { Rng } from '../core/rng.ts';
import type { InstanceView } from '../core/view.ts';
import { DEFAULT_ENGINE_CONFIG } from '../engine-core/types.ts';
import { parseGatewayConfig } from '../gateway/config.ts';
import { createRoutingPolicy } from '../policies/routing/registry.ts';
import type { RoutingPolicy } from '../policies/routing/types.ts';
import { createWorkload } from '../workload/create.ts';
import type { TwinRequest } from '../workload/types.ts';
import { type Fault, faultEdges, parseFault, RELIABILITY_DEFAULTS, toFault } from './faults.ts';
import { stringifyJson, summaryToJson } from './report/json.ts';
import type { SimSummary } from './report/types.ts';
import { type DecisionLogEntry, runSimulation, type SimOptions } from './simulator.ts';

function options(overrides: Partial<SimOptions> = {}): SimOptions {
  return {
    seed: 1,
    cluster: { groups: [{ count: 4, gpu: 'h100', model: 'llama-3.1-8b', tp: 1 }] },
    engine: DEFAULT_ENGINE_CONFIG,
    policy: createRoutingPolicy('round-robin'),
    slo: { ttftMs: 2000, tpotMs: 100 },
    workload: 'test',
    ...overrides,
  };
}

/** 40 s of Poisson arrivals at 20 req/s. */
function poisson(seed = 1): TwinRequest[] {
  return [
    ...createWorkload(
      {
        kind: 'poisson',
        rateRps: 20,
        maxRequests: 800,
        input: { kind: 'uniform', lo: 128, hi: 1024 },
        output: { kind: 'uniform', lo: 50, hi: 400 },
      },
      new Rng(seed),
    ),
  ];
}

function withoutWallClock(summary: object): string {
  return JSON.stringify(summary, (k, v) =>
    k === 'wallSeconds' || k === 'eventsPerWallS' || k === 'decisionUs' ? undefined : v,
  );
}

test('fault specs parse; bad ones name the problem', () => {
  assert.deepEqual(parseFault('crash:i2@30s+20s'), {
    kind: 'crash',
    instance: 'i2',
    atMs: 30_000,
    durationMs: 20_000,
  });
  assert.deepEqual(parseFault('stall:i0@1.5m+500ms'), {
    kind: 'stall',
    instance: 'i0',
    atMs: 90_000,
    durationMs: 500,
  });
  assert.deepEqual(
    toFault({ kind: 'slow-scrape', instance: 'i1', atS: 2, forS: 3 }),
    parseFault('slow-scrape:i1@2s+3s'),
  );
  for (const [spec, message] of [
    ['crash:i2@30s', /kind:instance@start\+duration/],
    ['melt:i2@30s+1s', /unknown kind 'melt'; expected one of crash, stall, slow-scrape/],
    ['crash:i2@30+1s', /start '30' is not a duration/],
    ['crash:i2@3s+0s', /duration must be positive/],
  ] as const) {
    assert.throws(
      () => parseFault(spec),
      (e: unknown) =>
        e instanceof SwitchyardError && e.code === 'SY_ERR_INVALID_ARGUMENT' && message.test(e.message),
    );
  }
  assert.throws(
    () => faultEdges([parseFault('crash:i9@1s+1s')], ['i0', 'i1']),
    (e: unknown) =>
      e instanceof SwitchyardError &&
      e.code === 'SY_ERR_INVALID_CONFIG' &&
      /no instance 'i9'/.test(e.message),
  );
});

test("the twin's reliability defaults are the gateway's", () => {
  const gw = parseGatewayConfig({
    backends: [{ id: 'a', type: 'sim', url: 'http://127.0.0.1:1', models: ['m'] }],
  });
  assert.deepEqual(RELIABILITY_DEFAULTS, {
    retries: gw.limits.retries,
    retryBackoffBaseMs: gw.limits.retryBackoffBaseMs,
    retryBackoffMaxMs: gw.limits.retryBackoffMaxMs,
    healthCheckIntervalMs: gw.healthCheck.intervalMs,
    failuresToEject: gw.healthCheck.failuresToEject,
    successesToReadmit: gw.healthCheck.successesToReadmit,
  });
});

test('a crash: requests retry elsewhere, the instance is ejected, then re-admitted after it recovers', () => {
  const crash: Fault = { kind: 'crash', instance: 'i1', atMs: 10_000, durationMs: 15_000 };
  const log: DecisionLogEntry[] = [];
  const result = runSimulation(poisson(), options({ faults: [crash], onDecision: (e) => log.push(e) }));
  const s = result.summary;
  const r = s.reliability;
  assert.ok(r !== undefined);
  assert.equal(r.faults, 1);
  assert.ok(r.connectFailures >= 1, `connect failures ${r.connectFailures}`);
  assert.ok(r.failed > 0, 'requests streaming on the crashed engine fail');
  assert.ok(r.retried > 0);
  assert.equal(r.ejections, 1);
  assert.equal(r.readmissions, 1);
  // Every request ends once: completed, or not served (`rejected`, which counts failures too).
  // A failure is the gateway's failed{upstream}, not a refusal under SY_ERR_UPSTREAM.
  assert.equal(s.completed + s.rejected, s.requests);
  assert.deepEqual(s.failedByReason, { upstream: r.failed });
  assert.equal(s.rejectedByCode?.SY_ERR_UPSTREAM, undefined);
  // Ejected within a few connection failures, and back only after recovery plus two checks.
  const toCrashed = (from: number, to: number) =>
    log.filter((e) => e.instance === 'i1' && e.atMs >= from && e.atMs < to).length;
  assert.equal(toCrashed(12_000, 25_000), 0, 'no decision picks the ejected instance');
  assert.ok(toCrashed(25_000, 40_000) > 0, 're-admitted after recovery');
  assert.ok(toCrashed(0, 10_000) > 0);
});

test('retries are bounded: with retries 0 every attempt that hits the dead instance fails', () => {
  const crash: Fault = { kind: 'crash', instance: 'i2', atMs: 5_000, durationMs: 10_000 };
  const none = runSimulation(poisson(), options({ faults: [crash], reliability: { retries: 0 } })).summary;
  const some = runSimulation(poisson(), options({ faults: [crash] })).summary;
  assert.equal(none.reliability?.retried, 0);
  assert.ok((none.reliability?.failed ?? 0) >= (none.reliability?.connectFailures ?? 0));
  assert.ok((some.reliability?.failed ?? 0) < (none.reliability?.failed ?? 0), 'retries save requests');
});

test("a crash that spends the retries: failedByReason upstream (the gateway's failed{upstream}), not a rejection", () => {
  // Retries 0: every attempt that reaches the dead engine before its ejection has no retry left.
  const crash: Fault = { kind: 'crash', instance: 'i2', atMs: 5_000, durationMs: 10_000 };
  const run = () =>
    runSimulation(poisson(), options({ faults: [crash], reliability: { retries: 0 } })).summary;
  const s = run();
  const failed = s.reliability?.failed ?? 0;
  assert.ok((s.reliability?.connectFailures ?? 0) > 0, 'some attempts found the engine down');
  assert.ok(failed >= (s.reliability?.connectFailures ?? 0));
  assert.deepEqual(s.failedByReason, { upstream: failed });
  assert.equal(s.rejectedByCode?.SY_ERR_UPSTREAM, undefined);
  // Not served all the same: `rejected` keeps counting them, so completed + rejected is every request.
  assert.equal(s.rejected, failed);
  assert.equal(s.completed + s.rejected, s.requests);
  // The summary JSON: failedByReason beside `rejected` (where rejectedByCode goes), same seed same bytes.
  const json = (summary: SimSummary) => stringifyJson(summaryToJson(summary, { wallClock: false }));
  const keys = Object.keys(summaryToJson(s));
  assert.equal(keys.indexOf('failedByReason'), keys.indexOf('rejected') + 1);
  assert.equal(json(run()), json(s));
});

test('fault runs are deterministic: the same seed gives the same summary and decisions', () => {
  const faults = [
    parseFault('crash:i0@5s+8s'),
    parseFault('stall:i3@12s+4s'),
    parseFault('slow-scrape:i2@3s+10s'),
  ];
  const run = () =>
    runSimulation(poisson(7), options({ seed: 9, faults, policy: createRoutingPolicy('power-of-two') }));
  const a = run();
  const b = run();
  assert.equal(a.decisionDigest, b.decisionDigest);
  assert.equal(withoutWallClock(a.summary), withoutWallClock(b.summary));
  const c = runSimulation(
    poisson(7),
    options({ seed: 10, faults, policy: createRoutingPolicy('power-of-two') }),
  );
  assert.notEqual(a.decisionDigest, c.decisionDigest);
});

test('a stall: the engine makes no progress for its duration, nothing fails', () => {
  const base = runSimulation(poisson(), options()).summary;
  const stalled = runSimulation(
    poisson(),
    options({ faults: [{ kind: 'stall', instance: 'i0', atMs: 8_000, durationMs: 5_000 }] }),
  ).summary;
  assert.equal(stalled.reliability?.failed, 0);
  assert.equal(stalled.reliability?.ejections, 0, 'a stalled engine still answers health checks');
  assert.equal(stalled.completed, stalled.requests);
  // Requests caught on i0 wait out the stall.
  assert.ok(stalled.ttftMs.p99 >= 3_000, `ttft p99 ${stalled.ttftMs.p99}`);
  assert.ok(base.ttftMs.p99 < 1_000, `ttft p99 without faults ${base.ttftMs.p99}`);
});

test('a slow scrape: past the stale limit, policies see host accounting for that instance', () => {
  const seen: { atMs: number; view: InstanceView }[] = [];
  const inner = createRoutingPolicy('round-robin');
  const spy: RoutingPolicy = {
    name: 'spy',
    decide(view, request, rng) {
      const i0 = view.instances.find((i) => i.id === 'i0');
      if (i0 !== undefined)
        seen.push({
          atMs: view.nowMs,
          view: {
            ...i0,
            running: i0.running,
            updatedAtMs: i0.updatedAtMs,
            waiting: i0.waiting,
            inFlight: i0.inFlight,
          },
        });
      return inner.decide(view, request, rng);
    },
  };
  runSimulation(
    poisson(),
    options({
      policy: spy,
      faults: [{ kind: 'slow-scrape', instance: 'i0', atMs: 5_000, durationMs: 10_000 }],
    }),
  );
  const during = seen.filter((s) => s.atMs > 5_300 && s.atMs < 15_000);
  assert.ok(during.length > 50);
  for (const s of during) {
    assert.ok(s.view.updatedAtMs <= 5_000, `scraped at ${s.view.updatedAtMs} during the fault`);
    assert.equal(s.view.running, s.view.inFlight);
    assert.equal(s.view.waiting, 0);
  }
  const after = seen.filter((s) => s.atMs > 15_100);
  assert.ok(after.every((s) => s.view.updatedAtMs >= 15_000 && s.atMs - s.view.updatedAtMs <= 75));
});

test("a crash: the ejected instance's scraped signals are forgotten, as live, and it is scraped on re-admission", () => {
  // The live gateway's rule (src/gateway/live-view.ts forgetSignals): an ejected instance shows host
  // accounting and no KV usage until a scrape taken after the ejection. Before it, the twin kept the
  // dead engine's last snapshot (down engines are not scraped) for the whole outage.
  type Signals = Pick<
    InstanceView,
    'running' | 'waiting' | 'kvUsage' | 'prefixHitRate' | 'inFlight' | 'updatedAtMs'
  >;
  const seen: { atMs: number; healthy: boolean; view: Signals }[] = [];
  // Stateless and spreading (round-robin advances in onRouted, which a wrapper would have to pass on).
  const inner = createRoutingPolicy('least-request');
  const spy: RoutingPolicy = {
    name: 'spy',
    decide(view, request, rng) {
      const i1 = view.instances.find((i) => i.id === 'i1');
      if (i1 !== undefined) {
        const { running, waiting, kvUsage, prefixHitRate, inFlight, updatedAtMs } = i1;
        const copy = { running, waiting, kvUsage, prefixHitRate, inFlight, updatedAtMs };
        seen.push({ atMs: view.nowMs, healthy: i1.healthy, view: copy });
      }
      return inner.decide(view, request, rng);
    },
  };
  const crash: Fault = { kind: 'crash', instance: 'i1', atMs: 10_000, durationMs: 15_000 };
  const result = runSimulation(poisson(), options({ policy: spy, faults: [crash] }));
  assert.equal(result.summary.reliability?.ejections, 1);
  assert.ok(
    seen.some((s) => s.atMs < 10_000 && s.view.kvUsage > 0),
    'the engine held KV before the crash',
  );
  const ejected = seen.filter((s) => !s.healthy);
  assert.ok(ejected.length > 50, `${ejected.length} decisions saw i1 ejected`);
  for (const s of ejected) {
    assert.equal(s.view.kvUsage, 0, `kvUsage at ${s.atMs}`);
    assert.equal(s.view.prefixHitRate, 0);
    assert.equal(s.view.running, s.view.inFlight);
    assert.equal(s.view.waiting, 0);
  }
  const lastEjectedMs = (ejected.at(-1) as (typeof ejected)[number]).atMs;
  const back = seen.find((s) => s.atMs > lastEjectedMs);
  assert.ok(back?.healthy === true);
  assert.ok(back.view.updatedAtMs > lastEjectedMs, 'scraped after the re-admission, not before the crash');
});
