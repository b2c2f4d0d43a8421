/**
 * The e2e tests' built-in llama engines: `switchyard engine llama` as a real child process on the
 * tiny model (two sequences, a 1024-token context), started on port 0 and read from its ready line,
 * the P/D stats those tests compare, and completions on them (vLLM's P/D flow included).
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import type { LlamaPdStats } from '../../../src/engine-servers/llama/pd.ts';
import { ensureTinyLlamaGguf, TINY_LLAMA_DEFAULT_PATH } from '../../../src/engine-servers/llama/tiny-gguf.ts';
import { VLLM_PREFILL_KV_PARAMS } from '../../../src/gateway/pd/pd-bodies.ts';
import { MODEL, simAndRecorder, startTestGateway, Teardown, type TestGateway } from './cluster.ts';
import { fileSetUp } from './file-set-up.ts';

const ROOT = fileURLToPath(new URL('../../..', import.meta.url));
const BIN = join(ROOT, 'bin', 'switchyard.mjs');

/** The name the llama engines of these tests serve the tiny model under. */
export const LLAMA_MODEL = 'tiny-pd';

/** A started llama engine: its process, URL, port, ready line and exit. */
export interface LlamaEngine {
  readonly child: ChildProcess;
  readonly url: string;
  readonly port: number;
  readonly ready: Record<string, unknown>;
  readonly exited: Promise<number | null>;
}

/** The tiny model's GGUF path, written first if it is not there yet. */
export const tinyLlamaModel = (): string => ensureTinyLlamaGguf(join(ROOT, TINY_LLAMA_DEFAULT_PATH));

/**
 * Starts `switchyard engine llama` serving LLAMA_MODEL with the flags in `args` (the model among
 * them); resolves on its ready line, rejects with its stderr if it exits first.
 */
export async function startLlamaEngine(args: readonly string[]): Promise<LlamaEngine> {
  const child = spawn(
    process.execPath,
    [
      BIN,
      'engine',
      'llama',
      '--port',
      '0',
      '--served-model-name',
      LLAMA_MODEL,
      '--sequences',
      '2',
      '--context-size',
      '1024',
      ...args,
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  const stderr: string[] = [];
  createInterface({ input: child.stderr! }).on('line', (l) => stderr.push(l));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const line = await new Promise<string>((resolve, reject) => {
    createInterface({ input: child.stdout! }).once('line', resolve);
    child.once('exit', (code) => reject(new Error(`engine exited ${code}: ${stderr.join('\n')}`)));
  });
  const ready = JSON.parse(line) as Record<string, unknown>;
  const url = ready['url'] as string;
  return { child, url, port: Number(new URL(url).port), ready, exited };
}

/** A standby llama engine as a child process, its stdout lines read in order. */
export interface StandbyLlama {
  readonly child: ChildProcess;
  readonly stderr: readonly string[];
  readonly exited: Promise<number | null>;
  /** The engine's `n`-th stdout line (1-based) as JSON; fails if it exits first or after 60 s. */
  line(n: number): Promise<Record<string, unknown>>;
}

/**
 * Spawns `switchyard engine llama --standby --port 0` with `args` (in `env`, default this process's);
 * stdin stays open for its model.
 */
export function spawnStandbyLlama(
  args: readonly string[] = [],
  env: NodeJS.ProcessEnv = process.env,
): StandbyLlama {
  const child = spawn(process.execPath, [BIN, 'engine', 'llama', '--standby', ...args, '--port', '0'], {
    stdio: ['pipe', 'pipe', 'pipe'],
    env,
  });
  const stdout: string[] = [];
  const stderr: string[] = [];
  createInterface({ input: child.stdout! }).on('line', (line) => stdout.push(line));
  createInterface({ input: child.stderr! }).on('line', (line) => stderr.push(line));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const line = async (n: number): Promise<Record<string, unknown>> => {
    const deadline = Date.now() + 60_000; // a hang guard, not a bound on the start
    while (stdout.length < n) {
      assert.equal(child.exitCode, null, stderr.join('\n'));
      assert.ok(Date.now() < deadline, `no line ${n}: ${stderr.join('\n')}`);
      await new Promise((r) => setTimeout(r, 20));
    }
    return JSON.parse(stdout[n - 1]!) as Record<string, unknown>;
  };
  return { child, stderr, exited, line };
}

/** Sends SIGTERM to each started engine (unstarted ones are skipped) and waits for their exits. */
export async function stopLlamaEngines(engines: readonly (LlamaEngine | undefined)[]): Promise<void> {
  for (const e of engines) e?.child.kill('SIGTERM');
  await Promise.all(engines.map((e) => e?.exited));
}

/** A llama engine on the tiny model and a gateway whose one backend (`l0`) it is. */
export interface LlamaGateway {
  readonly engine: LlamaEngine;
  readonly gw: TestGateway;
}

/**
 * Starts a llama engine on the tiny model (default flags, then `args`, which win) and a gateway in
 * front of it; `teardown` closes the gateway, then stops the engine.
 */
export async function startLlamaGateway(
  teardown: Teardown,
  args: readonly string[] = [],
): Promise<LlamaGateway> {
  const engine = await startLlamaEngine(['--model', tinyLlamaModel(), ...args]);
  teardown.add(() => stopLlamaEngines([engine]));
  const gw = await startTestGateway(
    { backends: [{ id: 'l0', type: 'llama', url: engine.url, models: [LLAMA_MODEL] }] },
    teardown,
  );
  return { engine, gw };
}

/**
 * A test file's (or describe block's) startLlamaGateway set-up (fileSetUp), with the engine flags
 * `args`: its `before` hook starts it, its `after` hook stops it. Read `engine` and `gw` in tests only.
 */
export function llamaGateway(args: readonly string[] = []): LlamaGateway & { readonly teardown: Teardown } {
  return fileSetUp(new Teardown(), ['engine', 'gw'], (teardown) => startLlamaGateway(teardown, args));
}

/** A llama engine's `/pd/stats`. */
export async function llamaPdStats(e: LlamaEngine): Promise<LlamaPdStats> {
  return (await (await fetch(`${e.url}/pd/stats`)).json()) as LlamaPdStats;
}

/** A completion answer from a llama engine: its first choice's text, usage and KV transfer params. */
export interface LlamaAnswer {
  text: string;
  usage: {
    prompt_tokens: number;
    completion_tokens: number;
    prompt_tokens_details: { cached_tokens: number };
  };
  kv_transfer_params?: Record<string, unknown>;
}

/** A `/v1/completions` request for LLAMA_MODEL at `url`; asserts a 200. */
export async function llamaCompletion(url: string, body: Record<string, unknown>): Promise<LlamaAnswer> {
  const r = await fetch(`${url}/v1/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: LLAMA_MODEL, ...body }),
  });
  const json = (await r.json()) as { choices: { text: string }[] } & LlamaAnswer;
  assert.equal(r.status, 200, JSON.stringify(json));
  return { ...json, text: json.choices[0]?.text ?? '' };
}

/**
 * vLLM's P/D flow, as the gateway drives it: a one-token prefill on `prefill`, then `request` on
 * `decode` with the prefill's kv_transfer_params (passed through `edit` first).
 */
export async function vllmPdCompletion(
  prefill: LlamaEngine,
  decode: LlamaEngine,
  request: Record<string, unknown>,
  edit: (params: Record<string, unknown>) => Promise<Record<string, unknown>> = async (p) => p,
): Promise<{ prefill: LlamaAnswer; decode: LlamaAnswer }> {
  const first = await llamaCompletion(prefill.url, {
    ...request,
    max_tokens: 1,
    stream: false,
    kv_transfer_params: { ...VLLM_PREFILL_KV_PARAMS },
  });
  assert.ok(first.kv_transfer_params !== undefined, 'the prefill answer carries kv_transfer_params');
  const second = await llamaCompletion(decode.url, {
    ...request,
    kv_transfer_params: await edit(first.kv_transfer_params),
  });
  return { prefill: first, decode: second };
}

/**
 * Both built-in engines behind a gateway each, set up once for the file: the sim (a gateway over a
 * sim engine beside a recording upstream, `simAndRecorder`) and the llama engine on the tiny GGUF
 * (`llamaGateway`), with the list the engines' e2e files run every case over.
 */
export function builtinEngineGateways() {
  const sim = simAndRecorder('real-model');
  const llama = llamaGateway();
  const engines = [
    { name: 'sim', url: () => sim.gw.url, model: MODEL },
    { name: 'llama', url: () => llama.gw.url, model: LLAMA_MODEL },
  ] as const;
  return { sim, llama, engines };
}
