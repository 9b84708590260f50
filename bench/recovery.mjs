// Crash recovery time (docs/RELIABILITY.md, "Crash recovery"): how long after a restart that
// follows `kill -9` a collection is green again, resumed from its graph checkpoint, next to the
// full-rebuild baseline measured in the same run.
//
//   node bench/recovery.mjs [points=100000] [rounds=3] [synthetic-dim]
//
// Without synthetic-dim the points are GloVe-100 (../shared/datasets/glove-100-angular-100k,
// cosine, at most 100,000); with it, clustered synthetic vectors of that dimension (any count).
// Steps, on one storage directory:
//   1. ingest (batches of 1,000, wait=false), wait until green, and SIGKILL the moment it is;
//   2. restart and time it to green — `rounds` times, each killed the moment it is green again;
//   3. for K in 1,000 and 10,000: with the collection green, put its checkpoint aside, write K
//      points (half new, half new vectors for existing ones, wait=true), SIGKILL, put the old
//      checkpoint back (the disk as it is when the server dies before the indexer's next
//      checkpoint), restart and time it to green;
//   4. baseline: SIGKILL, delete the checkpoint, restart and time the full rebuild to green.
// "serving" is when /healthz first answers (the points are loaded from LMDB; searches work,
// exactly, from then on); "green" is when GET /collections/{name} says so (graph linked and its
// checkpoint on disk).
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { clustered, xorshift } from './lib.mjs';

const n = Number(process.argv[2] || 100000);
const rounds = Number(process.argv[3] || 3);
const synthDim = Number(process.argv[4] || 0);
const COLL = 'recovery';
const bin = process.env.AEGIS_BIN || path.resolve('build/aegis');

function readFvecs(file, limit) {
  const buf = fs.readFileSync(file);
  const dim = buf.readInt32LE(0);
  const count = Math.min(limit, buf.length / (4 * (dim + 1)));
  const out = new Array(count);
  for (let i = 0; i < count; i++) {
    const off = i * 4 * (dim + 1) + 4;
    out[i] = new Float32Array(buf.buffer.slice(buf.byteOffset + off, buf.byteOffset + off + 4 * dim));
  }
  return { dim, vectors: out };
}

let dim, vectors, distance;
if (synthDim) {
  dim = synthDim;
  vectors = clustered(n, dim, 7, 256);
  distance = 'Euclid';
} else {
  const dir = process.env.GLOVE_DIR || path.resolve('../shared/datasets/glove-100-angular-100k');
  ({ dim, vectors } = readFvecs(path.join(dir, 'base.fvecs'), n));
  if (vectors.length < n) throw new Error(`the GloVe set has ${vectors.length} points; use synthetic vectors for more`);
  distance = 'Cosine';
}

const storage = fs.mkdtempSync(path.join(process.env.BENCH_TMP || os.tmpdir(), 'aegis-recovery-'));
const logFile = path.join(storage, '..', `${path.basename(storage)}.log`);
let proc = null;
let port = 0;

async function freePort() {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => { const p = s.address().port; s.close(() => resolve(p)); });
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function get(pathName) {
  const res = await fetch(`http://127.0.0.1:${port}${pathName}`);
  return res.json();
}

async function call(method, pathName, body) {
  const res = await fetch(`http://127.0.0.1:${port}${pathName}`, {
    method, headers: { 'content-type': 'application/json' },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  const json = await res.json();
  if (!res.ok) throw new Error(`${method} ${pathName}: ${res.status} ${JSON.stringify(json).slice(0, 300)}`);
  return json.result;
}

// Starts the server on the storage; resolves {serving, green} seconds after the spawn (green:
// null when not asked to wait for it).
async function start(untilGreen = true) {
  const t0 = process.hrtime.bigint();
  const secs = () => Number(process.hrtime.bigint() - t0) / 1e9;
  const log = fs.openSync(logFile, 'a');
  proc = spawn(bin, ['serve', '--insecure', '--storage', storage, '--port', String(port)], {
    stdio: ['ignore', 'ignore', log],
    env: { ...process.env, AEGIS__SERVICE__ACCESS_LOG: 'false' },
  });
  fs.closeSync(log);
  let serving = null;
  for (;;) {
    try {
      if (serving === null) {
        if ((await fetch(`http://127.0.0.1:${port}/healthz`)).ok) serving = secs();
        if (serving !== null && !untilGreen) return { serving, green: null };
      }
      if (serving !== null) {
        const info = await get(`/collections/${COLL}`);
        if (info.result?.status === 'green') return { serving, green: secs() };
      }
    } catch { /* not up yet */ }
    if (secs() > 1800) throw new Error('not green within 30 minutes');
    await sleep(10);
  }
}

async function kill9() {
  const p = proc;
  p.kill('SIGKILL');
  if (p.exitCode === null && p.signalCode === null) await new Promise((r) => p.once('exit', r));
}

async function waitGreen() {
  const t0 = Date.now();
  for (;;) {
    const info = await get(`/collections/${COLL}`);
    if (info.result?.status === 'green') return (Date.now() - t0) / 1000;
    await sleep(10);
  }
}

function body(ids, vecs) {
  const parts = ids.map((id, i) => `{"id":${id},"vector":[${Array.prototype.join.call(vecs[i], ',')}]}`);
  return `{"points":[${parts.join(',')}]}`;
}

function lastResume() {
  const lines = fs.readFileSync(logFile, 'utf8').split('\n').filter((l) => /hnsw: (resumed|.*queued for background)/.test(l));
  const l = lines[lines.length - 1] || '';
  const m = /(\d+) points kept, (\d+) dropped, (\d+) to link again/.exec(l);
  return m ? `kept ${m[1]}, dropped ${m[2]}, relinked ${m[3]}` : (/queued/.test(l) ? 'full rebuild' : '?');
}

function checkpointFile() {
  const dir = path.join(storage, 'index');
  const f = fs.readdirSync(dir).filter((x) => x.endsWith('.hnsw'));
  if (f.length !== 1) throw new Error(`expected one checkpoint in ${dir}, found ${f}`);
  return path.join(dir, f[0]);
}

const rows = [];
const rnd = xorshift(99);
const fmt = (x) => x.toFixed(2).padStart(7);
try {
  port = await freePort();
  await start(false);
  await call('PUT', `/collections/${COLL}`, { vectors: { size: dim, distance } });
  const t0 = Date.now();
  for (let i = 0; i < n; i += 1000) {
    const ids = [];
    for (let j = i; j < Math.min(n, i + 1000); j++) ids.push(j);
    await call('PUT', `/collections/${COLL}/points?wait=${i + 1000 >= n}`, body(ids, ids.map((j) => vectors[j])));
  }
  const ingest = (Date.now() - t0) / 1000;
  const indexed = await waitGreen();
  await kill9();
  console.log(`crash recovery: ${n} points x ${dim} dims (${synthDim ? 'synthetic, clustered' : 'GloVe-100'}, ${distance}), ` +
              `ingested in ${ingest.toFixed(1)} s, green ${indexed.toFixed(1)} s later; killed -9 the moment it was green`);

  // 2. killed the moment it is green, restarted.
  for (let r = 1; r <= rounds; r++) {
    const t = await start();
    rows.push({ what: `kill -9 at green, restart (round ${r})`, ...t, how: lastResume() });
    await kill9();
  }
  // 3. writes newer than the checkpoint.
  let nextId = n;
  for (const k of [1000, 10000]) {
    await start();
    const file = checkpointFile();
    const saved = fs.readFileSync(file);
    const ids = [], vecs = [];
    for (let i = 0; i < k; i++) {
      const src = vectors[Math.floor(rnd() * vectors.length)];
      const v = Float32Array.from(src, (x) => x + (rnd() - 0.5) * 0.05);
      ids.push(i % 2 === 0 ? nextId++ : Math.floor(rnd() * n));
      vecs.push(v);
    }
    for (let i = 0; i < k; i += 1000) {
      await call('PUT', `/collections/${COLL}/points?wait=true`, body(ids.slice(i, i + 1000), vecs.slice(i, i + 1000)));
    }
    await kill9();
    fs.writeFileSync(file, saved);
    const t = await start();
    rows.push({ what: `${k} points written after the checkpoint`, ...t, how: lastResume() });
    await kill9();
  }
  // 4. the baseline: no checkpoint, the whole graph is linked again.
  fs.rmSync(checkpointFile());
  const t = await start();
  rows.push({ what: 'baseline: checkpoint deleted (full rebuild)', ...t, how: lastResume() });
  await kill9();
  console.log(`${'case'.padEnd(48)} ${'serving'.padStart(7)} ${'green'.padStart(7)}  graph`);
  for (const r of rows) console.log(`${r.what.padEnd(48)} ${fmt(r.serving)} ${fmt(r.green)}  ${r.how}`);
  console.log('seconds from the restart (spawn of the process); serving = /healthz answers');
} finally {
  if (proc && proc.exitCode === null && proc.signalCode === null) await kill9();
  fs.rmSync(storage, { recursive: true, force: true });
  fs.rmSync(logFile, { force: true });
}
