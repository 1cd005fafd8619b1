#!/usr/bin/env bash
# it_schema.sh -- real /stats snapshots (while ramping, steady and draining) and a real report
# validate against configs/report.schema.json; a broken document does not.
source "$(dirname "$0")/lib.sh"
validate() { jq -r --slurpfile schema "$REPO/configs/report.schema.json" -f "$REPO/tests/integration/schema.jq" "$1"; }

cat > "$T/cfg.json" <<JSON
{ "embedded_target": {"mode": "echo"}, "connections": 1500, "connect_rate": 1000, "duration": "3s",
  "workload": {"type": "echo", "message_size": 32, "message_interval": "50ms"},
  "report": {"file": "$T/report.json", "percentiles": [50, 90, 99, 99.9, 99.99]},
  "control": {"listen": "127.0.0.1:0", "address_file": "$T/ctl.addr"} }
JSON
start_bg zlb "$ZLB" -c "$T/cfg.json" -q
ZPID=$BG_PID
wait_for test -s "$T/ctl.addr" || fail "daemon did not start: $(cat "$T/zlb.err")"
URL="http://$(cat "$T/ctl.addr")"
states=""
i=0
while kill -0 "$ZPID" 2>/dev/null; do
    curl -sf "$URL/stats" -o "$T/s$i.json" 2>/dev/null || break
    errs=$(validate "$T/s$i.json")
    [ -z "$errs" ] || fail "snapshot $i does not match the schema: $errs"
    states="$states $(jq -r .state "$T/s$i.json")"
    i=$((i + 1))
    sleep 0.1
done
wait_exit "$ZPID" 30
echo "$states" | grep -q ramping || fail "no snapshot while ramping:$states"
echo "$states" | grep -q steady || fail "no steady snapshot:$states"
pass "$i snapshots valid (states:$(echo "$states" | tr ' ' '\n' | sort -u | tr '\n' ' '))"

errs=$(validate "$T/report.json")
[ -z "$errs" ] || fail "report does not match the schema: $errs"
jq -e '.latency_us.message_rt.count > 0 and (.latency_us.connect | has("p9999"))' "$T/report.json" >/dev/null \
    || fail "echo latencies or extra percentile missing"
pass "report valid"

"$ZLB" merge "$T/report.json" "$T/report.json" -o "$T/merged.json" >/dev/null || fail "merge failed"
errs=$(validate "$T/merged.json")
[ -z "$errs" ] || fail "a merged report does not match the schema: $errs"
jq -e --slurpfile one "$T/report.json" '.connections.established == 2 * $one[0].connections.established
    and .histograms.connect.count == 2 * $one[0].histograms.connect.count' "$T/merged.json" >/dev/null \
    || fail "merged counts are not the sum"
jq -e --slurpfile one "$T/report.json" '($one[0].events | length) >= 2
    and (.events | length) == 2 * ($one[0].events | length)
    and ([.events[].source] | unique) == [0, 1] and ([.events[].t_s] as $t | $t == ($t | sort))
    and ([.events[] | select(.source == 1) | del(.source)] == $one[0].events)' "$T/merged.json" >/dev/null \
    || fail "merged events: $(jq -c .events "$T/merged.json")"
pass "merged report valid, counts doubled, events of both in time order"

jq '.connections.attempted = "many" | del(.ramp) | .state = "odd"' "$T/report.json" > "$T/broken.json"
errs=$(validate "$T/broken.json")
[ "$(echo "$errs" | wc -l)" -ge 3 ] || fail "a broken report passed the schema check: $errs"
pass "a broken report is rejected ($(echo "$errs" | wc -l) violations)"
