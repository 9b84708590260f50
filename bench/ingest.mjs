// Ingestion rate through REST: 128-d points in batches of 1,000, wait=true (durable before the
// answer), in the four body forms — records with the unnamed vector, the column (`batch`) form,
// records with a named vector, the column form with a named vector — one client, HNSW m=16
// (linked in the background). With AEGIS_BENCH_BASE=<another aegis binary> the same loads run
// against that binary too, interleaved form by form, as the baseline of the same run. Each row
// also gives the server's CPU (utime+stime of every thread, from /proc) and this client's.
// The bodies are built and UTF-8 encoded before the clock starts and written as they are on one
// keep-alive connection, so the client costs the two shared cores little (the target is the
// server's rate); AEGIS_INGEST_CLIENT=fetch sends the same bodies as strings through fetch()
// instead, the client this script used before, whose own CPU was ~20 us per point.
//   node bench/ingest.mjs [points=100000]
import fs from 'node:fs';
import net from 'node:net';
import { call, clustered, startServer } from './lib.mjs';

/** The server process's utime + stime in seconds, all threads (the background linker too). */
function serverCpu(pid) {
  const f = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const v = f.slice(f.lastIndexOf(')') + 2).split(' ');
  return (Number(v[11]) + Number(v[12])) / 100; // fields 14, 15; CLK_TCK is 100 on Linux
}

/** One keep-alive HTTP/1.1 connection that sends prebuilt request bodies (Buffers). */
export function rawConnection(url) {
  const u = new URL(url);
  const sock = net.connect(Number(u.port), u.hostname);
  sock.setNoDelay(true);
  let buf = Buffer.alloc(0), waiter = null;
  sock.on('data', (d) => { buf = buf.length ? Buffer.concat([buf, d]) : d; if (waiter) waiter(); });
  sock.on('error', (e) => { if (waiter) waiter(e); });
  const ready = new Promise((r, j) => { sock.once('connect', r); sock.once('error', j); });
  return {
    async put(pathName, body) {
      await ready;
      sock.write(`PUT ${pathName} HTTP/1.1\r\nHost: ${u.host}\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n`);
      sock.write(body);
      for (;;) {
        const he = buf.indexOf('\r\n\r\n');
        if (he >= 0) {
          const head = buf.subarray(0, he).toString('latin1');
          const m = /content-length:\s*(\d+)/i.exec(head);
          if (!m) throw new Error(`no content-length in the answer: ${head}`);
          const total = he + 4 + Number(m[1]);
          if (buf.length >= total) {
            const status = Number(head.slice(9, 12));
            const text = buf.subarray(he + 4, total).toString('utf8');
            buf = buf.subarray(total);
            if (status !== 200) throw new Error(`PUT ${pathName}: ${status} ${text}`);
            return JSON.parse(text).result;
          }
        }
        const e = await new Promise((r) => { waiter = r; });
        waiter = null;
        if (e) throw e;
      }
    },
    close() { sock.end(); },
  };
}

/** CPU seconds of the server's background indexer: its threads at nice 19 (the linker, named
 * ag-indexer; found by priority so that older builds, whose thread has no name, count too). */
function indexerCpu(pid) {
  let sum = 0;
  for (const t of fs.readdirSync(`/proc/${pid}/task`)) {
    try {
      const f = fs.readFileSync(`/proc/${pid}/task/${t}/stat`, 'utf8');
      const v = f.slice(f.lastIndexOf(')') + 2).split(' ');
      if (Number(v[16]) === 19) sum += (Number(v[11]) + Number(v[12])) / 100; // field 19: nice
    } catch { /* the thread ended */ }
  }
  return sum;
}

const n = Number(process.argv[2] || 100000);
const viaFetch = process.env.AEGIS_INGEST_CLIENT === 'fetch';
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
    for (let i = 0; i < n; i += batch) {
      const text = make(i, Math.min(batch, n - i));
      bodies.push(viaFetch ? text : Buffer.from(text, 'utf8'));
    }
    const named = form.endsWith(', named');
    for (const [who, srv] of servers) {
      const name = `ingest_${k++}`;
      const v = { size: dim, distance: 'Euclid' };
      await call(srv.url, 'PUT', `/collections/${name}`, { vectors: named ? { v } : v, hnsw_config: { m: 16 } });
      const t0 = process.hrtime.bigint();
      const c0 = process.cpuUsage(), s0 = serverCpu(srv.pid), i0 = indexerCpu(srv.pid);
      const conn = viaFetch ? null : rawConnection(srv.url);
      for (const body of bodies) {
        const res = viaFetch ? await call(srv.url, 'PUT', `/collections/${name}/points?wait=true`, body)
          : await conn.put(`/collections/${name}/points?wait=true`, body);
        if (res.status !== 'completed') throw new Error(`upsert answered ${JSON.stringify(res)}`);
      }
      const s = Number(process.hrtime.bigint() - t0) / 1e9;
      const c1 = process.cpuUsage(c0), s1 = serverCpu(srv.pid), i1 = indexerCpu(srv.pid);
      if (conn) conn.close();
      const count = (await call(srv.url, 'POST', `/collections/${name}/points/count`, {})).count;
      if (count !== n) throw new Error(`expected ${n} points, found ${count}`);
      await call(srv.url, 'DELETE', `/collections/${name}`);
      results.push({ form, who, seconds: s, rate: n / s, server: s1 - s0, indexer: i1 - i0, client: (c1.user + c1.system) / 1e6 });
    }
  }
  console.log(`ingestion: ${n} points x ${dim} dims, batches of ${batch}, wait=true, one client (${viaFetch ? 'fetch, string bodies' : 'prebuilt bodies, one keep-alive socket'})`);
  for (const r of results)
    console.log(`  ${r.form.padEnd(17)} ${r.who.padEnd(10)}  ${r.seconds.toFixed(2)} s  ${String(Math.round(r.rate)).padStart(6)} points/s` +
      `  CPU server ${r.server.toFixed(2)} s (${(r.server / n * 1e6).toFixed(1)} us/point;` +
      ` without the linker ${((r.server - r.indexer) / n * 1e6).toFixed(1)}), client ${r.client.toFixed(2)} s`);
  console.log(`load average at the end: ${fs.readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')}`);
} finally {
  for (const [, srv] of servers) await srv.stop();
}
