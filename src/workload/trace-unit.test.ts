/**
 * A trace in the wrong time unit (a Mooncake file stamped in seconds, a Vidur file in ms) replays
 * 1000x too dense or too sparse: the rule that warns about it, and the header that shows what a
 * trace replay sends in place of its --requests limit.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { describeWorkload } from '../twin/run.ts';
import { parseWorkloadSpec, type ReplayStats, replayStats, traceReplay, traceUnitWarning } from './create.ts';

/** n arrivals `gapMs` apart. */
function evenly(n: number, gapMs: number): number[] {
  return Array.from({ length: n }, (_, i) => i * gapMs);
}

test('replayStats: count, first-to-last span, and (n - 1) / span', () => {
  assert.deepEqual(replayStats(evenly(6, 1000)), { requests: 6, spanS: 5, rateRps: 1 });
  assert.deepEqual(replayStats([]), { requests: 0, spanS: 0, rateRps: 0 });
  assert.deepEqual(replayStats([7]), { requests: 1, spanS: 0, rateRps: 0 });
  assert.equal(replayStats([3, 3, 3]).rateRps, Number.POSITIVE_INFINITY);
});

test('too dense for ms stamps: a Mooncake file stamped in seconds warns, naming --rate-scale 0.001', () => {
  // 3 req/s stamped in seconds and read as ms: 3000 req/s.
  const stats = replayStats(evenly(300, 1000 / 3).map((ms) => ms / 1000));
  const warning = traceUnitWarning('conv-s.jsonl', 'mooncake', stats, 1);
  assert.ok(warning !== undefined);
  assert.match(warning, /conv-s\.jsonl/);
  assert.match(warning, /300 requests over 0\.0997 s, 3000 req\/s/);
  assert.match(warning, /dense for mooncake stamps in ms; if they are in seconds, --rate-scale 0\.001 /);
  // The fix keeps a scale already given: 2x on top of the unit fix.
  assert.match(traceUnitWarning('f', 'mooncake', stats, 2) ?? '', /--rate-scale 0\.002 /);
  // Already rescaled (what is replayed is 3 req/s): no warning.
  assert.equal(traceUnitWarning('f', 'mooncake', replayStats(evenly(300, 1000 / 3)), 0.001), undefined);
});

test('too dense: 100 requests all within 1 s warn even under 1,000 req/s', () => {
  const stats = replayStats(evenly(100, 10)); // 100 req/s, 0.99 s
  assert.ok(stats.rateRps < 1000);
  assert.match(traceUnitWarning('f', 'mooncake', stats, 1) ?? '', /dense/);
  assert.match(
    traceUnitWarning('f', 'vidur', stats, 1) ?? '',
    /dense for vidur stamps in s.*--rate-scale 0\.001 /,
  );
});

test('too sparse for s stamps: a Vidur file stamped in ms warns, naming --rate-scale 1000', () => {
  // 5 req/s stamped in ms and read as s: 0.005 req/s.
  const stats = replayStats(evenly(200, 200 * 1000));
  const warning = traceUnitWarning('splitwise-ms.csv', 'vidur', stats, 1);
  assert.match(
    warning ?? '',
    /splitwise-ms\.csv: 200 requests over 39800 s, 0\.005 req\/s is implausibly sparse/,
  );
  assert.match(warning ?? '', /if they are in milliseconds, --rate-scale 1000 replays it as meant/);
  assert.match(traceUnitWarning('f', 'mooncake', stats, 1) ?? '', /in microseconds, --rate-scale 1000 /);
});

test('no warning: under 100 requests, plausible rates, Azure wall-clock stamps, or the boundaries', () => {
  assert.equal(traceUnitWarning('f', 'mooncake', replayStats(evenly(99, 0.1)), 1), undefined);
  assert.equal(traceUnitWarning('f', 'mooncake', replayStats(evenly(2000, 1)), 1), undefined); // 1000 req/s over 2 s
  assert.equal(traceUnitWarning('f', 'vidur', replayStats(evenly(100, 60_000)), 1), undefined); // 1 a minute
  assert.equal(traceUnitWarning('f', 'vidur', replayStats(evenly(200, 200)), 1), undefined); // 5 req/s
  assert.equal(traceUnitWarning('f', 'azure', replayStats(evenly(300, 0.1)), 1), undefined);
  assert.equal(traceUnitWarning('f', 'azure', replayStats(evenly(300, 10_000_000)), 1), undefined);
});

test('the bundled samples replay at plausible rates: no warning, whole or in part', () => {
  for (const trace of ['sample:mooncake-conversation', 'sample:azure-conv']) {
    for (const maxRequests of [undefined, 100]) {
      const spec = parseWorkloadSpec({
        kind: 'trace',
        trace,
        ...(maxRequests === undefined ? {} : { maxRequests }),
      });
      assert.equal(spec.kind, 'trace');
      if (spec.kind !== 'trace') continue;
      const replay = traceReplay(spec);
      const stats = replayStats([...replay.source].map((r) => r.arrivalMs));
      assert.equal(traceUnitWarning(trace, replay.format, stats, 1), undefined, `${trace} ${maxRequests}`);
    }
  }
});

test('describeWorkload: a trace replay shows what it sends, not the --requests limit', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'sy-trace-unit-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'six.csv');
  writeFileSync(
    file,
    `arrived_at,num_prefill_tokens,num_decode_tokens\n${evenly(6, 1).join(',10,5\n')},10,5\n`,
  );
  const spec = parseWorkloadSpec({ kind: 'trace', trace: file, maxRequests: 2000 });
  assert.equal(spec.kind, 'trace');
  if (spec.kind !== 'trace') return;
  const stats: ReplayStats = replayStats([...traceReplay(spec).source].map((r) => r.arrivalMs));
  const label = describeWorkload(spec, stats);
  assert.match(label, /\(6 requests over 5 s, 1 req\/s\)/);
  assert.doesNotMatch(label, /2000 requests/);
  // Without what was replayed (as before), the limit is what there is to show.
  assert.match(describeWorkload(spec), /\(2000 requests\)/);
});
