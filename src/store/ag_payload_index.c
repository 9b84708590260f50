#include "store/ag_payload_index.h"

#include <pthread.h>

#include "ag_cmp.h"
#include "ag_grow.h"
#include "store/ag_collection_int.h"

typedef struct kv_pair {
    uint64_t h;
    uint32_t slot;
} kv_pair_t;

typedef struct kw_index {
    struct kw_index *next;
    char *field;
    uint64_t version;
    kv_pair_t *pairs;
    size_t n;
} kw_index_t;

/* One mutex for every collection's cache: builds are rare and short. */
static pthread_mutex_t cache_mutex = PTHREAD_MUTEX_INITIALIZER;

static uint64_t mix(uint64_t h)
{
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ULL;
    return h ^ (h >> 33);
}

/* Hash of a scalar payload value; false for values an equality match can never select. */
static bool value_hash(const json_t *v, uint64_t *out)
{
    if (json_is_string(v)) {
        uint64_t h = 1469598103934665603ULL;
        const unsigned char *s = (const unsigned char *)json_string_value(v);
        for (size_t i = 0, n = json_string_length(v); i < n; i++)
            h = (h ^ s[i]) * 1099511628211ULL;
        *out = mix(h ^ 0x5354);
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

typedef struct build_ctx {
    kv_pair_t *pairs;
    size_t n, cap;
    uint32_t slot;
    bool oom;
} build_ctx_t;

static void collect(const json_t *v, void *ud)
{
    build_ctx_t *b = ud;
    uint64_t h;
    if (b->oom || !value_hash(v, &h))
        return;
    if (AG_GROW(b->pairs, b->cap, b->n + 1, 1024, SIZE_MAX / sizeof(*b->pairs)) != 0) {
        b->oom = true;
        return;
    }
    b->pairs[b->n].h = h;
    b->pairs[b->n].slot = b->slot;
    b->n++;
}

static int cmp_pair(const void *a, const void *b)
{
    const kv_pair_t *x = a, *y = b;
    if (x->h != y->h)
        return x->h < y->h ? -1 : 1;
    return x->slot < y->slot ? -1 : x->slot > y->slot;
}

/* The up-to-date index of field, building it if needed. Caller holds cache_mutex. */
static kw_index_t *get_index(ag_collection_t *c, const char *field)
{
    kw_index_t *ix = c->payload_indexes;
    while (ix && strcmp(ix->field, field) != 0)
        ix = ix->next;
    uint64_t version = atomic_load(&c->version);
    if (ix && ix->version == version)
        return ix;
    build_ctx_t b = {0};
    for (uint32_t s = 0; s < c->nslots && !b.oom; s++) {
        if (!c->slots[s].alive)
            continue;
        b.slot = s;
        ag_payload_path_each(c->slots[s].payload, field, collect, &b);
    }
    if (b.oom) {
        free(b.pairs);
        return NULL;
    }
    qsort(b.pairs, b.n, sizeof(kv_pair_t), cmp_pair);
    if (!ix) {
        ix = calloc(1, sizeof(*ix));
        if (!ix || !(ix->field = strdup(field))) {
            free(ix);
            free(b.pairs);
            return NULL;
        }
        ix->next = c->payload_indexes;
        c->payload_indexes = ix;
    }
    free(ix->pairs);
    ix->pairs = b.pairs;
    ix->n = b.n;
    ix->version = version;
    return ix;
}

static size_t lower_bound(const kw_index_t *ix, uint64_t h)
{
    size_t lo = 0, hi = ix->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (ix->pairs[mid].h < h)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static bool indexable(const ag_collection_t *c, const char *field)
{
    const char *type =
        json_string_value(json_object_get(json_object_get(c->schema, field), "data_type"));
    return type && (strcmp(type, "keyword") == 0 || strcmp(type, "integer") == 0 ||
                    strcmp(type, "uuid") == 0 || strcmp(type, "bool") == 0);
}

/* ag_payload_candidates, or with arena NULL only the count (one pass, nothing allocated). */
static bool candidates(ag_collection_t *c, ag_arena_t *arena, const json_t *filter, uint32_t **out,
                       size_t *n)
{
    json_t *must = json_object_get(filter, "must");
    json_t *single = json_is_object(must) ? must : NULL;
    size_t count = single ? 1 : json_array_size(must);
    for (size_t i = 0; i < count; i++) {
        json_t *cond = single ? single : json_array_get(must, i);
        json_t *key = json_object_get(cond, "key");
        json_t *match = json_object_get(cond, "match");
        if (!json_is_string(key) || !json_is_object(match) || json_object_size(cond) != 2 ||
            !indexable(c, json_string_value(key)))
            continue;
        json_t *value = json_object_get(match, "value");
        json_t *any = json_object_get(match, "any");
        size_t nvals = value ? 1 : json_array_size(any);
        if (nvals == 0 || json_object_size(match) != 1)
            continue;
        pthread_mutex_lock(&cache_mutex);
        kw_index_t *ix = get_index(c, json_string_value(key));
        bool ok = ix != NULL;
        size_t total = 0;
        uint32_t *slots = NULL;
        for (int pass = 0; ok && pass < (arena ? 2 : 1); pass++) {
            if (pass == 1 && !(slots = ag_arena_alloc(arena, (total ? total : 1) * 4))) {
                ok = false;
                break;
            }
            size_t k = 0;
            for (size_t v = 0; v < nvals; v++) {
                uint64_t h;
                if (!value_hash(value ? value : json_array_get(any, v), &h))
                    continue;
                for (size_t p = lower_bound(ix, h); p < ix->n && ix->pairs[p].h == h; p++) {
                    if (pass == 1)
                        slots[k] = ix->pairs[p].slot;
                    k++;
                }
            }
            total = k;
        }
        pthread_mutex_unlock(&cache_mutex);
        if (!ok)
            return false;
        if (!arena) {
            *n = total;
            return true;
        }
        /* Several values (or one slot holding a value twice) may repeat slots; index users
         * skip adjacent repeats, so sorting is enough. */
        if (nvals > 1)
            qsort(slots, total, sizeof(uint32_t), ag_cmp_u32);
        *out = slots;
        *n = total;
        return true;
    }
    return false;
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

void ag_payload_index_free(ag_collection_t *c)
{
    kw_index_t *ix = c->payload_indexes;
    while (ix) {
        kw_index_t *next = ix->next;
        free(ix->field);
        free(ix->pairs);
        free(ix);
        ix = next;
    }
    c->payload_indexes = NULL;
}
