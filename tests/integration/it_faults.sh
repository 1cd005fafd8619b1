#!/usr/bin/env bash
# it_faults.sh -- faults counted under the right reason with the invariant intact: a closed port
# (refused, reconnects rate-limited), SYNs dropped by nft in a namespace (timeout at the deadline),
# a low RLIMIT_NOFILE (fd_limit, no spinning), and churn.
source "$(dirname "$0")/lib.sh"

run_cfg() { # run_cfg NAME JSON [extra args]: runs to completion, report in $T/NAME.report.json
    local name=$1 json=$2; shift 2
    printf '%s' "$json" > "$T/$name.json"
    set +e
    "$ZLB" -c "$T/$name.json" -q --control off --report "$T/$name.report.json" "$@" \
        >"$T/$name.out" 2>"$T/$name.err"
    EXIT_CODE=$?
    set -e
    [ -s "$T/$name.report.json" ] || fail "$name: no report (exit $EXIT_CODE): $(tail -5 "$T/$name.err")"
    check_invariant "$T/$name.report.json" || fail "$name: invariant broken"
}

# 1. A closed port: every attempt refused; reconnects rate-limited, not a storm.
# A port that was just listening and is now closed (no other program of ours uses it).
start_serve --listen 127.0.0.1:0
port=${SERVE_ADDR##*:}
kill -TERM "$SERVE_PID"; wait_exit "$SERVE_PID" 10
rm -f "$T/serve.addr"
run_cfg refused "{\"targets\": [{\"host\": \"127.0.0.1\", \"port\": $port}], \"connections\": 200,
  \"connect_rate\": 1000, \"duration\": \"2s\", \"workload\": {\"type\": \"hold\", \"backoff_min\": \"100ms\"}}"
jq -e '.connections.established == 0 and .connections.failed.refused > 0
       and .connections.failed.refused == .connections.failed.total' "$T/refused.report.json" >/dev/null \
    || fail "refused: $(jq -c .connections "$T/refused.report.json")"
att=$(jq .connections.attempted "$T/refused.report.json")
# 200 first attempts, then per-connection backoff from 100 ms doubling: a storm would be ~10^5.
[ "$att" -lt 5000 ] || fail "refused: $att attempts in 2 s: reconnect storm"
pass "closed port: $att attempts, all refused, no storm (exit $EXIT_CODE)"

# 2. SYNs dropped by nft inside a namespace of our own: timeouts at the configured deadline.
if [ "$(id -u)" = 0 ] && command -v nft >/dev/null && ip netns add "zlbt$$" 2>/dev/null; then
    NS="zlbt$$"
    trap 'ip netns del "$NS" 2>/dev/null; cleanup' EXIT
    ip -n "$NS" link set lo up
    ip netns exec "$NS" nft -f - <<'NFT'
table inet zlbtest {
  chain input { type filter hook input priority 0; tcp dport 9999 tcp flags & (syn|ack) == syn drop; }
}
NFT
    printf '%s' '{"targets": [{"host": "127.0.0.1", "port": 9999}], "connections": 20, "connect_rate": 0,
      "connect_timeout": "500ms", "duration": "0s",
      "workload": {"type": "hold", "reconnect": false}}' > "$T/to.json"
    start_bg to ip netns exec "$NS" "$ZLB" -c "$T/to.json" -q --report "$T/to.report.json" \
        --control 127.0.0.1:18089
    TPID=$BG_PID
    # Poll inside the namespace: the control port lives there.
    early=-1; late=-1
    for i in $(seq 1 100); do
        s=$(ip netns exec "$NS" curl -sf --max-time 1 http://127.0.0.1:18089/stats) || { sleep 0.02; continue; }
        el=$(jq .elapsed_s <<<"$s"); to=$(jq .connections.failed.timeout <<<"$s")
        if awk "BEGIN{exit !($el < 0.44)}"; then early=$to; fi
        if awk "BEGIN{exit !($el > 0.58)}"; then late=$to; break; fi
        sleep 0.02
    done
    kill -TERM "$TPID"; wait_exit "$TPID" 20
    [ "$early" = 0 ] || fail "timeouts before 0.44 s: $early"
    [ "$late" = 20 ] || fail "timeouts after 0.58 s: $late (expected 20)"
    jq -e '.connections.failed.timeout == 20 and .connections.attempted == 20' "$T/to.report.json" >/dev/null \
        || fail "timeout report: $(jq -c .connections "$T/to.report.json")"
    pass "SYN drop: 20 timeouts, none before 0.44 s, all by 0.58 s (deadline 0.5 s)"
else
    echo "SKIP (part 2): needs root, nft and ip netns"
fi

# 3. EMFILE: a hard limit of 128 open files; the rest are fd_limit, and the poller does not spin.
start_serve --listen 127.0.0.1:0
run_cfg_emfile() {
    printf '%s' "{\"targets\": [{\"host\": \"127.0.0.1\", \"port\": ${SERVE_ADDR##*:}}],
      \"connections\": 400, \"connect_rate\": 0, \"duration\": \"2s\", \"pollers\": {\"count\": 1}}" > "$T/emfile.json"
    set +e
    ( ulimit -n 128; exec "$ZLB" -c "$T/emfile.json" -q --control off --report "$T/emfile.report.json" ) \
        >"$T/emfile.out" 2>"$T/emfile.err"
    EXIT_CODE=$?
    set -e
}
run_cfg_emfile
[ -s "$T/emfile.report.json" ] || fail "emfile: no report: $(tail -5 "$T/emfile.err")"
check_invariant "$T/emfile.report.json" || fail "emfile: invariant"
jq -e '.connections.failed.fd_limit > 0 and .connections.established > 50' "$T/emfile.report.json" >/dev/null \
    || fail "emfile: $(jq -c .connections "$T/emfile.report.json")"
cpu=$(jq '.pollers[0].cpu_time_s' "$T/emfile.report.json")
awk "BEGIN{exit !($cpu < 1.0 * $SLOW)}" || fail "emfile: poller burned ${cpu}s of CPU in a 2 s run: spinning"
pass "EMFILE: fd_limit counted, poller CPU ${cpu}s over 2 s"

# 4. Churn: connections live 200 ms and are replaced.
run_cfg churn '{"embedded_target": {"mode": "echo"}, "connections": 200, "connect_rate": 2000,
  "duration": "2s", "workload": {"type": "churn", "lifetime": "200ms"}}'
jq -e '.connections.closed_by_us > 400 and .connections.established > 600' "$T/churn.report.json" >/dev/null \
    || fail "churn: $(jq -c .connections "$T/churn.report.json")"
pass "churn: $(jq .connections.closed_by_us "$T/churn.report.json") closed by us"
