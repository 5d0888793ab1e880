#!/usr/bin/env python3
"""report.py RESULTS_JSONL DOCS_DIR: medians per metric and size, ratios to the
anchors, PNG plots, and docs/BENCHMARKS.md (its numbers section; the prose
below the marker line is kept)."""

import collections
import datetime
import json
import os
import pathlib
import platform
import statistics
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

MARKER = "<!-- generated above, written by hand below -->"


def load(path):
    values = collections.defaultdict(list)
    by_run = {}
    units = {}
    commits = set()
    for line in open(path):
        if line.strip():
            r = json.loads(line)
            values[(r["metric"], r["size"])].append(r["value"])
            by_run[(r["metric"], r["size"], r["run"])] = r["value"]
            units[r["metric"]] = r["unit"]
            commits.add(r.get("commit", "unknown"))
    if len(commits) != 1:
        sys.exit(f"{path} mixes runs of several commits: {sorted(commits)}")
    medians = {k: statistics.median(v) for k, v in values.items()}
    return medians, {k: len(v) for k, v in values.items()}, units, by_run, commits.pop()


def machine():
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.processor())
    mem = next(int(l.split()[1]) for l in open("/proc/meminfo") if l.startswith("MemTotal")) / 2**20
    return f"{os.cpu_count()} cores ({cpu}), {mem:.0f} GiB RAM, Linux {platform.release()}"


def fmt(v):
    if v is None:
        return "–"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    return f"{v:.3g}"


def scale_section(path):
    """The mart at scale (scripts/bench-scale.sh), when its figures exist."""
    if not path.exists():
        return []
    med, _, _, _, commit = load(path)
    get = lambda m, s: med.get((m, s))  # noqa: E731
    sizes = sorted({s for (m, s) in med if m == "scale_e2e_p99_ms"})
    out = ["", f"The mart at scale (`scripts/bench-scale.sh`, commit `{commit}`): the three services running, "
               "the mart filled with generated official-layout exports (gzip); at each size the end-to-end latency "
               "at a fixed rate, the mart's memory and a full `lab8-mart rebuild --check`:", "",
           "| generated products loaded | " + " | ".join(f"{s:,}" for s in sizes) + " |",
           "|---|" + "---|" * len(sizes)]
    kept = {r["size"]: r.get("products") for r in map(json.loads, filter(str.strip, open(path))) if r["metric"] == "scale_e2e_p99_ms"}
    out.append("| valid products in the mart | " + " | ".join(f"{kept[s]:,}" if kept.get(s) is not None else "–" for s in sizes) + " |")
    rows = [("end to end p50 (ms)", "scale_e2e_p50_ms", 1), ("end to end p99 (ms)", "scale_e2e_p99_ms", 1),
            ("mart peak RSS (MiB)", "scale_mart_peak_rss_kb", 1024), ("mart RSS after the step (MiB)", "scale_mart_rss_kb", 1024),
            ("`rebuild --check` (s)", "scale_rebuild_seconds", 1), ("filling to this size (s)", "scale_fill_seconds", 1)]
    for label, metric, div in rows:
        out.append(f"| {label} | " + " | ".join(fmt((get(metric, s) or 0) / div) if get(metric, s) is not None else "–" for s in sizes) + " |")
    backfill = [(s, v) for (m, s), v in med.items() if m == "scale_backfill_products_per_s"]
    if backfill:
        s, v = backfill[0]
        out += ["", f"A new model (k + 1) re-scored the mart's {s:,} products at {fmt(v)} products/s "
                    "(from its start to the mart's switch)."]
    rates = [json.loads(l).get("rate") for l in open(path) if '"scale_e2e_p50_ms"' in l]
    if rates:
        out += ["", "Achieved push rates (records/s): " + ", ".join(fmt(r) for r in rates if r is not None) + "."]
    return out + [""]


def main():
    med, runs, units, by_run, commit = load(sys.argv[1])
    docs = pathlib.Path(sys.argv[2])
    sizes = sorted({s for (_, s) in med if s})
    get = lambda m, s: med.get((m, s))

    def ratio(a, b, s):
        """Median over runs of a / b, each run divided by its own anchor."""
        per_run = [by_run[(a, s, r)] / by_run[(b, s, r)] for (m, size, r) in by_run
                   if m == a and size == s and by_run.get((b, s, r))]
        return statistics.median(per_run) if per_run else None

    rows = [
        ("ingest: lab8-source load", "ingest_records_per_s", "records/s"),
        ("anchor: redis-benchmark XADD -P 64", "redis_xadd_per_s", "XADD/s"),
        ("mart: lab8-mart --once (clean + features, via Redis)", "mart_clean_rows_per_s", "rows/s"),
        ("cleaning from the file: lab8 (Rust + Polars)", "lab8_clean_rows_per_s", "rows/s"),
        ("anchor: same rules in PySpark local[2]", "pyspark_clean_rows_per_s", "rows/s"),
        ("clean rows found: lab8 (must equal PySpark's)", "lab8_clean_rows", "rows"),
        ("clean rows found: PySpark", "pyspark_clean_rows", "rows"),
        ("training: lab8 KMeans fit alone (linfa seeding), k = 4", "train_fit_seconds", "s"),
        ("anchor: scikit-learn KMeans fit alone, k = 4", "sklearn_fit_seconds", "s"),
        ("iterations of the best restart: lab8", "lab8_iterations", ""),
        ("iterations of the best restart: scikit-learn", "sklearn_iterations", ""),
        ("lab8-model train, whole command (scaling, fit, packing)", "train_seconds", "s"),
        ("agreement of assignments (ARI)", "kmeans_ari", ""),
        ("inertia lab8 / scikit-learn", None, ""),
        ("batch scoring: lab8-model serve --once", "score_rows_per_s", "rows/s"),
        ("mart: predictions stored + profiles", "mart_materialise_rows_per_s", "rows/s"),
        ("peak RSS: source load", "rss_source_load_kb", "MiB"),
        ("peak RSS: mart --once", "rss_mart_kb", "MiB"),
        ("peak RSS: model train", "rss_train_kb", "MiB"),
        ("peak RSS: model scoring", "rss_model_score_kb", "MiB"),
    ]
    out = ["# Benchmarks", "",
           f"Measured by `make bench` (`scripts/bench.sh`) at commit `{commit}` on {datetime.date.today().isoformat()}: {machine()}.",
           "Every figure is the median of the runs given in brackets; every ratio is the median over runs of the",
           "figure divided by its anchor measured in the same run on the same machine (`docs/bench-results.jsonl`).",
           "Cleaning: every row on both sides, both on 2 threads (Polars pool, Spark local[2]); the bench fails if",
           "the two find different numbers of clean rows. KMeans: the fit alone on both sides, same matrix, k,",
           "k-means++ init, 10 restarts, 300 iterations, and the same stopping rule (see `bench/sklearn_kmeans.py`).",
           "Ingest counts the records sent to the stream. Sizes: 16,014 is the real bundled sample (17,072 rows with",
           "duplicates); larger sets are the sample resampled with ±2 % Gaussian noise on each nutrient",
           "(`bench/gen_data.py`, seed 42), keeping its share of missing and bad values.", "",
           "| figure | " + " | ".join(f"{s:,} rows" for s in sizes) + " |",
           "|---|" + "---|" * len(sizes)]
    for label, metric, unit in rows:
        cells = []
        for s in sizes:
            if metric is None:
                v = ratio("lab8_inertia", "sklearn_inertia", s)
                cells.append(fmt(v))
                continue
            v = get(metric, s)
            if v is not None and metric.startswith("rss_"):
                v = v / 1024
            cells.append(f"{fmt(v)} {unit}".strip() + (f" [{runs[(metric, s)]}]" if (metric, s) in runs else ""))
        out.append(f"| {label} | " + " | ".join(cells) + " |")
    out += ["", "Ratios to the anchors (higher is better for lab8):", "",
            "| ratio | " + " | ".join(f"{s:,}" for s in sizes) + " |", "|---|" + "---|" * len(sizes)]
    for label, a, b, invert in [
        ("ingest / Redis XADD ceiling", "ingest_records_per_s", "redis_xadd_per_s", False),
        ("lab8 cleaning / PySpark cleaning", "lab8_clean_rows_per_s", "pyspark_clean_rows_per_s", False),
        ("scikit-learn fit time / lab8 fit time", "sklearn_fit_seconds", "train_fit_seconds", False),
    ]:
        out.append(f"| {label} | " + " | ".join(fmt(ratio(a, b, s)) + "×" for s in sizes) + " |")
    s0 = sizes[0]
    out += ["", "Serving (the real sample's model, loopback):", "",
            "| figure | value |", "|---|---|",
            f"| `/predict` p50 / p99 (wrk, 2 threads, 16 connections, 10 s) | {fmt(get('predict_p50_ms', s0))} ms / {fmt(get('predict_p99_ms', s0))} ms |",
            f"| `/predict` throughput | {fmt(get('predict_requests_per_s', s0))} req/s |",
            f"| `/predict` at a fixed 5,000 requests/s (open loop, 10 s): p50 / p99 / p999 | {fmt(get('predict_rate_p50_ms', s0))} / {fmt(get('predict_rate_p99_ms', s0))} / {fmt(get('predict_rate_p999_ms', s0))} ms (the generator's own lateness, p99: {fmt(get('predict_rate_lateness_p99_ms', s0))} ms) |",
            f"| end to end, pushed → cluster in the mart, at 2,000 records/s: p50 / p99 | {fmt(get('e2e_p50_ms', s0))} ms / {fmt(get('e2e_p99_ms', s0))} ms |",
            f"| peak RSS serving: source / mart / model | {fmt((get('rss_source_serving_kb', s0) or 0) / 1024)} / {fmt((get('rss_mart_serving_kb', s0) or 0) / 1024)} / {fmt((get('rss_model_serve_kb', s0) or 0) / 1024)} MiB |",
            f"| images: source / mart / model / redis | {fmt(get('image_source_mb', 0))} / {fmt(get('image_mart_mb', 0))} / {fmt(get('image_model_mb', 0))} / {fmt(get('image_redis_mb', 0))} MB |",
            "", "![throughput against data size](bench-throughput.png)", "",
            "![lab8 against PySpark and scikit-learn](bench-stack.png)", ""]

    out += scale_section(docs / "bench-scale.jsonl")

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for metric, label in [("ingest_records_per_s", "ingest (lab8-source)"), ("redis_xadd_per_s", "Redis XADD ceiling"),
                          ("mart_clean_rows_per_s", "mart via Redis"), ("lab8_clean_rows_per_s", "cleaning, lab8"),
                          ("pyspark_clean_rows_per_s", "cleaning, PySpark"), ("score_rows_per_s", "batch scoring")]:
        ys = [get(metric, s) for s in sizes]
        ax.plot(sizes, ys, marker="o", label=label)
    ax.set_xscale("log"); ax.set_yscale("log"); ax.set_xlabel("products"); ax.set_ylabel("rows per second (median)")
    ax.set_title("Throughput against data size"); ax.grid(True, which="both", alpha=0.3); ax.legend(fontsize=8)
    fig.tight_layout(); fig.savefig(docs / "bench-throughput.png", dpi=110); plt.close(fig)

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    width = 0.38
    xs = range(len(sizes))
    axes[0].bar([x - width / 2 for x in xs], [get("lab8_clean_rows_per_s", s) or 0 for s in sizes], width, label="lab8 (Rust, Polars)")
    axes[0].bar([x + width / 2 for x in xs], [get("pyspark_clean_rows_per_s", s) or 0 for s in sizes], width, label="PySpark local[2]")
    axes[0].set_yscale("log"); axes[0].set_title("Cleaning, rows/s"); axes[0].legend(fontsize=8)
    axes[1].bar([x - width / 2 for x in xs], [get("train_fit_seconds", s) or 0 for s in sizes], width, label="lab8 (linfa seeding)")
    axes[1].bar([x + width / 2 for x in xs], [get("sklearn_fit_seconds", s) or 0 for s in sizes], width, label="scikit-learn")
    axes[1].set_yscale("log"); axes[1].set_title("KMeans fit (k = 4, n_init 10), seconds"); axes[1].legend(fontsize=8)
    for ax in axes:
        ax.set_xticks(list(xs)); ax.set_xticklabels([f"{s:,}" for s in sizes]); ax.grid(True, axis="y", alpha=0.3)
    fig.tight_layout(); fig.savefig(docs / "bench-stack.png", dpi=110); plt.close(fig)

    target = docs / "BENCHMARKS.md"
    prose = ""
    if target.exists() and MARKER in target.read_text():
        prose = target.read_text().split(MARKER, 1)[1]
    target.write_text("\n".join(out) + "\n" + MARKER + prose)
    print("\n".join(out))


if __name__ == "__main__":
    main()
