// Secure by default (issue 3; docs/SECURITY.md): a first start without keys generates a root key,
// prints it once on stdout, stores only its hash and requires it from then on; short keys and
// --insecure off loopback refuse to start; public routes are matched on the decoded, normalized
// route, so no path trick reaches collection data without a credential.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';

import { Mismatches, ROOT_KEY, assertErrorEnvelope, freshAddr } from './lib/auth.mjs';
import { freePort, rawRequest, runAegis, startServer } from './lib/server.mjs';

const KEY_RE = /ag_root_[A-Za-z0-9_-]{20,}/g;

/** Every regular file under dir (recursively), as [path, Buffer]. */
function filesUnder(dir) {
  const out = [];
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) out.push(...filesUnder(p));
    else if (e.isFile()) out.push([p, fs.readFileSync(p)]);
  }
  return out;
}

function tmpDir() {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'aegis-secure-'));
}

describe('first start without a configured key', () => {
  let srv;
  let key;

  before(async () => {
    srv = await startServer({ insecure: false });
  });

  after(async () => {
    await srv?.cleanup();
  });

  test('prints a generated root key once on stdout, with how to use it', () => {
    const keys = srv.stdout.match(KEY_RE) || [];
    assert.equal(keys.length, 1, `expected exactly one generated key on stdout, got ${keys.length}:\n${srv.stdout}`);
    key = keys[0];
    assert.ok(key.length >= 32, 'the generated key is at least 32 characters');
    assert.match(srv.stdout, /api-key/i, 'stdout explains how to send the key');
    assert.ok(!srv.stderr.includes(key), 'the key must not appear in stderr (the log)');
  });

  test('unauthenticated requests are refused; the key works', async () => {
    assert.ok(key);
    for (const [method, p, body] of [
      ['GET', '/collections'],
      ['PUT', '/collections/sd', { vectors: { size: 2, distance: 'Dot' } }],
      ['GET', '/telemetry'],
      ['GET', '/metrics'],
    ]) {
      const r = await srv.request(method, p, body, { localAddress: freshAddr(), agent: false });
      assert.equal(r.status, 401, `${method} ${p} without a credential: ${r.status}`);
      assertErrorEnvelope(r, `${method} ${p}`);
    }
    // A wrong key in the right shape.
    const wrong = `ag_root_${'A'.repeat(43)}`;
    const r = await srv.request('GET', '/collections', undefined, { headers: { 'api-key': wrong }, localAddress: freshAddr(), agent: false });
    assert.equal(r.status, 401);
    await srv.ok('PUT', '/collections/sd', { vectors: { size: 2, distance: 'Dot' } }, { headers: { 'api-key': key } });
    const list = await srv.ok('GET', '/collections', undefined, { headers: { authorization: `Bearer ${key}` } });
    assert.deepEqual(list.collections.map((c) => c.name), ['sd']);
    // Health stays public.
    const h = await srv.request('GET', '/healthz', undefined, { localAddress: freshAddr(), agent: false });
    assert.equal(h.status, 200);
  });

  test('the storage directory holds only a hash of the key', () => {
    assert.ok(key);
    const secret = key.slice('ag_root_'.length);
    const files = filesUnder(srv.storage);
    assert.ok(files.length > 0);
    for (const [p, buf] of files) {
      assert.ok(!buf.includes(key), `${p} contains the key`);
      assert.ok(!buf.includes(secret), `${p} contains the key's secret part`);
      assert.ok(!buf.includes(secret.slice(0, 16)), `${p} contains a prefix of the key's secret part`);
      // Also not as raw bytes of the decoded secret.
      const raw = Buffer.from(secret.replace(/-/g, '+').replace(/_/g, '/'), 'base64');
      assert.ok(raw.length >= 16 && !buf.includes(raw.subarray(0, 16)), `${p} contains the key's raw bytes`);
    }
    // A file with the hash exists, readable only by its owner.
    const hashFiles = files.filter(([p]) => /key/i.test(path.basename(p)));
    assert.ok(hashFiles.length >= 1, `no key hash file in ${files.map(([p]) => p).join(', ')}`);
    for (const [p] of hashFiles) assert.equal(fs.statSync(p).mode & 0o077, 0, `${p} is readable by others`);
  });

  test('a restart prints no new key and the old one still works', async () => {
    assert.ok(key);
    const before = srv.stdout;
    await srv.restart();
    const after = srv.stdout.slice(before.length);
    assert.equal((after.match(KEY_RE) || []).length, 0, `a new key was printed on restart:\n${after}`);
    await srv.ok('GET', '/collections', undefined, { headers: { 'api-key': key } });
    const r = await srv.request('GET', '/collections', undefined, { localAddress: freshAddr(), agent: false });
    assert.equal(r.status, 401);
    assert.ok(!srv.stderr.includes(key), 'the key must not appear in stderr after the restart');
  });

  test('public-route bypass attempts never reach collection data without a credential', async () => {
    assert.ok(key);
    const attempts = [
      '/healthz/..%2fcollections',
      '/healthz/..%2Fcollections',
      '/healthz/../collections',
      '/healthz%2f..%2fcollections',
      '/healthz/%2e%2e/collections',
      '/healthz/%2e%2e%2fcollections',
      '/healthz/./../collections',
      '/healthz;/../collections',
      '/readyz/../collections/sd/points/scroll',
      '/livez/..%2fcollections%2fsd',
      '/dashboard%2f..%2fcollections',
      '/dashboard/../collections',
      '/./collections',
      '//collections',
      '///collections',
      '/collections/',
      '/collections//',
      '/COLLECTIONS',
      '/Collections',
      '/%63ollections',
      '/collections%2f',
      '/collections%00',
      '/collections?healthz',
      '/collections#/healthz',
      '/healthz/..;/collections',
      '/collections/sd/',
      '/collections/sd/points/scroll/',
    ];
    const m = new Mismatches('bypass attempts');
    for (const p of attempts) {
      for (const method of ['GET', 'POST']) {
        let r;
        try {
          r = await rawRequest({ port: srv.port, method, path: p, body: method === 'POST' ? { limit: 10 } : undefined, localAddress: freshAddr() });
        } catch (e) {
          continue; // the client refused to send it or the server closed: no data either way
        }
        m.check(!(r.status >= 200 && r.status < 300), `${method} ${p}: answered ${r.status} without a credential: ${r.text.slice(0, 160)}`);
        m.check(!r.text.includes('"sd"') && !/"collections"\s*:/.test(r.text), `${method} ${p}: the answer contains collection data: ${r.text.slice(0, 160)}`);
      }
    }
    // Other methods on the same path: HEAD is GET without a body, OPTIONS is not a route.
    for (const method of ['HEAD', 'OPTIONS', 'TRACE']) {
      const r = await rawRequest({ port: srv.port, method, path: '/collections', localAddress: freshAddr() });
      m.check(!(r.status >= 200 && r.status < 300), `${method} /collections without a credential: ${r.status}`);
    }
    // A trailing slash is the same route: 401 without a credential, 200 with the key.
    let r = await rawRequest({ port: srv.port, method: 'GET', path: '/collections/', localAddress: freshAddr() });
    m.check(r.status === 401, `GET /collections/ without a credential: expected 401, got ${r.status}`);
    r = await rawRequest({ port: srv.port, method: 'GET', path: '/collections/', headers: { 'api-key': key } });
    m.check(r.status === 200, `GET /collections/ with the key: expected 200, got ${r.status}`);
    // Public routes with a suffix are not public.
    for (const p of ['/healthz/x', '/healthzx', '/readyz/collections']) {
      r = await rawRequest({ port: srv.port, method: 'GET', path: p, localAddress: freshAddr() });
      m.check(!(r.status >= 200 && r.status < 300), `GET ${p}: ${r.status}`);
    }
    m.done();
  });
});

describe('start-up refusals', () => {
  test('a configured key shorter than 32 characters refuses to start, naming the setting, not the value', async () => {
    const short = 'short-key-1234567890';
    for (const [setting, env] of [
      ['service.api_key', { AEGIS__SERVICE__API_KEY: short }],
      ['service.alt_api_key', { AEGIS__SERVICE__API_KEY: ROOT_KEY, AEGIS__SERVICE__ALT_API_KEY: short }],
      ['service.read_only_api_key', { AEGIS__SERVICE__API_KEY: ROOT_KEY, AEGIS__SERVICE__READ_ONLY_API_KEY: short }],
    ]) {
      const dir = tmpDir();
      try {
        const r = await runAegis(['serve', '--storage', dir, '--port', String(await freePort())], { env, timeoutMs: 10_000 });
        assert.ok(!r.timedOut, `${setting}: the server started with a short key`);
        assert.notEqual(r.code, 0, `${setting}: exit code ${r.code}`);
        const out = r.stdout + r.stderr;
        assert.ok(out.includes(setting), `${setting}: the message does not name the setting: ${out}`);
        assert.match(out, /32/, `${setting}: the message does not give the minimum length: ${out}`);
        assert.ok(!out.includes(short), `${setting}: the message contains the key`);
        assert.ok(!out.includes(ROOT_KEY), `${setting}: the message contains another key`);
        assert.equal((out.match(KEY_RE) || []).length, 0, `${setting}: a key was generated anyway`);
      } finally {
        fs.rmSync(dir, { recursive: true, force: true });
      }
    }
  });

  test('a short key from the config file refuses to start too', async () => {
    const dir = tmpDir();
    const cfg = path.join(dir, 'config.yaml');
    fs.writeFileSync(cfg, 'service:\n  api_key: tiny-key-from-file\n');
    try {
      const r = await runAegis(['serve', '--config', cfg, '--storage', path.join(dir, 's'), '--port', String(await freePort())], { timeoutMs: 10_000 });
      assert.ok(!r.timedOut, 'the server started with a short key');
      assert.notEqual(r.code, 0);
      assert.ok((r.stdout + r.stderr).includes('service.api_key'), r.stderr);
      assert.ok(!(r.stdout + r.stderr).includes('tiny-key-from-file'), r.stderr);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test('--insecure refuses any host other than loopback', async () => {
    for (const host of ['0.0.0.0', '::']) {
      const dir = tmpDir();
      try {
        const r = await runAegis(['serve', '--insecure', '--host', host, '--storage', dir, '--port', String(await freePort())], { timeoutMs: 10_000 });
        assert.ok(!r.timedOut, `--insecure --host ${host} started`);
        assert.notEqual(r.code, 0, `--insecure --host ${host}: exit ${r.code}`);
        assert.match(r.stderr, /loopback|127\.0\.0\.1/i, r.stderr);
      } finally {
        fs.rmSync(dir, { recursive: true, force: true });
      }
    }
  });

  test('--insecure warns at start and generates no key', async () => {
    const s = await startServer();
    try {
      assert.match(s.stderr, /WARN.*insecure/i, s.stderr);
      assert.equal((s.stdout.match(KEY_RE) || []).length, 0);
      // audit.key (the audit log's HMAC key) is not a credential and is written in every mode.
      const keyFiles = filesUnder(s.storage).filter(([p]) => /key/i.test(path.basename(p)) && path.basename(p) !== 'audit.key');
      assert.equal(keyFiles.length, 0, 'a key hash file was written under --insecure');
    } finally {
      await s.cleanup();
    }
  });

  test('a configured key: nothing is generated or printed', async () => {
    const s = await startServer({ insecure: false, env: { AEGIS__SERVICE__API_KEY: ROOT_KEY } });
    try {
      assert.equal((s.stdout.match(KEY_RE) || []).length, 0, s.stdout);
      assert.ok(!s.stdout.includes(ROOT_KEY) && !s.stderr.includes(ROOT_KEY), 'the configured key was printed');
      const r = await s.request('GET', '/collections', undefined, { localAddress: freshAddr(), agent: false });
      assert.equal(r.status, 401);
      await s.ok('GET', '/collections', undefined, { headers: { 'api-key': ROOT_KEY } });
      for (const [p, buf] of filesUnder(s.storage)) assert.ok(!buf.includes(ROOT_KEY), `${p} contains the configured key`);
    } finally {
      await s.cleanup();
    }
  });
});
