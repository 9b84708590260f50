#!/usr/bin/env bash
# Sets up, builds and starts Aegis on ./storage (http://127.0.0.1:6333). Extra arguments are
# passed to `aegis serve` (for example --port 6334 or --config config.yaml).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DAEGIS_TESTS=OFF >/dev/null
cmake --build build -j"$(nproc)"
exec build/aegis serve --storage ./storage "$@"
