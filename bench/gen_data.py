#!/usr/bin/env python3
"""gen_data.py N OUT: N products made by resampling the bundled OpenFoodFacts
sample (rows drawn uniformly with a fixed seed), each nutrient multiplied by
(1 + e), e ~ Normal(0, 0.02), clipped at 0, with new unique codes. Keeps the
sample's layout (TSV, reduced columns) and its mix of missing and bad values."""

import csv
import glob
import pathlib
import random
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]


def main():
    n, out = int(sys.argv[1]), sys.argv[2]
    rows, header = [], None
    for path in sorted(glob.glob(str(ROOT / "data/openfoodfacts/*.tsv"))):
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
            header = next(reader)
            rows.extend(reader)
    nutrient = [i for i, h in enumerate(header) if h.endswith("_100g")]
    rng = random.Random(42)
    with open(out, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, delimiter="\t", quoting=csv.QUOTE_NONE, escapechar="\\", lineterminator="\n")
        w.writerow(header)
        for i in range(n):
            row = list(rows[rng.randrange(len(rows))])
            row[0] = f"g{i:09d}"
            for j in nutrient:
                v = row[j]
                if v:
                    try:
                        row[j] = f"{max(0.0, float(v) * (1 + rng.gauss(0, 0.02))):.4g}"
                    except ValueError:
                        pass  # keep unparsable text as it is: the mart must reject it
            w.writerow(row)


if __name__ == "__main__":
    main()
