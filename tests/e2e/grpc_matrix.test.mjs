// The authorization matrix over gRPC (docs/API.md "gRPC"): every RPC served × the principals of
// the REST matrix (auth_matrix.test.mjs), with the expected outcome of each cell written out
// below in REST terms (ok / 401 / 403) and mapped to gRPC status codes — the same expectations as
// the REST routes the RPCs run as. Loads Qdrant's unmodified protos with @grpc/grpc-js.
import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, test } from 'node:test';
import grpc from '@grpc/grpc-js';
import protoLoader from '@grpc/proto-loader';

import { ALT_KEY, Mismatches, RO_KEY, ROOT_KEY, WRONG_KEY, jwt, keyEnv } from './lib/auth.mjs';
import { REPO_ROOT, freePort, startServer } from './lib/server.mjs';

const C = 'mx';
const O = 'ot';
const PRINCIPALS = ['none', 'wrong', 'root', 'bearer', 'alt', 'ro', 'jwt_r', 'jwt_m', 'coll_r', 'coll_rw', 'coll_prw', 'other', 'pay_r', 'pay_rw'];

function credentials() {
  const acme = { tenant: 'acme' };
  return {
    none: {},
    wrong: { 'api-key': WRONG_KEY },
    root: { 'api-key': ROOT_KEY },
    bearer: { authorization: `Bearer ${ROOT_KEY}` },
    alt: { 'api-key': ALT_KEY },
    ro: { 'api-key': RO_KEY },
    jwt_r: { 'api-key': jwt({ access: 'r' }) },
    jwt_m: { authorization: `Bearer ${jwt({ access: 'm' })}` },
    coll_r: { 'api-key': jwt({ access: [{ collection: C, access: 'r' }] }) },
    coll_rw: { 'api-key': jwt({ access: [{ collection: C, access: 'rw' }] }) },
    coll_prw: { authorization: `Bearer ${jwt({ access: [{ collection: C, access: 'prw' }] })}` },
    other: { 'api-key': jwt({ access: [{ collection: O, access: 'rw' }] }) },
    pay_r: { 'api-key': jwt({ access: [{ collection: C, access: 'r', payload: acme }] }) },
    pay_rw: { authorization: `Bearer ${jwt({ access: [{ collection: C, access: 'rw', payload: acme }] })}` },
  };
}

// Rows as in auth_matrix.test.mjs (columns in PRINCIPALS order).
const ok = 'ok';
const PUBLIC = [ok, ok, ok, ok, ok, ok, ok, ok, ok, ok, ok, ok, ok, ok];
const ANY_VALID = [401, 401, ok, ok, ok, ok, ok, ok, ok, ok, ok, ok, ok, ok];
const READ = [401, 401, ok, ok, ok, ok, ok, ok, ok, ok, ok, 403, ok, ok];
const MANAGE = [401, 401, ok, ok, ok, 403, 403, ok, 403, 403, 403, 403, 403, 403];
const POINT_WRITE = [401, 401, ok, ok, ok, 403, 403, ok, 403, ok, ok, 403, 403, ok];
const INDEX = [401, 401, ok, ok, ok, 403, 403, ok, 403, ok, 403, 403, 403, 403];
// Clearing an acme point's payload would move it out of pay_rw's rows: a row-level 403.
const CLEAR = [401, 401, ok, ok, ok, 403, 403, ok, 403, ok, ok, 403, 403, 'row403'];
const GLOBAL_READ = [401, 401, ok, ok, ok, ok, ok, ok, 403, 403, 403, 403, 403, 403];
// Snapshots as REST's (auth_matrix.test.mjs): unrestricted readers list, `rw` creates/deletes.
const SNAP_READ = [401, 401, ok, ok, ok, ok, ok, ok, ok, ok, ok, 403, 403, 403];
const SNAP_WRITE = INDEX;
// A collection's cluster information needs access to the whole collection (docs/PERMISSIONS.md):
// not prw, not row-restricted — as REST's GET /collections/{c}/cluster.
const COLL_CLUSTER = [401, 401, ok, ok, ok, ok, ok, ok, ok, ok, 403, 403, 403, 403];
const GRPC = { ok: 0, 401: 16, 403: 7, 404: 5, row403: 7 };

const acmePoint = (id) => ({ id: { num: id }, vectors: { vector: { data: [1, 0, 0, 0] } }, payload: { tenant: { string_value: 'acme' } } });

const q = { dense: { data: [1, 0, 0, 0] } };
const qv = [1, 0, 0, 0];
const state = {}; // names made by `before` steps (snapshots to delete)

// [service, method, request (or a function giving it), expected row, before (as root), after]
const RPCS = [
  ['Qdrant', 'HealthCheck', {}, PUBLIC],
  ['Health', 'Check', {}, PUBLIC],
  ['Collections', 'List', {}, ANY_VALID],
  ['Collections', 'Get', { collection_name: C }, READ],
  ['Collections', 'CollectionExists', { collection_name: C }, READ],
  ['Collections', 'Create', { collection_name: 'mx_new', vectors_config: { params: { size: 4, distance: 'Cosine' } } }, MANAGE, null, (root) => root('Collections', 'Delete', { collection_name: 'mx_new' }).catch(() => {})],
  ['Collections', 'Delete', { collection_name: 'mx_del' }, MANAGE, (root) => root('Collections', 'Create', { collection_name: 'mx_del', vectors_config: { params: { size: 4, distance: 'Cosine' } } }).catch(() => {})],
  ['Points', 'Upsert', { collection_name: C, wait: true, points: [acmePoint(100)] }, POINT_WRITE],
  ['Points', 'Delete', { collection_name: C, wait: true, points: { points: { ids: [{ num: 101 }] } } }, POINT_WRITE],
  ['Points', 'Search', { collection_name: C, vector: [1, 0, 0, 0], limit: 3 }, READ],
  ['Points', 'Query', { collection_name: C, query: { nearest: { dense: { data: [1, 0, 0, 0] } } }, limit: 3 }, READ],
  ['Points', 'Scroll', { collection_name: C, limit: 3 }, READ],
  ['Points', 'Get', { collection_name: C, ids: [{ num: 1 }] }, READ],
  ['Points', 'Count', { collection_name: C, exact: true }, READ],
  ['Points', 'SetPayload', { collection_name: C, wait: true, payload: { x: { integer_value: 1 } }, points_selector: { points: { ids: [{ num: 1 }] } } }, POINT_WRITE],
  ['Points', 'OverwritePayload', { collection_name: C, wait: true, payload: { tenant: { string_value: 'acme' } }, points_selector: { points: { ids: [{ num: 1 }] } } }, POINT_WRITE],
  ['Points', 'DeletePayload', { collection_name: C, wait: true, keys: ['x'], points_selector: { points: { ids: [{ num: 1 }] } } }, POINT_WRITE],
  ['Points', 'ClearPayload', { collection_name: C, wait: true, points: { points: { ids: [{ num: 2 }] } } }, CLEAR, null, (root) => root('Points', 'Upsert', { collection_name: C, wait: true, points: [acmePoint(2)] })],
  ['Points', 'CreateFieldIndex', { collection_name: C, wait: true, field_name: 'n', field_type: 'FieldTypeKeyword' }, INDEX],
  ['Collections', 'UpdateAliases', { actions: [{ create_alias: { collection_name: C, alias_name: 'mx_ga' } }] }, MANAGE, null, (root) => root('Collections', 'UpdateAliases', { actions: [{ delete_alias: { alias_name: 'mx_ga' } }] }).catch(() => {})],
  ['Points', 'UpdateBatch', { collection_name: C, wait: true, operations: [{ upsert: { points: [acmePoint(102)] } }] }, POINT_WRITE],
  ['Points', 'UpdateBatch', { collection_name: C, wait: true, operations: [{ set_payload: { payload: { z: { integer_value: 1 } }, points_selector: { points: { ids: [{ num: 1 }] } } } }] }, POINT_WRITE],
  ['Collections', 'ListAliases', {}, ANY_VALID],
  ['Collections', 'ListCollectionAliases', { collection_name: C }, READ],
  ['Collections', 'Update', { collection_name: C, optimizers_config: { indexing_threshold: 20000 } }, MANAGE],
  ['Collections', 'CollectionClusterInfo', { collection_name: C }, COLL_CLUSTER],
  ['Points', 'SearchBatch', { collection_name: C, search_points: [{ collection_name: C, vector: qv, limit: 3 }] }, READ],
  ['Points', 'SearchGroups', { collection_name: C, vector: qv, group_by: 'tenant', limit: 3, group_size: 2 }, READ],
  ['Points', 'QueryBatch', { collection_name: C, query_points: [{ collection_name: C, query: { nearest: q }, limit: 3 }] }, READ],
  ['Points', 'QueryGroups', { collection_name: C, query: { nearest: q }, group_by: 'tenant', limit: 3, group_size: 2 }, READ],
  ['Points', 'Query', { collection_name: C, prefetch: [{ query: { nearest: q }, limit: 5 }, { query: { recommend: { positive: [{ id: { num: 1 } }] } }, limit: 5 }], query: { fusion: 'RRF' }, limit: 3 }, READ],
  ['Points', 'Recommend', { collection_name: C, positive: [{ num: 1 }], limit: 3 }, READ],
  ['Points', 'RecommendBatch', { collection_name: C, recommend_points: [{ collection_name: C, positive: [{ num: 1 }], limit: 3 }] }, READ],
  ['Points', 'RecommendGroups', { collection_name: C, positive: [{ num: 1 }], group_by: 'tenant', limit: 3, group_size: 2 }, READ],
  ['Points', 'Discover', { collection_name: C, target: { single: { vector: { data: qv } } }, context: [{ positive: { vector: { data: [0, 1, 0, 0] } }, negative: { vector: { data: [0, 0, 1, 0] } } }], limit: 3 }, READ],
  ['Points', 'DiscoverBatch', { collection_name: C, discover_points: [{ collection_name: C, target: { single: { vector: { data: qv } } }, context: [{ positive: { vector: { data: [0, 1, 0, 0] } }, negative: { vector: { data: [0, 0, 1, 0] } } }], limit: 3 }] }, READ],
  ['Points', 'Facet', { collection_name: C, key: 'tenant' }, READ],
  ['Points', 'SearchMatrixPairs', { collection_name: C, sample: 5, limit: 2 }, READ],
  ['Points', 'SearchMatrixOffsets', { collection_name: C, sample: 5, limit: 2 }, READ],
  ['Points', 'UpdateVectors', { collection_name: C, wait: true, points: [{ id: { num: 1 }, vectors: { vector: { data: [1, 0, 0, 0] } } }] }, POINT_WRITE],
  ['Points', 'DeleteVectors', { collection_name: C, wait: true, points_selector: { points: { ids: [{ num: 3 }] } }, vectors: { names: [''] } }, POINT_WRITE],
  ['Points', 'DeleteFieldIndex', { collection_name: C, wait: true, field_name: 'tmpidx' }, INDEX, (root) => root('Points', 'CreateFieldIndex', { collection_name: C, wait: true, field_name: 'tmpidx', field_type: 'FieldTypeKeyword' })],
  ['Snapshots', 'Create', { collection_name: C }, SNAP_WRITE],
  ['Snapshots', 'List', { collection_name: C }, SNAP_READ],
  ['Snapshots', 'Delete', () => ({ collection_name: C, snapshot_name: state.snap }), SNAP_WRITE, async (root) => { state.snap = (await root('Snapshots', 'Create', { collection_name: C })).snapshot_description.name; }],
  ['Snapshots', 'CreateFull', {}, MANAGE],
  ['Snapshots', 'ListFull', {}, GLOBAL_READ],
  ['Snapshots', 'DeleteFull', () => ({ snapshot_name: state.full }), MANAGE, async (root) => { state.full = (await root('Snapshots', 'CreateFull', {})).snapshot_description.name; }],
];

let srv;
let port;
let services;
const clients = {};

function unary(svc, method, req, meta) {
  if (!clients[svc]) clients[svc] = new services[svc](`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  const md = new grpc.Metadata();
  for (const [k, v] of Object.entries(meta)) md.set(k, v);
  return new Promise((resolve, reject) => clients[svc][method](req, md, (e, v) => (e ? reject(e) : resolve(v))));
}

before(async () => {
  port = await freePort();
  // Failed authentications all come from 127.0.0.1 here: a throttle lockout would hide cells.
  srv = await startServer({ insecure: false, env: keyEnv({ AEGIS__SERVICE__GRPC_PORT: String(port), AEGIS__SERVICE__AUTH_MAX_FAILURES: '1000000' }) });
  const dir = path.join(REPO_ROOT, 'proto', 'qdrant');
  const opts = { includeDirs: [dir], keepCase: true, longs: Number, enums: String, oneofs: true };
  const q = grpc.loadPackageDefinition(protoLoader.loadSync(['points_service.proto', 'collections_service.proto', 'snapshots_service.proto'], opts)).qdrant;
  const h = grpc.loadPackageDefinition(protoLoader.loadSync(['health_check.proto'], opts)).grpc.health.v1;
  // qdrant.proto imports Qdrant's internal services, which are not vendored: its one service is
  // declared here by hand (same name, method and messages: HealthCheckRequest {} → {title, version}).
  const healthDef = {
    HealthCheck: {
      path: '/qdrant.Qdrant/HealthCheck',
      requestStream: false,
      responseStream: false,
      requestSerialize: () => Buffer.alloc(0),
      requestDeserialize: (b) => b,
      responseSerialize: (b) => b,
      responseDeserialize: (b) => b,
    },
  };
  services = { Collections: q.Collections, Points: q.Points, Snapshots: q.Snapshots, Health: h.Health, Qdrant: grpc.makeGenericClientConstructor(healthDef, 'Qdrant') };
  const root = { 'api-key': ROOT_KEY };
  for (const name of [C, O]) await unary('Collections', 'Create', { collection_name: name, vectors_config: { params: { size: 4, distance: 'Cosine' } } }, root);
  await unary('Points', 'Upsert', { collection_name: C, wait: true, points: [1, 2, 3].map(acmePoint) }, root);
  await unary('Points', 'CreateFieldIndex', { collection_name: C, wait: true, field_name: 'tenant', field_type: 'FieldTypeKeyword' }, root);
});

after(async () => {
  for (const c of Object.values(clients)) c.close();
  await srv?.cleanup();
});

test('every RPC × every principal answers as its REST route does', async () => {
  const creds = credentials();
  const root = (svc, method, req) => unary(svc, method, req, creds.root);
  const m = new Mismatches('gRPC authorization matrix');
  let cells = 0;
  for (const [svc, method, req, row, pre, post] of RPCS) {
    assert.equal(row.length, PRINCIPALS.length);
    for (let i = 0; i < PRINCIPALS.length; i++) {
      if (pre) await pre(root);
      let code = 0;
      let msg = '';
      try {
        await unary(svc, method, typeof req === 'function' ? req() : req, creds[PRINCIPALS[i]]);
      } catch (e) {
        code = e.code;
        msg = e.details;
      }
      if (post) await post(root);
      cells++;
      const want = GRPC[row[i]];
      m.check(code === want, `${svc}/${method} as ${PRINCIPALS[i]}: expected ${want}, got ${code} ${msg}`);
      if (code === 7 && row[i] !== 'row403') m.check(/missing permission [a-z_]+:[a-z_]+/.test(msg), `${svc}/${method} as ${PRINCIPALS[i]}: PERMISSION_DENIED does not name the permission: ${msg}`);
    }
  }
  assert.equal(cells, RPCS.length * PRINCIPALS.length);
  m.done();
});

test('every RPC the server serves has a row here', async () => {
  // The served list is the RPC table (src/api/api_grpc.c); any row-less method fails this test.
  const src = (await import('node:fs')).readFileSync(path.join(REPO_ROOT, 'src', 'api', 'api_grpc.c'), 'utf8');
  const served = [...src.matchAll(/R2?\(\s*"\/(?:qdrant|grpc\.health\.v1)\.([A-Za-z]+)\/([A-Za-z]+)"/g)].map((x) => `${x[1]}/${x[2]}`);
  assert.ok(served.length > 40, `found ${served.length} RPCs in the table`);
  const rows = new Set(RPCS.map(([svc, method]) => `${svc === 'Health' ? 'Health' : svc}/${method}`));
  const missing = served.filter((x) => !rows.has(x));
  assert.deepEqual(missing, [], `RPCs without a matrix row: ${missing.join(', ')}`);
});

test('gRPC denials are in the audit log, as REST ones are', async () => {
  const r = await srv.request('GET', '/auth/audit?decision=deny&limit=1000', undefined, { headers: { 'api-key': ROOT_KEY } });
  assert.equal(r.status, 200, r.text);
  const text = JSON.stringify(r.json.result);
  assert.match(text, /gRPC/, 'a denial of a gRPC call is recorded with its method');
  assert.match(text, /\/collections\/\{name\}\/points\/count|points\/count/);
});
