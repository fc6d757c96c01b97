#!/usr/bin/env bash
# One table per build: Portico beside nginx and HAProxy in the shared peer harness
# (../shared/bench/peers.sh), every case, RUNS runs (3 by default), as the README's benchmark
# tables are made. Each run is one run of the harness; the order of the three proxies rotates
# from run to run, since the harness measures its proxies in a fixed order and the first one
# after the direct baseline has had an edge on this kind of machine.
#
#   bash benches/table.sh                      # the profile-guided build the image ships
#   BUILD=release bash benches/table.sh        # a plain `cargo build --release`
#   PORTICO_BINARY=path RUNS=5 bash benches/table.sh
#   CASES="https-h2" bash benches/table.sh     # some cases only (the harness's names)
#
# Prints the harness's lines, then a Markdown table: per case, requests per second of a fully
# used proxy core (rps / the proxy's CPU share, the harness's rps_per_core) for each proxy as
# the median over the runs with the runs' spread ((max - min) / median), Portico's ratio to the
# best peer, and p50 / p99 latency of Portico and of the peer with the lower p99 (medians).
# RAW=file keeps the harness's lines.
set -euo pipefail
cd "$(dirname "$0")/.."
PEERS_SH=${PEERS_SH:-../shared/bench/peers.sh}
[ -f "$PEERS_SH" ] || { echo "table.sh: peer harness not found at $PEERS_SH" >&2; exit 1; }

. benches/manifests.sh
bench_need wrk:wrk h2load:nghttp2-client nginx:nginx haproxy:haproxy curl:curl /usr/bin/time:time

BIN=$(bench_build)
OUT=${RAW:-$(mktemp /tmp/portico-table.XXXXXX)}
: >"$OUT"
export BENCH_ANNOTATIONS=""
EXTRA_CMD=$(bench_extra_cmd "$BIN")
RUNS=${RUNS:-3}
orders=("nginx haproxy extra" "haproxy extra nginx" "extra nginx haproxy")
for i in $(seq 1 "$RUNS"); do
  order=${orders[$(((i - 1) % 3))]}
  echo "# run $i/$RUNS, in this order: ${order/extra/portico} ($(uptime | sed 's/.*load/load/'))"
  PROXIES="$order" RUNS=1 EXTRA_NAME=portico EXTRA_HTTP_PORT=18084 EXTRA_HTTPS_PORT=18444 \
    EXTRA_CMD="$EXTRA_CMD" bash "$PEERS_SH" | sed -E "s/ run=1 / run=$i /" | tee -a "$OUT"
done

echo
echo "== $BIN, $RUNS runs: requests/s per fully used proxy core (median, spread over the runs)"
awk "$BENCH_AWK_MEDIAN"'
  function spread(list,    n, v, i, lo, hi, m) {
    n = split(list, v, " "); if (n < 2) return ""
    lo = hi = v[1] + 0
    for (i = 2; i <= n; i++) { if (v[i] + 0 < lo) lo = v[i] + 0; if (v[i] + 0 > hi) hi = v[i] + 0 }
    m = median(list); return (m > 0) ? sprintf(" (%.0f %%)", (hi - lo) / m * 100) : ""
  }
  function k(x) { return (x == "NA") ? x : (x >= 10000 ? sprintf("%.0fk", x / 1000) : (x >= 1000 ? sprintf("%.2fk", x / 1000) : sprintf("%.0f", x))) }
  function ms(x) { return (x == "NA") ? "–" : sprintf("%.1f", x) }
  /^case=/ {
    split("", f); for (i = 1; i <= NF; i++) { split($i, kv, "="); f[kv[1]] = kv[2] }
    c = f["case"]; p = c; sub(/-.*/, "", p); q = c; sub(/^[^-]*-/, "", q)
    if (p !~ /^(nginx|haproxy|portico)$/) next
    if (!(q in seen)) { seen[q] = 1; order[++nq] = q }
    core[p, q] = core[p, q] " " f["rps_per_core"]
    if (f["p50_ms"] != "NA") p50[p, q] = p50[p, q] " " f["p50_ms"]
    if (f["p99_ms"] != "NA") p99[p, q] = p99[p, q] " " f["p99_ms"]
  }
  END {
    print "| case | nginx | HAProxy | Portico | Portico / best peer | p50 Portico / peer | p99 Portico / peer |"
    print "|---|---|---|---|---|---|---|"
    for (o = 1; o <= nq; o++) {
      q = order[o]
      n = median(core["nginx", q]); h = median(core["haproxy", q]); x = median(core["portico", q])
      best = (n + 0 > h + 0) ? n : h
      # The peer with the lower p99 is the latency bar.
      pn = median(p99["nginx", q]); ph = median(p99["haproxy", q])
      lat = (pn != "NA" && (ph == "NA" || pn + 0 <= ph + 0)) ? "nginx" : "haproxy"
      l50 = l99 = "–"
      if (median(p99["portico", q]) != "NA") {
        l50 = ms(median(p50["portico", q])) " / " ms(median(p50[lat, q])) " ms"
        l99 = ms(median(p99["portico", q])) " / " ms(median(p99[lat, q])) " ms (" lat ")"
      }
      printf "| %s | %s%s | %s%s | %s%s | %s | %s | %s |\n", q,
        k(n), spread(core["nginx", q]), k(h), spread(core["haproxy", q]), k(x), spread(core["portico", q]),
        (best > 0 && x != "NA") ? sprintf("%.2f", x / best) : "–", l50, l99
    }
  }' "$OUT"
[ -n "${RAW:-}" ] || rm -f "$OUT"
