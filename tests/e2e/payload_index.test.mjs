// Candidate sets from payload indexes: a selective equality filter on an indexed keyword or
// integer field is answered from the index (HNSW collection past its full-scan threshold), and
// the answer is exactly the brute-force one — including after writes change, add and remove
// matching points (the index must follow every write) and under a row restriction.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer } from './lib/server.mjs';
import { prng, randVector, randInt, bruteForce, assertRanking } from './lib/oracle.mjs';

const DIM = 16;
const N = 3000;
let srv;
let pts;
const C = 'pidx';

async function check(filterJson, pred, label) {
  const rnd = prng(label.length * 31 + 7);
  for (let q = 0; q < 10; q++) {
    const query = randVector(rnd, DIM);
    const got = await srv.ok('POST', `/collections/${C}/points/search`, { vector: query, filter: filterJson, limit: 10 });
    const want = bruteForce(pts, query, 'Euclid', { filter: pred });
    assertRanking(got, want, { limit: 10, label: `${label} query ${q}` });
  }
}

before(async () => {
  srv = await startServer();
  // full_scan_threshold 1 KB = 16 points: the graph (and its planner) serves every query.
  await srv.ok('PUT', `/collections/${C}`, { vectors: { size: DIM, distance: 'Euclid' }, hnsw_config: { full_scan_threshold: 1 } });
  await srv.ok('PUT', `/collections/${C}/index?wait=true`, { field_name: 'color', field_schema: 'keyword' });
  await srv.ok('PUT', `/collections/${C}/index?wait=true`, { field_name: 'n', field_schema: 'integer' });
  const rnd = prng(4242);
  pts = [];
  for (let i = 1; i <= N; i++)
    pts.push({ id: i, vector: randVector(rnd, DIM), payload: { color: `c${randInt(rnd, 0, 99)}`, n: randInt(rnd, 0, 49), tags: i % 7 === 0 ? ['x', `c${i % 100}`] : [] } });
  for (let s = 0; s < N; s += 1000)
    await srv.ok('PUT', `/collections/${C}/points?wait=true`, { points: pts.slice(s, s + 1000) });
});

after(async () => {
  await srv?.cleanup();
});

test('keyword value, keyword any, integer value: exact answers', async () => {
  await check({ must: [{ key: 'color', match: { value: 'c5' } }] }, (p) => p.payload.color === 'c5', 'color=c5');
  await check({ must: [{ key: 'color', match: { any: ['c1', 'c2', 'c3'] } }] }, (p) => ['c1', 'c2', 'c3'].includes(p.payload.color), 'color any');
  await check({ must: [{ key: 'n', match: { value: 7 } }, { key: 'color', match: { except: ['c1'] } }] },
    (p) => p.payload.n === 7 && p.payload.color !== 'c1', 'n=7 and not c1');
  await check({ must: [{ key: 'color', match: { value: 'nope' } }] }, () => false, 'no match');
});

test('the index follows writes: set, overwrite, delete, upsert', async () => {
  const moved = [11, 12, 13, 14, 15];
  await srv.ok('POST', `/collections/${C}/points/payload?wait=true`, { payload: { color: 'c5' }, points: moved });
  for (const id of moved) pts[id - 1].payload.color = 'c5';
  await check({ must: [{ key: 'color', match: { value: 'c5' } }] }, (p) => p.payload.color === 'c5', 'after set');
  const gone = pts.filter((p) => p.payload.color === 'c5').slice(0, 3).map((p) => p.id);
  await srv.ok('POST', `/collections/${C}/points/delete?wait=true`, { points: gone });
  pts = pts.filter((p) => !gone.includes(p.id));
  await check({ must: [{ key: 'color', match: { value: 'c5' } }] }, (p) => p.payload.color === 'c5', 'after delete');
  const fresh = { id: 5000, vector: new Array(DIM).fill(0.01), payload: { color: 'c5', n: 1 } };
  await srv.ok('PUT', `/collections/${C}/points?wait=true`, { points: [fresh] });
  pts.push(fresh);
  await check({ must: [{ key: 'color', match: { value: 'c5' } }] }, (p) => p.payload.color === 'c5', 'after upsert');
});

test('count and delete-by-filter through the index match the brute-force selection', async () => {
  for (const color of ['c7', 'c42', 'nope']) {
    const want = pts.filter((p) => p.payload.color === color).length;
    const got = await srv.ok('POST', `/collections/${C}/points/count`, { filter: { must: [{ key: 'color', match: { value: color } }] } });
    assert.equal(got.count, want, `count color=${color}`);
  }
  const anyWant = pts.filter((p) => ['c1', 'c9'].includes(p.payload.color) && p.payload.n < 25).length;
  const anyGot = await srv.ok('POST', `/collections/${C}/points/count`, {
    filter: { must: [{ key: 'color', match: { any: ['c1', 'c9'] } }, { key: 'n', range: { lt: 25 } }] },
  });
  assert.equal(anyGot.count, anyWant);
  const before = (await srv.ok('POST', `/collections/${C}/points/count`, {})).count;
  const doomed = pts.filter((p) => p.payload.color === 'c8').length;
  assert.ok(doomed > 0);
  await srv.ok('POST', `/collections/${C}/points/delete?wait=true`, { filter: { must: [{ key: 'color', match: { value: 'c8' } }] } });
  pts = pts.filter((p) => p.payload.color !== 'c8');
  const after = (await srv.ok('POST', `/collections/${C}/points/count`, {})).count;
  assert.equal(after, before - doomed);
  assert.equal((await srv.ok('POST', `/collections/${C}/points/count`, { filter: { must: [{ key: 'color', match: { value: 'c8' } }] } })).count, 0);
  await check({ must: [{ key: 'color', match: { value: 'c5' } }] }, (p) => p.payload.color === 'c5', 'after filter delete');
});
