// Exact search returns the true top-k: for every distance, 2,000 seeded random points in 16
// dimensions, 30 queries, limit 10, with and without a filter (match + range), compared id by id
// and score by score (1e-4 relative) with a brute-force oracle; plus score_threshold and offset.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer } from './lib/server.mjs';
import { prng, randVector, randInt, normalize, bruteForce, assertRanking, assertVectorClose } from './lib/oracle.mjs';

const DIM = 16;
const N = 2000;
const Q = 30;
const DISTS = ['Cosine', 'Dot', 'Euclid', 'Manhattan'];

let srv;
const data = {}; // distance -> [{id, vector (as stored), payload}]

const FILTER = {
  json: { must: [{ key: 'cat', match: { value: 'c1' } }, { key: 'val', range: { gte: 10, lte: 70 } }] },
  pred: (p) => p.payload.cat === 'c1' && p.payload.val >= 10 && p.payload.val <= 70,
};
const FILTER2 = {
  json: {
    should: [{ key: 'cat', match: { any: ['c2', 'c3'] } }, { key: 'x', range: { lt: -0.5 } }],
    must_not: [{ key: 'val', range: { gt: 90 } }],
  },
  pred: (p) => (['c2', 'c3'].includes(p.payload.cat) || p.payload.x < -0.5) && !(p.payload.val > 90),
};

before(async () => {
  srv = await startServer();
  for (const [di, dist] of DISTS.entries()) {
    const rnd = prng(1000 + di);
    const name = `oracle_${dist.toLowerCase()}`;
    await srv.ok('PUT', `/collections/${name}`, { vectors: { size: DIM, distance: dist } });
    const pts = [];
    for (let i = 1; i <= N; i++) {
      const v = randVector(rnd, DIM);
      pts.push({ id: i, raw: v, payload: { cat: `c${i % 5}`, val: randInt(rnd, 0, 100), x: randVector(rnd, 1)[0] } });
    }
    for (let s = 0; s < N; s += 1000) {
      await srv.ok('PUT', `/collections/${name}/points?wait=true`, {
        points: pts.slice(s, s + 1000).map((p) => ({ id: p.id, vector: p.raw, payload: p.payload })),
      });
    }
    data[dist] = pts.map((p) => ({ id: p.id, payload: p.payload, vector: dist === 'Cosine' ? normalize(p.raw) : p.raw }));
  }
});

after(async () => {
  await srv?.cleanup();
});

for (const [di, dist] of DISTS.entries()) {
  const name = `oracle_${dist.toLowerCase()}`;
  const queries = (() => {
    const rnd = prng(77 + di);
    return Array.from({ length: Q }, () => randVector(rnd, DIM));
  })();

  test(`${dist}: points stored as sent (normalised for Cosine)`, async () => {
    const got = await srv.ok('POST', `/collections/${name}/points`, { ids: [1, 777, 2000], with_vector: true, with_payload: true });
    assert.equal(got.length, 3);
    for (const p of got) {
      const want = data[dist][p.id - 1];
      assertVectorClose(p.vector, want.vector, `${dist} vector ${p.id}`);
      assert.deepEqual(p.payload, want.payload);
    }
  });

  test(`${dist}: ${Q} queries, limit 10, no filter: ids and scores equal brute force`, async () => {
    for (const [qi, q] of queries.entries()) {
      const want = bruteForce(data[dist], q, dist);
      const got = await srv.ok('POST', `/collections/${name}/points/search`, { vector: q, limit: 10, params: { exact: true } });
      assertRanking(got, want, { limit: 10, label: `${dist} search q${qi}` });
      const viaQuery = await srv.ok('POST', `/collections/${name}/points/query`, { query: q, limit: 10, params: { exact: true } });
      assertRanking(viaQuery.points, want, { limit: 10, label: `${dist} query q${qi}` });
    }
  });

  test(`${dist}: ${Q} queries with filters (match + range, should/must_not)`, async () => {
    for (const [qi, q] of queries.entries()) {
      const f = qi % 2 ? FILTER2 : FILTER;
      const want = bruteForce(data[dist], q, dist, { filter: f.pred });
      assert.ok(want.length > 10);
      const got = await srv.ok('POST', `/collections/${name}/points/search`, {
        vector: q,
        limit: 10,
        filter: f.json,
        with_payload: true,
      });
      assertRanking(got, want, { limit: 10, label: `${dist} filtered q${qi}` });
      for (const h of got) assert.ok(f.pred({ payload: h.payload }), `hit ${h.id} does not match the filter`);
      const viaQuery = await srv.ok('POST', `/collections/${name}/points/query`, { query: q, limit: 10, filter: f.json });
      assertRanking(viaQuery.points, want, { limit: 10, label: `${dist} filtered query q${qi}` });
    }
  });

  test(`${dist}: offset pages line up with the oracle`, async () => {
    const q = queries[0];
    const want = bruteForce(data[dist], q, dist);
    for (const offset of [0, 5, 10, 37, 1995]) {
      const got = await srv.ok('POST', `/collections/${name}/points/search`, { vector: q, limit: 10, offset });
      assertRanking(got, want, { limit: 10, offset, label: `${dist} offset ${offset}` });
    }
    const wantF = bruteForce(data[dist], q, dist, { filter: FILTER.pred });
    const got = await srv.ok('POST', `/collections/${name}/points/query`, { query: q, limit: 7, offset: 3, filter: FILTER.json });
    assertRanking(got.points, wantF, { limit: 7, offset: 3, label: `${dist} filtered offset` });
    const beyond = await srv.ok('POST', `/collections/${name}/points/search`, { vector: q, limit: 10, offset: N + 5 });
    assert.deepEqual(beyond, []);
  });

  test(`${dist}: score_threshold keeps exactly the points on the right side of it`, async () => {
    const higher = dist === 'Cosine' || dist === 'Dot';
    for (const qi of [1, 2, 3]) {
      const q = queries[qi];
      const want = bruteForce(data[dist], q, dist);
      // A threshold in the middle of a gap between two oracle scores, so float rounding cannot
      // move a point across it.
      let k = 40;
      while (Math.abs(want[k].score - want[k + 1].score) < 1e-3) k++;
      const threshold = (want[k].score + want[k + 1].score) / 2;
      const got = await srv.ok('POST', `/collections/${name}/points/search`, {
        vector: q,
        limit: 100,
        score_threshold: threshold,
      });
      assert.equal(got.length, k + 1, `${dist} q${qi}: threshold ${threshold} keeps ranks 0..${k}`);
      assertRanking(got, want, { limit: k + 1, label: `${dist} threshold` });
      for (const h of got) assert.ok(higher ? h.score >= threshold : h.score <= threshold, `${dist}: ${h.score} vs ${threshold}`);
      const viaQuery = await srv.ok('POST', `/collections/${name}/points/query`, {
        query: q,
        limit: 100,
        score_threshold: threshold,
      });
      assert.equal(viaQuery.points.length, k + 1, `${dist} query threshold`);
    }
  });
}
