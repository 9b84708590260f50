/*
 * ag_vecstore.h — dense float32 vectors of one dimension, addressed by slot.
 *
 * Rows are 64-byte aligned; the row stride is dim rounded up to a multiple of 16 floats (the tail
 * of each row is zero). A presence bit per slot says whether the slot holds a vector. Capacity
 * grows by doubling and the whole block moves when it does, so every pointer obtained from the
 * store is borrowed only until the next write (set/clear).
 *
 * Not thread-safe for writers: the caller serializes writes and excludes readers during a write
 * (the collection's rwlock). Any number of concurrent readers is fine.
 *
 * External rows (on_disk vectors, docs/ARCHITECTURE.md "On-disk vectors"): a store made external
 * with ag_vecstore_set_external keeps only the presence bits; set() records presence and copies
 * nothing, and every row read (ag_vecstore_get, ag_vecstore_view_row) asks the owner's fetch
 * function, which returns a padded, 64-byte aligned row that stays valid for a few more fetches
 * on the same thread only (the owner's contract; store/ keeps a small per-thread ring). Code that
 * holds a row across other row reads must copy it first.
 */
#ifndef AG_VECSTORE_H
#define AG_VECSTORE_H

#include "ag_base.h"

typedef struct ag_vecstore ag_vecstore_t;

/* Largest slot count a store can address (keeps slot+1 and byte sizes free of overflow). */
#define AG_VECSTORE_MAX_SLOTS ((uint32_t)INT32_MAX)

/* Allocates an empty store (capacity 0) for vectors of dim floats, 1 <= dim <= AG_MAX_DIM.
 * On success *out is a new store the caller owns (free with ag_vecstore_free). AG_EINVAL for a
 * bad dim, AG_ENOMEM. */
int ag_vecstore_new(uint32_t dim, ag_vecstore_t **out);
/* The row of slot, fetched by an external store's owner: stride floats (zero tail), 64-byte
 * aligned, never NULL for a slot the store marks present. */
typedef const float *(*ag_vecstore_fetch_fn)(void *ud, uint32_t slot);
/* Makes an empty store (capacity 0) external: rows come from fetch(ud, slot) from now on. ud is
 * borrowed for the store's life. AG_EINVAL when the store already has capacity. */
int ag_vecstore_set_external(ag_vecstore_t *vs, ag_vecstore_fetch_fn fetch, void *ud);
/* Whether the slot holds a vector (no row read, even for an external store). */
bool ag_vecstore_has(const ag_vecstore_t *vs, uint32_t slot);
/* Frees the store and all its rows. NULL is a no-op. */
void ag_vecstore_free(ag_vecstore_t *vs);

/* Copies dim floats from vec into slot (replacing any vector there; an external store copies
 * nothing and vec may be NULL) and marks it present. Grows
 * capacity to at least slot+1 (doubling), which invalidates borrowed pointers. AG_EINVAL if
 * slot >= AG_VECSTORE_MAX_SLOTS, AG_ENOMEM (the store is then unchanged). */
int ag_vecstore_set(ag_vecstore_t *vs, uint32_t slot, const float *vec);
/* Makes room for slots 0..slots-1, so that setting any of them allocates nothing. AG_EINVAL past
 * AG_VECSTORE_MAX_SLOTS, AG_ENOMEM (the store is then unchanged). */
int ag_vecstore_reserve(ag_vecstore_t *vs, uint32_t slots);
/* Marks slot absent (no-op if it is absent or beyond capacity). Never reallocates. */
void ag_vecstore_clear(ag_vecstore_t *vs, uint32_t slot);
/* The slot's dim floats, or NULL if absent. Borrowed until the next write to the store. */
const float *ag_vecstore_get(const ag_vecstore_t *vs, uint32_t slot);

uint32_t ag_vecstore_dim(const ag_vecstore_t *vs);
/* Number of addressable slots (present or not; 0 or a multiple of 64); every present slot is
 * below it. */
uint32_t ag_vecstore_capacity(const ag_vecstore_t *vs);
/* Number of present slots. */
uint32_t ag_vecstore_count(const ag_vecstore_t *vs);
/* Bytes held by the store's rows and presence bits (for telemetry). */
size_t ag_vecstore_memory(const ag_vecstore_t *vs);

/*
 * A read-only snapshot of the store's layout for hot loops (scans, graph traversal), so they can
 * test presence and address rows without a function call per slot. Borrowed until the next write.
 */
typedef struct ag_vecstore_view {
    const float *rows;       /* capacity * stride floats, 64-byte aligned; NULL when external */
    const uint64_t *present; /* (capacity + 63) / 64 words; bit (slot % 64) of word slot / 64 */
    size_t stride;           /* floats between consecutive rows */
    uint32_t dim;
    uint32_t capacity;
    ag_vecstore_fetch_fn fetch; /* external store: rows come from fetch(fetch_ud, slot) */
    void *fetch_ud;
} ag_vecstore_view_t;

void ag_vecstore_view(const ag_vecstore_t *vs, ag_vecstore_view_t *out);

static inline bool ag_vecstore_view_has(const ag_vecstore_view_t *v, uint32_t slot)
{
    return slot < v->capacity && ((v->present[slot >> 6] >> (slot & 63)) & 1u);
}

/* The row of a slot known to be below capacity (presence not checked; an external store's row
 * must be present). */
static inline const float *ag_vecstore_view_row(const ag_vecstore_view_t *v, uint32_t slot)
{
    if (__builtin_expect(v->fetch != NULL, 0))
        return v->fetch(v->fetch_ud, slot);
    return v->rows + (size_t)slot * v->stride;
}

#endif
