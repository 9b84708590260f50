/*
 * Count and facet (docs/API.md): aggregates over the points a caller may read. The scope carries
 * the row restriction, so a restricted count or facet sees only the caller's rows, and payload
 * indexes narrow the scan to the candidates of the filter or of the restriction.
 */
#include "ag_grow.h"
#include "query/ag_query_int.h"

static bool count_one(void *ud, uint32_t slot)
{
    (void)slot;
    (*(json_int_t *)ud)++;
    return true;
}

typedef struct count_args {
    const ag_qctx_t *ctx;
    const ag_scope_t *sc;
    const json_t *filter_json;
    json_int_t count;
} count_args_t;

static int count_locked(void *ud, ag_collection_t *c)
{
    count_args_t *a = ud;
    const ag_scope_t *sc = a->sc;
    int rc = 0;
    /* Indexed equalities of the filter and of the row restriction narrow the scan (to their
     * intersection), so a restricted count costs what is in scope, not what the filter matches
     * elsewhere; every candidate still passes the whole scope. */
    if (!sc->user && !sc->restriction) {
        a->count = ag_coll_live(c);
        ag_scope_note_examined(0);
    } else {
        rc = ag_q__each_in_scope(a->ctx, sc, a->filter_json, count_one, &a->count);
    }
    return rc;
}

int ag_query_count(const ag_qctx_t *ctx, const ag_scope_t *sc, const json_t *filter_json,
                   json_int_t *out)
{
    count_args_t a = {ctx, sc, filter_json, 0};
    int rc = ag_coll_read(sc->c, count_locked, &a);
    *out = a.count;
    return rc;
}

typedef struct facet_count {
    json_t *value; /* owned reference (decoded from a payload: store/ag_collection.h) */
    json_int_t count;
    uint32_t last_slot; /* a point holding a value twice counts once */
} facet_count_t;

typedef struct facet_ctx {
    const ag_collection_t *c;
    const char *key;
    facet_count_t *v;
    size_t n, cap;
    uint32_t slot;
    bool oom;
} facet_ctx_t;

static void facet_visit(const json_t *val, void *ud)
{
    facet_ctx_t *f = ud;
    if (f->oom || !(json_is_string(val) || json_is_integer(val) || json_is_boolean(val)))
        return;
    for (size_t i = 0; i < f->n; i++) {
        if (json_equal(f->v[i].value, val)) {
            if (f->v[i].last_slot != f->slot) {
                f->v[i].count++;
                f->v[i].last_slot = f->slot;
            }
            return;
        }
    }
    if (AG_GROW(f->v, f->cap, f->n + 1, 64, SIZE_MAX / sizeof(*f->v)) != 0) {
        f->oom = true;
        return;
    }
    f->v[f->n++] = (facet_count_t){json_incref((json_t *)val), 1, f->slot};
}

static bool facet_slot(void *ud, uint32_t slot)
{
    facet_ctx_t *f = ud;
    f->slot = slot;
    if (ag_coll_payload_each(f->c, slot, f->key, facet_visit, f) == SIZE_MAX)
        f->oom = true;
    return !f->oom;
}

static int cmp_facet(const void *a, const void *b)
{
    const facet_count_t *x = a, *y = b;
    if (x->count != y->count)
        return x->count > y->count ? -1 : 1;
    if (json_is_string(x->value) && json_is_string(y->value))
        return strcmp(json_string_value(x->value), json_string_value(y->value));
    if (json_is_integer(x->value) && json_is_integer(y->value))
        return json_integer_value(x->value) < json_integer_value(y->value) ? -1 : 1;
    return json_typeof(x->value) < json_typeof(y->value) ? -1 : 1;
}

typedef struct facet_args {
    const ag_qctx_t *ctx;
    const ag_scope_t *sc;
    const json_t *filter_json;
    const char *key;
    uint64_t limit;
    json_t *hits;
} facet_args_t;

static int facet_locked(void *ud, ag_collection_t *c)
{
    facet_args_t *a = ud;
    const ag_qctx_t *ctx = a->ctx;
    const ag_scope_t *sc = a->sc;
    const char *key = a->key;
    int rc = 0;
    AG_UNUSED(c);
    char buf[AG_INDEX_TYPE_MAX];
    const char *type = ag_coll_index_type(sc->c, key, buf);
    facet_ctx_t f = {.c = sc->c, .key = key};
    if (!type || (strcmp(type, "keyword") != 0 && strcmp(type, "integer") != 0 &&
                  strcmp(type, "bool") != 0 && strcmp(type, "uuid") != 0)) {
        rc = ag_fail(ctx->diag, AG_EINVAL,
                     "Bad request: Index required but not found for \"%.200s\" of one of the "
                     "following types: [keyword, integer, bool, uuid]",
                     key);
    } else {
        rc = ag_q__each_in_scope(ctx, sc, a->filter_json, facet_slot, &f);
        if (f.oom && rc == 0)
            rc = AG_ENOMEM;
    }
    if (rc == 0) {
        qsort(f.v, f.n, sizeof(*f.v), cmp_facet);
        json_t *hits = json_array();
        for (size_t i = 0; hits && i < f.n && i < a->limit; i++)
            json_array_append_new(
                hits, json_pack("{s:O,s:I}", "value", f.v[i].value, "count", f.v[i].count));
        a->hits = hits;
    }
    for (size_t i = 0; i < f.n; i++)
        json_decref(f.v[i].value);
    free(f.v);
    return rc;
}

int ag_query_facet(const ag_qctx_t *ctx, const ag_scope_t *sc, const json_t *filter_json,
                   const char *key, uint64_t limit, json_t **out)
{
    facet_args_t a = {ctx, sc, filter_json, key, limit, NULL};
    int rc = ag_coll_read(sc->c, facet_locked, &a);
    *out = a.hits;
    return rc;
}
