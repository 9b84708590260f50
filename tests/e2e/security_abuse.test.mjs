// Regression tests for the security review (issue 8), abuse findings: the throttle refuses only
// failing attempts (a valid key from a locked-out address still works), its limits are settings,
// a flood of bad credentials is recorded in aggregate (bounded audit and log growth), clients
// behind service.trusted_proxies are told apart by X-Forwarded-For (and nobody else can use that
// header), and one address cannot hold more than its share of connections.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';

import { keyEnv, ROOT_KEY, WRONG_KEY } from './lib/auth.mjs';
import { runAegis, sleep, startServer, TIME_SCALE } from './lib/server.mjs';

const MAX_FAILURES = 3;
const LOCKOUT = 2;
const PROXY = '127.0.0.5';

let srv;

function req(addr, key, { xff, pathname = '/collections' } = {}) {
  const headers = {};
  if (key) headers['api-key'] = key;
  if (xff) headers['x-forwarded-for'] = xff;
  return srv.request('GET', pathname, undefined, { headers, agent: false, localAddress: addr });
}

function auditLines() {
  return fs
    .readFileSync(path.join(srv.storage, 'audit', 'audit.log'), 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l));
}

before(async () => {
  srv = await startServer({
    insecure: false,
    env: keyEnv({
      AEGIS__SERVICE__AUTH_MAX_FAILURES: String(MAX_FAILURES),
      AEGIS__SERVICE__AUTH_FAILURE_WINDOW_SEC: '60',
      AEGIS__SERVICE__AUTH_LOCKOUT_SEC: String(LOCKOUT),
      AEGIS__SERVICE__TRUSTED_PROXIES: `${PROXY}, 10.0.0.0/8`,
      AEGIS__SERVICE__MAX_CONNECTIONS_PER_IP: '4',
    }),
  });
});

after(async () => {
  await srv?.cleanup();
});

describe('finding 10: the throttle refuses failures only, with configured limits', () => {
  test('a locked-out address still gets in with a valid credential', async () => {
    const addr = '127.0.2.1';
    const statuses = [];
    for (let i = 0; i < MAX_FAILURES + 2; i++) statuses.push((await req(addr, WRONG_KEY)).status);
    assert.deepEqual(statuses, [401, 401, 429, 429, 429], 'locks after the configured number of failures');
    const locked = await req(addr, WRONG_KEY);
    assert.equal(locked.status, 429);
    assert.ok(Number(locked.headers['retry-after']) >= 1 && Number(locked.headers['retry-after']) <= LOCKOUT);
    // The root key (and any valid credential) is never refused by the throttle.
    assert.equal((await req(addr, ROOT_KEY)).status, 200);
    // The lockout ends after the configured time.
    await sleep(LOCKOUT * 1000 + 1100);
    assert.equal((await req(addr, WRONG_KEY)).status, 401);
  });

  test('limits are settings; a zero or malformed one stops start-up naming it', async () => {
    for (const [k, v] of [
      ['AEGIS__SERVICE__AUTH_MAX_FAILURES', '0'],
      ['AEGIS__SERVICE__AUTH_LOCKOUT_SEC', 'soon'],
      ['AEGIS__SERVICE__TRUSTED_PROXIES', '10.0.0.0/99'],
      ['AEGIS__SERVICE__TRUSTED_PROXIES', 'proxy.example'],
      ['AEGIS__SERVICE__MAX_TOKEN_TTL_SEC', '0'],
    ]) {
      const r = await runAegis(['serve', '--storage', srv.storage + '-never', '--port', '1'], { env: { ...keyEnv(), [k]: v } });
      assert.notEqual(r.code, 0, `${k}=${v} was accepted`);
      const name = k.replace('AEGIS__', '').toLowerCase().replace('__', '.');
      assert.ok(r.stderr.includes(name), `${k}=${v}: ${r.stderr}`);
      fs.rmSync(srv.storage + '-never', { recursive: true, force: true });
    }
  });
});

describe('finding 4: a flood of bad credentials is recorded in aggregate', () => {
  test('hundreds of failures from one address add a handful of audit records and log lines', async () => {
    const addr = '127.0.3.1';
    const logBefore = srv.stderr.length;
    const N = 300;
    // Keep-alive connections (fewer than the per-address limit), requests pipelined over them.
    const agent = new http.Agent({ keepAlive: true, maxSockets: 3 });
    const statuses = [];
    const pending = [];
    for (let i = 0; i < N; i++) {
      pending.push(srv.request('GET', '/collections', undefined, { headers: { 'api-key': WRONG_KEY }, agent, localAddress: addr }));
      if (pending.length === 30) statuses.push(...(await Promise.all(pending.splice(0))).map((r) => r.status));
    }
    statuses.push(...(await Promise.all(pending)).map((r) => r.status));
    agent.destroy();
    assert.equal(statuses.filter((s) => s === 401).length, MAX_FAILURES - 1, statuses.join(','));
    assert.equal(statuses.filter((s) => s === 429).length, N - MAX_FAILURES + 1);
    // After the lockout a report falls due: any later request triggers it.
    await sleep(LOCKOUT * 1000 + 1100);
    assert.equal((await req('127.0.3.2', ROOT_KEY)).status, 200);
    // The audit log is written after the answers: wait (bounded) until the aggregate is on disk.
    let mine = [];
    for (const t0 = Date.now(); Date.now() - t0 < 10_000 * TIME_SCALE; await sleep(100)) {
      mine = auditLines().filter((r) => r.remote === addr);
      if (mine.reduce((n, r) => n + (r.count || 1), 0) >= N) break;
    }
    const single = mine.filter((r) => !r.count);
    const aggregated = mine.filter((r) => r.count);
    assert.equal(single.length, MAX_FAILURES, `one record per failure until the lockout: ${single.length}`);
    const total = single.length + aggregated.reduce((n, r) => n + r.count, 0);
    assert.equal(total, N, `every failure is accounted for: ${JSON.stringify(aggregated)}`);
    assert.ok(aggregated.length <= 3, `aggregated records: ${aggregated.length}`);
    assert.ok(aggregated.every((r) => r.status === 429 && r.decision === 'deny' && r.action === 'authenticate'));
    const logLines = srv.stderr.slice(logBefore).split('\n').filter((l) => l.includes(addr) && !l.includes(' access '));
    assert.ok(logLines.length <= MAX_FAILURES + 4, `log lines about the address: ${logLines.length}`);
  });
});

describe('trusted proxies', () => {
  test('behind a trusted proxy each client has its own throttle; the header is ignored from others', async () => {
    const client = '192.0.2.9';
    // The client behind the proxy fails until locked out.
    for (let i = 0; i < MAX_FAILURES; i++) await req(PROXY, WRONG_KEY, { xff: client });
    assert.equal((await req(PROXY, WRONG_KEY, { xff: client })).status, 429);
    // Another client behind the same proxy is not affected.
    assert.equal((await req(PROXY, WRONG_KEY, { xff: '198.51.100.7' })).status, 401);
    // The client cannot escape its lock by prepending an address of its choice: the right-most
    // entry not written by a trusted hop is the client.
    assert.equal((await req(PROXY, WRONG_KEY, { xff: `203.0.113.1, ${client}` })).status, 429);
    // Entries appended by trusted hops (10.0.0.0/8 here) are skipped.
    assert.equal((await req(PROXY, WRONG_KEY, { xff: `${client}, 10.1.1.1` })).status, 429);
    // From an address that is not a trusted proxy, X-Forwarded-For means nothing.
    assert.equal((await req('127.0.4.1', WRONG_KEY, { xff: '198.51.100.8' })).status, 401);
    // A valid key behind the proxy from the locked client still works.
    assert.equal((await req(PROXY, ROOT_KEY, { xff: client })).status, 200);
    const recs = auditLines();
    assert.ok(recs.some((r) => r.remote === client), 'the audit log names the client behind the proxy');
    assert.ok(recs.some((r) => r.remote === '127.0.4.1'), 'and the peer when the header is not believed');
    assert.ok(!recs.some((r) => r.remote === '203.0.113.1' || r.remote === '198.51.100.8'), 'a client-written entry is never believed');
  });
});

describe('connections per address', () => {
  test('one address cannot hold more than service.max_connections_per_ip connections', async () => {
    const addr = '127.0.5.1';
    const held = [];
    for (let i = 0; i < 4; i++) {
      const s = net.connect({ host: '127.0.0.1', port: srv.port, localAddress: addr });
      await new Promise((resolve, reject) => {
        s.once('connect', resolve);
        s.once('error', reject);
      });
      held.push(s);
    }
    await sleep(100 * TIME_SCALE);
    let refused = false;
    try {
      const r = await req(addr, ROOT_KEY);
      refused = r.status !== 200;
    } catch {
      refused = true;
    }
    assert.ok(refused, 'a fifth connection from the same address is refused');
    assert.equal((await req('127.0.5.2', ROOT_KEY)).status, 200, 'other addresses are served');
    for (const s of held) s.destroy();
    await sleep(200 * TIME_SCALE);
    assert.equal((await req(addr, ROOT_KEY)).status, 200, 'served again once its connections close');
  });
});
