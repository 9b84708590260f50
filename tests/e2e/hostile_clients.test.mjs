// Hostile clients (issue 13, item 5): a client that trickles its headers or its body (slowloris)
// is cut at a whole-phase deadline however steadily it sends; idle connections that never send a
// request are cut too; past service.max_connections a request gets a quick 503, never a hang; a
// normal client keeps getting answers in milliseconds meanwhile.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';

import { keyEnv, ROOT_KEY } from './lib/auth.mjs';
import { runAegis, sleep, startServer, TIME_SCALE } from './lib/server.mjs';

const HEADER_TIMEOUT = 2;
const BODY_TIMEOUT = 2;

/** Opens a raw connection from addr; resolves the socket once connected. Records when it closes. */
function connect(port, addr) {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: '127.0.0.1', port, localAddress: addr });
    s.closedAt = null;
    s.on('close', () => {
      s.closedAt = Date.now();
    });
    s.on('error', () => {});
    s.once('connect', () => resolve(s));
    s.once('error', reject);
  });
}

/** Writes text one byte at a time every `every` ms until the socket closes or `stop()` is called. */
function trickle(s, text, every) {
  let i = 0;
  const t = setInterval(() => {
    if (s.destroyed || s.closedAt) {
      clearInterval(t);
      return;
    }
    s.write(text[i % text.length]);
    i++;
  }, every);
  return () => clearInterval(t);
}

async function timedHealthz(srv, n) {
  const worst = [];
  for (let i = 0; i < n; i++) {
    const t0 = Date.now();
    const r = await srv.request('GET', '/collections', undefined, { headers: { 'api-key': ROOT_KEY }, agent: false, localAddress: '127.0.8.1' });
    assert.equal(r.status, 200);
    worst.push(Date.now() - t0);
    await sleep(50);
  }
  return Math.max(...worst);
}

async function waitClosed(sockets, ms) {
  const end = Date.now() + ms;
  while (Date.now() < end && sockets.some((s) => !s.closedAt)) await sleep(50);
  return sockets.filter((s) => !s.closedAt).length;
}

describe('slow and idle clients', () => {
  let srv;
  before(async () => {
    srv = await startServer({
      insecure: false,
      env: keyEnv({ AEGIS__SERVICE__HEADER_TIMEOUT_SEC: String(HEADER_TIMEOUT), AEGIS__SERVICE__BODY_TIMEOUT_SEC: String(BODY_TIMEOUT) }),
    });
  });
  after(async () => {
    await srv?.cleanup();
  });

  test('headers trickled a byte at a time are cut at the header deadline; others are served meanwhile', async () => {
    const sockets = [];
    const stops = [];
    for (let i = 0; i < 100; i++) {
      const s = await connect(srv.port, `127.0.6.${(i % 200) + 1}`);
      s.write('GET /healthz HTTP/1.1\r\nHost: x\r\n');
      stops.push(trickle(s, 'X-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n', 100));
      sockets.push(s);
    }
    const opened = Date.now();
    const worst = await timedHealthz(srv, 10);
    assert.ok(worst < 1000 * TIME_SCALE, `a normal request took ${worst} ms while 100 clients trickled`);
    const left = await waitClosed(sockets, (HEADER_TIMEOUT + 3) * 1000 * TIME_SCALE);
    stops.forEach((f) => f());
    assert.equal(left, 0, `${left} trickling connections still open ${Date.now() - opened} ms later`);
    // Cut at the deadline, not before it: they kept sending all along.
    const earliest = Math.min(...sockets.map((s) => s.closedAt)) - opened;
    assert.ok(earliest >= (HEADER_TIMEOUT - 1) * 1000, `cut after ${earliest} ms`);
    // The watchdog logs after it cuts; under load the line can reach us a moment after the close.
    for (let i = 0; i < 40 && !/closed \d+ connection\(s\) that did not send/.test(srv.stderr); i++) await sleep(50);
    assert.match(srv.stderr, /closed \d+ connection\(s\) that did not send their request/);
    sockets.forEach((s) => s.destroy());
  });

  test('a body trickled a byte at a time is cut at the body deadline', async () => {
    const s = await connect(srv.port, '127.0.7.1');
    s.write(`POST /collections/x/points/scroll HTTP/1.1\r\nHost: x\r\napi-key: ${ROOT_KEY}\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n`);
    const opened = Date.now();
    const stop = trickle(s, ' ', 100);
    const left = await waitClosed([s], (BODY_TIMEOUT + 3) * 1000 * TIME_SCALE);
    stop();
    assert.equal(left, 0, 'the slow body was not cut');
    assert.ok(s.closedAt - opened >= (BODY_TIMEOUT - 1) * 1000);
    s.destroy();
  });

  test('hundreds of idle connections are cut and do not stop service', async () => {
    const sockets = [];
    for (let i = 0; i < 300; i++) sockets.push(await connect(srv.port, `127.0.9.${(i % 250) + 1}`));
    const worst = await timedHealthz(srv, 5);
    assert.ok(worst < 1000 * TIME_SCALE, `a normal request took ${worst} ms with 300 idle connections`);
    const left = await waitClosed(sockets, (HEADER_TIMEOUT + 3) * 1000 * TIME_SCALE);
    assert.equal(left, 0, `${left} idle connections never cut`);
    sockets.forEach((s) => s.destroy());
  });
});

describe('the global connection limit', () => {
  let srv;
  before(async () => {
    srv = await startServer({ insecure: false, env: keyEnv({ AEGIS__SERVICE__MAX_CONNECTIONS: '20' }) });
  });
  after(async () => {
    await srv?.cleanup();
  });

  test('past service.max_connections a request gets a quick 503, not a hang', async () => {
    const held = [];
    for (let i = 0; i < 25; i++) held.push(await connect(srv.port, `127.0.10.${i + 1}`));
    await sleep(100 * TIME_SCALE);
    const t0 = Date.now();
    const r = await srv.request('GET', '/collections', undefined, { headers: { 'api-key': ROOT_KEY }, agent: false, localAddress: '127.0.10.200' });
    assert.equal(r.status, 503, r.text);
    assert.match(r.json.status.error, /too many connections/);
    assert.ok(Date.now() - t0 < 2000 * TIME_SCALE);
    held.forEach((s) => s.destroy());
    await sleep(300 * TIME_SCALE);
    const ok = await srv.request('GET', '/collections', undefined, { headers: { 'api-key': ROOT_KEY }, agent: false, localAddress: '127.0.10.201' });
    assert.equal(ok.status, 200, 'served again once the idle connections are gone');
  });

  test('a zero limit or timeout stops start-up naming it', async () => {
    for (const k of ['AEGIS__SERVICE__MAX_CONNECTIONS', 'AEGIS__SERVICE__HEADER_TIMEOUT_SEC', 'AEGIS__SERVICE__BODY_TIMEOUT_SEC']) {
      const dir = `${srv.storage}-zero`;
      const r = await runAegis(['serve', '--storage', dir, '--port', '1'], { env: { ...keyEnv(), [k]: '0' } });
      fs.rmSync(dir, { recursive: true, force: true });
      assert.notEqual(r.code, 0);
      assert.ok(r.stderr.includes(k.replace('AEGIS__', '').toLowerCase().replace('__', '.')), r.stderr);
    }
  });
});
