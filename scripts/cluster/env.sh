# shellcheck shell=bash
# The local cluster's paths and helpers; `source scripts/cluster/env.sh`.
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
CLUSTER_DIR=${CLUSTER_DIR:-/var/lib/lab8-cluster}
KUBE_VERSION=v1.34.4
COREDNS=v1.12.1
METRICS_SERVER_VERSION=v0.8.0
KUBE_ROUTER_VERSION=v2.1.0   # the only version the module proxy serves
VICTORIA_METRICS_VERSION=v1.151.0
CLUSTER_BIN=${CLUSTER_BIN:-$HOME/.cache/lab8/cluster/bin-$KUBE_VERSION}
CONTAINERD_SOCK=/run/lab8-containerd/containerd.sock
PAUSE_IMAGE=registry.k8s.io/pause:3.10.1
COREDNS_IMAGE=lab8/coredns:${COREDNS#v}
METRICS_SERVER_IMAGE=lab8/metrics-server:${METRICS_SERVER_VERSION#v}
VICTORIA_METRICS_IMAGE=lab8/victoria-metrics:${VICTORIA_METRICS_VERSION#v}
export KUBECONFIG=$CLUSTER_DIR/kubeconfig
kc() { "$CLUSTER_BIN/kubectl" "$@"; }
ctr_k8s() { ctr --address "$CONTAINERD_SOCK" -n k8s.io "$@"; }
