#!/usr/bin/env bash
# Offline manifest tests: render every overlay, validate against the
# Kubernetes 1.34 schemas (kubernetes-validate), policy tests (pytest).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$LAB8_ROOT"
command -v kubectl >/dev/null || die "kubectl (with kustomize) is needed"
ensure_venv
for overlay in minikube production; do scripts/gen-secrets.sh "$overlay" >/dev/null 2>&1; done
log "manifest tests (render, schemas, policies)"
"$LAB8_VENV/bin/python" -m pytest -q tests/k8s
