/**
 * The e2e tests' prefill/decode setups: a `switchyard serve` config naming P/D backends, and a set
 * of `sim` P/D engines (prefill and decode sides of one protocol) behind a serve, with the small
 * request helpers those tests share.
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before } from 'node:test';
import { MODEL, REQUEST_DEADLINE_MS, type SimCluster, startSims, Teardown } from './cluster.ts';
import { SERVE_START_GUARD_MS, type ServeProcess, startServe } from './serve.ts';
import { killAll, scrapeMetrics, until } from './wait.ts';

/** One P/D backend of a serve config. */
export interface PdBackend {
  readonly id: string;
  readonly url: string;
  readonly role: 'prefill' | 'decode';
}

/**
 * Writes a serve config with `backends` (all of engine `type`, serving `model`, speaking
 * `protocol`) and the config fields in `extra`; returns its path.
 */
export function writePdConfig(
  dir: string,
  backends: readonly PdBackend[],
  options: {
    readonly type: 'sim' | 'llama';
    readonly model: string;
    readonly protocol: 'vllm' | 'sglang';
    readonly extra?: Record<string, unknown>;
  },
): string {
  const config = join(dir, 'pd.yaml');
  writeFileSync(
    config,
    JSON.stringify({
      backends: backends.map((b) => ({
        id: b.id,
        type: options.type,
        url: b.url,
        models: [options.model],
        role: b.role,
        pdProtocol: options.protocol,
      })),
      ...options.extra,
    }),
  );
  return config;
}

/** Sim P/D engines of one protocol behind a `switchyard serve`. */
export interface SimPd {
  readonly prefill: SimCluster;
  readonly decode: SimCluster;
  readonly serve: ServeProcess;
}

/**
 * A test file's sim P/D cluster: registers the file's `before` hook, which starts `prefills`
 * prefill and `decodes` decode sim engines speaking `protocol` (time scale 0.05, a 400 Gb/s
 * modelled link, KV released after `releaseMs` uncollected) and a serve over them with the config
 * fields in `extra`, and its `after` hook, which stops them all. Read the fields in tests only.
 */
export function simPdCluster(options: {
  readonly protocol: 'vllm' | 'sglang';
  readonly prefills: number;
  readonly decodes: number;
  readonly releaseMs: number;
  readonly extra?: Record<string, unknown>;
}): SimPd {
  const teardown = new Teardown();
  const children: ChildProcess[] = [];
  let started: SimPd | undefined;
  const get = (): SimPd => {
    if (started === undefined) throw new Error('the P/D cluster is read before its before hook ran');
    return started;
  };
  before(async () => {
    started = await startSimPd(options, teardown, children);
  });
  after(async () => {
    await killAll(children);
    await teardown.run();
  });
  return {
    get prefill() {
      return get().prefill;
    },
    get decode() {
      return get().decode;
    },
    get serve() {
      return get().serve;
    },
  };
}

async function startSimPd(
  options: Parameters<typeof simPdCluster>[0],
  teardown: Teardown,
  children: ChildProcess[],
): Promise<SimPd> {
  const dir = mkdtempSync(join(tmpdir(), `sy-pd-${options.protocol}-`));
  teardown.add(() => rmSync(dir, { recursive: true, force: true }));
  const engine = ['--time-scale', '0.05', '--kv-events', 'none', '--pd-protocol', options.protocol];
  const prefill = await startSims(
    options.prefills,
    [...engine, '--pd-role', 'prefill', '--kv-release-timeout-ms', String(options.releaseMs)],
    teardown,
  );
  const decode = await startSims(
    options.decodes,
    [...engine, '--pd-role', 'decode', '--kv-link-gbps', '400'],
    teardown,
  );
  const backends: PdBackend[] = [
    ...prefill.engines.map((e, i) => ({ id: `p${i}`, url: e.url, role: 'prefill' as const })),
    ...decode.engines.map((e, i) => ({ id: `d${i}`, url: e.url, role: 'decode' as const })),
  ];
  const config = writePdConfig(dir, backends, {
    type: 'sim',
    model: MODEL,
    protocol: options.protocol,
    extra: { routing: { policy: 'round-robin' }, ...options.extra },
  });
  const serve = await startServe(['--config', config], children);
  await untilInService(
    serve.url,
    backends.map((b) => b.id),
  );
  return { prefill, decode, serve };
}

/**
 * Waits until the gateway at `url` has every instance in `ids` in service (its
 * `switchyard_gateway_instance_healthy` gauge is 1). A P/D side stays out until a health check
 * confirms its engine's role; serve listens after one round, and on a loaded machine that round may
 * time out for some of them (then they come in a round later). Tests that count on every side
 * taking requests from the first one (round robin's order, say) wait for this first.
 */
export async function untilInService(url: string, ids: readonly string[]): Promise<void> {
  await until(
    `${ids.join(', ')} in service`,
    async () => {
      const up = new Set<string>();
      for (const [sample, value] of await scrapeMetrics(url)) {
        const id = /^switchyard_gateway_instance_healthy\{.*instance="([^"]*)"/.exec(sample)?.[1];
        if (id !== undefined && value === 1) up.add(id);
      }
      return ids.every((id) => up.has(id));
    },
    SERVE_START_GUARD_MS,
  );
}

/** A JSON call: its status and body. */
export async function json(
  url: string,
  init?: RequestInit,
): Promise<{ status: number; body: Record<string, unknown> }> {
  const r = await fetch(url, { ...init, signal: AbortSignal.timeout(REQUEST_DEADLINE_MS) });
  return { status: r.status, body: (await r.json()) as Record<string, unknown> };
}

/** A chat completion of MODEL whose prompt fills a few KV blocks, 12 tokens, fields in `extra`. */
export const chat = (extra: Record<string, unknown> = {}): RequestInit => ({
  method: 'POST',
  headers: { 'content-type': 'application/json' },
  body: JSON.stringify({
    model: MODEL,
    messages: [{ role: 'user', content: 'a prompt long enough to fill a few KV blocks '.repeat(20) }],
    max_tokens: 12,
    ...extra,
  }),
});

/** A P/D engine's `/pd/stats`. */
export const pdStats = (url: string): Promise<Record<string, unknown>> =>
  json(`${url}/pd/stats`).then((r) => r.body);

/** Streams `chat()` through `url`: a 200, one event per token at least, and `[DONE]` last. */
export async function streamChat(url: string): Promise<Response> {
  const r = await fetch(`${url}/v1/chat/completions`, {
    ...chat({ stream: true }),
    signal: AbortSignal.timeout(REQUEST_DEADLINE_MS),
  });
  assert.equal(r.status, 200);
  const text = await r.text();
  const events = text.split('\n\n').filter((e) => e.startsWith('data: {'));
  assert.ok(events.length >= 12, `one event per token at least, got ${events.length}`);
  assert.ok(text.trimEnd().endsWith('data: [DONE]'));
  return r;
}

/** Waits until the prefill engine at `url` released one more transfer on its timeout than in `before`. */
export async function untilReleasedOnTimeout(
  url: string,
  before: Record<string, unknown>,
  releaseMs: number,
): Promise<void> {
  await until(
    'the uncollected KV released',
    async () => (await pdStats(url))['releasedTimeout'] === (before['releasedTimeout'] as number) + 1,
    releaseMs * 10,
    50,
  );
}

/** The gateway's /stats, checked balanced: every accepted request completed or failed, none in flight. */
export async function balancedStats(serveUrl: string): Promise<Record<string, unknown>> {
  const stats = (await json(`${serveUrl}/stats`)).body;
  assert.equal(stats['accepted'], (stats['completed'] as number) + (stats['failedTotal'] as number));
  assert.equal(stats['inFlight'], 0);
  return stats;
}
