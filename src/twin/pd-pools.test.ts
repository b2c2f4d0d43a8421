import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { ControlContext, ControlLoop, TrafficWindow } from '../control/types.ts';
import { singleVariantDecision } from '../control/types.ts';
import { Rng } from '../core/rng.ts';
import { DEFAULT_ENGINE_CONFIG } from '../engine-core/types.ts';
import { createRoutingPolicy } from '../policies/routing/registry.ts';
import { createWorkload } from '../workload/create.ts';
import type { WorkloadSpecInput } from '../workload/spec.ts';
import type { TwinRequest } from '../workload/types.ts';
import type { PlacementLogEntry } from './control-host.ts';
import { type PdPoolSettings, type PdPoolsSettings, pdPoolSlots } from './pd-pools.ts';
import { runSimulation, type SimResult } from './simulator.ts';

/** Autoscaled P/D pools (src/twin/pd-pools.ts) through the twin. */

const SLO = { ttftMs: 2000, tpotMs: 50 };
/** A short start-up keeps the runs small; the pools' behaviour does not depend on its length. */
const STARTUP_MS = 10_000;

function requests(spec: Record<string, unknown>): TwinRequest[] {
  return [...createWorkload(spec as WorkloadSpecInput, new Rng(1))];
}

/** Poisson arrivals of fixed lengths. */
function poisson(
  rateRps: number,
  durationS: number,
  inputTokens: number,
  outputTokens: number,
): TwinRequest[] {
  return requests({
    kind: 'poisson',
    rateRps,
    durationS,
    input: { kind: 'fixed', tokens: inputTokens },
    output: { kind: 'fixed', tokens: outputTokens },
  });
}

function pool(
  autoscaler: string,
  initial: number,
  max: number,
  more: Partial<PdPoolSettings> = {},
): PdPoolSettings {
  return { autoscaler, minInstances: 1, maxInstances: max, initialInstances: initial, ...more };
}

function run(
  source: readonly TwinRequest[],
  pools: PdPoolsSettings,
  onPlacement?: (entry: PlacementLogEntry) => void,
): SimResult {
  return runSimulation(source, {
    seed: 1,
    cluster: { groups: [{ count: pdPoolSlots(pools), gpu: 'h100', model: 'llama-3.1-8b', tp: 1 }] },
    engine: DEFAULT_ENGINE_CONFIG,
    policy: createRoutingPolicy('least-request'),
    slo: SLO,
    workload: 'test',
    pd: {
      prefillInstances: pools.prefill.initialInstances,
      decodeInstances: pools.decode.initialInstances,
      link: 'ib-400',
      decodePolicy: createRoutingPolicy('least-request'),
    },
    pdPools: { startupMs: STARTUP_MS, ...pools },
    onPlacement,
  });
}

/** Ready plus starting at each point: what the loop's decisions hold the pool to. */
function active(result: SimResult, name: 'prefill' | 'decode'): number[] {
  const p = result.pdPools?.[name];
  assert.ok(p !== undefined, 'p !== undefined');
  return p.instancesOverTime.map((x) => x.ready + x.starting);
}

function assertAllComplete(result: SimResult, source: readonly TwinRequest[]): void {
  assert.equal(result.summary.completed, source.length);
  assert.equal(result.summary.rejected, 0);
  assert.equal(
    result.summary.outputTokens,
    source.reduce((n, r) => n + r.trueOutputTokens, 0),
  );
}

describe('autoscaled P/D pools', () => {
  it('a burst of long prompts grows the prefill pool and not the decode pool', () => {
    const source = poisson(6, 120, 8000, 32);
    const lines: PlacementLogEntry[] = [];
    const result = run(
      source,
      { prefill: pool('slo-planner', 1, 6), decode: pool('slo-planner', 1, 6) },
      (e) => lines.push(e),
    );
    assertAllComplete(result, source);
    const pools = result.pdPools;
    assert.ok(pools !== undefined, 'pools !== undefined');
    assert.ok(pools.prefill.peakReady >= 3, `prefill peak ${pools.prefill.peakReady}`);
    assert.ok(pools.prefill.coldStarts >= 2, 'pools.prefill.coldStarts >= 2');
    assert.equal(pools.decode.peakReady, 1);
    assert.equal(pools.decode.coldStarts, 0);
    // Starts are prefill-role slots (i0..i5), and each scale line names its pool.
    assert.ok(lines.length > 0, 'lines.length > 0');
    for (const line of lines) {
      assert.equal(line.pool, 'prefill');
      assert.match(line.placement, /^prefill pool -> \d+: start i[0-5]\b/);
    }
    assert.deepEqual(
      pools.scaleEvents.map((e) => e.line),
      lines.map((l) => l.placement),
    );
    // GPU-hours: each pool's, and the run's total is their sum.
    assert.ok(
      pools.prefill.gpuHours > pools.decode.gpuHours,
      'pools.prefill.gpuHours > pools.decode.gpuHours',
    );
    assert.ok(
      Math.abs((result.gpuHours ?? 0) - pools.prefill.gpuHours - pools.decode.gpuHours) < 1e-12,
      'Math.abs((result.gpuHours ?? 0) - pools.prefill.gpuHours - pools.decode.gpuHours) < 1e-12',
    );
    // Every request prefilled on a prefill instance and decoded on a decode one.
    const routed = result.summary.perInstance.map((x) => x.requests);
    assert.equal(
      routed.slice(0, 6).reduce((a, b) => a + b, 0),
      source.length,
    );
    assert.equal(
      routed.slice(6).reduce((a, b) => a + b, 0),
      source.length,
    );
  });

  it('a long-output load grows the decode pool and not the prefill pool', () => {
    const source = poisson(20, 60, 512, 1500);
    const result = run(source, { prefill: pool('slo-planner', 1, 4), decode: pool('slo-planner', 1, 6) });
    assertAllComplete(result, source);
    const pools = result.pdPools;
    assert.ok(pools !== undefined, 'pools !== undefined');
    assert.ok(pools.decode.peakReady >= 3, `decode peak ${pools.decode.peakReady}`);
    assert.equal(pools.prefill.peakReady, 1);
    assert.equal(pools.prefill.coldStarts, 0);
    for (const e of pools.scaleEvents) {
      assert.equal(e.pool, 'decode');
      assert.match(e.line, /^decode pool -> \d+: (start|drain) i[4-9]\b/);
    }
  });

  it('counts stay within each pool min and max, also when the loops want more or less', () => {
    // The burst wants more prefill instances than 2; the light tail lets the decode pool drain to 2.
    const source = requests({
      kind: 'poisson',
      stages: [
        { rateRps: 6, durationS: 60 },
        { rateRps: 0.5, durationS: 120 },
      ],
      input: { kind: 'fixed', tokens: 8000 },
      output: { kind: 'fixed', tokens: 32 },
    });
    const result = run(source, {
      prefill: pool('slo-planner', 1, 2),
      decode: pool('slo-planner', 4, 5, { minInstances: 2 }),
    });
    assertAllComplete(result, source);
    const prefill = active(result, 'prefill');
    const decode = active(result, 'decode');
    assert.ok(
      prefill.every((n) => n >= 1 && n <= 2),
      'prefill.every((n) => n >= 1 && n <= 2)',
    );
    assert.equal(Math.max(...prefill), 2);
    assert.ok(
      decode.every((n) => n >= 2 && n <= 5),
      'decode.every((n) => n >= 2 && n <= 5)',
    );
    // The decode pool started at 4 and drained down to its minimum, never below.
    assert.equal(decode[0], 4);
    assert.equal(Math.min(...decode), 2);
    assert.ok(
      result.pdPools?.scaleEvents.some((e) => e.pool === 'decode' && e.line.includes('drain')),
      "result.pdPools?.scaleEvents.some((e) => e.pool === 'decode' && e.line.includes('drain'))",
    );
  });

  it('the same seed gives the same pools, scale lines and decisions', () => {
    const source = poisson(6, 60, 8000, 64);
    const pools = { prefill: pool('kpa', 2, 5), decode: pool('saturation', 2, 5) };
    const a = run(source, pools);
    const b = run(source, pools);
    assert.equal(JSON.stringify(a.pdPools), JSON.stringify(b.pdPools));
    assert.equal(a.decisionDigest, b.decisionDigest);
    assert.deepEqual(a.summary.ttftMs, b.summary.ttftMs);
    assertAllComplete(a, source);
  });

  it('each pool loop sees its own role, instances and leg', () => {
    const source = poisson(4, 30, 4000, 200);
    const seen: Record<'prefill' | 'decode', { roles: string[]; ids: string[]; windows: TrafficWindow[] }> = {
      prefill: { roles: [], ids: [], windows: [] },
      decode: { roles: [], ids: [], windows: [] },
    };
    const recording =
      (name: 'prefill' | 'decode') =>
      (context: ControlContext): ControlLoop => ({
        name: 'recording',
        decide: (o) => {
          seen[name].roles.push(
            ...context.variants.map((v) => v.role),
            ...o.instances.map((i) => i.variant.role),
          );
          seen[name].ids.push(...o.view.instances.map((i) => i.id));
          seen[name].windows.push(o.window);
          return singleVariantDecision(context, 2, 'hold');
        },
      });
    const result = run(source, {
      prefill: pool('static', 2, 3, { create: recording('prefill') }),
      decode: pool('static', 2, 3, { create: recording('decode') }),
    });
    assertAllComplete(result, source);
    assert.deepEqual([...new Set(seen.prefill.roles)], ['prefill']);
    assert.deepEqual([...new Set(seen.decode.roles)], ['decode']);
    assert.deepEqual([...new Set(seen.prefill.ids)].sort(), ['i0', 'i1']);
    assert.deepEqual([...new Set(seen.decode.ids)].sort(), ['i3', 'i4']);
    const sum = (ws: TrafficWindow[], f: (w: TrafficWindow) => number) => ws.reduce((n, w) => n + f(w), 0);
    // The prefill leg completes with its one token; the decode leg with the request's output.
    const prefillDone = seen.prefill.windows.filter((w) => w.completions > 0);
    const decodeDone = seen.decode.windows.filter((w) => w.completions > 0);
    assert.ok(
      prefillDone.every((w) => w.meanOutputTokens === 1),
      'prefillDone.every((w) => w.meanOutputTokens === 1)',
    );
    assert.ok(
      decodeDone.every((w) => w.meanOutputTokens === 200),
      'decodeDone.every((w) => w.meanOutputTokens === 200)',
    );
    // Both legs see every request arrive (the decode leg when its prefill ends) with its prompt.
    assert.equal(
      sum(seen.prefill.windows, (w) => w.arrivals),
      source.length,
    );
    assert.ok(
      seen.decode.windows.every((w) => w.arrivals === 0 || w.meanInputTokens === 4000),
      'seen.decode.windows.every((w) => w.arrivals === 0 || w.meanInputTokens === 4000)',
    );
    // The decode leg's TTFT starts at the hand-off: far below the whole request's.
    const decodeTtft = Math.max(...decodeDone.map((w) => w.ttftMsP90));
    const prefillTtft = Math.max(...prefillDone.map((w) => w.ttftMsP90));
    assert.ok(decodeTtft < prefillTtft, `decode leg TTFT p90 ${decodeTtft} vs prefill ${prefillTtft}`);
  });

  it('dynamo-planner on both pools is one joint loop sizing prefill and decode in one decision', () => {
    const source = poisson(25, 90, 512, 1500);
    const params = { demand: 'arrivals', adjustmentIntervalS: 30 };
    const lines: PlacementLogEntry[] = [];
    const result = run(
      source,
      {
        prefill: pool('dynamo-planner', 1, 4, { params }),
        decode: pool('dynamo-planner', 1, 7, { params }),
      },
      (e) => lines.push(e),
    );
    assertAllComplete(result, source);
    const pools = result.pdPools;
    assert.ok(pools !== undefined, 'pools !== undefined');
    assert.equal(pools.joint, true);
    assert.equal(pools.prefill.autoscaler, 'dynamo-planner (joint)');
    assert.ok(pools.decode.peakReady > 1, 'pools.decode.peakReady > 1');
    // One decision names both pools' counts (Dynamo's "xP yD"), and the decode pool applied it.
    const scaled = lines.find((l) => /\d+P \d+D/.test(l.placement));
    assert.equal(scaled?.pool, 'decode', JSON.stringify(lines));
  });

  it('refuses a pool that could empty or starts outside its bounds', () => {
    const source = poisson(1, 5, 512, 16);
    assert.throws(
      () => run(source, { prefill: pool('kpa', 1, 2, { minInstances: 0 }), decode: pool('kpa', 1, 2) }),
      /min-prefill-instances/,
    );
    assert.throws(
      () => run(source, { prefill: pool('kpa', 1, 2), decode: pool('kpa', 3, 2) }),
      /decode-instances.*1\.\.2/,
    );
  });
});
