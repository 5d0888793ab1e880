# Helpers of the tests on the cluster (scripts/e2e.sh, scripts/soak.sh):
# sourced after `k` (kubectl in namespace $NS) and $ARTIFACTS are set; every
# helper talks to namespace $NS.

collect_to() { # collect_to DIR: the namespace's pods, events and logs
  mkdir -p "$1/logs"
  k get pods,svc,pvc -o wide >"$1/get-pods-svc.txt" 2>&1 || true
  k get events --sort-by=.lastTimestamp >"$1/events.txt" 2>&1 || true
  for pod in $(k get pods -o name 2>/dev/null); do
    k logs "$pod" --all-containers --prefix >"$1/logs/${pod#pod/}.log" 2>&1 || true
  done
}
# fresh_namespace: no namespace, Redis volume or Redis data left from a run
# before; then the empty namespace.
fresh_namespace() {
  kc delete namespace "$NS" --ignore-not-found --wait=true --timeout=120s
  kc delete pv lab8-redis-data-0 lab8-redis-data-1 lab8-redis-data-2 --ignore-not-found --wait=true --timeout=60s
  local i
  for i in 0 1 2; do install -d -o 999 -g 999 -m 0750 "$CLUSTER_DIR/pv/redis-$i"; find "$CLUSTER_DIR/pv/redis-$i" -mindepth 1 -delete; done
  kc create namespace "$NS" >/dev/null
}
svc_ip() { k get svc "$1" -o jsonpath='{.spec.clusterIP}'; }
pod_ip() { k get pod "$1" -o jsonpath='{.status.podIP}' 2>/dev/null || true; }
# With Sentinels (the local overlay's redis-sentinel component): the pod they
# name the primary, the first of the three to answer; fails when none does.
named_primary_pod() {
  local i ip host password
  password=$(k get secret lab8-redis-users -o jsonpath='{.data.sentinel}' | base64 -d)
  for i in 0 1 2; do
    ip=$(pod_ip "lab8-redis-$i"); [ -n "$ip" ] || continue
    host=$(REDISCLI_AUTH=$password timeout 3 redis-cli -h "$ip" -p 26379 --raw SENTINEL GET-MASTER-ADDR-BY-NAME lab8 2>/dev/null | awk 'NR == 1' || true)
    case $host in lab8-redis-*) echo "${host%%.*}"; return 0 ;; esac
  done
  return 1
}
has_sentinels() { k get svc lab8-redis-headless -o jsonpath='{.spec.ports[*].name}' | grep -qw sentinel; }
# Where the assertions read and write: the primary's pod under Sentinel, else the Service.
redis_primary_ip() { if has_sentinels; then pod_ip "$(named_primary_pod)"; else svc_ip lab8-redis; fi; }
# connect: the Services' addresses and the Redis password of namespace $NS
# (every helper below talks to that namespace).
connect() {
  SOURCE_URL="http://$(svc_ip lab8-source 2>/dev/null || true):8080/products"   # none before step 2 of the bring-up
  PREDICT_URL="http://$(svc_ip lab8-model):8082/predict"
  export REDISCLI_AUTH; REDISCLI_AUTH=$(k get secret lab8-redis -o jsonpath='{.data.password}' | base64 -d)
  REDIS_HOST=$(redis_primary_ip)
  # The write APIs' bearer token (push.py reads LAB8_API_TOKEN).
  export LAB8_API_TOKEN; LAB8_API_TOKEN=$(k get secret lab8-api-token -o jsonpath='{.data.token}' | base64 -d)
}
PREDICT_BODY='{"energy_kj":2100,"fat_g":25,"saturated_fat_g":12,"carbohydrates_g":60,"sugars_g":30,"fiber_g":2,"proteins_g":6,"salt_g":0.6}'
predict() { # predict [CURL_ARGS...]: POST /predict with the token, prints the answer
  curl -fs -X POST -H 'content-type: application/json' -H "authorization: Bearer $LAB8_API_TOKEN" --data "$PREDICT_BODY" "$@" "$PREDICT_URL"
}
predict_status() { # predict_status HEADER...: the HTTP status of POST /predict with those headers only
  curl -s -o /dev/null -w '%{http_code}' -X POST -H 'content-type: application/json' "$@" --data "$PREDICT_BODY" "$PREDICT_URL"
}
R() { redis-cli -h "$REDIS_HOST" --raw "$@"; }   # assertions from the host, through the Service
# redis-cli inside the Redis pod as the manual test's ACL user, lab8-tester.
in_redis_pod() { k exec lab8-redis-0 -- sh -c 'REDISCLI_AUTH="$(cat /run/secrets/lab8-redis-users/lab8-tester)" redis-cli --user lab8-tester --raw "$@"' redis-cli "$@"; }
as_user() { # as_user USER CMD...: redis-cli from the host as that ACL user, its password read from the Secret
  REDISCLI_AUTH=$(k get secret lab8-redis-users -o "jsonpath={.data.$1}" | base64 -d) redis-cli -h "$REDIS_HOST" --user "$1" --raw "${@:2}"
}
# Every client connected from a service's pod is logged in as that service's
# ACL user (and there are such clients: each service's pod addresses are listed).
services_log_in_as_their_users() {
  local pods clients; pods=$(k get pods -l 'app.kubernetes.io/component in (source,mart,model)' --field-selector=status.phase=Running \
    -o jsonpath='{range .items[*]}{.status.podIP} {.metadata.labels.app\.kubernetes\.io/component}{"\n"}{end}')
  clients=$(R CLIENT LIST)
  awk -v pods="$pods" 'BEGIN { n = split(pods, lines, "\n"); for (i = 1; i <= n; i++) { split(lines[i], f, " "); if (f[1] != "") component[f[1]] = f[2] } }
    { ip = ""; user = ""
      for (i = 1; i <= NF; i++) { if ($i ~ /^addr=/) { ip = substr($i, 6); sub(/:[0-9]+$/, "", ip) } if ($i ~ /^user=/) user = substr($i, 6) }
      if (ip in component) { seen[component[ip]]++; if (user != "lab8-" component[ip]) bad++ } }
    END { exit !(bad == 0 && seen["source"] > 0 && seen["mart"] > 0 && seen["model"] > 0) }' <<<"$clients"
}
acl_log_empty() { [ -z "$(R ACL LOG)" ]; }
refused() { local out; out=$(as_user "$@" 2>&1 || true); [[ $out == NOPERM* ]]; } # refused USER CMD...: Redis answers NOPERM
raw_added() { R XINFO STREAM $LAB8_RAW_STREAM | redis_field entries-added; } # survives trimming
rejected_total() { R HVALS $LAB8_MART_REJECTIONS | awk '{ s += $1 } END { print s + 0 }'; }
# A stream's only group has everything acknowledged: nothing pending, and it has been
# delivered the stream's last entry (XINFO's lag is not trusted after an AOF replay).
group_done() {
  local groups; groups=$(R XINFO GROUPS "$1")
  [ "$(redis_field pending <<<"$groups")" = 0 ] \
    && [ "$(redis_field last-delivered-id <<<"$groups")" = "$(R XINFO STREAM "$1" | redis_field last-generated-id)" ]
}
reconciled() { # every raw record is accounted for once (a product, a replaced or ignored version, a dead letter); every product has a cluster; nothing in flight
  local raw products assigned accounted
  raw=$(raw_added); products=$(R HLEN $LAB8_MART_PRODUCTS); assigned=$(R HLEN $LAB8_MART_ASSIGNMENTS)
  accounted=$(mart_accounted R)
  echo "raw=$raw products=$products assigned=$assigned accounted=$accounted rejected=$(rejected_total)" >"$ARTIFACTS/state.txt"
  [ "$raw" -eq "${1:-$raw}" ] && [ "$products" -eq "$assigned" ] && [ "$accounted" -eq "$raw" ] \
    && group_done $LAB8_RAW_STREAM && group_done $LAB8_FEATURES_STREAM && group_done $LAB8_PREDICTIONS_STREAM
}
wait_reconciled() { # wait_reconciled EXPECTED_RAW SECONDS
  for _ in $(seq "${2:-180}"); do reconciled "$1" && { cat "$ARTIFACTS/state.txt"; return 0; }; sleep 1; done
  cat "$ARTIFACTS/state.txt"; return 1
}
profiles_exact() { # cluster profile counts add up to the mart: nothing counted twice
  local total; total=$(R HVALS $LAB8_MART_CLUSTERS | sed -n 's/.*"count":\([0-9]*\).*/\1/p' | awk '{ s += $1 } END { print s + 0 }')
  [ "$total" -eq "$(R HLEN $LAB8_MART_PRODUCTS)" ]
}
wait_profiles() { for _ in $(seq 30); do profiles_exact && return 0; sleep 1; done; return 1; }
dead_letter_entries() { # the `entry` field of every dead letter, one a line; fails when Redis does
  local letters; letters=$(R XRANGE "$LAB8_DEAD_LETTER_STREAM" - +) || return 1
  awk 'prev == "entry" { print } { prev = $0 }' <<<"$letters"
}
dead_letters_unique() { # no raw entry rejected twice (and there are dead letters to compare)
  local all; all=$(dead_letter_entries) || return 1
  [ -n "$all" ] && [ "$(sort <<<"$all" | uniq -d | wc -l)" -eq 0 ]
}
reason_of_entry() { # reason_of_entry ID: the reason of the dead letter of stream entry ID
  local letters; letters=$(R XRANGE "$LAB8_DEAD_LETTER_STREAM" - +) || return 1
  awk -v id="$1" 'prev == "reason" { r = $0 } prev == "entry" && $0 == id { print r } { prev = $0 }' <<<"$letters"
}
images_all_at() { # images_all_at TAG: every container of the Deployments running a service image runs TAG (and there are some)
  local images; images=$(k get deployments -o jsonpath='{..image}' | tr ' ' '\n' | grep -E '/(source|mart|model):') || return 1
  [ -n "$images" ] && [ -z "$(grep -v ":$1\$" <<<"$images")" ]
}
import_tag() { # import_tag TAG [SERVICE...]: the built images tagged TAG, loaded into the cluster's containerd
  local tag=$1 svc refs=(); shift
  [ $# -gt 0 ] || set -- source mart model
  for svc in "$@"; do docker tag "lab8/$svc:$LAB8_VERSION" "lab8/$svc:$tag"; refs+=("lab8/$svc:$tag"); done
  docker save "${refs[@]}" | ctr_k8s images import --no-unpack - >/dev/null
}
ready_in_order() { # ready_in_order TAG: the pods at TAG became Ready source → mart → model, each downstream after waiting
  k get pods -o json | python3 tests/e2e/ready_order.py "$1" | tee "$ARTIFACTS/ready-order-$1.txt"
}
# three_tags_under_load LABEL TAG COMMAND...: with ingest and /predict load
# running, COMMAND moves the three services to TAG in one step (one apply or
# one upgrade); then every service runs TAG, the new pods were Ready in the
# order source → mart → model, no request failed, no record was lost.
three_tags_under_load() {
  local label=$1 tag=$2 raw_before load_pid sent; shift 2
  import_tag "$tag"
  raw_before=$(raw_added)
  rm -f "$ARTIFACTS/stop"
  python3 tests/e2e/push.py load "$SOURCE_URL" "$PREDICT_URL" --stop-file "$ARTIFACTS/stop" --out "$ARTIFACTS/load-$label.json" --prefix "$label-" &
  load_pid=$!
  sleep 3
  applied_under_load_at=$(date +%s)
  "$@" 2>&1 | tee "$ARTIFACTS/$label.txt"
  for svc in source mart model; do k rollout status "deployment/lab8-$svc" --timeout=300s; done
  sleep 3; touch "$ARTIFACTS/stop"; wait "$load_pid"
  cat "$ARTIFACTS/load-$label.json"; echo
  check "$label: every service container now runs the new tag" images_all_at "$tag"
  check "$label: the new pods became Ready in the order source → mart → model" ready_in_order "$tag"
  check "$label: 0 failed requests during the rolling update" python3 -c "import json,sys; s=json.load(open('$ARTIFACTS/load-$label.json')); sys.exit(s['ingest_failed'] + s['predict_failed'] != 0 or s['ingest_ok'] == 0)"
  sent=$(python3 -c "import json; print(json.load(open('$ARTIFACTS/load-$label.json'))['records_sent'])")
  check "$label: 0 lost records: all $sent pushed during the update reconcile" wait_reconciled $((raw_before + sent)) 300
}
within() { # within SECONDS CMD...: CMD succeeds within SECONDS (tried every second)
  local secs=$1; shift
  for _ in $(seq "$secs"); do "$@" && return 0; sleep 1; done; return 1
}
# PromQL against the cluster's VictoriaMetrics (make cluster-up), from the host.
VM_URL=
vm_query() { curl -fs "$VM_URL/api/v1/query" --data-urlencode "query=$1" ${2:+--data-urlencode "time=$2"}; }
vm_values() { # vm_values PROMQL [TIME]: "label=value... value" a line per series
  vm_query "$@" | python3 -c 'import json, sys
for r in json.load(sys.stdin)["data"]["result"]:
    print(" ".join(f"{k}={v}" for k, v in sorted(r["metric"].items())), r["value"][1])'
}
log_has() { # log_has SELECTOR MESSAGE FIELD [SINCE]: some pod's log has a line with both
  # No grep -q in a pipeline: its early exit would SIGPIPE the writer and fail the pipeline (pipefail).
  k logs -l "$1" --all-containers --tail=-1 ${4:+--since=$4} 2>/dev/null | grep -F "$2" | grep -F "\"$3\"" >/dev/null
}
# rebuild_check_as_mart: `lab8-mart rebuild --check` against the primary, as
# the mart's ACL user: the profiles equal a rebuild from the tables.
rebuild_check_as_mart() {
  env REDIS_URL="redis://$REDIS_HOST:6379" REDIS_USERNAME=lab8-mart \
    REDIS_PASSWORD="$(k get secret lab8-redis-users -o 'jsonpath={.data.lab8-mart}' | base64 -d)" "$LAB8_BIN/lab8-mart" rebuild --check
}
