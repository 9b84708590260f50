/*
 * ag_sparse.h — one named sparse vector field of a collection: per slot a vector
 * {indices: u32[], values: f32[]}, scored by dot product through an inverted index (a posting
 * list per dimension index, sorted by slot).
 *
 * Each slot's vector is stored (sorted by index) so it can be returned to clients. Not
 * thread-safe for writers: the caller serializes writes and excludes readers during a write
 * (the collection's rwlock); concurrent searches and reads are safe.
 */
#ifndef AG_SPARSE_H
#define AG_SPARSE_H

#include "ag_base.h"

#include "ag_index.h"

typedef struct ag_sparse ag_sparse_t;

/* On success *out is a new, empty index the caller owns (ag_sparse_free). AG_ENOMEM. */
int ag_sparse_new(ag_sparse_t **out);
/* Frees the index and every stored vector. NULL is a no-op. */
void ag_sparse_free(ag_sparse_t *sp);

/* Replaces the slot's vector with a copy of the n pairs (n may be 0: present but empty). The
 * caller has validated the indices to be unique and the values finite; they need not be sorted.
 * AG_EINVAL if slot >= AG_VECSTORE_MAX_SLOTS, AG_ENOMEM (the index is then unchanged). */
int ag_sparse_set(ag_sparse_t *sp, uint32_t slot, const uint32_t *indices, const float *values,
                  uint32_t n);
/*
 * The same in three steps, for a writer that must not run out of memory after a point of no
 * return (store/ag_collection.c reserves before its commit):
 *  - ag_sparse_prepare copies and sorts a vector (allocates; validated input as above);
 *  - ag_sparse_reserve makes room for slots 0..slots-1 and for the prepared vector's postings,
 *    on top of what earlier reservations promised (so a batch reserves each of its vectors);
 *  - ag_sparse_put then stores it at a slot below `slots`, taking p's memory, allocating nothing.
 * A reserved vector that is not put is given back with ag_sparse_unreserve (then released).
 */
typedef struct ag_sparse_prep {
    uint32_t *block; /* owned: n indices (ascending) then n values; NULL when n is 0 */
    uint32_t n;
} ag_sparse_prep_t;
int ag_sparse_prepare(const uint32_t *indices, const float *values, uint32_t n,
                      ag_sparse_prep_t *out);
void ag_sparse_prep_release(ag_sparse_prep_t *p);
int ag_sparse_reserve(ag_sparse_t *sp, uint32_t slots, const ag_sparse_prep_t *p);
void ag_sparse_unreserve(ag_sparse_t *sp, const ag_sparse_prep_t *p);
void ag_sparse_put(ag_sparse_t *sp, uint32_t slot, ag_sparse_prep_t *p);
/* Removes the slot's vector (no-op if absent). Never allocates. */
void ag_sparse_clear(ag_sparse_t *sp, uint32_t slot);
/* The slot's vector sorted by index: pointers borrowed until the next write (NULL when n is 0).
 * Returns false (outputs untouched) if the slot has no vector. */
bool ag_sparse_get(const ag_sparse_t *sp, uint32_t slot, const uint32_t **indices,
                   const float **values, uint32_t *n);
/* Number of slots holding a vector. */
uint32_t ag_sparse_count(const ag_sparse_t *sp);
/* How many slots hold a value at dimension dim (its posting list's length): the
 * document frequency an IDF modifier needs. */
uint32_t ag_sparse_df(const ag_sparse_t *sp, uint32_t dim);
/* Number of distinct dimension indices with a non-empty posting list. */
size_t ag_sparse_dim_count(const ag_sparse_t *sp);

/*
 * Top k by dot product with the query (qi/qv, qn pairs, any order; a repeated query index adds
 * its values) among slots sharing at least one index with it; slots whose score is exactly 0 are
 * not returned. flt (candidates, accept) and params->score_threshold (keep score >= t) apply; flt
 * and params may be NULL. Best first, ties by smaller slot; out has room for k, *n_out = hits
 * written. The scores equal ag_sparse_dot on the stored vectors bit for bit. Allocates only
 * per call. AG_EINVAL, AG_ENOMEM; AG_ETIMEOUT (and no hits) once params->deadline has passed
 * (looked at every 4,096 slots merged).
 */
int ag_sparse_search(const ag_sparse_t *sp, const uint32_t *qi, const float *qv, uint32_t qn,
                     size_t k, const ag_index_filter_t *flt, const ag_search_params_t *params,
                     ag_hit_t *out, size_t *n_out);

/* Dot product of two sparse vectors, each sorted by strictly ascending index. The products of
 * matching indices are summed in ascending index order. */
float ag_sparse_dot(const uint32_t *ai, const float *av, uint32_t an, const uint32_t *bi,
                    const float *bv, uint32_t bn);

#endif
