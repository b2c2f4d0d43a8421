/**
 * End-to-end: sleep mode in `switchyard serve --min-instances 0 --sleep` with a real sim engine
 * process. A request starts the engine; past the keep-alive the engine sleeps (its /is_sleeping is
 * true, its process alive) instead of stopping; the next request is held, the engine woken (same
 * pid, no new start) and the request answered; requests arriving together during a wake are all
 * answered; an engine killed while asleep is dropped, and the next request gets a fresh start and
 * its answer. Deadlines only guard against hangs.
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { after, it } from 'node:test';
import { tinyLlamaModel } from './support/llama.ts';
import {
  chatStatus,
  holdStream,
  ONE_REPLICA_FROM_ZERO_ARGS,
  oneSleepingModelArgs,
  startServe,
} from './support/serve.ts';
import { killAll, until } from './support/wait.ts';

const HANG_GUARD_MS = 30_000;
const waitFor = (what: string, check: () => Promise<boolean> | boolean): Promise<void> =>
  until(what, check, HANG_GUARD_MS, 20);

const children: ChildProcess[] = [];
after(() => killAll(children));

interface ModelSleep {
  sleeps: number;
  wakes: number;
  wakeFailures: number;
  sleepersStopped: number;
  asleep: number;
  starts: number;
}
interface Stats {
  sleep: { sleepers: number; models: Record<string, ModelSleep> };
  scaleFromZero: { held: number; released: number };
}

async function stats(url: string): Promise<Stats> {
  return (await (await fetch(`${url}/stats`)).json()) as Stats;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function isSleeping(engineUrl: string): Promise<boolean> {
  return ((await (await fetch(`${engineUrl}/is_sleeping`)).json()) as { is_sleeping: boolean }).is_sleeping;
}

it('sleeps an idle engine past its keep-alive, wakes it for the next requests, and starts afresh when a sleeper died', async () => {
  const { url, stderr } = await startServe(oneSleepingModelArgs(0.1), children);
  const ready = () => stderr.filter((l) => / engine 0 ready at /.test(l));
  const m = async () => (await stats(url)).sleep.models['m'] as ModelSleep;

  // Cold: a start.
  assert.equal(await chatStatus(url, 'm'), 200);
  assert.equal(ready().length, 1);
  const [, engineUrl, pidText] = /ready at (\S+) \(pid (\d+)\)/.exec(ready()[0] as string) ?? [];
  const pid = Number(pidText);
  assert.ok(engineUrl !== undefined && pid > 0, stderr.join('\n'));

  // Past the keep-alive: asleep, not stopped.
  await waitFor('the engine asleep', async () => (await m()).sleeps === 1);
  assert.equal(await isSleeping(engineUrl as string), true);
  assert.equal(alive(pid), true);
  assert.equal((await stats(url)).sleep.sleepers, 1);
  assert.ok(!stderr.some((l) => /engine 0 stopped/.test(l)), 'no stop');

  // The next request is held, wakes the engine (same process, no start), and is answered. It is a
  // stream kept open through the checks: with a request in flight the engine cannot go back to
  // sleep under them (the keep-alive is 300 ms; a loaded machine took longer between the answer
  // and the /is_sleeping check, which then saw the next sleep).
  const heldBefore = (await stats(url)).scaleFromZero.held;
  const wakeUp = await holdStream(url, 'm');
  assert.equal(wakeUp.status, 200);
  let s = await m();
  assert.equal(s.wakes, 1);
  assert.equal(s.starts, 1, 'no new start');
  assert.equal((await stats(url)).scaleFromZero.held, heldBefore + 1, 'held during the wake');
  assert.ok(
    stderr.some((l) => new RegExp(`engine 0 awake at .* \\(pid ${pid},`).test(l)),
    stderr.join('\n'),
  );
  assert.equal(await isSleeping(engineUrl as string), false);
  await wakeUp.close();

  // Asleep again; five requests at once during one wake: all answered.
  await waitFor('the engine asleep again', async () => (await m()).sleeps === 2);
  const five = await Promise.all(Array.from({ length: 5 }, () => chatStatus(url, 'm')));
  assert.deepEqual(five, [200, 200, 200, 200, 200]);
  s = await m();
  assert.equal(s.wakes, 2);
  assert.equal(s.starts, 1);
  assert.equal(ready().length, 1);

  // Killed while asleep: dropped (never woken); the next request gets a fresh start and its answer.
  await waitFor('the engine asleep a third time', async () => (await m()).sleeps === 3);
  process.kill(pid, 'SIGKILL');
  await waitFor('the dead sleeper dropped', async () => (await m()).sleepersStopped === 1);
  assert.equal((await stats(url)).sleep.sleepers, 0);
  assert.equal(await chatStatus(url, 'm'), 200);
  s = await m();
  assert.equal(s.starts, 2, 'a fresh start');
  assert.equal(s.wakes, 2);
  assert.equal(ready().length, 2);
  const newPid = Number(/\(pid (\d+)\)/.exec(ready()[1] as string)?.[1]);
  assert.notEqual(newPid, pid);
});

it('puts a llama engine (handed to a standby engine) to sleep and wakes it by reloading its model', async () => {
  const { url, stderr } = await startServe(
    [
      '--engine',
      'llama',
      '--model',
      `tiny=${tinyLlamaModel()}`,
      ...ONE_REPLICA_FROM_ZERO_ARGS,
      '--keep-alive-ms',
      '300',
      '--sleep',
    ],
    children,
  );
  const tiny = async () => (await stats(url)).sleep.models['tiny'] as ModelSleep;
  const warmStart = async () =>
    (
      (await (await fetch(`${url}/stats`)).json()) as {
        warmStart: { standby: { idle: number }; coldStarts: { standby: number; fresh: number } };
      }
    ).warmStart;
  await waitFor('a standby engine waiting', async () => (await warmStart()).standby.idle >= 1);
  assert.equal(await chatStatus(url, 'tiny'), 200);
  await waitFor('the llama engine asleep', async () => (await tiny()).sleeps === 1);
  assert.equal(await chatStatus(url, 'tiny'), 200);
  const s = await tiny();
  assert.deepEqual([s.wakes, s.starts, s.wakeFailures, s.sleepersStopped], [1, 1, 0, 0], stderr.join('\n'));
  assert.deepEqual(
    (await warmStart()).coldStarts,
    { standby: 1, fresh: 0 },
    'the start went to a standby engine',
  );
});
