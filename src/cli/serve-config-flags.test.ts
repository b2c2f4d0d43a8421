/**
 * `switchyard serve`'s flags that override a gateway config field are checked at the flag, against
 * that field's schema: a value the config file would be refused for is a usage error naming the
 * flag, before any config is read. One case per family of flags. Runs the CLI in this process.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { runCliInProcess } from './cli-test-support.ts';
import { USAGE_EXIT_CODE } from './main.ts';

/**
 * A config file that does not exist: a flag that got through would make the run stop there (a
 * config error), never start engines; the errors below must come first.
 */
const MISSING_CONFIG = join('/nonexistent', 'serve-config-flags.yaml');

/** `switchyard serve --config MISSING_CONFIG ...args` in this process. */
function serve(args: readonly string[]): Promise<{ code: number; stderr: string }> {
  return runCliInProcess(['serve', '--config', MISSING_CONFIG, ...args]);
}

/** A usage error for `flag` with `value`, its problem matching `problem`, nothing read. */
async function assertRefused(args: readonly string[], flag: string, value: string, problem: RegExp) {
  const run = await serve(args);
  assert.equal(run.code, USAGE_EXIT_CODE, run.stderr);
  const quoted = value.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  assert.match(run.stderr, new RegExp(`option '--${flag} <[a-z]+>' argument '${quoted}' is invalid\\. `));
  assert.match(run.stderr, problem);
  assert.doesNotMatch(run.stderr, /gateway config|config file|serve-config-flags\.yaml/, 'no config read');
}

describe('serve: config fields set by flags are checked at the flag', () => {
  it('--host: the listen address may not be empty', async () => {
    await assertRefused(['--host', ''], 'host', '', /Too small: expected string to have >=1 characters/);
  });

  it('--admin-key: too short, named without echoing the key', async () => {
    const run = await serve(['--admin-key', 'short']);
    assert.equal(run.code, USAGE_EXIT_CODE, run.stderr);
    assert.equal(
      run.stderr,
      'switchyard: --admin-key: Too small: expected string to have >=8 characters [SY_ERR_INVALID_ARGUMENT]\n',
    );
  });

  it("--scrape-interval-ms: within the schema's 10..60000", async () => {
    await assertRefused(
      ['--scrape-interval-ms', '1'],
      'scrape-interval-ms',
      '1',
      /Too small: expected number to be >=10/,
    );
    await assertRefused(
      ['--scrape-interval-ms', '60001'],
      'scrape-interval-ms',
      '60001',
      /Too big: expected number to be <=60000/,
    );
  });

  it("CORS lists: the schema's bounds on a list and on each entry", async () => {
    const many = Array.from({ length: 257 }, (_, i) => `https://o${i}.example`).join(',');
    await assertRefused(['--allowed-origins', many], 'allowed-origins', many, /Too big: .*<=256 items/);
    const long = `X-${'a'.repeat(2048)}`;
    await assertRefused(
      ['--allowed-headers', `Authorization,${long}`],
      'allowed-headers',
      `Authorization,${long}`,
      /item 1: Too big: expected string to have <=2048 characters/,
    );
  });

  it("autoscaler flags: the config's autoscaler block bounds", async () => {
    for (const [flag, value, problem] of [
      ['autoscaler-interval-ms', '5', /Too small: expected number to be >=10/],
      ['min-instances', '257', /Too big: expected number to be <=256/],
      ['keep-alive-ms', '604800001', /Too big: expected number to be <=604800000/],
      ['max-loaded-models', '257', /Too big: expected number to be <=256/],
      ['standby-engines', '9', /Too big: expected number to be <=8/],
      ['warm-cache-mb', '1048577', /Too big: expected number to be <=1048576/],
      ['standby-reserve-mib', '65537', /Too big: expected number to be <=65536/],
      ['standby-reserve-mib', 'big', /'big' is neither auto nor a non-negative integer/],
    ] as const)
      await assertRefused(['--autoscaler', 'kpa', `--${flag}`, value], flag, value, problem);
  });

  it("sleep flags: the config's autoscaler.sleep bounds", async () => {
    for (const [flag, value, problem] of [
      ['max-sleepers', '257', /Too big: expected number to be <=256/],
      ['max-sleepers-per-model', '257', /Too big: expected number to be <=256/],
      ['sleep-max-ms', '604800001', /Too big: expected number to be <=604800000/],
    ] as const)
      await assertRefused(['--sleep', `--${flag}`, value], flag, value, problem);
  });

  it('a value the schema takes goes on to the config (here: the missing file is the error)', async () => {
    const run = await serve([
      '--scrape-interval-ms',
      '10',
      '--admin-key',
      'long-enough',
      '--host',
      'localhost',
    ]);
    assert.equal(run.code, USAGE_EXIT_CODE, run.stderr);
    assert.match(run.stderr, /serve-config-flags\.yaml/);
  });
});
