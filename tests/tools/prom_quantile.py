#!/usr/bin/env python3
"""prom_quantile.py -- histogram_quantile (Prometheus' algorithm) over /metrics vs /stats percentiles.

Usage: prom_quantile.py METRICS_FILE STATS_JSON [MAX_ERROR_PCT]
Reads one /metrics text and the /stats document of the same snapshot (their counts must match),
computes histogram_quantile(q) for each phase the way Prometheus does (linear interpolation inside
the bucket; the first bucket starts at 0) and prints it beside /stats' p50/p90/p99/p999. With
MAX_ERROR_PCT, exits 1 when any phase with at least 1000 samples is off by more.
"""
import json
import re
import sys

def buckets(text):
    out = {}
    pat = re.compile(r'^zlbench_(\w+)_seconds_bucket\{le="([^"]+)"\} (\d+)$')
    for line in text.splitlines():
        m = pat.match(line)
        if m:
            out.setdefault(m.group(1), []).append(
                (float("inf") if m.group(2) == "+Inf" else float(m.group(2)), int(m.group(3))))
    return out

def histogram_quantile(q, bk):
    total = bk[-1][1]
    if total == 0:
        return None
    rank = q * total
    prev_le, prev_c = 0.0, 0
    for le, c in bk:
        if c >= rank:
            if le == float("inf"):
                return prev_le
            if c == prev_c:
                return le
            return prev_le + (le - prev_le) * (rank - prev_c) / (c - prev_c)
        prev_le, prev_c = le, c
    return prev_le

def main():
    text = open(sys.argv[1]).read()
    stats = json.load(open(sys.argv[2]))
    limit = float(sys.argv[3]) if len(sys.argv) > 3 else None
    worst = 0.0
    print(f"{'phase':<16}{'count':>9}  {'q':>6} {'/stats us':>11} {'prom us':>11} {'error':>8}")
    for phase, bk in sorted(buckets(text).items()):
        lat = stats["latency_us"].get(phase)
        if not lat or lat["count"] == 0:
            continue
        if lat["count"] != bk[-1][1]:
            sys.exit(f"{phase}: /stats count {lat['count']} != /metrics count {bk[-1][1]}"
                     " (not the same snapshot)")
        for key, q in (("p50", .5), ("p90", .9), ("p99", .99), ("p999", .999)):
            want = lat[key]
            got = histogram_quantile(q, bk) * 1e6
            err = (got - want) / want * 100 if want else 0.0
            if lat["count"] >= 1000:
                worst = max(worst, abs(err))
            print(f"{phase:<16}{lat['count']:>9}  {key:>6} {want:>11.1f} {got:>11.1f} {err:>+7.2f}%")
    print(f"worst |error| over phases with >= 1000 samples: {worst:.2f} %")
    if limit is not None and worst > limit:
        sys.exit(1)

main()
