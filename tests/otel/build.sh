#!/usr/bin/env bash
# Builds the OTLP/HTTP trace receiver of tests/tracing.rs (receiver/main.go, decoding with the
# OpenTelemetry Collector's go.opentelemetry.io/collector/pdata) into a cache outside the
# repository, or reuses it when it is already there. Prints the directory holding `receiver`.
# About 1 minute on 2 cores the first time (see docs/tracing.md).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/../go-cache.sh"

PDATA_VERSION="${PORTICO_OTEL_PDATA_VERSION:-v1.71.0}"
CACHE="${PORTICO_OTEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/portico-otel}"
BIN="$CACHE/bin/pdata-$PDATA_VERSION"
SRC="$CACHE/src/receiver-$PDATA_VERSION"
mkdir -p "$BIN" "$SRC"

go_cache_lock "$CACHE"
# The receiver's source lives in the repository, its module (and go.sum) in the cache, with a
# copy of the source to tell when it changed.
cmp -s "$HERE/receiver/main.go" "$SRC/main.go" || rm -f "$BIN/receiver"
go_needed "the tracing test builds its OTLP receiver (go.opentelemetry.io/collector/pdata $PDATA_VERSION) once into $CACHE (about a minute); install Go 1.26 or later, or see README 'Tests'" \
  "$BIN/receiver"

if [ ! -x "$BIN/receiver" ]; then
  echo "[otel] building the OTLP receiver on pdata $PDATA_VERSION (first time only)" >&2
  start=$SECONDS
  cp "$HERE/receiver/main.go" "$SRC/main.go"
  # `go get` of the package (not the module) records the go.sum lines of its imports.
  go_build_module "$SRC" "go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp@$PDATA_VERSION" . "$BIN/receiver"
  echo "[otel] receiver built in $((SECONDS - start)) s" >&2
fi
echo "$BIN"
