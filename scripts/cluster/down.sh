#!/usr/bin/env bash
# make cluster-down: stops the local cluster and removes what it left
# (pod containers, mounts, cni0, KUBE-*/CNI-* iptables chains, etcd data),
# keeping the built binaries and the PKI for a fast next cluster-up.
set -euo pipefail
source "$(dirname "$0")/env.sh"

stop() { # stop NAME: SIGTERM, then SIGKILL after 10 s
  local pidfile=$CLUSTER_DIR/run/$1.pid pid
  [ -f "$pidfile" ] || return 0
  pid=$(cat "$pidfile")
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$pidfile"
}

log "stopping the cluster"
for component in kube-router kube-proxy kubelet kube-scheduler kube-controller-manager kube-apiserver etcd; do stop "$component"; done
if [ -S "$CONTAINERD_SOCK" ]; then
  for task in $(ctr_k8s tasks ls -q 2>/dev/null); do ctr_k8s tasks kill -s SIGKILL "$task" >/dev/null 2>&1 || true; done
  sleep 1
  for task in $(ctr_k8s tasks ls -q 2>/dev/null); do ctr_k8s tasks rm -f "$task" >/dev/null 2>&1 || true; done
  for c in $(ctr_k8s containers ls -q 2>/dev/null); do ctr_k8s containers rm "$c" >/dev/null 2>&1 || true; done
fi
stop containerd
# Shims whose containerd is gone, and their containers.
pkill -9 -f 'containerd-shim.*lab8-containerd' 2>/dev/null || true
# Mounts left by pods (volumes, rootfs, netns).
grep -E ' (/var/lib/lab8-kubelet|/var/lib/lab8-cluster/containerd|/run/lab8-containerd)' /proc/mounts | awk '{ print $2 }' | sort -r \
  | while read -r m; do umount -l "$m" 2>/dev/null || true; done
ip link del cni0 2>/dev/null || true
# kube-proxy's and CNI's iptables chains, the rules that jump to them, and
# up.sh's own (comment lab8-cluster); Docker's stay.
for table in filter nat mangle; do
  rules=$(iptables-save -t "$table")
  if grep -E 'KUBE-|CNI-|lab8-cluster' <<<"$rules" >/dev/null; then
    grep -vE 'KUBE-|CNI-|lab8-cluster' <<<"$rules" | iptables-restore -T "$table"
  fi
done
# kube-router's ipsets, once no rule refers to them.
for set in $(ipset list -n 2>/dev/null | grep -E '^KUBE-'); do ipset destroy "$set" 2>/dev/null || true; done
rm -rf "$CLUSTER_DIR/etcd" "$CLUSTER_DIR/run" /var/lib/lab8-kubelet /var/lib/cni/networks/lab8-pod-network \
  /etc/cni/net.d/10-lab8-pods.conflist "$CLUSTER_DIR/containerd" /run/lab8-containerd "$CLUSTER_DIR/pv"
log "cluster down"
