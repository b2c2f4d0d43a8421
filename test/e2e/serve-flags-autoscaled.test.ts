/**
 * Flags of `switchyard serve` that an autoscaled pool must honour as a fixed pool does, with real
 * processes: `--served-model-name` names the pool's engines (it was dropped with `--autoscaler`,
 * so requests had to use the catalogue id), and a bad `--time-scale` is a usage error before any
 * engine starts (it was found only by each engine child), as is `--model NAME=` with no model (it
 * served the default model under NAME). Deadlines here only guard against hangs.
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { after, describe, it } from 'node:test';
import { runCli } from './support/cli.ts';
import { chatStatus, startServe } from './support/serve.ts';

const children: ChildProcess[] = [];
after(() => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
});

describe('serve --autoscaler with one model', () => {
  it('serves the model under --served-model-name', async () => {
    const name = 'meta-llama/Llama-3.1-8B-Instruct';
    const serve = await startServe(
      [
        '--autoscaler',
        'static',
        '--min-instances',
        '1',
        '--max-instances',
        '1',
        '--served-model-name',
        name,
        '--time-scale',
        '0.05',
      ],
      children,
    );
    const models = (await (await fetch(`${serve.url}/v1/models`)).json()) as { data: { id: string }[] };
    assert.deepEqual(
      models.data.map((m) => m.id),
      [name],
    );
    assert.equal(await chatStatus(serve.url, name), 200);
    assert.equal(await serve.stop(), 0);
  });

  it('refuses a bad --time-scale before starting any engine', async () => {
    const run = await runCli(
      ['serve', '--port', '0', '--time-scale', 'abc', '--autoscaler', 'static'],
      30_000,
    );
    assert.equal(run.code, 2);
    assert.match(run.stderr, /--time-scale <x>' argument 'abc' is invalid/);
    assert.doesNotMatch(run.stderr, /engine 0/, 'no engine was started');
  });

  it('refuses --model NAME= with no model (it served the default model under NAME)', async () => {
    const run = await runCli(['serve', '--port', '0', '--model', 'a=', '--autoscaler', 'static'], 30_000);
    assert.equal(run.code, 2);
    assert.match(run.stderr, /invalid model 'a='.*a model after the =.*\[SY_ERR_INVALID_ARGUMENT\]/);
  });
});
