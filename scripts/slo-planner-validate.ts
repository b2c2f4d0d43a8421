/**
 * One run of the SLO planner's validation set (its README, "Validation days"): the results page's
 * diurnal day and sinusoid, and four ServeGen days it was not tuned on (data/samples/servegen/),
 * each run exactly as scripts/results-autoscaling.ts runs its scenarios (llama-3.1-8b on H100s,
 * round-robin, 8,000/1,000 tokens, TTFT 3 s, TPOT 50 ms, minimum 1 instance). Prints one JSON line,
 * so a shell loop can run the set in parallel and a table can be built from the lines.
 *
 *   node --import tsx scripts/slo-planner-validate.ts --load m-mid-day11 --run slo-planner [--params '{...}']
 *   ... --run static --n 22          # static provisioning with 22 instances
 *   ... --run kpa --c 4              # kpa at 4 requests per replica, 100% utilisation (the results page's sweep)
 *   ... --hours 6 --seed 2
 */
import { parseArgs } from 'node:util';
import { runTwin, type TwinSettings } from '../src/twin/run.ts';

const { values: args } = parseArgs({
  options: {
    load: { type: 'string', default: 'diurnal' },
    run: { type: 'string', default: 'slo-planner' },
    n: { type: 'string' },
    c: { type: 'string' },
    params: { type: 'string', default: '{}' },
    hours: { type: 'string' },
    seed: { type: 'string', default: '1' },
  },
});

/** A ServeGen day: the committed slice, the scale that puts static's 99% within the pool. */
interface Day {
  readonly file: string;
  readonly scale: number;
}

/**
 * The days. `diurnal` is the results page's; the others were fixed by earlier rounds (README) before
 * any variant ran, their scale chosen so that the hourly mean peaks near the results day's 22 req/s
 * or static provisioning within 24 instances reaches 99%.
 */
const DAYS: Readonly<Record<string, Day>> = {
  diurnal: { file: 'sample:servegen-m-small-day2', scale: 0.022 },
  'm-small-day5': { file: 'data/samples/servegen/m-small-day5.csv', scale: 0.029 },
  'm-mid-day9': { file: 'data/samples/servegen/m-mid-day9.csv', scale: 0.0627 },
  'm-mid-day11': { file: 'data/samples/servegen/m-mid-day11.csv', scale: 0.022 },
  'm-large-day6': { file: 'data/samples/servegen/m-large-day6.csv', scale: 0.05 },
};

const SLO = { ttftMs: 3000, tpotMs: 50 };
const SHAPE = { input: { kind: 'fixed', tokens: 8000 }, output: { kind: 'fixed', tokens: 1000 } };

function workload(): { workload: Record<string, unknown>; pool: number } {
  const hours = args.hours === undefined ? undefined : Number(args.hours);
  if (args.load === 'sinusoid')
    return {
      workload: {
        kind: 'sinusoid',
        rateMinRps: 1,
        rateMaxRps: 24,
        periodS: 900,
        durationS: (hours ?? 2) * 3600,
        ...SHAPE,
      },
      pool: 16,
    };
  const day = DAYS[args.load ?? ''];
  if (day === undefined) throw new Error(`--load: one of sinusoid, ${Object.keys(DAYS).join(', ')}`);
  return {
    workload: {
      kind: 'servegen',
      file: day.file,
      rateScale: day.scale,
      durationS: (hours ?? 24) * 3600,
      ...SHAPE,
    },
    pool: 24,
  };
}

function main(): void {
  const { workload: w, pool: maxPool } = workload();
  const run = args.run ?? 'slo-planner';
  const pool = run === 'static' ? Number(args.n) : maxPool;
  const params: Record<string, unknown> =
    run === 'kpa'
      ? { containerConcurrency: Number(args.c), targetUtilization: 1 }
      : JSON.parse(args.params ?? '{}');
  const settings: TwinSettings = {
    seed: Number(args.seed),
    policy: 'round-robin',
    policies: {},
    cluster: { groups: [{ count: pool, gpu: 'h100', model: 'llama-3.1-8b', tp: 1 }] },
    engine: {},
    workload: w,
    slo: SLO,
    output: {},
    expectedRequests: undefined,
    control: { autoscaler: run, params, minInstances: 1, maxInstances: pool, slo: SLO },
  };
  const r = runTwin(settings);
  const m = r.summary;
  process.stdout.write(
    `${JSON.stringify({
      load: args.load,
      run: run === 'static' ? `static ${pool}` : run === 'kpa' ? `kpa ${args.c}` : run,
      params: args.params,
      seed: Number(args.seed),
      gpuHours: Number((r.gpuHours ?? Number.NaN).toFixed(3)),
      attainment: Number((100 * m.sloAttainment.both).toFixed(3)),
      missed: Math.round(m.requests * (1 - m.sloAttainment.both)),
      requests: m.requests,
      coldStarts: r.coldStarts ?? 0,
    })}\n`,
  );
}

main();
