/**
 * End-to-end: how `switchyard serve` starts and stops, as real processes on loopback. Usage errors
 * (a busy port, an unknown model) exit 2 with one line before any engine starts; each engine gets a
 * line as it comes up; engines exit when the gateway is SIGKILLed; a second signal reports the drain
 * and streams still finish; a third signal, or the drain deadline, ends open streams with an SSE
 * error and `[DONE]`. Deadlines here only guard against hangs.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { closeSync, ftruncateSync, mkdtempSync, openSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { after, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { alive } from './support/processes.ts';

const BIN = fileURLToPath(new URL('../../bin/switchyard.mjs', import.meta.url));
/** Guard against a hang, not a performance bound. */
const HANG_GUARD_MS = 60_000;
/**
 * Each test's own hang guard: HANG_GUARD_MS per serve process it runs to completion or to its
 * listening line. Not a suite-wide bound: on a loaded machine one process start alone took 16 s
 * (a fresh-clone CI at load 30), and a describe-wide 60 s cancelled the later usage-error tests.
 */
const guard = (processes: number) => ({ timeout: HANG_GUARD_MS * processes });

interface Serve {
  readonly child: ChildProcess;
  readonly stdout: string[];
  readonly stderr: string[];
  readonly exited: Promise<number | null>;
}

const cleanups: (() => Promise<void>)[] = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

function spawnServe(args: string[]): Serve {
  const child = spawn(process.execPath, [BIN, 'serve', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  const stdout: string[] = [];
  const stderr: string[] = [];
  createInterface({ input: child.stdout as NodeJS.ReadableStream }).on('line', (l) => stdout.push(l));
  createInterface({ input: child.stderr as NodeJS.ReadableStream }).on('line', (l) => stderr.push(l));
  const exited = new Promise<number | null>((resolve) => child.once('close', (code) => resolve(code)));
  cleanups.push(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
      await exited;
    }
  });
  return { child, stdout, stderr, exited };
}

/** Polls `check` until it is true; fails after HANG_GUARD_MS with `what`. */
async function until(what: string, check: () => boolean): Promise<void> {
  const deadline = Date.now() + HANG_GUARD_MS;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

/** Starts serve and waits for its listening line; returns its URL. */
async function startServe(args: string[]): Promise<Serve & { url: string }> {
  const s = spawnServe(['--port', '0', ...args]);
  let code: number | null | undefined;
  void s.exited.then((c) => {
    code = c;
  });
  await until('the listening line', () => {
    if (code !== undefined) throw new Error(`serve exited ${code}: ${s.stderr.join('\n')}`);
    return s.stdout.some((l) => l.includes('listening on'));
  });
  const url = /listening on (http:\/\/\S+)/.exec(s.stdout.join('\n'))?.[1] as string;
  return { ...s, url };
}

function enginePids(stderr: readonly string[]): number[] {
  return stderr.flatMap((l) => {
    const m = /engine \d+ ready at \S+ \(pid (\d+),/.exec(l);
    return m === null ? [] : [Number(m[1])];
  });
}

/** Opens a streaming chat completion and collects its body as it arrives. */
function openStream(url: string, maxTokens: number): { text: () => string; done: Promise<string> } {
  let body = '';
  const done = (async () => {
    const res = await fetch(`${url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        model: 'llama-3.1-8b',
        messages: [{ role: 'user', content: 'Hello' }],
        max_tokens: maxTokens,
        stream: true,
      }),
    });
    assert.equal(res.status, 200);
    const decoder = new TextDecoder();
    for await (const chunk of res.body as AsyncIterable<Uint8Array>) body += decoder.decode(chunk);
    return body;
  })();
  return { text: () => body, done };
}

function dataEvents(body: string): string[] {
  return body
    .split('\n\n')
    .map((e) => e.trim())
    .filter((e) => e.startsWith('data: '))
    .map((e) => e.slice('data: '.length));
}

describe('switchyard serve: usage errors before anything starts', () => {
  it('a port in use exits 2 with one line and starts no engine', guard(1), async () => {
    const holder = createServer();
    await new Promise<void>((resolve) => holder.listen(0, '127.0.0.1', resolve));
    const port = (holder.address() as { port: number }).port;
    try {
      const s = spawnServe(['--port', String(port)]);
      assert.equal(await s.exited, 2);
      assert.equal(s.stderr.length, 1, s.stderr.join('\n'));
      assert.match(s.stderr[0] as string, new RegExp(`port ${port} on 127\\.0\\.0\\.1 is already in use`));
      assert.equal(s.stdout.length, 0);
    } finally {
      holder.close();
    }
  });

  it('an unknown --model or --gpu exits 2 with one line before any engine starts', guard(2), async () => {
    for (const args of [
      ['--model', 'no-such-model'],
      ['--gpu', 'no-such-gpu'],
    ]) {
      const s = spawnServe(['--port', '0', ...args]);
      assert.equal(await s.exited, 2);
      assert.equal(s.stderr.length, 1, s.stderr.join('\n'));
      assert.match(
        s.stderr[0] as string,
        /unknown (model|gpu) 'no-such-[a-z]+'; valid: .*SY_ERR_UNKNOWN_NAME/,
      );
    }
  });

  it(
    'a GGUF model larger than free memory exits 2 with one line before any engine starts',
    guard(1),
    async () => {
      const dir = mkdtempSync(join(tmpdir(), 'sy-serve-'));
      cleanups.push(async () => rmSync(dir, { recursive: true, force: true }));
      // Sparse: a terabyte by its size, no disk used.
      const model = join(dir, 'huge.gguf');
      const fd = openSync(model, 'w');
      ftruncateSync(fd, 2 ** 40);
      closeSync(fd);
      const s = spawnServe(['--port', '0', '--engine', 'llama', '--model', model]);
      assert.equal(await s.exited, 2);
      assert.equal(s.stderr.length, 1, s.stderr.join('\n'));
      assert.match(s.stderr[0] as string, /is 1024\.0 GiB but only [\d.]+ GiB of memory is free/);
    },
  );

  it('a bad flag value exits 2 as well', guard(1), async () => {
    const s = spawnServe(['--port', 'eighty']);
    assert.equal(await s.exited, 2);
    assert.match(s.stderr.join('\n'), /--port <port>' argument 'eighty' is invalid/);
  });
});

describe('switchyard serve: start-up and the gateway dying', () => {
  it('prints a line per engine, and its engines exit when the gateway is SIGKILLed', guard(2), async () => {
    const s = await startServe(['--engines', '2']);
    const pids = enginePids(s.stderr);
    assert.equal(pids.length, 2, s.stderr.join('\n'));
    for (const i of [0, 1])
      assert.ok(s.stderr.some((l) => l.includes(`engine ${i} ready at http://127.0.0.1:`)));
    for (const pid of pids) assert.ok(alive(pid), `engine ${pid} runs`);
    s.child.kill('SIGKILL');
    await s.exited;
    await until('the orphaned engines to exit', () => pids.every((pid) => !alive(pid)));
  });
});

describe('switchyard serve: signals during a drain', () => {
  it('a second signal says what is draining, and the stream still completes', guard(2), async () => {
    // Ten times slower than modelled: 40 tokens take a few hundred ms to a few s.
    const s = await startServe(['--engines', '1', '--time-scale', '10']);
    const stream = openStream(s.url, 40);
    await until('the first chunk', () => stream.text().includes('data: '));
    // Twice at once, as a Ctrl-C under `npm start` arrives (terminal and npm): one request to drain.
    s.child.kill('SIGTERM');
    s.child.kill('SIGTERM');
    await until('the drain line', () => s.stderr.some((l) => l.includes('SIGTERM: draining')));
    // A different signal is never coalesced with the first, however soon it comes.
    s.child.kill('SIGINT');
    const body = await stream.done;
    const events = dataEvents(body);
    assert.equal(events.at(-1), '[DONE]');
    assert.ok(!body.includes('"error"'), body.slice(-500));
    assert.equal(await s.exited, 0);
    const report = s.stderr.find((l) => l.includes('still draining'));
    assert.match(report ?? s.stderr.join('\n'), /still draining 1 request\(s\) \(1 streaming, 0 queued\)/);
    assert.equal(s.stderr.filter((l) => l.includes('still draining')).length, 1, s.stderr.join('\n'));
    assert.ok(!s.stderr.some((l) => l.includes('stopping now')), s.stderr.join('\n'));
  });

  it('a third signal ends open streams with an SSE error and [DONE]', guard(2), async () => {
    const s = await startServe(['--engines', '1', '--time-scale', '10']);
    const stream = openStream(s.url, 100_000);
    await until('the first chunk', () => stream.text().includes('data: '));
    // Alternating, so no repeat falls in the window where the same signal counts once.
    for (const [i, signal] of (['SIGINT', 'SIGTERM', 'SIGINT'] as const).entries()) {
      s.child.kill(signal);
      const expected = i === 0 ? 'SIGINT: draining' : i === 1 ? 'still draining' : 'stopping now';
      await until(`signal ${i + 1} to be heard`, () => s.stderr.some((l) => l.includes(expected)));
    }
    const events = dataEvents(await stream.done);
    assert.equal(events.at(-1), '[DONE]');
    const error = JSON.parse(events.at(-2) as string) as { error?: { code?: string } };
    assert.equal(error.error?.code, 'SY_ERR_DRAINING');
    assert.equal(await s.exited, 0);
  });

  it('the drain deadline ends open streams the same way', guard(2), async () => {
    const dir = mkdtempSync(join(tmpdir(), 'sy-serve-'));
    cleanups.push(async () => rmSync(dir, { recursive: true, force: true }));
    const config = join(dir, 'gateway.yaml');
    writeFileSync(config, 'drainTimeoutMs: 300\n');
    const s = await startServe(['--engines', '1', '--time-scale', '10', '--config', config]);
    const stream = openStream(s.url, 100_000);
    await until('the first chunk', () => stream.text().includes('data: '));
    s.child.kill('SIGTERM');
    const events = dataEvents(await stream.done);
    assert.equal(events.at(-1), '[DONE]');
    assert.match(events.at(-2) as string, /SY_ERR_DRAINING/);
    assert.equal(await s.exited, 0);
  });
});
