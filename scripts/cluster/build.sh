#!/usr/bin/env bash
# Builds the cluster's components from the Go module proxy, cached:
# Kubernetes v1.34 (apiserver, controller-manager, scheduler, kubelet,
# kube-proxy, kubectl) in ONE go build so shared packages compile once,
# etcd 3.6, CoreDNS, a static pause binary, and the components that make the
# manifests' HPAs, NetworkPolicies and scrape annotations act: metrics-server,
# kube-router (its policy controller alone) and VictoriaMetrics (single node).
# Output: $CLUSTER_BIN.
set -euo pipefail
source "$(dirname "$0")/env.sh"
HERE=$LAB8_ROOT/scripts/cluster
KV=$KUBE_VERSION
mkdir -p "$CLUSTER_BIN"
export CGO_ENABLED=0 GOFLAGS="-trimpath -mod=mod" GOTOOLCHAIN=local
command -v go >/dev/null || die "Go is needed to build the cluster (https://go.dev/dl)"

k8s_bins="kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl"
have_all() { for b in "$@"; do [ -x "$CLUSTER_BIN/$b" ] || return 1; done; }

if ! have_all $k8s_bins; then
  log "building Kubernetes $KV from the module proxy (cold: tens of minutes on 2 cores)"
  now=$(date -u +%Y-%m-%dT%H:%M:%SZ)
  ldflags="-s -w"
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $p.gitVersion=$KV -X $p.gitMajor=1 -X $p.gitMinor=34 -X $p.gitTreeState=clean"
    ldflags+=" -X $p.gitCommit=0000000000000000000000000000000000000000 -X $p.buildDate=$now"
  done
  pkgs=(); for b in $k8s_bins; do pkgs+=("k8s.io/kubernetes/cmd/$b"); done
  (cd "$HERE/k8s" && go build -ldflags "$ldflags" -o "$CLUSTER_BIN/" "${pkgs[@]}")
fi
if ! have_all etcd etcdctl; then
  log "building etcd"
  (cd "$HERE/etcd" && go build -ldflags "-s -w" -o "$CLUSTER_BIN/etcd" go.etcd.io/etcd/server/v3 \
    && go build -ldflags "-s -w" -o "$CLUSTER_BIN/etcdctl" go.etcd.io/etcd/etcdctl/v3)
fi
# go_install BINARY MODULE_PATH@VERSION: a module without replace lines, straight from the proxy
go_install() {
  have_all "$1" && return 0
  log "building $1 (${2##*@})"
  GOBIN="$CLUSTER_BIN" GOFLAGS=-trimpath go install -ldflags "-s -w" "$2"
}
go_install coredns "github.com/coredns/coredns@$COREDNS"
go_install metrics-server "sigs.k8s.io/metrics-server/cmd/metrics-server@$METRICS_SERVER_VERSION"
go_install kube-router "github.com/cloudnativelabs/kube-router/v2/cmd/kube-router@$KUBE_ROUTER_VERSION"
go_install victoria-metrics "github.com/VictoriaMetrics/VictoriaMetrics/app/victoria-metrics@$VICTORIA_METRICS_VERSION"
if ! have_all pause; then
  log "building the pause binary (static C)"
  gcc -Os -static -o "$CLUSTER_BIN/pause" "$HERE/pause.c" && strip "$CLUSTER_BIN/pause"
fi
ls -la "$CLUSTER_BIN"
