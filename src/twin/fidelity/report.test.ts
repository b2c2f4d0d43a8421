import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { FidelitySummary } from './compare.ts';
import { formatFidelitySummary } from './report.ts';

const summary = (rows: number, figureRows: number, twinOnly: number): FidelitySummary => ({
  rows,
  ttftMedianAbsErrorPct: 5,
  perTokenMedianAbsErrorPct: 2.5,
  e2eMedianAbsErrorPct: null,
  ttftRows: figureRows,
  perTokenRows: figureRows,
  e2eRows: 0,
  twinOnlySaturations: twinOnly,
  realOnlySaturations: 0,
  excludedFigures: 0,
});

describe('formatFidelitySummary', () => {
  it('says "1 row", not "1 rows"', () => {
    const text = formatFidelitySummary(summary(1, 1, 1));
    assert.match(text, /TTFT 5\.0% over 1 row; per-token 2\.5% over 1 row; E2E n\/a/);
    assert.match(text, /saturation: 1 of 1 row saturates in the twin only, 0 in reality only/);
    assert.doesNotMatch(text, /1 rows/);
  });

  it('says "n rows" for any other count', () => {
    const text = formatFidelitySummary(summary(3, 2, 0));
    assert.match(text, /TTFT 5\.0% over 2 rows; per-token 2\.5% over 2 rows/);
    assert.match(text, /saturation: 0 of 3 rows saturate in the twin only/);
  });
});
