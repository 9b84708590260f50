// Exact-search latency through REST on 100,000 x 128 vectors (limit 10), side by side with a
// brute-force scan in this process (JavaScript, one thread) over the same vectors as the baseline.
//   node bench/search_http.mjs [points=100000] [queries=200]
import { batchBody, call, clustered, startServer, waitGreen, xorshift } from './lib.mjs';

const n = Number(process.argv[2] || 100000);
const nq = Number(process.argv[3] || 200);
const dim = 128;
const vectors = clustered(n, dim, 42);
const rnd = xorshift(7);
const queries = Array.from({ length: nq }, () => vectors[Math.floor(rnd() * n)].map((x) => x + (rnd() - 0.5) * 0.05));

function bruteForce(q) {
  const best = [];
  for (let i = 0; i < n; i++) {
    const v = vectors[i];
    let s = 0;
    for (let d = 0; d < dim; d++) { const t = v[d] - q[d]; s += t * t; }
    if (best.length < 10 || s < best[best.length - 1][1]) {
      best.push([i, s]);
      best.sort((a, b) => a[1] - b[1]);
      if (best.length > 10) best.pop();
    }
  }
  return best.map((b) => b[0]);
}

const pct = (a, p) => a[Math.min(a.length - 1, Math.floor(a.length * p))];

const srv = await startServer();
try {
  await call(srv.url, 'PUT', '/collections/b', { vectors: { size: dim, distance: 'Euclid' } });
  for (let i = 0; i < n; i += 1000) await call(srv.url, 'PUT', '/collections/b/points?wait=true', batchBody(vectors, i, Math.min(1000, n - i)));
  const linked = await waitGreen(srv.url, 'b');
  const lat = [];
  let agree = 0;
  const t0 = process.hrtime.bigint();
  for (const q of queries) {
    const body = `{"vector":[${Array.prototype.join.call(q, ',')}],"limit":10,"params":{"exact":true}}`;
    const s = process.hrtime.bigint();
    const hits = await call(srv.url, 'POST', '/collections/b/points/search', body);
    lat.push(Number(process.hrtime.bigint() - s) / 1e6);
    if (lat.length <= 20) {
      const truth = bruteForce(q);
      agree += hits.map((h) => h.id).filter((id) => truth.includes(id)).length / 10;
    }
  }
  const total = Number(process.hrtime.bigint() - t0) / 1e9;
  lat.sort((a, b) => a - b);
  // The same queries through the HNSW graph (default ef), for comparison.
  const hl = [];
  let hagree = 0;
  const th = process.hrtime.bigint();
  for (let qi = 0; qi < queries.length; qi++) {
    const body = `{"vector":[${Array.prototype.join.call(queries[qi], ',')}],"limit":10}`;
    const s = process.hrtime.bigint();
    const hits = await call(srv.url, 'POST', '/collections/b/points/search', body);
    hl.push(Number(process.hrtime.bigint() - s) / 1e6);
    if (qi < 20) {
      const truth = bruteForce(queries[qi]);
      hagree += hits.map((h) => h.id).filter((id) => truth.includes(id)).length / 10;
    }
  }
  const htotal = Number(process.hrtime.bigint() - th) / 1e9;
  hl.sort((a, b) => a - b);
  // Several concurrent clients through the graph: throughput and latency under load.
  const clients = 8;
  const cl = [];
  let next = 0;
  const tc = process.hrtime.bigint();
  await Promise.all(Array.from({ length: clients }, async () => {
    while (next < nq * 4) {
      const qi = next++ % nq;
      const body = `{"vector":[${Array.prototype.join.call(queries[qi], ',')}],"limit":10}`;
      const s = process.hrtime.bigint();
      await call(srv.url, 'POST', '/collections/b/points/search', body);
      cl.push(Number(process.hrtime.bigint() - s) / 1e6);
    }
  }));
  const ctotal = Number(process.hrtime.bigint() - tc) / 1e9;
  cl.sort((a, b) => a - b);
  const tb = process.hrtime.bigint();
  for (let i = 0; i < 20; i++) bruteForce(queries[i]);
  const bf = Number(process.hrtime.bigint() - tb) / 1e6 / 20;
  console.log(`exact search: ${n} x ${dim}, limit 10, ${nq} queries, one client (graph linked ${linked.toFixed(1)} s after the last write)`);
  console.log(`  aegis over HTTP   p50 ${pct(lat, 0.5).toFixed(2)} ms  p99 ${pct(lat, 0.99).toFixed(2)} ms  ${(nq / total).toFixed(0)} q/s`);
  console.log(`  aegis HNSW (HTTP)  p50 ${pct(hl, 0.5).toFixed(2)} ms  p99 ${pct(hl, 0.99).toFixed(2)} ms  ${(nq / htotal).toFixed(0)} q/s  recall@10 ${(hagree / 20).toFixed(3)} on 20 queries`);
  console.log(`  aegis HNSW, ${clients} clients  p50 ${pct(cl, 0.5).toFixed(2)} ms  p99 ${pct(cl, 0.99).toFixed(2)} ms  ${(cl.length / ctotal).toFixed(0)} q/s`);
  console.log(`  baseline JS scan  ${bf.toFixed(2)} ms/query (same vectors, in-process, one thread)`);
  console.log(`  agreement with the brute-force top-10 on 20 queries: ${(agree / 20).toFixed(3)}`);
} finally {
  await srv.stop();
}
