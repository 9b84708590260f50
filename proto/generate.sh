#!/usr/bin/env bash
# Generates protobuf-c code for the vendored Qdrant protos into OUTDIR (the build directory):
# each .proto is first rewritten by rewrite-optional.awk (protoc-c 1.4 has no proto3 `optional`).
# Usage: proto/generate.sh OUTDIR
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=$1
src="$out/proto-src"
mkdir -p "$src/google/protobuf" "$out"
for f in collections points json_with_int qdrant_common health_check snapshots_service; do
  awk -f "$here/rewrite-optional.awk" "$here/qdrant/$f.proto" > "$src/$f.proto"
done
cp "$here/google/protobuf/timestamp.proto" "$src/google/protobuf/timestamp.proto"
cd "$src"
protoc-c --c_out="$out" -I. collections.proto points.proto json_with_int.proto qdrant_common.proto \
  health_check.proto snapshots_service.proto google/protobuf/timestamp.proto
