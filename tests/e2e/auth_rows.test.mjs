// Row-level restrictions (issue 3; docs/PERMISSIONS.md "Row filters"): a token whose collection entry carries
// `payload: {"tenant": "acme"}` sees and writes only acme's points, operation by operation.
// Points outside the scope are "not found" (404 or absent), never "forbidden"; writes that would
// create, overwrite or move a point outside the scope are 403; deletes touch only in-scope
// points. Then value_exists revocation. Expected ids are written here, not asked of the server.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { Mismatches, ROOT_KEY, freshAddr, jwt, keyEnv } from './lib/auth.mjs';
import { runAegis, startServer } from './lib/server.mjs';

const COLL = 'rows';
const POINTS = [
  { id: 1, vector: [1, 0, 0, 0], payload: { tenant: 'acme', num: 1, grp: 'a', ref: 5 } },
  { id: 2, vector: [0.9, 0.1, 0, 0], payload: { tenant: 'acme', num: 2, grp: 'a', ref: 8 } },
  { id: 3, vector: [0.5, 0.5, 0, 0], payload: { tenant: 'acme', num: 3, grp: 'b', ref: 3 } },
  { id: 4, vector: [0, 0, 0, 1], payload: { tenant: 'acme', num: 4, grp: 'b', ref: 9 } },
  { id: 5, vector: [0.99, 0, 0, 0.01], payload: { tenant: 'beta', num: 5, grp: 'a' } },
  { id: 6, vector: [0.8, 0, 0.2, 0], payload: { tenant: 'beta', num: 6, grp: 'a' } },
  { id: 7, vector: [0, 1, 0, 0], payload: { tenant: 'beta', num: 7, grp: 'b' } },
  { id: 8, vector: [0.95, 0.05, 0, 0], payload: { tenant: 'gamma', num: 8, grp: 'a' } },
  { id: 9, vector: [0.97, 0, 0, 0.03], payload: { num: 9, grp: 'a' } }, // no tenant at all
  { id: 10, vector: [0.96, 0, 0.04, 0], payload: { tenant: 'ACME', num: 10, grp: 'a' } }, // case differs
];
const ACME = [1, 2, 3, 4];
const ALL = POINTS.map((p) => p.id);
const q = [1, 0, 0, 0];

let srv;
const root = { 'api-key': ROOT_KEY };
const scope = (access) => [{ collection: COLL, access, payload: { tenant: 'acme' } }];
let R; // payload-restricted r
let RW; // payload-restricted rw
let PRW; // payload-restricted prw

async function rebuild() {
  await srv.request('DELETE', `/collections/${COLL}`, undefined, { headers: root });
  await srv.ok('PUT', `/collections/${COLL}`, { vectors: { size: 4, distance: 'Dot' } }, { headers: root });
  await srv.ok('PUT', `/collections/${COLL}/points?wait=true`, { points: POINTS }, { headers: root });
  await srv.ok('PUT', `/collections/${COLL}/index?wait=true`, { field_name: 'tenant', field_schema: 'keyword' }, { headers: root });
  await srv.ok('PUT', `/collections/${COLL}/index?wait=true`, { field_name: 'num', field_schema: 'integer' }, { headers: root });
}

function as(token, method, path, body) {
  return srv.request(method, path, body, { headers: { authorization: `Bearer ${token}` }, localAddress: '127.4.0.1' });
}

async function rootGet(id) {
  const r = await srv.request('GET', `/collections/${COLL}/points/${id}`, undefined, { headers: root });
  return r.status === 200 ? r.json.result : null;
}

async function rootCount() {
  const r = await srv.ok('POST', `/collections/${COLL}/points/count`, { exact: true }, { headers: root });
  return r.count;
}

const sorted = (ids) => [...ids].sort((a, b) => a - b);
const hitIds = (hits) => sorted(hits.map((h) => h.id));

before(async () => {
  srv = await startServer({ insecure: false, env: keyEnv() });
  R = jwt({ access: scope('r') });
  RW = jwt({ access: scope('rw') });
  PRW = jwt({ access: scope('prw') });
  await rebuild();
});

after(async () => {
  await srv?.cleanup();
});

describe('row-level restriction: reads', () => {
  // Each read is checked for both restricted tokens (r and rw): the restriction is the same.
  for (const [label, tok] of [
    ['r', () => R],
    ['rw', () => RW],
  ]) {
    test(`every read operation sees only acme's points (token ${label})`, async () => {
      const t = tok();
      const m = new Mismatches(`reads as payload-restricted ${label}`);
      const P = `/collections/${COLL}/points`;
      const expectIds = async (what, method, path, body, want, pick) => {
        const r = await as(t, method, path, body);
        if (!m.check(r.status === 200, `${what}: expected 200, got ${r.status} ${r.text.slice(0, 200)}`)) return;
        let got;
        try {
          got = sorted(pick(r.json.result));
        } catch (e) {
          m.add(`${what}: unexpected answer shape ${r.text.slice(0, 200)} (${e.message})`);
          return;
        }
        m.check(JSON.stringify(got) === JSON.stringify(sorted(want)), `${what}: expected ids ${JSON.stringify(sorted(want))}, got ${JSON.stringify(got)}`);
      };
      const hits = (res) => res.map((h) => h.id);
      const queryHits = (res) => res.points.map((h) => h.id);
      const groupIds = (res) => res.groups.flatMap((g) => g.hits.map((h) => h.id));
      const beta = { must: [{ key: 'tenant', match: { value: 'beta' } }] };
      const anyTenant = { should: [{ key: 'tenant', match: { any: ['acme', 'beta', 'gamma'] } }, { is_empty: { key: 'tenant' } }] };

      // search
      await expectIds('search', 'POST', `${P}/search`, { vector: q, limit: 100 }, ACME, hits);
      await expectIds('search with a beta filter', 'POST', `${P}/search`, { vector: q, limit: 100, filter: beta }, [], hits);
      await expectIds('search with an everything filter', 'POST', `${P}/search`, { vector: q, limit: 100, filter: anyTenant }, ACME, hits);
      await expectIds('search with has_id on other tenants', 'POST', `${P}/search`, { vector: q, limit: 100, filter: { must: [{ has_id: [5, 6, 8, 9, 10] }] } }, [], hits);
      await expectIds('search with must_not acme', 'POST', `${P}/search`, { vector: q, limit: 100, filter: { must_not: [{ key: 'tenant', match: { value: 'acme' } }] } }, [], hits);
      await expectIds('search, exact', 'POST', `${P}/search`, { vector: q, limit: 100, params: { exact: true } }, ACME, hits);
      await expectIds('search with offset', 'POST', `${P}/search`, { vector: q, limit: 100, offset: 2 }, [3, 4], hits);
      await expectIds('search, top 2', 'POST', `${P}/search`, { vector: q, limit: 2 }, [1, 2], hits);
      await expectIds('search batch', 'POST', `${P}/search/batch`, { searches: [{ vector: q, limit: 100 }, { vector: [0, 1, 0, 0], limit: 100, filter: beta }] }, ACME, (res) => res.flatMap(hits));
      await expectIds('search groups', 'POST', `${P}/search/groups`, { vector: q, group_by: 'tenant', limit: 10, group_size: 10 }, ACME, groupIds);
      {
        const r = await as(t, 'POST', `${P}/search/groups`, { vector: q, group_by: 'tenant', limit: 10, group_size: 10 });
        if (r.status === 200) m.check(JSON.stringify(r.json.result.groups.map((g) => g.id)) === '["acme"]', `search groups: group ids ${JSON.stringify(r.json.result.groups.map((g) => g.id))}`);
      }
      // query: nearest, prefetch, fusion, recommend by id, order_by, groups, batch
      await expectIds('query nearest', 'POST', `${P}/query`, { query: q, limit: 100 }, ACME, queryHits);
      await expectIds('query with prefetch', 'POST', `${P}/query`, { prefetch: [{ query: q, limit: 100 }], query: [0, 1, 0, 0], limit: 100 }, ACME, queryHits);
      await expectIds('query with prefetch filtered to beta', 'POST', `${P}/query`, { prefetch: [{ query: q, limit: 100, filter: beta }], query: q, limit: 100 }, [], queryHits);
      await expectIds(
        'query nested prefetch',
        'POST',
        `${P}/query`,
        { prefetch: [{ prefetch: [{ query: q, limit: 100 }], query: [0, 0, 0, 1], limit: 100 }], query: q, limit: 100 },
        ACME,
        queryHits,
      );
      await expectIds(
        'query fusion rrf over two prefetches',
        'POST',
        `${P}/query`,
        { prefetch: [{ query: q, limit: 100 }, { query: [0, 1, 0, 0], limit: 100 }], query: { fusion: 'rrf' }, limit: 100 },
        ACME,
        queryHits,
      );
      await expectIds('query without a query (scroll-like)', 'POST', `${P}/query`, { limit: 100 }, ACME, queryHits);
      await expectIds('query recommend by id', 'POST', `${P}/query`, { query: { recommend: { positive: [1] } }, limit: 100 }, [2, 3, 4], queryHits);
      await expectIds('query by point id', 'POST', `${P}/query`, { query: 1, limit: 100 }, [2, 3, 4], queryHits);
      await expectIds('query order_by num', 'POST', `${P}/query`, { query: { order_by: 'num' }, limit: 100 }, ACME, queryHits);
      await expectIds('query groups', 'POST', `${P}/query/groups`, { query: q, group_by: 'grp', limit: 10, group_size: 10 }, ACME, groupIds);
      await expectIds('query batch', 'POST', `${P}/query/batch`, { searches: [{ query: q, limit: 100 }, { query: { recommend: { positive: [2] } }, limit: 100 }] }, [1, 2, 3, 4, 1, 3, 4], (res) => res.flatMap(queryHits));
      // with_lookup: group ids name points of the lookup collection; out-of-scope ones are absent.
      for (const [what, path, body] of [
        ['search groups with_lookup', `${P}/search/groups`, { vector: q, group_by: 'ref', limit: 10, group_size: 1, with_lookup: { collection: COLL } }],
        ['query groups with_lookup', `${P}/query/groups`, { query: q, group_by: 'ref', limit: 10, group_size: 1, with_lookup: COLL }],
      ]) {
        const r = await as(t, 'POST', path, body);
        if (!m.check(r.status === 200, `${what}: expected 200, got ${r.status} ${r.text.slice(0, 200)}`)) continue;
        const groups = r.json.result.groups;
        m.check(JSON.stringify(groups.map((g) => g.id).sort()) === JSON.stringify([3, 5, 8, 9]), `${what}: group ids ${JSON.stringify(groups.map((g) => g.id))}`);
        const looked = groups.filter((g) => g.lookup).map((g) => g.lookup.id);
        m.check(JSON.stringify(looked) === '[3]', `${what}: looked-up points ${JSON.stringify(looked)}, expected only [3]`);
      }
      // lookup_from naming the same collection: still under the restriction.
      {
        const r = await as(t, 'POST', `${P}/query`, { query: 5, limit: 10, lookup_from: { collection: COLL } });
        m.check(r.status === 404, `query by id 5 with lookup_from the same collection: expected 404, got ${r.status} ${r.text.slice(0, 160)}`);
        const r2 = await as(t, 'POST', `${P}/recommend`, { positive: [8], limit: 10, lookup_from: { collection: COLL } });
        m.check(r2.status === 404, `recommend [8] with lookup_from the same collection: expected 404, got ${r2.status} ${r2.text.slice(0, 160)}`);
      }
      // recommend
      await expectIds('recommend', 'POST', `${P}/recommend`, { positive: [1], limit: 100 }, [2, 3, 4], hits);
      await expectIds('recommend, best_score', 'POST', `${P}/recommend`, { positive: [1], negative: [4], strategy: 'best_score', limit: 100 }, [2, 3], hits);
      await expectIds('recommend batch', 'POST', `${P}/recommend/batch`, { searches: [{ positive: [1], limit: 100 }] }, [2, 3, 4], (res) => res.flatMap(hits));
      await expectIds('recommend groups', 'POST', `${P}/recommend/groups`, { positive: [1], group_by: 'grp', limit: 10, group_size: 10 }, [2, 3, 4], groupIds);
      // scroll, count, retrieve
      await expectIds('scroll', 'POST', `${P}/scroll`, { limit: 100 }, ACME, (res) => res.points.map((p) => p.id));
      await expectIds('scroll with a beta filter', 'POST', `${P}/scroll`, { limit: 100, filter: beta }, [], (res) => res.points.map((p) => p.id));
      await expectIds('scroll from offset 3', 'POST', `${P}/scroll`, { limit: 100, offset: 3 }, [3, 4], (res) => res.points.map((p) => p.id));
      await expectIds('scroll ordered by num desc', 'POST', `${P}/scroll`, { limit: 100, order_by: { key: 'num', direction: 'desc' } }, ACME, (res) => res.points.map((p) => p.id));
      {
        // Paging never hands out an out-of-scope next_page_offset.
        const r = await as(t, 'POST', `${P}/scroll`, { limit: 4 });
        if (r.status === 200) m.check(r.json.result.next_page_offset === null, `scroll limit 4: next_page_offset ${r.json.result.next_page_offset} points past the scope`);
      }
      await expectIds('retrieve', 'POST', P, { ids: [1, 5, 8, 9, 10, 3] }, [1, 3], (res) => res.map((p) => p.id));
      for (const [what, body, want] of [
        ['count', { exact: true }, 4],
        ['count, approximate', { exact: false }, 4],
        ['count with a beta filter', { filter: beta, exact: true }, 0],
        ['count with an everything filter', { filter: anyTenant, exact: true }, 4],
      ]) {
        const r = await as(t, 'POST', `${P}/count`, body);
        if (m.check(r.status === 200, `${what}: ${r.status} ${r.text.slice(0, 200)}`)) m.check(r.json.result.count === want, `${what}: expected ${want}, got ${r.json.result.count}`);
      }
      // GET one point: in scope 200, out of scope 404 (exactly like a missing id).
      for (const id of ACME) {
        const r = await as(t, 'GET', `${P}/${id}`);
        m.check(r.status === 200 && r.json.result.id === id, `GET point ${id}: ${r.status}`);
      }
      for (const id of [5, 6, 8, 9, 10, 999]) {
        const r = await as(t, 'GET', `${P}/${id}`);
        m.check(r.status === 404, `GET point ${id} (out of scope or missing): expected 404, got ${r.status} ${r.text.slice(0, 160)}`);
      }
      // Out-of-scope ids used as examples: not found (404), never 403, never used.
      for (const [what, path, body] of [
        ['recommend positive [5]', `${P}/recommend`, { positive: [5], limit: 10 }],
        ['recommend negative [8]', `${P}/recommend`, { positive: [1], negative: [8], limit: 10 }],
        ['recommend batch positive [9]', `${P}/recommend/batch`, { searches: [{ positive: [9], limit: 10 }] }],
        ['recommend groups positive [6]', `${P}/recommend/groups`, { positive: [6], group_by: 'grp', limit: 10 }],
        ['query by id 5', `${P}/query`, { query: 5, limit: 10 }],
        ['query recommend positive [10]', `${P}/query`, { query: { recommend: { positive: [10] } }, limit: 10 }],
        ['query prefetch by id 5', `${P}/query`, { prefetch: [{ query: 5, limit: 10 }], query: q, limit: 10 }],
        ['query batch by id 8', `${P}/query/batch`, { searches: [{ query: 8, limit: 10 }] }],
        ['query groups by id 5', `${P}/query/groups`, { query: 5, group_by: 'grp', limit: 10 }],
      ]) {
        const r = await as(t, 'POST', path, body);
        m.check(r.status === 404, `${what}: expected 404, got ${r.status} ${r.text.slice(0, 160)}`);
        if (r.status === 200) m.add(`${what}: an out-of-scope example was used: ${r.text.slice(0, 200)}`);
      }
      // The answers never carry another tenant's payload.
      const r = await as(t, 'POST', `${P}/scroll`, { limit: 100, with_payload: true, with_vector: true });
      if (r.status === 200) m.check(r.json.result.points.every((p) => p.payload.tenant === 'acme'), 'scroll payloads contain another tenant');
      m.done();
    });
  }

  test('root sees everything (control)', async () => {
    const r = await srv.ok('POST', `/collections/${COLL}/points/scroll`, { limit: 100 }, { headers: root });
    assert.deepEqual(sorted(r.points.map((p) => p.id)), ALL);
    const s = await srv.ok('POST', `/collections/${COLL}/points/recommend`, { positive: [5], limit: 100 }, { headers: root });
    assert.equal(s.length, ALL.length - 1);
  });

  // The distance matrix samples only in-scope points: neither rows nor neighbours leak.
  test('distance matrix: pairs and offsets cover only in-scope points', async () => {
    const P = `/collections/${COLL}/points/search/matrix`;
    for (const t of [R, RW, PRW]) {
      const pairs = await as(t, 'POST', `${P}/pairs`, { sample: 100, limit: 100 });
      assert.equal(pairs.status, 200, pairs.text);
      const seen = new Set(pairs.json.result.pairs.flatMap((p) => [p.a, p.b]));
      assert.deepEqual(sorted([...seen]), ACME);
      assert.equal(pairs.json.result.pairs.length, ACME.length * (ACME.length - 1));
      const off = await as(t, 'POST', `${P}/offsets`, { sample: 100, limit: 1, filter: { must: [{ key: 'grp', match: { value: 'a' } }] } });
      assert.equal(off.status, 200, off.text);
      assert.deepEqual(off.json.result.ids, [1, 2]);
      assert.deepEqual(off.json.result.offsets_row, [0, 1]);
      assert.deepEqual(off.json.result.offsets_col, [1, 0]);
    }
    // root samples everything (control): 10 points with the vector
    const all = await srv.ok('POST', `${P}/offsets`, { sample: 100, limit: 1 }, { headers: root });
    assert.deepEqual(all.ids, ALL);
  });

  // A formula reads payload values only of in-scope points: `ref` is missing on every point outside
  // acme, so evaluating the formula on any of them would fail (no default) — it succeeds, with
  // acme's points only, scored from their own payloads.
  test('formula query: rescored from in-scope payloads only', async () => {
    for (const t of [R, RW, PRW]) {
      const r = await as(t, 'POST', `/collections/${COLL}/points/query`, {
        prefetch: { query: q, limit: 100 },
        query: { formula: { sum: ['ref', { mult: ['$score', 0] }, { key: 'grp', match: { value: 'b' } }] } },
        with_payload: true,
        limit: 100,
      });
      assert.equal(r.status, 200, r.text);
      assert.deepEqual(r.json.result.points.map((p) => [p.id, p.score]), [[4, 10], [2, 8], [1, 5], [3, 4]]);
      assert.ok(r.json.result.points.every((p) => p.payload.tenant === 'acme'));
    }
    // control: for root the same formula meets points without `ref` and is refused naming it
    const r = await srv.request('POST', `/collections/${COLL}/points/query`, {
      prefetch: { query: q, limit: 100 },
      query: { formula: 'ref' },
    }, { headers: root });
    assert.equal(r.status, 400, r.text);
    assert.match(r.json.status.error, /payload key `ref`/);
  });
});

describe('row-level restriction: writes', () => {
  before(rebuild);

  test('upserts must keep rows inside the scope', async () => {
    const m = new Mismatches('upserts');
    const P = `/collections/${COLL}/points?wait=true`;
    for (const [what, tok, body] of [
      ['new point with another tenant (rw)', RW, { points: [{ id: 20, vector: q, payload: { tenant: 'beta' } }] }],
      ['new point without payload (rw)', RW, { points: [{ id: 21, vector: q }] }],
      ['new point, tenant in other case (rw)', RW, { points: [{ id: 22, vector: q, payload: { tenant: 'ACME' } }] }],
      ['new point with another tenant (prw)', PRW, { points: [{ id: 23, vector: q, payload: { tenant: 'beta' } }] }],
      ['new point, column form (rw)', RW, { batch: { ids: [24], vectors: [q], payloads: [{ tenant: 'beta' }] } }],
      ['overwrite existing beta point 5 with an acme payload (rw)', RW, { points: [{ id: 5, vector: q, payload: { tenant: 'acme' } }] }],
      ['overwrite existing point 9 (no tenant) (rw)', RW, { points: [{ id: 9, vector: q, payload: { tenant: 'acme' } }] }],
      ['overwrite existing beta point 6 (prw)', PRW, { points: [{ id: 6, vector: q, payload: { tenant: 'acme' } }] }],
      ['move acme point 1 to beta (rw)', RW, { points: [{ id: 1, vector: q, payload: { tenant: 'beta' } }] }],
      ['mixed batch: one in scope, one out (rw)', RW, { points: [{ id: 25, vector: q, payload: { tenant: 'acme' } }, { id: 26, vector: q, payload: { tenant: 'beta' } }] }],
    ]) {
      const r = await as(tok, 'PUT', P, body);
      m.check(r.status === 403, `${what}: expected 403, got ${r.status} ${r.text.slice(0, 160)}`);
    }
    // Nothing of that was written.
    for (const id of [20, 21, 22, 23, 24, 25, 26]) m.check((await rootGet(id)) === null, `point ${id} exists after a refused upsert`);
    m.check((await rootGet(5))?.payload?.tenant === 'beta', 'point 5 changed');
    m.check((await rootGet(6))?.payload?.tenant === 'beta', 'point 6 changed');
    m.check(JSON.stringify((await rootGet(9))?.payload) === JSON.stringify({ num: 9, grp: 'a' }), 'point 9 changed');
    m.check((await rootGet(1))?.payload?.tenant === 'acme', 'point 1 moved');
    // In scope: accepted.
    let r = await as(RW, 'PUT', P, { points: [{ id: 30, vector: q, payload: { tenant: 'acme', num: 30 } }] });
    m.check(r.status === 200, `in-scope upsert (rw): ${r.status} ${r.text.slice(0, 160)}`);
    r = await as(PRW, 'PUT', P, { points: [{ id: 31, vector: q, payload: { tenant: 'acme', num: 31 } }] });
    m.check(r.status === 200, `in-scope upsert (prw): ${r.status} ${r.text.slice(0, 160)}`);
    r = await as(RW, 'PUT', P, { points: [{ id: 2, vector: [0.9, 0.1, 0, 0], payload: { tenant: 'acme', num: 2, grp: 'a', v: 2 } }] });
    m.check(r.status === 200, `in-scope overwrite of point 2 (rw): ${r.status} ${r.text.slice(0, 160)}`);
    // The read-only restricted token may not write at all.
    r = await as(R, 'PUT', P, { points: [{ id: 32, vector: q, payload: { tenant: 'acme' } }] });
    m.check(r.status === 403, `upsert as restricted r: expected 403, got ${r.status}`);
    // Batch endpoint: an out-of-scope upsert inside a batch is refused and nothing is applied.
    r = await as(RW, 'POST', `/collections/${COLL}/points/batch?wait=true`, {
      operations: [
        { upsert: { points: [{ id: 33, vector: q, payload: { tenant: 'acme' } }] } },
        { upsert: { points: [{ id: 34, vector: q, payload: { tenant: 'beta' } }] } },
      ],
    });
    m.check(r.status === 403, `batch with an out-of-scope upsert: expected 403, got ${r.status} ${r.text.slice(0, 160)}`);
    m.check((await rootGet(33)) === null && (await rootGet(34)) === null, 'a refused batch wrote points');
    r = await as(RW, 'POST', `/collections/${COLL}/points/batch?wait=true`, {
      operations: [{ set_payload: { payload: { tenant: 'beta' }, points: [3] } }],
    });
    m.check(r.status === 403, `batch set_payload moving point 3 out: expected 403, got ${r.status} ${r.text.slice(0, 160)}`);
    m.check((await rootGet(3))?.payload?.tenant === 'acme', 'point 3 moved by a batch');
    m.done();
  });

  test('payload edits must keep rows inside the scope; out-of-scope points are not found', async () => {
    const m = new Mismatches('payload edits');
    const P = `/collections/${COLL}/points`;
    // Moving an in-scope point out: 403, nothing changes.
    for (const [what, method, path, body] of [
      ['set payload tenant=beta on point 2', 'POST', `${P}/payload?wait=true`, { payload: { tenant: 'beta' }, points: [2] }],
      ['set payload tenant=null on point 2', 'POST', `${P}/payload?wait=true`, { payload: { tenant: null }, points: [2] }],
      ['set payload under key tenant (tenant becomes an object)', 'POST', `${P}/payload?wait=true`, { payload: { x: 1 }, key: 'tenant', points: [2] }],
      ['overwrite payload without tenant on point 2', 'PUT', `${P}/payload?wait=true`, { payload: { x: 1 }, points: [2] }],
      ['delete key tenant on point 2', 'POST', `${P}/payload/delete?wait=true`, { keys: ['tenant'], points: [2] }],
      ['clear payload of point 2', 'POST', `${P}/payload/clear?wait=true`, { points: [2] }],
      ['set payload tenant=beta by filter (all acme points)', 'POST', `${P}/payload?wait=true`, { payload: { tenant: 'beta' }, filter: { must: [{ key: 'num', range: { gte: 0 } }] } }],
    ]) {
      const r = await as(RW, method, path, body);
      m.check(r.status === 403, `${what}: expected 403, got ${r.status} ${r.text.slice(0, 160)}`);
    }
    for (const id of ACME) m.check((await rootGet(id))?.payload?.tenant === 'acme', `point ${id} left the scope`);
    // Out-of-scope points by id: not found (404), and untouched.
    for (const [what, method, path, body] of [
      ['set payload on beta point 5', 'POST', `${P}/payload?wait=true`, { payload: { note: 'x' }, points: [5] }],
      ['overwrite payload of beta point 5', 'PUT', `${P}/payload?wait=true`, { payload: { tenant: 'acme' }, points: [5] }],
      ['delete payload keys of point 8', 'POST', `${P}/payload/delete?wait=true`, { keys: ['num'], points: [8] }],
      ['clear payload of point 9', 'POST', `${P}/payload/clear?wait=true`, { points: [9] }],
      ['update vectors of beta point 5', 'PUT', `${P}/vectors?wait=true`, { points: [{ id: 5, vector: [0, 0, 1, 0] }] }],
      ['delete vectors of point 8', 'POST', `${P}/vectors/delete?wait=true`, { points: [8], vector: [''] }],
    ]) {
      const r = await as(RW, method, path, body);
      m.check(r.status === 404, `${what}: expected 404, got ${r.status} ${r.text.slice(0, 160)}`);
    }
    const p5 = await rootGet(5);
    m.check(JSON.stringify(p5?.payload) === JSON.stringify(POINTS[4].payload), `point 5 payload changed: ${JSON.stringify(p5?.payload)}`);
    const f32 = (v) => JSON.stringify((v || []).map((x) => Math.fround(x)));
    m.check(f32(p5?.vector) === f32(POINTS[4].vector), `point 5 vector changed: ${JSON.stringify(p5?.vector)}`);
    const p8 = await rootGet(8);
    m.check(JSON.stringify(p8?.payload) === JSON.stringify(POINTS[7].payload), `point 8 payload changed: ${JSON.stringify(p8?.payload)}`);
    m.check(Array.isArray(p8?.vector) && p8.vector.length === 4, `point 8 vector deleted: ${JSON.stringify(p8?.vector)}`);
    m.check(JSON.stringify((await rootGet(9))?.payload) === JSON.stringify(POINTS[8].payload), 'point 9 payload changed');
    // By filter: only in-scope points are touched.
    let r = await as(RW, 'POST', `${P}/payload?wait=true`, { payload: { stamped: true }, filter: { must: [{ key: 'num', range: { gte: 0 } }] } });
    m.check(r.status === 200, `set payload by an everything filter: ${r.status} ${r.text.slice(0, 160)}`);
    r = await as(RW, 'POST', `${P}/payload?wait=true`, { payload: { stamped2: true }, filter: { must: [{ key: 'tenant', match: { value: 'beta' } }] } });
    m.check(r.status === 200, `set payload by a beta filter: ${r.status} ${r.text.slice(0, 160)}`);
    for (const p of POINTS) {
      const got = await rootGet(p.id);
      const inScope = ACME.includes(p.id);
      m.check(!!got?.payload?.stamped === inScope, `point ${p.id}: stamped=${got?.payload?.stamped}, expected ${inScope}`);
      m.check(!got?.payload?.stamped2, `point ${p.id}: stamped2 set through a beta filter`);
    }
    // In-scope edits that keep the tenant are fine.
    r = await as(RW, 'POST', `${P}/payload?wait=true`, { payload: { note: 'ok' }, points: [2] });
    m.check(r.status === 200, `set payload in scope: ${r.status}`);
    r = await as(RW, 'PUT', `${P}/vectors?wait=true`, { points: [{ id: 2, vector: [0.9, 0.1, 0, 0] }] });
    m.check(r.status === 200, `update vectors in scope: ${r.status}`);
    // prw edits payloads in its rows like rw (Qdrant's points read-write), and not outside them.
    r = await as(PRW, 'POST', `${P}/payload?wait=true`, { payload: { note: 'prw' }, points: [2] });
    m.check(r.status === 200, `set payload in scope as restricted prw: expected 200, got ${r.status}`);
    r = await as(PRW, 'POST', `${P}/payload?wait=true`, { payload: { note: 'prw' }, points: [5] });
    m.check(r.status === 404, `set payload of point 5 as restricted prw: expected 404, got ${r.status}`);
    r = await as(PRW, 'PUT', `${P}/vectors?wait=true`, { points: [{ id: 5, vector: [0, 0, 1, 0] }] });
    m.check(r.status === 404, `update vectors of point 5 as restricted prw: expected 404, got ${r.status}`);
    m.done();
  });

  test('deletes by id and by filter touch only in-scope points', async () => {
    await rebuild();
    const m = new Mismatches('deletes');
    const P = `/collections/${COLL}/points`;
    m.check((await rootCount()) === 10, 'fixture count');
    // By ids: 1 is in scope, 5, 8, 9 are not.
    let r = await as(RW, 'POST', `${P}/delete?wait=true`, { points: [1, 5, 8, 9] });
    m.check(r.status === 200, `delete by ids: ${r.status} ${r.text.slice(0, 160)}`);
    m.check((await rootGet(1)) === null, 'point 1 (in scope) not deleted');
    for (const id of [5, 8, 9]) m.check((await rootGet(id)) !== null, `point ${id} (out of scope) deleted by ids`);
    m.check((await rootCount()) === 9, `root count after delete by ids: ${await rootCount()}, expected 9`);
    // By a filter naming other tenants: nothing.
    r = await as(RW, 'POST', `${P}/delete?wait=true`, { filter: { must: [{ key: 'tenant', match: { value: 'beta' } }] } });
    m.check(r.status === 200, `delete by a beta filter: ${r.status}`);
    m.check((await rootCount()) === 9, `root count after delete by a beta filter: ${await rootCount()}, expected 9`);
    // By a filter matching everything: only the remaining acme points (2, 3, 4).
    r = await as(RW, 'POST', `${P}/delete?wait=true`, { filter: { must: [{ key: 'num', range: { gte: 0 } }] } });
    m.check(r.status === 200, `delete by an everything filter: ${r.status}`);
    for (const id of [2, 3, 4]) m.check((await rootGet(id)) === null, `point ${id} (in scope) survived delete by filter`);
    for (const id of [5, 6, 7, 8, 9, 10]) m.check((await rootGet(id)) !== null, `point ${id} (out of scope) deleted by filter`);
    m.check((await rootCount()) === 6, `root count after delete by filter: ${await rootCount()}, expected 6`);
    // Through the batch endpoint too.
    await srv.ok('PUT', `${P}?wait=true`, { points: [POINTS[0]] }, { headers: root });
    r = await as(RW, 'POST', `${P}/batch?wait=true`, { operations: [{ delete: { filter: { must: [{ key: 'num', range: { gte: 0 } }] } } }] });
    m.check(r.status === 200, `batch delete by filter: ${r.status} ${r.text.slice(0, 160)}`);
    m.check((await rootGet(1)) === null, 'batch delete missed point 1');
    m.check((await rootCount()) === 6, `root count after batch delete: ${await rootCount()}, expected 6`);
    // The restricted prw token deletes the same way.
    await srv.ok('PUT', `${P}?wait=true`, { points: [POINTS[1]] }, { headers: root });
    r = await as(PRW, 'POST', `${P}/delete?wait=true`, { points: [2, 6, 7] });
    m.check(r.status === 200, `prw delete by ids: ${r.status}`);
    m.check((await rootGet(2)) === null && (await rootGet(6)) !== null && (await rootGet(7)) !== null, 'prw delete by ids');
    // The read-only restricted token may not delete.
    r = await as(R, 'POST', `${P}/delete?wait=true`, { points: [5] });
    m.check(r.status === 403, `delete as restricted r: expected 403, got ${r.status}`);
    m.check((await rootCount()) === 6, `root count at the end: ${await rootCount()}, expected 6`);
    m.done();
  });
});

describe('row-level restriction: no cross-tenant leaks through the side doors', () => {
  before(rebuild);

  test('a restricted writer cannot make a row visible to another tenant (array-valued tenant)', async () => {
    // Qdrant's match on an array payload matches when any element does, so {tenant: ["acme",
    // "beta"]} satisfies acme's scope *and* beta's: acme could plant rows in beta's results.
    const m = new Mismatches('cross-tenant writes');
    const beta = jwt({ access: [{ collection: COLL, access: 'r', payload: { tenant: 'beta' } }] });
    const P = `/collections/${COLL}/points`;
    let r = await as(RW, 'PUT', `${P}?wait=true`, { points: [{ id: 40, vector: q, payload: { tenant: ['acme', 'beta'], text: 'planted' } }] });
    m.check(r.status === 403, `upsert with tenant ["acme","beta"]: expected 403, got ${r.status} ${r.text.slice(0, 160)}`);
    r = await as(RW, 'POST', `${P}/payload?wait=true`, { payload: { tenant: ['acme', 'beta'] }, points: [3] });
    m.check(r.status === 403, `set payload tenant ["acme","beta"] on point 3: expected 403, got ${r.status} ${r.text.slice(0, 160)}`);
    const seen = await as(beta, 'POST', `${P}/scroll`, { limit: 100 });
    if (seen.status === 200) {
      const ids = seen.json.result.points.map((p) => p.id);
      m.check(!ids.includes(40) && !ids.includes(3), `beta's token now sees rows written by acme's token: ${JSON.stringify(ids)}`);
    }
    m.done();
  });

  test('collection info does not reveal how many points other tenants have', async () => {
    const m = new Mismatches('collection info');
    for (const [label, tok] of [
      ['r', R],
      ['rw', RW],
    ]) {
      const r = await as(tok, 'GET', `/collections/${COLL}`);
      if (!m.check(r.status === 200, `GET /collections/${COLL} as restricted ${label}: ${r.status}`)) continue;
      const n = r.json.result.points_count;
      m.check(n === null || n === undefined || n <= ACME.length, `restricted ${label}: points_count ${n} (only ${ACME.length} points are in scope; the whole collection has more)`);
      const schema = r.json.result.payload_schema || {};
      for (const [field, def] of Object.entries(schema)) {
        if (typeof def.points === 'number') m.check(def.points <= ACME.length, `restricted ${label}: payload_schema.${field}.points = ${def.points} counts other tenants' points`);
      }
    }
    m.done();
  });
});

describe('value_exists revocation', () => {
  test('changing the referenced payload revokes the token on the very next request', async () => {
    await srv.ok('PUT', '/collections/users', { vectors: { size: 2, distance: 'Dot' } }, { headers: root });
    await srv.ok('PUT', '/collections/users/points?wait=true', { points: [{ id: 1, vector: [1, 0], payload: { user: 'alice', role: 'admin' } }] }, { headers: root });
    const ve = { collection: 'users', matches: [{ key: 'role', value: 'admin' }] };
    const built = jwt({ access: 'r', value_exists: ve, sub: 'alice' });
    // One minted by the CLI as well.
    const cli = await runAegis(['token', '--access', 'r', '--value-exists', 'users:role=admin', '--sub', 'alice', '--exp', '1h'], { env: { AEGIS__SERVICE__API_KEY: ROOT_KEY } });
    assert.equal(cli.code, 0, cli.stderr);
    const minted = cli.stdout.trim();
    assert.match(minted, /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/);
    assert.ok(!cli.stdout.includes(ROOT_KEY) && !cli.stderr.includes(ROOT_KEY));

    const addr = freshAddr();
    const get = (tok) => srv.request('GET', '/collections', undefined, { headers: { authorization: `Bearer ${tok}` }, localAddress: addr, agent: false });
    for (const tok of [built, minted]) {
      // Warm whatever cache there is.
      for (let i = 0; i < 3; i++) assert.equal((await get(tok)).status, 200);
    }
    // Revoke: alice is no longer an admin.
    await srv.ok('POST', '/collections/users/points/payload?wait=true', { payload: { role: 'viewer' }, points: [1] }, { headers: root });
    for (const tok of [built, minted]) {
      const r = await get(tok);
      assert.equal(r.status, 401, `after the payload change: ${r.status} ${r.text}`);
    }
    // Restored: valid again.
    await srv.ok('POST', '/collections/users/points/payload?wait=true', { payload: { role: 'admin' }, points: [1] }, { headers: root });
    assert.equal((await get(built)).status, 200);
    // Overwrite payload, delete the point, delete the collection: each revokes.
    await srv.ok('PUT', '/collections/users/points/payload?wait=true', { payload: { user: 'alice' }, points: [1] }, { headers: root });
    assert.equal((await get(built)).status, 401, 'after overwrite');
    await srv.ok('PUT', '/collections/users/points?wait=true', { points: [{ id: 1, vector: [1, 0], payload: { user: 'alice', role: 'admin' } }] }, { headers: root });
    assert.equal((await get(built)).status, 200, 'after re-upsert');
    await srv.ok('POST', '/collections/users/points/delete?wait=true', { points: [1] }, { headers: root });
    assert.equal((await get(built)).status, 401, 'after point delete');
    await srv.ok('PUT', '/collections/users/points?wait=true', { points: [{ id: 2, vector: [1, 0], payload: { user: 'bob', role: 'admin' } }] }, { headers: root });
    assert.equal((await get(built)).status, 200, 'another admin point exists');
    await srv.ok('DELETE', '/collections/users', undefined, { headers: root });
    assert.equal((await get(built)).status, 401, 'after collection delete');
    // A value_exists naming a collection that never existed: 401.
    const ghost = jwt({ access: 'r', value_exists: { collection: 'ghosts', matches: [{ key: 'a', value: 1 }] } });
    assert.equal((await get(ghost)).status, 401);
  });
});
