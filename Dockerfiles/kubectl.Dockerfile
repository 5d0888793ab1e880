# kubectl with a shell, for the Job that makes the secrets inside the cluster
# on first install (k8s/base/secrets/job.yaml) and the init containers that
# order rolling updates (wait-rollout). From the repository root:
#   docker build -f Dockerfiles/kubectl.Dockerfile -t lab8/kubectl:1.0.0 .
# The kubectl binary comes from the Kubernetes project's own image, the shell
# and coreutils from Debian. Offline, scripts/build-images.sh passes
# KUBECTL_BINARY_IMAGE=lab8/kubectl-binary (the local cluster's kubectl) and
# BASE_IMAGE=lab8/debian-redis (a debootstrap'd Debian 12 minbase).
ARG KUBECTL_BINARY_IMAGE=registry.k8s.io/kubectl:v1.34.4
ARG BASE_IMAGE=docker.io/library/debian:bookworm-slim
FROM ${KUBECTL_BINARY_IMAGE} AS kubectl

FROM ${BASE_IMAGE}
ARG VERSION=1.0.0
LABEL org.opencontainers.image.title="lab8-kubectl" org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.description="kubectl and a shell for lab8's secrets Job and update-order init containers" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=kubectl /bin/kubectl /usr/local/bin/kubectl
COPY scripts/in-cluster/wait-rollout /usr/local/bin/wait-rollout
USER 65532:65532
# Smoke test: kubectl, the shell and the tools the scripts use run here.
RUN ["sh", "-c", "kubectl version --client >/dev/null && head -c 1 /dev/urandom | base64 >/dev/null && tr --version >/dev/null && command -v wait-rollout >/dev/null"]
ENTRYPOINT []
CMD ["kubectl", "version", "--client"]
