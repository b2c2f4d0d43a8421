import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseWorkloadSpec } from '../workload/create.ts';
import { parseStages } from '../workload/synthetic.ts';
import { resolveSettings } from './sim-command.ts';
import { fromCli, simFlags } from './sim-test-support.ts';

const flags = simFlags;

describe('sim --workload constant and --stages', () => {
  it('stages replace the rate and bound the run (no default request cap)', () => {
    const stages = parseStages('8:600,20:600');
    const s = resolveSettings(flags({ workload: 'constant', stages }), {}, fromCli(['workload', 'stages']));
    assert.deepEqual(s.workload, {
      kind: 'constant',
      stages,
      input: { kind: 'fixed', tokens: 1024 },
      output: { kind: 'fixed', tokens: 128 },
    });
    const spec = parseWorkloadSpec(s.workload);
    assert.equal(spec.kind === 'constant' ? spec.rateRps : 0, 14);
  });

  it('a constant workload at one rate keeps the default request cap', () => {
    const s = resolveSettings(flags({ workload: 'constant', rate: 5 }), {}, fromCli(['workload', 'rate']));
    assert.equal(s.workload['rateRps'], 5);
    assert.equal(s.workload['maxRequests'], 1000);
  });

  it('--stages over a config file workload replaces its rate; --rate replaces its stages', () => {
    const file = {
      workload: {
        kind: 'poisson',
        rateRps: 3,
        input: { kind: 'fixed', tokens: 10 },
        output: { kind: 'fixed', tokens: 5 },
      },
    };
    const stages = parseStages('1:10');
    const staged = resolveSettings(flags({ stages }), file, fromCli(['stages']));
    assert.deepEqual(staged.workload['stages'], stages);
    assert.equal('rateRps' in staged.workload, false);
    assert.ok(parseWorkloadSpec(staged.workload));
    const fileStaged = { workload: { ...file.workload, rateRps: undefined, stages } };
    const rated = resolveSettings(flags({ rate: 7 }), fileStaged, fromCli(['rate']));
    assert.equal(rated.workload['rateRps'], 7);
    assert.equal('stages' in rated.workload, false);
  });

  it('refuses --cv with constant arrivals', () => {
    assert.throws(
      () => resolveSettings(flags({ workload: 'constant', cv: 2 }), {}, fromCli(['workload', 'cv'])),
      { code: 'SY_ERR_INVALID_ARGUMENT', message: /cv/ },
    );
  });
});
