// The direct paths (docs/BENCHMARKS-HISTORY.md "The direct search path", docs/BENCHMARKS.md
// "Ingestion"): a search or query
// body read without a JSON tree and answered as text, and the upsert bodies (records with named
// vectors, the column `batch` form) read straight into floats, must answer exactly as the strict
// path does — same status, same error message, same result values, same stored points — for
// good and hostile bodies alike. Each body is sent as it is (the direct path when it qualifies)
// and with one key spelled with a JSON escape ("v\u0065ctor"), which the direct parsers never
// take, so the strict path answers the same request.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer } from './lib/server.mjs';

let srv;

/** The same body with its first known key's second letter escaped: only the strict path reads it. */
function strictSpelling(body) {
  return body.replace(/"(vector|query|limit|points|batch|ids|filter|params|offset|with_payload|with_vector|score_threshold)"/,
    (m, k) => `"${k[0]}\\u${k.charCodeAt(1).toString(16).padStart(4, '0')}${k.slice(2)}"`);
}

// The escape makes the strict spelling longer: a syntax error's position moves with it.
function strip(json) {
  if (json && typeof json === 'object') delete json.time;
  if (typeof json?.status?.error === 'string')
    json.status.error = json.status.error.replace(/line \d+ column \d+/, 'line ? column ?');
  return json;
}

async function same(method, path, body, label) {
  const slowBody = strictSpelling(body);
  const a = await srv.request(method, path, body);
  const b = await srv.request(method, path, slowBody);
  const what = `${label}: ${body.slice(0, 200)}`;
  assert.equal(a.status, b.status, `${what}\n fast ${a.status} ${a.text.slice(0, 300)}\n slow ${b.status} ${b.text.slice(0, 300)}`);
  assert.match(a.headers['content-type'] ?? '', /^application\/json/, what);
  assert.deepEqual(strip(a.json), strip(b.json), what);
  return a;
}

const V4 = [0.5, -0.25, 0.125, 1];

before(async () => {
  srv = await startServer();
  for (const [name, cfg] of [
    ['cos', { vectors: { size: 4, distance: 'Cosine' } }],
    ['euc', { vectors: { size: 4, distance: 'Euclid' } }],
    ['named', { vectors: { a: { size: 4, distance: 'Dot' }, b: { size: 2, distance: 'Cosine' } } }],
    ['f16', { vectors: { size: 4, distance: 'Dot', datatype: 'float16' } }],
  ]) await srv.ok('PUT', `/collections/${name}`, cfg);
  const pts = [];
  for (let i = 0; i < 60; i++)
    pts.push({ id: i % 7 === 0 ? `00000000-0000-4000-8000-${String(i).padStart(12, '0')}` : i,
      vector: [Math.sin(i), Math.cos(i * 1.3), (i % 5) - 2, 0.1 * i],
      payload: i % 3 ? { k: i % 4, s: `t${i}`, big: 18446744073709551615n.toString() } : undefined });
  pts.push({ id: 18446744073709551615n.toString(), vector: [1, 1, 1, 1], payload: { k: 1 } });
  for (const c of ['cos', 'euc', 'f16']) {
    const body = JSON.stringify({ points: pts }).replace('"id":"18446744073709551615"', '"id":18446744073709551615');
    const r = await srv.request('PUT', `/collections/${c}/points?wait=true`, body);
    assert.equal(r.status, 200, r.text);
  }
});

after(async () => {
  await srv?.cleanup();
});

const searchBodies = [
  '{"vector":[0.5,-0.25,0.125,1]}',
  '{"vector":[0.5,-0.25,0.125,1],"limit":5}',
  ' { "limit" : 3 , "vector" : [ 1e0 , -2.5E-1 , 0.125 , 1 ] } ',
  '{"vector":[0.5,-0.25,0.125,1],"limit":7,"offset":3,"with_payload":true,"with_vector":true}',
  '{"vector":[0.5,-0.25,0.125,1],"limit":7,"with_payload":false,"with_vector":false}',
  '{"vector":[0.5,-0.25,0.125,1],"params":{"hnsw_ef":16}}',
  '{"vector":[0.5,-0.25,0.125,1],"params":{"exact":true,"hnsw_ef":4},"limit":61}',
  '{"vector":[0.5,-0.25,0.125,1],"score_threshold":0.3,"limit":100}',
  '{"vector":[0.5,-0.25,0.125,1],"score_threshold":2.5,"limit":100}',
  '{"vector":[0.5,-0.25,0.125,1],"filter":{"must":[{"key":"k","match":{"value":1}}]},"with_payload":true}',
  '{"vector":[0.5,-0.25,0.125,1],"filter":{"should":[{"key":"s","match":{"any":["t1","t2"]}}]},"limit":3}',
  '{"vector":[0.5,-0.25,0.125,1],"filter":{}}',
  '{"vector":[0.5,-0.25,0.125,1],"limit":1000000,"offset":0}',
  '{"vector":[0.5,-0.25,0.125,1],"limit":100000000000000000}',
  // hostile or wrong: the answer must be the strict path's
  '{"vector":[0.5,-0.25,0.125]}',
  '{"vector":[0.5,-0.25,0.125,1,2]}',
  '{"vector":[0.5,-0.25,0.125,1e39]}',
  '{"vector":[0.5,-0.25,0.125,NaN]}',
  '{"vector":[0.5,-0.25,0.125,01]}',
  '{"vector":[0.5,-0.25,0.125,1],"limit":0}',
  '{"vector":[0.5,-0.25,0.125,1],"limit":-1}',
  '{"vector":[0.5,-0.25,0.125,1],"limit":1.5}',
  '{"vector":[0.5,-0.25,0.125,1],"limit":"3"}',
  '{"vector":[0.5,-0.25,0.125,1],"limit":18446744073709551616}',
  '{"vector":[0.5,-0.25,0.125,1],"offset":1000001}',
  '{"vector":[0.5,-0.25,0.125,1],"limit":100000,"offset":1000000}',
  '{"vector":[0.5,-0.25,0.125,1],"limit":3,"limit":4}',
  '{"vector":[0.5,-0.25,0.125,1],"vector":[0.5,-0.25,0.125,1]}',
  '{"vector":[0.5,-0.25,0.125,1],"params":{"hnsw_ef":0}}',
  '{"vector":[0.5,-0.25,0.125,1],"params":{"hnsw_ef":4294967296}}',
  '{"vector":[0.5,-0.25,0.125,1],"params":{"exact":1}}',
  '{"vector":[0.5,-0.25,0.125,1],"params":{}}',
  '{"vector":[0.5,-0.25,0.125,1],"params":{"exact":true,"exact":false}}',
  '{"vector":[0.5,-0.25,0.125,1],"with_payload":"yes"}',
  '{"vector":[0.5,-0.25,0.125,1],"with_payload":["s"]}',
  '{"vector":[0.5,-0.25,0.125,1],"score_threshold":1e40}',
  '{"vector":[0.5,-0.25,0.125,1],"score_threshold":null}',
  '{"vector":[0.5,-0.25,0.125,1],"filter":{"must":[{"key":"k","matc":{"value":1}}]}}',
  '{"vector":[0.5,-0.25,0.125,1],"filter":{"must":[{"key":"k","match":{"value":1}}],"must":[]}}',
  '{"vector":[0.5,-0.25,0.125,1],"filter":[1]}',
  '{"vector":[0.5,-0.25,0.125,1],"filter":{"must":[{"key":"k","match":{"value":1}}]',
  '{"vector":[0.5,-0.25,0.125,1],"unknown":1}',
  '{"vector":[0.5,-0.25,0.125,1],"timeout":0}',
  '{"vector":[0.5,-0.25,0.125,1]} trailing',
  '{"vector":[0.5,-0.25,0.125,1],}',
  '{"vector":[0.5,-0.25,0.125,1]',
  '{"vector":{"name":"a","vector":[1,2,3,4]}}',
  '{"vector":[[0.5,-0.25,0.125,1]]}',
  '{"vector":[]}',
  '{}',
  '[]',
  '{"limit":3}',
  '{"vector":[0.5,-0.25,0.125,1],"with_vectors":true}',
  '{"vector":[0.5,-0.25,0.125,1],"score_threshold":0.5,"with_payload":true,"offset":2,"limit":4,"params":{"hnsw_ef":8,"exact":false},"filter":{"must_not":[{"key":"k","match":{"value":2}}]},"with_vector":true}',
];

test('search: the direct path answers as the strict path, good and hostile bodies', async () => {
  for (const c of ['cos', 'euc', 'named', 'f16'])
    for (const body of searchBodies) await same('POST', `/collections/${c}/points/search`, body, `search ${c}`);
  // The answer really is a list of hits with the values the tree would give.
  const r = await same('POST', '/collections/cos/points/search', '{"vector":[0.5,-0.25,0.125,1],"limit":61,"with_payload":true}', 'all');
  assert.equal(r.json.result.length, 61);
  assert.ok(r.json.result.some((h) => h.id === '00000000-0000-4000-8000-000000000007'));
  assert.ok(r.text.includes('"id":18446744073709551615,'), 'a u64 id as bare digits');
  assert.ok(r.text.includes('"big":"18446744073709551615"'), 'payload strings untouched');
  for (let i = 1; i < r.json.result.length; i++) assert.ok(r.json.result[i - 1].score >= r.json.result[i].score);
});

test('query: the direct path answers as the strict path', async () => {
  for (const c of ['cos', 'euc', 'named', 'f16'])
    for (const body of searchBodies) {
      const q = body.replace(/"vector":\[/g, '"query":[').replace('"vector":{', '"query":{');
      await same('POST', `/collections/${c}/points/query`, q, `query ${c}`);
    }
});

test('search through an alias and with a missing collection', async () => {
  await srv.ok('POST', '/collections/aliases', { actions: [{ create_alias: { collection_name: 'cos', alias_name: 'cos_alias' } }] });
  await same('POST', '/collections/cos_alias/points/search', '{"vector":[0.5,-0.25,0.125,1],"limit":4}', 'alias');
  await same('POST', '/collections/nope/points/search', '{"vector":[0.5,-0.25,0.125,1],"limit":4}', 'missing');
});

/** Both spellings of an upsert into two fresh collections of the same config: same answer, same points. */
async function sameUpsert(cfg, body, label) {
  const n = `u_${Math.random().toString(36).slice(2, 8)}`;
  await srv.ok('PUT', `/collections/${n}_f`, cfg);
  await srv.ok('PUT', `/collections/${n}_s`, cfg);
  const a = await srv.request('PUT', `/collections/${n}_f/points?wait=true`, body);
  const b = await srv.request('PUT', `/collections/${n}_s/points?wait=true`, strictSpelling(body));
  const what = `${label}: ${body.slice(0, 200)}`;
  assert.equal(a.status, b.status, `${what}\n fast ${a.text.slice(0, 300)}\n slow ${b.text.slice(0, 300)}`);
  if (a.status !== 200) assert.deepEqual(strip(a.json), strip(b.json), what);
  const scroll = { limit: 1000, with_payload: true, with_vector: true };
  const pa = await srv.ok('POST', `/collections/${n}_f/points/scroll`, scroll);
  const pb = await srv.ok('POST', `/collections/${n}_s/points/scroll`, scroll);
  assert.deepEqual(pa, pb, what);
  await srv.ok('DELETE', `/collections/${n}_f`);
  await srv.ok('DELETE', `/collections/${n}_s`);
  return pa;
}

const NAMED = { vectors: { a: { size: 3, distance: 'Cosine' }, b: { size: 2, distance: 'Euclid' } } };
const PLAIN = { vectors: { size: 3, distance: 'Cosine' } };

test('upsert: named vectors and the batch form store what the strict path stores', async () => {
  const good = [
    [NAMED, '{"points":[{"id":1,"vector":{"a":[1,2,3],"b":[0.5,0.25]},"payload":{"x":1}},{"id":2,"vector":{"b":[1,1]}},{"vector":{"a":[3,2,1]},"id":"00000000-0000-4000-8000-000000000001"}]}'],
    [NAMED, '{"batch":{"ids":[1,2,3],"vectors":{"a":[[1,2,3],[0.1,0.2,0.3],[3,2,1e-3]],"b":[[1,2],[3,4],[5,6]]},"payloads":[{"p":1},null,{"q":[1,2]}]}}'],
    [NAMED, '{"batch":{"vectors":{"b":[[1,2],[3,4]]},"ids":[7,8]}}'],
    [PLAIN, '{"batch":{"ids":[1,2,18446744073709551615],"vectors":[[1,2,3],[-1,-2,-3.5],[0.25,0,1]],"payloads":null}}'],
    [PLAIN, '{"batch":{"payloads":[{"a":"b"},{}],"vectors":[[1,2,3],[4,5,6]],"ids":[1,1]}}'],
  ];
  for (const [cfg, body] of good) {
    const pts = await sameUpsert(cfg, body, 'upsert');
    assert.ok(pts.points.length > 0, body);
  }
  const bad = [
    [NAMED, '{"points":[{"id":1,"vector":{"a":[1,2,3],"c":[1]}}]}'],
    [NAMED, '{"points":[{"id":1,"vector":{"a":[1,2]}}]}'],
    [NAMED, '{"points":[{"id":1,"vector":{"a":[1,2,3],"a":[1,2,3]}}]}'],
    [NAMED, '{"points":[{"id":1,"vector":[1,2,3]}]}'],
    [NAMED, '{"points":[{"id":1,"vector":{}}]}'],
    [NAMED, '{"batch":{"ids":[1,2],"vectors":{"a":[[1,2,3]]}}}'],
    [NAMED, '{"batch":{"ids":[1],"vectors":{"zz":[[1,2,3]]}}}'],
    [NAMED, '{"batch":{"ids":[1],"vectors":{"a":[null]}}}'],
    [PLAIN, '{"batch":{"ids":[1,2],"vectors":[[1,2,3]]}}'],
    [PLAIN, '{"batch":{"ids":[1],"vectors":[[1,2,3]],"payloads":[]}}'],
    [PLAIN, '{"batch":{"ids":[1],"vectors":[[1,2,3]],"payloads":[1]}}'],
    [PLAIN, '{"batch":{"ids":[1],"vectors":[[1,2,3]],"payloads":[{"a":1,"a":2}]}}'],
    [PLAIN, '{"batch":{"ids":[-1],"vectors":[[1,2,3]]}}'],
    [PLAIN, '{"batch":{"ids":["12"],"vectors":[[1,2,3]]}}'],
    [PLAIN, '{"batch":{"ids":[1],"vectors":[[1,2,1e39]]}}'],
    [PLAIN, '{"batch":{"ids":[1]}}'],
    [PLAIN, '{"batch":{"vectors":[[1,2,3]]}}'],
    [PLAIN, '{"batch":{"ids":[1],"vectors":[[1,2,3]]},"points":[]}'],
    [PLAIN, '{"batch":{"ids":[],"vectors":[]}}'],
    [PLAIN, '{"batch":{"ids":[1],"ids":[2],"vectors":[[1,2,3]]}}'],
    [PLAIN, '{"batch":{"ids":[1],"vectors":[[1,2,3]],"extra":1}}'],
    [PLAIN, '{"batch":{"ids":[1],"vectors":[[1,2,3]]}} x'],
  ];
  for (const [cfg, body] of bad) await sameUpsert(cfg, body, 'bad upsert');
});
