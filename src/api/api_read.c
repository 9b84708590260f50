/*
 * Point reads (docs/API.md): retrieve by ids, get one point, scroll, count and facet. Each handler
 * parses its body, opens the collection the route authorized and hands the read to the query
 * layer with the caller's row restriction (query/ag_query.h); a point outside that restriction
 * does not exist for the caller.
 */
#include <stdio.h>

#include "api/ag_guard.h"
#include "api/ag_points.h"
#include "json/ag_json.h"

/* The query layer's view of a read request (no lookups in other collections). */
static ag_qctx_t read_ctx(ag_call_t *call)
{
    ag_qctx_t ctx = {&call->arena,      &call->diag,     call->deadline, call->timeout_s,
                     call->restriction, call->params[0], NULL,           NULL};
    return ctx;
}

/* ---- reads --------------------------------------------------------------------------------- */

static int h_retrieve(ag_call_t *call)
{
    int rc = AG_JSON_ONLY(call->body, "", &call->diag, "ids", "with_payload", "with_vector",
                          "with_vectors", "shard_key", "consistency");
    if (rc)
        return rc;
    ag_point_id_t *ids;
    size_t n;
    if ((rc = ag_parse_ids(call, json_object_get(call->body, "ids"), "ids", &ids, &n)) != 0)
        return rc;
    ag_payload_sel_t ps;
    bool wv = false;
    const json_t *which;
    if ((rc = ag_parse_output(call->body, "with_vector", true, &ps, &wv, &which, &call->diag)))
        return rc;
    ag_collection_t *c;
    if ((rc = ag_call_collection(call, &c)) != 0)
        return rc;
    ag_qctx_t ctx = read_ctx(call);
    rc = ag_query_retrieve(&ctx, c, ids, n, &ps, wv, which, &call->result);
    ag_coll_unref(c);
    return rc;
}

static int h_get_point(ag_call_t *call)
{
    ag_point_id_t id;
    int rc = ag_id_parse_str(call->params[1], &id, &call->diag);
    if (rc)
        return rc;
    ag_collection_t *c;
    if ((rc = ag_call_collection(call, &c)) != 0)
        return rc;
    ag_qctx_t ctx = read_ctx(call);
    rc = ag_query_get(&ctx, c, &id, &call->result);
    ag_coll_unref(c);
    return rc;
}

static int h_count(ag_call_t *call)
{
    int rc = AG_JSON_ONLY(call->body, "", &call->diag, "filter", "exact", "shard_key");
    if (rc)
        return rc;
    bool exact = true;
    if ((rc = ag_json_get_bool(call->body, "exact", "", &exact, &call->diag)) != 0)
        return rc;
    ag_collection_t *c;
    if ((rc = ag_call_collection(call, &c)) != 0)
        return rc;
    ag_qctx_t ctx = read_ctx(call);
    const json_t *fj = json_object_get(call->body, "filter");
    ag_scope_t sc;
    if ((rc = ag_scope_init(&sc, c, call->restriction, fj, "", &call->diag)) == 0) {
        json_int_t count = 0;
        rc = ag_query_count(&ctx, &sc, fj, &count);
        ag_scope_release(&sc);
        if (rc == 0)
            call->result = json_pack("{s:I}", "count", count);
    }
    ag_coll_unref(c);
    return rc;
}

static int h_scroll(ag_call_t *call)
{
    int rc = AG_JSON_ONLY(call->body, "", &call->diag, "offset", "limit", "filter", "with_payload",
                          "with_vector", "with_vectors", "order_by", "shard_key", "consistency");
    if (rc)
        return rc;
    uint64_t limit = 10;
    if ((rc = ag_json_get_uint(call->body, "limit", "", AG_MAX_LIMIT, &limit, &call->diag)) != 0)
        return rc;
    if (limit == 0)
        return ag_fail(&call->diag, AG_EUNPROCESSABLE, "limit: must be at least 1");
    ag_point_id_t offset;
    json_t *off = json_object_get(call->body, "offset");
    bool has_offset = off && !json_is_null(off);
    if (has_offset && (rc = ag_id_parse(off, &offset, "offset", &call->diag)) != 0)
        return rc;
    ag_payload_sel_t ps;
    bool wv = false;
    const json_t *which;
    if ((rc = ag_parse_output(call->body, "with_vector", true, &ps, &wv, &which, &call->diag)))
        return rc;
    ag_collection_t *c;
    if ((rc = ag_call_collection(call, &c)) != 0)
        return rc;
    ag_qctx_t ctx = read_ctx(call);
    const json_t *fj = json_object_get(call->body, "filter");
    ag_scope_t sc;
    if ((rc = ag_scope_init(&sc, c, call->restriction, fj, "", &call->diag)) == 0) {
        rc = ag_query_scroll(&ctx, &sc, fj, json_object_get(call->body, "order_by"),
                             has_offset ? &offset : NULL, limit, &ps, wv, which, &call->result);
        ag_scope_release(&sc);
    }
    ag_coll_unref(c);
    return rc;
}

/* ---- facet --------------------------------------------------------------------------------- */

/* Counts of each value of an indexed key among the points the caller may read (the row
 * restriction applies, like every read). */
static int h_facet(ag_call_t *call)
{
    int rc = AG_JSON_ONLY(call->body, "", &call->diag, "key", "filter", "limit", "exact",
                          "shard_key", "consistency", "timeout");
    if (rc)
        return rc;
    const char *key = NULL;
    uint64_t limit = 10;
    bool exact = false;
    if ((rc = ag_json_get_str(call->body, "key", "", &key, &call->diag)) != 0 ||
        (rc = ag_json_get_uint(call->body, "limit", "", AG_MAX_LIMIT, &limit, &call->diag)) != 0 ||
        (rc = ag_json_get_bool(call->body, "exact", "", &exact, &call->diag)) != 0)
        return rc;
    if (!key || ag_payload_path_check(key, NULL) != 0)
        return ag_fail(&call->diag, AG_EINVAL, "key: expected a payload key");
    if ((rc = ag_call_timeout_json(call, json_object_get(call->body, "timeout"), "")) != 0)
        return rc;
    if (limit == 0)
        return ag_fail(&call->diag, AG_EUNPROCESSABLE, "limit: must be at least 1");
    ag_collection_t *c;
    if ((rc = ag_call_collection(call, &c)) != 0)
        return rc;
    ag_qctx_t ctx = read_ctx(call);
    const json_t *fj = json_object_get(call->body, "filter");
    ag_scope_t sc;
    json_t *hits = NULL;
    if ((rc = ag_scope_init(&sc, c, call->restriction, fj, "", &call->diag)) == 0) {
        rc = ag_query_facet(&ctx, &sc, fj, key, limit, &hits);
        ag_scope_release(&sc);
    }
    ag_coll_unref(c);
    if (rc)
        return rc;
    call->result = json_pack("{s:o}", "hits", hits);
    return call->result ? 0 : AG_ENOMEM;
}

/* POST /points/search/matrix/pairs and /offsets: a search's access (read:data), the row
 * restriction applied to the sampled points. */
static int matrix(ag_call_t *call, bool offsets)
{
    int rc = AG_JSON_ONLY(call->body, "", &call->diag, "filter", "sample", "limit", "using",
                          "shard_key");
    if (rc)
        return rc;
    uint64_t sample = AG_MATRIX_DEFAULT_SAMPLE, limit = AG_MATRIX_DEFAULT_LIMIT;
    const char *using_name = NULL;
    if ((rc = ag_json_get_uint(call->body, "sample", "", AG_MATRIX_MAX_PAIRS, &sample,
                               &call->diag)) != 0 ||
        (rc = ag_json_get_uint(call->body, "limit", "", AG_MATRIX_MAX_PAIRS, &limit,
                               &call->diag)) != 0 ||
        (rc = ag_json_get_str(call->body, "using", "", &using_name, &call->diag)) != 0)
        return rc;
    if (sample < 2)
        return ag_fail(&call->diag, AG_EUNPROCESSABLE,
                       "Validation error in JSON body: [sample: value %llu invalid, must be 2 or "
                       "larger]",
                       (unsigned long long)sample);
    if (limit < 1)
        return ag_fail(&call->diag, AG_EUNPROCESSABLE,
                       "Validation error in JSON body: [limit: value 0 invalid, must be 1 or "
                       "larger]");
    /* every sampled point has at most sample - 1 neighbours */
    uint64_t pairs = sample * (limit < sample ? limit : sample - 1);
    if (pairs > AG_MATRIX_MAX_PAIRS)
        return ag_fail(&call->diag, AG_EINVAL,
                       "sample: sample x limit is at most %u pairs in one request, got %llu",
                       AG_MATRIX_MAX_PAIRS, (unsigned long long)pairs);
    ag_collection_t *c;
    if ((rc = ag_call_collection(call, &c)) != 0)
        return rc;
    ag_qctx_t ctx = read_ctx(call);
    const json_t *fj = json_object_get(call->body, "filter");
    ag_scope_t sc;
    if ((rc = ag_scope_init(&sc, c, call->restriction, fj, "filter", &call->diag)) == 0) {
        rc = ag_query_matrix(&ctx, &sc, fj, using_name, (size_t)sample, (size_t)limit, offsets,
                             &call->result);
        ag_scope_release(&sc);
    }
    ag_coll_unref(c);
    return rc;
}

static int h_matrix_pairs(ag_call_t *call)
{
    return matrix(call, false);
}

static int h_matrix_offsets(ag_call_t *call)
{
    return matrix(call, true);
}

const ag_route_t ag_routes_read[] = {
    {AG_HTTP_POST, "/collections/{name}/points", "read:data", AG_SCOPE_COLLECTION, h_retrieve, true,
     false, false, false, true},
    {AG_HTTP_POST, "/collections/{name}/points/scroll", "read:data", AG_SCOPE_COLLECTION, h_scroll,
     true, false, false, false, true},
    {AG_HTTP_POST, "/collections/{name}/points/count", "read:data", AG_SCOPE_COLLECTION, h_count,
     true, false, false, false, true},
    {AG_HTTP_POST, "/collections/{name}/facet", "read:data", AG_SCOPE_COLLECTION, h_facet, true,
     false, false, false, true},
    {AG_HTTP_GET, "/collections/{name}/points/{id}", "read:data", AG_SCOPE_COLLECTION, h_get_point,
     false, false},
    {AG_HTTP_POST, "/collections/{name}/points/search/matrix/pairs", "read:data",
     AG_SCOPE_COLLECTION, h_matrix_pairs, true, false, false, false, true},
    {AG_HTTP_POST, "/collections/{name}/points/search/matrix/offsets", "read:data",
     AG_SCOPE_COLLECTION, h_matrix_offsets, true, false, false, false, true},
};
const size_t ag_routes_read_len = AG_ARRAY_LEN(ag_routes_read);
