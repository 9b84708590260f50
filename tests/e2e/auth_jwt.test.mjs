// JWT attack suite over real HTTP (issue 3; docs/SECURITY.md "JWT"). Tokens are built here with
// node:crypto (lib/auth.mjs), never by the server. Every invalid token must be a 401 with the
// JSON error envelope that does not echo it; the server must stay up (GET /healthz after every
// batch) and never write a token or a key to its log. Repeated failures from one address are
// throttled with 429 and Retry-After.
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { after, before, describe, test } from 'node:test';

import {
  ALT_KEY,
  Mismatches,
  OTHER_SECRET,
  RO_KEY,
  ROOT_KEY,
  WRONG_KEY,
  assertErrorEnvelope,
  b64url,
  freshAddr,
  hs256,
  jwt,
  keyEnv,
  nowS,
  signRaw,
} from './lib/auth.mjs';
import { startServer } from './lib/server.mjs';

let srv;
const sent = new Set(); // every token this file sent, for the log check

const HS256 = { alg: 'HS256', typ: 'JWT' };
const base = () => ({ access: 'r', exp: nowS() + 3600 });

before(async () => {
  srv = await startServer({ insecure: false, env: keyEnv() });
  await srv.ok('PUT', '/collections/jc', { vectors: { size: 2, distance: 'Dot' } }, { headers: { 'api-key': ROOT_KEY } });
});

after(async () => {
  await srv?.cleanup();
});

/** GET /collections with token as Bearer (or in api-key), from a fresh source address. */
function send(token, { header = 'bearer', path = '/collections', localAddress = freshAddr() } = {}) {
  sent.add(token);
  const headers = header === 'bearer' ? { authorization: `Bearer ${token}` } : { 'api-key': token };
  return srv.request('GET', path, undefined, { headers, localAddress, agent: false });
}

async function healthy(what) {
  assert.ok(srv.running, `${what}: the server process is gone`);
  const r = await srv.request('GET', '/healthz', undefined, { agent: false });
  assert.equal(r.status, 200, `${what}: /healthz answered ${r.status}`);
}

/** Sends each [name, token] both as Bearer and as api-key; each must be a clean 401. */
async function expectAll401(cases, title) {
  const m = new Mismatches(title);
  for (const [name, token] of cases) {
    for (const header of ['bearer', 'api-key']) {
      let r;
      try {
        r = await send(token, { header });
      } catch (e) {
        m.add(`${name} (${header}): request failed: ${e.message}`);
        continue;
      }
      if (!m.check(r.status === 401, `${name} (${header}): expected 401, got ${r.status} ${r.text.slice(0, 200)}`)) continue;
      try {
        assertErrorEnvelope(r, `${name} (${header})`);
      } catch (e) {
        m.add(e.message);
      }
      m.check(!r.text.includes(token), `${name} (${header}): the 401 body echoes the token`);
      const sig = token.split('.')[2];
      if (sig && sig.length > 10) m.check(!r.text.includes(sig), `${name} (${header}): the 401 body echoes the signature`);
    }
  }
  await healthy(title);
  m.done();
}

function withSig(token, sig) {
  const [h, p] = token.split('.');
  return `${h}.${p}.${sig}`;
}

/** Standard base64 (with + / and padding), the alphabet strict base64url must refuse. */
function b64std(data) {
  return Buffer.from(data).toString('base64');
}

describe('JWT verification over HTTP', () => {
  test('a well-formed token is accepted (as Bearer and as api-key); one signed with alt_api_key too', async () => {
    for (const header of ['bearer', 'api-key']) {
      let r = await send(jwt(base()), { header });
      assert.equal(r.status, 200, `${header}: ${r.text}`);
      r = await send(jwt(base(), ALT_KEY), { header });
      assert.equal(r.status, 200, `alt (${header}): ${r.text}`);
    }
    // The read-only key is not a signing secret.
    const r = await send(jwt(base(), RO_KEY));
    assert.equal(r.status, 401, r.text);
  });

  test('algorithm attacks: alg none, HS512, RS256, missing alg', async () => {
    const claims = base();
    const p = b64url(JSON.stringify(claims));
    const noneInput = `${b64url(JSON.stringify({ alg: 'none', typ: 'JWT' }))}.${p}`;
    const hs512Input = `${b64url(JSON.stringify({ alg: 'HS512', typ: 'JWT' }))}.${p}`;
    const rs256Input = `${b64url(JSON.stringify({ alg: 'RS256', typ: 'JWT' }))}.${p}`;
    await expectAll401(
      [
        ['alg none, empty signature', `${noneInput}.`],
        ['alg none, HS256 signature of the input', `${noneInput}.${hs256(ROOT_KEY, noneInput)}`],
        ['alg None (case)', signRaw({ alg: 'None', typ: 'JWT' }, claims)],
        ['alg NONE, no signature segment', noneInput],
        ['alg HS512, real HS512 signature', `${hs512Input}.${b64url(createHmac('sha512', ROOT_KEY).update(hs512Input).digest())}`],
        ['alg HS512, HS256 signature', `${hs512Input}.${hs256(ROOT_KEY, hs512Input)}`],
        ['alg RS256, HMAC signature with the key (key confusion)', `${rs256Input}.${hs256(ROOT_KEY, rs256Input)}`],
        ['alg hs256 (lowercase)', signRaw({ alg: 'hs256', typ: 'JWT' }, claims)],
        ['alg "HS256 " (trailing space)', signRaw({ alg: 'HS256 ', typ: 'JWT' }, claims)],
        ['no alg', signRaw({ typ: 'JWT' }, claims)],
        ['alg as a list', signRaw({ alg: ['HS256'], typ: 'JWT' }, claims)],
        ['header is not an object', signRaw('"HS256"', claims)],
        ['header is not JSON', signRaw('{alg:HS256}', claims)],
      ],
      'algorithm attacks',
    );
  });

  test('signature attacks: other secret, tampered payload or header, truncated, over-long', async () => {
    const good = jwt(base());
    const [h, , s] = good.split('.');
    const tampered = `${h}.${b64url(JSON.stringify({ access: 'm', exp: nowS() + 3600 }))}.${s}`;
    const tamperedHeader = `${b64url(JSON.stringify({ alg: 'HS256', typ: 'JWT', kid: 'x' }))}.${good.split('.')[1]}.${s}`;
    // Flip one bit in the signature's first byte.
    const sigBytes = Buffer.from(s.replace(/-/g, '+').replace(/_/g, '/'), 'base64');
    sigBytes[0] ^= 1;
    const flipped = withSig(good, b64url(sigBytes));
    // Over-long: a correctly signed token longer than 8 KiB.
    const long = jwt({ ...base(), pad: 'x'.repeat(9000) });
    assert.ok(long.length > 8192);
    await expectAll401(
      [
        ['signed with another secret', jwt(base(), OTHER_SECRET)],
        ['signed with the wrong key a client guessed', jwt(base(), WRONG_KEY)],
        ['tampered payload (access r → m), old signature', tampered],
        ['tampered header, old signature', tamperedHeader],
        ['one signature bit flipped', flipped],
        ['signature truncated by one character', good.slice(0, -1)],
        ['signature truncated to half', good.slice(0, good.length - 20)],
        ['signature segment removed (two segments)', good.split('.').slice(0, 2).join('.')],
        ['signature of 16 bytes', withSig(good, b64url(sigBytes.subarray(0, 16)))],
        ['signature with an extra byte', withSig(good, b64url(Buffer.concat([sigBytes, Buffer.from([0])])))],
        ['over-long token (> 8 KiB), correctly signed', long],
        ['only the payload segment', good.split('.')[1]],
      ],
      'signature attacks',
    );
    // A correctly signed token just under the cap is fine.
    const under = jwt({ ...base(), pad: 'y'.repeat(5000) });
    assert.ok(under.length < 8192 && under.length > 6000);
    const r = await send(under);
    assert.equal(r.status, 200, r.text.slice(0, 300));
    // A far larger header must not crash the server, whatever it answers (401 or 431).
    const huge = jwt({ ...base(), pad: 'z'.repeat(60_000) });
    const r2 = await send(huge);
    assert.ok([401, 413, 431, 400].includes(r2.status), `64 KiB token: ${r2.status}`);
    await healthy('huge token');
  });

  test('strict base64url: padding, + and /, spaces, non-canonical last character', async () => {
    const claims = base();
    const hText = JSON.stringify(HS256);
    // A payload whose encoding needs padding (length not a multiple of 3).
    let pText = JSON.stringify({ ...claims, n: 'a' });
    while (Buffer.byteLength(pText) % 3 === 0) pText = JSON.stringify({ ...claims, n: `a${pText.length}` });
    const signed = (hSeg, pSeg) => `${hSeg}.${pSeg}.${hs256(ROOT_KEY, `${hSeg}.${pSeg}`)}`;
    const hSeg = b64url(hText);
    const pPadded = b64std(pText).replace(/\+/g, '-').replace(/\//g, '_'); // url alphabet, with '='
    assert.ok(pPadded.endsWith('='));
    // A payload whose standard base64 contains '+' or '/'.
    let pStd;
    for (let i = 0; ; i++) {
      const t = JSON.stringify({ ...claims, n: `~~~>>>???${i}` });
      const enc = b64std(t).replace(/=+$/, '');
      if (/[+/]/.test(enc)) {
        pStd = enc;
        break;
      }
    }
    // A signature whose standard base64 contains '+' or '/'.
    let stdSigToken;
    for (let i = 0; ; i++) {
      const t = jwt({ ...claims, i });
      const [h, p, s] = t.split('.');
      if (/[-_]/.test(s)) {
        stdSigToken = `${h}.${p}.${s.replace(/-/g, '+').replace(/_/g, '/')}`;
        break;
      }
    }
    const good = jwt(claims);
    const [gh, gp, gs] = good.split('.');
    // Non-canonical last character: same bytes, non-zero unused bits. A 32-byte MAC encodes to
    // 43 characters whose last carries 2 unused bits.
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
    const last = alphabet.indexOf(gs[gs.length - 1]);
    const nonCanon = `${gh}.${gp}.${gs.slice(0, -1)}${alphabet[last | 1]}`;
    assert.notEqual(nonCanon, good);
    await expectAll401(
      [
        ['payload with = padding (signed as sent)', signed(hSeg, pPadded)],
        ['header with = padding', signed(`${b64url(hText)}==`, b64url(pText))],
        ['signature with = padding', `${good}=`],
        ['payload in standard base64 with + or / (signed as sent)', signed(hSeg, pStd)],
        ['signature in standard base64 with + or /', stdSigToken],
        ['space inside the payload segment (signed as sent)', signed(hSeg, `${b64url(pText).slice(0, 5)} ${b64url(pText).slice(5)}`)],
        ['space inside the signature', `${gh}.${gp}.${gs.slice(0, 10)} ${gs.slice(10)}`],
        ['non-canonical last signature character', nonCanon],
        ['* in the header segment', `*${good}`],
        ['percent-encoded dot', `${gh}%2E${gp}.${gs}`],
      ],
      'strict base64url',
    );
  });

  test('segment structure: four segments, empty segments', async () => {
    const good = jwt(base());
    const [h, p, s] = good.split('.');
    await expectAll401(
      [
        ['four segments', `${good}.${s}`],
        ['four segments, empty last', `${good}.`],
        ['five segments', `${h}.${p}.${p}.${p}.${s}`],
        ['empty header segment', `.${p}.${s}`],
        ['empty payload segment', `${h}..${s}`],
        ['empty signature segment', `${h}.${p}.`],
        ['all segments empty', '..'],
        ['empty payload, correctly signed', `${h}..${hs256(ROOT_KEY, `${h}.`)}`],
        ['payload is not an object (array), correctly signed', signRaw(HS256, '[1,2]')],
        ['payload is a string, correctly signed', signRaw(HS256, '"r"')],
        ['payload is not JSON, correctly signed', signRaw(HS256, 'access=r')],
        ['payload with trailing garbage, correctly signed', signRaw(HS256, `${JSON.stringify(base())}x`)],
      ],
      'segment structure',
    );
  });

  test('time claims: expired, within leeway, nbf and iat in the future', async () => {
    const t = nowS();
    await expectAll401(
      [
        ['expired 2 minutes ago (leeway is 30 s)', jwt({ access: 'r', exp: t - 120 })],
        ['expired an hour ago', jwt({ access: 'r', exp: t - 3600 })],
        ['exp 0', jwt({ access: 'r', exp: 0 })],
        ['exp negative', jwt({ access: 'r', exp: -1 })],
        ['nbf an hour in the future', jwt({ access: 'r', nbf: t + 3600 })],
        ['iat an hour in the future', jwt({ access: 'r', iat: t + 3600 })],
      ],
      'time claims',
    );
    // Within the 30 s leeway: accepted.
    let r = await send(jwt({ access: 'r', exp: t - 10 }));
    assert.equal(r.status, 200, `exp 10 s ago: ${r.text}`);
    r = await send(jwt({ access: 'r', nbf: t + 10 }));
    assert.equal(r.status, 200, `nbf 10 s ahead: ${r.text}`);
    r = await send(jwt({ access: 'r', iat: t - 100, nbf: t - 100 }));
    assert.equal(r.status, 200, `iat/nbf in the past: ${r.text}`);
    // No exp at all is a valid (non-expiring) token in Qdrant's format.
    r = await send(jwt({ access: 'r', exp: null }));
    assert.equal(r.status, 200, `no exp: ${r.text}`);
  });

  test('wrong claim types and shapes', async () => {
    const t = nowS() + 3600;
    await expectAll401(
      [
        ['exp as a string', jwt({ access: 'r', exp: String(t) })],
        ['exp as a float', signRaw(HS256, `{"access":"r","exp":${t}.5}`)],
        ['nbf as a string', jwt({ access: 'r', nbf: '0' })],
        ['iat as a bool', jwt({ access: 'r', iat: true })],
        ['access as a number', jwt({ access: 5 })],
        ['access as an object', jwt({ access: { collection: 'jc', access: 'r' } })],
        ['access "x"', jwt({ access: 'x' })],
        ['access "rw" at global level', jwt({ access: 'rw' })],
        ['collection access "x"', jwt({ access: [{ collection: 'jc', access: 'x' }] })],
        ['collection access missing', jwt({ access: [{ collection: 'jc' }] })],
        ['collection access as a number', jwt({ access: [{ collection: 'jc', access: 1 }] })],
        ['collection name as a number', jwt({ access: [{ collection: 7, access: 'r' }] })],
        ['payload restriction not an object', jwt({ access: [{ collection: 'jc', access: 'r', payload: 'acme' }] })],
        ['payload restriction with a nested object value', jwt({ access: [{ collection: 'jc', access: 'r', payload: { a: { b: 1 } } }] })],
        ['sub as a number', jwt({ access: 'r', sub: 12 })],
        ['roles as a string', jwt({ roles: 'root' })],
        ['value_exists as a list', jwt({ access: 'r', value_exists: [] })],
      ],
      'claim types',
    );
  });

  test('duplicate JSON keys in header or payload', async () => {
    const t = nowS() + 3600;
    await expectAll401(
      [
        ['header alg twice (HS256 then none)', signRaw('{"alg":"HS256","alg":"none","typ":"JWT"}', base())],
        ['header alg twice (none then HS256)', signRaw('{"alg":"none","alg":"HS256","typ":"JWT"}', base())],
        ['header typ twice', signRaw('{"alg":"HS256","typ":"JWT","typ":"JWT"}', base())],
        ['payload access twice (r then m)', signRaw(HS256, `{"access":"r","access":"m","exp":${t}}`)],
        ['payload exp twice (future then past)', signRaw(HS256, `{"access":"r","exp":${t},"exp":1}`)],
        ['payload exp twice (past then future)', signRaw(HS256, `{"access":"r","exp":1,"exp":${t}}`)],
        [
          'duplicate key inside a collection entry',
          signRaw(HS256, `{"access":[{"collection":"jc","access":"r","access":"rw"}],"exp":${t}}`),
        ],
      ],
      'duplicate keys',
    );
  });

  test('a valid token without access or roles grants nothing (403, not 401, not manage)', async () => {
    const tok = jwt({ sub: 'nobody' });
    const m = new Mismatches('token without access');
    for (const [method, path, body] of [
      ['GET', '/collections/jc'],
      ['POST', '/collections/jc/points/scroll', { limit: 1 }],
      ['POST', '/collections/jc/points/count', {}],
      ['PUT', '/collections/jc2', { vectors: { size: 2, distance: 'Dot' } }],
      ['DELETE', '/collections/jc'],
    ]) {
      sent.add(tok);
      const r = await srv.request(method, path, body, { headers: { authorization: `Bearer ${tok}` }, localAddress: freshAddr(), agent: false });
      m.check(r.status === 403, `${method} ${path}: expected 403, got ${r.status} ${r.text.slice(0, 200)}`);
    }
    // GET /collections: either 403 or an empty list — never the collections.
    const r = await send(tok);
    m.check(r.status === 403 || (r.status === 200 && r.json.result.collections.length === 0), `GET /collections: ${r.status} ${r.text.slice(0, 200)}`);
    // Also an explicitly empty access list.
    const r2 = await srv.request('GET', '/collections/jc', undefined, { headers: { 'api-key': jwt({ access: [] }) }, localAddress: freshAddr(), agent: false });
    m.check(r2.status === 403, `access []: expected 403, got ${r2.status}`);
    const still = await srv.request('GET', '/collections/jc', undefined, { headers: { 'api-key': ROOT_KEY } });
    m.check(still.status === 200, 'the collection must still exist');
    m.done();
  });

  test('other credential shapes are 401', async () => {
    const m = new Mismatches('credential shapes');
    const cases = [
      ['Authorization: Basic', { authorization: `Basic ${Buffer.from(`u:${ROOT_KEY}`).toString('base64')}` }],
      ['Authorization: Bearer (empty)', { authorization: 'Bearer ' }],
      ['Authorization: Token <key>', { authorization: `Token ${ROOT_KEY}` }],
      ['api-key with a trailing space-suffix', { 'api-key': `${ROOT_KEY}x` }],
      ['api-key prefix of the key', { 'api-key': ROOT_KEY.slice(0, 32) }],
      ['Bearer <key> with a suffix', { authorization: `Bearer ${ROOT_KEY}0` }],
    ];
    for (const [name, headers] of cases) {
      const r = await srv.request('GET', '/collections', undefined, { headers, localAddress: freshAddr(), agent: false });
      m.check(r.status === 401, `${name}: expected 401, got ${r.status}`);
      if (r.status === 401) {
        try {
          assertErrorEnvelope(r, name);
        } catch (e) {
          m.add(e.message);
        }
        m.check(!r.text.includes(ROOT_KEY.slice(0, 20)), `${name}: the answer echoes the key`);
      }
    }
    await healthy('credential shapes');
    m.done();
  });

  test('leeway is configurable, and a cached token stops working at its exp', async () => {
    const strict = await startServer({ insecure: false, env: keyEnv({ AEGIS__SERVICE__JWT_LEEWAY_SEC: '0' }) });
    try {
      const t = nowS();
      const get = (tok) => strict.request('GET', '/collections', undefined, { headers: { authorization: `Bearer ${tok}` }, localAddress: freshAddr(), agent: false });
      const expired = jwt({ access: 'r', exp: t - 2 });
      sent.add(expired);
      assert.equal((await get(expired)).status, 401, 'exp 2 s ago with leeway 0');
      const nbf = jwt({ access: 'r', nbf: t + 5 });
      sent.add(nbf);
      assert.equal((await get(nbf)).status, 401, 'nbf 5 s ahead with leeway 0');
      // Valid for ~2 more seconds: used (and cached) now, refused once exp has passed.
      const short = jwt({ access: 'r', exp: t + 2 });
      sent.add(short);
      for (let i = 0; i < 3; i++) assert.equal((await get(short)).status, 200, 'fresh short-lived token');
      while (nowS() < t + 3) await new Promise((res) => setTimeout(res, 100));
      const r = await get(short);
      assert.equal(r.status, 401, `a cached token outlived its exp: ${r.status}`);
      assert.ok(!strict.stderr.includes(short.split('.')[2]), 'the token signature is in the log');
    } finally {
      await strict.cleanup();
    }
  });

  test('brute force: repeated failures from one address are throttled with 429 and Retry-After, and logged', async () => {
    const addr = '127.3.3.3';
    const statuses = [];
    let throttled;
    for (let i = 0; i < 14; i++) {
      const r = await srv.request('GET', '/collections', undefined, {
        headers: { 'api-key': `${WRONG_KEY}${i}` },
        localAddress: addr,
        agent: false,
      });
      statuses.push(r.status);
      if (r.status === 429 && !throttled) throttled = r;
    }
    assert.ok(throttled, `no 429 after 14 failures: ${statuses.join(',')}`);
    const first429 = statuses.indexOf(429);
    assert.ok(first429 >= 3 && first429 <= 12, `429 came at attempt ${first429 + 1}: ${statuses.join(',')}`);
    assert.ok(statuses.slice(0, first429).every((s) => s === 401), statuses.join(','));
    assert.ok(statuses.slice(first429).every((s) => s === 429), `once throttled, stays throttled: ${statuses.join(',')}`);
    const ra = throttled.headers['retry-after'];
    assert.match(String(ra), /^[1-9][0-9]*$/, `Retry-After: ${ra}`);
    assertErrorEnvelope(throttled, '429');
    // Tokens count too, from that address: still 429 while locked.
    const r = await srv.request('GET', '/collections', undefined, { headers: { authorization: `Bearer ${jwt({ access: 'r' }, OTHER_SECRET)}` }, localAddress: addr, agent: false });
    assert.equal(r.status, 429);
    // Another address is not affected.
    const other = await srv.request('GET', '/collections', undefined, { headers: { 'api-key': ROOT_KEY }, localAddress: '127.3.3.4', agent: false });
    assert.equal(other.status, 200);
    // Public routes stay reachable from the throttled address.
    const hz = await srv.request('GET', '/healthz', undefined, { localAddress: addr, agent: false });
    assert.equal(hz.status, 200);
    // Logged, naming the address.
    const deadline = Date.now() + 2000;
    while (!/127\.3\.3\.3/.test(srv.stderr.split('\n').filter((l) => /thrott|too many/i.test(l)).join('\n')) && Date.now() < deadline) {
      await new Promise((res) => setTimeout(res, 50));
    }
    const lines = srv.stderr.split('\n').filter((l) => /thrott|too many/i.test(l) && l.includes(addr));
    assert.ok(lines.length > 0, `no throttling log line for ${addr}`);
  });

  test('the log never contains a token, a signature or a key', async () => {
    await healthy('log check');
    const log = srv.stderr;
    const m = new Mismatches('secrets in the log');
    for (const [name, k] of Object.entries({ ROOT_KEY, ALT_KEY, RO_KEY, WRONG_KEY, OTHER_SECRET })) {
      m.check(!log.includes(k), `stderr contains ${name}`);
    }
    for (const k of [ROOT_KEY, WRONG_KEY]) m.check(!log.includes(k.slice(0, 16)), `stderr contains a prefix of a key: ${k.slice(0, 16)}`);
    let n = 0;
    for (const t of sent) {
      const parts = t.split('.');
      const leaked = (t.length >= 16 && log.includes(t)) || parts.some((p) => p.length >= 24 && log.includes(p));
      if (leaked) n++;
      if (leaked && n <= 5) m.add(`stderr contains (part of) a token: ${t.slice(0, 40)}…`);
    }
    m.check(n === 0, `${n} of ${sent.size} tokens leaked into stderr`);
    m.done();
  });
});
