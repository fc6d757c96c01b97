#!/usr/bin/env bash
# Carries out the build stage of the Dockerfile without a container engine, and checks the binary
# the image would hold.
#
#   bash scripts/image-build-stage.sh      # as root (chroot, mount); about ten minutes
#
# It makes a fresh Debian bookworm root like the stage's base image (debootstrap, then rustup
# with the toolchain the FROM line names), runs the stage's WORKDIR, COPY and RUN lines in it in
# order, and then checks /portico as the image's last stage would take it: it runs, has the
# capability to bind ports below 1024, needs no library distroless/cc lacks, and checks the
# quickstart manifests. ROOT (default /tmp/portico-image-root) is the directory it builds in;
# it is removed at the start and kept afterwards for a look.
set -euo pipefail
cd "$(dirname "$0")/.."
root=${ROOT:-/tmp/portico-image-root}

from=$(awk '$1 == "FROM" {print $2; exit}' Dockerfile)
case $from in
  rust:*-bookworm) toolchain=${from#rust:}; toolchain=${toolchain%-bookworm} ;;
  *) echo "the build stage's base image $from is not rust:VERSION-bookworm" >&2; exit 1 ;;
esac

command -v debootstrap >/dev/null ||
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap; }

# Only fresh proc and tmpfs mounts go into the root (debootstrap makes its device nodes), so
# nothing of this machine's is mounted there when it is removed.
unmount() { for m in tmp dev/shm proc; do umount "$root/$m" 2>/dev/null || true; done; }
trap unmount EXIT
unmount
if grep -q " $root/" /proc/mounts; then
  echo "something is still mounted under $root; not removing it" >&2
  exit 1
fi
rm -rf --one-file-system "$root"

echo "== base: Debian bookworm and Rust $toolchain, as $from"
debootstrap --variant=minbase bookworm "$root" http://deb.debian.org/debian > "$root.log" ||
  { tail "$root.log" >&2; exit 1; }
cp /etc/resolv.conf "$root/etc/"
# As in Debian's container images: packages do not start services.
printf '#!/bin/sh\nexit 101\n' > "$root/usr/sbin/policy-rc.d"
chmod +x "$root/usr/sbin/policy-rc.d"
mount -t proc proc "$root/proc"
mount -t tmpfs tmpfs "$root/dev/shm"
mount -t tmpfs tmpfs "$root/tmp"
# Certificate authorities this machine trusts (a TLS-inspecting egress proxy's among them).
cp -r /usr/local/share/ca-certificates/. "$root/usr/local/share/ca-certificates/" 2>/dev/null || true
in_root() { chroot "$root" /usr/bin/env -i HOME=/root PATH=/usr/local/cargo/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  RUSTUP_HOME=/usr/local/rustup CARGO_HOME=/usr/local/cargo /bin/sh -c "$1"; }
in_root "cat > /etc/apt/sources.list <<EOF
deb http://deb.debian.org/debian bookworm main
deb http://deb.debian.org/debian bookworm-updates main
deb http://deb.debian.org/debian-security bookworm-security main
EOF
apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
  ca-certificates curl gcc libc6-dev make git pkg-config libssl-dev procps >/dev/null"
cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
in_root "curl -sSf -o /tmp/rustup-init https://static.rust-lang.org/rustup/dist/x86_64-unknown-linux-gnu/rustup-init \
  && chmod +x /tmp/rustup-init && /tmp/rustup-init -y -q --no-modify-path --profile minimal \
  --default-toolchain $toolchain && rustc --version"

echo "== build stage"
# The stage's lines, continuation lines joined, up to the next FROM.
stage=$(awk '$1 == "FROM" {if (seen) exit; seen = 1; next} seen {print}' Dockerfile |
  sed -e '/^[[:space:]]*#/d' | sed -e ':a' -e '/\\$/N; s/\\\n//; ta')
wd=/
while IFS= read -r line; do
  [ -n "${line// /}" ] || continue
  read -r op rest <<< "$line"
  case $op in
    WORKDIR)
      wd=$rest
      mkdir -p "$root$wd" ;;
    COPY)
      read -r -a args <<< "$rest"
      dest=${args[-1]}
      [ "${dest:0:1}" = / ] || dest="$wd/$dest"
      for src in "${args[@]:0:${#args[@]}-1}"; do
        if [ -d "$src" ]; then
          mkdir -p "$root$dest"
          cp -a "$src/." "$root$dest/"
        else
          mkdir -p "$root$dest"
          cp -a "$src" "$root$dest/"
        fi
      done ;;
    RUN)
      echo "RUN ${rest:0:100}..."
      in_root "cd $wd && $rest" ;;
    *)
      echo "scripts/image-build-stage.sh does not carry out $op lines: $line" >&2
      exit 1 ;;
  esac
done <<< "$stage"

echo "== the binary the image takes"
binary=$(awk '$1 == "COPY" && $2 ~ /^--from=build/ {print $3}' Dockerfile)
in_root "$binary --version"
in_root "getcap $binary" | grep -q cap_net_bind_service || { echo "$binary lacks cap_net_bind_service" >&2; exit 1; }
# distroless/cc-debian12 holds glibc and libgcc_s, nothing else the binary could link.
libs=$(in_root "ldd $binary" | awk '$2 == "=>" {print $1}' | sort | tr '\n' ' ')
for lib in $libs; do
  case $lib in
    libc.so.* | libm.so.* | libgcc_s.so.* | libpthread.so.* | libdl.so.* | librt.so.*) ;;
    *) echo "$binary links $lib, which distroless/cc does not have" >&2; exit 1 ;;
  esac
done
echo "links: $libs"
in_root "cd /src && $binary check --manifests examples/quickstart" | tail -3
echo "the build stage of the Dockerfile built $binary"
