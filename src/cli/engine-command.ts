import { type Command, Option } from 'commander';
import { exitIfParentGoesBeforeServing } from '../adapters/process-signals.ts';
import { invalidArgument, SwitchyardError } from '../core/errors.ts';
import { serveEngine } from '../engine-servers/run-engine.ts';
import { openKvPublisher } from '../engine-servers/sim/kv-publisher.ts';
import { PdEngine, type ServePdOptions, servePdEngine } from '../engine-servers/sim/pd-engine.ts';
import { SimBackend } from '../engine-servers/sim/sim-backend.ts';
import { WEIGHT_UPDATE_TIMEOUT_MS_DEFAULT } from '../engine-servers/weight-update.ts';
import { PD_KV_RELEASE_TIMEOUT_MS_DEFAULT } from '../model/kv-release.ts';
import { gpuFlag, servedModelFlag } from './catalogue-flags.ts';
import { registerLlamaEngineCommand } from './llama-engine-command.ts';
import { fraction, positiveInt, positiveNumber, tcpPort } from './parse.ts';

/** The flags of `switchyard engine sim`, as commander hands them over. */
interface SimEngineFlags {
  host: string;
  port: number;
  gpu: string;
  model: string;
  servedModelName?: string;
  tp: number;
  blockSize: number;
  maxNumSeqs?: number;
  maxNumBatchedTokens?: number;
  gpuMemoryUtilization: number;
  numGpuBlocksOverride?: number;
  enablePrefixCaching: boolean;
  schedulingPolicy: 'fcfs' | 'priority';
  timeScale: number;
  maxWaiting?: number;
  kvEvents: string;
  shutdownTimeout: number;
  /** Prefill/decode disaggregation (src/engine-servers/sim/pd-engine.ts); unset: a whole-request engine. */
  pdRole?: 'prefill' | 'decode';
  pdProtocol?: 'vllm' | 'sglang';
  kvLinkGbps: number;
  kvReleaseTimeoutMs: number;
  kvWaitTimeoutMs: number;
  /** vLLM's sleep mode: POST /sleep, POST /wake_up, GET /is_sleeping (src/engine-servers/sim/sleep.ts). */
  enableSleepMode?: boolean;
  /** Longest load of POST /update_weights_from_disk, seconds (src/engine-servers/weight-update.ts). */
  weightUpdateTimeout: number;
}

/** The P/D side of a sim engine, or undefined without --pd-role. */
function pdEngineOf(flags: SimEngineFlags): PdEngine | undefined {
  if (flags.pdRole === undefined) {
    if (flags.pdProtocol !== undefined)
      throw invalidArgument('pd-protocol', flags.pdProtocol, 'a --pd-role (prefill or decode) beside it');
    return undefined;
  }
  if (flags.pdProtocol === undefined)
    throw new SwitchyardError(
      'SY_ERR_INVALID_ARGUMENT',
      `--pd-role ${flags.pdRole} needs --pd-protocol: vllm (kv_transfer_params) or sglang (bootstrap rooms), as the gateway's backend pdProtocol`,
      { param: 'pd-protocol' },
    );
  return new PdEngine({
    role: flags.pdRole,
    protocol: flags.pdProtocol,
    model: flags.model,
    tp: flags.tp,
    blockSize: flags.blockSize,
    kvLinkGbps: flags.kvLinkGbps,
    timeScale: flags.timeScale,
    kvReleaseTimeoutMs: flags.kvReleaseTimeoutMs,
    kvWaitTimeoutMs: flags.kvWaitTimeoutMs,
  });
}

async function runSimEngine(flags: SimEngineFlags): Promise<void> {
  exitIfParentGoesBeforeServing('switchyard engine sim');
  const kvEndpoint = flags.kvEvents === 'none' ? undefined : flags.kvEvents;
  if (kvEndpoint !== undefined && !/^(tcp|ipc|inproc):\/\/./.test(kvEndpoint)) {
    throw invalidArgument('kv-events', kvEndpoint, "a ZMQ endpoint such as tcp://127.0.0.1:* , or 'none'");
  }
  const modelId = flags.servedModelName ?? flags.model;
  const pd = pdEngineOf(flags);
  if (pd !== undefined && flags.enableSleepMode === true)
    throw invalidArgument('enable-sleep-mode', 'with --pd-role', 'a whole-request engine (no --pd-role)');
  const publisher = kvEndpoint === undefined ? undefined : await openKvPublisher(kvEndpoint);
  let backend: SimBackend;
  try {
    backend = new SimBackend({
      modelId,
      gpu: flags.gpu,
      model: flags.model,
      tp: flags.tp,
      timeScale: flags.timeScale,
      engine: {
        blockSize: flags.blockSize,
        // Unset: the backend takes `vllm serve`'s default for --gpu.
        ...(flags.maxNumSeqs === undefined ? {} : { maxNumSeqs: flags.maxNumSeqs }),
        ...(flags.maxNumBatchedTokens === undefined
          ? {}
          : { maxNumBatchedTokens: flags.maxNumBatchedTokens }),
        gpuMemoryUtilization: flags.gpuMemoryUtilization,
        enablePrefixCaching: flags.enablePrefixCaching,
        numGpuBlocksOverride: flags.numGpuBlocksOverride,
        schedulingPolicy: flags.schedulingPolicy,
      },
      ...(publisher === undefined ? {} : { kvEvents: publisher }),
      enableSleepMode: flags.enableSleepMode === true,
      weightUpdateTimeoutMs: flags.weightUpdateTimeout * 1000,
    });
  } catch (error) {
    await publisher?.close();
    throw error;
  }
  // Served alone or as one side of a P/D pair, from the same flags.
  const serving: ServePdOptions = {
    host: flags.host,
    port: flags.port,
    maxWaiting: flags.maxWaiting,
    shutdownTimeoutS: flags.shutdownTimeout,
    kvEvents: publisher?.endpoint ?? null,
    release: async () => publisher?.close(),
  };
  if (pd !== undefined) {
    await servePdEngine(backend, pd, serving);
    return;
  }
  await serveEngine(backend, { engine: 'sim', ...serving });
}

/** Registers `switchyard engine` with its `sim` and `llama` engines. */
export function registerEngineCommand(program: Command): void {
  const engine = program
    .command('engine')
    .description(
      'Run a built-in engine server: the OpenAI API (/v1/chat/completions, /v1/completions, /v1/responses, /v1/embeddings,\n' +
        "/v1/models), /health, /metrics under vLLM metric names, vLLM-format KV events over ZMQ, and SGLang's\n" +
        'POST /update_weights_from_disk (another checkpoint of the same shape, loaded in place).\n' +
        'Once listening it prints one JSON line on stdout:\n' +
        '  {"event":"ready","engine":"sim","url":"http://127.0.0.1:PORT","model":"...","kvEvents":"tcp://...|null"}\n' +
        'SIGTERM or SIGINT stops accepting, lets in-flight requests finish, and exits 0.',
    )
    .addHelpText(
      'after',
      '\nExamples:\n' +
        '  switchyard engine sim --port 8000 --time-scale 0.05 --kv-events none\n' +
        '  switchyard engine llama --model .cache/models/tiny-llama.gguf --port 8001\n' +
        "Each command's own --help lists its flags.",
    );
  engine
    .command('sim')
    .description(
      "The twin's engine core (vLLM-like continuous batching, paged KV, prefix cache, chunked prefill,\n" +
        'preemption) in wall time: each step lasts what the performance model of --gpu and --model says.\n' +
        'A request generates exactly max_tokens tokens of filler text (like vLLM with ignore_eos).',
    )
    .option('--host <host>', 'interface to listen on', '127.0.0.1')
    .option('--port <port>', 'port to listen on (0: any free port)', tcpPort, 8000)
    .option(
      '--gpu <id>',
      'GPU whose performance is modelled (ids or nvidia-smi names, see `switchyard sim --help`)',
      gpuFlag,
      'h100',
    )
    .option(
      '--model <id>',
      'model whose performance and KV size are modelled (ids or Hugging Face names, see `switchyard sim --help`)',
      servedModelFlag,
      'llama-3.1-8b',
    )
    .option('--served-model-name <name>', 'model name requests must use (default: --model)')
    .option('--tp <n>', 'tensor-parallel GPUs', positiveInt, 1)
    .option('--block-size <tokens>', 'tokens per KV block', positiveInt, 16)
    .option(
      '--max-num-seqs <n>',
      "most sequences running at once (default: vllm serve's for --gpu, 1024 on H100/H200, else 256)",
      positiveInt,
    )
    .option(
      '--max-num-batched-tokens <n>',
      "token budget per step, prefill chunks + decodes (default: vllm serve's, 8192 on H100/H200, else 2048)",
      positiveInt,
    )
    .option('--gpu-memory-utilization <f>', 'fraction of GPU memory for weights and KV', fraction, 0.9)
    .option(
      '--num-gpu-blocks-override <n>',
      'KV blocks in the pool instead of what fits in memory',
      positiveInt,
    )
    .option('--no-enable-prefix-caching', 'disable the prefix cache')
    .addOption(
      new Option(
        '--scheduling-policy <policy>',
        "fcfs: arrival order; priority: lower body `priority` first, preempting (vLLM's sign; the gateway sends its own priority, higher first, negated: backend enginePriority lower-first)",
      )
        .choices(['fcfs', 'priority'])
        .default('fcfs'),
    )
    .option(
      '--time-scale <x>',
      'wall time per modelled time (0.1: ten times faster than modelled)',
      positiveNumber,
      1,
    )
    .option(
      '--max-waiting <n>',
      'answer 429 (Retry-After) while this many requests wait (default: no bound)',
      positiveInt,
    )
    .option(
      '--kv-events <endpoint>',
      "publish KV events on this ZMQ endpoint (a '*' port picks a free one), or 'none'",
      'tcp://127.0.0.1:*',
    )
    .option('--shutdown-timeout <s>', 'longest wait for in-flight requests on SIGTERM', positiveNumber, 30)
    .option(
      '--weight-update-timeout <s>',
      'longest load of POST /update_weights_from_disk before it is given up (504; the engine keeps its model)',
      positiveNumber,
      WEIGHT_UPDATE_TIMEOUT_MS_DEFAULT / 1000,
    )
    .option(
      '--enable-sleep-mode',
      "vLLM's sleep mode: POST /sleep?level=1|2, POST /wake_up, GET /is_sleeping (a wake takes the\n" +
        "twin's modelled time); without it those routes answer 404",
    )
    .addOption(
      new Option(
        '--pd-role <role>',
        "one side of a disaggregated pair (docs/disaggregation.md): 'prefill' holds the prompt's KV for a\n" +
          "decode engine, 'decode' fetches it and skips the prefill (default: whole requests)",
      ).choices(['prefill', 'decode']),
    )
    .addOption(
      new Option(
        '--pd-protocol <protocol>',
        "with --pd-role (required there): vLLM's kv_transfer_params or SGLang's bootstrap rooms",
      ).choices(['vllm', 'sglang']),
    )
    .option(
      '--kv-link-gbps <n>',
      'with --pd-role decode: the modelled KV link between the engines, Gb/s',
      positiveNumber,
      100,
    )
    .option(
      '--kv-release-timeout-ms <ms>',
      "with --pd-role prefill: KV no decode collected is released after this long (vLLM's VLLM_NIXL_ABORT_REQUEST_TIMEOUT)",
      positiveInt,
      PD_KV_RELEASE_TIMEOUT_MS_DEFAULT,
    )
    .option(
      '--kv-wait-timeout-ms <ms>',
      'with --pd-protocol sglang: a decode waits this long for its room on the prefill engine',
      positiveInt,
      30_000,
    )
    .addHelpText(
      'after',
      '\nExamples:\n' +
        '  switchyard engine sim --port 8000   (Llama-3.1-8B on one H100, in real time)\n' +
        "  curl http://127.0.0.1:8000/v1/completions -H 'content-type: application/json' \\\n" +
        '    -d \'{"model":"llama-3.1-8b","prompt":"Hello","max_tokens":8}\'\n' +
        '  # Qwen2.5-7B on an A100-80GB running at most 128 sequences, ten times faster than modelled\n' +
        '  switchyard engine sim --port 8000 --gpu a100-80gb --model qwen2.5-7b --max-num-seqs 128 --time-scale 0.1\n' +
        '  # one side of a disaggregated pair (the other: --pd-role decode; docs/disaggregation.md)\n' +
        '  switchyard engine sim --port 8100 --pd-role prefill --pd-protocol vllm',
    )
    .action(async (flags: SimEngineFlags) => {
      await runSimEngine(flags);
    });
  registerLlamaEngineCommand(engine);
}
