// Malformed input: every bad body, type, field, number, id and name gets the right 4xx with a
// JSON message naming the culprit, and writes nothing (the collection's full contents and the
// list of collections are compared before and after each rejected request).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { startServer } from './lib/server.mjs';

let srv;
const C = 'bad';
const UPSERT = `/collections/${C}/points?wait=true`;

async function snapshot() {
  const pts = await srv.ok('POST', `/collections/${C}/points/scroll`, { limit: 10_000, with_payload: true, with_vector: true });
  const list = await srv.ok('GET', '/collections');
  return JSON.stringify({ pts, collections: list.collections.map((c) => c.name).sort() });
}

/**
 * Sends a bad request and checks: status in `statuses`, JSON error envelope, the message matches
 * `names` (the field or the problem), and nothing changed on the server.
 */
async function rejects(method, urlPath, body, { statuses = [400, 422], names, label }) {
  const before = await snapshot();
  const r = await srv.request(method, urlPath, body);
  const what = `${label ?? ''} ${method} ${urlPath} ${typeof body === 'string' ? body.slice(0, 160) : JSON.stringify(body)?.slice(0, 160)}`;
  assert.ok(statuses.includes(r.status), `${what}\n -> ${r.status} ${r.text.slice(0, 300)} (want ${statuses})`);
  assert.match(r.headers['content-type'] ?? '', /^application\/json/, `${what}: content-type`);
  assert.equal(typeof r.json?.status?.error, 'string', `${what}: JSON status.error in ${r.text.slice(0, 300)}`);
  if (names) assert.match(r.json.status.error, names, `${what}: the message should name the problem`);
  const after = await snapshot();
  assert.equal(after, before, `${what}: the server state changed`);
  return r;
}

before(async () => {
  srv = await startServer();
  await srv.ok('PUT', `/collections/${C}`, { vectors: { size: 4, distance: 'Dot' } });
  await srv.ok('PUT', UPSERT, {
    points: [
      { id: 1, vector: [1, 0, 0, 0], payload: { a: 1 } },
      { id: 2, vector: [0, 1, 0, 0], payload: { a: 2, s: 'x' } },
      { id: 3, vector: [0, 0, 1, 0] },
    ],
  });
});

after(async () => {
  await srv?.cleanup();
});

const V = [0.5, 0.25, 0.125, 1];

test('invalid JSON and trailing garbage -> 400 with a position', async () => {
  for (const body of ['{"points": [', '{"points": [}', '{points: []}', "{'points': []}", '', '[1,2', '{"points":[]} xyz', '{"points":[]}{}', '\u0000']) {
    if (body === '') continue; // an empty body is handled by the wrong-type cases
    await rejects('PUT', UPSERT, body, { statuses: [400], names: /json|parse|line|column|position|offset|syntax|garbage|end/i, label: 'bad JSON' });
  }
});

test('duplicate keys are rejected, naming the key', async () => {
  await rejects('PUT', UPSERT, '{"points":[{"id":50,"id":51,"vector":[1,2,3,4]}]}', { names: /duplicate|id/i });
  await rejects('PUT', UPSERT, '{"points":[{"id":50,"vector":[1,2,3,4]}],"points":[]}', { names: /duplicate|points/i });
  await rejects('PUT', UPSERT, '{"points":[{"id":50,"vector":[1,2,3,4],"payload":{"k":1,"k":2}}]}', { names: /duplicate|k\b/i });
});

test('wrong types name the field', async () => {
  const cases = [
    [{ points: { id: 50, vector: V } }, /points/],
    [{ points: [{ id: 50, vector: 'abc' }] }, /vector/],
    [{ points: [{ id: 50, vector: [1, '2', 3, 4] }] }, /vector/],
    [{ points: [{ id: 50, vector: [1, null, 3, 4] }] }, /vector/],
    [{ points: [{ id: true, vector: V }] }, /id/],
    [{ points: [{ id: 1.5, vector: V }] }, /id/],
    [{ points: [{ id: { n: 1 }, vector: V }] }, /id/],
    [{ points: [{ id: 50, vector: V, payload: [1, 2] }] }, /payload/],
    [{ points: [{ id: 50, vector: V, payload: 'x' }] }, /payload/],
    [{ batch: { ids: [50], vectors: 'x' } }, /vectors/],
    [{ batch: { ids: 50, vectors: [V] } }, /ids/],
    ['[]', /body|object|points|batch/i],
    ['"points"', /body|object|points|batch/i],
    ['{}', /points|batch/],
  ];
  for (const [body, names] of cases) await rejects('PUT', UPSERT, body, { names });
  await rejects('POST', `/collections/${C}/points/scroll`, { limit: 'ten' }, { names: /limit/ });
  await rejects('POST', `/collections/${C}/points/scroll`, { limit: -1 }, { names: /limit/ });
  await rejects('POST', `/collections/${C}/points/count`, { exact: 'yes' }, { names: /exact/ });
  await rejects('POST', `/collections/${C}/points/count`, { filter: { must: { key: 'a' } } }, { names: /must|match|condition|filter/i });
  await rejects('POST', `/collections/${C}/points/payload?wait=true`, { payload: [1], points: [1] }, { names: /payload/ });
  await rejects('POST', `/collections/${C}/points/payload?wait=true`, { payload: { z: 1 }, points: 'all' }, { names: /points/ });
  await rejects('POST', `/collections/${C}/points/delete?wait=true`, { points: ['x'] }, { names: /points|id/ });
  await rejects('PUT', `/collections/${C}/points/vectors?wait=true`, { points: [{ id: 1, vector: [1, 2] }] }, { names: /vector|dim/i });
  await rejects('PUT', '/collections/newcoll', { vectors: { size: 'four', distance: 'Dot' } }, { names: /size/ });
  await rejects('PUT', '/collections/newcoll', { vectors: { size: 4, distance: 'Cosinus' } }, { names: /distance|Cosinus/ });
  await rejects('PUT', '/collections/newcoll', { vectors: { size: 0, distance: 'Dot' } }, { names: /size/ });
  await rejects('PUT', '/collections/newcoll', { vectors: { size: 70000, distance: 'Dot' } }, { names: /size|dimension/i });
});

test('unknown fields are rejected, top level and nested, naming the field', async () => {
  await rejects('PUT', UPSERT, { points: [{ id: 50, vector: V }], bogus: 1 }, { names: /bogus/ });
  await rejects('PUT', UPSERT, { points: [{ id: 50, vector: V, extra: 1 }] }, { names: /extra/ });
  await rejects('PUT', UPSERT, { batch: { ids: [50], vectors: [V], colour: [] } }, { names: /colour/ });
  await rejects('POST', `/collections/${C}/points/count`, { filter: { must: [{ key: 'a', match: { value: 1, zzz: 2 } }] } }, { names: /zzz/ });
  await rejects('POST', `/collections/${C}/points/count`, { filter: { musts: [] } }, { names: /musts/ });
  await rejects('POST', `/collections/${C}/points/scroll`, { limit: 1, wibble: true }, { names: /wibble/ });
  await rejects('PUT', '/collections/newcoll', { vectors: { size: 4, distance: 'Dot', sizee: 3 } }, { names: /sizee/ });
  await rejects('PUT', '/collections/newcoll', { vectors: { size: 4, distance: 'Dot' }, shards: 2 }, { names: /shards/ });
});

test('NaN / Infinity literals and floats that overflow float32 are rejected', async () => {
  for (const lit of ['NaN', 'Infinity', '-Infinity', 'nan', 'inf']) {
    await rejects('PUT', UPSERT, `{"points":[{"id":50,"vector":[${lit},1,2,3]}]}`, { names: /json|vector|nan|inf|invalid|parse/i });
  }
  for (const big of ['1e39', '-1e39', '3.5e38', '1e400']) {
    await rejects('PUT', UPSERT, `{"points":[{"id":50,"vector":[1,${big},2,3]}]}`, { names: /vector|float|range|finite|overflow|json/i });
  }
  // Also in the batch form and in query vectors of reads (no write to check, but must be 4xx).
  await rejects('PUT', UPSERT, '{"batch":{"ids":[50],"vectors":[[1,2,3,1e39]]}}', { names: /vector/ });
  await rejects('PUT', `/collections/${C}/points/vectors?wait=true`, '{"points":[{"id":1,"vector":[1e39,0,0,0]}]}', { names: /vector/ });
});

test('wrong dimension and missing vector are rejected', async () => {
  await rejects('PUT', UPSERT, { points: [{ id: 50, vector: [1, 2, 3] }] }, { names: /vector|dimension|dim|size/i });
  await rejects('PUT', UPSERT, { points: [{ id: 50, vector: [1, 2, 3, 4, 5] }] }, { names: /vector|dimension|dim|size/i });
  await rejects('PUT', UPSERT, { points: [{ id: 50, vector: [] }] }, { names: /vector|dimension|dim|size/i });
  await rejects('PUT', UPSERT, { batch: { ids: [50, 51], vectors: [V, [1, 2]] } }, { names: /vector|dimension|dim|size/i });
  await rejects('PUT', UPSERT, { batch: { ids: [50, 51], vectors: [V] } }, { names: /vectors|ids|length|count|mismatch/i });
  await rejects('PUT', UPSERT, { points: [{ id: 50 }] }, { names: /vector/ });
  await rejects('PUT', UPSERT, { points: [{ id: 50, payload: { a: 1 } }] }, { names: /vector/ });
  await rejects('PUT', UPSERT, { points: [{ id: 50, vector: null }] }, { names: /vector/ });
  await rejects('PUT', UPSERT, { batch: { ids: [50] } }, { names: /vectors/ });
  await rejects('PUT', UPSERT, { points: [{ vector: V }] }, { names: /id/ });
  await rejects('PUT', UPSERT, { points: [{ id: 50, vector: { nosuch: V } }] }, { names: /vector|nosuch|name/i });
});

test('point ids: numeric strings, negatives, non-UUID strings and overflow are invalid', async () => {
  for (const id of ['"42"', '-1', '-9007199254740993', '18446744073709551616', '1e3', '"not-a-uuid"', '""', '"5c56c793-69f3-4fbf-87e6-c4bf54c28c2"']) {
    await rejects('PUT', UPSERT, `{"points":[{"id":${id},"vector":[1,2,3,4]}]}`, { names: /id/i, label: `id ${id}` });
  }
  const r = await srv.request('GET', `/collections/${C}/points/42abc`);
  assert.ok(r.status === 400 || r.status === 404 || r.status === 422, `GET points/42abc -> ${r.status}`);
  assert.equal(typeof r.json?.status?.error, 'string');
});

test('u64 ids above 2^53 (and payload integers) round-trip exactly', async () => {
  const big = ['9007199254740993', '9223372036854775807', '12345678901234567'];
  const body = `{"points":[${big.map((b, k) => `{"id":${b},"vector":[${k},1,1,1],"payload":{"n":${k === 0 ? '9007199254740993' : k}}}`).join(',')}]}`;
  const up = await srv.request('PUT', UPSERT, body);
  assert.equal(up.status, 200, up.text);
  // JSON.parse would round these: check the raw text.
  const get = await srv.request('GET', `/collections/${C}/points/9007199254740993`);
  assert.equal(get.status, 200, get.text);
  assert.match(get.text, /"id":\s*9007199254740993\b/, get.text);
  assert.match(get.text, /"n":\s*9007199254740993\b/, get.text);
  const ret = await srv.request('POST', `/collections/${C}/points`, `{"ids":[${big.join(',')}],"with_payload":true}`);
  assert.equal(ret.status, 200, ret.text);
  for (const b of big) assert.match(ret.text, new RegExp(`"id":\\s*${b}\\b`), `id ${b} in ${ret.text}`);
  assert.doesNotMatch(ret.text, /"id":\s*9007199254740992\b/);
  const scroll = await srv.request('POST', `/collections/${C}/points/scroll`, '{"limit":100,"with_payload":false}');
  for (const b of big) assert.match(scroll.text, new RegExp(`"id":\\s*${b}\\b`), `scroll lists ${b}`);
  // 2^53 + 1 and 2^53 are different points.
  const neighbour = await srv.request('POST', `/collections/${C}/points`, '{"ids":[9007199254740992]}');
  assert.equal(neighbour.status, 200);
  assert.equal(JSON.parse(neighbour.text).result.length, 0, 'id 2^53 must not alias 2^53+1');
  // Delete by the exact ids.
  const del = await srv.request('POST', `/collections/${C}/points/delete?wait=true`, `{"points":[${big.join(',')}]}`);
  assert.equal(del.status, 200, del.text);
  const left = await srv.request('POST', `/collections/${C}/points`, `{"ids":[${big.join(',')}]}`);
  assert.equal(JSON.parse(left.text).result.length, 0);
});

test('u64 ids from 2^63 up to 2^64-1 are valid point ids and round-trip exactly', async () => {
  const big = ['9223372036854775808', '18446744073709551615', '12345678901234567891'];
  const body = `{"points":[${big.map((b, k) => `{"id":${b},"vector":[${k},1,1,1]}`).join(',')}]}`;
  const up = await srv.request('PUT', UPSERT, body);
  assert.equal(up.status, 200, `upsert ids ${big}: ${up.text}`);
  const ret = await srv.request('POST', `/collections/${C}/points`, `{"ids":[${big.join(',')}]}`);
  assert.equal(ret.status, 200, ret.text);
  for (const b of big) assert.match(ret.text, new RegExp(`"id":\\s*${b}\\b`), `id ${b} in ${ret.text}`);
  const get = await srv.request('GET', `/collections/${C}/points/18446744073709551615`);
  assert.match(get.text, /"id":\s*18446744073709551615\b/, get.text);
  const del = await srv.request('POST', `/collections/${C}/points/delete?wait=true`, `{"points":[${big.join(',')}]}`);
  assert.equal(del.status, 200, del.text);
});

test('bad collection names -> 4xx JSON, nothing created, nothing outside the storage dir', async () => {
  // Names that would escape the storage directory if used as paths.
  const escapes = ['escape', 'escape2', 'evil'].flatMap((n) => [
    path.join(path.dirname(srv.storage), n),
    path.join(path.dirname(path.dirname(srv.storage)), n),
    path.join(srv.storage, '..', n),
  ]);
  const existedBefore = escapes.filter((f) => fs.existsSync(f));
  const names = [
    '..',
    '.',
    '%2e%2e',
    '%2E%2E',
    'a%2Fb',
    '..%2F..%2Fescape',
    '%2e%2e%2fescape2',
    'a%5Cb',
    '%00',
    'a%00b',
    '%01',
    'x%0Ay',
    'x%7Fy',
    'a'.repeat(256),
    '%',
    'a%zz',
  ];
  for (const n of names) {
    for (const [m, p, b] of [
      ['PUT', `/collections/${n}`, { vectors: { size: 4, distance: 'Dot' } }],
      ['GET', `/collections/${n}`],
      ['PUT', `/collections/${n}/points?wait=true`, { points: [{ id: 1, vector: V }] }],
      ['DELETE', `/collections/${n}`],
    ]) {
      await rejects(m, p, b, { statuses: [400, 404, 422], names: n.length > 200 ? /name|long|length/i : undefined, label: `name ${n.slice(0, 20)}` });
    }
  }
  // Aliases are names too.
  await rejects(
    'POST',
    '/collections/aliases',
    { actions: [{ create_alias: { collection_name: C, alias_name: '../evil' } }] },
    { names: /alias|name/i },
  );
  await rejects('POST', '/collections/aliases', { actions: [{ create_alias: { collection_name: C, alias_name: 'a\u0001' } }] }, { names: /alias|name/i });
  await rejects('POST', '/collections/aliases', { actions: [{ create_alias: { collection_name: C, alias_name: 'b'.repeat(256) } }] }, { names: /alias|name/i });
  assert.deepEqual(escapes.filter((f) => fs.existsSync(f)), existedBefore, 'no file was created outside the storage dir');
  // The longest valid name (255 bytes) works.
  const longest = 'n'.repeat(255);
  await srv.ok('PUT', `/collections/${longest}`, { vectors: { size: 4, distance: 'Dot' } });
  assert.equal((await srv.ok('GET', `/collections/${longest}/exists`)).exists, true);
  assert.equal(await srv.ok('DELETE', `/collections/${longest}`), true);
});

test('a batch where only the last point is bad writes none of them', async () => {
  const good = Array.from({ length: 9 }, (_, k) => ({ id: 100 + k, vector: V, payload: { k } }));
  for (const last of [
    { id: 109, vector: [1, 2, 3] },
    { id: 109, vector: [1, 2, 3, 'x'] },
    { id: '109', vector: V },
    { id: 109, vector: V, payload: 7 },
  ]) {
    await rejects('PUT', UPSERT, { points: [...good, last] }, { label: `last ${JSON.stringify(last)}` });
  }
  await rejects('PUT', UPSERT, '{"points":[' + good.map((g) => JSON.stringify(g)).join(',') + ',{"id":109,"vector":[1,2,3,NaN]}]}', {
    label: 'last NaN',
  });
  await rejects('PUT', UPSERT, { batch: { ids: [100, 101, 102], vectors: [V, V, [1, 2, 3, 1e39]] } }, { label: 'batch form' });
  await rejects('PUT', UPSERT, { batch: { ids: [100, 101, -3], vectors: [V, V, V] } }, { label: 'batch form bad id' });
  const r = await srv.ok('POST', `/collections/${C}/points`, { ids: [100, 101, 108, 109] });
  assert.deepEqual(r, []);
});

test('batchUpdate whose last operation is bad (wrong dimension) writes nothing', async () => {
  await rejects(
    'POST',
    `/collections/${C}/points/batch?wait=true`,
    {
      operations: [
        { upsert: { points: [{ id: 200, vector: V }] } },
        { set_payload: { payload: { z: 1 }, points: [1] } },
        { upsert: { points: [{ id: 201, vector: [1] }] } },
      ],
    },
    { label: 'batchUpdate', names: /vector|dimension|dim/i },
  );
  await rejects(
    'POST',
    `/collections/${C}/points/batch?wait=true`,
    { operations: [{ upsert: { points: [{ id: 202, vector: V }] } }, { no_such_op: {} }] },
    { label: 'batchUpdate unknown op', names: /no_such_op|operation/i },
  );
});

function nestedFilterText(depth) {
  return '{"must":['.repeat(depth - 1) + '{"must":[{"key":"a","match":{"value":1}}]}' + ']}'.repeat(depth - 1);
}

function nestedFilter(depth) {
  let f = { must: [{ key: 'a', match: { value: 1 } }] };
  for (let d = 1; d < depth; d++) f = { must: [f] };
  return f;
}

test('filter depth > 32 is rejected (reads and deletes), depth within the limit works', async () => {
  assert.deepEqual(JSON.parse(nestedFilterText(30)), nestedFilter(30));
  const ok = await srv.request('POST', `/collections/${C}/points/count`, { filter: nestedFilter(30), exact: true });
  assert.equal(ok.status, 200, ok.text.slice(0, 300));
  assert.equal(ok.json.result.count, 1);
  const ok32 = await srv.request('POST', `/collections/${C}/points/count`, `{"filter":${nestedFilterText(32)}}`);
  assert.equal(ok32.status, 200, `depth 32 is within the limit: ${ok32.text.slice(0, 300)}`);
  for (const depth of [33, 40, 200, 5000]) {
    const f = nestedFilterText(depth);
    const names = /depth|nest|deep|filter/i;
    await rejects('POST', `/collections/${C}/points/count`, `{"filter":${f}}`, { names, label: `depth ${depth}` });
    await rejects('POST', `/collections/${C}/points/delete?wait=true`, `{"filter":${f}}`, { names, label: `delete depth ${depth}` });
    await rejects('POST', `/collections/${C}/points/scroll`, `{"filter":${f}}`, { names, label: `scroll depth ${depth}` });
  }
  // Deeply nested JSON that is not even a filter must not crash the parser.
  const deep = '{"filter":' + '['.repeat(100_000) + ']'.repeat(100_000) + '}';
  await rejects('POST', `/collections/${C}/points/count`, deep, { statuses: [400, 422] });
  assert.equal((await srv.request('GET', '/healthz')).status, 200);
});

test('payload edits with bad input write nothing', async () => {
  await rejects('POST', `/collections/${C}/points/payload?wait=true`, { payload: { a: 9 } }, { names: /points|filter/i });
  await rejects('POST', `/collections/${C}/points/payload?wait=true`, { payload: { a: 9 }, points: [1, 'x'] }, { names: /points|id/i });
  await rejects('POST', `/collections/${C}/points/payload/delete?wait=true`, { keys: 'a', points: [1] }, { names: /keys/ });
  await rejects('POST', `/collections/${C}/points/payload/clear?wait=true`, { points: 1 }, { names: /points/ });
  await rejects('PUT', `/collections/${C}/points/payload?wait=true`, { payload: null, points: [1] }, { names: /payload/ });
  await rejects('PUT', `/collections/${C}/index?wait=true`, { field_name: 'a', field_schema: 'nonsense' }, { names: /field_schema|nonsense|schema/i });
});

test('the server survives all of the above', async () => {
  assert.equal((await srv.request('GET', '/healthz')).status, 200);
  assert.ok(!/AddressSanitizer|runtime error|panic|Assertion/.test(srv.stderr), srv.stderr.slice(-3000));
});

// The parser carries integers above 2^63 as strings with an internal prefix (U+0001 "u64:"): a
// client string imitating it must not become an id, a number in a filter or a corrupt response.
test('strings imitating the internal u64 marker are refused, in every position', async () => {
  const M = '\u0001u64:';
  const names = /u64/;
  await rejects('PUT', UPSERT, { points: [{ id: `${M}1`, vector: V }] }, { statuses: [400], names, label: 'id' });
  await rejects('PUT', UPSERT, { points: [{ id: 9, vector: V, payload: { s: `${M}18446744073709551000` } }] }, { statuses: [400], names, label: 'payload value' });
  await rejects('PUT', UPSERT, { points: [{ id: 9, vector: V, payload: { [`${M}1`]: 2 } }] }, { statuses: [400], names, label: 'payload key' });
  await rejects('PUT', UPSERT, { points: [{ id: 9, vector: V, payload: { s: `${M}1", "x` } }] }, { statuses: [400], names, label: 'payload injection' });
  await rejects('POST', `/collections/${C}/points/count`, { filter: { must: [{ key: 'a', match: { value: `${M}1` } }] } }, { statuses: [400], names, label: 'filter value' });
  await rejects('POST', `/collections/${C}/points`, { ids: [`${M}1`] }, { statuses: [400], names, label: 'retrieve id' });
  await rejects('POST', `/collections/${C}/points/delete?wait=true`, { points: [`${M}1`] }, { statuses: [400], names, label: 'delete id' });
  // U+0001 elsewhere is an ordinary character, and real big integers still round-trip.
  await srv.ok('PUT', UPSERT, { points: [{ id: 9, vector: V, payload: { s: `x${M}1` } }] });
  const r = await srv.request('PUT', UPSERT, '{"points":[{"id":18446744073709551000,"vector":[1,0,0,0],"payload":{"n":18446744073709551001}}]}');
  assert.equal(r.status, 200, r.text);
  const got = await srv.request('POST', `/collections/${C}/points`, '{"ids":[9,18446744073709551000],"with_payload":true}');
  assert.match(got.text, /"id":18446744073709551000,"payload":\{"n":18446744073709551001\}/);
  assert.equal(got.json.result.find((p) => p.id === 9).payload.s, `x${M}1`);
  await srv.ok('POST', `/collections/${C}/points/delete?wait=true`, { points: [9] });
  await srv.request('POST', `/collections/${C}/points/delete?wait=true`, '{"points":[18446744073709551000]}');
});
