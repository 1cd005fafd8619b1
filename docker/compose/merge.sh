#!/bin/bash
# merge.sh -- the compose stack's merge step (the merge service's entrypoint; its command is the
# `zlbench merge` argv): waits until every shard report named in it is newer than the marker
# the target service leaves when the stack starts (/reports/.stack-started), then merges them.
# docker compose starts the merge once the shards completed, so the reports are there at once;
# podman-compose 1.0.3 ignores depends_on's condition and starts it with the shards, so it waits
# here. A report older than the marker is an earlier run's and is never merged. After
# ZLB_MERGE_WAIT_S seconds (default 3600) it merges the fresh reports there are: zlbench merge then
# lists the missing shards (shards.missing), marks the result invalid and exits 5.
set -u
marker=/reports/.stack-started
wait_s=${ZLB_MERGE_WAIT_S:-3600}
reports=()
prev=
for a in "$@"; do
    [ "$prev" != -o ] && [ "$prev" != --output ] && [[ $a == *.json ]] && reports+=("$a")
    prev=$a
done
fresh() { [ -f "$marker" ] && [ -f "$1" ] && [ "$1" -nt "$marker" ]; }
deadline=$((SECONDS + wait_s))
for r in "${reports[@]}"; do
    until fresh "$r"; do
        if [ "$SECONDS" -ge "$deadline" ]; then
            echo "merge.sh: $r not written by this run within $wait_s s" >&2
            break
        fi
        sleep 1
    done
done
# The argv again, without the reports that did not come.
argv=()
prev=
for a in "$@"; do
    if [ "$prev" != -o ] && [ "$prev" != --output ] && [[ $a == *.json ]] && ! fresh "$a"; then
        prev=$a
        continue
    fi
    argv+=("$a")
    prev=$a
done
exec zlbench "${argv[@]}"
