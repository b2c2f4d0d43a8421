/**
 * The built-in `llama` engine's backend: real CPU inference through node-llama-cpp. One model, one
 * context with `sequences` sequences (node-llama-cpp batches the sequences' decodes together), and a
 * bounded FIFO of requests waiting for a free sequence.
 *
 * Prefix reuse: a sequence keeps its KV after a request ends, and node-llama-cpp tracks the tokens
 * it holds (`contextTokens`). A request takes the free sequence whose tokens share the longest
 * prefix with its prompt (ties: the least recently used), erases what follows the shared prefix and
 * evaluates only the rest. The shared tokens are the request's `cachedTokens`, and they count as
 * prefix-cache hits in the signals (vLLM's `prefix_cache_queries`/`hits`, in tokens).
 *
 * Prompts: completions use the prompt text (or the token ids given); chat uses the canonical
 * rendering of the messages (`request.promptText`, the same text the gateway hashes for prefix
 * identity) followed by `<|assistant|>\n`, so the next turn of a conversation, rendered the same
 * way, extends this request's tokens and reuses them. The model's own chat template is not applied.
 */
import { randomInt } from 'node:crypto';
import { statSync } from 'node:fs';
import {
  getLlama,
  type Llama,
  type LlamaContext,
  type LlamaContextSequence,
  type LlamaContextSequenceRepeatPenalty,
  LlamaLogLevel,
  type LlamaModel,
  type Token,
} from 'node-llama-cpp';
import { SwitchyardError } from '../../core/errors.ts';
import type { ParsedCompletionRequest } from '../../core/openai-api.ts';
import {
  type BackendSignals,
  type EngineBackend,
  type FinishReason,
  type GenerationInput,
  type GenerationSink,
  type GenerationUsage,
  outOfVocabulary,
} from '../backend.ts';
import { engineAsleep, engineShuttingDown } from '../sleep-mode.ts';
import {
  type GgufTokenizerMetadata,
  ggufTokenizerInfo,
  type Tokenized,
  type TokenizeRequest,
} from '../tokenize.ts';
import type { VllmSampling } from '../vllm-extras.ts';
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
import { checkGgufHeader } from './gguf-header.ts';
import { type GgufShape, ggufShape, readGgufShape } from './gguf-shape.ts';
import { LlamaSleep } from './sleep.ts';

export { SEQUENCES_DEFAULT, THREADS_DEFAULT } from './defaults.ts';

import { SEQUENCES_DEFAULT, SEQUENCES_MAX, THREADS_DEFAULT } from './defaults.ts';
import { StartupClock, type StartupReport, startupLogLine, startupMetricsText } from './startup.ts';
import { GrammarCache } from './structured-output.ts';
/** Largest per-sequence context by default (the model's training context if smaller). */
export const CONTEXT_SIZE_MAX_DEFAULT = 4096;
/** Bound on the waiting queue by default. */
export const WAITING_MAX_DEFAULT = 1024;
/** Tokens per nominal KV block in the signals (vLLM's default block size). */
export const BLOCK_SIZE = 16;
/** Shortest shared prefix worth taking a slot for over the least recently used one (one block). */
export const REUSE_MIN_TOKENS = BLOCK_SIZE;
/** Tokens a UTF-8 character may span in a byte-level vocabulary; longer undecodable runs are flushed. */
const UTF8_PENDING_TOKENS_MAX = 4;
/** What follows the canonical chat rendering: the assistant turn the model writes. */
export const CHAT_GENERATION_CUE = '<|assistant|>\n';

/** Options of the `llama` backend. */
export interface LlamaBackendOptions {
  /** Path of a GGUF model file. */
  readonly modelPath: string;
  /** The model id served; default: the file name without `.gguf`. */
  readonly modelId?: string;
  /** Parallel sequences in the context; default SEQUENCES_DEFAULT. */
  readonly sequences?: number;
  /** Threads for evaluation; default THREADS_DEFAULT. */
  readonly threads?: number;
  /** Tokens per sequence; default min(model's training context, CONTEXT_SIZE_MAX_DEFAULT). */
  readonly contextSize?: number;
  /** Requests that may wait for a sequence; more are refused with SY_ERR_OVERLOADED. */
  readonly maxWaiting?: number;
  /** Where llama.cpp's warnings and errors, and the start-up line, go; default stderr. */
  readonly log?: (line: string) => void;
  /**
   * Map the GGUF (llama.cpp populates the mapping from the page cache at load, and a restart shares
   * those pages) rather than read it into private memory; default true.
   */
  readonly useMmap?: boolean;
  /** Lock the weights in RAM (mlock) so they are never paged out; default false. */
  readonly useMlock?: boolean;
  /** Where the start-up stages are marked; default a clock of this process's own. */
  readonly startup?: StartupClock;
  /** Prefill/decode disaggregation: where sequence states come from and go (pd.ts); default none. */
  readonly kvState?: KvStateHooks;
  /**
   * Awaited after the model is loaded and before the context is created: a standby engine's memory
   * reserve being freed (memory-reserve.ts), so the KV cache takes the pages it leaves. Its failure
   * is ignored (the context is created all the same).
   */
  readonly beforeContext?: Promise<unknown>;
  /**
   * Called after the engine frees a large part of its memory (the standby reserve once the context is
   * created over it, the context and model by sleep, the old ones after a weight swap) to hand the
   * heap's free pages back to the kernel: the reserve heap's trim (src/adapters/malloc-trim.ts).
   * Default none. Its failure is ignored.
   */
  readonly afterFree?: () => void;
  /** vLLM's `--enable-sleep-mode`: sleep frees the context and model, a wake reloads them (./sleep.ts). */
  readonly enableSleepMode?: boolean;
  /** Longest load of `POST /update_weights_from_disk` (../weight-update.ts), ms; default 120 s. */
  readonly weightUpdateTimeoutMs?: number;
}

/**
 * A chat prompt as the model reads it: the rendered messages (each ends with a newline), then the
 * assistant cue; without the cue for vLLM's `add_generation_prompt: false`; with the last message
 * left open (its closing newline off) for `continue_final_message: true`, so the answer continues it.
 */
export function chatPrompt(rendered: string, end: VllmSampling['chatEnd']): string {
  if (end === 'continue-final-message') return rendered.endsWith('\n') ? rendered.slice(0, -1) : rendered;
  if (end === 'no-generation-prompt') return rendered;
  return rendered + CHAT_GENERATION_CUE;
}

/** llama.cpp's seeds are uint32 below 0xFFFFFFFF (its LLAMA_DEFAULT_SEED, "random"). */
const SEED_END = 2 ** 32 - 1;

/**
 * A client's seed (any integer of magnitude up to 2^63, as vLLM takes an int64; a JSON number past
 * 2^53 arrives rounded) as the seed llama.cpp samples with:
 * node-llama-cpp clamps a negative seed to 0 (seeds -1 and -2 sampled alike), and llama.cpp reads
 * 0xFFFFFFFF as "pick a random seed", so seeds go modulo 2^32 - 1 into [0, 2^32 - 2].
 */
export function llamaSeed(seed: number): number {
  return ((seed % SEED_END) + SEED_END) % SEED_END;
}

/** Runs LlamaBackendOptions.afterFree, if any; a throw is ignored (memory not returned is no error). */
function callAfterFree(afterFree: (() => void) | undefined): void {
  try {
    afterFree?.();
  } catch {
    // Kept resident: the engine serves all the same.
  }
}

/** How the model and context were loaded: a wake from sleep loads them again the same way. */
interface ModelLoad {
  readonly loadOptions: Parameters<Llama['loadModel']>[0];
  readonly contextOptions: Parameters<LlamaModel['createContext']>[0];
}

/**
 * A wake's load: the model, then its context. When the context cannot be created (out of memory, say)
 * the model just loaded is freed before the error goes on: the engine stays asleep, and the next wake
 * loads afresh instead of leaking one model per failed try.
 */
export async function loadModelAndContext(
  llama: Pick<Llama, 'loadModel'>,
  load: ModelLoad,
): Promise<{ model: LlamaModel; context: LlamaContext }> {
  const model = await llama.loadModel(load.loadOptions);
  try {
    return { model, context: await model.createContext(load.contextOptions) };
  } catch (error) {
    await model.dispose();
    throw error;
  }
}

/**
 * A sequence state a P/D decode fetched: a file (node-llama-cpp's loadStateFromFile reads it) or
 * bytes in memory laid out as that file (llama.cpp's buffer state API, kv-native.ts, sets them).
 */
export type KvStateRef = { readonly path: string } | { readonly buffer: Buffer; readonly bytes: number };

/**
 * How a P/D engine (pd.ts) moves sequence states through the backend, keyed by the generation's id.
 * The backend asks at the start of each generation whether a state is to be loaded first (decode
 * side) and at its end whether its state is to be saved (prefill side); the P/D engine does the
 * saving and loading, through files or buffers.
 */
export interface KvStateHooks {
  /**
   * Undefined: not a P/D decode. Otherwise the fetched state, or undefined when the fetch failed
   * (the backend then prefills locally).
   */
  fetchState(id: string): Promise<KvStateRef | undefined> | undefined;
  /** Sets a fetched state on the sequence (its history is replaced); throws when llama.cpp refuses it. */
  loadState(state: KvStateRef, sequence: LlamaContextSequence): Promise<void>;
  /**
   * Undefined: this generation's state is not wanted. Otherwise saves the sequence's state (the
   * prompt's KV) and settles when it is saved or the save failed (the P/D engine keeps the outcome).
   */
  saveState(id: string, sequence: LlamaContextSequence): Promise<void> | undefined;
  /** A fetched state that llama.cpp refused to load (the backend prefilled locally instead). */
  loadFailed(id: string, error: Error): void;
  /** The backend is done with a fetched state (loaded or refused). */
  doneWith(state: KvStateRef): void;
}

/** One sequence of the context and what the backend knows of it. */
interface Slot {
  readonly index: number;
  readonly sequence: LlamaContextSequence;
  busy: boolean;
  /** Monotonic stamp of the last release (least recently used is the smallest). */
  releasedAt: number;
  /**
   * The cache_salt of the request whose tokens the sequence holds: a request under another salt (or
   * none) shares none of them, as vLLM's salted block hashes share no block.
   */
  salt: string | undefined;
}

/** A request between generate() and its end. */
interface Job {
  readonly input: GenerationInput;
  readonly sink: GenerationSink;
  readonly tokens: readonly Token[];
  /** Output tokens allowed: max_tokens, or what the context leaves when max_tokens was not given. */
  readonly limit: number;
  onAbort: (() => void) | undefined;
}

/**
 * Throws 400 SY_ERR_UNSUPPORTED_PARAMETER for a sampling parameter this backend does not implement:
 * a non-zero `frequency_penalty` or `presence_penalty` (llama.cpp's repeat penalty looks at a
 * window of recent tokens, not OpenAI's whole-output counts, so it is not offered as theirs).
 */
export function refuseUnimplementedSampling(request: ParsedCompletionRequest): void {
  const penalties = [
    ['frequency_penalty', request.frequencyPenalty],
    ['presence_penalty', request.presencePenalty],
  ] as const;
  for (const [param, value] of penalties) {
    if (value === undefined || value === 0) continue;
    throw new SwitchyardError(
      'SY_ERR_UNSUPPORTED_PARAMETER',
      `parameter '${param}' is not supported by the llama engine (OpenAI's penalties are not implemented); ` +
        'remove it or send 0',
      { param },
    );
  }
}

/**
 * node-llama-cpp's options for vLLM's sampling extras: `top_k` (0: no cut) and `min_p` as they are;
 * `repetition_penalty` as llama.cpp's repeat penalty (the same rule as vLLM's: a seen token's
 * positive logit divided by it, a negative one multiplied) over `punished`, the prompt and the
 * output so far, as vLLM applies it, not llama.cpp's window of the last 64 tokens. `top_k` absent is
 * 0, vLLM's default (every token), not node-llama-cpp's 40; the others absent: nothing (node-llama-cpp's
 * defaults, which cut nothing, stay). `ignore_eos` is not a sampler option: `run` reads it.
 */
export function vllmSamplingOptions(
  sampling: VllmSampling | undefined,
  punished: Token[] | undefined,
  contextSize: number,
): { topK?: number; minP?: number; repeatPenalty?: LlamaContextSequenceRepeatPenalty } {
  if (sampling === undefined) return { topK: 0 };
  return {
    topK: sampling.topK ?? 0,
    ...(sampling.minP === undefined ? {} : { minP: sampling.minP }),
    ...(sampling.repetitionPenalty === undefined || punished === undefined
      ? {}
      : {
          repeatPenalty: {
            punishTokens: () => punished,
            maxPunishTokens: contextSize,
            penalty: sampling.repetitionPenalty,
          },
        }),
  };
}

/** The longest suffix of `text` that is a proper prefix of one of `stops` (what must be held back). */
export function heldBackLength(text: string, stops: readonly string[]): number {
  let held = 0;
  for (const stop of stops) {
    for (let k = Math.min(stop.length - 1, text.length); k > held; k--) {
      if (text.endsWith(stop.slice(0, k))) {
        held = k;
        break;
      }
    }
  }
  return held;
}

/**
 * The earliest place where one of `stops` occurs in `text` and which stop string it is (vLLM reports
 * it as `stop_reason`), or undefined.
 */
export function firstStop(text: string, stops: readonly string[]): { at: number; stop: string } | undefined {
  let first: { at: number; stop: string } | undefined;
  for (const stop of stops) {
    if (stop.length === 0) continue;
    const at = text.indexOf(stop);
    if (at >= 0 && (first === undefined || at < first.at)) first = { at, stop };
  }
  return first;
}

/**
 * Picks the free slot to serve a prompt. The slot sharing the longest prefix wins when it shares at
 * least `reuseMin` tokens (ties: the least recently used); otherwise the least recently used slot
 * (never-used ones first), so a match of a token or two does not evict a long cached prefix while
 * another slot is idle. `shared(slot)` gives the shared prefix length. Undefined when all are busy.
 */
export function pickSlot<S extends { busy: boolean; releasedAt: number }>(
  slots: readonly S[],
  shared: (slot: S) => number,
  reuseMin: number,
): { slot: S; shared: number } | undefined {
  let best: { slot: S; shared: number } | undefined;
  let oldest: S | undefined;
  for (const slot of slots) {
    if (slot.busy) continue;
    if (oldest === undefined || slot.releasedAt < oldest.releasedAt) oldest = slot;
    const n = shared(slot);
    if (
      best === undefined ||
      n > best.shared ||
      (n === best.shared && slot.releasedAt < best.slot.releasedAt)
    ) {
      best = { slot, shared: n };
    }
  }
  if (best === undefined || oldest === undefined) return undefined;
  if (best.shared >= reuseMin || best.slot === oldest) return best;
  return { slot: oldest, shared: shared(oldest) };
}

/** A GGUF's `<arch>.rope` metadata, the part that extends the context. */
export interface GgufRope {
  readonly scale_linear?: number;
  readonly scaling?: {
    readonly type?: string;
    readonly factor?: number;
    readonly original_context_length?: number;
  };
}

/**
 * The longest context a model serves: its training context, or further when its GGUF carries RoPE
 * scaling, which llama.cpp applies from the metadata (a factor with no type is linear there, and
 * `rope.scale_linear` is the older key for it): the factor times the training context, for YaRN
 * times its original context when given. vLLM's max_model_len rule (`_get_and_verify_max_len`)
 * derives the same length from a config's rope_scaling (Qwen2.5's YaRN factor 4 on 32,768 tokens:
 * 131,072). Other scaling types (none, longrope) and factors of 1 or less extend nothing.
 */
export function modelContextMax(trainedTokens: number, rope: GgufRope | undefined): number {
  const type = rope?.scaling?.type ?? 'linear';
  const factor = rope?.scaling?.factor ?? rope?.scale_linear;
  if ((type !== 'linear' && type !== 'yarn') || factor === undefined || !(factor > 1)) return trainedTokens;
  const original = rope?.scaling?.original_context_length;
  const base = type === 'yarn' && original !== undefined && original > 0 ? original : trainedTokens;
  return Math.max(trainedTokens, Math.floor(base * factor));
}

function modelIdFromPath(path: string): string {
  const name = path.split(/[\\/]/).pop() ?? path;
  return name.replace(/\.gguf$/i, '');
}

function logToStderr(line: string): void {
  process.stderr.write(`${line}\n`);
}

function checkPositiveInt(name: string, value: number): void {
  if (Number.isInteger(value) && value >= 1) return;
  throw new SwitchyardError('SY_ERR_INVALID_ARGUMENT', `${name} must be an integer >= 1, got ${value}`, {
    param: name,
  });
}

/** llama.cpp's messages while a model loads: held, so a failed load ends in one error line. */
interface HeldMessages {
  loading: boolean;
  readonly held: string[];
  firstError: string;
}

/**
 * node-llama-cpp's binding, loaded (its binary checked) and not yet given a model: what a standby
 * engine holds while it waits, so its start on a model skips Node's, the CLI's and node-llama-cpp's
 * own start-up. `LlamaBackend.open` starts one itself when it is given none.
 */
export class LlamaRuntime {
  private constructor(
    readonly llama: Llama,
    readonly threads: number,
    readonly messages: HeldMessages,
  ) {}

  /** Loads the prebuilt CPU binary (never builds or downloads). */
  static async start(
    options: { threads?: number; log?: (line: string) => void } = {},
  ): Promise<LlamaRuntime> {
    const threads = options.threads ?? THREADS_DEFAULT;
    checkPositiveInt('threads', threads);
    const log = options.log ?? logToStderr;
    // Until the first model has loaded, llama.cpp's messages are held: a file it cannot load ends in
    // one error line naming the first thing llama.cpp complained about; a good one prints its warnings.
    const messages: HeldMessages = { loading: true, held: [], firstError: '' };
    const llama = await getLlama({
      gpu: process.platform === 'darwin' && process.arch === 'arm64' ? 'metal' : false,
      build: 'never',
      skipDownload: true,
      progressLogs: false,
      maxThreads: threads,
      logLevel: LlamaLogLevel.warn,
      logger: (level, message) => {
        const text = message.trim();
        if (text === '') return;
        const line = `llama.cpp ${level}: ${text}`;
        if (!messages.loading) return log(line);
        if (messages.firstError === '' && (level === LlamaLogLevel.error || level === LlamaLogLevel.fatal)) {
          messages.firstError = text;
        }
        messages.held.push(line);
      },
    });
    return new LlamaRuntime(llama, threads, messages);
  }

  /** Frees the binding (a standby engine that will not be given a model). */
  async dispose(): Promise<void> {
    await this.llama.dispose();
  }
}

/** An EngineBackend generating with node-llama-cpp on the CPU. Create with `LlamaBackend.open()`. */
export class LlamaBackend implements EngineBackend {
  /** The model id served; a weight swap changes it. */
  private servedId: string;
  /** Tokens each sequence holds at most. */
  readonly contextSize: number;
  readonly sequences: number;
  private readonly waitingMax: number;
  private readonly slots: Slot[];
  private readonly queue: Job[] = [];
  private readonly active = new Set<Job>();
  /** Tokens in the vocabulary (from the GGUF metadata); ids past it are refused. */
  private readonly vocabularySize: number;
  private releaseStamp = 0;
  private closed = false;
  private promptTokensTotal = 0;
  private generationTokensTotal = 0;
  private prefixQueriesTokens = 0;
  private prefixHitsTokens = 0;
  private readonly startup: StartupClock;
  private readonly log: (line: string) => void;
  private readonly kvState: KvStateHooks | undefined;
  private readonly afterFree: (() => void) | undefined;

  /** A P/D side (with KV state hooks): the transfer is keyed by the request id. */
  get oneGenerationPerRequest(): boolean {
    return this.kvState !== undefined;
  }
  /** Sleep mode, with `enableSleepMode` (./sleep.ts); undefined otherwise (its routes answer 404). */
  readonly sleepMode: LlamaSleep | undefined;
  /** SGLang's in-place checkpoint swap (../weight-update.ts); undefined on a P/D side. */
  readonly weightUpdate: EngineWeightUpdate | undefined;
  /** The loaded model's shape: what a swapped-in checkpoint must match. */
  private shape: GgufShape;
  private readonly swapGate: WeightSwapGate;
  /** A swap loads new weights: generations are refused until it ends. */
  private swapLoading = false;
  /** Compiled grammars of structured output requests (./structured-output.ts), a bounded LRU. */
  private readonly grammars: GrammarCache;

  private constructor(
    private readonly llama: Llama,
    /** Replaced by a wake from sleep (disposed while asleep) and by a weight swap. */
    private model: LlamaModel,
    private context: LlamaContext,
    options: LlamaBackendOptions & { startup: StartupClock; log: (line: string) => void },
    /** How the model loads: a swap points it at the new checkpoint, which a wake then reloads. */
    private load: ModelLoad,
  ) {
    this.startup = options.startup;
    this.log = options.log;
    this.kvState = options.kvState;
    this.afterFree = options.afterFree;
    this.servedId = options.modelId ?? modelIdFromPath(options.modelPath);
    this.shape = ggufShape(model.fileInfo);
    this.swapGate = new WeightSwapGate(options.weightUpdateTimeoutMs);
    this.grammars = new GrammarCache(llama);
    this.contextSize = context.contextSize;
    this.sequences = context.totalSequences;
    this.waitingMax = options.maxWaiting ?? WAITING_MAX_DEFAULT;
    const metadata = model.fileInfo.metadata as { tokenizer?: { ggml?: { tokens?: readonly string[] } } };
    this.vocabularySize = metadata.tokenizer?.ggml?.tokens?.length ?? Number.POSITIVE_INFINITY;
    this.slots = [];
    for (let i = 0; i < this.sequences; i++) {
      this.slots.push({
        index: i,
        sequence: context.getSequence(),
        busy: false,
        releasedAt: 0,
        salt: undefined,
      });
    }
    this.sleepMode =
      options.enableSleepMode === true && options.kvState === undefined
        ? new LlamaSleep({
            unfinished: () => this.active.size + this.queue.length,
            unloadModel: () => this.unloadModel(),
            reloadModel: () => this.reloadModel(),
          })
        : undefined;
    const gate = this.swapGate;
    this.weightUpdate =
      options.kvState === undefined
        ? {
            updateWeightsFromDisk: (request) => this.swapWeights(request),
            get weightUpdates() {
              return gate.completed;
            },
          }
        : undefined;
  }

  /** The model id served (the file's name or --served-model-name; a weight swap's after one). */
  get modelId(): string {
    return this.servedId;
  }

  /** Tokens one sequence holds (--context-size): the limit of a prompt plus its output. */
  get maxModelLen(): number {
    return this.contextSize;
  }

  /**
   * `POST /update_weights_from_disk` (../weight-update.ts): loads the GGUF at `modelPath` in place of
   * the current model when its shape (gguf-shape.ts) is the same. Awake, the new model and its
   * context load first and the old ones are freed only once they are up, so a file llama.cpp cannot
   * load leaves the engine serving its model; asleep, only the path changes and the next wake loads
   * it. 409 while requests run or another swap does; generations during the load get 503.
   */
  private swapWeights(request: WeightUpdateRequest): Promise<WeightUpdateResult> {
    if (this.closed) return Promise.reject(engineShuttingDown());
    const unfinished = this.active.size + this.queue.length;
    if (unfinished > 0 && !this.swapGate.running) return Promise.reject(engineBusyToSwap(unfinished));
    return this.swapGate.run(async (answered) => {
      const path = request.modelPath;
      const { shape, trainedContext, rope } = await readGgufShape(path);
      const differences = shapeDifferences(this.shape, shape);
      if (differences.length > 0) throw modelMismatch(path, differences);
      // The rule LlamaBackend.open applies: no context past what the model was trained on (or its
      // RoPE scaling extends to); a file that names none is not checked.
      const contextMax = modelContextMax(trainedContext, rope);
      if (trainedContext > 0 && this.contextSize > contextMax)
        throw new SwitchyardError(
          'SY_ERR_INVALID_ARGUMENT',
          `model_path '${path}' serves at most ${contextMax} tokens per sequence, and this engine runs ` +
            `${this.contextSize}: start an engine with a smaller --context-size for it`,
          { param: 'model_path' },
        );
      const modelId = request.servedModelName ?? modelIdFromPath(path);
      const load: ModelLoad = { ...this.load, loadOptions: { ...this.load.loadOptions, modelPath: path } };
      const step = () => this.swapStep(load, shape, modelId, answered);
      return this.sleepMode === undefined ? step() : this.sleepMode.exclusive(step);
    });
  }

  /** The swap proper, between sleep-mode calls (see swapWeights). */
  private async swapStep(
    load: ModelLoad,
    shape: GgufShape,
    modelId: string,
    answered: () => boolean,
  ): Promise<WeightUpdateResult> {
    const path = load.loadOptions.modelPath;
    if (this.sleepMode?.isSleeping === true) {
      this.load = load;
      this.shape = shape;
      this.servedId = modelId;
      return {
        modelId,
        message: `the engine is asleep: ${path} loads at the next wake, served as '${modelId}'`,
      };
    }
    const unfinished = this.active.size + this.queue.length;
    if (unfinished > 0) throw engineBusyToSwap(unfinished);
    this.swapLoading = true;
    const t0 = performance.now();
    try {
      let loaded: { model: LlamaModel; context: LlamaContext };
      try {
        loaded = await loadModelAndContext(this.llama, load);
      } catch (error) {
        throw new SwitchyardError(
          'SY_ERR_INVALID_ARGUMENT',
          `model_path '${path}' could not be loaded: ${(error as Error).message}; the engine keeps its model`,
          { param: 'model_path' },
        );
      }
      if (answered() || this.closed) {
        // Given up (the caller got 504) or shutting down: the old model stays.
        await loaded.context.dispose();
        await loaded.model.dispose();
        throw this.closed
          ? engineShuttingDown()
          : new SwitchyardError('SY_ERR_TIMEOUT', 'the swap was given up');
      }
      const old = { model: this.model, context: this.context };
      this.model = loaded.model;
      this.context = loaded.context;
      this.resetSlots();
      this.load = load;
      this.shape = shape;
      this.servedId = modelId;
      await old.context.dispose();
      await old.model.dispose();
      callAfterFree(this.afterFree);
      const seconds = ((performance.now() - t0) / 1000).toFixed(3);
      return { modelId, message: `loaded ${path} in ${seconds} s, served as '${modelId}'` };
    } finally {
      this.swapLoading = false;
    }
  }

  /** Every slot on a fresh sequence of the current context (its KV empty). */
  private resetSlots(): void {
    for (const slot of this.slots) {
      this.slots[slot.index] = {
        index: slot.index,
        sequence: this.context.getSequence(),
        busy: false,
        releasedAt: 0,
        salt: undefined,
      };
    }
  }

  /** The model's GGUF architecture metadata (layers, heads): a P/D engine sizes its state buffer from it. */
  get architecture(): LlamaModel['fileInfo']['architectureMetadata'] {
    return this.model.fileInfo.architectureMetadata;
  }

  /** Sleep: frees the context (every sequence's KV) and the model; the GGUF stays in the page cache. */
  private async unloadModel(): Promise<void> {
    await this.context.dispose();
    await this.model.dispose();
    callAfterFree(this.afterFree);
  }

  /** Wake: loads the model (from the page cache) and creates the context as at the start. */
  private async reloadModel(): Promise<void> {
    const { model, context } = await loadModelAndContext(this.llama, this.load);
    this.model = model;
    this.context = context;
    this.resetSlots();
  }

  /**
   * Loads the model and creates the context. Never builds or downloads llama.cpp: the prebuilt CPU
   * binary must be installed. Throws SY_ERR_INVALID_ARGUMENT naming the model path when the file is
   * not a model llama.cpp can load. A `runtime` given (a standby engine's) is the backend's from then
   * on: closed with it, or freed when the open fails; without one, open starts its own.
   */
  static async open(options: LlamaBackendOptions, runtime?: LlamaRuntime): Promise<LlamaBackend> {
    const sequences = options.sequences ?? SEQUENCES_DEFAULT;
    try {
      checkGgufHeader(options.modelPath);
      for (const [name, value] of [
        ['threads', options.threads ?? 1],
        ['sequences', sequences],
        ['contextSize', options.contextSize ?? 1],
        ['maxWaiting', options.maxWaiting ?? 1],
      ] as const) {
        checkPositiveInt(name, value);
      }
      if (sequences > SEQUENCES_MAX)
        throw new SwitchyardError(
          'SY_ERR_INVALID_ARGUMENT',
          `sequences ${sequences}: expected at most ${SEQUENCES_MAX} (llama.cpp's LLAMA_MAX_SEQ)`,
          { param: 'sequences' },
        );
    } catch (error) {
      // The runtime handed over is this call's to free, whatever happens.
      await runtime?.dispose();
      throw error;
    }
    const log = options.log ?? logToStderr;
    const startup = options.startup ?? new StartupClock();
    startup.modelBytes = statSync(options.modelPath).size;
    const rt = runtime ?? (await LlamaRuntime.start({ threads: options.threads ?? THREADS_DEFAULT, log }));
    const { llama, threads, messages } = rt;
    startup.mark('binding');
    const loadOptions: ModelLoad['loadOptions'] = {
      modelPath: options.modelPath,
      ...(process.platform === 'darwin' && process.arch === 'arm64' ? {} : { gpuLayers: 0 }),
      useMmap: options.useMmap ?? true,
      useMlock: options.useMlock ?? false,
    };
    let model: LlamaModel;
    try {
      // gpuLayers 0 on the CPU build: no VRAM fitting to compute. mmap by default: the weights are
      // the page cache's pages, so a restart maps what the last run (or the warmer) left there.
      model = await llama.loadModel(loadOptions);
    } catch (error) {
      await llama.dispose();
      throw new SwitchyardError(
        'SY_ERR_INVALID_ARGUMENT',
        `model ${options.modelPath} could not be loaded: ${messages.firstError || (error as Error).message}; ` +
          'expected a GGUF model file llama.cpp can load',
        { param: 'model' },
      );
    } finally {
      messages.loading = false;
    }
    for (const line of messages.held.splice(0)) log(line);
    startup.mark('weights');
    const trained = model.trainContextSize;
    const contextMax = modelContextMax(trained, model.fileInfo.architectureMetadata.rope);
    const contextSize = options.contextSize ?? Math.min(trained, CONTEXT_SIZE_MAX_DEFAULT);
    if (contextSize > contextMax) {
      // As vLLM refuses a max_model_len above the model's own (a ValueError unless
      // VLLM_ALLOW_LONG_MAX_MODEL_LEN=1; vllm-project/vllm#7080): a longer context is untrained, and
      // its KV is allocated up front (100M tokens grew the process past 8 GiB before anything failed).
      await llama.dispose();
      throw new SwitchyardError(
        'SY_ERR_INVALID_ARGUMENT',
        contextMax === trained
          ? `context size ${contextSize}: expected at most the model's training context of ${trained} tokens (${options.modelPath})`
          : `context size ${contextSize}: expected at most the model's ${contextMax} tokens (trained on ${trained}, extended by its RoPE scaling) (${options.modelPath})`,
        { param: 'context-size' },
      );
    }
    await options.beforeContext?.catch(() => undefined);
    try {
      const contextOptions = { sequences, contextSize, threads };
      const context = await model.createContext(contextOptions).catch((error: Error) => {
        throw new SwitchyardError(
          'SY_ERR_INVALID_ARGUMENT',
          `a context of ${contextSize} tokens x ${sequences} sequences could not be created: ${error.message}; lower --context-size or --sequences`,
          { param: 'context-size' },
        );
      });
      // The reserve's leftover goes back to the kernel before ready (a trim of a few ms, counted here).
      callAfterFree(options.afterFree);
      startup.mark('context');
      return new LlamaBackend(
        llama,
        model,
        context,
        { ...options, startup, log },
        { loadOptions, contextOptions },
      );
    } catch (error) {
      await llama.dispose();
      throw error;
    }
  }

  /** The prompt's tokens: the ids given, or the text tokenized (BOS first when the model wants it). */
  tokenizePrompt(input: GenerationInput): Token[] {
    const request = input.request;
    if (request.promptTokenIds !== undefined) {
      const outside = outOfVocabulary(request.promptTokenIds, this.vocabularySize);
      if (outside !== undefined) throw outside;
      return [...request.promptTokenIds] as Token[];
    }
    const tokens = this.textTokens(request, input.sampling?.chatEnd, true);
    if (tokens.length === 0) {
      throw new SwitchyardError('SY_ERR_INVALID_ARGUMENT', 'the prompt is empty', { param: 'prompt' });
    }
    return tokens;
  }

  /** A text prompt's tokens (chat: rendered with its end), BOS first when `addBos` and the model wants it. */
  private textTokens(
    request: ParsedCompletionRequest,
    chatEnd: VllmSampling['chatEnd'],
    addBos: boolean,
  ): Token[] {
    const text = request.kind === 'chat' ? chatPrompt(request.promptText, chatEnd) : request.promptText;
    // Special tokens written in the text (`</s>`, `<|im_end|>`) are those tokens, as a Hugging Face
    // tokenizer's encode (vLLM's) reads them: lm-eval's remote tokenizer takes the EOS and BOS ids
    // from /tokenize of their strings (tokenize.ts ggufTokenizerInfo).
    const tokens = this.model.tokenize(text, true);
    const bos = this.model.tokens.bos;
    if (addBos && bos !== null && this.model.tokens.shouldPrependBosToken) tokens.unshift(bos);
    return tokens;
  }

  /** Refuses a tokenizer call while the model is not there (shutting down, or a swap loading). */
  private checkTokenizer(): void {
    if (this.closed) throw engineShuttingDown();
    if (this.swapLoading) throw engineSwapping();
  }

  /** vLLM's `/tokenize` (../tokenize.ts): the tokens `generate` evaluates for this prompt. */
  tokenize(t: TokenizeRequest): Tokenized {
    this.checkTokenizer();
    const tokens = this.textTokens(t.request, t.chatEnd, t.addSpecialTokens);
    if (!t.returnTokenStrs) return { tokens };
    // vLLM's token_strs are the vocabulary's pieces (convert_ids_to_tokens), which the GGUF lists.
    const vocab = (this.model.fileInfo.metadata as { tokenizer?: { ggml?: { tokens?: readonly string[] } } })
      .tokenizer?.ggml?.tokens;
    const tokenStrs = tokens.map((id) => vocab?.[id] ?? this.model.detokenize([id], true));
    return { tokens, tokenStrs };
  }

  /** vLLM's `GET /tokenizer_info`: the GGUF tokenizer's configuration (../tokenize.ts ggufTokenizerInfo). */
  tokenizerInfo(): Record<string, unknown> {
    this.checkTokenizer();
    const metadata = this.model.fileInfo.metadata as { tokenizer?: GgufTokenizerMetadata };
    return ggufTokenizerInfo(metadata.tokenizer, this.contextSize, this.model.tokens.shouldPrependBosToken);
  }

  /** vLLM's `/detokenize`: the ids' text, special tokens written out (as a tokenizer's decode does). */
  detokenize(ids: readonly number[]): string {
    this.checkTokenizer();
    const outside = outOfVocabulary(ids, this.vocabularySize);
    if (outside !== undefined)
      throw new SwitchyardError('SY_ERR_INVALID_ARGUMENT', outside.message, { param: 'tokens' });
    return this.model.detokenize(ids as Token[], true);
  }

  generate(input: GenerationInput, sink: GenerationSink): void {
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
    let tokens: Token[];
    try {
      refuseUnimplementedSampling(input.request);
      tokens = this.tokenizePrompt(input);
    } catch (error) {
      sink.onError(error as Error);
      return;
    }
    const request = input.request;
    const room = this.contextSize - tokens.length;
    if (room < 1 || (request.maxTokensGiven && request.maxTokens > room)) {
      sink.onError(
        new SwitchyardError(
          'SY_ERR_INVALID_ARGUMENT',
          `the prompt's ${tokens.length} tokens plus ${request.maxTokensGiven ? `${request.maxTokensField} ${request.maxTokens}` : 'max_tokens 1'} ` +
            `exceed the context of ${this.contextSize} tokens per sequence`,
          { param: request.maxTokensGiven ? request.maxTokensField : 'prompt' },
        ),
      );
      return;
    }
    if (input.signal.aborted) {
      sink.onFinish('abort', { promptTokens: tokens.length, completionTokens: 0, cachedTokens: 0 });
      return;
    }
    if (this.queue.length >= this.waitingMax) {
      sink.onError(
        new SwitchyardError(
          'SY_ERR_OVERLOADED',
          `engine overloaded: ${this.queue.length} requests waiting, the bound is ${this.waitingMax}`,
        ),
      );
      return;
    }
    const job: Job = { input, sink, tokens, limit: Math.min(request.maxTokens, room), onAbort: undefined };
    job.onAbort = () => this.abortWaiting(job);
    input.signal.addEventListener('abort', job.onAbort, { once: true });
    this.queue.push(job);
    this.pump();
  }

  private abortWaiting(job: Job): void {
    const at = this.queue.indexOf(job);
    if (at < 0) return;
    this.queue.splice(at, 1);
    job.sink.onFinish('abort', { promptTokens: job.tokens.length, completionTokens: 0, cachedTokens: 0 });
  }

  /** Hands free sequences to waiting requests, oldest request first. */
  private pump(): void {
    while (!this.closed && this.queue.length > 0) {
      const job = this.queue[0]!;
      const salt = job.input.request.cacheSalt;
      const pick = pickSlot(
        this.slots,
        (slot) => (slot.salt === salt ? this.sharedPrefix(slot, job.tokens) : 0),
        REUSE_MIN_TOKENS,
      );
      if (pick === undefined) return;
      this.queue.shift();
      if (job.onAbort !== undefined) job.input.signal.removeEventListener('abort', job.onAbort);
      pick.slot.busy = true;
      pick.slot.salt = salt;
      this.active.add(job);
      void this.run(job, pick.slot, pick.shared);
    }
  }

  /** Prompt tokens the slot's KV already holds; at most all but one (the last is evaluated for logits). */
  private sharedPrefix(slot: Slot, tokens: readonly Token[]): number {
    const held = slot.sequence.contextTokens;
    const n = Math.min(held.length, tokens.length - 1);
    let i = 0;
    while (i < n && held[i] === tokens[i]) i++;
    return i;
  }

  /**
   * A P/D decode: loads the state its prefill engine computed into the slot's sequence and returns
   * the prompt tokens it now holds. A fetch that failed leaves the slot as it was (`shared` of the
   * local prefix cache); a load that failed clears it (0): either way the rest is prefilled here.
   */
  private async importState(
    job: Job,
    slot: Slot,
    fetching: Promise<KvStateRef | undefined>,
    shared: number,
  ): Promise<number> {
    const hooks = this.kvState as KvStateHooks;
    const state = await fetching;
    if (state === undefined) return shared;
    try {
      await hooks.loadState(state, slot.sequence);
      return this.sharedPrefix(slot, job.tokens);
    } catch (error) {
      hooks.loadFailed(job.input.id, error as Error);
      await slot.sequence.clearHistory().catch(() => undefined);
      return 0;
    } finally {
      hooks.doneWith(state);
    }
  }

  private async run(job: Job, slot: Slot, localShared: number): Promise<void> {
    const { request, signal } = job.input;
    const sequence = slot.sequence;
    // Structured output: llama.cpp's sampler keeps the text inside the constraint's grammar, which
    // ends the generation (an end-of-generation token) once the value is complete.
    let grammarEvaluationState: Awaited<ReturnType<GrammarCache['state']>> | undefined;
    if (job.input.structured !== undefined) {
      try {
        grammarEvaluationState = await this.grammars.state(job.input.structured, this.model);
      } catch (error) {
        this.release(job, slot);
        job.sink.onError(error as Error);
        return;
      }
    }
    const stops = request.stop.filter((s) => s.length > 0);
    const promptTokens = job.tokens.length;
    const fetching = this.kvState?.fetchState(job.input.id);
    const shared =
      fetching === undefined ? localShared : await this.importState(job, slot, fetching, localShared);
    this.promptTokensTotal += promptTokens;
    this.prefixQueriesTokens += promptTokens;
    this.prefixHitsTokens += shared;
    let completionTokens = 0;
    /** Generated tokens not yet turned into text (an incomplete UTF-8 character). */
    let pendingTokens: Token[] = [];
    /** Text decoded but held back because it may be the start of a stop string. */
    let held = '';
    let heldTokens = 0;
    let recentTokens: Token[] = job.tokens.slice(-8);
    let reason: FinishReason = 'length';
    /** The stop string that ended the generation (vLLM's stop_reason); undefined for EOS or length. */
    let stopReason: string | undefined;
    /** vLLM's ignore_eos: end-of-generation tokens count as generated and the generation goes on. */
    const ignoreEos = job.input.sampling?.ignoreEos === true;
    const includeStop = job.input.sampling?.includeStopStr === true;
    /** vLLM's repetition_penalty punishes every token of the prompt and the output so far. */
    const punished = job.input.sampling?.repetitionPenalty === undefined ? undefined : [...job.tokens];
    const emit = (text: string, tokens: number): void => {
      if (text.length > 0 || tokens > 0) job.sink.onText(text, tokens);
    };
    let ended = false;
    try {
      if (sequence.nextTokenIndex > shared) {
        await sequence.eraseContextTokenRanges([{ start: shared, end: sequence.nextTokenIndex }]);
      }
      const generator = sequence.evaluate(job.tokens.slice(shared), {
        temperature: request.temperature ?? 1,
        // OpenAI's default is no nucleus cut (node-llama-cpp's own default is 0.95).
        topP: request.topP ?? 1,
        // Without a seed every generation samples on its own, as vLLM's unseeded requests do:
        // node-llama-cpp's default seed is the current second, which gave the n choices of one
        // request, and every request of that second with the same prompt, the same text.
        seed: request.seed === undefined ? randomInt(SEED_END) : llamaSeed(request.seed),
        ...vllmSamplingOptions(job.input.sampling, punished, this.contextSize),
        ...(grammarEvaluationState === undefined ? {} : { grammarEvaluationState }),
        yieldEogToken: true,
      });
      try {
        for await (const token of generator) {
          if (this.closed) throw new Error('closed');
          if (signal.aborted) {
            reason = 'abort';
            break;
          }
          if (!ignoreEos && this.model.isEogToken(token)) {
            reason = 'stop';
            break;
          }
          if (this.startup.markToken()) this.log(startupLogLine(this.startup.report(), 'llama'));
          completionTokens++;
          if (punished !== undefined) punished.push(token);
          this.generationTokensTotal++;
          pendingTokens.push(token);
          const piece = this.model.detokenize(pendingTokens, false, recentTokens);
          if (piece.endsWith('\uFFFD') && pendingTokens.length < UTF8_PENDING_TOKENS_MAX) {
            if (completionTokens >= job.limit) break;
            continue;
          }
          recentTokens = [...recentTokens, ...pendingTokens].slice(-8);
          heldTokens += pendingTokens.length;
          pendingTokens = [];
          held += piece;
          if (stops.length > 0) {
            const match = firstStop(held, stops);
            if (match !== undefined) {
              // vLLM's include_stop_str_in_output keeps the stop string; the text after it goes.
              held = held.slice(0, match.at + (includeStop ? match.stop.length : 0));
              reason = 'stop';
              stopReason = match.stop;
              break;
            }
            const keep = heldBackLength(held, stops);
            if (keep < held.length && completionTokens < job.limit) {
              emit(held.slice(0, held.length - keep), heldTokens);
              held = held.slice(held.length - keep);
              heldTokens = 0;
            }
          } else if (completionTokens < job.limit) {
            emit(held, heldTokens);
            held = '';
            heldTokens = 0;
          }
          if (completionTokens >= job.limit) break;
        }
      } finally {
        await generator.return();
      }
      if (pendingTokens.length > 0) {
        held += this.model.detokenize(pendingTokens, false, recentTokens);
        heldTokens += pendingTokens.length;
      }
      // A P/D prefill: the P/D engine saves the sequence's state (the prompt's KV).
      const saving = this.kvState?.saveState(job.input.id, sequence);
      if (saving !== undefined) await saving;
      ended = true;
      const usage: GenerationUsage = { promptTokens, completionTokens, cachedTokens: shared };
      this.release(job, slot);
      // The last text and the finish in one turn: the server puts the finish_reason on the last
      // token's chunk, as vLLM does.
      emit(held, heldTokens);
      job.sink.onFinish(reason, usage, stopReason);
    } catch (error) {
      if (ended) return;
      if (!this.closed) await sequence.clearHistory().catch(() => undefined);
      this.release(job, slot);
      job.sink.onError(
        this.closed
          ? new SwitchyardError('SY_ERR_NO_INSTANCE', 'the engine shut down before the generation ended')
          : new SwitchyardError('SY_ERR_INTERNAL', `generation failed: ${(error as Error).message}`),
      );
    }
  }

  private release(job: Job, slot: Slot): void {
    this.active.delete(job);
    slot.busy = false;
    slot.releasedAt = ++this.releaseStamp;
    this.pump();
  }

  /** The server listens: the start-up's last stage ended. */
  markReady(): void {
    this.startup.mark('listen');
  }

  /** The start-up timings as Prometheus gauges (`switchyard:engine_startup_*`, see startup.ts). */
  extraMetricsText(): string {
    return (
      startupMetricsText(this.startup.report(), this.modelId) +
      (this.sleepMode?.metricsText(this.modelId) ?? '') +
      (this.weightUpdate === undefined
        ? ''
        : weightUpdateMetricsText(this.modelId, this.swapGate.completed, this.swapGate.running))
    );
  }

  /** The start-up timings so far. */
  startupReport(): StartupReport {
    return this.startup.report();
  }

  signals(): BackendSignals {
    let kvTokens = 0;
    for (const slot of this.slots) if (slot.busy) kvTokens += slot.sequence.nextTokenIndex;
    const capacity = this.contextSize * this.sequences;
    return {
      running: this.active.size,
      waiting: this.queue.length,
      kvUsage: capacity > 0 ? Math.min(1, kvTokens / capacity) : 0,
      kvBlocksTotal: Math.floor(capacity / BLOCK_SIZE),
      blockSize: BLOCK_SIZE,
      prefixQueriesTokens: this.prefixQueriesTokens,
      prefixHitsTokens: this.prefixHitsTokens,
      promptTokensTotal: this.promptTokensTotal,
      generationTokensTotal: this.generationTokensTotal,
      preemptionsTotal: 0,
    };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.sleepMode?.close();
    const error = new SwitchyardError(
      'SY_ERR_NO_INSTANCE',
      'the engine shut down before the generation ended',
    );
    for (const job of this.queue.splice(0)) {
      if (job.onAbort !== undefined) job.input.signal.removeEventListener('abort', job.onAbort);
      job.sink.onError(error);
    }
    // Running generations see `closed` at their next token and end with onError; wait for them so
    // the context is idle before it is freed.
    const deadline = Date.now() + 10_000;
    while (this.active.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    await this.llama.dispose();
  }
}
