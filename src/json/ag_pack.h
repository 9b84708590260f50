/*
 * ag_pack.h — a compact, immutable, contiguous binary form of a JSON value (a point's payload in
 * memory), and a reader that walks it without allocating. docs/ARCHITECTURE.md "Payloads in
 * memory" describes the layout and why it is shaped so.
 *
 * A packed value is a tag byte followed by its data:
 *   AG_PK_NULL / AG_PK_FALSE / AG_PK_TRUE   nothing more
 *   AG_PK_INT     zigzag varint (any int64)
 *   AG_PK_REAL    8 bytes: the double's bits, host order (the form never leaves the process)
 *   AG_PK_STR     varint byte length, the bytes (UTF-8 as jansson holds it; may contain NUL)
 *   AG_PK_ARRAY   varint count, varint body length, the elements one after another
 *   AG_PK_OBJECT  varint count, varint body length, then per member: varint key length, the key
 *                 bytes, the value — in the order jansson iterates (insertion order)
 * Body lengths let a reader skip a container without looking inside. Everything is written by
 * ag_pack_encode in this process and never modified afterwards, so the reader trusts it (no bounds
 * checks): never hand it bytes from outside.
 */
#ifndef AG_PACK_H
#define AG_PACK_H

#include "ag_base.h"

#include <jansson.h>
#include <string.h>

enum {
    AG_PK_NULL = 0,
    AG_PK_FALSE = 1,
    AG_PK_TRUE = 2,
    AG_PK_INT = 3,
    AG_PK_REAL = 4,
    AG_PK_STR = 5,
    AG_PK_ARRAY = 6,
    AG_PK_OBJECT = 7,
};

/* The packed empty object {}: shared, static, never freed (ag_pack_free ignores it). */
extern const uint8_t ag_pack_empty[3];

/* Encodes v (any JSON value; borrowed). On success *out is one new allocation of *len bytes that
 * the caller owns (free with ag_pack_free) — except that an empty object gives ag_pack_empty,
 * with no allocation. AG_ENOMEM, or AG_EINVAL for a value jansson should not hold (a NaN). */
int ag_pack_encode(const json_t *v, const uint8_t **out, size_t *len);
/* What ag_pack_from_text returns for text it leaves to jansson (see there). */
#define AG_PACK_DECLINED 1
/* Encodes the JSON object in text[0..len) directly, without building a jansson tree: the bytes
 * are exactly those ag_pack_encode gives for json_loadb(text, len, JSON_ALLOW_NUL) (tests/unit/
 * test_pack.c checks it on random and mangled texts). It handles the common shapes — every
 * value kind, escapes, UTF-8 — and declines (AG_PACK_DECLINED, nothing allocated) whatever it
 * would have to judge the way jansson does in a corner: text that is not a well-formed object,
 * duplicate keys, keys with escapes, objects of more than 64 members, nesting deeper than 32,
 * integers outside int64, reals that over- or underflow. The caller then parses with
 * jansson, which decides (docs/ARCHITECTURE.md "Payloads in memory"). On success as
 * ag_pack_encode: *out is the caller's (ag_pack_free), ag_pack_empty for {}. AG_ENOMEM too. */
int ag_pack_from_text(const char *text, size_t len, const uint8_t **out, size_t *outlen);
/* Frees what ag_pack_encode returned (NULL and ag_pack_empty are no-ops). */
void ag_pack_free(const uint8_t *p);
/* A new jansson value equal to the packed value p (caller owns), NULL when out of memory. */
json_t *ag_pack_decode(const uint8_t *p);
/* Bytes the packed value at p occupies (tag included). */
size_t ag_pack_size(const uint8_t *p);

/* ---- the reader (no allocation; p always points at a value's tag) ---------------------------- */

static inline uint64_t ag_pk__varint(const uint8_t **pp)
{
    const uint8_t *p = *pp;
    uint64_t v = 0;
    unsigned shift = 0;
    for (;;) {
        uint8_t b = *p++;
        v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80))
            break;
        shift += 7;
    }
    *pp = p;
    return v;
}

static inline int ag_pk_type(const uint8_t *p)
{
    return *p;
}

static inline int64_t ag_pk_int(const uint8_t *p)
{
    p++;
    uint64_t z = ag_pk__varint(&p);
    return (int64_t)(z >> 1) ^ -(int64_t)(z & 1);
}

static inline double ag_pk_real(const uint8_t *p)
{
    double d;
    memcpy(&d, p + 1, sizeof(d));
    return d;
}

/* An integer or real as a double (0 for anything else). */
static inline double ag_pk_number(const uint8_t *p)
{
    return *p == AG_PK_INT ? (double)ag_pk_int(p) : *p == AG_PK_REAL ? ag_pk_real(p) : 0.0;
}

/* A string's bytes (not NUL-terminated) and length. */
static inline const char *ag_pk_str(const uint8_t *p, size_t *len)
{
    p++;
    *len = (size_t)ag_pk__varint(&p);
    return (const char *)p;
}

/* Elements of an array or members of an object (0 for anything else). */
static inline size_t ag_pk_count(const uint8_t *p)
{
    if (*p != AG_PK_ARRAY && *p != AG_PK_OBJECT)
        return 0;
    p++;
    return (size_t)ag_pk__varint(&p);
}

/* The first element (array) or member (object) of a container, and where its body ends. */
static inline const uint8_t *ag_pk_first(const uint8_t *p, const uint8_t **end)
{
    p++;
    ag_pk__varint(&p);
    size_t body = (size_t)ag_pk__varint(&p);
    *end = p + body;
    return p;
}

/* The value following the one at p. */
static inline const uint8_t *ag_pk_skip(const uint8_t *p)
{
    const uint8_t *q = p + 1;
    switch (*p) {
    case AG_PK_INT:
        ag_pk__varint(&q);
        return q;
    case AG_PK_REAL:
        return q + sizeof(double);
    case AG_PK_STR: {
        size_t n = (size_t)ag_pk__varint(&q);
        return q + n;
    }
    case AG_PK_ARRAY:
    case AG_PK_OBJECT: {
        ag_pk__varint(&q);
        size_t n = (size_t)ag_pk__varint(&q);
        return q + n;
    }
    default:
        return q;
    }
}

/* An object member at m: its key (*klen bytes); returns the member's value. */
static inline const uint8_t *ag_pk_member(const uint8_t *m, const char **key, size_t *klen)
{
    *klen = (size_t)ag_pk__varint(&m);
    *key = (const char *)m;
    return m + *klen;
}

/* The value of key in object p, or NULL (also when p is not an object). */
static inline const uint8_t *ag_pk_get(const uint8_t *p, const char *key, size_t klen)
{
    if (*p != AG_PK_OBJECT)
        return NULL;
    const uint8_t *end, *m = ag_pk_first(p, &end);
    while (m < end) {
        const char *k;
        size_t kl;
        const uint8_t *v = ag_pk_member(m, &k, &kl);
        if (kl == klen && memcmp(k, key, klen) == 0)
            return v;
        m = ag_pk_skip(v);
    }
    return NULL;
}

/* Element i of array p, or NULL (also when p is not an array). */
static inline const uint8_t *ag_pk_at(const uint8_t *p, size_t i)
{
    if (*p != AG_PK_ARRAY)
        return NULL;
    const uint8_t *end, *e = ag_pk_first(p, &end);
    for (; e < end; e = ag_pk_skip(e))
        if (i-- == 0)
            return e;
    return NULL;
}

#endif
