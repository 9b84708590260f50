/*
 * Groups of the search, recommend and query APIs (docs/API.md): the top stage runs with a growing
 * k until the best `limit` groups of `group_size` hits are settled; with_lookup then adds, for
 * each group, the point of another collection named by the group's id (opened through the
 * caller's authorization, ctx->open_other, and read under the restriction there).
 */
#include <stdio.h>

#include "query/ag_query_int.h"

/* ---- groups -------------------------------------------------------------------------------- */

typedef struct group {
    json_t *id;   /* owned reference (decoded from a payload: store/ag_collection.h) */
    size_t *hits; /* indexes into the ranked list */
    size_t n, cap;
} group_t;

typedef struct gvals {
    json_t *v[AG_Q_MAX_GROUP_VALUES]; /* owned references */
    size_t n;
} gvals_t;

/* Group values are strings and integers; a point with an array is in each element's group. */
static void take_group_value(const json_t *v, void *ud)
{
    gvals_t *g = ud;
    if ((!json_is_string(v) && !json_is_integer(v)) || g->n == AG_Q_MAX_GROUP_VALUES)
        return;
    for (size_t i = 0; i < g->n; i++)
        if (json_equal(g->v[i], v))
            return;
    g->v[g->n++] = json_incref((json_t *)v);
}

static void gvals_release(gvals_t *g)
{
    for (size_t i = 0; i < g->n; i++)
        json_decref(g->v[i]);
    g->n = 0;
}

static void groups_release(group_t *g, size_t *ng)
{
    for (size_t i = 0; i < *ng; i++)
        json_decref(g[i].id);
    *ng = 0;
}

/* The map key of a group value: "s<bytes>" or "i<decimal>" (arena). */
static char *group_key(ag_query_t *rq, const json_t *v, size_t *len)
{
    if (json_is_integer(v)) {
        char *k = ag_q__alloc(rq, 24, 1);
        if (k)
            *len = (size_t)snprintf(k, 24, "i%lld", (long long)json_integer_value(v));
        return k;
    }
    size_t n = json_string_length(v);
    char *k = ag_q__alloc(rq, n + 2, 1);
    if (k) {
        k[0] = 's';
        memcpy(k + 1, json_string_value(v), n);
        *len = n + 1;
    }
    return k;
}

/* Groups from one ranked list: the first `limit` distinct values met are the groups with the
 * best hits; each keeps its best group_size hits. *complete: nothing more can change them. */
static int build_groups(ag_query_t *rq, const ag_ranked_t *r, group_t *g, size_t *ng,
                        bool *complete)
{
    json_t *map = json_object();
    if (!map)
        return AG_ENOMEM;
    size_t full = 0;
    int rc = 0;
    gvals_t vals = {.n = 0};
    groups_release(g, ng);
    for (size_t i = 0; i < r->n && rc == 0; i++) {
        if (*ng == rq->limit && full == *ng)
            break;
        gvals_release(&vals);
        if (ag_coll_payload_each(rq->c, r->h[i].slot, rq->group_by, take_group_value, &vals) ==
            SIZE_MAX) {
            rc = AG_ENOMEM;
            break;
        }
        for (size_t j = 0; j < vals.n && rc == 0; j++) {
            size_t klen = 0;
            char *key = group_key(rq, vals.v[j], &klen);
            if (!key) {
                rc = AG_ENOMEM;
                break;
            }
            json_t *e = json_object_getn(map, key, klen);
            group_t *gr;
            if (e) {
                gr = &g[json_integer_value(e)];
            } else {
                if (*ng == rq->limit)
                    continue;
                if (json_object_setn_new(map, key, klen, json_integer((json_int_t)*ng)) != 0) {
                    rc = AG_ENOMEM;
                    break;
                }
                gr = &g[(*ng)++];
                memset(gr, 0, sizeof(*gr));
                gr->id = json_incref(vals.v[j]);
            }
            if (gr->n == rq->group_size)
                continue;
            if (gr->n == gr->cap) {
                size_t cap = gr->cap ? AG_MIN(gr->cap * 2, rq->group_size) : 4;
                size_t *h = ag_q__alloc(rq, cap, sizeof(size_t));
                if (!h) {
                    rc = AG_ENOMEM;
                    break;
                }
                if (gr->n)
                    memcpy(h, gr->hits, gr->n * sizeof(size_t));
                gr->hits = h;
                gr->cap = cap;
            }
            gr->hits[gr->n++] = i;
            if (gr->n == rq->group_size)
                full++;
        }
    }
    gvals_release(&vals);
    json_decref(map);
    *complete = *ng == rq->limit && full == *ng;
    return rc;
}

/* Runs the top stage with a growing k until the groups are settled or the points run out. */
int ag_q__run_groups(ag_query_t *rq, json_t **out)
{
    group_t *g = ag_q__alloc(rq, rq->limit, sizeof(*g));
    if (!g)
        return AG_ENOMEM;
    size_t live = ag_coll_live(rq->c);
    size_t k = AG_MIN(AG_MAX(rq->limit * rq->group_size, (size_t)16), AG_MAX(live, (size_t)1));
    ag_ranked_t r;
    size_t ng = 0;
    int rc;
    for (;;) {
        bool complete;
        if ((rc = ag_q__run_stage(rq, rq->root, k, &r)) != 0 ||
            (rc = build_groups(rq, &r, g, &ng, &complete)) != 0) {
            groups_release(g, &ng);
            return rc;
        }
        if (complete || r.n < k || k >= live)
            break;
        k = AG_MIN(k * 2, live);
    }
    json_t *arr = json_array();
    for (size_t i = 0; arr && i < ng; i++) {
        json_t *hits = json_array();
        for (size_t j = 0; hits && j < g[i].n; j++)
            json_array_append_new(hits, ag_q__render_hit(rq, &r, g[i].hits[j]));
        json_t *o = json_pack("{s:o,s:o}", "id", json_deep_copy(g[i].id), "hits", hits);
        if (!o || json_array_append_new(arr, o) != 0) {
            json_decref(arr);
            arr = NULL;
        }
    }
    groups_release(g, &ng);
    if (!arr)
        return AG_ENOMEM;
    *out = arr;
    return 0;
}

typedef struct lookups {
    ag_query_t *rq;
    json_t *groups;
    const ag_filter_t *restriction;
} lookups_t;

/* Under the other collection's read lock. */
static int fill_lookups_locked(void *ud, ag_collection_t *lc)
{
    lookups_t *l = ud;
    ag_query_t *rq = l->rq;
    const ag_filter_t *restriction = l->restriction;
    json_t *groups = l->groups;
    size_t i;
    json_t *g;
    json_array_foreach(groups, i, g)
    {
        ag_point_id_t id;
        if (ag_id_parse(json_object_get(g, "id"), &id, "", NULL) != 0)
            continue;
        uint32_t s = ag_coll_find(lc, &id);
        if (s == UINT32_MAX || !ag_coll_match(lc, s, restriction))
            continue;
        json_object_set_new(g, "lookup",
                            ag_render_point(lc, s, &rq->wl_ps, rq->wl_wv, rq->wl_which, false, 0));
    }
    return 0;
}

/* with_lookup: each group's id names a point of another collection, returned beside the hits.
 * Runs after this collection's lock is released. */
int ag_q__fill_lookups(ag_query_t *rq, json_t *groups)
{
    ag_collection_t *lc;
    ag_filter_t *restriction = NULL;
    char p[AG_QUERY_PATH_LEN];
    ag_q__field(p, sizeof(p), rq->root->path, "with_lookup");
    int rc = ag_q__open_other(rq, rq->wl_coll, p, &lc, &restriction);
    if (rc)
        return rc;
    lookups_t l = {rq, groups, restriction};
    rc = ag_coll_read(lc, fill_lookups_locked, &l);
    ag_coll_unref(lc);
    ag_filter_free(restriction);
    return rc;
}
