#!/usr/bin/env bash
# make e2e: the assignment's test on a real cluster built here.
#  1 cluster up, images built and loaded
#  2 Helm, the original install command's shape: the staged bring-up (model
#    alone, + source, + mart, each a helm upgrade rolling what runs), then all
#    three tags in one upgrade under load: Ready in the order source → mart →
#    model, 0 failed requests, 0 lost records; uninstalled
#  3 kustomize: apply the overlay, wait for every pod;  6 three tags in one apply under load, in order;
#    kubectl top                                          backlog and throughput from VictoriaMetrics
#  4 push data (source API + redis-cli in the Redis     7 kill a mart and a model pod mid-batch
#    pod), read the pods' logs; VictoriaMetrics          8 autoscaling: the HPAs scale mart and model
#    scrapes them and counts what the mart processed       out under load and back in; sizing samples
#  5 POST /predict through the Service; the             9 roll a new model artifact: backfill, switch
#    NetworkPolicy matrix, measured                    10 the Redis primary's pod killed 5 times under
#                                                         a steady load (Sentinel failovers)
#  then artifacts, "N passed, N failed", tear down (KEEP_CLUSTER=1 keeps it)
set -euo pipefail
source "$(dirname "$0")/cluster/env.sh"
cd "$LAB8_ROOT"

ARTIFACTS=${ARTIFACTS:-$LAB8_ROOT/artifacts/e2e}
rm -rf "$ARTIFACTS"; mkdir -p "$ARTIFACTS/logs"
# The commit these captures describe (the report quotes them).
# Changes under docs/ (a report run replaces its own captures) do not count.
{ git rev-parse HEAD; git status --porcelain --untracked-files=no -- . ':!docs' | sed 's/^/uncommitted: /'; } >"$ARTIFACTS/commit.txt" 2>/dev/null || true
NS=lab8
OVERLAY=k8s/overlays/local
# 17,072 rows of 16,014 codes: a code listed in two category files differs by its category, a newer version by arrival.
SAMPLE_ROWS=17072
timings=()
stage_start=$SECONDS
stage() { # stage NAME: closes the previous stage's timer, opens the next
  [ -n "${stage_name:-}" ] && timings+=("$(printf '%-34s %5d s' "$stage_name" $((SECONDS - stage_start)))")
  stage_name=$1; stage_start=$SECONDS; log "$1"
}
k() { kc -n "$NS" "$@"; }

collect() {
  collect_to "$ARTIFACTS"
  cp -r "$CLUSTER_DIR/logs" "$ARTIFACTS/cluster-logs" 2>/dev/null || true
}
finish() {
  local status=$?
  stage "artifacts and teardown"
  collect
  [ "${KEEP_CLUSTER:-0}" = 1 ] || "$LAB8_ROOT/scripts/cluster/down.sh" >"$ARTIFACTS/down.txt" 2>&1 || true
  stage done
  printf '%s\n' "${timings[@]}" | tee "$ARTIFACTS/timings.txt"
  echo "$passed passed, $failed failed" | tee "$ARTIFACTS/result.txt"
  [ "$status" -eq 0 ] && [ "$failed" -eq 0 ]
}
trap finish EXIT

source "$LAB8_ROOT/scripts/cluster/e2e-lib.sh"

stage "1 cluster up, images built and loaded"
"$LAB8_ROOT/scripts/cluster/up.sh"
VM_URL="http://$(kc -n lab8-monitoring get svc victoria-metrics -o jsonpath='{.spec.clusterIP}'):8428"

stage "2 Helm: the staged bring-up, then three tags in one upgrade"
# The original install command's shape (helm upgrade --install lab8
# ./charts/lab8 --set <service>.image=…), in its own namespace, each step a
# values file shipped in the chart; this node's Redis volume is a static one.
ensure_helm
NS=lab8-helm
helm_lab8() { # helm_lab8 STAGE [--set …]: one step, as a user runs it
  local stage=$1; shift
  "$HELM" upgrade --install lab8 ./charts/lab8 -n "$NS" --create-namespace \
    -f "charts/lab8/values-stage-$stage.yaml" --set redis.storageClassName=lab8-local "$@" 2>&1 | grep -v 'found symbolic link'
}
wait_services() { # wait_services SERVICE...: their rollouts complete
  local svc; for svc in "$@"; do k rollout status "deployment/lab8-$svc" --timeout=300s; done
}
runs_tag() { # runs_tag SERVICE TAG: its Deployment runs TAG and every live pod of it is at TAG (it rolled)
  local images; images=$(k get pods -l "app.kubernetes.io/component=$1" \
    -o go-template='{{range .items}}{{if not .metadata.deletionTimestamp}}{{(index .spec.containers 0).image}}{{"\n"}}{{end}}{{end}}')
  [ "$(k get deployment "lab8-$1" -o jsonpath='{.spec.template.spec.containers[0].image}')" = "lab8/$1:$2" ] \
    && [ -n "$images" ] && [ -z "$(grep -v ":$2\$" <<<"$images")" ]
}
deployments() { k get deployments -o jsonpath='{range .items[*]}{.metadata.name}{" "}{end}'; }
kc delete namespace "$NS" --ignore-not-found --wait=true --timeout=120s
kc delete pv lab8-helm-redis-data-0 --ignore-not-found --wait=true --timeout=60s
install -d -o 999 -g 999 -m 0750 "$CLUSTER_DIR/pv/redis-helm-0"
find "$CLUSTER_DIR/pv/redis-helm-0" -mindepth 1 -delete
sed -e 's/name: lab8-redis-data-0/name: lab8-helm-redis-data-0/' -e "s/namespace: lab8\$/namespace: $NS/" \
  -e 's#/pv/redis-0#/pv/redis-helm-0#' k8s/overlays/local/pv.yaml | kc apply -f - >/dev/null
# The namespace first, with the restricted Pod Security Standard the chart's pods meet.
kc create namespace "$NS" >/dev/null
kc label namespace "$NS" pod-security.kubernetes.io/enforce=restricted >/dev/null

# Step 1: the lab-5 model alone.
import_tag "$LAB8_VERSION-lab5" model
helm_lab8 1-model --set model.image="lab8/model:$LAB8_VERSION-lab5" | tee "$ARTIFACTS/helm-step-1.txt"
k rollout status statefulset/lab8-redis --timeout=300s; wait_services model
connect
redis_pod_uid=$(k get pod lab8-redis-0 -o jsonpath='{.metadata.uid}')
check "step 1: only the model runs (and Redis)" test "$(deployments)" = "lab8-model "
check "step 1: the model did not wait for the mart, which is not deployed" \
  sh -c "$CLUSTER_BIN/kubectl -n $NS logs deploy/lab8-model -c wait-for-mart | grep -q 'lab8-mart is not deployed: no wait'"
answers_cluster() { predict | grep -q '"cluster":[0-9]'; }
check "step 1: the model alone answers /predict" answers_cluster
check "step 1: Helm printed the manual test (NOTES.txt)" grep -q "The manual test" "$ARTIFACTS/helm-step-1.txt"

# Step 2: the source joins; the model rolls to the step's tag.
import_tag "$LAB8_VERSION-step2" source model
helm_lab8 2-source --set source.image="lab8/source:$LAB8_VERSION-step2" --set model.image="lab8/model:$LAB8_VERSION-step2" >"$ARTIFACTS/helm-step-2.txt"
wait_services source model
connect
check "step 2: source and model run, no mart" test "$(deployments)" = "lab8-model lab8-source "
check "step 2: the running model rolled to the new tag" runs_tag model "$LAB8_VERSION-step2"
python3 tests/e2e/push.py sample "$SOURCE_URL" | tee "$ARTIFACTS/helm-push-sample.json"
queued_only() { [ "$(R XLEN "$LAB8_RAW_STREAM")" -eq "$SAMPLE_ROWS" ] && [ "$(R HLEN "$LAB8_MART_PRODUCTS")" -eq 0 ]; }
check "step 2: the sample waits in the raw stream, nothing in a mart yet" queued_only

# Step 3: the mart joins; source and model roll.
import_tag "$LAB8_VERSION-step3"
helm_lab8 3-mart --set source.image="lab8/source:$LAB8_VERSION-step3" --set mart.image="lab8/mart:$LAB8_VERSION-step3" \
  --set model.image="lab8/model:$LAB8_VERSION-step3" >"$ARTIFACTS/helm-step-3.txt"
wait_services source mart model
all_run_tag() { runs_tag source "$1" && runs_tag mart "$1" && runs_tag model "$1"; }
check "step 3: all three run, source and model rolled" all_run_tag "$LAB8_VERSION-step3"
check "step 3: the queued sample reached the mart, every product with a cluster" wait_reconciled "$SAMPLE_ROWS" 300
check "step 3: the mart holds the sample's 12,945 products" test "$(R HLEN "$LAB8_MART_PRODUCTS")" -eq 12945

# Step 4: the three tags in one helm upgrade.
three_tags_under_load helm-upgrade "$LAB8_VERSION-step4" helm_lab8 3-mart --set source.image="lab8/source:$LAB8_VERSION-step4" \
  --set mart.image="lab8/mart:$LAB8_VERSION-step4" --set model.image="lab8/model:$LAB8_VERSION-step4"
check "Redis ran through the four steps unrestarted (password kept by the chart)" \
  test "$(k get pod lab8-redis-0 -o jsonpath='{.metadata.uid} {.status.containerStatuses[0].restartCount}')" = "$redis_pod_uid 0"
"$HELM" -n "$NS" history lab8 >"$ARTIFACTS/helm-history.txt" 2>&1 || true
collect_to "$ARTIFACTS/helm"
"$HELM" uninstall lab8 -n "$NS" --wait --timeout 180s 2>&1 | grep -v 'found symbolic link' || true
kc delete namespace "$NS" --wait=true --timeout=120s
kc delete pv lab8-helm-redis-data-0 --ignore-not-found --wait=true --timeout=60s
NS=lab8

stage "3 kustomize: apply the overlay, wait for Ready"
# A clean slate when a kept cluster is reused: no namespace, volume or Redis data left.
fresh_namespace
# Every overlay as committed (nothing generated first), checked by the API
# server itself in the empty namespace (server-side dry run: admission,
# schemas, quota), then the one this node runs, applied as a user would.
for overlay in k8s/overlays/*/; do
  check "$(basename "$overlay") overlay: accepted by the API server as committed (server-side dry run)" \
    sh -c "$CLUSTER_BIN/kubectl apply -k $overlay --dry-run=server >/dev/null"
done
applied_at=$(date +%s)
kc apply -k "$OVERLAY" | tee "$ARTIFACTS/apply.txt"
# The Redis password is made in the cluster; every pod waits for it.
check "the secrets Job made Secrets lab8-redis and lab8-api-token in the cluster" k wait --for=condition=complete job/lab8-secrets --timeout=180s
k logs job/lab8-secrets >"$ARTIFACTS/secrets-job.txt"
secret_keys() { k get secret "$1" -o go-template='{{range $k, $v := .data}}{{$k}} {{end}}'; }
check "the Secrets hold a password and the Redis config line, a password per ACL user, and a token" \
  test "$(secret_keys lab8-redis)/$(secret_keys lab8-redis-users)/$(secret_keys lab8-api-token)" \
    = "password redis-auth.conf /lab8-mart lab8-model lab8-source lab8-tester sentinel /token "
k rollout status statefulset/lab8-redis --timeout=300s
for svc in source mart model; do k rollout status "deployment/lab8-$svc" --timeout=300s; done
# (The secrets Job's pod runs to completion: it is not a serving pod.)
check "every pod is Ready" k wait --for=condition=Ready pods -l 'app.kubernetes.io/component!=secrets' --timeout=120s
# metrics-server behind the aggregation layer: the resource metrics of every running pod.
top_covers_pods() {
  local running; running=$(k get pods --field-selector=status.phase=Running -o name | wc -l)
  kc top pods -n "$NS" --no-headers >"$ARTIFACTS/top-after-apply.txt" 2>/dev/null \
    && [ "$running" -gt 0 ] && [ "$(wc -l <"$ARTIFACTS/top-after-apply.txt")" -ge "$running" ]
}
check "kubectl top pods shows every running lab8 pod (metrics-server)" within 120 top_covers_pods
# Captured for docs/REPORT.md.
k get pods,svc -o wide >"$ARTIFACTS/get-after-apply.txt"
k get configmaps,secrets >"$ARTIFACTS/config-objects.txt"
k describe resourcequota lab8-quota >"$ARTIFACTS/quota.txt"
k describe limitrange lab8-limits >"$ARTIFACTS/limitrange.txt"
model_pod=$(k get pods -l app.kubernetes.io/component=model -o name | awk 'NR == 1')
k logs "$model_pod" -c unpack-model >"$ARTIFACTS/model-init-unpack.txt"
k logs "$model_pod" -c wait-for-mart >"$ARTIFACTS/model-init-wait.txt"
k get "$model_pod" -o jsonpath='{range .spec.containers[0].env[*]}{.name}={.value}{.valueFrom.fieldRef.fieldPath}{"\n"}{end}' >"$ARTIFACTS/model-env.txt"
echo "MODEL_DIR=$(k get "$(k get configmaps -o name | grep lab8-config)" -o jsonpath='{.data.MODEL_DIR}')   (envFrom the lab8-config ConfigMap)" >>"$ARTIFACTS/model-env.txt"
connect

stage "4 push data, read the mart's and model's logs"
echo "pushing the sample through $SOURCE_URL"
python3 tests/e2e/push.py sample "$SOURCE_URL" | tee "$ARTIFACTS/push-sample.json"
check "the source accepted the sample's 17,072 rows" grep -q "\"sent\": $SAMPLE_ROWS" "$ARTIFACTS/push-sample.json"
# The assignment's manual test: records written with redis-cli inside the Redis pod.
in_redis_pod XADD $LAB8_RAW_STREAM '*' "$LAB8_PAYLOAD_FIELD" '{"code":"cli-1","name":"CLI bread","categories":"breads","nutrients":{"energy_100g":"1000","fat_100g":"3","saturated-fat_100g":"0.5","carbohydrates_100g":"45","sugars_100g":"3","fiber_100g":"7","proteins_100g":"9","salt_100g":"1.2"}}' >/dev/null
in_redis_pod XADD $LAB8_RAW_STREAM '*' "$LAB8_PAYLOAD_FIELD" '{"code":"cli-2","name":"CLI jam","nutrients":{"energy_100g":"1050","fat_100g":"0.1","saturated-fat_100g":"0","carbohydrates_100g":"60","sugars_100g":"58","proteins_100g":"0.4","salt_100g":"0.02"}}' >/dev/null
malformed_id=$(in_redis_pod XADD $LAB8_RAW_STREAM '*' "$LAB8_PAYLOAD_FIELD" 'this is not JSON')
out_of_range_id=$(in_redis_pod XADD $LAB8_RAW_STREAM '*' "$LAB8_PAYLOAD_FIELD" '{"code":"cli-4","name":"CLI absurd","nutrients":{"energy_100g":"1000","fat_100g":"250","saturated-fat_100g":"0.5","carbohydrates_100g":"45","sugars_100g":"3","fiber_100g":"7","proteins_100g":"9","salt_100g":"1.2"}}')
echo "redis-cli entries: malformed $malformed_id, out of range $out_of_range_id"
check "every record reconciles: in the mart with a cluster, or a dead letter" wait_reconciled $((SAMPLE_ROWS + 4)) 300
cp "$ARTIFACTS/state.txt" "$ARTIFACTS/state-after-push.txt"
check "the redis-cli records have clusters" sh -c "[ \"\$(redis-cli -h $REDIS_HOST HEXISTS $LAB8_MART_ASSIGNMENTS cli-1)\" = 1 ] && [ \"\$(redis-cli -h $REDIS_HOST HEXISTS $LAB8_MART_ASSIGNMENTS cli-2)\" = 1 ]"
check "the malformed redis-cli record ($malformed_id) is a dead letter: malformed_json" test "$(reason_of_entry "$malformed_id")" = malformed_json
check "the fat_100g=250 redis-cli record ($out_of_range_id) is a dead letter: out_of_range:fat_g" test "$(reason_of_entry "$out_of_range_id")" = out_of_range:fat_g
check "the mart holds 12,945 sample products + 2" test "$(R HLEN $LAB8_MART_PRODUCTS)" -eq 12947
check "the mart pod's log reports batches and rejections by reason" log_has app.kubernetes.io/component=mart "mart: raw batch cleaned" rejected_by_reason
check "the mart pod's log reports the clusters assigned" log_has app.kubernetes.io/component=mart "mart: predictions stored" clusters_assigned
check "the model pod's log reports scored batches" log_has app.kubernetes.io/component=model "model: feature batch scored" clusters_assigned
check "cluster profiles add up to the mart" wait_profiles
# The mart's read API through its Service: the same clusters, the same count.
MART_URL="http://$(svc_ip lab8-mart):8081"
api_sizes_match() {
  curl -fs "$MART_URL/api/v1/clusters" >"$ARTIFACTS/api-clusters.json" || return 1
  [ "$(python3 -c 'import json, sys; print(sum(c["size"] for c in json.load(open(sys.argv[1]))["clusters"]))' "$ARTIFACTS/api-clusters.json")" \
    -eq "$(R HLEN $LAB8_MART_PRODUCTS)" ]
}
check "the mart's read API shows clusters adding up to the mart" api_sizes_match
check "the mart's page is served" sh -c "curl -fs $MART_URL/ | grep -q 'lab8 — the data mart'"
operator_metrics() { # the mart's /metrics through its Service: backlogs by group, commit latency, the current model
  curl -fs "$MART_URL/metrics" >"$ARTIFACTS/mart-metrics.txt" || return 1
  grep -q "^lab8_stream_backlog{stream=\"$LAB8_RAW_STREAM\",group=\"$LAB8_MART_GROUP\"} " "$ARTIFACTS/mart-metrics.txt" \
    && grep -q "^lab8_stream_pending{stream=\"$LAB8_FEATURES_STREAM\",group=\"$LAB8_MODEL_GROUP\"} " "$ARTIFACTS/mart-metrics.txt" \
    && grep -q "^lab8_commit_seconds_count{stream=\"$LAB8_RAW_STREAM\"} [1-9]" "$ARTIFACTS/mart-metrics.txt" \
    && grep -q "^lab8_mart_current_model{model_version=\"$(R GET "$LAB8_MART_CURRENT_MODEL")\"} 1" "$ARTIFACTS/mart-metrics.txt"
}
check "the mart's /metrics shows backlogs by group, commit latency and the current model" operator_metrics
# Scraped: VictoriaMetrics finds the pods by their annotations, through the NetworkPolicies.
targets_up() {
  vm_values "count by (component) (up{namespace=\"$NS\"} == 1)" >"$ARTIFACTS/vm-targets-up.txt" || return 1
  [ "$(cut -d' ' -f1 "$ARTIFACTS/vm-targets-up.txt" | sort | tr '\n' ' ')" = "component=mart component=model component=source " ] \
    && [ -z "$(vm_values "up{namespace=\"$NS\"} == 0")" ]
}
check "VictoriaMetrics scrapes the source, the mart and the model (every target up)" within 60 targets_up
# Every raw record the mart handled (accepted, ignored, rejected), summed over
# the last scraped values of its pods since the apply, equals what the raw
# stream received.
scraped_processed_matches() {
  local since=$(($(date +%s) - applied_at))s scraped
  scraped=$(vm_values "sum(last_over_time(lab8_mart_raw_records_total{namespace=\"$NS\"}[$since])) + (sum(last_over_time(lab8_mart_rejected_total{namespace=\"$NS\"}[$since])) or vector(0))" | awk '{ print $NF }')
  echo "VictoriaMetrics: $scraped processed; raw stream: $(raw_added) added" >"$ARTIFACTS/vm-processed.txt"
  [ "$scraped" = "$(raw_added)" ]
}
check "VictoriaMetrics counts the records the mart processed: as many as the raw stream received" within 60 scraped_processed_matches
cat "$ARTIFACTS/vm-processed.txt"
k logs -l app.kubernetes.io/component=mart --tail=5 >"$ARTIFACTS/mart-log-after-push.txt" 2>&1 || true
k logs -l app.kubernetes.io/component=model --tail=5 >"$ARTIFACTS/model-log-after-push.txt" 2>&1 || true

# The manual test of k8s/README.md, its `kubectl -n lab8 exec` commands run as written.
readme_commands() {
  python3 - "$LAB8_ROOT/k8s/README.md" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
block = text.split("## The manual test", 1)[1].split("```sh", 1)[1].split("```", 1)[0]
for command in re.sub(r"\\\n\s*", " ", block).splitlines():
    if command.startswith("kubectl -n lab8 exec"):
        print(command)
PY
}
mapfile -t manual < <(readme_commands)
require "k8s/README.md has the two redis-cli commands of the manual test" test "${#manual[@]}" -eq 2
PATH="$CLUSTER_BIN:$PATH" bash -c "${manual[0]}" | tee "$ARTIFACTS/readme-xadd.txt"
check "the README's XADD (demo-2) reconciles" wait_reconciled $((SAMPLE_ROWS + 5)) 120
PATH="$CLUSTER_BIN:$PATH" bash -c "${manual[1]}" | tee "$ARTIFACTS/readme-mart.txt"
check "the README's last command shows demo-2's cluster and the rejections" \
  sh -c "grep -c '\"cluster\":' $ARTIFACTS/readme-mart.txt | grep -qx 1 && grep -q '^missing_required:' $ARTIFACTS/readme-mart.txt"

# Least privilege on the real cluster: each service as its own ACL user, and
# no command refused all along; then each user refused outside its rights.
check "source, mart and model are connected to Redis as lab8-source, lab8-mart, lab8-model" services_log_in_as_their_users
check "Redis refused no command of the services or the manual test (ACL LOG empty)" acl_log_empty
check "lab8-model may not write the raw stream" refused lab8-model XADD "$LAB8_RAW_STREAM" '*' p x
check "lab8-source may not read the mart's tables" refused lab8-source HGETALL "$LAB8_MART_ASSIGNMENTS"
check "lab8-tester may not write the mart" refused lab8-tester HSET "$LAB8_MART_ASSIGNMENTS" acl-probe 1
check "the three refusals are in the ACL LOG, by those users" \
  test "$(R ACL LOG | awk 'prev == "username" { print } { prev = $0 }' | sort | tr '\n' ' ')" = "lab8-model lab8-source lab8-tester "
R ACL LOG RESET >/dev/null

stage "5 POST /predict through the Service"
answer=$(predict)
echo "$answer" | tee "$ARTIFACTS/predict.json"
check "/predict answers with a cluster" grep -q '"cluster":[0-9]' <<<"$answer"
# The bearer token through the Service: none, a wrong one, a truncated one.
check "/predict answers 401 without the token, with a wrong or a truncated one" \
  test "$(predict_status) $(predict_status -H 'authorization: Bearer wrong-token-0123456789') $(predict_status -H "authorization: Bearer ${LAB8_API_TOKEN%?}")" = "401 401 401"

stage "5b the NetworkPolicies, enforced: the matrix, measured"
# kube-router enforces them. Probe pods (tests/e2e/probe_pods.sh) open TCP
# connections with bash's /dev/tcp to Service IPs (no DNS in the way) and
# time them; a blocked one must fail within the 5 s bound.
tests/e2e/probe_pods.sh "lab8/kubectl:$LAB8_VERSION" | kc apply -f - >/dev/null
kc -n lab8-probe wait --for=condition=Ready pod/plain pod/client --timeout=120s >/dev/null
k wait --for=condition=Ready pod/as-source --timeout=120s >/dev/null
node_ip=$(kc get nodes -o jsonpath='{.items[0].status.addresses[?(@.type=="InternalIP")].address}')
vm_ip=${VM_URL#http://}; vm_ip=${vm_ip%:*}
matrix=$ARTIFACTS/policy-matrix.txt
printf '%-22s %-28s %-8s %-8s %s\n' from to expected measured "seconds / error" >"$matrix"
probe() { # probe NAMESPACE/POD DESTINATION IP PORT allowed|blocked: one connection, recorded in the matrix
  local from=$1 to=$2 expected=$5 start out measured seconds
  start=$(date +%s%N)
  # Blocked means refused or unanswered; any other failure (the exec itself) is an error.
  if out=$(kc -n "${from%/*}" exec "${from#*/}" -- timeout 5 bash -c "exec 3<>/dev/tcp/$3/$4" 2>&1); then measured=allowed
  elif grep -q 'Connection refused\|No route to host\|Connection timed out\|command terminated with exit code 124' <<<"$out"; then measured=blocked
  else measured=error; fi
  seconds=$(awk -v ns=$(($(date +%s%N) - start)) 'BEGIN { printf "%.2f", ns / 1e9 }')
  out=$( (grep -o 'Connection refused\|No route to host\|Connection timed out\|command terminated with exit code 124' <<<"$out" || echo "${out:0:60}") \
    | head -1 | sed 's/command terminated with exit code 124/no answer within 5 s/')
  printf '%-22s %-28s %-8s %-8s %s\n' "$from" "$to" "$expected" "$measured" "$seconds${out:+ ($out)}" >>"$matrix"
  [ "$measured" = "$expected" ]
}
source_ip=$(svc_ip lab8-source); mart_ip=$(svc_ip lab8-mart); model_ip=$(svc_ip lab8-model)
policy_matrix() {
  local ok=0
  # Ingress: a pod of another namespace without labels reaches nothing; with lab8.io/client the HTTP services.
  probe lab8-probe/plain "redis $REDIS_HOST:6379" "$REDIS_HOST" 6379 blocked || ok=1
  probe lab8-probe/plain "source :8080" "$source_ip" 8080 blocked || ok=1
  probe lab8-probe/plain "mart :8081" "$mart_ip" 8081 blocked || ok=1
  probe lab8-probe/plain "model :8082" "$model_ip" 8082 blocked || ok=1
  probe lab8-probe/client "source :8080" "$source_ip" 8080 allowed || ok=1
  probe lab8-probe/client "mart :8081" "$mart_ip" 8081 allowed || ok=1
  probe lab8-probe/client "model :8082" "$model_ip" 8082 allowed || ok=1
  probe lab8-probe/client "redis :6379" "$REDIS_HOST" 6379 blocked || ok=1
  # Egress: a pod under the source's policy (and labelled a client, so the
  # mart's and model's ingress would admit it) reaches Redis and DNS, nothing else.
  probe lab8/as-source "redis :6379" "$REDIS_HOST" 6379 allowed || ok=1
  probe lab8/as-source "kube-dns 10.96.0.10:53" 10.96.0.10 53 allowed || ok=1
  probe lab8/as-source "model :8082" "$model_ip" 8082 blocked || ok=1
  probe lab8/as-source "mart :8081" "$mart_ip" 8081 blocked || ok=1
  probe lab8/as-source "victoria-metrics :8428" "$vm_ip" 8428 blocked || ok=1
  probe lab8/as-source "API server 10.96.0.1:443" 10.96.0.1 443 blocked || ok=1
  probe lab8/as-source "kubelet $node_ip:10250" "$node_ip" 10250 blocked || ok=1
  return $ok
}
check "NetworkPolicies enforced: the declared paths work, every other one is refused or times out within 5 s" policy_matrix
cat "$matrix"
# The data path itself crossed the policies: source → Redis, Redis ← mart and model,
# VictoriaMetrics → every pod's /metrics (stage 4), the init containers → the API server.
kc delete namespace lab8-probe --wait=false >/dev/null
k delete pod as-source --wait=false >/dev/null

stage "6 three tags in one apply under load: source → mart → model"
# One `kubectl apply -k` with the three new tags, as a user applies a release.
three_tags_under_load rollout "$LAB8_VERSION-rollout" \
  env KUBECTL="$CLUSTER_BIN/kubectl" NAMESPACE="$NS" scripts/rollout.sh "$LAB8_VERSION-rollout" "$OVERLAY"
# The update as VictoriaMetrics scraped it (docs/REPORT.md plots it): the
# backlog of each stream, the records taken in and processed per second.
sleep 15; rollout_start=$applied_under_load_at rollout_end=$(date +%s)
vm_range() { curl -fs "$VM_URL/api/v1/query_range" --data-urlencode "query=$1" --data-urlencode "start=$((rollout_start - 10))" --data-urlencode "end=$rollout_end" --data-urlencode step=5s; }
rollout_series() {
  python3 - "$ARTIFACTS/vm-rollout.json" "$rollout_start" "$rollout_end" \
    "$(vm_range "max by (stream, group) (lab8_stream_backlog{namespace=\"$NS\"})")" \
    "$(vm_range "sum(rate(lab8_source_records_total{namespace=\"$NS\"}[15s]))")" \
    "$(vm_range "sum(rate(lab8_mart_raw_records_total{namespace=\"$NS\"}[15s])) + (sum(rate(lab8_mart_rejected_total{namespace=\"$NS\"}[15s])) or vector(0))")" \
    "$(vm_range "count(lab8_mart_raw_records_total{namespace=\"$NS\",outcome=\"accepted\"}) by (pod)")" <<'PY'
import json, sys
out, start, end, backlog, ingested, processed, pods = sys.argv[1:]
series = lambda text: json.loads(text)["data"]["result"]
doc = {"start": int(start), "end": int(end),
       "backlog": [{"stream": r["metric"]["stream"], "group": r["metric"]["group"], "values": r["values"]} for r in series(backlog)],
       "ingested_per_s": [v for r in series(ingested) for v in r["values"]],
       "processed_per_s": [v for r in series(processed) for v in r["values"]],
       "mart_pods": sorted(r["metric"]["pod"] for r in series(pods))}
json.dump(doc, open(out, "w"))
# Mart pods of two ReplicaSets (old and new: the pod-template-hash in the name)
# scraped; backlog and throughput sampled across the whole window without a
# gap (a 5 s step: one sample a step; a quick update has a short window).
replica_sets = {pod.rsplit("-", 2)[1] for pod in doc["mart_pods"]}
steps = (int(end) - int(start) + 10) // 5
sys.exit(not (len(replica_sets) >= 2 and len(doc["backlog"]) >= 3 and len(doc["processed_per_s"]) >= steps
              and max(float(v) for _, v in doc["processed_per_s"]) > 0))
PY
}
check "VictoriaMetrics holds the backlog and throughput across the update, old and new mart pods scraped" rollout_series

stage "7 kill a mart and a model pod while they hold unacknowledged entries"
desired() { k get hpa "lab8-$1" -o jsonpath='{.status.desiredReplicas}'; }
one_each() { [ "$(desired mart)/$(desired model)" = 1/1 ] \
  && [ "$(k get deployment lab8-mart lab8-model -o jsonpath='{.items[*].status.replicas}')" = "1 1" ]; }
# The update's load may have scaled them out: with one pod each, the pod
# frozen below is the one the push's entries go to.
require "the HPAs are back at one mart and one model replica before the kill" within 300 one_each
# The host PID of a pod's container (containerd runs on this host).
pod_pid() {
  local id; id=$(k get "$1" -o jsonpath='{.status.containerStatuses[0].containerID}')
  ctr_k8s task ls | awk -v id="${id#containerd://}" '$1 == id { print $2 }'
}
held_by() { R XPENDING "$1" "$2" - + 100000 "$3" | awk 'NR % 4 == 1 && $0 != ""'; } # held_by STREAM GROUP CONSUMER: entry ids
# freeze_holding POD STREAM GROUP: SIGSTOP the pod's process at a moment when
# it holds delivered, unacknowledged entries (its batch in flight), so the kill
# has something to lose; prints those ids.
freeze_holding() {
  local pid held; pid=$(pod_pid "$1"); [ -n "$pid" ] || return 1
  for _ in $(seq 100); do   # each freeze well under a second: a pod frozen ~20 s fails its liveness probe
    kill -STOP "$pid"
    # A commit already on the wire still lands after the stop: let it, so
    # what is held now is what the kill will find.
    sleep 0.3
    held=$(held_by "$2" "$3" "${1#pod/}")
    [ -n "$held" ] && { echo "$held"; return 0; }
    kill -CONT "$pid"; sleep "0.0$((RANDOM % 9 + 1))"
  done
  return 1
}
codes_of() { # codes_of STREAM ID...: the product code in each entry's payload, in order (one round trip)
  local stream=$1; shift
  for id in "$@"; do printf 'XRANGE %s %s %s\n' "$stream" "$id" "$id"; done | R \
    | awk -v f="$LAB8_PAYLOAD_FIELD" 'prev == f { print } { prev = $0 }' | sed -n 's/^{"code":"\([^"]*\)".*/\1/p'
}
# The previous ReplicaSet's pods drain and exit first: one pod per component.
no_terminating_pods() { [ -z "$(k get pods -o go-template='{{range .items}}{{if .metadata.deletionTimestamp}}{{.metadata.name}}{{"\n"}}{{end}}{{end}}')" ]; }
for _ in $(seq 120); do no_terminating_pods && break; sleep 1; done
raw_before=$(raw_added)
# Three passes of the sample: work for the mart while the model is frozen first.
python3 tests/e2e/push.py sample "$SOURCE_URL" --prefix kill- --repeat 3 >"$ARTIFACTS/push-kill.json" &
push_pid=$!
# A running pod of COMPONENT, not one of the previous ReplicaSet still
# terminating after the rolling update (it would not hold new work).
live_pod() {
  k get pods -l "app.kubernetes.io/component=$1" \
    -o go-template='{{range .items}}{{if not .metadata.deletionTimestamp}}pod/{{.metadata.name}}{{"\n"}}{{end}}{{end}}' | awk 'NR == 1'   # reads it all: no SIGPIPE under pipefail
}
mart_pod=$(live_pod mart)
model_pod=$(live_pod model)
# The model first: frozen, it stops draining features, while the mart keeps
# cleaning the push and is caught with a raw batch in flight.
model_held=$(freeze_holding "$model_pod" "$LAB8_FEATURES_STREAM" "$LAB8_MODEL_GROUP") || true
mart_held=$(freeze_holding "$mart_pod" "$LAB8_RAW_STREAM" "$LAB8_MART_GROUP") || true
# The codes of what they hold (one round trip each: the freeze must stay far
# shorter than the liveness probe, or the kubelet restarts the container).
# shellcheck disable=SC2086 # one id a word
mart_codes=$(codes_of "$LAB8_RAW_STREAM" $mart_held)
# shellcheck disable=SC2086
model_codes=$(codes_of "$LAB8_FEATURES_STREAM" $model_held)
# Right before the kill: they still hold those entries.
{ echo "commit: $(git rev-parse HEAD)"
  echo "raw/mart held by ${mart_pod#pod/}: $(held_by "$LAB8_RAW_STREAM" "$LAB8_MART_GROUP" "${mart_pod#pod/}" | wc -l) entries"
  echo "features/model held by ${model_pod#pod/}: $(held_by "$LAB8_FEATURES_STREAM" "$LAB8_MODEL_GROUP" "${model_pod#pod/}" | wc -l) entries"
  echo "raw/mart:"; R XPENDING "$LAB8_RAW_STREAM" "$LAB8_MART_GROUP"
  echo "features/model:"; R XPENDING "$LAB8_FEATURES_STREAM" "$LAB8_MODEL_GROUP"; } >"$ARTIFACTS/pending-at-kill.txt" 2>&1 || true
cat "$ARTIFACTS/pending-at-kill.txt"
require "the mart pod holds unacknowledged raw entries when killed" \
  test "$(held_by "$LAB8_RAW_STREAM" "$LAB8_MART_GROUP" "${mart_pod#pod/}" | wc -l)" -eq "$(wc -w <<<"$mart_held")" -a -n "$mart_held"
require "the model pod holds unacknowledged feature entries when killed" \
  test "$(held_by "$LAB8_FEATURES_STREAM" "$LAB8_MODEL_GROUP" "${model_pod#pod/}" | wc -l)" -eq "$(wc -w <<<"$model_held")" -a -n "$model_held"
require "the code of every held raw entry is known" test "$(wc -w <<<"$mart_codes")" -eq "$(wc -w <<<"$mart_held")"
k delete "$mart_pod" "$model_pod" --grace-period=0 --force 2>&1 | tail -1
wait "$push_pid"; cat "$ARTIFACTS/push-kill.json"
check "the pods came back" sh -c "$CLUSTER_BIN/kubectl -n $NS rollout status deployment/lab8-mart --timeout=300s && $CLUSTER_BIN/kubectl -n $NS rollout status deployment/lab8-model --timeout=300s"
check "nothing lost after the kills (dead consumer's entries reclaimed)" wait_reconciled $((raw_before + 3 * SAMPLE_ROWS)) 300
# took_effect_once ID CODE: raw entry ID is in the mart as CODE or a dead letter, not both, not twice.
took_effect_once() { # uses $dead_entries, read once
  local in_mart letters; in_mart=$(R HEXISTS "$LAB8_MART_PRODUCTS" "$2"); letters=$(grep -cxF "$1" <<<"$dead_entries" || true)
  [ $((in_mart + letters)) -eq 1 ]
}
every_held_entry_settled() { # every entry the dead pods held: acknowledged by someone else, effect once
  local ids=($mart_held) codes=($mart_codes) i
  [ ${#ids[@]} -gt 0 ] && [ ${#ids[@]} -eq ${#codes[@]} ] || return 1
  [ -z "$(held_by "$LAB8_RAW_STREAM" "$LAB8_MART_GROUP" "${mart_pod#pod/}")" ] || return 1
  [ -z "$(held_by "$LAB8_FEATURES_STREAM" "$LAB8_MODEL_GROUP" "${model_pod#pod/}")" ] || return 1
  dead_entries=$(dead_letter_entries) || return 1
  for i in "${!ids[@]}"; do took_effect_once "${ids[$i]}" "${codes[$i]}" || return 1; done
  for code in $model_codes; do [ "$(R HEXISTS "$LAB8_MART_ASSIGNMENTS" "$code")" = 1 ] || return 1; done
}
check "the $(wc -w <<<"$mart_held") raw and $(wc -w <<<"$model_held") feature entries the dead pods held were taken over and took effect once" every_held_entry_settled
check "nothing counted twice: profiles add up to the mart" wait_profiles
check "nothing rejected twice" dead_letters_unique

stage "8 autoscaling: mart and model scale out under load, back in after"
# The HPAs (k8s/components/autoscaling) on metrics-server's CPU figures:
# ingest pass after pass and /predict from 4 connections, until both HPAs
# have scaled out and the new pods have had 30 s of the load; then nothing,
# until both are back at one replica. kubectl top samples every pod
# meanwhile (docs/REPORT.md sizes the requests from them).
# The earlier stages' pushes may have scaled them out: measure from one replica each.
require "the HPAs are back at one mart and one model replica before the load" within 300 one_each
raw_before=$(raw_added); stop=$ARTIFACTS/stop-scale; rm -f "$stop"
load_start=$(date +%s)
python3 tests/e2e/push.py sample "$SOURCE_URL" --prefix scale- --until "$stop" >"$ARTIFACTS/push-scale.json" &
push_pid=$!
python3 tests/e2e/push.py predict "$PREDICT_URL" --stop-file "$stop" --out "$ARTIFACTS/predict-scale.json" &
predict_pid=$!
declare -A out_after peak in_after
: >"$ARTIFACTS/top-under-load.txt"
while :; do
  now=$(($(date +%s) - load_start))
  for c in mart model; do
    r=$(desired $c) || r=1; r=${r:-1}
    [ "$r" -gt "${peak[$c]:-1}" ] && peak[$c]=$r
    [ -z "${out_after[$c]:-}" ] && [ "$r" -gt 1 ] && out_after[$c]=$now
  done
  kc top pods -n "$NS" --no-headers 2>/dev/null | sed "s/^/$now /" >>"$ARTIFACTS/top-under-load.txt" || true
  k get pods -l 'app.kubernetes.io/component in (mart,model)' \
    -o jsonpath='{range .items[*]}{.metadata.labels.app\.kubernetes\.io/component} {.metadata.name} {.metadata.creationTimestamp}{"\n"}{end}' \
    >>"$ARTIFACTS/pods-under-load.txt" 2>/dev/null || true
  last_out=$(( ${out_after[mart]:-9999} > ${out_after[model]:-9999} ? ${out_after[mart]:-9999} : ${out_after[model]:-9999} ))
  { [ "$now" -ge $((last_out + 30)) ] || [ "$now" -ge 240 ]; } && break
  sleep 3
done
touch "$stop"; load_end=$(date +%s)
push_status=0; wait "$push_pid" || push_status=$?
predict_status=0; wait "$predict_pid" || predict_status=$?
check "the ingest and /predict clients of the load ran to the end (exit $push_status, $predict_status)" test "$push_status/$predict_status" = 0/0
sent=$(python3 -c "import json; print(json.load(open('$ARTIFACTS/push-scale.json'))['sent'])" 2>/dev/null) || sent=0
check "the mart's HPA scaled it out under load (after ${out_after[mart]:-never} s, to ${peak[mart]:-1})" test -n "${out_after[mart]:-}"
check "the model's HPA scaled it out under load (after ${out_after[model]:-never} s, to ${peak[model]:-1})" test -n "${out_after[model]:-}"
check "/predict answered every request during the scale-out" \
  python3 -c "import json, sys; s = json.load(open('$ARTIFACTS/predict-scale.json')); sys.exit(s['predict_failed'] != 0 or s['predict_ok'] == 0)"
check "the $sent records pushed during the scale-out reconcile exactly" wait_reconciled $((raw_before + sent)) 600
check "profiles add up to the mart" wait_profiles
# Every pod the scale-out added did work: its last scraped counter (a new pod
# starts at 0) per pod created after the load began, as many as the peak
# added (pods seen by the loop above).
added_pods() { # added_pods COMPONENT: names of its pods created after the load began
  sort -u "$ARTIFACTS/pods-under-load.txt" | while read -r c name created; do
    [ "$c" = "$1" ] && [ "$(date -d "$created" +%s)" -ge "$load_start" ] && echo "$name"
  done
}
all_pods_worked() { # all_pods_worked METRIC COMPONENT: every added pod with a count above 0, at least peak - 1 of them
  local added pod value counted=0 line
  added=$(added_pods "$2"); line="$2:"
  for pod in $added; do
    value=$(vm_values "sum(last_over_time($1{namespace=\"$NS\",pod=\"$pod\"}[$((load_end - load_start + 15))s]))" "$load_end" | awk '{ print $NF }')
    line+=" $pod=${value:-none}"
    awk -v v="${value:-0}" 'BEGIN { exit !(v > 0) }' || { echo "$line" >>"$ARTIFACTS/autoscaling-work.txt"; return 1; }
    counted=$((counted + 1))
  done
  echo "$line" >>"$ARTIFACTS/autoscaling-work.txt"
  [ "$counted" -ge $(( ${peak[$2]:-1} - 1 )) ] && [ "$counted" -ge 1 ]
}
rm -f "$ARTIFACTS/autoscaling-work.txt"
check "every mart pod the scale-out added processed raw records (VictoriaMetrics, by pod)" within 30 all_pods_worked lab8_mart_raw_records_total mart
check "every model pod the scale-out added scored features (VictoriaMetrics, by pod)" within 30 all_pods_worked lab8_model_predictions_total model
scaled_in() { # scaled_in COMPONENT: its HPA wants one replica and one runs; when it decided so (its lastScaleTime)
  [ "$(desired "$1")" = 1 ] && [ "$(k get deployment "lab8-$1" -o jsonpath='{.status.replicas}')" = 1 ] || return 1
  [ -n "${in_after[$1]:-}" ] || in_after[$1]=$(( $(date -d "$(k get hpa "lab8-$1" -o jsonpath='{.status.lastScaleTime}')" +%s) - load_end ))
}
both_scaled_in() { scaled_in mart; scaled_in model; [ -n "${in_after[mart]:-}" ] && [ -n "${in_after[model]:-}" ]; }
within 300 both_scaled_in || true
check "both scaled back in to 1 after the load (mart after ${in_after[mart]:-never} s, model after ${in_after[model]:-never} s)" both_scaled_in
{ echo "load: $((load_end - load_start)) s, $sent records ingested, $(cat "$ARTIFACTS/predict-scale.json")"
  for c in mart model; do
    echo "$c: scaled out ${out_after[$c]:-never} s after the load began, peak ${peak[$c]:-1} replicas, back to 1 ${in_after[$c]:-never} s after it ended"
  done
  k describe hpa lab8-mart lab8-model | grep -E '^Name:|SuccessfulRescale'; } >"$ARTIFACTS/autoscaling.txt"
cat "$ARTIFACTS/autoscaling.txt"
python3 tests/e2e/sizing.py "$ARTIFACTS/top-under-load.txt" <(k get deployments,statefulsets -o json) | tee "$ARTIFACTS/sizing.txt"
R HGETALL $LAB8_MART_CLUSTERS >"$ARTIFACTS/cluster-profiles.txt"

stage "9 roll a new model artifact: backfill, then the mart switches whole"
# Model B: another k, trained on the mart's table in this cluster; shipped
# as a new ConfigMap the Deployment's model-zip volume points to (the
# kustomize generator does the same with a hash suffix when dist/ changes).
old_model=$(R GET "$LAB8_MART_CURRENT_MODEL"); roll_start=$(date +%s)
k_old=$(R HLEN "$LAB8_MART_CLUSTERS")
# Trained as the model's ACL user: it reads the mart, it cannot change it.
REDIS_URL="redis://$REDIS_HOST:6379" REDIS_USERNAME=lab8-model \
  REDIS_PASSWORD="$(k get secret lab8-redis-users -o 'jsonpath={.data.lab8-model}' | base64 -d)" \
  "$LAB8_BIN/lab8-model" train --k $((k_old + 1)) --output "$ARTIFACTS/model-b.zip" >"$ARTIFACTS/model-b-train.txt"
new_model=$("$LAB8_BIN/lab8-model" unpack "$ARTIFACTS/model-b.zip" "$(mktemp -d)" | sed -n 's/^unpacked model \([^ ]*\) .*/\1/p')
echo "current model $old_model (k = $k_old) → $new_model (k = $((k_old + 1)))" | tee "$ARTIFACTS/model-roll.txt"
k create configmap lab8-model-artifact-b --from-file="${LAB8_ARTIFACT#dist/}=$ARTIFACTS/model-b.zip"
k patch deployment/lab8-model --type strategic \
  -p '{"spec":{"template":{"spec":{"volumes":[{"name":"model-zip","configMap":{"name":"lab8-model-artifact-b"}}]}}}}'
k rollout status deployment/lab8-model --timeout=300s
check "the model version identifies the artifact's content" test "$new_model" != "$old_model"
current_is_new() { [ "$(R GET "$LAB8_MART_CURRENT_MODEL")" = "$new_model" ]; }
wait_switch() { for _ in $(seq 180); do current_is_new && return 0; sleep 1; done; return 1; }
check "the mart switched to the new model" wait_switch
since="$(( $(date +%s) - roll_start + 5 ))s"
check "a model pod's log reports the backfill" log_has app.kubernetes.io/component=model "model: backfill pass done" scored "$since"
check "the mart pod's log reports the switch" log_has app.kubernetes.io/component=mart "mart: switched to the newest model" model_version "$since"
all_assigned_by_new() { # every product has a cluster, and every assignment is the new model's
  local products; products=$(R HLEN "$LAB8_MART_PRODUCTS")
  [ "$(R HLEN "$LAB8_MART_ASSIGNMENTS")" -eq "$products" ] \
    && [ "$(R HVALS "$LAB8_MART_ASSIGNMENTS" | grep -cF "\"model_version\":\"$new_model\"")" -eq "$products" ]
}
check "every product re-scored by the new model" all_assigned_by_new
check "the new model's $((k_old + 1)) clusters add up to the mart" sh -c "[ \"\$(redis-cli -h $REDIS_HOST --raw HLEN $LAB8_MART_CLUSTERS)\" -eq $((k_old + 1)) ]"
check "profiles add up to the mart after the switch" wait_profiles
check "nothing of the old model is left" test -z "$(R --scan --pattern "$LAB8_MART_MODEL_PREFIX$old_model:*" | awk "NR == 1")"
R HGETALL $LAB8_MART_CLUSTERS >"$ARTIFACTS/cluster-profiles-model-b.txt"
check "Redis refused no command since stage 4: loads, rollouts, kills, scaling, training, backfill (ACL LOG empty)" acl_log_empty

stage "10 Redis failover, 5 times under a steady load: every acknowledged record in the mart once"
# One primary with its two replicas online, and every Redis pod Ready.
set_healthy() {
  local primary; primary=$(named_primary_pod) || return 1
  [ "$(redis-cli -h "$(pod_ip "$primary")" --raw INFO replication | tr -d '\r' | grep -c '^slave[0-9]*:.*state=online')" -eq 2 ] \
    && [ "$(k get pods -l app.kubernetes.io/component=redis -o jsonpath='{range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{" "}{end}')" = "True True True " ]
}
require "the Redis set: one primary, two replicas online, three pods Ready" within 180 set_healthy
stop_file="$ARTIFACTS/failover-stop"; rm -f "$stop_file"
python3 tests/e2e/push.py steady "$SOURCE_URL" --stop-file "$stop_file" --out "$ARTIFACTS/failover-load.json" \
  --acked "$ARTIFACTS/failover-acked.txt" --prefix fo- &
load_pid=$!
sleep 5
: >"$ARTIFACTS/failovers.txt"
failed_over=0
for round in 1 2 3 4 5; do
  old=$(named_primary_pod || true); killed_at=$(date +%s.%N)
  # The primary's pod, killed: no graceful shutdown, and it comes back at once
  # (its restart waits for the Sentinels' failover, redis-ha.sh).
  k delete pod "$old" --grace-period=0 --force >/dev/null 2>&1 || true
  new=""
  for _ in $(seq 90); do new=$(named_primary_pod || true); [ -n "$new" ] && [ "$new" != "$old" ] && break; sleep 1; done
  named_at=$(date +%s.%N)
  [ -n "$new" ] && [ "$new" != "$old" ] && failed_over=$((failed_over + 1))
  echo "$round $old $new $killed_at $named_at" | tee -a "$ARTIFACTS/failovers.txt"
  within 240 set_healthy || break
  sleep 3
done
touch "$stop_file"; wait "$load_pid"
REDIS_HOST=$(redis_primary_ip)
python3 - "$ARTIFACTS/failover-load.json" "$ARTIFACTS/failovers.txt" <<'PY' | tee "$ARTIFACTS/failover-outages.txt"
import json, sys
load = json.load(open(sys.argv[1]))
kills = [line.split() for line in open(sys.argv[2])]
print(f"{load['ok']} batches acknowledged ({load['acked']} records), {load['failed']} failed requests")
for round_, old, new, killed, named in kills:
    killed, named = float(killed), float(named)
    outage = next((o for o in load["outages"] if o["from"] <= killed + 1 and o["to"] >= killed), None)
    writes = f"writes stopped {outage['seconds']:.2f} s" if outage else "no write gap over 1 s"
    print(f"failover {round_}: {old} killed, {new} named primary after {named - killed:.2f} s, {writes}")
PY
check "5 failovers: each time the Sentinels named another primary" test "$failed_over" -eq 5
check "writes resumed after the last failover (acknowledged batches after it)" python3 -c "
import json, sys; load = json.load(open('$ARTIFACTS/failover-load.json')); last_kill = float(open('$ARTIFACTS/failovers.txt').read().split()[-2])
sys.exit(not (load['last_ok'] and load['last_ok'] > last_kill and load['acked'] > 0))"
check "the mart reconciles after the failovers" wait_reconciled "$(raw_added)" 300
acked_missing() { # how many acknowledged codes the mart does not hold
  xargs -n 500 redis-cli -h "$REDIS_HOST" --raw HMGET "$LAB8_MART_PRODUCTS" <"$ARTIFACTS/failover-acked.txt" | grep -c '^$' || true
}
check "every record acknowledged during the failovers ($(wc -l <"$ARTIFACTS/failover-acked.txt")) is in the mart" \
  test "$(acked_missing)" = 0
check "cluster profiles add up to the mart after the failovers" wait_profiles
check "profiles equal a rebuild from the tables (lab8-mart rebuild --check, as lab8-mart)" rebuild_check_as_mart
