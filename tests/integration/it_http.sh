#!/usr/bin/env bash
# it_http.sh -- the http workload against `zlbench serve --mode http`: a closed loop (the request
# invariant in every /stats snapshot and the report, every response a 200), an open loop at a
# request_rate (the steady rate is the rate asked for, every request's lateness recorded), the
# configs/http.json example as written, and request templates checked at load (exit 2, FILE:LINE:COLUMN).
source "$(dirname "$0")/lib.sh"

check_requests() { # the request invariant on a /stats document or a report
    jq -e '.http.requests as $q | $q.sent == $q.responses + $q.failed + $q.in_flight' "$@" >/dev/null
}

start_serve --listen 127.0.0.1:0 --mode http --threads 1
HOST=${SERVE_ADDR%:*}
PORT=${SERVE_ADDR##*:}

# ---- (a) closed loop, snapshots while it runs -------------------------------------------------
cat >"$T/closed.json" <<JSON
{ "targets": [{"host": "$HOST", "port": $PORT}], "connections": 50, "connect_rate": 0,
  "duration": "4s", "warmup": "1s", "pollers": {"count": 1},
  "workload": {"type": "http", "requests": [{"path": "/a"}, {"method": "POST", "path": "/b",
    "body": "0123456789", "weight": 3}]},
  "control": {"listen": "127.0.0.1:0", "address_file": "$T/ctl.addr"},
  "report": {"file": "$T/closed.report.json"} }
JSON
start_bg closed "$ZLB" -c "$T/closed.json" -q
ZPID=$BG_PID
wait_for test -s "$T/ctl.addr" || fail "(a) daemon did not start: $(cat "$T/closed.err")"
URL="http://$(cat "$T/ctl.addr")"
n=0
for i in $(seq 1 40); do
    curl -sf "$URL/stats" -o "$T/s.json" 2>/dev/null || break
    [ "$i" = 3 ] && { curl -sf "$URL/metrics" -o "$T/m.txt" || fail "(a) GET /metrics"; }
    check_requests "$T/s.json" || fail "(a) request invariant broken in snapshot $i: $(jq -c .http.requests "$T/s.json")"
    check_invariant "$T/s.json" || fail "(a) connection invariant broken in snapshot $i"
    n=$((n + 1))
    sleep 0.05
done
[ "$n" -ge 5 ] || fail "(a) only $n snapshots"
# /metrics carries the request counters and the status breakdown (checked by promtool when there).
grep -q '^zlbench_http_responses_by_status_total{target="[^"]*",code="200"} [0-9]' "$T/m.txt" \
    || fail "(a) /metrics lacks the status breakdown: $(grep http_ "$T/m.txt" | head -5)"
grep -q '^zlbench_http_requests_total{' "$T/m.txt" || fail "(a) /metrics lacks zlbench_http_requests_total"
if command -v promtool >/dev/null; then
    promtool check metrics <"$T/m.txt" >"$T/promtool.out" 2>&1 || fail "(a) promtool: $(head -5 "$T/promtool.out")"
fi
wait_exit "$ZPID" 30
R="$T/closed.report.json"
[ "$EXIT_CODE" = 0 ] || fail "(a) exit $EXIT_CODE: $(tail -3 "$T/closed.err")"
check_requests "$R" || fail "(a) request invariant in the report: $(jq -c .http.requests "$R")"
check_invariant "$R" || fail "(a) connection invariant in the report"
read -r sent resp rps p99 < <(jq -r '"\(.http.requests.sent) \(.http.requests.responses) \(.steady.rates.requests_per_s) \(.latency_us.http_response.p99)"' "$R")
echo "   closed loop, 50 connections: $sent sent, $resp responses, steady $rps requests/s, http_response p99 $p99 us"
jq -e '.http.requests.responses > 1000 and .http.status["200"] == .http.requests.responses
       and .http.status["2xx"] == .http.requests.responses and .http.errors.total == 0
       and .latency_us.http_response.count == .http.requests.responses
       and .latency_us.http_service.count == .http.requests.responses
       and .steady.http.requests.responses > 0' "$R" >/dev/null \
    || fail "(a) report: $(jq -c '{http, n: .latency_us.http_response.count}' "$R")"
pass "(a) closed loop: $resp responses, all 200, invariant in $n snapshots and the report"

# ---- (b) open loop at 2000 requests/s ----------------------------------------------------------
cat >"$T/open.json" <<JSON
{ "targets": [{"host": "$HOST", "port": $PORT}], "connections": 20, "connect_rate": 0,
  "duration": "4s", "warmup": "1s",
  "workload": {"type": "http", "request_rate": 2000},
  "report": {"file": "$T/open.report.json"} }
JSON
set +e
"$ZLB" -c "$T/open.json" -q --control off >"$T/open.out" 2>"$T/open.err"
EXIT_CODE=$?
set -e
R="$T/open.report.json"
[ -s "$R" ] || fail "(b) no report (exit $EXIT_CODE): $(tail -3 "$T/open.err")"
check_requests "$R" || fail "(b) request invariant"
read -r rps lag sent < <(jq -r '"\(.steady.rates.requests_per_s) \(.latency_us.send_lag.count) \(.http.requests.sent)"' "$R")
echo "   open loop asked 2000/s: steady $rps requests/s, send_lag n=$lag of $sent sent (exit $EXIT_CODE)"
jq -e '.steady.rates.requests_per_s > 1700 and .steady.rates.requests_per_s < 2300' "$R" >/dev/null \
    || fail "(b) steady rate $rps, asked 2000/s"
[ "$lag" = "$sent" ] || fail "(b) send_lag recorded for $lag of $sent requests"
pass "(b) open loop: $rps requests/s for 2000 asked"

# ---- (c) the example config, as written ---------------------------------------------------------
set +e
(cd "$T" && "$ZLB" -c "$REPO/configs/http.json" -d 2s --control off --report "$T/example.json" >"$T/ex.out" 2>"$T/ex.err")
EXIT_CODE=$?
set -e
[ "$EXIT_CODE" = 0 ] || fail "(c) configs/http.json: exit $EXIT_CODE: $(tail -5 "$T/ex.out") $(tail -3 "$T/ex.err")"
grep -q "requests     sent" "$T/ex.out" || fail "(c) no requests line in the summary: $(cat "$T/ex.out")"
grep -q "status.* 200 " "$T/ex.out" || fail "(c) no status codes in the summary"
pass "(c) configs/http.json: exit 0, requests and status codes in the summary"

# ---- (d) templates checked at load --------------------------------------------------------------
printf '{\n  "embedded_target": {"mode": "http"},\n  "workload": {"type": "http",\n    "requests": [{"body_file": "%s/nope.bin"}]}\n}\n' "$T" > "$T/bad.json"
set +e
"$ZLB" validate -c "$T/bad.json" >"$T/bad.out" 2>&1
EXIT_CODE=$?
set -e
[ "$EXIT_CODE" = 2 ] || fail "(d) missing body_file: exit $EXIT_CODE"
grep -q "bad.json:4:[0-9]*: workload.requests\[0\].body_file: cannot read" "$T/bad.out" \
    || fail "(d) message: $(cat "$T/bad.out")"
printf '{"embedded_target": {"mode": "http"}, "workload": {"type": "http", "requests": [{"headers": {"X-A": "a\\r\\nInjected: 1"}}]}}' > "$T/bad2.json"
set +e
"$ZLB" validate -c "$T/bad2.json" >"$T/bad2.out" 2>&1
EXIT_CODE=$?
set -e
[ "$EXIT_CODE" = 2 ] || fail "(d) CRLF in a header value: exit $EXIT_CODE"
pass "(d) templates checked at load: $(head -1 "$T/bad.out")"
