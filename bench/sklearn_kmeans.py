#!/usr/bin/env python3
"""sklearn_kmeans.py PRODUCTS_JSONL MODEL_JSON: scikit-learn KMeans with the
settings lab8-model used (k from the model, k-means++ init, n_init 10, 300
iterations, tolerance 1e-4, seed 42) on the same standardised matrix (the
mart's products, ordered by code, scaled by lab8's own scaler). Prints one JSON
line: sklearn's fit time and inertia, lab8's inertia, and the adjusted Rand
index between the two assignments.

Note: scikit-learn's tol is relative to the data's variance, linfa's is an
absolute centroid shift; on standardised data (variance 1 per feature) they
coincide up to that factor."""

import json
import sys
import time

import numpy as np
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score


def main():
    rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
    rows.sort(key=lambda r: r["code"])
    x = np.array([r["x"] for r in rows], dtype=float)
    model = json.load(open(sys.argv[2]))
    mean, std = np.array(model["scaler"]["mean"]), np.array(model["scaler"]["std"])
    z = (x - mean) / std
    centroids = np.array(model["centroids"])
    ours = np.argmin(((z[:, None, :] - centroids[None, :, :]) ** 2).sum(axis=2), axis=1)
    ours_inertia = float(((z - centroids[ours]) ** 2).sum())
    k = model["k"]
    started = time.perf_counter()
    km = KMeans(n_clusters=k, init="k-means++", n_init=10, max_iter=300, tol=1e-4, random_state=42).fit(z)
    seconds = time.perf_counter() - started
    print(json.dumps({
        "rows": len(rows), "k": k, "sklearn_seconds": seconds, "sklearn_inertia": float(km.inertia_),
        "lab8_inertia": ours_inertia, "ari": float(adjusted_rand_score(ours, km.labels_)),
    }))


if __name__ == "__main__":
    main()
