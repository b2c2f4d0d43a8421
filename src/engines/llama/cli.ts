import type { Command } from 'commander';

/** Registers `switchyard engine llama` under the `engine` command (being built; see issue 4). */
export function registerLlamaEngineCommand(engine: Command): void {
  engine.command('llama').description('(not yet available)');
}
