#!/usr/bin/env bash
# it_control_abuse.sh -- the control port under abuse (issue 13 #1, #2, #4): out of descriptors
# (ulimit -n 256 against 1,000 connections), a slowloris drip of 100 clients, browser-side
# requests (foreign Host, cross-origin POST, control bytes in the path). /health must answer 200
# within a second throughout and stderr stay under a few KB.
source "$(dirname "$0")/lib.sh"

health() { # prints "CODE SECONDS"
    curl -s -m 5 -o /dev/null -w '%{http_code} %{time_total}' "$1/health" || true
}
check_health() { # URL LABEL
    local r; r=$(health "$1")
    echo "   $2: /health -> $r"
    [ "${r%% *}" = 200 ] || fail "$2: /health answered ${r%% *}"
    awk -v t="${r##* }" -v s="$SLOW" 'BEGIN { exit !(t < 1.0 * s) }' || fail "$2: /health took ${r##* } s"
}

# ---- 1. out of descriptors -------------------------------------------------------------------
start_serve
cat > "$T/fd.json" <<JSON
{"targets": [{"host": "${SERVE_ADDR%:*}", "port": ${SERVE_ADDR##*:}}], "connections": 1000,
 "connect_rate": 2000, "duration": "4s", "report": {"file": null},
 "control": {"listen": "127.0.0.1:0", "address_file": "$T/fd.addr"}}
JSON
( ulimit -n 256; exec "$ZLB" -c "$T/fd.json" -q ) >"$T/fd.out" 2>"$T/fd.err" &
ZPID=$!; PIDS+=("$ZPID")
wait_for test -s "$T/fd.addr" || fail "no control address: $(head -c 500 "$T/fd.err")"
URL="http://$(cat "$T/fd.addr")"
wait_for bash -o pipefail -c "curl -sf $URL/stats | jq -e '.connections.failed_before_established.fd_limit > 0'" \
    || fail "never ran out of descriptors: $(curl -s "$URL/stats" | head -c 600)"
for i in 1 2 3; do check_health "$URL" "out of descriptors, try $i"; sleep 0.5; done
curl -sf "$URL/stats" | jq -e '.connections.open > 150' >/dev/null || fail "/stats: $(curl -s "$URL/stats" | head -c 300)"
wait_exit "$ZPID" 30
bytes=$(wc -c < "$T/fd.err")
[ "$bytes" -lt 4096 ] || fail "stderr grew to $bytes bytes: $(head -c 600 "$T/fd.err")"
pass "out of descriptors: /health 200 within 1 s, stderr $bytes bytes, exit $EXIT_CODE"
kill "$SERVE_PID"

# ---- 2. slowloris: 100 clients, one header byte per second -----------------------------------
cat > "$T/sl.json" <<JSON
{"embedded_target": {"mode": "echo", "listen": "127.0.0.1:0"}, "connections": 10,
 "connect_rate": 100, "duration": "30s", "report": {"file": null},
 "control": {"listen": "127.0.0.1:0", "address_file": "$T/sl.addr"}}
JSON
start_bg sl "$ZLB" -c "$T/sl.json" -q
ZPID=$BG_PID
wait_for test -s "$T/sl.addr" || fail "no control address: $(cat "$T/sl.err")"
URL="http://$(cat "$T/sl.addr")"
CTL=$(cat "$T/sl.addr")
python3 "$REPO/tests/tools/slowloris.py" "${CTL%:*}" "${CTL##*:}" 100 8 >"$T/drip.out" 2>&1 &
DRIP=$!; PIDS+=("$DRIP")
sleep 1.5
for i in 1 2 3 4 5 6; do check_health "$URL" "slowloris drip, second $i"; sleep 1; done
curl -sf "$URL/stats" | jq -e '.connections.open == 10' >/dev/null || fail "/stats under the drip"
wait "$DRIP" || fail "slowloris tool: $(cat "$T/drip.out")"
echo "   drip: $(cat "$T/drip.out")"
grep -q 'closed_by_server [1-9]' "$T/drip.out" || fail "no slow client was cut off: $(cat "$T/drip.out")"
pass "slowloris: /health 200 within 1 s every second of the drip"

# ---- 3. browser-side requests ------------------------------------------------------------------
code() { curl -s -o /dev/null -w '%{http_code}' "$@"; }
[ "$(code -H 'Host: evil.com' "$URL/config")" = 421 ] || fail "Host: evil.com not refused"
[ "$(code -H "Host: localhost:${CTL##*:}" "$URL/config")" = 200 ] || fail "Host: localhost refused"
[ "$(code "$URL/stats%00")" = 400 ] || fail "/stats%00 not 400"
[ "$(code "$URL/stats%0d%0aX:%20y")" = 400 ] || fail "CRLF in the path not 400"
[ "$(code -X POST "$URL/stop")" = 403 ] || fail "a bare POST /stop (a cross-site form could send it) not refused"
[ "$(code -X POST -H 'Origin: http://evil.com' -H 'Content-Type: application/json' "$URL/stop")" = 403 ] \
    || fail "cross-origin POST /stop not refused"
curl -sf "$URL/health" >/dev/null || fail "the run stopped on a refused request"
pass "foreign Host 421, control bytes 400, cross-site POST 403, run still going"
[ "$(code -X POST -H 'Content-Type: application/json' "$URL/stop")" = 202 ] || fail "POST /stop with JSON type"
wait_exit "$ZPID" 30
[ "$EXIT_CODE" = 0 ] || fail "exit $EXIT_CODE after /stop"
bytes=$(wc -c < "$T/sl.err")
[ "$bytes" -lt 4096 ] || fail "stderr grew to $bytes bytes under the drip: $(head -c 600 "$T/sl.err")"
pass "stopped by a same-origin POST, exit 0, stderr $bytes bytes"
