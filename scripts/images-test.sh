#!/usr/bin/env bash
# The images, run as containers on a private Docker network with the env the
# cluster uses: Redis (password from a mounted secret file, the cluster's
# redis.conf), source, mart, and model with MODEL_DIR pointing at the artifact
# unpacked by the model image itself. Pushes the bundled sample in through the
# source image, reconciles the mart, reads the mart's and the model's logs.
# LAB8_BUILD=registry (with another TAG) runs the same test on images built
# by the Dockerfiles as they are (see build-images.sh), and checks that the
# legacy builder stops with a message naming BuildKit.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$LAB8_ROOT"

scripts/build-images.sh
DOCKER=(docker)
VERSION=$LAB8_VERSION
TAG=${TAG:-$VERSION}
PREFIX=${IMAGE_PREFIX:-lab8}
RUN=lab8-it-$$
WORK=$(mktemp -d)

cleanup() {
  local status=$?
  if [ "$status" -ne 0 ]; then
    for c in redis source mart model; do
      echo "--- last log lines of $RUN-$c" >&2
      docker logs --tail 15 "$RUN-$c" >&2 2>&1 || true
    done
  fi
  docker rm -f "$RUN-redis" "$RUN-source" "$RUN-mart" "$RUN-model" >/dev/null 2>&1 || true
  docker network rm "$RUN" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT


# The cluster's secret layout: password and redis-auth.conf, readable by the
# redis (999) and service (65532) users.
chmod 755 "$WORK"
mkdir -p "$WORK/secret" "$WORK/model" "$WORK/redis"
head -c 18 /dev/urandom | base64 | tr -d '/+=\n' >"$WORK/secret/password"
printf 'requirepass %s\n' "$(cat "$WORK/secret/password")" >"$WORK/secret/redis-auth.conf"
chmod 644 "$WORK/secret/"*
# The write APIs' bearer token, laid out as the lab8-api-token Secret.
mkdir -p "$WORK/api"
head -c 32 /dev/urandom | base64 | tr -d '/+=\n' >"$WORK/api/token"
chmod 644 "$WORK/api/token"
AUTH="authorization: Bearer $(cat "$WORK/api/token")"
cp k8s/base/config/redis.conf "$WORK/redis/redis.conf"
chown 65532:65532 "$WORK/model"

docker network create --internal "$RUN" >/dev/null
common=(--network "$RUN" --read-only --tmpfs /tmp --cap-drop ALL --security-opt no-new-privileges
        -v "$WORK/secret:/run/secrets/lab8-redis:ro" -v "$WORK/api:/run/secrets/lab8-api:ro" --env-file k8s/base/config/config.env)

log "starting redis"
docker run -d --name "$RUN-redis" --network-alias lab8-redis "${common[@]}" --user 999:999 \
  --tmpfs /data:uid=999,gid=999 -v "$WORK/redis:/etc/redis:ro" "$PREFIX/redis:$TAG" >/dev/null
redis_cli() { docker exec "$RUN-redis" sh -c 'REDISCLI_AUTH="$(cat /run/secrets/lab8-redis/password)" redis-cli --raw "$@"' redis-cli "$@"; }
for _ in $(seq 50); do [ "$(redis_cli ping 2>/dev/null)" = PONG ] && break; sleep 0.2; done
require "redis answers with the password" test "$(redis_cli ping)" = PONG
check "redis refuses clients without it" sh -c "docker exec $RUN-redis redis-cli ping 2>&1 | grep -q NOAUTH"

log "starting source, mart and model in the cluster's order"
docker run -d --name "$RUN-source" --network-alias lab8-source "${common[@]}" \
  -e LISTEN_ADDR=0.0.0.0:8080 -e CONSUMER_NAME="$RUN-source" "$PREFIX/source:$TAG" serve >/dev/null
docker run --rm "${common[@]}" "$PREFIX/mart:$TAG" wait-ready --timeout-secs 60 http://lab8-source:8080/readyz >/dev/null 2>&1
docker run -d --name "$RUN-mart" --network-alias lab8-mart "${common[@]}" \
  -e LISTEN_ADDR=0.0.0.0:8081 -e CONSUMER_NAME="$RUN-mart" "$PREFIX/mart:$TAG" >/dev/null
# The init container's job, done by the model image itself.
docker run --rm "${common[@]}" -v "$LAB8_ROOT/dist:/model-zip:ro" -v "$WORK/model:/opt/model" \
  "$PREFIX/model:$TAG" unpack "/model-zip/${LAB8_ARTIFACT#dist/}" /opt/model
docker run --rm "${common[@]}" "$PREFIX/model:$TAG" wait-ready --timeout-secs 60 http://lab8-mart:8081/readyz >/dev/null 2>&1
docker run -d --name "$RUN-model" --network-alias lab8-model "${common[@]}" -v "$WORK/model:/opt/model:ro" \
  -e LISTEN_ADDR=0.0.0.0:8082 -e CONSUMER_NAME="$RUN-model" "$PREFIX/model:$TAG" serve >/dev/null

ip_of() { docker inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' "$1"; }
SOURCE_IP=$(ip_of "$RUN-source"); MODEL_IP=$(ip_of "$RUN-model")
for _ in $(seq 50); do curl -fs "http://$MODEL_IP:8082/readyz" >/dev/null && break; sleep 0.2; done

log "pushing the sample in through the source image, and three records over HTTP"
files=(); for f in data/openfoodfacts/*.tsv; do files+=("/data/$(basename "$f")"); done
docker run --rm "${common[@]}" -v "$LAB8_ROOT/data/openfoodfacts:/data:ro" "$PREFIX/source:$TAG" \
  load --quiet --category-from-file-name "${files[@]}" | tee "$WORK/load.txt"
http_body='[{"code":"it-0001","product_name":"Test bread","categories":"breads","energy_100g":1000,"fat_100g":3,"saturated-fat_100g":0.5,"carbohydrates_100g":45,"sugars_100g":3,"fiber_100g":7,"proteins_100g":9,"salt_100g":1.2},
 {"code":"it-0002","product_name":"Test cookie","categories":"cookies","energy-kcal_100g":480,"fat_100g":22,"saturated-fat_100g":10,"carbohydrates_100g":65,"sugars_100g":30,"proteins_100g":6,"sodium_100g":0.2},
 {"code":"it-0003","product_name":"No fat given","energy_100g":1000,"carbohydrates_100g":45,"sugars_100g":3,"proteins_100g":9,"salt_100g":1.2},
 {"product_name":"no code"}]'
curl -fs -X POST -H 'content-type: application/json' -H "$AUTH" --data "$http_body" "http://$SOURCE_IP:8080/products" | tee "$WORK/ingest.json"; echo
check "HTTP ingest: 3 sent, 1 rejected at the source" grep -q '"sent":3.*"rejected":\[{"location":"item 3","reason":"missing_code"}\]' "$WORK/ingest.json"

log "waiting for the mart to reconcile"
reconciled() {
  local raw products assigned accounted
  # entries-added, not XLEN: the mart trims acknowledged entries.
  raw=$(redis_cli XINFO STREAM $LAB8_RAW_STREAM | redis_field entries-added); products=$(redis_cli HLEN $LAB8_MART_PRODUCTS)
  assigned=$(redis_cli HLEN $LAB8_MART_ASSIGNMENTS); accounted=$(mart_accounted redis_cli)
  echo "raw=$raw products=$products assigned=$assigned accounted=$accounted"
  # The sample's 17,072 rows (a code in two category files is sent in both versions) and 3 HTTP records.
  [ "$raw" -eq 17075 ] && [ "$products" -eq "$assigned" ] && [ "$accounted" -eq "$raw" ]
}
for _ in $(seq 120); do reconciled >"$WORK/state" && break; sleep 1; done
cat "$WORK/state"
check "every raw record is in the mart with a cluster or a dead letter" reconciled
# The bundled sample gives 12,945 valid products (see crates/system-tests/tests/faults.rs), plus the 2 valid HTTP ones.
check "the mart holds the sample's 12,945 products plus 2" test "$(redis_cli HLEN $LAB8_MART_PRODUCTS)" -eq 12947
# The reason of the dead letter whose code is $1 (fields: stage, reason, code, …).
reason_of() { redis_cli XRANGE "$LAB8_DEAD_LETTER_STREAM" - + | awk -v code="$1" 'prev == "reason" { r = $0 } prev == "code" && $0 == code { print r } { prev = $0 }'; }
check "the record without fat (it-0003) is a dead letter with its reason" test "$(reason_of it-0003)" = missing_required:fat_g
sleep 6 # one profile refresh (PROFILE_INTERVAL_SECS=5)
clusters=$(redis_cli HVALS $LAB8_MART_CLUSTERS | sed -n 's/.*"count":\([0-9]*\).*/\1/p' | awk '{ s += $1 } END { print s + 0 }')
check "cluster profiles add up to the mart ($clusters)" test "$clusters" -eq 12947

predict=$(curl -fs -X POST -H 'content-type: application/json' -H "$AUTH" \
  --data '{"energy_kj":2100,"fat_g":25,"saturated_fat_g":12,"carbohydrates_g":60,"sugars_g":30,"fiber_g":2,"proteins_g":6,"salt_g":0.6}' \
  "http://$MODEL_IP:8082/predict")
echo "POST /predict → $predict"
check "/predict answers with a cluster" grep -q '"cluster":[0-9]' <<<"$predict"
check "/predict refuses malformed JSON with a 4xx" \
  sh -c "[ \"\$(curl -s -o /dev/null -w '%{http_code}' -X POST -H '$AUTH' --data '{nope' http://$MODEL_IP:8082/predict)\" = 400 ]"
check "the write APIs answer 401 without the bearer token" \
  sh -c "[ \"\$(curl -s -o /dev/null -w '%{http_code}' -X POST --data '{}' http://$SOURCE_IP:8080/products)\" = 401 ] && [ \"\$(curl -s -o /dev/null -w '%{http_code}' -X POST --data '{}' http://$MODEL_IP:8082/predict)\" = 401 ]"

for c in source mart model redis; do docker logs "$RUN-$c" >"$WORK/$c.log" 2>&1; done
mkdir -p artifacts/images-test && cp "$WORK"/{source,mart,model,redis}.log artifacts/images-test/
log_has() { grep -F "$2" "$1" | grep -F "\"$3\"" >/dev/null; } # log_has FILE MESSAGE FIELD: a JSON line with both
check "the mart's log reports cleaned batches with rejections by reason" log_has "$WORK/mart.log" "mart: raw batch cleaned" rejected_by_reason
check "the mart's log reports the clusters assigned" log_has "$WORK/mart.log" "mart: predictions stored" clusters_assigned
check "the model's log reports scored batches" log_has "$WORK/model.log" "model: feature batch scored" clusters_assigned
check "no log line of any service or of Redis shows the Redis password or the API token" \
  sh -c "test -s $WORK/redis.log && test -s $WORK/source.log && ! grep -qF -e \"\$(cat $WORK/secret/password)\" -e \"\$(cat $WORK/api/token)\" $WORK/source.log $WORK/mart.log $WORK/model.log $WORK/redis.log"

log "SIGTERM: the services drain and exit 0"
docker stop -t 30 "$RUN-mart" "$RUN-model" "$RUN-source" >/dev/null
for c in mart model source; do
  check "$c exited 0 after SIGTERM" test "$(docker inspect -f '{{.State.ExitCode}}' "$RUN-$c")" -eq 0
done
if [ "${LAB8_BUILD:-prebuilt}" = registry ]; then
  log "the legacy builder on the registry path"
  DOCKER_BUILDKIT=0 docker build -f Dockerfiles/build.Dockerfile . >"$WORK/legacy.txt" 2>&1 && legacy=built || legacy=stopped
  cat "$WORK/legacy.txt" | tail -n 2
  check "the legacy builder stops with a message naming BuildKit" \
    sh -c "[ $legacy = stopped ] && grep -q BuildKit $WORK/legacy.txt"
fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
