/**
 * End-to-end: scale to zero with real processes. `switchyard serve` fronts two llama models at zero
 * engines (`--min-instances 0`): `tiny` (the tiny random-weight GGUF) and `broken` (that file cut
 * short: its header passes, its tensors do not load). /v1/models lists both before any engine runs. The first request to
 * `tiny` starts its engine and is answered; requests arriving while it starts are held and all
 * answered; a later request is warm (not held); after the keep-alive (the last request's
 * `keep_alive: 0`) the engine stops, and the next request starts it again. Requests to `broken` get
 * 503 SY_ERR_COLD_START_FAILED naming the model when its engine fails to start. The gateway's
 * counters show every held request accounted for. Deadlines here only guard against hangs.
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { ensureTinyLlamaGguf, TINY_LLAMA_DEFAULT_PATH } from '../../src/engine-servers/llama/tiny-gguf.ts';
import { runCli } from './support/cli.ts';
import { startServe } from './support/serve.ts';
import { killAll, scrapeMetrics, until } from './support/wait.ts';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
/** Guard against a hang, not a performance bound. */
const HANG_GUARD_MS = 60_000;
const waitFor = (what: string, check: () => Promise<boolean> | boolean): Promise<void> =>
  until(what, check, HANG_GUARD_MS, 25);

const dir = mkdtempSync(join(tmpdir(), 'sy-zero-'));
const children: ChildProcess[] = [];
after(async () => {
  await killAll(children);
  rmSync(dir, { recursive: true, force: true });
});

interface Answer {
  readonly status: number;
  readonly body: Record<string, unknown>;
  readonly retryAfter: string | null;
}

async function chat(url: string, model: string, extra: Record<string, unknown> = {}): Promise<Answer> {
  const res = await fetch(`${url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({
      model,
      messages: [{ role: 'user', content: 'say something' }],
      max_tokens: 4,
      ...extra,
    }),
  });
  return {
    status: res.status,
    body: (await res.json()) as Record<string, unknown>,
    retryAfter: res.headers.get('retry-after'),
  };
}

interface ScaleStats {
  held: number;
  released: number;
  overflowed: number;
  expired: number;
  failed: number;
  abandoned: number;
}

async function stats(url: string): Promise<Record<string, unknown> & { scaleFromZero: ScaleStats }> {
  return (await (await fetch(`${url}/stats`)).json()) as Record<string, unknown> & {
    scaleFromZero: ScaleStats;
  };
}

const replicas = (m: Map<string, number>, model: string, phase: string) =>
  m.get(`switchyard_replicas{model="${model}",role="both",phase="${phase}"}`);

it('starts a model on its first request, holds what arrives meanwhile, stops it after the keep-alive, and fails the requests of an engine that cannot start', async () => {
  const tiny = ensureTinyLlamaGguf(join(ROOT, TINY_LLAMA_DEFAULT_PATH));
  // The tiny model cut short: its header passes serve's check, llama.cpp refuses its tensors, and
  // the engine exits 2 before it is ready. (A file with no valid header is refused by serve itself.)
  const broken = join(dir, 'broken.gguf');
  writeFileSync(broken, readFileSync(tiny).subarray(0, 300_000));

  const { url, stderr, stop } = await startServe(
    [
      '--engine',
      'llama',
      '--model',
      `tiny=${tiny}`,
      '--model',
      `broken=${broken}`,
      '--autoscaler',
      'static',
      '--min-instances',
      '0',
      '--max-instances',
      '1',
      '--autoscaler-interval-ms',
      '200',
      '--keep-alive-ms',
      '60000',
    ],
    children,
  );
  const lines = (text: string) => stderr.filter((l) => l.includes(text)).length;

  // At rest: both models servable, no engine at all.
  const models = (await (await fetch(`${url}/v1/models`)).json()) as { data: { id: string }[] };
  assert.deepEqual(
    models.data.map((m) => m.id),
    ['broken', 'tiny'],
  );
  assert.equal((await fetch(`${url}/ready`)).status, 200, 'a model at zero is not a reason to be unready');
  const rest = await scrapeMetrics(url);
  assert.equal(replicas(rest, 'tiny', 'ready'), 0);
  assert.equal(replicas(rest, 'tiny', 'starting'), 0);
  assert.equal(lines('starting engine'), 0);

  // A bad keep_alive is refused before anything starts.
  const bad = await chat(url, 'tiny', { keep_alive: 'forever' });
  assert.equal(bad.status, 400);
  assert.equal((bad.body['error'] as Record<string, unknown>)['param'], 'keep_alive');
  assert.equal(lines('starting engine'), 0);

  // Cold: the first request wakes the model; three more arrive while its engine starts.
  const first = chat(url, 'tiny');
  await waitFor('the engine starting', () => lines('tiny: starting engine 0') === 1);
  const during = [chat(url, 'tiny'), chat(url, 'tiny'), chat(url, 'tiny')];
  await waitFor('four requests held', async () => (await stats(url)).scaleFromZero.held === 4);
  assert.equal(lines('tiny: engine 0 ready'), 0, 'all four arrived before the engine was ready');
  const cold = await Promise.all([first, ...during]);
  assert.deepEqual(
    cold.map((a) => a.status),
    [200, 200, 200, 200],
  );
  for (const a of cold) assert.equal(a.body['model'], 'tiny');
  assert.equal((await stats(url)).scaleFromZero.released, 4);

  // Warm: answered without being held, no second engine; keep_alive 0 unloads right after it.
  const warm = await chat(url, 'tiny', { keep_alive: 0 });
  assert.equal(warm.status, 200);
  assert.equal((await stats(url)).scaleFromZero.held, 4);
  assert.equal(lines('tiny: starting engine'), 1);
  await waitFor('the engine stopped after its keep-alive', () => lines('tiny: engine 0 stopped') === 1);
  assert.ok(
    stderr.some((l) => /tiny: autoscaler static: 1 -> 0 replicas: keep-alive: .* >= 0 ms/.test(l)),
    stderr.join('\n'),
  );
  const idle = await scrapeMetrics(url);
  assert.equal(replicas(idle, 'tiny', 'ready'), 0);
  assert.equal(idle.get('switchyard_desired_replicas{model="tiny",role="both"}'), 0);

  // From zero again: the next request starts a fresh engine.
  const again = await chat(url, 'tiny');
  assert.equal(again.status, 200);
  assert.equal(lines('tiny: starting engine 0'), 2);

  // An engine that cannot start: its held requests get a clear error, none is left waiting.
  const failing = await Promise.all([chat(url, 'broken'), chat(url, 'broken')]);
  for (const a of failing) {
    assert.equal(a.status, 503);
    const error = a.body['error'] as Record<string, unknown>;
    assert.equal(error['code'], 'SY_ERR_COLD_START_FAILED');
    assert.match(String(error['message']), /model 'broken' failed to start/);
    assert.ok(Number(a.retryAfter) > 0, 'Retry-After');
  }
  const m = await scrapeMetrics(url);
  assert.equal(m.get('switchyard_autoscaler_start_failures_total{model="broken",role="both"}'), 1);
  assert.equal(m.get('switchyard_autoscaler_start_failures_total{model="tiny",role="both"}'), 0);

  // Nothing lost: every held request left the buffer one way or another.
  const s = await stats(url);
  const z = s.scaleFromZero;
  assert.equal(z.held, z.released + z.failed + z.expired + z.abandoned);
  assert.equal(z.released, 5, 'four cold, one from zero again (the warm one was never held)');
  assert.equal(z.failed, 2);
  // A held request is accepted when held: the two whose engine failed to start count as failed.
  assert.equal(s['accepted'], 8);
  assert.equal(s['completed'], 6);
  assert.deepEqual(s['failed'], { cold_start_failed: 2 });
  assert.equal(s['inFlight'], 0);
  assert.equal(s['queued'], 0);

  assert.equal(await stop(), 0);
});

it('refuses scale-to-zero flags that cannot mean anything, before any engine starts', async () => {
  const tiny = join(ROOT, TINY_LLAMA_DEFAULT_PATH);
  const cases: [string[], RegExp][] = [
    [['--model', 'a=llama-3.1-8b', '--model', 'b=qwen2.5-7b'], /several --model need --autoscaler/],
    [
      ['--autoscaler', 'static', '--min-instances', '1', '--keep-alive-ms', '1000'],
      /--keep-alive-ms applies to --min-instances 0/,
    ],
    [
      [
        '--engine',
        'llama',
        '--model',
        tiny,
        '--model',
        tiny,
        '--autoscaler',
        'static',
        '--min-instances',
        '0',
      ],
      /two --model serve the name 'tiny-llama'/,
    ],
  ];
  const runs = await Promise.all(
    cases.map(([args]) => runCli(['serve', '--port', '0', ...args], HANG_GUARD_MS)),
  );
  for (const [k, run] of runs.entries()) {
    assert.equal(run.code, 2, run.stderr);
    assert.match(run.stderr, (cases[k] as [string[], RegExp])[1]);
    assert.equal(run.stdout, '', 'nothing listened');
  }
});
