#!/usr/bin/env bash
# Source checks run before every test run: no banned function (STYLE.md, Security habits) in the
# C sources, and the tree formatted with .clang-format.
set -euo pipefail
cd "$(dirname "$0")/.."
hits=$(grep -nE '\b(sprintf|strcpy|strcat|strtok|atoi|gets|alloca|rand)\s*\(' \
       $(git ls-files 'src/*.c' 'src/*.h' 'tests/*.c' 'bench/*.c' 'fuzz/*.c' 2>/dev/null || true) \
       | grep -vE '\b(snprintf|vsnprintf|randombytes_[a-z]+)\s*\(' || true)
if [ -n "$hits" ]; then
  echo "banned functions found:"
  echo "$hits"
  exit 1
fi
echo "banned-function check: clean"

# Formatting (.clang-format): the tree must already be formatted.
if command -v clang-format >/dev/null 2>&1; then
  git ls-files '*.c' '*.h' | xargs clang-format --dry-run --Werror
  echo "clang-format check: clean"
fi

# Layers (docs/ARCHITECTURE.md): lower directories never include higher ones.
scripts/check-layers.sh
