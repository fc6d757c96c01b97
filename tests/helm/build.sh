#!/usr/bin/env bash
# Builds `helm` from its Go module (helm.sh/helm/v4) into a cache outside the repository, or
# reuses it when it is already there. Prints the directory holding `helm`.
# Used by tests/helm.rs (a few minutes on 2 cores the first time).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/../go-cache.sh"

HELM_VERSION="${PORTICO_HELM_VERSION:-v4.3.2}"
CACHE="${PORTICO_HELM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/portico-helm}"
BIN="$CACHE/bin/$HELM_VERSION"
mkdir -p "$BIN"

go_cache_lock "$CACHE"
go_needed "the helm test builds helm $HELM_VERSION once into $CACHE (a few minutes); install Go 1.26 or later, or see README 'Tests'" \
  "$BIN/helm"

if [ ! -x "$BIN/helm" ]; then
  echo "[helm] building helm $HELM_VERSION (first time only)" >&2
  start=$SECONDS
  # `go get` of the command package (not the module) records the go.sum lines of its imports.
  go_build_module "$CACHE/src/helm-$HELM_VERSION" "helm.sh/helm/v4/cmd/helm@$HELM_VERSION" helm.sh/helm/v4/cmd/helm "$BIN/helm"
  echo "[helm] helm built in $((SECONDS - start)) s" >&2
fi
echo "$BIN"
