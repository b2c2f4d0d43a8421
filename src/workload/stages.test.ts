import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Rng } from '../core/rng.ts';
import { scaleWorkload } from '../twin/goodput.ts';
import { constantArrivals } from './arrivals.ts';
import { createWorkload, parseWorkloadSpec } from './create.ts';
import { describeRate, parseStages, scaleRenewalRate } from './synthetic.ts';

const lengths = { input: { kind: 'fixed', tokens: 100 }, output: { kind: 'fixed', tokens: 10 } } as const;

function arrivals(spec: object, seed = 1): number[] {
  return [...createWorkload(spec as never, new Rng(seed))].map((r) => r.arrivalMs);
}

function countIn(times: readonly number[], fromMs: number, toMs: number): number {
  return times.filter((t) => t >= fromMs && t < toMs).length;
}

describe('constant arrivals', () => {
  it('hands out the same gap every time and draws no randomness', () => {
    const p = constantArrivals(8);
    for (let i = 0; i < 10; i++) assert.equal(p.nextGapMs(), 125);
    assert.throws(() => constantArrivals(0), { code: 'SY_ERR_INVALID_ARGUMENT' });
  });

  it('places request k at k / rate, the same for every seed', () => {
    const t = arrivals({ kind: 'constant', rateRps: 4, ...lengths, maxRequests: 5 });
    assert.deepEqual(t, [0, 250, 500, 750, 1000]);
    assert.deepEqual(arrivals({ kind: 'constant', rateRps: 4, ...lengths, maxRequests: 5 }, 99), t);
  });

  it('stops at durationS with exactly rate x duration requests', () => {
    const t = arrivals({ kind: 'constant', rateRps: 3, ...lengths, durationS: 10 });
    assert.equal(t.length, 30);
    assert.ok(t.every((x) => x < 10_000));
  });
});

describe('rate stages', () => {
  it('constant stages hold exactly rate x seconds arrivals each, back to back', () => {
    const t = arrivals({ kind: 'constant', stages: parseStages('8:600,20:600,3:7'), ...lengths });
    assert.equal(countIn(t, 0, 600_000), 4800);
    assert.equal(countIn(t, 600_000, 1_200_000), 12_000);
    assert.equal(countIn(t, 1_200_000, 1_207_000), 21);
    assert.equal(t.length, 4800 + 12_000 + 21);
    assert.equal(t[4800], 600_000);
    for (let i = 1; i < t.length; i++) assert.ok((t[i] as number) > (t[i - 1] as number));
  });

  it('Poisson stages follow each stage rate and end with the last stage', () => {
    const t = arrivals({ kind: 'poisson', stages: parseStages('10:200,50:200'), ...lengths });
    const first = countIn(t, 0, 200_000) / 200;
    const second = countIn(t, 200_000, 400_000) / 200;
    assert.ok(Math.abs(first - 10) < 1, `first stage ${first} req/s`);
    assert.ok(Math.abs(second - 50) < 2.5, `second stage ${second} req/s`);
    assert.ok((t.at(-1) as number) < 400_000);
  });

  it('Gamma stages keep the CV and are deterministic per seed', () => {
    const spec = { kind: 'gamma', cv: 2, stages: parseStages('10:100,20:100'), ...lengths };
    assert.deepEqual(arrivals(spec, 3), arrivals(spec, 3));
    assert.notDeepEqual(arrivals(spec, 3), arrivals(spec, 4));
  });

  it('maxRequests and durationS still cut a staged run', () => {
    const stages = parseStages('10:100,20:100');
    assert.equal(arrivals({ kind: 'constant', stages, ...lengths, maxRequests: 7 }).length, 7);
    assert.equal(arrivals({ kind: 'constant', stages, ...lengths, durationS: 150 }).length, 2000);
  });

  it('fills rateRps with the time-weighted mean and validates again unchanged', () => {
    const spec = parseWorkloadSpec({ kind: 'constant', stages: parseStages('8:600,20:200'), ...lengths });
    assert.equal(spec.kind === 'constant' ? spec.rateRps : 0, 11);
    assert.deepEqual(parseWorkloadSpec(spec), spec);
  });

  it('rejects a rateRps that disagrees with the stages, and a spec with neither', () => {
    const stages = parseStages('8:600');
    assert.throws(() => parseWorkloadSpec({ kind: 'poisson', rateRps: 3, stages, ...lengths }), {
      code: 'SY_ERR_INVALID_ARGUMENT',
      message: /rateRps/,
    });
    assert.throws(() => parseWorkloadSpec({ kind: 'constant', ...lengths, maxRequests: 3 }), {
      code: 'SY_ERR_INVALID_ARGUMENT',
    });
    assert.throws(() => parseWorkloadSpec({ kind: 'constant', stages: [], ...lengths }), {
      code: 'SY_ERR_INVALID_ARGUMENT',
    });
  });

  it('goodput scaling scales every stage and the mean', () => {
    const spec = parseWorkloadSpec({ kind: 'constant', stages: parseStages('8:10,20:10'), ...lengths });
    const scaled = scaleWorkload(spec, 0.5);
    assert.equal(scaled.kind, 'constant');
    if (scaled.kind !== 'constant' || spec.kind !== 'constant') return;
    assert.deepEqual(scaled.stages, parseStages('4:10,10:10'));
    assert.equal(scaled.rateRps, 7);
    assert.equal(arrivals(scaled).length, 140);
    assert.deepEqual(scaleRenewalRate(spec, 1), spec);
  });

  it('labels a staged rate the way --stages writes it', () => {
    const spec = parseWorkloadSpec({ kind: 'constant', stages: parseStages('8:600,20:600'), ...lengths });
    assert.equal(spec.kind === 'constant' ? describeRate(spec) : '', 'stages 8:600,20:600 (req/s:s)');
  });
});

describe('parseStages', () => {
  it('reads rate:seconds pairs, decimals included', () => {
    assert.deepEqual(parseStages('8:600, 0.5:30'), [
      { rateRps: 8, durationS: 600 },
      { rateRps: 0.5, durationS: 30 },
    ]);
  });

  for (const bad of [
    '',
    '8',
    '8:',
    ':600',
    '8:600:1',
    '0:600',
    '8:-1',
    'x:600',
    '8:600,,20:600',
    'Infinity:1',
    '0x10:600',
    '8:0b11',
    '8:600,',
  ]) {
    it(`rejects '${bad}' naming the flag`, () => {
      assert.throws(() => parseStages(bad), { code: 'SY_ERR_INVALID_ARGUMENT', message: /stages/ });
    });
  }

  it('names the empty stage a stray comma leaves, by position', () => {
    assert.throws(() => parseStages('8:600,,20:600'), { message: /stage 2 of 3 is empty/ });
    assert.throws(() => parseStages('8:600,'), { message: /stage 2 of 2 is empty/ });
  });
});
