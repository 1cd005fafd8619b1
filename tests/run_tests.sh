#!/usr/bin/env bash
# run_tests.sh -- installs what is missing, builds zlbench with warnings as errors, runs every test.
#   bash tests/run_tests.sh                      # the normal build (build-test/: never the README's build/)
#   bash tests/run_tests.sh --sanitize address,undefined   (build-asan/)
#   bash tests/run_tests.sh --sanitize thread              (build-tsan/)
set -euo pipefail
cd "$(dirname "$0")/.."
sanitize=""
if [ "${1:-}" = "--sanitize" ]; then
    sanitize="${2:?--sanitize needs address,undefined or thread}"
fi
bash .ci/deps
case "$sanitize" in
    "") dir=build-test; flags=() ;;
    thread) dir=build-tsan; flags=(-DZLB_SANITIZE=thread) ;;
    *) dir=build-asan; flags=("-DZLB_SANITIZE=${sanitize//,/;}") ;;
esac
cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DZLB_WERROR=ON "${flags[@]}" >/dev/null
cmake --build "$dir" -j"$(nproc)"
export ZLB_SANITIZE="$sanitize"
cd "$dir"
# Sanitizer reports go to files, one per process (children and helpers included), so that no
# report can hide in a temporary file a test script deletes: any file here fails the run.
reports="$PWD/sanitizer-reports"
rm -rf "$reports" flaky-tests.txt
mkdir -p "$reports"
# Sanitizers: abort on the first report so ctest sees a failure too.
export ASAN_OPTIONS="abort_on_error=1:detect_leaks=1:log_path=$reports/asan"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:log_path=$reports/ubsan"
export TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1:log_path=$reports/tsan"

sanitizer_reports() { # prints every report; true when there is one
    local f found=1
    for f in "$reports"/*; do
        [ -e "$f" ] || continue
        found=0
        echo "=== sanitizer report $(basename "$f")"
        cat "$f"
    done
    return $found
}

rc=0
ctest --output-on-failure --timeout 600 || rc=$?
if sanitizer_reports; then echo "FAIL: the sanitizer reported (above)"; exit 1; fi
[ "$rc" = 0 ] && exit 0
# A failed test gets one more run, alone. The integration tests drive real sockets and processes
# against wall-clock bounds on a small shared machine, where a stall of a second or two happens;
# one such stall should not hide the other results of a 30-minute CI run. A test that fails
# twice fails the run, a sanitizer report fails it whatever the rerun says, more than three
# failures are no flake, and every test that needed its rerun is named (flaky-tests.txt).
failed=Testing/Temporary/LastTestsFailed.log
[ -s "$failed" ] || exit "$rc"
names=$(sed 's/^[0-9]*://' "$failed" | tr '\n' ' ')
if [ "$(wc -l < "$failed")" -gt 3 ]; then echo "FAIL: $names"; exit "$rc"; fi
echo
echo "=== failed once: $names- each runs once more, alone"
rc=0
ctest --rerun-failed --output-on-failure --timeout 600 || rc=$?
if sanitizer_reports; then echo "FAIL: the sanitizer reported (above)"; exit 1; fi
[ "$rc" = 0 ] || { echo "FAIL: failed again on its rerun: $names"; exit "$rc"; }
echo "FLAKY (failed once, passed on its rerun; look at the first failure above): $names" |
    tee flaky-tests.txt
