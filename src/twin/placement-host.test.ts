import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { ControlContext, ControlLoop, ControlObservation } from '../control/types.ts';
import { singleVariantDecision } from '../control/types.ts';
import { Rng } from '../core/rng.ts';
import { DEFAULT_ENGINE_CONFIG } from '../engine-core/types.ts';
import { createRoutingPolicy } from '../policies/routing/registry.ts';
import { createWorkload } from '../workload/create.ts';
import type { TwinRequest } from '../workload/types.ts';
import { isPlacementCluster, parseWithSchema, simConfigFileSchema, toPlacementSettings } from './config.ts';
import type { PlacementLogEntry } from './control-host.ts';
import { type PlacedModel, type PlacementSettings, placementCluster } from './placement-host.ts';
import { type DecisionLogEntry, runSimulation, type SimOptions, type SimResult } from './simulator.ts';

/** Constant-rate requests for one served model, ids prefixed by the model. */
function constant(model: string, rateRps: number, durationS: number, startMs = 0): TwinRequest[] {
  const spec = {
    kind: 'constant' as const,
    rateRps,
    durationS,
    model,
    input: { kind: 'fixed' as const, tokens: 512 },
    output: { kind: 'fixed' as const, tokens: 64 },
  };
  return [...createWorkload(spec, new Rng(1))].map((r) => ({
    ...r,
    id: `${model}-${r.id}`,
    arrivalMs: r.arrivalMs + startMs,
  }));
}

/** Several models' requests in arrival order (ties by id, so the order is fixed). */
function merged(...streams: TwinRequest[][]): TwinRequest[] {
  return streams.flat().sort((a, b) => a.arrivalMs - b.arrivalMs || (a.id < b.id ? -1 : 1));
}

/** A loop that wants `plan(observation)` replicas and keeps a copy of what it saw. */
function scripted(
  plan: (o: ControlObservation) => number,
  seen?: ControlObservation[],
): PlacedModel['create'] {
  return (context: ControlContext): ControlLoop => ({
    name: 'scripted',
    decide: (o) => {
      seen?.push({ ...o, instances: [...o.instances], history: [] });
      return singleVariantDecision(context, plan(o), 'script');
    },
  });
}

function model(id: string, base: string, priority: number, extra: Partial<PlacedModel>): PlacedModel {
  return {
    id,
    base,
    gpu: 'h100',
    tp: 1,
    priority,
    autoscaler: 'scripted',
    minInstances: 1,
    maxInstances: 4,
    startupMs: 2000,
    ...extra,
  };
}

function run(
  placement: PlacementSettings,
  requests: TwinRequest[],
  logs?: { decisions?: DecisionLogEntry[]; placements?: PlacementLogEntry[] },
): SimResult {
  const options: SimOptions = {
    seed: 7,
    cluster: placementCluster(placement),
    engine: DEFAULT_ENGINE_CONFIG,
    policy: createRoutingPolicy('least-request'),
    slo: { ttftMs: 2000, tpotMs: 100 },
    workload: 'test',
    placement,
    onDecision: logs?.decisions === undefined ? undefined : (e) => logs.decisions?.push(e),
    onPlacement: logs?.placements === undefined ? undefined : (e) => logs.placements?.push(e),
  };
  return runSimulation(requests, options);
}

/** One 4-GPU node under a 4-GPU budget: chat (priority 10) grows at 10 s, batchy (1) must yield. */
function contended(): PlacementSettings {
  return {
    nodes: [{ id: 'node-1', gpu: 'h100', gpus: 8 }],
    gpuBudget: 4,
    intervalMs: 1000,
    models: [
      model('chat', 'llama-3.1-8b', 10, { create: scripted((o) => (o.nowMs >= 10_000 ? 3 : 1)) }),
      model('batchy', 'qwen2.5-7b', 1, { create: scripted(() => 3) }),
    ],
  };
}

describe('placement host', () => {
  it('two models under a GPU budget: the lower priority yields, in the log, and no request is lost', () => {
    const placements: PlacementLogEntry[] = [];
    const decisions: DecisionLogEntry[] = [];
    const requests = merged(constant('chat', 8, 30), constant('batchy', 4, 30));
    const result = run(contended(), requests, { placements, decisions });
    const s = result.summary;
    assert.equal(s.completed, requests.length, 'every request of both models completes');
    const lines = placements.map((p) => `${p.atMs} ${p.placement}`);
    // Time 0: chat 1 + batchy 3 fill the budget.
    assert.ok(lines.includes('0 chat#1 -> node-1 gpus 0 (best fit: 7 left)'), lines.join('\n'));
    assert.ok(lines.some((l) => l.startsWith('0 batchy#3 -> node-1')));
    // At 10 s chat wants 3: it takes two of batchy's (the newest), never below batchy's min 1.
    const evicted = lines.filter((l) => l.includes('evicted: chat (priority 10) needs 1 GPUs'));
    assert.deepEqual(
      evicted.map((l) => l.split(' ')[0] + ' ' + l.split(' ')[1]),
      ['10000 batchy#3', '10000 batchy#2'],
    );
    assert.ok(
      lines.some((l) => /^10000 chat#2 -> node-1 .*preempting.*after batchy#3 stops/.test(l)),
      lines.join('\n'),
    );
    const models = result.models ?? [];
    const chat = models.find((m) => m.model === 'chat');
    const batchy = models.find((m) => m.model === 'batchy');
    assert.equal(batchy?.preempted, 2);
    assert.equal(chat?.preempted, 0);
    assert.equal(chat?.coldStarts, 2, 'two instances started after time 0');
    // GPUs held (starting, ready, draining) never exceed the budget; pending instances hold none.
    for (const p of result.instancesOverTime ?? []) {
      assert.ok(p.ready + p.starting + p.draining <= 4, JSON.stringify(p));
    }
    // The new chat instances start only after batchy's victims stopped: no chat request reaches
    // a third instance before 10 s + the start-up.
    const chatInstances = new Set(
      decisions.filter((d) => d.requestId.startsWith('chat-')).map((d) => d.instance as string),
    );
    assert.equal(chatInstances.size, 3, [...chatInstances].join());
    const late = decisions.filter((d) => d.requestId.startsWith('chat-') && d.instance !== 'i0');
    assert.ok(Math.min(...late.map((d) => d.atMs)) >= 12_000);
    // The run's totals are the models' sums.
    const sum = models.reduce((x, m) => x + m.gpuHours, 0);
    assert.ok(Math.abs((result.gpuHours as number) - sum) < 1e-12);
    assert.deepEqual(result.placementLog, placements, 'the result keeps the same lines');
    // Per-model SLO figures: batchy kept one instance for its 4 req/s and met its SLO.
    assert.equal(batchy?.requests, constant('batchy', 4, 30).length);
    assert.ok((batchy?.sloAttainment ?? 0) > 0.9, `${batchy?.sloAttainment}`);
  });

  it('a shortage is logged when it changes, not at every tick', () => {
    const placements: PlacementLogEntry[] = [];
    const settings: PlacementSettings = {
      nodes: [{ id: 'node-1', gpu: 'h100', gpus: 2 }],
      intervalMs: 1000,
      models: [
        model('chat', 'llama-3.1-8b', 10, { create: scripted(() => 3) }),
        model('batchy', 'qwen2.5-7b', 1, { create: scripted(() => 1), minInstances: 1 }),
      ],
    };
    const result = run(settings, constant('chat', 2, 10), { placements });
    // Chat (higher priority) takes both GPUs first: batchy's minimum guards only against preemption.
    const short = placements
      .filter((p) => p.placement.includes('short'))
      .map((p) => [p.atMs, p.placement.split(':')[0]]);
    assert.deepEqual(short, [
      [0, 'chat/h100/tp1/both'],
      [0, 'batchy/h100/tp1/both'],
      [1000, 'chat/h100/tp1/both'],
    ]);
    assert.match(
      placements[2]?.placement ?? '',
      /chat\/h100\/tp1\/both: 2 of 3 wanted placed, 1 short: SY_ERR_CAPACITY/,
    );
    assert.match(placements[4]?.placement ?? '', /chat\/h100\/tp1\/both: 0 of 1 wanted placed/);
    const chat = result.models?.find((m) => m.model === 'chat');
    assert.ok((chat?.shortTicks ?? 0) >= 9, `${chat?.shortTicks}`);
  });

  it('a model at zero holds its requests and releases them to its first ready instance', () => {
    const seen: ControlObservation[] = [];
    const decisions: DecisionLogEntry[] = [];
    // Wants an instance while anything is queued or in flight for it: a scale-from-zero rule.
    const fromZero = scripted(
      (o) => (o.window.queuedAtEnd > 0 || o.window.meanConcurrency > 0 ? 1 : 0),
      seen,
    );
    const settings: PlacementSettings = {
      nodes: [{ id: 'node-1', gpu: 'h100', gpus: 8 }],
      intervalMs: 1000,
      models: [model('cold', 'llama-3.1-8b', 1, { create: fromZero, minInstances: 0, startupMs: 3000 })],
    };
    const requests = constant('cold', 4, 1, 5100);
    const result = run(settings, requests, { decisions });
    assert.equal(result.summary.completed, requests.length, 'every held request is served');
    // Arrivals at 5.1-5.85 s are held; the tick at 6 s sees them and starts an instance, ready at 9 s.
    const tick6 = seen.find((o) => o.nowMs === 6000);
    assert.equal(tick6?.window.queuedAtEnd, requests.length);
    assert.deepEqual(
      decisions.map((d) => [d.atMs, d.instance]),
      requests.map(() => [9000, 'i0']),
    );
    const cold = result.models?.[0];
    assert.equal(cold?.coldStarts, 1);
    // Billed from its start at 6 s (not from ready at 9 s) to the run's end.
    const endMs = result.summary.simulatedSeconds * 1000;
    assert.ok(Math.abs((cold?.gpuHours ?? 0) * 3_600_000 - (endMs - 6000)) < 1e-6, `${cold?.gpuHours}`);
  });

  it('a held request that waits past its bound fails (cold_start_timeout, as the gateway counts it); a full buffer refuses', () => {
    const decisions: DecisionLogEntry[] = [];
    const settings: PlacementSettings = {
      nodes: [{ id: 'node-1', gpu: 'h100', gpus: 8 }],
      intervalMs: 1000,
      heldMax: 3,
      heldWaitMs: 2000,
      models: [
        model('cold', 'llama-3.1-8b', 1, {
          create: scripted((o) => (o.window.queuedAtEnd > 0 ? 1 : 0)),
          minInstances: 0,
          startupMs: 5000,
        }),
      ],
    };
    const requests = constant('cold', 4, 1, 500);
    const result = run(settings, requests, { decisions });
    const s = result.summary;
    assert.equal(s.completed, 0);
    // Held means accepted at the gateway: leaving the buffer unserved is failed{cold_start_timeout};
    // only the full buffer's 429 is a rejection. Neither is served: `rejected` counts all four.
    assert.deepEqual(s.rejectedByCode, { SY_ERR_SCALE_BUFFER_FULL: 1 });
    assert.deepEqual(s.failedByReason, { cold_start_timeout: 3 });
    assert.equal(s.rejected, 4);
    // The fourth arrival found three held: refused at once; the held ones at arrival + 2 s.
    const refused = decisions.map((d) => [d.requestId, d.atMs, d.code]);
    assert.deepEqual(refused, [
      ['cold-r3', 1250, 'SY_ERR_SCALE_BUFFER_FULL'],
      ['cold-r0', 2500, 'SY_ERR_COLD_START_TIMEOUT'],
      ['cold-r1', 2750, 'SY_ERR_COLD_START_TIMEOUT'],
      ['cold-r2', 3000, 'SY_ERR_COLD_START_TIMEOUT'],
    ]);
  });

  it('the same seed gives the same result, placement log included', () => {
    const requests = merged(constant('chat', 8, 20), constant('batchy', 4, 20));
    const strip = (r: SimResult): string => {
      const { wallSeconds: _w, eventsPerWallS: _e, decisionUs: _d, ...summary } = r.summary;
      return JSON.stringify({ ...r, summary, report: undefined });
    };
    const a = strip(run(contended(), requests));
    const b = strip(run(contended(), requests));
    assert.ok(a === b, 'identical results');
    assert.ok(
      a.includes('"placementLog":[{"atMs":0,"placement":"chat#1 -> node-1'),
      'with the placement log',
    );
  });

  it('reads the multi-model cluster config: GPU type from the nodes, base from the id, bad fields named', () => {
    const file = parseWithSchema(
      simConfigFileSchema,
      {
        cluster: {
          nodes: [{ id: 'n1', gpu: 'h100', gpus: 8 }],
          gpuBudget: 4,
          models: [
            { id: 'llama-3.1-8b', autoscaler: { name: 'kpa', maxInstances: 2 } },
            {
              id: 'ft',
              base: 'qwen2.5-7b',
              tp: 2,
              priority: 3,
              autoscaler: { name: 'static', maxInstances: 1 },
            },
          ],
        },
      },
      'config',
    );
    assert.ok(isPlacementCluster(file.cluster));
    const settings = toPlacementSettings(file.cluster);
    assert.deepEqual(
      settings.models.map((m) => [m.id, m.base, m.gpu, m.tp, m.priority, m.minInstances, m.maxInstances]),
      [
        ['llama-3.1-8b', 'llama-3.1-8b', 'h100', 1, 0, 1, 2],
        ['ft', 'qwen2.5-7b', 'h100', 2, 3, 1, 1],
      ],
    );
    assert.deepEqual(placementCluster(settings).groups[1], {
      count: 1,
      gpu: 'h100',
      model: 'ft',
      base: 'qwen2.5-7b',
      tp: 2,
    });
    const bad = {
      cluster: {
        nodes: [
          { id: 'n1', gpu: 'h100', gpus: 8 },
          { id: 'n2', gpu: 'l4', gpus: 4 },
        ],
        models: [
          { id: 'a', base: 'llama-9', autoscaler: { name: 'kpa', maxInstances: 2 } },
          {
            id: 'a',
            base: 'qwen2.5-7b',
            gpu: 'h100',
            autoscaler: { name: 'kpa', minInstances: 3, maxInstances: 2, x: 1 },
          },
        ],
      },
    };
    assert.throws(
      () => parseWithSchema(simConfigFileSchema, bad, 'config'),
      (e: Error & { code?: string }) => {
        assert.equal(e.code, 'SY_ERR_INVALID_CONFIG');
        assert.match(e.message, /cluster\.models\.1\.autoscaler: Unrecognized key: "x"/);
        const parts = [
          /cluster\.models\.0\.base: unknown model 'llama-9'/,
          /cluster\.models\.0\.gpu: required: the nodes have several GPU types \(h100, l4\)/,
          /cluster\.models\.1\.id: duplicate model id 'a'/,
          /cluster\.models\.1\.autoscaler\.minInstances: above maxInstances \(2\)/,
        ];
        for (const part of parts) assert.match(e.message, part);
        return true;
      },
    );
  });
});
