/**
 * `switchyard serve`: the live gateway. Backends come from `--config` (YAML); with none configured it
 * starts `--engines` built-in engines as child processes and fronts them. SIGTERM / SIGINT drain
 * (ready and new requests answer 503, in-flight requests finish, bounded by drainTimeoutMs), stop the
 * local engines and exit 0.
 */
import { type Command, Option } from 'commander';
import { type LocalEngines, startLocalEngines } from '../adapters/local-engines.ts';
import { untilSignal } from '../adapters/process-signals.ts';
import { SwitchyardError } from '../core/errors.ts';
import { type GatewayConfig, loadGatewayConfig, parseGatewayConfig } from '../gateway/config.ts';
import { startGateway } from '../gateway/gateway.ts';
import { createConfiguredPolicy, routingPolicyNames } from '../policies/routing/registry.ts';
import { nonNegativeInt, positiveInt } from './parse.ts';

/** Flags of `switchyard serve`. */
interface ServeFlags {
  readonly port?: number;
  readonly host?: string;
  readonly engines: number;
  readonly engine: 'sim' | 'llama';
  readonly model?: string;
  readonly servedModelName?: string;
  readonly gpu: string;
  readonly policy?: string;
  readonly config?: string;
  readonly adminKey?: string;
  readonly timeScale?: string;
}

/** The default model of local sim engines. */
const DEFAULT_SIM_MODEL = 'llama-3.1-8b';

/** The config after flags: flags beat the file. */
function effectiveConfig(flags: ServeFlags): GatewayConfig {
  const base = flags.config !== undefined ? loadGatewayConfig(flags.config) : parseGatewayConfig({});
  const overrides: Record<string, unknown> = {};
  if (flags.port !== undefined) overrides['port'] = flags.port;
  if (flags.host !== undefined) overrides['host'] = flags.host;
  if (flags.adminKey !== undefined) overrides['adminKey'] = flags.adminKey;
  if (flags.policy !== undefined)
    overrides['routing'] = { policy: flags.policy, policies: base.routing?.policies ?? {} };
  const config = parseGatewayConfig({ ...base, ...overrides }, {});
  // Fail on a bad policy name before any engine starts.
  if (config.routing !== undefined) createConfiguredPolicy(config.routing.policy, config.routing.policies);
  return config;
}

function engineArgs(flags: ServeFlags): string[] {
  if (flags.engine === 'llama') {
    if (flags.model === undefined)
      throw new SwitchyardError(
        'SY_ERR_INVALID_ARGUMENT',
        '--engine llama needs --model <path to a GGUF file>',
        {
          param: 'model',
        },
      );
    if (flags.servedModelName !== undefined)
      throw new SwitchyardError('SY_ERR_INVALID_ARGUMENT', '--served-model-name is for --engine sim only', {
        param: 'served-model-name',
      });
    return ['--model', flags.model];
  }
  const args = ['--gpu', flags.gpu, '--model', flags.model ?? DEFAULT_SIM_MODEL];
  if (flags.servedModelName !== undefined) args.push('--served-model-name', flags.servedModelName);
  if (flags.timeScale !== undefined) args.push('--time-scale', flags.timeScale);
  return args;
}

async function runServe(flags: ServeFlags): Promise<void> {
  let config = effectiveConfig(flags);
  let engines: LocalEngines | undefined;
  let stopping = false;
  if (config.backends.length === 0) {
    process.stderr.write(`switchyard serve: starting ${flags.engines} local ${flags.engine} engine(s)...\n`);
    engines = await startLocalEngines({
      count: flags.engines,
      engine: flags.engine,
      args: engineArgs(flags),
      onExit: (index, code, signal) => {
        if (!stopping)
          process.stderr.write(
            `switchyard serve: engine ${index} exited (${signal ?? `code ${code}`}); the gateway ejects it\n`,
          );
      },
    });
    config = parseGatewayConfig(
      {
        ...config,
        backends: engines.engines.map((e, i) => ({
          id: `engine-${i}`,
          type: flags.engine,
          url: e.url,
          models: [e.model],
          gpu: flags.engine === 'sim' ? flags.gpu : 'cpu',
          // A sim engine runs a catalogue model whatever name it serves: policies that predict time
          // (goodput, mooncake, preble) get its performance model. A GGUF file has none.
          ...(flags.engine === 'sim' ? { perfModel: flags.model ?? DEFAULT_SIM_MODEL } : {}),
          ...(e.kvEvents !== null ? { kvEvents: e.kvEvents } : {}),
        })),
      },
      {},
    );
  }
  let gateway: Awaited<ReturnType<typeof startGateway>>;
  try {
    gateway = await startGateway(config);
  } catch (error) {
    await engines?.stop();
    throw error;
  }
  const model = config.backends[0]?.models[0] ?? 'MODEL';
  const auth = config.tenants.length > 0 ? ` -H 'authorization: Bearer <tenant key>'` : '';
  process.stdout.write(
    `switchyard serve: listening on ${gateway.url} (${config.backends.length} backend(s), policy ${gateway.policyName})\n` +
      `  curl ${gateway.url}/v1/chat/completions -H 'content-type: application/json'${auth} \\\n` +
      `    -d '{"model":"${model}","messages":[{"role":"user","content":"Hello!"}],"max_tokens":32}'\n` +
      `  metrics: ${gateway.url}/metrics   ready: ${gateway.url}/ready   Ctrl-C drains and stops\n`,
  );
  const signal = await untilSignal();
  stopping = true;
  process.stderr.write(
    `switchyard serve: ${signal}: draining ${gateway.stats.inFlight} in-flight request(s) (up to ${config.drainTimeoutMs} ms)\n`,
  );
  await gateway.close();
  await engines?.stop();
  process.stderr.write('switchyard serve: stopped\n');
}

/** Registers `switchyard serve`. */
export function registerServeCommand(program: Command): void {
  program
    .command('serve')
    .description(
      'Run the live gateway: an OpenAI-compatible front door (/v1/chat/completions, /v1/completions, ' +
        '/v1/embeddings, /v1/models) that routes through the same policies as the twin, with admission, ' +
        'retries, health checks, /metrics, /ready and an admin API. Backends come from --config; without ' +
        'any it starts --engines local engines. See docs/gateway.md.',
    )
    .option(
      '--port <port>',
      'port to listen on (0: any free port; default 8080 or the config)',
      nonNegativeInt,
    )
    .option('--host <host>', 'interface to listen on (default 127.0.0.1 or the config)')
    .option('--engines <n>', 'local engines to start when the config names no backends', positiveInt, 4)
    .addOption(new Option('--engine <kind>', 'local engine kind').choices(['sim', 'llama']).default('sim'))
    .option(
      '--model <id|path>',
      `local engines' model (sim: a catalogue id, default ${DEFAULT_SIM_MODEL}; llama: a GGUF path)`,
    )
    .option(
      '--served-model-name <name>',
      'local sim engines: the model name requests use (e.g. meta-llama/Llama-3.1-8B-Instruct; default --model)',
    )
    .option('--gpu <id>', 'GPU the local sim engines model', 'h100')
    .option('--time-scale <x>', 'local sim engines: wall time per modelled time')
    .addOption(
      new Option(
        '--policy <name>',
        `routing policy (default: kv-events with KV events, else prefix-affinity); one of ${routingPolicyNames().join(', ')} or a name from the config`,
      ),
    )
    .option('--config <file>', 'gateway config (YAML)')
    .option('--admin-key <key>', 'enable /admin/* with this bearer key')
    .action(async (flags: ServeFlags) => {
      await runServe(flags);
    });
}
