#!/usr/bin/env bash
# User-space instructions per proxied request (callgrind) on a route with limit-rps, limit-rpm and
# limit-connections (set high: nothing is refused) beside a route without limits, in one Portico
# process with one worker, alternating phases of N HTTP/1.1 GETs over 10 connections (h2load).
#   BIN=target/debug/portico N=3000 bash benches/limits.sh
set -euo pipefail
BIN=${BIN:-target/debug/portico}
N=${N:-3000}
T=$(mktemp -d)
$BIN echo --listen 127.0.0.1:18390 --name web-0 >/dev/null 2>&1 &
ECHO=$!
cat > $T/all.yaml <<Y
apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata: {name: portico}
spec: {controller: portico.dev/ingress-controller}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec: {ports: [{name: http, port: 80}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: web-0, namespace: default, labels: {kubernetes.io/service-name: web}}
addressType: IPv4
ports: [{name: http, port: 18390}]
endpoints: [{addresses: [127.0.0.1]}]
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: plain, namespace: default}
spec: {ingressClassName: portico, rules: [{http: {paths: [{path: /plain, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}]}}]}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: limited
  namespace: default
  annotations: {nginx.ingress.kubernetes.io/limit-rps: "1000000", nginx.ingress.kubernetes.io/limit-rpm: "60000000", nginx.ingress.kubernetes.io/limit-connections: "1000000"}
spec: {ingressClassName: portico, rules: [{http: {paths: [{path: /limited, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}]}}]}
Y
valgrind --tool=callgrind --callgrind-out-file=$T/cg.%p --collect-atstart=yes \
  $BIN --manifests $T --http-addr 127.0.0.1:18391 --https-addr 127.0.0.1:18491 --admin-addr 127.0.0.1:18392 \
  --worker-threads 1 --access-log off --log-format json >/dev/null 2>$T/vg.log &
PID=$!
for _ in $(seq 300); do curl -sf -o /dev/null http://127.0.0.1:18391/plain && break; sleep 0.2; done
load() { h2load --h1 -n $N -c 10 http://127.0.0.1:18391/$1 | grep -E "status codes" >&2; }
# Callgrind zeroes its counters at each dump: each dump holds one phase.
phase() { load $1; callgrind_control -d $PID >/dev/null; sleep 2; grep -h "^totals:" $(ls -t $T/cg.*.* | head -1) | awk '{print $2}'; }
phase plain >/dev/null   # warm-up
for p in plain limited plain limited; do echo "$p: $(( $(phase $p) / N )) instructions/request"; done
kill $PID $ECHO; wait 2>/dev/null || true
rm -rf $T
