// What the cluster suites share: starting one member of a loopback etcd cluster, and waiting for a
// condition that other nodes reach through their watch.
import assert from 'node:assert/strict';
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

/** Waits until the etcd member on port reports a leader (the cluster can take writes). */
export async function etcdLeader(port, timeoutMs = 15000 * TIME_SCALE) {
  await until('an etcd leader', async () => {
    const r = await fetch(`http://127.0.0.1:${port}/v3/maintenance/status`, {
      method: 'POST', body: '{}', signal: AbortSignal.timeout(1000),
    });
    const s = await r.json();
    return !!s.leader && s.leader !== '0';
  }, timeoutMs);
}

/**
 * Request helpers presenting `key` unless other options are given: call answers the whole
 * response, ok asserts a 200 and answers its result.
 */
export function caller(key) {
  const root = { headers: { 'api-key': key } };
  const call = (node, method, p, body, opts = root) => node.request(method, p, body, opts);
  const ok = async (node, method, p, body, opts = root) => {
    const r = await call(node, method, p, body, opts);
    assert.equal(r.status, 200, `${method} ${p} on ${node.port}: ${r.status} ${r.text}`);
    return r.json.result;
  };
  return { root, call, ok };
}
