/*
 * ag_cluster_int.h — the cluster's state, shared by the files of src/cluster only (ag_cluster.c:
 * security state; ag_meta.c: collection metadata; ag_peer.c: node-to-node calls).
 */
#ifndef AG_CLUSTER_INT_H
#define AG_CLUSTER_INT_H

#include <pthread.h>
#include <stdatomic.h>

#include "ag_cluster.h"
#include "ag_etcd.h"
#include "ag_peer.h"

#define MAX_SINKS 8

typedef struct sink {
    char name[48];
    void *sink;
    ag_repl_apply_fn apply;
} sink_t;

struct ag_cluster {
    char node_id[80];
    char advertise_url[520];
    char endpoints[1024];
    int64_t stale_ns;
    int64_t probe_ns;
    ag_etcd_t *writer; /* commits (callers serialise on its lock) */
    ag_etcd_t *prober; /* the probe thread's */
    ag_etcd_t *watcher;
    ag_repl_t repl;

    pthread_mutex_t apply_mu; /* one applier at a time: the watch or a full reload */
    sink_t sinks[MAX_SINKS];
    size_t nsinks;

    _Atomic uint64_t published;   /* every local copy and its owner's memory reflect this */
    _Atomic int64_t fresh_until;  /* monotonic ns; the cache is confirmed fresh until then */
    _Atomic int64_t confirmed_at; /* monotonic ns of the last confirmation */
    _Atomic uint64_t watch_from;  /* next revision the watch wants */
    _Atomic bool resync;          /* a local commit failed, or the watch lost its place */
    _Atomic bool stop;
    _Atomic bool kick;        /* ends the current watch (stop, or the probe found it stuck) */
    _Atomic uint64_t txn_seq; /* makes each commit's version value unique */
    int64_t lease;

    pthread_t probe_thread, watch_thread;
    bool probe_started, watch_started;
    pthread_mutex_t wait_mu;
    pthread_cond_t wait_cv;

    /* Collection metadata and shard placement (ag_meta.c; docs/CLUSTER.md "Collections"). */
    ag_etcd_t *meta_watcher;
    pthread_mutex_t meta_mu; /* guards meta */
    json_t *meta;            /* name -> the collection's record, as etcd holds it */
    json_t *meta_rev; /* name -> the etcd revision meta[name] reflects (kept after a deletion,
                       * so an older event arriving late never brings a record back) */
    ag_cluster_meta_fn meta_fn;
    ag_cluster_alias_fn alias_fn;
    void *meta_ud;
    _Atomic uint64_t meta_from; /* next revision the metadata watch wants */
    pthread_t meta_thread;
    bool meta_started;
    _Atomic bool meta_stop;
    /* Node-to-node calls (ag_peer.c): the cluster secret derived from the root key and the
     * replay cache (ag_peer_auth.c); NULL until ag_cluster_set_secret. */
    ag_peer_auth_t *peer;
};

#endif
