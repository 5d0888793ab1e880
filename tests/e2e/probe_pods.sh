#!/usr/bin/env bash
# probe_pods.sh IMAGE: the NetworkPolicy matrix's probes (make e2e) as YAML,
# pods that only sleep, from which the e2e opens TCP connections with bash's
# /dev/tcp:
#  - lab8-probe/plain: in another namespace, without any lab8 label
#  - lab8-probe/client: the same with lab8.io/client=true
#  - lab8/as-source: in lab8 with the source's labels (so its egress policy)
#    and lab8.io/client (so only that egress policy can block it),
#    but no port named http, so the source's Service never routes to it
set -euo pipefail
image=$1
pod() { # pod NAMESPACE NAME LABELS(flow map)
  cat <<YAML
---
apiVersion: v1
kind: Pod
metadata: {name: $2, namespace: $1, labels: $3}
spec:
  automountServiceAccountToken: false
  terminationGracePeriodSeconds: 0
  securityContext: {runAsNonRoot: true, runAsUser: 65532, seccompProfile: {type: RuntimeDefault}}
  containers:
    - name: probe
      image: $image
      imagePullPolicy: Never
      command: [sleep, infinity]
      resources: {requests: {cpu: 10m, memory: 16Mi}, limits: {cpu: 100m, memory: 32Mi}}
      securityContext: {allowPrivilegeEscalation: false, capabilities: {drop: [ALL]}, readOnlyRootFilesystem: true}
YAML
}
cat <<YAML
apiVersion: v1
kind: Namespace
metadata:
  name: lab8-probe
  labels: {pod-security.kubernetes.io/enforce: restricted}
YAML
pod lab8-probe plain '{}'
pod lab8-probe client '{lab8.io/client: "true"}'
pod lab8 as-source '{app.kubernetes.io/name: lab8-source, app.kubernetes.io/component: source, app.kubernetes.io/part-of: lab8, lab8.io/client: "true"}'
