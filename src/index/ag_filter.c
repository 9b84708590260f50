/*
 * ag_filter.c — compiles Qdrant filter JSON into an immutable tree and evaluates it.
 *
 * Compilation does every allocation and every validation up front, so evaluation is a pure walk:
 * no allocation, no locks, bounded recursion (filter depth is capped at compile time, key paths
 * at AG_MAX_PATH_LEN bytes). See ag_filter.h for the semantics chosen where Qdrant is subtle.
 */
#include "ag_filter.h"

#include "ag_glob.h"
#include "json/ag_pack.h"

#include <float.h>
#include <math.h>
#include <stdio.h>

/* ------------------------------------------------------------------------------------------ */
/* Key paths                                                                                  */
/* ------------------------------------------------------------------------------------------ */

enum { SEG_KEY = 0, SEG_INDEX = 1, SEG_ALL = 2 };

typedef struct seg {
    uint8_t kind;
    const char *key; /* SEG_KEY: not NUL-terminated, len bytes */
    size_t len;
    size_t index; /* SEG_INDEX */
} seg_t;

/* Every segment after the first takes at least two bytes; one more for nested's implicit "[]". */
#define MAX_SEGS (AG_MAX_PATH_LEN / 2 + 2)
#define MAX_INDEX_DIGITS 9

/* One allocation: the segments, then a copy of the path text their keys point into. */
typedef struct path {
    seg_t *segs;
    size_t n;
} path_t;

static bool raw_key_char(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '-' || c >= 0x80;
}

static const char *parse_key(const char **pp, const char *end, seg_t *s)
{
    const char *p = *pp;
    if (p < end && *p == '"') {
        const char *start = ++p;
        while (p < end && *p != '"') {
            if (*p == '\\' || (unsigned char)*p < 0x20)
                return "invalid character in a quoted key";
            p++;
        }
        if (p == end)
            return "unterminated quoted key";
        s->key = start;
        s->len = (size_t)(p - start);
        p++;
    } else {
        const char *start = p;
        while (p < end && raw_key_char((unsigned char)*p))
            p++;
        if (p == start)
            return "expected a key name";
        s->key = start;
        s->len = (size_t)(p - start);
    }
    s->kind = SEG_KEY;
    s->index = 0;
    *pp = p;
    return NULL;
}

/* Splits path into segments whose keys point into path. Returns NULL or a static reason. */
static const char *parse_path(const char *path, seg_t *segs, size_t cap, size_t *n)
{
    size_t len = strnlen(path, AG_MAX_PATH_LEN + 1);
    if (len == 0)
        return "must not be empty";
    if (len > AG_MAX_PATH_LEN)
        return "longer than 255 bytes";
    const char *p = path, *end = path + len;
    size_t k = 0;
    while (p < end) {
        if (k == cap)
            return "too many segments";
        seg_t *s = &segs[k];
        const char *why = NULL;
        if (k == 0) {
            why = parse_key(&p, end, s);
        } else if (*p == '.') {
            p++;
            why = parse_key(&p, end, s);
        } else if (*p == '[') {
            p++;
            if (p < end && *p == ']') {
                s->kind = SEG_ALL;
                s->key = NULL;
                s->len = 0;
                s->index = 0;
                p++;
            } else {
                size_t idx = 0, nd = 0;
                while (p < end && *p >= '0' && *p <= '9') {
                    if (++nd > MAX_INDEX_DIGITS)
                        return "array index too large";
                    idx = idx * 10 + (size_t)(*p - '0');
                    p++;
                }
                if (nd == 0)
                    return "expected an array index or ']' after '['";
                if (p == end || *p != ']')
                    return "expected ']'";
                p++;
                s->kind = SEG_INDEX;
                s->key = NULL;
                s->len = 0;
                s->index = idx;
            }
        } else if (*p == ']') {
            return "unbalanced ']'";
        } else {
            return "unexpected character (quote keys that contain characters other than "
                   "letters, digits, '_' and '-')";
        }
        if (why)
            return why;
        k++;
    }
    *n = k;
    return NULL;
}

static int path_init(const char *text, bool nested, path_t *out, const char **why)
{
    seg_t tmp[MAX_SEGS];
    size_t n = 0;
    out->segs = NULL;
    out->n = 0;
    *why = parse_path(text, tmp, MAX_SEGS - 1, &n);
    if (*why)
        return AG_EINVAL;
    /* nested is made for arrays: "a" means every element of a, as "a[]" does. */
    if (nested && tmp[n - 1].kind != SEG_ALL)
        tmp[n++] = (seg_t){.kind = SEG_ALL};
    size_t len = strlen(text);
    char *mem = malloc(n * sizeof(seg_t) + len + 1);
    if (!mem)
        return AG_ENOMEM;
    seg_t *segs = (seg_t *)(void *)mem;
    char *copy = mem + n * sizeof(seg_t);
    memcpy(copy, text, len + 1);
    for (size_t i = 0; i < n; i++) {
        segs[i] = tmp[i];
        if (segs[i].kind == SEG_KEY)
            segs[i].key = copy + (tmp[i].key - text);
    }
    out->segs = segs;
    out->n = n;
    return 0;
}

const char *ag_payload_path_split(const char *path, char *buf, size_t cap)
{
    const char *dot = strchr(path, '.');
    if (!dot || (size_t)(dot - path) >= cap)
        return NULL;
    memcpy(buf, path, (size_t)(dot - path));
    buf[dot - path] = '\0';
    return dot + 1;
}

int ag_payload_path_check(const char *path, ag_diag_t *diag)
{
    seg_t segs[MAX_SEGS];
    size_t n;
    if (!path)
        return ag_fail(diag, AG_EINVAL, "invalid key path: missing");
    const char *why = parse_path(path, segs, MAX_SEGS - 1, &n);
    if (why)
        return ag_fail(diag, AG_EINVAL, "invalid key path: %s", why);
    return 0;
}

/* ---- payload selectors (with_payload include / exclude) ------------------------------------ */

/* The part of v selected by segments s[0..n): a new value, or NULL when nothing is there. */
static json_t *project(const json_t *v, const seg_t *s, size_t n)
{
    if (n == 0)
        return json_deep_copy(v);
    if (s->kind == SEG_KEY) {
        const json_t *next = json_is_object(v) ? json_object_getn(v, s->key, s->len) : NULL;
        json_t *sub = next ? project(next, s + 1, n - 1) : NULL;
        if (!sub)
            return NULL;
        json_t *o = json_object();
        if (!o || json_object_setn_new(o, s->key, s->len, sub) != 0) {
            json_decref(o);
            return NULL;
        }
        return o;
    }
    if (!json_is_array(v))
        return NULL;
    json_t *out = json_array();
    for (size_t i = 0, len = json_array_size(v); out && i < len; i++) {
        if (s->kind == SEG_INDEX && i != s->index)
            continue;
        json_t *sub = project(json_array_get(v, i), s + 1, n - 1);
        if (sub)
            json_array_append_new(out, sub);
    }
    if (out && json_array_size(out) == 0) {
        json_decref(out);
        return NULL;
    }
    return out;
}

/* Merges src (taken) into dst: objects key by key, arrays of the same length element-wise. */
static void merge_taken(json_t *dst, json_t *src)
{
    if (json_is_object(dst) && json_is_object(src)) {
        const char *k;
        size_t klen;
        json_t *sv;
        json_object_keylen_foreach(src, k, klen, sv)
        {
            json_t *dv = json_object_getn(dst, k, klen);
            if (dv && ((json_is_object(dv) && json_is_object(sv)) ||
                       (json_is_array(dv) && json_is_array(sv) &&
                        json_array_size(dv) == json_array_size(sv))))
                merge_taken(dv, json_incref(sv));
            else
                json_object_setn(dst, k, klen, sv);
        }
    } else if (json_is_array(dst) && json_is_array(src)) {
        for (size_t i = 0; i < json_array_size(src); i++)
            merge_taken(json_array_get(dst, i), json_incref(json_array_get(src, i)));
    }
    json_decref(src);
}

int ag_payload_include(json_t *out, const json_t *payload, const char *path)
{
    seg_t segs[MAX_SEGS];
    size_t n;
    if (parse_path(path, segs, MAX_SEGS - 1, &n))
        return AG_EINVAL;
    json_t *sub = project(payload, segs, n);
    if (sub)
        merge_taken(out, sub);
    return 0;
}

static void exclude(json_t *v, const seg_t *s, size_t n)
{
    if (n == 0)
        return;
    if (s->kind == SEG_KEY) {
        if (!json_is_object(v))
            return;
        if (n == 1) {
            char key[AG_MAX_PATH_LEN + 1];
            memcpy(key, s->key, s->len);
            key[s->len] = '\0';
            json_object_del(v, key);
            return;
        }
        exclude(json_object_getn(v, s->key, s->len), s + 1, n - 1);
        return;
    }
    if (!json_is_array(v))
        return;
    if (n == 1) { /* the selected elements themselves */
        if (s->kind == SEG_INDEX)
            json_array_remove(v, s->index);
        else
            json_array_clear(v);
        return;
    }
    for (size_t i = 0, len = json_array_size(v); i < len; i++)
        if (s->kind == SEG_ALL || i == s->index)
            exclude(json_array_get(v, i), s + 1, n - 1);
}

void ag_payload_exclude(json_t *obj, const char *path)
{
    seg_t segs[MAX_SEGS];
    size_t n;
    if (parse_path(path, segs, MAX_SEGS - 1, &n) == NULL)
        exclude(obj, segs, n);
}

static int set_at(json_t *v, const seg_t *s, size_t n, const json_t *payload)
{
    if (n == 0)
        return json_is_object(v) && json_object_update(v, (json_t *)payload) != 0 ? AG_ENOMEM : 0;
    bool next_is_key = n == 1 || s[1].kind == SEG_KEY;
    if (s->kind == SEG_KEY) {
        if (!json_is_object(v))
            return 0;
        json_t *child = json_object_getn(v, s->key, s->len);
        if (next_is_key && !json_is_object(child)) {
            child = json_object();
            if (!child || json_object_setn_new(v, s->key, s->len, child) != 0)
                return AG_ENOMEM;
        }
        return set_at(child, s + 1, n - 1, payload);
    }
    if (!json_is_array(v))
        return 0;
    for (size_t i = 0, len = json_array_size(v); i < len; i++) {
        if (s->kind == SEG_INDEX && i != s->index)
            continue;
        json_t *e = json_array_get(v, i);
        if (next_is_key && !json_is_object(e)) {
            e = json_object();
            if (!e || json_array_set_new(v, i, e) != 0)
                return AG_ENOMEM;
        }
        int rc = set_at(e, s + 1, n - 1, payload);
        if (rc)
            return rc;
    }
    return 0;
}

int ag_payload_set_at(json_t *obj, const char *path, const json_t *payload)
{
    seg_t segs[MAX_SEGS];
    size_t n;
    if (parse_path(path, segs, MAX_SEGS - 1, &n))
        return AG_EINVAL;
    return set_at(obj, segs, n, payload);
}

/* A payload value the walker visits: a jansson node (j) or a packed one (p, json/ag_pack.h) —
 * exactly one of them set. Filters evaluate stored points in the packed form (no tree is ever
 * built for them) and values that arrive with a request in jansson form, by the same code. */
typedef struct val {
    const json_t *j;
    const uint8_t *p;
} val_t;

static const uint8_t json_kind[] = {
    [JSON_OBJECT] = AG_PK_OBJECT, [JSON_ARRAY] = AG_PK_ARRAY, [JSON_STRING] = AG_PK_STR,
    [JSON_INTEGER] = AG_PK_INT,   [JSON_REAL] = AG_PK_REAL,   [JSON_TRUE] = AG_PK_TRUE,
    [JSON_FALSE] = AG_PK_FALSE,   [JSON_NULL] = AG_PK_NULL,
};

static inline int v_type(val_t v)
{
    return v.p ? *v.p : json_kind[json_typeof(v.j)];
}

static inline const char *v_str(val_t v, size_t *len)
{
    if (v.p)
        return ag_pk_str(v.p, len);
    *len = json_string_length(v.j);
    return json_string_value(v.j);
}

static inline json_int_t v_int(val_t v)
{
    return v.p ? (json_int_t)ag_pk_int(v.p) : json_integer_value(v.j);
}

static inline double v_num(val_t v)
{
    return v.p ? ag_pk_number(v.p) : json_number_value(v.j);
}

/* Member key of object v into *out; false when v is not an object or has no such key. */
static inline bool v_get(val_t v, const char *key, size_t len, val_t *out)
{
    if (v.p) {
        out->j = NULL;
        return (out->p = ag_pk_get(v.p, key, len)) != NULL;
    }
    out->p = NULL;
    return json_is_object(v.j) && (out->j = json_object_getn(v.j, key, len)) != NULL;
}

/* Element i of array v into *out; false when v is not an array or is shorter. */
static inline bool v_at(val_t v, size_t i, val_t *out)
{
    if (v.p) {
        out->j = NULL;
        return (out->p = ag_pk_at(v.p, i)) != NULL;
    }
    out->p = NULL;
    return json_is_array(v.j) && (out->j = json_array_get(v.j, i)) != NULL;
}

/* Iterates the elements of an array value (v_type(a) == AG_PK_ARRAY). */
typedef struct vit {
    val_t a;
    size_t i, n;
    const uint8_t *cur, *end;
} vit_t;

static inline void vit_init(vit_t *it, val_t a)
{
    it->a = a;
    it->i = 0;
    if (a.p) {
        it->cur = ag_pk_first(a.p, &it->end);
        it->n = 0;
    } else {
        it->cur = it->end = NULL;
        it->n = json_array_size(a.j);
    }
}

static inline bool vit_next(vit_t *it, val_t *out)
{
    if (it->a.p) {
        if (it->cur >= it->end)
            return false;
        *out = (val_t){NULL, it->cur};
        it->cur = ag_pk_skip(it->cur);
        return true;
    }
    if (it->i >= it->n)
        return false;
    *out = (val_t){json_array_get(it->a.j, it->i++), NULL};
    return true;
}

static inline bool v_empty_array(val_t v)
{
    return v_type(v) == AG_PK_ARRAY && (v.p ? ag_pk_count(v.p) : json_array_size(v.j)) == 0;
}

static inline size_t v_array_size(val_t v)
{
    return v.p ? ag_pk_count(v.p) : json_array_size(v.j);
}

/* Visitor: returns true to stop the walk. */
typedef bool (*visit_fn)(val_t v, void *ctx);

/* Visits the values at the path without flattening a final array (Qdrant's get_value). */
static bool walk(val_t v, const seg_t *s, size_t n, visit_fn fn, void *ctx)
{
    while (n > 0) {
        val_t next;
        switch (s->kind) {
        case SEG_KEY:
            if (!v_get(v, s->key, s->len, &next))
                return false;
            break;
        case SEG_INDEX:
            if (!v_at(v, s->index, &next))
                return false;
            break;
        default: { /* SEG_ALL */
            if (v_type(v) != AG_PK_ARRAY)
                return false;
            vit_t it;
            val_t e;
            vit_init(&it, v);
            while (vit_next(&it, &e))
                if (walk(e, s + 1, n - 1, fn, ctx))
                    return true;
            return false;
        }
        }
        v = next;
        s++;
        n--;
    }
    return fn(v, ctx);
}

typedef struct flat_ctx {
    visit_fn fn;
    void *ctx;
} flat_ctx_t;

static bool flat_visit(val_t v, void *ctx)
{
    const flat_ctx_t *fc = ctx;
    if (v_type(v) != AG_PK_ARRAY)
        return fc->fn(v, fc->ctx);
    vit_t it;
    val_t e;
    vit_init(&it, v);
    while (vit_next(&it, &e))
        if (fc->fn(e, fc->ctx))
            return true;
    return false;
}

/* Visits the values at the path, an array at the end yielding each of its elements. */
static bool walk_flat(val_t payload, const path_t *p, visit_fn fn, void *ctx)
{
    flat_ctx_t fc = {fn, ctx};
    return walk(payload, p->segs, p->n, flat_visit, &fc);
}

typedef struct each_ctx {
    void (*fn)(const json_t *v, void *ud);
    void (*pfn)(const uint8_t *v, void *ud);
    void *ud;
    size_t count;
} each_ctx_t;

static bool each_visit(val_t v, void *ctx)
{
    each_ctx_t *ec = ctx;
    ec->count++;
    if (ec->fn)
        ec->fn(v.j, ec->ud);
    if (ec->pfn)
        ec->pfn(v.p, ec->ud);
    return false;
}

size_t ag_payload_path_each(const json_t *payload, const char *path,
                            void (*fn)(const json_t *v, void *ud), void *ud)
{
    seg_t segs[MAX_SEGS];
    size_t n;
    if (!path || !json_is_object(payload) || parse_path(path, segs, MAX_SEGS - 1, &n))
        return 0;
    each_ctx_t ec = {fn, NULL, ud, 0};
    flat_ctx_t fc = {each_visit, &ec};
    walk((val_t){payload, NULL}, segs, n, flat_visit, &fc);
    return ec.count;
}

size_t ag_payload_path_each_packed(const uint8_t *payload, const char *path,
                                   void (*fn)(const uint8_t *v, void *ud), void *ud)
{
    seg_t segs[MAX_SEGS];
    size_t n;
    if (!path || !payload || *payload != AG_PK_OBJECT || parse_path(path, segs, MAX_SEGS - 1, &n))
        return 0;
    each_ctx_t ec = {NULL, fn, ud, 0};
    flat_ctx_t fc = {each_visit, &ec};
    walk((val_t){NULL, payload}, segs, n, flat_visit, &fc);
    return ec.count;
}

size_t ag_payload_path_each_raw(const json_t *payload, const char *path,
                                void (*fn)(const json_t *v, void *ud), void *ud)
{
    seg_t segs[MAX_SEGS];
    size_t n;
    if (!path || !json_is_object(payload) || parse_path(path, segs, MAX_SEGS - 1, &n))
        return 0;
    each_ctx_t ec = {fn, NULL, ud, 0};
    walk((val_t){payload, NULL}, segs, n, each_visit, &ec);
    return ec.count;
}

/* ------------------------------------------------------------------------------------------ */
/* Datetimes: RFC 3339 and the relaxed forms Qdrant accepts, as microseconds since the epoch  */
/* ------------------------------------------------------------------------------------------ */

static bool take_digits(const char **pp, const char *end, int n, int *out)
{
    const char *p = *pp;
    if (end - p < n)
        return false;
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return false;
        v = v * 10 + (p[i] - '0');
    }
    *pp = p + n;
    *out = v;
    return true;
}

static bool take_char(const char **pp, const char *end, char c)
{
    if (*pp < end && **pp == c) {
        (*pp)++;
        return true;
    }
    return false;
}

static int days_in_month(int y, int m)
{
    static const int days[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    return m == 2 && leap ? 29 : days[m - 1];
}

/* Days since 1970-01-01 of a proleptic Gregorian date (March-based era arithmetic). */
static int64_t days_from_civil(int y, int m, int d)
{
    y -= m <= 2;
    int era = (y >= 0 ? y : y - 399) / 400;
    int yoe = y - era * 400;
    int doy = (153 * ((m + 9) % 12) + 2) / 5 + d - 1;
    int doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return (int64_t)era * 146097 + doe - 719468;
}

/*
 * YYYY-MM-DD, optionally followed by [T|t| ]HH:MM[:SS[.fraction]] and an optional zone
 * (Z, z, +HH:MM, +HHMM, +HH). No zone means UTC. Fractions beyond microseconds are truncated.
 */
static bool parse_datetime(const char *s, size_t len, int64_t *out)
{
    const char *p = s, *end = s + len;
    int y, mo, d, h = 0, mi = 0, sec = 0, off = 0;
    int64_t us = 0;
    if (!take_digits(&p, end, 4, &y) || !take_char(&p, end, '-') || !take_digits(&p, end, 2, &mo) ||
        !take_char(&p, end, '-') || !take_digits(&p, end, 2, &d))
        return false;
    if (mo < 1 || mo > 12 || d < 1 || d > days_in_month(y, mo))
        return false;
    if (p < end) {
        if (*p != 'T' && *p != 't' && *p != ' ')
            return false;
        p++;
        if (!take_digits(&p, end, 2, &h) || !take_char(&p, end, ':') ||
            !take_digits(&p, end, 2, &mi))
            return false;
        if (take_char(&p, end, ':')) {
            if (!take_digits(&p, end, 2, &sec))
                return false;
            if (p < end && (*p == '.' || *p == ',')) {
                p++;
                int nd = 0;
                while (p < end && *p >= '0' && *p <= '9') {
                    if (nd < 6)
                        us = us * 10 + (*p - '0');
                    if (++nd > 9)
                        return false;
                    p++;
                }
                if (nd == 0)
                    return false;
                for (int i = nd; i < 6; i++)
                    us *= 10;
            }
        }
        if (h > 23 || mi > 59 || sec > 59)
            return false;
        if (p < end) {
            if (*p == 'Z' || *p == 'z') {
                p++;
            } else if (*p == '+' || *p == '-') {
                int sign = *p == '-' ? -1 : 1, oh, om = 0;
                p++;
                if (!take_digits(&p, end, 2, &oh))
                    return false;
                if (take_char(&p, end, ':')) {
                    if (!take_digits(&p, end, 2, &om))
                        return false;
                } else if (p < end && !take_digits(&p, end, 2, &om)) {
                    return false;
                }
                if (oh > 23 || om > 59)
                    return false;
                off = sign * (oh * 60 + om);
            } else {
                return false;
            }
        }
        if (p != end)
            return false;
    }
    int64_t secs = days_from_civil(y, mo, d) * 86400 + (int64_t)h * 3600 + (int64_t)mi * 60 + sec -
                   (int64_t)off * 60;
    *out = secs * 1000000 + us;
    return true;
}

/* ------------------------------------------------------------------------------------------ */
/* The compiled tree                                                                          */
/* ------------------------------------------------------------------------------------------ */

enum cond_kind {
    C_NONE = 0,
    C_FILTER,   /* u.sub */
    C_NESTED,   /* path (ends with []), u.sub */
    C_VALUE,    /* u.value */
    C_ANY,      /* u.set */
    C_EXCEPT,   /* u.set */
    C_TEXT,     /* u.text, one word: the whole text */
    C_TEXT_ANY, /* u.text */
    C_RANGE,    /* u.range */
    C_DT_RANGE, /* u.dt */
    C_COUNT,    /* u.count */
    C_GEO_BOX,  /* u.box */
    C_GEO_RADIUS,
    C_GEO_POLYGON,
    C_IS_EMPTY,
    C_IS_NULL,
    C_HAS_ID,
    C_HAS_VECTOR,
    C_SLICE, /* u.slice: the point's share of a partition of all ids */
    C_GLOB,  /* u.glob: a string value matching a scope pattern (server-built filters only) */
};

enum { VT_STR, VT_INT, VT_BOOL };
enum { B_LT, B_GT, B_GTE, B_LTE, B_COUNT };
static const char *const bound_names[B_COUNT] = {"lt", "gt", "gte", "lte"};

typedef struct str {
    char *p; /* owned, NUL-terminated copy */
    size_t len;
} str_t;

typedef struct geo_pt {
    double lon, lat;
} geo_pt_t;

typedef struct ring {
    geo_pt_t *pts;
    size_t n;
} ring_t;

typedef struct cond {
    uint8_t kind;
    bool negate; /* field-level "is_empty": false / "is_null": false */
    path_t path;
    union {
        ag_filter_t *sub;
        struct {
            uint8_t type;
            bool b;
            json_int_t i;
            str_t s;
        } value;
        struct {
            bool ints; /* else strings; an empty list counts as strings */
            str_t *strs;
            json_int_t *nums;
            size_t n;
        } set;
        struct {
            str_t *words;
            size_t n;
        } text;
        ag_glob_t glob;
        struct {
            bool has[B_COUNT];
            double v[B_COUNT];
        } range;
        struct {
            bool has[B_COUNT];
            int64_t v[B_COUNT];
        } dt;
        struct {
            bool has[B_COUNT];
            uint64_t v[B_COUNT];
        } count;
        struct {
            geo_pt_t tl, br;
        } box;
        struct {
            geo_pt_t center;
            double meters;
        } radius;
        struct {
            ring_t *rings; /* rings[0] is the exterior */
            size_t n;
        } poly;
        struct {
            ag_point_id_t *ids; /* sorted by ag_id_cmp */
            size_t n;
        } ids;
        struct {
            uint64_t total, index;
        } slice;
        str_t vec;
    } u;
} cond_t;

typedef struct clause {
    cond_t *v;
    size_t n;
} clause_t;

struct ag_filter {
    clause_t must, should, must_not, min_should;
    bool has_should, has_min_should;
    size_t min_count;
};

static void cond_release(cond_t *c)
{
    free(c->path.segs);
    switch (c->kind) {
    case C_FILTER:
    case C_NESTED:
        ag_filter_free(c->u.sub);
        break;
    case C_VALUE:
        free(c->u.value.s.p);
        break;
    case C_GLOB:
        ag_glob_release(&c->u.glob);
        break;
    case C_ANY:
    case C_EXCEPT:
        if (c->u.set.strs)
            for (size_t i = 0; i < c->u.set.n; i++)
                free(c->u.set.strs[i].p);
        free(c->u.set.strs);
        free(c->u.set.nums);
        break;
    case C_TEXT:
    case C_TEXT_ANY:
        if (c->u.text.words)
            for (size_t i = 0; i < c->u.text.n; i++)
                free(c->u.text.words[i].p);
        free(c->u.text.words);
        break;
    case C_GEO_POLYGON:
        if (c->u.poly.rings)
            for (size_t i = 0; i < c->u.poly.n; i++)
                free(c->u.poly.rings[i].pts);
        free(c->u.poly.rings);
        break;
    case C_HAS_ID:
        free(c->u.ids.ids);
        break;
    case C_HAS_VECTOR:
        free(c->u.vec.p);
        break;
    default:
        break;
    }
    memset(c, 0, sizeof(*c));
}

static void clause_release(clause_t *c)
{
    if (c->v)
        for (size_t i = 0; i < c->n; i++)
            cond_release(&c->v[i]);
    free(c->v);
    c->v = NULL;
    c->n = 0;
}

void ag_filter_free(ag_filter_t *f)
{
    if (!f)
        return;
    clause_release(&f->must);
    clause_release(&f->should);
    clause_release(&f->must_not);
    clause_release(&f->min_should);
    free(f);
}

static int str_dup(str_t *out, const char *s, size_t len)
{
    out->p = malloc(len + 1);
    if (!out->p)
        return AG_ENOMEM;
    memcpy(out->p, s, len);
    out->p[len] = '\0';
    out->len = len;
    return 0;
}

static int str_cmp(const void *a, const void *b)
{
    const str_t *x = a, *y = b;
    if (x->len != y->len)
        return x->len < y->len ? -1 : 1;
    return memcmp(x->p, y->p, x->len);
}

static int int_cmp(const void *a, const void *b)
{
    json_int_t x = *(const json_int_t *)a, y = *(const json_int_t *)b;
    return (x > y) - (x < y);
}

static int id_cmp(const void *a, const void *b)
{
    return ag_id_cmp(a, b);
}

/* ------------------------------------------------------------------------------------------ */
/* Compilation                                                                                */
/* ------------------------------------------------------------------------------------------ */

/* The JSON path of the field being compiled, for diagnostics ("filter.must[1].range.gte"). */
typedef struct cctx {
    char path[320];
    size_t len;
    ag_diag_t *diag;
    bool budget;    /* a client's filter: the request-cost limits apply */
    size_t nconds;  /* conditions compiled so far, every level (AG_MAX_FILTER_CONDITIONS) */
    size_t nvalues; /* list values compiled so far (AG_MAX_FILTER_VALUES) */
} cctx_t;

#define DIAG_KEY_MAX 64

/* Appends at most n bytes of s, never cutting a UTF-8 sequence (the message ends up in JSON). */
static void jp_append(cctx_t *c, const char *s, size_t n)
{
    size_t room = sizeof(c->path) - 1 - c->len;
    if (n > room) {
        n = room;
        while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
            n--;
    }
    memcpy(c->path + c->len, s, n);
    c->len += n;
    c->path[c->len] = '\0';
}

static size_t jp_key(cctx_t *c, const char *key, size_t klen)
{
    size_t mark = c->len;
    jp_append(c, ".", 1);
    if (klen > DIAG_KEY_MAX) {
        klen = DIAG_KEY_MAX;
        while (klen > 0 && ((unsigned char)key[klen] & 0xC0) == 0x80)
            klen--;
    }
    jp_append(c, key, klen);
    return mark;
}

static size_t jp_name(cctx_t *c, const char *name)
{
    return jp_key(c, name, strlen(name));
}

static size_t jp_idx(cctx_t *c, size_t i)
{
    size_t mark = c->len;
    char buf[32];
    int n = snprintf(buf, sizeof(buf), "[%zu]", i);
    jp_append(c, buf, (size_t)n);
    return mark;
}

static void jp_reset(cctx_t *c, size_t mark)
{
    c->len = mark;
    c->path[mark] = '\0';
}

__attribute__((format(printf, 2, 3))) static int bad(cctx_t *c, const char *fmt, ...)
{
    char msg[160];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    return ag_fail(c->diag, AG_EINVAL, "%s: %s", c->path, msg);
}

static int oom(cctx_t *c)
{
    return ag_fail(c->diag, AG_ENOMEM, "out of memory compiling the filter");
}

static bool key_eq(const char *k, size_t klen, const char *name)
{
    return strlen(name) == klen && memcmp(k, name, klen) == 0;
}

/* Every key of obj must be one of names (NULL-terminated). */
static int only_keys(cctx_t *c, const json_t *obj, const char *const *names)
{
    json_t *o = (json_t *)obj; /* jansson's iterator API is not const-correct; it reads only */
    for (void *it = json_object_iter(o); it; it = json_object_iter_next(o, it)) {
        const char *k = json_object_iter_key(it);
        size_t klen = json_object_iter_key_len(it);
        bool known = false;
        for (size_t i = 0; names[i] && !known; i++)
            known = key_eq(k, klen, names[i]);
        if (!known) {
            size_t mark = jp_key(c, k, klen);
            int rc = bad(c, "unknown field");
            jp_reset(c, mark);
            return rc;
        }
    }
    return 0;
}

/* A field that is absent or JSON null counts as not given (Qdrant's Option fields). */
static const json_t *opt(const json_t *obj, const char *name)
{
    const json_t *v = json_object_get(obj, name);
    return json_is_null(v) ? NULL : v;
}

static int need(cctx_t *c, const json_t *obj, const char *name, const json_t **out)
{
    *out = opt(obj, name);
    if (!*out)
        return bad(c, "missing field %s", name);
    return 0;
}

static int compile_filter(cctx_t *c, const json_t *j, int depth, ag_filter_t **out);

static int compile_key(cctx_t *c, const json_t *j, bool nested, path_t *out)
{
    if (!json_is_string(j))
        return bad(c, "expected a string");
    const char *s = json_string_value(j);
    if (strlen(s) != json_string_length(j))
        return bad(c, "invalid key path: contains a NUL character");
    const char *why = NULL;
    int rc = path_init(s, nested, out, &why);
    if (rc == AG_ENOMEM)
        return oom(c);
    if (rc)
        return bad(c, "invalid key path: %s", why);
    return 0;
}

static int compile_number(cctx_t *c, const json_t *v, double *out)
{
    if (!json_is_number(v))
        return bad(c, "expected a number");
    double d = json_number_value(v);
    if (!isfinite(d))
        return bad(c, "expected a finite number");
    *out = d;
    return 0;
}

static int set_value(cond_t *cond, const json_t *v)
{
    cond->kind = C_VALUE;
    if (json_is_string(v)) {
        cond->u.value.type = VT_STR;
        return str_dup(&cond->u.value.s, json_string_value(v), json_string_length(v));
    }
    if (json_is_integer(v)) {
        cond->u.value.type = VT_INT;
        cond->u.value.i = json_integer_value(v);
        return 0;
    }
    if (json_is_boolean(v)) {
        cond->u.value.type = VT_BOOL;
        cond->u.value.b = json_is_true(v);
        return 0;
    }
    return AG_EINVAL;
}

static int compile_set(cctx_t *c, const json_t *arr, int kind, cond_t *cond)
{
    if (!json_is_array(arr))
        return bad(c, "expected an array of strings or integers");
    size_t n = json_array_size(arr);
    if (c->budget && n > AG_MAX_MATCH_VALUES)
        return bad(c, "at most %d values, got %zu", AG_MAX_MATCH_VALUES, n);
    if ((c->nvalues += n) > AG_MAX_FILTER_VALUES && c->budget)
        return bad(c, "a filter holds at most %d values in all its lists", AG_MAX_FILTER_VALUES);
    cond->kind = (uint8_t)kind;
    cond->u.set.ints = n > 0 && json_is_integer(json_array_get(arr, 0));
    if (cond->u.set.ints)
        cond->u.set.nums = calloc(n, sizeof(json_int_t));
    else
        cond->u.set.strs = calloc(n ? n : 1, sizeof(str_t));
    if (!cond->u.set.nums && !cond->u.set.strs)
        return oom(c);
    cond->u.set.n = n;
    for (size_t i = 0; i < n; i++) {
        const json_t *e = json_array_get(arr, i);
        if (cond->u.set.ints ? !json_is_integer(e) : !json_is_string(e)) {
            size_t mark = jp_idx(c, i);
            int rc = json_is_integer(e) || json_is_string(e)
                         ? bad(c, "expected %s like the first value",
                               cond->u.set.ints ? "an integer" : "a string")
                         : bad(c, "expected a string or an integer");
            jp_reset(c, mark);
            return rc;
        }
        if (cond->u.set.ints)
            cond->u.set.nums[i] = json_integer_value(e);
        else if (str_dup(&cond->u.set.strs[i], json_string_value(e), json_string_length(e)))
            return oom(c);
    }
    if (cond->u.set.ints)
        qsort(cond->u.set.nums, n, sizeof(json_int_t), int_cmp);
    else
        qsort(cond->u.set.strs, n, sizeof(str_t), str_cmp);
    return 0;
}

static bool is_space(char ch)
{
    return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r' || ch == '\f' || ch == '\v';
}

static int compile_text(cctx_t *c, const json_t *v, bool any_word, cond_t *cond)
{
    if (!json_is_string(v))
        return bad(c, "expected a string");
    const char *s = json_string_value(v);
    size_t len = json_string_length(v);
    cond->kind = any_word ? C_TEXT_ANY : C_TEXT;
    size_t words = 1;
    if (any_word) {
        words = 0;
        for (size_t i = 0; i < len; i++)
            if (!is_space(s[i]) && (i == 0 || is_space(s[i - 1])))
                words++;
    }
    cond->u.text.words = calloc(words ? words : 1, sizeof(str_t));
    if (!cond->u.text.words)
        return oom(c);
    cond->u.text.n = words;
    if (!any_word)
        return str_dup(&cond->u.text.words[0], s, len) ? oom(c) : 0;
    size_t w = 0;
    for (size_t i = 0; i < len;) {
        if (is_space(s[i])) {
            i++;
            continue;
        }
        size_t start = i;
        while (i < len && !is_space(s[i]))
            i++;
        if (str_dup(&cond->u.text.words[w++], s + start, i - start))
            return oom(c);
    }
    return 0;
}

static int compile_match(cctx_t *c, const json_t *j, cond_t *cond)
{
    static const char *const names[] = {"value",  "any",      "except", "text",
                                        "phrase", "text_any", NULL};
    if (!json_is_object(j))
        return bad(c, "expected an object");
    int rc = only_keys(c, j, names);
    if (rc)
        return rc;
    if (json_object_size(j) != 1)
        return bad(c, "expected exactly one of value, any, except, text, phrase, text_any");
    for (size_t i = 0; names[i]; i++) {
        const json_t *v = json_object_get(j, names[i]);
        if (!v)
            continue;
        size_t mark = jp_name(c, names[i]);
        switch (i) {
        case 0:
            rc = set_value(cond, v);
            if (rc == AG_EINVAL)
                rc = bad(c, "expected a string, an integer or a bool");
            else if (rc)
                rc = oom(c);
            break;
        case 1:
            rc = compile_set(c, v, C_ANY, cond);
            break;
        case 2:
            rc = compile_set(c, v, C_EXCEPT, cond);
            break;
        case 3:
        case 4:
            rc = compile_text(c, v, false, cond);
            break;
        default:
            rc = compile_text(c, v, true, cond);
            break;
        }
        jp_reset(c, mark);
        return rc;
    }
    return bad(c, "expected exactly one of value, any, except, text, phrase, text_any");
}

static int compile_range(cctx_t *c, const json_t *j, cond_t *cond)
{
    static const char *const names[] = {"lt", "gt", "gte", "lte", NULL};
    if (!json_is_object(j))
        return bad(c, "expected an object");
    int rc = only_keys(c, j, names);
    if (rc)
        return rc;
    /* Datetime bounds are strings; a range is either all numbers or all datetimes. */
    bool dates = false;
    for (int b = 0; b < B_COUNT; b++)
        dates = dates || json_is_string(opt(j, bound_names[b]));
    cond->kind = dates ? C_DT_RANGE : C_RANGE;
    for (int b = 0; b < B_COUNT && rc == 0; b++) {
        const json_t *v = opt(j, bound_names[b]);
        if (!v)
            continue;
        size_t mark = jp_name(c, bound_names[b]);
        if (!dates) {
            rc = json_is_number(v) ? compile_number(c, v, &cond->u.range.v[b])
                                   : bad(c, "expected a number or an RFC 3339 datetime string");
            cond->u.range.has[b] = rc == 0;
        } else if (!json_is_string(v)) {
            rc = bad(c, "expected an RFC 3339 datetime string like the other bounds");
        } else if (!parse_datetime(json_string_value(v), json_string_length(v), &cond->u.dt.v[b])) {
            rc = bad(c, "expected an RFC 3339 datetime (e.g. 2023-02-08T10:49:00Z)");
        } else {
            cond->u.dt.has[b] = true;
        }
        jp_reset(c, mark);
    }
    return rc;
}

static int compile_count(cctx_t *c, const json_t *j, cond_t *cond)
{
    static const char *const names[] = {"lt", "gt", "gte", "lte", NULL};
    if (!json_is_object(j))
        return bad(c, "expected an object");
    int rc = only_keys(c, j, names);
    if (rc)
        return rc;
    cond->kind = C_COUNT;
    for (int b = 0; b < B_COUNT; b++) {
        const json_t *v = opt(j, bound_names[b]);
        if (!v)
            continue;
        if (!json_is_integer(v) || json_integer_value(v) < 0) {
            size_t mark = jp_name(c, bound_names[b]);
            rc = bad(c, "expected a non-negative integer");
            jp_reset(c, mark);
            return rc;
        }
        cond->u.count.has[b] = true;
        cond->u.count.v[b] = (uint64_t)json_integer_value(v);
    }
    return 0;
}

static int compile_point(cctx_t *c, const json_t *j, geo_pt_t *out)
{
    static const char *const names[] = {"lon", "lat", NULL};
    if (!json_is_object(j))
        return bad(c, "expected an object with lon and lat");
    int rc = only_keys(c, j, names);
    const json_t *lon = NULL, *lat = NULL;
    if (!rc)
        rc = need(c, j, "lon", &lon);
    if (!rc)
        rc = need(c, j, "lat", &lat);
    if (rc)
        return rc;
    size_t mark = jp_name(c, "lon");
    rc = compile_number(c, lon, &out->lon);
    if (!rc && (out->lon < -180.0 || out->lon > 180.0))
        rc = bad(c, "longitude must be between -180 and 180");
    jp_reset(c, mark);
    if (rc)
        return rc;
    mark = jp_name(c, "lat");
    rc = compile_number(c, lat, &out->lat);
    if (!rc && (out->lat < -90.0 || out->lat > 90.0))
        rc = bad(c, "latitude must be between -90 and 90");
    jp_reset(c, mark);
    return rc;
}

/* Compiles obj[name] (required) with fn-like point parsing, extending the diagnostic path. */
static int compile_point_field(cctx_t *c, const json_t *obj, const char *name, geo_pt_t *out)
{
    const json_t *v;
    int rc = need(c, obj, name, &v);
    if (rc)
        return rc;
    size_t mark = jp_name(c, name);
    rc = compile_point(c, v, out);
    jp_reset(c, mark);
    return rc;
}

static int compile_box(cctx_t *c, const json_t *j, cond_t *cond)
{
    static const char *const names[] = {"top_left", "bottom_right", NULL};
    if (!json_is_object(j))
        return bad(c, "expected an object");
    cond->kind = C_GEO_BOX;
    int rc = only_keys(c, j, names);
    if (!rc)
        rc = compile_point_field(c, j, "top_left", &cond->u.box.tl);
    if (!rc)
        rc = compile_point_field(c, j, "bottom_right", &cond->u.box.br);
    return rc;
}

static int compile_radius(cctx_t *c, const json_t *j, cond_t *cond)
{
    static const char *const names[] = {"center", "radius", NULL};
    if (!json_is_object(j))
        return bad(c, "expected an object");
    cond->kind = C_GEO_RADIUS;
    const json_t *r;
    int rc = only_keys(c, j, names);
    if (!rc)
        rc = compile_point_field(c, j, "center", &cond->u.radius.center);
    if (!rc)
        rc = need(c, j, "radius", &r);
    if (rc)
        return rc;
    size_t mark = jp_name(c, "radius");
    rc = compile_number(c, r, &cond->u.radius.meters);
    if (!rc && cond->u.radius.meters < 0)
        rc = bad(c, "must not be negative");
    jp_reset(c, mark);
    return rc;
}

static int compile_ring(cctx_t *c, const json_t *j, ring_t *ring)
{
    static const char *const names[] = {"points", NULL};
    if (!json_is_object(j))
        return bad(c, "expected an object with points");
    const json_t *pts;
    int rc = only_keys(c, j, names);
    if (!rc)
        rc = need(c, j, "points", &pts);
    if (rc)
        return rc;
    size_t mark = jp_name(c, "points");
    size_t n = json_array_size(pts);
    if (!json_is_array(pts)) {
        rc = bad(c, "expected an array of points");
    } else if (n < 4) {
        rc = bad(c, "a polygon ring needs at least 4 points, got %zu", n);
    } else if (!(ring->pts = calloc(n, sizeof(geo_pt_t)))) {
        rc = oom(c);
    } else {
        ring->n = n;
        for (size_t i = 0; i < n && !rc; i++) {
            size_t m2 = jp_idx(c, i);
            rc = compile_point(c, json_array_get(pts, i), &ring->pts[i]);
            jp_reset(c, m2);
        }
        if (!rc && (fabs(ring->pts[0].lon - ring->pts[n - 1].lon) > DBL_EPSILON ||
                    fabs(ring->pts[0].lat - ring->pts[n - 1].lat) > DBL_EPSILON))
            rc = bad(c, "the first and the last point must be the same to close the ring");
    }
    jp_reset(c, mark);
    return rc;
}

static int compile_polygon(cctx_t *c, const json_t *j, cond_t *cond)
{
    static const char *const names[] = {"exterior", "interiors", NULL};
    if (!json_is_object(j))
        return bad(c, "expected an object");
    cond->kind = C_GEO_POLYGON;
    const json_t *ext, *ints = opt(j, "interiors");
    int rc = only_keys(c, j, names);
    if (!rc)
        rc = need(c, j, "exterior", &ext);
    if (rc)
        return rc;
    if (ints && !json_is_array(ints)) {
        size_t mark = jp_name(c, "interiors");
        rc = bad(c, "expected an array of rings");
        jp_reset(c, mark);
        return rc;
    }
    size_t n = 1 + json_array_size(ints);
    cond->u.poly.rings = calloc(n, sizeof(ring_t));
    if (!cond->u.poly.rings)
        return oom(c);
    cond->u.poly.n = n;
    size_t mark = jp_name(c, "exterior");
    rc = compile_ring(c, ext, &cond->u.poly.rings[0]);
    jp_reset(c, mark);
    for (size_t i = 1; i < n && !rc; i++) {
        mark = jp_name(c, "interiors");
        jp_idx(c, i - 1);
        rc = compile_ring(c, json_array_get(ints, i - 1), &cond->u.poly.rings[i]);
        jp_reset(c, mark);
    }
    return rc;
}

/* {"key": path} as used by is_empty and is_null. */
static int compile_payload_field(cctx_t *c, const json_t *j, cond_t *cond)
{
    static const char *const names[] = {"key", NULL};
    if (!json_is_object(j))
        return bad(c, "expected an object with key");
    const json_t *k;
    int rc = only_keys(c, j, names);
    if (!rc)
        rc = need(c, j, "key", &k);
    if (rc)
        return rc;
    size_t mark = jp_name(c, "key");
    rc = compile_key(c, k, false, &cond->path);
    jp_reset(c, mark);
    return rc;
}

static int compile_field(cctx_t *c, const json_t *j, cond_t *cond)
{
    static const char *const names[] = {
        "key",         "match",        "range",    "geo_bounding_box", "geo_radius",
        "geo_polygon", "values_count", "is_empty", "is_null",          NULL};
    int rc = only_keys(c, j, names);
    if (rc)
        return rc;
    size_t mark = jp_name(c, "key");
    rc = compile_key(c, json_object_get(j, "key"), false, &cond->path);
    jp_reset(c, mark);
    if (rc)
        return rc;
    const char *which = NULL;
    for (size_t i = 1; names[i]; i++) {
        if (!opt(j, names[i]))
            continue;
        if (which) {
            mark = jp_name(c, names[i]);
            rc = bad(c, "only one condition per field condition (already have %s)", which);
            jp_reset(c, mark);
            return rc;
        }
        which = names[i];
    }
    if (!which) /* Qdrant's wording and status: a validation rule of the body */
        return ag_fail(c->diag, AG_EUNPROCESSABLE,
                       "Validation error in JSON body: %s: At least one field condition must be "
                       "specified (match, range, geo_bounding_box, geo_radius, geo_polygon, "
                       "values_count, is_empty, is_null next to key)",
                       c->path);
    const json_t *v = json_object_get(j, which);
    mark = jp_name(c, which);
    if (strcmp(which, "match") == 0) {
        rc = compile_match(c, v, cond);
    } else if (strcmp(which, "range") == 0) {
        rc = compile_range(c, v, cond);
    } else if (strcmp(which, "geo_bounding_box") == 0) {
        rc = compile_box(c, v, cond);
    } else if (strcmp(which, "geo_radius") == 0) {
        rc = compile_radius(c, v, cond);
    } else if (strcmp(which, "geo_polygon") == 0) {
        rc = compile_polygon(c, v, cond);
    } else if (strcmp(which, "values_count") == 0) {
        rc = compile_count(c, v, cond);
    } else if (!json_is_boolean(v)) {
        rc = bad(c, "expected a bool");
    } else {
        cond->kind = strcmp(which, "is_empty") == 0 ? C_IS_EMPTY : C_IS_NULL;
        cond->negate = !json_is_true(v);
    }
    jp_reset(c, mark);
    return rc;
}

static int compile_has_id(cctx_t *c, const json_t *v, cond_t *cond)
{
    if (!json_is_array(v))
        return bad(c, "expected an array of point ids");
    size_t n = json_array_size(v);
    if ((c->nvalues += n) > AG_MAX_FILTER_VALUES && c->budget)
        return bad(c, "a filter holds at most %d values in all its lists", AG_MAX_FILTER_VALUES);
    cond->kind = C_HAS_ID;
    cond->u.ids.ids = calloc(n ? n : 1, sizeof(ag_point_id_t));
    if (!cond->u.ids.ids)
        return oom(c);
    cond->u.ids.n = n;
    for (size_t i = 0; i < n; i++) {
        size_t mark = jp_idx(c, i);
        int rc = ag_id_parse(json_array_get(v, i), &cond->u.ids.ids[i], c->path, c->diag);
        jp_reset(c, mark);
        if (rc)
            return rc;
    }
    qsort(cond->u.ids.ids, n, sizeof(ag_point_id_t), id_cmp);
    return 0;
}

/* {"total": n, "index": i}: the points whose id falls in part i of n (docs/API.md "Slice"). */
static int compile_slice(cctx_t *c, const json_t *v, cond_t *cond)
{
    static const char *const names[] = {"total", "index", NULL};
    if (!json_is_object(v))
        return bad(c, "expected an object with total and index");
    int rc = only_keys(c, v, names);
    if (rc)
        return rc;
    const json_t *t = json_object_get(v, "total"), *i = json_object_get(v, "index");
    if (!json_is_integer(t) || json_integer_value(t) < 1 || json_integer_value(t) > UINT32_MAX)
        return bad(c, "total: expected an integer from 1 to %u", UINT32_MAX);
    if (!json_is_integer(i) || json_integer_value(i) < 0)
        return bad(c, "index: expected an integer >= 0");
    if (json_integer_value(i) >= json_integer_value(t))
        return ag_fail(c->diag, AG_EUNPROCESSABLE,
                       "Validation error in JSON body: %s.index: must be less than total (%lld)",
                       c->path, (long long)json_integer_value(t));
    cond->kind = C_SLICE;
    cond->u.slice.total = (uint64_t)json_integer_value(t);
    cond->u.slice.index = (uint64_t)json_integer_value(i);
    return 0;
}

static int compile_nested(cctx_t *c, const json_t *v, int depth, cond_t *cond)
{
    static const char *const names[] = {"key", "filter", NULL};
    if (!json_is_object(v))
        return bad(c, "expected an object with key and filter");
    cond->kind = C_NESTED;
    const json_t *k, *f;
    int rc = only_keys(c, v, names);
    if (!rc)
        rc = need(c, v, "key", &k);
    if (!rc)
        rc = need(c, v, "filter", &f);
    if (rc)
        return rc;
    size_t mark = jp_name(c, "key");
    rc = compile_key(c, k, true, &cond->path);
    jp_reset(c, mark);
    if (rc)
        return rc;
    mark = jp_name(c, "filter");
    rc = compile_filter(c, f, depth + 1, &cond->u.sub);
    jp_reset(c, mark);
    return rc;
}

/* A condition with a single distinguishing key: is_empty, is_null, has_id, has_vector, nested. */
static int compile_special(cctx_t *c, const json_t *j, const char *name, int depth, cond_t *cond)
{
    const char *const names[] = {name, NULL};
    int rc = only_keys(c, j, names);
    if (rc)
        return rc;
    const json_t *v = json_object_get(j, name);
    size_t mark = jp_name(c, name);
    if (strcmp(name, "is_empty") == 0 || strcmp(name, "is_null") == 0) {
        cond->kind = strcmp(name, "is_empty") == 0 ? C_IS_EMPTY : C_IS_NULL;
        rc = compile_payload_field(c, v, cond);
    } else if (strcmp(name, "has_id") == 0) {
        rc = compile_has_id(c, v, cond);
    } else if (strcmp(name, "slice") == 0) {
        rc = compile_slice(c, v, cond);
    } else if (strcmp(name, "has_vector") == 0) {
        if (!json_is_string(v)) {
            rc = bad(c, "expected a vector name");
        } else if (json_string_length(v) > AG_MAX_NAME_LEN ||
                   strlen(json_string_value(v)) != json_string_length(v)) {
            rc = bad(c, "invalid vector name");
        } else {
            cond->kind = C_HAS_VECTOR;
            if (str_dup(&cond->u.vec, json_string_value(v), json_string_length(v)))
                rc = oom(c);
        }
    } else {
        rc = compile_nested(c, v, depth, cond);
    }
    jp_reset(c, mark);
    return rc;
}

static int compile_cond(cctx_t *c, const json_t *j, int depth, cond_t *cond)
{
    static const char *const specials[] = {"is_empty", "is_null", "has_id", "has_vector",
                                           "nested",   "slice",   NULL};
    if (!json_is_object(j))
        return bad(c, "expected a condition object");
    if (json_object_get(j, "key"))
        return compile_field(c, j, cond);
    for (size_t i = 0; specials[i]; i++)
        if (json_object_get(j, specials[i]))
            return compile_special(c, j, specials[i], depth, cond);
    cond->kind = C_FILTER;
    return compile_filter(c, j, depth + 1, &cond->u.sub);
}

/* One condition or an array of them. */
static int compile_clause(cctx_t *c, const json_t *j, int depth, clause_t *out)
{
    bool many = json_is_array(j);
    if (!many && !json_is_object(j))
        return bad(c, "expected a condition or an array of conditions");
    size_t n = many ? json_array_size(j) : 1;
    if ((c->nconds += n) > AG_MAX_FILTER_CONDITIONS && c->budget)
        return bad(c, "a filter has at most %d conditions at all levels together",
                   AG_MAX_FILTER_CONDITIONS);
    out->v = calloc(n ? n : 1, sizeof(cond_t));
    if (!out->v)
        return oom(c);
    out->n = n;
    if (!many)
        return compile_cond(c, j, depth, &out->v[0]);
    for (size_t i = 0; i < n; i++) {
        size_t mark = jp_idx(c, i);
        int rc = compile_cond(c, json_array_get(j, i), depth, &out->v[i]);
        jp_reset(c, mark);
        if (rc)
            return rc;
    }
    return 0;
}

static int compile_min_should(cctx_t *c, const json_t *j, int depth, ag_filter_t *f)
{
    static const char *const names[] = {"conditions", "min_count", NULL};
    if (!json_is_object(j))
        return bad(c, "expected an object with conditions and min_count");
    const json_t *conds, *count;
    int rc = only_keys(c, j, names);
    if (!rc)
        rc = need(c, j, "conditions", &conds);
    if (!rc)
        rc = need(c, j, "min_count", &count);
    if (rc)
        return rc;
    size_t mark = jp_name(c, "min_count");
    if (!json_is_integer(count) || json_integer_value(count) < 0)
        rc = bad(c, "expected a non-negative integer");
    jp_reset(c, mark);
    if (rc)
        return rc;
    f->has_min_should = true;
    f->min_count = (size_t)json_integer_value(count);
    mark = jp_name(c, "conditions");
    rc = json_is_array(conds) ? compile_clause(c, conds, depth, &f->min_should)
                              : bad(c, "expected an array of conditions");
    jp_reset(c, mark);
    return rc;
}

static int compile_filter(cctx_t *c, const json_t *j, int depth, ag_filter_t **out)
{
    static const char *const names[] = {"must", "should", "must_not", "min_should", NULL};
    *out = NULL;
    if (depth > AG_MAX_FILTER_DEPTH)
        return bad(c, "filters nested deeper than %d levels", AG_MAX_FILTER_DEPTH);
    if (!json_is_object(j))
        return bad(c, "expected a filter object");
    int rc = only_keys(c, j, names);
    if (rc)
        return rc;
    ag_filter_t *f = calloc(1, sizeof(*f));
    if (!f)
        return oom(c);
    struct {
        const char *name;
        clause_t *clause;
    } clauses[] = {{"must", &f->must}, {"should", &f->should}, {"must_not", &f->must_not}};
    for (size_t i = 0; i < AG_ARRAY_LEN(clauses) && !rc; i++) {
        const json_t *v = opt(j, clauses[i].name);
        if (!v)
            continue;
        if (clauses[i].clause == &f->should)
            f->has_should = true;
        size_t mark = jp_name(c, clauses[i].name);
        rc = compile_clause(c, v, depth, clauses[i].clause);
        jp_reset(c, mark);
    }
    const json_t *ms = opt(j, "min_should");
    if (!rc && ms) {
        size_t mark = jp_name(c, "min_should");
        rc = compile_min_should(c, ms, depth, f);
        jp_reset(c, mark);
    }
    if (rc) {
        ag_filter_free(f);
        return rc;
    }
    *out = f;
    return 0;
}

static int compile_top(const json_t *json, bool budget, ag_filter_t **out, ag_diag_t *diag)
{
    *out = NULL;
    if (!json || json_is_null(json))
        return 0;
    cctx_t c = {.len = 0, .diag = diag, .budget = budget};
    jp_append(&c, "filter", 6);
    return compile_filter(&c, json, 1, out);
}

int ag_filter_compile(const json_t *json, ag_filter_t **out, ag_diag_t *diag)
{
    return compile_top(json, false, out, diag);
}

int ag_filter_compile_budgeted(const json_t *json, ag_filter_t **out, ag_diag_t *diag)
{
    return compile_top(json, true, out, diag);
}

/* A new filter of one condition on key, its path set; the caller fills in the condition and
 * frees the filter on failure. Memory: *out is owned by the caller. */
static int one_condition(const char *key, ag_filter_t **out)
{
    *out = NULL;
    ag_filter_t *f = calloc(1, sizeof(*f));
    if (!f)
        return AG_ENOMEM;
    f->must.v = calloc(1, sizeof(cond_t));
    if (!f->must.v) {
        free(f);
        return AG_ENOMEM;
    }
    f->must.n = 1;
    const char *why = NULL;
    int rc = path_init(key, false, &f->must.v[0].path, &why);
    if (rc) {
        ag_filter_free(f);
        return rc;
    }
    *out = f;
    return 0;
}

int ag_filter_match_value(const char *key, const json_t *value, ag_filter_t **out)
{
    *out = NULL;
    if (!key || !value)
        return AG_EINVAL;
    if (!json_is_string(value) && !json_is_integer(value) && !json_is_boolean(value))
        return AG_EINVAL;
    ag_filter_t *f = NULL;
    int rc = one_condition(key, &f);
    if (rc == 0 && (rc = set_value(&f->must.v[0], value)) != 0)
        ag_filter_free(f);
    else if (rc == 0)
        *out = f;
    return rc;
}

int ag_filter_match_glob(const char *key, const ag_glob_t *pattern, ag_filter_t **out)
{
    *out = NULL;
    if (!key || !pattern)
        return AG_EINVAL;
    ag_filter_t *f = NULL;
    int rc = one_condition(key, &f);
    if (rc == 0 && (rc = ag_glob_copy(pattern, &f->must.v[0].u.glob)) != 0)
        ag_filter_free(f);
    else if (rc == 0) {
        f->must.v[0].kind = C_GLOB;
        *out = f;
    }
    return rc;
}

/* The text of a path made of plain keys only ("a" or "a.b"), else NULL. */
static const char *plain_path(const path_t *p)
{
    if (p->n == 0)
        return NULL;
    for (size_t i = 0; i < p->n; i++)
        if (p->segs[i].kind != SEG_KEY)
            return NULL;
    const char *text = (const char *)(p->segs + p->n);
    return strpbrk(text, "\"[") ? NULL : text;
}

static json_t *value_json(const cond_t *c)
{
    switch (c->u.value.type) {
    case VT_STR:
        return json_stringn(c->u.value.s.p, c->u.value.s.len);
    case VT_INT:
        return json_integer(c->u.value.i);
    default:
        return json_boolean(c->u.value.b);
    }
}

/* Appends to must the equalities of f's `must` clause, descending into sub-filters that sit in
 * a `must` (their own `must` conditions are required too). False on allocation failure. */
static bool collect_equalities(const ag_filter_t *f, json_t *must, int depth)
{
    for (size_t i = 0; f && i < f->must.n; i++) {
        const cond_t *c = &f->must.v[i];
        if (c->kind == C_FILTER && !c->negate && depth < AG_MAX_FILTER_DEPTH) {
            if (!collect_equalities(c->u.sub, must, depth + 1))
                return false;
            continue;
        }
        const char *key =
            (c->kind == C_VALUE || c->kind == C_ANY) && !c->negate ? plain_path(&c->path) : NULL;
        if (!key)
            continue;
        json_t *m;
        if (c->kind == C_VALUE) {
            m = json_pack("{s:o}", "value", value_json(c));
        } else {
            json_t *arr = json_array();
            for (size_t k = 0; arr && k < c->u.set.n; k++)
                json_array_append_new(
                    arr, c->u.set.ints ? json_integer(c->u.set.nums[k])
                                       : json_stringn(c->u.set.strs[k].p, c->u.set.strs[k].len));
            m = arr ? json_pack("{s:o}", "any", arr) : NULL;
        }
        json_t *cond = m ? json_pack("{s:s,s:o}", "key", key, "match", m) : NULL;
        if (!cond || json_array_append_new(must, cond) != 0)
            return false;
    }
    return true;
}

json_t *ag_filter_required_equalities(const ag_filter_t *f)
{
    json_t *must = json_array();
    if (!must || !collect_equalities(f, must, 0) || json_array_size(must) == 0) {
        json_decref(must);
        return NULL;
    }
    return json_pack("{s:o}", "must", must);
}

/* ------------------------------------------------------------------------------------------ */
/* Combining                                                                                  */
/* ------------------------------------------------------------------------------------------ */

static bool only_must(const ag_filter_t *f)
{
    return !f->has_should && !f->has_min_should && f->must_not.n == 0;
}

static bool only_should(const ag_filter_t *f)
{
    return f->has_should && !f->has_min_should && f->must.n == 0 && f->must_not.n == 0;
}

static int append_conds(clause_t *cl, clause_t *src)
{
    cond_t *v = realloc(cl->v, (cl->n + src->n + 1) * sizeof(cond_t));
    if (!v)
        return AG_ENOMEM;
    cl->v = v;
    if (src->n)
        memcpy(cl->v + cl->n, src->v, src->n * sizeof(cond_t));
    cl->n += src->n;
    free(src->v);
    src->v = NULL;
    src->n = 0;
    return 0;
}

static int append_sub(clause_t *cl, ag_filter_t *b)
{
    cond_t *v = realloc(cl->v, (cl->n + 1) * sizeof(cond_t));
    if (!v)
        return AG_ENOMEM;
    cl->v = v;
    memset(&cl->v[cl->n], 0, sizeof(cond_t));
    cl->v[cl->n].kind = C_FILTER;
    cl->v[cl->n].u.sub = b;
    cl->n++;
    return 0;
}

/*
 * AND (is_and) or OR of a and b; takes ownership of both, also on failure. When a filter consists
 * of the combining clause alone its conditions are reused in place, so chains of ANDs (or ORs)
 * stay flat and evaluation depth stays bounded.
 */
static ag_filter_t *combine(ag_filter_t *a, ag_filter_t *b, bool is_and, int *err)
{
    bool (*pure)(const ag_filter_t *) = is_and ? only_must : only_should;
    ag_filter_t *dst = a;
    if (!pure(a)) {
        dst = calloc(1, sizeof(*dst));
        if (!dst)
            goto fail;
        dst->has_should = !is_and;
        if (append_sub(is_and ? &dst->must : &dst->should, a)) {
            free(dst);
            goto fail;
        }
    }
    /* From here a is owned by dst. */
    clause_t *cl = is_and ? &dst->must : &dst->should;
    int rc;
    if (pure(b)) {
        rc = append_conds(cl, is_and ? &b->must : &b->should);
        if (!rc)
            ag_filter_free(b);
    } else {
        rc = append_sub(cl, b);
    }
    if (rc) {
        ag_filter_free(dst);
        ag_filter_free(b);
        if (err)
            *err = AG_ENOMEM;
        return NULL;
    }
    return dst;
fail:
    ag_filter_free(a);
    ag_filter_free(b);
    if (err)
        *err = AG_ENOMEM;
    return NULL;
}

ag_filter_t *ag_filter_and(ag_filter_t *a, ag_filter_t *b, int *err)
{
    if (!a)
        return b;
    if (!b)
        return a;
    return combine(a, b, true, err);
}

ag_filter_t *ag_filter_or(ag_filter_t *a, ag_filter_t *b, int *err)
{
    if (!a || !b) {
        ag_filter_free(a);
        ag_filter_free(b);
        return NULL;
    }
    return combine(a, b, false, err);
}

/* ------------------------------------------------------------------------------------------ */
/* Evaluation                                                                                 */
/* ------------------------------------------------------------------------------------------ */

/* Evaluation modes. NORMAL is Qdrant's semantics (a condition on a multi-valued field holds when
 * any value satisfies it). STRICT requires every value to satisfy positive conditions; LOOSE is
 * its dual, used under must_not inside STRICT, so that STRICT(f) implies NORMAL(f) for every f.
 * STRICT serves row-level write checks: a row must be wholly inside a scope, not just touch it. */
enum { M_NORMAL, M_STRICT, M_LOOSE };

static bool eval_filter(const ag_filter_t *f, const ag_filter_subject_t *s, int mode);

static bool set_has_str(const cond_t *c, val_t v)
{
    str_t key;
    key.p = (char *)v_str(v, &key.len);
    return c->u.set.n && bsearch(&key, c->u.set.strs, c->u.set.n, sizeof(str_t), str_cmp) != NULL;
}

static bool set_has_int(const cond_t *c, val_t v)
{
    json_int_t key = v_int(v);
    return c->u.set.n &&
           bsearch(&key, c->u.set.nums, c->u.set.n, sizeof(json_int_t), int_cmp) != NULL;
}

static bool contains(val_t v, const str_t *word)
{
    size_t len;
    const char *p = v_str(v, &len);
    return memmem(p, len, word->p, word->len) != NULL;
}

static bool in_range(const bool *has, const double *b, double x)
{
    return (!has[B_LT] || x < b[B_LT]) && (!has[B_GT] || x > b[B_GT]) &&
           (!has[B_GTE] || x >= b[B_GTE]) && (!has[B_LTE] || x <= b[B_LTE]);
}

static bool in_dt_range(const bool *has, const int64_t *b, int64_t x)
{
    return (!has[B_LT] || x < b[B_LT]) && (!has[B_GT] || x > b[B_GT]) &&
           (!has[B_GTE] || x >= b[B_GTE]) && (!has[B_LTE] || x <= b[B_LTE]);
}

static bool in_count(const bool *has, const uint64_t *b, uint64_t x)
{
    return (!has[B_LT] || x < b[B_LT]) && (!has[B_GT] || x > b[B_GT]) &&
           (!has[B_GTE] || x >= b[B_GTE]) && (!has[B_LTE] || x <= b[B_LTE]);
}

static bool geo_value(val_t v, geo_pt_t *out)
{
    val_t lon, lat;
    if (!v_get(v, "lon", 3, &lon) || !v_get(v, "lat", 3, &lat))
        return false;
    int tlon = v_type(lon), tlat = v_type(lat);
    if ((tlon != AG_PK_INT && tlon != AG_PK_REAL) || (tlat != AG_PK_INT && tlat != AG_PK_REAL))
        return false;
    out->lon = v_num(lon);
    out->lat = v_num(lat);
    return true;
}

#define EARTH_RADIUS_M 6371008.8
#define DEG_TO_RAD (3.14159265358979323846 / 180.0)

static double haversine_m(geo_pt_t a, geo_pt_t b)
{
    double dlat = (b.lat - a.lat) * DEG_TO_RAD, dlon = (b.lon - a.lon) * DEG_TO_RAD;
    double sa = sin(dlat / 2), so = sin(dlon / 2);
    double h = sa * sa + cos(a.lat * DEG_TO_RAD) * cos(b.lat * DEG_TO_RAD) * so * so;
    if (h > 1.0)
        h = 1.0;
    return 2.0 * EARTH_RADIUS_M * asin(sqrt(h));
}

static bool in_box(const cond_t *c, geo_pt_t p)
{
    geo_pt_t tl = c->u.box.tl, br = c->u.box.br;
    bool lon_ok = tl.lon > br.lon ? (p.lon > tl.lon || p.lon < br.lon) /* crosses 180° */
                                  : (tl.lon < p.lon && p.lon < br.lon);
    return lon_ok && br.lat < p.lat && p.lat < tl.lat;
}

/* Even-odd ray casting, x = lon, y = lat. */
static bool in_ring(const ring_t *r, geo_pt_t p)
{
    bool inside = false;
    for (size_t i = 0, j = r->n - 1; i < r->n; j = i++) {
        geo_pt_t a = r->pts[i], b = r->pts[j];
        if ((a.lat > p.lat) != (b.lat > p.lat) &&
            p.lon < (b.lon - a.lon) * (p.lat - a.lat) / (b.lat - a.lat) + a.lon)
            inside = !inside;
    }
    return inside;
}

static bool in_polygon(const cond_t *c, geo_pt_t p)
{
    if (!in_ring(&c->u.poly.rings[0], p))
        return false;
    for (size_t i = 1; i < c->u.poly.n; i++)
        if (in_ring(&c->u.poly.rings[i], p))
            return false;
    return true;
}

static bool is_number_type(int t)
{
    return t == AG_PK_INT || t == AG_PK_REAL;
}

/* One (flattened) payload value against a value-level condition. */
static bool value_matches(const cond_t *c, val_t v)
{
    geo_pt_t p;
    int64_t t;
    int type = v_type(v);
    size_t len;
    const char *str;
    switch (c->kind) {
    case C_VALUE:
        switch (c->u.value.type) {
        case VT_STR:
            if (type != AG_PK_STR)
                return false;
            str = v_str(v, &len);
            return len == c->u.value.s.len && memcmp(str, c->u.value.s.p, len) == 0;
        case VT_INT:
            return type == AG_PK_INT && v_int(v) == c->u.value.i;
        default:
            return (type == AG_PK_TRUE || type == AG_PK_FALSE) &&
                   (type == AG_PK_TRUE) == c->u.value.b;
        }
    case C_ANY:
        return c->u.set.ints ? type == AG_PK_INT && set_has_int(c, v)
                             : type == AG_PK_STR && set_has_str(c, v);
    case C_EXCEPT:
        /* Qdrant: null is never "other than" the list; a value of another type always is. */
        if (type == AG_PK_NULL)
            return false;
        if (c->u.set.ints)
            return type != AG_PK_INT || !set_has_int(c, v);
        return type != AG_PK_STR || !set_has_str(c, v);
    case C_GLOB:
        if (type != AG_PK_STR)
            return false;
        str = v_str(v, &len);
        return ag_glob_match(&c->u.glob, str, len);
    case C_TEXT:
        return type == AG_PK_STR && contains(v, &c->u.text.words[0]);
    case C_TEXT_ANY:
        if (type != AG_PK_STR)
            return false;
        for (size_t i = 0; i < c->u.text.n; i++)
            if (contains(v, &c->u.text.words[i]))
                return true;
        return false;
    case C_RANGE:
        return is_number_type(type) && in_range(c->u.range.has, c->u.range.v, v_num(v));
    case C_DT_RANGE:
        if (type != AG_PK_STR)
            return false;
        str = v_str(v, &len);
        return parse_datetime(str, len, &t) && in_dt_range(c->u.dt.has, c->u.dt.v, t);
    case C_GEO_BOX:
        return geo_value(v, &p) && in_box(c, p);
    case C_GEO_RADIUS:
        return geo_value(v, &p) && haversine_m(c->u.radius.center, p) < c->u.radius.meters;
    case C_GEO_POLYGON:
        return geo_value(v, &p) && in_polygon(c, p);
    default:
        return false;
    }
}

static bool match_visit(val_t v, void *ctx)
{
    return value_matches(ctx, v);
}

static bool not_empty_visit(val_t v, void *ctx)
{
    (void)ctx;
    return v_type(v) != AG_PK_NULL && !v_empty_array(v);
}

static bool null_visit(val_t v, void *ctx)
{
    (void)ctx;
    return v_type(v) == AG_PK_NULL;
}

static bool count_visit(val_t v, void *ctx)
{
    uint64_t *n = ctx;
    int type = v_type(v);
    *n += type == AG_PK_NULL ? 0 : type == AG_PK_ARRAY ? v_array_size(v) : 1;
    return false;
}

typedef struct nested_ctx {
    const ag_filter_t *f;
    int mode;
    size_t seen, failed;
} nested_ctx_t;

static bool nested_visit(val_t v, void *ctx)
{
    nested_ctx_t *nc = ctx;
    if (v_type(v) != AG_PK_OBJECT)
        return false;
    /* Inside nested, keys are relative to the element; ids and vectors are not available. */
    ag_filter_subject_t sub = {
        .id = NULL, .payload = v.j, .has_vector = NULL, .ud = NULL, .packed = v.p};
    bool ok = eval_filter(nc->f, &sub, nc->mode);
    if (nc->mode != M_STRICT)
        return ok;
    nc->seen++;
    if (!ok)
        nc->failed++;
    return !ok; /* strict: stop at the first element that fails */
}

typedef struct strict_ctx {
    const cond_t *c;
    size_t seen;
    bool failed;
} strict_ctx_t;

static bool strict_visit(val_t v, void *ctx)
{
    strict_ctx_t *sc = ctx;
    sc->seen++;
    if (!value_matches(sc->c, v))
        sc->failed = true;
    return sc->failed;
}

static bool eval_cond(const cond_t *c, const ag_filter_subject_t *s, int mode)
{
    /* The payload: jansson when the subject has one, else packed; pl false when neither. */
    val_t root = {s->payload, s->payload ? NULL : s->packed};
    bool pl = root.j || root.p;
    const path_t *p = &c->path;
    switch (c->kind) {
    case C_FILTER:
        return eval_filter(c->u.sub, s, mode);
    case C_NESTED: {
        nested_ctx_t nc = {c->u.sub, mode, 0, 0};
        if (mode == M_STRICT) {
            if (pl)
                walk(root, p->segs, p->n, nested_visit, &nc);
            return nc.seen > 0 && nc.failed == 0;
        }
        return pl && walk(root, p->segs, p->n, nested_visit, &nc);
    }
    case C_HAS_ID:
        return s->id && c->u.ids.n &&
               bsearch(s->id, c->u.ids.ids, c->u.ids.n, sizeof(ag_point_id_t), id_cmp) != NULL;
    case C_HAS_VECTOR:
        return s->has_vector && s->has_vector(s->ud, c->u.vec.p);
    case C_SLICE: /* a mix of the id's own hash, stable for a given id and release */
        return s->id &&
               ag_id_hash(s->id) * 0x9e3779b97f4a7c15ULL % c->u.slice.total == c->u.slice.index;
    case C_IS_EMPTY:
        return !(pl && walk(root, p->segs, p->n, not_empty_visit, NULL)) != c->negate;
    case C_IS_NULL:
        return (pl && walk(root, p->segs, p->n, null_visit, NULL)) != c->negate;
    case C_COUNT: {
        uint64_t n = 0;
        if (pl)
            walk(root, p->segs, p->n, count_visit, &n);
        return in_count(c->u.count.has, c->u.count.v, n);
    }
    case C_NONE:
        return false;
    default:
        if (mode == M_STRICT) {
            strict_ctx_t sc = {c, 0, false};
            if (pl)
                walk_flat(root, p, strict_visit, &sc);
            return sc.seen > 0 && !sc.failed;
        }
        return pl && walk_flat(root, p, match_visit, (void *)c);
    }
}

static bool eval_filter(const ag_filter_t *f, const ag_filter_subject_t *s, int mode)
{
    int neg = mode == M_STRICT ? M_LOOSE : mode == M_LOOSE ? M_STRICT : M_NORMAL;
    for (size_t i = 0; i < f->must.n; i++)
        if (!eval_cond(&f->must.v[i], s, mode))
            return false;
    for (size_t i = 0; i < f->must_not.n; i++)
        if (eval_cond(&f->must_not.v[i], s, neg))
            return false;
    if (f->has_should) {
        bool any = false;
        for (size_t i = 0; i < f->should.n && !any; i++)
            any = eval_cond(&f->should.v[i], s, mode);
        if (!any)
            return false;
    }
    if (f->has_min_should) {
        size_t hits = 0;
        for (size_t i = 0; i < f->min_should.n && hits < f->min_count; i++)
            hits += eval_cond(&f->min_should.v[i], s, mode);
        if (hits < f->min_count)
            return false;
    }
    return true;
}

bool ag_filter_match(const ag_filter_t *f, const ag_filter_subject_t *s)
{
    if (!f)
        return true;
    return eval_filter(f, s, M_NORMAL);
}

bool ag_filter_match_all(const ag_filter_t *f, const ag_filter_subject_t *s)
{
    if (!f)
        return true;
    return eval_filter(f, s, M_STRICT);
}

int ag_datetime_parse(const char *s, size_t len, int64_t *out_us)
{
    return parse_datetime(s, len, out_us) ? 0 : AG_EINVAL;
}
