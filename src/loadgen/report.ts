/**
 * The bench report: a terminal summary (cli-table3, colour only for a terminal) and the JSON file
 * (`--json`), with per-request records one per line when saved.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import Table from 'cli-table3';
import { SwitchyardError } from '../core/errors.ts';
import { fmtMs, fmtNumber, fmtPct, fmtQty, fmtSeconds, fmtTarget } from '../stats/format.ts';
import type { BenchSummary, LatencyStats, ModelCounts } from './types.ts';

const BOLD = '\u001b[1m';
const RESET = '\u001b[0m';

function bold(text: string, color: boolean): string {
  return color ? `${BOLD}${text}${RESET}` : text;
}

function table(head: string[], color: boolean): Table.Table {
  return new Table({
    head,
    colAligns: head.map((_, i) => (i === 0 ? 'left' : 'right')),
    style: { head: color ? ['cyan'] : [], border: color ? ['grey'] : [], compact: true },
  });
}

function latencyRow(name: string, s: LatencyStats): string[] {
  if (s.count === 0) return [name, '-', '-', '-', '-'];
  return [name, fmtMs(s.mean), fmtMs(s.p50), fmtMs(s.p90), fmtMs(s.p99)];
}

/** The workload in a few words. */
export function describeWorkload(w: Readonly<Record<string, unknown>>): string {
  if (w['kind'] === 'workload') {
    const scale = w['rateScale'] !== 1 ? ` at x${String(w['rateScale'])}` : '';
    const from = w['form'] === 'sim-config' ? 'sim config ' : '';
    return `${String(w['spec'])} from ${from}${String(w['file'])}${scale} · max_tokens = the twin's generated length`;
  }
  if (w['kind'] === 'trace') {
    const scale = w['rateScale'] !== 1 ? ` at x${String(w['rateScale'])}` : '';
    return `trace ${String(w['trace'])}${scale}`;
  }
  const range = (r: unknown): string => {
    const { lo, hi } = r as { lo: number; hi: number };
    return lo === hi ? String(lo) : `${lo}-${hi}`;
  };
  const rate =
    w['stages'] !== undefined
      ? `stages ${String(w['stages'])} (req/s:s)`
      : w['rateRps'] === 'inf'
        ? 'all at once'
        : `${String(w['rateRps'])} req/s`;
  // --burstiness B gives cv = 1/sqrt(B), which would print with all its digits (0.5: 1.414213562373095).
  const bursty = typeof w['cv'] === 'number' ? ` cv ${String(Number(w['cv'].toPrecision(3)))}` : '';
  const prefix =
    w['prefixGroups'] !== undefined
      ? ` · ${String(w['prefixGroups'])} shared prefixes of ${String(w['prefixTokens'])} tokens`
      : '';
  return `${String(w['kind'])} ${rate}${bursty} · in ${range(w['inputTokens'])} out ${range(w['outputTokens'])} tokens${prefix}`;
}

/** The terminal report of one run. */
export function formatBenchReport(s: BenchSummary, options: { color?: boolean } = {}): string {
  const color = options.color ?? false;
  const lines: string[] = [];
  lines.push(
    bold(
      `bench ${s.url} · model ${s.model} · ${s.endpoint}${s.stream ? ', streamed' : ''} · seed ${s.seed}`,
      color,
    ),
  );
  lines.push(`workload ${describeWorkload(s.workload)}`);
  const r = s.requests;
  lines.push(
    `requests ${fmtNumber(r.scheduled)} · completed ${fmtNumber(r.completed)} · failed ${fmtNumber(r.failed)}` +
      (r.scheduled > 0 && r.failed > 0 ? ` (${fmtPct(r.failed / r.scheduled)})` : '') +
      ` · duration ${fmtSeconds(s.durationS)}`,
  );
  const lat = table(['latency (ms)', 'mean', 'p50', 'p90', 'p99'], color);
  lat.push(
    latencyRow('TTFT', s.ttftMs),
    latencyRow('TPOT', s.tpotMs),
    latencyRow('ITL', s.itlMs),
    latencyRow('E2E', s.e2eMs),
  );
  lines.push(lat.toString());
  const t = s.throughput;
  lines.push(
    `throughput ${fmtQty(t.requestsPerS)} req/s · ${fmtQty(t.outputTokensPerS)} output tok/s · ` +
      `${fmtQty(t.totalTokensPerS)} total tok/s · tokens in ${fmtNumber(t.inputTokens)} out ${fmtNumber(t.outputTokens)}`,
  );
  if (s.goodput !== undefined) {
    const g = s.goodput;
    const targets = [
      g.sloTtftMs !== undefined ? `TTFT ≤ ${fmtTarget(g.sloTtftMs)} ms` : undefined,
      g.sloTpotMs !== undefined ? `TPOT ≤ ${fmtTarget(g.sloTpotMs)} ms` : undefined,
    ].filter((x) => x !== undefined);
    lines.push(
      `goodput ${bold(`${fmtQty(g.requestsPerS)} req/s`, color)} · ${fmtNumber(g.requestsMeeting)} requests ` +
        `(${fmtPct(g.attainment)}) meet ${targets.join(' and ')}`,
    );
  }
  if (s.models !== undefined) lines.push(modelsLine(s.models));
  const failures = Object.entries(s.failures);
  if (failures.length > 0) {
    const f = table(['failed because', 'requests'], color);
    for (const [reason, n] of failures) f.push([reason, fmtNumber(n)]);
    lines.push(f.toString());
  }
  const c = s.concurrency;
  const over =
    c.overLimit === 0
      ? 'no request found it full'
      : `${fmtNumber(c.overLimit)} requests found it full and ${c.overflow === 'wait' ? 'waited' : 'were dropped'}`;
  lines.push(
    `max concurrency ${fmtNumber(c.max)} (${c.overflow}): ${over} · peak ${fmtNumber(c.peak)} outstanding · ` +
      `send lag p50 ${fmtMs(c.sendLagMs.p50)} p99 ${fmtMs(c.sendLagMs.p99)} ms`,
  );
  return lines.join('\n');
}

/** Models shown by name in the terminal; the JSON has them all. */
const MODELS_SHOWN_MAX = 8;

/** `models m0 40 · m1 12 (2 failed)`: requests per model, the busiest first. */
function modelsLine(models: Readonly<Record<string, ModelCounts>>): string {
  const entries = Object.entries(models).sort(
    (a, b) => b[1].requests - a[1].requests || a[0].localeCompare(b[0]),
  );
  const shown = entries
    .slice(0, MODELS_SHOWN_MAX)
    .map(
      ([m, c]) => `${m} ${fmtNumber(c.requests)}${c.failed > 0 ? ` (${fmtNumber(c.failed)} failed)` : ''}`,
    );
  const more = entries.length > MODELS_SHOWN_MAX ? ` · ${entries.length - MODELS_SHOWN_MAX} more` : '';
  return `models ${shown.join(' · ')}${more}`;
}

/** The JSON text of a summary: indented, with each per-request record on one line. */
export function benchJson(s: BenchSummary): string {
  const { records, ...rest } = s;
  const head = JSON.stringify(rest, null, 2);
  if (records === undefined) return `${head}\n`;
  const body = records.map((r) => `    ${JSON.stringify(r)}`).join(',\n');
  return `${head.slice(0, -2)},\n  "records": [\n${body}\n  ]\n}\n`;
}

/**
 * Creates the --json file's folder (as `sim` does for its outputs) before a long run, so a path
 * that cannot be written fails at once instead of after the run.
 */
export function prepareOutputPath(path: string): void {
  const dir = dirname(path);
  try {
    mkdirSync(dir, { recursive: true });
  } catch (error) {
    throw new SwitchyardError(
      'SY_ERR_INVALID_ARGUMENT',
      `invalid --json '${path}': cannot create folder '${dir}': ${(error as Error).message}`,
      { param: '--json', value: path },
    );
  }
}

/** Writes the JSON report. */
export function writeBenchJson(path: string, s: BenchSummary): void {
  try {
    writeFileSync(path, benchJson(s));
  } catch (error) {
    throw new SwitchyardError(
      'SY_ERR_INVALID_ARGUMENT',
      `cannot write --json '${path}': ${(error as Error).message}`,
      { param: '--json', value: path },
    );
  }
}
