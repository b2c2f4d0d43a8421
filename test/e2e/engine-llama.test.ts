/**
 * End-to-end: `switchyard engine llama` as a real child process on the tiny random-weight model
 * (scripts/make-tiny-gguf.ts, kept in .cache/models/), driven over HTTP with the OpenAI client.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import OpenAI from 'openai';
import { ensureTinyLlamaGguf, TINY_LLAMA_DEFAULT_PATH } from '../../src/engine-servers/llama/tiny-gguf.ts';
import { spawnStandbyLlama } from './support/llama.ts';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const BIN = join(ROOT, 'bin', 'switchyard.mjs');
const MODEL = 'tiny-e2e';
const LABELS = `{model_name="${MODEL}",engine="0"}`;

interface Engine {
  child: ChildProcess;
  url: string;
  stderr: string[];
  exited: Promise<number | null>;
}

function spawnEngine(args: string[]): {
  child: ChildProcess;
  stdout: string[];
  stderr: string[];
  exited: Promise<number | null>;
} {
  const child = spawn(process.execPath, [BIN, 'engine', 'llama', ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const stdout: string[] = [];
  const stderr: string[] = [];
  createInterface({ input: child.stdout! }).on('line', (line) => stdout.push(line));
  createInterface({ input: child.stderr! }).on('line', (line) => stderr.push(line));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return { child, stdout, stderr, exited };
}

async function startEngine(args: string[]): Promise<Engine> {
  const { child, stdout, stderr, exited } = spawnEngine(['--port', '0', ...args]);
  const deadline = Date.now() + 60_000;
  while (stdout.length === 0) {
    if (child.exitCode !== null) throw new Error(`engine exited ${child.exitCode}: ${stderr.join('\n')}`);
    if (Date.now() > deadline) throw new Error(`no ready line: ${stderr.join('\n')}`);
    await new Promise((r) => setTimeout(r, 20));
  }
  const ready = JSON.parse(stdout[0]!) as Record<string, unknown>;
  assert.deepEqual(Object.keys(ready).sort(), ['engine', 'event', 'kvEvents', 'model', 'url']);
  assert.equal(ready['event'], 'ready');
  assert.equal(ready['engine'], 'llama');
  assert.equal(ready['model'], MODEL);
  assert.equal(ready['kvEvents'], null);
  assert.match(ready['url'] as string, /^http:\/\/127\.0\.0\.1:\d+$/);
  return { child, url: ready['url'] as string, stderr, exited };
}

/** One metric's value (the first series whose name and labels start with `series`). */
async function metric(engine: Engine, series: string): Promise<number> {
  const text = await (await fetch(`${engine.url}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(series) && !l.startsWith('#'));
  assert.ok(line !== undefined, `no ${series} in /metrics`);
  return Number(line.slice(line.lastIndexOf(' ') + 1));
}

let modelPath: string;
let engine: Engine;
let openai: OpenAI;

before(async () => {
  modelPath = ensureTinyLlamaGguf(join(ROOT, TINY_LLAMA_DEFAULT_PATH));
  engine = await startEngine(['--model', modelPath, '--served-model-name', MODEL, '--sequences', '3']);
  openai = new OpenAI({ baseURL: `${engine.url}/v1`, apiKey: 'unused', maxRetries: 0 });
});

after(() => {
  if (engine !== undefined && engine.child.exitCode === null) engine.child.kill('SIGKILL');
});

test('a completion and a streamed chat come back with tokens and usage', async () => {
  const completion = await openai.completions.create({
    model: MODEL,
    prompt: 'Once upon a time',
    max_tokens: 12,
    temperature: 0,
  });
  assert.equal(completion.choices[0]!.finish_reason, 'length');
  assert.ok(completion.choices[0]!.text.length > 0);
  assert.equal(completion.usage?.completion_tokens, 12);
  assert.ok((completion.usage?.prompt_tokens ?? 0) > 4);

  const stream = await openai.chat.completions.create({
    model: MODEL,
    messages: [{ role: 'user', content: 'Stream something, please.' }],
    max_tokens: 10,
    stream: true,
    stream_options: { include_usage: true },
  });
  let content = '';
  let contentChunks = 0;
  let usage: OpenAI.CompletionUsage | null | undefined;
  let finish: string | null | undefined;
  /** The last chunk with a choice: vLLM puts the finish_reason on the last token's chunk. */
  let lastChoice: { delta: string; finish: string | null | undefined } | undefined;
  for await (const chunk of stream) {
    const delta = chunk.choices[0]?.delta.content ?? '';
    if (delta !== '') contentChunks++;
    content += delta;
    finish = chunk.choices[0]?.finish_reason ?? finish;
    if (chunk.choices.length > 0) lastChoice = { delta, finish: chunk.choices[0]?.finish_reason };
    if (chunk.usage) usage = chunk.usage;
  }
  assert.ok(contentChunks >= 2, `streamed in ${contentChunks} chunk(s)`);
  assert.ok(content.length > 0);
  assert.equal(finish, 'length');
  assert.equal(lastChoice?.finish, 'length');
  assert.notEqual(lastChoice?.delta, '', 'the finish rides on the last token, not on an empty chunk');
  assert.equal(usage?.completion_tokens, 10);
  assert.ok((usage?.prompt_tokens ?? 0) > 10);
});

test('a second request sharing a long prefix reports cached tokens and a prefix-cache hit', async () => {
  const system = 'You are the switchyard test assistant. Answer briefly and never repeat yourself. '.repeat(
    12,
  );
  const hitsBefore = await metric(engine, `vllm:prefix_cache_hits_total${LABELS}`);
  const queriesBefore = await metric(engine, `vllm:prefix_cache_queries_total${LABELS}`);
  const first = await openai.completions.create({ model: MODEL, prompt: `${system}Q: one?`, max_tokens: 4 });
  const second = await openai.completions.create({ model: MODEL, prompt: `${system}Q: two?`, max_tokens: 4 });
  const firstPrompt = first.usage?.prompt_tokens ?? 0;
  const cached = second.usage?.prompt_tokens_details?.cached_tokens ?? 0;
  assert.ok(firstPrompt > 200, `prompt of ${firstPrompt} tokens`);
  // Everything up to where the questions differ is reused.
  assert.ok(cached > firstPrompt - 8 && cached < firstPrompt, `cached ${cached} of ${firstPrompt}`);
  const hitsAfter = await metric(engine, `vllm:prefix_cache_hits_total${LABELS}`);
  const queriesAfter = await metric(engine, `vllm:prefix_cache_queries_total${LABELS}`);
  assert.equal(hitsAfter - hitsBefore, cached + (first.usage?.prompt_tokens_details?.cached_tokens ?? 0));
  assert.equal(queriesAfter - queriesBefore, firstPrompt + (second.usage?.prompt_tokens ?? 0));
});

test("vLLM's cache_salt: a sequence holding another salt's prompt (or an unsalted one) is not reused", async () => {
  const system = 'You are the salted test assistant. Answer in a few words and stay on topic. '.repeat(12);
  const cachedOf = async (question: string, salt: string | undefined): Promise<number> => {
    const res = await fetch(`${engine.url}/v1/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        model: MODEL,
        prompt: `${system}Q: ${question}?`,
        max_tokens: 2,
        cache_salt: salt,
      }),
    });
    assert.equal(res.status, 200);
    const usage = ((await res.json()) as { usage: { prompt_tokens_details: { cached_tokens: number } } })
      .usage;
    return usage.prompt_tokens_details.cached_tokens;
  };
  await cachedOf('one', 'tenant-a');
  assert.ok((await cachedOf('two', 'tenant-a')) > 100, 'the same salt reuses the prefix');
  assert.equal(await cachedOf('three', 'tenant-b'), 0);
  assert.ok((await cachedOf('four', 'tenant-b')) > 100);
  // Unsalted: none of the salted system prompt (~200 tokens); at most the few first tokens an earlier
  // test's unsalted prompt shares with it.
  const unsalted = await cachedOf('five', undefined);
  assert.ok(unsalted < 20, `cached ${unsalted}`);
});

test("/v1/models lists vLLM's max_model_len: the context of one sequence, which its 400 enforces", async () => {
  const list = (await (await fetch(`${engine.url}/v1/models`)).json()) as { data: Record<string, unknown>[] };
  const len = list.data[0]!['max_model_len'] as number;
  assert.ok(Number.isSafeInteger(len) && len > 0, `max_model_len ${len}`);
  const over = await fetch(`${engine.url}/v1/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: MODEL, prompt: 'Hi', max_tokens: len }),
  });
  assert.equal(over.status, 400);
  const error = ((await over.json()) as { error: { message: string; param: string } }).error;
  assert.equal(error.param, 'max_tokens');
  assert.match(error.message, new RegExp(`exceed the context of ${len} tokens per sequence`));
});

test('concurrent requests run on several sequences and all complete', async () => {
  const requests = Array.from({ length: 6 }, (_, i) =>
    openai.completions.create({
      model: MODEL,
      prompt: `Concurrent request ${i}: write on.`,
      max_tokens: 120,
      seed: i,
    }),
  );
  let running = 0;
  let waiting = 0;
  let done = false;
  const all = Promise.all(requests).finally(() => {
    done = true;
  });
  while (!done) {
    running = Math.max(running, await metric(engine, `vllm:num_requests_running${LABELS}`));
    waiting = Math.max(waiting, await metric(engine, `vllm:num_requests_waiting${LABELS}`));
    await new Promise((r) => setTimeout(r, 10));
  }
  for (const out of await all) {
    assert.equal(out.usage?.completion_tokens, 120);
    assert.equal(out.choices[0]!.finish_reason, 'length');
  }
  assert.ok(running >= 2 && running <= 3, `at most 3 sequences, several at once: saw ${running}`);
  assert.ok(waiting <= 3, `saw ${waiting} waiting`);
  assert.equal(await metric(engine, `vllm:num_requests_running${LABELS}`), 0);
});

test('a stop string ends the text before it', async () => {
  const body = { model: MODEL, prompt: 'Stop test:', max_tokens: 30, temperature: 1, seed: 11 };
  const free = await openai.completions.create(body);
  const text = free.choices[0]!.text;
  const stop = text.slice(6, 8);
  const stopped = await openai.completions.create({ ...body, stop: [stop] });
  assert.equal(stopped.choices[0]!.finish_reason, 'stop');
  assert.equal(stopped.choices[0]!.text, text.slice(0, text.indexOf(stop)));
});

test('the engine reports its start-up: stages that add up to ready, ready before the first token', async () => {
  await openai.completions.create({ model: MODEL, prompt: 'Start-up', max_tokens: 2 });
  const ready = await metric(engine, `switchyard:engine_startup_ready_seconds${LABELS}`);
  const firstToken = await metric(engine, `switchyard:engine_startup_first_token_seconds${LABELS}`);
  assert.ok(ready > 0, `ready at ${ready} s`);
  assert.ok(firstToken >= ready, `first token at ${firstToken} s, ready at ${ready} s`);
  const stages = ['runtime', 'import', 'binding', 'weights', 'context', 'listen'];
  let sumS = 0;
  for (const stage of stages) {
    const labels = `{model_name="${MODEL}",engine="0",stage="${stage}"}`;
    const s = await metric(engine, `switchyard:engine_startup_stage_seconds${labels}`);
    assert.ok(s >= 0, `${stage}: ${s}`);
    sumS += s;
  }
  assert.ok(Math.abs(sumS - ready) < 1e-6, `stages add up to ${sumS}, ready at ${ready}`);
  assert.equal(
    await metric(engine, `switchyard:engine_model_bytes${LABELS}`),
    readFileSync(modelPath).length,
  );
  // One JSON line on stderr at the first token, with the same figures.
  const lines = engine.stderr.filter((l) => l.includes('"event":"startup"'));
  assert.equal(lines.length, 1, engine.stderr.join('\n'));
  const line = JSON.parse(lines[0]!) as {
    readyS: number;
    firstTokenS: number;
    stagesS: Record<string, number>;
  };
  assert.deepEqual(Object.keys(line.stagesS), stages);
  assert.ok(line.firstTokenS >= line.readyS);
  assert.ok(Math.abs(line.readyS - ready) < 0.002, `${line.readyS} against ${ready}`);
});

test('a standby engine loads node-llama-cpp first, takes its model on stdin, and counts its start-up from it', async () => {
  const { child, exited, line } = spawnStandbyLlama();
  try {
    assert.deepEqual(await line(1), { event: 'standby', engine: 'llama' });
    child.stdin!.end(`${JSON.stringify({ model: modelPath, servedModelName: 'standby-model' })}\n`);
    const ready = await line(2);
    assert.equal(ready['event'], 'ready');
    assert.equal(ready['model'], 'standby-model');
    const url = ready['url'] as string;
    const answer = await fetch(`${url}/v1/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'standby-model', prompt: 'Hi', max_tokens: 2 }),
    });
    assert.equal(answer.status, 200);
    const text = await (await fetch(`${url}/metrics`)).text();
    const value = (name: string): number => {
      const m = new RegExp(`^${name}\\{[^}]*\\} (\\S+)$`, 'm').exec(text);
      assert.ok(m !== null, `no ${name}`);
      return Number(m[1]);
    };
    const readyS = value('switchyard:engine_startup_ready_seconds');
    assert.ok(value('switchyard:engine_standby_seconds') > 0);
    assert.ok(readyS > 0 && value('switchyard:engine_startup_first_token_seconds') >= readyS);
    // Only the stages after the model arrived, adding up to ready.
    const stages = [
      ...text.matchAll(/^switchyard:engine_startup_stage_seconds\{[^}]*stage="(\w+)"\} (\S+)$/gm),
    ];
    assert.deepEqual(
      stages.map((m) => m[1]),
      ['weights', 'context', 'listen'],
    );
    const sumS = stages.reduce((a, m) => a + Number(m[2]), 0);
    assert.ok(Math.abs(sumS - readyS) < 1e-6, `${sumS} against ${readyS}`);
    child.kill('SIGTERM');
    assert.equal(await exited, 0);
  } finally {
    if (child.exitCode === null) child.kill('SIGKILL');
  }
});

test('a standby engine refuses --model, and a bad line on stdin, with one error line', async () => {
  const both = spawnEngine(['--standby', '--model', modelPath]);
  assert.equal(await both.exited, 2);
  assert.match(both.stderr.join('\n'), /no --model with --standby.*SY_ERR_INVALID_ARGUMENT/);
  const child = spawn(process.execPath, [BIN, 'engine', 'llama', '--standby', '--port', '0'], {
    stdio: ['pipe', 'ignore', 'pipe'],
  });
  const stderr: string[] = [];
  createInterface({ input: child.stderr! }).on('line', (line) => stderr.push(line));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  child.stdin!.end('not json\n');
  assert.equal(await exited, 2);
  assert.equal(stderr.length, 1, stderr.join('\n'));
  assert.match(stderr[0]!, /invalid standby 'not json'.*SY_ERR_INVALID_ARGUMENT/);
});

test('SIGTERM drains the request in flight and exits 0', async () => {
  const inFlight = openai.completions.create({ model: MODEL, prompt: 'Last words', max_tokens: 300 });
  const deadline = Date.now() + 10_000;
  while ((await metric(engine, `vllm:num_requests_running${LABELS}`)) === 0) {
    assert.ok(Date.now() < deadline, 'the request never started');
    await new Promise((r) => setTimeout(r, 5));
  }
  engine.child.kill('SIGTERM');
  const out = await inFlight;
  assert.equal(out.usage?.completion_tokens, 300);
  assert.equal(await engine.exited, 0);
  assert.ok(
    engine.stderr.some((l) => l.includes('SIGTERM, draining 1 in-flight')),
    engine.stderr.join('\n'),
  );
});

test('a missing, unreadable or broken model is one error line and exit 2', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'sy-llama-e2e-'));
  try {
    const half = join(dir, 'half.gguf');
    const bytes = readFileSync(modelPath);
    writeFileSync(half, bytes.subarray(0, bytes.length >> 1));
    for (const [args, why] of [
      [['--model', join(dir, 'missing.gguf')], /missing\.gguf.*ENOENT/],
      [['--model', join(ROOT, 'package.json')], /package\.json.*no GGUF header/],
      [['--model', half], /half\.gguf could not be loaded: .*not within the file bounds/],
      [[], /--model PATH\.gguf/],
    ] as const) {
      const run = spawnEngine([...args]);
      assert.equal(await run.exited, 2, run.stderr.join('\n'));
      assert.equal(run.stderr.length, 1, run.stderr.join('\n'));
      assert.match(run.stderr[0]!, /^switchyard: .*\[SY_ERR_INVALID_ARGUMENT\]$/);
      assert.match(run.stderr[0]!, why);
      assert.deepEqual(run.stdout, []);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
