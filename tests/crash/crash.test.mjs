// Crash safety: SIGKILL the server at a random moment during ingestion with wait=true, restart it
// on the same storage, and check that every acknowledged write is there, exactly as sent.
// Writes that were in flight when the server died may or may not be there, but if present they
// must be complete (one of the versions that was sent, never a torn mix).
//
// Two writers run concurrently; each owns the ids congruent to its number mod 2, so the versions
// of an id are sent in order by one writer. A batch inserts new points and re-writes a few
// acknowledged ones with a new version, so both inserts and overwrites are checked.
// CRASH_SEED=<n> replays a run.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startServer, sleep, TIME_SCALE } from '../e2e/lib/server.mjs';
import { prng } from '../e2e/lib/oracle.mjs';

const ROUNDS = Number(process.env.CRASH_ROUNDS ?? 10);
const DIM = 16;
const COLL = 'crash';
const NEW_PER_BATCH = 40;
const REWRITES_PER_BATCH = 8;
const WRITERS = 2;

const seed = Number(process.env.CRASH_SEED ?? Math.floor(Math.random() * 2 ** 31));
const rnd = prng(seed);

/** The content of version `ver` of point `id`: deterministic, so it can be recomputed. */
function content(id, ver) {
  const r = prng(id * 7919 + ver * 104729 + 1);
  const vector = Array.from({ length: DIM }, () => (Math.floor(r() * 2048) - 1024) / 1024);
  return { vector, payload: { id, ver, tag: `p${id}v${ver}`, list: [id % 10, ver], nested: { even: id % 2 === 0 } } };
}

// id -> {acked: version | null, sent: Set of versions sent (acked or not)}
const state = new Map();
let nextNew = [1, 2]; // next new id for each writer (writer w uses ids ≡ w+1 mod 2)

const storage = fs.mkdtempSync(path.join(os.tmpdir(), 'aegis-crash-'));
let srv;

after(async () => {
  try {
    await srv?.cleanup(); // graceful stop if still running; fails on any sanitizer report
  } finally {
    fs.rmSync(storage, { recursive: true, force: true });
  }
});

async function writer(w, stopAt, stats) {
  while (Date.now() < stopAt.value && srv.running) {
    const points = [];
    const versions = [];
    for (let k = 0; k < NEW_PER_BATCH; k++) {
      const id = nextNew[w];
      nextNew[w] += WRITERS;
      state.set(id, { acked: null, sent: new Set() });
      versions.push([id, 1]);
    }
    // Re-write some acknowledged points of this writer with a new version.
    const mine = [...state.entries()].filter(([id, s]) => (id - 1) % WRITERS === w && s.acked !== null);
    for (let k = 0; k < REWRITES_PER_BATCH && mine.length; k++) {
      const [id, s] = mine[Math.floor(rnd() * mine.length)];
      if (versions.some(([v]) => v === id)) continue;
      versions.push([id, Math.max(...s.sent) + 1]);
    }
    for (const [id, ver] of versions) {
      state.get(id).sent.add(ver);
      points.push({ id, ...content(id, ver) });
    }
    let r;
    try {
      r = await srv.request('PUT', `/collections/${COLL}/points?wait=true`, { points }, { timeoutMs: 30_000 * TIME_SCALE });
    } catch {
      stats.failed++;
      return; // the server died mid-request: this batch is unacknowledged
    }
    if (r.status !== 200) {
      throw new Error(`upsert answered ${r.status}: ${r.text.slice(0, 500)}`);
    }
    for (const [id, ver] of versions) {
      const s = state.get(id);
      s.acked = Math.max(s.acked ?? 0, ver);
    }
    stats.acked += versions.length;
  }
}

async function verify(label) {
  // Every point on the server, with payload and vector.
  const seen = new Map();
  let offset;
  for (;;) {
    const res = await srv.ok('POST', `/collections/${COLL}/points/scroll`, {
      limit: 1000,
      offset,
      with_payload: true,
      with_vector: true,
    });
    for (const p of res.points) {
      assert.ok(!seen.has(p.id), `${label}: id ${p.id} listed twice`);
      seen.set(p.id, p);
    }
    if (res.next_page_offset == null) break;
    offset = res.next_page_offset;
  }
  let acked = 0;
  for (const [id, s] of state) {
    const p = seen.get(id);
    if (s.acked !== null) {
      acked++;
      assert.ok(p, `${label}: acknowledged point ${id} (version ${s.acked}) is missing after the crash`);
    }
    if (!p) continue;
    // Present: must be exactly one version that was sent, and not older than the acknowledged one.
    const ver = p.payload?.ver;
    assert.ok(s.sent.has(ver), `${label}: point ${id} has version ${ver}, never sent (sent ${[...s.sent]}): ${JSON.stringify(p)}`);
    assert.ok(s.acked === null || ver >= s.acked, `${label}: point ${id} rolled back from acknowledged v${s.acked} to v${ver}`);
    const want = content(id, ver);
    assert.deepEqual(p.payload, want.payload, `${label}: payload of ${id} v${ver}`);
    // Components are float32 values; the server may print the shortest float32 form.
    assert.deepEqual(p.vector?.map?.(Math.fround), want.vector, `${label}: vector of ${id} v${ver}`);
    // Settle the state: whatever survived is now the durable version.
    s.acked = ver;
    for (const v of [...s.sent]) if (v > ver) s.sent.delete(v);
  }
  for (const id of seen.keys()) assert.ok(state.has(id), `${label}: unknown point ${id} appeared`);
  // Forget unacknowledged points that did not survive.
  for (const [id, s] of [...state]) if (!seen.has(id)) state.delete(id);
  const count = (await srv.ok('POST', `/collections/${COLL}/points/count`, { exact: true })).count;
  assert.equal(count, seen.size, `${label}: count agrees with scroll`);
  return { acked, present: seen.size };
}

test(`kill -9 during wait=true ingestion, ${ROUNDS} times: no acknowledged write is lost`, async (t) => {
  t.diagnostic(`CRASH_SEED=${seed}`);
  srv = await startServer({ storage });
  await srv.ok('PUT', `/collections/${COLL}`, { vectors: { size: DIM, distance: 'Dot' } });
  let totalAcked = 0;
  for (let round = 1; round <= ROUNDS; round++) {
    const killAfter = 50 + Math.floor(rnd() * 351); // 50–400 ms
    const stats = { acked: 0, failed: 0 };
    const stopAt = { value: Date.now() + 60_000 * TIME_SCALE };
    const writers = Array.from({ length: WRITERS }, (_, w) => writer(w, stopAt, stats));
    await sleep(killAfter);
    await srv.kill();
    stopAt.value = 0;
    await Promise.all(writers);
    await srv.start();
    const v = await verify(`round ${round} (kill after ${killAfter} ms)`);
    t.diagnostic(
      `round ${round}: killed after ${killAfter} ms, ${stats.acked} point writes acknowledged this round, ` +
        `${v.present} points present, all ${v.acked} acknowledged ids intact`,
    );
    totalAcked += stats.acked;
  }
  assert.ok(totalAcked > 0, 'no write was acknowledged in any round: the test checked nothing');
  const total = await verify('before the final stop');
  assert.ok(total.present > 0, 'some points were written');
  const exit = await srv.stop();
  assert.deepEqual(exit, { code: 0, signal: null }, `graceful stop at the end\n${srv.stderr.slice(-2000)}`);
  // And once more after a clean restart.
  await srv.start();
  await verify('after a clean restart');
  assert.deepEqual(await srv.stop(), { code: 0, signal: null });
});
