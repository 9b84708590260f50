// Test harness: runs the real aegis binary on 127.0.0.1 on a free port with a fresh temporary
// storage directory, and talks HTTP to it.
//
//   const srv = await startServer();          // waits until GET /healthz answers
//   after(() => srv.cleanup());               // kills the process, removes the storage dir
//   const r = await srv.request('GET', '/');  // {status, headers, text, json, socketReused}
//   await srv.stop();                         // SIGTERM, waits for exit, returns {code, signal}
//   await srv.restart();                      // same storage and port
//
// Options for secured servers (all optional; the defaults keep the old behaviour):
//   insecure: false      do not pass --insecure (then configure keys through env)
//   tls: {ca, cert, key} talk HTTPS; ca is the PEM the client trusts, cert/key an optional
//                        client certificate presented on every connection (mutual TLS)
//   request(..., {localAddress: '127.0.0.7'}) sends from another loopback address, so tests
//   that fail authentication on purpose do not trip the per-address throttle of other tests.
// runAegis(args, {env, timeoutMs}) runs the binary to completion: {code, signal, stdout, stderr}.
// The binary is process.env.AEGIS_BIN (CTest sets it), else <repo>/build/aegis. Everything the
// server writes to stderr is kept in srv.stderr (access log lines, warnings) so tests can assert
// on it, and is printed when start-up fails.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
export const REPO_ROOT = path.resolve(here, '..', '..', '..');

export const AEGIS_BIN = path.resolve(process.env.AEGIS_BIN || path.join(REPO_ROOT, 'build', 'aegis'));

// Sanitizer builds are several times slower; every timeout below is generous but bounded.
export const SLOW = /asan|ubsan|tsan|sanitiz/i.test(path.basename(path.dirname(AEGIS_BIN))) || !!process.env.AEGIS_SLOW;
export const TIME_SCALE = SLOW ? 3 : 1;
// Added to the fixed ports of the cluster suites, so that two checkouts can run them side by side
// on one machine (each with its own offset).
export const PORT_OFFSET = Number(process.env.AEGIS_TEST_PORT_OFFSET || 0);

const SANITIZER_REPORT = /ERROR: AddressSanitizer|ERROR: LeakSanitizer|runtime error:|SUMMARY: UndefinedBehaviorSanitizer|ThreadSanitizer/;

const START_TIMEOUT_MS = 30_000 * TIME_SCALE;
const STOP_TIMEOUT_MS = 30_000 * TIME_SCALE;

/** Asks the OS for a free TCP port on 127.0.0.1 (listen on 0, read the port, close). */
export function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.unref();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

export function sleep(ms) {
  return new Promise((r) => setTimeout(r, ms));
}

const liveServers = new Set();
process.on('exit', () => {
  // Last resort if a test forgot cleanup: never leave a server running behind us.
  for (const s of liveServers) {
    try {
      s.proc?.kill('SIGKILL');
    } catch {
      /* already gone */
    }
  }
});

export class Server {
  constructor({ storage, port, env, args, ownStorage, insecure = true, tls = null }) {
    this.insecure = insecure;
    this.tls = tls;
    this.storage = storage;
    this.port = port;
    this.env = env;
    this.args = args;
    this.ownStorage = ownStorage;
    this.proc = null;
    this.exitInfo = null;
    this.stderrChunks = [];
    this.stdoutChunks = [];
    this.starts = 0;
    this.agent = this.newAgent();
  }

  newAgent() {
    if (this.tls) return new https.Agent({ keepAlive: true, maxSockets: 8, ...tlsOptions(this.tls) });
    return new http.Agent({ keepAlive: true, maxSockets: 8 });
  }

  get url() {
    return `${this.tls ? 'https' : 'http'}://127.0.0.1:${this.port}`;
  }

  /** Everything the server process(es) wrote to stderr so far (all runs on this storage). */
  get stderr() {
    return Buffer.concat(this.stderrChunks).toString('utf8');
  }

  get stdout() {
    return Buffer.concat(this.stdoutChunks).toString('utf8');
  }

  get running() {
    return this.proc !== null && this.exitInfo === null;
  }

  async start() {
    if (this.running) throw new Error('server already running');
    this.starts++;
    const argv = ['serve', ...(this.insecure ? ['--insecure'] : []), '--storage', this.storage, '--port', String(this.port), ...this.args];
    const proc = spawn(AEGIS_BIN, argv, {
      env: { ...process.env, ...this.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.proc = proc;
    this.exitInfo = null;
    liveServers.add(this);
    this.exited = new Promise((resolve) => {
      proc.on('exit', (code, signal) => {
        this.exitInfo = { code, signal };
        liveServers.delete(this);
        resolve(this.exitInfo);
      });
    });
    proc.on('error', (err) => {
      this.stderrChunks.push(Buffer.from(`[harness] spawn error: ${err.message}\n`));
    });
    proc.stderr.on('data', (d) => this.stderrChunks.push(d));
    proc.stdout.on('data', (d) => this.stdoutChunks.push(d));

    const deadline = Date.now() + START_TIMEOUT_MS;
    for (;;) {
      if (this.exitInfo) {
        throw new Error(
          `aegis exited during start-up (${JSON.stringify(this.exitInfo)}): ${AEGIS_BIN} ${argv.join(' ')}\n` +
            `--- stderr ---\n${this.stderr.slice(-4000)}`,
        );
      }
      try {
        const r = await this.request('GET', '/healthz', undefined, { timeoutMs: 2000, agent: false });
        if (r.status === 200) return this;
      } catch {
        /* not listening yet */
      }
      if (Date.now() > deadline) {
        proc.kill('SIGKILL');
        await this.exited;
        throw new Error(`aegis did not answer /healthz within ${START_TIMEOUT_MS} ms\n${this.stderr.slice(-4000)}`);
      }
      await sleep(25);
    }
  }

  /** Graceful stop: SIGTERM, then wait for the process to exit. Returns {code, signal}. */
  async stop() {
    if (!this.proc) return this.exitInfo;
    if (this.running) this.proc.kill('SIGTERM');
    const t = setTimeout(() => this.proc?.kill('SIGKILL'), STOP_TIMEOUT_MS);
    const info = await this.exited;
    clearTimeout(t);
    this.resetConnections();
    return info;
  }

  /** Hard kill: SIGKILL, then wait for the process to be gone. */
  async kill() {
    if (!this.proc) return this.exitInfo;
    if (this.running) this.proc.kill('SIGKILL');
    const info = await this.exited;
    this.resetConnections();
    return info;
  }

  /** Graceful stop and start again on the same storage directory and port. */
  async restart() {
    const info = await this.stop();
    await this.start();
    return info;
  }

  resetConnections() {
    this.agent.destroy();
    this.agent = this.newAgent();
  }

  /**
   * Stops the process gracefully if it is still running and removes the storage directory if we
   * created it. Throws if the process did not exit 0 on SIGTERM or if a sanitizer reported
   * anything on stderr during any run (so leaks and UB fail the test file that caused them).
   */
  async cleanup() {
    let problem = null;
    if (this.running) {
      const info = await this.stop();
      if (info.code !== 0) problem = `aegis exited with ${JSON.stringify(info)} on SIGTERM`;
    }
    this.agent.destroy();
    if (this.ownStorage) fs.rmSync(this.storage, { recursive: true, force: true });
    const san = SANITIZER_REPORT.exec(this.stderr);
    if (san) problem = `${problem ? `${problem}; ` : ''}sanitizer report in aegis stderr`;
    if (problem) {
      const at = san ? Math.max(0, san.index - 200) : Math.max(0, this.stderr.length - 3000);
      throw new Error(`${problem}\n--- stderr ---\n${this.stderr.slice(at, at + 6000)}`);
    }
  }

  /**
   * One HTTP request. body: undefined, a string/Buffer (sent as is) or a value (sent as JSON).
   * Resolves {status, headers, text, json} where json is the parsed body or undefined.
   */
  request(method, urlPath, body, { headers = {}, timeoutMs = 60_000 * TIME_SCALE, agent, localAddress, tls } = {}) {
    return rawRequest({
      port: this.port,
      method,
      path: urlPath,
      body,
      headers,
      timeoutMs,
      agent: agent === undefined ? this.agent : agent,
      localAddress,
      tls: tls === undefined ? this.tls : tls,
    });
  }

  /** request() that asserts a 2xx answer with Qdrant's envelope and returns `result`. */
  async ok(method, urlPath, body, opts) {
    const r = await this.request(method, urlPath, body, opts);
    if (r.status < 200 || r.status > 299 || !r.json || r.json.status !== 'ok') {
      throw new Error(`${method} ${urlPath} -> ${r.status} ${r.text.slice(0, 2000)}`);
    }
    return r.json.result;
  }

  /** Polls GET /collections/{name} until it is green (and, with `full`, every point is in the
   * graph), then returns the collection info; throws naming the last status after `timeoutMs`
   * (a deadline, not a count of polls, so a loaded machine or a sanitizer build only waits longer). */
  async waitGreen(name, { headers, full = false, timeoutMs = 60_000 * TIME_SCALE } = {}) {
    const t0 = Date.now();
    for (;;) {
      const info = await this.ok('GET', `/collections/${name}`, undefined, headers ? { headers } : undefined);
      if (info.status === 'green' && (!full || info.indexed_vectors_count === info.points_count)) return info;
      if (Date.now() - t0 > timeoutMs) {
        throw new Error(`${name} never became green (still ${info.status}, ${info.indexed_vectors_count}/${info.points_count} indexed)`);
      }
      await sleep(50);
    }
  }
}

function tlsOptions(tls) {
  const o = {};
  if (tls.ca) o.ca = tls.ca;
  if (tls.cert) o.cert = tls.cert;
  if (tls.key) o.key = tls.key;
  if (tls.servername) o.servername = tls.servername;
  return o;
}

export function rawRequest({ port, host = '127.0.0.1', method, path: urlPath, body, headers = {}, timeoutMs = 60_000, agent, localAddress, tls }) {
  return new Promise((resolve, reject) => {
    let payload;
    const h = { ...headers };
    if (body !== undefined) {
      payload = typeof body === 'string' || Buffer.isBuffer(body) ? body : JSON.stringify(body);
      if (!Object.keys(h).some((k) => k.toLowerCase() === 'content-type')) h['content-type'] = 'application/json';
      h['content-length'] = Buffer.byteLength(payload);
    }
    const opts = { host, port, method, path: urlPath, headers: h, agent };
    if (localAddress) opts.localAddress = localAddress;
    // With agent === false every request makes its own connection and needs the TLS options;
    // with an agent they come from it (but explicit ones are harmless).
    if (tls) Object.assign(opts, tlsOptions(tls));
    const req = (tls ? https : http).request(opts, (res) => {
      const chunks = [];
      res.on('data', (d) => chunks.push(d));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let json;
        try {
          json = JSON.parse(text);
        } catch {
          json = undefined;
        }
        resolve({ status: res.statusCode, headers: res.headers, text, json, socket: req.socket, reusedSocket: req.reusedSocket });
      });
      res.on('error', reject);
    });
    req.setTimeout(timeoutMs, () => req.destroy(new Error(`${method} ${urlPath}: no answer within ${timeoutMs} ms`)));
    req.on('error', reject);
    if (payload !== undefined) req.end(payload);
    else req.end();
  });
}

/**
 * Starts a server. Options: env (extra environment), args (extra CLI args), storage (an existing
 * directory to reuse; otherwise a fresh temporary one is created and removed by cleanup()),
 * port (otherwise a free one is picked).
 */
export async function startServer({ env = {}, args = [], storage, port, insecure = true, tls = null } = {}) {
  const ownStorage = !storage;
  const dir = storage || fs.mkdtempSync(path.join(os.tmpdir(), 'aegis-e2e-'));
  let lastErr;
  // A port chosen by the OS may be taken by someone else before aegis binds it: retry.
  for (let attempt = 0; attempt < 3; attempt++) {
    const srv = new Server({ storage: dir, port: port || (await freePort()), env, args, ownStorage, insecure, tls });
    try {
      await srv.start();
      return srv;
    } catch (e) {
      lastErr = e;
      await srv.kill();
      if (port || !/bind|address already in use|EADDRINUSE/i.test(e.message)) break;
    }
  }
  if (ownStorage) fs.rmSync(dir, { recursive: true, force: true });
  throw lastErr;
}

/**
 * Runs the aegis binary with args to completion (for start-up refusals and `aegis token`).
 * Resolves {code, signal, stdout, stderr}; a process still running after timeoutMs is killed
 * (then signal is SIGKILL and timedOut is true).
 */
export function runAegis(args, { env = {}, timeoutMs = 20_000 * TIME_SCALE, input } = {}) {
  return new Promise((resolve) => {
    const proc = spawn(AEGIS_BIN, args, { env: { ...process.env, ...env }, stdio: ['pipe', 'pipe', 'pipe'] });
    const out = [];
    const err = [];
    let timedOut = false;
    proc.stdout.on('data', (d) => out.push(d));
    proc.stderr.on('data', (d) => err.push(d));
    const t = setTimeout(() => {
      timedOut = true;
      proc.kill('SIGKILL');
    }, timeoutMs);
    proc.on('error', (e) => err.push(Buffer.from(`[harness] spawn error: ${e.message}\n`)));
    proc.on('close', (code, signal) => {
      clearTimeout(t);
      resolve({
        code,
        signal,
        timedOut,
        stdout: Buffer.concat(out).toString('utf8'),
        stderr: Buffer.concat(err).toString('utf8'),
      });
    });
    if (input !== undefined) proc.stdin.end(input);
    else proc.stdin.end();
  });
}
