#!/usr/bin/env bash
# Server CPU per REST search beside the same search in-process, in ONE run (the machine is shared:
# compare rows of one run, not runs). See docs/BENCHMARKS.md, "Server CPU per search request".
#
#   bench/http_cpu.sh [glove-dir [seconds]]     defaults ../shared/datasets/glove-100-angular-100k 10
#   AEGIS_BENCH_PERF=0 skips the perf profile
#   AEGIS_BENCH_BASE=<another aegis binary> measures it too, as the baseline of the same run: it
#   serves a copy of the loaded storage on its own port, and every wrk and perf step runs on both
#   servers in turn (baseline first).
#
# 1. Starts the release server (--insecure, access log off) on a temporary storage directory and
#    loads GloVe-100 100k (Cosine, hnsw m=16, ef_construct=100) with `aegis import --format fvecs`,
#    then waits for the graph (status green) so no background indexing runs during the measurement.
# 2. Recall@10 of the 1,000 GloVe queries over HTTP at hnsw_ef 64 (same graph quality check).
# 3. Debian's wrk (C load generator, installed here if missing, not in scripts/setup.sh) posts the
#    1,000 query bodies in turn to /collections/glove/points/search (limit 10, hnsw_ef 64) for
#    `seconds`, with 1 connection (one sequential client) and then 8; the server's utime+stime
#    (/proc/<pid>/stat) before and after give microseconds of server CPU per request.
# 4. In-process cost of the same searches: build/bench_hnsw on the same files (its ef=64 row, one
#    thread, the same 1,000 queries, timed on the process CPU clock like the server's side) ->
#    microseconds of CPU per search; the ratio HTTP/in-process.
# 5. perf record (cpu-clock, whole server process) during a further 1-connection wrk run; prints
#    the top symbols and the share inside the HNSW search vs outside it.
set -euo pipefail
cd "$(dirname "$0")/.."
dir="${1:-../shared/datasets/glove-100-angular-100k}"
secs="${2:-10}"
dir=$(cd "$dir" && pwd)
sudo=""; [ "$(id -u)" -eq 0 ] || sudo=sudo
command -v wrk >/dev/null || { echo "installing wrk"; $sudo apt-get install -y wrk >/dev/null; }
cmake --preset release >/dev/null && cmake --build --preset release -j"$(nproc)" --target aegis bench_hnsw >/dev/null
work=$(mktemp -d)
pid=""
bpid=""
base="${AEGIS_BENCH_BASE:-}"
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
  [ -n "$bpid" ] && kill "$bpid" 2>/dev/null && wait "$bpid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
freeport() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
port=${AEGIS_BENCH_PORT:-$(freeport)}  # AEGIS_BENCH_PORT: this build's port, the baseline's + 1
url="http://127.0.0.1:$port"
AEGIS__SERVICE__ACCESS_LOG=false build/aegis serve --insecure --storage "$work/storage" --port "$port" \
  >"$work/server.log" 2>&1 &
pid=$!
for _ in $(seq 100); do curl -sf "$url/healthz" >/dev/null && break; sleep 0.1; done
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
curl -sf -X PUT "$url/collections/glove" -H 'content-type: application/json' \
  -d '{"vectors":{"size":100,"distance":"Cosine"},"hnsw_config":{"m":16,"ef_construct":100}}' >/dev/null
t0=$(date +%s.%N)
build/aegis import glove "$dir/base.fvecs" --format fvecs --batch 1000 --url "$url" --key unused-insecure 2>"$work/import.log" || { cat "$work/import.log"; exit 1; }
t1=$(date +%s.%N)
until [ "$(curl -sf "$url/collections/glove" | jq -r .result.status)" = green ]; do sleep 0.5; done
t2=$(date +%s.%N)
printf 'loaded 100k GloVe vectors in %.1f s; graph green %.1f s later\n' \
  "$(echo "$t1 - $t0" | bc)" "$(echo "$t2 - $t1" | bc)"
if [ -n "$base" ]; then
  # The baseline binary serves a copy of the same storage (same points, same graph once green).
  kill "$pid"; wait "$pid" 2>/dev/null || true
  cp -a "$work/storage" "$work/storage_base"
  AEGIS__SERVICE__ACCESS_LOG=false build/aegis serve --insecure --storage "$work/storage" \
    --port "$port" >"$work/server.log" 2>&1 &
  pid=$!
  bport=$([ -n "${AEGIS_BENCH_PORT:-}" ] && echo $((port + 1)) || freeport)
  burl="http://127.0.0.1:$bport"
  AEGIS__SERVICE__ACCESS_LOG=false "$base" serve --insecure --storage "$work/storage_base" \
    --port "$bport" >"$work/base.log" 2>&1 &
  bpid=$!
  for u in "$url" "$burl"; do
    for _ in $(seq 300); do curl -sf "$u/healthz" >/dev/null && break; sleep 0.1; done
    until [ "$(curl -sf "$u/collections/glove" | jq -r .result.status)" = green ]; do sleep 0.5; done
  done
  echo "baseline $base serves a copy on port $bport"
fi

# Query bodies (one per GloVe query) as a wrk Lua script, and recall@10 over HTTP.
/usr/bin/python3 - "$dir" "$url" "$work/search.lua" <<'PY'
import json, struct, sys, urllib.request
d, url, lua = sys.argv[1:4]
def vecs(path, fmt):
    raw = open(path, "rb").read()
    dim = struct.unpack_from("<i", raw)[0]
    rec = 4 + 4 * dim
    return [struct.unpack_from(f"<{dim}{fmt}", raw, i * rec + 4) for i in range(len(raw) // rec)]
qs, gt = vecs(f"{d}/query.fvecs", "f"), vecs(f"{d}/gt.ivecs", "i")
bodies = [json.dumps({"vector": [float(f"{x:.6g}") for x in q], "limit": 10,
                      "params": {"hnsw_ef": 64}}, separators=(",", ":")) for q in qs]
hit = 0
for b, g in zip(bodies, gt):
    req = urllib.request.Request(f"{url}/collections/glove/points/search", b.encode(),
                                 {"content-type": "application/json"})
    res = json.load(urllib.request.urlopen(req))["result"]
    hit += len({h["id"] for h in res} & set(g[:10]))
print(f"HTTP recall@10 at hnsw_ef 64 over {len(qs)} queries: {hit / 10 / len(qs):.4f}; "
      f"body {sum(map(len, bodies)) // len(bodies)} bytes on average")
with open(lua, "w") as f:
    f.write("local bodies = {\n")
    for b in bodies:
        f.write("  [==[" + b + "]==],\n")
    f.write("}\nlocal i = 0\n")
    f.write("wrk.headers['Content-Type'] = 'application/json'\n")
    f.write("request = function()\n  i = i % #bodies + 1\n"
            "  return wrk.format('POST', '/collections/glove/points/search', nil, bodies[i])\nend\n")
PY

hz=$(getconf CLK_TCK)
cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }  # utime + stime, clock ticks
declare -A us qps
runs="new"
[ -n "$base" ] && runs="base new"
for c in 1 8; do
  for who in $runs; do
    p=$pid u=$url
    [ "$who" = base ] && p=$bpid u=$burl
    wrk -t1 -c"$c" -d2s -s "$work/search.lua" "$u" >/dev/null  # warm-up
    before=$(cpu "$p")
    wrk -t1 -c"$c" -d"${secs}s" -s "$work/search.lua" "$u" > "$work/wrk$who$c.txt"
    after=$(cpu "$p")
    n=$(awk '/requests in/ {print $1}' "$work/wrk$who$c.txt")
    if grep -q 'Non-2xx' "$work/wrk$who$c.txt"; then echo "wrk -c$c ($who): errors"; cat "$work/wrk$who$c.txt"; exit 1; fi
    us[$who$c]=$(echo "scale=1; ($after - $before) * 1000000 / $hz / $n" | bc)
    qps[$who$c]=$(awk '/Requests\/sec/ {printf "%.0f", $2}' "$work/wrk$who$c.txt")
    echo "wrk -t1 -c$c -d${secs}s ($who): $n requests, ${qps[$who$c]} q/s, server CPU $(( (after - before) )) ticks"
    # Where the server answered (docs/ARCHITECTURE.md "Inline answers"); absent in older builds.
    curl -sf "$u/metrics" | awk '/^aegis_answers_total/ {printf "    %s\n", $0}' || true
  done
done

# The in-process cost of the same searches (same files, one thread), in the same run.
AEGIS_BENCH_CLOCK=cpu build/bench_hnsw 100 1000 "$dir" | sed -n '/GloVe/,$p' > "$work/inproc.txt"
inproc_qps=$(awk '/aegis hnsw ef=64 / {print $5}' "$work/inproc.txt")
inproc_rec=$(awk '/aegis hnsw ef=64 / {print $4}' "$work/inproc.txt")
inproc_us=$(echo "scale=1; 1000000 / $inproc_qps" | bc)
echo "load after:  $(cut -d' ' -f1-3 /proc/loadavg)"
echo "== server CPU per search (GloVe-100 100k, limit 10, hnsw_ef 64), same run"
printf '   %-44s %8s %10s\n' "" "us/search" "vs in-proc"
printf '   %-44s %8.1f %10.2f\n' "in-process CPU (bench_hnsw ef=64, recall $inproc_rec)" "$inproc_us" 1
for c in 1 8; do
  for who in $runs; do
    label="REST, wrk $c connection(s), server utime+stime"
    [ -n "$base" ] && label="REST $who, wrk $c conn, server utime+stime"
    printf '   %-44s %8.1f %9.2fx   (%s q/s)\n' "$label" \
      "${us[$who$c]}" "$(echo "scale=2; ${us[$who$c]} / $inproc_us" | bc)" "${qps[$who$c]}"
  done
done

if [ "${AEGIS_BENCH_PERF:-1}" = 1 ]; then
 for who in $runs; do
  p=$pid u=$url exe=aegis
  [ "$who" = base ] && p=$bpid u=$burl exe=$(basename "$base")
  perf record -e cpu-clock -F 2000 -g -p "$p" -o "$work/perf.data" -- sleep "$secs" \
    >/dev/null 2>&1 &
  ppid=$!
  sleep 0.5
  wrk -t1 -c1 -d"${secs}s" -s "$work/search.lua" "$u" >/dev/null
  wait "$ppid" || true
  echo "== perf ($who; cpu-clock, server process, wrk 1 connection): top symbols, self time"
  perf report -i "$work/perf.data" --no-children --sort dso,sym --stdio 2>/dev/null |
    grep -E '^ +[0-9.]+%' | sed -n 1,40p
  # Self time grouped: the HNSW walk and its distance kernels (what bench_hnsw measures), the
  # per-visited-node liveness/scope predicate the server adds, and everything else by kind.
  echo "== perf ($who): self time grouped (the first two groups are inside the search call)"
  perf report -i "$work/perf.data" --no-children --sort dso,sym --stdio 2>/dev/null |
    awk -v exe="$exe" '/^ +[0-9.]+%/ {
      p = $1 + 0; dso = $2; sym = $4
      if (dso == exe && sym ~ /^(search_layer|greedy|hnsw_search|pad_dot|dot_kernel|l2_kernel|pad_l2|ag_dist|ag_hnsw|gather|maxheap_|minheap_|cmp_cand)/) g = "1 HNSW walk + distance kernels"
      else if (sym ~ /^(ag_coll_match|ag_scope_match|ag_scope_accept|ag_filter_match)/) g = "2 liveness/scope predicate per visited node"
      else if (sym ~ /malloc|free|_int_|consolidate|unlink_chunk|tcache/) g = "3 malloc/free"
      else if (dso ~ /jansson/ || sym ~ /^ag_json/) g = "4 JSON tree (jansson, ag_json)"
      else if (sym ~ /strtod|strtof|printf|hack_digit|str_to_mpn|round_and_return|xsputn|localeconv|mpn_/ ||
               (dso == exe && sym ~ /^(f32_fast|number|digit_run|floats|ag_jw_)/)) g = "5 number parse/format (strtod, printf)"
      else if (dso ~ /kernel/) g = "6 kernel (socket I/O, scheduling)"
      else if (dso == exe) g = "7 other aegis code"
      else g = "8 other libc/libs"
      t[g] += p }
      END { for (g in t) printf "   %6.2f%%  %s\n", t[g], substr(g, 3) }' | sort -rn
 done
fi
