import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import type { z } from 'zod';
import { assertNever } from '../core/assert.ts';
import type { Slo } from '../core/request.ts';
import { Rng } from '../core/rng.ts';
import { createRoutingPolicy } from '../policies/routing/registry.ts';
import type { ClusterSpec } from './cluster.ts';
import { type engineOptionsSchema, parseWithSchema, toEngineConfig } from './config.ts';
import { renderHtmlReport } from './report/html.ts';
import { comparisonToJson, stringifyJson, summaryToJson } from './report/json.ts';
import { runSimulation, type SimResult } from './simulator.ts';
import { createWorkload } from './workload/create.ts';
import { type WorkloadSpec, workloadSpecSchema } from './workload/spec.ts';

/** Everything that defines one twin run, resolved from flags and config. */
export interface TwinSettings {
  readonly seed: number;
  readonly policy: { readonly name: string; readonly params: Readonly<Record<string, unknown>> };
  readonly cluster: ClusterSpec;
  readonly engine: z.infer<typeof engineOptionsSchema>;
  /** Validated against the workload schema when the run starts. */
  readonly workload: Readonly<Record<string, unknown>>;
  readonly slo: Slo;
  readonly output: { readonly json?: string | undefined; readonly html?: string | undefined };
  /** For the progress bar, when known. */
  readonly expectedRequests: number | undefined;
}

/** Runs one twin simulation from resolved settings. */
export function runTwin(
  settings: TwinSettings,
  onProgress?: (arrived: number, simulatedMs: number) => void,
): SimResult {
  const spec = parseWithSchema(workloadSpecSchema, settings.workload, 'workload');
  const rng = new Rng(settings.seed);
  const source = createWorkload(spec, rng.fork('workload'));
  return runSimulation(source, {
    seed: settings.seed,
    cluster: settings.cluster,
    engine: toEngineConfig(settings.engine),
    policy: createRoutingPolicy(settings.policy.name, settings.policy.params),
    slo: settings.slo,
    workload: describeWorkload(spec),
    ...(onProgress !== undefined ? { onProgress } : {}),
  });
}

/** Writes the JSON summary and the HTML report where asked. */
export function writeOutputs(results: readonly SimResult[], output: TwinSettings['output']): void {
  if (output.json !== undefined) {
    const value =
      results.length === 1
        ? summaryToJson((results[0] as SimResult).summary)
        : {
            policies: comparisonToJson(results.map((r) => ({ name: r.summary.policy, summary: r.summary }))),
          };
    writeText(output.json, stringifyJson(value));
  }
  if (output.html !== undefined) writeText(output.html, renderHtmlReport(results.map((r) => r.report)));
}

function writeText(path: string, text: string): void {
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, text);
}

/** A one-line label for a workload spec, for reports. */
export function describeWorkload(spec: WorkloadSpec): string {
  const limit = [
    spec.maxRequests !== undefined ? `${spec.maxRequests} requests` : '',
    spec.durationS !== undefined ? `${spec.durationS} s` : '',
  ]
    .filter((s) => s.length > 0)
    .join(', ');
  const tail = limit.length > 0 ? ` (${limit})` : '';
  switch (spec.kind) {
    case 'trace':
      return `trace ${spec.trace}${spec.rateScale !== 1 ? ` at ${spec.rateScale}x rate` : ''}${tail}`;
    case 'poisson':
      return `poisson ${spec.rateRps} req/s${tail}`;
    case 'gamma':
      return `gamma ${spec.rateRps} req/s cv ${spec.cv}${tail}`;
    case 'system-prompts':
      return `system-prompts ${spec.groups} groups x ${spec.prefixTokens} tokens at ${spec.rateRps} req/s${tail}`;
    case 'sessions':
      return `sessions at ${spec.sessionRateRps} sessions/s${tail}`;
    default:
      return assertNever(spec, 'workload kind');
  }
}
