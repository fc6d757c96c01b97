#!/usr/bin/env bash
# User-space instructions per proxied request, Portico beside nginx, counted by callgrind.
# Unlike requests per second, this figure does not move with other tenants of a shared
# machine, so it shows a change in Portico's own cost that a load run's noise would hide.
# (Kernel time, the larger part of a proxied request on loopback, is not in it: syscalls per
# request are the same for both, two reads and two writes. And callgrind counts every
# iteration of a string instruction such as `rep movsb`, so large memory copies weigh more
# here than in time.)
#
#   bash benches/instructions.sh             # 20000 HTTP/1.1 keep-alive GETs over 10 connections
#   N=50000 C=5000 bash benches/instructions.sh
#   BUILD=release bash benches/instructions.sh   # a plain release build instead of the profile-guided one
#   PORTICO_BINARY=target/pgo/release/portico bash benches/instructions.sh   # a binary already built
#
# Both proxies run one worker against the same nginx backend (98-byte answers); each is
# warmed up with 2000 requests before counting starts.
#
# Second figure, the client's side: user-space instructions the load generator (h2load)
# spends per new TLS connection that resumes its session (`Connection: close` after each GET;
# C connections by 10 clients, whose first handshakes are full), against each proxy. What a
# proxy sends in a handshake (how many session tickets, how large) costs every client, and in
# the load benchmark the client shares its core with the backend.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-20000}
C=${C:-2000}

. benches/manifests.sh
bench_need valgrind:valgrind h2load:nghttp2-client nginx:nginx curl:curl openssl:openssl

BIN=$(bench_build)
bench_workdir portico-instructions
BACKEND=18180 NGINX=18181 PORTICO=18184 NGINX_TLS=18481 PORTICO_TLS=18484

bench_backend "$T" "$BACKEND"
# keep-alive-requests as bench_nginx_proxy gives nginx (keepalive_requests 10000000), not ingress-nginx's
# default 1000, which would close every client connection twice during the count.
bench_configmap >> "$T/m/bench.yaml"
bench_nginx_proxy "$T" "$BACKEND" "listen 127.0.0.1:$NGINX; listen 127.0.0.1:$NGINX_TLS ssl;"
nginx -c "$T/backend.conf" -e "$T/backend/error.log" &
pids+=($!)

wait_port() { bench_wait_url "http://127.0.0.1:$1/" instructions.sh; }

# measure NAME PORT STOP_SIGNAL CMD... -> prints instructions per request
measure() {
  local name=$1 port=$2 sig=$3
  shift 3
  valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$T/$name.out" "$@" > "$T/$name.log" 2>&1 &
  local pid=$!
  wait_port "$port"
  h2load --h1 -n 2000 -c 10 "http://127.0.0.1:$port/" > /dev/null
  callgrind_control -i on "$pid" > /dev/null 2>&1
  h2load --h1 -n "$N" -c 10 "http://127.0.0.1:$port/" | grep -q "succeeded, 0 failed"
  callgrind_control -i off "$pid" > /dev/null 2>&1
  kill "-$sig" "$pid"
  wait "$pid" || true
  local total
  total=$(callgrind_annotate "$T/$name.out" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')
  echo $((total / N))
}

# client NAME HTTP_PORT TLS_PORT STOP_SIGNAL CMD... -> h2load's instructions per resumed connection
client() {
  local name=$1 port=$2 tls=$3 sig=$4
  shift 4
  "$@" > "$T/$name-tls.log" 2>&1 &
  local pid=$!
  wait_port "$port"
  valgrind --tool=callgrind --callgrind-out-file="$T/$name-client.out" h2load --h1 -t1 -c10 -n "$C" \
    -H 'Connection: close' "https://127.0.0.1:$tls/" 2> /dev/null | grep -q "succeeded, 0 failed"
  kill "-$sig" "$pid"
  wait "$pid" || true
  local total
  total=$(callgrind_annotate "$T/$name-client.out" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')
  echo $((total / C))
}

wait_port "$BACKEND"
portico=("$BIN" --manifests "$T/m" --configmap bench/portico --http-addr "127.0.0.1:$PORTICO" --https-addr "127.0.0.1:$PORTICO_TLS"
  --default-ssl-certificate bench/tls --admin-addr 127.0.0.1:0 --access-log off --worker-threads 1 --shutdown-grace 1s)
p=$(measure portico "$PORTICO" TERM "${portico[@]}")
n=$(measure nginx "$NGINX" QUIT nginx -c "$T/nginx.conf" -e "$T/nginx/error.log")
pc=$(client portico "$PORTICO" "$PORTICO_TLS" TERM "${portico[@]}")
nc=$(client nginx "$NGINX" "$NGINX_TLS" QUIT nginx -c "$T/nginx.conf" -e "$T/nginx/error.log")
echo "user-space instructions per proxied GET (HTTP/1.1 keep-alive, $N requests, 10 connections)"
printf "%-10s %10s\n%-10s %10s\n%-10s %10.2f\n" portico "$p" nginx "$n" ratio "$(echo "$p / $n" | bc -l)"
echo "h2load's user-space instructions per new resumed TLS connection ($C connections, 10 clients)"
printf "%-10s %10s\n%-10s %10s\n%-10s %10.2f\n" portico "$pc" nginx "$nc" ratio "$(echo "$pc / $nc" | bc -l)"
