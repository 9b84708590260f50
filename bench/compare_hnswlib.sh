#!/usr/bin/env bash
# Aegis HNSW and hnswlib on the same GloVe-100 files, one after the other in one run, and the
# ratio of their single-thread queries/s at recall@10 = 0.95 (linear interpolation over the ef
# sweep).  bench/compare_hnswlib.sh [glove-dir]   (needs Debian's python3-hnswlib, python3-numpy)
set -euo pipefail
cd "$(dirname "$0")/.."
dir="${1:-../shared/datasets/glove-100-angular-100k}"
if ! /usr/bin/python3 -c 'import hnswlib, numpy' 2>/dev/null; then
  echo "installing python3-hnswlib python3-numpy"; sudo=""; [ "$(id -u)" -eq 0 ] || sudo=sudo
  $sudo apt-get install -y python3-hnswlib python3-numpy >/dev/null
fi
cmake --preset release >/dev/null && cmake --build --preset release -j"$(nproc)" --target bench_hnsw >/dev/null
out=$(mktemp -d)
build/bench_hnsw 100000 1000 "$dir" | sed -n '/GloVe/,$p' > "$out/aegis.txt"
/usr/bin/python3 bench/hnswlib_glove.py "$dir" > "$out/hnswlib.txt"
echo "== aegis"; cat "$out/aegis.txt"
echo "== hnswlib (baseline)"; cat "$out/hnswlib.txt"
/usr/bin/python3 - "$out/aegis.txt" "$out/hnswlib.txt" <<'PY'
import re, sys
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
ab, ap = sweep(sys.argv[1], "aegis hnsw")
hb, hp = sweep(sys.argv[2], "hnswlib")
qa, qh = at(ap, 0.95), at(hp, 0.95)
print(f"== at recall@10 0.95: aegis {qa:.0f} q/s, hnswlib {qh:.0f} q/s, ratio {qa / qh:.2f}; "
      f"build aegis {ab:.1f} s, hnswlib {hb:.1f} s, ratio {ab / hb:.2f}")
PY
rm -rf "$out"
