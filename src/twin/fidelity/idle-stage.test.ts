/**
 * A staged fidelity case may hold an idle (rate 0) stage, as a benchmark that pauses between bursts
 * does: it sends nothing, the next stage starts after it, and it gets no row. Figures measured on it
 * are refused (nothing arrives there to compare them with), and so are an idle last stage and a case
 * whose every stage is idle.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { type FidelityCaseInput, parseFidelityCase } from './case.ts';
import { replayOpenLoop } from './run-case.ts';

const measured = { ttftMs: { mean: 50 }, perTokenMs: { mean: 10 }, saturated: false };

function stagedCase(stages: object[]): FidelityCaseInput {
  return {
    name: 'idle',
    source: { title: 't', url: 'https://example.org', engine: 'vLLM 0.23.0' },
    model: 'llama-3.1-8b',
    gpu: 'h100',
    workload: {
      arrival: 'constant',
      stages,
      input: { kind: 'fixed', tokens: 512 },
      output: { kind: 'fixed', tokens: 64 },
    } as never,
  };
}

describe('fidelity: idle stages', () => {
  it('an idle stage between measured ones sends nothing and has no row', () => {
    const c = parseFidelityCase(
      stagedCase([
        { rateRps: 2, durationS: 30, measured },
        { rateRps: 0, durationS: 60 },
        { rateRps: 4, durationS: 30, measured },
      ]),
    );
    const { result, log } = replayOpenLoop(c);
    assert.deepEqual(
      result.rows.map((r) => [r.label, r.load, r.predicted.requests, r.predicted.completed]),
      [
        ['idle#1', '2 req/s', 60, 60],
        ['idle#3', '4 req/s', 120, 120],
      ],
    );
    const scheduled = Array.from(log.scheduledMs.subarray(0, log.size));
    assert.equal(scheduled.filter((t) => t >= 30_000 && t < 90_000).length, 0);
    assert.equal(Math.min(...scheduled.filter((t) => t >= 30_000)), 90_000);
  });

  it('refuses figures measured on an idle stage, an idle last stage, and every stage idle', () => {
    assert.throws(
      () =>
        parseFidelityCase(
          stagedCase([
            { rateRps: 2, durationS: 30, measured },
            { rateRps: 0, durationS: 30, measured },
            { rateRps: 2, durationS: 30 },
          ]),
        ),
      {
        code: 'SY_ERR_INVALID_CONFIG',
        message:
          /workload\.stages\.1\.measured: stage 2 has rate 0: no request arrives in it, so it has no figures to compare/,
      },
    );
    assert.throws(
      () =>
        parseFidelityCase(
          stagedCase([
            { rateRps: 2, durationS: 30, measured },
            { rateRps: 0, durationS: 30 },
          ]),
        ),
      { message: /workload\.stages: the last stage \(2 of 2\) has rate 0/ },
    );
    assert.throws(() => parseFidelityCase({ ...stagedCase([{ rateRps: 0, durationS: 30 }]), measured }), {
      message: /every stage has rate 0/,
    });
    assert.throws(() => parseFidelityCase(stagedCase([{ rateRps: -2, durationS: 30, measured }])), {
      message: /workload\.stages\.0\.rateRps/,
    });
  });
});
