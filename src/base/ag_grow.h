/*
 * ag_grow.h — the one growable-array step: make room for `need` elements in a malloc'd array,
 * doubling its capacity (from `first`) and never past a ceiling, so no array grows without a bound
 * and no caller writes the doubling loop by hand.
 *
 *   if (AG_GROW(c->slots, c->cap_slots, c->nslots + 1, 1024, MAX_SLOTS) != 0) return AG_ENOMEM;
 *
 * AG_GROW(arr, cap, need, first, max): arr is an lvalue pointer to the elements, cap an lvalue
 * integer holding the capacity in elements (any unsigned type that can hold max). When need <=
 * cap nothing happens. Otherwise the capacity becomes the smallest first·2^k >= need, capped at
 * max, arr is reallocated (old contents kept) and cap updated. Returns 0; AG_ETOOBIG when need >
 * max (nothing changes); AG_ENOMEM (nothing changes).
 */
#ifndef AG_GROW_H
#define AG_GROW_H

#include "ag_base.h"

/* The implementation behind AG_GROW: *slot is the array pointer (read and written by memcpy, so
 * any element type works), elem the element size; *new_cap receives the new capacity. */
int ag_grow_array(void *slot, size_t elem, size_t cap, size_t need, size_t first, size_t max,
                  size_t *new_cap);

#define AG_GROW(arr, cap, need, first, max)                                                        \
    __extension__({                                                                                \
        size_t ag_grow_cap_ = (size_t)(cap);                                                       \
        int ag_grow_rc_ = ag_grow_array(&(arr), sizeof(*(arr)), ag_grow_cap_, (size_t)(need),      \
                                        (size_t)(first), (size_t)(max), &ag_grow_cap_);            \
        if (ag_grow_rc_ == 0)                                                                      \
            (cap) = ag_grow_cap_;                                                                  \
        ag_grow_rc_;                                                                               \
    })

#endif
