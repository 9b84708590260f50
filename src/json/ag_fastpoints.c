#include "json/ag_fastpoints.h"

#include <float.h>
#include <math.h>
#include <stdio.h>

#include "json/ag_json.h"

typedef struct cur {
    const char *p, *end;
} cur_t;

static void ws(cur_t *c)
{
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\n' || *c->p == '\r' || *c->p == '\t'))
        c->p++;
}

static bool eat(cur_t *c, char ch)
{
    ws(c);
    if (c->p < c->end && *c->p == ch) {
        c->p++;
        return true;
    }
    return false;
}

/* A key made of plain ASCII letters (no escapes), compared against want. */
static bool key_is(cur_t *c, const char *want)
{
    ws(c);
    size_t n = strlen(want);
    if (c->end - c->p < (ptrdiff_t)n + 2 || c->p[0] != '"' || memcmp(c->p + 1, want, n) != 0 ||
        c->p[n + 1] != '"')
        return false;
    c->p += n + 2;
    return eat(c, ':');
}

static const double pow10_tab[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                   1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                                   1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

/*
 * The double strtod would give for mant * 10^e (mant < 2^64 exactly, -27 <= e <= 27), through the
 * x87 extended format: mant and 10^|e| (5^27 < 2^64) are exact there, so the product or quotient
 * is the exact value rounded once to a 64-bit significand, L. Every midpoint between two
 * neighbouring doubles is itself a 64-bit value, so L lies strictly on the same side of each
 * midpoint as the exact value — and (double)L is the correctly rounded double, as strtod's —
 * unless L lands on a midpoint (its low 11 bits 0x400), when this answers false and the caller
 * asks strtod. All results are normal doubles (1e-27 .. 2e46). Only where long double is the
 * 64-bit x87 format and the FPU rounds to it (checked once); else always false.
 */
#if defined(__x86_64__) && LDBL_MANT_DIG == 64
static const long double pow10_ld[] = {1e0L,  1e1L,  1e2L,  1e3L,  1e4L,  1e5L,  1e6L,
                                       1e7L,  1e8L,  1e9L,  1e10L, 1e11L, 1e12L, 1e13L,
                                       1e14L, 1e15L, 1e16L, 1e17L, 1e18L, 1e19L, 1e20L,
                                       1e21L, 1e22L, 1e23L, 1e24L, 1e25L, 1e26L, 1e27L};

static bool extended_ok(void)
{
    /* 1 + 2^-63 survives only with the FPU rounding to 64 bits (precision control), the default
     * on Linux; a library that lowered it would make this path round differently. Cheap enough
     * to ask each time (no state shared between threads). */
    volatile long double one = 1.0L, tiny = 0x1p-63L;
    return one + tiny != one;
}

static bool ld_to_double(uint64_t mant, int e, double *out)
{
    if (e < -27 || e > 27 || !extended_ok())
        return false;
    long double l = e >= 0 ? (long double)mant * pow10_ld[e] : (long double)mant / pow10_ld[-e];
    uint64_t sig;
    memcpy(&sig, &l, sizeof(sig)); /* the x87 format's explicit 64-bit significand comes first */
    if ((sig & 0x7FF) == 0x400)
        return false; /* on a midpoint between doubles: the exact value decides, strtod knows it */
    *out = (double)l;
    return true;
}
#else
static bool ld_to_double(uint64_t mant, int e, double *out)
{
    (void)mant, (void)e, (void)out;
    return false;
}
#endif

static const uint64_t pow10_u64[] = {1ull,      10ull,      100ull,      1000ull,     10000ull,
                                     100000ull, 1000000ull, 10000000ull, 100000000ull};

/*
 * The run of up to eight ASCII digits at p (the caller checked 8 bytes are there): their count k
 * (0..8) and, in *out, their value. Little-endian: the first digit is the lowest byte. A byte b is
 * a digit when both b - 0x30 and b + 0x46 keep its top bit clear ('0' <= b <= '9'); a carry or
 * borrow only moves from a byte to later ones, so the first flagged byte is the first non-digit.
 * The k digits are moved to the top bytes (the bytes shifted in are zero digits in front) and
 * folded pairwise: two digits per 16 bits, then four, then eight.
 */
static int digit_run8(const char *p, uint64_t *out)
{
    uint64_t x;
    memcpy(&x, p, sizeof(x));
    uint64_t bad =
        ((x + 0x4646464646464646ull) | (x - 0x3030303030303030ull)) & 0x8080808080808080ull;
    int k = bad ? __builtin_ctzll(bad) >> 3 : 8;
    if (k == 0)
        return 0;
    x -= 0x3030303030303030ull;
    if (k < 8)
        x <<= 8 * (8 - k);
    x = x * 10 + (x >> 8);                           /* bytes 0,2,4,6: two-digit values */
    uint64_t lo = x & 0x000000FF000000FFull;         /* pairs 0 and 2 */
    uint64_t hi = (x >> 16) & 0x000000FF000000FFull; /* pairs 1 and 3 */
    x = (lo * (100 + (1000000ull << 32)) + hi * (1 + (10000ull << 32))) >> 32;
    *out = x & 0xFFFFFFFFull;
    return k;
}

/* Digits of a number. mant holds the first 19 significant digits; digits counts them, all counts
 * every digit read; each fraction digit kept lowers scale, each integer digit dropped raises it;
 * lost: a nonzero digit was dropped. */
typedef struct digits {
    uint64_t mant;
    int digits, all, scale;
    bool lost;
} digits_t;

/* Reads the run of digits at p (frac: after the decimal point) into d; answers where it ends. */
static const char *digit_run(const char *p, const char *end, bool frac, digits_t *d)
{
    if (d->mant == 0) /* leading zeros of a fraction are not significant */
        while (p < end && *p == '0') {
            d->all++;
            d->scale -= frac;
            p++;
        }
    while (end - p >= 8 && d->digits <= 11) {
        uint64_t v;
        int k = digit_run8(p, &v);
        if (k == 0)
            return p;
        d->mant = d->mant * pow10_u64[k] + v; /* past the zeros above, every digit counts */
        d->digits += k;
        d->all += k;
        d->scale -= frac ? k : 0;
        p += k;
        if (k < 8)
            return p;
    }
    for (; p < end && *p >= '0' && *p <= '9'; p++) {
        d->all++;
        if (d->digits < 19) {
            d->mant = d->mant * 10 + (uint64_t)(*p - '0');
            if (d->mant)
                d->digits++;
            d->scale -= frac;
        } else {
            d->scale += !frac;
            d->lost |= *p != '0';
        }
    }
    return p;
}

/*
 * The float that (float)strtod(mant * 10^e) gives, from a double computed in two roundings, for a
 * mant above 2^53 (|e| <= 22, so 10^|e| is exact): (double)mant and the product or quotient are
 * each within half an ulp (relative 2^-53), so the result d lies within 2 ulps of the exact value
 * and within 3 ulps of strtod's double D. The float cast of d then equals that of D unless a
 * midpoint between two floats lies that close to d: floats keep the top 24 of the double's 53
 * significand bits, so such a midpoint has its low 29 bits equal to 2^28 — answers false when d's
 * low 29 bits are within 4 of that (the caller tries the exact ways). d is a normal float's range
 * here.
 */
static bool float_of_product(uint64_t mant, int e, float *out)
{
    double d = e >= 0 ? (double)mant * pow10_tab[e] : (double)mant / pow10_tab[-e];
    uint64_t bits;
    memcpy(&bits, &d, sizeof(bits));
    uint64_t low = bits & ((1ull << 29) - 1);
    if (low + 4 >= (1ull << 28) && low <= (1ull << 28) + 4)
        return false;
    *out = (float)d;
    return true;
}

/*
 * One JSON number, strictly by the grammar, to float. Exact (Clinger's fast path: an integer
 * mantissa below 2^53 scaled by an exact power of ten is one correctly rounded operation), or the
 * same float by the bound above, or through the x87 format, or strtod on the token — the same
 * double jansson computes — then the float cast.
 */
static bool number(cur_t *c, float *out)
{
    ws(c);
    const char *s = c->p;
    const char *p = s;
    bool neg = false;
    if (p < c->end && *p == '-') {
        neg = true;
        p++;
    }
    if (p >= c->end || *p < '0' || *p > '9')
        return false;
    digits_t dg = {0};
    bool integer = true; /* no fraction, no exponent: jansson reads it as an integer */
    if (*p == '0') {
        p++;
    } else {
        p = digit_run(p, c->end, false, &dg);
    }
    int int_digits = dg.all;
    if (p < c->end && *p == '.') {
        integer = false;
        p++;
        if (p >= c->end || *p < '0' || *p > '9')
            return false;
        p = digit_run(p, c->end, true, &dg);
    }
    int exp10 = 0;
    if (p < c->end && (*p == 'e' || *p == 'E')) {
        integer = false;
        p++;
        bool eneg = false;
        if (p < c->end && (*p == '+' || *p == '-'))
            eneg = *p++ == '-';
        if (p >= c->end || *p < '0' || *p > '9')
            return false;
        while (p < c->end && *p >= '0' && *p <= '9') {
            if (exp10 < 10000)
                exp10 = exp10 * 10 + (*p - '0');
            p++;
        }
        if (eneg)
            exp10 = -exp10;
    }
    /* An integer literal of 19 digits or more may lie outside what the strict parser reads as an
     * integer (it refuses those, naming them): decline, so both paths answer alike. */
    if (integer && int_digits >= 19)
        return false;
    c->p = p;
    uint64_t mant = dg.mant;
    int e = exp10 + dg.scale;
    double d;
    float f;
    if (mant == 0) {
        d = 0.0;
    } else if (!dg.lost && mant <= (1ULL << 53) && e >= -22 && e <= 22) {
        d = e >= 0 ? (double)mant * pow10_tab[e] : (double)mant / pow10_tab[-e];
    } else if (!dg.lost && e >= -22 && e <= 22 && float_of_product(mant, e, &f)) {
        /* the shortest repr of a float (17 digits, as JavaScript and Python print them) */
        *out = neg ? -f : f;
        return isfinite(f);
    } else if (!dg.lost && ld_to_double(mant, e, &d)) {
        /* near a float midpoint, or a larger exponent */
    } else {
        char tok[400];
        size_t len = (size_t)(p - s);
        if (len >= sizeof(tok))
            return false;
        memcpy(tok, s, len);
        tok[len] = '\0';
        d = strtod(tok, NULL);
        neg = false; /* the sign is in the token */
    }
    if (neg)
        d = -d;
    f = (float)d;
    if (!isfinite(d) || !isfinite(f))
        return false;
    *out = f;
    return true;
}

/* The extent of a JSON value starting at c->p (objects/arrays matched, strings skipped). */
static bool skip_value(cur_t *c, const char **start, size_t *len)
{
    ws(c);
    const char *s = c->p, *p = c->p;
    int depth = 0;
    bool in_str = false;
    for (; p < c->end; p++) {
        char ch = *p;
        if (in_str) {
            if (ch == '\\')
                p++;
            else if (ch == '"')
                in_str = false;
            continue;
        }
        if (ch == '"') {
            in_str = true;
        } else if (ch == '{' || ch == '[') {
            depth++;
        } else if (ch == '}' || ch == ']') {
            if (--depth == 0) {
                p++;
                break;
            }
            if (depth < 0)
                return false;
        } else if (depth == 0 &&
                   (ch == ',' || ch == ' ' || ch == '\n' || ch == '\r' || ch == '\t')) {
            break;
        }
    }
    if (depth != 0 || p == s)
        return false;
    c->p = p;
    *start = s;
    *len = (size_t)(p - s);
    return true;
}

static bool parse_id(cur_t *c, ag_point_id_t *id)
{
    ws(c);
    if (c->p < c->end && *c->p == '"') {
        const char *q = memchr(c->p + 1, '"', (size_t)(c->end - c->p - 1));
        if (!q || q - c->p - 1 > 40)
            return false;
        char buf[48];
        size_t n = (size_t)(q - c->p - 1);
        memcpy(buf, c->p + 1, n);
        buf[n] = '\0';
        /* Only the characters a UUID is made of (no escapes, no control bytes); a numeric
         * string is invalid: the slow path explains both. */
        if (strspn(buf, "0123456789abcdefABCDEF-") != n || strspn(buf, "0123456789") == n)
            return false;
        if (ag_id_parse_str(buf, id, NULL) != 0 || id->kind != AG_ID_UUID)
            return false;
        c->p = q + 1;
        return true;
    }
    const char *p = c->p;
    uint64_t v = 0;
    int digits = 0;
    if (p < c->end && *p == '0' && p + 1 < c->end && p[1] >= '0' && p[1] <= '9')
        return false;
    while (p < c->end && *p >= '0' && *p <= '9') {
        if (++digits > 19)
            return false; /* 20 digits: let the slow path handle the u64 range */
        v = v * 10 + (uint64_t)(*p - '0');
        p++;
    }
    if (digits == 0 || (p < c->end && (*p == '.' || *p == 'e' || *p == 'E')))
        return false;
    memset(id, 0, sizeof(*id));
    id->kind = AG_ID_NUM;
    id->num = v;
    c->p = p;
    return true;
}

/* A key or string without escapes, control bytes or non-ASCII bytes (anything else: decline, the
 * strict path decodes and checks it); *s and *n are the bytes between the quotes. */
static bool plain_str(cur_t *c, const char **s, size_t *n)
{
    ws(c);
    if (c->p >= c->end || *c->p != '"')
        return false;
    const char *p = c->p + 1;
    while (p < c->end && *p != '"') {
        unsigned char ch = (unsigned char)*p;
        if (ch < 0x20 || ch >= 0x80 || ch == '\\')
            return false;
        p++;
    }
    if (p >= c->end)
        return false;
    *s = c->p + 1;
    *n = (size_t)(p - c->p - 1);
    c->p = p + 1;
    return true;
}

/* Which of the collection's named vectors a key names (-1: none, or the unnamed one). */
static int named_index(const ag_fastcols_t *cols, const char *s, size_t n)
{
    for (size_t v = 0; v < cols->n; v++)
        if (n && strlen(cols->names[v]) == n && memcmp(cols->names[v], s, n) == 0)
            return (int)v;
    return -1;
}

/* "[" dim numbers "]" into a new arena array. */
static bool floats(cur_t *c, uint32_t dim, ag_arena_t *arena, float **out)
{
    float *f = ag_arena_alloc(arena, sizeof(float) * (dim ? dim : 1));
    bool ok = f && dim && eat(c, '[');
    for (uint32_t i = 0; ok && i < dim; i++)
        ok = number(c, &f[i]) && (i + 1 == dim || eat(c, ','));
    ok = ok && eat(c, ']');
    *out = f;
    return ok;
}

static bool is_null(cur_t *c)
{
    ws(c);
    if (c->end - c->p >= 4 && memcmp(c->p, "null", 4) == 0) {
        c->p += 4;
        return true;
    }
    return false;
}

/* A payload object, parsed strictly into a new reference. */
static bool payload(cur_t *c, json_t **out)
{
    const char *s;
    size_t plen;
    ws(c);
    if (c->p >= c->end || *c->p != '{' || !skip_value(c, &s, &plen))
        return false;
    ag_diag_t d;
    return ag_json_parse_body(s, plen, true, out, &d) == 0;
}

/* A point's `vector`: an array for the unnamed vector, or {name: array, ...} of distinct named
 * vectors (at least one). */
static bool point_vectors(cur_t *c, const ag_fastcols_t *cols, ag_arena_t *arena,
                          ag_fastpoint_t *pt)
{
    ws(c);
    if (c->p < c->end && *c->p == '[') {
        if (cols->n != 1 || cols->names[0][0] != '\0')
            return false;
        return floats(c, cols->dims[0], arena, &pt->vecs[0]);
    }
    if (!eat(c, '{'))
        return false;
    bool any = false;
    do {
        const char *k;
        size_t kn;
        int v;
        if (!plain_str(c, &k, &kn) || !eat(c, ':') || (v = named_index(cols, k, kn)) < 0 ||
            pt->vecs[v] || !floats(c, cols->dims[v], arena, &pt->vecs[v]))
            return false;
        any = true;
    } while (eat(c, ','));
    return any && eat(c, '}');
}

/* Appends room for one more element to an arena array (doubling; the old block stays in the
 * arena). */
static void *grow(ag_arena_t *arena, void *arr, size_t *cap, size_t count, size_t size)
{
    if (count < *cap)
        return arr;
    size_t nc = *cap ? *cap * 2 : 256;
    void *g = ag_arena_alloc(arena, nc * size);
    if (g && count)
        memcpy(g, arr, count * size);
    *cap = nc;
    return g;
}

/* The record form's array: [{"id", "vector", "payload"}, ...]. */
static bool records(cur_t *c, const ag_fastcols_t *cols, ag_arena_t *arena, ag_fastpoint_t **out,
                    size_t *n)
{
    size_t count = 0, cap = 0;
    ag_fastpoint_t *pts = NULL;
    bool ok = eat(c, '[');
    if (ok && !eat(c, ']')) {
        do {
            if (count == AG_MAX_BATCH || !eat(c, '{') ||
                !(pts = grow(arena, pts, &cap, count, sizeof(*pts)))) {
                ok = false;
                break;
            }
            ag_fastpoint_t *pt = &pts[count];
            memset(pt, 0, sizeof(*pt));
            count++;
            bool have_id = false, have_vec = false, have_payload = false;
            do {
                ws(c);
                if (!have_id && key_is(c, "id")) {
                    ok = have_id = parse_id(c, &pt->id);
                } else if (!have_vec && key_is(c, "vector")) {
                    ok = have_vec = point_vectors(c, cols, arena, pt);
                } else if (!have_payload && key_is(c, "payload")) {
                    ok = have_payload = payload(c, &pt->payload);
                } else {
                    ok = false;
                }
            } while (ok && eat(c, ','));
            ok = ok && have_id && have_vec && eat(c, '}');
            if (ok && !pt->payload)
                ok = (pt->payload = json_object()) != NULL;
        } while (ok && eat(c, ','));
        ok = ok && eat(c, ']');
    }
    *out = pts;
    *n = count;
    return ok;
}

/* One column of the batch form: [array, ...] of one vector's values, into *out (count in *n). */
static bool column(cur_t *c, uint32_t dim, ag_arena_t *arena, float ***out, size_t *n)
{
    size_t count = 0, cap = 0;
    float **col = NULL;
    bool ok = eat(c, '[');
    if (ok && !eat(c, ']')) {
        do {
            ok = count < AG_MAX_BATCH && (col = grow(arena, col, &cap, count, sizeof(*col))) &&
                 floats(c, dim, arena, &col[count]);
            count++;
        } while (ok && eat(c, ','));
        ok = ok && eat(c, ']');
    }
    *out = col;
    *n = count;
    return ok;
}

/* The column form {"ids": [...], "vectors": [...] | {name: [...]}, "payloads": [...] | null},
 * keys in any order, ids and vectors required, every column as long as ids. */
static bool columns(cur_t *c, const ag_fastcols_t *cols, ag_arena_t *arena, ag_fastpoint_t **out,
                    size_t *n)
{
    ag_point_id_t *ids = NULL;
    float **vcol[AG_FP_MAX_VECS] = {0};
    size_t nvcol[AG_FP_MAX_VECS] = {0};
    json_t **pls = NULL;
    size_t nids = 0, npls = 0, cap = 0;
    bool have_ids = false, have_vecs = false, have_pls = false, pls_array = false;
    bool ok = eat(c, '{');
    *out = NULL;
    *n = 0;
    if (ok) {
        do {
            ws(c);
            if (!have_ids && key_is(c, "ids")) {
                have_ids = true;
                ok = eat(c, '[');
                if (ok && !eat(c, ']')) {
                    do {
                        ok = nids < AG_MAX_BATCH &&
                             (ids = grow(arena, ids, &cap, nids, sizeof(*ids))) &&
                             parse_id(c, &ids[nids]);
                        nids++;
                    } while (ok && eat(c, ','));
                    ok = ok && eat(c, ']');
                }
            } else if (!have_vecs && key_is(c, "vectors")) {
                have_vecs = true;
                ws(c);
                if (c->p < c->end && *c->p == '[') {
                    ok = cols->n == 1 && cols->names[0][0] == '\0' &&
                         column(c, cols->dims[0], arena, &vcol[0], &nvcol[0]);
                } else {
                    bool any = false;
                    ok = eat(c, '{');
                    while (ok) {
                        const char *k;
                        size_t kn;
                        int v;
                        ok = plain_str(c, &k, &kn) && eat(c, ':') &&
                             (v = named_index(cols, k, kn)) >= 0 && !vcol[v] &&
                             column(c, cols->dims[v], arena, &vcol[v], &nvcol[v]);
                        any = true;
                        if (!eat(c, ','))
                            break;
                    }
                    ok = ok && any && eat(c, '}');
                }
            } else if (!have_pls && key_is(c, "payloads")) {
                have_pls = true;
                size_t pcap = 0;
                if (!is_null(c)) {
                    ok = eat(c, '[');
                    if (ok && !eat(c, ']')) {
                        do {
                            ok = npls < AG_MAX_BATCH &&
                                 (pls = grow(arena, pls, &pcap, npls, sizeof(*pls))) != NULL;
                            if (!ok)
                                break;
                            pls[npls] = NULL;
                            ok = is_null(c) || payload(c, &pls[npls]);
                            npls++;
                        } while (ok && eat(c, ','));
                        ok = ok && eat(c, ']');
                    }
                    pls_array = true; /* to be as long as ids */
                }
            } else {
                ok = false;
            }
        } while (ok && eat(c, ','));
        ok = ok && have_ids && have_vecs && nids > 0 && eat(c, '}');
    }
    /* Every column as long as ids (the strict path names the one that is not). */
    for (size_t v = 0; ok && v < cols->n; v++)
        ok = !vcol[v] || nvcol[v] == nids;
    ok = ok && (!pls || npls == nids) && !(pls_array && !pls && nids);
    ag_fastpoint_t *pts = ok ? ag_arena_calloc(arena, nids, sizeof(*pts)) : NULL;
    for (size_t i = 0; pts && i < nids; i++) {
        pts[i].id = ids[i];
        for (size_t v = 0; v < cols->n; v++)
            pts[i].vecs[v] = vcol[v] ? vcol[v][i] : NULL;
        pts[i].vector = pts[i].vecs[0];
        pts[i].payload = pls ? pls[i] : NULL;
        if (pls)
            pls[i] = NULL;
        if (!pts[i].payload && !(pts[i].payload = json_object())) {
            ag_fastpoints_release(pts, i);
            pts = NULL;
        }
    }
    for (size_t i = 0; i < npls; i++)
        json_decref(pls[i]);
    if (!pts)
        return false;
    *out = pts;
    *n = nids;
    return true;
}

bool ag_fastpoints_parse_cols(const char *buf, size_t len, const ag_fastcols_t *cols,
                              ag_arena_t *arena, ag_fastpoint_t **out, size_t *n)
{
    cur_t c = {buf, buf + len};
    ag_fastpoint_t *pts = NULL;
    size_t count = 0;
    if (cols->n == 0 || cols->n > AG_FP_MAX_VECS || !eat(&c, '{'))
        return false;
    bool ok;
    ws(&c);
    if (key_is(&c, "points")) {
        ok = records(&c, cols, arena, &pts, &count);
        for (size_t i = 0; i < count; i++)
            pts[i].vector = pts[i].vecs[0];
    } else {
        ok = key_is(&c, "batch") && columns(&c, cols, arena, &pts, &count);
    }
    ok = ok && eat(&c, '}');
    ws(&c);
    ok = ok && c.p == c.end;
    if (!ok) {
        ag_fastpoints_release(pts, count);
        return false;
    }
    *out = pts;
    *n = count;
    return true;
}

bool ag_fastpoints_parse(const char *buf, size_t len, uint32_t dim, ag_arena_t *arena,
                         ag_fastpoint_t **out, size_t *n)
{
    ag_fastcols_t cols = {1, {""}, {dim}};
    return ag_fastpoints_parse_cols(buf, len, &cols, arena, out, n);
}

void ag_fastpoints_release(ag_fastpoint_t *pts, size_t n)
{
    for (size_t i = 0; pts && i < n; i++) {
        json_decref(pts[i].payload);
        pts[i].payload = NULL;
    }
}

/* ---- search bodies ------------------------------------------------------------------------- */

/* A literal (true, false, null) followed by a delimiter. */
static bool literal(cur_t *c, const char *lit)
{
    ws(c);
    size_t n = strlen(lit);
    if (c->end - c->p < (ptrdiff_t)n || memcmp(c->p, lit, n) != 0)
        return false;
    const char *q = c->p + n;
    if (q < c->end && *q != ',' && *q != '}' && *q != ']' && *q != ' ' && *q != '\n' &&
        *q != '\r' && *q != '\t')
        return false;
    c->p = q;
    return true;
}

static bool boolean(cur_t *c, bool *out)
{
    if (literal(c, "true"))
        return *out = true;
    *out = false;
    return literal(c, "false");
}

/* A non-negative JSON integer of at most 18 digits (larger ones: decline). */
static bool uinteger(cur_t *c, uint64_t *out)
{
    ws(c);
    const char *p = c->p;
    uint64_t v = 0;
    int digits = 0;
    if (p < c->end && *p == '0' && p + 1 < c->end && p[1] >= '0' && p[1] <= '9')
        return false;
    while (p < c->end && *p >= '0' && *p <= '9') {
        if (++digits > 18)
            return false;
        v = v * 10 + (uint64_t)(*p - '0');
        p++;
    }
    if (digits == 0 || (p < c->end && (*p == '.' || *p == 'e' || *p == 'E')))
        return false;
    c->p = p;
    *out = v;
    return true;
}

/* One key of the body, each at most once (a repeated key declines: the strict parser names it). */
#define SEEN(bit) (seen & (1u << (bit)) ? false : (seen |= 1u << (bit), true))

bool ag_fastsearch_parse(const char *buf, size_t len, const char *vkey, uint32_t dim,
                         ag_arena_t *arena, ag_fastsearch_t *out)
{
    memset(out, 0, sizeof(*out));
    cur_t c = {buf, buf + len};
    unsigned seen = 0;
    bool ok = eat(&c, '{');
    if (!ok || eat(&c, '}'))
        return false;
    do {
        ws(&c);
        if (key_is(&c, vkey)) {
            ok = SEEN(0) && floats(&c, dim, arena, &out->vec);
        } else if (key_is(&c, "limit")) {
            ok = SEEN(1) && uinteger(&c, &out->limit);
            out->has_limit = true;
        } else if (key_is(&c, "offset")) {
            ok = SEEN(2) && uinteger(&c, &out->offset);
            out->has_offset = true;
        } else if (key_is(&c, "with_payload")) {
            ok = SEEN(3) && boolean(&c, &out->with_payload);
        } else if (key_is(&c, "with_vector")) {
            ok = SEEN(4) && boolean(&c, &out->with_vector);
        } else if (key_is(&c, "score_threshold")) {
            ok = SEEN(5) && number(&c, &out->threshold);
            out->has_threshold = true;
        } else if (key_is(&c, "filter")) {
            ws(&c);
            ok = SEEN(6) && c.p < c.end && *c.p == '{' &&
                 skip_value(&c, &out->filter, &out->filter_len);
        } else if (key_is(&c, "params")) {
            ok = SEEN(7) && eat(&c, '{') && !eat(&c, '}');
            unsigned pseen = 0;
            while (ok) {
                ws(&c);
                if (!(pseen & 1) && key_is(&c, "hnsw_ef")) {
                    pseen |= 1;
                    ok = uinteger(&c, &out->ef) && out->ef >= 1 && out->ef <= UINT32_MAX;
                } else if (!(pseen & 2) && key_is(&c, "exact")) {
                    pseen |= 2;
                    ok = boolean(&c, &out->exact);
                } else {
                    ok = false;
                }
                if (!eat(&c, ','))
                    break;
            }
            ok = ok && eat(&c, '}');
        } else {
            ok = false;
        }
    } while (ok && eat(&c, ','));
    ok = ok && (seen & 1) && eat(&c, '}');
    ws(&c);
    return ok && c.p == c.end;
}
