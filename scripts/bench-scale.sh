#!/usr/bin/env bash
# The mart at scale (make bench-scale; make bench runs it too): the three
# services long-running on a private Redis, the mart filled step by step with
# generated exports in the official layout (gzip), and at each step
# (BENCH_SCALE_SIZES products, default "0 1000000 5000000"):
#   - the end-to-end p50/p99 at a fixed BENCH_SCALE_RATE records/s (default
#     5000, in POSTs of 50) through the source's HTTP API, until each record
#     has its cluster;
#   - the mart's peak and current RSS (its memory must not follow the table);
#   - the time of a full `lab8-mart rebuild --check`.
# Then a new model (k + 1) rolls: the backfill rate until the mart switches.
# Figures go to artifacts/bench/scale.jsonl (and, under make bench, into the
# run's results).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
# The write APIs' bearer token, as in the cluster: the services started here
# require it, the load generators (latency.py, wrk's post.lua) send it.
export API_TOKEN; API_TOKEN=$(head -c 32 /dev/urandom | base64 | tr -d '/+=\n')
cd "$LAB8_ROOT"

SIZES=${BENCH_SCALE_SIZES:-"0 1000000 5000000"}
RATE=${BENCH_SCALE_RATE:-5000}
OUT=$LAB8_ROOT/artifacts/bench; mkdir -p "$OUT"
RESULTS=${RESULTS:-$OUT/scale.jsonl}; [ -n "${BENCH_APPEND:-}" ] || : >"$RESULTS"
ensure_redis
build
RUN=$(mktemp -d "${TMPDIR:-/tmp}/lab8-bench-scale.XXXXXX")
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; stop_redis; rm -rf "$RUN"; }
trap cleanup EXIT
start_redis "$RUN/redis"
export RUST_LOG=warn REDIS_URL
RC=(redis-cli -p "$REDIS_PORT" --raw)
rc() { "${RC[@]}" "$@"; }
COMMIT=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
record() { # record METRIC SIZE VALUE UNIT [EXTRA_JSON]
  [ -n "$3" ] || die "no value measured for $1 at size $2"
  printf '{"metric":"%s","size":%s,"value":%s,"unit":"%s","run":1,"commit":"%s"%s}\n' "$1" "$2" "$3" "$4" "$COMMIT" "${5:+,$5}" | tee -a "$RESULTS"
}
field() { sed -n "s/.*\"$1\": *\\([0-9.e+-]*\\).*/\\1/p" | head -1; }
kib() { awk -v f="$2:" '$1 == f { print $2 }' "/proc/$1/status"; }
wait_ready() { for _ in $(seq 100); do curl -fs "http://127.0.0.1:$1/readyz" >/dev/null && return 0; sleep 0.1; done; die "port $1 not ready"; }
settled() { # every raw record accounted for, every product assigned, under the current model
  local raw; raw=$(rc XINFO STREAM "$LAB8_RAW_STREAM" 2>/dev/null | redis_field entries-added)
  [ -n "$raw" ] && [ "$(mart_accounted rc)" -eq "$raw" ] \
    && [ "$(rc HLEN "$LAB8_MART_ASSIGNMENTS")" -eq "$(rc HLEN "$LAB8_MART_PRODUCTS")" ]
}
wait_settled() { for _ in $(seq 3600); do settled && return 0; sleep 1; done; die "the mart did not settle"; }

"$LAB8_BIN/lab8-model" unpack "$LAB8_ARTIFACT" "$RUN/model-a" >/dev/null
sport=$(free_port); mport=$(free_port); oport=$(free_port)
LISTEN_ADDR=127.0.0.1:$sport "$LAB8_BIN/lab8-source" serve & PIDS+=($!)
LISTEN_ADDR=127.0.0.1:$mport BLOCK_MS=100 PROFILE_INTERVAL_SECS=2 "$LAB8_BIN/lab8-mart" & PIDS+=($!); mpid=$!
MODEL_DIR=$RUN/model-a LISTEN_ADDR=127.0.0.1:$oport BLOCK_MS=100 "$LAB8_BIN/lab8-model" serve & PIDS+=($!); opid=$!
for p in $sport $mport $oport; do wait_ready "$p"; done

loaded=0; step=0
for size in $SIZES; do
  if [ "$size" -gt "$loaded" ]; then
    step=$((step + 1))
    log "filling the mart to $size generated products (official layout, gzip)"
    python3 bench/gen_data.py $((size - loaded)) "$RUN/step.tsv.gz" --official --code-prefix "s$step-"
    /usr/bin/time -f '%e %M' -o "$RUN/time" "$LAB8_BIN/lab8-source" load --quiet --json "$RUN/step.tsv.gz" >"$RUN/load.json"
    read -r secs rss <"$RUN/time"
    record scale_source_load_rss_kb "$((size - loaded))" "$rss" KiB "\"seconds\":$secs"
    rm -f "$RUN/step.tsv.gz"
    started=$SECONDS; wait_settled
    record scale_fill_seconds "$size" $((SECONDS - started)) s
    loaded=$size
  fi
  products=$(rc HLEN "$LAB8_MART_PRODUCTS")
  log "$products products in the mart: end-to-end latency at $RATE records/s"
  LATENCY_BATCH=50 LAB8_MART_ASSIGNMENTS=$LAB8_MART_ASSIGNMENTS python3 bench/latency.py "http://127.0.0.1:$sport/products" "$REDIS_PORT" "$RATE" 15 >"$RUN/lat.json"
  record scale_e2e_p50_ms "$size" "$(field p50_ms <"$RUN/lat.json")" ms "\"products\":$products,\"rate\":$(field rate <"$RUN/lat.json")"
  record scale_e2e_p99_ms "$size" "$(field p99_ms <"$RUN/lat.json")" ms "\"products\":$products"
  wait_settled
  record scale_mart_peak_rss_kb "$size" "$(kib "$mpid" VmHWM)" KiB "\"products\":$products"
  record scale_mart_rss_kb "$size" "$(kib "$mpid" VmRSS)" KiB "\"products\":$products"
  /usr/bin/time -f '%e %M' -o "$RUN/time" "$LAB8_BIN/lab8-mart" rebuild --check >"$RUN/rebuild.txt"
  read -r secs rss <"$RUN/time"
  record scale_rebuild_seconds "$size" "$secs" s "\"products\":$products,\"rss_kb\":$rss"
done

if [ "$(rc HLEN "$LAB8_MART_PRODUCTS")" -lt 1000 ]; then log "too few products to train a second model: no backfill figure"; exit 0; fi
log "a new model rolls: backfill of $(rc HLEN "$LAB8_MART_PRODUCTS") products"
k=$(rc HLEN "$LAB8_MART_CLUSTERS")
"$LAB8_BIN/lab8-model" train --k $((k + 1)) --output "$RUN/model-b.zip" >/dev/null
"$LAB8_BIN/lab8-model" unpack "$RUN/model-b.zip" "$RUN/model-b" >/dev/null
new=$(sed -n 's/.*"model_version": "\([^"]*\)".*/\1/p' "$RUN/model-b/model.json")
kill "$opid"; wait "$opid" 2>/dev/null || true
products=$(rc HLEN "$LAB8_MART_PRODUCTS"); started=$(date +%s.%N)
MODEL_DIR=$RUN/model-b LISTEN_ADDR=127.0.0.1:$oport BLOCK_MS=100 BACKFILL_INTERVAL_SECS=1 "$LAB8_BIN/lab8-model" serve & PIDS+=($!)
until [ "$(rc GET "$LAB8_MART_CURRENT_MODEL")" = "$new" ]; do sleep 0.5; done
secs=$(awk -v s="$started" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }')
record scale_backfill_products_per_s "$products" "$(awk -v n="$products" -v s="$secs" 'BEGIN { printf "%.0f", n / s }')" "products/s" "\"seconds\":$secs"
record scale_mart_peak_rss_kb_after_switch "$products" "$(kib "$mpid" VmHWM)" KiB
log "wrote $RESULTS"
