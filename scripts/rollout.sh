#!/usr/bin/env bash
# rollout.sh TAG: rolling update of the services to image tag TAG, in the
# order source → mart → model, each waiting for `kubectl rollout status`.
# Env: NAMESPACE (default lab8), KUBECTL (default kubectl), TIMEOUT (300s).
set -euo pipefail
tag=${1:?usage: rollout.sh TAG}
[ "$tag" != latest ] || { echo "refusing the tag 'latest': pin a version" >&2; exit 1; }
ns=${NAMESPACE:-lab8}
kubectl=${KUBECTL:-kubectl}
for svc in source mart model; do
  echo "==> lab8-$svc → lab8/$svc:$tag"
  # Every container of the pod that runs this image (init containers too).
  $kubectl -n "$ns" set image "deployment/lab8-$svc" "*=lab8/$svc:$tag"
  $kubectl -n "$ns" rollout status "deployment/lab8-$svc" --timeout="${TIMEOUT:-300s}"
done
