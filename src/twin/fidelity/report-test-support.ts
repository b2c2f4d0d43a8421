/**
 * Comparison rows for the table's tests and bench/fidelity-table.ts: every kind of line (figures,
 * an excluded one, throughput, a capped client, each saturation verdict), and the table drawn as one
 * cli-table3 table of a row per line, as it was before long tables were drawn in pieces.
 */
import type { ClientComparison, Figure, RowComparison, Stat } from './compare.ts';
import { fidelityTable, fidelityTableLines } from './report.ts';

const VERDICTS = ['agree', 'twin-only', 'real-only'] as const;
const TWIN_STATES: readonly ClientComparison['twin'][] = ['client-bound', 'saturated', 'no'];

/** `n` rows like a staged case's (`big#1`...), varied by index; deterministic. */
export function sampleRows(n: number): RowComparison[] {
  return Array.from({ length: n }, (_, i) => {
    const figures = (
      [
        ['ttftMs', 'mean'],
        ['ttftMs', 'p99'],
        ['perTokenMs', 'p50'],
        ['e2eMs', 'mean'],
      ] as const
    )
      .slice(0, 1 + (i % 4))
      .map(([figure, stat]: readonly [Figure, Stat], k) => {
        const measuredMs = 10 + ((i * 7 + k * 13) % 997) / 3;
        const predictedMs = measuredMs * (0.5 + ((i + k) % 11) / 10);
        return {
          figure,
          stat,
          measuredMs,
          predictedMs,
          errorPct: ((predictedMs - measuredMs) / measuredMs) * 100,
        };
      });
    const client: ClientComparison | undefined =
      i % 5 === 2
        ? {
            maxConcurrency: 64,
            waitMsMean: i * 1.5,
            waitMsP90: i * 3.25,
            sendRateRps: 1 + (i % 9),
            twin: TWIN_STATES[i % 3] as ClientComparison['twin'],
          }
        : undefined;
    return {
      label: `big#${i + 1}`,
      load: `${1 + (i % 5)} req/s${client !== undefined ? ', cap 64' : ''}`,
      figures,
      measuredSaturated: i % 7 === 0,
      predictedSaturated: i % 6 === 0,
      saturation: VERDICTS[i % 3] as RowComparison['saturation'],
      measuredThroughputRps: i % 3 === 1 ? 2 + (i % 4) : undefined,
      predictedThroughputRps: 2.5 + (i % 3),
      excluded: i % 8 === 3 ? ['ttftMs'] : [],
      ...(client !== undefined ? { client } : {}),
    };
  });
}

/** The table drawn as it was: one cli-table3 row per line (quadratic in lines in cli-table3). */
export function formatFidelityTableByLine(
  rows: readonly RowComparison[],
  options: { color?: boolean } = {},
): string {
  const table = fidelityTable(options);
  for (const row of rows) for (const cells of fidelityTableLines(row)) table.push(cells);
  return table.toString();
}
