#!/usr/bin/env bash
# it_control.sh -- the control port against the running daemon: every endpoint, 20+ snapshots
# while the run ramps (the invariant in each), /metrics as Prometheus text, 404/405/401, /stop.
source "$(dirname "$0")/lib.sh"

printf 's3cret-token\n' > "$T/token"; chmod 600 "$T/token"
cat > "$T/cfg.json" <<JSON
{
  "embedded_target": {"mode": "echo", "listen": "127.0.0.1:0"},
  "connections": 3000,
  "connect_rate": 600,
  "duration": "0s",
  "control": {"listen": "127.0.0.1:0", "token_file": "$T/token", "address_file": "$T/ctl.addr"},
  "report": {"file": "$T/report.json"}
}
JSON
start_bg zlb "$ZLB" -c "$T/cfg.json" -q
ZPID=$BG_PID
wait_for test -s "$T/ctl.addr" || fail "no control address file: $(cat "$T/zlb.err")"
URL="http://$(cat "$T/ctl.addr")"

# 1. At least 20 snapshots, 5 of them while ramping (3000 at 600/s: ~5 s, so a loaded machine
#    whose curl+jq round takes half a second still sees the ramp), invariant in each.
n=0; seen_ramping=0
for i in $(seq 1 200); do
    curl -sf "$URL/stats" -o "$T/s.json" || fail "GET /stats failed"
    check_invariant "$T/s.json" || fail "invariant broken in snapshot $i: $(cat "$T/s.json")"
    jq -e '.schema == "zlbench.stats/1" and (.state|type=="string") and (.elapsed_s|type=="number")
           and (.config_hash|test("^[0-9a-f]{16}$"))
           and (.connections|has("target","attempted","established","open","in_flight","closed","failed"))
           and (.connections.failed|has("total","refused","timeout","dns","reset","fd_limit"))
           and (.ramp|has("target_reached","seconds"))
           and (.rates|has("connects_per_s","closes_per_s","bytes_in_per_s","bytes_out_per_s"))
           and (.latency_us.connect|has("count","min","mean","p50","p90","p99","p999","max"))
           and (.latency_us|has("dns","schedule_lag"))
           and (.pollers|length>=1) and (.pollers[0]|has("id","cpu","policy","priority","load_pct","cpu_time_s","loop_lag_us","open","connects"))
           and (.generator|has("saturated","reasons"))' "$T/s.json" >/dev/null \
        || fail "missing fields in /stats: $(cat "$T/s.json")"
    st=$(jq -r .state "$T/s.json")
    [ "$st" = ramping ] && seen_ramping=$((seen_ramping + 1))
    n=$((n + 1))
    [ "$st" = steady ] && [ $n -ge 20 ] && break
    sleep 0.05
done
[ $n -ge 20 ] || fail "only $n snapshots"
[ $seen_ramping -ge 5 ] || fail "saw the ramp in only $seen_ramping snapshots"
wait_for bash -o pipefail -c "curl -sf $URL/stats | jq -e '.ramp.target_reached == true and .connections.open == 3000'" \
    || fail "3000 connections never open: $(curl -s "$URL/stats")"
pass "$n snapshots ($seen_ramping while ramping), invariant in every one"

# 2. The other endpoints.
curl -sf -D "$T/h" "$URL/stats" -o /dev/null
grep -qi '^content-type: application/json' "$T/h" || fail "/stats content type: $(cat "$T/h")"
curl -sf "$URL/stats/pollers" | jq -e 'type=="array" and length>=1 and (.[0]|has("load_pct"))' >/dev/null \
    || fail "/stats/pollers"
[ "$(curl -s -o /dev/null -w '%{http_code}' "$URL/health")" = 200 ] || fail "/health not 200"
curl -sf "$URL/config" | jq -e '.connections == 3000 and .control.token_file != null' >/dev/null \
    || fail "/config"
curl -sf "$URL/config" | grep -q 's3cret-token' && fail "/config shows the token"
[ "$(curl -s -o /dev/null -w '%{http_code}' "$URL/nope")" = 404 ] || fail "unknown path not 404"
[ "$(curl -s -o /dev/null -w '%{http_code}' -X DELETE "$URL/stats")" = 405 ] || fail "DELETE /stats not 405"
[ "$(curl -s -o /dev/null -w '%{http_code}' "$URL/stop")" = 405 ] || fail "GET /stop not 405"
[ "$(curl -s -o /dev/null -w '%{http_code}' -X POST "$URL/stop")" = 401 ] || fail "POST /stop without token not 401"
[ "$(curl -s -o /dev/null -w '%{http_code}' -X POST -H 'Authorization: Bearer wrong' "$URL/stop")" = 401 ] \
    || fail "POST /stop with a wrong token not 401"
pass "endpoints, 404, 405, 401"

# 3. /metrics, line by line: comments, or `name{labels} value` with a float value.
curl -sf -D "$T/mh" "$URL/metrics" -o "$T/metrics.txt"
grep -qi '^content-type: text/plain; version=0.0.4' "$T/mh" || fail "/metrics content type"
awk '
  /^# (HELP|TYPE) / { next }
  /^[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_][a-zA-Z0-9_]*="[^"]*",?)*\})? [-+]?([0-9.]+([eE][-+]?[0-9]+)?|\+Inf|NaN)$/ { n++; next }
  { print "bad line " NR ": " $0; bad=1 }
  END { if (bad || n < 20) exit 1 }' "$T/metrics.txt" || fail "/metrics is not Prometheus text"
grep -q '^zlbench_connect_seconds_bucket{le="+Inf"} ' "$T/metrics.txt" || fail "no connect histogram"
inf=$(awk '/^zlbench_connect_seconds_bucket\{le="\+Inf"\}/ {print $2}' "$T/metrics.txt")
cnt=$(awk '/^zlbench_connect_seconds_count/ {print $2}' "$T/metrics.txt")
[ "$inf" = "$cnt" ] || fail "+Inf bucket $inf != count $cnt"
awk -F'[ ]' '/^zlbench_connect_seconds_bucket/ { if ($2 < prev) exit 1; prev = $2 }' "$T/metrics.txt" \
    || fail "buckets not cumulative"
nb=$(grep -c '^zlbench_connect_seconds_bucket' "$T/metrics.txt")
[ "$nb" -ge 150 ] || fail "only $nb connect buckets (the ladder has 204 + Inf)"
# Prometheus conventions: base units, _total counters, build info, start time, run state, target.
for m in 'zlbench_build_info{version="' 'zlbench_start_time_seconds ' 'zlbench_run_state{state="steady"} 1' \
         'zlbench_received_bytes_total{target="127.0.0.1:' 'zlbench_sent_bytes_total{target="' \
         'zlbench_connections_established_total{target="' 'zlbench_poller_loop_lag_seconds{poller="0"} ' \
         'zlbench_poller_runqueue_wait_seconds_total{poller="0"} '; do
    grep -qF "$m" "$T/metrics.txt" || fail "/metrics lacks $m"
done
grep -E '^[a-z_]+(\{[^}]*\})? [0-9.]*[0-9]{16,}' "$T/metrics.txt" && fail "float noise in /metrics"
if command -v promtool >/dev/null; then
    promtool check metrics < "$T/metrics.txt" >"$T/promtool.out" 2>&1 \
        || fail "promtool check metrics: $(head -20 "$T/promtool.out")"
    pass "promtool check metrics: clean"
else
    echo "SKIP: promtool not installed (Debian package prometheus); the line checks above still ran"
fi
# histogram_quantile over the buckets against /stats' percentiles of the same snapshot.
ok=0
for i in $(seq 1 20); do
    curl -sf "$URL/metrics" -o "$T/m2.txt" "$URL/stats" -o "$T/s2.json" || fail "GET /metrics+/stats"
    if python3 "$REPO/tests/tools/prom_quantile.py" "$T/m2.txt" "$T/s2.json" 10 >"$T/q.txt" 2>&1; then
        ok=1; break
    fi
    grep -q 'not the same snapshot' "$T/q.txt" || fail "histogram_quantile vs /stats: $(cat "$T/q.txt")"
done
[ $ok = 1 ] || fail "never caught /metrics and /stats from one snapshot: $(cat "$T/q.txt")"
cat "$T/q.txt"
pass "/metrics parsed ($(wc -l < "$T/metrics.txt") lines), histogram_quantile within 10 % of /stats"

# 4. POST /stop with the token: report written, exit 0.
[ "$(curl -s -o /dev/null -w '%{http_code}' -X POST -H 'Authorization: Bearer s3cret-token' "$URL/stop")" = 202 ] \
    || fail "POST /stop with the token not 202"
wait_exit "$ZPID" 30
[ "$EXIT_CODE" = 0 ] || fail "exit code $EXIT_CODE after /stop: $(tail -5 "$T/zlb.err")"
jq -e '.stop_reason == "control_stop" and .state == "done" and .connections.established >= 3000
       and (.histograms.connect.counts|type=="string") and .host.versions.openssl != null' "$T/report.json" >/dev/null \
    || fail "report after /stop: $(head -c 2000 "$T/report.json")"
check_invariant "$T/report.json" || fail "invariant broken in the report"
pass "/stop wrote the report and exited 0"

# 5. The /metrics bucket range is configurable; a range past ten decades is a config error.
cat > "$T/mb.json" <<JSON
{"embedded_target": {"mode": "echo", "listen": "127.0.0.1:0"}, "connections": 10, "duration": "30s",
 "control": {"listen": "127.0.0.1:0", "address_file": "$T/mb.addr",
             "metrics_bucket_min": "1ms", "metrics_bucket_max": "2s"}, "report": {"file": null}}
JSON
start_bg mb "$ZLB" -c "$T/mb.json" -q
MPID=$BG_PID
wait_for test -s "$T/mb.addr" || fail "no control address: $(cat "$T/mb.err")"
curl -sf "http://$(cat "$T/mb.addr")/metrics" -o "$T/mb.txt"
les=$(grep '^zlbench_connect_seconds_bucket' "$T/mb.txt" | sed 's/.*le="\([^"]*\)".*/\1/' | tr '\n' ' ')
case "$les" in "0.001 0.0011 "*" 1.9 2 +Inf ") ;; *) fail "buckets for 1ms..2s: $les" ;; esac
kill "$MPID"
printf '{"control": {"metrics_bucket_min": "1ns"}}' > "$T/mb2.json"
set +e; "$ZLB" validate -c "$T/mb2.json" >/dev/null 2>"$T/mb2.err"; rc=$?; set -e
[ $rc = 2 ] && grep -q 'control.metrics_bucket_min' "$T/mb2.err" || fail "1ns bucket floor: exit $rc $(cat "$T/mb2.err")"
pass "bucket range from the config: $(echo "$les" | wc -w) bounds for 1ms..2s; 1ns refused"
