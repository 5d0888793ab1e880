#!/usr/bin/env bash
# Offline manifest tests: render the minikube and production overlays and the Helm chart, validate
# against the Kubernetes 1.34 schemas (kubernetes-validate), policy tests,
# the chart's lint and its parity with the minikube overlay (pytest).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$LAB8_ROOT"
command -v kubectl >/dev/null || die "kubectl (with kustomize) is needed"
ensure_venv
ensure_helm
# Nothing is generated first: the overlays render as a fresh clone has them.
log "manifest tests (render, schemas, policies)"
HELM=$HELM "$LAB8_VENV/bin/python" -m pytest -q tests/k8s
