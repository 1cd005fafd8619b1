#!/usr/bin/env bash
# it_gate.sh -- the CI gate end to end: thresholds pass (0) and fail (3), abort_on_fail stops the
# run early, a saturated generator exits 5, and `compare` catches a real regression (a slowed
# built-in target, exit 4) while passing an unchanged run (exit 0).
source "$(dirname "$0")/lib.sh"

run() { # run NAME JSON: sets EXIT_CODE, report in $T/NAME.json; LOUD=1: without -q (summary on stdout)
    local name=$1; shift
    local quiet=-q
    [ "${LOUD:-0}" = 1 ] && quiet=
    printf '%s' "$1" > "$T/$name.cfg.json"
    set +e
    "$ZLB" -c "$T/$name.cfg.json" $quiet --control off --report "$T/$name.json" >"$T/$name.out" 2>"$T/$name.err"
    EXIT_CODE=$?
    set -e
    [ -s "$T/$name.json" ] || fail "$name: no report (exit $EXIT_CODE): $(tail -3 "$T/$name.err")"
}

base='"embedded_target": {"mode": "echo"}, "connections": 200, "connect_rate": 1000, "duration": "2s"'

run pass "{ $base, \"thresholds\": {\"connections.failed.total\": \"== 0\",
  \"latency_us.connect.p99\": \"< 1000000\", \"generator.saturated\": \"== false\"} }"
[ "$EXIT_CODE" = 0 ] || fail "passing thresholds: exit $EXIT_CODE $(jq -c .thresholds "$T/pass.json")"
jq -e '([.thresholds[] | select(.default | not)] | length) == 3 and all(.thresholds[]; .passed)' "$T/pass.json" >/dev/null || fail "threshold rows"
pass "thresholds held: exit 0"

LOUD=1 run failth "{ $base, \"thresholds\": {\"latency_us.connect.p99\": \"< 0.001\"} }"
[ "$EXIT_CODE" = 3 ] || fail "failing threshold: exit $EXIT_CODE"
jq -e '.thresholds[0].passed == false and .thresholds[0].observed > 0' "$T/failth.json" >/dev/null || fail "failed row"
# The summary names the failed threshold on its row and counts it (stdout, without -q).
grep -Eq 'threshold .*latency_us\.connect\.p99 .*< 0\.001 .* FAIL$' "$T/failth.out" \
    || fail "no FAIL row for the failed threshold in the summary: $(grep threshold "$T/failth.out")"
grep -q '1 threshold(s) failed' "$T/failth.out" || fail "no failed-threshold count in the summary"
pass "threshold failed: exit 3"

run abort "{ \"embedded_target\": {\"mode\": \"echo\"}, \"connections\": 100, \"connect_rate\": 1000,
  \"duration\": \"30s\", \"abort_on_fail\": true, \"thresholds\": {\"connections.open\": \"> 1000\"} }"
[ "$EXIT_CODE" = 3 ] || fail "abort_on_fail: exit $EXIT_CODE"
jq -e '.stop_reason == "threshold_failed" and .elapsed_s < 10' "$T/abort.json" >/dev/null \
    || fail "abort_on_fail did not stop early: $(jq -c '{stop_reason,elapsed_s}' "$T/abort.json")"
jq -e '[.events[] | select(.what == "threshold_abort" or .what == "drain")] as $e
    | ($e | map(.what)) == ["threshold_abort", "drain"]
    and $e[0].to.failed[0].path == "connections.open" and $e[1].to.reason == "threshold_failed"' \
    "$T/abort.json" >/dev/null || fail "threshold_abort events: $(jq -c .events "$T/abort.json")"
pass "abort_on_fail stopped the run after $(jq .elapsed_s "$T/abort.json") s: exit 3"

# A schedule the generator cannot keep: one poller asked for 200,000 connects/s.
run sat '{"embedded_target": {"mode": "echo"}, "pollers": {"count": 1}, "connections": 6000,
  "connect_rate": 200000, "duration": "3s"}'
[ "$EXIT_CODE" = 5 ] || fail "saturated run: exit $EXIT_CODE $(jq -c .generator "$T/sat.json")"
jq -e '.generator.saturated and (.generator.reasons|length) > 0 and .valid == false' "$T/sat.json" >/dev/null \
    || fail "saturation not reported"
pass "saturated generator: exit 5 ($(jq -r '.generator.reasons[0]' "$T/sat.json"))"

# Regression: the same echo scenario against a target that delays each accept by 3 ms.
echo_cfg() { # echo_cfg DELAY
    printf '{"embedded_target": {"mode": "echo", "accept_delay": "%s"}, "connections": 200,
      "connect_rate": 1000, "duration": "2s",
      "workload": {"type": "echo", "message_size": 64, "message_interval": "100ms"}}' "$1"
}
run base1 "$(echo_cfg 0ms)"
run base2 "$(echo_cfg 0ms)"
run slow "$(echo_cfg 3ms)"
metrics=(--metric latency_us.first_byte.p50:300% --metric rates.connects_per_s:25%)
set +e
"$ZLB" compare "$T/base1.json" "$T/base2.json" "${metrics[@]}" >"$T/same.txt"; same=$?
"$ZLB" compare "$T/base1.json" "$T/slow.json" "${metrics[@]}" --json "$T/cmp.json" >"$T/reg.txt"; reg=$?
set -e
[ "$same" = 0 ] || fail "unchanged run flagged (exit $same): $(cat "$T/same.txt")"
[ "$reg" = 4 ] || fail "slowed target not flagged (exit $reg): $(cat "$T/reg.txt")"
jq -e '.regressions >= 1 and any(.metrics[]; .metric == "latency_us.first_byte.p50" and .verdict == "regression")' \
    "$T/cmp.json" >/dev/null || fail "compare JSON"
pass "compare: unchanged exit 0, slowed target exit 4"
cat "$T/reg.txt"

# Reports are inputs: one whose connections.attempted was raised by 5 breaks the accounting
# invariant; merge and compare refuse it (exit 2) naming the file and the JSON path.
jq '.connections.attempted += 5' "$T/base1.json" > "$T/tampered.json"
set +e
"$ZLB" merge "$T/base1.json" "$T/tampered.json" -o "$T/tm.json" >"$T/tm.out" 2>"$T/tm.err"; tm=$?
"$ZLB" compare "$T/base1.json" "$T/tampered.json" >"$T/tc.out" 2>"$T/tc.err"; tc=$?
set -e
[ "$tm" = 2 ] || fail "merge of a tampered report: exit $tm $(cat "$T/tm.err")"
[ ! -e "$T/tm.json" ] || fail "merge of a tampered report wrote an output"
[ "$tc" = 2 ] || fail "compare of a tampered report: exit $tc $(cat "$T/tc.err")"
for f in tm tc; do
    grep -q "tampered.json: connections.attempted: " "$T/$f.err" \
        || fail "$f: message does not name the file and path: $(cat "$T/$f.err")"
done
jq '.steady.histograms.connect.count += 1' "$T/base1.json" > "$T/tampered2.json"
set +e; "$ZLB" compare "$T/base1.json" "$T/tampered2.json" >/dev/null 2>"$T/tc2.err"; tc2=$?; set -e
[ "$tc2" = 2 ] && grep -q "tampered2.json: steady.histograms.connect: " "$T/tc2.err" \
    || fail "histogram count edited: exit $tc2 $(cat "$T/tc2.err")"
pass "tampered reports refused: $(cat "$T/tm.err")"

# merge: the same scenario merges, with its verdict, host facts and targets (each run's built-in
# target has its own port, so its own row; test_gate checks rows of one name adding up); another scenario
# is refused unless --allow-mixed; compare warns about it.
"$ZLB" merge "$T/base1.json" "$T/base2.json" -o "$T/m12.json" >/dev/null || fail "merge of one scenario"
# The verdict carried: valid only when both runs were (a busy host can starve one of them).
jq -e '.valid == ($a[0].valid and $b[0].valid) and .exit_code == (if .valid then 0 else 5 end)
    and .merged_from == 2 and (.host.kernel | type == "string")
    and (.sources | length) == 2
    and (.targets | map(.established) | add) == ([$a[0], $b[0]] | map(.targets[0].established) | add)
    and .connections.attempted == .connections.established + .connections.failed_before_established.total + .connections.in_flight' \
    --slurpfile a "$T/base1.json" --slurpfile b "$T/base2.json" "$T/m12.json" >/dev/null \
    || fail "merged report: $(jq -c '{exit_code, valid, targets, host: (.host|type)}' "$T/m12.json")"
set +e
"$ZLB" merge "$T/base1.json" "$T/slow.json" -o "$T/mix.json" >/dev/null 2>"$T/mix.err"; mix=$?
set -e
[ "$mix" = 2 ] && grep -q "different scenarios" "$T/mix.err" || fail "mixed merge: exit $mix $(cat "$T/mix.err")"
"$ZLB" merge --allow-mixed "$T/base1.json" "$T/slow.json" -o "$T/mix.json" >/dev/null || fail "--allow-mixed"
grep -q "different scenarios" "$T/reg.txt" "$T/same.txt" && fail "compare warning went to stdout"
"$ZLB" compare "$T/base1.json" "$T/slow.json" >/dev/null 2>"$T/cw.err" || true
grep -q "warning: the reports are of different scenarios" "$T/cw.err" || fail "compare did not warn: $(cat "$T/cw.err")"
pass "merge: verdict, host and targets carried; mixed scenarios refused; compare warns"

# A threshold the merged figures fail: exit_code 3 in the merged report.
run th1 "{ $base, \"thresholds\": {\"connections.established\": \"> 300\"} }"
[ "$EXIT_CODE" = 3 ] || fail "one run of 200 should fail > 300 (exit $EXIT_CODE)"
cp "$T/th1.json" "$T/th2.json"
"$ZLB" merge "$T/th1.json" "$T/th2.json" -o "$T/th.json" >/dev/null || fail "merge th"
jq -e '.thresholds[0].passed and .exit_code == 0 and .thresholds[0].observed >= 400' "$T/th.json" >/dev/null \
    || fail "thresholds not re-evaluated on the merged figures: $(jq -c '{thresholds, exit_code}' "$T/th.json")"
pass "merge re-evaluated thresholds: $(jq -c '.thresholds[0] | {expr, observed, passed}' "$T/th.json")"

for cmd in merge compare serve; do
    "$ZLB" "$cmd" --help >"$T/h.out" 2>&1 || fail "$cmd --help: exit $?"
    grep -q "^usage: zlbench $cmd" "$T/h.out" || fail "$cmd --help: $(head -2 "$T/h.out")"
done
grep -q -- "--accept-delay DUR" "$T/h.out" || fail "serve --help does not describe its flags"
pass "merge/compare/serve --help print their usage"
