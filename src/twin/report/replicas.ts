/**
 * The HTML report's replicas section for autoscaled runs: per run, instances ready, starting,
 * draining and desired over time, with the offered load on a second axis. Kept apart from html.ts
 * and html-client.ts so they only call in here (one section, one extra inline script).
 */

import { fmtNumber } from '../../stats/format.ts';
import type { InstanceCountPoint } from '../control-host.ts';
import type { SimResult } from '../simulator.ts';
import { type PoolFigures, poolFigures } from './pool.ts';
import type { SimReportData } from './types.ts';

/** What an autoscaled run adds to its report data (inlined in the page with the rest). */
export interface ReplicasData {
  readonly autoscaler: string;
  readonly gpuHours: number;
  readonly coldStarts: number;
  readonly instancesOverTime: readonly InstanceCountPoint[];
  /**
   * GPUs the pool runs on (pool.ts's PoolFigures): the nodes' where its slots share them
   * (`sharedGpus` true), else the slots' own. Optional: report data from before it lacks it.
   */
  readonly gpus?: number;
  readonly sharedGpus?: boolean;
  /** Most of those GPUs held at once (a multi-model cluster's `gpuBudget`), when set. */
  readonly gpuBudget?: number;
  /** Where the bills end, s (SimResult's `billedUntilS`); optional: report data from before it lacks it. */
  readonly billedUntilS?: number;
}

/** Report data of a run that may have run under an autoscaler. */
export interface ControlledReportData extends SimReportData {
  readonly control?: ReplicasData;
}

/**
 * The `control` field for a run's report data; empty for a run without an autoscaler. `shared`:
 * the GPUs of the nodes the pool's slots share (pool.ts's sharedGpus), when they do; `budget`: the
 * most of them held at once (pool.ts's gpuBudget), when set.
 */
export function controlReport(
  result: SimResult,
  autoscaler: string,
  shared?: number,
  budget?: number,
): { control?: ReplicasData } {
  const pool = poolFigures(result, shared, budget);
  if (result.gpuHours === undefined || pool === undefined) return {};
  return {
    control: {
      autoscaler,
      gpuHours: result.gpuHours,
      coldStarts: result.coldStarts ?? 0,
      instancesOverTime: result.instancesOverTime ?? [],
      gpus: pool.gpus,
      sharedGpus: pool.shared,
      ...(pool.budget !== undefined ? { gpuBudget: pool.budget } : {}),
      ...(result.billedUntilS !== undefined ? { billedUntilS: result.billedUntilS } : {}),
    },
  };
}

/** A run's pool figures from its report data; undefined for a run without a control loop. */
export function reportPool(run: ControlledReportData): PoolFigures | undefined {
  const c = run.control;
  if (c === undefined) return undefined;
  const own = run.summary.perInstance.reduce((n, p) => n + p.tp, 0);
  return {
    gpuHours: c.gpuHours,
    gpus: c.gpus ?? own,
    shared: c.sharedGpus ?? false,
    ...(c.gpuBudget !== undefined ? { budget: c.gpuBudget } : {}),
    ...(c.billedUntilS !== undefined ? { billedUntilS: c.billedUntilS, slotGpus: own } : {}),
  };
}

/** The most instances ready at any point of a run's series. */
export function peakReady(points: readonly InstanceCountPoint[]): number {
  let peak = 0;
  for (const p of points) if (p.ready > peak) peak = p.ready;
  return peak;
}

function escapeText(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/**
 * The section: a static table (GPU-hours, cold starts, peak ready; readable without JavaScript)
 * and one chart box `rep-<run index>` per controlled run. Empty when no run was controlled.
 */
export function replicasSection(runs: readonly ControlledReportData[]): string {
  const controlled = runs.flatMap((r, i) => (r.control !== undefined ? [{ i, c: r.control }] : []));
  if (controlled.length === 0) return '';
  const rows = controlled
    .map(
      ({ c }) =>
        `<tr><td>${escapeText(c.autoscaler)}</td><td>${c.gpuHours.toFixed(3)}</td>` +
        `<td>${fmtNumber(c.coldStarts)}</td><td>${fmtNumber(peakReady(c.instancesOverTime))}</td></tr>`,
    )
    .join('');
  const boxes = controlled
    .map(
      ({ i, c }) =>
        `<div><p class="chart-title">Replicas: ${escapeText(c.autoscaler)}</p><div class="chart" id="rep-${i}"></div></div>`,
    )
    .join('');
  return (
    '<section><h2>Replicas over time</h2>' +
    '<p class="note">Per autoscaler, sampled at its control ticks: instances ready, starting (billed, not yet ' +
    'serving), draining (finishing their requests) and the count the loop asked for (left axis), with the ' +
    'offered load in arrivals per second since the previous sample (right axis, grey).</p>' +
    '<div class="scroll"><table class="t"><thead><tr><th>autoscaler</th><th>GPU-hours</th><th>cold starts</th>' +
    `<th>peak ready</th></tr></thead><tbody>${rows}</tbody></table></div>` +
    `<div class="grid">${boxes}</div></section>`
  );
}

/**
 * The script that draws the replicas charts from the page's payload (`sy-data`, as html-client.ts
 * reads it). Plain ES2017 in a string for the same reason as CLIENT_JS; counts are drawn as steps
 * (a count holds until the next tick), the load as a line.
 */
export const REPLICAS_CLIENT_JS = `(function () {
  'use strict';
  var runs = JSON.parse(document.getElementById('sy-data').textContent).runs;
  // Sizes and the resize handler are the main report script's (html-client.ts).
  var sy = window.syCharts;
  var LINES = [
    { key: 'ready', color: '#2ca02c', width: 2 },
    { key: 'starting', color: '#ff7f0e', width: 1.5 },
    { key: 'draining', color: '#9467bd', width: 1.5 },
    { key: 'desired', color: '#111', width: 1.5, dash: [6, 4] },
  ];
  function num(v, digits) {
    return v == null ? '-' : Number(v).toLocaleString('en-US', { maximumFractionDigits: digits });
  }
  function axis(label, scale, side) {
    return { label: label, scale: scale, side: side, stroke: '#333', values: function (u, s) { return s.map(function (v) { return num(v, 2); }); },
      grid: { show: side === 3, stroke: '#e6e6e6', width: 1 }, ticks: { stroke: '#ccc', width: 1 } };
  }
  runs.forEach(function (r, i) {
    var el = document.getElementById('rep-' + i);
    if (!el || !r.control) return;
    var pts = r.control.instancesOverTime;
    if (pts.length === 0) { el.textContent = 'no samples'; return; }
    var top = 1;
    pts.forEach(function (p) { top = Math.max(top, p.ready + p.starting + p.draining, p.desired); });
    var step = uPlot.paths && uPlot.paths.stepped ? uPlot.paths.stepped({ align: 1 }) : undefined;
    var data = [pts.map(function (p) { return p.timeS; })];
    var series = [{ label: 'time', value: function (u, v) { return v == null ? '-' : num(v, 1) + ' s'; } }];
    LINES.forEach(function (l) {
      data.push(pts.map(function (p) { return p[l.key]; }));
      series.push({ label: l.key, scale: 'n', stroke: l.color, width: l.width, dash: l.dash, paths: step,
        points: { show: false }, value: function (u, v) { return num(v, 0); } });
    });
    data.push(pts.map(function (p) { return p.arrivalRps; }));
    series.push({ label: 'arrivals/s', scale: 'rps', stroke: '#999', width: 1, points: { show: false },
      value: function (u, v) { return num(v, 2); } });
    var opts = {
      width: sy.widthOf(el), height: sy.HEIGHT,
      scales: { x: { time: false }, n: { range: [0, Math.ceil(top * 1.1)] },
        rps: { range: function (u, lo, hi) { return [0, hi > 0 ? hi * 1.05 : 1]; } } },
      series: series,
      axes: [
        { label: 'simulated time (s)', stroke: '#333', grid: { stroke: '#e6e6e6', width: 1 } },
        axis('instances', 'n', 3),
        axis('arrivals per second', 'rps', 1),
      ],
      legend: { live: true },
    };
    sy.add(el, new uPlot(opts, data, el));
  });
})();
`;
