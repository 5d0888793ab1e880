#!/usr/bin/env bash
# The embedded pipeline on the bundled real OpenFoodFacts sample:
# private Redis → source load → mart → model train → model score → mart.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$LAB8_ROOT"

ensure_redis
build

RUN_DIR=$(mktemp -d "${TMPDIR:-/tmp}/lab8-demo.XXXXXX")
trap 'stop_redis; rm -rf "$RUN_DIR/redis"' EXIT
start_redis "$RUN_DIR/redis"
log "private redis-server on $REDIS_URL; logs in $RUN_DIR"
export RUST_LOG=${RUST_LOG:-info}

stage() { # stage NAME CMD...: runs a step, logs to RUN_DIR/NAME.log, prints its time
  local name=$1; shift
  local start=$SECONDS
  log "$name"
  "$@" 2>"$RUN_DIR/$name.log"
  printf '   (%s: %d s)\n' "$name" $((SECONDS - start))
}

stage source-load "$LAB8_BIN/lab8-source" load --category-from-file-name --quiet data/openfoodfacts/*.tsv
stage mart-clean "$LAB8_BIN/lab8-mart" --once --consumer-name demo
stage model-train "$LAB8_BIN/lab8-model" train --output "$LAB8_ARTIFACT"
# kustomize reads only files inside its tree: keep its copy equal to dist/.
cp "$LAB8_ARTIFACT" k8s/base/config/
stage model-unpack "$LAB8_BIN/lab8-model" unpack "$LAB8_ARTIFACT" "$RUN_DIR/model"
MODEL_DIR="$RUN_DIR/model" stage model-score "$LAB8_BIN/lab8-model" serve --once --consumer-name demo
stage mart-materialise "$LAB8_BIN/lab8-mart" --once --consumer-name demo

log "dead letters by reason (mart)"
redis-cli -p "$REDIS_PORT" --raw hgetall $LAB8_MART_REJECTIONS | paste - - | sort -t"$(printf "\t")" -k2,2nr | awk -F"\t" '{ printf "   %-36s %6d\n", $1, $2 }'
echo
echo "model artifact: $LAB8_ROOT/$LAB8_ARTIFACT"
echo "service logs:   $RUN_DIR/*.log"
