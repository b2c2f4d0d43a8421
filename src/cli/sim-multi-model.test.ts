import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseWorkloadSpec } from '../workload/create.ts';
import { resolveSettings } from './sim-command.ts';
import { fromCli, simFlags } from './sim-test-support.ts';

const flags = simFlags;

describe('sim --workload multi-model', () => {
  it('builds the spec from --models, --zipf and --rate, one hour by default', () => {
    const s = resolveSettings(
      flags({ workload: 'multi-model', models: 32, zipf: 0.8, rate: 12 }),
      {},
      fromCli(['workload', 'models', 'zipf', 'rate']),
    );
    assert.deepEqual(s.workload, {
      kind: 'multi-model',
      models: 32,
      zipfExponent: 0.8,
      rateRps: 12,
      input: { kind: 'fixed', tokens: 1024 },
      output: { kind: 'fixed', tokens: 128 },
      durationS: 3600,
    });
    assert.equal(parseWorkloadSpec(s.workload).kind, 'multi-model');
  });

  it("--models and --zipf override a config file's multi-model workload", () => {
    const file = {
      workload: {
        kind: 'multi-model',
        models: 4,
        rateRps: 3,
        source: 'servegen',
        input: { kind: 'fixed', tokens: 10 },
        output: { kind: 'fixed', tokens: 5 },
      },
    };
    const s = resolveSettings(flags({ models: 16, zipf: 0 }), file, fromCli(['models', 'zipf']));
    assert.equal(s.workload['models'], 16);
    assert.equal(s.workload['zipfExponent'], 0);
    assert.equal(s.workload['source'], 'servegen');
  });

  it('refuses --models without the kind, and --stages or --cv with it', () => {
    const cases: [Record<string, unknown>, RegExp][] = [
      [{ workload: 'gamma', cv: 2, models: 4 }, /--models only with --workload multi-model/],
      [{ trace: 'sample:azure-conv', zipf: 1 }, /--zipf only with --workload multi-model/],
      [{ workload: 'multi-model', models: 4, cv: 2 }, /no --cv with --workload multi-model/],
      [{ workload: 'multi-model', models: 4, stages: [] }, /no --stages with --workload multi-model/],
      [{ workload: 'multi-model', models: 4, periodS: 60 }, /--period-s only with --workload sinusoid/],
    ];
    for (const [extra, message] of cases)
      assert.throws(() => resolveSettings(flags(extra), {}, fromCli(Object.keys(extra))), {
        code: 'SY_ERR_INVALID_ARGUMENT',
        message,
      });
  });
});
