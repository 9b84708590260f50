// Backups and backup schedules (issue 12 item 3, issue 10's management permission names;
// docs/API.md "Backups"): lifecycle, bad input, restore (root key only, all or nothing, audited),
// and management keys holding the backup permissions.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { after, before, describe, test } from 'node:test';

import { ROOT_KEY, RO_KEY, jwt, keyEnv } from './lib/auth.mjs';
import { startServer } from './lib/server.mjs';

const root = { 'api-key': ROOT_KEY };
let srv;

async function count(name) {
  const r = await srv.request('POST', `/collections/${name}/points/count`, { exact: true }, { headers: root });
  return r.status === 200 ? r.json.result.count : r.status;
}

before(async () => {
  srv = await startServer({ insecure: false, env: keyEnv() });
  await srv.ok('PUT', '/collections/b1', { vectors: { size: 2, distance: 'Dot' } }, { headers: root });
  await srv.ok('PUT', '/collections/b1/points?wait=true', { points: [{ id: 1, vector: [1, 0], payload: { a: 1 } }, { id: 2, vector: [0, 1] }] }, { headers: root });
});

after(async () => {
  await srv?.cleanup();
});

describe('backups', () => {
  test('create, list, get, restore (all or nothing), delete', async () => {
    const b = await srv.ok('POST', '/backups', {}, { headers: root });
    assert.match(b.id, /^backup-/);
    assert.equal(b.status, 'succeeded');
    assert.match(b.checksum, /^[0-9a-f]{64}$/);
    assert.ok((await srv.ok('GET', '/backups', undefined, { headers: root })).some((x) => x.id === b.id));
    assert.deepEqual(await srv.ok('GET', `/backups/${b.id}`, undefined, { headers: root }), b);
    // the archive itself: the bytes the checksum names, audited; 404 for what is not a backup
    const dl = await fetch(`${srv.url}/backups/${b.id}/download`, { headers: root });
    assert.equal(dl.status, 200);
    const bytes = Buffer.from(await dl.arrayBuffer());
    assert.equal(bytes.length, b.size);
    assert.equal(createHash('sha256').update(bytes).digest('hex'), b.checksum);
    const seen = await srv.ok('GET', '/auth/audit?limit=5', undefined, { headers: root });
    assert.ok(seen.some((a) => a.route === '/backups/{backup}/download' && a.detail?.downloaded_backup && a.detail.size === b.size), JSON.stringify(seen).slice(0, 600));
    for (const bad of ['backup-nope', '..%2Fbackups', '.tmp']) {
      assert.equal((await fetch(`${srv.url}/backups/${bad}/download`, { headers: root })).status >= 400, true, bad);
    }
    assert.equal((await fetch(`${srv.url}/backups/backup-nope/download`, { headers: root })).status, 404);
    assert.equal((await fetch(`${srv.url}/backups/${b.id}/download`, { headers: { 'api-key': RO_KEY } })).status, 403);
    // changes after the backup are undone by restoring it; a collection made later is left alone
    await srv.ok('PUT', '/collections/b1/points?wait=true', { points: [{ id: 3, vector: [1, 1] }] }, { headers: root });
    await srv.ok('PUT', '/collections/later', { vectors: { size: 2, distance: 'Dot' } }, { headers: root });
    await srv.ok('POST', `/backups/${b.id}/restore`, undefined, { headers: root });
    assert.equal(await count('b1'), 2);
    assert.equal(await count('later'), 0);
    const audit = await srv.ok('GET', '/auth/audit?limit=20', undefined, { headers: root });
    assert.ok(audit.some((a) => a.action === 'write:backups' && JSON.stringify(a).includes('restored_backup')), JSON.stringify(audit).slice(0, 600));
    await srv.ok('DELETE', `/backups/${b.id}`, undefined, { headers: root });
    assert.equal((await srv.request('GET', `/backups/${b.id}`, undefined, { headers: root })).status, 404);
    assert.equal((await srv.request('DELETE', `/backups/${b.id}`, undefined, { headers: root })).status, 404);
    assert.equal((await srv.request('POST', `/backups/${b.id}/restore`, undefined, { headers: root })).status, 404);
    assert.equal((await srv.request('POST', '/backups', { collections: ['b1'] }, { headers: root })).status, 400);
    assert.equal((await srv.request('GET', '/backups/..%2Fx', undefined, { headers: root })).status, 400);
  });

  test('a management key with the backup permissions creates and lists, never restores', async () => {
    const key = (await srv.ok('POST', '/auth/management-keys', {
      name: 'backup-bot',
      permissions: [{ action: 'write:backups' }, { action: 'delete:backups' }, { action: 'write:backup_schedules' }],
    }, { headers: root })).key;
    const h = { 'api-key': key };
    const b = await srv.ok('POST', '/backups', {}, { headers: h });
    assert.ok((await srv.ok('GET', '/backups', undefined, { headers: h })).some((x) => x.id === b.id));
    const r = await srv.request('POST', `/backups/${b.id}/restore`, undefined, { headers: h });
    assert.equal(r.status, 403);
    assert.match(r.json.status.error, /root key/);
    // nor does it reach the data the backup holds
    assert.equal((await srv.request('POST', '/collections/b1/points/scroll', {}, { headers: h })).status, 403);
    assert.equal((await srv.request('GET', '/snapshots', undefined, { headers: h })).status, 403);
    await srv.ok('DELETE', `/backups/${b.id}`, undefined, { headers: h });
    // global manage on data is not a backup permission
    for (const cred of [{ 'api-key': jwt({ access: 'm' }) }, { 'api-key': RO_KEY }]) {
      assert.equal((await srv.request('GET', '/backups', undefined, { headers: cred })).status, 403);
      assert.equal((await srv.request('POST', '/backups', {}, { headers: cred })).status, 403);
    }
  });
});

describe('backup schedules', () => {
  test('create, list, get, delete; bad schedules and retentions are 400 naming the field', async () => {
    const s = await srv.ok('POST', '/backup-schedules', { schedule: '*/30 2-4 * * 1-5', retention: 3 }, { headers: root });
    assert.match(s.id, /^sched-[0-9a-f]{16}$/);
    assert.equal(s.schedule, '*/30 2-4 * * 1-5');
    assert.equal(s.retention, 3);
    assert.equal(s.last_run, null);
    assert.ok((await srv.ok('GET', '/backup-schedules', undefined, { headers: root })).some((x) => x.id === s.id));
    assert.deepEqual(await srv.ok('GET', `/backup-schedules/${s.id}`, undefined, { headers: root }), s);
    for (const [body, field] of [
      [{ schedule: '* * * *', retention: 1 }, /schedule/],
      [{ schedule: '61 * * * *', retention: 1 }, /schedule: bad minute/],
      [{ schedule: '0 0 * * 9', retention: 1 }, /day of week/],
      [{ schedule: 5, retention: 1 }, /schedule/],
      [{ schedule: '0 0 * * *', retention: 0 }, /retention/],
      [{ schedule: '0 0 * * *', retention: 1001 }, /retention/],
      [{ schedule: '0 0 * * *' }, /retention/],
      [{ schedule: '0 0 * * *', retention: 1, interval: 5 }, /interval/],
    ]) {
      const r = await srv.request('POST', '/backup-schedules', body, { headers: root });
      assert.equal(r.status, 400, JSON.stringify(body));
      assert.match(r.json.status.error, field);
    }
    await srv.ok('DELETE', `/backup-schedules/${s.id}`, undefined, { headers: root });
    assert.equal((await srv.request('GET', `/backup-schedules/${s.id}`, undefined, { headers: root })).status, 404);
    assert.equal((await srv.request('DELETE', `/backup-schedules/${s.id}`, undefined, { headers: root })).status, 404);
  });

  test('a run makes a backup, keeps the newest `retention` of the schedule, and is audited', async () => {
    const s = await srv.ok('POST', '/backup-schedules', { schedule: '0 0 1 1 *', retention: 2 }, { headers: root });
    const manual = await srv.ok('POST', '/backups', {}, { headers: root }); // not the schedule's: kept
    const made = [];
    for (let i = 0; i < 3; i++) made.push((await srv.ok('POST', `/backup-schedules/${s.id}/run`, undefined, { headers: root })).backup);
    const mine = (await srv.ok('GET', '/backups', undefined, { headers: root })).filter((b) => b.schedule_id === s.id).map((b) => b.id);
    assert.deepEqual(mine.sort(), made.slice(1).sort());
    assert.ok((await srv.ok('GET', '/backups', undefined, { headers: root })).some((b) => b.id === manual.id));
    assert.notEqual((await srv.ok('GET', `/backup-schedules/${s.id}`, undefined, { headers: root })).last_run, null);
    const audit = await srv.ok('GET', '/auth/audit?limit=50', undefined, { headers: root });
    const runs = audit.filter((a) => a.route === 'backup-schedule' && a.principal?.id === 'backup-scheduler');
    assert.equal(runs.length, 3, JSON.stringify(audit.slice(0, 3)));
    assert.equal((await srv.request('POST', '/backup-schedules/sched-0000000000000000/run', undefined, { headers: root })).status, 404);
  });

  test('the scheduler fires at the minute boundary by itself, and retention removes the oldest', { timeout: 200_000 }, async () => {
    // every minute, keep 2: two runs now (through the route), then the server's own timer makes
    // the third at the next minute it has not run in, removing the oldest of the three
    const s = await srv.ok('POST', '/backup-schedules', { schedule: '* * * * *', retention: 2 }, { headers: root });
    const first = (await srv.ok('POST', `/backup-schedules/${s.id}/run`, undefined, { headers: root })).backup;
    const second = (await srv.ok('POST', `/backup-schedules/${s.id}/run`, undefined, { headers: root })).backup;
    const ranAt = (await srv.ok('GET', `/backup-schedules/${s.id}`, undefined, { headers: root })).last_run;
    const mine = async () => (await srv.ok('GET', '/backups', undefined, { headers: root })).filter((b) => b.schedule_id === s.id).map((b) => b.id).sort();
    assert.deepEqual(await mine(), [first, second].sort());
    let fired = null;
    for (const t0 = Date.now(); Date.now() - t0 < 150_000;) {
      const now = await mine();
      const fresh = now.filter((id) => id !== first && id !== second);
      if (fresh.length) {
        fired = fresh[0];
        break;
      }
      await new Promise((r) => setTimeout(r, 1000));
    }
    assert.ok(fired, 'the scheduler made no backup within two minute boundaries');
    await srv.ok('DELETE', `/backup-schedules/${s.id}`, undefined, { headers: root }); // no more firing
    assert.deepEqual(await mine(), [second, fired].sort(), 'retention 2 keeps the two newest');
    assert.equal((await srv.request('GET', `/backups/${first}`, undefined, { headers: root })).status, 404);
    const audit = await srv.ok('GET', '/auth/audit?limit=50', undefined, { headers: root });
    const run = audit.find((a) => a.principal?.id === 'backup-scheduler' && a.detail?.removed?.length === 1);
    assert.ok(run, JSON.stringify(audit.slice(0, 3)));
    assert.equal(run.method, 'RUN');
    assert.notEqual(run.time.slice(0, 16), ranAt.slice(0, 16), 'a later minute than the manual runs');
  });

  test('schedules survive a restart', async () => {
    const s = await srv.ok('POST', '/backup-schedules', { schedule: '0 5 * * *', retention: 2 }, { headers: root });
    await srv.restart();
    assert.deepEqual(await srv.ok('GET', `/backup-schedules/${s.id}`, undefined, { headers: root }), s);
  });
});
