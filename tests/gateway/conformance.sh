#!/usr/bin/env bash
# The Gateway API conformance suite against Portico, in the one-node cluster:
#
#   bash tests/gateway/conformance.sh            # as root; about 3 minutes with everything cached
#
# 1. builds (or reuses) the suite, its CRDs and images (tests/gateway/build.sh) and Portico's
#    image (scripts/image.sh, only when docker has none);
# 2. brings up the one-node cluster (tests/cluster/node.sh), imports the suite's images,
#    applies the standard-channel CRDs, installs Portico with `kubectl apply -k deploy/gateway`
#    (GatewayClass `portico`, controllerName portico.dev/gateway-controller) and gives its
#    Service the node's address as external IP: Gateways are reached there, on the harness's
#    own device, and nowhere else;
# 3. runs the suite for the profiles GATEWAY-HTTP, GATEWAY-GRPC and GATEWAY-TLS as a user of
#    its own whose packets may only go to the node's and the pods' addresses (an iptables
#    owner match rejects everything else), with shortened timeouts;
# 4. writes the ConformanceReport and a Markdown summary to conformance/ (committed), the
#    suite's output and the cluster's logs to target/gateway-conformance/, and takes the
#    cluster down.
#
# Exits non-zero when the harness fails (no report written); a report with failed tests is a
# result, not a harness failure, unless GATEWAY_CONFORMANCE_STRICT=1.
#
# Settings (environment):
#   GATEWAY_PROFILES     profiles to run (default GATEWAY-HTTP,GATEWAY-GRPC,GATEWAY-TLS)
#   GATEWAY_CHANNEL      the CRDs' channel, standard (default) or experimental; with
#                        standard, `profiles` below leaves out the experimental-channel
#                        features (HTTPRouteRetry*, HTTPRouteDestinationPortMatching,
#                        TLSRouteModeMixed in v1.6.3), whose tests need experimental fields
#   GATEWAY_FEATURES     `inferred` (the GatewayClass's status.supportedFeatures, what the
#                        suite does by default), `profiles` (every core and extended feature of
#                        the profiles and the channel: runs all their tests), or a
#                        comma-separated list; default:
#                        inferred when the GatewayClass publishes features, else profiles
#   GATEWAY_TIMEOUTS     the suite's --timeout-config-overrides (seconds); default below
#   GATEWAY_RUN_TEST     one test's short name (--run-test), for debugging one test
#   GATEWAY_KNOWN_GAPS   the file of tests skipped as known failures, each with its reason
#                        (default tests/gateway/known-gaps.txt; /dev/null runs them all)
#   GATEWAY_CONFORMANCE_OUT  where logs go (default target/gateway-conformance)
#   GATEWAY_KEEP_CLUSTER=1   leave the cluster up afterwards, to look around (it says how to
#                        take it down)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
cd "$REPO"
PROFILES=${GATEWAY_PROFILES:-GATEWAY-HTTP,GATEWAY-GRPC,GATEWAY-TLS}
FEATURES=${GATEWAY_FEATURES:-}
CHANNEL=${GATEWAY_CHANNEL:-standard}
case $CHANNEL in standard | experimental) ;; *) echo "GATEWAY_CHANNEL is standard or experimental" >&2; exit 2 ;; esac
# The suite's defaults (60-300 s per wait) make a failing run take hours; Portico applies a
# change in well under a second, so these leave room and a failing test costs about 30 s.
TIMEOUTS=${GATEWAY_TIMEOUTS:-GWCMustBeAccepted:60;GatewayMustHaveAddress:30;GatewayMustHaveCondition:30;GatewayStatusMustHaveListeners:30;GatewayListenersMustHaveConditions:30;ListenerSetMustHaveCondition:30;ListenerSetListenersMustHaveConditions:30;HTTPRouteMustNotHaveParents:30;HTTPRouteMustHaveCondition:30;TLSRouteMustHaveCondition:30;RouteMustHaveParents:30;LatestObservedGenerationSet:30;MaxTimeToConsistency:20;DefaultTestTimeout:30;NamespacesMustBeReady:180}
OUT=${GATEWAY_CONFORMANCE_OUT:-$REPO/target/gateway-conformance}
RESULTS=$REPO/conformance
# The suite runs as this user (no account needed): the iptables owner match keys on it.
SUITE_UID=${GATEWAY_SUITE_UID:-64123}
GATEWAY_CLASS=portico
GUARD=portico-gateway-conformance
DOCKER=docker
[ -x /usr/bin/docker ] && DOCKER=/usr/bin/docker
PORTICO_IMAGE=${PORTICO_IMAGE:-portico:dev}
export PORTICO_IMAGE

log() { echo "[gateway-conformance] $(date +%T) $*" >&2; }
die() { log "$*"; exit 1; }
[ "$(id -u)" = 0 ] || die "the one-node cluster needs root"
command -v setpriv >/dev/null || die "setpriv is missing (util-linux)"

start=$SECONDS
BUILD=$(bash "$HERE/build.sh")
# shellcheck disable=SC1091
. "$BUILD/env"
if ! $DOCKER image inspect "$PORTICO_IMAGE" >/dev/null 2>&1; then
  IMAGE=$PORTICO_IMAGE bash scripts/image.sh >&2
fi
log "suite $CONFORMANCE_VERSION, CRDs $GATEWAY_API_VERSION and images ready in $((SECONDS - start)) s"

rm -rf "$OUT"
mkdir -p "$OUT" "$RESULTS"
DIR=$(mktemp -d /tmp/portico-gateway-conformance.XXXXXX)
rmdir "$DIR"
# The suite's packets (its uid) may go to the addresses in GUARD_ALLOW only: first in OUTPUT,
# so that no earlier rule lets them through. Not even loopback: the machine's own interface
# address is routed through lo too.
guard() {
  local n=1 dest
  for dest in "${GUARD_ALLOW[@]}"; do
    iptables -I OUTPUT $n -m owner --uid-owner "$SUITE_UID" -d "$dest" -j ACCEPT -m comment --comment $GUARD
    n=$((n + 1))
  done
  iptables -I OUTPUT $n -m owner --uid-owner "$SUITE_UID" -j REJECT -m comment --comment $GUARD
  ip6tables -I OUTPUT 1 -m owner --uid-owner "$SUITE_UID" -j REJECT -m comment --comment $GUARD
}
cleanup() {
  local rc=$?
  for ipt in iptables ip6tables; do
    while $ipt -S OUTPUT 2>/dev/null | grep -q "$GUARD"; do
      rule=$($ipt -S OUTPUT | grep "$GUARD" | head -1)
      # shellcheck disable=SC2086
      eval "$ipt ${rule/-A/-D}" || break
    done
  done
  if [ -n "${KUBECTL:-}" ]; then
    "$KUBECTL" get gatewayclass,gateway,httproute,grpcroute,tlsroute -A -o yaml > "$OUT/gateway-objects.yaml" 2>&1 || true
    "$KUBECTL" -n portico-system logs -l app.kubernetes.io/name=portico --prefix --tail=-1 > "$OUT/portico.log" 2>&1 || true
    "$KUBECTL" get pods -A -o wide > "$OUT/pods.txt" 2>&1 || true
  fi
  if [ "${GATEWAY_KEEP_CLUSTER:-}" = 1 ] && [ -f "$DIR/env" ]; then
    log "cluster kept: KUBECONFIG=$DIR/kubeconfig; take it down with: bash tests/cluster/node.sh down $DIR"
    exit $rc
  fi
  local down=$SECONDS
  bash "$REPO/tests/cluster/node.sh" down "$DIR" "$OUT/node" || rc=1
  log "cluster down in $((SECONDS - down)) s; whole run $((SECONDS - start)) s; logs in $OUT"
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

up=$SECONDS
bash "$REPO/tests/cluster/node.sh" up "$DIR" >/dev/null
# shellcheck disable=SC1091
. "$DIR/env"
export KUBECONFIG KUBECTL
k() { "$KUBECTL" "$@"; }
log "cluster up in $((SECONDS - up)) s"

for t in "$IMAGES_DIR"/*.tar; do
  ctr --address "$CONTAINERD_SOCK" -n k8s.io images import "$t" >/dev/null
done

crds=$CRDS_STANDARD
[ "$CHANNEL" = experimental ] && crds=$CRDS_EXPERIMENTAL
k apply --server-side -f "$crds" >/dev/null
# shellcheck disable=SC2046
k wait --for condition=established --timeout=60s $(k get crd -o name | grep -E '\.gateway\.networking\.(x-)?k8s\.io$') >/dev/null

# Portico as deploy/gateway installs it, its image loaded under the name deploy/ gives it.
rendered=$(k kustomize tests/gateway/deploy)
image=$(echo "$rendered" | sed -n 's/^[[:space:]]*image:[[:space:]]*//p' | head -1)
full() { case $1 in *.*/*) echo "$1" ;; */*) echo "docker.io/$1" ;; *) echo "docker.io/library/$1" ;; esac; }
ctr --address "$CONTAINERD_SOCK" -n k8s.io images tag --force "$(full "$PORTICO_IMAGE")" "$(full "$image")" >/dev/null
k apply -k tests/gateway/deploy >/dev/null
# A Service per Gateway (ClusterIP, tests/gateway/deploy); static addresses may be the node's.
k -n portico-system set env deployment/portico PORTICO_GATEWAY_ADDRESS_CIDRS="$NODE_IP/32" >/dev/null
# The node's address, on the harness's own device, is where Gateways are reached: kube-proxy
# sends it to Portico's pods, and Portico publishes its Service's external IPs as addresses.
k -n portico-system patch service portico --type merge -p "{\"spec\":{\"externalIPs\":[\"$NODE_IP\"]}}" >/dev/null
k -n portico-system rollout status deployment portico --timeout=180s >&2

# Features: what the GatewayClass publishes, else every feature of the profiles.
if [ -z "$FEATURES" ]; then
  FEATURES=profiles
  for _ in $(seq 1 20); do
    if [ -n "$(k get gatewayclass $GATEWAY_CLASS -o jsonpath='{.status.supportedFeatures}' 2>/dev/null)" ]; then
      FEATURES=inferred
      break
    fi
    sleep 0.5
  done
fi
feature_args=()
case $FEATURES in
  inferred) ;;
  profiles)
    list=$(PROFILES=$PROFILES CHANNEL=$CHANNEL "$SUITE" -test.run '^TestProfileFeatures$' | sed -n 's/^FEATURES=//p')
    [ -n "$list" ] || die "the suite listed no features for $PROFILES"
    feature_args=(--supported-features="$list")
    ;;
  *) feature_args=(--supported-features="$FEATURES") ;;
esac
log "CRDs: $CHANNEL channel; features: $FEATURES"
[ -n "${GATEWAY_RUN_TEST:-}" ] && feature_args+=(--run-test="$GATEWAY_RUN_TEST")
# Known failures, named with their reasons in the summary: skipped, so that a strict run
# fails on anything else (and does not wait out their timeouts).
GAPS=${GATEWAY_KNOWN_GAPS:-$HERE/known-gaps.txt}
gaps=$(grep -v '^#' "$GAPS" | grep -E '^[A-Za-z0-9]+: ' || true)
skip=$(echo "$gaps" | sed -n 's/^\([A-Za-z0-9]*\): .*/\1/p' | paste -sd, -)
[ -n "$skip" ] && feature_args+=(--skip-tests="$skip")
log "known gaps skipped: ${skip:-none}"

# The suite's own user, its files readable and writable by it, its packets only to the node
# and the pods.
work=$DIR/suite
mkdir -p "$work"
cp "$KUBECONFIG" "$work/kubeconfig"
cp "$DIR/ca.crt" "$work/ca.crt"
cp "$SUITE" "$work/conformance.test"
sed -i "s#certificate-authority: \"[^\"]*\"#certificate-authority: \"$work/ca.crt\"#" "$work/kubeconfig"
chown -R "$SUITE_UID:$SUITE_UID" "$work"
chmod 700 "$work"
# Gateways' own Services are ClusterIPs, which kube-proxy's NAT rules on the node turn into
# pod addresses before the guard (filter table) sees the packets; so the Service range itself
# is not allowed. A connection made before kube-proxy has the rules of a Service just created
# is then refused at once, and the client's next try gets the rules; were it let through, it
# would go out the default route, unanswered, and its conntrack entry would keep every
# retransmitted SYN of it off the rules too (a gRPC or TLS test's one dial hangs to its
# timeout).
GUARD_ALLOW=("$NODE_IP/32" "$POD_CIDR")
# GatewayStaticAddresses asks for a Gateway at an address Portico may give (the node's, in
# --gateway-address-cidrs: its Service's external IP) and at one it may not: one of the node's
# range outside them, which nothing holds (the guard rejects packets to it).
UNUSABLE_ADDRESS=${NODE_IP%.*}.250
guard

version=$($DOCKER run --rm "$PORTICO_IMAGE" --version | awk '{print $2}')
commit=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)
report=$work/report.yaml
summary=$work/summary.md
suite_start=$SECONDS
log "running the suite ($PROFILES); its output: $OUT/suite.log"
set +e
(
  cd "$work"
  setpriv --reuid="$SUITE_UID" --regid="$SUITE_UID" --clear-groups \
    env -i PATH=/usr/bin:/bin HOME="$work" KUBECONFIG="$work/kubeconfig" \
    "$work/conformance.test" -test.v -test.count=1 -test.timeout=3h -test.run '^TestConformance$' \
    --gateway-class="$GATEWAY_CLASS" \
    --conformance-profiles="$PROFILES" \
    "${feature_args[@]}" \
    --report-output="$report" --summary-output="$summary" \
    --organization=portico-dev --project=portico --url=https://github.com/portico-dev/portico \
    --version="v$version-$commit" --contact=https://github.com/portico-dev/portico/issues \
    --cleanup-base-resources=false \
    --usable-address="$NODE_IP" --unusable-address="$UNUSABLE_ADDRESS" \
    --timeout-config-overrides="$TIMEOUTS"
) > "$OUT/suite.log" 2>&1
suite_rc=$?
set -e
suite_time=$((SECONDS - suite_start))
log "suite exited $suite_rc after $suite_time s"
grep -E '^\s*--- (PASS|FAIL|SKIP): TestConformance/' "$OUT/suite.log" | awk '{print $2}' | sort | uniq -c >&2 || true

[ -f "$report" ] || { tail -40 "$OUT/suite.log" >&2; die "the suite wrote no report"; }
name=gateway-api-$CONFORMANCE_VERSION
cp "$report" "$RESULTS/$name-report.yaml"
{
  echo "# Gateway API $CONFORMANCE_VERSION conformance: Portico"
  echo
  echo "Written by \`bash tests/gateway/conformance.sh\` (the report beside it is the suite's"
  echo "own ConformanceReport). Profiles $PROFILES; CRDs of the $CHANNEL channel; features: $FEATURES$( [ "$FEATURES" = profiles ] && echo " (every core and extended feature of the profiles in the $CHANNEL channel claimed, to run all their tests)")."
  echo "Suite exit status $suite_rc after $suite_time s; $((SECONDS - start)) s from the start of the script (build check, cluster start, Portico's rollout, the suite; the cluster's stop, about 10-30 s, comes after)."
  echo
  if [ -f "$summary" ]; then cat "$summary"; else echo "The suite wrote no summary."; fi
  echo
  echo "## Known gaps (skipped, from tests/gateway/known-gaps.txt)"
  echo
  if [ -n "$gaps" ]; then
    echo "$gaps" | sed 's/^\([A-Za-z0-9]*\): /- **\1**: /'
  else
    echo "None."
  fi
  echo
  echo "## Test outcomes as the suite printed them"
  echo
  outcomes=$(grep -E '^\s*--- (PASS|FAIL|SKIP): TestConformance/' "$OUT/suite.log" | sed 's/^ *--- //; s/ (.*//' || true)
  if [ -n "$outcomes" ]; then
    echo "$outcomes" | awk '{print $1}' | sort | uniq -c | awk '{printf "%s %s, ", $1, $2} END {print ""}'
    echo
    echo '```'
    # Sorted by test name: the suite runs subtests in parallel, in no fixed order.
    echo "$outcomes" | sed 's/TestConformance\///' | sort -k2
    echo '```'
  else
    echo "No test ran. The suite stopped with:"
    echo
    echo '```'
    sed -n '/Error Trace:/,/Messages:/p' "$OUT/suite.log" | grep -E '^\s*(Error|Messages):' | sed 's/^[[:space:]]*//' | head -6 || true
    echo '```'
  fi
} > "$RESULTS/$name.md"
log "report: conformance/$name-report.yaml, summary: conformance/$name.md"
if [ "${GATEWAY_CONFORMANCE_STRICT:-}" = 1 ] && [ "$suite_rc" != 0 ]; then
  die "the suite failed (GATEWAY_CONFORMANCE_STRICT=1)"
fi
