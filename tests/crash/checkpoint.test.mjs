// Graph checkpoints after kill -9 (docs/RELIABILITY.md, "Crash recovery"): the checkpoint is a
// cache, so an old, corrupt or missing one must never change what a search returns.
//
// A collection is filled with points whose ids come in random order (so a restart gives them
// other slots than they had), it turns green (checkpoint on disk), and its checkpoint file is put
// aside. Then points are inserted, vectors changed and points deleted, the server is killed with
// SIGKILL and the old checkpoint is put back before the restart — the disk as it is when the
// server dies just after those writes, before the indexer's next checkpoint. After the restart
// the graph is resumed (not rebuilt: the log says how many nodes were kept, dropped and linked
// again) and every point is found by a search for its own vector, with its current vector, and no
// deleted point is returned. Then the same with a corrupt checkpoint (rebuilt, same answers).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { startServer } from '../e2e/lib/server.mjs';
import { prng } from '../e2e/lib/oracle.mjs';

const DIM = 8;
const COLL = 'ckpt';
const N = 1500;
const rnd = prng(4242);

function randomVector() {
  return Array.from({ length: DIM }, () => Math.fround(rnd() * 2 - 1));
}

// id -> current vector (absent: deleted)
const model = new Map();
const deleted = new Map(); // id -> the vector it had
let srv;

after(async () => {
  await srv?.cleanup();
});


async function upsert(points) {
  for (let i = 0; i < points.length; i += 500) {
    await srv.ok('PUT', `/collections/${COLL}/points?wait=true`, { points: points.slice(i, i + 500) });
  }
  for (const p of points) model.set(p.id, p.vector);
}

function checkpointFiles() {
  const dir = path.join(srv.storage, 'index');
  return fs.existsSync(dir) ? fs.readdirSync(dir).filter((f) => f.endsWith('.hnsw')).map((f) => path.join(dir, f)) : [];
}

async function verify(label) {
  const count = (await srv.ok('POST', `/collections/${COLL}/points/count`, { exact: true })).count;
  assert.equal(count, model.size, `${label}: count`);
  const ids = [...model.keys()];
  for (let i = 0; i < ids.length; i += 100) {
    const searches = ids.slice(i, i + 100).map((id) => ({ vector: model.get(id), limit: 3, with_vector: true }));
    const res = await srv.ok('POST', `/collections/${COLL}/points/search/batch`, { searches });
    res.forEach((hits, j) => {
      const id = ids[i + j];
      const hit = hits.find((h) => h.id === id);
      assert.ok(hit, `${label}: point ${id} not found by a search for its own vector: ${JSON.stringify(hits.map((h) => h.id))}`);
      assert.deepEqual(hit.vector.map(Math.fround), model.get(id), `${label}: vector of ${id}`);
      for (const h of hits) assert.ok(model.has(h.id), `${label}: deleted point ${h.id} returned`);
    });
  }
  const gone = [...deleted.entries()].slice(0, 200);
  const res = await srv.ok('POST', `/collections/${COLL}/points/search/batch`, {
    searches: gone.map(([, vector]) => ({ vector, limit: 5 })),
  });
  res.forEach((hits) => {
    for (const h of hits) assert.ok(model.has(h.id), `${label}: deleted point ${h.id} returned`);
  });
}

function lastResumeLine() {
  const lines = srv.stderr.split('\n').filter((l) => /hnsw: (resumed|.* rebuilding|.* queued)/.test(l));
  return lines[lines.length - 1] || '';
}

test('kill -9 after writes newer than the checkpoint: resumed, every point searchable, deleted ones gone', async () => {
  srv = await startServer();
  // full_scan_threshold in KB: 1 KB = 32 points of 8 floats, so the graph is used.
  await srv.ok('PUT', `/collections/${COLL}`, {
    vectors: { size: DIM, distance: 'Euclid' },
    hnsw_config: { m: 8, ef_construct: 64, full_scan_threshold: 1 },
  });
  // Ids in random order, integers and UUIDs: slots at run time differ from those after a restart.
  const ids = Array.from({ length: N }, (_, i) =>
    i % 3 === 0 ? `00000000-0000-4000-8000-${String(100000 + i).padStart(12, '0')}` : i * 7 + 1);
  for (let i = ids.length - 1; i > 0; i--) {
    const j = Math.floor(rnd() * (i + 1));
    [ids[i], ids[j]] = [ids[j], ids[i]];
  }
  await upsert(ids.map((id) => ({ id, vector: randomVector() })));
  await srv.waitGreen(COLL);
  const files = checkpointFiles();
  assert.equal(files.length, 1, 'green means the checkpoint is on disk');
  const saved = fs.readFileSync(files[0]);

  // Newer than the checkpoint: 300 inserts, 200 changed vectors, 200 deletes.
  await upsert(Array.from({ length: 300 }, (_, i) => ({ id: 100000 + i, vector: randomVector() })));
  const live = [...model.keys()];
  await upsert(live.slice(0, 200).map((id) => ({ id, vector: randomVector() })));
  const del = live.slice(200, 400);
  await srv.ok('POST', `/collections/${COLL}/points/delete?wait=true`, { points: del });
  for (const id of del) {
    deleted.set(id, model.get(id));
    model.delete(id);
  }
  await srv.kill();
  fs.writeFileSync(files[0], saved); // the disk as it was before the indexer's next checkpoint
  await srv.start();
  const line = lastResumeLine();
  const m = /resumed .*: (\d+) points kept, (\d+) dropped, (\d+) to link again/.exec(line);
  assert.ok(m, `the graph was resumed from the checkpoint, not rebuilt: ${line}`);
  assert.equal(Number(m[1]), N - 400, 'untouched points keep their nodes');
  assert.equal(Number(m[2]), 400, 'changed and deleted points lose theirs');
  assert.equal(Number(m[3]), 500, 'new and changed points are linked again');
  await verify('right after the restart (relinking in the background)');
  const info = await srv.waitGreen(COLL);
  assert.equal(info.indexed_vectors_count, model.size);
  await verify('green after the restart');

  // A corrupt checkpoint: detected (checksum), the graph rebuilt, the answers the same.
  await srv.kill();
  const bytes = fs.readFileSync(files[0]);
  bytes[Math.floor(bytes.length / 2)] ^= 0x40;
  fs.writeFileSync(files[0], bytes);
  await srv.start();
  assert.match(lastResumeLine(), /stale or corrupt; rebuilding|queued for background linking/);
  await verify('after a corrupt checkpoint');
  await srv.waitGreen(COLL);
  await verify('rebuilt and green');

  // A clean stop writes the checkpoint; the next start keeps every node.
  assert.deepEqual(await srv.stop(), { code: 0, signal: null });
  await srv.start();
  const clean = /resumed .*: (\d+) points kept, (\d+) dropped, (\d+) to link again/.exec(lastResumeLine());
  assert.ok(clean, lastResumeLine());
  assert.deepEqual([Number(clean[1]), Number(clean[2]), Number(clean[3])], [model.size, 0, 0]);
  assert.equal((await srv.ok('GET', `/collections/${COLL}`)).status, 'green');
  await verify('after a clean restart');
});
