// Filtered search plans (docs/ARCHITECTURE.md "Filtered search"): a filter or a row restriction
// that the payload indexes estimate at most full_scan_threshold points is scored exactly over
// the index candidates; a wider one walks the graph with the predicate. Row restrictions (a JWT
// `payload` claim) and tenant scopes must hold on both plans: a restricted principal never sees
// another tenant's row, whichever plan served it — including right after writes moved rows
// between tenants (the indexes follow every write). /metrics' plan counter proves which plan ran,
// so the candidate-path checks cannot silently pass through the other one.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { ROOT_KEY, jwt, keyEnv } from './lib/auth.mjs';
import { startServer } from './lib/server.mjs';
import { bruteForce, prng, randVector } from './lib/oracle.mjs';

const C = 'fs';
const DIM = 4;
const N = 1200;
// 1 KB of 4-d float32 vectors = 64 points: up to 64 candidates are scored exactly.
const FULL_SCAN_KB = 1;
const TENANTS = ['acme', 'beta', 'gamma'];
const root = { 'api-key': ROOT_KEY };
let srv;
let pts;
let R; // JWT restricted to tenant acme
let TM; // database user whose role's data permission is scoped to tenant acme

const tenantOf = (i) => (i <= 20 ? 'tiny' : TENANTS[i % 3]);
const colorOf = (i) => (i % 40 === 0 ? 'rare' : 'common');

function as(headers, method, path, body) {
  return srv.request(method, path, body, { headers, localAddress: '127.4.0.1' });
}

async function plans() {
  const r = await srv.request('GET', '/metrics', undefined, { headers: root });
  assert.equal(r.status, 200);
  const get = (plan) => {
    const m = new RegExp(`^aegis_filtered_searches_total\\{plan="${plan}"\\} (\\d+)$`, 'm').exec(r.text);
    assert.ok(m, `aegis_filtered_searches_total{plan="${plan}"} missing from /metrics`);
    return Number(m[1]);
  };
  return { candidates: get('index_candidates'), predicate: get('predicate') };
}


before(async () => {
  srv = await startServer({ insecure: false, env: keyEnv() });
  await srv.ok('PUT', `/collections/${C}`, { vectors: { size: DIM, distance: 'Euclid' }, hnsw_config: { full_scan_threshold: FULL_SCAN_KB } }, { headers: root });
  await srv.ok('PUT', `/collections/${C}/index?wait=true`, { field_name: 'tenant', field_schema: { type: 'keyword', is_tenant: true } }, { headers: root });
  await srv.ok('PUT', `/collections/${C}/index?wait=true`, { field_name: 'color', field_schema: 'keyword' }, { headers: root });
  for (const name of [...TENANTS, 'tiny']) await srv.ok('POST', `/collections/${C}/tenants`, { name }, { headers: root });
  const rnd = prng(1515);
  pts = [];
  for (let i = 1; i <= N; i++) pts.push({ id: i, vector: randVector(rnd, DIM), payload: { tenant: tenantOf(i), color: colorOf(i) } });
  for (let s = 0; s < N; s += 400) await srv.ok('PUT', `/collections/${C}/points?wait=true`, { points: pts.slice(s, s + 400) }, { headers: root });
  await srv.waitGreen(C, { headers: root, full: true });
  R = { authorization: `Bearer ${jwt({ access: [{ collection: C, access: 'r', payload: { tenant: 'acme' } }] })}` };
  await srv.ok('POST', '/auth/roles', { name: 'acme_reader', permissions: [{ action: 'read:data', collection: C, tenant: 'acme' }] }, { headers: root });
  const user = await srv.ok('POST', '/auth/users/acme-reader', { roles: ['acme_reader'] }, { headers: root });
  TM = { 'api-key': user.api_key };
});

after(async () => {
  await srv?.cleanup();
});

// The exact top `limit` of the points that pass pred, as ids.
function expected(query, pred, limit) {
  return bruteForce(pts, query, 'Euclid', { filter: pred }).slice(0, limit).map((h) => h.id);
}

async function search(headers, body) {
  const r = await as(headers, 'POST', `/collections/${C}/points/search`, body);
  assert.equal(r.status, 200, r.text);
  return r.json.result.map((h) => h.id);
}

const sorted = (ids) => [...ids].sort((a, b) => a - b);

for (const [who, headers] of [
  ['JWT payload restriction', () => R],
  ['tenant-scoped role', () => TM],
]) {
  test(`candidate plan: ${who} sees only acme's rare points (exact answer)`, async () => {
    // color=rare: 30 points, 10 of them acme's; the filter (30) is the smaller estimate and under
    // the threshold (64), so its candidates are scored — and each must pass the restriction too.
    const rnd = prng(7);
    const before = await plans();
    for (let q = 0; q < 8; q++) {
      const query = randVector(rnd, DIM);
      const got = await search(headers(), { vector: query, limit: 100, filter: { must: [{ key: 'color', match: { value: 'rare' } }] } });
      const want = expected(query, (p) => p.payload.tenant === 'acme' && p.payload.color === 'rare', 100);
      assert.equal(want.length, 10);
      assert.deepEqual(sorted(got), sorted(want), `query ${q}: another tenant's row, or a missing one`);
    }
    const after = await plans();
    assert.equal(after.candidates - before.candidates, 8, 'the candidate plan served every query');
  });

  test(`predicate plan: ${who} sees only acme's common points`, async () => {
    // color=common (1170) and tenant=acme (~393) both exceed 64: the graph walks with the
    // predicate (filter AND restriction).
    const rnd = prng(8);
    const before = await plans();
    for (let q = 0; q < 8; q++) {
      const query = randVector(rnd, DIM);
      const got = await search(headers(), { vector: query, limit: 20, filter: { must: [{ key: 'color', match: { value: 'common' } }] }, params: { hnsw_ef: 200 } });
      assert.equal(got.length, 20);
      for (const id of got) assert.equal(tenantOf(id), 'acme', `query ${q}: point ${id} of ${tenantOf(id)}`);
      const want = expected(query, (p) => p.payload.tenant === 'acme' && p.payload.color === 'common', 20);
      const recall = got.filter((id) => want.includes(id)).length / 20;
      assert.ok(recall >= 0.8, `query ${q}: recall ${recall}`);
    }
    const after = await plans();
    assert.equal(after.predicate - before.predicate, 8, 'the predicate plan served every query');
    assert.equal(after.candidates, before.candidates);
  });
}

test('candidate plan from the restriction: a JWT scoped to a small tenant sees exactly its rows', async () => {
  const tiny = { authorization: `Bearer ${jwt({ access: [{ collection: C, access: 'r', payload: { tenant: 'tiny' } }] })}` };
  const rnd = prng(9);
  const before = await plans();
  for (let q = 0; q < 5; q++) {
    const query = randVector(rnd, DIM);
    // No filter, then a wide one: the restriction's 20 points are the candidates either way.
    for (const filter of [undefined, { must: [{ key: 'color', match: { value: 'common' } }] }]) {
      const got = await search(tiny, { vector: query, limit: 50, filter });
      const want = expected(query, (p) => p.payload.tenant === 'tiny' && (!filter || p.payload.color === 'common'), 50);
      assert.deepEqual(sorted(got), sorted(want));
    }
  }
  const after = await plans();
  assert.equal(after.candidates - before.candidates, 10);
});

test('after writes move rows between tenants, both plans follow at once', async () => {
  // Point 21 (acme, common) becomes beta; point 40 (beta, rare) becomes acme; point 120 (acme,
  // rare) is deleted; a new acme rare point 5000 appears.
  const byId = new Map(pts.map((p) => [p.id, p]));
  const set = async (id, payload) => {
    await srv.ok('POST', `/collections/${C}/points/payload?wait=true`, { payload, points: [id] }, { headers: root });
    Object.assign(byId.get(id).payload, payload);
  };
  assert.equal(tenantOf(40), 'beta');
  assert.equal(tenantOf(21), 'acme');
  await set(21, { tenant: 'beta' });
  await set(40, { tenant: 'acme' });
  await srv.ok('POST', `/collections/${C}/points/delete?wait=true`, { points: [120] }, { headers: root });
  pts = pts.filter((p) => p.id !== 120);
  const fresh = { id: 5000, vector: [0.5, 0.5, 0.5, 0.5], payload: { tenant: 'acme', color: 'rare' } };
  await srv.ok('PUT', `/collections/${C}/points?wait=true`, { points: [fresh] }, { headers: root });
  pts.push(fresh);
  const rnd = prng(10);
  for (let q = 0; q < 5; q++) {
    const query = randVector(rnd, DIM);
    const rare = await search(R, { vector: query, limit: 100, filter: { must: [{ key: 'color', match: { value: 'rare' } }] } });
    assert.deepEqual(sorted(rare), sorted(expected(query, (p) => p.payload.tenant === 'acme' && p.payload.color === 'rare', 100)));
    assert.equal(rare.length, 11);
    assert.ok(rare.includes(40) && rare.includes(5000) && !rare.includes(120));
    const common = await search(R, { vector: query, limit: 400, filter: { must: [{ key: 'color', match: { value: 'common' } }] }, params: { exact: true } });
    assert.ok(!common.includes(21), 'point 21 moved to beta');
    for (const id of common) assert.equal(byId.get(id)?.payload.tenant ?? 'acme', 'acme');
  }
});
