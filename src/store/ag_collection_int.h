/*
 * ag_collection_int.h — the collection's insides, for store/ only (the SQLite btreeInt.h habit):
 * its struct, slot array, locks and LMDB handles. scripts/check-layers.sh fails when a file
 * outside src/store/ includes it; everyone else uses store/ag_collection.h.
 */
#ifndef AG_COLLECTION_INT_H
#define AG_COLLECTION_INT_H

#include <lmdb.h>
#include <pthread.h>
#include <stdatomic.h>

#include "store/ag_collection.h"
#include "json/ag_pack.h"

typedef struct ag_vector_cfg {
    char *name; /* "" for the single unnamed vector (owned) */
    uint32_t dim;
    ag_distance_t dist;
    ag_dtype_t dtype;  /* values are converted at input; stored as float32 */
    bool multi;        /* multivector (max_sim): rows in mv, vs and index NULL */
    ag_vecstore_t *vs; /* owned */
    ag_index_t *index; /* owned */
    ag_multivec_t *mv; /* owned (multi only) */
    /* on_disk (store/ag_coll_disk.h): vs is external, its rows read from "v:N" under key
     * (point id, num); owner is the collection holding this config. */
    bool on_disk;
    unsigned num;
    const struct ag_collection *owner;
} ag_vector_cfg_t;

typedef struct ag_sparse_cfg {
    char *name;      /* owned */
    ag_sparse_t *sp; /* owned */
} ag_sparse_cfg_t;

typedef struct ag_slot {
    ag_point_id_t id;
    /* The payload object packed (json/ag_pack.h): owned, or the shared ag_pack_empty; immutable
     * once set (a write replaces the pointer under the write lock and frees the old one). */
    const uint8_t *payload;
    bool alive;
} ag_slot_t;

struct ag_collection {
    atomic_int refs;
    char *name; /* owned */
    uint32_t cid;
    json_t *params; /* owned: the creation params as normalised (vectors, sparse_vectors, ...) */
    /* owned: payload index schema {field: {"data_type":..., "params":...}}. Never changed in
     * place: a change publishes a new tree under schema_mu, and every reader outside store/
     * takes a copy under it (ag_coll_index_def & co.), so no thread can hold a part of a tree
     * that is being freed (docs/ARCHITECTURE.md "Locks"). */
    json_t *schema;
    pthread_mutex_t schema_mu;
    bool unnamed; /* the single-vector form: vectors are addressed by "" */
    int nvec;
    ag_vector_cfg_t vec[AG_MAX_VECTORS];
    int nsparse;
    ag_sparse_cfg_t sparse[AG_MAX_VECTORS];
    int n_on_disk; /* dense vectors with on_disk: true (reads then open an LMDB scope) */

    MDB_env *env;             /* borrowed from the store */
    struct ag_env_gate *gate; /* borrowed: map growth (store/ag_env.h); NULL = none */
    MDB_dbi dbi_points, dbi_vectors;

    pthread_mutex_t write_mutex;
    pthread_rwlock_t lock;
    ag_slot_t *slots; /* owned, nslots used */
    uint32_t nslots, cap_slots;
    uint32_t *free_slots; /* owned stack of reusable slots */
    uint32_t nfree, cap_free;
    uint32_t *map; /* open-addressing hash id → slot+1 (0 = empty, UINT32_MAX = tomb) */
    uint32_t map_cap, map_used, map_tombs;
    uint32_t live;
    atomic_uint_fast64_t version;     /* bumped on every applied write (cache invalidation) */
    atomic_int write_waiters;         /* writers waiting for `lock` (the indexer yields to them) */
    struct kw_index *payload_indexes; /* lazily built candidate indexes (ag_payload_index.c) */
    atomic_bool dropped;              /* read by the indexer thread without the write mutex */
    /* HNSW graph checkpoints (<storage>/index/<cid>.<vector number>.hnsw), written by the
     * indexer thread (ag_coll_index_checkpoint) and at shutdown; docs/RELIABILITY.md, "Crash
     * recovery". index_dir owned, NULL if unknown; index_ready once loaded (never save a
     * half-open one) until the collection is dropped. ckpt_mutex: one checkpoint at a time, and
     * none while the files are deleted; ckpt_at, ckpt_cost (seconds) are guarded by it. */
    char *index_dir;
    atomic_bool index_ready;
    pthread_mutex_t ckpt_mutex;
    double ckpt_at, ckpt_cost;
    /* Partial-snapshot identity (docs/SECURITY.md "Partial snapshots"), guarded by seg_mutex:
     * seg_id is random per loaded collection; data_op the operation number of its last committed
     * point write (0 = none since load). adopted: seg_id, data_op and meta_op came from a partial
     * snapshot's source, valid while the store's meta operation number is still adopt_mark. */
    pthread_mutex_t seg_mutex;
    char seg_id[40];
    uint64_t data_op, meta_op, adopt_mark;
    bool adopted;
};

/* Publishes schema (taken, also on failure) as c's payload-index schema and frees the old one.
 * The caller serialises schema changes (the collection's write mutex). */
void ag_coll__set_schema(ag_collection_t *c, json_t *schema);
/* A deep copy of c's schema (new reference; the caller owns it), NULL on ENOMEM. */
json_t *ag_coll__schema_copy(const ag_collection_t *c);

/* Opens (creating if asked) the collection's databases inside txn and loads it into memory.
 * Returns a new collection with one reference. params and schema are borrowed (copied). */
int ag_coll_open(MDB_env *env, MDB_txn *txn, const char *name, uint32_t cid, const json_t *params,
                 const json_t *schema, bool create, ag_collection_t **out, ag_diag_t *diag);
/* Loads all stored points into memory (startup). */
int ag_coll_load(ag_collection_t *c, MDB_txn *txn, ag_diag_t *diag);
/* Drops the collection's databases inside txn (contents deleted). Its graph checkpoint files
 * are the caller's to drop, with ag_coll_drop_index_files once the transaction is over. */
int ag_coll_drop_dbs(ag_collection_t *c, MDB_txn *txn);
/* Deletes c's graph checkpoint files and stops further checkpoints of it. It waits for a
 * checkpoint being written, which takes the collection lock: call it with no transaction open
 * (holding the map gate there would invert the checkpoint → lock → gate order; docs/ARCHITECTURE.md
 * "Locks"). */
void ag_coll_drop_index_files(ag_collection_t *c);
/* Does a stored dense record of `size` bytes fit dense vector num (one row; or, for a multivector,
 * one or more rows)? Loading and snapshot restore check every record with it. */
bool ag_coll_dense_record_ok(const ag_collection_t *c, unsigned num, size_t size);

/* Settings of a create (update false) or update (PATCH) body that Aegis refuses or that are out
 * of range (store/ag_coll_settings.c; docs/COMPATIBILITY.md "Collection settings"). */
int ag_coll_check_settings(const json_t *body, bool update, ag_diag_t *diag);

/* Makes each graph's scalar quantization follow c->params (a vector's quantization_config, else
 * the collection's): codes built or dropped. Under the write lock. The last AG_ENOMEM, if any (that
 * vector then searches with its float vectors). */
int ag_coll__apply_quant(ag_collection_t *c);

/* Named vectors on an existing collection (store/ag_coll_vectors.c). ag_coll_vector_params builds
 * the params after adding vname (cfg = {"dense": {...}} or {"sparse": {...}}) or removing it (cfg
 * NULL), validated as a creation body; *out is new (caller owns). ag_coll_vector_rows rewrites
 * the stored vector rows inside txn for removing vname (nothing for an added one). The caller
 * holds c's write mutex. */
int ag_coll_vector_params(const ag_collection_t *c, const char *vname, const json_t *cfg,
                          json_t **out, ag_diag_t *diag);
int ag_coll_vector_rows(ag_collection_t *c, MDB_txn *txn, const char *vname, ag_diag_t *diag);

/* A PATCH of hnsw_config applied (ag_store_update_params, write session held): prepare builds,
 * for each dense vector whose graph parameters differ between c->params and next, a new index
 * over the same vectors (fresh[v], nvec entries, NULL = unchanged), the graph queued for the
 * background linker (searches score the queued points exactly meanwhile) — nothing visible yet;
 * AG_ENOMEM leaves nothing allocated. commit swaps them in under the locks (its checkpoint file,
 * of the old parameters, removed) and frees the old ones; discard frees them unused. */
int ag_coll_hnsw_prepare(ag_collection_t *c, const json_t *next, ag_index_t **fresh);
void ag_coll_hnsw_commit(ag_collection_t *c, ag_index_t **fresh);
void ag_coll_hnsw_discard(ag_collection_t *c, ag_index_t **fresh);

/* The read lock, for store/'s own files; everyone else goes through ag_coll_read. */
void ag_coll_read_begin(ag_collection_t *c);
void ag_coll_read_end(ag_collection_t *c);

#endif
