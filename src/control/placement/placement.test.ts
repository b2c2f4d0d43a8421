import assert from 'node:assert/strict';
import { test } from 'node:test';
import { SwitchyardError } from '../../core/errors.ts';
import { smallestFittingTp } from '../../model/tp-fit.ts';
import type { Variant } from '../types.ts';
import {
  type ClusterNode,
  type ModelWant,
  type Placement,
  type PlacementPlan,
  parseClusterNodes,
  placeReplicas,
} from './index.ts';

const SMALL = 'llama-3.1-8b';
const OTHER = 'qwen2.5-7b';
const LARGE = 'llama-3.1-70b';

const variant = (model: string, tp = 1, gpu = 'h100'): Variant => ({ model, gpu, tp, role: 'both' });
const node = (id: string, gpus = 8, gpu = 'h100'): ClusterNode => ({ id, gpu, gpus });
const want = (
  model: string,
  priority: number,
  replicas: number,
  tp = 1,
  minReplicas = 0,
  gpu = 'h100',
): ModelWant => ({
  model,
  priority,
  minReplicas,
  targets: [{ variant: variant(model, tp, gpu), replicas }],
});
const running = (instanceId: string, n: string, gpuIndices: number[], model: string, tp = 1): Placement => ({
  instanceId,
  variant: variant(model, tp),
  node: n,
  gpuIndices,
});

/** Every plan's invariants: a TP group on one node of its type, no GPU held by two live instances. */
function assertConsistent(nodes: readonly ClusterNode[], plan: PlacementPlan): void {
  const held = new Set<string>();
  for (const p of plan.placements) {
    const n = nodes.find((x) => x.id === p.node);
    assert.ok(n !== undefined, `${p.instanceId} on a missing node`);
    assert.equal(n.gpu, p.variant.gpu, `${p.instanceId} on the wrong GPU type`);
    assert.equal(new Set(p.gpuIndices).size, p.variant.tp, `${p.instanceId} holds ${p.gpuIndices}`);
    for (const g of p.gpuIndices) {
      assert.ok(Number.isInteger(g) && g >= 0 && g < n.gpus, `${p.instanceId} gpu ${g}`);
      if (p.draining === true) continue;
      const key = `${p.node}/${g}`;
      assert.ok(!held.has(key), `${key} held twice`);
      held.add(key);
    }
  }
  assert.equal(plan.log.length, plan.actions.length + plan.unplaced.length);
}

const places = (plan: PlacementPlan) => plan.actions.filter((a) => a.kind === 'place');
const evicts = (plan: PlacementPlan) => plan.actions.filter((a) => a.kind === 'evict');

test('a TP4 group never spans nodes, even with 4 GPUs free across two nodes', () => {
  const nodes = [node('node-1', 4), node('node-2', 4)];
  const current = [
    running(`${SMALL}#1`, 'node-1', [0, 1], SMALL, 2),
    running(`${SMALL}#2`, 'node-2', [2, 3], SMALL, 2),
  ];
  const plan = placeReplicas(nodes, current, [want(LARGE, 0, 1, 4)]);
  assertConsistent(nodes, plan);
  assert.deepEqual(plan.actions, []);
  assert.equal(plan.unplaced.length, 1);
  assert.equal(plan.unplaced[0]?.kind, 'short');
  assert.equal(plan.unplaced[0]?.missing, 1);
  assert.match(plan.unplaced[0]?.reason ?? '', /no h100 node has 4 free GPUs/);
  // With one node emptied, the group goes there whole.
  const freed = placeReplicas(nodes, current.slice(0, 1), [want(LARGE, 0, 1, 4)]);
  assert.deepEqual(
    places(freed).map((a) => [a.node, a.gpuIndices]),
    [['node-2', [0, 1, 2, 3]]],
  );
});

test('an instance goes only to a node of its GPU type', () => {
  const nodes = [node('a-l4', 8, 'l4'), node('b-h100', 2)];
  const plan = placeReplicas(nodes, [], [want(SMALL, 1, 3)]);
  assertConsistent(nodes, plan);
  assert.deepEqual(
    places(plan).map((a) => a.node),
    ['b-h100', 'b-h100'],
  );
  assert.equal(plan.unplaced[0]?.missing, 1);
});

test('best fit leaves a whole node for a later TP8 group where first fit would not', () => {
  const nodes = [node('node-a', 8), node('node-b', 8)];
  const current = [running(`${OTHER}#1`, 'node-b', [0, 1, 2, 3], OTHER, 4)];
  const wants = [want(SMALL, 10, 1, 4), want(LARGE, 5, 1, 8)];
  const plan = placeReplicas(nodes, current, wants);
  assertConsistent(nodes, plan);
  assert.deepEqual(plan.unplaced, []);
  assert.deepEqual(plan.log, [
    `${SMALL}#1 -> node-b gpus 4-7 (best fit: 0 left)`,
    `${LARGE}#1 -> node-a gpus 0-7 (best fit: 0 left)`,
  ]);
});

test('a model that fits no GPU type present is refused with SY_ERR_CAPACITY', () => {
  const nodes = [node('l4-1', 4, 'l4'), node('l4-2', 4, 'l4')];
  const plan = placeReplicas(nodes, [], [want(LARGE, 1, 2, 4, 0, 'l4')]);
  assert.deepEqual(plan.actions, []);
  assert.equal(plan.unplaced.length, 1);
  const [refusal] = plan.unplaced;
  assert.equal(refusal?.code, 'SY_ERR_CAPACITY');
  assert.equal(refusal?.kind, 'unfit');
  assert.equal(refusal?.missing, 2);
  assert.match(refusal?.reason ?? '', /needs \d+\.\d GiB per GPU/);
  assert.match(refusal?.reason ?? '', /llama-3.1-70b fits no GPU type present/);
  // A GPU type no node has: refused, with the types that would fit.
  const absent = placeReplicas(nodes, [], [want(SMALL, 1, 1, 1, 0, 'h100')]);
  assert.equal(absent.unplaced[0]?.kind, 'unfit');
  assert.match(absent.unplaced[0]?.reason ?? '', /no node has h100 GPUs \(fits on: l4 tp1\)/);
  // A TP wider than any node of the type.
  const wide = placeReplicas([node('n', 4)], [], [want(LARGE, 1, 1, 8)]);
  assert.match(wide.unplaced[0]?.reason ?? '', /no h100 node has 8 GPUs \(largest: 4\)/);
});

test('a higher-priority model takes exactly the lowest-priority model instances above its min', () => {
  const nodes = [node('node-1', 8)];
  const current = [
    running(`${OTHER}#1`, 'node-1', [0], OTHER),
    running(`${OTHER}#2`, 'node-1', [1], OTHER),
    running(`${OTHER}#3`, 'node-1', [2], OTHER),
    running(`${SMALL}#1`, 'node-1', [3], SMALL),
    running(`${SMALL}#2`, 'node-1', [4], SMALL),
    running(`${SMALL}#3`, 'node-1', [5], SMALL),
  ];
  const wants = [want(OTHER, 1, 3, 1, 1), want(SMALL, 5, 3, 1, 0), want(LARGE, 10, 1, 4)];
  const plan = placeReplicas(nodes, current, wants);
  assertConsistent(nodes, plan);
  assert.deepEqual(
    evicts(plan).map((a) => [a.instanceId, a.cause]),
    [
      [`${OTHER}#3`, 'preempted'],
      [`${OTHER}#2`, 'preempted'],
    ],
  );
  assert.equal(
    plan.log[0],
    `${OTHER}#3 evicted: ${LARGE} (priority 10) needs 4 GPUs, ${OTHER} (priority 1) above its min 1`,
  );
  const [placed] = places(plan);
  assert.deepEqual(placed?.gpuIndices, [1, 2, 6, 7]);
  assert.deepEqual(placed?.waitsFor, [`${OTHER}#2`, `${OTHER}#3`]);
  assert.equal(
    placed?.reason,
    `${LARGE}#1 -> node-1 gpus 1-2,6-7 (preempting: 0 left; after ${OTHER}#2, ${OTHER}#3 stop)`,
  );
  // The lower model cannot take them back: it is left short.
  assert.deepEqual(
    plan.unplaced.map((u) => [u.model, u.kind, u.missing]),
    [[OTHER, 'short', 2]],
  );
  // Once the low model is at its min, the middle one yields next (newest first, only what is needed).
  const next = placeReplicas(
    nodes,
    plan.placements.filter((p) => p.draining !== true),
    [...wants, want('llama-2-7b', 10, 1, 2)],
  );
  assertConsistent(nodes, next);
  assert.deepEqual(
    evicts(next).map((a) => a.instanceId),
    [`${SMALL}#3`, `${SMALL}#2`],
  );
  assert.equal(next.placements.filter((p) => p.variant.model === OTHER && p.draining !== true).length, 1);
});

test('a model at its min is never preempted: the higher one is left short', () => {
  const nodes = [node('node-1', 4)];
  const current = [0, 1, 2, 3].map((g) => running(`${OTHER}#${g + 1}`, 'node-1', [g], OTHER));
  const plan = placeReplicas(nodes, current, [want(OTHER, 1, 4, 1, 4), want(LARGE, 10, 1, 4)]);
  assert.deepEqual(plan.actions, []);
  assert.deepEqual(
    plan.unplaced.map((u) => [u.model, u.kind]),
    [[LARGE, 'short']],
  );
});

test('a GPU budget caps the total, and a higher priority frees budget from a lower one', () => {
  const nodes = [node('node-1', 8), node('node-2', 8)];
  const capped = placeReplicas(nodes, [], [want(SMALL, 1, 10)], { gpuBudget: 6 });
  assertConsistent(nodes, capped);
  assert.equal(places(capped).length, 6);
  assert.equal(capped.unplaced[0]?.missing, 4);
  assert.match(capped.unplaced[0]?.reason ?? '', /GPU budget 6 reached \(6 in use\)/);

  const current = [0, 1, 2, 3].map((g) => running(`${OTHER}#${g + 1}`, 'node-1', [g], OTHER));
  const plan = placeReplicas(nodes, current, [want(OTHER, 1, 4, 1, 1), want(SMALL, 9, 1, 2)], {
    gpuBudget: 4,
  });
  assertConsistent(nodes, plan);
  assert.deepEqual(
    evicts(plan).map((a) => a.instanceId),
    [`${OTHER}#4`, `${OTHER}#3`],
  );
  const live = plan.placements.filter((p) => p.draining !== true);
  assert.equal(
    live.reduce((n, p) => n + p.variant.tp, 0),
    4,
  );
});

test('running instances are never moved, and the plan is a fixed point', () => {
  const nodes = [node('node-1', 8), node('node-2', 8)];
  // Scattered so that moving them would defragment: placement must not.
  const current = [running(`${SMALL}#1`, 'node-1', [7], SMALL), running(`${SMALL}#2`, 'node-2', [0], SMALL)];
  const wants = [want(SMALL, 1, 5), want(LARGE, 1, 1, 4)];
  const plan = placeReplicas(nodes, current, wants);
  assertConsistent(nodes, plan);
  assert.deepEqual(evicts(plan), []);
  for (const p of current) {
    assert.deepEqual(
      plan.placements.find((q) => q.instanceId === p.instanceId),
      p,
    );
  }
  assert.deepEqual(
    places(plan).map((a) => a.instanceId),
    [`${LARGE}#1`, `${SMALL}#3`, `${SMALL}#4`, `${SMALL}#5`],
  );
  const again = placeReplicas(nodes, plan.placements, wants);
  assert.deepEqual(again.actions, []);
  assert.deepEqual(again.placements, plan.placements);
});

test('scale-down evicts the newest; a new instance on its GPUs waits for it to stop', () => {
  const nodes = [node('node-1', 2)];
  const current = [running(`${SMALL}#1`, 'node-1', [0], SMALL), running(`${SMALL}#2`, 'node-1', [1], SMALL)];
  const plan = placeReplicas(nodes, current, [want(SMALL, 1, 1), want(OTHER, 1, 1)]);
  assertConsistent(nodes, plan);
  assert.deepEqual(plan.log, [
    `${SMALL}#2 evicted: scale-down, ${SMALL}/h100/tp1/both wants 1, has 2`,
    `${OTHER}#1 -> node-1 gpus 1 (best fit: 0 left; after ${SMALL}#2 stops)`,
  ]);
  assert.equal(plan.placements.find((p) => p.instanceId === `${SMALL}#2`)?.draining, true);
  // Next tick, with the drained instance still there: nothing new happens.
  assert.deepEqual(placeReplicas(nodes, plan.placements, [want(SMALL, 1, 1), want(OTHER, 1, 1)]).actions, []);
});

test('the same inputs in any order give the same plan', () => {
  const nodes = [node('b', 8), node('a', 8), node('c', 4)];
  const wants = [want(SMALL, 3, 5), want(OTHER, 3, 3, 2), want(LARGE, 7, 2, 4)];
  const one = placeReplicas(nodes, [], wants);
  const two = placeReplicas([...nodes].reverse(), [], [...wants].reverse());
  assertConsistent(nodes, one);
  assert.deepEqual(two, one);
  assert.deepEqual(one.unplaced, []);
});

test('inconsistent placements are refused with SY_ERR_INVALID_ARGUMENT', () => {
  const nodes = [node('node-1', 4)];
  const bad = (current: Placement[]): unknown => {
    try {
      placeReplicas(nodes, current, []);
    } catch (e) {
      return e instanceof SwitchyardError ? e.code : e;
    }
    return 'accepted';
  };
  assert.equal(bad([running('x#1', 'node-9', [0], SMALL)]), 'SY_ERR_INVALID_ARGUMENT');
  assert.equal(
    bad([running('x#1', 'node-1', [0], SMALL), running('x#2', 'node-1', [0], SMALL)]),
    'SY_ERR_INVALID_ARGUMENT',
  );
  assert.equal(bad([running('x#1', 'node-1', [3, 4], SMALL, 2)]), 'SY_ERR_INVALID_ARGUMENT');
  assert.equal(
    bad([{ ...running('x#1', 'node-1', [0], SMALL), variant: variant(SMALL, 1, 'l4') }]),
    'SY_ERR_INVALID_ARGUMENT',
  );
  const unknown = (wants: ModelWant[]): unknown => {
    try {
      placeReplicas(nodes, [], wants);
    } catch (e) {
      return e instanceof SwitchyardError ? e.code : e;
    }
    return 'accepted';
  };
  assert.equal(unknown([want('no-such-model', 1, 1)]), 'SY_ERR_UNKNOWN_NAME');
  assert.equal(unknown([want(SMALL, 1, 1, 1, 0, 'h900')]), 'SY_ERR_UNKNOWN_NAME');
  assert.equal(unknown([want(SMALL, 1, -1)]), 'SY_ERR_INVALID_ARGUMENT');
  // A draining instance may share its GPUs with the one that replaces it.
  assert.equal(
    bad([{ ...running('x#1', 'node-1', [0], SMALL), draining: true }, running('x#2', 'node-1', [0], SMALL)]),
    'accepted',
  );
});

test('cluster nodes load from the cluster config, and bad fields are named', () => {
  const nodes = parseClusterNodes({ groups: [], nodes: [{ id: 'n1', gpu: 'h100', gpus: 8 }] });
  assert.deepEqual(nodes, [{ id: 'n1', gpu: 'h100', gpus: 8 }]);
  // nvidia-smi's name for the part reads as its catalogue id.
  const smi = parseClusterNodes({ nodes: [{ id: 'n1', gpu: 'NVIDIA A100-SXM4-80GB', gpus: 8 }] });
  assert.deepEqual(smi, [{ id: 'n1', gpu: 'a100-80gb', gpus: 8 }]);
  const code = (section: unknown): string => {
    try {
      parseClusterNodes(section);
    } catch (e) {
      assert.ok(e instanceof SwitchyardError);
      assert.equal(e.code, 'SY_ERR_INVALID_CONFIG');
      return e.message;
    }
    return 'accepted';
  };
  assert.match(
    code({
      nodes: [
        { id: 'n1', gpu: 'h100', gpus: 8 },
        { id: 'n2', gpu: 'h100', gpus: 0 },
      ],
    }),
    /^cluster\.nodes\.1\.gpus: /,
  );
  assert.match(
    code({ nodes: [{ id: 'n1', gpu: 'h900', gpus: 8 }] }),
    /cluster\.nodes\.0\.gpu: unknown gpu 'h900'; valid: .*h100/,
  );
  assert.match(
    code({
      nodes: [
        { id: 'n1', gpu: 'h100', gpus: 8 },
        { id: 'n1', gpu: 'l4', gpus: 1 },
      ],
    }),
    /cluster\.nodes\.1\.id: duplicate node id 'n1'/,
  );
  assert.match(
    code({ nodes: [{ id: 'n1', gpu: 'h100', gpus: 8, memory: 80 }] }),
    /cluster\.nodes\.0: .*memory/,
  );
  assert.match(code({ nodes: [] }), /cluster\.nodes: /);
});

test('served ids on a catalogue base: each is its own model, the fit check reads the base', () => {
  const ft = (
    model: string,
    base: string,
    priority: number,
    replicas: number,
    tp = 1,
    gpu = 'h100',
  ): ModelWant => ({
    ...want(model, priority, replicas, tp, 0, gpu),
    base,
  });
  const plan = placeReplicas([node('n1', 4)], [], [ft('m00', SMALL, 2, 2), ft('m01', SMALL, 1, 2)]);
  assert.deepEqual(
    plan.actions.map((a) => a.instanceId),
    ['m00#1', 'm00#2', 'm01#1', 'm01#2'],
  );
  // A 70B fine-tune on one L4 does not fit: the message names the served id and its base.
  const unfit = placeReplicas([node('l', 4, 'l4')], [], [ft('big', LARGE, 1, 1, 1, 'l4')]);
  assert.match(unfit.unplaced[0]?.reason ?? '', /SY_ERR_CAPACITY big \(llama-3\.1-70b\) at tp1 needs/);
  assert.throws(
    () => placeReplicas([node('n1')], [], [ft('m02', 'llama-9', 1, 1)]),
    /unknown model 'llama-9'/,
  );
});

test('a TP that fits the weights but leaves KV for under one step is unfit (the serverless TP rule)', () => {
  // Llama-3.1-70B at TP 2 on H100s: its weights fit, but with the reserve sized for the 1,024
  // sequences vllm serve runs there, KV is left for 378 tokens: nearly every request of a normal
  // prompt would be refused. TP 4, which the serverless host picks, fits.
  const nodes = [node('node-1', 8)];
  const plan = placeReplicas(nodes, [], [want(LARGE, 1, 1, 2)]);
  assert.deepEqual(plan.actions, []);
  assert.equal(plan.unplaced[0]?.kind, 'unfit');
  assert.match(
    plan.unplaced[0]?.reason ?? '',
    /llama-3\.1-70b at tp2 leaves KV cache for \d+ tokens, under the 8192 of one step .*\(fits on: h100 tp4\)/,
  );
  assert.equal(places(placeReplicas(nodes, [], [want(LARGE, 1, 1, 4)])).length, 1);
  // The same check the serverless host's TP choice makes, for every catalogue model and GPU.
  for (const m of [SMALL, OTHER, LARGE]) {
    for (const gpu of ['h100', 'a100-80gb', 'l4']) {
      const chosen = smallestFittingTp(m, gpu, 8);
      const hint = placeReplicas([node('n', 8, gpu)], [], [want(m, 1, 1, 64, 0, gpu)]).unplaced[0]?.reason;
      assert.match(
        hint ?? '',
        chosen === undefined ? /fits no GPU type present/ : new RegExp(`fits on: ${gpu} tp${chosen}\\)`),
      );
    }
  }
  // The engines' batch limits size the check: with 256 sequences and 2,048 tokens a step, TP 2 has room.
  const small = placeReplicas(
    nodes,
    [],
    [{ ...want(LARGE, 1, 1, 2), engine: { maxNumSeqs: 256, maxNumBatchedTokens: 2048 } }],
  );
  assert.deepEqual(small.unplaced, []);
  // And the engine's memory share: at gpu_memory_utilization 0.95 TP 2 leaves room too.
  assert.deepEqual(
    placeReplicas(nodes, [], [want(LARGE, 1, 1, 2)], { gpuMemoryUtilization: 0.95 }).unplaced,
    [],
  );
});
