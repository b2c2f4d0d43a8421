import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { SwitchyardError } from '../../core/errors.ts';
import { modelSpec, modelWeightBytes } from '../../model/models.ts';
import { startupBreakdown, startupTimeMs } from '../../model/startup.ts';
import { ModelCache } from './cache.ts';
import { type ModelCacheConfig, resolveNodeTiers } from './tiers.ts';

const EIGHT_B_BYTES = modelWeightBytes(modelSpec('llama-3.1-8b'));
/** Three fine-tunes of one 8B base: same size, different weights. */
const FINE_TUNES = [
  { id: 'ft-1', base: 'llama-3.1-8b' },
  { id: 'ft-2', base: 'llama-3.1-8b' },
  { id: 'ft-3', base: 'llama-3.1-8b' },
];

function cache(config: ModelCacheConfig = {}, gpus = 8): ModelCache {
  const nodes = resolveNodeTiers([{ id: 'n1', gpu: 'h100', gpus }], config);
  return new ModelCache({ nodes, models: [...FINE_TUNES, { id: 'llama-3.1-8b' }, { id: 'llama-3.1-70b' }] });
}

/** Loads and unloads each model at time 0, leaving its weights in the node's caches. */
function stage(c: ModelCache, models: readonly string[]): void {
  for (const m of models) {
    c.load(m, 'n1', 0);
    c.unload(m, 'n1', 0);
  }
}

function codeOf(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof SwitchyardError, String(err));
    return err.code;
  }
  assert.fail('expected a SwitchyardError');
}

describe('model cache', () => {
  it('keeps startup.ts figure for an 8B model from NVMe on an H100 (46.7 s)', () => {
    // No DRAM cache, so the second load reads the SSD copy the first one left.
    const c = cache({ defaults: { dram: { capacityBytes: 0 } } });
    const first = c.load('llama-3.1-8b', 'n1', 0);
    assert.equal(first.fromTier, 'remote');
    c.unload('llama-3.1-8b', 'n1', first.readyAtMs);
    const second = c.load('llama-3.1-8b', 'n1', first.readyAtMs);
    assert.equal(second.fromTier, 'ssd');
    assert.equal(second.queuedMs, 0);
    const expected = startupTimeMs({ gpu: 'h100', model: 'llama-3.1-8b', tp: 1 });
    assert.ok(Math.abs(second.startupMs - expected) < 1e-6, `${second.startupMs} vs ${expected}`);
    assert.equal((expected / 1000).toFixed(1), '46.7');
    const terms = startupBreakdown({ gpu: 'h100', model: 'llama-3.1-8b', tp: 1 });
    assert.equal(second.engineInitMs, terms.processInitMs + terms.compileMs + terms.cudaGraphCaptureMs);
  });

  it('an engine started into sleep reads its weights through the tier’s lane: a start after it queues', () => {
    const c = cache();
    const read = c.readForSleep('ft-1', 'n1', 0);
    assert.equal(read.fromTier, 'remote');
    assert.equal(read.queuedMs, 0);
    // It takes no GPU, lands in the SSD cache, and counts as a load of the store.
    assert.equal(c.freeGpus('n1'), 8);
    assert.deepEqual(c.contains('ft-1', 'n1'), ['ssd', 'remote']);
    assert.equal(c.snapshot().loadsByTier.remote, 1);
    // The next read from the store waits for the node's one remote lane.
    const next = c.load('ft-2', 'n1', 1000);
    assert.equal(next.fromTier, 'remote');
    assert.ok(
      Math.abs(next.queuedMs - (read.weightsMs - 1000)) < 1e-6,
      `${next.queuedMs} vs ${read.weightsMs}`,
    );
  });

  it('reads from the fastest tier holding the model: remote, then DRAM once cached', () => {
    const c = cache();
    assert.deepEqual(c.contains('ft-1', 'n1'), ['remote']);
    const cold = c.load('ft-1', 'n1', 0);
    assert.equal(cold.fromTier, 'remote');
    // 16 GB over a 2.5 GB/s store, plus its 100 ms set-up.
    assert.ok(Math.abs(cold.weightsMs - (100 + (EIGHT_B_BYTES / 2.5e9) * 1000)) < 1e-6);
    assert.deepEqual(c.contains('ft-1', 'n1'), ['gpu', 'dram', 'ssd', 'remote']);
    const warm = c.load('ft-1', 'n1', 1000);
    assert.equal(warm.fromTier, 'dram');
    // Host memory is not the limit: the GPU's 25 GB/s PCIe link is.
    assert.ok(Math.abs(warm.weightsMs - (5 + (EIGHT_B_BYTES / 25e9) * 1000)) < 1e-6);
    assert.ok(warm.startupMs < cold.startupMs);
    assert.equal(warm.engineInitMs, cold.engineInitMs);
  });

  it('queues loads FIFO for a tier: one NVMe lane, one DRAM lane per GPU', () => {
    // A slow store, so that queueing for the SSD never sends a load there.
    const c = cache({ defaults: { dram: { capacityBytes: 0 }, remote: { readBytesPerS: 1e9 } } });
    stage(c, ['ft-1', 'ft-2', 'ft-3']);
    const a = c.load('ft-1', 'n1', 100_000);
    const b = c.load('ft-2', 'n1', 100_000);
    const later = c.load('ft-3', 'n1', 100_000 + a.weightsMs / 2);
    assert.deepEqual([a.fromTier, b.fromTier, later.fromTier], ['ssd', 'ssd', 'ssd']);
    assert.equal(a.queuedMs, 0);
    assert.ok(Math.abs(b.queuedMs - a.weightsMs) < 1e-6);
    assert.ok(Math.abs(later.queuedMs - (a.weightsMs / 2 + b.weightsMs)) < 1e-6);

    const d = cache({ defaults: { dram: { lanes: 2 } } });
    stage(d, ['ft-1', 'ft-2', 'ft-3']);
    const loads = ['ft-1', 'ft-2', 'ft-3'].map((m) => d.load(m, 'n1', 100_000));
    assert.deepEqual(
      loads.map((l) => [l.fromTier, l.queuedMs > 0]),
      [
        ['dram', false],
        ['dram', false],
        ['dram', true],
      ],
    );
  });

  it('takes a slower tier when the faster one is queued long enough', () => {
    const c = cache({ defaults: { dram: { capacityBytes: 0 }, remote: { readBytesPerS: 4e9 } } });
    stage(c, ['ft-1', 'ft-2']);
    const t = 100_000;
    const first = c.load('ft-1', 'n1', t);
    assert.equal(first.fromTier, 'ssd');
    // ft-2 would wait ~2.7 s for the SSD then read for ~2.7 s; the 4 GB/s store takes ~4.1 s.
    const second = c.load('ft-2', 'n1', t);
    assert.equal(second.fromTier, 'remote');
    assert.equal(second.queuedMs, 0);
    assert.ok(second.weightsMs > first.weightsMs && second.weightsMs < 2 * first.weightsMs);
  });

  it('evicts the least recently used model from a full tier', () => {
    // Room for two 8B checkpoints in DRAM, not three.
    const c = cache({ defaults: { dram: { capacityBytes: 2.5 * EIGHT_B_BYTES } } });
    let t = 0;
    for (const m of ['ft-1', 'ft-2']) {
      const r = c.load(m, 'n1', t);
      t = r.readyAtMs;
      c.unload(m, 'n1', t);
    }
    // Using ft-1 again makes ft-2 the least recently used.
    const again = c.load('ft-1', 'n1', t);
    assert.equal(again.fromTier, 'dram');
    const third = c.load('ft-3', 'n1', again.readyAtMs);
    assert.deepEqual(third.evicted, [{ node: 'n1', tier: 'dram', model: 'ft-2' }]);
    const snap = c.snapshot().nodes[0];
    assert.deepEqual(snap?.dram.models, ['ft-1', 'ft-3']);
    assert.equal(snap?.dram.usedBytes, 2 * EIGHT_B_BYTES);
    assert.deepEqual(snap?.ssd.models, ['ft-1', 'ft-2', 'ft-3'], 'the SSD has room for all three');
    assert.deepEqual(c.contains('ft-2', 'n1'), ['ssd', 'remote']);
    assert.equal(c.snapshot().evictionsByTier.dram, 1);
  });

  it('keeps an unloaded model in DRAM, evicting others to make room', () => {
    const c = cache({ defaults: { dram: { capacityBytes: 1.5 * EIGHT_B_BYTES } } });
    c.load('ft-1', 'n1', 0);
    const second = c.load('ft-2', 'n1', 0);
    assert.deepEqual(second.evicted, [{ node: 'n1', tier: 'dram', model: 'ft-1' }]);
    assert.deepEqual(c.contains('ft-1', 'n1'), ['gpu', 'ssd', 'remote']);
    const gone = c.unload('ft-1', 'n1', 10);
    assert.deepEqual(gone.evicted, [{ node: 'n1', tier: 'dram', model: 'ft-2' }]);
    assert.deepEqual(c.contains('ft-1', 'n1'), ['dram', 'ssd', 'remote']);
    assert.equal(c.freeGpus('n1'), 7);
  });

  it('does not cache weights larger than a tier', () => {
    const c = cache({ defaults: { dram: { capacityBytes: EIGHT_B_BYTES / 2 } } });
    const r = c.load('ft-1', 'n1', 0);
    assert.deepEqual(r.evicted, []);
    assert.deepEqual(c.contains('ft-1', 'n1'), ['gpu', 'ssd', 'remote']);
  });

  it('refuses what cannot be done with stable codes', () => {
    const c = cache({}, 1);
    c.load('ft-1', 'n1', 0);
    assert.equal(
      codeOf(() => c.load('ft-2', 'n1', 0)),
      'SY_ERR_CAPACITY',
    );
    assert.equal(
      codeOf(() => c.load('llama-3.1-70b', 'n1', 0)),
      'SY_ERR_CAPACITY',
    );
    assert.equal(
      codeOf(() => c.load('no-such-model', 'n1', 0)),
      'SY_ERR_UNKNOWN_NAME',
    );
    assert.equal(
      codeOf(() => c.load('ft-1', 'n9', 0)),
      'SY_ERR_UNKNOWN_NAME',
    );
    assert.equal(
      codeOf(() => c.unload('ft-2', 'n1', 0)),
      'SY_ERR_NOT_FOUND',
    );
    c.touch('ft-1@n1#1', 50);
    assert.equal(
      codeOf(() => c.unload('ft-1', 'n1', 10)),
      'SY_ERR_INVALID_ARGUMENT',
      'time went backwards',
    );
    assert.equal(
      codeOf(
        () =>
          new ModelCache({
            nodes: resolveNodeTiers([{ id: 'n', gpu: 'h100', gpus: 1 }]),
            models: [{ id: 'x' }],
          }),
      ),
      'SY_ERR_UNKNOWN_NAME',
      'a served id without a catalogue base',
    );
  });

  it('gives the same snapshot for the same calls, as plain JSON', () => {
    const run = (): string => {
      const c = cache({ defaults: { dram: { capacityBytes: 1.5 * EIGHT_B_BYTES } } });
      const a = c.load('ft-1', 'n1', 0);
      c.load('ft-2', 'n1', 10);
      c.touch(a.instanceId, a.readyAtMs);
      c.unload('ft-1', 'n1', a.readyAtMs + 1);
      c.load('ft-3', 'n1', a.readyAtMs + 2);
      return JSON.stringify(c.snapshot());
    };
    const first = run();
    assert.equal(first, run());
    const snap = JSON.parse(first) as { nodes: { instances: { id: string }[] }[]; loadsByTier: object };
    assert.deepEqual(
      snap.nodes[0]?.instances.map((i) => i.id),
      ['ft-2@n1#2', 'ft-3@n1#3'],
    );
    assert.deepEqual(snap.loadsByTier, { dram: 0, ssd: 0, remote: 3 });
  });
});
