/*
 * ag_repl.h — the seam between a local record store (store/ag_kv.h) and a replicator that keeps
 * its records in a shared, strongly consistent store (cluster/ag_cluster.h: etcd). Defined in
 * base/ so that neither side depends on the other; main wires them (docs/CLUSTER.md).
 *
 * Revisions are the replicator's: every change to any replicated store gets one, strictly
 * increasing, and the local copy remembers the revision it reflects.
 *
 * Without a replicator installed (ag_kv_set_repl never called), record stores are purely local
 * and nothing here is used.
 */
#ifndef AG_REPL_H
#define AG_REPL_H

#include "ag_base.h"

/* One record change: table name, key and value bytes (borrowed), or a deletion. */
typedef struct ag_repl_change {
    const char *table;
    const void *key;
    size_t klen;
    const void *val;
    size_t vlen;
    bool del;
} ag_repl_change_t;

/* The local side: writes changes into the local copy in one transaction. reset = the changes are
 * the whole state (everything else is dropped first). Changes at or below the revision the copy
 * already reflects are skipped (unless reset). Returns 0 (applied), 1 (skipped: nothing to do) or
 * an error. After an applied change that was not part of the first load, the local side tells
 * its owner (who reloads its memory). */
typedef int (*ag_repl_apply_fn)(void *sink, bool reset, const ag_repl_change_t *ch, size_t n,
                                uint64_t rev);

typedef struct ag_repl {
    void *ctx;
    /* A record store called name opened: load its whole state now (through apply, reset) and
     * keep it current from then on. sink is the store's handle for apply. */
    int (*attach)(void *ctx, const char *name, void *sink, ag_repl_apply_fn apply, ag_diag_t *diag);
    /* The store is closing: no more apply calls after this returns. */
    void (*detach)(void *ctx, void *sink);
    /* The revision a write transaction beginning now is checked against: the one pinned on this
     * thread (ag_repl_pin) or else the one every local copy and its memory reflect. */
    uint64_t (*base)(void *ctx);
    /* Commits the changes of store name if and only if nothing changed since base (compare-and-
     * swap). 0 with *rev = the new revision; AG_ECONFLICT when something changed;
     * AG_EUNAVAILABLE when the shared store cannot be reached. */
    int (*commit)(void *ctx, const char *name, uint64_t base, const ag_repl_change_t *ch, size_t n,
                  uint64_t *rev, ag_diag_t *diag);
    /* After the local commit of rev (ok) or its failure (!ok: the local copy must be reloaded). */
    void (*done)(void *ctx, uint64_t rev, bool ok);
} ag_repl_t;

/* The revision the request running on this thread was authorized at (0 = none pinned). A write
 * compares against it, so a check made on that state is still true when the write lands. */
void ag_repl_pin(uint64_t rev);
uint64_t ag_repl_pinned(void);

#endif
