/**
 * Cold start through `switchyard serve`, request arrival at the gateway to first token, for a llama
 * model at zero engines: a fresh engine process per cold start (`--standby-engines 0`) against a
 * cold start handed to a standby engine (`--standby-engines 1`), measured side by side in one run.
 *
 *   npm run bench:serve-cold-start                  # the 600 MB random-weight model, 5 starts per case
 *   npm run bench:serve-cold-start -- --runs 3 --model PATH.gguf --json out/serve-cold-start.json
 *
 * Each case runs one `serve --engine llama --model m=FILE --autoscaler static --min-instances 0`;
 * each cold start is one streamed chat completion (`max_tokens` 1, `keep_alive: 0`, so the engine
 * stops right after it and the next request is cold again), timed from just before the request is
 * sent to its first content chunk. Beside it, the engine's own figures from its start-up line
 * (`{"event":"startup"}`: ready and first token, from its process start, or for a standby engine
 * from the moment it was handed the model), so the gateway's share shows. The file is read once first, so both cases start from the page
 * cache (what the warm cache keeps it in). The bench compiles src/ into .cache/serve-cold-start/ and
 * runs serve and its engines from there (as bin/switchyard.mjs runs dist/), so a dist/ made stale by
 * someone's edit never puts tsx's start-up in the figures. Cases alternate, one start of each per
 * round, so the machine's load falls on both alike.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, statSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import { scriptArgs, scriptUsageError } from '../scripts/script-args.ts';
import { preReadFile } from '../src/adapters/model-warmer.ts';
import { ensureSizedLlamaGguf, sizedLlamaShape } from '../src/engine-servers/llama/tiny-gguf.ts';
import { buildPrivateCli, median, ROOT } from './private-build.ts';

const BUILD_DIR = join(ROOT, '.cache', 'serve-cold-start');
/** Where the compiled serve spawns its engines from (src/adapters: `../../bin/switchyard.mjs`). */
const BIN = join(BUILD_DIR, 'bin', 'switchyard.mjs');
/** Guard against a hang, not a measurement bound. */
const HANG_GUARD_MS = 120_000;

const USAGE = `Usage: npm run bench:serve-cold-start -- [options]   (node --import tsx bench/serve-cold-start.ts)

Cold start through switchyard serve, request arrival to first token, for a llama model at zero
engines: a fresh engine process per cold start against one handed to a standby engine, alternating
in one run, beside the engine's own ready and first-token figures.

Options:
  --runs N          cold starts of each case (default 5)
  --size-mb N       the random-weight model's size, MB, written once into .cache/models/ (default 600)
  --model PATH      a GGUF to use instead of the random-weight one (default: none)
  --json FILE       also write every start's figures as JSON (default: none)
  -h, --help        this text

Examples:
  npm run bench:serve-cold-start
  npm run bench:serve-cold-start -- --runs 3 --model PATH.gguf --json out/serve-cold-start.json`;

const { values } = scriptArgs('bench:serve-cold-start', USAGE, () =>
  parseArgs({
    options: {
      'size-mb': { type: 'string', default: '600' },
      runs: { type: 'string', default: '5' },
      model: { type: 'string' },
      json: { type: 'string' },
    },
  }),
);
const sizeMb = Number(values['size-mb']);
const runs = Number(values.runs);
if (!(sizeMb > 0) || !Number.isInteger(runs) || runs < 1)
  scriptUsageError(
    'bench:serve-cold-start',
    USAGE,
    `--size-mb must be > 0 and --runs a whole number >= 1; got ${values['size-mb']} and ${values.runs}`,
  );

/** A running serve: its URL and its stderr lines. */
interface Serve {
  readonly proc: ChildProcess;
  readonly url: string;
  readonly stderr: string[];
}

async function until(what: string, check: () => boolean | Promise<boolean>): Promise<void> {
  const deadline = performance.now() + HANG_GUARD_MS;
  while (!(await check())) {
    if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

async function startServe(model: string, standbyEngines: number): Promise<Serve> {
  const proc = spawn(
    process.execPath,
    [
      BIN,
      'serve',
      '--port',
      '0',
      '--engine',
      'llama',
      '--model',
      `m=${model}`,
      '--autoscaler',
      'static',
      '--min-instances',
      '0',
      '--max-instances',
      '1',
      '--standby-engines',
      String(standbyEngines),
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  const stdout: string[] = [];
  const stderr: string[] = [];
  createInterface({ input: proc.stdout! }).on('line', (l) => stdout.push(l));
  createInterface({ input: proc.stderr! }).on('line', (l) => stderr.push(l));
  await until('serve listening', () => {
    if (proc.exitCode !== null) throw new Error(`serve exited: ${stderr.join('\n')}`);
    return stdout.some((l) => l.includes('listening on'));
  });
  const url = /listening on (http:\/\/\S+)/.exec(stdout.join('\n'))?.[1] as string;
  return { proc, url, stderr };
}

async function standbyIdle(url: string): Promise<number> {
  const stats = (await (await fetch(`${url}/stats`)).json()) as {
    warmStart?: { standby: { idle: number } | null };
  };
  return stats.warmStart?.standby?.idle ?? 0;
}

/** One cold start: ms from sending the request to its first content chunk, and to its end. */
async function coldStart(serve: Serve, k: number, standby: boolean): Promise<{ firstTokenMs: number }> {
  if (standby) await until('a standby engine', async () => (await standbyIdle(serve.url)) >= 1);
  const t0 = performance.now();
  const res = await fetch(`${serve.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({
      model: 'm',
      messages: [{ role: 'user', content: 'hi' }],
      max_tokens: 1,
      stream: true,
      keep_alive: 0,
    }),
  });
  if (res.status !== 200) throw new Error(`cold start answered ${res.status}: ${await res.text()}`);
  let firstTokenMs: number | undefined;
  const decoder = new TextDecoder();
  for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
    if (firstTokenMs === undefined && decoder.decode(chunk).includes('"content"'))
      firstTokenMs = performance.now() - t0;
  }
  if (firstTokenMs === undefined) throw new Error('no content chunk in the answer');
  // keep_alive 0: the engine stops after the request; the next one is cold.
  await until(
    'the engine stopped',
    () => serve.stderr.filter((l) => l.includes('engine 0 stopped')).length > k,
  );
  return { firstTokenMs };
}

async function stopServe(serve: Serve): Promise<void> {
  const exited = new Promise((r) => serve.proc.once('close', r));
  serve.proc.kill('SIGTERM');
  await exited;
}

async function main(): Promise<void> {
  const model = values.model ?? join(ROOT, '.cache', 'models', `random-llama-${sizeMb}mb.gguf`);
  if (values.model === undefined) ensureSizedLlamaGguf(model, sizedLlamaShape(sizeMb * 1e6));
  if (!existsSync(model)) throw new Error(`no model at ${model}`);
  console.log(`serve compiled in ${buildPrivateCli(BUILD_DIR, BIN).toFixed(1)} s`);
  const read = await preReadFile(model);
  const bytes = statSync(model).size;
  console.log(
    `model ${(bytes / 1e6).toFixed(0)} MB; page-cache read ${(read.elapsedMs / 1000).toFixed(3)} s; load average ${loadavg()[0]?.toFixed(2)}; ${runs} cold start(s) per case, alternating`,
  );
  const cases = [
    { name: 'fresh engine (--standby-engines 0)', standby: false, firstTokenMs: [] as number[] },
    { name: 'standby engine (--standby-engines 1)', standby: true, firstTokenMs: [] as number[] },
  ];
  const serves = [];
  for (const c of cases) serves.push(await startServe(model, c.standby ? 1 : 0));
  try {
    for (let k = 0; k < runs; k++) {
      for (const [i, c] of cases.entries()) {
        const { firstTokenMs } = await coldStart(serves[i] as Serve, k, c.standby);
        c.firstTokenMs.push(firstTokenMs);
      }
    }
  } finally {
    await Promise.all(serves.map(stopServe));
  }
  const engineFigures = serves.map((sv) =>
    sv.stderr
      .filter((l) => l.includes('{"event":"startup"'))
      .map((l) => JSON.parse(l.slice(l.indexOf('{'))) as { readyS: number; firstTokenS: number }),
  );
  const fresh = median(cases[0]!.firstTokenMs);
  console.log(
    '\n| case | arrival to first token, median s | min | max | fresh / this | engine ready, own clock | engine first token, own clock |\n| --- | --- | --- | --- | --- | --- | --- |',
  );
  for (const [i, c] of cases.entries()) {
    const m = median(c.firstTokenMs);
    const own = engineFigures[i] ?? [];
    console.log(
      `| ${c.name} | ${(m / 1000).toFixed(2)} | ${(Math.min(...c.firstTokenMs) / 1000).toFixed(2)} | ${(Math.max(...c.firstTokenMs) / 1000).toFixed(2)} | ${(fresh / m).toFixed(1)}x | ${median(own.map((f) => f.readyS)).toFixed(2)} | ${median(own.map((f) => f.firstTokenS)).toFixed(2)} |`,
    );
  }
  if (values.json !== undefined)
    writeFileSync(
      values.json,
      `${JSON.stringify({ modelBytes: bytes, pageCacheReadMs: read.elapsedMs, loadAverage: loadavg()[0], cases, engineFigures }, null, 2)}\n`,
    );
}

await main();
