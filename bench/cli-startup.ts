/**
 * How long `switchyard` takes to start: every CLI run and every engine child of `serve` pays it.
 * Times, interleaved in rounds so the machine's other work falls on every case alike, `node -e 0`
 * (the floor: node's own start), `switchyard --version`, `--help`, `sim --help`, a tiny `sim` run,
 * `engine sim --help`, and `engine sim` up to its ready line (what `serve` waits for per engine),
 * started alone and as `serve` starts it.
 * Prints each case's median wall time, its range and its ratio to the floor's median, and the median
 * CPU time of the process (user + system, every thread; `engine-ready`'s includes its shutdown): on
 * a machine shared with other work the wall times swing with it, the CPU times much less.
 *
 * It runs bin/switchyard.mjs as a user does, so it measures the compiled dist/ with the launcher's
 * stale-dist check; when dist/ is older than src/ the launcher would run the sources through tsx and
 * the figures would say nothing about dist/: the bench refuses to start then, and says so at the end
 * if an edit made dist/ stale during the run.
 *
 * With `--baseline DIR` (another checkout, built, sharing this one's node_modules: e.g. `git worktree
 * add` of the commit before a change), each switchyard case also runs DIR's launcher in the same
 * rounds, and the table gives this checkout's median over the baseline's.
 *
 * Run with `npm run bench:cli-startup` (`-- --rounds 15`, `-- --only version,engine-ready`).
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { distProblem as staleDist } from '../bin/dist-stamp.mjs';
import { scriptArgs, scriptUsageError } from '../scripts/script-args.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
/**
 * One timed command: `switchyard` with `args` (the floor: `node` with them). `ready`, when given,
 * ends the timing at the first stdout line it accepts.
 */
interface Case {
  name: string;
  args: readonly string[];
  ready?: (line: string) => boolean;
  /**
   * Started as `serve` starts its engines: with the word of a parent launcher that found dist/
   * current (SWITCHYARD_DIST_CHECKED, bin/switchyard.mjs), so it skips the walk of src/.
   */
  asChild?: boolean;
}

const CASES: readonly Case[] = [
  { name: 'floor', args: ['-e', '0'] },
  { name: 'version', args: ['--version'] },
  { name: 'help', args: ['--help'] },
  { name: 'sim-help', args: ['sim', '--help'] },
  {
    name: 'sim-tiny',
    args: ['sim', '--workload', 'poisson', '--rate', '1', '--requests', '10', '--seed', '1'],
  },
  { name: 'engine-help', args: ['engine', 'sim', '--help'] },
  {
    name: 'engine-ready',
    args: ['engine', 'sim', '--port', '0', '--kv-events', 'none'],
    ready: (line) => line.includes('"event":"ready"'),
  },
  {
    name: 'engine-child',
    args: ['engine', 'sim', '--port', '0', '--kv-events', 'none'],
    ready: (line) => line.includes('"event":"ready"'),
    asChild: true,
  },
];

const USAGE = `Usage: npm run bench:cli-startup -- [--rounds N] [--only a,b] [--baseline DIR]

Times switchyard's start-up against node's own (node -e 0), interleaved in rounds; prints medians,
ranges and ratios to the floor. Needs a current dist/ (npm run build).

Options:
  --rounds <n>      rounds; each runs every case once (default 9)
  --only <list>     comma-separated cases, of: ${CASES.map((c) => c.name).join(', ')}
                    (the floor always runs)
  --baseline <dir>  another checkout (built) whose bin/switchyard.mjs runs each case in the same
                    rounds; prints this checkout's median over its
  -h, --help        this text

Example:
  npm run bench:cli-startup -- --rounds 15 --only version,engine-ready`;

const { values } = scriptArgs('bench:cli-startup', USAGE, () =>
  parseArgs({
    options: {
      rounds: { type: 'string', default: '9' },
      only: { type: 'string' },
      baseline: { type: 'string' },
    },
    strict: true,
    allowPositionals: false,
  }),
);

/** A usage error: one line and the usage on stderr, exit 2. */
function usageError(message: string): never {
  return scriptUsageError('bench:cli-startup', USAGE, message);
}

const rounds = Number(values.rounds);
if (!Number.isInteger(rounds) || rounds < 1)
  usageError(`--rounds must be a whole number >= 1, got ${values.rounds}`);
const only = values.only?.split(',').map((s) => s.trim());
for (const name of only ?? [])
  if (!CASES.some((c) => c.name === name)) usageError(`unknown case ${name} in --only`);
const cases = CASES.filter((c) => c.name === 'floor' || only === undefined || only.includes(c.name));

/** A checkout whose launcher is timed: this one, and the baseline's when given. */
interface Tree {
  label: string;
  root: string;
}
const trees: Tree[] = [{ label: 'this', root: ROOT }];
if (values.baseline !== undefined) trees.push({ label: 'baseline', root: resolve(values.baseline) });

/** Why `root`'s launcher would not run its dist/ (bin/dist-stamp.mjs, the launcher's own rule), or undefined when it would. */
function distProblem(root: string): string | undefined {
  const problem = staleDist(root);
  return problem === undefined ? undefined : `${root}: ${problem}`;
}

/** The median of a non-empty list. */
function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 === 1 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
}

/** What one run took: wall seconds (to its ready line, for a case with one) and CPU seconds. */
interface Timing {
  wallS: number;
  cpuS: number;
}

/** The marker of the CPU line the preload writes on stderr as the process exits. */
const CPU_MARK = 'cli-startup-cpu-us';
/**
 * Loaded into every timed process (`node --require`, the floor too, so it costs each case alike):
 * writes the process's CPU time on stderr as it exits.
 */
const PRELOAD = `process.on('exit', () => { const u = process.cpuUsage(); require('node:fs').writeSync(2, '\\n${CPU_MARK} ' + (u.user + u.system) + '\\n'); });\n`;
const preloadDir = mkdtempSync(join(tmpdir(), 'cli-startup-'));
const preload = join(preloadDir, 'cpu.cjs');
writeFileSync(preload, PRELOAD);
process.on('exit', () => rmSync(preloadDir, { recursive: true, force: true }));

/** What a launcher that found dist/ current tells its children (bin/switchyard.mjs). */
const CHECKED = 'SWITCHYARD_DIST_CHECKED';

/** Runs one case once. Rejects when it fails, never gets ready, or its CPU line is missing. */
function timeOnce(c: Case, root: string): Promise<Timing> {
  const script = c.name === 'floor' ? c.args : [join(root, 'bin', 'switchyard.mjs'), ...c.args];
  return new Promise((resolve, reject) => {
    const start = performance.now();
    const env = { ...process.env };
    delete env[CHECKED];
    if (c.asChild === true) env[CHECKED] = String(statSync(join(root, 'dist', '.built')).mtimeMs);
    const child = spawn(process.execPath, ['--require', preload, ...script], {
      cwd: root,
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    let readyS: number | undefined;
    child.stdout.setEncoding('utf8');
    child.stderr.setEncoding('utf8');
    child.stdout.on('data', (chunk: string) => {
      out += chunk;
      if (c.ready !== undefined && readyS === undefined && out.split('\n').some(c.ready)) {
        readyS = (performance.now() - start) / 1000;
        child.kill('SIGTERM');
      }
    });
    child.stderr.on('data', (chunk: string) => {
      err += chunk;
    });
    child.on('error', reject);
    child.on('close', (code, signal) => {
      const wallS = readyS ?? (performance.now() - start) / 1000;
      const cpuUs = Number(err.match(new RegExp(`^${CPU_MARK} (\\d+)$`, 'm'))?.[1] ?? Number.NaN);
      if (c.ready !== undefined && readyS === undefined)
        reject(new Error(`${c.name}: exited (${code ?? signal}) before its ready line\n${err}`));
      // Every switchyard case prints something: an empty stdout would mean it timed a failure.
      else if (c.ready === undefined && (code !== 0 || (c.name !== 'floor' && out.length === 0)))
        reject(new Error(`${c.name}: exit ${code ?? signal}, ${out.length} bytes out\n${err}`));
      else if (Number.isNaN(cpuUs)) reject(new Error(`${c.name}: no CPU line on stderr\n${err}`));
      else resolve({ wallS, cpuS: cpuUs / 1e6 });
    });
  });
}

/** Exits when a launcher would run its sources through tsx: the figures would not be dist/'s. */
function requireCurrentDist(when: string): void {
  const problems = trees.map((t) => distProblem(t.root)).filter((p) => p !== undefined);
  if (problems.length === 0) return;
  console.error(
    `bench:cli-startup: ${problems.join('; ')} ${when}: the launcher runs src/ through tsx; npm run build`,
  );
  process.exit(1);
}

requireCurrentDist('at the start');
/** Each run, in the order the rounds make them: the floor once, then every case in every tree. */
const runs = cases.flatMap((c) =>
  c.name === 'floor' ? [{ c, t: trees[0] as Tree }] : trees.map((t) => ({ c, t })),
);
const timings = new Map<string, Timing[]>(runs.map((r) => [`${r.c.name} ${r.t.label}`, []]));
const load0 = loadavg()[0] as number;
// One untimed round first: the page cache and the disk, not the code, would decide the first run.
for (const r of runs) await timeOnce(r.c, r.t.root);
for (let round = 0; round < rounds; round++)
  for (const r of runs)
    (timings.get(`${r.c.name} ${r.t.label}`) as Timing[]).push(await timeOnce(r.c, r.t.root));
const load1 = loadavg()[0] as number;

/** Medians of `case tree`'s wall and CPU seconds, and the wall range. */
function summary(key: string): { wall: number; lo: number; hi: number; cpu: number } | undefined {
  const ts = timings.get(key);
  if (ts === undefined) return undefined;
  const walls = ts.map((t) => t.wallS);
  return {
    wall: median(walls),
    lo: Math.min(...walls),
    hi: Math.max(...walls),
    cpu: median(ts.map((t) => t.cpuS)),
  };
}

const floor = summary('floor this') as NonNullable<ReturnType<typeof summary>>;
console.log(
  `switchyard start-up, ${rounds} interleaved round(s) after one untimed; node ${process.version}; ` +
    `load average ${load0.toFixed(2)} at the start, ${load1.toFixed(2)} at the end`,
);
const f = (x: number, w: number, d = 3): string => x.toFixed(d).padStart(w);
console.log(
  `${'case'.padEnd(13)} ${'wall s'.padStart(7)} ${'min'.padStart(6)} ${'max'.padStart(6)} ${'× floor'.padStart(7)} ${'cpu s'.padStart(6)} ${'× floor'.padStart(7)}` +
    (trees.length > 1
      ? `  ${'base wall'.padStart(9)} ${'base cpu'.padStart(8)} ${'wall ratio'.padStart(10)} ${'cpu ratio'.padStart(9)}`
      : ''),
);
for (const c of cases) {
  const m = summary(`${c.name} this`) as NonNullable<ReturnType<typeof summary>>;
  const row = `${c.name.padEnd(13)} ${f(m.wall, 7)} ${f(m.lo, 6)} ${f(m.hi, 6)} ${f(m.wall / floor.wall, 7, 1)} ${f(m.cpu, 6)} ${f(m.cpu / floor.cpu, 7, 1)}`;
  const b = summary(`${c.name} baseline`);
  console.log(
    b === undefined
      ? row
      : `${row}  ${f(b.wall, 9)} ${f(b.cpu, 8)} ${f(m.wall / b.wall, 10, 2)} ${f(m.cpu / b.cpu, 9, 2)}`,
  );
}
console.log('medians; ratios of medians; "base": the --baseline checkout, "ratio": this one over it');
for (const c of cases)
  console.log(
    `  ${c.name}: ${c.name === 'floor' ? 'node' : 'switchyard'} ${c.args.join(' ')}${c.asChild === true ? ` (${CHECKED} set, as serve's children)` : ''}`,
  );
if (trees.length > 1) console.log(`  baseline: ${trees[1]?.root}`);
requireCurrentDist('by the end (someone edited src/ during the run)');
