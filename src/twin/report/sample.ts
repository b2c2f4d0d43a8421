/**
 * Made-up but plausible report data, deterministic from a seed: for the report tests, for
 * screenshots of the HTML report, and for a `--demo` flag. Not a model of anything.
 */

import { Rng } from '../../core/rng.ts';
import { downsampleSorted, latencyStats } from '../../stats/percentiles.ts';
import type { InstanceSummary, SimReportData, SimSummary } from './types.ts';

/** Shape of the sample. */
export interface SampleOptions {
  readonly policy?: string;
  readonly seed?: number;
  readonly instances?: number;
  readonly requests?: number;
  /** Time points in each series. */
  readonly points?: number;
  /** Multiplies every latency: > 1 makes a worse policy for comparisons. */
  readonly slowdown?: number;
}

function lognormals(rng: Rng, n: number, medianMs: number, sigma: number): Float64Array {
  return Float64Array.from({ length: n }, () => medianMs * Math.exp(sigma * rng.normal()));
}

function fractionBelow(values: Float64Array, limit: number): number {
  let k = 0;
  for (const v of values) if (v <= limit) k++;
  return values.length === 0 ? 0 : k / values.length;
}

/** A SimReportData with `instances` instances over a simulated 10 minutes. */
export function sampleReportData(options: SampleOptions = {}): SimReportData {
  const rng = new Rng(options.seed ?? 1);
  const n = options.instances ?? 4;
  const requests = options.requests ?? 5000;
  const points = options.points ?? 120;
  const slow = options.slowdown ?? 1;
  const simulatedSeconds = 600;

  const ttft = lognormals(rng, requests, 180 * slow, 0.9);
  const tpot = lognormals(rng, requests, 28 * slow, 0.35);
  const outLen = Float64Array.from({ length: requests }, () => 50 + rng.int(400));
  const e2e = ttft.map((t, i) => t + (tpot[i] as number) * (outLen[i] as number));
  const queue = ttft.map((t) => t * 0.4 * rng.next());
  const slo = { ttftMs: 500, tpotMs: 50 };
  let both = 0;
  for (let i = 0; i < requests; i++)
    if ((ttft[i] as number) <= slo.ttftMs && (tpot[i] as number) <= slo.tpotMs) both++;
  const outputTokens = outLen.reduce((a, b) => a + b, 0);
  const rejected = Math.round(requests * 0.004 * slow);

  const tS = Array.from({ length: points }, (_, k) => (k * simulatedSeconds) / (points - 1));
  const running: Record<string, number[]> = {};
  const waiting: Record<string, number[]> = {};
  const kvUsage: Record<string, number[]> = {};
  const perInstance: InstanceSummary[] = [];
  for (let j = 0; j < n; j++) {
    const id = `i${String(j).padStart(String(n - 1).length, '0')}`;
    const load = 0.6 + 0.5 * rng.next();
    const phase = rng.uniform(0, 2 * Math.PI);
    const r = tS.map((t) =>
      Math.max(0, Math.round(load * (24 + 10 * Math.sin(t / 60 + phase)) + 3 * rng.normal())),
    );
    const w = r.map((x) => Math.max(0, Math.round((x - 26) * 0.8 * slow + rng.normal())));
    const kv = r.map((x) => Math.min(1, Math.max(0, x / 40 + 0.05 * rng.normal())));
    running[id] = r;
    waiting[id] = w;
    kvUsage[id] = kv;
    perInstance.push({
      id,
      gpu: 'H100-80G',
      model: 'llama-3.1-8b',
      tp: 1,
      requests: Math.round((requests / n) * load),
      utilization: Math.min(1, 0.55 * load),
      kvUsageMean: kv.reduce((a, b) => a + b, 0) / kv.length,
      kvUsageMax: Math.max(...kv),
      prefixHitRate: 0.3 + 0.2 * rng.next(),
      preemptions: rng.int(5),
    });
  }

  const summary: SimSummary = {
    policy: options.policy ?? 'least-request',
    seed: options.seed ?? 1,
    workload: 'sample (synthetic, 10 min)',
    instances: n,
    requests,
    completed: requests - rejected,
    rejected,
    ttftMs: latencyStats(ttft),
    tpotMs: latencyStats(tpot),
    itlMs: latencyStats(tpot),
    e2eMs: latencyStats(e2e),
    queueMs: latencyStats(queue),
    slo,
    sloAttainment: {
      ttft: fractionBelow(ttft, slo.ttftMs),
      tpot: fractionBelow(tpot, slo.tpotMs),
      both: both / requests,
    },
    throughputTokPerS: outputTokens / simulatedSeconds,
    throughputReqPerS: requests / simulatedSeconds,
    inputTokens: requests * 1500,
    outputTokens,
    prefixHitRate: 0.41,
    preemptions: perInstance.reduce((a, p) => a + p.preemptions, 0),
    gpuSeconds: n * simulatedSeconds,
    simulatedSeconds,
    events: requests * 180,
    wallSeconds: 0.42,
    eventsPerWallS: (requests * 180) / 0.42,
    perInstance,
  };
  const keep = (v: Float64Array) => downsampleSorted(v.slice().sort(), 2000);
  return {
    summary,
    samples: { ttftMs: keep(ttft), tpotMs: keep(tpot), e2eMs: keep(e2e) },
    series: { tS, running, waiting, kvUsage },
  };
}
