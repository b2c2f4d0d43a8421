/**
 * Do the P/D policies and the planner hold on workloads the results page does not use? For each
 * setting (workload, GPUs, link, SLOs) and seed: the planner's split (`planPd`, the `--plan-pd` code
 * path, TP 1 as the twin runs one TP), then DistServe goodput sweeps of colocated, plain P/D at the
 * planned split and its neighbours, each pair policy at the planned split, and each conditional rule
 * at the planned split, its neighbours and the lopsided 1:(G-1); and every cluster's attainment at
 * one common rate (colocated's goodput rate). The set is fixed in /work/notes/s24/c-results.md.
 *
 *   node --import tsx scripts/pd-robust.ts --out /tmp/pd-robust.json [--only a,b] [--seeds 1,2,3]
 *     [--kinds colocated,plain,pair,conditional] [--rules dynamo,switchyard,slo] [--jobs 2]
 *   node --import tsx scripts/pd-robust.ts --report /tmp/pd-robust.json   # markdown tables
 */
import { fork } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { planPd } from '../src/control/pd-planner/plan.ts';
import { Rng } from '../src/core/rng.ts';
import { kvLink } from '../src/model/kv-link.ts';
import { PD_CONDITIONAL_RULES, type PdConditionalRule } from '../src/policies/disagg/conditional.ts';
import { parseWithSchema } from '../src/twin/config.ts';
import { GOODPUT_DEFAULTS, goodputSweep, scaleWorkload } from '../src/twin/goodput.ts';
import { offeredRateRps, runTwinSpec, type TwinSettings } from '../src/twin/run.ts';
import { createWorkload } from '../src/workload/create.ts';
import { type WorkloadSpec, workloadSpecSchema } from '../src/workload/spec.ts';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const GPU = 'h100';
const MODEL = 'llama-3.1-8b';
const TARGET = 0.9;
const BISECT_STEPS = 6;
/** A loss counts past this factor (the results page's MARGIN). */
const MARGIN = 1.03;
const PAIRS = ['round-robin', 'load-aware', 'prefix-aware', 'mooncake'] as const;
/** Every conditional rule; `--rules` runs a subset. */
const RULES: readonly PdConditionalRule[] = PD_CONDITIONAL_RULES;

interface Setting {
  readonly key: string;
  readonly gpus: number;
  readonly link: string;
  readonly ttftMs: number;
  readonly tpotMs: number;
  readonly workload: Record<string, unknown>;
}

const LONG = {
  input: { kind: 'uniform', lo: 4000, hi: 16000 },
  output: { kind: 'uniform', lo: 100, hi: 1000 },
};
const CHAT = { input: { kind: 'fixed', tokens: 200 }, output: { kind: 'fixed', tokens: 400 } };

const SETTINGS: readonly Setting[] = [
  {
    key: 'azure-x10-tcp',
    gpus: 8,
    link: 'tcp-100',
    ttftMs: 500,
    tpotMs: 25,
    workload: { kind: 'trace', trace: 'sample:azure-conv', rateScale: 10 },
  },
  {
    key: 'azure-16-nvlink',
    gpus: 16,
    link: 'nvlink',
    ttftMs: 250,
    tpotMs: 12,
    workload: { kind: 'trace', trace: 'sample:azure-conv', rateScale: 20 },
  },
  {
    key: 'mooncake-late',
    gpus: 8,
    link: 'ib-400',
    ttftMs: 5000,
    tpotMs: 30,
    workload: {
      kind: 'trace',
      trace: 'sample:mooncake-conversation',
      rateScale: 2,
      startS: 600,
      durationS: 390,
    },
  },
  {
    key: 'long-tight',
    gpus: 8,
    link: 'ib-400',
    ttftMs: 2000,
    tpotMs: 15,
    workload: { kind: 'poisson', rateRps: 4, durationS: 240, ...LONG },
  },
  {
    key: 'long-tcp-loose',
    gpus: 8,
    link: 'tcp-100',
    ttftMs: 5000,
    tpotMs: 50,
    workload: { kind: 'poisson', rateRps: 4, durationS: 240, ...LONG },
  },
  {
    key: 'long-gamma-16',
    gpus: 16,
    link: 'roce-200',
    ttftMs: 3000,
    tpotMs: 30,
    workload: { kind: 'gamma', rateRps: 8, cv: 2, durationS: 240, ...LONG },
  },
  {
    key: 'long-fixed-nvlink',
    gpus: 8,
    link: 'nvlink',
    ttftMs: 2500,
    tpotMs: 20,
    workload: {
      kind: 'poisson',
      rateRps: 4,
      durationS: 240,
      input: { kind: 'fixed', tokens: 8000 },
      output: { kind: 'fixed', tokens: 500 },
    },
  },
  {
    key: 'chat-tight',
    gpus: 8,
    link: 'ib-400',
    ttftMs: 200,
    tpotMs: 10,
    workload: { kind: 'poisson', rateRps: 100, durationS: 60, ...CHAT },
  },
  {
    key: 'chat-16-loose',
    gpus: 16,
    link: 'tcp-100',
    ttftMs: 1000,
    tpotMs: 50,
    workload: { kind: 'gamma', rateRps: 200, cv: 1.5, durationS: 60, ...CHAT },
  },
];

/** A cluster: colocated (prefill 0), plain P/D, a pair policy, or a conditional rule. */
interface Layout {
  readonly kind: 'colocated' | 'plain' | 'pair' | 'conditional';
  readonly prefill: number;
  readonly decode: number;
  readonly pair?: string;
  readonly rule?: PdConditionalRule;
}

interface Job {
  readonly setting: string;
  readonly seed: number;
  readonly layout: Layout;
  /** Colocated's goodput scale: attainment is read there too. Undefined for colocated itself. */
  readonly attainScale?: number | undefined;
}

interface JobResult {
  readonly job: Job;
  readonly goodputRps: number;
  readonly scale: number;
  /** Attainment (both SLOs) at `attainScale`, or at the goodput rate for colocated. */
  readonly attainment: number;
  readonly localShare?: number | undefined;
  readonly rejected: number;
  readonly wallS: number;
  readonly error?: string;
}

interface PlanRecord {
  readonly setting: string;
  readonly seed: number;
  /** The plan at TP 1 (what the twin can run). */
  readonly prefill: number;
  readonly decode: number;
  readonly predictedGoodputRps: number;
  /** The plan with TP free (as `--plan-pd` without `--tp`). */
  readonly free: string;
  readonly error?: string;
}

function settingOf(key: string): Setting {
  const s = SETTINGS.find((x) => x.key === key);
  if (s === undefined) throw new Error(`unknown setting ${key}`);
  return s;
}

function specOf(s: Setting): WorkloadSpec {
  const slo = { ttftMs: s.ttftMs, tpotMs: s.tpotMs };
  return parseWithSchema(workloadSpecSchema, { ...s.workload, slo }, 'workload');
}

export function label(l: Layout): string {
  if (l.kind === 'colocated') return 'colocated';
  const split = `${l.prefill}:${l.decode}`;
  if (l.kind === 'pair') return `${split} ${l.pair}`;
  if (l.kind === 'conditional') return `${split} +${l.rule}`;
  return `${split} plain`;
}

function settingsOf(job: Job): { settings: TwinSettings; spec: WorkloadSpec } {
  const s = settingOf(job.setting);
  const spec = specOf(s);
  const l = job.layout;
  const settings: TwinSettings = {
    seed: job.seed,
    policy: 'least-request',
    policies: {},
    cluster: { groups: [{ count: s.gpus, gpu: GPU, model: MODEL, tp: 1 }] },
    engine: {},
    workload: spec,
    slo: { ttftMs: s.ttftMs, tpotMs: s.tpotMs },
    output: {},
    expectedRequests: undefined,
    goodputTarget: TARGET,
    pd:
      l.kind === 'colocated'
        ? undefined
        : {
            prefillInstances: l.prefill,
            decodeInstances: l.decode,
            link: s.link,
            pdPolicy: l.pair ?? 'least-request',
            conditional: l.rule,
          },
  };
  return { settings, spec };
}

function runJob(job: Job): JobResult {
  const t0 = process.hrtime.bigint();
  const { settings, spec } = settingsOf(job);
  const baseRate = offeredRateRps(spec, job.seed);
  const attain = new Map<number, number>();
  const local = new Map<number, number>();
  const rejected = new Map<number, number>();
  const evalAt = (scale: number): number => {
    const known = attain.get(scale);
    if (known !== undefined) return known;
    const result = runTwinSpec(settings, scaleWorkload(spec, scale));
    const a = result.summary.sloAttainment.both;
    attain.set(scale, a);
    rejected.set(scale, result.summary.rejected);
    const pd = result.pd;
    if (pd !== undefined)
      local.set(scale, pd.localPrefills / Math.max(1, pd.localPrefills + pd.remotePrefills));
    return a;
  };
  const sweep = goodputSweep((scale) => ({ attainment: evalAt(scale), rateRps: baseRate * scale }), {
    ...GOODPUT_DEFAULTS,
    targetAttainment: TARGET,
    bisectSteps: BISECT_STEPS,
  });
  const at = job.attainScale ?? sweep.scale;
  const attainment = evalAt(at);
  const wallS = Number(process.hrtime.bigint() - t0) / 1e9;
  return {
    job,
    goodputRps: sweep.goodputRps,
    scale: sweep.scale,
    attainment,
    localShare: local.get(at),
    rejected: rejected.get(at) ?? 0,
    wallS,
  };
}

/** The planner's split for a setting: lengths from the workload itself (as `--trace` reads a trace). */
function planOf(s: Setting, seed: number): PlanRecord {
  const spec = specOf(s);
  const lengths = [];
  let n = 0;
  for (const r of createWorkload(spec, new Rng(seed))) {
    lengths.push({ inputTokens: r.inputTokens, generatedTokens: Math.max(1, r.trueOutputTokens) });
    if (++n >= 2000) break;
  }
  const input = {
    model: MODEL,
    gpu: GPU,
    gpus: s.gpus,
    rateRps: Number.POSITIVE_INFINITY,
    lengths,
    objectives: { ttftMs: s.ttftMs, tpotMs: s.tpotMs, attainment: TARGET },
    link: kvLink(s.link),
  };
  let free = '';
  try {
    const p = planPd(input).split;
    free = `${p.prefill.instances}xtp${p.prefill.tp}+${p.decode.instances}xtp${p.decode.tp}`;
  } catch (e) {
    free = `error: ${(e as Error).message.slice(0, 60)}`;
  }
  try {
    const p = planPd({ ...input, tpDegrees: [1] }).split;
    return {
      setting: s.key,
      seed,
      prefill: p.prefill.instances,
      decode: p.decode.instances,
      predictedGoodputRps: p.goodputRps,
      free,
    };
  } catch (e) {
    // No TP-1 split meets the SLOs in the model: run the balanced half split by hand instead.
    const half = s.gpus / 2;
    return {
      setting: s.key,
      seed,
      prefill: half,
      decode: half,
      predictedGoodputRps: 0,
      free,
      error: (e as Error).message,
    };
  }
}

function layoutsOf(
  s: Setting,
  plan: PlanRecord,
  kinds: ReadonlySet<string>,
  rules: readonly PdConditionalRule[],
): Layout[] {
  const g = s.gpus;
  const p = plan.prefill;
  const d = plan.decode;
  const splits: [number, number][] = [
    [p - 1, d + 1],
    [p, d],
    [p + 1, d - 1],
  ];
  const ok = ([a, b]: [number, number]): boolean => a >= 1 && b >= 1;
  const out: Layout[] = [];
  if (kinds.has('plain'))
    for (const [a, b] of splits.filter(ok)) out.push({ kind: 'plain', prefill: a, decode: b });
  if (kinds.has('pair')) for (const pair of PAIRS) out.push({ kind: 'pair', prefill: p, decode: d, pair });
  if (kinds.has('conditional')) {
    const condSplits = [...splits.filter(ok)];
    if (!condSplits.some(([a]) => a === 1)) condSplits.push([1, g - 1]);
    for (const rule of rules)
      for (const [a, b] of condSplits) out.push({ kind: 'conditional', prefill: a, decode: b, rule });
  }
  return out;
}

function runPool(jobs: readonly Job[], workers: number): Promise<JobResult[]> {
  return new Promise((done) => {
    const results: JobResult[] = [];
    let next = 0;
    let live = 0;
    const start = (): void => {
      const job = jobs[next++];
      if (job === undefined) {
        if (live === 0) done(results);
        return;
      }
      live++;
      const child = fork(fileURLToPath(import.meta.url), ['--child'], { execArgv: ['--import', 'tsx'] });
      let got = false;
      child.on('message', (r: JobResult) => {
        got = true;
        results.push(r);
        process.stderr.write(
          `  ${r.job.setting} s${r.job.seed} ${label(r.job.layout)}: ${(r.goodputRps / settingOf(r.job.setting).gpus).toFixed(2)}/GPU ${r.error ?? ''} ${r.wallS.toFixed(0)} s\n`,
        );
        child.kill();
      });
      child.on('exit', () => {
        live--;
        if (!got)
          results.push({
            job,
            goodputRps: 0,
            scale: 0,
            attainment: 0,
            rejected: 0,
            wallS: 0,
            error: 'child died',
          });
        start();
      });
      child.send(job);
    };
    for (let i = 0; i < workers; i++) start();
  });
}

interface RunFile {
  readonly plans: PlanRecord[];
  readonly results: JobResult[];
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      out: { type: 'string' },
      only: { type: 'string' },
      seeds: { type: 'string' },
      kinds: { type: 'string' },
      rules: { type: 'string' },
      jobs: { type: 'string' },
      report: { type: 'string' },
      /** A previous --out file: its sweeps of the same setting, seed and cluster are reused, not rerun. */
      reuse: { type: 'string' },
    },
  });
  if (values.report !== undefined) {
    process.stdout.write(report(JSON.parse(readFileSync(values.report, 'utf8')) as RunFile));
    return;
  }
  process.chdir(ROOT);
  const only = values.only?.split(',');
  const settings = SETTINGS.filter((s) => only === undefined || only.includes(s.key));
  const seeds = (values.seeds ?? '1,2,3').split(',').map(Number);
  const kinds = new Set((values.kinds ?? 'colocated,plain,pair,conditional').split(','));
  const workers = Number(values.jobs ?? 2);
  const rules = (values.rules?.split(',') ?? RULES) as PdConditionalRule[];
  for (const r of rules)
    if (!RULES.includes(r)) throw new Error(`--rules: unknown rule ${r} (${RULES.join(', ')})`);
  const plans = settings.flatMap((s) => seeds.map((seed) => planOf(s, seed)));
  for (const p of plans)
    process.stderr.write(`plan ${p.setting} s${p.seed}: ${p.prefill}:${p.decode} (free TP: ${p.free})\n`);
  const previous =
    values.reuse === undefined ? [] : (JSON.parse(readFileSync(values.reuse, 'utf8')) as RunFile).results;
  const reused = (job: Job): JobResult | undefined =>
    previous.find(
      (r) =>
        r.error === undefined &&
        r.job.setting === job.setting &&
        r.job.seed === job.seed &&
        label(r.job.layout) === label(job.layout),
    );
  const runOrReuse = async (jobs: readonly Job[]): Promise<JobResult[]> => {
    const kept = jobs.map(reused).filter((r): r is JobResult => r !== undefined);
    const fresh = await runPool(
      jobs.filter((j) => reused(j) === undefined),
      workers,
    );
    return [...kept, ...fresh];
  };
  const colo = await runOrReuse(
    settings.flatMap((s) =>
      seeds.map((seed) => ({
        setting: s.key,
        seed,
        layout: { kind: 'colocated' as const, prefill: 0, decode: 0 },
      })),
    ),
  );
  const rest: Job[] = [];
  for (const s of settings)
    for (const seed of seeds) {
      const plan = plans.find((p) => p.setting === s.key && p.seed === seed) as PlanRecord;
      const c = colo.find((r) => r.job.setting === s.key && r.job.seed === seed);
      for (const layout of layoutsOf(s, plan, kinds, rules))
        rest.push({ setting: s.key, seed, layout, attainScale: c?.scale });
    }
  const results = [...colo, ...(await runOrReuse(rest))];
  const out = values.out ?? '/tmp/pd-robust.json';
  writeFileSync(out, `${JSON.stringify({ plans, results } satisfies RunFile, null, 1)}\n`);
  process.stderr.write(`wrote ${out}\n`);
}

// ---- the report ----

function report(file: RunFile): string {
  const lines: string[] = [];
  const f2 = (x: number): string => x.toFixed(2);
  const pct = (a: number, b: number): string =>
    b > 0 ? `${a >= b ? '+' : ''}${((a / b - 1) * 100).toFixed(0)}%` : 'n/a';
  const keys = [...new Set(file.results.map((r) => r.job.setting))];
  const sloRows: { vsSwitchyard: number; vsBar: number }[] = [];
  for (const key of keys) {
    const s = settingOf(key);
    lines.push(`### ${key} (${s.gpus} GPUs, ${s.link}, ${s.ttftMs}/${s.tpotMs} ms)`, '');
    const seeds = [
      ...new Set(file.results.filter((r) => r.job.setting === key).map((r) => r.job.seed)),
    ].sort();
    const labels = [
      ...new Set(file.results.filter((r) => r.job.setting === key).map((r) => label(r.job.layout))),
    ];
    lines.push(`| cluster | ${seeds.map((x) => `s${x} goodput/GPU | s${x} attain`).join(' | ')} |`);
    lines.push(`|---|${seeds.map(() => '---:|---:').join('|')}|`);
    // Rows keyed by label; the planned split differs per seed only if the plan does.
    for (const l of labels) {
      const cells = seeds.map((seed) => {
        const r = file.results.find(
          (x) => x.job.setting === key && x.job.seed === seed && label(x.job.layout) === l,
        );
        if (r === undefined) return ' | ';
        if (r.error !== undefined) return `err | `;
        const loc =
          r.localShare !== undefined && r.job.layout.kind === 'conditional'
            ? ` (${(r.localShare * 100).toFixed(0)}% local)`
            : '';
        const rej = r.rejected > 0 ? ` rej ${r.rejected}` : '';
        return `${f2(r.goodputRps / s.gpus)}${loc} | ${(r.attainment * 100).toFixed(1)}%${rej}`;
      });
      lines.push(`| ${l} | ${cells.join(' | ')} |`);
    }
    lines.push('');
    for (const seed of seeds) {
      const rs = file.results.filter(
        (x) => x.job.setting === key && x.job.seed === seed && x.error === undefined,
      );
      const plan = file.plans.find((p) => p.setting === key && p.seed === seed);
      const g = (pred: (l: Layout) => boolean): JobResult | undefined =>
        rs
          .filter((r) => pred(r.job.layout))
          .reduce<JobResult | undefined>(
            (a, b) => (a === undefined || b.goodputRps > a.goodputRps ? b : a),
            undefined,
          );
      const planned = rs.find(
        (r) =>
          r.job.layout.kind === 'plain' &&
          plan !== undefined &&
          r.job.layout.prefill === plan.prefill &&
          r.job.layout.decode === plan.decode,
      );
      const bestPlain = g((l) => l.kind === 'plain');
      const colo = g((l) => l.kind === 'colocated');
      const sw = g((l) => l.rule === 'switchyard');
      const dy = g((l) => l.rule === 'dynamo');
      const slo = g((l) => l.rule === 'slo');
      const gp = (r: JobResult | undefined): number => r?.goodputRps ?? 0;
      const planTxt =
        plan === undefined
          ? ''
          : `plan ${plan.prefill}:${plan.decode} (TP free ${plan.free}${plan.error ? `; TP1 plan failed: ${plan.error.slice(0, 50)}` : ''})`;
      const pairAt = (name: string): number => gp(rs.find((r) => r.job.layout.pair === name));
      lines.push(
        `- s${seed}: ${planTxt}; planned ${f2(gp(planned) / s.gpus)} vs best hand split ${bestPlain ? label(bestPlain.job.layout) : 'n/a'} ${f2(gp(bestPlain) / s.gpus)} (${pct(gp(planned), gp(bestPlain))})` +
          `; colocated ${f2(gp(colo) / s.gpus)}; best switchyard ${sw ? label(sw.job.layout) : ''} ${f2(gp(sw) / s.gpus)} vs dynamo ${dy ? label(dy.job.layout) : ''} ${f2(gp(dy) / s.gpus)} (${pct(gp(sw), gp(dy))}), vs best plain ${pct(gp(sw), gp(bestPlain))}, vs colocated ${pct(gp(sw), gp(colo))}` +
          `; pairs at plan vs least-request ${f2(gp(planned) / s.gpus)}: ${PAIRS.map((n) => `${n} ${pct(pairAt(n), gp(planned))}`).join(', ')}`,
      );
      if (slo !== undefined) {
        const bar = Math.max(gp(dy), gp(colo));
        lines.push(
          `  - slo ${label(slo.job.layout)} ${f2(gp(slo) / s.gpus)}: vs best switchyard ${pct(gp(slo), gp(sw))}, vs the better of dynamo and colocated ${pct(gp(slo), bar)}`,
        );
        sloRows.push({ vsSwitchyard: gp(sw) > 0 ? gp(slo) / gp(sw) : 1, vsBar: bar > 0 ? gp(slo) / bar : 1 });
      }
    }
    lines.push('');
  }
  void MARGIN;
  if (sloRows.length > 0) {
    const even = sloRows.filter((r) => r.vsSwitchyard >= 0.99).length;
    const worst = Math.min(...sloRows.map((r) => r.vsBar));
    lines.push(
      `slo over ${sloRows.length} (setting, seed) pairs: at least best switchyard - 1% on ${even}; worst against the better of dynamo and colocated ${((worst - 1) * 100).toFixed(1)}%`,
      '',
    );
  }
  return `${lines.join('\n')}\n`;
}

if (process.argv[2] === '--child') {
  process.on('message', (job: Job) => {
    let result: JobResult;
    try {
      result = runJob(job);
    } catch (err) {
      const error = err instanceof Error ? err.message : String(err);
      result = { job, goodputRps: 0, scale: 0, attainment: 0, rejected: 0, wallS: 0, error };
    }
    process.send?.(result);
  });
} else {
  await main();
}
