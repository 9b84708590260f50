// One process per storage directory and per port (issue 13, item 1): a second server on the same
// storage stops at once naming the directory and the holder's pid; a second server on a taken
// port stops with "address already in use" instead of sharing the port.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';

import { keyEnv } from './lib/auth.mjs';
import { freePort, runAegis, startServer } from './lib/server.mjs';

let srv;
const others = [];

before(async () => {
  srv = await startServer({ insecure: false, env: keyEnv() });
});

after(async () => {
  await srv?.cleanup();
  for (const d of others) fs.rmSync(d, { recursive: true, force: true });
});

test('a second server on the same storage directory refuses to start', async () => {
  const r = await runAegis(['serve', '--storage', srv.storage, '--port', String(await freePort())], { env: keyEnv() });
  assert.notEqual(r.code, 0, 'the second server must not run');
  assert.ok(r.stderr.includes(srv.storage), r.stderr);
  assert.ok(r.stderr.includes(`pid ${srv.proc.pid}`), r.stderr);
  // The first server is untouched.
  assert.equal((await srv.request('GET', '/healthz')).status, 200);
  assert.equal(fs.readFileSync(path.join(srv.storage, 'aegis.lock'), 'utf8').trim(), String(srv.proc.pid));
});

test('a second server on a taken port refuses to start', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'aegis-port-'));
  others.push(dir);
  const r = await runAegis(['serve', '--storage', dir, '--port', String(srv.port)], { env: keyEnv() });
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /address already in use/);
});

test('the lock goes with the process: after a stop (or a kill) the directory opens again', async () => {
  await srv.kill();
  await srv.start();
  assert.equal((await srv.request('GET', '/healthz')).status, 200);
  await srv.stop();
  await srv.start();
  assert.equal(fs.readFileSync(path.join(srv.storage, 'aegis.lock'), 'utf8').trim(), String(srv.proc.pid));
});
