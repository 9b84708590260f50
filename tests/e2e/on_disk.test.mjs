// on_disk dense vectors (docs/ARCHITECTURE.md "On-disk vectors"): rows read from the LMDB map,
// not kept in RAM. A collection with on_disk: true answers exactly like the same collection in
// RAM (exact search, graph search, quantized search with rescoring, lookups by id), before and
// after writes and deletes and across a restart; bad combinations are refused with a 400 naming
// the setting and change nothing.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer } from './lib/server.mjs';

let srv;
before(async () => {
  srv = await startServer();
});
after(async () => {
  await srv?.cleanup(); // fails on a sanitizer report (ASan / TSan builds via AEGIS_BIN)
});

function rng(seed) {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 4294967296 - 0.5;
  };
}
// dim 20: not a multiple of 16, so the padded row read from the map must have a zero tail.
const DIM = 20;
function points(n, seed, from = 1) {
  const r = rng(seed);
  const out = [];
  for (let i = 0; i < n; i++) out.push({ id: from + i, vector: { a: Array.from({ length: DIM }, r), b: Array.from({ length: 8 }, r) }, payload: { i: from + i } });
  return out;
}


const spec = (onDisk, quant) => ({
  vectors: {
    a: { size: DIM, distance: 'Euclid', on_disk: onDisk, ...(quant ? { quantization_config: { scalar: { type: 'int8' } } } : {}) },
    b: { size: 8, distance: 'Cosine', on_disk: onDisk },
  },
  hnsw_config: { full_scan_threshold: 0 },
});

const names = ['ram', 'disk', 'diskq'];
const queries = Array.from({ length: 15 }, (_, i) => Array.from({ length: DIM }, rng(1000 + i)));

async function search(name, q, params) {
  return srv.ok('POST', `/collections/${name}/points/search`, { vector: { name: 'a', vector: q }, limit: 10, params });
}

// Every collection answers exact searches, rescored quantized searches and by-id lookups with the
// in-RAM collection's ids and scores.
async function compareAll(label) {
  let hit = 0;
  let total = 0;
  for (const q of queries) {
    const want = await search('ram', q, { exact: true });
    for (const n of ['disk', 'diskq']) {
      const got = await search(n, q, { exact: true });
      assert.deepEqual(got.map((h) => h.id), want.map((h) => h.id), `${label}: exact ${n}`);
      got.forEach((h, i) => assert.ok(Math.abs(h.score - want[i].score) < 1e-4, `${label}: exact score ${n}`));
    }
    // graph walks: on the map (disk), on the codes with rescoring from the map (diskq)
    for (const n of ['disk', 'diskq']) {
      const g = await search(n, q, { hnsw_ef: 64, quantization: { rescore: true, oversampling: 2 } });
      const ids = new Set(want.map((h) => h.id));
      hit += g.filter((h) => ids.has(h.id)).length;
      total += want.length;
      // every returned score is the float distance of that point
      const exactById = await srv.ok('POST', `/collections/ram/points/search`, {
        vector: { name: 'a', vector: q }, limit: g.length, filter: { must: [{ has_id: g.map((h) => h.id) }] }, params: { exact: true },
      });
      const m = new Map(exactById.map((h) => [h.id, h.score]));
      for (const h of g) assert.ok(Math.abs(h.score - m.get(h.id)) < 1e-4, `${label}: rescored score ${n} id ${h.id}`);
    }
  }
  assert.ok(hit / total >= 0.9, `${label}: graph recall ${hit / total}`);
  // lookups by id: the stored vector, and a recommendation built from stored vectors
  const ids = [3, 77, 150];
  const want = await srv.ok('POST', '/collections/ram/points', { ids, with_vector: true });
  for (const n of ['disk', 'diskq']) {
    const got = await srv.ok('POST', `/collections/${n}/points`, { ids, with_vector: true });
    assert.deepEqual(got, want, `${label}: retrieve ${n}`);
    const rq = { query: { recommend: { positive: [3, 77], negative: [150] } }, using: 'b', limit: 5, params: { exact: true } };
    const r1 = await srv.ok('POST', '/collections/ram/points/query', rq);
    const r2 = await srv.ok('POST', `/collections/${n}/points/query`, rq);
    assert.deepEqual(r2.points.map((p) => p.id), r1.points.map((p) => p.id), `${label}: recommend ${n}`);
  }
}

test('on_disk collections answer like in-RAM ones, after writes and deletes and across a restart', async () => {
  await srv.ok('PUT', '/collections/ram', spec(false, false));
  await srv.ok('PUT', '/collections/disk', spec(true, false));
  await srv.ok('PUT', '/collections/diskq', spec(true, true));
  const pts = points(400, 7);
  for (const n of names) {
    for (let i = 0; i < pts.length; i += 100) await srv.ok('PUT', `/collections/${n}/points?wait=true`, { points: pts.slice(i, i + 100) });
  }
  for (const n of names) await srv.waitGreen(n);
  const info = await srv.ok('GET', '/collections/disk');
  assert.equal(info.config.params.vectors.a.on_disk, true);
  assert.equal(info.points_count, 400);
  await compareAll('fresh');

  // replace some vectors, delete some points, add some
  const upd = points(50, 99, 101);
  for (const n of names) {
    await srv.ok('PUT', `/collections/${n}/points?wait=true`, { points: upd });
    await srv.ok('POST', `/collections/${n}/points/delete?wait=true`, { points: [5, 6, 7, 200, 201] });
    await srv.ok('PUT', `/collections/${n}/points?wait=true`, { points: points(30, 5, 401) });
  }
  for (const n of names) await srv.waitGreen(n);
  await compareAll('after writes');

  await srv.restart();
  for (const n of names) await srv.waitGreen(n);
  const again = await srv.ok('GET', '/collections/diskq');
  assert.equal(again.points_count, 425);
  assert.equal(again.config.params.vectors.a.on_disk, true);
  await compareAll('after restart');
});

test('bad on_disk settings are refused with a 400 naming the setting, nothing changed', async () => {
  const bad = [
    [{ vectors: { size: 4, distance: 'Dot', on_disk: 'yes' } }, /vectors\.on_disk: expected a boolean/],
    [{ vectors: { v: { size: 4, distance: 'Dot', on_disk: 1 } } }, /vectors\.v\.on_disk: expected a boolean/],
    [{ vectors: { m: { size: 4, distance: 'Dot', on_disk: true, multivector_config: { comparator: 'max_sim' } } } }, /vectors\.m\.on_disk: not supported for a multivector/],
  ];
  for (const [body, re] of bad) {
    const r = await srv.request('PUT', '/collections/odbad', body);
    assert.equal(r.status, 400, JSON.stringify(body));
    assert.match(r.json.status.error, re);
    assert.equal((await srv.request('GET', '/collections/odbad')).status, 404);
  }
  // where the rows live is fixed at creation: a PATCH that changes it is refused
  await srv.ok('PUT', '/collections/odp', { vectors: { v: { size: 4, distance: 'Dot' } } });
  const r = await srv.request('PATCH', '/collections/odp', { vectors: { v: { on_disk: true } } });
  assert.equal(r.status, 400);
  assert.match(r.json.status.error, /vectors\.v\.on_disk: cannot be changed/);
  const cfg = (await srv.ok('GET', '/collections/odp')).config.params.vectors.v;
  assert.ok(!cfg.on_disk);
  // restating the current value is fine
  await srv.ok('PATCH', '/collections/odp', { vectors: { v: { on_disk: false } } });
  await srv.ok('PUT', '/collections/odq', { vectors: { v: { size: 4, distance: 'Dot', on_disk: true } } });
  await srv.ok('PATCH', '/collections/odq', { vectors: { v: { on_disk: true, hnsw_config: { m: 8 } } } });
});

test('searches racing writes and deletes on an on_disk collection all answer, and it ends like the in-RAM one', async () => {
  await srv.ok('PUT', '/collections/race_ram', spec(false, true));
  await srv.ok('PUT', '/collections/race_disk', spec(true, true));
  const base = points(300, 21);
  for (const n of ['race_ram', 'race_disk']) await srv.ok('PUT', `/collections/${n}/points?wait=true`, { points: base });
  const writes = [];
  for (let r = 0; r < 6; r++) {
    const upd = points(40, 300 + r, 1 + r * 40);
    const del = { points: [r * 40 + 5, r * 40 + 6] };
    writes.push({ points: upd }, del);
  }
  const searches = [];
  let stop = false;
  for (let c = 0; c < 4; c++) {
    searches.push((async () => {
      let i = 0;
      while (!stop) {
        const q = queries[(c + i++) % queries.length];
        const r = await srv.request('POST', '/collections/race_disk/points/search', {
          vector: { name: 'a', vector: q }, limit: 5, params: { hnsw_ef: 32, exact: i % 3 === 0 },
        });
        assert.equal(r.status, 200);
        assert.ok(r.json.result.length <= 5);
      }
    })());
  }
  for (const w of writes) {
    for (const n of ['race_ram', 'race_disk']) {
      if (typeof w.points[0] === 'object') await srv.ok('PUT', `/collections/${n}/points?wait=true`, w);
      else await srv.ok('POST', `/collections/${n}/points/delete?wait=true`, w);
    }
  }
  stop = true;
  await Promise.all(searches);
  for (const q of queries.slice(0, 5)) {
    const want = await srv.ok('POST', '/collections/race_ram/points/search', { vector: { name: 'a', vector: q }, limit: 10, params: { exact: true } });
    const got = await srv.ok('POST', '/collections/race_disk/points/search', { vector: { name: 'a', vector: q }, limit: 10, params: { exact: true } });
    assert.deepEqual(got.map((h) => h.id), want.map((h) => h.id));
  }
});
