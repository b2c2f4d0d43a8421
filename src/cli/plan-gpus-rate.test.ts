/**
 * `plan-gpus --rate 1e300` printed a plan "on 6.6296114778975765e+299 GPUs": instance counts past
 * 2^53 are no longer whole numbers. --rate is now at most 1e9 req/s (tens of millions of GPUs).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { runCliInProcess } from './cli-test-support.ts';
import { USAGE_EXIT_CODE } from './main.ts';

const plan = (rate: string) =>
  runCliInProcess([
    'plan-gpus',
    '--model',
    'llama-3.1-8b',
    '--input-tokens',
    '1000',
    '--output-tokens',
    '200',
    '--gpus',
    'h100',
    '--rate',
    rate,
  ]);

test('plan-gpus --rate past 1e9 req/s is refused; 1e9 plans', async () => {
  for (const rate of ['1e300', '1e10']) {
    const r = await plan(rate);
    assert.equal(r.code, USAGE_EXIT_CODE, rate);
    assert.match(r.stderr, new RegExp(`'${rate}' is past 1e\\+9 req/s`));
  }
  assert.equal((await plan('1e9')).code, 0);
});
