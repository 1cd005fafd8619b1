#!/usr/bin/env bash
# tests/fuzz/run.sh [SECONDS] -- builds every libFuzzer harness (tests/fuzz/fuzz_*.c, clang,
# ASan+UBSan) in build-fuzz/ and runs each for SECONDS (default 45) from its seed corpus
# (tests/fuzz/corpus/<name>/, copied: the tree's corpus is never written). A crash, leak or
# sanitizer report fails the run; the reproducer is kept in build-fuzz/fuzz-artifacts/ and
# printed. Replay one: build-fuzz/tests/fuzz/fuzz_<name> build-fuzz/fuzz-artifacts/<file>
set -euo pipefail
cd "$(dirname "$0")/../.."
secs=${1:-45}
command -v clang >/dev/null || command -v clang-14 >/dev/null || { echo "SKIP: clang not installed (.ci/deps installs clang-14)"; exit 77; }
CC=$(command -v clang || command -v clang-14) cmake -S . -B build-fuzz -DZLB_FUZZ=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo -DZLB_WERROR=ON >/dev/null
names=()
for src in tests/fuzz/fuzz_*.c; do names+=("$(basename "$src" .c)"); done
cmake --build build-fuzz -j2 --target "${names[@]}" 2>&1 | grep -E "error|warning" && exit 1
art=build-fuzz/fuzz-artifacts
mkdir -p "$art"
failed=0
printf '%-22s %10s %10s %7s %7s\n' harness runs exec/s cov ft > build-fuzz/fuzz-summary.txt
for name in "${names[@]}"; do
    short=${name#fuzz_}
    work=$(mktemp -d /tmp/zlb-fuzz-"$short".XXXXXX)
    [ -d "tests/fuzz/corpus/$short" ] && cp -r "tests/fuzz/corpus/$short/." "$work/"
    dict=()
    [ -f "tests/fuzz/$name.dict" ] && dict=(-dict="tests/fuzz/$name.dict")
    echo "=== $name: ${secs}s from $(ls "$work" | wc -l) seeds"
    set +e
    "build-fuzz/tests/fuzz/$name" "$work" "${dict[@]}" -max_total_time="$secs" -print_final_stats=1 \
        -artifact_prefix="$art/$name-" -rss_limit_mb=2048 -timeout=10 >"build-fuzz/$name.log" 2>&1
    rc=$?
    set -e
    runs=$(awk '/stat::number_of_executed_units/ {print $2}' "build-fuzz/$name.log")
    eps=$(awk '/stat::average_exec_per_sec/ {print $2}' "build-fuzz/$name.log")
    last=$(grep -E '^#[0-9]+' "build-fuzz/$name.log" | tail -1)
    cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last"); ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
    printf '%-22s %10s %10s %7s %7s\n' "$name" "${runs:-?}" "${eps:-?}" "${cov:-?}" "${ft:-?}" \
        | tee -a build-fuzz/fuzz-summary.txt
    if [ $rc != 0 ]; then
        failed=1
        echo "FAIL: $name exited $rc; the report:"
        grep -E -A25 'ERROR:|runtime error|SUMMARY|deadly signal' "build-fuzz/$name.log" | head -60
        for f in "$art/$name"-*; do
            [ -f "$f" ] || continue
            echo "reproducer: $f ($(wc -c < "$f") bytes; replay: build-fuzz/tests/fuzz/$name $f)"
            od -c "$f" | head -20
        done
    fi
    rm -rf "$work"
done
echo; cat build-fuzz/fuzz-summary.txt
exit $failed
