/**
 * Rate-0 stages: an idle stretch between busy ones (a pause between bursts, time to scale to zero)
 * sends nothing for its span and shifts the next stage by it. Every stage idle, or an idle last
 * stage (a run ends with its last request, so it would be cut without a word), negative rates and
 * non-numbers are refused, each with its reason.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Rng } from '../core/rng.ts';
import { createWorkload, parseWorkloadSpec } from './create.ts';
import { parseStages } from './synthetic.ts';

const lengths = { input: { kind: 'fixed', tokens: 100 }, output: { kind: 'fixed', tokens: 10 } } as const;

function arrivals(spec: object, seed = 1): number[] {
  return [...createWorkload(spec as never, new Rng(seed))].map((r) => r.arrivalMs);
}

function countIn(times: readonly number[], fromMs: number, toMs: number): number {
  return times.filter((t) => t >= fromMs && t < toMs).length;
}

describe('idle (rate 0) stages', () => {
  it('parse, and a constant idle stage sends nothing while the next starts after its span', () => {
    assert.deepEqual(parseStages('4:10,0:20,2:5'), [
      { rateRps: 4, durationS: 10 },
      { rateRps: 0, durationS: 20 },
      { rateRps: 2, durationS: 5 },
    ]);
    const t = arrivals({ kind: 'constant', stages: parseStages('4:10,0:20,2:5'), ...lengths });
    assert.equal(t.length, 40 + 10);
    assert.equal(countIn(t, 10_000, 30_000), 0);
    // The third stage starts at 30 s exactly, as it would after a busy stage of 20 s.
    assert.deepEqual(t.slice(40, 43), [30_000, 30_500, 31_000]);
    assert.ok(t.every((x) => Number.isFinite(x)));
  });

  it('a leading idle stage delays the first arrival; Poisson and Gamma stages idle too', () => {
    const lead = arrivals({ kind: 'constant', stages: parseStages('0:60,5:2'), ...lengths });
    assert.deepEqual(lead, [60_000, 60_200, 60_400, 60_600, 60_800, 61_000, 61_200, 61_400, 61_600, 61_800]);
    for (const kind of [{ kind: 'poisson' }, { kind: 'gamma', cv: 2 }]) {
      const t = arrivals({ ...kind, stages: parseStages('20:50,0:100,20:50'), ...lengths });
      assert.equal(countIn(t, 50_000, 150_000), 0, JSON.stringify(kind));
      assert.ok(countIn(t, 0, 50_000) > 800 && countIn(t, 150_000, 200_000) > 800, `${t.length}`);
    }
  });

  it('the spec takes rate 0 in a config file; its mean rate counts the idle time', () => {
    const spec = parseWorkloadSpec({
      kind: 'constant',
      stages: [
        { rateRps: 10, durationS: 30 },
        { rateRps: 0, durationS: 30 },
        { rateRps: 10, durationS: 30 },
      ],
      ...lengths,
    });
    assert.ok(spec.kind === 'constant');
    assert.ok(Math.abs(spec.rateRps - 20 / 3) < 1e-12);
  });

  it('refuses an idle last stage, every stage idle, negative rates and non-numbers, with the reason', () => {
    assert.throws(() => parseStages('5:60,0:60'), {
      code: 'SY_ERR_INVALID_ARGUMENT',
      message: /the last stage \(2 of 2\) has rate 0: a run ends with its last request/,
    });
    assert.throws(() => parseStages('0:10,0:10'), {
      message: /every stage has rate 0: no request would arrive/,
    });
    assert.throws(() => parseStages('0:10'), { message: /every stage has rate 0/ });
    for (const bad of ['-1:10,5:10', '5:10,-0.5:10', 'nan:10,5:10', 'NaN:5', '5:0', '0:0,5:5', 'inf:5']) {
      assert.throws(
        () => parseStages(bad),
        {
          code: 'SY_ERR_INVALID_ARGUMENT',
          message: /a rate >= 0 \(req\/s\) and a positive duration/,
        },
        bad,
      );
    }
    const spec = (stages: object[]) => parseWorkloadSpec({ kind: 'poisson', stages, ...lengths });
    assert.throws(
      () =>
        spec([
          { rateRps: 5, durationS: 10 },
          { rateRps: 0, durationS: 10 },
        ]),
      {
        code: 'SY_ERR_INVALID_ARGUMENT',
        message: /stages: the last stage \(2 of 2\) has rate 0/,
      },
    );
    assert.throws(() => spec([{ rateRps: 0, durationS: 10 }]), { message: /every stage has rate 0/ });
    assert.throws(
      () =>
        spec([
          { rateRps: -1, durationS: 10 },
          { rateRps: 5, durationS: 10 },
        ]),
      {
        code: 'SY_ERR_INVALID_ARGUMENT',
        message: /stages\.0\.rateRps/,
      },
    );
  });
});
