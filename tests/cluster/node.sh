#!/usr/bin/env bash
# A real one-node Kubernetes cluster on this machine, for the tests that run Portico the way
# users do: its image, in pods, behind Services that kube-proxy routes.
#
#   tests/cluster/node.sh up DIR     # build or reuse binaries and images, start, wait for the node
#   tests/cluster/node.sh down DIR   # stop everything, undo what the node left on the machine
#   tests/cluster/node.sh down DIR KEEP   # the same, keeping the components' logs in KEEP
#
# Runs as root: etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubelet and
# kube-proxy v1.35 (tests/e2e/build-control-plane.sh --node), Debian's containerd (CRI) and runc,
# the CNI bridge, host-local and portmap plugins. Images come from tests/cluster/images.sh,
# imported into containerd (no registry). One node at a time on a machine: the addresses,
# the bridge and the hostPorts are fixed.
#
# Addresses of its own, never the machine's (cluster.md, "Addresses"):
#   node        10.123.0.2/24 on the ifb device ptnode0 (API server, kubelet, NodePorts, hostPorts)
#   pods        10.124.0.0/24 on the bridge ptbr0
#   Services    10.96.0.0/12 (kubernetes 10.96.0.1, cluster DNS 10.96.0.10), routed into ptnode0
#               so that Service traffic kube-proxy did not rewrite dies there
# After `up`, DIR holds env (KUBECONFIG=, KUBECTL=, NODE_IP=, NODE_NAME=, images), kubeconfig
# (admin), ca.crt, *.log of each component, pids.
set -euo pipefail

cmd=${1:-}
DIR=${2:-}
[ -n "$cmd" ] && [ -n "$DIR" ] || { echo "usage: $0 up|down DIR [KEEP]" >&2; exit 2; }
case $DIR in /*) ;; *) DIR=$PWD/$DIR ;; esac
HERE=$(cd "$(dirname "$0")" && pwd)

NODE=portico-node
IFB=ptnode0
BRIDGE=ptbr0
NODE_IP=10.123.0.2
NODE_NET=10.123.0.2/24
POD_CIDR=10.124.0.0/24
SVC_CIDR=10.96.0.0/12
API_VIP=10.96.0.1
DNS_IP=10.96.0.10
API_PORT=6443
# Who has the node now: one at a time.
OWNER=/run/portico-node.owner
# Kernel settings the kubelet, kube-proxy and this script change; restored at `down`.
SYSCTLS="net.ipv4.ip_forward net.bridge.bridge-nf-call-iptables net.bridge.bridge-nf-call-ip6tables
kernel.panic kernel.panic_on_oops vm.overcommit_memory vm.panic_on_oom kernel.keys.root_maxkeys
kernel.keys.root_maxbytes net.ipv4.conf.all.route_localnet"
# Paths the kubelet, containerd and the CNI plugins use whatever they are told; removed at
# `down` when `up` did not find them.
HOST_PATHS="/var/lib/kubelet /var/log/pods /var/log/containers /var/lib/cni /run/containerd"
# The leak guard and docker's FORWARD policy (DROP) fix: pod traffic stays on the bridge.
FORWARD_RULES=("-i $BRIDGE -o $BRIDGE -j ACCEPT" "-i $BRIDGE ! -o $BRIDGE -j DROP")

log() { echo "[node] $(date +%T) $*" >&2; }
die() { echo "[node] $*" >&2; exit 1; }

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# Starts a component in its own session, logging to DIR/NAME.log; its pid goes to DIR/pids.
spawn() {
  local name=$1
  shift
  setsid "$@" < /dev/null >> "$DIR/$name.log" 2>&1 &
  echo "$! $name" >> "$DIR/pids"
}

wait_for() {
  local what=$1 tries=$2
  shift 2
  for _ in $(seq 1 "$tries"); do
    "$@" >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  die "$what did not come up"
}

kubeconfig() {
  local file=$1 user=$2 token=$3
  cat > "$file" <<KCFG
apiVersion: v1
kind: Config
clusters:
- name: node
  cluster: {server: "https://$NODE_IP:$API_PORT", certificate-authority: "$DIR/ca.crt"}
users:
- name: $user
  user: {token: "$token"}
contexts:
- name: node
  context: {cluster: node, user: $user}
current-context: node
KCFG
}

certs() {
  cd "$DIR"
  openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=portico-node-ca" -keyout ca.key -out ca.crt 2>/dev/null
  # name, subject, extensions
  sign() {
    openssl req -newkey rsa:2048 -nodes -subj "$2" -keyout "$1.key" -out "$1.csr" 2>/dev/null
    printf '%s\n' "$3" > "$1.ext"
    openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 -extfile "$1.ext" -out "$1.crt" 2>/dev/null
  }
  # In-cluster clients reach the API server as kubernetes.default.svc at the Service's first address.
  sign apiserver "/CN=kube-apiserver" "subjectAltName=IP:$NODE_IP,IP:$API_VIP,IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local
extendedKeyUsage=serverAuth"
  sign kubelet "/CN=$NODE" "subjectAltName=IP:$NODE_IP,DNS:$NODE
extendedKeyUsage=serverAuth"
  # What the API server shows the kubelet for logs, exec and port-forward.
  sign apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" "extendedKeyUsage=clientAuth"
  openssl genrsa -out sa.key 2048 2>/dev/null
  openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
  cd - >/dev/null
}

up() {
  [ "$(id -u)" = 0 ] || die "the node needs root"
  if [ -f "$OWNER" ] && [ -d "$(cat "$OWNER")" ]; then
    die "a node is already up in $(cat "$OWNER") (tests/cluster/node.sh down $(cat "$OWNER"))"
  fi
  ip link show "$IFB" >/dev/null 2>&1 && die "$IFB exists: a node was not taken down (tests/cluster/node.sh down DIR)"
  for t in containerd ctr runc iptables; do command -v $t >/dev/null || die "$t is missing (.ci/run installs it)"; done
  [ -x /usr/lib/cni/bridge ] && [ -x /usr/lib/cni/portmap ] || die "the CNI plugins are missing (containernetworking-plugins)"

  local start=$SECONDS
  BIN=$(bash "$HERE/../e2e/build-control-plane.sh" --node)
  IMAGES=$(bash "$HERE/images.sh")
  # shellcheck disable=SC1091
  . "$IMAGES/images.env"
  log "binaries and images ready in $((SECONDS - start)) s"

  mkdir -p "$DIR"
  echo "$DIR" > "$OWNER"
  : > "$DIR/pids"
  : > "$DIR/created"
  for p in $HOST_PATHS; do [ -e "$p" ] || echo "$p" >> "$DIR/created"; done
  ls /run/netns 2>/dev/null | grep '^cni-' > "$DIR/netns-before" || true
  for s in $SYSCTLS; do
    v=$(sysctl -n "$s" 2>/dev/null) && echo "$s=$v" >> "$DIR/sysctls"
  done
  sysctl -qw net.ipv4.ip_forward=1 net.bridge.bridge-nf-call-iptables=1 net.bridge.bridge-nf-call-ip6tables=1

  ip link add "$IFB" type ifb
  ip addr add "$NODE_NET" dev "$IFB"
  ip link set "$IFB" up
  ip route add "$SVC_CIDR" dev "$IFB"
  for r in "${FORWARD_RULES[@]}"; do
    # shellcheck disable=SC2086
    iptables -I FORWARD 1 $r -m comment --comment portico-node
    # shellcheck disable=SC2086
    ip6tables -I FORWARD 1 $r -m comment --comment portico-node
  done

  certs
  local admin kcm sched kubelet proxy
  admin=$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')
  kcm=$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')
  sched=$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')
  kubelet=$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')
  proxy=$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')
  # The users the bootstrap RBAC policy and the Node authorizer know.
  cat > "$DIR/tokens.csv" <<TOK
$admin,admin,admin,"system:masters"
$kcm,system:kube-controller-manager,kcm
$sched,system:kube-scheduler,scheduler
$kubelet,system:node:$NODE,node,"system:nodes"
$proxy,system:kube-proxy,kube-proxy
TOK
  kubeconfig "$DIR/kubeconfig" admin "$admin"
  kubeconfig "$DIR/kcm.kubeconfig" kcm "$kcm"
  kubeconfig "$DIR/scheduler.kubeconfig" scheduler "$sched"
  kubeconfig "$DIR/kubelet.kubeconfig" kubelet "$kubelet"
  kubeconfig "$DIR/kube-proxy.kubeconfig" kube-proxy "$proxy"
  KUBECTL=("$BIN/kubectl" --kubeconfig "$DIR/kubeconfig")

  local etcd_port peer_port
  etcd_port=$(free_port)
  peer_port=$(free_port)
  spawn etcd "$BIN/etcd" --data-dir "$DIR/etcd-data" --name node \
    --listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
    --listen-peer-urls "http://127.0.0.1:$peer_port" --initial-advertise-peer-urls "http://127.0.0.1:$peer_port" \
    --initial-cluster "node=http://127.0.0.1:$peer_port" --unsafe-no-fsync --log-level warn
  wait_for etcd 150 curl -sf "http://127.0.0.1:$etcd_port/health"

  spawn kube-apiserver "$BIN/kube-apiserver" \
    --etcd-servers "http://127.0.0.1:$etcd_port" \
    --bind-address "$NODE_IP" --advertise-address "$NODE_IP" --secure-port "$API_PORT" \
    --tls-cert-file "$DIR/apiserver.crt" --tls-private-key-file "$DIR/apiserver.key" \
    --client-ca-file "$DIR/ca.crt" --token-auth-file "$DIR/tokens.csv" \
    --authorization-mode Node,RBAC --enable-admission-plugins NodeRestriction \
    --service-account-issuer https://kubernetes.default.svc.cluster.local \
    --service-account-key-file "$DIR/sa.pub" --service-account-signing-key-file "$DIR/sa.key" \
    --service-cluster-ip-range "$SVC_CIDR" \
    --kubelet-client-certificate "$DIR/apiserver-kubelet-client.crt" \
    --kubelet-client-key "$DIR/apiserver-kubelet-client.key" \
    --kubelet-certificate-authority "$DIR/ca.crt" --kubelet-preferred-address-types InternalIP \
    --v 1
  api_ready() { [ "$(curl -s --cacert "$DIR/ca.crt" -H "Authorization: Bearer $admin" "https://$NODE_IP:$API_PORT/readyz")" = ok ]; }
  wait_for kube-apiserver 600 api_ready
  log "API server ready"

  spawn kube-controller-manager "$BIN/kube-controller-manager" \
    --kubeconfig "$DIR/kcm.kubeconfig" --leader-elect=false \
    --bind-address 127.0.0.1 --secure-port "$(free_port)" \
    --service-account-private-key-file "$DIR/sa.key" --root-ca-file "$DIR/ca.crt" \
    --use-service-account-credentials --cluster-cidr "$POD_CIDR" --service-cluster-ip-range "$SVC_CIDR" \
    --v 1
  spawn kube-scheduler "$BIN/kube-scheduler" \
    --kubeconfig "$DIR/scheduler.kubeconfig" --leader-elect=false \
    --bind-address 127.0.0.1 --secure-port "$(free_port)" --v 1

  # containerd of its own: root, state and socket under DIR, beside any other on the machine.
  local ctrd=$DIR/containerd
  mkdir -p "$ctrd" "$DIR/cni/net.d"
  cat > "$ctrd/config.toml" <<TOML
version = 2
root = "$ctrd/root"
state = "$ctrd/state"
[grpc]
  address = "$ctrd/containerd.sock"
[ttrpc]
  address = "$ctrd/containerd.sock.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "$ctrd/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  # Nothing here may lower oom_score_adj (no CAP_SYS_RESOURCE): without this every sandbox
  # fails in runc with "can't get final child's PID from pipe: EOF".
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$DIR/cni/net.d"
TOML
  spawn containerd containerd --config "$ctrd/config.toml"
  wait_for containerd 150 ctr --address "$ctrd/containerd.sock" version
  local t
  for t in "$IMAGES"/*.tar; do
    ctr --address "$ctrd/containerd.sock" -n k8s.io images import "$t" >/dev/null
  done
  log "containerd up, images imported"

  # Pods on the harness's bridge; the default route through it is what lets them reach
  # ClusterIPs. portmap gives hostPorts (the minikube addon's 80 and 443).
  cat > "$DIR/cni/net.d/10-portico.conflist" <<CNI
{
  "cniVersion": "0.4.0",
  "name": "portico-node",
  "plugins": [
    {"type": "bridge", "bridge": "$BRIDGE", "isGateway": true, "isDefaultGateway": true,
     "ipMasq": false, "hairpinMode": true,
     "ipam": {"type": "host-local", "ranges": [[{"subnet": "$POD_CIDR"}]], "dataDir": "$DIR/cni/ipam"}},
    {"type": "portmap", "capabilities": {"portMappings": true}, "snat": true}
  ]
}
CNI

  : > "$DIR/resolv.conf"
  cat > "$DIR/kubelet.yaml" <<KUBELET
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# These machines mount cgroup v1, which kubelet 1.35 refuses unless told.
failCgroupV1: false
cgroupDriver: cgroupfs
failSwapOn: false
# Nothing here may lower oom_score_adj.
oomScoreAdj: 0
containerRuntimeEndpoint: unix://$ctrd/containerd.sock
address: $NODE_IP
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: $(free_port)
tlsCertFile: $DIR/kubelet.crt
tlsPrivateKeyFile: $DIR/kubelet.key
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $DIR/ca.crt}
authorization: {mode: Webhook}
# Always set: without it pods would use the machine's resolver.
clusterDNS: [$DNS_IP]
clusterDomain: cluster.local
resolvConf: $DIR/resolv.conf
evictionHard: {memory.available: "100Mi", nodefs.available: "1%", nodefs.inodesFree: "1%", imagefs.available: "1%"}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
serializeImagePulls: false
KUBELET
  mkdir -p "$DIR/kubelet"
  spawn kubelet "$BIN/kubelet" --config "$DIR/kubelet.yaml" --kubeconfig "$DIR/kubelet.kubeconfig" \
    --root-dir "$DIR/kubelet" --hostname-override "$NODE" --node-ip "$NODE_IP" --v 1

  cat > "$DIR/kube-proxy.yaml" <<PROXY
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: $DIR/kube-proxy.kubeconfig}
hostnameOverride: $NODE
mode: iptables
clusterCIDR: $POD_CIDR
# NodePorts on the harness's address only, never on the machine's interface.
nodePortAddresses: ["$NODE_IP/32"]
healthzBindAddress: 127.0.0.1:$(free_port)
metricsBindAddress: 127.0.0.1:$(free_port)
# Leaves the machine's conntrack sysctls and route_localnet alone.
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
iptables: {localhostNodePorts: false}
PROXY
  spawn kube-proxy "$BIN/kube-proxy" --config "$DIR/kube-proxy.yaml" --v 1

  node_ready() { [ "$("${KUBECTL[@]}" get node "$NODE" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}')" = True ]; }
  wait_for "node $NODE Ready" 600 node_ready
  # Pods can be made once the default ServiceAccount exists, and read the API once the CA
  # ConfigMap their token volume projects is there.
  wait_for "default ServiceAccount" 300 "${KUBECTL[@]}" get serviceaccount default -n default
  wait_for "kube-root-ca.crt" 300 "${KUBECTL[@]}" get configmap kube-root-ca.crt -n default
  # The node lifecycle controller lifts the not-ready taint a moment after Ready.
  untainted() { "${KUBECTL[@]}" get node "$NODE" >/dev/null && [ -z "$("${KUBECTL[@]}" get node "$NODE" -o jsonpath='{.spec.taints}')" ]; }
  wait_for "an untainted node" 300 untainted

  cat > "$DIR/env" <<ENV
KUBECONFIG=$DIR/kubeconfig
KUBECTL=$BIN/kubectl
NODE_NAME=$NODE
NODE_IP=$NODE_IP
POD_CIDR=$POD_CIDR
SVC_CIDR=$SVC_CIDR
CONTAINERD_SOCK=$ctrd/containerd.sock
PAUSE_IMAGE=$PAUSE_IMAGE
AGNHOST_IMAGE=$AGNHOST_IMAGE
PORTICO_IMAGE=$PORTICO_IMAGE
ENV
  log "node $NODE up in $((SECONDS - start)) s"
  echo "$DIR"
}

pid_of() { awk -v n="$1" '$2 == n {print $1}' "$DIR/pids" 2>/dev/null; }

stop() {
  local pid
  for name in "$@"; do
    pid=$(pid_of "$name")
    [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null || true
  done
  for name in "$@"; do
    pid=$(pid_of "$name")
    [ -n "$pid" ] || continue
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  done
}

# Removes every chain of a prefix the node's components made, with the jumps to them.
drop_chains() {
  local ipt=$1 prefix=$2 table chain
  for table in filter nat mangle raw; do
    $ipt -t "$table" -S 2>/dev/null | { grep -E "^-A [A-Z]+ .*-j $prefix" || true; } | while read -r rule; do
      # shellcheck disable=SC2086
      eval "$ipt -t $table ${rule/-A/-D}" 2>/dev/null || true
    done
    for chain in $($ipt -t "$table" -S 2>/dev/null | awk -v p="^$prefix" '$1 == "-N" && $2 ~ p {print $2}'); do
      $ipt -t "$table" -F "$chain" 2>/dev/null || true
    done
    for chain in $($ipt -t "$table" -S 2>/dev/null | awk -v p="^$prefix" '$1 == "-N" && $2 ~ p {print $2}'); do
      $ipt -t "$table" -X "$chain" 2>/dev/null || true
    done
  done
}

down() {
  local keep=${3:-}
  [ -d "$DIR" ] || { [ "$(cat "$OWNER" 2>/dev/null)" = "$DIR" ] && rm -f "$OWNER"; return 0; }
  local start=$SECONDS
  # Nothing may start pods again while they are stopped: the kubelet and the controllers first.
  stop kubelet kube-proxy kube-scheduler kube-controller-manager
  local sock=$DIR/containerd/containerd.sock
  if [ -S "$sock" ]; then
    local c
    for c in $(ctr --address "$sock" -n k8s.io tasks ls -q 2>/dev/null); do
      ctr --address "$sock" -n k8s.io tasks kill -s SIGKILL "$c" >/dev/null 2>&1 || true
    done
    for _ in $(seq 1 50); do
      ctr --address "$sock" -n k8s.io tasks ls 2>/dev/null | grep -q RUNNING || break
      sleep 0.1
    done
    for c in $(ctr --address "$sock" -n k8s.io tasks ls -q 2>/dev/null); do
      ctr --address "$sock" -n k8s.io tasks delete -f "$c" >/dev/null 2>&1 || true
    done
    for c in $(ctr --address "$sock" -n k8s.io containers ls -q 2>/dev/null); do
      ctr --address "$sock" -n k8s.io containers delete "$c" >/dev/null 2>&1 || true
    done
  fi
  local t_pods=$((SECONDS - start))
  stop containerd kube-apiserver etcd
  local t_stopped=$((SECONDS - start))
  # Shims of this containerd that outlived it (they are its children in another session).
  local p
  for p in $(pgrep -f "containerd-shim-runc-v2 .*-address $sock" 2>/dev/null); do kill -KILL "$p" 2>/dev/null || true; done

  if [ -n "$keep" ]; then
    mkdir -p "$keep"
    cp "$DIR"/*.log "$DIR"/*.yaml "$DIR"/cni/net.d/* "$keep/" 2>/dev/null || true
    [ -d /var/log/pods ] && cp -r /var/log/pods "$keep/pods" 2>/dev/null || true
  fi

  local bin
  bin=$(dirname "$(awk -F= '$1 == "KUBECTL" {print $2}' "$DIR/env" 2>/dev/null || echo /nonexistent/x)")
  [ -x "$bin/kube-proxy" ] && "$bin/kube-proxy" --cleanup >/dev/null 2>&1 || true
  for ipt in iptables ip6tables; do
    drop_chains "$ipt" KUBE-
    drop_chains "$ipt" CNI-
    for r in "${FORWARD_RULES[@]}"; do
      # shellcheck disable=SC2086
      while $ipt -D FORWARD $r -m comment --comment portico-node 2>/dev/null; do :; done
    done
  done

  # Mounts under DIR (the kubelet's root dir bound onto itself, volumes, sandboxes' shm,
  # rootfs overlays), deepest first.
  local m
  for _ in 1 2 3; do
    for m in $(awk -v d="$DIR" 'index($2, d) == 1 {print $2}' /proc/mounts | sort -r); do
      umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
    done
  done
  # The pods' network namespaces.
  for n in $(ls /run/netns 2>/dev/null | grep '^cni-'); do
    grep -qx "$n" "$DIR/netns-before" 2>/dev/null && continue
    umount "/run/netns/$n" 2>/dev/null || umount -l "/run/netns/$n" 2>/dev/null || true
    # A file a dead process still holds can be busy: leave it (the next cluster does not use
    # the name) rather than stop tearing down and leave the rest of the node behind.
    rm -f "/run/netns/$n" 2>/dev/null || echo "[node] /run/netns/$n is busy; left in place" >&2
  done
  ip link del "$BRIDGE" 2>/dev/null || true
  ip link del "$IFB" 2>/dev/null || true
  # The pods' cgroups, in every hierarchy, deepest first.
  for cg in /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/*/k8s.io /sys/fs/cgroup/kubepods /sys/fs/cgroup/k8s.io; do
    [ -d "$cg" ] && find "$cg" -depth -type d -exec rmdir {} \; 2>/dev/null || true
  done
  if [ -f "$DIR/sysctls" ]; then
    while IFS= read -r kv; do sysctl -qw "$kv" 2>/dev/null || true; done < "$DIR/sysctls"
  fi
  if [ -f "$DIR/created" ]; then
    while IFS= read -r p; do
      if ! grep -q " $p[/ ]" /proc/mounts; then rm -rf --one-file-system "$p"; fi
    done < "$DIR/created"
  fi
  rm -rf --one-file-system "$DIR"
  [ "$(cat "$OWNER" 2>/dev/null)" = "$DIR" ] && rm -f "$OWNER"
  # What must not outlive the node.
  local left=()
  ip link show "$IFB" >/dev/null 2>&1 && left+=("link $IFB")
  ip link show "$BRIDGE" >/dev/null 2>&1 && left+=("link $BRIDGE")
  iptables-save 2>/dev/null | grep -qE 'KUBE-|CNI-|portico-node' && left+=("iptables rules")
  ip6tables-save 2>/dev/null | grep -qE 'KUBE-|CNI-|portico-node' && left+=("ip6tables rules")
  grep -q " $DIR" /proc/mounts && left+=("mounts under $DIR")
  ls -d /sys/fs/cgroup/*/kubepods >/dev/null 2>&1 && left+=("kubepods cgroups")
  [ -e "$DIR" ] && left+=("$DIR")
  if [ ${#left[@]} -gt 0 ]; then
    echo "[node] left behind: ${left[*]}" >&2
    return 1
  fi
  log "node down in $((SECONDS - start)) s (node components and pods stopped at $t_pods s, control plane and containerd at $t_stopped s)"
}

case $cmd in
  up)
    # A failed start leaves nothing behind.
    if ! (up); then
      down down "$DIR" "$DIR.failed" >/dev/null 2>&1 || true
      echo "[node] the node did not come up; its logs are in $DIR.failed" >&2
      exit 1
    fi
    ;;
  down) down "$@" ;;
  *) echo "usage: $0 up|down DIR [KEEP]" >&2; exit 2 ;;
esac
