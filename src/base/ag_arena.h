/*
 * ag_arena.h — a per-request bump allocator: many small allocations, one release when the
 * request completes. Growth is capped (ceiling) so a hostile request cannot exhaust memory
 * through temporaries.
 */
#ifndef AG_ARENA_H
#define AG_ARENA_H

#include "ag_base.h"

typedef struct ag_arena_chunk ag_arena_chunk_t;

typedef struct ag_arena {
    ag_arena_chunk_t *head;
    size_t used_total;
    size_t ceiling; /* 0 = unlimited */
} ag_arena_t;

/* No allocation happens here. */
void ag_arena_init(ag_arena_t *a, size_t ceiling);
/* Returns 16-byte aligned memory valid until ag_arena_release, or NULL (out of memory or over
 * the ceiling). */
void *ag_arena_alloc(ag_arena_t *a, size_t size);
void *ag_arena_calloc(ag_arena_t *a, size_t n, size_t size);
/* Frees every chunk. The arena can be reused afterwards. */
void ag_arena_release(ag_arena_t *a);

#endif
