// Ingestion rate through REST: 128-d points in batches of 1,000, wait=true (durable before the
// answer), in the four body forms — records with the unnamed vector, the column (`batch`) form,
// records with a named vector, the column form with a named vector — one client, HNSW m=16
// (linked in the background). With AEGIS_BENCH_BASE=<another aegis binary> the same loads run
// against that binary too, interleaved form by form, as the baseline of the same run. Each row
// also gives the server's CPU (utime+stime of every thread, from /proc) and this client's.
//   node bench/ingest.mjs [points=100000]
import fs from 'node:fs';
import { call, clustered, startServer } from './lib.mjs';

/** The server process's utime + stime in seconds, all threads (the background linker too). */
function serverCpu(pid) {
  const f = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const v = f.slice(f.lastIndexOf(')') + 2).split(' ');
  return (Number(v[11]) + Number(v[12])) / 100; // fields 14, 15; CLK_TCK is 100 on Linux
}

const n = Number(process.argv[2] || 100000);
const dim = 128, batch = 1000;
const vectors = clustered(n, dim, 42);
const row = (i) => `[${Array.prototype.join.call(vectors[i], ',')}]`;
const payload = (i) => `{"group":${i % 100},"tag":"t${i % 7}"}`;
const forms = {
  'records, unnamed': (s, c) => {
    const p = [];
    for (let i = s; i < s + c; i++) p.push(`{"id":${i},"vector":${row(i)},"payload":${payload(i)}}`);
    return `{"points":[${p.join(',')}]}`;
  },
  'batch, unnamed': (s, c) => {
    const ids = [], vs = [], ps = [];
    for (let i = s; i < s + c; i++) { ids.push(i); vs.push(row(i)); ps.push(payload(i)); }
    return `{"batch":{"ids":[${ids.join(',')}],"vectors":[${vs.join(',')}],"payloads":[${ps.join(',')}]}}`;
  },
  'records, named': (s, c) => {
    const p = [];
    for (let i = s; i < s + c; i++) p.push(`{"id":${i},"vector":{"v":${row(i)}},"payload":${payload(i)}}`);
    return `{"points":[${p.join(',')}]}`;
  },
  'batch, named': (s, c) => {
    const ids = [], vs = [], ps = [];
    for (let i = s; i < s + c; i++) { ids.push(i); vs.push(row(i)); ps.push(payload(i)); }
    return `{"batch":{"ids":[${ids.join(',')}],"vectors":{"v":[${vs.join(',')}]},"payloads":[${ps.join(',')}]}}`;
  },
};

const servers = [['this build', await startServer()]];
if (process.env.AEGIS_BENCH_BASE) {
  const saved = process.env.AEGIS_BIN;
  process.env.AEGIS_BIN = process.env.AEGIS_BENCH_BASE;
  servers.unshift(['baseline', await startServer()]);
  if (saved === undefined) delete process.env.AEGIS_BIN; else process.env.AEGIS_BIN = saved;
}
try {
  const results = [];
  let k = 0;
  for (const [form, make] of Object.entries(forms)) {
    const bodies = [];
    for (let i = 0; i < n; i += batch) bodies.push(make(i, Math.min(batch, n - i)));
    const named = form.endsWith(', named');
    for (const [who, srv] of servers) {
      const name = `ingest_${k++}`;
      const v = { size: dim, distance: 'Euclid' };
      await call(srv.url, 'PUT', `/collections/${name}`, { vectors: named ? { v } : v, hnsw_config: { m: 16 } });
      const t0 = process.hrtime.bigint();
      const c0 = process.cpuUsage(), s0 = serverCpu(srv.pid);
      for (const body of bodies) await call(srv.url, 'PUT', `/collections/${name}/points?wait=true`, body);
      const s = Number(process.hrtime.bigint() - t0) / 1e9;
      const c1 = process.cpuUsage(c0), s1 = serverCpu(srv.pid);
      const count = (await call(srv.url, 'POST', `/collections/${name}/points/count`, {})).count;
      if (count !== n) throw new Error(`expected ${n} points, found ${count}`);
      await call(srv.url, 'DELETE', `/collections/${name}`);
      results.push({ form, who, seconds: s, rate: n / s, server: s1 - s0, client: (c1.user + c1.system) / 1e6 });
    }
  }
  console.log(`ingestion: ${n} points x ${dim} dims, batches of ${batch}, wait=true, one client`);
  for (const r of results)
    console.log(`  ${r.form.padEnd(17)} ${r.who.padEnd(10)}  ${r.seconds.toFixed(2)} s  ${String(Math.round(r.rate)).padStart(6)} points/s` +
      `  CPU server ${r.server.toFixed(2)} s (${(r.server / n * 1e6).toFixed(1)} us/point), client ${r.client.toFixed(2)} s`);
  console.log(`load average at the end: ${fs.readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')}`);
} finally {
  for (const [, srv] of servers) await srv.stop();
}
