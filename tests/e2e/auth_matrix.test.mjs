// The authorization matrix (issue 3; docs/PERMISSIONS.md): every route of the server × every kind of
// principal, with the expected status class of each cell written out below — never derived
// from the server. Qdrant's rules: collection create/update/delete and alias changes need
// global `m`; point writes (payload edits included) need `rw` or `prw`; payload indexes need `rw`
// (docs/SECURITY.md "JWT"); reads need `r`; /metrics needs global read access, /telemetry
// answers every principal with only what it may see; GET /collections and GET /aliases are filtered to what the caller may see.
//
// Every cell is run; all mismatches are collected and reported together.
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';

import {
  ALT_KEY,
  Mismatches,
  RO_KEY,
  ROOT_KEY,
  WRONG_KEY,
  assertErrorEnvelope,
  credHeaders,
  freshAddr,
  jwt,
  keyEnv,
  statusClass,
} from './lib/auth.mjs';
import { startServer } from './lib/server.mjs';

const C = 'mx'; // the collection the scoped tokens name
const O = 'ot'; // another collection

// ---- principals (column order of the table) -----------------------------------------------
const PRINCIPALS = [
  'none', //     no credential
  'wrong', //    an api-key nobody configured
  'root', //     service.api_key in the api-key header
  'bearer', //   service.api_key as Authorization: Bearer
  'alt', //      service.alt_api_key
  'ro', //       service.read_only_api_key
  'jwt_r', //    {"access": "r"}
  'jwt_m', //    {"access": "m"}
  'coll_r', //   [{"collection": mx, "access": "r"}]
  'coll_rw', //  [{"collection": mx, "access": "rw"}]
  'coll_prw', // [{"collection": mx, "access": "prw"}]
  'other', //    [{"collection": ot, "access": "rw"}]
  'pay_r', //    [{"collection": mx, "access": "r",  "payload": {"tenant": "acme"}}]
  'pay_rw', //   [{"collection": mx, "access": "rw", "payload": {"tenant": "acme"}}]
];

function credentials() {
  const acme = { tenant: 'acme' };
  return {
    none: null,
    wrong: { apiKey: WRONG_KEY },
    root: { apiKey: ROOT_KEY },
    bearer: { bearer: ROOT_KEY },
    alt: { apiKey: ALT_KEY },
    ro: { apiKey: RO_KEY },
    jwt_r: { apiKey: jwt({ access: 'r' }) },
    jwt_m: { bearer: jwt({ access: 'm' }) },
    coll_r: { apiKey: jwt({ access: [{ collection: C, access: 'r' }] }) },
    coll_rw: { apiKey: jwt({ access: [{ collection: C, access: 'rw' }] }) },
    coll_prw: { bearer: jwt({ access: [{ collection: C, access: 'prw' }] }) },
    other: { apiKey: jwt({ access: [{ collection: O, access: 'rw' }] }) },
    pay_r: { apiKey: jwt({ access: [{ collection: C, access: 'r', payload: acme }] }) },
    pay_rw: { bearer: jwt({ access: [{ collection: C, access: 'rw', payload: acme }] }) },
  };
}

// ---- the expected table ---------------------------------------------------------------------
// ok = any 2xx; row403 = 403 from the row-level rule (the message names the rows, not a
// permission). Columns: none wrong root bearer alt ro jwt_r jwt_m coll_r coll_rw coll_prw other
// pay_r pay_rw.
const ok = 'ok';
const PUBLIC = [ok, ok, ok, ok, ok, ok, ok, ok, ok, ok, ok, ok, ok, ok];
const GLOBAL_READ = [401, 401, ok, ok, ok, ok, ok, ok, 403, 403, 403, 403, 403, 403];
const ANY_VALID = [401, 401, ok, ok, ok, ok, ok, ok, ok, ok, ok, ok, ok, ok];
const READ = [401, 401, ok, ok, ok, ok, ok, ok, ok, ok, ok, 403, ok, ok];
const MANAGE = [401, 401, ok, ok, ok, 403, 403, ok, 403, 403, 403, 403, 403, 403];
const INDEX = [401, 401, ok, ok, ok, 403, 403, ok, 403, ok, 403, 403, 403, 403];
const POINT_WRITE = [401, 401, ok, ok, ok, 403, 403, ok, 403, ok, ok, 403, 403, ok];
// prw is Qdrant's "points read-write": payload edits are point writes too (issue 10, item 1).
const PAYLOAD_WRITE = POINT_WRITE;
const ROOT_ONLY = [401, 401, ok, ok, ok, 403, 403, 403, 403, 403, 403, 403, 403, 403];
// Tenants are their own resource (docs/PERMISSIONS.md): a collection token's `r` reads the
// collection's info and data, not its tenant list; the viewer role (global `r`) includes them.
const TENANT_READ = GLOBAL_READ;
const TENANT_MANAGE = MANAGE;
// Snapshots (docs/SECURITY.md "Snapshots"): unrestricted read:data lists and downloads (so
// collection `r`, `rw` and `prw`: a snapshot holds nothing they cannot read), `rw` creates and
// deletes, row-restricted tokens get nothing; upload and recover need global manage; full
// snapshots are read by global readers and written by global managers; restoring a full
// snapshot needs the root key itself (root403: a global manager is refused by the handler, not
// for a missing permission).
const SNAP_READ = [401, 401, ok, ok, ok, ok, ok, ok, ok, ok, ok, 403, 403, 403];
const SNAP_WRITE = INDEX;
const SNAP_MANAGE = MANAGE;
const FULL_ROOT = [401, 401, ok, ok, ok, 403, 403, 'root403', 403, 403, 403, 403, 403, 403];

const EXPECTED = {
  // service
  'GET /': PUBLIC,
  'GET /healthz': PUBLIC,
  'GET /livez': PUBLIC,
  'GET /readyz': PUBLIC,
  'GET /metrics': GLOBAL_READ,
  'GET /telemetry': ANY_VALID, // scoped to what the caller may see (observability.test.mjs)
  // the dashboard's files hold no data (dashboard.test.mjs); the chain status needs read:audit
  'GET /dashboard': PUBLIC,
  'GET /dashboard/app.js': PUBLIC,
  'GET /auth/audit/verify': ROOT_ONLY,
  // collections
  'GET /collections': ANY_VALID, // filtered list (asserted in its own test)
  'GET /collections/mx': READ,
  'GET /collections/mx/exists': READ,
  'PATCH /collections/mx': MANAGE,
  'GET /aliases': ANY_VALID, // filtered list (asserted in its own test)
  'GET /collections/mx/aliases': READ,
  'POST /collections/aliases': MANAGE,
  'PUT /collections/mx/index': INDEX,
  'DELETE /collections/mx/index/tmpidx': INDEX,
  // named vectors: Qdrant lets a collection rw token (not prw) create and delete them
  'PUT /collections/mx/vectors/{name}': INDEX,
  'DELETE /collections/mx/vectors/{name}': INDEX,
  // points
  'PUT /collections/mx/points': POINT_WRITE,
  'POST /collections/mx/points': READ,
  'GET /collections/mx/points/1': READ,
  //  a point of another tenant: root sees it; the payload-restricted tokens get "not found"
  'GET /collections/mx/points/5': [401, 401, ok, ok, ok, ok, ok, ok, ok, ok, ok, 403, 404, 404],
  'POST /collections/mx/points/delete': POINT_WRITE,
  'PUT /collections/mx/points/vectors': POINT_WRITE,
  'POST /collections/mx/points/vectors/delete': POINT_WRITE,
  'POST /collections/mx/points/payload': PAYLOAD_WRITE,
  'PUT /collections/mx/points/payload': PAYLOAD_WRITE,
  'POST /collections/mx/points/payload/delete': PAYLOAD_WRITE,
  //  clearing an acme point's payload would move it out of pay_rw's rows → a row-level 403
  'POST /collections/mx/points/payload/clear': [401, 401, ok, ok, ok, 403, 403, ok, 403, ok, ok, 403, 403, 'row403'],
  //  batches of point operations, payload edits included, are point writes (prw may)
  'POST /collections/mx/points/batch [upsert]': POINT_WRITE,
  'POST /collections/mx/points/batch [set_payload]': PAYLOAD_WRITE,
  'POST /collections/mx/points/scroll': READ,
  'POST /collections/mx/points/count': READ,
  'POST /collections/mx/facet': READ,
  // search
  'POST /collections/mx/points/search': READ,
  'POST /collections/mx/points/search/batch': READ,
  'POST /collections/mx/points/search/groups': READ,
  'POST /collections/mx/points/recommend': READ,
  'POST /collections/mx/points/recommend/batch': READ,
  'POST /collections/mx/points/recommend/groups': READ,
  'POST /collections/mx/points/query': READ,
  'POST /collections/mx/points/discover': READ,
  'POST /collections/mx/points/discover/batch': READ,
  'POST /collections/mx/points/query/batch': READ,
  'POST /collections/mx/points/query/groups': READ,
  // the distance matrix: a search's access, the row restriction applied to the sample
  'POST /collections/mx/points/search/matrix/pairs': READ,
  'POST /collections/mx/points/search/matrix/offsets': READ,
  // destructive ones (each cell gets a fresh fixture)
  'PUT /collections/mx': MANAGE,
  'DELETE /collections/mx': MANAGE,
  // access management and tenants (docs/PERMISSIONS.md): roles, users, tokens and the audit log
  // are management resources that no JWT access level reaches; read:profile is everyone's
  'GET /auth/me': ANY_VALID,
  'POST /auth/check': ROOT_ONLY,
  'POST /auth/token': ROOT_ONLY,
  'GET /auth/audit': ROOT_ONLY,
  'GET /auth/roles': ROOT_ONLY,
  'POST /auth/roles': ROOT_ONLY,
  'GET /auth/roles/{role}': ROOT_ONLY,
  'PUT /auth/roles/{role}': ROOT_ONLY,
  'DELETE /auth/roles/{role}': ROOT_ONLY,
  'POST /auth/roles/{role}/permissions': ROOT_ONLY,
  'DELETE /auth/roles/{role}/permissions': ROOT_ONLY,
  'GET /auth/users': ROOT_ONLY,
  'GET /auth/users/{id}': ROOT_ONLY,
  'POST /auth/users/{id}': ROOT_ONLY,
  'DELETE /auth/users/{id}': ROOT_ONLY,
  'POST /auth/users/{id}/rotate-key': ROOT_ONLY,
  'POST /auth/users/{id}/deactivate': ROOT_ONLY,
  'POST /auth/users/{id}/activate': ROOT_ONLY,
  'POST /auth/users/{id}/roles': ROOT_ONLY,
  'DELETE /auth/users/{id}/roles': ROOT_ONLY,
  'GET /collections/mx/tenants': TENANT_READ,
  'POST /collections/mx/tenants': TENANT_MANAGE,
  'DELETE /collections/mx/tenants/{tenant}': TENANT_MANAGE,
  'POST /collections/mx/tenants/{tenant}/activate': TENANT_MANAGE,
  'POST /collections/mx/tenants/{tenant}/deactivate': TENANT_MANAGE,
  // the management plane (docs/API.md "Management plane"): management resources only, so no
  // JWT access level reaches them; /cluster is read by every global reader
  'GET /auth/api-keys': ROOT_ONLY,
  'POST /auth/api-keys': ROOT_ONLY,
  'GET /auth/api-keys/{id}': ROOT_ONLY,
  'POST /auth/api-keys/{id}/rotate': ROOT_ONLY,
  'DELETE /auth/api-keys/{id}': ROOT_ONLY,
  'GET /auth/management-keys': ROOT_ONLY,
  'POST /auth/management-keys': ROOT_ONLY,
  'GET /auth/management-keys/{id}': ROOT_ONLY,
  'POST /auth/management-keys/{id}/rotate': ROOT_ONLY,
  'DELETE /auth/management-keys/{id}': ROOT_ONLY,
  'GET /auth/invites': ROOT_ONLY,
  'POST /auth/invites': ROOT_ONLY,
  'DELETE /auth/invites/{id}': ROOT_ONLY,
  'POST /auth/invites/accept': PUBLIC, // the code is the credential; each cell gets a fresh one
  'GET /account': ROOT_ONLY,
  'PATCH /account': ROOT_ONLY,
  'GET /cluster': GLOBAL_READ,
  // Qdrant's service endpoints on a single node (docs/COMPATIBILITY.md "Service endpoints")
  'GET /issues': ANY_VALID, // every principal; nothing is reported
  'DELETE /issues': MANAGE,
  'GET /quotas': GLOBAL_READ,
  'PUT /quotas': MANAGE,
  'GET /logger': GLOBAL_READ,
  'POST /logger': MANAGE,
  //  whole-collection access (Qdrant; PRODUCT §5): collection r and rw, not prw, not row-restricted
  'GET /collections/mx/cluster': [401, 401, ok, ok, ok, ok, ok, ok, ok, ok, 403, 403, 403, 403],
  'GET /collections/mx/optimizations': READ,
  //  shard operations are refused (405) to whoever may ask for them
  'POST /collections/mx/cluster': [401, 401, 405, 405, 405, 403, 403, 405, 403, 403, 403, 403, 403, 403],
  //  a single node refuses cluster changes (405) to whoever may ask for them
  'POST /cluster/recover': [401, 401, 405, 405, 405, 403, 403, 405, 403, 403, 403, 403, 403, 403],
  'DELETE /cluster/peer/1': [401, 401, 405, 405, 405, 403, 403, 405, 403, 403, 403, 403, 403, 403],
  // snapshots, backups and backup schedules (issue 12)
  'GET /collections/mx/snapshots': SNAP_READ,
  'POST /collections/mx/snapshots': SNAP_WRITE,
  'GET /collections/mx/snapshots/{snapshot}': SNAP_READ,
  'DELETE /collections/mx/snapshots/{snapshot}': SNAP_WRITE,
  'POST /collections/mx/snapshots/upload': SNAP_MANAGE,
  'PUT /collections/mx/snapshots/recover': SNAP_MANAGE,
  'GET /collections/mx/shards/0/snapshots': SNAP_READ,
  'POST /collections/mx/shards/0/snapshots': SNAP_WRITE,
  'GET /collections/mx/shards/0/snapshots/{snapshot}': SNAP_READ,
  'DELETE /collections/mx/shards/0/snapshots/{snapshot}': SNAP_WRITE,
  'POST /collections/mx/shards/0/snapshots/upload': SNAP_MANAGE,
  'PUT /collections/mx/shards/0/snapshots/recover': SNAP_MANAGE,
  'POST /collections/mx/shards/0/snapshot/partial/recover': SNAP_MANAGE,
  'GET /collections/mx/shards/0/snapshot/partial/manifest': SNAP_READ,
  'POST /collections/mx/shards/0/snapshot/partial/create': SNAP_WRITE,
  'GET /snapshots': GLOBAL_READ,
  'POST /snapshots': MANAGE,
  'GET /snapshots/{snapshot}': GLOBAL_READ,
  'DELETE /snapshots/{snapshot}': MANAGE,
  'POST /snapshots/upload': FULL_ROOT,
  'POST /snapshots/{snapshot}/restore': FULL_ROOT,
  'GET /backups': ROOT_ONLY,
  'POST /backups': ROOT_ONLY,
  'GET /backups/{backup}': ROOT_ONLY,
  'DELETE /backups/{backup}': ROOT_ONLY,
  'GET /backups/{backup}/download': ROOT_ONLY,
  'POST /backups/{backup}/restore': ROOT_ONLY,
  'GET /backup-schedules': ROOT_ONLY,
  'POST /backup-schedules': ROOT_ONLY,
  'GET /backup-schedules/{schedule}': ROOT_ONLY,
  'POST /backup-schedules/{schedule}/run': ROOT_ONLY,
  'DELETE /backup-schedules/{schedule}': ROOT_ONLY,
};

// ---- fixture --------------------------------------------------------------------------------
const POINTS = [
  { id: 1, vector: [1, 0, 0, 0], payload: { tenant: 'acme', num: 1 } },
  { id: 2, vector: [0.9, 0.1, 0, 0], payload: { tenant: 'acme', num: 2 } },
  { id: 3, vector: [0.8, 0.2, 0, 0], payload: { tenant: 'acme', num: 3 } },
  { id: 4, vector: [0.7, 0.3, 0, 0], payload: { tenant: 'acme', num: 4 } },
  { id: 5, vector: [0.95, 0, 0.05, 0], payload: { tenant: 'beta', num: 5 } },
  { id: 6, vector: [0, 1, 0, 0], payload: { tenant: 'beta', num: 6 } },
  { id: 7, vector: [0, 0, 1, 0], payload: { tenant: 'gamma', num: 7 } },
];

let srv;
let creds;
const root = { 'api-key': ROOT_KEY };

async function rootOk(method, path, body) {
  return srv.ok(method, path, body, { headers: root });
}

async function buildCollection(name) {
  await rootOk('PUT', `/collections/${name}`, { vectors: { size: 4, distance: 'Dot' } });
  await rootOk('PUT', `/collections/${name}/points?wait=true`, { points: POINTS });
  await rootOk('PUT', `/collections/${name}/index?wait=true`, { field_name: 'tenant', field_schema: { type: 'keyword', is_tenant: true } });
  await rootOk('PUT', `/collections/${name}/index?wait=true`, { field_name: 'num', field_schema: 'integer' });
}

async function resetMx() {
  await srv.request('DELETE', `/collections/${C}`, undefined, { headers: root });
  await buildCollection(C);
  await rootOk('POST', '/collections/aliases', { actions: [{ create_alias: { collection_name: C, alias_name: 'mx_alias' } }] });
}

// ---- routes: request, and hooks run with the root key around each cell --------------------
const q = [1, 0, 0, 0];
const ROUTES = [
  { name: 'GET /' },
  { name: 'GET /healthz' },
  { name: 'GET /livez' },
  { name: 'GET /readyz' },
  { name: 'GET /metrics' },
  { name: 'GET /telemetry' },
  { name: 'GET /dashboard' },
  { name: 'GET /dashboard/app.js' },
  { name: 'GET /auth/audit/verify' },
  { name: 'GET /collections' },
  { name: 'GET /collections/mx' },
  { name: 'GET /collections/mx/exists' },
  { name: 'PATCH /collections/mx', body: { optimizers_config: { indexing_threshold: 20000 } } },
  { name: 'GET /aliases' },
  { name: 'GET /collections/mx/aliases' },
  {
    name: 'POST /collections/aliases',
    body: { actions: [{ create_alias: { collection_name: C, alias_name: 'mx_alias2' } }] },
  },
  { name: 'PUT /collections/mx/index', path: '/collections/mx/index?wait=true', body: { field_name: 'num', field_schema: 'integer' } },
  {
    name: 'DELETE /collections/mx/index/tmpidx',
    path: '/collections/mx/index/tmpidx?wait=true',
    before: () => rootOk('PUT', `/collections/${C}/index?wait=true`, { field_name: 'tmpidx', field_schema: 'keyword' }),
  },
  {
    name: 'PUT /collections/mx/vectors/{name}',
    path: '/collections/mx/vectors/mxsp?wait=true',
    body: { sparse: {} },
    before: () => srv.request('DELETE', `/collections/${C}/vectors/mxsp?wait=true`, undefined, { headers: root }),
  },
  {
    name: 'DELETE /collections/mx/vectors/{name}',
    path: '/collections/mx/vectors/mxsp?wait=true',
    before: () => srv.request('PUT', `/collections/${C}/vectors/mxsp?wait=true`, { sparse: {} }, { headers: root }),
  },
  {
    name: 'PUT /collections/mx/points',
    path: '/collections/mx/points?wait=true',
    body: { points: [{ id: 100, vector: [0.1, 0.2, 0.3, 0.4], payload: { tenant: 'acme', num: 100 } }] },
  },
  { name: 'POST /collections/mx/points', body: { ids: [1, 2], with_payload: true } },
  { name: 'GET /collections/mx/points/1' },
  { name: 'GET /collections/mx/points/5' },
  { name: 'POST /collections/mx/points/delete', path: '/collections/mx/points/delete?wait=true', body: { points: [999] } },
  { name: 'PUT /collections/mx/points/vectors', path: '/collections/mx/points/vectors?wait=true', body: { points: [{ id: 1, vector: [1, 0, 0, 0] }] } },
  {
    name: 'POST /collections/mx/points/vectors/delete',
    path: '/collections/mx/points/vectors/delete?wait=true',
    body: { points: [3], vector: [''] },
  },
  { name: 'POST /collections/mx/points/payload', path: '/collections/mx/points/payload?wait=true', body: { payload: { touched: true }, points: [2] } },
  {
    name: 'PUT /collections/mx/points/payload',
    path: '/collections/mx/points/payload?wait=true',
    body: { payload: { tenant: 'acme', num: 2, touched: true }, points: [2] },
  },
  { name: 'POST /collections/mx/points/payload/delete', path: '/collections/mx/points/payload/delete?wait=true', body: { keys: ['touched'], points: [2] } },
  {
    name: 'POST /collections/mx/points/payload/clear',
    path: '/collections/mx/points/payload/clear?wait=true',
    body: { points: [4] },
    before: () => rootOk('PUT', `/collections/${C}/points/payload?wait=true`, { payload: { tenant: 'acme', num: 4 }, points: [4] }),
  },
  {
    name: 'POST /collections/mx/points/batch [upsert]',
    path: '/collections/mx/points/batch?wait=true',
    body: { operations: [{ upsert: { points: [{ id: 101, vector: [0.1, 0.1, 0.1, 0.1], payload: { tenant: 'acme' } }] } }] },
  },
  {
    name: 'POST /collections/mx/points/batch [set_payload]',
    path: '/collections/mx/points/batch?wait=true',
    body: { operations: [{ set_payload: { payload: { touched2: true }, points: [2] } }] },
  },
  { name: 'POST /collections/mx/points/scroll', body: { limit: 10 } },
  { name: 'POST /collections/mx/points/count', body: { exact: true } },
  { name: 'POST /collections/mx/facet', body: { key: 'tenant' } },
  { name: 'POST /collections/mx/points/search', body: { vector: q, limit: 3 } },
  { name: 'POST /collections/mx/points/search/batch', body: { searches: [{ vector: q, limit: 3 }] } },
  { name: 'POST /collections/mx/points/search/groups', body: { vector: q, group_by: 'tenant', limit: 3, group_size: 2 } },
  { name: 'POST /collections/mx/points/recommend', body: { positive: [1], limit: 3 } },
  { name: 'POST /collections/mx/points/recommend/batch', body: { searches: [{ positive: [1], limit: 3 }] } },
  { name: 'POST /collections/mx/points/recommend/groups', body: { positive: [1], group_by: 'tenant', limit: 3, group_size: 2 } },
  { name: 'POST /collections/mx/points/query', body: { query: q, limit: 3 } },
  { name: 'POST /collections/mx/points/discover', body: { target: q, context: [{ positive: [0, 1, 0, 0], negative: [0, 0, 1, 0] }], limit: 3 } },
  { name: 'POST /collections/mx/points/discover/batch', body: { searches: [{ target: q, context: [{ positive: [0, 1, 0, 0], negative: [0, 0, 1, 0] }], limit: 3 }] } },
  { name: 'POST /collections/mx/points/query/batch', body: { searches: [{ query: q, limit: 3 }] } },
  { name: 'POST /collections/mx/points/search/matrix/pairs', body: { sample: 5, limit: 2 } },
  { name: 'POST /collections/mx/points/search/matrix/offsets', body: { sample: 5, limit: 2 } },
  { name: 'POST /collections/mx/points/query/groups', body: { query: q, group_by: 'tenant', limit: 3, group_size: 2 } },
  {
    name: 'PUT /collections/mx',
    body: { vectors: { size: 4, distance: 'Dot' } },
    before: () => srv.request('DELETE', `/collections/${C}`, undefined, { headers: root }),
    after: resetMx,
  },
  { name: 'DELETE /collections/mx', before: resetMx, after: resetMx },
  // access management: a role and a user made in before(); a fresh one for each destructive cell
  { name: 'GET /auth/me' },
  { name: 'POST /auth/check', body: { principal: { user: 'mxuser' }, action: 'read:data', collection: C } },
  { name: 'POST /auth/token', body: { claims: { access: [{ collection: C, access: 'r' }] } } },
  { name: 'GET /auth/audit', path: '/auth/audit?limit=5' },
  { name: 'GET /auth/roles' },
  { name: 'POST /auth/roles', get body() { return { name: `mxr${mg.seq++}`, permissions: [{ action: 'read:data', collection: C }] }; } },
  { name: 'GET /auth/roles/{role}', path: '/auth/roles/mxrole' },
  {
    name: 'PUT /auth/roles/{role}',
    get path() { return `/auth/roles/${mg.role}`; },
    body: { permissions: [{ action: 'read:data', collection: O }] },
    before: async () => { mg.role = await freshRole(); },
  },
  {
    name: 'DELETE /auth/roles/{role}',
    get path() { return `/auth/roles/${mg.role}`; },
    before: async () => { mg.role = await freshRole(); },
  },
  {
    name: 'POST /auth/roles/{role}/permissions',
    get path() { return `/auth/roles/${mg.role}/permissions`; },
    body: { permissions: [{ action: 'read:collections', collection: C }] },
    before: async () => { mg.role = await freshRole(); },
  },
  {
    name: 'DELETE /auth/roles/{role}/permissions',
    get path() { return `/auth/roles/${mg.role}/permissions`; },
    body: { permissions: [{ action: 'read:data', collection: C }] },
    before: async () => { mg.role = await freshRole(); },
  },
  { name: 'GET /auth/users' },
  { name: 'GET /auth/users/{id}', path: '/auth/users/mxuser' },
  { name: 'POST /auth/users/{id}', get path() { return `/auth/users/mxu${mg.seq++}`; }, body: { roles: ['mxrole'] } },
  ...['DELETE /auth/users/{id}', 'POST /auth/users/{id}/rotate-key', 'POST /auth/users/{id}/deactivate'].map((name) => ({
    name,
    get path() { return name.split(' ')[1].replace('{id}', mg.user); },
    before: async () => { mg.user = await freshUser(); },
  })),
  {
    name: 'POST /auth/users/{id}/activate',
    get path() { return `/auth/users/${mg.user}/activate`; },
    before: async () => {
      mg.user = await freshUser();
      await rootOk('POST', `/auth/users/${mg.user}/deactivate`);
    },
  },
  {
    name: 'POST /auth/users/{id}/roles',
    get path() { return `/auth/users/${mg.user}/roles`; },
    body: { roles: ['mxrole2'] },
    before: async () => { mg.user = await freshUser(); },
  },
  {
    name: 'DELETE /auth/users/{id}/roles',
    get path() { return `/auth/users/${mg.user}/roles`; },
    body: { roles: ['mxrole'] },
    before: async () => { mg.user = await freshUser(); },
  },
  // tenants of mx (its `tenant` index is a tenant key); declaring one starts enforcement, so each
  // cell that changes them is followed by a fresh mx
  { name: 'GET /collections/mx/tenants' },
  { name: 'POST /collections/mx/tenants', get body() { return { name: `t${mg.seq++}` }; }, after: resetMx },
  ...['DELETE /collections/mx/tenants/{tenant}', 'POST /collections/mx/tenants/{tenant}/activate', 'POST /collections/mx/tenants/{tenant}/deactivate'].map((name) => ({
    name,
    get path() { return name.split(' ')[1].replace('{tenant}', mg.tenant); },
    before: async () => {
      mg.tenant = `t${mg.seq++}`;
      await rootOk('POST', `/collections/${C}/tenants`, { name: mg.tenant });
      if (name.endsWith('/activate')) await rootOk('POST', `/collections/${C}/tenants/${mg.tenant}/deactivate`);
    },
    after: resetMx,
  })),
  // management plane: ids made with the root key (a fresh one for each destructive cell)
  { name: 'GET /auth/api-keys' },
  { name: 'POST /auth/api-keys', body: { name: 'matrix', access: 'r' } },
  { name: 'GET /auth/api-keys/{id}', get path() { return `/auth/api-keys/${mg.apiKey}`; } },
  { name: 'POST /auth/api-keys/{id}/rotate', get path() { return `/auth/api-keys/${mg.apiKey}/rotate`; } },
  {
    name: 'DELETE /auth/api-keys/{id}',
    get path() { return `/auth/api-keys/${mg.doomed}`; },
    before: async () => { mg.doomed = (await rootOk('POST', '/auth/api-keys', { name: 'doomed', access: 'r' })).id; },
  },
  { name: 'GET /auth/management-keys' },
  { name: 'POST /auth/management-keys', body: { name: 'matrix', permissions: [{ action: 'read:users' }] } },
  { name: 'GET /auth/management-keys/{id}', get path() { return `/auth/management-keys/${mg.mgmtKey}`; } },
  { name: 'POST /auth/management-keys/{id}/rotate', get path() { return `/auth/management-keys/${mg.mgmtKey}/rotate`; } },
  {
    name: 'DELETE /auth/management-keys/{id}',
    get path() { return `/auth/management-keys/${mg.doomed}`; },
    before: async () => { mg.doomed = (await rootOk('POST', '/auth/management-keys', { name: 'doomed', permissions: [{ action: 'read:users' }] })).id; },
  },
  { name: 'GET /auth/invites' },
  { name: 'POST /auth/invites', get body() { return { user_id: `invitee${mg.seq++}`, roles: [] }; } },
  {
    name: 'DELETE /auth/invites/{id}',
    get path() { return `/auth/invites/${mg.invite}`; },
    before: async () => { mg.invite = (await rootOk('POST', '/auth/invites', { user_id: `doomed${mg.seq++}`, roles: [] })).invite.id; },
  },
  {
    name: 'POST /auth/invites/accept',
    get body() { return { code: mg.code }; },
    before: async () => { mg.code = (await rootOk('POST', '/auth/invites', { user_id: `joiner${mg.seq++}`, roles: [] })).code; },
  },
  { name: 'GET /account' },
  { name: 'PATCH /account', body: { name: 'matrix' } },
  { name: 'GET /cluster' },
  { name: 'GET /issues' },
  { name: 'DELETE /issues' },
  { name: 'GET /quotas' },
  { name: 'PUT /quotas', body: { enabled: false } },
  { name: 'GET /logger' },
  { name: 'POST /logger', body: { log_level: 'info' } },
  { name: 'GET /collections/mx/cluster' },
  { name: 'GET /collections/mx/optimizations' },
  { name: 'POST /collections/mx/cluster', body: { move_shard: { shard_id: 0, from_peer_id: 1, to_peer_id: 2 } } },
  { name: 'POST /cluster/recover' },
  { name: 'DELETE /cluster/peer/1' },
  // snapshots: made with the root key; a fresh one for each destructive cell
  ...['', '/shards/0'].flatMap((shard) => [
    { name: `GET /collections/mx${shard}/snapshots` },
    { name: `POST /collections/mx${shard}/snapshots`, path: `/collections/mx${shard}/snapshots?wait=true` },
    { name: `GET /collections/mx${shard}/snapshots/{snapshot}`, get path() { return `/collections/mx${shard}/snapshots/${mg.snap.name}`; } },
    {
      name: `DELETE /collections/mx${shard}/snapshots/{snapshot}`,
      get path() { return `/collections/mx${shard}/snapshots/${mg.doomedSnap}`; },
      before: async () => { mg.doomedSnap = (await rootOk('POST', `/collections/${C}/snapshots?wait=true`)).name; },
    },
    // the raw archive as the body (the non-multipart form); restores mx as it was
    { name: `POST /collections/mx${shard}/snapshots/upload`, get body() { return mg.snapBytes; } },
    { name: `PUT /collections/mx${shard}/snapshots/recover`, get body() { return { location: mg.snapFile }; } },
  ]),
  { name: 'POST /collections/mx/shards/0/snapshot/partial/recover', get body() { return mg.snapBytes; } },
  { name: 'GET /collections/mx/shards/0/snapshot/partial/manifest' },
  { name: 'POST /collections/mx/shards/0/snapshot/partial/create', body: {} },
  { name: 'GET /snapshots' },
  { name: 'POST /snapshots' },
  { name: 'GET /snapshots/{snapshot}', get path() { return `/snapshots/${mg.full.name}`; } },
  {
    name: 'DELETE /snapshots/{snapshot}',
    get path() { return `/snapshots/${mg.doomedSnap}`; },
    before: async () => { mg.doomedSnap = (await rootOk('POST', '/snapshots')).name; },
  },
  { name: 'POST /snapshots/upload', get body() { return mg.fullBytes; }, after: () => refreshFull() },
  { name: 'POST /snapshots/{snapshot}/restore', get path() { return `/snapshots/${mg.full.name}/restore`; }, after: () => refreshFull() },
  // backups and schedules (management resources: no JWT access level reaches them)
  { name: 'GET /backups' },
  { name: 'POST /backups' },
  { name: 'GET /backups/{backup}', get path() { return `/backups/${mg.backup}`; } },
  { name: 'GET /backups/{backup}/download', get path() { return `/backups/${mg.backup}/download`; } },
  {
    name: 'DELETE /backups/{backup}',
    get path() { return `/backups/${mg.doomedBackup}`; },
    before: async () => { mg.doomedBackup = (await rootOk('POST', '/backups')).id; },
  },
  { name: 'POST /backups/{backup}/restore', get path() { return `/backups/${mg.backup}/restore`; }, after: () => refreshFull() },
  { name: 'GET /backup-schedules' },
  { name: 'POST /backup-schedules', body: { schedule: '0 3 * * *', retention: 2 } },
  { name: 'GET /backup-schedules/{schedule}', get path() { return `/backup-schedules/${mg.schedule}`; } },
  { name: 'POST /backup-schedules/{schedule}/run', get path() { return `/backup-schedules/${mg.schedule}/run`; } },
  {
    name: 'DELETE /backup-schedules/{schedule}',
    get path() { return `/backup-schedules/${mg.doomedSchedule}`; },
    before: async () => { mg.doomedSchedule = (await rootOk('POST', '/backup-schedules', { schedule: '0 4 * * *', retention: 1 })).id; },
  },
];

/** A fresh full snapshot and backup of the fixture (restoring one puts mx and ot back as they
 * are now; taken again after each restore so later cells see the same state). */
async function refreshFull() {
  mg.full = await rootOk('POST', '/snapshots');
  mg.fullBytes = Buffer.from(await (await fetch(`${srv.url}/snapshots/${mg.full.name}`, { headers: root })).arrayBuffer());
  mg.backup = (await rootOk('POST', '/backups')).id;
}
const mg = { seq: 0 };

async function freshRole() {
  const name = `mxr${mg.seq++}`;
  await rootOk('POST', '/auth/roles', { name, permissions: [{ action: 'read:data', collection: C }] });
  return name;
}

async function freshUser() {
  const id = `mxu${mg.seq++}`;
  await rootOk('POST', `/auth/users/${id}`, { roles: ['mxrole'] });
  return id;
}

// A fixed source address per valid principal (its own throttle bucket); a fresh one for every
// request meant to fail authentication.
function sourceFor(principal) {
  if (principal === 'none' || principal === 'wrong') return { localAddress: freshAddr(), agent: false };
  return { localAddress: `127.2.0.${PRINCIPALS.indexOf(principal) + 1}` };
}

async function call(route, principal) {
  const [method, ...rest] = route.name.split(' ');
  const path = route.path || rest[0];
  const cred = creds[principal];
  return srv.request(method, path, route.body, { headers: credHeaders(cred), ...sourceFor(principal) });
}

function secretOf(principal) {
  const c = creds[principal];
  return c ? c.apiKey || c.bearer : null;
}

before(async () => {
  srv = await startServer({ insecure: false, env: keyEnv() });
  creds = credentials();
  await resetMx();
  await buildCollection(O);
  await rootOk('POST', '/collections/aliases', { actions: [{ create_alias: { collection_name: O, alias_name: 'ot_alias' } }] });
  mg.apiKey = (await rootOk('POST', '/auth/api-keys', { name: 'matrix', access: 'r' })).id;
  mg.mgmtKey = (await rootOk('POST', '/auth/management-keys', { name: 'matrix', permissions: [{ action: 'read:users' }] })).id;
  await rootOk('POST', '/auth/roles', { name: 'mxrole', permissions: [{ action: 'read:data', collection: C }] });
  await rootOk('POST', '/auth/roles', { name: 'mxrole2', permissions: [{ action: 'read:collections', collection: C }] });
  await rootOk('POST', '/auth/users/mxuser', { roles: ['mxrole'] });
  mg.snap = await rootOk('POST', `/collections/${C}/snapshots?wait=true`);
  mg.snapFile = `file://${srv.storage}/snapshots/collections/${C}/${mg.snap.name}`;
  mg.snapBytes = Buffer.from(await (await fetch(`${srv.url}/collections/${C}/snapshots/${mg.snap.name}`, { headers: root })).arrayBuffer());
  await refreshFull();
  mg.schedule = (await rootOk('POST', '/backup-schedules', { schedule: '0 3 * * *', retention: 2 })).id;
});

after(async () => {
  await srv?.cleanup();
});

describe('authorization matrix', () => {
  test('the table covers every route and principal', () => {
    assert.deepEqual(Object.keys(EXPECTED).sort(), ROUTES.map((r) => r.name).sort());
    for (const [name, row] of Object.entries(EXPECTED)) assert.equal(row.length, PRINCIPALS.length, name);
  });

  test('every route in the server\'s route tables has a row', () => {
    // The route tables are read from the sources, so a route added without a row fails here.
    const dir = new URL('../../src/api/', import.meta.url);
    const routes = [];
    for (const f of readdirSync(dir).filter((n) => n.endsWith('.c'))) {
      const text = readFileSync(new URL(f, dir), 'utf8');
      for (const mt of text.matchAll(/\{AG_HTTP_([A-Z]+),\s*"([^"]+)"/g)) routes.push([mt[1], mt[2]]);
    }
    assert.ok(routes.length >= 80, `found only ${routes.length} routes in src/api`);
    const rows = Object.keys(EXPECTED).map((k) => k.replace(/ \[.*\]$/, '').split(' '));
    const covers = (pattern, path) => {
      const a = pattern.split('/');
      const b = path.split('/');
      return a.length === b.length && a.every((seg, i) => seg === b[i] || (seg.startsWith('{') && b[i] !== ''));
    };
    const missing = routes.filter(([m, pat]) => !rows.some(([rm, path]) => rm === m && covers(pat, path)));
    assert.deepEqual(missing.map((r) => r.join(' ')), [], 'routes without a row in the matrix');
  });

  test('GET /collections is filtered to what each principal may see', async () => {
    const want = {
      root: [C, O],
      bearer: [C, O],
      alt: [C, O],
      ro: [C, O],
      jwt_r: [C, O],
      jwt_m: [C, O],
      coll_r: [C],
      coll_rw: [C],
      coll_prw: [C],
      other: [O],
      pay_r: [C],
      pay_rw: [C],
    };
    const m = new Mismatches('GET /collections filtering');
    for (const [p, names] of Object.entries(want)) {
      const r = await call({ name: 'GET /collections' }, p);
      if (!m.check(r.status === 200, `${p}: status ${r.status} ${r.text.slice(0, 200)}`)) continue;
      const got = r.json.result.collections.map((c) => c.name).sort();
      m.check(JSON.stringify(got) === JSON.stringify(names.sort()), `${p}: expected ${JSON.stringify(names)}, got ${JSON.stringify(got)}`);
    }
    m.done();
  });

  test('GET /aliases is filtered to what each principal may see', async () => {
    const both = [
      { alias_name: 'mx_alias', collection_name: C },
      { alias_name: 'ot_alias', collection_name: O },
    ];
    const mxOnly = [both[0]];
    const want = {
      root: both,
      bearer: both,
      alt: both,
      ro: both,
      jwt_r: both,
      jwt_m: both,
      coll_r: mxOnly,
      coll_rw: mxOnly,
      coll_prw: mxOnly,
      other: [both[1]],
      pay_r: mxOnly,
      pay_rw: mxOnly,
    };
    const m = new Mismatches('GET /aliases filtering');
    const key = (a) => `${a.alias_name}->${a.collection_name}`;
    for (const [p, list] of Object.entries(want)) {
      const r = await call({ name: 'GET /aliases' }, p);
      if (!m.check(r.status === 200, `${p}: status ${r.status} ${r.text.slice(0, 200)}`)) continue;
      const got = r.json.result.aliases.map(key).sort();
      const exp = list.map(key).sort();
      m.check(JSON.stringify(got) === JSON.stringify(exp), `${p}: expected ${JSON.stringify(exp)}, got ${JSON.stringify(got)}`);
    }
    m.done();
  });

  test('every route × every principal answers the expected status class', async () => {
    const m = new Mismatches('authorization matrix');
    let cells = 0;
    for (const route of ROUTES) {
      const row = EXPECTED[route.name];
      for (let i = 0; i < PRINCIPALS.length; i++) {
        const p = PRINCIPALS[i];
        if (route.before) await route.before();
        const r = await call(route, p);
        if (route.after) await route.after();
        cells++;
        const rowLevel = row[i] === 'row403' || row[i] === 'root403';
        const want = row[i] === ok ? '2xx' : rowLevel ? '403' : String(row[i]);
        const got = statusClass(r.status);
        const where = `${route.name} as ${p}`;
        if (got !== want) {
          m.add(`${where}: expected ${want}, got ${r.status} ${r.text.slice(0, 160).replace(/\s+/g, ' ')}`);
          continue;
        }
        if (r.status >= 400) {
          try {
            assertErrorEnvelope(r, where);
          } catch (e) {
            m.add(e.message);
          }
          if (r.status === 403 && !rowLevel) {
            m.check(/missing permission [a-z_]+:[a-z_]+/.test(r.json?.status?.error || ''), `${where}: 403 does not name the missing permission: ${r.text.slice(0, 200)}`);
          }
        }
        const secret = secretOf(p);
        if (secret) m.check(!r.text.includes(secret), `${where}: the response echoes the credential`);
      }
    }
    assert.equal(cells, ROUTES.length * PRINCIPALS.length);
    m.done();
  });

  test('authorization is decided before the body is read or parsed', async () => {
    const m = new Mismatches('decision before body');
    const bad = '{"points": [ this is not json';
    const countNow = async () => (await srv.request('POST', `/collections/${C}/points/count`, { exact: true }, { headers: root })).json?.result?.count;
    const before = await countNow();
    const big = JSON.stringify({ points: Array.from({ length: 20000 }, (_, i) => ({ id: 200000 + i, vector: [0.1, 0.2, 0.3, 0.4], payload: { tenant: 'beta' } })) });
    for (const [p, body, want] of [
      ['none', bad, 401],
      ['wrong', bad, 401],
      ['jwt_r', bad, 403],
      ['coll_r', bad, 403],
      ['other', bad, 403],
      ['none', big, 401],
      ['ro', big, 403],
      ['root', bad, 400],
    ]) {
      const r = await call({ name: 'PUT /collections/mx/points', path: '/collections/mx/points?wait=true', body }, p);
      m.check(r.status === want, `PUT points with a ${body === bad ? 'malformed' : 'large'} body as ${p}: expected ${want}, got ${r.status} ${r.text.slice(0, 160)}`);
    }
    const afterCount = await countNow();
    m.check(typeof before === 'number' && afterCount === before, `refused uploads changed the collection: count ${before} → ${afterCount}`);
    m.done();
  });

  test('lookup_from and alias targets are authorized too', async () => {
    const m = new Mismatches('lookup_from / alias');
    // coll_r may read mx, not ot: a recommend on mx whose examples come from ot is refused.
    let r = await call(
      { name: 'POST /collections/mx/points/recommend', body: { positive: [1], limit: 3, lookup_from: { collection: O } } },
      'coll_r',
    );
    m.check(r.status === 403, `recommend on mx with lookup_from ot as coll_r: expected 403, got ${r.status} ${r.text.slice(0, 200)}`);
    r = await call({ name: 'POST /collections/mx/points/query', body: { query: 1, limit: 3, lookup_from: { collection: O } } }, 'coll_r');
    m.check(r.status === 403, `query on mx with lookup_from ot as coll_r: expected 403, got ${r.status} ${r.text.slice(0, 200)}`);
    // root may.
    r = await call({ name: 'POST /collections/mx/points/recommend', body: { positive: [1], limit: 3, lookup_from: { collection: O } } }, 'root');
    m.check(r.status === 200, `recommend with lookup_from as root: expected 200, got ${r.status} ${r.text.slice(0, 200)}`);
    // Through an alias: the alias's collection decides (mx_alias → mx).
    r = await call({ name: 'POST /collections/mx_alias/points/scroll', body: { limit: 3 } }, 'coll_r');
    m.check(r.status === 200, `scroll through mx_alias as coll_r: expected 200, got ${r.status} ${r.text.slice(0, 200)}`);
    r = await call({ name: 'POST /collections/ot_alias/points/scroll', body: { limit: 3 } }, 'coll_r');
    m.check(r.status === 403, `scroll through ot_alias as coll_r: expected 403, got ${r.status} ${r.text.slice(0, 200)}`);
    r = await call({ name: 'POST /collections/mx_alias/points/scroll', body: { limit: 3 } }, 'other');
    m.check(r.status === 403, `scroll through mx_alias as other: expected 403, got ${r.status} ${r.text.slice(0, 200)}`);
    // A collection that does not exist is not a way around a missing permission.
    r = await call({ name: 'GET /collections/nope' }, 'coll_r');
    m.check(r.status === 403, `GET /collections/nope as coll_r: expected 403, got ${r.status}`);
    r = await call({ name: 'GET /collections/nope' }, 'root');
    m.check(r.status === 404, `GET /collections/nope as root: expected 404, got ${r.status}`);
    // pay_r through the alias still sees only acme rows.
    r = await call({ name: 'POST /collections/mx_alias/points/scroll', body: { limit: 100 } }, 'pay_r');
    if (m.check(r.status === 200, `scroll through mx_alias as pay_r: expected 200, got ${r.status}`)) {
      const ids = r.json.result.points.map((p) => p.id).sort((a, b) => a - b);
      m.check(ids.every((id) => ![5, 6, 7].includes(id)), `scroll through mx_alias as pay_r shows other tenants: ${ids}`);
    }
    m.done();
  });
});
