/**
 * Bad input to the P/D flags of `switchyard sim` (a disaggregated run and `--plan-pd`) as a real
 * child process: each ends at once with exit code 2 and one line naming the flag and what it takes
 * (a SY_ERR_* code or commander's usage line), never a stack trace, a hang, or a run that ignores it.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { runCli } from './support/cli.ts';

const WORKLOAD = ['sim', '--workload', 'poisson', '--rate', '2', '--requests', '5', '--no-progress'];
const PD = [...WORKLOAD, '--prefill-instances', '1', '--decode-instances', '1'];

/** [what, args, the message that must name the problem]. */
const CASES: [string, string[], RegExp][] = [
  [
    'P = 0',
    [...WORKLOAD, '--prefill-instances', '0', '--decode-instances', '2'],
    /--prefill-instances.*'0' is not a positive integer/,
  ],
  [
    'D = 0',
    [...WORKLOAD, '--prefill-instances', '2', '--decode-instances', '0'],
    /--decode-instances.*'0' is not a positive integer/,
  ],
  [
    'an unknown link',
    [...PD, '--link', 'tcp-10'],
    /--link.*'tcp-10' is invalid\. Allowed choices are nvlink, ib-400, roce-200, tcp-100/,
  ],
  [
    'an unknown pd policy',
    [...PD, '--pd-policy', 'no-such'],
    /unknown pd-policy 'no-such'; valid: .*load-aware.*prefix-aware.*round-robin.*\[SY_ERR_UNKNOWN_NAME\]/,
  ],
  [
    'an unknown conditional rule',
    [...PD, '--pd-conditional', 'always'],
    /--pd-conditional.*Allowed choices are dynamo, switchyard/,
  ],
  [
    '--link on a colocated run',
    [...WORKLOAD, '--link', 'nvlink'],
    /invalid link 'nvlink'.*\[SY_ERR_INVALID_ARGUMENT\]/,
  ],
  [
    '--instances with P and D',
    [...PD, '--instances', '4'],
    /invalid instances '4'.*\[SY_ERR_INVALID_ARGUMENT\]/,
  ],
  ['--plan-pd without --gpus', ['sim', '--plan-pd'], /invalid gpus 'missing'.*\[SY_ERR_INVALID_ARGUMENT\]/],
  [
    '--plan-pd with gpus below one TP group',
    ['sim', '--plan-pd', '--gpus', '2', '--tp', '4'],
    /invalid gpus '2': expected at least 8 GPUs for TP 4.*\[SY_ERR_INVALID_ARGUMENT\]/,
  ],
  [
    '--plan-pd with a pd policy',
    ['sim', '--plan-pd', '--gpus', '8', '--pd-policy', 'no-such'],
    /invalid pd-policy 'no-such': expected no --pd-policy with --plan-pd.*\[SY_ERR_INVALID_ARGUMENT\]/,
  ],
];

test('every bad P/D flag ends with exit code 2 and one clear line, no stack trace', async () => {
  // Five at a time: each is a short child process.
  for (let i = 0; i < CASES.length; i += 5) {
    const batch = CASES.slice(i, i + 5);
    const runs = await Promise.all(batch.map(([, args]) => runCli(args, 60_000)));
    runs.forEach((run, j) => {
      const [what, , message] = batch[j] as (typeof CASES)[number];
      assert.equal(run.code, 2, `${what}: exit ${run.code}\n${run.stderr}`);
      assert.match(run.stderr, message, what);
      assert.doesNotMatch(run.stderr, /\n\s+at /, `${what}: a stack trace\n${run.stderr}`);
      assert.equal(run.stdout, '', `${what}: nothing ran`);
    });
  }
});

test('--plan-pd --tp 2 plans TP 2 on both sides, which a disaggregated run of --tp 2 can use', async () => {
  const run = await runCli(['sim', '--plan-pd', '--gpus', '8', '--tp', '2', '--slo-tpot-ms', '12']);
  assert.equal(run.code, 0, run.stderr);
  assert.match(run.stdout, /disaggregated\s+\d+ x tp2\s+\d+ x tp2\s/);
  assert.match(run.stdout, /colocated\s+\d+ x tp2\s/);
});
