#!/usr/bin/env bash
# Builds the lab8 images (source, mart, model, redis, kubectl), tagged with the
# workspace version, from Dockerfiles/ — here, without any registry:
#  - starts dockerd (installing docker.io from apt) when no engine answers;
#  - LAB8_BUILD=prebuilt (default): makes local base images from a
#    debootstrap'd Debian 12 rootfs: lab8/debian-cc (glibc + libgcc only, like
#    distroless/cc), lab8/debian-redis (the redis-server package) and
#    lab8/kubectl-binary (the local cluster's kubectl, as the Kubernetes
#    project's kubectl image holds it); builds the
#    binaries on the host (same glibc as the base) and passes
#    BINARIES=prebuilt to the shared build stage (Dockerfiles/build.Dockerfile),
#    so no Rust image is needed;
#  - LAB8_BUILD=registry: the path of every user with a registry, the
#    Dockerfiles unmodified (no base-image arguments): everything compiled
#    inside Docker (Rust builder, cargo-chef, BuildKit cache mounts). Only
#    base images that can be neither found nor pulled get local stand-ins
#    under the names the Dockerfiles use (make_standins; this needs root for
#    debootstrap): the Rust image is that Debian with gcc and this host's Rust
#    toolchain, distroless/cc is lab8/debian-cc, and so on.
# Prints each image's size. Env: IMAGE_PREFIX (default lab8), TAG (default
# the workspace version).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$LAB8_ROOT"

VERSION=$LAB8_VERSION
TAG=${TAG:-$VERSION}
PREFIX=${IMAGE_PREFIX:-lab8}
[ "$TAG" != latest ] || die "refusing the tag 'latest': pin a version"
ROOTFS_CACHE=${ROOTFS_CACHE:-$HOME/.cache/lab8/rootfs}
CC_BASE=lab8/debian-cc:12
REDIS_BASE=lab8/debian-redis:12
KUBECTL_BINARY=lab8/kubectl-binary:1
# The base images the Dockerfiles name by default (their ARG lines).
default_arg() { sed -n "s/^ARG $2=//p" "Dockerfiles/$1.Dockerfile"; }
RUST_IMAGE=$(default_arg build RUST_IMAGE)
RUNTIME_IMAGE=$(default_arg source RUNTIME_IMAGE)
REDIS_IMAGE=$(default_arg redis REDIS_IMAGE)
KUBECTL_BINARY_IMAGE=$(default_arg kubectl KUBECTL_BINARY_IMAGE)
DEBIAN_IMAGE=$(default_arg kubectl BASE_IMAGE)

ensure_docker() {
  if ! command -v dockerd >/dev/null; then
    apt_install docker.io
  fi
  if ! docker info >/dev/null 2>&1; then
    log "no Docker engine answers: starting dockerd (log in /var/log/lab8-dockerd.log)"
    (setsid dockerd >/var/log/lab8-dockerd.log 2>&1 &)
    for _ in $(seq 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
    docker info >/dev/null 2>&1 || die "dockerd did not start: see /var/log/lab8-dockerd.log"
  fi
}

# A client that can use BuildKit (skips unused stages): docker with buildx,
# else Debian's 20.10 client, whose BuildKit is built in.
pick_docker_client() {
  if docker buildx version >/dev/null 2>&1; then
    DOCKER=(docker)
  elif [ -x /usr/bin/docker ] && /usr/bin/docker version --format '{{.Client.Version}}' 2>/dev/null | grep '^20\.' >/dev/null; then
    DOCKER=(/usr/bin/docker)
  else
    die "BuildKit needed: install docker-buildx (or Debian's docker.io client)"
  fi
  export DOCKER_BUILDKIT=1
}

# rootfs_tarball NAME PACKAGES: a debootstrap'd Debian 12 minbase with
# PACKAGES (comma-separated), cached as a tarball.
rootfs_tarball() {
  local tarball=$ROOTFS_CACHE/bookworm-$1.tar
  if [ ! -s "$tarball" ]; then
    apt_install debootstrap
    mkdir -p "$ROOTFS_CACHE"
    local dir; dir=$(mktemp -d "$ROOTFS_CACHE.XXXXXX")
    log "debootstrap Debian 12 (minbase + $2) into $dir"
    debootstrap --variant=minbase --include="$2" bookworm "$dir" http://deb.debian.org/debian >"$dir.log" 2>&1 \
      || die "debootstrap failed: see $dir.log"
    rm -rf "$dir"/var/cache/apt/archives/*.deb "$dir"/var/lib/apt/lists/*
    tar -C "$dir" -cf "$tarball.tmp" . && mv "$tarball.tmp" "$tarball"
    rm -rf "$dir" "$dir.log"
  fi
  echo "$tarball"
}

# lab8/debian-cc: only the loader, glibc, libm and libgcc_s from the rootfs
# (merged /usr, as Debian 12), plus a nonroot user (65532, as distroless) and /tmp.
make_cc_base() {
  local tarball=$1 work; work=$(mktemp -d)
  local libs="ld-linux-x86-64.so.2 libc.so.6 libm.so.6 libgcc_s.so.1"
  mkdir -p "$work/full" "$work/cc/usr/lib/x86_64-linux-gnu" "$work/cc/usr/lib64" "$work/cc/etc" "$work/cc/tmp" \
    "$work/cc/home/nonroot" "$work/cc/usr/share/doc"
  tar -C "$work/full" -xf "$tarball" ./usr/lib/x86_64-linux-gnu ./usr/share/doc/libc6 ./usr/share/doc/libgcc-s1
  for lib in $libs; do
    cp -L "$work/full/usr/lib/x86_64-linux-gnu/$lib" "$work/cc/usr/lib/x86_64-linux-gnu/$lib"
  done
  cp -a "$work/full/usr/share/doc/libc6" "$work/full/usr/share/doc/libgcc-s1" "$work/cc/usr/share/doc/"
  ln -s usr/lib "$work/cc/lib"
  ln -s usr/lib64 "$work/cc/lib64"
  ln -s ../lib/x86_64-linux-gnu/ld-linux-x86-64.so.2 "$work/cc/usr/lib64/ld-linux-x86-64.so.2"
  chmod 1777 "$work/cc/tmp"
  printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' >"$work/cc/etc/passwd"
  printf 'root:x:0:\nnonroot:x:65532:\n' >"$work/cc/etc/group"
  chown 65532:65532 "$work/cc/home/nonroot"
  tar -C "$work/cc" -c . | docker import \
    --change 'ENV PATH=/usr/local/bin:/usr/bin:/bin' --change 'USER 65532:65532' \
    --message "glibc + libgcc from a debootstrap'd Debian 12 (lab8 build-images.sh)" - "$CC_BASE" >/dev/null
  rm -rf "$work"
}

# A kubectl binary (statically linked): the local cluster's, else the host's
# (a versioned one when the host's is a dispatcher).
kubectl_binary() {
  local candidate
  for candidate in "${KUBECTL_BIN:-}" "$HOME"/.cache/lab8/cluster/bin-*/kubectl \
    "$(ls -1 /usr/lib/google-cloud-sdk/bin/kubectl.1.* 2>/dev/null | sort -V | tail -1)" "$(command -v kubectl || true)"; do
    [ -n "$candidate" ] && [ -x "$candidate" ] && { readlink -f "$candidate"; return 0; }
  done
  die "no kubectl binary to put in $KUBECTL_BINARY (set KUBECTL_BIN)"
}

# lab8/kubectl-binary: only /bin/kubectl, where the Kubernetes project's
# kubectl image has it.
make_kubectl_binary() {
  local ctx; ctx=$(mktemp -d)
  cp "$(kubectl_binary)" "$ctx/kubectl"
  printf 'FROM scratch\nCOPY kubectl /bin/kubectl\n' | "${DOCKER[@]}" build -q -t "$KUBECTL_BINARY" -f - "$ctx" >/dev/null
  rm -rf "$ctx"
}

ensure_base_images() {
  local need=()
  docker image inspect "$CC_BASE" >/dev/null 2>&1 || need+=(cc)
  docker image inspect "$REDIS_BASE" >/dev/null 2>&1 || need+=(redis)
  if [ ${#need[@]} -gt 0 ]; then
    local tarball; tarball=$(rootfs_tarball redis redis-server)
    if [[ " ${need[*]} " == *" cc "* ]]; then log "making $CC_BASE"; make_cc_base "$tarball"; fi
    if [[ " ${need[*]} " == *" redis "* ]]; then
      log "making $REDIS_BASE"
      docker import --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' "$tarball" "$REDIS_BASE" >/dev/null
    fi
  fi
  docker image inspect "$KUBECTL_BINARY" >/dev/null 2>&1 || { log "making $KUBECTL_BINARY"; make_kubectl_binary; }
}

# The Rust builder stand-in: Debian 12 with gcc, libc6-dev and CA
# certificates (as rust:slim) and this host's Rust toolchain (bin and lib,
# no docs), laid out as the official image (CARGO_HOME=/usr/local/cargo).
# Remove it (docker rmi) to have it made again.
make_rust_standin() {
  ensure_rust
  local tarball toolchain version work
  tarball=$(rootfs_tarball rust gcc,libc6-dev,ca-certificates)
  toolchain=$(rustc --print sysroot)
  version=$(rustc --version | awk '{ print $2 }')
  [[ "$RUST_IMAGE" == *":${version%.*}"* ]] || log "note: the Dockerfile names $RUST_IMAGE, the host's Rust is $version"
  work=$(mktemp -d)
  tar -C "$work" -xf "$tarball"
  mkdir -p "$work/usr/local/rustup/toolchains/$version" "$work/usr/local/cargo/bin"
  cp -a "$toolchain/bin" "$toolchain/lib" "$work/usr/local/rustup/toolchains/$version/"
  # It trusts what this host trusts (the CA of a TLS-inspecting proxy, if
  # any), so that Cargo reaches crates.io from inside the build as it does here.
  [ -s /etc/ssl/certs/ca-certificates.crt ] && cp /etc/ssl/certs/ca-certificates.crt "$work/etc/ssl/certs/ca-certificates.crt"
  tar -C "$work" -c . | docker import \
    --change 'ENV CARGO_HOME=/usr/local/cargo' \
    --change "ENV PATH=/usr/local/cargo/bin:/usr/local/rustup/toolchains/$version/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
    --message "stand-in for $RUST_IMAGE: Debian 12 + gcc + Rust $version (lab8 build-images.sh)" - "$RUST_IMAGE" >/dev/null
  rm -rf "$work"
}

# make_standins: every base image the Dockerfiles name that is neither here
# nor pullable gets a local stand-in under that name.
make_standins() {
  local image
  for image in "$RUST_IMAGE" "$RUNTIME_IMAGE" "$REDIS_IMAGE" "$KUBECTL_BINARY_IMAGE" "$DEBIAN_IMAGE"; do
    docker image inspect "$image" >/dev/null 2>&1 && continue
    docker pull -q "$image" >/dev/null 2>&1 && continue
    log "no $image (no registry): making a local stand-in"
    case $image in
      "$RUST_IMAGE") make_rust_standin ;;
      "$RUNTIME_IMAGE") ensure_base_images; docker tag "$CC_BASE" "$image" ;;
      "$KUBECTL_BINARY_IMAGE") ensure_base_images; docker tag "$KUBECTL_BINARY" "$image" ;;
      *) ensure_base_images; docker tag "$REDIS_BASE" "$image" ;;   # a Debian 12 (redis, debian-slim)
    esac
  done
}

# The registry path: the Dockerfiles as committed, only the version passed.
build_registry_path() {
  log "building $PREFIX/build:$TAG in Docker (Rust builder, cargo-chef, BuildKit cache mounts)"
  "${DOCKER[@]}" build -f Dockerfiles/build.Dockerfile -t "$PREFIX/build:$TAG" . 2>&1 | tail -n 3
  [ "${PIPESTATUS[0]}" -eq 0 ] || die "the registry path's build stage failed"
  for svc in source mart model; do
    log "building $PREFIX/$svc:$TAG"
    "${DOCKER[@]}" build -q -f "Dockerfiles/$svc.Dockerfile" -t "$PREFIX/$svc:$TAG" \
      --build-arg BUILD_IMAGE="$PREFIX/build:$TAG" --build-arg VERSION="$TAG" . >/dev/null
  done
  for name in redis kubectl; do
    log "building $PREFIX/$name:$TAG"
    "${DOCKER[@]}" build -q -f "Dockerfiles/$name.Dockerfile" -t "$PREFIX/$name:$TAG" --build-arg VERSION="$TAG" . >/dev/null
  done
}

# The path of this machine: binaries built on the host, local bases.
build_prebuilt_path() {
  stage_binaries
  log "building $PREFIX/build:$TAG (the shared build stage)"
  "${DOCKER[@]}" build -q -f Dockerfiles/build.Dockerfile -t "$PREFIX/build:$TAG" --build-arg BINARIES=prebuilt . >/dev/null
  for svc in source mart model; do
    log "building $PREFIX/$svc:$TAG"
    "${DOCKER[@]}" build -q -f "Dockerfiles/$svc.Dockerfile" -t "$PREFIX/$svc:$TAG" --build-arg BUILD_IMAGE="$PREFIX/build:$TAG" \
      --build-arg RUNTIME_IMAGE="$CC_BASE" --build-arg VERSION="$TAG" . >/dev/null
  done
  log "building $PREFIX/redis:$TAG"
  "${DOCKER[@]}" build -q -f Dockerfiles/redis.Dockerfile -t "$PREFIX/redis:$TAG" \
    --build-arg REDIS_IMAGE="$REDIS_BASE" --build-arg VERSION="$TAG" . >/dev/null
  log "building $PREFIX/kubectl:$TAG"
  "${DOCKER[@]}" build -q -f Dockerfiles/kubectl.Dockerfile -t "$PREFIX/kubectl:$TAG" \
    --build-arg KUBECTL_BINARY_IMAGE="$KUBECTL_BINARY" --build-arg BASE_IMAGE="$REDIS_BASE" --build-arg VERSION="$TAG" . >/dev/null
}

stage_binaries() {
  build
  mkdir -p build/bin
  for svc in source mart model; do
    # Stripped copies: symbols are for profiling the host build, not for images.
    strip -o "build/bin/lab8-$svc" "$LAB8_BIN/lab8-$svc"
  done
}

main() {
  ensure_docker
  pick_docker_client
  case ${LAB8_BUILD:-prebuilt} in
    prebuilt) ensure_base_images; build_prebuilt_path ;;
    registry) make_standins; build_registry_path ;;
    *) die "LAB8_BUILD must be prebuilt or registry, not '$LAB8_BUILD'" ;;
  esac
  printf '%-30s %10s\n' image size
  for name in source mart model redis kubectl; do
    local bytes; bytes=$(docker image inspect --format '{{.Size}}' "$PREFIX/$name:$TAG")
    awk -v n="$PREFIX/$name:$TAG" -v b="$bytes" 'BEGIN { printf "%-30s %7.1f MB\n", n, b / 1e6 }'
  done
}

main "$@"
