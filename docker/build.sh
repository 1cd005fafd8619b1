#!/usr/bin/env bash
# docker/build.sh -- builds the zlbench container image with podman, with no registry needed.
#
#   bash docker/build.sh [PODMAN-BUILD-OPTION...]        (as root, from anywhere in the checkout)
#
# On a Debian 12 machine: installs what is missing (podman, runc, debootstrap), makes a Debian 12
# base image with debootstrap from the apt mirror this machine uses (once: it is kept in podman's
# store and reused), tags it as the debian:12 and debian:12-slim the Dockerfile names, and builds
# docker/Dockerfile from the checkout's files (tracked and not ignored ones: what a clean checkout
# plus your edits holds). The image is $ZLB_IMAGE (default localhost/zlbench:latest); its
# `zlbench --version` names the checkout's commit. Then the Prometheus image docker/compose.yaml
# runs, localhost/zlbench-prometheus:latest (docker/Dockerfile.prometheus: Debian's package on the
# same base; its package layer is cached, so it is rebuilt only when that file or the base changes).
#
# Podman runs with docker/containers.conf (runc, cgroupfs, ulimits this machine allows) unless
# CONTAINERS_CONF names another file: export the same variable for `podman run`.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
IMAGE=${ZLB_IMAGE:-localhost/zlbench:latest}
PROM_IMAGE=localhost/zlbench-prometheus:latest # the name docker/compose.yaml uses
BASE=localhost/debian:12
BASE_RECIPE=2 # bump when the base image's recipe below changes: the old one is then replaced
export CONTAINERS_CONF=${CONTAINERS_CONF:-$repo/docker/containers.conf}

say() { echo "docker/build.sh: $*" >&2; }
die() { say "$*"; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (rootful podman; debootstrap needs root)"

# ---- 1. tools -------------------------------------------------------------------------------
need=()
for tool in podman runc debootstrap; do
    command -v "$tool" >/dev/null || need+=("$tool")
done
if [ ${#need[@]} -gt 0 ]; then
    say "installing ${need[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -qq \
        --no-install-recommends "${need[@]}" >/dev/null
fi
hard_nofile=$(ulimit -Hn)
if [ "$hard_nofile" != unlimited ] && [ "$hard_nofile" -lt 20000 ]; then
    say "warning: the open-files hard limit is $hard_nofile, below containers.conf's 20000;" \
        "containers will not start: lower default_ulimits in $CONTAINERS_CONF"
fi

# ---- 2. the Debian 12 base image (made once) ------------------------------------------------
# One builder at a time: two CI jobs must not both debootstrap and race on the tag.
exec 9>/var/lock/zlbench-debian-base.lock
flock 9
# An image made by an older recipe of this script (another label) is made again.
if [ "$(podman image inspect --format '{{index .Labels "zlbench.base"}}' "$BASE" 2>/dev/null)" \
    != "$BASE_RECIPE" ]; then
    # The archives this machine's apt uses (no registry is needed, only the Debian mirror).
    mapfile -t archives < <(apt-get indextargets --format '$(REPO_URI) $(RELEASE) $(COMPONENT)' \
        'Identifier: Packages' | awk '$2 ~ /^bookworm/' | sort -u)
    mirror=http://deb.debian.org/debian/
    for a in "${archives[@]}"; do
        read -r uri release _ <<<"$a"
        [ "$release" = bookworm ] && { mirror=$uri; break; }
    done
    rootfs=$(mktemp -d /var/tmp/zlb-rootfs.XXXXXX)
    # --one-file-system: never follow a /proc or /sys debootstrap left mounted after a failure.
    trap 'rm -rf --one-file-system "$rootfs"' EXIT
    say "making $BASE with debootstrap from $mirror (once; a few minutes)"
    start=$(date +%s)
    debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >"$rootfs.log" 2>&1 || {
        tail -20 "$rootfs.log" >&2
        die "debootstrap failed (log: $rootfs.log)"
    }
    rm -f "$rootfs.log"
    # The clean-up below deletes under $rootfs: make sure it is the new root file system.
    [ -n "$rootfs" ] && [ -x "$rootfs/usr/bin/apt-get" ] || die "no root file system in '$rootfs'"
    # The same archives as the host, security updates included, so images get current libraries.
    if [ ${#archives[@]} -gt 0 ]; then
        printf 'deb %s\n' "${archives[@]}" >"$rootfs/etc/apt/sources.list"
    fi
    # As Debian's official images: no docs, manuals or translations in images (copyrights stay),
    # and no package cache left behind.
    cat >"$rootfs/etc/dpkg/dpkg.cfg.d/zlbench-image" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
EOF
    echo 'APT::Install-Recommends "false";' >"$rootfs/etc/apt/apt.conf.d/zlbench-image"
    find "$rootfs/usr/share/doc" -mindepth 1 -not -type d -not -name copyright -delete
    find "$rootfs/usr/share/doc" -mindepth 1 -type d -empty -delete
    find "$rootfs/usr/share/locale" -mindepth 1 -maxdepth 1 -not -name locale.alias \
        -exec rm -rf {} +
    rm -rf "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* "$rootfs"/var/lib/apt/lists/* \
        "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/cache/apt/archives/*.deb \
        "$rootfs"/var/cache/debconf/*-old "$rootfs"/dev/*
    tar --numeric-owner -C "$rootfs" -c . |
        podman import --change 'CMD ["bash"]' --change "LABEL zlbench.base=$BASE_RECIPE" \
            - "$BASE" >/dev/null
    rm -rf --one-file-system "$rootfs"
    trap - EXIT
    say "$BASE made in $(($(date +%s) - start)) s"
fi
podman tag "$BASE" docker.io/library/debian:12 docker.io/library/debian:12-slim
flock -u 9

# ---- 3. the image ---------------------------------------------------------------------------
commit=unknown
ctx=$repo
if git -C "$repo" rev-parse --git-dir >/dev/null 2>&1; then
    commit=$(git -C "$repo" rev-parse --short=12 HEAD)
    # The build context is the checkout's files, tracked or new, never ignored build output.
    ctx=$(mktemp -d /var/tmp/zlb-context.XXXXXX)
    trap 'rm -rf "$ctx"' EXIT
    git -C "$repo" ls-files -z --cached --others --exclude-standard |
        tar -C "$repo" --null --ignore-failed-read -c -T - | tar -C "$ctx" -x
fi
say "building $IMAGE (commit $commit)"
start=$(date +%s)
# --format docker: OCI image configs have no HEALTHCHECK. --network host: RUN steps reach the
# apt mirror as the host does.
build=(podman build --pull=never --network host --format docker
    --build-arg ZLB_GIT_COMMIT="$commit" -f "$ctx/docker/Dockerfile" "$@")
# The build stage gets a tag of its own, so that the clean-up below keeps the latest one as the
# cache of an unchanged checkout; the second command reuses its layers.
"${build[@]}" --target build -t localhost/zlbench-build:cache "$ctx"
"${build[@]}" -t "$IMAGE" "$ctx"
# Images this script built before, now untagged, and their build stages: remove them (the base
# and the package layers stay cached).
for label in org.opencontainers.image.title=zlbench zlbench.stage=build; do
    podman image prune -f --filter "label=$label" >/dev/null || true
done
size=$(podman image inspect --format '{{.Size}}' "$IMAGE")
say "built $IMAGE in $(($(date +%s) - start)) s: $((size / 1000000)) MB" \
    "($(podman run --rm --no-healthcheck --network none "$IMAGE" --version | head -1))"

# ---- 4. the compose stack's Prometheus ------------------------------------------------------
start=$(date +%s)
podman build --pull=never --network host --format docker -f "$ctx/docker/Dockerfile.prometheus" \
    -t "$PROM_IMAGE" "$ctx/docker"
podman image prune -f --filter label=org.opencontainers.image.title=zlbench-prometheus >/dev/null ||
    true
size=$(podman image inspect --format '{{.Size}}' "$PROM_IMAGE")
say "built $PROM_IMAGE in $(($(date +%s) - start)) s: $((size / 1000000)) MB" \
    "($(podman run --rm --network none --entrypoint /usr/bin/prometheus "$PROM_IMAGE" --version 2>&1 |
        head -1))"
