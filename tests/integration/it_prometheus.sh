#!/usr/bin/env bash
# it_prometheus.sh -- live aggregation through a real Prometheus (Debian's package, .ci/deps):
# it scrapes the /metrics of two 3-shard runs side by side every second (a churn scenario, whose
# connects go on all run long, and an echo scenario, whose messages do), and its sums over the
# shards -- sum(rate(..._total[5s])), histogram_quantile(0.99, sum by (le) (rate(..._bucket)))
# -- match the merged reports within stated tolerances.
source "$(dirname "$0")/lib.sh"

command -v prometheus >/dev/null || skip "prometheus not installed (Debian package prometheus, see .ci/deps)"
validate() { jq -r --slurpfile schema "$REPO/configs/report.schema.json" -f "$REPO/tests/integration/schema.jq" "$1"; }

clear_time_wait
start_serve --mode echo
host=${SERVE_ADDR%:*}
port=${SERVE_ADDR##*:}
DUR=10

# Control ports chosen up front (six at once, so they differ), so that Prometheus is up and
# scraping before the shards start: its start-up takes seconds on a loaded machine.
read -r -a PORTS <<<"$(python3 -c '
import socket
ss = [socket.socket() for _ in range(7)]
for s in ss: s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in ss))')"
PROM_PORT=${PORTS[6]}
addr() { # addr churn|echo SHARD
    local k=$2
    [ "$1" = echo ] && k=$((k + 3))
    echo "127.0.0.1:${PORTS[$k]}"
}
targets() { echo "[\"$(addr "$1" 0)\", \"$(addr "$1" 1)\", \"$(addr "$1" 2)\"]"; }
# Prometheus, as a cluster's would be configured: one job per scenario, every shard a target.
cat > "$T/prometheus.yml" <<EOF
global: {scrape_interval: 1s, scrape_timeout: 900ms, evaluation_interval: 1s}
scrape_configs:
  - job_name: churn
    static_configs: [{targets: $(targets churn)}]
  - job_name: echo
    static_configs: [{targets: $(targets echo)}]
EOF
start_bg prometheus prometheus --config.file="$T/prometheus.yml" --storage.tsdb.path="$T/prom" \
    --web.listen-address="127.0.0.1:$PROM_PORT" --log.level=warn
PROM="http://127.0.0.1:$PROM_PORT"
wait_for curl -sf "$PROM/-/ready" || fail "prometheus did not become ready: $(tail -5 "$T/prometheus.err")"

scenario() { # scenario NAME WORKLOAD_JSON CONNECTIONS SHARD
    printf '{"targets": [{"host": "%s", "port": %s}], "pollers": {"count": 1}, "connections": %d,
      "connect_rate": 600, "duration": "%ds", "workload": %s, "control": {"listen": "%s"}}' \
        "$host" "$port" "$3" $DUR "$2" "$(addr "$1" "$4")"
}
# Ready is not scraping: Prometheus applies its targets a few seconds after it starts (seen: the
# first samples 5.5 s after the shards started, 3 samples in the 5 s window at the query instant,
# and sum(rate) 29 % low). Every target has an `up` series (0 while nothing listens) once its scrape
# loop has run: only then do the shards start.
WAIT_S=20 wait_for bash -o pipefail -c "curl -sf '$PROM/api/v1/query' --data-urlencode 'query=count(up)' | jq -e '.data.result[0].value[1] == \"6\"'" \
    || fail "prometheus never scraped its 6 targets"
declare -A PID
for i in 0 1 2; do
    # churn: each connection lives 500 ms, then the next opens: 300 connects/s all run long.
    scenario churn '{"type": "churn", "lifetime": "500ms"}' 150 $i > "$T/churn-$i.cfg.json"
    start_bg "churn-$i" "$ZLB" -c "$T/churn-$i.cfg.json" -q --shard $i/3 --report "$T/churn-$i.json"
    PID[churn-$i]=$BG_PID
    # echo: 90 connections, a 64-byte round trip every 100 ms each: 900 messages/s.
    scenario echo '{"type": "echo", "message_size": 64, "message_interval": "100ms"}' 90 $i > "$T/echo-$i.cfg.json"
    start_bg "echo-$i" "$ZLB" -c "$T/echo-$i.cfg.json" -q --shard $i/3 --report "$T/echo-$i.json"
    PID[echo-$i]=$BG_PID
done
T0=$(date +%s.%N)

q() { # q PROMQL [TIME] : the first result's value, or "none"
    curl -sf "$PROM/api/v1/query" --data-urlencode "query=$1" ${2:+--data-urlencode "time=$2"} \
        | jq -r '.data.result[0].value[1] // "none"'
}
# Every shard scraped, each naming its part.
all_up() { [ "$(q 'count(up == 1)')" = 6 ]; }
WAIT_S=8 wait_for all_up || fail "prometheus is not scraping all 6 shards: $(q 'count(up == 1)')"
# The query instant: late in the steady state (the ramp takes 250 ms), before any shard ends.
TQ=$(awk -v t="$T0" -v d=$DUR 'BEGIN { printf "%.3f", t + d - 1.5 }')
while awk -v tq="$TQ" -v now="$(date +%s.%N)" 'BEGIN { exit !(now < tq + 0.3) }'; do sleep 0.1; done
shards=$(q 'count(count by (shard) (zlbench_run_info{job="churn",shard_count="3"}))' "$TQ")
[ "$shards" = 3 ] || fail "zlbench_run_info shard labels of the churn job: $shards"
connects=$(q 'sum(rate(zlbench_connections_established_total{job="churn"}[5s]))' "$TQ")
messages=$(q 'sum(rate(zlbench_messages_total{job="echo"}[5s]))' "$TQ")
live_p99=$(q 'histogram_quantile(0.99, sum by (le) (rate(zlbench_connect_seconds_bucket{job="churn"}[6s])))' "$TQ")
samples=$(q 'count_over_time(zlbench_elapsed_seconds{job="churn"}[20s])' "$TQ")

for k in "${!PID[@]}"; do
    wait_exit "${PID[$k]}" $((DUR + 15))
    # A loaded machine's stall may mark a run saturated (exit 5): not what is tested here.
    [ "$EXIT_CODE" = 0 ] || { [ "$EXIT_CODE" = 5 ] && jq -e .generator.saturated "$T/$k.json" >/dev/null; } \
        || fail "$k: exit $EXIT_CODE $(tail -3 "$T/$k.err")"
done
for s in churn echo; do
    set +e; "$ZLB" merge "$T/$s-0.json" "$T/$s-1.json" "$T/$s-2.json" -o "$T/$s.json" >"$T/$s-merge.out" 2>&1; rc=$?; set -e
    [ "$rc" = 0 ] || fail "merge $s: exit $rc $(cat "$T/$s-merge.out")"
    jq -e '.shards.missing == []' "$T/$s.json" >/dev/null || fail "merge $s: $(jq -c .shards "$T/$s.json")"
done
# The whole run's p99, as a dashboard shows a finished run: the shards' last scraped buckets
# (cumulative, so nothing before the first scrape is lost), summed by le.
TE=$(date +%s.%N)
p99=$(q 'histogram_quantile(0.99, sum by (le) (last_over_time(zlbench_connect_seconds_bucket{job="churn"}[30s])))' "$TE")
r_connects=$(jq '.steady.rates.connects_per_s' "$T/churn.json")
r_messages=$(jq '.steady.rates.messages_per_s' "$T/echo.json")
r_p99=$(jq '.latency_us.connect.p99 / 1e6' "$T/churn.json")
echo "  prometheus at t=$DUR-1.5 s (samples per shard in 20 s: $samples) vs the merged reports' steady state:"
echo "    connects/s  $connects vs $r_connects (tolerance 10%: a 5 s window against the whole steady state)"
echo "    messages/s  $messages vs $r_messages (tolerance 10%)"
echo "    connect p99 of the run $p99 s vs $r_p99 s (tolerance 30%: 10%-wide buckets interpolated, the last second unscraped)"
echo "    connect p99 live, rate over 6 s: $live_p99 s (a window of the run: checked to lie in the run's range)"
[ "$connects" != none ] && [ "$messages" != none ] && [ "$p99" != none ] && [ "$live_p99" != none ] \
    || fail "a query found no series"
r_min=$(jq '.latency_us.connect.min / 1e6' "$T/churn.json"); r_max=$(jq '.latency_us.connect.max / 1e6' "$T/churn.json")
awk -v p="$live_p99" -v lo="$r_min" -v hi="$r_max" 'BEGIN { exit !(p >= lo * 0.9 && p <= hi * 1.1) }' \
    || fail "live p99 $live_p99 outside the run's connect latencies [$r_min, $r_max]"
within() { awk -v a="$1" -v b="$2" -v tol="$3" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(b > 0 && d <= tol * b) }'; }
if [ -z "${ZLB_SANITIZE:-}" ]; then
    within "$connects" "$r_connects" 0.10 || fail "sum(rate(connects)) $connects vs merged $r_connects"
    within "$messages" "$r_messages" 0.10 || fail "sum(rate(messages)) $messages vs merged $r_messages"
    within "$p99" "$r_p99" 0.30 || fail "histogram_quantile(0.99) $p99 vs merged p99 $r_p99"
else
    echo "  (sanitizer build: the figures are printed, not compared)"
fi
pass "prometheus summed 3 shards per scenario like merge did"
