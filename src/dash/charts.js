/* charts.js -- small SVG line charts shared by the live dashboard and the HTML report.
 * No chart library: the binary must serve everything itself, and the few line charts needed
 * (time series, log axes, markers, a hover read-out) fit in this file, smaller than any
 * library and with no build step. Every text taken from data goes in through textContent. */
'use strict';
var ZC = (function () {
  var NS = 'http://www.w3.org/2000/svg';
  var PALETTE = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b', '#e377c2',
                 '#17becf', '#bcbd22', '#7f7f7f'];
  var W = 560, H = 220, ML = 58, MR = 12, MT = 10, MB = 28;

  function el(tag, attrs, parent) {
    var e = document.createElementNS(NS, tag);
    for (var k in attrs) e.setAttribute(k, attrs[k]);
    if (parent) parent.appendChild(e);
    return e;
  }
  function html(tag, cls, parent, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    if (parent) parent.appendChild(e);
    return e;
  }
  function num(v, digits) {
    if (v === null || v === undefined || !isFinite(v)) return '-';
    var a = Math.abs(v);
    if (a >= 1e9) return (v / 1e9).toFixed(2) + 'G';
    if (a >= 1e6) return (v / 1e6).toFixed(2) + 'M';
    if (a >= 1e4) return (v / 1e3).toFixed(1) + 'k';
    if (a >= 100 || v === Math.round(v)) return String(Math.round(v));
    return v.toFixed(digits === undefined ? 1 : digits);
  }
  function us(v) {
    if (v === null || v === undefined || !isFinite(v)) return '-';
    if (v >= 1e6) return (v / 1e6).toPrecision(3) + ' s';
    if (v >= 1e3) return (v / 1e3).toPrecision(3) + ' ms';
    return v.toPrecision(3) + ' \u00b5s';
  }
  function pct(v) { return isFinite(v) ? (100 * v).toFixed(0) + '%' : '-'; }
  function secs(v) {
    if (!isFinite(v)) return '-';
    var m = Math.floor(v / 60), s = v - 60 * m;
    return m ? m + 'm' + (s < 10 ? '0' : '') + s.toFixed(0) + 's' : s.toFixed(v < 10 ? 1 : 0) + 's';
  }
  function ticks(lo, hi, n) {
    if (hi <= lo) hi = lo + 1;
    var step = Math.pow(10, Math.floor(Math.log10((hi - lo) / n)));
    var err = (hi - lo) / n / step;
    step *= err >= 5 ? 10 : err >= 2.5 ? 5 : err >= 1.5 ? 2 : 1;
    var out = [];
    for (var v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(v);
    return out;
  }
  /* At most `max` points per series: each bucket keeps its highest value, so a spike survives. */
  function thin(pts, max) {
    if (pts.length <= max) return pts;
    var out = [], per = pts.length / max;
    for (var b = 0; b < max; b++) {
      var best = null;
      for (var i = Math.floor(b * per); i < Math.floor((b + 1) * per); i++)
        if (!best || pts[i][1] > best[1]) best = pts[i];
      if (best) out.push(best);
    }
    return out;
  }

  /* Draws (or redraws) a chart into `box`. o: {series: [{name, pts: [[x, y], ...], color,
   * dash}], logY, logX, xFmt, yFmt, yMin, yMax, xTicks: [{v, label}], markers: [{x, label}],
   * empty: text shown when no series has points}. The legend shows each series' last value, or
   * the value under the pointer. */
  function line(box, o) {
    while (box.firstChild) box.removeChild(box.firstChild);
    var svg = el('svg', {viewBox: '0 0 ' + W + ' ' + H, 'class': 'zc', role: 'img'}, box);
    var series = (o.series || []).filter(function (s) { return s.pts && s.pts.length; });
    var xFmt = o.xFmt || secs, yFmt = o.yFmt || num;
    var fx = o.logX ? function (v) { return Math.log10(v); } : function (v) { return v; };
    var fy = o.logY ? function (v) { return Math.log10(v); } : function (v) { return v; };
    var ok = function (p) { return isFinite(p[1]) && (!o.logY || p[1] > 0) && (!o.logX || p[0] > 0); };
    var x0 = Infinity, x1 = -Infinity, y0 = Infinity, y1 = -Infinity, npts = 0;
    series.forEach(function (s) {
      s.pts = s.pts.filter(ok);
      s.pts.forEach(function (p) {
        x0 = Math.min(x0, fx(p[0])); x1 = Math.max(x1, fx(p[0]));
        y0 = Math.min(y0, fy(p[1])); y1 = Math.max(y1, fy(p[1]));
        npts++;
      });
    });
    svg.setAttribute('data-points', String(npts));
    if (!npts) {
      var t = el('text', {x: W / 2, y: H / 2, 'text-anchor': 'middle', 'class': 'empty'}, svg);
      t.textContent = o.empty || 'no data yet';
      return;
    }
    if (o.xMin !== undefined) x0 = Math.min(x0, fx(o.xMin));
    if (o.xMax !== undefined) x1 = Math.max(x1, fx(o.xMax));
    if (!o.logY) { y0 = Math.min(0, y0); }
    if (o.yMin !== undefined) y0 = fy(o.yMin);
    if (o.yMax !== undefined) y1 = Math.max(y1, fy(o.yMax));
    if (o.logY) { y0 = Math.floor(y0); y1 = Math.max(Math.ceil(y1), y0 + 1); }
    if (y1 <= y0) y1 = y0 + 1;
    if (x1 <= x0) x1 = x0 + 1;
    var sx = function (v) { return ML + (fx(v) - x0) / (x1 - x0) * (W - ML - MR); };
    var sy = function (v) { return H - MB - (fy(v) - y0) / (y1 - y0) * (H - MT - MB); };
    var g = el('g', {'class': 'grid'}, svg);
    var yt = [];
    if (o.logY) for (var e = y0; e <= y1; e++) yt.push(Math.pow(10, e));
    else yt = ticks(y0, y1, 4);
    yt.forEach(function (v) {
      el('line', {x1: ML, x2: W - MR, y1: sy(v), y2: sy(v)}, g);
      var t = el('text', {x: ML - 4, y: sy(v) + 4, 'text-anchor': 'end'}, svg);
      t.textContent = yFmt(v);
    });
    var xs = ticks(x0, x1, 6), xstep = xs.length > 1 ? xs[1] - xs[0] : 1;
    var xt = o.xTicks || xs.map(function (v) {
      return {v: v, label: xstep < 1 && !o.xFmt ? v.toFixed(1) + 's' : xFmt(v)};
    });
    xt.forEach(function (t) {
      if (fx(t.v) < x0 - 1e-9 || fx(t.v) > x1 + 1e-9) return;
      el('line', {x1: sx(t.v), x2: sx(t.v), y1: MT, y2: H - MB}, g);
      var tx = el('text', {x: sx(t.v), y: H - MB + 14, 'text-anchor': 'middle'}, svg);
      tx.textContent = t.label;
    });
    el('line', {x1: ML, x2: W - MR, y1: H - MB, y2: H - MB, 'class': 'axis'}, svg);
    el('line', {x1: ML, x2: ML, y1: MT, y2: H - MB, 'class': 'axis'}, svg);
    (o.markers || []).forEach(function (m) {
      if (!isFinite(m.x) || fx(m.x) < x0 || fx(m.x) > x1) return;
      el('line', {x1: sx(m.x), x2: sx(m.x), y1: MT, y2: H - MB, 'class': 'marker'}, svg);
      var t = el('text', {x: sx(m.x) + 3, y: MT + 10, 'class': 'marker-label'}, svg);
      t.textContent = m.label;
    });
    series.forEach(function (s, i) {
      s.color = s.color || PALETTE[i % PALETTE.length];
      var d = '';
      thin(s.pts, 700).forEach(function (p, j) {
        d += (j ? 'L' : 'M') + sx(p[0]).toFixed(1) + ' ' + sy(p[1]).toFixed(1);
      });
      var a = {d: d, fill: 'none', stroke: s.color, 'stroke-width': s.width || 1.6};
      if (s.dash) a['stroke-dasharray'] = s.dash;
      el('path', a, svg);
      if (s.pts.length === 1)
        el('circle', {cx: sx(s.pts[0][0]), cy: sy(s.pts[0][1]), r: 2.5, fill: s.color}, svg);
    });
    var leg = html('div', 'legend', box), vals = [];
    series.forEach(function (s) {
      var it = html('span', null, leg);
      var sw = html('span', 'sw', it);
      sw.style.background = s.color;
      html('span', null, it, s.name);
      vals.push(html('span', 'val', it, yFmt(s.pts[s.pts.length - 1][1])));
    });
    var cur = el('line', {y1: MT, y2: H - MB, 'class': 'cursor', visibility: 'hidden'}, svg);
    svg.addEventListener('mousemove', function (ev) {
      var r = svg.getBoundingClientRect();
      var px = (ev.clientX - r.left) / r.width * W;
      if (px < ML || px > W - MR) return;
      var xv = x0 + (px - ML) / (W - ML - MR) * (x1 - x0);
      cur.setAttribute('x1', px); cur.setAttribute('x2', px); cur.setAttribute('visibility', 'visible');
      series.forEach(function (s, i) {
        var best = s.pts[0];
        s.pts.forEach(function (p) { if (Math.abs(fx(p[0]) - xv) < Math.abs(fx(best[0]) - xv)) best = p; });
        vals[i].textContent = yFmt(best[1]) + ' @ ' + xFmt(best[0]);
      });
    });
    svg.addEventListener('mouseleave', function () {
      cur.setAttribute('visibility', 'hidden');
      series.forEach(function (s, i) { vals[i].textContent = yFmt(s.pts[s.pts.length - 1][1]); });
    });
  }

  /* HdrHistogram's percentile plot: x is 1/(1 - p), on a log axis, labelled as percentiles. */
  function pctTicks(maxP) {
    var out = [], labels = ['0%', '90%', '99%', '99.9%', '99.99%', '99.999%', '99.9999%'];
    for (var i = 0; i < labels.length; i++) {
      var p = 1 - Math.pow(10, -i);
      if (i && p > maxP + 1e-12) break;
      out.push({v: 1 / (1 - (i ? p : 0)), label: labels[i]});
    }
    return out;
  }

  return {line: line, html: html, num: num, us: us, pct: pct, secs: secs, pctTicks: pctTicks,
          PALETTE: PALETTE};
})();
