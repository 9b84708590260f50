// HTTP-level behaviour of the real server: health probes, service info, Qdrant's envelopes,
// routing errors, keep-alive, the request body limit, wait=false, graceful shutdown and the
// access log.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { QdrantClient } from '@qdrant/js-client-rest';
import { startServer, rawRequest, sleep, TIME_SCALE } from './lib/server.mjs';
import { prng, randVector } from './lib/oracle.mjs';

let srv;

before(async () => {
  srv = await startServer();
});

after(async () => {
  await srv?.cleanup();
});

/**
 * Sends a request over a raw socket, reading the answer while the body is still being written.
 * expectContinue: send `Expect: 100-continue` and wait (up to 1 s) for an interim or final answer
 * before the body; chunked: use chunked transfer encoding instead of Content-Length.
 */
function sendWhileReading(port, method, urlPath, body, { expectContinue = false, chunked = false } = {}) {
  return new Promise((resolve) => {
    const sock = net.connect(port, '127.0.0.1');
    const chunks = [];
    let error = null;
    let gotData;
    const firstData = new Promise((r) => (gotData = r));
    sock.on('data', (d) => {
      chunks.push(d);
      gotData();
    });
    sock.on('error', (e) => (error = e.code || e.message));
    sock.on('close', () => {
      let raw = Buffer.concat(chunks).toString('utf8');
      raw = raw.replace(/^HTTP\/1\.1 100 [^\r\n]*\r\n\r\n/, '');
      const m = /^HTTP\/1\.[01] (\d{3})[^\r\n]*\r\n([\s\S]*?)\r\n\r\n([\s\S]*)$/.exec(raw);
      if (!m) return resolve({ raw, error });
      const headers = {};
      for (const line of m[2].split('\r\n')) {
        const i = line.indexOf(':');
        headers[line.slice(0, i).trim().toLowerCase()] = line.slice(i + 1).trim();
      }
      let text = m[3];
      if (/chunked/i.test(headers['transfer-encoding'] ?? '')) {
        let out = '';
        let rest = text;
        for (;;) {
          const nl = rest.indexOf('\r\n');
          const size = parseInt(rest.slice(0, nl), 16);
          if (!size) break;
          out += rest.slice(nl + 2, nl + 2 + size);
          rest = rest.slice(nl + 2 + size + 2);
        }
        text = out;
      }
      let json;
      try {
        json = JSON.parse(text);
      } catch {
        json = undefined;
      }
      resolve({ status: Number(m[1]), headers, text, json, raw, error });
    });
    sock.on('connect', async () => {
      sock.write(
        `${method} ${urlPath} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n` +
          (chunked ? 'Transfer-Encoding: chunked\r\n' : `Content-Length: ${Buffer.byteLength(body)}\r\n`) +
          (expectContinue ? 'Expect: 100-continue\r\n' : '') +
          'Connection: close\r\n\r\n',
      );
      if (expectContinue) {
        await Promise.race([firstData, sleep(1000)]);
        if (/^HTTP\/1\.1 [2-5]\d\d/.test(Buffer.concat(chunks).toString()) && !/^HTTP\/1\.1 100/.test(Buffer.concat(chunks).toString())) return;
      }
      const buf = Buffer.from(body);
      const step = 64 * 1024;
      for (let off = 0; off < buf.length && !error && !sock.destroyed; off += step) {
        const part = buf.subarray(off, off + step);
        const data = chunked ? Buffer.concat([Buffer.from(`${part.length.toString(16)}\r\n`), part, Buffer.from('\r\n')]) : part;
        if (!sock.write(data)) await new Promise((r) => sock.once('drain', r).once('close', r));
      }
      if (chunked && !error && !sock.destroyed) sock.write('0\r\n\r\n');
    });
    sock.setTimeout(30_000 * TIME_SCALE, () => sock.destroy(new Error('timeout')));
  });
}

function assertOkEnvelope(r, what) {
  assert.equal(r.status, 200, `${what}: ${r.status} ${r.text.slice(0, 500)}`);
  assert.match(r.headers['content-type'] ?? '', /^application\/json/, `${what}: content-type`);
  assert.ok(r.json, `${what}: body is JSON`);
  assert.equal(r.json.status, 'ok', `${what}: status`);
  assert.equal(typeof r.json.time, 'number', `${what}: time`);
  assert.ok(r.json.time >= 0 && r.json.time < 60, `${what}: time is seconds`);
  assert.ok('result' in r.json, `${what}: result`);
}

function assertErrorEnvelope(r, status, what) {
  assert.equal(r.status, status, `${what}: ${r.status} ${r.text.slice(0, 500)}`);
  assert.match(r.headers['content-type'] ?? '', /^application\/json/, `${what}: content-type`);
  assert.ok(r.json, `${what}: body is JSON: ${r.text.slice(0, 200)}`);
  assert.equal(typeof r.json.status?.error, 'string', `${what}: status.error`);
  assert.ok(r.json.status.error.length > 0, `${what}: error message`);
  assert.equal(typeof r.json.time, 'number', `${what}: time`);
  assert.ok(!('result' in r.json) || r.json.result === null, `${what}: no result on error`);
}

test('/healthz and /livez answer text/plain "healthz check passed", /readyz "all shards are ready"', async () => {
  for (const [p, body] of [
    ['/healthz', 'healthz check passed'],
    ['/livez', 'healthz check passed'],
    ['/readyz', 'all shards are ready'],
  ]) {
    const r = await srv.request('GET', p);
    assert.equal(r.status, 200, p);
    assert.match(r.headers['content-type'] ?? '', /^text\/plain/, `${p} content-type`);
    assert.equal(r.text, body, p);
  }
});

test('GET / answers Qdrant\'s service info object: title, version, commit', async () => {
  const r = await srv.request('GET', '/');
  assert.equal(r.status, 200);
  assert.match(r.headers['content-type'] ?? '', /^application\/json/);
  // Qdrant answers {"title": …, "version": …, "commit": …} without the result envelope, and the
  // official clients read `version` from the top level.
  assert.equal(typeof r.json.title, 'string', `top-level title in ${r.text}`);
  assert.match(r.json.version ?? '', /^\d+\.\d+\.\d+/, `top-level version in ${r.text}`);
});

test('Qdrant envelope {result, status:"ok", time} on success', async () => {
  assertOkEnvelope(await srv.request('GET', '/collections'), 'GET /collections');
  const created = await srv.request('PUT', '/collections/env', { vectors: { size: 4, distance: 'Dot' } });
  assertOkEnvelope(created, 'create');
  assert.equal(created.json.result, true);
  const info = await srv.request('GET', '/collections/env');
  assertOkEnvelope(info, 'info');
  assert.equal(info.json.result.points_count, 0);
  const list = await srv.request('GET', '/collections');
  assert.deepEqual(list.json.result, { collections: [{ name: 'env' }] });
});

test('error envelope {status:{error}, time}: missing collection 404, exists 409, bad body 400', async () => {
  const missing = await srv.request('GET', '/collections/does_not_exist');
  assertErrorEnvelope(missing, 404, 'missing collection');
  assert.match(missing.json.status.error, /does_not_exist/);
  assertErrorEnvelope(await srv.request('PUT', '/collections/env', { vectors: { size: 4, distance: 'Dot' } }), 409, 'exists');
  const bad = await srv.request('PUT', '/collections/env2', '{"vectors": ');
  assert.ok(bad.status === 400 || bad.status === 422, `bad JSON: ${bad.status}`);
  assertErrorEnvelope(bad, bad.status, 'bad JSON');
  assertErrorEnvelope(
    await srv.request('POST', '/collections/does_not_exist/points/count', {}),
    404,
    'count on missing collection',
  );
});

test('unknown routes answer 404 JSON; a known path with the wrong method is a JSON 4xx', async () => {
  for (const [m, p] of [
    ['GET', '/no/such/route'],
    ['GET', '/collections/env/nonsense'],
    ['POST', '/collections/env/points/nonsense/deeper'],
    ['GET', '/healthzz'],
  ]) {
    assertErrorEnvelope(await srv.request(m, p), 404, `${m} ${p}`);
  }
  const wrong = await srv.request('DELETE', '/healthz');
  assert.ok(wrong.status === 405 || wrong.status === 404, `DELETE /healthz: ${wrong.status}`);
  assertErrorEnvelope(wrong, wrong.status, 'wrong method');
});

test('percent-encoded path segments are decoded before routing', async () => {
  const r = await srv.request('GET', '/collections/%65nv');
  assertOkEnvelope(r, 'GET /collections/%65nv');
  assert.equal(r.json.result.points_count, 0);
  const e = await srv.request('GET', '/collections/%65nv/exists');
  assert.deepEqual(e.json.result, { exists: true });
});

test('keep-alive: many requests, including bodies and errors, reuse one socket', async () => {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  try {
    const sockets = new Set();
    const reused = [];
    const reqs = [
      ['GET', '/healthz'],
      ['GET', '/collections'],
      ['PUT', '/collections/env/points?wait=true', { points: [{ id: 1, vector: [1, 2, 3, 4] }] }],
      ['GET', '/collections/nope'], // 404
      ['PUT', '/collections/env/points?wait=true', '{"points": ['], // 400 after the body was read
      ['POST', '/collections/env/points/count', { exact: true }],
      ['GET', '/readyz'],
    ];
    for (let round = 0; round < 3; round++) {
      for (const [m, p, b] of reqs) {
        const r = await rawRequest({ port: srv.port, method: m, path: p, body: b, agent });
        sockets.add(r.socket);
        reused.push(r.reusedSocket);
        assert.notEqual(r.headers.connection, 'close', `${m} ${p} closes the connection (${r.status})`);
      }
    }
    assert.equal(sockets.size, 1, 'all requests ran on one socket');
    assert.deepEqual(reused.slice(1), new Array(reused.length - 1).fill(true));
  } finally {
    agent.destroy();
  }
});

test('wait=false acknowledges and the write becomes visible within a bounded time', async () => {
  const r = await srv.request('PUT', '/collections/env/points?wait=false', {
    points: Array.from({ length: 50 }, (_, k) => ({ id: 1000 + k, vector: [k, 1, 2, 3], payload: { k } })),
  });
  assertOkEnvelope(r, 'upsert wait=false');
  assert.ok(['acknowledged', 'completed'].includes(r.json.result.status), r.text);
  const deadline = Date.now() + 5000 * TIME_SCALE;
  let count;
  for (;;) {
    count = (await srv.ok('POST', '/collections/env/points/count', { exact: true })).count;
    if (count === 51 || Date.now() > deadline) break;
    await sleep(20);
  }
  assert.equal(count, 51);
  const got = await srv.ok('POST', '/collections/env/points', { ids: [1049], with_payload: true, with_vector: true });
  assert.deepEqual(got, [{ id: 1049, payload: { k: 49 }, vector: [49, 1, 2, 3] }]);
});

test('access log: one line per request with method, path and status; no credential is logged', async () => {
  const tag = `probe_${Date.now()}`;
  const secret = `s3cr3t-${Math.random().toString(36).slice(2)}`;
  await srv.request('GET', `/collections/${tag}/exists`, undefined, { headers: { 'api-key': secret } });
  await srv.request('GET', `/collections/${tag}`, undefined, { headers: { authorization: `Bearer ${secret}` } });
  await srv.request('POST', `/collections/${tag}/points/count`, {}, { headers: { "api-key": secret } });
  const deadline = Date.now() + 3000;
  let lines;
  for (;;) {
    lines = srv.stderr.split('\n').filter((l) => l.includes(tag));
    if (lines.length >= 3 || Date.now() > deadline) break;
    await sleep(20);
  }
  assert.equal(lines.length, 3, `access lines for ${tag}:\n${lines.join('\n')}`);
  assert.match(lines[0], new RegExp(`GET /collections/${tag}/exists\\b.*\\b200\\b`));
  assert.match(lines[1], new RegExp(`GET /collections/${tag}\\b.*\\b404\\b`));
  assert.match(lines[2], new RegExp(`POST /collections/${tag}/points/count\\b.*\\b404\\b`));
  assert.ok(!srv.stderr.includes(secret), 'a credential appeared in the log');
});

describe('request body limit (AEGIS__SERVICE__MAX_REQUEST_SIZE_MB=1)', () => {
  let small;
  const rnd = prng(7);
  const mk = (n, base) => ({
    points: Array.from({ length: n }, (_, k) => ({ id: base + k, vector: randVector(rnd, 128) })),
  });
  const bigBody = JSON.stringify(mk(2000, 1)); // ~2.5 MB
  const count = async () => (await small.ok('POST', '/collections/lim/points/count', { exact: true })).count;

  before(async () => {
    small = await startServer({ env: { AEGIS__SERVICE__MAX_REQUEST_SIZE_MB: '1' } });
    await small.ok('PUT', '/collections/lim', { vectors: { size: 128, distance: 'Dot' } });
    assert.ok(bigBody.length > 1.5 * 1024 * 1024, `body is ${bigBody.length} bytes`);
  });
  after(() => small?.cleanup());

  test('Expect: 100-continue with a Content-Length over the limit -> 413 JSON before the body', async () => {
    const r = await sendWhileReading(small.port, 'PUT', '/collections/lim/points?wait=true', bigBody, {
      expectContinue: true,
    });
    assert.ok(r.status, `no HTTP answer (${r.error}); got ${JSON.stringify(r.raw.slice(0, 200))}`);
    assertErrorEnvelope(r, 413, 'over the limit');
    assert.match(r.json.status.error, /limit|large|size/i);
    assert.equal(await count(), 0);
  });

  test('Content-Length over the limit, whole body sent without waiting -> the 413 JSON arrives', async () => {
    const r = await sendWhileReading(small.port, 'PUT', '/collections/lim/points?wait=true', bigBody);
    assert.ok(
      r.status,
      `no HTTP answer before the connection closed (${r.error}): the server closed the connection ` +
        'without reading the body, and the TCP reset discarded its 413',
    );
    assertErrorEnvelope(r, 413, 'over the limit');
    assert.equal(await count(), 0);
  });

  test('the official client sending a body over the limit gets a 413, not a broken connection', async () => {
    const points = mk(2000, 1).points;
    // Whether the 413 survives a close-without-reading is a race: try several times.
    for (let attempt = 0; attempt < 6; attempt++) {
      const client = new QdrantClient({ url: small.url, checkCompatibility: false });
      let err;
      try {
        await client.upsert('lim', { wait: true, points });
      } catch (e) {
        err = e;
      }
      assert.ok(err, 'an over-limit upsert must fail');
      assert.equal(
        err.status,
        413,
        `attempt ${attempt}: the client saw ${err.name}: ${err.message} ` +
          `${err.cause ? `(cause: ${err.cause.code || err.cause.message})` : ''} - the server closed the ` +
          'connection before reading the body, so the 413 was lost to a TCP reset',
      );
    }
    assert.equal(await count(), 0);
  });

  test('a chunked body (no Content-Length) over the limit -> 413', async () => {
    const r = await sendWhileReading(small.port, 'PUT', '/collections/lim/points?wait=true', bigBody, { chunked: true });
    assert.ok(r.status, `no HTTP answer before the connection closed (${r.error})`);
    assertErrorEnvelope(r, 413, 'chunked over the limit');
    assert.equal(await count(), 0);
  });

  test('a body under the limit is accepted and the server stays healthy', async () => {
    const okBody = JSON.stringify(mk(400, 5000)); // ~0.5 MB
    assert.ok(okBody.length < 1024 * 1024);
    const r2 = await small.request('PUT', '/collections/lim/points?wait=true', okBody);
    assertOkEnvelope(r2, 'under the limit');
    assert.equal(await count(), 400);
    assert.equal((await small.request('GET', '/healthz')).text, 'healthz check passed');
  });
});

test('graceful shutdown: SIGTERM lets an in-flight upsert finish with 200; exit status 0; data durable', async (t) => {
  const g = await startServer();
  t.after(() => g.cleanup());
  await g.ok('PUT', '/collections/big', { vectors: { size: 128, distance: 'Euclid' } });
  const rnd = prng(99);
  const n = 10_000;
  const body = JSON.stringify({
    points: Array.from({ length: n }, (_, k) => ({ id: k + 1, vector: randVector(rnd, 128), payload: { k } })),
  });
  let termAt = null;
  const answer = new Promise((resolve, reject) => {
    const req = http.request(
      {
        host: '127.0.0.1',
        port: g.port,
        method: 'PUT',
        path: '/collections/big/points?wait=true',
        headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) },
        agent: false,
      },
      (res) => {
        const chunks = [];
        const headersAt = Date.now();
        res.on('data', (d) => chunks.push(d));
        res.on('end', () => resolve({ status: res.statusCode, text: Buffer.concat(chunks).toString(), headersAt }));
      },
    );
    req.on('error', reject);
    req.flushHeaders();
    // Headers first, so the connection is accepted and the request has begun; then the body,
    // and SIGTERM while the server is reading or applying it.
    setTimeout(() => {
      req.end(body, () =>
        setTimeout(() => {
          termAt = Date.now();
          g.proc.kill('SIGTERM');
        }, 5),
      );
    }, 150);
  });
  let r;
  try {
    r = await answer;
  } catch (e) {
    assert.fail(`in-flight request was dropped on SIGTERM: ${e.message}\n${g.stderr.slice(-2000)}`);
  }
  assert.ok(termAt !== null && r.headersAt >= termAt, 'SIGTERM was sent while the upsert was still in flight');
  assert.equal(r.status, 200, r.text.slice(0, 500));
  assert.equal(JSON.parse(r.text).result.status, 'completed');
  const exit = await g.stop();
  assert.deepEqual(exit, { code: 0, signal: null }, `exit status after SIGTERM\n${g.stderr.slice(-2000)}`);
  await g.start();
  assert.equal((await g.ok('POST', '/collections/big/points/count', { exact: true })).count, n);
  const exit2 = await g.stop();
  assert.deepEqual(exit2, { code: 0, signal: null });
});
