#!/usr/bin/env bash
# it_processes_live.sh -- stages, PATCH /run and pause/resume in a run split with --processes:
# the parent's stager and live values, each process steered with its exact share. A staged echo
# run over 3 processes reaches every hold stage's connections (and each process its share, the
# remainders on the first); an http run over 2 processes shows a PATCH raising connections and
# connect_rate in /stats within seconds, a pause stops opening and sending, a resume carries on;
# the accounting invariant in every /stats snapshot and in the reports.
source "$(dirname "$0")/lib.sh"

snap() { # URL -> $T/s.json, invariants checked
    curl -sf "$1/stats" -o "$T/s.json" || fail "GET /stats failed"
    check_invariant "$T/s.json" || fail "invariant broken: $(jq -c .connections "$T/s.json")"
}

# ---- a staged profile over 3 processes -----------------------------------------------------------
# Moves to 91, 151 and 31 connections (none divides by 3), each followed by a hold whose end
# must show the count reached exactly. Sanitizer builds: the same profile (it is short).
cat > "$T/stages.json" <<JSON
{ "embedded_target": {"mode": "echo", "listen": "127.0.0.1:0"},
  "connections": 0, "connect_rate": 1000, "close_rate": 400,
  "workload": {"type": "echo", "message_size": "64B", "message_rate": 0},
  "stages": [
    {"duration": "0.6s", "connections": 91, "message_rate": 301},
    {"duration": "1s"},
    {"duration": "0.5s", "connections": 151},
    {"duration": "1s"},
    {"duration": "0.5s", "connections": 31, "message_rate": 100},
    {"duration": "1.5s"}
  ],
  "control": {"listen": "127.0.0.1:0", "address_file": "$T/st.addr"},
  "report": {"file": "$T/stages-report.json"} }
JSON
start_daemon st "$T/st.addr" "$ZLB" -c "$T/stages.json" --processes 3 -q
ZPID=$DAEMON_PID URL=$DAEMON_URL
n=0 shares="" run=""
while kill -0 "$ZPID" 2>/dev/null; do
    curl -sf "$URL/stats" -o "$T/s.json" 2>/dev/null || break
    check_invariant "$T/s.json" || fail "invariant broken in snapshot $n: $(jq -c .connections "$T/s.json")"
    n=$((n + 1))
    # The last hold, once settled: each process holds its own share of 31 (the latest look; the
    # /stats taken before a GET /run that still says the hold, so never one of the drain).
    rm -f "$T/run.json"
    if curl -sf "$URL/run" -o "$T/run.json" 2>/dev/null; then
        run=$(jq -c '[.connections, .stage.index, .stage.elapsed_s]' "$T/run.json")
        jq -e '.stage.index == 5 and .stage.elapsed_s > 0.6' "$T/run.json" >/dev/null \
            && shares=$(jq -c '[.processes.list[].connections.open]' "$T/s.json")
    fi
    sleep 0.1
done
echo "   last hold: GET /run [connections, stage, elapsed_s] $run, processes open $shares (want [11,10,10])"
wait_exit "$ZPID" 10
R="$T/stages-report.json"
# A shared, loaded 2-CPU box (or a sanitizer) may judge itself saturated: exit 5 accepted only
# for that, with every check below still made.
if [ "$EXIT_CODE" = 5 ] && jq -e '.generator.saturated and .processes.failure == null' "$R" >/dev/null; then
    echo "   NOTE: exit 5 accepted: the run judged itself saturated: $(jq -c .generator.reasons "$R")"
    EXIT_CODE=0
fi
[ "$EXIT_CODE" = 0 ] || fail "staged run exit $EXIT_CODE: $(jq -c '{invalid_reason, stop_reason}' "$R" 2>/dev/null) $(tail -3 "$T/st.err")"
[ $n -ge 10 ] || fail "only $n /stats snapshots read"
check_invariant "$R" || fail "report invariant"
jq -c '.stages[] | {index, completed, target: .connections.target, open: .connections.open}' "$R"
jq -e '(.stages | length) == 6 and ([.stages[].completed] | all)
       and ([.stages[].connections.target] == [91, 91, 151, 151, 31, 31])
       and ([.stages[1, 3, 5].connections.open] == [91, 151, 31])
       and .connections.failed.total == 0' "$R" >/dev/null \
    || fail "stages: $(jq -c '[.stages[] | {index, completed, t: .connections.target, o: .connections.open}]' "$R")"
jq -e '[.events[] | select(.what == "stage") | .to.index] == [0, 1, 2, 3, 4, 5]' "$R" >/dev/null \
    || fail "stage events: $(jq -c '[.events[] | {what, to}]' "$R")"
[ "$shares" = "[11,10,10]" ] || fail "processes' shares in the last hold: $shares, want [11,10,10]"
jq -e '[.processes.list[].connections_goal] == [11, 10, 10] and ([.processes.list[].state] | unique == ["ok"])' "$R" >/dev/null \
    || fail "processes: $(jq -c '[.processes.list[] | {connections_goal, state}]' "$R")"
pass "staged run over 3 processes: every hold reached (91, 151, 31), shares [11,10,10], $n snapshots balanced"

# ---- PATCH /run, pause and resume over 2 processes ------------------------------------------------
cat > "$T/live.json" <<JSON
{ "embedded_target": {"mode": "http", "listen": "127.0.0.1:0"},
  "connections": 10, "connect_rate": 1000, "duration": "0s",
  "workload": {"type": "http", "request_rate": 400},
  "control": {"listen": "127.0.0.1:0", "address_file": "$T/lv.addr"},
  "report": {"file": "$T/live-report.json"} }
JSON
start_daemon lv "$T/lv.addr" "$ZLB" -c "$T/live.json" --processes 2 -q
ZPID=$DAEMON_PID URL=$DAEMON_URL
wait_for bash -o pipefail -c "curl -sf '$URL/stats' | jq -e '.connections.open == 10 and .http.requests.responses > 50'" \
    || fail "did not reach 10 connections: $(curl -s "$URL/stats" | jq -c '{c: .connections.open, h: .http.requests}')"
snap "$URL"
curl -sf "$URL/run" | jq -e '.connections == 10 and .connect_rate == 1000 and .request_rate == 400 and .paused == false' >/dev/null \
    || fail "GET /run: $(curl -s "$URL/run")"

t0=$(date +%s.%N)
code=$(curl -s -o "$T/patch.json" -w '%{http_code}' -X PATCH -H 'Content-Type: application/json' \
    -d '{"connections": 31, "connect_rate": 2001, "request_rate": 801}' "$URL/run")
[ "$code" = 200 ] || fail "PATCH /run answered $code: $(cat "$T/patch.json")"
jq -e '.connections == 31 and .connect_rate == 2001 and .request_rate == 801' "$T/patch.json" >/dev/null \
    || fail "PATCH answer: $(cat "$T/patch.json")"
wait_for bash -o pipefail -c "curl -sf '$URL/stats' | jq -e '.connections.open == 31'" \
    || fail "PATCH did not reach 31 open: $(curl -s "$URL/stats" | jq -c .connections)"
t1=$(date +%s.%N)
snap "$URL"
echo "   PATCH connections 10 -> 31: /stats open $(jq .connections.open "$T/s.json") (want 31) after $(echo "$t1 - $t0" | bc) s; processes $(jq -c '[.processes.list[] | {goal: .connections_goal, open: .connections.open}]' "$T/s.json")"
awk -v a="$t0" -v b="$t1" 'BEGIN { exit !(b - a < 3) }' || fail "PATCH took more than 3 s to show"
jq -e '[.processes.list[].connections.open] == [16, 15] and [.processes.list[].connections_goal] == [16, 15]
       and .connections.target == 31' "$T/s.json" >/dev/null \
    || fail "processes after the PATCH: $(jq -c '{t: .connections.target, p: [.processes.list[] | {connections_goal, open: .connections.open}]}' "$T/s.json")"
# The request rate's split shows as the sum: 801/s over the next second, within the scheduler's
# tolerance on a loaded box.
sleep 0.5
snap "$URL"; r1=$(jq .http.requests.sent "$T/s.json"); ts1=$(jq .elapsed_s "$T/s.json")
sleep 1
snap "$URL"; r2=$(jq .http.requests.sent "$T/s.json"); ts2=$(jq .elapsed_s "$T/s.json")
rate=$(awk -v a="$r1" -v b="$r2" -v x="$ts1" -v y="$ts2" 'BEGIN { printf "%.0f", (b - a) / (y - x) }')
echo "   request_rate 801 over 2 processes: $rate requests/s measured over $(awk -v x="$ts1" -v y="$ts2" 'BEGIN { printf "%.2f", y - x }') s"
[ -n "${ZLB_SANITIZE:-}" ] || awk -v r="$rate" 'BEGIN { exit !(r > 600 && r < 1000) }' \
    || fail "request rate after the PATCH: $rate/s, want about 801"
pass "PATCH over 2 processes: 31 connections (16 + 15) in /stats within 3 s, request rate $rate/s"

curl -sf -X POST -H 'Content-Type: application/json' "$URL/pause" | jq -e '.paused == true' >/dev/null || fail "POST /pause"
code=$(curl -s -o "$T/patch.json" -w '%{http_code}' -X PATCH -H 'Content-Type: application/json' \
    -d '{"connections": 51}' "$URL/run")
[ "$code" = 200 ] || fail "PATCH while paused answered $code: $(cat "$T/patch.json")"
sleep 0.5 # what was in flight at the pause lands
snap "$URL"; a1=$(jq .connections.attempted "$T/s.json"); s1=$(jq .http.requests.sent "$T/s.json")
sleep 1
snap "$URL"; a2=$(jq .connections.attempted "$T/s.json"); s2=$(jq .http.requests.sent "$T/s.json")
open=$(jq .connections.open "$T/s.json")
echo "   paused 1 s with connections raised to 51: attempted $a1 -> $a2, sent $s1 -> $s2, open $open (want 31)"
[ "$a1" = "$a2" ] && [ "$s1" = "$s2" ] && [ "$open" = 31 ] || fail "opened or sent while paused"
curl -sf -X POST -H 'Content-Type: application/json' "$URL/resume" | jq -e '.paused == false' >/dev/null \
    || fail "POST /resume"
wait_for bash -o pipefail -c "curl -sf '$URL/stats' | jq -e '.connections.open == 51 and ([.processes.list[].connections.open] == [26, 25])'" \
    || fail "resume did not reach 51 (26 + 25): $(curl -s "$URL/stats" | jq -c '[.connections.open, [.processes.list[].connections.open]]')"
snap "$URL"
[ "$(jq .http.requests.sent "$T/s.json")" -gt "$s2" ] || fail "nothing sent after the resume"
echo "   resumed: open $(jq .connections.open "$T/s.json") = $(jq -c '[.processes.list[].connections.open]' "$T/s.json"), sent $(jq .http.requests.sent "$T/s.json")"
pass "pause over 2 processes: nothing opened or sent for 1 s; resume opened the PATCHed 51 (26 + 25)"

curl -sf -X POST -H 'Content-Type: application/json' "$URL/stop" >/dev/null || fail "POST /stop"
wait_exit "$ZPID" 15
R="$T/live-report.json"
[ "$EXIT_CODE" = 0 ] || jq -e '.generator.saturated and .processes.failure == null' "$R" >/dev/null \
    || fail "live run exit $EXIT_CODE: $(jq -c '{invalid_reason, stop_reason}' "$R" 2>/dev/null) $(tail -3 "$T/lv.err")"
check_invariant "$R" || fail "report invariant"
jq -e '[.events[] | select(.what | test("^(patch|pause|resume)$")) | .what] == ["patch", "pause", "patch", "resume"]
       and ([.processes.list[].connections_goal] == [26, 25]) and .connections.failed.total == 0' "$R" >/dev/null \
    || fail "report: $(jq -c '{e: [.events[] | .what], g: [.processes.list[].connections_goal], f: .connections.failed.total}' "$R")"
pass "report: events patch, pause, patch, resume; processes' goals [26, 25]; no failure"
