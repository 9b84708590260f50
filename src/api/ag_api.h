/*
 * ag_api.h — the api layer: the only layer that sees both HTTP and the core. Each request runs
 *   route → authenticate → authorize (→ row restriction) → parse → execute → render → audit
 * with the first three in begin() (before the body is read) and the rest in handle().
 */
#ifndef AG_API_H
#define AG_API_H

#include "ag_base.h"

#include <jansson.h>
#include <stdatomic.h>

#include "ag_arena.h"
#include "ag_config.h"
#include "cluster/ag_peer.h"
#include "http/ag_http.h"
#include "index/ag_filter.h"
#include "store/ag_store.h"
#include "store/ag_write.h"
#include "json/ag_jsonw.h"

typedef struct ag_api ag_api_t;

typedef struct ag_upsert_grant {
    bool split;  /* the write was granted per verb */
    bool create; /* new ids may be added */
    bool update; /* existing ids may be changed */
    ag_filter_t *create_rows, *update_rows;
} ag_upsert_grant_t;
typedef struct ag_call ag_call_t;
typedef int (*ag_handler_fn)(ag_call_t *call);

/* Where a route's scope comes from. */
typedef enum {
    AG_SCOPE_NONE = 0,
    AG_SCOPE_COLLECTION,
    AG_SCOPE_ROLE, /* params[0] names a role (the action's role scope) */
    AG_SCOPE_USER, /* params[0] names a database user (the action's user scope) */
} ag_scope_kind_t;

/* The most routes the tables may hold (the guard keeps one parsed action per route and /metrics
 * one slot per route: base/ag_metrics.h). */
#define AG_MAX_ROUTES 190

typedef struct ag_route {
    int method;          /* ag_http_method_t */
    const char *pattern; /* "/collections/{name}/points/search"; {x} captures one segment */
    const char *action;  /* "<verb>:<resource>" (docs/PERMISSIONS.md); NULL makes the server refuse
                            to start */
    ag_scope_kind_t scope; /* which path parameter names the resource */
    ag_handler_fn handler;
    bool body;         /* the route takes a JSON body */
    bool public_route; /* no credential needed (/, /healthz, /livez, /readyz, invite acceptance) */
    bool list_route;   /* a listing: the handler filters items by what the caller may see */
    bool raw_body;     /* the handler reads req->body itself (ag_call_body parses it) */
    bool read_body;    /* a read (search, count, ...): the body's size budget is checked on the
                          raw text before parsing (ag_json_check_budget) */
    bool upload;       /* a snapshot upload: once admitted, the body streams to a temporary file
                          (ag_snapshots_upload_begin); a refusal is answered before it is read */
    /* Whether this request is known to be cheap enough to answer on the network thread
     * (docs/ARCHITECTURE.md "Inline answers"); NULL = never. Runs on the network thread with the
     * body in and the caller admitted; answers false when unsure. */
    bool (*cheap)(ag_call_t *call);
} ag_route_t;

struct ag_call {
    ag_api_t *api;
    ag_request_t *req;
    const ag_route_t *route;
    const char *params[4]; /* decoded path parameters, in pattern order (borrowed from req) */
    int nparams;
    json_t *body;   /* parsed JSON body or NULL (owned) */
    json_t *result; /* set by the handler (owned), rendered in the envelope */
    /* Or the envelope's text up to and including the result value (`{"result":...`), written
     * directly (api_search.c's fast path; ag_api_handle adds status and time). Owned. */
    ag_jw_t result_text;
    bool grpc;       /* a gRPC call (api_grpc.c): its answer is converted from call->result */
    int http_status; /* 0 = derived from the return code */
    char *raw;       /* alternative raw response body (owned) */
    const char *raw_type;
    ag_filter_t *restriction; /* row-level restriction from authorization (owned); NULL = none */
    struct ag_principal *principal; /* the authenticated caller (owned reference) */
    ag_arena_t arena;               /* per-request temporaries */
    ag_diag_t diag;
    bool wait;
    bool dry_run;       /* validate a write completely without applying it (batch updates) */
    const char *tenant; /* the tenant the route names (tenant API), borrowed from req; or NULL */
    /* The collection params[0] named (directly or through an alias), resolved once at admission
     * and authorized by its own name; the handlers use this reference and never resolve the path
     * again (docs/SECURITY.md "Aliases"). Owned; NULL when nothing had that name. */
    ag_collection_t *coll;
    json_t *audit_detail; /* what the audit record says changed (owned; NULL = nothing) */
    /* An upsert granted verb by verb (docs/PERMISSIONS.md "Verbs"): when set, a new id needs
     * create and lands within create_rows, an existing id needs update and stays within
     * update_rows (NULL rows = all); call->restriction is then unused by the write. Owned. */
    ag_upsert_grant_t upsert;
    /* Cluster mode: the security state's revision the caller was authorized at; a security
     * change the handler makes is compared against it (base/ag_repl.h, docs/CLUSTER.md). */
    uint64_t sec_rev;
    /* A node-to-node call for this node's own shards only (the guard checked its signature):
     * never fanned out again (api/api_shard.c, docs/CLUSTER.md). */
    bool shard_local;
    /* Its verified claim (the sending node, the original client's address, the body's hash) and
     * the address the call came from (the sending node's); req->remote_addr is the client's. */
    ag_peer_claim_t peer;
    char via_addr[64];
    /* The search body as the inline check read it (api_search.c): arena memory, reused by the
     * direct path so the body is read once; NULL = not read. */
    struct ag_fastsearch *fast;
    double deadline;    /* ag_now_mono() time after which the request stops with 408 */
    uint64_t timeout_s; /* the timeout the deadline came from (for the message) */
};

typedef struct ag_guard ag_guard_t;

struct ag_api {
    ag_config_t *cfg;  /* borrowed */
    ag_guard_t *guard; /* borrowed: authentication and authorization */
    ag_store_t *store; /* borrowed */
    const ag_route_t *routes;
    size_t nroutes;
    double started_at;
    _Atomic(ag_http_t *)
        http; /* borrowed, set once the server listens (GET /metrics reads its state) */
};

/* Checks the route table (every route declares an action). */
int ag_api_init(ag_api_t *api, ag_config_t *cfg, ag_store_t *store, ag_guard_t *guard,
                ag_diag_t *diag);
void ag_api_begin(void *ud, ag_request_t *req);
void ag_api_handle(void *ud, ag_request_t *req);
/* ag_http_cheap_fn: the route's cheap() when service.inline_answers is on and the request can
 * only run here (not a cluster node, where it might fan out). */
bool ag_api_cheap(void *ud, ag_request_t *req);

/* ---- shared helpers for the handler files ------------------------------------------------- */

/* Parses the request body into call->body if that has not happened yet (raw_body routes). */
int ag_call_body(ag_call_t *call);
/* A new reference to the collection resolved at admission (call->coll). 404 with Qdrant's
 * message when there was none. */
int ag_call_collection(ag_call_t *call, ag_collection_t **out);
/* Runs fn(ud, c) in a write session on the call's collection (store/ag_write.h ag_coll_write)
 * and returns what fn returns. A collection deleted meanwhile is 404, fn not called. */
int ag_call_write(ag_call_t *call, ag_coll_write_fn fn, void *ud);
/* Request cost (docs/SECURITY.md "Request cost"). The deadline starts at the
 * request's arrival: the `timeout` query parameter (whole seconds, >= 1) capped by
 * service.max_request_timeout_sec, which is also the default. Returns AG_ETIMEOUT (408, with a
 * message in call->diag) once it has passed, else 0. Cheap (a monotonic clock read): call it
 * between units of work, never while holding a partial write. */
int ag_call_deadline(ag_call_t *call);
/* Tightens the deadline with a `timeout` given inside a JSON body (Qdrant accepts it there on a
 * few endpoints); v may be NULL or null (nothing to do). 400 naming path for a bad value. */
int ag_call_timeout_json(ag_call_t *call, const json_t *v, const char *path);

/* The standard update answer {"operation_id": n, "status": "completed"|"acknowledged"}. */
json_t *ag_update_result(const ag_call_t *call);
/* Strict mode (api/ag_strict_mode.c): the collection's own limits on this request, checked once
 * the body is parsed and before the handler runs. 0, or the refusal (400, 429 with Retry-After). */
int ag_strict_check(ag_call_t *call);
/* init_from (api/api_init_from.c): ag_init_from_check authorizes reading the source and finds
 * it (before the collection is created); ag_init_from copies its points into the new collection
 * `name`, deleting that collection again if the copy fails. */
int ag_init_from_check(ag_call_t *call, const json_t *init_from);
int ag_init_from(ag_call_t *call, const char *name, const json_t *init_from);

/* Cluster mode's sharded collections (api/api_shard.c, docs/CLUSTER.md "Collections"):
 * ag_shard_start applies the collection records in etcd to the local catalog and follows them;
 * ag_shard_create / ag_shard_delete record a collection's creation / deletion in etcd first (0
 * and nothing done on a single node); ag_shard_route sends a point request on a collection with
 * shards on other nodes to those nodes and merges the answers (*handled false: run the handler
 * here as usual); ag_shard_cluster_info is the collection's layout (new object; NULL = none). */
int ag_shard_start(ag_api_t *api, ag_diag_t *diag);
int ag_shard_create(ag_call_t *call, const json_t *params, bool init_from);
int ag_shard_delete(ag_call_t *call);
int ag_shard_route(ag_call_t *call, bool *handled);
/* Alias actions in cluster mode (recorded in etcd; *handled false on a single node). */
int ag_shard_alias_actions(ag_call_t *call, const json_t *actions, ag_alias_check_fn check,
                           bool *handled);
json_t *ag_shard_cluster_info(ag_call_t *call);
/* Collection metadata in cluster mode (docs/CLUSTER.md "Collections"): each records the change in
 * the collection's etcd record (compare-and-swap; 503 and nothing changed without etcd), then
 * brings this node's collection to the record; the other nodes follow through their watch.
 * *recorded false when there is nothing to record (a single node, a shard-local call, a
 * collection created before cluster mode): the handler then changes its collection itself.
 * Checks that only the store can make run first (the handlers' job). */
int ag_shard_index_change(ag_call_t *call, const char *field, const json_t *def, bool *recorded);
enum { AG_SHARD_TENANT_CREATE, AG_SHARD_TENANT_ACTIVE, AG_SHARD_TENANT_DELETE };
/* *first: the tenant created is the collection's first; *deleted (may be NULL): points deleted
 * here with a deleted tenant. */
int ag_shard_tenant_change(ag_call_t *call, int op, const char *tenant, bool active, bool *recorded,
                           bool *first, size_t *deleted);
int ag_shard_patch(ag_call_t *call, const json_t *patch, bool *recorded);
int ag_shard_vector_change(ag_call_t *call, const char *vname, const json_t *cfg, bool *recorded);
/* GET /collections/{c} on a sharded collection: the counts of result (this node's) summed with
 * every other node's (a node down: 503 naming it). 0 and nothing done otherwise. */
int ag_shard_info_sum(ag_call_t *call, json_t *result);
/* GET /metrics and GET /telemetry (api/api_metrics.c; docs/API.md "Metrics"). */
int ag_api_metrics(ag_call_t *call);
int ag_api_telemetry(ag_call_t *call);

/* Route tables of each api area (defined in api_*.c). */
extern const ag_route_t ag_routes_service[];
extern const size_t ag_routes_service_len;
extern const ag_route_t ag_routes_collections[];
extern const size_t ag_routes_collections_len;
extern const ag_route_t ag_routes_points[];
extern const size_t ag_routes_points_len;
extern const ag_route_t ag_routes_read[];
extern const size_t ag_routes_read_len;
extern const ag_route_t ag_routes_search[];
extern const size_t ag_routes_search_len;
extern const ag_route_t ag_routes_identity[];
extern const size_t ag_routes_identity_len;
extern const ag_route_t ag_routes_auth[];
extern const size_t ag_routes_auth_len;
extern const ag_route_t ag_routes_tenants[];
extern const size_t ag_routes_tenants_len;
extern const ag_route_t ag_routes_mgmt[];
extern const size_t ag_routes_mgmt_len;
extern const ag_route_t ag_routes_snapshots[];
extern const size_t ag_routes_snapshots_len;
extern const ag_route_t ag_routes_backups[];
extern const size_t ag_routes_backups_len;
extern const ag_route_t ag_routes_qdrant_service[];
extern const size_t ag_routes_qdrant_service_len;
extern const ag_route_t ag_routes_dashboard[];
extern const size_t ag_routes_dashboard_len;

#endif
