/**
 * A P/D run refuses what it cannot combine with by name. It said "a P/D cluster runs without
 * autoscaling, placement, serverless, faults or batch jobs" whichever was given, though a P/D run
 * does autoscale (`--autoscaler` scales each pool), so `--fault` read as if `--autoscaler` were
 * the trouble.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { runCliInProcess } from './cli-test-support.ts';
import { USAGE_EXIT_CODE } from './main.ts';

const pd = [
  'sim',
  '--no-progress',
  '--prefill-instances',
  '1',
  '--decode-instances',
  '1',
  '--requests',
  '20',
];

test('--fault with a P/D cluster is refused naming faults, not autoscaling', async () => {
  const r = await runCliInProcess([...pd, '--fault', 'crash:i0@10s+5s']);
  assert.equal(r.code, USAGE_EXIT_CODE);
  assert.match(
    r.stderr,
    /a P\/D cluster \(--prefill-instances, --decode-instances\) runs without faults \(--fault\) \[SY_ERR_INVALID_ARGUMENT\]/,
  );
  assert.doesNotMatch(r.stderr, /autoscal/);
});

test('--batch-requests is named the same way; --autoscaler runs', async () => {
  const r = await runCliInProcess([...pd, '--batch-requests', '10']);
  assert.equal(r.code, USAGE_EXIT_CODE);
  assert.match(r.stderr, /runs without batch jobs \(--batch-requests\)/);
  assert.equal((await runCliInProcess([...pd, '--autoscaler', 'kpa'])).code, 0);
});
