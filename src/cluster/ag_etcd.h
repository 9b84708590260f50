/*
 * ag_etcd.h — a small client of etcd's v3 JSON gateway (docs/CLUSTER.md "Reads", endpoints): key
 * ranges, puts, compare-and-swap transactions, leases and a watch stream, over HTTP/1.1 with
 * libcurl. Keys and values are bytes (base64 on the wire, as the gateway wants).
 *
 * Endpoints: a comma-separated list of member URLs. A call goes to the current endpoint; when
 * that one cannot be connected to at all (the request was never sent), the next one is tried,
 * and so on once round the list. A request that was sent and then failed is not repeated (its
 * outcome is unknown): the caller gets AG_EUNAVAILABLE.
 *
 * Threads: one ag_etcd_t serialises its calls (one connection); give each thread that must not
 * wait for another (a watch, a probe) its own.
 */
#ifndef AG_ETCD_H
#define AG_ETCD_H

#include "ag_base.h"

#include <stdatomic.h>

typedef struct ag_etcd ag_etcd_t;

/* A key-value pair as etcd returns it (bytes owned by the containing result). */
typedef struct ag_etcd_kv {
    unsigned char *key, *val;
    size_t klen, vlen;
    uint64_t mod_rev;
    bool del; /* watch events: a deletion */
} ag_etcd_kv_t;

/* The result of a range: kvs in key order and the store's revision when it was read. */
typedef struct ag_etcd_range {
    ag_etcd_kv_t *kvs;
    size_t n;
    uint64_t rev;
} ag_etcd_range_t;

/* One operation of a transaction: put (with lease, 0 = none) or delete of one key. */
typedef struct ag_etcd_op {
    const void *key, *val;
    size_t klen, vlen;
    bool del;
    int64_t lease;
} ag_etcd_op_t;

/* TLS towards etcd (docs/CLUSTER.md "etcd over TLS") for every handle made afterwards: ca_file
 * (PEM CAs to trust instead of the system's), cert_file and key_file (this node's client
 * certificate, for etcd's --client-cert-auth); each NULL when not set. Certificates and host
 * names are always verified. Call once at start-up, before the first ag_etcd_new; the paths are
 * copied. AG_ECONFIG naming the setting when a file cannot be read. */
int ag_etcd_set_tls(const char *ca_file, const char *cert_file, const char *key_file,
                    ag_diag_t *diag);

/* Memory: *out owned by the caller (ag_etcd_free). timeout_ms bounds each request (a watch only
 * its connection). AG_EINVAL for an empty endpoint list. */
int ag_etcd_new(const char *endpoints, long timeout_ms, ag_etcd_t **out, ag_diag_t *diag);
void ag_etcd_free(ag_etcd_t *e);
/* The endpoint calls go to now (borrowed; for messages). */
const char *ag_etcd_endpoint(ag_etcd_t *e);
/* Moves on to the next endpoint (the current one seems stuck). */
void ag_etcd_next_endpoint(ag_etcd_t *e);

/* Reads key (prefix = every key starting with it), linearizable. out filled (ag_etcd_range_free).
 * AG_EUNAVAILABLE when no endpoint answers; AG_EIO for an answer that is not etcd's. */
int ag_etcd_range(ag_etcd_t *e, const void *key, size_t klen, bool prefix, ag_etcd_range_t *out,
                  ag_diag_t *diag);
void ag_etcd_range_free(ag_etcd_range_t *r);
/* One transaction: if mod_revision(cmp_key) == cmp_rev (0 = the key does not exist), do ops.
 * *ok tells whether the comparison held; *rev is the store's revision after it. */
int ag_etcd_txn(ag_etcd_t *e, const void *cmp_key, size_t cmp_klen, uint64_t cmp_rev,
                const ag_etcd_op_t *ops, size_t nops, bool *ok, uint64_t *rev, ag_diag_t *diag);
/* Puts one key (lease 0 = none). */
int ag_etcd_put(ag_etcd_t *e, const void *key, size_t klen, const void *val, size_t vlen,
                int64_t lease, ag_diag_t *diag);
/* Grants a lease of ttl_s seconds (*id), or keeps one alive (*ttl_left: 0 = it expired). */
int ag_etcd_lease_grant(ag_etcd_t *e, int64_t ttl_s, int64_t *id, ag_diag_t *diag);
int ag_etcd_lease_keepalive(ag_etcd_t *e, int64_t id, int64_t *ttl_left, ag_diag_t *diag);

/* A watch delivery: the events of one response (in revision order), the response's header
 * revision, and whether the watch was cancelled because start_rev is compacted away (the
 * caller must reload everything). Return nonzero to end the watch. */
typedef int (*ag_etcd_watch_fn)(void *ud, const ag_etcd_kv_t *ev, size_t n, uint64_t rev,
                                bool compacted);
/* Watches key (prefix as for range) from start_rev, calling fn for each response, until fn
 * returns nonzero, *stop becomes true, or the stream breaks. Returns 0 when ended by fn or stop,
 * AG_EUNAVAILABLE when the stream broke or never started (the caller reconnects). */
int ag_etcd_watch(ag_etcd_t *e, const void *key, size_t klen, bool prefix, uint64_t start_rev,
                  ag_etcd_watch_fn fn, void *ud, const _Atomic bool *stop, ag_diag_t *diag);

#endif
