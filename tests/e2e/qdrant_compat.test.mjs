// Qdrant behaviours the conformance work added (docs/COMPATIBILITY.md): optional vectors (a point
// carries any subset of the collection's vectors, is found only by searches on the vectors it
// has, renders exactly what it has, keeps that across a restart), per-vector updates and deletes.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer } from './lib/server.mjs';

let srv;

before(async () => {
  srv = await startServer();
});

after(async () => {
  await srv?.cleanup();
});

const sp = (indices, values) => ({ indices, values });

test('optional vectors: a point carries any subset of the vectors', async () => {
  await srv.ok('PUT', '/collections/ov', { vectors: { size: 4, distance: 'Dot' }, sparse_vectors: { text: {} } });
  await srv.ok('PUT', '/collections/ov/points?wait=true', {
    points: [
      { id: 1, vector: [1, 2, 3, 4] },
      { id: 2, vector: { '': [1, 1, 1, 1], text: sp([1], [0.5]) } },
      { id: 3, vector: { text: sp([1, 2], [0.25, 0.5]) } },
      { id: 4, vector: {} },
    ],
  });
  const dense = await srv.ok('POST', '/collections/ov/points/query', { query: [1, 1, 1, 1], limit: 10 });
  assert.deepEqual(dense.points.map((p) => p.id).sort(), [1, 2]);
  const sparse = await srv.ok('POST', '/collections/ov/points/query', { query: sp([1], [1]), using: 'text', limit: 10 });
  assert.deepEqual(sparse.points.map((p) => p.id).sort(), [2, 3]);
  // Even a filter selecting only vector-less points finds nothing by the dense vector.
  const none = await srv.ok('POST', '/collections/ov/points/search', { vector: [1, 1, 1, 1], filter: { must: [{ has_id: [3, 4] }] } });
  assert.deepEqual(none, []);
  const got = await srv.ok('POST', '/collections/ov/points', { ids: [1, 2, 3, 4], with_vector: true });
  const byId = Object.fromEntries(got.map((p) => [p.id, p.vector]));
  assert.deepEqual(byId[1], [1, 2, 3, 4]);
  assert.deepEqual(byId[2], { '': [1, 1, 1, 1], text: sp([1], [0.5]) });
  assert.deepEqual(byId[3], { text: sp([1, 2], [0.25, 0.5]) });
  assert.deepEqual(byId[4], {});
  const cnt = await srv.ok('POST', '/collections/ov/points/count', { filter: { must: [{ has_vector: '' }] }, exact: true });
  assert.equal(cnt.count, 2);
});

test('optional vectors: update adds only the named ones, delete removes them, restart keeps them', async () => {
  await srv.ok('PUT', '/collections/ov/points/vectors?wait=true', { points: [{ id: 3, vector: { '': [0, 0, 0, 1] } }] });
  await srv.ok('POST', '/collections/ov/points/vectors/delete?wait=true', { points: [2], vector: [''] });
  let got = await srv.ok('POST', '/collections/ov/points', { ids: [2, 3], with_vector: true });
  assert.deepEqual(got[0].vector, { text: sp([1], [0.5]) });
  assert.deepEqual(got[1].vector, { '': [0, 0, 0, 1], text: sp([1, 2], [0.25, 0.5]) });
  await srv.restart();
  got = await srv.ok('POST', '/collections/ov/points', { ids: [2, 3, 4], with_vector: true });
  assert.deepEqual(got.map((p) => p.vector), [{ text: sp([1], [0.5]) }, { '': [0, 0, 0, 1], text: sp([1, 2], [0.25, 0.5]) }, {}]);
  const dense = await srv.ok('POST', '/collections/ov/points/query', { query: [1, 1, 1, 1], limit: 10 });
  assert.deepEqual(dense.points.map((p) => p.id).sort(), [1, 3]);
});

test('optional vectors: named vectors and the batch form', async () => {
  await srv.ok('PUT', '/collections/ovn', { vectors: { a: { size: 2, distance: 'Dot' }, b: { size: 2, distance: 'Dot' } } });
  await srv.ok('PUT', '/collections/ovn/points?wait=true', { batch: { ids: [1, 2], vectors: { a: [[1, 0], [0, 1]] } } });
  await srv.ok('PUT', '/collections/ovn/points?wait=true', { points: [{ id: 3, vector: { b: [1, 1] } }] });
  const a = await srv.ok('POST', '/collections/ovn/points/query', { query: [1, 1], using: 'a' });
  assert.deepEqual(a.points.map((p) => p.id).sort(), [1, 2]);
  const b = await srv.ok('POST', '/collections/ovn/points/query', { query: [1, 1], using: 'b' });
  assert.deepEqual(b.points.map((p) => p.id), [3]);
  const r = await srv.request('PUT', '/collections/ovn/points', { points: [{ id: 4 }] });
  assert.equal(r.status, 422);
  assert.match(r.json.status.error, /points\[0\]\.vector/);
});

test('named vectors: add and remove on an existing collection; the others keep their data across a restart', async () => {
  await srv.ok('PUT', '/collections/nv', { vectors: { a: { size: 2, distance: 'Dot' }, b: { size: 3, distance: 'Dot' } }, sparse_vectors: { s: {} } });
  await srv.ok('PUT', '/collections/nv/points?wait=true', {
    points: [1, 2, 3].map((i) => ({ id: i, vector: { a: [i, 0], b: [0, i, 0], s: sp([i], [1]) } })),
  });
  let r = await srv.request('PUT', '/collections/nv/vectors/c', { dense: { size: 0, distance: 'Dot' } });
  assert.equal(r.status, 422);
  assert.match(r.json.status.error, /size/);
  r = await srv.request('PUT', '/collections/nv/vectors/b', { dense: { size: 4, distance: 'Dot' } });
  assert.equal(r.status, 409);
  r = await srv.request('DELETE', '/collections/nv/vectors/zz');
  assert.equal(r.status, 404);
  // Removing the first dense vector renumbers the stored rows of the ones after it.
  await srv.ok('DELETE', '/collections/nv/vectors/a?wait=true');
  await srv.ok('PUT', '/collections/nv/vectors/c?wait=true', { dense: { size: 2, distance: 'Cosine' } });
  await srv.ok('PUT', '/collections/nv/vectors/t?wait=true', { sparse: {} });
  await srv.ok('PUT', '/collections/nv/points/vectors?wait=true', { points: [{ id: 2, vector: { c: [1, 0], t: sp([7], [2]) } }] });
  const check = async () => {
    const got = await srv.ok('POST', '/collections/nv/points', { ids: [1, 2], with_vector: true });
    assert.deepEqual(got[0].vector, { b: [0, 1, 0], s: sp([1], [1]) });
    assert.deepEqual(got[1].vector, { b: [0, 2, 0], c: [1, 0], s: sp([2], [1]), t: sp([7], [2]) });
    const info = await srv.ok('GET', '/collections/nv');
    assert.deepEqual(Object.keys(info.config.params.vectors).sort(), ['b', 'c']);
    const q = await srv.ok('POST', '/collections/nv/points/query', { query: [1, 1], using: 'c' });
    assert.deepEqual(q.points.map((p) => p.id), [2]);
    r = await srv.request('POST', '/collections/nv/points/query', { query: [1, 1], using: 'a' });
    assert.equal(r.status, 400);
  };
  await check();
  await srv.restart();
  await check();
  // Removing a sparse vector renumbers the sparse rows only.
  await srv.ok('DELETE', '/collections/nv/vectors/s?wait=true');
  await srv.restart();
  const got = await srv.ok('POST', '/collections/nv/points', { ids: [2], with_vector: true });
  assert.deepEqual(got[0].vector, { b: [0, 2, 0], c: [1, 0], t: sp([7], [2]) });
});

test('named vectors: the unnamed form takes sparse vectors only', async () => {
  await srv.ok('PUT', '/collections/nvu', { vectors: { size: 2, distance: 'Dot' } });
  const r = await srv.request('PUT', '/collections/nvu/vectors/x', { dense: { size: 2, distance: 'Dot' } });
  assert.equal(r.status, 400);
  assert.match(r.json.status.error, /unnamed/);
  // A sparse vector can join it (the form Qdrant's own fixture uses).
  await srv.ok('PUT', '/collections/nvu/points?wait=true', { points: [{ id: 1, vector: [1, 2] }] });
  await srv.ok('PUT', '/collections/nvu/vectors/s?wait=true', { sparse: {} });
  await srv.ok('PUT', '/collections/nvu/points/vectors?wait=true', { points: [{ id: 1, vector: { s: sp([3], [1]) } }] });
  const got = await srv.ok('GET', '/collections/nvu/points/1');
  assert.deepEqual(got.vector, { '': [1, 2], s: sp([3], [1]) });
});

test('strict mode: limits are enforced, unsupported settings refused by name', async () => {
  await srv.ok('PUT', '/collections/sm', { vectors: { size: 2, distance: 'Dot' } });
  await srv.ok('PUT', '/collections/sm/points?wait=true', { points: [1, 2, 3].map((i) => ({ id: i, vector: [i, 1], payload: { city: `c${i}` } })) });
  const q = { query: [1, 1], limit: 3, filter: { must: [{ key: 'city', match: { value: 'c1' } }] } };
  await srv.ok('POST', '/collections/sm/points/query', q);
  await srv.ok('PATCH', '/collections/sm', { strict_mode_config: { enabled: true, max_query_limit: 2, unindexed_filtering_retrieve: false, search_allow_exact: false, upsert_max_batchsize: 2 } });
  let r = await srv.request('POST', '/collections/sm/points/query', q);
  assert.equal(r.status, 400);
  assert.match(r.json.status.error, /Limit exceeded 3 > 2 for "limit"/);
  r = await srv.request('POST', '/collections/sm/points/query', { ...q, limit: 2 });
  assert.match(r.json.status.error, /Index required but not found for "city"/);
  await srv.ok('PUT', '/collections/sm/index?wait=true', { field_name: 'city', field_schema: 'keyword' });
  await srv.ok('POST', '/collections/sm/points/query', { ...q, limit: 2 });
  r = await srv.request('POST', '/collections/sm/points/query', { query: [1, 1], limit: 2, params: { exact: true } });
  assert.match(r.json.status.error, /Exact search disabled/);
  // the fast upsert path is held to the batch limit too
  r = await srv.request('PUT', '/collections/sm/points?wait=true', { points: [4, 5, 6].map((i) => ({ id: i, vector: [i, 1] })) });
  assert.equal(r.status, 400);
  assert.match(r.json.status.error, /upsert limit/);
  // a null in a config diff keeps the setting; unsupported settings are refused by name
  await srv.ok('PATCH', '/collections/sm', { strict_mode_config: { max_query_limit: null } });
  const info = await srv.ok('GET', '/collections/sm');
  assert.equal(info.config.strict_mode_config.max_query_limit, 2);
  r = await srv.request('PATCH', '/collections/sm', { strict_mode_config: { max_collection_payload_size_bytes: 10 } });
  assert.equal(r.status, 400);
  assert.match(r.json.status.error, /strict_mode_config\.max_collection_payload_size_bytes/);
  r = await srv.request('PUT', '/collections/smq', { vectors: { size: 2, distance: 'Dot' }, quantization_config: { binary: { encoding: 'two_bits' } } });
  assert.equal(r.status, 400);
  assert.match(r.json.status.error, /quantization_config\.binary\.encoding/);
  await srv.ok('PUT', '/collections/smq', { vectors: { size: 2, distance: 'Dot' }, quantization_config: null });
  r = await srv.request('PUT', '/collections/smh', { vectors: { size: 2, distance: 'Dot' }, hnsw_config: { ef_construct: 0 } });
  assert.equal(r.status, 422);
  assert.match(r.json.status.error, /hnsw_config\.ef_construct/);
});

test('strict mode: the write rate limit answers 429 with Retry-After', async () => {
  await srv.ok('PUT', '/collections/rl', { vectors: { size: 2, distance: 'Dot' }, strict_mode_config: { enabled: true, write_rate_limit: 2 } });
  const up = () => srv.request('PUT', '/collections/rl/points?wait=true', { points: [{ id: 1, vector: [1, 1] }] });
  assert.equal((await up()).status, 200);
  assert.equal((await up()).status, 200);
  const r = await up();
  assert.equal(r.status, 429);
  assert.match(r.json.status.error, /Write rate limit exceeded: Operation requires 1 tokens/);
  assert.ok(Number(r.headers['retry-after']) >= 1);
  // a new setting starts a full bucket
  await srv.ok('PATCH', '/collections/rl', { strict_mode_config: { write_rate_limit: 3 } });
  assert.equal((await up()).status, 200);
});

test('sparse idf modifier: query weights scale by inverse document frequency', async () => {
  await srv.ok('PUT', '/collections/idf', { sparse_vectors: { t: { modifier: 'idf' }, p: {} } });
  // term 1 is in every document, term 2 in one: with idf only term 2 counts much
  const docs = [
    { id: 1, vector: { t: sp([1], [3]), p: sp([1], [3]) } },
    { id: 2, vector: { t: sp([1, 2], [1, 1]), p: sp([1, 2], [1, 1]) } },
    { id: 3, vector: { t: sp([1], [1]), p: sp([1], [1]) } },
  ];
  await srv.ok('PUT', '/collections/idf/points?wait=true', { points: docs });
  const q = sp([1, 2], [1, 1]);
  const plain = await srv.ok('POST', '/collections/idf/points/query', { query: q, using: 'p' });
  assert.equal(plain.points[0].id, 1); // 3 > 2 without idf
  const idf = await srv.ok('POST', '/collections/idf/points/query', { query: q, using: 't' });
  assert.equal(idf.points[0].id, 2);
  const w = (n, df) => Math.log(1 + (n - df + 0.5) / (df + 0.5));
  assert.ok(Math.abs(idf.points[0].score - (w(3, 3) + w(3, 1))) < 1e-5);
  const r = await srv.request('POST', '/collections/idf/points/query', { query: { recommend: { positive: [2], strategy: 'best_score' } }, using: 't' });
  assert.equal(r.status, 400);
  assert.match(r.json.status.error, /idf/);
});

test('init_from: a new collection starts with the source points and shared vectors', async () => {
  await srv.ok('PUT', '/collections/src1', { vectors: { a: { size: 2, distance: 'Dot' }, b: { size: 3, distance: 'Dot' } }, sparse_vectors: { s: {} } });
  const pts = [];
  for (let i = 1; i <= 600; i++) pts.push({ id: i, vector: { a: [i, 1], b: [1, 2, 3], s: sp([i], [1]) }, payload: { n: i } });
  await srv.ok('PUT', '/collections/src1/points?wait=true', { points: pts });
  await srv.ok('PUT', '/collections/dst1', { vectors: { a: { size: 2, distance: 'Cosine' } }, sparse_vectors: { s: {} }, init_from: { collection: 'src1' } });
  const cnt = await srv.ok('POST', '/collections/dst1/points/count', { exact: true });
  assert.equal(cnt.count, 600);
  const got = await srv.ok('POST', '/collections/dst1/points', { ids: [3], with_vector: true, with_payload: true });
  assert.deepEqual(got[0].payload, { n: 3 });
  assert.deepEqual(Object.keys(got[0].vector).sort(), ['a', 's']);
  assert.ok(Math.abs(Math.hypot(...got[0].vector.a) - 1) < 1e-5); // normalised for Cosine
  let r = await srv.request('PUT', '/collections/dst2', { vectors: { b: { size: 2, distance: 'Dot' } }, init_from: { collection: 'src1' } });
  assert.equal(r.status, 400);
  assert.match(r.json.status.error, /size 3 in the source/);
  r = await srv.request('GET', '/collections/dst2');
  assert.equal(r.status, 404); // nothing left behind
  r = await srv.request('PUT', '/collections/dst3', { vectors: { a: { size: 2, distance: 'Dot' } }, init_from: { collection: 'nope' } });
  assert.equal(r.status, 404);
  assert.equal((await srv.request('GET', '/collections/dst3')).status, 404);
});

test('service endpoints: collection cluster, optimizations, issues, quotas', async () => {
  await srv.ok('PUT', '/collections/svc', { vectors: { size: 2, distance: 'Dot' } });
  await srv.ok('PUT', '/collections/svc/points?wait=true', { points: [{ id: 1, vector: [1, 1] }, { id: 2, vector: [1, 2] }] });
  const cl = await srv.ok('GET', '/collections/svc/cluster');
  assert.equal(cl.shard_count, 1);
  assert.deepEqual(cl.local_shards, [{ shard_id: 0, points_count: 2, state: 'Active' }]);
  assert.deepEqual([cl.remote_shards, cl.shard_transfers], [[], []]);
  assert.equal(cl.peer_id, (await srv.ok('GET', '/collections/svc/cluster')).peer_id);
  const r = await srv.request('POST', '/collections/svc/cluster', { move_shard: { shard_id: 0, from_peer_id: 1, to_peer_id: 2 } });
  assert.equal(r.status, 405);
  const opt = await srv.ok('GET', '/collections/svc/optimizations');
  assert.deepEqual(Object.keys(opt.summary).sort(), ['idle_segments', 'queued_optimizations', 'queued_points', 'queued_segments']);
  assert.deepEqual(opt.running, []);
  assert.deepEqual(await srv.ok('GET', '/issues'), { issues: [] });
  assert.equal(await srv.ok('DELETE', '/issues'), true);
  const q = await srv.ok('GET', '/quotas');
  assert.equal(q.config.enabled, false);
  assert.ok('disk_usage_percent' in q.usage);
  assert.equal(await srv.ok('PUT', '/quotas', { enabled: false }), true);
  const bad = await srv.request('PUT', '/quotas', { enabled: true, max_disk_usage_percent: 90 });
  assert.equal(bad.status, 400);
  assert.match(bad.json.status.error, /not supported/);
});

test('mmr: maximal marginal relevance trades a near-duplicate for a diverse point', async () => {
  await srv.ok('PUT', '/collections/mmr', { vectors: { size: 2, distance: 'Cosine' } });
  await srv.ok('PUT', '/collections/mmr/points?wait=true', {
    points: [
      { id: 1, vector: [1, 0.1] },
      { id: 2, vector: [1, 0.11] }, // a near-duplicate of 1
      { id: 3, vector: [0.6, 1] }, // less similar to the query, far from 1
      { id: 4, vector: [-1, 0] },
    ],
  });
  const q = [1, 0.3];
  const plain = await srv.ok('POST', '/collections/mmr/points/query', { query: { nearest: q }, limit: 2 });
  assert.deepEqual(plain.points.map((p) => p.id).sort(), [1, 2]);
  const mmr = await srv.ok('POST', '/collections/mmr/points/query', { query: { nearest: q, mmr: { diversity: 0.5 } }, limit: 2 });
  assert.deepEqual(mmr.points.map((p) => p.id), [2, 3]);
  const none = await srv.ok('POST', '/collections/mmr/points/query', { query: { nearest: q, mmr: { diversity: 0 } }, limit: 2 });
  assert.deepEqual(none.points.map((p) => p.id), plain.points.map((p) => p.id));
  const r = await srv.request('POST', '/collections/mmr/points/query', { query: { nearest: q, mmr: { diversity: 2 } } });
  assert.equal(r.status, 422);
});

test('discovery and context queries, and the legacy /points/discover route', async () => {
  await srv.ok('PUT', '/collections/dc', { vectors: { size: 2, distance: 'Dot' } });
  // points along a circle: 1 at angle 0 ... 8 at 7*45 degrees
  const pts = [];
  for (let i = 0; i < 8; i++) pts.push({ id: i + 1, vector: [Math.cos((i * Math.PI) / 4), Math.sin((i * Math.PI) / 4)] });
  await srv.ok('PUT', '/collections/dc/points?wait=true', { points: pts });
  const pair = { positive: [0, 1], negative: [0, -1] }; // the upper half wins
  const ctx = await srv.ok('POST', '/collections/dc/points/query', { query: { context: pair }, limit: 8 });
  const upper = new Set([2, 3, 4]);
  const top3 = ctx.points.slice(0, 3).map((p) => p.id);
  assert.ok(top3.every((id) => upper.has(id)), JSON.stringify(ctx.points));
  assert.ok(ctx.points.slice(0, 3).every((p) => p.score === 0)); // no loss inside the context
  assert.ok(ctx.points[7].score < 0);
  // discovery: the upper half first, ordered by closeness to the target (1, 0)
  const disc = await srv.ok('POST', '/collections/dc/points/query', { query: { discover: { target: [1, 0], context: [pair] } }, limit: 3 });
  assert.deepEqual(disc.points.map((p) => p.id), [2, 3, 4]);
  assert.ok(disc.points[0].score > 1 && disc.points[0].score < 2);
  const legacy = await srv.ok('POST', '/collections/dc/points/discover', { target: [1, 0], context: [pair], limit: 3 });
  assert.deepEqual(legacy.map((p) => p.id), [2, 3, 4]);
  const batch = await srv.ok('POST', '/collections/dc/points/discover/batch', { searches: [{ target: [1, 0], context: [pair], limit: 1 }, { context: [pair], limit: 8 }] });
  assert.deepEqual(batch[0].map((p) => p.id), [2]);
  assert.equal(batch[1].length, 8);
  // ids as examples are excluded from the results, as in recommendations
  const byId = await srv.ok('POST', '/collections/dc/points/query', { query: { discover: { target: 1, context: [{ positive: 3, negative: 7 }] } }, limit: 8 });
  assert.ok(!byId.points.some((p) => [1, 3, 7].includes(p.id)));
  const r = await srv.request('POST', '/collections/dc/points/query', { query: { context: [] } });
  assert.equal(r.status, 422);
});

// GET/POST /logger (Qdrant's LoggerConfig): the level is reported, a change applies at once (the
// access log is INFO: it stops at WARN and comes back at INFO), other settings are refused.
test('/logger: the log level is reported and a change is honoured at once', async () => {
  assert.deepEqual(await srv.ok('GET', '/logger'), { log_level: 'INFO' });
  const marker = (n) => `/collections/logger_probe_${n}/exists`;
  await srv.ok('GET', marker(1));
  assert.equal(await srv.ok('POST', '/logger', { log_level: 'WARNING' }), true);
  assert.deepEqual(await srv.ok('GET', '/logger'), { log_level: 'WARN' });
  await srv.ok('GET', marker(2));
  assert.equal(await srv.ok('POST', '/logger', { log_level: 'info' }), true);
  await srv.ok('GET', marker(3));
  await new Promise((r) => setTimeout(r, 100));
  const log = srv.stderr;
  assert.match(log, /logger_probe_1/);
  assert.doesNotMatch(log, /logger_probe_2/);
  assert.match(log, /logger_probe_3/);
  for (const [body, name] of [[{ log_level: 'loud' }, /log_level/], [{ format: 'json' }, /format/], [{ on_disk: { enabled: true } }, /on_disk/]]) {
    const r = await srv.request('POST', '/logger', body);
    assert.equal(r.status, 400, r.text);
    assert.match(r.json.status.error, name);
  }
  assert.deepEqual(await srv.ok('GET', '/logger'), { log_level: 'INFO' });
});

// PATCH hnsw_config on an existing collection: stored and reported at once, and the graphs are
// rebuilt with the new parameters (in the background; searches stay exact meanwhile).
test('PATCH hnsw_config: reported, and the index is rebuilt with the new parameters', async () => {
  const C = 'hnsw_patch';
  await srv.ok('PUT', `/collections/${C}`, { vectors: { size: 4, distance: 'Dot' } });
  const points = Array.from({ length: 300 }, (_, i) => ({ id: i + 1, vector: [(i % 7) / 7, (i % 11) / 11, (i % 13) / 13, 1] }));
  await srv.ok('PUT', `/collections/${C}/points?wait=true`, { points });
  const query = { vector: [0.3, 0.9, 0.1, 0.5], limit: 5, params: { exact: true } };
  const before = (await srv.ok('POST', `/collections/${C}/points/search`, query)).map((p) => p.id);
  assert.equal(await srv.ok('PATCH', `/collections/${C}`, { hnsw_config: { m: 8, ef_construct: 40, full_scan_threshold: 1 } }), true);
  let info = await srv.ok('GET', `/collections/${C}`);
  assert.equal(info.config.hnsw_config.m, 8);
  assert.equal(info.config.hnsw_config.ef_construct, 40);
  assert.match(srv.stderr, /collection 'hnsw_patch': vector '' gets a new index \(hnsw_config changed: m 8, ef_construct 40\)/);
  assert.deepEqual((await srv.ok('POST', `/collections/${C}/points/search`, query)).map((p) => p.id), before);
  // m 0: no graph (the exact index); a per-vector override wins over the collection's
  assert.equal(await srv.ok('PATCH', `/collections/${C}`, { hnsw_config: { m: 0 } }), true);
  assert.match(srv.stderr, /vector '' gets a new index \(hnsw_config changed: m 0/);
  assert.equal(await srv.ok('PATCH', `/collections/${C}`, { vectors: { '': { hnsw_config: { m: 12 } } } }), true);
  assert.match(srv.stderr, /m 12, ef_construct 40/);
  info = await srv.ok('GET', `/collections/${C}`);
  assert.equal(info.config.params.vectors.hnsw_config.m, 12);
  // unchanged parameters rebuild nothing
  const lines = srv.stderr.split('gets a new index').length;
  assert.equal(await srv.ok('PATCH', `/collections/${C}`, { hnsw_config: { m: 0 } }), true);
  assert.equal(srv.stderr.split('gets a new index').length, lines);
  assert.deepEqual((await srv.ok('POST', `/collections/${C}/points/search`, query)).map((p) => p.id), before);
  // out of range: refused, nothing changed
  const r = await srv.request('PATCH', `/collections/${C}`, { hnsw_config: { ef_construct: 1 } });
  assert.equal(r.status, 422, r.text);
  assert.equal((await srv.ok('GET', `/collections/${C}`)).config.hnsw_config.ef_construct, 40);
});

// update_mode and update_filter of an upsert (and update_filter of a vector update), as Qdrant:
// the points left out are unchanged, the rest is written.
test('upsert update_mode and update_filter: only the points they admit are written', async () => {
  const C = 'upd_mode';
  await srv.ok('PUT', `/collections/${C}`, { vectors: { size: 2, distance: 'Dot' } });
  const W = `/collections/${C}/points?wait=true`;
  await srv.ok('PUT', W, { points: [{ id: 1, vector: [1, 0], payload: { v: 5 } }] });
  const v = async (id) => (await srv.request('GET', `/collections/${C}/points/${id}`)).json?.result?.payload?.v;
  await srv.ok('PUT', W, { points: [{ id: 1, vector: [1, 0], payload: { v: 6 } }, { id: 2, vector: [0, 1], payload: { v: 1 } }], update_mode: 'insert_only' });
  assert.deepEqual([await v(1), await v(2)], [5, 1]);
  await srv.ok('PUT', W, { points: [{ id: 1, vector: [1, 0], payload: { v: 7 } }, { id: 3, vector: [0, 1], payload: { v: 1 } }], update_mode: 'update_only' });
  assert.deepEqual([await v(1), await v(3)], [7, undefined]);
  // update_filter: an existing point is written only when it matches; new points always
  await srv.ok('PUT', W, { points: [{ id: 1, vector: [1, 0], payload: { v: 8 } }, { id: 4, vector: [1, 1], payload: { v: 1 } }], update_filter: { must: [{ key: 'v', range: { lt: 7 } }] } });
  assert.deepEqual([await v(1), await v(4)], [7, 1]);
  await srv.ok('PUT', W, { points: [{ id: 1, vector: [1, 0], payload: { v: 9 } }], update_filter: { must: [{ key: 'v', range: { lte: 7 } }] } });
  assert.equal(await v(1), 9);
  await srv.ok('PUT', `/collections/${C}/points/vectors?wait=true`, { points: [{ id: 1, vector: [0, 1] }], update_filter: { must: [{ key: 'v', match: { value: 1 } }] } });
  assert.deepEqual((await srv.ok('GET', `/collections/${C}/points/1`)).vector, [1, 0]);
  for (const body of [{ points: [], update_mode: 'sometimes' }, { points: [], update_filter: { must: [{ key: 'v', rang: {} }] } }]) {
    const r = await srv.request('PUT', W, body);
    assert.equal(r.status, 400, r.text);
    assert.match(r.json.status.error, /update_mode|update_filter/);
  }
});

// PATCH metadata merges keys; a null value removes its key (Qdrant).
test('PATCH metadata: keys merged, null removes one', async () => {
  await srv.ok('PUT', '/collections/meta_patch', { vectors: { size: 2, distance: 'Dot' }, metadata: { a: 1 } });
  for (const metadata of [{ b: 2 }, { a: 3 }, { b: null }]) await srv.ok('PATCH', '/collections/meta_patch', { metadata });
  assert.deepEqual((await srv.ok('GET', '/collections/meta_patch')).config.metadata, { a: 3 });
});
