import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { test } from 'node:test';
import { escapeHtml, jsonForScript, renderHtmlReport } from './html.ts';
import { CLIENT_JS } from './html-client.ts';
import { sampleReportData } from './sample.ts';
import type { SimReportData } from './types.ts';

const require = createRequire(import.meta.url);
const uplotJs = readFileSync(require.resolve('uplot/dist/uPlot.iife.min.js'), 'utf8');

function payloadOf(html: string): { title: string; runs: SimReportData[] } {
  const m = /<script type="application\/json" id="sy-data">([\s\S]*?)<\/script>/.exec(html);
  assert.ok(m, 'payload script element');
  return JSON.parse(m[1] as string);
}

test('the report is self-contained: no network references, uPlot inlined', () => {
  const html = renderHtmlReport([sampleReportData({ instances: 20 })]);
  assert.ok(html.startsWith('<!doctype html>'));
  for (const m of html.matchAll(/\b(?:src|href)\s*=\s*["']?([^"'\s>]*)/gi)) {
    assert.ok(!/^(?:https?:)?\/\//i.test(m[1] as string), `external reference ${m[0]}`);
  }
  assert.ok(!/<script[^>]*\bsrc\s*=/i.test(html), 'no external script');
  assert.ok(!/<link\b/i.test(html), 'no linked stylesheet');
  assert.ok(!/@import/i.test(html), 'no imported stylesheet');
  assert.ok(html.includes(uplotJs.trim()), 'uPlot inlined verbatim');
  assert.ok(html.includes('.uplot'), 'uPlot stylesheet inlined');
  assert.ok(html.includes(CLIENT_JS.trim()), 'chart script inlined');
});

test('the JSON payload parses back to the input data', () => {
  const runs = [
    { ...sampleReportData({ instances: 5 }), goodputRps: 7.5 },
    {
      ...sampleReportData({ policy: 'prefix-aware', seed: 2, instances: 5 }),
      name: 'prefix-aware, 2 replicas',
    },
  ];
  const html = renderHtmlReport(runs, { title: 'compare' });
  const payload = payloadOf(html);
  assert.deepEqual(payload.runs, runs);
  assert.equal(payload.title, 'compare');
});

test('</script> and markup in string fields are escaped', () => {
  const evil = '</script><script>alert(1)</script><!--';
  const base = sampleReportData({ instances: 2 });
  const run: SimReportData = {
    ...base,
    summary: { ...base.summary, policy: evil, workload: `<b>${evil}</b>` },
    name: evil,
  };
  const html = renderHtmlReport([run, base], { title: evil, settings: { trace: evil } });
  assert.ok(!html.includes(evil));
  assert.ok(html.includes(escapeHtml(`<b>${evil}</b>`)), 'workload shown as text');
  // Exactly the three script elements close: payload, uPlot, chart script.
  assert.equal(html.match(/<\/script/gi)?.length, 3);
  const payload = payloadOf(html);
  assert.equal(payload.title, evil);
  assert.equal(payload.runs[0]?.summary.policy, evil);
  assert.deepEqual(payload.runs, [run, base]);
  assert.equal(JSON.parse(jsonForScript({ s: '\u2028</script>' })).s, '\u2028</script>');
  assert.equal(escapeHtml(`<a href="x">'&'</a>`), '&#60;a href=&#34;x&#34;&#62;&#39;&#38;&#39;&#60;/a&#62;');
});

test('one run gets a summary, several get a comparison with one row each', () => {
  const single = renderHtmlReport([sampleReportData()]);
  assert.ok(single.includes('<h2>Summary</h2>'));
  assert.ok(!single.includes('<h2>Comparison</h2>'));
  assert.ok(single.includes('id="cdf-ttft"') && single.includes('id="ts-0-kv"'));

  const names = ['least-request', 'prefix-aware', 'random'];
  const runs = names.map((policy, i) => sampleReportData({ policy, seed: i + 1, slowdown: 1 + i / 4 }));
  const html = renderHtmlReport(runs);
  assert.ok(html.includes('<h2>Comparison</h2>'));
  for (const name of names) assert.equal(html.split(`<tr><td>${name}</td>`).length - 1, 1, name);
  assert.ok(html.includes('id="ts-2-running"'));
  assert.ok(html.includes('class="best"'));
});

test('large clusters note how many instances the charts show', () => {
  const html = renderHtmlReport([sampleReportData({ instances: 40, points: 10 })], { instanceRowsMax: 10 });
  assert.ok(html.includes('Showing 16 of 40 instances'));
  assert.ok(html.includes('30 more instances not listed'));
});

test('the chart script is valid JavaScript', () => {
  assert.doesNotThrow(() => new Function(CLIENT_JS));
  assert.ok(!CLIENT_JS.includes('</script'));
});

/** A run with a goodput sweep, cluster totals and `rejected` rejections (completed-only tails kept). */
function richRun(policy: string, seed: number, rejected: number, peakRunning: number): SimReportData {
  const base = sampleReportData({ policy, seed, instances: 3, points: 5 });
  const tS = [0, 10, 20, 30, 40];
  const flat = (v: number) => tS.map(() => v);
  return {
    ...base,
    summary: {
      ...base.summary,
      rejected,
      rejectedByCode: rejected > 0 ? { SY_ERR_SLO_UNREACHABLE: rejected } : {},
      ttftMsAll: { p50: 100, p90: 300, p99: rejected > 0 ? Number.POSITIVE_INFINITY : 900, count: 10 },
      e2eMsAll: { p50: 1000, p90: 3000, p99: rejected > 0 ? Number.POSITIVE_INFINITY : 9000, count: 10 },
    },
    // One TPOT of 0 (a one-token answer): the log axis must still be used.
    samples: { ...base.samples, tpotMs: [0, 5, 10, 20, 40] },
    series: {
      tS,
      running: { i0: flat(1), i1: [0, peakRunning, 2, 1, 0], i2: flat(2) },
      waiting: { i0: flat(0), i1: flat(1), i2: flat(0) },
      kvUsage: { i0: flat(0.1), i1: flat(0.2), i2: flat(0.3) },
      cluster: {
        tS,
        completed: [0, 100, 200, 300, 400],
        rejected: [0, 0, 10, 20, 20],
        outputTokens: [0, 10_000, 20_000, 30_000, 40_000],
        sloMet: [0, 90, 180, 270, 360],
      },
    },
    goodputRps: 4,
    goodputSweep: {
      targetAttainment: 0.9,
      points: [
        { rateRps: 8, attainment: 0.6 },
        { rateRps: 2, attainment: 0.99 },
        { rateRps: 4, attainment: 0.92 },
      ],
    },
  };
}

interface Drawn {
  readonly id: string;
  readonly opts: {
    scales: { x: { distr?: number; range?: unknown }; y: { range: unknown } };
    series: { label: string }[];
  };
  readonly data: (number | null)[][];
}

/**
 * Runs the chart script against a stand-in DOM and a stand-in uPlot that records what each chart
 * was asked to draw (its element id, options and data).
 */
function drawCharts(html: string): Map<string, Drawn> {
  const payload = /<script type="application\/json" id="sy-data">([\s\S]*?)<\/script>/.exec(html)?.[1] ?? '';
  const ids = [...html.matchAll(/<div class="chart" id="([^"]+)"/g)].map((m) => m[1] as string);
  const elements = new Map<string, Record<string, unknown>>();
  for (const id of ids) elements.set(id, { id, textContent: '', clientWidth: 600 });
  elements.set('sy-data', { textContent: payload });
  const drawn = new Map<string, Drawn>();
  function FakePlot(this: unknown, opts: Drawn['opts'], data: Drawn['data'], el: { id: string }) {
    drawn.set(el.id, { id: el.id, opts, data });
    return { destroy() {}, setSize() {} };
  }
  // uPlot.join: the union of the x values, each table's y at its own x, null elsewhere.
  FakePlot.join = (tables: number[][][]) => {
    const xs = [...new Set(tables.flatMap((t) => t[0] as number[]))].sort((a, b) => a - b);
    return [
      xs,
      ...tables.map((t) =>
        xs.map((x) => {
          const k = (t[0] as number[]).indexOf(x);
          return k < 0 ? null : ((t[1] as (number | null)[])[k] ?? null);
        }),
      ),
    ];
  };
  const document = { getElementById: (id: string) => elements.get(id) ?? null };
  const window = { addEventListener() {} };
  new Function('document', 'window', 'uPlot', CLIENT_JS)(document, window, FakePlot);
  return drawn;
}

test('the goodput sweep is drawn per swept run, in rate order, with the target', () => {
  const runs = [richRun('goodput', 1, 20, 3), richRun('random', 2, 0, 9)];
  const html = renderHtmlReport(runs);
  assert.ok(html.includes('<h2>Goodput sweep</h2>') && html.includes('id="goodput-sweep"'));
  const sweep = drawCharts(html).get('goodput-sweep');
  assert.ok(sweep, 'sweep chart drawn');
  assert.deepEqual(sweep.data[0], [2, 4, 8]);
  assert.deepEqual(sweep.data[1], [0.99, 0.92, 0.6]);
  const labels = sweep.opts.series.map((s) => s.label);
  assert.ok(labels.includes('goodput goodput 4 req/s') && labels.includes('target 90.0%'), labels.join());
  assert.equal(sweep.opts.scales.x.distr, 3, 'log rate axis');
  // Without a sweep there is no section.
  assert.ok(!renderHtmlReport([sampleReportData()]).includes('Goodput sweep'));
});

test('rejections: a figure per run, and completed-only latencies flagged, never marked best', () => {
  const runs = [richRun('goodput', 1, 20, 3), richRun('random', 2, 0, 9)];
  const html = renderHtmlReport(runs);
  assert.ok(html.includes('Rejected requests'));
  assert.ok(html.includes('20 (0.4%)') && html.includes('0 (0.0%)'), 'counts and shares');
  assert.ok(html.includes('SY_ERR_SLO_UNREACHABLE: 20'));
  assert.ok(html.includes('* Completed requests only: rejected requests (goodput 20)'));
  assert.ok(html.includes('The curves cover completed requests only'));
  // goodput's completed-only TTFT p99 is flagged, not green; its all-requests p99 is ∞.
  const row = /<tr><td>goodput<\/td>(.*?)<\/tr>/.exec(html)?.[1] ?? '';
  assert.match(row, /<td class="flag">[^<]* \*<\/td>/);
  assert.ok(row.includes('<td>∞</td>'), row);
  assert.ok(html.includes('TTFT p99<br>all'));
  // No rejection anywhere: no flags, no "all" columns.
  const clean = renderHtmlReport([richRun('a', 1, 0, 3), richRun('b', 2, 0, 3)]);
  assert.ok(!clean.includes('class="flag"') && !clean.includes('p99<br>all'));
  // One run with rejections: the note under its latency table.
  assert.ok(renderHtmlReport([runs[0] as SimReportData]).includes('20 rejected requests are left out'));
});

test('the TPOT CDF keeps a log axis though a sample is 0, its y still a share of all requests', () => {
  const drawn = drawCharts(renderHtmlReport([richRun('a', 1, 0, 3)]));
  const tpot = drawn.get('cdf-tpot');
  assert.ok(tpot);
  assert.equal(tpot.opts.scales.x.distr, 3);
  assert.deepEqual(tpot.data[0], [5, 10, 20, 40]);
  assert.deepEqual(tpot.data[1], [0.25, 0.5, 0.75, 1]);
});

test('cluster over time: rates from the cumulative totals, one line per run', () => {
  const drawn = drawCharts(renderHtmlReport([richRun('a', 1, 20, 3), richRun('b', 2, 0, 9)]));
  const throughput = drawn.get('cl-throughput');
  assert.ok(throughput);
  // 10,000 output tokens per 10 s: 1,000 tok/s after the first point, for both runs.
  assert.deepEqual(throughput.data[1], [null, 1000, 1000, 1000, 1000]);
  assert.deepEqual(drawn.get('cl-rejected')?.data[1], [null, 0, 1, 1, 0]);
  // 90 of 100 finished met both SLOs, then 90 of 110 (10 rejected).
  const slo = drawn.get('cl-slo')?.data[1] ?? [];
  assert.equal(slo[1], 90);
  assert.ok(Math.abs((slo[2] as number) - 81.818) < 0.01);
  // Running summed over instances: 1 + peak + 2 at t=10.
  assert.deepEqual(drawn.get('cl-running')?.data[1]?.slice(0, 2), [3, 6]);
  assert.deepEqual(drawn.get('cl-running')?.data[2]?.slice(0, 2), [3, 12]);
});

test('per-instance charts share a y scale across policies and draw the cluster mean', () => {
  const drawn = drawCharts(renderHtmlReport([richRun('a', 1, 0, 3), richRun('b', 2, 0, 9)]));
  const a = drawn.get('ts-0-running');
  const b = drawn.get('ts-1-running');
  assert.ok(a && b);
  const range = (d: Drawn) => (d.opts.scales.y.range as () => number[])();
  // Run b peaks at 9 running: both charts run to 9 x 1.05.
  assert.deepEqual(range(a), range(b));
  assert.ok(Math.abs((range(a)[1] as number) - 9.45) < 1e-9);
  const labels = a.opts.series.map((s) => s.label);
  assert.ok(labels.includes('cluster mean'));
  // The mean at t=10 over instances i0 (1), i1 (3), i2 (2).
  assert.equal(a.data[labels.indexOf('cluster mean')]?.[1], 2);
});
