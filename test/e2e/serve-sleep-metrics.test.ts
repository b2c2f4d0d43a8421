/**
 * End-to-end: sleepers on /metrics and under `--max-loaded-models`. With `serve --sleep`, an engine
 * asleep shows in `switchyard_sleeping_replicas{phase="asleep"}` and in no `switchyard_replicas`
 * phase; and it is not a loaded model (vLLM's level-1 sleep frees the GPU memory of its weights and
 * KV cache), so with a cap of one loaded model another model starts beside a sleeper without evicting
 * anything, and the sleeper wakes beside the other's sleeper. Deadlines only guard against hangs.
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { after, it } from 'node:test';
import { chatStatus, holdStream, ONE_REPLICA_FROM_ZERO_ARGS, startServe } from './support/serve.ts';
import { killAll, scrapeMetrics, until } from './support/wait.ts';

const HANG_GUARD_MS = 30_000;
const waitFor = (what: string, check: () => Promise<boolean> | boolean): Promise<void> =>
  until(what, check, HANG_GUARD_MS, 20);

const children: ChildProcess[] = [];
after(() => killAll(children));

interface Stats {
  sleep: { sleepers: number; models: Record<string, { sleeps: number; wakes: number; starts: number }> };
  loadedModels: { loaded: string[]; recentEvictions: { model: string; reason: string }[] };
}

/** Evictions to make room for another model (a keep-alive stop is listed too, as `keep-alive`). */
const forRoom = (s: Stats) => s.loadedModels.recentEvictions.filter((e) => e.reason !== 'keep-alive');

async function stats(url: string): Promise<Stats> {
  return (await (await fetch(`${url}/stats`)).json()) as Stats;
}

/** The samples of `name` for `model`, by phase. */
async function phases(url: string, name: string, model: string): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const [key, value] of await scrapeMetrics(url)) {
    const m = new RegExp(`^${name}\\{model="${model}",role="[^"]*",phase="([a-z]+)"\\}$`).exec(key);
    if (m !== null) out[m[1] as string] = value;
  }
  return out;
}

it('shows sleepers in switchyard_sleeping_replicas, and --max-loaded-models does not count them', async () => {
  const { url } = await startServe(
    [
      '--time-scale',
      '0.1',
      ...['a', 'b'].flatMap((m) => ['--model', `${m}=llama-3.1-8b`]),
      ...ONE_REPLICA_FROM_ZERO_ARGS,
      '--keep-alive-ms',
      '300',
      '--max-loaded-models',
      '1',
      '--sleep',
    ],
    children,
  );
  const sleeps = async (model: string) => (await stats(url)).sleep.models[model]?.sleeps ?? 0;

  assert.equal(await chatStatus(url, 'a'), 200);
  await waitFor("a's engine asleep", async () => (await sleeps('a')) === 1);
  assert.deepEqual(await phases(url, 'switchyard_sleeping_replicas', 'a'), { sleeping: 0, asleep: 1 });
  assert.deepEqual(await phases(url, 'switchyard_sleeping_replicas', 'b'), { sleeping: 0, asleep: 0 });
  const replicas = await phases(url, 'switchyard_replicas', 'a');
  assert.deepEqual(replicas, { pending: 0, starting: 0, ready: 0, draining: 0 }, 'a sleeper is no replica');
  assert.deepEqual((await stats(url)).loadedModels.loaded, [], 'a sleeper is not a loaded model');

  // The cap's one slot is free: b starts without evicting a (a stays asleep), then sleeps too.
  assert.equal(await chatStatus(url, 'b'), 200);
  let s = await stats(url);
  assert.deepEqual(forRoom(s), []);
  assert.equal(s.sleep.models['a']?.sleeps, 1);
  assert.equal(s.sleep.models['a']?.wakes, 0);
  await waitFor("b's engine asleep", async () => (await sleeps('b')) === 1);
  assert.equal((await stats(url)).sleep.sleepers, 2);

  // a's next request wakes a (no start); still nothing evicted. It is a stream kept open through
  // the checks of a awake: with a request in flight a cannot go back to sleep under them (its
  // keep-alive is 300 ms; on a loaded machine the checks saw a's next sleep under way).
  const wakeUp = await holdStream(url, 'a');
  assert.equal(wakeUp.status, 200);
  s = await stats(url);
  assert.deepEqual(s.sleep.models['a'], { ...s.sleep.models['a'], wakes: 1, starts: 1 });
  assert.deepEqual(forRoom(s), []);
  assert.deepEqual(s.loadedModels.loaded, ['a']);
  assert.deepEqual(await phases(url, 'switchyard_sleeping_replicas', 'a'), { sleeping: 0, asleep: 0 });
  assert.deepEqual(await phases(url, 'switchyard_sleeping_replicas', 'b'), { sleeping: 0, asleep: 1 });
  assert.equal((await phases(url, 'switchyard_replicas', 'a'))['ready'], 1);
  await wakeUp.close();
});
