/**
 * A sim whose workload sends no request (a ServeGen span where every client's rate is 0, a trace
 * slice past the file's end) is refused naming the workload, rather than reporting zero latencies,
 * 0% SLO attainment and a goodput of 0 req/s as if they were results.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { assertWorkloadSends, runTwin } from '../twin/run.ts';
import { resolveSettings } from './sim-command.ts';
import { fromCli, simFlags } from './sim-test-support.ts';

const dir = mkdtempSync(join(tmpdir(), 'sy-empty-workload-'));
after(() => rmSync(dir, { recursive: true, force: true }));

/** One client, silent for its first hour, then 2 req/s. */
const servegen = join(dir, 'windows.csv');
writeFileSync(
  servegen,
  [
    'client,timestamp_s,rate,cv,pattern,pat_arg1,pat_arg2',
    ...Array.from({ length: 12 }, (_, k) => `7,${k * 600},${k < 6 ? 0 : 2},1,Exponential,,`),
  ].join('\n'),
);

function servegenSettings(startH: number) {
  return resolveSettings(
    simFlags({ servegenFile: servegen, startH, duration: 1800 }),
    {},
    fromCli(['servegenFile', 'startH', 'duration']),
  );
}

const NO_REQUESTS = {
  code: 'SY_ERR_INVALID_ARGUMENT',
  message: /^the workload sends no requests \(servegen .*windows\.csv/,
};

describe('a workload that sends nothing', () => {
  it('a ServeGen span of rate 0 is refused before any run; a busy one passes', () => {
    assert.throws(() => assertWorkloadSends(servegenSettings(0)), NO_REQUESTS);
    assertWorkloadSends(servegenSettings(1));
    assert.ok(runTwin(servegenSettings(1)).summary.requests > 0);
  });

  it('a trace slice past the end of the file is refused when the replay is counted', () => {
    const settings = resolveSettings(
      simFlags({}),
      { workload: { kind: 'trace', trace: 'sample:azure-conv', startS: 100_000 } },
      fromCli([]),
    );
    assert.throws(() => runTwin(settings), {
      code: 'SY_ERR_INVALID_ARGUMENT',
      message: /^the workload sends no requests \(trace sample:azure-conv \(0 requests\)/,
    });
  });
});
