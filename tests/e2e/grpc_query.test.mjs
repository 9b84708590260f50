// The gRPC RPCs beyond the basic flow (docs/API.md "gRPC"): the query API with prefetch and
// fusion, recommend, discover, groups, batches, facet, vector updates, index and collection
// updates, cluster info and the Snapshots service — through @grpc/grpc-js loading Qdrant's
// unmodified protos and through the official @qdrant/js-client-grpc. Expected results are the
// REST API's answers to the same request on the same server (one engine, two encodings) or
// computed here from what was written. Then JWT row restrictions on these RPCs, their bad input,
// and the transport's robustness: the guard before the message is decoded, gzip responses,
// cancellation, per-address limits and trusted proxies on the gRPC port.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http2 from 'node:http2';
import zlib from 'node:zlib';
import path from 'node:path';
import { QdrantClient } from '@qdrant/js-client-grpc';
import grpc from '@grpc/grpc-js';
import protoLoader from '@grpc/proto-loader';
import { startServer, freePort, REPO_ROOT } from './lib/server.mjs';
import { keyEnv, ROOT_KEY, WRONG_KEY, jwt } from './lib/auth.mjs';

const C = 'gq';
const POINTS = [
  { id: 1, vector: [1, 0, 0, 0], payload: { tenant: 'acme', n: 1 } },
  { id: 2, vector: [0.9, 0.1, 0, 0], payload: { tenant: 'acme', n: 2 } },
  { id: 3, vector: [0, 1, 0, 0], payload: { tenant: 'beta', n: 3 } },
  { id: 4, vector: [0.95, 0, 0.05, 0], payload: { tenant: 'beta', n: 4 } },
  { id: 5, vector: [0, 0, 0, 1], payload: { tenant: 'acme', n: 5 } },
  { id: 6, vector: [0.5, 0.5, 0, 0], payload: { tenant: 'gamma', n: 6 } },
  { id: 7, vector: [0.2, 0, 0.9, 0.1], payload: { tenant: 'acme', n: 7 } },
];
const ACME = POINTS.filter((p) => p.payload.tenant === 'acme').map((p) => p.id);
const ROOT = { 'api-key': ROOT_KEY };

let srv;
let port;
let services;
const clients = {};

function call(svc, method, req, meta = ROOT, port_ = port) {
  const key = `${svc}:${port_}`;
  if (!clients[key]) clients[key] = new services[svc](`127.0.0.1:${port_}`, grpc.credentials.createInsecure());
  const md = new grpc.Metadata();
  for (const [k, v] of Object.entries(meta)) md.set(k, v);
  return new Promise((resolve, reject) => clients[key][method](req, md, (e, v) => (e ? reject(e) : resolve(v))));
}

async function rejectsWith(promise, code, pattern) {
  await assert.rejects(promise, (err) => {
    assert.equal(err.code, code, `expected gRPC status ${code}, got ${err.code}: ${err.details}`);
    if (pattern) assert.match(err.details, pattern);
    return true;
  });
}

async function rest(method, p, body, headers = ROOT) {
  const r = await srv.request(method, p, body, { headers });
  return r;
}

async function restOk(method, p, body, headers = ROOT) {
  const r = await rest(method, p, body, headers);
  assert.equal(r.status, 200, `${method} ${p}: ${r.text}`);
  return r.json.result;
}

const ids = (list) => list.map((p) => p.id.num);
const restIds = (list) => list.map((p) => p.id);

before(async () => {
  port = await freePort();
  srv = await startServer({ insecure: false, env: keyEnv({ AEGIS__SERVICE__GRPC_PORT: String(port), AEGIS__SERVICE__AUTH_MAX_FAILURES: '1000000' }) });
  const opts = { includeDirs: [path.join(REPO_ROOT, 'proto', 'qdrant')], keepCase: true, longs: Number, enums: String, oneofs: true };
  const q = grpc.loadPackageDefinition(protoLoader.loadSync(['points_service.proto', 'collections_service.proto', 'snapshots_service.proto'], opts)).qdrant;
  services = { Points: q.Points, Collections: q.Collections, Snapshots: q.Snapshots };
  await call('Collections', 'Create', { collection_name: C, vectors_config: { params: { size: 4, distance: 'Cosine' } } });
  await call('Points', 'Upsert', {
    collection_name: C,
    wait: true,
    points: POINTS.map((p) => ({
      id: { num: p.id },
      vectors: { vector: { data: p.vector } },
      payload: { tenant: { string_value: p.payload.tenant }, n: { integer_value: p.payload.n } },
    })),
  });
  await call('Points', 'CreateFieldIndex', { collection_name: C, wait: true, field_name: 'tenant', field_type: 'FieldTypeKeyword' });
  await call('Points', 'CreateFieldIndex', { collection_name: C, wait: true, field_name: 'n', field_type: 'FieldTypeInteger' });
});

after(async () => {
  for (const c of Object.values(clients)) c.close();
  await srv?.cleanup();
});

test('query API stages over gRPC answer as REST does: prefetch + RRF/DBSF, recommend, discover, context, order_by, sample', async () => {
  const pf = [
    { query: { nearest: { dense: { data: [1, 0, 0, 0] } } }, limit: 4 },
    { query: { nearest: { dense: { data: [0, 1, 0, 0] } } }, limit: 4 },
  ];
  const restPf = [
    { query: [1, 0, 0, 0], limit: 4 },
    { query: [0, 1, 0, 0], limit: 4 },
  ];
  for (const [fusion, name] of [['RRF', 'rrf'], ['DBSF', 'dbsf']]) {
    const g = await call('Points', 'Query', { collection_name: C, prefetch: pf, query: { fusion }, limit: 5 });
    const r = await restOk('POST', `/collections/${C}/points/query`, { prefetch: restPf, query: { fusion: name }, limit: 5 });
    assert.deepEqual(ids(g.result), restIds(r.points), fusion);
    assert.ok(g.result.length >= 4);
    for (let i = 0; i < g.result.length; i++) assert.ok(Math.abs(g.result[i].score - r.points[i].score) < 1e-5);
  }
  // recommend by id and by vector, with a strategy
  const rec = await call('Points', 'Query', {
    collection_name: C,
    query: { recommend: { positive: [{ id: { num: 1 } }], negative: [{ dense: { data: [0, 0, 0, 1] } }], strategy: 'BestScore' } },
    limit: 3,
  });
  const recR = await restOk('POST', `/collections/${C}/points/query`, { query: { recommend: { positive: [1], negative: [[0, 0, 0, 1]], strategy: 'best_score' } }, limit: 3 });
  assert.deepEqual(ids(rec.result), restIds(recR.points));
  assert.ok(!ids(rec.result).includes(1), 'the example itself is not recommended');
  // discover and context
  const pair = { positive: { dense: { data: [1, 0, 0, 0] } }, negative: { dense: { data: [0, 0, 0, 1] } } };
  const dis = await call('Points', 'Query', { collection_name: C, query: { discover: { target: { id: { num: 2 } }, context: { pairs: [pair] } } }, limit: 3 });
  const disR = await restOk('POST', `/collections/${C}/points/query`, { query: { discover: { target: 2, context: [{ positive: [1, 0, 0, 0], negative: [0, 0, 0, 1] }] } }, limit: 3 });
  assert.deepEqual(ids(dis.result), restIds(disR.points));
  const ctx = await call('Points', 'Query', { collection_name: C, query: { context: { pairs: [pair] } }, limit: 7 });
  const ctxR = await restOk('POST', `/collections/${C}/points/query`, { query: { context: [{ positive: [1, 0, 0, 0], negative: [0, 0, 0, 1] }] }, limit: 7 });
  assert.deepEqual(ids(ctx.result).sort(), restIds(ctxR.points).sort());
  // order_by: computed here from the payloads
  const ob = await call('Points', 'Query', { collection_name: C, query: { order_by: { key: 'n', direction: 'Desc' } }, limit: 3, with_payload: { enable: true } });
  assert.deepEqual(ids(ob.result), [7, 6, 5]);
  assert.equal(ob.result[0].payload.n.integer_value, 7);
  const ob2 = await call('Points', 'Query', { collection_name: C, query: { order_by: { key: 'n', start_from: { integer: 3 } } }, limit: 2 });
  assert.deepEqual(ids(ob2.result), [3, 4]);
  // sample: limit points, all of the collection's
  const smp = await call('Points', 'Query', { collection_name: C, query: { sample: 'Random' }, limit: 4 });
  assert.equal(smp.result.length, 4);
  for (const id of ids(smp.result)) assert.ok(POINTS.some((p) => p.id === id));
  // the official client: prefetch + fusion
  const client = new QdrantClient({ host: '127.0.0.1', port, apiKey: ROOT_KEY, https: false, checkCompatibility: false });
  const oc = await client.api('points').query({
    collectionName: C,
    prefetch: pf.map((p) => ({ query: { variant: { case: 'nearest', value: { variant: { case: 'dense', value: { data: p.query.nearest.dense.data } } } } }, limit: 4n })),
    query: { variant: { case: 'fusion', value: 0 } },
    limit: 5n,
  });
  const r = await restOk('POST', `/collections/${C}/points/query`, { prefetch: restPf, query: { fusion: 'rrf' }, limit: 5 });
  assert.deepEqual(oc.result.map((p) => Number(p.id.pointIdOptions.value)), restIds(r.points));
});

test('recommend, discover, groups, batches and facet answer as REST does', async () => {
  const rec = await call('Points', 'Recommend', { collection_name: C, positive: [{ num: 1 }], negative: [{ num: 3 }], limit: 3, with_payload: { enable: true } });
  const recR = await restOk('POST', `/collections/${C}/points/recommend`, { positive: [1], negative: [3], limit: 3 });
  assert.deepEqual(ids(rec.result), restIds(recR));
  assert.ok(rec.result[0].payload.tenant.string_value);
  const recV = await call('Points', 'Recommend', { collection_name: C, positive_vectors: [{ data: [1, 0, 0, 0] }], strategy: 'BestScore', limit: 2 });
  const recVR = await restOk('POST', `/collections/${C}/points/recommend`, { positive: [[1, 0, 0, 0]], strategy: 'best_score', limit: 2 });
  assert.deepEqual(ids(recV.result), restIds(recVR));

  const rb = await call('Points', 'RecommendBatch', { collection_name: C, recommend_points: [{ positive: [{ num: 1 }], limit: 2 }, { positive: [{ num: 3 }], limit: 2 }] });
  assert.equal(rb.result.length, 2);
  assert.deepEqual(ids(rb.result[1].result), restIds(await restOk('POST', `/collections/${C}/points/recommend`, { positive: [3], limit: 2 })));

  const target = { single: { id: { num: 2 } } };
  const context = [{ positive: { vector: { data: [1, 0, 0, 0] } }, negative: { id: { num: 5 } } }];
  const dis = await call('Points', 'Discover', { collection_name: C, target, context, limit: 3 });
  const disR = await restOk('POST', `/collections/${C}/points/discover`, { target: 2, context: [{ positive: [1, 0, 0, 0], negative: 5 }], limit: 3 });
  assert.deepEqual(ids(dis.result), restIds(disR));
  const db = await call('Points', 'DiscoverBatch', { collection_name: C, discover_points: [{ target, context, limit: 3 }] });
  assert.deepEqual(ids(db.result[0].result), restIds(disR));

  const sb = await call('Points', 'SearchBatch', { collection_name: C, search_points: [{ vector: [1, 0, 0, 0], limit: 2 }, { vector: [0, 0, 0, 1], limit: 1 }] });
  assert.deepEqual(sb.result.map((b) => ids(b.result)), [[1, 4], [5]]);
  const qb = await call('Points', 'QueryBatch', { collection_name: C, query_points: [{ query: { nearest: { dense: { data: [0, 1, 0, 0] } } }, limit: 1 }, { query: { order_by: { key: 'n' } }, limit: 2 }] });
  assert.deepEqual(qb.result.map((b) => ids(b.result)), [[3], [1, 2]]);

  const sg = await call('Points', 'SearchGroups', { collection_name: C, vector: [1, 0, 0, 0], group_by: 'tenant', limit: 3, group_size: 2 });
  const sgR = await restOk('POST', `/collections/${C}/points/search/groups`, { vector: [1, 0, 0, 0], group_by: 'tenant', limit: 3, group_size: 2 });
  assert.deepEqual(sg.result.groups.map((g) => g.id.string_value), sgR.groups.map((g) => g.id));
  assert.deepEqual(sg.result.groups.map((g) => ids(g.hits)), sgR.groups.map((g) => restIds(g.hits)));
  const qg = await call('Points', 'QueryGroups', { collection_name: C, query: { nearest: { dense: { data: [0, 1, 0, 0] } } }, group_by: 'n', limit: 2, group_size: 1 });
  assert.deepEqual(qg.result.groups.map((g) => g.id.unsigned_value), [3, 6]);
  const rg = await call('Points', 'RecommendGroups', { collection_name: C, positive: [{ num: 1 }], group_by: 'tenant', limit: 2, group_size: 1, with_lookup: { collection: C } });
  const rgR = await restOk('POST', `/collections/${C}/points/recommend/groups`, { positive: [1], group_by: 'tenant', limit: 2, group_size: 1, with_lookup: C });
  assert.deepEqual(rg.result.groups.map((g) => g.id.string_value), rgR.groups.map((g) => g.id));

  const f = await call('Points', 'Facet', { collection_name: C, key: 'tenant', exact: true });
  const want = {};
  for (const p of POINTS) want[p.payload.tenant] = (want[p.payload.tenant] || 0) + 1;
  assert.deepEqual(Object.fromEntries(f.hits.map((h) => [h.value.string_value, h.count])), want);

  // The distance matrix: a sample larger than the collection takes every point, so the pairs are
  // REST's exactly (compared as id-id-score triples; the order of a sample is random).
  const triple = (a, b, score) => `${a}-${b}-${Number(score ?? 0).toFixed(4)}`; // proto3 leaves a 0 score out
  const mp = await call('Points', 'SearchMatrixPairs', { collection_name: C, sample: 50, limit: 2 });
  const mpR = await restOk('POST', `/collections/${C}/points/search/matrix/pairs`, { sample: 50, limit: 2 });
  assert.ok(mp.result.pairs.length >= POINTS.length);
  assert.deepEqual(mp.result.pairs.map((x) => triple(x.a.num, x.b.num, x.score)).sort(), mpR.pairs.map((x) => triple(x.a, x.b, x.score)).sort());
  const mo = await call('Points', 'SearchMatrixOffsets', { collection_name: C, sample: 50, limit: 2, filter: { must: [{ field: { key: 'tenant', match: { keyword: 'acme' } } }] } });
  const moR = await restOk('POST', `/collections/${C}/points/search/matrix/offsets`, { sample: 50, limit: 2, filter: { must: [{ key: 'tenant', match: { value: 'acme' } }] } });
  const offsets = (m, idOf) => m.offsets_row.map((r, i) => triple(idOf(m.ids[r]), idOf(m.ids[m.offsets_col[i]]), m.scores[i])).sort();
  assert.deepEqual(offsets(mo.result, (x) => x.num), offsets(moR, (x) => x));
  assert.deepEqual(mo.result.ids.map((x) => x.num).sort(), moR.ids.slice().sort());
  assert.ok(mo.result.ids.length > 0 && mo.result.ids.every((x) => ACME.includes(x.num)));
  // bad input as REST refuses it
  await rejectsWith(call('Points', 'SearchMatrixPairs', { collection_name: C, sample: 1, limit: 2 }), grpc.status.INVALID_ARGUMENT);
});

test('vectors, indexes, collection settings, cluster info', async () => {
  const name = 'gq_vec';
  await call('Collections', 'Create', { collection_name: name, vectors_config: { params: { size: 2, distance: 'Dot' } } });
  await call('Points', 'Upsert', { collection_name: name, wait: true, points: [1, 2].map((id) => ({ id: { num: id }, vectors: { vector: { data: [id, 0] } } })) });
  const up = await call('Points', 'UpdateVectors', { collection_name: name, wait: true, points: [{ id: { num: 2 }, vectors: { vector: { data: [0, 5] } } }] });
  assert.equal(up.result.status, 'Completed');
  const got = await call('Points', 'Get', { collection_name: name, ids: [{ num: 2 }], with_vectors: { enable: true } });
  assert.deepEqual(got.result[0].vectors.vector.dense.data, [0, 5]);
  await call('Points', 'DeleteVectors', { collection_name: name, wait: true, points_selector: { points: { ids: [{ num: 1 }] } }, vectors: { names: [''] } });
  const r = await restOk('POST', `/collections/${name}/points`, { ids: [1], with_vector: true });
  assert.ok(r[0].vector === undefined || r[0].vector === null || Object.keys(r[0].vector).length === 0, JSON.stringify(r[0]));
  // UpdateBatch with vector operations
  await call('Points', 'UpdateBatch', { collection_name: name, wait: true, operations: [{ update_vectors: { points: [{ id: { num: 1 }, vectors: { vector: { data: [7, 7] } } }] } }] });
  assert.deepEqual((await restOk('POST', `/collections/${name}/points`, { ids: [1], with_vector: true }))[0].vector, [7, 7]);

  await call('Points', 'CreateFieldIndex', { collection_name: name, wait: true, field_name: 'k', field_type: 'FieldTypeKeyword' });
  assert.ok((await restOk('GET', `/collections/${name}`)).payload_schema.k);
  await call('Points', 'DeleteFieldIndex', { collection_name: name, wait: true, field_name: 'k' });
  assert.equal((await restOk('GET', `/collections/${name}`)).payload_schema.k, undefined);

  const u = await call('Collections', 'Update', { collection_name: name, hnsw_config: { m: 24 }, optimizers_config: { indexing_threshold: 1000 } });
  assert.equal(u.result, true);
  const info = await restOk('GET', `/collections/${name}`);
  assert.equal(info.config.hnsw_config.m, 24);
  assert.equal(info.config.optimizer_config.indexing_threshold, 1000);
  await rejectsWith(call('Collections', 'Update', { collection_name: name, quantization_config: { binary: { encoding: 'TwoBits' } } }), grpc.status.INVALID_ARGUMENT, /binary\.encoding/);
  await rejectsWith(call('Collections', 'Update', { collection_name: name, quantization_config: { product: { compression: 'x16' } } }), grpc.status.INVALID_ARGUMENT, /product/);

  const ci = await call('Collections', 'CollectionClusterInfo', { collection_name: name });
  assert.equal(ci.shard_count, 1);
  assert.equal(ci.local_shards[0].points_count, 2);
  await rejectsWith(call('Collections', 'CollectionClusterInfo', { collection_name: 'gq_nope' }), grpc.status.NOT_FOUND);
  await call('Collections', 'Delete', { collection_name: name });
});

test('multivectors, datatype and scalar quantization over gRPC answer as REST does', async () => {
  const name = 'gq_multi';
  await call('Collections', 'Create', {
    collection_name: name,
    vectors_config: { params_map: { map: {
      mv: { size: 2, distance: 'Dot', multivector_config: { comparator: 'MaxSim' }, datatype: 'Float16' },
      q: { size: 2, distance: 'Dot', quantization_config: { scalar: { type: 'Int8', always_ram: true } } },
    } } },
    quantization_config: { scalar: { type: 'Int8', quantile: 0.99 } },
  });
  const rows = { 1: [[1, 0], [0, 1]], 2: [[0.1, 0.2], [0.3, 0.4], [0.5, 0.6]], 3: [[-1, 0]] };
  await call('Points', 'Upsert', {
    collection_name: name,
    wait: true,
    points: [
      // the current form, and the deprecated flat one with vectors_count
      { id: { num: 1 }, vectors: { vectors: { vectors: { mv: { multi_dense: { vectors: rows[1].map((data) => ({ data })) } }, q: { dense: { data: [1, 0] } } } } } },
      { id: { num: 2 }, vectors: { vectors: { vectors: { mv: { data: rows[2].flat(), vectors_count: 3 }, q: { dense: { data: [0, 1] } } } } } },
      { id: { num: 3 }, vectors: { vectors: { vectors: { mv: { multi_dense: { vectors: rows[3].map((data) => ({ data })) } }, q: { dense: { data: [1, 1] } } } } } },
    ],
  });
  const restPts = await restOk('POST', `/collections/${name}/points`, { ids: [1, 2, 3], with_vector: true });
  assert.deepEqual(restPts.find((p) => p.id === 1).vector.mv, rows[1]);
  assert.equal(restPts.find((p) => p.id === 2).vector.mv.length, 3, 'flat form split into 3 rows');

  const query = [[1, 0.5], [0, 1]];
  const g = await call('Points', 'Query', { collection_name: name, query: { nearest: { multi_dense: { vectors: query.map((data) => ({ data })) } } }, using: 'mv', with_vectors: { enable: true }, limit: 3 });
  const r = await restOk('POST', `/collections/${name}/points/query`, { query, using: 'mv', with_vector: true, limit: 3 });
  assert.deepEqual(ids(g.result), restIds(r.points));
  assert.equal(g.result.length, 3);
  for (let i = 0; i < g.result.length; i++) {
    assert.ok(Math.abs(g.result[i].score - r.points[i].score) < 1e-5);
    const mv = g.result[i].vectors.vectors.vectors.mv;
    // gRPC carries float32 exactly, REST prints it shortest: equal as float32
    assert.deepEqual(mv.multi_dense.vectors.map((v) => v.data), r.points[i].vector.mv.map((row) => row.map(Math.fround)), 'the same rows, float16-rounded as REST');
  }
  // a multivector point read back over gRPC
  const got = await call('Points', 'Get', { collection_name: name, ids: [{ num: 1 }], with_vectors: { enable: true } });
  assert.deepEqual(got.result[0].vectors.vectors.vectors.mv.multi_dense.vectors.map((v) => v.data), rows[1]);

  // search quantization params: honoured as REST's (the same answer for the same params)
  const params = { quantization: { rescore: true, oversampling: 2 }, hnsw_ef: 16 };
  const gq = await call('Points', 'Query', { collection_name: name, query: { nearest: { dense: { data: [1, 0.2] } } }, using: 'q', params, limit: 2 });
  const rq = await restOk('POST', `/collections/${name}/points/query`, { query: [1, 0.2], using: 'q', params, limit: 2 });
  assert.deepEqual(ids(gq.result), restIds(rq.points));
  await rejectsWith(call('Points', 'Query', { collection_name: name, query: { nearest: { dense: { data: [1, 0.2] } } }, using: 'q', params: { quantization: { oversampling: 0.5 } }, limit: 2 }), grpc.status.INVALID_ARGUMENT, /oversampling/);

  // collection info: datatype, multivector_config, quantization_config echoed, as REST reports them
  const info = (await call('Collections', 'Get', { collection_name: name })).result.config;
  const restInfo = (await restOk('GET', `/collections/${name}`)).config;
  const map = info.params.vectors_config.params_map.map;
  assert.equal(map.mv.datatype, 'Float16');
  assert.ok(map.mv.multivector_config, 'multivector_config present'); // MaxSim is enum 0: no bytes on the wire
  assert.equal(map.mv.multivector_config.comparator ?? 'MaxSim', 'MaxSim');
  assert.equal(map.q.multivector_config, undefined);
  assert.equal(map.q.quantization_config.scalar.type, 'Int8');
  assert.equal(map.q.quantization_config.scalar.always_ram, restInfo.params.vectors.q.quantization_config.scalar.always_ram);
  assert.ok(Math.abs(info.quantization_config.scalar.quantile - restInfo.quantization_config.scalar.quantile) < 1e-6);

  // update: the vector's quantization disabled, then the collection's replaced
  await call('Collections', 'Update', { collection_name: name, vectors_config: { params_map: { map: { q: { quantization_config: { disabled: {} } } } } }, quantization_config: { scalar: { type: 'Int8', quantile: 0.9 } } });
  const after_ = (await restOk('GET', `/collections/${name}`)).config;
  assert.equal(after_.params.vectors.q.quantization_config ?? null, null, JSON.stringify(after_.params.vectors.q));
  assert.equal(after_.quantization_config.scalar.quantile, 0.9);

  // refusals name the method and change nothing
  await rejectsWith(call('Collections', 'Create', { collection_name: 'gq_bin', vectors_config: { params: { size: 2, distance: 'Dot', quantization_config: { binary: { query_encoding: { setting: 'Scalar8Bits' } } } } } }), grpc.status.INVALID_ARGUMENT, /binary\.query_encoding/);
  await rejectsWith(call('Collections', 'Create', { collection_name: 'gq_turbo', vectors_config: { params: { size: 2, distance: 'Dot', datatype: 'Turbo4' } } }), grpc.status.INVALID_ARGUMENT, /Turbo4/);
  assert.equal((await rest('GET', '/collections/gq_bin')).status, 404);
  assert.equal((await rest('GET', '/collections/gq_turbo')).status, 404);
  // binary: accepted, stored as REST stores it, and read back as the message
  await call('Collections', 'Create', { collection_name: 'gq_bin', vectors_config: { params: { size: 2, distance: 'Dot', quantization_config: { binary: { always_ram: true, encoding: 'OneBit', query_encoding: { setting: 'Binary' } } } } } });
  assert.deepEqual((await restOk('GET', '/collections/gq_bin')).config.params.vectors.quantization_config, { binary: { always_ram: true, encoding: 'one_bit', query_encoding: 'binary' } });
  const binInfo = (await call('Collections', 'Get', { collection_name: 'gq_bin' })).result.config.params.vectors_config.params;
  assert.equal(binInfo.quantization_config.binary.always_ram, true);
  assert.equal(binInfo.quantization_config.binary.query_encoding.setting, 'Binary');
  await call('Collections', 'Delete', { collection_name: 'gq_bin' });
  // a multivector given for a plain vector: refused as REST refuses it
  await rejectsWith(call('Points', 'Upsert', { collection_name: name, wait: true, points: [{ id: { num: 9 }, vectors: { vectors: { vectors: { q: { multi_dense: { vectors: [{ data: [1, 0] }] } } } } } }] }), grpc.status.INVALID_ARGUMENT);
  assert.equal((await restOk('POST', `/collections/${name}/points`, { ids: [9] })).length, 0);
  await call('Collections', 'Delete', { collection_name: name });
});

test('formula queries over gRPC answer as REST does', async () => {
  const f = { constant: 0.5 };
  const gExpr = {
    sum: { sum: [
      { variable: '$score' },
      { mult: { mult: [{ constant: 0.25 }, { condition: { field: { key: 'tenant', match: { keyword: 'acme' } } } }] } },
      { exp_decay: { x: { variable: 'n' }, target: { constant: 3 }, scale: 2 } },
      { div: { left: { constant: 1 }, right: { variable: 'missing' }, by_zero_default: 0 } },
      { neg: { sqrt: f } },
    ] },
  };
  const restExpr = {
    sum: [
      '$score',
      { mult: [0.25, { key: 'tenant', match: { value: 'acme' } }] },
      { exp_decay: { x: 'n', target: 3, scale: 2 } },
      { div: { left: 1, right: 'missing', by_zero_default: 0 } },
      { neg: { sqrt: 0.5 } },
    ],
  };
  const g = await call('Points', 'Query', {
    collection_name: C,
    prefetch: [{ query: { nearest: { dense: { data: [1, 0, 0, 0] } } }, limit: 6 }],
    query: { formula: { expression: gExpr, defaults: { missing: { integer_value: 4 } } } },
    with_payload: { enable: true },
    limit: 6,
  });
  const r = await restOk('POST', `/collections/${C}/points/query`, {
    prefetch: [{ query: [1, 0, 0, 0], limit: 6 }],
    query: { formula: restExpr, defaults: { missing: 4 } },
    limit: 6,
  });
  assert.equal(g.result.length, 6);
  assert.deepEqual(ids(g.result), restIds(r.points));
  for (let i = 0; i < g.result.length; i++) assert.ok(Math.abs(g.result[i].score - r.points[i].score) < 1e-5, `${g.result[i].score} vs ${r.points[i].score}`);
  // an error in evaluation: the same refusal as REST's, naming the operation
  await rejectsWith(call('Points', 'Query', { collection_name: C, prefetch: [{ query: { nearest: { dense: { data: [1, 0, 0, 0] } } }, limit: 3 }], query: { formula: { expression: { ln: { constant: 0 } } } } }), grpc.status.INVALID_ARGUMENT, /ln/);
});

test('the Snapshots service: the REST handlers behind it', async () => {
  const made = await call('Snapshots', 'Create', { collection_name: C });
  const d = made.snapshot_description;
  assert.match(d.name, /\.snapshot$/);
  assert.ok(d.size > 0);
  assert.equal(d.checksum.length, 64);
  assert.ok(Math.abs(Number(d.creation_time.seconds) - Date.now() / 1000) < 300);
  const list = await call('Snapshots', 'List', { collection_name: C });
  assert.ok(list.snapshot_descriptions.some((s) => s.name === d.name && s.size === d.size));
  const restList = await restOk('GET', `/collections/${C}/snapshots`);
  assert.ok(restList.some((s) => s.name === d.name && s.checksum === d.checksum), 'the same file REST lists');
  await call('Snapshots', 'Delete', { collection_name: C, snapshot_name: d.name });
  assert.ok(!((await call('Snapshots', 'List', { collection_name: C })).snapshot_descriptions ?? []).some((s) => s.name === d.name));
  await rejectsWith(call('Snapshots', 'Delete', { collection_name: C, snapshot_name: d.name }), grpc.status.NOT_FOUND);
  await rejectsWith(call('Snapshots', 'Delete', { collection_name: C, snapshot_name: '../../etc/passwd' }), grpc.status.NOT_FOUND);

  const full = (await call('Snapshots', 'CreateFull', {})).snapshot_description;
  assert.ok((await call('Snapshots', 'ListFull', {})).snapshot_descriptions.some((s) => s.name === full.name));
  await call('Snapshots', 'DeleteFull', { snapshot_name: full.name });
  assert.ok(!((await call('Snapshots', 'ListFull', {})).snapshot_descriptions ?? []).some((s) => s.name === full.name));
});

test('JWT row restrictions hold on Recommend, Query, groups, batches and facet', async () => {
  const acme = { authorization: `Bearer ${jwt({ access: [{ collection: C, access: 'r', payload: { tenant: 'acme' } }] })}` };
  const inAcme = (list) => list.every((id) => ACME.includes(id));
  const rec = await call('Points', 'Recommend', { collection_name: C, positive: [{ num: 1 }], limit: 10 }, acme);
  assert.deepEqual(ids(rec.result).sort(), ACME.filter((x) => x !== 1).sort());
  // an example the token cannot see is not found, as over REST
  await rejectsWith(call('Points', 'Recommend', { collection_name: C, positive: [{ num: 3 }], limit: 10 }, acme), grpc.status.NOT_FOUND);
  const restRefused = await rest('POST', `/collections/${C}/points/recommend`, { positive: [3], limit: 10 }, acme);
  assert.equal(restRefused.status, 404);
  const q = await call('Points', 'Query', {
    collection_name: C,
    prefetch: [{ query: { nearest: { dense: { data: [0, 1, 0, 0] } } }, limit: 10 }, { query: { order_by: { key: 'n' } }, limit: 10 }],
    query: { fusion: 'RRF' },
    limit: 10,
  }, acme);
  assert.deepEqual(ids(q.result).sort(), [...ACME].sort());
  const qr = await call('Points', 'Query', { collection_name: C, query: { recommend: { positive: [{ dense: { data: [0, 1, 0, 0] } }] } }, limit: 10 }, acme);
  assert.ok(inAcme(ids(qr.result)) && qr.result.length === ACME.length);
  const sb = await call('Points', 'SearchBatch', { collection_name: C, search_points: [{ vector: [0, 1, 0, 0], limit: 10 }] }, acme);
  assert.deepEqual(ids(sb.result[0].result).sort(), [...ACME].sort());
  const sg = await call('Points', 'SearchGroups', { collection_name: C, vector: [0, 1, 0, 0], group_by: 'tenant', limit: 5, group_size: 10 }, acme);
  assert.deepEqual(sg.result.groups.map((g) => g.id.string_value), ['acme']);
  const f = await call('Points', 'Facet', { collection_name: C, key: 'tenant', exact: true }, acme);
  assert.deepEqual(f.hits.map((h) => [h.value.string_value, h.count]), [['acme', ACME.length]]);
  const mx = await call('Points', 'SearchMatrixPairs', { collection_name: C, sample: 50, limit: 3 }, acme);
  assert.ok(mx.result.pairs.length > 0 && mx.result.pairs.every((x) => ACME.includes(x.a.num) && ACME.includes(x.b.num)));
  const d = await call('Points', 'Discover', { collection_name: C, target: { single: { vector: { data: [0, 1, 0, 0] } } }, limit: 10 }, acme);
  assert.ok(inAcme(ids(d.result)));
  // a read token writes nothing: vectors, snapshots
  await rejectsWith(call('Points', 'UpdateVectors', { collection_name: C, wait: true, points: [{ id: { num: 1 }, vectors: { vector: { data: [0, 0, 1, 0] } } }] }, acme), grpc.status.PERMISSION_DENIED);
  await rejectsWith(call('Snapshots', 'Create', { collection_name: C }, acme), grpc.status.PERMISSION_DENIED);
  // a row-restricted writer cannot reach another tenant's point through its vectors either:
  // the same answer as REST's (the point is not among its rows)
  const acmeRw = { 'api-key': jwt({ access: [{ collection: C, access: 'rw', payload: { tenant: 'acme' } }] }) };
  const restUv = await rest('PUT', `/collections/${C}/points/vectors?wait=true`, { points: [{ id: 3, vector: [0, 0, 1, 0] }] }, acmeRw);
  assert.ok([403, 404].includes(restUv.status), restUv.text);
  await rejectsWith(call('Points', 'UpdateVectors', { collection_name: C, wait: true, points: [{ id: { num: 3 }, vectors: { vector: { data: [0, 0, 1, 0] } } }] }, acmeRw), restUv.status === 403 ? grpc.status.PERMISSION_DENIED : grpc.status.NOT_FOUND);
  const p3 = await restOk('POST', `/collections/${C}/points`, { ids: [3], with_vector: true });
  assert.deepEqual(p3[0].vector, [0, 1, 0, 0], 'nothing written');
});

test('bad input on the new RPCs: a clear status naming the problem, nothing written', async () => {
  const before_ = (await call('Points', 'Count', { collection_name: C, exact: true })).result.count;
  await rejectsWith(call('Points', 'Query', { collection_name: C, query: { formula: { expression: { constant: 1 } } } }), grpc.status.INVALID_ARGUMENT, /prefetch/);
  await rejectsWith(call('Points', 'Query', { collection_name: C, prefetch: [{ limit: 2 }], query: { formula: {} } }), grpc.status.INVALID_ARGUMENT, /formula/);
  await rejectsWith(call('Points', 'Query', { collection_name: C, query: { nearest: { multi_dense: { vectors: [{ data: [1, 0, 0, 0] }] } } } }), grpc.status.INVALID_ARGUMENT, /multivector/);
  await rejectsWith(call('Points', 'Query', { collection_name: C, query: { fusion: 'RRF' } }), grpc.status.INVALID_ARGUMENT, /prefetch/i);
  await rejectsWith(call('Points', 'Query', { collection_name: C, query: { nearest: { dense: { data: [1, 0] } } } }), grpc.status.INVALID_ARGUMENT);
  await rejectsWith(call('Points', 'Query', { collection_name: C, query: { order_by: { key: 'unindexed' } } }), grpc.status.INVALID_ARGUMENT);
  await rejectsWith(call('Points', 'Recommend', { collection_name: C, limit: 3 }), grpc.status.INVALID_ARGUMENT);
  await rejectsWith(call('Points', 'Recommend', { collection_name: C, positive: [{ num: 999 }], limit: 3 }), grpc.status.NOT_FOUND);
  await rejectsWith(call('Points', 'Discover', { collection_name: C, limit: 3 }), grpc.status.INVALID_ARGUMENT);
  await rejectsWith(call('Points', 'SearchGroups', { collection_name: C, vector: [1, 0, 0, 0], group_by: '', limit: 3, group_size: 1 }), grpc.status.INVALID_ARGUMENT);
  await rejectsWith(call('Points', 'SearchBatch', { collection_name: C, search_points: [{ collection_name: 'other', vector: [1, 0, 0, 0], limit: 1 }] }), grpc.status.INVALID_ARGUMENT, /collection_name/);
  await rejectsWith(call('Points', 'Facet', { collection_name: 'gq_missing', key: 'tenant' }), grpc.status.NOT_FOUND);
  await rejectsWith(call('Points', 'Query', { collection_name: C, query: { nearest: { dense: { data: [1, 0, 0, 0] } } }, shard_key_selector: { shard_keys: [{ keyword: 'a' }] } }), grpc.status.INVALID_ARGUMENT, /shard_key_selector/);
  await rejectsWith(call('Points', 'UpdateVectors', { collection_name: C, wait: true, points: [{ id: { num: 1 }, vectors: { vector: { data: [1, 2] } } }] }), grpc.status.INVALID_ARGUMENT);
  await rejectsWith(call('Points', 'UpdateVectors', { collection_name: C, wait: true, points: [{ id: { num: 1 } }] }), grpc.status.INVALID_ARGUMENT, /vectors/);
  await rejectsWith(call('Points', 'DeleteFieldIndex', { collection_name: C, wait: true, field_name: '' }), grpc.status.INVALID_ARGUMENT);
  await rejectsWith(call('Collections', 'Update', { collection_name: 'gq_missing', hnsw_config: { m: 8 } }), grpc.status.NOT_FOUND);
  assert.equal((await call('Points', 'Count', { collection_name: C, exact: true })).result.count, before_);
  const p1 = await restOk('POST', `/collections/${C}/points`, { ids: [1], with_vector: true });
  assert.deepEqual(p1[0].vector, [1, 0, 0, 0]);
});

/** One raw HTTP/2 gRPC call; resolves {status, message, headers, body}. */
function rawCall(p, payload, headers = {}, port_ = port) {
  return new Promise((resolve, reject) => {
    const s = http2.connect(`http://127.0.0.1:${port_}`);
    s.on('error', reject);
    const req = s.request({ ':method': 'POST', ':path': p, 'content-type': 'application/grpc', te: 'trailers', ...headers });
    let status = null;
    let message = '';
    let head = {};
    const chunks = [];
    const take = (h) => {
      if (h['grpc-status'] !== undefined) {
        status = Number(h['grpc-status']);
        message = decodeURIComponent(h['grpc-message'] || '');
      }
    };
    req.on('response', (h) => {
      head = h;
      take(h);
    });
    req.on('trailers', take);
    req.on('data', (d) => chunks.push(d));
    req.on('end', () => {
      s.close();
      resolve({ status, message, headers: head, body: Buffer.concat(chunks) });
    });
    req.on('error', reject);
    req.end(payload);
  });
}

function frame(msg) {
  const h = Buffer.alloc(5);
  h.writeUInt32BE(msg.length, 1);
  return Buffer.concat([h, msg]);
}

function lenField(num, bytes) {
  const out = [(num << 3) | 2];
  let n = bytes.length;
  while (n > 0x7f) {
    out.push((n & 0x7f) | 0x80);
    n >>>= 7;
  }
  out.push(n);
  return Buffer.concat([Buffer.from(out), bytes]);
}

test('the guard runs before the message is decoded; gzip responses; cancellation', async () => {
  // SearchPoints: collection_name (1) well-formed, filter (3) a megabyte that is not protobuf.
  const junk = Buffer.alloc(1 << 20, 0xff);
  const msg = Buffer.concat([lenField(1, Buffer.from(C)), lenField(3, junk)]);
  const anon = await rawCall('/qdrant.Points/Search', frame(msg));
  assert.equal(anon.status, grpc.status.UNAUTHENTICATED, anon.message);
  const other = { 'api-key': jwt({ access: [{ collection: 'elsewhere', access: 'r' }] }) };
  const denied = await rawCall('/qdrant.Points/Search', frame(msg), other);
  assert.equal(denied.status, grpc.status.PERMISSION_DENIED, denied.message);
  const root = await rawCall('/qdrant.Points/Search', frame(msg), ROOT);
  assert.equal(root.status, grpc.status.INVALID_ARGUMENT, 'decoded only once admitted');
  assert.match(root.message, /malformed|truncated/);
  // A message naming its collection twice is read as protobuf does (the last one), by the guard too.
  const two = Buffer.concat([lenField(1, Buffer.from('elsewhere')), lenField(1, Buffer.from(C))]);
  const twice = await rawCall('/qdrant.Points/Count', frame(two), other);
  assert.equal(twice.status, grpc.status.PERMISSION_DENIED, twice.message);

  // gzip: a big Scroll answer is compressed when the client accepts gzip, and decodes.
  await restOk('PUT', '/collections/gq_big', { vectors: { size: 2, distance: 'Dot' } });
  const text = 'lorem ipsum dolor sit amet '.repeat(8);
  await restOk('PUT', '/collections/gq_big/points?wait=true', { points: Array.from({ length: 40 }, (_, i) => ({ id: i + 1, vector: [i, 1], payload: { text } })) });
  const scroll = Buffer.concat([lenField(1, Buffer.from('gq_big')), Buffer.from([0x20, 100]), lenField(6, Buffer.from([0x08, 1]))]);
  const gz = await rawCall('/qdrant.Points/Scroll', frame(scroll), { ...ROOT, 'grpc-accept-encoding': 'identity,gzip' });
  assert.equal(gz.status, 0, gz.message);
  assert.equal(gz.headers['grpc-encoding'], 'gzip');
  assert.equal(gz.body[0], 1, 'the compressed flag');
  const inflated = zlib.gunzipSync(gz.body.subarray(5));
  const plain = await rawCall('/qdrant.Points/Scroll', frame(scroll), ROOT);
  assert.equal(plain.headers['grpc-encoding'], undefined);
  assert.equal(plain.body[0], 0);
  assert.ok(plain.body.length > 1024);
  // the same message but for its last field, time (a double: tag 0x19 and 8 bytes)
  assert.equal(inflated.length, plain.body.length - 5);
  assert.deepEqual(inflated.subarray(0, -9), plain.body.subarray(5, -9), 'the same message');

  // Cancellation: calls reset at once, many times; the server answers the next call normally.
  const c = new services.Points(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  const md = new grpc.Metadata();
  md.set('api-key', ROOT_KEY);
  const cancelled = [];
  for (let i = 0; i < 50; i++) {
    cancelled.push(
      new Promise((resolve) => {
        const h = c.Search({ collection_name: C, vector: [1, 0, 0, 0], limit: 5 }, md, (e) => resolve(e ? e.code : 0));
        setImmediate(() => h.cancel());
      }),
    );
  }
  const codes = await Promise.all(cancelled);
  assert.ok(codes.every((x) => x === 0 || x === grpc.status.CANCELLED), codes.join(','));
  c.close();
  assert.equal((await call('Points', 'Count', { collection_name: C, exact: true })).result.count, POINTS.length);
});

test('per-address connection limit and trusted proxies apply to the gRPC port', async () => {
  const gp = await freePort();
  const s2 = await startServer({
    insecure: false,
    env: keyEnv({
      AEGIS__SERVICE__GRPC_PORT: String(gp),
      AEGIS__SERVICE__MAX_CONNECTIONS_PER_IP: '2',
      AEGIS__SERVICE__TRUSTED_PROXIES: '127.0.0.1',
      AEGIS__SERVICE__AUTH_MAX_FAILURES: '3',
      AEGIS__SERVICE__AUTH_LOCKOUT_SEC: '60',
    }),
  });
  try {
    const empty = frame(Buffer.alloc(0));
    // Failures forwarded for 203.0.113.9 lock that address out, not the proxy's other clients.
    const codes = [];
    for (let i = 0; i < 4; i++) codes.push((await rawCall('/qdrant.Collections/List', empty, { 'api-key': WRONG_KEY, 'x-forwarded-for': '203.0.113.9' }, gp)).status);
    assert.deepEqual(codes, [16, 16, 8, 8], 'locked at the 3rd failure: RESOURCE_EXHAUSTED');
    const locked = await rawCall('/qdrant.Collections/List', empty, { 'api-key': WRONG_KEY, 'x-forwarded-for': '203.0.113.9' }, gp);
    assert.ok(Number(locked.headers['retry-after'] ?? 1) >= 1);
    const otherClient = await rawCall('/qdrant.Collections/List', empty, { 'api-key': WRONG_KEY, 'x-forwarded-for': '198.51.100.4' }, gp);
    assert.equal(otherClient.status, 16, 'another forwarded client is not locked out');
    const good = await rawCall('/qdrant.Collections/List', empty, { 'api-key': ROOT_KEY, 'x-forwarded-for': '203.0.113.9' }, gp);
    assert.equal(good.status, 0, 'a valid credential always gets in');

    // Two connections from 127.0.0.1 are served; a third is closed at once.
    const sessions = [];
    const open = () =>
      new Promise((resolve) => {
        const s = http2.connect(`http://127.0.0.1:${gp}`);
        sessions.push(s);
        s.on('error', () => resolve('closed'));
        s.on('close', () => resolve('closed'));
        s.on('remoteSettings', () => resolve('open'));
        setTimeout(() => resolve('timeout'), 3000);
      });
    assert.equal(await open(), 'open');
    assert.equal(await open(), 'open');
    assert.equal(await open(), 'closed');
    for (const s of sessions) s.destroy();
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(await open(), 'open', 'served again once the others are gone');
    for (const s of sessions) s.destroy();
  } finally {
    await s2.cleanup();
  }
});
