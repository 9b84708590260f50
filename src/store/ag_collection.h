/*
 * ag_collection.h — one collection: its durable state in LMDB and its serving copy in memory.
 *
 * Durable layout (one LMDB environment, named databases per collection id N):
 *   "p:N"  point id key (17 bytes, ag_id_to_key) → payload as compact JSON text
 *   "v:N"  point id key + 2-byte vector number   → raw little-endian float32 data (dense; a
 *          multivector's rows one after another, as many as the length says) or
 *          u32 count + u32 indices[] + f32 values[] (sparse, number | 0x8000)
 * Vectors live apart from payloads, so a 128-d vector is one 512-byte node on a shared page
 * rather than an overflow page pair per point.
 *
 * In memory: a slot per live point (id, payload), one vecstore + index per dense vector, one
 * inverted index per sparse vector. An on_disk dense vector's vecstore holds presence bits only;
 * its rows are read from "v:N" (store/ag_coll_disk.h). Searches hold the read lock; writers
 * serialise on write_mutex, commit to LMDB first and only then take the write lock to apply to
 * memory, so memory never shows a write the disk does not have.
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

#include "index/ag_distance.h"
#include "index/ag_filter.h"
#include "index/ag_index.h"
#include "index/ag_multivec.h"
#include "index/ag_sparse.h"
#include "index/ag_vecstore.h"

#define AG_MAX_VECTORS 16

/* Opaque outside store/ (docs/ARCHITECTURE.md "The collection API"): the struct lives in
 * store/ag_collection_int.h; everyone else goes through the functions below. */
typedef struct ag_collection ag_collection_t;

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
    const float *dense[AG_MAX_VECTORS];  /* borrowed; already normalised for Cosine and converted
                                            to the vector's datatype */
    uint32_t dense_rows[AG_MAX_VECTORS]; /* rows in dense[v] for a multivector (0 counts as 1) */
    uint8_t sparse_op[AG_MAX_VECTORS];
    ag_sparse_vec_t sparse[AG_MAX_VECTORS];
    bool replace_vectors; /* upsert: vectors not given are removed */
} ag_mutation_t;

/* Parses and validates creation params (Qdrant's create-collection body). On success *out gets a
 * new normalised params object (caller owns). */
int ag_coll_parse_params(const json_t *body, json_t **out, ag_diag_t *diag);

void ag_coll_ref(ag_collection_t *c);
void ag_coll_unref(ag_collection_t *c);

/* Vector lookup by name ("" = the unnamed vector). Returns the index into vec[] or -1. */
int ag_coll_vector(const ag_collection_t *c, const char *name);
int ag_coll_sparse(const ag_collection_t *c, const char *name);

/* Reader side. Every lookup below marked "lock held" must happen inside ag_coll_read (or while
 * holding the write mutex, which excludes every other writer). Pointers it returns are borrowed
 * until then. ag_coll_read runs fn(ud, c) under the collection's read lock and returns what fn
 * returns; the lock is never held by anyone outside store/ otherwise. */
typedef int (*ag_coll_read_fn)(void *ud, ag_collection_t *c);
int ag_coll_read(ag_collection_t *c, ag_coll_read_fn fn, void *ud);
/* Slot of an id, or UINT32_MAX (lock held). */
uint32_t ag_coll_find(const ag_collection_t *c, const ag_point_id_t *id);
/* Filter subject for a slot (payload borrowed). */
void ag_coll_subject(const ag_collection_t *c, uint32_t slot, ag_filter_subject_t *s);
bool ag_coll_match(const ag_collection_t *c, uint32_t slot, const ag_filter_t *f);

/* Read access for the query layer and handlers (lock held). Returned pointers are borrowed and
 * valid until the lock is released. */
/* The collection's own name (an alias resolves to it); borrowed for the collection's life. */
const char *ag_coll_name(const ag_collection_t *c);

/* Operation numbers (docs/SECURITY.md "Partial snapshots"): one process-wide sequence, starting
 * at 1 each start. ag_op_next takes the next one; a point write committed on a collection takes
 * one after its commit (ag_coll_last_op), and so does every committed catalog change
 * (ag_op_meta: the last of those). */
uint64_t ag_op_next(void);
uint64_t ag_op_meta(void);
void ag_op_meta_touch(void);
/* The operation number of c's last committed point write (0: none since it was loaded). */
uint64_t ag_coll_last_op(ag_collection_t *c);
/* c's partial-snapshot manifest: a new {"<segment id>": {"segment_id", "segment_version",
 * "file_versions": {path: number}}}, NULL when out of memory. Read it before taking the data
 * (versions never claim more than the data holds). */
json_t *ag_coll_manifest(ag_collection_t *c);
/* Makes c carry the identity of the source of a partial snapshot it was restored from (its one
 * segment of manifest m); ignored (false) when m is not one well-formed segment. */
bool ag_coll_adopt_manifest(ag_collection_t *c, const json_t *m);
/* Live points, and the slot count (slots are 0 .. nslots-1; a dead slot fails every match). */
uint32_t ag_coll_live(const ag_collection_t *c);
uint32_t ag_coll_nslots(const ag_collection_t *c);
const ag_point_id_t *ag_coll_id(const ag_collection_t *c, uint32_t slot);
/* Payloads are held packed (json/ag_pack.h; docs/ARCHITECTURE.md "Payloads in memory"), so
 * reading one as jansson decodes it. ag_coll_payload_json: the payload object of a live slot as a
 * new object the caller owns (a copy: changing it changes nothing stored), NULL when out of
 * memory. ag_coll_payload_packed: the packed object itself, borrowed (lock held), never NULL for
 * a live slot — what filters read in place. ag_coll_payload_each: ag_payload_path_each over the
 * slot's payload, fn getting each value at path decoded (a temporary, valid for the call);
 * returns how many values there were, or SIZE_MAX when one could not be decoded for want of
 * memory (then fn missed it). */
json_t *ag_coll_payload_json(const ag_collection_t *c, uint32_t slot);
const uint8_t *ag_coll_payload_packed(const ag_collection_t *c, uint32_t slot);
size_t ag_coll_payload_each(const ag_collection_t *c, uint32_t slot, const char *path,
                            void (*fn)(const json_t *v, void *ud), void *ud);
/* The payload-index schema changes while requests read it, so these three answer copies, never
 * parts of the live tree; any thread, with or without the collection's locks. */
/* How many payload fields are indexed. */
size_t ag_coll_index_count(const ag_collection_t *c);
/* A copy of a field's payload index definition {"data_type":..., ...} (new reference; the caller
 * owns it), or NULL when the field has no index (or on ENOMEM). */
json_t *ag_coll_index_def(const ag_collection_t *c, const char *field);
/* The data_type of a field's payload index copied into out; returns out, or NULL when the field
 * has no index. */
#define AG_INDEX_TYPE_MAX 16
const char *ag_coll_index_type(const ag_collection_t *c, const char *field,
                               char out[AG_INDEX_TYPE_MAX]);
/* The creation params as normalised (borrowed; lock held). */
const json_t *ag_coll_params(const ag_collection_t *c);
/* The single-vector form: vectors are addressed by "" (fixed at creation; no lock needed). */
bool ag_coll_unnamed(const ag_collection_t *c);
int ag_coll_nvec(const ag_collection_t *c);
int ag_coll_nsparse(const ag_collection_t *c);

/* A dense vector of the collection: its config and, for scoring, its storage and index (borrowed;
 * the vectors and graph they hold are read with the lock held). vi from ag_coll_vector. */
typedef struct ag_dense_info {
    const char *name; /* "" for the unnamed vector */
    uint32_t dim;
    ag_distance_t dist;
    ag_dtype_t dtype;
    bool multi; /* a multivector: rows in mv; vs and index are NULL */
    const ag_vecstore_t *vs;
    const ag_index_t *index;
    const ag_multivec_t *mv;
} ag_dense_info_t;
void ag_coll_dense_info(const ag_collection_t *c, int vi, ag_dense_info_t *out);
/* Dense vector vi's full_scan_threshold in points (Qdrant's KB of vectors over the row size):
 * the filtered-search planner scores up to this many payload-index candidates exactly rather
 * than walking the graph (docs/ARCHITECTURE.md "Filtered search"). UINT32_MAX when the vector
 * has no graph (every search is exact). Lock held. */
uint32_t ag_coll_full_scan_points(const ag_collection_t *c, int vi);
/* What a plain nearest search of dense vector vi would have to do, read under the read lock
 * (cheap: no scan): how many points it scores exactly (all live points while the graph is not
 * built, else the ones queued for linking) and the graph walk's default beam and links. The api
 * layer's estimate of whether a search is cheap enough to answer on a network thread
 * (docs/ARCHITECTURE.md "Inline answers"). graph false: no graph serves this vector. */
typedef struct ag_coll_search_shape {
    uint32_t live, exact_points, dim, ef_search, m;
    bool graph, on_disk, multi;
} ag_coll_search_shape_t;
void ag_coll_search_shape(ag_collection_t *c, int vi, ag_coll_search_shape_t *out);
/* The stored dense vector vi of a slot, or NULL (lock held); NULL for a multivector. */
const float *ag_coll_dense_get(const ag_collection_t *c, int vi, uint32_t slot);
/* The rows of vector vi of a slot (*rows of dim floats): a multivector's rows, or a plain dense
 * vector as one row; NULL when the slot has none (lock held). */
const float *ag_coll_dense_rows(const ag_collection_t *c, int vi, uint32_t slot, uint32_t *rows);
/* The inverted index of sparse vector si (borrowed; read with the lock held). */
const ag_sparse_t *ag_coll_sparse_index(const ag_collection_t *c, int si);

/* Visits every live point (slot, id, payload all borrowed for the call) under the read lock
 * until visit returns false. The payload is decoded for the call (ag_coll_payload_json); when
 * that runs out of memory the scan stops and returns AG_ENOMEM, else 0. */
typedef bool (*ag_coll_visit_fn)(void *ud, uint32_t slot, const ag_point_id_t *id,
                                 const json_t *payload);
int ag_coll_scan(ag_collection_t *c, ag_coll_visit_fn visit, void *ud);
/* Does any live point match f right now? hint (may be NULL) is a filter JSON whose payload-index
 * candidates include every match of f, so an indexed key avoids a full scan (the JWT
 * value_exists check, docs/PERMISSIONS.md). Takes the read lock. */
bool ag_coll_any_match(ag_collection_t *c, const ag_filter_t *f, const json_t *hint);

/* What GET /collections/{name} reports, counted under the read lock. With a row restriction the
 * counts cover the restricted rows only. params and schema are new references (the caller owns
 * them); schema maps each indexed field to its definition plus "points" (how many points in the
 * rows hold it). */
typedef struct ag_coll_stats {
    json_t *params;
    json_t *schema;
    uint64_t points, vectors, queued; /* queued: vectors not yet linked into a graph */
    bool unsaved; /* a graph changed since its checkpoint was written (status stays yellow) */
} ag_coll_stats_t;
int ag_coll_stats(ag_collection_t *c, const ag_filter_t *restriction, ag_coll_stats_t *out);

/* The counts /metrics and the indexer's progress lines report, under the read lock (cheap: no
 * scan). vectors sums every dense vector; queued is how many of them wait to be linked. */
typedef struct ag_coll_counts {
    uint64_t points, vectors, queued;
} ag_coll_counts_t;
void ag_coll_counts(ag_collection_t *c, ag_coll_counts_t *out);

/* Walks the stored points in id order (LMDB's sorted keys, in a read transaction of its own)
 * from the first id >= from (NULL = the first point). visit gets each point's id (NULL for a key
 * that does not parse) and its slot (UINT32_MAX when it is not in memory); it returns 0 to go on,
 * 1 to stop, or a negative error, which stops the walk and is returned. AG_ESTORAGE when the
 * database cannot be read. Caller holds the read lock, so the slots it is given stay valid. */
typedef int (*ag_coll_walk_fn)(void *ud, const ag_point_id_t *id, uint32_t slot);
int ag_coll_walk(ag_collection_t *c, const ag_point_id_t *from, ag_coll_walk_fn visit, void *ud);

/* Writer side: write_begin takes the write mutex; apply commits to LMDB (syncing when `sync`)
 * and then applies to memory; write_end releases the mutex. For store/ and tests: the rest of
 * src/ writes through ag_coll_write and ag_batch_apply (store/ag_write.h; scripts/check-layers.sh
 * enforces it). */
/* Returns AG_ENOTFOUND (mutex not held) if the collection was deleted meanwhile. */
int ag_coll_write_begin(ag_collection_t *c);
void ag_coll_write_end(ag_collection_t *c);
int ag_coll_apply(ag_collection_t *c, ag_mutation_t *muts, size_t n, bool sync, ag_diag_t *diag);

/* HNSW graph checkpoints (docs/RELIABILITY.md, "Crash recovery"). ag_coll_save_indexes writes
 * the checkpoint of every graph that changed since its last one, now (shutdown; takes the read
 * lock for the copy only). ag_coll_index_checkpoint is the indexer thread's: the same, paced —
 * a caught-up graph once its last checkpoint is AG_COLL_CHECKPOINT_GAP_S old (and ten times what
 * writing it took), one with points still queued every AG_COLL_CHECKPOINT_S; it returns how many
 * files it wrote. Neither runs on a writer's path. */
#define AG_COLL_CHECKPOINT_GAP_S 0.5
#define AG_COLL_CHECKPOINT_S 60.0
int ag_coll_index_checkpoint(ag_collection_t *c);
int ag_coll_save_indexes(ag_collection_t *c);

/* Returns a new JSON vector object for a slot ({"": [...]} form collapsed to a plain array for an
 * unnamed collection). `which` NULL = all vectors, else a JSON array of names to include. */
json_t *ag_coll_vectors_json(const ag_collection_t *c, uint32_t slot, const json_t *which);

/* Links up to budget queued points into the collection's graphs (background indexer). Takes the
 * write lock for the step. Returns how many were linked. */
uint32_t ag_coll_index_step(ag_collection_t *c, uint32_t budget);

#endif
