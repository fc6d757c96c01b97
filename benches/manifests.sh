# Sourced by the benchmarks and scripts/build-pgo.sh. bench_manifests BACKEND [ANNOTATIONS] prints the objects
# they serve: an IngressClass `portico` and, by bench_route, a Service bench/backend whose
# EndpointSlice names BACKEND (ip:port) with an Ingress sending every host and path to it.
# ANNOTATIONS is the body of a flow-style YAML mapping for the Ingress.
bench_manifests() {
  cat <<YAML
apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata: {name: portico}
spec: {controller: portico.dev/ingress-controller}
YAML
  bench_route backend "$1" / "${2:-}"
}

# bench_need TOOL:PACKAGE... installs, with apt-get, the Debian packages of the tools not on PATH
# (a TOOL starting with / is a path that must be executable, as /usr/bin/time).
bench_need() {
  local t missing=()
  for t in "$@"; do
    case ${t%%:*} in
      /*) [ -x "${t%%:*}" ] || missing+=("${t#*:}") ;;
      *) command -v "${t%%:*}" >/dev/null || missing+=("${t#*:}") ;;
    esac
  done
  if [ ${#missing[@]} -gt 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
  fi
}

# bench_wait_url URL WHO waits up to 30 s for URL to answer (certificates not checked); else it
# says so, as WHO, and exits.
bench_wait_url() {
  for _ in $(seq 150); do
    curl -sk -o /dev/null "$1" && return 0
    sleep 0.2
  done
  echo "$2: nothing answers at $1" >&2
  exit 1
}

# bench_nginx_proxy DIR BACKEND LISTEN writes DIR/nginx.conf: one nginx worker proxying to the
# backend on port BACKEND over HTTP/1.1 keep-alive, as the peer harness configures it, with the
# `listen` directives LISTEN (their `ssl` ones use DIR/cert.pem).
bench_nginx_proxy() {
  mkdir -p "$1/nginx"
  cat > "$1/nginx.conf" <<EOF
worker_processes 1; master_process off; daemon off; events { worker_connections 4096; } pid $1/nginx/pid; error_log $1/nginx/error.log warn;
http { access_log off; keepalive_requests 10000000; client_body_temp_path $1/nginx;
  proxy_temp_path $1/nginx; fastcgi_temp_path $1/nginx; uwsgi_temp_path $1/nginx; scgi_temp_path $1/nginx;
  upstream backend { server 127.0.0.1:$2; keepalive 256; keepalive_requests 10000000; }
  server { $3
    ssl_certificate $1/cert.pem; ssl_certificate_key $1/key.pem; ssl_protocols TLSv1.2 TLSv1.3;
    location / { proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection ""; } } }
EOF
}

# bench_route NAME ADDR PATH [ANNOTATIONS] prints a Service bench/NAME whose EndpointSlice names
# ADDR (ip:port), and an Ingress bench/NAME of class portico sending PATH (Prefix) to it.
bench_route() {
  local ip=${2%%:*} port=${2##*:}
  cat <<YAML
---
apiVersion: v1
kind: Service
metadata: {name: $1, namespace: bench}
spec:
  ports: [{name: http, port: 80}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: $1-1, namespace: bench, labels: {kubernetes.io/service-name: $1}}
addressType: IPv4
ports: [{name: http, port: $port}]
endpoints: [{addresses: ['$ip']}]
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: $1
  namespace: bench
  annotations: {${4:-}}
spec:
  ingressClassName: portico
  rules:
  - http:
      paths:
      - {path: $3, pathType: Prefix, backend: {service: {name: $1, port: {number: 80}}}}
YAML
}

# bench_configmap prints the controller ConfigMap bench/portico (for `--configmap bench/portico`)
# that lifts `keep-alive-requests` to what the peers get in ../shared/bench (nginx
# `keepalive_requests 10000000`; HAProxy and Caddy have no such limit). Without it Portico keeps
# ingress-nginx's default of 1000 and closes every client connection after 1000 requests; h2load
# in its timed mode (-D) does not reconnect after an HTTP/2 GOAWAY, so the HTTP/2 case would
# measure clients that stopped, not the proxy.
bench_configmap() {
  cat <<YAML
---
apiVersion: v1
kind: ConfigMap
metadata: {name: portico, namespace: bench}
data: {keep-alive-requests: "10000000"}
YAML
}

# bench_tls_secret CERT KEY prints the TLS Secret bench/tls holding those PEM files, for
# --default-ssl-certificate bench/tls (the load tools connect by IP, without SNI).
bench_tls_secret() {
  cat <<YAML
---
apiVersion: v1
kind: Secret
metadata: {name: tls, namespace: bench}
type: kubernetes.io/tls
stringData:
  tls.crt: |
YAML
  sed 's/^/    /' "$1"
  echo "  tls.key: |"
  sed 's/^/    /' "$2"
}

# bench_build builds Portico as BUILD says and prints the binary's path: by default (pgo) the
# profile-guided build of scripts/build-pgo.sh, the one the container image ships; with
# BUILD=release a plain `cargo build --release` (into CARGO_TARGET_DIR when set).
# PORTICO_BINARY names a binary already built, used as it is.
bench_build() {
  if [ -n "${PORTICO_BINARY:-}" ]; then
    realpath "$PORTICO_BINARY"
  elif [ "${BUILD:-pgo}" = pgo ]; then
    bash scripts/build-pgo.sh >&2
    echo "$PWD/target/pgo/release/portico"
  else
    cargo build --release --locked --bin portico >&2
    realpath "${CARGO_TARGET_DIR:-target}/release/portico"
  fi
}

# bench_backend DIR PORT [LISTEN] writes, in DIR, an nginx config for a one-worker backend on PORT
# that answers every request with a ~100-byte 200 (DIR/backend.conf), a self-signed
# certificate (DIR/cert.pem, DIR/key.pem) and the manifests Portico serves in front of it,
# with that certificate as bench/tls (DIR/m/bench.yaml). LISTEN adds nginx `listen`
# directives to the same server (its `ssl` listeners use that certificate).
bench_backend() {
  local dir=$1 port=$2
  mkdir -p "$dir/backend" "$dir/m"
  openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=localhost -keyout "$dir/key.pem" \
    -out "$dir/cert.pem" 2>/dev/null
  cat > "$dir/backend.conf" <<EOF
worker_processes 1; master_process off; daemon off; pid $dir/backend/pid; error_log $dir/backend/error.log warn;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 10000000; client_body_temp_path $dir/backend;
  proxy_temp_path $dir/backend; fastcgi_temp_path $dir/backend; uwsgi_temp_path $dir/backend; scgi_temp_path $dir/backend;
  server { listen 127.0.0.1:$port; ${3:-} ssl_certificate $dir/cert.pem; ssl_certificate_key $dir/key.pem;
    location / {
    return 200 "hello from the benchmark backend; this body is padded to be about one hundred bytes long.........\n"; } } }
EOF
  {
    bench_manifests "127.0.0.1:$port"
    bench_tls_secret "$dir/cert.pem" "$dir/key.pem"
  } > "$dir/m/bench.yaml"
}

# An awk function for the benchmarks' tables: median(s) is the median of the numbers in the
# space-separated list s, or NA when it is empty. Prepend it to an awk program.
# shellcheck disable=SC2016
BENCH_AWK_MEDIAN='
  function median(s,    a, m, i, j, t) {
    m = split(s, a, " "); if (m == 0) return "NA"
    for (i = 2; i <= m; i++) for (j = i; j > 1 && a[j - 1] + 0 > a[j] + 0; j--) { t = a[j]; a[j] = a[j - 1]; a[j - 1] = t }
    return (m % 2) ? a[(m + 1) / 2] : (a[m / 2] + a[m / 2 + 1]) / 2
  }'

# bench_workdir PREFIX makes a temporary directory T; processes whose pids are added to
# `pids` are stopped and T removed when the script exits.
bench_workdir() {
  T=$(mktemp -d "/tmp/$1.XXXXXX")
  pids=()
  trap bench_cleanup EXIT
}
bench_cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$T"
}

# bench_extra_cmd BIN prints the command the peer harness (../shared/bench/peers.sh) runs as its
# extra proxy, pinned to the proxy core: it writes a manifests directory that sends every host
# and path to the harness backend (with BENCH_ANNOTATIONS, exported by the caller, on the
# Ingress) and serves the harness certificate as the default certificate (the load tools
# connect by IP, without SNI), with the ConfigMap of bench_configmap, then runs BIN on it with
# one worker thread and no access log.
bench_extra_cmd() {
  cat <<CMD
set -e
. "$PWD/benches/manifests.sh"
m="\$BENCH_TMP/manifests"; mkdir -p "\$m"
{
bench_manifests "\$BENCH_BACKEND" "\${BENCH_ANNOTATIONS:-}"
bench_tls_secret "\$BENCH_CERT" "\$BENCH_KEY"
bench_configmap
} > "\$m/bench.yaml"
exec "$1" --manifests "\$m" --configmap bench/portico --http-addr 127.0.0.1:\$BENCH_HTTP_PORT --https-addr 127.0.0.1:\$BENCH_HTTPS_PORT \\
  --admin-addr 127.0.0.1:0 --default-ssl-certificate bench/tls --access-log off --worker-threads 1
CMD
}
