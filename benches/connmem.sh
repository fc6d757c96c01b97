#!/usr/bin/env bash
# Memory per connection and after a TLS handshake burst: Portico beside nginx configured as
# the shared peer harness configures it (../shared/bench/nginx.conf, one worker, same RSA-2048
# certificate kind, same nginx backend), each measured as the resident memory (VmRSS summed
# over the process tree) of a freshly started proxy pinned to core 0.
#
#   bash benches/connmem.sh                      # 3 runs, N=1000, BURST=2000
#   RUNS=1 N=500 CASES="idle-h1" bash benches/connmem.sh
#   PORTICO_BINARY=/path/to/portico bash benches/connmem.sh   # a binary already built
#   PROXIES=portico bash benches/connmem.sh
#
# Cases (CASES, default all three), each on a proxy started for it:
#   idle-h1  N TLS connections (ALPN http/1.1), one GET / each, then all kept open and idle
#            (benches/idle_conns.py): rss_before is with 20 connections made and closed
#            first (so that what every proxy sets up once, such as its upstream connection,
#            is there), rss_open with the N connections open and idle for IDLE_WAIT s;
#            kb_per_conn = (rss_open - rss_before) / N.
#   idle-h2  the same with ALPN h2 (one stream each).
#   burst    BURST concurrent new TLS connections with a full handshake and one request each,
#            as the harness's newconn-full case (h2load --h1 -c BURST -n BURST, TLS 1.3 with
#            TLS_AES_128_GCM_SHA256): rss_peak sampled every 20 ms during it, rss_end right
#            after h2load returns, rss_10s ten seconds later.
# Prints one line per case and run, then the medians over the runs per proxy and case.
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/manifests.sh
HERE=$PWD
PEERS_DIR=${PEERS_DIR:-../shared/bench}
RUNS=${RUNS:-3}
N=${N:-1000}
BURST=${BURST:-2000}
IDLE_WAIT=${IDLE_WAIT:-2}
PROXIES=${PROXIES:-"nginx portico"}
CASES=${CASES:-"idle-h1 idle-h2 burst"}
PROXY_CPUS=${PROXY_CPUS:-0}
LOAD_CPUS=${LOAD_CPUS:-1}
# Ports of their own, so that a run of peers.sh or load.sh elsewhere on the machine does not
# collide with this one.
BACKEND_PORT=${BACKEND_PORT:-18180}
NGINX_PORT=${NGINX_PORT:-18481}
PORTICO_PORT=${PORTICO_PORT:-18484}
for v in RUNS N BURST IDLE_WAIT BACKEND_PORT NGINX_PORT PORTICO_PORT; do
  [[ ${!v} =~ ^[0-9]+$ ]] || { echo "connmem.sh: $v must be a number" >&2; exit 1; }
done
[ -f "$PEERS_DIR/nginx.conf" ] || { echo "connmem.sh: peer configs not found in $PEERS_DIR" >&2; exit 1; }
for t in h2load nginx curl python3 taskset openssl; do
  command -v $t >/dev/null || { echo "connmem.sh: missing $t" >&2; exit 1; }
done
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

if [[ " $PROXIES " == *" portico "* ]]; then
  if [ -n "${PORTICO_BINARY:-}" ]; then
    BIN=$PORTICO_BINARY
  else
    BIN=$(BUILD=${BUILD:-release} bench_build)
  fi
fi

TMP=$(mktemp -d /tmp/connmem.XXXXXX)
STARTED=()
tree_pids() {
  local p=$1 c
  [ -d "/proc/$p" ] || return 0
  echo "$p"
  for c in $(pgrep -P "$p" 2>/dev/null); do tree_pids "$c"; done
}
stop() { # pid: the process and its children, by PID
  local pids
  pids=$(tree_pids "$1")
  [ -n "$pids" ] && kill $pids 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}
cleanup() {
  local p
  for p in "${STARTED[@]}"; do stop "$p"; done
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

rss_kb() { # pid: VmRSS of the process tree, kB
  local total=0 p v
  for p in $(tree_pids "$1"); do
    v=$(awk '/^VmRSS:/ {print $2}' "/proc/$p/status" 2>/dev/null || true)
    total=$((total + ${v:-0}))
  done
  echo "$total"
}

openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=localhost \
  -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
  -keyout "$TMP/key.pem" -out "$TMP/cert.pem" 2>/dev/null
render() { # template https_port dest (the plain HTTP port is unused: https_port + 1000)
  sed -e "s#@TMP@#$TMP#g; s#@BACKEND_PORT@#$BACKEND_PORT#g; s#@HTTP_PORT@#$(($2 - 300))#g; s#@HTTPS_PORT@#$2#g" \
    -e "s#@CERT@#$TMP/cert.pem#g; s#@KEY@#$TMP/key.pem#g" "$PEERS_DIR/$1" >"$3"
}
wait_ok() { # url
  for _ in $(seq 1 100); do
    [[ $(curl -sk -o /dev/null -m 1 -w '%{http_code}' "$1" 2>/dev/null) == 200 ]] && return 0
    sleep 0.1
  done
  return 1
}

mkdir -p "$TMP/backend" "$TMP/nginx" "$TMP/portico"
render backend-nginx.conf 0 "$TMP/backend.conf"
taskset -c "$LOAD_CPUS" nginx -p "$TMP/backend/" -c "$TMP/backend.conf" -g 'daemon off;' >"$TMP/backend.out" 2>&1 &
STARTED+=($!)
wait_ok "http://127.0.0.1:$BACKEND_PORT/" || { echo "connmem.sh: backend did not start" >&2; exit 1; }
render nginx.conf "$NGINX_PORT" "$TMP/nginx.conf"
if [ -n "${BIN:-}" ]; then
  {
    bench_manifests "127.0.0.1:$BACKEND_PORT"
    bench_tls_secret "$TMP/cert.pem" "$TMP/key.pem"
  } >"$TMP/portico/bench.yaml"
fi

PID=
start_proxy() { # name -> sets PID and PORT
  case $1 in
    nginx)
      PORT=$NGINX_PORT
      taskset -c "$PROXY_CPUS" nginx -p "$TMP/nginx/" -c "$TMP/nginx.conf" -g 'daemon off;' >"$TMP/nginx.out" 2>&1 &
      ;;
    portico)
      PORT=$PORTICO_PORT
      taskset -c "$PROXY_CPUS" "$BIN" --manifests "$TMP/portico" --http-addr "127.0.0.1:$((PORT - 300))" \
        --https-addr "127.0.0.1:$PORT" --admin-addr 127.0.0.1:0 --default-ssl-certificate bench/tls \
        --access-log off --worker-threads 1 >"$TMP/portico.out" 2>&1 &
      ;;
  esac
  PID=$!
  STARTED+=("$PID")
  wait_ok "https://127.0.0.1:$PORT/" || { echo "connmem.sh: $1 did not start" >&2; cat "$TMP/$1.out" >&2; exit 1; }
}

OUT=$TMP/results
: >"$OUT"
for run in $(seq 1 "$RUNS"); do
  for p in $PROXIES; do
    for c in $CASES; do
      start_proxy "$p"
      case $c in
        idle-h1 | idle-h2)
          mode=${c#idle-}
          taskset -c "$LOAD_CPUS" python3 benches/idle_conns.py "$mode" 20 127.0.0.1 "$PORT" </dev/null >/dev/null
          sleep 1
          before=$(rss_kb "$PID")
          coproc CLIENT { exec taskset -c "$LOAD_CPUS" python3 "$HERE/benches/idle_conns.py" "$mode" "$N" 127.0.0.1 "$PORT"; }
          read -r -t 120 ready <&"${CLIENT[0]}" || { echo "connmem.sh: $p $c: the client failed" >&2; exit 1; }
          [ "$ready" = "ready $N" ] || { echo "connmem.sh: $p $c: $ready" >&2; exit 1; }
          sleep "$IDLE_WAIT"
          open=$(rss_kb "$PID")
          echo >&"${CLIENT[1]}"
          wait "$CLIENT_PID" 2>/dev/null || true
          line="case=$p-$c run=$run n=$N rss_before_kb=$before rss_open_kb=$open kb_per_conn=$(awk -v a="$before" -v b="$open" -v n="$N" 'BEGIN { printf "%.1f", (b - a) / n }')"
          ;;
        burst)
          sleep 1
          before=$(rss_kb "$PID")
          (
            peak=0
            while [ ! -f "$TMP/burst.done" ]; do
              r=$(rss_kb "$PID")
              ((r > peak)) && peak=$r
              echo "$peak" >"$TMP/peak"
              sleep 0.02
            done
          ) &
          sampler=$!
          rm -f "$TMP/burst.done"
          timeout 120 taskset -c "$LOAD_CPUS" h2load --h1 -t1 -c"$BURST" -n"$BURST" --tls13-ciphers=TLS_AES_128_GCM_SHA256 \
            "https://127.0.0.1:$PORT/" >"$TMP/h2load.out" 2>&1 || true
          end=$(rss_kb "$PID")
          touch "$TMP/burst.done"
          wait "$sampler" || true
          rm -f "$TMP/burst.done"
          peak=$(cat "$TMP/peak")
          ((end > peak)) && peak=$end
          ok=$(awk '/^requests:/ { print $8 }' "$TMP/h2load.out")
          sleep 10
          later=$(rss_kb "$PID")
          line="case=$p-$c run=$run n=$BURST succeeded=${ok:-NA} rss_before_kb=$before rss_peak_kb=$peak rss_end_kb=$end rss_10s_kb=$later"
          ;;
        *) echo "connmem.sh: unknown case $c" >&2; exit 1 ;;
      esac
      echo "$line" | tee -a "$OUT"
      stop "$PID"
    done
  done
done

echo
echo "== medians over $RUNS run(s) (kB; kb_per_conn = growth with the connections open / N)"
awk "$BENCH_AWK_MEDIAN"'
  {
    split("", f); for (i = 1; i <= NF; i++) { split($i, kv, "="); f[kv[1]] = kv[2] }
    c = f["case"]; cases[c] = 1
    for (k in f) if (k ~ /_kb$|kb_per_conn/) vals[c, k] = vals[c, k] " " f[k]
  }
  END {
    nk = split("rss_before_kb rss_open_kb kb_per_conn rss_peak_kb rss_end_kb rss_10s_kb", ks, " ")
    for (c in cases) {
      line = c
      for (i = 1; i <= nk; i++) if ((c, ks[i]) in vals) line = line " " ks[i] "=" median(vals[c, ks[i]])
      print line
    }
  }' "$OUT" | sort
