#!/usr/bin/env bash
# Every test of the project; `.ci/run` calls `make test`, which runs this.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$LAB8_ROOT"

ensure_redis
ensure_rust

log "cargo fmt --check"
cargo fmt --all -- --check
build
log "cargo clippy -D warnings"
cargo clippy --release --workspace --all-targets --locked -- -D warnings
log "cargo test (real redis-server per test)"
cargo test --release --workspace --locked

log "Kubernetes manifests (offline)"
scripts/k8s-test.sh

log "the mart's page in headless Chromium"
scripts/browser-test.sh

# A skipped stage fails the run: only an explicit opt-out skips it (CI never sets it).
if command -v docker >/dev/null || command -v apt-get >/dev/null; then
  log "container images (make images-test): binaries built here, then the Dockerfiles as they are"
  scripts/images-test.sh
  LAB8_BUILD=registry TAG="$LAB8_VERSION-registry" scripts/images-test.sh
elif [ "${LAB8_SKIP_IMAGES:-0}" = 1 ]; then
  log "SKIPPED images-test (LAB8_SKIP_IMAGES=1)"
else
  die "images-test cannot run: no Docker and no apt-get to install it (set LAB8_SKIP_IMAGES=1 to skip it on purpose)"
fi
