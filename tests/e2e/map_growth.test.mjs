// LMDB map growth (docs/RELIABILITY.md, "LMDB map growth"): a server whose storage map starts at
// 1 MiB takes far more than that — the map grows while writes go on — and keeps every point
// across a restart; settings that cannot be honoured stop start-up, naming the setting.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { runAegis, startServer } from './lib/server.mjs';
import { keyEnv } from './lib/auth.mjs';

const DIM = 32;
let srv;
after(async () => {
  await srv?.cleanup();
});

test('a 1 MiB map grows under ingestion and nothing is lost', async () => {
  srv = await startServer({ env: { AEGIS__STORAGE__INITIAL_MAP_SIZE_MB: '1' } });
  await srv.ok('PUT', '/collections/g', { vectors: { size: DIM, distance: 'Dot' } });
  const N = 8000;
  for (let i = 0; i < N; i += 1000) {
    const points = Array.from({ length: 1000 }, (_, k) => ({
      id: i + k,
      vector: Array.from({ length: DIM }, (_, d) => ((i + k + d) % 17) / 17),
      payload: { n: i + k, text: 'x'.repeat(100) },
    }));
    await srv.ok('PUT', '/collections/g/points?wait=true', { points });
  }
  assert.match(srv.stderr, /storage map grown from 1 to \d+ MiB/);
  assert.equal((await srv.ok('POST', '/collections/g/points/count', { exact: true })).count, N);
  await srv.kill();
  await srv.start();
  assert.equal((await srv.ok('POST', '/collections/g/points/count', { exact: true })).count, N);
  const p = await srv.ok('GET', `/collections/g/points/${N - 1}`);
  assert.equal(p.payload.n, N - 1);
});

test('map settings that cannot be honoured stop start-up', async () => {
  const cases = [
    [{ AEGIS__STORAGE__INITIAL_MAP_SIZE_MB: '2048', AEGIS__STORAGE__MAP_SIZE_GB: '1' }, 'storage.initial_map_size_mb'],
    [{ AEGIS__STORAGE__MAP_SIZE_GB: '0' }, 'storage.map_size_gb'],
    [{ AEGIS__STORAGE__INITIAL_MAP_SIZE_MB: '0' }, 'storage.initial_map_size_mb'],
  ];
  for (const [env, name] of cases) {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'aegis-map-'));
    const r = await runAegis(['serve', '--storage', dir, '--port', '1'], { env: { ...keyEnv(), ...env } });
    fs.rmSync(dir, { recursive: true, force: true });
    assert.notEqual(r.code, 0);
    assert.ok(r.stderr.includes(name), r.stderr);
  }
});
