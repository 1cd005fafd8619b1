#!/usr/bin/env bash
# it_ci_summary.sh -- CI-native summaries (issue 16): --junit and --summary-md of a run and of a
# compare, $GITHUB_STEP_SUMMARY appended to, and no ANSI escape in a run's output when stdout and
# stderr are files. The JUnit is parsed with python3's xml module: structure, counts, failure text.
source "$(dirname "$0")/lib.sh"
command -v python3 >/dev/null || skip "python3 is missing"

# run NAME INTERVAL: 1 s of echo against the built-in target, one threshold that fails.
run() {
    cat >"$T/$1.json" <<JSON
{"embedded_target": {"mode": "echo"}, "connections": 20, "connect_rate": 1000, "duration": "1s",
 "control": {"listen": null}, "workload": {"type": "echo", "message_interval": "$2"},
 "thresholds": {"latency_us.connect.p99": "< 0.5", "connections.established": ">= 20"}}
JSON
    set +e
    GITHUB_STEP_SUMMARY="$T/step.md" "$ZLB" -c "$T/$1.json" --report "$T/$1.report.json" \
        --junit "$T/$1.xml" --summary-md "$T/$1.md" >"$T/$1.out" 2>"$T/$1.err"
    EXIT_CODE=$?
    set -e
}
echo "earlier step's line" >"$T/step.md"
run fast 20ms
[ "$EXIT_CODE" = 3 ] || fail "run: exit $EXIT_CODE, expected 3 (a threshold fails): $(tail -3 "$T/fast.err")"

# No ANSI escapes when not a terminal: the summary (stdout) and the progress lines (stderr).
for f in "$T/fast.out" "$T/fast.err"; do
    [ -s "$f" ] || [ "$f" = "$T/fast.err" ] || fail "$f is empty: no summary printed"
    if LC_ALL=C grep -q $'\x1b' "$f"; then fail "ANSI escape in $f: $(LC_ALL=C grep -n $'\x1b' "$f" | head -3 | cat -v)"; fi
done
pass "no ANSI escape in stdout ($(wc -c <"$T/fast.out") bytes) nor stderr ($(wc -c <"$T/fast.err") bytes)"

# The JUnit: every threshold row of the report is one testcase, plus "valid run".
python3 - "$T/fast.xml" "$T/fast.report.json" <<'PY' || fail "JUnit of the run"
import json, sys, xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
rep = json.load(open(sys.argv[2]))
rows = rep["thresholds"]
assert root.tag == "testsuites", root.tag
suites = root.findall("testsuite")
assert [s.get("name") for s in suites] == ["zlbench.thresholds"], [s.get("name") for s in suites]
cases = suites[0].findall("testcase")
failed = [c for c in cases if c.find("failure") is not None]
want_failed = sum(not r["passed"] for r in rows)
print("   junit: %d testcases, %d failed; report: %d thresholds, %d failed"
      % (len(cases), len(failed), len(rows), want_failed))
assert len(cases) == len(rows) + 1
assert int(root.get("tests")) == int(suites[0].get("tests")) == len(cases)
assert int(root.get("failures")) == int(suites[0].get("failures")) == len(failed) == want_failed
names = [c.get("name") for c in cases]
assert names == ["valid run"] + ["%s %s" % (r["path"], r["expr"]) for r in rows], names
f = [c for c in cases if c.get("name") == "latency_us.connect.p99 < 0.5"][0].find("failure")
print("   failure:", f.get("message"))
for word in ("observed", "limit latency_us.connect.p99 < 0.5", "change +"):
    assert word in f.get("message"), word
assert f.text == f.get("message")
PY
pass "run JUnit: one testcase per threshold, counts and failure text match the report"

# The markdown: the figures table and one row per threshold; the same text appended to the step
# summary after what an earlier step wrote there.
grep -q '^| figure | value |$' "$T/fast.md" || fail "no figures table: $(cat "$T/fast.md")"
grep -q '^| threshold | observed | verdict |$' "$T/fast.md" || fail "no thresholds table"
grep -q '^| `latency_us.connect.p99 < 0.5` | [0-9.]* | \*\*FAIL\*\* |$' "$T/fast.md" \
    || fail "failed threshold row: $(grep connect.p99 "$T/fast.md")"
grep -q '^| `connections.established >= 20` | 20 | pass |$' "$T/fast.md" || fail "passed row"
grep -q '^### zlbench run: FAILED (exit 3)$' "$T/fast.md" || fail "verdict line: $(head -1 "$T/fast.md")"
[ "$(head -1 "$T/step.md")" = "earlier step's line" ] || fail "GITHUB_STEP_SUMMARY was replaced"
tail -n +2 "$T/step.md" | cmp -s - "$T/fast.md" || fail "GITHUB_STEP_SUMMARY: not the same markdown"
pass "run markdown: $(grep -c '^| ' "$T/fast.md") table lines; appended to GITHUB_STEP_SUMMARY"

# compare: a slower current run (messages 5x rarer) regresses on messages/s; connections.established
# (20 in both) does not.
run slow 100ms
: >"$T/step.md"
set +e
GITHUB_STEP_SUMMARY="$T/step.md" "$ZLB" compare "$T/fast.report.json" "$T/slow.report.json" \
    --metric rates.messages_per_s --metric connections.established \
    --junit "$T/cmp.xml" --summary-md "$T/cmp.md" >"$T/cmp.out" 2>"$T/cmp.err"
code=$?
set -e
[ "$code" = 4 ] || fail "compare: exit $code, expected 4: $(cat "$T/cmp.out" "$T/cmp.err")"
python3 - "$T/cmp.xml" <<'PY' || fail "JUnit of the compare"
import sys, xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
s = root.findall("testsuite")
assert [x.get("name") for x in s] == ["zlbench.compare"]
cases = {c.get("name"): c for c in s[0].findall("testcase")}
assert sorted(cases) == ["connections.established", "rates.messages_per_s"], sorted(cases)
assert root.get("tests") == "2" and root.get("failures") == "1", root.attrib
f = cases["rates.messages_per_s"].find("failure")
print("   regression:", f.get("message"))
for word in ("regression: baseline", "current", "change -", "limit 10% (tolerance)"):
    assert word in f.get("message"), word
assert cases["connections.established"].find("failure") is None
PY
grep -q '^### zlbench compare: REGRESSION (1 regression(s), tolerance 10%)$' "$T/cmp.md" || fail "compare md: $(cat "$T/cmp.md")"
grep -q '^| `rates.messages_per_s` | [0-9.]* | [0-9.]* | -[0-9.]*% | \*\*regression\*\* |$' "$T/cmp.md" \
    || fail "compare md row: $(cat "$T/cmp.md")"
cmp -s "$T/step.md" "$T/cmp.md" || fail "compare: GITHUB_STEP_SUMMARY differs from --summary-md"
pass "compare JUnit and markdown: messages/s regression failed, connections.established passed"

# --repeat: each run's JUnit and markdown beside its report (a-1.xml ...), none overwritten.
cat >"$T/rep.json" <<JSON
{"embedded_target": {"mode": "echo"}, "connections": 10, "connect_rate": 1000, "duration": "300ms",
 "control": {"listen": null}, "workload": {"type": "hold"},
 "thresholds": {"connections.established": ">= 10"}}
JSON
set +e
"$ZLB" -c "$T/rep.json" -q --repeat 2 --report "$T/rep.report.json" --junit "$T/rep.xml" \
    --summary-md "$T/rep.md" >"$T/rep.out" 2>"$T/rep.err"
code=$?
set -e
[ "$code" = 0 ] || fail "--repeat 2: exit $code: $(tail -3 "$T/rep.err")"
for i in 1 2; do
    [ -s "$T/rep-$i.xml" ] && [ -s "$T/rep-$i.md" ] && [ -s "$T/rep.report-$i.json" ] \
        || fail "--repeat: run $i's files missing: $(ls "$T" | grep rep)"
    python3 -c 'import sys, xml.etree.ElementTree as ET
r = ET.parse(sys.argv[1]).getroot(); assert int(r.get("tests")) >= 2 and r.get("failures") == "0", r.attrib' \
        "$T/rep-$i.xml" || fail "--repeat: run $i's JUnit"
done
[ ! -e "$T/rep.xml" ] && [ ! -e "$T/rep.md" ] || fail "--repeat wrote the unnumbered JUnit/markdown too"
pass "--repeat 2: rep-1.xml, rep-2.xml, rep-1.md, rep-2.md beside rep.report-1.json and -2.json"
