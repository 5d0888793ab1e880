#!/usr/bin/env bash
# gen-secrets.sh OVERLAY: a random Redis password for an overlay's
# secretGenerator (k8s/overlays/OVERLAY/secrets/, git-ignored). Keeps an
# existing one, so re-running never rotates a password under a running cluster.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
overlay=${1:?usage: gen-secrets.sh OVERLAY}
dir=$LAB8_ROOT/k8s/overlays/$overlay/secrets
[ -d "$LAB8_ROOT/k8s/overlays/$overlay" ] || die "no overlay $overlay"
mkdir -p "$dir"; chmod 700 "$dir"
if [ ! -s "$dir/redis-password" ]; then
  (umask 077; head -c 24 /dev/urandom | base64 | tr -d '/+=\n' >"$dir/redis-password")
  log "generated a Redis password for overlay $overlay"
fi
(umask 077; printf 'requirepass %s\n' "$(cat "$dir/redis-password")" >"$dir/redis-auth.conf")
