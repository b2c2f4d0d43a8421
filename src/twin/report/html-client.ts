/**
 * The script that draws the HTML report's charts in the browser, from the JSON payload that
 * html.ts inlines. It is a string, not a TypeScript function turned into text: tsx and esbuild may
 * rewrite a function's body (helper calls such as __name), which would break in a page that lacks
 * the helpers. Plain ES2017, no template literals (this file is one), no network.
 *
 * Contract with html.ts: the payload is in `<script type="application/json" id="sy-data">` as
 * { title, runs: SimReportData[], instanceLinesMax }; charts go into the elements with ids
 * `cdf-ttft`, `cdf-tpot`, `cdf-e2e` and `ts-<run index>-<running|waiting|kv>`; the checkbox
 * `cdf-log` switches the CDFs' x axis between log and linear.
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

  function cdfChart(id, key, label, logX) {
    var el = document.getElementById(id);
    if (!el) return;
    el.textContent = '';
    var tables = runs.map(function (r) { return cdf(r.samples[key] || []); });
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

  // Per-instance time series: the first linesMax instances, then mean and max across all of them
  // when there are more, so a large cluster stays readable and an outlier still shows in the max.
  function seriesChart(id, series, field, label, scale) {
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
      ser.push({ label: iid, stroke: PALETTE[j % PALETTE.length], width: 1.25, points: { show: false },
        value: valueFmt });
    });
    if (ids.length > linesMax) {
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
      data.push(mean, max);
      ser.push({ label: 'mean of all ' + fmt(ids.length, 0), stroke: '#111', width: 2.5, points: { show: false }, value: valueFmt });
      ser.push({ label: 'max of all ' + fmt(ids.length, 0), stroke: '#111', width: 1.5, dash: [6, 4], points: { show: false },
        value: valueFmt });
    }
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
  runs.forEach(function (r, i) {
    seriesChart('ts-' + i + '-running', r.series, 'running', 'running requests', 1);
    seriesChart('ts-' + i + '-waiting', r.series, 'waiting', 'waiting requests', 1);
    seriesChart('ts-' + i + '-kv', r.series, 'kvUsage', 'KV-cache usage (%)', 100);
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
