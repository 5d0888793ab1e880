# kubectl with a shell, for the Job that makes the Redis password inside the
# cluster on first install (k8s/base/secrets/job.yaml) and the init
# containers that order rolling updates (wait-rollout). From the
# repository root:
#   docker build -f Dockerfiles/kubectl.Dockerfile -t lab8/kubectl:1.0.0 .
# With a registry it starts from bitnami/kubectl; offline,
# scripts/build-images.sh passes KUBECTL_IMAGE=lab8/debian-kubectl (the
# Debian 12 minbase of lab8/debian-redis with a kubectl binary added).
ARG KUBECTL_IMAGE=docker.io/bitnami/kubectl:1.34
FROM ${KUBECTL_IMAGE}
ARG VERSION=1.0.0
LABEL org.opencontainers.image.title="lab8-kubectl" org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.description="kubectl and a shell for lab8's in-cluster setup Jobs" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY scripts/in-cluster/wait-rollout /usr/local/bin/wait-rollout
USER 65532:65532
# Smoke test: kubectl, the shell and the tools the scripts use run here.
RUN ["sh", "-c", "kubectl version --client >/dev/null && head -c 1 /dev/urandom | base64 >/dev/null && tr --version >/dev/null && command -v wait-rollout >/dev/null"]
ENTRYPOINT []
CMD ["kubectl", "version", "--client"]
