/**
 * Regenerates docs/results/autoscaling.md: every autoscaler in the registry on the same workloads in
 * the twin, GPU-hours against SLO attainment, with the replica count over time as an SVG chart per
 * scenario (docs/results/autoscaling/*.svg).
 *
 *   npm run results:autoscaling                          # every scenario, writes the doc and charts
 *   npm run results:autoscaling -- --only sinusoid       # one scenario
 *   npm run results:autoscaling -- --hours 0.5 --out /tmp/a.md   # shorter runs, elsewhere
 *
 * Scenarios (llama-3.1-8b on H100s, vllm serve's defaults, round-robin routing, seed 1):
 * - `sinusoid`: ai-dynamo/dynamo issue 10528's load, 1 to 24 req/s with a 900 s period, 8,000-token
 *   prompts, 1,000-token outputs, TTFT 3 s, TPOT 50 ms, up to 16 instances.
 * - `diurnal`: a day of ServeGen's per-client rates (the committed slice of five language-model
 *   clients, data/samples/servegen) at 0.022x, 5 to 22 req/s hour by hour, the sinusoid's request
 *   shape and SLOs, up to 24 instances.
 * Each runs `static` (peak provisioning: every instance all the time), each registered autoscaler
 * with its defaults, `kpa` tuned: the cheapest of a sweep of its target concurrency that reaches
 * the SLO planner's attainment, and a clairvoyant planner that knows every future arrival (a
 * reference, not an autoscaler: what perfect forecasts would buy with the same start-up).
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import cliProgress from 'cli-progress';
import { autoscalerNames, createAutoscaler } from '../src/control/autoscalers/registry.ts';
import type { ControlContext, ControlLoop, ControlObservation } from '../src/control/types.ts';
import type { ControlSettings, InstanceCountPoint } from '../src/twin/control-host.ts';
import { runTwin, type TwinSettings } from '../src/twin/run.ts';
import type { SimResult } from '../src/twin/simulator.ts';
import { clairvoyant } from './clairvoyant.ts';
import { scriptArgs } from './script-args.ts';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const SEED = 1;
/** The sweep for tuning kpa: requests per replica it aims at (its default is 64 x 0.7). */
const KPA_CONCURRENCY_SWEEP = [4, 8, 12, 16, 32, 64];
/** The attainment static provisioning is sized for (the SLO planner's default target). */
const STATIC_TARGET = 0.99;
/**
 * The spans over which the clairvoyant planner knows the future arrival rate, s: the finer, the
 * more of each burst it sees coming (and the more it starts and stops). The cheapest that reaches
 * STATIC_TARGET is reported.
 */
const CLAIRVOYANT_SPANS_S = [10, 20, 60];

const USAGE = `Usage: npm run results:autoscaling [-- options]

Regenerates docs/results/autoscaling.md and its charts: every autoscaler, static peak provisioning,
kpa tuned and a clairvoyant planner on the sinusoid and the ServeGen diurnal day, in the twin.

Options:
  --only NAMES    scenarios, comma-separated: sinusoid, diurnal (default: both)
  --hours H       simulated hours per run (default: each scenario's own length)
  --out FILE      where the page goes (default: docs/results/autoscaling.md)
  --no-progress   no progress bar
  -h, --help      this text

Example:
  npm run results:autoscaling -- --only sinusoid --hours 0.5 --out /tmp/a.md
`;

const { values: args } = scriptArgs('results:autoscaling', USAGE, () =>
  parseArgs({
    options: {
      only: { type: 'string' },
      hours: { type: 'string' },
      out: { type: 'string', default: resolve(ROOT, 'docs/results/autoscaling.md') },
      'no-progress': { type: 'boolean', default: false },
    },
  }),
);

/** One workload and cluster every autoscaler runs on. */
interface Scenario {
  readonly name: string;
  readonly title: string;
  readonly workload: Readonly<Record<string, unknown>>;
  readonly slo: { readonly ttftMs: number; readonly tpotMs: number };
  readonly maxInstances: number;
  /** The offered rate at time t (s), for the chart; undefined when only the trace knows it. */
  readonly rateAt?: (timeS: number) => number;
  readonly note: string;
}

function scenarios(hoursOverride: number | undefined): Scenario[] {
  const sinusoidS = (hoursOverride ?? 2) * 3600;
  const dayS = (hoursOverride ?? 24) * 3600;
  return [
    {
      name: 'sinusoid',
      title: 'Sinusoid, 1 to 24 req/s (ai-dynamo/dynamo issue 10528)',
      workload: {
        kind: 'sinusoid',
        rateMinRps: 1,
        rateMaxRps: 24,
        periodS: 900,
        input: { kind: 'fixed', tokens: 8000 },
        output: { kind: 'fixed', tokens: 1000 },
        durationS: sinusoidS,
      },
      slo: { ttftMs: 3000, tpotMs: 50 },
      maxInstances: 16,
      rateAt: (t) => 12.5 - 11.5 * Math.cos((2 * Math.PI * t) / 900),
      note: `${(sinusoidS / 3600).toFixed(1)} h, period 900 s, 8,000-token prompts, 1,000-token outputs, TTFT 3 s, TPOT 50 ms, 1 to 16 instances`,
    },
    {
      name: 'diurnal',
      title: 'A diurnal day of ServeGen clients',
      workload: {
        kind: 'servegen',
        file: 'sample:servegen-m-small-day2',
        rateScale: 0.022,
        input: { kind: 'fixed', tokens: 8000 },
        output: { kind: 'fixed', tokens: 1000 },
        durationS: dayS,
      },
      slo: { ttftMs: 3000, tpotMs: 50 },
      maxInstances: 24,
      note: `${(dayS / 3600).toFixed(0)} h of five ServeGen language-model clients (day 2, data/samples/servegen) at 0.022x their rates (5 to 22 req/s hour by hour; one client's 10-minute CVs reach 8 to 12, so within an hour the rate comes in bursts), the same request shape and SLOs as the sinusoid, 1 to 24 instances`,
    },
  ];
}

/** What one run gives the tables and charts. */
interface Outcome {
  readonly label: string;
  readonly autoscaler: string;
  readonly params: Readonly<Record<string, unknown>>;
  readonly gpuHours: number;
  readonly attainment: number;
  readonly ttftP99Ms: number;
  readonly tpotP99Ms: number;
  readonly coldStarts: number;
  readonly requests: number;
  readonly completed: number;
  readonly rejected: number;
  readonly series: readonly InstanceCountPoint[];
}

function settingsFor(s: Scenario, control: ControlSettings): TwinSettings {
  return {
    seed: SEED,
    policy: 'round-robin',
    policies: {},
    cluster: { groups: [{ count: s.maxInstances, gpu: 'h100', model: 'llama-3.1-8b', tp: 1 }] },
    engine: {},
    workload: s.workload,
    slo: s.slo,
    output: {},
    expectedRequests: undefined,
    control,
  };
}

function run(
  s: Scenario,
  label: string,
  autoscaler: string,
  params: Record<string, unknown> = {},
  pool = s.maxInstances,
  create?: (context: ControlContext) => ControlLoop,
): Outcome {
  const r: SimResult = runTwin(
    settingsFor(
      { ...s, maxInstances: pool },
      { autoscaler, params, minInstances: 1, maxInstances: pool, slo: s.slo, create },
    ),
  );
  const m = r.summary;
  return {
    label,
    autoscaler,
    params,
    gpuHours: r.gpuHours ?? Number.NaN,
    attainment: m.sloAttainment.both,
    ttftP99Ms: m.ttftMsAll?.p99 ?? m.ttftMs.p99,
    tpotP99Ms: m.tpotMsAll?.p99 ?? m.tpotMs.p99,
    coldStarts: r.coldStarts ?? 0,
    requests: m.requests,
    completed: m.completed,
    rejected: m.rejected,
    series: r.instancesOverTime ?? [],
  };
}

/**
 * Peak provisioning done right: the fewest instances that, all running all the time, meet the
 * attainment target (bisection over the pool; the whole pool when none smaller does).
 */
function staticBaseline(s: Scenario, arrivals: number[], tick: () => void): Outcome {
  let lo = 1;
  let hi = s.maxInstances;
  // The first run also records the arrivals per control window for the clairvoyant planner (the
  // workload is open-loop: the same seed gives the same arrivals whatever the autoscaler does).
  let best = run(s, `static (${hi})`, 'static', {}, hi, (context) => recording(context, arrivals));
  tick();
  while (lo < hi) {
    const mid = Math.floor((lo + hi) / 2);
    const o = run(s, `static (${mid})`, 'static', {}, mid);
    tick();
    if (o.attainment >= STATIC_TARGET) {
      best = o;
      hi = mid;
    } else {
      lo = mid + 1;
    }
  }
  return {
    ...best,
    label: `static: ${best.label.slice(8, -1)} instances, the fewest meeting ${pct(STATIC_TARGET)}`,
  };
}

/** Every run of one scenario: static sized for the peak, the registry's autoscalers at their defaults, kpa tuned. */
function runScenario(s: Scenario, tick: () => void): Outcome[] {
  const arrivals: number[] = [];
  const out: Outcome[] = [staticBaseline(s, arrivals, tick)];
  for (const name of autoscalerNames()) {
    if (name === 'static') continue;
    out.push(run(s, name, name));
    tick();
  }
  const target = out.find((o) => o.autoscaler === 'slo-planner')?.attainment ?? 0.99;
  const sweep = KPA_CONCURRENCY_SWEEP.map((c) => {
    const o = run(s, `kpa, ${c} per replica`, 'kpa', { containerConcurrency: c, targetUtilization: 1 });
    tick();
    return o;
  });
  const reaching = sweep.filter((o) => o.attainment >= target).sort((a, b) => a.gpuHours - b.gpuHours);
  const best = reaching[0] ?? [...sweep].sort((a, b) => b.attainment - a.attainment)[0];
  if (best !== undefined) out.push({ ...best, label: `kpa tuned (${best.label.slice(5)})` });
  out.push(clairvoyantBest(s, arrivals, tick));
  return out;
}

/** The static autoscaler, recording each window's arrivals into `arrivals` (index: window number). */
function recording(context: ControlContext, arrivals: number[]): ControlLoop {
  const inner = createAutoscaler('static', context, {});
  return {
    name: 'static',
    decide(o: ControlObservation) {
      arrivals[Math.round(o.window.endMs / context.intervalMs) - 1] = o.window.arrivals;
      return inner.decide(o);
    },
  };
}

/** The cheapest clairvoyant span that reaches STATIC_TARGET (or, when none does, the best attainment). */
function clairvoyantBest(s: Scenario, arrivals: readonly number[], tick: () => void): Outcome {
  const runs = CLAIRVOYANT_SPANS_S.map((spanS) => {
    const o = run(s, `clairvoyant, ${spanS} s spans`, 'static', {}, s.maxInstances, (context) =>
      clairvoyant(context, s.slo, arrivals, spanS, `clairvoyant over ${spanS} s spans`),
    );
    tick();
    return { ...o, autoscaler: 'clairvoyant' };
  });
  const reaching = runs.filter((o) => o.attainment >= STATIC_TARGET).sort((a, b) => a.gpuHours - b.gpuHours);
  const best = reaching[0] ?? [...runs].sort((a, b) => b.attainment - a.attainment)[0];
  if (best === undefined) throw new Error('clairvoyant: no runs');
  return { ...best, label: `clairvoyant bound (${best.label.slice(13)}; knows the future)` };
}

function pct(x: number): string {
  return `${(100 * x).toFixed(1)}%`;
}

function fmtMs(ms: number): string {
  return ms >= 10_000
    ? `${(ms / 1000).toFixed(0)} s`
    : ms >= 1000
      ? `${(ms / 1000).toFixed(1)} s`
      : `${ms.toFixed(0)} ms`;
}

function table(outcomes: readonly Outcome[]): string {
  const staticHours = outcomes.find((o) => o.autoscaler === 'static')?.gpuHours ?? Number.NaN;
  const rows = outcomes.map(
    (o) =>
      `| ${o.label === 'slo-planner' ? '**slo-planner**' : o.label} | ${o.gpuHours.toFixed(2)} | ${(o.gpuHours / staticHours).toFixed(2)} | ${pct(o.attainment)} | ${fmtMs(o.ttftP99Ms)} | ${fmtMs(o.tpotP99Ms)} | ${o.coldStarts} | ${o.completed.toLocaleString('en-US')} / ${o.requests.toLocaleString('en-US')} |`,
  );
  return [
    '| autoscaler | GPU-hours | x static | both SLOs met | TTFT p99 | TPOT p99 | cold starts | completed / requests |',
    '|---|---:|---:|---:|---:|---:|---:|---:|',
    ...rows,
  ].join('\n');
}

/** One sentence on the SLO planner against static provisioning and the tuned KPA. */
function reading(outcomes: readonly Outcome[]): string {
  const slo = outcomes.find((o) => o.autoscaler === 'slo-planner');
  const stat = outcomes.find((o) => o.autoscaler === 'static');
  const kpa = outcomes.find((o) => o.label.startsWith('kpa tuned'));
  if (slo === undefined || stat === undefined || kpa === undefined) return '';
  const reached = kpa.attainment >= slo.attainment ? 'reaching' : 'short of';
  return (
    `The SLO planner meets both SLOs for ${pct(slo.attainment)} of requests with ` +
    `${(slo.gpuHours / stat.gpuHours).toFixed(2)}x static provisioning's GPU-hours and ` +
    `${(slo.gpuHours / kpa.gpuHours).toFixed(2)}x those of KPA tuned afterwards on this load ` +
    `(${kpa.label.slice(11, -1)}, ${reached} that attainment at ${pct(kpa.attainment)}).` +
    clairvoyantReading(outcomes, stat)
  );
}

/** The clairvoyant bound, in words: what knowing the future would have cost. */
function clairvoyantReading(outcomes: readonly Outcome[], stat: Outcome): string {
  const c = outcomes.find((o) => o.autoscaler === 'clairvoyant');
  if (c === undefined) return '';
  return (
    ` A planner that knew every future arrival (same start-up, the model's full per-replica capacity) ` +
    `meets ${pct(c.attainment)} with ${(c.gpuHours / stat.gpuHours).toFixed(2)}x static's GPU-hours ` +
    `and ${c.coldStarts} cold starts: what perfect forecasts would buy, to read the online autoscalers against.`
  );
}

const COLORS = ['#444', '#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd', '#8c564b', '#e377c2'];

/**
 * Ready replicas over time per autoscaler (and the offered rate, dashed, on its own scale): a
 * plain SVG polyline chart, so the doc renders anywhere without a browser or a plotting stack.
 */
function chart(s: Scenario, outcomes: readonly Outcome[]): string {
  const W = 900;
  const H = 320;
  const pad = { l: 50, r: 60, t: 20, b: 40 };
  const shown = outcomes.filter((o) => o.autoscaler !== 'static' && o.series.length > 0);
  const tMax = Math.max(1, ...shown.map((o) => o.series.at(-1)?.timeS ?? 0));
  const yMax = s.maxInstances;
  const x = (t: number) => pad.l + ((W - pad.l - pad.r) * t) / tMax;
  const y = (v: number) => H - pad.b - ((H - pad.t - pad.b) * v) / yMax;
  const lines = shown.map((o, i) => {
    const pts = o.series.map((p) => `${x(p.timeS).toFixed(1)},${y(p.ready).toFixed(1)}`).join(' ');
    return `<polyline fill="none" stroke="${COLORS[(i + 1) % COLORS.length]}" stroke-width="1.5" points="${pts}"><title>${o.label}</title></polyline>`;
  });
  const legend = shown.map(
    (o, i) =>
      `<text x="${pad.l + 10 + (i % 4) * 200}" y="${pad.t + 14 + Math.floor(i / 4) * 14}" font-size="12" fill="${COLORS[(i + 1) % COLORS.length]}">${o.label}</text>`,
  );
  let rate = '';
  if (s.rateAt !== undefined) {
    const rMax = Math.max(...Array.from({ length: 200 }, (_, k) => s.rateAt?.((tMax * k) / 199) ?? 0));
    const ry = (v: number) => H - pad.b - ((H - pad.t - pad.b) * v) / rMax;
    const pts = Array.from({ length: 400 }, (_, k) => (tMax * k) / 399)
      .map((t) => `${x(t).toFixed(1)},${ry(s.rateAt?.(t) ?? 0).toFixed(1)}`)
      .join(' ');
    rate = `<polyline fill="none" stroke="#999" stroke-dasharray="4 3" points="${pts}"><title>offered rate</title></polyline><text x="${W - pad.r + 6}" y="${pad.t + 10}" font-size="11" fill="#999">${rMax.toFixed(0)} req/s</text>`;
  }
  const axes =
    `<line x1="${pad.l}" y1="${H - pad.b}" x2="${W - pad.r}" y2="${H - pad.b}" stroke="#000"/>` +
    `<line x1="${pad.l}" y1="${pad.t}" x2="${pad.l}" y2="${H - pad.b}" stroke="#000"/>` +
    `<text x="${pad.l - 8}" y="${y(yMax) + 4}" font-size="11" text-anchor="end">${yMax}</text>` +
    `<text x="${pad.l - 8}" y="${y(0) + 4}" font-size="11" text-anchor="end">0</text>` +
    `<text x="${(W / 2).toFixed(0)}" y="${H - 8}" font-size="12" text-anchor="middle">simulated time, ${(tMax / 3600).toFixed(1)} h (ready replicas; dashed: offered rate)</text>`;
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif"><title>${s.title}: ready replicas over time</title>${axes}${rate}${lines.join('')}${legend.join('')}</svg>\n`;
}

function main(): void {
  const hours = args.hours === undefined ? undefined : Number(args.hours);
  const chosen = scenarios(hours).filter(
    (s) => args.only === undefined || args.only.split(',').includes(s.name),
  );
  const runsPer = autoscalerNames().length + KPA_CONCURRENCY_SWEEP.length + CLAIRVOYANT_SPANS_S.length + 5;
  const bar = args['no-progress']
    ? undefined
    : new cliProgress.SingleBar(
        { format: 'runs {bar} {value}/{total} {scenario}' },
        cliProgress.Presets.shades_classic,
      );
  bar?.start(chosen.length * runsPer, 0, { scenario: '' });
  const out = resolve(args.out);
  const chartDir = resolve(dirname(out), 'autoscaling');
  mkdirSync(chartDir, { recursive: true });
  const sections: string[] = [];
  for (const s of chosen) {
    bar?.update({ scenario: s.name });
    const outcomes = runScenario(s, () => bar?.increment());
    const svg = resolve(chartDir, `${s.name}.svg`);
    writeFileSync(svg, chart(s, outcomes));
    sections.push(
      `## ${s.title}\n\n${s.note}.\n\n${table(outcomes)}\n\n${reading(outcomes)}\n\n![ready replicas over time](${relative(dirname(out), svg)})\n`,
    );
  }
  bar?.stop();
  writeFileSync(out, `${header()}\n${sections.join('\n')}`);
  process.stdout.write(`wrote ${relative(process.cwd(), out)}\n`);
}

function header(): string {
  return `# Autoscalers compared: GPU-hours against SLO attainment

<!-- Generated by \`npm run results:autoscaling\` (scripts/results-autoscaling.ts): edit the script, not this file. -->

Every autoscaler in the registry (src/control/autoscalers) runs in the twin on the same workload
with the same seed: llama-3.1-8b on H100s, \`vllm serve\`'s defaults, round-robin routing, an
instance's start-up from the model (src/model/startup.ts: 46.7 s from NVMe), GPU-hours billed from
each start to its release. \`static\` is peak provisioning done right: the fewest instances that,
all running all the time, meet ${pct(STATIC_TARGET)} (found by bisection; "x static" divides by its GPU-hours); the others
run with their defaults, and \`kpa tuned\` is the cheapest of a sweep of KPA's target concurrency
(${KPA_CONCURRENCY_SWEEP.join(', ')} requests per replica, at 100% utilisation) that reaches the
SLO planner's attainment (or, when none does, the sweep's best). "Both SLOs met" counts requests
meeting both TTFT and TPOT over all requests; a rejected one misses. The SLO planner's rule and why
it wins where it wins: [its README](../../src/control/autoscalers/slo-planner/README.md).
Each scenario's workload is a twin \`workload:\` block: saved in a file, \`switchyard bench --workload FILE --seed ${SEED}\` sends the same requests to a live gateway ([docs/bench.md](../bench.md)).
`;
}

main();
