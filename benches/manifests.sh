# Sourced by the load benchmarks: bench_manifests BACKEND [ANNOTATIONS] prints the objects
# they serve, an IngressClass `portico`, a Service bench/backend whose EndpointSlice names
# BACKEND (ip:port), and an Ingress sending every host and path to it. ANNOTATIONS is the body
# of a flow-style YAML mapping for the Ingress.
bench_manifests() {
  local ip=${1%%:*} port=${1##*:}
  cat <<YAML
apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata: {name: portico}
spec: {controller: portico.dev/ingress-controller}
---
apiVersion: v1
kind: Service
metadata: {name: backend, namespace: bench}
spec:
  ports: [{name: http, port: 80}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: backend-1, namespace: bench, labels: {kubernetes.io/service-name: backend}}
addressType: IPv4
ports: [{name: http, port: $port}]
endpoints: [{addresses: ['$ip']}]
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: bench
  namespace: bench
  annotations: {${2:-}}
spec:
  ingressClassName: portico
  rules:
  - http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: backend, port: {number: 80}}}}
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
