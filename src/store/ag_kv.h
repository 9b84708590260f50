/*
 * ag_kv.h — a small record store for the layers that keep state of their own but must not see
 * LMDB (auth/: the security store and the management-plane store; docs/ARCHITECTURE.md "Security
 * state"). One environment per directory, named tables of byte keys and byte values, explicit
 * transactions. LMDB stays inside store/: this header names none of its types.
 *
 * Commits are synchronous (each one fsyncs before it returns): these stores are small and every
 * change to them is a security decision someone is waiting on.
 *
 * Errors are base's codes: AG_ENOTFOUND (no such key), AG_ENOSPACE (the environment's map is
 * full), AG_ENOMEM, AG_ESTORAGE (anything else LMDB reports).
 */
#ifndef AG_KV_H
#define AG_KV_H

#include "ag_base.h"
#include "ag_repl.h"

typedef struct ag_kv ag_kv_t;
/* A transaction: used by the thread that began it only, ended by ag_kv_commit or ag_kv_abort. */
typedef struct ag_kv_txn ag_kv_txn_t;
/* A named table of an environment (ag_kv_table); valid as long as the environment. */
typedef unsigned ag_kv_table_t;

/* Bytes borrowed from the store: valid until the transaction they were read in ends. */
typedef struct ag_kv_val {
    const void *data;
    size_t len;
} ag_kv_val_t;

/* Opens the environment in dir (which must exist) with room for map_size bytes and up to
 * max_tables named tables; readers left by dead processes are cleared. `what` names the store in
 * messages ("security store"). Memory: *out is owned by the caller (ag_kv_close). */
int ag_kv_open(const char *dir, const char *what, size_t map_size, unsigned max_tables,
               ag_kv_t **out, ag_diag_t *diag);
/* Closes the environment; every transaction must have ended. NULL is allowed. */
void ag_kv_close(ag_kv_t *kv);

/* Writes a compacted, consistent copy of the store (one read transaction) into the existing,
 * empty directory `dir`. 0, or AG_EIO naming nothing secret. */
int ag_kv_copy(ag_kv_t *kv, const char *dir);

/* Begins a read (write=false) or write transaction; writers are serialised by the store. */
int ag_kv_begin(ag_kv_t *kv, bool write, ag_kv_txn_t **txn, ag_diag_t *diag);
/* Commits and fsyncs; the transaction is ended whatever the outcome. */
int ag_kv_commit(ag_kv_txn_t *txn, ag_diag_t *diag);
/* Ends a transaction without keeping its changes. NULL is allowed. */
void ag_kv_abort(ag_kv_txn_t *txn);

/* The table called name, created when missing (which takes a write transaction). */
int ag_kv_table(ag_kv_txn_t *txn, const char *name, ag_kv_table_t *out);

/* The value under key, borrowed (AG_ENOTFOUND when there is none). */
int ag_kv_get(ag_kv_txn_t *txn, ag_kv_table_t t, const void *key, size_t klen, ag_kv_val_t *val);
/* Stores (or replaces) the value under key; the bytes are copied. */
int ag_kv_put(ag_kv_txn_t *txn, ag_kv_table_t t, const void *key, size_t klen, const void *val,
              size_t vlen);
/* Removes key (AG_ENOTFOUND when there was none). */
int ag_kv_del(ag_kv_txn_t *txn, ag_kv_table_t t, const void *key, size_t klen);
/* How many records the table holds. */
int ag_kv_count(ag_kv_txn_t *txn, ag_kv_table_t t, size_t *n);

/* Visits every record of a table in key order. The callback returns 0 to go on, or a code that
 * stops the walk and is returned; in a write transaction it may set *drop to remove the record
 * it was shown. */
typedef int (*ag_kv_each_fn)(void *ud, ag_kv_val_t key, ag_kv_val_t val, bool *drop);
int ag_kv_each(ag_kv_txn_t *txn, ag_kv_table_t t, ag_kv_each_fn fn, void *ud);

/* --- replication (docs/CLUSTER.md) ------------------------------------------------------ */

/* Installs the replicator every record store opened from now on uses (NULL = none: purely
 * local stores, the default). Call before opening any store; repl is borrowed for the process.
 * A replicated store's environment is a local copy: ag_kv_open loads the replicated state into it,
 * each write transaction's changes are committed by the replicator first (compare-and-swap
 * against the revision the local copy had when the transaction began, or the one pinned on the
 * thread: AG_ECONFLICT when something changed since), and changes made elsewhere are applied to
 * it as they arrive, each followed by the owner's callback. */
void ag_kv_set_repl(const ag_repl_t *repl);
/* Is kv the local copy of a replicated store? */
bool ag_kv_replicated(const ag_kv_t *kv);
/* Called (from the replicator's thread, no transaction open) after changes made elsewhere were
 * applied to the local copy: the owner reloads what it keeps in memory. */
typedef void (*ag_kv_remote_fn)(void *ctx);
void ag_kv_set_on_remote(ag_kv_t *kv, ag_kv_remote_fn fn, void *ctx);

#endif
