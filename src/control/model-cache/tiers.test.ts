import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { SwitchyardError } from '../../core/errors.ts';
import { HOST_TO_GPU_BYTES_PER_S, STORAGE_TIERS } from '../../model/loading.ts';
import {
  DRAM_CACHE_BYTES_DEFAULT,
  parseModelCacheConfig,
  REMOTE_READ_BYTES_PER_S_DEFAULT,
  resolveNodeTiers,
  SSD_CACHE_BYTES_DEFAULT,
} from './tiers.ts';

const nodes = [
  { id: 'node-1', gpu: 'h100', gpus: 8 },
  { id: 'node-2', gpu: 'a100-80g', gpus: 4 },
];

function configError(section: unknown): SwitchyardError {
  try {
    resolveNodeTiers(nodes, parseModelCacheConfig(section));
  } catch (err) {
    assert.ok(err instanceof SwitchyardError);
    return err;
  }
  assert.fail('expected SY_ERR_INVALID_CONFIG');
}

describe('model-cache tiers', () => {
  it('defaults to loading.ts figures: DRAM behind each GPU link, one NVMe drive, a 25 Gb/s store', () => {
    const [n1, n2] = resolveNodeTiers(nodes);
    assert.ok(n1 !== undefined && n2 !== undefined);
    assert.equal(n1.hostLinkBytesPerS, HOST_TO_GPU_BYTES_PER_S);
    assert.deepEqual(n1.tiers.dram, {
      capacityBytes: DRAM_CACHE_BYTES_DEFAULT,
      readBytesPerS: Number.POSITIVE_INFINITY,
      latencyMs: STORAGE_TIERS.dram.latencyMs,
      lanes: 8,
    });
    assert.equal(n2.tiers.dram.lanes, 4, 'one DRAM lane per GPU');
    assert.deepEqual(n1.tiers.ssd, {
      capacityBytes: SSD_CACHE_BYTES_DEFAULT,
      readBytesPerS: STORAGE_TIERS.nvme.sourceBytesPerS,
      latencyMs: STORAGE_TIERS.nvme.latencyMs,
      lanes: 1,
    });
    assert.equal(n1.tiers.remote.readBytesPerS, REMOTE_READ_BYTES_PER_S_DEFAULT);
    assert.equal(REMOTE_READ_BYTES_PER_S_DEFAULT, 2.5e9);
    assert.equal(n1.tiers.remote.capacityBytes, Number.POSITIVE_INFINITY);
  });

  it('applies the section defaults, then each node its own', () => {
    const config = parseModelCacheConfig({
      defaults: { hostLinkBytesPerS: 50e9, ssd: { readBytesPerS: 12e9, lanes: 2 } },
      nodes: { 'node-2': { ssd: { capacityBytes: 0 }, remote: { readBytesPerS: 10e9, latencyMs: 50 } } },
    });
    const [n1, n2] = resolveNodeTiers(nodes, config);
    assert.ok(n1 !== undefined && n2 !== undefined);
    assert.equal(n1.hostLinkBytesPerS, 50e9);
    assert.deepEqual(n1.tiers.ssd, {
      capacityBytes: SSD_CACHE_BYTES_DEFAULT,
      readBytesPerS: 12e9,
      latencyMs: STORAGE_TIERS.nvme.latencyMs,
      lanes: 2,
    });
    assert.equal(n1.tiers.remote.readBytesPerS, REMOTE_READ_BYTES_PER_S_DEFAULT);
    assert.deepEqual(n2.tiers.ssd, { capacityBytes: 0, readBytesPerS: 12e9, latencyMs: 20, lanes: 2 });
    assert.equal(n2.tiers.remote.readBytesPerS, 10e9);
    assert.equal(n2.tiers.remote.latencyMs, 50);
  });

  it('refuses a bad figure with SY_ERR_INVALID_CONFIG naming its path', () => {
    const err = configError({ nodes: { 'node-1': { ssd: { readBytesPerS: -1 } } } });
    assert.equal(err.code, 'SY_ERR_INVALID_CONFIG');
    assert.match(err.message, /modelCache\.nodes\.node-1\.ssd\.readBytesPerS: /);
    assert.equal(err.toJSON().error.param, 'modelCache');
  });

  it('refuses unknown keys, a capacity for the remote store, and lanes out of range', () => {
    assert.match(configError({ defaults: { nvme: {} } }).message, /modelCache\.defaults: .*nvme/);
    assert.match(
      configError({ defaults: { remote: { capacityBytes: 1e12 } } }).message,
      /modelCache\.defaults\.remote: .*capacityBytes/,
    );
    assert.match(
      configError({ defaults: { dram: { lanes: 0 } } }).message,
      /modelCache\.defaults\.dram\.lanes/,
    );
    assert.match(
      configError({ defaults: { dram: { lanes: 1.5 } } }).message,
      /modelCache\.defaults\.dram\.lanes/,
    );
    assert.match(configError({ defaults: { ssd: { latencyMs: 1e9 } } }).message, /ssd\.latencyMs/);
  });

  it('refuses an override for a node the cluster does not have', () => {
    const err = configError({ nodes: { 'node-9': { ssd: { lanes: 2 } } } });
    assert.equal(err.code, 'SY_ERR_INVALID_CONFIG');
    assert.match(err.message, /modelCache\.nodes\.node-9: no such node/);
    assert.match(err.message, /known: node-1, node-2/);
  });
});
