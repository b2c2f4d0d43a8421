/**
 * Prints docs/workloads.md's "what a day looks like" table for the multi-model workload: 64 models,
 * Zipf 1, 10 req/s, 24 h, seed 1, generated as `switchyard sim` generates it.
 *
 *   npx tsx scripts/multi-model-day.ts [SERVEGEN_BUNDLE]
 *
 * The servegen column needs a ServeGen category with enough clients (default
 * ../shared/data/traces/servegen/language_m-large_trace.tar.gz, its second day); without the file
 * only the on-off column is printed.
 */
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { Rng } from '../src/core/rng.ts';
import { createWorkload } from '../src/workload/create.ts';
import type { WorkloadSpecInput } from '../src/workload/spec.ts';
import { scriptArgs } from './script-args.ts';

const DAY_S = 86_400;
const MODELS = 64;
const DEFAULT_BUNDLE = '../shared/data/traces/servegen/language_m-large_trace.tar.gz';
const USAGE = `Usage: npx tsx scripts/multi-model-day.ts [SERVEGEN_BUNDLE]

Prints docs/workloads.md's "what a day looks like" table for the multi-model workload: 64 models,
Zipf 1, 10 req/s, 24 h, seed 1. The servegen column needs a ServeGen category bundle with enough
clients (default ${DEFAULT_BUNDLE}, its second day; not in this checkout); without the file only the
on-off column is printed.

Options:
  -h, --help  this text

Example:
  npx tsx scripts/multi-model-day.ts ~/ServeGen/language_m-large_trace.tar.gz`;

// A flag was read as the bundle's path before (and, not found, dropped the column silently).
const { positionals } = scriptArgs('multi-model-day', USAGE, () =>
  parseArgs({ allowPositionals: true, options: {} }),
);
const BUNDLE =
  positionals[0] ??
  fileURLToPath(new URL('../../shared/data/traces/servegen/language_m-large_trace.tar.gz', import.meta.url));

/** Each model's gaps (s): from 0 to its first request, between requests, from its last to the end. */
function gapsByModel(spec: WorkloadSpecInput): { requests: number; counts: number[]; gaps: number[][] } {
  const last = new Array<number>(MODELS).fill(0);
  const counts = new Array<number>(MODELS).fill(0);
  const gaps: number[][] = Array.from({ length: MODELS }, () => []);
  let requests = 0;
  // The twin's stream: runTwin forks 'workload' from the run's seed.
  for (const r of createWorkload(spec, new Rng(1).fork('workload'))) {
    const k = Number(r.model.slice(1));
    const tS = r.arrivalMs / 1000;
    gaps[k]?.push(tS - (last[k] as number));
    last[k] = tS;
    counts[k] = (counts[k] as number) + 1;
    requests++;
  }
  for (let k = 0; k < MODELS; k++) gaps[k]?.push(DAY_S - (last[k] as number));
  return { requests, counts, gaps };
}

/** Requests that find their model unloaded when each stays loaded keepAliveS after its last request. */
function coldStarts(gaps: readonly number[][], keepAliveS: number): number {
  // The first gap leads to the first request (always cold); the last one leads to no request.
  return gaps.reduce((n, g) => n + 1 + g.slice(1, -1).filter((x) => x > keepAliveS).length, 0);
}

function column(spec: WorkloadSpecInput): string[] {
  const { requests, counts, gaps } = gapsByModel(spec);
  const longest = gaps.map((g) => g.reduce((a, b) => Math.max(a, b), 0));
  const idleShare = gaps.map((g) => g.filter((x) => x > 600).reduce((a, b) => a + b, 0) / DAY_S);
  const sorted = [...idleShare].sort((a, b) => a - b);
  const median = ((sorted[MODELS / 2 - 1] as number) + (sorted[MODELS / 2] as number)) / 2;
  const pct = (x: number) => `${(x * 100).toFixed(1)}%`;
  const span = (s: number) =>
    s < 600 ? `${s.toFixed(0)} s` : s < 7200 ? `${(s / 60).toFixed(0)} min` : `${(s / 3600).toFixed(1)} h`;
  return [
    requests.toLocaleString('en-US'),
    pct((counts[0] as number) / requests),
    pct(counts.slice(0, 8).reduce((a, b) => a + b, 0) / requests),
    (counts[MODELS - 1] as number).toLocaleString('en-US'),
    `${longest.filter((g) => g > 600).length} of ${MODELS}`,
    String(longest.filter((g) => g > 3600).length),
    [0, 31, 63].map((k) => span(longest[k] as number)).join(' / '),
    pct(median),
    coldStarts(gaps, 600).toLocaleString('en-US'),
    coldStarts(gaps, 60).toLocaleString('en-US'),
  ];
}

const base = {
  kind: 'multi-model',
  models: MODELS,
  zipfExponent: 1,
  rateRps: 10,
  durationS: DAY_S,
  input: { kind: 'fixed', tokens: 1024 },
  output: { kind: 'fixed', tokens: 128 },
} as const;
const columns = [column(base)];
if (existsSync(BUNDLE))
  columns.push(column({ ...base, source: 'servegen', servegenFile: BUNDLE, startH: 24 }));
const rows = [
  'requests',
  'share of `m00`',
  'share of the top 8 models',
  'requests of `m63`',
  'models with a gap > 10 min',
  'models with a gap > 1 h',
  'longest gap of `m00` / `m31` / `m63`',
  "median model's share of the day in gaps > 10 min",
  'cold starts, K = 10 min',
  'cold starts, K = 1 min',
];
process.stdout.write(
  `| | \`on-off\` (defaults)${columns.length > 1 ? ' | `servegen`, m-large, second day' : ''} |\n`,
);
for (const [i, name] of rows.entries())
  process.stdout.write(`| ${name} | ${columns.map((c) => c[i]).join(' | ')} |\n`);
