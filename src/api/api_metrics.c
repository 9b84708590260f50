/*
 * GET /metrics (Prometheus text format 0.0.4) and GET /telemetry (JSON, scoped to the caller).
 * The families and their names are listed in docs/API.md "Metrics"; Qdrant's names are used
 * where Qdrant has the metric, aegis_* otherwise. Counters come from base/ag_metrics.h, gauges
 * are read at scrape time (collections, memory, LMDB, connections, workers).
 */
#include <malloc.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <unistd.h>

#include "ag_clock.h"
#include "ag_metrics.h"
#include "ag_version.h"
#include "api/ag_api.h"
#include "api/ag_guard.h"
#include "query/ag_query.h"

/* The text grows in one buffer with a ceiling (a server with a million collections still
 * answers, truncated at a line boundary, rather than allocating without bound). */
#define MAX_TEXT (16u << 20)

typedef struct out {
    char *buf;
    size_t len, cap;
    bool failed;
} out_t;

__attribute__((format(printf, 2, 3))) static void put(out_t *o, const char *fmt, ...)
{
    if (o->failed)
        return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(o->buf ? o->buf + o->len : NULL, o->buf ? o->cap - o->len : 0, fmt, ap);
        va_end(ap);
        if (n < 0) {
            o->failed = true;
            return;
        }
        if (o->buf && o->len + (size_t)n < o->cap) {
            o->len += (size_t)n;
            return;
        }
        size_t cap = o->cap ? o->cap * 2 : 64 * 1024;
        while (cap <= o->len + (size_t)n)
            cap *= 2;
        if (cap > MAX_TEXT) {
            o->failed = true; /* the lines written so far stay */
            return;
        }
        char *g = realloc(o->buf, cap);
        if (!g) {
            o->failed = true;
            return;
        }
        o->buf = g;
        o->cap = cap;
    }
}

static void family(out_t *o, const char *name, const char *type, const char *help)
{
    put(o, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* A label value with Prometheus's escapes (backslash, double quote, newline), into buf. */
static const char *label(const char *s, char *buf, size_t len)
{
    size_t o = 0;
    for (; s && *s && o + 3 < len; s++) {
        if (*s == '\\' || *s == '"') {
            buf[o++] = '\\';
            buf[o++] = *s;
        } else if (*s == '\n') {
            buf[o++] = '\\';
            buf[o++] = 'n';
        } else {
            buf[o++] = *s;
        }
    }
    buf[o] = '\0';
    return buf;
}

/* ---- collections --------------------------------------------------------------------------- */

typedef struct coll_row {
    char name[256];
    ag_coll_counts_t k;
} coll_row_t;

/* Every collection's counts (a new array the caller frees; *n entries). With call set, only the
 * collections the caller may see. */
static coll_row_t *collections(ag_call_t *call, ag_store_t *store, size_t *n)
{
    json_t *names = ag_store_list(store);
    size_t total = json_array_size(names);
    coll_row_t *rows = calloc(total ? total : 1, sizeof(*rows));
    *n = 0;
    size_t i;
    json_t *v;
    json_array_foreach(names, i, v)
    {
        const char *name = json_string_value(v);
        ag_collection_t *c;
        if (!rows || !name || (call && !ag_guard_visible(call, name)))
            continue;
        if (ag_store_get(store, name, &c, NULL) != 0)
            continue;
        snprintf(rows[*n].name, sizeof(rows[*n].name), "%s", name);
        ag_coll_counts(c, &rows[*n].k);
        ag_coll_unref(c);
        (*n)++;
    }
    json_decref(names);
    return rows;
}

static void collection_families(out_t *o, ag_store_t *store)
{
    size_t n = 0;
    coll_row_t *rows = collections(NULL, store, &n);
    uint64_t vectors = 0;
    for (size_t i = 0; rows && i < n; i++)
        vectors += rows[i].k.vectors;
    family(o, "collections_total", "gauge", "number of collections");
    put(o, "collections_total %zu\n", n);
    family(o, "collections_vector_total", "gauge", "dense vectors in all collections");
    put(o, "collections_vector_total %llu\n", (unsigned long long)vectors);
    static const struct {
        const char *name, *help;
    } per[] = {
        {"collection_points", "points in the collection"},
        {"collection_vectors", "dense vectors in the collection"},
        {"aegis_collection_indexed_vectors", "dense vectors linked into the collection's graphs"},
        {"aegis_indexing_queue_vectors", "dense vectors waiting to be linked (status yellow)"},
    };
    char esc[600];
    for (size_t f = 0; f < AG_ARRAY_LEN(per); f++) {
        family(o, per[f].name, "gauge", per[f].help);
        for (size_t i = 0; rows && i < n; i++) {
            const ag_coll_counts_t *k = &rows[i].k;
            uint64_t v = f == 0   ? k->points
                         : f == 1 ? k->vectors
                         : f == 2 ? (k->vectors > k->queued ? k->vectors - k->queued : 0)
                                  : k->queued;
            put(o, "%s{collection=\"%s\"} %llu\n", per[f].name,
                label(rows[i].name, esc, sizeof(esc)), (unsigned long long)v);
        }
    }
    free(rows);
}

/* ---- requests ------------------------------------------------------------------------------ */

static void route_labels(const ag_api_t *api, unsigned slot, char *buf, size_t len)
{
    char esc[300];
    if (slot < api->nroutes)
        snprintf(buf, len, "method=\"%s\",endpoint=\"%s\"",
                 ag_http_method_str(api->routes[slot].method),
                 label(api->routes[slot].pattern, esc, sizeof(esc)));
    else
        snprintf(buf, len, "method=\"ANY\",endpoint=\"(unmatched)\"");
}

static void request_families(out_t *o, const ag_api_t *api)
{
    static ag_metrics_route_t r[AG_METRICS_ROUTES];
    static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
    pthread_mutex_lock(&mu); /* r is big: one scrape at a time uses it */
    for (unsigned s = 0; s < AG_METRICS_ROUTES; s++)
        ag_metrics_route(s, &r[s]);
    char lb[400];
    for (int fail = 0; fail < 2; fail++) {
        const char *name = fail ? "rest_responses_fail_total" : "rest_responses_total";
        family(o, name, "counter",
               fail ? "responses with a 4xx or 5xx status, by route and status"
                    : "responses by route and status");
        for (unsigned s = 0; s < AG_METRICS_ROUTES; s++) {
            if (!r[s].count)
                continue;
            route_labels(api, s, lb, sizeof(lb));
            for (int i = 0; i < AG_METRICS_STATUSES; i++) {
                int code = ag_metrics_status_codes[i];
                if (!r[s].status[i] || (fail && code != 0 && code < 400))
                    continue;
                if (code)
                    put(o, "%s{%s,status=\"%d\"} %llu\n", name, lb, code,
                        (unsigned long long)r[s].status[i]);
                else
                    put(o, "%s{%s,status=\"other\"} %llu\n", name, lb,
                        (unsigned long long)r[s].status[i]);
            }
        }
    }
    static const char *const stat_names[3] = {"rest_responses_avg_duration_seconds",
                                              "rest_responses_min_duration_seconds",
                                              "rest_responses_max_duration_seconds"};
    for (int k = 0; k < 3; k++) {
        family(o, stat_names[k], "gauge",
               k == 0   ? "average response time by route"
               : k == 1 ? "shortest response time by route"
                        : "longest response time by route");
        for (unsigned s = 0; s < AG_METRICS_ROUTES; s++) {
            if (!r[s].count)
                continue;
            route_labels(api, s, lb, sizeof(lb));
            double v = k == 0 ? r[s].sum_s / (double)r[s].count : k == 1 ? r[s].min_s : r[s].max_s;
            put(o, "%s{%s} %.6f\n", stat_names[k], lb, v);
        }
    }
    family(o, "rest_responses_duration_seconds", "histogram", "response time by route");
    for (unsigned s = 0; s < AG_METRICS_ROUTES; s++) {
        if (!r[s].count)
            continue;
        route_labels(api, s, lb, sizeof(lb));
        uint64_t cum = 0;
        for (int b = 0; b < AG_METRICS_BUCKETS; b++) {
            cum += r[s].buckets[b];
            put(o, "rest_responses_duration_seconds_bucket{%s,le=\"%g\"} %llu\n", lb,
                ag_metrics_bucket_bounds[b], (unsigned long long)cum);
        }
        cum += r[s].buckets[AG_METRICS_BUCKETS];
        put(o, "rest_responses_duration_seconds_bucket{%s,le=\"+Inf\"} %llu\n", lb,
            (unsigned long long)cum);
        put(o, "rest_responses_duration_seconds_sum{%s} %.6f\n", lb, r[s].sum_s);
        put(o, "rest_responses_duration_seconds_count{%s} %llu\n", lb, (unsigned long long)cum);
    }
    /* Decisions by the action the route declares: routes sharing an action are summed. */
    family(o, "aegis_decisions_total", "counter",
           "authorization decisions of authenticated requests, by action and outcome");
    bool done[AG_METRICS_ROUTES] = {0};
    for (unsigned s = 0; s < api->nroutes && s < AG_METRICS_ROUTES; s++) {
        if (done[s])
            continue;
        const char *action = api->routes[s].action;
        uint64_t allowed = 0, denied = 0;
        for (unsigned t = s; t < api->nroutes && t < AG_METRICS_ROUTES; t++) {
            if (done[t] || strcmp(api->routes[t].action, action) != 0)
                continue;
            done[t] = true;
            allowed += r[t].allowed;
            denied += r[t].denied;
        }
        if (!allowed && !denied)
            continue;
        put(o, "aegis_decisions_total{action=\"%s\",decision=\"allowed\"} %llu\n", action,
            (unsigned long long)allowed);
        put(o, "aegis_decisions_total{action=\"%s\",decision=\"denied\"} %llu\n", action,
            (unsigned long long)denied);
    }
    pthread_mutex_unlock(&mu);
}

/* ---- process ------------------------------------------------------------------------------- */

static uint64_t resident_bytes(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long pages = 0, rss = 0;
    if (!f)
        return 0;
    if (fscanf(f, "%lu %lu", &pages, &rss) != 2)
        rss = 0;
    fclose(f);
    return (uint64_t)rss * (uint64_t)sysconf(_SC_PAGESIZE);
}

static uint64_t allocated_bytes(void)
{
    struct mallinfo2 mi = mallinfo2();
    return (uint64_t)mi.uordblks + (uint64_t)mi.hblkhd;
}

static void counter(out_t *o, const char *name, const char *help, uint64_t v)
{
    family(o, name, "counter", help);
    put(o, "%s %llu\n", name, (unsigned long long)v);
}

static void gauge(out_t *o, const char *name, const char *help, uint64_t v)
{
    family(o, name, "gauge", help);
    put(o, "%s %llu\n", name, (unsigned long long)v);
}

int ag_api_metrics(ag_call_t *call)
{
    ag_api_t *api = call->api;
    out_t o = {0};
    family(&o, "app_info", "gauge", "the server's name, version and commit");
    put(&o, "app_info{name=\"aegis\",version=\"%s\",commit=\"%s\"} 1\n", AG_VERSION, AG_COMMIT);
    gauge(&o, "app_status_recovery_mode", "1 when started in recovery mode (never, in Aegis)", 0);
    family(&o, "aegis_uptime_seconds", "gauge", "seconds since the server started");
    put(&o, "aegis_uptime_seconds %.3f\n", ag_now_mono() - api->started_at);
    collection_families(&o, api->store);
    counter(&o, "aegis_vectors_linked_total",
            "vectors the background indexer linked into a graph since start",
            ag_metrics_get(AG_M_VECTORS_LINKED));
    request_families(&o, api);

    static const struct {
        ag_metric_t m;
        const char *reason;
    } reasons[] = {
        {AG_M_AUTH_MISSING, "missing"}, {AG_M_AUTH_INVALID, "invalid"},
        {AG_M_AUTH_EXPIRED, "expired"}, {AG_M_AUTH_CLIENT_CERT, "client_certificate"},
        {AG_M_AUTH_ADDRESS, "address"}, {AG_M_AUTH_INVITE, "invite_code"},
        {AG_M_AUTH_ERROR, "error"},     {AG_M_AUTH_PEER, "peer_signature"},
    };
    family(&o, "aegis_auth_failures_total", "counter", "failed authentications by reason");
    for (size_t i = 0; i < AG_ARRAY_LEN(reasons); i++)
        put(&o, "aegis_auth_failures_total{reason=\"%s\"} %llu\n", reasons[i].reason,
            (unsigned long long)ag_metrics_get(reasons[i].m));
    counter(&o, "aegis_throttled_requests_total",
            "requests refused with 429 because their address was locked out",
            ag_metrics_get(AG_M_THROTTLED));
    counter(&o, "aegis_audit_records_total", "audit records written",
            ag_metrics_get(AG_M_AUDIT_RECORDS));
    counter(&o, "aegis_audit_failures_total", "audit records that could not be written",
            ag_metrics_get(AG_M_AUDIT_FAILURES));
    counter(&o, "snapshot_created_total", "snapshots created since start",
            ag_metrics_get(AG_M_SNAPSHOTS));
    family(&o, "aegis_filtered_searches_total", "counter",
           "filtered dense searches by plan: exact over payload-index candidates, or the index "
           "walked with the predicate");
    put(&o,
        "aegis_filtered_searches_total{plan=\"index_candidates\"} %llu\n"
        "aegis_filtered_searches_total{plan=\"predicate\"} %llu\n",
        (unsigned long long)ag_metrics_get(AG_M_PLAN_CANDIDATES),
        (unsigned long long)ag_metrics_get(AG_M_PLAN_GRAPH));
    counter(&o, "points_examined_total",
            "points tested against a read's scope by count, facet, scroll and delete-by-filter",
            ag_scope_examined_total());

    gauge(&o, "memory_resident_bytes", "resident set size of the process", resident_bytes());
    gauge(&o, "memory_allocated_bytes", "bytes allocated through malloc (mallinfo2)",
          allocated_bytes());
    uint64_t map = 0, used = 0;
    ag_store_map_info(api->store, &map, &used);
    gauge(&o, "aegis_lmdb_map_size_bytes", "the LMDB map size (storage.map_size_gb)", map);
    gauge(&o, "aegis_lmdb_used_bytes", "bytes of the LMDB map its pages use", used);

    ag_http_stats_t hs;
    ag_http_stats(atomic_load(&api->http), &hs);
    gauge(&o, "aegis_open_connections", "open HTTP connections", hs.connections);
    family(&o, "aegis_workers", "gauge", "request workers by state");
    put(&o, "aegis_workers{state=\"busy\"} %u\naegis_workers{state=\"idle\"} %u\n", hs.busy,
        hs.workers > hs.busy ? hs.workers - hs.busy : 0);
    gauge(&o, "aegis_worker_queue_length", "requests waiting for a worker", hs.queued);
    counter(&o, "aegis_requests_total", "requests received since start", hs.requests);
    family(&o, "aegis_answers_total", "counter",
           "requests other than probes, by where they were answered: on the network thread "
           "or handed to a request worker");
    put(&o,
        "aegis_answers_total{where=\"inline\"} %llu\naegis_answers_total{where=\"worker\"} "
        "%llu\n",
        (unsigned long long)hs.answered_inline, (unsigned long long)hs.answered_worker);

    if (!o.buf) {
        free(o.buf);
        return AG_ENOMEM;
    }
    call->raw = o.buf;
    call->raw_type = "text/plain; version=0.0.4";
    return 0;
}

/* ---- telemetry ----------------------------------------------------------------------------- */

/*
 * Qdrant's shape, with what Aegis has: app, collections (only those the caller may see, with
 * their counts and indexing progress) and, for a caller who may read /metrics (read:clusters),
 * the server-wide parts — requests by route, memory, connections and workers.
 */
int ag_api_telemetry(ag_call_t *call)
{
    ag_api_t *api = call->api;
    size_t n = 0;
    coll_row_t *rows = collections(call, api->store, &n);
    json_t *list = json_array();
    for (size_t i = 0; rows && list && i < n; i++) {
        const ag_coll_counts_t *k = &rows[i].k;
        json_array_append_new(
            list, json_pack("{s:s,s:s,s:I,s:I,s:I,s:I}", "id", rows[i].name, "status",
                            k->queued ? "yellow" : "green", "points_count", (json_int_t)k->points,
                            "vectors_count", (json_int_t)k->vectors, "indexed_vectors_count",
                            (json_int_t)(k->vectors - AG_MIN(k->queued, k->vectors)),
                            "indexing_queue", (json_int_t)k->queued));
    }
    free(rows);
    json_t *res = json_pack("{s:{s:s,s:s,s:s},s:f,s:{s:I,s:o}}", "app", "name", "aegis", "version",
                            AG_VERSION, "commit", AG_COMMIT, "uptime_seconds",
                            ag_now_mono() - api->started_at, "collections", "number_of_collections",
                            (json_int_t)json_array_size(list), "collections", list);
    if (res && ag_guard_may(call, "read:clusters", NULL)) {
        json_t *rest = json_object();
        for (unsigned s = 0; rest && s < api->nroutes && s < AG_METRICS_ROUTES; s++) {
            ag_metrics_route_t r;
            ag_metrics_route(s, &r);
            if (!r.count)
                continue;
            char key[300];
            snprintf(key, sizeof(key), "%s %s", ag_http_method_str(api->routes[s].method),
                     api->routes[s].pattern);
            json_t *by = json_object();
            for (int i = 0; by && i < AG_METRICS_STATUSES; i++) {
                if (!r.status[i])
                    continue;
                char code[16];
                snprintf(code, sizeof(code), "%d", ag_metrics_status_codes[i]);
                json_object_set_new(by, ag_metrics_status_codes[i] ? code : "other",
                                    json_integer((json_int_t)r.status[i]));
            }
            json_object_set_new(rest, key,
                                json_pack("{s:I,s:o,s:f,s:f,s:f}", "count", (json_int_t)r.count,
                                          "by_status", by, "avg_duration_seconds",
                                          r.sum_s / (double)r.count, "min_duration_seconds",
                                          r.min_s, "max_duration_seconds", r.max_s));
        }
        ag_http_stats_t hs;
        ag_http_stats(atomic_load(&api->http), &hs);
        json_object_set_new(res, "requests", json_pack("{s:o}", "rest", rest));
        json_object_set_new(res, "memory",
                            json_pack("{s:I,s:I}", "resident_bytes", (json_int_t)resident_bytes(),
                                      "allocated_bytes", (json_int_t)allocated_bytes()));
        json_object_set_new(res, "server",
                            json_pack("{s:i,s:i,s:i,s:i}", "open_connections", (int)hs.connections,
                                      "workers", (int)hs.workers, "workers_busy", (int)hs.busy,
                                      "queue_length", (int)hs.queued));
    }
    call->result = res;
    return res ? 0 : AG_ENOMEM;
}
