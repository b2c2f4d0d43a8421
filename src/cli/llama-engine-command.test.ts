/**
 * `switchyard engine llama`'s P/D defaults: the prefill KV release timeout is the one shared default
 * of the sim engine and the twin (src/model/kv-release.ts), so a llama pair, a sim pair and a twin
 * run free a never-read KV at the same moment unless told otherwise.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Command } from 'commander';
import { PD_KV_RELEASE_TIMEOUT_MS_DEFAULT } from '../model/kv-release.ts';
import { registerLlamaEngineCommand } from './llama-engine-command.ts';

function llamaCommand(): Command {
  const engine = new Command('engine');
  registerLlamaEngineCommand(engine);
  const llama = engine.commands.find((c) => c.name() === 'llama');
  assert.ok(llama);
  return llama;
}

describe('engine llama --kv-release-timeout-ms', () => {
  it('defaults to the shared prefill KV release timeout, and --help says so', () => {
    const llama = llamaCommand();
    const option = llama.options.find((o) => o.long === '--kv-release-timeout-ms');
    assert.equal(option?.defaultValue, PD_KV_RELEASE_TIMEOUT_MS_DEFAULT);
    assert.match(llama.helpInformation(), new RegExp(`\\(default: ${PD_KV_RELEASE_TIMEOUT_MS_DEFAULT}\\)`));
  });
});
