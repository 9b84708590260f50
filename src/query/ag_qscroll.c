/*
 * Scroll (docs/API.md): the points in scope, in id order from an offset, or ordered by a payload
 * value (order_by, the same implementation the query API uses). Three ways to walk, each giving
 * the same answer: order_by sorts the points in scope; with a payload-index candidate list (the
 * filter's or the row restriction's) the in-scope candidates are sorted by id; otherwise the
 * store's id-ordered walk (ag_coll_walk) is filtered. Also the reads by id: retrieve and get.
 */
#include "query/ag_query_int.h"

typedef struct scroll {
    const ag_qctx_t *ctx;
    const ag_scope_t *sc;
    uint64_t limit;
    const ag_payload_sel_t *ps;
    bool wv;
    const json_t *which;
    json_t *points;
    json_t *next;
    size_t got, seen;
} scroll_t;

static void render(scroll_t *s, uint32_t slot)
{
    json_array_append_new(s->points,
                          ag_render_point(s->sc->c, slot, s->ps, s->wv, s->which, false, 0));
}

typedef struct keyed_slot {
    uint8_t key[AG_ID_KEY_LEN];
    uint32_t slot;
} keyed_slot_t;

static int cmp_keyed_slot(const void *a, const void *b)
{
    return memcmp(((const keyed_slot_t *)a)->key, ((const keyed_slot_t *)b)->key, AG_ID_KEY_LEN);
}

/* Over payload-index candidates: the in-scope ones at or after offset, in id order like the
 * store's walk. */
static int scroll_candidates(scroll_t *s, const uint32_t *cand, size_t ncand,
                             const ag_point_id_t *offset)
{
    ag_collection_t *c = s->sc->c;
    uint8_t from[AG_ID_KEY_LEN];
    if (offset)
        ag_id_to_key(offset, from);
    keyed_slot_t *k = ag_arena_alloc(s->ctx->arena, (ncand ? ncand : 1) * sizeof(*k));
    if (!k)
        return AG_ENOMEM;
    size_t n = 0, seen = 0;
    int rc = 0;
    for (size_t i = 0; i < ncand; i++) {
        if (i % AG_QUERY_DEADLINE_EVERY == 0 && (rc = ag_qctx_deadline(s->ctx)) != 0)
            break;
        if (i > 0 && cand[i - 1] == cand[i])
            continue;
        seen++;
        if (!ag_scope_match(s->sc, cand[i]))
            continue;
        ag_id_to_key(ag_coll_id(c, cand[i]), k[n].key);
        if (offset && memcmp(k[n].key, from, AG_ID_KEY_LEN) < 0)
            continue;
        k[n++].slot = cand[i];
    }
    ag_scope_note_examined(seen);
    if (rc)
        return rc;
    qsort(k, n, sizeof(*k), cmp_keyed_slot);
    for (size_t i = 0; i < n; i++) {
        if (i == s->limit) {
            json_decref(s->next);
            s->next = ag_id_to_json(ag_coll_id(c, k[i].slot));
            break;
        }
        render(s, k[i].slot);
    }
    return 0;
}

static int walk_visit(void *ud, const ag_point_id_t *id, uint32_t slot)
{
    scroll_t *s = ud;
    int rc;
    if (s->seen++ % AG_QUERY_DEADLINE_EVERY == 0 && (rc = ag_qctx_deadline(s->ctx)) != 0)
        return rc;
    if (!id || slot == UINT32_MAX || !ag_scope_match(s->sc, slot))
        return 0;
    if (s->got == s->limit) {
        json_decref(s->next);
        s->next = ag_id_to_json(id);
        return 1;
    }
    render(s, slot);
    s->got++;
    return 0;
}

/* order_by: every point in scope holding a value, sorted. */
static int scroll_ordered(scroll_t *s, const json_t *order_by, bool has_offset)
{
    ag_collection_t *c = s->sc->c;
    ag_order_by_t ob;
    int rc = ag_order_by_parse(order_by, &ob, s->ctx->diag);
    if (rc == 0)
        rc = ag_order_by_check(c, &ob, s->ctx->diag);
    if (rc == 0 && has_offset)
        rc = ag_fail(s->ctx->diag, AG_EINVAL,
                     "offset: not allowed with order_by; use order_by.start_from");
    if (rc)
        return rc;
    uint32_t live = ag_coll_live(c), nslots = ag_coll_nslots(c);
    uint32_t *slots = ag_arena_calloc(s->ctx->arena, live ? live : 1, sizeof(*slots));
    if (!slots)
        return AG_ENOMEM;
    size_t k = 0, n = 0;
    for (uint32_t i = 0; i < nslots && k < live; i++)
        if (ag_scope_match(s->sc, i))
            slots[k++] = i;
    ag_ordered_t *o;
    if ((rc = ag_order_slots(s->ctx->arena, c, slots, k, &ob, true, &o, &n)) != 0)
        return rc;
    for (size_t i = 0; i < n && i < s->limit; i++) {
        json_t *p = ag_render_point(c, o[i].slot, s->ps, s->wv, s->which, false, 0);
        json_object_set_new(p, "order_value", ag_order_value_json(o[i].value));
        json_array_append_new(s->points, p);
    }
    return 0;
}

typedef struct scroll_args {
    scroll_t *s;
    const json_t *filter_json, *order_by;
    const ag_point_id_t *offset;
} scroll_args_t;

static int scroll_locked(void *ud, ag_collection_t *c)
{
    scroll_args_t *a = ud;
    scroll_t *s = a->s;
    const ag_qctx_t *ctx = s->ctx;
    const ag_scope_t *sc = s->sc;
    uint32_t *cand;
    size_t ncand;
    int rc;
    if (a->order_by && !json_is_null(a->order_by)) {
        rc = scroll_ordered(s, a->order_by, a->offset != NULL);
    } else if ((sc->user || sc->restriction) &&
               ag_scope_candidates(sc, ctx->arena, a->filter_json, &cand, &ncand)) {
        rc = scroll_candidates(s, cand, ncand, a->offset);
    } else {
        rc = ag_coll_walk(c, a->offset, walk_visit, s);
        if (rc == AG_ESTORAGE)
            rc = ag_fail(ctx->diag, AG_ESTORAGE, "cannot read the collection");
        else
            ag_scope_note_examined(s->seen);
    }
    return rc;
}

int ag_query_scroll(const ag_qctx_t *ctx, const ag_scope_t *sc, const json_t *filter_json,
                    const json_t *order_by, const ag_point_id_t *offset, uint64_t limit,
                    const ag_payload_sel_t *ps, bool wv, const json_t *which, json_t **out)
{
    scroll_t s = {ctx, sc, limit, ps, wv, which, json_array(), json_null(), 0, 0};
    scroll_args_t a = {&s, filter_json, order_by, offset};
    int rc = ag_coll_read(sc->c, scroll_locked, &a);
    if (rc) {
        json_decref(s.points);
        json_decref(s.next);
        return rc;
    }
    *out = json_pack("{s:o,s:o}", "points", s.points, "next_page_offset", s.next);
    return *out ? 0 : AG_ENOMEM;
}

/* ---- reads by id --------------------------------------------------------------------------- */

typedef struct by_ids {
    const ag_qctx_t *ctx;
    const ag_point_id_t *ids;
    size_t n;
    const ag_payload_sel_t *ps;
    bool wv;
    const json_t *which;
    json_t *out;
} by_ids_t;

static int retrieve_locked(void *ud, ag_collection_t *c)
{
    by_ids_t *r = ud;
    /* One slot per id, so a bitmap over slots drops repeated ids in linear time. */
    uint8_t *seen = ag_arena_calloc(r->ctx->arena, (ag_coll_nslots(c) + 7) / 8 + 1, 1);
    for (size_t i = 0; r->out && seen && i < r->n; i++) {
        uint32_t s = ag_coll_find(c, &r->ids[i]);
        /* Points outside the caller's rows do not exist for it. */
        if (s == UINT32_MAX || (seen[s / 8] >> (s % 8)) & 1 ||
            !ag_coll_match(c, s, r->ctx->restriction))
            continue;
        seen[s / 8] |= (uint8_t)(1u << (s % 8));
        json_array_append_new(r->out, ag_render_point(c, s, r->ps, r->wv, r->which, false, 0));
    }
    if (!seen) {
        json_decref(r->out);
        r->out = NULL;
    }
    return r->out ? 0 : AG_ENOMEM;
}

int ag_query_retrieve(const ag_qctx_t *ctx, ag_collection_t *c, const ag_point_id_t *ids, size_t n,
                      const ag_payload_sel_t *ps, bool wv, const json_t *which, json_t **out)
{
    by_ids_t r = {ctx, ids, n, ps, wv, which, json_array()};
    int rc = ag_coll_read(c, retrieve_locked, &r);
    *out = r.out;
    return rc;
}

static int get_locked(void *ud, ag_collection_t *c)
{
    by_ids_t *r = ud;
    /* A point outside the caller's rows does not exist for it. */
    uint32_t s = ag_coll_find(c, r->ids);
    if (s == UINT32_MAX || !ag_coll_match(c, s, r->ctx->restriction)) {
        char buf[40];
        ag_id_format(r->ids, buf, sizeof(buf));
        return ag_fail(r->ctx->diag, AG_ENOTFOUND, "Not found: No point with id %s found", buf);
    }
    r->out = ag_render_point(c, s, r->ps, true, NULL, false, 0);
    return 0;
}

int ag_query_get(const ag_qctx_t *ctx, ag_collection_t *c, const ag_point_id_t *id, json_t **out)
{
    ag_payload_sel_t ps = {true, NULL, NULL};
    by_ids_t r = {ctx, id, 1, &ps, true, NULL, NULL};
    int rc = ag_coll_read(c, get_locked, &r);
    *out = r.out;
    return rc;
}

/* ---- the selection of a write by filter ------------------------------------------------------ */

typedef struct select_ids {
    ag_collection_t *c;
    ag_point_id_t *ids;
    size_t n, cap;
} select_ids_t;

static bool take_id(void *ud, uint32_t slot)
{
    select_ids_t *s = ud;
    s->ids[s->n++] = *ag_coll_id(s->c, slot);
    return s->n < s->cap;
}

/* Memory: *out is arena-allocated (ctx->arena). */
int ag_query_select_ids(const ag_qctx_t *ctx, const ag_scope_t *sc, const json_t *filter_json,
                        ag_point_id_t **out, size_t *n)
{
    size_t cap = ag_coll_live(sc->c) ? ag_coll_live(sc->c) : 1;
    select_ids_t s = {sc->c, ag_arena_alloc(ctx->arena, cap * sizeof(ag_point_id_t)), 0, cap};
    if (!s.ids)
        return AG_ENOMEM;
    int rc = ag_q__each_in_scope(ctx, sc, filter_json, take_id, &s);
    if (rc)
        return rc;
    *out = s.ids;
    *n = s.n;
    return 0;
}
