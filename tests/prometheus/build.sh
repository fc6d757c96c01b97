#!/usr/bin/env bash
# Builds `promtool` from the Prometheus Go module (github.com/prometheus/prometheus) into a
# cache outside the repository, or reuses it when it is already there. Prints the directory
# holding `promtool`. Used by tests/monitoring.rs to check and unit-test the alerting rules.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/../go-cache.sh"

PROM_VERSION="${PORTICO_PROMETHEUS_VERSION:-v0.316.0}"
CACHE="${PORTICO_PROMETHEUS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/portico-prometheus}"
BIN="$CACHE/bin/$PROM_VERSION"
mkdir -p "$BIN"

go_cache_lock "$CACHE"
go_needed "the monitoring test builds promtool $PROM_VERSION once into $CACHE (several minutes); install Go 1.26 or later, or see README 'Tests'" \
  "$BIN/promtool"

if [ ! -x "$BIN/promtool" ]; then
  echo "[promtool] building promtool $PROM_VERSION (first time only)" >&2
  start=$SECONDS
  go_build_module "$CACHE/src/prometheus-$PROM_VERSION" \
    "github.com/prometheus/prometheus/cmd/promtool@$PROM_VERSION" \
    github.com/prometheus/prometheus/cmd/promtool "$BIN/promtool"
  echo "[promtool] promtool built in $((SECONDS - start)) s" >&2
fi
echo "$BIN"
