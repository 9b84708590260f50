/*
 * ag_index.h — the interface every dense vector index implements (the exact scan here, HNSW
 * later), plus the bounded top-k collector the implementations share.
 *
 * An index does not own vectors: they live in the collection's ag_vecstore_t (borrowed by the
 * index for its whole life) and the index is told which slots were added or removed. The caller
 * serializes add/remove against each other and against searches (the collection's rwlock);
 * concurrent searches on one index are always safe.
 *
 * Result order everywhere: best score first (highest for Cosine/Dot, lowest for
 * Euclid/Manhattan); equal scores by smaller slot. Hits whose score is NaN are never returned.
 */
#ifndef AG_INDEX_H
#define AG_INDEX_H

#include "ag_base.h"

#include "ag_distance.h"
#include "ag_vecstore.h"

typedef struct ag_hit {
    uint32_t slot;
    float score;
} ag_hit_t;

/* Decides whether a slot may appear in results (a payload filter, a row restriction). Must be
 * thread-safe: a large scan calls it from pool threads concurrently. */
typedef bool (*ag_accept_fn)(const void *ud, uint32_t slot);

typedef struct ag_index_filter {
    ag_accept_fn accept; /* NULL = accept every present slot */
    const void *ud;      /* passed to accept, borrowed for the call */
    /* Optional: if non-NULL, only these slots (ascending) are considered; slots absent from the
     * store are skipped, a repeated slot counts once. n_candidates == 0 with a non-NULL pointer
     * means "no slot at all". */
    const uint32_t *candidates;
    size_t n_candidates;
} ag_index_filter_t;

typedef struct ag_search_params {
    uint32_t ef; /* beam width for approximate indexes; 0 = index default */
    bool exact;  /* ask an approximate index for an exact answer */
    float score_threshold;
    bool has_threshold; /* Euclid/Manhattan keep score <= t, Cosine/Dot keep score >= t */
    /* ag_now_mono() time after which an exact scan stops and returns AG_ETIMEOUT (its partial
     * result is discarded); 0 = no deadline. Looked at between chunks of a few thousand slots. */
    double deadline;
    /* Quantized vectors (an index that has them; others ignore these): quant_ignore ranks with
     * the float vectors; otherwise the best ceil(oversampling * k) candidates (oversampling < 1
     * counts as 1) are rescored from the float vectors, unless quant_no_rescore, which returns
     * the k best by their approximate scores. Zero = Qdrant's defaults. */
    bool quant_ignore;
    bool quant_no_rescore;
    double oversampling;
    /* Benchmarks only (bench/bench_filter.c): a graph index walks its graph with the predicate
     * even where its own plan would scan the few matching points exactly. */
    bool walk_only;
} ag_search_params_t;

typedef struct ag_index ag_index_t;

typedef struct ag_index_vtable {
    const char *name;
    /* The vector is already in the vecstore. */
    int (*add)(ag_index_t *ix, uint32_t slot);
    int (*remove)(ag_index_t *ix, uint32_t slot);
    /* Best k hits (see the order above) into out (room for k), *n_out = number written (<= k).
     * flt and params may be NULL. Thread-safe against other searches. */
    int (*search)(const ag_index_t *ix, const float *query, size_t k, const ag_index_filter_t *flt,
                  const ag_search_params_t *params, ag_hit_t *out, size_t *n_out);
    void (*free)(ag_index_t *ix);
    /* Optional: makes room so that `adds` add() calls for slots below `slots` allocate nothing
     * (an index that cannot promise it leaves this NULL). */
    int (*reserve)(ag_index_t *ix, uint32_t slots, size_t adds);
} ag_index_vtable_t;

/* Implementations embed this as their first member. vs is borrowed (owned by the collection) and
 * must outlive the index. */
struct ag_index {
    const ag_index_vtable_t *vt;
    ag_vecstore_t *vs;
    ag_distance_t dist;
};

/* Scans of more than this many present slots (or candidates) are split across the worker pool;
 * below it the fork/join overhead costs more than it saves. */
#define AG_EXACT_PARALLEL_MIN 20000u

/* The exact (brute-force) index: search scans every present slot of vs. add/remove keep no
 * state; add returns AG_ENOTFOUND if the slot is not present in vs. On success *out is a new
 * index the caller owns (ag_index_free); vs stays borrowed. AG_EINVAL, AG_ENOMEM. */
int ag_index_exact_new(ag_vecstore_t *vs, ag_distance_t dist, ag_index_t **out);

static inline int ag_index_add(ag_index_t *ix, uint32_t slot)
{
    return ix->vt->add(ix, slot);
}

/* See ag_index_vtable_t.reserve; 0 when the index has nothing to reserve. */
static inline int ag_index_reserve(ag_index_t *ix, uint32_t slots, size_t adds)
{
    return ix->vt->reserve ? ix->vt->reserve(ix, slots, adds) : 0;
}

static inline int ag_index_remove(ag_index_t *ix, uint32_t slot)
{
    return ix->vt->remove(ix, slot);
}

static inline int ag_index_search(const ag_index_t *ix, const float *query, size_t k,
                                  const ag_index_filter_t *flt, const ag_search_params_t *params,
                                  ag_hit_t *out, size_t *n_out)
{
    return ix->vt->search(ix, query, k, flt, params, out, n_out);
}

/* Frees the index (never the vecstore). NULL is a no-op. */
static inline void ag_index_free(ag_index_t *ix)
{
    if (ix)
        ix->vt->free(ix);
}

/*
 * Exact top-k over vs with the same contract as search: over flt->candidates when given (the
 * planner's "few matches" path), else over every present slot. query has dim floats (normalized
 * already for Cosine). Keeps no state. Allocates only when it splits the scan across the pool
 * (per-task heaps, freed before return); if that allocation fails it scans on the calling thread
 * instead, so the errors are AG_EINVAL (NULL vs/query/n_out, NULL out with k > 0, a NaN
 * threshold) and AG_ETIMEOUT (params->deadline passed during the scan; *n_out is 0 then).
 */
int ag_index_score_candidates(const ag_vecstore_t *vs, ag_distance_t dist, const float *query,
                              size_t k, const ag_index_filter_t *flt,
                              const ag_search_params_t *params, ag_hit_t *out, size_t *n_out);

/*
 * Bounded top-k collector over a caller-provided buffer of k hits: a binary heap with the worst
 * kept hit at the root. It ranks by `score` with higher = better and ties by smaller slot, so
 * lower-is-better distances push the negated score and negate back after ag_topk_finish.
 * No allocation; not thread-safe (one per thread).
 */
typedef struct ag_topk {
    ag_hit_t *h; /* borrowed buffer, room for k */
    size_t k;
    size_t n;
} ag_topk_t;

void ag_topk_init(ag_topk_t *t, ag_hit_t *buf, size_t k);
/* Offers a hit; kept if fewer than k are held or it beats the worst held. NaN is dropped. */
void ag_topk_push(ag_topk_t *t, uint32_t slot, float score);
/* True if a hit with this score (and any slot) could still enter: lets a scan skip work. */
static inline bool ag_topk_would_accept(const ag_topk_t *t, float score)
{
    return t->n < t->k || (t->k > 0 && score >= t->h[0].score);
}
/* Sorts the held hits best first in place (the buffer stops being a heap) and returns n. */
size_t ag_topk_finish(ag_topk_t *t);

#endif
