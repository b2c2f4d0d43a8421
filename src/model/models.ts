import { unknownName } from '../core/errors.ts';
import type { ModelId } from '../core/ids.ts';
import type { ModelSpec } from './types.ts';

/**
 * Model architectures, as published in each model's Hugging Face `config.json`. Adding a model is a
 * data entry here; the performance model derives everything else (weights, KV size, FLOPs) from
 * these fields. All entries are bf16/fp16 checkpoints (2 bytes per weight and per KV element).
 */
const MODEL_LIST: readonly ModelSpec[] = [
  {
    id: 'llama-2-7b',
    contextTokensMax: 4096,
    hfName: 'meta-llama/Llama-2-7b-hf',
    layers: 32,
    hiddenSize: 4096,
    heads: 32,
    kvHeads: 32,
    headDim: 128,
    ffnSize: 11008,
    vocabSize: 32000,
    experts: 1,
    expertsPerToken: 1,
    gatedMlp: true,
    dtypeBytes: 2,
  },
  {
    id: 'llama-2-70b',
    contextTokensMax: 4096,
    hfName: 'meta-llama/Llama-2-70b-hf',
    layers: 80,
    hiddenSize: 8192,
    heads: 64,
    kvHeads: 8,
    headDim: 128,
    ffnSize: 28672,
    vocabSize: 32000,
    experts: 1,
    expertsPerToken: 1,
    gatedMlp: true,
    dtypeBytes: 2,
  },
  {
    id: 'llama-3.1-8b',
    contextTokensMax: 131072,
    hfName: 'meta-llama/Llama-3.1-8B-Instruct',
    layers: 32,
    hiddenSize: 4096,
    heads: 32,
    kvHeads: 8,
    headDim: 128,
    ffnSize: 14336,
    vocabSize: 128256,
    experts: 1,
    expertsPerToken: 1,
    gatedMlp: true,
    dtypeBytes: 2,
  },
  {
    id: 'llama-3.1-70b',
    contextTokensMax: 131072,
    hfName: 'meta-llama/Llama-3.1-70B-Instruct',
    layers: 80,
    hiddenSize: 8192,
    heads: 64,
    kvHeads: 8,
    headDim: 128,
    ffnSize: 28672,
    vocabSize: 128256,
    experts: 1,
    expertsPerToken: 1,
    gatedMlp: true,
    dtypeBytes: 2,
  },
  {
    id: 'codellama-34b',
    contextTokensMax: 16384,
    hfName: 'codellama/CodeLlama-34b-Instruct-hf',
    layers: 48,
    hiddenSize: 8192,
    heads: 64,
    kvHeads: 8,
    headDim: 128,
    ffnSize: 22016,
    vocabSize: 32000,
    experts: 1,
    expertsPerToken: 1,
    gatedMlp: true,
    dtypeBytes: 2,
  },
  {
    id: 'qwen2.5-7b',
    contextTokensMax: 32768,
    hfName: 'Qwen/Qwen2.5-7B-Instruct',
    layers: 28,
    hiddenSize: 3584,
    heads: 28,
    kvHeads: 4,
    headDim: 128,
    ffnSize: 18944,
    vocabSize: 152064,
    experts: 1,
    expertsPerToken: 1,
    gatedMlp: true,
    dtypeBytes: 2,
  },
  {
    id: 'mixtral-8x7b',
    contextTokensMax: 32768,
    hfName: 'mistralai/Mixtral-8x7B-Instruct-v0.1',
    layers: 32,
    hiddenSize: 4096,
    heads: 32,
    kvHeads: 8,
    headDim: 128,
    ffnSize: 14336,
    vocabSize: 32000,
    experts: 8,
    expertsPerToken: 2,
    gatedMlp: true,
    dtypeBytes: 2,
  },
  // OPT and BLOOM are here because the calibration data (DistServe, Splitwise) measured them.
  {
    id: 'opt-13b',
    contextTokensMax: 2048,
    hfName: 'facebook/opt-13b',
    layers: 40,
    hiddenSize: 5120,
    heads: 40,
    kvHeads: 40,
    headDim: 128,
    ffnSize: 20480,
    vocabSize: 50272,
    experts: 1,
    expertsPerToken: 1,
    gatedMlp: false,
    dtypeBytes: 2,
    tiedEmbeddings: true,
  },
  {
    id: 'opt-66b',
    contextTokensMax: 2048,
    hfName: 'facebook/opt-66b',
    layers: 64,
    hiddenSize: 9216,
    heads: 72,
    kvHeads: 72,
    headDim: 128,
    ffnSize: 36864,
    vocabSize: 50272,
    experts: 1,
    expertsPerToken: 1,
    gatedMlp: false,
    dtypeBytes: 2,
    tiedEmbeddings: true,
  },
  {
    id: 'bloom-176b',
    contextTokensMax: 2048,
    hfName: 'bigscience/bloom',
    layers: 70,
    hiddenSize: 14336,
    heads: 112,
    kvHeads: 112,
    headDim: 128,
    ffnSize: 57344,
    vocabSize: 250880,
    experts: 1,
    expertsPerToken: 1,
    gatedMlp: false,
    dtypeBytes: 2,
    tiedEmbeddings: true,
    // ALiBi position biases (BigScience's model card), which vLLM's cascade attention refuses.
    alibi: true,
  },
];

/** The model catalogue by id. */
export const MODELS: ReadonlyMap<ModelId, ModelSpec> = new Map(
  MODEL_LIST.map((m) => [m.id, Object.freeze(m)]),
);

/** Valid model ids, in catalogue order (the command line lists these). */
export function modelIds(): ModelId[] {
  return [...MODELS.keys()];
}

/** The model with this id; throws SY_ERR_UNKNOWN_NAME listing the valid ids. */
export function modelSpec(id: ModelId): ModelSpec {
  const model = MODELS.get(id);
  if (model === undefined) throw unknownName('model', id, modelIds());
  return model;
}

/** Parameters of one transformer layer's attention (Q, K, V and O projections). */
export function attentionParamsPerLayer(model: ModelSpec): number {
  const qDim = model.heads * model.headDim;
  const kvDim = model.kvHeads * model.headDim;
  return model.hiddenSize * (qDim + 2 * kvDim) + qDim * model.hiddenSize;
}

/** Parameters of one expert's MLP (gate, up and down for a gated MLP; up and down otherwise). */
export function expertParams(model: ModelSpec): number {
  return (model.gatedMlp ? 3 : 2) * model.hiddenSize * model.ffnSize;
}

/** Total parameters: layers (attention, all experts, router) plus embeddings and the LM head. */
export function parameterCount(model: ModelSpec): number {
  const router = model.experts > 1 ? model.hiddenSize * model.experts : 0;
  const perLayer = attentionParamsPerLayer(model) + model.experts * expertParams(model) + router;
  const embeddings = model.vocabSize * model.hiddenSize * (model.tiedEmbeddings === true ? 1 : 2);
  return model.layers * perLayer + embeddings;
}

/** Bytes of weights for the whole model (all tensor-parallel shards together). */
export function modelWeightBytes(model: ModelSpec): number {
  return parameterCount(model) * model.dtypeBytes;
}
