#!/usr/bin/env bash
# make bench: every figure of docs/BENCHMARKS.md, each against its anchor in
# the same run on this machine. Env: BENCH_SIZES (default "16014 1000000
# 5000000"; 16014 is the real sample, larger sets are resampled from it),
# BENCH_REPEATS (default 3; the largest size runs once), BENCH_SCALE (default
# 1; 0 skips scripts/bench-scale.sh).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
# The write APIs' bearer token, as in the cluster: the services started here
# require it, the load generators (latency.py, wrk's post.lua) send it.
export API_TOKEN; API_TOKEN=$(head -c 32 /dev/urandom | base64 | tr -d '/+=\n')
cd "$LAB8_ROOT"

SIZES=${BENCH_SIZES:-"16014 1000000 5000000"}
REPEATS=${BENCH_REPEATS:-3}
OUT=$LAB8_ROOT/artifacts/bench; mkdir -p "$OUT"
RESULTS=$OUT/results.jsonl; : >"$RESULTS"
BENCH_VENV=$HOME/.cache/lab8/bench-venv
PY=$BENCH_VENV/bin/python

ensure_redis
apt_install wrk time
command -v java >/dev/null || apt_install default-jre-headless   # PySpark runs on the JVM
build
if ! "$PY" -c 'import pyspark, sklearn, matplotlib' 2>/dev/null; then
  log "bench venv (pyspark, scikit-learn, matplotlib)"
  python3 -m venv "$BENCH_VENV"
  "$BENCH_VENV/bin/pip" install -q -r bench/requirements.txt
fi

RUN=$(mktemp -d "${TMPDIR:-/tmp}/lab8-bench.XXXXXX")
SERVICE_PIDS=()
cleanup() { for p in "${SERVICE_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; stop_redis; rm -rf "$RUN"; }
trap cleanup EXIT
# No persistence here: these figures are about lab8's code, not the disk.
start_redis "$RUN/redis"
export RUST_LOG=warn
RC=(redis-cli -p "$REDIS_PORT")

COMMIT=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
record() { # record METRIC SIZE VALUE UNIT RUN [EXTRA_JSON]: one figure of this run at COMMIT
  [ -n "$3" ] || die "no value measured for $1 at size $2 (run $5)"
  printf '{"metric":"%s","size":%s,"value":%s,"unit":"%s","run":%s,"commit":"%s"%s}\n' "$1" "$2" "$3" "$4" "$5" "$COMMIT" "${6:+,$6}" | tee -a "$RESULTS"
}
timed() { # timed OUTFILE CMD...: runs CMD, stdout to OUTFILE; prints "seconds max_rss_kb"
  local out=$1; shift
  /usr/bin/time -f '%e %M' -o "$RUN/time" "$@" >"$out"
  cat "$RUN/time"
}
field() { sed -n "s/.*\"$1\": *\\([0-9.e+-]*\\).*/\\1/p" | head -1; }

for size in $SIZES; do
  if [ "$size" = 16014 ]; then
    files=(data/openfoodfacts/*.tsv)
  else
    log "generating $size products"
    [ -s "$RUN/data-$size.tsv" ] || "$PY" bench/gen_data.py "$size" "$RUN/data-$size.tsv"
    files=("$RUN/data-$size.tsv")
  fi
  runs=$REPEATS; [ "$size" = "${SIZES##* }" ] && [ "$(wc -w <<<"$SIZES")" -gt 1 ] && runs=1
  for run in $(seq "$runs"); do
    log "size $size, run $run/$runs"
    "${RC[@]}" FLUSHALL >/dev/null
    read -r secs rss < <(timed "$RUN/load.json" "$LAB8_BIN/lab8-source" load --quiet --json "${files[@]}")
    # Records sent to the stream (what XADD is compared with), not rows read.
    sent_count=$(tail -1 "$RUN/load.json" | field sent)
    record ingest_records_per_s "$size" "$(awk -v n="$sent_count" -v s="$secs" 'BEGIN { print n / s }')" "records/s" "$run"
    record rss_source_load_kb "$size" "$rss" KiB "$run"
    # The anchor: redis-benchmark's pipelined XADD of the same payload size on the same Redis.
    payload_bytes=$("${RC[@]}" --raw XRANGE $LAB8_RAW_STREAM - + COUNT 200 | awk 'length($0) > 20 { s += length($0); n++ } END { printf "%d", s / n }')
    payload=$(head -c "$payload_bytes" </dev/zero | tr '\0' 'x')
    n_xadd=$(( size < 1000000 ? size * 10 : 1000000 ))
    xadd=$(redis-benchmark -p "$REDIS_PORT" -n "$n_xadd" -P 64 -q XADD bench:xadd '*' p "$payload" | tr '\r' '\n' | sed -n 's/.*: \([0-9.]*\) requests per second.*/\1/p' | tail -1)
    "${RC[@]}" DEL bench:xadd >/dev/null
    record redis_xadd_per_s "$size" "$xadd" "XADD/s" "$run" "\"payload_bytes\":$payload_bytes"

    raw=$("${RC[@]}" XLEN $LAB8_RAW_STREAM)
    read -r secs rss < <(timed "$RUN/mart.txt" "$LAB8_BIN/lab8-mart" --once --consumer-name bench)
    record mart_clean_rows_per_s "$size" "$(awk -v n="$raw" -v s="$secs" 'BEGIN { print n / s }')" "rows/s" "$run"
    record rss_mart_kb "$size" "$rss" KiB "$run"
    read -r secs rss < <(timed "$RUN/train.txt" "$LAB8_BIN/lab8-model" train --k 4 --output "$RUN/model.zip")
    record train_seconds "$size" "$secs" s "$run"
    record rss_train_kb "$size" "$rss" KiB "$run"
    "$LAB8_BIN/lab8-model" unpack "$RUN/model.zip" "$RUN/model" >/dev/null
    features=$("${RC[@]}" XLEN $LAB8_FEATURES_STREAM)
    read -r secs rss < <(MODEL_DIR=$RUN/model timed "$RUN/score.txt" "$LAB8_BIN/lab8-model" serve --once --consumer-name bench)
    record score_rows_per_s "$size" "$(awk -v n="$features" -v s="$secs" 'BEGIN { print n / s }')" "rows/s" "$run"
    record rss_model_score_kb "$size" "$rss" KiB "$run"
    read -r secs rss < <(timed "$RUN/mart2.txt" "$LAB8_BIN/lab8-mart" --once --consumer-name bench)
    record mart_materialise_rows_per_s "$size" "$(awk -v n="$features" -v s="$secs" 'BEGIN { print n / s }')" "rows/s" "$run"

    # Cleaning alone, from the file, every row on both sides (no dedup), both
    # on the two cores: lab8 (Rust, Polars pool of 2) against PySpark local[2].
    POLARS_MAX_THREADS=2 "$CARGO_TARGET_DIR/release/examples/bench_clean" "${files[@]}" >"$RUN/clean.json"
    record lab8_clean_rows_per_s "$size" "$(field total_rows_per_s <"$RUN/clean.json")" "rows/s" "$run"
    "$PY" bench/pyspark_clean.py "${files[@]}" 2>/dev/null | tail -1 >"$RUN/spark.json"
    record pyspark_clean_rows_per_s "$size" "$(field rows_per_s <"$RUN/spark.json")" "rows/s" "$run"
    lab8_clean=$(field clean <"$RUN/clean.json"); spark_clean=$(field clean <"$RUN/spark.json")
    record lab8_clean_rows "$size" "$lab8_clean" rows "$run" "\"of\":$(field rows <"$RUN/clean.json")"
    record pyspark_clean_rows "$size" "$spark_clean" rows "$run" "\"of\":$(field rows <"$RUN/spark.json")"
    [ "$lab8_clean" = "$spark_clean" ] || die "not the same work: lab8 finds $lab8_clean clean rows, PySpark $spark_clean (size $size)"

    # Training: the fit alone, linfa against scikit-learn, on the same matrix
    # with the same k, init, restarts, iteration cap and stopping rule.
    "${RC[@]}" --raw HVALS $LAB8_MART_PRODUCTS >"$RUN/products.jsonl"
    (cd "$RUN" && rm -rf m && mkdir m && "$LAB8_BIN/lab8-model" unpack model.zip m >/dev/null)
    "$CARGO_TARGET_DIR/release/examples/bench_kmeans" "$RUN/products.jsonl" "$RUN/m/model.json" >"$RUN/lab8-fit.json"
    OMP_NUM_THREADS=2 "$PY" bench/sklearn_kmeans.py "$RUN/products.jsonl" "$RUN/m/model.json" "$RUN/lab8-fit.json" >"$RUN/sk.json"
    record train_fit_seconds "$size" "$(field lab8_seconds <"$RUN/sk.json")" s "$run"
    record sklearn_fit_seconds "$size" "$(field sklearn_seconds <"$RUN/sk.json")" s "$run"
    record sklearn_iterations "$size" "$(field sklearn_iterations <"$RUN/sk.json")" "" "$run"
    record lab8_iterations "$size" "$(field lab8_iterations <"$RUN/sk.json")" "" "$run"
    record kmeans_ari "$size" "$(field ari <"$RUN/sk.json")" "ARI" "$run"
    record lab8_inertia "$size" "$(field lab8_inertia <"$RUN/sk.json")" "" "$run"
    record sklearn_inertia "$size" "$(field sklearn_inertia <"$RUN/sk.json")" "" "$run"
  done
done

log "/predict under wrk, and end-to-end latency, on the real sample's model"
# An empty Redis: the last size's mart would otherwise have the model
# re-score millions of products (its backfill) while it serves.
"${RC[@]}" FLUSHALL >/dev/null
size=${SIZES%% *}
port=$(free_port)
MODEL_DIR=$LAB8_ROOT/dist LISTEN_ADDR=127.0.0.1:$port "$LAB8_BIN/lab8-model" unpack "$LAB8_ARTIFACT" "$RUN/dist-model" >/dev/null
for run in $(seq "$REPEATS"); do
  MODEL_DIR=$RUN/dist-model LISTEN_ADDR=127.0.0.1:$port "$LAB8_BIN/lab8-model" serve --consumer-name wrk &
  pid=$!; SERVICE_PIDS+=("$pid")
  for _ in $(seq 50); do curl -fs "http://127.0.0.1:$port/readyz" >/dev/null && break; sleep 0.1; done
  wrk -t2 -c16 -d10s --latency -s bench/post.lua "http://127.0.0.1:$port/predict" >"$RUN/wrk.txt"
  to_ms() { awk '{ v = $1; if (v ~ /us$/) { sub(/us/, "", v); v /= 1000 } else if (v ~ /ms$/) { sub(/ms/, "", v) } else if (v ~ /s$/) { sub(/s/, "", v); v *= 1000 } print v }'; }
  record predict_p50_ms "$size" "$(awk '$1 == "50%" { print $2 }' "$RUN/wrk.txt" | to_ms)" ms "$run"
  record predict_p99_ms "$size" "$(awk '$1 == "99%" { print $2 }' "$RUN/wrk.txt" | to_ms)" ms "$run"
  record predict_requests_per_s "$size" "$(awk '/Requests\/sec/ { print $2 }' "$RUN/wrk.txt")" "req/s" "$run"
  # A fixed load (open loop, latency from each request's due time), what a
  # latency target is about: wrk above measures saturation.
  # The generator runs at a higher priority than the server: on 2 cores its
  # pacing thread would otherwise wait for CPU slices and count its own
  # lateness as the server's (it reports that lateness too).
  priority=(); [ "$(id -u)" = 0 ] && priority=(nice -n -10)
  "${priority[@]}" "$CARGO_TARGET_DIR/release/examples/bench_rate" "http://127.0.0.1:$port/predict" 5000 10 bench/predict.json >"$RUN/rate.json"
  for q in p50 p99 p999; do
    record "predict_rate_${q}_ms" "$size" "$(field "${q}_ms" <"$RUN/rate.json")" ms "$run" "\"rate\":5000"
  done
  record predict_rate_lateness_p99_ms "$size" "$(field send_lateness_p99_ms <"$RUN/rate.json")" ms "$run"
  record rss_model_serve_kb "$size" "$(awk '/VmHWM/ { print $2 }' "/proc/$pid/status")" KiB "$run"
  kill "$pid"; wait "$pid" 2>/dev/null || true
done

"${RC[@]}" FLUSHALL >/dev/null
sport=$(free_port); mport=$(free_port); oport=$(free_port)
LISTEN_ADDR=127.0.0.1:$sport "$LAB8_BIN/lab8-source" serve & SERVICE_PIDS+=($!); spid=$!
LISTEN_ADDR=127.0.0.1:$mport BLOCK_MS=100 PROFILE_INTERVAL_SECS=2 "$LAB8_BIN/lab8-mart" & SERVICE_PIDS+=($!); mpid=$!
MODEL_DIR=$RUN/dist-model LISTEN_ADDR=127.0.0.1:$oport BLOCK_MS=100 "$LAB8_BIN/lab8-model" serve & SERVICE_PIDS+=($!); opid=$!
for p in $sport $mport $oport; do for _ in $(seq 100); do curl -fs "http://127.0.0.1:$p/readyz" >/dev/null && break; sleep 0.1; done; done
for run in $(seq "$REPEATS"); do
  LAB8_MART_ASSIGNMENTS=$LAB8_MART_ASSIGNMENTS "$PY" bench/latency.py "http://127.0.0.1:$sport/products" "$REDIS_PORT" 2000 15 >"$RUN/lat.json"
  record e2e_p50_ms "$size" "$(field p50_ms <"$RUN/lat.json")" ms "$run" "\"rate\":$(field rate <"$RUN/lat.json")"
  record e2e_p99_ms "$size" "$(field p99_ms <"$RUN/lat.json")" ms "$run"
done
for name in source:$spid mart:$mpid model:$opid; do
  record "rss_${name%%:*}_serving_kb" "$size" "$(awk '/VmHWM/ { print $2 }' "/proc/${name##*:}/status")" KiB 1
done
scripts/build-images.sh >/dev/null   # the images of this commit, measured below
for image in source mart model redis; do
  bytes=$(docker image inspect --format '{{.Size}}' "lab8/$image:1.0.0") || die "no image lab8/$image:1.0.0"
  record "image_${image}_mb" 0 "$(awk -v b="$bytes" 'BEGIN { print b / 1e6 }')" MB 1
done

# The mart at scale, on its own private Redis (its figures in their own file;
# BENCH_SCALE=0 keeps the committed ones, whose commit BENCHMARKS.md names).
for p in "${SERVICE_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
stop_redis
if [ "${BENCH_SCALE:-1}" != 0 ]; then
  scripts/bench-scale.sh
  cp "$OUT/scale.jsonl" docs/bench-scale.jsonl
fi

# One run at one commit: its raw figures, its tables and plots, nothing older.
cp "$RESULTS" docs/bench-results.jsonl
rm -f docs/bench-results-after.jsonl
"$PY" bench/report.py docs/bench-results.jsonl docs >/dev/null
log "wrote docs/BENCHMARKS.md, docs/bench-*.png and docs/bench-results.jsonl (commit $COMMIT)"
