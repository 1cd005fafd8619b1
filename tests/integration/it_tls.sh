#!/usr/bin/env bash
# it_tls.sh -- TLS client end to end: (a) N connections held against the embedded TLS target with
# verification on (handshakes counted and timed apart from TCP connect); (b) against OpenSSL's
# own s_server with a PKI made here by the openssl command: full handshakes, resumption at the
# configured ratio, and a host name mismatch reported with its verify result.
source "$(dirname "$0")/lib.sh"
command -v jq >/dev/null || skip "jq is missing"

N=5000
[ -n "${ZLB_SANITIZE:-}" ] && N=1000 # sanitizer builds: same path, fewer connections
# The embedded target's sockets live in the same process as the clients'.
[ "$(ulimit -Hn)" -ge $((2 * N + 200)) ] || skip "open-file hard limit $(ulimit -Hn) < $((2 * N + 200))"
clear_time_wait

# The report schema covers TLS reports too (failure details, verification per target).
validate() { jq -r --slurpfile schema "$REPO/configs/report.schema.json" -f "$REPO/tests/integration/schema.jq" "$1"; }

# run_cfg NAME JSON: runs to completion (control off), report in $T/NAME.report.json.
run_cfg() {
    local name=$1 json=$2
    printf '%s' "$json" >"$T/$name.json"
    set +e
    timeout $((60 * SLOW)) "$ZLB" -c "$T/$name.json" -q --control off \
        --report "$T/$name.report.json" >"$T/$name.out" 2>"$T/$name.err"
    EXIT_CODE=$?
    set -e
    [ -s "$T/$name.report.json" ] || fail "$name: no report (exit $EXIT_CODE): $(tail -5 "$T/$name.err")"
    check_invariant "$T/$name.report.json" || fail "$name: invariant broken"
}

# ---- (a) the embedded TLS target, N held, verification on --------------------------------------
# The rate stays under what two server threads and the pollers handshake per second on a small
# machine, so no handshake waits in a queue past its deadline.
RATE=1000
[ -n "${ZLB_SANITIZE:-}" ] && RATE=400
cat >"$T/a.json" <<JSON
{ "embedded_target": {"tls": true, "threads": 2}, "pollers": {"count": 2},
  "connections": $N, "connect_rate": $RATE, "duration": "0s", "socket": {"close": "rst"},
  "control": {"listen": "127.0.0.1:0", "address_file": "$T/ctl.addr"},
  "report": {"file": "$T/a.report.json"} }
JSON
start_bg a "$ZLB" -c "$T/a.json" -q
APID=$BG_PID
wait_for test -s "$T/ctl.addr" || fail "(a) daemon did not start: $(cat "$T/a.err")"
URL="http://$(cat "$T/ctl.addr")"
WAIT_S=$((N / RATE + 40)) wait_for bash -o pipefail -c "curl -sf $URL/stats | jq -e '.connections.open == $N'" \
    || fail "(a) never $N open: $(curl -s "$URL/stats" | jq -c '{c: .connections | {attempted, established, open, in_flight, failed}, tls}')"
curl -sf "$URL/stats" -o "$T/a.stats.json"
check_invariant "$T/a.stats.json" || fail "(a) invariant at $N open"
# The built-in target's own side of the same connections (targets[0].server): every one the
# client established was accepted there, N of them completed their handshake there, and each
# the target ended early is one of its failed handshakes (printed: the cause, when it happens).
jq -r '.connections as $c | .targets[0].server as $s
    | "   target side: accepted \($s.accepted), open \($s.open), handshakes \($s.tls.handshakes), failed \($s.tls.failed) (timeouts \($s.tls.timeouts)); client: established \($c.established), ended by the target \($c.closed_by_peer + $c.failed_after_established.total)"' "$T/a.stats.json"
jq -e --argjson n "$N" '.connections as $c | .targets[0].server as $s
    | $s.accepted >= $c.established and $s.tls.handshakes >= $n
    and $s.accepted >= $s.tls.handshakes + $s.tls.failed and $s.tls.failed >= $s.tls.timeouts' \
    "$T/a.stats.json" >/dev/null || fail "(a) the target's side does not add up: $(jq -c '.targets[0].server' "$T/a.stats.json")"
# On a crowded host the two server threads can fall behind the rate: a handshake that outlives its
# deadline is failed_before[timeout] and its slot retried (seen: 648 of 5,648 attempts under load
# 6). That is the target's capacity, not a client fault; any other failure is. Under TSan at
# load 10 a few connections (5 of 1,005) also ended from the target's side after the client had
# finished its handshake, and their slots reopened; which server path closed them was not known
# then (the target's own count below, targets[0].server, now says: a failed handshake there, and
# whether by its 10 s timeout). Accepted as eof/reset/closed_by_peer after
# establishment, at most 2% of N. Each TCP connect is timed once
# (connect.count == attempted) and each handshake done once (== established).
jq -e --argjson n "$N" '.connections as $c
    | $c.open == $n
    and $c.established == $n + $c.closed_by_peer + $c.failed_after_established.total
    and $c.failed_after_established.total == $c.failed_after_established.eof + $c.failed_after_established.reset
    and $c.established - $n <= $n / 50
    and $c.failed_before_established.total == $c.failed_before_established.timeout
    and .tls.handshakes == $c.established and (.tls.resumed_ratio | type == "number")
    and .latency_us.tls_handshake_full.count == $c.established
    and .latency_us.connect.count == .connections.attempted and .latency_us.connect.p50 > 0
    and (.tls.openssl | startswith("OpenSSL"))
    and .targets[0].tls == true and .targets[0].tls_verify == true' "$T/a.stats.json" >/dev/null \
    || fail "(a) /stats: $(jq -c '{c: .connections | {attempted, established, open, closed_by_peer, failed: .failed_before_established, after: .failed_after_established}, tls, full: .latency_us.tls_handshake_full.count, connect: .latency_us.connect.count, t: .targets[0] | {tls, tls_verify}}' "$T/a.stats.json")"
kill -TERM "$APID"
wait_exit "$APID" 60
check_invariant "$T/a.report.json" || fail "(a) invariant in the report"
jq -e --argjson n "$N" '.connections as $c | $c.established - $n <= $n / 50
    and .tls.handshakes == $c.established
    and $c.failed_before_established.total == $c.failed_before_established.timeout
    and $c.failed_after_established.total == $c.failed_after_established.eof + $c.failed_after_established.reset' \
    "$T/a.report.json" >/dev/null \
    || fail "(a) report: $(jq -c '{c: .connections, tls}' "$T/a.report.json")"
errs=$(validate "$T/a.report.json")
[ -z "$errs" ] || fail "(a) the report does not match the schema: $errs"
pass "(a) $N TLS connections held with verification on ($(jq .connections.failed_before_established.timeout "$T/a.stats.json") handshakes past their deadline, retried): connect p50 $(jq .latency_us.connect.p50 "$T/a.stats.json") us, full handshake p50 $(jq .latency_us.tls_handshake_full.p50 "$T/a.stats.json") us"
clear_time_wait

# ---- (b) OpenSSL's s_server, a PKI made by the openssl command ----------------------------------
command -v openssl >/dev/null || { echo "SKIP (part b): no openssl command"; exit 0; }
P="$T/pki"
mkdir -p "$P"
(
    cd "$P"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
        -keyout ca.key -out ca.pem -subj "/CN=zlbench it_tls CA" \
        -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
        -keyout leaf.key -out leaf.csr -subj "/CN=localhost"
    printf '%s\n' "subjectAltName=DNS:localhost,IP:127.0.0.1" "basicConstraints=CA:FALSE" \
        "keyUsage=critical,digitalSignature" "extendedKeyUsage=serverAuth" >leaf.ext
    openssl x509 -req -in leaf.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
        -extfile leaf.ext -out leaf.pem
) >"$T/pki.log" 2>&1 || fail "(b) certificate generation: $(tail -5 "$T/pki.log")"

# One connection at a time: s_server serves its clients one after the other.
start_bg s_server openssl s_server -accept 127.0.0.1:0 -cert "$P/leaf.pem" -key "$P/leaf.key" -www
SPID=$BG_PID
wait_for grep -q '^ACCEPT' "$T/s_server.out" || fail "(b) s_server did not start: $(cat "$T/s_server.err")"
SPORT=$(sed -n 's/^ACCEPT .*:\([0-9]*\)$/\1/p' "$T/s_server.out" | head -1)
[ -n "$SPORT" ] || fail "(b) no port in: $(cat "$T/s_server.out")"

# Full handshakes with verification against the test CA (the IP SAN is what is checked).
run_cfg full "{\"targets\": [{\"host\": \"127.0.0.1\", \"port\": $SPORT,
    \"tls\": {\"ca_file\": \"$P/ca.pem\"}}],
  \"connections\": 1, \"connect_rate\": 0, \"duration\": \"2s\",
  \"workload\": {\"type\": \"churn\", \"lifetime\": \"20ms\"}}"
jq -e '.connections.established >= 10 and .connections.failed.total == .connections.failed.cancelled
    and .tls.handshakes == .connections.established and .tls.resumed == 0
    and .latency_us.tls_handshake_full.count == .tls.handshakes
    and .latency_us.tls_handshake_full.min > 0 and .latency_us.tls_handshake_full.p50 > 0
    and .targets[0].tls_verify == true' "$T/full.report.json" >/dev/null \
    || fail "(b) full handshakes: $(jq -c '{c: .connections | {established, failed}, tls, full: .latency_us.tls_handshake_full}' "$T/full.report.json")"
pass "(b) s_server: $(jq .tls.handshakes "$T/full.report.json") full handshakes verified, min $(jq .latency_us.tls_handshake_full.min "$T/full.report.json") us p50 $(jq .latency_us.tls_handshake_full.p50 "$T/full.report.json") us"

# Resumption 0.9 with churn: every connection reconnects and offers the newest ticket 9 times in 10.
run_cfg resume "{\"targets\": [{\"host\": \"127.0.0.1\", \"port\": $SPORT,
    \"tls\": {\"ca_file\": \"$P/ca.pem\", \"resumption\": 0.9}}],
  \"connections\": 1, \"connect_rate\": 0, \"duration\": \"3s\",
  \"workload\": {\"type\": \"churn\", \"lifetime\": \"20ms\"}}"
jq -e '.tls.handshakes >= 20 and .connections.failed.total == .connections.failed.cancelled
    and (.tls.resumed_ratio - 0.9 | fabs) <= 0.1
    and .latency_us.tls_handshake_resumed.count == .tls.resumed
    and .latency_us.tls_handshake_resumed.min > 0' "$T/resume.report.json" >/dev/null \
    || fail "(b) resumption: $(jq -c '{c: .connections | {established, failed}, tls, resumed: .latency_us.tls_handshake_resumed}' "$T/resume.report.json")"
pass "(b) resumption 0.9 against s_server: ratio $(jq .tls.resumed_ratio "$T/resume.report.json") over $(jq .tls.handshakes "$T/resume.report.json") handshakes, resumed p50 $(jq .latency_us.tls_handshake_resumed.p50 "$T/resume.report.json") us"

# A name the certificate does not carry: verification fails with result 62, and says so.
run_cfg mismatch "{\"targets\": [{\"host\": \"127.0.0.1\", \"port\": $SPORT,
    \"tls\": {\"ca_file\": \"$P/ca.pem\", \"sni\": \"wrong.example\"}}],
  \"connections\": 3, \"connect_rate\": 0, \"duration\": \"1s\",
  \"workload\": {\"type\": \"hold\", \"reconnect\": false}}"
jq -e '.connections.established == 0 and .connections.failed.tls_verify > 0
    and .connections.failed.tls_verify == .connections.failed.total
    and .tls.failures.verify["62 hostname_mismatch"] == .connections.failed.tls_verify' \
    "$T/mismatch.report.json" >/dev/null \
    || fail "(b) host name mismatch: $(jq -c '{c: .connections.failed, tls}' "$T/mismatch.report.json")"
errs=$(validate "$T/mismatch.report.json")
[ -z "$errs" ] || fail "(b) the report does not match the schema: $errs"
pass "(b) host name mismatch: $(jq -c .tls.failures "$T/mismatch.report.json")"
kill -TERM "$SPID" 2>/dev/null || true
