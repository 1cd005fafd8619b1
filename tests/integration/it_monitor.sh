#!/usr/bin/env bash
# it_monitor.sh -- the generator watching itself and the run's edges: a duration shorter than the
# controller's tick ends on time, and stale report temporaries of a killed run are removed.
source "$(dirname "$0")/lib.sh"

# ---- a 1 ms run ends after 1 ms, not on the next 100 ms tick (issue 13 #7) ----
cat > "$T/short.json" <<JSON
{ "embedded_target": {"mode": "echo", "listen": "127.0.0.1:0"},
  "connections": 100, "connect_rate": 1000, "duration": "1ms",
  "control": {"listen": null}, "report": {"file": "$T/short.report.json"} }
JSON
set +e; "$ZLB" -c "$T/short.json" -q 2>"$T/short.err"; code=$?; set -e
att=$(jq '.connections.attempted' "$T/short.report.json")
echo "duration 1ms at 1000/s: attempted $att of 100 (exit $code)"
# 1000/s: one attempt per ms. Before the fix the run went on to the next tick and opened all 100.
[ "$att" -le $(( 30 * SLOW )) ] || fail "a 1 ms run made $att attempts: it ran to the tick"
jq -e '.stop_reason == "duration"' "$T/short.report.json" >/dev/null || fail "stop reason"
check_invariant "$T/short.report.json" || fail "invariant"
pass "a 1 ms run stops opening after about 1 ms ($att attempts)"

# ---- stale temporaries of a killed report write (issue 13 #8) ----
R="$T/stale.report.json"
touch -d '2 hours ago' "$R.Ab12Cd" "$T/stale.report.json.n-tour" "$T/other.json.Zz99Yy"
touch -d '2 hours ago' "$T/stale.report.jsonXAb12Cd"
sed "s#$T/short.report.json#$R#" "$T/short.json" > "$T/stale.json"
"$ZLB" -c "$T/stale.json" 2>"$T/stale.err" >/dev/null || true
[ ! -e "$R.Ab12Cd" ] || fail "the stale temporary is still there: $(ls "$T")"
for f in stale.report.json.n-tour other.json.Zz99Yy stale.report.jsonXAb12Cd; do
    [ -e "$T/$f" ] || fail "$f was removed, though it is not ours"
done
grep -q "removed stale.report.json.Ab12Cd" "$T/stale.err" || fail "no log line: $(cat "$T/stale.err")"
[ -s "$R" ] || fail "no report"
pass "a stale report temporary removed with a log line; others left alone"

# ---- nothing listening: exit 3 with a clear line, not a silent pass (issue 10 #6) ----
start_serve
PORT=${SERVE_ADDR##*:}
kill -TERM "$SERVE_PID"; wait_exit "$SERVE_PID" 10 # the port is now closed: every attempt refused
cat > "$T/none.json" <<JSON
{ "targets": [{"host": "127.0.0.1", "port": $PORT}], "connections": 50, "connect_rate": 0,
  "duration": "2s", "control": {"listen": null}, "report": {"file": "$T/none.report.json"},
  "workload": {"type": "hold", "backoff_min": "200ms"} }
JSON
set +e; "$ZLB" -c "$T/none.json" >"$T/none.out" 2>"$T/none.err"; code=$?; set -e
echo "nothing listening: exit $code"; grep -E "NO CONNECTION|threshold" "$T/none.out" || true
[ "$code" = 3 ] || fail "a run where nothing connected exited $code, not 3: $(cat "$T/none.out")"
grep -q "NO CONNECTION was established" "$T/none.out" || fail "no clear summary line"
grep -Eq "threshold +connections.established +> 0 +observed 0 +FAIL \(default\)" "$T/none.out" \
    || fail "the default threshold row is missing"
jq -e '.valid == true and .exit_code == 3 and .failure_ratio == 1
    and any(.thresholds[]; .path == "failure_ratio" and .default and (.passed | not))' \
    "$T/none.report.json" >/dev/null || fail "report: $(jq -c '{exit_code, failure_ratio, thresholds}' "$T/none.report.json")"
# A fault-injection run opts out by naming the paths itself.
jq '.thresholds = {"connections.established": ">= 0", "failure_ratio": "<= 1"}' "$T/none.json" > "$T/none-ok.json"
set +e; "$ZLB" -c "$T/none-ok.json" -q 2>/dev/null; code=$?; set -e
[ "$code" = 0 ] || fail "the opt-out did not hold: exit $code"
pass "nothing listening: exit 3 with 'NO CONNECTION' and a default threshold; opt-out exits 0"

# ---- the default run's summary: rates say what they are over, numbers are numbers ----
cat > "$T/hold.json" <<JSON
{ "embedded_target": {"mode": "echo"}, "connections": 1000, "connect_rate": 5000,
  "duration": "2s", "control": {"listen": null}, "report": {"file": "$T/hold.report.json"},
  "thresholds": {"ramp.connects_per_s": "> 500", "ramp.target_reached": "== true"} }
JSON
set +e; "$ZLB" -c "$T/hold.json" >"$T/hold.out" 2>"$T/hold.err"; code=$?; set -e
cat "$T/hold.out"
ramp=$(jq '.ramp.connects_per_s' "$T/hold.report.json")
secs=$(jq '.ramp.seconds' "$T/hold.report.json")
awk "BEGIN{exit !($ramp > 1000 && ($ramp * $secs - 1000)^2 < 1)}" \
    || fail "ramp.connects_per_s $ramp is not 1000 connections over $secs s"
grep -Eq "^  ramp +1000 open after [0-9.]+ s: [0-9]+ connects/s \(requested 5000/s\)" "$T/hold.out" || fail "ramp line"
grep -Eq "^  whole run +average over [0-9.]+ s: " "$T/hold.out" || fail "whole-run line"
grep -Eq "^  steady +average over [0-9.]+ s after the warm-up: " "$T/hold.out" || fail "steady line"
grep -q "latency (us), steady window" "$T/hold.out" || fail "latency table not labelled"
grep -Eq "^  poller 0 +cpu -?[0-9]+ \(normal, nice 0\): busy [0-9.]+%, cpu [0-9.]+%, waiting for a cpu" \
    "$T/hold.out" || fail "poller line: $(grep poller "$T/hold.out")"
! grep -q "other/0" "$T/hold.out" || fail "other/0 is still printed"
grep -Eq "threshold +ramp.target_reached +== true +observed true +pass" "$T/hold.out" || fail "boolean as true/false"
! grep -Eq "[0-9]e[+-][0-9]" "$T/hold.out" || fail "a number in exponent form"
# Top-level rates are whole-run averages: connects over elapsed, not the last (drain) second.
jq -e '(.rates.connects_per_s - .connections.established / .elapsed_s | fabs) < 1
    and (.last_interval | has("seconds", "connects_per_s"))
    and (.pollers[0] | has("busy_pct", "cpu_pct", "runq_wait_pct"))' "$T/hold.report.json" >/dev/null \
    || fail "rates: $(jq -c '{rates, elapsed_s, e: .connections.established, last_interval}' "$T/hold.report.json")"
# The live line (logged when stderr is not a terminal): named fields, at most 79 columns.
live=$(grep -o '\[ *[0-9.]*s\] .*' "$T/hold.err" | tail -1)
echo "live line (${#live} columns): $live"
[ -n "$live" ] && [ "${#live}" -le 79 ] || fail "live line missing or too wide"
echo "$live" | grep -Eq "open [0-9]+/1000 conn/s [0-9]+ connect p99 [0-9.]+(us|ms|s) err 0 busy [0-9]+%,?" \
    || fail "live line fields not named: $live"
pass "summary: ramp rate $ramp/s over $secs s, rates named with their spans, numbers as numbers"

# ---- the README's CI example, as written, against `zlbench serve` (issue 10 #3) ----
# The scenario is the README's own JSON block; only the port (the kernel picks one) and the
# control port (so that parallel runs do not collide) differ.
awk '/^with `perf\/scenario.json` such as:/ {grab=1; next} grab && /^```json/ {on=1; next}
     on && /^```/ {exit} on {print}' "$REPO/README.md" > "$T/readme-scenario.json"
jq -e '.thresholds' "$T/readme-scenario.json" >/dev/null || fail "no scenario JSON found in README.md"
rm -f "$T/serve.addr" # the earlier serve's, now stale
start_serve
PORT=${SERVE_ADDR##*:}
jq --argjson p "$PORT" '.targets[0].port = $p' "$T/readme-scenario.json" > "$T/readme-run.json"
readme_run() {
    clear_time_wait
    set +e
    ( cd "$T" && timeout $((60 * SLOW)) "$ZLB" -c readme-run.json --control 127.0.0.1:0 \
        --report current.json >readme.out 2>readme.err ); code=$?
    set -e
}
readme_run
# Exit 5 says this machine starved the generator (its reasons are printed): that is the host's
# state, not the example's, so it gets one more try; any other failure counts at once.
if [ "$code" = 5 ]; then
    echo "exit 5 on a busy host, once more: $(jq -c .generator.reasons "$T/current.json")"
    readme_run
fi
kill -TERM "$SERVE_PID"; wait_exit "$SERVE_PID" 10
grep -E "ramp|threshold|generator|INVALID|poller|lateness|stall|run_queue|busy:|backlog:" "$T/readme.out" || true
[ "$code" = 0 ] || fail "the README's CI example exited $code: $(cat "$T/readme.out")"
pass "the README's CI example passes against zlbench serve as written"

# ---- start-up: connections that cannot fit the open-files limit, the built-in target counted ----
cat > "$T/fds.json" <<JSON
{ "embedded_target": {"mode": "echo"}, "connections": 200, "connect_rate": 2000,
  "duration": "300ms", "control": {"listen": null}, "report": {"file": "$T/fds.report.json"} }
JSON
set +e; ( ulimit -n 300; "$ZLB" -c "$T/fds.json" -q 2>"$T/fds.err" ); set -e
grep -q "200 connections need about 656 open files (200 client sockets, 200 for the built-in target" \
    "$T/fds.err" || fail "no open-files warning: $(cat "$T/fds.err")"
pass "open-files limit 300 for 200 connections and the built-in target: warned at start"

# ---- the test command keeps its own build folder: the README's Release build/ survives it ----
readme_dir=$(grep -o 'cmake -S \. -B [^ ]*' "$REPO/README.md" | head -1 | awk '{print $NF}')
tests_dir=$(sed -n 's/^ *"") dir=\([^;]*\);.*/\1/p' "$REPO/tests/run_tests.sh")
echo "README builds in '$readme_dir', tests/run_tests.sh in '$tests_dir'"
[ -n "$readme_dir" ] && [ -n "$tests_dir" ] && [ "$readme_dir" != "$tests_dir" ] \
    || fail "the test command would replace the README's build in $readme_dir"
pass "the test command builds in $tests_dir, apart from the README's $readme_dir"
