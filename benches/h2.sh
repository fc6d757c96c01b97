#!/usr/bin/env bash
# HTTP/2 over TLS, per request, Portico beside nginx and HAProxy: figures that move little with
# the other load on a shared machine (see the end of this comment for what each one is).
# PROTO=h1 measures HTTPS HTTP/1.1 keep-alive the same way (peers.sh's https-h1).
#
#   bash benches/h2.sh                       # 50 connections x 10 streams (peers.sh's https-h2)
#   PROTO=h1 bash benches/h2.sh              # HTTP/1.1 over TLS, 50 keep-alive connections
#   C=10 M=100 bash benches/h2.sh            # fewer connections, more streams on each
#   BUILD=release bash benches/h2.sh         # a plain release build instead of the PGO one
#   PORTICO_BINARY=/path/to/portico bash benches/h2.sh
#   SKIP_CALLGRIND=1 bash benches/h2.sh      # only the native run (perf counts, latency)
#   SKIP_NATIVE=1 bash benches/h2.sh         # only callgrind
#   PORTICO_BASE=/path/to/other/portico bash benches/h2.sh   # also that build, as "base"
#   CALLGRIND_DIR=/tmp/cg bash benches/h2.sh # keep the profiles (NAME.cg.1, NAME.cg.2) there
#   CACHE_SIM=1 bash benches/h2.sh           # also simulated L1 instruction-cache misses
#
# Topology: nginx backend (1 worker, 98-byte answers) on core 1 with h2load; each proxy with one
# worker (Portico: --worker-threads 1) on core 0, HTTP/1.1 keep-alive to the backend, with
# `keep-alive-requests` lifted as the peers have it (bench_configmap). The ports (193xx/194xx)
# are apart from peers.sh's and instructions.sh's, so this can run beside them.
#
# Per proxy, two figures:
# 1. callgrind: user-space instructions per request. Counting is on for two h2load runs of
#    N1 and N2 requests (C connections, M streams each); each opens C new TLS connections, so
#    the difference of the two counts over N2 - N1 requests is the cost of a request without
#    the handshakes. (Under valgrind the proxy is slow and requests queue up, so it batches
#    more than at full speed: a figure to compare proxies and builds, not an absolute one.)
#    With CACHE_SIM=1, callgrind also simulates the caches and the L1 instruction-cache misses
#    per request are printed beside the instructions: the cost a count of instructions hides
#    when a proxy's code does not fit the cache.
# 2. native, pinned, NATIVE_N requests: syscalls, connect() calls (new upstream connections),
#    context switches and CPU time (task-clock) per request from `perf stat` on the proxy,
#    and the request latency percentiles from h2load's --log-file. CPU time and latency move
#    with the machine's load; the syscall counts show how the proxy batches reads and writes,
#    and the connects how often its upstream pool closes a connection it needs again.
set -euo pipefail
cd "$(dirname "$0")/.."
C=${C:-50}
PROTO=${PROTO:-h2}
case $PROTO in
  h2) M=${M:-10} H1=() ;;
  # One request at a time on each connection (no pipelining), as peers.sh's https-h1.
  h1) M=1 H1=(--h1) ;;
  *) echo "h2.sh: PROTO is h2 or h1, not $PROTO" >&2; exit 2 ;;
esac
N1=${N1:-5000}
N2=${N2:-25000}
NATIVE_N=${NATIVE_N:-200000}
PROXIES=${PROXIES:-"portico nginx haproxy"}
if [ -n "${PORTICO_BASE:-}" ]; then PROXIES="base $PROXIES"; fi

. benches/manifests.sh
need=(valgrind:valgrind h2load:nghttp2-client nginx:nginx curl:curl openssl:openssl perf:linux-perf)
if [[ " $PROXIES " == *" haproxy "* ]]; then need+=(haproxy:haproxy); fi
bench_need "${need[@]}"

BIN=$(bench_build)
bench_workdir portico-h2
BACKEND=19380
declare -A TLS_PORT=([nginx]=19481 [haproxy]=19482 [portico]=19484 [base]=19485)
declare -A STOP=([nginx]=QUIT [haproxy]=TERM [portico]=TERM [base]=TERM)

bench_backend "$T" "$BACKEND"
bench_configmap >> "$T/m/bench.yaml"
cat "$T/cert.pem" "$T/key.pem" > "$T/combined.pem"
bench_nginx_proxy "$T" "$BACKEND" "listen 127.0.0.1:${TLS_PORT[nginx]} ssl http2;"
# As ../shared/bench/haproxy.cfg.
cat > "$T/haproxy.cfg" <<EOF
global
    nbthread 1
    maxconn 8000
defaults
    mode http
    timeout connect 5s
    timeout client 120s
    timeout server 120s
    timeout http-keep-alive 120s
    option http-keep-alive
    http-reuse always
frontend fe
    bind 127.0.0.1:${TLS_PORT[haproxy]} ssl crt $T/combined.pem alpn h2,http/1.1
    default_backend be
backend be
    server s1 127.0.0.1:$BACKEND pool-max-conn 256
EOF
taskset -c 1 nginx -c "$T/backend.conf" -e "$T/backend/error.log" &
pids+=($!)

command_of() { # proxy -> its command line, one word a line
  case $1 in
    portico | base)
      local bin=$BIN
      [ "$1" = portico ] || bin=$(realpath "$PORTICO_BASE")
      printf '%s\n' "$bin" --manifests "$T/m" --configmap bench/portico --http-addr 127.0.0.1:0 \
        --https-addr "127.0.0.1:${TLS_PORT[$1]}" --default-ssl-certificate bench/tls \
        --admin-addr 127.0.0.1:0 --access-log off --worker-threads 1 --shutdown-grace 1s ;;
    nginx) printf '%s\n' nginx -c "$T/nginx.conf" -e "$T/nginx/error.log" ;;
    haproxy) printf '%s\n' haproxy -db -f "$T/haproxy.cfg" ;;
  esac
}

wait_tls() { bench_wait_url "https://127.0.0.1:$1/" h2.sh; }

load() { # port n [h2load args...]: h2load over TLS; fails unless every request succeeded
  local port=$1 n=$2
  shift 2
  taskset -c 1 h2load "${H1[@]}" -c "$C" -m "$M" -n "$n" "$@" "https://127.0.0.1:$port/" > "$T/h2load.out"
  grep -q "succeeded, 0 failed" "$T/h2load.out" || { cat "$T/h2load.out" >&2; exit 1; }
}

EVENTS=Ir
SIM=()
if [ -n "${CACHE_SIM:-}" ]; then EVENTS=Ir,I1mr SIM=(--cache-sim=yes); fi
# totals FILE -> the program's totals of $EVENTS, space-separated
totals() {
  callgrind_annotate --show="$EVENTS" "$1" 2>/dev/null | awk '/PROGRAM TOTALS/ {
    for (i = 1; i <= NF; i++) if ($i ~ /^[0-9,]+$/) { gsub(",", "", $i); printf "%s ", $i } }'
}

# callgrind NAME -> user-space instructions (and, with CACHE_SIM, I1 misses) per request
callgrind() {
  local name=$1 port=${TLS_PORT[$1]} cmd
  mapfile -t cmd < <(command_of "$name")
  taskset -c 0 valgrind --tool=callgrind "${SIM[@]}" --instr-atstart=no --callgrind-out-file="$T/$name.cg" "${cmd[@]}" \
    > "$T/$name.vg.log" 2>&1 &
  local pid=$!
  wait_tls "$port"
  load "$port" 2000
  callgrind_control -i on "$pid" > /dev/null 2>&1
  load "$port" "$N1"
  callgrind_control -d "$pid" > /dev/null 2>&1
  load "$port" "$N2"
  callgrind_control -d "$pid" > /dev/null 2>&1
  callgrind_control -i off "$pid" > /dev/null 2>&1
  kill "-${STOP[$name]}" "$pid"
  wait "$pid" || true
  if [ -n "${CALLGRIND_DIR:-}" ]; then mkdir -p "$CALLGRIND_DIR" && cp "$T/$name".cg.[12] "$CALLGRIND_DIR/"; fi
  local a b
  read -ra a <<< "$(totals "$T/$name.cg.1")"
  read -ra b <<< "$(totals "$T/$name.cg.2")"
  local i out=()
  for i in "${!b[@]}"; do out+=("$(((b[i] - a[i]) / (N2 - N1)))"); done
  echo "${out[*]}"
}

# native NAME -> "syscalls connects ctxsw task_clock_us p50_ms p99_ms p999_ms rps" per request
native() {
  local name=$1 port=${TLS_PORT[$1]} cmd
  mapfile -t cmd < <(command_of "$name")
  taskset -c 0 "${cmd[@]}" > "$T/$name.native.log" 2>&1 &
  local pid=$!
  wait_tls "$port"
  load "$port" 20000
  local tree
  tree=$( (echo "$pid"; pgrep -P "$pid" || true) | paste -sd,)
  perf stat -x, -e raw_syscalls:sys_enter,syscalls:sys_enter_connect,context-switches,task-clock \
    -p "$tree" -o "$T/$name.perf" &
  local pp=$!
  sleep 0.3
  load "$port" "$NATIVE_N" --log-file="$T/$name.h2log"
  kill -INT "$pp"
  wait "$pp" || true
  kill "-${STOP[$name]}" "$pid"
  wait "$pid" || true
  local counts pct rps
  counts=$(awk -F, -v n="$NATIVE_N" '/^[0-9]/ { v[$3] = $1 }
    END { printf "%.2f %.3f %.3f %.2f", v["raw_syscalls:sys_enter"] / n, v["syscalls:sys_enter_connect"] / n,
      v["context-switches"] / n, v["task-clock"] * 1000 / n }' "$T/$name.perf")
  pct=$(cut -f3 "$T/$name.h2log" | sort -n | awk '{ a[NR] = $1 }
    END { printf "%.2f %.2f %.2f", a[int(NR * .5)] / 1000, a[int(NR * .99)] / 1000, a[int(NR * .999)] / 1000 }')
  rps=$(awk '/^finished in/ { for (i = 1; i <= NF; i++) if ($i == "req/s,") print $(i - 1) }' "$T/h2load.out")
  echo "$counts $pct $rps"
}

wait_backend() {
  for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$BACKEND/" && return 0; sleep 0.1; done
  exit 1
}
wait_backend

what="HTTP/2 over TLS, $C connections x $M streams"
[ "$PROTO" = h2 ] || what="HTTP/1.1 keep-alive over TLS, $C connections"
echo "# $(date -u +%FT%TZ) $what; load: $(cut -d' ' -f1-3 /proc/loadavg)"
if [ -z "${SKIP_CALLGRIND:-}" ]; then
  echo "user-space instructions${CACHE_SIM:+ and L1 instruction-cache misses} per request (callgrind; $N1 and $N2 requests, the difference)"
  # shellcheck disable=SC2046
  for p in $PROXIES; do printf "%-10s %10s %8s\n" "$p" $(callgrind "$p"); done
fi
[ -z "${SKIP_NATIVE:-}" ] || exit 0
echo "native, $NATIVE_N requests: per request syscalls, upstream connects, context switches, CPU us;"
echo "latency ms; h2load req/s"
printf "%-10s %9s %9s %7s %7s %8s %8s %8s %9s\n" proxy syscalls connects ctxsw cpu_us p50 p99 p99.9 req/s
for p in $PROXIES; do
  # shellcheck disable=SC2046
  printf "%-10s %9s %9s %7s %7s %8s %8s %8s %9s\n" "$p" $(native "$p")
done
echo "# load after: $(cut -d' ' -f1-3 /proc/loadavg)"
