/*
 * ag_metrics.h — process-wide counters behind GET /metrics (docs/API.md "Metrics").
 *
 * Any layer bumps a counter through one call; the api layer reads them all to render the
 * Prometheus text. Bumping is a relaxed atomic add on one of AG_METRICS_STRIPES copies, chosen
 * once per thread, so threads that count at the same time rarely share a cache line; reading sums
 * the stripes. Counters only ever grow (until the process restarts), as Prometheus expects.
 *
 * Two kinds:
 *   scalar counters (ag_metric_t), e.g. the snapshot code calls ag_metrics_add(AG_M_SNAPSHOTS,1);
 *   per-route families keyed by a small slot (the api layer passes the route's index in its
 *   table, AG_METRICS_NO_ROUTE for requests that matched none): responses by status with a
 *   latency histogram, and authorization decisions allowed/denied.
 * Nothing here allocates; every function is thread-safe.
 */
#ifndef AG_METRICS_H
#define AG_METRICS_H

#include "ag_base.h"

#define AG_METRICS_STRIPES 8
#define AG_METRICS_ROUTES 192                       /* slots 0..190 are routes */
#define AG_METRICS_NO_ROUTE (AG_METRICS_ROUTES - 1) /* 404s, 405s, refused before routing */
#define AG_METRICS_BUCKETS 13                       /* finite histogram bounds, + Inf */

/* Scalar counters. Add to the end; ag_metrics_name() gives each its label in /metrics. */
typedef enum {
    AG_M_VECTORS_LINKED = 0, /* vectors the background indexer linked into a graph */
    AG_M_SNAPSHOTS,          /* snapshots created (the snapshot code bumps it) */
    AG_M_THROTTLED,          /* requests answered 429 because their address was locked out */
    /* failed authentications, by reason (aegis_auth_failures_total{reason}) */
    AG_M_AUTH_MISSING,     /* no credential at all */
    AG_M_AUTH_INVALID,     /* a credential nobody issued, or malformed */
    AG_M_AUTH_EXPIRED,     /* an expired (or not yet valid) token or key */
    AG_M_AUTH_CLIENT_CERT, /* no valid client certificate under mutual TLS */
    AG_M_AUTH_ADDRESS,     /* an API key used from outside its allowed_ips */
    AG_M_AUTH_INVITE,      /* a wrong invite code */
    AG_M_AUTH_ERROR,       /* the credential could not be checked (fails closed) */
    AG_M_AUDIT_RECORDS,    /* audit records written */
    AG_M_AUDIT_FAILURES,   /* audit records that could not be written */
    AG_M_PLAN_CANDIDATES, /* filtered dense searches scored exactly over payload-index candidates */
    AG_M_PLAN_GRAPH,      /* filtered dense searches handed to the index with the predicate */
    AG_M_AUTH_PEER,       /* a node-to-node call whose signed header does not check out (bad,
                             replayed, tampered; docs/CLUSTER.md "Node-to-node calls") */
    AG_M_COUNT
} ag_metric_t;

void ag_metrics_add(ag_metric_t m, uint64_t n);
uint64_t ag_metrics_get(ag_metric_t m);

/* The HTTP statuses counted one by one; any other falls in the last entry (status 0). */
#define AG_METRICS_STATUSES 24
extern const int ag_metrics_status_codes[AG_METRICS_STATUSES];
/* Upper bounds of the latency histogram in seconds (the last bucket is +Inf). */
extern const double ag_metrics_bucket_bounds[AG_METRICS_BUCKETS];

/* One response on route slot: its status and how long it took, in seconds. */
void ag_metrics_request(unsigned slot, int status, double seconds);
/* One authorization decision on route slot. */
void ag_metrics_decision(unsigned slot, bool allowed);

/* A route slot's totals, summed over the stripes. buckets are per bucket (not cumulative); the
 * last one is +Inf. min_s/max_s are 0 when nothing was counted. */
typedef struct ag_metrics_route {
    uint64_t status[AG_METRICS_STATUSES];
    uint64_t buckets[AG_METRICS_BUCKETS + 1];
    uint64_t count;
    double sum_s, min_s, max_s;
    uint64_t allowed, denied;
} ag_metrics_route_t;
void ag_metrics_route(unsigned slot, ag_metrics_route_t *out);

#endif
