/**
 * bench --trace on a file in the wrong time unit (a Mooncake file stamped in seconds) warns once,
 * before anything is sent, naming the --rate-scale that fixes it; a real sample does not warn.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { writeSecondsStampedMooncake } from '../workload/traces/seconds-stamped-test-support.ts';
import { buildPlan, planUnitWarning, runBench } from './bench.ts';
import { type BenchFlags, resolveBenchOptions } from './options.ts';

const dir = mkdtempSync(join(tmpdir(), 'sy-bench-trace-unit-'));
after(() => rmSync(dir, { recursive: true, force: true }));

// Port 1 on loopback: nothing listens, so the run stops at GET /v1/models, after the warning.
const BASE: BenchFlags = { url: 'http://127.0.0.1:1', stream: true, ignoreEos: true, progress: false };

test('bench --trace: a seconds-stamped Mooncake file warns once before the run, naming --rate-scale 0.001', async () => {
  const file = writeSecondsStampedMooncake(dir);
  const warnings: string[] = [];
  const options = resolveBenchOptions({ ...BASE, trace: file });
  await assert.rejects(
    runBench(options, { onWarning: (line) => warnings.push(line) }),
    /cannot reach http:\/\/127.0.0.1:1/,
  );
  assert.equal(warnings.length, 1);
  assert.match(
    warnings[0] ?? '',
    /conv-seconds\.jsonl: 200 requests over 0\.0995 s, 2000 req\/s is implausibly dense/,
  );
  assert.match(warnings[0] ?? '', /--rate-scale 0\.001 replays it as meant/);
  const fixed = resolveBenchOptions({ ...BASE, trace: file, rateScale: '0.001' });
  assert.equal(planUnitWarning(fixed, buildPlan(fixed).plan), undefined);
});

test('bench --trace: the bundled samples do not warn', () => {
  for (const trace of ['sample:mooncake-conversation', 'sample:azure-conv']) {
    for (const requests of [undefined, 100]) {
      const options = resolveBenchOptions({
        ...BASE,
        trace,
        ...(requests === undefined ? {} : { requests: String(requests) }),
      });
      assert.equal(planUnitWarning(options, buildPlan(options).plan), undefined, `${trace} ${requests}`);
    }
  }
});
