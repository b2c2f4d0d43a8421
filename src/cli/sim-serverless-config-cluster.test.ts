/**
 * A config file's `cluster.instances` (or `cluster.groups`) with --serverless-policy ran exactly as
 * without it: --gpus sizes a serverless cluster, and the count was silently ignored (as --instances
 * was before eaceed1 refused it). Now refused naming the key; `cluster.gpu` and `cluster.model` are
 * still read.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { runCliInProcess } from './cli-test-support.ts';
import { USAGE_EXIT_CODE } from './main.ts';

const dir = mkdtempSync(join(tmpdir(), 'sy-serverless-config-'));
const WORKLOAD =
  'workload: { kind: multi-model, models: 2, rateRps: 2, durationS: 30, input: { kind: fixed, tokens: 100 }, output: { kind: fixed, tokens: 10 } }\n';

function config(name: string, cluster: string): string {
  const path = join(dir, `${name}.yaml`);
  writeFileSync(path, `cluster: ${cluster}\n${WORKLOAD}`);
  return path;
}

const serverless = (path: string) =>
  runCliInProcess([
    'sim',
    '--no-progress',
    '--config',
    path,
    '--serverless-policy',
    'keep-alive',
    '--gpus',
    '2',
  ]);

test('cluster.instances and cluster.groups with --serverless-policy are refused, naming the key', async () => {
  for (const [name, cluster, key] of [
    ['instances', '{ instances: 3 }', 'instances'],
    ['instances-gpu', '{ instances: 3, gpu: a100-80gb }', 'instances'],
    ['groups', '{ groups: [{ count: 2, gpu: l4, model: llama-3.1-8b, tp: 1 }] }', 'groups'],
  ] as const) {
    const r = await serverless(config(name, cluster));
    assert.equal(r.code, USAGE_EXIT_CODE, `${name}: ${r.stderr}`);
    assert.match(
      r.stderr,
      new RegExp(
        `config: cluster\\.${key}: not with --serverless-policy: --gpus sizes the cluster.*\\[SY_ERR_INVALID_CONFIG\\]`,
      ),
    );
    assert.doesNotMatch(r.stderr, /\n\s+at /);
  }
  // The GPU type alone is read, as before.
  assert.equal((await serverless(config('gpu', '{ gpu: a100-80gb }'))).code, 0);
});

test("cluster.tp is every served model's TP, as --tp is (it was silently dropped)", async () => {
  const json = join(dir, 'tp.json');
  const path = config('tp', '{ tp: 2 }');
  const r = await runCliInProcess([
    'sim',
    '--no-progress',
    '--config',
    path,
    '--serverless-policy',
    'keep-alive',
    '--gpus',
    '4',
    '--json',
    json,
  ]);
  assert.equal(r.code, 0, r.stderr);
  const result = JSON.parse(readFileSync(json, 'utf8')) as {
    instances: number;
    perInstance: { tp: number }[];
  };
  // Two models, each at most 4 GPUs / TP 2 = 2 instances: 4 slots (at TP 1: 8).
  assert.equal(result.instances, 4);
  assert.ok(result.perInstance.length > 0 && result.perInstance.every((i) => i.tp === 2));
  // A flag still wins over the file.
  const flagged = await runCliInProcess([
    'sim',
    '--no-progress',
    '--config',
    path,
    '--serverless-policy',
    'keep-alive',
    '--gpus',
    '4',
    '--tp',
    '1',
    '--json',
    json,
  ]);
  assert.equal(flagged.code, 0, flagged.stderr);
  assert.equal((JSON.parse(readFileSync(json, 'utf8')) as { instances: number }).instances, 8);
});

test('an autoscaler block with --serverless-policy is refused naming it', async () => {
  const path = join(dir, 'autoscaler.yaml');
  writeFileSync(path, `autoscaler: { name: kpa, maxInstances: 3 }\n${WORKLOAD}`);
  const r = await serverless(path);
  assert.equal(r.code, USAGE_EXIT_CODE);
  assert.match(r.stderr, /config: autoscaler: not with --serverless-policy.*\[SY_ERR_INVALID_CONFIG\]/);
});
