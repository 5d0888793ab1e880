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

if command -v docker >/dev/null || command -v apt-get >/dev/null; then
  log "container images (make images-test)"
  scripts/images-test.sh
else
  log "SKIPPED images-test: no Docker and no apt-get to install it"
fi
