#!/usr/bin/env bash
# Prints the directory holding the Gateway API CRDs of the sigs.k8s.io/gateway-api Go module,
# of the standard channel or, with PORTICO_GATEWAY_API_CHANNEL=experimental, the experimental
# one, copied once into the control plane's cache outside the repository (then Go is needed
# no more).
#
#   kubectl apply --server-side -f "$(bash tests/gateway/crds.sh)"
set -euo pipefail
. "$(dirname "$0")/../go-cache.sh"

VERSION="${PORTICO_GATEWAY_API_VERSION:-v1.6.3}"
CACHE="${PORTICO_CP_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/portico-control-plane}"
CHANNEL="${PORTICO_GATEWAY_API_CHANNEL:-standard}"
case $CHANNEL in standard | experimental) ;; *) echo "PORTICO_GATEWAY_API_CHANNEL is standard or experimental" >&2; exit 2 ;; esac
OUT="$CACHE/gateway-api/$VERSION/$CHANNEL"

go_cache_lock "$CACHE"
if [ ! -f "$OUT/.done" ]; then
  go_needed "the Gateway API tests take the CRDs from the sigs.k8s.io/gateway-api Go module" "$OUT/.done"
  mod="$CACHE/src/gateway-api"
  mkdir -p "$mod"
  dir="$(
    cd "$mod"
    [ -f go.mod ] || go mod init portico.local/gateway-api >/dev/null 2>&1
    go mod download -json "sigs.k8s.io/gateway-api@$VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",*$/\1/p'
  )"
  [ -d "$dir/config/crd/$CHANNEL" ] || { echo "no config/crd/$CHANNEL in sigs.k8s.io/gateway-api@$VERSION" >&2; exit 1; }
  rm -rf "$OUT"
  mkdir -p "$OUT"
  # The CRDs only: the module's ValidatingAdmissionPolicy that guards upgrades is no part of them.
  cp "$dir"/config/crd/"$CHANNEL"/gateway.networking.k8s.io_*.yaml "$OUT"/
  rm -f "$OUT"/gateway.networking.k8s.io_vap_*.yaml
  chmod u+w "$OUT"/*.yaml
  touch "$OUT/.done"
fi
echo "$OUT"
