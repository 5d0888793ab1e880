#!/usr/bin/env bash
# make minikube: the whole minikube path for people who have minikube —
# start it if it is not running (its defaults: 2 CPUs, 2,200–6,000 MB, enough
# for the minikube overlay), build the five images with `docker build` per
# Dockerfile, load them into minikube, apply the overlay, wait for every pod.
# Env: LAB8_BUILD=prebuilt (default: binaries built on this host, no Rust
# image needed) or registry (everything compiled inside Docker from the
# standard base images, for hosts without Rust); MINIKUBE (default minikube).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$LAB8_ROOT"
MINIKUBE=${MINIKUBE:-minikube}
command -v "$MINIKUBE" >/dev/null || die "minikube not found: install it (https://minikube.sigs.k8s.io/docs/start/), or use make e2e for a cluster built here"
command -v kubectl >/dev/null || die "kubectl (with kustomize) is needed"
VERSION=$LAB8_VERSION

"$MINIKUBE" status >/dev/null 2>&1 || { log "starting minikube"; "$MINIKUBE" start; }
log "building the images (LAB8_BUILD=${LAB8_BUILD:-prebuilt})"
scripts/build-images.sh
for image in source mart model redis kubectl; do
  log "loading lab8/$image:$VERSION into minikube"
  "$MINIKUBE" image load "lab8/$image:$VERSION"
done
kubectl config use-context minikube >/dev/null
log "kubectl apply -k k8s/overlays/minikube"
kubectl apply -k k8s/overlays/minikube
kubectl -n lab8 wait --for=condition=complete job/lab8-secrets --timeout=300s
kubectl -n lab8 rollout status statefulset/lab8-redis --timeout=300s
for svc in source mart model; do kubectl -n lab8 rollout status "deployment/lab8-$svc" --timeout=300s; done
kubectl -n lab8 get pods,svc
log "ready: the manual test is in k8s/README.md"
