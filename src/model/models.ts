import type { ModelId } from '../core/ids.ts';
import { checkpointName, closeIds, normalizeName, unknownCatalogueName } from './names.ts';
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
 * Org-less spellings with their `-` removed (`llama27b`), to their id: papers and benchmark tables
 * write `Llama2-7B` and `CodeLlama34B`. A compact form two entries share would be dropped (none does).
 */
const COMPACT_KEYS: ReadonlyMap<string, ModelId> = (() => {
  const compact = new Map<string, ModelId | null>();
  for (const [key, id] of MODEL_KEYS) {
    if (key.includes('/')) continue;
    const c = key.replace(/-/g, '');
    const owner = compact.get(c);
    compact.set(c, owner === undefined || owner === id ? id : null);
  }
  return new Map([...compact].filter((e): e is [string, ModelId] => e[1] !== null));
})();

/**
 * Words after a model's name that name a fine-tune or a format of the same shapes (a chat or
 * instruct model has its base model's config.json dimensions; `-hf` is the Transformers copy), so
 * `CodeLlama-34b-Instruct` and `Mixtral-8x7B-Instruct` are the entries they extend.
 */
const SAME_SHAPES_SUFFIX = /-(?:chat|instruct|hf|base)$/;

/** The id an org-less, normalised name means: exactly, without `-`, or less a same-shapes suffix. */
function findOrgless(name: string): ModelId | undefined {
  let base = name;
  for (;;) {
    const id = MODEL_KEYS.get(base) ?? COMPACT_KEYS.get(base.replace(/-/g, ''));
    if (id !== undefined || !SAME_SHAPES_SUFFIX.test(base)) return id;
    base = base.replace(SAME_SHAPES_SUFFIX, '');
  }
}

/**
 * The catalogue id a user's model name means: the id itself, the id in any case, or a Hugging Face
 * name of the same architecture (the entry's `hfName` or an alias above; with its organisation or
 * without, any case), e.g. `meta-llama/Llama-2-7b-hf` and `Llama-2-7b-chat-hf` give `llama-2-7b`.
 * Also read: a Hub address, a revision after `@`, a local checkpoint folder (names.ts
 * checkpointName); without an organisation, `-` left out (`Llama2-7B`) and a chat/instruct/hf suffix
 * (`Mixtral-8x7B-Instruct`). A name with another organisation is not guessed at (it may be a
 * quantised or altered copy): the refusal says which entry has that name and what to write. Throws
 * SY_ERR_UNKNOWN_NAME listing the ids, with "did you mean" when one is close.
 */
export function resolveModelId(name: string): ModelId {
  const id = findModelId(name);
  if (id !== undefined) return id;
  const checkpoint = checkpointName(name);
  const key = normalizeName(checkpoint);
  const slash = key.indexOf('/');
  const namesake = slash < 0 ? undefined : MODEL_KEYS.get(key.slice(slash + 1));
  const spec = namesake === undefined ? undefined : MODELS.get(namesake);
  if (spec !== undefined)
    throw unknownCatalogueName('model', name, modelIds(), {
      detail:
        `'${checkpoint.slice(0, slash)}' is not the organisation of the catalogue's ${spec.id} ` +
        `(${spec.hfName}), and another organisation's copy may be quantised or altered: if its ` +
        'config.json is the same, write the id',
      suggestions: [spec.id],
    });
  throw unknownCatalogueName('model', name, modelIds(), { suggestions: closeIds(checkpoint, MODEL_KEYS) });
}

/** resolveModelId without the throw: the id a name means, or undefined when it means none. */
export function findModelId(name: string): ModelId | undefined {
  if (MODELS.has(name)) return name;
  const key = normalizeName(checkpointName(name));
  return MODEL_KEYS.get(key) ?? (key.includes('/') ? undefined : findOrgless(key));
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
