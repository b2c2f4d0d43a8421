/**
 * `switchyard engine llama`: the `llama` backend (node-llama-cpp on the CPU) behind the built-in
 * engines' OpenAI server. Prints one JSON ready line on stdout once it listens and drains on SIGTERM
 * or SIGINT, like `switchyard engine sim`. With `--standby` it starts without a model, does every
 * part of its start-up that does not need one, and takes the model from stdin: a pre-started engine
 * for a node to hand the next cold model to.
 */
import { type Command, InvalidArgumentError, Option } from 'commander';
import { reserveHeapIn } from '../adapters/engine-process.ts';
import { heapControl, returnFreeHeap } from '../adapters/malloc-trim.ts';
import { preReadFile } from '../adapters/model-warmer.ts';
import { exitIfParentGoesBeforeServing } from '../adapters/process-signals.ts';
import { invalidArgument } from '../core/errors.ts';
import {
  KV_WAIT_TIMEOUT_MS_DEFAULT,
  SEQUENCES_DEFAULT,
  STATE_BUFFERS_KEPT_BYTES_MAX,
  STATE_RESERVE_AUTO_BYTES_MAX,
  THREADS_DEFAULT,
} from '../engine-servers/llama/defaults.ts';
import type { LlamaRuntime } from '../engine-servers/llama/llama-backend.ts';
import { MEMORY_RESERVE_MIB_MAX, MemoryReserve } from '../engine-servers/llama/memory-reserve.ts';
import { StartupClock } from '../engine-servers/llama/startup.ts';
import { serveEngine } from '../engine-servers/run-engine.ts';
import { WEIGHT_UPDATE_TIMEOUT_MS_DEFAULT } from '../engine-servers/weight-update.ts';
import { PD_KV_RELEASE_TIMEOUT_MS_DEFAULT } from '../model/kv-release.ts';
import { intInRange, positiveInt, positiveNumber, tcpPort } from './parse.ts';

/**
 * A standby engine started with the reserve heap (engine-process.ts withReserveHeap): the trim that
 * puts glibc's top pad and mmap limit back and returns the heap's free pages (malloc-trim.ts), run
 * after each large free. Where it cannot be had (off glibc Linux, koffi missing), a line says so and
 * the heap keeps what the tunables let it keep.
 */
function reserveHeapTrim(): (() => void) | undefined {
  const heap = heapControl();
  if (heap.control !== undefined) {
    const control = heap.control;
    return () => {
      returnFreeHeap(control);
    };
  }
  process.stderr.write(`reserve heap: ${heap.why}; the heap keeps up to the freed reserve resident\n`);
  return undefined;
}

/** Commander parser of --kv-reserve-mib: 'auto' or whole MiB up to the kept state buffers' bound. */
function reserveMib(value: string): number | 'auto' {
  if (value === 'auto') return 'auto';
  try {
    return intInRange(0, STATE_BUFFERS_KEPT_BYTES_MAX >> 20)(value);
  } catch {
    throw new InvalidArgumentError(
      `'${value}' is neither auto nor a whole number of MiB in 0..${STATE_BUFFERS_KEPT_BYTES_MAX >> 20}.`,
    );
  }
}

/** The flags of `switchyard engine llama`, as commander hands them over. */
interface LlamaEngineFlags {
  model?: string;
  host: string;
  port: number;
  sequences: number;
  threads: number;
  contextSize?: number;
  servedModelName?: string;
  maxWaiting?: number;
  shutdownTimeout: number;
  /** `--no-mmap` sets it false. */
  mmap: boolean;
  mlock?: boolean;
  /** `--no-prefetch` sets it false. */
  prefetch: boolean;
  standby?: boolean;
  /** With --standby: MiB touched while standing by and freed just before the context (memory-reserve.ts); 0: none. */
  standbyReserveMib: number;
  /** P/D: the side this engine plays (src/engine-servers/llama/pd.ts); unset: an ordinary engine. */
  pdRole?: string;
  kvPort: number;
  kvReleaseTimeoutMs: number;
  /** P/D: the state buffer reserved at start, MiB, or 'auto' (pd.ts `stateReserve`). */
  kvReserveMib: number | 'auto';
  /** P/D: vLLM's kv_transfer_params flow (pd.ts, the default) or SGLang's bootstrap rooms (pd-sglang.ts). */
  pdProtocol?: 'vllm' | 'sglang';
  bootstrapPort?: number;
  kvWaitTimeoutMs: number;
  /** vLLM's sleep mode: sleep frees the context and model, a wake reloads them (src/engine-servers/llama/sleep.ts). */
  enableSleepMode?: boolean;
  /** Longest load of POST /update_weights_from_disk, seconds (src/engine-servers/weight-update.ts). */
  weightUpdateTimeout: number;
}

/** Longest line a standby engine reads on stdin for its model (a path and a name fit many times). */
export const STANDBY_ORDER_BYTES_MAX = 64 << 10;

/** What a standby engine is given on stdin: one JSON line. */
interface StandbyOrder {
  readonly model: string;
  readonly servedModelName?: string;
}

/**
 * The first line of stdin (at most STANDBY_ORDER_BYTES_MAX bytes), or what came before it closed.
 * Stdin stays open after it: it is the pipe the engine watches for its supervisor's death
 * (src/adapters/process-signals.ts), so a handed standby engine still exits when `serve` is killed.
 */
function readFirstStdinLine(): Promise<string> {
  const stdin = process.stdin;
  return new Promise((resolve) => {
    let text = '';
    const finish = (): void => {
      stdin.off('data', onData);
      stdin.off('end', finish);
      stdin.pause();
      resolve(text);
    };
    const onData = (chunk: Buffer | string): void => {
      text += String(chunk);
      if (text.includes('\n') || text.length > STANDBY_ORDER_BYTES_MAX) finish();
    };
    stdin.on('data', onData);
    stdin.once('end', finish);
  });
}

/** Reads the first line of stdin as a StandbyOrder. */
async function readStandbyOrder(): Promise<StandbyOrder> {
  const expected = 'one JSON line on stdin: {"model":"PATH.gguf","servedModelName"?:"NAME"}';
  const text = await readFirstStdinLine();
  const line = text.split('\n')[0] ?? '';
  if (text.length > STANDBY_ORDER_BYTES_MAX)
    throw invalidArgument('standby', `${text.length}+ bytes`, expected);
  let order: unknown;
  try {
    order = JSON.parse(line);
  } catch {
    throw invalidArgument('standby', line === '' ? '(stdin closed)' : line.slice(0, 200), expected);
  }
  const o = order as Partial<StandbyOrder> | null;
  if (
    typeof o !== 'object' ||
    o === null ||
    typeof o.model !== 'string' ||
    (o.servedModelName !== undefined && typeof o.servedModelName !== 'string')
  ) {
    throw invalidArgument('standby', line.slice(0, 200), expected);
  }
  return o.servedModelName === undefined
    ? { model: o.model }
    : { model: o.model, servedModelName: o.servedModelName };
}

/** The SGLang flags need a --pd-role, and --bootstrap-port an SGLang prefill. */
function checkPdProtocolFlags(flags: LlamaEngineFlags): void {
  if (flags.pdProtocol !== undefined && flags.pdRole === undefined)
    throw invalidArgument('pd-protocol', flags.pdProtocol, 'a --pd-role (prefill or decode) beside it');
  if (flags.bootstrapPort !== undefined && (flags.pdRole !== 'prefill' || flags.pdProtocol !== 'sglang')) {
    throw invalidArgument(
      'bootstrap-port',
      String(flags.bootstrapPort),
      'only with --pd-role prefill --pd-protocol sglang',
    );
  }
}

async function runLlamaEngine(flags: LlamaEngineFlags): Promise<void> {
  if (flags.standby === true && flags.model !== undefined)
    throw invalidArgument('model', flags.model, 'no --model with --standby (the model comes on stdin)');
  if (flags.standby !== true && flags.model === undefined)
    throw invalidArgument('model', '(none)', 'a GGUF model file: --model PATH.gguf');
  if (flags.standby !== true && flags.standbyReserveMib > 0)
    throw invalidArgument('standby-reserve-mib', String(flags.standbyReserveMib), 'only with --standby');
  if (flags.pdRole !== undefined && flags.pdRole !== 'prefill' && flags.pdRole !== 'decode')
    throw invalidArgument('pd-role', flags.pdRole, 'prefill or decode');
  if (flags.pdRole !== undefined && flags.enableSleepMode === true)
    throw invalidArgument('enable-sleep-mode', 'with --pd-role', 'a whole-request engine (no --pd-role)');
  checkPdProtocolFlags(flags);
  const startup = new StartupClock();
  startup.mark('runtime');
  // A standby engine reads its order from stdin first: it is watched once it has the order.
  if (flags.standby !== true) exitIfParentGoesBeforeServing('switchyard engine llama');
  // The weights are read into the page cache while node-llama-cpp imports and tests its binary
  // (most of a second of CPU): a model on disk is then in memory when llama.cpp maps it. A bad path
  // is left to the backend's own check, which names it.
  const prefetchStop = new AbortController();
  let prefetch: Promise<unknown> = Promise.resolve();
  const startPrefetch = (path: string) => {
    if (flags.prefetch) prefetch = preReadFile(path, { signal: prefetchStop.signal }).catch(() => undefined);
  };
  if (flags.model !== undefined) startPrefetch(flags.model);
  try {
    // Loaded here, not at the top: node-llama-cpp costs every other command about 0.35 s to import.
    const { LlamaBackend, LlamaRuntime: Runtime } = await import('../engine-servers/llama/llama-backend.ts');
    startup.mark('import');
    const { LlamaPd, serveLlamaPdEngine } = await import('../engine-servers/llama/pd.ts');
    const pd =
      flags.pdRole === undefined
        ? undefined
        : new LlamaPd({
            role: flags.pdRole as 'prefill' | 'decode',
            kvHost: flags.host,
            kvPort: flags.kvPort,
            kvReleaseTimeoutMs: flags.kvReleaseTimeoutMs,
            stateReserve: flags.kvReserveMib === 'auto' ? 'auto' : flags.kvReserveMib * (1 << 20),
          });
    let model = flags.model;
    let servedModelName = flags.servedModelName;
    let runtime: LlamaRuntime | undefined;
    let reserveFreed: Promise<unknown> | undefined;
    let afterFree: (() => void) | undefined;
    if (flags.standby === true) {
      // Everything that does not depend on the model is done; the figures count from the model.
      runtime = await Runtime.start({ threads: flags.threads });
      const reserve =
        flags.standbyReserveMib > 0 ? await MemoryReserve.hold(flags.standbyReserveMib) : undefined;
      // Bound while standing by (koffi's load is ~30 ms of CPU), called once the context is created.
      if (reserve !== undefined && reserveHeapIn(process.env)) afterFree = reserveHeapTrim();
      startup.mark('binding');
      process.stdout.write(`${JSON.stringify({ event: 'standby', engine: 'llama' })}\n`);
      const order = await readStandbyOrder();
      startup.activate();
      // Freed while the model loads; the context waits for it (LlamaBackendOptions.beforeContext).
      reserveFreed = reserve?.release().catch(() => undefined);
      model = order.model;
      servedModelName = order.servedModelName ?? servedModelName;
      exitIfParentGoesBeforeServing('switchyard engine llama');
      startPrefetch(model);
    }
    const opening = LlamaBackend.open(
      {
        modelPath: model as string,
        sequences: flags.sequences,
        threads: flags.threads,
        startup,
        useMmap: flags.mmap,
        useMlock: flags.mlock === true,
        ...(servedModelName === undefined ? {} : { modelId: servedModelName }),
        ...(flags.contextSize === undefined ? {} : { contextSize: flags.contextSize }),
        ...(flags.maxWaiting === undefined ? {} : { maxWaiting: flags.maxWaiting }),
        ...(pd === undefined ? {} : { kvState: pd }),
        ...(reserveFreed === undefined ? {} : { beforeContext: reserveFreed }),
        ...(afterFree === undefined ? {} : { afterFree }),
        enableSleepMode: flags.enableSleepMode === true,
        weightUpdateTimeoutMs: flags.weightUpdateTimeout * 1000,
      },
      runtime,
    );
    // A model that does not load leaves no state folder behind.
    const backend = await opening.catch(async (error: unknown) => {
      await pd?.close();
      throw error;
    });
    // The first transfer's state buffer, reserved and touched now rather than by that transfer.
    pd?.reserveStateBuffer({ contextSize: backend.contextSize, architecture: backend.architecture });
    // Where the engine listens and its queue and drain bounds, whichever server it runs.
    const listen = {
      host: flags.host,
      port: flags.port,
      maxWaiting: flags.maxWaiting,
      shutdownTimeoutS: flags.shutdownTimeout,
    };
    if (pd !== undefined && flags.pdProtocol === 'sglang') {
      const { LlamaSglang, serveLlamaSglangEngine } = await import('../engine-servers/llama/pd-sglang.ts');
      const sglang = new LlamaSglang(pd, {
        bootstrapPort: flags.bootstrapPort,
        kvWaitTimeoutMs: flags.kvWaitTimeoutMs,
        kvReleaseTimeoutMs: flags.kvReleaseTimeoutMs,
      });
      await serveLlamaSglangEngine(backend, sglang, listen);
      return;
    }
    if (pd !== undefined) {
      await serveLlamaPdEngine(backend, pd, listen);
      return;
    }
    await serveEngine(backend, {
      engine: 'llama',
      ...listen,
      kvEvents: null,
    });
  } finally {
    // An engine that failed to load, or stopped, has no use for the rest of the file.
    prefetchStop.abort();
    await prefetch;
  }
}

/** Registers `switchyard engine llama` under the `engine` command. */
export function registerLlamaEngineCommand(engine: Command): void {
  engine
    .command('llama')
    .description(
      'Real CPU inference with llama.cpp (node-llama-cpp) on a GGUF model: one context with --sequences\n' +
        'parallel sequences and a waiting queue. A request takes the free sequence whose KV shares the\n' +
        "longest prefix with its prompt and evaluates only the rest (usage's cached_tokens, and\n" +
        'vllm:prefix_cache_hits_total in /metrics). Chat prompts are the canonical rendering of the\n' +
        "messages followed by '<|assistant|>\\n' (the model's chat template is not applied).\n" +
        'Start-up timings: switchyard:engine_startup_*_seconds in /metrics and one JSON line on stderr\n' +
        'at the first token. A tiny random-weight model for trying it out (--size-mb for a larger one):\n' +
        'node --import tsx scripts/make-tiny-gguf.ts',
    )
    .option('--model <path>', 'GGUF model file (required)')
    .option('--host <host>', 'interface to listen on', '127.0.0.1')
    .option('--port <port>', 'port to listen on (0: any free port)', tcpPort, 8000)
    .option(
      '--sequences <n>',
      "parallel sequences (generations at once), at most 256 (llama.cpp's LLAMA_MAX_SEQ)",
      positiveInt,
      SEQUENCES_DEFAULT,
    )
    .option('--threads <n>', 'CPU threads for evaluation', positiveInt, THREADS_DEFAULT)
    .option(
      '--context-size <tokens>',
      "tokens per sequence, at most the model's context (its training context, or its GGUF's RoPE scaling's reach; default: the training context, at most 4096)",
      positiveInt,
    )
    .option('--served-model-name <name>', 'model name requests must use (default: the file name)')
    .option(
      '--max-waiting <n>',
      'answer 429 (Retry-After) while this many requests wait (default: no bound below 1024)',
      positiveInt,
    )
    .option('--shutdown-timeout <s>', 'longest wait for in-flight requests on SIGTERM', positiveNumber, 30)
    .option(
      '--no-mmap',
      'read the weights into private memory instead of mapping the file (slower from the page cache)',
    )
    .option('--mlock', 'lock the weights in RAM so they are never paged out')
    .option(
      '--enable-sleep-mode',
      "vLLM's sleep mode: POST /sleep frees the context and model (the GGUF stays in the page cache),\n" +
        'POST /wake_up reloads them, GET /is_sleeping; without it those routes answer 404',
    )
    .option(
      '--weight-update-timeout <s>',
      'longest load of POST /update_weights_from_disk before it is given up (504; the engine keeps its model)',
      positiveNumber,
      WEIGHT_UPDATE_TIMEOUT_MS_DEFAULT / 1000,
    )
    .option('--no-prefetch', 'do not read the model file into the page cache while the engine starts')
    .option(
      '--standby',
      'start without a model: load node-llama-cpp, print {"event":"standby"} on stdout, then take the model\n' +
        'from one JSON line on stdin ({"model":"PATH.gguf","servedModelName"?:"NAME"}); start-up figures count from it',
    )
    .option(
      '--standby-reserve-mib <MiB>',
      'with --standby: memory touched while standing by and freed just before the context is created, so\n' +
        "the KV cache's first touch reuses pages the machine has just had in use (worth it on VMs that back\n" +
        "memory lazily); size it to the KV cache (sequences x context x the model's KV bytes per token).\n" +
        `Resident while the engine stands by. 0 (default): none; at most ${MEMORY_RESERVE_MIB_MAX}`,
      intInRange(0, MEMORY_RESERVE_MIB_MAX),
      0,
    )
    .option(
      '--pd-role <role>',
      "prefill or decode: one side of a P/D pair (vLLM's flow, or SGLang's with --pd-protocol sglang); the\n" +
        "prefill offers each prompt's KV state on a TCP KV server, the decode fetches it and continues from it",
    )
    .option('--kv-port <port>', "a prefill's KV server port (0: any free port)", tcpPort, 0)
    .option(
      '--kv-release-timeout-ms <ms>',
      "with --pd-role prefill: a KV state no decode fetched is deleted after this long (vLLM's\n" +
        'VLLM_NIXL_ABORT_REQUEST_TIMEOUT; the same default as the sim engine and the twin)',
      positiveInt,
      PD_KV_RELEASE_TIMEOUT_MS_DEFAULT,
    )
    .option(
      '--kv-reserve-mib <MiB>',
      'with --pd-role: the state buffer reserved and pre-faulted at start, so the first KV transfer does\n' +
        "not pay for fresh memory: auto (one sequence's largest state, the model's KV bytes per token x\n" +
        `--context-size, at most ${STATE_RESERVE_AUTO_BYTES_MAX >> 20} MiB), a size in MiB (at most ${STATE_BUFFERS_KEPT_BYTES_MAX >> 20}), or 0 for none`,
      reserveMib,
      'auto',
    )
    .addOption(
      new Option(
        '--pd-protocol <protocol>',
        "with --pd-role: vLLM's kv_transfer_params (default) or SGLang's bootstrap rooms (the prefill files\n" +
          "each prompt's KV state under the request's bootstrap_room; the decode claims it and fetches it)",
      ).choices(['vllm', 'sglang']),
    )
    .option(
      '--bootstrap-port <port>',
      "with --pd-protocol sglang on a prefill: serve the bootstrap endpoint on this port too (SGLang's\n" +
        "--disaggregation-bootstrap-port; 0: any free port; default: the engine's own port only)",
      tcpPort,
    )
    .option(
      '--kv-wait-timeout-ms <ms>',
      "with --pd-protocol sglang: a decode waits this long for its room's prefill, then fails the request",
      positiveInt,
      KV_WAIT_TIMEOUT_MS_DEFAULT,
    )
    .addHelpText(
      'after',
      '\nExamples:\n' +
        '  node --import tsx scripts/make-tiny-gguf.ts   (writes .cache/models/tiny-llama.gguf: random weights, gibberish text)\n' +
        '  switchyard engine llama --model .cache/models/tiny-llama.gguf --port 8001 --sequences 8 --threads 2\n' +
        "  curl http://127.0.0.1:8001/v1/completions -H 'content-type: application/json' \\\n" +
        '    -d \'{"model":"tiny-llama","prompt":"Hello","max_tokens":8}\'',
    )
    .action(async (flags: LlamaEngineFlags) => {
      await runLlamaEngine(flags);
    });
}
