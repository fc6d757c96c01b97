#!/usr/bin/env bash
# Builds oauth2-proxy from its Go module and a small OpenID Connect provider (mockoidc/main.go,
# wrapping github.com/oauth2-proxy/mockoidc) into a cache outside the repository, or reuses
# them when they are already there. Prints the directory holding `oauth2-proxy` and `mockoidc`.
# Used by tests/oauth2_proxy.rs (about 3 minutes on 2 cores the first time).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/../go-cache.sh"

OAUTH2_PROXY_VERSION="${PORTICO_OAUTH2_PROXY_VERSION:-v7.15.6}"
MOCKOIDC_VERSION="${PORTICO_MOCKOIDC_VERSION:-v0.0.0-20261103160011-e06ed0b7cb7f}"
CACHE="${PORTICO_OAUTH2_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/portico-oauth2}"
BIN="$CACHE/bin/$OAUTH2_PROXY_VERSION-$MOCKOIDC_VERSION"
SRC="$CACHE/src/mockoidc-$MOCKOIDC_VERSION"
mkdir -p "$BIN" "$SRC"

go_cache_lock "$CACHE"
# The provider's source lives in the repository, its module (and go.sum) in the cache, with a
# copy of the source to tell when it changed.
cmp -s "$HERE/mockoidc/main.go" "$SRC/main.go" || rm -f "$BIN/mockoidc"
go_needed "the oauth2_proxy test builds oauth2-proxy $OAUTH2_PROXY_VERSION and mockoidc once into $CACHE (about 3 minutes); install Go 1.26 or later, or see README 'Tests'" \
  "$BIN/oauth2-proxy" "$BIN/mockoidc"

if [ ! -x "$BIN/mockoidc" ]; then
  echo "[oauth2] building mockoidc $MOCKOIDC_VERSION (first time only)" >&2
  cp "$HERE/mockoidc/main.go" "$SRC/main.go"
  go_build_module "$SRC" "github.com/oauth2-proxy/mockoidc@$MOCKOIDC_VERSION" . "$BIN/mockoidc"
fi
if [ ! -x "$BIN/oauth2-proxy" ]; then
  echo "[oauth2] building oauth2-proxy $OAUTH2_PROXY_VERSION (first time only)" >&2
  start=$SECONDS
  go_build_module "$CACHE/src/oauth2-proxy-$OAUTH2_PROXY_VERSION" "github.com/oauth2-proxy/oauth2-proxy/v7@$OAUTH2_PROXY_VERSION" \
    github.com/oauth2-proxy/oauth2-proxy/v7 "$BIN/oauth2-proxy"
  echo "[oauth2] oauth2-proxy built in $((SECONDS - start)) s" >&2
fi
echo "$BIN"
