/**
 * `switchyard engine llama`'s P/D defaults: the prefill KV release timeout is the one shared default
 * of the sim engine and the twin (src/model/kv-release.ts), so a llama pair, a sim pair and a twin
 * run free a never-read KV at the same moment unless told otherwise. `--kv-reserve-mib` (the state
 * buffer a P/D engine reserves at start, src/engine-servers/llama/pd.ts) takes auto or whole MiB.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Command } from 'commander';
import { STATE_BUFFERS_KEPT_BYTES_MAX } from '../engine-servers/llama/defaults.ts';
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

describe('engine llama --kv-reserve-mib', () => {
  it('defaults to auto, takes whole MiB in 0..256, and refuses anything else naming both forms', () => {
    const llama = llamaCommand();
    const option = llama.options.find((o) => o.long === '--kv-reserve-mib');
    assert.equal(option?.defaultValue, 'auto');
    const parse = option?.parseArg as (value: string, previous: unknown) => unknown;
    assert.equal(parse('auto', undefined), 'auto');
    assert.equal(parse('0', undefined), 0);
    assert.equal(parse(String(STATE_BUFFERS_KEPT_BYTES_MAX >> 20), undefined), 256);
    for (const bad of ['257', '-1', '1.5', 'lots', ''])
      assert.throws(() => parse(bad, undefined), /neither auto nor a whole number of MiB in 0\.\.256/);
  });
});
