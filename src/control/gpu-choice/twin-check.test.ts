/**
 * The analytic profile held to the twin: one instance offered Poisson arrivals at the rate the
 * profile says it sustains within the objectives, in the discrete-event simulator with the same
 * performance model and vLLM's serve defaults. The profile's steady state has no request-level
 * queueing, so the twin's mean TPOT may sit a little above it; the tolerance says how much.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Rng } from '../../core/rng.ts';
import { createRoutingPolicy } from '../../policies/routing/registry.ts';
import { toEngineConfig } from '../../twin/config.ts';
import { runSimulation } from '../../twin/simulator.ts';
import { createWorkload } from '../../workload/create.ts';
import { isProfiled, type PlanObjectives, profileVariant } from './profile.ts';
import { bucketize } from './workload.ts';

const INPUT_TOKENS = 1000;
const OUTPUT_TOKENS = 200;
const OBJECTIVES = { ttftMs: 1000, tpotMs: 40 } satisfies PlanObjectives;
/** Simulated seconds of arrivals per run: enough requests for stable means. */
const ARRIVAL_SECONDS = 200;
/** How far above the objective the twin's mean TPOT may sit at the profiled rate. */
const TPOT_TOLERANCE = 0.15;

function profiledRate(gpu: string): number {
  const profile = profileVariant(
    gpu,
    'llama-3.1-8b',
    1,
    bucketize([{ inputTokens: INPUT_TOKENS, generatedTokens: OUTPUT_TOKENS }]),
    OBJECTIVES,
  );
  assert.ok(isProfiled(profile));
  const rate = profile.capacities[0]?.maxRateRps ?? 0;
  assert.ok(rate > 0);
  return rate;
}

function twin(gpu: string, rateRps: number): { ttftMsMean: number; tpotMsMean: number } {
  const requests = createWorkload(
    {
      kind: 'poisson',
      rateRps,
      maxRequests: Math.round(rateRps * ARRIVAL_SECONDS),
      input: { kind: 'fixed', tokens: INPUT_TOKENS },
      output: { kind: 'fixed', tokens: OUTPUT_TOKENS },
    },
    new Rng(7),
  );
  const { summary } = runSimulation(requests, {
    seed: 7,
    cluster: { groups: [{ count: 1, gpu, model: 'llama-3.1-8b', tp: 1 }] },
    engine: toEngineConfig(undefined, gpu),
    policy: createRoutingPolicy('round-robin'),
    slo: OBJECTIVES,
    workload: `poisson ${rateRps} req/s`,
  });
  return { ttftMsMean: summary.ttftMs.mean, tpotMsMean: summary.tpotMs.mean };
}

describe('gpu-choice profile against the twin', () => {
  for (const gpu of ['h100', 'l40s']) {
    it(`${gpu}: at the profiled rate the twin meets TTFT and TPOT within ${TPOT_TOLERANCE * 100}%; at 1.3x it misses`, () => {
      const rate = profiledRate(gpu);
      const at = twin(gpu, rate);
      assert.ok(
        at.ttftMsMean <= OBJECTIVES.ttftMs,
        `${gpu} at ${rate.toFixed(2)} req/s: mean TTFT ${at.ttftMsMean}`,
      );
      assert.ok(
        at.tpotMsMean <= OBJECTIVES.tpotMs * (1 + TPOT_TOLERANCE),
        `${gpu} at ${rate.toFixed(2)} req/s: mean TPOT ${at.tpotMsMean}`,
      );
      const over = twin(gpu, rate * 1.3);
      assert.ok(
        over.tpotMsMean > OBJECTIVES.tpotMs || over.ttftMsMean > OBJECTIVES.ttftMs,
        `${gpu} at ${(rate * 1.3).toFixed(2)} req/s still meets both: TTFT ${over.ttftMsMean}, TPOT ${over.tpotMsMean}`,
      );
    });
  }
});
