import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { readYamlFile } from '../../adapters/yaml-file.ts';
import { SwitchyardError } from '../../core/errors.ts';
import { gpuIds } from '../../model/index.ts';
import { parseGpuPrices, priceTable } from './prices.ts';

const SHIPPED = fileURLToPath(new URL('../../../data/prices/gpu-prices.yaml', import.meta.url));

function shipped(): Record<string, unknown> {
  return readYamlFile(SHIPPED, 'gpu prices') as Record<string, unknown>;
}

function problems(value: unknown): string {
  try {
    parseGpuPrices(value);
  } catch (error) {
    assert.ok(error instanceof SwitchyardError);
    assert.equal(error.code, 'SY_ERR_INVALID_CONFIG');
    return error.message;
  }
  assert.fail('expected SY_ERR_INVALID_CONFIG');
}

describe('gpu-choice prices', () => {
  it('the shipped table validates, names its source, and prices every catalogue GPU but the A40', () => {
    const prices = parseGpuPrices(shipped());
    assert.match(prices.source.url, /^https:\/\/github\.com\/skypilot-org\/skypilot-catalog\//);
    assert.equal(prices.source.region, 'us-east-1');
    const unpriced = gpuIds().filter((g) => !prices.table.has(g));
    assert.deepEqual(unpriced, ['a40']);
    // p5.48xlarge: 98.32 USD an hour for 8 H100s.
    assert.equal(prices.table.get('h100'), 12.29);
  });

  it('rejects an unknown GPU, a duplicate and a per-GPU price that is not the instance price / GPUs', () => {
    const doc = shipped();
    const rows = doc['gpus'] as Record<string, unknown>[];
    const message = problems({
      ...doc,
      gpus: [{ ...rows[0], gpu: 'b200' }, { ...rows[1], usdPerGpuHour: 1 }, rows[2], rows[2]],
    });
    assert.match(message, /gpus\.0\.gpu: unknown gpu 'b200'/);
    assert.match(message, /gpus\.1\.usdPerGpuHour: 1 is not instanceUsdPerHour \/ gpusPerInstance/);
    assert.match(message, /gpus\.3\.gpu: 'a100-80gb' is listed twice/);
  });

  it("reads a row's vendor GPU name as the catalogue id, and says why a PCIe part is refused", () => {
    const doc = shipped();
    const rows = (doc['gpus'] as Record<string, unknown>[]).filter((r) => r['gpu'] === 'h100');
    const prices = parseGpuPrices({
      ...doc,
      gpus: rows.map((r) => ({ ...r, gpu: 'NVIDIA H100 80GB HBM3' })),
    });
    assert.deepEqual([...prices.table.keys()], ['h100']);
    const message = problems({ ...doc, gpus: rows.map((r) => ({ ...r, gpu: 'H100 PCIe' })) });
    assert.match(message, /gpus\.0\.gpu: unknown gpu 'H100 PCIe': the catalogue models h100 .*PCIe card/);
  });

  it('rejects a table without a source URL and unknown keys', () => {
    const doc = shipped();
    const source = doc['source'] as Record<string, unknown>;
    assert.match(problems({ ...doc, source: { ...source, url: 'not a url' } }), /source\.url/);
    assert.match(problems({ ...doc, extra: 1 }), /extra/);
  });

  it('priceTable refuses unknown GPUs and non-positive prices', () => {
    assert.equal(priceTable({ l4: 1 }).get('l4'), 1);
    assert.throws(() => priceTable({ l4: 0 }), /not a positive number/);
    assert.throws(() => priceTable({ tpu: 1 }), /unknown gpu 'tpu'/);
  });
});
