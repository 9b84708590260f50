#!/usr/bin/env bash
# Fails if a banned function (STYLE.md, Security habits) appears in the C sources.
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
