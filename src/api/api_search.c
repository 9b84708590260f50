/*
 * Search, query, recommend, and their batch and groups forms (docs/API.md), with Qdrant's
 * request and response shapes.
 *
 * Every request becomes a tree of stages, Qdrant's universal query: a stage ranks points with its
 * query, over the whole collection or, when it has prefetches, over the union of what they
 * returned. Legacy search and recommend are one-stage trees. A request runs in three steps:
 *   parse   JSON into stages; vectors checked against the collection's config; each stage's
 *           scope compiled with ag_scope_init (its own filter AND the caller's row restriction);
 *   resolve point ids used as vectors are read: lookup_from collections first, each under its
 *           own read lock, then this collection under the read lock of the run;
 *   run     under the read lock: evaluate the tree bottom-up, cut offset and limit, render.
 * As in Qdrant, a stage's filter also applies to everything below it, and the ids used as query
 * examples in this collection are excluded from every stage. The row restriction applies at
 * every stage, so a point outside it is never seen, scored or used; another collection read
 * through lookup_from or with_lookup is authorized on its own (read:data there) and read under
 * the restriction the caller has in it.
 */
#include <math.h>
#include <sodium.h>
#include <stdio.h>

#include "api/ag_guard.h"
#include "api/ag_points.h"
#include "store/ag_payload_index.h"
#include "json/ag_json.h"

#define MAX_DEPTH 64    /* prefetch nesting (Qdrant's MAX_PREFETCH_DEPTH) */
#define MAX_STAGES 1024 /* stages of one request, every level together */
/* Budgets for work that multiplies (docs/SECURITY.md, "Request cost"), refused before any of it
 * is done. Far above what Qdrant clients send in normal use. */
#define MAX_EXAMPLES 1000        /* positive + negative examples of one recommendation */
#define MAX_REQ_EXAMPLES 10000   /* examples of every query of a request (a batch) together */
#define MAX_REQ_STAGES 10000     /* queries and prefetches of a request (a batch) together */
#define MAX_REQ_RESULTS 1100000u /* limit + offset of every query and prefetch, added up */
#define MAX_SEARCHES 1000        /* requests in one batch */
#define DEADLINE_EVERY 1024u     /* slots scored between two looks at the clock */
#define MAX_OFFSET 1000000
#define MAX_GROUP_VALUES 256 /* group_by values taken from one point */
#define DEFAULT_LIMIT 10
#define DEFAULT_GROUP_SIZE 3 /* Qdrant's CollectionQueryRequest::DEFAULT_GROUP_SIZE */
#define DEFAULT_RRF_K 2      /* Qdrant's DEFAULT_RRF_K: score = 1 / (k + rank), rank from 0 */
#define PATH_LEN 192

typedef enum { API_SEARCH, API_RECOMMEND, API_QUERY } api_t;
typedef enum { Q_NONE, Q_NEAREST, Q_RECO, Q_ORDER_BY, Q_RRF, Q_DBSF, Q_SAMPLE } qkind_t;
typedef enum { RECO_AVERAGE, RECO_BEST, RECO_SUM } reco_t;

/* A vector given inline, or by the id of the point whose vector it is (filled in by resolve). */
typedef struct vin {
    bool by_id;
    ag_point_id_t id;
    const float *dense; /* the stage's dense dim, arena */
    ag_sparse_vec_t sp; /* sorted by index, arena */
} vin_t;

/* What a stage returns, best first. Scores are what clients see (distances for Euclid and
 * Manhattan, so lower_better); order_by stages carry the ordering values in ov. */
typedef struct ranked {
    ag_hit_t *h;
    double *ov;
    size_t n;
    bool lower_better;
} ranked_t;

typedef struct req req_t;
typedef struct stage stage_t;

struct stage {
    req_t *rq;
    stage_t *parent;
    char path[PATH_LEN]; /* JSON path of the stage object ("" at the top) */
    qkind_t kind;
    const char *using_name; /* borrowed from the body; "" = the unnamed vector */
    int vi, si;             /* the `using` vector: a dense or a sparse index, the other -1 */
    vin_t nearest;
    reco_t strategy;
    vin_t *pos, *neg;
    size_t npos, nneg;
    const json_t *order_by; /* parsed under the read lock (it reads the payload schema) */
    const char *ob_key;
    bool ob_desc, ob_has_start, ob_datetime;
    double ob_start;
    uint32_t rrf_k;
    float *weights; /* rrf weights, one per prefetch, or NULL */
    size_t nweights;
    ag_scope_t scope;
    const json_t *filter_json; /* this stage's own filter (borrowed), for payload-index lookups */
    ag_search_params_t params;
    size_t limit;            /* prefetches only; the top stage uses req.limit */
    const char *lookup_coll; /* lookup_from naming another collection, else NULL */
    const char *lookup_vec;  /* lookup_from.vector, else NULL (= using) */
    stage_t **pre;
    size_t npre;
    bool cached;
    ranked_t res;
};

struct req {
    ag_call_t *call;
    ag_collection_t *c;
    api_t api;
    bool groups;
    stage_t *root;
    stage_t **all;
    size_t nall;
    ag_point_id_t *excl_ids; /* example ids of this collection: never returned */
    size_t nexcl_ids, cap_excl_ids;
    uint32_t *excl; /* their slots, sorted */
    size_t nexcl;
    size_t limit, offset;
    ag_payload_sel_t ps;
    bool wv;
    const json_t *which;
    const char *group_by;
    size_t group_size;
    const char *wl_coll; /* with_lookup */
    ag_payload_sel_t wl_ps;
    bool wl_wv;
    const json_t *wl_which;
};

/* ---- small helpers ------------------------------------------------------------------------- */

static void pathf(char *buf, size_t len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void pathf(char *buf, size_t len, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, len, fmt, ap);
    va_end(ap);
    if (n < 0)
        buf[0] = '\0';
}

/* "<path>.<key>", or "<key>" at the top level. */
static void field(char *buf, size_t len, const char *path, const char *key)
{
    pathf(buf, len, "%s%s%s", path, *path ? "." : "", key);
}

static void *req_alloc(req_t *rq, size_t n, size_t size)
{
    if (n == 0)
        n = 1;
    if (size && n > SIZE_MAX / size)
        return NULL;
    return ag_arena_calloc(&rq->call->arena, n, size);
}

/* Prefixes a diagnostic written by a shared parser with where its input sits in a batch. */
static int prefixed(req_t *rq, const char *path, int rc)
{
    if (rc && *path) {
        char msg[sizeof(rq->call->diag.msg)];
        snprintf(msg, sizeof(msg), "%s", rq->call->diag.msg);
        ag_fail(&rq->call->diag, rc, "%s: %s", path, msg);
    }
    return rc;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static int cmp_hit_slot(const void *a, const void *b)
{
    const ag_hit_t *x = a, *y = b;
    return x->slot < y->slot ? -1 : x->slot > y->slot;
}

/* Best first: higher score, then smaller slot (the order ag_index.h promises). */
static int cmp_hit_score(const void *a, const void *b)
{
    const ag_hit_t *x = a, *y = b;
    if (x->score != y->score)
        return x->score > y->score ? -1 : 1;
    return x->slot < y->slot ? -1 : x->slot > y->slot;
}

static const char *vector_label(const char *name)
{
    return *name ? name : "(default)";
}

/*
 * Opens a collection other than the one in the path (lookup_from, with_lookup): a new reference
 * in *out and, in *restriction (owned, NULL = none), the caller's row restriction there. The
 * route authorized only the path's collection, so reading another needs read:data on it too
 * (docs/PERMISSIONS.md); the name is resolved once (an alias to its collection) and the reference
 * read is the one authorized; a forbidden collection's existence is not told.
 */
static int open_other(req_t *rq, const char *name, const char *where, ag_collection_t **out,
                      ag_filter_t **restriction)
{
    ag_call_t *call = rq->call;
    *out = NULL;
    /* Resolved once (an alias to its collection), then authorized by the collection's own name:
     * the reference read is the one authorized. A missing name is authorized as given. */
    ag_collection_t *c = NULL;
    if (ag_store_get(call->api->store, name, &c, NULL) != 0)
        c = NULL;
    int rc = ag_guard_authorize(call, "read:data", c ? c->name : name, restriction, &call->diag);
    if (rc) {
        char msg[sizeof(call->diag.msg)];
        snprintf(msg, sizeof(msg),
                 "Forbidden: missing permission read:data on collection "
                 "'%.200s'",
                 name);
        if (c)
            ag_coll_unref(c);
        return ag_fail(&call->diag, rc, "%s (%s)", msg, where);
    }
    if (!c) {
        ag_filter_free(*restriction);
        *restriction = NULL;
        return ag_fail(&call->diag, AG_ENOTFOUND,
                       "Not found: Collection `%.200s` doesn't exist! (%s)", name, where);
    }
    *out = c;
    return 0;
}

/* ---- parsing ------------------------------------------------------------------------------- */

static int new_stage(req_t *rq, stage_t *parent, const char *path, stage_t **out)
{
    if (rq->nall == MAX_STAGES)
        return ag_fail(&rq->call->diag, AG_EINVAL, "%s: at most %d prefetches per request",
                       *path ? path : "prefetch", MAX_STAGES - 1);
    if (!rq->all && !(rq->all = req_alloc(rq, MAX_STAGES, sizeof(*rq->all))))
        return AG_ENOMEM;
    stage_t *st = req_alloc(rq, 1, sizeof(*st));
    if (!st)
        return AG_ENOMEM;
    st->rq = rq;
    st->parent = parent;
    pathf(st->path, sizeof(st->path), "%s", path);
    st->using_name = "";
    st->vi = st->si = -1;
    st->limit = DEFAULT_LIMIT;
    st->rrf_k = DEFAULT_RRF_K;
    st->params.deadline = rq->call->deadline;
    st->scope.c = rq->c;
    st->scope.restriction = rq->call->restriction;
    rq->all[rq->nall++] = st;
    *out = st;
    return 0;
}

static void req_release(req_t *rq)
{
    for (size_t i = 0; i < rq->nall; i++)
        ag_scope_release(&rq->all[i]->scope);
    rq->nall = 0;
}

/* An id used as an example in this collection must not come back in the results. */
static int note_example_id(req_t *rq, const stage_t *st, const ag_point_id_t *id)
{
    if (st->lookup_coll)
        return 0;
    if (rq->nexcl_ids == rq->cap_excl_ids) {
        size_t cap = rq->cap_excl_ids ? rq->cap_excl_ids * 2 : 16;
        ag_point_id_t *g = req_alloc(rq, cap, sizeof(*g));
        if (!g)
            return AG_ENOMEM;
        if (rq->nexcl_ids)
            memcpy(g, rq->excl_ids, rq->nexcl_ids * sizeof(*g));
        rq->excl_ids = g;
        rq->cap_excl_ids = cap;
    }
    rq->excl_ids[rq->nexcl_ids++] = *id;
    return 0;
}

/* Finds the stage's `using` vector. where names the field for the message. */
static int resolve_using(req_t *rq, stage_t *st, const char *where)
{
    st->vi = ag_coll_vector(rq->c, st->using_name);
    st->si = st->vi >= 0 ? -1 : ag_coll_sparse(rq->c, st->using_name);
    if (st->vi < 0 && st->si < 0)
        return ag_fail(&rq->call->diag, AG_EINVAL,
                       "Wrong input: Not existing vector name error: %.200s (%s)", st->using_name,
                       where);
    return 0;
}

/* A vector input: a dense vector, a sparse {indices, values} or a point id. */
static int parse_vin(req_t *rq, stage_t *st, const json_t *v, const char *path, vin_t *out)
{
    ag_call_t *call = rq->call;
    memset(out, 0, sizeof(*out));
    if (json_is_integer(v) || json_is_string(v)) {
        int rc = ag_id_parse(v, &out->id, path, &call->diag);
        if (rc)
            return rc;
        out->by_id = true;
        return note_example_id(rq, st, &out->id);
    }
    if (json_is_array(v)) {
        if (json_is_array(json_array_get(v, 0)))
            return ag_fail(&call->diag, AG_EINVAL,
                           "Wrong input: %s: multi-vectors are not supported", path);
        if (st->si >= 0)
            return ag_fail(&call->diag, AG_EINVAL,
                           "Wrong input: %s: `%.200s` is a sparse vector, expected "
                           "{indices, values}",
                           path, st->using_name);
        float *f = NULL;
        int rc = ag_parse_dense(call, rq->c, st->vi, v, path, &f);
        out->dense = f;
        return rc;
    }
    if (json_is_object(v) && (json_object_get(v, "indices") || json_object_get(v, "values"))) {
        if (st->vi >= 0)
            return ag_fail(&call->diag, AG_EINVAL,
                           "Wrong input: %s: vector `%.200s` is dense, a sparse vector was given",
                           path, vector_label(st->using_name));
        return ag_parse_sparse(call, v, path, &out->sp);
    }
    if (json_is_object(v) && (json_object_get(v, "text") || json_object_get(v, "image") ||
                              json_object_get(v, "object") || json_object_get(v, "model")))
        return ag_fail(&call->diag, AG_EINVAL,
                       "Bad request: %s: inference from documents, images or objects is not "
                       "supported; pass a vector or a point id",
                       path);
    return ag_fail(&call->diag, AG_EINVAL,
                   "%s: expected a vector, a sparse vector {indices, values} or a point id", path);
}

static int parse_examples(req_t *rq, stage_t *st, const json_t *obj, const char *path,
                          const char *key, vin_t **out, size_t *n)
{
    char p[PATH_LEN], ep[PATH_LEN];
    field(p, sizeof(p), path, key);
    const json_t *arr = json_object_get(obj, key);
    *out = NULL;
    *n = 0;
    if (!arr || json_is_null(arr))
        return 0;
    if (!json_is_array(arr))
        return ag_fail(&rq->call->diag, AG_EINVAL, "%s: expected an array of point ids or vectors",
                       p);
    size_t len = json_array_size(arr);
    if (len > MAX_EXAMPLES)
        return ag_fail(&rq->call->diag, AG_EINVAL, "%s: at most %d examples, got %zu", p,
                       MAX_EXAMPLES, len);
    vin_t *v = req_alloc(rq, len, sizeof(*v));
    if (!v)
        return AG_ENOMEM;
    for (size_t i = 0; i < len; i++) {
        pathf(ep, sizeof(ep), "%s[%zu]", p, i);
        int rc = parse_vin(rq, st, json_array_get(arr, i), ep, &v[i]);
        if (rc)
            return rc;
    }
    *out = v;
    *n = len;
    return 0;
}

/* {positive, negative, strategy}; the stage's `using` is resolved already. */
static int parse_reco(req_t *rq, stage_t *st, const json_t *obj, const char *path)
{
    ag_diag_t *d = &rq->call->diag;
    char p[PATH_LEN];
    const char *s = NULL;
    int rc = ag_json_get_str(obj, "strategy", path, &s, d);
    if (rc)
        return rc;
    st->kind = Q_RECO;
    st->strategy = RECO_AVERAGE;
    if (s) {
        if (strcmp(s, "average_vector") == 0) {
            st->strategy = RECO_AVERAGE;
        } else if (strcmp(s, "best_score") == 0) {
            st->strategy = RECO_BEST;
        } else if (strcmp(s, "sum_scores") == 0) {
            st->strategy = RECO_SUM;
        } else {
            field(p, sizeof(p), path, "strategy");
            return ag_fail(d, AG_EINVAL, "%s: expected average_vector, best_score or sum_scores",
                           p);
        }
    }
    if ((rc = parse_examples(rq, st, obj, path, "positive", &st->pos, &st->npos)) != 0 ||
        (rc = parse_examples(rq, st, obj, path, "negative", &st->neg, &st->nneg)) != 0)
        return rc;
    if (st->npos + st->nneg > MAX_EXAMPLES)
        return ag_fail(d, AG_EINVAL,
                       "%s: at most %d positive and negative examples together, got %zu",
                       *path ? path : "positive", MAX_EXAMPLES, st->npos + st->nneg);
    field(p, sizeof(p), path, "positive");
    if (st->strategy == RECO_AVERAGE && st->npos == 0)
        return ag_fail(d, AG_EINVAL,
                       "Wrong input: Positive vectors should not be empty with `average` "
                       "strategy (%s)",
                       p);
    if (st->npos + st->nneg == 0)
        return ag_fail(d, AG_EINVAL,
                       "Wrong input: At least one positive or negative example is required (%s)",
                       p);
    return 0;
}

static int parse_params(req_t *rq, stage_t *st, const json_t *obj, const char *path)
{
    ag_diag_t *d = &rq->call->diag;
    const json_t *p;
    char pp[PATH_LEN], qp[PATH_LEN];
    int rc = ag_json_get_obj(obj, "params", path, &p, d);
    if (rc || !p)
        return rc;
    field(pp, sizeof(pp), path, "params");
    if ((rc = AG_JSON_ONLY(p, pp, d, "hnsw_ef", "exact", "quantization", "indexed_only",
                           "acorn")) != 0)
        return rc;
    uint64_t ef = 0;
    bool exact = false, indexed_only = false;
    if ((rc = ag_json_get_uint(p, "hnsw_ef", pp, UINT32_MAX, &ef, d)) != 0 ||
        (rc = ag_json_get_bool(p, "exact", pp, &exact, d)) != 0 ||
        (rc = ag_json_get_bool(p, "indexed_only", pp, &indexed_only, d)) != 0)
        return rc;
    st->params.ef = (uint32_t)ef;
    st->params.exact = exact;
    const json_t *q;
    if ((rc = ag_json_get_obj(p, "quantization", pp, &q, d)) != 0)
        return rc;
    if (q) {
        bool b = false;
        double over = 1;
        field(qp, sizeof(qp), pp, "quantization");
        if ((rc = AG_JSON_ONLY(q, qp, d, "ignore", "rescore", "oversampling")) != 0 ||
            (rc = ag_json_get_bool(q, "ignore", qp, &b, d)) != 0 ||
            (rc = ag_json_get_bool(q, "rescore", qp, &b, d)) != 0 ||
            (rc = ag_json_get_float(q, "oversampling", qp, &over, d)) != 0)
            return rc;
        if (over < 1)
            return ag_fail(d, AG_EUNPROCESSABLE, "%s.oversampling: must be at least 1", qp);
    }
    const json_t *a;
    if ((rc = ag_json_get_obj(p, "acorn", pp, &a, d)) != 0)
        return rc;
    if (a) {
        bool b = false;
        double sel = 0;
        field(qp, sizeof(qp), pp, "acorn");
        if ((rc = AG_JSON_ONLY(a, qp, d, "enable", "max_selectivity")) != 0 ||
            (rc = ag_json_get_bool(a, "enable", qp, &b, d)) != 0 ||
            (rc = ag_json_get_float(a, "max_selectivity", qp, &sel, d)) != 0)
            return rc;
    }
    return 0;
}

static int parse_threshold(req_t *rq, stage_t *st, const json_t *obj, const char *path)
{
    const json_t *v = json_object_get(obj, "score_threshold");
    if (!v || json_is_null(v))
        return 0;
    double t = 0;
    int rc = ag_json_get_float(obj, "score_threshold", path, &t, &rq->call->diag);
    if (rc)
        return rc;
    float f = (float)t;
    if (!isfinite(f)) {
        char p[PATH_LEN];
        field(p, sizeof(p), path, "score_threshold");
        return ag_fail(&rq->call->diag, AG_EINVAL, "%s: not a finite float32", p);
    }
    st->params.has_threshold = true;
    st->params.score_threshold = f;
    return 0;
}

static int parse_limit(req_t *rq, const json_t *obj, const char *path, const char *key, size_t dflt,
                       size_t *out)
{
    uint64_t v = dflt;
    int rc = ag_json_get_uint(obj, key, path, AG_MAX_LIMIT, &v, &rq->call->diag);
    if (rc)
        return rc;
    if (v == 0) {
        char p[PATH_LEN];
        field(p, sizeof(p), path, key);
        return ag_fail(&rq->call->diag, AG_EUNPROCESSABLE, "%s: must be at least 1", p);
    }
    *out = (size_t)v;
    return 0;
}

static int parse_collection_name(req_t *rq, const json_t *obj, const char *path, const char **out)
{
    char p[PATH_LEN];
    field(p, sizeof(p), path, "collection");
    const json_t *v = json_object_get(obj, "collection");
    if (!json_is_string(v))
        return ag_fail(&rq->call->diag, AG_EINVAL, "%s: expected a collection name", p);
    int rc = ag_name_check(json_string_value(v), json_string_length(v), p, &rq->call->diag);
    if (rc)
        return rc;
    *out = json_string_value(v);
    return 0;
}

static int parse_lookup_from(req_t *rq, stage_t *st, const json_t *obj, const char *path)
{
    ag_diag_t *d = &rq->call->diag;
    const json_t *lf;
    int rc = ag_json_get_obj(obj, "lookup_from", path, &lf, d);
    if (rc || !lf)
        return rc;
    char p[PATH_LEN];
    field(p, sizeof(p), path, "lookup_from");
    const char *coll = NULL, *vec = NULL;
    if ((rc = AG_JSON_ONLY(lf, p, d, "collection", "vector", "shard_key")) != 0 ||
        (rc = parse_collection_name(rq, lf, p, &coll)) != 0 ||
        (rc = ag_json_get_str(lf, "vector", p, &vec, d)) != 0)
        return rc;
    st->lookup_vec = vec;
    bool same = strcmp(coll, rq->c->name) == 0 || strcmp(coll, rq->call->params[0]) == 0;
    st->lookup_coll = same ? NULL : coll;
    return 0;
}

/* The fields every stage shares: using, lookup_from, filter, params, score_threshold, limit. */
static int parse_stage_fields(req_t *rq, stage_t *st, const json_t *obj, const char *path,
                              bool with_limit)
{
    const char *u = NULL;
    int rc = ag_json_get_str(obj, "using", path, &u, &rq->call->diag);
    if (rc)
        return rc;
    if (u)
        st->using_name = u;
    st->filter_json = json_object_get(obj, "filter");
    if ((rc = parse_lookup_from(rq, st, obj, path)) != 0 ||
        (rc = ag_scope_init(&st->scope, rq->call, rq->c, json_object_get(obj, "filter"), path)) !=
            0 ||
        (rc = parse_params(rq, st, obj, path)) != 0 ||
        (rc = parse_threshold(rq, st, obj, path)) != 0)
        return rc;
    if (with_limit)
        return parse_limit(rq, obj, path, "limit", DEFAULT_LIMIT, &st->limit);
    return 0;
}

static int parse_rrf(req_t *rq, stage_t *st, const json_t *x, const char *p)
{
    ag_diag_t *d = &rq->call->diag;
    char wp[PATH_LEN];
    if (!json_is_object(x))
        return ag_fail(d, AG_EINVAL, "%s: expected an object {k, weights}", p);
    int rc = AG_JSON_ONLY(x, p, d, "k", "weights");
    if (rc)
        return rc;
    uint64_t k = DEFAULT_RRF_K;
    if ((rc = ag_json_get_uint(x, "k", p, 1u << 20, &k, d)) != 0)
        return rc;
    if (k == 0)
        return ag_fail(d, AG_EUNPROCESSABLE, "%s.k: must be at least 1", p);
    st->kind = Q_RRF;
    st->rrf_k = (uint32_t)k;
    const json_t *w = json_object_get(x, "weights");
    if (!w || json_is_null(w))
        return 0;
    field(wp, sizeof(wp), p, "weights");
    if (!json_is_array(w) || json_array_size(w) > MAX_STAGES)
        return ag_fail(d, AG_EINVAL, "%s: expected an array of numbers", wp);
    st->nweights = json_array_size(w);
    if (!(st->weights = req_alloc(rq, st->nweights, sizeof(float))))
        return AG_ENOMEM;
    for (size_t i = 0; i < st->nweights; i++) {
        const json_t *e = json_array_get(w, i);
        double v = json_is_number(e) ? json_number_value(e) : -1;
        if (!json_is_number(e) || !isfinite(v) || v < 0)
            return ag_fail(d, AG_EINVAL, "%s[%zu]: expected a number >= 0", wp, i);
        st->weights[i] = (float)v;
    }
    return 0;
}

/* Qdrant's QueryInterface: a vector input (nearest) or one of the tagged query objects. */
static int parse_query(req_t *rq, stage_t *st, const json_t *q, const char *qp)
{
    ag_diag_t *d = &rq->call->diag;
    char p[PATH_LEN], up[PATH_LEN];
    int rc;
    field(up, sizeof(up), st->path, "using");
    if (!q || json_is_null(q)) {
        st->kind = Q_NONE;
        return 0;
    }
    if (json_is_object(q)) {
        static const char *const unsupported[] = {"discover", "context", "formula",
                                                  "relevance_feedback", "mmr"};
        for (size_t i = 0; i < AG_ARRAY_LEN(unsupported); i++)
            if (json_object_get(q, unsupported[i]) && !json_object_get(q, "nearest"))
                return ag_fail(d, AG_EINVAL,
                               "Bad request: %s: `%s` queries are not supported by this server", qp,
                               unsupported[i]);
        const json_t *x;
        if ((x = json_object_get(q, "nearest")) != NULL) {
            if ((rc = AG_JSON_ONLY(q, qp, d, "nearest", "mmr")) != 0)
                return rc;
            const json_t *mmr = json_object_get(q, "mmr");
            if (mmr && !json_is_null(mmr))
                return ag_fail(d, AG_EINVAL,
                               "Bad request: %s.mmr: maximal marginal relevance is not supported "
                               "by this server",
                               qp);
            field(p, sizeof(p), qp, "nearest");
            st->kind = Q_NEAREST;
            if ((rc = resolve_using(rq, st, up)) != 0)
                return rc;
            return parse_vin(rq, st, x, p, &st->nearest);
        }
        if ((x = json_object_get(q, "recommend")) != NULL) {
            field(p, sizeof(p), qp, "recommend");
            if ((rc = AG_JSON_ONLY(q, qp, d, "recommend")) != 0)
                return rc;
            if (!json_is_object(x))
                return ag_fail(d, AG_EINVAL, "%s: expected {positive, negative, strategy}", p);
            if ((rc = AG_JSON_ONLY(x, p, d, "positive", "negative", "strategy")) != 0 ||
                (rc = resolve_using(rq, st, up)) != 0)
                return rc;
            return parse_reco(rq, st, x, p);
        }
        if ((x = json_object_get(q, "order_by")) != NULL) {
            if ((rc = AG_JSON_ONLY(q, qp, d, "order_by")) != 0)
                return rc;
            st->kind = Q_ORDER_BY;
            st->order_by = x;
            return 0;
        }
        if ((x = json_object_get(q, "fusion")) != NULL) {
            if ((rc = AG_JSON_ONLY(q, qp, d, "fusion")) != 0)
                return rc;
            const char *s = json_string_value(x);
            if (s && strcmp(s, "rrf") == 0) {
                st->kind = Q_RRF;
            } else if (s && strcmp(s, "dbsf") == 0) {
                st->kind = Q_DBSF;
            } else {
                return ag_fail(d, AG_EINVAL, "%s.fusion: expected rrf or dbsf", qp);
            }
            return 0;
        }
        if ((x = json_object_get(q, "rrf")) != NULL) {
            if ((rc = AG_JSON_ONLY(q, qp, d, "rrf")) != 0)
                return rc;
            field(p, sizeof(p), qp, "rrf");
            return parse_rrf(rq, st, x, p);
        }
        if ((x = json_object_get(q, "sample")) != NULL) {
            if ((rc = AG_JSON_ONLY(q, qp, d, "sample")) != 0)
                return rc;
            if (!json_is_string(x) || strcmp(json_string_value(x), "random") != 0)
                return ag_fail(d, AG_EINVAL, "%s.sample: expected random", qp);
            st->kind = Q_SAMPLE;
            return 0;
        }
    }
    st->kind = Q_NEAREST;
    if ((rc = resolve_using(rq, st, up)) != 0)
        return rc;
    return parse_vin(rq, st, q, qp, &st->nearest);
}

/* Qdrant's rules for a stage, checked once its query and prefetches are known. */
static int check_stage(req_t *rq, const stage_t *st, const char *qp)
{
    ag_diag_t *d = &rq->call->diag;
    bool fusion = st->kind == Q_RRF || st->kind == Q_DBSF;
    if (st->npre && st->kind == Q_NONE)
        return ag_fail(d, AG_EINVAL,
                       "Bad request: A query is needed to merge the prefetches. Can't have "
                       "prefetches without defining a query. (%s)",
                       qp);
    if (st->params.has_threshold && st->kind == Q_ORDER_BY)
        return ag_fail(d, AG_EINVAL,
                       "Bad request: Can't use score_threshold with an order_by query. (%s)", qp);
    if (st->params.has_threshold && st->kind == Q_NONE)
        return ag_fail(d, AG_EINVAL,
                       "Bad request: A query is needed to use the score_threshold. Can't have "
                       "score_threshold without defining a query. (%s)",
                       qp);
    if (fusion && *st->using_name)
        return ag_fail(d, AG_EINVAL,
                       "Bad request: Fusion queries cannot be combined with the 'using' field. "
                       "(%s)",
                       qp);
    if (fusion && st->npre == 0)
        return ag_fail(d, AG_EINVAL, "Bad request: cannot apply Fusion without prefetches (%s)",
                       qp);
    if (st->weights && st->nweights != st->npre)
        return ag_fail(d, AG_EINVAL,
                       "Wrong input: Number of weights in RRF should match number of "
                       "pre-fetches: got %zu, expected %zu (%s.rrf.weights)",
                       st->nweights, st->npre, qp);
    return 0;
}

/* A stage of the query API: the top request (parent NULL) or a prefetch. */
static int parse_stage(req_t *rq, stage_t *parent, const json_t *obj, const char *path, int depth,
                       stage_t **out)
{
    ag_diag_t *d = &rq->call->diag;
    int rc;
    if (depth > MAX_DEPTH)
        return ag_fail(d, AG_EINVAL, "Bad request: %s: prefetches depth exceeds max depth %d", path,
                       MAX_DEPTH);
    if (!json_is_object(obj))
        return ag_fail(d, AG_EINVAL, "%s: expected an object", path);
    if (parent && (rc = AG_JSON_ONLY(obj, path, d, "prefetch", "query", "using", "filter", "params",
                                     "score_threshold", "limit", "lookup_from")) != 0)
        return rc;
    stage_t *st;
    if ((rc = new_stage(rq, parent, path, &st)) != 0 ||
        (rc = parse_stage_fields(rq, st, obj, path, parent != NULL)) != 0)
        return rc;
    const json_t *pf = json_object_get(obj, "prefetch");
    char p[PATH_LEN];
    if (pf && !json_is_null(pf)) {
        if (json_is_object(pf)) {
            if (!(st->pre = req_alloc(rq, 1, sizeof(*st->pre))))
                return AG_ENOMEM;
            field(p, sizeof(p), path, "prefetch");
            if ((rc = parse_stage(rq, st, pf, p, depth + 1, &st->pre[0])) != 0)
                return rc;
            st->npre = 1;
        } else if (json_is_array(pf)) {
            size_t n = json_array_size(pf);
            field(p, sizeof(p), path, "prefetch");
            if (n > MAX_STAGES)
                return ag_fail(d, AG_EINVAL, "%s: at most %d prefetches per request", p,
                               MAX_STAGES - 1);
            if (!(st->pre = req_alloc(rq, n, sizeof(*st->pre))))
                return AG_ENOMEM;
            for (size_t i = 0; i < n; i++) {
                pathf(p, sizeof(p), "%s%sprefetch[%zu]", path, *path ? "." : "", i);
                if ((rc = parse_stage(rq, st, json_array_get(pf, i), p, depth + 1, &st->pre[i])) !=
                    0)
                    return rc;
                st->npre = i + 1;
            }
        } else {
            field(p, sizeof(p), path, "prefetch");
            return ag_fail(d, AG_EINVAL, "%s: expected an object or an array of objects", p);
        }
    }
    field(p, sizeof(p), path, "query");
    if ((rc = parse_query(rq, st, json_object_get(obj, "query"), p)) != 0 ||
        (rc = check_stage(rq, st, p)) != 0)
        return rc;
    *out = st;
    return 0;
}

/* Legacy search's NamedVectorStruct: [..], {name, vector: [..]} or {name, vector: sparse}. */
static int parse_named_vector(req_t *rq, stage_t *st, const json_t *v, const char *path)
{
    ag_diag_t *d = &rq->call->diag;
    char p[PATH_LEN], np[PATH_LEN];
    int rc;
    st->kind = Q_NEAREST;
    if (json_is_array(v)) {
        if ((rc = resolve_using(rq, st, path)) != 0)
            return rc;
        return parse_vin(rq, st, v, path, &st->nearest);
    }
    if (!json_is_object(v))
        return ag_fail(d, AG_EINVAL,
                       "%s: expected an array, {name, vector} or {name, vector: {indices, "
                       "values}}",
                       path);
    if ((rc = AG_JSON_ONLY(v, path, d, "name", "vector")) != 0)
        return rc;
    const json_t *name = json_object_get(v, "name");
    const json_t *vec = json_object_get(v, "vector");
    field(np, sizeof(np), path, "name");
    field(p, sizeof(p), path, "vector");
    if (!json_is_string(name))
        return ag_fail(d, AG_EINVAL, "%s: expected a vector name", np);
    if (!json_is_array(vec) && !json_is_object(vec))
        return ag_fail(d, AG_EINVAL, "%s: expected a vector or {indices, values}", p);
    st->using_name = json_string_value(name);
    if ((rc = resolve_using(rq, st, np)) != 0)
        return rc;
    return parse_vin(rq, st, vec, p, &st->nearest);
}

static int parse_groups(req_t *rq, const json_t *body, const char *path)
{
    ag_diag_t *d = &rq->call->diag;
    char p[PATH_LEN];
    const char *gb = NULL;
    int rc = ag_json_get_str(body, "group_by", path, &gb, d);
    if (rc)
        return rc;
    field(p, sizeof(p), path, "group_by");
    if (!gb)
        return ag_fail(d, AG_EINVAL, "%s: field is required", p);
    if (ag_payload_path_check(gb, NULL) != 0)
        return ag_fail(d, AG_EINVAL, "%s: expected a payload key", p);
    rq->group_by = gb;
    if ((rc = parse_limit(rq, body, path, "group_size", DEFAULT_GROUP_SIZE, &rq->group_size)) != 0)
        return rc;
    const json_t *wl = json_object_get(body, "with_lookup");
    field(p, sizeof(p), path, "with_lookup");
    if (!wl || json_is_null(wl))
        return 0;
    if (json_is_string(wl)) {
        if ((rc = ag_name_check(json_string_value(wl), json_string_length(wl), p, d)) != 0)
            return rc;
        rq->wl_coll = json_string_value(wl);
        rq->wl_ps.enabled = true;
        return 0;
    }
    if (!json_is_object(wl))
        return ag_fail(d, AG_EINVAL,
                       "%s: expected a collection name or {collection, "
                       "with_payload, with_vectors}",
                       p);
    if ((rc = AG_JSON_ONLY(wl, p, d, "collection", "with_payload", "with_vectors")) != 0 ||
        (rc = parse_collection_name(rq, wl, p, &rq->wl_coll)) != 0)
        return rc;
    rc = ag_parse_output(wl, "with_vectors", true, &rq->wl_ps, &rq->wl_wv, &rq->wl_which, d);
    return prefixed(rq, p, rc);
}

/* with_payload, with_vector, limit, offset and the groups fields of a top-level request. */
static int parse_output(req_t *rq, const json_t *body, const char *path)
{
    ag_diag_t *d = &rq->call->diag;
    int rc = ag_parse_output(body, "with_vector", false, &rq->ps, &rq->wv, &rq->which, d);
    if ((rc = prefixed(rq, path, rc)) != 0 ||
        (rc = parse_limit(rq, body, path, "limit", DEFAULT_LIMIT, &rq->limit)) != 0)
        return rc;
    if (rq->groups)
        return parse_groups(rq, body, path);
    uint64_t off = 0;
    if ((rc = ag_json_get_uint(body, "offset", path, MAX_OFFSET, &off, d)) != 0)
        return rc;
    rq->offset = (size_t)off;
    return 0;
}

static int parse_request(req_t *rq, const json_t *body, const char *path)
{
    ag_diag_t *d = &rq->call->diag;
    char p[PATH_LEN];
    int rc;
    stage_t *st = NULL;
    if (!json_is_object(body))
        return ag_fail(d, AG_EINVAL, "%s: expected an object", *path ? path : "body");
    switch (rq->api) {
    case API_SEARCH:
        rc = rq->groups
                 ? AG_JSON_ONLY(body, path, d, "vector", "filter", "params", "limit",
                                "with_payload", "with_vector", "score_threshold", "group_by",
                                "group_size", "with_lookup", "shard_key", "consistency", "timeout")
                 : AG_JSON_ONLY(body, path, d, "vector", "filter", "params", "limit", "offset",
                                "with_payload", "with_vector", "score_threshold", "shard_key",
                                "consistency", "timeout");
        if (rc || (rc = new_stage(rq, NULL, path, &st)) != 0 ||
            (rc = parse_stage_fields(rq, st, body, path, false)) != 0)
            return rc;
        field(p, sizeof(p), path, "vector");
        if (!json_object_get(body, "vector"))
            return ag_fail(d, AG_EINVAL, "%s: field is required", p);
        if ((rc = parse_named_vector(rq, st, json_object_get(body, "vector"), p)) != 0)
            return rc;
        break;
    case API_RECOMMEND:
        rc = rq->groups ? AG_JSON_ONLY(body, path, d, "positive", "negative", "strategy", "using",
                                       "lookup_from", "filter", "params", "limit", "with_payload",
                                       "with_vector", "score_threshold", "group_by", "group_size",
                                       "with_lookup", "shard_key", "consistency", "timeout")
                        : AG_JSON_ONLY(body, path, d, "positive", "negative", "strategy", "using",
                                       "lookup_from", "filter", "params", "limit", "offset",
                                       "with_payload", "with_vector", "score_threshold",
                                       "shard_key", "consistency", "timeout");
        if (rc || (rc = new_stage(rq, NULL, path, &st)) != 0 ||
            (rc = parse_stage_fields(rq, st, body, path, false)) != 0)
            return rc;
        field(p, sizeof(p), path, "using");
        if ((rc = resolve_using(rq, st, p)) != 0 || (rc = parse_reco(rq, st, body, path)) != 0)
            return rc;
        break;
    case API_QUERY:
        rc = rq->groups
                 ? AG_JSON_ONLY(body, path, d, "prefetch", "query", "using", "filter", "params",
                                "score_threshold", "limit", "with_payload", "with_vector",
                                "lookup_from", "group_by", "group_size", "with_lookup", "shard_key",
                                "consistency", "timeout")
                 : AG_JSON_ONLY(body, path, d, "prefetch", "query", "using", "filter", "params",
                                "score_threshold", "limit", "offset", "with_payload", "with_vector",
                                "lookup_from", "shard_key", "consistency", "timeout");
        if (rc || (rc = parse_stage(rq, NULL, body, path, 0, &st)) != 0)
            return rc;
        break;
    }
    rq->root = st;
    if ((rc = ag_call_timeout_json(rq->call, json_object_get(body, "timeout"), path)) != 0)
        return rc;
    return parse_output(rq, body, path);
}

/* ---- resolving example vectors ------------------------------------------------------------- */

/* Copies the vector of point v->id from src (read lock held) into the arena. The point must be
 * visible to the caller: outside its row restriction in src it does not exist. */
static int resolve_vin(req_t *rq, const stage_t *st, ag_collection_t *src,
                       const ag_filter_t *restriction, vin_t *v)
{
    if (!v->by_id)
        return 0;
    ag_diag_t *d = &rq->call->diag;
    char id[40], p[PATH_LEN];
    ag_id_format(&v->id, id, sizeof(id));
    uint32_t s = ag_coll_find(src, &v->id);
    if (s == UINT32_MAX || !ag_coll_match(src, s, restriction))
        return ag_fail(d, AG_ENOTFOUND, "Not found: No point with id %s found", id);
    const char *name = st->lookup_vec ? st->lookup_vec : st->using_name;
    field(p, sizeof(p), st->path, st->lookup_vec ? "lookup_from.vector" : "using");
    if (st->vi >= 0) {
        const ag_vector_cfg_t *want = &rq->c->vec[st->vi];
        int svi = ag_coll_vector(src, name);
        if (svi < 0)
            return ag_fail(d, AG_EINVAL, "Wrong input: Not existing vector name error: %.200s (%s)",
                           name, p);
        if (src->vec[svi].dim != want->dim)
            return ag_fail(d, AG_EINVAL,
                           "Wrong input: Vector dimension error: expected dim: %u, got %u (%s)",
                           want->dim, src->vec[svi].dim, p);
        const float *f = ag_vecstore_get(src->vec[svi].vs, s);
        if (!f)
            return ag_fail(d, AG_ENOTFOUND, "Not found: Vector with name \"%.200s\" for point %s",
                           name, id);
        float *copy = req_alloc(rq, want->dim, sizeof(float));
        if (!copy)
            return AG_ENOMEM;
        memcpy(copy, f, sizeof(float) * want->dim);
        if (want->dist == AG_DIST_COSINE && src->vec[svi].dist != AG_DIST_COSINE)
            ag_vector_normalize(copy, want->dim);
        v->dense = copy;
        return 0;
    }
    int ssi = ag_coll_sparse(src, name);
    if (ssi < 0)
        return ag_fail(d, AG_EINVAL, "Wrong input: Not existing vector name error: %.200s (%s)",
                       name, p);
    const uint32_t *ix;
    const float *vals;
    uint32_t n = 0;
    if (!ag_sparse_get(src->sparse[ssi].sp, s, &ix, &vals, &n))
        return ag_fail(d, AG_ENOTFOUND, "Not found: Vector with name \"%.200s\" for point %s", name,
                       id);
    v->sp.indices = req_alloc(rq, n, sizeof(uint32_t));
    v->sp.values = req_alloc(rq, n, sizeof(float));
    if (!v->sp.indices || !v->sp.values)
        return AG_ENOMEM;
    if (n) {
        memcpy(v->sp.indices, ix, n * sizeof(uint32_t));
        memcpy(v->sp.values, vals, n * sizeof(float));
    }
    v->sp.n = n;
    return 0;
}

static int resolve_stage(req_t *rq, stage_t *st, ag_collection_t *src,
                         const ag_filter_t *restriction)
{
    int rc = resolve_vin(rq, st, src, restriction, &st->nearest);
    for (size_t i = 0; rc == 0 && i < st->npos; i++)
        if ((rc = ag_call_deadline(rq->call)) == 0)
            rc = resolve_vin(rq, st, src, restriction, &st->pos[i]);
    for (size_t i = 0; rc == 0 && i < st->nneg; i++)
        if ((rc = ag_call_deadline(rq->call)) == 0)
            rc = resolve_vin(rq, st, src, restriction, &st->neg[i]);
    return rc;
}

/* Example vectors from other collections, each read under that collection's own lock (never
 * nested inside this collection's). */
static int resolve_lookups(req_t *rq)
{
    for (size_t i = 0; i < rq->nall; i++) {
        stage_t *st = rq->all[i];
        if (!st->lookup_coll)
            continue;
        char p[PATH_LEN];
        field(p, sizeof(p), st->path, "lookup_from.collection");
        ag_collection_t *lc;
        ag_filter_t *restriction = NULL;
        int rc = open_other(rq, st->lookup_coll, p, &lc, &restriction);
        if (rc)
            return rc;
        ag_coll_read_begin(lc);
        rc = resolve_stage(rq, st, lc, restriction);
        ag_coll_read_end(lc);
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

/* Qdrant's average_vector: avg(pos), or avg(pos) + avg(pos) - avg(neg) with negatives. */
static int reco_average(req_t *rq, stage_t *st)
{
    double wpos = (st->nneg ? 2.0 : 1.0) / (double)st->npos;
    double wneg = st->nneg ? -1.0 / (double)st->nneg : 0;
    st->kind = Q_NEAREST;
    memset(&st->nearest, 0, sizeof(st->nearest));
    if (st->vi >= 0) {
        const ag_vector_cfg_t *vc = &rq->c->vec[st->vi];
        uint32_t dim = vc->dim;
        float *ap = req_alloc(rq, dim, sizeof(float));
        float *an = req_alloc(rq, dim, sizeof(float));
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
        if (vc->dist == AG_DIST_COSINE)
            ag_vector_normalize(ap, dim);
        st->nearest.dense = ap;
        return 0;
    }
    size_t total = 0;
    for (size_t i = 0; i < st->npos; i++)
        total += st->pos[i].sp.n;
    for (size_t i = 0; i < st->nneg; i++)
        total += st->neg[i].sp.n;
    pair_t *pr = req_alloc(rq, total, sizeof(*pr));
    if (!pr)
        return AG_ENOMEM;
    size_t m = 0;
    for (int side = 0; side < 2; side++) {
        const vin_t *list = side ? st->neg : st->pos;
        size_t n = side ? st->nneg : st->npos;
        double w = side ? wneg : wpos;
        for (size_t i = 0; i < n; i++)
            for (uint32_t k = 0; k < list[i].sp.n; k++)
                pr[m++] = (pair_t){list[i].sp.indices[k], (float)(list[i].sp.values[k] * w)};
    }
    qsort(pr, m, sizeof(*pr), cmp_pair);
    uint32_t *ix = req_alloc(rq, m, sizeof(uint32_t));
    float *vals = req_alloc(rq, m, sizeof(float));
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
static int resolve_local(req_t *rq)
{
    int rc;
    for (size_t i = 0; i < rq->nall; i++) {
        stage_t *st = rq->all[i];
        if (!st->lookup_coll && (rc = resolve_stage(rq, st, rq->c, rq->call->restriction)) != 0)
            return rc;
        if (st->kind == Q_RECO && st->strategy == RECO_AVERAGE && (rc = reco_average(rq, st)) != 0)
            return rc;
        if (st->kind == Q_ORDER_BY) {
            char p[PATH_LEN];
            field(p, sizeof(p), st->path, "query");
            rc = ag_parse_order_by(rq->call, rq->c, st->order_by, &st->ob_key, &st->ob_desc,
                                   &st->ob_has_start, &st->ob_start, &st->ob_datetime);
            if ((rc = prefixed(rq, p, rc)) != 0)
                return rc;
        }
    }
    if (rq->nexcl_ids) {
        if (!(rq->excl = req_alloc(rq, rq->nexcl_ids, sizeof(uint32_t))))
            return AG_ENOMEM;
        for (size_t i = 0; i < rq->nexcl_ids; i++) {
            uint32_t s = ag_coll_find(rq->c, &rq->excl_ids[i]);
            if (s != UINT32_MAX)
                rq->excl[rq->nexcl++] = s;
        }
        qsort(rq->excl, rq->nexcl, sizeof(uint32_t), cmp_u32);
    }
    return 0;
}

/* ---- running stages (read lock held) ------------------------------------------------------- */

/* A slot a stage may return: not an example, inside the stage's scope (its filter and the row
 * restriction) and inside every ancestor's filter (Qdrant propagates filters down). Read-only,
 * so safe from the pool threads of a parallel scan. */
static bool stage_accept(const void *ud, uint32_t slot)
{
    const stage_t *st = ud;
    const req_t *rq = st->rq;
    if (rq->nexcl && bsearch(&slot, rq->excl, rq->nexcl, sizeof(uint32_t), cmp_u32))
        return false;
    if (!ag_scope_match(&st->scope, slot))
        return false;
    for (const stage_t *a = st->parent; a; a = a->parent)
        if (a->scope.user && !ag_coll_match(rq->c, slot, a->scope.user))
            return false;
    return true;
}

/* cand is NULL for the whole collection, else the sorted union of the prefetches (possibly
 * empty, which then means no slot at all). */
static void stage_filter(const stage_t *st, const uint32_t *cand, size_t ncand,
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

static int accepted_slots(req_t *rq, const ag_index_filter_t *f, uint32_t **out, size_t *n)
{
    size_t cap = f->candidates ? f->n_candidates : rq->c->nslots;
    uint32_t *s = req_alloc(rq, cap, sizeof(uint32_t));
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
        for (uint32_t slot = 0; slot < rq->c->nslots; slot++)
            if (f->accept(f->ud, slot))
                s[k++] = slot;
    }
    *out = s;
    *n = k;
    return 0;
}

static int score_nearest_in(req_t *rq, const stage_t *st, size_t k, const ag_index_filter_t *f,
                            ranked_t *out)
{
    size_t cap;
    if (st->vi >= 0) {
        const ag_vector_cfg_t *vc = &rq->c->vec[st->vi];
        out->lower_better = !ag_distance_higher_is_better(vc->dist);
        cap = AG_MIN(k, (size_t)ag_vecstore_count(vc->vs));
        if (f->candidates)
            cap = AG_MIN(cap, f->n_candidates);
        if (cap == 0)
            return 0;
        if (!(out->h = req_alloc(rq, cap, sizeof(ag_hit_t))))
            return AG_ENOMEM;
        /* Rescoring prefetched candidates is always exact; the index serves the rest. */
        if (f->candidates)
            return ag_index_score_candidates(vc->vs, vc->dist, st->nearest.dense, cap, f,
                                             &st->params, out->h, &out->n);
        /* A selective equality on an indexed field, of the filter or of the row restriction
         * (intersected when both have one): score the few candidates exactly (every candidate
         * still passes the whole filter and the row restriction). */
        uint32_t *cand;
        size_t ncand;
        if (!st->params.exact &&
            ag_scope_candidates(&st->scope, &rq->call->arena, st->filter_json, &cand, &ncand) &&
            ncand <= AG_PAYLOAD_CANDIDATES_MAX) {
            ag_index_filter_t narrowed = *f;
            narrowed.candidates = cand;
            narrowed.n_candidates = ncand;
            return ag_index_score_candidates(vc->vs, vc->dist, st->nearest.dense, cap, &narrowed,
                                             &st->params, out->h, &out->n);
        }
        return ag_index_search(vc->index, st->nearest.dense, cap, f, &st->params, out->h, &out->n);
    }
    const ag_sparse_t *sp = rq->c->sparse[st->si].sp;
    cap = AG_MIN(k, (size_t)ag_sparse_count(sp));
    if (f->candidates)
        cap = AG_MIN(cap, f->n_candidates);
    if (cap == 0 || st->nearest.sp.n == 0)
        return 0;
    if (!(out->h = req_alloc(rq, cap, sizeof(ag_hit_t))))
        return AG_ENOMEM;
    return ag_sparse_search(sp, st->nearest.sp.indices, st->nearest.sp.values, st->nearest.sp.n,
                            cap, f, &st->params, out->h, &out->n);
}

/* An exact scan that ran out of time reports AG_ETIMEOUT bare; the answer names the timeout. */
static int score_nearest(req_t *rq, const stage_t *st, size_t k, const ag_index_filter_t *f,
                         ranked_t *out)
{
    int rc = score_nearest_in(rq, st, k, f, out);
    if (rc == AG_ETIMEOUT && (rc = ag_call_deadline(rq->call)) == 0)
        rc = ag_fail(&rq->call->diag, AG_ETIMEOUT, "Timeout error: the request ran out of time");
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

static float scaled_fast_sigmoid(float x)
{
    return 0.5f * (x / (1.0f + fabsf(x)) + 1.0f);
}

/* best_score: sigmoid(best positive) if it beats the best negative, else -sigmoid(best
 * negative); sum_scores: sum over positives minus sum over negatives (Qdrant's RecoQuery). */
static bool reco_score(const req_t *rq, const stage_t *st, uint32_t slot, float *out)
{
    float maxp = -INFINITY, maxn = -INFINITY, sump = 0, sumn = 0;
    const float *x = NULL;
    const uint32_t *xi = NULL;
    const float *xv = NULL;
    uint32_t xn = 0;
    const ag_vector_cfg_t *vc = st->vi >= 0 ? &rq->c->vec[st->vi] : NULL;
    if (vc) {
        if (!(x = ag_vecstore_get(vc->vs, slot)))
            return false;
    } else if (!ag_sparse_get(rq->c->sparse[st->si].sp, slot, &xi, &xv, &xn)) {
        return false;
    }
    for (int side = 0; side < 2; side++) {
        const vin_t *list = side ? st->neg : st->pos;
        size_t n = side ? st->nneg : st->npos;
        for (size_t i = 0; i < n; i++) {
            float s =
                vc ? similarity(vc->dist, x, list[i].dense, vc->dim)
                   : ag_sparse_dot(xi, xv, xn, list[i].sp.indices, list[i].sp.values, list[i].sp.n);
            if (side) {
                maxn = s > maxn ? s : maxn;
                sumn += s;
            } else {
                maxp = s > maxp ? s : maxp;
                sump += s;
            }
        }
    }
    if (st->strategy == RECO_SUM)
        *out = sump - sumn;
    else
        *out = maxp > maxn ? scaled_fast_sigmoid(maxp) : -scaled_fast_sigmoid(maxn);
    return true;
}

static int score_reco(req_t *rq, const stage_t *st, size_t k, const ag_index_filter_t *f,
                      ranked_t *out)
{
    uint32_t *slots;
    size_t n;
    int rc = accepted_slots(rq, f, &slots, &n);
    if (rc)
        return rc;
    size_t cap = AG_MIN(k, n);
    if (cap == 0)
        return 0;
    if (!(out->h = req_alloc(rq, cap, sizeof(ag_hit_t))))
        return AG_ENOMEM;
    ag_topk_t t;
    ag_topk_init(&t, out->h, cap);
    for (size_t i = 0; i < n; i++) {
        /* Examples x points: the clock is read every few slots (times the examples). */
        if (i % (DEADLINE_EVERY / 8) == 0 && (rc = ag_call_deadline(rq->call)) != 0)
            return rc;
        float s;
        if (!reco_score(rq, st, slots[i], &s))
            continue;
        if (st->params.has_threshold && !(s >= st->params.score_threshold))
            continue;
        ag_topk_push(&t, slots[i], s);
    }
    out->n = ag_topk_finish(&t);
    return 0;
}

typedef struct keyed {
    uint32_t slot;
    double v;
    const ag_point_id_t *id;
} keyed_t;

static int cmp_keyed_asc(const void *a, const void *b)
{
    const keyed_t *x = a, *y = b;
    if (x->v != y->v)
        return x->v < y->v ? -1 : 1;
    return ag_id_cmp(x->id, y->id);
}

static int cmp_keyed_desc(const void *a, const void *b)
{
    const keyed_t *x = a, *y = b;
    if (x->v != y->v)
        return x->v > y->v ? -1 : 1;
    return ag_id_cmp(x->id, y->id);
}

typedef struct first_value {
    bool found;
    bool datetime;
    double v;
} first_value_t;

/* The smallest number (or datetime, in seconds) at the key, as scroll's order_by takes it. */
static void take_value(const json_t *v, void *ud)
{
    first_value_t *f = ud;
    double x;
    int64_t us;
    if (json_is_number(v)) {
        x = json_number_value(v);
    } else if (f->datetime && json_is_string(v) &&
               ag_datetime_parse(json_string_value(v), json_string_length(v), &us) == 0) {
        x = (double)us / 1e6;
    } else {
        return;
    }
    if (!f->found || x < f->v) {
        f->v = x;
        f->found = true;
    }
}

static int order_stage(req_t *rq, const stage_t *st, size_t k, const ag_index_filter_t *f,
                       ranked_t *out)
{
    uint32_t *slots;
    size_t n;
    int rc = accepted_slots(rq, f, &slots, &n);
    if (rc)
        return rc;
    keyed_t *o = req_alloc(rq, n, sizeof(*o));
    if (!o)
        return AG_ENOMEM;
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        first_value_t fv = {false, st->ob_datetime, 0};
        ag_payload_path_each(rq->c->slots[slots[i]].payload, st->ob_key, take_value, &fv);
        if (!fv.found)
            continue;
        if (st->ob_has_start && (st->ob_desc ? fv.v > st->ob_start : fv.v < st->ob_start))
            continue;
        o[m++] = (keyed_t){slots[i], fv.v, &rq->c->slots[slots[i]].id};
    }
    qsort(o, m, sizeof(*o), st->ob_desc ? cmp_keyed_desc : cmp_keyed_asc);
    size_t cap = AG_MIN(k, m);
    out->h = req_alloc(rq, cap, sizeof(ag_hit_t));
    out->ov = req_alloc(rq, cap, sizeof(double));
    if (!out->h || !out->ov)
        return AG_ENOMEM;
    for (size_t i = 0; i < cap; i++) {
        out->h[i] = (ag_hit_t){o[i].slot, 0};
        out->ov[i] = o[i].v;
    }
    out->n = cap;
    return 0;
}

static int sample_stage(req_t *rq, size_t k, const ag_index_filter_t *f, ranked_t *out)
{
    uint32_t *slots;
    size_t n;
    int rc = accepted_slots(rq, f, &slots, &n);
    if (rc)
        return rc;
    size_t cap = AG_MIN(k, n);
    if (!(out->h = req_alloc(rq, cap, sizeof(ag_hit_t))))
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

static int cmp_keyed_id(const void *a, const void *b)
{
    const keyed_t *x = a, *y = b;
    return ag_id_cmp(x->id, y->id);
}

/* No query: points in id order, score 0, as Qdrant. */
static int id_order_stage(req_t *rq, size_t k, const ag_index_filter_t *f, ranked_t *out)
{
    uint32_t *slots;
    size_t n;
    int rc = accepted_slots(rq, f, &slots, &n);
    if (rc)
        return rc;
    keyed_t *o = req_alloc(rq, n, sizeof(*o));
    if (!o)
        return AG_ENOMEM;
    for (size_t i = 0; i < n; i++)
        o[i] = (keyed_t){slots[i], 0, &rq->c->slots[slots[i]].id};
    qsort(o, n, sizeof(*o), cmp_keyed_id);
    size_t cap = AG_MIN(k, n);
    if (!(out->h = req_alloc(rq, cap, sizeof(ag_hit_t))))
        return AG_ENOMEM;
    for (size_t i = 0; i < cap; i++)
        out->h[i] = (ag_hit_t){o[i].slot, 0};
    out->n = cap;
    return 0;
}

/*
 * Fusion of the prefetch lists, as Qdrant:
 *  rrf:  a point scores sum over lists of 1 / ((rank + 1) / weight + k - 1), rank from 0, which
 *        is 1 / (rank + k) with the default weight 1 (k = 2 unless {"rrf": {"k": ...}});
 *  dbsf: each list's scores are mapped to [mean - 3 sd, mean + 3 sd] -> [0, 1] (sample standard
 *        deviation; 0.5 for a single point or a zero spread), then summed per point. Distances
 *        (Euclid, Manhattan) are negated first so that better is always higher.
 */
static int fuse(req_t *rq, const stage_t *st, const ranked_t *lists, size_t k, ranked_t *out)
{
    size_t total = 0;
    for (size_t i = 0; i < st->npre; i++)
        total += lists[i].n;
    ag_hit_t *e = req_alloc(rq, total, sizeof(ag_hit_t));
    if (!e)
        return AG_ENOMEM;
    size_t m = 0;
    for (size_t i = 0; i < st->npre; i++) {
        const ranked_t *l = &lists[i];
        if (st->kind == Q_RRF) {
            float w = st->weights ? st->weights[i] : 1.0f;
            for (size_t r = 0; r < l->n; r++) {
                float s = w <= 0 ? 0 : 1.0f / ((float)(r + 1) / w + (float)st->rrf_k - 1.0f);
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
    qsort(e, m, sizeof(*e), cmp_hit_slot);
    size_t u = 0;
    for (size_t i = 0; i < m; i++) {
        if (u > 0 && e[u - 1].slot == e[i].slot)
            e[u - 1].score += e[i].score;
        else
            e[u++] = e[i];
    }
    size_t kept = 0;
    for (size_t i = 0; i < u; i++)
        if (!st->params.has_threshold || e[i].score >= st->params.score_threshold)
            e[kept++] = e[i];
    qsort(e, kept, sizeof(*e), cmp_hit_score);
    out->h = e;
    out->n = AG_MIN(k, kept);
    return 0;
}

static int union_slots(req_t *rq, const ranked_t *lists, size_t n, uint32_t **out, size_t *nout)
{
    size_t total = 0;
    for (size_t i = 0; i < n; i++)
        total += lists[i].n;
    uint32_t *s = req_alloc(rq, total, sizeof(uint32_t));
    if (!s)
        return AG_ENOMEM;
    size_t m = 0;
    for (size_t i = 0; i < n; i++)
        for (size_t r = 0; r < lists[i].n; r++)
            s[m++] = lists[i].h[r].slot;
    qsort(s, m, sizeof(uint32_t), cmp_u32);
    size_t u = 0;
    for (size_t i = 0; i < m; i++)
        if (u == 0 || s[u - 1] != s[i])
            s[u++] = s[i];
    *out = s;
    *nout = u;
    return 0;
}

/* The best k of a stage. Prefetches run once per request (their limits are fixed). */
static int run_stage(req_t *rq, stage_t *st, size_t k, ranked_t *out)
{
    memset(out, 0, sizeof(*out));
    int rc = ag_call_deadline(rq->call);
    if (rc)
        return rc;
    uint32_t *cand = NULL;
    size_t ncand = 0;
    if (st->npre) {
        ranked_t *lists = req_alloc(rq, st->npre, sizeof(*lists));
        if (!lists)
            return AG_ENOMEM;
        for (size_t i = 0; i < st->npre; i++) {
            stage_t *p = st->pre[i];
            if (!p->cached) {
                if ((rc = run_stage(rq, p, p->limit, &p->res)) != 0)
                    return rc;
                p->cached = true;
            }
            lists[i] = p->res;
        }
        if (st->kind == Q_RRF || st->kind == Q_DBSF)
            return fuse(rq, st, lists, k, out);
        if ((rc = union_slots(rq, lists, st->npre, &cand, &ncand)) != 0)
            return rc;
    }
    ag_index_filter_t f;
    stage_filter(st, cand, ncand, &f);
    switch (st->kind) {
    case Q_NEAREST:
        return score_nearest(rq, st, k, &f, out);
    case Q_RECO:
        return score_reco(rq, st, k, &f, out);
    case Q_ORDER_BY:
        return order_stage(rq, st, k, &f, out);
    case Q_SAMPLE:
        return sample_stage(rq, k, &f, out);
    case Q_NONE:
        return id_order_stage(rq, k, &f, out);
    case Q_RRF:
    case Q_DBSF:
        break;
    }
    return ag_fail(&rq->call->diag, AG_EINTERNAL, "fusion stage without prefetches");
}

/* ---- rendering ----------------------------------------------------------------------------- */

static json_t *order_value_json(double v)
{
    if (v == floor(v) && fabs(v) < 9.2e18)
        return json_integer((json_int_t)v);
    return json_real(v);
}

static json_t *render_hit(const req_t *rq, const ranked_t *r, size_t i)
{
    json_t *p =
        ag_render_point(rq->c, r->h[i].slot, &rq->ps, rq->wv, rq->which, true, r->h[i].score);
    if (p && r->ov)
        json_object_set_new(p, "order_value", order_value_json(r->ov[i]));
    return p;
}

static int run_list(req_t *rq, json_t **out)
{
    size_t offset = rq->offset;
    /* Qdrant ignores the offset of a random sample without prefetches (the order is unstable). */
    if (rq->root->kind == Q_SAMPLE && rq->root->npre == 0)
        offset = 0;
    ranked_t r;
    int rc = run_stage(rq, rq->root, offset + rq->limit, &r);
    if (rc)
        return rc;
    json_t *arr = json_array();
    if (!arr)
        return AG_ENOMEM;
    for (size_t i = offset; i < r.n; i++) {
        json_t *p = render_hit(rq, &r, i);
        if (!p || json_array_append_new(arr, p) != 0) {
            json_decref(arr);
            return AG_ENOMEM;
        }
    }
    *out = arr;
    return 0;
}

/* ---- groups -------------------------------------------------------------------------------- */

typedef struct group {
    const json_t *id; /* borrowed from a payload (read lock held) */
    size_t *hits;     /* indexes into the ranked list */
    size_t n, cap;
} group_t;

typedef struct gvals {
    const json_t *v[MAX_GROUP_VALUES];
    size_t n;
} gvals_t;

/* Group values are strings and integers; a point with an array is in each element's group. */
static void take_group_value(const json_t *v, void *ud)
{
    gvals_t *g = ud;
    if ((!json_is_string(v) && !json_is_integer(v)) || g->n == MAX_GROUP_VALUES)
        return;
    for (size_t i = 0; i < g->n; i++)
        if (json_equal(g->v[i], v))
            return;
    g->v[g->n++] = v;
}

/* The map key of a group value: "s<bytes>" or "i<decimal>" (arena). */
static char *group_key(req_t *rq, const json_t *v, size_t *len)
{
    if (json_is_integer(v)) {
        char *k = req_alloc(rq, 24, 1);
        if (k)
            *len = (size_t)snprintf(k, 24, "i%lld", (long long)json_integer_value(v));
        return k;
    }
    size_t n = json_string_length(v);
    char *k = req_alloc(rq, n + 2, 1);
    if (k) {
        k[0] = 's';
        memcpy(k + 1, json_string_value(v), n);
        *len = n + 1;
    }
    return k;
}

/* Groups from one ranked list: the first `limit` distinct values met are the groups with the
 * best hits; each keeps its best group_size hits. *complete: nothing more can change them. */
static int build_groups(req_t *rq, const ranked_t *r, group_t *g, size_t *ng, bool *complete)
{
    json_t *map = json_object();
    if (!map)
        return AG_ENOMEM;
    size_t full = 0;
    int rc = 0;
    gvals_t vals;
    *ng = 0;
    for (size_t i = 0; i < r->n && rc == 0; i++) {
        if (*ng == rq->limit && full == *ng)
            break;
        vals.n = 0;
        ag_payload_path_each(rq->c->slots[r->h[i].slot].payload, rq->group_by, take_group_value,
                             &vals);
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
                gr->id = vals.v[j];
            }
            if (gr->n == rq->group_size)
                continue;
            if (gr->n == gr->cap) {
                size_t cap = gr->cap ? AG_MIN(gr->cap * 2, rq->group_size) : 4;
                size_t *h = req_alloc(rq, cap, sizeof(size_t));
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
    json_decref(map);
    *complete = *ng == rq->limit && full == *ng;
    return rc;
}

/* Runs the top stage with a growing k until the groups are settled or the points run out. */
static int run_groups(req_t *rq, json_t **out)
{
    group_t *g = req_alloc(rq, rq->limit, sizeof(*g));
    if (!g)
        return AG_ENOMEM;
    size_t live = rq->c->live;
    size_t k = AG_MIN(AG_MAX(rq->limit * rq->group_size, (size_t)16), AG_MAX(live, (size_t)1));
    ranked_t r;
    size_t ng = 0;
    int rc;
    for (;;) {
        bool complete;
        if ((rc = run_stage(rq, rq->root, k, &r)) != 0 ||
            (rc = build_groups(rq, &r, g, &ng, &complete)) != 0)
            return rc;
        if (complete || r.n < k || k >= live)
            break;
        k = AG_MIN(k * 2, live);
    }
    json_t *arr = json_array();
    if (!arr)
        return AG_ENOMEM;
    for (size_t i = 0; i < ng; i++) {
        json_t *hits = json_array();
        for (size_t j = 0; hits && j < g[i].n; j++)
            json_array_append_new(hits, render_hit(rq, &r, g[i].hits[j]));
        json_t *o = json_pack("{s:o,s:o}", "id", json_deep_copy(g[i].id), "hits", hits);
        if (!o || json_array_append_new(arr, o) != 0) {
            json_decref(arr);
            return AG_ENOMEM;
        }
    }
    *out = arr;
    return 0;
}

/* with_lookup: each group's id names a point of another collection, returned beside the hits.
 * Runs after this collection's lock is released. */
static int fill_lookups(req_t *rq, json_t *groups)
{
    ag_collection_t *lc;
    ag_filter_t *restriction = NULL;
    char p[PATH_LEN];
    field(p, sizeof(p), rq->root->path, "with_lookup");
    int rc = open_other(rq, rq->wl_coll, p, &lc, &restriction);
    if (rc)
        return rc;
    ag_coll_read_begin(lc);
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
    ag_coll_read_end(lc);
    ag_coll_unref(lc);
    ag_filter_free(restriction);
    return 0;
}

/* ---- handlers ------------------------------------------------------------------------------ */

/* One request of any kind: parse, resolve, run under the read lock, render. */
static int run_one(ag_call_t *call, ag_collection_t *c, api_t api, bool groups, const json_t *body,
                   const char *path, json_t **out)
{
    req_t rq;
    memset(&rq, 0, sizeof(rq));
    rq.call = call;
    rq.c = c;
    rq.api = api;
    rq.groups = groups;
    json_t *res = NULL;
    int rc = parse_request(&rq, body, path);
    if (rc == 0)
        rc = resolve_lookups(&rq);
    if (rc == 0) {
        ag_coll_read_begin(c);
        rc = resolve_local(&rq);
        if (rc == 0)
            rc = groups ? run_groups(&rq, &res) : run_list(&rq, &res);
        ag_coll_read_end(c);
    }
    if (rc == 0 && groups && rq.wl_coll)
        rc = fill_lookups(&rq, res);
    req_release(&rq);
    if (rc) {
        json_decref(res);
        return rc;
    }
    if (groups)
        *out = json_pack("{s:o}", "groups", res);
    else if (api == API_QUERY)
        *out = json_pack("{s:o}", "points", res);
    else
        *out = res;
    return *out ? 0 : AG_ENOMEM;
}

/* What a request asks for, counted from the JSON before anything runs. Values the parser will
 * refuse count as their defaults or caps here; the parser reports them. */
typedef struct tally {
    size_t stages, examples;
    uint64_t results;
} tally_t;

static uint64_t count_or(const json_t *obj, const char *key, uint64_t dflt, uint64_t cap)
{
    const json_t *v = json_object_get(obj, key);
    if (!json_is_integer(v) || json_integer_value(v) < 0)
        return dflt;
    return AG_MIN((uint64_t)json_integer_value(v), cap);
}

static void tally_stage(const json_t *q, api_t api, bool top, bool groups, int depth, tally_t *t)
{
    if (!json_is_object(q) || depth > MAX_DEPTH + 1)
        return;
    t->stages++;
    uint64_t limit = count_or(q, "limit", DEFAULT_LIMIT, AG_MAX_LIMIT);
    if (top && groups)
        limit *= count_or(q, "group_size", DEFAULT_GROUP_SIZE, AG_MAX_LIMIT);
    if (top)
        limit += count_or(q, "offset", 0, MAX_OFFSET);
    t->results += limit;
    const json_t *r =
        api == API_RECOMMEND ? q : json_object_get(json_object_get(q, "query"), "recommend");
    t->examples += json_array_size(json_object_get(r, "positive")) +
                   json_array_size(json_object_get(r, "negative"));
    if (api != API_QUERY)
        return;
    const json_t *pf = json_object_get(q, "prefetch");
    if (json_is_object(pf))
        tally_stage(pf, api, false, false, depth + 1, t);
    for (size_t i = 0; i < json_array_size(pf); i++)
        tally_stage(json_array_get(pf, i), api, false, false, depth + 1, t);
}

/* Refuses a request whose queries, examples or results add up to more than the budgets. */
static int check_budgets(ag_call_t *call, api_t api, const json_t *list, bool groups)
{
    tally_t t = {0};
    if (list)
        for (size_t i = 0; i < json_array_size(list); i++)
            tally_stage(json_array_get(list, i), api, true, false, 0, &t);
    else
        tally_stage(call->body, api, true, groups, 0, &t);
    const char *where = list ? "searches" : "prefetch";
    if (t.stages > MAX_REQ_STAGES)
        return ag_fail(&call->diag, AG_EINVAL,
                       "%s: at most %d queries and prefetches in one request, got %zu", where,
                       MAX_REQ_STAGES, t.stages);
    if (t.examples > MAX_REQ_EXAMPLES)
        return ag_fail(&call->diag, AG_EINVAL,
                       "%s: at most %d positive and negative examples in one request, got %zu",
                       list ? "searches" : "positive", MAX_REQ_EXAMPLES, t.examples);
    if (t.results > MAX_REQ_RESULTS)
        return ag_fail(&call->diag, AG_EINVAL,
                       "%s: the limits of one request (limit + offset of every query and "
                       "prefetch%s) add up to at most %u, got %llu",
                       list ? "searches" : "limit", groups ? ", limit x group_size for groups" : "",
                       MAX_REQ_RESULTS, (unsigned long long)t.results);
    return 0;
}

static int handle(ag_call_t *call, api_t api, bool batch, bool groups)
{
    const json_t *list = NULL;
    int rc;
    if (batch) {
        if ((rc = AG_JSON_ONLY(call->body, "", &call->diag, "searches")) != 0)
            return rc;
        list = json_object_get(call->body, "searches");
        if (!json_is_array(list))
            return ag_fail(&call->diag, AG_EINVAL, "searches: expected an array of requests");
        if (json_array_size(list) > MAX_SEARCHES)
            return ag_fail(&call->diag, AG_EINVAL, "searches: at most %d requests per batch",
                           MAX_SEARCHES);
    }
    if ((rc = check_budgets(call, api, list, groups)) != 0)
        return rc;
    ag_collection_t *c;
    if ((rc = ag_call_collection(call, &c)) != 0)
        return rc;
    json_t *result = NULL;
    if (batch) {
        result = json_array();
        rc = result ? 0 : AG_ENOMEM;
        for (size_t i = 0; rc == 0 && i < json_array_size(list); i++) {
            char p[PATH_LEN];
            json_t *one = NULL;
            pathf(p, sizeof(p), "searches[%zu]", i);
            if ((rc = ag_call_deadline(call)) != 0)
                break;
            rc = run_one(call, c, api, false, json_array_get(list, i), p, &one);
            if (rc == 0 && json_array_append_new(result, one) != 0)
                rc = AG_ENOMEM;
        }
    } else {
        rc = run_one(call, c, api, groups, call->body, "", &result);
    }
    ag_coll_unref(c);
    if (rc) {
        json_decref(result);
        return rc;
    }
    call->result = result;
    return 0;
}

static int h_search(ag_call_t *call)
{
    return handle(call, API_SEARCH, false, false);
}

static int h_search_batch(ag_call_t *call)
{
    return handle(call, API_SEARCH, true, false);
}

static int h_search_groups(ag_call_t *call)
{
    return handle(call, API_SEARCH, false, true);
}

static int h_recommend(ag_call_t *call)
{
    return handle(call, API_RECOMMEND, false, false);
}

static int h_recommend_batch(ag_call_t *call)
{
    return handle(call, API_RECOMMEND, true, false);
}

static int h_recommend_groups(ag_call_t *call)
{
    return handle(call, API_RECOMMEND, false, true);
}

static int h_query(ag_call_t *call)
{
    return handle(call, API_QUERY, false, false);
}

static int h_query_batch(ag_call_t *call)
{
    return handle(call, API_QUERY, true, false);
}

static int h_query_groups(ag_call_t *call)
{
    return handle(call, API_QUERY, false, true);
}

const ag_route_t ag_routes_search[] = {
    {AG_HTTP_POST, "/collections/{name}/points/search", "read:data", AG_SCOPE_COLLECTION, h_search,
     true, false, false, false, true},
    {AG_HTTP_POST, "/collections/{name}/points/search/batch", "read:data", AG_SCOPE_COLLECTION,
     h_search_batch, true, false, false, false, true},
    {AG_HTTP_POST, "/collections/{name}/points/search/groups", "read:data", AG_SCOPE_COLLECTION,
     h_search_groups, true, false, false, false, true},
    {AG_HTTP_POST, "/collections/{name}/points/recommend", "read:data", AG_SCOPE_COLLECTION,
     h_recommend, true, false, false, false, true},
    {AG_HTTP_POST, "/collections/{name}/points/recommend/batch", "read:data", AG_SCOPE_COLLECTION,
     h_recommend_batch, true, false, false, false, true},
    {AG_HTTP_POST, "/collections/{name}/points/recommend/groups", "read:data", AG_SCOPE_COLLECTION,
     h_recommend_groups, true, false, false, false, true},
    {AG_HTTP_POST, "/collections/{name}/points/query", "read:data", AG_SCOPE_COLLECTION, h_query,
     true, false, false, false, true},
    {AG_HTTP_POST, "/collections/{name}/points/query/batch", "read:data", AG_SCOPE_COLLECTION,
     h_query_batch, true, false, false, false, true},
    {AG_HTTP_POST, "/collections/{name}/points/query/groups", "read:data", AG_SCOPE_COLLECTION,
     h_query_groups, true, false, false, false, true},
};
const size_t ag_routes_search_len = AG_ARRAY_LEN(ag_routes_search);
