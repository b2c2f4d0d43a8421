import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { type BenchFlags, resolveBenchOptions } from './options.ts';
import { syntheticPlan } from './plan.ts';
import { describeWorkload } from './report.ts';

const base: BenchFlags = { url: 'http://127.0.0.1:8000', stream: true, ignoreEos: true, progress: false };

function plannedTimes(flags: Partial<BenchFlags>): number[] {
  const o = resolveBenchOptions({ ...base, ...flags });
  if (o.source.kind !== 'synthetic') throw new Error('expected a synthetic source');
  const plan = syntheticPlan({ ...o.source, seed: o.seed });
  return [...plan.requests].map((r) => r.atMs);
}

describe('bench --workload constant and --stages', () => {
  it('constant arrivals go out every 1 / rate seconds from 0', () => {
    assert.deepEqual(
      plannedTimes({ workload: 'constant', rate: '4', requests: '5' }),
      [0, 250, 500, 750, 1000],
    );
  });

  it('stages hold rate x seconds requests each and end the plan with the last stage', () => {
    const t = plannedTimes({ workload: 'constant', stages: '2:10,5:4' });
    assert.equal(t.length, 2 * 10 + 5 * 4);
    assert.equal(t[20], 10_000);
    assert.ok((t.at(-1) as number) < 14_000);
  });

  it('Poisson stages follow each rate', () => {
    const t = plannedTimes({ stages: '5:200,40:100' });
    const first = t.filter((x) => x < 200_000).length / 200;
    const second = t.filter((x) => x >= 200_000).length / 100;
    assert.ok(Math.abs(first - 5) < 0.8, `first stage ${first} req/s`);
    assert.ok(Math.abs(second - 40) < 3, `second stage ${second} req/s`);
  });

  it('reports the stages and the kind', () => {
    const o = resolveBenchOptions({ ...base, workload: 'constant', stages: '8:600,20:600' });
    if (o.source.kind !== 'synthetic') throw new Error('expected a synthetic source');
    const plan = syntheticPlan({ ...o.source, seed: 1 });
    assert.equal(plan.workload['kind'], 'constant');
    assert.equal(plan.workload['rateRps'], 14);
    assert.match(describeWorkload(plan.workload), /^constant stages 8:600,20:600 \(req\/s:s\)/);
  });

  it('reports the cv that --burstiness gives to three significant digits', () => {
    const o = resolveBenchOptions({ ...base, rate: '20', burstiness: '0.5', requests: '10' });
    if (o.source.kind !== 'synthetic') throw new Error('expected a synthetic source');
    const plan = syntheticPlan({ ...o.source, seed: 1 });
    assert.match(describeWorkload(plan.workload), /^gamma 20 req\/s cv 1\.41 · /);
  });

  it('refuses what does not go together, naming the flag', () => {
    const bad: Partial<BenchFlags>[] = [
      { workload: 'constant', cv: '2' },
      { workload: 'constant', burstiness: '0.5' },
      { workload: 'poisson', cv: '2' },
      { workload: 'uniform' },
      { stages: '8:600', rate: '3' },
      { stages: '8:x' },
      { workload: 'constant', rate: 'inf', requests: '3' },
      { trace: 'sample:azure-conv', stages: '1:1' },
    ];
    for (const flags of bad) {
      assert.throws(
        () => resolveBenchOptions({ ...base, ...flags }),
        (e: unknown) => {
          const code = (e as { code?: string }).code;
          return code === 'SY_ERR_INVALID_ARGUMENT' || code === 'SY_ERR_UNKNOWN_NAME';
        },
        JSON.stringify(flags),
      );
    }
  });

  it('leaves the default Poisson plan as it was', () => {
    const t = plannedTimes({ rate: '10', requests: '50' });
    assert.equal(t[0], 0);
    assert.equal(t.length, 50);
    assert.deepEqual(t, plannedTimes({ rate: '10', requests: '50' }));
  });
});
