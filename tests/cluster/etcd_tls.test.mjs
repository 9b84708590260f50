// Cluster mode with etcd over TLS (docs/CLUSTER.md "etcd over TLS"): one etcd member that serves
// https:// and requires client certificates (--client-cert-auth), on loopback ports 8050-8051.
//   - a node with the CA, its client certificate and key joins and serves;
//   - without a client certificate, or trusting another CA, the node refuses to start (it cannot
//     read the security state), naming etcd;
//   - the TLS settings are refused where they would be ignored (http:// members, a certificate
//     without its key, members mixing http:// and https://).
// Skipped, saying so, when etcd is not installed.
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';

import { runAegis, startServer, TIME_SCALE, PORT_OFFSET } from '../e2e/lib/server.mjs';

const ETCD_BIN = ['/usr/bin/etcd', '/usr/local/bin/etcd'].find((p) => fs.existsSync(p));
const SKIP = ETCD_BIN ? false : 'etcd is not installed (scripts/setup.sh installs etcd-server): skipped';
const ROOT_KEY = 'cluster-tls-root-key-0123456789abcdef0123';
const ETCD_PORT = 8050 + PORT_OFFSET;
const NODE_PORT = 8052 + PORT_OFFSET;
const ENDPOINT = `https://127.0.0.1:${ETCD_PORT}`;

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'aegis-etcd-tls-'));
const f = (n) => path.join(dir, n);
const openssl = (args) => execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
let etcd;

function ca(name) {
  openssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.pem`,
    '-days', '2', '-subj', `/CN=${name}`, '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign']);
}

function leaf(name, ext) {
  fs.writeFileSync(f(`${name}.ext`), ext);
  openssl(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${name}`]);
  openssl(['x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out', `${name}.pem`, '-days', '2', '-extfile', `${name}.ext`]);
}

function nodeEnv(extra) {
  return {
    AEGIS__SERVICE__API_KEY: ROOT_KEY,
    AEGIS__CLUSTER__ENABLED: 'true',
    AEGIS__CLUSTER__ETCD_ENDPOINTS: ENDPOINT,
    AEGIS__CLUSTER__NODE_ID: 'tls-node',
    AEGIS__CLUSTER__STALE_AFTER_MS: '3000',
    ...extra,
  };
}

/** Runs `aegis serve` expecting it to stop at start-up; resolves its result. */
function serveFails(env) {
  const storage = fs.mkdtempSync(path.join(dir, 'st-'));
  return runAegis(['serve', '--storage', storage, '--port', String(NODE_PORT)], { env, timeoutMs: 30000 * TIME_SCALE });
}

before(async () => {
  if (SKIP) return;
  ca('ca');
  ca('other');
  leaf('etcd', 'subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth,clientAuth\n');
  leaf('node', 'basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n');
  etcd = spawn(ETCD_BIN, [
    '--name', 'tls0', '--data-dir', f('etcd-data'),
    '--listen-client-urls', ENDPOINT, '--advertise-client-urls', ENDPOINT,
    '--listen-peer-urls', `http://127.0.0.1:${ETCD_PORT + 1}`, '--initial-advertise-peer-urls', `http://127.0.0.1:${ETCD_PORT + 1}`,
    '--initial-cluster', `tls0=http://127.0.0.1:${ETCD_PORT + 1}`,
    '--cert-file', f('etcd.pem'), '--key-file', f('etcd.key'), '--trusted-ca-file', f('ca.pem'), '--client-cert-auth',
    '--logger', 'zap', '--log-level', 'error',
  ], { stdio: ['ignore', 'ignore', 'pipe'] });
  // Up when a TLS client with a certificate learns of an elected leader.
  const deadline = Date.now() + 20000 * TIME_SCALE;
  for (;;) {
    try {
      const out = execFileSync('curl', ['-sf', '--cacert', f('ca.pem'), '--cert', f('node.pem'), '--key', f('node.key'), '-X', 'POST', '-d', '{}', `${ENDPOINT}/v3/maintenance/status`], { encoding: 'utf8' });
      const st = JSON.parse(out);
      if (!st.leader || st.leader === '0') throw new Error('no leader yet');
      break;
    } catch (e) {
      if (Date.now() > deadline) throw new Error(`etcd over TLS did not start: ${e.message}`);
      await new Promise((r) => setTimeout(r, 200));
    }
  }
});

after(async () => {
  if (etcd) {
    etcd.kill('SIGKILL');
    await new Promise((r) => etcd.on('exit', r));
  }
  fs.rmSync(dir, { recursive: true, force: true });
});

test('a node with the CA and its client certificate joins etcd over TLS and serves', { skip: SKIP }, async () => {
  const srv = await startServer({
    insecure: false,
    port: NODE_PORT,
    env: nodeEnv({ AEGIS__CLUSTER__ETCD_CA_FILE: f('ca.pem'), AEGIS__CLUSTER__ETCD_CERT_FILE: f('node.pem'), AEGIS__CLUSTER__ETCD_KEY_FILE: f('node.key') }),
  });
  try {
    const headers = { 'api-key': ROOT_KEY };
    const cl = await srv.request('GET', '/cluster', undefined, { headers });
    assert.equal(cl.status, 200, cl.text);
    assert.equal(cl.json.result.status, 'enabled');
    assert.equal(cl.json.result.control_plane.fresh, true);
    // A change goes through etcd (over TLS) and is read back.
    const role = await srv.request('POST', '/auth/roles', { name: 'tls-reader', permissions: [{ action: 'read:roles' }] }, { headers });
    assert.equal(role.status, 200, role.text);
    const roles = await srv.request('GET', '/auth/roles', undefined, { headers });
    assert.ok(roles.json.result.roles.some((r) => r.name === 'tls-reader'));
  } finally {
    await srv.cleanup();
  }
});

test('without a client certificate, or trusting another CA, the node does not start', { skip: SKIP }, async () => {
  const noCert = await serveFails(nodeEnv({ AEGIS__CLUSTER__ETCD_CA_FILE: f('ca.pem') }));
  assert.notEqual(noCert.code, 0, noCert.stderr);
  assert.match(noCert.stderr, /etcd/i);
  const otherCa = await serveFails(nodeEnv({ AEGIS__CLUSTER__ETCD_CA_FILE: f('other.pem'), AEGIS__CLUSTER__ETCD_CERT_FILE: f('node.pem'), AEGIS__CLUSTER__ETCD_KEY_FILE: f('node.key') }));
  assert.notEqual(otherCa.code, 0, otherCa.stderr);
  assert.match(otherCa.stderr, /etcd/i);
});

test('TLS settings that would be ignored are refused, naming them', { skip: SKIP }, async () => {
  const cases = [
    [{ AEGIS__CLUSTER__ETCD_ENDPOINTS: `http://127.0.0.1:${ETCD_PORT}`, AEGIS__CLUSTER__ETCD_CA_FILE: f('ca.pem') }, /cluster\.etcd_ca_file: set, but/],
    [{ AEGIS__CLUSTER__ETCD_CA_FILE: f('ca.pem'), AEGIS__CLUSTER__ETCD_CERT_FILE: f('node.pem') }, /cluster\.etcd_key_file: required with cluster\.etcd_cert_file/],
    [{ AEGIS__CLUSTER__ETCD_ENDPOINTS: `${ENDPOINT},http://127.0.0.1:${ETCD_PORT + 9}` }, /cluster\.etcd_endpoints: mixes http:\/\/ and https:\/\//],
    [{ AEGIS__CLUSTER__ETCD_CA_FILE: f('missing.pem') }, /cluster\.etcd_ca_file: cannot read/],
  ];
  for (const [env, want] of cases) {
    const r = await serveFails(nodeEnv(env));
    assert.notEqual(r.code, 0, r.stderr);
    assert.match(r.stderr, want);
  }
});
