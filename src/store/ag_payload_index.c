#include "store/ag_payload_index.h"

#include <pthread.h>

#include "ag_cmp.h"
#include "ag_grow.h"
#include "store/ag_collection_int.h"

/* One value's slots, ascending and unique; occ marks a used table entry (n may be 0 once its
 * last slot left: the entry is dropped at the next table growth). */
typedef struct posting {
    uint64_t h;
    uint32_t *slots; /* owned */
    uint32_t n, cap;
    bool occ;
} posting_t;

typedef struct kw_index {
    struct kw_index *next;
    char *field;
    /* The c->version this index reflects; STALE when it reflects none (never built, or a
     * maintenance step ran out of memory). Guarded by cache_mutex for readers; the hook changes
     * it under the write lock, when no reader is inside. */
    uint64_t version;
    posting_t *tab; /* owned: open addressing, cap a power of two */
    size_t cap, used;
} kw_index_t;

#define STALE UINT64_MAX

/* One mutex for every collection's cache: lookups are short and builds rare. */
static pthread_mutex_t cache_mutex = PTHREAD_MUTEX_INITIALIZER;
static atomic_uint_fast64_t builds_total;

static uint64_t mix(uint64_t h)
{
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ULL;
    return h ^ (h >> 33);
}

static uint64_t str_hash(const char *p, size_t n)
{
    uint64_t h = 1469598103934665603ULL;
    const unsigned char *s = (const unsigned char *)p;
    for (size_t i = 0; i < n; i++)
        h = (h ^ s[i]) * 1099511628211ULL;
    return mix(h ^ 0x5354);
}

/* Hash of a scalar payload value; false for values an equality match can never select. A
 * filter's value (jansson) and a stored one (packed, packed_hash) hash alike. */
static bool value_hash(const json_t *v, uint64_t *out)
{
    if (json_is_string(v)) {
        *out = str_hash(json_string_value(v), json_string_length(v));
        return true;
    }
    if (json_is_integer(v)) {
        *out = mix((uint64_t)json_integer_value(v) ^ 0x494e54ULL);
        return true;
    }
    if (json_is_boolean(v)) {
        *out = mix(json_is_true(v) ? 0xB001 : 0xB000);
        return true;
    }
    return false;
}

static bool packed_hash(const uint8_t *v, uint64_t *out)
{
    size_t n;
    const char *p;
    switch (ag_pk_type(v)) {
    case AG_PK_STR:
        p = ag_pk_str(v, &n);
        *out = str_hash(p, n);
        return true;
    case AG_PK_INT:
        *out = mix((uint64_t)ag_pk_int(v) ^ 0x494e54ULL);
        return true;
    case AG_PK_TRUE:
    case AG_PK_FALSE:
        *out = mix(ag_pk_type(v) == AG_PK_TRUE ? 0xB001 : 0xB000);
        return true;
    default:
        return false;
    }
}

/* ---- the table ----------------------------------------------------------------------------- */

static void table_free(kw_index_t *ix)
{
    for (size_t i = 0; i < ix->cap; i++)
        free(ix->tab[i].slots);
    free(ix->tab);
    ix->tab = NULL;
    ix->cap = ix->used = 0;
}

static posting_t *find(const kw_index_t *ix, uint64_t h)
{
    if (!ix->cap)
        return NULL;
    for (size_t i = (size_t)h & (ix->cap - 1);; i = (i + 1) & (ix->cap - 1)) {
        posting_t *p = &ix->tab[i];
        if (!p->occ)
            return NULL;
        if (p->h == h)
            return p;
    }
}

/* Rehashes into cap entries, dropping the empty postings. AG_ENOMEM leaves ix unchanged. */
static int table_resize(kw_index_t *ix, size_t cap)
{
    posting_t *tab = calloc(cap, sizeof(*tab));
    if (!tab)
        return AG_ENOMEM;
    size_t used = 0;
    for (size_t i = 0; i < ix->cap; i++) {
        posting_t *p = &ix->tab[i];
        if (!p->occ)
            continue;
        if (p->n == 0) {
            free(p->slots);
            continue;
        }
        size_t j = (size_t)p->h & (cap - 1);
        while (tab[j].occ)
            j = (j + 1) & (cap - 1);
        tab[j] = *p;
        used++;
    }
    free(ix->tab);
    ix->tab = tab;
    ix->cap = cap;
    ix->used = used;
    return 0;
}

/* The posting of h, created (empty) if missing; NULL on allocation failure. */
static posting_t *find_or_add(kw_index_t *ix, uint64_t h)
{
    posting_t *p = find(ix, h);
    if (p)
        return p;
    if ((ix->used + 1) * 10 >= ix->cap * 7) {
        size_t cap = ix->cap ? ix->cap : 64;
        while ((ix->used + 1) * 10 >= cap * 5)
            cap *= 2;
        if (table_resize(ix, cap) != 0)
            return NULL;
    }
    size_t i = (size_t)h & (ix->cap - 1);
    while (ix->tab[i].occ)
        i = (i + 1) & (ix->cap - 1);
    ix->tab[i] = (posting_t){.h = h, .occ = true};
    ix->used++;
    return &ix->tab[i];
}

static size_t lower_bound(const uint32_t *a, size_t n, uint32_t x)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (a[mid] < x)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* Adds slot to h's posting (a no-op if there). AG_ENOMEM leaves the posting unchanged. */
static int posting_add(kw_index_t *ix, uint64_t h, uint32_t slot)
{
    posting_t *p = find_or_add(ix, h);
    if (!p)
        return AG_ENOMEM;
    /* Builds add slots in ascending order: the common case is an append. */
    size_t at = p->n && p->slots[p->n - 1] < slot ? p->n : lower_bound(p->slots, p->n, slot);
    if (at < p->n && p->slots[at] == slot)
        return 0;
    if (AG_GROW(p->slots, p->cap, (size_t)p->n + 1, 4, UINT32_MAX) != 0)
        return AG_ENOMEM;
    memmove(p->slots + at + 1, p->slots + at, (p->n - at) * sizeof(uint32_t));
    p->slots[at] = slot;
    p->n++;
    return 0;
}

static void posting_remove(kw_index_t *ix, uint64_t h, uint32_t slot)
{
    posting_t *p = find(ix, h);
    if (!p)
        return;
    size_t at = lower_bound(p->slots, p->n, slot);
    if (at == p->n || p->slots[at] != slot)
        return;
    memmove(p->slots + at, p->slots + at + 1, (p->n - at - 1) * sizeof(uint32_t));
    if (--p->n == 0) {
        free(p->slots);
        p->slots = NULL;
        p->cap = 0;
    }
}

/* ---- building ------------------------------------------------------------------------------ */

/* The hashes of a payload's values at a field (at most cap; *n may exceed cap: then *more). */
typedef struct hashes {
    uint64_t *h;
    size_t n, cap;
    bool oom;
} hashes_t;

static void collect(const uint8_t *v, void *ud)
{
    hashes_t *hs = ud;
    uint64_t h;
    if (hs->oom || !packed_hash(v, &h))
        return;
    for (size_t i = 0; i < hs->n; i++)
        if (hs->h[i] == h)
            return;
    if (AG_GROW(hs->h, hs->cap, hs->n + 1, 8, SIZE_MAX / sizeof(uint64_t)) != 0) {
        hs->oom = true;
        return;
    }
    hs->h[hs->n++] = h;
}

static bool has_hash(const hashes_t *hs, uint64_t h)
{
    for (size_t i = 0; i < hs->n; i++)
        if (hs->h[i] == h)
            return true;
    return false;
}

/* The index of field built from every live slot into ix (its table replaced). AG_ENOMEM leaves
 * ix empty and STALE. */
static int build(ag_collection_t *c, kw_index_t *ix)
{
    table_free(ix);
    ix->version = STALE;
    hashes_t hs = {0};
    int rc = 0;
    for (uint32_t s = 0; s < c->nslots && rc == 0; s++) {
        if (!c->slots[s].alive)
            continue;
        hs.n = 0;
        ag_payload_path_each_packed(c->slots[s].payload, ix->field, collect, &hs);
        if (hs.oom)
            rc = AG_ENOMEM;
        for (size_t i = 0; i < hs.n && rc == 0; i++)
            rc = posting_add(ix, hs.h[i], s);
    }
    free(hs.h);
    if (rc) {
        table_free(ix);
        return rc;
    }
    ix->version = atomic_load(&c->version);
    return 0;
}

static bool indexable(const ag_collection_t *c, const char *field)
{
    char buf[AG_INDEX_TYPE_MAX];
    const char *type = ag_coll_index_type(c, field, buf);
    return type && (strcmp(type, "keyword") == 0 || strcmp(type, "integer") == 0 ||
                    strcmp(type, "uuid") == 0 || strcmp(type, "bool") == 0);
}

/* The up-to-date index of field, building it if needed; NULL when it cannot be had. Caller
 * holds cache_mutex and the read lock. */
static kw_index_t *get_index(ag_collection_t *c, const char *field)
{
    kw_index_t *ix = c->payload_indexes;
    while (ix && strcmp(ix->field, field) != 0)
        ix = ix->next;
    if (ix && ix->version == atomic_load(&c->version))
        return ix;
    if (!ix) {
        ix = calloc(1, sizeof(*ix));
        if (!ix || !(ix->field = strdup(field))) {
            free(ix);
            return NULL;
        }
        ix->version = STALE;
        ix->next = c->payload_indexes;
        c->payload_indexes = ix;
    }
    atomic_fetch_add(&builds_total, 1);
    return build(c, ix) == 0 ? ix : NULL;
}

/* ---- maintenance --------------------------------------------------------------------------- */

void ag_payload_index_update(ag_collection_t *c, uint32_t slot, const uint8_t *old,
                             const uint8_t *new_)
{
    if (old == new_)
        return;
    uint64_t now = atomic_load(&c->version);
    for (kw_index_t *ix = c->payload_indexes; ix; ix = ix->next) {
        if (ix->version != now)
            continue; /* stale already: the next search rebuilds it */
        if (!indexable(c, ix->field)) {
            /* Its payload index was deleted: stop keeping it (rebuilt if declared again). */
            table_free(ix);
            ix->version = STALE;
            continue;
        }
        hashes_t before = {0}, after = {0};
        if (old)
            ag_payload_path_each_packed(old, ix->field, collect, &before);
        if (new_)
            ag_payload_path_each_packed(new_, ix->field, collect, &after);
        int rc = before.oom || after.oom ? AG_ENOMEM : 0;
        for (size_t i = 0; i < before.n && rc == 0; i++)
            if (!has_hash(&after, before.h[i]))
                posting_remove(ix, before.h[i], slot);
        for (size_t i = 0; i < after.n && rc == 0; i++)
            if (!has_hash(&before, after.h[i]))
                rc = posting_add(ix, after.h[i], slot);
        free(before.h);
        free(after.h);
        if (rc) {
            /* Fail closed: a partly updated index is never used; the next search rebuilds it. */
            table_free(ix);
            ix->version = STALE;
        }
    }
}

void ag_payload_index_advance(ag_collection_t *c)
{
    uint64_t now = atomic_load(&c->version);
    for (kw_index_t *ix = c->payload_indexes; ix; ix = ix->next)
        if (ix->version == now)
            ix->version = now + 1;
}

/* ---- candidates ---------------------------------------------------------------------------- */

/* A must condition an index can serve: its field and its values (one, or the any list). */
static bool indexed_condition(ag_collection_t *c, const json_t *cond, const char **field,
                              const json_t **value, const json_t **any)
{
    json_t *key = json_object_get(cond, "key");
    json_t *match = json_object_get(cond, "match");
    if (!json_is_string(key) || !json_is_object(match) || json_object_size(cond) != 2 ||
        json_object_size(match) != 1 || !indexable(c, json_string_value(key)))
        return false;
    *field = json_string_value(key);
    *value = json_object_get(match, "value");
    *any = json_object_get(match, "any");
    return *value || json_array_size(*any) > 0;
}

static size_t cond_count(const kw_index_t *ix, const json_t *value, const json_t *any)
{
    size_t nvals = value ? 1 : json_array_size(any), total = 0;
    for (size_t v = 0; v < nvals; v++) {
        uint64_t h;
        const posting_t *p;
        if (value_hash(value ? value : json_array_get(any, v), &h) && (p = find(ix, h)))
            total += p->n;
    }
    return total;
}

/* ag_payload_candidates, or with arena NULL only the count (nothing allocated). Every indexable
 * condition is counted and the smallest is listed: each is a superset of the matches. */
static bool candidates(ag_collection_t *c, ag_arena_t *arena, const json_t *filter, uint32_t **out,
                       size_t *n)
{
    json_t *must = json_object_get(filter, "must");
    json_t *single = json_is_object(must) ? must : NULL;
    size_t count = single ? 1 : json_array_size(must);
    bool found = false;
    size_t best = SIZE_MAX;
    const json_t *best_value = NULL, *best_any = NULL;
    kw_index_t *best_ix = NULL;
    pthread_mutex_lock(&cache_mutex);
    for (size_t i = 0; i < count; i++) {
        const char *field;
        const json_t *value, *any;
        if (!indexed_condition(c, single ? single : json_array_get(must, i), &field, &value, &any))
            continue;
        kw_index_t *ix = get_index(c, field);
        if (!ix)
            continue;
        size_t k = cond_count(ix, value, any);
        if (!found || k < best) {
            found = true;
            best = k;
            best_ix = ix;
            best_value = value;
            best_any = any;
        }
    }
    bool ok = found;
    if (found && arena) {
        uint32_t *slots = ag_arena_alloc(arena, (best ? best : 1) * sizeof(uint32_t));
        if (!slots) {
            ok = false;
        } else {
            size_t nvals = best_value ? 1 : json_array_size(best_any), k = 0;
            for (size_t v = 0; v < nvals; v++) {
                uint64_t h;
                const posting_t *p;
                if (value_hash(best_value ? best_value : json_array_get(best_any, v), &h) &&
                    (p = find(best_ix, h)) && p->n) {
                    memcpy(slots + k, p->slots, p->n * sizeof(uint32_t));
                    k += p->n;
                }
            }
            /* Several values may repeat slots; index users skip adjacent repeats, so sorting
             * is enough. */
            if (nvals > 1)
                qsort(slots, k, sizeof(uint32_t), ag_cmp_u32);
            *out = slots;
        }
    }
    pthread_mutex_unlock(&cache_mutex);
    if (ok)
        *n = best;
    return ok;
}

bool ag_payload_candidates(ag_collection_t *c, ag_arena_t *arena, const json_t *filter,
                           uint32_t **out, size_t *n)
{
    return arena && candidates(c, arena, filter, out, n);
}

bool ag_payload_candidates_count(ag_collection_t *c, const json_t *filter, size_t *n)
{
    return candidates(c, NULL, filter, NULL, n);
}

/* ---- tests and benchmarks ------------------------------------------------------------------ */

bool ag_payload_index_verify(ag_collection_t *c, const char *field)
{
    pthread_mutex_lock(&cache_mutex);
    kw_index_t *ix = c->payload_indexes;
    while (ix && strcmp(ix->field, field) != 0)
        ix = ix->next;
    bool same = true;
    kw_index_t fresh = {.field = (char *)field};
    if (ix && ix->version == atomic_load(&c->version) && build(c, &fresh) == 0) {
        size_t live = 0;
        for (size_t i = 0; i < ix->cap && same; i++) {
            const posting_t *p = &ix->tab[i];
            if (!p->occ || p->n == 0)
                continue;
            live++;
            const posting_t *q = find(&fresh, p->h);
            same = q && q->n == p->n && memcmp(q->slots, p->slots, p->n * sizeof(uint32_t)) == 0;
        }
        same = same && live == fresh.used;
    }
    table_free(&fresh);
    pthread_mutex_unlock(&cache_mutex);
    return same;
}

void ag_payload_index_invalidate(ag_collection_t *c)
{
    pthread_mutex_lock(&cache_mutex);
    for (kw_index_t *ix = c->payload_indexes; ix; ix = ix->next)
        ix->version = STALE;
    pthread_mutex_unlock(&cache_mutex);
}

uint64_t ag_payload_index_builds(void)
{
    return atomic_load(&builds_total);
}

void ag_payload_index_free(ag_collection_t *c)
{
    kw_index_t *ix = c->payload_indexes;
    while (ix) {
        kw_index_t *next = ix->next;
        table_free(ix);
        free(ix->field);
        free(ix);
        ix = next;
    }
    c->payload_indexes = NULL;
}
