/** Catalogue names as users copy them from vLLM, Hugging Face and nvidia-smi. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { SwitchyardError } from '../core/errors.ts';
import { findGpuId, GPUS, gpuSpec, resolveGpuId } from './gpus.ts';
import { findModelId, MODELS, modelSpec, resolveModelId } from './models.ts';
import { checkpointName, closeIds, editDistance, normalizeName } from './names.ts';
import { catalogueGpuSchema, catalogueModelSchema, gpuNameSchema } from './names-schema.ts';

/** The SY_ERR_UNKNOWN_NAME a resolve throws, for its message and details. */
function refusal(resolve: () => unknown): SwitchyardError {
  try {
    resolve();
  } catch (error) {
    assert.ok(error instanceof SwitchyardError);
    assert.equal(error.code, 'SY_ERR_UNKNOWN_NAME');
    return error;
  }
  assert.fail('expected a refusal');
}

describe('model names', () => {
  it('takes every catalogue id as is, and in any case', () => {
    for (const id of MODELS.keys()) {
      assert.equal(resolveModelId(id), id);
      assert.equal(resolveModelId(id.toUpperCase()), id);
    }
  });

  it("takes each model's Hugging Face name, with its organisation or without, in any case", () => {
    for (const [id, spec] of MODELS) {
      assert.equal(resolveModelId(spec.hfName), id);
      assert.equal(resolveModelId(spec.hfName.toLowerCase()), id);
      assert.equal(resolveModelId(spec.hfName.slice(spec.hfName.indexOf('/') + 1)), id);
    }
  });

  it('takes the base and chat/instruct names of the same architecture', () => {
    const cases: [string, string][] = [
      ['meta-llama/Llama-2-7b-hf', 'llama-2-7b'],
      ['meta-llama/Llama-2-7b-chat-hf', 'llama-2-7b'],
      ['Llama-2-70b-hf', 'llama-2-70b'],
      ['llama-2-70b-chat-hf', 'llama-2-70b'],
      ['meta-llama/Llama-3.1-8B', 'llama-3.1-8b'],
      ['meta-llama/Meta-Llama-3.1-70B-Instruct', 'llama-3.1-70b'],
      ['codellama/CodeLlama-34b-hf', 'codellama-34b'],
      ['codellama/CodeLlama-34b-Instruct-hf', 'codellama-34b'],
      ['mistralai/Mixtral-8x7B-v0.1', 'mixtral-8x7b'],
      ['Qwen/Qwen2.5-7B', 'qwen2.5-7b'],
      ['  facebook/OPT-13B ', 'opt-13b'],
    ];
    for (const [name, id] of cases) assert.equal(resolveModelId(name), id, name);
    assert.equal(modelSpec('meta-llama/Llama-2-7b-hf'), MODELS.get('llama-2-7b'));
  });

  it('refuses other sizes, quantised copies and other organisations, listing the ids', () => {
    for (const name of ['meta-llama/Llama-2-13b-hf', 'Llama-2-7B-AWQ', 'acme/Llama-2-7b-hf', 'gpt-4', '']) {
      const error = refusal(() => resolveModelId(name));
      assert.match(
        error.message,
        new RegExp(`^unknown model '${name.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}'`),
      );
      assert.match(error.message, /; valid: bloom-176b, codellama-34b, .*qwen2\.5-7b$/);
      assert.equal(findModelId(name), undefined);
    }
  });

  it('suggests a close id, never one of another size', () => {
    assert.match(refusal(() => resolveModelId('llama-3.1-8bb')).message, /did you mean 'llama-3\.1-8b'\?/);
    assert.match(refusal(() => resolveModelId('Mixtral-8x7B-AWQ')).message, /did you mean 'mixtral-8x7b'\?/);
    assert.deepEqual(refusal(() => resolveModelId('acme/Llama-2-7b-hf')).details?.['suggestions'], [
      'llama-2-7b',
    ]);
    assert.doesNotMatch(refusal(() => resolveModelId('meta-llama/Llama-2-13b-hf')).message, /did you mean/);
  });
});

describe('model names as an outside evaluator copies them', () => {
  it('reads a Hub address, a revision and a local checkpoint folder as the checkpoint they name', () => {
    const cases: [string, string][] = [
      ['https://huggingface.co/meta-llama/Llama-2-7b-hf', 'llama-2-7b'],
      ['huggingface.co/meta-llama/Llama-2-70b-chat-hf/', 'llama-2-70b'],
      ['https://huggingface.co/codellama/CodeLlama-34b-Instruct-hf/tree/main', 'codellama-34b'],
      ['meta-llama/Llama-2-7b-hf@main', 'llama-2-7b'],
      ['mistralai/Mixtral-8x7B-Instruct-v0.1@41bd4c9e7e4fb318ca40e721131d4933966c2cc1', 'mixtral-8x7b'],
      ['/models/Llama-2-7b-chat-hf', 'llama-2-7b'],
      ['/data/models/meta-llama/Llama-2-70b-chat-hf/', 'llama-2-70b'],
      ['./CodeLlama-34b-Instruct-hf', 'codellama-34b'],
      [
        '/root/.cache/huggingface/hub/models--mistralai--Mixtral-8x7B-Instruct-v0.1/snapshots/41bd4c9e',
        'mixtral-8x7b',
      ],
    ];
    for (const [name, id] of cases) {
      assert.equal(resolveModelId(name), id, name);
      assert.equal(findModelId(name), id, name);
    }
    assert.equal(
      checkpointName('https://huggingface.co/meta-llama/Llama-2-7b-hf@v1'),
      'meta-llama/Llama-2-7b-hf',
    );
  });

  it('takes short names papers and tables write: no `-` before the version, a chat/instruct suffix', () => {
    const cases: [string, string][] = [
      ['Llama2-7B', 'llama-2-7b'],
      ['llama2-70b-chat', 'llama-2-70b'],
      ['CodeLlama34B', 'codellama-34b'],
      ['CodeLlama-34b-Instruct', 'codellama-34b'],
      ['codellama-34b-instruct', 'codellama-34b'],
      ['Mixtral-8x7B-Instruct', 'mixtral-8x7b'],
      ['llama3.1-8b', 'llama-3.1-8b'],
    ];
    for (const [name, id] of cases) assert.equal(resolveModelId(name), id, name);
  });

  it('still refuses quantised copies, other sizes and other organisations, saying what to write', () => {
    for (const name of [
      'Llama-2-7B-Chat-AWQ',
      'Llama2-13B',
      'CodeLlama-7b-Instruct',
      'meta-llama/Llama-2-7b-hf:main',
    ])
      assert.equal(findModelId(name), undefined, name);
    const error = refusal(() => resolveModelId('NousResearch/Llama-2-7b-hf'));
    assert.match(
      error.message,
      /^unknown model 'NousResearch\/Llama-2-7b-hf': 'NousResearch' is not the organisation of the catalogue's llama-2-7b \(meta-llama\/Llama-2-7b-hf\).*write the id; did you mean 'llama-2-7b'\?; valid: /,
    );
    assert.equal(findModelId('https://huggingface.co/NousResearch/Llama-2-7b-hf'), undefined);
  });
});

describe('GPU names', () => {
  it('takes every catalogue id, and in any case', () => {
    for (const id of GPUS.keys()) {
      assert.equal(resolveGpuId(id), id);
      assert.equal(resolveGpuId(id.toUpperCase()), id);
    }
  });

  it('takes nvidia-smi names and common spellings of the same part', () => {
    const cases: [string, string][] = [
      ['H100', 'h100'],
      ['H100-SXM', 'h100'],
      ['h100_sxm5', 'h100'],
      ['h100-80gb', 'h100'],
      ['NVIDIA H100 80GB HBM3', 'h100'],
      ['A100-SXM4-80GB', 'a100-80gb'],
      ['NVIDIA A100-SXM4-40GB', 'a100-40gb'],
      ['A100 40GB', 'a100-40gb'],
      ['a100-80g', 'a100-80gb'],
      ['NVIDIA H200', 'h200'],
      ['H200 141GB', 'h200'],
      ['L40S', 'l40s'],
      ['NVIDIA L4', 'l4'],
      ['NVIDIA A10G', 'a10g'],
      ['Tesla A40 48GB', 'a40'],
    ];
    for (const [name, id] of cases) assert.equal(resolveGpuId(name), id, name);
    assert.equal(gpuSpec('NVIDIA H100 80GB HBM3'), GPUS.get('h100'));
  });

  it('takes memory written apart from its unit, brackets, a glued form factor and the marketing name', () => {
    const cases: [string, string][] = [
      ['H100 80 GB', 'h100'],
      ['H100 SXM5 (80 GB)', 'h100'],
      ['H100 (80GB)', 'h100'],
      ['H100SXM5', 'h100'],
      ['H100 SXM, 80GB', 'h100'],
      ['NVIDIA H100 Tensor Core GPU', 'h100'],
      ['A100 SXM4 / 80 GB', 'a100-80gb'],
    ];
    for (const [name, id] of cases) assert.equal(resolveGpuId(name), id, name);
    assert.match(refusal(() => resolveGpuId('H100PCIe')).message, /a PCIe card has other clocks/);
  });

  it('refuses a GPU count in the name, saying to write the GPU alone and the count as tp and instances', () => {
    for (const name of ['8x H100', '8xH100', 'H100x8', '4 x H100 SXM', 'NVIDIA H100 80GB HBM3 (x4)']) {
      const error = refusal(() => resolveGpuId(name));
      assert.match(
        error.message,
        /: a GPU name names one GPU, not [48]: write gpu: h100 and the count as tp/,
        name,
      );
    }
    assert.match(refusal(() => resolveGpuId('2x A100')).message, /write gpu: the GPU alone and the count/);
  });

  it('refuses a PCIe or NVL part of an SXM entry with the reason, not the SXM figures', () => {
    for (const name of ['NVIDIA H100 PCIe', 'H100 NVL', 'A100 80GB PCIe', 'NVIDIA H200 NVL']) {
      const error = refusal(() => resolveGpuId(name));
      assert.match(
        error.message,
        /card has other clocks, memory bandwidth and interconnect, so it is not modelled/,
      );
      assert.equal(findGpuId(name), undefined);
    }
    assert.match(refusal(() => resolveGpuId('L40S SXM')).message, /is a PCIe card, not an SXM module/);
  });

  it('refuses a memory size the catalogue lacks, and near parts it does not model', () => {
    assert.match(refusal(() => resolveGpuId('h100-94gb')).message, /no 94 GB h100 \(h100: 80 GB\)/);
    assert.match(refusal(() => resolveGpuId('L40')).message, /L40 is not the L40S/);
    assert.match(refusal(() => resolveGpuId('NVIDIA A10')).message, /A10 is not AWS's A10G/);
  });

  it('refuses a name that fits several entries as ambiguous, naming them', () => {
    const error = refusal(() => resolveGpuId('A100'));
    assert.match(
      error.message,
      /^ambiguous gpu 'A100': give the memory size; did you mean 'a100-40gb' or 'a100-80gb'\?/,
    );
    assert.deepEqual(error.details?.['suggestions'], ['a100-40gb', 'a100-80gb']);
  });

  it('refuses an unknown name listing the ids, with "did you mean" when close', () => {
    assert.match(
      refusal(() => resolveGpuId('h900')).message,
      /^unknown gpu 'h900'; valid: a100-40gb, .*l40s$/,
    );
    assert.match(refusal(() => resolveGpuId('H100X')).message, /did you mean 'h100'\?/);
    assert.match(refusal(() => resolveGpuId('l4x')).message, /did you mean 'l4'\?/);
    // One letter apart is another generation, not a near name.
    // A name that extends or is extended by a catalogue chip by digits is another chip too (the
    // H20 is a China-market Hopper, the A4 an Ampere workstation card), not a shortened id.
    for (const name of ['B200', 'GH200', 'A10X', 'H20', 'A4', 'L40X'])
      assert.doesNotMatch(refusal(() => resolveGpuId(name)).message, /did you mean/, name);
    assert.match(refusal(() => resolveGpuId('x'.repeat(1000))).message, /^unknown gpu 'x{200}…'; valid/);
  });
});

describe('name helpers', () => {
  it('normalises case, spaces and underscores', () => {
    assert.equal(normalizeName('  NVIDIA  H100_SXM '), 'nvidia-h100-sxm');
  });

  it('measures edit distance', () => {
    assert.equal(editDistance('kitten', 'sitting'), 3);
    assert.equal(editDistance('', 'abc'), 3);
    assert.equal(editDistance('same', 'same'), 0);
  });

  it('suggests at most three ids, nearest first', () => {
    const keys = new Map(['llama-2-7b', 'llama-2-70b', 'llama-3.1-8b', 'llama-3.1-70b'].map((k) => [k, k]));
    assert.equal(closeIds('llama', keys).length, 3);
    assert.deepEqual(closeIds('llama-3.1-8', keys), ['llama-3.1-8b']);
  });

  it('config fields yield ids, and refuse (or keep, for the lenient one) unknown names', () => {
    assert.equal(catalogueGpuSchema.parse('NVIDIA H100 80GB HBM3'), 'h100');
    assert.equal(catalogueModelSchema.parse('meta-llama/Llama-2-7b-hf'), 'llama-2-7b');
    const bad = catalogueGpuSchema.safeParse('H100 PCIe');
    assert.equal(bad.success, false);
    assert.match(bad.error?.issues[0]?.message ?? '', /PCIe card has other clocks/);
    assert.equal(gpuNameSchema.parse('h100-sxm'), 'h100');
    assert.equal(gpuNameSchema.parse('tpu-v5'), 'tpu-v5');
  });
});
