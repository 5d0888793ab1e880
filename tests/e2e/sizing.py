#!/usr/bin/env python3
"""The measured side of the resource sizing: kubectl top samples taken under
load (lines "SECONDS POD CPU MEMORY") per component, beside the requests and
limits its workload declares (kubectl get deployments,statefulsets -o json).

  sizing.py TOP_SAMPLES WORKLOADS_JSON    prints a Markdown table
"""

import json
import re
import statistics
import sys

UNITS = {"m": 1e-3, "": 1.0, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30}


def quantity(text):
    number, unit = re.fullmatch(r"([0-9.]+)([A-Za-z]*)", text).groups()
    return float(number) * UNITS[unit]


def component(pod):
    match = re.match(r"lab8-(source|mart|model|redis)-", pod)
    return match and match.group(1)


def main():
    samples = {}
    for line in open(sys.argv[1]):
        _, pod, cpu, memory = line.split()[:4]
        if component(pod):
            samples.setdefault(component(pod), []).append((quantity(cpu), quantity(memory)))
    declared = {}
    for item in json.load(open(sys.argv[2]))["items"]:
        name = item["metadata"]["name"].removeprefix("lab8-")
        declared[name] = item["spec"]["template"]["spec"]["containers"][0].get("resources", {})
    print("| component | samples | CPU median | CPU max | memory max | requests (CPU / memory) | limits (CPU / memory) |")
    print("|---|---:|---:|---:|---:|---|---|")
    for name in ("source", "mart", "model", "redis"):
        values = samples.get(name, [])
        if not values:
            continue
        cpus, memories = [c for c, _ in values], [m for _, m in values]
        resources = declared.get(name, {})
        pair = lambda section: " / ".join(resources.get(section, {}).get(k, "-") for k in ("cpu", "memory"))
        print(f"| {name} | {len(values)} | {statistics.median(cpus) * 1000:.0f}m | {max(cpus) * 1000:.0f}m "
              f"| {max(memories) / 2**20:.0f}Mi | {pair('requests')} | {pair('limits')} |")


if __name__ == "__main__":
    main()
