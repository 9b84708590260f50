// Power loss, not just process death (issue 13, item 3). The server runs with an LD_PRELOAD shim
// (tests/crash/powercut_shim.c) that journals what every write to the storage overwrites; after
// SIGKILL at a random moment of ingestion, powercut_apply revokes every write made since its
// file's last fsync — what a power cut does to a disk's volatile cache. The server then restarts
// without the shim and every point acknowledged with wait=true must be there exactly as sent;
// points written with wait=false may be gone, but what is there must be whole.
// POWERCUT_ROUNDS=<n> runs more rounds (scripts/crash-cycles.sh runs 100); CRASH_SEED replays.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';

import { prng } from '../e2e/lib/oracle.mjs';
import { sleep, startServer, TIME_SCALE } from '../e2e/lib/server.mjs';

const ROUNDS = Number(process.env.POWERCUT_ROUNDS ?? 4);
const SHIM = process.env.AEGIS_POWERCUT_SHIM;
const APPLY = process.env.AEGIS_POWERCUT_APPLY;
const DIM = 8;
const seed = Number(process.env.CRASH_SEED ?? Math.floor(Math.random() * 2 ** 31));
const rnd = prng(seed);

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'aegis-powercut-'));
const storage = path.join(dir, 'storage');
let srv;

after(async () => {
  try {
    await srv?.cleanup();
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

const vectorOf = (id, ver) => Array.from({ length: DIM }, (_, j) => ((id * 31 + ver * 7 + j) % 13) / 13);
const payloadOf = (id, ver) => ({ id, ver, tag: `p${id}v${ver}` });

test('acknowledged wait=true writes survive a power cut; nothing is torn', { skip: !SHIM || !APPLY ? 'the power-cut shim was not built' : false }, async () => {
  const durable = new Map(); // id -> version acknowledged with wait=true
  const sent = new Map(); // id -> Set of versions sent (any)
  let nextId = 1;
  let revokedTotal = 0;
  for (let round = 0; round < ROUNDS; round++) {
    const journal = path.join(dir, `journal-${round}`);
    const env = {
      LD_PRELOAD: SHIM,
      AEGIS_POWERCUT_ROOT: storage,
      AEGIS_POWERCUT_JOURNAL: journal,
      ASAN_OPTIONS: `${process.env.ASAN_OPTIONS ? `${process.env.ASAN_OPTIONS}:` : ''}verify_asan_link_order=0`,
    };
    srv = await startServer({ storage, env, port: srv?.port });
    if (round === 0) await srv.ok('PUT', '/collections/pc', { vectors: { size: DIM, distance: 'Dot' } });
    const stopAt = Date.now() + (300 + Math.floor(rnd() * 1200)) * TIME_SCALE;
    const writing = (async () => {
      while (Date.now() < stopAt && srv.running) {
        const wait = rnd() < 0.6;
        const ids = [];
        for (let k = 0; k < 30; k++) ids.push(nextId++);
        // Also rewrite a few durable points with a new version.
        for (const id of [...durable.keys()].slice(-5)) ids.push(id);
        const points = ids.map((id) => {
          const ver = (sent.get(id)?.size ?? 0) + 1;
          if (!sent.has(id)) sent.set(id, new Set());
          sent.get(id).add(ver);
          return { id, ver, vector: vectorOf(id, ver), payload: payloadOf(id, ver) };
        });
        try {
          const r = await srv.request('PUT', `/collections/pc/points?wait=${wait}`, { points: points.map(({ id, vector, payload }) => ({ id, vector, payload })) }, { timeoutMs: 10_000 });
          if (r.status === 200 && wait) for (const p of points) durable.set(p.id, p.ver);
        } catch {
          return; // the server died under the request
        }
      }
    })();
    await sleep(Math.max(0, stopAt - Date.now()) * rnd());
    await srv.kill();
    await writing;
    const cut = spawnSync(APPLY, [journal], { encoding: 'utf8' });
    assert.equal(cut.status, 0, cut.stderr);
    const m = /revoked (\d+)/.exec(cut.stdout);
    revokedTotal += m ? Number(m[1]) : 0;
    fs.rmSync(journal, { force: true });

    // Restart without the shim: the state a machine would boot into.
    srv = await startServer({ storage, port: srv.port });
    const got = new Map();
    let offset = null;
    do {
      const page = await srv.ok('POST', '/collections/pc/points/scroll', { limit: 1000, offset, with_payload: true, with_vector: true });
      for (const p of page.points) got.set(p.id, p);
      offset = page.next_page_offset;
    } while (offset !== null && offset !== undefined);
    for (const [id, ver] of durable) {
      const p = got.get(id);
      assert.ok(p, `seed ${seed} round ${round}: acknowledged point ${id} lost`);
      assert.ok(p.payload.ver >= ver, `seed ${seed}: point ${id} went back from version ${ver} to ${p.payload.ver}`);
    }
    for (const [id, p] of got) {
      const ver = p.payload.ver;
      assert.ok(sent.get(id)?.has(ver), `seed ${seed}: point ${id} has version ${ver}, never sent`);
      assert.deepEqual(p.payload, payloadOf(id, ver), `seed ${seed}: torn payload of ${id}`);
      const want = vectorOf(id, ver);
      assert.ok(p.vector.every((x, j) => Math.abs(x - want[j]) < 1e-6), `seed ${seed}: torn vector of ${id}`);
      if (durable.has(id) && ver > durable.get(id)) durable.set(id, ver); // a newer version landed whole
    }
    await srv.stop();
  }
  assert.ok(revokedTotal > 0, `the shim revoked nothing in ${ROUNDS} rounds (seed ${seed}): it is not working`);
});
