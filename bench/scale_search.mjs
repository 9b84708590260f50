// The search half of bench/scale.mjs on a storage it kept (AEGIS_SCALE_KEEP=1): start the server
// on the float32 collection, add scalar int8 quantization to it (PATCH, codes built from the
// floats in RAM), and sweep recall@10 and q/s per hnsw_ef for the float graph search
// (quantization ignored) and int8 + rescoring at oversampling 2 and 4, interleaved in one run.
// For when the int8 + on_disk server of scale.mjs cannot finish linking in the time there is (the
// int8 ranking and its rescoring are the same whether the floats are in RAM or in the map; the
// speed is not). The collection is changed (quantization added): run bench/restart.mjs first.
//   node bench/scale_search.mjs <storage> [points=1000000] [queries=100] [port=7400]
// q/s: wall clock (one client, 100 queries per search/batch, best of 3 rounds) and server CPU
// (utime + stime of the server process over the request, /proc/<pid>/stat: what a loaded machine
// does not inflate; 10 ms resolution, so coarse at small ef). Self-search: 1,000 stored vectors
// as queries, limit 1, must find themselves (a miss at a large ef = a point the graph cannot reach). Ground truth: brute force here (float64), checked against exact: true.
// Env AEGIS_SCALE_EFS overrides the ef sweep, AEGIS_SCALE_ROUNDS the rounds (3).
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { call as call1, scaleData, xorshift } from './lib.mjs';

// The brute-force ground truth blocks this process for a while, and the server closes the idle
// keep-alive connection meanwhile: one retry on a connection error (every call here is idempotent).
async function call(...a) {
  try { return await call1(...a); } catch (e) { if (e instanceof TypeError) return call1(...a); throw e; }
}
const storage = process.argv[2];
const n = Number(process.argv[3] || 1000000);
const nq = Number(process.argv[4] || 100);
const port = Number(process.argv[5] || 7400);
const dim = 128, k = 10, rounds = Number(process.env.AEGIS_SCALE_ROUNDS || 3);
const efs = (process.env.AEGIS_SCALE_EFS || '16,32,64,128,256,384,512,768,1024,1536,2048').split(',').map(Number);
const url = `http://127.0.0.1:${port}`;
if (!storage || !fs.existsSync(storage)) throw new Error('usage: node bench/scale_search.mjs <storage> [points] [queries] [port]');

const cpuSec = (pid) => {
  const f = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const rest = f.slice(f.lastIndexOf(')') + 2).split(' ');
  return (Number(rest[11]) + Number(rest[12])) / 100;
};
const rssAnon = (pid) => Number(/RssAnon:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))[1]) * 1024;
async function waitGreen() {
  for (;;) {
    if ((await call(url, 'GET', '/collections/c')).status === 'green') return;
    await new Promise((r) => setTimeout(r, 100));
  }
}

console.log(`scale_search: ${storage}, ${n} points, ${nq} queries, load ${os.loadavg()[0].toFixed(1)}`);
// Data and the ground truth first: the brute force blocks this process, and a server started
// before it would see an idle connection time out.
const { vectors, queries, truthList, truth, truthSec } = scaleData(n, dim, nq, k);
const bin = process.env.AEGIS_BIN || path.resolve('build/aegis');
const proc = spawn(bin, ['serve', '--insecure', '--storage', storage, '--port', String(port)], {
  stdio: ['ignore', 'ignore', 'ignore'],
  // a loaded machine stretches an exact search over 1M points past the 30 s request deadline
  env: { ...process.env, AEGIS__SERVICE__ACCESS_LOG: 'false', AEGIS__SERVICE__MAX_REQUEST_TIMEOUT_SEC: '3600', AEGIS__SERVICE__HEADER_TIMEOUT_SEC: '3600' },
});
try {
  for (let i = 0; ; i++) {
    try { if ((await fetch(`${url}/healthz`)).ok) break; } catch { /* not yet */ }
    if (i > 20000) throw new Error('no answer');
    await new Promise((r) => setTimeout(r, 20));
  }
  await waitGreen();
  const heapFloat = rssAnon(proc.pid);
  const count = (await call(url, 'POST', '/collections/c/points/count', {})).count;
  if (count !== n) throw new Error(`${count} points, expected ${n}`);
  const tq = Date.now();
  await call(url, 'PATCH', '/collections/c', { quantization_config: { scalar: { type: 'int8', quantile: 0.99, always_ram: true } } });
  await waitGreen();
  const heapInt8 = rssAnon(proc.pid);
  console.log(`heap: ${(heapFloat / 1048576).toFixed(0)} MB float32 in RAM, ${(heapInt8 / 1048576).toFixed(0)} MB with int8 codes added (${((heapInt8 - heapFloat) / n).toFixed(0)} B/point), quantized in ${((Date.now() - tq) / 1000).toFixed(1)} s`);

  const exact = [];
  for (let o = 0; o < nq; o += 10) {
    exact.push(...await call(url, 'POST', '/collections/c/points/search/batch', {
      searches: queries.slice(o, o + 10).map((q) => ({ vector: q, limit: k, params: { exact: true, quantization: { ignore: true } } })),
    }));
  }
  let agree = 0;
  exact.forEach((hits, i) => { agree += hits.filter((h) => truth[i].has(h.id)).length; });
  console.log(`ground truth: brute force in ${truthSec.toFixed(0)} s; server exact search agrees on ${(agree / nq / k * 100).toFixed(1)} % of ids`);
  const mean = (f) => truthList.reduce((a, b) => a + f(b), 0) / nq;
  // the typical distance between two points of one cluster, for scale
  let same = 0, cnt = 0;
  for (let i = 0; i < nq; i++) {
    const a = vectors[truthList[i][0][1]];
    for (let j = 1; j < 2000 && cnt < (i + 1) * 20; j++) {
      const b = vectors[(truthList[i][0][1] + j * 7919) % n];
      let d = 0;
      for (let x = 0; x < dim; x++) { const t = a[x] - b[x]; d += t * t; }
      if (Math.sqrt(d) < 4) { same += Math.sqrt(d); cnt++; }
    }
  }
  console.log(`distances (mean): query to 1st neighbour ${mean((b) => Math.sqrt(b[0][0])).toFixed(3)}, 2nd ${mean((b) => Math.sqrt(b[1][0])).toFixed(3)}, 10th ${mean((b) => Math.sqrt(b[k - 1][0])).toFixed(3)}; two points of one cluster ${(same / cnt).toFixed(3)}`);

  const views = [
    { name: 'float32 graph', params: { quantization: { ignore: true } } },
    { name: 'int8 + rescore os2', params: { quantization: { rescore: true, oversampling: 2 } } },
    { name: 'int8 + rescore os4', params: { quantization: { rescore: true, oversampling: 4 } } },
  ];
  // reachability: a stored vector as the query must find itself
  const rs = xorshift(99);
  const selfIds = Array.from({ length: 1000 }, () => Math.floor(rs() * n));
  for (const v of views) {
    v.self = {};
    for (const ef of [16, 64, 2048]) {
      let found = 0;
      for (let o = 0; o < selfIds.length; o += 100) {
        const out = await call(url, 'POST', '/collections/c/points/search/batch', {
          searches: selfIds.slice(o, o + 100).map((id) => ({ vector: Array.from(vectors[id]), limit: 1, params: { hnsw_ef: ef, ...v.params } })),
        });
        out.forEach((hits, i) => { if (hits[0] && hits[0].id === selfIds[o + i]) found++; });
      }
      v.self[ef] = found / selfIds.length;
    }
    v.search = Object.fromEntries(efs.map((ef) => [ef, { wall: 0, cpu: 0, recall: 0 }]));
  }
  for (let round = 0; round < rounds; round++) {
    for (const ef of efs) {
      for (const v of views) {
        const body = JSON.stringify({ searches: queries.map((q) => ({ vector: q, limit: k, params: { hnsw_ef: ef, ...v.params } })) });
        const c0 = cpuSec(proc.pid);
        const w0 = process.hrtime.bigint();
        const out = await call(url, 'POST', '/collections/c/points/search/batch', body);
        const wall = Number(process.hrtime.bigint() - w0) / 1e9;
        const cpu = Math.max(cpuSec(proc.pid) - c0, 0.01);
        let hit = 0;
        out.forEach((hits, i) => { hit += hits.filter((h) => truth[i].has(h.id)).length; });
        const e = v.search[ef];
        e.recall = hit / (k * nq);
        e.wall = Math.max(e.wall, nq / wall);
        e.cpu = Math.max(e.cpu, nq / cpu);
      }
    }
  }
  const at95 = (v, key) => {
    const pts = efs.map((ef) => v.search[ef]);
    for (let i = 0; i < pts.length; i++) {
      if (pts[i].recall >= 0.95) {
        if (i === 0) return pts[0][key];
        const a = pts[i - 1], b = pts[i];
        return a[key] + (0.95 - a.recall) / (b.recall - a.recall) * (b[key] - a[key]);
      }
    }
    return NaN;
  };
  const col = (s) => String(s).padStart(26);
  console.log(`\n${''.padEnd(30)}${views.map((v) => col(v.name)).join('')}`);
  const row = (label, f) => console.log(`${label.padEnd(30)}${views.map((v) => col(f(v))).join('')}`);
  row('self-search found, ef 16/64/2048', (v) => `${v.self[16].toFixed(3)} / ${v.self[64].toFixed(3)} / ${v.self[2048].toFixed(3)}`);
  row('ef: recall@10 / q/s wall / CPU', () => '');
  for (const ef of efs) row(`  ef=${ef}`, (v) => `${v.search[ef].recall.toFixed(3)} / ${Math.round(v.search[ef].wall)} / ${Math.round(v.search[ef].cpu)}`);
  row('q/s at 0.95 (interp.) wall/CPU', (v) => (isNaN(at95(v, 'wall')) ? 'not reached' : `${Math.round(at95(v, 'wall'))} / ${Math.round(at95(v, 'cpu'))}`));
  console.log(`load at end ${os.loadavg()[0].toFixed(1)}`);
} finally {
  proc.kill('SIGTERM');
  await new Promise((r) => proc.once('exit', r));
}
