/*
 * ag_cluster.h — cluster mode's control plane (docs/CLUSTER.md): the security state kept in etcd
 * and cached on every node.
 *
 * The cluster is the replicator of base/ag_repl.h for the record stores of auth/ (through
 * store/ag_kv.h): it loads each store's records from etcd when the store opens, commits every
 * change as one compare-and-swap transaction on the security state's version key, applies changes
 * made by other nodes as a watch stream delivers them, and keeps a freshness lease: a probe
 * thread reads the version key (a linearizable read) every stale_after_ms / 4; when the cache
 * holds everything up to that version, it is confirmed fresh until the probe's send time +
 * stale_after_ms. ag_cluster_fresh tells the guard, which refuses every authenticated request
 * while the cache is not confirmed (fail closed).
 *
 * It also registers this node under /aegis/nodes/<node_id> with a lease kept alive by the probe
 * thread, so the nodes of a cluster can be listed.
 */
#ifndef AG_CLUSTER_H
#define AG_CLUSTER_H

#include "ag_base.h"
#include "ag_repl.h"

#include <jansson.h>

typedef struct ag_cluster ag_cluster_t;

typedef struct ag_cluster_config {
    const char *etcd_endpoints; /* comma-separated member URLs */
    const char *node_id;
    const char *advertise_url;
    uint64_t stale_after_ms; /* T_stale */
} ag_cluster_config_t;

/* Connects (one linearizable read: etcd must answer at start-up) and registers the node. *out
 * owned by the caller (ag_cluster_free). AG_EUNAVAILABLE naming the endpoints otherwise. */
int ag_cluster_new(const ag_cluster_config_t *cfg, ag_cluster_t **out, ag_diag_t *diag);
/* The replicator to install with ag_kv_set_repl (borrowed for the cluster's life). */
const ag_repl_t *ag_cluster_repl(ag_cluster_t *cl);
/* Starts the watch and the probe threads; call after the stores are open. */
int ag_cluster_start(ag_cluster_t *cl, ag_diag_t *diag);
/* Stops the threads and frees. NULL-safe. The record stores must be closed first. */
void ag_cluster_free(ag_cluster_t *cl);

/* Is the cache confirmed fresh now? *rev (may be NULL) receives the revision it reflects, to pin
 * a request to (ag_repl_pin). A relaxed atomic load and a monotonic clock read: cheap enough for
 * every request. */
bool ag_cluster_fresh(ag_cluster_t *cl, uint64_t *rev);
/* Milliseconds since the cache was last confirmed (for messages and /cluster). */
int64_t ag_cluster_unconfirmed_ms(ag_cluster_t *cl);
const char *ag_cluster_node_id(const ag_cluster_t *cl);
/* A new object describing the node and the cluster: {node_id, advertise_url, etcd, fresh,
 * revision, unconfirmed_ms, nodes: [{node_id, advertise_url}]} (nodes read from etcd). */
json_t *ag_cluster_status_json(ag_cluster_t *cl);

#endif
