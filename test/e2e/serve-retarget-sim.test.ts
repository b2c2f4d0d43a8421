/**
 * End-to-end: `switchyard serve --sleep --retarget` with real sim engine processes. Two names of the
 * same catalogue model (two fine-tunes of one base: the same shapes) and one of another base, one
 * engine each, from zero. a's engine serves, then sleeps; b's request is answered by that same
 * process after an in-place swap (counted in switchyard_retargets_total{model="b",from="a"}), whose
 * /v1/models then lists b; c, of another shape, starts its own engine and leaves b's sleeper alone; a's
 * next request takes b's sleeper back the same way (same process, counted from b), and b's once more:
 * the process's own stderr lines then carry b's prefix (`[b] [engine 0]`), not a's. Deadlines only
 * guard against hangs.
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { after, it } from 'node:test';
import { chatStatus, ONE_REPLICA_FROM_ZERO_ARGS, startServe } from './support/serve.ts';
import { killAll, scrapeMetrics, until } from './support/wait.ts';

const children: ChildProcess[] = [];
after(() => killAll(children));

const asleep = async (url: string, model: string): Promise<number> =>
  ((await (await fetch(`${url}/stats`)).json()) as { sleep: { models: Record<string, { asleep: number }> } })
    .sleep.models[model]?.asleep ?? 0;

it('re-targets a sleeping sim engine to another fine-tune of its base, never to another base', async () => {
  const serve = await startServe(
    [
      '--time-scale',
      '0.1',
      '--model',
      'a=llama-3.1-8b',
      '--model',
      'b=llama-3.1-8b',
      '--model',
      'c=qwen2.5-7b',
      ...ONE_REPLICA_FROM_ZERO_ARGS,
      '--keep-alive-ms',
      '300',
      '--sleep',
      '--retarget',
    ],
    children,
  );
  const { url, stderr } = serve;
  const readies = (model: string) =>
    stderr.flatMap((l) => {
      const m = new RegExp(`${model}: engine 0 ready at (\\S+) \\(pid (\\d+)\\)`).exec(l);
      return m === null ? [] : [[m[1] as string, Number(m[2])] as const];
    });
  assert.equal(await chatStatus(url, 'a'), 200);
  await until('a asleep', async () => (await asleep(url, 'a')) === 1, 30_000, 20);
  assert.equal(await chatStatus(url, 'b'), 200, stderr.join('\n'));
  const [engineA] = readies('a');
  assert.deepEqual(readies('b'), [engineA], stderr.join('\n'));
  const metrics = await scrapeMetrics(url);
  assert.equal(metrics.get('switchyard_retargets_total{model="b",from="a"}'), 1);
  const models = (await (await fetch(`${engineA?.[0]}/v1/models`)).json()) as { data: { id: string }[] };
  assert.deepEqual(
    models.data.map((m) => m.id),
    ['b'],
  );
  // b sleeps on a's old engine; c (another base) starts its own and leaves b's sleeper alone.
  await until('b asleep', async () => (await asleep(url, 'b')) === 1, 30_000, 20);
  assert.equal(await chatStatus(url, 'c'), 200, stderr.join('\n'));
  assert.notEqual(readies('c')[0]?.[1], engineA?.[1]);
  assert.equal(await asleep(url, 'b'), 1);
  // a takes b's sleeper back (same base); both stay answered.
  assert.equal(await chatStatus(url, 'a'), 200, stderr.join('\n'));
  assert.deepEqual(readies('a'), [engineA, engineA], stderr.join('\n'));
  assert.equal((await scrapeMetrics(url)).get('switchyard_retargets_total{model="a",from="b"}'), 1);
  // Once more to b, then stop: the process's own lines now carry b's prefix, not its first pool's.
  await until('a asleep again', async () => (await asleep(url, 'a')) === 1, 30_000, 20);
  assert.equal(await chatStatus(url, 'b'), 200, stderr.join('\n'));
  assert.deepEqual(readies('b'), [engineA, engineA], stderr.join('\n'));
  assert.equal(await serve.stop(), 0);
  const drains = stderr.flatMap((l) => {
    const m = /^\[(\w+)\] \[engine 0\] switchyard engine sim: SIGTERM, draining/.exec(l);
    return m === null ? [] : [m[1]];
  });
  assert.deepEqual(drains.sort(), ['b', 'c'], stderr.join('\n'));
});
