// Ingestion rate through REST: 128-d points in batches of 1,000, wait=true (durable before the
// answer), side by side with wait=false in the same run as the baseline.
//   node bench/ingest.mjs [points=100000]
import { batchBody, call, clustered, startServer } from './lib.mjs';

const n = Number(process.argv[2] || 100000);
const dim = 128, batch = 1000;
const vectors = clustered(n, dim, 42);
const bodies = [];
for (let i = 0; i < n; i += batch) bodies.push(batchBody(vectors, i, Math.min(batch, n - i)));

const srv = await startServer();
try {
  const results = [];
  // The graph is linked in the background; the third row shows the same load with no graph.
  for (const [wait, m] of [[true, 16], [false, 16], [true, 0]]) {
    const name = `ingest_${wait}_${m}`;
    await call(srv.url, 'PUT', `/collections/${name}`,
      { vectors: { size: dim, distance: 'Euclid' }, hnsw_config: { m } });
    const t0 = process.hrtime.bigint();
    for (const body of bodies) await call(srv.url, 'PUT', `/collections/${name}/points?wait=${wait}`, body);
    const s = Number(process.hrtime.bigint() - t0) / 1e9;
    const count = (await call(srv.url, 'POST', `/collections/${name}/points/count`, {})).count;
    if (count !== n) throw new Error(`expected ${n} points, found ${count}`);
    results.push({ wait, m, seconds: s, rate: n / s });
  }
  console.log(`ingestion: ${n} points x ${dim} dims, batches of ${batch}, one client`);
  for (const r of results)
    console.log(`  wait=${String(r.wait).padEnd(5)} ${r.m ? 'HNSW m=16' : 'no graph '}  ${r.seconds.toFixed(2)} s  ${Math.round(r.rate)} points/s`);
  console.log(`  wait=true / wait=false = ${(results[0].rate / results[1].rate).toFixed(2)}`);
} finally {
  await srv.stop();
}
