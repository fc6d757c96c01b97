#!/usr/bin/env bash
# Makes the base images the Dockerfile's FROM lines name, where no container registry is
# reachable (this project's machines and CI), so that the Dockerfile users build stays
# unchanged:
#   rust:VERSION-bookworm              Debian bookworm (debootstrap) with the compilers and tools of
#                                      buildpack-deps, and this machine's rustup toolchain VERSION
#                                      in /usr/local/rustup and /usr/local/cargo, as the official image
#   gcr.io/distroless/cc-debian12:nonroot   glibc, libgcc, libstdc++, libssl3, CA certificates,
#                                      tzdata, the nonroot user 65532; no shell, no package manager
# Both are tagged with those names with `docker import`. Starts dockerd first if none answers.
#
#   bash scripts/base-images.sh          # as root; skips images it already made
#   FORCE=1 bash scripts/base-images.sh  # make them again
set -euo pipefail
cd "$(dirname "$0")/.."

CACHE=${PORTICO_IMAGE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/portico-images}
mkdir -p "$CACHE"
# Debian's client matches Debian's daemon; another docker client on PATH may be far newer.
DOCKER=docker
[ -x /usr/bin/docker ] && DOCKER=/usr/bin/docker
# Bumped when what the images hold changes, so that cached images are made again.
STAMP=portico-base-3

log() { echo "[base-images] $*" >&2; }

need=()
command -v dockerd >/dev/null || need+=(docker.io)
command -v debootstrap >/dev/null || need+=(debootstrap)
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  DOCKER=/usr/bin/docker
fi

if ! $DOCKER info >/dev/null 2>&1; then
  log "starting dockerd (log: $CACHE/dockerd.log)"
  # Its own session, so that it outlives this script; CI ends it with everything else.
  setsid dockerd > "$CACHE/dockerd.log" 2>&1 < /dev/null &
  for _ in $(seq 1 100); do $DOCKER info >/dev/null 2>&1 && break; sleep 0.3; done
  $DOCKER info >/dev/null 2>&1 || { tail -20 "$CACHE/dockerd.log" >&2; echo "dockerd did not start" >&2; exit 1; }
fi

rust_image=$(awk '$1 == "FROM" {print $2; exit}' Dockerfile)
runtime_image=$(awk '$1 == "FROM" {img = $2} END {print img}' Dockerfile)
case $rust_image in
  rust:*-bookworm) toolchain=${rust_image#rust:}; toolchain=${toolchain%-bookworm} ;;
  *) echo "the build stage's base image $rust_image is not rust:VERSION-bookworm" >&2; exit 1 ;;
esac
[ "$runtime_image" = gcr.io/distroless/cc-debian12:nonroot ] ||
  { echo "the runtime image $runtime_image is not the distroless one this script makes" >&2; exit 1; }

made_here() { [ "$($DOCKER image inspect -f '{{index .Config.Labels "dev.portico.base"}}' "$1" 2>/dev/null)" = "$STAMP" ]; }
if [ -z "${FORCE:-}" ] && made_here "$rust_image" && made_here "$runtime_image"; then
  log "$rust_image and $runtime_image are there"
  exit 0
fi

# A toolchain of this machine's that is Rust $toolchain (1.95 means any 1.95.x; here it may be
# installed as stable or 1.95.0); rustup installs it when none is.
find_toolchain() {
  local t
  for t in $(rustup toolchain list | awk '{print $1}'); do
    if rustup run "$t" rustc --version 2>/dev/null | grep -qE "^rustc ${toolchain//./\\.}[. ]"; then
      echo "$t"
      return
    fi
  done
}
tc=$(find_toolchain)
if [ -z "$tc" ]; then
  rustup toolchain install "$toolchain" --profile minimal >&2
  tc=$(find_toolchain)
fi
sysroot=$(rustup run "$tc" rustc --print sysroot)
rustc_version=$(rustup run "$tc" rustc --version | awk '{print $2}')
log "Rust $toolchain: toolchain $tc, rustc $rustc_version ($sysroot)"

root=$CACHE/bookworm
unmount() { for m in proc dev/pts; do umount "$root/$m" 2>/dev/null || true; done; }
trap unmount EXIT
unmount
if grep -q " $root/" /proc/mounts; then echo "something is still mounted under $root" >&2; exit 1; fi
rm -rf --one-file-system "$root"

start=$SECONDS
# The mirror this machine's apt uses, so that the image's apt-get (the Dockerfile runs one)
# reaches the same place.
mirror=$(sed -n 's/^URIs: *\(http[^ ]*debian\)\/*$/\1/p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -1)
mirror=${mirror:-http://deb.debian.org/debian}
log "debootstrap bookworm from $mirror"
# buildpack-deps:bookworm's tools that a Rust build reaches for (the official image's base).
debootstrap --variant=minbase \
  --include=ca-certificates,curl,wget,gnupg,git,gcc,g++,make,libc6-dev,pkg-config,libssl-dev,procps,xz-utils,file,tzdata,netbase,libgomp1 \
  bookworm "$root" "$mirror" > "$CACHE/debootstrap.log" 2>&1 || { tail "$CACHE/debootstrap.log" >&2; exit 1; }
# The apt sources Debian's own images carry, pointing at the same mirror.
rm -f "$root/etc/apt/sources.list"
cat > "$root/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $mirror
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: ${mirror%/debian}/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
# As in Debian's container images: packages do not start services.
printf '#!/bin/sh\nexit 101\n' > "$root/usr/sbin/policy-rc.d"
chmod +x "$root/usr/sbin/policy-rc.d"
cp /etc/resolv.conf "$root/etc/resolv.conf"
mount -t proc proc "$root/proc"

log "distroless-like runtime root"
rt=$CACHE/distroless
rm -rf "$rt"
mkdir -p "$rt"
# Debian's files for what distroless/cc-debian12 holds, taken from the packages themselves,
# the versions the bookworm root has.
pkgs="base-files netbase tzdata libc6 libgcc-s1 libstdc++6 libgomp1 libssl3"
chroot "$root" sh -c "apt-get update -qq && mkdir -p /tmp/debs && cd /tmp/debs && apt-get download -qq $pkgs" >/dev/null
for deb in "$root"/tmp/debs/*.deb; do dpkg-deb -x "$deb" "$rt"; done
rm -rf "$root/tmp/debs" "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin
# Mozilla's bundle only, as distroless ships it (before this machine's CAs are added below).
mkdir -p "$rt/etc/ssl/certs"
cp "$root/etc/ssl/certs/ca-certificates.crt" "$rt/etc/ssl/certs/ca-certificates.crt"
printf 'root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' > "$rt/etc/passwd"
printf 'root:x:0:\nnobody:x:65534:\ntty:x:5:\nstaff:x:50:\nnonroot:x:65532:\n' > "$rt/etc/group"
mkdir -p "$rt/tmp" "$rt/root" "$rt/home/nonroot"
chmod 1777 "$rt/tmp"
chown 65532:65532 "$rt/home/nonroot"
rm -rf "$rt/usr/share/doc" "$rt/usr/share/man" "$rt/usr/share/info" "$rt/usr/share/lintian"
tar -C "$rt" -c . | $DOCKER import \
  --change 'USER 65532' --change 'WORKDIR /home/nonroot' \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt' \
  --change "LABEL dev.portico.base=$STAMP" - "$runtime_image" >/dev/null

log "Rust $toolchain into the bookworm root"
# Certificate authorities this machine trusts (a TLS-inspecting egress proxy's among them):
# the build stage fetches crates and rustup components through it.
cp -r /usr/local/share/ca-certificates/. "$root/usr/local/share/ca-certificates/" 2>/dev/null || true
chroot "$root" update-ca-certificates >/dev/null
mkdir -p "$root/usr/local/rustup/toolchains" "$root/usr/local/cargo/bin"
tc_dir="$root/usr/local/rustup/toolchains/$rustc_version-x86_64-unknown-linux-gnu"
mkdir -p "$tc_dir"
# The official image has the minimal profile: no HTML docs.
tar -C "$sysroot" --exclude=./share/doc -c . | tar -C "$tc_dir" -x
printf 'version = "12"\ndefault_toolchain = "%s-x86_64-unknown-linux-gnu"\nprofile = "minimal"\nauto_self_update = "disable"\n' \
  "$rustc_version" > "$root/usr/local/rustup/settings.toml"
cp "$(command -v rustup)" "$root/usr/local/cargo/bin/rustup"
for proxy in cargo rustc rustdoc rust-gdb rust-gdbgui rust-lldb cargo-clippy clippy-driver cargo-fmt rustfmt; do
  ln -f "$root/usr/local/cargo/bin/rustup" "$root/usr/local/cargo/bin/$proxy"
done
chmod -R a+w "$root/usr/local/rustup" "$root/usr/local/cargo"
chroot "$root" /usr/bin/env -i PATH=/usr/local/cargo/bin:/usr/bin:/bin RUSTUP_HOME=/usr/local/rustup \
  CARGO_HOME=/usr/local/cargo HOME=/root sh -c 'cargo --version && rustc --version' >&2
umount "$root/proc"
: > "$root/etc/resolv.conf"
: > "$root/etc/hostname"
tar -C "$root" -c . | $DOCKER import \
  --change 'ENV RUSTUP_HOME=/usr/local/rustup CARGO_HOME=/usr/local/cargo PATH=/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin RUST_VERSION='"$rustc_version" \
  --change 'CMD ["bash"]' \
  --change "LABEL dev.portico.base=$STAMP" - "$rust_image" >/dev/null
rm -rf --one-file-system "$root" "$rt"
log "made $rust_image and $runtime_image in $((SECONDS - start)) s"
$DOCKER image ls --format '{{.Repository}}:{{.Tag}} {{.Size}}' | grep -E "^(rust|gcr.io/distroless)" >&2
