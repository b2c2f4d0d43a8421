import assert from 'node:assert/strict';
import { test } from 'node:test';
import { GB, GiB } from '../../core/units.ts';
import { HOST_TO_GPU_BYTES_PER_S } from '../../model/loading.ts';
import { startupTimeMs } from '../../model/startup.ts';
import { ModelCache } from '../model-cache/cache.ts';
import { defaultTiers } from '../model-cache/tiers.ts';
import {
  bootQueue,
  nameHash,
  resolveSleep,
  SleepBook,
  SWAP_RESIDENCY_MIN_MS_DEFAULT,
  swapVerdict,
  wakeTimeMs,
} from './sleep.ts';

const config = resolveSleep();

test('a wake costs the weights over PCIe plus the fixed overhead, not the engine start-up', () => {
  const cache = new ModelCache({
    nodes: [
      { id: 'n1', gpu: 'h100', gpus: 8, hostLinkBytesPerS: HOST_TO_GPU_BYTES_PER_S, tiers: defaultTiers(8) },
    ],
    models: [{ id: 'ft', base: 'llama-3.1-8b' }],
  });
  const { shardBytes } = cache.shardBytes('ft');
  const wakeMs = wakeTimeMs(shardBytes, HOST_TO_GPU_BYTES_PER_S, config);
  const weightsMs = (shardBytes / HOST_TO_GPU_BYTES_PER_S) * 1000;
  assert.equal(wakeMs, weightsMs + config.wakeOverheadMs + config.kvReallocMs);
  // ~16 GB at 25 GB/s: well under a second of weights, against ~44 s of engine start-up.
  assert.ok(weightsMs > 500 && weightsMs < 1000, `${weightsMs}`);
  const startMs = startupTimeMs({ gpu: 'h100', model: 'llama-3.1-8b', tp: 1 });
  assert.ok(wakeMs * 20 < startMs, `${wakeMs} vs ${startMs}`);
});

test('sleepers never exceed a GPU memory: the awake instance (with its KV floor) plus every residual fits', () => {
  const budget = 72 * GiB;
  const smallest = 20 * GiB; // an 8B shard plus reserve
  const book = new SleepBook([{ id: 'n1', gpus: 2 }], budget, smallest, config);
  // With nothing awake, room is kept for the smallest model with its KV floor.
  const max = book.sleepersPerGpuMax;
  assert.equal(max, Math.floor((budget - smallest - config.kvFloorBytesPerGpu) / config.residualBytesPerGpu));
  for (let i = 0; i < max; i++) book.sleep(`m${i}`, 'n1', [0], i);
  assert.equal(book.canSleepOn('n1', [0], 100), false);
  assert.throws(() => book.sleep('extra', 'n1', [0], 100));
  // A TP-2 sleeper needs room on both of its GPUs.
  assert.equal(book.canSleepOn('n1', [0, 1], 100), false);
  assert.equal(book.canSleepOn('n1', [1], 100), true);
  // A larger model placed there stops the oldest sleepers it cannot keep beside it.
  const large = 50 * GiB;
  const keep = Math.floor((budget - large - config.kvFloorBytesPerGpu) / config.residualBytesPerGpu);
  const stopped = book.placeAt('big', 'n1', [0], 200, large);
  assert.equal(stopped.length, max - keep);
  assert.deepEqual(
    stopped.map((x) => x.model),
    Array.from({ length: max - keep }, (_, i) => `m${i}`),
  );
  assert.equal(book.sleepersOn('n1', 0), keep);
  assert.ok(large + config.kvFloorBytesPerGpu + keep * config.residualBytesPerGpu <= budget);
  // A model that leaves less than the KV floor keeps its GPU to itself: no sleeper beside it.
  book.placeAt('huge', 'n1', [1], 300, 66 * GiB);
  assert.equal(book.canSleepOn('n1', [1], 300), false);
});

test('an engine started straight into sleep: only beside an awake instance, one at a time, wakeable once initialised', () => {
  const book = new SleepBook([{ id: 'n1', gpus: 2 }], 72 * GiB, 20 * GiB, config);
  const init = book.awakeNeedBytes(20 * GiB);
  assert.equal(init, 20 * GiB + config.kvFloorBytesPerGpu);
  // GPU 1 runs nothing (not billed): no pre-start there.
  book.placeAt('a', 'n1', [0], 0, 20 * GiB);
  assert.equal(book.canPrestartOn('n1', [1], init, 0), false);
  assert.deepEqual(book.prestartGpus('n1', 1, init, 0), [0]);
  const s = book.prestart('b', 'n1', [0], 0, 45_000, init);
  assert.equal(book.initialising(s.id, 44_999), true);
  assert.equal(book.initialising(s.id, 45_000), false);
  // One initialising engine per GPU; its whole need counts until it sleeps.
  assert.equal(book.canPrestartOn('n1', [0], init, 1000), false);
  assert.equal(book.canPrestartOn('n1', [0], init, 45_000), true);
  assert.equal(book.countOf('b'), 1);
});

test('boot into sleep: never-started models in hash order, none while demand waits for a GPU, once per model', () => {
  const ids = Array.from({ length: 12 }, (_, i) => `m${String(i).padStart(2, '0')}`);
  const fresh = ids.map((id) => ({ id, everStarted: false, active: 0, held: 0 }));
  const queue = bootQueue(fresh);
  // Every model, in the hash's order: not the names' (a generator's popularity ranks).
  assert.deepEqual([...queue].sort(), ids);
  assert.notDeepEqual(queue, ids);
  for (let i = 1; i < queue.length; i++)
    assert.ok(nameHash(queue[i - 1] as string) <= nameHash(queue[i] as string));
  // Demand first: a model with requests held and no instance empties the queue this decision.
  const waiting = fresh.map((m, i) => (i === 5 ? { ...m, held: 3 } : m));
  assert.deepEqual(bootQueue(waiting), []);
  // A model already started (or one whose requests are held behind its own start) is not booted.
  const ran = fresh.map((m, i) =>
    i === 0 ? { ...m, everStarted: true } : i === 1 ? { ...m, held: 2, active: 1 } : m,
  );
  assert.deepEqual(
    bootQueue(ran),
    queue.filter((id) => id !== 'm00' && id !== 'm01'),
  );
  // Opt-in: off unless asked (the 8-seed figures in README.md).
  assert.equal(resolveSleep().bootIntoSleep, false);
  assert.equal(resolveSleep({ bootIntoSleep: true }).bootIntoSleep, true);
  assert.equal(resolveSleep({ bootIntoSleep: false }).bootIntoSleep, false);
});

test('boot on a free GPU: one initialising engine a GPU, packed onto GPUs with sleepers, never in the way of a demand start', () => {
  const book = new SleepBook([{ id: 'n1', gpus: 2 }], 72 * GiB, 20 * GiB, config);
  const init = book.awakeNeedBytes(20 * GiB);
  // Free GPUs take a boot (a start into sleep beside an awake instance could not).
  assert.equal(book.canPrestartOn('n1', [0], init, 0), false);
  assert.deepEqual(book.bootGpus('n1', 1, init, 0), [0]);
  const b = book.boot('b', 'n1', [0], 0, 45_000, init);
  // Billed from the boot on (a GPU held by sleepers alone), its hold clock from its readiness.
  assert.equal(book.loneGpuMs(10_000), 10_000);
  assert.deepEqual(book.loneGpuList(30_000), [{ node: 'n1', index: 0, aloneMs: 0, models: ['b'] }]);
  assert.equal(book.loneGpuList(50_000)[0]?.aloneMs, 5000);
  // One initialising engine per GPU: GPU 0 is busy booting, so the next goes to GPU 1 or waits.
  assert.equal(book.canBootOn('n1', [0], init, 1000), false);
  assert.deepEqual(book.bootGpus('n1', 1, init, 1000), [1]);
  assert.equal(book.bootGpus('n1', 1, init, 1000, false), undefined);
  // Once b sleeps, GPU 0 holds a sleeper: the next boot packs there, before the empty GPU 1.
  assert.deepEqual(book.bootGpus('n1', 1, init, 45_000), [0]);
  const c = book.boot('c', 'n1', [0], 45_000, 90_000, init);
  // A demand start takes a booting GPU's awake place; where both do not fit, the boot is
  // abandoned (not the wakeable sleeper b): 30 + 30 + 3 GiB over 72 GiB at a 40 GiB shard.
  const big = book.placeAt('d', 'n1', [0], 50_000, 40 * GiB);
  assert.deepEqual(
    big.map((x) => x.id),
    [c.id],
  );
  assert.equal(book.sleepersOn('n1', 0), 1);
  assert.equal(book.countOf('b'), 1);
  assert.equal(b.model, 'b');
});

test('drain-and-swap: who yields, and the minimum residency', () => {
  const waiting = { held: 3, startupMs: 45_000 };
  const idleBlocker = { sinceMs: 0, readyAtMs: 1000, modelHeld: 0, draining: false };
  // Past its residency, a blocker whose model has nothing waiting is drained.
  assert.equal(swapVerdict(waiting, [idleBlocker], SWAP_RESIDENCY_MIN_MS_DEFAULT), 'drain');
  // Within it, the wait is shorter than a fresh start: wait.
  assert.equal(swapVerdict(waiting, [idleBlocker], 5000), 'wait');
  // A blocker whose own model has requests waiting keeps its GPU.
  assert.equal(swapVerdict(waiting, [{ ...idleBlocker, modelHeld: 1 }], 60_000), 'none');
  // Nothing waiting: no swap.
  assert.equal(swapVerdict({ ...waiting, held: 0 }, [idleBlocker], 60_000), 'none');
  // A fresh start still initialising longer than a start-up from now: start elsewhere.
  assert.equal(
    swapVerdict(waiting, [{ ...idleBlocker, sinceMs: 10_000, readyAtMs: 60_000 }], 10_000),
    'none',
  );
  // Already draining: wait for it.
  assert.equal(swapVerdict(waiting, [{ ...idleBlocker, draining: true, modelHeld: 2 }], 1000), 'wait');
});

test('drain-and-swap: with a free GPU, a model waits out one residency at most, then starts fresh', () => {
  // Each blocker is another model's wake, a new residency: waiting on it alone never ends.
  const blocker = (sinceMs: number) => ({
    sinceMs,
    readyAtMs: sinceMs + 1000,
    modelHeld: 0,
    draining: false,
  });
  const waiting = { held: 2, startupMs: 45_000, freeGpu: true, waitingSinceMs: 100_000 };
  // Waiting 5 s: the swap is still the quicker bet.
  assert.equal(swapVerdict(waiting, [blocker(100_000)], 105_000), 'wait');
  // Waiting a residency, a newer blocker in the way: start fresh on the free GPU.
  assert.equal(swapVerdict(waiting, [blocker(110_000)], 100_000 + SWAP_RESIDENCY_MIN_MS_DEFAULT), 'none');
  // No free GPU: it waits as before; a blocker past its residency is drained either way.
  assert.equal(swapVerdict({ ...waiting, freeGpu: false }, [blocker(110_000)], 115_000), 'wait');
  assert.equal(swapVerdict(waiting, [blocker(80_000)], 120_000), 'drain');
  // Blockers draining already: the wake is seconds away, so it waits.
  assert.equal(swapVerdict(waiting, [{ ...blocker(110_000), draining: true }], 130_000), 'wait');
});

test('billing: a GPU held by sleepers alone is billed; an awake instance there makes it paid anyway', () => {
  const book = new SleepBook([{ id: 'n1', gpus: 2 }], 72 * GiB, 20 * GiB, config);
  book.placeAwake('a', 'n1', 1, 0, 20 * GiB); // GPU 0
  assert.equal(book.releaseAwake('a', 1000)?.gpus[0], 0);
  book.sleep('a', 'n1', [0], 1000); // alone on GPU 0 from 1 s
  assert.equal(book.loneGpuMs(3000), 2000);
  // A fresh start prefers the GPU the sleeper holds (it is billed anyway): the sleeper rides free.
  assert.deepEqual(book.placeAwake('b', 'n1', 1, 3000, 20 * GiB).gpus, [0]);
  assert.equal(book.loneGpuMs(10_000), 2000);
  assert.equal(book.blockers(book.sleepersOf('a')[0] as never).length, 1);
  book.releaseAwake('b', 10_000);
  assert.equal(book.loneGpuMs(12_000), 4000);
  assert.deepEqual(book.loneGpuList(12_000), [{ node: 'n1', index: 0, aloneMs: 2000, models: ['a'] }]);
  // A sleeper's own GPUs only: it wakes where it slept.
  const s = book.sleepersOf('a')[0];
  assert.ok(s !== undefined);
  book.remove(s.id, 12_000);
  book.placeAt('a2', 'n1', s.gpus, 12_000);
  assert.equal(book.awakeOn('n1', 0), 'a2');
  assert.equal(book.loneGpuMs(20_000), 4000);
  assert.throws(() => book.placeAt('c', 'n1', [0], 20_000));
});

test('sleepers pin their weights in host DRAM: never evicted, refused when DRAM is full of pins', () => {
  const tiers = defaultTiers(8);
  const small = { ...tiers, dram: { ...tiers.dram, capacityBytes: 40 * GB } };
  const cache = new ModelCache({
    nodes: [{ id: 'n1', gpu: 'h100', gpus: 8, hostLinkBytesPerS: HOST_TO_GPU_BYTES_PER_S, tiers: small }],
    models: [
      { id: 'a', base: 'llama-3.1-8b' },
      { id: 'b', base: 'llama-3.1-8b' },
      { id: 'c', base: 'llama-3.1-8b' },
    ],
  });
  const { weightBytes } = cache.shardBytes('a');
  assert.equal(cache.pinDram('a', 'n1', 0).ok, true);
  assert.equal(cache.pinDram('b', 'n1', 0).ok, true);
  assert.equal(cache.pinDram('c', 'n1', 0).ok, false); // 3 x 16 GB > 40 GB
  const loaded = cache.load('c', 'n1', 1); // lands in DRAM only if room beside the pins
  cache.unloadInstance(loaded.instanceId, 2);
  const dram = cache.snapshot().nodes[0]?.dram;
  assert.ok(dram !== undefined && dram.usedBytes <= dram.capacityBytes);
  assert.equal(cache.pinnedDramBytes('n1'), 2 * weightBytes);
  cache.unpinDram('a', 'n1', 3);
  assert.equal(cache.pinnedDramBytes('n1'), weightBytes);
  assert.equal(cache.pinDram('c', 'n1', 4).ok, true);
});

test('the per-GPU list of GPUs held by sleepers alone, and stopping every sleeper on one of them', () => {
  const book = new SleepBook([{ id: 'n1', gpus: 3 }], 72 * GiB, 20 * GiB, config);
  book.sleep('b', 'n1', [2], 1000);
  book.sleep('a', 'n1', [2], 2000);
  book.sleep('c', 'n1', [0], 5000);
  book.placeAwake('x', 'n1', 1, 6000, 20 * GiB); // takes GPU 0 (holds a sleeper, billed anyway)
  // Only GPU 2 is held by sleepers alone (GPU 0 runs x): since the first sleeper came, in index order.
  const lone = book.loneGpuList(11_000);
  assert.equal(lone.length, 1);
  assert.deepEqual(
    lone.map((g) => [g.node, g.index, g.aloneMs, [...g.models].sort()]),
    [['n1', 2, 10_000, ['a', 'b']]],
  );
  const stopped = book.stopOn('n1', 2, 11_000);
  assert.deepEqual(stopped.map((s) => s.model).sort(), ['a', 'b']);
  assert.equal(book.sleepersOn('n1', 2), 0);
  assert.deepEqual(book.loneGpuList(12_000), []);
  // GPU 2 for 10 s, and GPU 0 for the second before x took it.
  assert.equal(book.loneGpuMs(12_000), 11_000);
  assert.equal(book.countOf('c'), 1, 'a sleeper beside an awake instance is not touched');
});

test('hold bounds: 60 s to 15 min by default; a minimum above the default maximum raises it', () => {
  assert.equal(config.loneSleepMaxMs, 60_000);
  assert.equal(config.loneHoldMaxMs, 15 * 60_000);
  assert.equal(resolveSleep({ loneSleepMaxMs: 3_600_000 }).loneHoldMaxMs, 3_600_000);
  assert.equal(resolveSleep({ loneHoldMaxMs: 120_000 }).loneHoldMaxMs, 120_000);
  assert.throws(() => resolveSleep({ loneHoldMaxMs: Number.NaN }));
  // A maximum given below the minimum is a mistake, refused, not silently raised to it.
  assert.throws(() => resolveSleep({ loneHoldMaxMs: 30_000 }), { code: 'SY_ERR_INVALID_ARGUMENT' });
  assert.throws(() => resolveSleep({ loneSleepMaxMs: 120_000, loneHoldMaxMs: 90_000 }), /loneHoldMaxMs/);
  assert.equal(resolveSleep({ loneSleepMaxMs: 120_000, loneHoldMaxMs: 120_000 }).loneHoldMaxMs, 120_000);
});
