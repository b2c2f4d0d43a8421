/**
 * The built-in `sim` engine's backend: the twin's engine core (continuous batching over paged KV
 * blocks, prefix cache, chunked prefill, preemption) driven in wall time. Each step's duration comes
 * from the performance model of the named GPU and model; the backend waits it out (scaled by
 * `timeScale`), then hands every sequence the tokens the step produced. The text is deterministic
 * filler: the engine models timing and memory, not language.
 *
 * Like vLLM with `ignore_eos`, a request generates `max_tokens` tokens (finish reason 'length')
 * unless a `stop` string occurs in the filler first: the text then ends before it, finish reason
 * 'stop', and the core models only the tokens up to it (the cut is found when the request arrives,
 * since the filler is a pure function of the text seed). The text seed is the request's own id, or
 * with `seed` or `temperature: 0` a function of the prompt (and the seed): the same request then
 * gets the same text. A prompt plus max_tokens past the model's context length (the catalogue's
 * `contextTokensMax`) is refused with 400 as vLLM does; without max_tokens the output gets what the
 * context leaves, up to the default. A request that set no limit (GenerationInput.noLimitSet) and
 * reaches the server's default (256 tokens; completions 16) finishes 'stop', as a model ending on
 * its own would: the client asked for no limit, so it reached none ('length' where the context cut
 * it, or a structured answer is unfinished). Its prefix identity is the request's prefix chain converted to
 * engine blocks, so the KV events it publishes name the same hashes the gateway derives from the
 * prompt text.
 */
import { performance } from 'node:perf_hooks';
import { SwitchyardError } from '../../core/errors.ts';
import type { KvEvent } from '../../core/kv-events.ts';
import type { ParsedCompletionRequest } from '../../core/openai-api.ts';
import { EngineCore } from '../../engine-core/engine-core.ts';
import { engineBlockHashes } from '../../engine-core/prefix.ts';
import {
  DEFAULT_ENGINE_CONFIG,
  type EngineConfig,
  type EngineListener,
  type EngineRequest,
  type FinishedRequest,
} from '../../engine-core/types.ts';
import { contextOverflow, fitsContext } from '../../model/context.ts';
import { vllmServeBatchDefaults } from '../../model/engines.ts';
import { gpuSpec } from '../../model/gpus.ts';
import { kvBlocksThatFit } from '../../model/kv.ts';
import { modelSpec } from '../../model/models.ts';
import { perfModelFor } from '../../model/perf.ts';
import type { ModelSpec, PerfModel } from '../../model/types.ts';
import {
  type BackendSignals,
  type EngineBackend,
  type GenerationInput,
  type GenerationSink,
  type GenerationUsage,
  outOfVocabulary,
} from '../backend.ts';
import { engineAsleep, engineShuttingDown } from '../sleep-mode.ts';
import { minimalInstance, type StructuredOutput, schemaInText } from '../structured-output.ts';
import { simPieceTokens, type Tokenized, type TokenizeRequest } from '../tokenize.ts';
import {
  type EngineWeightUpdate,
  engineBusyToSwap,
  engineSwapping,
  modelMismatch,
  shapeDifferences,
  WeightSwapGate,
  type WeightUpdateRequest,
  type WeightUpdateResult,
  weightUpdateMetricsText,
} from '../weight-update.ts';
import { SimSleep, simWakeTimes } from './sleep.ts';

/** Where the backend sends its KV events, one batch per engine step (the ZMQ publisher). */
export interface KvEventSink {
  publish(events: readonly KvEvent[], tsSec: number, blockSize: number): void;
}

/** Options of the `sim` backend; the engine flags follow vLLM's. */
export interface SimBackendOptions {
  /** The model id served (`--served-model-name`). */
  readonly modelId: string;
  /** GPU catalogue id (`--gpu`), e.g. 'h100'. */
  readonly gpu: string;
  /** Model catalogue id (`--model`), e.g. 'llama-3.1-8b'. */
  readonly model: string;
  /** Tensor-parallel degree. */
  readonly tp: number;
  /** Engine options; unset ones take vLLM's defaults. */
  readonly engine?: Partial<EngineConfig>;
  /** Wall time per modelled time: 0.1 runs ten times faster than the model says. Default 1. */
  readonly timeScale?: number;
  /** Receives KV events; without it the core emits none. */
  readonly kvEvents?: KvEventSink;
  /** Replaces the catalogue's performance model (tests). */
  readonly perf?: PerfModel;
  /** vLLM's `--enable-sleep-mode`: serve `POST /sleep`, `POST /wake_up`, `GET /is_sleeping` (./sleep.ts). */
  readonly enableSleepMode?: boolean;
  /** Longest modelled load of `POST /update_weights_from_disk` in wall time, ms; default 120 s. */
  readonly weightUpdateTimeoutMs?: number;
}

/**
 * What must be equal for a catalogue model to load in place of another (`POST
 * /update_weights_from_disk`): every field that sizes a weight or the KV cache.
 */
export function simModelShape(model: ModelSpec): Record<string, unknown> {
  return {
    layers: model.layers,
    hiddenSize: model.hiddenSize,
    heads: model.heads,
    kvHeads: model.kvHeads,
    headDim: model.headDim,
    ffnSize: model.ffnSize,
    vocabSize: model.vocabSize,
    experts: model.experts,
    expertsPerToken: model.expertsPerToken,
    gatedMlp: model.gatedMlp,
    dtypeBytes: model.dtypeBytes,
  };
}

/**
 * How far, in wall time, the modelled clock may run behind the wall clock. Late timers are caught
 * up (the next step starts where the last one ended, so throughput matches the model), but an event
 * loop stalled longer than this loses the excess instead of replaying it as a burst of steps.
 */
export const LAG_MAX_WALL_MS = 100;

/** Filler vocabulary; a token is one word with its leading space. 64 entries (a power of two). */
const WORDS = [
  'the',
  'of',
  'and',
  'to',
  'in',
  'a',
  'is',
  'that',
  'for',
  'it',
  'as',
  'was',
  'with',
  'be',
  'by',
  'on',
  'not',
  'he',
  'this',
  'are',
  'or',
  'his',
  'from',
  'at',
  'which',
  'but',
  'have',
  'an',
  'had',
  'they',
  'you',
  'were',
  'their',
  'one',
  'all',
  'we',
  'can',
  'her',
  'has',
  'there',
  'been',
  'if',
  'more',
  'when',
  'will',
  'would',
  'who',
  'so',
  'no',
  'she',
  'other',
  'its',
  'may',
  'these',
  'about',
  'than',
  'into',
  'them',
  'could',
  'some',
  'time',
  'only',
  'new',
  'cluster',
].map((w) => ` ${w}`);
const WORD_MASK = WORDS.length - 1;

/** FNV-1a of a string. */
function hashString(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

/** The filler token at `index` of the generation whose id hashes to `seed`. */
export function fillerToken(seed: number, index: number): string {
  let h = Math.imul(seed ^ index, 0x9e3779b1);
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  return WORDS[(h ^ (h >>> 13)) & WORD_MASK]!;
}

/**
 * Where a stop string cuts a generation: after `tokens` tokens, keeping `chars` characters; `stop`
 * is the string matched (vLLM's `stop_reason`).
 */
export interface StopCut {
  readonly tokens: number;
  readonly chars: number;
  readonly stop: string;
}

/**
 * Where the first of `stops` occurs in the filler of `seed` within `maxTokens` tokens, or undefined.
 * Scans token by token, keeping only the tail a stop string could still span: O(maxTokens) time.
 * As vLLM checks stop strings, a token's check finds only a stop that ends within that token's text,
 * and with `minTokens` (vLLM's min_tokens) none is looked for until `minTokens` tokens are out.
 */
export function findStopCut(
  seed: number,
  maxTokens: number,
  stops: readonly string[],
  minTokens = 0,
): StopCut | undefined {
  const live = stops.filter((s) => s.length > 0);
  if (live.length === 0) return undefined;
  const keep = Math.max(...live.map((s) => s.length)) - 1;
  let tail = '';
  /** Characters before `tail` starts. */
  let tailAt = 0;
  for (let i = 0; i < maxTokens; i++) {
    const token = fillerToken(seed, i);
    tail += token;
    let at = -1;
    let matched = '';
    if (i >= minTokens) {
      const newFrom = tail.length - token.length;
      for (const stop of live) {
        const j = tail.indexOf(stop, Math.max(0, newFrom - stop.length + 1));
        if (j >= 0 && (at < 0 || j < at)) {
          at = j;
          matched = stop;
        }
      }
    }
    if (at >= 0) return { tokens: i + 1, chars: tailAt + at, stop: matched };
    if (tail.length > keep) {
      tailAt += tail.length - keep;
      tail = tail.slice(tail.length - keep);
    }
  }
  return undefined;
}

/**
 * The filler's seed: the request id's hash (every request its own text) unless the client asked
 * for reproducible output with `seed` or greedy decoding (`temperature: 0`), where it is a function
 * of the prompt (and the seed), so the same request gets the same text.
 */
export function textSeed(request: ParsedCompletionRequest, id: string): number {
  if (request.seed === undefined && request.temperature !== 0) return hashString(id);
  const prompt = request.promptTokenIds !== undefined ? request.promptTokenIds.join(',') : request.promptText;
  const promptHash = hashString(`${request.kind}\n${prompt}`);
  if (request.seed === undefined) return promptHash;
  return (Math.imul(promptHash ^ (request.seed | 0), 0x9e3779b1) ^ Math.floor(request.seed / 2 ** 32)) >>> 0;
}

/** Characters per token of a structured answer: the sim's count for text (4, at least one token). */
const CHARS_PER_TOKEN = 4;

/**
 * The sim's structured output: schema-valid filler, not language. A JSON schema gets its minimal
 * instance (../structured-output.ts minimalInstance: required properties, the first enum member or
 * the const, minItems items, "" and 0), `json_object` gets `{}`, a choice one of the choices (picked
 * by the text seed, so a seeded request repeats it); as compact JSON text. `json_object` with a
 * JSON Schema written in the prompt (JSON mode clients put it there for the model to read) answers
 * that schema's instance instead (schemaInText), still an object. Throws 400 for a schema with no
 * instance the builder reaches.
 */
export function simStructuredText(structured: StructuredOutput, seed: number, prompt = ''): string {
  if (structured.kind === 'choice') return structured.choices[seed % structured.choices.length] as string;
  // JSON mode with the schema in the prompt (a model reads it there): that schema's instance.
  const prompted = structured.anyObject ? schemaInText(prompt) : undefined;
  return JSON.stringify(minimalInstance(prompted ?? structured.schema, structured.param));
}

/**
 * Where the first of `stops` cuts a structured answer's `text` (a token ends where the stop string
 * ends), or undefined; `includeStop` keeps the stop string in the text.
 */
function fixedStopCut(text: string, stops: readonly string[], includeStop: boolean): StopCut | undefined {
  let best: StopCut | undefined;
  let bestAt = Number.POSITIVE_INFINITY;
  for (const stop of stops) {
    if (stop.length === 0) continue;
    const at = text.indexOf(stop);
    if (at < 0 || at >= bestAt) continue;
    bestAt = at;
    const tokens = Math.max(1, Math.ceil((at + stop.length) / CHARS_PER_TOKEN));
    best = { tokens, chars: includeStop ? at + stop.length : at, stop };
  }
  return best;
}

/** One generation in the core. */
class SimSequence {
  /** Structured output's text (simStructuredText), cut by max_tokens or not; undefined: filler. */
  fixed: { readonly text: string; readonly complete: boolean } | undefined;
  /**
   * The filler runs to the server's default limit, not one the client set nor the model's context:
   * its end is reported as the model's own ('stop').
   */
  endsOnItsOwn = false;
  delivered = 0;
  /** Characters handed to the sink so far. */
  deliveredChars = 0;
  readonly onAbort: () => void;

  constructor(
    readonly request: EngineRequest,
    readonly seed: number,
    /** Where a stop string ends the text; undefined: it runs to max_tokens. */
    readonly stopCut: StopCut | undefined,
    readonly sink: GenerationSink,
    readonly signal: AbortSignal,
    backend: SimBackend,
  ) {
    this.onAbort = () => backend.abortSequence(this);
  }
}

/** The `sim` engine backend. See the module comment. */
export class SimBackend implements EngineBackend {
  /** The model id served; a weight swap changes it. */
  private servedId: string;
  /** It never ends on its own, and its stop strings wait for `minTokens` (findStopCut). */
  readonly honoursMinTokens = true;
  readonly blockSize: number;
  /** Sleep mode, with `enableSleepMode` (./sleep.ts); undefined otherwise (its routes answer 404). */
  readonly sleepMode: SimSleep | undefined;
  /** SGLang's in-place checkpoint swap (../weight-update.ts). */
  readonly weightUpdate: EngineWeightUpdate;
  private readonly swapGate: WeightSwapGate;
  /** A swap loads new weights: generations are refused until it ends. */
  private swapLoading = false;
  /**
   * A swap's modelled time on an awake engine: what a full level-2 wake takes (the shard from the
   * local checkpoint tier, the wake's fixed part, the KV pool re-allocated), as the twin charges a
   * re-target (src/control/serverless/retarget.ts, `retargetTimeMs`) when the weights come from NVMe.
   */
  private readonly swapLoadModelMs: number;
  /** Replaced by an empty core when the engine goes to sleep (KV and prefix cache discarded). */
  private core: EngineCore;
  /** What a fresh core is built from. */
  private readonly coreArgs: ConstructorParameters<typeof EngineCore>;
  /** Counters of cores replaced by a sleep: /metrics counters never go back. */
  private retired = { prefixQueriesTokens: 0, prefixHitsTokens: 0, preemptionsTotal: 0 };
  private readonly timeScale: number;
  private readonly lagMaxModelMs: number;
  private readonly kvSink: KvEventSink | undefined;
  /** The model's context length (prompt + output tokens); undefined when the model names none. */
  private readonly contextTokensMax: number | undefined;
  /** The model's vocabulary (the catalogue's): prompt token ids at or past it are refused. */
  private readonly vocabSize: number;
  private kvBuffer: KvEvent[] = [];
  private readonly active = new Map<string, SimSequence>();
  private readonly t0 = performance.now();
  private nextId = 0;
  private closed = false;
  /** A startStep is queued (setImmediate) or a step's end is awaited (timer). */
  private stepQueued = false;
  private timer: NodeJS.Timeout | undefined;
  /** Inside finishStep or the progress pass: the core must not be called. */
  private inCore = false;
  /** The last step's end on the model clock. */
  private lastEndMs = 0;
  /** The next step follows the last one without idling in between. */
  private chained = false;
  private promptTokensTotal = 0;
  private generationTokensTotal = 0;

  private readonly startStepCallback = (): void => this.runStartStep();
  private readonly finishStepCallback = (): void => this.runFinishStep();
  private readonly progressCallback = (request: EngineRequest, produced: number): void => {
    const seq = this.active.get(request.id);
    if (seq !== undefined && produced > seq.delivered) this.deliver(seq, produced);
  };

  /**
   * Throws SwitchyardError SY_ERR_UNKNOWN_NAME for an unknown GPU or model, SY_ERR_CAPACITY when
   * the model does not fit, SY_ERR_INVALID_ARGUMENT for a bad tp or time scale.
   */
  constructor(options: SimBackendOptions) {
    const timeScale = options.timeScale ?? 1;
    if (!(timeScale > 0 && timeScale < Number.POSITIVE_INFINITY)) {
      throw new SwitchyardError(
        'SY_ERR_INVALID_ARGUMENT',
        `invalid timeScale '${timeScale}': expected a positive number`,
        { param: 'timeScale' },
      );
    }
    // Unset batch limits take what `vllm serve` picks on this GPU, as the twin's engines do.
    const given = Object.fromEntries(Object.entries(options.engine ?? {}).filter(([, v]) => v !== undefined));
    const config: EngineConfig = {
      ...DEFAULT_ENGINE_CONFIG,
      ...vllmServeBatchDefaults(gpuSpec(options.gpu)),
      ...given,
    };
    const { maxNumSeqs, maxNumBatchedTokens } = config;
    // The engine's limits set the CUDA-graph capture sizes and the KV left after the profiling run.
    const perf =
      options.perf ?? perfModelFor(options.gpu, options.model, options.tp, undefined, { maxNumSeqs });
    const numBlocks =
      config.numGpuBlocksOverride ??
      kvBlocksThatFit(perf.gpu, perf.model, perf.tp, config.gpuMemoryUtilization, config.blockSize, {
        maxNumSeqs,
        maxNumBatchedTokens,
      });
    this.servedId = options.modelId;
    this.blockSize = config.blockSize;
    this.timeScale = timeScale;
    this.lagMaxModelMs = LAG_MAX_WALL_MS / timeScale;
    this.kvSink = options.kvEvents;
    this.vocabSize = perf.model.vocabSize;
    const ctx = perf.model.contextTokensMax;
    this.contextTokensMax = Number.isSafeInteger(ctx) && ctx > 0 ? ctx : undefined;
    const listener: EngineListener = {
      onFirstToken: (request) => {
        this.promptTokensTotal += request.inputTokens;
      },
      onFinish: (result) => this.onFinish(result),
    };
    if (this.kvSink !== undefined) listener.onKvEvent = (event) => this.kvBuffer.push(event);
    this.coreArgs = [config, perf, numBlocks, listener];
    this.core = new EngineCore(...this.coreArgs);
    this.sleepMode =
      options.enableSleepMode === true
        ? new SimSleep(
            {
              unfinished: () => this.active.size,
              dropCaches: () => this.dropCaches(),
              timeScale,
            },
            simWakeTimes(perf),
          )
        : undefined;
    const wake = simWakeTimes(perf);
    this.swapLoadModelMs = wake.weightsReloadMs + wake.overheadMs + wake.kvReallocMs;
    const gate = new WeightSwapGate(options.weightUpdateTimeoutMs);
    this.swapGate = gate;
    this.weightUpdate = {
      updateWeightsFromDisk: (request) => this.swapWeights(request),
      get weightUpdates() {
        return gate.completed;
      },
    };
  }

  /** The model id served (`--served-model-name`; a weight swap's after one). */
  get modelId(): string {
    return this.servedId;
  }

  /** The catalogue model's context length (what outputTokensAllowed enforces); undefined without one. */
  get maxModelLen(): number | undefined {
    return this.contextTokensMax;
  }

  /**
   * `POST /update_weights_from_disk` (../weight-update.ts) with a catalogue model id as `model_path`:
   * refused unless its shapes (simModelShape) equal the engine's model's. Awake, the engine drops its
   * KV and prefix cache (they hold the old weights' keys) and takes a level-2 wake's modelled time
   * (swapLoadModelMs, times --time-scale), refusing generations meanwhile; asleep, it only changes
   * the id, and the wake is a level-2 one (the new weights from the checkpoint tier).
   */
  private swapWeights(request: WeightUpdateRequest): Promise<WeightUpdateResult> {
    if (this.closed) return Promise.reject(engineShuttingDown());
    if (this.active.size > 0 && !this.swapGate.running)
      return Promise.reject(engineBusyToSwap(this.active.size));
    return this.swapGate.run(async (answered) => {
      let spec: ModelSpec;
      try {
        spec = modelSpec(request.modelPath);
      } catch (error) {
        throw new SwitchyardError('SY_ERR_UNKNOWN_NAME', (error as Error).message, { param: 'model_path' });
      }
      const differences = shapeDifferences(simModelShape(this.coreArgs[1].model), simModelShape(spec));
      if (differences.length > 0) throw modelMismatch(request.modelPath, differences);
      const modelId = request.servedModelName ?? request.modelPath;
      const step = () => this.swapStep(modelId, answered);
      return this.sleepMode === undefined ? step() : this.sleepMode.exclusive(step);
    });
  }

  /** The swap proper, between sleep-mode calls (see swapWeights). */
  private async swapStep(modelId: string, answered: () => boolean): Promise<WeightUpdateResult> {
    if (this.sleepMode?.weightsAsleep === true) {
      this.sleepMode.weightsReplaced();
      this.servedId = modelId;
      return {
        modelId,
        message: `the engine is asleep: the weights load at the next wake, served as '${modelId}'`,
      };
    }
    if (this.active.size > 0) throw engineBusyToSwap(this.active.size);
    this.swapLoading = true;
    try {
      await this.dropCaches();
      const wallMs = Math.ceil(this.swapLoadModelMs * this.timeScale);
      await new Promise<void>((resolve) => setTimeout(resolve, wallMs).unref());
      if (this.closed) throw engineShuttingDown();
      if (answered()) throw new SwitchyardError('SY_ERR_TIMEOUT', 'the swap was given up');
      this.servedId = modelId;
      return {
        modelId,
        message: `loaded in ${(this.swapLoadModelMs / 1000).toFixed(3)} s modelled (${wallMs} ms wall), served as '${modelId}'`,
      };
    } finally {
      this.swapLoading = false;
    }
  }

  /** The engine core (inspection: tests). */
  get engine(): EngineCore {
    return this.core;
  }

  /**
   * Runs `input`. `importedTokens` (the decode side of a P/D pair, pd-engine.ts): that many prompt
   * tokens arrived as KV from the prefill engine and are not prefilled here (at most all but the
   * last, as the core takes them), while the context and KV checks see the whole request, as vLLM's
   * decode engine checks it. `exportKv` (the prefill side of a P/D pair): the request keeps its KV
   * blocks in the pool after it finishes (EngineRequest.holdKvAfterFinish, as the twin's prefill
   * does) until `releaseExport` of the core id `exportKv` is handed once the core takes it.
   */
  /**
   * vLLM's `/tokenize` (../tokenize.ts): the sim has no vocabulary; its count is the one `generate`
   * charges (4 characters a token, at least one), the ids hashes of the pieces (simPieceTokens).
   */
  tokenize(t: TokenizeRequest): Tokenized {
    const pieces = simPieceTokens(t.request.promptText, this.vocabSize);
    return t.returnTokenStrs ? pieces : { tokens: pieces.tokens };
  }

  /** vLLM's `/detokenize`: refused, the sim's ids are hashes that carry no text. */
  detokenize(_tokens: readonly number[]): string {
    throw new SwitchyardError(
      'SY_ERR_UNSUPPORTED_PARAMETER',
      "the sim engine has no vocabulary: its token ids are hashes of 4-character pieces and carry no text, so 'tokens' cannot be turned back into text; detokenize on a llama engine or a vLLM backend",
      { param: 'tokens' },
    );
  }

  generate(
    input: GenerationInput,
    sink: GenerationSink,
    importedTokens?: number,
    exportKv?: (coreId: string) => void,
  ): void {
    if (this.closed) {
      sink.onError(new SwitchyardError('SY_ERR_NO_INSTANCE', 'the engine is shutting down'));
      return;
    }
    if (this.sleepMode?.isSleeping === true) {
      sink.onError(engineAsleep());
      return;
    }
    if (this.swapLoading) {
      sink.onError(engineSwapping());
      return;
    }
    if (this.inCore) {
      // Called from a sink inside a step's delivery: join once the core is free again.
      queueMicrotask(() => this.generate(input, sink, importedTokens, exportKv));
      return;
    }
    const req = input.request;
    if (input.signal.aborted) {
      sink.onFinish('abort', { promptTokens: req.promptTokens, completionTokens: 0, cachedTokens: 0 });
      return;
    }
    const outside = outOfVocabulary(req.promptTokenIds, this.vocabSize);
    if (outside !== undefined) {
      sink.onError(outside);
      return;
    }
    let maxTokens: number;
    try {
      maxTokens = this.outputTokensAllowed(req);
    } catch (error) {
      sink.onError(error as Error);
      return;
    }
    const nowMs = this.modelNowMs();
    const id = `${input.id}#${this.nextId++}`;
    const seed = textSeed(req, id);
    let stopCut: StopCut | undefined;
    /** Structured output: its text, and the tokens it takes (4 characters a token). */
    let fixed: { text: string; tokens: number } | undefined;
    const includeStop = input.sampling?.includeStopStr === true;
    if (input.structured !== undefined) {
      let text: string;
      try {
        text = simStructuredText(input.structured, seed, req.promptText);
      } catch (error) {
        sink.onError(error as Error);
        return;
      }
      fixed = { text, tokens: Math.max(1, Math.ceil(text.length / CHARS_PER_TOKEN)) };
      const cut = fixedStopCut(text, req.stop, includeStop);
      if (cut !== undefined && cut.tokens <= maxTokens) stopCut = cut;
    } else {
      const found = findStopCut(seed, maxTokens, req.stop, input.minTokens ?? 0);
      // vLLM's include_stop_str_in_output: the text keeps the stop string (it ends in the last token).
      stopCut =
        found !== undefined && includeStop ? { ...found, chars: found.chars + found.stop.length } : found;
    }
    const request: EngineRequest = {
      id,
      inputTokens: req.promptTokens,
      // A structured answer ends when its value is complete, like an end-of-sequence token.
      outputTokens: stopCut?.tokens ?? Math.min(fixed?.tokens ?? maxTokens, maxTokens),
      arrivalMs: nowMs,
      // The body's `priority` is vLLM's (lower first); the core's is Switchyard's (higher first).
      priority: req.priority === undefined ? 0 : -req.priority,
      blockHashes: engineBlockHashes(req.prefix, req.promptTokens, this.blockSize),
      ...(importedTokens === undefined ? {} : { importedTokens }),
      ...(exportKv === undefined ? {} : { holdKvAfterFinish: true }),
    };
    if (!this.core.add(request, nowMs)) {
      const blocks = Math.ceil((req.promptTokens + maxTokens - 1) / this.blockSize);
      // Names the limit field the client sent (max_completion_tokens, max_output_tokens), as the
      // context-length 400 does (outputTokensAllowed).
      const field = req.maxTokensField;
      sink.onError(
        new SwitchyardError(
          'SY_ERR_INVALID_ARGUMENT',
          `invalid ${field} '${maxTokens}': a prompt of ${req.promptTokens} tokens plus ${maxTokens} ` +
            `output tokens needs ${blocks} KV blocks of ${this.blockSize} tokens, and this engine holds ` +
            `${this.core.kvBlocksTotal}`,
          { param: field },
        ),
      );
      return;
    }
    const seq = new SimSequence(request, seed, stopCut, sink, input.signal, this);
    if (fixed !== undefined) seq.fixed = { text: fixed.text, complete: fixed.tokens <= maxTokens };
    // No limit asked for, and the default (not what the context leaves) bounds the filler: a real
    // model would have ended on its own somewhere, so the default's end reads as that (finish 'stop',
    // Responses 'completed'), not as a limit the client never set ('length', 'incomplete': the
    // OpenAI Agents SDK throws on the latter). A structured answer cut short stays 'length': its
    // JSON is unfinished.
    seq.endsOnItsOwn =
      input.noLimitSet === true &&
      maxTokens === req.maxTokens &&
      (this.contextTokensMax === undefined || req.promptTokens + maxTokens < this.contextTokensMax);
    this.active.set(id, seq);
    input.signal.addEventListener('abort', seq.onAbort, { once: true });
    exportKv?.(id);
    this.kick();
  }

  /**
   * Frees the KV blocks a finished request of `generate`'s `exportKv` kept (the decode side read
   * them, or the release timeout passed); nothing when it keeps none (it was aborted, or a sleep
   * dropped the pool). Requests that waited for those blocks are admitted at the next step.
   */
  releaseExport(coreId: string): void {
    if (this.inCore) {
      queueMicrotask(() => this.releaseExport(coreId));
      return;
    }
    if (!this.core.releaseExport(coreId)) return;
    this.flushKv();
    this.kick();
  }

  /** KV blocks finished requests keep for a transfer out (`exportKv`), all together. */
  get exportHeldBlocks(): number {
    return this.core.exportHeldBlocks;
  }

  signals(): BackendSignals {
    const core = this.core;
    return {
      running: core.running,
      waiting: core.waiting,
      kvUsage: core.kvUsage,
      kvBlocksTotal: core.kvBlocksTotal,
      blockSize: this.blockSize,
      prefixQueriesTokens: this.retired.prefixQueriesTokens + core.prefixQueryTokens,
      prefixHitsTokens: this.retired.prefixHitsTokens + core.prefixHitTokens,
      promptTokensTotal: this.promptTokensTotal,
      generationTokensTotal: this.generationTokensTotal,
      preemptionsTotal: this.retired.preemptionsTotal + core.preemptions,
    };
  }

  /** The sleep-mode series (./sleep.ts), with --enable-sleep-mode, and the weight swaps completed. */
  extraMetricsText(): string {
    return (
      (this.sleepMode?.metricsText(this.modelId) ?? '') +
      weightUpdateMetricsText(this.modelId, this.swapGate.completed, this.swapGate.running)
    );
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.sleepMode?.close();
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
    const error = new SwitchyardError(
      'SY_ERR_NO_INSTANCE',
      'the engine shut down before the generation ended',
    );
    for (const seq of [...this.active.values()]) {
      this.release(seq);
      seq.sink.onError(error);
    }
  }

  /** The client went away: frees the sequence. Called by the sequence's abort listener. */
  abortSequence(seq: SimSequence): void {
    if (this.active.get(seq.request.id) !== seq) return;
    this.release(seq);
    seq.sink.onFinish('abort', {
      promptTokens: seq.request.inputTokens,
      completionTokens: seq.delivered,
      cachedTokens: 0,
    });
  }

  // ---- internals ----

  /**
   * Sleep: once no step runs (the caller checked that no request is left), swaps in an empty core,
   * which discards the KV cache and the prefix cache, and tells KV-event subscribers
   * (AllBlocksCleared, as vLLM's reset_prefix_cache does).
   */
  private async dropCaches(): Promise<void> {
    // A step of aborted sequences may still be running: it ends within one modelled step.
    while (this.stepQueued || this.core.busy || this.inCore) await new Promise((r) => setTimeout(r, 1));
    const old = this.core;
    this.retired = {
      prefixQueriesTokens: this.retired.prefixQueriesTokens + old.prefixQueryTokens,
      prefixHitsTokens: this.retired.prefixHitsTokens + old.prefixHitTokens,
      preemptionsTotal: this.retired.preemptionsTotal + old.preemptions,
    };
    this.core = new EngineCore(...this.coreArgs);
    this.chained = false;
    if (this.kvSink !== undefined) {
      this.kvBuffer.push({ type: 'AllBlocksCleared' });
      this.flushKv();
    }
  }

  /**
   * The output tokens a request may generate: max_tokens when the prompt plus it fit the model's
   * context; without max_tokens, the default or what the context leaves. Throws 400 otherwise,
   * naming max_tokens (or prompt when the prompt alone fills the context), as vLLM does. Public for
   * the P/D decode side, which refuses before it reads the prefill's KV (pd-engine.ts).
   */
  outputTokensAllowed(req: ParsedCompletionRequest): number {
    const ctx = this.contextTokensMax;
    if (ctx === undefined) return req.maxTokens;
    // The rule the twin applies too (src/model/context.ts).
    const declared = req.maxTokensGiven ? req.maxTokens : undefined;
    if (fitsContext(ctx, req.promptTokens, declared)) return Math.min(req.maxTokens, ctx - req.promptTokens);
    const over = contextOverflow(ctx, req.promptTokens, declared);
    throw new SwitchyardError(
      'SY_ERR_INVALID_ARGUMENT',
      `this model's maximum context length is ${ctx} tokens, but the request asks for ` +
        `${over.requestedTokens} (${req.promptTokens} in the prompt, ${over.completionTokens} in the completion)`,
      { param: over.param === 'max_tokens' ? req.maxTokensField : over.param, contextTokensMax: ctx },
    );
  }

  /** Drops a sequence from the backend and the core. */
  private release(seq: SimSequence): void {
    const id = seq.request.id;
    this.active.delete(id);
    seq.signal.removeEventListener('abort', seq.onAbort);
    if (this.inCore) {
      queueMicrotask(() => this.abortInCore(id));
    } else {
      this.abortInCore(id);
    }
  }

  private abortInCore(id: string): void {
    this.core.abort(id, this.modelNowMs());
    // Aborting frees blocks (no events), but keep the order of any events already buffered.
    this.flushKv();
  }

  private modelNowMs(): number {
    return (performance.now() - this.t0) / this.timeScale;
  }

  /** Starts a step soon, unless one is queued or running. Arrivals within one turn share it. */
  private kick(): void {
    if (this.stepQueued || this.closed || this.core.busy) return;
    this.stepQueued = true;
    setImmediate(this.startStepCallback);
  }

  private runStartStep(): void {
    this.stepQueued = false;
    if (this.closed || this.core.busy) return;
    const nowMs = this.modelNowMs();
    // Back to back after a step (a late timer must not slow the model), or now after idling; never
    // before the last step's end.
    const startMs = this.chained
      ? Math.max(this.lastEndMs, nowMs - this.lagMaxModelMs)
      : Math.max(this.lastEndMs, nowMs);
    const durationMs = this.core.startStep(startMs);
    this.flushKv();
    if (durationMs === undefined) {
      this.chained = false;
      return;
    }
    this.stepQueued = true;
    const delayMs = this.t0 + this.core.stepEndMs * this.timeScale - performance.now();
    if (delayMs <= 0) setImmediate(this.finishStepCallback);
    else this.timer = setTimeout(this.finishStepCallback, Math.ceil(delayMs));
  }

  private runFinishStep(): void {
    this.timer = undefined;
    this.stepQueued = false;
    if (this.closed) return;
    const endMs = this.core.stepEndMs;
    this.inCore = true;
    try {
      this.core.finishStep(endMs);
      this.core.forEachRunning(this.progressCallback);
    } finally {
      this.inCore = false;
    }
    this.lastEndMs = endMs;
    this.flushKv();
    this.chained = this.core.hasWork;
    if (this.chained) this.runStartStep();
  }

  private onFinish(result: FinishedRequest): void {
    const request = result.request;
    const seq = this.active.get(request.id);
    if (seq === undefined) return;
    this.active.delete(request.id);
    seq.signal.removeEventListener('abort', seq.onAbort);
    if (request.outputTokens > seq.delivered) this.deliver(seq, request.outputTokens);
    const usage: GenerationUsage = {
      promptTokens: request.inputTokens,
      completionTokens: request.outputTokens,
      cachedTokens: result.cachedPromptTokens,
    };
    if (seq.stopCut !== undefined) seq.sink.onFinish('stop', usage, seq.stopCut.stop);
    else if (seq.fixed !== undefined) seq.sink.onFinish(seq.fixed.complete ? 'stop' : 'length', usage);
    else seq.sink.onFinish(seq.endsOnItsOwn ? 'stop' : 'length', usage);
  }

  /** Hands the sequence its tokens up to `produced`, the text cut where a stop string begins. */
  private deliver(seq: SimSequence, produced: number): void {
    const from = seq.delivered;
    let text: string;
    if (seq.fixed !== undefined) {
      // Four characters a token; the last token of a complete answer carries what is left.
      text = seq.fixed.text.slice(from * CHARS_PER_TOKEN, produced * CHARS_PER_TOKEN);
    } else {
      text = fillerToken(seq.seed, from);
      for (let i = from + 1; i < produced; i++) text += fillerToken(seq.seed, i);
    }
    seq.delivered = produced;
    this.generationTokensTotal += produced - from;
    const cut = seq.stopCut;
    if (cut !== undefined && seq.deliveredChars + text.length > cut.chars) {
      text = text.slice(0, Math.max(0, cut.chars - seq.deliveredChars));
    }
    seq.deliveredChars += text.length;
    seq.sink.onText(text, produced - from);
  }

  private flushKv(): void {
    if (this.kvBuffer.length === 0) return;
    const events = this.kvBuffer;
    this.kvBuffer = [];
    const tsSec = (performance.timeOrigin + performance.now()) / 1000;
    this.kvSink!.publish(events, tsSec, this.blockSize);
  }
}
