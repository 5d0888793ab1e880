#!/usr/bin/env python3
"""gen_data.py N OUT [--official] [--code-prefix P]: N products made by
resampling the bundled OpenFoodFacts sample (rows drawn uniformly with a fixed
seed), each nutrient multiplied by (1 + e), e ~ Normal(0, 0.02), clipped at 0,
with new unique codes. Keeps the sample's mix of missing and bad values.
Layout: the sample's (TSV, reduced columns); with --official, the official
export's (gzip'd TSV, `product_name`, `categories_tags` such as
`en:breads` from the file name, `nutriscore_grade`, `last_modified_t`) when
OUT ends in .gz."""

import csv
import glob
import gzip
import pathlib
import random
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]


def main():
    n, out = int(sys.argv[1]), sys.argv[2]
    official = "--official" in sys.argv
    prefix = sys.argv[sys.argv.index("--code-prefix") + 1] if "--code-prefix" in sys.argv else "g"
    rows, header = [], None
    for path in sorted(glob.glob(str(ROOT / "data/openfoodfacts/*.tsv"))):
        category = pathlib.Path(path).stem.removeprefix("products_only_")
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
            header = next(reader)
            rows.extend([*row, category] for row in reader)
    nutrient = [i for i, h in enumerate(header) if h.endswith("_100g")]
    rng = random.Random(42)
    out_header = list(header)
    if official:
        rename = {"name": "product_name", "nutriscore": "nutriscore_grade"}
        out_header = [rename.get(h, h) for h in header] + ["categories_tags", "last_modified_t"]
    opener = gzip.open if out.endswith(".gz") else open
    with opener(out, "wt", newline="", encoding="utf-8", **({"compresslevel": 1} if out.endswith(".gz") else {})) as f:
        w = csv.writer(f, delimiter="\t", quoting=csv.QUOTE_NONE, escapechar="\\", lineterminator="\n")
        w.writerow(out_header)
        for i in range(n):
            row = list(rows[rng.randrange(len(rows))])
            category = row.pop()
            row[0] = f"{prefix}{i:09d}"
            for j in nutrient:
                v = row[j]
                if v:
                    try:
                        row[j] = f"{max(0.0, float(v) * (1 + rng.gauss(0, 0.02))):.4g}"
                    except ValueError:
                        pass  # keep unparsable text as it is: the mart must reject it
            if official:
                row += [f"en:{category}", str(1_700_000_000 + i)]
            w.writerow(row)


if __name__ == "__main__":
    main()
