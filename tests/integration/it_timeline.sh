#!/usr/bin/env bash
# it_timeline.sh -- the per-interval series: GET /stats/series?since=T polled live returns new rows
# with increasing t_s; the report's timeline validates and its rows add up to the report's totals.
source "$(dirname "$0")/lib.sh"
validate() { jq -r --slurpfile schema "$REPO/configs/report.schema.json" -f "$REPO/tests/integration/schema.jq" "$1"; }

cat > "$T/cfg.json" <<JSON
{ "embedded_target": {"mode": "echo"}, "connections": 300, "connect_rate": 200, "duration": "4s",
  "stats_interval": "500ms",
  "workload": {"type": "echo", "message_size": 32, "message_interval": "50ms"},
  "report": {"file": "$T/report.json"},
  "control": {"listen": "127.0.0.1:0", "address_file": "$T/ctl.addr"} }
JSON
start_bg zlb "$ZLB" -c "$T/cfg.json" -q
ZPID=$BG_PID
wait_for test -s "$T/ctl.addr" || fail "daemon did not start: $(cat "$T/zlb.err")"
URL="http://$(cat "$T/ctl.addr")"

# Poll as a dashboard does: each answer holds only the rows after the last one seen.
since=-1 polls=0 got=0
: > "$T/live.jsonl"
while kill -0 "$ZPID" 2>/dev/null; do
    curl -sf "$URL/stats/series?since=$since" -o "$T/page.json" 2>/dev/null || break
    polls=$((polls + 1))
    jq -e --argjson since "$since" '.interval_s == 0.5 and (.rows | all(.t_s > $since))' "$T/page.json" >/dev/null \
        || fail "rows at or before since=$since: $(head -c 400 "$T/page.json")"
    jq -c '.rows[]' "$T/page.json" >> "$T/live.jsonl"
    n=$(jq '.rows | length' "$T/page.json")
    if [ "$n" -gt 0 ]; then since=$(jq '.rows[-1].t_s' "$T/page.json"); got=$((got + n)); fi
    sleep 0.3
done
wait_exit "$ZPID" 30
# 5: the generator saturated on a loaded machine; its timeline is still what is checked here.
[ "$EXIT_CODE" = 0 ] || [ "$EXIT_CODE" = 5 ] || fail "run exited $EXIT_CODE: $(tail -5 "$T/zlb.err")"
[ "$EXIT_CODE" = 0 ] || echo "note: exit 5: $(jq -r .invalid_reason "$T/report.json")"
[ "$got" -ge 3 ] || fail "only $got rows seen live in $polls polls"
jq -se 'map(.t_s) as $t | [range(1; $t | length) | $t[.] > $t[. - 1]] | all' "$T/live.jsonl" >/dev/null \
    || fail "live rows not in increasing t_s: $(jq -c .t_s "$T/live.jsonl" | tr '\n' ' ')"
jq -se 'all(.[]; (.latency_us | to_entries | all(.value.count > 0 and .value.p50 <= .value.p99
        and .value.p99 <= .value.max)) and (.pollers | length) > 0 and .dt_s > 0)' "$T/live.jsonl" >/dev/null \
    || fail "a live row is malformed: $(head -c 600 "$T/live.jsonl")"
pass "$got rows seen live over $polls polls of /stats/series?since=T, t_s increasing: $(jq -c .t_s "$T/live.jsonl" | tr '\n' ' ')"

errs=$(validate "$T/report.json")
[ -z "$errs" ] || fail "report does not match the schema: $errs"
# The rows cover the run: their counts add up to the report's totals (the last row is the partial
# interval up to the final snapshot), and rate * dt gives the same within rounding (t_s and dt_s
# are written to the ms: 0.1 % of the messages).
jq -e '.timeline as $tl | .connections as $c
    | ($tl.rows | map(.attempts) | add) == $c.attempted
    and ($tl.rows | map(.connects) | add) == $c.established
    and (($tl.rows | map(.connects_per_s * .dt_s) | add) - $c.established | fabs) < 1
    and (($tl.rows | map(.messages_per_s * .dt_s) | add) - .messages | fabs) <= 1 + .messages * 1e-3
    and ($tl.rows | map(.latency_us.connect.count // 0) | add) == .latency_us.connect.count
    and ($tl.rows[-1].t_s - .elapsed_s | fabs) < 0.2' "$T/report.json" >/dev/null \
    || fail "timeline does not add up: $(jq -c '{att: ([.timeline.rows[].attempts] | add), attempted: .connections.attempted,
            conn: ([.timeline.rows[].connects] | add), established: .connections.established,
            conn_rate_x_dt: ([.timeline.rows[] | .connects_per_s * .dt_s] | add),
            msg_rate_x_dt: ([.timeline.rows[] | .messages_per_s * .dt_s] | add), messages: .messages,
            connect_samples: ([.timeline.rows[].latency_us.connect.count // 0] | add),
            connect_count: .latency_us.connect.count,
            last_t: .timeline.rows[-1].t_s, elapsed: .elapsed_s}' "$T/report.json")"
# Every row served live is the report's row for that interval (same t_s, same counts).
jq -se --slurpfile rep "$T/report.json" '($rep[0].timeline.rows | map({key: (.t_s | tostring), value: .attempts})
    | from_entries) as $byt | all(.[]; $byt[.t_s | tostring] == .attempts)' "$T/live.jsonl" >/dev/null \
    || fail "a live row differs from the report's row of the same t_s"
pass "report timeline: $(jq -c '{rows: (.timeline.rows | length), bytes_per_row: .timeline.bytes_per_row,
    attempts: ([.timeline.rows[].attempts] | add), attempted: .connections.attempted,
    states: ([.timeline.rows[].state] | unique)}' "$T/report.json")"

# A report whose timeline runs backwards is refused by every command that reads reports.
jq '.timeline.rows[1].t_s = 0' "$T/report.json" > "$T/bad.json"
set +e; "$ZLB" compare "$T/report.json" "$T/bad.json" > "$T/cmp.out" 2>&1; rc=$?; set -e
[ "$rc" = 2 ] && grep -q 'timeline.rows\[1\].t_s' "$T/cmp.out" || fail "a backwards timeline was accepted (exit $rc): $(cat "$T/cmp.out")"
pass "a backwards timeline is refused: $(head -1 "$T/cmp.out")"

# compare: a regression is located in the current run's timeline. The baseline's steady echo p99
# is made 1 us, so the first steady row with echo samples is the first beyond it.
R="$T/report.json"
jq '.steady.latency_us.message_rt.p99 = 1' "$R" > "$T/base.json"
want=$(jq '[.timeline.rows[] | select(.state == "steady" and .latency_us.message_rt.p99 > 1.1)][0].t_s' "$R")
set +e; "$ZLB" compare "$T/base.json" "$R" --metric latency_us.message_rt.p99 --json "$T/cmp.json" > "$T/cmp.out" 2>&1; rc=$?; set -e
[ "$rc" = 4 ] || fail "compare did not find the regression (exit $rc): $(cat "$T/cmp.out")"
grep -q "latency_us.message_rt.p99 first above 1.1 us at t=$want s" "$T/cmp.out" \
    || fail "no first-crossing line at t=$want: $(cat "$T/cmp.out")"
jq -e --argjson t "$want" '.metrics[0].first_crossed.t_s == $t' "$T/cmp.json" >/dev/null || fail "first_crossed missing from --json"
pass "compare locates the regression: $(grep 'first above' "$T/cmp.out" | sed 's/^ *//')"

# Per-stage figures: any stages.N.<metric> path (here two stages made up from the steady figures
# and the rows' stage set by time), compared and located in that stage's rows only.
split=$(jq '.timeline.rows[(.timeline.rows | length) / 2 | floor].t_s' "$R")
jq --argjson split "$split" '.stages = [.steady, .steady]
    | .timeline.rows |= map(.stage = (if .t_s <= $split then 0 else 1 end))' "$R" > "$T/cur_st.json"
jq '.stages[1].latency_us.message_rt.p99 = 1' "$T/cur_st.json" > "$T/base_st.json"
want=$(jq --argjson split "$split" '[.timeline.rows[] | select(.t_s > $split and .latency_us.message_rt.p99 > 1.1)][0].t_s' "$R")
set +e; "$ZLB" compare "$T/base_st.json" "$T/cur_st.json" --metric stages.1.latency_us.message_rt.p99 \
    --metric stages.0.latency_us.message_rt.p99 > "$T/cmp2.out" 2>&1; rc=$?; set -e
[ "$rc" = 4 ] || fail "stage compare: exit $rc: $(cat "$T/cmp2.out")"
grep -q "^stages.0.latency_us.message_rt.p99 .* unchanged" "$T/cmp2.out" || fail "stage 0 not unchanged: $(cat "$T/cmp2.out")"
grep -q "stages.1.latency_us.message_rt.p99 first above 1.1 us at t=$want s" "$T/cmp2.out" \
    || fail "stage 1 crossing not at t=$want (first row of stage 1 with samples): $(cat "$T/cmp2.out")"
pass "per-stage compare: $(grep 'first above' "$T/cmp2.out" | sed 's/^ *//')"

# merge: side-by-side runs' timelines add up row by row (here a run with itself: doubled).
"$ZLB" merge "$R" "$R" -o "$T/merged.json" > /dev/null 2>"$T/merge.err" || fail "merge: $(cat "$T/merge.err")"
errs=$(validate "$T/merged.json")
[ -z "$errs" ] || fail "merged report does not match the schema: $errs"
jq -e --slurpfile one "$R" '.timeline.merged and (.timeline.rows | length) == ($one[0].timeline.rows | length)
    and ([.timeline.rows[].attempts] | add) == 2 * ([$one[0].timeline.rows[].attempts] | add)
    and (.timeline.rows[0].pollers | length) == 2 * ($one[0].timeline.rows[0].pollers | length)' "$T/merged.json" >/dev/null \
    || fail "merged timeline is not the sum: $(jq -c '.timeline | {rows: (.rows | length), att: ([.rows[].attempts] | add)}' "$T/merged.json")"
pass "merged timeline: rows added by interval, attempts doubled"

# A failed threshold says where it first went wrong (merge evaluates the config's thresholds on the
# merged figures, timeline included, as a run does at its end).
jq '.config.thresholds = {"latency_us.message_rt.p99": "< 1", "rates.messages_per_s": "> 1000000"}' "$R" > "$T/th.json"
want=$(jq '[.timeline.rows[] | select(.state == "steady" and .latency_us.message_rt.p99 > 1)][0].t_s' "$R")
"$ZLB" merge "$T/th.json" "$T/th.json" -o "$T/th_m.json" > /dev/null 2>&1 || fail "merge with thresholds"
jq -e --argjson t "$want" '(.thresholds[] | select(.path == "latency_us.message_rt.p99") | .first_crossed.t_s == $t)
    and (.thresholds[] | select(.path == "rates.messages_per_s") | .first_crossed.value < 1000000)' "$T/th_m.json" >/dev/null \
    || fail "first_crossed of failed thresholds: want t=$want: $(jq -c .thresholds "$T/th_m.json")"
errs=$(validate "$T/th_m.json")
[ -z "$errs" ] || fail "report with first_crossed does not match the schema: $errs"
pass "failed thresholds located: $(jq -c '[.thresholds[] | select(.first_crossed) | {path, t: .first_crossed.t_s}]' "$T/th_m.json")"
