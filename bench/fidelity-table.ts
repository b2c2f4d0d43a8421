/**
 * How long the fidelity comparison table takes to draw, as it is (in cli-table3 tables of at most
 * 200 rows, src/twin/fidelity/report.ts) against one cli-table3 table of a row per line, as it was:
 * cli-table3 lays a table out in time quadratic in its rows. Rows of a staged case (src/twin/fidelity/
 * report-test-support.ts: 1 to 4 figures, throughput, a capped client's lines, saturation; about
 * 4 lines each). Rounds alternate the two; prints each one's median CPU time and the ratio, and
 * checks both draw the same text.
 *
 *   node --import tsx bench/fidelity-table.ts                  # 250, 1000 and 2000 case rows
 *   node --import tsx bench/fidelity-table.ts --rows 1000 --rounds 9
 */
import { cpuUsage } from 'node:process';
import { parseArgs } from 'node:util';
import { scriptArgs, scriptUsageError } from '../scripts/script-args.ts';
import { formatFidelityTable } from '../src/twin/fidelity/report.ts';
import { formatFidelityTableByLine, sampleRows } from '../src/twin/fidelity/report-test-support.ts';

const USAGE = `Usage: node --import tsx bench/fidelity-table.ts [--rows a,b] [--rounds N]

Times the fidelity comparison table drawn as it is (in pieces of at most 200 rows) against one
cli-table3 table (before); prints median CPU seconds and the ratio.

Options:
  --rows <list>    comma-separated case-row counts (default 250,1000,2000)
  --rounds <n>     rounds per count, the two ways alternating (default 5)
  -h, --help       this text`;

const { values } = scriptArgs('bench:fidelity-table', USAGE, () =>
  parseArgs({
    options: { rows: { type: 'string', default: '250,1000,2000' }, rounds: { type: 'string', default: '5' } },
    strict: true,
    allowPositionals: false,
  }),
);
const counts = (values.rows ?? '').split(',').map(Number);
const rounds = Number(values.rounds);
if (counts.some((n) => !Number.isInteger(n) || n < 1))
  scriptUsageError('bench:fidelity-table', USAGE, `--rows must be whole numbers >= 1, got ${values.rows}`);
if (!Number.isInteger(rounds) || rounds < 1)
  scriptUsageError(
    'bench:fidelity-table',
    USAGE,
    `--rounds must be a whole number >= 1, got ${values.rounds}`,
  );

/** CPU seconds of one call, and what it returned. */
function timed(draw: () => string): { s: number; text: string } {
  const start = cpuUsage();
  const text = draw();
  const used = cpuUsage(start);
  return { s: (used.user + used.system) / 1e6, text };
}

function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 === 1 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
}

console.log(`fidelity table, ${rounds} round(s) per count, node ${process.version}; CPU seconds, medians`);
console.log(
  `${'case rows'.padStart(9)} ${'lines'.padStart(6)} ${'one table s'.padStart(11)} ${'pieces s'.padStart(9)} ${'ratio'.padStart(7)}`,
);
for (const n of counts) {
  const rows = sampleRows(n);
  const before: number[] = [];
  const after: number[] = [];
  let lines = 0;
  for (let r = 0; r < rounds; r++) {
    const a = timed(() => formatFidelityTableByLine(rows));
    const b = timed(() => formatFidelityTable(rows));
    if (a.text !== b.text) throw new Error(`${n} rows: the two tables differ`);
    lines = b.text.split('\n').length;
    before.push(a.s);
    after.push(b.s);
  }
  const mb = median(before);
  const ma = median(after);
  console.log(
    `${String(n).padStart(9)} ${String(lines).padStart(6)} ${mb.toFixed(3).padStart(11)} ${ma.toFixed(3).padStart(9)} ${(ma / mb).toFixed(2).padStart(7)}`,
  );
}
console.log('ratio: pieces over one table (as drawn now over as it was); both drew the same text');
