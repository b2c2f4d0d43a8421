import assert from 'node:assert/strict';
import { test } from 'node:test';
import { renderHtmlReport } from './html.ts';
import { type ControlledReportData, peakReady, REPLICAS_CLIENT_JS } from './replicas.ts';
import { sampleReportData } from './sample.ts';

const points = [
  { timeS: 0, ready: 1, starting: 0, draining: 0, desired: 1, arrivalRps: 0 },
  { timeS: 2, ready: 1, starting: 2, draining: 0, desired: 3, arrivalRps: 12.5 },
  { timeS: 4, ready: 3, starting: 0, draining: 0, desired: 3, arrivalRps: 14 },
];

function controlled(autoscaler: string): ControlledReportData {
  return {
    ...sampleReportData({ instances: 3 }),
    name: autoscaler,
    control: { autoscaler, gpuHours: 0.125, coldStarts: 2, instancesOverTime: points },
  };
}

test('a page without autoscaled runs has no replicas section or script', () => {
  const html = renderHtmlReport([sampleReportData()]);
  assert.ok(!html.includes('Replicas over time'));
  assert.ok(!html.includes(REPLICAS_CLIENT_JS));
});

test('each autoscaled run gets a replicas chart, its figures in a static table, and the script', () => {
  const html = renderHtmlReport([controlled('kpa'), sampleReportData(), controlled('static')]);
  assert.ok(html.includes('<h2>Replicas over time</h2>'));
  // Boxes by run index: the uncontrolled run in between has none.
  assert.ok(html.includes('id="rep-0"') && html.includes('id="rep-2"'));
  assert.ok(!html.includes('id="rep-1"'));
  assert.match(html, /<tr><td>kpa<\/td><td>0\.125<\/td><td>2<\/td><td>3<\/td><\/tr>/);
  assert.ok(html.includes(REPLICAS_CLIENT_JS));
  assert.equal(html.match(/<\/script/gi)?.length, 4);
});

test('peak ready is the most instances ready at any point', () => {
  assert.equal(peakReady(points), 3);
  assert.equal(peakReady([]), 0);
});
