#include "ag_base.h"

#include "ag_sparse.h"

#include "ag_clock.h"

#include <math.h>

#include "ag_grow.h"

typedef struct posting {
    uint32_t slot;
    float value;
} posting_t;

/* A posting list, stored in the open-addressing table under its dimension index. */
typedef struct plist {
    posting_t *p; /* owned, cap entries, sorted by slot */
    uint32_t n;
    uint32_t cap;
    uint32_t dim;
    uint32_t reserved; /* postings promised to ag_sparse_reserve calls not yet put */
    bool used;
} plist_t;

typedef struct svec {
    uint32_t *idx; /* owned block: n indices then n values; NULL when n == 0 */
    float *val;    /* points into the idx block */
    uint32_t n;
    bool present;
} svec_t;

struct ag_sparse {
    svec_t *slots; /* owned, cap entries */
    uint32_t cap;
    uint32_t count;
    plist_t *table; /* owned, tcap entries (0 or a power of two), linear probing */
    size_t tcap;
    size_t tcount;
};

typedef struct pair {
    uint32_t idx;
    float val;
} pair_t;

/* Per-vector arrays are sized from a uint32_t count without overflow checks. */
_Static_assert(SIZE_MAX / 32 >= UINT32_MAX, "needs a 64-bit size_t");

/* ---- dimension → posting list table --------------------------------------------------------- */

static size_t hash_dim(uint32_t d)
{
    return (size_t)(((uint64_t)d * UINT64_C(0x9E3779B97F4A7C15)) >> 32);
}

static plist_t *table_find(const ag_sparse_t *sp, uint32_t dim)
{
    if (sp->tcap == 0)
        return NULL;
    size_t mask = sp->tcap - 1;
    for (size_t i = hash_dim(dim) & mask; sp->table[i].used; i = (i + 1) & mask) {
        if (sp->table[i].dim == dim)
            return &sp->table[i];
    }
    return NULL;
}

uint32_t ag_sparse_df(const ag_sparse_t *sp, uint32_t dim)
{
    const plist_t *l = table_find(sp, dim);
    return l ? l->n : 0;
}

static int table_rehash(ag_sparse_t *sp, size_t new_cap)
{
    plist_t *t = calloc(new_cap, sizeof(*t));
    if (!t)
        return AG_ENOMEM;
    for (size_t j = 0; j < sp->tcap; j++) {
        if (!sp->table[j].used)
            continue;
        size_t i = hash_dim(sp->table[j].dim) & (new_cap - 1);
        while (t[i].used)
            i = (i + 1) & (new_cap - 1);
        t[i] = sp->table[j];
    }
    free(sp->table);
    sp->table = t;
    sp->tcap = new_cap;
    return 0;
}

/* The list for dim, created empty if missing. NULL on allocation failure. Moves other lists. */
static plist_t *table_get_or_create(ag_sparse_t *sp, uint32_t dim)
{
    plist_t *e = table_find(sp, dim);
    if (e)
        return e;
    if ((sp->tcount + 1) * 2 > sp->tcap) { /* load factor <= 1/2 */
        if (sp->tcap > SIZE_MAX / 2 / sizeof(plist_t))
            return NULL;
        if (table_rehash(sp, sp->tcap ? sp->tcap * 2 : 16) != 0)
            return NULL;
    }
    size_t mask = sp->tcap - 1;
    size_t i = hash_dim(dim) & mask;
    while (sp->table[i].used)
        i = (i + 1) & mask;
    sp->table[i] = (plist_t){.dim = dim, .used = true};
    sp->tcount++;
    return &sp->table[i];
}

/* Removes an entry by shifting later members of its probe run back (no tombstones). */
static void table_delete(ag_sparse_t *sp, plist_t *e)
{
    free(e->p);
    size_t mask = sp->tcap - 1;
    size_t i = (size_t)(e - sp->table);
    for (size_t j = (i + 1) & mask; sp->table[j].used; j = (j + 1) & mask) {
        size_t h = hash_dim(sp->table[j].dim) & mask;
        /* The entry at j may fill the hole at i unless its home h lies cyclically in (i, j]. */
        bool stays = i < j ? (h > i && h <= j) : (h > i || h <= j);
        if (!stays) {
            sp->table[i] = sp->table[j];
            i = j;
        }
    }
    sp->table[i] = (plist_t){0};
    sp->tcount--;
}

/* ---- posting lists -------------------------------------------------------------------------- */

/* First position whose slot is >= slot. */
static uint32_t plist_lower_bound(const plist_t *l, uint32_t slot)
{
    uint32_t lo = 0, hi = l->n;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (l->p[mid].slot < slot)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* Room for one more posting beyond those already promised. */
static int plist_reserve_one(plist_t *l)
{
    if (AG_GROW(l->p, l->cap, (size_t)l->n + l->reserved + 1, 4, AG_VECSTORE_MAX_SLOTS) != 0)
        return AG_ENOMEM;
    l->reserved++;
    return 0;
}

/* Capacity must have been reserved. Slots mostly arrive in ascending order, so this is
 * usually an append. */
static void plist_insert(plist_t *l, uint32_t slot, float value)
{
    uint32_t pos = plist_lower_bound(l, slot);
    ag_assert(l->n < l->cap && (pos == l->n || l->p[pos].slot != slot));
    memmove(&l->p[pos + 1], &l->p[pos], (size_t)(l->n - pos) * sizeof(posting_t));
    l->p[pos] = (posting_t){slot, value};
    l->n++;
}

static void plist_remove(plist_t *l, uint32_t slot)
{
    uint32_t pos = plist_lower_bound(l, slot);
    if (pos == l->n || l->p[pos].slot != slot)
        return;
    memmove(&l->p[pos], &l->p[pos + 1], (size_t)(l->n - pos - 1) * sizeof(posting_t));
    l->n--;
}

/* ---- the index ------------------------------------------------------------------------------ */

int ag_sparse_new(ag_sparse_t **out)
{
    ag_sparse_t *sp = calloc(1, sizeof(*sp));
    if (!sp)
        return AG_ENOMEM;
    *out = sp;
    return 0;
}

void ag_sparse_free(ag_sparse_t *sp)
{
    if (!sp)
        return;
    for (uint32_t i = 0; i < sp->cap; i++)
        free(sp->slots[i].idx);
    for (size_t i = 0; i < sp->tcap; i++)
        free(sp->table[i].p);
    free(sp->slots);
    free(sp->table);
    free(sp);
}

static int cmp_pair(const void *a, const void *b)
{
    uint32_t x = ((const pair_t *)a)->idx, y = ((const pair_t *)b)->idx;
    return (x > y) - (x < y);
}

/* Takes the slot's postings out of the lists; lists left empty are dropped only when
 * drop_empty, so that a replacement can reuse lists it has reserved. */
static void unlink_postings(ag_sparse_t *sp, const svec_t *v, uint32_t slot, bool drop_empty)
{
    for (uint32_t j = 0; j < v->n; j++) {
        plist_t *l = table_find(sp, v->idx[j]);
        ag_assert(l);
        plist_remove(l, slot);
        if (drop_empty && l->n == 0 && l->reserved == 0)
            table_delete(sp, l);
    }
}

static void drop_empty_lists(ag_sparse_t *sp, const uint32_t *idx, uint32_t n)
{
    for (uint32_t j = 0; j < n; j++) {
        plist_t *l = table_find(sp, idx[j]);
        if (l && l->n == 0 && l->reserved == 0)
            table_delete(sp, l);
    }
}

static int grow_slots(ag_sparse_t *sp, uint32_t slot)
{
    uint32_t old = sp->cap;
    if (AG_GROW(sp->slots, sp->cap, (size_t)slot + 1, 64, AG_VECSTORE_MAX_SLOTS) != 0)
        return AG_ENOMEM;
    memset(sp->slots + old, 0, (size_t)(sp->cap - old) * sizeof(svec_t));
    return 0;
}

/* Memory: out->block is owned by the caller until ag_sparse_put takes it
 * (ag_sparse_prep_release otherwise). */
int ag_sparse_prepare(const uint32_t *indices, const float *values, uint32_t n,
                      ag_sparse_prep_t *out)
{
    *out = (ag_sparse_prep_t){0};
    if (n > 0 && (!indices || !values))
        return AG_EINVAL;
    if (n == 0)
        return 0;
    pair_t *pairs = malloc((size_t)n * sizeof(pair_t));
    uint32_t *block = malloc((size_t)n * (sizeof(uint32_t) + sizeof(float)));
    if (!pairs || !block) {
        free(pairs);
        free(block);
        return AG_ENOMEM;
    }
    for (uint32_t j = 0; j < n; j++)
        pairs[j] = (pair_t){indices[j], values[j]};
    qsort(pairs, n, sizeof(pair_t), cmp_pair);
    float *val = (float *)(block + n);
    for (uint32_t j = 0; j < n; j++) {
        block[j] = pairs[j].idx;
        val[j] = pairs[j].val;
    }
    free(pairs);
    out->block = block;
    out->n = n;
    return 0;
}

void ag_sparse_prep_release(ag_sparse_prep_t *p)
{
    free(p->block);
    *p = (ag_sparse_prep_t){0};
}

/* Gives back the promises of the first `upto` indices of p; lists left empty and unpromised are
 * dropped. */
static void unpromise(ag_sparse_t *sp, const ag_sparse_prep_t *p, uint32_t upto)
{
    for (uint32_t j = 0; j < upto; j++) {
        plist_t *l = table_find(sp, p->block[j]);
        ag_assert(l && l->reserved > 0);
        l->reserved--;
    }
    drop_empty_lists(sp, p->block, upto);
}

int ag_sparse_reserve(ag_sparse_t *sp, uint32_t slots, const ag_sparse_prep_t *p)
{
    if (slots > AG_VECSTORE_MAX_SLOTS)
        return AG_EINVAL;
    if (slots > 0 && grow_slots(sp, slots - 1) != 0)
        return AG_ENOMEM;
    /* Every list the vector goes into exists and has room for one more posting than is already
     * promised. What a failure leaves behind (spare capacity) changes no result. */
    for (uint32_t j = 0; j < p->n; j++) {
        plist_t *l = table_get_or_create(sp, p->block[j]);
        if (!l || plist_reserve_one(l) != 0) {
            if (l && l->n == 0 && l->reserved == 0)
                table_delete(sp, l);
            unpromise(sp, p, j);
            return AG_ENOMEM;
        }
    }
    return 0;
}

void ag_sparse_unreserve(ag_sparse_t *sp, const ag_sparse_prep_t *p)
{
    unpromise(sp, p, p->n);
}

void ag_sparse_put(ag_sparse_t *sp, uint32_t slot, ag_sparse_prep_t *p)
{
    ag_assert(slot < sp->cap);
    uint32_t *block = p->block;
    uint32_t n = p->n;
    *p = (ag_sparse_prep_t){0};
    /* Nothing below allocates: the lists exist and have room (ag_sparse_reserve). */
    svec_t *v = &sp->slots[slot];
    uint32_t *old_block = v->idx;
    uint32_t old_n = v->n;
    if (v->present)
        unlink_postings(sp, v, slot, false);
    else
        sp->count++;
    for (uint32_t j = 0; j < n; j++) {
        plist_t *l = table_find(sp, block[j]);
        ag_assert(l && l->reserved > 0);
        l->reserved--;
        plist_insert(l, slot, ((const float *)(block + n))[j]);
    }
    *v = (svec_t){.idx = block, .val = n ? (float *)(block + n) : NULL, .n = n, .present = true};
    drop_empty_lists(sp, old_block, old_n);
    free(old_block);
}

int ag_sparse_set(ag_sparse_t *sp, uint32_t slot, const uint32_t *indices, const float *values,
                  uint32_t n)
{
    if (slot >= AG_VECSTORE_MAX_SLOTS || (n > 0 && (!indices || !values)))
        return AG_EINVAL;
    ag_sparse_prep_t p;
    int rc = ag_sparse_prepare(indices, values, n, &p);
    if (rc == 0 && (rc = ag_sparse_reserve(sp, slot + 1, &p)) == 0) {
        ag_sparse_put(sp, slot, &p);
        return 0;
    }
    ag_sparse_prep_release(&p);
    return rc;
}

void ag_sparse_clear(ag_sparse_t *sp, uint32_t slot)
{
    if (slot >= sp->cap || !sp->slots[slot].present)
        return;
    svec_t *v = &sp->slots[slot];
    unlink_postings(sp, v, slot, true);
    free(v->idx);
    *v = (svec_t){0};
    sp->count--;
}

bool ag_sparse_get(const ag_sparse_t *sp, uint32_t slot, const uint32_t **indices,
                   const float **values, uint32_t *n)
{
    if (slot >= sp->cap || !sp->slots[slot].present)
        return false;
    const svec_t *v = &sp->slots[slot];
    *indices = v->idx;
    *values = v->val;
    *n = v->n;
    return true;
}

uint32_t ag_sparse_count(const ag_sparse_t *sp)
{
    return sp->count;
}

size_t ag_sparse_dim_count(const ag_sparse_t *sp)
{
    return sp->tcount;
}

float ag_sparse_dot(const uint32_t *ai, const float *av, uint32_t an, const uint32_t *bi,
                    const float *bv, uint32_t bn)
{
    float acc = 0.0f;
    uint32_t i = 0, j = 0;
    while (i < an && j < bn) {
        if (ai[i] < bi[j]) {
            i++;
        } else if (ai[i] > bi[j]) {
            j++;
        } else {
            acc += av[i] * bv[j];
            i++;
            j++;
        }
    }
    return acc;
}

/* ---- search: a k-way merge of the query's posting lists ------------------------------------- */

/* One query term's walk through its posting list. rank = the term's position in index order,
 * so that one slot's products are summed in ascending index order, as ag_sparse_dot does. */
typedef struct cursor {
    const posting_t *p;
    const posting_t *end;
    float qv;
    uint32_t rank;
} cursor_t;

static inline bool cursor_before(const cursor_t *a, const cursor_t *b)
{
    return a->p->slot < b->p->slot || (a->p->slot == b->p->slot && a->rank < b->rank);
}

static void cursor_sift_down(cursor_t *h, size_t n, size_t i)
{
    cursor_t x = h[i];
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n)
            break;
        if (c + 1 < n && cursor_before(&h[c + 1], &h[c]))
            c++;
        if (!cursor_before(&h[c], &x))
            break;
        h[i] = h[c];
        i = c;
    }
    h[i] = x;
}

/* Keeps the candidate-list position moving forward with the (ascending) merged slots. */
static bool in_candidates(const ag_index_filter_t *flt, size_t *pos, uint32_t slot)
{
    while (*pos < flt->n_candidates && flt->candidates[*pos] < slot)
        (*pos)++;
    return *pos < flt->n_candidates && flt->candidates[*pos] == slot;
}

int ag_sparse_search(const ag_sparse_t *sp, const uint32_t *qi, const float *qv, uint32_t qn,
                     size_t k, const ag_index_filter_t *flt, const ag_search_params_t *params,
                     ag_hit_t *out, size_t *n_out)
{
    if (!sp || !n_out || (qn > 0 && (!qi || !qv)) || (k > 0 && !out))
        return AG_EINVAL;
    *n_out = 0;
    bool has_thr = params && params->has_threshold;
    if (has_thr && isnan(params->score_threshold))
        return AG_EINVAL;
    if (k == 0 || qn == 0)
        return 0;

    pair_t *q = malloc((size_t)qn * sizeof(pair_t));
    cursor_t *heap = malloc((size_t)qn * sizeof(cursor_t));
    if (!q || !heap) {
        free(q);
        free(heap);
        return AG_ENOMEM;
    }
    for (uint32_t j = 0; j < qn; j++)
        q[j] = (pair_t){qi[j], qv[j]};
    qsort(q, qn, sizeof(pair_t), cmp_pair);

    size_t nh = 0;
    for (uint32_t j = 0; j < qn; j++) {
        float v = q[j].val;
        while (j + 1 < qn && q[j + 1].idx == q[j].idx) /* a repeated index adds up */
            v += q[++j].val;
        const plist_t *l = table_find(sp, q[j].idx);
        if (!l || l->n == 0)
            continue;
        heap[nh] = (cursor_t){l->p, l->p + l->n, v, (uint32_t)nh};
        nh++;
    }
    for (size_t i = nh / 2; i-- > 0;)
        cursor_sift_down(heap, nh, i);

    const ag_index_filter_t *cand = flt && flt->candidates ? flt : NULL;
    ag_accept_fn accept = flt ? flt->accept : NULL;
    size_t cpos = 0;
    ag_topk_t t;
    ag_topk_init(&t, out, k);
    double deadline = params ? params->deadline : 0;
    size_t steps = 0;
    int rc = 0;
    while (nh > 0) {
        if (deadline > 0 && (++steps & 4095) == 0 && ag_now_mono() >= deadline) {
            rc = AG_ETIMEOUT;
            break;
        }
        uint32_t slot = heap[0].p->slot;
        float acc = 0.0f;
        while (nh > 0 && heap[0].p->slot == slot) {
            acc += heap[0].qv * heap[0].p->value;
            if (++heap[0].p == heap[0].end)
                heap[0] = heap[--nh];
            cursor_sift_down(heap, nh, 0);
        }
        if (acc == 0.0f || isnan(acc))
            continue;
        if (has_thr && !(acc >= params->score_threshold))
            continue;
        if (cand && !in_candidates(cand, &cpos, slot))
            continue;
        if (accept && !accept(flt->ud, slot))
            continue;
        ag_topk_push(&t, slot, acc);
    }
    *n_out = rc ? 0 : ag_topk_finish(&t);
    free(q);
    free(heap);
    return rc;
}
