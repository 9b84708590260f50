#!/usr/bin/env bash
# Sets up, builds (release, AddressSanitizer+UBSan and ThreadSanitizer presets) and runs every
# test: unit (cmocka) and end-to-end (the real server over HTTP, the official JS client, crash
# recovery).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --with-node-deps
scripts/check-source.sh
jobs="$(nproc)"
status=0
# release and asan run everything; tsan (ThreadSanitizer) runs the suites labelled concurrency.
for preset in release asan tsan; do
  echo "==> ${preset}: configure and build"
  cmake --preset "$preset" >/dev/null
  cmake --build --preset "$preset" -j"$jobs"
  echo "==> ${preset}: ctest"
  ctest --preset "$preset" -j"$jobs" || status=1
done
exit $status
