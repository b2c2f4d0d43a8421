/**
 * A long comparison table (over 2,000 lines) is drawn in cli-table3 tables of at most 200 rows, not
 * one table of a row per line: cli-table3 lays a table out in time quadratic in its rows, and a 1,000-stage case's
 * 4,400 lines took seconds. The text is the same as one table's.
 */
import assert from 'node:assert/strict';
import { describe, it, mock } from 'node:test';
import Table from 'cli-table3';
import { formatFidelityTable } from './report.ts';
import { formatFidelityTableByLine, sampleRows } from './report-test-support.ts';

describe('the fidelity comparison table', () => {
  for (const color of [false, true])
    it(`is the text the line-by-line table draws${color ? ', in colour' : ''}`, () => {
      for (const n of [0, 1, 2, 30, 250, 500]) {
        const rows = sampleRows(n);
        assert.equal(
          formatFidelityTable(rows, { color }),
          formatFidelityTableByLine(rows, { color }),
          `${n} rows`,
        );
      }
      // The sample holds every kind of line.
      const text = formatFidelityTable(sampleRows(30));
      for (const line of [
        'throughput req/s',
        'client wait p90',
        'sent req/s',
        '(x)',
        'TWIN ONLY',
        'real only',
      ])
        assert.ok(text.includes(line), line);
    });

  it('is drawn in tables of at most 200 rows', () => {
    const drawn: number[] = [];
    const draw = Table.prototype.toString;
    const spy = mock.method(Table.prototype, 'toString', function (this: Table.Table) {
      drawn.push(this.length);
      return draw.call(this);
    });
    try {
      formatFidelityTable(sampleRows(500));
    } finally {
      spy.mock.restore();
    }
    // 500 case rows are about 2,200 lines: 12 pieces, each drawn twice (its widths, then the text).
    assert.ok(drawn.length >= 20, `${drawn.length} tables`);
    assert.ok(Math.max(...drawn) <= 200, `tables of ${drawn.join(', ')} rows`);
  });
});
