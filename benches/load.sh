#!/usr/bin/env bash
# Load benchmark: Portico beside nginx in one run, same backend, same pinning, using the
# shared peer harness (../shared/bench/peers.sh). Prints the harness lines and then, per
# case, Portico's figures next to nginx's with the ratio.
#
#   bash benches/load.sh                 # all cases, 1 run
#   RUNS=3 CASES="http https-h1" bash benches/load.sh
#   ANNOTATIONS='nginx.ingress.kubernetes.io/affinity: cookie' CASES=http bash benches/load.sh
#   BUILD=release bash benches/load.sh   # a plain release build instead of the profile-guided
#                                        # one (scripts/build-pgo.sh) the image ships, the default
#   PORTICO_BINARY=target/pgo/release/portico bash benches/load.sh   # a binary already built
#
# ANNOTATIONS (one flow-style YAML mapping body) go on the bench Ingress, to measure what a
# load-balancing or affinity policy costs; the load tools send no cookie, so with cookie
# affinity every request is a new session (the dearest case).
#
# Equal worker counts: nginx runs 1 worker; Portico runs 1 tokio worker thread. Both are
# pinned to core 0; load generator and backend to core 1 (see peers.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
PEERS_SH=${PEERS_SH:-../shared/bench/peers.sh}
[ -x "$PEERS_SH" ] || [ -f "$PEERS_SH" ] || { echo "load.sh: peer harness not found at $PEERS_SH" >&2; exit 1; }

missing=()
for t in wrk:wrk h2load:nghttp2-client nginx:nginx curl:curl; do
  command -v "${t%%:*}" >/dev/null || missing+=("${t#*:}")
done
[ -x /usr/bin/time ] || missing+=(time)
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
fi

. benches/manifests.sh
BIN=$(bench_build)
OUT=$(mktemp /tmp/portico-load.XXXXXX)

# The harness starts this pinned to the proxy core. It writes a manifests directory that
# sends every host and path to the harness backend and serves the harness certificate as
# the default certificate (the load tools connect by IP, without SNI).
export BENCH_ANNOTATIONS="${ANNOTATIONS:-}"
EXTRA_CMD=$(cat <<CMD
set -e
. "$PWD/benches/manifests.sh"
m="\$BENCH_TMP/manifests"; mkdir -p "\$m"
{
bench_manifests "\$BENCH_BACKEND" "\$BENCH_ANNOTATIONS"
bench_tls_secret "\$BENCH_CERT" "\$BENCH_KEY"
} > "\$m/bench.yaml"
exec "$BIN" --manifests "\$m" --http-addr 127.0.0.1:\$BENCH_HTTP_PORT --https-addr 127.0.0.1:\$BENCH_HTTPS_PORT \
  --admin-addr 127.0.0.1:0 --default-ssl-certificate bench/tls --access-log off --worker-threads 1
CMD
)

PROXIES="nginx extra" EXTRA_NAME=portico EXTRA_HTTP_PORT=18084 EXTRA_HTTPS_PORT=18444 \
  EXTRA_CMD="$EXTRA_CMD" bash "$PEERS_SH" | tee "$OUT"

echo
echo "== Portico / nginx (same run, equal workers; medians when RUNS > 1)"
# Besides the ratio of the two medians: rounds won, and the median of the rounds' own ratios
# (each round runs the two proxies back to back, so a round's ratio is spared most of the
# machine's drift between rounds).
awk '
  /^(agg )?case=/ {
    split("", f); for (i = 1; i <= NF; i++) { split($i, kv, "="); f[kv[1]] = kv[2] }
    c = f["case"]; if (c !~ /^(nginx|portico)-/) next
    p = c; sub(/-.*/, "", p); k = c; sub(/^[^-]*-/, "", k)
    if ($1 == "agg") {
      rps[p, k] = f["rps_median"]; p99[p, k] = f["p99_ms_median"]; core[p, k] = f["rps_per_core_median"]; agg[p, k] = 1
    } else {
      round[p, k, f["run"]] = f["rps"]; if (f["run"] > runs) runs = f["run"]
      if (!agg[p, k]) { rps[p, k] = f["rps"]; p99[p, k] = f["p99_ms"]; core[p, k] = f["rps_per_core"] }
    }
    cases[k] = 1
  }
  END {
    printf "%-16s %12s %12s %7s %12s %12s %15s %6s %12s %14s\n", "case", "portico rps", "nginx rps", "ratio", "portico p99",
      "nginx p99", "rps/CPU ratio", "won", "round ratio", "95% interval"
    # 97.5 % quantiles of the t distribution by degrees of freedom (beyond 30: 2.0).
    split("12.71 4.303 3.182 2.776 2.571 2.447 2.365 2.306 2.262 2.228 2.201 2.179 2.160 2.145 2.131 " \
      "2.120 2.110 2.101 2.093 2.086 2.080 2.074 2.069 2.064 2.060 2.056 2.052 2.048 2.045 2.042", tq, " ")
    for (k in cases) {
      r = (rps["nginx", k] > 0) ? rps["portico", k] / rps["nginx", k] : 0
      c = (core["nginx", k] > 0) ? core["portico", k] / core["nginx", k] : 0
      n = 0; won = 0
      for (i = 1; i <= runs; i++) {
        if (round["nginx", k, i] > 0 && (("portico", k, i) in round)) {
          q[++n] = round["portico", k, i] / round["nginx", k, i]; if (q[n] >= 1) won++
        }
      }
      for (i = 2; i <= n; i++) for (j = i; j > 1 && q[j - 1] > q[j]; j--) { t = q[j]; q[j] = q[j - 1]; q[j - 1] = t }
      m = (n == 0) ? 0 : (n % 2 ? q[(n + 1) / 2] : (q[n / 2] + q[n / 2 + 1]) / 2)
      # The interval of the mean round ratio (on logarithms, so 0.9 and 1.1 weigh alike):
      # when it holds 1.0, the rounds cannot tell the two proxies apart.
      ci = "-"
      if (n >= 2) {
        sl = 0; for (i = 1; i <= n; i++) sl += log(q[i]); ml = sl / n
        ss = 0; for (i = 1; i <= n; i++) ss += (log(q[i]) - ml) ^ 2
        h = ((n - 1 <= 30) ? tq[n - 1] : 2.0) * sqrt(ss / (n - 1) / n)
        ci = sprintf("%.2f-%.2f", exp(ml - h), exp(ml + h))
      }
      printf "%-16s %12s %12s %7.2f %12s %12s %15.2f %6s %12.2f %14s\n", k, rps["portico", k], rps["nginx", k], r, p99["portico", k],
        p99["nginx", k], c, won "/" n, m, ci
    }
  }' "$OUT"
rm -f "$OUT"
