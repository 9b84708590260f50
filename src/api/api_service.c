/* Service endpoints: identity, health probes, metrics, telemetry. */
#include <stdio.h>

#include "ag_version.h"
#include "api/ag_api.h"
#include "api/ag_guard.h"
#include "cluster/ag_cluster.h"

/* The Qdrant REST API version whose data plane Aegis speaks; the official clients check it. */
#define AG_QDRANT_API_VERSION "1.18.0"

/* Qdrant answers GET / with a bare object (no envelope); the official clients read .version. */
static int h_root(ag_call_t *call)
{
    json_t *info =
        json_pack("{s:s,s:s,s:s,s:s}", "title", "aegis - privacy-first vector database", "version",
                  AG_QDRANT_API_VERSION, "aegis_version", AG_VERSION, "commit", AG_COMMIT);
    call->raw = info ? json_dumps(info, JSON_COMPACT) : NULL;
    call->raw_type = "application/json";
    json_decref(info);
    return call->raw ? 0 : AG_ENOMEM;
}

static int text(ag_call_t *call, const char *body)
{
    call->raw = strdup(body);
    call->raw_type = "text/plain";
    return call->raw ? 0 : AG_ENOMEM;
}

static int h_healthz(ag_call_t *call)
{
    return text(call, "healthz check passed");
}

/* In cluster mode a node that cannot confirm its security state refuses every authenticated
 * request (docs/CLUSTER.md "Reads"): it tells load balancers so (503) until it can again. */
static int h_readyz(ag_call_t *call)
{
    ag_cluster_t *cl = ag_guard_cluster(call->api->guard);
    if (cl && !ag_cluster_fresh(cl, NULL)) {
        call->http_status = 503;
        return text(call, "not ready: the cluster's security state is not confirmed");
    }
    return text(call, "all shards are ready");
}

const ag_route_t ag_routes_service[] = {
    {AG_HTTP_GET, "/", "read:public", AG_SCOPE_NONE, h_root, false, true},
    {AG_HTTP_GET, "/healthz", "read:public", AG_SCOPE_NONE, h_healthz, false, true},
    {AG_HTTP_GET, "/livez", "read:public", AG_SCOPE_NONE, h_healthz, false, true},
    {AG_HTTP_GET, "/readyz", "read:public", AG_SCOPE_NONE, h_readyz, false, true},
    {AG_HTTP_GET, "/metrics", "read:clusters", AG_SCOPE_NONE, ag_api_metrics, false, false},
    /* every principal; the answer shows only what the caller may see */
    {AG_HTTP_GET, "/telemetry", "read:profile", AG_SCOPE_NONE, ag_api_telemetry, false, false},
};
const size_t ag_routes_service_len = AG_ARRAY_LEN(ag_routes_service);
