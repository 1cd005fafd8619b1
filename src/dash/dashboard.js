/* dashboard.js -- the live page on the control port: polls /stats (and /stats/series, /run where
 * this binary has them) and draws the run. The token, when the port wants one, lives in this
 * page's memory only; nothing is stored in the browser or sent anywhere but this port. */
'use strict';
(function () {
  var PHASES = [['connect', 'connect'], ['tls_handshake_full', 'TLS handshake (full)'],
                ['tls_handshake_resumed', 'TLS handshake (resumed)'], ['first_byte', 'first byte'],
                ['http_response', 'HTTP request/response'], ['message_rt', 'message round trip']];
  var MAX_ROWS = 7200;
  var q = new URLSearchParams(location.search);
  var S = {
    period: Math.max(100, Number(q.get('interval')) || 1000),
    token: null, rows: [], lastT: -1, source: null, prev: null, stats: null,
    run: null, hasRun: null, errors: 0, done: false, events: []
  };
  var $ = function (id) { return document.getElementById(id); };
  var H = ZC.html;

  function headers(extra) {
    var h = extra || {};
    if (S.token) h.Authorization = 'Bearer ' + S.token;
    return h;
  }
  /* GET or POST a JSON document. 401 shows the token form; 404 is an answer (an endpoint this
   * binary does not have), not an error. */
  function api(path, opts) {
    opts = opts || {};
    return fetch(path, {method: opts.method || 'GET', cache: 'no-store', headers: headers(opts.headers),
                        body: opts.body}).then(function (r) {
      if (r.status === 401) { askToken(); throw new Error('401'); }
      if (r.status === 404) return null;
      return r.json().then(function (j) {
        if (!r.ok) throw new Error(path + ': ' + r.status + ' ' + (j && j.error ? j.error : ''));
        return j;
      });
    });
  }
  function askToken() {
    if (!$('tokenform').hidden) return;
    $('tokenform').hidden = false;
    $('token').focus();
  }
  $('tokenform').addEventListener('submit', function (ev) {
    ev.preventDefault();
    S.token = $('token').value.trim() || null;
    $('token').value = '';
    $('tokenform').hidden = true;
    var again = S.pending;
    S.pending = null;
    if (again) again();
    schedule(0);
  });

  /* Without /stats/series the rows are made here from consecutive /stats documents: counters'
   * differences for the rates, the cumulative percentiles for latency (said so on the page). */
  function rowFromStats(st, prev) {
    var c = st.connections, row = {t_s: st.elapsed_s, state: st.state, stage: null,
      open: c.open, target_connections: c.target, latency_us: {}, pollers: [], failures: {}};
    var dt = prev ? st.elapsed_s - prev.elapsed_s : 0;
    if (prev && dt > 0) {
      var pc = prev.connections;
      row.dt_s = dt;
      row.attempts_per_s = (c.attempted - pc.attempted) / dt;
      row.connects_per_s = (c.established - pc.established) / dt;
      row.failures_per_s = (c.failed.total - pc.failed.total) / dt;
      row.closes_per_s = (c.closed - pc.closed) / dt;
      row.messages_per_s = ((st.messages || 0) - (prev.messages || 0)) / dt;
      for (var k in c.failed)
        if (k !== 'total' && c.failed[k] > pc.failed[k]) row.failures[k] = c.failed[k] - pc.failed[k];
    }
    PHASES.forEach(function (p) {
      var l = st.latency_us && st.latency_us[p[0]];
      if (l && l.count) row.latency_us[p[0]] = l;
    });
    (st.pollers || []).forEach(function (p) {
      row.pollers.push({load: (p.load_pct || 0) / 100, loop_lag_us: p.loop_lag_us});
    });
    return row;
  }
  function addRows(rows) {
    rows.forEach(function (r) { if (r.t_s > S.lastT) { S.rows.push(r); S.lastT = r.t_s; } });
    if (S.rows.length > MAX_ROWS) S.rows.splice(0, S.rows.length - MAX_ROWS);
  }

  function poll() {
    var st;
    return api('/stats').then(function (j) {
      if (!j) throw new Error('/stats: 404');
      st = j;
      if (S.source === 'stats') return null;
      return api('/stats/series?since=' + S.lastT);
    }).then(function (series) {
      if (series && series.rows) {
        S.source = 'series';
        addRows(series.rows);
      } else if (st.state !== 'done') {
        S.source = 'stats';
        if (!S.prev || st.elapsed_s > S.prev.elapsed_s) {
          addRows([rowFromStats(st, S.prev)]);
          S.prev = st;
        }
      }
      S.stats = st;
      if (S.hasRun === false || st.state === 'done') return null;
      return api('/run').then(function (run) { S.hasRun = !!run; S.run = run; });
    }).then(function () {
      S.errors = 0;
      S.done = st.state === 'done';
      render();
    });
  }
  var timer = null;
  function schedule(ms) {
    clearTimeout(timer);
    timer = setTimeout(function () {
      var t0 = Date.now();
      poll().catch(function (e) {
        if (e.message === '401') return;
        S.errors++;
        banner('No answer from the control port (' + e.message + '); the run may have ended.', 'bad');
      }).then(function () {
        /* A fixed rate: a slow answer delays the next poll by no more than its own lateness. */
        if (!S.done && S.errors < 30)
          schedule(S.errors ? S.period * Math.min(S.errors, 5) : Math.max(0, S.period - (Date.now() - t0)));
      });
    }, ms);
  }

  function banner(text, cls) {
    var b = $('banner');
    b.hidden = !text;
    b.className = 'banner ' + (cls || '');
    b.textContent = text || '';
  }
  function setVal(id, text, raw) {
    var e = $(id);
    e.textContent = text;
    if (raw !== undefined) e.setAttribute('data-v', String(raw));
  }

  function render() {
    var st = S.stats, c = st.connections, li = st.last_interval || {};
    var paused = S.run && S.run.paused;
    var state = paused ? 'paused' : st.state;
    $('state').textContent = state;
    $('state').className = 'badge ' + state;
    $('elapsed').textContent = ZC.secs(st.elapsed_s);
    $('elapsed').setAttribute('data-v', String(st.elapsed_s));
    var stg = S.run && S.run.stage;
    $('stage').textContent = stg ? 'stage ' + (stg.index + 1) + '/' + stg.count + ' (' +
      ZC.secs(stg.elapsed_s) + ' of ' + ZC.secs(stg.duration_s) + ')' : '';
    $('source').textContent = S.source === 'series' ? 'series' : 'from /stats';
    $('period').textContent = String(S.period / 1000);
    setVal('v-open', ZC.num(c.open), c.open);
    $('v-target').textContent = 'target ' + c.target;
    setVal('v-cps', ZC.num(li.connects_per_s), li.connects_per_s);
    setVal('v-fps', ZC.num(li.failures_per_s), li.failures_per_s);
    $('v-failed').textContent = c.failed.total + ' failed in all';
    setVal('v-mps', ZC.num(li.messages_per_s), li.messages_per_s);
    var lc = st.latency_us && st.latency_us.connect;
    setVal('v-p99', lc && lc.count ? ZC.us(lc.p99) : '-', lc ? lc.p99 : '');
    $('v-p50').textContent = lc && lc.count ? 'p50 ' + ZC.us(lc.p50) : '';
    var gen = st.generator || {};
    setVal('v-gen', gen.saturated ? 'SATURATED' : 'ok', gen.saturated ? 1 : 0);
    var pl = st.pollers || [];
    $('v-pollers').textContent = pl.length + ' pollers, max load ' +
      ZC.pct(Math.max.apply(null, pl.map(function (p) { return (p.load_pct || 0) / 100; }).concat([0])));
    var sat = $('saturation');
    sat.hidden = !gen.saturated;
    sat.textContent = gen.saturated ? 'Generator saturated: ' + (gen.reasons || []).join('; ') +
      ' - figures describe zlbench, not the target.' : '';
    if (S.errors === 0) banner(S.done ? 'The run is over (' + (st.stop_reason || 'done') + ').' : '');
    controls(st);
    charts(st);
    events(st);
  }

  function controls(st) {
    var live = !S.done;
    $('stop').disabled = !live;
    var run = S.run;
    $('pause').hidden = !run || run.paused || !live;
    $('resume').hidden = !run || !run.paused || !live;
    /* A rate field only where GET /run says PATCH /run is served (`patch: true`): until then
     * pause and resume are the live controls there are. */
    $('ratebox').hidden = !run || !live || run.patch !== true;
    if (run) {
      var key = ['request_rate', 'message_rate', 'stream_rate'].filter(function (k) {
        return typeof run[k] === 'number';
      })[0] || 'connect_rate';
      $('ratebox').setAttribute('data-key', key);
      $('ratelabel').textContent = key.replace('_', ' ');
      if (document.activeElement !== $('rate')) $('rate').value = String(run[key]);
    }
  }
  /* POSTs carry a custom header: the control port refuses cross-site forms without one. */
  function act(path, body) {
    var opts = {method: body ? 'PATCH' : 'POST', headers: {'X-Zlbench-Request': 'dashboard'}};
    if (body) { opts.headers['Content-Type'] = 'application/json'; opts.body = JSON.stringify(body); }
    return api(path, opts).then(function (j) {
      if (j && typeof j.paused === 'boolean') S.run = j;
      schedule(0);
    }).catch(function (e) {
      if (e.message === '401') S.pending = function () { act(path, body); };
      else banner(e.message, 'bad');
    });
  }
  $('stop').addEventListener('click', function () { act('/stop'); });
  $('pause').addEventListener('click', function () { act('/pause'); });
  $('resume').addEventListener('click', function () { act('/resume'); });
  $('setrate').addEventListener('click', function () {
    var v = Number($('rate').value), b = {};
    if (!isFinite(v) || v < 0) return banner('rate: a number >= 0, please', 'bad');
    b[$('ratebox').getAttribute('data-key')] = v;
    act('/run', b);
  });

  function pts(key) {
    return S.rows.filter(function (r) { return typeof r[key] === 'number'; })
      .map(function (r) { return [r.t_s, r[key]]; });
  }
  function markers(st) {
    var m = [], lastStage = null;
    S.rows.forEach(function (r) {
      if (r.stage !== undefined && r.stage !== null && r.stage !== lastStage)
        m.push({x: r.t_s, label: 'stage ' + (r.stage + 1)});
      lastStage = r.stage;
    });
    (st.events || []).forEach(function (e) { if (e.what !== 'stage') m.push({x: e.t_s, label: e.what}); });
    return m;
  }
  function charts(st) {
    var mk = markers(st);
    /* One time axis for every chart, so that a moment lines up across them. */
    var dom = S.rows.length ? {xMin: S.rows[0].t_s, xMax: S.rows[S.rows.length - 1].t_s} : {};
    var line = function (box, o) {
      o.xMin = dom.xMin;
      o.xMax = dom.xMax;
      ZC.line(box, o);
    };
    line($('c-conn'), {markers: mk, series: [{name: 'open', pts: pts('open')},
      {name: 'target', pts: pts('target_connections'), dash: '5 4', color: '#7f7f7f'}]});
    line($('c-rates'), {markers: mk, series: [{name: 'attempts/s', pts: pts('attempts_per_s')},
      {name: 'connects/s', pts: pts('connects_per_s')}, {name: 'failures/s', pts: pts('failures_per_s')},
      {name: 'closes/s', pts: pts('closes_per_s')}, {name: 'messages/s', pts: pts('messages_per_s')}]});
    $('lat-note').textContent = S.source === 'series' ? 'per interval' :
      'cumulative since the start (this binary has no /stats/series)';
    var box = $('c-lat'), shown = 0;
    PHASES.forEach(function (p) {
      var rows = S.rows.filter(function (r) { return r.latency_us && r.latency_us[p[0]]; });
      var id = 'c-lat-' + p[0], div = $(id);
      if (!rows.length) { if (div) div.parentNode.removeChild(div); return; }
      if (!div) {
        div = H('div', null, null);
        div.id = id;
        H('h3', null, div, p[1]);
        H('div', 'chart', div);
        box.appendChild(div);
      }
      shown++;
      var ser = ['p50', 'p90', 'p99', 'max'].map(function (k) {
        return {name: k, pts: rows.map(function (r) { return [r.t_s, r.latency_us[p[0]][k]]; })};
      });
      line(div.lastChild, {series: ser, logY: true, yFmt: ZC.us, markers: mk});
    });
    if (!shown && !box.firstChild) H('p', 'hint', box, 'no latency samples yet');
    else if (shown && box.firstChild && box.firstChild.tagName === 'P') box.removeChild(box.firstChild);
    var np = 0;
    S.rows.forEach(function (r) { np = Math.max(np, (r.pollers || []).length); });
    var load = [], lag = [];
    for (var i = 0; i < np; i++) {
      load.push({name: 'poller ' + i, pts: S.rows.filter(function (r) { return r.pollers && r.pollers[i]; })
        .map(function (r) { return [r.t_s, r.pollers[i].load]; })});
      lag.push({name: 'poller ' + i, pts: S.rows.filter(function (r) { return r.pollers && r.pollers[i]; })
        .map(function (r) { return [r.t_s, r.pollers[i].loop_lag_us]; })});
    }
    line($('c-load'), {series: load, yFmt: ZC.pct, yMin: 0, yMax: 1, markers: mk});
    line($('c-lag'), {series: lag, yFmt: ZC.us, logY: true, markers: mk});
    var reasons = {};
    S.rows.forEach(function (r) { for (var k in r.failures || {}) reasons[k] = true; });
    line($('c-fail'), {markers: mk, empty: 'no failures', series: Object.keys(reasons).map(function (k) {
      return {name: k, pts: S.rows.filter(function (r) { return r.dt_s; }).map(function (r) {
        return [r.t_s, ((r.failures || {})[k] || 0) / r.dt_s]; })};
    })});
    var t = $('t-fail');
    while (t.firstChild) t.removeChild(t.firstChild);
    var f = st.connections.failed;
    Object.keys(f).filter(function (k) { return k !== 'total' && f[k] > 0; }).forEach(function (k) {
      var tr = H('tr', null, t);
      H('td', null, tr, k);
      H('td', 'num', tr, f[k]);
    });
  }
  function events(st) {
    var ol = $('events'), evs = st.events || [];
    if (ol.getAttribute('data-n') === String(evs.length)) return;
    ol.setAttribute('data-n', String(evs.length));
    while (ol.firstChild) ol.removeChild(ol.firstChild);
    if (!evs.length) H('li', 'hint', ol, 'none yet');
    evs.forEach(function (e) {
      var text = ZC.secs(e.t_s) + '  ' + e.what;
      if (e.to) text += ' ' + JSON.stringify(e.to);
      if (e.client) text += ' (' + e.client + ')';
      H('li', null, ol, text);
    });
  }

  schedule(0);
})();
