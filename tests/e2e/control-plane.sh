#!/usr/bin/env bash
# A real Kubernetes control plane (etcd + kube-apiserver, no controller-manager, no nodes)
# on loopback, for Portico's end-to-end tests.
#
#   tests/e2e/control-plane.sh up DIR     # build or reuse the binaries, start, wait for /readyz
#   tests/e2e/control-plane.sh down DIR   # stop what `up DIR` started, remove DIR
#   tests/e2e/control-plane.sh stop-apiserver|start-apiserver DIR   # API server outage
#
# After `up`, DIR holds: kubeconfig (admin, token auth), ca.crt, env (SERVER=, TOKEN=,
# KUBECONFIG=), logs, and pids. Ports are picked free at start; several planes can run at once.
set -euo pipefail

cmd=${1:-}
DIR=${2:-}
[ -n "$cmd" ] && [ -n "$DIR" ] || { echo "usage: $0 up|down DIR" >&2; exit 2; }
HERE=$(cd "$(dirname "$0")" && pwd)

down() {
  if [ -f "$DIR/pids" ]; then
    while read -r pid; do kill -TERM "$pid" 2>/dev/null || true; done < "$DIR/pids"
    for _ in $(seq 1 50); do
      alive=0
      while read -r pid; do kill -0 "$pid" 2>/dev/null && alive=1; done < "$DIR/pids"
      [ $alive = 0 ] && break
      sleep 0.1
    done
    while read -r pid; do kill -KILL "$pid" 2>/dev/null || true; done < "$DIR/pids"
  fi
  rm -rf "$DIR"
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

up() {
  mkdir -p "$DIR"
  BIN=$("$HERE/build-control-plane.sh")
  cd "$DIR"
  : > pids

  # Serving certificate for 127.0.0.1 (rustls needs the IP SAN) signed by a throwaway CA,
  # and the service-account signing key pair.
  openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=portico-e2e-ca" \
    -keyout ca.key -out ca.crt 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj "/CN=kube-apiserver" -keyout apiserver.key -out apiserver.csr 2>/dev/null
  printf "subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes.default.svc\n" > san.cnf
  openssl x509 -req -in apiserver.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 \
    -extfile san.cnf -out apiserver.crt 2>/dev/null
  openssl genrsa -out sa.key 2048 2>/dev/null
  openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
  TOKEN="admin-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
  echo "$TOKEN,admin,admin-uid,\"system:masters\"" > tokens.csv

  ETCD_PORT=$(free_port); PEER_PORT=$(free_port); API_PORT=$(free_port)
  "$BIN/etcd" --data-dir "$DIR/etcd-data" --name portico-e2e \
    --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls "http://127.0.0.1:$PEER_PORT" --initial-advertise-peer-urls "http://127.0.0.1:$PEER_PORT" \
    --initial-cluster "portico-e2e=http://127.0.0.1:$PEER_PORT" \
    --unsafe-no-fsync --log-level warn > etcd.log 2>&1 &
  echo $! >> pids
  # Up to 30 s: several planes may start at once on a 2-core machine.
  for _ in $(seq 1 300); do
    curl -sf "http://127.0.0.1:$ETCD_PORT/health" >/dev/null 2>&1 && break
    kill -0 "$(tail -1 pids)" 2>/dev/null || break
    sleep 0.1
  done
  curl -sf "http://127.0.0.1:$ETCD_PORT/health" >/dev/null || { cat etcd.log >&2; echo "etcd did not start" >&2; exit 1; }

  # No controller-manager or nodes: the endpoint reconciler is off (the advertise address
  # must not be loopback, and nothing needs the `kubernetes` Service's endpoints here).
  # The command is kept in a script so that tests can stop and restart the API server.
  cat > start-apiserver.sh <<START
#!/usr/bin/env bash
cd "$DIR"
exec "$BIN/kube-apiserver" \\
  --etcd-servers "http://127.0.0.1:$ETCD_PORT" \\
  --bind-address 127.0.0.1 --secure-port "$API_PORT" \\
  --tls-cert-file apiserver.crt --tls-private-key-file apiserver.key \\
  --client-ca-file ca.crt \\
  --token-auth-file tokens.csv \\
  --authorization-mode RBAC \\
  --service-account-issuer "https://127.0.0.1:$API_PORT" \\
  --service-account-key-file sa.pub --service-account-signing-key-file sa.key \\
  --service-cluster-ip-range 10.96.0.0/12 \\
  --disable-admission-plugins ServiceAccount \\
  --endpoint-reconciler-type none \\
  --advertise-address 198.51.100.1 \\
  --v 1 >> "$DIR/apiserver.log" 2>&1
START
  chmod +x start-apiserver.sh
  start_apiserver_bg

  SERVER="https://127.0.0.1:$API_PORT"
  cat > kubeconfig <<KCFG
apiVersion: v1
kind: Config
clusters:
- name: e2e
  cluster: {server: "$SERVER", certificate-authority: "$DIR/ca.crt"}
users:
- name: admin
  user: {token: "$TOKEN"}
contexts:
- name: e2e
  context: {cluster: e2e, user: admin}
current-context: e2e
KCFG
  printf 'SERVER=%s\nTOKEN=%s\nKUBECONFIG=%s\nKUBECTL=%s\n' "$SERVER" "$TOKEN" "$DIR/kubeconfig" "$BIN/kubectl" > env
  wait_ready
  echo "$DIR"
}

start_apiserver_bg() {
  setsid "$DIR/start-apiserver.sh" < /dev/null > /dev/null 2>&1 &
  echo $! > "$DIR/apiserver.pid"
  echo $! >> "$DIR/pids"
}

wait_ready() {
  # shellcheck disable=SC1091
  . "$DIR/env"
  for _ in $(seq 1 600); do
    [ "$(curl -s --cacert "$DIR/ca.crt" -H "Authorization: Bearer $TOKEN" "$SERVER/readyz" 2>/dev/null)" = ok ] && return 0
    sleep 0.1
  done
  tail -30 "$DIR/apiserver.log" >&2
  echo "kube-apiserver did not become ready" >&2
  exit 1
}

stop_apiserver() {
  local pid
  pid=$(cat "$DIR/apiserver.pid")
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
}

case $cmd in
  up) up ;;
  down) down ;;
  # Stop and start only the API server (etcd keeps the data): for resilience tests.
  stop-apiserver) stop_apiserver ;;
  start-apiserver) start_apiserver_bg; wait_ready ;;
  *) echo "usage: $0 up|down|stop-apiserver|start-apiserver DIR" >&2; exit 2 ;;
esac
