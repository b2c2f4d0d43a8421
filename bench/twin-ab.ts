/**
 * Twin speed, A against B in one process: two checkouts of Switchyard (each a folder with `src/`,
 * `package.json` and `tsconfig.json`) replay the Mooncake trace in turn, warmed up, pair after
 * pair, and the CPU time of each pair is compared. Not a test; see bench/README.md.
 *
 * Why: on the shared 2-core machine separate processes of the same code differed by up to 45% in
 * wall time, more than the changes being measured. Replays of A and B alternating in one process
 * see the same load, and the ratio within each pair cancels most of it (a control run of a tree
 * against itself gave ratios 0.93 to 1.03). The order within a pair alternates too. The code of
 * each checkout is its own module graph, so neither shares compiled code with the other.
 *
 * Flags: USAGE below (`--help`).
 */
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { scriptArgs, scriptUsageError } from '../scripts/script-args.ts';

const MOONCAKE_TRACE = '/work/shared/data/traces/mooncake/conversation_trace.jsonl.gz';

/** One replay's cost: the simulation loop's wall time and the process's CPU time over it. */
interface Replay {
  readonly wallS: number;
  readonly cpuS: number;
}

const USAGE = `Usage: node --import tsx bench/twin-ab.ts --a DIR --b DIR [options]

Twin speed, A against B in one process: two checkouts (each with src/, package.json, tsconfig.json)
replay the Mooncake trace in turn, warmed up, pair after pair; the B/A ratio of each pair's CPU time
is printed (below 1: B is faster).

Options:
  --a DIR, --b DIR      the two checkouts (required)
  --pairs N             measured pairs (default 10)
  --warmup N            replays of each before the measured pairs (default 3)
  --trace PATH          the Mooncake trace (default ${MOONCAKE_TRACE})
  --prefix-cache MODE   runs, blocks or blocks-32bit, for both (default runs)
  -h, --help            this text

A checkout: e.g. \`git archive <commit> src | tar -x -C /tmp/before\` plus package.json and
tsconfig.json. Run both orders and take the geometric mean of the ratios (bench/README.md).

Examples:
  node --import tsx bench/twin-ab.ts --a /tmp/before --b . --pairs 12
  node --import tsx bench/twin-ab.ts --a . --b /tmp/before --pairs 12`;

async function main(): Promise<void> {
  const { values } = scriptArgs('twin-ab', USAGE, () =>
    parseArgs({
      options: {
        a: { type: 'string' },
        b: { type: 'string' },
        pairs: { type: 'string', default: '10' },
        warmup: { type: 'string', default: '3' },
        trace: { type: 'string', default: MOONCAKE_TRACE },
        'prefix-cache': { type: 'string', default: 'runs' },
      },
      strict: true,
    }),
  );
  if (values.a === undefined || values.b === undefined)
    scriptUsageError('twin-ab', USAGE, '--a DIR and --b DIR are required');
  const pairs = Number(values.pairs);
  const warmup = Number(values.warmup);
  if (!Number.isSafeInteger(pairs) || pairs < 1)
    scriptUsageError('twin-ab', USAGE, `--pairs must be a positive integer, got '${values.pairs}'`);
  if (!Number.isSafeInteger(warmup) || warmup < 0)
    scriptUsageError('twin-ab', USAGE, `--warmup must be an integer >= 0, got '${values.warmup}'`);
  const replayA = await replayer(values.a, values.trace, values['prefix-cache']);
  const replayB = await replayer(values.b, values.trace, values['prefix-cache']);
  for (let i = 0; i < warmup; i++) {
    replayA();
    replayB();
  }
  const a: Replay[] = [];
  const b: Replay[] = [];
  for (let i = 0; i < pairs; i++) {
    if (i % 2 === 0) {
      a.push(replayA());
      b.push(replayB());
    } else {
      b.push(replayB());
      a.push(replayA());
    }
  }
  const ratios = a.map((x, i) => (b[i] as Replay).cpuS / x.cpuS);
  const fmt = (xs: readonly number[]): string => xs.map((x) => x.toFixed(3)).join(' ');
  console.log(
    `A ${values.a}: wall s median ${median(a.map((x) => x.wallS)).toFixed(3)}, CPU s ${fmt(a.map((x) => x.cpuS))}`,
  );
  console.log(
    `B ${values.b}: wall s median ${median(b.map((x) => x.wallS)).toFixed(3)}, CPU s ${fmt(b.map((x) => x.cpuS))}`,
  );
  console.log(`B/A CPU time: median ${median(ratios).toFixed(3)} (pairs ${fmt(ratios)})`);
}

/** A function that replays the trace with the checkout in `dir` and returns what it cost. */
async function replayer(dir: string, trace: string, mode: string): Promise<() => Replay> {
  const root = resolve(dir);
  if (!existsSync(`${root}/src/twin/simulator.ts`)) throw new Error(`${root} has no src/twin/simulator.ts`);
  const load = (path: string) => import(pathToFileURL(`${root}/src/${path}`).href);
  const { Rng } = await load('core/rng.ts');
  const { DEFAULT_ENGINE_CONFIG } = await load('engine-core/types.ts');
  const { createRoutingPolicy } = await load('policies/routing/registry.ts');
  const { runSimulation } = await load('twin/simulator.ts');
  const { createWorkload } = await load('workload/create.ts');
  return () => {
    const source = createWorkload({ kind: 'trace', trace, rateScale: 1 }, new Rng(1).fork('workload'));
    const cpu0 = process.cpuUsage();
    const result = runSimulation(source, {
      seed: 1,
      cluster: { groups: [{ count: 16, gpu: 'h100', model: 'llama-3.1-8b', tp: 1 }] },
      engine: DEFAULT_ENGINE_CONFIG,
      policy: createRoutingPolicy('least-request'),
      slo: { ttftMs: 2000, tpotMs: 100 },
      workload: 'twin-ab',
      prefixCache: mode,
    });
    const cpu = process.cpuUsage(cpu0);
    return { wallS: result.summary.wallSeconds as number, cpuS: (cpu.user + cpu.system) / 1e6 };
  };
}

function median(xs: readonly number[]): number {
  const sorted = [...xs].sort((x, y) => x - y);
  return sorted[(sorted.length - 1) >> 1] as number;
}

await main();
