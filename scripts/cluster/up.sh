#!/usr/bin/env bash
# make cluster-up: a real single-node Kubernetes v1.34 as host processes
# (etcd, kube-apiserver, controller-manager, scheduler, kubelet, kube-proxy,
# kube-router's policy controller) with Debian's containerd + runc + CNI
# plugins, and in pods CoreDNS, metrics-server and VictoriaMetrics; built from
# registry packages only. Loads the lab8 images into the node's containerd: nothing is pulled.
# Writes $CLUSTER_DIR/kubeconfig; `source scripts/cluster/env.sh` to use it.
set -euo pipefail
source "$(dirname "$0")/env.sh"
HERE=$LAB8_ROOT/scripts/cluster

apt_install containerd runc containernetworking-plugins iptables ipset openssl conntrack curl
"$HERE/build.sh"
"$LAB8_ROOT/scripts/build-images.sh"

mkdir -p "$CLUSTER_DIR/logs" "$CLUSTER_DIR/run" /etc/cni/net.d
NODE=$(hostname | tr '[:upper:]' '[:lower:]')
NODE_IP=$(ip -4 -o route get 1.1.1.1 | sed -n 's/.* src \([0-9.]*\).*/\1/p')
[ -n "$NODE_IP" ] || NODE_IP=$(ip -4 -o addr show scope global | awk '{ print $4 }' | cut -d/ -f1 | head -1)
PKI=$CLUSTER_DIR/pki
if [ ! -f "$PKI/front-proxy-client.crt" ] || ! grep -q "$NODE_IP" "$PKI/admin.kubeconfig" 2>/dev/null; then
  rm -rf "$PKI"; log "generating the cluster PKI for $NODE ($NODE_IP)"
  "$HERE/gen-pki.sh" "$PKI" "$NODE" "$NODE_IP"
fi
cp "$PKI/admin.kubeconfig" "$KUBECONFIG"
# The static volumes the local overlay binds Redis's claims to (no provisioner
# here): one per pod of the Redis set (k8s/components/redis-sentinel).
for i in 0 1 2; do install -d -o 999 -g 999 -m 0750 "$CLUSTER_DIR/pv/redis-$i"; done
cp "$HERE/10-lab8-pods.conflist" /etc/cni/net.d/10-lab8-pods.conflist

running() { [ -f "$CLUSTER_DIR/run/$1.pid" ] && kill -0 "$(cat "$CLUSTER_DIR/run/$1.pid")" 2>/dev/null; }
start() { # start NAME CMD...: a host process in its own session, logged, pid kept
  local name=$1; shift
  running "$name" && return 0
  setsid "$@" >"$CLUSTER_DIR/logs/$name.log" 2>&1 </dev/null &
  echo $! >"$CLUSTER_DIR/run/$name.pid"
}
wait_for() { # wait_for WHAT SECONDS CMD...
  local what=$1 secs=$2; shift 2
  for _ in $(seq "$secs"); do "$@" >/dev/null 2>&1 && return 0; sleep 1; done
  die "$what not ready after ${secs}s (logs in $CLUSTER_DIR/logs)"
}

# Pods talk only to this node: nothing they send may leave through the host's
# uplink (a Service without ready endpoints would otherwise be routed out to the
# default gateway). Tagged so that down.sh removes them.
uplink=$(ip -4 -o route show default | awk '{ print $5; exit }')
for rule in "-s 10.244.0.0/16 -o $uplink" "-s 10.244.0.0/16 -d 10.96.0.0/12"; do
  # shellcheck disable=SC2086
  iptables -C FORWARD $rule -m comment --comment lab8-cluster -j REJECT 2>/dev/null \
    || iptables -I FORWARD $rule -m comment --comment lab8-cluster -j REJECT
done

log "containerd"
start containerd containerd --config "$HERE/containerd.toml"
wait_for containerd 30 test -S "$CONTAINERD_SOCK"

log "loading images into the node's containerd (k8s.io namespace)"
make_image() { # make_image TAG BINARY ENTRYPOINT: a one-binary image from a host file (kept while the binary is the same)
  local tag=$1 bin=$2 entry=$3 dir sum; sum=$(sha256sum "$bin" | cut -c1-64)
  [ "$(docker image inspect -f '{{index .Config.Labels "lab8.binary-sha256"}}' "$tag" 2>/dev/null)" = "$sum" ] && return 0
  dir=$(mktemp -d)
  install -D "$bin" "$dir/$entry"
  tar -C "$dir" -c . | docker import --change "ENTRYPOINT [\"/$entry\"]" --change "LABEL lab8.binary-sha256=$sum" - "$tag" >/dev/null
  rm -rf "$dir"
}
make_image "$PAUSE_IMAGE" "$CLUSTER_BIN/pause" pause
make_image "$COREDNS_IMAGE" "$CLUSTER_BIN/coredns" coredns
make_image "$METRICS_SERVER_IMAGE" "$CLUSTER_BIN/metrics-server" metrics-server
make_image "$VICTORIA_METRICS_IMAGE" "$CLUSTER_BIN/victoria-metrics" victoria-metrics
images=("$PAUSE_IMAGE" "$COREDNS_IMAGE" "$METRICS_SERVER_IMAGE" "$VICTORIA_METRICS_IMAGE")
for name in source mart model redis kubectl; do images+=("lab8/$name:$LAB8_VERSION"); done
docker save "${images[@]}" | ctr_k8s images import --no-unpack - >/dev/null
ctr_k8s images ls -q | grep -E 'lab8|pause' | sed 's/^/   /'

log "etcd"
start etcd "$CLUSTER_BIN/etcd" --name node0 --data-dir "$CLUSTER_DIR/etcd" \
  --listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 \
  --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
  --initial-cluster node0=http://127.0.0.1:2380 --listen-metrics-urls http://127.0.0.1:2381
wait_for etcd 60 curl -fs http://127.0.0.1:2381/health

log "kube-apiserver"
start kube-apiserver "$CLUSTER_BIN/kube-apiserver" --advertise-address="$NODE_IP" --secure-port=6443 \
  --etcd-servers=http://127.0.0.1:2379 --service-cluster-ip-range=10.96.0.0/12 \
  --authorization-mode=Node,RBAC --enable-admission-plugins=NodeRestriction --allow-privileged=true \
  --client-ca-file="$PKI/ca.crt" --tls-cert-file="$PKI/apiserver.crt" --tls-private-key-file="$PKI/apiserver.key" \
  --kubelet-client-certificate="$PKI/apiserver-kubelet-client.crt" --kubelet-client-key="$PKI/apiserver-kubelet-client.key" \
  --service-account-issuer=https://kubernetes.default.svc.cluster.local \
  --service-account-key-file="$PKI/sa.pub" --service-account-signing-key-file="$PKI/sa.key" \
  --requestheader-client-ca-file="$PKI/front-proxy-ca.crt" --requestheader-allowed-names=front-proxy-client \
  --requestheader-username-headers=X-Remote-User --requestheader-group-headers=X-Remote-Group \
  --requestheader-extra-headers-prefix=X-Remote-Extra- \
  --proxy-client-cert-file="$PKI/front-proxy-client.crt" --proxy-client-key-file="$PKI/front-proxy-client.key" \
  --enable-aggregator-routing=true
wait_for kube-apiserver 120 kc get --raw /readyz

log "controller-manager, scheduler, kubelet, kube-proxy, kube-router"
start kube-controller-manager "$CLUSTER_BIN/kube-controller-manager" --kubeconfig="$PKI/controller-manager.kubeconfig" \
  --authentication-kubeconfig="$PKI/controller-manager.kubeconfig" --authorization-kubeconfig="$PKI/controller-manager.kubeconfig" \
  --service-account-private-key-file="$PKI/sa.key" --root-ca-file="$PKI/ca.crt" \
  --cluster-signing-cert-file="$PKI/ca.crt" --cluster-signing-key-file="$PKI/ca.key" \
  --use-service-account-credentials=true --service-cluster-ip-range=10.96.0.0/12 --leader-elect=false \
  --horizontal-pod-autoscaler-sync-period=10s
start kube-scheduler "$CLUSTER_BIN/kube-scheduler" --kubeconfig="$PKI/scheduler.kubeconfig" \
  --authentication-kubeconfig="$PKI/scheduler.kubeconfig" --authorization-kubeconfig="$PKI/scheduler.kubeconfig" --leader-elect=false
start kubelet "$CLUSTER_BIN/kubelet" --config="$HERE/kubelet.yaml" --kubeconfig="$PKI/kubelet.kubeconfig" \
  --hostname-override="$NODE" --node-ip="$NODE_IP" --root-dir=/var/lib/lab8-kubelet --v=1
start kube-proxy "$CLUSTER_BIN/kube-proxy" --config="$HERE/kube-proxy.yaml" --hostname-override="$NODE"
wait_for "node $NODE" 180 kc wait --for=condition=Ready "node/$NODE" --timeout=5s
# NetworkPolicies enforced: kube-router's policy controller alone, as a host
# process like kube-proxy (iptables + ipset, bridged traffic via physdev); it
# needs the node registered.
kc apply -f "$HERE/kube-router.yaml" >/dev/null
start kube-router "$CLUSTER_BIN/kube-router" --kubeconfig="$PKI/kube-router.kubeconfig" --hostname-override="$NODE" \
  --run-firewall=true --run-router=false --run-service-proxy=false --metrics-port=0
wait_for "kube-router's policy controller" 60 curl -fs http://127.0.0.1:20244/healthz

log "CoreDNS"
kc apply -f "$HERE/coredns.yaml" >/dev/null
kc -n kube-system rollout status deploy/coredns --timeout=180s

log "metrics-server (the resource metrics API) and VictoriaMetrics (scrapes the pods)"
sed "s#image: METRICS_SERVER_IMAGE#image: $METRICS_SERVER_IMAGE#" "$HERE/metrics-server.yaml" | kc apply -f - >/dev/null
sed "s#image: VICTORIA_METRICS_IMAGE#image: $VICTORIA_METRICS_IMAGE#" "$HERE/victoria-metrics.yaml" | kc apply -f - >/dev/null
kc -n kube-system rollout status deploy/metrics-server --timeout=180s
kc -n lab8-monitoring rollout status deploy/victoria-metrics --timeout=180s
kc wait --for=condition=Available apiservice/v1beta1.metrics.k8s.io --timeout=120s
wait_for "kubectl top (the first resource metrics)" 120 kc top nodes
kc get nodes -o wide
