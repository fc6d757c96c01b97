#!/usr/bin/env bash
# Builds kube-apiserver and etcd from their Go modules into a cache outside the repository,
# or reuses them when they are already there. Prints the cache directory on success.
#
#   build-control-plane.sh          # etcd, kube-apiserver, kubectl
#   build-control-plane.sh --node   # also kubelet, kube-controller-manager, kube-scheduler,
#                                   # kube-proxy (the one-node cluster of tests/cluster/node.sh)
set -euo pipefail
. "$(dirname "$0")/../go-cache.sh"

K8S_VERSION="${PORTICO_K8S_VERSION:-v1.35.4}"
ETCD_VERSION="${PORTICO_ETCD_VERSION:-v3.6.16}"
CACHE="${PORTICO_CP_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/portico-control-plane}"
BIN="$CACHE/bin/$K8S_VERSION"
mkdir -p "$BIN"

log() { echo "[control-plane] $*" >&2; }

build_apiserver() {
  local mod="$CACHE/src/kube-apiserver-$K8S_VERSION"
  mkdir -p "$mod"
  cd "$mod"
  [ -f go.mod ] || go mod init portico.local/kube-apiserver >/dev/null 2>&1
  # k8s.io/kubernetes requires its staging modules at v0.0.0 and replaces them with
  # ./staging paths that do not exist for a consumer; point each at its published tag.
  local gomod
  gomod="$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",*$/\1/p')"
  local minor patch
  minor="$(echo "$K8S_VERSION" | cut -d. -f2)"
  patch="$(echo "$K8S_VERSION" | cut -d. -f3)"
  grep -E '^[[:space:]]*k8s.io/[^ ]+ => \./staging/' "$gomod" | awk '{print $1}' | sort -u | while read -r m; do
    go mod edit -replace "$m=$m@v0.$minor.$patch"
  done
  go get "k8s.io/kubernetes/cmd/kube-apiserver@$K8S_VERSION"
  CGO_ENABLED=0 go build -trimpath \
    -ldflags "-s -w -X k8s.io/component-base/version.gitVersion=$K8S_VERSION -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor" \
    -o "$BIN/kube-apiserver.tmp" k8s.io/kubernetes/cmd/kube-apiserver
  mv "$BIN/kube-apiserver.tmp" "$BIN/kube-apiserver"
}

# kubectl and the node components from the same module and version, so nothing skews.
build_k8s_cmd() {
  local name=$1
  cd "$CACHE/src/kube-apiserver-$K8S_VERSION"
  local minor
  minor="$(echo "$K8S_VERSION" | cut -d. -f2)"
  go get "k8s.io/kubernetes/cmd/$name@$K8S_VERSION"
  CGO_ENABLED=0 go build -trimpath \
    -ldflags "-s -w -X k8s.io/component-base/version.gitVersion=$K8S_VERSION -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor" \
    -o "$BIN/$name.tmp" "k8s.io/kubernetes/cmd/$name"
  mv "$BIN/$name.tmp" "$BIN/$name"
}

build_etcd() {
  go_build_module "$CACHE/src/etcd-$ETCD_VERSION" "go.etcd.io/etcd/server/v3@$ETCD_VERSION" go.etcd.io/etcd/server/v3 "$BIN/etcd"
}

go_cache_lock "$CACHE"
go_needed "the kube tests build kube-apiserver, etcd and kubectl once into $CACHE (about 6 minutes); install Go 1.21 or later, or see README 'Tests'" \
  "$BIN/etcd" "$BIN/kube-apiserver" "$BIN/kubectl"

if [ ! -x "$BIN/etcd" ]; then
  log "building etcd $ETCD_VERSION (first time only)"
  start=$SECONDS; build_etcd; log "etcd built in $((SECONDS - start)) s"
fi
if [ ! -x "$BIN/kube-apiserver" ]; then
  log "building kube-apiserver $K8S_VERSION (first time only)"
  start=$SECONDS; build_apiserver; log "kube-apiserver built in $((SECONDS - start)) s"
fi
cmds=(kubectl)
[ "${1:-}" = --node ] && cmds+=(kube-controller-manager kube-scheduler kube-proxy kubelet)
for name in "${cmds[@]}"; do
  if [ ! -x "$BIN/$name" ]; then
    log "building $name $K8S_VERSION (first time only)"
    start=$SECONDS; build_k8s_cmd "$name"; log "$name built in $((SECONDS - start)) s"
  fi
done
echo "$BIN"
