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
#   PROXY_ORDER="nginx extra" RUNS=5 bash benches/load.sh   # one order for every round (below)
#   STEAL_MAX=5 RUNS=5 bash benches/load.sh   # the steal bound of the second table (below)
#
# ANNOTATIONS (one flow-style YAML mapping body) go on the bench Ingress, to measure what a
# load-balancing or affinity policy costs; the load tools send no cookie, so with cookie
# affinity every request is a new session (the dearest case).
#
# Equal worker counts: nginx runs 1 worker; Portico runs 1 tokio worker thread. Both are
# pinned to core 0; load generator and backend to core 1 (see peers.sh). Equal connection
# lifetimes: Portico gets `keep-alive-requests: 10000000` as the peers get (bench_configmap).
set -euo pipefail
cd "$(dirname "$0")/.."
PEERS_SH=${PEERS_SH:-../shared/bench/peers.sh}
[ -x "$PEERS_SH" ] || [ -f "$PEERS_SH" ] || { echo "load.sh: peer harness not found at $PEERS_SH" >&2; exit 1; }

. benches/manifests.sh
bench_need wrk:wrk h2load:nghttp2-client nginx:nginx curl:curl /usr/bin/time:time

BIN=$(bench_build)
OUT=$(mktemp /tmp/portico-load.XXXXXX)

export BENCH_ANNOTATIONS="${ANNOTATIONS:-}"
EXTRA_CMD=$(bench_extra_cmd "$BIN")

# The harness measures its proxies in a fixed order, each case of the first one right after
# the direct baseline. Which proxy goes first matters on this kind of machine (in HTTP/1.1
# keep-alive, nginx made 66-74k req/s in 4 of 15 rounds when first and at most 64k in 10
# rounds when second), so by default every round is one run of the harness and the order
# alternates: nginx first in odd rounds, Portico in even ones. PROXY_ORDER="nginx extra" or
# "extra nginx" keeps one order for all rounds in a single run of the harness.
harness() { # PROXIES RUNS
  PROXIES="$1" RUNS="$2" EXTRA_NAME=portico EXTRA_HTTP_PORT=18084 EXTRA_HTTPS_PORT=18444 \
    EXTRA_CMD="$EXTRA_CMD" bash "$PEERS_SH"
}
ORDER=${PROXY_ORDER:-alternate}
ROUNDS=${RUNS:-1}
if [ "$ORDER" = alternate ]; then
  for i in $(seq 1 "$ROUNDS"); do
    if [ $((i % 2)) = 1 ]; then order="nginx extra"; else order="extra nginx"; fi
    echo "# round $i/$ROUNDS, in this order: ${order/extra/portico}"
    harness "$order" 1 | sed -E "s/ run=1 / run=$i /"
  done
else
  harness "$ORDER" "$ROUNDS"
fi | tee "$OUT"

echo
echo "== Portico / nginx (same run, equal workers; medians over the rounds)"
# Besides the ratio of the two medians: rounds won, and the median of the rounds' own ratios
# (each round runs the two proxies back to back, so a round's ratio is spared most of the
# machine's drift between rounds), and the rounds where Portico's p99 was at most nginx's.
# A second table keeps only the rounds in which the hypervisor took less than STEAL_MAX %
# (default 2) of the machine from either proxy's case: other tenants' load lands in one
# proxy's case and not the other's, and moves a round's ratio and its p99 more than anything
# the proxies do. Both tables are printed; the first holds every round.
STEAL_MAX=${STEAL_MAX:-2} awk "$BENCH_AWK_MEDIAN"'
  /^case=/ {
    split("", f); for (i = 1; i <= NF; i++) { split($i, kv, "="); f[kv[1]] = kv[2] }
    c = f["case"]; if (c !~ /^(nginx|portico)-/) next
    p = c; sub(/-.*/, "", p); k = c; sub(/^[^-]*-/, "", k)
    round[p, k, f["run"]] = f["rps"]; rp99[p, k, f["run"]] = f["p99_ms"]; steal[p, k, f["run"]] = f["steal_pct"]
    if (f["run"] > runs) runs = f["run"]
    rpsl[p, k] = rpsl[p, k] " " f["rps"]; corel[p, k] = corel[p, k] " " f["rps_per_core"]
    if (f["p99_ms"] != "NA") p99l[p, k] = p99l[p, k] " " f["p99_ms"]
    cases[k] = 1
  }
  function num(x, fmt) { return (x == "NA") ? x : sprintf(fmt, x) }
  # Over the rounds of case k (only those with little steal when calm is set): sets n, won,
  # p99won, p99n, med (median round ratio) and ci (95 % interval of the mean round ratio).
  function rounds(k, calm,    i, q, ql, sl, ml, ss, h) {
    n = 0; won = 0; p99won = 0; p99n = 0; ql = ""
    for (i = 1; i <= runs; i++) {
      if (!(round["nginx", k, i] > 0 && (("portico", k, i) in round))) continue
      if (calm && (steal["nginx", k, i] + 0 >= ENVIRON["STEAL_MAX"] || steal["portico", k, i] + 0 >= ENVIRON["STEAL_MAX"])) continue
      q[++n] = round["portico", k, i] / round["nginx", k, i]; ql = ql " " q[n]; if (q[n] >= 1) won++
      if (rp99["portico", k, i] != "NA" && rp99["nginx", k, i] != "NA") {
        p99n++; if (rp99["portico", k, i] + 0 <= rp99["nginx", k, i] + 0) p99won++
      }
    }
    med = (n == 0) ? 0 : median(ql)
    # The interval of the mean round ratio (on logarithms, so 0.9 and 1.1 weigh alike):
    # when it holds 1.0, the rounds cannot tell the two proxies apart.
    ci = "-"
    if (n >= 2) {
      sl = 0; for (i = 1; i <= n; i++) sl += log(q[i]); ml = sl / n
      ss = 0; for (i = 1; i <= n; i++) ss += (log(q[i]) - ml) ^ 2
      h = ((n - 1 <= 30) ? tq[n - 1] : 2.0) * sqrt(ss / (n - 1) / n)
      ci = sprintf("%.2f-%.2f", exp(ml - h), exp(ml + h))
    }
  }
  END {
    proxy["nginx"] = 1; proxy["portico"] = 1
    # 97.5 % quantiles of the t distribution by degrees of freedom (beyond 30: 2.0).
    split("12.71 4.303 3.182 2.776 2.571 2.447 2.365 2.306 2.262 2.228 2.201 2.179 2.160 2.145 2.131 " \
      "2.120 2.110 2.101 2.093 2.086 2.080 2.074 2.069 2.064 2.060 2.056 2.052 2.048 2.045 2.042", tq, " ")
    printf "%-16s %12s %12s %7s %12s %12s %15s %6s %12s %14s %8s\n", "case", "portico rps", "nginx rps", "ratio", "portico p99",
      "nginx p99", "rps/CPU ratio", "won", "round ratio", "95% interval", "p99 won"
    for (k in cases) {
      for (p in proxy) { rps[p, k] = median(rpsl[p, k]); p99[p, k] = median(p99l[p, k]); core[p, k] = median(corel[p, k]) }
      r = (rps["nginx", k] > 0) ? rps["portico", k] / rps["nginx", k] : 0
      c = (core["nginx", k] > 0) ? core["portico", k] / core["nginx", k] : 0
      rounds(k, 0)
      printf "%-16s %12s %12s %7.2f %12s %12s %15.2f %6s %12.2f %14s %8s\n", k, num(rps["portico", k], "%.1f"), num(rps["nginx", k], "%.1f"),
        r, num(p99["portico", k], "%.2f"), num(p99["nginx", k], "%.2f"), c, won "/" n, med, ci, (p99n ? p99won "/" p99n : "-")
    }
    if (runs < 2) exit
    printf "\n== rounds where steal stayed under %s %% in both proxies\x27 case\n", ENVIRON["STEAL_MAX"]
    printf "%-16s %7s %6s %12s %14s %8s\n", "case", "rounds", "won", "round ratio", "95% interval", "p99 won"
    for (k in cases) {
      rounds(k, 1)
      printf "%-16s %7s %6s %12.2f %14s %8s\n", k, n "/" runs, won "/" n, med, ci, (p99n ? p99won "/" p99n : "-")
    }
  }' "$OUT"
rm -f "$OUT"
