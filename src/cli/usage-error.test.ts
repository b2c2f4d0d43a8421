import assert from 'node:assert/strict';
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

  it('a flag given without its value', async () => {
    const r = await run(['sim', '--autoscaler']);
    assert.equal(r.code, USAGE_EXIT_CODE);
    assert.match(
      r.stderr,
      /^switchyard: option '--autoscaler <name>' argument missing \(run with --help for usage\) \[SY_ERR_INVALID_ARGUMENT\]\n$/,
    );
  });
});
