// The official Qdrant JS client (@qdrant/js-client-rest) drives every data-plane endpoint of a
// real aegis server. Every expectation is computed independently here, from a JS model of what
// was written (ids, payloads, vectors) and brute-force scoring over it.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { QdrantClient } from '@qdrant/js-client-rest';
import { startServer, TIME_SCALE } from './lib/server.mjs';
import {
  prng,
  randVector,
  randInt,
  normalize,
  bruteForce,
  sparseDot,
  assertRanking,
  assertVectorClose,
  rrf,
  cmpId,
} from './lib/oracle.mjs';

const DIM = 128;
const N = 10_000;
const BATCH = 1_000;

let srv;
let client;

// ---- the model: what the server must hold ------------------------------------------------------
// id -> {id, vector, payload}; vector is what the server stores (normalised for Cosine; for named
// vectors an object {name: dense array | {indices, values}}).
const model = { main: new Map(), edits: new Map(), multi: new Map() };

const COLORS = ['red', 'green', 'blue'];
function mainPayload(i) {
  return {
    i,
    group: `g${i % 7}`,
    color: COLORS[i % 3],
    price: ((i * 37) % 1000) / 10,
    uniq: (i * 7919) % 10007, // distinct for every i < 10007: a total order for order_by
    flag: i % 2 === 0,
    tags: [`t${i % 4}`, `t${(i + 1) % 4}`],
    nested: { level: i % 5, name: `n${i}` },
  };
}

const rndMain = prng(0x5eed01);
const mainRaw = new Map();
for (let i = 1; i <= N; i++) {
  const raw = randVector(rndMain, DIM);
  mainRaw.set(i, raw);
  model.main.set(i, { id: i, vector: normalize(raw), payload: mainPayload(i) });
}

// Filters used against `main`, each with the JS predicate that defines what it must match.
const F1 = {
  json: { must: [{ key: 'color', match: { value: 'red' } }, { key: 'price', range: { gte: 20, lt: 60 } }] },
  pred: (p) => p.payload.color === 'red' && p.payload.price >= 20 && p.payload.price < 60,
};
const F2 = {
  json: {
    should: [{ key: 'group', match: { any: ['g1', 'g2'] } }],
    must_not: [{ key: 'nested.level', match: { value: 0 } }],
  },
  pred: (p) => ['g1', 'g2'].includes(p.payload.group) && p.payload.nested.level !== 0,
};
const F3 = {
  json: { must: [{ key: 'tags', match: { value: 't1' } }, { key: 'flag', match: { value: true } }] },
  pred: (p) => p.payload.tags.includes('t1') && p.payload.flag === true,
};

const rndQ = prng(0xbeef);
const queries = Array.from({ length: 8 }, () => randVector(rndQ, DIM));

// `multi`: named dense vectors img (8, Euclid) and txt (4, Dot), sparse kw; some points lack txt
// or kw; a few UUID ids.
const UUIDS = [
  '5c56c793-69f3-4fbf-87e6-c4bf54c28c26',
  '0b4ebf76-7a10-4d0a-8d57-3b0ad7f2a9d1',
  'f3a1c9e2-0000-4000-8000-000000000001',
  '123e4567-e89b-12d3-a456-426614174000',
  'ffffffff-ffff-4fff-bfff-ffffffffffff',
];
function randSparse(rnd) {
  const n = randInt(rnd, 3, 8);
  const set = new Set();
  while (set.size < n) set.add(randInt(rnd, 0, 49));
  const indices = [...set].sort((a, b) => a - b);
  return { indices, values: indices.map(() => randInt(rnd, 1, 128) / 64) };
}
const rndMulti = prng(0x77);
const multiIds = [...Array.from({ length: 300 }, (_, k) => k + 1), ...UUIDS];
for (const [k, id] of multiIds.entries()) {
  const vector = { img: randVector(rndMulti, 8) };
  if (k % 10 !== 3) vector.txt = randVector(rndMulti, 4);
  if (k % 7 !== 2) vector.kw = randSparse(rndMulti);
  model.multi.set(id, { id, vector, payload: { k, kind: k % 2 ? 'odd' : 'even' } });
}

const rndEdits = prng(0xed17);
for (let i = 1; i <= 50; i++) {
  model.edits.set(i, {
    id: i,
    vector: randVector(rndEdits, 4),
    payload: { n: i, color: i % 2 ? 'red' : 'blue', meta: { a: i, b: 'x' } },
  });
}

function newClient() {
  return new QdrantClient({ url: srv.url, checkCompatibility: false, timeout: 120_000 * TIME_SCALE });
}

// ---- helpers ----------------------------------------------------------------------------------

function points(name) {
  return [...model[name].values()];
}

/** Dense view of the multi model for one named vector. */
function namedPoints(vname) {
  return points('multi').map((p) => ({ id: p.id, payload: p.payload, vector: p.vector[vname] ?? null }));
}

async function scrollAll(name, args = {}) {
  const out = [];
  let offset;
  for (let pages = 0; ; pages++) {
    assert.ok(pages < 1000, 'scroll did not terminate');
    const r = await client.scroll(name, { limit: 1000, with_payload: true, with_vector: true, ...args, offset });
    out.push(...r.points);
    if (r.next_page_offset === null || r.next_page_offset === undefined) break;
    offset = r.next_page_offset;
  }
  return out;
}

function assertStoredVector(got, want, msg) {
  if (Array.isArray(want)) return assertVectorClose(got, want, msg);
  assert.equal(typeof got, 'object', `${msg}: vector should be an object of named vectors`);
  assert.deepEqual(Object.keys(got ?? {}).sort(), Object.keys(want).sort(), `${msg}: vector names`);
  for (const [k, v] of Object.entries(want)) {
    if (Array.isArray(v)) assertVectorClose(got[k], v, `${msg}.${k}`);
    else {
      assert.deepEqual(got[k].indices, v.indices, `${msg}.${k}.indices`);
      assertVectorClose(got[k].values, v.values, `${msg}.${k}.values`);
    }
  }
}

/** The whole collection on the server equals the model: ids, payloads, vectors. */
async function assertCollectionEqualsModel(name) {
  const got = await scrollAll(name);
  const ids = got.map((p) => p.id);
  assert.equal(new Set(ids).size, ids.length, `${name}: duplicate ids in scroll`);
  assert.deepEqual([...ids].sort(cmpId), [...model[name].keys()].sort(cmpId), `${name}: ids`);
  for (const p of got) {
    const m = model[name].get(p.id);
    assert.deepEqual(p.payload, m.payload, `${name}: payload of ${p.id}`);
    assertStoredVector(p.vector, m.vector, `${name}: vector of ${p.id}`);
  }
  const c = await client.count(name, { exact: true });
  assert.equal(c.count, model[name].size, `${name}: count`);
}

function groupsOracle(ranking, groupOf, limit, groupSize) {
  const groups = new Map();
  for (const hit of ranking) {
    const g = groupOf(hit.id);
    if (!groups.has(g)) groups.set(g, []);
    const hits = groups.get(g);
    if (hits.length < groupSize) hits.push(hit);
  }
  return [...groups.entries()]
    .map(([id, hits]) => ({ id, hits }))
    .sort((a, b) => b.hits[0].score - a.hits[0].score)
    .slice(0, limit);
}

function assertGroups(got, want, label) {
  assert.equal(got.length, want.length, `${label}: number of groups ${JSON.stringify(got.map((g) => g.id))}`);
  for (let i = 0; i < want.length; i++) {
    assert.equal(got[i].id, want[i].id, `${label}: group at ${i}`);
    assertRanking(got[i].hits, want[i].hits, { limit: want[i].hits.length, label: `${label} group ${want[i].id}` });
  }
}

function recommendQuery(pos, neg, store) {
  const avg = (ids) => {
    const s = new Array(store.get(ids[0]).length).fill(0);
    for (const id of ids) store.get(id).forEach((x, i) => (s[i] += x / ids.length));
    return s;
  };
  const ap = avg(pos);
  if (!neg.length) return ap;
  const an = avg(neg);
  return ap.map((x, i) => x + x - an[i]);
}

// ---- lifecycle --------------------------------------------------------------------------------

before(async () => {
  srv = await startServer();
  client = newClient();
});

after(async () => {
  await srv?.cleanup();
});

// ---- tests ------------------------------------------------------------------------------------

test('service info: GET / answers a version the official client accepts', async () => {
  const info = await client.versionInfo();
  assert.equal(typeof info.title, 'string');
  assert.match(info.version, /^\d+\.\d+\.\d+/);
  // The client's own rule (client-version.js): same major, minor within 1 of the client's.
  const entry = fileURLToPath(import.meta.resolve('@qdrant/js-client-rest'));
  let dir = path.dirname(entry);
  while (!fs.existsSync(path.join(dir, 'package.json'))) dir = path.dirname(dir);
  const clientVersion = JSON.parse(fs.readFileSync(path.join(dir, 'package.json'), 'utf8')).version;
  const [cM, cm] = clientVersion.split('.').map(Number);
  const [sM, sm] = info.version.split('.').map(Number);
  assert.ok(
    cM === sM && Math.abs(cm - sm) <= 1,
    `server version ${info.version} is incompatible with @qdrant/js-client-rest ${clientVersion} (the client warns)`,
  );
});

test('create collections: single unnamed vector, named vectors + sparse vectors', async () => {
  assert.equal(await client.createCollection('main', { vectors: { size: DIM, distance: 'Cosine' } }), true);
  assert.equal(
    await client.createCollection('multi', {
      vectors: { img: { size: 8, distance: 'Euclid' }, txt: { size: 4, distance: 'Dot' } },
      sparse_vectors: { kw: {} },
    }),
    true,
  );
  assert.equal(await client.createCollection('edits', { vectors: { size: 4, distance: 'Dot' } }), true);
  await assert.rejects(client.createCollection('main', { vectors: { size: 4, distance: 'Dot' } }), (e) => {
    assert.equal(e.status, 409, `re-creating an existing collection: ${e.status} ${JSON.stringify(e.data)}`);
    return true;
  });
});

test('collectionExists, getCollections, getCollection', async () => {
  assert.deepEqual(await client.collectionExists('main'), { exists: true });
  assert.deepEqual(await client.collectionExists('multi'), { exists: true });
  assert.deepEqual(await client.collectionExists('nope'), { exists: false });
  const list = await client.getCollections();
  assert.deepEqual(list.collections.map((c) => c.name).sort(), ['edits', 'main', 'multi']);

  const main = await client.getCollection('main');
  assert.equal(main.points_count, 0);
  assert.equal(main.config.params.vectors.size, DIM);
  assert.equal(main.config.params.vectors.distance, 'Cosine');
  const multi = await client.getCollection('multi');
  assert.deepEqual(multi.config.params.vectors.img, { ...multi.config.params.vectors.img, size: 8, distance: 'Euclid' });
  assert.deepEqual(multi.config.params.vectors.txt, { ...multi.config.params.vectors.txt, size: 4, distance: 'Dot' });
  assert.ok(multi.config.params.sparse_vectors && 'kw' in multi.config.params.sparse_vectors, 'sparse_vectors.kw');
  await assert.rejects(client.getCollection('nope'), (e) => e.status === 404);
});

test('updateCollection changes hnsw_config and optimizers_config', async () => {
  assert.equal(
    await client.updateCollection('main', {
      hnsw_config: { m: 32, ef_construct: 123 },
      optimizers_config: { indexing_threshold: 20_000 },
    }),
    true,
  );
  const info = await client.getCollection('main');
  assert.equal(info.config.hnsw_config.m, 32);
  assert.equal(info.config.hnsw_config.ef_construct, 123);
  assert.equal(info.config.optimizer_config.indexing_threshold, 20_000);
  await assert.rejects(client.updateCollection('nope', { hnsw_config: { m: 8 } }), (e) => e.status === 404);
});

test('upsert 10,000 128-dim points in batches of 1,000 (record and batch forms)', async (t) => {
  const t0 = Date.now();
  for (let start = 1; start <= N; start += BATCH) {
    const ids = Array.from({ length: BATCH }, (_, k) => start + k);
    let r;
    if (start <= N / 2) {
      r = await client.upsert('main', {
        wait: true,
        points: ids.map((id) => ({ id, vector: mainRaw.get(id), payload: model.main.get(id).payload })),
      });
    } else {
      r = await client.upsert('main', {
        wait: true,
        batch: {
          ids,
          vectors: ids.map((id) => mainRaw.get(id)),
          payloads: ids.map((id) => model.main.get(id).payload),
        },
      });
    }
    assert.equal(r.status, 'completed');
    assert.equal(typeof r.operation_id, 'number');
  }
  const dt = (Date.now() - t0) / 1000;
  t.diagnostic(`upserted ${N} points in ${dt.toFixed(2)} s`);
  const info = await client.getCollection('main');
  assert.equal(info.points_count, N);
  assert.equal((await client.count('main', { exact: true })).count, N);

  const mr = await client.upsert('multi', {
    wait: true,
    points: points('multi').map((p) => ({ id: p.id, vector: p.vector, payload: p.payload })),
  });
  assert.equal(mr.status, 'completed');
  assert.equal((await client.getCollection('multi')).points_count, model.multi.size);

  await client.upsert('edits', { wait: true, points: points('edits') });
  assert.equal((await client.count('edits')).count, 50);
});

test('retrieve and get point: payloads and (normalised) vectors', async () => {
  const ids = [1, 2, 4999, 5000, 5001, 9999, 10000, 123456];
  const got = await client.retrieve('main', { ids, with_payload: true, with_vector: true });
  assert.deepEqual(got.map((p) => p.id).sort(cmpId), ids.filter((id) => model.main.has(id)).sort(cmpId));
  for (const p of got) {
    assert.deepEqual(p.payload, model.main.get(p.id).payload, `payload of ${p.id}`);
    assertVectorClose(p.vector, model.main.get(p.id).vector, `vector of ${p.id}`);
  }
  const one = (await client.api().getPoint({ collection_name: 'main', id: 42 })).data.result;
  assert.equal(one.id, 42);
  assert.deepEqual(one.payload, model.main.get(42).payload);
  assertVectorClose(one.vector, model.main.get(42).vector, 'GET point 42');
  await assert.rejects(client.api().getPoint({ collection_name: 'main', id: 424242 }), (e) => e.status === 404);

  const m = await client.retrieve('multi', { ids: [UUIDS[0], 4, 14], with_payload: true, with_vector: true });
  assert.equal(m.length, 3);
  for (const p of m) {
    assert.deepEqual(p.payload, model.multi.get(p.id).payload);
    assertStoredVector(p.vector, model.multi.get(p.id).vector, `multi ${p.id}`);
  }
  // with_payload include/exclude, with_vector false.
  const [inc] = await client.retrieve('main', { ids: [7], with_payload: { include: ['color', 'nested'] } });
  assert.deepEqual(inc.payload, { color: model.main.get(7).payload.color, nested: model.main.get(7).payload.nested });
  assert.ok(inc.vector === undefined || inc.vector === null, 'no vector unless asked');
  const [exc] = await client.retrieve('main', { ids: [7], with_payload: { exclude: ['tags', 'nested'] } });
  const { tags, nested, ...rest } = model.main.get(7).payload;
  assert.deepEqual(exc.payload, rest);
});

test('search (legacy API) with and without filters matches brute force', async () => {
  const all = points('main');
  for (const [qi, q] of queries.entries()) {
    for (const f of [null, F1, F2, F3]) {
      const want = bruteForce(all, q, 'Cosine', { filter: f ? f.pred : undefined });
      const got = await client.search('main', {
        vector: q,
        limit: 10,
        filter: f ? f.json : undefined,
        params: { exact: true },
        with_payload: true,
      });
      assertRanking(got, want, { limit: 10, label: `search q${qi} filter ${f ? JSON.stringify(f.json) : 'none'}` });
      for (const h of got) assert.deepEqual(h.payload, model.main.get(h.id).payload, `payload of hit ${h.id}`);
    }
  }
  // offset, with_vector and score_threshold.
  const q = queries[0];
  const want = bruteForce(all, q, 'Cosine');
  const paged = await client.search('main', { vector: q, limit: 5, offset: 7, with_vector: true, params: { exact: true } });
  assertRanking(paged, want, { limit: 5, offset: 7, label: 'search offset 7' });
  for (const h of paged) assertVectorClose(h.vector, model.main.get(h.id).vector, `vector of hit ${h.id}`);
  const threshold = want[25].score;
  const thr = await client.search('main', { vector: q, limit: 100, score_threshold: threshold, params: { exact: true } });
  const wantThr = want.filter((p) => p.score >= threshold - 1e-6);
  assert.ok(Math.abs(thr.length - wantThr.length) <= 1, `score_threshold: ${thr.length} vs ${wantThr.length}`);
  assertRanking(thr, want, { limit: thr.length, label: 'score_threshold' });
  for (const h of thr) assert.ok(h.score >= threshold - 1e-5, `hit below threshold: ${h.score} < ${threshold}`);
});

test('query API (nearest) with filters matches brute force', async () => {
  const all = points('main');
  for (const [qi, q] of queries.slice(0, 4).entries()) {
    for (const f of [null, F1, F2]) {
      const want = bruteForce(all, q, 'Cosine', { filter: f ? f.pred : undefined });
      const r = await client.query('main', { query: q, limit: 10, filter: f?.json, params: { exact: true }, with_payload: true });
      assertRanking(r.points, want, { limit: 10, label: `query q${qi}` });
      for (const h of r.points) assert.deepEqual(h.payload, model.main.get(h.id).payload);
    }
    const r2 = await client.query('main', { query: { nearest: q }, limit: 3, offset: 2 });
    assertRanking(r2.points, bruteForce(all, q, 'Cosine'), { limit: 3, offset: 2, label: `query nearest q${qi} offset 2` });
  }
});

test('named vectors (using) and sparse vectors: search and query', async () => {
  const rnd = prng(0x51);
  for (let t = 0; t < 4; t++) {
    const qi = randVector(rnd, 8);
    const wantImg = bruteForce(namedPoints('img'), qi, 'Euclid');
    const s = await client.search('multi', { vector: { name: 'img', vector: qi }, limit: 10, params: { exact: true } });
    assertRanking(s, wantImg, { limit: 10, label: 'search img (Euclid)' });
    const qr = await client.query('multi', { query: qi, using: 'img', limit: 10 });
    assertRanking(qr.points, wantImg, { limit: 10, label: 'query using img' });

    const qt = randVector(rnd, 4);
    const wantTxt = bruteForce(namedPoints('txt'), qt, 'Dot');
    const st = await client.query('multi', { query: qt, using: 'txt', limit: 10, with_payload: true });
    assertRanking(st.points, wantTxt, { limit: 10, label: 'query using txt (Dot, points without txt excluded)' });

    const qs = randSparse(rnd);
    const wantSparse = points('multi')
      .filter((p) => p.vector.kw)
      .map((p) => ({ id: p.id, score: sparseDot(qs, p.vector.kw) }))
      .filter((p) => p.score !== null)
      .sort((a, b) => b.score - a.score || cmpId(a.id, b.id));
    const sq = await client.query('multi', { query: qs, using: 'kw', limit: 10 });
    assertRanking(sq.points, wantSparse, { limit: 10, label: `sparse query ${JSON.stringify(qs)}` });
    const ss = await client.search('multi', { vector: { name: 'kw', vector: qs }, limit: 10 });
    assertRanking(ss, wantSparse, { limit: 10, label: 'sparse search' });

    // Hybrid: prefetch dense + sparse, fuse with RRF.
    const fused = await client.query('multi', {
      prefetch: [
        { query: qs, using: 'kw', limit: 20 },
        { query: qi, using: 'img', limit: 20 },
      ],
      query: { fusion: 'rrf' },
      limit: 10,
    });
    const wantFused = rrf([wantSparse.slice(0, 20), wantImg.slice(0, 20)]);
    assertRanking(fused.points, wantFused, { limit: 10, rel: 1e-5, label: 'prefetch + rrf' });
  }
  // A filter on a named-vector search.
  const qi = randVector(rnd, 8);
  const want = bruteForce(namedPoints('img'), qi, 'Euclid', { filter: (p) => p.payload.kind === 'odd' });
  const r = await client.query('multi', {
    query: qi,
    using: 'img',
    limit: 7,
    filter: { must: [{ key: 'kind', match: { value: 'odd' } }] },
  });
  assertRanking(r.points, want, { limit: 7, label: 'filtered query using img' });
});

test('query with prefetch + rrf on the 10,000-point collection, with a filter', async () => {
  const all = points('main');
  const [a, b] = [queries[1], queries[2]];
  const la = bruteForce(all, a, 'Cosine', { filter: F2.pred }).slice(0, 30);
  const lb = bruteForce(all, b, 'Cosine', { filter: F2.pred }).slice(0, 30);
  const r = await client.query('main', {
    prefetch: [
      { query: a, limit: 30, filter: F2.json },
      { query: b, limit: 30, filter: F2.json },
    ],
    query: { fusion: 'rrf' },
    limit: 15,
  });
  assertRanking(r.points, rrf([la, lb]), { limit: 15, rel: 1e-5, label: 'main rrf' });
});

test('recommend (legacy and query API) uses the average-vector strategy and excludes examples', async () => {
  const stored = new Map(points('main').map((p) => [p.id, p.vector]));
  const pos = [11, 222, 3333];
  const neg = [44];
  const q = recommendQuery(pos, neg, stored);
  const exclude = new Set([...pos, ...neg]);
  const want = bruteForce(points('main'), q, 'Cosine', { exclude });
  const got = await client.recommend('main', { positive: pos, negative: neg, limit: 10, params: { exact: true } });
  assertRanking(got, want, { limit: 10, label: 'recommend' });

  const wantF = bruteForce(points('main'), q, 'Cosine', { exclude, filter: F1.pred });
  const gotF = await client.recommend('main', { positive: pos, negative: neg, limit: 10, filter: F1.json });
  assertRanking(gotF, wantF, { limit: 10, label: 'recommend + filter' });

  const qr = await client.query('main', { query: { recommend: { positive: pos, negative: neg } }, limit: 10 });
  assertRanking(qr.points, want, { limit: 10, label: 'query recommend' });

  // Positive only, on a named vector.
  const storedImg = new Map(points('multi').map((p) => [p.id, p.vector.img]));
  const qi = recommendQuery([5, UUIDS[1]], [], storedImg);
  const wantImg = bruteForce(namedPoints('img'), qi, 'Euclid', { exclude: new Set([5, UUIDS[1]]) });
  const gi = await client.recommend('multi', { positive: [5, UUIDS[1]], using: 'img', limit: 6 });
  assertRanking(gi, wantImg, { limit: 6, label: 'recommend using img' });
});

test('searchBatch and queryBatch', async () => {
  const all = points('main');
  const sb = await client.searchBatch('main', {
    searches: [
      { vector: queries[3], limit: 5 },
      { vector: queries[4], limit: 5, filter: F1.json },
      { vector: queries[5], limit: 4, offset: 3 },
    ],
  });
  assert.equal(sb.length, 3);
  assertRanking(sb[0], bruteForce(all, queries[3], 'Cosine'), { limit: 5, label: 'searchBatch[0]' });
  assertRanking(sb[1], bruteForce(all, queries[4], 'Cosine', { filter: F1.pred }), { limit: 5, label: 'searchBatch[1]' });
  assertRanking(sb[2], bruteForce(all, queries[5], 'Cosine'), { limit: 4, offset: 3, label: 'searchBatch[2]' });

  const qb = await client.queryBatch('main', {
    searches: [
      { query: queries[6], limit: 5, filter: F2.json },
      { query: queries[7], limit: 8 },
    ],
  });
  assert.equal(qb.length, 2);
  assertRanking(qb[0].points, bruteForce(all, queries[6], 'Cosine', { filter: F2.pred }), { limit: 5, label: 'queryBatch[0]' });
  assertRanking(qb[1].points, bruteForce(all, queries[7], 'Cosine'), { limit: 8, label: 'queryBatch[1]' });
});

test('group search (search groups and query groups)', async () => {
  const all = points('main');
  const groupOf = (id) => model.main.get(id).payload.group;
  const q = queries[2];
  const want = groupsOracle(bruteForce(all, q, 'Cosine'), groupOf, 4, 3);
  const sg = await client.searchPointGroups('main', { vector: q, group_by: 'group', limit: 4, group_size: 3 });
  assertGroups(sg.groups, want, 'searchPointGroups');

  const wantF = groupsOracle(bruteForce(all, q, 'Cosine', { filter: F3.pred }), groupOf, 2, 2);
  const qg = await client.queryGroups('main', { query: q, group_by: 'group', limit: 2, group_size: 2, filter: F3.json });
  assertGroups(qg.groups, wantF, 'queryGroups + filter');
});

test('scroll through all pages: every id exactly once, in id order', async () => {
  const seen = [];
  let offset;
  let pages = 0;
  for (;;) {
    const r = await client.scroll('main', { limit: 777, offset, with_payload: false, with_vector: false });
    assert.ok(r.points.length <= 777);
    seen.push(...r.points.map((p) => p.id));
    pages++;
    if (r.next_page_offset === null || r.next_page_offset === undefined) break;
    assert.ok(pages < 100, 'scroll does not end');
    offset = r.next_page_offset;
  }
  assert.equal(pages, Math.ceil(N / 777));
  assert.equal(seen.length, N);
  assert.equal(new Set(seen).size, N, 'an id was returned twice');
  assert.deepEqual(seen, [...seen].sort((a, b) => a - b), 'scroll is in id order');
  assert.deepEqual(
    seen,
    Array.from({ length: N }, (_, k) => k + 1),
  );

  // With a filter, all pages together are exactly the matching set.
  const filtered = await scrollAll('main', { filter: F1.json, limit: 100, with_vector: false });
  const want = points('main').filter(F1.pred).map((p) => p.id);
  assert.deepEqual(filtered.map((p) => p.id), want);
  for (const p of filtered) assert.deepEqual(p.payload, model.main.get(p.id).payload);
});

test('count with and without filters', async () => {
  assert.equal((await client.count('main', { exact: true })).count, N);
  for (const f of [F1, F2, F3]) {
    const want = points('main').filter(f.pred).length;
    assert.ok(want > 0 && want < N);
    assert.equal((await client.count('main', { filter: f.json, exact: true })).count, want, JSON.stringify(f.json));
  }
  assert.equal(
    (await client.count('main', { filter: { must: [{ has_id: [1, 2, 3, 999999] }] } })).count,
    3,
  );
});

test('payload indexes and scroll with order_by', async () => {
  for (const [field_name, field_schema] of [
    ['uniq', 'integer'],
    ['price', 'float'],
    ['color', 'keyword'],
    ['flag', 'bool'],
    ['nested.level', 'integer'],
  ]) {
    const r = await client.createPayloadIndex('main', { field_name, field_schema, wait: true });
    assert.ok(['completed', 'acknowledged'].includes(r.status), JSON.stringify(r));
  }
  const info = await client.getCollection('main');
  const schema = info.payload_schema;
  assert.equal(schema.uniq?.data_type, 'integer', JSON.stringify(schema));
  assert.equal(schema.price?.data_type, 'float');
  assert.equal(schema.color?.data_type, 'keyword');
  assert.equal(schema.flag?.data_type, 'bool');
  assert.equal(schema['nested.level']?.data_type, 'integer');

  const byUniq = points('main').sort((a, b) => a.payload.uniq - b.payload.uniq);
  const desc = await client.scroll('main', { limit: 30, order_by: { key: 'uniq', direction: 'desc' } });
  assert.deepEqual(
    desc.points.map((p) => p.id),
    byUniq.slice(-30).reverse().map((p) => p.id),
    'order_by uniq desc',
  );
  const asc = await client.scroll('main', { limit: 25, order_by: { key: 'uniq', direction: 'asc', start_from: 5000 } });
  assert.deepEqual(
    asc.points.map((p) => p.id),
    byUniq.filter((p) => p.payload.uniq >= 5000).slice(0, 25).map((p) => p.id),
    'order_by uniq asc start_from 5000',
  );
  const plain = await client.scroll('main', { limit: 20, order_by: 'uniq', filter: F1.json });
  assert.deepEqual(
    plain.points.map((p) => p.id),
    byUniq.filter(F1.pred).slice(0, 20).map((p) => p.id),
    'order_by "uniq" with filter',
  );
  // Float key: values non-decreasing and equal to the sorted model values.
  const byPrice = await client.scroll('main', { limit: 50, order_by: { key: 'price' }, with_payload: true });
  assert.deepEqual(
    byPrice.points.map((p) => p.payload.price),
    points('main').map((p) => p.payload.price).sort((a, b) => a - b).slice(0, 50),
  );
  // Search with a filter on an indexed field still matches brute force.
  const want = bruteForce(points('main'), queries[0], 'Cosine', { filter: F1.pred });
  assertRanking(await client.search('main', { vector: queries[0], filter: F1.json, limit: 10 }), want, {
    limit: 10,
    label: 'indexed filter',
  });
});

test('payload edits: set, set with nested key, set by filter, overwrite, delete keys, clear', async () => {
  const E = model.edits;
  await client.setPayload('edits', { payload: { extra: 'yes', n: 100 }, points: [1, 2], wait: true });
  for (const id of [1, 2]) Object.assign(E.get(id).payload, { extra: 'yes', n: 100 });
  await assertCollectionEqualsModel('edits');

  await client.setPayload('edits', { payload: { c: 3 }, points: [3], key: 'meta', wait: true });
  E.get(3).payload.meta.c = 3;
  await assertCollectionEqualsModel('edits');

  await client.setPayload('edits', { payload: { isblue: true }, filter: { must: [{ key: 'color', match: { value: 'blue' } }] } });
  for (const p of E.values()) if (p.payload.color === 'blue') p.payload.isblue = true;
  await assertCollectionEqualsModel('edits');

  await client.overwritePayload('edits', { payload: { only: 1 }, points: [4], wait: true });
  E.get(4).payload = { only: 1 };
  await assertCollectionEqualsModel('edits');

  await client.deletePayload('edits', { keys: ['color', 'meta.b'], points: [5], wait: true });
  delete E.get(5).payload.color;
  delete E.get(5).payload.meta.b;
  await assertCollectionEqualsModel('edits');

  await client.clearPayload('edits', { points: [6, 7], wait: true });
  E.get(6).payload = {};
  E.get(7).payload = {};
  await assertCollectionEqualsModel('edits');

  await client.deletePayload('edits', { keys: ['isblue'], filter: { must: [{ key: 'isblue', match: { value: true } }] } });
  for (const p of E.values()) delete p.payload.isblue;
  await assertCollectionEqualsModel('edits');
});

test('updateVectors and deleteVectors (unnamed, named and sparse)', async () => {
  const rnd = prng(0x42);
  const v8 = randVector(rnd, 4);
  await client.updateVectors('edits', { points: [{ id: 8, vector: v8 }], wait: true });
  model.edits.get(8).vector = v8;
  await assertCollectionEqualsModel('edits');

  const img = randVector(rnd, 8);
  const kw = randSparse(rnd);
  await client.updateVectors('multi', {
    points: [
      { id: 2, vector: { img } },
      { id: UUIDS[2], vector: { kw } },
    ],
  });
  model.multi.get(2).vector.img = img;
  model.multi.get(UUIDS[2]).vector.kw = kw;

  await client.deleteVectors('multi', { points: [1, 4], vector: ['txt'], wait: true });
  delete model.multi.get(1).vector.txt;
  delete model.multi.get(4).vector.txt;
  await assertCollectionEqualsModel('multi');

  // A point without txt no longer appears in txt searches.
  const r = await client.query('multi', { query: [1, 1, 1, 1], using: 'txt', limit: 400 });
  const ids = new Set(r.points.map((p) => p.id));
  assert.ok(!ids.has(1) && !ids.has(4), 'deleted txt vectors are not searched');
  assert.equal(ids.size, [...model.multi.values()].filter((p) => p.vector.txt).length);
});

test('delete points by ids and by filter', async () => {
  const r = await client.delete('edits', { points: [9, 10], wait: true });
  assert.equal(r.status, 'completed');
  model.edits.delete(9);
  model.edits.delete(10);
  assert.deepEqual(await client.retrieve('edits', { ids: [9, 10] }), []);
  await assertCollectionEqualsModel('edits');

  await client.delete('edits', { filter: { must: [{ key: 'n', range: { gte: 40 } }] }, wait: true });
  for (const p of [...model.edits.values()]) if (typeof p.payload.n === 'number' && p.payload.n >= 40) model.edits.delete(p.id);
  assert.ok(!model.edits.has(1) && model.edits.has(39) && !model.edits.has(40));
  await assertCollectionEqualsModel('edits');
});

test('batchUpdate applies every operation in order', async () => {
  const rnd = prng(0xba7c);
  const v100 = randVector(rnd, 4);
  const v15 = randVector(rnd, 4);
  const res = await client.batchUpdate('edits', {
    wait: true,
    operations: [
      { upsert: { points: [{ id: 100, vector: v100, payload: { b: 1 } }] } },
      { set_payload: { payload: { batch: true }, points: [100, 11] } },
      { overwrite_payload: { payload: { ow: 1 }, points: [12] } },
      { delete_payload: { keys: ['n'], points: [13] } },
      { clear_payload: { points: [14] } },
      { update_vectors: { points: [{ id: 15, vector: v15 }] } },
      { delete: { points: [16] } },
    ],
  });
  assert.equal(res.length, 7);
  for (const r of res) assert.equal(r.status, 'completed');
  const E = model.edits;
  E.set(100, { id: 100, vector: v100, payload: { b: 1 } });
  E.get(100).payload.batch = true;
  E.get(11).payload.batch = true;
  E.get(12).payload = { ow: 1 };
  delete E.get(13).payload.n;
  E.get(14).payload = {};
  E.get(15).vector = v15;
  E.delete(16);
  await assertCollectionEqualsModel('edits');

  const txt = randVector(rnd, 4);
  const r2 = await client.batchUpdate('multi', {
    operations: [
      { delete_vectors: { points: [5], vector: ['img'] } },
      { update_vectors: { points: [{ id: 6, vector: { txt } }] } },
    ],
  });
  assert.equal(r2.length, 2);
  delete model.multi.get(5).vector.img;
  model.multi.get(6).vector.txt = txt;
  await assertCollectionEqualsModel('multi');
});

test('aliases: create, rename, delete, list, and search through an alias', async () => {
  await client.updateCollectionAliases({
    actions: [
      { create_alias: { collection_name: 'main', alias_name: 'main_alias' } },
      { create_alias: { collection_name: 'multi', alias_name: 'to_delete' } },
      { create_alias: { collection_name: 'edits', alias_name: 'edits_alias' } },
    ],
  });
  const sortA = (a) => [...a].sort((x, y) => cmpId(x.alias_name, y.alias_name));
  assert.deepEqual(sortA((await client.getAliases()).aliases), [
    { alias_name: 'edits_alias', collection_name: 'edits' },
    { alias_name: 'main_alias', collection_name: 'main' },
    { alias_name: 'to_delete', collection_name: 'multi' },
  ]);
  await client.updateCollectionAliases({
    actions: [
      { rename_alias: { old_alias_name: 'main_alias', new_alias_name: 'main_alias2' } },
      { delete_alias: { alias_name: 'to_delete' } },
    ],
  });
  const expected = [
    { alias_name: 'edits_alias', collection_name: 'edits' },
    { alias_name: 'main_alias2', collection_name: 'main' },
  ];
  assert.deepEqual(sortA((await client.getAliases()).aliases), expected);
  assert.deepEqual((await client.getCollectionAliases('main')).aliases, [expected[1]]);
  assert.deepEqual((await client.getCollectionAliases('multi')).aliases, []);

  // Reads and writes through the alias reach the collection; the old name is gone.
  assert.equal((await client.count('main_alias2')).count, N);
  assert.equal((await client.getCollection('main_alias2')).points_count, N);
  await client.setPayload('edits_alias', { payload: { via: 'alias' }, points: [17] });
  model.edits.get(17).payload.via = 'alias';
  await assertCollectionEqualsModel('edits');
  await assert.rejects(client.count('main_alias'), (e) => e.status === 404);

  const want = bruteForce(points('main'), queries[4], 'Cosine', { filter: F3.pred });
  const got = await client.search('main_alias2', { vector: queries[4], filter: F3.json, limit: 10 });
  assertRanking(got, want, { limit: 10, label: 'search through alias' });
});

let aliasesBeforeRestart;
test('restart: everything is still there (points, payloads, vectors, aliases, indexes, config)', async () => {
  aliasesBeforeRestart = (await client.getAliases()).aliases;
  assert.equal(aliasesBeforeRestart.length, 2);
  const info = await srv.stop();
  assert.deepEqual(info, { code: 0, signal: null }, `graceful stop exit status\n${srv.stderr.slice(-2000)}`);
  await srv.start();
  client = newClient();

  assert.deepEqual((await client.getCollections()).collections.map((c) => c.name).sort(), ['edits', 'main', 'multi']);
  const infoMain = await client.getCollection('main');
  assert.equal(infoMain.points_count, N);
  assert.equal(infoMain.config.params.vectors.size, DIM);
  assert.equal(infoMain.config.params.vectors.distance, 'Cosine');
  assert.equal(infoMain.config.hnsw_config.m, 32);
  assert.equal(infoMain.payload_schema.uniq?.data_type, 'integer');
  assert.equal(infoMain.payload_schema.color?.data_type, 'keyword');
  assert.equal(infoMain.payload_schema['nested.level']?.data_type, 'integer');
  const infoMulti = await client.getCollection('multi');
  assert.equal(infoMulti.config.params.vectors.img.distance, 'Euclid');
  assert.ok('kw' in (infoMulti.config.params.sparse_vectors ?? {}), 'sparse_vectors survive restart');

  for (const name of ['main', 'multi', 'edits']) await assertCollectionEqualsModel(name);

  const sortA = (a) => [...a].sort((x, y) => cmpId(x.alias_name, y.alias_name));
  assert.deepEqual(sortA((await client.getAliases()).aliases), sortA(aliasesBeforeRestart));

  const desc = await client.scroll('main', { limit: 5, order_by: { key: 'uniq', direction: 'desc' } });
  assert.deepEqual(
    desc.points.map((p) => p.id),
    points('main').sort((a, b) => b.payload.uniq - a.payload.uniq).slice(0, 5).map((p) => p.id),
  );
  assert.equal((await client.count('main', { filter: F1.json })).count, points('main').filter(F1.pred).length);
});

test('after restart: filtered, named and sparse search still match brute force', async () => {
  const got = await client.search('main_alias2', { vector: queries[1], limit: 10, filter: F2.json });
  assertRanking(got, bruteForce(points('main'), queries[1], 'Cosine', { filter: F2.pred }), { limit: 10, label: 'main after restart' });
  const qi = [0.5, -0.25, 0, 1, 0.125, -1, 0.75, 0.5];
  const r = await client.query('multi', { query: qi, using: 'img', limit: 10 });
  assertRanking(r.points, bruteForce(namedPoints('img'), qi, 'Euclid'), { limit: 10, label: 'multi img after restart' });
  const qs = { indices: [1, 7, 19, 33, 48], values: [1, 0.5, 2, 1.5, 0.25] };
  const wantSparse = points('multi')
    .filter((p) => p.vector.kw)
    .map((p) => ({ id: p.id, score: sparseDot(qs, p.vector.kw) }))
    .filter((p) => p.score !== null)
    .sort((a, b) => b.score - a.score || cmpId(a.id, b.id));
  const s = await client.query('multi', { query: qs, using: 'kw', limit: 10 });
  assertRanking(s.points, wantSparse, { limit: 10, label: 'sparse after restart' });
});

test('deleteCollection: true, then gone (with its aliases); missing -> false', async () => {
  assert.equal(await client.deleteCollection('multi'), true);
  assert.deepEqual(await client.collectionExists('multi'), { exists: false });
  assert.equal(await client.deleteCollection('multi'), false);
  assert.equal(await client.deleteCollection('edits'), true);
  assert.deepEqual(
    (await client.getAliases()).aliases,
    [{ alias_name: 'main_alias2', collection_name: 'main' }],
    'aliases of a deleted collection are removed',
  );
  assert.deepEqual((await client.getCollections()).collections.map((c) => c.name), ['main']);
  // A new collection with a deleted one's name starts empty.
  await client.createCollection('edits', { vectors: { size: 4, distance: 'Dot' } });
  assert.equal((await client.count('edits')).count, 0);
  assert.equal(await client.deleteCollection('edits'), true);
});
