#!/usr/bin/env bash
# Builds Portico's container image with the repository's Dockerfile, as users do, and checks it.
#
#   bash scripts/image.sh            # as root; IMAGE (default portico:dev) is the tag
#
# Makes the Dockerfile's base images first when no registry could give them
# (scripts/base-images.sh), then `docker build`, then checks that the image runs as non-root
# and prints its version and size.
set -euo pipefail
cd "$(dirname "$0")/.."
IMAGE=${IMAGE:-portico:dev}
DOCKER=docker
[ -x /usr/bin/docker ] && DOCKER=/usr/bin/docker

bash scripts/base-images.sh

# Debian's docker has no buildx plugin; the classic builder reads the same Dockerfile.
export DOCKER_BUILDKIT=0
$DOCKER buildx version >/dev/null 2>&1 && export DOCKER_BUILDKIT=1
start=$SECONDS
$DOCKER build -t "$IMAGE" .
echo "[image] $IMAGE built in $((SECONDS - start)) s"

user=$($DOCKER image inspect -f '{{.Config.User}}' "$IMAGE")
case $user in
  "" | 0 | 0:* | root | root:*) echo "$IMAGE runs as root (USER '$user')" >&2; exit 1 ;;
esac
$DOCKER run --rm "$IMAGE" --version
# The process itself, not just the image's metadata: its uid inside a running container.
cid=$($DOCKER run -d --rm "$IMAGE" --manifests /tmp --http-addr 127.0.0.1:8080 --https-addr 127.0.0.1:8443 --admin-addr 127.0.0.1:10254)
uid=""
for _ in $(seq 1 50); do
  pid=$($DOCKER inspect -f '{{.State.Pid}}' "$cid" 2>/dev/null || true)
  [ -n "$pid" ] && [ "$pid" != 0 ] && uid=$(awk '/^Uid:/ {print $2}' "/proc/$pid/status" 2>/dev/null || true)
  [ -n "$uid" ] && break
  sleep 0.1
done
$DOCKER rm -f "$cid" >/dev/null
[ -n "$uid" ] && [ "$uid" != 0 ] || { echo "the container's process runs as uid '$uid'" >&2; exit 1; }
size=$($DOCKER image inspect -f '{{.Size}}' "$IMAGE")
echo "[image] $IMAGE: user $user (process uid $uid), $((size / 1000 / 1000)) MB"
