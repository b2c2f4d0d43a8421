/**
 * `sim --trace` refuses the generated workloads' flags, which a replay would ignore without a word
 * (`--trace F --rate 5` replayed the file at its own rate).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { resolveSettings } from './sim-command.ts';
import { fromCli, simFlags } from './sim-test-support.ts';

describe('sim --trace with a generated workload flag', () => {
  const cases: [string, string, unknown, RegExp][] = [
    ['rate', 'rate', 5, /--rate-scale K replays it K times as fast/],
    ['inputTokens', 'input-tokens', 100, /a trace gives each prompt length/],
    ['outputTokens', 'output-tokens', 100, /a trace gives each output length/],
    ['cv', 'cv', 2, /would ignore it$/],
    ['scale', 'scale', 2, /\(servegen\)/],
    ['startH', 'start-h', 1, /\(servegen\)/],
    ['rateMin', 'rate-min', 1, /\(sinusoid\)/],
    ['gapS', 'gap-s', 1, /\(bursts\)/],
  ];
  for (const [attribute, flag, value, instead] of cases)
    it(`refuses --${flag}, naming it`, () => {
      assert.throws(
        () =>
          resolveSettings(
            simFlags({ trace: 'sample:azure-conv', [attribute]: value }),
            {},
            fromCli(['trace', attribute]),
          ),
        (err: Error & { code?: string }) => {
          assert.equal(err.code, 'SY_ERR_INVALID_ARGUMENT');
          assert.match(
            err.message,
            new RegExp(`^--${flag} does not apply to a trace replay \\(--trace sample:azure-conv\\)`),
          );
          assert.match(err.message, instead);
          return true;
        },
      );
    });

  it('takes the flags a replay reads', () => {
    const s = resolveSettings(
      simFlags({ trace: 'sample:azure-conv', rateScale: 2, requests: 10, duration: 60 }),
      {},
      fromCli(['trace', 'rateScale', 'requests', 'duration']),
    );
    assert.equal(s.workload['kind'], 'trace');
  });
});
