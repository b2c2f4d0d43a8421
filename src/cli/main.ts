import { Command, CommanderError } from 'commander';
import { SwitchyardError } from '../core/errors.ts';
import { SWITCHYARD_VERSION } from '../gateway/version.ts';
import { helpConfiguration } from './help.ts';
import { commanderUsageLine, QUIET_COMMANDER_ERRORS } from './usage-error.ts';

/** Exit code of a usage error (a bad flag, a bad config): the same in every command. */
export const USAGE_EXIT_CODE = 2;

/** Adds one subcommand to the program. */
type RegisterCommand = (program: Command) => void;

/**
 * Each subcommand's module, in `--help` order, imported only when the program needs it. A command
 * runs with its own module alone: every engine child of `serve` starts through this CLI, and loading
 * the twin, the gateway and the benches it never uses cost an engine start 0.3-0.4 s (measured with
 * the llama engine's start-up stages, docs/serverless.md).
 */
const COMMANDS: ReadonlyMap<string, () => Promise<RegisterCommand>> = new Map([
  ['sim', async () => (await import('./sim-command.ts')).registerSimCommand],
  ['demo', async () => (await import('./demo-command.ts')).registerDemoCommand],
  ['serve', async () => (await import('./serve-command.ts')).registerServeCommand],
  ['engine', async () => (await import('./engine-command.ts')).registerEngineCommand],
  ['bench', async () => (await import('./bench-command.ts')).registerBenchCommand],
  ['fidelity', async () => (await import('./fidelity.ts')).registerFidelityCommand],
  ['plan-gpus', async () => (await import('./plan-gpus-command.ts')).registerPlanGpusCommand],
]);

/**
 * Builds the `switchyard` program: with `only`, just that subcommand (enough to run it and print
 * its own help); with `only` null, none (enough for `--version`); otherwise all of them (top-level
 * help, an unknown command). Exported for tests.
 */
export async function buildProgram(only?: string | null): Promise<Command> {
  const program = new Command('switchyard')
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
    .exitOverride();
  const loaders = only === undefined ? [...COMMANDS.values()] : only === null ? [] : [COMMANDS.get(only)];
  for (const load of loaders) if (load !== undefined) (await load())(program);
  return program;
}

/**
 * Flags commander answers as soon as it meets them, before any subcommand: first on the line, the
 * rest of it is never read, so no command's module is needed. Loading them all was five sixths of
 * `--version`'s CPU time (1.27 s against 0.21 s, `node -e 0` 0.13 s; bench/cli-startup.ts).
 */
const PROGRAM_ONLY_FLAGS: ReadonlySet<string> = new Set(['--version', '-V']);

/**
 * The subcommand `argv` (node, script, args...) names, when its first argument is one; null when
 * its first argument needs no command (`--version`); otherwise undefined (all of them).
 */
function commandOf(argv: readonly string[]): string | null | undefined {
  const first = argv[2];
  if (first === undefined) return undefined;
  if (PROGRAM_ONLY_FLAGS.has(first)) return null;
  return COMMANDS.has(first) ? first : undefined;
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
  const program = await buildProgram(commandOf(argv));
  try {
    await program.parseAsync([...argv]);
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
