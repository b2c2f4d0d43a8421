/**
 * `switchyard serve` start-up errors an operator meets first, each as one line and exit 2 before
 * any engine starts, with real processes: a host that is not this machine's or does not resolve
 * (with --port 0 the probe was skipped, the engines started, and the gateway's listen() crashed
 * with a stack trace), a llama model file that is no GGUF (with the model at zero engines it was
 * found only at its first request), and autoscaler bounds from the config that contradict each
 * other (the line named flags nobody gave), and a flag value only the config schema checks (the line
 * named the config field), and more local engines than the bound (the count was checked only after
 * its start line, an autoscaled pool's --max-instances never). Deadlines here only guard against hangs.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { type CliRun, runCli } from './support/cli.ts';

const dir = mkdtempSync(join(tmpdir(), 'sy-serve-usage-'));
after(() => rmSync(dir, { recursive: true, force: true }));

/** One `switchyard:` line naming the code, exit 2, no engine started, no stack trace. */
function assertUsageLine(run: CliRun, pattern: RegExp): void {
  assert.equal(run.code, 2, run.stderr);
  assert.match(run.stderr, pattern);
  assert.match(run.stderr, /\[SY_ERR_INVALID_ARGUMENT\]\n$/);
  assert.doesNotMatch(run.stderr, /starting \d+ local|engine 0|\n\s+at /, 'nothing started, no stack');
}

describe('serve refuses at start-up', () => {
  it('a --host that is not an address of this machine, with --port 0', async () => {
    // 192.0.2.1 is TEST-NET-1 (RFC 5737): documentation only, never a machine's address.
    const run = await runCli(['serve', '--port', '0', '--host', '192.0.2.1', '--engines', '1'], 30_000);
    assertUsageLine(
      run,
      /^switchyard: host 192\.0\.2\.1 is not an address of this machine \(EADDRNOTAVAIL\)/,
    );
  });

  it("a config's host that does not resolve", async () => {
    const config = join(dir, 'host.yaml');
    // .invalid never resolves (RFC 2606).
    writeFileSync(config, 'port: 0\nhost: no-such-host.invalid\n');
    const run = await runCli(['serve', '--config', config, '--engines', '1'], 30_000);
    assertUsageLine(run, /^switchyard: host no-such-host\.invalid does not resolve/);
  });

  it('a llama --model that is no GGUF file, even with the model at zero engines', async () => {
    const model = join(dir, 'notes.gguf');
    writeFileSync(model, 'not a model\n');
    const run = await runCli(
      [
        'serve',
        '--port',
        '0',
        '--engine',
        'llama',
        '--model',
        `m=${model}`,
        '--autoscaler',
        'static',
        '--min-instances',
        '0',
      ],
      30_000,
    );
    assertUsageLine(
      run,
      /^switchyard: invalid model '.*notes\.gguf': expected a GGUF model file \(no GGUF header\)/,
    );
  });

  it('a flag value the config schema refuses, named as the flag (and a key never echoed)', async () => {
    // Checked at the flag against the field's schema (src/cli/serve-config-flags.ts), first bad flag first.
    const scrape = await runCli(
      ['serve', '--port', '0', '--scrape-interval-ms', '1', '--admin-key', 'short'],
      30_000,
    );
    assertUsageLine(
      scrape,
      /^switchyard: option '--scrape-interval-ms <ms>' argument '1' is invalid\. Too small: expected number to be >=10 /,
    );
    const key = await runCli(['serve', '--port', '0', '--admin-key', 'short'], 30_000);
    assertUsageLine(key, /^switchyard: --admin-key: Too small: expected string to have >=8 characters/);
    for (const run of [scrape, key]) {
      assert.doesNotMatch(run.stderr, /short|scrapeIntervalMs|adminKey|starting \d+ local|\n\s+at /);
    }
  });

  it('more local engines than the bound, fixed or autoscaled, which --help states', async () => {
    const help = await runCli(['serve', '--help'], 30_000);
    assert.equal(help.code, 0, help.stderr);
    const flat = help.stdout.replace(/\s+/g, ' ');
    assert.match(flat, /--engines <n> [^()]*\([^)]*; at most 256\)/);
    assert.match(flat, /--max-instances <n> [^()]*\([^)]*; at most 256 local engines\)/);
    const fixed = await runCli(['serve', '--port', '0', '--engines', '300'], 30_000);
    assertUsageLine(fixed, /^switchyard: --engines 300: expected at most 256 local engines/);
    // The actuator would have spawned up to 100,000 engine processes under load.
    const pooled = await runCli(
      ['serve', '--port', '0', '--autoscaler', 'kpa', '--max-instances', '100000'],
      30_000,
    );
    assertUsageLine(
      pooled,
      /^switchyard: --max-instances 100000: expected at most 256 local engines per model/,
    );
  });

  it("the config's autoscaler bounds the wrong way round, naming them as the config does", async () => {
    const config = join(dir, 'bounds.yaml');
    writeFileSync(config, 'port: 0\nautoscaler: { name: kpa, minInstances: 3, maxInstances: 2 }\n');
    const run = await runCli(['serve', '--config', config], 30_000);
    assertUsageLine(
      run,
      /^switchyard: the config's autoscaler\.maxInstances 2 is below the config's autoscaler\.minInstances 3/,
    );
  });
});
