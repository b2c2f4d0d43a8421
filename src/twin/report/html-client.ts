/**
 * The script that draws the HTML report's charts in the browser, from the JSON payload that
 * html.ts inlines. It is a string, not a TypeScript function turned into text: tsx and esbuild may
 * rewrite a function's body (helper calls such as __name), which would break in a page that lacks
 * the helpers. Plain ES2017, no template literals (this file is one), no network.
 *
 * Contract with html.ts: the payload is in `<script type="application/json" id="sy-data">` as
 * { title, runs: SimReportData[], instanceLinesMax }; charts go into the elements with ids
 * `cdf-ttft`, `cdf-tpot`, `cdf-e2e`, `goodput-sweep`, `cl-<throughput|rejected|slo|running|waiting|kv>`
 * and `ts-<run index>-<running|waiting|kv>`; the checkbox `cdf-log` switches the CDFs' x axis
 * between log and linear. Colours follow html.ts's palette, run i in colour i. The replicas charts
 * of autoscaled runs (`rep-<run index>`) are drawn by their own script, in replicas.ts.
 */
export const CLIENT_JS = String.raw`(function () {
  'use strict';
  var payload = JSON.parse(document.getElementById('sy-data').textContent);
  var runs = payload.runs;
  var linesMax = payload.instanceLinesMax;
  var PALETTE = ['#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd', '#8c564b', '#e377c2', '#7f7f7f',
    '#bcbd22', '#17becf', '#393b79', '#ad494a', '#637939', '#8c6d31', '#7b4173', '#3182bd'];
  var HEIGHT = 300;
  var charts = [];

  function fmt(x, digits) {
    return x.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
  }
  function fmtMs(x) {
    if (x == null || !isFinite(x)) return '-';
    var a = Math.abs(x);
    if (a === 0) return '0';
    if (a < 0.01) return x.toPrecision(2);
    if (a < 1) return fmt(x, 3);
    if (a < 10) return fmt(x, 2);
    if (a < 100) return fmt(x, 1);
    return fmt(x, 0);
  }
  // Tick labels: ticks are round numbers, so print only the digits they have (10, 12.5, 0.25).
  function fmtAxis(x) {
    if (x == null) return '';
    var a = Math.abs(x);
    if (a >= 1e6) return trim((x / 1e6).toPrecision(3)) + 'M';
    if (a >= 1e4) return trim((x / 1e3).toPrecision(3)) + 'k';
    return Number(x.toPrecision(6)).toLocaleString('en-US', { maximumFractionDigits: 6 });
  }
  function trim(text) {
    return text.indexOf('.') < 0 ? text : text.replace(/0+$/, '').replace(/\.$/, '');
  }
  function fmtPct(x) {
    return x == null || !isFinite(x) ? '-' : fmt(x * 100, 1) + '%';
  }
  function runName(run, i) {
    return run.name || run.summary.policy || 'run ' + (i + 1);
  }
  function widthOf(el) {
    return Math.max(320, Math.floor(el.clientWidth || 600));
  }

  // What other chart scripts on the page share with this one (replicas.ts): the size rule, and the
  // list the resize handler below walks.
  window.syCharts = {
    HEIGHT: HEIGHT,
    widthOf: widthOf,
    add: function (el, chart) { charts.push({ el: el, chart: chart }); },
  };

  function axis(label, values) {
    return { label: label, values: values, stroke: '#333', grid: { stroke: '#e6e6e6', width: 1 },
      ticks: { stroke: '#ccc', width: 1 } };
  }

  // Samples in any order to CDF points; the i-th of n ascending values sits at i / (n - 1), and a
  // run of equal values keeps only its last (highest) point, as uPlot.join needs unique x.
  function cdf(values) {
    var s = values.filter(function (v) { return v != null && isFinite(v); }).sort(function (a, b) { return a - b; });
    var n = s.length;
    var xs = [];
    var ys = [];
    for (var i = 0; i < n; i++) {
      var y = n === 1 ? 1 : i / (n - 1);
      if (xs.length > 0 && xs[xs.length - 1] === s[i]) ys[ys.length - 1] = y;
      else { xs.push(s[i]); ys.push(y); }
    }
    return [xs, ys];
  }

  // On a log axis the points at x <= 0 (a one-token answer has TPOT 0) are left off; the curve
  // then starts at the share they hold, so the y values stay fractions of all requests.
  function positiveOnly(t) {
    var xs = [];
    var ys = [];
    for (var i = 0; i < t[0].length; i++) if (t[0][i] > 0) { xs.push(t[0][i]); ys.push(t[1][i]); }
    return [xs, ys];
  }

  function cdfChart(id, key, label, logX) {
    var el = document.getElementById(id);
    if (!el) return;
    el.textContent = '';
    var tables = runs.map(function (r) { return cdf(r.samples[key] || []); });
    if (logX) tables = tables.map(positiveOnly);
    var nonEmpty = tables.filter(function (t) { return t[0].length > 0; });
    if (nonEmpty.length === 0) { el.textContent = 'no samples'; return; }
    var minX = Math.min.apply(null, nonEmpty.map(function (t) { return t[0][0]; }));
    var useLog = logX && minX > 0;
    var data = uPlot.join(tables.map(function (t) { return t[0].length > 0 ? t : [[minX], [null]]; }));
    var series = [{ label: label, value: function (u, v) { return v == null ? '-' : fmtMs(v) + ' ms'; } }];
    runs.forEach(function (r, i) {
      series.push({ label: runName(r, i), stroke: PALETTE[i % PALETTE.length], width: 2, spanGaps: true,
        points: { show: false }, value: function (u, v) { return fmtPct(v); } });
    });
    var opts = {
      width: widthOf(el), height: HEIGHT,
      scales: { x: { time: false, distr: useLog ? 3 : 1 }, y: { range: [0, 1] } },
      series: series,
      axes: [
        axis(label + ' (ms' + (useLog ? ', log scale' : '') + ')', function (u, splits) { return splits.map(fmtAxis); }),
        axis('cumulative fraction of requests', function (u, splits) {
          return splits.map(function (v) { return v == null ? '' : fmt(v * 100, 0) + '%'; });
        }),
      ],
      legend: { live: true },
    };
    charts.push({ el: el, chart: new uPlot(opts, data, el) });
  }

  // The goodput sweep: attainment against arrival rate per swept run (points in rate order), the
  // target as a dashed line, and each run's goodput (the rate it reports) as a diamond.
  function goodputChart() {
    var el = document.getElementById('goodput-sweep');
    if (!el) return;
    el.textContent = '';
    var swept = [];
    runs.forEach(function (r, i) { if (r.goodputSweep && r.goodputSweep.points.length > 0) swept.push(i); });
    if (swept.length === 0) { el.textContent = 'no sweep'; return; }
    var tables = swept.map(function (i) {
      var pts = runs[i].goodputSweep.points.slice().sort(function (a, b) { return a.rateRps - b.rateRps; });
      return [pts.map(function (p) { return p.rateRps; }), pts.map(function (p) { return p.attainment; })];
    });
    var marks = swept.map(function (i) {
      var g = runs[i].goodputRps;
      var pts = runs[i].goodputSweep.points.filter(function (p) { return p.rateRps === g; });
      return [[g], [pts.length > 0 ? pts[0].attainment : null]];
    });
    var target = runs[swept[0]].goodputSweep.targetAttainment;
    // The sweep bisects around the target, so most points sit near it: the y axis starts a little
    // below the lowest point (at a round 10%) rather than at 0, to keep the curves apart.
    var yLo = target;
    tables.forEach(function (t) { t[1].forEach(function (y) { if (y != null && y < yLo) yLo = y; }); });
    yLo = Math.max(0, Math.floor(yLo * 10 - 0.5) / 10);
    var all = tables.concat(marks);
    var xsAll = [];
    all.forEach(function (t) { t[0].forEach(function (x) { if (x > 0) xsAll.push(x); }); });
    var useLog = xsAll.length > 0 && Math.min.apply(null, xsAll) > 0;
    var lo = Math.min.apply(null, xsAll);
    var hi = Math.max.apply(null, xsAll);
    all.push([[lo, hi], [target, target]]);
    var data = uPlot.join(all.map(function (t) { return t[0].length > 0 ? t : [[lo], [null]]; }));
    var pct = function (u, v) { return fmtPct(v); };
    var series = [{ label: 'rate', value: function (u, v) { return v == null ? '-' : fmtAxis(v) + ' req/s'; } }];
    swept.forEach(function (i) {
      series.push({ label: runName(runs[i], i), stroke: PALETTE[i % PALETTE.length], width: 2, spanGaps: true,
        points: { show: true, size: 6 }, value: pct });
    });
    swept.forEach(function (i) {
      series.push({ label: runName(runs[i], i) + ' goodput ' + fmtAxis(Number(runs[i].goodputRps.toPrecision(3))) + ' req/s',
        stroke: PALETTE[i % PALETTE.length], width: 2,
        points: { show: true, size: 13, width: 2, fill: '#fff' }, value: pct });
    });
    series.push({ label: 'target ' + fmtPct(target), stroke: '#444', width: 1.5, dash: [6, 4], spanGaps: true,
      points: { show: false }, value: pct });
    var opts = {
      width: widthOf(el), height: HEIGHT,
      scales: {
        x: { time: false, distr: useLog ? 3 : 1, range: useLog ? [lo / 1.25, hi * 1.25] : [0, hi * 1.05] },
        y: { range: [yLo, 1.01] },
      },
      series: series,
      axes: [
        axis('arrival rate (req/s' + (useLog ? ', log scale' : '') + ')', function (u, splits) { return splits.map(fmtAxis); }),
        axis('requests meeting both SLOs', function (u, splits) {
          return splits.map(function (v) { return v == null ? '' : fmt(v * 100, 0) + '%'; });
        }),
      ],
      legend: { live: true },
    };
    charts.push({ el: el, chart: new uPlot(opts, data, el) });
  }

  // A cumulative count to a rate per second over a trailing window of windowS seconds.
  function rateOf(tS, counts, windowS) {
    var out = [];
    var j = 0;
    for (var k = 0; k < tS.length; k++) {
      while (j < k && tS[j] < tS[k] - windowS) j++;
      var from = j < k ? j : k - 1;
      if (from < 0 || tS[k] <= tS[from]) { out.push(null); continue; }
      out.push((counts[k] - counts[from]) / (tS[k] - tS[from]));
    }
    return out;
  }

  // Share of requests finishing (completed or rejected) in the trailing window that met both SLOs.
  function attainmentOf(c, windowS) {
    var met = rateOf(c.tS, c.sloMet, windowS);
    var done = rateOf(c.tS, c.completed, windowS);
    var rej = rateOf(c.tS, c.rejected, windowS);
    return met.map(function (m, k) {
      var d = done[k] == null ? null : done[k] + rej[k];
      return m == null || d == null || d <= 0 ? null : (100 * m) / d;
    });
  }

  // Per-instance series reduced to one cluster line (sum or mean over instances).
  function reduceInstances(series, field, mean, scale) {
    var byId = series[field] || {};
    var ids = Object.keys(byId);
    return series.tS.map(function (_, k) {
      var sum = 0;
      var n = 0;
      for (var j = 0; j < ids.length; j++) {
        var v = byId[ids[j]][k];
        if (v == null || !isFinite(v)) continue;
        sum += v * scale;
        n++;
      }
      return n === 0 ? null : mean ? sum / n : sum;
    });
  }

  // One line per run on a shared time axis; each run's points come from its own tS.
  function runsChart(id, label, pick) {
    var el = document.getElementById(id);
    if (!el) return;
    el.textContent = '';
    var tables = runs.map(function (r) {
      var p = pick(r);
      return p ? [p[0], p[1]] : [[], []];
    });
    var nonEmpty = tables.filter(function (t) { return t[0].length > 0; });
    if (nonEmpty.length === 0) { el.textContent = 'no samples'; return; }
    var x0 = nonEmpty[0][0][0];
    var data = uPlot.join(tables.map(function (t) { return t[0].length > 0 ? dedupe(t) : [[x0], [null]]; }));
    var ser = [{ label: 'time', value: function (u, v) { return v == null ? '-' : fmt(v, 1) + ' s'; } }];
    runs.forEach(function (r, i) {
      ser.push({ label: runName(r, i), stroke: PALETTE[i % PALETTE.length], width: 1.5, spanGaps: true,
        points: { show: false }, value: function (u, v) { return v == null ? '-' : fmtAxis(Number(v.toPrecision(3))); } });
    });
    var opts = {
      width: widthOf(el), height: HEIGHT,
      scales: { x: { time: false }, y: { range: function (u, lo, hi) { return [0, hi > 0 ? hi * 1.05 : 1]; } } },
      series: ser,
      axes: [
        axis('simulated time (s)', function (u, splits) { return splits.map(function (v) { return v == null ? '' : fmtAxis(v); }); }),
        axis(label, function (u, splits) { return splits.map(fmtAxis); }),
      ],
      legend: { live: true },
    };
    charts.push({ el: el, chart: new uPlot(opts, data, el) });
  }

  // uPlot.join needs strictly increasing x: keep the last value of a repeated time.
  function dedupe(t) {
    var xs = [];
    var ys = [];
    for (var i = 0; i < t[0].length; i++) {
      if (xs.length > 0 && xs[xs.length - 1] >= t[0][i]) { ys[ys.length - 1] = t[1][i]; continue; }
      xs.push(t[0][i]);
      ys.push(t[1][i]);
    }
    return [xs, ys];
  }

  function clusterCharts() {
    var endS = 0;
    runs.forEach(function (r) {
      var t = (r.series.cluster && r.series.cluster.tS) || r.series.tS;
      if (t.length > 0) endS = Math.max(endS, t[t.length - 1]);
    });
    var windowS = Math.max(1, endS / 50);
    function cl(f) { return function (r) { var c = r.series.cluster; return c && c.tS.length > 1 ? f(c) : null; }; }
    runsChart('cl-throughput', 'output tokens / s', cl(function (c) { return [c.tS, rateOf(c.tS, c.outputTokens, windowS)]; }));
    runsChart('cl-rejected', 'rejected requests / s', cl(function (c) { return [c.tS, rateOf(c.tS, c.rejected, windowS)]; }));
    runsChart('cl-slo', 'meeting both SLOs (%)', cl(function (c) { return [c.tS, attainmentOf(c, windowS)]; }));
    runsChart('cl-running', 'running requests', function (r) { return [r.series.tS, reduceInstances(r.series, 'running', false, 1)]; });
    runsChart('cl-waiting', 'waiting requests', function (r) { return [r.series.tS, reduceInstances(r.series, 'waiting', false, 1)]; });
    runsChart('cl-kv', 'KV-cache usage (%)', function (r) { return [r.series.tS, reduceInstances(r.series, 'kvUsage', true, 100)]; });
  }

  // The highest value of a per-instance field across every run, so the runs' charts share a y scale.
  function sharedMax(field, scale) {
    var mx = 0;
    runs.forEach(function (r) {
      var byId = r.series[field] || {};
      Object.keys(byId).forEach(function (iid) {
        byId[iid].forEach(function (v) { if (v != null && isFinite(v) && v * scale > mx) mx = v * scale; });
      });
    });
    return mx;
  }

  // Per-instance time series: the first linesMax instances, the cluster mean always (bold black), and
  // the max across all instances when some are not drawn, so an outlier still shows. The y axis
  // runs to yMax, shared by every run's chart of the same field so the policies compare by eye.
  function seriesChart(id, series, field, label, scale, yMax) {
    var el = document.getElementById(id);
    if (!el) return;
    el.textContent = '';
    var tS = series.tS;
    var byId = series[field] || {};
    var ids = Object.keys(byId);
    if (tS.length === 0 || ids.length === 0) { el.textContent = 'no samples'; return; }
    function at(arr, k) {
      var v = arr[k];
      return v == null || !isFinite(v) ? null : v * scale;
    }
    var data = [tS];
    var ser = [{ label: 'time', value: function (u, v) { return v == null ? '-' : fmt(v, 1) + ' s'; } }];
    var valueFmt = function (u, v) { return v == null ? '-' : fmt(v, scale === 1 ? (Number.isInteger(v) ? 0 : 1) : 1); };
    var shown = ids.slice(0, linesMax);
    shown.forEach(function (iid, j) {
      var arr = byId[iid];
      data.push(tS.map(function (_, k) { return at(arr, k); }));
      ser.push({ label: iid, stroke: PALETTE[j % PALETTE.length], alpha: 0.55, width: 1, points: { show: false },
        value: valueFmt });
    });
    var mean = [];
    var max = [];
    for (var k = 0; k < tS.length; k++) {
      var sum = 0;
      var cnt = 0;
      var mx = null;
      for (var j = 0; j < ids.length; j++) {
        var v = at(byId[ids[j]], k);
        if (v == null) continue;
        sum += v;
        cnt++;
        if (mx == null || v > mx) mx = v;
      }
      mean.push(cnt > 0 ? sum / cnt : null);
      max.push(mx);
    }
    data.push(mean);
    ser.push({ label: 'cluster mean', stroke: '#111', width: 2.5, points: { show: false }, value: valueFmt });
    if (ids.length > linesMax) {
      data.push(max);
      ser.push({ label: 'max of all ' + fmt(ids.length, 0), stroke: '#111', width: 1.5, dash: [6, 4], points: { show: false },
        value: valueFmt });
    }
    var top = yMax > 0 ? yMax * 1.05 : 1;
    var opts = {
      width: widthOf(el), height: HEIGHT,
      scales: { x: { time: false }, y: { range: function () { return [0, top]; } } },
      series: ser,
      axes: [
        axis('simulated time (s)', function (u, splits) { return splits.map(function (v) { return v == null ? '' : fmtAxis(v); }); }),
        axis(label, function (u, splits) { return splits.map(fmtAxis); }),
      ],
      legend: { live: true },
    };
    charts.push({ el: el, chart: new uPlot(opts, data, el) });
  }

  function drawCdfs() {
    var logBox = document.getElementById('cdf-log');
    var logX = logBox ? logBox.checked : true;
    charts = charts.filter(function (c) {
      if (c.el.id.indexOf('cdf-') !== 0) return true;
      c.chart.destroy();
      return false;
    });
    cdfChart('cdf-ttft', 'ttftMs', 'TTFT', logX);
    cdfChart('cdf-tpot', 'tpotMs', 'TPOT', logX);
    cdfChart('cdf-e2e', 'e2eMs', 'E2E latency', logX);
  }

  drawCdfs();
  goodputChart();
  clusterCharts();
  var runningMax = sharedMax('running', 1);
  var waitingMax = sharedMax('waiting', 1);
  var kvMax = sharedMax('kvUsage', 100);
  runs.forEach(function (r, i) {
    seriesChart('ts-' + i + '-running', r.series, 'running', 'running requests', 1, runningMax);
    seriesChart('ts-' + i + '-waiting', r.series, 'waiting', 'waiting requests', 1, waitingMax);
    seriesChart('ts-' + i + '-kv', r.series, 'kvUsage', 'KV-cache usage (%)', 100, kvMax);
  });
  var logBox = document.getElementById('cdf-log');
  if (logBox) logBox.addEventListener('change', drawCdfs);

  var pending = null;
  window.addEventListener('resize', function () {
    clearTimeout(pending);
    pending = setTimeout(function () {
      charts.forEach(function (c) { c.chart.setSize({ width: widthOf(c.el), height: HEIGHT }); });
    }, 100);
  });
})();
`;
