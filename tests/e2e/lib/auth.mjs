// Helpers for the authentication and authorization e2e suites: fixed test keys, an HS256 JWT
// builder written here (independent of the server's), a per-test source-address allocator and
// small assertion helpers.
//
// The server throttles authentication failures per remote address. Every request that is meant
// to fail authentication goes out from its own loopback address (127.x.y.z all reach the server
// bound on 127.0.0.1 on Linux), so deliberate failures in one test never lock out the next.
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';

// Keys of at least 32 characters (the server refuses shorter ones).
export const ROOT_KEY = 'root-key-for-e2e-tests-0123456789abcdef';
export const ALT_KEY = 'alt-root-key-for-e2e-tests-0123456789abc';
export const RO_KEY = 'read-only-key-for-e2e-tests-0123456789ab';
export const WRONG_KEY = 'wrong-key-for-e2e-tests-0123456789abcdef';
export const OTHER_SECRET = 'another-secret-nobody-configured-0123456789';

/** Environment for a server with the three keys and JWT RBAC on. */
export function keyEnv(extra = {}) {
  return {
    AEGIS__SERVICE__API_KEY: ROOT_KEY,
    AEGIS__SERVICE__ALT_API_KEY: ALT_KEY,
    AEGIS__SERVICE__READ_ONLY_API_KEY: RO_KEY,
    AEGIS__SERVICE__JWT_RBAC: 'true',
    ...extra,
  };
}

/** base64url without padding (RFC 4648 §5) of a string or Buffer. */
export function b64url(data) {
  return Buffer.from(data).toString('base64').replace(/=+$/, '').replace(/\+/g, '-').replace(/\//g, '_');
}

export function hs256(secret, signingInput) {
  return b64url(createHmac('sha256', secret).update(signingInput).digest());
}

/**
 * A JWT from raw JSON texts (so tests can send duplicate keys or odd types) signed with HS256
 * under secret. header and payload may be objects (serialised with JSON.stringify) or strings
 * (used verbatim).
 */
export function signRaw(header, payload, secret = ROOT_KEY) {
  const h = typeof header === 'string' ? header : JSON.stringify(header);
  const p = typeof payload === 'string' ? payload : JSON.stringify(payload);
  const input = `${b64url(h)}.${b64url(p)}`;
  return `${input}.${hs256(secret, input)}`;
}

export const nowS = () => Math.floor(Date.now() / 1000);

/** A normal HS256 token for claims; exp defaults to one hour from now (pass exp: null to omit). */
export function jwt(claims, secret = ROOT_KEY) {
  const c = { exp: nowS() + 3600, ...claims };
  if (c.exp === null) delete c.exp;
  return signRaw({ alg: 'HS256', typ: 'JWT' }, c, secret);
}

let addrCounter = 0;
/** A fresh loopback source address (127.1.0.1, 127.1.0.2, …) for requests meant to fail. */
export function freshAddr() {
  addrCounter++;
  const a = Math.floor(addrCounter / 250) % 250;
  const b = (addrCounter % 250) + 1;
  return `127.1.${a}.${b}`;
}

/** headers for a credential spec: {apiKey} / {bearer} / {} (none) / {raw: {...}} */
export function credHeaders(cred) {
  if (!cred) return {};
  if (cred.apiKey !== undefined) return { 'api-key': cred.apiKey };
  if (cred.bearer !== undefined) return { authorization: `Bearer ${cred.bearer}` };
  if (cred.raw) return { ...cred.raw };
  return {};
}

/** Status class label of an HTTP status: '2xx' or the exact code for everything else. */
export function statusClass(status) {
  return status >= 200 && status < 300 ? '2xx' : String(status);
}

/** Asserts a Qdrant error envelope {"status": {"error": "..."}, "time": n}. */
export function assertErrorEnvelope(r, what = '') {
  assert.ok(r.json, `${what}: body is not JSON: ${r.text.slice(0, 300)}`);
  assert.equal(typeof r.json.status, 'object', `${what}: no status object: ${r.text.slice(0, 300)}`);
  assert.equal(typeof r.json.status.error, 'string', `${what}: no status.error: ${r.text.slice(0, 300)}`);
  assert.ok(r.json.status.error.length > 0, `${what}: empty error message`);
  assert.equal(typeof r.json.time, 'number', `${what}: no time`);
}

/** Collects mismatches instead of stopping at the first, and fails once with all of them. */
export class Mismatches {
  constructor(title) {
    this.title = title;
    this.items = [];
  }

  check(cond, msg) {
    if (!cond) this.items.push(msg);
    return cond;
  }

  add(msg) {
    this.items.push(msg);
  }

  done() {
    if (this.items.length) {
      assert.fail(`${this.title}: ${this.items.length} mismatch(es)\n  - ${this.items.join('\n  - ')}`);
    }
  }
}
