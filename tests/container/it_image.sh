#!/usr/bin/env bash
# it_image.sh -- the container image as a user meets it: built from this checkout by
# docker/build.sh, then run with podman. The default scenario runs in it with host networking and a
# mounted report folder while the host reads /stats and the healthcheck passes; the report is valid
# and keeps the accounting invariant; exit codes cross the container boundary (a failed threshold
# is 3 outside, a bad config 2); the image runs as non-root with no compiler in it.
#   bash tests/container/it_image.sh        (as root; .ci/run runs it)
# Where podman cannot run (not root, or no podman and no apt-get to install it) it prints one
# SKIP line with the number of checks skipped and exits 77. ZLB_IMAGE names the image to build
# (default localhost/zlbench:ci); ZLB_IT_NO_BUILD=1 tests an image built before.
set -euo pipefail
CHECKS=7 WHAT=container
source "$(dirname "$0")/lib.sh"
IMAGE=${ZLB_IMAGE:-localhost/zlbench:ci}
RUN_NAME=zlb-it-run-$$
EXPOSED_NAME=zlb-it-exposed-$$

cleanup_containers() {
    # Never leave a container behind, whatever failed (only the names this test created).
    podman rm -f "$RUN_NAME" "$EXPOSED_NAME" >/dev/null 2>&1 || true
    cleanup
}
trap cleanup_containers EXIT

crun() { podman run --rm --no-healthcheck "$@"; }

# ---- 1. the image builds from the checkout, warnings as errors ------------------------------
if [ -z "${ZLB_IT_NO_BUILD:-}" ]; then
    t0=$(date +%s)
    ZLB_IMAGE=$IMAGE bash "$REPO/docker/build.sh" >"$T/build.log" 2>&1 ||
        { tail -40 "$T/build.log"; fail "docker/build.sh failed"; }
    grep '^docker/build.sh:' "$T/build.log"
    pass "image $IMAGE built in $(($(date +%s) - t0)) s"
fi

# ---- 2. what is in it: the commit, a non-root user, no compilers, a small size --------------
commit=$(git -C "$REPO" rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
version=$(crun --network none "$IMAGE" --version | head -1)
echo "$version" | grep -q "$commit" || fail "--version in the image: '$version'; checkout: $commit"
pass "--version names the checkout's commit: $version"

cfg=$(podman image inspect "$IMAGE" | jq -c '.[0] | {User: .Config.User, WorkingDir: .Config.WorkingDir,
    ExposedPorts: .Config.ExposedPorts, Healthcheck: .Healthcheck.Test}')
echo "$cfg" | jq -e '.User == "10001:10001" and .WorkingDir == "/reports"
    and (.ExposedPorts | has("8089/tcp")) and (.Healthcheck | tostring | test("zlbench-healthcheck"))' \
    >/dev/null || fail "image config: $cfg"
tools=$(crun --network none --entrypoint /bin/sh "$IMAGE" -c \
    'for t in cc gcc clang ld make cmake; do command -v $t; done; true')
[ -z "$tools" ] || fail "the runtime image carries build tools: $tools"
size=$(podman image inspect --format '{{.Size}}' "$IMAGE")
[ "$size" -lt 120000000 ] || fail "image is $((size / 1000000)) MB, more than the 120 MB budget"
pass "user 10001, /reports, EXPOSE 8089, HEALTHCHECK, no compilers, $((size / 1000000)) MB (< 120)"

# ---- 3. the default scenario: host network, report folder mounted, /stats from the host -----
port=$(free_port)
mkdir -p "$T/reports"
clear_time_wait
# :U gives the folder to the image's user (uid 10001); ZLB_HEALTH_ADDR points the healthcheck at
# the port chosen here instead of 8089.
start_bg run podman run --rm --name "$RUN_NAME" --network host -v "$T/reports:/reports:U" \
    -e ZLB_HEALTH_ADDR="127.0.0.1:$port" \
    "$IMAGE" -c /etc/zlbench/default.json --control "127.0.0.1:$port" -d 5s
RUN_PID=$BG_PID
stats_open() {
    curl -sf "http://127.0.0.1:$port/stats" -o "$T/stats.json" &&
        jq -e '.connections.open > 0' "$T/stats.json"
}
WAIT_S=30 wait_for stats_open ||
    fail "no /stats with open connections from the host on 127.0.0.1:$port: $(tail -5 "$T/run.err")"
check_invariant "$T/stats.json" ||
    fail "live snapshot breaks the invariant: $(jq -c .connections "$T/stats.json")"
health=$(podman healthcheck run "$RUN_NAME" 2>&1) || fail "healthcheck during the run: $health"
pass "from the host: /stats ($(jq -r .state "$T/stats.json"), $(jq -r .connections.open "$T/stats.json") open, invariant holds); healthcheck ${health:-healthy}"
wait_exit "$RUN_PID" 60
report="$T/reports/zlbench-report.json"
[ -s "$report" ] || fail "no report in the mounted folder (exit $EXIT_CODE): $(tail -5 "$T/run.err")"
errs=$(validate "$report")
[ -z "$errs" ] || fail "the report does not match the schema: $errs"
check_invariant "$report" || fail "report breaks the invariant: $(jq -c .connections "$report")"
jq -e --arg c "$commit" '.connections.attempted == 2000 and .connections.established == 2000
    and (.. | objects | select(has("commit")) | .commit) == $c' "$report" >/dev/null ||
    fail "report: $(jq -c '{c: .connections | {attempted, established}, commit: [.. | objects | .commit? // empty]}' "$report")"
# The run may be declared invalid (5) if this shared machine starves it; the container's exit
# code must be the report's either way.
rep_code=$(jq -r .exit_code "$report")
[ "$EXIT_CODE" = "$rep_code" ] && { [ "$EXIT_CODE" = 0 ] || [ "$EXIT_CODE" = 5 ]; } ||
    fail "podman run exited $EXIT_CODE, the report says $rep_code"
pass "report in the mounted folder: valid, 2000 established, invariant holds, exit $EXIT_CODE outside = report's $rep_code"

# ---- 4. exit codes cross the container boundary ---------------------------------------------
cat >"$T/fail.json" <<'JSON'
{ "embedded_target": {"mode": "echo", "listen": "127.0.0.1:0"},
  "connections": 20, "connect_rate": 200, "duration": "1s",
  "control": {"listen": "127.0.0.1:0"},
  "report": {"file": "fail-report.json"},
  "thresholds": {"rates.connects_per_s": "> 1000000000"} }
JSON
chmod 644 "$T/fail.json"
set +e
crun --network host -v "$T/reports:/reports:U" -v "$T/fail.json:/etc/zlbench/fail.json:ro" \
    "$IMAGE" -c /etc/zlbench/fail.json -q >"$T/fail.out" 2>&1
code=$?
set -e
[ "$code" = 3 ] || fail "a failed threshold exited $code outside the container, want 3: $(tail -5 "$T/fail.out")"
jq -e '.exit_code == 3' "$T/reports/fail-report.json" >/dev/null || fail "fail-report.json: exit_code"
set +e
crun --network none "$IMAGE" -c /etc/zlbench/missing.json >"$T/bad.out" 2>&1
code=$?
set -e
[ "$code" = 2 ] || fail "a missing config exited $code, want 2: $(cat "$T/bad.out")"
pass "a failed threshold exits 3 outside the container, a missing config 2"

# ---- 5. the control port on every address, behind the token -------------------------------
# As the README documents it: --control 0.0.0.0:PORT, the token file mounted read-only and named
# by ZLB_CONTROL_TOKEN_FILE. Host networking, so the test's traffic stays on loopback (a
# published port would route through podman's bridge network).
port=$(free_port)
head -c 24 /dev/urandom | base64 | tr -d '/+=' >"$T/token"
# The image's user must read it, and nobody else (zlbench refuses a token file others can read).
chown 10001:10001 "$T/token"
chmod 600 "$T/token"
start_bg exposed podman run --rm --name "$EXPOSED_NAME" --network host \
    -v "$T/token:/run/secrets/zlbench-token:ro" -e ZLB_CONTROL_TOKEN_FILE=/run/secrets/zlbench-token \
    -e ZLB_HEALTH_ADDR="127.0.0.1:$port" \
    "$IMAGE" -c /etc/zlbench/default.json --control "0.0.0.0:$port" -d 4s -q
EXPOSED_PID=$BG_PID
authed() {
    curl -sf -H "Authorization: Bearer $(cat "$T/token")" "http://127.0.0.1:$port/stats" \
        -o "$T/exposed.json" && jq -e '.connections.open > 0' "$T/exposed.json"
}
WAIT_S=30 wait_for authed ||
    fail "no /stats from 127.0.0.1:$port: $(tail -5 "$T/exposed.err")"
anon=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/stats")
[ "$anon" = 401 ] || fail "GET /stats without the token: $anon, want 401"
health=$(podman healthcheck run "$EXPOSED_NAME" 2>&1) ||
    fail "healthcheck (with the token from ZLB_CONTROL_TOKEN_FILE): $health"
wait_exit "$EXPOSED_PID" 60
[ "$EXIT_CODE" = 0 ] || [ "$EXIT_CODE" = 5 ] ||
    fail "the exposed-port run exited $EXIT_CODE: $(tail -5 "$T/exposed.err")"
pass "control on 0.0.0.0:$port: /stats 200 with the token, $anon without; healthcheck ${health:-healthy}; exit $EXIT_CODE"
