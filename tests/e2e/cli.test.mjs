// The administrators' command line (issue 14; docs/API.md "Command line"): `aegis users|roles|
// keys|backup|import` against a running server, --help on every subcommand, refusals reported with the
// server's message and exit status 1, bad input with 2.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';

import { ROOT_KEY, WRONG_KEY, keyEnv } from './lib/auth.mjs';
import { runAegis, startServer } from './lib/server.mjs';

const root = { 'api-key': ROOT_KEY };

describe('aegis users|roles|keys|backup|import', () => {
  let srv, env, dir;
  before(async () => {
    srv = await startServer({ insecure: false, env: keyEnv() });
    env = { AEGIS_URL: srv.url, AEGIS_API_KEY: ROOT_KEY };
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'aegis-cli-'));
  });
  after(async () => {
    await srv?.cleanup();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  test('--help on every subcommand, without a key', async () => {
    for (const cmd of ['users', 'roles', 'keys', 'backup', 'import', 'keygen']) {
      const r = await runAegis([cmd, '--help']);
      assert.equal(r.code, 0, `${cmd} --help: ${r.stderr}`);
      assert.match(r.stdout, new RegExp(`^usage: aegis ${cmd}`), cmd);
    }
    const top = await runAegis(['--help']);
    const sched = await runAegis(['backup', 'schedules', 'create', '--help']);
    assert.equal(sched.code, 0);
    assert.match(sched.stdout, /aegis backup schedules create --cron/);
    for (const cmd of ['users', 'roles', 'keys', 'backup', 'import']) assert.match(top.stdout, new RegExp(`\\n  ${cmd} `));
    const nokey = await runAegis(['users', 'list'], { env: { AEGIS_URL: srv.url, AEGIS_API_KEY: '' } });
    assert.equal(nokey.code, 2);
    assert.match(nokey.stderr, /AEGIS_API_KEY/);
  });

  test('roles, users and keys round-trip through the server', async () => {
    const role = await runAegis(['roles', 'create', 'cli-reader', '--permission', '{"action":"read:data","collection":"cli*"}'], { env });
    assert.equal(role.code, 0, role.stderr);
    assert.deepEqual(JSON.parse(role.stdout).permissions, [{ action: 'read:data', collection: 'cli*' }]);
    const user = await runAegis(['users', 'create', 'cli-user', '--role', 'cli-reader'], { env });
    assert.equal(user.code, 0, user.stderr);
    const key = JSON.parse(user.stdout).api_key;
    assert.match(key, /^ag_/);
    // the key works against the server
    const me = await srv.ok('GET', '/auth/me', undefined, { headers: { 'api-key': key } });
    assert.equal(me.id, 'cli-user');
    const list = await runAegis(['users', 'list'], { env });
    assert.ok(JSON.parse(list.stdout).users.some((u) => u.id === 'cli-user'));
    assert.ok(!list.stdout.includes(key), 'a listing never shows the key');
    const k = await runAegis(['keys', 'create', 'ci', '--access', 'r', '--expires-in', '3600'], { env });
    assert.equal(k.code, 0, k.stderr);
    const created = JSON.parse(k.stdout);
    assert.ok(created.key);
    assert.equal((await runAegis(['keys', 'delete', created.id], { env })).code, 0);
    assert.equal((await runAegis(['users', 'deactivate', 'cli-user'], { env })).code, 0);
    assert.equal((await srv.request('GET', '/auth/me', undefined, { headers: { 'api-key': key } })).status, 401);
    // the server audits what the command line did
    const audit = await srv.ok('GET', '/auth/audit?action=create:users', undefined, { headers: root });
    assert.ok(audit.some((r) => r.resource?.user === 'cli-user' && r.decision === 'allow'));
  });

  test('refusals: the server message and exit status 1; bad usage 2', async () => {
    const wrong = await runAegis(['roles', 'list'], { env: { ...env, AEGIS_API_KEY: WRONG_KEY } });
    assert.equal(wrong.code, 1);
    assert.match(wrong.stderr, /^aegis roles: 401: /);
    const missing = await runAegis(['roles', 'show', 'nope'], { env });
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /404: .*nope/);
    const bad = await runAegis(['roles', 'create', 'x', '--permission', 'not json'], { env });
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /--permission 1: expected a JSON object/);
    const verb = await runAegis(['users', 'fly', 'x'], { env });
    assert.equal(verb.code, 2);
    const url = await runAegis(['users', 'list', '--url', 'ftp://x'], { env });
    assert.equal(url.code, 2);
    assert.match(url.stderr, /--url/);
  });

  test('backup: create, list, show, schedules; a read-only key is refused; root restores', async () => {
    await srv.ok('PUT', '/collections/cli_bk', { vectors: { size: 2, distance: 'Dot' } }, { headers: root });
    await srv.ok('PUT', '/collections/cli_bk/points?wait=true', { points: [{ id: 1, vector: [1, 2], payload: { v: 'before' } }] }, { headers: root });
    const made = await runAegis(['backup', 'create'], { env });
    assert.equal(made.code, 0, made.stderr);
    const b = JSON.parse(made.stdout);
    assert.equal(b.status, 'succeeded');
    assert.match(b.checksum, /^[0-9a-f]{64}$/);
    const list = await runAegis(['backup', 'list'], { env });
    assert.equal(list.code, 0, list.stderr);
    assert.ok(JSON.parse(list.stdout).some((x) => x.id === b.id), 'the new backup is listed');
    assert.equal(JSON.parse((await runAegis(['backup', 'show', b.id], { env })).stdout).size, b.size);

    // a read-only key may not make or restore one: the server's 403, exit 1
    const ro = JSON.parse((await runAegis(['keys', 'create', 'cli-ro', '--access', 'r'], { env })).stdout).key;
    for (const args of [['backup', 'create'], ['backup', 'restore', b.id], ['backup', 'delete', b.id]]) {
      const r = await runAegis(args, { env: { ...env, AEGIS_API_KEY: ro } });
      assert.equal(r.code, 1, args.join(' '));
      assert.match(r.stderr, /^aegis backup: 403: /, args.join(' '));
    }

    // root restores it: the point changed since is as it was
    await srv.ok('PUT', '/collections/cli_bk/points?wait=true', { points: [{ id: 1, vector: [1, 2], payload: { v: 'after' } }] }, { headers: root });
    const restored = await runAegis(['backup', 'restore', b.id], { env });
    assert.equal(restored.code, 0, restored.stderr);
    assert.deepEqual((await srv.ok('GET', '/collections/cli_bk/points/1', undefined, { headers: root })).payload, { v: 'before' });

    // schedules
    const bad = await runAegis(['backup', 'schedules', 'create', '--cron', '0 3 * *', '--retention', '7'], { env });
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /^aegis backup: 400: .*schedule/);
    assert.equal((await runAegis(['backup', 'schedules', 'create', '--cron', '0 3 * * *'], { env })).code, 2);
    const sc = await runAegis(['backup', 'schedules', 'create', '--cron', '0 3 * * *', '--retention', '7'], { env });
    assert.equal(sc.code, 0, sc.stderr);
    const schedule = JSON.parse(sc.stdout);
    assert.equal(schedule.schedule, '0 3 * * *');
    assert.equal(schedule.retention, 7);
    assert.ok(JSON.parse((await runAegis(['backup', 'schedules', 'list'], { env })).stdout).some((s) => s.id === schedule.id));
    const run = await runAegis(['backup', 'schedules', 'run', schedule.id], { env });
    assert.equal(run.code, 0, run.stderr);
    const ran = JSON.parse(run.stdout);
    assert.ok(JSON.parse((await runAegis(['backup', 'list'], { env })).stdout).some((x) => x.id === ran.backup && x.schedule_id === schedule.id));
    assert.equal((await runAegis(['backup', 'schedules', 'delete', schedule.id], { env })).code, 0);
    assert.equal((await runAegis(['backup', 'schedules', 'show', schedule.id], { env })).code, 1);
    assert.equal((await runAegis(['backup', 'delete', b.id], { env })).code, 0);
    const gone = await runAegis(['backup', 'show', b.id], { env });
    assert.equal(gone.code, 1);
    assert.match(gone.stderr, /404/);
    const fly = await runAegis(['backup', 'fly'], { env });
    assert.equal(fly.code, 2);
    assert.match(fly.stderr, /unknown action 'fly'/);
  });

  test('import: JSONL and fvecs with progress; a bad line stops naming it', async () => {
    const jsonl = path.join(dir, 'points.jsonl');
    const lines = Array.from({ length: 700 }, (_, i) => JSON.stringify({ id: i + 1, vector: [1, i % 3, i % 5, 1], payload: { n: i } }));
    fs.writeFileSync(jsonl, `${lines.join('\n')}\n`);
    const r = await runAegis(['import', 'cli_pts', jsonl, '--create', '4:Cosine', '--batch', '200'], { env });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /100% 700 points, \d+\/s — done/);
    assert.equal((await srv.ok('POST', '/collections/cli_pts/points/count', {}, { headers: root })).count, 700);
    const p = await srv.ok('GET', '/collections/cli_pts/points/42', undefined, { headers: root });
    assert.deepEqual(p.payload, { n: 41 });

    const fv = path.join(dir, 'v.fvecs');
    const buf = Buffer.alloc(3 * (4 + 16));
    for (let i = 0; i < 3; i++) {
      buf.writeInt32LE(4, i * 20);
      for (let j = 0; j < 4; j++) buf.writeFloatLE(i + j + 1, i * 20 + 4 + j * 4);
    }
    fs.writeFileSync(fv, buf);
    const f = await runAegis(['import', 'cli_fv', fv, '--format', 'fvecs', '--create', '4:Euclid', '--start-id', '10'], { env });
    assert.equal(f.code, 0, f.stderr);
    const got = await srv.ok('GET', '/collections/cli_fv/points/12', undefined, { headers: root });
    assert.equal(got.id, 12);

    const bad = path.join(dir, 'bad.jsonl');
    fs.writeFileSync(bad, '{"id": 900, "vector": [1, 1, 1, 1]}\n[1, 2]\n');
    const b = await runAegis(['import', 'cli_pts', bad], { env });
    assert.equal(b.code, 2);
    assert.match(b.stderr, /bad\.jsonl line 2: expected a JSON object per line/);
    const refused = path.join(dir, 'refused.jsonl');
    fs.writeFileSync(refused, '{"id": 901, "vector": [1, 2]}\n');
    const rf = await runAegis(['import', 'cli_pts', refused], { env });
    assert.equal(rf.code, 1);
    assert.match(rf.stderr, /aegis import: 400: .*\n.*the batch starting at point 1 was refused/);
  });
});

describe('aegis over https', () => {
  let srv, dir;
  const f = (n) => path.join(dir, n);
  const openssl = (args) => execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
  const ca = (name) => openssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.pem`, '-days', '2', '-subj', `/CN=${name}`, '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign']);
  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'aegis-cli-tls-'));
    ca('ca');
    ca('other');
    fs.writeFileSync(f('server.ext'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n');
    openssl(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', 'server.key', '-out', 'server.csr', '-subj', '/CN=localhost']);
    openssl(['x509', '-req', '-in', 'server.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'server.pem', '-days', '2', '-extfile', 'server.ext']);
    const pem = fs.readFileSync(f('ca.pem'), 'utf8');
    srv = await startServer({ insecure: false, tls: { ca: pem }, env: keyEnv({ AEGIS__SERVICE__ENABLE_TLS: 'true', AEGIS__TLS__CERT: f('server.pem'), AEGIS__TLS__KEY: f('server.key') }) });
  });
  after(async () => {
    await srv?.cleanup();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  test('the server certificate is verified against --ca', async () => {
    const env = { AEGIS_URL: `https://127.0.0.1:${srv.port}`, AEGIS_API_KEY: ROOT_KEY };
    const ok = await runAegis(['roles', 'list', '--ca', f('ca.pem')], { env });
    assert.equal(ok.code, 0, ok.stderr);
    assert.ok(JSON.parse(ok.stdout).roles.some((r) => r.name === 'viewer'));
    const other = await runAegis(['roles', 'list', '--ca', f('other.pem')], { env });
    assert.equal(other.code, 1);
    assert.match(other.stderr, /TLS handshake .* failed/);
  });
});
