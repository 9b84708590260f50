/*
 * Search, query, recommend, and their batch and groups forms (docs/API.md), with Qdrant's
 * request and response shapes. The route authorized read:data on the path's collection; this
 * file adds what only api/ may do (authorizing another collection read through lookup_from or
 * with_lookup, the request's deadline) and hands the rest to the query layer (query/ag_query.h):
 * parse, run, render.
 */
#include <stdio.h>

#include "api/ag_guard.h"
#include "api/ag_points.h"
#include "json/ag_json.h"

#define MAX_SEARCHES 1000 /* requests in one batch */

/*
 * Opens a collection other than the one in the path (lookup_from, with_lookup): a new reference
 * in *out and, in *restriction (owned, NULL = none), the caller's row restriction there. The
 * route authorized only the path's collection, so reading another needs read:data on it too
 * (docs/PERMISSIONS.md); the name is resolved once (an alias to its collection) and the reference
 * read is the one authorized; a forbidden collection's existence is not told.
 */
static int open_other(void *ud, const char *name, const char *where, ag_collection_t **out,
                      ag_filter_t **restriction)
{
    ag_call_t *call = ud;
    *out = NULL;
    /* Resolved once (an alias to its collection), then authorized by the collection's own name:
     * the reference read is the one authorized. A missing name is authorized as given. */
    ag_collection_t *c = NULL;
    if (ag_store_get(call->api->store, name, &c, NULL) != 0)
        c = NULL;
    int rc =
        ag_guard_authorize(call, "read:data", c ? ag_coll_name(c) : name, restriction, &call->diag);
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

/* One request of any kind: parse, tighten the deadline with the body's timeout, run. */
static int run_one(ag_call_t *call, ag_collection_t *c, ag_qapi_t api, bool groups,
                   const json_t *body, const char *path, json_t **out)
{
    ag_qctx_t ctx = {&call->arena,      &call->diag,     call->deadline, call->timeout_s,
                     call->restriction, call->params[0], open_other,     call};
    ag_query_t q;
    int rc = ag_query_parse(&q, &ctx, c, api, groups, body, path);
    if (rc == 0 && (rc = ag_call_timeout_json(call, q.timeout, path)) == 0) {
        ctx.deadline = call->deadline;
        ctx.timeout_s = call->timeout_s;
        rc = ag_query_run(&q, out);
    }
    ag_query_release(&q);
    return rc;
}

/*
 * The direct path of the common search and query bodies (docs/BENCHMARKS-HISTORY.md "The direct
 * search path"): the body read by ag_fastsearch_parse (the vector straight into floats, only a
 * filter through jansson), the request built by ag_query_parse_fast and the hits written as text
 * by ag_query_run_text, with no JSON tree of the body or of the answer. *handled false: not a body
 * or a collection this path answers exactly as the strict one would — nothing was done, the caller
 * takes the strict path. REST only (gRPC converts the tree of the answer).
 */
static int fast_search(ag_call_t *call, ag_qapi_t api, bool *handled)
{
    *handled = false;
    if (call->body || call->grpc || call->req->body_len == 0 || !call->coll)
        return 0;
    ag_collection_t *c = call->coll;
    int vi = ag_coll_vector(c, "");
    if (vi < 0)
        return 0;
    ag_dense_info_t vc;
    ag_coll_dense_info(c, vi, &vc);
    ag_fastsearch_t fs;
    if (call->fast) {
        fs = *call->fast; /* read by cheap_search for the same collection and dimension */
    } else if (vc.multi || !ag_fastsearch_parse(call->req->body, call->req->body_len,
                                                api == AG_QAPI_QUERY ? "query" : "vector", vc.dim,
                                                &call->arena, &fs)) {
        return 0;
    }
    json_t *filter = NULL;
    if (fs.filter) {
        ag_diag_t d;
        if (ag_json_parse_body(fs.filter, fs.filter_len, true, &filter, &d) != 0)
            return 0; /* the strict parser explains it */
    }
    ag_collection_t *ref;
    int rc = ag_call_collection(call, &ref);
    if (rc) {
        json_decref(filter);
        return 0;
    }
    ag_qctx_t ctx = {&call->arena,      &call->diag,     call->deadline, call->timeout_s,
                     call->restriction, call->params[0], open_other,     call};
    ag_query_t q;
    bool declined = true;
    rc = ag_query_parse_fast(&q, &ctx, ref, api, &fs, filter, &declined);
    ag_jw_t *w = &call->result_text;
    if (rc == 0 && !declined) {
        ag_jw_lit(w, "{\"result\":");
        rc = ag_query_run_text(&q, w);
    }
    ag_query_release(&q);
    ag_coll_unref(ref);
    json_decref(filter);
    if (rc || !declined)
        *handled = true;
    if (rc)
        ag_jw_free(w);
    return rc;
}

/*
 * Inline answers (docs/ARCHITECTURE.md "Inline answers"): is this search or query known to be
 * cheap before it runs? Only a body the direct path takes, on an in-RAM single dense vector, with
 * few results asked for and a bounded amount of vector work: the points scored exactly (every
 * point when the search is exact, filtered, restricted or the vector has no graph; else those
 * queued for linking) plus the graph walk's estimate (beam x links), times the dimension, under
 * INLINE_MAX_WORK floats. Anything else, and anything unsure, is false: the worker takes it.
 */
#define INLINE_MAX_BODY (16u << 10)  /* bytes */
#define INLINE_MAX_RESULTS 256u      /* limit + offset */
#define INLINE_MAX_EF 512u           /* hnsw_ef */
#define INLINE_MAX_WORK (2ull << 20) /* floats read by the distance kernels, ~1 ms */
#define INLINE_MAX_PAYLOADS 64u      /* results with payload */
static bool cheap_search(ag_call_t *call, ag_qapi_t api)
{
    if (call->body || call->req->body_len == 0 || call->req->body_len > INLINE_MAX_BODY ||
        !call->coll)
        return false;
    ag_collection_t *c = call->coll;
    int vi = ag_coll_vector(c, "");
    if (vi < 0)
        return false;
    ag_coll_search_shape_t sh;
    ag_coll_search_shape(c, vi, &sh);
    if (sh.multi || sh.on_disk || sh.dim == 0)
        return false;
    ag_fastsearch_t *fs = ag_arena_alloc(&call->arena, sizeof(*fs));
    if (!fs ||
        !ag_fastsearch_parse(call->req->body, call->req->body_len,
                             api == AG_QAPI_QUERY ? "query" : "vector", sh.dim, &call->arena, fs))
        return false;
    uint64_t limit = fs->has_limit ? fs->limit : 10;
    if (limit > INLINE_MAX_RESULTS || fs->offset > INLINE_MAX_RESULTS - limit ||
        fs->ef > INLINE_MAX_EF)
        return false;
    bool walk = sh.graph && !fs->exact && !fs->filter && !call->restriction;
    uint64_t scored = walk ? sh.exact_points : sh.live;
    if (walk) {
        uint64_t ef = AG_MAX(fs->ef ? fs->ef : sh.ef_search, limit + fs->offset);
        scored += ef * 2 * sh.m; /* each beam node's level-0 links, at most */
    }
    /* Writing a vector's floats as text costs far more per float than scoring: weighed 64x. */
    uint64_t written = fs->with_vector ? (limit + fs->offset) * 64 : 0;
    if ((scored + written) * sh.dim > INLINE_MAX_WORK)
        return false;
    /* A payload's size is not known before it is written: few of them (docs/ARCHITECTURE.md). */
    if (fs->with_payload && limit + fs->offset > INLINE_MAX_PAYLOADS)
        return false;
    call->fast = fs;
    return true;
}

static bool cheap_search_route(ag_call_t *call)
{
    return cheap_search(call, AG_QAPI_SEARCH);
}

static bool cheap_query_route(ag_call_t *call)
{
    return cheap_search(call, AG_QAPI_QUERY);
}

static int handle(ag_call_t *call, ag_qapi_t api, bool batch, bool groups)
{
    const json_t *list = NULL;
    int rc;
    if (!batch && !groups && (api == AG_QAPI_SEARCH || api == AG_QAPI_QUERY)) {
        bool handled;
        rc = fast_search(call, api, &handled);
        if (handled)
            return rc;
        if ((rc = ag_call_body(call)) != 0)
            return rc;
    }
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
    if ((rc = ag_query_check_budgets(api, list, call->body, groups, &call->diag)) != 0)
        return rc;
    ag_collection_t *c;
    if ((rc = ag_call_collection(call, &c)) != 0)
        return rc;
    json_t *result = NULL;
    if (batch) {
        result = json_array();
        rc = result ? 0 : AG_ENOMEM;
        for (size_t i = 0; rc == 0 && i < json_array_size(list); i++) {
            char p[AG_QUERY_PATH_LEN];
            json_t *one = NULL;
            snprintf(p, sizeof(p), "searches[%zu]", i);
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
    return handle(call, AG_QAPI_SEARCH, false, false);
}

static int h_search_batch(ag_call_t *call)
{
    return handle(call, AG_QAPI_SEARCH, true, false);
}

static int h_search_groups(ag_call_t *call)
{
    return handle(call, AG_QAPI_SEARCH, false, true);
}

static int h_recommend(ag_call_t *call)
{
    return handle(call, AG_QAPI_RECOMMEND, false, false);
}

static int h_recommend_batch(ag_call_t *call)
{
    return handle(call, AG_QAPI_RECOMMEND, true, false);
}

static int h_recommend_groups(ag_call_t *call)
{
    return handle(call, AG_QAPI_RECOMMEND, false, true);
}

static int h_discover(ag_call_t *call)
{
    return handle(call, AG_QAPI_DISCOVER, false, false);
}

static int h_discover_batch(ag_call_t *call)
{
    return handle(call, AG_QAPI_DISCOVER, true, false);
}

static int h_query(ag_call_t *call)
{
    return handle(call, AG_QAPI_QUERY, false, false);
}

static int h_query_batch(ag_call_t *call)
{
    return handle(call, AG_QAPI_QUERY, true, false);
}

static int h_query_groups(ag_call_t *call)
{
    return handle(call, AG_QAPI_QUERY, false, true);
}

const ag_route_t ag_routes_search[] = {
    {AG_HTTP_POST, "/collections/{name}/points/search", "read:data", AG_SCOPE_COLLECTION, h_search,
     true, false, false, true, true, false, cheap_search_route},
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
    {AG_HTTP_POST, "/collections/{name}/points/discover", "read:data", AG_SCOPE_COLLECTION,
     h_discover, true, false, false, false, true},
    {AG_HTTP_POST, "/collections/{name}/points/discover/batch", "read:data", AG_SCOPE_COLLECTION,
     h_discover_batch, true, false, false, false, true},
    {AG_HTTP_POST, "/collections/{name}/points/query", "read:data", AG_SCOPE_COLLECTION, h_query,
     true, false, false, true, true, false, cheap_query_route},
    {AG_HTTP_POST, "/collections/{name}/points/query/batch", "read:data", AG_SCOPE_COLLECTION,
     h_query_batch, true, false, false, false, true},
    {AG_HTTP_POST, "/collections/{name}/points/query/groups", "read:data", AG_SCOPE_COLLECTION,
     h_query_groups, true, false, false, false, true},
};
const size_t ag_routes_search_len = AG_ARRAY_LEN(ag_routes_search);
