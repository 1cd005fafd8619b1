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
