# lab8-source: its binary from the shared build stage (build.Dockerfile) on
# a minimal glibc base. From the repository root:
#   docker build -f Dockerfiles/source.Dockerfile -t lab8/source:1.0.0 .
ARG BUILD_IMAGE=lab8/build:1.0.0
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot
FROM ${BUILD_IMAGE} AS build
FROM ${RUNTIME_IMAGE}
ARG VERSION=1.0.0
LABEL org.opencontainers.image.title="lab8-source" org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.description="Loads OpenFoodFacts products into the lab8 raw stream; HTTP ingest"
COPY --from=build /out/lab8-source /usr/local/bin/lab8-source
USER 65532:65532
ENV LOG_FORMAT=json
# Smoke test: the binary runs on this base (libc, loader) as the runtime user.
RUN ["/usr/local/bin/lab8-source", "--version"]
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/lab8-source"]
CMD ["serve"]
