// Multivectors (multivector_config max_sim) and the float16 / uint8 datatypes through the
// official Qdrant JS client (@qdrant/js-client-rest): create, upsert, retrieve, MaxSim queries
// ranked against a brute-force MaxSim computed here, recommend, a row-restricted JWT that sees only
// its rows on a multivector query, refusals of malformed multivectors, and the vectors surviving a
// restart and a snapshot recovery. docs/COMPATIBILITY.md "Multivectors and datatypes".
import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { QdrantClient } from '@qdrant/js-client-rest';

import { ROOT_KEY, jwt, keyEnv } from './lib/auth.mjs';
import { prng, randInt, dot, normalize } from './lib/oracle.mjs';
import { startServer, TIME_SCALE } from './lib/server.mjs';

const COLL = 'mv';
const DIM = 4;
const N = 120;
const TENANTS = ['acme', 'beta', 'gamma'];

let srv;
let root; // the JS client with the root key

const rnd = prng(0x6d76);
const f32 = (v) => v.map((x) => Math.fround(x));
// id -> {id, tenant, colbert: rows (normalized, Cosine), dots: rows (Dot)}
const model = new Map();
for (let id = 1; id <= N; id++) {
  const nrows = randInt(rnd, 1, 5);
  const colbert = Array.from({ length: nrows }, () => f32(normalize(f32(Array.from({ length: DIM }, () => rnd() * 2 - 1)))));
  const dots = Array.from({ length: randInt(rnd, 1, 3) }, () => f32(Array.from({ length: 2 }, () => rnd() * 2 - 1)));
  model.set(id, { id, tenant: TENANTS[id % 3], colbert, dots });
}

// MaxSim in Qdrant's similarity space: sum over query rows of the best similarity to a row.
function maxSim(query, rows, sim) {
  let s = 0;
  for (const q of query) s += Math.max(...rows.map((r) => sim(q, r)));
  return s;
}

function expectedTop(query, { field, sim, filter = () => true, limit }) {
  return [...model.values()]
    .filter(filter)
    .map((p) => ({ id: p.id, score: maxSim(query, p[field], sim) }))
    .sort((a, b) => b.score - a.score || a.id - b.id)
    .slice(0, limit);
}

// Same ranking, allowing float32 rounding between near-equal neighbours.
function assertTop(got, want, label) {
  assert.equal(got.length, want.length, `${label}: ${got.length} hits, want ${want.length}`);
  for (let i = 0; i < want.length; i++) {
    const close = Math.abs(got[i].score - want[i].score) <= 1e-4 * Math.max(1, Math.abs(want[i].score));
    assert.ok(close, `${label}: hit ${i} scores ${got[i].score}, want ${want[i].score}`);
    if (got[i].id !== want[i].id) {
      const tie = Math.abs(want[i].score - (want[i + 1]?.score ?? Infinity)) < 1e-4 || Math.abs(want[i].score - (want[i - 1]?.score ?? Infinity)) < 1e-4;
      assert.ok(tie, `${label}: hit ${i} is ${got[i].id}, want ${want[i].id}`);
    }
  }
}

function assertRowsClose(got, want, label) {
  assert.equal(got.length, want.length, `${label}: ${got.length} rows, want ${want.length}`);
  for (let r = 0; r < want.length; r++)
    for (let k = 0; k < want[r].length; k++)
      assert.ok(Math.abs(got[r][k] - want[r][k]) <= 1e-6, `${label}: [${r}][${k}] = ${got[r][k]}, want ${want[r][k]}`);
}

const queryRows = [f32(normalize([0.3, -0.2, 0.9, 0.1])), f32(normalize([-0.5, 0.5, 0.1, 0.7]))];

before(async () => {
  srv = await startServer({ insecure: false, env: keyEnv() });
  root = new QdrantClient({ url: srv.url, apiKey: ROOT_KEY, checkCompatibility: false, timeout: 60_000 * TIME_SCALE });
  await root.createCollection(COLL, {
    vectors: {
      colbert: { size: DIM, distance: 'Cosine', multivector_config: { comparator: 'max_sim' } },
      dots: { size: 2, distance: 'Dot', multivector_config: { comparator: 'max_sim' } },
      half: { size: 2, distance: 'Dot', datatype: 'float16' },
      bytes: { size: 3, distance: 'Euclid', datatype: 'uint8' },
    },
  });
  const points = [...model.values()].map((p) => ({
    id: p.id,
    vector: { colbert: p.colbert, dots: p.dots },
    payload: { tenant: p.tenant },
  }));
  await root.upsert(COLL, { wait: true, points });
  await root.createPayloadIndex(COLL, { field_name: 'tenant', field_schema: 'keyword', wait: true });
});

after(async () => {
  await srv?.cleanup();
});

describe('multivectors through the JS client', () => {
  test('collection info echoes multivector_config and datatype', async () => {
    const info = await root.getCollection(COLL);
    const v = info.config.params.vectors;
    assert.deepEqual(v.colbert.multivector_config, { comparator: 'max_sim' });
    assert.equal(v.half.datatype, 'float16');
    assert.equal(v.bytes.datatype, 'uint8');
    assert.equal(info.points_count, N);
  });

  test('retrieve and scroll render the list of rows', async () => {
    const got = await root.retrieve(COLL, { ids: [1, 2, 77], with_vector: true });
    for (const p of got) assertRowsClose(p.vector.colbert, model.get(p.id).colbert, `point ${p.id}`);
    const page = await root.scroll(COLL, { limit: 5, with_vector: ['dots'] });
    for (const p of page.points) {
      assertRowsClose(p.vector.dots, model.get(p.id).dots, `scroll ${p.id}`);
      assert.equal(p.vector.colbert, undefined);
    }
  });

  test('a multivector query ranks by MaxSim (Cosine and Dot), with a filter', async () => {
    const r = await root.query(COLL, { query: queryRows, using: 'colbert', limit: 10 });
    assertTop(r.points, expectedTop(queryRows, { field: 'colbert', sim: dot, limit: 10 }), 'colbert');
    const dq = [f32([0.5, -1]), f32([1, 1]), f32([-0.25, 0.75])];
    const r2 = await root.query(COLL, { query: dq, using: 'dots', limit: 7 });
    assertTop(r2.points, expectedTop(dq, { field: 'dots', sim: dot, limit: 7 }), 'dots');
    const r3 = await root.query(COLL, {
      query: queryRows,
      using: 'colbert',
      limit: 5,
      filter: { must: [{ key: 'tenant', match: { value: 'beta' } }] },
    });
    assertTop(r3.points, expectedTop(queryRows, { field: 'colbert', sim: dot, limit: 5, filter: (p) => p.tenant === 'beta' }), 'filtered');
  });

  test('a plain vector against a multivector is a query of one row', async () => {
    const one = [queryRows[0]];
    const r = await root.query(COLL, { query: queryRows[0], using: 'colbert', limit: 6 });
    assertTop(r.points, expectedTop(one, { field: 'colbert', sim: dot, limit: 6 }), 'one row');
    // the legacy search API too
    const s = await root.search(COLL, { vector: { name: 'colbert', vector: queryRows[0] }, limit: 6 });
    assertTop(s, expectedTop(one, { field: 'colbert', sim: dot, limit: 6 }), 'search');
  });

  test('recommend (average_vector) concatenates the examples; best_score scores by MaxSim', async () => {
    const pos = model.get(5).colbert, neg = model.get(9).colbert;
    const concat = [...pos, ...neg.map((r) => r.map((x) => -x))];
    const r = await root.query(COLL, { query: { recommend: { positive: [5], negative: [9] } }, using: 'colbert', limit: 8 });
    const want = expectedTop(concat, { field: 'colbert', sim: dot, limit: 8, filter: (p) => p.id !== 5 && p.id !== 9 });
    assertTop(r.points, want, 'average_vector');
    const b = await root.query(COLL, {
      query: { recommend: { positive: [5], negative: [9], strategy: 'best_score' } },
      using: 'colbert',
      limit: 3,
    });
    assert.equal(b.points.length, 3);
    assert.ok(!b.points.some((p) => p.id === 5 || p.id === 9));
  });

  test('a row-restricted JWT sees only its rows on a multivector query', async () => {
    const token = jwt({ access: [{ collection: COLL, access: 'r', payload: { tenant: 'acme' } }] });
    const acme = new QdrantClient({ url: srv.url, apiKey: token, checkCompatibility: false });
    const r = await acme.query(COLL, { query: queryRows, using: 'colbert', limit: 10 });
    assertTop(r.points, expectedTop(queryRows, { field: 'colbert', sim: dot, limit: 10, filter: (p) => p.tenant === 'acme' }), 'restricted');
    assert.ok(r.points.every((p) => model.get(p.id).tenant === 'acme'));
    // a recommendation by the id of another tenant's point: that point does not exist for it
    const beta = [...model.values()].find((p) => p.tenant === 'beta').id;
    await assert.rejects(acme.query(COLL, { query: { recommend: { positive: [beta] } }, using: 'colbert', limit: 3 }));
    const own = [...model.values()].find((p) => p.tenant === 'acme').id;
    const rec = await acme.query(COLL, { query: { recommend: { positive: [own] } }, using: 'colbert', limit: 10 });
    assert.ok(rec.points.length > 0 && rec.points.every((p) => model.get(p.id).tenant === 'acme'));
  });

  test('float16 values come back rounded to half precision, uint8 truncated and saturated', async () => {
    await root.upsert(COLL, {
      wait: true,
      points: [{ id: 500, vector: { half: [0.1, 1 / 3], bytes: [256.19, 1.81, -4] }, payload: { tenant: 'acme' } }],
    });
    const [p] = await root.retrieve(COLL, { ids: [500], with_vector: ['half', 'bytes'] });
    // rendered as the float32 it widens to (shortest form), as Qdrant does
    assert.deepEqual(p.vector.half.map(Math.fround), [0.0999755859375, 0.333251953125]);
    assert.deepEqual(p.vector.bytes, [255, 1, 0]);
    // the query is converted the same way: [255, 1, 0] is at distance 0
    const q = await root.query(COLL, { query: [300, 1.5, -1], using: 'bytes', limit: 1 });
    assert.equal(q.points[0].id, 500);
    assert.equal(q.points[0].score, 0);
    await root.delete(COLL, { wait: true, points: [500] });
  });

  test('malformed multivectors are refused with 400 naming the point and vector', async () => {
    const cases = [
      [[], /dense vector must not be empty/],
      [[[]], /all vectors must be non-empty/],
      [[[1, 2, 3, 4], [1, 2]], /same dimension, found vector with dimension 2/],
      [[[1, 2, 3], [1, 2, 3]], /expected dim: 4, got 3/],
    ];
    for (const [v, re] of cases) {
      const r = await srv.request('PUT', `/collections/${COLL}/points?wait=true`, { points: [{ id: 999, vector: { colbert: v } }] }, { headers: { 'api-key': ROOT_KEY } });
      assert.equal(r.status, 400, JSON.stringify(v));
      assert.match(r.json.status.error, re);
      assert.match(r.json.status.error, /points\[0\]\.vector/);
    }
    // a multivector for a plain dense vector
    const r = await srv.request('PUT', `/collections/${COLL}/points?wait=true`, { points: [{ id: 999, vector: { half: [[1, 2]] } }] }, { headers: { 'api-key': ROOT_KEY } });
    assert.equal(r.status, 400);
    assert.match(r.json.status.error, /multivector_config/);
    assert.equal((await root.retrieve(COLL, { ids: [999] })).length, 0);
  });

  test('strict mode multivector_config.max_vectors limits the rows of a write', async () => {
    const h = { headers: { 'api-key': ROOT_KEY } };
    const strict = (cfg) => srv.ok('PATCH', `/collections/${COLL}`, { strict_mode_config: cfg }, h);
    await strict({ enabled: true, multivector_config: { colbert: { max_vectors: 2 } } });
    const three = [f32([1, 0, 0, 0]), f32([0, 1, 0, 0]), f32([0, 0, 1, 0])];
    for (const body of [
      { points: [{ id: 998, vector: { colbert: three } }] },
      { batch: { ids: [998], vectors: { colbert: [three] } } },
    ]) {
      const r = await srv.request('PUT', `/collections/${COLL}/points?wait=true`, body, h);
      assert.equal(r.status, 400, r.text);
      assert.match(r.json.status.error, /Multivector 'colbert' has a limit of 2 vectors, but 3 were provided!/);
    }
    await srv.ok('PUT', `/collections/${COLL}/points?wait=true`, { points: [{ id: 998, vector: { colbert: three.slice(1) } }] }, h);
    await strict({ enabled: false });
    await srv.ok('PUT', `/collections/${COLL}/points?wait=true`, { points: [{ id: 998, vector: { colbert: three } }] }, h);
    const bad = await srv.request('PATCH', `/collections/${COLL}`, { strict_mode_config: { multivector_config: { colbert: { max_vectors: 0 } } } }, h);
    assert.ok(bad.status === 400 || bad.status === 422, bad.text);
    await root.delete(COLL, { wait: true, points: [998] });

    // search_allow_exact: false refuses a search on a vector whose graph is off (m = 0)
    await srv.ok('PATCH', `/collections/${COLL}`, { vectors: { dots: { hnsw_config: { m: 0 } } } }, h);
    await strict({ enabled: true, search_allow_exact: false });
    const scan = await srv.request('POST', `/collections/${COLL}/points/query`, { query: [[1, 0]], using: 'dots', limit: 3 }, h);
    assert.equal(scan.status, 400, scan.text);
    assert.match(scan.json.status.error, /forbidden on 'dots' because global vector indexing is disabled/);
    await srv.ok('POST', `/collections/${COLL}/points/query`, { query: queryRows, using: 'colbert', limit: 3 }, h);
    // a multivector query costs one read token per vector
    await strict({ enabled: true, read_rate_limit: 1 });
    const costly = await srv.request('POST', `/collections/${COLL}/points/query`, { query: queryRows, using: 'colbert', limit: 3 }, h);
    assert.equal(costly.status, 429, costly.text);
    await strict({ enabled: false });
    await srv.ok('PATCH', `/collections/${COLL}`, { vectors: { dots: { hnsw_config: { m: 16 } } } }, h);
  });

  test('vector update and delete operations work on a multivector', async () => {
    const rows = [f32([1, 0, 0, 0]), f32([0, 1, 0, 0])];
    await root.updateVectors(COLL, { wait: true, points: [{ id: 3, vector: { colbert: rows } }] });
    let [p] = await root.retrieve(COLL, { ids: [3], with_vector: true });
    assertRowsClose(p.vector.colbert, rows, 'updated');
    await root.deleteVectors(COLL, { wait: true, points: [3], vector: ['colbert'] });
    [p] = await root.retrieve(COLL, { ids: [3], with_vector: true });
    assert.equal(p.vector.colbert, undefined);
    assertRowsClose(p.vector.dots, model.get(3).dots, 'other vector kept');
    // found only by searches on vectors it has
    const r = await root.query(COLL, { query: rows, using: 'colbert', limit: N });
    assert.ok(!r.points.some((x) => x.id === 3));
    await root.updateVectors(COLL, { wait: true, points: [{ id: 3, vector: { colbert: model.get(3).colbert } }] });
  });

  test('multivectors survive a restart and a snapshot recovery', async () => {
    const before = await root.query(COLL, { query: queryRows, using: 'colbert', limit: 10 });
    await srv.restart();
    const after1 = await root.query(COLL, { query: queryRows, using: 'colbert', limit: 10 });
    assert.deepEqual(after1.points.map((p) => [p.id, p.score]), before.points.map((p) => [p.id, p.score]));
    const [p] = await root.retrieve(COLL, { ids: [42], with_vector: true });
    assertRowsClose(p.vector.colbert, model.get(42).colbert, 'after restart');

    const snap = await root.createSnapshot(COLL, { wait: true });
    await root.delete(COLL, { wait: true, points: [42] });
    const file = path.join(srv.storage, 'snapshots', 'collections', COLL, snap.name);
    const rec = await srv.request('PUT', `/collections/${COLL}/snapshots/recover`, { location: `file://${file}`, checksum: snap.checksum }, { headers: { 'api-key': ROOT_KEY } });
    assert.equal(rec.status, 200, rec.text);
    const [q] = await root.retrieve(COLL, { ids: [42], with_vector: true });
    assertRowsClose(q.vector.colbert, model.get(42).colbert, 'after recovery');
    const after2 = await root.query(COLL, { query: queryRows, using: 'colbert', limit: 10 });
    assert.deepEqual(after2.points.map((x) => [x.id, x.score]), before.points.map((x) => [x.id, x.score]));
  });
});
