/**
 * `--workload gamma` without `--cv`/`--burstiness` is cv 1 (Poisson) in both `sim` and `bench`,
 * and both say so: sim's header shows `cv 1`, bench's help states the default and its report names
 * the arrivals poisson.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { resolveBenchOptions } from '../../src/loadgen/options.ts';
import { syntheticPlan } from '../../src/loadgen/plan.ts';
import { runCli } from './support/cli.ts';

test('bench --help documents gamma without --cv as cv 1 (Poisson), as in sim', async () => {
  const help = await runCli(['bench', '--help']);
  assert.equal(help.code, 0, help.stderr);
  assert.match(
    help.stdout.replace(/\s+/g, ' '),
    /gamma \(shaped by --cv or --burstiness; without either cv 1, which is Poisson, as in sim/,
  );
  const sim = await runCli(['sim', '--workload', 'gamma', '--requests', '10', '--no-progress']);
  assert.equal(sim.code, 0, sim.stderr);
  assert.match(sim.stdout, /workload gamma 10 req\/s cv 1 /);
});

test('bench gamma without --cv plans the same arrivals as poisson and reports them as poisson', () => {
  const plan = (workload: string) => {
    const o = resolveBenchOptions({
      url: 'http://127.0.0.1:8000',
      workload,
      requests: '20',
      stream: true,
      ignoreEos: true,
      progress: false,
    });
    if (o.source.kind !== 'synthetic') throw new Error('expected a synthetic source');
    return syntheticPlan({ ...o.source, seed: o.seed });
  };
  const gamma = plan('gamma');
  const poisson = plan('poisson');
  assert.deepEqual(
    [...gamma.requests].map((r) => r.atMs),
    [...poisson.requests].map((r) => r.atMs),
  );
  assert.equal(gamma.workload.kind, 'poisson');
});
