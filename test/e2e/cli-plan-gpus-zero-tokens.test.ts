/** `switchyard plan-gpus --trace` on rows with 0 prompt or 0 output tokens (BurstGPT's failed requests). */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { runCli } from './support/cli.ts';

const dir = mkdtempSync(join(tmpdir(), 'switchyard-plan-gpus-zero-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const ARGS = [
  'plan-gpus',
  '--model',
  'llama-3.1-8b',
  '--rate',
  '2',
  '--slo-ttft-ms',
  '5000',
  '--slo-tpot-ms',
  '200',
];

test('plan-gpus --trace serves a 0-token row as 1 token, as trace replay does', async () => {
  const rows = ['TIMESTAMP,ContextTokens,GeneratedTokens'];
  rows.push('2024-05-10 00:00:00.1+00:00,100,10');
  rows.push('2024-05-10 00:00:00.2+00:00,100,0');
  rows.push('2024-05-10 00:00:00.3+00:00,0,20');
  const zeros = join(dir, 'zeros.csv');
  writeFileSync(zeros, `${rows.join('\n')}\n`);
  const ones = join(dir, 'ones.csv');
  writeFileSync(ones, `${rows.map((r) => r.replace(/,0(,|$)/, ',1$1')).join('\n')}\n`);
  const [zero, one] = await Promise.all([
    runCli([...ARGS, '--trace', zeros, '--json']),
    runCli([...ARGS, '--trace', ones, '--json']),
  ]);
  assert.equal(zero.code, 0, zero.stderr);
  assert.equal(one.code, 0, one.stderr);
  assert.equal(zero.stdout, one.stdout.replaceAll(ones, zeros));
});
