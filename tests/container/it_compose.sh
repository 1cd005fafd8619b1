#!/usr/bin/env bash
# it_compose.sh -- docker/compose.yaml end to end with podman-compose (Debian 12's 1.0.3): the
# built-in target, 3 generator shards, Prometheus (Debian's package, on the same local base)
# scraping every shard, and the merge once every shard wrote its report. The stack runs on its own
# bridge network (service names through the dnsname CNI plugin); only Prometheus's port is
# published, on 127.0.0.1. After the ~15 s run: one merged report whose totals are the shards' sum
# and whose shard set is complete, each container's exit code its report's, and Prometheus (asked
# through its HTTP API from here) scraped all 3 shards, each one's counters up to its report's.
# The stack is torn down afterwards whatever happened (containers, volumes, network).
#   bash tests/container/it_compose.sh      (as root; .ci/run runs it after it_image.sh)
# Where podman cannot run (not root, or no podman and no apt-get to install it) it prints one
# SKIP line with the number of checks skipped and exits 77. ZLB_IMAGE names zlbench's image
# (default localhost/zlbench:ci); ZLB_IT_NO_BUILD=1 uses the images built before (.ci/run: the
# image it_image.sh just built) instead of running docker/build.sh.
set -euo pipefail
CHECKS=5 WHAT=compose
source "$(dirname "$0")/lib.sh"
# What the stack needs beyond podman (.ci/deps installs them; so does this, as build.sh does podman).
need=()
command -v podman-compose >/dev/null || need+=(podman-compose)
[ -x /usr/lib/cni/dnsname ] || need+=(golang-github-containernetworking-plugin-dnsname)
if [ ${#need[@]} -gt 0 ]; then
    echo "installing ${need[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -qq \
        --no-install-recommends "${need[@]}" >/dev/null
fi
IMAGE=${ZLB_IMAGE:-localhost/zlbench:ci}
PROM_IMAGE=localhost/zlbench-prometheus:latest
PROJECT=zlbit$$
NET=${PROJECT}_default
t_start=$(date +%s)

# podman-compose prints every podman command it runs; podman, without systemd, logs that it cannot
# schedule the shards' healthchecks: both go to $T/compose.log, shown when something fails.
pc() { timeout "$1" podman-compose -p "$PROJECT" -f "$REPO/docker/compose.yaml" "${@:2}" \
    >>"$T/compose.log" 2>&1; }
stack() { podman ps -a --filter "label=io.podman.compose.project=$PROJECT" --format '{{.Names}}'; }
teardown() {
    # podman-compose 1.0.3's down removes the containers (and the project's volumes with -v) but
    # not the network: that goes by name. Then whatever down missed, by this project's label.
    pc 60 down -v -t 2 || true
    local left
    left=$(stack 2>/dev/null || true)
    [ -z "$left" ] || podman rm -f -t 2 $left >/dev/null 2>&1 || true
    podman network exists "$NET" 2>/dev/null && podman network rm -f "$NET" >/dev/null 2>&1 || true
}
on_exit() {
    local rc=$?
    if [ "$rc" != 0 ] && [ -s "$T/compose.log" ]; then
        echo "--- podman-compose (last lines) ---" >&2
        grep -v 'unable to get systemd connection' "$T/compose.log" | tail -25 >&2 || true
        for c in $(stack 2>/dev/null || true); do
            echo "--- podman logs $c ---" >&2
            podman logs --tail 8 "$c" 2>&1 | grep -v 'unable to get systemd' >&2 || true
        done
    fi
    teardown
    cleanup
}
trap on_exit EXIT


# ---- 1. the images: zlbench's and the stack's Prometheus ------------------------------------
if [ -z "${ZLB_IT_NO_BUILD:-}" ]; then
    t0=$(date +%s)
    ZLB_IMAGE=$IMAGE bash "$REPO/docker/build.sh" >"$T/build.log" 2>&1 ||
        { tail -40 "$T/build.log"; fail "docker/build.sh failed"; }
    grep '^docker/build.sh:' "$T/build.log"
    echo "  docker/build.sh: $(($(date +%s) - t0)) s"
fi
for img in "$IMAGE" "$PROM_IMAGE"; do
    podman image exists "$img" || fail "no image $img: run docker/build.sh (ZLB_IMAGE=$IMAGE)"
done
zsize=$(podman image inspect --format '{{.Size}}' "$IMAGE")
psize=$(podman image inspect --format '{{.Size}}' "$PROM_IMAGE")
pass "images: $IMAGE $((zsize / 1000000)) MB, $PROM_IMAGE $((psize / 1000000)) MB"

# ---- 2. the stack comes up with podman-compose ----------------------------------------------
# The reports folder and the token file belong to the images' user (uid 10001); zlbench refuses
# a token file others may read.
install -d -o 10001 -g 10001 "$T/reports"
head -c 24 /dev/urandom | base64 | tr -d '/+=' >"$T/token"
chown 10001:10001 "$T/token"
chmod 600 "$T/token"
PROM_PORT=$(free_port)
export ZLB_IMAGE=$IMAGE ZLB_REPORTS=$T/reports ZLB_TOKEN=$T/token ZLB_PROM_PORT=$PROM_PORT
# A merge that waits past the run's end means a shard never wrote its report.
export ZLB_MERGE_WAIT_S=90
scenario="$REPO/docker/compose/scenario.json"
N=$(jq .connections "$scenario")
clear_time_wait
t_up=$(date +%s)
pc 120 up -d || fail "podman-compose up -d exited non-zero"
podman network exists "$NET" || fail "podman-compose made no network $NET"
running=$(stack | sort | tr '\n' ' ')
[ "$running" = "${PROJECT}_merge_1 ${PROJECT}_prometheus_1 ${PROJECT}_shard0_1 ${PROJECT}_shard1_1 ${PROJECT}_shard2_1 ${PROJECT}_target_1 " ] ||
    fail "containers of the stack: $running"
pass "podman-compose up -d: 6 containers on network $NET in $(($(date +%s) - t_up)) s"

# ---- 3. the shards run (15 s), the merge follows them ---------------------------------------
# podman wait prints the container's exit code once it stopped; all four within 90 s of the up.
declare -A CODE
deadline=$((t_up + 90))
for c in shard0 shard1 shard2 merge; do
    left=$((deadline - $(date +%s)))
    [ "$left" -gt 0 ] || left=1
    CODE[$c]=$(timeout "$left" podman wait "${PROJECT}_${c}_1") ||
        fail "$c did not finish within 90 s of podman-compose up"
done
t_done=$(date +%s)
for i in 0 1 2; do
    r="$T/reports/shard-$i.json"
    [ -s "$r" ] || fail "shard $i wrote no report (exit ${CODE[shard$i]})"
    errs=$(validate "$r")
    [ -z "$errs" ] || fail "shard-$i.json against the schema: $errs"
    rc=$(jq -r .exit_code "$r")
    # A shard on this shared 2-CPU box may judge itself saturated (exit 5); its exit code must
    # still be its report's.
    [ "${CODE[shard$i]}" = "$rc" ] && { [ "$rc" = 0 ] || [ "$rc" = 5 ]; } ||
        fail "shard $i container exited ${CODE[shard$i]}, its report says $rc"
    [ "$rc" = 5 ] && echo "  note: shard $i marked saturated on this loaded machine: $(jq -c .generator.reasons "$r")"
    check_invariant "$r" || fail "shard-$i.json breaks the accounting invariant: $(jq -c .connections "$r")"
done
jq -s -e '(map(.shard.index)) == [0, 1, 2] and all(.[]; .shard.count == 3)
    and (map(.shard.config_hash) | unique | length) == 1' \
    "$T"/reports/shard-{0,1,2}.json >/dev/null ||
    fail "shard reports: $(jq -s -c 'map(.shard)' "$T"/reports/shard-{0,1,2}.json)"
pass "3 shards ran $(jq -s -c 'map(.connections.target)' "$T"/reports/shard-{0,1,2}.json) connections, exits ${CODE[shard0]} ${CODE[shard1]} ${CODE[shard2]} = their reports'; stack up to last exit $((t_done - t_up)) s"

# ---- 4. one merged report, the shards' exact sum ---------------------------------------------
m="$T/reports/merged.json"
[ "${CODE[merge]}" = 0 ] || fail "the merge exited ${CODE[merge]}: $(podman logs "${PROJECT}_merge_1" 2>&1 | tail -5)"
[ -s "$m" ] || fail "no merged report: $(podman logs "${PROJECT}_merge_1" 2>&1 | tail -5)"
for i in 0 1 2; do
    [ "$m" -nt "$T/reports/shard-$i.json" ] || fail "merged.json is not newer than shard-$i.json"
done
echo "  merge said: $(podman logs "${PROJECT}_merge_1" 2>&1 | grep -v 'unable to get systemd' | tail -1)"
errs=$(validate "$m")
[ -z "$errs" ] || fail "merged.json against the schema: $errs"
all_valid=$(jq -s 'all(.[]; .valid)' "$T"/reports/shard-{0,1,2}.json)
jq -e --argjson v "$all_valid" '.valid == $v and .shards.count == 3 and .shards.merged == [0, 1, 2]
    and .shards.missing == [] and .shards.config_hash == .config_hash' "$m" >/dev/null ||
    fail "merged shard set: $(jq -c '{valid, exit_code, shards, config_hash}' "$m")"
check_invariant "$m" || fail "merged.json breaks the accounting invariant: $(jq -c .connections "$m")"
totals='{attempted: .connections.attempted, established: .connections.established,
         closed: .connections.closed, messages: .messages}'
merged=$(jq -c "$totals" "$m")
summed=$(jq -s -c "map($totals) | {attempted: map(.attempted) | add, established: map(.established) | add,
    closed: map(.closed) | add, messages: map(.messages) | add}" "$T"/reports/shard-{0,1,2}.json)
echo "  merged report: $merged"
echo "  shards' sum:   $summed"
[ "$merged" = "$summed" ] || fail "merged totals differ from the shards' sum"
jq -e --argjson n "$N" '.connections.attempted == $n and .connections.established == $n
    and .messages > 0' "$m" >/dev/null ||
    fail "merged: want $N attempted and established and messages > 0: $merged"
pass "merged.json: shards [0,1,2] of 3, none missing, valid $(jq .valid "$m"), totals = the shards' sum ($N connections, $(jq .messages "$m") messages)"

# ---- 5. Prometheus inside the stack scraped every shard -------------------------------------
PROM="http://127.0.0.1:$PROM_PORT"
WAIT_S=20 wait_for curl -sf "$PROM/-/ready" || fail "Prometheus on $PROM is not ready"
q() { # q PROMQL : the results as {instance: value}
    curl -sf --max-time 5 "$PROM/api/v1/query" --data-urlencode "query=$1" |
        jq -S -c '[.data.result[] | {(.metric.instance // .metric.shard // "-"): (.value[1] | tonumber)}] | add // {}'
}
# The shards are gone by now: what they were is in Prometheus's memory of the last minutes.
up=$(q 'max by (instance) (max_over_time(up{job="zlbench"}[10m]))')
shards=$(q 'count by (shard) (max_over_time(zlbench_run_info{job="zlbench",shard_count="3"}[10m]))')
est=$(q 'max by (instance) (max_over_time(zlbench_connections_established_total{job="zlbench"}[10m]))')
msg=$(q 'sum by (instance) (max_over_time(zlbench_messages_total{job="zlbench"}[10m]))')
# zlbench_run_info is there only in the scrapes that got an answer: their number per shard.
scrapes=$(q 'sum by (instance) (count_over_time(zlbench_run_info{job="zlbench"}[10m]))')
echo "  Prometheus: up $up; shard labels $shards; answered scrapes $scrapes"
echo "  Prometheus: established_total $est; messages_total $msg"
echo "  reports:    established $(jq -s -c 'map(.connections.established)' "$T"/reports/shard-{0,1,2}.json); messages $(jq -s -c 'map(.messages)' "$T"/reports/shard-{0,1,2}.json)"
[ "$up" = '{"shard0:8089":1,"shard1:8089":1,"shard2:8089":1}' ] ||
    fail "Prometheus did not scrape all 3 shards: up = $up"
[ "$(jq -c 'keys' <<<"$shards")" = '["0","1","2"]' ] || fail "zlbench_run_info shards: $shards"
# 1 s scrapes over a 15 s run: at least 3 answered each (the first ones may precede the shard).
jq -e 'length == 3 and all(.[]; . >= 3)' <<<"$scrapes" >/dev/null ||
    fail "answered scrapes per shard: $scrapes, want 3 shards with >= 3 each"
for i in 0 1 2; do
    r="$T/reports/shard-$i.json"
    # The last scrape came up to 1 s before the shard's end: its counters are > 0 and at most
    # the report's.
    jq -e -n --argjson e "$est" --argjson mm "$msg" --arg k "shard$i:8089" \
        --argjson re "$(jq .connections.established "$r")" --argjson rm "$(jq .messages "$r")" \
        '$e[$k] > 0 and $e[$k] <= $re and $mm[$k] > 0 and $mm[$k] <= $rm' >/dev/null ||
        fail "shard $i: Prometheus established $(jq ".[\"shard$i:8089\"]" <<<"$est") messages $(jq ".[\"shard$i:8089\"]" <<<"$msg"), its report $(jq -c '{e: .connections.established, m: .messages}' "$r")"
done
pass "Prometheus (in the stack, asked on $PROM) scraped shard0..2: up 1, shard labels 0..2, >= 3 scrapes each, counters > 0 and <= each report's"

# ---- teardown, checked ----------------------------------------------------------------------
teardown
left=$(stack)
[ -z "$left" ] || fail "containers left after down: $left"
! podman network exists "$NET" || fail "network $NET left after down"
echo "  torn down: no container of $PROJECT, no network $NET; whole test $(($(date +%s) - t_start)) s"
