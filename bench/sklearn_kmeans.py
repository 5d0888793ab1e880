#!/usr/bin/env python3
"""sklearn_kmeans.py PRODUCTS_JSONL MODEL_JSON LAB8_FIT_JSON: scikit-learn
KMeans on the matrix lab8's fit used (the mart's products ordered by code,
scaled by lab8's own scaler), with its settings: the same k, k-means++ init,
the same number of restarts (n_init), iteration cap and an equivalent
stopping rule. Times `fit` alone. Prints one JSON line with both sides' fit
time and inertia, scikit-learn's iterations, and the adjusted Rand index
between the two assignments.

Stopping rules: linfa stops a restart when the L2 norm of the centroid shift
(all centroids, as one vector) is below `tol`; scikit-learn when the sum of
squared centroid shifts is at most `tol_sk × mean(var(X))`. They are the same
rule when tol_sk = tol² / mean(var(X)), which is what is passed here."""

import json
import os
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
    lab8 = json.load(open(sys.argv[3]))
    mean, std = np.array(model["scaler"]["mean"]), np.array(model["scaler"]["std"])
    z = (x - mean) / std
    centroids = np.array(lab8["centroids"])
    ours = np.argmin(((z[:, None, :] - centroids[None, :, :]) ** 2).sum(axis=2), axis=1)
    tol_sk = lab8["tolerance"] ** 2 / float(np.mean(np.var(z, axis=0)))
    km = KMeans(n_clusters=lab8["k"], init="k-means++", n_init=lab8["n_runs"], max_iter=lab8["max_iterations"],
                tol=tol_sk, algorithm="lloyd", random_state=42)
    started = time.perf_counter()
    km.fit(z)
    seconds = time.perf_counter() - started
    print(json.dumps({
        "rows": len(rows), "k": lab8["k"], "tol_sklearn": tol_sk, "threads": int(os.environ.get("OMP_NUM_THREADS", 0)),
        "sklearn_seconds": seconds, "sklearn_inertia": float(km.inertia_), "sklearn_iterations": int(km.n_iter_),
        "lab8_seconds": lab8["fit_seconds"], "lab8_inertia": lab8["inertia"], "lab8_iterations": lab8["iterations"],
        "ari": float(adjusted_rand_score(ours, km.labels_)),
    }))


if __name__ == "__main__":
    main()
