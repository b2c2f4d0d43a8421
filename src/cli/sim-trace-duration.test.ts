/**
 * `sim --trace F --rate-scale K --duration S` stops arrivals after S seconds of simulated time, as
 * the flag says and as `bench --duration` does: S x K seconds of the file's own time, which the
 * workload's durationS counts in (before scaling).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Rng } from '../core/rng.ts';
import { createWorkload, parseWorkloadSpec } from '../workload/create.ts';
import { readTrace } from '../workload/traces/read.ts';
import { resolveSettings } from './sim-command.ts';
import { fromCli, simFlags } from './sim-test-support.ts';

const SAMPLE = 'sample:azure-conv';

function arrivalsS(workload: Record<string, unknown>): number[] {
  return [...createWorkload(parseWorkloadSpec(workload), new Rng(1))].map((r) => r.arrivalMs / 1000);
}

/** The sample's requests within its first `traceS` seconds. */
function inFirst(traceS: number): number {
  return readTrace(SAMPLE).records.filter((r) => r.arrivalMs < traceS * 1000).length;
}

describe('sim --duration on a trace replayed at --rate-scale', () => {
  for (const rateScale of [0.5, 2]) {
    it(`at ${rateScale}x, --duration 60 replays the arrivals of the first 60 simulated seconds`, () => {
      const s = resolveSettings(
        simFlags({ trace: SAMPLE, rateScale, duration: 60 }),
        {},
        fromCli(['trace', 'rateScale', 'duration']),
      );
      const arrivals = arrivalsS(s.workload);
      assert.equal(arrivals.length, inFirst(60 * rateScale));
      assert.ok((arrivals.at(-1) as number) < 60, `last arrival ${arrivals.at(-1)} s`);
    });
  }

  it("a config file's trace workload takes --duration in simulated time too, at the file's rateScale", () => {
    const file = { workload: { kind: 'trace', trace: SAMPLE, rateScale: 4 } };
    const s = resolveSettings(simFlags({ duration: 30 }), file, fromCli(['duration']));
    const arrivals = arrivalsS(s.workload);
    assert.equal(arrivals.length, inFirst(120));
    assert.ok((arrivals.at(-1) as number) < 30);
    // The file's own durationS stays in the trace's time, as the workload spec documents it.
    const own = resolveSettings(
      simFlags({}),
      { workload: { ...file.workload, durationS: 120 } },
      fromCli([]),
    );
    assert.equal(arrivalsS(own.workload).length, inFirst(120));
  });
});
