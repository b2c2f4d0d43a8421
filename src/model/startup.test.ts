import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { gpuSpec } from './gpus.ts';
import { weightLoadTimeMs } from './loading.ts';
import { modelSpec } from './models.ts';
import { STARTUP_DEFAULTS, startupBreakdown, startupTimeMs } from './startup.ts';

describe('startup', () => {
  const base = { gpu: 'h100', model: 'llama-3.1-8b', tp: 1 };

  it('sums its terms, weights from nvme by default', () => {
    const b = startupBreakdown(base);
    const weights = weightLoadTimeMs(gpuSpec('h100'), modelSpec('llama-3.1-8b'), 1, 'nvme');
    assert.equal(b.weightsMs, weights);
    assert.equal(b.processInitMs, STARTUP_DEFAULTS.processInitMs);
    assert.equal(b.compileMs, STARTUP_DEFAULTS.compileCachedMs);
    assert.equal(b.cudaGraphCaptureMs, STARTUP_DEFAULTS.cudaGraphCaptureMs);
    assert.equal(b.totalMs, b.processInitMs + b.weightsMs + b.compileMs + b.cudaGraphCaptureMs);
    // An 8B model from NVMe: tens of seconds, the range the vLLM logs cited in startup.ts show.
    assert.ok(b.totalMs > 30_000 && b.totalMs < 90_000, `total ${b.totalMs}`);
  });

  it('takes longer from a slower tier and with a cold compile cache', () => {
    assert.ok(startupTimeMs({ ...base, tier: 'ssd-sata' }) > startupTimeMs({ ...base, tier: 'nvme' }));
    assert.ok(startupTimeMs({ ...base, tier: 'hbm' }) < startupTimeMs({ ...base, tier: 'dram' }));
    const cold = startupBreakdown({ ...base, compile: 'cold' });
    assert.equal(cold.compileMs, STARTUP_DEFAULTS.compileColdMs);
    assert.ok(cold.totalMs > startupTimeMs(base));
  });

  it('skips compilation and graph capture in eager mode', () => {
    const eager = startupBreakdown({ ...base, compile: 'off' });
    assert.equal(eager.compileMs, 0);
    assert.equal(eager.cudaGraphCaptureMs, 0);
    assert.equal(eager.totalMs, eager.processInitMs + eager.weightsMs);
  });

  it('takes overrides of the fixed terms', () => {
    const b = startupBreakdown({ ...base, terms: { processInitMs: 1000, cudaGraphCaptureMs: 0 } });
    assert.equal(b.processInitMs, 1000);
    assert.equal(b.cudaGraphCaptureMs, 0);
  });

  it('loads a bigger model for longer', () => {
    assert.ok(startupTimeMs({ ...base, model: 'llama-3.1-70b', tp: 4 }) > startupTimeMs(base));
  });

  it('throws on an unknown model', () => {
    assert.throws(() => startupTimeMs({ ...base, model: 'no-such-model' }));
  });
});
