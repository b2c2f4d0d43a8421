import { Command, CommanderError } from 'commander';
import { SwitchyardError } from '../core/errors.ts';
import { registerBenchCommand } from './bench-command.ts';
import { registerDemoCommand } from './demo-command.ts';
import { registerEngineCommand } from './engine-command.ts';
import { registerFidelityCommand } from './fidelity.ts';
import { helpConfiguration } from './help.ts';
import { registerPlanGpusCommand } from './plan-gpus-command.ts';
import { registerServeCommand } from './serve-command.ts';
import { registerSimCommand } from './sim-command.ts';

/** Exit code of a usage error (a bad flag, a bad config): the same in every command. */
export const USAGE_EXIT_CODE = 2;

/** Builds the `switchyard` program. Exported for tests. */
export function buildProgram(): Command {
  const program = new Command('switchyard')
    .description(
      'Switchyard runs LLM serving clusters. The twin (`sim`) replays traces on a modelled cluster with ' +
        'the same policies the live gateway runs.',
    )
    // Before any subcommand is added: subcommands copy the help configuration when created.
    .configureHelp(helpConfiguration())
    .version('0.1.0')
    .showHelpAfterError('(run with --help for usage)')
    .exitOverride();
  registerSimCommand(program);
  registerDemoCommand(program);
  registerServeCommand(program);
  registerEngineCommand(program);
  registerBenchCommand(program);
  registerFidelityCommand(program);
  registerPlanGpusCommand(program);
  return program;
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
  const program = buildProgram();
  try {
    await program.parseAsync([...argv]);
    return 0;
  } catch (error) {
    // Commander exits 1 for every usage error (unknown option or command, bad or missing value) and 0
    // after --help or --version: usage errors exit USAGE_EXIT_CODE in every command, as our own do.
    if (error instanceof CommanderError) return error.exitCode === 1 ? USAGE_EXIT_CODE : error.exitCode;
    if (error instanceof SwitchyardError) {
      process.stderr.write(`switchyard: ${error.message} [${error.code}]\n`);
      return USAGE_EXIT_CODE;
    }
    throw error;
  }
}
