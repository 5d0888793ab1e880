# lab8-model. From the repository root:
#   docker build -f Dockerfiles/model.Dockerfile -t lab8/model:1.0.0 .
# With a registry this compiles in a Rust builder stage (dependency layer
# cached by cargo-chef) and ships on distroless/cc. Offline,
# scripts/build-images.sh passes BINARIES=prebuilt (binaries built on the
# host, same glibc, staged in build/bin/) and local base images.
ARG RUST_IMAGE=docker.io/library/rust:1.95-slim-bookworm
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot
ARG BINARIES=compiled

FROM ${RUST_IMAGE} AS chef
RUN cargo install cargo-chef --locked --version 0.1.77
WORKDIR /src

FROM chef AS planner
COPY Cargo.toml Cargo.lock ./
COPY crates crates
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS compiled
COPY --from=planner /src/recipe.json recipe.json
RUN cargo chef cook --release --locked --recipe-path recipe.json --package lab8-model
COPY Cargo.toml Cargo.lock ./
COPY crates crates
RUN cargo build --release --locked --package lab8-model \
 && install -D --strip target/release/lab8-model /out/lab8-model

FROM scratch AS prebuilt
COPY build/bin/lab8-model /out/lab8-model

FROM ${BINARIES} AS binaries

FROM ${RUNTIME_IMAGE}
ARG VERSION=1.0.0
LABEL org.opencontainers.image.title="lab8-model" \
      org.opencontainers.image.description="The lab8 KMeans model: scoring service, /predict, and the artifact unpacker" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.source="https://example.invalid/lab8"
COPY --from=binaries /out/lab8-model /usr/local/bin/lab8-model
USER 65532:65532
ENV LOG_FORMAT=json
# Smoke test: the binary runs on this base (libc, loader) as the runtime user.
RUN ["/usr/local/bin/lab8-model", "--version"]
EXPOSE 8082
ENTRYPOINT ["/usr/local/bin/lab8-model"]
CMD ["serve"]
