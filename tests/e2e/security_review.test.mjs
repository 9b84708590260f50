// Regression tests for the security review (issue 8): minted tokens bound to their minter,
// aliases authorized against their collection, tenant enforcement that a data writer cannot
// switch off, activation and role listings under anti-escalation, refused control characters.
// Each test reproduces an attack that worked before the fix, against the real server.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';

import { jwt, keyEnv, nowS, ROOT_KEY } from './lib/auth.mjs';
import { startServer } from './lib/server.mjs';

const MAX_TTL = 600;
const KEY_RE = /^ag_[0-9a-f]{12}_[A-Za-z0-9_-]{43}[0-9a-f]{6}$/;

let srv;
const root = { key: ROOT_KEY };

function call(cred, method, urlPath, body) {
  const headers = {};
  if (cred?.key) headers['api-key'] = cred.key;
  if (cred?.bearer) headers.authorization = `Bearer ${cred.bearer}`;
  return srv.request(method, urlPath, body, { headers });
}

async function ok(cred, method, urlPath, body) {
  const r = await call(cred, method, urlPath, body);
  assert.ok(r.status >= 200 && r.status < 300 && r.json?.status === 'ok', `${method} ${urlPath} -> ${r.status} ${r.text}`);
  return r.json.result;
}

async function refused(cred, method, urlPath, body, expected = 403) {
  const r = await call(cred, method, urlPath, body);
  assert.equal(r.status, expected, `${method} ${urlPath}: expected ${expected}, got ${r.status} ${r.text}`);
  assert.equal(typeof r.json?.status?.error, 'string');
  return r.json.status.error;
}

const makeRole = (name, permissions) => ok(root, 'POST', '/auth/roles', { name, permissions });

async function makeUser(id, roles) {
  const r = await ok(root, 'POST', `/auth/users/${id}`, { roles });
  assert.match(r.api_key, KEY_RE);
  return { key: r.api_key };
}

async function makeCollection(name, ids = [1, 2]) {
  await ok(root, 'PUT', `/collections/${name}`, { vectors: { size: 4, distance: 'Dot' } });
  if (ids.length) {
    await ok(root, 'PUT', `/collections/${name}/points?wait=true`, {
      points: ids.map((id) => ({ id, vector: [1, id, 0, 0], payload: { n: id, ssn: `ssn-${name}-${id}` } })),
    });
  }
}

const scroll = (cred, c) => call(cred, 'POST', `/collections/${c}/points/scroll`, { limit: 10, with_payload: true });

before(async () => {
  srv = await startServer({ insecure: false, env: keyEnv({ AEGIS__SERVICE__MAX_TOKEN_TTL_SEC: String(MAX_TTL) }) });
});

after(async () => {
  await srv?.cleanup();
});

describe('finding 1: minted tokens never outlive or outgrow their minter', () => {
  test('(a) a copy minted without value_exists dies with the minting token', async () => {
    await makeCollection('staff', []);
    await ok(root, 'PUT', '/collections/staff/points?wait=true', { points: [{ id: 1, vector: [1, 0, 0, 0], payload: { role: 'minter' } }] });
    await makeCollection('ve_data');
    await makeRole('ve-minter', [
      { action: 'manage:roles' },
      { action: 'read:data', collection: 've_data' },
      { action: 'read:collections', collection: 've_data' },
    ]);
    const parent = {
      bearer: jwt({ roles: ['ve-minter'], value_exists: { collection: 'staff', matches: [{ key: 'role', value: 'minter' }] } }),
    };
    const { token } = await ok(parent, 'POST', '/auth/token', { claims: { access: [{ collection: 've_data', access: 'r' }] } });
    const child = { bearer: token };
    assert.equal((await scroll(child, 've_data')).status, 200);
    // Revoke the parent: its value_exists point goes away.
    await ok(root, 'POST', '/collections/staff/points/delete?wait=true', { points: [1] });
    assert.equal((await scroll(parent, 've_data')).status, 401);
    assert.equal((await scroll(child, 've_data')).status, 401, 'the minted copy must die with its minter');
    await refused(child, 'POST', '/auth/token', { claims: { access: [{ collection: 've_data', access: 'r' }] } }, 401);
  });

  test('(b) a user minter: expiry capped and shortened; dies when deactivated, re-keyed or deleted', async () => {
    await makeCollection('b_data');
    await makeRole('b-minter', [
      { action: 'manage:roles' },
      { action: 'read:data', collection: 'b_*' },
      { action: 'read:collections', collection: 'b_*' },
    ]);
    const u = await makeUser('b-user', ['b-minter']);
    const claims = { access: [{ collection: 'b_data', access: 'r' }] };
    const t0 = nowS();
    const noExp = await ok(u, 'POST', '/auth/token', { claims });
    assert.ok(noExp.exp >= t0 + MAX_TTL - 5 && noExp.exp <= nowS() + MAX_TTL, `exp ${noExp.exp}`);
    assert.equal(noExp.exp_shortened, true);
    const far = await ok(u, 'POST', '/auth/token', { claims: { ...claims, exp: t0 + 10 * 365 * 86400 } });
    assert.ok(far.exp <= nowS() + MAX_TTL, 'a longer request is shortened to the server maximum');
    assert.equal(far.exp_shortened, true);
    assert.equal(far.exp_limited_by, 'service.max_token_ttl_sec');
    const short = await ok(u, 'POST', '/auth/token', { claims: { ...claims, exp: t0 + 60 } });
    assert.equal(short.exp, t0 + 60);
    assert.equal(short.exp_shortened, false);
    const t = { bearer: noExp.token };
    assert.equal((await scroll(t, 'b_data')).status, 200);

    await ok(root, 'POST', '/auth/users/b-user/deactivate');
    assert.equal((await scroll(t, 'b_data')).status, 401, 'deactivated minter');
    await ok(root, 'POST', '/auth/users/b-user/activate');
    assert.equal((await scroll(t, 'b_data')).status, 200);
    const rotated = await ok(root, 'POST', '/auth/users/b-user/rotate-key');
    assert.equal((await scroll(t, 'b_data')).status, 401, 'the minter key was rotated');
    const t2 = { bearer: (await ok({ key: rotated.api_key }, 'POST', '/auth/token', { claims })).token };
    assert.equal((await scroll(t2, 'b_data')).status, 200);
    await ok(root, 'DELETE', '/auth/users/b-user');
    assert.equal((await scroll(t2, 'b_data')).status, 401, 'deleted minter');
  });

  test('(c) a token naming an empty role gains nothing its minter lacks when the role grows', async () => {
    await makeCollection('c_pub');
    await makeCollection('c_secret');
    await makeRole('c-minter', [
      { action: 'manage:roles' },
      { action: 'read:data', collection: 'c_pub' },
      { action: 'read:collections', collection: 'c_pub' },
    ]);
    await makeRole('oncall', []);
    const u = await makeUser('c-user', ['c-minter']);
    const t = { bearer: (await ok(u, 'POST', '/auth/token', { claims: { roles: ['oncall'] } })).token };
    assert.equal((await scroll(t, 'c_secret')).status, 403);
    // Root widens oncall to the secret collection: the minter never could read it.
    await ok(root, 'POST', '/auth/roles/oncall/permissions', {
      permissions: [{ action: 'read:data', collection: 'c_*' }, { action: 'read:collections', collection: 'c_*' }],
    });
    const r = await scroll(t, 'c_secret');
    assert.equal(r.status, 403, r.text);
    assert.ok(!r.text.includes('ssn-'), 'no ssn values');
    assert.match(r.json.status.error, /minter/);
    // What both the role and the minter allow works.
    assert.equal((await scroll(t, 'c_pub')).status, 200);
  });

  test('(d) sub is the minter; minted_by cannot be forged; the mint is audited without the token', async () => {
    await makeRole('d-minter', [
      { action: 'manage:roles' },
      { action: 'read:collections', collection: 'd_*' },
      { action: 'read:data', collection: 'd_*' },
    ]);
    const u = await makeUser('d-user', ['d-minter']);
    const claims = { access: [{ collection: 'd_x', access: 'r' }] };
    for (const extra of [{ sub: 'alice' }, { subject: 'alice' }, { minted_by: { kind: 'root' } }, { iat: nowS() }]) {
      const msg = await refused(u, 'POST', '/auth/token', { claims: { ...claims, ...extra } }, 400);
      assert.match(msg, /set by the server/);
    }
    const { token, sub } = await ok(u, 'POST', '/auth/token', { claims });
    assert.equal(sub, 'user:d-user');
    const me = await ok({ bearer: token }, 'GET', '/auth/me');
    assert.equal(me.sub, 'user:d-user');
    assert.equal(me.minted_by.kind, 'user');
    assert.equal(me.minted_by.id, 'd-user');
    assert.ok(me.minted_by.permissions.some((p) => p.action === 'manage:roles'));
    // A denial by the token is attributed to the minter's identity.
    await refused({ bearer: token }, 'POST', '/collections/zzz/points/scroll', { limit: 1 });
    const denials = await ok(root, 'GET', '/auth/audit?decision=deny&principal=user:d-user');
    assert.ok(denials.length >= 1, 'the denial names the minter');
    const mints = (await ok(root, 'GET', '/auth/audit?action=manage:roles')).filter((x) => x.route === '/auth/token' && x.decision === 'allow');
    const mine = mints.find((x) => x.principal.id === 'd-user');
    assert.ok(mine, JSON.stringify(mints));
    assert.deepEqual(mine.detail.claims.access, claims.access);
    assert.equal(mine.detail.claims.minted_by.kind, 'user');
    assert.equal(mine.detail.claims.minted_by.id, 'd-user');
    const logText = fs.readFileSync(path.join(srv.storage, 'audit', 'audit.log'), 'utf8');
    assert.ok(!logText.includes(token.split('.')[2]), 'the token signature never reaches the audit log');
  });

  test('a root-minted token still carries its minter and the server maximum', async () => {
    const r = await ok(root, 'POST', '/auth/token', { claims: { access: 'r' } });
    assert.equal(r.sub, 'root');
    assert.ok(r.exp <= nowS() + MAX_TTL);
    const me = await ok({ bearer: r.token }, 'GET', '/auth/me');
    assert.equal(me.sub, 'root');
  });
});

describe('finding 2: aliases are names, not security boundaries', () => {
  test('schema rights on pub* do not reach another collection through an alias', async () => {
    await makeCollection('secret');
    await makeCollection('pub');
    await makeRole('pub-manager', [
      { action: 'manage:collections', collection: 'pub*' },
      { action: 'read:data', collection: 'pub*' },
    ]);
    const m = await makeUser('pub-mgr', ['pub-manager']);
    // The attack: an alias under its own prefix pointing at the secret collection.
    const msg = await refused(m, 'POST', '/collections/aliases', { actions: [{ create_alias: { collection_name: 'secret', alias_name: 'pub_leak' } }] });
    assert.match(msg, /secret/);
    // Even an alias made by root does not open the collection behind it.
    await ok(root, 'POST', '/collections/aliases', { actions: [{ create_alias: { collection_name: 'secret', alias_name: 'pub_root_alias' } }] });
    const r = await scroll(m, 'pub_root_alias');
    assert.equal(r.status, 403, r.text);
    assert.ok(!r.text.includes('ssn-'));
    assert.ok(!r.json.status.error.includes("'secret'"), 'the denial does not tell what the alias points to');
    const q = await call(m, 'POST', '/collections/pub/points/query', { query: { recommend: { positive: [1] } }, lookup_from: { collection: 'pub_root_alias' }, limit: 2 });
    assert.equal(q.status, 403, q.text);
    // It cannot delete, rename or re-point an alias of the secret collection either.
    await refused(m, 'POST', '/collections/aliases', { actions: [{ delete_alias: { alias_name: 'pub_root_alias' } }] });
    await refused(m, 'POST', '/collections/aliases', { actions: [{ rename_alias: { old_alias_name: 'pub_root_alias', new_alias_name: 'pub_mine' } }] });
    // The alias listing hides aliases of collections the caller cannot read.
    const listed = (await ok(m, 'GET', '/aliases')).aliases.map((a) => a.alias_name);
    assert.ok(!listed.includes('pub_root_alias'), JSON.stringify(listed));
  });

  test('a collection-scoped manager can alias its own collections', async () => {
    await makeRole('pub-manager2', [
      { action: 'manage:collections', collection: 'pub*' },
      { action: 'read:data', collection: 'pub*' },
    ]);
    const m = await makeUser('pub-mgr2', ['pub-manager2']);
    await ok(m, 'POST', '/collections/aliases', { actions: [{ create_alias: { collection_name: 'pub', alias_name: 'pub_x' } }] });
    assert.equal((await scroll(m, 'pub_x')).status, 200);
    // Re-pointing its alias at the secret collection is refused, and nothing changes.
    await refused(m, 'POST', '/collections/aliases', { actions: [{ create_alias: { collection_name: 'secret', alias_name: 'pub_x' } }] });
    const all = (await ok(root, 'GET', '/aliases')).aliases;
    assert.equal(all.find((a) => a.alias_name === 'pub_x').collection_name, 'pub');
    await ok(m, 'POST', '/collections/aliases', { actions: [{ rename_alias: { old_alias_name: 'pub_x', new_alias_name: 'pub_y' } }] });
    await ok(m, 'POST', '/collections/aliases', { actions: [{ delete_alias: { alias_name: 'pub_y' } }] });
    // An alias named outside its prefix is refused even for its own collection.
    await refused(m, 'POST', '/collections/aliases', { actions: [{ create_alias: { collection_name: 'pub', alias_name: 'other' } }] });
  });

  test('/auth/check answers for the collection behind an alias', async () => {
    const r = await ok(root, 'POST', '/auth/check', { principal: { user: 'pub-mgr' }, action: 'read:data', collection: 'pub_root_alias' });
    assert.equal(r.allowed, false);
  });
});

describe('finding 6 and 12: tenant enforcement and what tenant errors tell', () => {
  const C = 'tn';
  const pt = (id, tenant) => ({ id, vector: [1, 0, 0, id], payload: tenant === undefined ? {} : { tenant } });

  before(async () => {
    await ok(root, 'PUT', `/collections/${C}`, { vectors: { size: 4, distance: 'Dot' } });
    await ok(root, 'PUT', `/collections/${C}/index?wait=true`, { field_name: 'tenant', field_schema: { type: 'keyword', is_tenant: true } });
    for (const t of ['acme', 'beta', 'gamma']) await ok(root, 'POST', `/collections/${C}/tenants`, { name: t });
    await ok(root, 'PUT', `/collections/${C}/points?wait=true`, { points: [pt(1, 'acme'), pt(2, 'beta'), pt(3, 'gamma')] });
    await ok(root, 'POST', `/collections/${C}/tenants/beta/deactivate`);
  });

  test('a data writer cannot drop, replace or shadow the tenant index while tenants are declared', async () => {
    const rw = { bearer: jwt({ access: [{ collection: C, access: 'rw' }] }) };
    await refused(rw, 'DELETE', `/collections/${C}/index/tenant?wait=true`, undefined, 409);
    await refused(rw, 'PUT', `/collections/${C}/index?wait=true`, { field_name: 'tenant', field_schema: 'keyword' }, 409);
    await refused(rw, 'PUT', `/collections/${C}/index?wait=true`, { field_name: 'tenant', field_schema: 'integer' }, 409);
    await refused(rw, 'PUT', `/collections/${C}/index?wait=true`, { field_name: 'aaa', field_schema: { type: 'keyword', is_tenant: true } }, 409);
    // Enforcement is intact: the inactive tenant stays invisible, undeclared tenants stay out.
    const ids = (await ok(rw, 'POST', `/collections/${C}/points/scroll`, { limit: 10 })).points.map((p) => p.id).sort();
    assert.deepEqual(ids, [1, 3]);
    assert.equal((await call(rw, 'PUT', `/collections/${C}/points?wait=true`, { points: [pt(9, 'nobody')] })).status, 403);
    // Other indexes are still the writer's to manage.
    await ok(rw, 'PUT', `/collections/${C}/index?wait=true`, { field_name: 'color', field_schema: 'keyword' });
    await ok(rw, 'DELETE', `/collections/${C}/index/color?wait=true`);
  });

  test('without declared tenants the is_tenant index is an ordinary index', async () => {
    await ok(root, 'PUT', '/collections/tn_plain', { vectors: { size: 4, distance: 'Dot' } });
    await ok(root, 'PUT', '/collections/tn_plain/index?wait=true', { field_name: 'tenant', field_schema: { type: 'keyword', is_tenant: true } });
    await ok(root, 'DELETE', '/collections/tn_plain/index/tenant?wait=true');
  });

  test('the tenant key holds exactly one string', async () => {
    for (const bad of [['acme'], ['acme', 'gamma'], 7, null]) {
      const msg = await refused(root, 'PUT', `/collections/${C}/points?wait=true`, { points: [pt(10, bad)] }, 400);
      assert.match(msg, /tenant/);
    }
    const moved = await call(root, 'POST', `/collections/${C}/points/payload?wait=true`, { payload: { tenant: ['acme'] }, points: [1] });
    assert.equal(moved.status, 400, moved.text);
    await ok(root, 'PUT', `/collections/${C}/points?wait=true`, { points: [pt(10, 'acme')] });
  });

  test('undeclared, inactive and out-of-scope tenants get one answer for a caller who cannot read tenants', async () => {
    await makeRole('acme-writer', [{ action: 'write:data', collection: C, tenant: 'acme' }]);
    const w = await makeUser('acme-w', ['acme-writer']);
    const answers = [];
    for (const t of ['ghost', 'beta', 'gamma']) {
      const r = await call(w, 'PUT', `/collections/${C}/points?wait=true`, { points: [pt(50, t)] });
      answers.push(`${r.status} ${r.json?.status?.error}`);
    }
    assert.equal(new Set(answers).size, 1, answers.join('\n'));
    assert.match(answers[0], /^403 /);
    // A caller that may read the tenants is told which it is.
    assert.match(await refused(root, 'PUT', `/collections/${C}/points?wait=true`, { points: [pt(50, 'ghost')] }), /not declared/);
    assert.match(await refused(root, 'PUT', `/collections/${C}/points?wait=true`, { points: [pt(50, 'beta')] }), /inactive/);
  });
});

describe('findings 11 and 12: users and roles', () => {
  test('update:users cannot re-activate a user holding more than the caller', async () => {
    await makeRole('powerful', [{ action: 'manage:data' }, { action: 'read:collections' }]);
    await makeRole('user-admin', [{ action: 'update:users' }, { action: 'read:users' }]);
    const boss = await makeUser('boss', ['powerful']);
    const admin = await makeUser('uadmin', ['user-admin']);
    await ok(root, 'POST', '/auth/users/boss/deactivate');
    const msg = await refused(admin, 'POST', '/auth/users/boss/activate');
    assert.match(msg, /activation of user 'boss'/);
    assert.equal((await call(boss, 'GET', '/collections')).status, 401, 'still deactivated');
    // Deactivating takes nothing from anyone: allowed.
    await ok(root, 'POST', '/auth/users/boss/activate');
    await ok(admin, 'POST', '/auth/users/boss/deactivate');
    await ok(root, 'POST', '/auth/users/boss/activate');
    assert.equal((await call(boss, 'GET', '/collections')).status, 200);
  });

  test('a role shows its holders only to callers with read:users on them', async () => {
    await makeRole('role-reader', [{ action: 'read:roles' }]);
    const rr = await makeUser('rreader', ['role-reader']);
    const seen = await ok(rr, 'GET', '/auth/roles/powerful');
    assert.deepEqual(seen.users, []);
    const listed = (await ok(rr, 'GET', '/auth/roles')).roles.find((r) => r.name === 'powerful');
    assert.deepEqual(listed.users, []);
    assert.deepEqual((await ok(root, 'GET', '/auth/roles/powerful')).users, ['boss']);
  });
});

describe('finding 9: control characters never reach the log as line breaks', () => {
  test('a JWT sub with a newline is refused', async () => {
    const forged = 'x\n2026-12-02T00:00:00Z INFO forged line';
    const r = await call({ bearer: jwt({ access: 'r', sub: forged }) }, 'GET', '/collections');
    assert.equal(r.status, 401);
    assert.match(r.json.status.error, /control characters/);
    assert.ok(!srv.stderr.includes('INFO forged line'), 'no forged line in the server log');
  });
});
