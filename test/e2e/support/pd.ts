/**
 * The e2e tests' prefill/decode setups: a `switchyard serve` config naming P/D backends, and a set
 * of `sim` P/D engines (prefill and decode sides of one protocol) behind a serve, with the small
 * request helpers those tests share.
 */
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MODEL, REQUEST_DEADLINE_MS, type SimCluster, startSims, type Teardown } from './cluster.ts';
import { type ServeProcess, startServe } from './serve.ts';

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
 * Starts `prefills` prefill and `decodes` decode sim engines speaking `protocol` (time scale 0.05,
 * a 400 Gb/s modelled link, KV released after `releaseMs` uncollected) and a serve over them, with
 * the config fields in `extra`. The engines and the config folder go with `teardown`, serve with
 * `children`.
 */
export async function startSimPd(options: {
  readonly protocol: 'vllm' | 'sglang';
  readonly prefills: number;
  readonly decodes: number;
  readonly releaseMs: number;
  readonly extra?: Record<string, unknown>;
  readonly teardown: Teardown;
  readonly children: ChildProcess[];
}): Promise<SimPd> {
  const dir = mkdtempSync(join(tmpdir(), `sy-pd-${options.protocol}-`));
  options.teardown.add(() => rmSync(dir, { recursive: true, force: true }));
  const engine = ['--time-scale', '0.05', '--kv-events', 'none', '--pd-protocol', options.protocol];
  const prefill = await startSims(
    options.prefills,
    [...engine, '--pd-role', 'prefill', '--kv-release-timeout-ms', String(options.releaseMs)],
    options.teardown,
  );
  const decode = await startSims(
    options.decodes,
    [...engine, '--pd-role', 'decode', '--kv-link-gbps', '400'],
    options.teardown,
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
  const serve = await startServe(['--config', config], options.children);
  return { prefill, decode, serve };
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
