/**
 * A fresh `llama` engine against an in-place checkpoint swap (`POST /update_weights_from_disk`), to
 * the first token, side by side in one run on one machine (issue 14: a serverless start that loads a
 * fine-tune of the same base into a running engine instead of starting one).
 *
 *   npm run bench:swap-in-place                       # two 600 MB random-weight models, 5 rounds
 *   npm run bench:swap-in-place -- --size-mb 1000 --runs 7 --json out/swap.json
 *
 * Two GGUFs of one shape with different seeds (scripts/make-tiny-gguf.ts's sized models), both read
 * whole first, so every case loads from the page cache. Each round runs every case once, in turn:
 * - `fresh process`: spawn `switchyard engine llama --model B` to its ready line, then one completion
 *   of one token (the clock runs from spawn to its answer), as bench/cold-start.ts measures a start;
 * - `swap, awake`: an engine already serving A (one completion answered) is sent
 *   `POST /update_weights_from_disk {"model_path": B}`; the clock runs from the call to the answer
 *   of one completion on B;
 * - `swap, asleep + wake`: the same engine asleep (`POST /sleep`) is swapped to the other file and
 *   woken (`POST /wake_up`) before the completion: what `serve --sleep` would do with a sleeping
 *   engine of another fine-tune.
 * - `sleep + wake, same file` (the reference): the same engine asleep, woken on the file it holds:
 *   a swap's load should cost what a wake's reload does.
 * The two swap cases alternate the engine between A and B, so each loads the file it does not hold.
 * The engine runs from compiled JavaScript (src/ compiled into .cache/swap-bench/, as
 * bench/cold-start.ts does, so a stale dist/ never adds tsx's start-up). Prints medians and the ratio
 * fresh / swap.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { statSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import { scriptArgs, scriptUsageError } from '../scripts/script-args.ts';
import { ensureSizedLlamaGguf, sizedLlamaShape } from '../src/engine-servers/llama/tiny-gguf.ts';
import { buildPrivateCli, median, ROOT, sequentialReadS } from './private-build.ts';

const BUILD_DIR = join(ROOT, '.cache', 'swap-bench');
const BIN = join(BUILD_DIR, 'switchyard.mjs');
/** Longest wait for a ready line (a hang guard, not a measurement). */
const ENGINE_WAIT_MS_MAX = 120_000;
const SEED_A = 1;
const SEED_B = 2;

const USAGE = `Usage: npm run bench:swap-in-place -- [options]   (node --import tsx bench/swap-in-place.ts)

A fresh llama engine against an in-place checkpoint swap (POST /update_weights_from_disk), awake and
asleep, to the first token, with sleep + wake on the same file as the reference; two random-weight
models of one shape, from the page cache; medians and the ratio fresh / swap.

Options:
  --runs N          rounds, each running every case once (default 5)
  --size-mb N       each random-weight model's size, MB, written once into .cache/models/ (default 600)
  --json FILE       also write every round's times as JSON (default: none)
  -h, --help        this text

Examples:
  npm run bench:swap-in-place
  npm run bench:swap-in-place -- --size-mb 1000 --runs 7 --json out/swap.json`;

const { values } = scriptArgs('bench:swap-in-place', USAGE, () =>
  parseArgs({
    options: {
      'size-mb': { type: 'string', default: '600' },
      runs: { type: 'string', default: '5' },
      json: { type: 'string' },
    },
  }),
);
const sizeMb = Number(values['size-mb']);
const runs = Number(values.runs);
if (!(sizeMb > 0) || !(Number.isInteger(runs) && runs >= 1))
  scriptUsageError(
    'bench:swap-in-place',
    USAGE,
    `--size-mb must be > 0 and --runs a whole number >= 1; got ${values['size-mb']} and ${values.runs}`,
  );

interface Engine {
  readonly child: ChildProcess;
  readonly url: string;
  readonly exited: Promise<void>;
}

/** Spawns an engine on `model` (served as 'm') and resolves at its ready line. */
async function startEngine(model: string, flags: readonly string[] = []): Promise<Engine> {
  const child = spawn(
    process.execPath,
    [BIN, 'engine', 'llama', '--model', model, '--served-model-name', 'm', '--port', '0', ...flags],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  const stderr: string[] = [];
  createInterface({ input: child.stderr! }).on('line', (l) => stderr.push(l));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const line = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`no ready line: ${stderr.join('\n')}`)),
      ENGINE_WAIT_MS_MAX,
    );
    createInterface({ input: child.stdout! }).on('line', (l) => {
      if (!l.startsWith('{"event":"ready"')) return;
      clearTimeout(timer);
      resolve(l);
    });
    child.once('exit', (code) => reject(new Error(`engine exited ${code}: ${stderr.join('\n')}`)));
  });
  return { child, url: (JSON.parse(line) as { url: string }).url, exited };
}

async function stop(engine: Engine): Promise<void> {
  engine.child.kill('SIGTERM');
  await engine.exited;
}

/** One completion of one token; throws unless it is answered 200. */
async function firstToken(url: string): Promise<void> {
  const r = await fetch(`${url}/v1/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'm', prompt: 'Hello', max_tokens: 1, temperature: 0 }),
  });
  if (r.status !== 200) throw new Error(`completion: ${r.status} ${await r.text()}`);
  await r.arrayBuffer();
}

async function post(url: string, path: string, body?: unknown): Promise<void> {
  const r = await fetch(`${url}${path}`, {
    method: 'POST',
    ...(body === undefined
      ? {}
      : { headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) }),
  });
  if (r.status !== 200) throw new Error(`${path}: ${r.status} ${await r.text()}`);
  await r.arrayBuffer();
}

async function main(): Promise<void> {
  const dir = join(ROOT, '.cache', 'models');
  const files = [SEED_A, SEED_B].map((seed) =>
    ensureSizedLlamaGguf(
      join(dir, `random-llama-${sizeMb}mb-seed${seed}.gguf`),
      sizedLlamaShape(sizeMb * 1e6, seed),
    ),
  );
  const [fileA, fileB] = files as [string, string];
  buildPrivateCli(BUILD_DIR, BIN);
  const bytes = statSync(fileA).size;
  for (const f of files) sequentialReadS(f);
  const readS = Math.min(...files.map((f) => sequentialReadS(f).s));
  const shape = sizedLlamaShape(sizeMb * 1e6);
  console.log(
    `models: two of ${(bytes / 1e6).toFixed(0)} MB (${shape.blockCount} layers of width ${shape.embeddingLength}, F32; seeds ${SEED_A} and ${SEED_B}), ` +
      `in the page cache (a whole read: ${readS.toFixed(3)} s, ${(bytes / readS / 1e9).toFixed(2)} GB/s); ` +
      `load average ${loadavg()[0]!.toFixed(2)}; ${runs} round(s), medians`,
  );

  const fresh: number[] = [];
  const awake: number[] = [];
  const asleep: number[] = [];
  const wake: number[] = [];
  // One long-lived engine for the swaps, with sleep mode; it holds `holds` now.
  const swapper = await startEngine(fileA, ['--enable-sleep-mode']);
  let holds = fileA;
  const other = () => (holds === fileA ? fileB : fileA);
  try {
    await firstToken(swapper.url);
    for (let round = 0; round < runs; round++) {
      // Fresh process on the file the swapper does not hold (the same file the swap loads next).
      let t = performance.now();
      const engine = await startEngine(other());
      await firstToken(engine.url);
      fresh.push((performance.now() - t) / 1000);
      await stop(engine);

      t = performance.now();
      await post(swapper.url, '/update_weights_from_disk', { model_path: other(), served_model_name: 'm' });
      await firstToken(swapper.url);
      awake.push((performance.now() - t) / 1000);
      holds = other();

      await post(swapper.url, '/sleep');
      t = performance.now();
      await post(swapper.url, '/update_weights_from_disk', { model_path: other(), served_model_name: 'm' });
      await post(swapper.url, '/wake_up');
      await firstToken(swapper.url);
      asleep.push((performance.now() - t) / 1000);
      holds = other();

      await post(swapper.url, '/sleep');
      t = performance.now();
      await post(swapper.url, '/wake_up');
      await firstToken(swapper.url);
      wake.push((performance.now() - t) / 1000);
    }
  } finally {
    await stop(swapper);
  }

  const f = median(fresh);
  const rows = [
    ['fresh process (spawn to first token)', f],
    ['swap, awake (call to first token)', median(awake)],
    ['swap, asleep + wake (call to first token)', median(asleep)],
    ['sleep + wake, same file (wake to first token)', median(wake)],
  ] as const;
  for (const [name, s] of rows)
    console.log(
      `${name.padEnd(44)} ${s.toFixed(3)} s${s === f ? '' : `   fresh / this = ${(f / s).toFixed(1)}x`}`,
    );
  if (values.json !== undefined) {
    writeFileSync(
      values.json,
      `${JSON.stringify({ bytes, readS, runs, freshS: fresh, swapAwakeS: awake, swapAsleepS: asleep, wakeS: wake }, null, 2)}\n`,
    );
  }
}

await main();
