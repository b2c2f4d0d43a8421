/**
 * `switchyard sim --config` with a multi-model cluster that holds a 70B model: placement's fit check
 * is the serverless TP rule (src/model/tp-fit.ts). Llama-3.1-70B at TP 2 on H100s fits its weights
 * but leaves KV for a few hundred tokens, so before the rule nearly every request of it was refused
 * by its engine; the run is now refused up front, naming the TP that fits. TP 4 serves every request,
 * and with the engines' smaller batch limits (which shrink their reserve) TP 2 has room again.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { runCli } from './support/cli.ts';

const dir = mkdtempSync(join(tmpdir(), 'switchyard-placement-fit-'));
after(() => rmSync(dir, { recursive: true, force: true }));

/** An 8B and a 70B sharing one 8-GPU H100 node, one static instance each; `extra` is appended. */
function config(tp: number, extra = ''): string {
  const file = join(dir, `tp${tp}${extra === '' ? '' : '-engine'}.yaml`);
  writeFileSync(
    file,
    `seed: 1
policy: least-request
workload:
  kind: multi-model
  models: 2
  bases: [llama-3.1-8b, llama-3.1-70b]
  modelRatesRps: [2, 1]
  onMeanS: 120
  offMeanS: 60
  input: { kind: lognormal, mean: 1000, cv: 0.5, max: 4000 }
  output: { kind: lognormal, mean: 100, cv: 0.5, max: 500 }
  durationS: 120
cluster:
  nodes:
    - { id: node-1, gpu: h100, gpus: 8 }
  models:
    - { id: m0, base: llama-3.1-8b, priority: 10, autoscaler: { name: static, minInstances: 1, maxInstances: 1 } }
    - { id: m1, base: llama-3.1-70b, tp: ${tp}, priority: 5, autoscaler: { name: static, minInstances: 1, maxInstances: 1 } }
${extra}`,
  );
  return file;
}

interface RunJson {
  rejected: number;
  models: { model: string; requests: number; completed: number }[];
}

async function run(file: string): Promise<{ code: number | null; stderr: string; json?: RunJson }> {
  const out = `${file}.json`;
  const r = await runCli(['sim', '--config', file, '--no-progress', '--json', out]);
  if (r.code !== 0) return r;
  return { ...r, json: JSON.parse(readFileSync(out, 'utf8')) as RunJson };
}

describe('sim: multi-model placement sizes KV as the engines do', () => {
  it('refuses a 70B at TP 2 on H100s, runs it at TP 4, and at TP 2 with smaller batch limits', async () => {
    const refused = await run(config(2));
    assert.equal(refused.code, 2, refused.stderr);
    assert.match(
      refused.stderr,
      /cluster\.models m1: m1 \(llama-3\.1-70b\) at tp2 leaves KV cache for \d+ tokens, under the 8192 of one step .*\(fits on: h100 tp4\) \[SY_ERR_CAPACITY\]/,
    );

    const tp4 = await run(config(4));
    assert.equal(tp4.code, 0, tp4.stderr);
    const big = tp4.json?.models.find((m) => m.model === 'm1');
    assert.ok(big !== undefined && big.requests > 100, JSON.stringify(big));
    assert.equal(big.completed, big.requests);
    assert.equal(tp4.json?.rejected, 0);

    const smaller = await run(config(2, 'engine: { maxNumSeqs: 256, maxNumBatchedTokens: 2048 }\n'));
    assert.equal(smaller.code, 0, smaller.stderr);
    const big2 = smaller.json?.models.find((m) => m.model === 'm1');
    assert.ok(big2 !== undefined && big2.requests > 100, JSON.stringify(big2));
    assert.equal(big2.completed, big2.requests);
  });
});
