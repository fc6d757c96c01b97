#!/usr/bin/env bash
# The container images the one-node cluster runs, built here (no registry is reachable) and
# kept as docker-archive tars in a cache outside the repository, ready for
# `ctr images import`:
#   registry.k8s.io/pause:TAG                      the sandbox image: Kubernetes' own pause.c
#                                                  from the k8s.io/kubernetes module, static
#   registry.k8s.io/e2e-test-images/agnhost:VER    the Kubernetes e2e test server (netexec,
#                                                  serve-hostname, ...) from the same module
#   portico:dev                                    saved from docker (scripts/image.sh builds it)
# Prints the directory of the tars. Needs dockerd (scripts/base-images.sh starts it).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
K8S_VERSION="${PORTICO_K8S_VERSION:-v1.35.4}"
CP_CACHE="${PORTICO_CP_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/portico-control-plane}"
CACHE="${PORTICO_NODE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/portico-node}/images"
PORTICO_IMAGE=${PORTICO_IMAGE:-portico:dev}
DOCKER=docker
[ -x /usr/bin/docker ] && DOCKER=/usr/bin/docker
export DOCKER_BUILDKIT=0
mkdir -p "$CACHE"
log() { echo "[node-images] $*" >&2; }

exec 9>"$CACHE/.lock"
flock 9

# The kubernetes module directory prepared by build-control-plane.sh (the staging replaces).
bash "$HERE/../e2e/build-control-plane.sh" >/dev/null
mod="$CP_CACHE/src/kube-apiserver-$K8S_VERSION"
k8s_src=$(cd "$mod" && go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",*$/\1/p')

# An image from a binary in a scratch image, saved as a docker-archive tar.
image_from() {
  local name=$1 bin=$2 user=$3 tar=$4 ctx
  ctx=$(mktemp -d)
  cp "$bin" "$ctx/$(basename "$bin")"
  printf 'FROM scratch\nCOPY %s /%s\nUSER %s\nENTRYPOINT ["/%s"]\n' \
    "$(basename "$bin")" "$(basename "$bin")" "$user" "$(basename "$bin")" > "$ctx/Dockerfile"
  $DOCKER build -q -t "$name" "$ctx" >/dev/null
  rm -rf "$ctx"
  $DOCKER save -o "$tar.tmp" "$name"
  mv "$tar.tmp" "$tar"
}

pause_tag=$(sed -n 's/^TAG ?= *//p' "$k8s_src/build/pause/Makefile")
if [ ! -f "$CACHE/pause-$pause_tag.tar" ]; then
  start=$SECONDS
  out=$(mktemp -d)
  gcc -Os -Wall -Werror -static -DVERSION="$pause_tag-$K8S_VERSION" -o "$out/pause" "$k8s_src/build/pause/linux/pause.c"
  image_from "registry.k8s.io/pause:$pause_tag" "$out/pause" 65535:65535 "$CACHE/pause-$pause_tag.tar"
  rm -rf "$out"
  log "pause $pause_tag built in $((SECONDS - start)) s"
fi

agnhost_tag=$(cat "$k8s_src/test/images/agnhost/VERSION")
if [ ! -f "$CACHE/agnhost-$agnhost_tag.tar" ]; then
  start=$SECONDS
  out=$(mktemp -d)
  (cd "$mod" && go get "k8s.io/kubernetes/test/images/agnhost@$K8S_VERSION" 2>/dev/null &&
    CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$out/agnhost" k8s.io/kubernetes/test/images/agnhost)
  image_from "registry.k8s.io/e2e-test-images/agnhost:$agnhost_tag" "$out/agnhost" 0:0 "$CACHE/agnhost-$agnhost_tag.tar"
  rm -rf "$out"
  log "agnhost $agnhost_tag built in $((SECONDS - start)) s"
fi

# Portico's image as docker has it now; saved again only when it changed.
safe=$(echo "$PORTICO_IMAGE" | tr '/:' '__')
if ! id=$($DOCKER image inspect -f '{{.Id}}' "$PORTICO_IMAGE" 2>/dev/null); then
  # The cluster still comes up; only Portico's pods would not start.
  log "no image $PORTICO_IMAGE in docker (scripts/image.sh builds it)"
  rm -f "$CACHE/$safe.tar" "$CACHE/$safe.id"
elif [ "$(cat "$CACHE/$safe.id" 2>/dev/null)" != "$id" ]; then
  $DOCKER save -o "$CACHE/$safe.tar.tmp" "$PORTICO_IMAGE"
  mv "$CACHE/$safe.tar.tmp" "$CACHE/$safe.tar"
  echo "$id" > "$CACHE/$safe.id"
fi
printf 'PAUSE_IMAGE=registry.k8s.io/pause:%s\nAGNHOST_IMAGE=registry.k8s.io/e2e-test-images/agnhost:%s\nPORTICO_IMAGE=%s\n' \
  "$pause_tag" "$agnhost_tag" "$PORTICO_IMAGE" > "$CACHE/images.env"
echo "$CACHE"
