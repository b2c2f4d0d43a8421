/**
 * A disaggregated run names both of its policies: the header both sides' (--policy for the prefill
 * side, --pd-policy for the decode side), the P/D line the decode side's again, so
 * `--pd-policy least-request` is visible in the output.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { runCli } from './support/cli.ts';

test('--pd-policy least-request: the P/D line names it as the decode picker', async () => {
  const run = await runCli([
    'sim',
    '--requests',
    '20',
    '--prefill-instances',
    '1',
    '--decode-instances',
    '1',
    '--pd-policy',
    'least-request',
    '--no-progress',
  ]);
  assert.equal(run.code, 0, run.stderr);
  assert.match(
    run.stdout,
    /^policy round-robin \(prefill\) \/ least-request \(decode\) · /m,
    'the header: the prefill side (--policy default), then the decode side',
  );
  assert.match(run.stdout, /decode instance picked by least-request \(--pd-policy\)/);
});
