#include "ag_api.h"

#include "ag_repl.h"

#include <stdatomic.h>
#include <stdio.h>

#include "ag_clock.h"
#include "ag_log.h"
#include "ag_metrics.h"
#include "api/ag_guard.h"
#include "api/ag_snapshots.h"
#include "json/ag_fastpoints.h"
#include "json/ag_json.h"

_Static_assert(AG_MAX_ROUTES < AG_METRICS_NO_ROUTE, "every route needs a metrics slot");
/* The budget scan skipped for direct-path search bodies (ag_api_handle) relies on this. */
_Static_assert(AG_MAX_DIM + 64 <= AG_MAX_BATCH && AG_MAX_DIM + 64 <= AG_MAX_READ_BODY_VALUES,
               "a direct-path search body must fit the read body budget");

static ag_route_t route_table[AG_MAX_ROUTES];

/* Appends one area's routes; false (nothing appended) when the table would overflow, which
 * ag_api_init turns into a start-up error rather than a silently missing route. */
static bool append(size_t *n, const ag_route_t *src, size_t len)
{
    if (len > AG_MAX_ROUTES - *n)
        return false;
    for (size_t i = 0; i < len; i++)
        route_table[(*n)++] = src[i];
    return true;
}

int ag_api_init(ag_api_t *api, ag_config_t *cfg, ag_store_t *store, ag_guard_t *guard,
                ag_diag_t *diag)
{
    memset(api, 0, sizeof(*api));
    api->cfg = cfg;
    api->guard = guard;
    api->store = store;
    api->started_at = ag_now_mono();
    size_t n = 0;
    const struct {
        const ag_route_t *routes;
        size_t len;
    } areas[] = {
        {ag_routes_service, ag_routes_service_len},
        {ag_routes_collections, ag_routes_collections_len},
        {ag_routes_points, ag_routes_points_len},
        {ag_routes_read, ag_routes_read_len},
        {ag_routes_search, ag_routes_search_len},
        {ag_routes_identity, ag_routes_identity_len},
        {ag_routes_auth, ag_routes_auth_len},
        {ag_routes_tenants, ag_routes_tenants_len},
        {ag_routes_mgmt, ag_routes_mgmt_len},
        {ag_routes_snapshots, ag_routes_snapshots_len},
        {ag_routes_backups, ag_routes_backups_len},
        {ag_routes_qdrant_service, ag_routes_qdrant_service_len},
        {ag_routes_dashboard, ag_routes_dashboard_len},
    };
    for (size_t a = 0; a < AG_ARRAY_LEN(areas); a++)
        if (!append(&n, areas[a].routes, areas[a].len))
            return ag_fail(diag, AG_ECONFIG, "more than %d routes: raise AG_MAX_ROUTES",
                           AG_MAX_ROUTES);
    for (size_t i = 0; i < n; i++) {
        const ag_route_t *r = &route_table[i];
        if (!r->handler || !r->pattern)
            return ag_fail(diag, AG_ECONFIG, "route %zu has no handler", i);
        int rc = ag_guard_check_route(guard, r, i, diag);
        if (rc)
            return rc;
    }
    api->routes = route_table;
    api->nroutes = n;
    return ag_snapshots_start(api, diag);
}

/* ---- routing ------------------------------------------------------------------------------- */

/* Matches pattern against the request's decoded segments; captures {x} segments. */
static bool match(const char *pattern, const ag_request_t *req, const char **params, int *np)
{
    int seg = 0;
    *np = 0;
    const char *p = pattern + 1;
    while (*p) {
        const char *end = strchr(p, '/');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (seg >= req->nseg)
            return false;
        if (p[0] == '{') {
            if (*np < 4)
                params[(*np)++] = req->seg[seg];
        } else if (strlen(req->seg[seg]) != len || req->seg_len[seg] != len ||
                   memcmp(req->seg[seg], p, len) != 0) {
            return false;
        }
        seg++;
        if (!end)
            break;
        p = end + 1;
    }
    return seg == req->nseg;
}

static const ag_route_t *route(const ag_api_t *api, ag_request_t *req, const char **params, int *np,
                               bool *path_known)
{
    *path_known = false;
    int method = req->method == AG_HTTP_HEAD ? AG_HTTP_GET : req->method;
    /* Literal segments win over captures: first pass takes routes whose literal matches the
     * segment exactly, which the table order (literals first) guarantees. */
    for (size_t i = 0; i < api->nroutes; i++) {
        const ag_route_t *r = &api->routes[i];
        const char *tmp[4];
        int n;
        if (!match(r->pattern, req, tmp, &n))
            continue;
        *path_known = true;
        if (r->method != method)
            continue;
        memcpy(params, tmp, sizeof(tmp));
        *np = n;
        return r;
    }
    return NULL;
}

/* ---- rendering ----------------------------------------------------------------------------- */

/* Every refusal is explained in the server log — 4xx at debug, 5xx at error — with the request
 * id, the route, the kind of caller and the reason the client was given (docs/API.md "Logs"). */
static void explain(const ag_request_t *req, int status, const char *reason)
{
    const ag_call_t *call = req->app;
    const char *label = req->principal_label[0] ? req->principal_label : "none";
    size_t kind = strcspn(label, ":");
    ag_log(status >= 500 ? AG_LOG_ERROR : AG_LOG_DEBUG,
           "rid=%s %s %.200s route=%s caller=%.*s -> %d: %s", req->request_id, req->method_name,
           req->path ? req->path : "-", call && call->route ? call->route->pattern : "(none)",
           (int)AG_MIN(kind, 24), label, status, reason);
}

static void render(ag_request_t *req, int status, json_t *result, const char *error)
{
    if (error && status >= 400)
        explain(req, status, error);
    double t = ag_now_mono() - req->t_start;
    json_t *env;
    if (error)
        env = json_pack("{s:{s:s},s:f}", "status", "error", error, "time", t);
    else
        env = json_pack("{s:O?,s:s,s:f}", "result", result, "status", "ok", "time", t);
    char *text = env ? ag_json_render(env) : NULL;
    json_decref(env);
    if (!text) {
        ag_request_respond_text(req, 500, "application/json",
                                "{\"status\":{\"error\":\"out of memory\"},\"time\":0}");
        return;
    }
    ag_request_respond(req, status, "application/json", text, strlen(text));
}

static void render_error(ag_request_t *req, int code, const ag_diag_t *diag)
{
    const char *msg = diag && diag->msg[0] ? diag->msg : ag_strerror(code);
    render(req, ag_http_status(code), NULL, msg);
}

static void call_free(void *p)
{
    ag_call_t *call = p;
    json_decref(call->body);
    json_decref(call->result);
    ag_jw_free(&call->result_text);
    free(call->raw);
    ag_filter_free(call->restriction);
    ag_guard_release_principal(call);
    if (call->coll)
        ag_coll_unref(call->coll);
    json_decref(call->audit_detail);
    ag_upsert_grant_release(&call->upsert);
    ag_arena_release(&call->arena);
    free(call);
}

/* ---- the two phases ------------------------------------------------------------------------ */

void ag_api_begin(void *ud, ag_request_t *req)
{
    ag_api_t *api = ud;
    ag_diag_t diag = {{0}};
    const char *params[4] = {0};
    int np = 0;
    bool known = false;
    const ag_route_t *r = route(api, req, params, &np, &known);
    if (!r) {
        if (known) {
            render(req, 405, NULL, "method not allowed for this path");
        } else {
            render(req, 404, NULL, "not found: no such endpoint");
        }
        return;
    }
    req->metrics_slot = (unsigned)(r - api->routes);
    /* Names in the path are validated before anything else looks at them. */
    for (int i = 0; i < np; i++) {
        const char *what = i == 0 ? "collection" : "path parameter";
        size_t len = 0;
        for (int s = 0; s < req->nseg; s++)
            if (req->seg[s] == params[i])
                len = req->seg_len[s];
        int rc = ag_name_check(params[i], len, what, &diag);
        if (rc) {
            /* A snapshot name that could not be a file name names no snapshot. */
            if (i == np - 1 && strstr(r->pattern, "/{snapshot}")) {
                render(req, 404, NULL, "Not found: no such snapshot");
            } else {
                ag_diag_t named; /* Qdrant's prefix, which its clients and tests look for */
                ag_fail(&named, AG_EINVAL, "Validation error in path parameters: %s", diag.msg);
                render_error(req, AG_EINVAL, &named);
            }
            return;
        }
    }
    /* Probes and the root answer on the network thread, never queued behind busy workers. */
    req->inline_ok = r->public_route && !r->body; /* invite acceptance writes: a worker's job */
    ag_call_t *call = calloc(1, sizeof(*call));
    if (!call) {
        render(req, 500, NULL, "out of memory");
        return;
    }
    call->api = api;
    call->req = req;
    call->route = r;
    memcpy(call->params, params, sizeof(params));
    call->nparams = np;
    ag_arena_init(&call->arena, 256u << 20);
    req->app = call;
    req->app_free = call_free;

    int retry_after = 0;
    int rc = ag_guard_admit(api->guard, call, (size_t)(r - api->routes), &retry_after, &diag);
    /* Uploads: checked and sent to a temporary file now, before any byte of the body. */
    if (rc == 0 && r->upload)
        rc = ag_snapshots_upload_begin(call, &diag);
    if (rc) {
        if (rc == AG_ETHROTTLED)
            snprintf(req->retry_after, sizeof(req->retry_after), "%d", AG_MAX(retry_after, 1));
        render_error(req, rc, &diag);
        /* A refused upload is answered at once and its connection closed, the body unread. */
        req->answer_now = r->upload;
    }
}

bool ag_api_cheap(void *ud, ag_request_t *req)
{
    ag_api_t *api = ud;
    ag_call_t *call = req->app;
    /* Fail closed: anything but a plain admitted request on a single node goes to a worker. */
    if (!api->cfg->inline_answers || !call || !call->route || !call->route->cheap || call->grpc ||
        call->shard_local || ag_guard_cluster(api->guard))
        return false;
    return call->route->cheap(call);
}

/* Whole seconds, 1 or more; a bigger value than the server's cap is lowered to the cap. */
static int parse_timeout(const char *text, uint64_t cap, uint64_t *out)
{
    uint64_t v = 0;
    if (!text || !*text)
        return AG_EINVAL;
    for (const char *p = text; *p; p++) {
        if (*p < '0' || *p > '9')
            return AG_EINVAL;
        v = v * 10 + (uint64_t)(*p - '0');
        if (v > cap)
            v = cap + 1; /* saturate: anything above the cap is the cap */
    }
    if (v == 0)
        return AG_EINVAL;
    *out = AG_MIN(v, cap);
    return 0;
}

static void set_deadline(ag_call_t *call, uint64_t seconds)
{
    call->timeout_s = seconds;
    call->deadline = call->req->t_ready + (double)seconds;
}

int ag_call_deadline(ag_call_t *call)
{
    if (ag_now_mono() < call->deadline)
        return 0;
    return ag_fail(&call->diag, AG_ETIMEOUT,
                   "Timeout error: the request did not finish within its timeout of %llu s",
                   (unsigned long long)call->timeout_s);
}

int ag_call_timeout_json(ag_call_t *call, const json_t *v, const char *path)
{
    if (!v || json_is_null(v))
        return 0;
    json_int_t n = json_is_integer(v) ? json_integer_value(v) : 0;
    if (n < 1)
        return ag_fail(&call->diag, AG_EINVAL,
                       "%s%stimeout: expected a whole number of seconds >= 1", path,
                       *path ? "." : "");
    if ((uint64_t)n < call->timeout_s)
        set_deadline(call, (uint64_t)n);
    return 0;
}

void ag_api_handle(void *ud, ag_request_t *req)
{
    ag_api_t *api = ud;
    ag_call_t *call = req->app;
    if (!call) {
        render(req, 500, NULL, "request was not routed");
        return;
    }
    uint64_t cap = api->cfg->max_request_timeout_s ? api->cfg->max_request_timeout_s : 30;
    uint64_t seconds = cap;
    const char *t = ag_request_query(req, "timeout");
    int rc = 0;
    if (t && parse_timeout(t, cap, &seconds) != 0)
        rc = ag_fail(&call->diag, AG_EINVAL,
                     "Validation error in query parameters: [timeout: value %s invalid, must "
                     "be a whole number of seconds >= 1 (the server caps it at %llu)]",
                     strspn(t, "0123456789") == strlen(t) && strlen(t) <= 20 ? t : "given",
                     (unsigned long long)cap);
    set_deadline(call, seconds);
    /* A node-to-node call: the body must be the one its header was signed for. */
    if (rc == 0 && call->shard_local)
        rc = ag_guard_peer_body(call, &call->diag);
    /* Time spent waiting for a worker counts (the deadline runs from the moment the body was
     * in): a request whose deadline passed in the queue is answered without being started. */
    if (rc == 0)
        rc = ag_call_deadline(call);
    /* A body the direct search reader already took (cheap_search, api_search.c) holds one vector
     * of at most AG_MAX_DIM numbers and a few scalars: inside every budget below, unless it has
     * a filter (whose lists the scan bounds), so the scan is skipped for it. */
    bool within_budget = call->fast && !call->fast->filter;
    if (rc == 0 && call->route->read_body && req->body_len > 0 && !within_budget) {
        /* Refused on the text, before a JSON tree many times its size exists. */
        static const ag_json_budget_t read_budget = {
            .max_values = AG_MAX_READ_BODY_VALUES,
            .max_array = AG_MAX_BATCH,
            .max_match_list = AG_MAX_MATCH_VALUES,
            .max_id_list = AG_MAX_FILTER_VALUES,
        };
        rc = ag_json_check_budget(req->body, req->body_len, &read_budget, &call->diag);
    }
    if (rc == 0)
        rc = call->route->body && !call->route->raw_body ? ag_call_body(call) : 0;
    if (rc == 0)
        rc = ag_strict_check(call);
    if (rc == 0) {
        const char *w = ag_request_query(req, "wait");
        call->wait = w && (strcmp(w, "true") == 0 || strcmp(w, "1") == 0);
        ag_repl_pin(call->sec_rev);
        bool handled = false;
        rc = ag_shard_route(call, &handled);
        if (rc == 0 && !handled)
            rc = call->route->handler(call);
        ag_repl_pin(0);
    }
    if (rc) {
        render_error(req, rc, &call->diag);
    } else if (req->resp_fd >= 0) {
        /* answered with a file (snapshot downloads) */
    } else if (call->result_text.buf) {
        /* The direct answer: the envelope closed as render() would write it. */
        ag_jw_t *w = &call->result_text;
        ag_jw_lit(w, ",\"status\":\"ok\",\"time\":");
        ag_jw_seconds(w, ag_now_mono() - req->t_start);
        ag_jw_lit(w, "}");
        size_t len = 0;
        char *text = ag_jw_take(w, &len);
        if (text)
            ag_request_respond(req, call->http_status ? call->http_status : 200, "application/json",
                               text, len);
        else
            render(req, 500, NULL, "out of memory");
    } else if (call->raw) {
        char *raw = call->raw;
        call->raw = NULL;
        ag_request_respond(req, call->http_status ? call->http_status : 200,
                           call->raw_type ? call->raw_type : "text/plain", raw, strlen(raw));
    } else {
        render(req, call->http_status ? call->http_status : 200, call->result, NULL);
    }
    ag_guard_audit(call, req->status);
}

/* ---- helpers ------------------------------------------------------------------------------- */

int ag_call_body(ag_call_t *call)
{
    if (call->body)
        return 0;
    if (call->req->body_len > 0)
        return ag_json_parse_body(call->req->body, call->req->body_len, true, &call->body,
                                  &call->diag);
    call->body = json_object();
    return call->body ? 0 : AG_ENOMEM;
}

int ag_call_collection(ag_call_t *call, ag_collection_t **out)
{
    *out = call->coll;
    if (call->coll)
        ag_coll_ref(call->coll);
    else
        return ag_fail(&call->diag, AG_ENOTFOUND, "Not found: Collection `%s` doesn't exist!",
                       call->params[0]);
    return 0;
}

typedef struct call_write {
    ag_coll_write_fn fn;
    void *ud;
    bool ran;
} call_write_t;

static int run_call_write(void *ud, ag_collection_t *c)
{
    call_write_t *w = ud;
    w->ran = true;
    return w->fn(w->ud, c);
}

int ag_call_write(ag_call_t *call, ag_coll_write_fn fn, void *ud)
{
    ag_collection_t *c;
    int rc = ag_call_collection(call, &c);
    if (rc)
        return rc;
    call_write_t w = {fn, ud, false};
    rc = ag_coll_write(c, run_call_write, &w);
    ag_coll_unref(c);
    if (rc && !w.ran)
        return ag_fail(&call->diag, rc, "Not found: Collection `%s` doesn't exist!",
                       call->params[0]);
    return rc;
}

json_t *ag_update_result(const ag_call_t *call)
{
    /* A collection write's number is its collection's last committed one (at least its own):
     * what partial-snapshot manifests compare (docs/SECURITY.md "Partial snapshots"). */
    uint64_t id = call->coll ? ag_coll_last_op(call->coll) : 0;
    if (id == 0)
        id = ag_op_next();
    return json_pack("{s:I,s:s}", "operation_id", (json_int_t)id, "status",
                     call->wait ? "completed" : "acknowledged");
}
