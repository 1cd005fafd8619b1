#!/usr/bin/env bash
# it_message.sh -- the message workload end to end: (a) configs/redis-ping.json as written
# (RESP PING against the built-in redis target, open loop): messages counted, no failure, the
# latency phases there; (b) the same with a prefix the target never sends: protocol failures,
# no message, exit 3; (c) inline PINGs pipelined 4 deep in a closed loop against
# `zlbench serve --mode redis`; (d) a bad escape refused at load with FILE:LINE:COLUMN.
source "$(dirname "$0")/lib.sh"
command -v jq >/dev/null || skip "jq is missing"

# ---- (a) configs/redis-ping.json ------------------------------------------------------------
# Shortened (4 s, 1 s warm-up); everything else as written.
set +e
timeout $((60 * SLOW)) "$ZLB" -c "$REPO/configs/redis-ping.json" -q --control off -d 4s \
    --report "$T/a.report.json" >"$T/a.out" 2>"$T/a.err"
EXIT_CODE=$?
set -e
R="$T/a.report.json"
[ -s "$R" ] || fail "(a) no report (exit $EXIT_CODE): $(tail -3 "$T/a.err")"
check_invariant "$R" || fail "(a) invariant in the report"
read -r msgs rate rt_n svc_n lag_n p99 failed < <(jq -r '[.messages, .steady.rates.messages_per_s,
    .latency_us.message_rt.count, .latency_us.message_service.count, .latency_us.send_lag.count,
    .latency_us.message_rt.p99, .connections.failed.total] | map(tostring) | join(" ")' "$R")
echo "   redis-ping.json: exit $EXIT_CODE, $msgs messages, steady $rate messages/s (asked 5000), message_rt p99 $p99 us, n=$rt_n/$svc_n, send_lag n=$lag_n, failed $failed"
# Exit 5 (the generator judged saturated) is what a crowded CI host may say; the figures
# below are checked either way, the rate only on a valid run.
[ "$EXIT_CODE" = 0 ] || [ "$EXIT_CODE" = 5 ] || fail "(a) exit $EXIT_CODE: $(tail -3 "$T/a.err")"
[ "$EXIT_CODE" = 5 ] && echo "   (a) exit 5: $(jq -r .invalid_reason "$R")"
jq -e '.messages > 1000 and .connections.failed.total == 0 and .connections.established == 50
       and .latency_us.message_rt.count == .messages
       and .latency_us.message_service.count == .messages
       and .latency_us.send_lag.count >= .messages
       and .latency_us.message_rt.p50 > 0 and .latency_us.message_service.p50 > 0
       and .steady.latency_us.message_rt.count > 0
       and .bytes.in >= .messages * 7' "$R" >/dev/null \
    || fail "(a) report: $(jq -c '{messages, c: .connections | {established, failed}, rt: .latency_us.message_rt, bytes}' "$R")"
# The rate is judged over a steady window of some length: a ramp that a crowded host (a full
# conntrack table drops SYNs) stretched to the end leaves a window of the queued catch-up only.
steady_s=$(jq '.steady.seconds' "$R")
if [ "$EXIT_CODE" = 0 ] && [ -z "${ZLB_SANITIZE:-}" ] && jq -e '.steady.seconds >= 1.5' "$R" >/dev/null; then
    jq -e '.steady.rates.messages_per_s > 4000 and .steady.rates.messages_per_s < 6000' "$R" >/dev/null \
        || fail "(a) steady rate $rate messages/s over $steady_s s, asked 5000"
else
    echo "   (a) rate not judged: exit $EXIT_CODE, steady window $steady_s s"
fi
pass "(a) redis-ping.json: $msgs PONGs, none failed, message_rt/message_service/send_lag recorded"

# ---- (b) a prefix the target never sends --------------------------------------------------------
jq '.workload.expect_prefix = "+PANG" | .connections = 5 | .workload.message_rate = 500
    | .workload.backoff_min = "10ms" | .workload.backoff_max = "20ms" | .warmup = "0s"
    | .report.file = "'"$T"'/b.report.json"' "$REPO/configs/redis-ping.json" >"$T/b.json"
set +e
timeout $((60 * SLOW)) "$ZLB" -c "$T/b.json" -q --control off -d 2s >"$T/b.out" 2>"$T/b.err"
EXIT_CODE=$?
set -e
R="$T/b.report.json"
[ -s "$R" ] || fail "(b) no report (exit $EXIT_CODE): $(tail -3 "$T/b.err")"
check_invariant "$R" || fail "(b) invariant in the report"
read -r proto msgs < <(jq -r '"\(.connections.failed_after_established.protocol) \(.messages)"' "$R")
echo "   mismatch: exit $EXIT_CODE, $proto protocol failures, $msgs messages"
[ "$EXIT_CODE" = 3 ] || fail "(b) exit $EXIT_CODE, want 3 (the failure ratio threshold)"
jq -e '.connections.failed_after_established.protocol >= 5 and .messages == 0
       and .connections.failed_after_established.total == .connections.failed_after_established.protocol' \
    "$R" >/dev/null || fail "(b) report: $(jq -c '{messages, c: .connections.failed_after_established}' "$R")"
pass "(b) +PONG where +PANG was expected: $proto protocol failures, no message counted, exit 3"

# ---- (c) inline PING, pipelined, closed loop, against zlbench serve --mode redis ----------------
start_serve --listen 127.0.0.1:0 --mode redis
cat >"$T/c.json" <<JSON
{ "targets": [{"host": "${SERVE_ADDR%:*}", "port": ${SERVE_ADDR##*:}}], "connections": 10,
  "connect_rate": 0, "duration": "2s", "warmup": "500ms", "pollers": {"count": 1},
  "workload": {"type": "message", "message": "PING\\\\r\\\\n", "expect": {"bytes": 7},
               "expect_prefix": "+PONG\\r\\n", "message_interval": "0s", "pipeline": 4},
  "report": {"file": "$T/c.report.json"} }
JSON
set +e
timeout $((60 * SLOW)) "$ZLB" -c "$T/c.json" -q --control off >"$T/c.out" 2>"$T/c.err"
EXIT_CODE=$?
set -e
R="$T/c.report.json"
[ -s "$R" ] || fail "(c) no report (exit $EXIT_CODE): $(tail -3 "$T/c.err")"
read -r msgs rate < <(jq -r '"\(.messages) \(.steady.rates.messages_per_s)"' "$R")
echo "   inline PING, pipeline 4, closed loop: exit $EXIT_CODE, $msgs messages, steady $rate/s"
[ "$EXIT_CODE" = 0 ] || [ "$EXIT_CODE" = 5 ] || fail "(c) exit $EXIT_CODE: $(tail -3 "$T/c.err")"
jq -e '.messages > 1000 and .connections.failed.total == 0
       and .config.workload.message == "PING\r\n" and .config.workload.pipeline == 4' "$R" >/dev/null \
    || fail "(c) report: $(jq -c '{messages, f: .connections.failed, w: .config.workload}' "$R")"
pass "(c) inline PING pipelined 4 deep: $msgs PONGs, none failed"

# ---- (d) a bad escape is a config error with its place ------------------------------------------
printf '{"workload": {"type": "message",\n  "message": "PING\\\\q"}}\n' >"$T/d.json"
set +e
"$ZLB" -c "$T/d.json" -q --control off >"$T/d.out" 2>"$T/d.err"
EXIT_CODE=$?
set -e
[ "$EXIT_CODE" = 2 ] || fail "(d) exit $EXIT_CODE, want 2"
grep -q "d.json:2:14: workload.message: unknown escape \\\\q at byte 4" "$T/d.err" \
    || fail "(d) message: $(cat "$T/d.err")"
pass "(d) $(grep -o 'd.json:[^ ]* workload.message: unknown escape [^ ]*' "$T/d.err")"
