/**
 * End-to-end: warm starts from zero with real processes. `switchyard serve` fronts two llama models
 * at zero engines with one standby engine (`--standby-engines 1`) and a warm cache. The standby
 * process comes up before any request; the first request to `a` is handed to it (its start-up line
 * carries `standbyS`, /stats counts a standby cold start and no fresh one) and answered; the pool
 * tops itself back up; `keep_alive: 0` stops `a`'s engine and its GGUF goes into the warm cache;
 * three requests to `b` arriving together are all answered by the next standby engine. Deadlines
 * here only guard against hangs.
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { after, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { ensureTinyLlamaGguf, TINY_LLAMA_DEFAULT_PATH } from '../../src/engine-servers/llama/tiny-gguf.ts';
import { runCli } from './support/cli.ts';
import { startServe } from './support/serve.ts';
import { killAll, until } from './support/wait.ts';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
/** Guard against a hang, not a performance bound. */
const HANG_GUARD_MS = 60_000;
const waitFor = (what: string, check: () => Promise<boolean> | boolean): Promise<void> =>
  until(what, check, HANG_GUARD_MS, 25);

const children: ChildProcess[] = [];
after(() => killAll(children));

async function chat(url: string, model: string, extra: Record<string, unknown> = {}) {
  const res = await fetch(`${url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model, messages: [{ role: 'user', content: 'hi' }], max_tokens: 4, ...extra }),
  });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

interface WarmStats {
  standby: { size: number; idle: number; starting: number; handed: number; spawnFailures: number };
  coldStarts: { standby: number; fresh: number };
  warmCache: { budgetBytes: number; keptBytes: number; kept: string[]; warms: number };
}

async function warmStats(url: string): Promise<WarmStats> {
  return ((await (await fetch(`${url}/stats`)).json()) as { warmStart: WarmStats }).warmStart;
}

it('hands cold starts to a standby llama engine, tops the pool up, and warms a stopped model', async () => {
  const tiny = ensureTinyLlamaGguf(join(ROOT, TINY_LLAMA_DEFAULT_PATH));
  const { url, stderr, stop } = await startServe(
    [
      '--engine',
      'llama',
      '--model',
      `a=${tiny}`,
      '--model',
      `b=${tiny}`,
      '--autoscaler',
      'static',
      '--min-instances',
      '0',
      '--max-instances',
      '1',
      '--keep-alive-ms',
      '60000',
      '--standby-engines',
      '1',
      '--warm-cache-mb',
      '64',
      '--prewarm',
    ],
    children,
  );
  const startupLines = () => stderr.filter((l) => l.includes('{"event":"startup"'));

  // The standby engine comes up with no request and no model.
  await waitFor('a standby engine waiting', async () => (await warmStats(url)).standby.idle === 1);
  const rest = await warmStats(url);
  assert.deepEqual(rest.coldStarts, { standby: 0, fresh: 0 });
  assert.equal(rest.warmCache.budgetBytes, 64 * 2 ** 20);
  // --prewarm is on; two cold starts are far from the history a forecast needs (4 gaps).
  const prewarms = async () =>
    ((await (await fetch(`${url}/stats`)).json()) as { prewarms: unknown }).prewarms;
  assert.deepEqual(await prewarms(), { a: 0, b: 0 });

  // Cold start of a: handed to the standby engine, answered.
  const first = await chat(url, 'a', { keep_alive: 0 });
  assert.equal(first.status, 200, JSON.stringify(first.body));
  assert.equal(first.body['model'], 'a');
  const afterA = await warmStats(url);
  assert.deepEqual(afterA.coldStarts, { standby: 1, fresh: 0 });
  assert.equal(afterA.standby.handed, 1);
  assert.ok(
    stderr.some((l) => /a: .*handed to standby engine/.test(l) || /handed to standby engine/.test(l)),
  );
  // The engine's own start-up line says it started as a standby engine (its figures count from the model).
  await waitFor('the start-up line', () => startupLines().length === 1);
  assert.match(startupLines()[0] as string, /"standbyS":/);

  // keep_alive 0: a's engine stops and its GGUF is kept warm; the pool is topped back up.
  await waitFor('a stopped', () => stderr.some((l) => l.includes('a: engine 0 stopped')));
  await waitFor('a warmed', async () => (await warmStats(url)).warmCache.warms === 1);
  assert.deepEqual((await warmStats(url)).warmCache.kept, [tiny]);
  await waitFor('the pool topped up', async () => (await warmStats(url)).standby.idle === 1);

  // Three requests to b together: one cold start, handed to the new standby engine; all answered.
  const bs = await Promise.all([chat(url, 'b'), chat(url, 'b'), chat(url, 'b')]);
  assert.deepEqual(
    bs.map((r) => r.status),
    [200, 200, 200],
  );
  const end = await warmStats(url);
  assert.deepEqual(end.coldStarts, { standby: 2, fresh: 0 });
  assert.equal(end.standby.spawnFailures, 0);
  // b is loaded now: its file leaves the warm set (the same file as a's here).
  assert.deepEqual(end.warmCache.kept, []);
  await waitFor('the second start-up line', () => startupLines().length === 2);
  assert.match(startupLines()[1] as string, /"standbyS":/);
  assert.deepEqual(await prewarms(), { a: 0, b: 0 });

  assert.equal(await stop(), 0);
});

it('refuses warm-start flags for sim engines, without an autoscaler, and pre-warming with a minimum', async () => {
  const cases: [string[], RegExp][] = [
    [
      ['--autoscaler', 'static', '--min-instances', '0', '--standby-engines', '1'],
      /--standby-engines applies to --engine llama only/,
    ],
    [['--warm-cache-mb', '64'], /--warm-cache-mb needs --autoscaler/],
    [
      ['--autoscaler', 'static', '--min-instances', '1', '--prewarm'],
      /--prewarm applies to --min-instances 0 only/,
    ],
  ];
  const runs = await Promise.all(
    cases.map(([args]) => runCli(['serve', '--port', '0', ...args], HANG_GUARD_MS)),
  );
  for (const [k, run] of runs.entries()) {
    assert.equal(run.code, 2, run.stderr);
    assert.match(run.stderr, (cases[k] as [string[], RegExp])[1]);
  }
});
