#!/usr/bin/env bash
# Profile-guided release build of Portico: target/pgo/release/portico.
#
#   bash scripts/build-pgo.sh
#
# 1. builds an instrumented binary (target/pgo-gen), 2. runs it as a proxy in front of nginx
# backends: the load benchmark's traffic (HTTP/1.1 keep-alive, HTTPS HTTP/1.1 and HTTP/2, new TLS
# connections with resumed and full handshakes), then request bodies, h2c and TLS upstreams,
# cookie affinity, an unreachable endpoint and the access log, 3. builds again with the recorded
# profile, so that the compiler lays out and inlines the request path by how it actually runs.
# Measured with `benches/instructions.sh` and cachegrind: about a fifth fewer instructions and
# two thirds fewer instruction-cache misses per proxied request than `cargo build --release`.
# Paths the training does not take stay correct, only not tuned. The container image is built
# this way (Dockerfile).
#
# Needs llvm-profdata of the LLVM version rustc is built on: rustup's llvm-tools component
# (added when missing) or, without rustup, apt's llvm-NN. The training run needs wrk, h2load,
# nginx, curl and openssl (installed with apt when missing).
set -euo pipefail
cd "$(dirname "$0")/.."
# With a profile, thin LTO over four codegen units ran fewer instructions than the plain
# build's fat LTO over one (benches/instructions.sh, 2026-12-06: 17,178 against 17,449 per
# proxied GET on request-path code that differed only in a static), and builds faster.
export CARGO_PROFILE_RELEASE_LTO=${CARGO_PROFILE_RELEASE_LTO:-thin}
export CARGO_PROFILE_RELEASE_CODEGEN_UNITS=${CARGO_PROFILE_RELEASE_CODEGEN_UNITS:-4}

missing=()
for t in wrk:wrk h2load:nghttp2-client nginx:nginx curl:curl openssl:openssl; do
  command -v "${t%%:*}" >/dev/null || missing+=("${t#*:}")
done
profdata="$(rustc --print sysroot)/lib/rustlib/$(rustc -vV | sed -n 's/^host: //p')/bin/llvm-profdata"
if [ ! -x "$profdata" ] && command -v rustup >/dev/null; then
  rustup component add llvm-tools >&2 || true
fi
if [ ! -x "$profdata" ]; then
  llvm=$(rustc -vV | sed -n 's/^LLVM version: \([0-9]*\).*/\1/p')
  profdata="llvm-profdata-$llvm"
  command -v "$profdata" >/dev/null || missing+=("llvm-$llvm")
fi
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
fi
"$profdata" --version | head -2

. benches/manifests.sh
bench_workdir portico-pgo
BACKEND=18280 HTTP=18284 HTTPS=18644

echo "== instrumented build"
RUSTFLAGS="-Cprofile-generate=$T/build-raw" cargo build --release --locked --bin portico --target-dir target/pgo-gen

mkdir -p "$T/raw"
# Beyond the benchmark's traffic, the training takes the other common paths: request bodies,
# cookie affinity, HTTP/2 (h2c) and TLS upstreams, an unreachable endpoint, the access log.
bench_backend "$T" "$BACKEND" "listen 127.0.0.1:$((BACKEND + 1)) http2; listen 127.0.0.1:$((BACKEND + 2)) ssl;"
{
  bench_route h2c "127.0.0.1:$((BACKEND + 1))" /h2c 'nginx.ingress.kubernetes.io/backend-protocol: H2C'
  bench_route tls "127.0.0.1:$((BACKEND + 2))" /tls 'nginx.ingress.kubernetes.io/backend-protocol: HTTPS'
  bench_route sticky "127.0.0.1:$BACKEND" /sticky 'nginx.ingress.kubernetes.io/affinity: cookie'
  bench_route unreachable 127.0.0.1:9 /unreachable
} > "$T/m/training.yaml"
head -c 16384 /dev/urandom > "$T/body"

nginx -c "$T/backend.conf" -e "$T/backend/error.log" &
pids+=($!)

# portico ARGS... starts the instrumented build in front of the backends.
portico() {
  LLVM_PROFILE_FILE="$T/raw/portico-%p.profraw" target/pgo-gen/release/portico --manifests "$T/m" \
    --http-addr "127.0.0.1:$HTTP" --https-addr "127.0.0.1:$HTTPS" --admin-addr 127.0.0.1:0 \
    --default-ssl-certificate bench/tls --worker-threads 1 --shutdown-grace 1s "$@" > "$T/portico.log" 2>&1 &
  proxy=$!
  pids+=($proxy)
  for _ in $(seq 100); do
    curl -s -o /dev/null "http://127.0.0.1:$HTTP/" && return
    sleep 0.2
  done
  echo "the instrumented Portico did not start:" >&2
  cat "$T/portico.log" >&2
  exit 1
}
# The profile is written when the process exits.
stop_portico() {
  kill -TERM "$proxy"
  wait "$proxy" || true
}
h2() { h2load "$@" | grep -E "^(finished|requests|status codes)"; }

echo "== training run: the benchmark's traffic"
portico --access-log off
wrk -t1 -c50 -d4s "http://127.0.0.1:$HTTP/" | grep Requests/sec
h2 --h1 -t1 -c50 -D4 "https://127.0.0.1:$HTTPS/"
h2 -t1 -c50 -m10 -D4 "https://127.0.0.1:$HTTPS/"
h2 --h1 -t1 -c50 -n3000 -H 'Connection: close' "https://127.0.0.1:$HTTPS/"
h2 --h1 -t1 -c200 -n200 "https://127.0.0.1:$HTTPS/"

echo "== training run: bodies, upstream protocols, affinity, unreachable endpoints"
h2 -t1 -c20 -m10 -D2 -d "$T/body" "https://127.0.0.1:$HTTPS/"
h2 --h1 -t1 -c20 -D2 -d "$T/body" "http://127.0.0.1:$HTTP/"
h2 -t1 -c20 -m10 -D2 "https://127.0.0.1:$HTTPS/h2c/"
h2 --h1 -t1 -c20 -D2 "http://127.0.0.1:$HTTP/tls/"
h2 --h1 -t1 -c20 -D2 "http://127.0.0.1:$HTTP/sticky/"
cookie=$(curl -s -D - -o /dev/null "http://127.0.0.1:$HTTP/sticky/" | tr -d '\r' |
  sed -n 's/^[Ss]et-[Cc]ookie: \(INGRESSCOOKIE=[^;]*\).*/\1/p')
[ -n "$cookie" ] || { echo "no affinity cookie from /sticky/" >&2; exit 1; }
h2 --h1 -t1 -c20 -D2 -H "Cookie: $cookie" "http://127.0.0.1:$HTTP/sticky/"
h2 --h1 -t1 -c10 -n2000 "http://127.0.0.1:$HTTP/unreachable/"
stop_portico

echo "== training run: with the access log"
portico --access-log on
wrk -t1 -c50 -d2s "http://127.0.0.1:$HTTP/" | grep Requests/sec
h2 -t1 -c50 -m10 -D2 "https://127.0.0.1:$HTTPS/"
stop_portico
"$profdata" merge -o "$T/portico.profdata" "$T"/raw/portico-*.profraw

echo "== optimized build"
RUSTFLAGS="-Cprofile-use=$T/portico.profdata" cargo build --release --locked --bin portico --target-dir target/pgo
echo "built target/pgo/release/portico"
