/*
 * ag_env.h — the LMDB environment's map size, grown while the process runs (docs/RELIABILITY.md,
 * "LMDB map growth"). store/ only.
 *
 * LMDB lets a process change the map size only while it has no transaction open. So every
 * transaction on the environment (reads and writes) runs inside the gate, held shared; growing
 * holds it exclusively, which waits for the open transactions to end and keeps new ones out for
 * the moment mdb_env_set_mapsize takes. A writer that meets MDB_MAP_FULL aborts its transaction,
 * leaves the gate, grows (ag_env_grow) and runs the transaction again. The lock is
 * reader-preferring, so a thread may enter the gate while it already holds it (no self-deadlock
 * with a grower waiting); the cost is that a grower waits for a moment without readers.
 * Transactions must not wait, inside the gate, for anything a grower could be holding — a grower
 * holds nothing else.
 */
#ifndef AG_ENV_H
#define AG_ENV_H

#include <lmdb.h>
#include <pthread.h>
#include <stddef.h>

#include "ag_base.h"

#define AG_ENV_SPARE 16

typedef struct ag_env_gate {
    pthread_rwlock_t lock;
    MDB_env *env; /* borrowed */
    size_t size;  /* the map size now (read inside the gate, written under the exclusive lock) */
    size_t max;   /* the ceiling: storage.map_size_gb */
    unsigned grown;
    /* Reset read transactions kept for reuse (ag_env_read_begin): beginning one allocates and
     * clears room for every possible database (storage keeps 32768), renewing a reset one does
     * not. Guarded by spare_mu. */
    pthread_mutex_t spare_mu;
    MDB_txn *spare[AG_ENV_SPARE];
    unsigned nspare;
} ag_env_gate_t;

/* Sets up the gate for an open environment; the map size is read from LMDB (it may be larger
 * than asked for when the data file already is). */
void ag_env_gate_init(ag_env_gate_t *g, MDB_env *env, size_t max);
void ag_env_gate_destroy(ag_env_gate_t *g);

/* Enters the gate (shared) and returns the map size seen, for ag_env_grow. A NULL gate (tests
 * that open collections on their own) is a no-op returning 0. */
size_t ag_env_enter(ag_env_gate_t *g);
void ag_env_leave(ag_env_gate_t *g);

/* Grows the map (doubling, at least 64 MiB more, at most to the ceiling) unless another thread
 * already grew it past `seen`. Call outside the gate. 0 when there is more room now, AG_ENOSPACE
 * when the ceiling is reached, AG_ESTORAGE when LMDB refuses. */
int ag_env_grow(ag_env_gate_t *g, size_t seen);

/* A read transaction on the gate's environment, inside the gate (entered by the caller): a
 * spare one renewed, or a new one. 0 or an LMDB error code. End it with ag_env_read_end (inside
 * the gate still), which resets it and keeps it as a spare (or aborts it when there are enough).
 * ag_env_read_drop aborts the spares: before the environment is closed. */
int ag_env_read_begin(ag_env_gate_t *g, MDB_txn **out);
void ag_env_read_end(ag_env_gate_t *g, MDB_txn *txn);
void ag_env_read_drop(ag_env_gate_t *g);

/* Grows ahead of need when less than a quarter of the map is free (the catalog's small writes
 * then never meet a full map). Call outside the gate. */
void ag_env_headroom(ag_env_gate_t *g);

#endif
