#!/usr/bin/env bash
# Builds tests/grafana/check.go (Grafana's dashboard schema, as the Apache-licensed Grafana
# Foundation SDK generates it, applied strictly to dashboard JSON) into a cache outside the
# repository, or reuses it when check.go has not changed. Prints the directory holding `check`.
# Used by tests/monitoring.rs.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/../go-cache.sh"

SDK_VERSION="${PORTICO_GRAFANA_SDK_VERSION:-v0.0.22}"
CACHE="${PORTICO_GRAFANA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/portico-grafana}"
SUM=$(sha256sum "$HERE/check.go" | cut -c1-16)
BIN="$CACHE/bin/$SDK_VERSION-$SUM"
mkdir -p "$BIN"

go_cache_lock "$CACHE"
go_needed "the monitoring test builds its Grafana schema check once into $CACHE (about 2 minutes); install Go 1.26 or later, or see README 'Tests'" \
  "$BIN/check"

if [ ! -x "$BIN/check" ]; then
  echo "[grafana] building the dashboard schema check (Grafana Foundation SDK $SDK_VERSION)" >&2
  start=$SECONDS
  src="$CACHE/src/check-$SDK_VERSION"
  mkdir -p "$src"
  cp "$HERE/check.go" "$src/main.go"
  (
    cd "$src"
    [ -f go.mod ] || go mod init portico.local/grafana-check >/dev/null 2>&1
    go get "github.com/grafana/grafana-foundation-sdk/go@$SDK_VERSION"
    CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$BIN/check.tmp" .
  )
  mv "$BIN/check.tmp" "$BIN/check"
  echo "[grafana] built in $((SECONDS - start)) s" >&2
fi
echo "$BIN"
