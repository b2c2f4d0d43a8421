/**
 * `switchyard serve`'s local-engine flags given where they would do nothing are usage errors naming
 * the flag: with backends in the config no local engine starts (`--engines 2` was ignored and serve
 * fronted the config's backends), and `--gpu` and `--time-scale` shape sim engines only (a llama
 * engine ignored them). Runs the CLI in this process; the config's host does not resolve, so a run
 * that got past the check stops there instead of serving.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { runCliInProcess } from './cli-test-support.ts';
import { USAGE_EXIT_CODE } from './main.ts';

const dir = mkdtempSync(join(tmpdir(), 'sy-serve-local-flags-'));
after(() => rmSync(dir, { recursive: true, force: true }));
/** One configured backend; `.invalid` never resolves (RFC 2606). */
const WITH_BACKENDS = join(dir, 'backends.yaml');
writeFileSync(
  WITH_BACKENDS,
  'host: no-such-host.invalid\nport: 0\nbackends:\n  - { id: a, url: "http://127.0.0.1:9", type: vllm, models: [m] }\n',
);

async function assertUsage(args: readonly string[], message: RegExp): Promise<void> {
  const run = await runCliInProcess(['serve', ...args]);
  assert.equal(run.code, USAGE_EXIT_CODE, run.stderr);
  assert.match(run.stderr, message);
  assert.doesNotMatch(run.stderr, /does not resolve/);
}

describe('serve: local-engine flags that would do nothing', () => {
  it('with backends in the config, each local-engine flag given', async () => {
    for (const [flag, value] of [
      ['engines', '2'],
      ['engine', 'sim'],
      ['model', 'llama-3.1-8b'],
      ['served-model-name', 'x'],
      ['gpu', 'h100'],
      ['time-scale', '2'],
      ['engine-start-timeout-ms', '1000'],
    ])
      await assertUsage(
        ['--config', WITH_BACKENDS, `--${flag}`, value as string],
        new RegExp(
          `^switchyard: --${flag} sets up local engines, but the config names backends and none starts`,
        ),
      );
  });

  it('--gpu and --time-scale with --engine llama', async () => {
    for (const [flag, value] of [
      ['gpu', 'h200'],
      ['time-scale', '2'],
    ])
      await assertUsage(
        ['--engine', 'llama', '--model', join(dir, 'none.gguf'), `--${flag}`, value as string],
        new RegExp(
          `^switchyard: --${flag} applies to sim engines only \\(--engine sim\\), not --engine llama`,
        ),
      );
  });

  it("commander's defaults are not flags given: the config's backends alone reach the host check", async () => {
    const run = await runCliInProcess(['serve', '--config', WITH_BACKENDS]);
    assert.equal(run.code, USAGE_EXIT_CODE, run.stderr);
    assert.match(run.stderr, /host no-such-host\.invalid does not resolve/);
  });
});
