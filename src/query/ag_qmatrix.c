/*
 * Qdrant's distance matrix (POST /points/search/matrix/pairs and /offsets; docs/API.md "Distance
 * matrix"): a random sample of the points in scope that have the vector, and for each of them,
 * in id order, its `limit` nearest among the other sampled points, scored exactly as a search
 * scores them (the index's exact candidate scoring). Points outside the row restriction are never
 * sampled, so they appear neither as rows nor as neighbours.
 */
#include <sodium.h>
#include <stdio.h>

#include "query/ag_query_int.h"
#include "json/ag_json.h"

typedef struct matrix {
    const ag_qctx_t *ctx;
    const ag_scope_t *sc;
    const json_t *filter_json;
    const char *using_name;
    size_t sample, limit;
    bool offsets;
    json_t *res;
    /* the points in scope with the vector */
    int vi;
    uint32_t *slots;
    size_t n, cap;
} matrix_t;

static bool collect(void *ud, uint32_t slot)
{
    matrix_t *m = ud;
    if (!ag_coll_dense_get(m->sc->c, m->vi, slot))
        return true;
    if (m->n == m->cap) {
        size_t cap = m->cap ? m->cap * 2 : 256;
        uint32_t *g = ag_arena_alloc(m->ctx->arena, cap * sizeof(uint32_t));
        if (!g) {
            m->cap = SIZE_MAX; /* noted: out of memory */
            return false;
        }
        if (m->n)
            memcpy(g, m->slots, m->n * sizeof(uint32_t));
        m->slots = g;
        m->cap = cap;
    }
    m->slots[m->n++] = slot;
    return true;
}

typedef struct row_accept {
    uint32_t self;
} row_accept_t;

static bool not_self(const void *ud, uint32_t slot)
{
    return slot != ((const row_accept_t *)ud)->self;
}

typedef struct by_id {
    uint32_t slot;
    const ag_point_id_t *id;
} by_id_t;

static int cmp_by_id(const void *a, const void *b)
{
    return ag_id_cmp(((const by_id_t *)a)->id, ((const by_id_t *)b)->id);
}

/* The row of a sampled slot: sorted holds the sampled slots ascending, row[j] the row of
 * sorted[j]. */
static json_int_t row_of(const uint32_t *sorted, const size_t *row, size_t n, uint32_t slot)
{
    const uint32_t *p = bsearch(&slot, sorted, n, sizeof(uint32_t), ag_q__cmp_u32);
    return p ? (json_int_t)row[p - sorted] : -1;
}

static int append(json_t *arr, json_t *v)
{
    return v && json_array_append_new(arr, v) == 0 ? 0 : AG_ENOMEM;
}

static int run(void *ud, ag_collection_t *c)
{
    matrix_t *m = ud;
    ag_diag_t *d = m->ctx->diag;
    m->vi = ag_coll_vector(c, m->using_name);
    if (m->vi < 0) {
        if (ag_coll_sparse(c, m->using_name) >= 0)
            return ag_fail(d, AG_EINVAL,
                           "Bad request: using: the distance matrix is computed on dense vectors, "
                           "`%.200s` is sparse",
                           m->using_name);
        return ag_fail(d, AG_EINVAL, "Wrong input: Not existing vector name error: %.200s (using)",
                       m->using_name);
    }
    int rc = ag_q__each_in_scope(m->ctx, m->sc, m->filter_json, collect, m);
    if (m->cap == SIZE_MAX)
        return AG_ENOMEM;
    if (rc)
        return rc;
    /* A random sample (partial Fisher-Yates), then in id order. */
    size_t k = AG_MIN(m->sample, m->n);
    by_id_t *s = ag_arena_calloc(m->ctx->arena, k ? k : 1, sizeof(*s));
    uint32_t *sorted = ag_arena_calloc(m->ctx->arena, k ? k : 1, sizeof(uint32_t));
    size_t *row = ag_arena_calloc(m->ctx->arena, k ? k : 1, sizeof(size_t));
    if (!s || !sorted || !row)
        return AG_ENOMEM;
    for (size_t i = 0; i < k; i++) {
        size_t j = i + randombytes_uniform((uint32_t)(m->n - i));
        uint32_t tmp = m->slots[i];
        m->slots[i] = m->slots[j];
        m->slots[j] = tmp;
        s[i] = (by_id_t){m->slots[i], ag_coll_id(c, m->slots[i])};
        sorted[i] = m->slots[i];
    }
    qsort(s, k, sizeof(*s), cmp_by_id);
    qsort(sorted, k, sizeof(uint32_t), ag_q__cmp_u32);
    for (size_t i = 0; i < k; i++) {
        const uint32_t *p = bsearch(&s[i].slot, sorted, k, sizeof(uint32_t), ag_q__cmp_u32);
        row[p - sorted] = i;
    }

    ag_dense_info_t vc;
    ag_coll_dense_info(c, m->vi, &vc);
    ag_search_params_t params = {0};
    params.deadline = m->ctx->deadline;
    size_t lim = AG_MIN(m->limit, k ? k - 1 : 0);
    ag_hit_t *hits = ag_arena_calloc(m->ctx->arena, lim ? lim : 1, sizeof(ag_hit_t));
    json_t *pairs = json_array(), *rows = json_array(), *cols = json_array(),
           *scores = json_array(), *ids = json_array();
    if (!hits || !pairs || !rows || !cols || !scores || !ids) {
        rc = AG_ENOMEM;
        goto done;
    }
    for (size_t i = 0; i < k && rc == 0; i++) {
        if ((rc = ag_qctx_deadline(m->ctx)) != 0)
            break;
        row_accept_t self = {s[i].slot};
        ag_index_filter_t f = {not_self, &self, sorted, k};
        size_t nh = 0;
        if (lim &&
            (rc = ag_index_score_candidates(vc.vs, vc.dist, ag_coll_dense_get(c, m->vi, s[i].slot),
                                            lim, &f, &params, hits, &nh)) != 0) {
            if (rc == AG_ETIMEOUT && (rc = ag_qctx_deadline(m->ctx)) == 0)
                rc = ag_fail(d, AG_ETIMEOUT, "Timeout error: the request ran out of time");
            break;
        }
        for (size_t h = 0; h < nh && rc == 0; h++) {
            if (m->offsets) {
                rc = append(rows, json_integer((json_int_t)i));
                if (rc == 0)
                    rc = append(cols, json_integer(row_of(sorted, row, k, hits[h].slot)));
                if (rc == 0)
                    rc = append(scores, ag_json_f32(hits[h].score));
            } else {
                const ag_point_id_t *b = ag_coll_id(c, hits[h].slot);
                rc =
                    append(pairs, json_pack("{s:o,s:o,s:o}", "a", ag_id_to_json(s[i].id), "b",
                                            ag_id_to_json(b), "score", ag_json_f32(hits[h].score)));
            }
        }
        if (rc == 0 && m->offsets)
            rc = append(ids, ag_id_to_json(s[i].id));
    }
    if (rc == 0)
        m->res = m->offsets ? json_pack("{s:O,s:O,s:O,s:O}", "offsets_row", rows, "offsets_col",
                                        cols, "scores", scores, "ids", ids)
                            : json_pack("{s:O}", "pairs", pairs);
    if (rc == 0 && !m->res)
        rc = AG_ENOMEM;
done:
    json_decref(pairs);
    json_decref(rows);
    json_decref(cols);
    json_decref(scores);
    json_decref(ids);
    return rc;
}

int ag_query_matrix(const ag_qctx_t *ctx, const ag_scope_t *sc, const json_t *filter_json,
                    const char *using_name, size_t sample, size_t limit, bool offsets, json_t **out)
{
    matrix_t m = {.ctx = ctx,
                  .sc = sc,
                  .filter_json = filter_json,
                  .using_name = using_name ? using_name : "",
                  .sample = sample,
                  .limit = limit,
                  .offsets = offsets};
    *out = NULL;
    int rc = ag_coll_read(sc->c, run, &m);
    if (rc) {
        json_decref(m.res);
        return rc;
    }
    *out = m.res;
    return 0;
}
