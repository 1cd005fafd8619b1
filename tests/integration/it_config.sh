#!/usr/bin/env bash
# it_config.sh -- bad configs and bad flags exit 2 with FILE:LINE:COLUMN and the key path, nothing
# started; every example in configs/ validates.
source "$(dirname "$0")/lib.sh"

# expect_bad NAME CONTENT PATTERN [FLAGS...]: exit code 2 and stderr matching PATTERN (grep -E).
expect_bad() {
    local name=$1 content=$2 pattern=$3; shift 3
    printf '%s' "$content" > "$T/$name.json"
    set +e
    ( cd "$T" && "$ZLB" -c "$name.json" -q --control off --report "$T/$name.report" "$@" ) \
        >"$T/$name.out" 2>"$T/$name.err"
    local rc=$?
    set -e
    [ $rc = 2 ] || fail "$name: exit $rc, expected 2 ($(cat "$T/$name.err"))"
    grep -Eq -- "$pattern" "$T/$name.err" || fail "$name: message '$(cat "$T/$name.err")' does not match '$pattern'"
    [ ! -e "$T/$name.report" ] || fail "$name: a report was written: something started"
    pass "$name: $(head -1 "$T/$name.err")"
}

expect_bad dup '{"connections": 10,
  "connections": 20}' 'dup\.json:2:[0-9]+: .*duplicate.*connections'
expect_bad unknown '{"conections": 10}' "unknown\.json:1:[0-9]+: .*conections.*did you mean 'connections'"
expect_bad garbage '{"connections": 10} xyz' 'garbage\.json:1:[0-9]+:'
expect_bad type '{"connections": "many"}' 'type\.json:1:[0-9]+: connections: expected an integer'
expect_bad port '{"targets": [{"host": "127.0.0.1", "port": 9000},
  {"host": "127.0.0.1", "port": 70000}]}' 'port\.json:2:[0-9]+: targets\[1\]\.port: expected an integer 1\.\.65535, got 70000'
expect_bad big '{"pollers": {"count": 4294967297}}' 'big\.json:1:[0-9]+: pollers\.count: .*4294967297'
expect_bad empty '' 'empty\.json'
expect_bad duration '{"duration": "10"}' 'duration\.json:1:[0-9]+: duration: .*unit'
expect_bad flag '{}' "--connections: expected an integer" --connections abc
expect_bad flag2 '{}' "--duration" -d 10parsecs
# Flags meet the config's own rules: its ranges, and the rules across fields.
expect_bad flag3 '{}' "^zlbench: --pollers: expected an integer 0\.\.1024, got 2000" -t 2000
expect_bad flag4 '{"warmup": "5s", "duration": "10s"}' \
    "^zlbench: --duration: warmup: warmup \(5s\) must be shorter than duration \(3s\)" -d 3s
expect_bad flag5 '{}' '^zlbench: --log-level: expected one of' --log-level loud
expect_bad srcfam '{"targets": [{"host": "127.0.0.1", "port": 9}], "source_ips": ["::1"]}' \
    'srcfam\.json:1:[0-9]+: targets\[0\]\.host: an IPv4 target, but source_ips has no IPv4'
expect_bad nodir '{}' 'report\.file: cannot write a report in /nonexistent-dir' --report /nonexistent-dir/r.json
expect_bad badca '{"targets": [{"host": "127.0.0.1", "port": 9, "tls": {"ca_file": "/nonexistent/ca.pem"}}]}' \
    'badca\.json:1:[0-9]+: targets\[0\]\.tls\.ca_file: cannot read /nonexistent/ca\.pem'

# Keys of any length keep FILE:LINE:COLUMN and the key path (issue: a 252-byte key lost both).
longkey=$(printf 'k%.0s' $(seq 1 252))
expect_bad longkey "{\"$longkey\": 1}" "longkey\.json:1:2: kkkkkkkkkk.*\\.\\.\\.k+: unknown key 'kkk"
longkey=$(printf 'k%.0s' $(seq 1 5000))
expect_bad longkey2 "{\"socket\": {\"$longkey\": 1,
  \"$longkey\": 2}}" "longkey2\.json:2:3: socket\.kkkkkkkkkk.*: duplicate key 'kkk"

# A control port beyond loopback without a token: invalid at validate and at start alike (exit 2,
# FILE:LINE:COLUMN and the key path, nothing started), from the file or from --control.
for addr in 0.0.0.0:8089 10.1.2.3:8089 '[::]:8089'; do
    printf '{"control": {"listen": "%s"}, "duration": "1s"}' "$addr" > "$T/ctl.json"
    for how in validate start; do
        set +e
        if [ $how = validate ]; then
            ( cd "$T" && "$ZLB" validate -c ctl.json ) >"$T/ctl.out" 2>"$T/ctl.err"
        else
            ( cd "$T" && "$ZLB" -c ctl.json -q --report "$T/ctl.report" ) >"$T/ctl.out" 2>"$T/ctl.err"
        fi
        rc=$?
        set -e
        [ $rc = 2 ] || fail "control $addr without a token, $how: exit $rc, expected 2 ($(cat "$T/ctl.err"))"
        grep -Eq 'ctl\.json:1:[0-9]+: control\.listen: .*not a loopback address.*token_file' "$T/ctl.err" \
            || fail "control $addr, $how: message '$(cat "$T/ctl.err")'"
        [ ! -e "$T/ctl.report" ] || fail "control $addr, $how: a report was written: something started"
    done
    pass "control $addr without a token: exit 2 at validate and start: $(cat "$T/ctl.err")"
done
# The value came from the command line: the message names the flag, then the key it sets.
expect_bad ctlflag '{"duration": "1s"}' '^zlbench: --control: control\.listen: .*not a loopback' \
    --control 0.0.0.0:0
expect_bad ctlname '{"control": {"listen": "example.invalid:8089"}}' \
    'ctlname\.json:1:[0-9]+: control\.listen: cannot listen on "example\.invalid:8089"'

# The token file named by the environment (containers: a mounted secret) makes the same config
# valid, shows in the effective config, and guards the port at start.
printf 'env-s3cret\n' > "$T/env.token"; chmod 600 "$T/env.token"
ZLB_CONTROL_TOKEN_FILE="$T/env.token" "$ZLB" validate -c "$T/ctl.json" >"$T/ctlenv.out" 2>"$T/ctlenv.err" \
    || fail "ZLB_CONTROL_TOKEN_FILE did not make it valid: $(cat "$T/ctlenv.err")"
jq -e --arg f "$T/env.token" '.control.token_file == $f' "$T/ctlenv.out" >/dev/null \
    || fail "effective config token_file: $(jq -c .control "$T/ctlenv.out")"
printf '{"control": {"listen": "127.0.0.1:0", "token_file": "/nonexistent/tok", "address_file": "%s"},
  "connections": 1, "duration": "60s"}' "$T/envrun.addr" > "$T/envrun.json"
ZLB_CONTROL_TOKEN_FILE="$T/env.token" start_bg envrun "$ZLB" -c "$T/envrun.json" -q --report "$T/envrun.report"
wait_for test -s "$T/envrun.addr" || fail "env token run did not start: $(cat "$T/envrun.err")"
URL="http://$(cat "$T/envrun.addr")"
# Stop only once the ramp is over: a run stopped before its steady state is invalid (exit 5).
wait_for bash -o pipefail -c "curl -sf -H 'Authorization: Bearer env-s3cret' $URL/stats | jq -e '.ramp.target_reached == true'" \
    || fail "env token run never reached its one connection: $(cat "$T/envrun.err")"
[ "$(curl -s -o /dev/null -w '%{http_code}' -X POST "$URL/stop")" = 401 ] || fail "env token: /stop without the token not 401"
[ "$(curl -s -o /dev/null -w '%{http_code}' -X POST -H 'Authorization: Bearer env-s3cret' "$URL/stop")" = 202 ] \
    || fail "env token: /stop with the token from ZLB_CONTROL_TOKEN_FILE not 202"
wait_exit "$BG_PID" 20
[ "$EXIT_CODE" = 0 ] || fail "env token run: exit $EXIT_CODE $(cat "$T/envrun.err")"
pass "ZLB_CONTROL_TOKEN_FILE: overrides control.token_file, validates, guards /stop"

# A control port that is already taken: a configuration problem, a clear error and exit 2.
start_serve --listen 127.0.0.1:0
printf '{"duration": "1s", "connections": 10}' > "$T/busy.json"
set +e; "$ZLB" -c "$T/busy.json" -q --control "$SERVE_ADDR" --report "$T/busy.report" >/dev/null 2>"$T/busy.err"; rc=$?; set -e
[ $rc = 2 ] || fail "busy control port: exit $rc (expected 2): $(cat "$T/busy.err")"
grep -q 'in use' "$T/busy.err" || fail "busy control port: no reason given: $(cat "$T/busy.err")"
pass "busy control port: exit 2, $(grep -m1 'in use' "$T/busy.err")"

set +e; "$ZLB" -c "$T/missing.json" >/dev/null 2>"$T/missing.err"; rc=$?; set -e
[ $rc = 2 ] && grep -q 'missing.json' "$T/missing.err" || fail "missing file: exit $rc $(cat "$T/missing.err")"
pass "missing file"
set +e; "$ZLB" --no-such-flag >/dev/null 2>&1; rc=$?; set -e
[ $rc = 2 ] || fail "unknown flag: exit $rc"

for f in "$REPO"/configs/*.json; do
    case "$f" in *.schema.json) continue ;; esac
    "$ZLB" validate -c "$f" >"$T/valid.out" 2>"$T/valid.err" || fail "$f does not validate: $(cat "$T/valid.err")"
    jq -e '.connections >= 1 or (.stages | length) > 0' "$T/valid.out" >/dev/null || fail "validate output of $f is not the effective config"
done
pass "every configs/*.json validates"
"$ZLB" --version | grep -q 'OpenSSL' || fail "--version lacks OpenSSL"
"$ZLB" --help | grep -q 'Exit codes' || fail "--help lacks the exit codes"
pass "--version, --help"
