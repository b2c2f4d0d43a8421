/**
 * End-to-end: `switchyard serve --sleep --retarget` with real llama engines on two tiny GGUFs of the
 * same shape (different random seeds: their greedy answers differ), one engine per model. The first
 * model's engine serves, then sleeps; a request for the second model is answered by the same process
 * after an in-place swap (`POST /update_weights_from_disk`, then `/wake_up`), counted in
 * `switchyard_retargets_total{model,from}`, and its greedy text is the one that model gave on its first
 * start. Killed after the swap, the engine is restarted by its supervisor on the model it now serves.
 * Models of another shape start normally, and a swap the engine refuses stops that engine and starts
 * the model afresh; every request is answered. Deadlines only guard against hangs.
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { TINY_LLAMA_SHAPE, writeLlamaGguf } from '../../src/engine-servers/llama/tiny-gguf.ts';
import { ONE_REPLICA_FROM_ZERO_ARGS, type ServeProcess, startServe } from './support/serve.ts';
import { killAll, scrapeMetrics, until } from './support/wait.ts';

const HANG_GUARD_MS = 60_000;
/** `until` with the hang guard; a timeout's error carries `log` (serve's stderr) when given. */
const waitFor = (
  what: string,
  check: () => Promise<boolean> | boolean,
  log: readonly string[] = [],
): Promise<void> =>
  until(what, check, HANG_GUARD_MS, 25).catch((error: Error) => {
    throw new Error(`${error.message}\n${log.join('\n')}`);
  });

const dir = mkdtempSync(join(tmpdir(), 'sy-serve-retarget-'));
const FILE_A = join(dir, 'ft-a.gguf');
const FILE_B = join(dir, 'ft-b.gguf');
const FILE_WIDE = join(dir, 'other-base.gguf');
const PROMPT = 'The quick brown fox jumps over the lazy dog and then';

const children: ChildProcess[] = [];
after(async () => {
  await killAll(children);
  rmSync(dir, { recursive: true, force: true });
});

interface Answer {
  readonly status: number;
  readonly text: string;
}

/** A greedy completion; `keepAliveS`: the request's keep_alive (Ollama's), else serve's default. */
async function complete(url: string, model: string, keepAliveS?: number): Promise<Answer> {
  const keep = keepAliveS === undefined ? {} : { keep_alive: keepAliveS };
  const res = await fetch(`${url}/v1/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({
      model,
      prompt: PROMPT,
      max_tokens: 12,
      temperature: 0,
      ignore_eos: true,
      ...keep,
    }),
  });
  const body = (await res.json()) as { choices?: { text: string }[] };
  return { status: res.status, text: body.choices?.[0]?.text ?? JSON.stringify(body) };
}

interface ModelSleep {
  readonly sleeps: number;
  readonly asleep: number;
  readonly starts: number;
  readonly wakes: number;
}

async function sleepOf(url: string, model: string): Promise<ModelSleep> {
  const stats = (await (await fetch(`${url}/stats`)).json()) as {
    sleep: { models: Record<string, ModelSleep> };
  };
  return stats.sleep.models[model] as ModelSleep;
}

const engineModels = async (engineUrl: string): Promise<string[]> =>
  ((await (await fetch(`${engineUrl}/v1/models`)).json()) as { data: { id: string }[] }).data.map(
    (m) => m.id,
  );

/** Serve with two llama models at zero, sleeping past a short keep-alive, re-targeting, `standby` standby engines. */
function serveTwo(a: string, b: string, standby = 0): Promise<ServeProcess> {
  return startServe(
    [
      '--engine',
      'llama',
      '--model',
      `a=${a}`,
      '--model',
      `b=${b}`,
      ...ONE_REPLICA_FROM_ZERO_ARGS,
      '--keep-alive-ms',
      '400',
      '--standby-engines',
      String(standby),
      '--sleep',
      '--retarget',
    ],
    children,
  );
}

/** The `ready at URL (pid N)` lines of `model`'s engines, as [url, pid]. */
function readies(serve: ServeProcess, model: string): [string, number][] {
  return serve.stderr.flatMap((l) => {
    const m = new RegExp(`${model}: engine \\d+ ready at (\\S+) \\(pid (\\d+)\\)`).exec(l);
    return m === null ? [] : [[m[1] as string, Number(m[2])] as [string, number]];
  });
}

const retargets = async (url: string, model: string, from: string): Promise<number> =>
  (await scrapeMetrics(url)).get(`switchyard_retargets_total{model="${model}",from="${from}"}`) ?? 0;

before(() => {
  writeLlamaGguf(FILE_A, { ...TINY_LLAMA_SHAPE, seed: 101 });
  writeLlamaGguf(FILE_B, { ...TINY_LLAMA_SHAPE, seed: 202 });
  writeLlamaGguf(FILE_WIDE, { ...TINY_LLAMA_SHAPE, feedForwardLength: 256, seed: 101 });
});

describe('serve --retarget (llama)', () => {
  it("re-targets a sleeping engine of the same shape to the waiting model: same pid, that model's greedy text; a restart keeps the new model", async () => {
    const serve = await serveTwo(FILE_A, FILE_B);
    const { url, stderr } = serve;
    // b's first start: a fresh engine, its greedy text the reference.
    const firstB = await complete(url, 'b');
    assert.equal(firstB.status, 200, stderr.join('\n'));
    const [[engineUrl, pid]] = readies(serve, 'b') as [[string, number]];
    await waitFor('b asleep', async () => (await sleepOf(url, 'b')).asleep === 1);

    // a has no engine and no sleeper: it takes b's asleep engine, same process. Kept loaded for the
    // restart below (a restart takes longer than the 400 ms keep-alive).
    const answerA = await complete(url, 'a', 600);
    assert.equal(answerA.status, 200, stderr.join('\n'));
    assert.notEqual(answerA.text, firstB.text, 'the seeds give different greedy texts');
    assert.deepEqual(readies(serve, 'a'), [[engineUrl, pid]], stderr.join('\n'));
    assert.equal(await retargets(url, 'a', 'b'), 1);
    assert.ok(stderr.some((l) => /a: engine 0 re-targeted from b's asleep engine \(pid \d+,/.test(l)));
    assert.deepEqual(await engineModels(engineUrl), ['a']);
    assert.equal((await sleepOf(url, 'b')).asleep, 0, "b's sleeper was given up");
    assert.equal((await sleepOf(url, 'a')).starts, 1);

    // Killed now, the engine comes back on a's flags (its supervisor restarts it on the same port).
    process.kill(pid, 'SIGKILL');
    await waitFor('the engine restarted', () => stderr.some((l) => / restarted: ready at /.test(l)));
    assert.deepEqual(await engineModels(engineUrl), ['a'], 'restarted on the model it serves now');
    // Back to the 400 ms keep-alive.
    const again = await complete(url, 'a');
    assert.deepEqual(again, answerA, stderr.join('\n'));

    // a sleeps; b comes back the same way, on the restarted process, with its first answer's text.
    await waitFor('a asleep', async () => (await sleepOf(url, 'a')).asleep === 1);
    const restartedPid = Number(/ restarted: ready at \S+ \(pid (\d+)/.exec(stderr.join('\n'))?.[1]);
    const backB = await complete(url, 'b');
    assert.deepEqual(backB, firstB, stderr.join('\n'));
    assert.deepEqual(readies(serve, 'b').at(-1), [engineUrl, restartedPid]);
    assert.equal(await retargets(url, 'b', 'a'), 1);
    assert.deepEqual(await engineModels(engineUrl), ['b']);
    const models = ((await (await fetch(`${url}/v1/models`)).json()) as { data: { id: string }[] }).data;
    assert.deepEqual(models.map((m) => m.id).sort(), ['a', 'b']);
    assert.equal(await serve.stop(), 0);
  });

  it('re-targets an engine handed to a standby engine, before it would hand the next standby one; warms the file given up', async () => {
    const serve = await serveTwo(FILE_A, FILE_B, 1);
    const { url, stderr } = serve;
    const coldStarts = async () =>
      (
        (await (await fetch(`${url}/stats`)).json()) as {
          warmStart: {
            standby: { idle: number };
            coldStarts: { standby: number; fresh: number };
            warmCache: { kept: string[] };
          };
        }
      ).warmStart;
    await waitFor('a standby engine waiting', async () => (await coldStarts()).standby.idle === 1);
    const firstB = await complete(url, 'b');
    assert.equal(firstB.status, 200, stderr.join('\n'));
    await waitFor('b asleep, a standby engine waiting again', async () => {
      const standby = (await coldStarts()).standby.idle;
      return (await sleepOf(url, 'b')).asleep === 1 && standby === 1;
    });
    const [engineB] = readies(serve, 'b');
    const answerA = await complete(url, 'a');
    assert.equal(answerA.status, 200, stderr.join('\n'));
    assert.notEqual(answerA.text, firstB.text);
    assert.deepEqual(readies(serve, 'a'), [engineB], stderr.join('\n'));
    assert.deepEqual((await coldStarts()).coldStarts, { standby: 1, fresh: 0 }, 'no second hand-over');
    assert.equal(await retargets(url, 'a', 'b'), 1);
    // b's GGUF is no longer loaded: it goes to the warm cache as after a stop (a's left it).
    await waitFor("b's file warm", async () => (await coldStarts()).warmCache.kept.includes(FILE_B));
    assert.ok(!(await coldStarts()).warmCache.kept.includes(FILE_A));
    assert.equal(await serve.stop(), 0);
  });

  it('starts a model of another shape normally, leaving the sleeper asleep', async () => {
    const serve = await serveTwo(FILE_A, FILE_WIDE);
    const { url, stderr } = serve;
    assert.equal((await complete(url, 'a')).status, 200, stderr.join('\n'));
    await waitFor('a asleep', async () => (await sleepOf(url, 'a')).asleep === 1);
    assert.equal((await complete(url, 'b')).status, 200, stderr.join('\n'));
    const [[, pidA]] = readies(serve, 'a') as [[string, number]];
    const [[, pidB]] = readies(serve, 'b') as [[string, number]];
    assert.notEqual(pidB, pidA);
    assert.equal((await sleepOf(url, 'a')).asleep, 1);
    assert.equal(await retargets(url, 'b', 'a'), 0);
    assert.ok(!stderr.some((l) => /re-targeted|re-target of/.test(l)), stderr.join('\n'));
    assert.equal(await serve.stop(), 0);
  });

  it('a swap the engine refuses stops that engine, and the model starts afresh and answers', async () => {
    const fileB = join(dir, 'ft-b-changed.gguf');
    writeLlamaGguf(fileB, { ...TINY_LLAMA_SHAPE, seed: 202 });
    const serve = await serveTwo(FILE_A, fileB);
    const { url, stderr } = serve;
    assert.equal((await complete(url, 'a')).status, 200, stderr.join('\n'));
    await waitFor('a asleep', async () => (await sleepOf(url, 'a')).asleep === 1, stderr);
    const [[, pidA]] = readies(serve, 'a') as [[string, number]];
    // b's file changes shape after serve read it: serve still takes it for a match, the engine refuses (400).
    writeLlamaGguf(fileB, { ...TINY_LLAMA_SHAPE, feedForwardLength: 256, seed: 202 });
    assert.equal((await complete(url, 'b')).status, 200, stderr.join('\n'));
    const [[, pidB]] = readies(serve, 'b') as [[string, number]];
    assert.notEqual(pidB, pidA, stderr.join('\n'));
    assert.ok(
      stderr.some((l) => /b: re-target of a's asleep engine \(pid \d+\) failed .*400/.test(l)),
      stderr.join('\n'),
    );
    assert.equal((await scrapeMetrics(url)).get('switchyard_retarget_failures_total{model="b",from="a"}'), 1);
    assert.equal(await retargets(url, 'b', 'a'), 0);
    await waitFor(
      "a's engine stopped",
      () => {
        try {
          process.kill(pidA, 0);
          return false;
        } catch {
          return true;
        }
      },
      stderr,
    );
    // a, its sleeper gone, starts normally on its next request.
    assert.equal((await complete(url, 'a')).status, 200, stderr.join('\n'));
    assert.equal((await sleepOf(url, 'a')).starts, 2, stderr.join('\n'));
    assert.equal(await serve.stop(), 0, stderr.join('\n'));
  });
});
