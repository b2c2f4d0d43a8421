/** The fidelity harness: published measurements of real engines replayed in the twin. */
export type { FidelityCase, FidelityCaseInput, LatencyFigures, Measured } from './case.ts';
export { fidelityCaseSchema, loadFidelityCase, parseFidelityCase } from './case.ts';
export type { FidelitySummary, FigureComparison, RowComparison, SaturationVerdict } from './compare.ts';
export { compareAll, compareRow, errorPct, median } from './compare.ts';
export type { ClientFigures, PredictedFigures } from './observe.ts';
export { clientFiguresOf, figuresOf, isSaturated, observed, RequestLog } from './observe.ts';
export type { CasePrefix } from './prefix.ts';
export { casePrefixSchema, withSharedPrefix } from './prefix.ts';
export { fidelityJson, formatCaseNotes, formatFidelitySummary, formatFidelityTable } from './report.ts';
export type { CaseResult, CaseRow } from './run-case.ts';
export { CLIENT_POLL_MS, cappedSource, openLoopSpec, replayOpenLoop, runCase } from './run-case.ts';
