#!/usr/bin/env python3
"""Pushes the bundled OpenFoodFacts sample to lab8-source's HTTP API, and
generates load (ingest + /predict) while the cluster changes under it.

  push.py sample SOURCE_URL [--prefix P] [--repeat N | --until F]
  push.py load SOURCE_URL PREDICT_URL --stop-file F --out F [--prefix P]
  push.py predict PREDICT_URL --stop-file F --out F [--threads N]
  push.py steady SOURCE_URL --stop-file F --out F --acked F [--prefix P] [--batch N --period S --codes N --last F]

The write APIs' bearer token comes from LAB8_API_TOKEN.
"""

import argparse
import concurrent.futures
import csv
import glob
import json
import os
import pathlib
import http.client
import time
import urllib.error
import urllib.parse
import urllib.request

ROOT = pathlib.Path(__file__).resolve().parents[2]
PREDICT_BODY = {"energy_kj": 2100, "fat_g": 25, "saturated_fat_g": 12, "carbohydrates_g": 60,
                "sugars_g": 30, "fiber_g": 2, "proteins_g": 6, "salt_g": 0.6}


def sample_rows():
    """Rows of the five TSV files in the export's flat layout, category from the file name."""
    for path in sorted(glob.glob(str(ROOT / "data/openfoodfacts/*.tsv"))):
        category = pathlib.Path(path).stem.removeprefix("products_only_")
        with open(path, newline="", encoding="utf-8") as f:
            for row in csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE):
                item = {k: v for k, v in row.items() if v}
                item["categories"] = category
                yield item


def headers():
    """JSON, and the write API's bearer token from LAB8_API_TOKEN when set."""
    token = os.environ.get("LAB8_API_TOKEN")
    return {"content-type": "application/json", **({"authorization": f"Bearer {token}"} if token else {})}


def post(url, body, timeout=10):
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers=headers())
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read())


def push_sample(url, prefix="", repeat=1, batch=500, until=None):
    """The sample, `repeat` times, or with `until` pass after pass until that file exists."""
    totals = {"received": 0, "sent": 0, "duplicates": 0, "rejected": 0}
    r = 0
    while (r < repeat) if until is None else not os.path.exists(until):
        items = []
        for row in sample_rows():
            row["code"] = f"{prefix}{r}-{row['code']}" if prefix else row["code"]
            items.append(row)
            if len(items) == batch:
                add(totals, post(url, items))
                items = []
        if items:
            add(totals, post(url, items))
        r += 1
    totals["passes"] = r
    return totals


def add(totals, answer):
    for key in ("received", "sent", "duplicates"):
        totals[key] += answer[key]
    totals["rejected"] += len(answer["rejected"])


def load(source_url, predict_url, stop_file, out, prefix):
    """Until stop_file exists: ingest 20 new products and call /predict, counting failures."""
    stats = {"ingest_ok": 0, "ingest_failed": 0, "records_sent": 0, "predict_ok": 0, "predict_failed": 0, "errors": []}
    rows = [r for _, r in zip(range(2000), sample_rows())]
    i = 0
    while not os.path.exists(stop_file):
        batch = []
        for _ in range(20):
            row = dict(rows[i % len(rows)])
            row["code"] = f"{prefix}{i}"
            batch.append(row)
            i += 1
        try:
            stats["records_sent"] += post(source_url, batch)["sent"]
            stats["ingest_ok"] += 1
        except (urllib.error.URLError, OSError, ValueError) as e:
            stats["ingest_failed"] += 1
            stats["errors"].append(f"ingest: {e}")
        try:
            assert "cluster" in post(predict_url, PREDICT_BODY)
            stats["predict_ok"] += 1
        except (urllib.error.URLError, OSError, ValueError, AssertionError) as e:
            stats["predict_failed"] += 1
            stats["errors"].append(f"predict: {e}")
        time.sleep(0.05)
    stats["errors"] = stats["errors"][:20]
    pathlib.Path(out).write_text(json.dumps(stats))


def steady(source_url, stop_file, out, acked_file, prefix, batch=20, period=0.05, codes=None, last_file=None):
    """Until stop_file exists: a batch of `batch` new valid products every
    `period` seconds, one request at a time (a failed one is not retried: its
    records are not acknowledged, whether Redis has them or not). The codes of
    every acknowledged batch go to acked_file; `out` gets the counts, each
    outage (a gap of more than a second between two acknowledged batches) and
    the records acknowledged per 10 s. With `codes`, the codes cycle through
    that many, each pass a new version (its number ends the product's name,
    and its last_modified_t grows), and last_file gets each code's last
    acknowledged version."""
    stats = {"ok": 0, "failed": 0, "acked": 0, "outages": [], "errors": [], "acked_per_10s": {}}
    i = 0
    last_ok = None
    last_version = {}
    with open(acked_file, "w") as acked:
        while not os.path.exists(stop_file):
            started = time.time()
            numbers = range(i, i + batch)
            i += batch
            if codes:
                versions = [(f"{prefix}{n % codes}", n // codes) for n in numbers]
            else:
                versions = [(f"{prefix}{n}", 0) for n in numbers]
            items = [{"code": code, "product_name": f"Steady bread {code} v{version}", "categories": "breads",
                      "energy_100g": 900 + int(code.rsplit("-", 1)[-1]) % 400, "fat_100g": 3, "saturated-fat_100g": 0.5,
                      "carbohydrates_100g": 45, "sugars_100g": 3, "fiber_100g": 7, "proteins_100g": 9, "salt_100g": 1.2}
                     for code, version in versions]
            if codes:
                # The export's timestamp, rising with each version: the mart orders
                # versions of a code by it (without one, by the order it processes
                # them, which a reclaimed entry can upset: docs/RELIABILITY.md).
                for item, (_, version) in zip(items, versions):
                    item["last_modified_t"] = 1_700_000_000 + version
            try:
                answer = post(source_url, items, timeout=5)
                if answer["rejected"] or answer["sent"] + answer["duplicates"] != batch:
                    raise ValueError(f"unexpected answer {answer}")
                now = time.time()
                if last_ok is not None and now - last_ok > 1.0:
                    stats["outages"].append({"from": round(last_ok, 3), "to": round(now, 3), "seconds": round(now - last_ok, 3)})
                last_ok = now
                stats["ok"] += 1
                stats["acked"] += batch
                bucket = str(int(now // 10 * 10))
                stats["acked_per_10s"][bucket] = stats["acked_per_10s"].get(bucket, 0) + batch
                last_version.update(versions)
                acked.write("\n".join(code for code, _ in versions) + "\n")
                acked.flush()
            except (urllib.error.URLError, OSError, ValueError, KeyError) as e:
                stats["failed"] += 1
                stats["errors"].append(f"{time.time():.3f} {e}")
            time.sleep(max(0.0, period - (time.time() - started)))
    stats["errors"] = stats["errors"][:50]
    stats["last_ok"] = last_ok
    pathlib.Path(out).write_text(json.dumps(stats))
    if last_file:
        pathlib.Path(last_file).write_text(json.dumps(last_version))


def predict_until(predict_url, stop_file, out, threads):
    """/predict from `threads` keep-alive connections as fast as answers come, until stop_file exists."""
    parsed = urllib.parse.urlsplit(predict_url)
    body = json.dumps(PREDICT_BODY).encode()

    def worker(_):
        ok = failed = sent = 0
        connection = None
        while not os.path.exists(stop_file):
            # A new connection every 100 requests: the Service balances
            # connections, so pods added by a scale-out get their share.
            if sent % 100 == 0:
                connection and connection.close()
                connection = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=10)
            sent += 1
            try:
                connection.request("POST", parsed.path, body=body, headers=headers())
                response = connection.getresponse()
                answered = response.status == 200 and b"cluster" in response.read()
                ok, failed = ok + answered, failed + (not answered)
            except (OSError, http.client.HTTPException):
                failed += 1
                sent = 0
        return ok, failed

    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        results = list(pool.map(worker, range(threads)))
    pathlib.Path(out).write_text(json.dumps({"predict_ok": sum(r[0] for r in results), "predict_failed": sum(r[1] for r in results)}))


def main():
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("sample")
    s.add_argument("url")
    s.add_argument("--prefix", default="")
    s.add_argument("--repeat", type=int, default=1)
    s.add_argument("--until", help="repeat until this file exists")
    l = sub.add_parser("load")
    l.add_argument("url")
    l.add_argument("predict_url")
    l.add_argument("--stop-file", required=True)
    l.add_argument("--out", required=True)
    l.add_argument("--prefix", default="load-")
    p = sub.add_parser("predict")
    p.add_argument("predict_url")
    p.add_argument("--stop-file", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--threads", type=int, default=4)
    st = sub.add_parser("steady")
    st.add_argument("url")
    st.add_argument("--stop-file", required=True)
    st.add_argument("--out", required=True)
    st.add_argument("--acked", required=True)
    st.add_argument("--prefix", default="steady-")
    st.add_argument("--batch", type=int, default=20)
    st.add_argument("--period", type=float, default=0.05, help="seconds between batches")
    st.add_argument("--codes", type=int, help="cycle through this many codes, a new version each pass")
    st.add_argument("--last", help="write each code's last acknowledged version here (with --codes)")
    args = parser.parse_args()
    if args.command == "sample":
        print(json.dumps(push_sample(args.url, args.prefix, args.repeat, until=args.until)))
    elif args.command == "steady":
        steady(args.url, args.stop_file, args.out, args.acked, args.prefix, args.batch, args.period, args.codes, args.last)
    elif args.command == "predict":
        predict_until(args.predict_url, args.stop_file, args.out, args.threads)
    else:
        load(args.url, args.predict_url, args.stop_file, args.out, args.prefix)


if __name__ == "__main__":
    main()
