/*
 * The service endpoints Qdrant clients and tools call on a single node (docs/COMPATIBILITY.md
 * "Service endpoints"): a collection's cluster layout (one local shard), its optimization
 * progress (the graph linker's queue), issues (none are detected: always an empty list), and
 * node quotas (reported; enabling them is refused, Aegis has no quota enforcement).
 */
#include <stdio.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "ag_log.h"
#include "api/ag_api.h"
#include "api/ag_guard.h"
#include "json/ag_json.h"

/* This node's id: stable for a storage directory (FNV-1a of its path), as Qdrant's peer id is
 * stable for a node. */
static uint64_t node_id(const ag_call_t *call)
{
    const char *p = call->api->cfg->storage_path ? call->api->cfg->storage_path : "";
    uint64_t h = 1469598103934665603ULL;
    for (; *p; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211ULL;
    return h >> 1; /* within JSON's signed range */
}

/* Collection stats under the caller's data rows, as GET /collections/{name} counts them. */
static int stats_for(ag_call_t *call, ag_collection_t *c, ag_coll_stats_t *st)
{
    ag_diag_t ignored;
    ag_filter_t *rows = NULL;
    if (!call->restriction &&
        ag_guard_authorize(call, "read:data", ag_coll_name(c), &rows, &ignored) == 0)
        call->restriction = rows;
    return ag_coll_stats(c, call->restriction, st);
}

/* A collection's cluster information needs whole-collection access, as Qdrant defines it
 * (docs/PERMISSIONS.md "Whole-collection access"): global read:clusters, or unrestricted
 * read:data on the collection that is read-only or comes with update:payload_indexes there — a
 * collection r or rw token, not a prw one (which writes points but not the schema) nor a
 * row-restricted one. The route's admission already checked read:collections. */
static int may_read_cluster(ag_call_t *call, const char *coll)
{
    ag_diag_t ig = {{0}};
    if (ag_guard_may(call, "read:clusters", NULL))
        return 0;
    ag_filter_t *rows = NULL;
    bool data = ag_guard_authorize(call, "read:data", coll, &rows, &ig) == 0;
    bool whole = data && !rows;
    ag_filter_free(rows);
    rows = NULL;
    bool writer = ag_guard_authorize(call, "write:data", coll, &rows, &ig) == 0;
    ag_filter_free(rows);
    bool schema = ag_guard_may(call, "update:payload_indexes", coll);
    if (whole && (!writer || schema))
        return 0;
    return ag_fail(&call->diag, AG_EFORBIDDEN,
                   "Forbidden: missing permission read:clusters (the cluster information of "
                   "collection '%s' needs it, or access to the whole collection: a collection r "
                   "or rw token, not prw, not row-restricted)",
                   coll);
}

static int h_coll_cluster(ag_call_t *call)
{
    int rc = may_read_cluster(call, call->params[0]);
    if (rc)
        return rc;
    ag_collection_t *c;
    if ((rc = ag_call_collection(call, &c)) != 0)
        return rc;
    /* Cluster mode: the placement recorded in etcd. */
    if ((call->result = ag_shard_cluster_info(call)) != NULL) {
        ag_coll_unref(c);
        return 0;
    }
    ag_coll_stats_t st;
    rc = stats_for(call, c, &st);
    ag_coll_unref(c);
    if (rc)
        return rc;
    json_decref(st.params);
    json_decref(st.schema);
    call->result =
        json_pack("{s:I,s:i,s:[{s:i,s:I,s:s}],s:[],s:[]}", "peer_id", (json_int_t)node_id(call),
                  "shard_count", 1, "local_shards", "shard_id", 0, "points_count",
                  (json_int_t)st.points, "state", "Active", "remote_shards", "shard_transfers");
    return call->result ? 0 : AG_ENOMEM;
}

/* GET /logger: the log level in force (Qdrant's LoggerConfig; Aegis logs to stderr only). */
static int h_logger(ag_call_t *call)
{
    call->result = json_pack("{s:s}", "log_level", ag_log_level_name(ag_log_get_level()));
    return call->result ? 0 : AG_ENOMEM;
}

/* POST /logger {"log_level": "debug" | "info" | "warn" | "error" (Qdrant's TRACE and WARNING
 * too)}: applied at once to every thread, until the next restart (the configuration file's
 * log_level is not rewritten). Qdrant's other logger settings (span events, colour, format, a
 * log file) have nothing behind them here: refused with a 400 naming them. */
static int h_logger_set(ag_call_t *call)
{
    const char *k;
    const json_t *v;
    json_object_foreach(call->body, k, v)
    {
        if (strcmp(k, "log_level") != 0 && !json_is_null(v))
            return ag_fail(&call->diag, AG_EINVAL,
                           "%.100s: not supported by this server (it logs one text format to "
                           "stderr); only log_level can be changed",
                           k);
    }
    const json_t *lv = json_object_get(call->body, "log_level");
    ag_log_level_t level;
    if (lv && !json_is_null(lv)) {
        if (!json_is_string(lv) || ag_log_parse_level(json_string_value(lv), &level) != 0)
            return ag_fail(&call->diag, AG_EINVAL,
                           "log_level: expected one of trace, debug, info, warn, error (per-module "
                           "filters are not supported)");
        ag_log_set_level(level);
        ag_log(AG_LOG_WARN, "log level set to %s through POST /logger", ag_log_level_name(level));
    }
    call->result = json_true();
    return 0;
}

static int h_coll_cluster_refused(ag_call_t *call)
{
    return ag_fail(&call->diag, AG_EMETHOD,
                   "Cluster is not enabled: this node runs in standalone mode, so there are no "
                   "shards to move, replicate or create");
}

static int h_optimizations(ag_call_t *call)
{
    ag_collection_t *c;
    int rc = ag_call_collection(call, &c);
    if (rc)
        return rc;
    ag_coll_stats_t st;
    rc = stats_for(call, c, &st);
    ag_coll_unref(c);
    if (rc)
        return rc;
    json_decref(st.params);
    json_decref(st.schema);
    /* No segments to merge: the one optimization is linking queued vectors into the graphs. */
    call->result = json_pack("{s:{s:i,s:i,s:I,s:i},s:[]}", "summary", "queued_optimizations",
                             st.queued ? 1 : 0, "queued_segments", 0, "queued_points",
                             (json_int_t)st.queued, "idle_segments", st.queued ? 0 : 1, "running");
    return call->result ? 0 : AG_ENOMEM;
}

static int h_issues(ag_call_t *call)
{
    call->result = json_pack("{s:[]}", "issues");
    return call->result ? 0 : AG_ENOMEM;
}

static int h_issues_clear(ag_call_t *call)
{
    call->result = json_true();
    return 0;
}

static json_t *percent_or_null(double used, double total)
{
    if (!(total > 0) || used < 0)
        return json_null();
    double p = used * 100.0 / total;
    return json_integer((json_int_t)(p > 100 ? 100 : p));
}

static int h_quotas(ag_call_t *call)
{
    double rss = -1, total = (double)sysconf(_SC_PHYS_PAGES) * (double)sysconf(_SC_PAGESIZE);
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long size, resident;
    if (f && fscanf(f, "%lu %lu", &size, &resident) == 2)
        rss = (double)resident * (double)sysconf(_SC_PAGESIZE);
    if (f)
        fclose(f);
    struct statvfs sv;
    double dused = -1, dtotal = 0;
    if (call->api->cfg->storage_path && statvfs(call->api->cfg->storage_path, &sv) == 0) {
        dtotal = (double)sv.f_blocks * (double)sv.f_frsize;
        dused = dtotal - (double)sv.f_bfree * (double)sv.f_frsize;
    }
    call->result = json_pack("{s:{s:b},s:{s:o,s:o}}", "config", "enabled", 0, "usage",
                             "resident_memory_percent", percent_or_null(rss, total),
                             "disk_usage_percent", percent_or_null(dused, dtotal));
    return call->result ? 0 : AG_ENOMEM;
}

static int h_quotas_set(ag_call_t *call)
{
    int rc = AG_JSON_ONLY(call->body, "", &call->diag, "enabled", "max_resident_memory_percent",
                          "max_disk_usage_percent", "release_margin_percent");
    if (rc)
        return rc;
    const json_t *en = json_object_get(call->body, "enabled");
    if (en && !json_is_boolean(en))
        return ag_fail(&call->diag, AG_EINVAL, "enabled: expected a boolean");
    if (json_is_true(en))
        return ag_fail(&call->diag, AG_EINVAL,
                       "enabled: node quotas are not supported by this server (docs/"
                       "COMPATIBILITY.md \"Service endpoints\"); writes are refused with 507 when "
                       "the storage device or map is full");
    call->result = json_true();
    return 0;
}

const ag_route_t ag_routes_qdrant_service[] = {
    {AG_HTTP_GET, "/issues", "read:collections", AG_SCOPE_NONE, h_issues, false, false, true},
    {AG_HTTP_DELETE, "/issues", "update:clusters", AG_SCOPE_NONE, h_issues_clear, false, false},
    {AG_HTTP_GET, "/quotas", "read:clusters", AG_SCOPE_NONE, h_quotas, false, false},
    {AG_HTTP_GET, "/logger", "read:clusters", AG_SCOPE_NONE, h_logger, false, false},
    {AG_HTTP_POST, "/logger", "update:clusters", AG_SCOPE_NONE, h_logger_set, true, false},
    {AG_HTTP_PUT, "/quotas", "update:clusters", AG_SCOPE_NONE, h_quotas_set, true, false},
    {AG_HTTP_GET, "/collections/{name}/cluster", "read:collections", AG_SCOPE_COLLECTION,
     h_coll_cluster, false, false},
    {AG_HTTP_POST, "/collections/{name}/cluster", "update:collections", AG_SCOPE_COLLECTION,
     h_coll_cluster_refused, true, false},
    {AG_HTTP_GET, "/collections/{name}/optimizations", "read:collections", AG_SCOPE_COLLECTION,
     h_optimizations, false, false},
};
const size_t ag_routes_qdrant_service_len = AG_ARRAY_LEN(ag_routes_qdrant_service);
