/*
 * Parsing of search, recommend and query requests (docs/API.md) into a tree of stages, Qdrant's
 * universal query: a stage ranks points with its query, over the whole collection or, when it has
 * prefetches, over the union of what they returned. Legacy search and recommend are one-stage
 * trees. Vectors are checked against the collection's config; each stage's scope is compiled
 * with ag_scope_init (its own filter AND the caller's row restriction). Nothing here reads
 * points: ids used as vectors are resolved by the executor (ag_qexec.c).
 */
#include <math.h>
#include <stdio.h>

#include "query/ag_formula.h"
#include "query/ag_query_int.h"
#include "json/ag_json.h"

/* ---- small helpers ------------------------------------------------------------------------- */

void ag_q__pathf(char *buf, size_t len, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, len, fmt, ap);
    va_end(ap);
    if (n < 0)
        buf[0] = '\0';
}

/* "<path>.<key>", or "<key>" at the top level. */
void ag_q__field(char *buf, size_t len, const char *path, const char *key)
{
    ag_q__pathf(buf, len, "%s%s%s", path, *path ? "." : "", key);
}

void *ag_q__alloc(ag_query_t *rq, size_t n, size_t size)
{
    if (n == 0)
        n = 1;
    if (size && n > SIZE_MAX / size)
        return NULL;
    return ag_arena_calloc(rq->ctx->arena, n, size);
}

/* Prefixes a diagnostic written by a shared parser with where its input sits in a batch. */
int ag_q__prefixed(ag_query_t *rq, const char *path, int rc)
{
    if (rc && *path) {
        char msg[sizeof(rq->ctx->diag->msg)];
        snprintf(msg, sizeof(msg), "%s", rq->ctx->diag->msg);
        ag_fail(rq->ctx->diag, rc, "%s: %s", path, msg);
    }
    return rc;
}

int ag_q__cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

int ag_q__cmp_hit_slot(const void *a, const void *b)
{
    const ag_hit_t *x = a, *y = b;
    return x->slot < y->slot ? -1 : x->slot > y->slot;
}

/* Best first: higher score, then smaller slot (the order ag_index.h promises). */
int ag_q__cmp_hit_score(const void *a, const void *b)
{
    const ag_hit_t *x = a, *y = b;
    if (x->score != y->score)
        return x->score > y->score ? -1 : 1;
    return x->slot < y->slot ? -1 : x->slot > y->slot;
}

const char *ag_q__vector_label(const char *name)
{
    return *name ? name : "(default)";
}

/* ---- parsing ------------------------------------------------------------------------------- */

static int new_stage(ag_query_t *rq, ag_stage_t *parent, const char *path, ag_stage_t **out)
{
    if (rq->nall == AG_Q_MAX_STAGES)
        return ag_fail(rq->ctx->diag, AG_EINVAL, "%s: at most %d prefetches per request",
                       *path ? path : "prefetch", AG_Q_MAX_STAGES - 1);
    if (!rq->all && !(rq->all = ag_q__alloc(rq, AG_Q_MAX_STAGES, sizeof(*rq->all))))
        return AG_ENOMEM;
    ag_stage_t *st = ag_q__alloc(rq, 1, sizeof(*st));
    if (!st)
        return AG_ENOMEM;
    st->rq = rq;
    st->parent = parent;
    ag_q__pathf(st->path, sizeof(st->path), "%s", path);
    st->using_name = "";
    st->vi = st->si = -1;
    st->limit = AG_Q_DEFAULT_LIMIT;
    st->rrf_k = AG_Q_DEFAULT_RRF_K;
    st->params.deadline = rq->ctx->deadline;
    st->scope.c = rq->c;
    st->scope.restriction = rq->ctx->restriction;
    rq->all[rq->nall++] = st;
    *out = st;
    return 0;
}

void ag_query_release(ag_query_t *rq)
{
    for (size_t i = 0; i < rq->nall; i++) {
        ag_scope_release(&rq->all[i]->scope);
        ag_formula_release(rq->all[i]->formula);
    }
    rq->nall = 0;
}

/* An id used as an example in this collection must not come back in the results. */
static int note_example_id(ag_query_t *rq, const ag_stage_t *st, const ag_point_id_t *id)
{
    if (st->lookup_coll)
        return 0;
    if (rq->nexcl_ids == rq->cap_excl_ids) {
        size_t cap = rq->cap_excl_ids ? rq->cap_excl_ids * 2 : 16;
        ag_point_id_t *g = ag_q__alloc(rq, cap, sizeof(*g));
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
static int resolve_using(ag_query_t *rq, ag_stage_t *st, const char *where)
{
    st->vi = ag_coll_vector(rq->c, st->using_name);
    st->si = st->vi >= 0 ? -1 : ag_coll_sparse(rq->c, st->using_name);
    if (st->vi < 0 && st->si < 0)
        return ag_fail(rq->ctx->diag, AG_EINVAL,
                       "Wrong input: Not existing vector name error: %.200s (%s)", st->using_name,
                       where);
    return 0;
}

/* A vector input: a dense vector, a sparse {indices, values} or a point id. */
static int parse_vin(ag_query_t *rq, ag_stage_t *st, const json_t *v, const char *path,
                     ag_vin_t *out)
{
    memset(out, 0, sizeof(*out));
    if (json_is_integer(v) || json_is_string(v)) {
        int rc = ag_id_parse(v, &out->id, path, rq->ctx->diag);
        if (rc)
            return rc;
        out->by_id = true;
        return note_example_id(rq, st, &out->id);
    }
    if (json_is_array(v)) {
        if (st->si >= 0)
            return ag_fail(rq->ctx->diag, AG_EINVAL,
                           "Wrong input: %s: `%.200s` is a sparse vector, expected "
                           "{indices, values}",
                           path, st->using_name);
        float *f = NULL;
        int rc = ag_parse_dense_rows(rq->ctx->arena, rq->c, st->vi, v, path, &f, &out->rows,
                                     rq->ctx->diag);
        out->dense = f;
        return rc;
    }
    if (json_is_object(v) && (json_object_get(v, "indices") || json_object_get(v, "values"))) {
        if (st->vi >= 0)
            return ag_fail(rq->ctx->diag, AG_EINVAL,
                           "Wrong input: %s: vector `%.200s` is dense, a sparse vector was given",
                           path, ag_q__vector_label(st->using_name));
        return ag_parse_sparse(rq->ctx->arena, v, path, &out->sp, rq->ctx->diag);
    }
    if (json_is_object(v) && (json_object_get(v, "text") || json_object_get(v, "image") ||
                              json_object_get(v, "object") || json_object_get(v, "model")))
        return ag_fail(rq->ctx->diag, AG_EINVAL,
                       "Bad request: %s: inference from documents, images or objects is not "
                       "supported; pass a vector or a point id",
                       path);
    return ag_fail(rq->ctx->diag, AG_EINVAL,
                   "%s: expected a vector, a sparse vector {indices, values} or a point id", path);
}

static int parse_examples(ag_query_t *rq, ag_stage_t *st, const json_t *obj, const char *path,
                          const char *key, ag_vin_t **out, size_t *n)
{
    char p[AG_QUERY_PATH_LEN], ep[AG_QUERY_PATH_LEN];
    ag_q__field(p, sizeof(p), path, key);
    const json_t *arr = json_object_get(obj, key);
    *out = NULL;
    *n = 0;
    if (!arr || json_is_null(arr))
        return 0;
    if (!json_is_array(arr))
        return ag_fail(rq->ctx->diag, AG_EINVAL, "%s: expected an array of point ids or vectors",
                       p);
    size_t len = json_array_size(arr);
    if (len > AG_Q_MAX_EXAMPLES)
        return ag_fail(rq->ctx->diag, AG_EINVAL, "%s: at most %d examples, got %zu", p,
                       AG_Q_MAX_EXAMPLES, len);
    ag_vin_t *v = ag_q__alloc(rq, len, sizeof(*v));
    if (!v)
        return AG_ENOMEM;
    for (size_t i = 0; i < len; i++) {
        ag_q__pathf(ep, sizeof(ep), "%s[%zu]", p, i);
        int rc = parse_vin(rq, st, json_array_get(arr, i), ep, &v[i]);
        if (rc)
            return rc;
    }
    *out = v;
    *n = len;
    return 0;
}

/* Discovery (target given) or context (target NULL; path names the context itself): pairs of
 * {positive, negative}, one object or an array of them. `using` is resolved already. */
static int parse_discover(ag_query_t *rq, ag_stage_t *st, const json_t *target,
                          const json_t *context, const char *path)
{
    ag_diag_t *d = rq->ctx->diag;
    char p[AG_QUERY_PATH_LEN], cp[AG_QUERY_PATH_LEN], ep[AG_QUERY_PATH_LEN];
    int rc;
    st->kind = AG_Q_RECO;
    st->strategy = target ? AG_RECO_DISCOVER : AG_RECO_CONTEXT;
    if (target) {
        ag_q__field(p, sizeof(p), path, "target");
        if (json_is_null(target))
            return ag_fail(d, AG_EINVAL, "%s: required", p);
        if ((rc = parse_vin(rq, st, target, p, &st->nearest)) != 0)
            return rc;
        ag_q__field(cp, sizeof(cp), path, "context");
    } else {
        ag_q__pathf(cp, sizeof(cp), "%s", path);
    }
    size_t n = json_is_array(context) ? json_array_size(context) : json_is_object(context) ? 1 : 0;
    if (context && !json_is_null(context) && !json_is_array(context) && !json_is_object(context))
        return ag_fail(d, AG_EINVAL, "%s: expected a {positive, negative} pair or an array of them",
                       cp);
    if (!target && n == 0)
        return ag_fail(d, AG_EUNPROCESSABLE,
                       "Validation error in JSON body: %s: at least one {positive, negative} pair "
                       "is required",
                       cp);
    if (2 * n > AG_Q_MAX_EXAMPLES)
        return ag_fail(d, AG_EINVAL, "%s: at most %d pairs, got %zu", cp, AG_Q_MAX_EXAMPLES / 2, n);
    st->pos = ag_q__alloc(rq, n ? n : 1, sizeof(ag_vin_t));
    st->neg = ag_q__alloc(rq, n ? n : 1, sizeof(ag_vin_t));
    if (!st->pos || !st->neg)
        return AG_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        const json_t *pair = json_is_array(context) ? json_array_get(context, i) : context;
        if (json_is_array(context))
            ag_q__pathf(ep, sizeof(ep), "%s[%zu]", cp, i);
        else
            ag_q__pathf(ep, sizeof(ep), "%s", cp);
        if (!json_is_object(pair))
            return ag_fail(d, AG_EINVAL, "%s: expected {positive, negative}", ep);
        if ((rc = AG_JSON_ONLY(pair, ep, d, "positive", "negative")) != 0)
            return rc;
        static const char *const sides[] = {"positive", "negative"};
        for (int sd = 0; sd < 2; sd++) {
            const json_t *v = json_object_get(pair, sides[sd]);
            ag_q__field(p, sizeof(p), ep, sides[sd]);
            if (!v || json_is_null(v))
                return ag_fail(d, AG_EINVAL, "%s: required", p);
            if ((rc = parse_vin(rq, st, v, p, sd ? &st->neg[i] : &st->pos[i])) != 0)
                return rc;
        }
    }
    st->npos = st->nneg = n;
    return 0;
}

/* {positive, negative, strategy}; the stage's `using` is resolved already. */
static int parse_reco(ag_query_t *rq, ag_stage_t *st, const json_t *obj, const char *path)
{
    ag_diag_t *d = rq->ctx->diag;
    char p[AG_QUERY_PATH_LEN];
    const char *s = NULL;
    int rc = ag_json_get_str(obj, "strategy", path, &s, d);
    if (rc)
        return rc;
    st->kind = AG_Q_RECO;
    st->strategy = AG_RECO_AVERAGE;
    if (s) {
        if (strcmp(s, "average_vector") == 0) {
            st->strategy = AG_RECO_AVERAGE;
        } else if (strcmp(s, "best_score") == 0) {
            st->strategy = AG_RECO_BEST;
        } else if (strcmp(s, "sum_scores") == 0) {
            st->strategy = AG_RECO_SUM;
        } else {
            ag_q__field(p, sizeof(p), path, "strategy");
            return ag_fail(d, AG_EINVAL, "%s: expected average_vector, best_score or sum_scores",
                           p);
        }
    }
    if ((rc = parse_examples(rq, st, obj, path, "positive", &st->pos, &st->npos)) != 0 ||
        (rc = parse_examples(rq, st, obj, path, "negative", &st->neg, &st->nneg)) != 0)
        return rc;
    if (st->npos + st->nneg > AG_Q_MAX_EXAMPLES)
        return ag_fail(d, AG_EINVAL,
                       "%s: at most %d positive and negative examples together, got %zu",
                       *path ? path : "positive", AG_Q_MAX_EXAMPLES, st->npos + st->nneg);
    ag_q__field(p, sizeof(p), path, "positive");
    if (st->strategy == AG_RECO_AVERAGE && st->npos == 0)
        return ag_fail(d, AG_EUNPROCESSABLE,
                       "Wrong input: Positive vectors should not be empty with `average` "
                       "strategy (%s)",
                       p);
    if (st->npos + st->nneg == 0)
        return ag_fail(d, AG_EUNPROCESSABLE,
                       "Wrong input: At least one positive or negative example is required (%s)",
                       p);
    return 0;
}

static int parse_params(ag_query_t *rq, ag_stage_t *st, const json_t *obj, const char *path)
{
    ag_diag_t *d = rq->ctx->diag;
    const json_t *p;
    char pp[AG_QUERY_PATH_LEN], qp[AG_QUERY_PATH_LEN];
    int rc = ag_json_get_obj(obj, "params", path, &p, d);
    if (rc || !p)
        return rc;
    ag_q__field(pp, sizeof(pp), path, "params");
    if ((rc = AG_JSON_ONLY(p, pp, d, "hnsw_ef", "exact", "quantization", "indexed_only",
                           "acorn")) != 0)
        return rc;
    uint64_t ef = 0;
    bool exact = false, indexed_only = false;
    if ((rc = ag_json_get_uint(p, "hnsw_ef", pp, UINT32_MAX, &ef, d)) != 0 ||
        (rc = ag_json_get_bool(p, "exact", pp, &exact, d)) != 0 ||
        (rc = ag_json_get_bool(p, "indexed_only", pp, &indexed_only, d)) != 0)
        return rc;
    if (json_is_integer(json_object_get(p, "hnsw_ef")) && ef == 0)
        return ag_fail(d, AG_EUNPROCESSABLE,
                       "Validation error in JSON body: %s.hnsw_ef: must be at least 1", pp);
    st->params.ef = (uint32_t)ef;
    st->params.exact = exact;
    const json_t *q;
    if ((rc = ag_json_get_obj(p, "quantization", pp, &q, d)) != 0)
        return rc;
    if (q) {
        /* Honoured by a vector with quantization_config (index/ag_quant.h), moot for others. */
        bool ignore = false, rescore = true;
        double over = 1;
        ag_q__field(qp, sizeof(qp), pp, "quantization");
        if ((rc = AG_JSON_ONLY(q, qp, d, "ignore", "rescore", "oversampling")) != 0 ||
            (rc = ag_json_get_bool(q, "ignore", qp, &ignore, d)) != 0 ||
            (rc = ag_json_get_bool(q, "rescore", qp, &rescore, d)) != 0 ||
            (rc = ag_json_get_float(q, "oversampling", qp, &over, d)) != 0)
            return rc;
        if (!(over >= 1))
            return ag_fail(d, AG_EUNPROCESSABLE, "%s.oversampling: must be at least 1", qp);
        if (over > 1000)
            return ag_fail(d, AG_EUNPROCESSABLE, "%s.oversampling: at most 1000", qp);
        st->params.quant_ignore = ignore;
        st->params.quant_no_rescore = !rescore;
        st->params.oversampling = over;
    }
    const json_t *a;
    if ((rc = ag_json_get_obj(p, "acorn", pp, &a, d)) != 0)
        return rc;
    if (a) {
        bool b = false;
        double sel = 0;
        ag_q__field(qp, sizeof(qp), pp, "acorn");
        if ((rc = AG_JSON_ONLY(a, qp, d, "enable", "max_selectivity")) != 0 ||
            (rc = ag_json_get_bool(a, "enable", qp, &b, d)) != 0 ||
            (rc = ag_json_get_float(a, "max_selectivity", qp, &sel, d)) != 0)
            return rc;
    }
    return 0;
}

static int parse_threshold(ag_query_t *rq, ag_stage_t *st, const json_t *obj, const char *path)
{
    const json_t *v = json_object_get(obj, "score_threshold");
    if (!v || json_is_null(v))
        return 0;
    double t = 0;
    int rc = ag_json_get_float(obj, "score_threshold", path, &t, rq->ctx->diag);
    if (rc)
        return rc;
    float f = (float)t;
    if (!isfinite(f)) {
        char p[AG_QUERY_PATH_LEN];
        ag_q__field(p, sizeof(p), path, "score_threshold");
        return ag_fail(rq->ctx->diag, AG_EINVAL, "%s: not a finite float32", p);
    }
    st->params.has_threshold = true;
    st->params.score_threshold = f;
    return 0;
}

static int parse_limit(ag_query_t *rq, const json_t *obj, const char *path, const char *key,
                       size_t dflt, size_t *out)
{
    uint64_t v = dflt;
    /* Like Qdrant, a limit above what can ever be returned means "all": it is clamped to
     * AG_MAX_LIMIT (integers beyond i64 arrive as u64 marker strings). */
    const json_t *lv = json_object_get(obj, key);
    if ((json_is_integer(lv) && json_integer_value(lv) > AG_MAX_LIMIT) ||
        (json_is_string(lv) &&
         strncmp(json_string_value(lv), AG_U64_MARKER, sizeof(AG_U64_MARKER) - 1) == 0)) {
        *out = AG_MAX_LIMIT;
        return 0;
    }
    int rc = ag_json_get_uint(obj, key, path, AG_MAX_LIMIT, &v, rq->ctx->diag);
    if (rc)
        return rc;
    if (v == 0) {
        char p[AG_QUERY_PATH_LEN];
        ag_q__field(p, sizeof(p), path, key);
        /* Qdrant's wording; it names the request's own limit "internal.limit" */
        return ag_fail(
            rq->ctx->diag, AG_EUNPROCESSABLE,
            "Validation error in JSON body: [%s%s: value 0 invalid, must be 1 or larger]",
            *path ? "" : "internal.", p);
    }
    *out = (size_t)v;
    return 0;
}

static int parse_collection_name(ag_query_t *rq, const json_t *obj, const char *path,
                                 const char **out)
{
    char p[AG_QUERY_PATH_LEN];
    ag_q__field(p, sizeof(p), path, "collection");
    const json_t *v = json_object_get(obj, "collection");
    if (!json_is_string(v))
        return ag_fail(rq->ctx->diag, AG_EINVAL, "%s: expected a collection name", p);
    int rc = ag_name_check(json_string_value(v), json_string_length(v), p, rq->ctx->diag);
    if (rc)
        return rc;
    *out = json_string_value(v);
    return 0;
}

static int parse_lookup_from(ag_query_t *rq, ag_stage_t *st, const json_t *obj, const char *path)
{
    ag_diag_t *d = rq->ctx->diag;
    const json_t *lf;
    int rc = ag_json_get_obj(obj, "lookup_from", path, &lf, d);
    if (rc || !lf)
        return rc;
    char p[AG_QUERY_PATH_LEN];
    ag_q__field(p, sizeof(p), path, "lookup_from");
    const char *coll = NULL, *vec = NULL;
    if ((rc = AG_JSON_ONLY(lf, p, d, "collection", "vector", "shard_key")) != 0 ||
        (rc = parse_collection_name(rq, lf, p, &coll)) != 0 ||
        (rc = ag_json_get_str(lf, "vector", p, &vec, d)) != 0)
        return rc;
    st->lookup_vec = vec;
    bool same = strcmp(coll, ag_coll_name(rq->c)) == 0 || strcmp(coll, rq->ctx->path_name) == 0;
    st->lookup_coll = same ? NULL : coll;
    return 0;
}

/* The fields every stage shares: using, lookup_from, filter, params, score_threshold, limit. */
static int parse_stage_fields(ag_query_t *rq, ag_stage_t *st, const json_t *obj, const char *path,
                              bool with_limit)
{
    const char *u = NULL;
    int rc = ag_json_get_str(obj, "using", path, &u, rq->ctx->diag);
    if (rc)
        return rc;
    if (u)
        st->using_name = u;
    st->filter_json = json_object_get(obj, "filter");
    if ((rc = parse_lookup_from(rq, st, obj, path)) != 0 ||
        (rc = ag_scope_init(&st->scope, rq->c, rq->ctx->restriction, json_object_get(obj, "filter"),
                            path, rq->ctx->diag)) != 0 ||
        (rc = parse_params(rq, st, obj, path)) != 0 ||
        (rc = parse_threshold(rq, st, obj, path)) != 0)
        return rc;
    if (with_limit)
        return parse_limit(rq, obj, path, "limit", AG_Q_DEFAULT_LIMIT, &st->limit);
    return 0;
}

static int parse_rrf(ag_query_t *rq, ag_stage_t *st, const json_t *x, const char *p)
{
    ag_diag_t *d = rq->ctx->diag;
    char wp[AG_QUERY_PATH_LEN];
    if (!json_is_object(x))
        return ag_fail(d, AG_EINVAL, "%s: expected an object {k, weights}", p);
    int rc = AG_JSON_ONLY(x, p, d, "k", "weights");
    if (rc)
        return rc;
    uint64_t k = AG_Q_DEFAULT_RRF_K;
    if ((rc = ag_json_get_uint(x, "k", p, 1u << 20, &k, d)) != 0)
        return rc;
    if (k == 0)
        return ag_fail(d, AG_EUNPROCESSABLE, "%s.k: must be at least 1", p);
    st->kind = AG_Q_RRF;
    st->rrf_k = (uint32_t)k;
    const json_t *w = json_object_get(x, "weights");
    if (!w || json_is_null(w))
        return 0;
    ag_q__field(wp, sizeof(wp), p, "weights");
    if (!json_is_array(w) || json_array_size(w) > AG_Q_MAX_STAGES)
        return ag_fail(d, AG_EINVAL, "%s: expected an array of numbers", wp);
    st->nweights = json_array_size(w);
    if (!(st->weights = ag_q__alloc(rq, st->nweights, sizeof(float))))
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
/* {"diversity": 0..1 (0.5), "candidates_limit": n (100)}: maximal marginal relevance over the
 * nearest candidates of a dense vector (docs/COMPATIBILITY.md "Points and vectors"). */
static int parse_mmr(ag_query_t *rq, ag_stage_t *st, const json_t *mmr, const char *qp)
{
    ag_diag_t *d = rq->ctx->diag;
    char p[AG_QUERY_PATH_LEN];
    ag_q__field(p, sizeof(p), qp, "mmr");
    if (!json_is_object(mmr))
        return ag_fail(d, AG_EINVAL, "%s: expected {diversity, candidates_limit}", p);
    int rc = AG_JSON_ONLY(mmr, p, d, "diversity", "candidates_limit");
    if (rc)
        return rc;
    if (st->si >= 0)
        return ag_fail(d, AG_EINVAL,
                       "Bad request: %s: maximal marginal relevance needs a dense vector, "
                       "`%.200s` is sparse",
                       p, st->using_name);
    double div = 0.5;
    uint64_t cand = 100;
    if ((rc = ag_json_get_float(mmr, "diversity", p, &div, d)) != 0 ||
        (rc = ag_json_get_uint(mmr, "candidates_limit", p, AG_MAX_LIMIT, &cand, d)) != 0)
        return rc;
    if (div < 0 || div > 1)
        return ag_fail(d, AG_EUNPROCESSABLE,
                       "Validation error in JSON body: %s.diversity: must be from 0 to 1", p);
    if (cand == 0)
        return ag_fail(d, AG_EUNPROCESSABLE,
                       "Validation error in JSON body: %s.candidates_limit: must be at least 1", p);
    st->mmr = true;
    st->mmr_diversity = (float)div;
    st->mmr_candidates = (size_t)cand;
    return 0;
}

static int parse_query(ag_query_t *rq, ag_stage_t *st, const json_t *q, const char *qp)
{
    ag_diag_t *d = rq->ctx->diag;
    char p[AG_QUERY_PATH_LEN], up[AG_QUERY_PATH_LEN];
    int rc;
    ag_q__field(up, sizeof(up), st->path, "using");
    if (!q || json_is_null(q)) {
        st->kind = AG_Q_NONE;
        return 0;
    }
    if (json_is_object(q)) {
        static const char *const unsupported[] = {"relevance_feedback", "mmr"};
        for (size_t i = 0; i < AG_ARRAY_LEN(unsupported); i++)
            if (json_object_get(q, unsupported[i]) && !json_object_get(q, "nearest"))
                return ag_fail(d, AG_EINVAL,
                               "Bad request: %s: `%s` queries are not supported by this server", qp,
                               unsupported[i]);
        const json_t *x;
        if ((x = json_object_get(q, "nearest")) != NULL) {
            if ((rc = AG_JSON_ONLY(q, qp, d, "nearest", "mmr")) != 0)
                return rc;
            ag_q__field(p, sizeof(p), qp, "nearest");
            st->kind = AG_Q_NEAREST;
            if ((rc = resolve_using(rq, st, up)) != 0)
                return rc;
            const json_t *mmr = json_object_get(q, "mmr");
            if (mmr && !json_is_null(mmr) && (rc = parse_mmr(rq, st, mmr, qp)) != 0)
                return rc;
            return parse_vin(rq, st, x, p, &st->nearest);
        }
        if ((x = json_object_get(q, "discover")) != NULL) {
            ag_q__field(p, sizeof(p), qp, "discover");
            if ((rc = AG_JSON_ONLY(q, qp, d, "discover")) != 0)
                return rc;
            if (!json_is_object(x))
                return ag_fail(d, AG_EINVAL, "%s: expected {target, context}", p);
            if ((rc = AG_JSON_ONLY(x, p, d, "target", "context")) != 0 ||
                (rc = resolve_using(rq, st, up)) != 0)
                return rc;
            const json_t *t = json_object_get(x, "target");
            if (!t || json_is_null(t))
                return ag_fail(d, AG_EINVAL, "%s.target: required", p);
            return parse_discover(rq, st, t, json_object_get(x, "context"), p);
        }
        if ((x = json_object_get(q, "context")) != NULL) {
            ag_q__field(p, sizeof(p), qp, "context");
            if ((rc = AG_JSON_ONLY(q, qp, d, "context")) != 0 ||
                (rc = resolve_using(rq, st, up)) != 0)
                return rc;
            return parse_discover(rq, st, NULL, x, p);
        }
        if ((x = json_object_get(q, "recommend")) != NULL) {
            ag_q__field(p, sizeof(p), qp, "recommend");
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
            st->kind = AG_Q_ORDER_BY;
            st->order_by_json = x;
            return 0;
        }
        if ((x = json_object_get(q, "fusion")) != NULL) {
            if ((rc = AG_JSON_ONLY(q, qp, d, "fusion")) != 0)
                return rc;
            const char *s = json_string_value(x);
            if (s && strcmp(s, "rrf") == 0) {
                st->kind = AG_Q_RRF;
            } else if (s && strcmp(s, "dbsf") == 0) {
                st->kind = AG_Q_DBSF;
            } else {
                return ag_fail(d, AG_EINVAL, "%s.fusion: expected rrf or dbsf", qp);
            }
            return 0;
        }
        if ((x = json_object_get(q, "rrf")) != NULL) {
            if ((rc = AG_JSON_ONLY(q, qp, d, "rrf")) != 0)
                return rc;
            ag_q__field(p, sizeof(p), qp, "rrf");
            return parse_rrf(rq, st, x, p);
        }
        if ((x = json_object_get(q, "formula")) != NULL) {
            if ((rc = AG_JSON_ONLY(q, qp, d, "formula", "defaults")) != 0)
                return rc;
            st->kind = AG_Q_FORMULA;
            return ag_formula_parse(rq->ctx->arena, x, json_object_get(q, "defaults"), qp, d,
                                    &st->formula);
        }
        if ((x = json_object_get(q, "sample")) != NULL) {
            if ((rc = AG_JSON_ONLY(q, qp, d, "sample")) != 0)
                return rc;
            if (!json_is_string(x) || strcmp(json_string_value(x), "random") != 0)
                return ag_fail(d, AG_EINVAL, "%s.sample: expected random", qp);
            st->kind = AG_Q_SAMPLE;
            return 0;
        }
    }
    st->kind = AG_Q_NEAREST;
    if ((rc = resolve_using(rq, st, up)) != 0)
        return rc;
    return parse_vin(rq, st, q, qp, &st->nearest);
}

/* Qdrant's rules for a stage, checked once its query and prefetches are known. */
static int check_stage(ag_query_t *rq, const ag_stage_t *st, const char *qp)
{
    ag_diag_t *d = rq->ctx->diag;
    bool fusion = st->kind == AG_Q_RRF || st->kind == AG_Q_DBSF;
    /* Qdrant's exact wording for the top-level query; a prefetch's path is added after it. */
    bool top = strcmp(qp, "query") == 0;
    const char *open = top ? "" : " (", *where = top ? "" : qp, *close = top ? "" : ")";
    if (st->npre && st->kind == AG_Q_NONE)
        return ag_fail(d, AG_EINVAL,
                       "Bad request: A query is needed to merge the prefetches. Can't have "
                       "prefetches without defining a query.%s%s%s",
                       open, where, close);
    if (st->params.has_threshold && st->kind == AG_Q_ORDER_BY)
        return ag_fail(d, AG_EINVAL,
                       "Bad request: Can't use score_threshold with an order_by query.%s%s%s", open,
                       where, close);
    if (st->params.has_threshold && st->kind == AG_Q_NONE)
        return ag_fail(d, AG_EINVAL,
                       "Bad request: A query is needed to use the score_threshold. Can't have "
                       "score_threshold without defining a query.%s%s%s",
                       open, where, close);
    if (fusion && *st->using_name)
        return ag_fail(d, AG_EINVAL,
                       "Bad request: Fusion queries cannot be combined with the 'using' field. "
                       "(%s)",
                       qp);
    if (fusion && st->npre == 0)
        return ag_fail(d, AG_EINVAL, "Bad request: cannot apply Fusion without prefetches (%s)",
                       qp);
    if (st->kind == AG_Q_FORMULA && st->npre == 0)
        return ag_fail(d, AG_EINVAL, "Bad request: cannot apply Formula without prefetches (%s)",
                       qp);
    if (st->weights && st->nweights != st->npre)
        return ag_fail(d, AG_EINVAL,
                       "Wrong input: Number of weights in RRF should match number of "
                       "pre-fetches: got %zu, expected %zu (%s.rrf.weights)",
                       st->nweights, st->npre, qp);
    return 0;
}

/* A stage of the query API: the top request (parent NULL) or a prefetch. */
static int parse_stage(ag_query_t *rq, ag_stage_t *parent, const json_t *obj, const char *path,
                       int depth, ag_stage_t **out)
{
    ag_diag_t *d = rq->ctx->diag;
    int rc;
    if (depth > AG_Q_MAX_DEPTH)
        return ag_fail(d, AG_EINVAL, "Bad request: %s: prefetches depth exceeds max depth %d", path,
                       AG_Q_MAX_DEPTH);
    if (!json_is_object(obj))
        return ag_fail(d, AG_EINVAL, "%s: expected an object", path);
    if (parent && (rc = AG_JSON_ONLY(obj, path, d, "prefetch", "query", "using", "filter", "params",
                                     "score_threshold", "limit", "lookup_from")) != 0)
        return rc;
    ag_stage_t *st;
    if ((rc = new_stage(rq, parent, path, &st)) != 0 ||
        (rc = parse_stage_fields(rq, st, obj, path, parent != NULL)) != 0)
        return rc;
    const json_t *pf = json_object_get(obj, "prefetch");
    char p[AG_QUERY_PATH_LEN];
    if (pf && !json_is_null(pf)) {
        if (json_is_object(pf)) {
            if (!(st->pre = ag_q__alloc(rq, 1, sizeof(*st->pre))))
                return AG_ENOMEM;
            ag_q__field(p, sizeof(p), path, "prefetch");
            if ((rc = parse_stage(rq, st, pf, p, depth + 1, &st->pre[0])) != 0)
                return rc;
            st->npre = 1;
        } else if (json_is_array(pf)) {
            size_t n = json_array_size(pf);
            ag_q__field(p, sizeof(p), path, "prefetch");
            if (n > AG_Q_MAX_STAGES)
                return ag_fail(d, AG_EINVAL, "%s: at most %d prefetches per request", p,
                               AG_Q_MAX_STAGES - 1);
            if (!(st->pre = ag_q__alloc(rq, n, sizeof(*st->pre))))
                return AG_ENOMEM;
            for (size_t i = 0; i < n; i++) {
                ag_q__pathf(p, sizeof(p), "%s%sprefetch[%zu]", path, *path ? "." : "", i);
                if ((rc = parse_stage(rq, st, json_array_get(pf, i), p, depth + 1, &st->pre[i])) !=
                    0)
                    return rc;
                st->npre = i + 1;
            }
        } else {
            ag_q__field(p, sizeof(p), path, "prefetch");
            return ag_fail(d, AG_EINVAL, "%s: expected an object or an array of objects", p);
        }
    }
    ag_q__field(p, sizeof(p), path, "query");
    if ((rc = parse_query(rq, st, json_object_get(obj, "query"), p)) != 0 ||
        (rc = check_stage(rq, st, p)) != 0)
        return rc;
    *out = st;
    return 0;
}

/* Legacy search's NamedVectorStruct: [..], {name, vector: [..]} or {name, vector: sparse}. */
static int parse_named_vector(ag_query_t *rq, ag_stage_t *st, const json_t *v, const char *path)
{
    ag_diag_t *d = rq->ctx->diag;
    char p[AG_QUERY_PATH_LEN], np[AG_QUERY_PATH_LEN];
    int rc;
    st->kind = AG_Q_NEAREST;
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
    ag_q__field(np, sizeof(np), path, "name");
    ag_q__field(p, sizeof(p), path, "vector");
    if (!json_is_string(name))
        return ag_fail(d, AG_EINVAL, "%s: expected a vector name", np);
    if (!json_is_array(vec) && !json_is_object(vec))
        return ag_fail(d, AG_EINVAL, "%s: expected a vector or {indices, values}", p);
    st->using_name = json_string_value(name);
    if ((rc = resolve_using(rq, st, np)) != 0)
        return rc;
    return parse_vin(rq, st, vec, p, &st->nearest);
}

static int parse_groups(ag_query_t *rq, const json_t *body, const char *path)
{
    ag_diag_t *d = rq->ctx->diag;
    char p[AG_QUERY_PATH_LEN];
    const char *gb = NULL;
    int rc = ag_json_get_str(body, "group_by", path, &gb, d);
    if (rc)
        return rc;
    ag_q__field(p, sizeof(p), path, "group_by");
    if (!gb)
        return ag_fail(d, AG_EINVAL, "%s: field is required", p);
    if (ag_payload_path_check(gb, NULL) != 0)
        return ag_fail(d, AG_EINVAL, "%s: expected a payload key", p);
    rq->group_by = gb;
    if ((rc = parse_limit(rq, body, path, "group_size", AG_Q_DEFAULT_GROUP_SIZE,
                          &rq->group_size)) != 0)
        return rc;
    const json_t *wl = json_object_get(body, "with_lookup");
    ag_q__field(p, sizeof(p), path, "with_lookup");
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
    return ag_q__prefixed(rq, p, rc);
}

/* with_payload, with_vector, limit, offset and the groups fields of a top-level request. */
static int parse_output(ag_query_t *rq, const json_t *body, const char *path)
{
    ag_diag_t *d = rq->ctx->diag;
    int rc = ag_parse_output(body, "with_vector", false, &rq->ps, &rq->wv, &rq->which, d);
    if ((rc = ag_q__prefixed(rq, path, rc)) != 0 ||
        (rc = parse_limit(rq, body, path, "limit", AG_Q_DEFAULT_LIMIT, &rq->limit)) != 0)
        return rc;
    if (rq->groups)
        return parse_groups(rq, body, path);
    uint64_t off = 0;
    if ((rc = ag_json_get_uint(body, "offset", path, AG_Q_MAX_OFFSET, &off, d)) != 0)
        return rc;
    rq->offset = (size_t)off;
    return 0;
}

/* A `timeout` inside the body (Qdrant accepts it there on a few endpoints): whole seconds >= 1.
 * Only checked here; the caller tightens its deadline with it (q->timeout). */
static int check_timeout(ag_query_t *rq, const json_t *v, const char *path)
{
    if (!v || json_is_null(v))
        return 0;
    json_int_t n = json_is_integer(v) ? json_integer_value(v) : 0;
    if (n < 1)
        return ag_fail(rq->ctx->diag, AG_EINVAL,
                       "%s%stimeout: expected a whole number of seconds >= 1", path,
                       *path ? "." : "");
    rq->timeout = v;
    return 0;
}

static int parse_request(ag_query_t *rq, const json_t *body, const char *path)
{
    ag_diag_t *d = rq->ctx->diag;
    char p[AG_QUERY_PATH_LEN];
    int rc;
    ag_stage_t *st = NULL;
    if (!json_is_object(body))
        return ag_fail(d, AG_EINVAL, "%s: expected an object", *path ? path : "body");
    switch (rq->api) {
    case AG_QAPI_SEARCH:
        rc = rq->groups ? AG_JSON_ONLY(body, path, d, "vector", "filter", "params", "limit",
                                       "with_payload", "with_vector", "with_vectors",
                                       "score_threshold", "group_by", "group_size", "with_lookup",
                                       "shard_key", "consistency", "timeout")
                        : AG_JSON_ONLY(body, path, d, "vector", "filter", "params", "limit",
                                       "offset", "with_payload", "with_vector", "with_vectors",
                                       "score_threshold", "shard_key", "consistency", "timeout");
        if (rc || (rc = new_stage(rq, NULL, path, &st)) != 0 ||
            (rc = parse_stage_fields(rq, st, body, path, false)) != 0)
            return rc;
        ag_q__field(p, sizeof(p), path, "vector");
        if (!json_object_get(body, "vector"))
            return ag_fail(d, AG_EINVAL, "%s: field is required", p);
        if ((rc = parse_named_vector(rq, st, json_object_get(body, "vector"), p)) != 0)
            return rc;
        break;
    case AG_QAPI_RECOMMEND:
        rc = rq->groups
                 ? AG_JSON_ONLY(body, path, d, "positive", "negative", "strategy", "using",
                                "lookup_from", "filter", "params", "limit", "with_payload",
                                "with_vector", "with_vectors", "score_threshold", "group_by",
                                "group_size", "with_lookup", "shard_key", "consistency", "timeout")
                 : AG_JSON_ONLY(body, path, d, "positive", "negative", "strategy", "using",
                                "lookup_from", "filter", "params", "limit", "offset",
                                "with_payload", "with_vector", "with_vectors", "score_threshold",
                                "shard_key", "consistency", "timeout");
        if (rc || (rc = new_stage(rq, NULL, path, &st)) != 0 ||
            (rc = parse_stage_fields(rq, st, body, path, false)) != 0)
            return rc;
        ag_q__field(p, sizeof(p), path, "using");
        if ((rc = resolve_using(rq, st, p)) != 0 || (rc = parse_reco(rq, st, body, path)) != 0)
            return rc;
        break;
    case AG_QAPI_DISCOVER: /* Qdrant's legacy /points/discover: target optional */
        rc = AG_JSON_ONLY(body, path, d, "target", "context", "using", "lookup_from", "filter",
                          "params", "limit", "offset", "with_payload", "with_vector",
                          "with_vectors", "score_threshold", "shard_key", "consistency", "timeout");
        if (rc || (rc = new_stage(rq, NULL, path, &st)) != 0 ||
            (rc = parse_stage_fields(rq, st, body, path, false)) != 0)
            return rc;
        ag_q__field(p, sizeof(p), path, "using");
        if ((rc = resolve_using(rq, st, p)) != 0)
            return rc;
        {
            const json_t *target = json_object_get(body, "target");
            char cp[AG_QUERY_PATH_LEN];
            ag_q__field(cp, sizeof(cp), path, "context");
            rc = target && !json_is_null(target)
                     ? parse_discover(rq, st, target, json_object_get(body, "context"), path)
                     : parse_discover(rq, st, NULL, json_object_get(body, "context"), cp);
            if (rc)
                return rc;
        }
        break;
    case AG_QAPI_QUERY:
        rc = rq->groups
                 ? AG_JSON_ONLY(body, path, d, "prefetch", "query", "using", "filter", "params",
                                "score_threshold", "limit", "with_payload", "with_vector",
                                "with_vectors", "lookup_from", "group_by", "group_size",
                                "with_lookup", "shard_key", "consistency", "timeout")
                 : AG_JSON_ONLY(body, path, d, "prefetch", "query", "using", "filter", "params",
                                "score_threshold", "limit", "offset", "with_payload", "with_vector",
                                "with_vectors", "lookup_from", "shard_key", "consistency",
                                "timeout");
        if (rc || (rc = parse_stage(rq, NULL, body, path, 0, &st)) != 0)
            return rc;
        break;
    }
    rq->root = st;
    if ((rc = check_timeout(rq, json_object_get(body, "timeout"), path)) != 0)
        return rc;
    return parse_output(rq, body, path);
}

int ag_query_parse(ag_query_t *q, const ag_qctx_t *ctx, ag_collection_t *c, ag_qapi_t api,
                   bool groups, const json_t *body, const char *path)
{
    memset(q, 0, sizeof(*q));
    q->ctx = ctx;
    q->c = c;
    q->api = api;
    q->groups = groups;
    return parse_request(q, body, path);
}

/* ---- request cost ------------------------------------------------------------------------- */

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

static void tally_stage(const json_t *q, ag_qapi_t api, bool top, bool groups, int depth,
                        tally_t *t)
{
    if (!json_is_object(q) || depth > AG_Q_MAX_DEPTH + 1)
        return;
    t->stages++;
    uint64_t limit = count_or(q, "limit", AG_Q_DEFAULT_LIMIT, AG_MAX_LIMIT);
    if (top && groups)
        limit *= count_or(q, "group_size", AG_Q_DEFAULT_GROUP_SIZE, AG_MAX_LIMIT);
    if (top)
        limit += count_or(q, "offset", 0, AG_Q_MAX_OFFSET);
    t->results += limit;
    const json_t *r =
        api == AG_QAPI_RECOMMEND ? q : json_object_get(json_object_get(q, "query"), "recommend");
    t->examples += json_array_size(json_object_get(r, "positive")) +
                   json_array_size(json_object_get(r, "negative"));
    /* discovery and context pairs: two examples each */
    const json_t *qq = json_object_get(q, "query");
    const json_t *ctx = api == AG_QAPI_DISCOVER ? json_object_get(q, "context")
                        : json_object_get(qq, "context")
                            ? json_object_get(qq, "context")
                            : json_object_get(json_object_get(qq, "discover"), "context");
    t->examples += 2 * (json_is_array(ctx) ? json_array_size(ctx) : json_is_object(ctx) ? 1 : 0);
    if (api != AG_QAPI_QUERY)
        return;
    const json_t *pf = json_object_get(q, "prefetch");
    if (json_is_object(pf))
        tally_stage(pf, api, false, false, depth + 1, t);
    for (size_t i = 0; i < json_array_size(pf); i++)
        tally_stage(json_array_get(pf, i), api, false, false, depth + 1, t);
}

int ag_query_check_budgets(ag_qapi_t api, const json_t *list, const json_t *body, bool groups,
                           ag_diag_t *diag)
{
    tally_t t = {0};
    if (list)
        for (size_t i = 0; i < json_array_size(list); i++)
            tally_stage(json_array_get(list, i), api, true, false, 0, &t);
    else
        tally_stage(body, api, true, groups, 0, &t);
    const char *where = list ? "searches" : "prefetch";
    if (t.stages > AG_Q_MAX_REQ_STAGES)
        return ag_fail(diag, AG_EINVAL,
                       "%s: at most %d queries and prefetches in one request, got %zu", where,
                       AG_Q_MAX_REQ_STAGES, t.stages);
    if (t.examples > AG_Q_MAX_REQ_EXAMPLES)
        return ag_fail(diag, AG_EINVAL,
                       "%s: at most %d positive and negative examples in one request, got %zu",
                       list ? "searches" : "positive", AG_Q_MAX_REQ_EXAMPLES, t.examples);
    if (t.results > AG_Q_MAX_REQ_RESULTS)
        return ag_fail(diag, AG_EINVAL,
                       "%s: the limits of one request (limit + offset of every query and "
                       "prefetch%s) add up to at most %u, got %llu",
                       list ? "searches" : "limit", groups ? ", limit x group_size for groups" : "",
                       AG_Q_MAX_REQ_RESULTS, (unsigned long long)t.results);
    return 0;
}

/* ---- the direct form of a common search ----------------------------------------------------- */

int ag_query_parse_fast(ag_query_t *q, const ag_qctx_t *ctx, ag_collection_t *c, ag_qapi_t api,
                        const ag_fastsearch_t *fs, const json_t *filter, bool *declined)
{
    memset(q, 0, sizeof(*q));
    q->ctx = ctx;
    q->c = c;
    q->api = api;
    *declined = true;
    int vi = ag_coll_vector(c, "");
    if (vi < 0 || (api != AG_QAPI_SEARCH && api != AG_QAPI_QUERY))
        return 0;
    ag_dense_info_t vc;
    ag_coll_dense_info(c, vi, &vc);
    if (vc.multi)
        return 0;
    /* The values the strict parser would refuse or treat specially: its answer, not ours. */
    size_t limit =
        fs->has_limit ? (size_t)AG_MIN(fs->limit, (uint64_t)AG_MAX_LIMIT) : AG_Q_DEFAULT_LIMIT;
    if ((fs->has_limit && fs->limit == 0) || fs->offset > AG_Q_MAX_OFFSET ||
        limit + fs->offset > AG_Q_MAX_REQ_RESULTS)
        return 0;
    /* The order of the strict parser: the filter first (its error wins), then the vector. One
     * stage only: no room zeroed for AG_Q_MAX_STAGES of them. */
    ag_stage_t *st;
    if (!(q->all = ag_q__alloc(q, 1, sizeof(*q->all))))
        return AG_ENOMEM;
    int rc = new_stage(q, NULL, "", &st);
    if (rc)
        return rc;
    *declined = false;
    st->filter_json = filter;
    if ((rc = ag_scope_init(&st->scope, c, ctx->restriction, filter, "", ctx->diag)) != 0)
        return rc;
    st->params.ef = (uint32_t)fs->ef;
    st->params.exact = fs->exact;
    st->params.has_threshold = fs->has_threshold;
    st->params.score_threshold = fs->threshold;
    st->kind = AG_Q_NEAREST;
    st->vi = vi;
    float *v = ag_q__alloc(q, vc.dim, sizeof(float));
    if (!v)
        return AG_ENOMEM;
    memcpy(v, fs->vec, sizeof(float) * vc.dim);
    if (vc.dist == AG_DIST_COSINE)
        ag_vector_normalize(v, vc.dim);
    size_t bad = 0;
    if (ag_dtype_convert(vc.dtype, v, vc.dim, &bad) != 0) {
        *declined = true; /* a float16 value out of range: the strict parser names it */
        return 0;
    }
    st->nearest.dense = v;
    st->nearest.rows = 1;
    q->root = st;
    q->limit = limit;
    q->offset = (size_t)fs->offset;
    q->ps.enabled = fs->with_payload;
    q->wv = fs->with_vector;
    return 0;
}
