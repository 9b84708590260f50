/*
 * Strict mode (docs/COMPATIBILITY.md "Strict mode"): a collection's own limits on the requests
 * made to it, checked before the handler runs (ag_strict_check, from ag_api_handle). Settings are
 * parsed by json/ag_strict.c; the read and write rate limits are token buckets kept here, one per
 * collection, refilled continuously at limit/60 tokens a second up to limit.
 */
#include <math.h>
#include <pthread.h>
#include <stdio.h>

#include "ag_clock.h"
#include "ag_grow.h"
#include "api/ag_api.h"
#include "json/ag_json.h"
#include "json/ag_strict.h"

/* ---- rate limits --------------------------------------------------------------------------- */

typedef struct bucket {
    char *name;      /* collection (owned) */
    uint64_t limit;  /* the configured tokens per minute the bucket was made for */
    const void *cfg; /* the params object it was made for: a new setting (or a new collection of
                        the same name) starts a full bucket, as in Qdrant */
    double tokens;   /* available now */
    double refilled; /* ag_now_mono() of the last refill */
} bucket_t;

static pthread_mutex_t buckets_mu = PTHREAD_MUTEX_INITIALIZER;
static bucket_t *buckets[2]; /* [0] reads, [1] writes */
static size_t nbuckets[2], capbuckets[2];

/* Takes cost tokens from the collection's bucket; 0, or AG_ETHROTTLED with *retry set. */
static int take_tokens(int kind, const char *coll, const void *cfg, uint64_t limit, uint64_t cost,
                       int *retry, ag_diag_t *diag)
{
    const char *what = kind ? "Write" : "Read";
    if (cost > limit)
        return ag_fail(diag, AG_ETHROTTLED,
                       "Rate limiting exceeded: %s rate limit exceeded, request larger than rate "
                       "limiter capacity, please try to split your request",
                       what);
    double now = ag_now_mono(), rate = (double)limit / 60.0;
    pthread_mutex_lock(&buckets_mu);
    bucket_t *b = NULL;
    for (size_t i = 0; i < nbuckets[kind] && !b; i++)
        if (strcmp(buckets[kind][i].name, coll) == 0)
            b = &buckets[kind][i];
    if (!b) {
        char *name = strdup(coll);
        if (!name || AG_GROW(buckets[kind], capbuckets[kind], nbuckets[kind] + 1, 8, 1u << 20)) {
            free(name);
            pthread_mutex_unlock(&buckets_mu);
            return AG_ENOMEM;
        }
        b = &buckets[kind][nbuckets[kind]++];
        *b = (bucket_t){name, limit, cfg, (double)limit, now};
    }
    if (b->limit != limit || b->cfg != cfg) /* the setting changed: a full bucket */
        *b = (bucket_t){b->name, limit, cfg, (double)limit, now};
    b->tokens = fmin((double)limit, b->tokens + (now - b->refilled) * rate);
    b->refilled = now;
    int rc = 0;
    if (b->tokens + 1e-9 < (double)cost) {
        double wait = ((double)cost - b->tokens) / rate;
        *retry = (int)ceil(wait);
        rc = ag_fail(diag, AG_ETHROTTLED,
                     "Rate limiting exceeded: %s rate limit exceeded: Operation requires %llu "
                     "tokens but only %.1f were available. Retry after %ds",
                     what, (unsigned long long)cost, floor(b->tokens * 10) / 10, *retry);
    } else {
        b->tokens -= (double)cost;
    }
    pthread_mutex_unlock(&buckets_mu);
    return rc;
}

/* ---- request checks ------------------------------------------------------------------------ */

typedef struct sctx {
    ag_call_t *call;
    ag_strict_t st;
    json_t *cfg; /* owned copy of the collection's strict_mode_config */
    ag_collection_t *c;
    bool update; /* a write: unindexed_filtering_update applies, not _retrieve */
    size_t conditions;
    uint64_t read_cost; /* read tokens: one per search, or per filter condition when more */
} sctx_t;

static int over(sctx_t *s, const char *what, uint64_t got, uint64_t max)
{
    return ag_fail(&s->call->diag, AG_EINVAL, "Bad request: Limit exceeded %llu > %llu for \"%s\"",
                   (unsigned long long)got, (unsigned long long)max, what);
}

static uint64_t uint_of(const json_t *v)
{
    if (json_is_integer(v))
        return json_integer_value(v) < 0 ? 0 : (uint64_t)json_integer_value(v);
    if (json_is_string(v) &&
        strncmp(json_string_value(v), AG_U64_MARKER, sizeof(AG_U64_MARKER) - 1) == 0)
        return UINT64_MAX;
    return 0;
}

/* The index capability a field condition needs, and whether def's type provides it. */
static bool index_serves(const json_t *def, const char *type, const json_t *cond, const char **need)
{
    const json_t *ip = json_object_get(def, "params");
    bool lookup = !json_is_false(json_object_get(ip, "lookup"));
    bool range = !json_is_false(json_object_get(ip, "range"));
    bool phrase = json_is_true(json_object_get(ip, "phrase_matching"));
    const json_t *m = json_object_get(cond, "match");
    bool kw = strcmp(type, "keyword") == 0, in = strcmp(type, "integer") == 0,
         fl = strcmp(type, "float") == 0, dt = strcmp(type, "datetime") == 0,
         tx = strcmp(type, "text") == 0, uu = strcmp(type, "uuid") == 0,
         bo = strcmp(type, "bool") == 0, geo = strcmp(type, "geo") == 0;
    if (m) {
        *need = "match";
        if (json_object_get(m, "phrase")) {
            *need = "phrase";
            return tx && phrase;
        }
        if (json_object_get(m, "text") || json_object_get(m, "text_any"))
            return tx;
        const json_t *v = json_object_get(m, "value");
        const json_t *any =
            json_object_get(m, "any") ? json_object_get(m, "any") : json_object_get(m, "except");
        if (!v && json_is_array(any))
            v = json_array_get(any, 0);
        if (json_is_boolean(v))
            return bo;
        if (json_is_integer(v))
            return in && lookup;
        return kw || uu || (!v && (in || bo)); /* an empty list: any lookup index */
    }
    if (json_object_get(cond, "range")) {
        *need = "range";
        return (in && range) || fl || dt;
    }
    if (json_object_get(cond, "geo_bounding_box") || json_object_get(cond, "geo_radius") ||
        json_object_get(cond, "geo_polygon")) {
        *need = "geo";
        return geo;
    }
    *need = "values_count"; /* values_count, is_empty, is_null: any index of the field */
    return true;
}

static const char *type_title(const char *t)
{
    static const char *const names[][2] = {
        {"keyword", "Keyword"}, {"integer", "Integer"}, {"float", "Float"},       {"geo", "Geo"},
        {"text", "Text"},       {"bool", "Bool"},       {"datetime", "Datetime"}, {"uuid", "Uuid"}};
    for (size_t i = 0; i < AG_ARRAY_LEN(names); i++)
        if (strcmp(names[i][0], t) == 0)
            return names[i][1];
    return t;
}

static int check_filter(sctx_t *s, const json_t *f, const char *prefix, int depth);

static int check_condition(sctx_t *s, const json_t *cond, const char *prefix, int depth)
{
    if (!json_is_object(cond))
        return 0;
    s->conditions++;
    const json_t *nested = json_object_get(cond, "nested");
    if (nested) {
        char p[300];
        snprintf(p, sizeof(p), "%s%.200s[].", prefix,
                 json_string_value(json_object_get(nested, "key"))
                     ? json_string_value(json_object_get(nested, "key"))
                     : "");
        return check_filter(s, json_object_get(nested, "filter"), p, depth + 1);
    }
    const json_t *key = json_object_get(cond, "key");
    if (!json_is_string(key)) {
        /* a nested filter object in a clause, or has_id / has_vector / is_empty ... */
        const json_t *ids = json_object_get(cond, "has_id");
        if (json_is_array(ids) && json_array_size(ids) > s->st.condition_max_size)
            return ag_fail(&s->call->diag, AG_EINVAL,
                           "Bad request: Condition size limit exceeded: %zu > %llu (has_id)",
                           json_array_size(ids), (unsigned long long)s->st.condition_max_size);
        const json_t *ie = json_object_get(cond, "is_empty");
        const json_t *inl = json_object_get(cond, "is_null");
        if (json_is_object(ie) || json_is_object(inl))
            key = json_object_get(json_is_object(ie) ? ie : inl, "key");
        else if (!json_object_get(cond, "has_id") && !json_object_get(cond, "has_vector") &&
                 !json_object_get(cond, "slice"))
            return check_filter(s, cond, prefix, depth + 1);
        if (!json_is_string(key))
            return 0;
    }
    const json_t *m = json_object_get(cond, "match");
    const json_t *list =
        json_object_get(m, "any") ? json_object_get(m, "any") : json_object_get(m, "except");
    if (json_is_array(list) && json_array_size(list) > s->st.condition_max_size)
        return ag_fail(&s->call->diag, AG_EINVAL,
                       "Bad request: Condition size limit exceeded: %zu > %llu (%.200s)",
                       json_array_size(list), (unsigned long long)s->st.condition_max_size,
                       json_string_value(key));
    bool allowed =
        s->update ? s->st.unindexed_filtering_update : s->st.unindexed_filtering_retrieve;
    if (allowed)
        return 0;
    char field[600];
    snprintf(field, sizeof(field), "%s%s", prefix, json_string_value(key));
    json_t *def = ag_coll_index_def(s->c, field); /* a copy: ours */
    const char *type = json_string_value(json_object_get(def, "data_type"));
    const char *need = "match";
    bool serves = type && index_serves(def, type, cond, &need);
    int rc = 0;
    if (!def || !type)
        rc = ag_fail(&s->call->diag, AG_EINVAL,
                     "Bad request: Index required but not found for \"%.300s\". Help: Create an "
                     "index supporting `%s` for this key.",
                     field, need);
    else if (!serves)
        rc = ag_fail(&s->call->diag, AG_EINVAL,
                     "Bad request: Index of type \"%s\" found for \"%.300s\". Help: Create an "
                     "index supporting `%s` for this key.",
                     type_title(type), field, need);
    json_decref(def);
    return rc;
}

static int check_filter(sctx_t *s, const json_t *f, const char *prefix, int depth)
{
    if (!json_is_object(f) || depth > 64)
        return 0;
    static const char *const clauses[] = {"must", "should", "must_not"};
    for (size_t i = 0; i < AG_ARRAY_LEN(clauses); i++) {
        const json_t *cl = json_object_get(f, clauses[i]);
        if (json_is_object(cl)) {
            int rc = check_condition(s, cl, prefix, depth);
            if (rc)
                return rc;
        }
        size_t k;
        const json_t *c;
        json_array_foreach(json_is_array(cl) ? cl : NULL, k, c)
        {
            int rc = check_condition(s, c, prefix, depth);
            if (rc)
                return rc;
        }
    }
    const json_t *ms = json_object_get(f, "min_should");
    if (json_is_object(ms)) {
        size_t k;
        const json_t *c;
        json_array_foreach(json_object_get(ms, "conditions"), k, c)
        {
            int rc = check_condition(s, c, prefix, depth);
            if (rc)
                return rc;
        }
    }
    return 0;
}

static int check_top_filter(sctx_t *s, const json_t *f)
{
    if (!f || json_is_null(f))
        return 0;
    s->conditions = 0;
    int rc = check_filter(s, f, "", 0);
    if (rc == 0 && s->conditions > s->st.filter_max_conditions)
        rc = ag_fail(&s->call->diag, AG_EINVAL,
                     "Bad request: Filter condition limit exceeded: %zu > %llu", s->conditions,
                     (unsigned long long)s->st.filter_max_conditions);
    return rc;
}

/* A vector's effective hnsw_config value: its own, else the collection's, else dflt. */
static uint64_t hnsw_value(const ag_collection_t *c, const char *vname, const char *key,
                           uint64_t dflt)
{
    const json_t *params = ag_coll_params(c), *vectors = json_object_get(params, "vectors");
    const json_t *vp = ag_coll_unnamed(c) ? vectors : json_object_get(vectors, vname);
    const json_t *v = json_object_get(json_object_get(vp, "hnsw_config"), key);
    if (!json_is_integer(v))
        v = json_object_get(json_object_get(params, "hnsw_config"), key);
    return json_is_integer(v) ? uint_of(v) : dflt;
}

/* Does the filter's `must` name a field with a tenant (is_tenant) payload index? */
static bool tenant_filtered(const ag_collection_t *c, const json_t *filter)
{
    const json_t *must = json_object_get(filter, "must");
    size_t n = json_is_array(must) ? json_array_size(must) : json_is_object(must) ? 1 : 0;
    for (size_t i = 0; i < n; i++) {
        const json_t *cond = json_is_array(must) ? json_array_get(must, i) : must;
        const char *key = json_string_value(json_object_get(cond, "key"));
        if (!key || !json_object_get(cond, "match"))
            continue;
        json_t *def = ag_coll_index_def(c, key); /* a copy: ours */
        bool tenant = json_is_true(json_object_get(json_object_get(def, "params"), "is_tenant"));
        json_decref(def);
        if (tenant)
            return true;
    }
    return false;
}

/* Qdrant's rule for search_allow_exact: false: a vector search (not a rescoring of prefetches)
 * on a dense vector whose graph is disabled (hnsw_config.m = 0) is a full scan, refused unless
 * payload_m > 0 and the filter names a tenant field. */
static int check_full_scan(sctx_t *s, const json_t *q)
{
    if (s->st.search_allow_exact || json_array_size(json_object_get(q, "prefetch")) ||
        json_is_object(json_object_get(q, "prefetch")))
        return 0;
    const json_t *query = json_object_get(q, "query"), *vec = json_object_get(q, "vector");
    bool search = json_is_array(query) || json_is_integer(query) || json_is_string(query) ||
                  (json_is_object(query) &&
                   (json_object_get(query, "nearest") || json_object_get(query, "recommend") ||
                    json_object_get(query, "discover") || json_object_get(query, "context"))) ||
                  vec || json_object_get(q, "positive") || json_object_get(q, "target");
    if (!search)
        return 0;
    const char *name = json_string_value(json_object_get(q, "using"));
    if (!name && json_is_object(vec))
        name = json_string_value(json_object_get(vec, "name"));
    if (!name)
        name = "";
    if (ag_coll_vector(s->c, name) < 0 || hnsw_value(s->c, name, "m", 16) != 0)
        return 0;
    if (hnsw_value(s->c, name, "payload_m", 0) > 0 &&
        tenant_filtered(s->c, json_object_get(q, "filter")))
        return 0;
    return ag_fail(&s->call->diag, AG_EINVAL,
                   "Bad request: Request is forbidden on '%.200s' because global vector indexing "
                   "is disabled (hnsw_config.m = 0). Help: Use tenant-specific filter, enable "
                   "global vector indexing or enable strict mode `search_allow_exact` option",
                   name);
}

/* Read tokens of a nearest query on a multivector beyond the one every search costs, as Qdrant
 * counts them: one per vector of the query, or, for a point id, one per vector of that point's
 * multivector plus one for fetching it and one for the filter leaving it out. */
static uint64_t multi_extra(sctx_t *s, const json_t *q)
{
    const json_t *v = json_object_get(q, "query");
    if (json_is_object(v))
        v = json_object_get(v, "nearest");
    const char *name = json_string_value(json_object_get(q, "using"));
    int vi = ag_coll_vector(s->c, name ? name : "");
    ag_dense_info_t info;
    if (vi < 0 || !v)
        return 0;
    ag_coll_dense_info(s->c, vi, &info);
    if (!info.multi)
        return 0;
    if (json_is_array(v))
        return json_is_array(json_array_get(v, 0)) ? json_array_size(v) - 1 : 0;
    ag_point_id_t id;
    ag_diag_t ignored;
    uint32_t slot, rows = 0;
    if ((json_is_integer(v) || json_is_string(v)) && ag_id_parse(v, &id, "query", &ignored) == 0 &&
        (slot = ag_coll_find(s->c, &id)) != UINT32_MAX && ag_coll_dense_rows(s->c, vi, slot, &rows))
        return rows + 1;
    return 0;
}

/* A payload key a formula reads (a variable, datetime_key, geo_distance.to) needs an index
 * when unindexed filtering is off, as Qdrant. */
static int check_formula_key(sctx_t *s, const char *key)
{
    char type[AG_INDEX_TYPE_MAX];
    if (s->st.unindexed_filtering_retrieve || ag_coll_index_type(s->c, key, type))
        return 0;
    return ag_fail(&s->call->diag, AG_EINVAL,
                   "Bad request: Index required but not found for \"%.300s\". Help: Create an "
                   "index for this key or use a different formula expression.",
                   key);
}

/* The formula of a query (query/ag_formula.h): its payload keys and its conditions. */
static int check_formula(sctx_t *s, const json_t *e, int depth)
{
    if (depth > 64)
        return 0;
    if (json_is_string(e))
        return json_string_value(e)[0] == '$' ? 0 : check_formula_key(s, json_string_value(e));
    if (!json_is_object(e))
        return 0;
    static const char *const unary[] = {"neg", "abs", "sqrt", "exp", "log10", "ln"};
    for (size_t i = 0; i < AG_ARRAY_LEN(unary); i++)
        if (json_object_get(e, unary[i]))
            return check_formula(s, json_object_get(e, unary[i]), depth + 1);
    static const char *const lists[] = {"mult", "sum"};
    for (size_t i = 0; i < AG_ARRAY_LEN(lists); i++) {
        size_t k;
        const json_t *x;
        json_array_foreach(json_object_get(e, lists[i]), k, x)
        {
            int rc = check_formula(s, x, depth + 1);
            if (rc)
                return rc;
        }
        if (json_object_get(e, lists[i]))
            return 0;
    }
    static const char *const pairs[][3] = {{"div", "left", "right"},
                                           {"pow", "base", "exponent"},
                                           {"lin_decay", "x", "target"},
                                           {"exp_decay", "x", "target"},
                                           {"gauss_decay", "x", "target"}};
    for (size_t i = 0; i < AG_ARRAY_LEN(pairs); i++) {
        const json_t *x = json_object_get(e, pairs[i][0]);
        if (!x)
            continue;
        int rc = check_formula(s, json_object_get(x, pairs[i][1]), depth + 1);
        return rc ? rc : check_formula(s, json_object_get(x, pairs[i][2]), depth + 1);
    }
    const json_t *k = json_object_get(e, "datetime_key");
    if (!k)
        k = json_object_get(json_object_get(e, "geo_distance"), "to");
    if (json_is_string(k))
        return check_formula_key(s, json_string_value(k));
    if (json_object_get(e, "datetime") || json_object_get(e, "geo_distance"))
        return 0;
    return check_condition(s, e, "", 0); /* a filter condition */
}

/* One search-like request (query, search, recommend, scroll, count, facet, their groups forms,
 * one element of a batch): limits, search params and the filter; prefetches recursively. */
static int check_query(sctx_t *s, const json_t *q, int depth)
{
    if (!json_is_object(q) || depth > 64)
        return 0;
    uint64_t limit = uint_of(json_object_get(q, "limit"));
    /* groups: up to limit groups of group_size points each, as Qdrant counts them */
    if (json_object_get(q, "group_by") && json_object_get(q, "limit")) {
        uint64_t gs =
            json_object_get(q, "group_size") ? uint_of(json_object_get(q, "group_size")) : 1;
        limit = gs && limit > UINT64_MAX / gs ? UINT64_MAX : limit * gs;
    }
    if (limit > s->st.max_query_limit)
        return over(s, "limit", limit, s->st.max_query_limit);
    const json_t *p = json_object_get(q, "params");
    if (json_is_object(p)) {
        uint64_t ef = uint_of(json_object_get(p, "hnsw_ef"));
        if (json_object_get(p, "hnsw_ef") && ef > s->st.search_max_hnsw_ef)
            return over(s, "hnsw_ef", ef, s->st.search_max_hnsw_ef);
        if (json_is_true(json_object_get(p, "exact")) && !s->st.search_allow_exact)
            return ag_fail(&s->call->diag, AG_EINVAL,
                           "Bad request: Exact search disabled! (strict mode: "
                           "search_allow_exact is false)");
        const json_t *os = json_object_get(json_object_get(p, "quantization"), "oversampling");
        if (json_is_number(os) && s->st.search_max_oversampling >= 0 &&
            json_number_value(os) > s->st.search_max_oversampling)
            return ag_fail(&s->call->diag, AG_EINVAL,
                           "Bad request: Limit exceeded %g > %g for \"oversampling\"",
                           json_number_value(os), s->st.search_max_oversampling);
    }
    int rc = check_full_scan(s, q);
    if (rc == 0)
        rc = check_top_filter(s, json_object_get(q, "filter"));
    if (rc)
        return rc;
    const json_t *formula = json_object_get(json_object_get(q, "query"), "formula");
    if (formula && (rc = check_formula(s, formula, 0)) != 0)
        return rc;
    s->read_cost += (s->conditions > 1 ? s->conditions : 1) + multi_extra(s, q);
    s->conditions = 0;
    const json_t *pre = json_object_get(q, "prefetch");
    if (json_is_object(pre))
        return check_query(s, pre, depth + 1);
    size_t i;
    const json_t *one;
    json_array_foreach(json_is_array(pre) ? pre : NULL, i, one)
    {
        if ((rc = check_query(s, one, depth + 1)) != 0)
            return rc;
    }
    return 0;
}

static int check_sparse_lengths(sctx_t *s, const json_t *vector)
{
    const char *name;
    const json_t *cfg;
    json_object_foreach((json_t *)s->st.sparse_config, name, cfg)
    {
        const json_t *sv = json_is_object(vector) ? json_object_get(vector, name) : NULL;
        uint64_t max = uint_of(json_object_get(cfg, "max_length"));
        size_t n = json_array_size(json_object_get(sv, "indices"));
        if (json_object_get(cfg, "max_length") && n > max)
            return ag_fail(&s->call->diag, AG_EINVAL,
                           "Bad request: Sparse vector '%.200s' has a limit of %llu indices, but "
                           "%zu were provided!",
                           name, (unsigned long long)max, n);
    }
    return 0;
}

/* How many vectors a multivector input holds: its rows, or 1 for a plain vector. */
static size_t rows_of(const json_t *v)
{
    return json_is_array(json_array_get(v, 0)) ? json_array_size(v) : 1;
}

/* Qdrant's multivector_config limit ({name: {"max_vectors": n}}) on one point's vector object,
 * or (batch) on the list of vectors given for each name. */
static int check_multi_rows(sctx_t *s, const json_t *vector, bool batch)
{
    const char *name;
    const json_t *cfg;
    json_object_foreach((json_t *)s->st.multivector_config, name, cfg)
    {
        const json_t *mv = json_is_object(vector) ? json_object_get(vector, name) : NULL;
        uint64_t max = uint_of(json_object_get(cfg, "max_vectors"));
        size_t n = batch ? json_array_size(mv) : 1;
        for (size_t i = 0; mv && i < n; i++) {
            size_t rows = rows_of(batch ? json_array_get(mv, i) : mv);
            if (json_object_get(cfg, "max_vectors") && rows > max)
                return ag_fail(&s->call->diag, AG_EINVAL,
                               "Bad request: Multivector '%.200s' has a limit of %llu vectors, "
                               "but %zu were provided!",
                               name, (unsigned long long)max, rows);
        }
    }
    return 0;
}

/* Points an upsert or a vector update carries ({"points": [...]} or {"batch": {...}}). */
static int check_points(sctx_t *s, const json_t *op, bool upsert, uint64_t *cost)
{
    const json_t *pts = json_object_get(op, "points");
    const json_t *batch = json_object_get(op, "batch");
    size_t n =
        json_is_array(pts) ? json_array_size(pts) : json_array_size(json_object_get(batch, "ids"));
    *cost += n ? n : 1;
    if (n > s->st.upsert_max_batchsize)
        return over(s, upsert ? "upsert limit" : "update limit", n, s->st.upsert_max_batchsize);
    if (upsert && s->st.max_points_count != AG_STRICT_UNSET &&
        (uint64_t)ag_coll_live(s->c) + n > s->st.max_points_count) {
        /* Counted as Qdrant estimates it: every point of the request may be new. */
        size_t fresh = 0;
        for (size_t i = 0; i < n; i++) {
            ag_point_id_t id;
            const json_t *j = json_is_array(pts) ? json_object_get(json_array_get(pts, i), "id")
                                                 : json_array_get(json_object_get(batch, "ids"), i);
            fresh += ag_id_parse(j, &id, "id", NULL) != 0 || ag_coll_find(s->c, &id) == UINT32_MAX;
        }
        if ((uint64_t)ag_coll_live(s->c) + fresh > s->st.max_points_count)
            return ag_fail(&s->call->diag, AG_EINVAL,
                           "Bad request: Max points count limit of %llu reached!",
                           (unsigned long long)s->st.max_points_count);
    }
    if (s->st.sparse_config) {
        size_t i;
        const json_t *p;
        json_array_foreach(json_is_array(pts) ? pts : NULL, i, p)
        {
            int rc = check_sparse_lengths(s, json_object_get(p, "vector"));
            if (rc)
                return rc;
        }
    }
    if (s->st.multivector_config) {
        size_t i;
        const json_t *p;
        json_array_foreach(json_is_array(pts) ? pts : NULL, i, p)
        {
            int rc = check_multi_rows(s, json_object_get(p, "vector"), false);
            if (rc)
                return rc;
        }
        if (json_is_object(batch))
            return check_multi_rows(s, json_object_get(batch, "vectors"), true);
    }
    return 0;
}

/* One point operation (a route's body, or one element of points/batch). */
static int check_write(sctx_t *s, const char *kind, const json_t *op, uint64_t *cost)
{
    if (!json_is_object(op))
        return 0;
    if (strcmp(kind, "upsert") == 0)
        return check_points(s, op, true, cost);
    if (strcmp(kind, "update_vectors") == 0)
        return check_points(s, op, false, cost);
    const json_t *ids = json_object_get(op, "points");
    *cost += json_is_array(ids) && json_array_size(ids) ? json_array_size(ids) : 1;
    return check_top_filter(s, json_object_get(op, "filter"));
}

static int run(void *ud, ag_collection_t *c)
{
    sctx_t *s = ud;
    s->c = c;
    s->cfg = json_deep_copy(json_object_get(ag_coll_params(c), "strict_mode_config"));
    if (ag_strict_parse(s->cfg, "strict_mode_config", &s->st, NULL) != 0 || !s->st.enabled)
        return 0;
    ag_call_t *call = s->call;
    const ag_route_t *r = call->route;
    const char *pat = r->pattern;
    const json_t *body = call->body;
    const char *t = ag_request_query(call->req, "timeout");
    if (t && s->st.max_timeout != AG_STRICT_UNSET && strtoull(t, NULL, 10) > s->st.max_timeout)
        return ag_fail(&call->diag, AG_EINVAL,
                       "Bad request: Limit exceeded %llu > %llu for "
                       "\"timeout\"",
                       strtoull(t, NULL, 10), (unsigned long long)s->st.max_timeout);
    const char *rest = strncmp(pat, "/collections/{name}", 19) == 0 ? pat + 19 : "";
    if (strcmp(rest, "/index") == 0 && r->method == AG_HTTP_PUT) {
        size_t have = ag_coll_index_count(c);
        char type[AG_INDEX_TYPE_MAX];
        const char *field = json_string_value(json_object_get(body, "field_name"));
        if (s->st.max_payload_index_count != AG_STRICT_UNSET &&
            have >= s->st.max_payload_index_count && !(field && ag_coll_index_type(c, field, type)))
            return ag_fail(&call->diag, AG_EINVAL,
                           "Bad request: Collection already has the maximum number of payload "
                           "indices (%llu). Help: Please delete an existing index before creating "
                           "a new one.",
                           (unsigned long long)s->st.max_payload_index_count);
        return 0;
    }
    /* points/batch is admitted as a read and authorizes each operation itself: a write here */
    bool read = strcmp(r->action, "read:data") == 0 && strcmp(rest, "/points/batch") != 0;
    bool write = !read && strncmp(rest, "/points", 7) == 0;
    int rc = 0;
    uint64_t cost = 0;
    if (read && strncmp(rest, "/points/search/matrix/", 22) == 0) {
        /* the distance matrix returns up to sample x limit pairs: that is its limit (Qdrant) */
        const json_t *sj = json_object_get(body, "sample"), *lj = json_object_get(body, "limit");
        uint64_t sample = sj && !json_is_null(sj) ? uint_of(sj) : 10;
        uint64_t limit = lj && !json_is_null(lj) ? uint_of(lj) : 3;
        uint64_t pairs = limit && sample > UINT64_MAX / limit ? UINT64_MAX : sample * limit;
        if (pairs > s->st.max_query_limit)
            return over(s, "limit", pairs, s->st.max_query_limit);
    }
    if (read) {
        const json_t *searches = json_object_get(body, "searches");
        if (json_is_array(searches)) {
            size_t i;
            const json_t *q;
            if (json_array_size(searches) > s->st.search_max_batchsize)
                return over(s, "search batch size", json_array_size(searches),
                            s->st.search_max_batchsize);
            json_array_foreach(searches, i, q) if (rc == 0) rc = check_query(s, q, 0);
            cost = s->read_cost;
        } else {
            rc = check_query(s, body, 0);
            const json_t *ids = json_object_get(body, "ids");
            cost = json_is_array(ids) && json_array_size(ids) ? json_array_size(ids) : s->read_cost;
        }
        if (rc == 0 && s->st.read_rate_limit != AG_STRICT_UNSET) {
            int retry = 0;
            rc = take_tokens(0, ag_coll_name(c), ag_coll_params(c), s->st.read_rate_limit, cost,
                             &retry, &call->diag);
            if (retry)
                snprintf(call->req->retry_after, sizeof(call->req->retry_after), "%d", retry);
        }
        return rc;
    }
    if (!write)
        return 0;
    s->update = true;
    if (strcmp(rest, "/points/batch") == 0) {
        size_t i;
        const json_t *op;
        json_array_foreach(json_object_get(body, "operations"), i, op)
        {
            const char *kind;
            const json_t *v;
            json_object_foreach((json_t *)op, kind, v)
            {
                if (rc == 0)
                    rc = check_write(s, kind, v, &cost);
            }
        }
    } else if (strcmp(rest, "/points") == 0 && r->method == AG_HTTP_PUT) {
        rc = check_write(s, "upsert", body, &cost);
    } else if (strcmp(rest, "/points/vectors") == 0 && r->method == AG_HTTP_PUT) {
        rc = check_write(s, "update_vectors", body, &cost);
    } else {
        rc = check_write(s, "other", body, &cost);
    }
    if (rc == 0 && s->st.write_rate_limit != AG_STRICT_UNSET) {
        int retry = 0;
        rc = take_tokens(1, ag_coll_name(c), ag_coll_params(c), s->st.write_rate_limit, cost,
                         &retry, &call->diag);
        if (retry)
            snprintf(call->req->retry_after, sizeof(call->req->retry_after), "%d", retry);
    }
    return rc;
}

static int enabled_now(void *ud, ag_collection_t *c)
{
    const json_t *cfg = json_object_get(ag_coll_params(c), "strict_mode_config");
    *(bool *)ud = json_is_true(json_object_get(cfg, "enabled"));
    return 0;
}

int ag_strict_check(ag_call_t *call)
{
    if (!call->coll)
        return 0;
    bool enabled = false;
    ag_coll_read(call->coll, enabled_now, &enabled);
    if (!enabled)
        return 0;
    /* A route that reads its own body (the fast upsert) is parsed here when limits apply. */
    int rc = call->route->body && !call->body ? ag_call_body(call) : 0;
    if (rc)
        return rc;
    sctx_t s = {.call = call};
    rc = ag_coll_read(call->coll, run, &s);
    json_decref(s.cfg);
    return rc;
}
