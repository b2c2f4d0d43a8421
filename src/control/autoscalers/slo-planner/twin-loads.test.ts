/**
 * The planner in the twin on a load nobody tuned it on (docs/autoscaling.md, "Loads not tuned
 * on"): a lone spike on a Poisson stream, whose burst size the 30-minute lookback kept
 * provisioning prefill for until the run's end.
 */
import assert from 'node:assert/strict';
import test from 'node:test';
import { runTwin, type TwinSettings } from '../../../twin/run.ts';

function settings(
  workload: Record<string, unknown>,
  slo: { ttftMs: number; tpotMs: number },
  max: number,
): TwinSettings {
  return {
    seed: 1,
    policy: 'round-robin',
    policies: {},
    cluster: { groups: [{ count: max, gpu: 'h100', model: 'llama-3.1-8b', tp: 1 }] },
    engine: {},
    workload,
    slo,
    output: {},
    expectedRequests: undefined,
    control: { autoscaler: 'slo-planner', params: {}, minInstances: 1, maxInstances: max, slo },
  };
}

/**
 * 2 req/s of 2,000/200 tokens (one replica), 40 req/s for 30 s at 610 s, then 2 req/s to `endS`,
 * under the planner with up to 8 replicas and SLOs of 2 s TTFT and 50 ms TPOT.
 */
function spikeRun(endS: number) {
  return runTwin(
    settings(
      {
        kind: 'rate-curve',
        points: [
          { timeS: 0, rateRps: 2 },
          { timeS: 600, rateRps: 2 },
          { timeS: 610, rateRps: 40 },
          { timeS: 640, rateRps: 40 },
          { timeS: 650, rateRps: 2 },
          { timeS: endS, rateRps: 2 },
        ],
        input: { kind: 'fixed', tokens: 2000 },
        output: { kind: 'fixed', tokens: 200 },
      },
      { ttftMs: 2000, tpotMs: 50 },
      8,
    ),
  );
}

test('a lone spike on a Poisson stream stops holding replicas once it has not come back', () => {
  // 2 req/s of 2,000/200 tokens (one replica), 40 req/s for 30 s at 610 s, to 1,800 s. The spike's
  // spans were the lookback's 99% burst quantile for 30 minutes: 4 replicas to the end.
  const r = spikeRun(1800);
  const series = r.instancesOverTime ?? [];
  assert.ok(series.length > 0);
  const peak = Math.max(...series.map((p) => p.ready));
  assert.ok(peak >= 3, `the spike was answered (peak ${peak} ready)`);
  const last = series.at(-1);
  assert.equal(last?.desired, 1, `desired at ${last?.timeS} s: ${last?.desired}`);
  assert.equal(last?.ready, 1);
});

test('the spike leaving the 30-minute lookback does not bring its replicas back', () => {
  // The same spike on a 3,600 s curve: its early spans (high excess over the level) leave the
  // lookback first, at 2,412 s; the rest was then read as a rate's peak and asked 3 instances again
  // for 222 s. Once taken for a spike, the spike's remaining spans stay one.
  const r = spikeRun(3600);
  const series = r.instancesOverTime ?? [];
  const after = series.filter((p) => p.timeS >= 1800);
  assert.ok(after.length > 0);
  const most = Math.max(...after.map((p) => p.desired));
  assert.equal(most, 1, `desired from 1,800 s on reaches ${most}`);
});
