#!/usr/bin/env bash
# it_dashboard.sh -- the live dashboard and the HTML report in a real browser: headless chromium
# driven over the DevTools protocol (tests/tools/browser_check.py). The page loads with no
# console error and no request leaving the control port; the open connections, connects/s and
# p99 connect it shows are those of a /stats document of the last refresh; its charts have
# points; its Stop button stops the run; against an exposed port it asks for the token and then
# works. The HTML report of the run (and one with baselines) opens with no error or request.
# Screenshots go to build/screenshots/ for a person to look at (not under sanitizers).
source "$(dirname "$0")/lib.sh"

CHROME=$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)
[ -n "$CHROME" ] || skip "no chromium (.ci/deps installs Debian's chromium)"
command -v python3 >/dev/null || skip "no python3"
# Beyond one refresh, a loaded machine's request round trip (longer under a sanitizer).
CHECK=(python3 "$REPO/tests/tools/browser_check.py")
SLACK=$(( SLOW > 1 ? 3 : 1 ))
SHOTS="$(dirname "$ZLB")/screenshots"
shot() { # under a sanitizer the figures are slow to come and the pictures not worth the time
    if [ -z "${ZLB_SANITIZE:-}" ]; then mkdir -p "$SHOTS"; echo "--shot $SHOTS/$1"; fi
}

# 1. Loopback, no token: connections churn so that connects/s is not 0 in the steady state.
cat > "$T/cfg.json" <<JSON
{
  "embedded_target": {"mode": "echo", "listen": "127.0.0.1:0"},
  "connections": 200, "connect_rate": 1000, "duration": "0s",
  "workload": {"type": "churn", "lifetime": "500ms"}, "socket": {"close": "fin"},
  "control": {"listen": "127.0.0.1:0", "address_file": "$T/ctl.addr"},
  "report": {"file": "$T/run.json", "html": true}
}
JSON
start_bg zlb "$ZLB" -c "$T/cfg.json" -q
ZPID=$BG_PID
wait_for test -s "$T/ctl.addr" || fail "no control address: $(cat "$T/zlb.err")"
URL="http://$(cat "$T/ctl.addr")/"
echo "dashboard at $URL"
# shellcheck disable=SC2046
"${CHECK[@]}" dashboard "$URL" --slack "$SLACK" --stop $(shot dashboard.png) || fail "the dashboard check failed"
wait_exit "$ZPID" 30
jq -e '.stop_reason == "control_stop"' "$T/run.json" >/dev/null ||
    fail "the Stop button did not stop the run: $(jq -c .stop_reason "$T/run.json")"
pass "dashboard: no errors, numbers match /stats, charts drawn, Stop stopped the run (exit $EXIT_CODE)"

# 2. The HTML report of that run (report.html: true wrote it beside the JSON; `zlbench report`
#    writes the same page), then one with two baselines overlaid.
[ -s "$T/run.html" ] || fail "report.html: true wrote no run.html beside run.json"
"$ZLB" report "$T/run.json" -o "$T/report.html" || fail "zlbench report failed"
cmp -s <(sed 's/"generated_unix_s":[0-9]*//' "$T/run.html") \
       <(sed 's/"generated_unix_s":[0-9]*//' "$T/report.html") ||
    fail "run.html and zlbench report's page differ beyond the generation time"
grep -q "Content-Security-Policy" "$T/report.html" || fail "no CSP in the report"
if grep -Eq '(src|href)="(https?:)?//' "$T/report.html"; then fail "the report references something outside itself"; fi
# shellcheck disable=SC2046
"${CHECK[@]}" report "$T/report.html" --min-charts 2 --full $(shot report.html.png) ||
    fail "the report check failed"
"$ZLB" report "$T/run.json,$T/run.json" "$T/run.json" -o "$T/cmp.html" || fail "report with baselines failed"
"${CHECK[@]}" report "$T/cmp.html" --min-charts 2 || fail "the report with baselines failed its check"
pass "HTML report: self-contained, no errors, charts drawn (with and without baselines)"

# 3. An exposed control port (0.0.0.0, so the token guards every read; reached over loopback):
#    the page shows no numbers until it is given the token, then works, Stop included.
printf 'dash-s3cret\n' > "$T/token"; chmod 600 "$T/token"
cat > "$T/cfg2.json" <<JSON
{
  "embedded_target": {"mode": "echo", "listen": "127.0.0.1:0"},
  "connections": 50, "connect_rate": 500, "duration": "0s",
  "control": {"listen": "0.0.0.0:0", "token_file": "$T/token", "address_file": "$T/ctl2.addr"},
  "report": {"file": "$T/run2.json"}
}
JSON
start_bg zlb2 "$ZLB" -c "$T/cfg2.json" -q
ZPID2=$BG_PID
wait_for test -s "$T/ctl2.addr" || fail "no control address: $(cat "$T/zlb2.err")"
PORT=$(sed 's/.*://' "$T/ctl2.addr")
code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT/stats")
[ "$code" = 401 ] || fail "an exposed /stats without the token answered $code"
"${CHECK[@]}" dashboard "http://127.0.0.1:$PORT/" --token dash-s3cret --samples 1 --slack "$SLACK" --stop ||
    fail "the dashboard check with a token failed"
wait_exit "$ZPID2" 30
jq -e '.stop_reason == "control_stop"' "$T/run2.json" >/dev/null || fail "Stop with the token did not stop the run"
pass "token: prompt shown on 401, numbers only after it, Stop sent with the bearer token"
[ -n "${ZLB_SANITIZE:-}" ] || echo "screenshots: $SHOTS"
