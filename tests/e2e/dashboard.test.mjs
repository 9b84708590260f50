// The dashboard in a real browser (issue 14; docs/API.md "Dashboard"): Debian's chromium driven by
// playwright-core. Root signs in, creates a role, mints a token; a request with that token is
// refused and the denial shows highlighted in the audit view with the chain verified. A viewer
// and a tenant-scoped user see only what they may; root makes, lists, downloads and deletes
// snapshots and makes backups and schedules, a viewer is offered none of those changes, a backup
// operator no restore (root only). Skips (saying why) when chromium is missing; scripts/setup.sh
// installs it, so CI runs it. AEGIS_SCREENSHOTS=1 refreshes docs/img/.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';

import { ROOT_KEY, keyEnv } from './lib/auth.mjs';
import { REPO_ROOT, SLOW, startServer } from './lib/server.mjs';

const CHROMIUM = [process.env.CHROMIUM_PATH, '/usr/bin/chromium', '/usr/bin/chromium-browser'].find((p) => p && fs.existsSync(p));
const skip = !CHROMIUM ? 'chromium is not installed (scripts/setup.sh installs it); skipping the browser test' : SLOW ? 'the browser test runs in the release build only' : false;
if (skip) console.log(`# dashboard: ${skip}`);

const root = { 'api-key': ROOT_KEY };
const shots = process.env.AEGIS_SCREENSHOTS ? path.join(REPO_ROOT, 'docs', 'img') : fs.mkdtempSync(path.join(os.tmpdir(), 'aegis-shots-'));

describe('dashboard', { skip }, () => {
  let srv, browser;
  const cspErrors = [];

  before(async () => {
    const { chromium } = await import('playwright-core');
    srv = await startServer({ insecure: false, env: keyEnv() });
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox', '--disable-gpu'] });
    // data: two collections, one multi-tenant
    await srv.ok('PUT', '/collections/docs', { vectors: { size: 4, distance: 'Cosine' } }, { headers: root });
    await srv.ok('PUT', '/collections/docs/points?wait=true', { points: [1, 2, 3].map((id) => ({ id, vector: [1, id, 0.5, 0.2], payload: { title: `doc ${id}` } })) }, { headers: root });
    await srv.ok('PUT', '/collections/shared', { vectors: { size: 4, distance: 'Cosine' } }, { headers: root });
    await srv.ok('PUT', '/collections/shared/index?wait=true', { field_name: 'tenant', field_schema: { type: 'keyword', is_tenant: true } }, { headers: root });
    for (const t of ['acme', 'beta']) await srv.ok('POST', '/collections/shared/tenants', { name: t }, { headers: root });
    await srv.ok('PUT', '/collections/shared/points?wait=true', { points: [1, 2, 3, 4].map((id) => ({ id, vector: [id, 1, 1, 1], payload: { tenant: id % 2 ? 'acme' : 'beta', n: id } })) }, { headers: root });
  });
  after(async () => {
    await browser?.close();
    await srv?.cleanup();
    if (!process.env.AEGIS_SCREENSHOTS) fs.rmSync(shots, { recursive: true, force: true });
  });

  async function signedIn(credential) {
    const ctx = await browser.newContext({ viewport: { width: 1280, height: 860 } });
    const page = await ctx.newPage();
    page.on('console', (m) => {
      if (/Content Security Policy|Refused to/i.test(m.text())) cspErrors.push(m.text());
    });
    page.on('pageerror', (e) => cspErrors.push(`page error: ${e.message}`));
    const resp = await page.goto(`${srv.url}/dashboard`);
    assert.equal(resp.status(), 200);
    assert.match(resp.headers()['content-security-policy'], /default-src 'none'; script-src 'self'/);
    await page.fill('#signin-key', credential);
    await page.click('#signin-form button[type=submit]');
    await page.waitForSelector('#principal');
    return { ctx, page };
  }

  const tabs = async (page) => page.$$eval('#tabs button', (bs) => bs.map((b) => b.textContent));

  test('root: sign in, create a role, mint a token, see its denial in the audit view', async () => {
    const { ctx, page } = await signedIn(ROOT_KEY);
    assert.match(await page.textContent('#principal'), /root/);
    assert.deepEqual(await tabs(page), ['Collections', 'Points & search', 'Users & roles', 'Tenants', 'Keys & invites', 'Token', 'Audit log', 'Snapshots & backups']);
    await page.waitForSelector('#view table');
    assert.match(await page.textContent('#view'), /docs/);
    assert.ok(await page.$('#create-collection'), 'root is offered collection creation');
    await page.screenshot({ path: path.join(shots, 'dashboard-collections.png') });

    // create a role through the permission editor
    await page.click('#tabs button[data-tab=access]');
    await page.waitForSelector('#create-role');
    await page.fill('#role-name', 'analyst');
    await page.selectOption('#create-role .perm-action', 'read:data');
    await page.fill('#create-role .perm-collection', 'docs');
    await page.click('#create-role button[type=submit]');
    await page.waitForSelector('[data-role=analyst]');
    assert.match(await page.textContent('[data-role=analyst]'), /read:data\s*docs/);
    const role = await srv.ok('GET', '/auth/roles/analyst', undefined, { headers: root });
    assert.deepEqual(role.permissions, [{ action: 'read:data', collection: 'docs' }]);
    // "could X do Y?"
    await page.fill('#check-form [name=who]', 'roles:analyst');
    await page.selectOption('#check-form [name=action]', 'delete:data');
    await page.fill('#check-form [name=collection]', 'docs');
    await page.click('#check-form button[type=submit]');
    await page.waitForSelector('#check-answer p');
    assert.match(await page.textContent('#check-answer'), /Denied: .*delete/);
    await page.screenshot({ path: path.join(shots, 'dashboard-roles.png'), fullPage: true });

    // mint a token holding the role
    await page.click('#tabs button[data-tab=token]');
    await page.waitForSelector('#token-form');
    await page.selectOption('#token-form [name=roles]', ['analyst']);
    await page.click('#token-form button[type=submit]');
    await page.waitForSelector('#token-out .secret-value');
    const token = (await page.textContent('#token-out .secret-value')).trim();
    assert.match(token, /^ey[\w-]+\.[\w-]+\.[\w-]+$/);
    // the token reads docs but may not delete it
    assert.equal((await srv.request('POST', '/collections/docs/points/count', {}, { headers: { 'api-key': token } })).status, 200);
    const denied = await srv.request('DELETE', '/collections/docs', undefined, { headers: { 'api-key': token, 'x-request-id': 'dashboard-denial' } });
    assert.equal(denied.status, 403);

    // the denial appears highlighted in the audit view, the chain verified
    await page.click('#tabs button[data-tab=audit]');
    await page.waitForSelector('#audit-records table');
    const row = page.locator('#audit-records tr.deny', { hasText: 'dashboard-denial' });
    await row.waitFor();
    assert.match(await row.textContent(), /delete:collections/);
    assert.match(await page.textContent('#audit-chain'), /^Chain verified: records 1\.\.\d+/);
    await page.screenshot({ path: path.join(shots, 'dashboard-audit.png'), fullPage: true });

    // a secret is shown once: creating a user shows its key, the listing never does
    await page.click('#tabs button[data-tab=access]');
    await page.waitForSelector('#create-user');
    await page.fill('#create-user [name=id]', 'dash-user');
    await page.selectOption('#create-user [name=roles]', ['viewer']);
    await page.click('#create-user button[type=submit]');
    await page.waitForSelector('#user-secret .secret-value');
    const userKey = (await page.textContent('#user-secret .secret-value')).trim();
    assert.match(userKey, /^ag_/);
    await page.click('#tabs button[data-tab=collections]');
    await page.click('#tabs button[data-tab=access]');
    await page.waitForSelector('#create-user');
    assert.ok(!(await page.textContent('#view')).includes(userKey), 'the key is not shown again');
    await ctx.close();
  });

  test('root: snapshots and backups — create, list, download, schedule', async () => {
    const { ctx, page } = await signedIn(ROOT_KEY);
    page.on('dialog', (d) => d.accept());
    await page.click('#tabs button[data-tab=backups]');
    await page.waitForSelector('#create-snapshot');
    assert.equal(await page.$eval('#snapshot-collection', (s) => s.value), 'docs');
    await page.click('#create-snapshot');
    await page.waitForSelector('#snapshot-list table');
    const [snap] = await srv.ok('GET', '/collections/docs/snapshots', undefined, { headers: root });
    const listed = await page.textContent('#snapshot-list table');
    assert.ok(listed.includes(snap.name) && listed.includes(snap.checksum), 'the snapshot is listed with its checksum');
    // download through fetch + Blob (the api-key header cannot ride on a link)
    const [dl] = await Promise.all([page.waitForEvent('download'), page.click('#snapshot-list button.plain')]);
    assert.equal(dl.suggestedFilename(), snap.name);
    assert.equal(fs.statSync(await dl.path()).size, snap.size);

    await page.click('#create-backup');
    await page.waitForSelector('#backups table');
    const [backup] = await srv.ok('GET', '/backups', undefined, { headers: root });
    assert.ok((await page.textContent('#backups table')).includes(backup.id), 'the backup is listed');
    assert.ok(await page.$('#backups button:text("Restore")'), 'root is offered restore');
    await page.fill('#create-schedule [name=schedule]', '30 2 * * 1-5');
    await page.fill('#create-schedule [name=retention]', '3');
    await page.click('#create-schedule button[type=submit]');
    await page.waitForSelector('#schedules table');
    assert.match(await page.textContent('#schedules table'), /30 2 \* \* 1-5/);
    const [sched] = await srv.ok('GET', '/backup-schedules', undefined, { headers: root });
    assert.equal(sched.retention, 3);
    await page.screenshot({ path: path.join(shots, 'dashboard-backups.png'), fullPage: true });
    // delete the snapshot from the page
    await page.click('#snapshot-list button.danger');
    await page.waitForSelector('#snapshot-list p.muted');
    assert.deepEqual(await srv.ok('GET', '/collections/docs/snapshots', undefined, { headers: root }), []);
    await ctx.close();
  });

  test('a viewer sees collections and data but is offered no change and no secrets', async () => {
    const { user, api_key: viewerKey } = await srv.ok('POST', '/auth/users/vera', { roles: ['viewer'] }, { headers: root });
    assert.equal(user.id, 'vera');
    const { ctx, page } = await signedIn(viewerKey);
    assert.deepEqual(await tabs(page), ['Collections', 'Points & search', 'Tenants', 'Snapshots & backups']);
    await page.waitForSelector('#view table');
    const text = await page.textContent('#view');
    assert.match(text, /docs/);
    assert.match(text, /shared/);
    assert.equal(await page.$('#create-collection'), null, 'no collection creation offered');
    assert.equal(await page.$('#view button.danger'), null, 'no delete offered');
    await page.screenshot({ path: path.join(shots, 'dashboard-viewer.png') });
    // snapshots: listed and downloadable (read:snapshots), but no create, delete or backups
    await srv.ok('POST', '/collections/docs/snapshots?wait=true', {}, { headers: root });
    await page.click('#tabs button[data-tab=backups]');
    await page.waitForSelector('#snapshot-list table');
    assert.match(await page.textContent('#snapshot-list'), /docs-.*\.snapshot/);
    assert.equal(await page.$('#create-snapshot'), null, 'no snapshot creation offered');
    assert.equal(await page.$('#view button.danger'), null, 'no snapshot delete offered');
    assert.equal(await page.$('#backups'), null, 'no backups without read:backups');
    assert.equal(await page.$('#create-backup'), null);
    assert.ok(await page.$('#snapshot-list button.plain'), 'download offered');
    // the point browser works for it
    await page.click('#tabs button[data-tab=points]');
    await page.waitForSelector('#browse-form');
    await page.selectOption('#browse-form [name=collection]', 'docs');
    await page.click('#browse-form button[type=submit]');
    await page.waitForSelector('#points-results table');
    assert.match(await page.textContent('#points-results'), /doc 2/);
    await ctx.close();
  });

  test('a backup operator makes backups but is not offered restore (root only)', async () => {
    await srv.ok('POST', '/auth/roles', { name: 'backup-operator', permissions: [{ action: 'manage:backups' }] }, { headers: root });
    const { api_key: k } = await srv.ok('POST', '/auth/users/otto', { roles: ['backup-operator'] }, { headers: root });
    const { ctx, page } = await signedIn(k);
    assert.deepEqual(await tabs(page), ['Collections', 'Snapshots & backups']);
    await page.click('#tabs button[data-tab=backups]');
    await page.waitForSelector('#create-backup');
    await page.click('#create-backup');
    await page.waitForSelector('#backups table');
    // the list re-renders after the create: wait for its delete buttons rather than race it
    assert.ok(await page.waitForSelector('#backups button.danger', { timeout: 10000 }).catch(() => null), 'delete offered');
    assert.equal(await page.$('#backups button:text("Restore")'), null, 'restore is for the root key only');
    assert.equal(await page.$('#snapshot-list'), null, 'no collection snapshots without read:snapshots');
    assert.equal(await page.$('#schedules'), null, 'no schedules without read:backup_schedules');
    await ctx.close();
  });

  test('a tenant-scoped user sees its collection and its tenant only', async () => {
    await srv.ok('POST', '/auth/roles', { name: 'acme-reader', permissions: [{ action: 'read:collections', collection: 'shared' }, { action: 'read:data', collection: 'shared', tenant: 'acme' }] }, { headers: root });
    const { api_key: k } = await srv.ok('POST', '/auth/users/ann', { roles: ['acme-reader'] }, { headers: root });
    const { ctx, page } = await signedIn(k);
    assert.deepEqual(await tabs(page), ['Collections', 'Points & search']);
    await page.waitForSelector('#view table');
    const text = await page.textContent('#view table');
    assert.match(text, /shared/);
    assert.doesNotMatch(text, /docs/);
    await page.click('#tabs button[data-tab=points]');
    await page.waitForSelector('#browse-form');
    assert.deepEqual(await page.$$eval('#browse-form [name=collection] option', (os) => os.map((o) => o.value)), ['shared']);
    await page.click('#browse-form button[type=submit]');
    await page.waitForSelector('#points-results table');
    const tenants = await page.$$eval('#points-results tbody tr td:nth-child(3)', (tds) => tds.map((td) => JSON.parse(td.textContent).tenant));
    assert.deepEqual([...new Set(tenants)], ['acme']);
    assert.equal(tenants.length, 2);
    await ctx.close();
  });

  test('no Content-Security-Policy violation or script error on any page', () => {
    assert.deepEqual(cspErrors, []);
  });
});

describe('dashboard files', () => {
  test('served by the binary under a strict CSP, public, unknown files 404', async () => {
    const srv = await startServer({ insecure: false, env: keyEnv() });
    try {
      const page = await srv.request('GET', '/dashboard');
      assert.equal(page.status, 200);
      assert.match(page.headers['content-type'], /^text\/html/);
      assert.match(page.text, /<script type="module" src="\/dashboard\/app\.js">/);
      const csp = page.headers['content-security-policy'];
      assert.match(csp, /default-src 'none'/);
      assert.match(csp, /script-src 'self'/);
      assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval|https?:/);
      assert.equal(page.headers['x-frame-options'], 'DENY');
      const js = await srv.request('GET', '/dashboard/app.js');
      assert.equal(js.status, 200);
      assert.match(js.headers['content-type'], /^text\/javascript/);
      assert.doesNotMatch(js.text, /https?:\/\/(?!127\.0\.0\.1)/, 'no CDN or remote URL in the script');
      assert.doesNotMatch(js.text, /innerHTML/, 'server text is never parsed as HTML');
      assert.equal((await srv.request('GET', '/dashboard/style.css')).status, 200);
      assert.equal((await srv.request('GET', '/dashboard/nope.js')).status, 404);
      assert.equal((await srv.request('GET', '/dashboard/..%2Fetc')).status, 400);
      // the audit chain status route is not public
      assert.equal((await srv.request('GET', '/auth/audit/verify')).status, 401);
      const v = await srv.ok('GET', '/auth/audit/verify', undefined, { headers: root });
      assert.equal(v.ok, true);
    } finally {
      await srv.cleanup();
    }
  });
});
