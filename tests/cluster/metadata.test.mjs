// Collection metadata in etcd (docs/CLUSTER.md "Collections"): a 3-member etcd cluster (ports
// 7460-7465) and 3 Aegis nodes (7470-7472), the three started at once on the empty etcd.
//   1. the three nodes start together on an empty etcd and share one security state;
//   2. a payload index created on A is on every node and used there by a filtered search (strict
//      mode refuses filtering on a field without an index); deleted on B, gone everywhere;
//   3. GET /collections/{c} on a sharded collection counts the points of every shard;
//   4. tenants declared on A are listed and enforced on C (an inactive tenant hidden everywhere,
//      a deleted one gone everywhere);
//   5. PATCH on A (optimizers, metadata, strict mode) and a named vector added on A show on C;
//      a PATCH refused locally leaves etcd unchanged;
//   6. a collection deleted while C was down is dropped when C starts again; C's collection
//      from before cluster mode survives;
//   7. with every etcd member down, an index or tenant change is refused (503) and nothing
//      changed on any node or in etcd; accepted once etcd is back.
// Skipped, saying so, when etcd is not installed.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';

import { startServer, PORT_OFFSET, TIME_SCALE } from '../e2e/lib/server.mjs';
import { caller, etcdLeader, startEtcd as startEtcdMember, until } from './lib/cluster.mjs';

const ROOT_KEY = 'cluster-meta-root-key-0123456789abcdef';
const ETCD_BIN = ['/usr/bin/etcd', '/usr/local/bin/etcd'].find((p) => fs.existsSync(p));
const SKIP = ETCD_BIN ? false : 'etcd is not installed (scripts/setup.sh installs etcd-server): cluster tests skipped';

const ETCD_PORTS = [7460 + PORT_OFFSET, 7462 + PORT_OFFSET, 7464 + PORT_OFFSET];
const NODE_PORTS = [7470 + PORT_OFFSET, 7471 + PORT_OFFSET, 7472 + PORT_OFFSET];
const ENDPOINTS = ETCD_PORTS.map((p) => `http://127.0.0.1:${p}`).join(',');
const DIM = 4;

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'aegis-meta-'));
const members = [];
const nodes = [];

function startEtcd(i) {
  return startEtcdMember(ETCD_BIN, { ports: ETCD_PORTS, i, dir: tmp, prefix: 'm', token: 'aegis-meta-test' });
}

const { root, call, ok } = caller(ROOT_KEY);
async function etcdGet(key) {
  const r = await fetch(`http://127.0.0.1:${ETCD_PORTS[0]}/v3/kv/range`, {
    method: 'POST', body: JSON.stringify({ key: Buffer.from(key).toString('base64') }),
  });
  const j = await r.json();
  return j.kvs?.length ? { rev: Number(j.kvs[0].mod_revision), value: JSON.parse(Buffer.from(j.kvs[0].value, 'base64').toString()) } : null;
}

const COLORS = ['red', 'green', 'blue'];
const POINTS = Array.from({ length: 90 }, (_, i) => ({
  id: i + 1,
  vector: [Math.sin(i), Math.cos(i), Math.sin(i * 0.7), Math.cos(i * 1.3)],
  payload: { color: COLORS[i % 3], tenant: i % 2 ? 'acme' : 'globex', n: i },
}));
const nodeEnv = (i) => ({
  AEGIS__SERVICE__API_KEY: ROOT_KEY,
  AEGIS__SERVICE__ACCESS_LOG: 'false',
  AEGIS__CLUSTER__ENABLED: 'true',
  AEGIS__CLUSTER__ETCD_ENDPOINTS: ENDPOINTS,
  AEGIS__CLUSTER__NODE_ID: `node-${'abc'[i]}`,
});
const cStorage = path.join(tmp, 'node-c');

async function etcdUp() {
  await etcdLeader(ETCD_PORTS[0], 30000 * TIME_SCALE);
}

before(async () => {
  if (SKIP) return;
  for (let i = 0; i < 3; i++) members.push(startEtcd(i));
  await etcdUp();
  // Node C ran alone before joining: its collection must survive cluster mode.
  fs.mkdirSync(cStorage);
  const alone = await startServer({ insecure: false, port: NODE_PORTS[2], storage: cStorage, env: { AEGIS__SERVICE__API_KEY: ROOT_KEY } });
  await ok(alone, 'PUT', '/collections/before_cluster', { vectors: { size: DIM, distance: 'Dot' } });
  await alone.stop();
  // All three at once, on an empty etcd.
  const started = await Promise.allSettled([0, 1, 2].map((i) => startServer({
    insecure: false, port: NODE_PORTS[i], storage: i === 2 ? cStorage : undefined, env: nodeEnv(i),
  })));
  nodes.push(...started.map((r) => (r.status === 'fulfilled' ? r.value : null)));
  const failed = started.find((r) => r.status === 'rejected');
  if (failed) throw failed.reason;
});

after(async () => {
  for (const n of nodes) if (n) await n.cleanup().catch((e) => console.log(`cleanup: ${e.message}`));
  for (const m of members) {
    m.proc.kill('SIGKILL');
    await m.exited;
  }
  fs.rmSync(tmp, { recursive: true, force: true });
});

test('three nodes started at once on an empty etcd share one security state', { skip: SKIP }, async () => {
  const [A, B, C] = nodes;
  for (const n of nodes) assert.equal((await call(n, 'GET', '/readyz')).status, 200);
  await ok(A, 'POST', '/auth/roles', { name: 'reader', permissions: [{ action: 'read:roles' }] });
  const key = (await ok(A, 'POST', '/auth/users/zed', { roles: ['reader'] })).api_key;
  // A user's key is checked with the store's hash key: it works on B and C only if every node
  // loaded the same one (the one node that won the first write's compare-and-swap).
  for (const n of [B, C]) {
    await until(`zed's key on ${n.port}`, async () => (await call(n, 'GET', '/auth/roles', undefined, { headers: { 'api-key': key } })).status === 200);
  }
  for (const n of nodes) assert.deepEqual((await ok(n, 'GET', '/auth/users/zed')).roles, ['reader']);
});

const STRICT = { enabled: true, unindexed_filtering_retrieve: false };
const red = { must: [{ key: 'color', match: { value: 'red' } }] };

test('a payload index created on A is on every node and used by filtered searches there', { skip: SKIP }, async () => {
  const [A, B, C] = nodes;
  await ok(A, 'PUT', '/collections/mi', { vectors: { size: DIM, distance: 'Dot' }, shard_number: 3, strict_mode_config: STRICT });
  for (const n of nodes) await until(`mi on ${n.port}`, async () => (await call(n, 'GET', '/collections/mi')).status === 200);
  await ok(B, 'PUT', '/collections/mi/points?wait=true', { points: POINTS });
  const search = { vector: [1, 0, 0, 0], limit: 100, filter: red, with_payload: true };
  // Without the index, strict mode refuses the filter on C (and on every node it asks).
  const before = await call(C, 'POST', '/collections/mi/points/search', search);
  assert.equal(before.status, 400, before.text);
  await ok(A, 'PUT', '/collections/mi/index?wait=true', { field_name: 'color', field_schema: 'keyword' });
  const rec = await etcdGet('/aegis/meta/collections/mi');
  assert.deepEqual(rec.value.schema.color, { data_type: 'keyword' });
  for (const n of nodes) {
    await until(`index on ${n.port}`, async () => (await ok(n, 'GET', '/collections/mi')).payload_schema.color?.data_type === 'keyword');
  }
  // Used on C: every shard (each node) accepts the filter and applies it.
  const got = await ok(C, 'POST', '/collections/mi/points/search', search);
  assert.equal(got.length, POINTS.filter((p) => p.payload.color === 'red').length);
  assert.ok(got.every((p) => p.payload.color === 'red'));
  // The schema's counts are summed over the shards too.
  assert.equal((await ok(C, 'GET', '/collections/mi')).payload_schema.color.points, POINTS.length);
  // Deleted on B: gone everywhere, and the filter is refused again.
  await ok(B, 'DELETE', '/collections/mi/index/color?wait=true');
  for (const n of nodes) {
    await until(`index gone on ${n.port}`, async () => (await ok(n, 'GET', '/collections/mi')).payload_schema.color === undefined);
  }
  assert.equal((await call(A, 'POST', '/collections/mi/points/search', search)).status, 400);
});

test('GET /collections/{c} counts the points of every shard', { skip: SKIP }, async () => {
  for (const n of nodes) {
    const info = await ok(n, 'GET', '/collections/mi');
    assert.equal(info.points_count, POINTS.length, `points_count on ${n.port}`);
    assert.equal(info.indexed_vectors_count <= POINTS.length, true);
  }
});

test('tenants declared on A are enforced on C', { skip: SKIP }, async () => {
  const [A, B, C] = nodes;
  await ok(A, 'PUT', '/collections/mt', { vectors: { size: DIM, distance: 'Dot' }, shard_number: 3 });
  for (const n of nodes) await until(`mt on ${n.port}`, async () => (await call(n, 'GET', '/collections/mt')).status === 200);
  await ok(A, 'PUT', '/collections/mt/index?wait=true', { field_name: 'tenant', field_schema: { type: 'keyword', is_tenant: true } });
  await ok(A, 'POST', '/collections/mt/tenants', { name: 'acme' });
  await ok(A, 'POST', '/collections/mt/tenants', { name: 'globex' });
  const dup = await call(B, 'POST', '/collections/mt/tenants', { name: 'acme' });
  assert.equal(dup.status, 409, dup.text);
  for (const n of nodes) {
    await until(`tenants on ${n.port}`, async () => (await ok(n, 'GET', '/collections/mt/tenants')).tenants.length === 2);
  }
  await ok(C, 'PUT', '/collections/mt/points?wait=true', { points: POINTS });
  // An undeclared tenant is refused by every node (each point's owner checks it).
  for (const id of [1, 2, 3, 4, 5, 6]) {
    const w = await call(C, 'PUT', '/collections/mt/points?wait=true', { points: [{ id, vector: [1, 1, 1, 1], payload: { tenant: 'initech' } }] });
    assert.equal(w.status, 403, `point ${id}: ${w.text}`);
    assert.match(w.json.status.error, /tenant `initech` is not declared/);
  }
  // Deactivated on A: its points are hidden from reads through C, on every shard.
  await ok(A, 'POST', '/collections/mt/tenants/acme/deactivate');
  const globex = POINTS.filter((p) => p.payload.tenant === 'globex').length;
  await until('acme hidden through C', async () => (await ok(C, 'POST', '/collections/mt/points/count', { exact: true })).count === globex);
  const seen = await ok(C, 'POST', '/collections/mt/points/search', { vector: [1, 0, 0, 0], limit: 100, with_payload: true });
  assert.ok(seen.length > 0 && seen.every((p) => p.payload.tenant === 'globex'));
  // Deleted on B: gone from every node, with its points.
  await ok(B, 'DELETE', '/collections/mt/tenants/acme');
  for (const n of nodes) {
    await until(`acme gone on ${n.port}`, async () => (await ok(n, 'GET', '/collections/mt/tenants')).tenants.map((t) => t.name).join() === 'globex');
  }
  await ok(A, 'POST', '/collections/mt/tenants', { name: 'acme' });
  await until('acme back, empty', async () => (await ok(C, 'POST', '/collections/mt/points/count', { exact: true })).count === globex);
});

test('PATCH and named vectors changed on A show on C', { skip: SKIP }, async () => {
  const [A, B, C] = nodes;
  await ok(A, 'PUT', '/collections/mp', { vectors: { a: { size: DIM, distance: 'Dot' } }, shard_number: 2, strict_mode_config: STRICT });
  for (const n of nodes) await until(`mp on ${n.port}`, async () => (await call(n, 'GET', '/collections/mp')).status === 200);
  await ok(A, 'PATCH', '/collections/mp', { optimizers_config: { indexing_threshold: 12345 }, metadata: { owner: 'team-a', gone: 1 } });
  await ok(B, 'PATCH', '/collections/mp', { metadata: { gone: null }, strict_mode_config: { unindexed_filtering_retrieve: true } });
  for (const n of nodes) {
    await until(`PATCH on ${n.port}`, async () => {
      const cfg = (await ok(n, 'GET', '/collections/mp')).config;
      return cfg.optimizer_config.indexing_threshold === 12345 && cfg.metadata?.owner === 'team-a' &&
        !('gone' in cfg.metadata) && cfg.strict_mode_config?.unindexed_filtering_retrieve === true;
    });
  }
  // Strict mode relaxed on B: C lets a filter on an unindexed field through now.
  const s = await call(C, 'POST', '/collections/mp/points/search', { vector: { name: 'a', vector: [1, 0, 0, 0] }, filter: red, limit: 3 });
  assert.equal(s.status, 200, s.text);
  // A PATCH this node refuses is never recorded.
  const rec = await etcdGet('/aegis/meta/collections/mp');
  const bad = await call(A, 'PATCH', '/collections/mp', { vectors: { nope: { on_disk: true } } });
  assert.equal(bad.status, 400, bad.text);
  assert.equal((await etcdGet('/aegis/meta/collections/mp')).rev, rec.rev);
  // A named vector added on A: on C, and writable through C.
  await ok(A, 'PUT', '/collections/mp/vectors/b', { dense: { size: 2, distance: 'Cosine' } });
  for (const n of nodes) {
    await until(`vector b on ${n.port}`, async () => !!(await ok(n, 'GET', '/collections/mp')).config.params.vectors.b);
  }
  await ok(C, 'PUT', '/collections/mp/points?wait=true', { points: POINTS.slice(0, 10).map((p) => ({ id: p.id, vector: { a: p.vector, b: [1, 2] } })) });
  assert.equal((await ok(B, 'GET', '/collections/mp')).points_count, 10);
  await ok(B, 'DELETE', '/collections/mp/vectors/b');
  for (const n of nodes) {
    await until(`vector b gone on ${n.port}`, async () => !(await ok(n, 'GET', '/collections/mp')).config.params.vectors.b);
  }
});

test('a collection deleted while a node was down is dropped when it starts', { skip: SKIP }, async () => {
  const [A, B, C] = nodes;
  await ok(A, 'PUT', '/collections/gone', { vectors: { size: DIM, distance: 'Dot' } });
  await until('gone on C', async () => (await call(C, 'GET', '/collections/gone')).status === 200);
  assert.equal((await call(C, 'GET', '/collections/before_cluster')).status, 200);
  await C.stop();
  try {
    await ok(B, 'DELETE', '/collections/gone');
  } finally {
    await C.start();
  }
  assert.equal((await call(C, 'GET', '/collections/gone')).status, 404);
  // Its collection from before cluster mode (never in etcd) is kept.
  assert.equal((await call(C, 'GET', '/collections/before_cluster')).status, 200);
  // And the cluster's collections are all there.
  for (const name of ['mi', 'mt', 'mp']) assert.equal((await call(C, 'GET', `/collections/${name}`)).status, 200, name);
});

test('etcd unreachable: a metadata change is refused with 503 and nothing changes anywhere', { skip: SKIP }, async () => {
  const [A, B, C] = nodes;
  for (const m of members) m.proc.kill('SIGKILL');
  await Promise.all(members.map((m) => m.exited));
  try {
    const r = await call(A, 'PUT', '/collections/mi/index?wait=true', { field_name: 'n', field_schema: 'integer' });
    assert.equal(r.status, 503, r.text);
    assert.match(r.json.status.error, /etcd is unreachable|cannot confirm/);
    const t = await call(C, 'POST', '/collections/mt/tenants', { name: 'umbrella' });
    assert.equal(t.status, 503, t.text);
    assert.match(t.json.status.error, /etcd is unreachable|cannot confirm/);
  } finally {
    for (let i = 0; i < 3; i++) members[i] = startEtcd(i);
  }
  await etcdUp();
  for (const n of nodes) await until(`${n.port} ready again`, async () => (await call(n, 'GET', '/readyz')).status === 200, 30000 * TIME_SCALE);
  for (const n of nodes) {
    assert.equal((await ok(n, 'GET', '/collections/mi/cluster')).local_shards.length, 1);
    const info = await ok(n, 'GET', '/collections/mi');
    assert.equal(info.payload_schema.n, undefined, `index n on ${n.port}`);
    assert.ok(!(await ok(n, 'GET', '/collections/mt/tenants')).tenants.some((x) => x.name === 'umbrella'));
  }
  assert.equal((await etcdGet('/aegis/meta/collections/mi')).value.schema.n, undefined);
  // And the same change is accepted once etcd is back.
  await ok(B, 'PUT', '/collections/mi/index?wait=true', { field_name: 'n', field_schema: 'integer' });
  for (const n of nodes) await until(`index n on ${n.port}`, async () => !!(await ok(n, 'GET', '/collections/mi')).payload_schema.n);
});
