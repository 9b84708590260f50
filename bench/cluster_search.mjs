// Search through a 3-shard collection on 3 cluster nodes vs the same points on one node without
// cluster settings (the baseline, measured in the same run, rounds interleaved).
// Starts a one-member etcd (port 7540) and four Aegis processes (7541-7544) on this machine.
//   node bench/cluster_search.mjs [points=30000] [queries=300] [concurrency=4]
// Prints q/s, p50 and p99 for exact and HNSW searches (limit 10), and the ratio cluster / single.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { clustered, xorshift } from './lib.mjs';

const n = Number(process.argv[2] || 30000);
const nq = Number(process.argv[3] || 300);
const conc = Number(process.argv[4] || 4);
const dim = 64;
const KEY = 'bench-cluster-root-key-0123456789';
const ETCD_BIN = ['/usr/bin/etcd', '/usr/local/bin/etcd'].find((p) => fs.existsSync(p));
if (!ETCD_BIN) {
  console.log('etcd is not installed (scripts/setup.sh installs etcd-server): nothing measured');
  process.exit(0);
}
const bin = process.env.AEGIS_BIN || path.resolve('build/aegis');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'aegis-bench-cluster-'));
const procs = [];
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function run(cmd, args, env = {}) {
  const p = spawn(cmd, args, { stdio: ['ignore', 'ignore', process.env.BENCH_VERBOSE ? 'inherit' : 'ignore'], env: { ...process.env, ...env } });
  procs.push(p);
  return p;
}
async function up(url, pathName = '/healthz') {
  for (let i = 0; i < 300; i++) {
    try {
      if ((await fetch(url + pathName, { method: pathName === '/healthz' ? 'GET' : 'POST', body: pathName === '/healthz' ? undefined : '{}' })).ok) return;
    } catch { /* not yet */ }
    await sleep(50);
  }
  throw new Error(`${url} did not start`);
}
async function call(url, method, p, body) {
  const r = await fetch(url + p, { method, headers: { 'content-type': 'application/json', 'api-key': KEY }, body: typeof body === 'string' ? body : JSON.stringify(body) });
  const j = await r.json();
  if (!r.ok) throw new Error(`${method} ${p}: ${r.status} ${JSON.stringify(j)}`);
  return j.result;
}

try {
  run(ETCD_BIN, ['--name', 'b0', '--data-dir', path.join(tmp, 'etcd'), '--listen-client-urls', 'http://127.0.0.1:7540',
    '--advertise-client-urls', 'http://127.0.0.1:7540', '--listen-peer-urls', 'http://127.0.0.1:7545',
    '--initial-advertise-peer-urls', 'http://127.0.0.1:7545', '--initial-cluster', 'b0=http://127.0.0.1:7545',
    '--logger', 'zap', '--log-level', 'error']);
  await up('http://127.0.0.1:7540', '/v3/maintenance/status');
  const env = { AEGIS__SERVICE__API_KEY: KEY, AEGIS__SERVICE__ACCESS_LOG: 'false' };
  const urls = [];
  for (let i = 0; i < 3; i++) {
    const port = 7541 + i;
    run(bin, ['serve', '--storage', path.join(tmp, `n${i}`), '--port', String(port)], {
      ...env, AEGIS__CLUSTER__ENABLED: 'true', AEGIS__CLUSTER__ETCD_ENDPOINTS: 'http://127.0.0.1:7540', AEGIS__CLUSTER__NODE_ID: `bench-${i}`,
    });
    urls.push(`http://127.0.0.1:${port}`);
    await up(urls[i]); // one at a time: the first writes the security stores' keys to etcd
  }
  run(bin, ['serve', '--storage', path.join(tmp, 'single'), '--port', '7544'], env);
  const single = 'http://127.0.0.1:7544';
  for (const u of [...urls, single]) await up(u);

  const vectors = clustered(n, dim, 42);
  const rnd = xorshift(7);
  const queries = Array.from({ length: nq }, () => vectors[Math.floor(rnd() * n)].map((x) => x + (rnd() - 0.5) * 0.05));
  await call(urls[0], 'PUT', '/collections/b', { vectors: { size: dim, distance: 'Dot' }, shard_number: 3 });
  await call(single, 'PUT', '/collections/b', { vectors: { size: dim, distance: 'Dot' } });
  for (const u of urls) {
    for (let i = 0; i < 100; i++) {
      try { await call(u, 'GET', '/collections/b'); break; } catch { await sleep(50); }
    }
  }
  for (let i = 0; i < n; i += 1000) {
    const parts = [];
    for (let j = i; j < Math.min(n, i + 1000); j++) parts.push(`{"id":${j},"vector":[${Array.prototype.join.call(vectors[j], ',')}]}`);
    const body = `{"points":[${parts.join(',')}]}`;
    await call(urls[i / 1000 % 3], 'PUT', '/collections/b/points?wait=true', body);
    await call(single, 'PUT', '/collections/b/points?wait=true', body);
  }
  for (const u of [...urls, single]) {
    for (;;) {
      if ((await call(u, 'GET', '/collections/b')).status === 'green') break;
      await sleep(200);
    }
  }

  // conc requests in flight; cluster requests spread over the three nodes.
  async function round(targets, exact) {
    const lat = [];
    let next = 0;
    const t0 = process.hrtime.bigint();
    await Promise.all(Array.from({ length: conc }, async (_, w) => {
      for (;;) {
        const qi = next++;
        if (qi >= queries.length) return;
        const body = `{"vector":[${Array.prototype.join.call(queries[qi], ',')}],"limit":10${exact ? ',"params":{"exact":true}' : ''}}`;
        const s = process.hrtime.bigint();
        await call(targets[(qi + w) % targets.length], 'POST', '/collections/b/points/search', body);
        lat.push(Number(process.hrtime.bigint() - s) / 1e6);
      }
    }));
    const secs = Number(process.hrtime.bigint() - t0) / 1e9;
    lat.sort((a, b) => a - b);
    return { qps: lat.length / secs, p50: lat[Math.floor(lat.length * 0.5)], p99: lat[Math.min(lat.length - 1, Math.floor(lat.length * 0.99))] };
  }
  const best = (a, b) => (!a || b.qps > a.qps ? b : a);
  for (const exact of [true, false]) {
    let s = null;
    let c = null;
    for (let r = 0; r < 3; r++) { // interleaved rounds, best of 3 each
      s = best(s, await round([single], exact));
      c = best(c, await round(urls, exact));
    }
    const f = (x) => `${x.qps.toFixed(0)} q/s, p50 ${x.p50.toFixed(2)} ms, p99 ${x.p99.toFixed(2)} ms`;
    console.log(`${exact ? 'exact' : 'hnsw '} n=${n} dim=${dim} limit=10 concurrency=${conc}: single node ${f(s)} | 3 nodes x 1 shard ${f(c)} | q/s ratio ${(c.qps / s.qps).toFixed(2)}, p99 ratio ${(c.p99 / s.p99).toFixed(2)}`);
  }
  console.log(`machine: ${os.cpus().length} cores, load average ${os.loadavg().map((x) => x.toFixed(1)).join(' ')} (all 5 processes share it)`);
} finally {
  for (const p of procs) p.kill('SIGTERM');
  await sleep(500);
  for (const p of procs) if (p.exitCode === null) p.kill('SIGKILL');
  fs.rmSync(tmp, { recursive: true, force: true });
}
