import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { Gauge, Histogram, Registry } from 'prom-client';
import { SwitchyardError } from '../../core/errors.ts';
import { ENGINE_SIGNAL_METRICS } from './engine-signals.ts';
import { parsePrometheusText, type Sample } from './prometheus-text.ts';

const fixture = (name: string) => readFileSync(new URL(`./fixtures/${name}`, import.meta.url), 'utf8');

/** Samples as plain objects (labels have a null prototype), for deepEqual against literals. */
const plain = (samples: readonly Sample[]) => samples.map((s) => ({ ...s, labels: { ...s.labels } }));

// --- a reference writer, for the property tests ---------------------------------------------

const escapeLabel = (v: string) => v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');

function formatValue(v: number): string {
  if (Number.isNaN(v)) return 'NaN';
  if (v === Number.POSITIVE_INFINITY) return '+Inf';
  if (v === Number.NEGATIVE_INFINITY) return '-Inf';
  return String(v);
}

function writeLine(s: Sample, spacing: string): string {
  const entries = Object.entries(s.labels);
  const labels =
    entries.length === 0
      ? ''
      : `{${entries.map(([k, v]) => `${k}${spacing}=${spacing}"${escapeLabel(v)}"`).join(`,${spacing}`)}}`;
  const ts = s.timestampMs === undefined ? '' : ` ${s.timestampMs}`;
  return `${s.name}${labels}${spacing} ${formatValue(s.value)}${ts}`;
}

const metricName = fc.stringMatching(/^[a-zA-Z_:][a-zA-Z0-9_:]{0,30}$/);
const labelName = fc.stringMatching(/^[a-zA-Z_][a-zA-Z0-9_]{0,15}$/);
const labelValue = fc.string({
  unit: fc.oneof(
    fc.constantFrom('"', '\\', '\n', '{', '}', ',', '=', ' ', '#'),
    fc.string({ minLength: 1, maxLength: 1 }),
    fc.string({ unit: 'grapheme', minLength: 1, maxLength: 1 }),
  ),
  maxLength: 20,
});
const value = fc.oneof(
  fc.double({ noNaN: false }).filter((v) => !Object.is(v, -0)),
  fc.integer({ min: -1e6, max: 1e9 }),
  fc.constantFrom(Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY, 0, 1e-9, 8.128902e6),
);
const sample: fc.Arbitrary<Sample> = fc
  .record({
    name: metricName,
    labels: fc.dictionary(labelName, labelValue, { maxKeys: 4 }),
    value,
    timestampMs: fc.option(fc.integer({ min: 0, max: 2 ** 45 }), { nil: undefined }),
  })
  .map(({ timestampMs, ...rest }) => (timestampMs === undefined ? rest : { ...rest, timestampMs }));

describe('parsePrometheusText', () => {
  it('reads back whatever a conforming writer wrote (property)', () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.tuple(sample, fc.constantFrom('', ' ', '\t'), fc.constantFrom('\n', '\r\n'), fc.boolean()),
          { maxLength: 20 },
        ),
        (lines) => {
          let text = '';
          for (const [s, spacing, eol, withComment] of lines) {
            if (withComment)
              text += `# HELP ${s.name} help with "quotes" and \\ escapes${eol}# TYPE ${s.name} gauge${eol}${eol}`;
            text += writeLine(s, spacing) + eol;
          }
          const parsed = parsePrometheusText(text);
          assert.deepEqual(plain(parsed), plain(lines.map(([s]) => s)));
        },
      ),
      { numRuns: 500 },
    );
  });

  it('only ever throws SwitchyardError on arbitrary input (property)', () => {
    fc.assert(
      fc.property(
        fc.string({
          unit: fc.constantFrom('a', '{', '}', '"', '\\', '=', ',', ' ', '\n', '#', '1', '.', 'e', '+', ':'),
        }),
        (text) => {
          try {
            parsePrometheusText(text);
          } catch (error) {
            assert.ok(error instanceof SwitchyardError, String(error));
          }
        },
      ),
      { numRuns: 2000 },
    );
  });

  it('agrees with prom-client, an independent writer, on gauges and histograms', async () => {
    const registry = new Registry();
    const gauge = new Gauge({
      name: 'sy_test_gauge',
      help: 'a "quoted" help\\',
      labelNames: ['model', 'engine'],
      registers: [registry],
    });
    gauge.set({ model: 'a "b" \\ c\nd', engine: '0' }, 0.25);
    gauge.set({ model: 'x', engine: '1' }, Number.POSITIVE_INFINITY);
    const histogram = new Histogram({
      name: 'sy_test_seconds',
      help: 'h',
      buckets: [0.1, 1],
      registers: [registry],
    });
    histogram.observe(0.05);
    histogram.observe(0.5);
    histogram.observe(7);
    const parsed = plain(parsePrometheusText(await registry.metrics()));
    assert.deepEqual(parsed, [
      { name: 'sy_test_gauge', labels: { model: 'a "b" \\ c\nd', engine: '0' }, value: 0.25 },
      { name: 'sy_test_gauge', labels: { model: 'x', engine: '1' }, value: Number.POSITIVE_INFINITY },
      { name: 'sy_test_seconds_bucket', labels: { le: '0.1' }, value: 1 },
      { name: 'sy_test_seconds_bucket', labels: { le: '1' }, value: 2 },
      { name: 'sy_test_seconds_bucket', labels: { le: '+Inf' }, value: 3 },
      { name: 'sy_test_seconds_sum', labels: {}, value: 7.55 },
      { name: 'sy_test_seconds_count', labels: {}, value: 3 },
    ]);
  });

  it('handles the corners of the format', () => {
    const text = [
      '# HELP m Help text.',
      '# TYPE m counter',
      '#just a comment',
      '   ',
      'm_total 1.5e+06',
      'm_nan NaN',
      'm_inf{a="b",} -Inf 1700000000000',
      '  spaced { a = "1" , b="2" }   7   -5  ',
      'go_style 4.1234567168e+010',
      'lower_inf +inf',
      '{"dotted.name", "label.with.dots"="v"} 3',
      'quoted_label{"odd-name"="x"} 4',
      'empty{} 5',
    ].join('\n');
    assert.deepEqual(plain(parsePrometheusText(text)), [
      { name: 'm_total', labels: {}, value: 1.5e6 },
      { name: 'm_nan', labels: {}, value: Number.NaN },
      { name: 'm_inf', labels: { a: 'b' }, value: Number.NEGATIVE_INFINITY, timestampMs: 1_700_000_000_000 },
      { name: 'spaced', labels: { a: '1', b: '2' }, value: 7, timestampMs: -5 },
      { name: 'go_style', labels: {}, value: 41234567168 },
      { name: 'lower_inf', labels: {}, value: Number.POSITIVE_INFINITY },
      { name: 'dotted.name', labels: { 'label.with.dots': 'v' }, value: 3 },
      { name: 'quoted_label', labels: { 'odd-name': 'x' }, value: 4 },
      { name: 'empty', labels: {}, value: 5 },
    ]);
  });

  it('keeps label names like __proto__ as plain data', () => {
    const [s] = parsePrometheusText('m{__proto__="x",constructor="y"} 1');
    assert.deepEqual(Object.entries(s!.labels), [
      ['__proto__', 'x'],
      ['constructor', 'y'],
    ]);
    assert.equal(Object.getPrototypeOf(s!.labels), null);
  });

  it('rejects malformed lines, naming the line', () => {
    const bad: [string, RegExp][] = [
      ['m', /line 1: expected a value/],
      ['ok 1\nm{a="b"', /line 2: unterminated label set/],
      ['m{a=b} 1', /quoted value for label 'a'/],
      ['m{a="b} 1', /unterminated quoted string/],
      ['m{a="\\x"} 1', /bad escape/],
      ['m{a="b" c="d"} 1', /expected ',' or '}'/],
      ['m 1.2.3', /bad value '1.2.3'/],
      ['m 0x10', /bad value '0x10'/],
      ['m Infinityy', /bad value/],
      ['m 1 2.5', /bad timestamp '2.5'/],
      ['m 1 2 3', /unexpected text after the timestamp/],
      ['9m 1', /expected a metric name/],
      ['{a="b"} 1', /expected a metric name/],
    ];
    for (const [text, message] of bad) {
      assert.throws(
        () => parsePrometheusText(text),
        (error: unknown) =>
          error instanceof SwitchyardError && error.code === 'SY_ERR_UPSTREAM' && message.test(error.message),
        `expected ${message} for ${JSON.stringify(text)}`,
      );
    }
  });

  it('skips unwanted series cheaply with keep, without validating them', () => {
    const text = 'a 1\nb{x="unterminated\nc{y="2"} 3\n';
    assert.deepEqual(plain(parsePrometheusText(text, { keep: (n) => n !== 'b' })), [
      { name: 'a', labels: {}, value: 1 },
      { name: 'c', labels: { y: '2' }, value: 3 },
    ]);
  });

  it('parses every fixture, histograms included', () => {
    const samples = parsePrometheusText(fixture('vllm.prom'));
    assert.ok(samples.length > 200);
    const ttft = samples.filter((s) => s.name === 'vllm:time_to_first_token_seconds_bucket');
    assert.equal(ttft.at(-1)!.labels['le'], '+Inf');
    assert.equal(
      ttft.at(-1)!.value,
      samples.find((s) => s.name === 'vllm:time_to_first_token_seconds_count')!.value,
    );
    for (let i = 1; i < ttft.length; i++)
      assert.ok(ttft[i]!.value >= ttft[i - 1]!.value, 'buckets are cumulative');
    for (const name of ['vllm-legacy.prom', 'sglang.prom', 'llamacpp.prom'])
      assert.ok(parsePrometheusText(fixture(name)).length > 10);
  });

  it('parses a realistic vLLM page whole and filtered to the same engine-signal samples', () => {
    // Parse speed is measured in bench/hot-paths.ts, not asserted here.
    const text = fixture('vllm.prom');
    const keep = (n: string) => ENGINE_SIGNAL_METRICS.has(n);
    const full = parsePrometheusText(text);
    const kept = parsePrometheusText(text, { keep });
    assert.ok(kept.length > 0 && kept.length < full.length);
    assert.deepEqual(
      kept,
      full.filter((s) => keep(s.name)),
    );
  });
});
