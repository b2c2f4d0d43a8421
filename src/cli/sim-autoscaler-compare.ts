/**
 * `switchyard sim --autoscaler a,b,c`: runs each autoscaler on the same workload, seed and pool and
 * prints one row per autoscaler (GPU-hours, the ratio to `static` when it ran, SLO attainment,
 * p99 TTFT and TPOT, cold starts, peak ready). `--json` writes one entry per autoscaler with every
 * field a single autoscaled run writes; `--html` one report with a replicas chart per autoscaler.
 * Kept out of sim-command.ts so that file only hands over when several names are given.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import Table from 'cli-table3';
import { InvalidArgumentError } from 'commander';
import { autoscalerNames } from '../control/autoscalers/registry.ts';
import { invalidArgument } from '../core/errors.ts';
import { fmtMs, fmtPct } from '../stats/format.ts';
import { parseWithSchema } from '../twin/config.ts';
import { controlPool } from '../twin/control-host.ts';
import { renderHtmlReport } from '../twin/report/html.ts';
import { type JsonObject, roundFloat, stringifyJson, summaryToJson } from '../twin/report/json.ts';
import { controlReport, peakReady } from '../twin/report/replicas.ts';
import { controlJson, runTwinSpec, type TwinSettings } from '../twin/run.ts';
import type { SimResult } from '../twin/simulator.ts';
import { workloadSpecSchema } from '../workload/spec.ts';
import { warnLine, withSteps } from './progress.ts';
import { describeCluster, wroteLines } from './sim-header.ts';
import { refusal } from './usage-error.ts';

/** The baseline the `x static` column divides by: every instance of the pool all the time. */
export const STATIC_AUTOSCALER = 'static';

/**
 * Commander parser for `--autoscaler`: one registered name or several, comma-separated, each
 * once. Returns the names joined by commas (so a single name reads as before).
 */
export function parseAutoscalerList(value: string): string {
  const names = splitNames(value);
  const known = autoscalerNames();
  const unknown = names.find((n) => !known.includes(n));
  if (names.length === 0 || unknown !== undefined) {
    throw refusal(
      `'${unknown ?? value}' is not an autoscaler; expected one or more of ${known.join(', ')}, comma-separated.`,
      names.length === 0 ? 'SY_ERR_INVALID_ARGUMENT' : 'SY_ERR_UNKNOWN_NAME',
    );
  }
  if (new Set(names).size !== names.length)
    throw new InvalidArgumentError(`'${value}' names an autoscaler twice.`);
  return names.join(',');
}

/** The names in an `--autoscaler` value, in order. */
export function splitNames(value: string): string[] {
  return value
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
}

/** One autoscaler's run in a comparison. */
export interface AutoscalerRun {
  readonly name: string;
  readonly result: SimResult;
}

/** One row of the comparison table, from a run. */
export interface AutoscalerRow {
  readonly name: string;
  readonly gpuHours: number;
  readonly sloBoth: number;
  readonly sloTtft: number;
  readonly sloTpot: number;
  /** Over every request, a rejected one as unbounded (the summary's `*All` percentiles when present). */
  readonly ttftMsP99: number;
  readonly tpotMsP99: number;
  readonly coldStarts: number;
  readonly peakReady: number;
}

/** The table row of one run. */
export function autoscalerRow(run: AutoscalerRun): AutoscalerRow {
  const s = run.result.summary;
  return {
    name: run.name,
    gpuHours: run.result.gpuHours ?? Number.NaN,
    sloBoth: s.sloAttainment.both,
    sloTtft: s.sloAttainment.ttft,
    sloTpot: s.sloAttainment.tpot,
    ttftMsP99: s.ttftMsAll?.p99 ?? s.ttftMs.p99,
    tpotMsP99: s.tpotMsAll?.p99 ?? s.tpotMs.p99,
    coldStarts: run.result.coldStarts ?? 0,
    peakReady: peakReady(run.result.instancesOverTime ?? []),
  };
}

/**
 * Each row's GPU-hours over `static`'s, in row order; undefined when `static` is not among the
 * rows (then the table has no such column). NaN where static billed nothing.
 */
export function xStatic(rows: readonly Pick<AutoscalerRow, 'name' | 'gpuHours'>[]): number[] | undefined {
  const base = rows.find((r) => r.name === STATIC_AUTOSCALER);
  if (base === undefined) return undefined;
  return rows.map((r) => (base.gpuHours > 0 ? r.gpuHours / base.gpuHours : Number.NaN));
}

function fmtRatio(x: number): string {
  return Number.isFinite(x) ? `${x.toFixed(2)}x` : '-';
}

function fmtTail(ms: number): string {
  return ms === Number.POSITIVE_INFINITY ? '∞' : fmtMs(ms);
}

/** The comparison as a terminal table, one row per autoscaler in the order run. */
export function formatAutoscalerTable(
  rows: readonly AutoscalerRow[],
  options: { color?: boolean } = {},
): string {
  const ratios = xStatic(rows);
  const head = [
    'autoscaler',
    'GPU-\nhours',
    ...(ratios !== undefined ? ['x\nstatic'] : []),
    'SLO\nboth',
    'SLO\nTTFT',
    'SLO\nTPOT',
    'TTFT p99\n(ms)',
    'TPOT p99\n(ms)',
    'cold\nstarts',
    'peak\nready',
  ];
  const color = options.color ?? false;
  const t = new Table({
    head,
    colAligns: head.map((_, i) => (i === 0 ? 'left' : 'right')),
    style: { head: color ? ['cyan'] : [], border: color ? ['grey'] : [], compact: true },
  });
  rows.forEach((r, i) => {
    t.push([
      r.name,
      Number.isFinite(r.gpuHours) ? r.gpuHours.toFixed(3) : '-',
      ...(ratios !== undefined ? [fmtRatio(ratios[i] as number)] : []),
      fmtPct(r.sloBoth),
      fmtPct(r.sloTtft),
      fmtPct(r.sloTpot),
      fmtTail(r.ttftMsP99),
      fmtTail(r.tpotMsP99),
      String(r.coldStarts),
      String(r.peakReady),
    ]);
  });
  return t.toString();
}

/**
 * Refuses what a comparison of autoscalers cannot combine with: several routing policies, a goodput
 * sweep, or one decision log for several runs.
 */
export function checkAutoscalerComparison(
  names: readonly string[],
  other: { policies: number; goodput: boolean; decisionLog: boolean },
): void {
  const list = names.join(',');
  if (other.policies > 1)
    throw invalidArgument('autoscaler', list, 'one routing policy (no --compare) with several autoscalers');
  if (other.goodput) throw invalidArgument('autoscaler', list, 'one autoscaler with --goodput');
  if (other.decisionLog) throw invalidArgument('autoscaler', list, 'one autoscaler with --decision-log');
}

/** Runs each autoscaler on the settings' workload, seed and pool (the workload is parsed once). */
export function runAutoscalers(
  settings: TwinSettings,
  names: readonly string[],
  onRun?: (name: string, what: string) => void,
  /** Told a trace replay's time-unit warning once (the runs share the workload). */
  onWarning?: (line: string) => void,
): AutoscalerRun[] {
  const control = settings.control;
  if (control === undefined) throw invalidArgument('autoscaler', names.join(','), 'an autoscaler');
  const spec = parseWithSchema(workloadSpecSchema, settings.workload, 'workload');
  return names.map((name, i) => {
    onRun?.(name, 'run');
    return {
      name,
      result: runTwinSpec(
        {
          ...settings,
          control: { ...control, autoscaler: name, params: control.paramsByName?.[name] ?? {} },
        },
        spec,
        undefined,
        undefined,
        undefined,
        i === 0 ? onWarning : undefined,
      ),
    };
  });
}

/** The pool's bounds in words: `1-24 instances`, `4 instances` when fixed, `1 instance`. */
export function poolSize(min: number, max: number): string {
  const count = min === max ? `${max}` : `${min}-${max}`;
  return `${count} ${min === max && max === 1 ? 'instance' : 'instances'}`;
}

/** What ran, above the table: the autoscalers, the workload, the seed, the pool and the SLO. */
export function autoscalerHeader(settings: TwinSettings, runs: readonly AutoscalerRun[]): string {
  const first = runs[0];
  const control = settings.control;
  if (first === undefined || control === undefined) return '';
  const s = first.result.summary;
  const pool = describeCluster(controlPool(settings.cluster, control.maxInstances));
  return (
    `compare autoscalers ${runs.map((r) => r.name).join(', ')} · policy ${s.policy}\n` +
    `workload ${s.workload} · seed ${s.seed} · pool ${poolSize(control.minInstances, control.maxInstances)} (${pool})\n` +
    `SLO TTFT ≤ ${fmtMs(settings.slo.ttftMs)} ms · TPOT ≤ ${fmtMs(settings.slo.tpotMs)} ms\n`
  );
}

/**
 * The JSON: `{ autoscalers: { <name>: entry } }` in the order run, each entry a single autoscaled
 * run's JSON (summary fields, gpuHours, coldStarts, instancesOverTime) led by `xStatic` when
 * `static` ran.
 */
export function autoscalerComparisonJson(runs: readonly AutoscalerRun[]): JsonObject {
  const ratios = xStatic(runs.map(autoscalerRow));
  const entries: JsonObject = {};
  runs.forEach((run, i) => {
    const ratio = ratios?.[i];
    entries[run.name] = {
      ...(ratio !== undefined && Number.isFinite(ratio) ? { xStatic: roundFloat(ratio) } : {}),
      ...summaryToJson(run.result.summary),
      ...controlJson(run.result),
    };
  });
  return { autoscalers: entries };
}

/** Writes the JSON and the HTML report where asked. */
export function writeAutoscalerOutputs(runs: readonly AutoscalerRun[], output: TwinSettings['output']): void {
  if (output.json !== undefined) writeText(output.json, stringifyJson(autoscalerComparisonJson(runs)));
  if (output.html !== undefined) {
    const reports = runs.map((run) => ({
      ...run.result.report,
      name: run.name,
      ...controlReport(run.result, run.name),
    }));
    writeText(output.html, renderHtmlReport(reports, { title: 'Switchyard twin report: autoscalers' }));
  }
}

function writeText(path: string, text: string): void {
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, text);
}

/**
 * The whole comparison as `sim` runs it: checks, runs (with a step bar when asked), prints the
 * header and the table, writes the reports and says where.
 */
export async function compareAutoscalers(
  settings: TwinSettings,
  names: readonly string[],
  options: { policies: number; goodput: boolean; decisionLog: boolean; progress: boolean; color: boolean },
): Promise<void> {
  checkAutoscalerComparison(names, options);
  const runs = await withSteps(options.progress, (step) => runAutoscalers(settings, names, step, warnLine));
  process.stdout.write(autoscalerHeader(settings, runs));
  process.stdout.write(`${formatAutoscalerTable(runs.map(autoscalerRow), { color: options.color })}\n`);
  writeAutoscalerOutputs(runs, settings.output);
  process.stdout.write(wroteLines(settings.output));
}
