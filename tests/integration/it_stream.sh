#!/usr/bin/env bash
# it_stream.sh -- the stream workload against `zlbench serve`: (a) send to the sink: the bytes
# zlbench wrote are the bytes the sink read, to the byte; (b) receive from the source with a
# first message: the source read exactly one first message per connection and wrote at least
# what zlbench read; (c) configs/stream.json as written; (d) 10,000 streaming connections cost
# no more memory than held ones (bench conn_memory's budget: 512 B each as an RSS slope) plus
# 64 KiB per poller.
source "$(dirname "$0")/lib.sh"
[ -n "${KEEP_T:-}" ] && trap "" EXIT

# serve_stop: SIGTERM the target and read its "bytes in I out O" line.
serve_stop() {
    kill -TERM "$SERVE_PID"; wait_exit "$SERVE_PID" 10
    read -r SRV_IN SRV_OUT < <(sed -n 's/.*bytes in \([0-9]*\) out \([0-9]*\).*/\1 \2/p' "$T/serve.err")
    cp "$T/serve.err" "$T/serve.err.$SERVE_PID"; [ -n "$SRV_IN" ] || fail "no byte counts from zlbench serve: $(cat "$T/serve.err")"
}
# start_serve waits for its address file: a stale one from the previous target must go first.
serve() { rm -f "$T/serve.addr"; start_serve --listen 127.0.0.1:0 "$@"; }
no_conns() { [ "$(ss -Htn state established "( sport = :$1 )" | wc -l)" = 0 ]; }

# (a) send to the sink
serve --mode sink
PORT=${SERVE_ADDR##*:}
cat > "$T/a.json" <<JSON
{ "targets": [{"host": "127.0.0.1", "port": $PORT}], "connections": 20, "connect_rate": 0,
  "duration": "2s", "warmup": "500ms", "pollers": {"count": 2},
  "workload": {"type": "stream", "direction": "send", "stall_timeout": "5s"},
  "control": {"listen": "127.0.0.1:0"}, "report": {"file": "$T/a-report.json"} }
JSON
"$ZLB" -c "$T/a.json" >"$T/a.out" 2>"$T/a.err" || true
check_invariant "$T/a-report.json" || fail "(a) invariant"
OUT=$(jq .bytes.out "$T/a-report.json")
wait_for no_conns "$PORT" || fail "(a) the sink still has connections"
serve_stop
echo "(a) zlbench wrote $OUT bytes, the sink read $SRV_IN"
[ "$OUT" -gt 10000000 ] || fail "(a) only $OUT bytes sent"
[ "$OUT" = "$SRV_IN" ] || fail "(a) wrote $OUT, the sink read $SRV_IN"
jq -e '.connections.established == 20 and .connections.failed.total == 0
       and .connections.stalled == 0 and .steady.rates.bytes_out_per_s > 0' "$T/a-report.json" \
    >/dev/null || fail "(a) report: $(jq -c '{connections, steady: .steady.rates}' "$T/a-report.json")"
grep -q "stream       steady: .* Gbit/s out" "$T/a.out" || fail "(a) no Gbit/s line: $(tail -20 "$T/a.out")"
pass "(a) send: $OUT bytes on both sides; $(grep -o 'steady: [0-9.]* Gbit/s out' "$T/a.out")"

# (b) receive from the source, a first message per connection
serve --mode source
PORT=${SERVE_ADDR##*:}
cat > "$T/b.json" <<JSON
{ "targets": [{"host": "127.0.0.1", "port": $PORT}], "connections": 20, "connect_rate": 0,
  "duration": "2s", "warmup": "500ms", "pollers": {"count": 2},
  "workload": {"type": "stream", "direction": "receive", "first_message": "SUBSCRIBE all\r\n",
               "reconnect": false},
  "control": {"listen": "127.0.0.1:0", "address_file": "$T/b.addr"},
  "report": {"file": "$T/b-report.json"} }
JSON
start_bg b "$ZLB" -c "$T/b.json"
BPID=$BG_PID
wait_for test -s "$T/b.addr" || fail "(b) daemon did not start: $(cat "$T/b.err")"
WAIT_S=10 wait_for bash -o pipefail -c "curl -sf http://$(cat "$T/b.addr")/stats/pollers | jq -e 'map(.bytes_in) | add > 0'" \
    || fail "(b) no bytes_in in /stats/pollers: $(curl -s "http://$(cat "$T/b.addr")/stats/pollers")"
wait_exit "$BPID" 30
IN=$(jq .bytes.in "$T/b-report.json")
wait_for no_conns "$PORT" || fail "(b) the source still has connections"
serve_stop
echo "(b) the source wrote $SRV_OUT bytes, zlbench read $IN; first messages: $SRV_IN bytes"
[ "$SRV_IN" = $((20 * 15)) ] || fail "(b) the source read $SRV_IN bytes, not 20 first messages of 15"
jq -e '.bytes.out == 300' "$T/b-report.json" >/dev/null || fail "(b) bytes.out $(jq .bytes.out "$T/b-report.json")"
[ "$IN" -gt 10000000 ] && [ "$IN" -le "$SRV_OUT" ] || fail "(b) read $IN of $SRV_OUT"
# What was still in the kernel's buffers at the close: at most the source's send buffer and our
# receive buffer per connection, as this kernel bounds them (autotuned; 8 MiB each was too few
# for a loaded host: 169 MiB over 20 connections).
BUF=$(( $(awk '{print $3}' /proc/sys/net/ipv4/tcp_rmem) + $(awk '{print $3}' /proc/sys/net/ipv4/tcp_wmem) ))
[ $((SRV_OUT - IN)) -le $((20 * BUF)) ] || fail "(b) $((SRV_OUT - IN)) bytes unaccounted (buffers hold at most $((20 * BUF)))"
pass "(b) receive: first message once per connection, $IN of $SRV_OUT bytes read"

# (c) the example as written (built-in sink, nothing else installed)
(cd "$T" && "$ZLB" -c "$REPO/configs/stream.json" -d 3s --control off --report "$T/c.json" >"$T/c.out" 2>"$T/c.err") \
    && EXIT_CODE=0 || EXIT_CODE=$?
[ "$EXIT_CODE" = 0 ] || [ "$EXIT_CODE" = 5 ] || fail "(c) configs/stream.json: exit $EXIT_CODE: $(tail -5 "$T/c.err")"
check_invariant "$T/c.json" || fail "(c) invariant"
jq -e '.bytes.out > 0 and .connections.failed.total == 0' "$T/c.json" >/dev/null || fail "(c) report"
pass "(c) configs/stream.json: exit $EXIT_CODE, $(jq .bytes.out "$T/c.json") bytes"

# (d) memory: 10,000 streams against the baseline of one
[ "$(ulimit -Hn)" -ge 11000 ] || skip "open-file hard limit $(ulimit -Hn) < 11000"
N=10000
[ -n "${ZLB_SANITIZE:-}" ] && N=2000 # same path, fewer connections; the figure is not judged
clear_time_wait
serve --mode sink
PORT=${SERVE_ADDR##*:}
rss_of() { # N -> the daemon's VmRSS in KiB with N streams open
    cat > "$T/d.json" <<JSON
{ "targets": [{"host": "127.0.0.1", "port": $PORT}], "connections": $1, "connect_rate": 10000,
  "duration": "0s", "pollers": {"count": 2}, "socket": {"close": "rst"},
  "workload": {"type": "stream", "rate": 1448, "stall_timeout": "10s"},
  "control": {"listen": "127.0.0.1:0", "address_file": "$T/d.addr"}, "report": {"file": null} }
JSON
    rm -f "$T/d.addr"
    start_bg d "$ZLB" -c "$T/d.json" -q
    local pid=$BG_PID url
    wait_for test -s "$T/d.addr" || fail "(d) daemon did not start: $(cat "$T/d.err")"
    url="http://$(cat "$T/d.addr")"
    WAIT_S=60 wait_for bash -o pipefail -c "curl -sf $url/stats | jq -e '.connections.open == $1 and .bytes.out >= $1 * 1448'" \
        || fail "(d) never $1 streaming: $(curl -s "$url/stats" | jq -c '{connections, bytes}')"
    sleep 1
    curl -sf "$url/stats" -o "$T/d-stats.json"
    check_invariant "$T/d-stats.json" || fail "(d) invariant with $1 open"
    RSS=$(awk '/^VmRSS/ {print $2}' "/proc/$pid/status")
    kill -TERM "$pid"; wait_exit "$pid" 30
}
# As bench conn_memory measures held connections: the RSS slope between N/2 and N streams (the
# fixed costs, latency histograms included, cancel out), against its 512-byte budget per
# connection, plus the 64 KiB read buffer of each of the 2 pollers.
rss_of $((N / 2)); HALF=$RSS
rss_of $N; FULL=$RSS
PER=$(( (FULL - HALF) * 1024 / (N / 2) ))
BUDGET=$(( ((N / 2) * 512 + 2 * 65536) / 1024 ))
echo "(d) RSS with $((N / 2)) streams $HALF KiB, with $N $FULL KiB: +$((FULL - HALF)) KiB ($PER B per stream); budget $BUDGET KiB"
if [ -n "${ZLB_SANITIZE:-}" ]; then
    pass "(d) $N streams held and moving (RSS not judged under sanitizers)"
else
    [ $((FULL - HALF)) -le "$BUDGET" ] || fail "(d) +$((FULL - HALF)) KiB > $BUDGET KiB"
    pass "(d) $N streams: $PER B per stream, +$((FULL - HALF)) KiB <= $BUDGET KiB"
fi
serve_stop
