import type { ModelId } from '../core/ids.ts';
import { closeIds, normalizeName, unknownCatalogueName } from './names.ts';
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

/**
 * Other Hugging Face names of checkpoints with exactly a catalogue entry's shapes (config.json's
 * layers, hidden, heads, KV heads, FFN and vocabulary), besides its `hfName`. A chat or instruct
 * fine-tune has the same shapes as its base model (fine-tuning changes weights, not dimensions), so
 * either name models the same; `-hf` is the Transformers-format copy of Meta's checkpoint.
 * `Meta-Llama-3.1-*` is the name Meta's Llama 3.1 repositories had at release. Qwen2.5-7B (base)
 * declares a 131,072-token context where the instruct model declares 32,768; the shapes are the
 * same. Left out on purpose: quantised checkpoints (AWQ, GPTQ, FP8: other weight and KV bytes than
 * the catalogue's 2), other sizes, and the Code Llama 7B/13B (another vocabulary).
 */
const MODEL_HF_ALIASES: Readonly<Record<ModelId, readonly string[]>> = {
  'llama-2-7b': ['meta-llama/Llama-2-7b', 'meta-llama/Llama-2-7b-chat', 'meta-llama/Llama-2-7b-chat-hf'],
  'llama-2-70b': ['meta-llama/Llama-2-70b', 'meta-llama/Llama-2-70b-chat', 'meta-llama/Llama-2-70b-chat-hf'],
  'llama-3.1-8b': [
    'meta-llama/Llama-3.1-8B',
    'meta-llama/Meta-Llama-3.1-8B',
    'meta-llama/Meta-Llama-3.1-8B-Instruct',
  ],
  'llama-3.1-70b': [
    'meta-llama/Llama-3.1-70B',
    'meta-llama/Meta-Llama-3.1-70B',
    'meta-llama/Meta-Llama-3.1-70B-Instruct',
  ],
  'codellama-34b': [
    'codellama/CodeLlama-34b-hf',
    'meta-llama/CodeLlama-34b-hf',
    'meta-llama/CodeLlama-34b-Instruct-hf',
  ],
  'qwen2.5-7b': ['Qwen/Qwen2.5-7B'],
  'mixtral-8x7b': ['mistralai/Mixtral-8x7B-v0.1'],
};

/**
 * Every spelling a model answers to, normalised (names.ts), to its id: the id, and each Hugging Face
 * name with its organisation and without. Two entries claiming one spelling is a catalogue bug.
 */
const MODEL_KEYS: ReadonlyMap<string, ModelId> = (() => {
  const keys = new Map<string, ModelId>();
  const claim = (spelling: string, id: ModelId): void => {
    const key = normalizeName(spelling);
    const owner = keys.get(key);
    if (owner !== undefined && owner !== id)
      throw new Error(`model catalogue: '${key}' names ${owner} and ${id}`);
    keys.set(key, id);
  };
  for (const m of MODEL_LIST) {
    claim(m.id, m.id);
    for (const hf of [m.hfName, ...(MODEL_HF_ALIASES[m.id] ?? [])]) {
      claim(hf, m.id);
      claim(hf.slice(hf.lastIndexOf('/') + 1), m.id);
    }
  }
  return keys;
})();

/**
 * The catalogue id a user's model name means: the id itself, the id in any case, or a Hugging Face
 * name of the same architecture (the entry's `hfName` or an alias above; with its organisation or
 * without, any case), e.g. `meta-llama/Llama-2-7b-hf` and `Llama-2-7b-chat-hf` give `llama-2-7b`.
 * A name with another organisation is not guessed at. Throws SY_ERR_UNKNOWN_NAME listing the ids,
 * with "did you mean" when one is close.
 */
export function resolveModelId(name: string): ModelId {
  if (MODELS.has(name)) return name;
  const id = MODEL_KEYS.get(normalizeName(name));
  if (id !== undefined) return id;
  throw unknownCatalogueName('model', name, modelIds(), { suggestions: closeIds(name, MODEL_KEYS) });
}

/** resolveModelId without the throw: the id a name means, or undefined when it means none. */
export function findModelId(name: string): ModelId | undefined {
  return MODELS.has(name) ? name : MODEL_KEYS.get(normalizeName(name));
}

/** The model a name means (resolveModelId's rules); throws SY_ERR_UNKNOWN_NAME listing the valid ids. */
export function modelSpec(id: ModelId): ModelSpec {
  const model = MODELS.get(id) ?? MODELS.get(resolveModelId(id));
  if (model === undefined) throw unknownCatalogueName('model', id, modelIds());
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
