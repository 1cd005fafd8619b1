#!/usr/bin/env python3
"""check_k8s.py DIR OUT_SCENARIO -- docker/k8s/ carries what a sharded run on Kubernetes needs:
an Indexed Job (completions = parallelism = the scenario's shard count, "index": "env"), pod
anti-affinity, a headless Service and a ServiceMonitor that select the shard pods, Prometheus
scrape annotations, and a merge step over every shard's report. Writes the scenario JSON to
OUT_SCENARIO (for `zlbench validate`) and prints one line per fact checked."""
import json
import os
import re
import sys

import yaml

d, out = sys.argv[1], sys.argv[2]
docs = {}
for name in sorted(os.listdir(d)):
    if name.endswith(".yaml"):
        with open(os.path.join(d, name)) as f:
            for doc in yaml.safe_load_all(f):
                if doc and "metadata" in doc:
                    docs[(doc["kind"], doc["metadata"]["name"])] = doc


def check(cond, what):
    print(("ok:   " if cond else "FAIL: ") + what)
    if not cond:
        sys.exit(1)


def labels_match(selector, labels):
    return all(labels.get(k) == v for k, v in selector.items())


cm = docs[("ConfigMap", "zlbench-scenario")]
scenario = json.loads(cm["data"]["scenario.json"])
with open(out, "w") as f:
    json.dump(scenario, f)
n = scenario["shard"]["count"]
check(scenario["shard"]["index"] == "env", 'scenario: "shard": {"index": "env"} (JOB_COMPLETION_INDEX)')

job = docs[("Job", "zlbench-shards")]
spec = job["spec"]
check(spec["completionMode"] == "Indexed", "job: completionMode Indexed")
check(spec["completions"] == spec["parallelism"] == n,
      f"job: completions = parallelism = shard.count ({spec['completions']}, {spec['parallelism']}, {n})")
pod = spec["template"]
plabels = pod["metadata"]["labels"]
term = pod["spec"]["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][0]
check(term["topologyKey"] == "kubernetes.io/hostname" and labels_match(term["labelSelector"]["matchLabels"], plabels),
      "job: required pod anti-affinity on kubernetes.io/hostname against its own pods")
ann = pod["metadata"]["annotations"]
c = pod["spec"]["containers"][0]
port = next(p for p in c["ports"] if p["name"] == "metrics")
check(ann["prometheus.io/scrape"] == "true" and ann["prometheus.io/path"] == "/metrics"
      and int(ann["prometheus.io/port"]) == port["containerPort"] == int(scenario["control"]["listen"].rsplit(":", 1)[1]),
      "job: prometheus.io/scrape, /path, /port = the container's metrics port = control.listen's")
args = " ".join(c["args"])
mount = next(m["mountPath"] for m in c["volumeMounts"] if m["name"] == "scenario")
check(f"-c {mount}/scenario.json" in args, "job: the container reads the ConfigMap's scenario")
check("$(JOB_COMPLETION_INDEX)" in args, "job: one report per shard, named by $(JOB_COMPLETION_INDEX)")
check(pod["spec"]["subdomain"] == "zlbench-shards", "job: pods in the headless Service's subdomain")

svc = docs[("Service", "zlbench-shards")]
check(svc["spec"]["clusterIP"] == "None" and labels_match(svc["spec"]["selector"], plabels),
      "service: headless, selecting the shard pods")
check(any(p["name"] == "metrics" for p in svc["spec"]["ports"]), "service: the metrics port by name")
sm = docs[("ServiceMonitor", "zlbench-shards")]
ep = sm["spec"]["endpoints"][0]
check(labels_match(sm["spec"]["selector"]["matchLabels"], svc["metadata"]["labels"])
      and ep["port"] == "metrics" and ep["path"] == "/metrics",
      f"servicemonitor: selects the service, scrapes /metrics every {ep['interval']}")

merge = docs[("Job", "zlbench-merge")]
margs = merge["spec"]["template"]["spec"]["containers"][0]["args"]
reports = sorted(a for a in margs if re.fullmatch(r"/reports/shard-\d+\.json", a))
check(margs[0] == "merge" and reports == [f"/reports/shard-{i}.json" for i in range(n)],
      f"merge job: merges shard-0..{n - 1}.json, every shard's report")
rep = next(v for v in pod["spec"]["volumes"] if v["name"] == "reports")
mrep = next(v for v in merge["spec"]["template"]["spec"]["volumes"] if v["name"] == "reports")
check(rep == mrep and ("PersistentVolumeClaim", rep["persistentVolumeClaim"]["claimName"]) in docs,
      "shards and merge share the reports volume (a PersistentVolumeClaim in the folder)")
pvc = docs[("PersistentVolumeClaim", rep["persistentVolumeClaim"]["claimName"])]
check("ReadWriteMany" in pvc["spec"]["accessModes"], "reports volume: ReadWriteMany (pods on several nodes)")
with open(os.path.join(d, "kustomization.yaml")) as f:
    kz = yaml.safe_load(f)
check(set(kz["resources"]) >= {"scenario.yaml", "job.yaml", "service.yaml"}, "kustomization lists the pieces")
print(n)
