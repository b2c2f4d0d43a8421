import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { ControlContext, ControlLoop, ControlObservation } from '../control/types.ts';
import { singleVariantDecision } from '../control/types.ts';
import { Rng } from '../core/rng.ts';
import { DEFAULT_ENGINE_CONFIG } from '../engine-core/types.ts';
import { startupTimeMs } from '../model/startup.ts';
import { createRoutingPolicy } from '../policies/routing/registry.ts';
import { createWorkload } from '../workload/create.ts';
import type { TwinRequest } from '../workload/types.ts';
import type { SimInstance } from './cluster.ts';
import type { ControlSettings } from './control-host.ts';
import { type DecisionLogEntry, runSimulation, type SimOptions } from './simulator.ts';

const MAX = 3;

function options(control: ControlSettings, overrides: Partial<SimOptions> = {}): SimOptions {
  return {
    seed: 1,
    cluster: { groups: [{ count: MAX, gpu: 'h100', model: 'llama-3.1-8b', tp: 1 }] },
    engine: DEFAULT_ENGINE_CONFIG,
    policy: createRoutingPolicy('least-request'),
    slo: { ttftMs: 1000, tpotMs: 50 },
    workload: 'test',
    control,
    ...overrides,
  };
}

/** Constant-rate requests: `rateRps` for `durationS`, fixed lengths. */
function constant(rateRps: number, durationS: number, outputTokens = 64): TwinRequest[] {
  return [
    ...createWorkload(
      {
        kind: 'constant',
        rateRps,
        durationS,
        input: { kind: 'fixed', tokens: 512 },
        output: { kind: 'fixed', tokens: outputTokens },
      },
      new Rng(1),
    ),
  ];
}

/**
 * A loop that wants `plan(nowMs)` replicas and records every observation it is given, copied at the
 * call (the host's view and history are live objects, valid during the call).
 */
function scripted(plan: (nowMs: number) => number, seen: ControlObservation[]): ControlSettings['create'] {
  return (context: ControlContext): ControlLoop => ({
    name: 'scripted',
    decide: (o) => {
      const view = { nowMs: o.view.nowMs, instances: o.view.instances.map((i) => ({ ...pick(i) })) };
      seen.push({ ...o, view: view as unknown as ControlObservation['view'], history: [...o.history] });
      return singleVariantDecision(context, plan(o.nowMs), 'script');
    },
  });
}

function pick(i: ControlObservation['view']['instances'][number]) {
  return { id: i.id, draining: i.draining, inFlight: i.inFlight, healthy: i.healthy };
}

function settings(create: ControlSettings['create'], extra: Partial<ControlSettings> = {}): ControlSettings {
  return { autoscaler: 'scripted', create, minInstances: 1, maxInstances: MAX, intervalMs: 1000, ...extra };
}

describe('control host', () => {
  it('routes to a started instance only after its start-up time, billing its GPUs from the start', () => {
    const seen: ControlObservation[] = [];
    const startupMs = 5000;
    const log: DecisionLogEntry[] = [];
    const result = runSimulation(
      constant(10, 30),
      options(
        settings(
          scripted((t) => (t >= 10_000 ? 2 : 1), seen),
          { startupMs },
        ),
        {
          onDecision: (e) => log.push(e),
        },
      ),
    );
    const s = result.summary;
    assert.equal(s.completed + s.rejected, s.requests);
    assert.equal(s.rejected, 0);
    const toSecond = log.filter((e) => e.instance === 'i1');
    assert.ok(toSecond.length > 0, 'the started instance takes requests once ready');
    const firstAtMs = Math.min(...toSecond.map((e) => e.atMs));
    assert.ok(firstAtMs >= 10_000 + startupMs, `first request to i1 at ${firstAtMs}`);
    assert.ok(!log.some((e) => e.instance === 'i2'), 'the third instance never started');
    // While it starts, the loop sees it as starting and the view holds only the ready one.
    const during = seen.find((o) => o.nowMs === 12_000) as ControlObservation;
    assert.deepEqual(
      during.instances.map((i) => [i.id, i.phase]),
      [
        ['i0', 'ready'],
        ['i1', 'starting'],
      ],
    );
    assert.deepEqual(
      during.view.instances.map((i) => i.id),
      ['i0'],
    );
    assert.equal(result.coldStarts, 1);
    // i0 from 0, i1 from its start at 10 s (not from ready at 15 s), both to the last completion.
    const endMs = s.simulatedSeconds * 1000;
    const expectedGpuMs = endMs + (endMs - 10_000);
    assert.ok(Math.abs((result.gpuHours as number) * 3_600_000 - expectedGpuMs) < 1e-6, `${result.gpuHours}`);
    const starting = result.instancesOverTime?.find((p) => p.timeS === 12);
    assert.deepEqual(starting, { timeS: 12, ready: 1, starting: 1, draining: 0, desired: 2, arrivalRps: 10 });
  });

  it('a draining instance finishes its running requests before it releases its GPUs', () => {
    const seen: ControlObservation[] = [];
    // Long outputs, so requests are running on i1 when the loop drops it at 10 s.
    const requests = constant(4, 20, 600);
    const result = runSimulation(
      requests,
      options(
        settings(
          scripted((t) => (t >= 10_000 ? 1 : 2), seen),
          { startupMs: 0 },
        ),
      ),
    );
    const s = result.summary;
    assert.equal(s.completed, requests.length, 'no request lost');
    assert.equal(s.rejected, 0);
    const drainTick = seen.find((o) => o.nowMs === 11_000) as ControlObservation;
    assert.deepEqual(
      drainTick.instances.map((i) => [i.id, i.phase]),
      [
        ['i0', 'ready'],
        ['i1', 'draining'],
      ],
    );
    const drained = drainTick.view.instances.find((i) => i.id === 'i1');
    assert.ok(drained?.draining === true && drained.inFlight > 0, 'still finishing its work');
    const gone = seen.find((o) => o.nowMs > 11_000 && !o.instances.some((i) => i.id === 'i1'));
    assert.ok(gone !== undefined, 'released once its requests ended');
    // i1 was billed from 0 to its last completion: less than the whole run, more than 10 s.
    const endMs = s.simulatedSeconds * 1000;
    const i1Ms = (result.gpuHours as number) * 3_600_000 - endMs;
    assert.ok(i1Ms > 10_000 && i1Ms < endMs, `i1 billed ${i1Ms} ms of ${endMs}`);
  });

  it('builds windows from what the host saw', () => {
    const seen: ControlObservation[] = [];
    runSimulation(
      constant(10, 10),
      options(
        settings(
          scripted(() => 1, seen),
          { startupMs: 0 },
        ),
      ),
    );
    const w = (seen.find((o) => o.nowMs === 5000) as ControlObservation).window;
    assert.equal(w.startMs, 4000);
    assert.equal(w.endMs, 5000);
    assert.equal(w.arrivals, 10);
    assert.equal(w.meanInputTokens, 512);
    assert.ok(w.completions > 0 && w.meanOutputTokens === 64);
    assert.ok(w.meanConcurrency > 0 && w.meanConcurrency < 20, `concurrency ${w.meanConcurrency}`);
    assert.ok(w.ttftMsP90 >= w.ttftMsP50 && w.ttftMsP50 > 0);
    assert.ok(w.tpotMsMean > 0);
    assert.ok(w.sloAttainment >= 0 && w.sloAttainment <= 1);
    const o = seen.find((x) => x.nowMs === 5000) as ControlObservation;
    assert.equal(o.history.at(-1), w);
    assert.equal(o.history.length, 6, 'the empty window at 0 and five ticks');
  });

  it('a load step makes kpa ask for more instances, which start and serve', () => {
    // 5 req/s then 60 req/s of long requests on one H100: KPA's concurrency target is exceeded.
    const low = constant(5, 20, 300);
    const high = constant(60, 60, 300).map((r) => ({
      ...r,
      id: `h${r.id}`,
      arrivalMs: r.arrivalMs + 20_000,
    }));
    const result = runSimulation(
      [...low, ...high],
      options({
        autoscaler: 'kpa',
        params: { containerConcurrency: 16 },
        minInstances: 1,
        maxInstances: MAX,
        intervalMs: 2000,
      }),
    );
    const s = result.summary;
    assert.equal(s.completed + s.rejected, s.requests);
    assert.ok((result.coldStarts as number) >= 1, `cold starts ${result.coldStarts}`);
    const series = result.instancesOverTime ?? [];
    assert.equal(series[0]?.ready, 1, 'one instance before the step');
    assert.ok(
      series.some((p) => p.timeS > 20 && p.desired > 1),
      'the loop asks for more after the step',
    );
    const startupS = startupTimeMs({ gpu: 'h100', model: 'llama-3.1-8b', tp: 1 }) / 1000;
    const firstMore = series.find((p) => p.ready > 1);
    assert.ok(firstMore !== undefined && firstMore.timeS >= 20 + startupS, `${JSON.stringify(firstMore)}`);
    assert.ok(s.perInstance.filter((i) => i.requests > 0).length > 1, 'a started instance served');
  });

  it('an instance that stops and starts again comes back with an empty engine; the run keeps counting', () => {
    // Shared system prompts fill i0's prefix cache; it stops at 10 s and starts again at 20 s.
    const prompts = (startMs: number): TwinRequest[] =>
      [
        ...createWorkload(
          {
            kind: 'system-prompts',
            rateRps: 10,
            groups: 2,
            prefixTokens: 2048,
            suffix: { kind: 'fixed', tokens: 64 },
            output: { kind: 'fixed', tokens: 16 },
            durationS: 5,
          },
          new Rng(1),
        ),
      ].map((r) => ({ ...r, id: `${startMs}-${r.id}`, arrivalMs: r.arrivalMs + startMs }));
    const seen = new Map<number, { instance: SimInstance; cachedFree: number; hits: number }>();
    const probe: ControlSettings['create'] = (context) => ({
      name: 'probe',
      decide: (o) => {
        const instance = o.view.instances[0] as SimInstance | undefined;
        if (instance !== undefined) {
          const e = instance.engine;
          seen.set(o.nowMs, { instance, cachedFree: e.kvBlocksCachedFree, hits: e.prefixHitTokens });
        }
        return singleVariantDecision(context, o.nowMs >= 10_000 && o.nowMs < 20_000 ? 0 : 1, 'probe');
      },
    });
    const requests = [...prompts(0), ...prompts(25_000)];
    const result = runSimulation(
      requests,
      options(settings(probe, { startupMs: 0, minInstances: 0, maxInstances: 1 }), {
        cluster: { groups: [{ count: 1, gpu: 'h100', model: 'llama-3.1-8b', tp: 1 }] },
      }),
    );
    const before = seen.get(9000);
    const after = seen.get(21_000);
    assert.ok(before !== undefined && after !== undefined);
    assert.equal(before.instance, after.instance, 'the same instance');
    assert.ok(before.cachedFree > 0 && before.hits > 0, 'its first engine had cached the prompts');
    assert.equal(after.cachedFree, 0, 'restarted with no prefix cache');
    assert.equal(after.hits, 0);
    assert.equal(after.instance.engine.kvBlocksUsed, 0);
    assert.equal(result.coldStarts, 1);
    // The summary counts both lives of the instance.
    assert.equal(result.summary.completed, requests.length);
    assert.ok((result.summary.engineSteps ?? 0) > after.instance.engine.steps);
  });

  it('a pool at zero holds requests until its first instance is ready (min 0)', () => {
    const seen: ControlObservation[] = [];
    const log: DecisionLogEntry[] = [];
    const requests = constant(5, 1).map((r) => ({ ...r, arrivalMs: r.arrivalMs + 2500 }));
    const result = runSimulation(
      requests,
      options(
        settings(
          scripted((t) => (t >= 3000 ? 1 : 0), seen),
          { startupMs: 4000, minInstances: 0 },
        ),
        { onDecision: (e) => log.push(e) },
      ),
    );
    assert.equal(result.summary.completed, requests.length);
    assert.equal(
      seen.find((o) => o.nowMs === 3000)?.window.queuedAtEnd,
      3,
      'the loop sees the held requests',
    );
    // Started at 3 s, ready at 7 s: the held requests go first, then later arrivals (none here).
    assert.deepEqual(new Set(log.map((e) => `${e.atMs} ${e.instance}`)), new Set(['7000 i0']));
  });

  it("instancesOverTime ends at the run's end, where gpuHours stops billing", () => {
    // Served by one instance until 3 s; a request at 20 s is held at zero (the loop wants 0) until its
    // deadline and refused: the host ticks on past the last completion, which the series must not show.
    const seen: ControlObservation[] = [];
    const early = constant(2, 2);
    const late = constant(1, 1).map((r) => ({ ...r, id: `late${r.id}`, arrivalMs: r.arrivalMs + 20_000 }));
    const result = runSimulation(
      [...early, ...late],
      options(
        settings(
          scripted((t) => (t < 3000 ? 1 : 0), seen),
          { minInstances: 0 },
        ),
      ),
    );
    const ticksAfter = seen.filter((o) => o.nowMs > 20_000).length;
    assert.ok(ticksAfter > 0, 'the host ticked while the late request was held');
    const series = result.instancesOverTime ?? [];
    const last = series[series.length - 1];
    assert.ok(last !== undefined && last.timeS < 20, `series ends at ${last?.timeS} s`);
  });

  it('rejects a pool that is not maxInstances of one variant', () => {
    const seen: ControlObservation[] = [];
    assert.throws(
      () =>
        runSimulation(
          constant(1, 1),
          options(
            settings(
              scripted(() => 1, seen),
              { maxInstances: 2 },
            ),
          ),
        ),
      /maxInstances/,
    );
  });
});
