// Access-control corrections of issue 10: prw is Qdrant's points read-write; a JWT sent to a
// server without jwt_rbac is told so and the start-up log names the active credentials; audit
// records name the role or user and what changed; is_tenant keeps Qdrant's meaning until the
// first tenant is declared (and tenant-scoped permissions work either way); concurrent edits of a
// role lose nothing.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { jwt, keyEnv, ROOT_KEY } from './lib/auth.mjs';
import { startServer } from './lib/server.mjs';

const root = { 'api-key': ROOT_KEY };
let srv;

async function ok(headers, method, p, body) {
  const r = await srv.request(method, p, body, { headers });
  assert.ok(r.status >= 200 && r.status < 300 && r.json?.status === 'ok', `${method} ${p} -> ${r.status} ${r.text}`);
  return r.json.result;
}

async function status(headers, method, p, body) {
  return (await srv.request(method, p, body, { headers })).status;
}

const vec = (i) => [1, i % 5, 0.5, 0.1];

before(async () => {
  srv = await startServer({ insecure: false, env: keyEnv() });
});

after(async () => {
  await srv?.cleanup();
});

describe('item 1: prw is points read-write', () => {
  test('payload set/overwrite/delete/clear and batches of them; no payload indexes', async () => {
    await ok(root, 'PUT', '/collections/prw_c', { vectors: { size: 4, distance: 'Dot' } });
    await ok(root, 'PUT', '/collections/prw_c/points?wait=true', { points: [1, 2, 3].map((id) => ({ id, vector: vec(id), payload: { a: id } })) });
    const prw = { authorization: `Bearer ${jwt({ access: [{ collection: 'prw_c', access: 'prw' }] })}` };
    const P = '/collections/prw_c/points';
    await ok(prw, 'POST', `${P}/payload?wait=true`, { payload: { b: 1 }, points: [1] });
    await ok(prw, 'PUT', `${P}/payload?wait=true`, { payload: { c: 1 }, points: [2] });
    await ok(prw, 'POST', `${P}/payload/delete?wait=true`, { keys: ['a'], points: [3] });
    await ok(prw, 'POST', `${P}/payload/clear?wait=true`, { points: [3] });
    await ok(prw, 'POST', `${P}/batch?wait=true`, { operations: [{ set_payload: { payload: { d: 1 }, points: [1] } }, { upsert: { points: [{ id: 4, vector: vec(4) }] } }] });
    const p1 = await ok(root, 'GET', `${P}/1`);
    assert.deepEqual(p1.payload, { a: 1, b: 1, d: 1 });
    assert.equal(await status(prw, 'PUT', '/collections/prw_c/index?wait=true', { field_name: 'a', field_schema: 'integer' }), 403);
  });
});

describe('item 2: verbs add up; an upsert needs create for new ids and update for existing ones', () => {
  const up = (ids, extra = {}) => ({ points: ids.map((id) => ({ id, vector: vec(id), payload: { team: 'acme', ...extra } })) });

  before(async () => {
    await ok(root, 'PUT', '/collections/verbs', { vectors: { size: 4, distance: 'Dot' } });
    await ok(root, 'PUT', '/collections/verbs/points?wait=true', up([1, 2]));
  });

  test('create + update held separately (tenant-scoped) grant the upsert', async () => {
    await ok(root, 'PUT', '/collections/verbs_t', { vectors: { size: 4, distance: 'Dot' } });
    await ok(root, 'PUT', '/collections/verbs_t/index?wait=true', { field_name: 'team', field_schema: { type: 'keyword', is_tenant: true } });
    await ok(root, 'POST', '/collections/verbs_t/tenants', { name: 'acme' });
    await ok(root, 'POST', '/collections/verbs_t/tenants', { name: 'beta' });
    await ok(root, 'POST', '/auth/roles', {
      name: 'tm_split',
      permissions: [
        { action: 'create:data', collection: 'verbs_t', tenant: 'acme' },
        { action: 'update:data', collection: 'verbs_t', tenant: 'acme' },
      ],
    });
    const u = { 'api-key': (await ok(root, 'POST', '/auth/users/tm_split_u', { roles: ['tm_split'] })).api_key };
    await ok(u, 'PUT', '/collections/verbs_t/points?wait=true', up([1, 2]));
    await ok(u, 'PUT', '/collections/verbs_t/points?wait=true', up([1], { v: 2 }));
    assert.equal(await status(u, 'PUT', '/collections/verbs_t/points?wait=true', { points: [{ id: 3, vector: vec(3), payload: { team: 'beta' } }] }), 403);
  });

  test('a create-only role adds points but cannot change existing ones', async () => {
    await ok(root, 'POST', '/auth/roles', { name: 'adder', permissions: [{ action: 'create:data', collection: 'verbs' }] });
    const u = { 'api-key': (await ok(root, 'POST', '/auth/users/adder_u', { roles: ['adder'] })).api_key };
    await ok(u, 'PUT', '/collections/verbs/points?wait=true', up([10, 11]));
    const r = await srv.request('PUT', '/collections/verbs/points?wait=true', up([1]), { headers: u });
    assert.equal(r.status, 403, r.text);
    assert.match(r.json.status.error, /point 1 exists.*update:data/);
    // The same through a batch, and a batch mixing a new and an existing id writes nothing.
    await ok(u, 'POST', '/collections/verbs/points/batch?wait=true', { operations: [{ upsert: up([12]) }] });
    assert.equal(await status(u, 'POST', '/collections/verbs/points/batch?wait=true', { operations: [{ upsert: up([13, 2]) }] }), 403);
    assert.equal((await srv.request('GET', '/collections/verbs/points/13', undefined, { headers: root })).status, 404);
    // It may not change payloads either.
    assert.equal(await status(u, 'POST', '/collections/verbs/points/payload?wait=true', { payload: { x: 1 }, points: [10] }), 403);
  });

  test('an update-only role changes existing points but cannot add', async () => {
    await ok(root, 'POST', '/auth/roles', { name: 'changer', permissions: [{ action: 'update:data', collection: 'verbs' }] });
    const u = { 'api-key': (await ok(root, 'POST', '/auth/users/changer_u', { roles: ['changer'] })).api_key };
    await ok(u, 'PUT', '/collections/verbs/points?wait=true', up([1], { v: 3 }));
    const r = await srv.request('PUT', '/collections/verbs/points?wait=true', up([99]), { headers: u });
    assert.equal(r.status, 403, r.text);
    assert.match(r.json.status.error, /point 99 does not exist.*create:data/);
  });

  test('per-verb rows: create only within its filter, update anywhere', async () => {
    await ok(root, 'POST', '/auth/roles', {
      name: 'mixed',
      permissions: [
        { action: 'create:data', collection: 'verbs', filter: { must: [{ key: 'team', match: { value: 'acme' } }] } },
        { action: 'update:data', collection: 'verbs' },
      ],
    });
    const u = { 'api-key': (await ok(root, 'POST', '/auth/users/mixed_u', { roles: ['mixed'] })).api_key };
    await ok(u, 'PUT', '/collections/verbs/points?wait=true', up([20]));
    assert.equal(await status(u, 'PUT', '/collections/verbs/points?wait=true', { points: [{ id: 21, vector: vec(21), payload: { team: 'beta' } }] }), 403);
    await ok(u, 'PUT', '/collections/verbs/points?wait=true', { points: [{ id: 2, vector: vec(2), payload: { team: 'beta' } }] });
  });
});

describe('item 3: credentials a server accepts are said, not guessed', () => {
  test('a JWT sent to a server without jwt_rbac is refused saying JWTs are off', async () => {
    const plain = await startServer({ insecure: false, env: { AEGIS__SERVICE__API_KEY: ROOT_KEY } });
    try {
      const r = await plain.request('GET', '/collections', undefined, { headers: { authorization: `Bearer ${jwt({ access: 'r' })}` } });
      assert.equal(r.status, 401);
      assert.match(r.json.status.error, /JWTs are not enabled.*service\.jwt_rbac/);
      assert.match(plain.stderr, /authentication: root key from service\.api_key; read-only key off; JWTs \(HS256\) off/);
      assert.match(plain.stderr, new RegExp(`listening on http://127\\.0\\.0\\.1:${plain.port} \\(no TLS\\)`));
    } finally {
      await plain.cleanup();
    }
    assert.match(srv.stderr, /\(\+ service\.alt_api_key\); read-only key on; JWTs \(HS256\) on/);
  });
});

describe('item 4: audit records name the object and the change', () => {
  test('roles and users: created, granted, removed, replaced, assigned', async () => {
    await ok(root, 'POST', '/auth/roles', { name: 'aud_role', permissions: [{ action: 'read:data', collection: 'a*' }] });
    await ok(root, 'POST', '/auth/roles/aud_role/permissions', { permissions: [{ action: 'read:collections', collection: 'a*' }] });
    await ok(root, 'DELETE', '/auth/roles/aud_role/permissions', { permissions: [{ action: 'read:data', collection: 'a*' }] });
    await ok(root, 'PUT', '/auth/roles/aud_role', { permissions: [{ action: 'read:data', collection: 'b*' }] });
    await ok(root, 'POST', '/auth/users/aud_user', { roles: ['aud_role'] });
    await ok(root, 'POST', '/auth/users/aud_user/deactivate');
    const recs = await ok(root, 'GET', '/auth/audit?limit=50');
    const find = (pred, what) => {
      const r = recs.find(pred);
      assert.ok(r, `no audit record for ${what}: ${JSON.stringify(recs.slice(0, 6))}`);
      return r;
    };
    const created = find((r) => r.route === '/auth/roles' && r.method === 'POST', 'role creation');
    assert.equal(created.resource.role, 'aud_role');
    assert.deepEqual(created.detail.granted, [{ action: 'read:data', collection: 'a*' }]);
    const added = find((r) => r.route === '/auth/roles/{role}/permissions' && r.method === 'POST', 'permissions added');
    assert.deepEqual(added.detail.granted, [{ action: 'read:collections', collection: 'a*' }]);
    const removed = find((r) => r.route === '/auth/roles/{role}/permissions' && r.method === 'DELETE', 'permissions removed');
    assert.deepEqual(removed.detail.removed, [{ action: 'read:data', collection: 'a*' }]);
    const replaced = find((r) => r.route === '/auth/roles/{role}' && r.method === 'PUT', 'role replaced');
    assert.deepEqual(replaced.detail.granted, [{ action: 'read:data', collection: 'b*' }]);
    assert.deepEqual(replaced.detail.removed, [{ action: 'read:collections', collection: 'a*' }]);
    const user = find((r) => r.route === '/auth/users/{id}' && r.method === 'POST', 'user creation');
    assert.equal(user.resource.user, 'aud_user');
    assert.deepEqual(user.detail.roles, ['aud_role']);
    assert.ok(!JSON.stringify(user).includes('ag_'), 'no key in the record');
    const deact = find((r) => r.route === '/auth/users/{id}/deactivate', 'deactivation');
    assert.equal(deact.detail.change, 'deactivated');
  });
});

describe('item 5: is_tenant is a storage hint until the first tenant is declared', () => {
  test("Qdrant's multitenancy recipe works unchanged; tenant-scoped permissions work either way", async () => {
    await ok(root, 'PUT', '/collections/mt', { vectors: { size: 4, distance: 'Dot' } });
    await ok(root, 'PUT', '/collections/mt/index?wait=true', { field_name: 'group_id', field_schema: { type: 'keyword', is_tenant: true } });
    // No tenant API: any group_id goes, as in Qdrant.
    const pts = [
      { id: 1, vector: vec(1), payload: { group_id: 'acme-eu' } },
      { id: 2, vector: vec(2), payload: { group_id: 'acme-us' } },
      { id: 3, vector: vec(3), payload: { group_id: 'beta' } },
    ];
    await ok(root, 'PUT', '/collections/mt/points?wait=true', { points: pts });
    // A role scoped to tenants acme* sees exactly those rows (the pattern itself is the filter).
    await ok(root, 'POST', '/auth/roles', { name: 'acme_reader', permissions: [{ action: 'read:data', collection: 'mt', tenant: 'acme*' }] });
    const user = await ok(root, 'POST', '/auth/users/acme_u', { roles: ['acme_reader'] });
    const u = { 'api-key': user.api_key };
    const ids = (await ok(u, 'POST', '/collections/mt/points/scroll', { limit: 10 })).points.map((p) => p.id).sort();
    assert.deepEqual(ids, [1, 2]);
    const check = await ok(root, 'POST', '/auth/check', { principal: { user: 'acme_u' }, action: 'read:data', collection: 'mt' });
    assert.equal(check.allowed, true);
    assert.equal(check.restricted, true);
    // The first declaration starts enforcement, and the answer says so.
    const first = await ok(root, 'POST', '/collections/mt/tenants', { name: 'acme-eu' });
    assert.match(first.enforcement, /^started/);
    const second = await ok(root, 'POST', '/collections/mt/tenants', { name: 'beta' });
    assert.equal(second.enforcement, 'on');
    assert.equal(await status(root, 'PUT', '/collections/mt/points?wait=true', { points: [{ id: 9, vector: vec(9), payload: { group_id: 'nobody' } }] }), 403);
    // Declared: the scope now covers the declared, active tenants it matches.
    const after = (await ok(u, 'POST', '/collections/mt/points/scroll', { limit: 10 })).points.map((p) => p.id).sort();
    assert.deepEqual(after, [1]);
  });
});

describe('item 6: concurrent edits of one role', () => {
  test('twenty parallel additions all land', async () => {
    await ok(root, 'POST', '/auth/roles', { name: 'busy', permissions: [] });
    await Promise.all(
      Array.from({ length: 20 }, (_, i) => ok(root, 'POST', '/auth/roles/busy/permissions', { permissions: [{ action: 'read:data', collection: `c${i}` }] })),
    );
    const role = await ok(root, 'GET', '/auth/roles/busy');
    assert.equal(role.permissions.length, 20, JSON.stringify(role.permissions));
  });
});
