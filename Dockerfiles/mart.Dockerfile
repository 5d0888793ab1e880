# lab8-mart: its binary from the shared build stage (build.Dockerfile) on
# a minimal glibc base. From the repository root:
#   docker build -f Dockerfiles/mart.Dockerfile -t lab8/mart:1.0.0 .
ARG BUILD_IMAGE=lab8/build:1.0.0
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot
FROM ${BUILD_IMAGE} AS build
FROM ${RUNTIME_IMAGE}
ARG VERSION=1.0.0
LABEL org.opencontainers.image.title="lab8-mart" org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.description="The lab8 data mart: cleans products with Polars and materialises clusters"
COPY --from=build /out/lab8-mart /usr/local/bin/lab8-mart
USER 65532:65532
ENV LOG_FORMAT=json
# Smoke test: the binary runs on this base (libc, loader) as the runtime user.
RUN ["/usr/local/bin/lab8-mart", "--version"]
EXPOSE 8081
ENTRYPOINT ["/usr/local/bin/lab8-mart"]
CMD []
