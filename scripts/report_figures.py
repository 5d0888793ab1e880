#!/usr/bin/env python3
"""report_figures.py PRODUCTS_JSONL ASSIGNMENTS_JSONL MODEL_JSON OUTDIR: the
clustering figures of docs/REPORT.md from a mart filled with the bundled sample:
each cluster's mean nutrient profile (PNG), a 2-D projection of the products
coloured by cluster (PNG, principal components of the standardised features),
and the cluster × category contingency table (Markdown), plus cluster sizes."""

import collections
import json
import pathlib
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def rollout_plot(series_path, out):
    """The rolling update as VictoriaMetrics scraped it (make e2e stage 6):
    each stream's backlog, and the records ingested and processed per second."""
    doc = json.load(open(series_path))
    t0 = doc["start"]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 6), sharex=True)
    for s in doc["backlog"]:
        top.plot([t - t0 for t, _ in s["values"]], [float(v) for _, v in s["values"]], label=f'{s["stream"]} → {s["group"]}')
    top.set_ylabel("backlog (entries)"); top.legend(fontsize=8); top.grid(True, alpha=0.3)
    top.set_title("The three tags in one apply, under load: scraped by VictoriaMetrics every 5 s")
    for key, label in (("ingested_per_s", "ingested by the source"), ("processed_per_s", "processed by the mart")):
        bottom.plot([t - t0 for t, _ in doc[key]], [float(v) for _, v in doc[key]], label=label)
    bottom.set_ylabel("records / s (15 s rate)"); bottom.set_xlabel("seconds since the apply")
    for ax in (top, bottom):
        ax.axvline(0, color="grey", linestyle="--", linewidth=0.8)
    bottom.legend(fontsize=8); bottom.grid(True, alpha=0.3)
    fig.tight_layout(); fig.savefig(out / "rollout-metrics.png", dpi=110); plt.close(fig)


def main():
    products = {p["code"]: p for p in map(json.loads, filter(str.strip, open(sys.argv[1])))}
    assignments = {a["code"]: a["cluster"] for a in map(json.loads, filter(str.strip, open(sys.argv[2])))}
    model = json.load(open(sys.argv[3]))
    out = pathlib.Path(sys.argv[4])
    out.mkdir(parents=True, exist_ok=True)
    if (out / "e2e/vm-rollout.json").exists():
        rollout_plot(out / "e2e/vm-rollout.json", out)
    names = [f["name"] for f in model["features"]]
    k = model["k"]
    codes = sorted(c for c in products if c in assignments)
    x = np.array([products[c]["x"] for c in codes])
    labels = np.array([assignments[c] for c in codes])
    z = (x - np.array(model["scaler"]["mean"])) / np.array(model["scaler"]["std"])

    # Mean profile per cluster, standardised (features in different units side by side).
    fig, ax = plt.subplots(figsize=(9, 4.5))
    width = 0.8 / k
    for c in range(k):
        means = z[labels == c].mean(axis=0)
        ax.bar(np.arange(len(names)) + c * width - 0.4 + width / 2, means, width, label=f"cluster {c} ({(labels == c).sum():,})")
    ax.axhline(0, color="black", linewidth=0.6)
    ax.set_xticks(range(len(names))); ax.set_xticklabels(names, rotation=25, ha="right")
    ax.set_ylabel("mean, standardised (σ from the sample mean)")
    ax.set_title("Mean nutrient profile of each cluster"); ax.legend(fontsize=8); ax.grid(True, axis="y", alpha=0.3)
    fig.tight_layout(); fig.savefig(out / "cluster-profiles.png", dpi=110); plt.close(fig)

    # 2-D projection: the first two principal components.
    centred = z - z.mean(axis=0)
    _, singular, vt = np.linalg.svd(centred, full_matrices=False)
    xy = centred @ vt[:2].T
    explained = (singular[:2] ** 2).sum() / (singular ** 2).sum()
    fig, ax = plt.subplots(figsize=(7, 6))
    for c in range(k):
        pts = xy[labels == c]
        ax.scatter(pts[:, 0], pts[:, 1], s=3, alpha=0.5, label=f"cluster {c}")
    ax.set_xlabel("PC 1"); ax.set_ylabel("PC 2")
    ax.set_title(f"Products by cluster, first two principal components ({explained:.0%} of variance)")
    ax.legend(markerscale=4, fontsize=8); fig.tight_layout(); fig.savefig(out / "projection.png", dpi=110); plt.close(fig)

    # Contingency: cluster × category (the sample's category is its file name).
    table = collections.Counter()
    categories = collections.Counter()
    for code, c in zip(codes, labels):
        for cat in (products[code].get("categories") or "unknown").split(","):
            table[(int(c), cat.strip())] += 1
            categories[cat.strip()] += 1
    cats = [c for c, _ in categories.most_common()]
    lines = ["| cluster | size | " + " | ".join(cats) + " |", "|---|---|" + "---|" * len(cats)]
    for c in range(k):
        lines.append(f"| {c} | {(labels == c).sum():,} | " + " | ".join(f"{table[(c, cat)]:,}" for cat in cats) + " |")
    raw_means = ["| cluster | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for c in range(k):
        raw_means.append(f"| {c} | " + " | ".join(f"{v:.2f}" for v in x[labels == c].mean(axis=0)) + " |")
    (out / "contingency.md").write_text("\n".join(lines) + "\n")
    (out / "profiles.md").write_text("\n".join(raw_means) + "\n")
    print(json.dumps({"products": len(codes), "k": k, "sizes": [int((labels == c).sum()) for c in range(k)], "pca_explained": explained}))


if __name__ == "__main__":
    main()
