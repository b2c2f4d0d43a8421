import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { InvalidArgumentError } from 'commander';
import {
  type AutoscalerRow,
  formatAutoscalerTable,
  parseAutoscalerList,
  poolSize,
  xStatic,
} from './sim-autoscaler-compare.ts';

function row(name: string, gpuHours: number): AutoscalerRow {
  return {
    name,
    gpuHours,
    sloBoth: 0.99,
    sloTtft: 0.995,
    sloTpot: 1,
    ttftMsP99: 1234,
    tpotMsP99: Number.POSITIVE_INFINITY,
    coldStarts: 3,
    peakReady: 4,
  };
}

describe('autoscaler comparison', () => {
  it('divides each GPU-hours by static, wherever static is in the list', () => {
    const ratios = xStatic([row('kpa', 1.5), row('static', 6), row('slo-planner', 3)]);
    assert.deepEqual(ratios, [0.25, 1, 0.5]);
  });

  it('has no ratio without static, and none to divide by when static billed nothing', () => {
    assert.equal(xStatic([row('kpa', 1), row('apa', 2)]), undefined);
    const zero = xStatic([row('static', 0), row('kpa', 1)]) as number[];
    assert.ok(zero.every(Number.isNaN));
  });

  it('prints the x static column only when static ran', () => {
    const withStatic = formatAutoscalerTable([row('kpa', 1.5), row('static', 6)]);
    assert.match(withStatic, /static/);
    assert.match(withStatic, /kpa\s+│\s+1\.500\s+│\s+0\.25x\s+│\s+99\.0%\s+│\s+99\.5%\s+│\s+100\.0%/);
    assert.match(withStatic, /│\s+∞\s+│\s+3\s+│\s+4\s+│/);
    const without = formatAutoscalerTable([row('kpa', 1.5), row('apa', 2)]);
    assert.doesNotMatch(without, /x\s*│|static/);
    assert.match(without, /kpa\s+│\s+1\.500\s+│\s+99\.0%/);
  });

  it('names the pool in the header as a range, a fixed count, or one instance', () => {
    assert.equal(poolSize(1, 24), '1-24 instances');
    assert.equal(poolSize(4, 4), '4 instances');
    assert.equal(poolSize(0, 1), '0-1 instances');
    assert.equal(poolSize(1, 1), '1 instance');
  });

  it('takes one name or several, each known and once', () => {
    assert.equal(parseAutoscalerList('kpa'), 'kpa');
    assert.equal(parseAutoscalerList(' kpa, static ,slo-planner'), 'kpa,static,slo-planner');
    assert.throws(
      () => parseAutoscalerList('kpa,nope'),
      (e: unknown) => {
        assert.ok(e instanceof InvalidArgumentError);
        assert.match(e.message, /'nope' is not an autoscaler.*kpa/);
        return true;
      },
    );
    assert.throws(() => parseAutoscalerList('kpa,kpa'), /twice/);
    assert.throws(() => parseAutoscalerList(','), InvalidArgumentError);
  });
});
