#!/usr/bin/env bash
# it_faults2.sh -- the rest of the fault matrix (issue 13), each against a peer that misbehaves in
# one way (tests/integration/faultpeer.py, or openssl s_server): RST on accept, RST mid-echo,
# half-close under hold/echo/http, a listen(fd, 0) backlog never accepted, garbage on echo, a peer
# that never reads 1 MiB messages, peers closing under large writes (SIGPIPE: plain, TLS, the
# control port), and a client certificate required on TLS 1.2 and on TLS 1.3 apart. Every case
# prints zlbench's counts beside what the peer saw; every run keeps the accounting invariant.
source "$(dirname "$0")/lib.sh"
command -v python3 >/dev/null || skip "python3 is missing"
PEER="$REPO/tests/integration/faultpeer.py"
# SIGPIPE at its default disposition for everything started from here (a shell started with it
# ignored would hand that on and hide a missing MSG_NOSIGNAL in a child that does not ignore it).
trap - PIPE

peer() { # peer NAME MODE [ARG]: starts faultpeer.py; sets PEER_PORT and PEER_PID
    local name=$1; shift
    start_bg "$name" python3 "$PEER" "$1" "$T/$name.addr" "${2:-}"
    PEER_PID=$BG_PID
    wait_for test -s "$T/$name.addr" || fail "$name: peer did not start: $(cat "$T/$name.err")"
    PEER_PORT=$(cut -d: -f2 "$T/$name.addr")
}

# run_cfg NAME PORT CONNS DURATION WORKLOAD [TARGET_EXTRA [TOP_EXTRA]]: a fault run whose
# failures are the point (default thresholds opted out); report in $T/NAME.r.json.
run_cfg() {
    local name=$1 port=$2 n=$3 dur=$4 wl=$5 textra=${6:-} extra=${7:-}
    cat >"$T/$name.json" <<JSON
{"targets": [{"host": "127.0.0.1", "port": $port $textra}], "connections": $n, "connect_rate": 0,
 "duration": "$dur", "drain_timeout": "500ms", "workload": $wl $extra,
 "thresholds": {"failure_ratio": "<= 1", "connections.established": ">= 0"}}
JSON
    set +e
    timeout $((30 * SLOW)) "$ZLB" -c "$T/$name.json" -q --control off --report "$T/$name.r.json" \
        >"$T/$name.out" 2>"$T/$name.err"
    EXIT_CODE=$?
    set -e
    [ "$EXIT_CODE" -lt 128 ] || fail "$name: zlbench died (exit $EXIT_CODE): $(tail -3 "$T/$name.err")"
    [ -s "$T/$name.r.json" ] || fail "$name: no report (exit $EXIT_CODE): $(tail -5 "$T/$name.err")"
    check_invariant "$T/$name.r.json" || fail "$name: invariant broken: $(jq -c .connections "$T/$name.r.json")"
}
conns() { jq -c '.connections | {attempted, established, closed_by_us, closed_by_peer, open,
    before: (.failed_before_established | with_entries(select(.value > 0))),
    after: (.failed_after_established | with_entries(select(.value > 0)))}' "$1"; }
expect() { # expect NAME JQ_EXPR WHAT: the report of NAME satisfies the expression
    jq -e "$2" "$T/$1.r.json" >/dev/null || fail "$1: expected $2; zlbench: $(conns "$T/$1.r.json") messages $(jq .messages "$T/$1.r.json"); peer: $(sort "$T/$1.peer.out" 2>/dev/null | uniq -c | tr '\n' ';')"
}
N=10

# ---- 1. RST on accept: reset, once per attempt ----------------------------------------------
# The kernel completed the handshake, so most are established and then reset; an RST that lands
# before the poller saw the connect complete is the attempt's failure (SO_ERROR): reset either way.
peer rst_accept.peer rst_accept
run_cfg rst_accept "$PEER_PORT" $N 300ms '{"type": "hold", "reconnect": false}'
expect rst_accept ".connections.attempted == $N and .connections.failed.reset == $N
    and .connections.failed.total == $N and .connections.closed_by_peer == 0
    and .connections.failed_after_established.reset == .connections.established"
pass "RST on accept: $(conns "$T/rst_accept.r.json")"
kill "$PEER_PID"

# ---- 2. RST mid-echo: 4 echoes of 64 bytes, then an RST: counted reset after the messages ------
peer rst_mid.peer rst_after 256
run_cfg rst_mid "$PEER_PORT" $N 400ms \
    '{"type": "echo", "reconnect": false, "message_size": 64, "message_interval": "20ms"}'
expect rst_mid ".connections.failed_after_established.reset == $N and .connections.failed.total == $N
    and .messages >= 3 * $N and .messages <= 4 * $N"
pass "RST mid-echo: $(jq .messages "$T/rst_mid.r.json") echoes, then $(conns "$T/rst_mid.r.json"); peer: $(grep -c 'rst after 256' "$T/rst_mid.peer.out") RSTs after 256 bytes"
kill "$PEER_PID"

# ---- 3. half-close: the peer shuts its write side and keeps reading ----------------------------
# hold and echo (nothing owed when it comes): closed by the peer, once, and our side closes too
# (the peer reads its EOF: nothing is left half-open).
peer hc.peer halfclose 200
run_cfg hc_hold "$PEER_PORT" $N 500ms '{"type": "hold", "reconnect": false}'
expect hc_hold ".connections.closed_by_peer == $N and .connections.failed.total == 0"
run_cfg hc_echo "$PEER_PORT" $N 500ms \
    '{"type": "echo", "reconnect": false, "message_size": 64, "message_interval": "1s"}'
expect hc_echo ".connections.closed_by_peer == $N and .connections.failed.total == 0 and .messages == $N"
# The peer's threads log what they saw a moment after we closed: poll for it.
WAIT_S=3 wait_for bash -o pipefail -c "[ \$(grep -c '^eof' '$T/hc.peer.out') = $((2 * N)) ]" || true
eofs=$(grep -c '^eof' "$T/hc.peer.out" || true)
[ "$eofs" = $((2 * N)) ] || fail "half-close: the peer saw our close on $eofs of $((2 * N)) connections"
pass "half-close, hold: $(conns "$T/hc_hold.r.json"); echo: $(jq .messages "$T/hc_echo.r.json") echoes then closed by peer; peer saw our FIN on $eofs of $((2 * N))"
kill "$PEER_PID"
# echo owing an echo (the half-close comes instead of it): the connection failed, as `eof`, once.
peer hco.peer halfclose_owing
run_cfg hc_owing "$PEER_PORT" $N 400ms \
    '{"type": "echo", "reconnect": false, "message_size": 64, "message_interval": "50ms"}'
expect hc_owing ".connections.failed_after_established.eof == $N and .connections.failed.total == $N
    and .connections.closed_by_peer == 0 and .messages == $N"
pass "half-close owing an echo: $(jq .messages "$T/hc_owing.r.json") echoes, then $(conns "$T/hc_owing.r.json")"
kill "$PEER_PID"
# http: the response, then the half-close. Closed loop: the next request is already out, so the
# connection fails (eof, the request failed as `closed`); open loop, nothing in flight: closed by peer.
peer hch.peer http_halfclose
run_cfg hc_http "$PEER_PORT" $N 300ms '{"type": "http", "reconnect": false}'
expect hc_http ".connections.failed_after_established.eof == $N and .connections.failed.total == $N
    and .http.requests.responses == $N and .http.errors.closed == $N and .http.requests.failed == $N"
run_cfg hc_http_rate "$PEER_PORT" $N 300ms '{"type": "http", "reconnect": false, "request_rate": 100}'
expect hc_http_rate ".connections.closed_by_peer == $N and .connections.failed.total == 0
    and .http.requests.responses == $N and .http.requests.failed == 0"
pass "half-close, http closed loop: $(jq -c '.http.requests' "$T/hc_http.r.json"), open loop: $(conns "$T/hc_http_rate.r.json")"
kill "$PEER_PID"

# ---- 4. backlog full, never accepting: listen(fd, 0) ------------------------------------------
# The kernel completes what the queue holds (one or two); every other SYN is dropped and the
# attempt is a timeout at connect_timeout, none early.
peer l0.peer listen0
cat >"$T/l0.json" <<JSON
{"targets": [{"host": "127.0.0.1", "port": $PEER_PORT}], "connections": 20, "connect_rate": 0,
 "connect_timeout": "500ms", "duration": "0s", "drain_timeout": "200ms",
 "workload": {"type": "hold", "reconnect": false},
 "thresholds": {"failure_ratio": "<= 1", "connections.established": ">= 0"},
 "control": {"listen": "127.0.0.1:0", "address_file": "$T/l0.ctl"}, "report": {"file": "$T/l0.r.json"}}
JSON
start_bg l0 "$ZLB" -c "$T/l0.json" -q
ZPID=$BG_PID
wait_for test -s "$T/l0.ctl" || fail "backlog: no control address: $(cat "$T/l0.err")"
early=-1; late=-1
for i in $(seq 1 200); do
    s=$(curl -sf --max-time 1 "http://$(cat "$T/l0.ctl")/stats") || { sleep 0.02; continue; }
    el=$(jq .elapsed_s <<<"$s"); to=$(jq .connections.failed.timeout <<<"$s")
    awk "BEGIN{exit !($el < 0.44)}" && early=$to
    if awk "BEGIN{exit !($el > 0.6 * $SLOW)}"; then late=$(jq -c .connections <<<"$s"); break; fi
    sleep 0.02
done
kill -TERM "$ZPID"; wait_exit "$ZPID" 10
check_invariant "$T/l0.r.json" || fail "backlog: invariant"
[ "$early" = 0 ] || fail "backlog: $early timeouts before 0.44 s (deadline 0.5 s)"
expect l0 '.connections.attempted == 20 and .connections.established <= 3
    and .connections.failed.timeout == 20 - .connections.established and .connections.failed.total == .connections.failed.timeout'
pass "backlog full: none before 0.44 s; $(jq -c '{established: .connections.established, timeout: .connections.failed.timeout}' "$T/l0.r.json") (of 20)"
kill "$PEER_PID"

# ---- 5. garbage from the peer: echo calls it a protocol failure; hold reads and discards it -----
peer gb.peer garbage
run_cfg gb_echo "$PEER_PORT" $N 300ms '{"type": "echo", "reconnect": false, "message_interval": "50ms"}'
expect gb_echo ".connections.failed_after_established.protocol == $N and .connections.failed.total == $N and .messages == 0"
run_cfg gb_hold "$PEER_PORT" $N 300ms '{"type": "hold", "reconnect": false}'
expect gb_hold ".connections.failed.total == 0 and .connections.closed_by_us == $N and .bytes.in == 4096 * $N"
pass "garbage: echo $(conns "$T/gb_echo.r.json"); hold read $(jq .bytes.in "$T/gb_hold.r.json") bytes and kept them open"
kill "$PEER_PID"

# ---- 6. a target that never reads, 1 MiB messages: memory stays bounded ------------------------
# One message outstanding per connection, the message itself shared: 20 connections stuck on
# 1 MiB each (64 KiB send buffers, so the queues really stall) cost socket buffers, not 20 MiB of
# copies. First the send deadline (send_timeout 300 ms): each stuck connection fails as
# timeout, once; then without one (the 10 s default outlives the run): the run and its drain
# end on time and the stuck connections are closed by us.
peer nr.peer noread
maxrss_run() { # runs zlbench, prints its peak RSS in KiB on fd 3
    python3 -c 'import os, sys
pid = os.fork()
if pid == 0:
    os.execv(sys.argv[1], sys.argv[1:])
_, status, ru = os.wait4(pid, 0)
sys.stderr.write("maxrss_kib %d\n" % ru.ru_maxrss)
sys.exit(os.waitstatus_to_exitcode(status) & 0xff)' "$@"
}
run_cfg nr_deadline "$PEER_PORT" 20 1s \
    '{"type": "echo", "reconnect": false, "message_size": "1MiB", "message_interval": "0s"}' "" \
    ', "send_timeout": "300ms", "socket": {"sndbuf": 65536}'
expect nr_deadline '.connections.established == 20 and .connections.failed_after_established.timeout == 20
    and .connections.failed.total == 20 and .messages == 0'
pass "never reads, send_timeout 300 ms: $(conns "$T/nr_deadline.r.json")"
cat >"$T/nr.json" <<JSON
{"targets": [{"host": "127.0.0.1", "port": $PEER_PORT}], "connections": 20, "connect_rate": 0,
 "duration": "500ms", "drain_timeout": "300ms", "pollers": {"count": 1},
 "socket": {"sndbuf": 65536},
 "workload": {"type": "echo", "message_size": "1MiB", "message_interval": "0s"},
 "thresholds": {"failure_ratio": "<= 1", "connections.established": ">= 0"}}
JSON
t0=$(date +%s%N)
set +e
maxrss_run "$ZLB" -c "$T/nr.json" -q --control off --report "$T/nr.r.json" >"$T/nr.out" 2>"$T/nr.err"
EXIT_CODE=$?
set -e
el_ms=$(( ($(date +%s%N) - t0) / 1000000 ))
rss=$(sed -n 's/^maxrss_kib //p' "$T/nr.err")
check_invariant "$T/nr.r.json" || fail "never reads: invariant"
expect nr '.connections.established == 20 and .messages == 0 and .connections.closed_by_us == 20
    and .bytes.out < 20 * 1048576'
[ "$rss" -lt $((64 * 1024 * SLOW)) ] || fail "never reads: peak RSS $rss KiB for 20 x 1 MiB stuck messages"
[ "$el_ms" -lt $((4000 * SLOW)) ] || fail "never reads: the run took $el_ms ms (0.5 s + 0.3 s drain)"
pass "never reads, 1 MiB messages: peak RSS $((rss / 1024)) MiB, $(jq .bytes.out "$T/nr.r.json") bytes out of 20 MiB offered, ended after $el_ms ms; $(conns "$T/nr.r.json")"
kill "$PEER_PID"

# ---- 7. SIGPIPE: peers that close while we write large messages -------------------------------
# The peer reads 100 kB of a 1 MiB message and closes with the rest unread (an RST); writes that
# follow fail with EPIPE/ECONNRESET. zlbench lives (no signal), and counts each once as reset.
peer sp.peer close_unread 100000
run_cfg sp_plain "$PEER_PORT" 8 1s \
    '{"type": "echo", "message_size": "1MiB", "message_interval": "0s", "backoff_min": "10ms", "backoff_max": "20ms"}'
expect sp_plain '.connections.failed_after_established.reset >= 8
    and .connections.failed_after_established.reset + .connections.failed_after_established.eof == .connections.failed.total'
pass "SIGPIPE, plain: alive (exit $EXIT_CODE), $(conns "$T/sp_plain.r.json"); peer closed on $(grep -c closing "$T/sp.peer.out") connections"
kill "$PEER_PID"

# The same over TLS (OpenSSL writes through our BIO, with MSG_NOSIGNAL), and the control port
# (libmicrohttpd) writing responses to clients that reset: both need a PKI and s_server.
command -v openssl >/dev/null || { echo "SKIP (parts 7b-8): no openssl command"; exit 0; }
P="$T/pki"
mkdir -p "$P"
(
    cd "$P"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
        -keyout ca.key -out ca.pem -subj "/CN=zlbench it_faults2 CA" \
        -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"
    for who in server client; do
        openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
            -keyout $who.key -out $who.csr -subj "/CN=localhost"
        printf '%s\n' "subjectAltName=DNS:localhost,IP:127.0.0.1" "basicConstraints=CA:FALSE" \
            "keyUsage=critical,digitalSignature" "extendedKeyUsage=${who}Auth" >$who.ext
        openssl x509 -req -in $who.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
            -extfile $who.ext -out $who.pem
    done
) >"$T/pki.log" 2>&1 || fail "certificate generation: $(tail -5 "$T/pki.log")"
s_server() { # s_server NAME ARGS...: sets SPORT, SPID
    local name=$1; shift
    start_bg "$name" openssl s_server -accept 127.0.0.1:0 -cert "$P/server.pem" -key "$P/server.key" -www "$@"
    SPID=$BG_PID
    wait_for grep -q '^ACCEPT' "$T/$name.out" || fail "$name: s_server did not start: $(cat "$T/$name.err")"
    SPORT=$(sed -n 's/^ACCEPT .*:\([0-9]*\)$/\1/p' "$T/$name.out" | head -1)
}
TLS="\"tls\": {\"ca_file\": \"$P/ca.pem\"}"

# 7b. TLS: the built-in TLS echo target is SIGKILLed while 1 MiB messages stream both ways; the
# kernel resets its connections (unread data) and our next TLS writes meet EPIPE/ECONNRESET.
start_serve --tls --ca-out "$T/serve-ca.pem" --mode echo
cat >"$T/sp_tls.json" <<JSON
{"targets": [{"host": "127.0.0.1", "port": ${SERVE_ADDR##*:}, "tls": {"ca_file": "$T/serve-ca.pem"}}],
 "connections": 4, "connect_rate": 0, "duration": "1500ms", "drain_timeout": "300ms",
 "workload": {"type": "echo", "message_size": "1MiB", "message_interval": "0s", "backoff_min": "50ms"},
 "thresholds": {"failure_ratio": "<= 1", "connections.established": ">= 0"},
 "control": {"listen": "127.0.0.1:0", "address_file": "$T/sp_tls.ctl"}, "report": {"file": "$T/sp_tls.r.json"}}
JSON
start_bg sp_tls "$ZLB" -c "$T/sp_tls.json" -q
ZPID=$BG_PID
wait_for test -s "$T/sp_tls.ctl" || fail "TLS: no control address: $(cat "$T/sp_tls.err")"
wait_for bash -o pipefail -c "curl -sf http://$(cat "$T/sp_tls.ctl")/stats | jq -e '.messages >= 8'" \
    || fail "TLS: echoes never flowed: $(curl -s "http://$(cat "$T/sp_tls.ctl")/stats" | jq -c .connections)"
kill -KILL "$SERVE_PID"
wait_exit "$ZPID" 20
[ "$EXIT_CODE" -lt 128 ] || fail "TLS: zlbench died (exit $EXIT_CODE)"
check_invariant "$T/sp_tls.r.json" || fail "TLS: invariant"
expect sp_tls '.connections.established >= 4 and .connections.failed_after_established.total >= 4
    and .connections.open == 0'
pass "SIGPIPE, TLS: alive (exit $EXIT_CODE) after $(jq .messages "$T/sp_tls.r.json") echoes of 1 MiB, $(conns "$T/sp_tls.r.json") $(jq -c .tls.failures "$T/sp_tls.r.json")"

# 7c. The control port: clients pipeline 20 requests for /metrics, read one byte and reset, so
# libmicrohttpd writes into reset connections; the daemon lives and /health still answers.
cat >"$T/cp.json" <<JSON
{"embedded_target": {"mode": "echo"}, "connections": 10, "connect_rate": 0, "duration": "0s",
 "control": {"listen": "127.0.0.1:0", "address_file": "$T/cp.ctl"}, "report": {"file": "$T/cp.r.json"}}
JSON
start_bg cp "$ZLB" -c "$T/cp.json" -q
ZPID=$BG_PID
wait_for test -s "$T/cp.ctl" || fail "control: no address: $(cat "$T/cp.err")"
python3 - "$(cat "$T/cp.ctl")" <<'PY' || fail "control port: the RST client failed"
import socket, struct, sys
host, port = sys.argv[1].rsplit(":", 1)
req = ("GET /metrics HTTP/1.1\r\nHost: 127.0.0.1:%s\r\n\r\n" % port).encode() * 20
resets = 0
for i in range(30):
    s = socket.create_connection((host, int(port)), timeout=5)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.sendall(req)
    if s.recv(1):
        resets += 1
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()
print("   control port: %d connections reset after their first response byte" % resets)
assert resets == 30
PY
code=$(curl -s -m 5 -o /dev/null -w '%{http_code}' "http://$(cat "$T/cp.ctl")/health")
kill -0 "$ZPID" || fail "control port: zlbench died"
[ "$code" = 200 ] || fail "control port: /health answered $code after the resets"
kill -TERM "$ZPID"; wait_exit "$ZPID" 20
[ "$EXIT_CODE" -lt 128 ] || fail "control port: exit $EXIT_CODE"
pass "SIGPIPE, control port: 30 pipelined clients reset mid-response, /health 200, exit $EXIT_CODE"

# ---- 8. a client certificate required, TLS 1.2 and TLS 1.3 apart -------------------------------
# 1.2: the server refuses inside the handshake: failed before establishment, handshake_failure.
# 1.3: the client's handshake is complete before the server looks at its (absent) certificate:
# established, then the refusal at the first read: failed after, certificate_required. Once each.
for v in 1.2 1.3; do
    s_server "mtls$v" -Verify 1 -CAfile "$P/ca.pem" "-tls${v/./_}"
    run_cfg "mtls$v" "$SPORT" 3 300ms '{"type": "hold", "reconnect": false}' ", $TLS"
    run_cfg "mtls${v}_cert" "$SPORT" 1 300ms '{"type": "hold", "reconnect": false}' \
        ", \"tls\": {\"ca_file\": \"$P/ca.pem\", \"cert_file\": \"$P/client.pem\", \"key_file\": \"$P/client.key\"}"
    kill "$SPID"
    expect "mtls${v}_cert" '.connections.established == 1 and .connections.failed.total == 0 and .connections.closed_by_us == 1'
done
expect mtls1.2 '.connections.established == 0 and .connections.failed_before_established.tls_handshake == 3
    and .connections.failed.total == 3 and .tls.failures.handshake.handshake_failure == 3'
expect mtls1.3 '.connections.established == 3 and .connections.failed_after_established.tls_handshake == 3
    and .connections.failed.total == 3 and .tls.failures.handshake.certificate_required == 3'
pass "mTLS 1.2 without a certificate: $(conns "$T/mtls1.2.r.json") $(jq -c .tls.failures.handshake "$T/mtls1.2.r.json")"
pass "mTLS 1.3 without a certificate: $(conns "$T/mtls1.3.r.json") $(jq -c .tls.failures.handshake "$T/mtls1.3.r.json")"
pass "mTLS 1.2 and 1.3 with a certificate: established and held, no failure"
