/**
 * A run under a control loop bills GPU-hours to the later of its last completion and the workload's
 * declared end, and its loop ticks until then (src/twin/workload-end.ts): an idle tail after the
 * last arrival is paid for, and the loop may scale down in it.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { resolveSettings } from '../cli/sim-command.ts';
import { fromCli, simFlags } from '../cli/sim-test-support.ts';
import { parseWorkloadSpec } from '../workload/create.ts';
import { controlJson, runTwin } from './run.ts';
import { declaredEndMs, workloadEnd } from './workload-end.ts';

const dir = mkdtempSync(join(tmpdir(), 'switchyard-workload-end-'));
after(() => rmSync(dir, { recursive: true, force: true }));

/** 6 req/s of short requests for 60 s, then rate 0 to 1,200 s: a spike and a long idle tail. */
const SPIKE = 'time_s,rate\n0,6\n60,6\n61,0\n1200,0\n';
const TAIL_END_S = 1200;

/** `sim --rate-curve` on `csv` with `extra` flags; its result and warnings. */
function run(name: string, csv: string, extra: Record<string, unknown>) {
  const file = join(dir, `${name}.csv`);
  writeFileSync(file, csv);
  const flags = { rateCurve: file, inputTokens: 512, outputTokens: 64, ...extra };
  const settings = resolveSettings(simFlags(flags), {}, fromCli(Object.keys(flags)));
  const warnings: string[] = [];
  const result = runTwin(settings, undefined, undefined, undefined, (line) => warnings.push(line));
  return { result, warnings };
}

describe('a controlled run bills to the workload declared end', () => {
  it('static: every instance billed for the declared span, not only to the last completion', () => {
    const { result, warnings } = run('static', SPIKE, { autoscaler: 'static', maxInstances: 3 });
    const lastS = result.summary.simulatedSeconds;
    assert.ok(lastS < 100, `the last completion at ${lastS} s, well before the curve's end`);
    assert.equal(result.billedUntilS, TAIL_END_S);
    // Three instances, all provisioned at 0, held to 1,200 s: 1 GPU-hour.
    assert.ok(Math.abs((result.gpuHours as number) - (3 * TAIL_END_S) / 3600) < 1e-9, `${result.gpuHours}`);
    const series = result.instancesOverTime ?? [];
    assert.equal(series.at(-1)?.timeS, TAIL_END_S, 'the series covers the tail');
    assert.deepEqual(warnings, [], 'the tail is simulated under a loop: no warning');
    const json = controlJson(result);
    assert.equal(json['billedUntilS'], TAIL_END_S);
  });

  it('kpa: the loop scales down in the idle tail, which the series shows and the bill follows', () => {
    // Long answers: concurrency past KPA's target on one instance, so it scales up for the spike.
    const { result } = run('kpa', 'time_s,rate\n0,18\n60,18\n61,0\n1200,0\n', {
      outputTokens: 1500,
      autoscaler: 'kpa',
      minInstances: 1,
      maxInstances: 4,
    });
    const lastS = result.summary.simulatedSeconds;
    const series = result.instancesOverTime ?? [];
    assert.equal(result.billedUntilS, TAIL_END_S);
    assert.equal(series.at(-1)?.timeS, TAIL_END_S, 'ticks go on to the declared end');
    const peak = Math.max(...series.map((p) => p.ready + p.starting));
    assert.ok(peak > 1, `scaled up for the spike (peak ${peak})`);
    const tail = series.filter((p) => p.timeS > lastS);
    assert.ok(tail.length > 0, 'points after the last completion');
    assert.equal(tail.at(-1)?.ready, 1, 'back at --min-instances by the end');
    assert.equal(tail.at(-1)?.starting, 0);
    // Between one instance for the whole span and the peak for the whole span.
    const hours = result.gpuHours as number;
    assert.ok(hours > TAIL_END_S / 3600, `${hours} GPU-hours`);
    assert.ok(hours < (peak * TAIL_END_S) / 3600, `${hours} GPU-hours`);
  });

  it('without a loop the summary still ends at the last completion (and warns of the tail)', () => {
    const { result, warnings } = run('fixed', SPIKE, { instances: 2 });
    assert.equal(result.billedUntilS, undefined);
    assert.ok(result.summary.simulatedSeconds < 100);
    assert.equal(warnings.length, 1);
    assert.match(warnings[0] as string, /without --autoscaler/);
  });
});

describe('workloadEnd: where each kind declares its end', () => {
  const lengths = { input: { kind: 'fixed', tokens: 10 }, output: { kind: 'fixed', tokens: 10 } };
  const spanOf = (spec: Record<string, unknown>) =>
    workloadEnd(parseWorkloadSpec({ ...spec, ...lengths })).spanMs;

  it('duration, stages, a rate curve and a trace', () => {
    assert.equal(spanOf({ kind: 'poisson', rateRps: 1, durationS: 30 }), 30_000);
    const stages = [
      { rateRps: 0, durationS: 10 },
      { rateRps: 2, durationS: 20 },
    ];
    assert.equal(spanOf({ kind: 'constant', stages }), 30_000);
    assert.equal(spanOf({ kind: 'constant', stages, durationS: 12 }), 12_000);
    assert.equal(
      spanOf({ kind: 'sinusoid', rateMinRps: 0, rateMaxRps: 2, periodS: 60, durationS: 90 }),
      90_000,
    );
    const points = [
      { timeS: 0, rateRps: 1 },
      { timeS: 50, rateRps: 0 },
      { timeS: 300, rateRps: 0 },
    ];
    assert.equal(spanOf({ kind: 'rate-curve', points }), 300_000);
    assert.equal(spanOf({ kind: 'rate-curve', points, durationS: 100 }), 100_000);
    assert.equal(spanOf({ kind: 'rate-curve', points, durationS: 900 }), 300_000, 'no arrival past its end');
    assert.equal(spanOf({ kind: 'rate-curve', points, repeat: true, durationS: 900 }), 900_000);
    assert.equal(spanOf({ kind: 'poisson', rateRps: 1, maxRequests: 5 }), undefined);
  });

  it('a trace: its duration in replayed time, else its last arrival', () => {
    const trace = { kind: 'trace', trace: 'sample:azure-conv' };
    const cut = workloadEnd(parseWorkloadSpec({ ...trace, durationS: 60, rateScale: 2 }));
    assert.equal(cut.spanMs, 30_000);
    assert.equal(workloadEnd(parseWorkloadSpec(trace)).spanMs, undefined);
  });

  it('a count reached ends the workload at its last arrival, whatever the duration says', () => {
    const end = { spanMs: 600_000, maxRequests: 100 };
    assert.equal(declaredEndMs(end, 100, 42_000), 42_000);
    assert.equal(declaredEndMs(end, 99, 42_000), 600_000);
    assert.equal(declaredEndMs({ spanMs: undefined, maxRequests: undefined }, 7, 5_000), 5_000);
    assert.equal(declaredEndMs(undefined, 7, 5_000), 0);
    // Arrivals past the declared span (a session's late turns) extend it.
    assert.equal(declaredEndMs({ spanMs: 10_000, maxRequests: undefined }, 7, 12_000), 12_000);
  });
});
