/**
 * `--model` with `--serverless-policy`: every served model runs on that base, so a model that does
 * not fit `--gpu` is refused as in a plain run (it used to run the catalogue mix silently).
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { runCli } from './support/cli.ts';

const RUN = ['sim', '--workload', 'multi-model', '--models', '2', '--duration', '30', '--serverless-policy'];

test('--model llama-2-70b --gpu a10g with --serverless-policy is refused, naming the model', async () => {
  const run = await runCli([
    ...RUN,
    'keep-alive',
    '--gpus',
    '2',
    '--model',
    'llama-2-70b',
    '--gpu',
    'a10g',
    '--no-progress',
  ]);
  assert.equal(run.code, 2, run.stderr);
  assert.match(run.stderr, /invalid model 'llama-2-70b': expected a model that fits 2 a10g GPUs/);
  assert.match(run.stderr, /SY_ERR_INVALID_ARGUMENT/);
});

test('--model llama-2-70b on H100s: every served model runs it, at TP 2', async () => {
  const file = join(mkdtempSync(join(tmpdir(), 'sy-serverless-model-')), 'out.json');
  const run = await runCli([
    ...RUN,
    'keep-alive',
    '--gpus',
    '8',
    '--model',
    'llama-2-70b',
    '--gpu',
    'h100',
    '--json',
    file,
    '--no-progress',
  ]);
  assert.equal(run.code, 0, run.stderr);
  const out = JSON.parse(readFileSync(file, 'utf8')) as { perInstance: { gpu: string; tp: number }[] };
  assert.ok(out.perInstance.length > 0);
  for (const i of out.perInstance) assert.deepEqual([i.gpu, i.tp], ['h100', 2]);
});
