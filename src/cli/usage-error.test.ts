import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { main, USAGE_EXIT_CODE } from './main.ts';

/**
 * Runs `switchyard ...args` in this process; returns its exit code and what it wrote to stderr.
 * Only usage errors: stdout is the test runner's, so nothing here may print help there.
 */
async function run(args: string[]): Promise<{ code: number; stderr: string }> {
  let stderr = '';
  const err = process.stderr.write.bind(process.stderr);
  process.stderr.write = ((chunk: string | Uint8Array) => {
    stderr += String(chunk);
    return true;
  }) as typeof process.stderr.write;
  try {
    const code = await main(['node', 'switchyard', ...args]);
    return { code, stderr };
  } finally {
    process.stderr.write = err;
  }
}

describe("commander's usage errors print one line with a catalogue code", () => {
  it("a value a flag's parser refuses", async () => {
    const r = await run(['sim', '--workload', 'sinusoid', '--rate-min', '-1', '--rate-max', '4']);
    assert.equal(r.code, USAGE_EXIT_CODE);
    assert.match(
      r.stderr,
      /^switchyard: option '--rate-min <req\/s>' argument '-1' is invalid\. '-1' is not a non-negative number\. \(run with --help for usage\) \[SY_ERR_INVALID_ARGUMENT\]\n$/,
    );
  });

  it('an unknown option, its suggestion on the same line; an unknown command', async () => {
    const option = await run(['sim', '--rat', '5']);
    assert.equal(option.code, USAGE_EXIT_CODE);
    assert.match(
      option.stderr,
      /^switchyard: unknown option '--rat' \(Did you mean --rate\?\) \(run with --help for usage\) \[SY_ERR_UNKNOWN_NAME\]\n$/,
    );
    const command = await run(['bogus']);
    assert.equal(command.code, USAGE_EXIT_CODE);
    assert.match(command.stderr, /^switchyard: unknown command 'bogus'.*\[SY_ERR_UNKNOWN_NAME\]\n$/);
  });

  it('a name outside a known set is SY_ERR_UNKNOWN_NAME whichever check refuses it', async () => {
    // A catalogue flag's parser: the catalogue's own code, the flag named, the code not doubled.
    const model = await run(['sim', '--model', 'no-such-model']);
    assert.equal(model.code, USAGE_EXIT_CODE);
    assert.match(
      model.stderr,
      /^switchyard: option '--model <id>' argument 'no-such-model' is invalid\. unknown model 'no-such-model'.* \(run with --help for usage\) \[SY_ERR_UNKNOWN_NAME\]\n$/,
    );
    assert.equal(model.stderr.match(/SY_ERR_/g)?.length, 1, model.stderr);
    // A registry parser (--autoscaler) and commander's own choices (--workload).
    const autoscaler = await run(['sim', '--autoscaler', 'nope']);
    assert.match(autoscaler.stderr, /^switchyard: .*'nope' is not an autoscaler.*\[SY_ERR_UNKNOWN_NAME\]\n$/);
    const workload = await run(['sim', '--workload', 'nope']);
    assert.match(workload.stderr, /^switchyard: .*Allowed choices are .*\[SY_ERR_UNKNOWN_NAME\]\n$/);
    // The same mistake found after parsing prints the same code.
    const policy = await run(['sim', '--policy', 'nope']);
    assert.match(policy.stderr, /\[SY_ERR_UNKNOWN_NAME\]\n$/);
    // A value that is not a name stays a bad value.
    const twice = await run(['sim', '--autoscaler', 'kpa,kpa']);
    assert.match(twice.stderr, /names an autoscaler twice.*\[SY_ERR_INVALID_ARGUMENT\]\n$/);
  });

  it("the same parser on a config file's field names the field, and prints its line", async () => {
    const dir = mkdtempSync(join(tmpdir(), 'usage-error-'));
    try {
      const config = join(dir, 'sim.yaml');
      writeFileSync(config, 'autoscaler:\n  name: nope\n');
      const r = await run([
        'sim',
        '--config',
        config,
        '--workload',
        'sinusoid',
        '--rate-min',
        '1',
        '--rate-max',
        '2',
        '--period-s',
        '60',
        '--duration',
        '60',
      ]);
      assert.equal(r.code, USAGE_EXIT_CODE);
      assert.match(
        r.stderr,
        /^switchyard: config autoscaler\.name: 'nope' is not an autoscaler; .*\[SY_ERR_UNKNOWN_NAME\]\n$/,
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a mistyped flag beside a required one names the typo, not the required flag', async () => {
    // plan-gpus requires --model and --rate; '--modle' read as "--model not specified" before.
    const typo = await run(['plan-gpus', '--modle', 'llama-3.1-8b', '--rate', '2']);
    assert.equal(typo.code, USAGE_EXIT_CODE);
    assert.match(
      typo.stderr,
      /^switchyard: unknown option '--modle' \(Did you mean --model\?\) \(run with --help for usage\) \[SY_ERR_UNKNOWN_NAME\]\n$/,
    );
    // A required flag left out, with no typo, is still named.
    const missing = await run(['plan-gpus', '--model', 'llama-3.1-8b']);
    assert.equal(missing.code, USAGE_EXIT_CODE);
    assert.match(
      missing.stderr,
      /^switchyard: required option '--rate <rps>' not specified \(run with --help for usage\) \[SY_ERR_INVALID_ARGUMENT\]\n$/,
    );
  });

  it('a flag given without its value', async () => {
    const r = await run(['sim', '--autoscaler']);
    assert.equal(r.code, USAGE_EXIT_CODE);
    assert.match(
      r.stderr,
      /^switchyard: option '--autoscaler <name>' argument missing \(run with --help for usage\) \[SY_ERR_INVALID_ARGUMENT\]\n$/,
    );
  });
});
