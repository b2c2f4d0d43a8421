/**
 * Rows with 0 prompt or 0 output tokens (BurstGPT's failed requests, a length file's empty row)
 * are served as 1 token, in trace replay and in empirical lengths; before, the run crashed on the
 * engine's "inputTokens must be a positive integer" assertion with a stack trace.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { resolveSettings } from '../cli/sim-command.ts';
import { fromCli, simFlags } from '../cli/sim-test-support.ts';
import { Rng } from '../core/rng.ts';
import { runTwin } from '../twin/run.ts';
import { createWorkload } from './create.ts';
import { cachedLengthsLoader } from './lengths.ts';

const dir = mkdtempSync(join(tmpdir(), 'sy-zero-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const ZEROS = [
  'arrived_at,num_prefill_tokens,num_decode_tokens',
  '0,0,10',
  '0.1,100,0',
  '0.2,0,0',
  '0.3,100,10',
].join('\n');

describe('rows with 0 tokens', () => {
  it('a trace replays them as 1-token prompts and answers, and the run completes', () => {
    const trace = join(dir, 'zeros.csv');
    writeFileSync(trace, `${ZEROS}\n`);
    const requests = [...createWorkload({ kind: 'trace', trace }, new Rng(1))];
    assert.deepEqual(
      requests.map((r) => [r.inputTokens, r.trueOutputTokens]),
      [
        [1, 10],
        [100, 1],
        [1, 1],
        [100, 10],
      ],
    );
    const settings = resolveSettings(simFlags({ trace, instances: 1 }), {}, fromCli(['trace', 'instances']));
    const result = runTwin(settings);
    assert.equal(result.summary.completed, 4);
  });

  it('empirical lengths draw them as 1', () => {
    const load = cachedLengthsLoader(() => [
      { inputTokens: 0, outputTokens: 5 },
      { inputTokens: 7, outputTokens: 0 },
    ]);
    assert.deepEqual(load('any.csv', undefined), [
      { inputTokens: 1, outputTokens: 5 },
      { inputTokens: 7, outputTokens: 1 },
    ]);
    const unchanged = [{ inputTokens: 3, outputTokens: 4 }];
    assert.equal(cachedLengthsLoader(() => unchanged)('x', undefined), unchanged);
  });
});
