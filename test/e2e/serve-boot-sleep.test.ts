/**
 * End-to-end: boot into sleep in `switchyard serve --min-instances 0 --sleep --boot-sleep` with two
 * real sim engine processes. Without any request, both models' engines start and go to sleep
 * (counted as boots and sleeps in /stats, no start); the first request to one is served by a wake
 * (wakes 1, starts still 0) and the other model stays asleep. Without `--boot-sleep` (the default:
 * boot is opt-in) nothing starts before a request, and the same request makes a fresh start.
 * Deadlines only guard against hangs.
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { after, it } from 'node:test';
import { chatStatus, ONE_REPLICA_FROM_ZERO_ARGS, startServe } from './support/serve.ts';
import { killAll, scrapeMetrics, until } from './support/wait.ts';

const HANG_GUARD_MS = 30_000;
const waitFor = (what: string, check: () => Promise<boolean> | boolean): Promise<void> =>
  until(what, check, HANG_GUARD_MS, 20);

const children: ChildProcess[] = [];
after(() => killAll(children));

interface ModelSleep {
  boots: number;
  bootFailures: number;
  booting: number;
  sleeps: number;
  wakes: number;
  asleep: number;
  starts: number;
}
interface Stats {
  sleep: { sleepers: number; models: Record<string, ModelSleep> };
}

async function models(url: string): Promise<Record<string, ModelSleep>> {
  return ((await (await fetch(`${url}/stats`)).json()) as Stats).sleep.models;
}

/** Two sim models at zero with sleep mode (boot off unless `extra` asks), plus `extra` flags. */
const serveArgs = (extra: readonly string[]): string[] => [
  '--time-scale',
  '0.1',
  ...['a', 'b'].flatMap((m) => ['--model', `${m}=llama-3.1-8b`]),
  ...ONE_REPLICA_FROM_ZERO_ARGS,
  '--sleep',
  ...extra,
];

it('boots both models into sleep before any request, and the first request is a wake', async () => {
  const { url, stderr } = await startServe(serveArgs(['--boot-sleep']), children);
  await waitFor('both models booted and asleep', async () => {
    const m = await models(url);
    return m['a']?.asleep === 1 && m['b']?.asleep === 1;
  });
  let m = await models(url);
  for (const name of ['a', 'b']) {
    const s = m[name] as ModelSleep;
    assert.deepEqual(
      [s.boots, s.bootFailures, s.sleeps, s.starts, s.wakes],
      [1, 0, 1, 0, 0],
      `${name}: ${stderr.join('\n')}`,
    );
  }
  assert.ok(!stderr.some((l) => / engine 0 ready at /.test(l)), 'no engine entered the gateway');

  assert.equal(await chatStatus(url, 'a'), 200);
  m = await models(url);
  assert.deepEqual([m['a']?.wakes, m['a']?.starts], [1, 0], 'served by a wake, no start');
  assert.deepEqual([m['b']?.asleep, m['b']?.wakes], [1, 0], 'the other model still asleep');

  const boots = [...(await scrapeMetrics(url))].filter(([k]) =>
    k.startsWith('switchyard_sleep_boots_total{model="a",'),
  );
  assert.deepEqual(
    boots.map(([, v]) => v),
    [1],
  );
});

it('without --boot-sleep (the default) nothing starts before a request, and the first request is a fresh start', async () => {
  const { url, stderr } = await startServe(serveArgs([]), children);
  assert.ok(!stderr.some((l) => /boot into sleep/.test(l)), stderr.join('\n'));
  let m = await models(url);
  assert.deepEqual([m['a']?.boots, m['a']?.booting, m['a']?.asleep], [0, 0, 0]);
  assert.equal(await chatStatus(url, 'a'), 200);
  m = await models(url);
  assert.deepEqual([m['a']?.starts, m['a']?.wakes, m['a']?.boots], [1, 0, 0]);
  assert.deepEqual([m['b']?.starts, m['b']?.boots, m['b']?.asleep], [0, 0, 0]);
});

it('under --max-loaded-models 1 boots the models one at a time into the free room, and both end asleep', async () => {
  const { url, stderr } = await startServe(serveArgs(['--boot-sleep', '--max-loaded-models', '1']), children);
  let most = 0;
  await waitFor('both models booted and asleep', async () => {
    const m = await models(url);
    most = Math.max(most, (m['a']?.booting ?? 0) + (m['b']?.booting ?? 0));
    return m['a']?.asleep === 1 && m['b']?.asleep === 1;
  });
  assert.ok(most <= 1, `never two boots launching at once (saw ${most})`);
  const launches = stderr.filter((l) => /booting engine 0 into sleep/.test(l));
  assert.equal(launches.length, 2, stderr.join('\n'));
  assert.equal(await chatStatus(url, 'b'), 200);
  const m = await models(url);
  assert.deepEqual([m['b']?.wakes, m['b']?.starts], [1, 0]);
});
