// AEGIS_SIMD (docs/ARCHITECTURE.md "SIMD levels"): an unknown value stops `aegis serve` before it
// touches the storage, naming the variable and the allowed values; with `scalar` the server says
// so at start-up and its quantized searches (int8 and binary scans of a small collection, the
// sign sketch, a quantized graph) answer exactly as a server at the CPU's best level does.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { runAegis, startServer } from './lib/server.mjs';

const servers = [];
after(async () => {
  for (const s of servers) await s.cleanup();
});

test('an unknown AEGIS_SIMD stops start-up, naming it; nothing is created', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'aegis-simd-'));
  const storage = path.join(dir, 'storage');
  try {
    for (const bad of ['foo', 'AVX2', 'sse4', 'avx512 ']) {
      const r = await runAegis(['serve', '--insecure', '--storage', storage, '--port', '7601'], { env: { AEGIS_SIMD: bad } });
      assert.notEqual(r.code, 0, `AEGIS_SIMD=${bad} must not start`);
      assert.equal(r.signal, null);
      assert.match(r.stderr, /AEGIS_SIMD: unknown value/);
      assert.match(r.stderr, /expected avx512, avx2 or scalar/);
      assert.equal(fs.existsSync(storage), false, 'no storage created');
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

function points(n, dim, seed) {
  let s = seed >>> 0;
  const rnd = () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 4294967296 - 0.5;
  };
  const out = [];
  for (let i = 0; i < n; i++) out.push({ id: i + 1, vector: Array.from({ length: dim }, rnd) });
  return out;
}

const dot = (a, b) => a.reduce((acc, x, i) => acc + x * b[i], 0);
const norm = (a) => {
  const l = Math.sqrt(dot(a, a));
  return a.map((x) => x / l);
};

async function load(srv, dim, pts) {
  const cols = {
    // below full_scan_threshold: the int8 scan with the sign sketch (400 points)
    s8: { vectors: { size: dim, distance: 'Cosine' }, quantization_config: { scalar: { type: 'int8', always_ram: true } } },
    // the binary scan
    sb: { vectors: { size: dim, distance: 'Dot' }, quantization_config: { binary: { always_ram: true } } },
    // Euclid codes (the L2 kernel)
    se: { vectors: { size: dim, distance: 'Euclid' }, quantization_config: { scalar: { type: 'int8', always_ram: true } } },
    // a quantized graph walk
    g8: {
      vectors: { size: dim, distance: 'Cosine' },
      hnsw_config: { full_scan_threshold: 0 },
      quantization_config: { scalar: { type: 'int8', always_ram: true } },
    },
  };
  for (const [name, body] of Object.entries(cols)) {
    await srv.ok('PUT', `/collections/${name}`, body);
    for (let i = 0; i < pts.length; i += 200) await srv.ok('PUT', `/collections/${name}/points?wait=true`, { points: pts.slice(i, i + 200) });
    await srv.waitGreen(name);
  }
  return Object.keys(cols);
}

async function answers(srv, names, queries) {
  const out = {};
  for (const name of names) {
    out[name] = [];
    for (const q of queries) {
      for (const quantization of [{ rescore: true, oversampling: 2.0 }, { rescore: false }]) {
        const res = await srv.ok('POST', `/collections/${name}/points/search`, { vector: q, limit: 10, params: { hnsw_ef: 64, quantization } });
        out[name].push(res.map((h) => [h.id, h.score]));
      }
    }
  }
  return out;
}

test('AEGIS_SIMD=scalar: logged at start-up, and the quantized searches answer as at the best level', async () => {
  const dim = 96;
  const pts = points(400, dim, 11);
  const queries = points(12, dim, 1234).map((p) => p.vector);

  const scalar = await startServer({ env: { AEGIS_SIMD: 'scalar' } });
  servers.push(scalar);
  assert.match(scalar.stderr, /AEGIS_SIMD=scalar: int8 kernels scalar, Hamming scalar, scan helpers scalar, rescoring row by row/);
  const best = await startServer({ env: { AEGIS_SIMD: '' } });
  servers.push(best);
  assert.match(best.stderr, /AEGIS_SIMD=avx512: int8 kernels \S+, Hamming \S+/);

  const names = await load(scalar, dim, pts);
  await load(best, dim, pts);
  const a = await answers(scalar, names, queries);
  const b = await answers(best, names, queries);
  for (const name of names) {
    if (name === 'g8') continue; // graphs are built by racing threads: compared by recall below
    assert.deepEqual(a[name], b[name], `${name}: the same ids and scores at both levels`);
  }
  // the quantized graph under the scalar kernels still finds the neighbours, and rescored scores
  // are the float cosines
  let hits = 0;
  queries.forEach((q, qi) => {
    const nq = norm(q);
    const truth = new Set(pts.map((p) => ({ id: p.id, s: dot(nq, norm(p.vector)) })).sort((x, y) => y.s - x.s).slice(0, 10).map((t) => t.id));
    const got = a.g8[2 * qi];
    assert.equal(got.length, 10);
    hits += got.filter(([id]) => truth.has(id)).length;
    for (const [id, score] of got) assert.ok(Math.abs(score - dot(nq, norm(pts[id - 1].vector))) < 1e-4, `score of ${id}`);
  });
  assert.ok(hits / (queries.length * 10) >= 0.9, `recall@10 ${hits / (queries.length * 10)}`);
});
