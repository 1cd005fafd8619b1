#!/usr/bin/env bash
# it_restart.sh -- the target killed (SIGKILL) for 2 s and restarted on the same port: every
# connection comes back, the attempts stay within a stated multiple (backoff, not a storm), and the
# accounting invariant holds in every snapshot taken through the outage.
source "$(dirname "$0")/lib.sh"

N=200
start_serve
PORT=${SERVE_ADDR##*:}
cat > "$T/cfg.json" <<JSON
{"targets": [{"host": "127.0.0.1", "port": $PORT}], "connections": $N, "connect_rate": 1000,
 "duration": "60s", "workload": {"type": "hold", "backoff_min": "100ms", "backoff_max": "1s"},
 "control": {"listen": "127.0.0.1:0", "address_file": "$T/ctl.addr"},
 "report": {"file": "$T/report.json"}}
JSON
start_bg zlb "$ZLB" -c "$T/cfg.json" -q
ZPID=$BG_PID
wait_for test -s "$T/ctl.addr" || fail "no control address: $(cat "$T/zlb.err")"
URL="http://$(cat "$T/ctl.addr")"
wait_for bash -o pipefail -c "curl -sf $URL/stats | jq -e '.connections.open == $N'" || fail "never $N open"

kill -KILL "$SERVE_PID"
wait "$SERVE_PID" 2>/dev/null || true
t_kill=$(date +%s.%N)
snaps=0
# Through the outage: the invariant in every snapshot; the connections are seen to drop.
while awk -v a="$t_kill" -v b="$(date +%s.%N)" 'BEGIN { exit !(b - a < 2.0) }'; do
    curl -sf "$URL/stats" -o "$T/s.json" || fail "/stats during the outage"
    check_invariant "$T/s.json" || fail "invariant broken during the outage: $(cat "$T/s.json")"
    snaps=$((snaps + 1)); sleep 0.1
done
jq -e ".connections.open < $N" "$T/s.json" >/dev/null || fail "the kill went unnoticed: $(jq -c .connections "$T/s.json")"
start_bg serve2 "$ZLB" serve --listen "127.0.0.1:$PORT"
WAIT_S=30 wait_for bash -o pipefail -c "curl -sf $URL/stats | jq -e '.connections.open == $N'" \
    || fail "not all $N back after the restart: $(curl -s "$URL/stats" | jq -c .connections)"
t_back=$(date +%s.%N)
curl -sf "$URL/stats" -o "$T/s.json"
check_invariant "$T/s.json" || fail "invariant after the restart"
att=$(jq .connections.attempted "$T/s.json")
# Each connection retries once per backoff step: 100 ms, 200, 400, 800, then every 1 s (backoff_max).
# The stated bound: per connection, 5 for the steps plus one per second until all were back.
outage=$(awk -v a="$t_kill" -v b="$t_back" 'BEGIN { printf "%d", b - a + 1 }')
bound=$((N * (1 + 5 + outage)))
[ "$att" -le "$bound" ] || fail "$att attempts for $N connections over ${outage} s (bound $bound)"
curl -sf -X POST -H 'Content-Type: application/json' "$URL/stop" >/dev/null
wait_exit "$ZPID" 30
check_invariant "$T/report.json" || fail "invariant in the report"
pass "killed 2 s, restarted: all $N back $(awk -v a="$t_kill" -v b="$t_back" 'BEGIN { printf "%.1f", b - a }') s after the kill, $att attempts (bound $bound), invariant in $snaps outage snapshots, exit $EXIT_CODE"
