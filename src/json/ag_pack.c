/*
 * ag_pack.c — encoding JSON values into the packed form of ag_pack.h and decoding them back.
 *
 * ag_pack_from_text (at the end) builds the same bytes from JSON text without a tree.
 *
 * Encoding is two passes over the jansson tree: the first measures every container's body (kept
 * in pre-order, so the second pass finds them in the order it writes them), the second writes
 * into one allocation of the exact size. Linear in the size of the value.
 */
#include "ag_pack.h"

#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdlib.h>

const uint8_t ag_pack_empty[3] = {AG_PK_OBJECT, 0, 0};

static size_t varint_len(uint64_t v)
{
    size_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

static uint8_t *put_varint(uint8_t *p, uint64_t v)
{
    while (v >= 0x80) {
        *p++ = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    *p++ = (uint8_t)v;
    return p;
}

static uint64_t zigzag(int64_t v)
{
    return ((uint64_t)v << 1) ^ (uint64_t)(v >> 63);
}

/* Container body lengths in pre-order (local first, heap when a value has more containers). */
typedef struct bodies {
    size_t *v;
    size_t n, cap, next;
    size_t local[16];
    bool oom;
} bodies_t;

static size_t push_body(bodies_t *b)
{
    if (b->n == b->cap) {
        size_t cap = b->cap * 2;
        size_t *nv =
            b->v == b->local ? malloc(cap * sizeof(size_t)) : realloc(b->v, cap * sizeof(size_t));
        if (!nv) {
            b->oom = true;
            return SIZE_MAX;
        }
        if (b->v == b->local)
            memcpy(nv, b->local, sizeof(b->local));
        b->v = nv;
        b->cap = cap;
    }
    b->v[b->n] = 0;
    return b->n++;
}

/* Bytes v takes packed; container bodies recorded in b. */
static size_t measure(const json_t *v, bodies_t *b)
{
    switch (json_typeof(v)) {
    case JSON_INTEGER:
        return 1 + varint_len(zigzag(json_integer_value(v)));
    case JSON_REAL:
        return 1 + sizeof(double);
    case JSON_STRING: {
        size_t n = json_string_length(v);
        return 1 + varint_len(n) + n;
    }
    case JSON_ARRAY: {
        size_t at = push_body(b), body = 0, count = json_array_size(v);
        if (b->oom)
            return 0;
        for (size_t i = 0; i < count; i++)
            body += measure(json_array_get(v, i), b);
        b->v[at] = body;
        return 1 + varint_len(count) + varint_len(body) + body;
    }
    case JSON_OBJECT: {
        size_t at = push_body(b), body = 0;
        if (b->oom)
            return 0;
        const char *key;
        size_t klen;
        json_t *m;
        json_object_keylen_foreach((json_t *)v, key, klen, m)
        {
            body += varint_len(klen) + klen + measure(m, b);
        }
        b->v[at] = body;
        return 1 + varint_len(json_object_size(v)) + varint_len(body) + body;
    }
    default: /* null, true, false */
        return 1;
    }
}

static uint8_t *write_value(const json_t *v, uint8_t *p, bodies_t *b)
{
    switch (json_typeof(v)) {
    case JSON_NULL:
        *p++ = AG_PK_NULL;
        return p;
    case JSON_TRUE:
        *p++ = AG_PK_TRUE;
        return p;
    case JSON_FALSE:
        *p++ = AG_PK_FALSE;
        return p;
    case JSON_INTEGER:
        *p++ = AG_PK_INT;
        return put_varint(p, zigzag(json_integer_value(v)));
    case JSON_REAL: {
        double d = json_real_value(v);
        *p++ = AG_PK_REAL;
        memcpy(p, &d, sizeof(d));
        return p + sizeof(d);
    }
    case JSON_STRING: {
        size_t n = json_string_length(v);
        *p++ = AG_PK_STR;
        p = put_varint(p, n);
        memcpy(p, json_string_value(v), n);
        return p + n;
    }
    case JSON_ARRAY: {
        size_t count = json_array_size(v);
        *p++ = AG_PK_ARRAY;
        p = put_varint(p, count);
        p = put_varint(p, b->v[b->next++]);
        for (size_t i = 0; i < count; i++)
            p = write_value(json_array_get(v, i), p, b);
        return p;
    }
    default: { /* JSON_OBJECT */
        *p++ = AG_PK_OBJECT;
        p = put_varint(p, json_object_size(v));
        p = put_varint(p, b->v[b->next++]);
        const char *key;
        size_t klen;
        json_t *m;
        json_object_keylen_foreach((json_t *)v, key, klen, m)
        {
            p = put_varint(p, klen);
            memcpy(p, key, klen);
            p = write_value(m, p + klen, b);
        }
        return p;
    }
    }
}

int ag_pack_encode(const json_t *v, const uint8_t **out, size_t *len)
{
    *out = NULL;
    *len = 0;
    if (!v)
        return AG_EINVAL;
    if (json_is_object(v) && json_object_size(v) == 0) {
        *out = ag_pack_empty;
        *len = sizeof(ag_pack_empty);
        return 0;
    }
    bodies_t b = {.cap = 16};
    b.v = b.local;
    size_t n = measure(v, &b);
    uint8_t *buf = b.oom ? NULL : malloc(n);
    if (buf) {
        uint8_t *end = write_value(v, buf, &b);
        if ((size_t)(end - buf) != n) { /* cannot happen: measure and write agree */
            free(buf);
            buf = NULL;
        }
    }
    if (b.v != b.local)
        free(b.v);
    if (!buf)
        return AG_ENOMEM;
    *out = buf;
    *len = n;
    return 0;
}

void ag_pack_free(const uint8_t *p)
{
    if (p && p != ag_pack_empty)
        free((void *)p);
}

size_t ag_pack_size(const uint8_t *p)
{
    return (size_t)(ag_pk_skip(p) - p);
}

json_t *ag_pack_decode(const uint8_t *p)
{
    switch (*p) {
    case AG_PK_NULL:
        return json_null();
    case AG_PK_TRUE:
        return json_true();
    case AG_PK_FALSE:
        return json_false();
    case AG_PK_INT:
        return json_integer((json_int_t)ag_pk_int(p));
    case AG_PK_REAL:
        return json_real(ag_pk_real(p));
    case AG_PK_STR: {
        size_t n;
        const char *s = ag_pk_str(p, &n);
        return json_stringn_nocheck(s, n);
    }
    case AG_PK_ARRAY: {
        json_t *a = json_array();
        const uint8_t *end, *e = ag_pk_first(p, &end);
        for (; a && e < end; e = ag_pk_skip(e))
            if (json_array_append_new(a, ag_pack_decode(e)) != 0) {
                json_decref(a);
                a = NULL;
            }
        return a;
    }
    default: { /* AG_PK_OBJECT */
        json_t *o = json_object();
        const uint8_t *end, *m = ag_pk_first(p, &end);
        while (o && m < end) {
            const char *k;
            size_t kl;
            const uint8_t *v = ag_pk_member(m, &k, &kl);
            if (json_object_setn_new_nocheck(o, k, kl, ag_pack_decode(v)) != 0) {
                json_decref(o);
                o = NULL;
            }
            m = ag_pk_skip(v);
        }
        return o;
    }
    }
}

/* ---- text -> packed without a tree (ag_pack_from_text) ---------------------------------------
 * Two passes over the text, like ag_pack_encode over a tree: the first validates and measures
 * (container bodies recorded in pre-order), the second writes into one allocation of the exact
 * size. The same functions serve both passes: t->out is NULL while measuring. Anything outside
 * the subset documented in ag_pack.h returns DECLINE, and the caller asks jansson. */

#define DECLINE SIZE_MAX
#define TX_MAX_DEPTH 32
#define TX_MAX_MEMBERS 64

typedef struct tx {
    const char *p, *end;
    uint8_t *out; /* NULL while measuring */
    bodies_t *b;
    int depth;
} tx_t;

static void tx_ws(tx_t *t)
{
    while (t->p < t->end && (*t->p == ' ' || *t->p == '\t' || *t->p == '\n' || *t->p == '\r'))
        t->p++;
}

static int hex4(const char *p, const char *end, uint32_t *cp)
{
    if (end - p < 4)
        return -1;
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) {
        char c = p[i];
        int d = c >= '0' && c <= '9'   ? c - '0'
                : c >= 'a' && c <= 'f' ? c - 'a' + 10
                : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                       : -1;
        if (d < 0)
            return -1;
        v = v << 4 | (uint32_t)d;
    }
    *cp = v;
    return 0;
}

/* Length of a well-formed UTF-8 sequence starting at p (lead byte >= 0x80), 0 when it is not
 * one: overlong forms, surrogates and code points past U+10FFFF are refused, as jansson does. */
static size_t utf8_seq(const unsigned char *p, const unsigned char *end)
{
    unsigned char c = p[0];
    size_t n;
    uint32_t cp;
    if (c >= 0xc2 && c <= 0xdf) {
        n = 2;
        cp = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
        n = 3;
        cp = c & 0x0f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        n = 4;
        cp = c & 0x07;
    } else {
        return 0;
    }
    if ((size_t)(end - p) < n)
        return 0;
    for (size_t i = 1; i < n; i++) {
        if ((p[i] & 0xc0) != 0x80)
            return 0;
        cp = cp << 6 | (p[i] & 0x3f);
    }
    if ((n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) || cp > 0x10ffff ||
        (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return n;
}

static uint8_t *put_utf8(uint8_t *d, uint32_t cp)
{
    if (cp < 0x80) {
        *d++ = (uint8_t)cp;
    } else if (cp < 0x800) {
        *d++ = (uint8_t)(0xc0 | cp >> 6);
        *d++ = (uint8_t)(0x80 | (cp & 0x3f));
    } else if (cp < 0x10000) {
        *d++ = (uint8_t)(0xe0 | cp >> 12);
        *d++ = (uint8_t)(0x80 | (cp >> 6 & 0x3f));
        *d++ = (uint8_t)(0x80 | (cp & 0x3f));
    } else {
        *d++ = (uint8_t)(0xf0 | cp >> 18);
        *d++ = (uint8_t)(0x80 | (cp >> 12 & 0x3f));
        *d++ = (uint8_t)(0x80 | (cp >> 6 & 0x3f));
        *d++ = (uint8_t)(0x80 | (cp & 0x3f));
    }
    return d;
}

/* The string whose opening quote is at p: its decoded length (bytes written to dst when not
 * NULL), *after just past the closing quote, *escaped when it held an escape; DECLINE. */
static size_t tx_decode_string(const char *p, const char *end, uint8_t *dst, const char **after,
                               bool *escaped)
{
    size_t n = 0;
    p++;
    *escaped = false;
    for (;;) {
        if (p >= end)
            return DECLINE;
        unsigned char c = (unsigned char)*p;
        if (c == '"') {
            *after = p + 1;
            return n;
        }
        if (c < 0x20)
            return DECLINE;
        if (c >= 0x80) {
            size_t k = utf8_seq((const unsigned char *)p, (const unsigned char *)end);
            if (k == 0)
                return DECLINE;
            if (dst)
                memcpy(dst + n, p, k);
            n += k;
            p += k;
            continue;
        }
        if (c != '\\') {
            if (dst)
                dst[n] = c;
            n++;
            p++;
            continue;
        }
        *escaped = true;
        if (++p >= end)
            return DECLINE;
        char e = *p++;
        uint8_t simple;
        switch (e) {
        case '"':
        case '\\':
        case '/':
            simple = (uint8_t)e;
            break;
        case 'b':
            simple = '\b';
            break;
        case 'f':
            simple = '\f';
            break;
        case 'n':
            simple = '\n';
            break;
        case 'r':
            simple = '\r';
            break;
        case 't':
            simple = '\t';
            break;
        case 'u': {
            uint32_t cp, lo;
            if (hex4(p, end, &cp) != 0)
                return DECLINE;
            p += 4;
            if (cp >= 0xdc00 && cp <= 0xdfff)
                return DECLINE; /* a lone low surrogate */
            if (cp >= 0xd800 && cp <= 0xdbff) {
                if (end - p < 6 || p[0] != '\\' || p[1] != 'u' || hex4(p + 2, end, &lo) != 0 ||
                    lo < 0xdc00 || lo > 0xdfff)
                    return DECLINE;
                p += 6;
                cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
            }
            uint8_t tmp[4];
            size_t k = (size_t)(put_utf8(tmp, cp) - tmp);
            if (dst)
                memcpy(dst + n, tmp, k);
            n += k;
            continue;
        }
        default:
            return DECLINE;
        }
        if (dst)
            dst[n] = simple;
        n++;
    }
}

static size_t tx_value(tx_t *t);

static size_t tx_string(tx_t *t)
{
    const char *after;
    bool esc;
    size_t n = tx_decode_string(t->p, t->end, NULL, &after, &esc);
    if (n == DECLINE)
        return DECLINE;
    if (t->out) {
        *t->out++ = AG_PK_STR;
        t->out = put_varint(t->out, n);
        tx_decode_string(t->p, t->end, t->out, &after, &esc);
        t->out += n;
    }
    t->p = after;
    return 1 + varint_len(n) + n;
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static size_t tx_number(tx_t *t)
{
    const char *s = t->p, *p = s;
    bool real = false;
    if (p < t->end && *p == '-')
        p++;
    if (p >= t->end || !is_digit(*p))
        return DECLINE;
    if (*p == '0') {
        p++;
        if (p < t->end && is_digit(*p))
            return DECLINE; /* a leading zero */
    } else {
        while (p < t->end && is_digit(*p))
            p++;
    }
    if (p < t->end && *p == '.') {
        real = true;
        p++;
        if (p >= t->end || !is_digit(*p))
            return DECLINE;
        while (p < t->end && is_digit(*p))
            p++;
    }
    if (p < t->end && (*p == 'e' || *p == 'E')) {
        real = true;
        p++;
        if (p < t->end && (*p == '+' || *p == '-'))
            p++;
        if (p >= t->end || !is_digit(*p))
            return DECLINE;
        while (p < t->end && is_digit(*p))
            p++;
    }
    t->p = p;
    if (!real) {
        const char *d = s + (*s == '-');
        if (p - d > 19)
            return DECLINE; /* past the int64 range (jansson refuses it) */
        uint64_t u = 0;
        for (; d < p; d++)
            u = u * 10 + (uint64_t)(*d - '0');
        bool neg = *s == '-';
        if (u > (uint64_t)INT64_MAX + neg)
            return DECLINE;
        int64_t v = neg ? (int64_t)(0 - u) : (int64_t)u;
        uint64_t z = zigzag(v);
        if (t->out) {
            *t->out++ = AG_PK_INT;
            t->out = put_varint(t->out, z);
        }
        return 1 + varint_len(z);
    }
    if (t->out) { /* measured already: only the write pass converts */
        char buf[64];
        memcpy(buf, s, (size_t)(p - s));
        buf[p - s] = '\0';
        double dv = strtod(buf, NULL);
        *t->out++ = AG_PK_REAL;
        memcpy(t->out, &dv, sizeof(dv));
        t->out += sizeof(dv);
    } else {
        char buf[64];
        if (p - s >= (ptrdiff_t)sizeof(buf))
            return DECLINE;
        memcpy(buf, s, (size_t)(p - s));
        buf[p - s] = '\0';
        errno = 0;
        double dv = strtod(buf, NULL);
        if (errno == ERANGE || !isfinite(dv))
            return DECLINE; /* over- or underflow: jansson's rules decide */
    }
    return 1 + sizeof(double);
}

static size_t tx_literal(tx_t *t, const char *word, size_t n, uint8_t tag)
{
    if ((size_t)(t->end - t->p) < n || memcmp(t->p, word, n) != 0)
        return DECLINE;
    t->p += n;
    if (t->out)
        *t->out++ = tag;
    return 1;
}

/* An array or object at t->p ('[' or '{'). */
static size_t tx_container(tx_t *t, bool object)
{
    if (++t->depth > TX_MAX_DEPTH)
        return DECLINE;
    size_t at = 0, body = 0;
    if (!t->out) {
        at = push_body(t->b);
        if (t->b->oom)
            return DECLINE;
    }
    struct {
        const char *k;
        size_t n;
    } keys[TX_MAX_MEMBERS];
    char close = object ? '}' : ']';
    t->p++;
    tx_ws(t);
    /* Counting the members needs a pass of its own in the write pass; the measure pass keeps
     * the count beside the body length (bodies come in pairs: count, body). */
    if (t->out) {
        size_t count = t->b->v[t->b->next++];
        *t->out++ = object ? AG_PK_OBJECT : AG_PK_ARRAY;
        t->out = put_varint(t->out, count);
        t->out = put_varint(t->out, t->b->v[t->b->next++]);
    } else {
        push_body(t->b); /* the body slot; `at` holds the count */
        if (t->b->oom)
            return DECLINE;
    }
    size_t n = 0;
    if (t->p < t->end && *t->p == close) {
        t->p++;
    } else {
        for (;;) {
            if (object) {
                if (t->p >= t->end || *t->p != '"' || n == TX_MAX_MEMBERS)
                    return DECLINE;
                const char *after;
                bool esc;
                size_t kl = tx_decode_string(t->p, t->end, NULL, &after, &esc);
                if (kl == DECLINE || esc)
                    return DECLINE;
                const char *k = t->p + 1;
                for (size_t i = 0; i < n; i++)
                    if (keys[i].n == kl && memcmp(keys[i].k, k, kl) == 0)
                        return DECLINE; /* a duplicate key */
                keys[n].k = k;
                keys[n].n = kl;
                if (t->out) {
                    t->out = put_varint(t->out, kl);
                    memcpy(t->out, k, kl);
                    t->out += kl;
                }
                body += varint_len(kl) + kl;
                t->p = after;
                tx_ws(t);
                if (t->p >= t->end || *t->p != ':')
                    return DECLINE;
                t->p++;
                tx_ws(t);
            }
            size_t vs = tx_value(t);
            if (vs == DECLINE)
                return DECLINE;
            body += vs;
            n++;
            tx_ws(t);
            if (t->p >= t->end)
                return DECLINE;
            if (*t->p == close) {
                t->p++;
                break;
            }
            if (*t->p != ',')
                return DECLINE;
            t->p++;
            tx_ws(t);
        }
    }
    if (!t->out) {
        t->b->v[at] = n;
        t->b->v[at + 1] = body;
    }
    t->depth--;
    return 1 + varint_len(n) + varint_len(body) + body;
}

static size_t tx_value(tx_t *t)
{
    if (t->p >= t->end)
        return DECLINE;
    switch (*t->p) {
    case '{':
        return tx_container(t, true);
    case '[':
        return tx_container(t, false);
    case '"':
        return tx_string(t);
    case 't':
        return tx_literal(t, "true", 4, AG_PK_TRUE);
    case 'f':
        return tx_literal(t, "false", 5, AG_PK_FALSE);
    case 'n':
        return tx_literal(t, "null", 4, AG_PK_NULL);
    default:
        return tx_number(t);
    }
}

int ag_pack_from_text(const char *text, size_t len, const uint8_t **out, size_t *outlen)
{
    *out = NULL;
    *outlen = 0;
    bodies_t b = {.cap = 16};
    b.v = b.local;
    tx_t t = {.p = text, .end = text + len, .b = &b};
    tx_ws(&t);
    size_t n = DECLINE;
    if (t.p < t.end && *t.p == '{') {
        n = tx_value(&t);
        tx_ws(&t);
        if (t.p != t.end)
            n = DECLINE; /* something after the object */
    }
    int rc = n == DECLINE ? (b.oom ? AG_ENOMEM : AG_PACK_DECLINED) : 0;
    if (rc == 0 && b.v[0] == 0) { /* {} */
        *out = ag_pack_empty;
        *outlen = sizeof(ag_pack_empty);
    } else if (rc == 0) {
        uint8_t *buf = malloc(n);
        if (!buf) {
            rc = AG_ENOMEM;
        } else {
            tx_t w = {.p = text, .end = text + len, .b = &b, .out = buf};
            tx_ws(&w);
            tx_value(&w);
            if ((size_t)(w.out - buf) != n) { /* cannot happen: both passes read the same text */
                free(buf);
                rc = AG_ENOMEM;
            } else {
                *out = buf;
                *outlen = n;
            }
        }
    }
    if (b.v != b.local)
        free(b.v);
    return rc;
}
