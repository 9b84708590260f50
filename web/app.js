// The Aegis dashboard (docs/API.md "Dashboard"): plain ES module, no dependencies. Everything
// comes from the REST API with the signed-in credential; what /auth/me says the principal may
// not do is not offered (the server decides anyway). Text from the server is only ever set as
// textContent, never parsed as HTML.

const KEY = 'aegis.key';
let key = sessionStorage.getItem(KEY);
let me = null;

// ---- small DOM helpers -------------------------------------------------------------------

function h(tag, attrs = {}, ...kids) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const kid of kids.flat()) if (kid !== null && kid !== undefined && kid !== false) el.append(kid instanceof Node ? kid : String(kid));
  return el;
}
const $ = (sel) => document.querySelector(sel);
const json = (v) => JSON.stringify(v, null, 2);

function toast(text, isError = false) {
  const el = h('div', { class: isError ? 'error' : '' }, text);
  $('#toast').append(el);
  setTimeout(() => el.remove(), isError ? 8000 : 4000);
}

function table(headers, rows, rowClass) {
  return h('table', {}, h('thead', {}, h('tr', {}, headers.map((t) => h('th', {}, t)))), h('tbody', {}, rows.map((r, i) => h('tr', { class: rowClass ? rowClass(i) : '' }, r.map((c) => (c instanceof Node && c.tagName === 'TD' ? c : h('td', {}, c)))))));
}

/** A form: fields [{name, label, type?, value?, options?, placeholder?}], onsubmit(values). */
function form(fields, submitText, onsubmit, id) {
  const inputs = {};
  const f = h('form', { class: 'row', id }, fields.map((fd) => {
    let input;
    if (fd.options) input = h('select', { name: fd.name, multiple: fd.multiple }, fd.options.map((o) => h('option', { value: o }, o)));
    else if (fd.type === 'textarea') input = h('textarea', { name: fd.name, placeholder: fd.placeholder || '' });
    else input = h('input', { name: fd.name, type: fd.type || 'text', placeholder: fd.placeholder || '', required: fd.required });
    if (fd.value !== undefined && !fd.options) input.value = fd.value;
    inputs[fd.name] = input;
    return h('label', {}, fd.label, input);
  }), h('button', { type: 'submit' }, submitText));
  f.addEventListener('submit', async (e) => {
    e.preventDefault();
    const values = {};
    for (const [k, el] of Object.entries(inputs)) values[k] = el.multiple ? [...el.selectedOptions].map((o) => o.value) : el.value.trim();
    try {
      await onsubmit(values);
    } catch (err) {
      toast(err.message, true);
    }
  });
  return f;
}

function parseJson(text, what) {
  if (!text) return undefined;
  try {
    return JSON.parse(text);
  } catch {
    throw new Error(`${what}: not valid JSON`);
  }
}

/** A secret shown once, with a copy button. */
function secret(label, value) {
  return h('div', { class: 'secret', 'data-secret': label }, h('strong', {}, `${label} (shown once; copy it now): `), h('code', { class: 'secret-value' }, value), ' ', h('button', { class: 'plain', type: 'button', onclick: () => navigator.clipboard?.writeText(value).then(() => toast('copied')) }, 'Copy'));
}

// ---- the API -----------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, message) {
    super(`${status}: ${message}`);
    this.status = status;
  }
}

async function api(method, path, body) {
  const headers = { 'api-key': key };
  if (body !== undefined) headers['content-type'] = 'application/json';
  const r = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await r.text();
  let j = null;
  try {
    j = JSON.parse(text);
  } catch {
    /* not JSON */
  }
  if (!r.ok) throw new ApiError(r.status, j?.status?.error || r.statusText);
  return j && 'result' in j ? j.result : j;
}

// ---- what the principal may do (from /auth/me; docs/PERMISSIONS.md) -----------------------

const VERBS = { read: ['read'], create: ['create', 'read'], update: ['update', 'read'], delete: ['delete', 'read'], write: ['create', 'update', 'read'], manage: ['read', 'create', 'update', 'delete'] };
const PARENT = { points: 'data', payload_indexes: 'collections', cluster: 'clusters' };

function glob(pattern, name) {
  const parts = pattern.split('*');
  if (parts.length === 1) return pattern === name;
  if (!name.startsWith(parts[0]) || !name.endsWith(parts[parts.length - 1])) return false;
  let at = parts[0].length;
  for (const mid of parts.slice(1, -1)) {
    const i = name.indexOf(mid, at);
    if (i < 0) return false;
    at = i + mid.length;
  }
  return at <= name.length - parts[parts.length - 1].length;
}

function grants(p, verb, resource, collection) {
  const [v, r] = String(p.action).split(':');
  if (!(VERBS[v] || []).includes(verb)) return false;
  let covered = r === '*' || r === resource || PARENT[resource] === r;
  if (r === 'cluster_data') covered = ['collections', 'data', 'points', 'payload_indexes'].includes(resource) && (verb === 'read' || (v !== 'read' && resource !== 'collections' && resource !== 'payload_indexes'));
  if (!covered) return false;
  return !(collection && p.collection && !glob(p.collection, collection));
}

// A compound verb (write, manage) needs each of its verbs, which may come from different
// permissions (verbs add up).
function principalCan(p, verb, resource, collection) {
  if (!p) return false;
  const ok = (VERBS[verb] || [verb]).every((one) => (p.permissions || []).some((x) => grants(x, one, resource, collection)));
  return ok && (!p.minted_by || p.minted_by.kind === 'root' || principalCan(p.minted_by, verb, resource, collection));
}
const can = (verb, resource, collection) => principalCan(me, verb, resource, collection);

// ---- views ---------------------------------------------------------------------------------

const TABS = [
  { id: 'collections', title: 'Collections', show: () => true, render: viewCollections },
  { id: 'points', title: 'Points & search', show: () => can('read', 'data'), render: viewPoints },
  { id: 'access', title: 'Users & roles', show: () => can('read', 'roles') || can('read', 'users'), render: viewAccess },
  { id: 'tenants', title: 'Tenants', show: () => can('read', 'tenants'), render: viewTenants },
  { id: 'keys', title: 'Keys & invites', show: () => can('read', 'api_keys') || can('read', 'invites') || can('read', 'management_keys'), render: viewKeys },
  { id: 'token', title: 'Token', show: () => can('manage', 'roles'), render: viewToken },
  { id: 'audit', title: 'Audit log', show: () => can('read', 'audit'), render: viewAudit },
  { id: 'backups', title: 'Snapshots & backups', show: () => can('read', 'snapshots') || can('read', 'backups') || can('read', 'backup_schedules'), render: viewBackups },
];

async function show(id) {
  const tab = TABS.find((t) => t.id === id && t.show()) || TABS[0];
  location.hash = tab.id;
  document.querySelectorAll('#tabs button').forEach((b) => (b.dataset.tab === tab.id ? b.setAttribute('aria-current', 'page') : b.removeAttribute('aria-current')));
  const view = $('#view');
  view.replaceChildren(h('p', { class: 'muted' }, 'Loading…'));
  try {
    const content = await tab.render();
    view.replaceChildren(...[content].flat());
  } catch (err) {
    view.replaceChildren(h('p', { class: 'error' }, err.message));
  }
}

async function collectionNames() {
  const r = await api('GET', '/collections');
  return r.collections.map((c) => c.name);
}

async function viewCollections() {
  const [names, tel] = await Promise.all([collectionNames(), api('GET', '/telemetry').catch(() => null)]);
  const stats = new Map((tel?.collections?.collections || []).map((c) => [c.id, c]));
  const rows = [];
  for (const name of names) {
    const s = stats.get(name) || {};
    const vectors = s.vectors_count || 0;
    const indexed = s.indexed_vectors_count ?? vectors;
    const status = s.status || 'green';
    const progress = vectors ? h('progress', { max: vectors, value: indexed, title: `${indexed} of ${vectors} vectors indexed` }) : '';
    rows.push([
      h('button', { class: 'plain', type: 'button', onclick: () => showCollection(name) }, name),
      h('span', { class: `badge ${status}` }, status),
      String(s.points_count ?? ''),
      h('span', {}, progress, ` ${indexed}/${vectors}`),
      can('delete', 'collections', name) ? h('button', { class: 'danger', type: 'button', onclick: () => deleteCollection(name) }, 'Delete') : '',
    ]);
  }
  const out = [h('section', { class: 'card' }, h('h2', {}, 'Collections'), rows.length ? table(['name', 'status', 'points', 'indexed vectors', ''], rows) : h('p', { class: 'muted' }, 'No collection you may see.'))];
  if (can('create', 'collections'))
    out.push(
      h('section', { class: 'card' }, h('h3', {}, 'Create a collection'), form([{ name: 'name', label: 'name', required: true }, { name: 'size', label: 'vector size', type: 'number', value: '4' }, { name: 'distance', label: 'distance', options: ['Cosine', 'Dot', 'Euclid', 'Manhattan'] }], 'Create', async (v) => {
        await api('PUT', `/collections/${encodeURIComponent(v.name)}`, { vectors: { size: Number(v.size), distance: v.distance } });
        toast(`collection ${v.name} created`);
        show('collections');
      }, 'create-collection')),
    );
  out.push(h('div', { id: 'collection-detail' }));
  return out;
}

async function deleteCollection(name) {
  if (!confirm(`Delete collection ${name} and all its points?`)) return;
  try {
    await api('DELETE', `/collections/${encodeURIComponent(name)}`);
    toast(`collection ${name} deleted`);
    show('collections');
  } catch (err) {
    toast(err.message, true);
  }
}

async function showCollection(name) {
  const box = $('#collection-detail');
  try {
    const info = await api('GET', `/collections/${encodeURIComponent(name)}`);
    box.replaceChildren(h('section', { class: 'card' }, h('h2', {}, `Collection ${name}`), h('div', { class: 'grid2' }, h('div', {}, h('h3', {}, 'Status'), h('pre', {}, json({ status: info.status, points_count: info.points_count, vectors_count: info.vectors_count, indexed_vectors_count: info.indexed_vectors_count }))), h('div', {}, h('h3', {}, 'Payload indexes'), h('pre', {}, json(info.payload_schema)))), h('h3', {}, 'Configuration'), h('pre', {}, json(info.config))));
  } catch (err) {
    box.replaceChildren(h('p', { class: 'error' }, err.message));
  }
}

async function viewPoints() {
  const names = (await collectionNames()).filter((n) => can('read', 'data', n));
  if (!names.length) return h('section', { class: 'card' }, h('p', { class: 'muted' }, 'No collection whose points you may read.'));
  const results = h('div', { id: 'points-results' });
  let offset = null;
  const render = (points, title) => {
    results.replaceChildren(h('section', { class: 'card' }, h('h3', {}, title), points.length ? table(['id', 'score', 'payload'], points.map((p) => [String(p.id), p.score === undefined ? '' : p.score.toFixed(4), h('code', {}, JSON.stringify(p.payload ?? {}))])) : h('p', { class: 'muted' }, 'Nothing found.')));
  };
  const browse = form([{ name: 'collection', label: 'collection', options: names }, { name: 'filter', label: 'filter (JSON, optional)', type: 'textarea', placeholder: '{"must": [{"key": "city", "match": {"value": "Paris"}}]}' }, { name: 'limit', label: 'limit', type: 'number', value: '20' }], 'Browse', async (v) => {
    const r = await api('POST', `/collections/${encodeURIComponent(v.collection)}/points/scroll`, { limit: Number(v.limit) || 20, filter: parseJson(v.filter, 'filter'), with_payload: true, offset: offset ?? undefined });
    render(r.points, `Points of ${v.collection}${r.next_page_offset !== null && r.next_page_offset !== undefined ? ` (more from id ${r.next_page_offset})` : ''}`);
  }, 'browse-form');
  const search = form([{ name: 'collection', label: 'collection', options: names }, { name: 'vector', label: 'query vector (JSON array)', required: true, placeholder: '[0.1, 0.2, 0.3, 0.4]' }, { name: 'filter', label: 'filter (JSON, optional)', type: 'textarea' }, { name: 'limit', label: 'limit', type: 'number', value: '10' }], 'Search', async (v) => {
    const r = await api('POST', `/collections/${encodeURIComponent(v.collection)}/points/query`, { query: parseJson(v.vector, 'vector'), filter: parseJson(v.filter, 'filter'), limit: Number(v.limit) || 10, with_payload: true });
    render(r.points, `Nearest points in ${v.collection}`);
  }, 'search-form');
  return [h('section', { class: 'card' }, h('h2', {}, 'Point browser'), browse), h('section', { class: 'card' }, h('h2', {}, 'Search'), search), results];
}

function permissionRows(perms) {
  return table(['action', 'collection', 'tenant', 'row filter'], perms.map((p) => [h('code', {}, p.action), p.collection || (p.action.includes('data') || p.action.includes('collections') ? 'every collection' : ''), p.tenant || '', p.filter ? h('code', {}, JSON.stringify(p.filter)) : '']));
}

async function viewAccess() {
  const out = [];
  const roles = can('read', 'roles') ? (await api('GET', '/auth/roles')).roles : [];
  if (can('read', 'roles')) {
    const list = h('div', {}, roles.map((r) => h('div', { class: 'card', 'data-role': r.name }, h('h3', {}, r.name, ' ', r.builtin ? h('span', { class: 'badge' }, 'built in') : '', ' ', !r.builtin && can('delete', 'roles') ? h('button', { class: 'danger', type: 'button', onclick: async () => { try { await api('DELETE', `/auth/roles/${encodeURIComponent(r.name)}`); toast(`role ${r.name} deleted`); show('access'); } catch (e) { toast(e.message, true); } } }, 'Delete') : ''), h('p', { class: 'muted' }, 'grants exactly:'), permissionRows(r.permissions), r.users?.length ? h('p', { class: 'muted' }, `held by ${r.users.join(', ')}`) : '')));
    out.push(h('section', { class: 'card' }, h('h2', {}, 'Roles'), list));
    if (can('create', 'roles')) out.push(h('section', { class: 'card' }, h('h3', {}, 'Create a role'), roleEditor()));
  }
  if (can('read', 'users')) {
    const users = (await api('GET', '/auth/users')).users;
    const secretBox = h('div', { id: 'user-secret' });
    out.push(
      h('section', { class: 'card' }, h('h2', {}, 'Database users'), table(['id', 'roles', 'state', 'key', ''], users.map((u) => [u.id, u.roles.join(', '), u.active ? h('span', { class: 'badge green' }, 'active') : h('span', { class: 'badge red' }, 'inactive'), h('code', {}, u.key_prefix), h('span', {}, can('update', 'users') ? h('button', { class: 'plain', type: 'button', onclick: () => userAction(u.id, u.active ? 'deactivate' : 'activate') }, u.active ? 'Deactivate' : 'Activate') : '', ' ', can('update', 'users') ? h('button', { class: 'plain', type: 'button', onclick: () => userAction(u.id, 'rotate-key') }, 'Rotate key') : '', ' ', can('delete', 'users') ? h('button', { class: 'danger', type: 'button', onclick: () => userAction(u.id, 'delete') }, 'Delete') : '')])),
        can('create', 'users') ? h('div', {}, h('h3', {}, 'Create a user'), form([{ name: 'id', label: 'user id', required: true }, { name: 'roles', label: 'roles', options: roles.map((r) => r.name), multiple: true }], 'Create', async (v) => {
          const r = await api('POST', `/auth/users/${encodeURIComponent(v.id)}`, { roles: v.roles });
          await show('access');
          $('#user-secret').replaceChildren(secret(`key of ${r.user.id}`, r.api_key));
        }, 'create-user')) : '', secretBox),
    );
  }
  if (can('read', 'roles')) out.push(h('section', { class: 'card' }, h('h2', {}, 'Could X do Y?'), checkForm(roles)));
  return out;
}

const ACTIONS = ['read:data', 'write:data', 'create:data', 'update:data', 'delete:data', 'manage:data', 'read:collections', 'manage:collections', 'read:tenants', 'manage:tenants', 'read:snapshots', 'manage:snapshots', 'read:roles', 'manage:roles', 'read:users', 'manage:users', 'read:api_keys', 'manage:api_keys', 'read:invites', 'manage:invites', 'read:audit', 'read:clusters', 'manage:*'];

function roleEditor() {
  const rows = h('tbody');
  const addRow = () => rows.append(h('tr', {}, h('td', {}, h('select', { class: 'perm-action' }, ACTIONS.map((a) => h('option', { value: a }, a)))), h('td', {}, h('input', { class: 'perm-collection', placeholder: 'collection pattern, e.g. sales*' })), h('td', {}, h('input', { class: 'perm-tenant', placeholder: 'tenant (optional)' })), h('td', {}, h('input', { class: 'perm-filter mono', placeholder: 'row filter JSON (optional)' }))));
  addRow();
  const name = h('input', { id: 'role-name', required: true, placeholder: 'role name' });
  const f = h('form', { id: 'create-role' }, h('div', { class: 'row' }, h('label', {}, 'name', name)), h('table', {}, h('thead', {}, h('tr', {}, ['action', 'collection', 'tenant', 'row filter'].map((t) => h('th', {}, t)))), rows), h('div', { class: 'row' }, h('button', { class: 'plain', type: 'button', onclick: addRow }, 'Add a permission'), h('button', { type: 'submit' }, 'Create role')));
  f.addEventListener('submit', async (e) => {
    e.preventDefault();
    try {
      const permissions = [...rows.children].map((tr) => {
        const p = { action: tr.querySelector('.perm-action').value };
        const c = tr.querySelector('.perm-collection').value.trim();
        const t = tr.querySelector('.perm-tenant').value.trim();
        const fl = tr.querySelector('.perm-filter').value.trim();
        if (c) p.collection = c;
        if (t) p.tenant = t;
        if (fl) p.filter = parseJson(fl, 'row filter');
        return p;
      });
      await api('POST', '/auth/roles', { name: name.value.trim(), permissions });
      toast(`role ${name.value.trim()} created`);
      show('access');
    } catch (err) {
      toast(err.message, true);
    }
  });
  return f;
}

function checkForm(roles) {
  const answer = h('div', { id: 'check-answer' });
  const f = form([{ name: 'who', label: 'principal: user id, or roles (comma-separated) prefixed by roles:', placeholder: 'alice  or  roles:viewer,reader' }, { name: 'action', label: 'action', options: ACTIONS }, { name: 'collection', label: 'collection (optional)' }, { name: 'tenant', label: 'tenant (optional)' }], 'Check', async (v) => {
    const body = { action: v.action };
    if (v.collection) body.collection = v.collection;
    if (v.tenant) body.tenant = v.tenant;
    if (v.who.startsWith('roles:')) body.principal = { roles: v.who.slice(6).split(',').map((s) => s.trim()).filter(Boolean) };
    else if (v.who) body.principal = { user: v.who };
    const r = await api('POST', '/auth/check', body);
    answer.replaceChildren(h('p', { class: r.allowed ? 'ok' : 'error' }, r.allowed ? `Allowed: ${r.action}` : `Denied: ${r.action} (missing ${r.missing})`, r.restricted ? ' — restricted to some rows' : ''), r.granted_by ? h('p', { class: 'muted' }, `granted by ${JSON.stringify(r.granted_by)}`) : '');
  }, 'check-form');
  f.title = `roles: ${roles.map((r) => r.name).join(', ')}`;
  return [f, answer];
}

async function userAction(id, what) {
  try {
    if (what === 'delete') {
      if (!confirm(`Delete user ${id}?`)) return;
      await api('DELETE', `/auth/users/${encodeURIComponent(id)}`);
    } else {
      const r = await api('POST', `/auth/users/${encodeURIComponent(id)}/${what}`, {});
      if (what === 'rotate-key') {
        await show('access');
        $('#user-secret').replaceChildren(secret(`new key of ${id}`, r.api_key));
        return;
      }
    }
    toast(`${id}: ${what} done`);
    show('access');
  } catch (err) {
    toast(err.message, true);
  }
}

async function viewTenants() {
  const names = (await collectionNames()).filter((n) => can('read', 'tenants', n));
  const box = h('div', { id: 'tenant-list' });
  const load = async (c) => {
    try {
      const r = await api('GET', `/collections/${encodeURIComponent(c)}/tenants`);
      box.replaceChildren(h('p', { class: 'muted' }, `tenant key: ${r.tenant_key ?? '(none: declare a keyword payload index with is_tenant)'}`), table(['tenant', 'state', 'points', ''], r.tenants.map((t) => [t.name, t.active ? h('span', { class: 'badge green' }, 'active') : h('span', { class: 'badge red' }, 'inactive'), String(t.points ?? ''), h('span', {}, can('update', 'tenants', c) ? h('button', { class: 'plain', type: 'button', onclick: () => tenantAction(c, t.name, t.active ? 'deactivate' : 'activate', load) }, t.active ? 'Deactivate' : 'Activate') : '', ' ', can('delete', 'tenants', c) ? h('button', { class: 'danger', type: 'button', onclick: () => tenantAction(c, t.name, 'delete', load) }, 'Delete') : '')])), can('create', 'tenants', c) ? form([{ name: 'name', label: 'new tenant', required: true }], 'Declare', async (v) => { await api('POST', `/collections/${encodeURIComponent(c)}/tenants`, { name: v.name }); load(c); }) : '');
    } catch (err) {
      box.replaceChildren(h('p', { class: 'error' }, err.message));
    }
  };
  if (!names.length) return h('section', { class: 'card' }, h('p', { class: 'muted' }, 'No collection whose tenants you may read.'));
  const pick = h('select', { id: 'tenant-collection', onchange: (e) => load(e.target.value) }, names.map((n) => h('option', { value: n }, n)));
  load(names[0]);
  return h('section', { class: 'card' }, h('h2', {}, 'Tenants'), h('label', {}, 'collection', pick), box);
}

async function tenantAction(c, t, what, reload) {
  try {
    const base = `/collections/${encodeURIComponent(c)}/tenants/${encodeURIComponent(t)}`;
    if (what === 'delete') {
      if (!confirm(`Delete tenant ${t} and its points?`)) return;
      await api('DELETE', base);
    } else await api('POST', `${base}/${what}`, {});
    reload(c);
  } catch (err) {
    toast(err.message, true);
  }
}

async function viewKeys() {
  const out = [];
  const secretBox = h('div', { id: 'key-secret' });
  if (can('read', 'api_keys')) {
    const keys = (await api('GET', '/auth/api-keys')).keys;
    out.push(h('section', { class: 'card' }, h('h2', {}, 'API keys'), table(['name', 'id', 'grants', 'expires', ''], keys.map((k) => [k.name, h('code', {}, k.prefix || k.id), h('code', {}, JSON.stringify(k.access ?? k.roles)), k.expired ? h('span', { class: 'badge red' }, 'expired') : k.expires_at ? new Date(k.expires_at * 1000).toISOString() : 'never', can('delete', 'api_keys') ? h('button', { class: 'danger', type: 'button', onclick: async () => { try { await api('DELETE', `/auth/api-keys/${encodeURIComponent(k.id)}`); show('keys'); } catch (e) { toast(e.message, true); } } }, 'Revoke') : ''])),
      can('create', 'api_keys') ? h('div', {}, h('h3', {}, 'Create an API key'), form([{ name: 'name', label: 'name', required: true }, { name: 'access', label: 'access: "r", "m" or JSON list', value: 'r' }, { name: 'days', label: 'lifetime (days, optional)', type: 'number' }], 'Create key', async (v) => {
        const access = v.access === 'r' || v.access === 'm' ? v.access : parseJson(v.access, 'access');
        const body = { name: v.name, access };
        if (v.days) body.expires_at = Math.floor(Date.now() / 1000) + Number(v.days) * 86400;
        const r = await api('POST', '/auth/api-keys', body);
        await show('keys');
        $('#key-secret').replaceChildren(secret(`API key ${r.name}`, r.key));
      }, 'create-api-key')) : ''));
  }
  if (can('read', 'invites')) {
    const inv = (await api('GET', '/auth/invites')).invites;
    out.push(h('section', { class: 'card' }, h('h2', {}, 'Invites'), table(['user', 'roles', 'expires', ''], inv.map((i) => [i.user_id, i.roles.join(', '), new Date(i.expires_at * 1000).toISOString(), can('delete', 'invites') ? h('button', { class: 'danger', type: 'button', onclick: async () => { try { await api('DELETE', `/auth/invites/${encodeURIComponent(i.id)}`); show('keys'); } catch (e) { toast(e.message, true); } } }, 'Revoke') : ''])),
      can('create', 'invites') ? h('div', {}, h('h3', {}, 'Invite a user'), form([{ name: 'user_id', label: 'user id', required: true }, { name: 'roles', label: 'roles (comma-separated)', value: 'viewer' }], 'Create invite', async (v) => {
        const r = await api('POST', '/auth/invites', { user_id: v.user_id, roles: v.roles.split(',').map((s) => s.trim()).filter(Boolean) });
        await show('keys');
        $('#key-secret').replaceChildren(secret(`invite code for ${v.user_id}`, r.code));
      }, 'create-invite')) : ''));
  }
  out.push(secretBox);
  return out;
}

async function viewToken() {
  const roles = can('read', 'roles') ? (await api('GET', '/auth/roles')).roles.map((r) => r.name) : [];
  const box = h('div', { id: 'token-out' });
  return h('section', { class: 'card' }, h('h2', {}, 'Mint a token'), h('p', { class: 'muted' }, 'A JWT signed by the server (POST /auth/token), with you as its subject and minter. It is bound by you: it never grants more than you hold now, and stops working when you lose what it grants.'), form([{ name: 'roles', label: 'roles', options: roles, multiple: true }, { name: 'access', label: 'or Qdrant access (JSON)', placeholder: '[{"collection": "docs", "access": "r"}]' }, { name: 'minutes', label: 'lifetime (minutes)', type: 'number', value: '60' }], 'Mint', async (v) => {
    const claims = { exp: Math.floor(Date.now() / 1000) + 60 * (Number(v.minutes) || 60) };
    if (v.roles.length) claims.roles = v.roles;
    if (v.access) claims.access = parseJson(v.access, 'access');
    const r = await api('POST', '/auth/token', { claims });
    box.replaceChildren(secret('token', r.token), h('p', { class: 'muted' }, `expires ${new Date(r.exp * 1000).toISOString()}${r.exp_shortened ? ` (shortened by ${r.exp_limited_by})` : ''}`));
  }, 'token-form'), box);
}

async function viewAudit() {
  const box = h('div', { id: 'audit-records' });
  const status = h('p', { id: 'audit-chain' });
  const load = async (v = {}) => {
    const q = new URLSearchParams({ limit: '100' });
    for (const k of ['decision', 'action', 'principal']) if (v[k]) q.set(k, v[k]);
    const [records, chain] = await Promise.all([api('GET', `/auth/audit?${q}`), api('GET', '/auth/audit/verify').catch((e) => ({ error: e.message }))]);
    status.className = chain.ok ? 'ok' : 'error';
    status.textContent = chain.error ? `chain: ${chain.error}` : chain.ok ? `Chain verified: records ${chain.first_seq}..${chain.last_seq} (${chain.records} records, ${chain.files} file(s))` : `CHAIN BROKEN at ${chain.problem?.file} line ${chain.problem?.line}: ${chain.problem?.why}`;
    box.replaceChildren(table(['seq', 'time', 'principal', 'action', 'resource', 'decision', 'status', 'reason', 'request id'], records.map((r) => [String(r.seq), r.time, `${r.principal?.kind}:${r.principal?.id ?? '-'}${r.principal?.sub ? `/${r.principal.sub}` : ''}`, h('code', {}, r.action), h('code', {}, JSON.stringify(r.resource ?? {})), h('td', { class: 'decision' }, r.decision), String(r.status), r.reason || '', h('code', {}, r.request_id || '')]), (i) => (records[i].decision === 'deny' ? 'deny' : '')));
  };
  await load();
  return h('section', { class: 'card' }, h('h2', {}, 'Audit log'), status, form([{ name: 'decision', label: 'decision', options: ['', 'deny', 'allow'] }, { name: 'action', label: 'action (glob)', placeholder: '*:roles' }, { name: 'principal', label: 'principal', placeholder: 'user:alice' }], 'Filter', load, 'audit-filter'), box);
}

// ---- snapshots and backups (docs/API.md "Snapshots", "Backups") ----------------------------

function bytes(n) {
  if (typeof n !== 'number') return '';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return `${i ? n.toFixed(1) : n} ${units[i]}`;
}

// A snapshot download needs the api-key header, which a plain link cannot send: fetch the file
// and hand the browser a Blob to save.
async function download(path, filename) {
  const r = await fetch(path, { headers: { 'api-key': key } });
  if (!r.ok) {
    let msg = r.statusText;
    try {
      msg = (await r.json())?.status?.error || msg;
    } catch {
      /* not JSON */
    }
    throw new ApiError(r.status, msg);
  }
  const url = URL.createObjectURL(await r.blob());
  const a = h('a', { href: url, download: filename, hidden: true });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60000);
}

/** A button running action(); errors go to a toast, then reload() if given. */
function actionButton(text, cls, action, attrs = {}) {
  return h('button', { class: cls, type: 'button', ...attrs, onclick: async () => {
    try {
      await action();
    } catch (err) {
      toast(err.message, true);
    }
  } }, text);
}

async function viewBackups() {
  const out = [];
  const names = can('read', 'snapshots') ? (await collectionNames()).filter((n) => can('read', 'snapshots', n)) : [];
  if (can('read', 'snapshots')) {
    const box = h('div', { id: 'snapshot-list' });
    const load = async (c) => {
      const base = `/collections/${encodeURIComponent(c)}/snapshots`;
      try {
        const snaps = await api('GET', base);
        const rows = snaps.map((s) => [h('code', {}, s.name), bytes(s.size), s.creation_time || '', h('code', { class: 'checksum' }, s.checksum || ''), h('span', {},
          actionButton('Download', 'plain', () => download(`${base}/${encodeURIComponent(s.name)}`, s.name)), ' ',
          can('delete', 'snapshots', c) ? actionButton('Delete', 'danger', async () => {
            if (!confirm(`Delete snapshot ${s.name}?`)) return;
            await api('DELETE', `${base}/${encodeURIComponent(s.name)}`);
            toast(`snapshot ${s.name} deleted`);
            load(c);
          }) : '')]);
        box.replaceChildren(
          rows.length ? table(['snapshot', 'size', 'created', 'checksum (SHA-256)', ''], rows) : h('p', { class: 'muted' }, `No snapshot of ${c}.`),
          can('create', 'snapshots', c) ? h('div', { class: 'row' }, actionButton('Create a snapshot', '', async () => {
            const s = await api('POST', `${base}?wait=true`, {});
            toast(`snapshot ${s.name} created`);
            load(c);
          }, { id: 'create-snapshot' })) : '',
        );
      } catch (err) {
        box.replaceChildren(h('p', { class: 'error' }, err.message));
      }
    };
    if (names.length) {
      const pick = h('select', { id: 'snapshot-collection', onchange: (e) => load(e.target.value) }, names.map((n) => h('option', { value: n }, n)));
      await load(names[0]);
      out.push(h('section', { class: 'card' }, h('h2', {}, 'Collection snapshots'), h('label', {}, 'collection', pick), box));
    } else out.push(h('section', { class: 'card' }, h('h2', {}, 'Collection snapshots'), h('p', { class: 'muted' }, 'No collection whose snapshots you may read.')));
  }
  if (can('read', 'backups')) {
    const list = await api('GET', '/backups');
    const root = me?.kind === 'root';
    out.push(h('section', { class: 'card', id: 'backups' }, h('h2', {}, 'Backups'), h('p', { class: 'muted' }, 'Full snapshots of every collection and alias, kept by the server.'),
      list.length ? table(['backup', 'created', 'size', 'checksum (SHA-256)', 'schedule', ''], list.map((b) => [h('code', {}, b.id), b.created_at || '', bytes(b.size), h('code', { class: 'checksum' }, b.checksum || ''), b.schedule_id || '', h('span', {},
        root ? actionButton('Restore', 'plain', async () => {
          if (!confirm(`Replace every collection and alias with backup ${b.id}?`)) return;
          await api('POST', `/backups/${encodeURIComponent(b.id)}/restore`, {});
          toast(`backup ${b.id} restored`);
          show('backups');
        }) : '', ' ',
        can('delete', 'backups') ? actionButton('Delete', 'danger', async () => {
          if (!confirm(`Delete backup ${b.id}?`)) return;
          await api('DELETE', `/backups/${encodeURIComponent(b.id)}`);
          toast(`backup ${b.id} deleted`);
          show('backups');
        }) : '')])) : h('p', { class: 'muted' }, 'No backup yet.'),
      can('write', 'backups') ? h('div', { class: 'row' }, actionButton('Create a backup', '', async () => {
        const b = await api('POST', '/backups', {});
        toast(`backup ${b.id} created`);
        show('backups');
      }, { id: 'create-backup' })) : ''));
  }
  if (can('read', 'backup_schedules')) {
    const list = await api('GET', '/backup-schedules');
    out.push(h('section', { class: 'card', id: 'schedules' }, h('h2', {}, 'Backup schedules'),
      list.length ? table(['schedule', 'cron (UTC)', 'keeps', 'last run', ''], list.map((s) => [h('code', {}, s.id), h('code', {}, s.schedule), String(s.retention), s.last_run || 'never', h('span', {},
        can('write', 'backups') ? actionButton('Run now', 'plain', async () => {
          const r = await api('POST', `/backup-schedules/${encodeURIComponent(s.id)}/run`, {});
          toast(`backup ${r.backup} made${r.removed?.length ? `, ${r.removed.length} removed` : ''}`);
          show('backups');
        }) : '', ' ',
        can('delete', 'backup_schedules') ? actionButton('Delete', 'danger', async () => {
          if (!confirm(`Delete schedule ${s.id}? Its backups stay.`)) return;
          await api('DELETE', `/backup-schedules/${encodeURIComponent(s.id)}`);
          show('backups');
        }) : '')])) : h('p', { class: 'muted' }, 'No schedule.'),
      can('write', 'backup_schedules') ? h('div', {}, h('h3', {}, 'Schedule backups'), form([{ name: 'schedule', label: 'cron, UTC (minute hour day month weekday)', value: '0 3 * * *', required: true }, { name: 'retention', label: 'keep (1–1000)', type: 'number', value: '7' }], 'Create schedule', async (v) => {
        await api('POST', '/backup-schedules', { schedule: v.schedule, retention: Number(v.retention) });
        toast('schedule created');
        show('backups');
      }, 'create-schedule')) : ''));
  }
  return out;
}

// ---- sign in -------------------------------------------------------------------------------

async function signIn() {
  if (!key) {
    $('#signin').hidden = false;
    $('#view').hidden = true;
    $('#tabs').replaceChildren();
    $('#who').replaceChildren();
    return;
  }
  try {
    me = await api('GET', '/auth/me');
  } catch (err) {
    sessionStorage.removeItem(KEY);
    key = null;
    $('#signin-error').textContent = `Sign-in failed: ${err.message}`;
    return signIn();
  }
  $('#signin').hidden = true;
  $('#view').hidden = false;
  $('#who').replaceChildren(h('span', { id: 'principal' }, `${me.kind}: ${me.id ?? me.sub ?? ''}`), me.roles?.length ? h('span', { class: 'badge' }, me.roles.join(', ')) : '', h('button', { class: 'plain', type: 'button', id: 'signout', onclick: signOut }, 'Sign out'));
  $('#tabs').replaceChildren(...TABS.filter((t) => t.show()).map((t) => h('button', { type: 'button', 'data-tab': t.id, onclick: () => show(t.id) }, t.title)));
  await show(location.hash.slice(1) || 'collections');
}

function signOut() {
  sessionStorage.removeItem(KEY);
  key = null;
  me = null;
  signIn();
}

$('#signin-form').addEventListener('submit', (e) => {
  e.preventDefault();
  key = $('#signin-key').value.trim();
  $('#signin-key').value = '';
  $('#signin-error').textContent = '';
  sessionStorage.setItem(KEY, key);
  signIn();
});

signIn();
