#!/usr/bin/env bash
# Installs what building and testing Aegis needs on a Debian (bookworm) machine. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(build-essential cmake pkg-config git ca-certificates openssl
          libmicrohttpd-dev libgnutls28-dev libjansson-dev liblmdb-dev libsodium-dev
          libyaml-dev libcmocka-dev clang-format
          libnghttp2-dev protobuf-c-compiler libprotobuf-c-dev
          libcurl4-gnutls-dev etcd-server etcd-client # cluster mode (docs/CLUSTER.md) and its test
          # Qdrant's REST tests (tests/conformance/curated.sh)
          python3-pytest python3-requests python3-jsonschema python3-jwt python3-retry
          python3-more-itertools python3-pytest-timeout
          chromium) # chromium: the dashboard's browser test (tests/e2e/dashboard.test.mjs)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)

if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -y || echo "apt-get update failed; trying the install with the cached lists"
  $sudo apt-get install -y --no-install-recommends "${missing[@]}"
fi

if [ "${1:-}" = "--with-node-deps" ]; then
  npm ci --no-audit --no-fund
fi
