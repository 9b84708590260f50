#!/usr/bin/env bash
# The authentication benches of this tree beside the same benches built from an earlier commit,
# in ONE run, alternated (the machine is shared: compare rows of one run, not runs). See
# docs/BENCHMARKS.md "Authentication cost".
#
#   bench/auth_before_after.sh [base-rev [etcd-port]]
#     base-rev   the baseline commit (default cf180f6, before the cache of accepted keys)
#     etcd-port  with it, each bench_cluster_authz run gets a fresh one-member etcd (client port
#                etcd-port, peer port etcd-port + 1, a temporary data directory), stopped after it
#   AEGIS_BENCH_CLOCK=cpu (the default here; =wall for the monotonic clock) times each loop on the
#   thread's CPU clock. AEGIS_BENCH_N sets the iterations (default 300000).
#
# 1. Exports base-rev with `git archive` into /tmp/aegis-auth-base-<rev>, teaches its three bench
#    harnesses the same clock switch (their timing function only; the code under test is
#    untouched) and builds bench_auth, bench_decide and bench_cluster_authz there (release preset).
# 2. Builds the same three here (build/).
# 3. Runs each bench three times, baseline and this tree in turn, and prints every run's rows.
set -euo pipefail
cd "$(dirname "$0")/.."
rev="${1:-cf180f6}"
etcd_port="${2:-}"
n="${AEGIS_BENCH_N:-300000}"
export AEGIS_BENCH_CLOCK="${AEGIS_BENCH_CLOCK:-cpu}"
base="/tmp/aegis-auth-base-$rev"
targets=(bench_auth bench_decide bench_cluster_authz)
if [ ! -x "$base/build/bench_cluster_authz" ]; then
  rm -rf "$base" && mkdir -p "$base"
  git archive "$rev" | tar -x -C "$base"
  for f in bench_auth bench_decide bench_cluster_authz; do
    sed -i 's|clock_gettime(CLOCK_MONOTONIC, &ts);|clock_gettime(getenv("AEGIS_BENCH_CLOCK") \&\& strcmp(getenv("AEGIS_BENCH_CLOCK"), "cpu") == 0 ? CLOCK_THREAD_CPUTIME_ID : CLOCK_MONOTONIC, \&ts);|' \
      "$base/bench/$f.c"
  done
  (cd "$base" && cmake --preset release >/dev/null && cmake --build --preset release -j2 --target "${targets[@]}" >/dev/null)
fi
cmake --build --preset release -j2 --target "${targets[@]}" >/dev/null
echo "clock: $AEGIS_BENCH_CLOCK; iterations $n; baseline $rev; load before: $(cut -d' ' -f1-3 /proc/loadavg)"
for round in 1 2 3; do
  for side in base new; do
    dir="$base/build"; [ "$side" = new ] && dir=build
    echo "== round $round: $side"
    "$dir/bench_auth" "$n" 2>/dev/null | grep -E "api key|JWT, cached  |user key|API key"
    "$dir/bench_decide" "$n" 2>/dev/null | grep -E "resolve|user-key|API key|through auth"
    if [ -n "$etcd_port" ]; then
      data=$(mktemp -d /tmp/aegis-auth-etcd-XXXXXX)
      etcd --name b --data-dir "$data" --listen-client-urls "http://127.0.0.1:$etcd_port" \
        --advertise-client-urls "http://127.0.0.1:$etcd_port" \
        --listen-peer-urls "http://127.0.0.1:$((etcd_port + 1))" \
        --initial-advertise-peer-urls "http://127.0.0.1:$((etcd_port + 1))" \
        --initial-cluster "b=http://127.0.0.1:$((etcd_port + 1))" >"$data.log" 2>&1 &
      epid=$!
      for _ in $(seq 50); do
        curl -sf "http://127.0.0.1:$etcd_port/health" >/dev/null && break
        sleep 0.2
      done
      "$dir/bench_cluster_authz" "http://127.0.0.1:$etcd_port" "$n" 2>/dev/null | grep -E "ns" || true
      kill "$epid"
      wait "$epid" 2>/dev/null || true
      rm -rf "$data" "$data.log"
    fi
  done
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
