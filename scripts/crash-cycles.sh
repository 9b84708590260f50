#!/usr/bin/env bash
# The long versions of the crash tests (docs/RELIABILITY.md): N rounds (default 100) of SIGKILL
# during ingestion, then N rounds of a simulated power cut (unsynced writes revoked). Needs a
# release build (cmake --preset release && cmake --build --preset release). Prints each test's
# summary; exits non-zero on the first failure. Replay a failing run with the seed it prints:
# CRASH_SEED=<n>.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds="${1:-100}"
export AEGIS_BIN="$PWD/build/aegis"
export AEGIS_POWERCUT_SHIM="$PWD/build/tests/libaegis_powercut.so"
export AEGIS_POWERCUT_APPLY="$PWD/build/tests/powercut_apply"
for f in "$AEGIS_BIN" "$AEGIS_POWERCUT_SHIM" "$AEGIS_POWERCUT_APPLY"; do
  [ -e "$f" ] || { echo "missing $f: build the release preset first" >&2; exit 2; }
done
echo "==> $rounds rounds of SIGKILL during ingestion"
start=$(date +%s)
CRASH_ROUNDS="$rounds" node --test tests/crash/crash.test.mjs | grep -E '^# (pass|fail)|^not ok|seed'
echo "    $(( $(date +%s) - start )) s"
echo "==> $rounds rounds of a power cut during ingestion"
start=$(date +%s)
POWERCUT_ROUNDS="$rounds" node --test tests/crash/powercut.test.mjs | grep -E '^# (pass|fail)|^not ok|seed'
echo "    $(( $(date +%s) - start )) s"
