# lab8-model: its binary from the shared build stage (build.Dockerfile) on
# a minimal glibc base. From the repository root:
#   docker build -f Dockerfiles/model.Dockerfile -t lab8/model:1.0.0 .
ARG BUILD_IMAGE=lab8/build:1.0.0
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot
FROM ${BUILD_IMAGE} AS build
FROM ${RUNTIME_IMAGE}
ARG VERSION=1.0.0
LABEL org.opencontainers.image.title="lab8-model" org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.description="The lab8 KMeans model: scoring service, /predict, and the artifact unpacker"
COPY --from=build /out/lab8-model /usr/local/bin/lab8-model
USER 65532:65532
ENV LOG_FORMAT=json
# Smoke test: the binary runs on this base (libc, loader) as the runtime user.
RUN ["/usr/local/bin/lab8-model", "--version"]
EXPOSE 8082
ENTRYPOINT ["/usr/local/bin/lab8-model"]
CMD ["serve"]
