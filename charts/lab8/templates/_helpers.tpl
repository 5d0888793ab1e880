{{/* Labels every object carries (the kustomize base's, managed by Helm). */}}
{{- define "lab8.labels" -}}
app.kubernetes.io/part-of: lab8
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end }}

{{/* Selector labels of a component: (dict "component" "mart") */}}
{{- define "lab8.selector" -}}
app.kubernetes.io/component: {{ .component }}
app.kubernetes.io/name: lab8-{{ .component }}
app.kubernetes.io/part-of: lab8
{{- end }}

{{/* Labels of a component's objects: (dict "root" $ "component" "mart") */}}
{{- define "lab8.componentLabels" -}}
{{ include "lab8.labels" .root }}
app.kubernetes.io/name: lab8-{{ .component }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* Every container: non-root, read-only root, no capabilities. */}}
{{- define "lab8.containerSecurity" -}}
securityContext:
  allowPrivilegeEscalation: false
  readOnlyRootFilesystem: true
  capabilities:
    drop: ["ALL"]
{{- end }}

{{- define "lab8.redisSecretName" -}}
{{ .Values.redis.existingSecret | default "lab8-redis" }}
{{- end }}

{{- define "lab8.redisUsersSecretName" -}}
{{ .Values.redis.existingUsersSecret | default "lab8-redis-users" }}
{{- end }}

{{/* lab8's Redis ACL users (files/redis-users.acl, generated from lab8_protocol::acl). */}}
{{- define "lab8.redisUsers" -}}
{{- range .Files.Lines "files/redis-users.acl" -}}
{{- if and . (not (hasPrefix "#" .)) }}
{{ index (splitList " " .) 0 }}
{{- end -}}
{{- end -}}
{{- end }}

{{- define "lab8.apiTokenSecretName" -}}
{{ .Values.api.existingSecret | default "lab8-api-token" }}
{{- end }}

{{/* A generated secret value: the one in the cluster's Secret when there is
one (kept across upgrades), else a new random one. Memoised in .Values so
that every template of one render sees the same value.
(dict "root" $ "secret" "lab8-redis" "key" "password" "length" 32) */}}
{{- define "lab8.generated" -}}
{{- $memo := .root.Values.generated | default dict -}}
{{- $id := printf "%s/%s" .secret .key -}}
{{- if not (hasKey $memo $id) -}}
{{- $existing := lookup "v1" "Secret" .root.Release.Namespace .secret -}}
{{- if and $existing $existing.data (hasKey $existing.data .key) -}}
{{- $_ := set $memo $id (index $existing.data .key | b64dec) -}}
{{- else -}}
{{- $_ := set $memo $id (randAlphaNum (int .length)) -}}
{{- end -}}
{{- $_ := set .root.Values "generated" $memo -}}
{{- end -}}
{{- index $memo $id -}}
{{- end }}

{{- define "lab8.redisPassword" -}}
{{- include "lab8.generated" (dict "root" . "secret" "lab8-redis" "key" "password" "length" 32) -}}
{{- end }}

{{/* An ACL user's password: (dict "root" $ "user" "lab8-mart") */}}
{{- define "lab8.redisUserPassword" -}}
{{- include "lab8.generated" (dict "root" .root "secret" "lab8-redis-users" "key" .user "length" 32) -}}
{{- end }}

{{- define "lab8.apiToken" -}}
{{- include "lab8.generated" (dict "root" . "secret" "lab8-api-token" "key" "token" "length" 43) -}}
{{- end }}

{{/* What the pods mount from a Secret, hashed: a new value rolls them.
(dict "root" $ "existing" "<existingSecret value>" "value" "<generated value>") */}}
{{- define "lab8.secretChecksum" -}}
{{- if .existing -}}
{{- $secret := lookup "v1" "Secret" .root.Release.Namespace .existing -}}
{{- toJson (($secret | default dict).data | default dict) | sha256sum -}}
{{- else -}}
{{- .value | sha256sum -}}
{{- end -}}
{{- end }}

{{- define "lab8.redisSecretChecksum" -}}
{{- include "lab8.secretChecksum" (dict "root" . "existing" .Values.redis.existingSecret "value" (include "lab8.redisPassword" .)) -}}
{{- end }}

{{/* Every ACL user's password, hashed: a new one rolls Redis and the services. */}}
{{- define "lab8.redisUsersChecksum" -}}
{{- $root := . -}}
{{- $passwords := list -}}
{{- range splitList "\n" (include "lab8.redisUsers" . | trim) -}}
{{- $passwords = append $passwords (include "lab8.redisUserPassword" (dict "root" $root "user" .)) -}}
{{- end -}}
{{- include "lab8.secretChecksum" (dict "root" . "existing" .Values.redis.existingUsersSecret "value" (join "\n" $passwords)) -}}
{{- end }}

{{- define "lab8.apiTokenChecksum" -}}
{{- include "lab8.secretChecksum" (dict "root" . "existing" .Values.api.existingSecret "value" (include "lab8.apiToken" .)) -}}
{{- end }}

{{/* The settings: files/config.env, then .Values.config on top. */}}
{{- define "lab8.config" -}}
{{- $config := dict -}}
{{- range .Files.Lines "files/config.env" -}}
{{- if and . (not (hasPrefix "#" .)) -}}
{{- $pair := regexSplit "=" . 2 -}}
{{- $_ := set $config (index $pair 0) (index $pair 1) -}}
{{- end -}}
{{- end -}}
{{- range $key, $value := .Values.config -}}
{{- $_ := set $config $key (toString $value) -}}
{{- end -}}
{{- toYaml $config -}}
{{- end }}

{{- define "lab8.redisConfig" -}}
{{ .Values.redis.config | default (.Files.Get "files/redis.conf") }}
{{- end }}

{{/* A service's own ACL user's password alone, as a file `password`:
(dict "root" $ "component" "mart") */}}
{{- define "lab8.redisSecretVolume" -}}
# Its own ACL user's password alone (REDIS_USERNAME, REDIS_PASSWORD_FILE).
- name: redis-secret
  secret:
    secretName: {{ include "lab8.redisUsersSecretName" .root }}
    items:
      - key: lab8-{{ .component }}
        path: password
    defaultMode: 0440
{{- end }}

{{/* A service Deployment: (dict "root" $ "component" "mart" "port" 8081
"args" (list) "upstream" "source" "apiToken" true "initContainers" "…yaml…"
"volumes" "…" "volumeMounts" "…" "annotations" (dict)) */}}
{{- define "lab8.deployment" -}}
{{- $root := .root -}}
{{- $values := index $root.Values .component -}}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: lab8-{{ .component }}
  labels:
    {{- include "lab8.componentLabels" . | nindent 4 }}
spec:
  replicas: {{ $values.replicas }}
  revisionHistoryLimit: 5
  strategy:
    type: RollingUpdate
    rollingUpdate:
      maxUnavailable: 0
      maxSurge: 1
  selector:
    matchLabels:
      {{- include "lab8.selector" . | nindent 6 }}
  template:
    metadata:
      labels:
        {{- include "lab8.componentLabels" . | nindent 8 }}
      annotations:
        prometheus.io/scrape: "true"
        prometheus.io/port: {{ .port | quote }}
        prometheus.io/path: /metrics
        checksum/config: {{ include "lab8.config" $root | sha256sum }}
        checksum/redis-secret: {{ include "lab8.redisUsersChecksum" $root }}
        {{- if .apiToken }}
        checksum/api-token: {{ include "lab8.apiTokenChecksum" $root }}
        {{- end }}
        {{- range $key, $value := .annotations }}
        {{ $key }}: {{ $value }}
        {{- end }}
    spec:
      {{- if .upstream }}
      serviceAccountName: lab8-rollout-order
      {{- end }}
      automountServiceAccountToken: false
      # preStop (5 s) + SHUTDOWN_TIMEOUT_SECS (25 s) + margin: the batch in
      # hand is finished and acknowledged before the kubelet's SIGKILL.
      terminationGracePeriodSeconds: 35
      securityContext:
        runAsNonRoot: true
        runAsUser: 65532
        runAsGroup: 65532
        fsGroup: 65532
        seccompProfile:
          type: RuntimeDefault
      {{- if or .initContainers .upstream }}
      initContainers:
        {{- with .initContainers }}
        {{- . | nindent 8 }}
        {{- end }}
        {{- if .upstream }}
        # Rolling-update order source → mart → model: this pod starts once
        # lab8-{{ .upstream }} has rolled out; at once when it is not deployed.
        - name: wait-for-{{ .upstream }}
          image: {{ $root.Values.kubectl.image }}
          imagePullPolicy: IfNotPresent
          args: ["wait-rollout", "lab8-{{ .upstream }}"]
          env:
            - name: HOME
              value: /tmp
          resources:
            requests: {cpu: 10m, memory: 32Mi}
            limits: {cpu: 200m, memory: 128Mi}
          {{- include "lab8.containerSecurity" . | nindent 10 }}
          volumeMounts:
            - name: rollout-order-token
              mountPath: /var/run/secrets/kubernetes.io/serviceaccount
              readOnly: true
            - name: tmp
              mountPath: /tmp
        {{- end }}
      {{- end }}
      containers:
        - name: {{ .component }}
          image: {{ $values.image }}
          imagePullPolicy: IfNotPresent
          args: {{ toJson .args }}
          ports:
            - name: http
              containerPort: {{ .port }}
          envFrom:
            - configMapRef:
                name: lab8-config
          env:
            - name: LISTEN_ADDR
              value: "0.0.0.0:{{ .port }}"
            # Its Redis ACL user (lab8_protocol::acl): only its commands and keys.
            - name: REDIS_USERNAME
              value: lab8-{{ .component }}
            - name: CONSUMER_NAME
              valueFrom:
                fieldRef:
                  fieldPath: metadata.name
          resources:
            {{- toYaml $values.resources | nindent 12 }}
          startupProbe:
            httpGet:
              path: /healthz
              port: http
            periodSeconds: 2
            failureThreshold: 90
          readinessProbe:
            httpGet:
              path: /readyz
              port: http
            periodSeconds: 5
            failureThreshold: 2
          livenessProbe:
            httpGet:
              path: /healthz
              port: http
            periodSeconds: 10
            failureThreshold: 3
          lifecycle:
            # Keep serving while the endpoint is removed from the Services,
            # so a rolling update drops no request.
            preStop:
              sleep:
                seconds: 5
          {{- include "lab8.containerSecurity" . | nindent 10 }}
          volumeMounts:
            - name: redis-secret
              mountPath: /run/secrets/lab8-redis
              readOnly: true
            {{- if .apiToken }}
            - name: api-token
              mountPath: /run/secrets/lab8-api
              readOnly: true
            {{- end }}
            - name: tmp
              mountPath: /tmp
            {{- with .volumeMounts }}
            {{- . | nindent 12 }}
            {{- end }}
      volumes:
        {{- if .upstream }}
        # The token of lab8-rollout-order, for the wait-rollout init container only.
        - name: rollout-order-token
          projected:
            sources:
              - serviceAccountToken:
                  path: token
                  expirationSeconds: 3600
              - configMap:
                  name: kube-root-ca.crt
                  items:
                    - key: ca.crt
                      path: ca.crt
              - downwardAPI:
                  items:
                    - path: namespace
                      fieldRef:
                        fieldPath: metadata.namespace
        {{- end }}
        {{- include "lab8.redisSecretVolume" (dict "root" $root "component" .component) | nindent 8 }}
        {{- if .apiToken }}
        # The bearer token of the write API (API_TOKEN_FILE).
        - name: api-token
          secret:
            secretName: {{ include "lab8.apiTokenSecretName" $root }}
            items:
              - key: token
                path: token
            defaultMode: 0440
        {{- end }}
        - name: tmp
          emptyDir:
            sizeLimit: 64Mi
        {{- with .volumes }}
        {{- . | nindent 8 }}
        {{- end }}
{{- end }}

{{/* A service's Service and PodDisruptionBudget: (dict "root" $ "component" "mart" "port" 8081) */}}
{{- define "lab8.serviceAndBudget" -}}
apiVersion: v1
kind: Service
metadata:
  name: lab8-{{ .component }}
  labels:
    {{- include "lab8.componentLabels" . | nindent 4 }}
spec:
  selector:
    {{- include "lab8.selector" . | nindent 4 }}
  ports:
    - name: http
      port: {{ .port }}
      targetPort: http
{{- if .root.Values.podDisruptionBudgets.enabled }}
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: lab8-{{ .component }}
  labels:
    {{- include "lab8.componentLabels" . | nindent 4 }}
spec:
  maxUnavailable: 1
  selector:
    matchLabels:
      {{- include "lab8.selector" . | nindent 6 }}
{{- end }}
{{- end }}

{{/* The peers an HTTP service admits: pods labelled lab8.io/client=true in any
namespace, and monitoring in namespaces labelled lab8.io/monitoring. */}}
{{- define "lab8.httpClients" -}}
- namespaceSelector: {}
  podSelector:
    matchExpressions:
      - key: lab8.io/client
        operator: In
        values: ["true"]
- namespaceSelector:
    matchExpressions:
      - key: lab8.io/monitoring
        operator: Exists
{{- end }}

{{/* A NetworkPolicy admitting `from` (a list of peers) to the component's port;
with `redisClient`, egress to Redis and DNS (and with `upstream`, to the API
server: the init container's rollout wait). Without, no egress rule (the
default deny's). */}}
{{- define "lab8.networkPolicy" -}}
{{- if .root.Values.networkPolicies.enabled }}
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: lab8-{{ .component }}
  labels:
    {{- include "lab8.componentLabels" . | nindent 4 }}
spec:
  podSelector:
    matchLabels:
      {{- include "lab8.selector" . | nindent 6 }}
  policyTypes:
    - Ingress
    {{- if .redisClient }}
    - Egress
    {{- end }}
  ingress:
    - from:
        {{- toYaml (required "lab8.networkPolicy: from (the admitted peers)" .from) | nindent 8 }}
      ports:
        - port: {{ .port }}
  {{- if .redisClient }}
  egress:
    - to:
        - podSelector:
            matchExpressions:
              - key: app.kubernetes.io/component
                operator: In
                values: [redis]
      ports:
        - port: 6379
    - to:
        - namespaceSelector:
            matchExpressions:
              - key: kubernetes.io/metadata.name
                operator: In
                values: [kube-system]
          podSelector:
            matchExpressions:
              - key: k8s-app
                operator: In
                values: [kube-dns]
      ports:
        - port: 53
          protocol: UDP
        - port: 53
          protocol: TCP
    {{- if .upstream }}
    # The API server: 443 through the kubernetes Service, the endpoint's own
    # port after its DNAT (6443: kubeadm; 8443: minikube).
    - ports:
        - port: 443
        - port: 6443
        - port: 8443
    {{- end }}
  {{- end }}
{{- end }}
{{- end }}
