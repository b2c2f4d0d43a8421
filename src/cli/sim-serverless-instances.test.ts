/**
 * `sim --workload multi-model --serverless-policy P --gpus G --instances N` ran exactly as without
 * `--instances` (the header still "pool of 8 instance slots on 2 GPUs"): the count was silently
 * ignored. It is now refused, naming --gpus as what sizes a serverless cluster.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { runCliInProcess } from './cli-test-support.ts';
import { USAGE_EXIT_CODE } from './main.ts';

const run = ['sim', '--no-progress', '--workload', 'multi-model', '--models', '2', '--duration', '30'];

test('--instances with --serverless-policy is refused, naming --gpus', async () => {
  const r = await runCliInProcess([
    ...run,
    '--serverless-policy',
    'keep-alive',
    '--gpus',
    '2',
    '--instances',
    '3',
  ]);
  assert.equal(r.code, USAGE_EXIT_CODE);
  assert.match(
    r.stderr,
    /invalid instances '3': expected no --instances with --serverless-policy: --gpus sizes the cluster/,
  );
  assert.equal((await runCliInProcess([...run, '--serverless-policy', 'keep-alive', '--gpus', '2'])).code, 0);
});
