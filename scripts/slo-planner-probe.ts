/**
 * Where the SLO planner's GPU-hours and misses go: runs `slo-planner` (or `static`) in the twin on
 * one load and attributes the replica-seconds it asked for to the parts of its rule (rate term,
 * burst term, scale-down hold, headroom), and the misses to the hours they happen in. An analysis
 * tool for tuning the planner on one load and checking it on another, not a results page.
 *
 *   node --import tsx scripts/slo-planner-probe.ts --load diurnal [--hours 6] [--start-h 0]
 *   node --import tsx scripts/slo-planner-probe.ts --load servegen --file X.csv --scale 0.03 --start-h 240
 *   node --import tsx scripts/slo-planner-probe.ts --load sinusoid --params '{"targetUtilization":0.9}'
 *   ... --static 22      # static provisioning with 22 instances instead of the planner
 *   ... --json out.json  # the per-tick series too
 *   ... --policy least-request  # another routing policy (default round-robin, as the results page)
 *   ... --admission '{"gate":{"waitingMax":1}}'  # an admission queue in front of routing (the
 *                        # config `switchyard serve` takes under `admission:`; none by default)
 *
 *   ... --clairvoyant 20 # the results page's clairvoyant bound (20 s spans), hour by hour
 *   ... --against c.json # the planner's asked replica-hours above a `--clairvoyant 20 --json c.json`
 *                        # run's (same load and seed), hour by hour and by cause; a file of
 *                        # another load (other request count: --hours, --start-h, --seed) or
 *                        # interval is refused, as is --against with --static or --clairvoyant
 *
 * Loads: `diurnal` is docs/results/autoscaling.md's day (the committed ServeGen slice at 0.022x);
 * `servegen` any ServeGen file (`--file`, `--scale`, `--start-h`, `--clients a,b`); `sinusoid` the
 * results page's 1-to-24 req/s case, period 900 s, or another (`--rate-min`, `--rate-max`,
 * `--period-s`, `--cv` for Gamma arrivals on the curve). All: 8,000/1,000 tokens
 * (`--input-tokens`, `--output-tokens`), TTFT 3 s, TPOT 50 ms, seed 1 (`--seed`).
 *
 * The validation day the planner README reports (ServeGen m-mid clients 36, 73, 15, 66 and 53, in
 * that order; `--scale 0.022 --start-h 240`) is built from ../shared (not committed):
 *
 *   tar xzf ../shared/data/traces/servegen/language_m-mid_trace.tar.gz -C /tmp/sg
 *   (echo client,timestamp_s,rate,cv,pattern,pat_arg1,pat_arg2
 *    for c in 36 73 15 66 53; do sed "s/^/$c,/" /tmp/sg/data/language/m-mid/chunk-$c-trace.csv; done) > /tmp/sg/mmid5.csv
 *
 * The held-out day fixed for the next accepted change (README, "The validation day's misses"): the
 * same from language_m-large_trace.tar.gz with clients 61 73 143 91 34 (the five with the most
 * requests over hours 120 to 144), `--scale 0.05 --start-h 120`.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { createSloPlanner, sloPlannerParams } from '../src/control/autoscalers/slo-planner/planner.ts';
import {
  type ControlContext,
  type ControlLoop,
  type ControlObservation,
  singleVariantDecision,
} from '../src/control/types.ts';
import { runTwin, type TwinSettings } from '../src/twin/run.ts';
import { clairvoyant } from './clairvoyant.ts';

const { values: args } = parseArgs({
  options: {
    load: { type: 'string', default: 'diurnal' },
    file: { type: 'string' },
    scale: { type: 'string' },
    'start-h': { type: 'string', default: '0' },
    clients: { type: 'string' },
    hours: { type: 'string' },
    'max-instances': { type: 'string' },
    params: { type: 'string', default: '{}' },
    static: { type: 'string' },
    json: { type: 'string' },
    clairvoyant: { type: 'string' },
    against: { type: 'string' },
    seed: { type: 'string', default: '1' },
    policy: { type: 'string', default: 'round-robin' },
    admission: { type: 'string' },
    'rate-min': { type: 'string', default: '1' },
    'rate-max': { type: 'string', default: '24' },
    'period-s': { type: 'string', default: '900' },
    cv: { type: 'string', default: '1' },
    'input-tokens': { type: 'string', default: '8000' },
    'output-tokens': { type: 'string', default: '1000' },
  },
});

/** One tick as the planner saw and answered it. */
interface Tick {
  readonly t: number;
  readonly arrivals: number;
  readonly completions: number;
  readonly missed: number;
  readonly ready: number;
  readonly held: number;
  readonly wanted: number;
  readonly needed: number;
  readonly forRate: number;
  /** The part of `forRate` for the backlog (requests waiting at the host and in engines). */
  readonly forBacklog: number;
  readonly forBursts: number;
  readonly headroom: number;
  /** The detected season's autocorrelation at its period (0: none). */
  readonly seasonR: number;
}

function workload(): { workload: Record<string, unknown>; maxInstances: number } {
  const hours = args.hours === undefined ? undefined : Number(args.hours);
  const shape = {
    input: { kind: 'fixed', tokens: Number(args['input-tokens']) },
    output: { kind: 'fixed', tokens: Number(args['output-tokens']) },
  };
  if (args.load === 'sinusoid') {
    const durationS = (hours ?? 2) * 3600;
    const w = {
      kind: 'sinusoid',
      rateMinRps: Number(args['rate-min']),
      rateMaxRps: Number(args['rate-max']),
      periodS: Number(args['period-s']),
      cv: Number(args.cv),
      durationS,
      ...shape,
    };
    return { workload: w, maxInstances: 16 };
  }
  const diurnal = args.load === 'diurnal';
  const w = {
    kind: 'servegen',
    file: diurnal ? 'sample:servegen-m-small-day2' : (args.file ?? 'sample:servegen-m-small-day2'),
    rateScale: Number(args.scale ?? (diurnal ? 0.022 : 0.03)),
    startH: Number(args['start-h']),
    ...(args.clients === undefined ? {} : { clients: args.clients.split(',') }),
    durationS: (hours ?? 24) * 3600,
    ...shape,
  };
  return { workload: w, maxInstances: 24 };
}

/** The numbers the planner's reason line carries (see planner.ts `reason`). */
function parseReason(reason: string): Pick<Tick, 'needed' | 'forBursts' | 'headroom' | 'seasonR'> & {
  demand: number;
  backlog: number;
  perReplica: number;
} {
  const num = (re: RegExp): number => Number(re.exec(reason)?.[1] ?? Number.NaN);
  return {
    demand: num(/^demand ([\d.]+)/),
    headroom: num(/headroom ([\d.]+)/),
    backlog: num(/backlog (\d+)/),
    perReplica: num(/([\d.]+) req\/s per replica/),
    needed: num(/-> (\d+)/),
    forBursts: num(/need (\d+)/),
    seasonR: Number(/season \d+ min r ([\d.]+)/.exec(reason)?.[1] ?? 0),
  };
}

function main(): void {
  // Read before the run (which may take minutes), so a bad file fails at once.
  const bound = args.against === undefined ? undefined : boundTicks(args.against);
  if (bound !== undefined && (args.static !== undefined || args.clairvoyant !== undefined))
    usage('--against compares a slo-planner run with the bound: drop --static and --clairvoyant');
  const { workload: w, maxInstances: poolDefault } = workload();
  const pool = Number(args['max-instances'] ?? args.static ?? poolDefault);
  const ticks: Tick[] = [];
  const params = sloPlannerParams.parse(JSON.parse(args.params));
  const arrivals: number[] = [];
  const spanS = args.clairvoyant === undefined ? undefined : Number(args.clairvoyant);
  if (spanS !== undefined) runTwin(settingsWith(w, pool, (c) => recording(c, arrivals)));
  const create = (context: ControlContext): ControlLoop => {
    const inner =
      spanS === undefined
        ? createSloPlanner(context, params)
        : clairvoyant(context, SLO, arrivals, spanS, 'clairvoyant');
    const startupMs = context.startupMs ?? params.startupMs;
    return {
      name: 'probe',
      decide(o: ControlObservation) {
        const d = inner.decide(o);
        const r = spanS === undefined ? parseReason(d.reason) : parseReason('-> 0');
        const wanted = d.targets.reduce((s, x) => s + x.replicas, 0);
        const backlogRps = (r.backlog * 1000) / (params.backlogDrainMs + startupMs);
        const win = o.window;
        const missed = Number.isFinite(win.sloAttainment) ? win.completions * (1 - win.sloAttainment) : 0;
        ticks.push({
          t: o.nowMs / 1000,
          arrivals: win.arrivals,
          completions: win.completions,
          missed: missed + win.failures,
          ready: o.instances.filter((i) => i.phase === 'ready').length,
          held: o.instances.length,
          wanted,
          needed: r.needed,
          forRate: (r.demand + backlogRps) / r.perReplica,
          forBacklog: backlogRps / r.perReplica,
          forBursts: r.forBursts,
          headroom: r.headroom,
          seasonR: r.seasonR,
        });
        return d;
      },
    };
  };
  const isStatic = args.static !== undefined;
  const settings = settingsWith(w, pool, isStatic ? undefined : create);
  const started = process.hrtime.bigint();
  const r = runTwin(settings);
  const wallS = Number(process.hrtime.bigint() - started) / 1e9;
  const m = r.summary;
  const missed = Math.round(m.requests * (1 - m.sloAttainment.both));
  const out = {
    load: args.load,
    ...(args.load === 'sinusoid' ? { workload: w } : {}),
    ...(args.policy === 'round-robin' ? {} : { policy: args.policy }),
    ...(admission === undefined ? {} : { admission }),
    params: JSON.parse(args.params),
    gpuHours: r.gpuHours,
    attainment: m.sloAttainment.both,
    requests: m.requests,
    completed: m.completed,
    missed,
    coldStarts: r.coldStarts,
    wallS,
  };
  process.stdout.write(`${JSON.stringify(out)}\n`);
  if (!isStatic) process.stdout.write(attribution(ticks));
  if (bound !== undefined) {
    const misfit = boundMismatch(bound, args.load, m.requests, ticks);
    if (misfit !== undefined) usage(`--against ${args.against}: ${misfit}`);
    process.stdout.write(againstBound(ticks, bound.ticks, params.targetUtilization));
  }
  if (args.json !== undefined) writeFileSync(args.json, JSON.stringify({ ...out, ticks }));
}

const SLO = { ttftMs: 3000, tpotMs: 50 };

/** `--admission`: the admission queue's config (validated by its schema when the run starts). */
const admission: Record<string, unknown> | undefined =
  args.admission === undefined ? undefined : jsonFlag('--admission', args.admission);

/** A JSON object flag, or a usage error naming it. */
function jsonFlag(flag: string, text: string): Record<string, unknown> {
  try {
    const v: unknown = JSON.parse(text);
    if (typeof v === 'object' && v !== null && !Array.isArray(v)) return v as Record<string, unknown>;
  } catch {
    // reported below
  }
  usage(`${flag} wants a JSON object, got ${text}`);
}

function settingsWith(
  w: Record<string, unknown>,
  pool: number,
  create: ((c: ControlContext) => ControlLoop) | undefined,
): TwinSettings {
  return {
    seed: Number(args.seed),
    policy: args.policy,
    ...(admission === undefined ? {} : { admission }),
    policies: {},
    cluster: { groups: [{ count: pool, gpu: 'h100', model: 'llama-3.1-8b', tp: 1 }] },
    engine: {},
    workload: w,
    slo: SLO,
    output: {},
    expectedRequests: undefined,
    control: {
      autoscaler: create === undefined ? 'static' : 'slo-planner',
      params: {},
      minInstances: 1,
      maxInstances: pool,
      slo: SLO,
      create,
    },
  };
}

/** Static, recording each window's arrivals (index: window number), as scripts/results-autoscaling.ts does. */
function recording(context: ControlContext, arrivals: number[]): ControlLoop {
  return {
    name: 'static',
    decide(o: ControlObservation) {
      arrivals[Math.round(o.window.endMs / context.intervalMs) - 1] = o.window.arrivals;
      return singleVariantDecision(context, context.maxReplicas, 'all');
    },
  };
}

/**
 * Replica-hours asked for, split by what raised the count: the rate term alone, the burst term
 * above it, headroom above the larger, the scale-down hold above the count needed; misses per hour.
 */
function attribution(ticks: readonly Tick[]): string {
  if (ticks.length < 2) return '';
  const dtH = ((ticks[1] as Tick).t - (ticks[0] as Tick).t) / 3600;
  let rate = 0;
  let bursts = 0;
  let headroom = 0;
  let hold = 0;
  let burstBinding = 0;
  const hourly = new Map<number, { missed: number; arrivals: number; wanted: number }>();
  for (const k of ticks) {
    const base = Math.ceil(k.forRate - 1e-9);
    const both = Math.ceil(Math.max(k.forRate, k.forBursts) - 1e-9);
    rate += Math.min(base, k.needed) * dtH;
    bursts += Math.max(0, Math.min(both, k.needed) - base) * dtH;
    headroom += Math.max(0, k.needed - Math.max(both, base)) * dtH;
    hold += Math.max(0, k.wanted - k.needed) * dtH;
    if (k.forBursts > k.forRate) burstBinding++;
    const h = Math.floor(k.t / 3600);
    const e = hourly.get(h) ?? { missed: 0, arrivals: 0, wanted: 0 };
    e.missed += k.missed;
    e.arrivals += k.arrivals;
    e.wanted += k.wanted * dtH;
    hourly.set(h, e);
  }
  const lines = [
    `asked replica-hours: rate ${rate.toFixed(1)}, bursts +${bursts.toFixed(1)} (binding ${((100 * burstBinding) / ticks.length).toFixed(0)}% of ticks), headroom +${headroom.toFixed(1)}, hold +${hold.toFixed(1)}`,
    'hour: arrivals missed replica-hours-asked',
    ...[...hourly.entries()].map(
      ([h, e]) =>
        `${String(h).padStart(2)}: ${String(e.arrivals).padStart(6)} ${e.missed.toFixed(0).padStart(6)} ${e.wanted.toFixed(1).padStart(6)}`,
    ),
  ];
  return `${lines.join('\n')}\n`;
}

/** A bad flag or file: one line on stderr, exit 2. */
function usage(message: string): never {
  process.stderr.write(`slo-planner-probe: ${message}\n`);
  process.exit(2);
}

/** One tick of the bound's run: its time (s) and the count it asked for. */
interface BoundTick {
  readonly t: number;
  readonly wanted: number;
}

/** What `--against` reads of a `--clairvoyant S --json FILE` run: its load, its requests and its ticks. */
interface BoundRun {
  readonly load: unknown;
  readonly requests: unknown;
  readonly ticks: readonly BoundTick[];
}

/** The per-tick asked counts of a `--clairvoyant S --json FILE` run, with its load and request count. */
function boundTicks(file: string): BoundRun {
  let j: { load?: unknown; requests?: unknown; ticks?: unknown };
  try {
    j = JSON.parse(readFileSync(file, 'utf8')) as typeof j;
  } catch (error) {
    usage(`--against ${file}: ${(error as Error).message}`);
  }
  const ticks = j.ticks;
  const ok = (k: unknown): k is BoundTick =>
    typeof k === 'object' &&
    k !== null &&
    Number.isFinite((k as BoundTick).t) &&
    Number.isFinite((k as BoundTick).wanted);
  if (!Array.isArray(ticks) || !ticks.every(ok))
    usage(`--against ${file}: no ticks with t and wanted (write it with --clairvoyant S --json FILE)`);
  return { load: j.load, requests: j.requests, ticks };
}

/**
 * Why `bound` is not a run of this run's load (another --load, --hours, --start-h, scale or seed: its
 * request count differs) or its ticks are not this run's (another interval), or undefined. The two
 * runs may end a few ticks apart (each runs until the later of its last completion and the load's
 * declared end); past the bound's end its
 * count is 0, as before.
 */
function boundMismatch(
  bound: BoundRun,
  load: string,
  requests: number,
  ticks: readonly Tick[],
): string | undefined {
  const same = 'use the same load, --hours, --start-h, scale and --seed';
  if (bound.load !== load || bound.requests !== requests)
    return `a run of ${String(bound.load)} with ${String(bound.requests)} requests, this one ${load} with ${requests}: ${same}`;
  const n = Math.min(ticks.length, bound.ticks.length);
  for (let i = 0; i < n; i++) {
    const at = (bound.ticks[i] as BoundTick).t;
    if (Math.abs(at - (ticks[i] as Tick).t) > 1e-6)
      return `its tick ${i} is at ${at} s, this run's at ${(ticks[i] as Tick).t} s: ${same}`;
  }
  return undefined;
}

/**
 * The planner's asked replica-hours against the bound's, tick by tick, split into layers: the
 * forecast's rate term at the model's full per-replica capacity against the bound's count (negative
 * where the bound, which sees each burst coming, asks more), the backlog term on top (the reaction
 * to requests already waiting), the target utilisation on top of both, the burst term above the
 * rate term, attainment headroom, and the scale-down hold and release (negative where a need above
 * the pool was cut to it). The layers sum to the difference.
 */
function againstBound(ticks: readonly Tick[], bound: readonly BoundTick[], utilization: number): string {
  if (ticks.length < 2) return '';
  const dtH = ((ticks[1] as Tick).t - (ticks[0] as Tick).t) / 3600;
  const cols = [
    'planner',
    'bound',
    'forecast',
    'backlog',
    'utilisation',
    'bursts',
    'headroom',
    'hold',
  ] as const;
  const zero = (): Record<(typeof cols)[number], number> =>
    Object.fromEntries(cols.map((c) => [c, 0])) as Record<(typeof cols)[number], number>;
  const hourly = new Map<number, ReturnType<typeof zero>>();
  const total = zero();
  ticks.forEach((k, i) => {
    const b = bound[i]?.wanted ?? 0;
    const demand = Math.ceil((k.forRate - k.forBacklog) * utilization - 1e-9);
    const full = Math.ceil(k.forRate * utilization - 1e-9);
    const rate = Math.min(Math.ceil(k.forRate - 1e-9), k.needed);
    const both = Math.min(Math.ceil(Math.max(k.forRate, k.forBursts) - 1e-9), k.needed);
    const parts = {
      planner: k.wanted,
      bound: b,
      forecast: demand - b,
      backlog: full - demand,
      utilisation: rate - full,
      bursts: both - rate,
      headroom: k.needed - both,
      hold: k.wanted - k.needed,
    };
    const h = Math.floor(k.t / 3600);
    const e = hourly.get(h) ?? zero();
    for (const c of cols) {
      e[c] += parts[c] * dtH;
      total[c] += parts[c] * dtH;
    }
    hourly.set(h, e);
  });
  const row = (label: string, e: ReturnType<typeof zero>): string =>
    `${label.padStart(5)} ${cols.map((c) => e[c].toFixed(1).padStart(c.length)).join(' ')}`;
  return `${[
    'replica-hours asked against the bound, by cause',
    `hour  ${cols.join(' ')}`,
    ...[...hourly.entries()].map(([h, e]) => row(String(h), e)),
    row('all', total),
  ].join('\n')}\n`;
}

main();
