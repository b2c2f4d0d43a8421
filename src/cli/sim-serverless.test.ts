/**
 * `sim --serverless-policy` takes the GPU and the model from the config file's cluster when no flag
 * gives them, as every other run does: commander's defaults (`--gpu h100`, `--model llama-3.1-8b`)
 * are not flags given. A flag given on the command line still wins, even one that names the default.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { SimConfigFile } from '../twin/config.ts';
import { resolveSettings } from './sim-command.ts';
import { fromCli, simFlags } from './sim-test-support.ts';

/** A config file: a multi-model workload and `cluster` (uniform form). */
function configFile(cluster: Record<string, unknown>, workload: Record<string, unknown> = {}): SimConfigFile {
  return {
    cluster,
    workload: {
      kind: 'multi-model',
      models: 3,
      rateRps: 1,
      durationS: 60,
      input: { kind: 'fixed', tokens: 128 },
      output: { kind: 'fixed', tokens: 8 },
      ...workload,
    },
  } as SimConfigFile;
}

/** The serverless block of a run with `--serverless-policy keep-alive --gpus 8` and `extra` given. */
function serverless(file: SimConfigFile, extra: Record<string, unknown> = {}) {
  const given = { serverlessPolicy: 'keep-alive', gpus: 8, ...extra };
  const settings = resolveSettings(simFlags(given), file, fromCli(Object.keys(given)));
  assert.ok(settings.serverless !== undefined);
  return settings.serverless;
}

describe('sim --serverless-policy over a config file', () => {
  it("takes the file's cluster GPU when --gpu is not given", () => {
    const s = serverless(configFile({ gpu: 'h200' }));
    assert.deepEqual([...new Set(s.nodes.map((n) => n.gpu))], ['h200']);
    assert.deepEqual([...new Set(s.models.map((m) => m.gpu))], ['h200']);
  });

  it("takes the file's cluster model as every served model's base, as --model does", () => {
    const s = serverless(configFile({ model: 'qwen2.5-7b' }));
    assert.deepEqual([...new Set(s.models.map((m) => m.base))], ['qwen2.5-7b']);
  });

  it('a flag given wins over the file, even one naming the default', () => {
    const s = serverless(configFile({ gpu: 'h200', model: 'qwen2.5-7b' }), {
      gpu: 'h100',
      model: 'llama-3.1-8b',
    });
    assert.deepEqual([...new Set(s.nodes.map((n) => n.gpu))], ['h100']);
    assert.deepEqual([...new Set(s.models.map((m) => m.base))], ['llama-3.1-8b']);
  });

  it("refuses --model given with the workload's other bases, even --model at its default", () => {
    assert.throws(() => serverless(configFile({}, { bases: ['opt-13b'] }), { model: 'llama-3.1-8b' }), {
      code: 'SY_ERR_INVALID_ARGUMENT',
      message:
        /invalid model 'llama-3\.1-8b': expected one base for every served model, or the workload's bases \(opt-13b\)/,
    });
  });

  it("refuses the file's cluster.model with other workload.bases naming those fields, not --model", () => {
    assert.throws(() => serverless(configFile({ model: 'qwen2.5-7b' }, { bases: ['opt-13b'] })), {
      code: 'SY_ERR_INVALID_CONFIG',
      message: /cluster\.model 'qwen2\.5-7b' and workload\.bases \(opt-13b\) disagree/,
    });
    // The same base under its Hugging Face name agrees.
    const s = serverless(configFile({ model: 'qwen2.5-7b' }, { bases: ['Qwen/Qwen2.5-7B-Instruct'] }));
    assert.deepEqual([...new Set(s.models.map((m) => m.base))], ['qwen2.5-7b']);
  });

  it('without a config file: the defaults, and the workload mix of bases', () => {
    const s = serverless(configFile({}));
    assert.deepEqual([...new Set(s.nodes.map((n) => n.gpu))], ['h100']);
    assert.ok(new Set(s.models.map((m) => m.base)).size > 1, 'the default mix');
  });
});
