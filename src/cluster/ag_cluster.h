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
#include "ag_peer.h"
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

/* ---- collection metadata (ag_meta.c; docs/CLUSTER.md "Collections") ------------------------- */

/* A collection's record as etcd holds it, under /aegis/meta/collections/<name>:
 *   {"config": <the creation parameters>, "shard_number": n,
 *    "shards": [{"shard_id": i, "node": <node_id>, "url": <advertise_url>}, ...],
 *    "schema": {field: index definition}, "tenants": {name: {"active": bool}},
 *    "patch": <every PATCH folded into one>, "vectors": {name: config | null}}
 * (the last four written by api/api_shard.c as the collection changes; docs/CLUSTER.md).
 * Called for every record at ag_cluster_meta_start and then for each change from the watch (on
 * the watch's thread); rec NULL = the collection was deleted. rec is borrowed for the call. */
typedef void (*ag_cluster_meta_fn)(void *ud, const char *name, const json_t *rec);
/* The aliases as etcd holds them (/aegis/meta/aliases: [{alias_name, collection_name}], the
 * whole list in one key), each time they change; list borrowed for the call. */
typedef void (*ag_cluster_alias_fn)(void *ud, const json_t *list);
/* Loads every record (fn for each, then alias_fn), then watches for changes (on the watch's
 * thread). Call once, after the stores. */
int ag_cluster_meta_start(ag_cluster_t *cl, ag_cluster_meta_fn fn, ag_cluster_alias_fn alias_fn,
                          void *ud, ag_diag_t *diag);
/* The aliases now (a linearizable read: *list a new array, empty when none) and the revision to
 * compare against; then the new whole list, written only if nothing changed since base
 * (AG_ECONFLICT otherwise; AG_EUNAVAILABLE without etcd). */
int ag_cluster_aliases_get(ag_cluster_t *cl, json_t **list, uint64_t *mod_rev, ag_diag_t *diag);
int ag_cluster_aliases_put(ag_cluster_t *cl, const json_t *list, uint64_t base, ag_diag_t *diag);
/* Stops the metadata watch (before the store it feeds closes). NULL-safe; idempotent. */
void ag_cluster_meta_stop(ag_cluster_t *cl);
/* Records a new collection: its shards placed round-robin over the nodes registered now (sorted by
 * node id), all in one transaction that holds only if the name is not taken. AG_ECONFLICT when it
 * is; AG_EUNAVAILABLE when etcd cannot be reached. The local cache is updated before it returns.
 * *rec_out (may be NULL) gets a new reference to the record. */
int ag_cluster_meta_create(ag_cluster_t *cl, const char *name, const json_t *config,
                           uint32_t shard_number, json_t **rec_out, ag_diag_t *diag);
/* Deletes a collection's record (*existed tells whether there was one). */
int ag_cluster_meta_delete(ag_cluster_t *cl, const char *name, bool *existed, ag_diag_t *diag);
/* Changes a collection's record: reads it (linearizable), lets edit change the copy (non-zero
 * refuses: nothing is written, edit's code returned), and writes it back only if the record did
 * not change since it was read (compare on its mod_revision); on a conflict it reads and edits
 * again (up to 5 times, then AG_ECONFLICT). AG_ENOTFOUND (diag untouched) when etcd holds no
 * record of the collection; AG_EUNAVAILABLE without etcd. The cache holds the new record before it
 * returns. */
typedef int (*ag_cluster_edit_fn)(void *ud, json_t *rec, ag_diag_t *diag);
int ag_cluster_meta_update(ag_cluster_t *cl, const char *name, ag_cluster_edit_fn edit, void *ud,
                           ag_diag_t *diag);
/* A new copy of the collection's placement from the cache ({config, shard_number, shards}; the
 * caller owns it), or NULL when etcd holds none (a collection of this node only). */
json_t *ag_cluster_meta_get(ag_cluster_t *cl, const char *name);
/* The same with every section of the record (schema, tenants, patch, vectors): a new copy. */
json_t *ag_cluster_meta_get_full(ag_cluster_t *cl, const char *name);

/* ---- node-to-node calls (ag_peer.c; docs/CLUSTER.md "Node-to-node calls") -------------------- */

/* The header that marks a call as shard-local and proves it comes from a node of the cluster. */
#define AG_CLUSTER_PEER_HEADER "x-aegis-shard-local"
/* Derives the cluster secret from the root key's material (the configured key's bytes, or the
 * generated key's hash): keyed BLAKE2b over a fixed label. Every node sharing the root key
 * derives the same secret; the root key itself never travels. Also makes the replay cache.
 * 0, AG_ENOMEM. */
int ag_cluster_set_secret(ag_cluster_t *cl, const void *material, size_t len);
/* Checks a shard-local header (ag_peer.h, format v2) for the call r against this node's clock
 * and replay cache. 0 with *out filled; AG_EUNAUTH naming what is wrong (also without cluster
 * mode); AG_EUNAVAILABLE when the replay cache is full. */
int ag_cluster_peer_verify(ag_cluster_t *cl, const ag_peer_req_t *r, const char *value,
                           ag_peer_claim_t *out, ag_diag_t *diag);

typedef struct ag_peer_call {
    /* in (borrowed) */
    const char *node;                    /* the node's id (messages) */
    const char *url;                     /* its advertise URL */
    const char *method;                  /* "GET", "POST", "PUT", ... */
    const char *path;                    /* path and query, percent-encoded as sent */
    const char *api_key, *authorization; /* the original caller's credential, forwarded */
    const char *client;                  /* the original caller's address (signed) */
    const char *body;
    size_t len;
    /* out */
    int status;  /* the HTTP status; 0 = no answer (err says why) */
    char *reply; /* the body (NUL-terminated; caller frees) */
    size_t reply_len;
    char err[200];
} ag_peer_call_t;
/* Runs the calls in parallel, each marked shard-local and signed, each bounded by timeout_ms.
 * Connections are kept per calling thread. Returns 0 (look at each call's status), or AG_ENOMEM. */
int ag_cluster_peer_calls(ag_cluster_t *cl, ag_peer_call_t *calls, size_t n, long timeout_ms);
/* Frees the replies of calls[0..n). */
void ag_cluster_peer_calls_free(ag_peer_call_t *calls, size_t n);

#endif
