// Search throughput with and without authentication, one run, same data, interleaved rounds:
//   insecure server (no credential)  vs  secured server with an api-key  vs  the same with a JWT.
//   node bench/auth_http.mjs [points=20000] [queries=2000]
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { batchBody, call, clustered, startServer, waitGreen, xorshift } from './lib.mjs';

const n = Number(process.argv[2] || 20000);
const nq = Number(process.argv[3] || 2000);
const dim = 128;
const key = 'bench-auth-key-0123456789abcdef0123456789';
const vectors = clustered(n, dim, 42);
const rnd = xorshift(9);
const bodies = Array.from({ length: 200 }, () =>
  `{"vector":[${Array.prototype.join.call(vectors[Math.floor(rnd() * n)], ',')}],"limit":10}`);

const env = { AEGIS__SERVICE__API_KEY: key, AEGIS__SERVICE__JWT_RBAC: 'true' };
const open = await startServer();
const secured = await startServer({ secure: true, env });
const bin = process.env.AEGIS_BIN || path.resolve('build/aegis');
const jwt = execFileSync(bin, ['token', '--collection', 'b=r', '--exp', '1h'],
  { env: { ...process.env, AEGIS__SERVICE__API_KEY: key } }).toString().trim();

async function load(url, headers) {
  await call(url, 'PUT', '/collections/b', { vectors: { size: dim, distance: 'Dot' } }, headers);
  for (let i = 0; i < n; i += 1000)
    await call(url, 'PUT', '/collections/b/points?wait=true', batchBody(vectors, i, Math.min(1000, n - i)), headers);
  await waitGreen(url, 'b', headers);
}

async function rate(url, headers, count) {
  // 4 concurrent clients, like a small application server pool.
  let next = 0;
  const t0 = process.hrtime.bigint();
  await Promise.all([0, 1, 2, 3].map(async () => {
    while (next < count) {
      const i = next++;
      await call(url, 'POST', '/collections/b/points/search', bodies[i % bodies.length], headers);
    }
  }));
  return count / (Number(process.hrtime.bigint() - t0) / 1e9);
}

try {
  await load(open.url, {});
  await load(secured.url, { 'api-key': key });
  const cases = [
    ['no authentication (--insecure)', open.url, {}],
    ['api-key header', secured.url, { 'api-key': key }],
    ['JWT (Bearer, cached)', secured.url, { authorization: `Bearer ${jwt}` }],
  ];
  const best = cases.map(() => 0);
  for (let round = 0; round < 3; round++)
    for (let c = 0; c < cases.length; c++)
      best[c] = Math.max(best[c], await rate(cases[c][1], cases[c][2], nq));
  console.log(`search throughput, ${n} x ${dim} Dot, limit 10, 4 clients, best of 3 interleaved rounds`);
  for (let c = 0; c < cases.length; c++)
    console.log(`  ${cases[c][0].padEnd(32)} ${best[c].toFixed(0).padStart(6)} q/s  ${(100 * best[c] / best[0]).toFixed(1)} %`);
  console.log('  target: authenticated >= 95 % of unauthenticated (docs/BENCHMARKS.md)');
} finally {
  await open.stop();
  await secured.stop();
}
