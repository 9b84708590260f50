// The management plane (issue 10; docs/SECURITY.md "Keys, management keys and invites",
// docs/API.md): database API keys, management keys, invites, account settings and /cluster against
// the real server, secured. Every expectation is written out, never derived from the server.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { ROOT_KEY, RO_KEY, keyEnv, nowS } from './lib/auth.mjs';
import { TIME_SCALE, sleep, startServer } from './lib/server.mjs';

const API_KEY_RE = /^ag_k[0-9a-f]{11}_[A-Za-z0-9_-]{43}[0-9a-f]{6}$/;
const MGMT_KEY_RE = /^ag_m[0-9a-f]{11}_[A-Za-z0-9_-]{43}[0-9a-f]{6}$/;
const CODE_RE = /^ag_i[0-9a-f]{11}_[A-Za-z0-9_-]{43}[0-9a-f]{6}$/;
const VEC = { size: 4, distance: 'Cosine' };

let srv;
// Each group of requests that may fail authentication gets its own loopback source address, so
// the per-address throttle never leaks between tests.
let addrSeq = 1;
const freshAddr = () => `127.9.${Math.floor(addrSeq / 250)}.${(addrSeq++ % 250) + 1}`;

const root = { key: ROOT_KEY };

function call(cred, method, path, body, { addr } = {}) {
  const headers = {};
  if (cred?.key) headers['api-key'] = cred.key;
  return srv.request(method, path, body, { headers, localAddress: addr || freshAddr() });
}

async function ok(cred, method, path, body, opts) {
  const r = await call(cred, method, path, body, opts);
  assert.ok(r.status >= 200 && r.status < 300 && r.json?.status === 'ok', `${method} ${path} -> ${r.status} ${r.text}`);
  return r.json.result;
}

async function fails(cred, method, path, body, want, re, opts) {
  const r = await call(cred, method, path, body, opts);
  assert.equal(r.status, want, `${method} ${path}: expected ${want}, got ${r.status} ${r.text}`);
  assert.equal(typeof r.json?.status?.error, 'string', r.text);
  if (re) assert.match(r.json.status.error, re);
  return r.json.status.error;
}

const st = async (cred, method, path, body, opts) => (await call(cred, method, path, body, opts)).status;

async function makeUser(id, permissions) {
  await ok(root, 'POST', '/auth/roles', { name: `${id}_role`, permissions });
  const r = await ok(root, 'POST', `/auth/users/${id}`, { roles: [`${id}_role`] });
  return { key: r.api_key };
}

async function apiKey(cred, body) {
  const r = await ok(cred, 'POST', '/auth/api-keys', { name: 'k', ...body });
  assert.match(r.key, API_KEY_RE);
  return { key: r.key, id: r.id, rec: r };
}

async function mgmtKey(cred, body) {
  const r = await ok(cred, 'POST', '/auth/management-keys', { name: 'm', ...body });
  assert.match(r.key, MGMT_KEY_RE);
  return { key: r.key, id: r.id, rec: r };
}

before(async () => {
  srv = await startServer({ insecure: false, env: keyEnv({ AEGIS__SERVICE__AUTH_MAX_FAILURES: '5' }) });
  for (const c of ['A', 'B']) {
    await ok(root, 'PUT', `/collections/${c}`, { vectors: VEC });
    await ok(root, 'PUT', `/collections/${c}/points?wait=true`, { points: [{ id: 1, vector: [1, 0, 0, 0], payload: { t: c } }] });
  }
});

after(async () => {
  await srv?.cleanup();
});

describe('database API keys', () => {
  test('lifecycle: shown once, listed without secrets, revoked at once', async () => {
    const k = await apiKey(root, { name: 'reader', access: [{ collection: 'A', access: 'r' }] });
    assert.equal(k.rec.name, 'reader');
    assert.equal(k.rec.prefix, `ag_${k.id}_`);
    assert.ok(k.rec.expires_at > nowS());
    assert.equal(await st(k, 'POST', '/collections/A/points/count', { exact: true }), 200);
    assert.equal(await st(k, 'POST', '/collections/B/points/count', { exact: true }), 403);
    assert.equal(await st(k, 'PUT', '/collections/A/points?wait=true', { points: [{ id: 9, vector: [1, 1, 1, 1] }] }), 403);
    const list = await call(root, 'GET', '/auth/api-keys');
    assert.equal(list.status, 200);
    assert.ok(!list.text.includes(k.key), 'the list shows the secret');
    const mine = list.json.result.keys.find((x) => x.id === k.id);
    assert.equal(mine.name, 'reader');
    assert.deepEqual(mine.access, [{ collection: 'A', access: 'r' }]);
    assert.equal(mine.key, undefined);
    assert.equal(typeof mine.last_used, 'number', 'last_used is recorded after a use');
    const one = await call(root, 'GET', `/auth/api-keys/${k.id}`);
    assert.equal(one.status, 200);
    assert.ok(!one.text.includes(k.key.slice(16)));
    const me = await ok(k, 'GET', '/auth/me');
    assert.equal(me.kind, 'api_key');
    assert.equal(me.id, k.id);
    await ok(root, 'DELETE', `/auth/api-keys/${k.id}`);
    assert.equal(await st(k, 'POST', '/collections/A/points/count', { exact: true }), 401);
    await fails(root, 'GET', `/auth/api-keys/${k.id}`, undefined, 404, /does not exist/);
    await fails(root, 'DELETE', `/auth/api-keys/${k.id}`, undefined, 404);
  });

  test('expiry: an expired key is 401; expires_at is checked and capped', async () => {
    const k = await apiKey(root, { access: 'r', expires_at: nowS() + 2 * TIME_SCALE });
    assert.equal(await st(k, 'GET', '/collections'), 200);
    assert.equal((await ok(root, 'GET', `/auth/api-keys/${k.id}`)).expired, false);
    await sleep(2500 * TIME_SCALE);
    assert.equal(await st(k, 'GET', '/collections'), 401);
    assert.equal((await ok(root, 'GET', `/auth/api-keys/${k.id}`)).expired, true);
    await fails(root, 'POST', '/auth/api-keys', { name: 'x', access: 'r', expires_at: nowS() - 10 }, 400, /expires_at/);
    await fails(root, 'POST', '/auth/api-keys', { name: 'x', access: 'r', expires_at: 'soon' }, 400, /expires_at/);
    const far = await ok(root, 'POST', '/auth/api-keys', { name: 'far', access: 'r', expires_at: nowS() + 10 * 365 * 86400 });
    assert.equal(far.expires_at_shortened, true);
    assert.ok(far.expires_at <= nowS() + 86400 + 5, `capped by service.max_token_ttl_sec: ${far.expires_at}`);
  });

  test('rotation: a new secret, the old one dead at once', async () => {
    const k = await apiKey(root, { access: 'r' });
    const r = await ok(root, 'POST', `/auth/api-keys/${k.id}/rotate`);
    assert.match(r.key, API_KEY_RE);
    assert.notEqual(r.key, k.key);
    assert.equal(r.id, k.id);
    assert.equal(await st(k, 'GET', '/collections'), 401);
    assert.equal(await st({ key: r.key }, 'GET', '/collections'), 200);
    await fails(root, 'POST', '/auth/api-keys/kffffffffff0/rotate', undefined, 404);
  });

  test('allowed_ips: a request from elsewhere is 401', async () => {
    const k = await apiKey(root, { access: 'r', allowed_ips: ['127.5.5.0/24', '::1'] });
    assert.equal(await st(k, 'GET', '/collections', undefined, { addr: '127.5.5.7' }), 200);
    assert.equal(await st(k, 'GET', '/collections', undefined, { addr: '127.5.6.1' }), 401);
    const single = await apiKey(root, { access: 'r', allowed_ips: ['127.5.7.3'] });
    assert.equal(await st(single, 'GET', '/collections', undefined, { addr: '127.5.7.3' }), 200);
    assert.equal(await st(single, 'GET', '/collections', undefined, { addr: '127.5.7.4' }), 401);
    await fails(root, 'POST', '/auth/api-keys', { name: 'x', access: 'r', allowed_ips: ['10.0.0.0/33'] }, 400, /allowed_ips\[0\]/);
    await fails(root, 'POST', '/auth/api-keys', { name: 'x', access: 'r', allowed_ips: ['127.0.0.1', 'example.com'] }, 400, /allowed_ips\[1\]/);
  });

  test('anti-escalation: never broader than the creator', async () => {
    const u = await makeUser('keymaker', [
      { action: 'write:api_keys' },
      { action: 'read:collections', collection: 'A' },
      { action: 'read:data', collection: 'A' },
    ]);
    const before = (await ok(root, 'GET', '/auth/api-keys')).keys.length;
    await fails(u, 'POST', '/auth/api-keys', { name: 'x', access: [{ collection: 'B', access: 'r' }] }, 403, /access: cannot grant/);
    await fails(u, 'POST', '/auth/api-keys', { name: 'x', access: [{ collection: 'A', access: 'rw' }] }, 403, /access: cannot grant/);
    await fails(u, 'POST', '/auth/api-keys', { name: 'x', access: 'm' }, 403, /access: cannot grant/);
    await fails(u, 'POST', '/auth/api-keys', { name: 'x', access: 'r' }, 403, /access: cannot grant/);
    await fails(u, 'POST', '/auth/api-keys', { name: 'x', roles: ['root'] }, 403, /roles: cannot grant/);
    assert.equal((await ok(root, 'GET', '/auth/api-keys')).keys.length, before, 'nothing stored');
    const k = await apiKey(u, { access: [{ collection: 'A', access: 'r' }] });
    assert.equal(await st(k, 'POST', '/collections/A/points/count', { exact: true }), 200);
    // no delete:api_keys → cannot revoke
    assert.equal(await st(u, 'DELETE', `/auth/api-keys/${k.id}`), 403);
    // rotation hands out the key again: the rotating caller must hold all of it
    const big = await apiKey(root, { access: 'm' });
    await fails(u, 'POST', `/auth/api-keys/${big.id}/rotate`, undefined, 403, /access: cannot grant/);
    assert.equal(await st(big, 'GET', '/collections'), 200, 'the refused rotation changed nothing');
    const r = await ok(u, 'POST', `/auth/api-keys/${k.id}/rotate`);
    assert.equal(await st({ key: r.key }, 'POST', '/collections/A/points/count', { exact: true }), 200);
  });

  test('a key holding roles follows them; a deleted role kills the key', async () => {
    await ok(root, 'POST', '/auth/roles', { name: 'key_role', permissions: [{ action: 'read:collections', collection: 'B' }, { action: 'read:data', collection: 'B' }] });
    const k = await apiKey(root, { roles: ['key_role'] });
    assert.deepEqual(k.rec.roles, ['key_role']);
    assert.equal(await st(k, 'POST', '/collections/B/points/count', { exact: true }), 200);
    assert.equal(await st(k, 'POST', '/collections/A/points/count', { exact: true }), 403);
    await ok(root, 'PUT', '/auth/roles/key_role', { permissions: [{ action: 'read:collections', collection: 'A' }, { action: 'read:data', collection: 'A' }] });
    assert.equal(await st(k, 'POST', '/collections/A/points/count', { exact: true }), 200);
    assert.equal(await st(k, 'POST', '/collections/B/points/count', { exact: true }), 403);
    await ok(root, 'DELETE', '/auth/roles/key_role');
    assert.equal(await st(k, 'GET', '/collections'), 401);
  });

  test('bound to its creator: the key never outlives or outgrows the user', async () => {
    const perms = [{ action: 'write:api_keys' }, { action: 'read:collections' }, { action: 'read:data' }];
    const u = await makeUser('creator1', perms);
    const k = await apiKey(u, { access: [{ collection: 'A', access: 'r' }] });
    assert.equal(await st(k, 'POST', '/collections/A/points/count', { exact: true }), 200);
    // the user loses read:data → the key can no longer read
    await ok(root, 'PUT', '/auth/roles/creator1_role', { permissions: [{ action: 'write:api_keys' }, { action: 'read:collections' }] });
    assert.equal(await st(k, 'POST', '/collections/A/points/count', { exact: true }), 403);
    await ok(root, 'PUT', '/auth/roles/creator1_role', { permissions: perms });
    assert.equal(await st(k, 'POST', '/collections/A/points/count', { exact: true }), 200);
    // deactivated or re-keyed → 401
    await ok(root, 'POST', '/auth/users/creator1/deactivate');
    assert.equal(await st(k, 'GET', '/collections'), 401);
    await ok(root, 'POST', '/auth/users/creator1/activate');
    assert.equal(await st(k, 'GET', '/collections'), 200);
    // deleted → 401
    await ok(root, 'DELETE', '/auth/users/creator1');
    assert.equal(await st(k, 'GET', '/collections'), 401);

    const u2 = await makeUser('creator2', perms);
    const k2 = await apiKey(u2, { access: [{ collection: 'A', access: 'r' }] });
    await ok(root, 'POST', '/auth/users/creator2/rotate-key');
    assert.equal(await st(k2, 'GET', '/collections'), 401);
  });

  test('bad input: a clear 400 naming the field, nothing stored', async () => {
    const before = (await ok(root, 'GET', '/auth/api-keys')).keys.length;
    await fails(root, 'POST', '/auth/api-keys', { name: 'x', access: 'r', colour: 'red' }, 400, /colour/);
    await fails(root, 'POST', '/auth/api-keys', { name: 'x', access: 'x' }, 400, /access/);
    await fails(root, 'POST', '/auth/api-keys', { name: 'x', access: [{ collection: 'A', access: 'zz' }] }, 400, /access/);
    await fails(root, 'POST', '/auth/api-keys', { name: 'x', roles: ['no_such_role'] }, 400, /roles\[0\]/);
    await fails(root, 'POST', '/auth/api-keys', { name: 'x', access: 'r', roles: ['viewer'] }, 400, /exactly one/);
    await fails(root, 'POST', '/auth/api-keys', { name: 'x' }, 400, /exactly one/);
    await fails(root, 'POST', '/auth/api-keys', { access: 'r' }, 400, /name/);
    await fails(root, 'POST', '/auth/api-keys', { name: '', access: 'r' }, 400, /name/);
    assert.equal((await ok(root, 'GET', '/auth/api-keys')).keys.length, before);
    // malformed keys: wrong checksum, wrong shape
    const k = await apiKey(root, { access: 'r' });
    const flipped = k.key.slice(0, -1) + (k.key.endsWith('0') ? '1' : '0');
    assert.equal(await st({ key: flipped }, 'GET', '/collections'), 401);
    assert.equal(await st({ key: k.key.slice(0, -2) }, 'GET', '/collections'), 401);
    assert.equal(await st({ key: k.key.replace('ag_k', 'ag_m') }, 'GET', '/collections'), 401);
  });

  test('a viewer cannot see or create keys', async () => {
    assert.equal(await st({ key: RO_KEY }, 'GET', '/auth/api-keys'), 403);
    assert.equal(await st({ key: RO_KEY }, 'POST', '/auth/api-keys', { name: 'x', access: 'r' }), 403);
  });
});

describe('management keys', () => {
  test('lifecycle; only management permissions; cannot read data', async () => {
    const m = await mgmtKey(root, { permissions: [{ action: 'read:users' }, { action: 'read:roles' }] });
    assert.equal(await st(m, 'GET', '/auth/users'), 200);
    assert.equal(await st(m, 'GET', '/auth/roles'), 200);
    assert.equal(await st(m, 'GET', '/collections/A'), 403);
    assert.equal(await st(m, 'POST', '/collections/A/points/count', { exact: true }), 403);
    assert.equal(await st(m, 'POST', '/collections/A/points/scroll', { limit: 1 }), 403);
    const list = await call(root, 'GET', '/auth/management-keys');
    assert.ok(list.json.result.keys.some((x) => x.id === m.id));
    assert.ok(!list.text.includes(m.key));
    // an API key id is not a management key id
    assert.equal(await st(root, 'GET', `/auth/api-keys/${m.id}`), 404);
    const r = await ok(root, 'POST', `/auth/management-keys/${m.id}/rotate`);
    assert.equal(await st(m, 'GET', '/auth/users'), 401);
    assert.equal(await st({ key: r.key }, 'GET', '/auth/users'), 200);
    await ok(root, 'DELETE', `/auth/management-keys/${m.id}`);
    assert.equal(await st({ key: r.key }, 'GET', '/auth/users'), 401);
  });

  test('data permissions are refused, naming the permission; cluster_data only when explicit', async () => {
    const before = (await ok(root, 'GET', '/auth/management-keys')).keys.length;
    await fails(root, 'POST', '/auth/management-keys', { name: 'x', permissions: [{ action: 'read:users' }, { action: 'read:data' }] }, 400, /read:data.*not a management permission/);
    await fails(root, 'POST', '/auth/management-keys', { name: 'x', permissions: [{ action: 'manage:collections' }] }, 400, /collections/);
    await fails(root, 'POST', '/auth/management-keys', { name: 'x', roles: ['viewer'] }, 400, /not a management permission/);
    await fails(root, 'POST', '/auth/management-keys', { name: 'x', access: 'r' }, 400, /access/);
    await fails(root, 'POST', '/auth/management-keys', { name: 'x', permissions: [{ action: 'read:nonsense' }] }, 400, /permissions\[0\]\.action: unknown resource/);
    assert.equal((await ok(root, 'GET', '/auth/management-keys')).keys.length, before);
    const m = await mgmtKey(root, { permissions: [{ action: 'read:cluster_data' }] });
    assert.equal(await st(m, 'POST', '/collections/A/points/count', { exact: true }), 200);
    assert.equal(await st(m, 'PUT', '/collections/A/points?wait=true', { points: [{ id: 7, vector: [1, 1, 1, 1] }] }), 403);
  });

  test('a role that later gains a data permission does not give it to a management key', async () => {
    await ok(root, 'POST', '/auth/roles', { name: 'mk_role', permissions: [{ action: 'read:users' }] });
    const m = await mgmtKey(root, { roles: ['mk_role'] });
    assert.equal(await st(m, 'GET', '/auth/users'), 200);
    await ok(root, 'POST', '/auth/roles/mk_role/permissions', { permissions: [{ action: 'read:data' }, { action: 'read:collections' }] });
    assert.equal(await st(m, 'POST', '/collections/A/points/count', { exact: true }), 403);
    assert.equal(await st(m, 'GET', '/collections/A'), 403);
    assert.equal(await st(m, 'GET', '/auth/users'), 200);
  });

  test('a management key creates API keys within its own permissions, and they die with it', async () => {
    const m = await mgmtKey(root, { permissions: [{ action: 'write:api_keys' }, { action: 'read:cluster_data' }] });
    await fails(m, 'POST', '/auth/api-keys', { name: 'x', access: [{ collection: 'A', access: 'rw' }] }, 403, /access: cannot grant/);
    const k = await apiKey(m, { access: [{ collection: 'A', access: 'r' }] });
    assert.equal(await st(k, 'POST', '/collections/A/points/count', { exact: true }), 200);
    await ok(root, 'DELETE', `/auth/management-keys/${m.id}`);
    assert.equal(await st(k, 'POST', '/collections/A/points/count', { exact: true }), 401);
  });

  test('expiry and allowed_ips for management keys', async () => {
    const m = await mgmtKey(root, { permissions: [{ action: 'read:users' }], expires_at: nowS() + 2 * TIME_SCALE, allowed_ips: ['127.6.0.0/16'] });
    assert.equal(await st(m, 'GET', '/auth/users', undefined, { addr: '127.6.1.1' }), 200);
    assert.equal(await st(m, 'GET', '/auth/users', undefined, { addr: '127.7.1.1' }), 401);
    await sleep(2500 * TIME_SCALE);
    assert.equal(await st(m, 'GET', '/auth/users', undefined, { addr: '127.6.1.2' }), 401);
  });

  test('keys creating keys: bound through the chain, which has a depth limit', async () => {
    const perms = [{ action: 'write:management_keys' }, { action: 'read:users' }];
    const chain = [await mgmtKey(root, { permissions: perms })];
    for (let i = 0; i < 4; i++) {
      const next = await mgmtKey(chain[chain.length - 1], { permissions: perms });
      assert.equal(await st(next, 'GET', '/auth/users'), 200, `level ${i + 2}`);
      chain.push(next);
    }
    await fails(chain[4], 'POST', '/auth/management-keys', { name: 'x', permissions: perms }, 403, /too deep/);
    // revoking a key in the middle kills everything below it
    await ok(root, 'DELETE', `/auth/management-keys/${chain[2].id}`);
    assert.equal(await st(chain[1], 'GET', '/auth/users'), 200);
    for (const k of chain.slice(2)) assert.equal(await st(k, 'GET', '/auth/users'), 401);
  });

  test('a key never outlives the key that made it', async () => {
    const parent = await mgmtKey(root, { permissions: [{ action: 'write:api_keys' }, { action: 'read:cluster_data' }], expires_at: nowS() + 600 });
    const child = await apiKey(parent, { access: [{ collection: 'A', access: 'r' }], expires_at: nowS() + 3000 });
    assert.equal(child.rec.expires_at, parent.rec.expires_at);
    assert.equal(child.rec.expires_at_shortened, true);
  });

  test('anti-escalation for management keys', async () => {
    const u = await makeUser('mkmaker', [{ action: 'write:management_keys' }, { action: 'read:users' }]);
    await fails(u, 'POST', '/auth/management-keys', { name: 'x', permissions: [{ action: 'delete:users' }] }, 403, /permissions: cannot grant/);
    const m = await mgmtKey(u, { permissions: [{ action: 'read:users' }] });
    assert.equal(await st(m, 'GET', '/auth/users'), 200);
    assert.equal(await st(m, 'DELETE', '/auth/users/mkmaker'), 403);
  });
});

describe('invites', () => {
  async function invite(cred, body) {
    const r = await ok(cred, 'POST', '/auth/invites', body);
    assert.match(r.code, CODE_RE);
    return r;
  }

  test('accepted exactly once; the new user holds the invited roles', async () => {
    await ok(root, 'POST', '/auth/roles', { name: 'inv_reader', permissions: [{ action: 'read:collections', collection: 'A' }, { action: 'read:data', collection: 'A' }] });
    const inv = await invite(root, { user_id: 'newbie', roles: ['inv_reader'], expires_in: 3600 });
    const pending = await call(root, 'GET', '/auth/invites');
    assert.ok(pending.json.result.invites.some((i) => i.id === inv.invite.id && i.user_id === 'newbie'));
    assert.ok(!pending.text.includes(inv.code));
    const addr = freshAddr();
    const acc = await srv.request('POST', '/auth/invites/accept', { code: inv.code }, { localAddress: addr });
    assert.equal(acc.status, 201, acc.text);
    assert.deepEqual(acc.json.result.user.roles, ['inv_reader']);
    const user = { key: acc.json.result.api_key };
    assert.equal(await st(user, 'POST', '/collections/A/points/count', { exact: true }), 200);
    assert.equal(await st(user, 'POST', '/collections/B/points/count', { exact: true }), 403);
    const replay = await srv.request('POST', '/auth/invites/accept', { code: inv.code }, { localAddress: addr });
    assert.equal(replay.status, 401);
    assert.ok(!(await ok(root, 'GET', '/auth/invites')).invites.some((i) => i.id === inv.invite.id), 'no longer pending');
  });

  test('expired, revoked, used and unknown codes get the same answer', async () => {
    const expired = await invite(root, { user_id: 'late', roles: [], expires_in: 1 });
    const revoked = await invite(root, { user_id: 'revoked', roles: [] });
    await ok(root, 'DELETE', `/auth/invites/${revoked.invite.id}`);
    await fails(root, 'DELETE', `/auth/invites/${revoked.invite.id}`, undefined, 404);
    const used = await invite(root, { user_id: 'used', roles: [] });
    assert.equal((await srv.request('POST', '/auth/invites/accept', { code: used.code }, { localAddress: freshAddr() })).status, 201);
    await sleep(2200);
    const unknown = expired.code.slice(0, 4) + 'fffffffffff' + expired.code.slice(15);
    const answers = [];
    for (const code of [expired.code, revoked.code, used.code, unknown, 'not-a-code']) {
      const r = await srv.request('POST', '/auth/invites/accept', { code }, { localAddress: freshAddr() });
      assert.equal(r.status, 401, `${code}: ${r.text}`);
      answers.push(r.json.status.error);
    }
    assert.equal(new Set(answers).size, 1, `different answers: ${answers}`);
    assert.equal(await st(root, 'GET', '/auth/users/late'), 404);
    assert.equal(await st(root, 'GET', '/auth/users/revoked'), 404);
  });

  test('concurrent accepts: exactly one wins', async () => {
    const inv = await invite(root, { user_id: 'racer', roles: [] });
    const rs = await Promise.all(Array.from({ length: 8 }, () => srv.request('POST', '/auth/invites/accept', { code: inv.code }, { localAddress: freshAddr() })));
    const codes = rs.map((r) => r.status).sort();
    assert.deepEqual(codes, [201, 401, 401, 401, 401, 401, 401, 401]);
  });

  test('wrong codes count as failed authentications from the address', async () => {
    const addr = freshAddr();
    const bad = 'ag_i00000000000_' + 'A'.repeat(43) + '000000';
    const statuses = [];
    for (let i = 0; i < 7; i++) statuses.push((await srv.request('POST', '/auth/invites/accept', { code: bad }, { localAddress: addr })).status);
    assert.equal(statuses[0], 401);
    assert.equal(statuses[6], 429, `statuses ${statuses}`);
  });

  test('anti-escalation at creation and again at acceptance', async () => {
    await ok(root, 'POST', '/auth/roles', { name: 'inv_writer', permissions: [{ action: 'write:data', collection: 'A' }] });
    // Inviting creates a user: without create:users it is refused, before the id is looked up.
    const noCreate = await makeUser('inviter0', [{ action: 'write:invites' }]);
    await fails(noCreate, 'POST', '/auth/invites', { user_id: 'x0', roles: [] }, 403, /create:users/);
    await fails(noCreate, 'POST', '/auth/invites', { user_id: 'inviter0', roles: [] }, 403, /create:users/);
    const u = await makeUser('inviter1', [{ action: 'write:invites' }, { action: 'create:users' }, { action: 'read:data', collection: 'A' }, { action: 'read:collections', collection: 'A' }]);
    await fails(u, 'POST', '/auth/invites', { user_id: 'x1', roles: ['inv_writer'] }, 403, /roles: cannot grant/);
    await fails(u, 'POST', '/auth/invites', { user_id: 'x1', roles: ['no_such'] }, 400, /roles\[0\]/);
    await fails(u, 'POST', '/auth/invites', { user_id: 'bad id!', roles: [] }, 400, /user_id/);
    await fails(root, 'POST', '/auth/invites', { user_id: 'inviter1', roles: [] }, 409, /already exists/);
    const inv = await invite(u, { user_id: 'x2', roles: ['inv_reader'] });
    const inv2 = await invite(u, { user_id: 'x3', roles: ['inv_reader'] });
    // the inviter loses what the invite gives → refused at acceptance
    await ok(root, 'PUT', '/auth/roles/inviter1_role', { permissions: [{ action: 'write:invites' }, { action: 'create:users' }] });
    assert.equal((await srv.request('POST', '/auth/invites/accept', { code: inv.code }, { localAddress: freshAddr() })).status, 401);
    // the inviter deleted → refused
    await ok(root, 'DELETE', '/auth/users/inviter1');
    assert.equal((await srv.request('POST', '/auth/invites/accept', { code: inv2.code }, { localAddress: freshAddr() })).status, 401);
    assert.equal(await st(root, 'GET', '/auth/users/x2'), 404);
    assert.equal(await st(root, 'GET', '/auth/users/x3'), 404);
  });

  test('a user id taken meanwhile: 409, the code is spent and the audit log says so', async () => {
    const inv = await invite(root, { user_id: 'taken', roles: [] });
    await ok(root, 'POST', '/auth/users/taken', { roles: [] });
    const r = await srv.request('POST', '/auth/invites/accept', { code: inv.code }, { localAddress: freshAddr() });
    assert.equal(r.status, 409, r.text);
    assert.equal((await srv.request('POST', '/auth/invites/accept', { code: inv.code }, { localAddress: freshAddr() })).status, 401);
    const recs = await ok(root, 'GET', '/auth/audit?limit=50');
    assert.ok(recs.some((x) => x.detail?.invite_id === inv.invite.id && x.detail.change === 'spent, user not created'), 'no audit record of the spent code');
  });

  test('expires_in is capped by the account maximum', async () => {
    const r = await invite(root, { user_id: 'capped', roles: [], expires_in: 10 * 365 * 86400 });
    assert.equal(r.expires_in_shortened, true);
    assert.ok(r.invite.expires_at <= nowS() + 7 * 86400 + 5);
    await fails(root, 'POST', '/auth/invites', { user_id: 'x', roles: [], expires_in: 0 }, 400, /expires_in/);
  });
});

describe('account and cluster', () => {
  test('GET/PATCH /account: settings are honoured, unknown ones refused', async () => {
    const a = await ok(root, 'GET', '/account');
    assert.equal(a.effective.max_key_ttl_sec, 86400);
    await fails(root, 'PATCH', '/account', { max_key_ttl: 5 }, 400, /max_key_ttl: unknown account setting/);
    await fails(root, 'PATCH', '/account', { max_key_ttl_sec: -1 }, 400, /max_key_ttl_sec/);
    await fails(root, 'PATCH', '/account', { max_key_ttl_sec: 100, default_key_ttl_sec: 200 }, 400, /default_key_ttl_sec/);
    const b = await ok(root, 'PATCH', '/account', { name: 'acme', max_key_ttl_sec: 100, default_key_ttl_sec: 50, max_invite_ttl_sec: 60 });
    assert.deepEqual(b.settings, { name: 'acme', max_key_ttl_sec: 100, default_key_ttl_sec: 50, max_invite_ttl_sec: 60 });
    const k = await ok(root, 'POST', '/auth/api-keys', { name: 'x', access: 'r', expires_at: nowS() + 1000 });
    assert.equal(k.expires_at_shortened, true);
    assert.ok(k.expires_at <= nowS() + 100);
    const d = await ok(root, 'POST', '/auth/api-keys', { name: 'x', access: 'r' });
    assert.ok(d.expires_at <= nowS() + 50 && d.expires_at >= nowS() + 45, `default lifetime: ${d.expires_at}`);
    const i = await ok(root, 'POST', '/auth/invites', { user_id: 'acct', roles: [], expires_in: 3600 });
    assert.equal(i.expires_in_shortened, true);
    await ok(root, 'PATCH', '/account', { max_key_ttl_sec: null, default_key_ttl_sec: null, max_invite_ttl_sec: null });
    assert.deepEqual((await ok(root, 'GET', '/account')).settings, { name: 'acme' });
    assert.equal(await st({ key: RO_KEY }, 'GET', '/account'), 403);
    assert.equal(await st({ key: RO_KEY }, 'PATCH', '/account', { name: 'evil' }), 403);
  });

  test('GET /cluster answers as Qdrant without distributed mode; changes are refused', async () => {
    assert.deepEqual(await ok(root, 'GET', '/cluster'), { status: 'disabled' });
    assert.deepEqual(await ok({ key: RO_KEY }, 'GET', '/cluster'), { status: 'disabled' });
    await fails(root, 'POST', '/cluster/recover', undefined, 405, /standalone mode/);
    await fails(root, 'DELETE', '/cluster/peer/1', undefined, 405, /standalone mode/);
    await fails({ key: RO_KEY }, 'POST', '/cluster/recover', undefined, 403, /update:clusters/);
    const k = await apiKey(root, { access: [{ collection: 'A', access: 'r' }] });
    await fails(k, 'GET', '/cluster', undefined, 403, /read:clusters/);
  });

  test('every permission of the Qdrant Cloud reference is accepted in a role', async () => {
    const names = [
      'read:roles', 'write:roles', 'delete:roles', 'read:management_keys', 'write:management_keys', 'delete:management_keys',
      'write:invites', 'read:invites', 'delete:invites', 'read:users', 'delete:users', 'read:api_keys', 'write:api_keys',
      'delete:api_keys', 'read:backups', 'write:backups', 'delete:backups', 'read:clusters', 'write:clusters', 'delete:clusters',
      'read:cluster_data', 'write:cluster_data', 'read:backup_schedules', 'write:backup_schedules', 'delete:backup_schedules',
      'read:hybrid_cloud_environments', 'write:hybrid_cloud_environments', 'delete:hybrid_cloud_environments',
      'read:payment_information', 'write:payment_information', 'read:account', 'write:account', 'delete:account', 'read:profile',
    ];
    await ok(root, 'POST', '/auth/roles', { name: 'cloud_catalog', permissions: names.map((action) => ({ action })) });
    await fails(root, 'POST', '/auth/roles', { name: 'bad_catalog', permissions: [{ action: 'read:hybrid_clouds' }] }, 400, /permissions\[0\]\.action: unknown resource 'hybrid_clouds'/);
  });
});

describe('audit', () => {
  test('changes are recorded naming the object, never a secret', async () => {
    const k = await apiKey(root, { name: 'audited', access: 'r' });
    const rot = await ok(root, 'POST', `/auth/api-keys/${k.id}/rotate`);
    await ok(root, 'DELETE', `/auth/api-keys/${k.id}`);
    const m = await mgmtKey(root, { permissions: [{ action: 'read:users' }] });
    const inv = await ok(root, 'POST', '/auth/invites', { user_id: 'audited_user', roles: [] });
    assert.equal((await srv.request('POST', '/auth/invites/accept', { code: inv.code }, { localAddress: freshAddr() })).status, 201);
    await ok(root, 'PATCH', '/account', { name: 'audited' });
    const r = await call(root, 'GET', '/auth/audit?limit=1000');
    assert.equal(r.status, 200);
    for (const secret of [k.key, rot.key, m.key, inv.code]) assert.ok(!r.text.includes(secret), 'a secret reached the audit log');
    const recs = r.json.result;
    const find = (pred, what) => {
      const x = recs.find(pred);
      assert.ok(x, `no audit record for ${what}`);
      return x;
    };
    const created = find((x) => x.action === 'create:api_keys' && x.detail?.key_id === k.id, 'key creation');
    assert.equal(created.detail.name, 'audited');
    assert.deepEqual(created.detail.grant, { access: 'r' });
    find((x) => x.action === 'update:api_keys' && x.detail?.key_id === k.id && x.detail.change === 'rotated', 'rotation');
    find((x) => x.action === 'delete:api_keys' && x.detail?.key_id === k.id && x.detail.change === 'revoked', 'revocation');
    find((x) => x.action === 'create:management_keys' && x.detail?.key_id === m.id, 'management key creation');
    find((x) => x.action === 'create:invites' && x.detail?.invite_id === inv.invite.id, 'invite');
    find((x) => x.route === '/auth/invites/accept' && x.detail?.user_id === 'audited_user' && x.detail.change === 'accepted', 'acceptance');
    find((x) => x.action === 'update:account' && x.detail?.changed?.name === 'audited', 'account change');
  });
});
