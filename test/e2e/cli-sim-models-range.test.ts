/**
 * `switchyard sim --workload multi-model --models N` past the 1000-model bound fails at the flag:
 * one usage line naming --models and its range, exit code 2. Before, the value passed commander and
 * the workload schema refused it as "workload: models: Too big", naming a config path, not the flag.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { runCli } from './support/cli.ts';

test('--models 1001 is refused naming --models and 1..1000', async () => {
  const run = await runCli(
    ['sim', '--workload', 'multi-model', '--models', '1001', '--duration', '10', '--no-progress'],
    60_000,
  );
  assert.equal(run.code, 2, run.stderr);
  assert.match(
    run.stderr,
    /option '--models <n>' argument '1001' is invalid\. '1001' is not an integer in 1\.\.1000/,
  );
  assert.doesNotMatch(run.stderr, /\n\s+at /);
  assert.equal(run.stdout, '');
});
