#!/usr/bin/env bash
# it_patch.sh -- PATCH /run on a running http run: every kind of bad body (wrong types, out of
# range, unknown keys, another workload's rate, malformed JSON with its line and column, bad
# stages, a 1 MiB body, a chunked one, no or a wrong token, cross-origin) is refused with nothing
# changed (GET /run the same before and after, no event); {"connect_rate": 200} shows in GET /run
# at once and in /stats's connects/s (over a 250 ms stats interval) within a second; lowering
# connections closes the difference as closed_by_us with no failure; appended stages start from
# the values in force; the events in /stats and the report are in order with the client; under
# --processes PATCH applies too (it_processes_live.sh checks the shares). The accounting invariant
# in every snapshot polled.
source "$(dirname "$0")/lib.sh"

printf 'patch-token\n' > "$T/token"; chmod 600 "$T/token"
cat > "$T/cfg.json" <<JSON
{ "embedded_target": {"mode": "http"}, "connections": 300, "connect_rate": 20, "duration": "0s",
  "stats_interval": "250ms",
  "workload": {"type": "http", "request_rate": 100},
  "control": {"listen": "127.0.0.1:0", "token_file": "$T/token", "address_file": "$T/ctl.addr"},
  "report": {"file": "$T/report.json"} }
JSON
start_daemon zlb "$T/ctl.addr" "$ZLB" -c "$T/cfg.json" -q
ZPID=$DAEMON_PID URL=$DAEMON_URL
AUTH="Authorization: Bearer patch-token"

snap() { # snap: /stats into $T/s.json, the invariant checked
    curl -sf "$URL/stats" -o "$T/s.json" || fail "GET /stats failed"
    check_invariant "$T/s.json" || fail "invariant broken: $(jq -c .connections "$T/s.json")"
}
# patch STATUS BODY [curl args...]: PATCH /run with the token; the answer in $T/p.json.
patch() {
    local want=$1 body=$2; shift 2
    local code
    code=$(curl -s -o "$T/p.json" -w '%{http_code}' -X PATCH -H "$AUTH" --data-binary "$body" "$@" "$URL/run")
    [ "$code" = "$want" ] || fail "PATCH $(printf %q "$body" | head -c 80): $code, want $want: $(head -c 300 "$T/p.json")"
}
wait_for bash -o pipefail -c "curl -sf '$URL/stats' | jq -e '.connections.established >= 5' >/dev/null" \
    || fail "no connections: $(cat "$T/zlb.err")"
curl -sf "$URL/run" -o "$T/run0.json" || fail "GET /run"
jq -e '.patch == true and .connect_rate == 20 and .connections == 300 and .request_rate == 100' \
    "$T/run0.json" >/dev/null || fail "GET /run before: $(cat "$T/run0.json")"

# Every bad body: 400 with the key path first (the config file's words), nothing changed.
bad() { # bad BODY EXPECTED_ERROR_PREFIX
    patch 400 "$1"
    jq -e --arg p "$2" '.error | startswith($p)' "$T/p.json" >/dev/null \
        || fail "PATCH $1: $(cat "$T/p.json"), want an error starting \"$2\""
}
bad '{"connect_rate": "fast"}' 'connect_rate: expected a number 0..1e9 (0 = unlimited), got a string'
bad '{"connect_rate": -5}' 'connect_rate: expected a number 0..1e9 (0 = unlimited), got -5'
bad '{"connect_rate": 0.0001}' 'connect_rate: expected 0 (unlimited) or a number 0.001..1e9'
bad '{"connections": 1.5}' 'connections: expected an integer 0..10000000, got 1.5'
bad '{"connections": 20000000, "connect_rate": 100}' 'connections: expected an integer 0..10000000'
bad '{"request_rate": true}' 'request_rate: expected a number 0..1e9, got a boolean'
bad '{"paused": "yes"}' 'paused: expected a boolean'
bad '{"connect_rate": 100, "conections": 5}' "conections: unknown key 'conections' (did you mean 'connections'?)"
bad '{"message_rate": 5}' "message_rate: the http workload's rate is request_rate, not message_rate"
bad $'{"connect_rate": 100,\n  "connections": }' 'line 2, column 18: invalid JSON'
bad '{"connect_rate": 100, "connect_rate": 7}' 'line 1, column 36: invalid JSON: duplicate object key'
bad '[{"connect_rate": 100}]' 'expected a JSON object, got an array'
bad '' 'empty body'
bad '{"connect_rate": 100, "stages": [{"duration": "1s", "connections": -1}]}' 'stages[0].connections: expected an integer'
bad '{"stages": [{"duration": "soon"}]}' 'stages[0].duration'
pass "15 bad bodies: 400 with the key path (or line and column) and reason"

head -c 1048576 /dev/zero | tr '\0' ' ' > "$T/big.json"
patch 413 "@$T/big.json"
patch 411 '{"connect_rate": 100}' -H 'Transfer-Encoding: chunked'
code=$(curl -s -o /dev/null -w '%{http_code}' -X PATCH --data-binary '{"connect_rate": 100}' "$URL/run")
[ "$code" = 401 ] || fail "PATCH without the token: $code, want 401"
code=$(curl -s -o /dev/null -w '%{http_code}' -X PATCH -H 'Authorization: Bearer nope' --data-binary '{"connect_rate": 100}' "$URL/run")
[ "$code" = 401 ] || fail "PATCH with a wrong token: $code, want 401"
patch 403 '{"connect_rate": 100}' -H 'Origin: http://evil.example'
code=$(curl -s -o /dev/null -w '%{http_code}' -X PUT -H "$AUTH" "$URL/run")
[ "$code" = 405 ] || fail "PUT /run: $code, want 405"
curl -sf "$URL/run" -o "$T/run1.json" || fail "GET /run"
cmp -s "$T/run0.json" "$T/run1.json" || fail "GET /run changed by refused PATCHes: $(cat "$T/run0.json") -> $(cat "$T/run1.json")"
snap
jq -e '[.events[] | select(.what == "patch")] | length == 0' "$T/s.json" >/dev/null \
    || fail "a refused PATCH made an event: $(jq -c .events "$T/s.json")"
pass "1 MiB body 413, chunked 411, no/wrong token 401, cross-origin 403, PUT 405: GET /run unchanged, no event"

# A good PATCH: GET /run at once (the answer is the document after the change); /stats's
# connects/s over the trailing interval follows within a second.
snap; before=$(jq '.last_interval.connects_per_s' "$T/s.json")
t0=$(date +%s%N)
patch 200 '{"connect_rate": 200}'
jq -e '.connect_rate == 200 and .connections == 300 and .request_rate == 100 and .patch == true' "$T/p.json" >/dev/null \
    || fail "PATCH answer: $(cat "$T/p.json")"
curl -sf "$URL/run" | jq -e '.connect_rate == 200' >/dev/null || fail "GET /run after: $(curl -s "$URL/run")"
seen=""
while [ $(( ($(date +%s%N) - t0) / 1000000 )) -lt $((3000 * SLOW)) ]; do
    snap
    if jq -e '.last_interval.connects_per_s >= 100 or .connections.open == 300' "$T/s.json" >/dev/null; then
        seen=$(( ($(date +%s%N) - t0) / 1000000 )); break
    fi
    sleep 0.05
done
[ -n "$seen" ] || fail "connects/s did not follow the PATCH: $(jq -c .last_interval "$T/s.json")"
echo "   connects/s $before -> $(jq '.last_interval.connects_per_s' "$T/s.json") (open $(jq .connections.open "$T/s.json")) ${seen} ms after the PATCH"
[ "$seen" -le $((1000 * SLOW)) ] || fail "the change took ${seen} ms to show in /stats"
pass "connect_rate 20 -> 200: GET /run at once, /stats connects/s in ${seen} ms"

# Lowering connections: the difference is closed by us, nothing fails.
wait_for bash -o pipefail -c "curl -sf '$URL/stats' | jq -e '.connections.open == 300' >/dev/null" \
    || fail "never 300 open: $(curl -s "$URL/stats" | jq -c .connections)"
snap; cbu0=$(jq '.connections.closed_by_us' "$T/s.json")
patch 200 '{"connections": 50, "close_rate": 0}'
jq -e '.connections == 50' "$T/p.json" >/dev/null || fail "PATCH answer: $(cat "$T/p.json")"
wait_for bash -o pipefail -c "curl -sf '$URL/stats' | jq -e '.connections.open == 50' >/dev/null" \
    || fail "open did not come down to 50: $(curl -s "$URL/stats" | jq -c .connections)"
sleep 0.3 # nothing reopens
snap
jq -e --argjson c0 "$cbu0" '.connections | .open == 50 and .closed_by_us - $c0 == 250
    and .failed.total == 0' "$T/s.json" >/dev/null \
    || fail "lowering to 50: $(jq -c '.connections | {open, closed_by_us, closed_by_peer, failed: .failed.total}' "$T/s.json") (closed_by_us was $cbu0)"
pass "connections 300 -> 50: 250 closed_by_us, none failed, 50 open"

# Stages appended to a run without a profile: they start now, from the values in force.
patch 200 '{"stages": [{"duration": "1s", "connections": 80}, {"duration": "0s", "connections": 90}]}'
jq -e '.stage.index == 0 and .stage.count == 2' "$T/p.json" >/dev/null || fail "PATCH stages answer: $(cat "$T/p.json")"
wait_for bash -o pipefail -c "curl -sf '$URL/stats' | jq -e '.connections.open == 90' >/dev/null" \
    || fail "the appended stages did not bring 90 open: $(curl -s "$URL/stats" | jq -c .connections) $(curl -s "$URL/run")"
snap
pass "stages appended: 50 -> 80 over 1 s, then 90 ($(curl -s "$URL/run" | jq -c .stage))"

# The events: the PATCHes in order, only the keys that changed, with the client; the stages'.
jq -e '[.events[] | select(.what == "patch")] as $p | ($p | length) == 3
    and $p[0].from == {"connect_rate": 20} and $p[0].to == {"connect_rate": 200}
    and $p[1].from == {"connections": 300} and $p[1].to == {"connections": 50}
    and $p[2].from == {"stages": 0} and $p[2].to == {"stages": 2}
    and ([.events[] | select(.what == "stage")] | length) >= 2
    and ([.events[] | select(.what == "stage")][0].t_s >= $p[2].t_s)
    and ($p | map(.client | test("^127\\.0\\.0\\.1:[0-9]+$")) | all)
    and $p[0].t_s < $p[1].t_s and $p[1].t_s < $p[2].t_s' "$T/s.json" >/dev/null \
    || fail "patch events in /stats: $(jq -c .events "$T/s.json")"
pass "/stats events: $(jq -c '[.events[] | select(.what == "patch") | {t_s: (.t_s * 100 | round / 100), to, client}]' "$T/s.json")"

curl -sf -X POST -H "$AUTH" "$URL/stop" >/dev/null || fail "POST /stop"
wait_exit "$ZPID" 30
check_invariant "$T/report.json" || fail "invariant broken in the report"
jq -e '([.events[] | .what] | map(select(. == "patch" or . == "stop" or . == "drain"))) == ["patch", "patch", "patch", "stop", "drain"]
    and ([.events[].t_s] as $t | $t == ($t | sort))' "$T/report.json" >/dev/null \
    || fail "report events: $(jq -c .events "$T/report.json")"
jq -e '.connections.failed_before_established.total == 0 and .connections.failed_after_established.total == (.connections.failed_after_established.cancelled // 0)' \
    "$T/report.json" >/dev/null || fail "failures in the report: $(jq -c .connections "$T/report.json")"
pass "report: events in order, balanced, exit $EXIT_CODE"

# connect_rate 0 live ("as fast as possible", as a config's 0): 1,900 attempts due at once are
# no lateness, so the report does not call the generator saturated for their schedule lag.
cat > "$T/burst.json" <<JSON
{ "embedded_target": {"mode": "echo"}, "connections": 100, "connect_rate": 1000, "duration": "0s",
  "control": {"listen": "127.0.0.1:0", "address_file": "$T/ctlb.addr"}, "report": {"file": "$T/burst.r.json"} }
JSON
start_daemon burst "$T/ctlb.addr" "$ZLB" -c "$T/burst.json" -q
BPID=$DAEMON_PID BURL=$DAEMON_URL
wait_for bash -o pipefail -c "curl -sf '$BURL/stats' | jq -e '.connections.open == 100' >/dev/null" || fail "burst: no 100 open"
curl -sf -X PATCH --data-binary '{"connections": 2000, "connect_rate": 0}' "$BURL/run" >/dev/null || fail "burst PATCH"
wait_for bash -o pipefail -c "curl -sf '$BURL/stats' | jq -e '.connections.open == 2000' >/dev/null" \
    || fail "burst: 2000 never open: $(curl -s "$BURL/stats" | jq -c .connections)"
curl -sf -X POST -H 'X-Zlbench-Request: 1' "$BURL/stop" >/dev/null || fail "POST /stop (burst)"
wait_exit "$BPID" 30
jq -e '[.generator.reasons[] | select(test("schedule_lag"))] | length == 0' "$T/burst.r.json" >/dev/null \
    || fail "a live connect_rate 0 judged as lateness: $(jq -c .generator "$T/burst.r.json")"
pass "connect_rate 0 live: 2000 open, no schedule-lag verdict (exit $EXIT_CODE)"

# --processes: the parent takes the PATCH and hands each child its share (it_processes_live.sh
# checks the shares and what /stats shows).
cat > "$T/procs.json" <<JSON
{ "embedded_target": {"mode": "echo"}, "connections": 20, "connect_rate": 200, "duration": "0s",
  "processes": 2, "control": {"listen": "127.0.0.1:0", "address_file": "$T/ctlp.addr"} }
JSON
start_daemon procs "$T/ctlp.addr" "$ZLB" -c "$T/procs.json" -q
PPID2=$DAEMON_PID PURL=$DAEMON_URL
code=$(curl -s -o "$T/pp.json" -w '%{http_code}' -X PATCH --data-binary '{"connect_rate": 5}' "$PURL/run")
[ "$code" = 200 ] && jq -e '.connect_rate == 5 and .connections == 20' "$T/pp.json" >/dev/null \
    || fail "PATCH under --processes: $code $(cat "$T/pp.json")"
curl -sf "$PURL/run" | jq -e '.connect_rate == 5' >/dev/null || fail "GET /run (--processes): $(curl -s "$PURL/run")"
curl -sf -X POST -H 'X-Zlbench-Request: 1' "$PURL/stop" >/dev/null || fail "POST /stop (--processes)"
wait_exit "$PPID2" 30
pass "--processes: PATCH /run answers 200: $(cat "$T/pp.json")"
