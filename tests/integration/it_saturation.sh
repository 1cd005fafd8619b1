#!/usr/bin/env bash
# it_saturation.sh -- the generator's self-watch on real faults: frozen mid-ramp (SIGSTOP) and
# starved of CPU (a busy loop at nice -10 on its poller's CPU) must be flagged, exit 5, with the
# rule that fired. (The opposite case, a target at fault, is it_saturation_target.sh.)
source "$(dirname "$0")/lib.sh"

# run_bg NAME JSON: starts a run with a control port; sets ZPID and URL.
run_bg() {
    local name=$1
    printf '%s' "$2" > "$T/$name.json"
    rm -f "$T/ctl.addr"
    start_bg "$name" "$ZLB" -c "$T/$name.json" --control 127.0.0.1:0 --report "$T/$name.report.json"
    ZPID=$BG_PID
}
ctl() { printf '"control": {"listen": "127.0.0.1:0", "address_file": "%s"}' "$T/ctl.addr"; }

# ---- frozen for 0.8 s mid-ramp ----
run_bg freeze "{ \"embedded_target\": {\"mode\": \"echo\"}, \"connections\": 4000,
  \"connect_rate\": 1000, \"duration\": \"6s\", $(ctl) }"
wait_for test -s "$T/ctl.addr" || fail "freeze: daemon did not start: $(cat "$T/freeze.err")"
URL="http://$(cat "$T/ctl.addr")"
wait_for bash -o pipefail -c "curl -sf $URL/stats | jq -e '.connections.open >= 1000'" || fail "freeze: never 1000 open"
kill -STOP "$ZPID"; sleep 0.8; kill -CONT "$ZPID"
wait_exit "$ZPID" 30
jq -c '{exit_code, valid, generator: .generator | {saturated, rules, reasons}}' "$T/freeze.report.json"
[ "$EXIT_CODE" = 5 ] || fail "frozen generator: exit $EXIT_CODE, not 5"
jq -e '.generator.saturated and any(.generator.rules[]; . == "stall" or . == "lateness")
    and (.invalid_reason | test("saturated"))' "$T/freeze.report.json" >/dev/null \
    || fail "frozen generator: the rule is not named"
grep -q "INVALID RUN" "$T/freeze.out" || fail "the summary does not say why the run is invalid"
pass "frozen 0.8 s mid-ramp: exit 5, $(jq -r '.generator.reasons[0]' "$T/freeze.report.json")"

# ---- starved: a busy loop at nice -10 pinned on the poller's CPU ----
if [ "$(id -u)" != 0 ] && ! nice -n -10 true 2>/dev/null; then
    echo "SKIP (starvation part): nice -10 needs CAP_SYS_NICE"
else
    run_bg starve "{ \"embedded_target\": {\"mode\": \"echo\"}, \"pollers\": {\"count\": 1},
      \"connections\": 200, \"connect_rate\": 2000, \"duration\": \"7s\", \"warmup\": \"1s\",
      \"workload\": {\"type\": \"echo\", \"message_size\": 64, \"message_interval\": \"20ms\"}, $(ctl) }"
    wait_for test -s "$T/ctl.addr" || fail "starve: daemon did not start: $(cat "$T/starve.err")"
    URL="http://$(cat "$T/ctl.addr")"
    cpu=$(curl -sf "$URL/stats/pollers" | jq '.[0].cpu')
    [ "$cpu" -ge 0 ] || fail "the poller is not pinned: cpu $cpu"
    nice -n -10 taskset -c "$cpu" sh -c 'end=$(( $(date +%s) + 8 )); while [ "$(date +%s)" -lt "$end" ]; do :; done' &
    HOG=$!; PIDS+=("$HOG")
    wait_exit "$ZPID" 40
    kill "$HOG" 2>/dev/null || true
    jq -c '{exit_code, generator: .generator | {rules, reasons}, p: .pollers[0] | {busy_pct, cpu_pct, runq_wait_pct}}' "$T/starve.report.json"
    [ "$EXIT_CODE" = 5 ] || fail "starved generator: exit $EXIT_CODE, not 5"
    jq -e '.generator.saturated' "$T/starve.report.json" >/dev/null || fail "starved: not saturated"
    pass "starved on CPU $cpu: exit 5, $(jq -r '.generator.reasons[0]' "$T/starve.report.json")"
fi

