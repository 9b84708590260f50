#include "ag_base.h"

#include "ag_clock.h"
#include "ag_index.h"
#include "ag_pool.h"

#include <math.h>
#include <stdatomic.h>

/* ---- top-k collector ------------------------------------------------------------------------ */

/* a ranks below b: lower score, or equal score and larger slot. */
static inline bool worse(const ag_hit_t *a, const ag_hit_t *b)
{
    return a->score < b->score || (a->score == b->score && a->slot > b->slot);
}

static void sift_down(ag_hit_t *h, size_t n, size_t i)
{
    ag_hit_t x = h[i];
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n)
            break;
        if (c + 1 < n && worse(&h[c + 1], &h[c]))
            c++;
        if (!worse(&h[c], &x))
            break;
        h[i] = h[c];
        i = c;
    }
    h[i] = x;
}

void ag_topk_init(ag_topk_t *t, ag_hit_t *buf, size_t k)
{
    t->h = buf;
    t->k = k;
    t->n = 0;
}

void ag_topk_push(ag_topk_t *t, uint32_t slot, float score)
{
    if (isnan(score))
        return;
    ag_hit_t x = {slot, score};
    if (t->n < t->k) {
        size_t i = t->n++;
        while (i > 0) {
            size_t p = (i - 1) / 2;
            if (!worse(&x, &t->h[p]))
                break;
            t->h[i] = t->h[p];
            i = p;
        }
        t->h[i] = x;
    } else if (t->k > 0 && worse(&t->h[0], &x)) {
        t->h[0] = x;
        sift_down(t->h, t->n, 0);
    }
}

size_t ag_topk_finish(ag_topk_t *t)
{
    /* Heap sort: the root is the worst held hit, so moving it to the end each round leaves the
     * buffer ordered best first. */
    for (size_t end = t->n; end > 1; end--) {
        ag_hit_t tmp = t->h[0];
        t->h[0] = t->h[end - 1];
        t->h[end - 1] = tmp;
        sift_down(t->h, end - 1, 0);
    }
    return t->n;
}

/* ---- the scan ------------------------------------------------------------------------------- */

/* Everything a scan task reads; shared read-only between the tasks of one search. */
typedef struct scan {
    ag_vecstore_view_t view;
    ag_distance_t dist;
    const float *query;
    ag_accept_fn accept;
    const void *accept_ud;
    const uint32_t *candidates; /* NULL = scan every slot */
    bool has_threshold;
    float threshold_key; /* in key space: keep key >= threshold_key */
    size_t total;        /* units to scan: candidates, or presence words (64 slots each) */
    size_t k;
    size_t n_tasks;
    ag_hit_t *bufs;      /* n_tasks * k, task i's heap at bufs + i * k */
    size_t *counts;      /* n_tasks */
    double deadline;     /* 0 = none */
    atomic_bool expired; /* set by whichever task sees the deadline pass */
} scan_t;

/* Ranking key, higher = better: the score itself for Cosine/Dot, its negation for distances. */
static inline float key_of(ag_distance_t dist, const float *q, const float *row, uint32_t dim)
{
    switch (dist) {
    case AG_DIST_EUCLID:
        return -sqrtf(ag_l2sq_f32(q, row, dim));
    case AG_DIST_MANHATTAN:
        return -ag_l1_f32(q, row, dim);
    case AG_DIST_COSINE:
    case AG_DIST_DOT:
        break;
    }
    return ag_dot_f32(q, row, dim);
}

static inline void consider(const scan_t *s, uint32_t slot, ag_topk_t *t)
{
    if (s->accept && !s->accept(s->accept_ud, slot))
        return;
    float key = key_of(s->dist, s->query, ag_vecstore_view_row(&s->view, slot), s->view.dim);
    if (s->has_threshold && !(key >= s->threshold_key))
        return;
    ag_topk_push(t, slot, key);
}

/* Rows are requested this many slots (or candidates) ahead of the one being scored: on a scan
 * bigger than the cache the hardware prefetcher alone leaves the kernel waiting on memory (about
 * 20-30 % of a 100k x 128 scan in bench_exact), and a candidate list's rows are random accesses it
 * cannot predict at all. */
#define PREFETCH_AHEAD 8u

static inline void prefetch_row(const ag_vecstore_view_t *v, uint32_t slot)
{
    if (!v->rows) /* external rows (on_disk): a prefetch would be a whole fetch */
        return;
    const char *p = (const char *)ag_vecstore_view_row(v, slot);
    for (size_t off = 0; off < v->stride * sizeof(float); off += 64)
        __builtin_prefetch(p + off);
}

/* Present slots of presence words [wlo, whi), so empty stretches cost one load per 64 slots.
 * Capacity is a multiple of 64, so every word is whole. */
static void scan_slots(const scan_t *s, size_t wlo, size_t whi, ag_topk_t *t)
{
    for (size_t w = wlo; w < whi; w++) {
        uint64_t bits = s->view.present[w];
        while (bits) {
            unsigned b = (unsigned)__builtin_ctzll(bits);
            bits &= bits - 1;
            uint32_t slot = (uint32_t)(w * 64 + b);
            if (slot + PREFETCH_AHEAD < s->view.capacity)
                prefetch_row(&s->view, slot + PREFETCH_AHEAD);
            consider(s, slot, t);
        }
    }
}

static void scan_candidates(const scan_t *s, size_t lo, size_t hi, ag_topk_t *t)
{
    for (size_t i = lo; i < hi; i++) {
        if (i + PREFETCH_AHEAD < hi && s->candidates[i + PREFETCH_AHEAD] < s->view.capacity)
            prefetch_row(&s->view, s->candidates[i + PREFETCH_AHEAD]);
        uint32_t slot = s->candidates[i];
        if (i > 0 && s->candidates[i - 1] == slot)
            continue;
        if (ag_vecstore_view_has(&s->view, slot))
            consider(s, slot, t);
    }
}

/* Units (candidates, or presence words of 64 slots) scanned between two looks at the clock. */
#define DEADLINE_CANDIDATES 4096u
#define DEADLINE_WORDS 64u

static void scan_range(scan_t *s, size_t lo, size_t hi, ag_topk_t *t)
{
    size_t step = s->deadline > 0 ? (s->candidates ? DEADLINE_CANDIDATES : DEADLINE_WORDS) : hi;
    for (size_t a = lo; a < hi; a += step) {
        size_t b = hi - a > step ? a + step : hi;
        if (s->deadline > 0 && (atomic_load_explicit(&s->expired, memory_order_relaxed) ||
                                ag_now_mono() >= s->deadline)) {
            atomic_store(&s->expired, true);
            return;
        }
        if (s->candidates)
            scan_candidates(s, a, b, t);
        else
            scan_slots(s, a, b, t);
    }
}

static void scan_task(void *ud, size_t i)
{
    scan_t *s = ud;
    size_t lo = s->total * i / s->n_tasks;
    size_t hi = s->total * (i + 1) / s->n_tasks;
    ag_topk_t t;
    ag_topk_init(&t, s->bufs + i * s->k, s->k);
    scan_range(s, lo, hi, &t);
    s->counts[i] = t.n;
}

/* Tasks per pool thread: a little over-decomposition evens out uneven filters. */
#define TASKS_PER_THREAD 4u
#define MAX_TASKS 64u

/* Splits the scan across the pool into per-task heaps, then merges them into out. Returns false
 * (having done nothing) if the per-task buffers cannot be allocated. */
static bool scan_parallel(scan_t *s, unsigned threads, ag_topk_t *t)
{
    s->n_tasks = AG_MIN((size_t)threads * TASKS_PER_THREAD, (size_t)MAX_TASKS);
    if (s->k > SIZE_MAX / sizeof(ag_hit_t) / s->n_tasks)
        return false;
    s->bufs = malloc(s->n_tasks * s->k * sizeof(ag_hit_t));
    s->counts = calloc(s->n_tasks, sizeof(size_t));
    if (!s->bufs || !s->counts) {
        free(s->bufs);
        free(s->counts);
        return false;
    }
    ag_pool_run(s->n_tasks, scan_task, s);
    for (size_t i = 0; i < s->n_tasks; i++) {
        const ag_hit_t *h = s->bufs + i * s->k;
        for (size_t j = 0; j < s->counts[i]; j++)
            ag_topk_push(t, h[j].slot, h[j].score);
    }
    free(s->bufs);
    free(s->counts);
    return true;
}

int ag_index_score_candidates(const ag_vecstore_t *vs, ag_distance_t dist, const float *query,
                              size_t k, const ag_index_filter_t *flt,
                              const ag_search_params_t *params, ag_hit_t *out, size_t *n_out)
{
    if (!vs || !query || !n_out || (k > 0 && !out))
        return AG_EINVAL;
    *n_out = 0;
    bool higher = ag_distance_higher_is_better(dist);
    scan_t s = {.dist = dist, .query = query};
    ag_vecstore_view(vs, &s.view);
    size_t slots = ag_vecstore_count(vs); /* what the scan will score: decides k and splitting */
    s.total = s.view.capacity / 64u;
    if (flt) {
        s.accept = flt->accept;
        s.accept_ud = flt->ud;
        if (flt->candidates) {
            s.candidates = flt->candidates;
            s.total = slots = flt->n_candidates;
        }
    }
    if (params)
        s.deadline = params->deadline;
    atomic_init(&s.expired, false);
    if (params && params->has_threshold) {
        if (isnan(params->score_threshold))
            return AG_EINVAL;
        s.has_threshold = true;
        s.threshold_key = higher ? params->score_threshold : -params->score_threshold;
    }
    /* No scan yields more hits than it has slots, so a huge k costs no memory. */
    s.k = AG_MIN(k, slots);
    if (s.k == 0)
        return 0;

    ag_topk_t t;
    ag_topk_init(&t, out, s.k);
    /* External rows (on_disk) are read through the calling thread's storage transaction, so
     * their scan stays on this thread. */
    unsigned threads = slots > AG_EXACT_PARALLEL_MIN && !s.view.fetch ? ag_pool_size() : 1;
    if (threads <= 1 || !scan_parallel(&s, threads, &t))
        scan_range(&s, 0, s.total, &t);
    if (atomic_load(&s.expired))
        return AG_ETIMEOUT;
    size_t n = ag_topk_finish(&t);
    if (!higher)
        for (size_t i = 0; i < n; i++)
            out[i].score = -out[i].score;
    *n_out = n;
    return 0;
}

/* ---- the exact index ------------------------------------------------------------------------ */

static int exact_add(ag_index_t *ix, uint32_t slot)
{
    return ag_vecstore_has(ix->vs, slot) ? 0 : AG_ENOTFOUND;
}

static int exact_remove(ag_index_t *ix, uint32_t slot)
{
    AG_UNUSED(ix);
    AG_UNUSED(slot);
    return 0;
}

static int exact_search(const ag_index_t *ix, const float *query, size_t k,
                        const ag_index_filter_t *flt, const ag_search_params_t *params,
                        ag_hit_t *out, size_t *n_out)
{
    return ag_index_score_candidates(ix->vs, ix->dist, query, k, flt, params, out, n_out);
}

static void exact_free(ag_index_t *ix)
{
    free(ix);
}

static const ag_index_vtable_t exact_vtable = {
    .name = "exact",
    .add = exact_add,
    .remove = exact_remove,
    .search = exact_search,
    .free = exact_free,
};

int ag_index_exact_new(ag_vecstore_t *vs, ag_distance_t dist, ag_index_t **out)
{
    if (!vs || !out || (unsigned)dist > AG_DIST_MANHATTAN)
        return AG_EINVAL;
    ag_index_t *ix = calloc(1, sizeof(*ix));
    if (!ix)
        return AG_ENOMEM;
    ix->vt = &exact_vtable;
    ix->vs = vs;
    ix->dist = dist;
    *out = ix;
    return 0;
}
