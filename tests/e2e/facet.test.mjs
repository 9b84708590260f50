// Facet counts (POST /collections/{c}/facet): the counts of each value of an indexed key, equal to
// a brute-force count, with a filter, and — for a payload-restricted token — counting only the
// rows that token may read (a facet must not leak other tenants' numbers).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer } from './lib/server.mjs';
import { ROOT_KEY, jwt, keyEnv, nowS } from './lib/auth.mjs';

let srv;
const root = { headers: { 'api-key': ROOT_KEY } };
const pts = [];

function expected(pred, limit = 10) {
  const counts = new Map();
  for (const p of pts) {
    if (!pred(p)) continue;
    for (const v of new Set([].concat(p.payload.color))) counts.set(v, (counts.get(v) || 0) + 1);
  }
  return [...counts].map(([value, count]) => ({ value, count }))
    .sort((a, b) => b.count - a.count || (a.value < b.value ? -1 : 1)).slice(0, limit);
}

before(async () => {
  srv = await startServer({ insecure: false, env: keyEnv({ AEGIS__SERVICE__JWT_RBAC: 'true' }) });
  await srv.ok('PUT', '/collections/fc', { vectors: { size: 2, distance: 'Dot' } }, root);
  for (let i = 1; i <= 300; i++) {
    const color = i % 10 === 0 ? ['red', 'blue'] : `c${i % 7}`;
    pts.push({ id: i, vector: [1, i], payload: { color, tenant: i % 3 === 0 ? 'acme' : 'beta', n: i } });
  }
  await srv.ok('PUT', '/collections/fc/points?wait=true', { points: pts }, root);
});

after(async () => {
  await srv?.cleanup();
});

test('facet needs an index on the key', async () => {
  const r = await srv.request('POST', '/collections/fc/facet', { key: 'color' }, root);
  assert.equal(r.status, 400);
  assert.match(r.json.status.error, /Index required/);
  await srv.ok('PUT', '/collections/fc/index?wait=true', { field_name: 'color', field_schema: 'keyword' }, root);
});

test('counts equal brute force, with and without a filter', async () => {
  const all = await srv.ok('POST', '/collections/fc/facet', { key: 'color', limit: 20 }, root);
  assert.deepEqual(all.hits, expected(() => true, 20));
  const some = await srv.ok('POST', '/collections/fc/facet', { key: 'color', filter: { must: [{ key: 'n', range: { lt: 100 } }] } }, root);
  assert.deepEqual(some.hits, expected((p) => p.payload.n < 100));
});

test('a payload-restricted token counts only its rows', async () => {
  const token = jwt({ exp: nowS() + 600, access: [{ collection: 'fc', access: 'r', payload: { tenant: 'acme' } }] });
  const got = await srv.ok('POST', '/collections/fc/facet', { key: 'color', limit: 20 }, { headers: { authorization: `Bearer ${token}` } });
  assert.deepEqual(got.hits, expected((p) => p.payload.tenant === 'acme', 20));
  const total = got.hits.reduce((a, h) => a + h.count, 0);
  assert.ok(total < pts.length);
});
