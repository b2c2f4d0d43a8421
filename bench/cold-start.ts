/**
 * Cold start of the `llama` engine against the physical limit, measured in one run on one machine.
 *
 *   npm run bench:cold-start                      # a 600 MB random-weight model, 3 runs per case
 *   npm run bench:cold-start -- --size-mb 1000 --runs 5 --json out/cold-start.json
 *   npm run bench:cold-start -- --cases 'standby, page cache, reserve'   # only the cases it matches
 *
 * The limit is the model file's bytes over the bandwidth of a plain sequential read of that file
 * (1 MiB reads into one buffer), from the page cache and from disk. "From disk" means the file's
 * pages were dropped from the page cache first with posix_fadvise(DONTNEED) (coreutils
 * `dd iflag=nocache count=0`: only this file, so the machine's other users keep their cache), and
 * checked with `fincore` where it exists; where the drop does not work the disk figures are left out
 * and the output says so.
 *
 * Each cold start is a fresh `switchyard engine llama` process, run from compiled JavaScript as
 * bin/switchyard.mjs runs dist/ (the bench compiles src/ into .cache/cold-start/ first, so a dist/
 * made stale by someone's edit never puts tsx's start-up in the figures): spawn to the ready line
 * on stdout (`ready`), then one completion of one token sent at once (`first token`: spawn to its
 * answer). The engine's own stage breakdown comes from its /metrics
 * (`switchyard:engine_startup_stage_seconds`). Cases: page cache and disk with the defaults (mmap,
 * prefetch), without the prefetch, without mmap, with a small context (the KV cache's share), and a
 * restart: first start from disk, stop, the page cache dropped (standing in for an idle hour's memory
 * pressure), the node's ModelWarmer re-reads the file, then the second start (both with
 * `--no-prefetch`, so the warmer's share is not hidden by the engine's own prefetch). And a standby
 * engine (`--standby`: Node, the CLI and node-llama-cpp loaded, its binary checked), timed from the
 * moment it is handed the model. Cases run in rounds, one start of each per round.
 *
 * Every engine runs with the environment serve gives a llama engine (adapters/engine-process.ts:
 * malloc's huge pages through GLIBC_TUNABLES), except the `4 KiB pages` cases, which set
 * `glibc.malloc.hugetlb=0` to show the start before it, in the same run. The `reserve` case is a
 * standby engine with `--standby-reserve-mib` sized to the default context's KV cache plus 64 MiB
 * (engine-servers/llama/memory-reserve.ts); the `reserve heap` case is the same engine with
 * withReserveHeap's malloc tunables too (adapters/engine-process.ts: the KV cache carved from the
 * freed reserve's own pages; the engine then trims its heap, src/adapters/malloc-trim.ts). For each
 * start the engine's minor faults and CPU seconds to ready are read from /proc (standby: from the
 * hand-over), and its RssAnon at ready and after the first token. `--cases REGEX` runs only the cases
 * it matches.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { closeSync, fsyncSync, mkdirSync, openSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { dirname, join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import { scriptArgs, scriptUsageError } from '../scripts/script-args.ts';
import {
  MALLOC_HUGETLB_TUNABLE,
  withMallocHugePages,
  withReserveHeap,
} from '../src/adapters/engine-process.ts';
import { ModelWarmer } from '../src/adapters/model-warmer.ts';
import { defaultContextCells, kvCacheBytes, standbyReserveMibFor } from '../src/core/standby-reserve.ts';
import { SEQUENCES_DEFAULT } from '../src/engine-servers/llama/defaults.ts';
import { readGgufShape } from '../src/engine-servers/llama/gguf-shape.ts';
import { ensureSizedLlamaGguf, sizedLlamaShape } from '../src/engine-servers/llama/tiny-gguf.ts';
import { buildPrivateCli, median, ROOT, sequentialReadS } from './private-build.ts';

/** A private build of src/ (tsc, as `npm run build` makes dist/), so others' edits never make it stale. */
const BUILD_DIR = join(ROOT, '.cache', 'cold-start');
const BIN = join(BUILD_DIR, 'switchyard.mjs');
/** Longest wait for one engine's ready line or answer (a hang guard, not a measurement). */
const ENGINE_WAIT_MS_MAX = 120_000;
const STAGES = ['runtime', 'import', 'binding', 'weights', 'context', 'listen'] as const;

const USAGE = `Usage: npm run bench:cold-start -- [options]   (node --import tsx bench/cold-start.ts)

Cold start of the llama engine against the physical limit (the model file's bytes over a plain
sequential read of it, from the page cache and from disk), in one run: fresh engine processes with
the defaults, without prefetch, without mmap, with a small context, a restart after the warm
cache's re-read, standby engines; ready, first token and the engine's own stages.

Options:
  --runs N          starts of each case, one per round (default 3)
  --size-mb N       the random-weight model's size, MB, written once into .cache/models/ (default 600)
  --model PATH      a GGUF to use instead of the random-weight one (default: none)
  --cases REGEX     only the cases whose name it matches (default: all; one that matches none
                    lists them), e.g. --cases standby
  --json FILE       also write the limits and each case's figures as JSON (default: none)
  -h, --help        this text

Examples:
  npm run bench:cold-start
  npm run bench:cold-start -- --size-mb 1000 --runs 5 --json out/cold-start.json
  npm run bench:cold-start -- --cases 'standby, page cache, reserve'`;

const { values } = scriptArgs('bench:cold-start', USAGE, () =>
  parseArgs({
    options: {
      'size-mb': { type: 'string', default: '600' },
      runs: { type: 'string', default: '3' },
      model: { type: 'string' },
      json: { type: 'string' },
      cases: { type: 'string' },
    },
  }),
);
const sizeMb = Number(values['size-mb']);
const runs = Number(values.runs);
if (!(sizeMb > 0) || !(Number.isInteger(runs) && runs >= 1))
  scriptUsageError(
    'bench:cold-start',
    USAGE,
    `--size-mb must be > 0 and --runs a whole number >= 1; got ${values['size-mb']} and ${values.runs}`,
  );
/**
 * `--cases` compiled here: a pattern that is no regex is a usage error before the model is written
 * and the limits measured, not a SyntaxError's stack trace after them.
 */
function casesRegex(pattern: string): RegExp {
  try {
    return new RegExp(pattern);
  } catch (error) {
    return scriptUsageError('bench:cold-start', USAGE, `--cases ${pattern}: ${(error as Error).message}`);
  }
}
const casesPattern = values.cases === undefined ? undefined : casesRegex(values.cases);

/** Bytes of `path` in the page cache per `fincore`, or undefined where it is missing. */
function residentBytes(path: string): number | undefined {
  try {
    const out = execFileSync('fincore', ['--bytes', '--noheadings', '--output', 'RES', path], {
      encoding: 'utf8',
    });
    return Number(out.trim());
  } catch {
    return undefined;
  }
}

/** Drops the file's pages from the page cache (posix_fadvise DONTNEED through dd); true if it worked. */
function dropFromPageCache(path: string): boolean {
  try {
    // DONTNEED leaves dirty pages alone: a model written a moment ago must reach the disk first.
    const fd = openSync(path, 'r+');
    try {
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    execFileSync('dd', [`if=${path}`, 'iflag=nocache', 'count=0'], { stdio: 'ignore' });
  } catch {
    return false;
  }
  const resident = residentBytes(path);
  return resident === undefined || resident < statSync(path).size / 100;
}

/** Tokens per sequence the engine's context gets by default (llama-backend.ts CONTEXT_SIZE_MAX_DEFAULT). */
const CONTEXT_DEFAULT_MAX = 4096;

/**
 * MiB for `--standby-reserve-mib`: the default context's KV cache (F16 keys and values, every layer,
 * SEQUENCES_DEFAULT sequences) plus 64 MiB for llama.cpp's compute and output buffers.
 */
async function kvReserveMib(model: string): Promise<number> {
  const { shape, trainedContext, headWidths } = await readGgufShape(model);
  // serve's `--standby-reserve-mib auto` sizes it the same way (src/core/standby-reserve.ts).
  const cells = defaultContextCells(trainedContext, SEQUENCES_DEFAULT, CONTEXT_DEFAULT_MAX);
  return standbyReserveMibFor([kvCacheBytes({ ...shape, ...headWidths }, cells) ?? 0]);
}

/** Minor faults and CPU seconds (user, system) of process `pid` so far (/proc/<pid>/stat), or NaNs off Linux. */
function processCost(pid: number): { faults: number; userS: number; systemS: number } {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name (which may hold spaces): state is field 3, minflt 10, utime 14, stime 15.
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const tick = 100; // USER_HZ on Linux
    return { faults: Number(f[7]), userS: Number(f[11]) / tick, systemS: Number(f[12]) / tick };
  } catch {
    return { faults: Number.NaN, userS: Number.NaN, systemS: Number.NaN };
  }
}

/** Resident anonymous memory of process `pid`, MiB (/proc/<pid>/status RssAnon), or NaN off Linux. */
function rssAnonMib(pid: number): number {
  try {
    const m = /^RssAnon:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m === null ? Number.NaN : Number(m[1]) / 1024;
  } catch {
    return Number.NaN;
  }
}

interface Start {
  readyS: number;
  firstTokenS: number;
  /** The engine's minor faults and CPU seconds from spawn (standby: from the hand-over) to ready. */
  faults: number;
  userS: number;
  systemS: number;
  /** The engine's RssAnon at ready and after the first token, MiB (what it holds; the reserve heap's price). */
  anonReadyMib: number;
  anonFirstTokenMib: number;
  /** The engine's own stage durations (seconds). */
  stagesS: Record<string, number>;
}

/** The child's stdout lines as they come, and a wait for the first one matching a test. */
function stdoutLines(child: ChildProcess, stderr: string[]) {
  const lines: string[] = [];
  const waiters: (() => void)[] = [];
  createInterface({ input: child.stdout! }).on('line', (l) => {
    lines.push(l);
    for (const w of waiters.splice(0)) w();
  });
  let exitCode: number | null | undefined;
  child.once('exit', (code) => {
    exitCode = code;
    for (const w of waiters.splice(0)) w();
  });
  return async (test: (line: string) => boolean): Promise<string> => {
    const deadline = performance.now() + ENGINE_WAIT_MS_MAX;
    for (;;) {
      const found = lines.find(test);
      if (found !== undefined) return found;
      if (exitCode !== undefined) throw new Error(`engine exited ${exitCode}: ${stderr.join('\n')}`);
      if (performance.now() > deadline) throw new Error(`no such line in time: ${stderr.join('\n')}`);
      await new Promise<void>((resolve) => {
        waiters.push(resolve);
        setTimeout(resolve, 1000);
      });
    }
  };
}

/**
 * One fresh engine: spawn to ready, to the first token; the engine's stages; then SIGTERM and exit.
 * With `standby`, the engine starts with `--standby` and the clock starts when it is handed the
 * model, once it said it waits for one.
 */
async function coldStart(
  model: string,
  flags: readonly string[],
  standby = false,
  hugePages = true,
  reserveHeapMib = 0,
): Promise<Start> {
  const modelArgs = standby ? ['--standby'] : ['--model', model, '--served-model-name', 'm'];
  // Serve's environment for a llama engine, or (the comparison) malloc's huge pages turned off.
  // With `reserveHeapMib`, the reserve's heap too (withReserveHeap: the KV cache on the reserve's pages).
  const env = withReserveHeap(
    hugePages
      ? withMallocHugePages(process.env)
      : { ...process.env, GLIBC_TUNABLES: `${MALLOC_HUGETLB_TUNABLE}=0` },
    reserveHeapMib,
  );
  let startMs = performance.now();
  const child = spawn(process.execPath, [BIN, 'engine', 'llama', ...modelArgs, '--port', '0', ...flags], {
    stdio: [standby ? 'pipe' : 'ignore', 'pipe', 'pipe'],
    env,
  });
  const stderr: string[] = [];
  createInterface({ input: child.stderr! }).on('line', (l) => stderr.push(l));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const waitLine = stdoutLines(child, stderr);
  let before = { faults: 0, userS: 0, systemS: 0 };
  try {
    if (standby) {
      await waitLine((l) => l.startsWith('{"event":"standby"'));
      before = processCost(child.pid!);
      startMs = performance.now();
      child.stdin!.end(`${JSON.stringify({ model, servedModelName: 'm' })}\n`);
    }
    const line = await waitLine((l) => l.startsWith('{"event":"ready"'));
    const readyS = (performance.now() - startMs) / 1000;
    const atReady = processCost(child.pid!);
    const anonReadyMib = rssAnonMib(child.pid!);
    const url = (JSON.parse(line) as { url: string }).url;
    const response = await fetch(`${url}/v1/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'm', prompt: 'Hello', max_tokens: 1, temperature: 0 }),
    });
    if (response.status !== 200) throw new Error(`completion: ${response.status} ${await response.text()}`);
    await response.arrayBuffer();
    const firstTokenS = (performance.now() - startMs) / 1000;
    const anonFirstTokenMib = rssAnonMib(child.pid!);
    const metrics = await (await fetch(`${url}/metrics`)).text();
    const stagesS: Record<string, number> = {};
    for (const m of metrics.matchAll(
      /^switchyard:engine_startup_stage_seconds\{[^}]*stage="(\w+)"\} (\S+)$/gm,
    )) {
      stagesS[m[1]!] = Number(m[2]);
    }
    const inner = /^switchyard:engine_startup_first_token_seconds\{[^}]*\} (\S+)$/m.exec(metrics);
    const innerReady = /^switchyard:engine_startup_ready_seconds\{[^}]*\} (\S+)$/m.exec(metrics);
    if (inner !== null && innerReady !== null)
      stagesS['firstToken'] = Number(inner[1]) - Number(innerReady[1]);
    return {
      readyS,
      firstTokenS,
      stagesS,
      faults: atReady.faults - before.faults,
      userS: atReady.userS - before.userS,
      systemS: atReady.systemS - before.systemS,
      anonReadyMib,
      anonFirstTokenMib,
    };
  } finally {
    child.kill('SIGTERM');
    await exited;
  }
}

interface CaseResult {
  readonly name: string;
  readonly limitS: number;
  readonly starts: Start[];
}

function summarize(c: CaseResult) {
  const readyS = median(c.starts.map((s) => s.readyS));
  const firstTokenS = median(c.starts.map((s) => s.firstTokenS));
  const stagesS: Record<string, number> = {};
  for (const stage of [...STAGES, 'firstToken'])
    stagesS[stage] = median(c.starts.map((s) => s.stagesS[stage] ?? Number.NaN));
  const faults = median(c.starts.map((s) => s.faults));
  const userS = median(c.starts.map((s) => s.userS));
  const systemS = median(c.starts.map((s) => s.systemS));
  const anonReadyMib = median(c.starts.map((s) => s.anonReadyMib));
  const anonFirstTokenMib = median(c.starts.map((s) => s.anonFirstTokenMib));
  return {
    name: c.name,
    limitS: c.limitS,
    readyS,
    firstTokenS,
    stagesS,
    faults,
    userS,
    systemS,
    anonReadyMib,
    anonFirstTokenMib,
    runs: c.starts,
  };
}

async function main(): Promise<void> {
  const shape = sizedLlamaShape(sizeMb * 1e6);
  const model = values.model ?? join(ROOT, '.cache', 'models', `random-llama-${sizeMb}mb.gguf`);
  if (values.model === undefined) {
    const t = performance.now();
    ensureSizedLlamaGguf(model, shape);
    console.log(`model ${model} ready in ${((performance.now() - t) / 1000).toFixed(1)} s`);
  }
  const bytes = statSync(model).size;
  console.log(`engine compiled in ${buildPrivateCli(BUILD_DIR, BIN).toFixed(1)} s`);
  console.log(
    `model: ${(bytes / 1e6).toFixed(0)} MB` +
      (values.model === undefined
        ? ` (${shape.blockCount} layers of width ${shape.embeddingLength}, F32)`
        : '') +
      '; engine: compiled src/ (tsc into .cache/cold-start/), default flags unless named' +
      `; load average ${loadavg()[0]!.toFixed(2)}; ${runs} run(s) per case, medians`,
  );

  // Physical limits.
  sequentialReadS(model);
  const cacheReads = Array.from({ length: 3 }, () => sequentialReadS(model).s);
  const cacheLimitS = Math.min(...cacheReads);
  const canDrop = dropFromPageCache(model);
  let diskLimitS = Number.NaN;
  if (canDrop) {
    const diskReads: number[] = [];
    for (let i = 0; i < Math.min(runs, 3); i++) {
      dropFromPageCache(model);
      diskReads.push(sequentialReadS(model).s);
    }
    diskLimitS = median(diskReads);
  }
  const gbps = (s: number) => (bytes / s / 1e9).toFixed(2);
  console.log(
    `limit, page cache: ${(bytes / 1e6).toFixed(0)} MB / ${gbps(cacheLimitS)} GB/s = ${cacheLimitS.toFixed(3)} s (best of 3)`,
  );
  console.log(
    canDrop
      ? `limit, disk:       ${(bytes / 1e6).toFixed(0)} MB / ${gbps(diskLimitS)} GB/s = ${diskLimitS.toFixed(3)} s (after posix_fadvise DONTNEED${residentBytes(model) === undefined ? ', not checked: no fincore' : ', checked with fincore'})`
      : 'limit, disk: could not be measured (posix_fadvise DONTNEED through dd did not drop the pages); disk cases skipped',
  );
  const reserveMib = await kvReserveMib(model);
  const nodeFloor: number[] = [];
  for (let i = 0; i < 3; i++) {
    const t = performance.now();
    execFileSync(process.execPath, ['-e', '0']);
    nodeFloor.push((performance.now() - t) / 1000);
  }
  console.log(`process floor: \`node -e 0\` takes ${median(nodeFloor).toFixed(3)} s`);
  console.log(`standby reserve (the reserve case): ${reserveMib} MiB`);

  // Rounds of every case in turn, so the machine's other work (it varies by the minute) falls on
  // all cases alike rather than on whichever ran at a busy moment.
  const warm = () => sequentialReadS(model);
  const cold = () => dropFromPageCache(model);
  const warmer = new ModelWarmer({ budgetBytes: 2 * bytes });
  const warmerS: number[] = [];
  const plans: {
    name: string;
    limitS: number;
    flags: string[];
    before: () => unknown;
    standby?: boolean;
    hugePages?: boolean;
    /** withReserveHeap's MiB (0: serve's environment). */
    reserveHeapMib?: number;
  }[] = [
    { name: 'page cache (mmap, prefetch)', limitS: cacheLimitS, flags: [], before: warm },
    // The defaults as they started before serve gave its llama engines malloc's huge pages.
    { name: 'page cache, 4 KiB pages', limitS: cacheLimitS, flags: [], before: warm, hugePages: false },
    { name: 'page cache, --no-prefetch', limitS: cacheLimitS, flags: ['--no-prefetch'], before: warm },
    { name: 'page cache, --no-mmap', limitS: cacheLimitS, flags: ['--no-mmap'], before: warm },
    {
      name: 'page cache, --context-size 256',
      limitS: cacheLimitS,
      flags: ['--context-size', '256'],
      before: warm,
    },
    // A standby engine (node-llama-cpp loaded, its binary checked) handed the model: the clock
    // starts at the handing over.
    { name: 'standby, page cache', limitS: cacheLimitS, flags: [], before: warm, standby: true },
    {
      name: 'standby, page cache, reserve',
      limitS: cacheLimitS,
      flags: ['--standby-reserve-mib', String(reserveMib)],
      before: warm,
      standby: true,
    },
    {
      // The same, the KV cache carved from the freed reserve's own pages (withReserveHeap).
      name: 'standby, page cache, reserve heap',
      limitS: cacheLimitS,
      flags: ['--standby-reserve-mib', String(reserveMib)],
      before: warm,
      standby: true,
      reserveHeapMib: reserveMib,
    },
    {
      name: 'standby, page cache, 4 KiB',
      limitS: cacheLimitS,
      flags: [],
      before: warm,
      standby: true,
      hugePages: false,
    },
    {
      name: 'standby, page cache, ctx 256',
      limitS: cacheLimitS,
      flags: ['--context-size', '256'],
      before: warm,
      standby: true,
    },
  ];
  if (canDrop) {
    plans.push(
      { name: 'disk (mmap, prefetch)', limitS: diskLimitS, flags: [], before: cold },
      // The first start of the restart pair: from disk, without the engine's own prefetch (which
      // otherwise hides a fast disk behind the start-up, and so the warmer's share).
      { name: 'disk, --no-prefetch (1st start)', limitS: diskLimitS, flags: ['--no-prefetch'], before: cold },
      {
        // Right after it stops: pressure drops the pages (the drop stands in for an idle hour), the
        // node's warmer reads them back, then the restart.
        name: 'restart after the warmer',
        limitS: cacheLimitS,
        flags: ['--no-prefetch'],
        before: async () => {
          cold();
          const t = performance.now();
          await warmer.warm(model);
          warmerS.push((performance.now() - t) / 1000);
        },
      },
      { name: 'standby, disk', limitS: diskLimitS, flags: [], before: cold, standby: true },
    );
  }
  // `--cases REGEX`: only the cases whose name it matches (the limits above are measured anyway).
  const chosen = casesPattern === undefined ? plans : plans.filter((p) => casesPattern.test(p.name));
  if (chosen.length === 0) {
    console.error(`--cases ${values.cases}: no case matches; cases: ${plans.map((p) => p.name).join('; ')}`);
    process.exit(2);
  }
  const cases: CaseResult[] = chosen.map((p) => ({ name: p.name, limitS: p.limitS, starts: [] }));
  for (let i = 0; i < runs; i++) {
    for (const [k, plan] of chosen.entries()) {
      await plan.before();
      cases[k]!.starts.push(
        await coldStart(
          model,
          plan.flags,
          plan.standby === true,
          plan.hugePages !== false,
          plan.reserveHeapMib,
        ),
      );
    }
  }

  const rows = cases.map(summarize);
  const pad = (s: string, n: number) => s.padEnd(n);
  const num = (x: number) => (Number.isFinite(x) ? x.toFixed(3) : '-').padStart(8);
  const ratio = (x: number) => (Number.isFinite(x) ? `${x.toFixed(1)}x` : '-').padStart(8);
  console.log(
    `\n${pad('case', 34)}${'limit s'.padStart(8)}${'ready s'.padStart(8)}${'1st tok'.padStart(8)}${'rdy/lim'.padStart(8)}${'tok/lim'.padStart(8)}`,
  );
  for (const r of rows) {
    console.log(
      `${pad(r.name, 34)}${num(r.limitS)}${num(r.readyS)}${num(r.firstTokenS)}${ratio(r.readyS / r.limitS)}${ratio(r.firstTokenS / r.limitS)}`,
    );
  }
  console.log(`\nthe engine's stages (median s): ${pad('', 0)}`);
  console.log(
    `${pad('case', 34)}${[...STAGES, 'firstTok'].map((s) => s.padStart(9)).join('')}  weights/limit`,
  );
  for (const r of rows) {
    console.log(
      `${pad(r.name, 34)}${[...STAGES, 'firstToken'].map((s) => num(r.stagesS[s] ?? Number.NaN).padStart(9)).join('')}  ${ratio((r.stagesS['weights'] ?? Number.NaN) / r.limitS)}`,
    );
  }
  console.log(
    `\nthe engine's cost to ready (median; standby: from the hand-over): minor faults, CPU s; RssAnon MiB at ready and after the first token\n${pad('case', 34)}${'faults'.padStart(9)}${'user s'.padStart(9)}${'sys s'.padStart(9)}${'anon rdy'.padStart(10)}${'anon tok'.padStart(10)}`,
  );
  for (const r of rows) {
    console.log(
      `${pad(r.name, 34)}${String(r.faults).padStart(9)}${num(r.userS).padStart(9)}${num(r.systemS).padStart(9)}${r.anonReadyMib.toFixed(0).padStart(10)}${r.anonFirstTokenMib.toFixed(0).padStart(10)}`,
    );
  }
  const verdict = (r: (typeof rows)[number]) =>
    `ready ${(r.readyS / r.limitS).toFixed(1)}x, first token ${(r.firstTokenS / r.limitS).toFixed(1)}x` +
    (bytes < 500e6
      ? ' (model under 500 MB)'
      : `; ready ${r.readyS / r.limitS <= 1.5 ? 'met' : 'not met'}, first token ${r.firstTokenS / r.limitS <= 1.5 ? 'met' : 'not met'}`);
  console.log(
    '\ntarget (issue 14): a cold start from the page cache within 1.5x the limit, for a model of 500 MB or more',
  );
  for (const r of rows.filter(
    (r) => r.name === 'page cache (mmap, prefetch)' || r.name.startsWith('standby, page cache'),
  )) {
    console.log(`  ${pad(r.name, 34)}${verdict(r)}`);
  }
  if (warmerS.length > 0) {
    console.log(
      `\nthe warmer re-read ${(bytes / 1e6).toFixed(0)} MB from disk in ${median(warmerS).toFixed(3)} s (median), between the stop and the restart`,
    );
  }
  if (values.json !== undefined) {
    mkdirSync(dirname(values.json), { recursive: true });
    writeFileSync(
      values.json,
      `${JSON.stringify({ modelBytes: bytes, cacheLimitS, diskLimitS: canDrop ? diskLimitS : null, nodeFloorS: median(nodeFloor), loadAverage: loadavg()[0], cases: rows, warmerS }, null, 2)}\n`,
    );
    console.log(`wrote ${values.json}`);
  }
}

await main();
