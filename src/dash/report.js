/* report.js -- renders the HTML report from the JSON data block that `zlbench report` wrote
 * beside it. Every value from the report reaches the page through textContent (ZC.html), never
 * as markup, so a target name or config string cannot become HTML. */
'use strict';
(function () {
  var D = JSON.parse(document.getElementById('zlb-data').textContent);
  var R = D.report, BASES = D.baselines || [], H = ZC.html;
  var app = document.getElementById('app');
  var PHASE_NAMES = {connect: 'connect', connect_service: 'connect (service)', dns: 'DNS',
    schedule_lag: 'schedule lag', send_lag: 'send lag', tls_handshake_full: 'TLS handshake (full)',
    tls_handshake_resumed: 'TLS handshake (resumed)', first_byte: 'first byte',
    message_rt: 'message round trip', message_service: 'message (service)',
    http_first_byte: 'HTTP first byte', http_response: 'HTTP request/response',
    http_service: 'HTTP (service)'};

  function section(title, wide) {
    var card = H('div', 'card' + (wide ? ' wide' : ''), grid);
    H('h2', null, card, title);
    return card;
  }
  function table(parent, head, rows) {
    var t = H('table', 'kv', parent);
    if (head) {
      var tr = H('tr', null, t);
      head.forEach(function (h) { H('th', null, tr, h); });
    }
    rows.forEach(function (r) {
      var tr = H('tr', null, t);
      r.forEach(function (c, i) {
        var td = H('td', i && typeof c !== 'object' ? 'num' : null, tr);
        if (c && typeof c === 'object') { td.textContent = c.text; td.className = c.cls || ''; }
        else td.textContent = c === undefined || c === null ? '-' : String(c);
      });
    });
    return t;
  }
  function n(v, d) { return typeof v === 'number' ? ZC.num(v, d) : '-'; }
  function when(s) { return typeof s === 'number' ? new Date(s * 1000).toISOString().replace('.000Z', 'Z') : '-'; }

  /* ---- header: verdict first ---- */
  var head = H('header', 'top', app);
  H('h1', null, head, 'zlbench report');
  H('span', 'meta', head, R.name);
  var failed = (R.thresholds || []).filter(function (t) { return !t.passed; });
  var verdict = R.valid === false ? 'INVALID RUN' : failed.length ? 'THRESHOLDS FAILED' : 'PASSED';
  H('span', 'badge ' + (verdict === 'PASSED' ? 'steady' : 'error'), head, verdict);
  H('span', 'meta', head, 'exit code ' + R.exit_code);
  H('span', 'meta', head, 'ran ' + ZC.secs(R.elapsed_s) + ', stopped by ' + (R.stop_reason || '?'));
  H('span', 'meta', head, 'finished ' + when(R.finished_at_unix_s));
  var gen = R.generator || {};
  if (gen.saturated)
    H('div', 'banner warn', app, 'Generator saturated: ' + (gen.reasons || []).join('; ') +
      ' - the figures describe zlbench, not the target.');
  if (R.valid === false)
    H('div', 'banner bad', app, 'Invalid run: ' + (R.invalid_reason || 'see the generator and the ramp'));
  if (BASES.length)
    H('div', 'banner', app, 'Baselines overlaid (dashed on the latency plots): ' +
      BASES.map(function (b) { return b.name; }).join(', '));

  var c = R.connections || {}, rt = R.rates || {};
  var tiles = H('section', 'tiles', app);
  function tile(label, value, sub) {
    var t = H('div', 'tile', tiles);
    H('div', 'label', t, label);
    H('div', 'value', t, value);
    H('div', 'sub', t, sub || '');
  }
  var lc = (R.latency_us || {}).connect || {};
  tile('connections', n(c.established), 'target ' + n(c.target) + ', attempted ' + n(c.attempted));
  tile('connects/s', n(rt.connects_per_s), 'whole run; ramp ' + n((R.ramp || {}).connects_per_s) + '/s');
  tile('failed', n((c.failed || {}).total), 'failure ratio ' + n(R.failure_ratio, 4));
  tile('messages/s', n(rt.messages_per_s), n(R.messages) + ' in all');
  tile('p99 connect', lc.count ? ZC.us(lc.p99) : '-', lc.count ? 'p50 ' + ZC.us(lc.p50) : '');
  tile('thresholds', (R.thresholds || []).length - failed.length + '/' + (R.thresholds || []).length,
       failed.length ? failed.length + ' failed' : 'all held');

  var grid = H('main', 'grid', app);

  /* ---- summary and thresholds ---- */
  var sum = section('Summary');
  var rows = [['state', R.state], ['elapsed', ZC.secs(R.elapsed_s)], ['stop reason', R.stop_reason],
    ['config hash', R.config_hash], ['connections target', c.target], ['attempted', c.attempted],
    ['established', c.established], ['closed', c.closed], ['failed before established', (c.failed_before_established || {}).total],
    ['failed after established', (c.failed_after_established || {}).total],
    ['connects/s', n(rt.connects_per_s)], ['closes/s', n(rt.closes_per_s)],
    ['messages/s', n(rt.messages_per_s)], ['bytes in/s', n(rt.bytes_in_per_s)], ['bytes out/s', n(rt.bytes_out_per_s)],
    ['ramp', R.ramp ? ZC.secs(R.ramp.seconds) + (R.ramp.target_reached ? ', target reached' : ', target NOT reached') : '-']];
  if (R.steady) rows.push(['steady state', ZC.secs(R.steady.seconds)]);
  if (R.shard) rows.push(['shard', R.shard.index + ' of ' + R.shard.count]);
  BASES.forEach(function (b) {
    rows.push(['baseline ' + b.name + ' connects/s', n((b.rates || {}).connects_per_s)]);
  });
  table(sum, null, rows);

  var th = section('Thresholds');
  if (!(R.thresholds || []).length) H('p', 'hint', th, 'none configured');
  else table(th, ['metric', 'rule', 'observed', 'from', 'verdict'], R.thresholds.map(function (t) {
    return [t.path, t.expr, n(t.observed, 3), t.source,
            {text: t.passed ? 'pass' : 'FAIL', cls: t.passed ? 'pass' : 'fail'}];
  }));

  /* ---- latency ---- */
  var lat = section('Latency distributions (percentile plots, log axes)', true);
  var phases = Object.keys(R.curves || {});
  var table_rows = [];
  Object.keys(R.latency_us || {}).forEach(function (k) {
    var l = R.latency_us[k];
    if (!l.count) return;
    var row = [PHASE_NAMES[k] || k, l.count, ZC.us(l.min), ZC.us(l.p50), ZC.us(l.p90), ZC.us(l.p99),
               ZC.us(l.p999), ZC.us(l.max)];
    table_rows.push(row);
    BASES.forEach(function (b) {
      var bl = (b.latency_us || {})[k];
      if (bl && bl.count)
        table_rows.push(['  baseline ' + b.name, bl.count, ZC.us(bl.min), ZC.us(bl.p50), ZC.us(bl.p90),
                         ZC.us(bl.p99), ZC.us(bl.p999), ZC.us(bl.max)]);
    });
  });
  table(lat, ['phase', 'count', 'min', 'p50', 'p90', 'p99', 'p99.9', 'max'], table_rows);
  var multi = H('div', 'multi', lat);
  var ORDER = ['connect', 'tls_handshake_full', 'tls_handshake_resumed', 'first_byte', 'http_response',
               'http_first_byte', 'message_rt', 'dns', 'connect_service', 'http_service', 'message_service',
               'schedule_lag', 'send_lag'];
  phases.sort(function (a, b) { return (ORDER.indexOf(a) + 100) % 100 - (ORDER.indexOf(b) + 100) % 100; });
  phases.forEach(function (p) {
    var box = H('div', null, multi);
    H('h3', null, box, PHASE_NAMES[p] || p);
    var ch = H('div', 'chart', box);
    var toPts = function (cv) { return cv.map(function (q) { return [1 / (1 - q[0] / 100), q[1]]; }); };
    var ser = [{name: R.name, pts: toPts(R.curves[p]), color: ZC.PALETTE[0], width: 2}];
    BASES.forEach(function (b, i) {
      if (b.curves && b.curves[p])
        ser.push({name: b.name, pts: toPts(b.curves[p]), color: ZC.PALETTE[(i + 1) % 10], dash: '6 4'});
    });
    var maxX = 1;
    ser.forEach(function (s) { s.pts.forEach(function (q) { maxX = Math.max(maxX, q[0]); }); });
    ZC.line(ch, {series: ser, logX: true, logY: true, yFmt: ZC.us, xTicks: ZC.pctTicks(1 - 1 / maxX),
                 xFmt: function (x) { return (100 * (1 - 1 / x)).toPrecision(6).replace(/\.?0+$/, '') + '%'; }});
  });

  /* ---- timeline ---- */
  var tl = R.timeline && R.timeline.rows;
  if (tl && tl.length) {
    var marks = [];
    var last = null;
    tl.forEach(function (r) {
      if (r.stage !== undefined && r.stage !== null && r.stage !== last) marks.push({x: r.t_s, label: 'stage ' + (r.stage + 1)});
      last = r.stage;
    });
    (R.events || []).forEach(function (e) { if (e.what !== 'stage') marks.push({x: e.t_s, label: e.what}); });
    var col = function (k) {
      return tl.filter(function (r) { return typeof r[k] === 'number'; }).map(function (r) { return [r.t_s, r[k]]; });
    };
    var t1 = section('Timeline: connections');
    ZC.line(H('div', 'chart', t1), {markers: marks, series: [{name: 'open', pts: col('open')},
      {name: 'target', pts: col('target_connections'), dash: '5 4', color: '#7f7f7f'}]});
    var t2 = section('Timeline: rates per second');
    ZC.line(H('div', 'chart', t2), {markers: marks, series: [{name: 'attempts/s', pts: col('attempts_per_s')},
      {name: 'connects/s', pts: col('connects_per_s')}, {name: 'failures/s', pts: col('failures_per_s')},
      {name: 'closes/s', pts: col('closes_per_s')}, {name: 'messages/s', pts: col('messages_per_s')}]});
    var t3 = section('Timeline: p99 latency per interval');
    var lp = {};
    tl.forEach(function (r) { for (var k in r.latency_us || {}) lp[k] = true; });
    ZC.line(H('div', 'chart', t3), {markers: marks, logY: true, yFmt: ZC.us, series: Object.keys(lp).map(function (k) {
      return {name: PHASE_NAMES[k] || k, pts: tl.filter(function (r) { return r.latency_us && r.latency_us[k]; })
        .map(function (r) { return [r.t_s, r.latency_us[k].p99]; })};
    })});
    var t4 = section('Timeline: poller load');
    var np = 0;
    tl.forEach(function (r) { np = Math.max(np, (r.pollers || []).length); });
    var ls = [];
    for (var i = 0; i < np; i++) (function (i) {
      ls.push({name: 'poller ' + i, pts: tl.filter(function (r) { return r.pollers && r.pollers[i]; })
        .map(function (r) { return [r.t_s, r.pollers[i].load]; })});
    })(i);
    ZC.line(H('div', 'chart', t4), {markers: marks, series: ls, yFmt: ZC.pct, yMin: 0, yMax: 1});
  }

  /* ---- pollers, failures, events ---- */
  var pl = section('Pollers');
  table(pl, ['poller', 'cpu', 'busy', 'load', 'cpu time', 'loop lag', 'lag max', 'connects'],
    (R.pollers || []).map(function (p) {
      return [p.id, p.cpu, n(p.busy_pct) + '%', n(p.load_pct) + '%', ZC.secs(p.cpu_time_s),
              ZC.us(p.loop_lag_us), ZC.us(p.loop_lag_max_us), p.connects];
    }));
  /* Each poller's load as a bar: an uneven spread shows at a glance. */
  var bars = H('div', 'bars', pl);
  (R.pollers || []).forEach(function (p) {
    var row = H('div', 'bar-row', bars);
    H('span', 'bar-label', row, 'poller ' + p.id);
    var track = H('span', 'bar-track', row);
    var fill = H('span', 'bar-fill', track);
    fill.style.width = Math.min(100, Math.max(0, p.load_pct || 0)).toFixed(1) + '%';
    H('span', 'bar-value', row, n(p.load_pct) + '%');
  });

  var fl = section('Failures');
  var frows = [];
  var f = c.failed || {}, fb = c.failed_before_established || {}, fa = c.failed_after_established || {};
  Object.keys(f).forEach(function (k) {
    if (k !== 'total' && f[k]) frows.push([k, f[k], fb[k], fa[k]]);
  });
  var httpErr = ((R.http || {}).errors) || {};
  Object.keys(httpErr).forEach(function (k) { if (k !== 'total' && httpErr[k]) frows.push(['http ' + k, httpErr[k], '', '']); });
  var st = ((R.http || {}).status) || {};
  ['4xx', '5xx'].forEach(function (k) { if (st[k]) frows.push(['http status ' + k, st[k], '', '']); });
  if (!frows.length) H('p', 'hint', fl, 'no failures');
  else table(fl, ['reason', 'count', 'before established', 'after'], frows);
  (R.targets || []).length && table(fl, ['target', 'attempted', 'established', 'failed'],
    R.targets.map(function (t) { return [t.name, t.attempted, t.established, (t.failed || {}).total]; }));

  if ((R.events || []).length || (R.stages || []).length) {
    var ev = section('Stages and events');
    /* One row per stage: its window, what it moved to, and its own figures (stages[] in the
     * report; a stage never reached has its plan only). */
    if ((R.stages || []).length) table(ev, ['stage', 'window', 'targets', 'open at end', 'connects/s',
      'closes/s', 'failures/s', 'messages/s'], R.stages.map(function (s) {
      var r = s.rates || {}, c = s.connections || {};
      var win = typeof s.start_s === 'number' && typeof s.end_s === 'number'
        ? ZC.secs(s.start_s) + ' - ' + ZC.secs(s.end_s) + (s.completed ? '' : ' (cut short)')
        : 'not reached (' + ZC.secs(s.duration_s) + ' planned)';
      var tg = Object.keys(s.targets || {}).map(function (k) { return k + ' ' + s.targets[k]; }).join(', ') || 'hold';
      return [String(s.index), win, tg, c.open, n(r.connects_per_s), n(r.closes_per_s),
        n(r.failures_per_s), n(r.messages_per_s)];
    }));
    var ol = H('ol', 'events', ev);
    (R.events || []).forEach(function (e) {
      H('li', null, ol, ZC.secs(e.t_s) + '  ' + e.what + (e.to ? ' ' + JSON.stringify(e.to) : '') +
        (e.client ? ' (' + e.client + ')' : ''));
    });
  }

  /* ---- host and config ---- */
  var hs = section('Host');
  var h = R.host || {}, hv = h.versions || {};
  table(hs, null, [['hostname', h.hostname], ['kernel', h.kernel], ['machine', h.machine],
    ['cpus online / allowed', h.cpus_online + ' / ' + h.cpus_allowed], ['zlbench', hv.zlbench + ' (' + hv.commit + ')'],
    ['OpenSSL', hv.openssl], ['jansson', hv.jansson], ['libmicrohttpd', hv.libmicrohttpd],
    ['report generated', when(D.generated_unix_s)]]);
  var cf = section('Effective config', true);
  H('pre', 'config', cf, JSON.stringify(R.config, null, 2));
  document.title = 'zlbench report: ' + R.name + ' - ' + verdict;
})();
