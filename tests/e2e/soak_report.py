#!/usr/bin/env python3
"""soak_report.py ARTIFACTS WRITERS: the figures of `make soak` (scripts/soak.sh).

Reads memory.txt (kubectl top every 15 s: seconds, pod, millicores, MiB),
kills.txt (seconds, pod, what) and load-N.json (push.py steady); writes
summary.md (rate, outages, kills, each component's memory slope) and
soak.png (records acknowledged per second, each pod's memory, the kills).

A pod's memory slope is the least-squares slope of its samples after its
first two minutes (start-up, caches filling), for pods with at least five
minutes of samples left (a Redis pod killed and back under its name counts
as a new pod from its kill); a component's slope is the median of its pods'
(the pods are killed at random, so few live the whole soak). Fails when no
component has a pod to measure."""

import collections
import json
import pathlib
import statistics
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

WARM_UP_S = 120
MIN_SPAN_S = 300


def component(pod):
    # lab8-mart-<replicaset>-<id>, lab8-redis-<ordinal> [(life N)]
    parts = pod.split("-")
    return parts[1] if len(parts) > 1 else pod


def slope_per_10_min(samples):
    """Least-squares slope of (t, MiB) in MiB per 10 minutes."""
    n = len(samples)
    mt = sum(t for t, _ in samples) / n
    mm = sum(m for _, m in samples) / n
    var = sum((t - mt) ** 2 for t, _ in samples)
    return 600 * sum((t - mt) * (m - mm) for t, m in samples) / var


def main():
    art, writers = pathlib.Path(sys.argv[1]), int(sys.argv[2])
    memory = collections.defaultdict(list)
    for line in open(art / "memory.txt"):
        t, pod, _cpu, mib = line.split()
        memory[pod].append((int(t), float(mib)))
    kills = [line.split(maxsplit=2) for line in open(art / "kills.txt") if line.strip()]
    loads = [json.load(open(art / f"load-{w}.json")) for w in range(1, writers + 1)]
    start = min(t for series in memory.values() for t, _ in series)

    # A Redis pod comes back under its name: each life is a series of its own.
    killed_at = collections.defaultdict(list)
    for t, pod, _what in kills:
        killed_at[pod].append(int(t))
    lives = {}
    for pod, series in memory.items():
        bounds = sorted(killed_at[pod])
        for life in range(len(bounds) + 1):
            lo = bounds[life - 1] if life else float("-inf")
            hi = bounds[life] if life < len(bounds) else float("inf")
            part = [(t, m) for t, m in series if lo < t <= hi]
            if part:
                lives[pod if not life else f"{pod} (life {life + 1})"] = part
    memory = lives

    per_component = collections.defaultdict(list)
    peaks = collections.defaultdict(float)
    for pod, series in memory.items():
        peaks[component(pod)] = max(peaks[component(pod)], max(m for _, m in series))
        settled = [(t, m) for t, m in series if t >= series[0][0] + WARM_UP_S]
        if len(settled) >= 3 and settled[-1][0] - settled[0][0] >= MIN_SPAN_S:
            per_component[component(pod)].append((pod, slope_per_10_min(settled), settled[-1][0] - settled[0][0]))

    acked = sum(l["acked"] for l in loads)
    buckets = collections.Counter()
    for l in loads:
        buckets.update({int(t): n for t, n in l["acked_per_10s"].items()})
    seconds = max(buckets) - min(buckets) + 10 if buckets else 1
    outages = sorted((o for l in loads for o in l["outages"]), key=lambda o: o["from"])
    lines = [
        f"- {acked:,} records acknowledged in {seconds / 60:.1f} min ({acked / seconds:,.0f} records/s), "
        f"{sum(l['failed'] for l in loads)} requests failed",
        f"- {len(kills)} pods killed; write gaps over 1 s: {len(outages)}, longest "
        f"{max((o['seconds'] for o in outages), default=0):.1f} s",
        "",
        "| component | pods measured | memory slope, median (MiB / 10 min) | range | peak (MiB) |",
        "|---|---|---|---|---|",
    ]
    for name in sorted(peaks):
        pods = per_component.get(name, [])
        if pods:
            slopes = [s for _, s, _ in pods]
            lines.append(f"| {name} | {len(pods)} | {statistics.median(slopes):+.2f} | "
                         f"{min(slopes):+.2f} … {max(slopes):+.2f} | {peaks[name]:.0f} |")
        else:
            lines.append(f"| {name} | 0 (none lived {MIN_SPAN_S // 60} min past warm-up) | — | — | {peaks[name]:.0f} |")
    (art / "summary.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 7), sharex=True)
    xs = sorted(buckets)
    top.plot([(t - start) / 60 for t in xs], [buckets[t] / 10 for t in xs], color="tab:blue")
    top.set_ylabel("records acknowledged / s")
    top.set_title("make soak: steady load, a pod killed every minute, one Redis failover")
    colours = {"source": "tab:green", "mart": "tab:blue", "model": "tab:orange", "redis": "tab:red"}
    labelled = set()
    for pod, series in sorted(memory.items()):
        name = component(pod)
        bottom.plot([(t - start) / 60 for t, _ in series], [m for _, m in series], color=colours.get(name, "grey"),
                    linewidth=0.9, label=None if name in labelled else name)
        labelled.add(name)
    for t, _pod, what in kills:
        for ax in (top, bottom):
            ax.axvline((int(t) - start) / 60, color="red" if "primary" in what else "grey", linewidth=0.6,
                       linestyle="-" if "primary" in what else ":")
    bottom.set_ylabel("memory per pod (MiB, kubectl top)")
    bottom.set_xlabel("minutes (dotted: a pod killed; red: the Redis primary)")
    bottom.legend(fontsize=8)
    for ax in (top, bottom):
        ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(art / "soak.png", dpi=110)
    sys.exit(0 if per_component else 1)


if __name__ == "__main__":
    main()
