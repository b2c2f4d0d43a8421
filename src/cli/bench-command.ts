import type { Command } from 'commander';

/** Registers `switchyard bench` (being built; see issue 4). */
export function registerBenchCommand(program: Command): void {
  program.command('bench').description('(not yet available)');
}
