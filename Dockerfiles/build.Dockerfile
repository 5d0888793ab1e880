# The shared build stage of the three service images: every lab8 binary in
# /out, compiled once for all three. From the repository root:
#   docker build -f Dockerfiles/build.Dockerfile -t lab8/build:1.0.0 .
# then each service's Dockerfile copies its binary out of it. With a registry
# this compiles in a Rust builder (dependency layer cached by cargo-chef,
# Cargo's registry and target in BuildKit cache mounts: needs BuildKit);
# scripts/build-images.sh passes BINARIES=prebuilt by default (binaries built
# on the host, same glibc as the runtime base, staged in build/bin/), and
# LAB8_BUILD=registry builds this file as it is.
ARG RUST_IMAGE=docker.io/library/rust:1.95-slim-bookworm
ARG BINARIES=compiled

FROM ${RUST_IMAGE} AS chef
RUN --mount=type=cache,id=lab8-cargo-registry,target=/usr/local/cargo/registry,sharing=locked \
    cargo install cargo-chef --locked --version 0.1.77
WORKDIR /src

FROM chef AS planner
COPY Cargo.toml Cargo.lock ./
COPY crates crates
RUN cargo chef prepare --recipe-path recipe.json

# BuildKit cache mounts (RUN --mount; the legacy builder stops here with a
# message naming BuildKit): the crates.io registry and the target directory
# outlive the layers, so a change of the sources recompiles only the
# workspace's crates, and the dependency layer (cargo-chef) is rebuilt only
# when Cargo.lock or a manifest changes.
FROM chef AS compiled
COPY --from=planner /src/recipe.json recipe.json
RUN --mount=type=cache,id=lab8-cargo-registry,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,id=lab8-target,target=/src/target,sharing=locked \
    cargo chef cook --release --locked --recipe-path recipe.json --bins
COPY Cargo.toml Cargo.lock ./
COPY crates crates
RUN --mount=type=cache,id=lab8-cargo-registry,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,id=lab8-target,target=/src/target,sharing=locked \
    cargo build --release --locked --bins \
 && for bin in lab8-source lab8-mart lab8-model; do install -D --strip "target/release/$bin" "/out/$bin"; done

FROM scratch AS prebuilt
COPY build/bin/ /out/

FROM ${BINARIES}
