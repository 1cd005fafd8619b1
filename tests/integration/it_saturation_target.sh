#!/usr/bin/env bash
# it_saturation_target.sh -- a target that resets every connection, at low load: the target's
# fault, so the generator must not call itself saturated (reconnect backoff and the connect rate's
# waits are not lateness).
source "$(dirname "$0")/lib.sh"

# ---- a target that resets every connection, at low load: the target's fault, not ours ----
cat > "$T/rst.py" <<'PY'
import socket, struct, sys, time
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(512)
open(sys.argv[1], "w").write(str(s.getsockname()[1]))
end = time.time() + 30
s.settimeout(0.5)
while time.time() < end:
    try:
        c, _ = s.accept()
    except socket.timeout:
        continue
    c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    c.close()  # RST
PY
start_bg rst python3 "$T/rst.py" "$T/rst.port"
wait_for test -s "$T/rst.port" || fail "reset server did not start"
printf '%s' "{ \"targets\": [{\"host\": \"127.0.0.1\", \"port\": $(cat "$T/rst.port")}],
  \"connections\": 50, \"connect_rate\": 200, \"duration\": \"4s\",
  \"workload\": {\"type\": \"hold\", \"backoff_min\": \"10ms\", \"backoff_max\": \"50ms\"},
  \"thresholds\": {\"failure_ratio\": \"<= 1\"}, \"control\": {\"listen\": null},
  \"report\": {\"file\": \"$T/rst.report.json\"} }" > "$T/rst.json"
set +e; "$ZLB" -c "$T/rst.json" -q 2>"$T/rst.err"; code=$?; set -e
jq -c '{exit_code, attempted: .connections.attempted, failed: .connections.failed.total,
    lag: .latency_us.schedule_lag | {p90, max}, generator: .generator | {saturated, reasons},
    busy: [.pollers[].busy_pct]}' "$T/rst.report.json"
jq -e '.connections.attempted > 100' "$T/rst.report.json" >/dev/null || fail "the target did not reset"
[ "$code" != 5 ] || fail "a resetting target at low load was blamed on the generator (exit 5)"
pass "a target resetting every connection: not saturated (exit $code)"
