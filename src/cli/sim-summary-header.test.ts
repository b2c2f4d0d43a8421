/**
 * The header line of `switchyard sim`'s summary table: a P/D run names the prefill side's policy
 * and the decode side's (it named the prefill side's alone, though `--pd-policy` picks the decode
 * instance); a colocated run names its one policy as before.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { formatSummaryTable } from '../twin/report/table.ts';
import { runExperiment, runTwin } from '../twin/run.ts';
import { resolveSettings, summaryForTable } from './sim-command.ts';
import { comparisonHeader } from './sim-header.ts';
import { fromCli, simFlags } from './sim-test-support.ts';

/** The table's first line for a run of 20 short requests with `extra` flags given. */
function header(extra: Record<string, unknown>): string {
  const given = { requests: 20, inputTokens: 256, outputTokens: 8, ...extra };
  const result = runTwin(resolveSettings(simFlags(given), {}, fromCli(Object.keys(given))));
  return formatSummaryTable(summaryForTable(result)).split('\n')[0] ?? '';
}

describe('sim summary header', () => {
  it('a P/D run names the prefill policy and the decode policy', () => {
    const line = header({
      prefillInstances: 2,
      decodeInstances: 2,
      policy: 'round-robin',
      pdPolicy: 'least-kv',
    });
    assert.match(line, /^policy round-robin \(prefill\) \/ least-kv \(decode\) · /);
  });

  it("a pair policy: each side's half", () => {
    const line = header({ prefillInstances: 1, decodeInstances: 1, pdPolicy: 'mooncake' });
    assert.match(line, /^policy mooncake\/prefill \(prefill\) \/ mooncake \(decode\) · /);
  });

  it('one instance is singular, more are plural', () => {
    assert.match(header({ instances: 1 }), / · 1 instance$/);
    assert.match(header({ instances: 2 }), / · 2 instances$/);
  });

  it('a comparison header says 1 instance for one instance', () => {
    const given = { requests: 20, inputTokens: 256, outputTokens: 8, instances: 1 };
    const settings = resolveSettings(simFlags(given), {}, fromCli(Object.keys(given)));
    const runs = runExperiment(settings, ['round-robin', 'least-request'], { goodput: false });
    assert.match(comparisonHeader(settings, runs), / · 1 instance \(1x /);
  });

  it('a colocated run names its one policy', () => {
    assert.match(header({ policy: 'least-kv' }), /^policy least-kv · /);
  });
});
