#!/usr/bin/env bash
# it_steer.sh -- live control of a running http run: POST /pause sends nothing while paused (the
# responses counter flat, connections still open), POST /resume carries on; the same guards as
# POST /stop (token: 401 without it; a bare cross-site-style POST: 403); the accounting invariant
# in every snapshot and in the report.
source "$(dirname "$0")/lib.sh"

printf 'steer-token\n' > "$T/token"; chmod 600 "$T/token"
cat > "$T/cfg.json" <<JSON
{ "embedded_target": {"mode": "http"}, "connections": 20, "connect_rate": 0, "duration": "0s",
  "workload": {"type": "http", "request_rate": 1000},
  "control": {"listen": "127.0.0.1:0", "token_file": "$T/token", "address_file": "$T/ctl.addr"},
  "report": {"file": "$T/report.json"} }
JSON
start_daemon zlb "$T/ctl.addr" "$ZLB" -c "$T/cfg.json" -q
ZPID=$DAEMON_PID URL=$DAEMON_URL
AUTH="Authorization: Bearer steer-token"

snap() {
    curl -sf "$URL/stats" -o "$T/s.json" || fail "GET /stats failed"
    check_invariant "$T/s.json" || fail "invariant broken: $(jq -c .connections "$T/s.json")"
    jq -e '.http.requests | .sent == .responses + .failed + .in_flight' "$T/s.json" >/dev/null \
        || fail "request invariant broken: $(jq -c .http.requests "$T/s.json")"
    jq -r '.http.requests.responses' "$T/s.json"
}

wait_for bash -o pipefail -c "[ \"\$(curl -sf '$URL/stats' | jq '.http.requests.responses')\" -ge 500 ]" \
    || fail "no traffic: $(curl -s "$URL/stats" | jq -c .http)"

# The guards of POST /stop.
code=$(curl -s -o /dev/null -w '%{http_code}' -X POST -H 'Content-Type: application/json' "$URL/pause")
[ "$code" = 401 ] || fail "POST /pause without the token answered $code, want 401"
code=$(curl -s -o /dev/null -w '%{http_code}' -X GET -H "$AUTH" "$URL/pause")
[ "$code" = 405 ] || fail "GET /pause answered $code, want 405"
pass "POST /pause: 401 without the token, 405 for GET"

curl -sf -X POST -H "$AUTH" "$URL/pause" | jq -e '.paused == true' >/dev/null || fail "POST /pause"
wait_for bash -o pipefail -c "curl -sf '$URL/run' | jq -e '.paused == true' >/dev/null" \
    || fail "GET /run does not say paused: $(curl -s "$URL/run")"
wait_for sh -c "curl -sf '$URL/stats' | jq -e '.events[-1].what == \"pause\"' >/dev/null" \
    || fail "no pause event in /stats: $(curl -s "$URL/stats" | jq -c .events)"
curl -sf "$URL/run" | jq -e '.connections == 20 and .connect_rate == 0 and .request_rate == 1000 and .stage == null' >/dev/null \
    || fail "GET /run: $(curl -s "$URL/run")"
sleep 0.3 # responses to requests in flight at the pause still arrive
r1=$(snap); sent1=$(jq '.http.requests.sent' "$T/s.json")
for i in 1 2 3 4 5; do sleep 0.2; r=$(snap); done
sent2=$(jq '.http.requests.sent' "$T/s.json"); open=$(jq '.connections.open' "$T/s.json")
echo "   paused 1 s: responses $r1 -> $r, sent $sent1 -> $sent2, open $open"
[ "$r" = "$r1" ] && [ "$sent2" = "$sent1" ] || fail "requests sent while paused: responses $r1 -> $r, sent $sent1 -> $sent2"
[ "$open" = 20 ] || fail "connections closed by the pause: open $open"
pass "paused: nothing sent for 1 s, 20 connections still open"

curl -sf -X POST -H "$AUTH" "$URL/resume" | jq -e '.paused == false' >/dev/null || fail "POST /resume"
sleep 1
r3=$(snap)
echo "   resumed 1 s: responses $r -> $r3"
[ $((r3 - r)) -ge 500 ] || fail "resume: only $((r3 - r)) responses in 1 s at 1000/s"
pass "resumed: $((r3 - r)) responses in the next second"

curl -sf -X POST -H "$AUTH" "$URL/stop" >/dev/null || fail "POST /stop"
wait_exit "$ZPID" 30
check_invariant "$T/report.json" || fail "invariant broken in the report"
jq -e '.http.requests.failed == (.http.errors.cancelled // 0)' "$T/report.json" >/dev/null \
    || fail "requests failed other than cancelled at the stop: $(jq -c .http "$T/report.json")"
pass "report balanced, exit $EXIT_CODE"

# Events: each change in order, with who asked; the report has them all, times never going back.
jq -e '[.events[] | select(.what | test("^(pause|resume|stop|drain)$")) | .what] == ["pause", "resume", "stop", "drain"]
    and ([.events[] | select(.what | test("^(pause|resume|stop)$")) | .client | test("^127\\.0\\.0\\.1:[0-9]+$")] | all)
    and ([.events[] | select(.what == "drain")][0].to.reason == "control_stop")
    and ([.events[] | select(.what == "pause")][0] | .from.paused == false and .to.paused == true)
    and ([.events[].t_s] as $t | $t == ($t | sort))' "$T/report.json" >/dev/null \
    || fail "report events: $(jq -c .events "$T/report.json")"
pass "events in order: $(jq -c '[.events[] | "\(.what)@\(.t_s * 100 | round / 100)"]' "$T/report.json")"
