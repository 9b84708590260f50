// Writes racing catalog changes of the same collection (docs/ARCHITECTURE.md, "Locks"): upserts
// into a multi-tenant collection (a write reads the tenancy inside its write session) while the
// collection is deleted, or a named vector is added, must all answer — a lock-order inversion
// between the write mutex and the catalog lock showed as requests that never answered.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { TIME_SCALE, startServer } from './lib/server.mjs';

let srv;
before(async () => {
  srv = await startServer();
});
after(async () => {
  await srv?.cleanup();
});

const C = 'race';
const ANSWER_MS = 20_000 * TIME_SCALE; // a deadlocked request never answers

async function setup() {
  await srv.ok('PUT', `/collections/${C}`, { vectors: { v: { size: 4, distance: 'Dot' } } });
  await srv.ok('PUT', `/collections/${C}/index`, { field_name: 'tenant', field_schema: { type: 'keyword', is_tenant: true } });
  const r = await srv.request('POST', `/collections/${C}/tenants`, { name: 'acme' });
  assert.ok(r.status === 200 || r.status === 400 || r.status === 404, r.text);
}

function upsert(i) {
  const body = { points: [{ id: i, vector: { v: [1, 0, 0, i % 7] }, payload: { tenant: 'acme' } }] };
  return srv.request('PUT', `/collections/${C}/points?wait=true`, body, { timeoutMs: ANSWER_MS });
}

test('upserts racing a delete or a named-vector change all answer, and the server stays up', async () => {
  for (let round = 0; round < 12; round++) {
    await setup();
    const writes = [];
    for (let i = 0; i < 24; i++) writes.push(upsert(round * 100 + i));
    const change =
      round % 2 === 0
        ? srv.request('DELETE', `/collections/${C}`, undefined, { timeoutMs: ANSWER_MS })
        : srv.request('PUT', `/collections/${C}/vectors/w`, { dense: { size: 2, distance: 'Cosine' } }, { timeoutMs: ANSWER_MS });
    for (let i = 24; i < 48; i++) writes.push(upsert(round * 100 + i));
    const answers = await Promise.all([change, ...writes]);
    const c = answers[0];
    assert.ok(c.status === 200, `round ${round}: catalog change -> ${c.status} ${c.text}`);
    for (const a of answers.slice(1)) {
      // before the delete: 200; after it: 404; a write queued behind a named-vector change finds
      // the old object dropped: 404 too (the client retries)
      assert.ok([200, 404].includes(a.status), `round ${round}: upsert -> ${a.status} ${a.text}`);
    }
    const h = await srv.request('GET', '/healthz', undefined, { timeoutMs: 5000 });
    assert.equal(h.status, 200);
    await srv.request('DELETE', `/collections/${C}`, undefined, { timeoutMs: ANSWER_MS });
  }
});
