/**
 * End-to-end: a cap on loaded models, with real processes. `switchyard serve` fronts three sim models
 * at zero engines with `--max-loaded-models 2`. LRU: requests to a, then b, then c; c's start evicts
 * a (the least recently used, idle), and a request to a then evicts b. Cost-aware: a is asked for
 * many times, b once, then c evicts b (little start-up x rate) where LRU would have evicted a. Every
 * request is answered; /stats and /metrics name what was evicted and why. Deadlines here only guard
 * against hangs.
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { after, describe, it } from 'node:test';
import { runCli } from './support/cli.ts';
import { type ServeProcess, startServe } from './support/serve.ts';
import { killAll, scrapeMetrics, until } from './support/wait.ts';

/** Guard against a hang, not a performance bound. */
const HANG_GUARD_MS = 60_000;
const waitFor = (what: string, check: () => Promise<boolean> | boolean): Promise<void> =>
  until(what, check, HANG_GUARD_MS, 25);

const children: ChildProcess[] = [];
after(() => killAll(children));

/** `switchyard serve` with sim models a, b, c at zero, at most two loaded. */
function serve(extra: readonly string[], timeScale = '0.01'): Promise<ServeProcess> {
  return startServe(
    [
      '--time-scale',
      timeScale,
      ...['a', 'b', 'c'].flatMap((m) => ['--model', `${m}=llama-3.1-8b`]),
      '--autoscaler',
      'static',
      '--min-instances',
      '0',
      '--max-instances',
      '1',
      '--autoscaler-interval-ms',
      '200',
      '--keep-alive-ms',
      '600000',
      '--max-loaded-models',
      '2',
      ...extra,
    ],
    children,
  );
}

async function chat(url: string, model: string, maxTokens = 4, signal?: AbortSignal): Promise<number> {
  const res = await fetch(`${url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model, messages: [{ role: 'user', content: 'hello' }], max_tokens: maxTokens }),
    ...(signal === undefined ? {} : { signal }),
  });
  await res.arrayBuffer();
  return res.status;
}

/** A request the client gives up on: 'aborted' once it does (the gateway then ends it upstream). */
async function abandoned(url: string, model: string, signal: AbortSignal): Promise<number | 'aborted'> {
  try {
    return await chat(url, model, 20_000, signal);
  } catch {
    return 'aborted';
  }
}

interface Eviction {
  readonly model: string;
  readonly reason: string;
  readonly for: string;
}
interface ModelFigures {
  readonly loaded: boolean;
  readonly inSystem: number;
  readonly startupMs: number | null;
  readonly requestsPerS: number;
  readonly lastUsedMs: number;
}
interface CapStats {
  readonly maxLoadedModels: number;
  readonly eviction: string;
  readonly loaded: string[];
  readonly waiting: string[];
  readonly evictions: Record<string, number>;
  readonly recentEvictions: Eviction[];
  readonly models: Record<string, ModelFigures>;
}

async function capStats(url: string): Promise<CapStats> {
  const s = (await (await fetch(`${url}/stats`)).json()) as { loadedModels: CapStats };
  return s.loadedModels;
}

/** Engines of `model` in `phase` (switchyard_replicas). */
async function engines(url: string, model: string, phase: string): Promise<number | undefined> {
  return (await scrapeMetrics(url)).get(`switchyard_replicas{model="${model}",role="both",phase="${phase}"}`);
}

// The three run side by side (each its own server on port 0): the file's wall time is the longest.
describe('serve --max-loaded-models', { concurrency: 3 }, () => {
  it('lru: a third model evicts the least recently used idle one, and every request is answered', async () => {
    const s = await serve([]);
    assert.equal(await chat(s.url, 'a'), 200);
    assert.equal(await chat(s.url, 'b'), 200);
    const before = await capStats(s.url);
    assert.deepEqual(before.loaded, ['a', 'b']);
    assert.equal(before.recentEvictions.length, 0);
    assert.equal(before.eviction, 'lru');

    assert.equal(await chat(s.url, 'c'), 200);
    const third = await capStats(s.url);
    assert.deepEqual(third.recentEvictions, [
      { ...third.recentEvictions[0], model: 'a', reason: 'lru', for: 'c' },
    ]);
    assert.deepEqual(third.loaded, ['b', 'c']);
    await waitFor("a's engine stopped", async () => (await engines(s.url, 'a', 'ready')) === 0);
    assert.equal(await engines(s.url, 'b', 'ready'), 1);
    assert.equal(await engines(s.url, 'c', 'ready'), 1);

    // Back to a: now b is the least recently used.
    assert.equal(await chat(s.url, 'a'), 200);
    const fourth = await capStats(s.url);
    assert.deepEqual(
      fourth.recentEvictions.map((e) => [e.model, e.reason, e.for]),
      [
        ['b', 'lru', 'a'],
        ['a', 'lru', 'c'],
      ],
    );
    assert.deepEqual(fourth.loaded, ['a', 'c']);
    const m = await scrapeMetrics(s.url);
    assert.equal(m.get('switchyard_loaded_models'), 2);
    assert.equal(m.get('switchyard_model_evictions_total{model="a",reason="lru"}'), 1);
    assert.equal(m.get('switchyard_model_evictions_total{model="b",reason="lru"}'), 1);
    for (const model of ['a', 'b', 'c'])
      assert.ok((fourth.models[model]?.startupMs ?? 0) > 0, `${model}'s start-up was measured`);
    assert.ok(
      s.stderr.some((l) => /'a' evicted \(lru\) for 'c'/.test(l)),
      s.stderr.join('\n'),
    );
    assert.equal(await s.stop(), 0);
  });

  it('cost-aware: a rarely used model goes before a popular one used less recently; with both loaded models busy a start waits', async () => {
    // Slower engines (a long request lasts seconds): room to see a start wait while both are busy.
    const s = await serve(['--eviction', 'cost-aware'], '0.2');
    // a: one cold request, then many warm ones; b: one request, after a's.
    for (let k = 0; k < 12; k++) assert.equal(await chat(s.url, 'a'), 200);
    assert.equal(await chat(s.url, 'b'), 200);
    const before = await capStats(s.url);
    const a = before.models['a'] as ModelFigures;
    const b = before.models['b'] as ModelFigures;
    assert.ok(a.lastUsedMs < b.lastUsedMs, 'LRU would evict a');
    assert.ok(a.requestsPerS > 5 * b.requestsPerS, `a ${a.requestsPerS}/s, b ${b.requestsPerS}/s`);

    assert.equal(await chat(s.url, 'c'), 200);
    const after = await capStats(s.url);
    assert.equal(after.eviction, 'cost-aware');
    assert.deepEqual(
      after.recentEvictions.map((e) => [e.model, e.reason, e.for]),
      [['b', 'cost-aware', 'c']],
    );
    assert.deepEqual(after.loaded, ['a', 'c']);
    await waitFor("b's engine stopped", async () => (await engines(s.url, 'b', 'ready')) === 0);
    const m = await scrapeMetrics(s.url);
    assert.equal(m.get('switchyard_model_evictions_total{model="b",reason="cost-aware"}'), 1);
    assert.equal(m.get('switchyard_loaded_models'), 2);

    // Both loaded models busy with a request far longer than the test (about 24 s of tokens): b is
    // held and nothing is evicted, however slow the machine ...
    const client = new AbortController();
    const long = [abandoned(s.url, 'a', client.signal), abandoned(s.url, 'c', client.signal)];
    await waitFor('a and c busy', async () => {
      const figures = (await capStats(s.url)).models;
      return figures['a']?.inSystem === 1 && figures['c']?.inSystem === 1;
    });
    const held = chat(s.url, 'b');
    await waitFor('b waiting for the cap', async () => (await capStats(s.url)).waiting.includes('b'));
    const busy = await capStats(s.url);
    assert.deepEqual(busy.loaded, ['a', 'c']);
    assert.equal(busy.recentEvictions.length, 1, 'no busy model was evicted');
    // ... until their clients leave and a and c turn idle: one is evicted for b, which is answered.
    client.abort();
    assert.deepEqual(await Promise.all(long), ['aborted', 'aborted']);
    assert.equal(await held, 200);
    const last = (await capStats(s.url)).recentEvictions[0] as Eviction;
    assert.equal(last.for, 'b');
    assert.ok(['a', 'c'].includes(last.model), last.model);
    assert.ok(
      s.stderr.some((l) => /'b' waits: 2 model\(s\) loaded \(--max-loaded-models\), none idle/.test(l)),
      s.stderr.join('\n'),
    );
    assert.equal(await s.stop(), 0);
  });

  it('refuses cap flags that cannot mean anything, before any engine starts', async () => {
    const two = ['--model', 'a=llama-3.1-8b', '--model', 'b=qwen2.5-7b', '--autoscaler', 'static'];
    const cases: [string[], RegExp][] = [
      [[...two, '--min-instances', '1', '--max-loaded-models', '1'], /applies to --min-instances 0 only/],
      [[...two, '--min-instances', '0', '--eviction', 'lru'], /--eviction chooses what --max-loaded-models/],
      [['--max-loaded-models', '1'], /--max-loaded-models needs --autoscaler/],
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
});
