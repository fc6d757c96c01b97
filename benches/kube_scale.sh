#!/usr/bin/env bash
# Kubernetes mode at scale, on the real kube-apiserver of the end-to-end harness:
# N Ingresses (one host, one Service and one EndpointSlice each; every tenth with TLS, up to
# 1k Secrets), then Portico (release build) with the deploy/ ServiceAccount. Prints
#   - resident memory once ready and after the updates,
#   - the time from an EndpointSlice change (kubectl patch returns) to the new config being
#     live in Portico (its "config published" log line), over several changes.
#
#   bash benches/kube_scale.sh            # N=10000
#   N=2000 bash benches/kube_scale.sh
#   PORTICO=path/to/portico bash benches/kube_scale.sh   # that binary instead of a release build
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-10000}
UPDATES=${UPDATES:-10}
WORK=$(mktemp -d /tmp/portico-scale.XXXXXX)
CP="$WORK/cp"
cleanup() {
  [ -n "${PID:-}" ] && kill "$PID" 2>/dev/null || true
  bash tests/e2e/control-plane.sh down "$CP" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

if [ -z "${PORTICO:-}" ]; then
  cargo build --release --locked --bin portico >&2
  PORTICO=${CARGO_TARGET_DIR:-target}/release/portico
fi
bash tests/e2e/control-plane.sh up "$CP" >/dev/null
# shellcheck disable=SC1091
. "$CP/env"
k() { "$KUBECTL" --kubeconfig "$KUBECONFIG" "$@"; }
k apply -k deploy/ >/dev/null
k create namespace scale >/dev/null

echo "# generating $N Ingresses, Services and EndpointSlices, $(( N / 10 < 1000 ? N / 10 : 1000 )) TLS Secrets" >&2
python3 - "$N" "$WORK" tests/fixtures/tls/ec.crt tests/fixtures/tls/ec-sec1.key <<'PY'
import json, sys
n, work, crt, key = int(sys.argv[1]), sys.argv[2], open(sys.argv[3]).read(), open(sys.argv[4]).read()
parts = 4
files = [open(f"{work}/objects-{p}.json", "w") for p in range(parts)]
items = [[] for _ in range(parts)]
secrets = min(n // 10, 1000)
for i in range(n):
    b = items[i % parts]
    svc = f"svc-{i}"
    b.append({"apiVersion": "v1", "kind": "Service", "metadata": {"name": svc, "namespace": "scale"},
              "spec": {"ports": [{"name": "http", "port": 80, "targetPort": 8080}]}})
    b.append({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
              "metadata": {"name": f"{svc}-a", "namespace": "scale", "labels": {"kubernetes.io/service-name": svc}},
              "addressType": "IPv4", "ports": [{"name": "http", "port": 8080}],
              "endpoints": [{"addresses": [f"198.51.100.{1 + (i + p) % 250}"], "conditions": {"ready": True}} for p in range(3)]})
    spec = {"ingressClassName": "portico", "rules": [{"host": f"host-{i}.scale.example", "http": {"paths": [
        {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": svc, "port": {"number": 80}}}},
        {"path": "/api", "pathType": "Prefix", "backend": {"service": {"name": svc, "port": {"name": "http"}}}}]}}]}
    if i % 10 == 0 and i // 10 < secrets:
        sec = f"tls-{i // 10}"
        b.append({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
                  "metadata": {"name": sec, "namespace": "scale"}, "stringData": {"tls.crt": crt, "tls.key": key}})
        spec["tls"] = [{"hosts": [f"host-{i}.scale.example"], "secretName": sec}]
    b.append({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": f"ing-{i}", "namespace": "scale"}, "spec": spec})
for f, it in zip(files, items):
    json.dump({"apiVersion": "v1", "kind": "List", "items": it}, f)
    f.close()
PY
start=$SECONDS
for p in 0 1 2 3; do k create -f "$WORK/objects-$p.json" >/dev/null & done
wait
echo "# created in $((SECONDS - start)) s" >&2

token=$(k create token portico -n portico-system --duration 2h)
cat > "$WORK/kubeconfig" <<KC
apiVersion: v1
kind: Config
clusters: [{name: e2e, cluster: {server: "$SERVER", certificate-authority: "$CP/ca.crt"}}]
users: [{name: portico, user: {token: "$token"}}]
contexts: [{name: e2e, context: {cluster: e2e, user: portico}}]
current-context: e2e
KC
# The allocator settings deploy/base/deployment.yaml gives the container (see there).
MIMALLOC_PURGE_DELAY=${MIMALLOC_PURGE_DELAY:-0} MIMALLOC_ARENA_EAGER_COMMIT=${MIMALLOC_ARENA_EAGER_COMMIT:-0} \
KUBECONFIG="$WORK/kubeconfig" RUST_LOG=info "$PORTICO" --http-addr 127.0.0.1:0 --https-addr 127.0.0.1:0 \
  --admin-addr 127.0.0.1:18999 --log-format json --access-log off --publish-status-address 203.0.113.10 \
  --election-namespace portico-system > "$WORK/portico.log" 2>&1 &
PID=$!
t0=$(date +%s.%N)
until curl -sf http://127.0.0.1:18999/readyz >/dev/null 2>&1; do sleep 0.1; done
t1=$(date +%s.%N)
rss() { awk '/^VmRSS/{printf "%.1f", $2/1024}' /proc/$PID/status; }
echo "ready_after_s=$(echo "$t1 - $t0" | bc) rss_ready_mb=$(rss)"
# Let the leader write every Ingress's status (which must not trigger recompiles), then
# measure only what our own changes cause.
ts=$SECONDS
until [ "$(k get ingress -n scale -o jsonpath='{range .items[*]}{.status.loadBalancer.ingress[0].ip}{"\n"}{end}' | grep -c 203.0.113.10)" -ge "$N" ]; do
  [ $((SECONDS - ts)) -gt 600 ] && { echo "status writes did not finish" >&2; break; }
  sleep 2
done
echo "status_written_for_all_s=$((SECONDS - ts)) publishes_so_far=$(grep -c '"config published"' "$WORK/portico.log")"
echo "rss_settled_mb=$(rss)"

gen() { grep '"config published"' "$WORK/portico.log" | tail -1 | python3 -c 'import json,sys; print(json.loads(sys.stdin.read())["fields"]["generation"])'; }
lat=()
for u in $(seq 1 "$UPDATES"); do
  before=$(gen)
  i=$(( (u * 7919) % N ))
  sent=$(date +%s.%N)
  k patch endpointslice "svc-$i-a" -n scale --type=json \
    -p "[{\"op\":\"add\",\"path\":\"/endpoints/-\",\"value\":{\"addresses\":[\"198.51.100.$(( 200 + u ))\"],\"conditions\":{\"ready\":true}}}]" >/dev/null
  patched=$(date +%s.%N)
  for _ in $(seq 1 200); do [ "$(gen)" -gt "$before" ] && break; sleep 0.02; done
  # The first config published after the one that was live before the patch.
  line=$(grep '"config published"' "$WORK/portico.log" | python3 -c '
import json, sys
want = int(sys.argv[1]) + 1
for l in sys.stdin:
    v = json.loads(l)
    if v["fields"]["generation"] == want:
        print(l.strip()); break' "$before")
  live=$(echo "$line" | python3 -c '
import json, sys, datetime
ts = json.loads(sys.stdin.read())["timestamp"]
print(datetime.datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp())')
  compile_ms=$(echo "$line" | python3 -c 'import json,sys; f=json.loads(sys.stdin.read())["fields"]; print(str(round(f["compile_ms"],1)) + " compile=" + f.get("compile","?"))')
  sleep 0.5
  ms=$(echo "($live - $patched) * 1000" | bc)
  lat+=("$ms")
  printf 'update=%d slice=svc-%d-a patch_rtt_ms=%.1f patch_to_live_ms=%.1f compile_ms=%s\n' "$u" "$i" "$(echo "($patched - $sent)*1000" | bc)" "$ms" "$compile_ms"
done
printf '%s\n' "${lat[@]}" | sort -n | awk '{a[NR]=$1} END{printf "patch_to_live_ms: min=%.1f median=%.1f max=%.1f (n=%d)\n", a[1], a[int((NR+1)/2)], a[NR], NR}'
echo "rss_after_updates_mb=$(rss)"
