#include "json/ag_fastpoints.h"

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
 * One JSON number, strictly by the grammar, to float. Exact (Clinger's fast path: an integer
 * mantissa below 2^53 scaled by an exact power of ten is one correctly rounded operation) or,
 * outside that, strtod on the token — the same double jansson computes — then the float cast.
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
    uint64_t mant = 0;
    int digits = 0, scale = 0, int_digits = 0;
    bool integer = true; /* no fraction, no exponent: jansson reads it as an integer */
    if (*p == '0') {
        p++;
    } else {
        while (p < c->end && *p >= '0' && *p <= '9') {
            int_digits++;
            if (digits < 19) {
                mant = mant * 10 + (uint64_t)(*p - '0');
                if (mant)
                    digits++;
            } else {
                scale++;
            }
            p++;
        }
    }
    if (p < c->end && *p == '.') {
        integer = false;
        p++;
        if (p >= c->end || *p < '0' || *p > '9')
            return false;
        while (p < c->end && *p >= '0' && *p <= '9') {
            if (digits < 19) {
                mant = mant * 10 + (uint64_t)(*p - '0');
                if (mant)
                    digits++;
                scale--;
            }
            p++;
        }
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
    int e = exp10 + scale;
    double d;
    if (mant == 0) {
        d = 0.0;
    } else if (digits <= 19 && mant <= (1ULL << 53) && e >= -22 && e <= 22) {
        d = e >= 0 ? (double)mant * pow10_tab[e] : (double)mant / pow10_tab[-e];
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
    float f = (float)d;
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

bool ag_fastpoints_parse(const char *buf, size_t len, uint32_t dim, ag_arena_t *arena,
                         ag_fastpoint_t **out, size_t *n)
{
    cur_t c = {buf, buf + len};
    size_t count = 0, cap = 0;
    ag_fastpoint_t *pts = NULL;
    if (!eat(&c, '{') || !key_is(&c, "points") || !eat(&c, '['))
        return false;
    bool ok = true;
    if (!eat(&c, ']')) {
        do {
            if (count == AG_MAX_BATCH || !eat(&c, '{')) {
                ok = false;
                break;
            }
            if (count == cap) {
                size_t nc = cap ? cap * 2 : 256;
                ag_fastpoint_t *g = ag_arena_alloc(arena, nc * sizeof(*g));
                if (!g) {
                    ok = false;
                    break;
                }
                if (count)
                    memcpy(g, pts, count * sizeof(*g));
                pts = g;
                cap = nc;
            }
            ag_fastpoint_t *pt = &pts[count];
            memset(pt, 0, sizeof(*pt));
            count++;
            bool have_id = false, have_vec = false, have_payload = false;
            do {
                ws(&c);
                if (!have_id && key_is(&c, "id")) {
                    have_id = parse_id(&c, &pt->id);
                    ok = have_id;
                } else if (!have_vec && key_is(&c, "vector")) {
                    pt->vector = ag_arena_alloc(arena, sizeof(float) * dim);
                    ok = pt->vector && eat(&c, '[');
                    uint32_t i = 0;
                    while (ok && i < dim) {
                        ok = number(&c, &pt->vector[i++]) && (i == dim || eat(&c, ','));
                    }
                    ok = ok && eat(&c, ']');
                    have_vec = ok;
                } else if (!have_payload && key_is(&c, "payload")) {
                    const char *s;
                    size_t plen;
                    ws(&c);
                    if (c.p < c.end && *c.p == '{' && skip_value(&c, &s, &plen)) {
                        ag_diag_t d;
                        ok = ag_json_parse_body(s, plen, true, &pt->payload, &d) == 0;
                    } else {
                        ok = false;
                    }
                    have_payload = ok;
                } else {
                    ok = false;
                }
            } while (ok && eat(&c, ','));
            ok = ok && have_id && have_vec && eat(&c, '}');
            if (ok && !pt->payload)
                ok = (pt->payload = json_object()) != NULL;
        } while (ok && eat(&c, ','));
        ok = ok && eat(&c, ']');
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

void ag_fastpoints_release(ag_fastpoint_t *pts, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        json_decref(pts[i].payload);
        pts[i].payload = NULL;
    }
}
