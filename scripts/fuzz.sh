#!/usr/bin/env bash
# Timed fuzzing (docs/RELIABILITY.md): builds every fuzz/fuzz_*.c target with clang's libFuzzer
# against an instrumented (ASan + UBSan + coverage) build of the core in build-fuzz/, then runs
# each for SECONDS (default 60) starting from the seed corpus in fuzz/corpus/<name>/ (which CTest
# replays). What a run finds is kept in build-fuzz/corpus/<name>/ and used by the next run; copy
# an input that matters into fuzz/corpus/ to make it a regression test. A crash stops the script
# and leaves the reproducer (crash-*, leak-*, timeout-*) in the current directory. Needs clang and
# libclang-rt-14-dev.
#   scripts/fuzz.sh [SECONDS] [target ...]     e.g. scripts/fuzz.sh 300 query filter
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  for f in fuzz/fuzz_*.c; do t=$(basename "$f" .c); targets+=("${t#fuzz_}"); done
fi
flags="-fsanitize=fuzzer-no-link,address,undefined -fno-omit-frame-pointer -g -O1"
CC=clang cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DAEGIS_TESTS=OFF -DAEGIS_WERROR=OFF \
  -DCMAKE_C_FLAGS="$flags" >/dev/null
cmake --build build-fuzz -j"$(nproc)" --target aegis_core >/dev/null
libs="$(pkg-config --libs libmicrohttpd jansson libsodium yaml-0.1 gnutls) -llmdb -lm -lpthread"
for t in "${targets[@]}"; do
  echo "==> fuzz_$t for ${seconds}s"
  mkdir -p "build-fuzz/corpus/$t"
  # shellcheck disable=SC2086
  clang -std=c11 -D_GNU_SOURCE -g -O1 -fsanitize=fuzzer,address,undefined -Isrc -Isrc/base \
    "fuzz/fuzz_$t.c" build-fuzz/libaegis_core.a $libs -o "build-fuzz/fuzz_$t"
  status=0
  ASAN_OPTIONS=detect_leaks=1 "build-fuzz/fuzz_$t" -max_total_time="$seconds" -print_final_stats=1 \
    "build-fuzz/corpus/$t" "fuzz/corpus/$t" > "build-fuzz/fuzz_$t.log" 2>&1 || status=$?
  grep -E 'stat::number_of_executed_units|stat::new_units_added|ERROR|SUMMARY' "build-fuzz/fuzz_$t.log" || true
  [ "$status" -eq 0 ] || { echo "fuzz_$t found a problem (build-fuzz/fuzz_$t.log)" >&2; exit 1; }
done
