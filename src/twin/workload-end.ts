/**
 * Where a workload declares that it ends, for the bills of a run under a control loop.
 *
 * A controlled run (an autoscaler, a multi-model or serverless cluster, autoscaled P/D pools) bills
 * GPU-hours over [0, max(last completion, the workload's declared end)] and its loops keep ticking
 * until then: a pool that holds 4 instances for 20 idle minutes after a spike pays for them (and gets
 * the chance to scale down), as a cluster provisioned for that span would. The declared end:
 * - `durationS` when set (a trace's in trace seconds, so divided by its rateScale);
 * - else where the arrivals' own schedule ends: stages' sum, a rate curve's last point (not
 *   repeated), a ServeGen file's end from `startH`;
 * - a rate curve with both: the earlier of `durationS` and its last point (no arrival comes after it);
 * - a trace without `durationS`, or a workload bounded by a count: its last arrival.
 * A `maxRequests` the source reaches ends the workload at that arrival, whatever `durationS` says;
 * the simulator knows that only once the source runs dry (`billedEndMs`).
 */

import { assertNever } from '../core/assert.ts';
import { readRateCurve } from '../workload/rate-curve-file.ts';
import { readServegen } from '../workload/servegen.ts';
import type { WorkloadSpec } from '../workload/spec.ts';
import { profileOf } from '../workload/time-varying.ts';

/** What the simulator needs to know of a workload's declared end. */
export interface WorkloadEnd {
  /** The declared end from time 0, ms; undefined: the last arrival (a trace, a count). */
  readonly spanMs: number | undefined;
  /** The count that ends the workload when reached (`maxRequests`), if any. */
  readonly maxRequests: number | undefined;
}

/** A workload spec's declared end (see the module comment); reads a ServeGen file without `durationS`. */
export function workloadEnd(spec: WorkloadSpec): WorkloadEnd {
  const s = spanS(spec);
  return { spanMs: s === undefined ? undefined : s * 1000, maxRequests: spec.maxRequests };
}

function spanS(spec: WorkloadSpec): number | undefined {
  const duration = spec.durationS;
  switch (spec.kind) {
    case 'trace':
      return duration === undefined ? undefined : duration / spec.rateScale;
    case 'poisson':
    case 'gamma':
    case 'constant': {
      const stagesS = spec.stages?.reduce((s, stage) => s + stage.durationS, 0);
      if (stagesS === undefined) return duration;
      return duration === undefined ? stagesS : Math.min(duration, stagesS);
    }
    case 'system-prompts':
    case 'sessions':
    case 'sinusoid':
    case 'bursts':
      return duration;
    case 'rate-curve': {
      const points = spec.file !== undefined ? readRateCurve(spec.file) : undefined;
      const endS = profileOf(spec, points).endS;
      const end = Math.min(duration ?? Number.POSITIVE_INFINITY, endS);
      return Number.isFinite(end) ? end : undefined;
    }
    case 'servegen':
      return duration ?? servegenSpanS(spec.file, spec.startH);
    case 'multi-model':
      return (
        duration ?? (spec.source === 'servegen' ? servegenSpanS(spec.servegenFile, spec.startH) : undefined)
      );
    default:
      return assertNever(spec, 'workload kind');
  }
}

/** A ServeGen file's span from `startH` hours after its first window to its end, s. */
function servegenSpanS(file: string, startH: number): number {
  const data = readServegen(file);
  return Math.max(0, data.endS - (data.firstS + startH * 3600));
}

/**
 * The end a controlled run bills to once its source ran dry: the later of its last completion and
 * the declared end, that end being the last arrival when the count limit was reached or none was
 * declared. `arrived` and `lastArrivalMs` are the source's requests.
 */
export function billedEndMs(
  end: WorkloadEnd | undefined,
  arrived: number,
  lastArrivalMs: number,
  lastFinishMs: number,
): number {
  return Math.max(lastFinishMs, declaredEndMs(end, arrived, lastArrivalMs));
}

/** The workload's declared end once its source ran dry (see `billedEndMs`); 0 with none known. */
export function declaredEndMs(end: WorkloadEnd | undefined, arrived: number, lastArrivalMs: number): number {
  if (end === undefined) return 0;
  const counted = end.maxRequests !== undefined && arrived >= end.maxRequests;
  if (counted || end.spanMs === undefined) return lastArrivalMs;
  return Math.max(lastArrivalMs, end.spanMs);
}
