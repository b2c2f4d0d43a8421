/**
 * Shared helpers for the gateway end-to-end tests: real `switchyard engine sim` children (through
 * the local-engine supervisor of src/adapters, or one child on a chosen port for restarts), an
 * in-process gateway in front of them, and HTTP helpers where every request has a client-side
 * deadline. Everything started is torn down by a `Teardown`, and any engine child still alive when
 * the test process exits is SIGKILLed, so a failed or crashed test leaves no process behind.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { createServer } from 'node:net';
import { createInterface } from 'node:readline';
import { after, before } from 'node:test';
import { fileURLToPath } from 'node:url';
import { type LocalEngine, startLocalEngines } from '../../../src/adapters/local-engines.ts';
import { ERRORS } from '../../../src/core/errors.ts';
import { type FakeUpstream, startFakeUpstream } from '../../../src/gateway/fake-upstream.ts';
import {
  type Gateway,
  type GatewayConfigInput,
  type GatewayOptions,
  startGateway,
} from '../../../src/gateway/index.ts';

const BIN = fileURLToPath(new URL('../../../bin/switchyard.mjs', import.meta.url));

/** The model every sim engine here serves (the sim's default). */
export const MODEL = 'llama-3.1-8b';

/** Default client-side deadline of one request. */
export const REQUEST_DEADLINE_MS = 20_000;

// ---- teardown ----

/** Engine pids not yet known to have exited: SIGKILLed if the test process exits first. */
const livePids = new Set<number>();
process.once('exit', () => {
  for (const pid of livePids) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // Already gone.
    }
  }
});

/** Cleanups run last-in first-out; one failing does not stop the others. */
export class Teardown {
  private readonly steps: (() => Promise<void> | void)[] = [];

  add(step: () => Promise<void> | void): void {
    this.steps.push(step);
  }

  async run(): Promise<void> {
    const errors: unknown[] = [];
    while (this.steps.length > 0) {
      const step = this.steps.pop() as () => Promise<void> | void;
      try {
        await step();
      } catch (error) {
        errors.push(error);
      }
    }
    if (errors.length > 0) throw errors[0];
  }
}

// ---- engines ----

/** One sim engine child. */
export interface SimEngine extends LocalEngine {
  /** Port of its HTTP server. */
  readonly port: number;
  /** Resolves when the child exited (after a kill, or after stop). */
  readonly exited: Promise<void>;
  /** Whether the child is still running. */
  alive(): boolean;
  /** Sends a signal and waits for the child to exit. */
  kill(signal?: NodeJS.Signals): Promise<void>;
}

/** A set of sim engines started together. */
export interface SimCluster {
  readonly engines: readonly SimEngine[];
  /** Stops every child still alive (SIGTERM, then SIGKILL after a short grace). */
  stop(): Promise<void>;
}

function portOf(url: string): number {
  return Number(new URL(url).port);
}

/**
 * Starts `count` sim engines through `startLocalEngines` (each on a free port) and registers their
 * stop with `teardown`. `args` go to every child (e.g. `--time-scale 0.1`).
 */
export async function startSims(
  count: number,
  args: readonly string[],
  teardown: Teardown,
): Promise<SimCluster> {
  const exits = Array.from({ length: count }, () => {
    let resolve!: () => void;
    const promise = new Promise<void>((r) => {
      resolve = r;
    });
    return { promise, resolve, alive: true };
  });
  const local = await startLocalEngines({
    count,
    engine: 'sim',
    args,
    stopGraceMs: 2000,
    log: () => {},
    onExit: (index) => {
      const e = exits[index];
      if (e === undefined) return;
      e.alive = false;
      e.resolve();
    },
  });
  for (const e of local.engines) livePids.add(e.pid);
  let stopped: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    stopped ??= local.stop().then(() => {
      for (const e of local.engines) livePids.delete(e.pid);
      for (const e of exits) {
        e.alive = false;
        e.resolve();
      }
    });
    return stopped;
  };
  teardown.add(stop);
  const engines = local.engines.map((engine, index): SimEngine => {
    const exit = exits[index] as (typeof exits)[number];
    return {
      ...engine,
      port: portOf(engine.url),
      exited: exit.promise,
      alive: () => exit.alive,
      async kill(signal: NodeJS.Signals = 'SIGKILL') {
        if (!exit.alive) return;
        process.kill(engine.pid, signal);
        await exit.promise;
        livePids.delete(engine.pid);
      },
    };
  });
  return { engines, stop };
}

/** Starts one sim engine child on `port` (0: any free one), outside any supervisor. */
export async function spawnSim(
  args: readonly string[],
  port: number,
  teardown: Teardown,
): Promise<SimEngine> {
  const child: ChildProcess = spawn(
    process.execPath,
    [BIN, 'engine', 'sim', ...args, '--port', String(port)],
    {
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  const pid = child.pid ?? 0;
  livePids.add(pid);
  const stderr: string[] = [];
  createInterface({ input: child.stderr as NodeJS.ReadableStream }).on('line', (l) => {
    if (stderr.length < 200) stderr.push(l);
  });
  let alive = true;
  const exited = new Promise<void>((resolve) =>
    child.once('close', () => {
      alive = false;
      livePids.delete(pid);
      resolve();
    }),
  );
  const kill = async (signal: NodeJS.Signals = 'SIGKILL'): Promise<void> => {
    if (!alive) return;
    child.kill(signal);
    await exited;
  };
  teardown.add(() => kill('SIGKILL'));
  const ready = await new Promise<Record<string, unknown>>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`sim engine: no ready line\n${stderr.join('\n')}`)),
      60_000,
    );
    createInterface({ input: child.stdout as NodeJS.ReadableStream }).on('line', (line) => {
      try {
        const v = JSON.parse(line) as Record<string, unknown>;
        if (v['event'] === 'ready') {
          clearTimeout(timer);
          resolve(v);
        }
      } catch {
        // Not the ready line.
      }
    });
    void exited.then(() => {
      clearTimeout(timer);
      reject(new Error(`sim engine exited before it was ready\n${stderr.join('\n')}`));
    });
  });
  const url = ready['url'] as string;
  return {
    url,
    port: portOf(url),
    model: ready['model'] as string,
    kvEvents: typeof ready['kvEvents'] === 'string' ? ready['kvEvents'] : null,
    pid,
    exited,
    alive: () => alive,
    kill,
  };
}

/** A loopback port nothing listens on (bound, then released). */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

// ---- gateway ----

/** A backend entry for a sim engine (with its KV-event endpoint unless `kvEvents` is false). */
export function simBackend(
  id: string,
  engine: { readonly url: string; readonly kvEvents: string | null },
  kvEvents = true,
): NonNullable<GatewayConfigInput['backends']>[number] {
  return {
    id,
    type: 'sim',
    url: engine.url,
    models: [MODEL],
    ...(kvEvents && engine.kvEvents !== null ? { kvEvents: engine.kvEvents } : {}),
  };
}

/** A gateway in this process, its log lines kept (not printed), closed by `teardown`. */
export interface TestGateway {
  readonly gateway: Gateway;
  readonly url: string;
  readonly logs: string[];
}

/** Starts a gateway on a free loopback port; `config` is the whole config but for host and port. */
export async function startTestGateway(
  config: GatewayConfigInput,
  teardown: Teardown,
  options: Omit<GatewayOptions, 'log'> = {},
): Promise<TestGateway> {
  const logs: string[] = [];
  const gateway = await startGateway(
    { ...config, host: '127.0.0.1', port: 0 },
    { ...options, log: (line) => logs.push(line) },
  );
  teardown.add(() => gateway.close());
  return { gateway, url: gateway.url, logs };
}

/**
 * A gateway over one sim engine (model MODEL, time scale 0.05) and a recording `vllm` backend for
 * `realModel` (bodies reach it unchanged): the set-up of the wire-format tests, which check what a
 * real backend receives and what a built-in engine answers for the same client bytes.
 */
export async function startSimAndRecorder(
  realModel: string,
  teardown: Teardown,
): Promise<{ readonly gw: TestGateway; readonly upstream: FakeUpstream }> {
  const upstream = await startFakeUpstream(realModel);
  teardown.add(() => upstream.close());
  const sims = await startSims(1, ['--time-scale', '0.05', '--kv-events', 'none'], teardown);
  const gw = await startTestGateway(
    {
      backends: [
        ...sims.engines.map((e, i) => simBackend(`sim${i}`, e, false)),
        { id: 'rec', type: 'vllm', url: upstream.url, models: [realModel], metricsPath: null },
      ],
    },
    teardown,
  );
  return { gw, upstream };
}

/** The wire-format tests' set-up (startSimAndRecorder) and the teardown that stops it. */
export interface SimAndRecorder {
  readonly gw: TestGateway;
  readonly upstream: FakeUpstream;
  /** Run by the file's `after` hook: a test may add what it starts. */
  readonly teardown: Teardown;
}

/**
 * A test file's startSimAndRecorder set-up: registers the file's `before` hook, which starts it,
 * and its `after` hook, which runs the teardown. Read `gw` and `upstream` in tests only.
 */
export function simAndRecorder(realModel: string): SimAndRecorder {
  const teardown = new Teardown();
  let started: { readonly gw: TestGateway; readonly upstream: FakeUpstream } | undefined;
  const get = () => {
    if (started === undefined) throw new Error('the gateway is read before its before hook ran');
    return started;
  };
  before(async () => {
    started = await startSimAndRecorder(realModel, teardown);
  });
  after(() => teardown.run());
  return {
    get gw() {
      return get().gw;
    },
    get upstream() {
      return get().upstream;
    },
    teardown,
  };
}

// ---- HTTP ----

/** A finished HTTP exchange. */
export interface Reply {
  readonly status: number;
  readonly headers: Headers;
  readonly text: string;
  /** Milliseconds from sending to the first body chunk (NaN without a body). */
  readonly firstChunkMs: number;
  /** Milliseconds from sending to the end of the body. */
  readonly totalMs: number;
}

/** Why a request got no complete reply: the deadline passed, the caller gave up, or the connection broke. */
export class NoReply extends Error {
  constructor(
    readonly kind: 'deadline' | 'aborted' | 'network',
    message: string,
    readonly partial: string,
  ) {
    super(message);
  }
}

/**
 * POSTs a JSON body (a string is sent as is) and reads the whole response, timing the first chunk.
 * Rejects with `NoReply` when `deadlineMs` passes, `signal` aborts (the client gives up when the
 * test says so, not after a time) or the connection breaks.
 */
export async function post(
  base: string,
  path: string,
  body: unknown,
  options: { headers?: Record<string, string>; deadlineMs?: number; signal?: AbortSignal } = {},
): Promise<Reply> {
  const deadlineMs = options.deadlineMs ?? REQUEST_DEADLINE_MS;
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), deadlineMs);
  const giveUp = (): void => controller.abort();
  options.signal?.addEventListener('abort', giveUp, { once: true });
  if (options.signal?.aborted) controller.abort();
  const start = performance.now();
  let partial = '';
  try {
    const res = await fetch(base + path, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...options.headers },
      body: typeof body === 'string' ? body : JSON.stringify(body),
      signal: controller.signal,
    });
    let firstChunkMs = Number.NaN;
    const decoder = new TextDecoder();
    const reader = (res.body as ReadableStream<Uint8Array>).getReader();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      if (Number.isNaN(firstChunkMs)) firstChunkMs = performance.now() - start;
      partial += decoder.decode(value, { stream: true });
    }
    partial += decoder.decode();
    return {
      status: res.status,
      headers: res.headers,
      text: partial,
      firstChunkMs,
      totalMs: performance.now() - start,
    };
  } catch (error) {
    if (options.signal?.aborted) throw new NoReply('aborted', `${path}: the client gave up`, partial);
    if (controller.signal.aborted)
      throw new NoReply('deadline', `${path}: no complete reply within ${deadlineMs} ms`, partial);
    throw new NoReply('network', `${path}: ${(error as Error).message}`, partial);
  } finally {
    clearTimeout(timer);
    options.signal?.removeEventListener('abort', giveUp);
  }
}

/** GETs a JSON document (with a deadline). */
export async function getJson<T>(url: string, headers: Record<string, string> = {}): Promise<T> {
  const res = await fetch(url, { headers, signal: AbortSignal.timeout(REQUEST_DEADLINE_MS) });
  assert.equal(res.status, 200, `GET ${url}: ${res.status}`);
  return (await res.json()) as T;
}

/** The `data:` payloads of an SSE body, in order (`[DONE]` included). */
export function sseData(text: string): string[] {
  const out: string[] = [];
  for (const event of text.split('\n\n')) {
    for (const line of event.split('\n')) if (line.startsWith('data: ')) out.push(line.slice(6));
  }
  return out;
}

/** An OpenAI-style error body. */
export interface ErrorBody {
  readonly error: { message: string; type: string; code: string; param: string | null };
}

/**
 * Asserts that `text` is an OpenAI-style error body with a catalogued SY_ERR_* code and, when
 * `status` is given, that the code's catalogued status is `status`. Returns the parsed body.
 */
export function assertErrorBody(text: string, status: number | undefined, what = ''): ErrorBody {
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    assert.fail(`${what}: error body is not JSON: ${JSON.stringify(text.slice(0, 200))}`);
  }
  const e = (body as { error?: Record<string, unknown> }).error;
  assert.ok(typeof e === 'object' && e !== null, `${what}: no "error" object in ${text.slice(0, 200)}`);
  assert.equal(typeof e['message'], 'string', `${what}: error.message`);
  assert.ok((e['message'] as string).length > 0, `${what}: empty error.message`);
  assert.equal(typeof e['type'], 'string', `${what}: error.type`);
  assert.ok(e['param'] === null || typeof e['param'] === 'string', `${what}: error.param`);
  const code = e['code'];
  assert.ok(
    typeof code === 'string' && Object.hasOwn(ERRORS, code),
    `${what}: code ${String(code)} is not catalogued`,
  );
  const entry = ERRORS[code as keyof typeof ERRORS];
  assert.equal(e['type'], entry.type, `${what}: type of ${code}`);
  if (status !== undefined) assert.equal(status, entry.status, `${what}: status ${status} for ${code}`);
  return body as ErrorBody;
}

// ---- metrics ----

/** Sum of every series of one metric in a Prometheus text body (0 when absent). */
export function metricSum(text: string, name: string, labelFilter = ''): number {
  let sum = 0;
  for (const line of text.split('\n')) {
    if (line.startsWith('#')) continue;
    if (!(line.startsWith(`${name}{`) || line.startsWith(`${name} `))) continue;
    if (labelFilter !== '' && !line.includes(labelFilter)) continue;
    sum += Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return sum;
}

/** Scrapes a /metrics endpoint. */
export async function scrape(baseUrl: string): Promise<string> {
  const res = await fetch(`${baseUrl}/metrics`, { signal: AbortSignal.timeout(REQUEST_DEADLINE_MS) });
  assert.equal(res.status, 200);
  return res.text();
}

/**
 * The tag a sim engine puts in its response ids (`cmpl-<tag><n>`), learned with one direct request:
 * maps a response that came through the gateway back to the engine that produced it.
 */
export async function engineTag(engineUrl: string): Promise<string> {
  const r = await post(engineUrl, '/v1/completions', { model: MODEL, prompt: 'tag', max_tokens: 1 });
  assert.equal(r.status, 200, r.text);
  const id = (JSON.parse(r.text) as { id: string }).id;
  const m = /^cmpl-([0-9a-f]{8})/.exec(id);
  assert.ok(m !== null, `unexpected response id ${id}`);
  return m[1] as string;
}

/** Which engine (by index in `tags`) produced a response id; -1 when none. */
export function servedBy(responseId: string, tags: readonly string[]): number {
  const dash = responseId.indexOf('-');
  const tag = responseId.slice(dash + 1, dash + 9);
  return tags.indexOf(tag);
}

/** Polls `check` every 25 ms until it is true; fails naming `what` after `timeoutMs`. */
export async function until(
  what: string,
  check: () => Promise<boolean> | boolean,
  timeoutMs = 15_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) assert.fail(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** Runs `tasks` with at most `limit` at once, results in input order. */
export async function pooled<T>(count: number, limit: number, task: (i: number) => Promise<T>): Promise<T[]> {
  const out = new Array<T>(count);
  let next = 0;
  const worker = async (): Promise<void> => {
    for (;;) {
      const i = next++;
      if (i >= count) return;
      out[i] = await task(i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, count) }, worker));
  return out;
}

/** The p-th percentile (0..100, nearest rank) of `values`. */
export function percentile(values: readonly number[], p: number): number {
  assert.ok(values.length > 0, 'percentile of nothing');
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[rank] as number;
}

/** Gateway counters as /stats serves them. */
export interface GatewayStatsJson {
  accepted: number;
  completed: number;
  failed: Record<string, number>;
  failedTotal: number;
  inFlight: number;
  queued: number;
  rejected: Record<string, number>;
  retries: number;
}

/** The `response.id` of every Responses SSE event in a streamed answer that carries one, in order. */
export function streamedResponseIds(text: string): string[] {
  return text
    .split('\n')
    .filter((l) => l.startsWith('data: {'))
    .map((l) => (JSON.parse(l.slice('data: '.length)) as { response?: { id?: string } }).response?.id)
    .filter((id): id is string => id !== undefined);
}
