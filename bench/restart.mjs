// Start-up time on an existing storage directory, two (or more) binaries interleaved on the same
// data so a loaded machine affects them alike: SIGTERM, start, time to /healthz and until every
// collection is green, the server's CPU time by then (/proc/<pid>/stat), heap (RssAnon) once green.
//   AEGIS_BINS=<before>/build/aegis,<after>/build/aegis node bench/restart.mjs <storage> [rounds=3] [port=7400]
// The storage comes from `AEGIS_SCALE_KEEP=1 node bench/scale.mjs ...` (it prints the kept paths);
// every binary must read the same on-disk format.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { call } from './lib.mjs';

const storage = process.argv[2];
const rounds = Number(process.argv[3] || 3);
const port = Number(process.argv[4] || 7400);
const bins = (process.env.AEGIS_BINS || path.resolve('build/aegis')).split(',');
if (!storage || !fs.existsSync(storage)) throw new Error('usage: node bench/restart.mjs <storage> [rounds] [port]');
const url = `http://127.0.0.1:${port}`;

// utime + stime of the whole process (every thread), seconds: the start-up's CPU cost, which a
// loaded machine does not inflate the way it does wall time.
function cpuSec(pid) {
  const f = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const rest = f.slice(f.lastIndexOf(')') + 2).split(' ');
  return (Number(rest[11]) + Number(rest[12])) / 100; // USER_HZ is 100 on Linux
}

function rssAnon(pid) {
  const m = /RssAnon:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) * 1024 : NaN;
}

async function once(bin) {
  const t0 = process.hrtime.bigint();
  const proc = spawn(bin, ['serve', '--insecure', '--storage', storage, '--port', String(port)], {
    stdio: ['ignore', 'ignore', 'ignore'],
    env: { ...process.env, AEGIS__SERVICE__ACCESS_LOG: 'false' },
  });
  const since = () => Number(process.hrtime.bigint() - t0) / 1e9;
  for (let i = 0; ; i++) {
    try { if ((await fetch(`${url}/healthz`)).ok) break; } catch { /* not yet */ }
    if (i > 20000) throw new Error(`${bin}: no answer`);
    await new Promise((r) => setTimeout(r, 10));
  }
  const health = since();
  const names = (await call(url, 'GET', '/collections')).collections.map((c) => c.name);
  for (const name of names) {
    for (;;) {
      if ((await call(url, 'GET', `/collections/${name}`)).status === 'green') break;
      await new Promise((r) => setTimeout(r, 10));
    }
  }
  const green = since();
  const cpu = cpuSec(proc.pid);
  const heap = rssAnon(proc.pid);
  proc.kill('SIGTERM');
  await new Promise((r) => proc.once('exit', r));
  return { health, green, cpu, heap };
}

console.log(`restart: ${storage}, ${rounds} rounds, load ${os.loadavg()[0].toFixed(1)} at start`);
const res = bins.map(() => []);
for (let r = 0; r < rounds; r++) {
  for (let b = 0; b < bins.length; b++) {
    const o = await once(bins[b]);
    res[b].push(o);
    console.log(`  round ${r} ${bins[b]}: healthz ${o.health.toFixed(2)} s, green ${o.green.toFixed(2)} s (CPU ${o.cpu.toFixed(2)} s), heap ${(o.heap / 1048576).toFixed(0)} MB`);
  }
}
const med = (a) => { const s = [...a].sort((x, y) => x - y); return s[Math.floor(s.length / 2)]; };
for (let b = 0; b < bins.length; b++) {
  console.log(`${bins[b]}: median healthz ${med(res[b].map((o) => o.health)).toFixed(2)} s, green ${med(res[b].map((o) => o.green)).toFixed(2)} s, CPU to green ${med(res[b].map((o) => o.cpu)).toFixed(2)} s, heap ${(med(res[b].map((o) => o.heap)) / 1048576).toFixed(0)} MB`);
}
if (bins.length > 1) console.log(`ratio ${bins[1]} / ${bins[0]}: green ${(med(res[1].map((o) => o.green)) / med(res[0].map((o) => o.green))).toFixed(2)}, CPU ${(med(res[1].map((o) => o.cpu)) / med(res[0].map((o) => o.cpu))).toFixed(2)}; load at end ${os.loadavg()[0].toFixed(1)}`);
