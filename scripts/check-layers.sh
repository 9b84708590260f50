#!/usr/bin/env bash
# Enforces the layers of docs/ARCHITECTURE.md: a directory under src/ may include only the
# directories listed for it below (and itself) — an entry `dir/file.h` allows that one header of
# a directory and nothing else of it — and only store/ talks to LMDB. Run by
# scripts/check-source.sh before every test run; exits 1 naming each violation.
set -euo pipefail
cd "$(dirname "$0")/.."

declare -A allowed=(
  [base]="base"
  [json]="base json"
  [index]="base json index"
  [store]="base json index store"
  [query]="base json index store query"
  [auth]="base json index auth store/ag_kv.h"
  [http]="base http"
  [grpc]="base grpc"
  [cluster]="base json cluster"
  [api]="base json index store query auth http grpc cluster api"
  [cli]="base json http cli"
)

status=0
# The collection's insides (store/ag_collection_int.h) stay in src/store: nothing else, tests and
# fuzz targets included, may include that header.
for file in $(git ls-files '*.c' '*.h' | grep -v '^src/store/'); do
  if grep -q 'ag_collection_int.h' "$file"; then
    echo "layers: $file includes store/ag_collection_int.h; the collection is opaque outside src/store"
    status=1
  fi
done

for file in $(git ls-files 'src/*/*.c' 'src/*/*.h'); do
  dir=$(basename "$(dirname "$file")")
  ok=" ${allowed[$dir]:-} "
  if [ "$ok" = "  " ]; then
    echo "layers: $file is in src/$dir, which has no entry in scripts/check-layers.sh"
    status=1
    continue
  fi
  while IFS= read -r inc; do
    if [[ "$inc" == */* ]]; then
      target=${inc%%/*}
    elif [ -e "$(dirname "$file")/$inc" ]; then
      target=$dir
    elif [ -e "src/base/$inc" ]; then
      target=base
    else
      continue # a system or library header
    fi
    if [[ "$ok" != *" $target "* && "$ok" != *" $inc "* ]]; then
      echo "layers: $file includes \"$inc\" — src/$dir may not depend on src/$target"
      status=1
    fi
  done < <(sed -n 's/^#include "\([^"]*\)".*/\1/p' "$file")
done
# LMDB is store/'s alone: nothing else in the repository (tests, fuzz targets and benchmarks
# included) includes it.
for file in $(git ls-files '*.c' '*.h' | grep -v '^src/store/'); do
  if grep -q '#include <lmdb.h>' "$file"; then
    echo "layers: $file includes <lmdb.h>; only src/store talks to LMDB"
    status=1
  fi
done
# Writers outside store/ use the write session (ag_coll_write) and batches (ag_batch_apply), never
# the mutex or the raw apply (docs/ARCHITECTURE.md "The collection API").
for file in $(git ls-files 'src/*.c' 'src/*.h' | grep -v '^src/store/'); do
  if grep -qE '\bag_coll_(write_begin|write_end|apply)\(' "$file"; then
    echo "layers: $file calls ag_coll_write_begin/write_end/apply; writes go through ag_coll_write"
    status=1
  fi
done
[ $status -eq 0 ] && echo "layer check: clean"
exit $status
