import { Command, CommanderError } from 'commander';
import { SwitchyardError } from '../core/errors.ts';
import { SWITCHYARD_VERSION } from '../gateway/version.ts';
import { helpConfiguration } from './help.ts';
import { commanderUsageLine, QUIET_COMMANDER_ERRORS } from './usage-error.ts';

/** Exit code of a usage error (a bad flag, a bad config): the same in every command. */
export const USAGE_EXIT_CODE = 2;

/** Adds one subcommand to the program. */
type RegisterCommand = (program: Command) => void;

/** A subcommand: how to load it, and its line in the top-level help. */
interface CommandEntry {
  /** Imports the command's module; resolves to the function that adds the command. */
  load: () => Promise<RegisterCommand>;
  /**
   * Its term and description in the list of commands, as commander's help writes them from the real
   * command (`help.subcommandTerm`, `help.subcommandDescription`): the top-level help and an unknown
   * command's error list the commands from these alone. main.test.ts holds them to the real ones.
   */
  term: string;
  summary: string;
}

/**
 * Each subcommand's module, in `--help` order, imported only when the program needs it. A command
 * runs with its own module alone: every engine child of `serve` starts through this CLI, and loading
 * the twin, the gateway and the benches it never uses cost an engine start 0.3-0.4 s (measured with
 * the llama engine's start-up stages, docs/serverless.md). The top-level help loads none: importing
 * them all was about three quarters of its CPU time (bench/cli-startup.ts, docs/benchmarks.md).
 */
const COMMANDS: ReadonlyMap<string, CommandEntry> = new Map([
  [
    'sim',
    {
      load: async () => (await import('./sim-command.ts')).registerSimCommand,
      term: 'sim [options]',
      summary:
        'Run the twin: replay a trace or a generated workload on a modelled cluster and report latencies, ' +
        'SLO attainment, throughput and prefix-cache hits.',
    },
  ],
  [
    'demo',
    {
      load: async () => (await import('./demo-command.ts')).registerDemoCommand,
      term: 'demo [options]',
      summary:
        'Twin demo: replay a bundled trace slice under several routing policies on the same cluster and seed, ' +
        'then print a comparison table.',
    },
  ],
  [
    'serve',
    {
      load: async () => (await import('./serve-command.ts')).registerServeCommand,
      term: 'serve [options]',
      summary:
        'Run the live gateway: an OpenAI-compatible front door (/v1/chat/completions, /v1/completions, ' +
        '/v1/responses, /v1/embeddings, /v1/models) that routes through the same policies as the twin, ' +
        'with admission, retries, health checks, /metrics, /ready and an admin API.',
    },
  ],
  [
    'engine',
    {
      load: async () => (await import('./engine-command.ts')).registerEngineCommand,
      term: 'engine',
      summary:
        'Run a built-in engine server: the OpenAI API (/v1/chat/completions, /v1/completions, /v1/responses, ' +
        '/v1/embeddings, /v1/models), /health, /metrics under vLLM metric names, vLLM-format KV events over ' +
        "ZMQ, and SGLang's POST /update_weights_from_disk (another checkpoint of the same shape, loaded in place).",
    },
  ],
  [
    'bench',
    {
      load: async () => (await import('./bench-command.ts')).registerBenchCommand,
      term: 'bench [options]',
      summary:
        'Load-test an OpenAI-compatible server, open loop: requests go out at their scheduled times ' +
        '(Poisson/Gamma arrivals, a replayed trace, or any twin workload from a file) whether or not earlier ' +
        'ones have answered, and the report gives TTFT, ITL, TPOT and E2E percentiles, throughput, failures ' +
        'by reason and goodput.',
    },
  ],
  [
    'fidelity',
    {
      load: async () => (await import('./fidelity.ts')).registerFidelityCommand,
      term: 'fidelity [options] <files...>',
      summary: 'Replay published measurements of real engines in the twin: measured against predicted',
    },
  ],
  [
    'plan-gpus',
    {
      load: async () => (await import('./plan-gpus-command.ts')).registerPlanGpusCommand,
      term: 'plan-gpus [options]',
      summary: 'Choose the cheapest mix of GPU types and TP degrees that serves a workload within its SLO',
    },
  ],
]);

/** The names of the subcommands, in `--help` order. Exported for tests. */
export const COMMAND_NAMES: readonly string[] = [...COMMANDS.keys()];

/** The listing program's stand-in for command `name`, when it is asked to run it (`main` loads it). */
class CommandNotLoaded extends Error {
  constructor(readonly command: string) {
    super(`command ${command} is not loaded`);
  }
}

/** The program without subcommands: description, version, help layout, examples. */
function rootProgram(): Command {
  return (
    new Command('switchyard')
      .description(
        'Switchyard runs LLM serving clusters. The twin (`sim`) replays traces on a modelled cluster with ' +
          'the same policies the live gateway runs.',
      )
      // Before any subcommand is added: subcommands copy the help configuration when created.
      .configureHelp(helpConfiguration())
      // The one version: package.json's, as GET /version on the gateway and engines answers it.
      .version(SWITCHYARD_VERSION)
      // Commander prints nothing on a usage error: main prints it as one catalogue line (usage-error.ts).
      .configureOutput(QUIET_COMMANDER_ERRORS)
      .addHelpText(
        'after',
        '\nExamples:\n' +
          '  switchyard serve   (npm start: the gateway on http://127.0.0.1:8080 in front of four sim engines)\n' +
          '  switchyard sim --trace sample:mooncake-conversation --instances 8 --policy least-request\n' +
          '  switchyard bench --url http://127.0.0.1:8080 --rate 20 --requests 400\n' +
          "Each command's --help lists its flags with their defaults, and examples; README.md and docs/ explain more.",
      )
      .exitOverride()
  );
}

/**
 * Builds the `switchyard` program: with `only`, just that subcommand (enough to run it and print
 * its own help); with `only` null, none (enough for `--version`); otherwise all of them. Exported
 * for tests.
 */
export async function buildProgram(only?: string | null): Promise<Command> {
  const program = rootProgram();
  const entries = only === undefined ? [...COMMANDS.values()] : only === null ? [] : [COMMANDS.get(only)];
  for (const entry of entries) if (entry !== undefined) (await entry.load())(program);
  return program;
}

/**
 * The program whose subcommands are stand-ins made from COMMANDS' terms and summaries, loading no
 * command's module: enough for the top-level help and for an unknown command's error (its "Did you
 * mean" needs only the names). Commander running a stand-in throws CommandNotLoaded, and `main`
 * runs the line again with the real command. Exported for tests.
 */
export function buildListingProgram(): Command {
  const program = rootProgram();
  const terms = new Map([...COMMANDS].map(([name, entry]) => [name, entry.term]));
  const base = program.createHelp();
  // The real command's term ("fidelity [options] <files...>") comes from its options and arguments,
  // which a stand-in does not have.
  program.configureHelp({
    ...program.configureHelp(),
    subcommandTerm: (cmd) => terms.get(cmd.name()) ?? base.subcommandTerm(cmd),
  });
  for (const [name, entry] of COMMANDS) program.command(name).summary(entry.summary);
  program.hook('preSubcommand', (_program, command) => {
    throw new CommandNotLoaded(command.name());
  });
  return program;
}

/**
 * Flags commander answers as soon as it meets them, before any subcommand: first on the line, the
 * rest of it is never read, so no command's module is needed. Loading them all was five sixths of
 * `--version`'s CPU time (1.27 s against 0.21 s, `node -e 0` 0.13 s; bench/cli-startup.ts).
 */
const PROGRAM_ONLY_FLAGS: ReadonlySet<string> = new Set(['--version', '-V']);

/**
 * The subcommand `argv` (node, script, args...) names, when its first argument is one (or is
 * `help` and its second one); null when its first argument needs no command (`--version`);
 * otherwise undefined (the listing program: the top-level help, an unknown command).
 */
function commandOf(argv: readonly string[]): string | null | undefined {
  const first = argv[2];
  if (first === undefined) return undefined;
  if (PROGRAM_ONLY_FLAGS.has(first)) return null;
  // `help sim` prints the help of the real `sim`: commander shows it without running any hook.
  const named = first === 'help' ? argv[3] : first;
  return named !== undefined && COMMANDS.has(named) ? named : undefined;
}

/**
 * A reader that stops early (`switchyard sim ... | head`) closes the pipe under us: stop quietly
 * with status 0, as `--help | head` should, instead of dying on an unhandled EPIPE with a stack.
 */
let quietOnClosedStdout = false;
function exitQuietlyWhenStdoutCloses(): void {
  // A flag, not the listener count: a loader (tsx) may have its own listener on stdout.
  if (quietOnClosedStdout) return;
  quietOnClosedStdout = true;
  process.stdout.on('error', (error: NodeJS.ErrnoException) => {
    if (error.code === 'EPIPE') process.exit(0);
    throw error;
  });
}

/** Runs the CLI; returns the exit code. Handled errors print one line, never a stack trace. */
export async function main(argv: readonly string[]): Promise<number> {
  exitQuietlyWhenStdoutCloses();
  const command = commandOf(argv);
  try {
    try {
      await (command === undefined ? buildListingProgram() : await buildProgram(command)).parseAsync([
        ...argv,
      ]);
    } catch (error) {
      // A line whose command commandOf did not see (`switchyard -- sim`): again with that command.
      if (!(error instanceof CommandNotLoaded)) throw error;
      await (await buildProgram(error.command)).parseAsync([...argv]);
    }
    return 0;
  } catch (error) {
    // Commander exits 1 for every usage error (unknown option or command, bad or missing value) and 0
    // after --help or --version: usage errors exit USAGE_EXIT_CODE in every command, as our own do.
    if (error instanceof CommanderError) {
      if (error.exitCode !== 1) return error.exitCode;
      const line = commanderUsageLine(error);
      if (line !== undefined) process.stderr.write(line);
      return USAGE_EXIT_CODE;
    }
    if (error instanceof SwitchyardError) {
      process.stderr.write(`switchyard: ${error.message} [${error.code}]\n`);
      return USAGE_EXIT_CODE;
    }
    throw error;
  }
}
