// Writes the seed corpus of fuzz/fuzz_grpc.c: what a client sends on one HTTP/2 connection after
// the preface (the target adds the preface), built here frame by frame: an empty SETTINGS, then per
// call a HEADERS frame (HPACK literals, no Huffman) and a DATA frame holding a gRPC message
// encoded with protobufjs from Qdrant's protos. Usage: node fuzz/gen_grpc_corpus.mjs
import fs from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';
import { fileURLToPath } from 'node:url';
import protobuf from 'protobufjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const out = path.join(here, 'corpus', 'grpc');
const root = new protobuf.Root();
root.resolvePath = (origin, target) => {
  for (const d of [path.join(here, '..', 'proto', 'qdrant'), path.join(here, '..', 'proto')]) if (fs.existsSync(path.join(d, target))) return path.join(d, target);
  return target;
};
root.loadSync(['points_service.proto', 'collections_service.proto', 'snapshots_service.proto'], { keepCase: true });

function frame(type, flags, stream, payload) {
  const h = Buffer.alloc(9);
  h.writeUIntBE(payload.length, 0, 3);
  h[3] = type;
  h[4] = flags;
  h.writeUInt32BE(stream, 5);
  return Buffer.concat([h, payload]);
}
function hpackLen(n) {
  if (n < 127) return Buffer.from([n]);
  const out = [127];
  n -= 127;
  while (n >= 128) {
    out.push((n & 0x7f) | 0x80);
    n >>= 7;
  }
  out.push(n);
  return Buffer.from(out);
}
function headers(list) {
  return Buffer.concat(list.map(([k, v]) => Buffer.concat([Buffer.from([0]), hpackLen(k.length), Buffer.from(k), hpackLen(v.length), Buffer.from(v)])));
}
function call(stream, method, type, msg, { gzip = false, extra = [] } = {}) {
  const T = root.lookupType(`qdrant.${type}`);
  let body = Buffer.from(T.encode(T.fromObject(msg)).finish());
  if (gzip) body = zlib.gzipSync(body);
  const pre = Buffer.alloc(5);
  pre[0] = gzip ? 1 : 0;
  pre.writeUInt32BE(body.length, 1);
  const h = headers([
    [':method', 'POST'],
    [':scheme', 'http'],
    [':path', method],
    [':authority', 'localhost'],
    ['content-type', 'application/grpc'],
    ['te', 'trailers'],
    ['grpc-accept-encoding', 'identity,gzip'],
    ...(gzip ? [['grpc-encoding', 'gzip']] : []),
    ...extra,
  ]);
  return Buffer.concat([frame(1, 4, stream, h), frame(0, 1, stream, Buffer.concat([pre, body]))]);
}
const settings = frame(4, 0, 0, Buffer.alloc(0));
const q = { nearest: { dense: { data: [1, 0, 0] } } };
const seeds = {
  search: call(1, '/qdrant.Points/Search', 'SearchPoints', { collection_name: 'c', vector: [1, 0, 0], limit: 3, filter: { must: [{ field: { key: 'n', range: { gte: 1 } } }] } }),
  query_fusion: call(1, '/qdrant.Points/Query', 'QueryPoints', { collection_name: 'c', prefetch: [{ query: q, limit: 5 }, { query: { order_by: { key: 'n', direction: 1 } } }], query: { fusion: 0 }, limit: 3 }),
  query_batch_gzip: call(1, '/qdrant.Points/QueryBatch', 'QueryBatchPoints', { collection_name: 'c', query_points: [{ query: { recommend: { positive: [{ id: { num: 1 } }] } } }, { query: { sample: 0 } }] }, { gzip: true }),
  recommend_groups: call(1, '/qdrant.Points/RecommendGroups', 'RecommendPointGroups', { collection_name: 'c', positive: [{ num: 1 }], group_by: 't', limit: 2, group_size: 2, with_lookup: { collection: 'c' } }),
  discover: call(1, '/qdrant.Points/Discover', 'DiscoverPoints', { collection_name: 'c', target: { single: { id: { uuid: '00000000-0000-0000-0000-000000000001' } } }, context: [{ positive: { vector: { data: [1, 0, 0] } }, negative: { id: { num: 2 } } }], limit: 2 }),
  update_batch: call(1, '/qdrant.Points/UpdateBatch', 'UpdateBatchPoints', { collection_name: 'c', operations: [{ upsert: { points: [{ id: { num: 1 }, vectors: { vector: { data: [1, 2, 3] } }, payload: { a: { list_value: { values: [{ integer_value: 1 }, { struct_value: { fields: { b: { bool_value: true } } } }] } } } }] } }, { delete_vectors: { points_selector: { filter: {} }, vectors: { names: ['x'] } } }] }),
  facet_and_snapshot: Buffer.concat([
    call(1, '/qdrant.Points/Facet', 'FacetCounts', { collection_name: 'c', key: 'tenant', limit: 3 }),
    call(3, '/qdrant.Snapshots/Delete', 'DeleteSnapshotRequest', { collection_name: 'c', snapshot_name: 's.snapshot' }),
    call(5, '/qdrant.Points/DeleteFieldIndex', 'DeleteFieldIndexCollection', { collection_name: 'c', field_name: 'f' }),
  ]),
  update_collection: call(1, '/qdrant.Collections/Update', 'UpdateCollection', { collection_name: 'c', hnsw_config: { m: 8 }, optimizers_config: { indexing_threshold: 10 }, vectors_config: { params_map: { map: { v: { on_disk: true } } } } }),
  reset: Buffer.concat([call(1, '/qdrant.Points/Count', 'CountPoints', { collection_name: 'c' }).subarray(0, 60), frame(3, 0, 1, Buffer.from([0, 0, 0, 8]))]),
  unknown_method: call(1, '/qdrant.Points/Nope', 'CountPoints', { collection_name: 'c' }),
};
fs.mkdirSync(out, { recursive: true });
for (const [name, bytes] of Object.entries(seeds)) fs.writeFileSync(path.join(out, name), Buffer.concat([settings, bytes]));
// Messages alone (the target's byte-0 mode): 0, the RPC's index in the table, the message.
const table = [...fs.readFileSync(path.join(here, '..', 'src', 'api', 'api_grpc.c'), 'utf8').matchAll(/R2?\(\s*"(\/[A-Za-z0-9_.]+\/[A-Za-z]+)"/g)].map((m) => m[1]);
const msgs = {
  '/qdrant.Points/Query': ['QueryPoints', { collection_name: 'c', prefetch: [{ query: q, limit: 5, filter: { should: [{ has_id: { has_id: [{ num: 1 }] } }] } }], query: { rrf: { k: 3, weights: [1] } }, with_payload: { include: { fields: ['a'] } } }],
  '/qdrant.Points/QueryGroups': ['QueryPointGroups', { collection_name: 'c', query: { context: { pairs: [{ positive: q.nearest, negative: { id: { num: 1 } } }] } }, group_by: 'g', with_lookup: { collection: 'c', with_vectors: { enable: true } } }],
  '/qdrant.Points/SearchBatch': ['SearchBatchPoints', { collection_name: 'c', search_points: [{ vector: [1, 2], limit: 1, sparse_indices: { data: [1, 5] }, vector_name: 's' }] }],
  '/qdrant.Points/RecommendBatch': ['RecommendBatchPoints', { collection_name: 'c', recommend_points: [{ positive: [{ num: 1 }], negative_vectors: [{ data: [1, 0, 0] }], strategy: 2, lookup_from: { collection_name: 'o', vector_name: 'v' } }] }],
  '/qdrant.Points/DiscoverBatch': ['DiscoverBatchPoints', { collection_name: 'c', discover_points: [{ target: { single: { vector: { data: [1] } } }, limit: 1 }] }],
  '/qdrant.Points/UpdateVectors': ['UpdatePointVectors', { collection_name: 'c', points: [{ id: { num: 1 }, vectors: { vectors: { vectors: { a: { data: [1] }, s: { indices: { data: [1] }, data: [2] } } } } }], update_filter: { must_not: [{ is_empty: { key: 'x' } }] } }],
  '/qdrant.Points/Upsert': ['UpsertPoints', { collection_name: 'c', points: [{ id: { uuid: 'x' }, vectors: { vector: { data: [1] } }, payload: { n: { null_value: 0 }, d: { double_value: 1.5 } } }] }],
  '/qdrant.Collections/Create': ['CreateCollection', { collection_name: 'c', vectors_config: { params_map: { map: { a: { size: 3, distance: 1, hnsw_config: { m: 4 } } } } }, sparse_vectors_config: { map: { s: {} } } }],
  '/qdrant.Points/Scroll': ['ScrollPoints', { collection_name: 'c', filter: { min_should: { conditions: [{ nested: { key: 'k', filter: { must: [{ field: { key: 'a', match: { keywords: { strings: ['x'] } } } }] } } }], min_count: 1 } }, limit: 3, offset: { num: 2 } }],
};
for (const [p, [type, msg]] of Object.entries(msgs)) {
  const T = root.lookupType(`qdrant.${type}`);
  const i = table.indexOf(p);
  if (i < 0) throw new Error(`${p} is not in the RPC table`);
  const name = `msg_${p.split('/').pop()}`;
  fs.writeFileSync(path.join(out, name), Buffer.concat([Buffer.from([0, i]), Buffer.from(T.encode(T.fromObject(msg)).finish())]));
}
console.log(`wrote ${Object.keys(seeds).length + Object.keys(msgs).length} seeds to ${out}`);
