# Shared shell helpers for lab8 scripts: source it, do not run it.
# shellcheck shell=bash

LAB8_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# One build profile (release) for tests, demo and images, cached outside the
# clone so a fresh clone reuses it.
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/lab8/target}
LAB8_BIN=$CARGO_TARGET_DIR/release
# The workspace version: the images' tag.
LAB8_VERSION=$(awk -F'"' '/^version = / { print $2; exit }' "$LAB8_ROOT/Cargo.toml")
# Stream and key names, generated from crates/protocol (never spelled in scripts).
# shellcheck source=keys.sh
source "$LAB8_ROOT/scripts/keys.sh"

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# apt_install PKG...: installs Debian packages that are missing.
apt_install() {
  local missing=()
  for pkg in "$@"; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  command -v apt-get >/dev/null || die "missing ${missing[*]}: install them with your package manager (this script knows apt-get only)"
  log "installing ${missing[*]} (apt-get)"
  local sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq >/dev/null || log "apt-get update failed; trying the install anyway"
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

ensure_redis() {
  command -v redis-server >/dev/null && command -v redis-cli >/dev/null && return 0
  apt_install redis-server redis-tools
}

ensure_rust() {
  command -v cargo >/dev/null || die "cargo not found: install Rust with rustup (https://rustup.rs)"
  if ! cargo fmt --version >/dev/null 2>&1 || ! cargo clippy --version >/dev/null 2>&1; then
    log "adding rustfmt and clippy (rustup)"
    rustup component add rustfmt clippy
  fi
}

# The workspace, built once: all targets so that binaries and tests share
# one feature resolution and one compilation of the dependencies.
build() {
  ensure_rust
  log "building the workspace (release, target dir $CARGO_TARGET_DIR)"
  (cd "$LAB8_ROOT" && cargo build --release --workspace --all-targets --locked)
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# start_redis DIR: a private redis-server on a free loopback port, data in DIR;
# sets REDIS_URL and REDIS_PID. Config is passed on stdin, never as arguments.
start_redis() {
  local dir=$1
  mkdir -p "$dir"
  REDIS_PORT=$(free_port)
  printf 'port %s\nbind 127.0.0.1\ndir %s\nsave ""\nappendonly no\n%s' "$REDIS_PORT" "$dir" "${REDIS_EXTRA_CONFIG:-}" \
    | redis-server - >"$dir/redis.log" 2>&1 &
  REDIS_PID=$!
  export REDIS_URL="redis://127.0.0.1:$REDIS_PORT"
  for _ in $(seq 100); do
    redis-cli -p "$REDIS_PORT" ${REDIS_PASSWORD:+--no-auth-warning -a "$REDIS_PASSWORD"} ping >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  die "redis-server did not start (see $dir/redis.log)"
}

stop_redis() {
  [ -n "${REDIS_PID:-}" ] && kill "$REDIS_PID" 2>/dev/null && wait "$REDIS_PID" 2>/dev/null
  REDIS_PID=""
}

# A Python venv with the test tools, cached outside the clone.
LAB8_VENV=${LAB8_VENV:-$HOME/.cache/lab8/venv}
ensure_venv() {
  if [ ! -x "$LAB8_VENV/bin/python" ]; then
    python3 -m venv "$LAB8_VENV" 2>/dev/null || { apt_install python3-venv; python3 -m venv "$LAB8_VENV"; }
  fi
  "$LAB8_VENV/bin/python" -c 'import kubernetes_validate, yaml, pytest' 2>/dev/null \
    || "$LAB8_VENV/bin/pip" install -q -r "$LAB8_ROOT/tests/requirements.txt"
}

# Helm v3, built from the Go module proxy like the cluster's components and
# cached beside them (helm.sh/helm/v3 has no replace directives: go install works).
HELM_VERSION=v3.22.0
HELM=${HELM:-$HOME/.cache/lab8/helm-$HELM_VERSION/helm}
ensure_helm() {
  [ -x "$HELM" ] && return 0
  command -v go >/dev/null || die "Go is needed to build Helm (https://go.dev/dl), or set HELM to a helm binary"
  log "building Helm $HELM_VERSION from the Go module proxy"
  CGO_ENABLED=0 GOFLAGS=-trimpath GOTOOLCHAIN=local GOBIN=$(dirname "$HELM") \
    go install -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION" "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
}

# Test scripts' results: check DESCRIPTION COMMAND... counts and prints the
# result; require stops the script when its check fails.
passed=0; failed=0
check() {
  if "${@:2}"; then passed=$((passed + 1)); echo "ok   - $1"; else failed=$((failed + 1)); echo "FAIL - $1"; fi
}
require() { local before=$failed; check "$@"; [ "$failed" -eq "$before" ] || die "cannot go on: $1"; }

# redis_field KEY: the value after KEY in `redis-cli --raw` output on stdin
# (reads all input: an early exit would SIGPIPE the writer under pipefail).
# mart_accounted CLI: the raw records the mart has accounted for, read with
# CLI (a function running `redis-cli --raw`). Each raw record is exactly one
# of: a product row, a row replaced by a newer version, a version ignored as
# unchanged or stale, a dead letter; so this equals the raw stream's
# entries-added once the mart is done, and a record counted twice or lost
# breaks the equality.
mart_accounted() {
  local cli=$1 products replaced ignored rejected
  products=$($cli HLEN "$LAB8_MART_PRODUCTS"); replaced=$($cli GET "$LAB8_MART_REPLACED")
  ignored=$($cli HMGET "$LAB8_MART_IGNORED" unchanged stale | awk '{ s += $1 } END { print s + 0 }')
  # Dead letters of raw records only: a malformed prediction is counted in
  # the same hash but was never a raw record.
  rejected=$($cli HGETALL "$LAB8_MART_REJECTIONS" | awk 'NR % 2 == 1 { r = $0 } NR % 2 == 0 && r != "malformed_prediction" { s += $0 } END { print s + 0 }')
  echo $((products + ${replaced:-0} + ignored + rejected))
}
redis_field() { awk -v f="$1" 'prev == f && !done { print; done = 1 } { prev = $0 }'; }

# plot_python: a Python with matplotlib and numpy (a venv under the cache,
# made on first use); prints its path.
plot_python() {
  local py=$HOME/.cache/lab8/bench-venv/bin/python
  "$py" -c 'import matplotlib, numpy' 2>/dev/null || { python3 -m venv "${py%/bin/python}" && "${py%/python}/pip" install -q matplotlib numpy; } >&2
  echo "$py"
}
