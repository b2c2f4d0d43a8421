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
