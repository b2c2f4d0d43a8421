/**
 * A case's run reports how far it has got (requests ended of its total), so `switchyard fidelity`
 * on one long staged case draws a bar on a terminal; watching changes no figure.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseFidelityCase } from './case.ts';
import { replayOpenLoop, runCase } from './run-case.ts';

function staged(maxConcurrency?: number) {
  const stage = { rateRps: 40, durationS: 120, measured: { ttftMs: { mean: 40 }, saturated: false } };
  return parseFidelityCase({
    name: 'progress',
    source: { title: 'test', url: 'https://example.org', engine: 'vLLM v0.15.1' },
    model: 'meta-llama/Llama-2-7b-hf',
    gpu: 'H100',
    engine: { maxNumBatchedTokens: 2048, maxNumSeqs: 128 },
    workload: {
      arrival: 'constant',
      stages: [stage, stage],
      ...(maxConcurrency !== undefined ? { maxConcurrency } : {}),
      input: { kind: 'uniform', lo: 570, hi: 790 },
      output: { kind: 'fixed', tokens: 250 },
    },
  });
}

describe('progress of one case', () => {
  for (const cap of [undefined, 64]) {
    it(`counts requests ended up to the case's total${cap !== undefined ? ', with a client cap (whose polls are not requests)' : ''}`, () => {
      const c = staged(cap);
      const seen: [number, number, number][] = [];
      const watched = runCase(c, (ended, simulatedMs, total) => seen.push([ended, simulatedMs, total]));
      assert.ok(seen.length > 1, `${seen.length} reports`);
      for (const [k, [ended, simulatedMs, total]] of seen.entries()) {
        assert.equal(total, 9600);
        assert.ok(ended >= 0 && ended <= total, `${ended} of ${total}`);
        if (k > 0) {
          const [endedBefore, msBefore] = seen[k - 1] as [number, number, number];
          assert.ok(ended >= endedBefore && simulatedMs >= msBefore);
        }
      }
      assert.equal(seen.at(-1)?.[0], 9600, 'the last report has every request ended');
      assert.deepEqual(watched, runCase(c));
    });
  }
});

describe('progress of a saturated case', () => {
  it('goes on counting while the queue drains after the last arrival', () => {
    // 200 req/s of 250-token answers on one H100: far past what it serves, so most requests end
    // after the last one has arrived.
    const c = parseFidelityCase({
      name: 'drain',
      source: { title: 'test', url: 'https://example.org', engine: 'vLLM v0.15.1' },
      model: 'meta-llama/Llama-2-7b-hf',
      gpu: 'H100',
      engine: { maxNumBatchedTokens: 2048, maxNumSeqs: 128 },
      workload: {
        arrival: 'constant',
        rateRps: 200,
        durationS: 10,
        input: { kind: 'fixed', tokens: 600 },
        output: { kind: 'fixed', tokens: 250 },
      },
      measured: { ttftMs: { mean: 40 }, saturated: true },
    });
    const seen: [number, number][] = [];
    const { log } = replayOpenLoop(c, (ended, simulatedMs) => seen.push([ended, simulatedMs]));
    const lastArrivalMs = Math.max(...log.arrivalMs);
    const endedAtLastArrival = Array.from(log.finishMs).filter((ms) => ms <= lastArrivalMs).length;
    assert.ok(
      endedAtLastArrival < log.size / 2,
      `${endedAtLastArrival} of ${log.size} ended by the last arrival`,
    );
    const draining = seen.filter(([ended, ms]) => ms > lastArrivalMs && ended < log.size);
    // About 200 reports a run: well over 50 while more than half of the requests drain.
    assert.ok(draining.length > 50, `${draining.length} reports while draining`);
    assert.equal(seen.at(-1)?.[0], log.size);
  });
});
