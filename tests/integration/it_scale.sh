#!/usr/bin/env bash
# it_scale.sh -- 15,000 connections held against a separate `zlbench serve` (one process holds
# fewer than 20,000 fds), spread over several source IPs; all accounted for.
source "$(dirname "$0")/lib.sh"
[ "$(ulimit -Hn)" -ge 16000 ] || skip "open-file hard limit $(ulimit -Hn) < 16000"
N=15000
[ -n "${ZLB_SANITIZE:-}" ] && N=5000   # sanitizer builds: same path, fewer connections
clear_time_wait
start_serve --listen 127.0.0.1:0 --threads 1
cat > "$T/cfg.json" <<JSON
{ "targets": [{"host": "127.0.0.1", "port": ${SERVE_ADDR##*:}}],
  "connections": $N, "connect_rate": 10000, "duration": "0s",
  "source_ips": ["127.0.0.2-127.0.0.9"], "socket": {"close": "rst"},
  "control": {"listen": "127.0.0.1:0", "address_file": "$T/ctl.addr"},
  "report": {"file": "$T/report.json"} }
JSON
start_bg zlb "$ZLB" -c "$T/cfg.json" -q
ZPID=$BG_PID
wait_for test -s "$T/ctl.addr" || fail "daemon did not start: $(cat "$T/zlb.err")"
URL="http://$(cat "$T/ctl.addr")"
WAIT_S=60 wait_for bash -o pipefail -c "curl -sf $URL/stats | jq -e '.connections.open == $N'" \
    || fail "never $N open: $(curl -s "$URL/stats" | jq -c .connections)"
curl -sf "$URL/stats" -o "$T/s.json"
check_invariant "$T/s.json" || fail "invariant at $N open"
peers=$(ss -Htn state established "( sport = :${SERVE_ADDR##*:} )" | awk '{print $4}' | sed 's/:[0-9]*$//' | sort -u | wc -l)
[ "$peers" -ge 8 ] || fail "the server sees only $peers distinct peer addresses"
kill -TERM "$ZPID"; wait_exit "$ZPID" 60
check_invariant "$T/report.json" || fail "invariant in the report"
jq -e ".connections.established >= $N and .ramp.target_reached" "$T/report.json" >/dev/null || fail "report"
pass "$N held from $peers source addresses; ramp $(jq .ramp.seconds "$T/report.json") s"
