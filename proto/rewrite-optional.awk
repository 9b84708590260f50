# Rewrites proto3 `optional` fields into single-field oneofs named `_<field>` — what protoc does
# internally for proto3 optional — for protoc-c 1.4, which refuses `optional`. The wire format is
# identical; the generated C gets a `<field>_case` telling whether the field was present.
# It also renames a field called `base` to `base_`: protobuf-c's structs start with a member
# named base (field names are not on the wire either).
# Usage: awk -f rewrite-optional.awk in.proto > out.proto
{
  if (match($0, /^[ \t]*[A-Za-z0-9_.]+[ \t]+base[ \t]*=/))
    sub(/[ \t]base[ \t]*=/, " base_ =")
  if (match($0, /^[ \t]*optional[ \t]+[A-Za-z0-9_.]+[ \t]+[A-Za-z0-9_]+[ \t]*=/)) {
    line = $0
    indent = line; sub(/[^ \t].*$/, "", indent)
    body = line; sub(/^[ \t]*optional[ \t]+/, "", body)
    split(body, parts, /[ \t]+/)
    name = parts[2]; sub(/=.*$/, "", name)
    print indent "oneof _" name " { " body " }"
  } else {
    print
  }
}
