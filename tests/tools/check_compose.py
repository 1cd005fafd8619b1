#!/usr/bin/env python3
"""check_compose.py DOCKER_DIR -- docker/compose.yaml without running it: the built-in target,
shards --shard i/N for every i < N on the same scenario, each writing its own report, a
Prometheus that scrapes every shard (and is built from the local Debian base with Debian's
package), and a merge of every shard's report after all of them completed -- with docker compose
(depends_on's condition) and with podman-compose 1.0.3, which ignores the condition: there the
merge's entrypoint (compose/merge.sh) waits for reports newer than the marker the target leaves.
tests/container/it_compose.sh runs the stack."""
import os
import re
import sys

import yaml

d = sys.argv[1]
with open(os.path.join(d, "compose.yaml")) as f:
    svc = yaml.safe_load(f)["services"]
with open(os.path.join(d, "build.sh")) as f:
    build_sh = f.read()


def check(cond, what):
    print(("ok:   " if cond else "FAIL: ") + what)
    if not cond:
        sys.exit(1)


check(svc["target"]["command"][0] == "serve", "target: zlbench serve (the built-in target)")
shards = {}
for name, s in svc.items():
    cmd = s.get("command", [])
    if "--shard" in cmd:
        i, n = map(int, cmd[cmd.index("--shard") + 1].split("/"))
        shards[i] = (name, n, cmd[cmd.index("--report") + 1], cmd[cmd.index("-c") + 1])
counts = {v[1] for v in shards.values()}
check(len(counts) == 1 and sorted(shards) == list(range(counts.pop())),
      f"shards: --shard i/N for every i < N ({sorted(shards)})")
check(len({v[3] for v in shards.values()}) == 1, "shards: one scenario file")
reports = [shards[i][2] for i in sorted(shards)]
check(len(set(reports)) == len(reports), "shards: a report each")
with open(os.path.join(d, "compose", "prometheus.yml")) as f:
    prom = yaml.safe_load(f)
targets = [t for job in prom["scrape_configs"] for sc in job["static_configs"] for t in sc["targets"]]
check(sorted(targets) == sorted(f"{v[0]}:8089" for v in shards.values()),
      f"prometheus scrapes every shard: {targets}")
with open(os.path.join(d, svc["prometheus"]["build"]["dockerfile"])) as f:
    df = f.read()
check(re.search(r"^FROM debian:12", df, re.M) and "install" in df and " prometheus" in df,
      "prometheus image: Debian's package on the local Debian 12 base")
m = svc["merge"]
check(m["command"][0] == "merge" and [a for a in m["command"] if a in reports] == reports,
      "merge: every shard's report")
check(all(m["depends_on"][v[0]]["condition"] == "service_completed_successfully" for v in shards.values()),
      "merge: after every shard completed")


def mount(service, target):
    """the host side of SERVICE's volume on TARGET, or None"""
    for v in svc[service].get("volumes", []):
        # HOST:TARGET[:OPTIONS], where HOST may be ${VAR:-default}
        mt = re.match(r"^(.*):(/[^:]*)(?::[a-zA-Z,]+)?$", v)
        if mt and mt.group(2) == target:
            return mt.group(1)
    return None


check(m["entrypoint"][-1] == "/etc/zlbench/merge.sh" and mount("merge", "/etc/zlbench/merge.sh")
      == "./compose/merge.sh" and os.path.exists(os.path.join(d, "compose", "merge.sh")),
      "merge: its entrypoint compose/merge.sh waits for the shards where depends_on's condition is ignored")
folders = {n: mount(n, "/reports") for n in ["target", "merge"] + [v[0] for v in shards.values()]}
check(len(set(folders.values())) == 1 and None not in folders.values()
      and all(r.startswith("/reports/") for r in reports),
      f"one reports folder for the target, the shards and the merge: {folders}")
check("touch /reports/.stack-started" in " ".join(svc["target"]["entrypoint"]),
      "target: leaves the marker the merge's reports must be newer than")
check(f"PROM_IMAGE={svc['prometheus']['image']}" in build_sh,
      f"prometheus image {svc['prometheus']['image']}: docker/build.sh builds it")
check(all(p.startswith("127.0.0.1:") for p in svc["prometheus"].get("ports", [])),
      f"prometheus: published on the host's loopback only {svc['prometheus'].get('ports')}")
