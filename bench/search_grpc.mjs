// The same search through gRPC (@grpc/grpc-js, Qdrant's protos) and REST (fetch, keep-alive),
// one request at a time, on n x 128 vectors (HNSW, limit 10, with payload): client-side latency
// p50/p99 and the server's CPU time per request (utime+stime of the process from /proc), REST as
// the baseline; then the same for the universal query (POST .../points/query vs Points/Query).
// Both answers are compared for every query. PORT / GRPC_PORT pick the ports (default: free ones).
//   node bench/search_grpc.mjs [points=20000] [queries=1000]
import { execSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import grpc from '@grpc/grpc-js';
import protoLoader from '@grpc/proto-loader';
import { batchBody, call, clustered, waitGreen, xorshift } from './lib.mjs';
import { freePort } from '../tests/e2e/lib/server.mjs';

const n = Number(process.argv[2] || 20000);
const nq = Number(process.argv[3] || 1000);
const dim = 128;
const vectors = clustered(n, dim, 42);
const rnd = xorshift(7);
const queries = Array.from({ length: nq }, () => Array.from(vectors[Math.floor(rnd() * n)], (x) => x + (rnd() - 0.5) * 0.05));

const bin = process.env.AEGIS_BIN || path.resolve('build/aegis');
const storage = fs.mkdtempSync(path.join(os.tmpdir(), 'aegis-bench-'));
const port = Number(process.env.PORT) || (await freePort());
const gport = Number(process.env.GRPC_PORT) || (await freePort());
const proc = spawn(bin, ['serve', '--insecure', '--storage', storage, '--port', String(port)], {
  stdio: ['ignore', 'ignore', 'ignore'],
  env: { ...process.env, AEGIS__SERVICE__ACCESS_LOG: 'false', AEGIS__SERVICE__GRPC_PORT: String(gport) },
});
const url = `http://127.0.0.1:${port}`;
for (let i = 0; i < 200; i++) {
  try { if ((await fetch(`${url}/healthz`)).ok) break; } catch { /* not yet */ }
  await new Promise((r) => setTimeout(r, 50));
}
const TICK = Number(execSync('getconf CLK_TCK').toString().trim()) || 100;
// Seconds of CPU the server used so far (utime + stime, fields 14 and 15 of /proc/pid/stat).
const cpu = () => {
  const f = fs.readFileSync(`/proc/${proc.pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return (Number(f[11]) + Number(f[12])) / TICK;
};
const pct = (a, p) => a[Math.min(a.length - 1, Math.floor(a.length * p))];

const def = protoLoader.loadSync(['points_service.proto'], {
  includeDirs: [path.resolve('proto/qdrant')], keepCase: true, longs: Number, enums: String, oneofs: true,
});
const Points = grpc.loadPackageDefinition(def).qdrant.Points;
const client = new Points(`127.0.0.1:${gport}`, grpc.credentials.createInsecure());
const search = (q) => new Promise((res, rej) => client.Search({ collection_name: 'b', vector: q, limit: 10, with_payload: { enable: true } }, (e, v) => (e ? rej(e) : res(v))));
const query = (q) => new Promise((res, rej) => client.Query({ collection_name: 'b', query: { nearest: { dense: { data: q } } }, limit: 10, with_payload: { enable: true } }, (e, v) => (e ? rej(e) : res(v))));

try {
  await call(url, 'PUT', '/collections/b', { vectors: { size: dim, distance: 'Euclid' } });
  for (let i = 0; i < n; i += 1000) await call(url, 'PUT', '/collections/b/points?wait=true', batchBody(vectors, i, Math.min(1000, n - i)));
  await waitGreen(url, 'b');
  await search(queries[0]); // connect
  const run = async (label, fn) => {
    const lat = [];
    const c0 = cpu();
    const t0 = process.hrtime.bigint();
    const ids = [];
    for (const q of queries) {
      const s = process.hrtime.bigint();
      ids.push(await fn(q));
      lat.push(Number(process.hrtime.bigint() - s) / 1e6);
    }
    const wall = Number(process.hrtime.bigint() - t0) / 1e9;
    const used = cpu() - c0;
    lat.sort((a, b) => a - b);
    console.log(`${label.padEnd(10)} p50 ${pct(lat, 0.5).toFixed(3)} ms  p99 ${pct(lat, 0.99).toFixed(3)} ms  ` +
      `${(nq / wall).toFixed(0)} req/s  server CPU ${((used * 1e6) / nq).toFixed(0)} us/request`);
    return ids;
  };
  const restIds = await run('REST', async (q) => {
    const r = await call(url, 'POST', '/collections/b/points/search', `{"vector":[${q.join(',')}],"limit":10,"with_payload":true}`);
    return r.map((p) => p.id).join(',');
  });
  const grpcIds = await run('gRPC', async (q) => (await search(q)).result.map((p) => p.id.num).join(','));
  let same = 0;
  for (let i = 0; i < nq; i++) if (restIds[i] === grpcIds[i]) same++;
  console.log(`search: n=${n} dim=${dim} queries=${nq}: identical answers ${same}/${nq}`);
  const restQ = await run('REST query', async (q) => {
    const r = await call(url, 'POST', '/collections/b/points/query', `{"query":[${q.join(',')}],"limit":10,"with_payload":true}`);
    return r.points.map((p) => p.id).join(',');
  });
  const grpcQ = await run('gRPC Query', async (q) => (await query(q)).result.map((p) => p.id.num).join(','));
  same = 0;
  for (let i = 0; i < nq; i++) if (restQ[i] === grpcQ[i]) same++;
  console.log(`query: identical answers ${same}/${nq}`);
} finally {
  client.close();
  proc.kill('SIGTERM');
  await new Promise((r) => proc.once('exit', r));
  fs.rmSync(storage, { recursive: true, force: true });
}
