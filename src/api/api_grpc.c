/* api_grpc.c — the gRPC RPC table and its dispatch through the REST request path
 * (ag_grpc_api.h, docs/API.md "gRPC"). */
#include "ag_grpc_api.h"

#include <stdatomic.h>
#include <stdio.h>
#include <unistd.h>

#include "ag_clock.h"
#include "ag_log.h"
#include "ag_metrics.h"
#include "api/ag_guard.h"
#include "api/ag_pbjson.h"
#include "json/ag_json.h"

typedef struct rpc {
    const char *path;    /* "/qdrant.Points/Search" */
    const char *action;  /* declared action; must equal the REST route's (checked at start) */
    int method;          /* the REST route it runs as */
    const char *pattern; /* its pattern; {name} is the message's collection_name, another {x}
                            the string field `param` (field_name, snapshot_name) */
    unsigned param;      /* field number of the message's second path parameter; 0 = none */
    ag_pb_decode_fn decode;
    ag_pb_encode_fn encode;
} rpc_t;

#define R(p, a, m, pat, name)                                                                      \
    {                                                                                              \
        p, a, m, pat, 0, ag_pb_decode_##name, ag_pb_encode_##name                                  \
    }
/* An RPC whose route has a second path parameter, read from field f of the message. */
#define R2(p, a, m, pat, f, name)                                                                  \
    {                                                                                              \
        p, a, m, pat, f, ag_pb_decode_##name, ag_pb_encode_##name                                  \
    }

/* Every RPC served. Anything else is UNIMPLEMENTED as soon as its headers arrive. */
static const rpc_t rpcs[] = {
    R("/qdrant.Qdrant/HealthCheck", "read:public", AG_HTTP_GET, "/healthz", health),
    R("/grpc.health.v1.Health/Check", "read:public", AG_HTTP_GET, "/healthz", grpc_health),
    R("/qdrant.Collections/List", "read:collections", AG_HTTP_GET, "/collections",
      list_collections),
    R("/qdrant.Collections/Get", "read:collections", AG_HTTP_GET, "/collections/{name}",
      get_collection),
    R("/qdrant.Collections/Create", "create:collections", AG_HTTP_PUT, "/collections/{name}",
      create_collection),
    R("/qdrant.Collections/Delete", "delete:collections", AG_HTTP_DELETE, "/collections/{name}",
      delete_collection),
    R("/qdrant.Collections/CollectionExists", "read:collections", AG_HTTP_GET,
      "/collections/{name}/exists", collection_exists),
    R("/qdrant.Points/Upsert", "write:points", AG_HTTP_PUT, "/collections/{name}/points", upsert),
    R("/qdrant.Points/Search", "read:data", AG_HTTP_POST, "/collections/{name}/points/search",
      search),
    R("/qdrant.Points/Query", "read:data", AG_HTTP_POST, "/collections/{name}/points/query", query),
    R("/qdrant.Points/Scroll", "read:data", AG_HTTP_POST, "/collections/{name}/points/scroll",
      scroll),
    R("/qdrant.Points/Get", "read:data", AG_HTTP_POST, "/collections/{name}/points", get_points),
    R("/qdrant.Points/Delete", "delete:points", AG_HTTP_POST, "/collections/{name}/points/delete",
      delete_points),
    R("/qdrant.Points/Count", "read:data", AG_HTTP_POST, "/collections/{name}/points/count", count),
    /* As REST: the route admits any reader and authorizes each operation on its own. */
    R("/qdrant.Points/UpdateBatch", "read:data", AG_HTTP_POST, "/collections/{name}/points/batch",
      update_batch),
    R("/qdrant.Points/SetPayload", "update:data", AG_HTTP_POST,
      "/collections/{name}/points/payload", set_payload),
    R("/qdrant.Points/OverwritePayload", "update:data", AG_HTTP_PUT,
      "/collections/{name}/points/payload", overwrite_payload),
    R("/qdrant.Points/DeletePayload", "update:data", AG_HTTP_POST,
      "/collections/{name}/points/payload/delete", delete_payload),
    R("/qdrant.Points/ClearPayload", "update:data", AG_HTTP_POST,
      "/collections/{name}/points/payload/clear", clear_payload),
    R("/qdrant.Points/CreateFieldIndex", "update:payload_indexes", AG_HTTP_PUT,
      "/collections/{name}/index", create_field_index),
    R("/qdrant.Collections/UpdateAliases", "update:collections", AG_HTTP_POST,
      "/collections/aliases", update_aliases),
    R("/qdrant.Collections/ListAliases", "read:collections", AG_HTTP_GET, "/aliases", list_aliases),
    R("/qdrant.Collections/ListCollectionAliases", "read:collections", AG_HTTP_GET,
      "/collections/{name}/aliases", list_collection_aliases),
    R("/qdrant.Collections/Update", "update:collections", AG_HTTP_PATCH, "/collections/{name}",
      update_collection),
    R("/qdrant.Collections/CollectionClusterInfo", "read:collections", AG_HTTP_GET,
      "/collections/{name}/cluster", cluster_info),
    R("/qdrant.Points/SearchBatch", "read:data", AG_HTTP_POST,
      "/collections/{name}/points/search/batch", search_batch),
    R("/qdrant.Points/SearchGroups", "read:data", AG_HTTP_POST,
      "/collections/{name}/points/search/groups", search_groups),
    R("/qdrant.Points/QueryBatch", "read:data", AG_HTTP_POST,
      "/collections/{name}/points/query/batch", query_batch),
    R("/qdrant.Points/QueryGroups", "read:data", AG_HTTP_POST,
      "/collections/{name}/points/query/groups", query_groups),
    R("/qdrant.Points/Recommend", "read:data", AG_HTTP_POST, "/collections/{name}/points/recommend",
      recommend),
    R("/qdrant.Points/RecommendBatch", "read:data", AG_HTTP_POST,
      "/collections/{name}/points/recommend/batch", recommend_batch),
    R("/qdrant.Points/RecommendGroups", "read:data", AG_HTTP_POST,
      "/collections/{name}/points/recommend/groups", recommend_groups),
    R("/qdrant.Points/Discover", "read:data", AG_HTTP_POST, "/collections/{name}/points/discover",
      discover),
    R("/qdrant.Points/DiscoverBatch", "read:data", AG_HTTP_POST,
      "/collections/{name}/points/discover/batch", discover_batch),
    R("/qdrant.Points/Facet", "read:data", AG_HTTP_POST, "/collections/{name}/facet", facet),
    R("/qdrant.Points/SearchMatrixPairs", "read:data", AG_HTTP_POST,
      "/collections/{name}/points/search/matrix/pairs", matrix_pairs),
    R("/qdrant.Points/SearchMatrixOffsets", "read:data", AG_HTTP_POST,
      "/collections/{name}/points/search/matrix/offsets", matrix_offsets),
    R("/qdrant.Points/UpdateVectors", "update:points", AG_HTTP_PUT,
      "/collections/{name}/points/vectors", update_vectors),
    R("/qdrant.Points/DeleteVectors", "update:points", AG_HTTP_POST,
      "/collections/{name}/points/vectors/delete", delete_vectors),
    R2("/qdrant.Points/DeleteFieldIndex", "update:payload_indexes", AG_HTTP_DELETE,
       "/collections/{name}/index/{field}", 3, delete_field_index),
    /* Snapshots: the REST routes' handlers (api_snapshots.c), so the same checks and files. */
    R("/qdrant.Snapshots/Create", "create:snapshots", AG_HTTP_POST, "/collections/{name}/snapshots",
      create_snapshot),
    R("/qdrant.Snapshots/List", "read:collections", AG_HTTP_GET, "/collections/{name}/snapshots",
      list_snapshots),
    R2("/qdrant.Snapshots/Delete", "delete:snapshots", AG_HTTP_DELETE,
       "/collections/{name}/snapshots/{snapshot}", 2, delete_snapshot),
    R("/qdrant.Snapshots/CreateFull", "manage:snapshots", AG_HTTP_POST, "/snapshots",
      create_full_snapshot),
    R("/qdrant.Snapshots/ListFull", "read:snapshots", AG_HTTP_GET, "/snapshots",
      list_full_snapshots),
    R2("/qdrant.Snapshots/DeleteFull", "manage:snapshots", AG_HTTP_DELETE, "/snapshots/{snapshot}",
       1, delete_full_snapshot),
};

int ag_grpc_api_init(const ag_api_t *api, ag_diag_t *diag)
{
    for (size_t i = 0; i < AG_ARRAY_LEN(rpcs); i++) {
        const rpc_t *r = &rpcs[i];
        if (!r->action || !r->action[0])
            return ag_fail(diag, AG_ECONFIG, "gRPC method %s declares no action", r->path);
        const ag_route_t *route = NULL;
        for (size_t k = 0; k < api->nroutes && !route; k++)
            if (api->routes[k].method == r->method &&
                strcmp(api->routes[k].pattern, r->pattern) == 0)
                route = &api->routes[k];
        if (!route)
            return ag_fail(diag, AG_ECONFIG, "gRPC method %s runs as %s, which is not a route",
                           r->path, r->pattern);
        if (!route->action || strcmp(route->action, r->action) != 0)
            return ag_fail(diag, AG_ECONFIG,
                           "gRPC method %s declares %s but its route %s requires %s", r->path,
                           r->action, r->pattern, route->action ? route->action : "(none)");
    }
    return 0;
}

const void *ag_grpc_api_lookup(void *ud, const char *path)
{
    (void)ud;
    for (size_t i = 0; i < AG_ARRAY_LEN(rpcs); i++)
        if (strcmp(rpcs[i].path, path) == 0)
            return &rpcs[i];
    return NULL;
}

/* ---- the synthetic REST request ------------------------------------------------------------ */

static char *dup_str(const char *s)
{
    return s ? strdup(s) : NULL;
}

static void wipe(char *s)
{
    if (!s)
        return;
    volatile char *v = s;
    while (*v)
        *v++ = 0;
    free(s);
}

static void req_free(ag_request_t *req)
{
    if (req->app_free && req->app)
        req->app_free(req->app);
    free(req->path);
    for (int i = 0; i < req->nseg; i++)
        free(req->seg[i]);
    for (int i = 0; i < req->nquery; i++) {
        free(req->query[i].key);
        free(req->query[i].val);
    }
    wipe(req->api_key);
    wipe(req->authorization);
    free(req->body);
    free(req->resp_body);
    if (req->spool_fd >= 0)
        close(req->spool_fd);
    if (req->spool_path) {
        unlink(req->spool_path);
        free(req->spool_path);
    }
    if (req->resp_fd >= 0)
        close(req->resp_fd);
    free(req);
}

static bool add_query(ag_request_t *req, const char *k, const char *v)
{
    if (req->nquery >= AG_HTTP_MAX_QUERY)
        return false;
    req->query[req->nquery].key = strdup(k);
    req->query[req->nquery].val = strdup(v);
    req->nquery++;
    return req->query[req->nquery - 1].key && req->query[req->nquery - 1].val;
}

/* Reads the string field `field` of a message's top level without decoding the message: its last
 * occurrence (protobuf's rule, which the decoder follows too) in *out / *out_len, or none (*out
 * NULL). False when the message is not well-formed protobuf down to that level. */
static bool scan_string(const uint8_t *m, size_t len, unsigned field, const uint8_t **out,
                        size_t *out_len)
{
    *out = NULL;
    *out_len = 0;
    size_t i = 0;
    while (i < len) {
        uint64_t key = 0;
        for (unsigned shift = 0;; shift += 7) {
            if (i >= len || shift > 63)
                return false;
            key |= (uint64_t)(m[i] & 0x7f) << shift;
            if (!(m[i++] & 0x80))
                break;
        }
        uint64_t n = 0;
        switch (key & 7) {
        case 0: /* varint */
            for (unsigned k = 0;; k++) {
                if (i >= len || k > 9)
                    return false;
                if (!(m[i++] & 0x80))
                    break;
            }
            break;
        case 1:
            if (len - i < 8)
                return false;
            i += 8;
            break;
        case 5:
            if (len - i < 4)
                return false;
            i += 4;
            break;
        case 2:
            for (unsigned shift = 0;; shift += 7) {
                if (i >= len || shift > 63)
                    return false;
                n |= (uint64_t)(m[i] & 0x7f) << shift;
                if (!(m[i++] & 0x80))
                    break;
            }
            if (n > len - i)
                return false;
            if ((key >> 3) == field) {
                *out = m + i;
                *out_len = (size_t)n;
            }
            i += (size_t)n;
            break;
        default: /* groups: not in proto3 */
            return false;
        }
    }
    return true;
}

/* Builds the REST request rpc runs as, with the path parameters read from the message (scanned,
 * not decoded: the guard runs before the message is decoded). NULL when out of memory; *malformed
 * set when the message is not protobuf. Owned by the caller (req_free). */
static ag_request_t *req_new(const rpc_t *rpc, const ag_grpc_call_t *call, bool *malformed)
{
    static atomic_uint_fast64_t next_id;
    *malformed = false;
    ag_request_t *req = calloc(1, sizeof(*req));
    if (!req)
        return NULL;
    req->t_start = ag_now_mono();
    req->t_ready = req->t_start;
    req->method = rpc->method;
    snprintf(req->method_name, sizeof(req->method_name), "gRPC");
    snprintf(req->request_id, sizeof(req->request_id), "g%llx",
             (unsigned long long)atomic_fetch_add(&next_id, 1));
    snprintf(req->remote_addr, sizeof(req->remote_addr), "%s", call->remote_addr);
    snprintf(req->peer_addr, sizeof(req->peer_addr), "%s",
             call->peer_addr ? call->peer_addr : call->remote_addr);
    req->content_length = UINT64_MAX;
    req->spool_fd = -1; /* no upload RPC: never set by the routes run here */
    req->resp_fd = -1;
    req->metrics_slot = AG_METRICS_NO_ROUTE;
    req->client_cert_refused = call->client_cert_refused;
    bool ok = (req->path = strdup(rpc->path)) != NULL;
    req->api_key = dup_str(call->api_key);
    req->authorization = dup_str(call->authorization);
    ok = ok && (!call->api_key || req->api_key) && (!call->authorization || req->authorization);
    /* Segments of the pattern, {name} replaced by the message's collection_name (field 1 in
     * every Qdrant request that names one), another {x} by field rpc->param. */
    const char *p = rpc->pattern + 1;
    while (ok && *p && req->nseg < AG_HTTP_MAX_SEGMENTS) {
        const char *end = strchr(p, '/');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        char *seg;
        if (p[0] == '{') {
            unsigned field = strncmp(p, "{name}", 6) == 0 ? 1 : rpc->param;
            const uint8_t *v;
            size_t vlen;
            if (!scan_string(call->msg, call->msg_len, field, &v, &vlen)) {
                *malformed = true;
                ok = false;
                break;
            }
            seg = malloc(vlen + 1);
            if (seg) {
                if (vlen)
                    memcpy(seg, v, vlen);
                seg[vlen] = '\0';
            }
            len = vlen; /* a NUL inside shows as len != strlen: refused by the name check */
        } else {
            seg = strndup(p, len);
        }
        ok = seg != NULL;
        req->seg[req->nseg] = seg;
        req->seg_len[req->nseg++] = len;
        if (!end)
            break;
        p = end + 1;
    }
    if (!ok) {
        req_free(req);
        return NULL;
    }
    return req;
}

/* Adds what the decoded message says to the admitted request: wait, the deadline, the body. */
static bool req_fill(ag_request_t *req, const ag_grpc_call_t *call, const ag_pb_req_t *pr)
{
    bool ok = true;
    if (pr->wait)
        ok = add_query(req, "wait", "true");
    /* The call's deadline: the message's timeout or grpc-timeout, whichever is shorter. */
    uint64_t t = pr->timeout_s;
    if (call->timeout_ms) {
        uint64_t s = (call->timeout_ms + 999) / 1000;
        t = t ? AG_MIN(t, s) : s;
    }
    if (ok && t) {
        char buf[24];
        snprintf(buf, sizeof(buf), "%llu", (unsigned long long)t);
        ok = add_query(req, "timeout", buf);
    }
    if (ok && pr->body) {
        req->body = ag_json_render(pr->body); /* u64 ids as bare integers again */
        ok = req->body != NULL;
        req->body_len = ok ? strlen(req->body) : 0;
        req->body_cap = req->body_len;
        req->content_length = req->body_len;
    }
    return ok;
}

/* The decoded path parameters must be the scanned ones the guard saw (fail closed). */
static bool same_params(const ag_request_t *req, const rpc_t *rpc, const ag_pb_req_t *pr)
{
    const char *p = rpc->pattern + 1;
    for (int i = 0; i < req->nseg && p; i++) {
        if (p[0] == '{') {
            const char *want = strncmp(p, "{name}", 6) == 0 ? pr->collection : pr->param;
            if (!want || strcmp(want, req->seg[i]) != 0 || strlen(want) != req->seg_len[i])
                return false;
        }
        p = strchr(p, '/');
        p = p ? p + 1 : NULL;
    }
    return true;
}

/* Qdrant's mapping of outcomes to gRPC status codes (docs/API.md "gRPC"). */
static int grpc_status(int http, const char *msg)
{
    switch (http) {
    case 400:
    case 422:
        return msg && strstr(msg, "already exists") ? AG_GRPC_ALREADY_EXISTS
                                                    : AG_GRPC_INVALID_ARGUMENT;
    case 401:
        return AG_GRPC_UNAUTHENTICATED;
    case 403:
        return AG_GRPC_PERMISSION_DENIED;
    case 404:
        return AG_GRPC_NOT_FOUND;
    case 405:
        return AG_GRPC_UNIMPLEMENTED;
    case 408:
        return AG_GRPC_DEADLINE_EXCEEDED;
    case 409:
        return AG_GRPC_ALREADY_EXISTS;
    case 413:
    case 429:
    case 507:
        return AG_GRPC_RESOURCE_EXHAUSTED;
    case 503:
        return AG_GRPC_UNAVAILABLE;
    default:
        return AG_GRPC_INTERNAL;
    }
}

static void fail(ag_grpc_call_t *call, int status, const char *msg)
{
    call->status = status;
    snprintf(call->message, sizeof(call->message), "%s", msg);
}

static void finish_error(ag_grpc_call_t *call, ag_request_t *req, int http)
{
    /* The REST envelope's message: {"status":{"error":"..."},...} */
    json_t *env = req->resp_body ? json_loadb(req->resp_body, req->resp_len, 0, NULL) : NULL;
    const char *msg = json_string_value(json_object_get(json_object_get(env, "status"), "error"));
    fail(call, grpc_status(http, msg), msg ? msg : "request failed");
    json_decref(env);
    if (req->retry_after[0])
        snprintf(call->retry_after, sizeof(call->retry_after), "%s", req->retry_after);
}

void ag_grpc_api_handle(void *ud, ag_grpc_call_t *call)
{
    ag_api_t *api = ud;
    const rpc_t *rpc = call->method;
    ag_diag_t diag = {{0}};
    ag_pb_req_t pr = {0};
    double t0 = ag_now_mono();
    bool malformed = false;
    ag_request_t *req = req_new(rpc, call, &malformed);
    if (!req) {
        fail(call, malformed ? AG_GRPC_INVALID_ARGUMENT : AG_GRPC_RESOURCE_EXHAUSTED,
             malformed ? "malformed or truncated protobuf message" : "out of memory");
        return;
    }
    /* Route, authenticate, authorize on the metadata and the scanned path parameters: a refused
     * call's message is never decoded. */
    ag_api_begin(api, req);
    if (req->app) /* its answer is converted from the JSON tree (no direct text answer) */
        ((ag_call_t *)req->app)->grpc = true;
    int http = 0;
    if (!req->responded) {
        int rc = rpc->decode(call->msg, call->msg_len, &pr, &diag);
        if (rc == 0 && !same_params(req, rpc, &pr))
            rc = ag_fail(&diag, AG_EINVAL, "malformed protobuf message: its names are ambiguous");
        if (rc == 0 && !req_fill(req, call, &pr))
            rc = ag_fail(&diag, AG_ENOMEM, "out of memory");
        ag_pb_req_release(&pr);
        if (rc) {
            fail(call, rc == AG_ENOMEM ? AG_GRPC_RESOURCE_EXHAUSTED : AG_GRPC_INVALID_ARGUMENT,
                 diag.msg[0] ? diag.msg : "invalid request message");
            http = rc == AG_ENOMEM ? 507 : 400;
            /* Admitted but refused on its content: audited as REST's 400 would be. */
            if (req->app)
                ag_guard_audit(req->app, http);
        } else {
            ag_api_handle(api, req);
        }
    }
    if (!http) {
        http = req->status ? req->status : 500;
        if (http >= 200 && http < 300) {
            const ag_call_t *c = req->app;
            int rc = rpc->encode(c ? c->result : NULL, ag_now_mono() - t0, &call->resp,
                                 &call->resp_len, &diag);
            if (rc)
                fail(call, AG_GRPC_INTERNAL, diag.msg);
            else
                call->status = AG_GRPC_OK;
        } else {
            finish_error(call, req, http);
        }
    }
    /* Counted in /metrics under the REST route the call ran as. */
    ag_metrics_request(req->metrics_slot, http, ag_now_mono() - t0);
    if (api->cfg->access_log)
        ag_log(AG_LOG_INFO, "access %s gRPC %s %d %.2fms rid=%s who=%s", call->remote_addr,
               rpc->path, call->status, (ag_now_mono() - t0) * 1000.0, req->request_id,
               req->principal_label[0] ? req->principal_label : "-");
    req_free(req);
}

void ag_grpc_api_convert(void *ud, ag_grpc_call_t *call)
{
    (void)ud;
    const rpc_t *rpc = call->method;
    ag_diag_t diag = {{0}};
    ag_pb_req_t pr = {0};
    const uint8_t *v;
    size_t vlen;
    if (!scan_string(call->msg, call->msg_len, 1, &v, &vlen) ||
        (rpc->param && !scan_string(call->msg, call->msg_len, rpc->param, &v, &vlen))) {
        fail(call, AG_GRPC_INVALID_ARGUMENT, "malformed or truncated protobuf message");
        return;
    }
    int rc = rpc->decode(call->msg, call->msg_len, &pr, &diag);
    if (rc) {
        fail(call, AG_GRPC_INVALID_ARGUMENT, diag.msg[0] ? diag.msg : "invalid request message");
        ag_pb_req_release(&pr);
        return;
    }
    /* The body through the JSON text the handlers would read, and back as if it were the result. */
    char *text = pr.body ? ag_json_render(pr.body) : NULL;
    json_t *back = text ? json_loads(text, 0, NULL) : NULL;
    free(text);
    rc = rpc->encode(back ? back : pr.body, 0.001, &call->resp, &call->resp_len, &diag);
    json_decref(back);
    ag_pb_req_release(&pr);
    if (rc)
        fail(call, AG_GRPC_INTERNAL, diag.msg);
    else
        call->status = AG_GRPC_OK;
}

const char *ag_grpc_api_path(size_t i)
{
    return i < AG_ARRAY_LEN(rpcs) ? rpcs[i].path : NULL;
}
