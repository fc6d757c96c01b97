#!/usr/bin/env bash
# What the Gateway API conformance run needs, built here from Go modules (no registry is
# reachable) and kept in a cache outside the repository, per suite version:
#   crds-{standard,experimental}.yaml  the CRDs of sigs.k8s.io/gateway-api at the version
#                              tests/gateway/suite/go.mod pins, per channel
#   conformance.test           the suite (sigs.k8s.io/gateway-api/conformance), compiled with
#                              `go test -c` from our small module tests/gateway/suite
#   images/echo-basic.tar      the suite's echo server (echo-basic/ of the same module), tagged
#                              with every registry.k8s.io/gateway-api/echo-basic name the
#                              suite's manifests use
#   images/coredns-TAG.tar     CoreDNS from its Go module at the tag the base manifests name
#   env                        where they are and what they are called
# Prints the cache directory. Needs Go (.ci/run puts it in /usr/local/go) and dockerd for the
# images (scripts/base-images.sh starts it). Rebuilds only what is missing.
#
#   bash tests/gateway/build.sh
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=../go-cache.sh
. "$HERE/../go-cache.sh"
SUITE_MOD=$HERE/suite
VERSION=$(awk '{for (i = 1; i < NF; i++) if ($i == "sigs.k8s.io/gateway-api/conformance") print $(i + 1)}' "$SUITE_MOD/go.mod")
[ -n "$VERSION" ] || { echo "tests/gateway/suite/go.mod pins no sigs.k8s.io/gateway-api/conformance" >&2; exit 1; }
CACHE="${PORTICO_GATEWAY_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/portico-gateway}/$VERSION"
DOCKER=docker
[ -x /usr/bin/docker ] && DOCKER=/usr/bin/docker
export DOCKER_BUILDKIT=0
log() { echo "[gateway-build] $*" >&2; }

go_cache_lock "$CACHE"
mkdir -p "$CACHE/images"
go_needed "the Gateway API conformance suite and its images" "$CACHE/conformance.test"

# Where a module of the suite's build list is on disk (downloaded if need be).
module_dir() {
  (cd "$SUITE_MOD" && go mod download -json "$1" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",*$/\1/p')
}
conf_dir=$(module_dir "sigs.k8s.io/gateway-api/conformance@$VERSION")
api_version=$(cd "$SUITE_MOD" && go list -m -f '{{.Version}}' sigs.k8s.io/gateway-api)
api_dir=$(module_dir "sigs.k8s.io/gateway-api@$api_version")

# The CRDs the suite expects (it compares their bundle-version annotation with its own), both
# channels: conformance.sh applies one.
for channel in standard experimental; do
  [ -f "$CACHE/crds-$channel.yaml" ] && continue
  for f in "$api_dir"/config/crd/$channel/gateway.networking*.yaml; do
    echo "---"
    cat "$f"
  done > "$CACHE/crds-$channel.yaml.tmp"
  mv "$CACHE/crds-$channel.yaml.tmp" "$CACHE/crds-$channel.yaml"
  log "CRDs of sigs.k8s.io/gateway-api $api_version ($channel channel): $(grep -c '^kind: CustomResourceDefinition' "$CACHE/crds-$channel.yaml")"
done

# The suite, from tests/gateway/suite; rebuilt when that module changes.
stamp=$(cat "$SUITE_MOD"/go.mod "$SUITE_MOD"/go.sum "$SUITE_MOD"/*.go | sha256sum | cut -c1-16)
if [ ! -x "$CACHE/conformance.test" ] || [ "$(cat "$CACHE/conformance.test.stamp" 2>/dev/null)" != "$stamp" ]; then
  start=$SECONDS
  (cd "$SUITE_MOD" && CGO_ENABLED=0 go test -c -trimpath -ldflags "-s -w" -o "$CACHE/conformance.test.tmp" .)
  mv "$CACHE/conformance.test.tmp" "$CACHE/conformance.test"
  echo "$stamp" > "$CACHE/conformance.test.stamp"
  log "conformance suite $VERSION compiled in $((SECONDS - start)) s"
fi

# An image from a static binary in a scratch image under several names, saved as one
# docker-archive tar (what `ctr images import` reads).
image_from() {
  local bin=$1 user=$2 tar=$3 ctx n
  shift 3
  ctx=$(mktemp -d)
  cp "$bin" "$ctx/$(basename "$bin")"
  printf 'FROM scratch\nCOPY %s /%s\nUSER %s\nENTRYPOINT ["/%s"]\n' \
    "$(basename "$bin")" "$(basename "$bin")" "$user" "$(basename "$bin")" > "$ctx/Dockerfile"
  local tags=()
  for n in "$@"; do tags+=(-t "$n"); done
  $DOCKER build -q "${tags[@]}" "$ctx" >/dev/null
  rm -rf "$ctx"
  $DOCKER save -o "$tar.tmp" "$@"
  mv "$tar.tmp" "$tar"
}

# Every image name the suite's manifests (base and per test) run.
images=$(cat "$conf_dir"/base/*.yaml "$conf_dir"/tests/*.yaml | sed -n 's/^[[:space:]]*image:[[:space:]]*\([^[:space:]]*\).*/\1/p' | sort -u)
echo_names=$(echo "$images" | grep '^registry.k8s.io/gateway-api/echo-basic:' || true)
coredns_name=$(echo "$images" | grep '^registry.k8s.io/coredns/coredns:' | head -1)
[ -n "$echo_names" ] && [ -n "$coredns_name" ] || { echo "the suite's manifests name no echo-basic or CoreDNS image" >&2; exit 1; }
other=$(echo "$images" | grep -v -e '^registry.k8s.io/gateway-api/echo-basic:' -e '^registry.k8s.io/coredns/coredns:' || true)
[ -z "$other" ] || log "not built (no profile we run uses them): $(echo "$other" | tr '\n' ' ')"

# echo-basic: one binary, from this suite version's source, under every tag the manifests use.
echo_stamp=$(echo "$VERSION $echo_names" | sha256sum | cut -c1-16)
if [ ! -f "$CACHE/images/echo-basic.tar" ] || [ "$(cat "$CACHE/images/echo-basic.stamp" 2>/dev/null)" != "$echo_stamp" ]; then
  start=$SECONDS
  out=$(mktemp -d)
  (cd "$SUITE_MOD" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$out/echo-basic" sigs.k8s.io/gateway-api/conformance/echo-basic)
  # shellcheck disable=SC2086
  image_from "$out/echo-basic" 65532:65532 "$CACHE/images/echo-basic.tar" $echo_names
  rm -rf "$out"
  echo "$echo_stamp" > "$CACHE/images/echo-basic.stamp"
  log "echo-basic ($VERSION source) built in $((SECONDS - start)) s as $(echo "$echo_names" | tr '\n' ' ')"
fi

# CoreDNS at the tag the base manifests name, from its own module (root: it binds port 53
# with the NET_BIND_SERVICE capability the manifests add after dropping all others).
coredns_tag=${coredns_name##*:}
if [ ! -f "$CACHE/images/coredns-$coredns_tag.tar" ]; then
  start=$SECONDS
  out=$(mktemp -d)
  # `go get` lists every module it adds: kept in a log, shown when the build fails.
  if ! go_build_module "$CACHE/src/coredns-$coredns_tag" "github.com/coredns/coredns@$coredns_tag" github.com/coredns/coredns "$out/coredns" > "$CACHE/coredns-build.log" 2>&1; then
    tail -20 "$CACHE/coredns-build.log" >&2
    exit 1
  fi
  image_from "$out/coredns" 0:0 "$CACHE/images/coredns-$coredns_tag.tar" "$coredns_name"
  rm -rf "$out"
  log "CoreDNS $coredns_tag built in $((SECONDS - start)) s"
fi

cat > "$CACHE/env" <<ENV
GATEWAY_API_VERSION=$api_version
CONFORMANCE_VERSION=$VERSION
CRDS_STANDARD=$CACHE/crds-standard.yaml
CRDS_EXPERIMENTAL=$CACHE/crds-experimental.yaml
SUITE=$CACHE/conformance.test
IMAGES_DIR=$CACHE/images
ENV
echo "$CACHE"
