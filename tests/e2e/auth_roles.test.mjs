// Roles, database users and the access-management API (issue 5; docs/PERMISSIONS.md) against the
// real server, secured (service.api_key set, no --insecure): the seed's team scenarios, wildcard
// forward-compatibility, escalation attempts, immediate revocation, /auth/me, /auth/check and
// JWT `roles` claims. Every expectation is written out, never derived from the server.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { startServer } from './lib/server.mjs';

const ROOT_KEY = 'e2e-roles-root-key-0123456789abcdef012345';
const DIM = 4;
const VEC = { size: DIM, distance: 'Cosine' };
const KEY_RE = /^ag_[0-9a-f]{12}_[A-Za-z0-9_-]{43}[0-9a-f]{6}$/;

let srv;
// Requests expected to fail authentication come from their own loopback addresses, so the
// per-address throttle never affects the other tests.
let addrSeq = 10;
const freshAddr = () => `127.0.0.${addrSeq++}`;

function call(cred, method, path, body, { addr } = {}) {
  const headers = {};
  if (cred?.key) headers['api-key'] = cred.key;
  if (cred?.bearer) headers.authorization = `Bearer ${cred.bearer}`;
  return srv.request(method, path, body, { headers, localAddress: addr });
}

const root = { key: ROOT_KEY };

async function ok(cred, method, path, body) {
  const r = await call(cred, method, path, body);
  assert.ok(r.status >= 200 && r.status < 300 && r.json?.status === 'ok', `${method} ${path} -> ${r.status} ${r.text}`);
  return r.json.result;
}

async function status(cred, method, path, body, opts) {
  const r = await call(cred, method, path, body, opts);
  return r.status;
}

async function denied(cred, method, path, body, expected = 403) {
  const r = await call(cred, method, path, body);
  assert.equal(r.status, expected, `${method} ${path}: expected ${expected}, got ${r.status} ${r.text}`);
  assert.equal(typeof r.json?.status?.error, 'string');
  return r.json.status.error;
}

async function makeRole(name, permissions, cred = root) {
  return ok(cred, 'POST', '/auth/roles', { name, permissions });
}

async function makeUser(id, roles, cred = root) {
  const r = await ok(cred, 'POST', `/auth/users/${id}`, { roles });
  assert.match(r.api_key, KEY_RE);
  return { key: r.api_key };
}

async function makeCollection(name, cred = root) {
  return ok(cred, 'PUT', `/collections/${name}`, { vectors: VEC });
}

const points = (ids) => ({ points: ids.map((id) => ({ id, vector: [1, id % 3, 0.5, 0.25], payload: { n: id } })) });
const search = { vector: [1, 0, 0, 0], limit: 3 };

before(async () => {
  srv = await startServer({
    insecure: false,
    env: { AEGIS__SERVICE__API_KEY: ROOT_KEY, AEGIS__SERVICE__JWT_RBAC: 'true' },
  });
});

after(async () => {
  await srv?.cleanup();
});

describe('team scenarios of the seed', () => {
  test('data engineer: TargetCollection* schema + create/read/update data, no data delete', async () => {
    await makeRole('rw_role', [
      {
        action: 'manage:collections',
        collection: 'TargetCollection*',
      },
      { action: 'create:data', collection: 'TargetCollection*' },
      { action: 'read:data', collection: 'TargetCollection*' },
      { action: 'update:data', collection: 'TargetCollection*' },
      { action: 'read:cluster' },
    ]);
    const de = await makeUser('data-engineer', ['rw_role']);
    await makeCollection('UnrelatedCollection');
    await ok(root, 'PUT', '/collections/UnrelatedCollection/points?wait=true', points([1]));

    // A new matching collection: create, ingest, search, change params, index.
    await ok(de, 'PUT', '/collections/TargetCollectionSales', { vectors: VEC });
    await ok(de, 'PUT', '/collections/TargetCollectionSales/points?wait=true', points([1, 2, 3]));
    const hits = await ok(de, 'POST', '/collections/TargetCollectionSales/points/search', search);
    assert.equal(hits.length, 3);
    await ok(de, 'PATCH', '/collections/TargetCollectionSales', { optimizers_config: { indexing_threshold: 20000 } });
    await ok(de, 'PUT', '/collections/TargetCollectionSales/index?wait=true', { field_name: 'n', field_schema: 'integer' });
    await ok(de, 'POST', '/collections/TargetCollectionSales/points/payload?wait=true', { payload: { x: 1 }, points: [1] });

    // No data delete.
    const msg = await denied(de, 'POST', '/collections/TargetCollectionSales/points/delete?wait=true', { points: [1] });
    assert.match(msg, /delete:data/);
    const count = await ok(de, 'POST', '/collections/TargetCollectionSales/points/count', { exact: true });
    assert.equal(count.count, 3);

    // Other collections are out of reach.
    await denied(de, 'PUT', '/collections/OtherTeam', { vectors: VEC });
    await denied(de, 'GET', '/collections/UnrelatedCollection');
    await denied(de, 'POST', '/collections/UnrelatedCollection/points/search', search);
    await denied(de, 'PUT', '/collections/UnrelatedCollection/points?wait=true', points([9]));
    await denied(de, 'DELETE', '/collections/UnrelatedCollection');
    const list = await ok(de, 'GET', '/collections');
    assert.deepEqual(list.collections.map((c) => c.name), ['TargetCollectionSales']);
    // Nor the access-management API.
    await denied(de, 'GET', '/auth/roles/rw_role');
    await denied(de, 'POST', '/auth/roles', { name: 'x', permissions: [] });

    // Schema power includes dropping its own collections.
    await ok(de, 'DELETE', '/collections/TargetCollectionSales');
  });

  test('analyst: read:collections + read:data can search but not write or change schema', async () => {
    await makeCollection('TargetCollectionA');
    await ok(root, 'PUT', '/collections/TargetCollectionA/points?wait=true', points([1, 2]));
    await makeRole('analyst', [
      { action: 'read:collections', collection: 'TargetCollection*' },
      { action: 'read:data', collection: 'TargetCollection*' },
    ]);
    const an = await makeUser('analyst-1', ['analyst']);
    assert.equal((await ok(an, 'POST', '/collections/TargetCollectionA/points/search', search)).length, 2);
    await ok(an, 'GET', '/collections/TargetCollectionA');
    await ok(an, 'POST', '/collections/TargetCollectionA/points/scroll', { limit: 10 });
    await denied(an, 'PUT', '/collections/TargetCollectionA/points?wait=true', points([3]));
    await denied(an, 'POST', '/collections/TargetCollectionA/points/payload?wait=true', { payload: { x: 1 }, points: [1] });
    await denied(an, 'POST', '/collections/TargetCollectionA/points/delete?wait=true', { points: [1] });
    await denied(an, 'PATCH', '/collections/TargetCollectionA', { optimizers_config: { indexing_threshold: 1000 } });
    await denied(an, 'PUT', '/collections/TargetCollectionA/index', { field_name: 'n', field_schema: 'integer' });
    await denied(an, 'PUT', '/collections/TargetCollectionNew', { vectors: VEC });
    await denied(an, 'DELETE', '/collections/TargetCollectionA');
  });

  test('operator with the predefined root role has full control', async () => {
    const op = await makeUser('operator', ['root']);
    await ok(op, 'PUT', '/collections/anything-at-all', { vectors: VEC });
    await ok(op, 'PUT', '/collections/anything-at-all/points?wait=true', points([1]));
    await ok(op, 'POST', '/collections/anything-at-all/points/delete?wait=true', { points: [1] });
    await ok(op, 'DELETE', '/collections/anything-at-all');
    await makeRole('made-by-operator', [{ action: 'manage:data', collection: 'ops*' }], op);
    const u = await makeUser('made-by-operator-user', ['root'], op);
    assert.ok(u.key);
    const me = await ok(op, 'GET', '/auth/me');
    assert.equal(me.kind, 'user');
    assert.deepEqual(me.roles, ['root']);
  });
});

test('wildcard scopes cover collections created after the role; others stay denied', async () => {
  await makeRole('project-a-reader', [
    { action: 'read:collections', collection: 'ProjectA*' },
    { action: 'read:data', collection: 'ProjectA*' },
  ]);
  const reader = await makeUser('project-a-reader', ['project-a-reader']);
  // Before the collection exists the role already admits it: the answer is 404, not 403.
  assert.equal(await status(reader, 'POST', '/collections/ProjectA_later/points/search', search), 404);
  // Created after the role:
  await makeCollection('ProjectA_later');
  await makeCollection('ProjectB_later');
  await makeCollection('projecta_lowercase');
  await ok(root, 'PUT', '/collections/ProjectA_later/points?wait=true', points([1]));
  assert.equal((await ok(reader, 'POST', '/collections/ProjectA_later/points/search', search)).length, 1);
  await denied(reader, 'POST', '/collections/ProjectB_later/points/search', search);
  await denied(reader, 'GET', '/collections/projecta_lowercase'); // case-sensitive
  const names = (await ok(reader, 'GET', '/collections')).collections.map((c) => c.name);
  assert.deepEqual(names, ['ProjectA_later']);
});

describe('anti-escalation', () => {
  let admin;
  before(async () => {
    await makeCollection('support_data');
    await makeRole('role-admin', [
      { action: 'create:roles' },
      { action: 'update:roles' },
      { action: 'update:users' },
      { action: 'create:users' },
      { action: 'manage:data', collection: 'Customer*' },
      { action: 'read:data', collection: 'support_data', filter: { must: [{ key: 'department', match: { value: 'support' } }] } },
    ]);
    admin = await makeUser('role-admin', ['role-admin']);
  });

  test('creating a role broader than the caller is refused, a narrower one allowed', async () => {
    const msg = await denied(admin, 'POST', '/auth/roles', {
      name: 'too-broad',
      permissions: [{ action: 'read:data', collection: 'Customer*' }, { action: 'manage:data', collection: '*' }],
    });
    assert.match(msg, /permissions\[1\]/);
    assert.match(msg, /manage:data/);
    await denied(admin, 'POST', '/auth/roles', { name: 'other-prefix', permissions: [{ action: 'read:data', collection: 'Cust*' }] });
    await denied(admin, 'POST', '/auth/roles', { name: 'schema', permissions: [{ action: 'read:collections', collection: 'CustomerEU*' }] });
    // Pattern containment: Customer* covers CustomerEU*.
    await ok(admin, 'POST', '/auth/roles', { name: 'eu-writer', permissions: [{ action: 'write:data', collection: 'CustomerEU*' }] });
    assert.equal(await status(root, 'GET', '/auth/roles/too-broad'), 404);
  });

  test('adding manage:roles to its own role is refused', async () => {
    const msg = await denied(admin, 'POST', '/auth/roles/role-admin/permissions', { permissions: [{ action: 'manage:roles' }] });
    assert.match(msg, /manage:roles/);
    await denied(admin, 'PUT', '/auth/roles/role-admin', { permissions: [{ action: 'manage:roles' }, { action: 'manage:users' }] });
    await denied(admin, 'POST', '/auth/roles/role-admin/permissions', { permissions: [{ action: 'read:audit' }] });
    const role = await ok(root, 'GET', '/auth/roles/role-admin');
    assert.equal(role.permissions.length, 6);
  });

  test('assigning root (or any role it does not hold) is refused', async () => {
    const msg = await denied(admin, 'POST', '/auth/users/role-admin/roles', { roles: ['root'] });
    assert.match(msg, /role 'root'/);
    await denied(admin, 'POST', '/auth/users/newbie', { roles: ['root'] });
    await denied(admin, 'POST', '/auth/users/role-admin/roles', { roles: ['viewer'] });
    await denied(admin, 'POST', '/auth/users/role-admin/roles', { roles: ['analyst'] });
    assert.equal(await status(root, 'GET', '/auth/users/newbie'), 404);
    // A role within its own permissions can be assigned.
    await ok(admin, 'POST', '/auth/users/newbie', { roles: ['eu-writer'] });
    const me = await ok(admin, 'GET', '/auth/me');
    assert.deepEqual(me.roles, ['role-admin']);
  });

  test("rotating the key of a more powerful user (taking over its credential) is refused", async () => {
    await makeUser('powerful', ['root']);
    const msg = await denied(admin, 'POST', '/auth/users/powerful/rotate-key');
    assert.match(msg, /the key of user 'powerful'/);
    const r = await ok(admin, 'POST', '/auth/users/newbie/rotate-key');
    assert.match(r.api_key, KEY_RE);
  });

  test('widening a row filter is refused; the same filter is allowed', async () => {
    const support = { must: [{ key: 'department', match: { value: 'support' } }] };
    await denied(admin, 'POST', '/auth/roles', { name: 'unfiltered', permissions: [{ action: 'read:data', collection: 'support_data' }] });
    await denied(admin, 'POST', '/auth/roles', {
      name: 'other-filter',
      permissions: [{ action: 'read:data', collection: 'support_data', filter: { must: [{ key: 'department', match: { value: 'sales' } }] } }],
    });
    await denied(admin, 'POST', '/auth/roles', { name: 'wider-scope', permissions: [{ action: 'read:data', collection: 'support*', filter: support }] });
    await denied(admin, 'POST', '/auth/roles', { name: 'write-filtered', permissions: [{ action: 'write:data', collection: 'support_data', filter: support }] });
    await ok(admin, 'POST', '/auth/roles', { name: 'support-reader', permissions: [{ action: 'read:data', collection: 'support_data', filter: support }] });
  });

  test('the predefined roles cannot be changed or deleted, even by root', async () => {
    await denied(root, 'PUT', '/auth/roles/root', { permissions: [] });
    await denied(root, 'PUT', '/auth/roles/viewer', { permissions: [] });
    await denied(root, 'DELETE', '/auth/roles/root');
    await denied(root, 'DELETE', '/auth/roles/viewer');
    await denied(root, 'POST', '/auth/roles/viewer/permissions', { permissions: [{ action: 'read:audit' }] });
    await denied(root, 'POST', '/auth/roles', { name: 'root', permissions: [] }, 409);
    const r = await ok(root, 'GET', '/auth/roles/viewer');
    assert.equal(r.builtin, true);
  });

  test('minting a token is manage:roles and never broader than the caller', async () => {
    await denied(admin, 'POST', '/auth/token', { claims: { access: 'r' } });
    await makeRole('token-minter', [
      { action: 'manage:roles' },
      { action: 'read:data', collection: 'Customer*' },
      { action: 'read:collections', collection: 'Customer*' },
    ]);
    const minter = await makeUser('token-minter', ['token-minter']);
    const exp = Math.floor(Date.now() / 1000) + 600;
    await denied(minter, 'POST', '/auth/token', { claims: { access: 'r', exp } });
    await denied(minter, 'POST', '/auth/token', { claims: { roles: ['root'], exp } });
    await denied(minter, 'POST', '/auth/token', { claims: { access: [{ collection: 'CustomerX', access: 'rw' }], exp } });
    // sub is the minter's identity, set by the server (issue 8, finding 1d).
    await denied(minter, 'POST', '/auth/token', { claims: { access: [{ collection: 'CustomerX', access: 'r' }], exp, sub: 'svc' } }, 400);
    const t = await ok(minter, 'POST', '/auth/token', { claims: { access: [{ collection: 'CustomerX', access: 'r' }], exp } });
    assert.equal(t.token.split('.').length, 3);
    const me = await ok({ bearer: t.token }, 'GET', '/auth/me');
    assert.equal(me.kind, 'token');
    assert.equal(me.sub, 'user:token-minter');
  });
});

describe('validation', () => {
  test('bad permissions are 400 naming the permission', async () => {
    let msg = await denied(root, 'POST', '/auth/roles', { name: 'bad', permissions: [{ action: 'read:data' }, { action: 'read:data' }, { action: 'read:x' }] }, 400);
    assert.match(msg, /permissions\[2\]\.action: unknown resource 'x'/);
    msg = await denied(root, 'POST', '/auth/roles', { name: 'bad', permissions: [{ action: 'fly:data' }] }, 400);
    assert.match(msg, /permissions\[0\]\.action: unknown verb/);
    msg = await denied(root, 'POST', '/auth/roles', { name: 'bad', permissions: [{ action: 'read:roles', collection: 'x' }] }, 400);
    assert.match(msg, /permissions\[0\]\.collection/);
    msg = await denied(root, 'POST', '/auth/roles', { name: 'bad', permissions: [{ action: 'read:collections', filter: {} }] }, 400);
    assert.match(msg, /permissions\[0\]\.filter/);
    msg = await denied(root, 'POST', '/auth/roles', { name: 'bad', permissions: [{ action: 'read:data', filter: { must: [{ key: 'a', match: { nope: 1 } }] } }] }, 400);
    assert.match(msg, /permissions\[0\]\.filter/);
    await denied(root, 'POST', '/auth/roles', { name: 'has space', permissions: [] }, 400);
    await denied(root, 'POST', '/auth/roles', { name: 'x'.repeat(65), permissions: [] }, 400);
    await denied(root, 'POST', '/auth/users/bad$id', {}, 400);
    await denied(root, 'POST', '/auth/users/ok-id', { roles: ['no-such-role'] }, 400);
    await denied(root, 'POST', '/auth/roles', { name: 'extra', permissions: [], other: 1 }, 400);
    assert.equal(await status(root, 'GET', '/auth/roles/bad'), 404);
  });
});

describe('revocation is immediate', () => {
  test('rotate: the old key is dead on the next request, the new one works', async () => {
    const u = await makeUser('rotating', ['viewer']);
    await ok(u, 'GET', '/auth/me');
    const r = await ok(root, 'POST', '/auth/users/rotating/rotate-key');
    assert.match(r.api_key, KEY_RE);
    assert.notEqual(r.api_key, u.key);
    assert.equal(await status(u, 'GET', '/auth/me', undefined, { addr: freshAddr() }), 401);
    await ok({ key: r.api_key }, 'GET', '/auth/me');
  });

  test('deactivate and activate', async () => {
    const u = await makeUser('toggled', ['viewer']);
    await ok(u, 'GET', '/collections');
    const d = await ok(root, 'POST', '/auth/users/toggled/deactivate');
    assert.equal(d.active, false);
    assert.equal(await status(u, 'GET', '/collections', undefined, { addr: freshAddr() }), 401);
    await ok(root, 'POST', '/auth/users/toggled/activate');
    await ok(u, 'GET', '/collections');
  });

  test('delete user', async () => {
    const u = await makeUser('doomed', ['viewer']);
    await ok(u, 'GET', '/collections');
    await ok(root, 'DELETE', '/auth/users/doomed');
    assert.equal(await status(u, 'GET', '/collections', undefined, { addr: freshAddr() }), 401);
    assert.equal(await status(root, 'GET', '/auth/users/doomed'), 404);
  });

  test("delete a role, change a role's permissions, revoke a role", async () => {
    await makeCollection('revoke_me');
    await makeRole('temp-reader', [{ action: 'read:data', collection: 'revoke_*' }, { action: 'read:collections', collection: 'revoke_*' }]);
    await makeRole('temp-writer', [{ action: 'write:data', collection: 'revoke_*' }]);
    const u = await makeUser('holder', ['temp-reader', 'temp-writer']);
    await ok(u, 'POST', '/collections/revoke_me/points/search', search);
    await ok(u, 'PUT', '/collections/revoke_me/points?wait=true', points([1]));

    // Change: the writer role loses write on revoke_*.
    await ok(root, 'PUT', '/auth/roles/temp-writer', { permissions: [{ action: 'write:data', collection: 'elsewhere' }] });
    await denied(u, 'PUT', '/collections/revoke_me/points?wait=true', points([2]));
    // Remove one permission of the reader role.
    await ok(root, 'DELETE', '/auth/roles/temp-reader/permissions', { permissions: [{ action: 'read:collections', collection: 'revoke_*' }] });
    await denied(u, 'GET', '/collections/revoke_me');
    await ok(u, 'POST', '/collections/revoke_me/points/search', search);
    // Delete: every holder loses it at once.
    const del = await ok(root, 'DELETE', '/auth/roles/temp-reader');
    assert.equal(del.users_affected, 1);
    await denied(u, 'POST', '/collections/revoke_me/points/search', search);
    const shown = await ok(root, 'GET', '/auth/users/holder');
    assert.deepEqual(shown.roles, ['temp-writer']);
    // Revoke the remaining role.
    await ok(root, 'POST', '/auth/users/holder/roles', { roles: ['viewer'] });
    await ok(u, 'POST', '/collections/revoke_me/points/search', search);
    await ok(root, 'DELETE', '/auth/users/holder/roles', { roles: ['viewer'] });
    await denied(u, 'POST', '/collections/revoke_me/points/search', search);
  });
});

describe('introspection', () => {
  test('/auth/me answers who the caller is', async () => {
    const me = await ok(root, 'GET', '/auth/me');
    assert.equal(me.kind, 'root');
    await makeRole('me-role', [{ action: 'read:data', collection: 'mine*' }]);
    const u = await makeUser('me-user', ['me-role']);
    const m = await ok(u, 'GET', '/auth/me');
    assert.equal(m.kind, 'user');
    assert.equal(m.id, 'me-user');
    assert.deepEqual(m.roles, ['me-role']);
    assert.deepEqual(m.permissions, [{ action: 'read:data', collection: 'mine*' }, { action: 'read:profile' }]);
    assert.equal(m.expires_at, null);
    assert.ok(!JSON.stringify(m).includes(u.key.slice(16)));
    // A principal with no other permission still reads its own profile.
    const bare = await makeUser('bare-user', []);
    assert.equal((await ok(bare, 'GET', '/auth/me')).id, 'bare-user');
    await denied(bare, 'GET', '/auth/roles');
    // Listings show no secrets.
    const users = await ok(root, 'GET', '/auth/users');
    assert.ok(users.users.some((x) => x.id === 'me-user'));
    assert.ok(!JSON.stringify(users).includes(u.key.slice(16)));
    assert.ok(users.users.every((x) => !('api_key' in x) && !('key_hash' in x)));
  });

  test('/auth/check says whether and why', async () => {
    await makeRole('check-role', [{ action: 'write:data', collection: 'Check*' }]);
    await makeUser('checked', ['check-role']);
    let r = await ok(root, 'POST', '/auth/check', { principal: { user: 'checked' }, action: 'create:data', collection: 'CheckOne' });
    assert.equal(r.allowed, true);
    assert.deepEqual(r.granted_by, { action: 'write:data', collection: 'Check*' });
    assert.equal(r.principal.id, 'checked');
    r = await ok(root, 'POST', '/auth/check', { principal: { user: 'checked' }, action: 'delete:data', collection: 'CheckOne' });
    assert.equal(r.allowed, false);
    assert.equal(r.granted_by, null);
    assert.equal(r.missing, "delete:data on collection 'CheckOne'");
    r = await ok(root, 'POST', '/auth/check', { principal: { roles: ['viewer'] }, action: 'read:data', collection: 'x' });
    assert.equal(r.allowed, true);
    r = await ok(root, 'POST', '/auth/check', { action: 'delete:roles', role: 'anything' });
    assert.equal(r.allowed, true);
    assert.equal(r.principal.kind, 'root');
    await denied(root, 'POST', '/auth/check', { action: 'fly:away' }, 400);
    await denied(root, 'POST', '/auth/check', { principal: { user: 'ghost' }, action: 'read:data' }, 404);
    // read:roles is needed to ask at all.
    const u = await makeUser('no-check', ['check-role']);
    await denied(u, 'POST', '/auth/check', { action: 'read:data' });
  });

  test('scoped role and user administration', async () => {
    await makeRole('teamadmin', [
      { action: 'manage:roles', role: 'team-*' },
      { action: 'manage:users', user: 'team-*' },
      { action: 'read:data', collection: 'team*' },
    ]);
    const ta = await makeUser('teamadmin-user', ['teamadmin']);
    await ok(ta, 'POST', '/auth/roles', { name: 'team-reader', permissions: [{ action: 'read:data', collection: 'team-x' }] });
    await denied(ta, 'POST', '/auth/roles', { name: 'other-reader', permissions: [] });
    await ok(ta, 'POST', '/auth/users/team-bob', { roles: ['team-reader'] });
    await denied(ta, 'POST', '/auth/users/alice-x', { roles: [] });
    await denied(ta, 'POST', '/auth/users/checked/deactivate');
    const roles = await ok(ta, 'GET', '/auth/roles');
    assert.deepEqual(roles.roles.map((r) => r.name), ['team-reader']);
    const users = await ok(ta, 'GET', '/auth/users');
    assert.deepEqual(users.users.map((u) => u.id), ['team-bob']);
    await ok(ta, 'DELETE', '/auth/users/team-bob');
    await ok(ta, 'DELETE', '/auth/roles/team-reader');
  });
});

test('JWT roles claim carries the roles current permissions', async () => {
  await makeCollection('jwt_coll');
  await ok(root, 'PUT', '/collections/jwt_coll/points?wait=true', points([1, 2]));
  await makeRole('jwt-reader', [{ action: 'read:data', collection: 'jwt_*' }]);
  const exp = Math.floor(Date.now() / 1000) + 600;
  const { token } = await ok(root, 'POST', '/auth/token', { claims: { roles: ['jwt-reader'], exp } });
  const t = { bearer: token };
  assert.equal((await ok(t, 'POST', '/collections/jwt_coll/points/search', search)).length, 2);
  await denied(t, 'PUT', '/collections/jwt_coll/points?wait=true', points([3]));
  const me = await ok(t, 'GET', '/auth/me');
  assert.deepEqual(me.roles, ['jwt-reader']);
  assert.equal(me.expires_at, exp);
  // The token follows the role: widened, then deleted.
  await ok(root, 'POST', '/auth/roles/jwt-reader/permissions', { permissions: [{ action: 'write:data', collection: 'jwt_*' }] });
  await ok(t, 'PUT', '/collections/jwt_coll/points?wait=true', points([3]));
  await ok(root, 'DELETE', '/auth/roles/jwt-reader');
  await denied(t, 'POST', '/collections/jwt_coll/points/search', search);
  // A role that does not exist cannot be minted into a token.
  await denied(root, 'POST', '/auth/token', { claims: { roles: ['jwt-reader'], exp } }, 400);
});

test('roles and users survive a restart; keys keep working, old keys stay dead', async () => {
  await makeRole('durable', [{ action: 'read:collections', collection: 'dur*' }]);
  const u = await makeUser('durable-user', ['durable']);
  await makeCollection('dur_one');
  await srv.restart();
  await ok(u, 'GET', '/collections/dur_one');
  const role = await ok(root, 'GET', '/auth/roles/durable');
  assert.deepEqual(role.users, ['durable-user']);
  const r = await ok(root, 'POST', '/auth/users/durable-user/rotate-key');
  await srv.restart();
  assert.equal(await status(u, 'GET', '/collections/dur_one', undefined, { addr: freshAddr() }), 401);
  await ok({ key: r.api_key }, 'GET', '/collections/dur_one');
});
