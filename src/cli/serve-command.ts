/**
 * `switchyard serve`: the live gateway. Backends come from `--config` (YAML); with none configured it
 * starts `--engines` built-in engines as child processes and fronts them. Everything that can be
 * checked is checked before any engine starts (flags, config, model and GPU names, the port, memory
 * for a GGUF model), and a usage error exits 2 with one line. SIGTERM / SIGINT drain (ready and new
 * requests answer 503, in-flight requests finish, bounded by drainTimeoutMs); a second signal says
 * what is still draining; a third ends the drain at once, every open stream getting an SSE error and
 * `[DONE]`. Then the local engines stop and it exits 0. A signal during start-up stops the engines
 * still starting (a launch is aborted, not awaited) and exits 0 with a line. An unhandled rejection is
 * logged and serving goes on; an uncaught exception is logged and exits 1 (./serve-process-errors.ts).
 */
import { statSync } from 'node:fs';
import { createServer } from 'node:net';
import { freemem } from 'node:os';
import { type Command, Option } from 'commander';
import {
  LOCAL_ENGINES_MAX,
  type LocalEngines,
  READY_TIMEOUT_MS_DEFAULT,
  RESTART_POLICY_DEFAULT,
  startLocalEngines,
} from '../adapters/local-engines.ts';
import { onEverySignal } from '../adapters/process-signals.ts';
import { autoscalerNames } from '../control/autoscalers/registry.ts';
import { EVICTION_POLICIES } from '../control/serverless/live-eviction.ts';
import { invalidArgument, SwitchyardError } from '../core/errors.ts';
import { checkGgufHeader } from '../engine-servers/llama/gguf-header.ts';
import { type GatewayConfig, loadGatewayConfig, parseGatewayConfig } from '../gateway/config.ts';
import { type Gateway, startGateway } from '../gateway/gateway.ts';
import { gpuSpec } from '../model/gpus.ts';
import { modelSpec } from '../model/models.ts';
import { createConfiguredPolicy, routingPolicyNames } from '../policies/routing/registry.ts';
import { positiveInt, positiveNumber, tcpPort } from './parse.ts';
import {
  type AutoscaledPool,
  type AutoscaleFlags,
  type AutoscaleSettings,
  attachExportOnly,
  autoscaleSettings,
  startAutoscaledPool,
} from './serve-autoscale.ts';
import { CONFIG_FLAG_PARSERS } from './serve-config-flags.ts';
import { watchProcessErrors } from './serve-process-errors.ts';

/** Flags of `switchyard serve`: the autoscaling ones (AutoscaleFlags, serve-autoscale.ts) and these. */
interface ServeFlags extends AutoscaleFlags {
  readonly port?: number;
  readonly host?: string;
  readonly engine: 'sim' | 'llama';
  readonly model?: string;
  readonly servedModelName?: string;
  readonly gpu: string;
  readonly policy?: string;
  readonly config?: string;
  readonly adminKey?: string;
  /** CORS (src/gateway/cors.ts): vLLM's flags; each list beats the config's `cors` field. */
  readonly allowedOrigins?: string[];
  readonly allowedMethods?: string[];
  readonly allowedHeaders?: string[];
  readonly allowCredentials?: boolean;
  /** As typed (checked by `positiveNumber`): passed on to each engine unchanged. */
  readonly timeScale?: string;
  readonly scrapeIntervalMs?: number;
  readonly engineStartTimeoutMs: number;
  /** Every `--model` given, parsed (the first is also `model` / `servedModelName`). */
  readonly models: readonly ModelSpec[];
  /** The flags given on the command line, by attribute name (`timeScale`): not commander's defaults. */
  readonly given: ReadonlySet<string>;
}

/** One `--model [NAME=]ID|PATH`: the catalogue id or GGUF path, and the name requests use if given. */
interface ModelSpec {
  readonly model: string;
  readonly served: string | undefined;
}

/** The flags as commander gives them: `--model` may repeat. */
type RawServeFlags = Omit<ServeFlags, 'model' | 'models' | 'given'> & { readonly model?: readonly string[] };

/** `NAME=ID|PATH` or `ID|PATH` (a path may hold '=' only after a '/'). */
function parseModelSpec(value: string): ModelSpec {
  const eq = value.indexOf('=');
  const slash = value.indexOf('/');
  if (eq <= 0 || (slash >= 0 && slash < eq)) return { model: value, served: undefined };
  // `NAME=` alone would silently serve the default model under NAME.
  if (eq === value.length - 1)
    throw invalidArgument(
      'model',
      value,
      'NAME=MODEL with a model after the = (a catalogue id or a GGUF path)',
    );
  return { served: value.slice(0, eq), model: value.slice(eq + 1) };
}

/** The flags with `--model` parsed: one model as before, several for per-model pools. */
function serveFlags(raw: RawServeFlags, given: ReadonlySet<string>): ServeFlags {
  const models = (raw.model ?? []).map(parseModelSpec);
  const first = models[0];
  if (models.length > 1 && raw.servedModelName !== undefined)
    throw new SwitchyardError(
      'SY_ERR_INVALID_ARGUMENT',
      '--served-model-name names one model; with several --model give each as NAME=MODEL',
      { param: 'served-model-name' },
    );
  if (first?.served !== undefined && raw.servedModelName !== undefined)
    throw new SwitchyardError(
      'SY_ERR_INVALID_ARGUMENT',
      '--model NAME=... and --served-model-name both name the model',
      {
        param: 'served-model-name',
      },
    );
  const served = first?.served ?? raw.servedModelName;
  return {
    ...raw,
    given,
    // The one pool's model carries the name too: the autoscaled pools name engines from `models`.
    models:
      raw.servedModelName === undefined
        ? models
        : [{ model: first?.model ?? '', served: raw.servedModelName }],
    ...(first !== undefined ? { model: first.model } : {}),
    ...(served !== undefined ? { servedModelName: served } : {}),
  } as ServeFlags;
}

/** The default model of local sim engines. */
const DEFAULT_SIM_MODEL = 'llama-3.1-8b';
/** Default local engines: sim engines are cheap; each llama engine holds its own model and context. */
const DEFAULT_ENGINES = { sim: 4, llama: 1 } as const;

/** The config after flags: flags beat the file. */
function effectiveConfig(flags: ServeFlags): GatewayConfig {
  const base = flags.config !== undefined ? loadGatewayConfig(flags.config) : parseGatewayConfig({});
  const overrides: Record<string, unknown> = {};
  if (flags.port !== undefined) overrides['port'] = flags.port;
  if (flags.host !== undefined) overrides['host'] = flags.host;
  if (flags.adminKey !== undefined) overrides['adminKey'] = flags.adminKey;
  const cors = corsOverrides(flags);
  if (cors !== undefined) overrides['cors'] = { ...base.cors, ...cors };
  if (flags.policy !== undefined)
    overrides['routing'] = { policy: flags.policy, policies: base.routing?.policies ?? {} };
  if (flags.scrapeIntervalMs !== undefined) overrides['scrapeIntervalMs'] = flags.scrapeIntervalMs;
  // Each flag's value was checked at the flag (serve-config-flags.ts); this checks the file's fields
  // and how the fields combine.
  const config = parseGatewayConfig({ ...base, ...overrides }, {});
  // Fail on a bad policy name before any engine starts.
  if (config.routing !== undefined) createConfiguredPolicy(config.routing.policy, config.routing.policies);
  return config;
}

/** The CORS flags given, as fields of the config's `cors` block; undefined when none was. */
function corsOverrides(flags: ServeFlags): Record<string, unknown> | undefined {
  const out: Record<string, unknown> = {};
  if (flags.allowedOrigins !== undefined) out['allowedOrigins'] = flags.allowedOrigins;
  if (flags.allowedMethods !== undefined) out['allowedMethods'] = flags.allowedMethods;
  if (flags.allowedHeaders !== undefined) out['allowedHeaders'] = flags.allowedHeaders;
  if (flags.allowCredentials !== undefined) out['allowCredentials'] = flags.allowCredentials;
  return Object.keys(out).length > 0 ? out : undefined;
}

function engineArgs(
  flags: ServeFlags,
  spec: ModelSpec = { model: flags.model ?? '', served: flags.servedModelName },
): string[] {
  if (flags.engine === 'llama') {
    if (flags.model === undefined)
      throw new SwitchyardError(
        'SY_ERR_INVALID_ARGUMENT',
        '--engine llama needs --model <path to a GGUF file>',
        {
          param: 'model',
        },
      );
    const args = ['--model', spec.model];
    if (spec.served !== undefined) args.push('--served-model-name', spec.served);
    return args;
  }
  const args = ['--gpu', flags.gpu, '--model', spec.model || DEFAULT_SIM_MODEL];
  if (spec.served !== undefined) args.push('--served-model-name', spec.served);
  if (flags.timeScale !== undefined) args.push('--time-scale', flags.timeScale);
  return args;
}

/** The name requests use for `spec`'s engines (what the engine itself defaults to). */
function servedNameOf(flags: ServeFlags, spec: ModelSpec): string {
  if (spec.served !== undefined) return spec.served;
  if (flags.engine === 'sim') return spec.model || DEFAULT_SIM_MODEL;
  // As the llama engine names a GGUF file: its base name without `.gguf`.
  return (spec.model.split(/[\\/]/).pop() ?? spec.model).replace(/\.gguf$/i, '');
}

function engineCount(flags: ServeFlags): number {
  return flags.engines ?? DEFAULT_ENGINES[flags.engine];
}

/** Sim engines: the model and GPU must be in the catalogue (throws SY_ERR_UNKNOWN_NAME listing them). */
function checkSimNames(flags: ServeFlags): void {
  modelSpec(flags.model ?? DEFAULT_SIM_MODEL);
  gpuSpec(flags.gpu);
}

const GIB = 1024 ** 3;

/**
 * Llama engines: the GGUF file must exist, and fit in free memory. One copy that does not fit is
 * refused: it could only thrash or be OOM-killed. Copies for several engines that do not fit get a
 * warning only: llama.cpp maps the file, so engines may share its pages, but each adds its own context.
 */
function checkLlamaModel(
  flags: ServeFlags,
  count: number,
  warn: (line: string) => void,
  path: string = flags.model as string,
): void {
  let bytes: number;
  try {
    const stat = statSync(path);
    if (!stat.isFile()) throw new Error('not a file');
    bytes = stat.size;
  } catch {
    throw invalidArgument('model', path, 'a readable GGUF file');
  }
  const free = freemem();
  const gib = (n: number) => `${(n / GIB).toFixed(1)} GiB`;
  if (bytes > free)
    throw new SwitchyardError(
      'SY_ERR_INVALID_ARGUMENT',
      `--model ${path} is ${gib(bytes)} but only ${gib(free)} of memory is free; free some memory or use a smaller (more quantized) model`,
      { param: 'model' },
    );
  if (bytes * count > free)
    warn(
      `switchyard serve: warning: ${count} llama engines x ${gib(bytes)} model = ${gib(bytes * count)}, more than the ${gib(free)} free; each engine loads the model (use --engines 1 or fewer engines)`,
    );
  // Not a GGUF at all: said now, not by each engine (with --min-instances 0, at the first request).
  checkGgufHeader(path);
}

/**
 * Fails with one line when `host:port` cannot be bound (in use, not permitted, a host that is not
 * this machine's or does not resolve): before any engine starts. Port 0 is probed too, for the host.
 */
async function checkPortFree(host: string, port: number): Promise<void> {
  const probe = createServer();
  try {
    await new Promise<void>((resolve, reject) => {
      probe.once('error', reject);
      probe.listen({ host, port, exclusive: true }, () => resolve());
    });
  } catch (error) {
    throw portError(host, port, error as NodeJS.ErrnoException);
  } finally {
    if (probe.listening) await new Promise<void>((resolve) => probe.close(() => resolve()));
  }
}

/** Why the host cannot be listened on, or undefined when the error is about the port. */
function hostProblem(host: string, error: NodeJS.ErrnoException): string | undefined {
  if (error.code === 'EADDRNOTAVAIL')
    return `host ${host} is not an address of this machine (EADDRNOTAVAIL); use 127.0.0.1, 0.0.0.0 or one of its interfaces' addresses (--host or the config's host)`;
  if (error.code === 'ENOTFOUND' || error.code === 'EAI_AGAIN')
    return `host ${host} does not resolve (${error.code}); give an address or a name this machine resolves (--host or the config's host)`;
  return undefined;
}

/** Errors of listen() that serve explains in one line instead of a stack trace. */
function isListenError(error: unknown): error is NodeJS.ErrnoException {
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  return ['EADDRINUSE', 'EACCES', 'EADDRNOTAVAIL', 'ENOTFOUND', 'EAI_AGAIN'].includes(code ?? '');
}

function portError(host: string, port: number, error: NodeJS.ErrnoException): SwitchyardError {
  const hostWhy = hostProblem(host, error);
  if (hostWhy !== undefined)
    return new SwitchyardError('SY_ERR_INVALID_ARGUMENT', hostWhy, { param: 'host' });
  const why =
    error.code === 'EADDRINUSE'
      ? 'is already in use'
      : error.code === 'EACCES'
        ? 'needs privileges'
        : `cannot be bound (${error.code ?? error.message})`;
  return new SwitchyardError(
    'SY_ERR_INVALID_ARGUMENT',
    `port ${port} on ${host} ${why}; pick another with --port (0: any free port)`,
    { param: 'port' },
  );
}

/** The flags that shape local engines, by attribute; `sim` marks those of sim engines alone. */
const LOCAL_ENGINE_FLAGS: readonly { key: keyof ServeFlags; flag: string; sim?: true }[] = [
  { key: 'engines', flag: 'engines' },
  { key: 'engine', flag: 'engine' },
  { key: 'model', flag: 'model' },
  { key: 'servedModelName', flag: 'served-model-name' },
  { key: 'gpu', flag: 'gpu', sim: true },
  { key: 'timeScale', flag: 'time-scale', sim: true },
  { key: 'engineStartTimeoutMs', flag: 'engine-start-timeout-ms' },
];

/**
 * A local-engine flag given where it would do nothing is a usage error, not ignored: with backends in
 * the config no local engine starts, and llama engines model no GPU and run in real time.
 */
function checkLocalEngineFlags(flags: ServeFlags, configuredBackends: boolean): void {
  for (const { key, flag, sim } of LOCAL_ENGINE_FLAGS) {
    if (!flags.given.has(key)) continue;
    if (configuredBackends)
      throw new SwitchyardError(
        'SY_ERR_INVALID_ARGUMENT',
        `--${flag} sets up local engines, but the config names backends and none starts; drop --${flag} or the config's backends`,
        { param: flag },
      );
    if (sim === true && flags.engine !== 'sim')
      throw new SwitchyardError(
        'SY_ERR_INVALID_ARGUMENT',
        `--${flag} applies to sim engines only (--engine sim), not --engine ${flags.engine}`,
        { param: flag },
      );
  }
}

/**
 * Local engines are processes on this machine: at most LOCAL_ENGINES_MAX of a fixed pool, or per
 * model of an autoscaled one (the actuator would spawn up to --max-instances of them under load).
 */
function checkEngineCounts(flags: ServeFlags, autoscale: AutoscaleSettings | undefined): void {
  const [flag, n] =
    autoscale === undefined
      ? ['--engines', engineCount(flags)]
      : [
          flags.maxInstances !== undefined ? '--max-instances' : "the config's autoscaler.maxInstances",
          autoscale.maxInstances,
        ];
  if (n > LOCAL_ENGINES_MAX)
    throw new SwitchyardError(
      'SY_ERR_INVALID_ARGUMENT',
      `${flag} ${n}: expected at most ${LOCAL_ENGINES_MAX} local engines${autoscale === undefined ? '' : ' per model'} (each is a process on this machine)`,
      { param: flag === '--engines' ? 'engines' : 'max-instances' },
    );
}

/** Everything checked before starting anything; returns the config and the engine flags. */
async function prepare(flags: ServeFlags): Promise<{
  config: GatewayConfig;
  args: string[] | undefined;
  autoscale: AutoscaleSettings | undefined;
}> {
  const config = effectiveConfig(flags);
  checkLocalEngineFlags(flags, config.backends.length > 0);
  const autoscale = autoscaleSettings(flags, config, DEFAULT_ENGINES[flags.engine]);
  let args: string[] | undefined;
  if (flags.models.length > 1 && (autoscale === undefined || config.backends.length > 0))
    throw new SwitchyardError(
      'SY_ERR_INVALID_ARGUMENT',
      'several --model need --autoscaler (one pool of local engines per model) and no configured backends',
      { param: 'model' },
    );
  if (config.backends.length === 0) {
    checkEngineCounts(flags, autoscale);
    args = engineArgs(flags);
    const names = new Set<string>();
    for (const spec of flags.models.length > 0 ? flags.models : [{ model: '', served: undefined }]) {
      if (flags.engine === 'sim') checkSimNames({ ...flags, model: spec.model || DEFAULT_SIM_MODEL });
      else
        checkLlamaModel(flags, engineCount(flags), (line) => process.stderr.write(`${line}\n`), spec.model);
      const name = servedNameOf(flags, spec);
      if (names.has(name))
        throw new SwitchyardError(
          'SY_ERR_INVALID_ARGUMENT',
          `two --model serve the name '${name}'; name them NAME=MODEL`,
          {
            param: 'model',
          },
        );
      names.add(name);
    }
  }
  await checkPortFree(config.host, config.port);
  return { config, args, autoscale };
}

/** The autoscaled pool's minimum, started; its backends go into the config (ids engine-0..). */
function startPool(
  flags: ServeFlags,
  settings: AutoscaleSettings,
  config: GatewayConfig,
  signal: AbortSignal,
) {
  const specs = flags.models.length > 0 ? flags.models : [{ model: DEFAULT_SIM_MODEL, served: undefined }];
  return startAutoscaledPool({
    settings,
    engine: flags.engine,
    models: specs.map((spec) => {
      const served = servedNameOf(flags, spec);
      // The name is passed on: the gateway must know it before any engine of a pool at zero runs.
      return {
        served,
        args: engineArgs(flags, { ...spec, served }),
        variant: {
          model: flags.engine === 'sim' ? spec.model || DEFAULT_SIM_MODEL : spec.model,
          gpu: flags.engine === 'sim' ? flags.gpu : 'cpu',
          tp: 1,
          role: 'both' as const,
        },
      };
    }),
    startTimeoutMs: flags.engineStartTimeoutMs,
    objectives: config.slo ?? {},
    backendOf: (id, e, m) => localBackend(flags, id, e, m.variant.model),
    say: (line) => process.stderr.write(`switchyard serve: ${line}\n`),
    signal,
  });
}

async function startEngines(
  flags: ServeFlags,
  args: string[],
  isStopping: () => boolean,
  signal: AbortSignal,
): Promise<LocalEngines> {
  const count = engineCount(flags);
  process.stderr.write(`switchyard serve: starting ${count} local ${flags.engine} engine(s)...\n`);
  return startLocalEngines({
    count,
    engine: flags.engine,
    args,
    signal,
    readyTimeoutMs: flags.engineStartTimeoutMs,
    onReady: (index, engine, elapsedMs) =>
      process.stderr.write(
        `switchyard serve: engine ${index} ready at ${engine.url} (pid ${engine.pid}, ${(elapsedMs / 1000).toFixed(1)} s)\n`,
      ),
    onExit: (index, code, signal) => {
      if (!isStopping())
        process.stderr.write(
          `switchyard serve: engine ${index} exited (${signal ?? `code ${code}`}); the gateway ejects it\n`,
        );
    },
    // A crashed engine comes back on its port; the gateway's health checks re-admit it.
    restart: RESTART_POLICY_DEFAULT,
    onRestart: (index, restarts, delayMs) =>
      process.stderr.write(
        `switchyard serve: restarting engine ${index} in ${(delayMs / 1000).toFixed(1)} s (restart ${restarts} of at most ${RESTART_POLICY_DEFAULT.restartsMax} in ${RESTART_POLICY_DEFAULT.windowMs / 1000} s)\n`,
      ),
    onGiveUp: (index, restarts) =>
      process.stderr.write(
        `switchyard serve: engine ${index} died after ${restarts} restarts in ${RESTART_POLICY_DEFAULT.windowMs / 1000} s; giving up on it (it stays ejected)\n`,
      ),
  });
}

/** A started local engine as a gateway backend. */
function localBackend(
  flags: ServeFlags,
  id: string,
  e: { readonly url: string; readonly model: string; readonly kvEvents: string | null },
  perfModel: string = flags.model ?? DEFAULT_SIM_MODEL,
) {
  return {
    id,
    type: flags.engine,
    url: e.url,
    models: [e.model],
    gpu: flags.engine === 'sim' ? flags.gpu : 'cpu',
    // A sim engine runs a catalogue model whatever name it serves: policies that predict time
    // (goodput, mooncake, preble) get its performance model. A GGUF file has none.
    ...(flags.engine === 'sim' ? { perfModel } : {}),
    ...(e.kvEvents !== null ? { kvEvents: e.kvEvents } : {}),
  };
}

/** The config with the started engines as its backends. */
function withLocalBackends(config: GatewayConfig, flags: ServeFlags, engines: LocalEngines): GatewayConfig {
  return parseGatewayConfig(
    {
      ...config,
      backends: engines.engines.map((e, i) => localBackend(flags, `engine-${i}`, e)),
    },
    {},
  );
}

function printListening(gateway: Gateway, config: GatewayConfig): void {
  const model = config.backends[0]?.models[0] ?? gateway.modelBuffer?.models[0] ?? 'MODEL';
  const auth = config.tenants.length > 0 ? ` -H 'authorization: Bearer <tenant key>'` : '';
  process.stdout.write(
    `switchyard serve: listening on ${gateway.url} (${config.backends.length} backend(s), policy ${gateway.policyName})\n` +
      `  curl ${gateway.url}/v1/chat/completions -H 'content-type: application/json'${auth} \\\n` +
      `    -d '{"model":"${model}","messages":[{"role":"user","content":"Hello!"}],"max_tokens":32}'\n` +
      `  metrics: ${gateway.url}/metrics   ready: ${gateway.url}/ready   Ctrl-C drains and stops\n`,
  );
}

/**
 * Waits for the first signal, then drains: a second signal prints what is still draining, a third
 * ends the drain at once (open streams get an SSE error and `[DONE]` from close()). `announce` (the
 * listening line) runs once the handler is in place.
 */
async function serveUntilStopped(
  gateway: Gateway,
  drainTimeoutMs: number,
  announce: () => void,
): Promise<void> {
  const say = (line: string) => process.stderr.write(`switchyard serve: ${line}\n`);
  let first: (signal: NodeJS.Signals) => void = () => {};
  const firstSignal = new Promise<NodeJS.Signals>((resolve) => {
    first = resolve;
  });
  const unsubscribe = onEverySignal((signal, count) => {
    if (count === 1) return first(signal);
    const d = gateway.drainStatus();
    const what = `${d.inFlight} request(s) (${d.streaming} streaming, ${d.queued} queued)`;
    if (count === 2) say(`${signal}: still draining ${what}; another signal stops them now`);
    else {
      say(`${signal}: stopping now; ending ${what} with an error`);
      gateway.stopDraining();
    }
  });
  // Announced only now: a supervisor that reads the listening line and signals at once must find
  // the drain handler in place, not Node's default (die at once, exit code null, no line said).
  announce();
  try {
    const signal = await firstSignal;
    say(`${signal}: draining ${gateway.stats.inFlight} in-flight request(s) (up to ${drainTimeoutMs} ms)`);
    await gateway.close();
  } finally {
    unsubscribe();
  }
}

/**
 * Until serve listens: the first SIGTERM / SIGINT aborts the start (engines still starting are
 * stopped at once, an engine loading its model included) instead of killing serve with them left to
 * notice; `received` is that signal. Node's default (die at once) would leave no line saying why.
 */
function watchStartup(say: (line: string) => void): {
  readonly signal: AbortSignal;
  received(): NodeJS.Signals | undefined;
  stop(): void;
} {
  const abort = new AbortController();
  let received: NodeJS.Signals | undefined;
  const stop = onEverySignal((signal) => {
    if (received !== undefined) return;
    received = signal;
    say(`${signal} during start-up: stopping the engines started so far`);
    abort.abort();
  });
  return { signal: abort.signal, received: () => received, stop };
}

/** What serve started: the gateway, and the local engines behind it. */
interface Serving {
  readonly config: GatewayConfig;
  readonly gateway: Gateway;
  readonly engines: LocalEngines | undefined;
  readonly pool: AutoscaledPool | undefined;
}

/** Starts the engines, then the gateway; `state.stopping` tells the engines' exits apart from crashes. */
async function startServing(
  flags: ServeFlags,
  prepared: Awaited<ReturnType<typeof prepare>>,
  state: { stopping: boolean },
  signal: AbortSignal,
): Promise<Serving> {
  let config = prepared.config;
  let engines: LocalEngines | undefined;
  let pool: AutoscaledPool | undefined;
  if (prepared.args !== undefined && prepared.autoscale !== undefined) {
    pool = await startPool(flags, prepared.autoscale, config, signal);
    config = parseGatewayConfig({ ...config, backends: pool.backends }, {});
  } else if (prepared.args !== undefined) {
    engines = await startEngines(flags, prepared.args, () => state.stopping, signal);
    config = withLocalBackends(config, flags, engines);
  }
  try {
    const gateway = await startGateway(config, pool?.gatewayOptions ?? {});
    return { config, gateway, engines, pool };
  } catch (error) {
    state.stopping = true;
    await engines?.stop();
    await pool?.close();
    // The port was free when checked; something took it while the engines started.
    if (isListenError(error)) throw portError(config.host, config.port, error);
    throw error;
  }
}

async function runServe(flags: ServeFlags): Promise<void> {
  const say = (line: string) => process.stderr.write(`switchyard serve: ${line}\n`);
  // A rejection nothing handled is logged and serving goes on; an uncaught exception exits 1 (see the module).
  const unwatchErrors = watchProcessErrors(say);
  try {
    await serveWithProcessErrorsWatched(flags, say);
  } finally {
    unwatchErrors();
  }
}

async function serveWithProcessErrorsWatched(flags: ServeFlags, say: (line: string) => void): Promise<void> {
  const prepared = await prepare(flags);
  const state = { stopping: false };
  const startup = watchStartup(say);
  let serving: Serving | undefined;
  try {
    serving = await startServing(flags, prepared, state, startup.signal);
  } catch (error) {
    // A start cut short by the signal: its engines are stopped already.
    if (startup.received() === undefined) throw error;
  } finally {
    startup.stop();
  }
  if (serving === undefined || startup.received() !== undefined) {
    state.stopping = true;
    await serving?.gateway.close();
    await serving?.engines?.stop();
    await serving?.pool?.close();
    say(`stopped (${startup.received()} during start-up)`);
    return;
  }
  const { config, gateway, engines, pool } = serving;
  pool?.attach(gateway);
  const exported =
    pool === undefined && prepared.autoscale !== undefined
      ? attachExportOnly(gateway, prepared.autoscale, (line) =>
          process.stderr.write(`switchyard serve: ${line}\n`),
        )
      : undefined;
  try {
    await serveUntilStopped(gateway, config.drainTimeoutMs, () => printListening(gateway, config));
  } finally {
    state.stopping = true;
    exported?.stop();
    await engines?.stop();
    await pool?.close();
  }
  process.stderr.write('switchyard serve: stopped\n');
}

/** Registers `switchyard serve`. */
export function registerServeCommand(program: Command): void {
  program
    .command('serve')
    .description(
      'Run the live gateway: an OpenAI-compatible front door (/v1/chat/completions, /v1/completions, /v1/responses, ' +
        '/v1/embeddings, /v1/models) that routes through the same policies as the twin, with admission, ' +
        'retries, health checks, /metrics, /ready and an admin API. Backends come from --config; without ' +
        'any it starts --engines local engines. See docs/gateway.md.',
    )
    .option('--port <port>', 'port to listen on (0: any free port; default 8080 or the config)', tcpPort)
    .option(
      '--host <host>',
      'interface to listen on (default 127.0.0.1 or the config)',
      CONFIG_FLAG_PARSERS.host,
    )
    .option(
      '--engines <n>',
      `local engines to start when the config names no backends (default ${DEFAULT_ENGINES.sim} sim, ${DEFAULT_ENGINES.llama} llama; at most ${LOCAL_ENGINES_MAX})`,
      positiveInt,
    )
    .addOption(new Option('--engine <kind>', 'local engine kind').choices(['sim', 'llama']).default('sim'))
    .option(
      '--model <[name=]id|path>',
      `local engines' model (sim: a catalogue id, default ${DEFAULT_SIM_MODEL}; llama: a GGUF path), optionally served as NAME; repeat it with --autoscaler for one pool per model`,
      (value: string, previous: string[] | undefined) => [...(previous ?? []), value],
    )
    .option(
      '--served-model-name <name>',
      'local engines: the model name requests use (e.g. meta-llama/Llama-3.1-8B-Instruct; default --model, a GGUF file its base name)',
    )
    .option('--gpu <id>', 'GPU the local sim engines model', 'h100')
    .option(
      '--time-scale <x>',
      'local sim engines: wall time per modelled time (default 1, as modelled; 0.1: ten times faster)',
      (value: string) => {
        // Checked here, before any engine starts; the engines get the text as typed.
        positiveNumber(value);
        return value;
      },
    )
    .addOption(
      new Option(
        '--policy <name>',
        `routing policy (default: kv-events with KV events, else prefix-affinity); one of ${routingPolicyNames().join(', ')} or a name from the config`,
      ),
    )
    .option('--config <file>', 'gateway config (YAML)')
    .option(
      '--admin-key <key>',
      "enable /admin/* with this bearer key (8 to 1024 characters; default: the config's adminKey, else /admin/* stays closed)",
      CONFIG_FLAG_PARSERS['admin-key'],
    )
    .option(
      '--allowed-origins <list>',
      'CORS: origins a browser page may call from, as vLLM takes it (a JSON list, \'["https://app.example"]\') or comma-separated; default ["*"] or the config\'s cors block (docs/gateway.md)',
      CONFIG_FLAG_PARSERS['allowed-origins'],
    )
    .option(
      '--allowed-methods <list>',
      'CORS: methods a preflight may ask for (JSON list or comma-separated; default ["*"] or the config\'s cors block)',
      CONFIG_FLAG_PARSERS['allowed-methods'],
    )
    .option(
      '--allowed-headers <list>',
      'CORS: request headers a preflight may ask for (JSON list or comma-separated; default ["*"] or the config\'s cors block)',
      CONFIG_FLAG_PARSERS['allowed-headers'],
    )
    .option('--allow-credentials', 'CORS: answer Access-Control-Allow-Credentials: true (default off)')
    .option(
      '--scrape-interval-ms <ms>',
      "time between scrapes of each engine's /metrics, also each scrape's deadline up to 1 s (default 75 or the config)",
      CONFIG_FLAG_PARSERS['scrape-interval-ms'],
    )
    .option(
      '--engine-start-timeout-ms <ms>',
      'longest wait for a local engine to start',
      positiveInt,
      READY_TIMEOUT_MS_DEFAULT,
    )
    .option(
      '--autoscaler <name>',
      `size the local engine pool with a control loop (with configured backends: only export switchyard_desired_replicas): ${autoscalerNames().join(', ')}; parameters in the config's autoscaler block (docs/autoscaling.md). Default: none, a fixed set of --engines`,
    )
    .option(
      '--min-instances <n>',
      "autoscaler: engines always running per model (default 1; 0: a model's engines start on its first request and stop after --keep-alive-ms without one)",
      CONFIG_FLAG_PARSERS['min-instances'],
    )
    .option(
      '--max-instances <n>',
      `autoscaler: most engines at once per model (default 4 sim, 1 llama; at most ${LOCAL_ENGINES_MAX} local engines)`,
      positiveInt,
    )
    .option(
      '--autoscaler-interval-ms <ms>',
      'autoscaler: time between decisions (default 2000)',
      CONFIG_FLAG_PARSERS['autoscaler-interval-ms'],
    )
    .option(
      '--keep-alive-ms <ms>',
      "with --min-instances 0: how long a model's engines stay up after its last request (default 300000; a request's keep_alive overrides it)",
      CONFIG_FLAG_PARSERS['keep-alive-ms'],
    )
    .option(
      '--max-loaded-models <n>',
      'with --min-instances 0: most models with an engine up at once; a request for another stops an idle one (--eviction) or waits until one is idle (default: no cap)',
      CONFIG_FLAG_PARSERS['max-loaded-models'],
    )
    .addOption(
      new Option(
        '--eviction <policy>',
        'which idle model --max-loaded-models stops: lru (least recently used) or cost-aware (least start-up time x recent request rate) (default lru)',
      ).choices(EVICTION_POLICIES),
    )
    .option(
      '--standby-engines <n>',
      'llama with --autoscaler: standby engines (node-llama-cpp loaded, no model) a cold start is handed to; 0: spawn fresh (default 1 with --min-instances 0, else 0)',
      CONFIG_FLAG_PARSERS['standby-engines'],
    )
    .option(
      '--warm-cache-mb <mb>',
      "llama with --autoscaler: MiB of stopped models' GGUF files kept in the page cache (default with --min-instances 0: a quarter of MemAvailable, at most 16 GiB; 0: off)",
      CONFIG_FLAG_PARSERS['warm-cache-mb'],
    )
    .option(
      '--standby-reserve-mib <mib>',
      "llama with standby engines: MiB each standby engine touches while it waits and frees just before its context is created, so the KV cache's first touch reuses pages the machine has just had in use (worth it on VMs that back memory lazily; size it to the largest model's KV cache). auto: sized so, from the models' GGUFs (largest KV cache at the engines' default context + 64 MiB). Resident while the engine waits (default 0: none)",
      CONFIG_FLAG_PARSERS['standby-reserve-mib'],
    )
    .option(
      '--prewarm',
      "with --min-instances 0: start a model ahead of a request forecast from its past arrivals to come within its start-up (the twin's switchyard serverless rule)",
    )
    .option(
      '--sleep',
      "with --min-instances 0: past the keep-alive an idle engine sleeps (vLLM's POST /sleep?level=1) instead of stopping, and the model's next request wakes it (a sim engine: ~1 s modelled; llama: a model reload from the page cache), not a start; the twin's --no-sleep is its opposite",
    )
    .option(
      '--max-sleepers <n>',
      'with --sleep: most engines asleep on this node (default 8)',
      CONFIG_FLAG_PARSERS['max-sleepers'],
    )
    .option(
      '--max-sleepers-per-model <n>',
      'with --sleep: most engines asleep per model (default 1)',
      CONFIG_FLAG_PARSERS['max-sleepers-per-model'],
    )
    .option(
      '--sleep-max-ms <ms>',
      "with --sleep: an engine asleep this long is stopped (default 60000, the twin's loneSleepMaxMs)",
      CONFIG_FLAG_PARSERS['sleep-max-ms'],
    )
    .option(
      '--boot-sleep',
      "with --sleep: boot the models into sleep at start-up (each model's engine starts, in the twin's name-hash order within the sleeper bounds and --max-loaded-models, and is put to sleep before any request, so a first request is a wake; requests waiting go first). Off by default: in the twin, over 8 seeds, it made the p99 after the first 10 min worse and most boots went unused",
    )
    .option(
      '--retarget',
      "with --sleep: a model whose requests wait for a fresh start takes another model's asleep engine of the same shape instead (llama: the same GGUF shape; sim: the same catalogue shapes and GPU), if that model holds no request: its weights are swapped in place (POST /update_weights_from_disk, then /wake_up; same process), the twin's sim --retarget; a swap that fails stops that engine and the model starts afresh. Off by default; counted in switchyard_retargets_total{model,from}",
    )
    .addHelpText(
      'after',
      '\nExample (autoscaled sim engines, gauges switchyard_desired_replicas and switchyard_replicas on /metrics):\n' +
        '  switchyard serve --autoscaler kpa --min-instances 1 --max-instances 4 --autoscaler-interval-ms 1000\n' +
        'Two llama models at zero engines, each started on its first request and stopped after 60 s idle:\n' +
        '  switchyard serve --engine llama --model a=a.gguf --model b=b.gguf --autoscaler kpa --min-instances 0 --keep-alive-ms 60000\n' +
        'Three models, at most two loaded; a request for the third stops the idle one cheapest to reload:\n' +
        '  switchyard serve --model a=llama-3.1-8b --model b=qwen2.5-7b --model c=llama-2-7b --autoscaler static --min-instances 0 --max-loaded-models 2 --eviction cost-aware\n',
    )
    .action(async (flags: RawServeFlags, command: Command) => {
      const given = Object.keys(flags).filter((key) => command.getOptionValueSource(key) === 'cli');
      await runServe(serveFlags(flags, new Set(given)));
    });
}
