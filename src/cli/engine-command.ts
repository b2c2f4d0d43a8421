import type { Command } from 'commander';

/** Registers `switchyard engine` (being built; see issue 4). */
export function registerEngineCommand(program: Command): void {
  program.command('engine').description('(not yet available)');
}
