// Payloads across a restart. Loading packs each stored payload straight from its text
// (json/ag_pack.h ag_pack_from_text) and leaves the corners to jansson; either way every point
// must come back with the payload it was written with — key order, integer vs real, escapes,
// NUL inside strings (requests accept it; loading once dropped such points), deep nesting, wide
// objects — and no record may be skipped as unreadable.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer } from './lib/server.mjs';

let srv;
before(async () => {
  srv = await startServer();
});
after(async () => {
  await srv?.cleanup();
});

const wide = `{${Array.from({ length: 70 }, (_, i) => `"k${i}":${i}`).join(',')}}`;
const deep = `{"d":${'['.repeat(40)}1${']'.repeat(40)}}`;
// Raw request texts (JSON.stringify would normalise some of them).
const PAYLOADS = [
  '{"group":7,"tag":"t3"}',
  '{}',
  '{"z":1,"a":2.0,"m":-0.0,"n":-0,"e":1E+2,"big":9223372036854775807,"small":-9223372036854775808}',
  '{"tiny":5e-324,"huge":1.7976931348623157e308,"third":0.3333333333333333}',
  '{"s":"h\\u00e9llo \\ud83d\\ude00 \\"q\\" \\\\ \\/ \\b\\f\\n\\r\\t","raw":"日本 😀"}',
  '{"nul":"a\\u0000b","\\u006bey":"escaped key"}',
  '{"n":null,"t":true,"f":false,"arr":[],"obj":{},"mix":[1,"two",{"three":[3.5,null]}]}',
  wide,
  deep,
];

test('every payload shape comes back unchanged after a restart, none skipped', async () => {
  await srv.ok('PUT', '/collections/p', { vectors: { size: 2, distance: 'Dot' } });
  const points = PAYLOADS.map((p, i) => `{"id":${i + 1},"vector":[1,${i}],"payload":${p}}`);
  await srv.ok('PUT', '/collections/p/points?wait=true', `{"points":[${points.join(',')}]}`);
  const before = [], beforeText = [];
  for (let i = 0; i < PAYLOADS.length; i++) {
    const r = await srv.request('GET', `/collections/p/points/${i + 1}`);
    assert.equal(r.status, 200, r.text);
    before.push(r.json.result.payload);
    beforeText.push(/"payload":(.*),"vector"/.exec(r.text)?.[1]);
    assert.ok(beforeText[i], r.text);
  }
  // what was written is what is served (spot checks of the corners)
  assert.equal(before[5].nul, 'a\u0000b');
  assert.equal(before[5].key, 'escaped key');
  assert.equal(Object.keys(before[2]).join(','), 'z,a,m,n,e,big,small');
  assert.equal(Object.keys(before[7]).length, 70);
  await srv.restart();
  assert.equal((await srv.ok('POST', '/collections/p/points/count', {})).count, PAYLOADS.length);
  for (let i = 0; i < PAYLOADS.length; i++) {
    const r = await srv.request('GET', `/collections/p/points/${i + 1}`);
    assert.equal(r.status, 200, `point ${i + 1} after restart: ${r.text}`);
    // the served text itself: same members in the same order, integer 2 vs real 2.0 kept
    assert.equal(/"payload":(.*),"vector"/.exec(r.text)?.[1], beforeText[i], `payload ${i + 1}`);
    assert.deepEqual(r.json.result.payload, before[i]);
  }
  // integer vs real survives in the served text
  const t = (await srv.request('GET', '/collections/p/points/3')).text;
  assert.match(t, /"z":1,"a":2\.0/);
  assert.doesNotMatch(srv.stderr, /unreadable records/);
});
