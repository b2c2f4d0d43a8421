/**
 * The lines `switchyard sim` prints around its tables: what ran (for a comparison, whose table has
 * no header of its own) and where the reports went. Kept apart from sim-command.ts so the command
 * calls each in one line.
 */
import { resolve } from 'node:path';
import { fmtMs, fmtNumber } from '../stats/format.ts';
import type { ClusterSpec } from '../twin/cluster.ts';
import { countText } from '../twin/report/pool.ts';
import { type PolicyRun, simulatedCluster, type TwinSettings } from '../twin/run.ts';

/** `4x h100 llama-3.1-8b` (with `tp2` when tensor-parallel), groups joined by `+`. */
export function describeCluster(cluster: ClusterSpec): string {
  return cluster.groups
    .map((g) => `${fmtNumber(g.count)}x ${g.gpu} ${g.model}${(g.tp ?? 1) > 1 ? ` tp${g.tp}` : ''}`)
    .join(' + ');
}

/**
 * The header of a comparison (more than one run; a single run's summary table has its own):
 * the policies, the workload, the seed, the cluster and the SLO, then a blank line.
 */
export function comparisonHeader(settings: TwinSettings, runs: readonly PolicyRun[]): string {
  const first = runs[0];
  if (runs.length < 2 || first === undefined) return '';
  const s = first.result.summary;
  const policies = runs.map((r) => r.result.summary.policy).join(', ');
  // The cluster the runs simulated (a P/D run's, with its roles), not the flags' default one.
  const pd = settings.pd;
  const roles = pd !== undefined ? `${pd.prefillInstances} prefill + ${pd.decodeInstances} decode: ` : '';
  return (
    `compare ${policies}\n` +
    `workload ${s.workload} · seed ${s.seed} · ${countText(s.instances, 'instance')} (${roles}${describeCluster(simulatedCluster(settings))})\n` +
    `SLO TTFT ≤ ${fmtMs(settings.slo.ttftMs)} ms · TPOT ≤ ${fmtMs(settings.slo.tpotMs)} ms\n`
  );
}

/** One `wrote ... report to <absolute path>` line per file written; empty when none. */
export function wroteLines(output: TwinSettings['output']): string {
  const lines: string[] = [];
  if (output.json !== undefined) lines.push(`wrote JSON report to ${resolve(output.json)}`);
  if (output.html !== undefined) lines.push(`wrote HTML report to ${resolve(output.html)}`);
  return lines.map((l) => `${l}\n`).join('');
}
