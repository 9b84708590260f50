#!/usr/bin/env bash
# Aegis HNSW beside hnswlib on the same GloVe-100 files, one after the other in ONE run (the
# machine is shared: compare rows of one run, not runs), and the ratio of their single-thread
# queries/s at recall@10 = 0.95 (linear interpolation over the ef sweep) and of their build times.
#
#   bench/compare_hnswlib.sh [glove-dir]          AEGIS_BENCH_PYTHON=1 also runs the Python build
#
# The reference is hnswlib 0.6.2 compiled NATIVELY from Debian's libhnswlib-dev headers
# (bench/hnswlib_native.cpp, g++ -O3 -march=native, one query per call). The optional Python row
# (Debian's python3-hnswlib, compiled for generic x86-64, one batch call) understates hnswlib.
# Missing Debian packages (libhnswlib-dev, g++) are installed here, not in scripts/setup.sh, so the
# benchmark's dependencies do not slow CI. Both time with the process CPU clock by default
# (AEGIS_BENCH_CLOCK=cpu; =wall for the monotonic clock), so waiting for a core on the shared
# machine does not count; the synthetic part of bench_hnsw is skipped (n=100).
set -euo pipefail
cd "$(dirname "$0")/.."
dir="${1:-../shared/datasets/glove-100-angular-100k}"
sudo=""; [ "$(id -u)" -eq 0 ] || sudo=sudo
need=()
[ -f /usr/include/hnswlib/hnswlib.h ] || need+=(libhnswlib-dev)
command -v g++ >/dev/null || need+=(g++)
if [ "${AEGIS_BENCH_PYTHON:-0}" = 1 ] && ! /usr/bin/python3 -c 'import hnswlib, numpy' 2>/dev/null; then
  need+=(python3-hnswlib python3-numpy)
fi
if [ ${#need[@]} -gt 0 ]; then
  echo "installing ${need[*]}"
  $sudo apt-get install -y "${need[@]}" >/dev/null
fi
cmake --preset release >/dev/null && cmake --build --preset release -j"$(nproc)" --target bench_hnsw >/dev/null
g++ -std=c++17 -O3 -march=native -DNDEBUG -o build/hnswlib_native bench/hnswlib_native.cpp
export AEGIS_BENCH_CLOCK="${AEGIS_BENCH_CLOCK:-cpu}"
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
echo "clock: $AEGIS_BENCH_CLOCK; load before: $(cut -d' ' -f1-3 /proc/loadavg)"
build/bench_hnsw 100 1000 "$dir" | sed -n '/GloVe/,$p' > "$out/aegis.txt"
build/hnswlib_native "$dir" > "$out/native.txt"
if [ "${AEGIS_BENCH_PYTHON:-0}" = 1 ]; then
  /usr/bin/python3 bench/hnswlib_glove.py "$dir" > "$out/python.txt"
fi
echo "load after:  $(cut -d' ' -f1-3 /proc/loadavg)"
echo "== aegis (build/bench_hnsw)"; cat "$out/aegis.txt"
echo "== hnswlib native (baseline: build/hnswlib_native)"; cat "$out/native.txt"
[ -f "$out/python.txt" ] && { echo "== hnswlib python3-hnswlib (generic x86-64)"; cat "$out/python.txt"; }
/usr/bin/python3 - "$out" <<'PY'
import os, re, sys
def sweep(path, tag):
    pts, build = [], None
    for line in open(path):
        m = re.search(r"build \(.*\): ([0-9.]+) s", line)
        if m: build = float(m.group(1))
        m = re.search(tag + r" ef=\d+\s+([0-9.]+)\s+([0-9.]+)", line)
        if m: pts.append((float(m.group(1)), float(m.group(2))))
    return build, pts
def at(pts, r):
    pts = sorted(pts)
    for (r0, q0), (r1, q1) in zip(pts, pts[1:]):
        if r0 <= r <= r1:
            return q0 + (q1 - q0) * (r - r0) / (r1 - r0)
    return None
d = sys.argv[1]
ab, ap = sweep(f"{d}/aegis.txt", "aegis hnsw")
qa = at(ap, 0.95)
print(f"== at recall@10 0.95 (same run)      {'q/s':>8} {'aegis/x':>8}   {'build s':>8} {'aegis/x':>8}")
print(f"   aegis                             {qa:8.0f} {1:8.2f}   {ab:8.2f} {1:8.2f}")
for name, label in (("native.txt", "hnswlib native -O3 -march=native"), ("python.txt", "hnswlib python3-hnswlib")):
    if not os.path.exists(f"{d}/{name}"): continue
    hb, hp = sweep(f"{d}/{name}", "hnswlib")
    qh = at(hp, 0.95)
    print(f"   {label:<32} {qh:8.0f} {qa / qh:8.2f}   {hb:8.2f} {ab / hb:8.2f}")
PY
