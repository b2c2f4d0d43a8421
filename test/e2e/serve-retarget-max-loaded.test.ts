/**
 * End-to-end: `switchyard serve --sleep --retarget --max-loaded-models 1` with real llama engines on
 * three tiny GGUFs of one shape (different seeds). With one model loaded at a time, each start of
 * another model evicts the idle loaded one (lru; the keep-alive is long, so only the cap unloads),
 * whose engine then sleeps, and a later start takes an asleep engine over in place instead of
 * spawning. Throughout, /metrics is scraped: the cap's gauge and the models with an engine pending,
 * starting or ready never exceed 1. Every request is answered, a burst to all three models included,
 * and at the end the counters agree with each other and with the processes: re-targets by (model,
 * from) against each model's sleepers given up and serve's lines, each model's sleeps against its
 * wakes, stops, hand-overs and sleepers, and the engine processes alive against the engines ready or
 * asleep. Reads /proc for the processes, so Linux only. Deadlines only guard against hangs.
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, it } from 'node:test';
import { TINY_LLAMA_SHAPE, writeLlamaGguf } from '../../src/engine-servers/llama/tiny-gguf.ts';
import { argvOf, childPids } from './support/processes.ts';
import { ONE_REPLICA_FROM_ZERO_ARGS, type ServeProcess, startServe } from './support/serve.ts';
import { killAll, scrapeMetrics, until } from './support/wait.ts';

const HANG_GUARD_MS = 60_000;
const MODELS = ['a', 'b', 'c'] as const;
const linuxOnly = { skip: process.platform !== 'linux' && 'reads /proc' };

const dir = mkdtempSync(join(tmpdir(), 'sy-serve-retarget-cap-'));
const children: ChildProcess[] = [];
after(async () => {
  await killAll(children);
  rmSync(dir, { recursive: true, force: true });
});

before(() => {
  for (const [k, m] of MODELS.entries())
    writeLlamaGguf(join(dir, `ft-${m}.gguf`), { ...TINY_LLAMA_SHAPE, seed: 101 * (k + 1) });
});

/** A short greedy completion's status. */
async function complete(url: string, model: string): Promise<number> {
  const res = await fetch(`${url}/v1/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model, prompt: 'The quick brown fox', max_tokens: 4, temperature: 0 }),
  });
  await res.arrayBuffer();
  return res.status;
}

interface ModelSleep {
  readonly sleeps: number;
  readonly wakes: number;
  readonly wakeFailures: number;
  readonly sleepFailures: number;
  readonly sleepersStopped: number;
  readonly sleepersGivenUp: number;
  readonly asleep: number;
  readonly sleeping: number;
}

async function statsOf(url: string): Promise<{
  sleep: { models: Record<string, ModelSleep> };
  loadedModels: { loaded: string[]; waiting: string[]; evictions: Record<string, number> };
}> {
  return (await (await fetch(`${url}/stats`)).json()) as never;
}

const replicas = (m: Map<string, number>, model: string, phase: string): number =>
  m.get(`switchyard_replicas{model="${model}",role="both",phase="${phase}"}`) ?? 0;
const asleepOf = (m: Map<string, number>, model: string): number =>
  m.get(`switchyard_sleeping_replicas{model="${model}",role="both",phase="asleep"}`) ?? 0;
const retargets = (m: Map<string, number>, model: string, from: string): number =>
  m.get(`switchyard_retargets_total{model="${model}",from="${from}"}`) ?? 0;

/** The models with an engine pending, starting or ready in one scrape. */
function awakeModels(m: Map<string, number>): string[] {
  return MODELS.filter((model) =>
    ['pending', 'starting', 'ready'].some((phase) => replicas(m, model, phase) > 0),
  );
}

/** Serve's engine processes (its children running `engine llama`), by pid. */
function enginePids(servePid: number): number[] {
  return childPids(servePid).filter((pid) => argvOf(pid).includes('engine'));
}

/** What one case runs: the cap, the keep-alive, standby engines, and the steps before the burst. */
interface Case {
  readonly maxLoaded: number;
  readonly keepAliveMs: number;
  readonly standby: number;
  /** Requests one after another, each followed by a wait for `settled`. */
  readonly steps: readonly string[];
  /** After the step for `model`: true once the engines unloaded by it are asleep. */
  readonly settled: (stats: Awaited<ReturnType<typeof statsOf>>, model: string) => boolean;
  /** Re-targets the steps must have made (at least). */
  readonly stepRetargetsMin: number;
}

/** No engine is going to sleep now. */
const noneSleeping = (stats: Awaited<ReturnType<typeof statsOf>>): boolean =>
  MODELS.every((m) => stats.sleep.models[m]?.sleeping === 0);

async function runCase(c: Case): Promise<void> {
  const serve = await startServe(
    [
      '--engine',
      'llama',
      ...MODELS.flatMap((m) => ['--model', `${m}=${join(dir, `ft-${m}.gguf`)}`]),
      ...ONE_REPLICA_FROM_ZERO_ARGS,
      '--keep-alive-ms',
      String(c.keepAliveMs),
      '--max-loaded-models',
      String(c.maxLoaded),
      '--standby-engines',
      String(c.standby),
      '--warm-cache-mb',
      '0',
      '--sleep',
      '--retarget',
    ],
    children,
  );
  const { url, stderr } = serve;
  const log = () => stderr.join('\n');
  const waitFor = (what: string, check: () => Promise<boolean> | boolean): Promise<void> =>
    until(what, check, HANG_GUARD_MS, 25).catch((error: Error) => {
      throw new Error(`${error.message}\n${log()}`);
    });

  // Watch the cap from outside while everything below runs.
  const overCap: string[] = [];
  let scrapes = 0;
  let watching = true;
  const watcher = (async () => {
    while (watching) {
      const m = await scrapeMetrics(url);
      scrapes++;
      const loaded = m.get('switchyard_loaded_models') ?? 0;
      const awake = awakeModels(m);
      if (loaded > c.maxLoaded || awake.length > c.maxLoaded)
        overCap.push(`loaded gauge ${loaded}, awake ${awake.join(',')}`);
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  })();

  try {
    await stepsAndBurst(c, url, log, waitFor);
  } finally {
    watching = false;
    await watcher;
  }
  assert.ok(scrapes > 10, `the watcher scraped ${scrapes} times`);
  assert.deepEqual(overCap, [], `over --max-loaded-models ${c.maxLoaded}\n${log()}`);
  await countersAgree(c, serve, waitFor);
  assert.equal(await serve.stop(), 0);
}

/** The steps one after another, then a burst to all three models: every request answered. */
async function stepsAndBurst(
  c: Case,
  url: string,
  log: () => string,
  waitFor: (what: string, check: () => Promise<boolean>) => Promise<void>,
): Promise<void> {
  for (const model of c.steps) {
    assert.equal(await complete(url, model), 200, log());
    await waitFor(`the engines unloaded after ${model} asleep`, async () =>
      c.settled(await statsOf(url), model),
    );
  }
  const afterSteps = await scrapeMetrics(url);
  const stepRetargets = MODELS.flatMap((to) => MODELS.map((from) => retargets(afterSteps, to, from)));
  assert.ok(
    stepRetargets.reduce((s, n) => s + n, 0) >= c.stepRetargetsMin,
    `starts took an unloaded model's sleeper: ${stepRetargets}\n${log()}`,
  );

  // All three at once, twice each: at most the cap loaded, the others wait for one to turn idle.
  const burst = await Promise.all(MODELS.flatMap((m) => [complete(url, m), complete(url, m)]));
  assert.deepEqual(burst, [200, 200, 200, 200, 200, 200], log());
  await waitFor('quiet', async () => {
    const stats = await statsOf(url);
    return stats.loadedModels.waiting.length === 0 && noneSleeping(stats);
  });
}

/** At rest: the cap, the re-target and sleep counters, serve's lines and the processes agree. */
async function countersAgree(
  c: Case,
  serve: ServeProcess,
  waitFor: (what: string, check: () => Promise<boolean>) => Promise<void>,
): Promise<void> {
  const { url, stderr } = serve;
  const log = () => stderr.join('\n');
  const m = await scrapeMetrics(url);
  const stats = await statsOf(url);
  assert.equal(m.get('switchyard_loaded_models'), stats.loadedModels.loaded.length);
  assert.ok(stats.loadedModels.loaded.length <= c.maxLoaded);
  let retargetsAll = 0;
  for (const from of MODELS) {
    const s = stats.sleep.models[from] as ModelSleep;
    // Each re-target from a model took one of its sleepers, and nothing else did.
    const taken = MODELS.reduce((n, to) => n + retargets(m, to, from), 0);
    assert.equal(s.sleepersGivenUp, taken, `${from}: ${JSON.stringify(s)}`);
    retargetsAll += taken;
    // Every sleep ended in a wake, a failed wake, a stop or a hand-over, or is still asleep.
    assert.equal(
      s.sleeps,
      s.wakes + s.wakeFailures + s.sleepersStopped + s.sleepersGivenUp + s.asleep,
      `${from}: ${JSON.stringify(s)}`,
    );
    assert.equal(s.asleep, asleepOf(m, from), from);
    assert.equal(s.sleepFailures, 0, from);
  }
  assert.ok(retargetsAll >= c.stepRetargetsMin, log());
  assert.equal(
    stderr.filter((l) => / re-targeted from \w+'s asleep engine /.test(l)).length,
    retargetsAll,
    log(),
  );
  // No engine process outside the books: each serves one model (starting, ready or draining), sleeps
  // for one (going to sleep or asleep), or stands by. Read until a scrape and /proc agree (an engine
  // may move between phases in between); a process leaked never agrees.
  let books = -1;
  let processes = -2;
  await waitFor('every engine process in the books', async () => {
    const now = await scrapeMetrics(url);
    const warm = (
      (await (await fetch(`${url}/stats`)).json()) as { warmStart?: { standby: { idle: number } | null } }
    ).warmStart;
    books =
      MODELS.reduce(
        (n, model) =>
          n +
          ['starting', 'ready', 'draining'].reduce((k, phase) => k + replicas(now, model, phase), 0) +
          asleepOf(now, model) +
          (now.get(`switchyard_sleeping_replicas{model="${model}",role="both",phase="sleeping"}`) ?? 0),
        0,
      ) + (warm?.standby?.idle ?? 0);
    processes = enginePids(serve.proc.pid as number).length;
    return books === processes && (warm?.standby?.idle ?? 0) === c.standby;
  }).catch((error: Error) => {
    throw new Error(`${processes} engine processes, ${books} in the books: ${error.message}`);
  });
  const failures = [...m].filter(([k, v]) => k.startsWith('switchyard_retarget_failures_total') && v > 0);
  assert.deepEqual(failures, []);
}

it(
  'cap 1, unloaded by eviction only: a start after an eviction takes the evicted sleeper; never more than 1 loaded; counters agree',
  linuxOnly,
  () =>
    runCase({
      maxLoaded: 1,
      // Long: only the cap unloads.
      keepAliveMs: 600_000,
      standby: 0,
      steps: ['a', 'b', 'c', 'a'],
      settled: noneSleeping,
      // c takes a's or b's sleeper, then a takes one (its own is gone or another's is idle).
      stepRetargetsMin: 2,
    }),
);

it(
  'cap 2 with a standby engine, unloaded by the keep-alive: the third model re-targets a sleeper; never more than 2 loaded; counters agree',
  linuxOnly,
  () =>
    runCase({
      maxLoaded: 2,
      keepAliveMs: 400,
      standby: 1,
      // b takes a's sleeper, c takes b's; in the burst a standby engine serves a model with none.
      steps: ['a', 'b', 'c'],
      // The step's own engine asleep past its keep-alive (the keep-alive's sleep, not the cap's).
      settled: (stats, model) => noneSleeping(stats) && (stats.sleep.models[model]?.asleep ?? 0) === 1,
      stepRetargetsMin: 2,
    }),
);
