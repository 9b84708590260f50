// HTTPS (issue 3; docs/SECURITY.md "Transport"): throwaway certificates made with the openssl CLI at test
// time; TLS 1.2 and 1.3 accepted, 1.1 refused; missing or unreadable certificate files stop
// start-up with a message naming the setting; mutual TLS accepts only a client certificate from
// the configured CA; the official JS client works over HTTPS with an API key and with a JWT.
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { after, before, describe, test } from 'node:test';

import { ROOT_KEY, freshAddr, jwt, keyEnv } from './lib/auth.mjs';
import { REPO_ROOT, TIME_SCALE, freePort, runAegis, startServer } from './lib/server.mjs';

let dir;
const pem = {};

function openssl(args) {
  execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
}

function makeCa(name, cn) {
  openssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.pem`, '-days', '2', '-subj', `/CN=${cn}`,
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign']);
}

function makeLeaf(name, ca, cn, ext) {
  fs.writeFileSync(path.join(dir, `${name}.ext`), ext);
  openssl(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${cn}`]);
  openssl(['x509', '-req', '-in', `${name}.csr`, '-CA', `${ca}.pem`, '-CAkey', `${ca}.key`, '-CAcreateserial', '-out', `${name}.pem`, '-days', '2', '-extfile', `${name}.ext`]);
}

const f = (name) => path.join(dir, name);

before(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'aegis-tls-'));
  makeCa('ca', 'Aegis Test CA');
  makeCa('evil', 'Some Other CA');
  makeLeaf('server', 'ca', 'localhost', 'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n');
  makeLeaf('client', 'ca', 'aegis-client', 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n');
  makeLeaf('intruder', 'evil', 'aegis-client', 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n');
  for (const n of ['ca', 'server', 'client', 'intruder', 'evil']) {
    pem[n] = fs.readFileSync(f(`${n}.pem`), 'utf8');
    pem[`${n}Key`] = fs.readFileSync(f(`${n}.key`), 'utf8');
  }
});

after(() => {
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

function tlsEnv(extra = {}) {
  return keyEnv({ AEGIS__SERVICE__ENABLE_TLS: 'true', AEGIS__TLS__CERT: f('server.pem'), AEGIS__TLS__KEY: f('server.key'), ...extra });
}

/** One TLS handshake; resolves {ok, protocol, error} (never rejects). */
function handshake(port, opts) {
  return new Promise((resolve) => {
    const s = tls.connect({ host: '127.0.0.1', port, ca: pem.ca, servername: 'localhost', ...opts });
    const t = setTimeout(() => {
      s.destroy();
      resolve({ ok: false, error: 'timeout' });
    }, 10_000 * TIME_SCALE);
    s.once('secureConnect', () => {
      clearTimeout(t);
      const protocol = s.getProtocol();
      s.end();
      resolve({ ok: true, protocol, authorized: s.authorized });
    });
    s.once('error', (e) => {
      clearTimeout(t);
      resolve({ ok: false, error: e.code || e.message });
    });
  });
}

describe('HTTPS', () => {
  let srv;
  before(async () => {
    srv = await startServer({ insecure: false, env: tlsEnv(), tls: { ca: pem.ca } });
  });
  after(async () => {
    await srv?.cleanup();
  });

  test('health and authenticated requests over https', async () => {
    assert.ok(srv.url.startsWith('https://'));
    const h = await srv.request('GET', '/healthz');
    assert.equal(h.status, 200);
    const r = await srv.request('GET', '/collections', undefined, { localAddress: freshAddr(), agent: false });
    assert.equal(r.status, 401);
    await srv.ok('GET', '/collections', undefined, { headers: { 'api-key': ROOT_KEY } });
    // The certificate chains to our CA for 127.0.0.1.
    const hs = await handshake(srv.port, {});
    assert.ok(hs.ok && hs.authorized, JSON.stringify(hs));
    // Plain HTTP on the TLS port gets nothing useful.
    const plain = await new Promise((resolve) => {
      import('node:http').then(({ default: http }) => {
        const req = http.get({ host: '127.0.0.1', port: srv.port, path: '/collections', headers: { 'api-key': ROOT_KEY }, timeout: 5000 }, (res) => {
          res.resume();
          resolve(res.statusCode);
        });
        req.on('error', () => resolve('error'));
        req.on('timeout', () => {
          req.destroy();
          resolve('timeout');
        });
      });
    });
    assert.notEqual(plain, 200, 'plain HTTP must not be served on the TLS port');
  });

  test('TLS 1.2 and 1.3 are accepted, 1.1 and 1.0 refused', async () => {
    const v13 = await handshake(srv.port, { minVersion: 'TLSv1.3', maxVersion: 'TLSv1.3' });
    assert.ok(v13.ok, `TLS 1.3: ${v13.error}`);
    assert.equal(v13.protocol, 'TLSv1.3');
    const v12 = await handshake(srv.port, { minVersion: 'TLSv1.2', maxVersion: 'TLSv1.2' });
    assert.ok(v12.ok, `TLS 1.2: ${v12.error}`);
    assert.equal(v12.protocol, 'TLSv1.2');
    // SECLEVEL=0 lets this client offer the old versions, so a refusal comes from the server.
    for (const v of ['TLSv1.1', 'TLSv1']) {
      const old = await handshake(srv.port, { minVersion: v, maxVersion: v, ciphers: 'DEFAULT@SECLEVEL=0' });
      assert.ok(!old.ok, `${v} was accepted (${old.protocol})`);
      assert.notEqual(old.error, 'ERR_SSL_NO_PROTOCOLS_AVAILABLE', `${v}: the client could not even offer it, so the test proves nothing`);
    }
    // Still healthy after the refused handshakes.
    assert.equal((await srv.request('GET', '/healthz')).status, 200);
  });

  test('the official JS client works over HTTPS with apiKey set to a key and to a JWT', async () => {
    const token = jwt({ access: 'm' });
    const readToken = jwt({ access: [{ collection: 'jsc', access: 'r' }] });
    const script = `
      import { QdrantClient } from '@qdrant/js-client-rest';
      const url = process.env.URL;
      const out = {};
      const admin = new QdrantClient({ url, apiKey: process.env.KEY, checkCompatibility: false });
      await admin.createCollection('jsc', { vectors: { size: 2, distance: 'Dot' } });
      await admin.upsert('jsc', { wait: true, points: [{ id: 1, vector: [1, 0], payload: { a: 1 } }, { id: 2, vector: [0, 1] }] });
      out.keyCollections = (await admin.getCollections()).collections.map((c) => c.name);
      const t = new QdrantClient({ url, apiKey: process.env.TOKEN, checkCompatibility: false });
      out.tokenSearch = (await t.search('jsc', { vector: [1, 0], limit: 1 })).map((h) => h.id);
      out.tokenCount = (await t.count('jsc', { exact: true })).count;
      const r = new QdrantClient({ url, apiKey: process.env.READ_TOKEN, checkCompatibility: false });
      out.readQuery = (await r.query('jsc', { query: [0, 1], limit: 1 })).points.map((p) => p.id);
      try {
        await r.upsert('jsc', { wait: true, points: [{ id: 3, vector: [1, 1] }] });
        out.readUpsert = 'allowed';
      } catch (e) {
        out.readUpsert = e.status ?? e.message;
      }
      const bad = new QdrantClient({ url, apiKey: 'not-a-valid-key-but-long-enough-0123456789', checkCompatibility: false });
      try {
        await bad.getCollections();
        out.bad = 'allowed';
      } catch (e) {
        out.bad = e.status ?? e.message;
      }
      console.log(JSON.stringify(out));
    `;
    const res = await new Promise((resolve) => {
      const p = spawn(process.execPath, ['--input-type=module', '-e', script], {
        cwd: REPO_ROOT,
        env: { ...process.env, NODE_EXTRA_CA_CERTS: f('ca.pem'), URL: srv.url, KEY: ROOT_KEY, TOKEN: token, READ_TOKEN: readToken },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let out = '';
      let err = '';
      p.stdout.on('data', (d) => (out += d));
      p.stderr.on('data', (d) => (err += d));
      p.on('close', (code) => resolve({ code, out, err }));
    });
    assert.equal(res.code, 0, `client script failed: ${res.err}`);
    const out = JSON.parse(res.out.trim().split('\n').pop());
    assert.deepEqual(out.keyCollections, ['jsc']);
    assert.deepEqual(out.tokenSearch, [1]);
    assert.equal(out.tokenCount, 2);
    assert.deepEqual(out.readQuery, [2]);
    assert.equal(out.readUpsert, 403);
    assert.equal(out.bad, 401);
  });
});

describe('TLS start-up errors name the setting', () => {
  async function refuse(extraEnv, setting, what) {
    const storage = fs.mkdtempSync(path.join(os.tmpdir(), 'aegis-tls-s-'));
    try {
      const r = await runAegis(['serve', '--storage', storage, '--port', String(await freePort())], { env: tlsEnv(extraEnv), timeoutMs: 10_000 });
      assert.ok(!r.timedOut, `${what}: the server started`);
      assert.notEqual(r.code, 0, `${what}: exit code ${r.code}`);
      assert.ok(r.stderr.includes(setting), `${what}: the message does not name ${setting}: ${r.stderr}`);
      assert.ok(!r.stderr.includes('BEGIN'), `${what}: the message contains PEM material`);
      return r;
    } finally {
      fs.rmSync(storage, { recursive: true, force: true });
    }
  }

  test('missing certificate or key file', async () => {
    await refuse({ AEGIS__TLS__CERT: f('nope.pem') }, 'tls.cert', 'missing tls.cert');
    await refuse({ AEGIS__TLS__KEY: f('nope.key') }, 'tls.key', 'missing tls.key');
  });

  test('unreadable certificate or key file', async () => {
    // A directory cannot be read as a file (root ignores permission bits, so no chmod 000).
    fs.mkdirSync(f('adir'), { recursive: true });
    await refuse({ AEGIS__TLS__CERT: f('adir') }, 'tls.cert', 'tls.cert is a directory');
    await refuse({ AEGIS__TLS__KEY: f('adir') }, 'tls.key', 'tls.key is a directory');
    fs.writeFileSync(f('empty.pem'), '');
    await refuse({ AEGIS__TLS__CERT: f('empty.pem') }, 'tls.cert', 'empty tls.cert');
    if (process.getuid && process.getuid() !== 0) {
      fs.copyFileSync(f('server.key'), f('locked.key'));
      fs.chmodSync(f('locked.key'), 0o000);
      await refuse({ AEGIS__TLS__KEY: f('locked.key') }, 'tls.key', 'tls.key without read permission');
    }
  });

  test('a file that is not a certificate or key', async () => {
    fs.writeFileSync(f('garbage.pem'), 'this is not PEM\n');
    await refuse({ AEGIS__TLS__CERT: f('garbage.pem') }, 'tls.cert', 'garbage tls.cert');
    await refuse({ AEGIS__TLS__KEY: f('garbage.pem') }, 'tls.key', 'garbage tls.key');
  });

  test('TLS enabled without cert and key settings', async () => {
    const storage = fs.mkdtempSync(path.join(os.tmpdir(), 'aegis-tls-s-'));
    try {
      const env = keyEnv({ AEGIS__SERVICE__ENABLE_TLS: 'true' });
      const r = await runAegis(['serve', '--storage', storage, '--port', String(await freePort())], { env, timeoutMs: 10_000 });
      assert.ok(!r.timedOut && r.code !== 0, 'started without certificate settings');
      assert.match(r.stderr, /tls\.cert/);
    } finally {
      fs.rmSync(storage, { recursive: true, force: true });
    }
  });

  test('mutual TLS without tls.ca_cert, or with a missing one', async () => {
    await refuse({ AEGIS__SERVICE__VERIFY_HTTPS_CLIENT_CERTIFICATE: 'true' }, 'tls.ca_cert', 'mTLS without tls.ca_cert');
    await refuse({ AEGIS__SERVICE__VERIFY_HTTPS_CLIENT_CERTIFICATE: 'true', AEGIS__TLS__CA_CERT: f('nope-ca.pem') }, 'tls.ca_cert', 'mTLS with a missing tls.ca_cert');
  });
});

describe('mutual TLS', () => {
  let srv;
  before(async () => {
    srv = await startServer({
      insecure: false,
      env: tlsEnv({ AEGIS__SERVICE__VERIFY_HTTPS_CLIENT_CERTIFICATE: 'true', AEGIS__TLS__CA_CERT: f('ca.pem') }),
      tls: { ca: pem.ca, cert: pem.client, key: pem.clientKey },
    });
  });
  after(async () => {
    await srv?.cleanup();
  });

  /** A request with the given client certificate (or none); a connection error counts as refused. */
  async function attempt(clientTls, headers = { 'api-key': ROOT_KEY }) {
    try {
      const r = await srv.request('GET', '/collections', undefined, { headers, agent: false, tls: { ca: pem.ca, ...clientTls }, localAddress: freshAddr() });
      return { status: r.status, text: r.text };
    } catch (e) {
      return { error: e.code || e.message };
    }
  }

  test('the right client certificate is accepted', async () => {
    const r = await attempt({ cert: pem.client, key: pem.clientKey });
    assert.equal(r.status, 200, JSON.stringify(r));
    // The certificate does not replace the API key.
    const r2 = await attempt({ cert: pem.client, key: pem.clientKey }, {});
    assert.equal(r2.status, 401, JSON.stringify(r2));
  });

  test('no client certificate is refused (connection error or 401)', async () => {
    const r = await attempt({});
    assert.ok(r.error || r.status === 401, `no client certificate: ${JSON.stringify(r)}`);
    assert.ok(!r.text?.includes('"collections"'), 'collection data without a client certificate');
  });

  test('refusals for a missing client certificate are audited and throttled like bad keys', async () => {
    const addr = freshAddr();
    const statuses = [];
    for (let i = 0; i < 12; i++) {
      const r = await srv.request('GET', '/collections', undefined, { headers: { 'api-key': ROOT_KEY }, agent: false, tls: { ca: pem.ca }, localAddress: addr });
      statuses.push(r.status);
    }
    // Ten failures lock the address out (the default); the next ones are 429.
    assert.deepEqual(statuses.slice(0, 9), Array(9).fill(401), statuses.join(','));
    assert.ok(statuses.slice(9).every((s) => s === 429), statuses.join(','));
    const recs = (await srv.ok('GET', `/auth/audit?decision=deny&limit=100`, undefined, { headers: { 'api-key': ROOT_KEY } })).filter((x) => x.remote === addr);
    assert.ok(recs.length >= 9, JSON.stringify(recs.slice(0, 2)));
    assert.ok(recs.some((x) => x.status === 401 && /client certificate/.test(x.reason)), JSON.stringify(recs[0]));
    assert.match(srv.stderr, new RegExp(`authentication failed from ${addr.replace(/\./g, '\\.')} .*client certificate`));
  });

  test('a client certificate from another CA is refused', async () => {
    const r = await attempt({ cert: pem.intruder, key: pem.intruderKey });
    assert.ok(r.error || r.status === 401, `wrong CA: ${JSON.stringify(r)}`);
    assert.ok(!r.text?.includes('"collections"'), 'collection data with a foreign client certificate');
    // A self-signed certificate claiming the same subject, and the CA's own certificate
    // presented as a client certificate, are refused too.
    const selfSigned = await attempt({ cert: pem.evil, key: pem.evilKey });
    assert.ok(selfSigned.error || selfSigned.status === 401, `CA-less self-signed: ${JSON.stringify(selfSigned)}`);
    // Health is still fine for a proper client.
    const h = await srv.request('GET', '/healthz');
    assert.equal(h.status, 200);
  });
});
