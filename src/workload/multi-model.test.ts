import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { SwitchyardError } from '../core/errors.ts';
import { Rng } from '../core/rng.ts';
import { MODELS, modelSpec, parameterCount } from '../model/models.ts';
import { createWorkload, parseWorkloadSpec } from './create.ts';
import {
  DEFAULT_BASE_MIX,
  type MultiModelSpec,
  multiModelRatesRps,
  multiModelRoster,
  offMeansS,
  onOffTimesMs,
  scaleMultiModel,
} from './multi-model.ts';
import type { WorkloadSpecInput } from './spec.ts';
import type { TwinRequest } from './types.ts';

const lengths = { input: { kind: 'fixed', tokens: 100 }, output: { kind: 'fixed', tokens: 10 } } as const;

function spec(fields: Record<string, unknown>): WorkloadSpecInput {
  return { kind: 'multi-model', ...lengths, ...fields } as WorkloadSpecInput;
}

function validated(fields: Record<string, unknown>): MultiModelSpec {
  return parseWorkloadSpec(spec(fields)) as MultiModelSpec;
}

/** Arrival times (ms) of each served model, by id. */
function byModel(requests: Iterable<TwinRequest>): Map<string, number[]> {
  const out = new Map<string, number[]>();
  for (const r of requests) {
    const list = out.get(r.model) ?? [];
    list.push(r.arrivalMs);
    out.set(r.model, list);
  }
  return out;
}

/** The longest stretch (ms) without an arrival, counting from 0 and up to the end of the run. */
function longestGapMs(timesMs: readonly number[], endMs: number): number {
  let previous = 0;
  let longest = 0;
  for (const t of [...timesMs, endMs]) {
    longest = Math.max(longest, t - previous);
    previous = t;
  }
  return longest;
}

/** Fails with `code` and an error whose param is `param`. */
function assertRejects(fields: Record<string, unknown>, param: string, code = 'SY_ERR_INVALID_ARGUMENT') {
  assert.throws(
    () => createWorkload(spec(fields), new Rng(1)),
    (err: unknown) => {
      assert.ok(err instanceof SwitchyardError, String(err));
      assert.equal(err.code, code);
      assert.equal(err.details?.['param'], param, err.message);
      return true;
    },
  );
}

describe('multi-model roster', () => {
  it('names m00..m(N-1), padded to the width of N - 1', () => {
    const ids = (n: number) => multiModelRoster({ models: n }).map((m) => m.id);
    assert.deepEqual(ids(1), ['m0']);
    assert.deepEqual(ids(10).at(-1), 'm9');
    assert.deepEqual(ids(11).slice(0, 2), ['m00', 'm01']);
    assert.deepEqual(ids(64).at(-1), 'm63');
    assert.deepEqual(ids(1000).slice(0, 1), ['m000']);
    assert.equal(new Set(ids(1000)).size, 1000);
  });

  it('default bases are catalogue models, mostly 7-8B, some 13B, a few larger, m00 on llama-3.1-8b', () => {
    const roster = multiModelRoster({ models: 64 });
    assert.equal(roster[0]?.base, 'llama-3.1-8b');
    const billions = roster.map((m) => parameterCount(modelSpec(m.base)) / 1e9);
    const small = billions.filter((b) => b < 9).length;
    const mid = billions.filter((b) => b >= 9 && b < 20).length;
    const large = billions.filter((b) => b >= 20).length;
    assert.deepEqual([small, mid, large], [44, 16, 4]);
    for (const id of DEFAULT_BASE_MIX) assert.ok(MODELS.has(id), id);
  });

  it('explicit bases go round-robin; a model keeps its base when models are added', () => {
    const bases = ['qwen2.5-7b', 'opt-13b'];
    assert.deepEqual(
      multiModelRoster({ models: 5, bases }).map((m) => m.base),
      ['qwen2.5-7b', 'opt-13b', 'qwen2.5-7b', 'opt-13b', 'qwen2.5-7b'],
    );
    const eight = multiModelRoster({ models: 8 }).map((m) => m.base);
    assert.deepEqual(
      multiModelRoster({ models: 20 })
        .slice(0, 8)
        .map((m) => m.base),
      eight,
    );
  });
});

describe('multi-model rates', () => {
  it('splits rateRps by Zipf shares; exponent 0 is uniform; modelRatesRps as given', () => {
    const r = multiModelRatesRps(validated({ models: 4, rateRps: 25, durationS: 1 }));
    const h = 1 + 1 / 2 + 1 / 3 + 1 / 4;
    for (const [k, x] of r.entries()) assert.ok(Math.abs(x - 25 / (k + 1) / h) < 1e-12);
    assert.deepEqual(
      multiModelRatesRps(validated({ models: 4, rateRps: 8, zipfExponent: 0, durationS: 1 })),
      [2, 2, 2, 2],
    );
    assert.deepEqual(
      multiModelRatesRps(validated({ models: 2, modelRatesRps: [3, 1], durationS: 1 })),
      [3, 1],
    );
  });

  it('a goodput sweep scales the total or every per-model rate', () => {
    assert.equal(scaleMultiModel(validated({ models: 3, rateRps: 4, durationS: 1 }), 2.5).rateRps, 10);
    const perModel = scaleMultiModel(validated({ models: 2, modelRatesRps: [3, 1], durationS: 1 }), 2);
    assert.deepEqual(perModel.modelRatesRps, [6, 2]);
    assert.equal(perModel.rateRps, undefined);
  });

  it("off periods grow with rarity, anchored on m00's", () => {
    assert.deepEqual(offMeansS([4, 2, 1], 30), [30, 60, 120]);
  });

  it('an on/off process keeps its long-run rate and goes quiet for whole off periods', () => {
    // on 10 s at 3 req/s, off 20 s: 1 req/s on average
    const times = [...onOffTimesMs(3, 10, 20, 200_000_000, new Rng(7))];
    const rate = times.length / 200_000;
    assert.ok(Math.abs(rate - 1) < 0.02, `rate ${rate}`);
    const gapsOver40S = times.filter((t, i) => i > 0 && t - (times[i - 1] as number) > 40_000).length;
    // P(off > 40 s) = e^-2; about one off period per 30 s; so ~ 200,000 / 30 x 0.135 ~ 900 such gaps
    assert.ok(gapsOver40S > 600, `gaps over 40 s ${gapsOver40S}`);
  });

  it('request shares follow Zipf within a few standard deviations of the on/off counts', () => {
    const s = validated({ models: 16, rateRps: 10, durationS: 20_000, onMeanS: 10, offMeanS: 1 });
    const counts = byModel(createWorkload(s, new Rng(3)));
    const rates = multiModelRatesRps(s);
    const offs = offMeansS(rates, s.offMeanS);
    for (const [k, id] of multiModelRoster(s).map((m, i) => [i, m.id] as const)) {
      const rate = rates[k] as number;
      const expected = rate * (s.durationS as number);
      // Counts of an interrupted Poisson process: index of dispersion 1 + 2 λon α / (α + β)²,
      // α = 1 / on mean, β = 1 / off mean (Fischer and Meier-Hellstern, 1993).
      const alpha = 1 / s.onMeanS;
      const beta = 1 / (offs[k] as number);
      const onRate = (rate * (alpha + beta)) / beta;
      const dispersion = 1 + (2 * onRate * alpha) / (alpha + beta) ** 2;
      const got = counts.get(id)?.length ?? 0;
      assert.ok(
        Math.abs(got - expected) < 4 * Math.sqrt(dispersion * expected),
        `${id}: ${got} vs ${expected.toFixed(0)}`,
      );
    }
    const total = [...counts.values()].reduce((a, l) => a + l.length, 0);
    const topShare = (counts.get('m00')?.length ?? 0) / total;
    assert.ok(Math.abs(topShare - (rates[0] as number) / 10) < 0.01, `top share ${topShare}`);
  });
});

describe('multi-model arrivals', () => {
  it('is deterministic: the same seed gives the same requests, every iteration; another seed others', () => {
    const s = spec({ models: 12, rateRps: 5, durationS: 600 });
    const source = createWorkload(s, new Rng(11));
    const first = [...source];
    assert.ok(first.length > 1000);
    assert.deepEqual([...source], first);
    assert.deepEqual([...createWorkload(s, new Rng(11))], first);
    const other = [...createWorkload(s, new Rng(12))];
    assert.notDeepEqual(
      other.map((r) => r.arrivalMs),
      first.map((r) => r.arrivalMs),
    );
    for (let i = 1; i < first.length; i++)
      assert.ok((first[i] as TwinRequest).arrivalMs >= (first[i - 1] as TwinRequest).arrivalMs);
    assert.deepEqual(
      first.slice(0, 3).map((r) => r.id),
      ['r0', 'r1', 'r2'],
    );
  });

  it("appending a model leaves the others' arrivals unchanged (on-off and servegen)", () => {
    for (const source of ['on-off', 'servegen'] as const) {
      const three = byModel(
        createWorkload(spec({ models: 3, modelRatesRps: [2, 1, 0.5], durationS: 3600, source }), new Rng(5)),
      );
      const four = byModel(
        createWorkload(
          spec({ models: 4, modelRatesRps: [2, 1, 0.5, 0.25], durationS: 3600, source }),
          new Rng(5),
        ),
      );
      assert.ok((four.get('m3')?.length ?? 0) > 0);
      for (const id of ['m0', 'm1', 'm2']) {
        assert.ok((three.get(id)?.length ?? 0) > 100, `${source} ${id}`);
        assert.deepEqual(four.get(id), three.get(id), `${source} ${id}`);
      }
    }
  });

  it('tail models sit idle for long stretches, the top model does not (64 models, Zipf 1, a day)', () => {
    const dayMs = 86_400_000;
    const times = byModel(createWorkload(spec({ models: 64, rateRps: 2, durationS: 86_400 }), new Rng(2)));
    assert.ok(longestGapMs(times.get('m00') ?? [], dayMs) < 600_000, 'm00 never idles 10 min');
    for (const id of ['m48', 'm56', 'm63']) {
      const t = times.get(id) ?? [];
      assert.ok(t.length > 100, `${id} has requests`);
      assert.ok(longestGapMs(t, dayMs) > 3_600_000, `${id} idles for over an hour at a stretch`);
    }
    const idleOver10Min = [...times.values()].filter((t) => longestGapMs(t, dayMs) > 600_000).length;
    assert.ok(idleOver10Min >= 40, `${idleOver10Min} models idle > 10 min`);
  });

  it('servegen: model k follows the k-th busiest client, scaled to its share', () => {
    const s = spec({ models: 8, rateRps: 1, source: 'servegen', durationS: 86_400 });
    const requests = [...createWorkload(s, new Rng(4))];
    const rate = requests.length / 86_400;
    assert.ok(Math.abs(rate - 1) < 0.1, `rate ${rate}`);
    // m00 follows client 5, the sample's busiest, which is diurnal (about 4x peak to trough)
    const hourly = new Array<number>(24).fill(0);
    for (const r of requests)
      if (r.model === 'm0')
        hourly[Math.floor(r.arrivalMs / 3_600_000)] = (hourly[Math.floor(r.arrivalMs / 3_600_000)] ?? 0) + 1;
    assert.ok(Math.max(...hourly) > 2.5 * Math.min(...hourly), `hourly ${hourly.join(',')}`);
    const counts = byModel(requests);
    assert.ok((counts.get('m0')?.length ?? 0) > 2 * (counts.get('m7')?.length ?? 0));
  });

  it('stops at maxRequests when no duration is given', () => {
    const requests = [...createWorkload(spec({ models: 5, rateRps: 50, maxRequests: 250 }), new Rng(1))];
    assert.equal(requests.length, 250);
    assert.ok(requests.every((r) => r.inputTokens === 100 && r.trueOutputTokens === 10));
  });
});

describe('multi-model spec errors', () => {
  it('rejects bad counts, bases, rates and limits, naming the field', () => {
    assertRejects({ models: 0, rateRps: 1, durationS: 1 }, 'workload.models');
    assertRejects({ models: 1001, rateRps: 1, durationS: 1 }, 'workload.models');
    assertRejects({ models: 2.5, rateRps: 1, durationS: 1 }, 'workload.models');
    assertRejects(
      { models: 4, bases: ['llama-3.1-8b', 'gpt-9'], rateRps: 1, durationS: 1 },
      'workload.bases.1',
    );
    assertRejects(
      { models: 1, bases: ['qwen2.5-7b', 'opt-13b'], rateRps: 1, durationS: 1 },
      'workload.bases',
    );
    assertRejects({ models: 2, durationS: 1 }, 'workload.rateRps');
    assertRejects({ models: 2, rateRps: 1, modelRatesRps: [1, 1], durationS: 1 }, 'workload.rateRps');
    assertRejects({ models: 3, modelRatesRps: [1, 1], durationS: 1 }, 'workload.modelRatesRps');
    assertRejects({ models: 2, modelRatesRps: [1, 0], durationS: 1 }, 'workload.modelRatesRps.1');
    assertRejects({ models: 2, rateRps: 1, zipfExponent: -1, durationS: 1 }, 'workload.zipfExponent');
    assertRejects({ models: 2, rateRps: 1 }, 'workload.maxRequests');
    assertRejects({ models: 2, rateRps: 1, durationS: 1, model: 'x' }, 'workload');
    assertRejects({ models: 2, rateRps: 1, durationS: 1, source: 'azure' }, 'workload.source');
  });

  it('servegen: a start past the file or a missing file fails before any arrival', () => {
    assertRejects({ models: 2, rateRps: 1, source: 'servegen', startH: 30 }, 'startH (--start-h)');
    assertRejects(
      { models: 2, rateRps: 1, source: 'servegen', servegenFile: '/nonexistent/sg.csv' },
      'servegen-file',
      'SY_ERR_NOT_FOUND',
    );
  });
});
