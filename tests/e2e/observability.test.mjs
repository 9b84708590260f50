// Operating Aegis (issue 14; docs/API.md "Metrics", "Logs", "CORS"): request ids, refusals
// explained in the log, CORS, every /metrics family moving with traffic, /telemetry scoped to
// the caller.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';

import { RO_KEY, ROOT_KEY, WRONG_KEY, freshAddr, jwt, keyEnv, nowS } from './lib/auth.mjs';
import { SLOW, sleep, startServer } from './lib/server.mjs';

const root = { 'api-key': ROOT_KEY };

/** Parses Prometheus text into {families: Map(name → type), samples: [{name, labels, value}]}. */
function parseMetrics(text) {
  const families = new Map();
  const samples = [];
  for (const line of text.split('\n')) {
    if (!line) continue;
    const t = /^# TYPE (\S+) (\S+)$/.exec(line);
    if (t) {
      families.set(t[1], t[2]);
      continue;
    }
    if (line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    assert.ok(m, `malformed sample line: ${line}`);
    const labels = {};
    for (const [, k, v] of (m[2] || '').matchAll(/([a-zA-Z_]+)="((?:[^"\\]|\\.)*)"/g)) labels[k] = v;
    samples.push({ name: m[1], labels, value: Number(m[3]) });
  }
  return { families, samples };
}

/** The value of one sample (labels must all match), or undefined. */
function value(parsed, name, labels = {}) {
  const s = parsed.samples.find((x) => x.name === name && Object.entries(labels).every(([k, v]) => x.labels[k] === v));
  return s?.value;
}

function sum(parsed, name, labels = {}) {
  return parsed.samples
    .filter((x) => x.name === name && Object.entries(labels).every(([k, v]) => x.labels[k] === v))
    .reduce((a, x) => a + x.value, 0);
}

/** Waits (up to 3 s) for the server's stderr to match: it reaches us through a pipe, possibly a
 * moment after the response that followed the line. */
async function stderrMatch(srv, re) {
  for (let i = 0; i < 60 && !re.test(srv.stderr); i++) await sleep(50);
  assert.match(srv.stderr, re);
}

describe('metrics, telemetry, request ids and CORS', () => {
  let srv;
  before(async () => {
    srv = await startServer({
      insecure: false,
      env: keyEnv({ AEGIS__SERVICE__AUTH_MAX_FAILURES: '2', AEGIS__LOG_LEVEL: 'debug' }),
    });
  });
  after(() => srv?.cleanup());

  const scrape = async () => {
    const r = await srv.request('GET', '/metrics', undefined, { headers: root });
    assert.equal(r.status, 200, r.text);
    assert.match(r.headers['content-type'], /^text\/plain; version=0\.0\.4/);
    return parseMetrics(r.text);
  };

  test('x-request-id: a sane one is kept, anything else replaced; in the access log and the audit', async () => {
    const mine = 'trace-42.a:b_c';
    const r = await srv.request('PUT', '/collections/rid', { vectors: { size: 2, distance: 'Dot' } }, { headers: { ...root, 'x-request-id': mine } });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.headers['x-request-id'], mine);
    for (const bad of ['has space', 'x'.repeat(65), 'semi;colon', 'ünï']) {
      const b = await srv.request('GET', '/healthz', undefined, { headers: { 'x-request-id': encodeURIComponent(bad) === bad ? bad : 'a%2Fb' } });
      assert.notEqual(b.headers['x-request-id'], bad);
      assert.match(b.headers['x-request-id'], /^[0-9a-f]{8}-[0-9a-f]+$/);
    }
    const gen = await srv.request('GET', '/healthz');
    assert.match(gen.headers['x-request-id'], /^[0-9a-f]{8}-[0-9a-f]+$/);
    await stderrMatch(srv, new RegExp(`access \\S+ PUT /collections/rid 200 .* rid=${mine.replace(/\./g, '\\.')} `));
    const audit = await srv.ok('GET', '/auth/audit?action=create:collections', undefined, { headers: root });
    assert.ok(audit.some((rec) => rec.request_id === mine), `audit records: ${JSON.stringify(audit).slice(0, 500)}`);
  });

  test('every 4xx is explained at debug with route, caller kind and reason', async () => {
    const r = await srv.request('PUT', '/collections/rid/points', { points: [{ id: 1, vector: [1] }] }, { headers: { ...root, 'x-request-id': 'explain-400' } });
    assert.equal(r.status, 400);
    await stderrMatch(srv, /DEBUG rid=explain-400 PUT \/collections\/rid\/points route=\/collections\/\{name\}\/points caller=root -> 400: .+/);
    const d = await srv.request('PUT', '/collections/nope2', { vectors: { size: 2, distance: 'Dot' } }, { headers: { 'api-key': RO_KEY, 'x-request-id': 'explain-403' } });
    assert.equal(d.status, 403);
    await stderrMatch(srv, /DEBUG rid=explain-403 PUT \/collections\/nope2 route=\/collections\/\{name\} caller=\S+ -> 403: Forbidden: missing permission/);
    const n = await srv.request('GET', '/no/such/thing', undefined, { headers: { 'x-request-id': 'explain-404' } });
    assert.equal(n.status, 404);
    await stderrMatch(srv, /DEBUG rid=explain-404 GET \/no\/such\/thing route=\(none\) caller=none -> 404: /);
  });

  test('CORS is on by default (Qdrant): any origin, preflight answered, the real request still authenticated', async () => {
    const pre = await srv.request('OPTIONS', '/collections', undefined, {
      headers: { origin: 'http://anything.example', 'access-control-request-method': 'PUT', 'access-control-request-headers': 'api-key' },
    });
    assert.equal(pre.status, 204);
    assert.equal(pre.headers['access-control-allow-origin'], '*');
    assert.match(pre.headers['access-control-allow-headers'], /api-key/);
    assert.equal(pre.headers['access-control-allow-credentials'], undefined);
    const real = await srv.request('GET', '/collections', undefined, { headers: { origin: 'http://anything.example' }, localAddress: freshAddr(), agent: false });
    assert.equal(real.status, 401, 'a preflight never admits the request it announces');
    assert.equal(real.headers['access-control-allow-origin'], '*');
    assert.match(real.headers['access-control-expose-headers'], /x-request-id/);
  });

  test('metrics: at least 20 families, every one moves with traffic', async () => {
    const before = await scrape();
    // traffic: a collection with points (indexed in the background), a search, a 404, a denial
    // by action, failed authentications of three kinds, a throttled address.
    // a small full-scan threshold, so the points go through the background indexer
    await srv.ok('PUT', '/collections/m1', { vectors: { size: 4, distance: 'Cosine' }, hnsw_config: { full_scan_threshold: 1 } }, { headers: root });
    const points = Array.from({ length: 300 }, (_, i) => ({ id: i + 1, vector: [1, i % 7, i % 5, (i * 13) % 11 + 1] }));
    await srv.ok('PUT', '/collections/m1/points?wait=true', { points }, { headers: root });
    await srv.ok('POST', '/collections/m1/points/search', { vector: [1, 1, 1, 1], limit: 3 }, { headers: root });
    await srv.ok('POST', '/collections/m1/points/count', { filter: { must: [{ key: 'k', match: { value: 1 } }] } }, { headers: root });
    await srv.ok('POST', '/collections/m1/snapshots?wait=true', undefined, { headers: root });
    await srv.request('GET', '/collections/none-here', undefined, { headers: root });
    const denied = await srv.request('DELETE', '/collections/m1', undefined, { headers: { 'api-key': RO_KEY } });
    assert.equal(denied.status, 403);
    assert.equal((await srv.request('GET', '/collections', undefined, { localAddress: freshAddr(), agent: false })).status, 401);
    assert.equal((await srv.request('GET', '/collections', undefined, { headers: { 'api-key': WRONG_KEY }, localAddress: freshAddr(), agent: false })).status, 401);
    const expired = jwt({ access: 'r', exp: nowS() - 3600 });
    assert.equal((await srv.request('GET', '/collections', undefined, { headers: { 'api-key': expired }, localAddress: freshAddr(), agent: false })).status, 401);
    const locked = freshAddr();
    const seen = [];
    for (let i = 0; i < 4; i++) seen.push((await srv.request('GET', '/collections', undefined, { headers: { 'api-key': WRONG_KEY }, localAddress: locked, agent: false })).status);
    assert.ok(seen.includes(429), `a locked-out address gets 429: ${seen}`);

    // the background indexer links the 300 vectors
    let now;
    for (let i = 0; i < 200; i++) {
      now = await scrape();
      if (value(now, 'aegis_indexing_queue_vectors', { collection: 'm1' }) === 0 && value(now, 'aegis_vectors_linked_total') >= 300) break;
      await sleep(100);
    }
    const fams = [...now.families.keys()];
    assert.ok(fams.length >= 20, `only ${fams.length} families: ${fams.join(' ')}`);

    const moved = (name, labels, min = 1) => {
      const a = sum(before, name, labels);
      const b = sum(now, name, labels);
      assert.ok(b - a >= min, `${name}${JSON.stringify(labels)} should grow by >= ${min}: ${a} -> ${b}`);
    };
    // build info and state
    assert.equal(value(now, 'app_info', { name: 'aegis' }), 1);
    assert.equal(value(now, 'app_status_recovery_mode'), 0);
    assert.ok(value(now, 'aegis_uptime_seconds') > value(before, 'aegis_uptime_seconds'));
    // collections, points, vectors, indexing
    assert.equal(value(now, 'collections_total'), value(before, 'collections_total') + 1);
    assert.equal(value(now, 'collection_points', { collection: 'm1' }), 300);
    assert.equal(value(now, 'collection_vectors', { collection: 'm1' }), 300);
    assert.ok(value(now, 'collections_vector_total') >= 300);
    assert.equal(value(now, 'aegis_collection_indexed_vectors', { collection: 'm1' }), 300);
    assert.equal(value(now, 'aegis_indexing_queue_vectors', { collection: 'm1' }), 0);
    moved('aegis_vectors_linked_total', {}, 300);
    // requests by route and status; latency
    moved('rest_responses_total', { endpoint: '/collections/{name}/points/search', status: '200' });
    moved('rest_responses_total', { endpoint: '/collections/{name}', method: 'GET', status: '404' });
    moved('rest_responses_fail_total', { endpoint: '/collections', status: '401' }, 3);
    moved('rest_responses_duration_seconds_count', { endpoint: '/collections/{name}/points/search' });
    moved('rest_responses_duration_seconds_bucket', { endpoint: '/collections/{name}/points/search', le: '+Inf' });
    assert.ok(value(now, 'rest_responses_duration_seconds_sum', { endpoint: '/collections/{name}/points' }) > 0);
    for (const g of ['rest_responses_avg_duration_seconds', 'rest_responses_max_duration_seconds', 'rest_responses_min_duration_seconds'])
      assert.ok(value(now, g, { endpoint: '/collections/{name}/points', method: 'PUT' }) > 0, g);
    assert.ok(
      value(now, 'rest_responses_max_duration_seconds', { endpoint: '/collections/{name}/points', method: 'PUT' }) >=
        value(now, 'rest_responses_min_duration_seconds', { endpoint: '/collections/{name}/points', method: 'PUT' }),
    );
    // decisions, authentication failures, throttling, audit
    moved('aegis_decisions_total', { action: 'read:data', decision: 'allowed' }, 2);
    moved('aegis_decisions_total', { action: 'delete:collections', decision: 'denied' });
    moved('aegis_auth_failures_total', { reason: 'missing' });
    moved('aegis_auth_failures_total', { reason: 'invalid' }, 2);
    moved('aegis_auth_failures_total', { reason: 'expired' });
    moved('aegis_throttled_requests_total', {});
    moved('aegis_audit_records_total', {}, 2);
    assert.equal(value(now, 'aegis_audit_failures_total'), 0);
    // snapshots: one taken above
    assert.equal(now.families.get('snapshot_created_total'), 'counter');
    moved('snapshot_created_total', {}, 1);
    moved('points_examined_total', {});
    // process, storage, server
    assert.ok(value(now, 'memory_resident_bytes') > 1 << 20);
    // mallinfo2 describes glibc's allocator; under AddressSanitizer malloc is ASan's and it says 0
    if (SLOW) assert.ok(value(now, 'memory_allocated_bytes') >= 0);
    else assert.ok(value(now, 'memory_allocated_bytes') > 1 << 16);
    assert.ok(value(now, 'aegis_lmdb_map_size_bytes') >= value(now, 'aegis_lmdb_used_bytes'));
    assert.ok(value(now, 'aegis_lmdb_used_bytes') > value(before, 'aegis_lmdb_used_bytes'), 'the upsert used LMDB pages');
    assert.ok(value(now, 'aegis_open_connections') >= 1);
    assert.ok(value(now, 'aegis_workers', { state: 'busy' }) >= 1, 'the scrape itself runs on a worker');
    assert.ok(value(now, 'aegis_workers', { state: 'idle' }) >= 0);
    assert.equal(value(now, 'aegis_worker_queue_length'), 0);
    moved('aegis_requests_total', {}, 10);
    // types as declared
    assert.equal(now.families.get('rest_responses_duration_seconds'), 'histogram');
    assert.equal(now.families.get('rest_responses_total'), 'counter');
    assert.equal(now.families.get('collections_total'), 'gauge');
  });

  test('telemetry shows a scoped token only its collections and no server-wide parts', async () => {
    await srv.ok('PUT', '/collections/tel_a', { vectors: { size: 2, distance: 'Dot' } }, { headers: root });
    await srv.ok('PUT', '/collections/tel_b', { vectors: { size: 2, distance: 'Dot' } }, { headers: root });
    const full = await srv.ok('GET', '/telemetry', undefined, { headers: root });
    const names = full.collections.collections.map((c) => c.id);
    assert.ok(names.includes('tel_a') && names.includes('tel_b'));
    assert.ok(full.requests.rest['GET /telemetry'] || full.requests.rest['PUT /collections/{name}'], 'root sees request stats');
    assert.ok(full.memory.resident_bytes > 0);
    const tok = jwt({ access: [{ collection: 'tel_a', access: 'r' }] });
    const scoped = await srv.ok('GET', '/telemetry', undefined, { headers: { 'api-key': tok } });
    assert.deepEqual(scoped.collections.collections.map((c) => c.id), ['tel_a']);
    assert.equal(scoped.collections.number_of_collections, 1);
    assert.equal(scoped.requests, undefined);
    assert.equal(scoped.memory, undefined);
    const none = await srv.ok('GET', '/telemetry', undefined, { headers: { 'api-key': jwt({ sub: 'nobody' }) } });
    assert.equal(none.collections.number_of_collections, 0);
    // /metrics stays global-read only
    assert.equal((await srv.request('GET', '/metrics', undefined, { headers: { 'api-key': tok } })).status, 403);
  });
});

describe('CORS narrowed to an allowlist', () => {
  let srv;
  before(async () => {
    srv = await startServer({ insecure: false, env: keyEnv({ AEGIS__SERVICE__CORS_ALLOWED_ORIGINS: 'https://ok.example, http://127.0.0.1:9999' }) });
  });
  after(() => srv?.cleanup());

  test('an allowed origin is echoed; any other gets no CORS headers and a refused preflight', async () => {
    const ok = await srv.request('OPTIONS', '/collections/x/points/search', undefined, { headers: { origin: 'https://ok.example', 'access-control-request-method': 'POST' } });
    assert.equal(ok.status, 204);
    assert.equal(ok.headers['access-control-allow-origin'], 'https://ok.example');
    assert.equal(ok.headers.vary, 'Origin');
    const bad = await srv.request('OPTIONS', '/collections', undefined, { headers: { origin: 'https://evil.example', 'access-control-request-method': 'GET' } });
    assert.equal(bad.status, 403);
    assert.equal(bad.headers['access-control-allow-origin'], undefined);
    const real = await srv.request('GET', '/collections', undefined, { headers: { ...root, origin: 'https://evil.example' } });
    assert.equal(real.status, 200);
    assert.equal(real.headers['access-control-allow-origin'], undefined, 'never reflected for an origin not on the list');
    assert.equal(real.headers.vary, 'Origin', 'caches keep answers to different origins apart');
    assert.equal(real.headers['access-control-allow-credentials'], undefined);
    const good = await srv.request('GET', '/collections', undefined, { headers: { ...root, origin: 'http://127.0.0.1:9999' } });
    assert.equal(good.headers['access-control-allow-origin'], 'http://127.0.0.1:9999');
  });
});

describe('CORS settings', () => {
  test('off: no CORS headers, OPTIONS is not a method of the API', async () => {
    const srv = await startServer({ env: { AEGIS__SERVICE__ENABLE_CORS: 'false' } });
    try {
      const r = await srv.request('GET', '/collections', undefined, { headers: { origin: 'https://a.example' } });
      assert.equal(r.headers['access-control-allow-origin'], undefined);
      const pre = await srv.request('OPTIONS', '/collections', undefined, { headers: { origin: 'https://a.example', 'access-control-request-method': 'GET' } });
      assert.equal(pre.status, 405);
    } finally {
      await srv.cleanup();
    }
  });

  test('a malformed origin or a list without CORS stops start-up naming the setting', async () => {
    const { runAegis } = await import('./lib/server.mjs');
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'aegis-cors-'));
    after(() => fs.rmSync(dir, { recursive: true, force: true }));
    const bad = await runAegis(['serve', '--insecure', '--storage', dir, '--port', '1'], {
      env: { AEGIS__SERVICE__CORS_ALLOWED_ORIGINS: 'https://ok.example/path' },
    });
    assert.notEqual(bad.code, 0);
    assert.match(bad.stderr, /service\.cors_allowed_origins/);
    const off = await runAegis(['serve', '--insecure', '--storage', dir, '--port', '1'], {
      env: { AEGIS__SERVICE__ENABLE_CORS: 'false', AEGIS__SERVICE__CORS_ALLOWED_ORIGINS: 'https://ok.example' },
    });
    assert.notEqual(off.code, 0);
    assert.match(off.stderr, /service\.cors_allowed_origins/);
  });
});
