// The audit log and tenants (docs/SECURITY.md) against the real server, secured with keys
// and JWT RBAC (not --insecure):
//   - denials and authentication failures appear in GET /auth/audit with the right decision and
//     status and without the credential; collection changes are recorded; `aegis audit verify`
//     passes, and fails naming the line once a line is edited or deleted;
//   - tenants: declare, write only into declared active tenants, deactivate hides the tenant's
//     points from every read, activate shows them again, delete removes them; survives restart;
//   - the seed's tenant manager scoped to TargetTenant*, and the seed's customer-support token.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';

import { RO_KEY, ROOT_KEY, WRONG_KEY, freshAddr, jwt, keyEnv } from './lib/auth.mjs';
import { runAegis, startServer } from './lib/server.mjs';

let srv;
const root = { 'api-key': ROOT_KEY };
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'aegis-audit-e2e-'));

before(async () => {
  srv = await startServer({ insecure: false, env: keyEnv() });
});

after(async () => {
  await srv?.cleanup();
  fs.rmSync(tmp, { recursive: true, force: true });
});

const auditPath = () => path.join(srv.storage, 'audit', 'audit.log');

async function audit(query = '') {
  return srv.ok('GET', `/auth/audit${query}`, undefined, { headers: root });
}

const ids = (points) => points.map((p) => p.id).sort((a, b) => a - b);

async function scrollIds(coll, headers = root) {
  const r = await srv.ok('POST', `/collections/${coll}/points/scroll`, { limit: 100 }, { headers });
  return ids(r.points);
}

async function searchIds(coll, headers = root) {
  const r = await srv.ok('POST', `/collections/${coll}/points/search`, { vector: [1, 1, 1, 1], limit: 100 }, { headers });
  return ids(r);
}

async function count(coll, headers = root) {
  return (await srv.ok('POST', `/collections/${coll}/points/count`, { exact: true }, { headers })).count;
}

const pt = (id, tenant, extra = {}) => ({ id, vector: [id, 1, 1, 1], payload: tenant === undefined ? { ...extra } : { tenant, ...extra } });

describe('audit log', () => {
  const token = jwt({ access: 'r', sub: 'auditor-test' });

  test('denials and authentication failures are recorded without the credential', async () => {
    const bad = await srv.request('GET', '/collections', undefined, { headers: { 'api-key': WRONG_KEY }, localAddress: freshAddr() });
    assert.equal(bad.status, 401);
    const badJwt = await srv.request('GET', '/collections', undefined, {
      headers: { authorization: `Bearer ${jwt({ access: 'm' }, 'not-the-server-secret-0123456789abcdef')}` },
      localAddress: freshAddr(),
    });
    assert.equal(badJwt.status, 401);
    const denied = await srv.request('PUT', '/collections/aud_denied', { vectors: { size: 4, distance: 'Dot' } }, { headers: { authorization: `Bearer ${token}` } });
    assert.equal(denied.status, 403);

    const recs = await audit('?decision=deny');
    assert.ok(Array.isArray(recs));
    const failures = recs.filter((r) => r.status === 401);
    assert.ok(failures.length >= 2, JSON.stringify(recs));
    for (const f of failures) {
      assert.equal(f.decision, 'deny');
      assert.equal(f.principal.kind, 'none');
      assert.equal(f.route, '/collections');
      assert.ok(f.request_id && f.remote && f.time && f.prev && f.hash);
    }
    const d = recs.find((r) => r.status === 403 && r.resource.collection === 'aud_denied');
    assert.ok(d, JSON.stringify(recs));
    assert.equal(d.decision, 'deny');
    assert.equal(d.action, 'create:collections');
    assert.equal(d.principal.kind, 'token');
    assert.equal(d.principal.sub, 'auditor-test');
    assert.match(d.reason, /create:collections/);
    // Newest first.
    for (let i = 1; i < recs.length; i++) assert.ok(recs[i - 1].seq > recs[i].seq);

    const text = fs.readFileSync(auditPath(), 'utf8');
    for (const secret of [WRONG_KEY, ROOT_KEY, token, token.split('.')[2]]) assert.ok(!text.includes(secret), `audit log contains ${secret}`);
  });

  test('collection changes are recorded; reads are not', async () => {
    await srv.ok('PUT', '/collections/aud1', { vectors: { size: 4, distance: 'Dot' } }, { headers: root });
    await srv.ok('GET', '/collections/aud1', undefined, { headers: root });
    await srv.ok('PUT', '/collections/aud1/points?wait=true', { points: [pt(1)] }, { headers: root });
    await srv.ok('PUT', '/collections/aud1/index', { field_name: 'x', field_schema: 'keyword' }, { headers: root });
    await srv.ok('DELETE', '/collections/aud1', undefined, { headers: root });
    const recs = (await audit('?limit=1000')).filter((r) => r.resource.collection === 'aud1');
    const actions = recs.map((r) => `${r.method} ${r.action} ${r.status} ${r.decision}`).reverse();
    assert.deepEqual(actions, [
      'PUT create:collections 200 allow',
      'PUT update:payload_indexes 200 allow',
      'DELETE delete:collections 200 allow',
    ]);
    assert.equal(recs[0].principal.kind, 'root');
    // Filters: action glob, principal, time range, limit.
    const creates = await audit('?action=create:*&decision=allow');
    assert.ok(creates.every((r) => r.action.startsWith('create:') && r.decision === 'allow'));
    assert.ok(creates.length >= 1);
    const byRoot = await audit('?principal=root');
    assert.ok(byRoot.length >= 3 && byRoot.every((r) => r.principal.id === 'root'));
    assert.equal((await audit('?limit=1')).length, 1);
    const future = new Date(Date.now() + 3600_000).toISOString();
    assert.equal((await audit(`?from=${encodeURIComponent(future)}`)).length, 0);
    assert.ok((await audit(`?to=${encodeURIComponent(future)}`)).length > 0);
    const badLimit = await srv.request('GET', '/auth/audit?limit=5000', undefined, { headers: root });
    assert.equal(badLimit.status, 400);
    // The viewer role has no audit access (and that denial is audited too).
    const viewer = await srv.request('GET', '/auth/audit', undefined, { headers: { 'api-key': RO_KEY } });
    assert.equal(viewer.status, 403);
    assert.ok((await audit('?decision=deny&action=read:audit')).some((r) => r.principal.kind === 'viewer'));
  });

  test('aegis audit verify passes, and names an edited or deleted line', async () => {
    const ok = await runAegis(['audit', 'verify', '--storage', srv.storage]);
    assert.equal(ok.code, 0, ok.stderr + ok.stdout);
    assert.match(ok.stdout, /^ok: records 1\.\.\d+ \(\d+ records, 1 file\)/);

    const lines = fs.readFileSync(auditPath(), 'utf8').split('\n').filter(Boolean);
    assert.ok(lines.length >= 5);
    const edited = path.join(tmp, 'edited.log');
    const copy = [...lines];
    copy[2] = copy[2].replace('"deny"', '"allow"').replace('"allow"', '"allow"');
    if (copy[2] === lines[2]) copy[2] = copy[2].replace(/"status":\d+/, '"status":200');
    assert.notEqual(copy[2], lines[2]);
    fs.writeFileSync(edited, copy.join('\n') + '\n');
    const keyFile = path.join(srv.storage, 'audit.key');
    const r1 = await runAegis(['audit', 'verify', edited, '--key-file', keyFile]);
    assert.equal(r1.code, 1, r1.stdout + r1.stderr);
    assert.match(r1.stdout, /line 3: .*edited/);

    const removed = path.join(tmp, 'removed.log');
    fs.writeFileSync(removed, [...lines.slice(0, 3), ...lines.slice(4)].join('\n') + '\n');
    const r2 = await runAegis(['audit', 'verify', removed, '--key-file', keyFile]);
    assert.equal(r2.code, 1);
    assert.match(r2.stdout, /line 4: .*missing/);

    // The live log too: edit line 2 in place and the storage-level verify names it.
    const live = [...lines];
    live[1] = live[1].replace(/"remote":"[^"]*"/, '"remote":"10.9.9.9"');
    fs.writeFileSync(auditPath(), live.join('\n') + '\n');
    const r3 = await runAegis(['audit', 'verify', '--storage', srv.storage]);
    assert.equal(r3.code, 1);
    assert.match(r3.stdout, /audit\.log line 2:/);
    // Put it back so later tests and restarts work on a valid chain.
    fs.writeFileSync(auditPath(), lines.join('\n') + '\n');
  });
});

describe('tenants', () => {
  const C = 'mt';

  before(async () => {
    await srv.ok('PUT', `/collections/${C}`, { vectors: { size: 4, distance: 'Dot' } }, { headers: root });
    await srv.ok('PUT', `/collections/${C}/index?wait=true`, { field_name: 'tenant', field_schema: { type: 'keyword', is_tenant: true } }, { headers: root });
    await srv.ok('PUT', '/collections/plain', { vectors: { size: 4, distance: 'Dot' } }, { headers: root });
  });

  test('declare, write, deactivate, activate, delete', async () => {
    assert.deepEqual((await srv.ok('GET', `/collections/${C}/tenants`, undefined, { headers: root })).tenants, []);
    for (const name of ['TargetTenantA', 'TargetTenantB', 'Other']) await srv.ok('POST', `/collections/${C}/tenants`, { name }, { headers: root });
    assert.equal((await srv.request('POST', `/collections/${C}/tenants`, { name: 'Other' }, { headers: root })).status, 409);
    assert.equal((await srv.request('POST', `/collections/${C}/tenants`, { name: 'a/b' }, { headers: root })).status, 400);
    assert.equal((await srv.request('POST', `/collections/${C}/tenants`, { name: 'x', extra: 1 }, { headers: root })).status, 400);
    assert.equal((await srv.request('GET', '/collections/plain/tenants', undefined, { headers: root })).status, 400);

    await srv.ok('PUT', `/collections/${C}/points?wait=true`, { points: [pt(1, 'TargetTenantA'), pt(2, 'TargetTenantA'), pt(3, 'TargetTenantB'), pt(4, 'Other')] }, { headers: root });
    const undeclared = await srv.request('PUT', `/collections/${C}/points?wait=true`, { points: [pt(5, 'Nope')] }, { headers: root });
    assert.equal(undeclared.status, 403);
    assert.match(undeclared.json.status.error, /tenant `Nope` is not declared/);
    const missing = await srv.request('PUT', `/collections/${C}/points?wait=true`, { points: [pt(5)] }, { headers: root });
    assert.equal(missing.status, 400);
    assert.match(missing.json.status.error, /must name its tenant in `tenant`/);
    const moved = await srv.request('POST', `/collections/${C}/points/payload?wait=true`, { payload: { tenant: 'Nope' }, points: [1] }, { headers: root });
    assert.equal(moved.status, 403);
    assert.equal(await count(C), 4);
    const listed = (await srv.ok('GET', `/collections/${C}/tenants`, undefined, { headers: root })).tenants;
    assert.deepEqual(listed, [
      { name: 'Other', active: true, points: 1 },
      { name: 'TargetTenantA', active: true, points: 2 },
      { name: 'TargetTenantB', active: true, points: 1 },
    ]);

    await srv.ok('POST', `/collections/${C}/tenants/TargetTenantB/deactivate`, undefined, { headers: root });
    assert.deepEqual(await scrollIds(C), [1, 2, 4]);
    assert.deepEqual(await searchIds(C), [1, 2, 4]);
    assert.equal(await count(C), 3);
    assert.equal((await srv.request('GET', `/collections/${C}/points/3`, undefined, { headers: root })).status, 404);
    const r = await srv.ok('POST', `/collections/${C}/points`, { ids: [1, 3] }, { headers: root });
    assert.deepEqual(ids(r), [1]);
    const toInactive = await srv.request('PUT', `/collections/${C}/points?wait=true`, { points: [pt(6, 'TargetTenantB')] }, { headers: root });
    assert.equal(toInactive.status, 403);
    assert.match(toInactive.json.status.error, /inactive/);

    await srv.ok('POST', `/collections/${C}/tenants/TargetTenantB/activate`, undefined, { headers: root });
    assert.deepEqual(await scrollIds(C), [1, 2, 3, 4]);
    assert.equal(await count(C), 4);
    assert.equal((await srv.request('POST', `/collections/${C}/tenants/Ghost/activate`, undefined, { headers: root })).status, 404);

    const del = await srv.ok('DELETE', `/collections/${C}/tenants/Other`, undefined, { headers: root });
    assert.equal(del.deleted_points, 1);
    assert.equal(await count(C), 3);
    assert.equal((await srv.request('GET', `/collections/${C}/points/4`, undefined, { headers: root })).status, 404);
    assert.equal((await srv.request('PUT', `/collections/${C}/points?wait=true`, { points: [pt(4, 'Other')] }, { headers: root })).status, 403);

    // Tenant changes are audited.
    const recs = await audit('?action=*:tenants');
    assert.ok(recs.some((x) => x.action === 'delete:tenants' && x.resource.tenant === 'Other' && x.status === 200));

    // Declarations are durable: restart and check.
    await srv.ok('POST', `/collections/${C}/tenants/TargetTenantB/deactivate`, undefined, { headers: root });
    await srv.restart();
    const again = (await srv.ok('GET', `/collections/${C}/tenants`, undefined, { headers: root })).tenants;
    assert.deepEqual(again, [
      { name: 'TargetTenantA', active: true, points: 2 },
      { name: 'TargetTenantB', active: false, points: 1 },
    ]);
    assert.deepEqual(await scrollIds(C), [1, 2]);
    await srv.ok('POST', `/collections/${C}/tenants/TargetTenantB/activate`, undefined, { headers: root });
    assert.deepEqual(await scrollIds(C), [1, 2, 3]);
    // The chain continued across the restart.
    const v = await runAegis(['audit', 'verify', '--storage', srv.storage]);
    assert.equal(v.code, 0, v.stdout + v.stderr);
  });

  test('seed: a tenant manager scoped to TargetTenant* manages only those tenants and their data', async () => {
    await srv.ok('POST', `/collections/${C}/tenants`, { name: 'Other2' }, { headers: root });
    await srv.ok('PUT', `/collections/${C}/points?wait=true`, { points: [pt(20, 'Other2')] }, { headers: root });
    await srv.ok('POST', '/auth/roles', {
      name: 'tenant_manager',
      permissions: [
        { action: 'manage:tenants', collection: C, tenant: 'TargetTenant*' },
        { action: 'manage:data', collection: C, tenant: 'TargetTenant*' },
        { action: 'read:collections', collection: C },
      ],
    }, { headers: root });
    const user = await srv.ok('POST', '/auth/users/tm', { roles: ['tenant_manager'] }, { headers: root });
    const tm = { 'api-key': user.api_key };

    const seen = (await srv.ok('GET', `/collections/${C}/tenants`, undefined, { headers: tm })).tenants.map((t) => t.name);
    assert.deepEqual(seen, ['TargetTenantA', 'TargetTenantB']);
    await srv.ok('POST', `/collections/${C}/tenants`, { name: 'TargetTenantC' }, { headers: tm });
    assert.equal((await srv.request('POST', `/collections/${C}/tenants`, { name: 'Other3' }, { headers: tm })).status, 403);
    assert.equal((await srv.request('POST', `/collections/${C}/tenants/Other2/deactivate`, undefined, { headers: tm })).status, 403);
    assert.equal((await srv.request('DELETE', `/collections/${C}/tenants/Other2`, undefined, { headers: tm })).status, 403);
    await srv.ok('POST', `/collections/${C}/tenants/TargetTenantC/deactivate`, undefined, { headers: tm });
    await srv.ok('POST', `/collections/${C}/tenants/TargetTenantC/activate`, undefined, { headers: tm });

    // Data: only TargetTenant* rows, for reads and writes.
    assert.deepEqual(await scrollIds(C, tm), [1, 2, 3]);
    assert.deepEqual(await searchIds(C, tm), [1, 2, 3]);
    assert.equal(await count(C, tm), 3);
    assert.equal((await srv.request('GET', `/collections/${C}/points/20`, undefined, { headers: tm })).status, 404);
    await srv.ok('PUT', `/collections/${C}/points?wait=true`, { points: [pt(30, 'TargetTenantC')] }, { headers: tm });
    assert.equal((await srv.request('PUT', `/collections/${C}/points?wait=true`, { points: [pt(31, 'Other2')] }, { headers: tm })).status, 403);
    assert.equal((await srv.request('PUT', `/collections/${C}/points?wait=true`, { points: [pt(20, 'TargetTenantA')] }, { headers: tm })).status, 403);
    await srv.ok('POST', `/collections/${C}/points/delete?wait=true`, { filter: {} }, { headers: tm });
    assert.deepEqual(await scrollIds(C), [20]); // only the out-of-scope point survived
    await srv.ok('DELETE', `/collections/${C}/tenants/TargetTenantC`, undefined, { headers: tm });
    // No schema rights.
    assert.equal((await srv.request('DELETE', `/collections/${C}`, undefined, { headers: tm })).status, 403);
    assert.equal((await srv.request('GET', '/collections/plain', undefined, { headers: tm })).status, 403);

    const denials = await audit('?decision=deny&principal=tm');
    assert.ok(denials.some((r) => r.action === 'create:tenants' && r.status === 403 && r.resource.tenant === 'Other3'), JSON.stringify(denials));
    assert.ok((await audit('?principal=tm&decision=allow')).some((r) => r.action === 'create:tenants' && r.resource.tenant === 'TargetTenantC'));
    assert.ok(!fs.readFileSync(auditPath(), 'utf8').includes(user.api_key));
    const keyId = user.user.key_id;
    assert.ok(denials.every((r) => r.principal.kind === 'user' && r.principal.key_id === keyId), JSON.stringify(denials[0]));
  });
});

describe('seed: the customer-support token', () => {
  test('rw on customer_data restricted to department = support, valid while departments has support', async () => {
    await srv.ok('PUT', '/collections/customer_data', { vectors: { size: 4, distance: 'Dot' } }, { headers: root });
    await srv.ok('PUT', '/collections/customer_data/index?wait=true', { field_name: 'department', field_schema: 'keyword' }, { headers: root });
    await srv.ok('PUT', '/collections/customer_data/points?wait=true', {
      points: [
        { id: 1, vector: [1, 0, 0, 0], payload: { department: 'support', customer: 'a' } },
        { id: 2, vector: [0, 1, 0, 0], payload: { department: 'sales', customer: 'b' } },
        { id: 3, vector: [0, 0, 1, 0], payload: { department: 'support', customer: 'c' } },
      ],
    }, { headers: root });
    await srv.ok('PUT', '/collections/departments', { vectors: { size: 4, distance: 'Dot' } }, { headers: root });
    await srv.ok('PUT', '/collections/departments/points?wait=true', { points: [{ id: 1, vector: [1, 1, 1, 1], payload: { name: 'support' } }] }, { headers: root });

    const token = jwt({
      sub: 'support-agent',
      access: [{ collection: 'customer_data', access: 'rw', payload: { department: 'support' } }],
      value_exists: { collection: 'departments', matches: [{ key: 'name', value: 'support' }] },
    });
    const cs = { authorization: `Bearer ${token}` };
    assert.deepEqual(await scrollIds('customer_data', cs), [1, 3]);
    assert.deepEqual(await searchIds('customer_data', cs), [1, 3]);
    await srv.ok('PUT', '/collections/customer_data/points?wait=true', { points: [{ id: 4, vector: [0, 0, 0, 1], payload: { department: 'support', customer: 'd' } }] }, { headers: cs });
    assert.equal((await srv.request('PUT', '/collections/customer_data/points?wait=true', { points: [{ id: 5, vector: [0, 0, 0, 1], payload: { department: 'sales' } }] }, { headers: cs })).status, 403);
    assert.equal((await srv.request('POST', '/collections/customer_data/points/payload?wait=true', { payload: { department: 'sales' }, points: [1] }, { headers: cs })).status, 403);
    assert.equal((await srv.request('GET', '/collections/customer_data/points/2', undefined, { headers: cs })).status, 404);
    assert.equal((await srv.request('GET', '/collections/departments', undefined, { headers: cs })).status, 403);
    assert.equal((await srv.request('DELETE', '/collections/customer_data', undefined, { headers: cs })).status, 403);
    assert.deepEqual(await scrollIds('customer_data'), [1, 2, 3, 4]);

    // The support department goes away: the token stops working on the next request.
    await srv.ok('POST', '/collections/departments/points/delete?wait=true', { points: [1] }, { headers: root });
    const gone = await srv.request('POST', '/collections/customer_data/points/scroll', { limit: 10 }, { headers: cs, localAddress: freshAddr() });
    assert.ok(gone.status === 401 || gone.status === 403, `got ${gone.status}`);
    const recs = await audit('?decision=deny&principal=support-agent');
    assert.ok(recs.length >= 1);
    assert.ok(!fs.readFileSync(auditPath(), 'utf8').includes(token.split('.')[2]));
  });
});
