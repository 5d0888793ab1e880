#!/usr/bin/env python3
"""latency.py SOURCE_URL REDIS_PORT RATE SECONDS: pushes products to the
source's HTTP API at RATE records/s (batches of LATENCY_BATCH, default 20) for SECONDS, and measures,
for each record, the time until the mart has its cluster (polling the mart's
assignments hash, named by LAB8_MART_ASSIGNMENTS from scripts/keys.sh, with
redis-cli). Prints p50/p99 in ms and the achieved rate."""

import json
import os
import subprocess
import sys
import threading
import time
import urllib.request

# The write API's bearer token (the bench's services get the same API_TOKEN).
HEADERS = {"content-type": "application/json",
           **({"authorization": f"Bearer {os.environ['API_TOKEN']}"} if os.environ.get("API_TOKEN") else {})}

# Records per POST (LATENCY_BATCH, default 20): larger batches let one
# Python thread hold higher rates.
BATCH = int(os.environ.get("LATENCY_BATCH", "20"))
BASE = {"product_name": "bench", "energy_100g": 1500, "fat_100g": 10, "saturated-fat_100g": 3, "carbohydrates_100g": 60,
        "sugars_100g": 20, "fiber_100g": 4, "proteins_100g": 8, "salt_100g": 0.8}


def main():
    url, port, rate, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
    sent_at, seen_at = {}, {}
    lock = threading.Lock()
    done = threading.Event()

    def poll():
        while not done.is_set() or len(seen_at) < len(sent_at):
            with lock:
                waiting = [c for c in sent_at if c not in seen_at][:2000]
            if waiting:
                out = subprocess.run(["redis-cli", "-p", port, "--raw", "HMGET", os.environ["LAB8_MART_ASSIGNMENTS"], *waiting],
                                     capture_output=True, text=True).stdout.split("\n")
                now = time.perf_counter()
                with lock:
                    for code, value in zip(waiting, out):
                        if value:
                            seen_at[code] = now
            if done.is_set() and time.perf_counter() - end > 60:
                break
            time.sleep(0.005)

    end = float("inf")
    poller = threading.Thread(target=poll)
    poller.start()
    started = time.perf_counter()
    i = 0
    while time.perf_counter() - started < seconds:
        batch = []
        for _ in range(BATCH):
            item = dict(BASE, code=f"lat{int(started)}-{i}")
            item["fat_100g"] = 5 + (i % 20)  # all valid: fat + carbs + proteins + fiber ≤ 96 g
            batch.append(item)
            i += 1
        request = urllib.request.Request(url, data=json.dumps(batch).encode(), headers=HEADERS)
        t = time.perf_counter()
        urllib.request.urlopen(request, timeout=10).read()
        with lock:
            for item in batch:
                sent_at[item["code"]] = t
        next_at = started + i / rate
        time.sleep(max(0.0, next_at - time.perf_counter()))
    end = time.perf_counter()
    done.set()
    poller.join()
    # Every record is valid: one missing from the mart would be a lost record.
    assert len(seen_at) == len(sent_at), f"{len(sent_at) - len(seen_at)} records never reached the mart"
    latencies = sorted((seen_at[c] - sent_at[c]) * 1000 for c in seen_at)
    pct = lambda p: latencies[min(len(latencies) - 1, int(p * len(latencies)))]
    print(json.dumps({"records": len(sent_at), "seen": len(seen_at), "rate": len(sent_at) / (end - started),
                      "p50_ms": pct(0.50), "p99_ms": pct(0.99), "max_ms": latencies[-1]}))


if __name__ == "__main__":
    main()
