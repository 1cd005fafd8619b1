#!/usr/bin/env bash
# it_k8s.sh -- docker/k8s/ and docker/compose.yaml without a cluster: the manifests parse and carry an Indexed Job's
# fields (tests/tools/check_k8s.py), and the ConfigMap's scenario is valid for every pod index
# the Job hands out (JOB_COMPLETION_INDEX 0..N-1), each a different part of one scenario.
source "$(dirname "$0")/lib.sh"

python3 -c 'import yaml' 2>/dev/null || skip "python3-yaml not installed (Debian package python3-yaml, see .ci/deps)"
python3 "$REPO/tests/tools/check_k8s.py" "$REPO/docker/k8s" "$T/scenario.json" >"$T/check.out" \
    || fail "manifests: $(cat "$T/check.out")"
grep '^ok' "$T/check.out"
n=$(tail -1 "$T/check.out")
# The control port listens on the pod's address, so the token file is required, as in the pod.
printf 'k8s-test-token\n' > "$T/token"; chmod 600 "$T/token"
hashes=()
for ((i = 0; i < n; i++)); do
    ZLB_CONTROL_TOKEN_FILE="$T/token" JOB_COMPLETION_INDEX=$i "$ZLB" validate -c "$T/scenario.json" \
        >"$T/eff$i.json" 2>"$T/val$i.err" || fail "scenario with JOB_COMPLETION_INDEX=$i: $(cat "$T/val$i.err")"
    jq -e --argjson i $i '.shard.index == $i' "$T/eff$i.json" >/dev/null || fail "pod $i: $(jq -c .shard "$T/eff$i.json")"
    hashes+=("$(grep -o 'config hash [0-9a-f]*' "$T/val$i.err")")
done
[ "$(printf '%s\n' "${hashes[@]}" | sort -u | wc -l)" = 1 ] || fail "pods name different scenarios: ${hashes[*]}"
# A pod started without the Job's variable refuses to guess (exit 2, naming the key).
set +e; ZLB_CONTROL_TOKEN_FILE="$T/token" "$ZLB" validate -c "$T/scenario.json" >/dev/null 2>"$T/noenv.err"; rc=$?; set -e
[ "$rc" = 2 ] && grep -q 'shard.index: "env"' "$T/noenv.err" || fail "without JOB_COMPLETION_INDEX: exit $rc $(cat "$T/noenv.err")"
pass "the scenario is valid for pods 0..$((n - 1)), one ${hashes[0]}; without the index: exit 2"

# docker/compose.yaml, the same way (tests/container/it_compose.sh runs it with podman-compose).
python3 "$REPO/tests/tools/check_compose.py" "$REPO/docker" >"$T/compose.out" || fail "compose: $(cat "$T/compose.out")"
grep '^ok' "$T/compose.out"
ZLB_CONTROL_TOKEN_FILE="$T/token" "$ZLB" validate -c "$REPO/docker/compose/scenario.json" --shard 2/3 >/dev/null 2>"$T/cval.err" \
    || fail "compose scenario: $(cat "$T/cval.err")"
pass "docker/compose.yaml: target, 3 shards of one scenario, prometheus on every shard, merge of all"
