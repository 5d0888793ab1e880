# The shared build stage of the three service images: every lab8 binary in
# /out, compiled once for all three. From the repository root:
#   docker build -f Dockerfiles/build.Dockerfile -t lab8/build:1.0.0 .
# then each service's Dockerfile copies its binary out of it. With a registry
# this compiles in a Rust builder (dependency layer cached by cargo-chef);
# offline, scripts/build-images.sh passes BINARIES=prebuilt (binaries built
# on the host, same glibc as the runtime base, staged in build/bin/).
ARG RUST_IMAGE=docker.io/library/rust:1.95-slim-bookworm
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
RUN cargo chef cook --release --locked --recipe-path recipe.json --bins
COPY Cargo.toml Cargo.lock ./
COPY crates crates
RUN cargo build --release --locked --bins \
 && for bin in lab8-source lab8-mart lab8-model; do install -D --strip "target/release/$bin" "/out/$bin"; done

FROM scratch AS prebuilt
COPY build/bin/ /out/

FROM ${BINARIES}
