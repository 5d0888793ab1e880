#!/usr/bin/env bash
# make soak (not part of CI, about 40 minutes): the local overlay on the
# cluster of `make cluster-up`, under a steady load for SOAK_MINUTES (30) at
# SOAK_RATE records/s (2,000) from SOAK_WRITERS clients (2), cycling through
# SOAK_CODES codes (100,000; each pass a new version of every product, so
# Redis stays inside its memory limit). Every SOAK_KILL_EVERY seconds (60) a
# random pod of the source, the mart, the model or a Redis replica is
# force-deleted; at half time the Redis primary's pod instead (a Sentinel
# failover). kubectl top samples every pod every 15 s. Then: every
# acknowledged version (or a newer one) is in the mart, every raw record is
# accounted once, the profiles equal a rebuild; each service's memory slope
# and a plot (tests/e2e/soak_report.py) in $ARTIFACTS.
set -euo pipefail
source "$(dirname "$0")/cluster/env.sh"
cd "$LAB8_ROOT"

ARTIFACTS=${ARTIFACTS:-$LAB8_ROOT/artifacts/soak}
rm -rf "$ARTIFACTS"; mkdir -p "$ARTIFACTS"
NS=lab8
OVERLAY=k8s/overlays/local
MINUTES=${SOAK_MINUTES:-30}
RATE=${SOAK_RATE:-2000}
WRITERS=${SOAK_WRITERS:-2}
CODES=${SOAK_CODES:-100000}
KILL_EVERY=${SOAK_KILL_EVERY:-60}
BATCH=100
k() { kc -n "$NS" "$@"; }
sleep_until() { local left=$(($1 - $(date +%s))); [ "$left" -le 0 ] || sleep "$left"; }
source "$LAB8_ROOT/scripts/cluster/e2e-lib.sh"
finish() {
  local status=$?
  touch "$ARTIFACTS/stop"
  collect_to "$ARTIFACTS"
  [ "${KEEP_CLUSTER:-0}" = 1 ] || "$LAB8_ROOT/scripts/cluster/down.sh" >"$ARTIFACTS/down.txt" 2>&1 || true
  echo "$passed passed, $failed failed" | tee "$ARTIFACTS/result.txt"
  [ "$status" -eq 0 ] && [ "$failed" -eq 0 ]
}
trap finish EXIT

log "cluster up, the local overlay applied"
"$LAB8_ROOT/scripts/cluster/up.sh"
fresh_namespace
kc apply -k "$OVERLAY" >"$ARTIFACTS/apply.txt"
k wait --for=condition=complete job/lab8-secrets --timeout=180s
k rollout status statefulset/lab8-redis --timeout=300s
for svc in source mart model; do k rollout status "deployment/lab8-$svc" --timeout=300s; done
k wait --for=condition=Ready pods -l 'app.kubernetes.io/component!=secrets' --timeout=120s
connect

log "$MINUTES minutes at $RATE records/s from $WRITERS clients, a pod killed every $KILL_EVERY s"
period=$(python3 -c "print($BATCH * $WRITERS / $RATE)")
writer_pids=()
for w in $(seq "$WRITERS"); do
  python3 tests/e2e/push.py steady "$SOURCE_URL" --stop-file "$ARTIFACTS/stop" --out "$ARTIFACTS/load-$w.json" \
    --acked "$ARTIFACTS/acked-$w.txt" --last "$ARTIFACTS/last-$w.json" --prefix "soak-$w-" \
    --batch "$BATCH" --period "$period" --codes $((CODES / WRITERS)) &
  writer_pids+=($!)
done
# kubectl top, every 15 s: seconds, pod, millicores, MiB.
(
  while [ ! -e "$ARTIFACTS/stop" ]; do
    now=$(date +%s)
    kc top pods -n "$NS" --no-headers 2>/dev/null | awk -v t="$now" '{ sub(/m$/, "", $2); sub(/Mi$/, "", $3); print t, $1, $2, $3 }' >>"$ARTIFACTS/memory.txt" || true
    sleep 15
  done
) &
sampler_pid=$!
started=$(date +%s)
: >"$ARTIFACTS/kills.txt"
for minute in $(seq $((MINUTES * 60 / KILL_EVERY - 1))); do
  sleep_until $((started + minute * KILL_EVERY))
  if [ "$minute" -eq $((MINUTES * 60 / KILL_EVERY / 2)) ]; then
    victim=$(named_primary_pod || true) what="the Redis primary"
  else
    # Redis replicas only while the Sentinels name the primary (it is not one of them).
    primary=$(named_primary_pod || true)
    victim=$( { k get pods -l 'app.kubernetes.io/component in (source,mart,model)' --field-selector=status.phase=Running -o name
      [ -z "$primary" ] || k get pods -l app.kubernetes.io/component=redis -o name | grep -v "/$primary\$" || true; } | sed 's#^pod/##' | shuf -n 1) what="a random pod"
  fi
  k delete pod "$victim" --grace-period=0 --force >/dev/null 2>&1 || true
  echo "$(date +%s) $victim $what" | tee -a "$ARTIFACTS/kills.txt"
done
sleep_until $((started + MINUTES * 60))
touch "$ARTIFACTS/stop"
for pid in "${writer_pids[@]}"; do wait "$pid"; done   # each writer's status, not the last one's
wait "$sampler_pid" || true

log "what the mart holds"
REDIS_HOST=$(redis_primary_ip)
check "the mart reconciles: every raw record accounted once, nothing pending" wait_reconciled "$(raw_added)" 600
# Each code's product in the mart is the last version acknowledged for it, or newer
# (a request that failed may still have landed).
acked_versions_in_mart() {
  python3 - "$ARTIFACTS" "$WRITERS" "$REDIS_HOST" "$LAB8_MART_PRODUCTS" >"$ARTIFACTS/versions.txt" <<'PY'
import json, re, subprocess, sys
art, writers, host, table = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
last = {}
for w in range(1, writers + 1):
    last.update(json.load(open(f"{art}/last-{w}.json")))
codes = sorted(last)
missing = older = 0
for i in range(0, len(codes), 1000):
    chunk = codes[i:i + 1000]
    out = subprocess.run(["redis-cli", "-h", host, "--raw", "HMGET", table, *chunk], capture_output=True, text=True, check=True).stdout.split("\n")
    for code, row in zip(chunk, out):
        if not row:
            missing += 1
            continue
        version = int(re.search(r" v(\d+)$", json.loads(row)["name"]).group(1))
        older += version < last[code]
print(f"{len(codes)} codes acknowledged: {missing} missing from the mart, {older} at an older version than acknowledged")
sys.exit(missing + older != 0 or not codes)
PY
  local status=$?; cat "$ARTIFACTS/versions.txt"; return $status
}
check "every acknowledged version (or a newer one) is in the mart" acked_versions_in_mart
check "cluster profiles add up to the mart: nothing counted twice" wait_profiles
check "profiles equal a rebuild from the tables (lab8-mart rebuild --check)" rebuild_check_as_mart
check "the ${MINUTES}-minute report: memory slopes and the plot" \
  "$(plot_python)" tests/e2e/soak_report.py "$ARTIFACTS" "$WRITERS"
