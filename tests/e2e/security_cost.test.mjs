// Request cost (docs/SECURITY.md "Request cost"): a request's work is bounded
// whoever sends it. A deadline (`timeout`, capped by service.max_request_timeout_sec) ends slow
// reads with 408; work that multiplies is refused up front with 400 naming the field; a huge
// match.any list is refused before it becomes a JSON tree (resident memory stays put); health
// probes answer while every request worker is busy; and a restricted count examines only the
// points in scope (a counter in /metrics, not a stopwatch, decides).
//
// The server runs with two request workers and a 2 s cap so that slow requests are cheap to make
// and end quickly, also under the sanitizer build.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { after, before, describe, test } from 'node:test';

import { RO_KEY, ROOT_KEY, jwt, keyEnv } from './lib/auth.mjs';
import { SLOW, TIME_SCALE, runAegis, startServer } from './lib/server.mjs';

const COLL = 'cost';
const DIM = 128;
const N = 20_000; // points; tenant "a" holds IN_SCOPE of them
const IN_SCOPE = 100;
const CAP_S = 2; // service.max_request_timeout_sec for this server
const WORKERS = 2;

let srv;
const root = { 'api-key': ROOT_KEY };
const ro = { 'api-key': RO_KEY };

function vec(i) {
  const v = new Array(DIM);
  for (let d = 0; d < DIM; d++) v[d] = Math.round(Math.sin(i * 0.37 + d * 1.3) * 100) / 100;
  return v;
}

const range = (n, from = 1) => Array.from({ length: n }, (_, i) => i + from);

// A recommend batch whose cost is examples x points: ten requests of a thousand examples each
// (the request budget) over N points take seconds, far longer than the 1-2 s deadlines used here.
function slowBatch() {
  return {
    searches: range(10).map((k) => ({
      positive: range(500, k * 500 + 1),
      negative: range(500, k * 500 + 5001),
      strategy: 'best_score',
      limit: 5,
    })),
  };
}

async function rssKb() {
  const status = fs.readFileSync(`/proc/${srv.proc.pid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+)\s+kB/.exec(status)[1]);
}

async function examined() {
  const r = await srv.request('GET', '/metrics', undefined, { headers: root });
  assert.equal(r.status, 200, r.text);
  const m = /^points_examined_total (\d+)$/m.exec(r.text);
  assert.ok(m, `points_examined_total missing from /metrics:\n${r.text}`);
  return Number(m[1]);
}

function assertRefused(r, field, what) {
  assert.equal(r.status, 400, `${what}: ${r.status} ${r.text.slice(0, 300)}`);
  assert.equal(typeof r.json?.status?.error, 'string', `${what}: Qdrant error envelope`);
  assert.ok(r.json.status.error.includes(field), `${what}: error should name ${field}: ${r.json.status.error}`);
}

before(async () => {
  srv = await startServer({
    insecure: false,
    env: keyEnv({
      AEGIS__SERVICE__MAX_WORKERS: String(WORKERS),
      AEGIS__SERVICE__MAX_REQUEST_TIMEOUT_SEC: String(CAP_S),
      AEGIS__SERVICE__ACCESS_LOG: 'false',
    }),
  });
  await srv.ok('PUT', `/collections/${COLL}`, { vectors: { size: DIM, distance: 'Dot' } }, { headers: root });
  for (let start = 1; start <= N; start += 5000) {
    const points = range(5000, start).map((id) => ({
      id,
      vector: vec(id),
      payload: { tenant: id <= IN_SCOPE ? 'a' : 'b', color: 'red' },
    }));
    await srv.ok('PUT', `/collections/${COLL}/points?wait=true`, { points }, { headers: root });
  }
  for (const field_name of ['tenant', 'color'])
    await srv.ok('PUT', `/collections/${COLL}/index?wait=true`, { field_name, field_schema: 'keyword' }, { headers: root });
});

after(async () => {
  await srv?.cleanup();
});

describe('deadline', () => {
  test('timeout=1 ends a slow recommend batch with 408 and Qdrant\'s error envelope', async () => {
    const t0 = Date.now();
    const r = await srv.request('POST', `/collections/${COLL}/points/recommend/batch?timeout=1`, slowBatch(), { headers: ro });
    const ms = Date.now() - t0;
    assert.equal(r.status, 408, `${r.status} ${r.text.slice(0, 300)}`);
    assert.equal(typeof r.json?.status?.error, 'string');
    assert.match(r.json.status.error, /[Tt]imeout/);
    assert.ok(ms < 1000 + 1500 * TIME_SCALE, `answered after ${ms} ms`);
  });

  test('a timeout above service.max_request_timeout_sec is capped by it', async () => {
    const t0 = Date.now();
    const r = await srv.request('POST', `/collections/${COLL}/points/recommend/batch?timeout=3600`, slowBatch(), { headers: ro });
    const ms = Date.now() - t0;
    assert.equal(r.status, 408, `${r.status} ${r.text.slice(0, 300)}`);
    assert.ok(ms < CAP_S * 1000 + 1500 * TIME_SCALE, `answered after ${ms} ms`);
  });

  test('a bad timeout is refused with 400 naming timeout (query parameter and body field)', async () => {
    for (const t of ['0', '-1', 'abc', '1.5', '', '1e3']) {
      const r = await srv.request('POST', `/collections/${COLL}/points/count?timeout=${t}`, { exact: true }, { headers: ro });
      assertRefused(r, 'timeout', `timeout=${t}`);
    }
    const r = await srv.request('POST', `/collections/${COLL}/points/search`, { vector: vec(1), limit: 1, timeout: 0 }, { headers: ro });
    assertRefused(r, 'timeout', 'body timeout 0');
    const ok = await srv.request('POST', `/collections/${COLL}/points/count?timeout=5`, { exact: true }, { headers: ro });
    assert.equal(ok.status, 200, ok.text);
  });

  test('service.max_request_timeout_sec must be at least 1', async () => {
    const r = await runAegis(['serve', '--insecure', '--storage', '/nonexistent-aegis-storage', '--port', '0'], {
      env: { AEGIS__SERVICE__MAX_REQUEST_TIMEOUT_SEC: '0' },
    });
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /service\.max_request_timeout_sec: expected an integer from 1/);
  });
});

describe('budgets for work that multiplies', () => {
  const post = (path, body) => srv.request('POST', `/collections/${COLL}/points/${path}`, body, { headers: ro });

  test('recommend: at most 1000 positive and negative examples together', async () => {
    assertRefused(await post('recommend', { positive: range(600), negative: range(600, 601), limit: 1 }), 'positive', '1200 examples');
    const q = { query: { recommend: { positive: range(700), negative: range(400, 701) } }, limit: 1 };
    assertRefused(await post('query', q), 'recommend', 'query.recommend with 1100 examples');
  });

  test('batches: examples, queries with prefetches and results add up to bounded totals', async () => {
    const examples = { searches: range(11).map((k) => ({ positive: range(1000, k * 1000 + 1), limit: 1 })) };
    assertRefused(await post('recommend/batch', examples), 'searches', '11,000 examples in one batch');
    const results = { searches: range(20).map(() => ({ vector: vec(1), limit: 100_000 })) };
    assertRefused(await post('search/batch', results), 'searches', 'limit x batch of 2,000,000');
    const prefetch = (n) => range(n).map(() => ({ query: vec(2), limit: 10 }));
    const stages = { searches: range(20).map(() => ({ prefetch: prefetch(600), query: { fusion: 'rrf' } })) };
    assertRefused(await post('query/batch', stages), 'searches', '12,000 queries and prefetches');
    const deep = { prefetch: range(100).map(() => ({ query: vec(3), limit: 100_000 })), query: { fusion: 'rrf' } };
    assertRefused(await post('query', deep), 'limit', 'prefetch limits adding up to 10,000,000');
    const tooMany = { searches: range(1001).map(() => ({ vector: vec(1), limit: 1 })) };
    assertRefused(await post('search/batch', tooMany), 'searches', '1001 searches');
  });

  test('filters: match.any / match.except lists, conditions and values are bounded', async () => {
    const big = range(10_001);
    const any = { filter: { must: [{ key: 'color', match: { any: big.map(String) } }] } };
    assertRefused(await post('count', any), 'match.any', 'any of 10,001');
    const except = { filter: { must: [{ key: 'color', match: { except: big.map(String) } }] } };
    assertRefused(await post('scroll', except), 'match.except', 'except of 10,001');
    const conds = { filter: { should: range(10_001).map((i) => ({ key: 'color', match: { value: `c${i}` } })) } };
    assertRefused(await post('count', conds), 'conditions', '10,001 conditions');
    const values = { filter: { should: range(11).map(() => ({ key: 'color', match: { any: range(10_000).map(String) } })) } };
    assertRefused(await post('count', values), 'values', '110,000 values in one filter');
    // Just inside the limits is fine.
    const fine = { filter: { must: [{ key: 'color', match: { any: range(10_000).map((i) => (i === 1 ? 'red' : `c${i}`)) } }] }, exact: true };
    const r = await post('count', fine);
    assert.equal(r.status, 200, r.text.slice(0, 300));
    assert.equal(r.json.result.count, N);
  });

  test('a 15 MB match.any body is refused before parsing: resident memory stays bounded', async () => {
    const ids = Array.from({ length: 1_900_000 }, (_, i) => 1_000_000 + i);
    const body = `{"filter":{"must":[{"key":"color","match":{"any":[${ids.join(',')}]}}]},"exact":true}`;
    assert.ok(body.length > 15_000_000, `body is ${body.length} bytes`);
    const before = await rssKb();
    for (let i = 0; i < 3; i++) {
      const r = await post('count', body);
      assertRefused(r, 'match.any', 'a 15 MB any-list');
    }
    const afterKb = await rssKb();
    const grewMb = (afterKb - before) / 1024;
    console.log(`# RSS before ${(before / 1024).toFixed(1)} MB, after three 15 MB any-lists ${(afterKb / 1024).toFixed(1)} MB (+${grewMb.toFixed(1)} MB)`);
    // Parsed, each body would become a JSON tree of ~1.9 million values (about 380 MB). The body
    // buffers themselves are freed and trimmed; under AddressSanitizer freed memory sits in its
    // quarantine instead, so there the three 15 MB buffers may still count.
    const limitMb = SLOW ? 120 : 48;
    assert.ok(grewMb < limitMb, `resident memory grew by ${grewMb.toFixed(1)} MB`);
  });
});

describe('health probes', () => {
  test('/healthz, /livez and /readyz answer while every worker is busy with slow requests', async () => {
    // Twice as many slow requests as workers, each on its own connection, started a little apart
    // so that every network thread has taken one (several connections arriving at once may all be
    // accepted by one thread).
    const slow = [];
    let slowDone = 0;
    for (let i = 0; i < 2 * WORKERS; i++) {
      const p = srv.request('POST', `/collections/${COLL}/points/recommend/batch?timeout=${CAP_S}`, slowBatch(), { headers: ro, agent: false });
      p.then(() => slowDone++, () => slowDone++);
      slow.push(p);
      await new Promise((r) => setTimeout(r, 60));
    }
    await new Promise((r) => setTimeout(r, 100));
    const times = [];
    for (const path of ['/healthz', '/livez', '/readyz', '/healthz', '/healthz']) {
      const t0 = process.hrtime.bigint();
      const r = await srv.request('GET', path, undefined, { agent: false, timeoutMs: 10_000 });
      times.push(Number(process.hrtime.bigint() - t0) / 1e6);
      assert.equal(r.status, 200, `${path}: ${r.status}`);
    }
    const busy = slowDone;
    const answers = await Promise.all(slow);
    console.log(`# probe latency while busy (ms): ${times.map((t) => t.toFixed(1)).join(', ')}; slow answers ${answers.map((a) => a.status).join(',')}`);
    assert.equal(busy, 0, 'the slow requests were still running while the probes were answered');
    for (const t of times) assert.ok(t < 500, `a probe took ${t.toFixed(1)} ms`);
    for (const a of answers) assert.ok(a.status === 408 || a.status === 200, `slow request: ${a.status}`);
  });
});

describe('row restriction and payload-index candidates', () => {
  test('a restricted count examines only in-scope points, not every match of the filter', async () => {
    const token = jwt({ access: [{ collection: COLL, access: 'r', payload: { tenant: 'a' } }] });
    const as = { authorization: `Bearer ${token}` };
    const filter = { must: [{ key: 'color', match: { value: 'red' } }] };
    const n0 = await examined();
    const t0 = process.hrtime.bigint();
    const r = await srv.request('POST', `/collections/${COLL}/points/count`, { filter, exact: true }, { headers: as });
    const ms = Number(process.hrtime.bigint() - t0) / 1e6;
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.result.count, IN_SCOPE);
    const n1 = await examined();
    console.log(`# restricted count: ${n1 - n0} points examined for ${IN_SCOPE} in scope (${N} match the filter), ${ms.toFixed(2)} ms`);
    assert.ok(n1 - n0 <= IN_SCOPE, `examined ${n1 - n0} points for ${IN_SCOPE} in scope`);
    // Without a filter the restriction alone narrows the scan too; facet and delete use it as well.
    const n2 = await examined();
    const c2 = await srv.request('POST', `/collections/${COLL}/points/count`, { exact: true }, { headers: as });
    assert.equal(c2.json.result.count, IN_SCOPE);
    const f = await srv.request('POST', `/collections/${COLL}/facet`, { key: 'color' }, { headers: as });
    assert.equal(f.status, 200, f.text);
    assert.deepEqual(f.json.result.hits, [{ value: 'red', count: IN_SCOPE }]);
    const n3 = await examined();
    assert.ok(n3 - n2 <= 2 * IN_SCOPE, `count + facet examined ${n3 - n2} points`);
    // Scroll pages through the in-scope points in id order, examining only candidates in scope.
    const seen = [];
    let offset = null;
    const n4 = await examined();
    for (let page = 0; page < 10; page++) {
      const body = { filter, limit: 30, with_payload: false, ...(offset === null ? {} : { offset }) };
      const sr = await srv.request('POST', `/collections/${COLL}/points/scroll`, body, { headers: as });
      assert.equal(sr.status, 200, sr.text);
      seen.push(...sr.json.result.points.map((p) => p.id));
      offset = sr.json.result.next_page_offset;
      if (offset === null) break;
    }
    const n5 = await examined();
    assert.deepEqual(seen, range(IN_SCOPE));
    assert.ok(n5 - n4 <= 4 * IN_SCOPE, `four scroll pages examined ${n5 - n4} points`);
  });
});
