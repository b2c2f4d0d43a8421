/**
 * A disaggregated `sim` run's JSON says how it was produced: its `pd` block names the `--pd-policy`
 * and carries the pair's `--pd-params` ({} when none), as the settings resolved from the flags give them.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { runTwin, writeOutputs } from '../twin/run.ts';
import { resolveSettings } from './sim-command.ts';
import { fromCli, simFlags } from './sim-test-support.ts';

const dir = mkdtempSync(join(tmpdir(), 'switchyard-sim-pd-json-'));

/** The `pd` block of the JSON a 1 prefill + 1 decode run with these P/D flags writes. */
function pdBlock(name: string, pdFlags: Record<string, string>): Record<string, unknown> {
  const extra = {
    workload: 'poisson',
    rate: 4,
    requests: 20,
    inputTokens: 512,
    outputTokens: 16,
    prefillInstances: 1,
    decodeInstances: 1,
    ...pdFlags,
  };
  const settings = resolveSettings(simFlags(extra), {}, fromCli(Object.keys(extra)));
  const path = join(dir, `${name}.json`);
  writeOutputs([{ result: runTwin(settings), goodput: undefined }], { json: path });
  const json = JSON.parse(readFileSync(path, 'utf8')) as { pd: Record<string, unknown> };
  return json.pd;
}

describe('sim JSON: the P/D block records the pair policy and its parameters', () => {
  it('names the pair policy and carries its --pd-params next to it', () => {
    const pd = pdBlock('params', { pdPolicy: 'mooncake', pdParams: '{"tpotSloMs":50,"decodeAt":"arrival"}' });
    assert.equal(pd['policy'], 'mooncake');
    assert.deepEqual(pd['params'], { decodeAt: 'arrival', tpotSloMs: 50 });
    assert.equal(pd['transfers'], 20);
  });

  it('an empty object when the pair runs with its defaults', () => {
    const pd = pdBlock('defaults', { pdPolicy: 'mooncake' });
    assert.equal(pd['policy'], 'mooncake');
    assert.deepEqual(pd['params'], {});
  });

  it('a routing policy picking the decode side (the default) is named, with no parameters', () => {
    const pd = pdBlock('routing', {});
    assert.equal(pd['policy'], 'least-request');
    assert.deepEqual(pd['params'], {});
  });
});
