import assert from 'node:assert/strict';
import { test } from 'node:test';
import { SwitchyardError } from '../core/errors.ts';
import { perfModelFor } from '../model/perf.ts';
import { perfModelCapacity } from './capacity.ts';
import { isProfiled, profileVariant } from './gpu-choice/profile.ts';
import { bucketize } from './gpu-choice/workload.ts';
import type { Variant } from './types.ts';

const H100: Variant = { model: 'llama-3.1-8b', gpu: 'h100', tp: 1, role: 'both' };
const as = (role: Variant['role'], v: Variant = H100): Variant => ({ ...v, role });
const SINUSOID = { ttftMs: 3000, tpotMs: 50 } as const;

test('a prefill replica finishes 1000 / prefillMs prompts a second, and none when one prefill misses TTFT', () => {
  const cap = perfModelCapacity();
  const c = cap(as('prefill'), SINUSOID, 8000, 1000);
  assert.equal(c.limitedBy, 'prefill');
  assert.ok(c.prefillMs > 0);
  assert.ok(Math.abs(c.requestsPerS * c.prefillMs - 1000) < 1e-9, `${c.requestsPerS} x ${c.prefillMs}`);
  const tight = cap(as('prefill'), { ttftMs: c.prefillMs * 0.9 }, 8000, 1000);
  assert.equal(tight.requestsPerS, 0);
  assert.equal(tight.limitedBy, 'unreachable');
});

test('a long prompt is prefilled in chunks of max-num-batched-tokens, each after the ones before', () => {
  const chunked = perfModelCapacity({ maxNumBatchedTokens: 2048 })(as('prefill'), {}, 8000, 100);
  const perf = perfModelFor('h100', 'llama-3.1-8b', 1, 'vllm', { maxNumSeqs: 1024 });
  const expected =
    perf.prefillTimeMs(2048, 0) +
    perf.prefillTimeMs(2048, 2048) +
    perf.prefillTimeMs(2048, 4096) +
    perf.prefillTimeMs(1856, 6144);
  assert.ok(Math.abs(chunked.prefillMs - expected) < 1e-9, `${chunked.prefillMs} vs ${expected}`);
});

test('a decode replica runs the largest batch whose step stays under the ITL target', () => {
  const cap = perfModelCapacity();
  const c = cap(as('decode'), { tpotMs: 20 }, 1000, 200);
  assert.equal(c.limitedBy, 'decode');
  const perf = perfModelFor('h100', 'llama-3.1-8b', 1, 'vllm', { maxNumSeqs: 1024 });
  const context = 1000 + 200 / 2;
  assert.ok(perf.decodeStepTimeMs(c.decodeBatch, context) <= 20);
  assert.ok(perf.decodeStepTimeMs(c.decodeBatch + 1, context) > 20, 'the next batch would miss ITL');
  const rate = (1000 * c.decodeBatch) / (200 * perf.decodeStepTimeMs(c.decodeBatch, context));
  assert.ok(Math.abs(c.requestsPerS - rate) < 1e-9);
  assert.ok(cap(as('decode'), { tpotMs: 15 }, 1000, 200).requestsPerS < c.requestsPerS, 'tighter ITL, less');
});

test('long contexts bound the decode batch by the KV cache, not the ITL target', () => {
  const c = perfModelCapacity()(as('decode'), { tpotMs: 1000 }, 30_000, 2000);
  assert.equal(c.limitedBy, 'kv-cache');
  const loose = perfModelCapacity({ gpuMemoryUtilization: 0.95 })(
    as('decode'),
    { tpotMs: 1000 },
    30_000,
    2000,
  );
  assert.ok(loose.decodeBatch > c.decodeBatch, 'more memory, more sequences');
});

test("a 'both' replica's prefills stall its batch: slower than either side alone", () => {
  const cap = perfModelCapacity();
  const both = cap(H100, SINUSOID, 8000, 1000);
  const prefill = cap(as('prefill'), SINUSOID, 8000, 1000);
  const decode = cap(as('decode'), SINUSOID, 8000, 1000);
  assert.ok(both.requestsPerS > 0);
  assert.ok(both.requestsPerS < Math.min(prefill.requestsPerS, decode.requestsPerS));
  assert.ok(both.itlMs <= SINUSOID.tpotMs);
  const perf = perfModelFor('h100', 'llama-3.1-8b', 1, 'vllm', { maxNumSeqs: 1024 });
  const stepMs = perf.decodeStepTimeMs(both.decodeBatch, 8500);
  assert.ok(Math.abs(both.itlMs - (stepMs + (both.decodeBatch * both.prefillMs) / 1000)) < 1e-9);
});

test('a GPU that cannot hold the ITL at batch 1 has no capacity; a faster GPU has more', () => {
  const cap = perfModelCapacity();
  assert.equal(cap({ ...H100, gpu: 'l4' }, SINUSOID, 8000, 1000).requestsPerS, 0);
  const a100 = cap({ ...H100, gpu: 'a100-80gb' }, SINUSOID, 8000, 1000).requestsPerS;
  assert.ok(a100 > 0 && cap(H100, SINUSOID, 8000, 1000).requestsPerS > a100);
});

test('md1 queueing leaves the prefill side the headroom an M/D/1 queue needs under TTFT', () => {
  const none = perfModelCapacity()(as('prefill'), SINUSOID, 8000, 1000);
  const md1 = perfModelCapacity({ prefillQueueing: 'md1' })(as('prefill'), SINUSOID, 8000, 1000);
  const rho = md1.requestsPerS / none.requestsPerS;
  const waitMs = (rho * md1.prefillMs) / (2 * (1 - rho));
  assert.ok(rho < 1);
  assert.ok(Math.abs(md1.prefillMs + waitMs - SINUSOID.ttftMs) < 1e-6, `${md1.prefillMs + waitMs}`);
});

test('answers are deterministic and cached; bad lengths and unknown GPUs fail with codes', () => {
  const cap = perfModelCapacity();
  assert.equal(cap(H100, SINUSOID, 8000, 1000), cap(H100, SINUSOID, 8000, 1000));
  assert.deepEqual(perfModelCapacity()(H100, SINUSOID, 8000, 1000), cap(H100, SINUSOID, 8000, 1000));
  assert.throws(
    () => cap(H100, SINUSOID, Number.NaN, 1000),
    (e: unknown) => e instanceof SwitchyardError && e.code === 'SY_ERR_INVALID_ARGUMENT',
  );
  assert.throws(
    () => cap({ ...H100, gpu: 'tpu-v9' }, SINUSOID, 100, 100),
    (e: unknown) => e instanceof SwitchyardError && e.code === 'SY_ERR_UNKNOWN_NAME',
  );
});

test("aggregated 'chunked' is the GPU chooser's model: the same rate and batch as its bucket profile", () => {
  const chunked = perfModelCapacity({ aggregated: 'chunked' })(H100, SINUSOID, 8000, 1000);
  const p = profileVariant(
    'h100',
    'llama-3.1-8b',
    1,
    bucketize([{ inputTokens: 8000, generatedTokens: 1000 }]),
    SINUSOID,
  );
  assert.ok(isProfiled(p));
  const bucket = p.capacities[0];
  assert.equal(chunked.requestsPerS, bucket?.maxRateRps);
  assert.equal(chunked.decodeBatch, bucket?.decodeBatch);
  assert.equal(chunked.limitedBy, bucket?.limitedBy);
  assert.ok(chunked.itlMs <= SINUSOID.tpotMs);
  const stall = perfModelCapacity()(H100, SINUSOID, 8000, 1000);
  assert.notEqual(
    chunked.requestsPerS,
    stall.requestsPerS,
    'two models of a both replica, chosen by the option',
  );
});
