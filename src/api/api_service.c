/* Service endpoints: identity, health probes, metrics, telemetry. */
#include <stdio.h>

#include "ag_clock.h"
#include "api/ag_api.h"
#include "api/ag_points.h"

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

static int h_readyz(ag_call_t *call)
{
    return text(call, "all shards are ready");
}

static int h_metrics(ag_call_t *call)
{
    json_t *names = ag_store_list(call->api->store);
    size_t ncoll = json_array_size(names);
    uint64_t points = 0;
    size_t i;
    json_t *n;
    json_array_foreach(names, i, n)
    {
        ag_collection_t *c;
        if (ag_store_get(call->api->store, json_string_value(n), &c, NULL) == 0) {
            points += ag_coll_live(c);
            ag_coll_unref(c);
        }
    }
    json_decref(names);
    char buf[1024];
    snprintf(buf, sizeof(buf),
             "# HELP app_info information about the server\n"
             "# TYPE app_info gauge\n"
             "app_info{name=\"aegis\",version=\"%s\"} 1\n"
             "# HELP collections_total number of collections\n"
             "# TYPE collections_total gauge\n"
             "collections_total %zu\n"
             "# HELP points_total number of points in all collections\n"
             "# TYPE points_total gauge\n"
             "points_total %llu\n"
             "# HELP uptime_seconds seconds since start\n"
             "# TYPE uptime_seconds counter\n"
             "uptime_seconds %.0f\n"
             "# HELP points_examined_total points tested against a read's scope by count, facet, "
             "scroll and delete-by-filter\n"
             "# TYPE points_examined_total counter\n"
             "points_examined_total %llu\n",
             AG_VERSION, ncoll, (unsigned long long)points, ag_now_mono() - call->api->started_at,
             (unsigned long long)ag_scope_examined_total());
    call->raw_type = "text/plain; version=0.0.4";
    call->raw = strdup(buf);
    return call->raw ? 0 : AG_ENOMEM;
}

static int h_telemetry(ag_call_t *call)
{
    json_t *names = ag_store_list(call->api->store);
    call->result =
        json_pack("{s:{s:s,s:s},s:f,s:{s:I}}", "app", "name", "aegis", "version", AG_VERSION,
                  "uptime_seconds", ag_now_mono() - call->api->started_at, "collections",
                  "number_of_collections", (json_int_t)json_array_size(names));
    json_decref(names);
    return call->result ? 0 : AG_ENOMEM;
}

const ag_route_t ag_routes_service[] = {
    {AG_HTTP_GET, "/", "read:public", AG_SCOPE_NONE, h_root, false, true},
    {AG_HTTP_GET, "/healthz", "read:public", AG_SCOPE_NONE, h_healthz, false, true},
    {AG_HTTP_GET, "/livez", "read:public", AG_SCOPE_NONE, h_healthz, false, true},
    {AG_HTTP_GET, "/readyz", "read:public", AG_SCOPE_NONE, h_readyz, false, true},
    {AG_HTTP_GET, "/metrics", "read:clusters", AG_SCOPE_NONE, h_metrics, false, false},
    {AG_HTTP_GET, "/telemetry", "read:clusters", AG_SCOPE_NONE, h_telemetry, false, false},
};
const size_t ag_routes_service_len = AG_ARRAY_LEN(ag_routes_service);
