#!/usr/bin/env python3
"""pyspark_clean.py FILE...: the cleaning policy (crates/policy/src/lib.rs) in
PySpark local[2] mode (both cores, as the mart's Polars pool), on the same TSV
files, every row (no deduplication, as bench_clean does). Prints one JSON line:
rows, clean rows, threads, and the seconds of the job (read + clean + count),
excluding JVM start."""

import json
import sys
import time

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

FEATURES = [("energy_kj", "energy_100g"), ("fat_g", "fat_100g"), ("saturated_fat_g", "saturated-fat_100g"),
            ("carbohydrates_g", "carbohydrates_100g"), ("sugars_g", "sugars_100g"), ("fiber_g", "fiber_100g"),
            ("proteins_g", "proteins_100g"), ("salt_g", "salt_100g")]
EXTRA = ["energy-kcal_100g", "sodium_100g"]


def number(column):
    """Trimmed text; a lone comma as decimal separator; non-finite → null (flagged)."""
    text = F.trim(F.col(f"`{column}`").cast("string"))
    text = F.when(text.contains(",") & ~text.contains(".") & (F.size(F.split(text, ",")) == 2), F.regexp_replace(text, ",", ".")).otherwise(text)
    return text.cast("double")


def main():
    spark = SparkSession.builder.master("local[2]").appName("lab8-clean-baseline").config("spark.ui.enabled", "false") \
        .config("spark.sql.shuffle.partitions", "4").getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    started = time.perf_counter()
    df = spark.read.option("sep", "\t").option("header", True).option("quote", "").csv(sys.argv[1:])
    columns = set(df.columns)
    for _, off in FEATURES:
        if off not in columns:
            df = df.withColumn(off, F.lit(None).cast("string"))
    for off in EXTRA:
        if off not in columns:
            df = df.withColumn(off, F.lit(None).cast("string"))
    parsed = df.select("code", *[number(c).alias(c) for _, c in FEATURES], *[number(c).alias(c) for c in EXTRA],
                       *[(F.col(f"`{c}`").isNotNull() & (F.trim(F.col(f"`{c}`")) != "") & number(c).isNull()).alias(f"bad_{i}")
                         for i, c in enumerate([c for _, c in FEATURES] + EXTRA)])
    x = parsed.select(
        "code",
        F.coalesce(F.col("energy_100g"), F.col("`energy-kcal_100g`") * 4.184).alias("energy_kj"),
        F.col("fat_100g").alias("fat_g"), F.col("`saturated-fat_100g`").alias("saturated_fat_g"),
        F.col("carbohydrates_100g").alias("carbohydrates_g"), F.col("sugars_100g").alias("sugars_g"),
        F.coalesce(F.col("fiber_100g"), F.lit(0.0)).alias("fiber_g"), F.col("proteins_100g").alias("proteins_g"),
        F.coalesce(F.col("salt_100g"), F.col("sodium_100g") * 2.5).alias("salt_g"),
        F.col("salt_100g").alias("salt_raw"), F.col("sodium_100g").alias("sodium_raw"),
        F.greatest(*[F.col(f"bad_{i}").cast("int") for i in range(len(FEATURES) + len(EXTRA))]).alias("bad"))
    names = [n for n, _ in FEATURES]
    tol = F.greatest(F.col("salt_raw") * 0.1, F.lit(0.05))
    ok = (F.col("bad") == 0)
    ok &= ~(F.col("salt_raw").isNotNull() & F.col("sodium_raw").isNotNull() & (F.abs(F.col("salt_raw") - F.col("sodium_raw") * 2.5) > tol))
    for n in names:
        ok &= F.col(n).isNotNull() & (F.col(n) >= 0) & (F.col(n) <= (3800 if n == "energy_kj" else 100))
    ok &= (F.col("fat_g") + F.col("carbohydrates_g") + F.col("proteins_g") + F.col("fiber_g")) <= 103
    ok &= F.col("saturated_fat_g") <= F.col("fat_g") + 0.1
    ok &= F.col("sugars_g") <= F.col("carbohydrates_g") + 0.1
    counts = x.withColumn("ok", F.coalesce(ok, F.lit(False))).agg(
        F.count(F.lit(1)).alias("rows"), F.sum(F.col("ok").cast("long")).alias("clean")).collect()[0]
    rows, clean = counts["rows"], counts["clean"] or 0
    seconds = time.perf_counter() - started
    print(json.dumps({"rows": rows, "clean": clean, "threads": 2, "seconds": seconds, "rows_per_s": rows / seconds}))
    spark.stop()


if __name__ == "__main__":
    main()
