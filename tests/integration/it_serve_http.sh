#!/usr/bin/env bash
# it_serve_http.sh -- `zlbench serve --mode http` and its --http-* flags, seen by curl: status,
# body size, chunked framing, a delay, keep-alive over several requests; bad flags exit 2.
source "$(dirname "$0")/lib.sh"
command -v curl >/dev/null || skip "curl is missing"

set +e
"$ZLB" serve --http-status 404 >/dev/null 2>"$T/bad.err"
rc=$?
set -e
[ $rc = 2 ] || fail "--http-status without --mode http: exit $rc, expected 2"
grep -q "need --mode http" "$T/bad.err" || fail "unexpected message: $(cat "$T/bad.err")"
for args in "--http-status 99" "--http-body-size 65MiB" "--http-delay soon" \
            "--http-delay 5ms --http-delay-max 1ms"; do
    set +e
    # shellcheck disable=SC2086
    "$ZLB" serve --mode http $args >/dev/null 2>&1
    rc=$?
    set -e
    [ $rc = 2 ] || fail "serve --mode http $args: exit $rc, expected 2"
done
pass "bad --http-* flags exit 2"

start_serve --mode http --http-status 503 --http-body-size 1KiB --http-chunked \
    --http-delay 100ms --http-delay-max 150ms
URL="http://$SERVE_ADDR/x"
# Two requests on one connection (curl reuses it): both 503, 1024-byte bodies, chunked, delayed.
curl -s -o "$T/b1" -o "$T/b2" -D "$T/h" -w '%{http_code} %{num_connects} %{time_total}\n' \
    "$URL" "$URL" >"$T/w" || fail "curl failed"
cat "$T/w"
[ "$(awk '{ print $1 }' "$T/w" | sort -u)" = 503 ] || fail "statuses: $(cat "$T/w")"
[ "$(awk '{ s += $2 } END { print s }' "$T/w")" = 1 ] || fail "not one kept connection: $(cat "$T/w")"
awk '{ if ($3 < 0.1) exit 1 }' "$T/w" || fail "a response came before the 100 ms delay: $(cat "$T/w")"
[ "$(wc -c <"$T/b1")" = 1024 ] && [ "$(wc -c <"$T/b2")" = 1024 ] || fail "body sizes"
grep -qi '^transfer-encoding: chunked' "$T/h" || fail "not chunked: $(cat "$T/h")"
[ "$(head -c 6 "$T/b1")" = okokok ] || fail "body: $(head -c 20 "$T/b1")"
# HTTP/1.0 gets Content-Length instead of chunks.
curl -s -0 -D "$T/h10" -o /dev/null "$URL" || fail "curl -0 failed"
grep -qi '^content-length: 1024' "$T/h10" || fail "HTTP/1.0 framing: $(cat "$T/h10")"
pass "status, body size, chunked (Content-Length for HTTP/1.0), delay, keep-alive"
