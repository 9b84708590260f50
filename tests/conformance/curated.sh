#!/usr/bin/env bash
# Qdrant's own REST tests, the curated subset (../shared/qdrant-conformance/run-openapi.sh),
# against a fresh server from AEGIS_BIN. The known gaps (tests/conformance/known-gaps.txt) are
# deselected, so any other failure fails. Exits 77 — CTest's SKIP_RETURN_CODE — when the harness
# or its Python packages are not there (scripts/setup.sh installs them).
#
# usage: curated.sh AEGIS_BIN HARNESS_DIR
set -uo pipefail
bin=${1:?aegis binary}
harness=${2:?qdrant-conformance directory}
here=$(cd "$(dirname "$0")" && pwd)
if [[ ! -x "$harness/run-openapi.sh" ]]; then
  echo "SKIP: no conformance harness at $harness"
  exit 77
fi
py=""
for candidate in $(type -ap python3 | awk '!seen[$0]++'); do
  if "$candidate" -c 'import pytest, requests, jsonschema, jwt, retry, more_itertools, pytest_timeout' 2>/dev/null; then
    py=$candidate
    break
  fi
done
if [[ -z "$py" ]]; then
  echo "SKIP: python3 with pytest, requests, jsonschema, jwt, retry, more_itertools, pytest_timeout not found"
  exit 77
fi
storage=$(mktemp -d)
port=$("$py" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$bin" serve --insecure --storage "$storage" --port "$port" >"$storage.log" 2>&1 &
pid=$!
cleanup() {
  kill "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null
  rm -rf "$storage" "$storage.log"
}
trap cleanup EXIT
start=$(date +%s)
PYTHON=$py OPENAPI_DESELECT="openapi-deselect.txt $here/known-gaps.txt" \
  "$harness/run-openapi.sh" "http://127.0.0.1:$port"
status=$?
echo "curated conformance run: $(($(date +%s) - start)) s"
if [[ $status -ne 0 ]]; then
  echo "--- server log (last 40 lines)"
  tail -40 "$storage.log"
fi
exit $status
