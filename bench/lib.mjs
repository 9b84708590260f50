// Shared helpers for the HTTP benchmarks: a seeded generator and a server launcher.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

export function xorshift(seed) {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13; s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5; s >>>= 0;
    return s / 4294967296;
  };
}

// Clustered data: `clusters` Gaussian-ish blobs, like the synthetic set of docs/BENCHMARKS.md.
export function clustered(n, dim, seed, clusters = 64) {
  const rnd = xorshift(seed);
  const centres = Array.from({ length: clusters }, () =>
    Float32Array.from({ length: dim }, () => rnd() * 2 - 1));
  const out = new Array(n);
  for (let i = 0; i < n; i++) {
    const c = centres[Math.floor(rnd() * clusters)];
    const v = new Float32Array(dim);
    for (let d = 0; d < dim; d++) v[d] = c[d] + (rnd() + rnd() + rnd() - 1.5) * 0.2;
    out[i] = v;
  }
  return out;
}

async function freePort() {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => { const p = s.address().port; s.close(() => resolve(p)); });
  });
}

// opts.env: extra environment; without opts.secure the server runs with --insecure.
/** nq queries near stored points: a random point of `vectors` plus uniform noise of ±0.05 per coordinate. */
export function nearQueries(vectors, nq, seed) {
  const r = xorshift(seed);
  return Array.from({ length: nq }, () => Array.from(vectors[Math.floor(r() * vectors.length)], (x) => x + (r() - 0.5) * 0.1));
}

/** Exact Euclidean top-k per query by brute force: per query, [squared distance, index] pairs
 * in ascending order (the ground truth the scale benches check the servers against). */
export function bruteTopK(vectors, queries, dim, k) {
  return queries.map((q) => {
    const best = [];
    for (let i = 0; i < vectors.length; i++) {
      const v = vectors[i];
      let d = 0;
      for (let j = 0; j < dim; j++) { const t = v[j] - q[j]; d += t * t; }
      if (best.length < k || d < best[best.length - 1][0]) {
        let p = best.length < k ? best.length : k - 1;
        if (best.length < k) best.push(null);
        while (p > 0 && best[p - 1][0] > d) { best[p] = best[p - 1]; p--; }
        best[p] = [d, i];
      }
    }
    return best;
  });
}

/** The scale benches' data: n clustered vectors (seed 42), nq queries near them (seed 7) and their
 * exact top-k (truthList: [distance², index] pairs; truth: the index sets), timed in truthSec. */
export function scaleData(n, dim, nq, k) {
  const vectors = clustered(n, dim, 42);
  const queries = nearQueries(vectors, nq, 7);
  const t0 = Date.now();
  const truthList = bruteTopK(vectors, queries, dim, k);
  const truth = truthList.map((b) => new Set(b.map((x) => x[1])));
  return { vectors, queries, truthList, truth, truthSec: (Date.now() - t0) / 1000 };
}

export async function startServer(opts = {}) {
  const bin = process.env.AEGIS_BIN || path.resolve('build/aegis');
  const storage = fs.mkdtempSync(path.join(os.tmpdir(), 'aegis-bench-'));
  const port = await freePort();
  const args = ['serve', '--storage', storage, '--port', String(port)];
  if (!opts.secure) args.splice(1, 0, '--insecure');
  const proc = spawn(bin, args, {
    stdio: ['ignore', 'ignore', 'ignore'],
    env: { ...process.env, AEGIS__SERVICE__ACCESS_LOG: 'false', ...(opts.env || {}) },
  });
  const url = `http://127.0.0.1:${port}`;
  for (let i = 0; i < 200; i++) {
    try { if ((await fetch(`${url}/healthz`)).ok) break; } catch { /* not yet */ }
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    url,
    storage,
    pid: proc.pid,
    async stop() {
      proc.kill('SIGTERM');
      await new Promise((r) => proc.once('exit', r));
      fs.rmSync(storage, { recursive: true, force: true });
    },
  };
}

export async function call(url, method, pathName, body, headers = {}) {
  const res = await fetch(url + pathName, {
    method,
    headers: { 'content-type': 'application/json', ...headers },
    body: body === undefined ? undefined : (typeof body === 'string' ? body : JSON.stringify(body)),
  });
  const json = await res.json();
  if (!res.ok) throw new Error(`${method} ${pathName}: ${res.status} ${JSON.stringify(json)}`);
  return json.result;
}

export function batchBody(vectors, start, count) {
  // Hand-built JSON: JSON.stringify of Float32Array would produce objects, and this is faster.
  const parts = [];
  for (let i = start; i < start + count; i++) {
    parts.push(`{"id":${i},"vector":[${Array.prototype.join.call(vectors[i], ',')}],` +
               `"payload":{"group":${i % 100},"tag":"t${i % 7}"}}`);
  }
  return `{"points":[${parts.join(',')}]}`;
}

// Waits until background indexing has caught up (status green), so a measurement does not
// compete with graph construction.
export async function waitGreen(url, name, headers = {}, timeoutMs = 300000) {
  const t0 = Date.now();
  for (;;) {
    const info = await call(url, 'GET', `/collections/${name}`, undefined, headers);
    if (info.status === 'green') return (Date.now() - t0) / 1000;
    if (Date.now() - t0 > timeoutMs) throw new Error(`${name} still ${info.status}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}
