// A Qdrant config.yaml loads (docs/COMPATIBILITY.md "Configuration file"): the settings Aegis
// shares are applied, those that do not apply are named in one warning line, and a file with an
// unknown key or a bad value stops start-up naming every problem at once.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { freePort, runAegis, startServer } from './lib/server.mjs';

function writeTmp(name, text) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'aegis-qcfg-'));
  const file = path.join(dir, name);
  fs.writeFileSync(file, text);
  return { dir, file };
}

// The shape of Qdrant's own config/config.yaml (written here from its documented settings).
const qdrantConfig = (port, storage, grpcPort) => `
log_level: INFO
logger:
  on_disk:
    enabled: false
storage:
  storage_path: ${storage}
  snapshots_path: ${storage}/snapshots
  temp_path: null
  on_disk_payload: true
  update_concurrency: null
  wal:
    wal_capacity_mb: 32
    wal_segments_ahead: 0
  node_type: "Normal"
  performance:
    max_search_threads: 0
    optimizer_cpu_budget: 0
  optimizers:
    deleted_threshold: 0.2
    vacuum_min_vector_number: 1000
  hnsw_index:
    m: 16
    ef_construct: 100
  collection:
    replication_factor: 1
service:
  max_request_size_mb: 32
  max_workers: 0
  host: 127.0.0.1
  http_port: ${port}
  grpc_port: ${grpcPort}
  enable_cors: true
  enable_tls: false
  verify_https_client_certificate: false
  hardware_reporting: false
cluster:
  enabled: false
  p2p:
    port: 6335
  consensus:
    tick_period_ms: 100
telemetry_disabled: false
`;

test('a Qdrant config.yaml loads with one warning naming the settings that do not apply', async () => {
  const port = await freePort();
  const storage = fs.mkdtempSync(path.join(os.tmpdir(), 'aegis-qcfg-st-'));
  const grpcPort = await freePort();
  const { dir, file } = writeTmp('config.yaml', qdrantConfig(port, storage, grpcPort));
  const srv = await startServer({ args: ['--config', file], port, storage });
  try {
    const r = await srv.request('GET', '/collections');
    assert.equal(r.status, 200);
    const warnings = srv.stderr.split('\n').filter((l) => /do not apply to Aegis/.test(l));
    assert.equal(warnings.length, 1, srv.stderr);
    for (const key of ['logger', 'storage.wal', 'storage.performance', 'storage.optimizers', 'storage.hnsw_index', 'cluster', 'telemetry_disabled']) {
      assert.ok(warnings[0].includes(key), `${key} missing from: ${warnings[0]}`);
    }
    // settings Aegis honours are not in the list
    // service.grpc_port is honoured: the gRPC API listens there (docs/API.md "gRPC").
    assert.match(srv.stderr, new RegExp(`gRPC listening on 127\\.0\\.0\\.1:${grpcPort}`));
    for (const key of ['service.http_port', 'storage.snapshots_path', 'service.grpc_port']) assert.ok(!warnings[0].includes(key), `${key} listed in: ${warnings[0]}`);
  } finally {
    await srv.cleanup();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('unknown keys and bad values stop start-up, all named at once', async () => {
  const { dir, file } = writeTmp('bad.yaml', 'service:\n  http_port: notaport\n  frobnicate: 1\nstorage:\n  wal:\n    wal_capacity_mb: 32\nbogus: true\n');
  const r = await runAegis(['serve', '--insecure', '--config', file, '--storage', dir]);
  fs.rmSync(dir, { recursive: true, force: true });
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /3 problems/);
  assert.match(r.stderr, /service\.http_port: expected an integer/);
  assert.match(r.stderr, /unknown configuration key 'service\.frobnicate'/);
  assert.match(r.stderr, /unknown configuration key 'bogus'/);
});
