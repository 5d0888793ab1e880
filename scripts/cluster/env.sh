# shellcheck shell=bash
# The local cluster's paths and helpers; `source scripts/cluster/env.sh`.
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
CLUSTER_DIR=${CLUSTER_DIR:-/var/lib/lab8-cluster}
KUBE_VERSION=v1.34.4
CLUSTER_BIN=${CLUSTER_BIN:-$HOME/.cache/lab8/cluster/bin-$KUBE_VERSION}
CONTAINERD_SOCK=/run/lab8-containerd/containerd.sock
PAUSE_IMAGE=registry.k8s.io/pause:3.10.1
COREDNS_IMAGE=lab8/coredns:1.12.1
export KUBECONFIG=$CLUSTER_DIR/kubeconfig
kc() { "$CLUSTER_BIN/kubectl" "$@"; }
ctr_k8s() { ctr --address "$CONTAINERD_SOCK" -n k8s.io "$@"; }
