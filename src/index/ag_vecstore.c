#include "ag_base.h"

#include "ag_vecstore.h"

#include <sys/mman.h>

#define ROW_ALIGN 64u
#define STRIDE_QUANTUM 16u /* floats: 64 bytes */
#define MIN_CAPACITY 64u   /* a multiple of 64, so presence words cover capacity exactly */

struct ag_vecstore {
    float *rows;       /* owned, capacity * stride floats: aligned_alloc'd, or mapped (mapped) */
    size_t mapped;     /* bytes of rows' own mapping (rows_map), 0 when rows came from malloc */
    uint64_t *present; /* owned, capacity / 64 words */
    size_t stride;
    uint32_t dim;
    uint32_t capacity; /* 0 or a power of two >= MIN_CAPACITY */
    uint32_t count;
    ag_vecstore_fetch_fn fetch; /* external rows (rows stays NULL) */
    void *fetch_ud;
};

static void rows_free(ag_vecstore_t *vs);

int ag_vecstore_new(uint32_t dim, ag_vecstore_t **out)
{
    if (dim == 0 || dim > AG_MAX_DIM)
        return AG_EINVAL;
    ag_vecstore_t *vs = calloc(1, sizeof(*vs));
    if (!vs)
        return AG_ENOMEM;
    vs->dim = dim;
    vs->stride = ((size_t)dim + STRIDE_QUANTUM - 1) / STRIDE_QUANTUM * STRIDE_QUANTUM;
    *out = vs;
    return 0;
}

void ag_vecstore_free(ag_vecstore_t *vs)
{
    if (!vs)
        return;
    rows_free(vs);
    free(vs->present);
    free(vs);
}

#define HUGE_PAGE ((size_t)2 << 20)

static void rows_free(ag_vecstore_t *vs)
{
    if (vs->mapped)
        munmap(vs->rows, vs->mapped);
    else
        free(vs->rows);
    vs->rows = NULL;
    vs->mapped = 0;
}

/* A 2 MB aligned anonymous mapping of `whole` bytes (a multiple of 2 MB), marked for transparent
 * huge pages; NULL: no memory. Released with munmap(p, whole). */
static void *map_aligned(size_t whole)
{
    char *raw =
        mmap(NULL, whole + HUGE_PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (raw == MAP_FAILED)
        return NULL;
    char *p = (char *)(((uintptr_t)raw + HUGE_PAGE - 1) & ~(uintptr_t)(HUGE_PAGE - 1));
    if (p > raw)
        munmap(raw, (size_t)(p - raw));
    size_t tail = (size_t)(raw + whole + HUGE_PAGE - (p + whole));
    if (tail)
        munmap(p + whole, tail);
    (void)madvise(p, whole, MADV_HUGEPAGE);
    return p;
}

/*
 * Rows for new_cap rows of row_bytes, the first old_cap of them holding the current rows; on
 * success vs->rows / vs->mapped describe the new block (the old one is gone), on failure nothing
 * changed. ROW_ALIGN-aligned from malloc below 2 MB. From 2 MB on, the rows live in their own
 * mapping, 2 MB aligned and marked for transparent huge pages — graph walks and rescoring read
 * rows at random, and on 4 KB pages most of those reads also miss the TLB (costly under this VM's
 * paging; docs/ARCHITECTURE.md "HNSW memory layout"; the kernel may ignore the hint) — and a
 * mapped block grows by mremap into a larger aligned range: the kernel moves the page tables, so
 * the rows are neither copied nor faulted and zeroed again (docs/ARCHITECTURE.md "One write's
 * path"). The rows past old_cap are left uninitialized (zero when mapped).
 */
static int rows_grow(ag_vecstore_t *vs, uint32_t old_cap, uint32_t new_cap, size_t row_bytes)
{
    size_t bytes = (size_t)new_cap * row_bytes, old_bytes = (size_t)old_cap * row_bytes;
    if (bytes < HUGE_PAGE) {
        float *rows = aligned_alloc(ROW_ALIGN, bytes);
        if (!rows)
            return AG_ENOMEM;
        if (old_bytes)
            memcpy(rows, vs->rows, old_bytes);
        rows_free(vs);
        vs->rows = rows;
        return 0;
    }
    if (bytes > SIZE_MAX - 2 * HUGE_PAGE)
        return AG_ENOMEM;
    size_t whole = (bytes + HUGE_PAGE - 1) & ~(HUGE_PAGE - 1);
    void *p = map_aligned(whole);
    if (!p)
        return AG_ENOMEM;
    if (vs->mapped) {
        /* Replaces the fresh range with the old mapping, extended by zero pages. */
        void *moved = mremap(vs->rows, vs->mapped, whole, MREMAP_MAYMOVE | MREMAP_FIXED, p);
        if (moved == MAP_FAILED) {
            munmap(p, whole);
            return AG_ENOMEM;
        }
        (void)madvise(moved, whole, MADV_HUGEPAGE);
    } else {
        if (old_bytes)
            memcpy(p, vs->rows, old_bytes);
        rows_free(vs);
    }
    vs->rows = p;
    vs->mapped = whole;
    return 0;
}

/* Moves the store into a block of new_cap rows. Rows beyond the old capacity are left
 * uninitialized: they are absent, and set() writes a whole row (tail included) before marking
 * one present. On failure the store is unchanged. */
static int grow(ag_vecstore_t *vs, uint32_t new_cap)
{
    size_t row_bytes = vs->stride * sizeof(float);
    if ((size_t)new_cap > SIZE_MAX / row_bytes)
        return AG_ENOMEM;
    uint64_t *present = calloc(new_cap / 64u, sizeof(uint64_t));
    if (!present)
        return AG_ENOMEM;
    if (!vs->fetch) {
        int rc = rows_grow(vs, vs->capacity, new_cap, row_bytes);
        if (rc) {
            free(present);
            return rc;
        }
    }
    if (vs->capacity)
        memcpy(present, vs->present, vs->capacity / 64u * sizeof(uint64_t));
    free(vs->present);
    vs->present = present;
    vs->capacity = new_cap;
    return 0;
}

int ag_vecstore_reserve(ag_vecstore_t *vs, uint32_t slots)
{
    if (slots > AG_VECSTORE_MAX_SLOTS)
        return AG_EINVAL;
    if (slots <= vs->capacity)
        return 0;
    uint64_t cap = vs->capacity ? vs->capacity : MIN_CAPACITY;
    while (cap < slots)
        cap *= 2u;
    return grow(vs, (uint32_t)cap);
}

int ag_vecstore_set(ag_vecstore_t *vs, uint32_t slot, const float *vec)
{
    if (slot >= AG_VECSTORE_MAX_SLOTS)
        return AG_EINVAL;
    if (slot >= vs->capacity) {
        uint64_t cap = vs->capacity ? (uint64_t)vs->capacity * 2u : MIN_CAPACITY;
        while (cap < (uint64_t)slot + 1u)
            cap *= 2u;
        /* slot + 1 <= INT32_MAX, so the power of two reached is at most 2^31. */
        int rc = grow(vs, (uint32_t)cap);
        if (rc)
            return rc;
    }
    if (!vs->fetch) {
        float *row = vs->rows + (size_t)slot * vs->stride;
        memcpy(row, vec, (size_t)vs->dim * sizeof(float));
        if (vs->stride > vs->dim)
            memset(row + vs->dim, 0, (vs->stride - vs->dim) * sizeof(float));
    }
    uint64_t bit = UINT64_C(1) << (slot & 63u);
    if (!(vs->present[slot >> 6] & bit)) {
        vs->present[slot >> 6] |= bit;
        vs->count++;
    }
    return 0;
}

void ag_vecstore_clear(ag_vecstore_t *vs, uint32_t slot)
{
    if (slot >= vs->capacity)
        return;
    uint64_t bit = UINT64_C(1) << (slot & 63u);
    if (vs->present[slot >> 6] & bit) {
        vs->present[slot >> 6] &= ~bit;
        vs->count--;
    }
}

bool ag_vecstore_has(const ag_vecstore_t *vs, uint32_t slot)
{
    return slot < vs->capacity && ((vs->present[slot >> 6] >> (slot & 63u)) & 1u);
}

const float *ag_vecstore_get(const ag_vecstore_t *vs, uint32_t slot)
{
    if (!ag_vecstore_has(vs, slot))
        return NULL;
    if (vs->fetch)
        return vs->fetch(vs->fetch_ud, slot);
    return vs->rows + (size_t)slot * vs->stride;
}

int ag_vecstore_set_external(ag_vecstore_t *vs, ag_vecstore_fetch_fn fetch, void *ud)
{
    if (vs->capacity || !fetch)
        return AG_EINVAL;
    vs->fetch = fetch;
    vs->fetch_ud = ud;
    return 0;
}

uint32_t ag_vecstore_dim(const ag_vecstore_t *vs)
{
    return vs->dim;
}

uint32_t ag_vecstore_capacity(const ag_vecstore_t *vs)
{
    return vs->capacity;
}

uint32_t ag_vecstore_count(const ag_vecstore_t *vs)
{
    return vs->count;
}

size_t ag_vecstore_memory(const ag_vecstore_t *vs)
{
    return sizeof(*vs) + (vs->rows ? (size_t)vs->capacity * vs->stride * sizeof(float) : 0) +
           vs->capacity / 64u * sizeof(uint64_t);
}

void ag_vecstore_view(const ag_vecstore_t *vs, ag_vecstore_view_t *out)
{
    out->rows = vs->rows;
    out->present = vs->present;
    out->stride = vs->stride;
    out->dim = vs->dim;
    out->capacity = vs->capacity;
    out->fetch = vs->fetch;
    out->fetch_ud = vs->fetch_ud;
}
