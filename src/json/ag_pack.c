/*
 * ag_pack.c — encoding JSON values into the packed form of ag_pack.h and decoding them back.
 *
 * Encoding is two passes over the jansson tree: the first measures every container's body (kept
 * in pre-order, so the second pass finds them in the order it writes them), the second writes
 * into one allocation of the exact size. Linear in the size of the value.
 */
#include "ag_pack.h"

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
