#!/usr/bin/env bash
# rollout.sh TAG [OVERLAY]: moves the three services to image tag TAG in ONE
# `kubectl apply -k` (a throwaway overlay over OVERLAY, default
# k8s/overlays/minikube, setting the tags), the way a user applies a release.
# The order source → mart → model is not this script's doing: each
# downstream's init container waits for its upstream's rollout
# (scripts/in-cluster/wait-rollout). It only waits for the three to finish.
# Env: NAMESPACE (default lab8), KUBECTL (default kubectl), TIMEOUT (300s).
set -euo pipefail
tag=${1:?usage: rollout.sh TAG [OVERLAY]}
overlay=${2:-k8s/overlays/minikube}
[ "$tag" != latest ] || { echo "refusing the tag 'latest': pin a version" >&2; exit 1; }
ns=${NAMESPACE:-lab8}
kubectl=${KUBECTL:-kubectl}
cd "$(dirname "$0")/.."
# Kustomize reads only below the kustomization's folder: the overlay lives beside the others.
dir=$(mktemp -d k8s/overlays/.rollout-XXXXXX)
trap 'rm -rf "$dir"' EXIT
{ printf 'apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - ../%s\nimages:\n' "$(basename "$overlay")"
  for svc in source mart model; do printf '  - name: lab8/%s\n    newTag: "%s"\n' "$svc" "$tag"; done
  printf 'sortOptions:\n  order: fifo\n'; } >"$dir/kustomization.yaml"
echo "==> one apply: lab8/{source,mart,model}:$tag"
$kubectl apply -k "$dir"
for svc in source mart model; do
  $kubectl -n "$ns" rollout status "deployment/lab8-$svc" --timeout="${TIMEOUT:-300s}"
done
