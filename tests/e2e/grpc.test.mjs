// The gRPC API (service.grpc_port) against a real server: the basic flow with the official
// @qdrant/js-client-grpc, then @grpc/grpc-js loading Qdrant's unmodified protos (proto/qdrant) for
// the authorization checks (the same guard as REST: keys, read-only key, a collection-scoped JWT
// with a payload restriction), and raw HTTP/2 for bad input (unknown method, truncated and
// malformed messages). Expected results are computed here from what was written.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http2 from 'node:http2';
import net from 'node:net';
import fs from 'node:fs';
import os from 'node:os';
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { QdrantClient } from '@qdrant/js-client-grpc';
import grpc from '@grpc/grpc-js';
import protoLoader from '@grpc/proto-loader';
import { startServer, freePort, REPO_ROOT } from './lib/server.mjs';
import { keyEnv, ROOT_KEY, RO_KEY, jwt } from './lib/auth.mjs';

const COLL = 'grpc_c';
const POINTS = [
  { id: 1, vector: [1, 0, 0, 0], payload: { tenant: 'acme', n: 1 } },
  { id: 2, vector: [0.9, 0.1, 0, 0], payload: { tenant: 'acme', n: 2 } },
  { id: 3, vector: [0, 1, 0, 0], payload: { tenant: 'beta', n: 3 } },
  { id: 4, vector: [0.95, 0, 0.05, 0], payload: { tenant: 'beta', n: 4 } },
  { id: 5, vector: [0, 0, 0, 1], payload: { tenant: 'acme', n: 5 } },
];
const ACME = POINTS.filter((p) => p.payload.tenant === 'acme').map((p) => p.id);

let srv;
let grpcPort;
let client; // official client, root key
let protos;

function cosine(a, b) {
  const dot = a.reduce((s, x, i) => s + x * b[i], 0);
  const na = Math.hypot(...a);
  const nb = Math.hypot(...b);
  return dot / (na * nb);
}

before(async () => {
  grpcPort = await freePort();
  srv = await startServer({ insecure: false, env: keyEnv({ AEGIS__SERVICE__GRPC_PORT: String(grpcPort) }) });
  client = new QdrantClient({ host: '127.0.0.1', port: grpcPort, apiKey: ROOT_KEY, https: false, checkCompatibility: false });
  const def = protoLoader.loadSync(['points_service.proto', 'collections_service.proto'], {
    includeDirs: [path.join(REPO_ROOT, 'proto', 'qdrant')],
    keepCase: true,
    longs: Number,
    enums: String,
    defaults: false,
    oneofs: true,
  });
  protos = grpc.loadPackageDefinition(def).qdrant;
});

after(async () => {
  await srv?.cleanup();
});

/** A grpc-js Points client with the given metadata (credentials). */
function points(meta = {}) {
  const c = new protos.Points(`127.0.0.1:${grpcPort}`, grpc.credentials.createInsecure());
  const md = new grpc.Metadata();
  for (const [k, v] of Object.entries(meta)) md.set(k, v);
  const call = (method, req) =>
    new Promise((resolve, reject) => c[method](req, md, (err, res) => (err ? reject(err) : resolve(res))));
  return { call, close: () => c.close() };
}

async function rejectsWith(promise, code) {
  await assert.rejects(promise, (err) => {
    assert.equal(err.code, code, `expected gRPC status ${code}, got ${err.code}: ${err.message}`);
    return true;
  });
}

test('basic flow with the official client', async () => {
  const health = await client.api('service').healthCheck({});
  assert.equal(typeof health.version, 'string');
  assert.ok(health.title.length > 0);

  const cols = client.api('collections');
  await cols.create({ collectionName: COLL, vectorsConfig: { config: { case: 'params', value: { size: 4n, distance: 1 } } } });
  assert.equal((await cols.collectionExists({ collectionName: COLL })).result.exists, true);
  assert.equal((await cols.collectionExists({ collectionName: 'nope' })).result.exists, false);
  const list = await cols.list({});
  assert.ok(list.collections.some((c) => c.name === COLL));
  const info = await cols.get({ collectionName: COLL });
  assert.equal(info.result.config.params.vectorsConfig.config.value.size, 4n);

  const pts = client.api('points');
  const up = await pts.upsert({
    collectionName: COLL,
    wait: true,
    points: POINTS.map((p) => ({
      id: { pointIdOptions: { case: 'num', value: BigInt(p.id) } },
      vectors: { vectorsOptions: { case: 'vector', value: { data: p.vector } } },
      payload: Object.fromEntries(
        Object.entries(p.payload).map(([k, v]) => [
          k,
          { kind: typeof v === 'string' ? { case: 'stringValue', value: v } : { case: 'integerValue', value: BigInt(v) } },
        ]),
      ),
    })),
  });
  assert.equal(up.result.status, 2); // Completed
  assert.equal((await pts.count({ collectionName: COLL, exact: true })).result.count, 5n);

  // Search: the ranking computed here.
  const q = [1, 0, 0, 0];
  const want = POINTS.map((p) => ({ id: p.id, s: cosine(q, p.vector) })).sort((a, b) => b.s - a.s);
  const res = await pts.search({ collectionName: COLL, vector: q, limit: 3n, withPayload: { selectorOptions: { case: 'enable', value: true } } });
  assert.deepEqual(
    res.result.map((r) => Number(r.id.pointIdOptions.value)),
    want.slice(0, 3).map((w) => w.id),
  );
  assert.ok(Math.abs(res.result[0].score - want[0].s) < 1e-5);
  assert.equal(res.result[0].payload.tenant.kind.value, 'acme');

  const qr = await pts.query({
    collectionName: COLL,
    query: { variant: { case: 'nearest', value: { variant: { case: 'dense', value: { data: q } } } } },
    limit: 2n,
  });
  assert.deepEqual(
    qr.result.map((r) => Number(r.id.pointIdOptions.value)),
    want.slice(0, 2).map((w) => w.id),
  );

  const sc = await pts.scroll({ collectionName: COLL, limit: 2, withPayload: { selectorOptions: { case: 'enable', value: true } } });
  assert.deepEqual(sc.result.map((r) => Number(r.id.pointIdOptions.value)), [1, 2]);
  assert.equal(Number(sc.nextPageOffset.pointIdOptions.value), 3);

  const got = await pts.get({
    collectionName: COLL,
    ids: [{ pointIdOptions: { case: 'num', value: 3n } }],
    withVectors: { selectorOptions: { case: 'enable', value: true } },
  });
  assert.equal(got.result.length, 1);
  const v = got.result[0].vectors.vectorsOptions.value;
  const dense = v.vector?.case === 'dense' ? v.vector.value.data : v.data;
  assert.deepEqual(dense.map((x) => Math.round(x * 1000) / 1000), [0, 1, 0, 0]);

  // A u64 id above 2^63 goes in and comes back exact.
  const BIG = 18446744073709551000n;
  await pts.upsert({
    collectionName: COLL,
    wait: true,
    points: [{ id: { pointIdOptions: { case: 'num', value: BIG } }, vectors: { vectorsOptions: { case: 'vector', value: { data: [0, 0, 1, 0] } } } }],
  });
  const big = await pts.get({ collectionName: COLL, ids: [{ pointIdOptions: { case: 'num', value: BIG } }] });
  assert.equal(big.result[0].id.pointIdOptions.value, BIG);
  await pts.delete({
    collectionName: COLL,
    wait: true,
    points: { pointsSelectorOneOf: { case: 'points', value: { ids: [{ pointIdOptions: { case: 'num', value: BIG } }] } } },
  });

  await pts.delete({
    collectionName: COLL,
    wait: true,
    points: { pointsSelectorOneOf: { case: 'points', value: { ids: [{ pointIdOptions: { case: 'num', value: 99n } }] } } },
  });
  assert.equal((await pts.count({ collectionName: COLL, exact: true })).result.count, 5n);

  // Errors map to Qdrant's status codes.
  await rejectsWith(cols.get({ collectionName: 'missing_coll' }), 5 /* Connect: NotFound */);
  await rejectsWith(cols.create({ collectionName: COLL, vectorsConfig: { config: { case: 'params', value: { size: 4n, distance: 1 } } } }), 6);
  await rejectsWith(pts.search({ collectionName: COLL, vector: [1, 0], limit: 3n }), 3);
});

test('authorization over gRPC: the same guard as REST', async () => {
  const none = points();
  await rejectsWith(none.call('Count', { collection_name: COLL, exact: true }), grpc.status.UNAUTHENTICATED);
  none.close();

  const bad = points({ 'api-key': 'wrong-key-for-grpc-tests-0123456789abcdef' });
  await rejectsWith(bad.call('Count', { collection_name: COLL, exact: true }), grpc.status.UNAUTHENTICATED);
  bad.close();

  const ro = points({ 'api-key': RO_KEY });
  assert.equal((await ro.call('Count', { collection_name: COLL, exact: true })).result.count, 5);
  await rejectsWith(
    ro.call('Upsert', {
      collection_name: COLL,
      wait: true,
      points: [{ id: { num: 50 }, vectors: { vector: { data: [1, 1, 1, 1] } } }],
    }),
    grpc.status.PERMISSION_DENIED,
  );
  ro.close();

  // A JWT for this collection only, restricted to tenant acme, sent as a bearer token.
  const token = jwt({ access: [{ collection: COLL, access: 'r', payload: { tenant: 'acme' } }] });
  const r = points({ authorization: `Bearer ${token}` });
  const sc = await r.call('Scroll', { collection_name: COLL, limit: 100 });
  assert.deepEqual(sc.result.map((p) => p.id.num).sort((a, b) => a - b), ACME);
  const se = await r.call('Search', { collection_name: COLL, vector: [1, 0, 0, 0], limit: 10 });
  assert.deepEqual(se.result.map((p) => p.id.num).sort((a, b) => a - b), ACME);
  const cnt = await r.call('Count', { collection_name: COLL, exact: true });
  assert.equal(cnt.result.count, ACME.length);
  await rejectsWith(
    r.call('Delete', { collection_name: COLL, points: { points: { ids: [{ num: 1 }] } } }),
    grpc.status.PERMISSION_DENIED,
  );
  r.close();
  const other = new protos.Collections(`127.0.0.1:${grpcPort}`, grpc.credentials.createInsecure());
  const md = new grpc.Metadata();
  md.set('authorization', `Bearer ${token}`);
  await rejectsWith(
    new Promise((res, rej) => other.Delete({ collection_name: COLL }, md, (e, v) => (e ? rej(e) : res(v)))),
    grpc.status.PERMISSION_DENIED,
  );
  other.close();
});

/** One raw HTTP/2 gRPC request; resolves {status, message, body}. */
function rawCall(pathName, payload, headers = {}) {
  return new Promise((resolve, reject) => {
    const s = http2.connect(`http://127.0.0.1:${grpcPort}`);
    s.on('error', reject);
    const req = s.request({
      ':method': 'POST',
      ':path': pathName,
      'content-type': 'application/grpc',
      te: 'trailers',
      'api-key': ROOT_KEY,
      ...headers,
    });
    let status = null;
    let message = '';
    const chunks = [];
    const take = (h) => {
      if (h['grpc-status'] !== undefined) {
        status = Number(h['grpc-status']);
        message = decodeURIComponent(h['grpc-message'] || '');
      }
    };
    req.on('response', take);
    req.on('trailers', take);
    req.on('data', (d) => chunks.push(d));
    req.on('end', () => {
      s.close();
      resolve({ status, message, body: Buffer.concat(chunks) });
    });
    req.on('error', reject);
    req.end(payload);
  });
}

function frame(msg, declared = msg.length) {
  const h = Buffer.alloc(5);
  h.writeUInt32BE(declared, 1);
  return Buffer.concat([h, msg]);
}

test('payload edits and aliases', async () => {
  const root = points({ 'api-key': ROOT_KEY });
  const sel = { points: { ids: [{ num: 3 }] } };
  await root.call('SetPayload', { collection_name: COLL, wait: true, payload: { color: { string_value: 'red' } }, points_selector: sel });
  let got = await root.call('Get', { collection_name: COLL, ids: [{ num: 3 }], with_payload: { enable: true } });
  assert.equal(got.result[0].payload.color.string_value, 'red');
  assert.equal(got.result[0].payload.tenant.string_value, 'beta');
  await root.call('DeletePayload', { collection_name: COLL, wait: true, keys: ['color'], points_selector: sel });
  // UpdateBatch: several operations, all or nothing, one result each.
  const batch = await root.call('UpdateBatch', {
    collection_name: COLL,
    wait: true,
    operations: [
      { upsert: { points: [{ id: { num: 60 }, vectors: { vector: { data: [0, 0, 0, 1] } } }] } },
      { set_payload: { payload: { k: { integer_value: 9 } }, points_selector: { points: { ids: [{ num: 60 }] } } } },
      { delete_points: { points: { points: { ids: [{ num: 60 }] } } } },
    ],
  });
  assert.equal(batch.result.length, 3);
  await rejectsWith(
    root.call('UpdateBatch', {
      collection_name: COLL,
      wait: true,
      operations: [{ upsert: { points: [{ id: { num: 61 }, vectors: { vector: { data: [0, 0, 0, 1] } } }] } }, { upsert: { points: [{ id: { num: 62 }, vectors: { vector: { data: [1] } } }] } }],
    }),
    grpc.status.INVALID_ARGUMENT,
  );
  assert.equal((await root.call('Count', { collection_name: COLL, exact: true })).result.count, 5, 'nothing of a refused batch was written');
  got = await root.call('Get', { collection_name: COLL, ids: [{ num: 3 }], with_payload: { enable: true } });
  assert.equal(got.result[0].payload.color, undefined);
  root.close();

  const cols = client.api('collections');
  await cols.updateAliases({ actions: [{ action: { case: 'createAlias', value: { collectionName: COLL, aliasName: 'grpc_alias' } } }] });
  const all = await cols.listAliases({});
  assert.ok(all.aliases.some((a) => a.aliasName === 'grpc_alias' && a.collectionName === COLL));
  assert.equal((await client.api('points').count({ collectionName: 'grpc_alias', exact: true })).result.count, 5n);
  await cols.updateAliases({ actions: [{ action: { case: 'deleteAlias', value: { aliasName: 'grpc_alias' } } }] });
  assert.equal((await cols.listCollectionAliases({ collectionName: COLL })).aliases.length, 0);
});

test('bad input: unknown method, truncated and malformed messages', async () => {
  const t0 = Date.now();
  const u = await rawCall('/qdrant.Points/NoSuchMethod', frame(Buffer.alloc(0)));
  assert.equal(u.status, 12);
  assert.ok(Date.now() - t0 < 2000, 'UNIMPLEMENTED at once');

  // A length prefix promising 100 bytes followed by 3.
  const t = await rawCall('/qdrant.Points/Count', frame(Buffer.from([0x0a, 0x01, 0x61]), 100));
  assert.ok([3, 13].includes(t.status), `truncated: status ${t.status} ${t.message}`);

  // A whole frame holding a truncated protobuf (a string field declaring 50 bytes, holding 2).
  const m = await rawCall('/qdrant.Points/Count', frame(Buffer.from([0x0a, 50, 0x61, 0x62])));
  assert.equal(m.status, 3, m.message);

  // Only a part of the prefix.
  const p = await rawCall('/qdrant.Points/Count', Buffer.from([0, 0]));
  assert.ok([3, 13].includes(p.status));

  // Compressed without an encoding the server knows.
  const z = await rawCall('/qdrant.Points/Count', Buffer.concat([Buffer.from([1, 0, 0, 0, 1]), Buffer.from([0])]));
  assert.equal(z.status, 12);

  // The server is still answering, and nothing was written.
  const ok = await client.api('points').count({ collectionName: COLL, exact: true });
  assert.equal(ok.result.count, 5n);
});

test('a large upsert, gzip-compressed by the official client, lands whole', async () => {
  const cols = client.api('collections');
  const name = 'grpc_big';
  await cols.create({ collectionName: name, vectorsConfig: { config: { case: 'params', value: { size: 4n, distance: 3 } } } });
  const N = 2000;
  const mk = (i) => ({
    id: { pointIdOptions: { case: 'num', value: BigInt(i) } },
    vectors: { vectorsOptions: { case: 'vector', value: { data: [i, 1, 0, 0] } } },
    payload: { i: { kind: { case: 'integerValue', value: BigInt(i) } } },
  });
  const pts = client.api('points');
  await pts.upsert({ collectionName: name, wait: true, points: Array.from({ length: N }, (_, i) => mk(i + 1)) });
  assert.equal((await pts.count({ collectionName: name, exact: true })).result.count, BigInt(N));
  // Dot product with [1,0,0,0] ranks by i: the top hit is the biggest id.
  const top = await pts.search({ collectionName: name, vector: [1, 0, 0, 0], limit: 1n });
  assert.equal(Number(top.result[0].id.pointIdOptions.value), N);
  await cols.delete({ collectionName: name });
  assert.equal((await cols.collectionExists({ collectionName: name })).result.exists, false);
});

test('limits: message size, slow requests, idle connections; the server stays up', async () => {
  const port = await freePort();
  const s2 = await startServer({
    env: {
      AEGIS__SERVICE__GRPC_PORT: String(port),
      AEGIS__SERVICE__MAX_REQUEST_SIZE_MB: '1',
      AEGIS__SERVICE__BODY_TIMEOUT_SEC: '1',
      AEGIS__SERVICE__HEADER_TIMEOUT_SEC: '1',
    },
  });
  const saved = grpcPort;
  grpcPort = port;
  try {
    const big = await rawCall('/qdrant.Points/Count', frame(Buffer.alloc(2 << 20, 0x41)));
    assert.equal(big.status, 8, big.message);
    const small = await rawCall('/qdrant.Collections/List', frame(Buffer.alloc(0)));
    assert.equal(small.status, 0, small.message);

    // A request whose message never completes is answered, not left hanging.
    const slow = await new Promise((resolve, reject) => {
      const s = http2.connect(`http://127.0.0.1:${port}`);
      s.on('error', reject);
      const req = s.request({ ':method': 'POST', ':path': '/qdrant.Points/Count', 'content-type': 'application/grpc', te: 'trailers' });
      let status = null;
      const take = (h) => {
        if (h['grpc-status'] !== undefined) status = Number(h['grpc-status']);
      };
      req.on('response', take);
      req.on('trailers', take);
      req.on('data', () => {});
      req.on('close', () => {
        s.close();
        resolve(status);
      });
      req.on('error', () => {});
      req.write(Buffer.from([0, 0, 0, 0, 10, 0x0a])); // 1 of 10 bytes, and nothing more
    });
    assert.equal(slow, 4);

    // A connection that sends nothing is closed by the server.
    const closed = await new Promise((resolve) => {
      const sock = net.connect(port, '127.0.0.1');
      const t0 = Date.now();
      sock.on('data', () => {});
      sock.on('error', () => {});
      sock.on('close', () => resolve(Date.now() - t0));
    });
    assert.ok(closed < 10000, `idle connection closed after ${closed} ms`);
  } finally {
    grpcPort = saved;
    await s2.cleanup();
  }
});

test('without service.grpc_port there is no gRPC listener', async () => {
  const port = await freePort();
  const s2 = await startServer({});
  try {
    await assert.rejects(
      new Promise((resolve, reject) => {
        const c = http2.connect(`http://127.0.0.1:${port}`);
        c.on('error', reject);
        c.on('connect', () => {
          c.close();
          resolve();
        });
      }),
    );
  } finally {
    await s2.cleanup();
  }
});

function openssl(dir, args) {
  execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
}

/** A CA, a server certificate for 127.0.0.1/localhost and a client certificate, in dir. */
function makePki(dir) {
  const ca = (name) =>
    openssl(dir, ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.pem`, '-days', '2', '-subj', `/CN=${name}`,
      '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign']);
  const leaf = (name, cn, ext) => {
    fs.writeFileSync(path.join(dir, `${name}.ext`), ext);
    openssl(dir, ['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${cn}`]);
    openssl(dir, ['x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out', `${name}.pem`, '-days', '2', '-extfile', `${name}.ext`]);
  };
  ca('ca');
  leaf('server', 'localhost', 'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n');
  leaf('client', 'aegis-client', 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n');
  const read = (n) => fs.readFileSync(path.join(dir, n));
  return { ca: read('ca.pem'), clientCert: read('client.pem'), clientKey: read('client.key'), f: (n) => path.join(dir, n) };
}

test('TLS and mutual TLS with the REST settings (ALPN h2)', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'aegis-grpc-tls-'));
  try {
    const pki = makePki(dir);
    const tlsEnv = (extra) =>
      keyEnv({ AEGIS__SERVICE__ENABLE_TLS: 'true', AEGIS__TLS__CERT: pki.f('server.pem'), AEGIS__TLS__KEY: pki.f('server.key'), ...extra });
    const count = (port, creds, key = ROOT_KEY) => {
      const c = new protos.Collections(`127.0.0.1:${port}`, creds, { 'grpc.ssl_target_name_override': 'localhost' });
      const md = new grpc.Metadata();
      md.set('api-key', key);
      return new Promise((res, rej) =>
        c.List({}, md, (e, v) => {
          c.close();
          return e ? rej(e) : res(v);
        }),
      );
    };
    // TLS.
    let port = await freePort();
    let s = await startServer({ insecure: false, tls: { ca: pki.ca }, env: tlsEnv({ AEGIS__SERVICE__GRPC_PORT: String(port) }) });
    try {
      const list = await count(port, grpc.credentials.createSsl(pki.ca));
      assert.deepEqual(list.collections ?? [], []);
      await rejectsWith(count(port, grpc.credentials.createSsl(pki.ca), 'wrong-key-for-grpc-tests-0123456789abcdef'), grpc.status.UNAUTHENTICATED);
      // Plain HTTP/2 to a TLS port gets nowhere.
      await assert.rejects(count(port, grpc.credentials.createInsecure()));
    } finally {
      await s.stop();
    }
    // Mutual TLS: a valid key without a client certificate is refused, with one it is served.
    port = await freePort();
    s = await startServer({
      insecure: false,
      tls: { ca: pki.ca, cert: pki.clientCert, key: pki.clientKey },
      env: tlsEnv({ AEGIS__SERVICE__GRPC_PORT: String(port), AEGIS__SERVICE__VERIFY_HTTPS_CLIENT_CERTIFICATE: 'true', AEGIS__TLS__CA_CERT: pki.f('ca.pem') }),
    });
    try {
      await rejectsWith(count(port, grpc.credentials.createSsl(pki.ca)), grpc.status.UNAUTHENTICATED);
      const list = await count(port, grpc.credentials.createSsl(pki.ca, pki.clientKey, pki.clientCert));
      assert.deepEqual(list.collections ?? [], []);
    } finally {
      await s.stop();
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
