/** The fidelity harness: published measurements of real engines replayed in the twin. */
export type { FidelityCase, FidelityCaseInput, LatencyFigures, Measured } from './case.ts';
export { fidelityCaseSchema, loadFidelityCase, parseFidelityCase } from './case.ts';
export type { FidelitySummary, FigureComparison, RowComparison, SaturationVerdict } from './compare.ts';
export { compareAll, compareRow, errorPct, median } from './compare.ts';
export type { PredictedFigures } from './observe.ts';
export { figuresOf, isSaturated, observed, RequestLog } from './observe.ts';
export type { CasePrefix } from './prefix.ts';
export { casePrefixSchema, withSharedPrefix } from './prefix.ts';
export { fidelityJson, formatCaseNotes, formatFidelitySummary, formatFidelityTable } from './report.ts';
export type { CaseResult, CaseRow } from './run-case.ts';
export { CLOSED_LOOP_POLL_MS, closedLoopSource, openLoopSpec, runCase } from './run-case.ts';
