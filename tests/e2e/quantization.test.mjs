// Scalar int8 and binary quantization through the API (docs/COMPATIBILITY.md "Quantization"):
// quantization_config on create and PATCH (collection and named vector), kept across a restart;
// search params quantization {ignore, rescore, oversampling}; every bad value refused with a 400
// naming it, and nothing changed.
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

// Seeded points on the unit sphere (Cosine), spread so nearest neighbours are well defined.
function points(n, dim, seed) {
  let s = seed >>> 0;
  const rnd = () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 4294967296 - 0.5;
  };
  const out = [];
  for (let i = 0; i < n; i++) out.push({ id: i + 1, vector: Array.from({ length: dim }, rnd), payload: { i } });
  return out;
}

const dot = (a, b) => a.reduce((acc, x, i) => acc + x * b[i], 0);
const norm = (a) => {
  const l = Math.sqrt(dot(a, a));
  return a.map((x) => x / l);
};


test('create with quantization_config, search with quantization params; the graph answers like the floats', async () => {
  const dim = 32;
  await srv.ok('PUT', '/collections/q8', {
    vectors: { size: dim, distance: 'Cosine' },
    hnsw_config: { full_scan_threshold: 0 },
    quantization_config: { scalar: { type: 'int8', quantile: 0.99, always_ram: true } },
  });
  const pts = points(600, dim, 7);
  for (let i = 0; i < pts.length; i += 200) await srv.ok('PUT', '/collections/q8/points?wait=true', { points: pts.slice(i, i + 200) });
  const info = await srv.waitGreen('q8');
  assert.deepEqual(info.config.quantization_config, { scalar: { type: 'int8', quantile: 0.99, always_ram: true } });

  const queries = points(20, dim, 99).map((p) => p.vector);
  let hits = 0;
  let approx = 0;
  for (const q of queries) {
    const nq = norm(q);
    const truth = pts.map((p) => ({ id: p.id, s: dot(nq, norm(p.vector)) })).sort((a, b) => b.s - a.s).slice(0, 10);
    const res = await srv.ok('POST', '/collections/q8/points/search', {
      vector: q, limit: 10, params: { hnsw_ef: 64, quantization: { rescore: true, oversampling: 2.0 } },
    });
    assert.equal(res.length, 10);
    const want = new Set(truth.map((t) => t.id));
    hits += res.filter((h) => want.has(h.id)).length;
    // rescored: every score is the float cosine of that point
    for (const h of res) {
      const p = pts[h.id - 1];
      assert.ok(Math.abs(h.score - dot(nq, norm(p.vector))) < 1e-4, `score of ${h.id}`);
    }
    // without rescoring the scores are the approximate ones, close to the float ones
    const raw = await srv.ok('POST', '/collections/q8/points/search', {
      vector: q, limit: 10, params: { hnsw_ef: 64, quantization: { rescore: false } },
    });
    assert.equal(raw.length, 10);
    for (const h of raw) {
      const exact = dot(nq, norm(pts[h.id - 1].vector));
      assert.ok(Math.abs(h.score - exact) < 0.05, `approximate score of ${h.id}`);
      if (Math.abs(h.score - exact) > 1e-6) approx++;
    }
    // ignore: the float walk, exact scores too
    const ign = await srv.ok('POST', '/collections/q8/points/query', {
      query: q, limit: 10, params: { quantization: { ignore: true } },
    });
    assert.equal(ign.points.length, 10);
  }
  const recall = hits / (queries.length * 10);
  assert.ok(recall >= 0.9, `recall@10 ${recall}`);
  assert.ok(approx > 100, `scores from the int8 codes: ${approx} of 200 differ from the float ones`);
});

test('bad quantization values are refused with a 400 naming them, nothing created', async () => {
  const bad = [
    [{ scalar: { type: 'int4' } }, /quantization_config\.scalar\.type/],
    [{ scalar: { type: 'int8', quantile: 0.2 } }, /quantization_config\.scalar\.quantile/],
    [{ scalar: { type: 'int8', quantile: 'x' } }, /quantization_config\.scalar\.quantile/],
    [{ scalar: { type: 'int8', always_ram: 1 } }, /quantization_config\.scalar\.always_ram/],
    [{ scalar: { type: 'int8', memory: 'cold' } }, /quantization_config\.scalar\.memory/],
    [{ scalar: { type: 'int8', bits: 4 } }, /quantization_config\.scalar/],
    [{ binary: { always_ram: 1 } }, /quantization_config\.binary\.always_ram/],
    [{ binary: { encoding: 'two_bits' } }, /quantization_config\.binary\.encoding/],
    [{ binary: { encoding: 'one_and_half_bits' } }, /quantization_config\.binary\.encoding/],
    [{ binary: { query_encoding: 'scalar8bits' } }, /quantization_config\.binary\.query_encoding/],
    [{ binary: { memory: 'cold' } }, /quantization_config\.binary\.memory/],
    [{ binary: { bits: 1 } }, /quantization_config\.binary/],
    [{ binary: true }, /quantization_config\.binary/],
    [{ binary: {}, scalar: { type: 'int8' } }, /quantization_config/],
    [{ product: { compression: 'x16' } }, /quantization_config\.product/],
    ['Disabled', /quantization_config/],
    [{}, /quantization_config/],
  ];
  for (const [q, re] of bad) {
    const r = await srv.request('PUT', '/collections/qbad', { vectors: { size: 4, distance: 'Dot' }, quantization_config: q });
    assert.equal(r.status, 400, JSON.stringify(q));
    assert.match(r.json.status.error, re);
  }
  const r = await srv.request('PUT', '/collections/qbad', { vectors: { v: { size: 4, distance: 'Dot', quantization_config: { scalar: { type: 'uint8' } } } } });
  assert.equal(r.status, 400);
  assert.match(r.json.status.error, /vectors\.v\.quantization_config\.scalar\.type/);
  assert.equal((await srv.request('GET', '/collections/qbad')).status, 404);
  // search params
  await srv.ok('PUT', '/collections/qp', { vectors: { size: 4, distance: 'Dot' }, quantization_config: { scalar: { type: 'int8' } } });
  const badParams = [
    [{ oversampling: 0.5 }, 422, /quantization\.oversampling/],
    [{ oversampling: 'x' }, 400, /quantization\.oversampling/],
    [{ rescore: 'yes' }, 400, /quantization\.rescore/],
    [{ ignore: 1 }, 400, /quantization\.ignore/],
    [{ extra: 1 }, 400, /extra/],
  ];
  for (const [qp, status, re] of badParams) {
    const s = await srv.request('POST', '/collections/qp/points/search', { vector: [1, 0, 0, 0], limit: 1, params: { quantization: qp } });
    assert.equal(s.status, status, JSON.stringify(qp));
    assert.match(s.json.status.error, re);
  }
});

test('PATCH sets, replaces and disables quantization (collection and named vector); kept across a restart', async () => {
  await srv.ok('PUT', '/collections/qu', { vectors: { a: { size: 8, distance: 'Euclid' }, b: { size: 8, distance: 'Dot' } }, hnsw_config: { full_scan_threshold: 0 } });
  const pts = points(300, 8, 3).map((p) => ({ id: p.id, vector: { a: p.vector, b: p.vector } }));
  await srv.ok('PUT', '/collections/qu/points?wait=true', { points: pts });
  await srv.ok('PATCH', '/collections/qu', {
    quantization_config: { scalar: { type: 'int8', quantile: 0.99, always_ram: true } },
    vectors: { a: { quantization_config: { scalar: { type: 'int8', quantile: 0.8 } } } },
  });
  let cfg = (await srv.ok('GET', '/collections/qu')).config;
  assert.deepEqual(cfg.quantization_config, { scalar: { type: 'int8', quantile: 0.99, always_ram: true } });
  assert.deepEqual(cfg.params.vectors.a.quantization_config, { scalar: { type: 'int8', quantile: 0.8 } });
  // a refused PATCH changes nothing
  const r = await srv.request('PATCH', '/collections/qu', { vectors: { a: { quantization_config: { binary: { encoding: 'two_bits' } } } } });
  assert.equal(r.status, 400);
  assert.match(r.json.status.error, /vectors\.a\.quantization_config\.binary\.encoding/);
  cfg = (await srv.ok('GET', '/collections/qu')).config;
  assert.deepEqual(cfg.params.vectors.a.quantization_config, { scalar: { type: 'int8', quantile: 0.8 } });

  const q = pts[5].vector.a;
  const search = async (using, quantization) =>
    srv.ok('POST', '/collections/qu/points/query', { query: q, using, limit: 5, params: { hnsw_ef: 64, quantization } });
  const before = await search('a', { rescore: true, oversampling: 3 });
  assert.equal(before.points[0].id, 6); // the point itself, distance 0 after rescoring
  assert.equal(before.points[0].score, 0);

  await srv.restart();
  await srv.waitGreen('qu');
  cfg = (await srv.ok('GET', '/collections/qu')).config;
  assert.deepEqual(cfg.params.vectors.a.quantization_config, { scalar: { type: 'int8', quantile: 0.8 } });
  const afterRestart = await search('a', { rescore: true, oversampling: 3 });
  assert.deepEqual(afterRestart.points.map((p) => p.id), before.points.map((p) => p.id));
  const l2 = (a, b) => Math.sqrt(a.reduce((acc, x, i) => acc + (x - b[i]) ** 2, 0));
  const offBy = (res) => res.points.filter((p) => Math.abs(p.score - l2(q, pts[p.id - 1].vector.a)) > 1e-5).length;
  const unrescored = await search('a', { rescore: false });
  assert.equal(unrescored.points.length, 5);
  assert.ok(offBy(unrescored) >= 3, 'codes rebuilt after the restart give approximate scores');

  // Disabled removes the vector's own setting (it then follows the collection's), and the
  // collection's; a full replacement does not merge methods
  await srv.ok('PATCH', '/collections/qu', { vectors: { a: { quantization_config: 'Disabled' } }, quantization_config: 'Disabled' });
  cfg = (await srv.ok('GET', '/collections/qu')).config;
  assert.equal(cfg.params.vectors.a.quantization_config, undefined);
  assert.equal(cfg.quantization_config, null);
  const plain = await search('a', { rescore: false });
  assert.equal(plain.points[0].id, 6);
  assert.equal(offBy(plain), 0); // float walk: exact scores even with rescore off
});

test('binary quantization: create, search with rescoring, approximate scores, PATCH, kept across a restart', async () => {
  const dim = 128;
  await srv.ok('PUT', '/collections/qb', {
    vectors: { size: dim, distance: 'Cosine' },
    hnsw_config: { full_scan_threshold: 0 },
    quantization_config: { binary: { always_ram: true } },
  });
  const pts = points(800, dim, 11);
  for (let i = 0; i < pts.length; i += 200) await srv.ok('PUT', '/collections/qb/points?wait=true', { points: pts.slice(i, i + 200) });
  let info = await srv.waitGreen('qb');
  assert.deepEqual(info.config.quantization_config, { binary: { always_ram: true } });
  const queries = points(20, dim, 5).map((p) => p.vector);
  const run = async (quantization) => {
    const out = [];
    for (const q of queries) {
      out.push(await srv.ok('POST', '/collections/qb/points/search', { vector: q, limit: 10, params: { hnsw_ef: 64, quantization } }));
    }
    return out;
  };
  const recallOf = (results) => {
    let hits = 0;
    results.forEach((res, i) => {
      const nq = norm(queries[i]);
      const truth = new Set(pts.map((p) => ({ id: p.id, s: dot(nq, norm(p.vector)) })).sort((a, b) => b.s - a.s).slice(0, 10).map((t) => t.id));
      hits += res.filter((h) => truth.has(h.id)).length;
    });
    return hits / (results.length * 10);
  };
  // uniform random points are the hard case for one bit a coordinate: a wide rescoring is needed
  const rescored = await run({ rescore: true, oversampling: 30 });
  const r8 = recallOf(rescored);
  assert.ok(r8 >= 0.95, `recall@10 with oversampling 30: ${r8}`);
  rescored.forEach((res, i) => {
    const nq = norm(queries[i]);
    for (const h of res) assert.ok(Math.abs(h.score - dot(nq, norm(pts[h.id - 1].vector))) < 1e-4, `rescored score of ${h.id}`);
  });
  // no rescoring: the scores are cosines of the sign vectors, multiples of 2 / dim
  const raw = await run({ rescore: false });
  assert.ok(recallOf(raw) < r8, 'rescoring helps');
  for (const res of raw) {
    for (const h of res) {
      const k = ((1 - h.score) * dim) / 2;
      assert.ok(Math.abs(k - Math.round(k)) < 1e-3, `score ${h.score} is 1 - 2 * hamming / dim`);
    }
  }
  // ignore: the float walk
  const ign = await run({ ignore: true });
  assert.ok(recallOf(ign) >= 0.9);

  await srv.restart();
  info = await srv.waitGreen('qb');
  assert.deepEqual(info.config.quantization_config, { binary: { always_ram: true } });
  const rawAfter = await run({ rescore: false });
  assert.deepEqual(rawAfter.map((r) => r.map((h) => [h.id, h.score])), raw.map((r) => r.map((h) => [h.id, h.score])), 'codes rebuilt after the restart');

  // PATCH: binary to int8 and back; the approximate scores follow the method
  await srv.ok('PATCH', '/collections/qb', { quantization_config: { scalar: { type: 'int8', quantile: 0.99 } } });
  const int8 = await run({ rescore: false });
  const offGrid = int8.flat().filter((h) => { const k = ((1 - h.score) * dim) / 2; return Math.abs(k - Math.round(k)) > 1e-3; }).length;
  assert.ok(offGrid > 50, `int8 scores are not on the binary grid (${offGrid})`);
  await srv.ok('PATCH', '/collections/qb', { quantization_config: { binary: { encoding: 'one_bit', query_encoding: 'default', memory: 'pinned' } } });
  assert.deepEqual((await srv.ok('GET', '/collections/qb')).config.quantization_config, { binary: { encoding: 'one_bit', query_encoding: 'default', memory: 'pinned' } });
  const back = await run({ rescore: false });
  assert.deepEqual(back.map((r) => r.map((h) => h.id)), raw.map((r) => r.map((h) => h.id)));
  // a named vector with its own binary setting
  await srv.ok('PUT', '/collections/qbn', { vectors: { e: { size: 8, distance: 'Euclid', quantization_config: { binary: {} } } } });
  assert.deepEqual((await srv.ok('GET', '/collections/qbn')).config.params.vectors.e.quantization_config, { binary: {} });
});

test('below full_scan_threshold (no graph) a quantized search scans the codes and rescores the best', async () => {
  const dim = 64;
  await srv.ok('PUT', '/collections/qbs', { vectors: { size: dim, distance: 'Cosine' }, quantization_config: { binary: {} } });
  const pts = points(300, dim, 21);
  await srv.ok('PUT', '/collections/qbs/points?wait=true', { points: pts });
  const q = points(1, dim, 77)[0].vector;
  const nq = norm(q);
  const truth = pts.map((p) => ({ id: p.id, s: dot(nq, norm(p.vector)) })).sort((a, b) => b.s - a.s);
  const onGrid = (s) => { const k = ((1 - s) * dim) / 2; return Math.abs(k - Math.round(k)) < 1e-3; };
  // rescore off: the scores come from the codes (cosines of the sign vectors)
  const raw = await srv.ok('POST', '/collections/qbs/points/search', { vector: q, limit: 10, params: { quantization: { rescore: false } } });
  assert.equal(raw.length, 10);
  assert.ok(raw.every((h) => onGrid(h.score)), JSON.stringify(raw.map((h) => h.score)));
  // rescored from the floats over a wide oversampling: the exact top 10 with exact scores
  const res = await srv.ok('POST', '/collections/qbs/points/search', { vector: q, limit: 10, params: { quantization: { oversampling: 30 } } });
  assert.deepEqual(res.map((h) => h.id), truth.slice(0, 10).map((t) => t.id));
  res.forEach((h, i) => assert.ok(Math.abs(h.score - truth[i].s) < 1e-4));
  // exact and ignore: the float scan
  for (const params of [{ exact: true }, { quantization: { ignore: true, rescore: false } }]) {
    const ex = await srv.ok('POST', '/collections/qbs/points/search', { vector: q, limit: 10, params });
    assert.deepEqual(ex.map((h) => h.id), truth.slice(0, 10).map((t) => t.id));
  }
  // a filter is applied before scoring
  const even = await srv.ok('POST', '/collections/qbs/points/search', {
    vector: q, limit: 5, filter: { must: [{ key: 'i', range: { lt: 150 } }] }, params: { quantization: { oversampling: 30 } },
  });
  assert.deepEqual(even.map((h) => h.id), truth.filter((t) => t.id <= 150).slice(0, 5).map((t) => t.id));
});

test('int8 scan with the sign-sketch prefilter (384-d Cosine): writes honoured, the same answers after a restart', async () => {
  // 400 points: few enough that the codes' range is trained on every value, enough that the
  // sketch (at least 64 candidates, used when that drops 3/4 of the rows: docs/ARCHITECTURE.md
  // "Small collections") runs: 64 of the 343 rows left after the deletes are kept
  const dim = 384;
  await srv.ok('PUT', '/collections/qsk', { vectors: { size: dim, distance: 'Cosine' }, quantization_config: { scalar: { type: 'int8', quantile: 0.99 } } });
  const pts = points(400, dim, 31);
  await srv.ok('PUT', '/collections/qsk/points?wait=true', { points: pts });
  // overwrite every 5th point with its negation, delete every 7th
  const neg = (v) => v.map((x) => -x);
  const live = new Map(pts.map((p) => [p.id, p.vector]));
  const over = pts.filter((p) => p.id % 5 === 0).map((p) => ({ id: p.id, vector: neg(p.vector), payload: p.payload }));
  await srv.ok('PUT', '/collections/qsk/points?wait=true', { points: over });
  for (const p of over) live.set(p.id, p.vector);
  const gone = pts.filter((p) => p.id % 7 === 0 && p.id % 5 !== 0).map((p) => p.id);
  await srv.ok('POST', '/collections/qsk/points/delete?wait=true', { points: gone });
  for (const id of gone) live.delete(id);
  // retrained over the final points, so the restart (which trains again) gives the same codes
  await srv.ok('PATCH', '/collections/qsk', { quantization_config: { scalar: { type: 'int8', quantile: 0.99 } } });
  const queries = points(30, dim, 41).map((p) => p.vector);
  const run = async (quantization) => {
    const out = [];
    for (const q of queries) out.push(await srv.ok('POST', '/collections/qsk/points/search', { vector: q, limit: 5, params: { quantization } }));
    return out;
  };
  const truthOf = (q) => {
    const nq = norm(q);
    return [...live].map(([id, v]) => ({ id, s: dot(nq, norm(v)) })).sort((a, b) => b.s - a.s).slice(0, 5);
  };
  const rescored = await run({ oversampling: 1.5 });
  let hits = 0;
  rescored.forEach((res, i) => {
    const truth = truthOf(queries[i]);
    const ids = new Set(truth.map((t) => t.id));
    hits += res.filter((h) => ids.has(h.id)).length;
    for (const h of res) {
      assert.ok(live.has(h.id), `deleted point ${h.id} returned`);
      assert.ok(Math.abs(h.score - dot(norm(queries[i]), norm(live.get(h.id)))) < 1e-4, `rescored score of ${h.id}`);
    }
  });
  // uniform random 384-d points are nearly equidistant, the hardest case for a sign sketch; the
  // recall bar on real embeddings is unit.test_quant's (MiniLM); here a broken sketch gives < 0.5
  assert.ok(hits / (5 * queries.length) >= 0.85, `recall@5 ${hits / (5 * queries.length)}`);
  // an overwritten point is found by its new vector
  const top = await srv.ok('POST', '/collections/qsk/points/search', { vector: over[3].vector, limit: 1, params: { quantization: { oversampling: 1.5 } } });
  assert.equal(top[0].id, over[3].id);
  const raw = await run({ rescore: false });
  await srv.restart();
  await srv.waitGreen('qsk');
  assert.deepEqual(await run({ rescore: false }), raw, 'approximate answers (ids and scores) equal after the restart');
  assert.deepEqual(await run({ oversampling: 1.5 }), rescored);
});
