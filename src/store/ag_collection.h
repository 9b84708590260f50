/*
 * ag_collection.h — one collection: its durable state in LMDB and its serving copy in memory.
 *
 * Durable layout (one LMDB environment, named databases per collection id N):
 *   "p:N"  point id key (17 bytes, ag_id_to_key) → payload as compact JSON text
 *   "v:N"  point id key + 2-byte vector number   → raw little-endian float32 data (dense) or
 *          u32 count + u32 indices[] + f32 values[] (sparse, number | 0x8000)
 * Vectors live apart from payloads, so a 128-d vector is one 512-byte node on a shared page
 * rather than an overflow page pair per point.
 *
 * In memory: a slot per live point (id, payload), one vecstore + index per dense vector, one
 * inverted index per sparse vector. Searches hold the read lock; writers serialise on
 * write_mutex, commit to LMDB first and only then take the write lock to apply to memory, so
 * memory never shows a write the disk does not have.
 *
 * Lifetime: reference-counted (ag_coll_ref/ag_coll_unref); the catalog holds one reference and
 * every request that uses the collection holds its own, so a delete can proceed while searches
 * finish.
 */
#ifndef AG_COLLECTION_H
#define AG_COLLECTION_H

#include "ag_base.h"
#include "ag_id.h"

#include <jansson.h>
#include <lmdb.h>
#include <pthread.h>
#include <stdatomic.h>

#include "index/ag_distance.h"
#include "index/ag_filter.h"
#include "index/ag_index.h"
#include "index/ag_sparse.h"
#include "index/ag_vecstore.h"

#define AG_MAX_VECTORS 16

typedef struct ag_vector_cfg {
    char *name; /* "" for the single unnamed vector (owned) */
    uint32_t dim;
    ag_distance_t dist;
    ag_vecstore_t *vs; /* owned */
    ag_index_t *index; /* owned */
} ag_vector_cfg_t;

typedef struct ag_sparse_cfg {
    char *name;      /* owned */
    ag_sparse_t *sp; /* owned */
} ag_sparse_cfg_t;

typedef struct ag_slot {
    ag_point_id_t id;
    json_t *payload; /* owned reference; an object (possibly empty) */
    bool alive;
} ag_slot_t;

typedef struct ag_collection {
    atomic_int refs;
    char *name; /* owned */
    uint32_t cid;
    json_t *params; /* owned: the creation params as normalised (vectors, sparse_vectors, ...) */
    json_t *schema; /* owned: payload index schema {field: {"data_type":..., "params":...}} */
    bool unnamed;   /* the single-vector form: vectors are addressed by "" */
    int nvec;
    ag_vector_cfg_t vec[AG_MAX_VECTORS];
    int nsparse;
    ag_sparse_cfg_t sparse[AG_MAX_VECTORS];

    MDB_env *env; /* borrowed from the store */
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
    bool dropped;
    /* HNSW graph files (<storage>/index/<cid>.<vector number>.hnsw), see ag_coll_save_indexes.
     * index_dir owned, NULL if unknown; index_ready once loaded (never save a half-open one). */
    char *index_dir;
    bool index_ready;
    double index_saved_at;
} ag_collection_t;

/* A change to one point, applied atomically with the others of the same call. */
typedef enum { AG_VEC_KEEP = 0, AG_VEC_SET, AG_VEC_CLEAR } ag_vec_op_t;

typedef struct ag_sparse_vec {
    uint32_t *indices; /* owned by whoever built the mutation */
    float *values;
    uint32_t n;
} ag_sparse_vec_t;

typedef struct ag_mutation {
    ag_point_id_t id;
    bool delete_point;
    json_t *payload; /* new full payload or NULL to keep the current one; apply takes a
                        reference, so it must not be modified afterwards */
    uint8_t dense_op[AG_MAX_VECTORS];
    const float *dense[AG_MAX_VECTORS]; /* borrowed; already normalised for Cosine */
    uint8_t sparse_op[AG_MAX_VECTORS];
    ag_sparse_vec_t sparse[AG_MAX_VECTORS];
    bool replace_vectors; /* upsert: vectors not given are removed */
} ag_mutation_t;

/* Parses and validates creation params (Qdrant's create-collection body). On success *out gets a
 * new normalised params object (caller owns). */
int ag_coll_parse_params(const json_t *body, json_t **out, ag_diag_t *diag);

/* Opens (creating if asked) the collection's databases inside txn and loads it into memory.
 * Returns a new collection with one reference. params and schema are borrowed (copied). */
int ag_coll_open(MDB_env *env, MDB_txn *txn, const char *name, uint32_t cid, const json_t *params,
                 const json_t *schema, bool create, ag_collection_t **out, ag_diag_t *diag);
/* Loads all stored points into memory (startup). */
int ag_coll_load(ag_collection_t *c, MDB_txn *txn, ag_diag_t *diag);
/* Drops the collection's databases inside txn (contents deleted). */
int ag_coll_drop_dbs(ag_collection_t *c, MDB_txn *txn);

void ag_coll_ref(ag_collection_t *c);
void ag_coll_unref(ag_collection_t *c);

/* Vector lookup by name ("" = the unnamed vector). Returns the index into vec[] or -1. */
int ag_coll_vector(const ag_collection_t *c, const char *name);
int ag_coll_sparse(const ag_collection_t *c, const char *name);

/* Reader side. Every lookup below must happen between read_begin and read_end (or while holding
 * the write mutex, which excludes every other writer). */
void ag_coll_read_begin(ag_collection_t *c);
void ag_coll_read_end(ag_collection_t *c);
/* Slot of an id, or UINT32_MAX. */
uint32_t ag_coll_find(const ag_collection_t *c, const ag_point_id_t *id);
/* Filter subject for a slot (payload borrowed). */
void ag_coll_subject(const ag_collection_t *c, uint32_t slot, ag_filter_subject_t *s);
bool ag_coll_match(const ag_collection_t *c, uint32_t slot, const ag_filter_t *f);

/* Read access for the query layer and handlers (read lock held, or the write mutex). Returned
 * pointers are borrowed and valid until the lock is released. */
/* The collection's own name (an alias resolves to it); borrowed for the collection's life. */
const char *ag_coll_name(const ag_collection_t *c);
/* Live points, and the slot count (slots are 0 .. nslots-1; a dead slot fails every match). */
uint32_t ag_coll_live(const ag_collection_t *c);
uint32_t ag_coll_nslots(const ag_collection_t *c);
const ag_point_id_t *ag_coll_id(const ag_collection_t *c, uint32_t slot);
/* The payload object of a slot (never NULL for a live slot). */
const json_t *ag_coll_payload(const ag_collection_t *c, uint32_t slot);
/* The payload index definition {"data_type":..., ...} of a field, or NULL. */
const json_t *ag_coll_index_def(const ag_collection_t *c, const char *field);

/* Walks the stored points in id order (LMDB's sorted keys, in a read transaction of its own)
 * from the first id >= from (NULL = the first point). visit gets each point's id (NULL for a key
 * that does not parse) and its slot (UINT32_MAX when it is not in memory); it returns 0 to go on,
 * 1 to stop, or a negative error, which stops the walk and is returned. AG_ESTORAGE when the
 * database cannot be read. Caller holds the read lock, so the slots it is given stay valid. */
typedef int (*ag_coll_walk_fn)(void *ud, const ag_point_id_t *id, uint32_t slot);
int ag_coll_walk(ag_collection_t *c, const ag_point_id_t *from, ag_coll_walk_fn visit, void *ud);

/* Writer side: write_begin takes the write mutex; apply commits to LMDB (syncing when `sync`)
 * and then applies to memory; write_end releases the mutex. */
/* Returns AG_ENOTFOUND (mutex not held) if the collection was deleted meanwhile. */
int ag_coll_write_begin(ag_collection_t *c);
void ag_coll_write_end(ag_collection_t *c);
int ag_coll_apply(ag_collection_t *c, ag_mutation_t *muts, size_t n, bool sync, ag_diag_t *diag);

/* Saves every HNSW graph that changed since its last save, crash-safely, tagged with a
 * fingerprint of its vectors so a file that no longer matches them is rebuilt at the next start
 * (ag_coll_load loads current files, rebuilds the rest). Takes the read lock; call with the
 * write mutex held or when no writer can run (shutdown). Also runs by itself on the last unref
 * of a loaded collection and, at most every AG_COLL_INDEX_SAVE_S seconds, after a write. */
#define AG_COLL_INDEX_SAVE_S 300.0
int ag_coll_save_indexes(ag_collection_t *c);

/* Returns a new JSON vector object for a slot ({"": [...]} form collapsed to a plain array for an
 * unnamed collection). `which` NULL = all vectors, else a JSON array of names to include. */
json_t *ag_coll_vectors_json(const ag_collection_t *c, uint32_t slot, const json_t *which);

/* Links up to budget queued points into the collection's graphs (background indexer). Takes the
 * write lock for the step. Returns how many were linked. */
uint32_t ag_coll_index_step(ag_collection_t *c, uint32_t budget);

#endif
