/**
 * Twin speed: how many simulated requests, events and engine steps the twin gets through per wall
 * second, and its peak memory. Events are what the twin's loop handles; engine steps count every
 * decode step, also those the engine core fused into one event (see EngineCore.startStep). Not a test; run with `npm run bench:twin` (see bench/README.md and
 * docs/benchmarks.md). Two scenarios, in one process, after a warm-up:
 * - mooncake: the full Mooncake conversation trace (12,031 requests) replayed on 16 H100 instances
 *   of llama-3.1-8b; the bundled sample stands in (and the table says so) when the trace is absent;
 * - poisson: a Poisson workload (1,000,000 requests by default) on 128 such instances at a rate
 *   that loads the cluster without overloading it (see the load line printed for each run);
 * - heavy-prefix: a generated Mooncake-format trace with much heavier prefix sharing (long shared
 *   system prompts, multi-turn sessions whose prompts grow turn by turn to 100k tokens, branches;
 *   bench/heavy-prefix-trace.ts) on the same 16 instances: where a cost that grows with a prompt's
 *   or a session's history would show. The current prefix cache only (the per-block one takes
 *   about 13 s of CPU a replay there).
 * - shape-agent, shape-long-context, shape-deep-sessions, shape-bursts, shape-azure (with
 *   `--shapes`, or one with `--only`): the generated traces of bench/trace-shapes.ts (agent loops
 *   behind long shared system prompts, 30k-120k-token prompts, sessions of up to 200 turns, bursts
 *   of 10,000 requests in a second, a 1,000,000-row Azure-format CSV) on the same 16 instances, the
 *   current cache only, no warm-up replays; each also printed against the figures recorded at
 *   stop 36 (SHAPE_BEFORE).
 *
 * By default each scenario runs twice, back to back, in fresh processes: with the previous prefix cache
 * (`blocks-32bit`, the per-block pool keyed by 32-bit hashes the twin used before) and the current
 * one (`runs`, the run-length cache); `--repeat` times, alternating, medians reported side by side.
 * Separate processes, because one process running both has both code paths' types at every call
 * site of the engine core and runs each of them slower than it would alone.
 *
 * Flags: USAGE below (`npm run bench:twin -- --help`).
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { availableParallelism, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import cliProgress from 'cli-progress';
import Table from 'cli-table3';
import { distProblem } from '../bin/dist-stamp.mjs';
import { scriptArgs } from '../scripts/script-args.ts';
import { Rng } from '../src/core/rng.ts';
import { DEFAULT_ENGINE_CONFIG } from '../src/engine-core/types.ts';
import { createRoutingPolicy } from '../src/policies/routing/registry.ts';
import type { ClusterSpec } from '../src/twin/cluster.ts';
import { type PrefixCacheMode, runSimulation, type SimResult } from '../src/twin/simulator.ts';
import { createWorkload } from '../src/workload/create.ts';
import type { WorkloadSpecInput } from '../src/workload/spec.ts';
import type { RequestSource } from '../src/workload/types.ts';
import { heavyPrefixJsonl } from './heavy-prefix-trace.ts';
import { DEFAULT_SHAPE_REQUESTS, SHAPES, type Shape, writeShape } from './trace-shapes.ts';

/** The target: simulated requests per wall second. */
const TARGET_REQ_PER_S = 50_000;
/** Vidur's observed speed on this class of machine (a published figure, not run here). */
const VIDUR_REQ_PER_S = 1_000;
const MOONCAKE_TRACE = '/work/shared/data/traces/mooncake/conversation_trace.jsonl.gz';
const MOONCAKE_SAMPLE = 'sample:mooncake-conversation';
const MIB = 1024 * 1024;
/** The scenarios, in the order they run. */
const SCENARIOS = ['mooncake', 'poisson', 'heavy-prefix'] as const;
/** The trace-shape scenarios (`--shapes`): `shape-` and a bench/trace-shapes.ts shape. */
const SHAPE_SCENARIOS = SHAPES.map((shape) => `shape-${shape}`);
/**
 * The shape scenarios' figures recorded at stop 36 (35b4731; docs/benchmarks.md, 'Stop 36: trace
 * shapes'): least-request routing, the current cache, the five in one process, on the 2-core machine
 * at a load average of 11 to 17 (other work beside it). req / wall s of the simulation loop, and CPU
 * s of the scenario (loading the trace included), which moves far less with that load. Each later
 * run prints its ratio to these.
 */
const SHAPE_BEFORE: Record<string, { readonly reqPerWallS: number; readonly cpuS: number }> = {
  'shape-agent': { reqPerWallS: 8388, cpuS: 2.5 },
  'shape-long-context': { reqPerWallS: 995, cpuS: 1.03 },
  'shape-deep-sessions': { reqPerWallS: 3066, cpuS: 1.69 },
  'shape-bursts': { reqPerWallS: 1099, cpuS: 2.23 },
  'shape-azure': { reqPerWallS: 8355, cpuS: 24.04 },
};
/** cli-table3 without rules between rows: one line per row, easy to paste into the docs. */
const COMPACT = { mid: '', 'left-mid': '', 'mid-mid': '', 'right-mid': '' };

/**
 * One twin run, set up the way `runTwin` sets one up (workload from `Rng(seed).fork('workload')`,
 * vLLM's engine defaults, the policy from the registry), but through the simulator's own entry
 * point so the benchmark does not depend on the CLI's settings shape.
 */
interface Scenario {
  readonly name: string;
  /** What the reader needs to know about the input (trace path, or the fallback). */
  readonly note: string;
  readonly instances: number;
  readonly workload: WorkloadSpecInput;
  /** Routing policy from the registry; POLICY when absent. */
  readonly policy?: string;
  /** For the progress bar, when known. */
  readonly expectedRequests: number | undefined;
}

const SEED = 1;
const POLICY = 'least-request';
const MODES: readonly PrefixCacheMode[] = ['runs', 'blocks', 'blocks-32bit'];
/** What each mode is called in the tables. */
const MODE_LABEL: Record<PrefixCacheMode, string> = {
  'blocks-32bit': 'before (per-block, 32-bit hashes)',
  blocks: 'per-block, exact ids',
  runs: 'after (run-length)',
};

/** One scenario's figures. */
interface Figures {
  readonly scenario: string;
  readonly mode: PrefixCacheMode;
  readonly policy: string;
  readonly note: string;
  readonly instances: number;
  readonly requests: number;
  readonly events: number;
  /** Engine steps on all instances, each fused decode step counted (the summary's engineSteps). */
  readonly engineSteps: number;
  /** The simulation loop alone (the summary's wallSeconds). */
  readonly simWallS: number;
  /** End to end: building the workload (reading the trace, if any) and the simulation. */
  readonly totalWallS: number;
  /** Building the workload alone: reading, gunzipping and parsing the trace (the CLI does it too). */
  readonly loadWallS: number;
  /** Requests per second of the simulation loop (the figure). */
  readonly reqPerWallS: number;
  /** Requests per second of loading and simulating together: what a one-run user waits for. */
  readonly reqPerWallSWithLoad: number;
  /**
   * The first replay in this process (a warm-up one: the code still compiling, V8's young generation
   * still small), loop alone and with its load; undefined when there was no warm-up replay.
   */
  readonly cold: { readonly simWallS: number; readonly loadWallS: number } | undefined;
  /** The replays before the measured one, simulation loop seconds each. */
  readonly warmupSimWallS: readonly number[];
  /** 1-minute load average of the machine when the measured run started (shared machine). */
  readonly loadAvg1: number;
  /**
   * CPU seconds of the whole process (all threads: collector and compiler included) over the
   * scenario: on a machine shared with other work, less at the mercy of the load than wall time.
   */
  readonly cpuS: number;
  readonly eventsPerWallS: number;
  readonly engineStepsPerWallS: number;
  /** Process peak RSS (getrusage maxRSS) when the scenario ended: a high-water mark. */
  readonly maxRssMiB: number;
  /** Peak V8 heap used, sampled every few thousand arrivals during the scenario. */
  readonly peakHeapMiB: number;
  readonly load: Load;
}

/** Enough about the simulated load to show the cluster was busy, not idle or drowning. */
interface Load {
  readonly simulatedS: number;
  /** Completed requests per simulated second, first arrival to last finish. */
  readonly servedReqPerS: number;
  readonly utilization: number;
  /** Little's law: completions per second times mean end-to-end latency, per instance. */
  readonly meanConcurrentPerInstance: number;
  readonly kvUsageMean: number;
  readonly ttftP50Ms: number;
  readonly ttftP99Ms: number;
  readonly tpotP50Ms: number;
  readonly preemptions: number;
}

const USAGE = `Usage: npm run bench:twin -- [options]   (node --import tsx bench/twin-speed.ts)

How many simulated requests, events and engine steps the twin gets through per wall second, and its
peak memory: the Mooncake conversation replay, a long Poisson run and a heavy-prefix trace, with the
previous prefix cache and the current one side by side (bench/README.md, docs/benchmarks.md).

Options:
  --prefix-cache MODE       compare (default): each scenario in fresh child processes, blocks-32bit
                            and runs alternating; runs, blocks or blocks-32bit: that one mode, in
                            this process
  --repeat N                runs of each mode when comparing (default 3)
  --requests N              requests of the Poisson run (default 1000000)
  --rate R                  Poisson arrival rate, req/s (default 2000)
  --trace PATH              the Mooncake trace; the bundled sample stands in where it is missing
                            (default ${MOONCAKE_TRACE})
  --warmup N                full Mooncake replays before the measured one (default 3); the first
                            one's figures are reported too ("cold": compilation included)
  --only LIST               these scenarios, comma-separated: mooncake, poisson, heavy-prefix,
                            shape-* (default: all but the shapes)
  --shapes                  also the trace shapes of bench/trace-shapes.ts: ${SHAPE_SCENARIOS.join(', ')}
                            (current cache only, no warm-up; the Azure one is 1,000,000 rows)
  --shape-policy NAME       routing policy of the shape scenarios (default least-request; e.g.
                            prefix-affinity, which reads KV events and so runs the per-block cache)
  --cli N                   when comparing with the Mooncake scenario: also time N runs of
                            \`switchyard sim\` on it end to end, a fresh process each (default 3; 0: none)
  --cli-baseline DIR        a built checkout (bin/switchyard.mjs, dist/) whose CLI runs alternate
                            with this one's (default: none)
  --json FILE               also write the figures as JSON (default: none)
  --profile-summary DIR     print the top self-time functions of the largest .cpuprofile in DIR
                            (from \`node --cpu-prof --cpu-prof-dir=DIR ...\`) and exit
  -h, --help                this text

Examples:
  npm run bench:twin
  npm run bench:twin -- --only mooncake --repeat 5
  npm run bench:twin -- --requests 200000 --json out/twin.json`;

function main(): void {
  const { values } = scriptArgs('bench:twin', USAGE, () =>
    parseArgs({
      options: {
        requests: { type: 'string', default: '1000000' },
        rate: { type: 'string', default: '2000' },
        trace: { type: 'string', default: MOONCAKE_TRACE },
        only: { type: 'string' },
        json: { type: 'string' },
        'profile-summary': { type: 'string' },
        'prefix-cache': { type: 'string', default: 'compare' },
        warmup: { type: 'string', default: '3' },
        repeat: { type: 'string', default: '3' },
        cli: { type: 'string', default: '3' },
        'cli-baseline': { type: 'string' },
        shapes: { type: 'boolean', default: false },
        'shape-policy': { type: 'string', default: POLICY },
      },
      strict: true,
    }),
  );
  if (values['profile-summary'] !== undefined) {
    printProfileSummary(values['profile-summary'], 25);
    return;
  }
  const requests = positiveInt(values.requests, '--requests');
  const rateRps = positiveNumber(values.rate, '--rate');
  const repeat = positiveInt(values.repeat, '--repeat');
  const warmupReplays = nonNegativeInt(values.warmup, '--warmup');
  const only = values.only?.split(',');
  const known = [...SCENARIOS, ...SHAPE_SCENARIOS];
  const unknown = only?.find((name) => !known.includes(name));
  if (unknown !== undefined) throw new Error(`--only takes ${known.join(', ')}; got '${unknown}'`);
  const runs = (name: string): boolean =>
    only === undefined ? !name.startsWith('shape-') || values.shapes === true : only.includes(name);
  const shapePolicy = values['shape-policy'];
  createRoutingPolicy(shapePolicy);
  const modeFlag = values['prefix-cache'];
  if (modeFlag === 'compare') {
    const cliRuns = nonNegativeInt(values.cli, '--cli');
    const trace = existsSync(values.trace) ? values.trace : MOONCAKE_SAMPLE;
    const cli =
      runs('mooncake') && cliRuns > 0
        ? { runs: cliRuns, trace, baseline: values['cli-baseline'] }
        : undefined;
    const all = [...SCENARIOS, ...SHAPE_SCENARIOS].filter(runs);
    compare(process.argv.slice(2), all, repeat, values.json, cli);
    return;
  }
  if (!(MODES as readonly string[]).includes(modeFlag)) {
    throw new Error(`--prefix-cache must be compare, ${MODES.join(', ')}; got '${modeFlag}'`);
  }
  const mode = modeFlag as PrefixCacheMode;

  const trace = existsSync(values.trace) ? values.trace : MOONCAKE_SAMPLE;
  const traceNote =
    trace === MOONCAKE_SAMPLE
      ? `${values.trace} not found: the bundled ${MOONCAKE_SAMPLE} stands in`
      : `trace ${trace}`;
  const scenarios: Scenario[] = [];
  if (runs('mooncake')) scenarios.push(mooncakeScenario(trace, traceNote, undefined));
  if (runs('poisson')) scenarios.push(poissonScenario(rateRps, requests));
  // The generated trace is written once per process, to a temporary file the replays read as a
  // user's file is read (the reading is part of the 'load s' column, as for the Mooncake trace).
  const heavyDir = runs('heavy-prefix') ? mkdtempSync(join(tmpdir(), 'twin-speed-heavy-')) : undefined;
  if (heavyDir !== undefined) {
    const path = join(heavyDir, 'heavy-prefix.jsonl');
    writeFileSync(path, heavyPrefixJsonl());
    scenarios.push(heavyPrefixScenario(path));
  }
  // The shapes likewise, each written to a temporary file and read back as a user's trace.
  const shapeDir = SHAPE_SCENARIOS.some(runs) ? mkdtempSync(join(tmpdir(), 'twin-speed-shapes-')) : undefined;
  if (shapeDir !== undefined) {
    for (const shape of SHAPES) {
      if (!runs(`shape-${shape}`)) continue;
      const path = join(shapeDir, shape === 'azure' ? 'azure.csv' : `${shape}.jsonl`);
      writeShape(shape, path, SEED, DEFAULT_SHAPE_REQUESTS[shape]);
      scenarios.push(shapeScenario(shape, path, shapePolicy));
    }
  }
  try {
    measureAll(scenarios, mode, rateRps, warmupReplays, values.json);
  } finally {
    if (heavyDir !== undefined) rmSync(heavyDir, { recursive: true, force: true });
    if (shapeDir !== undefined) rmSync(shapeDir, { recursive: true, force: true });
  }
}

/** Warm-up, then each scenario measured, its load line and the table printed. */
function measureAll(
  scenarios: readonly Scenario[],
  mode: PrefixCacheMode,
  rateRps: number,
  warmupReplays: number,
  json: string | undefined,
): void {
  console.log(
    `twin speed: node ${process.version}, ${process.platform}/${process.arch}, ` +
      `${availableCores()} cores; target ${fmtInt(TARGET_REQ_PER_S)} req/s, Vidur ~${fmtInt(VIDUR_REQ_PER_S)} req/s`,
  );
  // Warm-up: the same code paths, so the measured run is not paying for compilation. A Mooncake
  // replay is short (a fraction of a second) and V8 is still optimizing and growing its young
  // generation through the second one, so it gets `--warmup` whole replays; their times are kept,
  // the first one's reported as the cold figure. The Poisson run is long enough to warm itself.
  // The heavy-prefix trace gets the same whole warm-up replays as the Mooncake one.
  const warmStart = performance.now();
  if (scenarios.some((s) => s.name === 'poisson')) run(poissonScenario(rateRps, 20_000), mode, undefined);
  const warmups = new Map<string, { simWallS: number; loadWallS: number }[]>();
  for (const scenario of scenarios) {
    // The shapes are long (up to a million requests): measured once, cold, like a user's run.
    if (scenario.name === 'poisson' || scenario.name.startsWith('shape-')) continue;
    const replays: { simWallS: number; loadWallS: number }[] = [];
    for (let i = 0; i < warmupReplays; i++) {
      const t0 = performance.now();
      const source = load(scenario);
      const loadWallS = (performance.now() - t0) / 1000;
      const r = simulate(scenario, source, mode, undefined);
      replays.push({ simWallS: r.summary.wallSeconds, loadWallS });
    }
    warmups.set(scenario.name, replays);
  }
  console.log(
    `warm-up: ${((performance.now() - warmStart) / 1000).toFixed(2)} s; prefix cache ${mode}` +
      [...warmups]
        .filter(([, w]) => w.length > 0)
        .map(([name, w]) => `; ${name} warm-up replays ${w.map((x) => x.simWallS.toFixed(3)).join(', ')} s`)
        .join(''),
  );

  const figures: Figures[] = [];
  for (const scenario of scenarios) {
    const f = measure(scenario, mode, warmups.get(scenario.name) ?? []);
    figures.push(f);
    const l = f.load;
    console.log(
      `${f.scenario} (${f.mode}): ${f.note}; ${f.instances} instances; simulated ${l.simulatedS.toFixed(0)} s at ` +
        `${l.servedReqPerS.toFixed(1)} req/s; busy ${(100 * l.utilization).toFixed(1)}%, ` +
        `${l.meanConcurrentPerInstance.toFixed(1)} requests in flight per instance, KV ${(100 * l.kvUsageMean).toFixed(1)}%; ` +
        `TTFT p50 ${l.ttftP50Ms.toFixed(0)} ms p99 ${l.ttftP99Ms.toFixed(0)} ms, TPOT p50 ${l.tpotP50Ms.toFixed(1)} ms; ` +
        `${l.preemptions} preemptions; ${f.totalWallS.toFixed(2)} s end to end`,
    );
  }
  console.log(formatTable(figures));
  for (const f of figures) {
    const before = SHAPE_BEFORE[f.scenario];
    if (before === undefined || before.reqPerWallS === 0) continue;
    console.log(
      `${f.scenario} (${f.policy}): ${fmtInt(f.reqPerWallS)} req / wall s, ${(f.reqPerWallS / before.reqPerWallS).toFixed(2)}x ` +
        `stop 36's ${fmtInt(before.reqPerWallS)}; CPU ${f.cpuS.toFixed(2)} s against ${before.cpuS.toFixed(2)} s ` +
        `(${(before.cpuS / f.cpuS).toFixed(2)}x); peak RSS ${f.maxRssMiB.toFixed(0)} MiB` +
        (f.policy === POLICY ? '' : ` (stop 36's figures are ${POLICY} ones)`),
    );
  }
  if (json !== undefined) {
    writeFileSync(json, `${JSON.stringify({ node: process.version, figures }, null, 2)}\n`);
  }
}

/**
 * The default: each scenario in a fresh process per mode, previous and current alternating,
 * `repeat` times; prints every run's figures and then the medians side by side with the speed-up.
 */
function compare(
  argv: readonly string[],
  scenarios: readonly string[],
  repeat: number,
  json: string | undefined,
  cli: CliPlan | undefined,
): void {
  // The child gets this run's flags, less the ones this function sets or only it reads.
  const ownFlags = ['--json', '--prefix-cache', '--repeat', '--only', '--cli', '--cli-baseline'];
  // Boolean: no value to skip.
  const ownSwitches = ['--shapes'];
  const passOn: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i] as string;
    if (ownFlags.includes(flag)) i++;
    else if (ownSwitches.includes(flag)) continue;
    else if (!ownFlags.some((own) => flag.startsWith(`${own}=`))) passOn.push(flag);
  }
  const pair: readonly PrefixCacheMode[] = ['blocks-32bit', 'runs'];
  // The heavy-prefix trace and the shapes run the current cache alone: the per-block one takes ~13 s
  // a heavy-prefix replay.
  const modesOf = (scenario: string): readonly PrefixCacheMode[] =>
    scenario === 'heavy-prefix' || scenario.startsWith('shape-') ? ['runs'] : pair;
  const dir = mkdtempSync(join(tmpdir(), 'twin-speed-'));
  const all: Figures[] = [];
  const loadBefore = loadavg();
  try {
    for (let r = 0; r < repeat; r++) {
      for (const scenario of scenarios) {
        for (const mode of modesOf(scenario)) {
          const out = join(dir, `${scenario}-${mode}-${r}.json`);
          const args = ['--import', 'tsx', fileURLToPath(import.meta.url), ...passOn];
          args.push('--only', scenario, '--prefix-cache', mode, '--json', out);
          console.log(`run ${r + 1}/${repeat}: ${scenario}, ${MODE_LABEL[mode]}`);
          const child = spawnSync(process.execPath, args, { stdio: ['ignore', 'inherit', 'inherit'] });
          if (child.status !== 0)
            throw new Error(`the ${scenario} ${mode} run failed (status ${child.status})`);
          const figures = (JSON.parse(readFileSync(out, 'utf8')) as { figures: Figures[] }).figures;
          all.push(...figures);
        }
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  const medians: Figures[] = [];
  for (const scenario of scenarios) {
    for (const mode of modesOf(scenario)) {
      const runs = all.filter((f) => f.mode === mode && f.scenario.startsWith(scenario));
      if (runs.length > 0) medians.push(medianRun(runs));
    }
  }
  const loadAfter = loadavg();
  console.log(
    `\nmedian of ${repeat} run(s) per row, each in its own process, modes alternating; load average ` +
      `${fmtLoad(loadBefore)} before, ${fmtLoad(loadAfter)} after, ` +
      `${all.map((f) => f.loadAvg1.toFixed(2)).join(', ')} at each measured run's start:`,
  );
  console.log(formatTable(medians));
  for (const scenario of scenarios) {
    const before = medians.find((f) => f.mode === 'blocks-32bit' && f.scenario.startsWith(scenario));
    const after = medians.find((f) => f.mode === 'runs' && f.scenario.startsWith(scenario));
    if (before === undefined || after === undefined) continue;
    const runsBefore = all.filter((f) => f.mode === 'blocks-32bit' && f.scenario.startsWith(scenario));
    const runsAfter = all.filter((f) => f.mode === 'runs' && f.scenario.startsWith(scenario));
    console.log(
      `${scenario}: ${(before.simWallS / after.simWallS).toFixed(2)}x the previous speed ` +
        `(median ${fmtInt(before.reqPerWallS)} -> ${fmtInt(after.reqPerWallS)} req / wall s; ` +
        `runs before ${runsBefore.map((f) => f.simWallS.toFixed(2)).join(', ')} s, ` +
        `after ${runsAfter.map((f) => f.simWallS.toFixed(2)).join(', ')} s; ` +
        `CPU s before ${runsBefore.map((f) => f.cpuS.toFixed(2)).join(', ')}, ` +
        `after ${runsAfter.map((f) => f.cpuS.toFixed(2)).join(', ')})`,
    );
    const coldLine = (runs: readonly Figures[]): string =>
      runs
        .map((f) =>
          f.cold === undefined
            ? '-'
            : `${fmtInt(f.requests / f.cold.simWallS)} (${fmtInt(f.requests / (f.cold.simWallS + f.cold.loadWallS))})`,
        )
        .join(', ');
    if (after.cold !== undefined) {
      console.log(
        `${scenario}: first replay in each process (cold), req / wall s (with load): before ${coldLine(runsBefore)}; ` +
          `after ${coldLine(runsAfter)}; measured run with load: before ` +
          `${runsBefore.map((f) => fmtInt(f.reqPerWallSWithLoad)).join(', ')}, after ` +
          `${runsAfter.map((f) => fmtInt(f.reqPerWallSWithLoad)).join(', ')}`,
      );
    }
  }
  const heavy = all.filter((f) => f.scenario === 'heavy-prefix');
  if (heavy.length > 0) {
    const h = medianRun(heavy);
    const moon = medians.find((f) => f.mode === 'runs' && f.scenario.startsWith('mooncake'));
    // Per request, not per replay: the two traces differ in length, prompts and events.
    const cpuPerReq = (f: Figures): string => `${((1e6 * f.cpuS) / f.requests).toFixed(1)} µs`;
    console.log(
      `heavy-prefix: median ${fmtInt(h.reqPerWallS)} req / wall s (runs ${heavy.map((f) => f.simWallS.toFixed(2)).join(', ')} s; ` +
        `CPU s ${heavy.map((f) => f.cpuS.toFixed(2)).join(', ')}; ${fmtInt(h.events)} events, ${fmtInt(h.engineSteps)} engine steps)` +
        (moon === undefined
          ? ''
          : `; ${(h.reqPerWallS / moon.reqPerWallS).toFixed(2)}x the Mooncake replay's req / wall s, ` +
            `CPU per request ${cpuPerReq(h)} against ${cpuPerReq(moon)}`),
    );
  }
  const cliFigures = cli === undefined ? undefined : measureCli(cli);
  if (json !== undefined) {
    writeFileSync(
      json,
      `${JSON.stringify({ node: process.version, repeat, medians, runs: all, cli: cliFigures }, null, 2)}\n`,
    );
  }
}

/** The CLI end-to-end runs asked for: how many, on which trace, against which other checkout. */
interface CliPlan {
  readonly runs: number;
  readonly trace: string;
  readonly baseline: string | undefined;
}

/** One end-to-end CLI run of the Mooncake scenario. */
interface CliRun {
  /** `this` (the checkout this bench belongs to) or the baseline's directory. */
  readonly tree: string;
  /** Wall seconds of the whole process, spawn to exit. */
  readonly wallS: number;
  /** The simulation loop inside it (the JSON summary's wallSeconds): the cold replay. */
  readonly replayS: number;
  /**
   * CPU seconds of the child process (all its threads), from /proc's counts of reaped children;
   * undefined where there is no /proc. On a shared machine it moves far less than wall time.
   */
  readonly cpuS: number | undefined;
  readonly requests: number;
  readonly loadAvg1: number;
}

/**
 * Times `switchyard sim` on the Mooncake scenario end to end, `plan.runs` times, each in a fresh
 * process, alternating with the baseline checkout's CLI when one is given: what a user running the
 * twin once waits for (node's start-up, loading the CLI's modules, reading the trace, the cold first
 * replay, the report). The same cluster, engine settings and policy as the in-process scenario.
 */
function measureCli(plan: CliPlan): CliRun[] {
  const self = fileURLToPath(new URL('..', import.meta.url));
  const trees = plan.baseline === undefined ? [self] : [plan.baseline, self];
  for (const tree of trees) {
    // bin/switchyard.mjs runs src/ through tsx when dist/ is missing or stale: not what a user gets.
    if (distProblem(tree) !== undefined) {
      console.log(
        `\nmooncake through the CLI: not measured, ${tree}'s dist/ is missing or older than its src/ ` +
          '(the CLI would run src/ through tsx); npm run build there first',
      );
      return [];
    }
  }
  const dir = mkdtempSync(join(tmpdir(), 'twin-speed-cli-'));
  const out = join(dir, 'summary.json');
  const runs: CliRun[] = [];
  const args = [
    'sim',
    '--trace',
    plan.trace,
    '--instances',
    '16',
    '--gpu',
    'h100',
    '--model',
    'llama-3.1-8b',
    '--policy',
    POLICY,
    '--seed',
    String(SEED),
    '--max-num-seqs',
    String(DEFAULT_ENGINE_CONFIG.maxNumSeqs),
    '--max-num-batched-tokens',
    String(DEFAULT_ENGINE_CONFIG.maxNumBatchedTokens),
    '--no-progress',
    '--json',
    out,
  ];
  try {
    for (let r = 0; r < plan.runs; r++) {
      for (const tree of trees) {
        const loadAvg1 = loadavg()[0] ?? 0;
        const cpuBefore = childrenCpuS();
        const start = performance.now();
        const child = spawnSync(process.execPath, [join(tree, 'bin', 'switchyard.mjs'), ...args], {
          stdio: ['ignore', 'ignore', 'inherit'],
        });
        const wallS = (performance.now() - start) / 1000;
        const cpuAfter = childrenCpuS();
        if (child.status !== 0) throw new Error(`switchyard sim in ${tree} failed (status ${child.status})`);
        const summary = JSON.parse(readFileSync(out, 'utf8')) as { wallSeconds: number; requests: number };
        runs.push({
          tree: tree === self ? 'this' : tree,
          wallS,
          replayS: summary.wallSeconds,
          cpuS: cpuBefore !== undefined && cpuAfter !== undefined ? cpuAfter - cpuBefore : undefined,
          requests: summary.requests,
          loadAvg1,
        });
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  const median = (xs: readonly number[]): number => {
    const sorted = [...xs].sort((a, b) => a - b);
    return sorted[(sorted.length - 1) >> 1] as number;
  };
  const line = (tree: string): string => {
    const mine = runs.filter((x) => x.tree === tree);
    const wall = median(mine.map((x) => x.wallS));
    const replay = median(mine.map((x) => x.replayS));
    const cpus = mine.map((x) => x.cpuS).filter((x) => x !== undefined);
    const requests = mine[0]?.requests ?? 0;
    return (
      `median ${wall.toFixed(2)} s end to end (${fmtInt(requests / wall)} req / wall s), of it the cold replay ` +
      `${replay.toFixed(2)} s (${fmtInt(requests / replay)} req / wall s) and ${(wall - replay).toFixed(2)} s the rest ` +
      `(start-up, loading, report)` +
      (cpus.length > 0 ? `; CPU ${median(cpus).toFixed(2)} s median` : '') +
      `; runs (end to end / replay${cpus.length > 0 ? ' / CPU' : ''}) ` +
      mine
        .map((x) =>
          [x.wallS, x.replayS, ...(x.cpuS !== undefined ? [x.cpuS] : [])].map((v) => v.toFixed(2)).join('/'),
        )
        .join(', ') +
      ' s'
    );
  };
  console.log(
    `\nmooncake through the CLI (switchyard sim ${args.slice(1, -2).join(' ')}), ${plan.runs} run(s) each, ` +
      `fresh processes${plan.baseline === undefined ? '' : ', alternating'}; load average ` +
      `${runs.map((x) => x.loadAvg1.toFixed(2)).join(', ')} at each start:`,
  );
  if (plan.baseline !== undefined) console.log(`  baseline ${plan.baseline}: ${line(plan.baseline)}`);
  console.log(`  this checkout: ${line('this')}`);
  if (plan.baseline !== undefined) {
    const base = median(runs.filter((x) => x.tree === plan.baseline).map((x) => x.wallS));
    const mine = median(runs.filter((x) => x.tree === 'this').map((x) => x.wallS));
    const cpuOf = (tree: string): number | undefined => {
      const cpus = runs.filter((x) => x.tree === tree && x.cpuS !== undefined).map((x) => x.cpuS as number);
      return cpus.length > 0 ? median(cpus) : undefined;
    };
    const baseCpu = cpuOf(plan.baseline);
    const mineCpu = cpuOf('this');
    console.log(
      `  end to end: ${(base / mine).toFixed(2)}x the baseline's speed by wall time` +
        (baseCpu !== undefined && mineCpu !== undefined
          ? `, ${(baseCpu / mineCpu).toFixed(2)}x by CPU time`
          : ''),
    );
  }
  return runs;
}

/** Clock ticks per second of /proc's CPU counts (USER_HZ: 100 on Linux builds that matter here). */
const USER_HZ = 100;

/**
 * CPU seconds (user + system) of this process's children that have exited and been waited for
 * (/proc/self/stat's cutime and cstime), or undefined without /proc: spawnSync reaps each child,
 * so the difference around one gives that child's CPU time, all its threads included.
 */
function childrenCpuS(): number | undefined {
  try {
    const stat = readFileSync('/proc/self/stat', 'utf8');
    // Fields after the command name (which may hold spaces): state is field 3, cutime 16, cstime 17.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const ticks = Number(fields[13]) + Number(fields[14]);
    return Number.isFinite(ticks) ? ticks / USER_HZ : undefined;
  } catch {
    return undefined;
  }
}

/** The run with the median simulation wall time (the lower middle one of an even count). */
function medianRun(runs: readonly Figures[]): Figures {
  const sorted = [...runs].sort((a, b) => a.simWallS - b.simWallS);
  return sorted[(sorted.length - 1) >> 1] as Figures;
}

/** The Mooncake replay: 16 H100 instances of llama-3.1-8b, least-request routing. */
function mooncakeScenario(trace: string, note: string, maxRequests: number | undefined): Scenario {
  return {
    // The table says so too when the bundled sample stands in for the full trace.
    name: trace === MOONCAKE_SAMPLE ? 'mooncake (sample)' : 'mooncake',
    note,
    instances: 16,
    workload: {
      kind: 'trace',
      trace,
      rateScale: 1,
      ...(maxRequests !== undefined ? { maxRequests } : {}),
    },
    expectedRequests: maxRequests,
  };
}

/**
 * The generated heavy-prefix trace (bench/heavy-prefix-trace.ts, default options) on the Mooncake
 * replay's cluster: 16 H100 instances of llama-3.1-8b, least-request routing.
 */
function heavyPrefixScenario(path: string): Scenario {
  return {
    name: 'heavy-prefix',
    note: 'generated heavy-prefix trace (12,000 requests, prompts to 100k tokens)',
    instances: 16,
    workload: { kind: 'trace', trace: path, rateScale: 1 },
    expectedRequests: undefined,
  };
}

/** A bench/trace-shapes.ts trace written to `path`, on the Mooncake replay's 16 instances. */
function shapeScenario(shape: Shape, path: string, policy: string): Scenario {
  const rows = DEFAULT_SHAPE_REQUESTS[shape];
  return {
    name: `shape-${shape}`,
    note: `generated ${shape} trace (bench/trace-shapes.ts, ${fmtInt(rows)} rows), ${policy}`,
    instances: 16,
    workload: { kind: 'trace', trace: path, rateScale: 1 },
    policy,
    expectedRequests: rows,
  };
}

/** The large synthetic run: 128 H100 instances, Poisson arrivals, uniform lengths. */
function poissonScenario(rateRps: number, requests: number): Scenario {
  return {
    name: 'poisson',
    note: `poisson ${rateRps} req/s, input U[128, 2048], output U[16, 512]`,
    instances: 128,
    workload: {
      kind: 'poisson',
      rateRps,
      maxRequests: requests,
      input: { kind: 'uniform', lo: 128, hi: 2048 },
      output: { kind: 'uniform', lo: 16, hi: 512 },
    },
    expectedRequests: requests,
  };
}

/** One run of a scenario; reading the trace (in createWorkload) is part of it. */
function run(
  scenario: Scenario,
  mode: PrefixCacheMode,
  onProgress: ((arrived: number, simulatedMs: number) => void) | undefined,
): SimResult {
  return simulate(scenario, load(scenario), mode, onProgress);
}

/** The scenario's requests: a trace is read, gunzipped and parsed here, whole; generators are lazy. */
function load(scenario: Scenario): RequestSource {
  return createWorkload(scenario.workload, new Rng(SEED).fork('workload'));
}

/** The simulation alone: its summary's wallSeconds is the loop's time (the engines built, the run). */
function simulate(
  scenario: Scenario,
  source: RequestSource,
  mode: PrefixCacheMode,
  onProgress: ((arrived: number, simulatedMs: number) => void) | undefined,
): SimResult {
  const cluster: ClusterSpec = {
    groups: [{ count: scenario.instances, gpu: 'h100', model: 'llama-3.1-8b', tp: 1 }],
  };
  return runSimulation(source, {
    seed: SEED,
    cluster,
    engine: DEFAULT_ENGINE_CONFIG,
    policy: createRoutingPolicy(scenario.policy ?? POLICY),
    slo: { ttftMs: 2000, tpotMs: 100 },
    workload: scenario.note,
    prefixCache: mode,
    ...(onProgress !== undefined ? { onProgress } : {}),
  });
}

/** Runs one scenario with a progress bar on a terminal and a heap sampler riding on its callback. */
function measure(
  scenario: Scenario,
  mode: PrefixCacheMode,
  warmups: readonly { simWallS: number; loadWallS: number }[],
): Figures {
  const bar =
    process.stderr.isTTY === true
      ? new cliProgress.SingleBar(
          {
            stream: process.stderr,
            format: `${scenario.name.padEnd(8)} [{bar}] {percentage}% | {value}/{total} requests | t={simS} s`,
            hideCursor: true,
            clearOnComplete: true,
          },
          cliProgress.Presets.shades_classic,
        )
      : undefined;
  let peakHeap = process.memoryUsage().heapUsed;
  // The trace's length is known only once it is read; the bar starts counting and learns it then.
  bar?.start(scenario.expectedRequests ?? 0, 0, { simS: '0' });
  const loadAvg1 = loadavg()[0] ?? 0;
  const start = performance.now();
  const cpuStart = process.cpuUsage();
  let result: SimResult;
  let loadWallS = 0;
  try {
    const source = load(scenario);
    loadWallS = (performance.now() - start) / 1000;
    result = simulate(scenario, source, mode, (arrived, simulatedMs) => {
      const heap = process.memoryUsage().heapUsed;
      if (heap > peakHeap) peakHeap = heap;
      if (bar !== undefined) {
        if (arrived > bar.getTotal()) bar.setTotal(arrived);
        bar.update(arrived, { simS: (simulatedMs / 1000).toFixed(0) });
      }
    });
  } finally {
    bar?.stop();
  }
  const totalWallS = (performance.now() - start) / 1000;
  const cpu = process.cpuUsage(cpuStart);
  const heap = process.memoryUsage().heapUsed;
  if (heap > peakHeap) peakHeap = heap;
  const s = result.summary;
  const perInstance = s.perInstance;
  const mean = (pick: (x: (typeof perInstance)[number]) => number): number =>
    perInstance.reduce((sum, x) => sum + pick(x), 0) / Math.max(1, perInstance.length);
  return {
    scenario: scenario.name,
    mode,
    policy: scenario.policy ?? POLICY,
    note: scenario.note,
    instances: s.instances,
    requests: s.requests,
    events: s.events,
    engineSteps: s.engineSteps ?? 0,
    simWallS: s.wallSeconds,
    totalWallS,
    loadWallS,
    reqPerWallS: s.requests / s.wallSeconds,
    reqPerWallSWithLoad: s.requests / (s.wallSeconds + loadWallS),
    cold: warmups[0],
    warmupSimWallS: warmups.map((w) => w.simWallS),
    loadAvg1,
    cpuS: (cpu.user + cpu.system) / 1e6,
    eventsPerWallS: s.eventsPerWallS,
    engineStepsPerWallS: (s.engineSteps ?? 0) / s.wallSeconds,
    maxRssMiB: (process.resourceUsage().maxRSS * 1024) / MIB,
    peakHeapMiB: peakHeap / MIB,
    load: {
      simulatedS: s.simulatedSeconds,
      servedReqPerS: s.throughputReqPerS,
      utilization: mean((x) => x.utilization),
      meanConcurrentPerInstance: (s.throughputReqPerS * (s.e2eMs.mean / 1000)) / Math.max(1, s.instances),
      kvUsageMean: mean((x) => x.kvUsageMean),
      ttftP50Ms: s.ttftMs.p50,
      ttftP99Ms: s.ttftMs.p99,
      tpotP50Ms: s.tpotMs.p50,
      preemptions: s.preemptions,
    },
  };
}

function formatTable(figures: readonly Figures[]): string {
  const table = new Table({
    head: [
      'scenario',
      'prefix cache',
      'instances',
      'requests',
      'events',
      'engine steps',
      'wall s',
      'req / wall s',
      'load s',
      'req / wall s with load',
      'CPU s',
      'events / wall s',
      'steps / wall s',
      'peak RSS MiB',
      'peak heap MiB',
      'x target',
      'x Vidur',
    ],
    style: { head: [], border: [] },
    chars: COMPACT,
  });
  for (const f of figures) {
    table.push([
      f.scenario,
      MODE_LABEL[f.mode],
      String(f.instances),
      fmtInt(f.requests),
      fmtInt(f.events),
      fmtInt(f.engineSteps),
      f.simWallS.toFixed(2),
      fmtInt(f.reqPerWallS),
      f.loadWallS.toFixed(2),
      fmtInt(f.reqPerWallSWithLoad),
      f.cpuS.toFixed(2),
      fmtInt(f.eventsPerWallS),
      fmtInt(f.engineStepsPerWallS),
      fmtInt(f.maxRssMiB),
      fmtInt(f.peakHeapMiB),
      (f.reqPerWallS / TARGET_REQ_PER_S).toFixed(2),
      (f.reqPerWallS / VIDUR_REQ_PER_S).toFixed(1),
    ]);
  }
  return table.toString();
}

/**
 * Self time per function of the busiest .cpuprofile in `dir` (a tsx run writes one per thread; the
 * loader thread's is mostly idle). Self time is what the function itself ran, not its callees;
 * functions V8 inlined count towards their caller.
 */
function printProfileSummary(dir: string, top: number): void {
  interface ProfileNode {
    readonly id: number;
    readonly callFrame: { readonly functionName: string; readonly url: string };
  }
  interface Profile {
    readonly nodes: readonly ProfileNode[];
    readonly samples: readonly number[];
    readonly timeDeltas: readonly number[];
  }
  let best: { file: string; self: Map<string, number>; busyUs: number } | undefined;
  const files = readdirSync(dir).filter((f) => f.endsWith('.cpuprofile'));
  if (files.length === 0) throw new Error(`no .cpuprofile in ${dir}`);
  for (const file of files) {
    const path = join(dir, file);
    if (!statSync(path).isFile()) continue;
    const profile = JSON.parse(readFileSync(path, 'utf8')) as Profile;
    const byId = new Map(profile.nodes.map((n) => [n.id, n]));
    const self = new Map<string, number>();
    let busyUs = 0;
    for (let i = 0; i < profile.samples.length; i++) {
      const node = byId.get(profile.samples[i] as number);
      if (node === undefined) continue;
      const name = node.callFrame.functionName || '(anonymous)';
      if (name === '(idle)') continue;
      const us = profile.timeDeltas[i] ?? 0;
      busyUs += us;
      const where = node.callFrame.url.split('/').slice(-2).join('/');
      const key = where.length > 0 ? `${name}  ${where}` : name;
      self.set(key, (self.get(key) ?? 0) + us);
    }
    if (best === undefined || busyUs > best.busyUs) best = { file, self, busyUs };
  }
  if (best === undefined) return;
  const table = new Table({
    head: ['self ms', 'self %', 'function  file'],
    style: { head: [], border: [] },
    chars: COMPACT,
  });
  const rows = [...best.self].sort((a, b) => b[1] - a[1]).slice(0, top);
  for (const [key, us] of rows) {
    table.push([(us / 1000).toFixed(0), ((100 * us) / best.busyUs).toFixed(1), key]);
  }
  console.log(`${best.file}: ${(best.busyUs / 1000).toFixed(0)} ms busy`);
  console.log(table.toString());
}

function availableCores(): number {
  // A container's CPU quota is what the run really gets; the host may show more cores.
  return Math.max(1, Math.round(readCgroupCpus() ?? availableParallelism()));
}

function readCgroupCpus(): number | undefined {
  try {
    const [quota, period] = readFileSync('/sys/fs/cgroup/cpu.max', 'utf8').trim().split(/\s+/);
    if (quota === undefined || period === undefined || quota === 'max') return undefined;
    return Number(quota) / Number(period);
  } catch {
    return undefined;
  }
}

function positiveInt(text: string, flag: string): number {
  const n = Number(text);
  if (!Number.isSafeInteger(n) || n < 1) throw new Error(`${flag} must be a positive integer, got '${text}'`);
  return n;
}

function nonNegativeInt(text: string, flag: string): number {
  const n = Number(text);
  if (!Number.isSafeInteger(n) || n < 0)
    throw new Error(`${flag} must be a non-negative integer, got '${text}'`);
  return n;
}

function fmtLoad(avg: readonly number[]): string {
  return avg.map((x) => x.toFixed(2)).join(' ');
}

function positiveNumber(text: string, flag: string): number {
  const n = Number(text);
  if (!(n > 0 && Number.isFinite(n))) throw new Error(`${flag} must be a positive number, got '${text}'`);
  return n;
}

function fmtInt(n: number): string {
  return Math.round(n).toLocaleString('en-US');
}

main();
