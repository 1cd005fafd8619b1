#!/usr/bin/env bash
# it_processes.sh -- --processes 3: one /stats that adds up its children (the invariant in every
# snapshot), one report whose totals are the sum of its processes; a child killed mid-run is
# named in the report (exit 5, no hang); SIGTERM to the parent: one report, no child left.
source "$(dirname "$0")/lib.sh"

N=600
# The shipped default scenario, shortened, on a port of our own.
run_default() { # NAME DURATION
    # 1000/s rather than the file's 5000/s: 3 schedulers on a shared 2-CPU box stay on time.
    start_bg "$1" "$ZLB" -c "$REPO/configs/default.json" --processes 3 -d "$2" -n $N -r 1000 \
        --control 127.0.0.1:0 --report "$T/$1.json" --log-level info
    ZPID=$BG_PID
    wait_for grep -q "control port listening on" "$T/$1.err" || fail "$1 did not start: $(cat "$T/$1.err")"
    URL="http://$(sed -n 's/.*control port listening on \([^ ]*\).*/\1/p' "$T/$1.err" | head -1)"
    CHILDREN=$(sed -n 's/.*process [0-9]*: pid \([0-9]*\),.*/\1/p' "$T/$1.err")
    [ "$(echo $CHILDREN | wc -w)" = 3 ] || fail "$1: expected 3 child pids, got '$CHILDREN'"
}
children_gone() {
    local p
    for p in $CHILDREN; do
        ! kill -0 "$p" 2>/dev/null || fail "child pid $p still there after the parent exited"
    done
}

# ---- a whole run: live documents and the report ------------------------------------------------
run_default ok "$((4 * SLOW))s"
i=0
while kill -0 "$ZPID" 2>/dev/null; do
    if curl -sf "$URL/stats" -o "$T/s.json" 2>/dev/null && [ -s "$T/s.json" ]; then
        check_invariant "$T/s.json" || fail "invariant broken in /stats: $(jq -c .connections "$T/s.json")"
        i=$((i + 1))
        if [ "$(jq -r .state "$T/s.json")" = steady ] && [ ! -s "$T/steady.json" ]; then
            cp "$T/s.json" "$T/steady.json"
            curl -sf "$URL/stats/pollers" -o "$T/pollers.json" || true
            curl -sf "$URL/metrics" -o "$T/metrics.txt" || true
        fi
    fi
    sleep 0.1
done
wait_exit "$ZPID" 5
# A generator that judged itself saturated (3 processes' schedulers late on a shared, loaded
# 2-CPU box, or a sanitizer build) is exit 5 whatever --processes does: accepted, said so, with
# every other check below still made. Any other invalid verdict fails.
if [ "$EXIT_CODE" = 5 ] && jq -e '.generator.saturated and .processes.failure == null' "$T/ok.json" >/dev/null; then
    echo "   NOTE: exit 5 accepted: the run judged itself saturated: $(jq -c .generator.reasons "$T/ok.json")"
    EXIT_CODE=0
fi
[ "$EXIT_CODE" = 0 ] || fail "exit $EXIT_CODE: $(jq -c '{invalid_reason, stop_reason, generator}' "$T/ok.json" 2>/dev/null) $(tail -3 "$T/ok.err")"
[ $i -ge 5 ] || fail "only $i /stats snapshots read"
[ -s "$T/steady.json" ] || fail "never saw the steady state"
jq -e --argjson n $N '.connections.open == $n and (.pollers | length) >= 3' "$T/steady.json" >/dev/null \
    || fail "steady /stats: $(jq -c '{c: .connections.open, p: (.pollers | length)}' "$T/steady.json")"
jq -e '.processes.count == 3 and ([.processes.list[].state] | unique == ["running"])
    and ([.processes.list[].connections.open] | add) == .connections.open' "$T/steady.json" >/dev/null \
    || fail "steady /stats processes: $(jq -c '.processes' "$T/steady.json" | head -c 600)"
jq -e '[.[].process] | sort | unique == [0, 1, 2]' "$T/pollers.json" >/dev/null \
    || fail "/stats/pollers rows are not labelled with processes 0..2: $(head -c 400 "$T/pollers.json")"
grep -q 'zlbench_poller_load_ratio{process="2",poller="0"}' "$T/metrics.txt" \
    || fail "/metrics has no per-process poller series: $(grep poller_load "$T/metrics.txt")"
pass "$i /stats snapshots balanced; processes in /stats; pollers and /metrics labelled by process"
R="$T/ok.json"
check_invariant "$R" || fail "report invariant"
jq -e '.processes.count == 3 and ([.processes.list[].state] == ["ok", "ok", "ok"])' "$R" >/dev/null \
    || fail "processes: $(jq -c '.processes.list[] | {index, state, exit}' "$R")"
for key in attempted established closed_by_us closed_by_peer in_flight open failed.total; do
    got=$(jq ".connections.$key" "$R")
    sum=$(jq "[.processes.list[].connections.$key] | add" "$R")
    echo "   connections.$key: report $got, sum of processes $sum"
    [ "$got" = "$sum" ] || fail "connections.$key: report $got != sum of processes $sum"
done
jq -e --argjson n $N '.connections.established == $n and .latency_us.connect.count == $n' "$R" >/dev/null \
    || fail "report totals: $(jq -c '{e: .connections.established, n: .latency_us.connect.count}' "$R")"
jq -e '[.processes.list[].connections_goal] | add == 600' "$R" >/dev/null || fail "shard goals"
jq -r --slurpfile schema "$REPO/configs/report.schema.json" -f "$REPO/tests/integration/schema.jq" "$R" \
    > "$T/schema.txt"
[ ! -s "$T/schema.txt" ] || fail "report does not match its schema: $(head -5 "$T/schema.txt")"
children_gone
pass "one report: totals equal the sum of the 3 processes, every process ok, children gone"

# ---- a child killed mid-run -------------------------------------------------------------------
clear_time_wait
run_default killed 60s
wait_for bash -o pipefail -c "curl -sf $URL/stats | jq -e '.connections.open == $N'" || fail "never $N open"
# Every process has reported its share (so the victim's last snapshot has something to keep).
wait_for bash -o pipefail -c "curl -sf $URL/stats/pollers | jq -e '[.[] | select(.open > 0) | .process] | unique | length == 3'" \
    || fail "not every process reported open connections: $(curl -s "$URL/stats/pollers")"
VICTIM=$(echo $CHILDREN | cut -d' ' -f2)
kill -KILL "$VICTIM"
wait_exit "$ZPID" 20
R="$T/killed.json"
echo "   exit $EXIT_CODE, $(jq -c '{stop_reason, valid, invalid_reason}' "$R")"
[ "$EXIT_CODE" = 5 ] || fail "a killed child: exit $EXIT_CODE, expected 5"
jq -e --arg pid "$VICTIM" '.valid == false and .stop_reason == "process_failed"
    and (.invalid_reason | contains("pid " + $pid)) and (.processes.failure | contains("SIGKILL"))
    and ([.processes.list[] | select(.pid == ($pid | tonumber))][0]
         | .state == "failed" and .signal == 9 and .index == 1 and .connections.established > 0)' \
    "$R" >/dev/null || fail "the report does not name the killed child: $(jq -c .processes.list "$R")"
check_invariant "$R" || fail "invariant with a dead child"
children_gone
pass "SIGKILL of process 1 (pid $VICTIM): named in the report with its last snapshot, exit 5"

# ---- SIGTERM to the parent -----------------------------------------------------------------------
clear_time_wait
run_default term 60s
wait_for bash -o pipefail -c "curl -sf $URL/stats | jq -e '.connections.open == $N'" || fail "never $N open"
kill -TERM "$ZPID"
wait_exit "$ZPID" 20
R="$T/term.json"
jq -e --argjson n $N '.stop_reason == "signal_sigterm" and .connections.closed_by_us == $n
    and .connections.open == 0 and ([.processes.list[].state] | unique == ["ok"])' "$R" >/dev/null \
    || fail "report after SIGTERM: $(jq -c '{stop_reason, c: .connections.closed_by_us, p: [.processes.list[].state]}' "$R")"
check_invariant "$R" || fail "invariant after SIGTERM"
children_gone
pass "SIGTERM: drained through the children, one report, children gone (exit $EXIT_CODE)"
