#!/usr/bin/env bash
# Auth benchmark: what basic auth and external auth cost, Portico beside nginx doing the same
# thing on the same machine, same backend, same pinning. Prints one line per measurement and
# then a table of medians.
#
#   bash benches/auth.sh                        # every case, 3 rounds, plain release build
#   RUNS=5 CASES="none ext ext-cache" bash benches/auth.sh
#   PORTICO_BINARY=target/release/portico bash benches/auth.sh   # a binary already built
#
# Cases, each a path on both proxies (the backend answers all with a ~100-byte 200):
#   none          no auth
#   basic-bcrypt  auth-type basic, an htpasswd entry made by `htpasswd -B` (bcrypt, cost 5)
#   basic-apr1    the same with `htpasswd -m` (apr1-MD5)
#   basic-sha     the same with `htpasswd -s` ({SHA})
#   ext           auth-url to a local auth service answering 200 (an nginx location)
#   ext-cache     the same with auth-cache-key $remote_addr and auth-cache-duration 200 5m;
#                 nginx caches the auth subrequest with proxy_cache, keyed and kept alike,
#                 as ingress-nginx renders those annotations
#
# Equivalent config: nginx's locations are what ingress-nginx renders for the annotations
# (auth_basic + auth_basic_user_file; auth_request to an internal location that proxies to
# the auth URL without the body, with the X-Original-*/X-Forwarded-* fields, on a new
# connection per auth request, as both do by default). One worker each: nginx
# worker_processes 1, Portico --worker-threads 1, both pinned to core 0 (PROXY_CPUS); h2load
# (one thread, HTTP/1.1 keep-alive, CONNS connections) and the backend/auth service (one
# nginx worker) share core 1, as in ../shared/bench/peers.sh. Rounds alternate which proxy
# goes first. p99 comes from h2load's per-request log. cpu% is the proxy's own CPU over the
# run (100 = its core fully used), and rps/cpu = rps / (cpu% / 100): on a shared machine the
# steadier figure.
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${RUNS:-3}
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
CONNS=${CONNS:-50}
CASES=${CASES:-"none basic-bcrypt basic-apr1 basic-sha ext ext-cache"}
PROXY_CPUS=${PROXY_CPUS:-0}
LOAD_CPUS=${LOAD_CPUS:-1}
BACKEND_PORT=${BACKEND_PORT:-18090}
NGINX_PORT=${NGINX_PORT:-18091}
PORTICO_PORT=${PORTICO_PORT:-18092}
export BUILD=${BUILD:-release}

for t in h2load:nghttp2-client nginx:nginx htpasswd:apache2-utils curl:curl taskset:util-linux; do
  command -v "${t%%:*}" >/dev/null || { echo "auth.sh: needs ${t%%:*} (apt-get install ${t#*:})" >&2; exit 1; }
done
nginx -V 2>&1 | grep -q http_auth_request_module || { echo "auth.sh: this nginx lacks auth_request" >&2; exit 1; }

. benches/manifests.sh
BIN=$(bench_build)
bench_workdir portico-auth
bench_backend "$T" "$BACKEND_PORT"

# The password files, one user each, made by htpasswd itself; the same bytes for both proxies.
PASSWORD=bench-password
htpasswd -c -b -B "$T/bcrypt.htpasswd" bench "$PASSWORD" 2>/dev/null
htpasswd -c -b -m "$T/apr1.htpasswd" bench "$PASSWORD" 2>/dev/null
htpasswd -c -b -s "$T/sha.htpasswd" bench "$PASSWORD" 2>/dev/null
AUTHORIZATION="authorization: Basic $(printf 'bench:%s' "$PASSWORD" | base64)"
AUTH_URL="http://127.0.0.1:$BACKEND_PORT/auth"

# Portico: the Ingresses and Secrets, one route per case.
N=nginx.ingress.kubernetes.io
{
  bench_manifests "127.0.0.1:$BACKEND_PORT"
  bench_route none "127.0.0.1:$BACKEND_PORT" /none
  for h in bcrypt apr1 sha; do
    bench_route "basic-$h" "127.0.0.1:$BACKEND_PORT" "/basic-$h" \
      "$N/auth-type: basic, $N/auth-secret: htpasswd-$h, $N/auth-realm: bench"
    printf -- '---\napiVersion: v1\nkind: Secret\nmetadata: {name: htpasswd-%s, namespace: bench}\ntype: Opaque\ndata: {auth: %s}\n' \
      "$h" "$(base64 -w0 "$T/$h.htpasswd")"
  done
  bench_route ext "127.0.0.1:$BACKEND_PORT" /ext "$N/auth-url: '$AUTH_URL'"
  bench_route ext-cache "127.0.0.1:$BACKEND_PORT" /ext-cache \
    "$N/auth-url: '$AUTH_URL', $N/auth-cache-key: '\$remote_addr', $N/auth-cache-duration: '200 5m'"
} > "$T/m/bench.yaml"

# nginx: what ingress-nginx renders for the same annotations.
mkdir -p "$T/nginx" "$T/nginx/cache"
auth_location() { # NAME [CACHE LINES]
  cat <<EOF
    location = /_$1 {
      internal;
      proxy_pass $AUTH_URL;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_pass_request_body off;
      proxy_set_header Content-Length "";
      proxy_set_header X-Forwarded-Proto \$scheme;
      proxy_set_header X-Request-ID \$request_id;
      proxy_set_header X-Forwarded-For \$remote_addr;
      proxy_set_header X-Real-IP \$remote_addr;
      proxy_set_header X-Forwarded-Host \$http_host;
      proxy_set_header X-Original-URL \$scheme://\$http_host\$request_uri;
      proxy_set_header X-Original-Method \$request_method;
      proxy_set_header X-Sent-From "nginx-ingress-controller";
      proxy_set_header X-Auth-Request-Redirect \$request_uri;
      ${2:-}
    }
EOF
}
upstream_pass='proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection "";'
cat > "$T/nginx.conf" <<EOF
worker_processes 1; master_process off; daemon off; pid $T/nginx/pid; error_log $T/nginx/error.log warn;
worker_rlimit_nofile 65536;
events { worker_connections 16384; multi_accept on; }
http {
  access_log off; server_tokens off;
  keepalive_requests 10000000; keepalive_timeout 120s;
  client_body_temp_path $T/nginx; proxy_temp_path $T/nginx; fastcgi_temp_path $T/nginx;
  uwsgi_temp_path $T/nginx; scgi_temp_path $T/nginx;
  proxy_cache_path $T/nginx/cache levels=1:2 keys_zone=auth_cache:10m max_size=128m inactive=30m use_temp_path=off;
  upstream backend { server 127.0.0.1:$BACKEND_PORT; keepalive 256; keepalive_requests 10000000; keepalive_timeout 120s; }
  server {
    listen 127.0.0.1:$NGINX_PORT backlog=4096;
    location / { $upstream_pass }
    location /none { $upstream_pass }
    location /basic-bcrypt { auth_basic bench; auth_basic_user_file $T/bcrypt.htpasswd; $upstream_pass }
    location /basic-apr1 { auth_basic bench; auth_basic_user_file $T/apr1.htpasswd; $upstream_pass }
    location /basic-sha { auth_basic bench; auth_basic_user_file $T/sha.htpasswd; $upstream_pass }
    location /ext { auth_request /_auth; $upstream_pass }
    location /ext-cache { auth_request /_auth_cached; $upstream_pass }
$(auth_location auth)
$(auth_location auth_cached 'proxy_cache auth_cache; proxy_cache_key "$remote_addr"; proxy_cache_valid 200 5m;')
  }
}
EOF

taskset -c "$LOAD_CPUS" nginx -c "$T/backend.conf" >/dev/null 2>&1 & pids+=($!)
taskset -c "$PROXY_CPUS" nginx -c "$T/nginx.conf" >/dev/null 2>&1 & pids+=($!); NGINX_PID=$!
taskset -c "$PROXY_CPUS" "$BIN" --manifests "$T/m" --http-addr "127.0.0.1:$PORTICO_PORT" \
  --https-addr 127.0.0.1:0 --admin-addr 127.0.0.1:0 --access-log off --worker-threads 1 \
  --allow-loopback-auth-url > "$T/portico.log" 2>&1 & pids+=($!); PORTICO_PID=$!

# Every case answers 200 on both before anything is measured.
for port in $NGINX_PORT $PORTICO_PORT; do
  for c in $CASES; do
    hdr=(); [[ $c == basic-* ]] && hdr=(-H "$AUTHORIZATION")
    for _ in $(seq 1 100); do
      code=$(curl -s -o /dev/null -m 2 -w '%{http_code}' "${hdr[@]}" "http://127.0.0.1:$port/$c" || true)
      [ "$code" = 200 ] && break
      sleep 0.1
    done
    [ "$code" = 200 ] || { echo "auth.sh: :$port/$c answers $code" >&2; cat "$T/portico.log" "$T/nginx/error.log" >&2; exit 1; }
  done
done

cpu_ticks() { local f; f=$(cat "/proc/$1/stat"); f=${f##*) }; read -r -a a <<<"$f"; echo $((a[11] + a[12])); }
CLK_TCK=$(getconf CLK_TCK)

measure() { # PROXY CASE ROUND
  local proxy=$1 c=$2 round=$3 port pid log="$T/h2.log" raw="$T/h2.out"
  if [ "$proxy" = nginx ]; then port=$NGINX_PORT pid=$NGINX_PID; else port=$PORTICO_PORT pid=$PORTICO_PID; fi
  local hdr=(); [[ $c == basic-* ]] && hdr=(-H "$AUTHORIZATION")
  rm -f "$log"
  local c0 t0 c1 t1
  c0=$(cpu_ticks "$pid"); t0=$(date +%s.%N)
  timeout -k 5 $((DURATION + WARMUP + 60)) taskset -c "$LOAD_CPUS" h2load --h1 -t1 -c"$CONNS" -m1 \
    -D"$DURATION" --warm-up-time="$WARMUP" --log-file="$log" "${hdr[@]}" "http://127.0.0.1:$port/$c" > "$raw" 2>&1 || true
  c1=$(cpu_ticks "$pid"); t1=$(date +%s.%N)
  local rps errors p99 cpu
  rps=$(awk '/^finished in/ { for (i = 1; i <= NF; i++) if ($i == "req/s,") print $(i - 1) }' "$raw")
  errors=$(awk '/^requests:/ { e += $10 + $12 + $14 } /^status codes:/ { e += $5 + $7 + $9 } END { print e + 0 }' "$raw")
  p99=$(cut -f3 "$log" 2>/dev/null | sort -n | awk '{ v[NR] = $1 } END { i = int(NR * 0.99); if (i < 1) i = 1; if (NR) printf "%.2f", v[i] / 1000; else print "NA" }')
  cpu=$(awk -v t=$((c1 - c0)) -v hz="$CLK_TCK" -v a="$t0" -v b="$t1" 'BEGIN { printf "%.0f", t / hz / (b - a) * 100 }')
  echo "case=$c proxy=$proxy round=$round rps=${rps:-NA} p99_ms=$p99 errors=$errors cpu_pct=$cpu"
}

# nginx's auth cache is in use once the ext-cache check above went through it.
if [[ " $CASES " == *" ext-cache "* ]] && [ -z "$(find "$T/nginx/cache" -type f | head -1)" ]; then
  echo "auth.sh: nginx's auth cache stays empty" >&2; exit 1
fi

OUT="$T/results"
for round in $(seq 1 "$RUNS"); do
  if [ $((round % 2)) = 1 ]; then order="nginx portico"; else order="portico nginx"; fi
  for c in $CASES; do
    for proxy in $order; do measure "$proxy" "$c" "$round"; done
  done
done | tee "$OUT"

echo
echo "== medians over $RUNS rounds (h2load --h1 -c$CONNS, ${DURATION}s each; one proxy core)"
CASES="$CASES" awk "$BENCH_AWK_MEDIAN"'
  {
    split("", f); for (i = 1; i <= NF; i++) { split($i, kv, "="); f[kv[1]] = kv[2] }
    k = f["case"] SUBSEP f["proxy"]
    rps[k] = rps[k] " " f["rps"]; p99[k] = p99[k] " " f["p99_ms"]; err[k] += f["errors"]
    if (f["cpu_pct"] > 0) per[k] = per[k] " " f["rps"] / (f["cpu_pct"] / 100)
    if (!(k in lo) || f["rps"] + 0 < lo[k]) lo[k] = f["rps"] + 0
    if (f["rps"] + 0 > hi[k]) hi[k] = f["rps"] + 0
  }
  END {
    printf "%-13s %12s %10s %10s %12s %10s %10s %7s %s\n", "case", "portico rps", "(min-max)", "p99 ms", \
      "nginx rps", "(min-max)", "p99 ms", "ratio", "rps/cpu portico / nginx"
    n = split(ENVIRON["CASES"], cs, " ")
    for (i = 1; i <= n; i++) {
      c = cs[i]; P = c SUBSEP "portico"; X = c SUBSEP "nginx"
      rp = median(rps[P]); rx = median(rps[X])
      printf "%-13s %12.0f %10s %10.2f %12.0f %10s %10.2f %7.2f %.0f / %.0f%s\n", c, rp, sprintf("%.0f-%.0f", lo[P], hi[P]), \
        median(p99[P]), rx, sprintf("%.0f-%.0f", lo[X], hi[X]), median(p99[X]), (rx > 0 ? rp / rx : 0), \
        median(per[P]), median(per[X]), (err[P] + err[X] > 0 ? sprintf("  errors: %d / %d", err[P], err[X]) : "")
    }
  }' "$OUT"
