// Snapshot and restore of 100,000 x 128 vectors with payloads through REST, and search latency
// while a snapshot is being written (it reads from one LMDB read transaction and must not stall
// searches). Baseline: the same searches with no snapshot running, measured in the same run.
//   node bench/snapshot_http.mjs [points=100000] [queries=400]
import { batchBody, call, clustered, startServer, waitGreen, xorshift } from './lib.mjs';

const n = Number(process.argv[2] || 100000);
const nq = Number(process.argv[3] || 400);
const dim = 128;
const vectors = clustered(n, dim, 42);
const rnd = xorshift(9);
const queries = Array.from({ length: nq }, () => vectors[Math.floor(rnd() * n)]);
const pct = (a, p) => a.slice().sort((x, y) => x - y)[Math.min(a.length - 1, Math.floor(a.length * p))];
const ms = (t0) => Number(process.hrtime.bigint() - t0) / 1e6;

async function searches(url, stopWhen) {
  const lat = [];
  for (let i = 0; ; i++) {
    if (stopWhen ? stopWhen() : i >= nq) break;
    const q = queries[i % nq];
    const t0 = process.hrtime.bigint();
    await call(url, 'POST', '/collections/b/points/search', `{"vector":[${Array.prototype.join.call(q, ',')}],"limit":10}`);
    lat.push(ms(t0));
  }
  return lat;
}

const srv = await startServer();
try {
  await call(srv.url, 'PUT', '/collections/b', { vectors: { size: dim, distance: 'Cosine' } });
  let t0 = process.hrtime.bigint();
  for (let i = 0; i < n; i += 1000) await call(srv.url, 'PUT', '/collections/b/points?wait=true', batchBody(vectors, i, Math.min(1000, n - i)));
  const ingest = ms(t0);
  await waitGreen(srv.url, 'b', {}, 1800000);
  const base = await searches(srv.url);

  let done = false;
  t0 = process.hrtime.bigint();
  const snapP = call(srv.url, 'POST', '/collections/b/snapshots?wait=true').then((r) => { done = true; return r; });
  const during = await searches(srv.url, () => done);
  const snap = await snapP;
  const snapMs = ms(t0);

  // a restore into another collection must not stall searches of b (docs/SECURITY.md
  // "Snapshots": the catalog lock is held only for the swap)
  let restored = false;
  t0 = process.hrtime.bigint();
  const restoreP = call(srv.url, 'PUT', '/collections/r/snapshots/recover', { location: `file://${srv.storage}/snapshots/collections/b/${snap.name}` }).then(() => { restored = true; });
  const duringRestore = await searches(srv.url, () => restored);
  await restoreP;
  const restoreMs = ms(t0);
  const count = (await call(srv.url, 'POST', '/collections/r/points/count', { exact: true })).count;
  t0 = process.hrtime.bigint();
  await waitGreen(srv.url, 'r', {}, 1800000);
  const greenMs = ms(t0);

  console.log(`points ${n} x ${dim} with payloads; ingest ${(ingest / 1000).toFixed(1)} s`);
  console.log(`snapshot: ${(snapMs / 1000).toFixed(2)} s, ${(snap.size / 1048576).toFixed(1)} MiB (${(snap.size / n).toFixed(0)} B/point)`);
  console.log(`restore (recover file://: records staged and loaded, then swapped in): ${(restoreMs / 1000).toFixed(2)} s, ${count} points; graph ready after a further ${(greenMs / 1000).toFixed(2)} s`);
  console.log(`search p50/p99 without a snapshot (baseline): ${pct(base, 0.5).toFixed(2)} / ${pct(base, 0.99).toFixed(2)} ms (${base.length} queries)`);
  console.log(`search p50/p99 during the snapshot:           ${pct(during, 0.5).toFixed(2)} / ${pct(during, 0.99).toFixed(2)} ms (${during.length} queries)`);
  console.log(`search p50/p99/max of b during the restore:   ${pct(duringRestore, 0.5).toFixed(2)} / ${pct(duringRestore, 0.99).toFixed(2)} / ${Math.max(...duringRestore).toFixed(2)} ms (${duringRestore.length} queries)`);
} finally {
  await srv.stop();
}
