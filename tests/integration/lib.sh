# lib.sh -- helpers for the whole-daemon tests: temp dirs, background daemons, polling, asserts.
# Sourced by it_*.sh, which get the zlbench binary as $1.
set -euo pipefail
# A CI job's step summary is for the job, not for every run a test makes.
unset GITHUB_STEP_SUMMARY
ZLB="${1:?usage: $0 path/to/zlbench}"
ZLB="$(cd "$(dirname "$ZLB")" && pwd)/$(basename "$ZLB")"
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
T="$(mktemp -d /tmp/zlb-it.XXXXXX)"
PIDS=()
# Sanitizer builds run several times slower: scale waits by this.
SLOW=1
[ -n "${ZLB_SANITIZE:-}" ] && SLOW=4

cleanup() {
    local p
    for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$T"
}
trap cleanup EXIT

fail() { echo "FAIL: $*" >&2; exit 1; }
skip() { echo "SKIP: $*"; exit 77; }
pass() { echo "ok: $*"; }

# wait_for CMD... : polls CMD every 50 ms for up to WAIT_S seconds (default 20 * SLOW).
# A pipeline to poll goes through `bash -o pipefail -c "curl -sf URL | jq -e F"`, never `sh -c`:
# jq 1.6's -e exits 0 on empty input, so without pipefail a curl that fails (the port not serving
# yet) passes the wait at once.
wait_for() {
    local deadline=$(( $(date +%s) + ${WAIT_S:-20} * SLOW ))
    until "$@" >/dev/null 2>&1; do
        [ "$(date +%s)" -lt "$deadline" ] || return 1
        sleep 0.05
    done
}

# start_bg NAME CMD... : runs CMD in the background, output in $T/NAME.out; sets BG_PID.
start_bg() {
    local name=$1; shift
    "$@" >"$T/$name.out" 2>"$T/$name.err" &
    BG_PID=$!
    PIDS+=("$BG_PID")
}

# wait_exit PID TIMEOUT_S : waits for PID and sets EXIT_CODE; fails the test on timeout.
wait_exit() {
    local pid=$1 t=$(( $2 * SLOW )) i=0
    while kill -0 "$pid" 2>/dev/null; do
        i=$((i + 1))
        [ $i -le $((t * 20)) ] || fail "pid $pid still running after ${t}s"
        sleep 0.05
    done
    set +e; wait "$pid"; EXIT_CODE=$?; set -e
}

# The accounting invariant on a /stats document or a report (file or stdin).
check_invariant() {
    jq -e '.connections as $c
        | ($c.attempted == $c.established + $c.failed_before_established.total + $c.in_flight)
          and ($c.established == $c.closed + $c.failed_after_established.total + $c.open)' "$@" >/dev/null
}

# Starts `zlbench serve` in the background; sets SERVE_ADDR and SERVE_PID.
start_serve() {
    start_bg serve "$ZLB" serve --address-file "$T/serve.addr" "$@"
    SERVE_PID=$BG_PID
    wait_for test -s "$T/serve.addr" || fail "zlbench serve did not start: $(cat "$T/serve.err")"
    SERVE_ADDR=$(cat "$T/serve.addr")
}

# start_daemon NAME ADDR_FILE CMD... : starts a zlbench run whose config writes its control
# address to ADDR_FILE, waits for it, and sets DAEMON_PID and DAEMON_URL (http://ADDR).
start_daemon() {
    local name=$1 addr=$2; shift 2
    start_bg "$name" "$@"
    DAEMON_PID=$BG_PID
    wait_for test -s "$addr" || fail "$name: no control address: $(cat "$T/$name.err")"
    DAEMON_URL="http://$(cat "$addr")"
}

clear_time_wait() { ss -K -t state time-wait '( dst 127.0.0.0/8 )' >/dev/null 2>&1 || true; }
