// Independent reference computations for the e2e tests: a seeded PRNG, distances computed in
// double precision over the float32 values the server stores, brute-force top-k, and a
// tie-tolerant comparison of a server answer with the oracle's.
import assert from 'node:assert/strict';

/** mulberry32: a small, fast, seeded 32-bit PRNG. Returns a function giving floats in [0, 1). */
export function prng(seed) {
  let a = seed >>> 0;
  return function next() {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * A random vector whose components are multiples of 1/1024 in [-1, 1): exactly representable in
 * float32 and in short decimal, so what is sent is exactly what the server stores.
 */
export function randVector(rnd, dim) {
  const v = new Array(dim);
  for (let i = 0; i < dim; i++) v[i] = (Math.floor(rnd() * 2048) - 1024) / 1024;
  return v;
}

export function randInt(rnd, lo, hi) {
  return lo + Math.floor(rnd() * (hi - lo + 1));
}

export function norm(v) {
  let s = 0;
  for (const x of v) s += x * x;
  return Math.sqrt(s);
}

/** Cosine collections store the vector normalised (in float32). */
export function normalize(v) {
  const n = norm(v);
  return n === 0 ? v.slice() : v.map((x) => Math.fround(x / n));
}

export function dot(a, b) {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * b[i];
  return s;
}

export function l2(a, b) {
  let s = 0;
  for (let i = 0; i < a.length; i++) {
    const d = a[i] - b[i];
    s += d * d;
  }
  return Math.sqrt(s);
}

export function l1(a, b) {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += Math.abs(a[i] - b[i]);
  return s;
}

export function sparseDot(q, p) {
  const m = new Map();
  for (let i = 0; i < q.indices.length; i++) m.set(q.indices[i], q.values[i]);
  let s = 0;
  let overlap = false;
  for (let i = 0; i < p.indices.length; i++) {
    if (m.has(p.indices[i])) {
      s += m.get(p.indices[i]) * p.values[i];
      overlap = true;
    }
  }
  return overlap ? s : null;
}

/** Qdrant's score for a distance and whether bigger is better. */
export const DISTANCES = {
  Cosine: { higherBetter: true, score: (q, v) => dot(normalize(q), v) /* v stored normalised */ },
  Dot: { higherBetter: true, score: (q, v) => dot(q, v) },
  Euclid: { higherBetter: false, score: (q, v) => l2(q, v) },
  Manhattan: { higherBetter: false, score: (q, v) => l1(q, v) },
};

/**
 * Brute force: points is an iterable of {id, vector, payload}; vector is what the server stores
 * (normalised for Cosine). Returns every matching point sorted best first as {id, score}.
 */
export function bruteForce(points, query, distance, { filter = () => true, exclude = new Set() } = {}) {
  const d = DISTANCES[distance];
  const q = distance === 'Cosine' ? normalize(query) : query;
  const out = [];
  for (const p of points) {
    if (p.vector == null || exclude.has(p.id) || !filter(p)) continue;
    out.push({ id: p.id, score: distance === 'Cosine' ? dot(q, p.vector) : d.score(q, p.vector) });
  }
  out.sort((a, b) => (d.higherBetter ? b.score - a.score : a.score - b.score) || cmpId(a.id, b.id));
  return out;
}

export function cmpId(a, b) {
  if (typeof a === 'number' && typeof b === 'number') return a - b;
  return String(a) < String(b) ? -1 : String(a) > String(b) ? 1 : 0;
}

function close(a, b, rel) {
  return Math.abs(a - b) <= rel * Math.max(1, Math.abs(a), Math.abs(b));
}

/**
 * Asserts that `got` ([{id, score}]) is the top of `expected` (the full oracle ranking) starting
 * at `offset`, with `limit` entries (or all that remain). Scores must agree within `rel`; at each
 * rank the id must be the oracle's, except that among oracle entries whose scores tie within
 * `tieRel` any order is accepted (float32 rounding can legitimately swap them).
 */
export function assertRanking(got, expected, { limit, offset = 0, rel = 1e-4, tieRel = 2e-5, label = '' } = {}) {
  const want = expected.slice(offset, offset + limit);
  const show = () =>
    `${label}\n got: ${JSON.stringify(got.map((p) => [p.id, p.score]))}\nwant: ${JSON.stringify(want.map((p) => [p.id, p.score]))}`;
  assert.equal(got.length, want.length, `result length ${show()}`);
  const seen = new Set();
  for (let i = 0; i < got.length; i++) {
    const g = got[i];
    assert.ok(!seen.has(g.id), `duplicate id ${g.id} ${show()}`);
    seen.add(g.id);
    assert.ok(close(g.score, want[i].score, rel), `score at rank ${i}: ${g.score} vs ${want[i].score} ${show()}`);
    if (g.id === want[i].id) continue;
    const tied = expected.filter((e) => close(e.score, want[i].score, tieRel)).map((e) => e.id);
    assert.ok(tied.includes(g.id), `id at rank ${offset + i}: got ${g.id}, want ${want[i].id} (ties: ${tied}) ${show()}`);
  }
}

/** Reciprocal rank fusion as Qdrant computes it: score = sum over lists of 1 / (rank0 + 2). */
export function rrf(lists, k = 2) {
  const m = new Map();
  for (const list of lists) {
    list.forEach((p, pos) => m.set(p.id, (m.get(p.id) || 0) + 1 / (pos + k)));
  }
  return [...m.entries()].map(([id, score]) => ({ id, score })).sort((a, b) => b.score - a.score || cmpId(a.id, b.id));
}

/** Float vectors compare within float32 rounding. */
export function assertVectorClose(got, want, msg = '', tol = 1e-6) {
  assert.ok(Array.isArray(got), `${msg}: vector missing, got ${JSON.stringify(got)}`);
  assert.equal(got.length, want.length, `${msg}: dimension`);
  for (let i = 0; i < want.length; i++) {
    assert.ok(Math.abs(got[i] - want[i]) <= tol, `${msg}: component ${i}: got ${got[i]}, want ${want[i]}`);
  }
}
