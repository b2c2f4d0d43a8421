import type { Command } from 'commander';

/** Registers `switchyard serve` (being built; see issue 4). */
export function registerServeCommand(program: Command): void {
  program.command('serve').description('(not yet available)');
}
