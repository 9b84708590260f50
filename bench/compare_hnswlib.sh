#!/usr/bin/env bash
# Aegis HNSW and hnswlib on the same GloVe-100 files, one after the other in one run.
#   bench/compare_hnswlib.sh [glove-dir]    (needs Debian's python3-hnswlib and python3-numpy)
set -euo pipefail
cd "$(dirname "$0")/.."
dir="${1:-../shared/datasets/glove-100-angular-100k}"
command -v /usr/bin/python3 >/dev/null && /usr/bin/python3 -c 'import hnswlib, numpy' 2>/dev/null || {
  echo "installing python3-hnswlib python3-numpy"; sudo=""; [ "$(id -u)" -eq 0 ] || sudo=sudo
  $sudo apt-get install -y python3-hnswlib python3-numpy >/dev/null; }
cmake --preset release >/dev/null && cmake --build --preset release -j"$(nproc)" --target bench_hnsw >/dev/null
echo "== aegis"; build/bench_hnsw 100000 1000 "$dir" | sed -n '/GloVe/,$p'
echo "== hnswlib (baseline)"; /usr/bin/python3 bench/hnswlib_glove.py "$dir"
