import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Rng } from '../../core/rng.ts';
import type { ClusterNode } from '../placement/nodes.ts';
import { type InstanceInfo, ModelCache } from './cache.ts';
import { type ChooseOptions, firstFitNode, nodeChoices, startupAwareNode } from './choose.ts';
import { resolveNodeTiers } from './tiers.ts';

const MODELS = [
  { id: 'm70', base: 'llama-3.1-70b', tp: 4 },
  { id: 'ft-1', base: 'llama-3.1-8b' },
  { id: 'ft-2', base: 'llama-3.1-8b' },
  { id: 'ft-3', base: 'llama-3.1-8b' },
];

function cache(nodes: readonly ClusterNode[]): ModelCache {
  return new ModelCache({ nodes: resolveNodeTiers(nodes), models: MODELS });
}

const twoNodes = (gpus: number): ClusterNode[] => [
  { id: 'node-a', gpu: 'h100', gpus },
  { id: 'node-b', gpu: 'h100', gpus },
];

describe('start-up-aware node choice', () => {
  it('picks the node whose DRAM holds the model where first fit downloads it', () => {
    const c = cache(twoNodes(4));
    // m70 ran on node-b an hour ago: its 141 GB are still in node-b's DRAM.
    const ran = c.load('m70', 'node-b', 0);
    c.unload('m70', 'node-b', ran.readyAtMs + 60_000);
    const now = 3_600_000;

    const blind = firstFitNode(c, 'm70', now);
    const aware = startupAwareNode(c, 'm70', now);
    assert.ok(blind !== undefined && aware !== undefined);
    assert.deepEqual([blind.node, blind.fromTier, blind.how], ['node-a', 'remote', 'free']);
    assert.deepEqual([aware.node, aware.fromTier, aware.how], ['node-b', 'dram', 'free']);
    // Same engine start-up on both; only reading the weights differs: 141 GB at 2.5 GB/s against
    // four 35 GB shards over four 25 GB/s PCIe links.
    assert.equal(aware.engineInitMs, blind.engineInitMs);
    assert.ok(
      blind.weightsMs > 50_000 && aware.weightsMs < 2_000,
      `${blind.weightsMs} vs ${aware.weightsMs}`,
    );
    assert.ok(Math.abs(blind.readyInMs - aware.readyInMs - (blind.weightsMs - aware.weightsMs)) < 1e-6);

    // Applying the choice costs what it said.
    const loaded = c.load('m70', aware.node, now);
    assert.equal(loaded.startupMs, aware.startupMs);
  });

  it('counts queueing: a busy SSD sends the load to a node whose SSD is free', () => {
    const c = new ModelCache({
      nodes: resolveNodeTiers(twoNodes(2), { defaults: { dram: { capacityBytes: 0 } } }),
      models: MODELS,
    });
    for (const node of ['node-a', 'node-b']) {
      for (const m of ['ft-1', 'ft-2']) {
        c.load(m, node, 0);
        c.unload(m, node, 0);
      }
    }
    // At t=100 s node-a's SSD starts reading ft-2; ft-1 would queue behind it there.
    c.load('ft-2', 'node-a', 100_000);
    const choice = startupAwareNode(c, 'ft-1', 100_000);
    assert.deepEqual([choice?.node, choice?.fromTier, choice?.queuedMs], ['node-b', 'ssd', 0]);
    const queued = nodeChoices(c, 'ft-1', 100_000).find((x) => x.node === 'node-a');
    assert.ok(queued !== undefined && queued.queuedMs > 2_000);
  });

  it('evicts an idle instance where that beats waiting for a release, and waits where it does not', () => {
    const c = cache(twoNodes(1));
    const idle = c.load('ft-1', 'node-a', 0);
    const busy = c.load('ft-2', 'node-b', 0);
    const now = 100_000;
    const isIdle = (i: InstanceInfo): boolean => i.id === idle.instanceId;
    const releaseAtMs = (i: InstanceInfo): number | undefined =>
      i.id === busy.instanceId ? now + 5_000 : undefined;

    const evict = startupAwareNode(c, 'ft-3', now, { isIdle, releaseAtMs, evictStopMs: 1_000 });
    assert.deepEqual([evict?.node, evict?.how, evict?.evict], ['node-a', 'evict', [idle.instanceId]]);
    assert.equal(evict?.gpuWaitMs, 1_000);

    const wait = startupAwareNode(c, 'ft-3', now, { isIdle, releaseAtMs, evictStopMs: 10_000 });
    assert.deepEqual([wait?.node, wait?.how, wait?.evict], ['node-b', 'wait', []]);
    assert.equal(wait?.gpuWaitMs, 5_000);
    assert.equal(wait?.readyInMs, 5_000 + (wait?.startupMs ?? 0));

    // Without knowing what is idle or when GPUs free, there is no option at all.
    assert.equal(startupAwareNode(c, 'ft-3', now), undefined);
    assert.equal(firstFitNode(c, 'ft-3', now), undefined);
  });

  it('with evictBesideFree, stops an idle instance on the node with the weights rather than download on a free node', () => {
    const c = cache(twoNodes(1));
    const old = c.load('ft-3', 'node-b', 0);
    c.unload('ft-3', 'node-b', old.readyAtMs);
    const idle = c.load('ft-1', 'node-b', old.readyAtMs);
    const now = 200_000;
    const isIdle = (i: InstanceInfo): boolean => i.id === idle.instanceId;
    const options = { isIdle, evictStopMs: 2_000, evictBesideFree: true };
    // By default a free GPU wins over stopping an instance, whatever the tiers.
    assert.deepEqual(
      [startupAwareNode(c, 'ft-3', now, { isIdle })?.node, startupAwareNode(c, 'ft-3', now, { isIdle })?.how],
      ['node-a', 'free'],
    );

    const aware = startupAwareNode(c, 'ft-3', now, options);
    const blind = firstFitNode(c, 'ft-3', now, options);
    assert.deepEqual([aware?.node, aware?.how, aware?.fromTier], ['node-b', 'evict', 'dram']);
    assert.deepEqual([blind?.node, blind?.how, blind?.fromTier], ['node-a', 'free', 'remote']);
    assert.ok((aware?.readyInMs ?? 0) < (blind?.readyInMs ?? 0));

    // Applying it: stop the victim, then load once it has stopped.
    for (const id of aware?.evict ?? []) c.unloadInstance(id, now);
    const loaded = c.load('ft-3', 'node-b', aware?.startAtMs ?? 0);
    assert.equal(loaded.fromTier, 'dram');
    assert.equal(loaded.startupMs, aware?.startupMs);
  });

  it('breaks ties by node id and skips nodes whose GPUs the model does not fit', () => {
    const c = cache([
      { id: 'node-z', gpu: 'h100', gpus: 2 },
      { id: 'node-q', gpu: 'l4', gpus: 4 },
      { id: 'node-m', gpu: 'h100', gpus: 2 },
    ]);
    assert.equal(startupAwareNode(c, 'ft-1', 0)?.node, 'node-m');
    assert.equal(firstFitNode(c, 'ft-1', 0)?.node, 'node-z');
    // 70B at tp4 needs four GPUs with ~35 GB each: only the L4 node has four, and they are 24 GB.
    assert.deepEqual(nodeChoices(c, 'm70', 0), []);
  });
});

/**
 * A small serverless day: 16 fine-tunes of one 8B base with Zipf(1) popularity on 4 nodes of 2
 * H100s, DRAM caches of three checkpoints each, 60 s keep-alive, requests busy for 2 s. Each cold
 * model goes where `choose` says, evicting idle instances where it says so.
 */
function replay(
  choose: typeof startupAwareNode,
  extra: ChooseOptions = {},
): {
  cold: number;
  meanReadyMs: number;
  tiers: Record<string, number>;
} {
  const models = Array.from({ length: 16 }, (_, i) => ({ id: `ft-${i}`, base: 'llama-3.1-8b' }));
  const nodes = ['n1', 'n2', 'n3', 'n4'].map((id) => ({ id, gpu: 'h100', gpus: 2 }));
  const c = new ModelCache({
    nodes: resolveNodeTiers(nodes, { defaults: { dram: { capacityBytes: 50e9 } } }),
    models,
  });
  const weights = models.map((_, i) => 1 / (i + 1));
  const total = weights.reduce((a, b) => a + b, 0);
  const rng = new Rng('model-cache-replay');
  const busyUntil = new Map<string, number>();
  const keepAliveMs = 60_000;
  let t = 0;
  let cold = 0;
  let readySum = 0;
  const tiers: Record<string, number> = { dram: 0, ssd: 0, remote: 0 };
  for (let n = 0; n < 2_000; n++) {
    t += rng.exponential(1 / 4_000);
    for (const node of c.nodeIds()) {
      for (const i of c.instances(node)) if (i.lastUsedMs + keepAliveMs < t) c.unloadInstance(i.id, t);
    }
    const model = models[zipfIndex(weights, rng.next() * total)]?.id ?? 'ft-0';
    const running = c
      .nodeIds()
      .flatMap((node) => c.instances(node))
      .find((i) => i.model === model);
    if (running !== undefined) {
      c.touch(running.id, t);
      busyUntil.set(running.id, Math.max(t, running.readyAtMs) + 2_000);
      continue;
    }
    const isIdle = (i: InstanceInfo): boolean => (busyUntil.get(i.id) ?? 0) <= t && i.readyAtMs <= t;
    const choice = choose(c, model, t, { ...extra, isIdle });
    if (choice === undefined) continue;
    for (const id of choice.evict) c.unloadInstance(id, t);
    const loaded = c.load(model, choice.node, t);
    busyUntil.set(loaded.instanceId, loaded.readyAtMs + 2_000);
    cold += 1;
    readySum += loaded.startupMs;
    tiers[loaded.fromTier] = (tiers[loaded.fromTier] ?? 0) + 1;
  }
  return { cold, meanReadyMs: readySum / cold, tiers };
}

/** The index whose cumulative weight first passes `u`. */
function zipfIndex(weights: readonly number[], u: number): number {
  let sum = 0;
  for (let i = 0; i < weights.length; i++) {
    sum += weights[i] ?? 0;
    if (u < sum) return i;
  }
  return weights.length - 1;
}

describe('start-up-aware against first fit over a small serverless day', () => {
  it('reads more cold starts from DRAM and starts faster on average', (t) => {
    const aware = replay(startupAwareNode);
    const blind = replay(firstFitNode);
    t.diagnostic(`start-up-aware ${JSON.stringify(aware)}`);
    t.diagnostic(`first fit ${JSON.stringify(blind)}`);
    t.diagnostic(
      `start-up-aware, evicting beside free GPUs ${JSON.stringify(replay(startupAwareNode, { evictBesideFree: true }))}`,
    );
    assert.ok((aware.tiers['dram'] ?? 0) > (blind.tiers['dram'] ?? 0), JSON.stringify({ aware, blind }));
    assert.ok(aware.meanReadyMs < blind.meanReadyMs, JSON.stringify({ aware, blind }));
  });
});
