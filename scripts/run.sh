#!/usr/bin/env bash
# Sets up, builds and starts Aegis on ./storage (http://127.0.0.1:6333). Extra arguments are
# passed to `aegis serve` (for example --port 6335 or --config config.yaml).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DAEGIS_TESTS=OFF >/dev/null
cmake --build build -j"$(nproc)"
# Qdrant's gRPC port too (docs/API.md "gRPC"), unless the caller configures it (environment or a
# --config file; AEGIS__SERVICE__GRPC_PORT=0 turns it off).
if [[ -z "${AEGIS__SERVICE__GRPC_PORT:-}" && " $* " != *" --config "* ]]; then
  export AEGIS__SERVICE__GRPC_PORT=6334
fi
exec build/aegis serve --storage ./storage "$@"
