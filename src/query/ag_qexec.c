/*
 * The executor of parsed queries (ag_qparse.c builds the tree; docs/API.md for the semantics):
 *   resolve point ids used as vectors are read: lookup_from collections first, each under its
 *           own read lock, then this collection under the read lock of the run;
 *   run     under the read lock: evaluate the tree bottom-up, cut offset and limit, render.
 * As in Qdrant, a stage's filter also applies to everything below it, and the ids used as query
 * examples in this collection are excluded from every stage. The row restriction applies at
 * every stage, so a point outside it is never seen, scored or used; another collection read
 * through lookup_from or with_lookup is opened by the caller's callback (ctx->open_other), which
 * authorizes it on its own, and read under the restriction the caller has there.
 */
#include <float.h>
#include <math.h>
#include <sodium.h>
#include <stdio.h>

#include "ag_metrics.h"
#include "query/ag_formula.h"
#include "query/ag_query_int.h"
#include "store/ag_payload_index.h"
#include "json/ag_json.h"

/* Another collection through the caller's authorization (ag_qopen_fn). */
int ag_q__open_other(ag_query_t *rq, const char *name, const char *where, ag_collection_t **out,
                     ag_filter_t **restriction)
{
    *out = NULL;
    *restriction = NULL;
    if (!rq->ctx->open_other)
        return ag_fail(rq->ctx->diag, AG_EFORBIDDEN,
                       "Forbidden: missing permission read:data on collection '%.200s' (%s)", name,
                       where);
    return rq->ctx->open_other(rq->ctx->open_ud, name, where, out, restriction);
}

/* ---- resolving example vectors ------------------------------------------------------------- */

/* Copies the vector of point v->id from src (read lock held) into the arena. The point must be
 * visible to the caller: outside its row restriction in src it does not exist. */
static int resolve_vin(ag_query_t *rq, const ag_stage_t *st, ag_collection_t *src,
                       const ag_filter_t *restriction, ag_vin_t *v)
{
    if (!v->by_id)
        return 0;
    ag_diag_t *d = rq->ctx->diag;
    char id[40], p[AG_QUERY_PATH_LEN];
    ag_id_format(&v->id, id, sizeof(id));
    uint32_t s = ag_coll_find(src, &v->id);
    if (s == UINT32_MAX || !ag_coll_match(src, s, restriction))
        return ag_fail(d, AG_ENOTFOUND, "Not found: No point with id %s found", id);
    const char *name = st->lookup_vec ? st->lookup_vec : st->using_name;
    ag_q__field(p, sizeof(p), st->path, st->lookup_vec ? "lookup_from.vector" : "using");
    if (st->vi >= 0) {
        ag_dense_info_t want, have;
        ag_coll_dense_info(rq->c, st->vi, &want);
        int svi = ag_coll_vector(src, name);
        if (svi < 0)
            return ag_fail(d, AG_EINVAL, "Wrong input: Not existing vector name error: %.200s (%s)",
                           name, p);
        ag_coll_dense_info(src, svi, &have);
        if (have.dim != want.dim)
            return ag_fail(d, AG_EINVAL,
                           "Wrong input: Vector dimension error: expected dim: %u, got %u (%s)",
                           want.dim, have.dim, p);
        if (have.multi && !want.multi)
            return ag_fail(d, AG_EINVAL,
                           "Wrong input: vector \"%.200s\" of point %s is a multivector; `%.200s` "
                           "here takes one vector (%s)",
                           name, id, ag_q__vector_label(st->using_name), p);
        uint32_t rows = 1;
        const float *f = ag_coll_dense_rows(src, svi, s, &rows);
        if (!f)
            return ag_fail(d, AG_ENOTFOUND, "Not found: Vector with name \"%.200s\" for point %s",
                           name, id);
        float *copy = ag_q__alloc(rq, (size_t)want.dim * rows, sizeof(float));
        if (!copy)
            return AG_ENOMEM;
        memcpy(copy, f, sizeof(float) * want.dim * rows);
        for (uint32_t r = 0; r < rows; r++) {
            float *row = copy + (size_t)r * want.dim;
            size_t bad;
            if (want.dist == AG_DIST_COSINE && have.dist != AG_DIST_COSINE)
                ag_vector_normalize(row, want.dim);
            if (want.dtype != have.dtype && ag_dtype_convert(want.dtype, row, want.dim, &bad) != 0)
                return ag_fail(d, AG_EINVAL,
                               "Wrong input: vector \"%.200s\" of point %s does not fit float16 "
                               "(%s)",
                               name, id, p);
        }
        v->dense = copy;
        v->rows = rows;
        return 0;
    }
    int ssi = ag_coll_sparse(src, name);
    if (ssi < 0)
        return ag_fail(d, AG_EINVAL, "Wrong input: Not existing vector name error: %.200s (%s)",
                       name, p);
    const uint32_t *ix;
    const float *vals;
    uint32_t n = 0;
    if (!ag_sparse_get(ag_coll_sparse_index(src, ssi), s, &ix, &vals, &n))
        return ag_fail(d, AG_ENOTFOUND, "Not found: Vector with name \"%.200s\" for point %s", name,
                       id);
    v->sp.indices = ag_q__alloc(rq, n, sizeof(uint32_t));
    v->sp.values = ag_q__alloc(rq, n, sizeof(float));
    if (!v->sp.indices || !v->sp.values)
        return AG_ENOMEM;
    if (n) {
        memcpy(v->sp.indices, ix, n * sizeof(uint32_t));
        memcpy(v->sp.values, vals, n * sizeof(float));
    }
    v->sp.n = n;
    return 0;
}

static int resolve_stage(ag_query_t *rq, ag_stage_t *st, ag_collection_t *src,
                         const ag_filter_t *restriction)
{
    int rc = resolve_vin(rq, st, src, restriction, &st->nearest);
    for (size_t i = 0; rc == 0 && i < st->npos; i++)
        if ((rc = ag_qctx_deadline(rq->ctx)) == 0)
            rc = resolve_vin(rq, st, src, restriction, &st->pos[i]);
    for (size_t i = 0; rc == 0 && i < st->nneg; i++)
        if ((rc = ag_qctx_deadline(rq->ctx)) == 0)
            rc = resolve_vin(rq, st, src, restriction, &st->neg[i]);
    return rc;
}

typedef struct resolve_other {
    ag_query_t *rq;
    ag_stage_t *st;
    const ag_filter_t *restriction;
} resolve_other_t;

static int resolve_other(void *ud, ag_collection_t *lc)
{
    resolve_other_t *ro = ud;
    return resolve_stage(ro->rq, ro->st, lc, ro->restriction);
}

/* Example vectors from other collections, each read under that collection's own lock (never
 * nested inside this collection's). */
static int resolve_lookups(ag_query_t *rq)
{
    for (size_t i = 0; i < rq->nall; i++) {
        ag_stage_t *st = rq->all[i];
        if (!st->lookup_coll)
            continue;
        char p[AG_QUERY_PATH_LEN];
        ag_q__field(p, sizeof(p), st->path, "lookup_from.collection");
        ag_collection_t *lc;
        ag_filter_t *restriction = NULL;
        int rc = ag_q__open_other(rq, st->lookup_coll, p, &lc, &restriction);
        if (rc)
            return rc;
        resolve_other_t ro = {rq, st, restriction};
        rc = ag_coll_read(lc, resolve_other, &ro);
        ag_coll_unref(lc);
        ag_filter_free(restriction);
        if (rc)
            return rc;
    }
    return 0;
}

typedef struct pair {
    uint32_t i;
    float v;
} pair_t;

static int cmp_pair(const void *a, const void *b)
{
    const pair_t *x = a, *y = b;
    return x->i < y->i ? -1 : x->i > y->i;
}

static uint32_t vrows(const ag_vin_t *v)
{
    return v->rows ? v->rows : 1;
}

/* Qdrant's average_vector over multivectors: the rows of every positive example, then the
 * negated rows of every negative one, as one multivector (MaxSim then sums over them). */
static int reco_average_multi(ag_query_t *rq, ag_stage_t *st, uint32_t dim)
{
    size_t total = 0;
    for (size_t i = 0; i < st->npos; i++)
        total += vrows(&st->pos[i]);
    for (size_t i = 0; i < st->nneg; i++)
        total += vrows(&st->neg[i]);
    float *q = ag_q__alloc(rq, total * dim, sizeof(float));
    if (!q)
        return AG_ENOMEM;
    size_t at = 0;
    for (int side = 0; side < 2; side++) {
        const ag_vin_t *list = side ? st->neg : st->pos;
        size_t n = side ? st->nneg : st->npos;
        for (size_t i = 0; i < n; i++) {
            size_t len = (size_t)vrows(&list[i]) * dim;
            for (size_t k = 0; k < len; k++)
                q[at + k] = side ? -list[i].dense[k] : list[i].dense[k];
            at += len;
        }
    }
    st->nearest.dense = q;
    st->nearest.rows = (uint32_t)total;
    return 0;
}

/* Qdrant's average_vector: avg(pos), or avg(pos) + avg(pos) - avg(neg) with negatives. */
static int reco_average(ag_query_t *rq, ag_stage_t *st)
{
    double wpos = (st->nneg ? 2.0 : 1.0) / (double)st->npos;
    double wneg = st->nneg ? -1.0 / (double)st->nneg : 0;
    st->kind = AG_Q_NEAREST;
    memset(&st->nearest, 0, sizeof(st->nearest));
    if (st->vi >= 0) {
        ag_dense_info_t vc;
        ag_coll_dense_info(rq->c, st->vi, &vc);
        uint32_t dim = vc.dim;
        if (vc.multi)
            return reco_average_multi(rq, st, dim);
        float *ap = ag_q__alloc(rq, dim, sizeof(float));
        float *an = ag_q__alloc(rq, dim, sizeof(float));
        if (!ap || !an)
            return AG_ENOMEM;
        for (size_t i = 0; i < st->npos; i++)
            for (uint32_t k = 0; k < dim; k++)
                ap[k] += st->pos[i].dense[k];
        for (size_t i = 0; i < st->nneg; i++)
            for (uint32_t k = 0; k < dim; k++)
                an[k] += st->neg[i].dense[k];
        for (uint32_t k = 0; k < dim; k++) {
            float p = ap[k] / (float)st->npos;
            ap[k] = st->nneg ? p + p - an[k] / (float)st->nneg : p;
        }
        if (vc.dist == AG_DIST_COSINE)
            ag_vector_normalize(ap, dim);
        st->nearest.dense = ap;
        return 0;
    }
    size_t total = 0;
    for (size_t i = 0; i < st->npos; i++)
        total += st->pos[i].sp.n;
    for (size_t i = 0; i < st->nneg; i++)
        total += st->neg[i].sp.n;
    pair_t *pr = ag_q__alloc(rq, total, sizeof(*pr));
    if (!pr)
        return AG_ENOMEM;
    size_t m = 0;
    for (int side = 0; side < 2; side++) {
        const ag_vin_t *list = side ? st->neg : st->pos;
        size_t n = side ? st->nneg : st->npos;
        double w = side ? wneg : wpos;
        for (size_t i = 0; i < n; i++)
            for (uint32_t k = 0; k < list[i].sp.n; k++)
                pr[m++] = (pair_t){list[i].sp.indices[k], (float)(list[i].sp.values[k] * w)};
    }
    qsort(pr, m, sizeof(*pr), cmp_pair);
    uint32_t *ix = ag_q__alloc(rq, m, sizeof(uint32_t));
    float *vals = ag_q__alloc(rq, m, sizeof(float));
    if (!ix || !vals)
        return AG_ENOMEM;
    uint32_t n = 0;
    for (size_t i = 0; i < m; i++) {
        if (n > 0 && ix[n - 1] == pr[i].i) {
            vals[n - 1] += pr[i].v;
        } else {
            ix[n] = pr[i].i;
            vals[n] = pr[i].v;
            n++;
        }
    }
    st->nearest.sp = (ag_sparse_vec_t){ix, vals, n};
    return 0;
}

/* Under this collection's read lock: its example vectors, the average_vector queries, order_by
 * (which reads the payload schema) and the slots to exclude. */
static int resolve_local(ag_query_t *rq)
{
    int rc;
    for (size_t i = 0; i < rq->nall; i++) {
        ag_stage_t *st = rq->all[i];
        if (!st->lookup_coll && (rc = resolve_stage(rq, st, rq->c, rq->ctx->restriction)) != 0)
            return rc;
        if (st->kind == AG_Q_RECO && st->strategy == AG_RECO_AVERAGE &&
            (rc = reco_average(rq, st)) != 0)
            return rc;
        if (st->kind == AG_Q_ORDER_BY) {
            char p[AG_QUERY_PATH_LEN];
            ag_q__field(p, sizeof(p), st->path, "query");
            rc = ag_order_by_parse(st->order_by_json, &st->ob, rq->ctx->diag);
            if (rc == 0)
                rc = ag_order_by_check(rq->c, &st->ob, rq->ctx->diag);
            if ((rc = ag_q__prefixed(rq, p, rc)) != 0)
                return rc;
        }
    }
    if (rq->nexcl_ids) {
        if (!(rq->excl = ag_q__alloc(rq, rq->nexcl_ids, sizeof(uint32_t))))
            return AG_ENOMEM;
        for (size_t i = 0; i < rq->nexcl_ids; i++) {
            uint32_t s = ag_coll_find(rq->c, &rq->excl_ids[i]);
            if (s != UINT32_MAX)
                rq->excl[rq->nexcl++] = s;
        }
        qsort(rq->excl, rq->nexcl, sizeof(uint32_t), ag_q__cmp_u32);
    }
    return 0;
}

/* ---- running stages (read lock held) ------------------------------------------------------- */

/* A slot a stage may return: not an example, inside the stage's scope (its filter and the row
 * restriction) and inside every ancestor's filter (Qdrant propagates filters down). Read-only,
 * so safe from the pool threads of a parallel scan. */
static bool stage_accept(const void *ud, uint32_t slot)
{
    const ag_stage_t *st = ud;
    const ag_query_t *rq = st->rq;
    if (rq->nexcl && bsearch(&slot, rq->excl, rq->nexcl, sizeof(uint32_t), ag_q__cmp_u32))
        return false;
    if (!ag_scope_match(&st->scope, slot))
        return false;
    for (const ag_stage_t *a = st->parent; a; a = a->parent)
        if (a->scope.user && !ag_coll_match(rq->c, slot, a->scope.user))
            return false;
    return true;
}

/* cand is NULL for the whole collection, else the sorted union of the prefetches (possibly
 * empty, which then means no slot at all). */
static void stage_filter(const ag_stage_t *st, const uint32_t *cand, size_t ncand,
                         ag_index_filter_t *f)
{
    f->candidates = cand;
    f->n_candidates = ncand;
    if (!st->parent && st->rq->nexcl == 0) {
        f->accept = ag_scope_accept;
        f->ud = &st->scope;
    } else {
        f->accept = stage_accept;
        f->ud = st;
    }
}

static int accepted_slots(ag_query_t *rq, const ag_index_filter_t *f, uint32_t **out, size_t *n)
{
    uint32_t nslots = ag_coll_nslots(rq->c);
    size_t cap = f->candidates ? f->n_candidates : nslots;
    uint32_t *s = ag_q__alloc(rq, cap, sizeof(uint32_t));
    if (!s)
        return AG_ENOMEM;
    size_t k = 0;
    if (f->candidates) {
        for (size_t i = 0; i < f->n_candidates; i++) {
            uint32_t slot = f->candidates[i];
            if ((i == 0 || f->candidates[i - 1] != slot) && f->accept(f->ud, slot))
                s[k++] = slot;
        }
    } else {
        for (uint32_t slot = 0; slot < nslots; slot++)
            if (f->accept(f->ud, slot))
                s[k++] = slot;
    }
    *out = s;
    *n = k;
    return 0;
}

/* Is the stage's sparse vector declared with Qdrant's "modifier": "idf"? (lock held) */
static bool sparse_idf(ag_query_t *rq, const ag_stage_t *st)
{
    const json_t *cfg =
        json_object_get(json_object_get(ag_coll_params(rq->c), "sparse_vectors"), st->using_name);
    const json_t *m = json_object_get(cfg, "modifier");
    return json_is_string(m) && strcmp(json_string_value(m), "idf") == 0;
}

/* A multivector: MaxSim over the points holding one, exactly (index/ag_multivec.h), through the
 * same candidate path as a dense vector: prefetched candidates, or the few of a selective
 * indexed equality, each still passing the stage's filter and the row restriction. */
static int score_multi(ag_query_t *rq, const ag_stage_t *st, const ag_dense_info_t *vc, size_t k,
                       const ag_index_filter_t *f, ag_ranked_t *out)
{
    size_t cap = AG_MIN(k, (size_t)ag_multivec_count(vc->mv));
    if (f->candidates)
        cap = AG_MIN(cap, f->n_candidates);
    if (cap == 0)
        return 0;
    if (!(out->h = ag_q__alloc(rq, cap, sizeof(ag_hit_t))))
        return AG_ENOMEM;
    ag_index_filter_t use = *f;
    uint32_t *cand;
    size_t ncand;
    if (!f->candidates && ag_scope_candidates_max(&st->scope, rq->ctx->arena, st->filter_json,
                                                  AG_PAYLOAD_CANDIDATES_MAX, &cand, &ncand)) {
        use.candidates = cand;
        use.n_candidates = ncand;
    }
    return ag_multivec_search(vc->mv, vc->dist, st->nearest.dense, vrows(&st->nearest), cap, &use,
                              &st->params, out->h, &out->n);
}

static int score_nearest_in(ag_query_t *rq, const ag_stage_t *st, size_t k,
                            const ag_index_filter_t *f, ag_ranked_t *out)
{
    size_t cap;
    if (st->vi >= 0) {
        ag_dense_info_t vc;
        ag_coll_dense_info(rq->c, st->vi, &vc);
        out->lower_better = !ag_distance_higher_is_better(vc.dist);
        if (vc.multi)
            return score_multi(rq, st, &vc, k, f, out);
        cap = AG_MIN(k, (size_t)ag_vecstore_count(vc.vs));
        if (f->candidates)
            cap = AG_MIN(cap, f->n_candidates);
        if (cap == 0)
            return 0;
        if (!(out->h = ag_q__alloc(rq, cap, sizeof(ag_hit_t))))
            return AG_ENOMEM;
        /* Rescoring prefetched candidates is always exact; the index serves the rest. */
        if (f->candidates)
            return ag_index_score_candidates(vc.vs, vc.dist, st->nearest.dense, cap, f, &st->params,
                                             out->h, &out->n);
        /* The filtered-search plan (docs/ARCHITECTURE.md "Filtered search"): when the payload
         * indexes estimate that the filter or the row restriction / tenant scope (whichever is
         * smaller) selects at most full_scan_threshold points, score those candidates exactly
         * — every candidate still passes f->accept: the whole filter AND the row restriction
         * (ag_scope_match, also inside stage_accept). Otherwise the graph walks with that
         * predicate (the index's own plan, index/ag_hnsw.h). */
        uint32_t *cand;
        size_t ncand;
        if (!st->params.exact &&
            ag_scope_candidates_max(&st->scope, rq->ctx->arena, st->filter_json,
                                    ag_coll_full_scan_points(rq->c, st->vi), &cand, &ncand)) {
            ag_index_filter_t narrowed = *f;
            narrowed.candidates = cand;
            narrowed.n_candidates = ncand;
            ag_metrics_add(AG_M_PLAN_CANDIDATES, 1);
            return ag_index_score_candidates(vc.vs, vc.dist, st->nearest.dense, cap, &narrowed,
                                             &st->params, out->h, &out->n);
        }
        if (st->scope.user || st->scope.restriction)
            ag_metrics_add(AG_M_PLAN_GRAPH, 1);
        /* No filter, no row restriction, no example to exclude: no predicate per visited node.
         * The index returns only slots whose vector is present, and the store clears a point's
         * vectors before it frees the slot, so every such slot is a live point
         * (docs/ARCHITECTURE.md "Query layer"). */
        ag_index_filter_t open = *f;
        if (f->accept == ag_scope_accept && !st->scope.user && !st->scope.restriction)
            open.accept = NULL;
        return ag_index_search(vc.index, st->nearest.dense, cap, &open, &st->params, out->h,
                               &out->n);
    }
    const ag_sparse_t *sp = ag_coll_sparse_index(rq->c, st->si);
    const float *qv = st->nearest.sp.values;
    if (sparse_idf(rq, st)) {
        /* Qdrant's IDF modifier: each query weight times ln(1 + (N - n + 0.5) / (n + 0.5)), N the
         * points holding this vector, n those holding the dimension (docs/COMPATIBILITY.md). */
        float *w = ag_q__alloc(rq, st->nearest.sp.n ? st->nearest.sp.n : 1, sizeof(float));
        if (!w)
            return AG_ENOMEM;
        double N = (double)ag_sparse_count(sp);
        for (uint32_t i = 0; i < st->nearest.sp.n; i++) {
            double df = (double)ag_sparse_df(sp, st->nearest.sp.indices[i]);
            w[i] =
                (float)((double)st->nearest.sp.values[i] * log(1.0 + (N - df + 0.5) / (df + 0.5)));
        }
        qv = w;
    }
    cap = AG_MIN(k, (size_t)ag_sparse_count(sp));
    if (f->candidates)
        cap = AG_MIN(cap, f->n_candidates);
    if (cap == 0 || st->nearest.sp.n == 0)
        return 0;
    if (!(out->h = ag_q__alloc(rq, cap, sizeof(ag_hit_t))))
        return AG_ENOMEM;
    return ag_sparse_search(sp, st->nearest.sp.indices, qv, st->nearest.sp.n, cap, f, &st->params,
                            out->h, &out->n);
}

/* An exact scan that ran out of time reports AG_ETIMEOUT bare; the answer names the timeout. */
static int score_nearest(ag_query_t *rq, const ag_stage_t *st, size_t k, const ag_index_filter_t *f,
                         ag_ranked_t *out)
{
    int rc = score_nearest_in(rq, st, k, f, out);
    if (rc == AG_ETIMEOUT && (rc = ag_qctx_deadline(rq->ctx)) == 0)
        rc = ag_fail(rq->ctx->diag, AG_ETIMEOUT, "Timeout error: the request ran out of time");
    return rc;
}

/* Qdrant's similarity inside custom scores: dot for Cosine/Dot, the negated squared L2 for
 * Euclid, the negated L1 for Manhattan (higher is better throughout). */
static float similarity(ag_distance_t dist, const float *a, const float *b, uint32_t dim)
{
    switch (dist) {
    case AG_DIST_EUCLID:
        return -ag_l2sq_f32(a, b, dim);
    case AG_DIST_MANHATTAN:
        return -ag_l1_f32(a, b, dim);
    case AG_DIST_COSINE:
    case AG_DIST_DOT:
        break;
    }
    return ag_dot_f32(a, b, dim);
}

static float fast_sigmoid(float x)
{
    return x / (1.0f + fabsf(x));
}

static float scaled_fast_sigmoid(float x)
{
    return 0.5f * (fast_sigmoid(x) + 1.0f);
}

/* best_score: sigmoid(best positive) if it beats the best negative, else -sigmoid(best
 * negative); sum_scores: sum over positives minus sum over negatives (Qdrant's RecoQuery). */
static bool reco_score(const ag_stage_t *st, const ag_dense_info_t *vc, const ag_sparse_t *sp,
                       uint32_t slot, float *out)
{
    float maxp = -INFINITY, maxn = -INFINITY, sump = 0, sumn = 0;
    const float *x = NULL;
    const uint32_t *xi = NULL;
    const float *xv = NULL;
    uint32_t xn = 0, xr = 1;
    if (vc) {
        x = vc->multi ? ag_multivec_get(vc->mv, slot, &xr) : ag_vecstore_get(vc->vs, slot);
        if (!x)
            return false;
    } else if (!ag_sparse_get(sp, slot, &xi, &xv, &xn)) {
        return false;
    }
#define VIN_SIM(v)                                                                                 \
    (vc ? (vc->multi ? ag_maxsim(vc->dist, (v)->dense, vrows(v), x, xr, vc->dim)                   \
                     : similarity(vc->dist, x, (v)->dense, vc->dim))                               \
        : ag_sparse_dot(xi, xv, xn, (v)->sp.indices, (v)->sp.values, (v)->sp.n))
    if (st->strategy == AG_RECO_DISCOVER || st->strategy == AG_RECO_CONTEXT) {
        /* Qdrant's scores: context sums min(0, sigmoid(sim(pos) - sim(neg) - eps)) over the
         * pairs; discovery ranks by pairs won (+1 closer to positive, -1 otherwise), then by the
         * target's scaled sigmoid similarity. */
        float total = 0;
        int rank = 0;
        for (size_t i = 0; i < st->npos; i++) {
            float d = VIN_SIM(&st->pos[i]) - VIN_SIM(&st->neg[i]);
            if (st->strategy == AG_RECO_CONTEXT) {
                float l = fast_sigmoid(d - FLT_EPSILON);
                total += l < 0 ? l : 0;
            } else {
                rank += d > 0 ? 1 : -1;
            }
        }
        *out = st->strategy == AG_RECO_CONTEXT
                   ? total
                   : (float)rank + scaled_fast_sigmoid(VIN_SIM(&st->nearest));
        return true;
    }
    for (int side = 0; side < 2; side++) {
        const ag_vin_t *list = side ? st->neg : st->pos;
        size_t n = side ? st->nneg : st->npos;
        for (size_t i = 0; i < n; i++) {
            float s = VIN_SIM(&list[i]);
            if (side) {
                maxn = s > maxn ? s : maxn;
                sumn += s;
            } else {
                maxp = s > maxp ? s : maxp;
                sump += s;
            }
        }
    }
#undef VIN_SIM
    if (st->strategy == AG_RECO_SUM)
        *out = sump - sumn;
    else
        *out = maxp > maxn ? scaled_fast_sigmoid(maxp) : -scaled_fast_sigmoid(maxn);
    return true;
}

static int score_reco(ag_query_t *rq, const ag_stage_t *st, size_t k, const ag_index_filter_t *f,
                      ag_ranked_t *out)
{
    if (st->si >= 0 && sparse_idf(rq, st))
        return ag_fail(rq->ctx->diag, AG_EINVAL,
                       "Bad request: best_score, sum_scores, discovery and context scoring are "
                       "not supported on `%.200s`, a sparse vector with the idf modifier (use "
                       "average_vector)",
                       st->using_name);
    uint32_t *slots;
    size_t n;
    int rc = accepted_slots(rq, f, &slots, &n);
    if (rc)
        return rc;
    size_t cap = AG_MIN(k, n);
    if (cap == 0)
        return 0;
    if (!(out->h = ag_q__alloc(rq, cap, sizeof(ag_hit_t))))
        return AG_ENOMEM;
    ag_dense_info_t info, *vc = NULL;
    const ag_sparse_t *sp = NULL;
    if (st->vi >= 0) {
        ag_coll_dense_info(rq->c, st->vi, &info);
        vc = &info;
    } else {
        sp = ag_coll_sparse_index(rq->c, st->si);
    }
    ag_topk_t t;
    ag_topk_init(&t, out->h, cap);
    for (size_t i = 0; i < n; i++) {
        /* Examples x points: the clock is read every few slots (times the examples). */
        if (i % (AG_QUERY_DEADLINE_EVERY / 8) == 0 && (rc = ag_qctx_deadline(rq->ctx)) != 0)
            return rc;
        float s;
        if (!reco_score(st, vc, sp, slots[i], &s))
            continue;
        if (st->params.has_threshold && !(s >= st->params.score_threshold))
            continue;
        ag_topk_push(&t, slots[i], s);
    }
    out->n = ag_topk_finish(&t);
    return 0;
}

static int order_stage(ag_query_t *rq, const ag_stage_t *st, size_t k, const ag_index_filter_t *f,
                       ag_ranked_t *out)
{
    uint32_t *slots;
    size_t n, m;
    ag_ordered_t *o;
    int rc = accepted_slots(rq, f, &slots, &n);
    if (rc || (rc = ag_order_slots(rq->ctx->arena, rq->c, slots, n, &st->ob, false, &o, &m)) != 0)
        return rc;
    size_t cap = AG_MIN(k, m);
    out->h = ag_q__alloc(rq, cap, sizeof(ag_hit_t));
    out->ov = ag_q__alloc(rq, cap, sizeof(double));
    if (!out->h || !out->ov)
        return AG_ENOMEM;
    for (size_t i = 0; i < cap; i++) {
        out->h[i] = (ag_hit_t){o[i].slot, 0};
        out->ov[i] = o[i].value;
    }
    out->n = cap;
    return 0;
}

static int sample_stage(ag_query_t *rq, size_t k, const ag_index_filter_t *f, ag_ranked_t *out)
{
    uint32_t *slots;
    size_t n;
    int rc = accepted_slots(rq, f, &slots, &n);
    if (rc)
        return rc;
    size_t cap = AG_MIN(k, n);
    if (!(out->h = ag_q__alloc(rq, cap, sizeof(ag_hit_t))))
        return AG_ENOMEM;
    for (size_t i = 0; i < cap; i++) {
        size_t j = i + randombytes_uniform((uint32_t)(n - i));
        uint32_t tmp = slots[i];
        slots[i] = slots[j];
        slots[j] = tmp;
        out->h[i] = (ag_hit_t){slots[i], 0};
    }
    out->n = cap;
    return 0;
}

static int cmp_ordered_id(const void *a, const void *b)
{
    const ag_ordered_t *x = a, *y = b;
    return ag_id_cmp(x->id, y->id);
}

/* No query: points in id order, score 0, as Qdrant. */
static int id_order_stage(ag_query_t *rq, size_t k, const ag_index_filter_t *f, ag_ranked_t *out)
{
    uint32_t *slots;
    size_t n;
    int rc = accepted_slots(rq, f, &slots, &n);
    if (rc)
        return rc;
    ag_ordered_t *o = ag_q__alloc(rq, n, sizeof(*o));
    if (!o)
        return AG_ENOMEM;
    for (size_t i = 0; i < n; i++)
        o[i] = (ag_ordered_t){slots[i], 0, ag_coll_id(rq->c, slots[i])};
    qsort(o, n, sizeof(*o), cmp_ordered_id);
    size_t cap = AG_MIN(k, n);
    if (!(out->h = ag_q__alloc(rq, cap, sizeof(ag_hit_t))))
        return AG_ENOMEM;
    for (size_t i = 0; i < cap; i++)
        out->h[i] = (ag_hit_t){o[i].slot, 0};
    out->n = cap;
    return 0;
}

/*
 * Fusion of the prefetch lists, as Qdrant (ag_query.h):
 *  rrf:  a point scores sum over lists of 1 / ((rank + 1) / weight + k - 1), rank from 0, which
 *        is 1 / (rank + k) with the default weight 1 (k = 2 unless {"rrf": {"k": ...}});
 *  dbsf: each list's scores are mapped to [mean - 3 sd, mean + 3 sd] -> [0, 1] (sample standard
 *        deviation; 0.5 for a single point or a zero spread), then summed per point. Distances
 *        (Euclid, Manhattan) are negated first so that better is always higher.
 */
int ag_query_fuse(ag_arena_t *arena, ag_qkind_t kind, uint32_t rrf_k, const float *weights,
                  const ag_ranked_t *lists, size_t nlists, bool has_threshold, float threshold,
                  size_t k, ag_ranked_t *out)
{
    memset(out, 0, sizeof(*out));
    size_t total = 0;
    for (size_t i = 0; i < nlists; i++)
        total += lists[i].n;
    ag_hit_t *e = ag_arena_calloc(arena, total ? total : 1, sizeof(ag_hit_t));
    if (!e)
        return AG_ENOMEM;
    size_t m = 0;
    for (size_t i = 0; i < nlists; i++) {
        const ag_ranked_t *l = &lists[i];
        if (kind == AG_Q_RRF) {
            float w = weights ? weights[i] : 1.0f;
            for (size_t r = 0; r < l->n; r++) {
                float s = w <= 0 ? 0 : 1.0f / ((float)(r + 1) / w + (float)rrf_k - 1.0f);
                e[m++] = (ag_hit_t){l->h[r].slot, s};
            }
            continue;
        }
        double mean = 0, agg = 0;
        for (size_t r = 0; r < l->n; r++) {
            double x = l->lower_better ? -l->h[r].score : l->h[r].score;
            double old = x - mean;
            mean += old / (double)(r + 1);
            agg += old * (x - mean);
        }
        double sd = l->n > 1 ? sqrt(agg / (double)(l->n - 1)) : 0;
        double lo = mean - 3 * sd, hi = mean + 3 * sd;
        for (size_t r = 0; r < l->n; r++) {
            double x = l->lower_better ? -l->h[r].score : l->h[r].score;
            float s = (l->n < 2 || lo == hi) ? 0.5f : (float)((x - lo) / (hi - lo));
            e[m++] = (ag_hit_t){l->h[r].slot, s};
        }
    }
    qsort(e, m, sizeof(*e), ag_q__cmp_hit_slot);
    size_t u = 0;
    for (size_t i = 0; i < m; i++) {
        if (u > 0 && e[u - 1].slot == e[i].slot)
            e[u - 1].score += e[i].score;
        else
            e[u++] = e[i];
    }
    size_t kept = 0;
    for (size_t i = 0; i < u; i++)
        if (!has_threshold || e[i].score >= threshold)
            e[kept++] = e[i];
    qsort(e, kept, sizeof(*e), ag_q__cmp_hit_score);
    out->h = e;
    out->n = AG_MIN(k, kept);
    return 0;
}

static int union_slots(ag_query_t *rq, const ag_ranked_t *lists, size_t n, uint32_t **out,
                       size_t *nout)
{
    size_t total = 0;
    for (size_t i = 0; i < n; i++)
        total += lists[i].n;
    uint32_t *s = ag_q__alloc(rq, total, sizeof(uint32_t));
    if (!s)
        return AG_ENOMEM;
    size_t m = 0;
    for (size_t i = 0; i < n; i++)
        for (size_t r = 0; r < lists[i].n; r++)
            s[m++] = lists[i].h[r].slot;
    qsort(s, m, sizeof(uint32_t), ag_q__cmp_u32);
    size_t u = 0;
    for (size_t i = 0; i < m; i++)
        if (u == 0 || s[u - 1] != s[i])
            s[u++] = s[i];
    *out = s;
    *nout = u;
    return 0;
}

/*
 * Maximal marginal relevance: the stage's candidates_limit nearest points (at least k), then k of
 * them picked greedily, each maximising (1 - diversity) * sim(query, p) - diversity * max sim(p,
 * picked) with the similarity of the vector's distance (higher is better). The points keep their
 * search scores; the order is the order of picking.
 */
static int mmr_stage(ag_query_t *rq, const ag_stage_t *st, size_t k, const ag_index_filter_t *f,
                     ag_ranked_t *out)
{
    ag_ranked_t c;
    memset(&c, 0, sizeof(c));
    int rc = score_nearest(rq, st, AG_MAX(k, st->mmr_candidates), f, &c);
    if (rc || c.n == 0) {
        *out = c;
        return rc;
    }
    ag_dense_info_t info;
    ag_coll_dense_info(rq->c, st->vi, &info);
    size_t n = c.n, m = AG_MIN(k, n);
    const float **v = ag_q__alloc(rq, n, sizeof(*v));
    uint32_t *vr = ag_q__alloc(rq, n, sizeof(uint32_t));
    float *rel = ag_q__alloc(rq, n, sizeof(float)), *near = ag_q__alloc(rq, n, sizeof(float));
    bool *taken = ag_q__alloc(rq, n, sizeof(bool));
    ag_hit_t *h = ag_q__alloc(rq, m ? m : 1, sizeof(ag_hit_t));
    if (!v || !vr || !rel || !near || !taken || !h)
        return AG_ENOMEM;
    /* Similarities by MaxSim, which is the plain similarity for one row each (multivectors). */
    for (size_t i = 0; i < n; i++) {
        v[i] = ag_coll_dense_rows(rq->c, st->vi, c.h[i].slot, &vr[i]);
        rel[i] = v[i] ? ag_maxsim(info.dist, st->nearest.dense, vrows(&st->nearest), v[i], vr[i],
                                  info.dim)
                      : -INFINITY;
        near[i] = -INFINITY;
        taken[i] = false;
    }
    float lambda = 1.0f - st->mmr_diversity;
    for (size_t r = 0; r < m; r++) {
        if ((rc = ag_qctx_deadline(rq->ctx)) != 0)
            return rc;
        size_t best = n;
        float best_s = -INFINITY;
        for (size_t i = 0; i < n; i++) {
            if (taken[i] || !v[i])
                continue;
            float s = r == 0 ? rel[i] : lambda * rel[i] - (1.0f - lambda) * near[i];
            if (best == n || s > best_s) {
                best = i;
                best_s = s;
            }
        }
        if (best == n)
            break;
        taken[best] = true;
        h[out->n++] = c.h[best];
        for (size_t i = 0; i < n; i++) {
            if (taken[i] || !v[i])
                continue;
            float s = ag_maxsim(info.dist, v[i], vr[i], v[best], vr[best], info.dim);
            near[i] = s > near[i] ? s : near[i];
        }
    }
    out->h = h;
    out->lower_better = c.lower_better;
    return 0;
}

/* ---- formula rescoring ----------------------------------------------------------------------- */

typedef struct formula_point {
    const ag_collection_t *c;
    uint32_t slot;
} formula_point_t;

static bool formula_cond(void *ud, const ag_filter_t *f)
{
    const formula_point_t *p = ud;
    return ag_coll_match(p->c, p->slot, f);
}

/* The score a point has in a prefetch list sorted by slot, NAN when it is not in it. */
static double score_in(const ag_ranked_t *bys, uint32_t slot)
{
    size_t lo = 0, hi = bys->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (bys->h[mid].slot < slot)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < bys->n && bys->h[lo].slot == slot ? (double)bys->h[lo].score : NAN;
}

/*
 * The points of the prefetches that pass this stage's filter, the row restriction and every
 * ancestor's filter (the same accept as every other stage: a formula reads the payload of no
 * other point), each scored by the formula with its scores in the prefetches ($score[i]), best k
 * kept, score_threshold applied to the formula's value.
 */
static int formula_stage(ag_query_t *rq, const ag_stage_t *st, const ag_ranked_t *lists, size_t k,
                         const ag_index_filter_t *f, ag_ranked_t *out)
{
    uint32_t *slots;
    size_t n;
    int rc = accepted_slots(rq, f, &slots, &n);
    if (rc)
        return rc;
    ag_ranked_t *bys = ag_q__alloc(rq, st->npre, sizeof(*bys));
    double *scores = ag_q__alloc(rq, st->npre, sizeof(double));
    ag_hit_t *h = ag_q__alloc(rq, n, sizeof(ag_hit_t));
    if (!bys || !scores || !h)
        return AG_ENOMEM;
    for (size_t i = 0; i < st->npre; i++) {
        bys[i].n = lists[i].n;
        if (!(bys[i].h = ag_q__alloc(rq, lists[i].n, sizeof(ag_hit_t))))
            return AG_ENOMEM;
        memcpy(bys[i].h, lists[i].h, lists[i].n * sizeof(ag_hit_t));
        qsort(bys[i].h, bys[i].n, sizeof(ag_hit_t), ag_q__cmp_hit_slot);
    }
    size_t m = 0;
    for (size_t j = 0; j < n; j++) {
        if (j % 256 == 0 && (rc = ag_qctx_deadline(rq->ctx)) != 0)
            return rc;
        for (size_t i = 0; i < st->npre; i++)
            scores[i] = score_in(&bys[i], slots[j]);
        formula_point_t pt = {rq->c, slots[j]};
        json_t *pl = ag_coll_payload_json(rq->c, slots[j]);
        if (!pl)
            return AG_ENOMEM;
        ag_formula_env_t env = {scores, st->npre, pl, formula_cond, &pt};
        double v;
        rc = ag_formula_eval(st->formula, &env, &v, rq->ctx->diag);
        json_decref(pl);
        if (rc)
            return rc;
        float s = (float)v;
        if (!isfinite(s))
            return ag_fail(rq->ctx->diag, AG_EINVAL,
                           "Bad request: formula: the score %g does not fit a float32", v);
        if (!st->params.has_threshold || s >= st->params.score_threshold)
            h[m++] = (ag_hit_t){slots[j], s};
    }
    qsort(h, m, sizeof(ag_hit_t), ag_q__cmp_hit_score);
    out->h = h;
    out->n = AG_MIN(k, m);
    return 0;
}

/* The best k of a stage. Prefetches run once per request (their limits are fixed). */
int ag_q__run_stage(ag_query_t *rq, ag_stage_t *st, size_t k, ag_ranked_t *out)
{
    memset(out, 0, sizeof(*out));
    int rc = ag_qctx_deadline(rq->ctx);
    if (rc)
        return rc;
    uint32_t *cand = NULL;
    size_t ncand = 0;
    ag_ranked_t *lists = NULL;
    if (st->npre) {
        lists = ag_q__alloc(rq, st->npre, sizeof(*lists));
        if (!lists)
            return AG_ENOMEM;
        for (size_t i = 0; i < st->npre; i++) {
            ag_stage_t *p = st->pre[i];
            if (!p->cached) {
                if ((rc = ag_q__run_stage(rq, p, p->limit, &p->res)) != 0)
                    return rc;
                p->cached = true;
            }
            lists[i] = p->res;
        }
        if (st->kind == AG_Q_RRF || st->kind == AG_Q_DBSF)
            return ag_query_fuse(rq->ctx->arena, st->kind, st->rrf_k, st->weights, lists, st->npre,
                                 st->params.has_threshold, st->params.score_threshold, k, out);
        if ((rc = union_slots(rq, lists, st->npre, &cand, &ncand)) != 0)
            return rc;
    }
    ag_index_filter_t f;
    stage_filter(st, cand, ncand, &f);
    switch (st->kind) {
    case AG_Q_NEAREST:
        return st->mmr ? mmr_stage(rq, st, k, &f, out) : score_nearest(rq, st, k, &f, out);
    case AG_Q_RECO:
        return score_reco(rq, st, k, &f, out);
    case AG_Q_ORDER_BY:
        return order_stage(rq, st, k, &f, out);
    case AG_Q_SAMPLE:
        return sample_stage(rq, k, &f, out);
    case AG_Q_NONE:
        return id_order_stage(rq, k, &f, out);
    case AG_Q_FORMULA:
        return formula_stage(rq, st, lists, k, &f, out);
    case AG_Q_RRF:
    case AG_Q_DBSF:
        break;
    }
    return ag_fail(rq->ctx->diag, AG_EINTERNAL, "fusion stage without prefetches");
}

/* ---- rendering ----------------------------------------------------------------------------- */

json_t *ag_q__render_hit(const ag_query_t *rq, const ag_ranked_t *r, size_t i)
{
    json_t *p =
        ag_render_point(rq->c, r->h[i].slot, &rq->ps, rq->wv, rq->which, true, r->h[i].score);
    if (p && r->ov)
        json_object_set_new(p, "order_value", ag_order_value_json(r->ov[i]));
    return p;
}

static int run_list(ag_query_t *rq, json_t **out)
{
    size_t offset = rq->offset;
    /* Qdrant ignores the offset of a random sample without prefetches (the order is unstable). */
    if (rq->root->kind == AG_Q_SAMPLE && rq->root->npre == 0)
        offset = 0;
    ag_ranked_t r;
    int rc = ag_q__run_stage(rq, rq->root, offset + rq->limit, &r);
    if (rc)
        return rc;
    json_t *arr = json_array();
    if (!arr)
        return AG_ENOMEM;
    for (size_t i = offset; i < r.n; i++) {
        json_t *p = ag_q__render_hit(rq, &r, i);
        if (!p || json_array_append_new(arr, p) != 0) {
            json_decref(arr);
            return AG_ENOMEM;
        }
    }
    *out = arr;
    return 0;
}

/* ---- the whole request --------------------------------------------------------------------- */

typedef struct run_locked {
    ag_query_t *rq;
    json_t *res;
} run_locked_t;

/* Under this collection's read lock: what resolve_local prepares, then the stage tree. */
static int run_locked(void *ud, ag_collection_t *c)
{
    AG_UNUSED(c);
    run_locked_t *r = ud;
    int rc = resolve_local(r->rq);
    if (rc == 0)
        rc = r->rq->groups ? ag_q__run_groups(r->rq, &r->res) : run_list(r->rq, &r->res);
    return rc;
}

int ag_query_run(ag_query_t *rq, json_t **out)
{
    run_locked_t r = {rq, NULL};
    int rc = resolve_lookups(rq);
    if (rc == 0)
        rc = ag_coll_read(rq->c, run_locked, &r);
    json_t *res = r.res;
    if (rc == 0 && rq->groups && rq->wl_coll)
        rc = ag_q__fill_lookups(rq, res);
    if (rc) {
        json_decref(res);
        return rc;
    }
    if (rq->groups)
        *out = json_pack("{s:o}", "groups", res);
    else if (rq->api == AG_QAPI_QUERY)
        *out = json_pack("{s:o}", "points", res);
    else
        *out = res;
    return *out ? 0 : AG_ENOMEM;
}

/* ---- the direct answer of a simple search -------------------------------------------------- */

typedef struct run_text {
    ag_query_t *rq;
    ag_jw_t *w;
} run_text_t;

/* One hit as ag_render_point builds it, keys in its order; a payload or vectors the tree would
 * leave out (NULL) are left out here too. */
static void write_hit(const ag_query_t *rq, const ag_hit_t *h, ag_jw_t *w)
{
    const ag_point_id_t *id = ag_coll_id(rq->c, h->slot);
    ag_jw_lit(w, "{\"id\":");
    if (id->kind == AG_ID_NUM) {
        ag_jw_u64(w, id->num);
    } else {
        char buf[40];
        ag_id_format(id, buf, sizeof(buf));
        ag_jw_lit(w, "\"");
        ag_jw_lit(w, buf);
        ag_jw_lit(w, "\"");
    }
    ag_jw_lit(w, ",\"version\":0,\"score\":");
    ag_jw_f32(w, h->score);
    json_t *pl = rq->ps.enabled ? ag_coll_payload_json(rq->c, h->slot) : json_null();
    if (pl) {
        ag_jw_lit(w, ",\"payload\":");
        ag_jw_json(w, pl);
        json_decref(pl);
    }
    if (rq->wv) {
        json_t *v = ag_coll_vectors_json(rq->c, h->slot, rq->which);
        if (v) {
            ag_jw_lit(w, ",\"vector\":");
            ag_jw_json(w, v);
            json_decref(v);
        }
    } else {
        ag_jw_lit(w, ",\"vector\":null");
    }
    ag_jw_lit(w, "}");
}

static int run_text_locked(void *ud, ag_collection_t *c)
{
    AG_UNUSED(c);
    run_text_t *t = ud;
    ag_query_t *rq = t->rq;
    int rc = resolve_local(rq);
    ag_ranked_t r;
    if (rc == 0)
        rc = ag_q__run_stage(rq, rq->root, rq->offset + rq->limit, &r);
    if (rc)
        return rc;
    /* The hits' slots are cold (the walk does not read them): ask for all of them before writing
     * the first, so their cache misses overlap instead of costing one after another (~3 % of a
     * REST search's server CPU when taken in turn; docs/BENCHMARKS.md "Server CPU per search
     * request"). */
    for (size_t i = rq->offset; i < r.n; i++)
        __builtin_prefetch(ag_coll_id(rq->c, r.h[i].slot));
    ag_jw_lit(t->w, rq->api == AG_QAPI_QUERY ? "{\"points\":[" : "[");
    for (size_t i = rq->offset; i < r.n; i++) {
        if (i > rq->offset)
            ag_jw_lit(t->w, ",");
        write_hit(rq, &r.h[i], t->w);
    }
    ag_jw_lit(t->w, rq->api == AG_QAPI_QUERY ? "]}" : "]");
    return t->w->oom ? AG_ENOMEM : 0;
}

int ag_query_run_text(ag_query_t *rq, ag_jw_t *w)
{
    run_text_t t = {rq, w};
    return ag_coll_read(rq->c, run_text_locked, &t);
}
