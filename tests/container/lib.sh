# lib.sh -- what the container tests share: the skip rule, podman's settings, free ports and the
# report schema check. Sourced by it_*.sh here after they set CHECKS (how many checks a skip
# skips) and WHAT (their name for them); it sources tests/integration/lib.sh in turn.
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
if [ "$(id -u)" != 0 ]; then
    echo "SKIP: $CHECKS $WHAT checks: podman runs as root here and this is uid $(id -u)"
    exit 77
fi
if ! command -v podman >/dev/null && ! command -v apt-get >/dev/null; then
    echo "SKIP: $CHECKS $WHAT checks: no podman, and no apt-get to install it"
    exit 77
fi
# The integration lib wants a zlbench binary; the one under test is inside the image, so it gets
# podman's path.
source "$REPO/tests/integration/lib.sh" "$(command -v podman || echo /usr/bin/podman)"
export CONTAINERS_CONF=${CONTAINERS_CONF:-$REPO/docker/containers.conf}

# A port below the kernel's ephemeral range (the other tests' client sockets take theirs from it,
# and binding 0.0.0.0 fails on a port a connected socket holds), used by no socket in any state.
free_port() {
    local p low
    read -r low _ </proc/sys/net/ipv4/ip_local_port_range
    [ "$low" -gt 12000 ] || low=32768
    while :; do
        p=$((10000 + RANDOM % (low - 10000)))
        ss -Htan "sport = :$p" | grep -q . || { echo "$p"; return; }
    done
}

# validate REPORT: prints what in REPORT breaks configs/report.schema.json (nothing when valid).
validate() {
    jq -r --slurpfile schema "$REPO/configs/report.schema.json" \
        -f "$REPO/tests/integration/schema.jq" "$1"
}
