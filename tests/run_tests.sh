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
# Sanitizers: abort on the first report so ctest sees a failure.
export ASAN_OPTIONS="abort_on_error=1:detect_leaks=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
export TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1"
cd "$dir"
ctest --output-on-failure --timeout 600
