/**
 * The e2e tests' built-in llama engines: `switchyard engine llama` as a real child process on the
 * tiny model (two sequences, a 1024-token context), started on port 0 and read from its ready line,
 * and the P/D stats those tests compare.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import type { LlamaPdStats } from '../../../src/engine-servers/llama/pd.ts';
import { ensureTinyLlamaGguf, TINY_LLAMA_DEFAULT_PATH } from '../../../src/engine-servers/llama/tiny-gguf.ts';

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

/** Sends SIGTERM to each started engine (unstarted ones are skipped) and waits for their exits. */
export async function stopLlamaEngines(engines: readonly (LlamaEngine | undefined)[]): Promise<void> {
  for (const e of engines) e?.child.kill('SIGTERM');
  await Promise.all(engines.map((e) => e?.exited));
}

/** A llama engine's `/pd/stats`. */
export async function llamaPdStats(e: LlamaEngine): Promise<LlamaPdStats> {
  return (await (await fetch(`${e.url}/pd/stats`)).json()) as LlamaPdStats;
}
