#!/usr/bin/env bash
# it_shards.sh -- a Kubernetes Indexed Job simulated on this box: 3 shard processes of one
# scenario ("shard": {"index": "env", "count": 3}, JOB_COMPLETION_INDEX=0..2 as the Job sets it)
# against one separate `zlbench serve`, merged; the merged totals equal a single process's run
# of the same scenario. Then merge's shard-set checks: missing (exit 5, shards.missing,
# --allow-partial), repeated and mismatched shards (exit 2).
source "$(dirname "$0")/lib.sh"

validate() { jq -r --slurpfile schema "$REPO/configs/report.schema.json" -f "$REPO/tests/integration/schema.jq" "$1"; }

clear_time_wait
start_serve --mode echo
host=${SERVE_ADDR%:*}
port=${SERVE_ADDR##*:}

N=300
scenario() { # scenario SHARD_JSON ADDRESS_FILE
    printf '{"targets": [{"host": "%s", "port": %s}], "connections": %d, "connect_rate": 600,
      "duration": "2s", "workload": {"type": "echo", "message_size": 64, "message_interval": "200ms"},
      "control": {"listen": "127.0.0.1:0", "address_file": "%s"}%s}' "$host" "$port" $N "$2" "$1"
}

# One process, the whole scenario.
scenario "" "$T/single.addr" > "$T/single.cfg.json"
# A run's own verdict is not under test here: a loaded machine's stall may mark it saturated
# (exit 5, said in the report), which changes none of the figures compared below.
verdict_ok() { # verdict_ok EXIT_CODE REPORT
    [ "$1" = 0 ] && return 0
    [ "$1" = 5 ] && jq -e '.generator.saturated' "$2" >/dev/null && {
        echo "  note: $(basename "$2") marked saturated on this loaded machine: $(jq -c .generator.reasons "$2")"
        return 0
    }
    return 1
}
set +e
"$ZLB" -c "$T/single.cfg.json" -q --report "$T/single.json" >"$T/single.out" 2>"$T/single.err"
rc=$?
set -e
verdict_ok $rc "$T/single.json" || fail "single run: exit $rc $(tail -3 "$T/single.err")"

# Three pods of an Indexed Job: one ConfigMap (the scenario), the index from the environment.
# Only the control port's address file differs (where output goes is not the scenario).
declare -a SH
for i in 0 1 2; do
    scenario ', "shard": {"index": "env", "count": 3}' "$T/shard$i.addr" > "$T/shard$i.cfg.json"
    start_bg "shard$i" env JOB_COMPLETION_INDEX=$i "$ZLB" -c "$T/shard$i.cfg.json" -q --report "$T/shard$i.json"
    SH[$i]=$BG_PID
done
# A shard's live /stats names its part.
wait_for test -s "$T/shard1.addr" || fail "shard 1 wrote no control address: $(cat "$T/shard1.err")"
wait_for curl -sf "http://$(cat "$T/shard1.addr")/stats" -o "$T/stats1.json" || fail "shard 1 /stats"
jq -e '.shard.index == 1 and .shard.count == 3 and .shard.config_hash == .config_hash' "$T/stats1.json" >/dev/null \
    || fail "/stats of shard 1: $(jq -c '{shard, config_hash}' "$T/stats1.json")"
for i in 0 1 2; do
    wait_exit "${SH[$i]}" $((20 * SLOW))
    verdict_ok "$EXIT_CODE" "$T/shard$i.json" || fail "shard $i: exit $EXIT_CODE $(tail -3 "$T/shard$i.err")"
done
pass "3 shards ran (JOB_COMPLETION_INDEX 0..2); /stats of shard 1: $(jq -c .shard "$T/stats1.json")"

# Each shard ran its exact part; every shard and the single run name one scenario.
jq -s -e --argjson n $N '
    (map(.connections.target)) == [100, 100, 100] and (map(.shard.index)) == [0, 1, 2]
    and (map(.config_hash) | unique | length) == 1 and all(.[]; .config.connections == $n)' \
    "$T/shard0.json" "$T/shard1.json" "$T/shard2.json" >/dev/null \
    || fail "shard reports: $(jq -s -c 'map({t: .connections.target, shard, h: .config_hash})' "$T"/shard?.json)"
[ "$(jq -r .config_hash "$T/single.json")" = "$(jq -r .config_hash "$T/shard0.json")" ] \
    || fail "config_hash: single $(jq -r .config_hash "$T/single.json") vs shard $(jq -r .config_hash "$T/shard0.json")"
for f in single shard0; do
    errs=$(validate "$T/$f.json"); [ -z "$errs" ] || fail "$f.json against the schema: $errs"
done

"$ZLB" merge "$T/shard0.json" "$T/shard1.json" "$T/shard2.json" -o "$T/merged.json" >"$T/merge.out" \
    || fail "merge of the 3 shards: $(cat "$T/merge.out")"
errs=$(validate "$T/merged.json"); [ -z "$errs" ] || fail "merged report against the schema: $errs"
all_valid=$(jq -s 'all(.[]; .valid)' "$T"/shard?.json)
jq -e --argjson v "$all_valid" '.valid == $v and .shards == {"count": 3, "merged": [0, 1, 2],
        "missing": [], "config_hash": .config_hash} and (.config | has("shard") | not) and (has("shard") | not)' \
    "$T/merged.json" >/dev/null || fail "merged report: $(jq -c '{valid, exit_code, shards}' "$T/merged.json")"
check_invariant "$T/merged.json" || fail "merged report breaks the accounting invariant"

# Merged against the single run: what is deterministic is equal, exactly.
exact='{target: .connections.target, attempted: .connections.attempted,
        established: .connections.established, failed: .connections.failed.total,
        connect_samples: .histograms.connect.count}'
m=$(jq -c "$exact" "$T/merged.json"); s=$(jq -c "$exact" "$T/single.json")
echo "  merged: $m"
echo "  single: $s"
[ "$m" = "$s" ] || fail "merged totals differ from the single run's"
jq -e --argjson n $N '.connections.established == $n and .connections.failed.total == 0' "$T/merged.json" >/dev/null \
    || fail "not every connection established once"
# The merged histograms are the shards' added up: counts, sums and extremes exact, so its
# percentiles are the union's within the histogram's resolution (3 significant digits).
jq -s -e '.[0] as $m | .[1:] as $s | all($m.histograms | keys[]; . as $k |
      ($s | map(.histograms[$k].count) | add) == $m.histograms[$k].count
      and ($s | map(.histograms[$k].sum | tonumber) | add) == ($m.histograms[$k].sum | tonumber)
      and ([$s[].histograms[$k] | select(.count > 0) | .min] | min) == (if $m.histograms[$k].count > 0 then $m.histograms[$k].min else null end)
      and ([$s[].histograms[$k] | select(.count > 0) | .max] | max) == (if $m.histograms[$k].count > 0 then $m.histograms[$k].max else null end))
    and $m.messages == ($s | map(.messages) | add)' \
    "$T/merged.json" "$T/shard0.json" "$T/shard1.json" "$T/shard2.json" >/dev/null \
    || fail "merged histograms are not the shards' sum"
# A percentile of the union lies between the parts' (a mixture's quantile), up to resolution.
jq -s -e '.[0].latency_us.connect.p50 as $p | [.[1:][].latency_us.connect.p50] as $ps
    | $p >= ($ps | min) * 0.999 and $p <= ($ps | max) * 1.001' \
    "$T/merged.json" "$T/shard0.json" "$T/shard1.json" "$T/shard2.json" >/dev/null \
    || fail "merged connect p50 $(jq .latency_us.connect.p50 "$T/merged.json") outside the shards' $(jq -s -c 'map(.latency_us.connect.p50)' "$T"/shard?.json)"
# Timing-dependent figures, within stated tolerances: messages over the same 2 s schedule
# within 15% (the shards start up to a few tens of ms apart), and connect p50 within a factor
# of 5 or 2 ms of the single run's (three processes share two loaded cores).
mm=$(jq '.messages' "$T/merged.json"); sm=$(jq '.messages' "$T/single.json")
mp=$(jq .latency_us.connect.p50 "$T/merged.json"); sp=$(jq .latency_us.connect.p50 "$T/single.json")
echo "  messages merged $mm single $sm; connect p50 merged $mp us single $sp us"
if [ -z "${ZLB_SANITIZE:-}" ]; then
    awk -v a="$mm" -v b="$sm" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(b > 0 && d <= 0.15 * b) }' \
        || fail "messages: merged $mm vs single $sm (tolerance 15%)"
    awk -v a="$mp" -v b="$sp" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(d <= 2000 || (a <= 5 * b && b <= 5 * a)) }' \
        || fail "connect p50: merged $mp us vs single $sp us (tolerance x5 or 2 ms)"
else
    echo "  (sanitizer build: timing figures not compared)"
fi
pass "merged 3 shards = the single run: $m"

# merge checks the set: one missing is an invalid merged report (exit 5) unless --allow-partial.
set +e
"$ZLB" merge "$T/shard0.json" "$T/shard2.json" -o "$T/partial.json" >"$T/partial.out" 2>&1; rc=$?
set -e
[ "$rc" = 5 ] || fail "merge of 2 of 3 shards: exit $rc $(cat "$T/partial.out")"
jq -e '.valid == false and .exit_code == 5 and .shards.missing == [1] and .shards.merged == [0, 2]
       and (.invalid_reason | test("shards missing"))' "$T/partial.json" >/dev/null \
    || fail "partial merge: $(jq -c '{valid, exit_code, shards, invalid_reason}' "$T/partial.json")"
"$ZLB" merge --allow-partial "$T/shard0.json" "$T/shard2.json" -o "$T/partial2.json" >/dev/null \
    || fail "--allow-partial: exit $?"
jq -e --argjson v "$(jq -s 'all(.[]; .valid)' "$T/shard0.json" "$T/shard2.json")" \
    '.valid == $v and .shards.missing == [1] and (.invalid_reason // "" | test("shards missing") | not)' \
    "$T/partial2.json" >/dev/null \
    || fail "--allow-partial report: $(jq -c '{valid, exit_code, shards}' "$T/partial2.json")"
pass "2 of 3 shards: exit 5, shards.missing [1]; --allow-partial: exit 0, still listed"

refused() { # refused WHAT FILE... : merge must exit 2 and write nothing
    local what=$1; shift
    set +e; "$ZLB" merge "$@" -o "$T/refused.json" >/dev/null 2>"$T/refused.err"; rc=$?; set -e
    [ "$rc" = 2 ] && [ ! -e "$T/refused.json" ] || fail "$what: exit $rc $(cat "$T/refused.err")"
    echo "  $what -> $(cat "$T/refused.err")"
}
refused "a repeated shard" "$T/shard0.json" "$T/shard1.json" "$T/shard1.json" "$T/shard2.json"
grep -q "shard 1/3 twice" "$T/refused.err" || fail "repeat message: $(cat "$T/refused.err")"
jq '.shard.count = 4 | .shard.index = 3' "$T/shard2.json" > "$T/other-split.json"
refused "another split" "$T/shard0.json" "$T/shard1.json" "$T/other-split.json"
refused "a whole run beside shards" "$T/shard0.json" "$T/shard1.json" "$T/single.json"
pass "merge refuses a repeated shard, another split and a whole run among shards (exit 2)"
