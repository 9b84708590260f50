// What the cluster suites share: starting one member of a loopback etcd cluster, and waiting for a
// condition that other nodes reach through their watch.
import { spawn } from 'node:child_process';
import path from 'node:path';

import { TIME_SCALE, sleep } from '../../e2e/lib/server.mjs';

/**
 * Starts member i of an etcd cluster whose members listen for clients on ports[j] and for peers on
 * ports[j] + 1, keeping its data under dir/<prefix><i>. Returns {proc, exited}; the caller kills it.
 */
export function startEtcd(bin, { ports, i, dir, prefix, token }) {
  const port = ports[i];
  const cluster = ports.map((p, j) => `${prefix}${j}=http://127.0.0.1:${p + 1}`).join(',');
  const proc = spawn(bin, [
    '--name', `${prefix}${i}`, '--data-dir', path.join(dir, `${prefix}${i}`),
    '--listen-client-urls', `http://127.0.0.1:${port}`,
    '--advertise-client-urls', `http://127.0.0.1:${port}`,
    '--listen-peer-urls', `http://127.0.0.1:${port + 1}`,
    '--initial-advertise-peer-urls', `http://127.0.0.1:${port + 1}`,
    '--initial-cluster', cluster, '--initial-cluster-token', token,
    '--initial-cluster-state', 'new',
    '--heartbeat-interval', '50', '--election-timeout', '500',
    '--logger', 'zap', '--log-level', 'error',
  ], { stdio: ['ignore', 'ignore', 'ignore'] });
  const exited = new Promise((r) => proc.on('exit', r));
  return { proc, exited };
}

/** Polls fn every 50 ms until it returns true; throws (naming what, and fn's last error) after timeoutMs. */
export async function until(what, fn, timeoutMs = 15000 * TIME_SCALE) {
  const end = Date.now() + timeoutMs;
  let last;
  for (;;) {
    try {
      if (await fn()) return;
    } catch (e) {
      last = e;
    }
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}${last ? `: ${last.message}` : ''}`);
    await sleep(50);
  }
}
