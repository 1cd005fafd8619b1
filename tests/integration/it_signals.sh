#!/usr/bin/env bash
# it_signals.sh -- SIGTERM mid-run drains and writes a valid report; a second signal stops at once.
source "$(dirname "$0")/lib.sh"

cfg() {
cat > "$T/cfg.json" <<JSON
{
  "embedded_target": {"mode": "echo", "listen": "127.0.0.1:0"},
  "connections": 1000, "connect_rate": 2000, "duration": "60s",
  "control": {"listen": "127.0.0.1:0", "address_file": "$T/ctl.addr"},
  "report": {"file": "$T/report.json"}
}
JSON
}
cfg
start_bg zlb "$ZLB" -c "$T/cfg.json" -q
ZPID=$BG_PID
wait_for test -s "$T/ctl.addr" || fail "daemon did not start"
URL="http://$(cat "$T/ctl.addr")"
wait_for bash -o pipefail -c "curl -sf $URL/stats | jq -e '.connections.open == 1000'" || fail "never 1000 open"
kill -TERM "$ZPID"
wait_exit "$ZPID" 30
jq -e '.stop_reason == "signal_sigterm" and .connections.open == 0 and .connections.closed_by_us == 1000' \
    "$T/report.json" >/dev/null || fail "report after SIGTERM: $(head -c 1500 "$T/report.json")"
check_invariant "$T/report.json" || fail "invariant"
jq -e '[.events[] | select(.what == "signal" or .what == "drain")] | length == 2
    and .[0].to.signal == "SIGTERM" and .[0].to.stop == "graceful" and .[0].client == null
    and .[1].to.reason == "signal_sigterm" and .[1].t_s >= .[0].t_s' "$T/report.json" >/dev/null \
    || fail "SIGTERM events: $(jq -c .events "$T/report.json")"
pass "SIGTERM: drained, report written (exit $EXIT_CODE)"

# Second signal: immediate stop, the report is still written.
rm -f "$T/report.json" "$T/ctl.addr"
start_bg zlb2 "$ZLB" -c "$T/cfg.json" -q
ZPID=$BG_PID
wait_for test -s "$T/ctl.addr" || fail "daemon did not start"
URL="http://$(cat "$T/ctl.addr")"
wait_for bash -o pipefail -c "curl -sf $URL/stats | jq -e '.connections.open >= 200'" || fail "never 200 open"
kill -INT "$ZPID"; kill -INT "$ZPID"
wait_exit "$ZPID" 15
jq -e '.stop_reason == "signal_sigint" and (.state == "done")' "$T/report.json" >/dev/null \
    || fail "report after two SIGINTs"
check_invariant "$T/report.json" || fail "invariant after immediate stop"
# Two signals sent back to back may arrive as one (a pending signal does not queue).
jq -e '[.events[] | select(.what == "signal") | .to.stop] | . == ["graceful", "immediate"] or . == ["graceful"]' \
    "$T/report.json" >/dev/null || fail "SIGINT events: $(jq -c .events "$T/report.json")"
pass "two SIGINTs: immediate stop, report written (exit $EXIT_CODE)"
