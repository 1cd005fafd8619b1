#!/usr/bin/env bash
# it_addrnotavail.sh -- a source address this host does not have (192.0.2.1, TEST-NET-1): every
# attempt fails at bind with EADDRNOTAVAIL, counted as addr_unavailable, invariant intact, and the
# run does not pass silently (exit 5: nothing established).
source "$(dirname "$0")/lib.sh"

if ip -4 addr show 2>/dev/null | grep -q ' 192\.0\.2\.1/'; then skip "192.0.2.1 is configured here"; fi
[ "$(cat /proc/sys/net/ipv4/ip_nonlocal_bind 2>/dev/null || echo 0)" = 0 ] || skip "ip_nonlocal_bind is on"
start_serve
cat > "$T/cfg.json" <<JSON
{"targets": [{"host": "127.0.0.1", "port": ${SERVE_ADDR##*:}}], "source_ips": ["192.0.2.1"],
 "connections": 20, "connect_rate": 100, "duration": "1s", "control": {"listen": null},
 "report": {"file": "$T/report.json"}}
JSON
set +e; "$ZLB" -c "$T/cfg.json" -q 2>"$T/zlb.err"; rc=$?; set -e
[ -s "$T/report.json" ] || fail "no report (exit $rc): $(cat "$T/zlb.err")"
check_invariant "$T/report.json" || fail "invariant broken"
jq -e '.connections.established == 0 and .connections.attempted > 0
       and .connections.failed_before_established.addr_unavailable == .connections.attempted' \
    "$T/report.json" >/dev/null || fail "not counted as addr_unavailable: $(jq -c .connections "$T/report.json")"
[ "$rc" != 0 ] || fail "a run where nothing connected exited 0"
bytes=$(wc -c < "$T/zlb.err")
[ "$bytes" -lt 4096 ] || fail "stderr $bytes bytes: a log line per failure?"
pass "EADDRNOTAVAIL: $(jq .connections.attempted "$T/report.json") attempts, all addr_unavailable, exit $rc, stderr $bytes bytes"
