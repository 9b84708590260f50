#include "ag_base.h"

#include "ag_hnsw.h"
#include "ag_quant.h"

#include "ag_cmp.h"
#include "ag_file.h"
#include "ag_grow.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ag_clock.h"
#include "ag_log.h"

/* ---- the graph ------------------------------------------------------------------------------ */

enum { NODE_EMPTY = 0, NODE_LIVE = 1, NODE_TOMB = 2 };

#define NO_NODE UINT32_MAX
#define MAX_LEVEL 30
/* Tombstones trigger a repair when they pass this fraction of the graph (and REPAIR_MIN). */
#define REPAIR_FRACTION 0.1
#define REPAIR_MIN 64u
#define SAMPLE_N 256u
/* A re-selection never leaves a live node with fewer level-0 in-links than this, and a new node
 * that no neighbour kept is put into its closest neighbour's list (docs/ARCHITECTURE.md "Graph
 * reachability": 1 removes the nodes no walk can reach, 2 also most of the self-search misses
 * of nodes whose only in-link is from a node walks seldom expand). */
#define MIN_IN_LINKS 2u
/* The reachability probe (probe(), docs/ARCHITECTURE.md "Graph reachability"): one self-search
 * at ef PROBE_EF every PROBE_EVERY inserts, once the graph has PROBE_MIN live nodes. */
#define PROBE_EVERY 4u
#define PROBE_EF 16u
#define PROBE_MIN 64u

typedef struct cand {
    float d; /* internal distance: lower is closer */
    uint32_t id;
} cand_t;

typedef struct hnsw {
    ag_index_t base;
    uint32_t m, m0, ef_construct, ef_search, full_scan;
    double ml;
    uint64_t rng;
    uint32_t cap; /* nodes addressable */
    /* Level 0, one block per node (docs/ARCHITECTURE.md "HNSW memory layout"): a header (the
     * link count and the 2*m links) and, when quantized, a payload at pay_off (the next 64-byte
     * boundary) holding the node's int8 code, so that scoring a node and expanding it read one
     * block; bstride is then a multiple of 64. Without quantization there is no payload
     * (PAY_NONE): the blocks are the bare headers and the walk reads the vecstore rows. */
    uint8_t *blk;
    size_t bstride, pay_off;
    int pay;        /* PAY_*: what the payloads hold now */
    uint32_t **up;  /* cap: levels 1..level, (m + 1) words each, or NULL */
    uint8_t *level; /* cap */
    uint8_t *state; /* cap: NODE_* */
    uint32_t entry; /* NO_NODE when the graph is empty */
    int max_level;
    uint32_t n_live, n_tomb;
    bool built;
    bool deferred;   /* ag_hnsw_defer: add() records nothing until finish */
    bool background; /* add() queues; ag_hnsw_link_pending() links */
    uint32_t *pend;  /* pend_cap: position in queue + 1, or 0 */
    uint32_t pend_cap;
    uint32_t *queue; /* q_n slots waiting to be linked */
    uint32_t q_n, q_cap;
    /* Linking at once (not background): what hnsw_reserve set aside so that the inserts it was
     * told of allocate nothing — levels drawn ahead with their upper-level link blocks (pre[pre_at
     * .. pre_n), taken in order by fresh nodes), and insert's candidate buffer. */
    struct pre_node {
        uint32_t *up; /* owned until taken; NULL for level 0 */
        uint8_t level;
    } * pre;
    uint32_t pre_at, pre_n, pre_cap;
    cand_t *ins_tmp; /* owned; m0 + 2 + ef_construct entries, or NULL until first needed */
    /* Level-0 in-links per node (saturating at UINT16_MAX) for the in-link guard (MIN_IN_LINKS).
     * Owned, cap entries; NULL until insert first needs it, and dropped (counted again from the
     * lists at the next insert) whenever the graph is grown, replaced or repaired. Advisory: a
     * stale count only weakens the guard, nothing else reads it. */
    uint16_t *indeg;
    /* The reachability probe (probe()): on unless ag_hnsw_params_t.no_probe; its own generator
     * (the level draws keep theirs, so a seed builds the same levels with or without it) and the
     * inserts counted for its cadence. Writer side; not saved. */
    bool probe;
    uint64_t probe_rng;
    uint64_t probe_n;
    /* Scalar int8 codes of the vectors (ag_hnsw_set_quant), or NULL; the walk ranks with them when
     * trained, and the candidates are rescored from the float rows. */
    ag_quant_t *quant;
    /* Unbuilt (below full_scan_threshold) with codes: every present vecstore slot below cap has
     * its code in its block, so a search scans the codes (quant_scan). False after a failed
     * allocation: searches then scan the float rows. */
    bool scan_codes;
    /* Linking over the int8 codes (linking_view: on_disk vectors with trained codes): the code
     * kernels and scale, dim * lo^2 for Cosine/Dot, and the slot insert() is linking (its code is
     * written, its state not yet live, NO_NODE otherwise). Writer side. */
    ag_quant_params_t lq;
    float lq_lo2;
    uint32_t lslot;
    /* While scan_codes with int8 Cosine codes of at least SKETCH_MIN_DIM coordinates: each code's
     * sign sketch (ag_u8_top_bits), sk_row bytes a slot for sk_cap slots (64-byte aligned, owned;
     * rows of absent slots are stale and never read), written by fill_payload together with the
     * code, so every present slot's sketch is current whenever its code is. NULL when not kept.
     * docs/ARCHITECTURE.md "Small collections". */
    uint8_t *sk;
    uint32_t sk_cap;
    size_t sk_row;
    double sk_factor;   /* the sketch keeps ceil(sk_factor * want) candidates; 0 = no sketch */
    bool sk_force;      /* ag_hnsw_set_sketch: used whatever the row count (and under Dot) */
    uint64_t mutations; /* add/remove calls that changed the graph (writer side) */
    _Atomic uint64_t saved_mutations; /* mutations as of the last save or load */
} hnsw_t;

enum { PAY_NONE = 0, PAY_CODE = 1 };

static inline uint8_t *blk_of(const hnsw_t *h, uint32_t id)
{
    return h->blk + (size_t)id * h->bstride;
}

static inline uint32_t *links_of(const hnsw_t *h, uint32_t id, int lc)
{
    if (lc == 0)
        return (uint32_t *)(void *)blk_of(h, id);
    return h->up[id] + (size_t)(lc - 1) * (h->m + 1);
}

static inline uint32_t cap_of(const hnsw_t *h, int lc)
{
    return lc == 0 ? h->m0 : h->m;
}

/*
 * Kernels over whole padded rows: both operands are 64-byte aligned and `n` (the vecstore stride)
 * is a multiple of 16 with zero tails, so there is no remainder loop, and four blocks of 16 lanes
 * are summed into separate accumulators: the sums form independent dependency chains instead of
 * one (the shared kernels in ag_distance.c take any dim and keep a single chain). The summation
 * order differs from the shared kernels only in rounding, so the few hits finally returned are
 * re-scored with those (scores then equal the exact index's bit for bit).
 */
#if defined(__GNUC__) && !defined(__clang__) && !defined(__OPTIMIZE__)
/* Unoptimized (Debug, sanitizer) builds keep the accumulator arrays in memory, which makes these
 * kernels most of a unit test's run time; they stay instrumented, just optimized. */
#define KERNEL_OPT __attribute__((optimize("O2")))
#else
#define KERNEL_OPT
#endif
#if defined(__x86_64__) && defined(__ELF__) && defined(__GNUC__) && !defined(AG_NO_CLONES)
#define HNSW_KERNEL static KERNEL_OPT __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define HNSW_KERNEL static KERNEL_OPT
#endif

#define LANES 16

/* Four blocks of 16 lanes per step into four accumulators (rows are multiples of 16 floats), so
 * the additions form four independent chains; leftover blocks of 16 go to the first. */
#define PAD_KERNEL(name, TERM)                                                                     \
    HNSW_KERNEL float name(const float *restrict a, const float *restrict b, size_t n)             \
    {                                                                                              \
        a = __builtin_assume_aligned(a, 64);                                                       \
        b = __builtin_assume_aligned(b, 64);                                                       \
        float s0[LANES] = {0}, s1[LANES] = {0}, s2[LANES] = {0}, s3[LANES] = {0};                  \
        size_t i = 0;                                                                              \
        for (; i + 4 * LANES <= n; i += 4 * LANES) {                                               \
            _Pragma("omp simd") for (size_t j = 0; j < LANES; j++)                                 \
            {                                                                                      \
                s0[j] += TERM(a[i + j], b[i + j]);                                                 \
                s1[j] += TERM(a[i + LANES + j], b[i + LANES + j]);                                 \
                s2[j] += TERM(a[i + 2 * LANES + j], b[i + 2 * LANES + j]);                         \
                s3[j] += TERM(a[i + 3 * LANES + j], b[i + 3 * LANES + j]);                         \
            }                                                                                      \
        }                                                                                          \
        for (; i < n; i += LANES) {                                                                \
            _Pragma("omp simd") for (size_t j = 0; j < LANES; j++) s0[j] +=                        \
                TERM(a[i + j], b[i + j]);                                                          \
        }                                                                                          \
        float acc = 0.0f;                                                                          \
        _Pragma("omp simd reduction(+ : acc)") for (size_t j = 0; j < LANES; j++) acc +=           \
            (s0[j] + s1[j]) + (s2[j] + s3[j]);                                                     \
        return acc;                                                                                \
    }

#define TERM_L2(x, y) (((x) - (y)) * ((x) - (y)))
#define TERM_L1(x, y) fabsf((x) - (y))
#define TERM_DOT(x, y) ((x) * (y))
PAD_KERNEL(pad_l2sq, TERM_L2)
PAD_KERNEL(pad_l1, TERM_L1)
PAD_KERNEL(pad_dot, TERM_DOT)

/* Internal distance over padded rows, lower = closer: squared L2, L1, or the negated dot. */
static inline float idist(ag_distance_t d, const float *a, const float *b, size_t stride)
{
    switch (d) {
    case AG_DIST_EUCLID:
        return pad_l2sq(a, b, stride);
    case AG_DIST_MANHATTAN:
        return pad_l1(a, b, stride);
    case AG_DIST_COSINE:
    case AG_DIST_DOT:
        break;
    }
    return -pad_dot(a, b, stride);
}

/* The same with the shared kernels over dim floats (the exact index's arithmetic). */
static inline float idist_exact(ag_distance_t d, const float *a, const float *b, uint32_t dim)
{
    switch (d) {
    case AG_DIST_EUCLID:
        return ag_l2sq_f32(a, b, dim);
    case AG_DIST_MANHATTAN:
        return ag_l1_f32(a, b, dim);
    case AG_DIST_COSINE:
    case AG_DIST_DOT:
        break;
    }
    return -ag_dot_f32(a, b, dim);
}

/* The ranking key the exact index uses (higher = better), from an internal distance. */
static inline float key_of(ag_distance_t d, float dist)
{
    switch (d) {
    case AG_DIST_EUCLID:
        return -sqrtf(dist);
    case AG_DIST_MANHATTAN:
    case AG_DIST_COSINE:
    case AG_DIST_DOT:
        break;
    }
    return -dist;
}

/* A prefetch the optimizer keeps: gcc 12 at -O3 deleted whole loops of __builtin_prefetch in
 * search_layer (a loop with no other effect), which halved the walk's speed. An asm statement
 * marked volatile is never removed. */
#if defined(__x86_64__) && defined(__GNUC__)
#define PREFETCH(p) __asm__ volatile("prefetcht0 %0" : : "m"(*(const char *)(p)))
#else
#define PREFETCH(p) __builtin_prefetch(p)
#endif

static inline void prefetch_row(const ag_vecstore_view_t *v, uint32_t id)
{
    if (!v->rows) /* external rows (on_disk): a prefetch would be a whole fetch */
        return;
    /* The whole row: prefetching only its first lines measured 10-15 % slower at 128-d. */
    const char *p = (const char *)ag_vecstore_view_row(v, id);
    size_t bytes = v->stride * sizeof(float);
    for (size_t off = 0; off < bytes; off += 64)
        PREFETCH(p + off);
}

/* ---- per-thread scratch --------------------------------------------------------------------- */

#define DEC_RING                                                                                   \
    8 /* decoded rows valid at once: linking uses at most two (insert copies its own) */

typedef struct scratch {
    /* visited: tag[id] == epoch. One byte per node (hnswlib uses two), so the array a walk tests
     * at random stays small enough for the L2 cache (100 KB per 100k nodes); the bytes are
     * cleared once every 255 searches, when the epoch wraps. */
    uint8_t *tag;
    uint32_t tag_cap;
    uint8_t epoch;
    cand_t *cq; /* candidates, min-heap */
    size_t cq_n, cq_cap;
    cand_t *rs; /* results, max-heap (worst at the root) */
    size_t rs_n, rs_cap;
    uint32_t *ids; /* neighbours gathered for one expansion; accepted slots for an exact scan */
    size_t ids_cap;
    float *qbuf; /* the query copied into a padded, aligned row */
    size_t qbuf_cap;
    uint8_t *qcode; /* the query's int8 code (quantized search), 64-byte aligned */
    size_t qcode_cap;
    uint8_t *qsk; /* the query's sign sketch (sketch_pick), 64-byte aligned */
    size_t qsk_cap;
    uint32_t *cnt; /* bits_scan: each scanned row's differing-bit count (beside ids) */
    size_t cnt_cap;
    uint32_t *hist; /* bits_scan: rows per count, dim + 1 entries */
    size_t hist_cap;
    uint32_t *kdot; /* batched int8 walk: each gathered neighbour's dot product with the query */
    uint32_t *ksum; /* ... and its code's byte sum (kd_cap entries each) */
    size_t kd_cap;
    float *dec[DEC_RING]; /* decoded code rows for linking over on_disk vectors (linking_view) */
    size_t dec_cap;
    unsigned dec_next;
} scratch_t;

static pthread_key_t scratch_key;
static pthread_once_t scratch_once = PTHREAD_ONCE_INIT;
static bool scratch_key_ok;

static void scratch_free(void *p)
{
    scratch_t *s = p;
    if (!s)
        return;
    free(s->tag);
    free(s->cq);
    free(s->rs);
    free(s->ids);
    free(s->qbuf);
    free(s->qcode);
    free(s->qsk);
    free(s->cnt);
    free(s->hist);
    free(s->kdot);
    free(s->ksum);
    for (int i = 0; i < DEC_RING; i++)
        free(s->dec[i]);
    free(s);
}

static void scratch_key_init(void)
{
    scratch_key_ok = pthread_key_create(&scratch_key, scratch_free) == 0;
}

void ag_hnsw_thread_release(void)
{
    pthread_once(&scratch_once, scratch_key_init);
    if (!scratch_key_ok)
        return;
    scratch_free(pthread_getspecific(scratch_key));
    pthread_setspecific(scratch_key, NULL);
}

/* The calling thread's scratch with a visited set covering cap nodes, or NULL (out of memory). */
static scratch_t *scratch_get(uint32_t cap)
{
    pthread_once(&scratch_once, scratch_key_init);
    if (!scratch_key_ok)
        return NULL;
    scratch_t *s = pthread_getspecific(scratch_key);
    if (!s) {
        s = calloc(1, sizeof(*s));
        if (!s)
            return NULL;
        if (pthread_setspecific(scratch_key, s) != 0) {
            free(s);
            return NULL;
        }
    }
    if (s->tag_cap < cap) {
        uint8_t *t = calloc(cap, 1);
        if (!t)
            return NULL;
        free(s->tag);
        s->tag = t;
        s->tag_cap = cap;
        s->epoch = 0;
    }
    return s;
}

static void visited_reset(scratch_t *s)
{
    if (++s->epoch == 0) {
        memset(s->tag, 0, s->tag_cap);
        s->epoch = 1;
    }
}

static inline bool visit(scratch_t *s, uint32_t id)
{
    if (s->tag[id] == s->epoch)
        return false;
    s->tag[id] = s->epoch;
    return true;
}

static bool grow_cands(cand_t **a, size_t *cap, size_t need)
{
    return AG_GROW(*a, *cap, need, 256, SIZE_MAX / sizeof(cand_t)) == 0;
}

/* Heaps ordered by (d, id): the min-heap pops the closest, the max-heap keeps the worst on top. */
static inline bool closer(const cand_t *a, const cand_t *b)
{
    return a->d < b->d || (a->d == b->d && a->id < b->id);
}

static void minheap_push(cand_t *h, size_t *n, cand_t x)
{
    size_t i = (*n)++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!closer(&x, &h[p]))
            break;
        h[i] = h[p];
        i = p;
    }
    h[i] = x;
}

static cand_t minheap_pop(cand_t *h, size_t *n)
{
    cand_t top = h[0], x = h[--(*n)];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= *n)
            break;
        if (c + 1 < *n && closer(&h[c + 1], &h[c]))
            c++;
        if (!closer(&h[c], &x))
            break;
        h[i] = h[c];
        i = c;
    }
    if (*n > 0)
        h[i] = x;
    return top;
}

static void maxheap_sift_down(cand_t *h, size_t n, size_t i)
{
    cand_t x = h[i];
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n)
            break;
        if (c + 1 < n && closer(&h[c], &h[c + 1]))
            c++;
        if (!closer(&x, &h[c]))
            break;
        h[i] = h[c];
        i = c;
    }
    h[i] = x;
}

static void maxheap_push(cand_t *h, size_t *n, cand_t x)
{
    size_t i = (*n)++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!closer(&h[p], &x))
            break;
        h[i] = h[p];
        i = p;
    }
    h[i] = x;
}

/* Sorts a max-heap in place, closest first (no comparator calls through a pointer). */
static void heap_sort(cand_t *h, size_t n)
{
    while (n > 1) {
        cand_t t = h[0];
        h[0] = h[n - 1];
        h[n - 1] = t;
        maxheap_sift_down(h, --n, 0);
    }
}

static int cmp_cand(const void *pa, const void *pb)
{
    const cand_t *a = pa, *b = pb;
    return closer(a, b) ? -1 : closer(b, a) ? 1 : 0;
}

/* ---- layer search --------------------------------------------------------------------------- */

typedef struct sctx {
    const hnsw_t *h;
    ag_vecstore_view_t v;
    const float *q;
    ag_accept_fn accept; /* NULL = every live node */
    const void *ud;
    bool acorn;
    const ag_quant_t *qz; /* ranking with the int8 codes (x->qq is the query's), or NULL */
    ag_quant_query_t qq;
    int mode;             /* PAY_CODE: scored from the blocks' codes; PAY_NONE: vecstore rows */
    ag_quant_params_t qp; /* PAY_CODE: the kernel and scale */
    float step2;          /* PAY_CODE: qp.step squared */
    bool batch; /* PAY_CODE int8 Cosine/Dot: a node's neighbours scored in one kernel call */
    scratch_t *sc;
    double deadline; /* ag_now_mono() time to give up a search (AG_ETIMEOUT); 0 = none */
} sctx_t;

static inline bool admit(const sctx_t *x, uint32_t id)
{
    return x->h->state[id] == NODE_LIVE && (!x->accept || x->accept(x->ud, id));
}

/* Chooses where the walk reads a node's vector: the codes in the blocks for a quantized walk,
 * else the vecstore rows. */
static void set_mode(sctx_t *x)
{
    x->mode = PAY_NONE;
    if (!x->qz)
        return;
    if (x->h->pay != PAY_CODE) {
        x->qz = NULL; /* codes unavailable (out of memory): the float walk */
        return;
    }
    x->mode = PAY_CODE;
    ag_quant_params(x->qz, &x->qp);
    x->step2 = x->qp.step * x->qp.step;
    x->batch = !x->qp.bits && (x->qp.dist == AG_DIST_COSINE || x->qp.dist == AG_DIST_DOT);
}

/* The int8 Cosine/Dot internal distance from the kernel's dot product k and the row's byte sum
 * (ag_quant.h), one formula for the single and the batched kernel so both rank alike. */
static inline float dot_code_dist(const sctx_t *x, uint32_t k, uint32_t sum)
{
    return -(x->qq.corr + x->qp.lostep * (float)sum + x->step2 * (float)k);
}

static inline float qdist(const sctx_t *x, uint32_t id)
{
    const hnsw_t *h = x->h;
    if (x->mode == PAY_CODE) {
        const uint8_t *code = blk_of(h, id) + h->pay_off;
        if (x->qp.bits) /* binary: a scaled Hamming count (ag_quant.h) */
            return x->qp.bscale * (float)x->qp.kern(x->qq.code, code, x->qp.row) + x->qp.boff;
        switch (x->qp.dist) {
        case AG_DIST_EUCLID:
            return x->step2 * (float)x->qp.kern(x->qq.code, code, x->qp.row);
        case AG_DIST_MANHATTAN:
            return x->qp.step * (float)x->qp.kern(x->qq.code, code, x->qp.row);
        case AG_DIST_COSINE:
        case AG_DIST_DOT:
            break;
        }
        uint32_t sum;
        uint32_t k = x->qp.dotsum(x->qq.code, code, x->qp.row, &sum);
        return dot_code_dist(x, k, sum);
    }
    return idist(h->base.dist, x->q, ag_vecstore_view_row(&x->v, id), x->v.stride);
}

/* What scoring id reads: its code, or its vecstore row. The header (the links) is fetched if and
 * when the node is expanded (search_layer prefetches the next candidate's). */
static inline void xprefetch(const sctx_t *x, uint32_t id)
{
    const hnsw_t *h = x->h;
    if (x->mode == PAY_NONE) {
        prefetch_row(&x->v, id);
        return;
    }
    const char *b = (const char *)blk_of(h, id);
    for (size_t off = h->pay_off; off < h->bstride; off += 64)
        PREFETCH(b + off);
}

/* Makes kdot/ksum hold at least need entries (their old contents are dropped). The arrays are
 * owned by the scratch (freed by scratch_free). False when out of memory (the old ones kept). */
static bool kd_room(scratch_t *s, size_t need)
{
    if (s->kd_cap >= need)
        return true;
    size_t cap = AG_MAX(need, (size_t)256);
    uint32_t *d = malloc(cap * sizeof(uint32_t)), *m = malloc(cap * sizeof(uint32_t));
    if (!d || !m) {
        free(d);
        free(m);
        return false;
    }
    free(s->kdot);
    free(s->ksum);
    s->kdot = d;
    s->ksum = m;
    s->kd_cap = cap;
    return true;
}

/* Batched walk (x->batch): the n nodes of ids fetched and scored by one kernel call into the
 * scratch's kdot/ksum (dot_code_dist turns them into distances). False when out of memory. */
static bool score_batch(const sctx_t *x, const uint32_t *ids, size_t n)
{
    const hnsw_t *h = x->h;
    if (!kd_room(x->sc, n))
        return false;
    /* Every row's fetch issued first. (Issuing them a few rows ahead of the kernel instead measured
     * the same: the walk waits on memory either way.) */
    for (size_t i = 0; i < n; i++)
        xprefetch(x, ids[i]);
    ag_u8_dotsum_gather(x->qq.code, h->blk + h->pay_off, h->bstride, ids, n, x->qp.row, x->sc->kdot,
                        x->sc->ksum);
    return true;
}

/* The distance of ids[i], the i-th of k neighbours being scored: from score_batch's results in a
 * batched walk, else computed here (the next row's fetch issued first). */
static inline float nb_dist(const sctx_t *x, const uint32_t *ids, size_t i, size_t k)
{
    if (x->batch)
        return dot_code_dist(x, x->sc->kdot[i], x->sc->ksum[i]);
    if (i + 1 < k)
        xprefetch(x, ids[i + 1]);
    return qdist(x, ids[i]);
}

/* Greedy walk on one upper level towards the query. */
static void greedy(const sctx_t *x, int lc, uint32_t *ep, float *epd)
{
    bool changed = true;
    while (changed) {
        changed = false;
        const uint32_t *l = links_of(x->h, *ep, lc);
        uint32_t n = l[0];
        for (uint32_t i = 1; i <= n; i++)
            xprefetch(x, l[i]);
        for (uint32_t i = 1; i <= n; i++) {
            float d = qdist(x, l[i]);
            if (d < *epd) {
                *epd = d;
                *ep = l[i];
                changed = true;
            }
        }
    }
}

static bool ids_room(scratch_t *s, size_t need)
{
    return AG_GROW(s->ids, s->ids_cap, need, 1024, SIZE_MAX / sizeof(uint32_t)) == 0;
}

/* Unvisited neighbours of c to score, into sc->ids; returns how many (or SIZE_MAX: no memory).
 * Normal mode: every unvisited neighbour. ACORN mode: accepted neighbours, plus the accepted
 * neighbours of rejected ones (two hops), so the walk stays on accepted nodes without losing the
 * paths that lead through rejected ones. */
static size_t gather(const sctx_t *x, uint32_t c, int lc)
{
    scratch_t *sc = x->sc;
    const hnsw_t *h = x->h;
    const uint32_t *l = links_of(h, c, lc);
    uint32_t n = l[0];
    if (!ids_room(sc, x->acorn ? (size_t)n * (h->m0 + 1) : n))
        return SIZE_MAX;
    size_t k = 0;
    if (!x->acorn) {
        for (uint32_t i = 1; i <= n; i++)
            if (visit(sc, l[i]))
                sc->ids[k++] = l[i];
        return k;
    }
    for (uint32_t i = 1; i <= n; i++) {
        uint32_t a = l[i];
        if (!visit(sc, a))
            continue;
        if (admit(x, a)) {
            sc->ids[k++] = a;
            continue;
        }
        const uint32_t *l2 = links_of(h, a, lc);
        uint32_t n2 = l2[0];
        for (uint32_t j = 1; j <= n2; j++) {
            uint32_t b = l2[j];
            if (sc->tag[b] != sc->epoch && admit(x, b)) {
                sc->tag[b] = sc->epoch;
                sc->ids[k++] = b;
            }
        }
    }
    return k;
}

/* The top bit of a pool entry's id: the node was expanded (slots stay below 2^31). */
#define EXPANDED 0x80000000u

/* Where x goes in the ascending pool p[0 .. n): the first entry it is closer than, by (d, id). */
static inline size_t pool_pos(const cand_t *p, size_t n, cand_t x)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        cand_t m = {p[mid].d, p[mid].id & ~EXPANDED};
        if (closer(&x, &m))
            hi = mid;
        else
            lo = mid + 1;
    }
    return lo;
}

/*
 * search_layer when every node of the graph is admitted (no filter, no tombstone): one array, the
 * best ef nodes found so far sorted closest first, each flagged once expanded, is both the
 * candidate queue and the result set (docs/ARCHITECTURE.md "Quantized walk"). The next node
 * expanded is the closest unexpanded one and the walk ends when every kept node is expanded:
 * the nodes the two heaps would expand (a candidate the heaps would stop at is one that fell out
 * of the best ef here), with one binary search and a short move per kept neighbour instead of a
 * push onto each heap and a sift of the result heap. Leaves sc->rs as search_layer does (sorted
 * closest last, which is a valid max-heap). AG_ENOMEM, AG_ETIMEOUT.
 */
static int search_pool(sctx_t *x, uint32_t ep, float epd, size_t ef, int lc)
{
    scratch_t *sc = x->sc;
    visited_reset(sc);
    sc->cq_n = sc->rs_n = 0;
    if (!grow_cands(&sc->rs, &sc->rs_cap, ef + 1))
        return AG_ENOMEM;
    cand_t *p = sc->rs;
    size_t n = 1, cur = 0, steps = 0; /* cur: the first unexpanded entry */
    p[0] = (cand_t){epd, ep};
    visit(sc, ep);
    while (cur < n) {
        if (x->deadline > 0 && (++steps & 255) == 0 && ag_now_mono() >= x->deadline)
            return AG_ETIMEOUT;
        uint32_t c = p[cur].id;
        p[cur].id |= EXPANDED;
        /* The likely next expansion's link list, fetched while this one is scored. */
        size_t nx = cur + 1;
        while (nx < n && (p[nx].id & EXPANDED))
            nx++;
        if (nx < n) {
            const char *nl = (const char *)links_of(x->h, p[nx].id, lc);
            PREFETCH(nl);
            PREFETCH(nl + 64);
            PREFETCH(nl + 128);
        }
        size_t k = gather(x, c, lc);
        if (k == SIZE_MAX)
            return AG_ENOMEM;
        if (x->batch) {
            if (!score_batch(x, sc->ids, k))
                return AG_ENOMEM;
        } else {
            for (size_t i = 0; i < k; i++)
                xprefetch(x, sc->ids[i]);
        }
        size_t lowest = SIZE_MAX;
        for (size_t i = 0; i < k; i++) {
            uint32_t id = sc->ids[i];
            float d = nb_dist(x, sc->ids, i, k);
            if (n >= ef && !(d < p[n - 1].d))
                continue;
            cand_t e = {d, id};
            size_t pos = pool_pos(p, n, e);
            size_t keep = n < ef ? n : ef - 1; /* full: the worst entry drops out */
            memmove(p + pos + 1, p + pos, (keep - pos) * sizeof(cand_t));
            p[pos] = e;
            n = keep + 1;
            lowest = AG_MIN(lowest, pos);
        }
        if (lowest <= cur) {
            cur = lowest; /* everything before it is expanded */
        } else {
            while (cur < n && (p[cur].id & EXPANDED))
                cur++;
        }
    }
    /* Closest last: a valid max-heap for finish_hits and insert. */
    for (size_t i = 0; i < n / 2; i++) {
        cand_t t = p[i];
        p[i] = p[n - 1 - i];
        p[n - 1 - i] = t;
    }
    for (size_t i = 0; i < n; i++)
        p[i].id &= ~EXPANDED;
    sc->rs_n = n;
    return 0;
}

/* Beam search of width ef on level lc from ep. Leaves the (up to ef) best admitted nodes in
 * sc->rs as a max-heap. Traversal passes through nodes that are not admitted (tombstones,
 * rejected by the filter) but never returns them. AG_ENOMEM. */
static int search_layer(sctx_t *x, uint32_t ep, float epd, size_t ef, int lc)
{
    if (!x->accept && !x->acorn && x->h->n_tomb == 0)
        return search_pool(x, ep, epd, ef, lc);
    scratch_t *sc = x->sc;
    visited_reset(sc);
    sc->cq_n = sc->rs_n = 0;
    if (!grow_cands(&sc->rs, &sc->rs_cap, ef + 1) || !grow_cands(&sc->cq, &sc->cq_cap, 64))
        return AG_ENOMEM;
    visit(sc, ep);
    minheap_push(sc->cq, &sc->cq_n, (cand_t){epd, ep});
    if (admit(x, ep))
        maxheap_push(sc->rs, &sc->rs_n, (cand_t){epd, ep});
    size_t steps = 0;
    while (sc->cq_n > 0) {
        if (x->deadline > 0 && (++steps & 255) == 0 && ag_now_mono() >= x->deadline)
            return AG_ETIMEOUT;
        cand_t c = minheap_pop(sc->cq, &sc->cq_n);
        if (sc->rs_n >= ef && c.d > sc->rs[0].d)
            break;
        /* The likely next expansion's link list, fetched while this one is scored. */
        if (sc->cq_n > 0) {
            const char *nl = (const char *)links_of(x->h, sc->cq[0].id, lc);
            PREFETCH(nl);
            PREFETCH(nl + 64);
            PREFETCH(nl + 128);
        }
        size_t k = gather(x, c.id, lc);
        if (k == SIZE_MAX)
            return AG_ENOMEM;
        if (!x->batch)
            for (size_t i = 0; i < k; i++)
                xprefetch(x, sc->ids[i]);
        if (!grow_cands(&sc->cq, &sc->cq_cap, sc->cq_n + k))
            return AG_ENOMEM;
        if (x->batch && !score_batch(x, sc->ids, k))
            return AG_ENOMEM;
        for (size_t i = 0; i < k; i++) {
            uint32_t id = sc->ids[i];
            float d = nb_dist(x, sc->ids, i, k);
            if (sc->rs_n < ef || d < sc->rs[0].d) {
                minheap_push(sc->cq, &sc->cq_n, (cand_t){d, id});
                if (x->acorn || admit(x, id)) {
                    if (sc->rs_n < ef) {
                        maxheap_push(sc->rs, &sc->rs_n, (cand_t){d, id});
                    } else { /* full: the new one (closer than the worst) takes the root's place */
                        sc->rs[0] = (cand_t){d, id};
                        maxheap_sift_down(sc->rs, sc->rs_n, 0);
                    }
                }
            }
        }
    }
    return 0;
}

/* ---- construction --------------------------------------------------------------------------- */

static uint64_t next_rand(hnsw_t *h)
{
    uint64_t z = (h->rng += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static int random_level(hnsw_t *h)
{
    double u = ((double)(next_rand(h) >> 11) + 0.5) / (double)(UINT64_C(1) << 53);
    double l = -log(u) * h->ml;
    return l >= MAX_LEVEL ? MAX_LEVEL : (int)l;
}

#define HUGE_PAGE ((size_t)2 << 20)

/* 64-byte aligned malloc for the level-0 blocks (free() releases it): from 2 MB on, 2 MB aligned
 * and marked for transparent huge pages, as a walk reads the lists at random and 4 KB pages make
 * most of those reads miss the TLB. The kernel may ignore the hint (then nothing changes). NULL: no
 * memory. */
static void *big_alloc(size_t bytes)
{
    if (bytes < HUGE_PAGE)
        return aligned_alloc(64, (AG_MAX(bytes, (size_t)1) + 63) & ~(size_t)63);
    size_t whole = (bytes + HUGE_PAGE - 1) & ~(HUGE_PAGE - 1);
    void *p = aligned_alloc(HUGE_PAGE, whole);
    if (p)
        (void)madvise(p, whole, MADV_HUGEPAGE);
    return p;
}

static int grow_nodes(hnsw_t *h, uint32_t need)
{
    if (need <= h->cap)
        return 0;
    uint32_t nc = h->cap ? h->cap : 64;
    while (nc < need)
        nc = nc > UINT32_MAX / 2 ? need : nc * 2;
    uint8_t *blk = big_alloc((size_t)nc * h->bstride);
    if (!blk)
        return AG_ENOMEM;
    free(h->indeg); /* counted again for the new capacity at the next insert */
    h->indeg = NULL;
    if (h->cap)
        memcpy(blk, h->blk, (size_t)h->cap * h->bstride);
    free(h->blk);
    h->blk = blk;
    memset(blk + (size_t)h->cap * h->bstride, 0, (size_t)(nc - h->cap) * h->bstride);
    uint32_t **up = realloc(h->up, (size_t)nc * sizeof(*up));
    if (!up)
        return AG_ENOMEM;
    h->up = up;
    memset(up + h->cap, 0, (size_t)(nc - h->cap) * sizeof(*up));
    uint8_t *lv = realloc(h->level, nc);
    if (!lv)
        return AG_ENOMEM;
    h->level = lv;
    memset(lv + h->cap, 0, nc - h->cap);
    uint8_t *st = realloc(h->state, nc);
    if (!st)
        return AG_ENOMEM;
    h->state = st;
    memset(st + h->cap, 0, nc - h->cap);
    h->cap = nc;
    return 0;
}

/* ---- level-0 payloads ----------------------------------------------------------------------- */

/* Bytes of the block header: count and 2*m links. A payload starts at the next 64-byte
 * boundary; without one the blocks are packed (no padding). */
static size_t hdr_bytes(const hnsw_t *h)
{
    return (size_t)(h->m0 + 1) * sizeof(uint32_t);
}

static size_t pad64(size_t n)
{
    return (n + 63u) & ~(size_t)63u;
}

static size_t pay_bytes(const hnsw_t *h, int kind)
{
    if (kind == PAY_CODE)
        return (ag_quant_row_bytes(h->quant) + 63u) & ~(size_t)63u;
    return 0;
}

/* The payload kind searches want now. (A copy of the float row as the payload of an unquantized
 * graph was measured too — docs/BENCHMARKS.md — and was not faster: a 100-d row is 7 lines
 * either way, and rescoring then reads cold vecstore rows.) */
static int pay_wanted(const hnsw_t *h)
{
    return h->quant && ag_quant_trained(h->quant) ? PAY_CODE : PAY_NONE;
}

/* Writes slot's payload from its row in the vecstore (ignored past the vecstore's capacity). */
static void fill_payload(hnsw_t *h, const ag_vecstore_view_t *v, uint32_t slot)
{
    if (h->pay != PAY_CODE || slot >= v->capacity)
        return;
    /* the row's correction term is not kept: the walk's kernel recomputes it (ag_quant.h) */
    uint8_t *code = blk_of(h, slot) + h->pay_off;
    (void)ag_quant_encode_row(h->quant, ag_vecstore_view_row(v, slot), code);
    if (h->sk && slot < h->sk_cap)
        ag_u8_top_bits(code, ag_quant_row_bytes(h->quant), h->sk + (size_t)slot * h->sk_row,
                       h->sk_row);
}

/* ---- the sign sketch (docs/ARCHITECTURE.md "Small collections") ------------------------------ */

/* Sketches pay only where the sign pattern tracks the ranking and there are enough coordinates
 * for the Hamming count to separate rows (docs/BENCHMARKS.md "MiniLM-384 scans: the sign
 * sketch"). */
#define SKETCH_MIN_DIM 256u
#define SKETCH_FACTOR 4.0
/* ... and never fewer than this many candidates: at Qdrant's default oversampling (1) and limit
 * 10, 4 x 10 kept candidates lost 3 points of recall against the plain int8 scan on MiniLM
 * (0.921 vs 0.951); 64 keep it (0.949) at twice the plain scan's speed. */
#define SKETCH_MIN_KEEP 64.0
/* ... and where they discard most rows: at least this many visited rows per kept candidate. */
#define SKETCH_MIN_RATIO 4u

static void sk_drop(hnsw_t *h)
{
    free(h->sk);
    h->sk = NULL;
    h->sk_cap = 0;
}

/* Whether the scan should keep sketches now (the layout of the codes aside). */
static bool sk_wanted(const hnsw_t *h)
{
    if (!h->quant || ag_quant_kind(h->quant) != AG_QUANT_INT8 || !(h->sk_factor > 0))
        return false;
    if (h->sk_force)
        return h->base.dist == AG_DIST_COSINE || h->base.dist == AG_DIST_DOT;
    return h->base.dist == AG_DIST_COSINE && ag_vecstore_dim(h->base.vs) >= SKETCH_MIN_DIM;
}

/* Makes the sketch array address need slots (doubling; the old rows kept). Out of memory: the
 * sketches are dropped (the scan then scores every code: slower, same answer). */
static void sk_grow(hnsw_t *h, uint32_t need)
{
    if (!h->sk_row)
        h->sk_row = AG_QUANT_BROW(ag_vecstore_dim(h->base.vs));
    if (need <= h->sk_cap)
        return;
    uint32_t cap = AG_MAX(need, AG_MIN(2u * h->sk_cap, (uint32_t)AG_VECSTORE_MAX_SLOTS));
    cap = AG_MAX(cap, 256u);
    uint8_t *n = aligned_alloc(64, (size_t)cap * h->sk_row);
    if (!n) {
        sk_drop(h);
        return;
    }
    if (h->sk)
        memcpy(n, h->sk, (size_t)h->sk_cap * h->sk_row);
    free(h->sk);
    h->sk = n;
    h->sk_cap = cap;
}

/* Makes every node's payload hold what searches rank with (after quantization was turned on or
 * off, or retrained): moves the blocks to the new stride when the kind changed and re-encodes the
 * payloads from the vecstore. Writer side. Out of memory: the payloads are marked unused
 * (PAY_NONE; walks then read the vecstore rows, slower but correct). */
static void sync_payload(hnsw_t *h)
{
    int want = pay_wanted(h);
    size_t hdr = hdr_bytes(h), off = pad64(hdr);
    size_t need = want == PAY_NONE ? hdr : off + pay_bytes(h, want);
    if (need != h->bstride) {
        if (h->cap) {
            uint8_t *nb = big_alloc((size_t)h->cap * need);
            if (!nb) {
                h->pay = PAY_NONE;
                return;
            }
            memset(nb, 0, (size_t)h->cap * need);
            for (uint32_t i = 0; i < h->cap; i++)
                memcpy(nb + (size_t)i * need, blk_of(h, i), hdr);
            free(h->blk);
            h->blk = nb;
        }
        h->bstride = need;
        h->pay_off = off;
    }
    h->pay = want;
    h->scan_codes = false;
    sk_drop(h); /* laid out again below if the scan keeps them */
    if (want == PAY_NONE)
        return;
    ag_vecstore_view_t v;
    ag_vecstore_view(h->base.vs, &v);
    for (uint32_t i = 0; i < h->cap; i++)
        if (h->state[i] != NODE_EMPTY)
            fill_payload(h, &v, i);
    if (h->built || h->deferred || ag_vecstore_count(h->base.vs) > h->full_scan)
        return;
    /* No graph yet: the blocks hold the codes of the stored rows for quant_scan. */
    if (grow_nodes(h, v.capacity) != 0)
        return;
    if (sk_wanted(h))
        sk_grow(h, v.capacity);
    for (uint32_t i = 0; i < v.capacity; i++)
        if (ag_vecstore_view_has(&v, i))
            fill_payload(h, &v, i);
    h->scan_codes = true;
}

/* Unbuilt: slot's code into its block (growing the blocks) for quant_scan. Out of memory: the
 * scan falls back to the float rows until the codes are laid out again. */
static void scan_note(hnsw_t *h, uint32_t slot)
{
    if (!h->scan_codes || h->pay != PAY_CODE || slot == UINT32_MAX)
        return;
    if (grow_nodes(h, slot + 1) != 0) {
        h->scan_codes = false;
        return;
    }
    ag_vecstore_view_t v;
    ag_vecstore_view(h->base.vs, &v);
    if (h->sk) /* the sketch array covers the store, as the blocks do (quant_scan checks both) */
        sk_grow(h, AG_MAX(v.capacity, slot + 1));
    fill_payload(h, &v, slot);
}

static const float *decoded_row(void *ud, uint32_t slot);

/* Linking over the codes: whether slot's block holds its code (every node placed in the graph,
 * and the one being inserted). */
static inline bool has_code(const hnsw_t *h, uint32_t slot)
{
    return h->pay == PAY_CODE && slot < h->cap &&
           (h->state[slot] != NODE_EMPTY || slot == h->lslot);
}

/* The distance of two nodes from their int8 codes, with the arithmetic of a code walk (qdist):
 * the distance of the rows the codes decode to, without decoding them (linking_view). */
static float code_dist(const hnsw_t *h, uint32_t a, uint32_t b)
{
    const ag_quant_params_t *p = &h->lq;
    const uint8_t *ca = blk_of(h, a) + h->pay_off, *cb = blk_of(h, b) + h->pay_off;
    switch (p->dist) {
    case AG_DIST_EUCLID:
        return p->step * p->step * (float)p->kern(ca, cb, p->row);
    case AG_DIST_MANHATTAN:
        return p->step * (float)p->kern(ca, cb, p->row);
    case AG_DIST_COSINE:
    case AG_DIST_DOT:
        break;
    }
    uint32_t sa, sb;
    uint32_t k = p->dotsum(ca, cb, p->row, &sb);
    (void)p->dotsum(cb, ca, p->row, &sa);
    return -(h->lq_lo2 + p->lostep * (float)sa + p->lostep * (float)sb +
             p->step * p->step * (float)k);
}

static inline float rdist(const hnsw_t *h, const ag_vecstore_view_t *v, uint32_t a, uint32_t b)
{
    if (__builtin_expect(v->fetch == decoded_row, 0) && has_code(h, a) && has_code(h, b))
        return code_dist(h, a, b);
    return idist(h->base.dist, ag_vecstore_view_row(v, a), ag_vecstore_view_row(v, b), v->stride);
}

/* ---- the in-link guard (MIN_IN_LINKS) -------------------------------------------------------- */

static inline void indeg_inc(hnsw_t *h, uint32_t id)
{
    if (h->indeg && h->indeg[id] < UINT16_MAX)
        h->indeg[id]++;
}

/* A saturated count stays saturated (its node has plenty either way). */
static inline void indeg_dec(hnsw_t *h, uint32_t id)
{
    if (h->indeg && h->indeg[id] > 0 && h->indeg[id] < UINT16_MAX)
        h->indeg[id]--;
}

/* The guard is off for Dot: under an unnormalised inner product the nodes many lists point at are
 * the large-norm ones that answer most queries, and the nodes nobody links to are the small-norm
 * ones that answer few; taking the former's links for the latter cost recall (0.998 -> 0.866 at
 * ef 64 in test_hnsw_quant_external_linking). docs/ARCHITECTURE.md "Graph reachability". */
static inline bool indeg_wanted(const hnsw_t *h)
{
    return h->base.dist != AG_DIST_DOT;
}

/* Makes h->indeg hold every node's level-0 in-link count, counting the lists when it was
 * dropped. Out of memory: stays NULL (the guard is off until the next insert retries). */
static void indeg_ready(hnsw_t *h)
{
    if (h->indeg || h->cap == 0 || !indeg_wanted(h))
        return;
    if (!(h->indeg = calloc(h->cap, sizeof(uint16_t))))
        return;
    for (uint32_t u = 0; u < h->cap; u++) {
        if (h->state[u] == NODE_EMPTY)
            continue;
        const uint32_t *l = links_of(h, u, 0);
        for (uint32_t i = 1; i <= l[0]; i++)
            indeg_inc(h, l[i]);
    }
}

/* Puts the link to t into the full level-0 list l (its count first) in place of the link whose
 * target has the most in-links, provided that target keeps more than MIN_IN_LINKS after it.
 * False when no link can give way (the list is left as it was). Needs h->indeg. */
static bool indeg_rescue(hnsw_t *h, uint32_t *l, uint32_t t)
{
    uint32_t victim = 0, most = MIN_IN_LINKS;
    for (uint32_t i = 1; i <= l[0]; i++) {
        if (l[i] == t)
            return true;
        if (h->indeg[l[i]] > most) {
            most = h->indeg[l[i]];
            victim = i;
        }
    }
    if (victim == 0)
        return false;
    indeg_dec(h, l[victim]);
    l[victim] = t;
    indeg_inc(h, t);
    return true;
}

/* The selection heuristic (HNSW paper, algorithm 4): walking candidates from the closest, keep
 * one only if it is closer to the base than to every neighbour kept so far, so the links point
 * in different directions. c is sorted closest first; the kept ones are moved to its front.
 * Returns how many were kept (<= max). */
static size_t select_neighbours(const hnsw_t *h, const ag_vecstore_view_t *v, cand_t *c, size_t n,
                                size_t max)
{
    size_t kept = 0;
    for (size_t i = 0; i < n && kept < max; i++) {
        bool good = true;
        for (size_t j = 0; j < kept; j++) {
            if (rdist(h, v, c[i].id, c[j].id) < c[i].d) {
                good = false;
                break;
            }
        }
        if (good)
            c[kept++] = c[i];
    }
    return kept;
}

/* Adds a link src -> dst on level lc; a full list is re-selected by the heuristic among its live
 * links and dst (tombstoned links are dropped first), except that the longest of the old links
 * stays (in place of the farthest one kept when the list is full): the heuristic would drop it
 * as soon as a kept neighbour is closer to its target, and on clustered data those long links
 * are the ones walks need (docs/ARCHITECTURE.md "Graph reachability"). On level 0 a live node
 * the re-selection would leave with fewer than MIN_IN_LINKS in-links keeps its link too: in a
 * free place, else in place of the link whose target has the most in-links (indeg_rescue). */
static int connect(hnsw_t *h, const ag_vecstore_view_t *v, uint32_t src, uint32_t dst, float d,
                   int lc, cand_t *tmp)
{
    uint32_t *l = links_of(h, src, lc);
    uint32_t cap = cap_of(h, lc);
    for (uint32_t i = 1; i <= l[0]; i++)
        if (l[i] == dst)
            return 0;
    if (l[0] < cap) {
        l[++l[0]] = dst;
        if (lc == 0)
            indeg_inc(h, dst);
        return 0;
    }
    uint32_t old[2 * 128]; /* the list before: cap <= m0 = 2 * m <= 256 */
    uint32_t n_old = l[0];
    memcpy(old, l + 1, n_old * sizeof(uint32_t));
    size_t n = 0;
    tmp[n++] = (cand_t){d, dst};
    for (uint32_t i = 1; i <= l[0]; i++)
        if (h->state[l[i]] == NODE_LIVE)
            tmp[n++] = (cand_t){rdist(h, v, src, l[i]), l[i]};
    qsort(tmp, n, sizeof(cand_t), cmp_cand);
    cand_t far = tmp[n - 1].id != dst ? tmp[n - 1] : tmp[n > 1 ? n - 2 : 0];
    size_t kept = select_neighbours(h, v, tmp, n, cap);
    if (far.id != dst) {
        bool in = false;
        for (size_t i = 0; i < kept && !in; i++)
            in = tmp[i].id == far.id;
        if (!in)
            tmp[kept < cap ? kept++ : kept - 1] = far;
    }
    l[0] = (uint32_t)kept;
    for (size_t i = 0; i < kept; i++)
        l[i + 1] = tmp[i].id;
    if (lc != 0 || !h->indeg)
        return 0;
    for (size_t i = 0; i < kept; i++)
        if (tmp[i].id == dst)
            indeg_inc(h, dst);
    for (uint32_t j = 0; j < n_old; j++) {
        uint32_t t = old[j];
        bool in = false;
        for (size_t i = 0; i < kept && !in; i++)
            in = tmp[i].id == t;
        if (in)
            continue;
        indeg_dec(h, t);
        if (h->state[t] != NODE_LIVE || h->indeg[t] >= MIN_IN_LINKS)
            continue;
        if (l[0] < cap) {
            l[++l[0]] = t;
            indeg_inc(h, t);
        } else {
            (void)indeg_rescue(h, l, t);
        }
    }
    return 0;
}

/* A new entry point other than `skip`: the live node with the highest level, else the
 * tombstone with the highest level, else none. */
static void pick_entry(hnsw_t *h, uint32_t skip)
{
    uint32_t best[2] = {NO_NODE, NO_NODE}; /* [0] live, [1] tombstone */
    for (uint32_t i = 0; i < h->cap; i++) {
        if (i == skip || h->state[i] == NODE_EMPTY)
            continue;
        int w = h->state[i] == NODE_LIVE ? 0 : 1;
        if (best[w] == NO_NODE || h->level[i] > h->level[best[w]])
            best[w] = i;
    }
    h->entry = best[0] != NO_NODE ? best[0] : best[1];
    h->max_level = h->entry == NO_NODE ? 0 : h->level[h->entry];
}

static const float *pad_query(scratch_t *sc, const float *query, const ag_vecstore_view_t *v);
static int encode_query(sctx_t *x, const float *query);

/* A row decoded from the int8 code in its node's block into this thread's ring (linking_view).
 * A node without a code yet (the one being inserted, or codes not laid out) is read from the
 * owner's rows. */
static const float *decoded_row(void *ud, uint32_t slot)
{
    const hnsw_t *h = ud;
    scratch_t *s = scratch_get(0);
    if (!s || !s->dec[0] || h->pay != PAY_CODE || slot >= h->cap || h->state[slot] == NODE_EMPTY)
        return ag_vecstore_get(h->base.vs, slot); /* the owner's fetch */
    float *out = s->dec[s->dec_next++ % DEC_RING];
    uint32_t dim = ag_vecstore_dim(h->base.vs);
    const uint8_t *code = blk_of(h, slot) + h->pay_off;
    float lo, step;
    ag_quant_range(h->quant, &lo, &step);
    for (uint32_t i = 0; i < dim; i++)
        out[i] = lo + (float)code[i] * step;
    memset(out + dim, 0, (s->dec_cap - dim) * sizeof(float));
    return out;
}

/* The rows linking reads. For external rows (on_disk vectors, read from storage at about a
 * microsecond each) with trained quantization, the graph is linked over the in-memory codes
 * instead: insert's walk ranks with them and rdist scores two coded nodes from their codes
 * (code_dist, with h->lq set here); a row is decoded (decoded_row) only where a node has no code.
 * A build then costs about what an in-RAM one does, at the price of int8 precision in the
 * graph's choices; searches still rescore from the stored floats (docs/ARCHITECTURE.md
 * "On-disk vectors"). */
static void linking_view(hnsw_t *h, ag_vecstore_view_t *v)
{
    ag_vecstore_view(h->base.vs, v);
    if (!v->fetch || !h->quant || !ag_quant_trained(h->quant) ||
        ag_quant_kind(h->quant) != AG_QUANT_INT8) /* bits do not decode to a usable row */
        return;
    scratch_t *s = scratch_get(0);
    if (!s)
        return;
    if (s->dec_cap < v->stride) {
        for (int i = 0; i < DEC_RING; i++) {
            free(s->dec[i]);
            s->dec[i] = NULL;
        }
        s->dec_cap = 0;
        for (int i = 0; i < DEC_RING; i++)
            if (!(s->dec[i] = aligned_alloc(64, v->stride * sizeof(float))))
                return; /* decoded_row sees a missing ring and reads the owner's rows */
        s->dec_cap = v->stride;
    }
    v->fetch = decoded_row;
    v->fetch_ud = (void *)h;
    ag_quant_params(h->quant, &h->lq);
    float lo, step;
    ag_quant_range(h->quant, &lo, &step);
    h->lq_lo2 = (float)v->dim * lo * lo;
}

/* ---- the reachability probe ------------------------------------------------------------------ */

static uint64_t probe_rand(hnsw_t *h)
{
    uint64_t z = (h->probe_rng += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Every PROBE_EVERY-th insert: a live node drawn at random is searched for with its own vector
 * (ef PROBE_EF, from the entry point, as a query would be); when the walk does not come back with
 * it, the closest node the walk found links to it on level 0 — in a free place, else in place of
 * the link whose target has the most in-links (indeg_rescue). The walk for any query near that
 * node ends where this one did, so it now expands a node that leads there, and through that
 * node's own links into the part of its cluster that walks did not enter (docs/ARCHITECTURE.md
 * "Graph reachability"). Needs the in-link counts (so never under Dot, where a point need not be
 * its own best answer). Owns nothing: it uses this thread's scratch, which insert's walk already
 * sized (only an ef_construct below PROBE_EF grows the beam); on any failure it changes nothing.
 * Writer side, like insert (docs/ARCHITECTURE.md "Graph reachability", rule 3). */
static void probe(hnsw_t *h, const ag_vecstore_view_t *v)
{
    if (!h->probe || ++h->probe_n % PROBE_EVERY != 0 || !h->indeg || h->n_live < PROBE_MIN ||
        h->entry == NO_NODE)
        return;
    uint32_t u = NO_NODE;
    for (int t = 0; t < 4 && u == NO_NODE; t++) {
        uint32_t s = (uint32_t)(probe_rand(h) % h->cap);
        if (h->state[s] == NODE_LIVE)
            u = s;
    }
    scratch_t *sc = u == NO_NODE ? NULL : scratch_get(h->cap);
    if (!sc)
        return;
    sctx_t x = {.h = h, .v = *v, .q = ag_vecstore_view_row(v, u), .sc = sc};
    if (v->fetch && !(x.q = pad_query(sc, x.q, v))) /* an external row lives a few fetches */
        return;
    if (v->fetch == decoded_row)
        x.qz = h->quant; /* ranked as insert's walk ranks (linking_view) */
    set_mode(&x);
    if (x.mode == PAY_CODE && encode_query(&x, x.q) != 0)
        return;
    uint32_t ep = h->entry;
    float epd = qdist(&x, ep);
    for (int lc = h->max_level; lc > 0; lc--)
        greedy(&x, lc, &ep, &epd);
    if (search_layer(&x, ep, epd, PROBE_EF, 0) != 0 || sc->rs_n == 0)
        return;
    cand_t best = sc->rs[0];
    for (size_t i = 0; i < sc->rs_n; i++) {
        if (sc->rs[i].id == u)
            return; /* found */
        if (closer(&sc->rs[i], &best))
            best = sc->rs[i];
    }
    /* A duplicate of u came back instead: as good an answer, nothing to repair. */
    if (rdist(h, v, best.id, u) <= rdist(h, v, u, u))
        return;
    uint32_t *l = links_of(h, best.id, 0);
    if (l[0] < h->m0) {
        l[++l[0]] = u;
        indeg_inc(h, u);
    } else {
        (void)indeg_rescue(h, l, u);
    }
}

static int insert(hnsw_t *h, uint32_t slot)
{
    ag_vecstore_view_t v;
    linking_view(h, &v);
    int rc = grow_nodes(h, AG_MAX(slot + 1, v.capacity));
    if (rc)
        return rc;
    if (h->state[slot] == NODE_LIVE)
        return 0;
    int level;
    if (h->state[slot] == NODE_TOMB) {
        /* Other nodes may still link to this slot on any of its levels, so it keeps its level
         * (a walk must never follow a level-lc link into a node without level lc); only its own
         * links are rebuilt. */
        h->n_tomb--;
        h->state[slot] = NODE_EMPTY;
        if (h->entry == slot)
            pick_entry(h, slot);
        level = h->level[slot];
        for (int lc = 1; lc <= level; lc++)
            links_of(h, slot, lc)[0] = 0;
    } else {
        uint32_t *up = NULL;
        if (h->pre_at < h->pre_n) { /* drawn ahead by hnsw_reserve */
            level = h->pre[h->pre_at].level;
            up = h->pre[h->pre_at++].up;
        } else {
            level = random_level(h);
            if (level > 0 && !(up = calloc((size_t)level * (h->m + 1), sizeof(uint32_t))))
                return AG_ENOMEM;
        }
        free(h->up[slot]);
        h->up[slot] = up;
        h->level[slot] = (uint8_t)level;
    }
    indeg_ready(h);
    uint32_t *l0 = links_of(h, slot, 0); /* a re-added tombstone's old links go */
    for (uint32_t i = 1; i <= l0[0]; i++)
        indeg_dec(h, l0[i]);
    l0[0] = 0;
    fill_payload(h, &v, slot);

    if (h->entry == NO_NODE) {
        h->entry = slot;
        h->max_level = level;
        h->state[slot] = NODE_LIVE;
        h->n_live++;
        return 0;
    }
    scratch_t *sc = scratch_get(h->cap);
    if (!h->ins_tmp)
        h->ins_tmp = malloc(((size_t)h->m0 + 2 + h->ef_construct) * sizeof(cand_t));
    cand_t *tmp = h->ins_tmp;
    if (!sc || !tmp)
        return AG_ENOMEM;
    sctx_t x = {.h = h, .v = v, .q = ag_vecstore_view_row(&v, slot), .sc = sc};
    /* An external (on_disk) row lives only for a few more fetches: the walk keeps a copy. */
    if (v.fetch && !(x.q = pad_query(sc, x.q, &v)))
        return AG_ENOMEM;
    /* Linking over the codes (linking_view): the walk ranks with them as a search does, and
     * rdist scores pairs of codes, slot's included (written by fill_payload above). */
    if (v.fetch == decoded_row)
        x.qz = h->quant;
    set_mode(&x);
    if (x.mode == PAY_CODE && (rc = encode_query(&x, x.q)) != 0)
        return rc;
    h->lslot = x.mode == PAY_CODE ? slot : NO_NODE;
    uint32_t ep = h->entry;
    float epd = qdist(&x, ep);
    for (int lc = h->max_level; lc > level; lc--)
        greedy(&x, lc, &ep, &epd);
    for (int lc = AG_MIN(level, h->max_level); lc >= 0; lc--) {
        if ((rc = search_layer(&x, ep, epd, h->ef_construct, lc)) != 0)
            break;
        size_t n = sc->rs_n;
        memcpy(tmp, sc->rs, n * sizeof(cand_t));
        qsort(tmp, n, sizeof(cand_t), cmp_cand);
        if (n > 0) {
            ep = tmp[0].id;
            epd = tmp[0].d;
        }
        size_t kept = select_neighbours(h, &v, tmp, n, h->m);
        uint32_t *l = links_of(h, slot, lc);
        l[0] = (uint32_t)kept;
        for (size_t i = 0; i < kept; i++)
            l[i + 1] = tmp[i].id;
        if (lc == 0)
            for (size_t i = 0; i < kept; i++)
                indeg_inc(h, l[i + 1]);
        /* connect() reuses tmp, so the kept list is read back from the node's own links. */
        for (size_t i = 0; i < kept; i++) {
            uint32_t nb = l[i + 1];
            connect(h, &v, nb, slot, rdist(h, &v, nb, slot), lc, tmp);
        }
        /* No neighbour kept enough links to the new node: its closest one links to it anyway. */
        if (lc == 0 && kept > 0 && h->indeg && h->indeg[slot] < MIN_IN_LINKS)
            (void)indeg_rescue(h, links_of(h, l[1], 0), slot);
    }
    h->lslot = NO_NODE;
    h->state[slot] = NODE_LIVE;
    h->n_live++;
    if (level > h->max_level) {
        h->max_level = level;
        h->entry = slot;
    }
    if (rc == 0)
        probe(h, &v);
    return rc;
}

/* ---- repair --------------------------------------------------------------------------------- */

void ag_hnsw_repair(ag_index_t *ix)
{
    hnsw_t *h = (hnsw_t *)ix;
    if (h->n_tomb == 0)
        return;
    ag_vecstore_view_t v;
    linking_view(h, &v);
    scratch_t *sc = scratch_get(h->cap);
    size_t tcap = (size_t)(h->m0 + 1) * (h->m0 + 1);
    cand_t *tmp = malloc(tcap * sizeof(cand_t));
    if (!sc || !tmp) {
        free(tmp);
        return; /* tombstones stay; searches remain correct, just slower */
    }
    for (uint32_t u = 0; u < h->cap; u++) {
        if (h->state[u] != NODE_LIVE)
            continue;
        for (int lc = 0; lc <= h->level[u]; lc++) {
            uint32_t *l = links_of(h, u, lc);
            bool dirty = false;
            for (uint32_t i = 1; i <= l[0] && !dirty; i++)
                dirty = h->state[l[i]] != NODE_LIVE;
            if (!dirty)
                continue;
            visited_reset(sc);
            visit(sc, u);
            size_t n = 0;
            for (uint32_t i = 1; i <= l[0]; i++) {
                uint32_t a = l[i];
                if (h->state[a] == NODE_LIVE) {
                    if (visit(sc, a))
                        tmp[n++] = (cand_t){rdist(h, &v, u, a), a};
                    continue;
                }
                if (h->state[a] != NODE_TOMB || h->level[a] < lc)
                    continue;
                const uint32_t *l2 = links_of(h, a, lc);
                for (uint32_t j = 1; j <= l2[0] && n < tcap; j++) {
                    uint32_t b = l2[j];
                    if (h->state[b] == NODE_LIVE && visit(sc, b))
                        tmp[n++] = (cand_t){rdist(h, &v, u, b), b};
                }
            }
            qsort(tmp, n, sizeof(cand_t), cmp_cand);
            size_t kept = select_neighbours(h, &v, tmp, n, cap_of(h, lc));
            l[0] = (uint32_t)kept;
            for (size_t i = 0; i < kept; i++)
                l[i + 1] = tmp[i].id;
        }
    }
    free(tmp);
    bool entry_gone = h->entry != NO_NODE && h->state[h->entry] != NODE_LIVE;
    for (uint32_t t = 0; t < h->cap; t++) {
        if (h->state[t] != NODE_TOMB)
            continue;
        h->state[t] = NODE_EMPTY;
        free(h->up[t]);
        h->up[t] = NULL;
        h->level[t] = 0;
        links_of(h, t, 0)[0] = 0;
    }
    h->n_tomb = 0;
    free(h->indeg); /* the lists were rebuilt: counted again at the next insert */
    h->indeg = NULL;
    if (entry_gone)
        pick_entry(h, NO_NODE);
}

/* ---- the background queue ------------------------------------------------------------------- */

static bool is_pending(const hnsw_t *h, uint32_t slot)
{
    return slot < h->pend_cap && h->pend[slot] != 0;
}

static int pend_push(hnsw_t *h, uint32_t slot)
{
    if (is_pending(h, slot))
        return 0;
    uint32_t old_cap = h->pend_cap;
    if (AG_GROW(h->pend, h->pend_cap, (size_t)slot + 1, 1024, AG_VECSTORE_MAX_SLOTS) != 0)
        return AG_ENOMEM;
    memset(h->pend + old_cap, 0, (size_t)(h->pend_cap - old_cap) * sizeof(uint32_t));
    if (AG_GROW(h->queue, h->q_cap, (size_t)h->q_n + 1, 1024, AG_VECSTORE_MAX_SLOTS) != 0)
        return AG_ENOMEM;
    h->queue[h->q_n++] = slot;
    h->pend[slot] = h->q_n;
    h->mutations++;
    return 0;
}

/* O(1) removal: the last queued slot takes the removed one's place. */
static void pend_drop(hnsw_t *h, uint32_t slot)
{
    uint32_t pos = h->pend[slot] - 1;
    uint32_t last = h->queue[--h->q_n];
    if (pos != h->q_n) {
        h->queue[pos] = last;
        h->pend[last] = pos + 1;
    }
    h->pend[slot] = 0;
    h->mutations++;
}

uint32_t ag_hnsw_pending(const ag_index_t *ix)
{
    return ((const hnsw_t *)ix)->q_n;
}

uint32_t ag_hnsw_link_pending(ag_index_t *ix, uint32_t max)
{
    hnsw_t *h = (hnsw_t *)ix;
    uint32_t done = 0;
    while (done < max && h->q_n > 0) {
        uint32_t slot = h->queue[h->q_n - 1];
        pend_drop(h, slot);
        if (ag_vecstore_has(ix->vs, slot) && insert(h, slot) != 0) {
            pend_push(h, slot); /* out of memory: keep it queued (still searched exactly) */
            break;
        }
        done++;
    }
    return done;
}

/* ---- quantization --------------------------------------------------------------------------- */

/* The codes' range is trained from the stored vectors, and trained again (all codes rebuilt) each
 * time the store has grown fourfold since, up to QUANT_SETTLED vectors; after that new vectors
 * are encoded with the range they find (values outside it are clipped). The total encoding work
 * stays below 4/3 of the vectors ever added. */
#define QUANT_SETTLED 1000000u

/* Keeps slot's code current after its vector was stored (writer side). A failure leaves the
 * quantizer untrained, so searches rank with the float rows until the next add trains it. */
static void quant_note(hnsw_t *h)
{
    if (!h->quant || h->deferred)
        return;
    if (ag_quant_kind(h->quant) == AG_QUANT_BINARY && ag_quant_trained(h->quant))
        return; /* bits need no range: nothing to train again */
    uint32_t n = ag_vecstore_count(h->base.vs), t = ag_quant_trained_rows(h->quant);
    if (t == 0 || (t < QUANT_SETTLED && (uint64_t)n >= 4u * (uint64_t)t)) {
        if (ag_quant_fit(h->quant, h->base.vs) != 0)
            ag_quant_reset(h->quant);
        sync_payload(h); /* every node's code again, for the new range */
    }
    /* otherwise the slot's code is written when it is linked (insert -> fill_payload) */
}

int ag_hnsw_set_quant(ag_index_t *ix, double quantile)
{
    return ag_hnsw_set_quant_kind(ix, AG_QUANT_INT8, quantile);
}

int ag_hnsw_set_quant_kind(ag_index_t *ix, ag_quant_kind_t kind, double quantile)
{
    hnsw_t *h = (hnsw_t *)ix;
    if (kind != AG_QUANT_INT8 && kind != AG_QUANT_BINARY)
        return AG_EINVAL;
    ag_quant_free(h->quant);
    h->quant = NULL;
    int rc = 0;
    if (kind == AG_QUANT_BINARY || quantile != 0) {
        rc = kind == AG_QUANT_BINARY
                 ? ag_quant_new_binary(ag_vecstore_dim(ix->vs), ix->dist, &h->quant)
                 : ag_quant_new(ag_vecstore_dim(ix->vs), ix->dist, quantile, &h->quant);
        if (rc == 0 && !h->deferred && ag_vecstore_count(ix->vs) > 0 &&
            ag_quant_fit(h->quant, ix->vs) != 0)
            rc = AG_ENOMEM;
    }
    if (rc == 0) {
        sync_payload(h); /* the codes into the blocks (or the floats back) */
        if (h->pay != pay_wanted(h))
            rc = AG_ENOMEM;
    }
    if (rc && h->quant) { /* quantization stays off */
        ag_quant_free(h->quant);
        h->quant = NULL;
        sync_payload(h);
    }
    return rc;
}

bool ag_hnsw_sketch_ok(const ag_index_t *ix)
{
    const hnsw_t *h = (const hnsw_t *)ix;
    if (!h->sk || h->built || !h->scan_codes || h->pay != PAY_CODE)
        return false;
    ag_vecstore_view_t v;
    ag_vecstore_view(ix->vs, &v);
    if (v.capacity > h->sk_cap || v.capacity > h->cap)
        return false;
    size_t row = ag_quant_row_bytes(h->quant);
    uint8_t *want = aligned_alloc(64, pad64(h->sk_row));
    if (!want)
        return false;
    bool ok = true;
    for (uint32_t i = 0; i < v.capacity && ok; i++) {
        if (!ag_vecstore_view_has(&v, i))
            continue;
        ag_u8_top_bits(blk_of(h, i) + h->pay_off, row, want, h->sk_row);
        ok = memcmp(want, h->sk + (size_t)i * h->sk_row, h->sk_row) == 0;
    }
    free(want);
    return ok;
}

void ag_hnsw_set_sketch(ag_index_t *ix, double factor, bool force)
{
    hnsw_t *h = (hnsw_t *)ix;
    h->sk_factor = factor > 0 ? factor : 0;
    h->sk_force = force;
    sync_payload(h); /* the sketches laid out (or dropped) with the codes */
}

bool ag_hnsw_quantized(const ag_index_t *ix)
{
    const hnsw_t *h = (const hnsw_t *)ix;
    return h->quant && ag_quant_trained(h->quant);
}

/* ---- the index ------------------------------------------------------------------------------ */

static int build_all(hnsw_t *h)
{
    h->built = true;
    ag_vecstore_view_t v;
    ag_vecstore_view(h->base.vs, &v);
    uint32_t cap = v.capacity, total = ag_vecstore_count(h->base.vs), done = 0;
    /* Big builds (crossing full_scan_threshold, or a rebuild at start) report progress. */
    bool chatty = total >= 50000u;
    uint32_t step = total / 10u + 1u;
    double t0 = ag_now_mono();
    if (chatty)
        ag_log(AG_LOG_INFO, "hnsw: building the graph over %u points", total);
    for (uint32_t w = 0; w < cap / 64u; w++) {
        ag_vecstore_view(h->base.vs, &v);
        uint64_t bits = v.present[w];
        while (bits) {
            unsigned b = (unsigned)__builtin_ctzll(bits);
            bits &= bits - 1;
            int rc = insert(h, w * 64u + b);
            if (rc)
                return rc;
            if (chatty && ++done % step == 0)
                ag_log(AG_LOG_INFO, "hnsw: %u of %u points linked (%.1f s)", done, total,
                       ag_now_mono() - t0);
        }
    }
    if (chatty)
        ag_log(AG_LOG_INFO, "hnsw: graph of %u points built in %.1f s", total, ag_now_mono() - t0);
    return 0;
}

/* Linking at once: `inserts` fresh nodes may come (on this thread). Node arrays for the
 * vector store's capacity, this thread's scratch at its largest (the candidate queue holds each
 * node at most once per layer search), insert's buffer, and a level drawn ahead — with its link
 * block — for each insert not already covered. */
static int reserve_inserts(hnsw_t *h, uint32_t slots, size_t inserts)
{
    ag_vecstore_view_t v;
    ag_vecstore_view(h->base.vs, &v);
    if (grow_nodes(h, AG_MAX(slots, v.capacity)) != 0)
        return AG_ENOMEM;
    scratch_t *sc = scratch_get(h->cap);
    if (!sc || !grow_cands(&sc->rs, &sc->rs_cap, (size_t)h->ef_construct + 1) ||
        !grow_cands(&sc->cq, &sc->cq_cap, (size_t)h->cap + h->m0 + 64) ||
        !ids_room(sc, (size_t)h->m0 + 1))
        return AG_ENOMEM;
    if (!h->ins_tmp &&
        !(h->ins_tmp = malloc(((size_t)h->m0 + 2 + h->ef_construct) * sizeof(cand_t))))
        return AG_ENOMEM;
    indeg_ready(h); /* counted now, for the grown capacity, so the inserts allocate nothing */
    if (!h->indeg && indeg_wanted(h))
        return AG_ENOMEM;
    if (h->pre_at > 0) { /* drop what was taken */
        memmove(h->pre, h->pre + h->pre_at, (size_t)(h->pre_n - h->pre_at) * sizeof(*h->pre));
        h->pre_n -= h->pre_at;
        h->pre_at = 0;
    }
    if (inserts <= h->pre_n)
        return 0;
    if (AG_GROW(h->pre, h->pre_cap, inserts, 64, AG_VECSTORE_MAX_SLOTS) != 0)
        return AG_ENOMEM;
    while (h->pre_n < inserts) {
        int level = random_level(h);
        uint32_t *up = NULL;
        if (level > 0 && !(up = calloc((size_t)level * (h->m + 1), sizeof(uint32_t))))
            return AG_ENOMEM; /* the levels drawn so far stay set aside */
        h->pre[h->pre_n++] = (struct pre_node){up, (uint8_t)level};
    }
    return 0;
}

/* Background linking queues every add: room in the queue (for the adds, or for every stored
 * vector when they cross the threshold) and in the pending map. Linking at once inserts the adds
 * (or, crossing the threshold, builds over every stored vector): reserve_inserts. */
static int hnsw_reserve(ag_index_t *ix, uint32_t slots, size_t adds)
{
    hnsw_t *h = (hnsw_t *)ix;
    if (h->deferred)
        return 0;
    if (!h->background) {
        size_t stored = ag_vecstore_count(ix->vs);
        if (!h->built && stored + adds <= h->full_scan)
            return 0;
        return reserve_inserts(h, slots, h->built ? adds : stored + adds);
    }
    size_t queue = (size_t)h->q_n + adds;
    if (!h->built)
        queue += ag_vecstore_count(ix->vs); /* crossing the threshold queues them all */
    uint32_t old_cap = h->pend_cap;
    if (AG_GROW(h->pend, h->pend_cap, slots, 1024, AG_VECSTORE_MAX_SLOTS) != 0)
        return AG_ENOMEM;
    memset(h->pend + old_cap, 0, (size_t)(h->pend_cap - old_cap) * sizeof(uint32_t));
    if (AG_GROW(h->queue, h->q_cap, queue, 1024, AG_VECSTORE_MAX_SLOTS) != 0)
        return AG_ENOMEM;
    return 0;
}

static int hnsw_add(ag_index_t *ix, uint32_t slot)
{
    hnsw_t *h = (hnsw_t *)ix;
    /* UINT32_MAX (internal): no new slot, just cross the threshold if the store has. */
    if (slot != UINT32_MAX && !ag_vecstore_has(ix->vs, slot))
        return AG_ENOTFOUND;
    if (h->deferred)
        return 0;
    quant_note(h);
    h->mutations++;
    if (!h->built) {
        if (ag_vecstore_count(ix->vs) <= h->full_scan) {
            scan_note(h, slot);
            return 0;
        }
        sk_drop(h); /* the graph takes over: the scan's sketches are not needed any more */
        if (!h->background)
            return build_all(h);
        /* Crossing the threshold: every stored vector queues for the background linker. */
        h->built = true;
        ag_vecstore_view_t v;
        ag_vecstore_view(ix->vs, &v);
        for (uint32_t w = 0; w < (v.capacity + 63u) / 64u; w++) {
            uint64_t bits = v.present[w];
            while (bits) {
                unsigned b = (unsigned)__builtin_ctzll(bits);
                bits &= bits - 1;
                int rc = pend_push(h, w * 64u + b);
                if (rc)
                    return rc;
            }
        }
        return 0;
    }
    if (slot == UINT32_MAX)
        return 0;
    if (h->background)
        return pend_push(h, slot);
    return insert(h, slot);
}

static int hnsw_remove(ag_index_t *ix, uint32_t slot)
{
    hnsw_t *h = (hnsw_t *)ix;
    if (is_pending(h, slot)) {
        pend_drop(h, slot);
        return 0;
    }
    if (!h->built || slot >= h->cap || h->state[slot] != NODE_LIVE)
        return 0;
    h->mutations++;
    h->state[slot] = NODE_TOMB;
    h->n_live--;
    h->n_tomb++;
    uint32_t nodes = h->n_live + h->n_tomb;
    /* With nothing live left the tombstones are pure clutter: the repair drops them all. */
    if (h->n_live == 0 || (h->n_tomb >= REPAIR_MIN && (double)h->n_tomb > REPAIR_FRACTION * nodes))
        ag_hnsw_repair(ix);
    return 0;
}

/* Fraction of live slots the filter accepts, from up to SAMPLE_N random live slots. */
static double estimate_selectivity(const hnsw_t *h, ag_accept_fn accept, const void *ud,
                                   const float *query)
{
    /* Seeded from the query so a search is repeatable. */
    uint64_t r = 0x2545F4914F6CDD1Dull;
    uint32_t bits;
    memcpy(&bits, query, sizeof(bits));
    r ^= bits;
    size_t tried = 0, seen = 0, hit = 0;
    while (seen < SAMPLE_N && tried < 8u * SAMPLE_N) {
        r ^= r << 13;
        r ^= r >> 7;
        r ^= r << 17;
        uint32_t id = (uint32_t)(r % h->cap);
        tried++;
        if (h->state[id] != NODE_LIVE)
            continue;
        seen++;
        hit += accept(ud, id);
    }
    if (seen == 0)
        return 0.0;
    return (double)hit / (double)seen;
}

static int exact(const hnsw_t *h, const float *query, size_t k, const ag_index_filter_t *flt,
                 const ag_search_params_t *params, ag_hit_t *out, size_t *n_out)
{
    return ag_index_score_candidates(h->base.vs, h->base.dist, query, k, flt, params, out, n_out);
}

/* Few matches: evaluate the predicate over the live nodes first (no row is touched), then score
 * only the accepted rows; a plain predicate scan would stream every row past the prefetcher. */
static int exact_filtered(const hnsw_t *h, scratch_t *sc, const float *query, size_t k,
                          const ag_index_filter_t *flt, const ag_search_params_t *params,
                          ag_hit_t *out, size_t *n_out)
{
    if (!ids_room(sc, (size_t)h->n_live + h->q_n + 1))
        return exact(h, query, k, flt, params, out, n_out);
    size_t n = 0;
    for (uint32_t id = 0; id < h->cap; id++)
        if (h->state[id] == NODE_LIVE && flt->accept(flt->ud, id))
            sc->ids[n++] = id;
    /* Queued slots are not in the graph yet; they are scored with the rest. */
    for (uint32_t i = 0; i < h->q_n; i++)
        if (flt->accept(flt->ud, h->queue[i]))
            sc->ids[n++] = h->queue[i];
    if (h->q_n > 0)
        qsort(sc->ids, n, sizeof(uint32_t), ag_cmp_u32);
    ag_index_filter_t list = {.candidates = sc->ids, .n_candidates = n};
    return exact(h, query, k, &list, params, out, n_out);
}

/* The query as a padded row in sc->qbuf (zero tail, 64-byte aligned), or NULL. */
static const float *pad_query(scratch_t *sc, const float *query, const ag_vecstore_view_t *v)
{
    if (sc->qbuf_cap < v->stride) {
        float *b = aligned_alloc(64, v->stride * sizeof(float));
        if (!b)
            return NULL;
        free(sc->qbuf);
        sc->qbuf = b;
        sc->qbuf_cap = v->stride;
    }
    memcpy(sc->qbuf, query, v->dim * sizeof(float));
    memset(sc->qbuf + v->dim, 0, (v->stride - v->dim) * sizeof(float));
    return sc->qbuf;
}

/* How many of the best approximate candidates a quantized search rescores: ceil(oversampling *
 * k), at least k; just k without rescoring. */
static size_t quant_pick(size_t k, const ag_search_params_t *params, bool *rescore)
{
    double over = params && params->oversampling > 1 ? params->oversampling : 1.0;
    double want_d = ceil(over * (double)k);
    size_t n_pick = want_d >= (double)SIZE_MAX / 2 ? SIZE_MAX / 2 : (size_t)want_d;
    n_pick = AG_MAX(n_pick, k);
    *rescore = !(params && params->quant_no_rescore);
    return *rescore ? n_pick : k;
}

/* The query's code into this thread's buffer (x->qq). AG_ENOMEM. */
static int encode_query(sctx_t *x, const float *query)
{
    size_t row = ag_quant_row_bytes(x->qz);
    if (x->sc->qcode_cap < row) {
        uint8_t *b = aligned_alloc(64, (row + 63) & ~(size_t)63);
        if (!b)
            return AG_ENOMEM;
        free(x->sc->qcode);
        x->sc->qcode = b;
        x->sc->qcode_cap = row;
    }
    x->qq.code = x->sc->qcode;
    ag_quant_encode_query(x->qz, query, &x->qq);
    return 0;
}

/* The answer from a beam (max-heap of nb candidates, sorted here): the best n_pick, re-scored from
 * the float rows (rescore) or with their approximate scores, plus the slots still queued for the
 * background linker (scored exactly), into out. */
static int finish_hits(const hnsw_t *h, const sctx_t *x, const float *query, size_t k,
                       size_t n_pick, bool rescore, const ag_search_params_t *params, ag_hit_t *out,
                       size_t *n_out)
{
    const ag_index_t *ix = &h->base;
    bool higher = ag_distance_higher_is_better(ix->dist);
    size_t nb = x->sc->rs_n;
    cand_t *beam = x->sc->rs;
    /* every candidate rescored into the top-k: their order does not matter */
    if (!(rescore && nb <= n_pick))
        heap_sort(beam, nb);
    nb = AG_MIN(nb, n_pick);
    float thr = 0.0f;
    bool has_thr = params && params->has_threshold;
    if (has_thr)
        thr = higher ? params->score_threshold : -params->score_threshold;
    ag_topk_t t;
    ag_topk_init(&t, out, k);
    if (rescore && x->mode != PAY_NONE) /* the walk did not read these rows: fetch them together */
        for (size_t i = 0; i < nb; i++)
            prefetch_row(&x->v, beam[i].id);
    /* Cosine/Dot: the rows' dot products several at a time (the same floats as idist_exact) */
    enum { CHUNK = 32 };
    const float *rows[CHUNK];
    float dots[CHUNK];
    bool batched = rescore && higher;
    for (size_t i = 0; i < nb; i++) {
        uint32_t id = beam[i].id;
        float d = beam[i].d;
        if (batched) {
            size_t j = i % CHUNK;
            if (j == 0) {
                size_t c = AG_MIN((size_t)CHUNK, nb - i);
                for (size_t r = 0; r < c; r++)
                    rows[r] = ag_vecstore_view_row(&x->v, beam[i + r].id);
                ag_dot_f32_rows(query, rows, c, x->v.dim, dots);
            }
            d = -dots[j];
        } else if (rescore) {
            d = idist_exact(ix->dist, query, ag_vecstore_view_row(&x->v, id), x->v.dim);
        }
        float key = key_of(ix->dist, d);
        if (has_thr && !(key >= thr))
            continue;
        ag_topk_push(&t, id, key);
    }
    /* Slots still queued for the background linker are scored exactly. */
    for (uint32_t i = 0; i < h->q_n; i++) {
        uint32_t id = h->queue[i];
        if (x->accept && !x->accept(x->ud, id))
            continue;
        float d = idist_exact(ix->dist, query, ag_vecstore_view_row(&x->v, id), x->v.dim);
        float key = key_of(ix->dist, d);
        if (has_thr && !(key >= thr))
            continue;
        ag_topk_push(&t, id, key);
    }
    size_t n = ag_topk_finish(&t);
    if (!higher)
        for (size_t i = 0; i < n; i++)
            out[i].score = -out[i].score;
    *n_out = n;
    return 0;
}

static int bits_scan(sctx_t *x, size_t want);
static int dots_scan(sctx_t *x, size_t want);
static int sketch_pick(sctx_t *x, size_t want, size_t *m_io);

/*
 * Below full_scan_threshold with trained codes (docs/ARCHITECTURE.md "Small collections"): no
 * graph, so every stored row's code (kept in its block, sync_payload/scan_note) is scored against
 * the query's, the best ceil(oversampling * k) are kept and rescored from the float rows (or
 * returned with their approximate scores). Reading a code is a fraction of reading the floats:
 * 1/32 of them for binary, 1/4 for int8.
 */
static int quant_scan(const hnsw_t *h, const float *query, size_t k, const ag_index_filter_t *flt,
                      const ag_search_params_t *params, ag_hit_t *out, size_t *n_out)
{
    sctx_t x = {.h = h, .qz = h->quant};
    if (!(x.sc = scratch_get(0)))
        return AG_ENOMEM;
    bool rescore;
    size_t n_pick = quant_pick(k, params, &rescore);
    ag_vecstore_view(h->base.vs, &x.v);
    set_mode(&x);
    if (x.mode != PAY_CODE)
        return exact(h, query, k, flt, params, out, n_out);
    if (flt) {
        x.accept = flt->accept;
        x.ud = flt->ud;
    }
    x.deadline = params ? params->deadline : 0;
    int rc = encode_query(&x, query);
    if (rc)
        return rc;
    scratch_t *sc = x.sc;
    sc->rs_n = 0;
    size_t want = AG_MIN(n_pick, (size_t)AG_MAX(ag_vecstore_count(h->base.vs), 1u));
    if (!grow_cands(&sc->rs, &sc->rs_cap, want + 1))
        return AG_ENOMEM;
    /* a built graph's live nodes all have codes (the rest are skipped: queued slots are scored
     * exactly in finish_hits) */
    bool all_coded = h->built || x.v.capacity <= h->cap;
    if (x.qp.bits && all_coded) {
        if ((rc = bits_scan(&x, want)) != 0)
            return rc;
        return finish_hits(h, &x, query, k, n_pick, rescore, params, out, n_out);
    }
    if ((x.qp.dist == AG_DIST_COSINE || x.qp.dist == AG_DIST_DOT) && all_coded) {
        if ((rc = dots_scan(&x, want)) != 0)
            return rc;
        return finish_hits(h, &x, query, k, n_pick, rescore, params, out, n_out);
    }
    /* a row stored but not yet added has no code: its float distance ranks it */
    const float *pq = NULL;
    if (!h->built && x.v.capacity > h->cap && !(pq = pad_query(sc, query, &x.v)))
        return AG_ENOMEM;
    uint32_t words = (x.v.capacity + 63u) / 64u;
    for (uint32_t w = 0; w < words; w++) {
        if (x.deadline > 0 && (w & 63) == 63 && ag_now_mono() >= x.deadline)
            return AG_ETIMEOUT;
        uint64_t bits = x.v.present[w];
        while (bits) {
            uint32_t id = w * 64u + (uint32_t)__builtin_ctzll(bits);
            bits &= bits - 1;
            if (h->built && (id >= h->cap || h->state[id] != NODE_LIVE))
                continue; /* queued for the linker: finish_hits scores it */
            if (x.accept && !x.accept(x.ud, id))
                continue;
            float d = id < h->cap
                          ? qdist(&x, id)
                          : idist(h->base.dist, pq, ag_vecstore_view_row(&x.v, id), x.v.stride);
            if (sc->rs_n < want) {
                maxheap_push(sc->rs, &sc->rs_n, (cand_t){d, id});
            } else if (d < sc->rs[0].d) {
                sc->rs[0] = (cand_t){d, id};
                maxheap_sift_down(sc->rs, sc->rs_n, 0);
            }
        }
    }
    return finish_hits(h, &x, query, k, n_pick, rescore, params, out, n_out);
}

/*
 * quant_scan for binary codes: the distances are whole counts from 0 to dim, so instead of a heap
 * (whose replacements mispredict a branch at every level) the rows' counts are kept with a
 * histogram, the count at which the best `want` are reached is read off it, and one more pass
 * takes the rows below it and, in slot order, enough of the rows at it (ties go to the lower
 * slot, as the heaps' order does). Every row must have a code (id < h->cap). Fills x->sc->rs
 * (a max-heap of at most want). AG_ENOMEM, AG_ETIMEOUT.
 */
/* The stored slots a code scan visits (present, accepted by the filter, and with a built graph
 * only its live nodes: the slots queued for the linker have no code yet), in slot order, into
 * x->sc->ids (room for n_rows) and their number into *m. AG_ETIMEOUT. */
static int scan_slots(sctx_t *x, uint32_t n_rows, size_t *m_out)
{
    const hnsw_t *h = x->h;
    bool graph = h->built;
    scratch_t *sc = x->sc;
    size_t m = 0;
    uint32_t words = (x->v.capacity + 63u) / 64u;
    if (!graph && !x->accept) { /* every present slot: nothing to test per slot */
        for (uint32_t w = 0; w < words && m < n_rows; w += 64) { /* the deadline: 4096 slots */
            if (x->deadline > 0 && w > 0 && ag_now_mono() >= x->deadline)
                return AG_ETIMEOUT;
            m += ag_bits_to_ids(x->v.present + w, AG_MIN(64u, words - w), sc->ids + m, n_rows - m);
        }
        *m_out = m;
        return 0;
    }
    for (uint32_t w = 0; w < words; w++) {
        if (x->deadline > 0 && (w & 63) == 63 && ag_now_mono() >= x->deadline)
            return AG_ETIMEOUT;
        uint64_t bits = x->v.present[w];
        while (bits && m < n_rows) {
            uint32_t id = w * 64u + (uint32_t)__builtin_ctzll(bits);
            bits &= bits - 1;
            if (graph && (id >= h->cap || h->state[id] != NODE_LIVE))
                continue; /* queued for the linker: finish_hits scores it */
            if (x->accept && !x->accept(x->ud, id))
                continue;
            sc->ids[m++] = id;
        }
    }
    *m_out = m;
    return 0;
}

/*
 * quant_scan for int8 codes under Cosine/Dot: every visited row's dot product and byte sum in one
 * batched kernel call (ag_u8_dotsum_gather: no call per row, and the rows' chains independent),
 * then the distances qdist would give, the best `want` kept in x->sc->rs (a max-heap; a row enters
 * only when strictly closer than the worst kept, so ties go to the lower slot as before). Every
 * row must have a code (id < h->cap). AG_ENOMEM, AG_ETIMEOUT.
 */
static int dots_scan(sctx_t *x, size_t want)
{
    const hnsw_t *h = x->h;
    scratch_t *sc = x->sc;
    uint32_t n_rows = ag_vecstore_count(h->base.vs);
    /* cnt holds the dot products, then (from n_rows on) the rows' byte sums */
    if (!ids_room(sc, n_rows) ||
        AG_GROW(sc->cnt, sc->cnt_cap, 2 * (size_t)n_rows, 1024, SIZE_MAX / sizeof(uint32_t)) != 0)
        return AG_ENOMEM;
    size_t m = 0;
    int rc = scan_slots(x, n_rows, &m);
    if (rc)
        return rc;
    if ((rc = sketch_pick(x, want, &m)) != 0)
        return rc;
    uint32_t *dot = sc->cnt, *sum = sc->cnt + n_rows;
    ag_u8_dotsum_gather(x->qq.code, h->blk + h->pay_off, h->bstride, sc->ids, m, x->qp.row, dot,
                        sum);
    sc->rs_n = 0;
    for (size_t i = 0; i < m; i++) {
        float d = -(x->qq.corr + x->qp.lostep * (float)sum[i] + x->step2 * (float)dot[i]);
        if (sc->rs_n < want) {
            maxheap_push(sc->rs, &sc->rs_n, (cand_t){d, sc->ids[i]});
        } else if (d < sc->rs[0].d) {
            sc->rs[0] = (cand_t){d, sc->ids[i]};
            maxheap_sift_down(sc->rs, sc->rs_n, 0);
        }
    }
    return 0;
}

/*
 * The sign-sketch prefilter of dots_scan (docs/ARCHITECTURE.md "Small collections"): the m listed
 * slots in x->sc->ids are ranked by the Hamming distance of their sketches to the query's, and
 * only the best ceil(sk_factor * want) stay in x->sc->ids (in slot order; ties at the cut go to
 * the lower slots), *m updated; the int8 codes of those alone are then scored. Does nothing where
 * the sketches are not kept or current for every listed slot, or (unless forced) would keep more
 * than 1/SKETCH_MIN_RATIO of the rows. AG_ENOMEM.
 */
static int sketch_pick(sctx_t *x, size_t want, size_t *m_io)
{
    const hnsw_t *h = x->h;
    scratch_t *sc = x->sc;
    size_t m = *m_io;
    if (!h->sk || h->built || x->v.capacity > h->sk_cap || !(h->sk_factor > 0))
        return 0;
    double keep_d = ceil(h->sk_factor * (double)want);
    if (!h->sk_force && keep_d < SKETCH_MIN_KEEP)
        keep_d = SKETCH_MIN_KEEP;
    size_t keep = keep_d >= (double)m ? m : (size_t)keep_d;
    /* forced (tests), the selection runs even when it keeps every row */
    if (!h->sk_force && (keep >= m || keep * SKETCH_MIN_RATIO > m))
        return 0;
    uint32_t bits = (uint32_t)(h->sk_row * 8u);
    if (sc->qsk_cap < h->sk_row) {
        uint8_t *b = aligned_alloc(64, pad64(h->sk_row));
        if (!b)
            return AG_ENOMEM;
        free(sc->qsk);
        sc->qsk = b;
        sc->qsk_cap = h->sk_row;
    }
    /* two histograms, even and odd rows: consecutive rows often share a count, and one array
     * would chain each increment on the previous one's store */
    size_t hn = (size_t)bits + 1;
    if (AG_GROW(sc->hist, sc->hist_cap, 2 * hn, 256, SIZE_MAX / sizeof(uint32_t)) != 0)
        return AG_ENOMEM;
    ag_u8_top_bits(x->qq.code, x->qp.row, sc->qsk, h->sk_row);
    uint32_t *cnt = sc->cnt; /* room for 2 * n_rows >= m (dots_scan) */
    ag_bits_hamming_gather(sc->qsk, h->sk, h->sk_row, sc->ids, m, h->sk_row, cnt);
    uint32_t *h0 = sc->hist, *h1 = sc->hist + hn;
    memset(sc->hist, 0, 2 * hn * sizeof(uint32_t));
    size_t i = 0;
    for (; i + 2 <= m; i += 2) { /* counts are at most bits: both rows are sk_row bytes */
        h0[cnt[i]]++;
        h1[cnt[i + 1]]++;
    }
    if (i < m)
        h0[cnt[i]]++;
    /* the count `cut` at which keep rows are reached; `room` of the rows at it fit */
    size_t below = 0;
    uint32_t cut = 0;
    while (cut < bits && below + h0[cut] + h1[cut] < keep) {
        below += h0[cut] + h1[cut];
        cut++;
    }
    *m_io = ag_u32_pick_below(cnt, sc->ids, m, cut, keep - AG_MIN(below, keep));
    return 0;
}

static int bits_scan(sctx_t *x, size_t want)
{
    const hnsw_t *h = x->h;
    scratch_t *sc = x->sc;
    uint32_t dim = x->v.dim, n_rows = ag_vecstore_count(h->base.vs);
    if (!ids_room(sc, n_rows) ||
        AG_GROW(sc->cnt, sc->cnt_cap, n_rows, 1024, SIZE_MAX / sizeof(uint32_t)) != 0 ||
        AG_GROW(sc->hist, sc->hist_cap, (size_t)dim + 1, 256, SIZE_MAX / sizeof(uint32_t)) != 0)
        return AG_ENOMEM;
    memset(sc->hist, 0, ((size_t)dim + 1) * sizeof(uint32_t));
    size_t m = 0;
    int rc = scan_slots(x, n_rows, &m);
    if (rc)
        return rc;
    ag_bits_hamming_gather(x->qq.code, h->blk + h->pay_off, h->bstride, sc->ids, m, x->qp.row,
                           sc->cnt);
    for (size_t i = 0; i < m; i++) {
        uint32_t c = AG_MIN(sc->cnt[i], dim); /* the tails are zero in both rows: never above */
        sc->cnt[i] = c;
        sc->hist[c]++;
    }
    /* the count `cut` at which the best want rows are reached; `room` of the rows at it fit */
    size_t below = 0;
    uint32_t cut = 0;
    while (cut < dim && below + sc->hist[cut] < want)
        below += sc->hist[cut++];
    size_t room = want - AG_MIN(below, want);
    sc->rs_n = 0;
    for (size_t i = 0; i < m; i++) {
        uint32_t c = sc->cnt[i];
        if (c > cut || (c == cut && room == 0))
            continue;
        if (c == cut)
            room--;
        maxheap_push(sc->rs, &sc->rs_n, (cand_t){x->qp.bscale * (float)c + x->qp.boff, sc->ids[i]});
    }
    return 0;
}

bool ag_hnsw_scans_codes(const ag_index_t *ix, const ag_search_params_t *params)
{
    const hnsw_t *h = (const hnsw_t *)ix;
    /* unbuilt: the codes of every stored row are laid out (scan_codes); built but down to
     * full_scan_threshold live points: every live node's block holds its code */
    bool coded = h->built ? h->n_live <= h->full_scan && h->entry != NO_NODE : h->scan_codes;
    return coded && !h->deferred && h->pay == PAY_CODE && h->quant && ag_quant_trained(h->quant) &&
           !(params && (params->exact || params->quant_ignore));
}

static int hnsw_search(const ag_index_t *ix, const float *query, size_t k,
                       const ag_index_filter_t *flt, const ag_search_params_t *params,
                       ag_hit_t *out, size_t *n_out)
{
    const hnsw_t *h = (const hnsw_t *)ix;
    if (!query || !n_out || (k > 0 && !out))
        return AG_EINVAL;
    *n_out = 0;
    if (params && params->has_threshold && isnan(params->score_threshold))
        return AG_EINVAL;
    if (k == 0)
        return 0;
    if (ag_hnsw_scans_codes(ix, params) && !(flt && flt->candidates))
        return quant_scan(h, query, k, flt, params, out, n_out);
    if ((params && params->exact) || !h->built || h->n_live <= h->full_scan ||
        h->entry == NO_NODE || (flt && flt->candidates))
        return exact(h, query, k, flt, params, out, n_out);

    sctx_t x = {.h = h};
    if (!(x.sc = scratch_get(h->cap)))
        return AG_ENOMEM;
    size_t ef = params && params->ef ? params->ef : h->ef_search;
    ef = AG_MAX(ef, k);
    /* Quantized: the walk ranks with the codes, and the best ceil(oversampling * k) of the
     * beam are rescored from the float rows (or reported with their approximate scores when
     * rescoring is off); the beam is at least that wide. */
    size_t n_pick = 2 * k; /* float walk: the margin for the two kernels' roundings */
    bool rescore = true;
    if (h->quant && ag_quant_trained(h->quant) && h->pay == PAY_CODE &&
        !(params && params->quant_ignore)) {
        x.qz = h->quant;
        n_pick = quant_pick(k, params, &rescore);
        ef = AG_MAX(ef, n_pick);
    }
    /* A beam wider than the graph only costs memory (the scratch keeps its size). */
    ef = AG_MIN(ef, (size_t)AG_MAX(h->n_live, 1u));
    x.deadline = params ? params->deadline : 0;
    if (flt && flt->accept) {
        double sel = estimate_selectivity(h, flt->accept, flt->ud, query);
        if (sel * h->n_live < AG_HNSW_FILTER_EXACT_POINTS && !(params && params->walk_only))
            return exact_filtered(h, x.sc, query, k, flt, params, out, n_out);
        x.accept = flt->accept;
        x.ud = flt->ud;
        x.acorn = sel < AG_HNSW_ACORN_BELOW;
    }
    ag_vecstore_view(ix->vs, &x.v);
    set_mode(&x);
    if (!(x.q = pad_query(x.sc, query, &x.v)))
        return AG_ENOMEM;
    if (x.qz) {
        int rc = encode_query(&x, query);
        if (rc)
            return rc;
    }
    uint32_t ep = h->entry;
    float epd = qdist(&x, ep);
    for (int lc = h->max_level; lc > 0; lc--)
        greedy(&x, lc, &ep, &epd);
    int rc = search_layer(&x, ep, epd, ef, 0);
    if (rc)
        return rc;

    size_t want = AG_MIN(k, (size_t)h->n_live);
    if (x.sc->rs_n < want) {
        if (x.accept)
            return exact_filtered(h, x.sc, query, k, flt, params, out, n_out);
        return exact(h, query, k, flt, params, out, n_out);
    }
    /* The beam is ranked with the padded kernels; the best k are picked and re-scored with the
     * shared ones (a margin of k covers near-ties that the two roundings order differently). */
    return finish_hits(h, &x, query, k, n_pick, rescore, params, out, n_out);
}

static void hnsw_free(ag_index_t *ix)
{
    hnsw_t *h = (hnsw_t *)ix;
    if (h->up)
        for (uint32_t i = 0; i < h->cap; i++)
            free(h->up[i]);
    free(h->up);
    free(h->blk);
    free(h->level);
    free(h->state);
    free(h->pend);
    free(h->queue);
    for (uint32_t i = h->pre_at; i < h->pre_n; i++)
        free(h->pre[i].up);
    free(h->pre);
    free(h->ins_tmp);
    free(h->indeg);
    ag_quant_free(h->quant);
    free(h->sk);
    free(h);
}

static const ag_index_vtable_t hnsw_vtable = {
    .name = "hnsw",
    .add = hnsw_add,
    .reserve = hnsw_reserve,
    .remove = hnsw_remove,
    .search = hnsw_search,
    .free = hnsw_free,
};

bool ag_index_is_hnsw(const ag_index_t *ix)
{
    return ix && ix->vt == &hnsw_vtable;
}

int ag_index_hnsw_new(ag_vecstore_t *vs, ag_distance_t dist, const ag_hnsw_params_t *p,
                      ag_index_t **out)
{
    if (!vs || !out || (unsigned)dist > AG_DIST_MANHATTAN)
        return AG_EINVAL;
    ag_hnsw_params_t d = {0};
    if (p)
        d = *p;
    if (d.m == 0)
        d.m = 16;
    if (d.ef_construct == 0)
        d.ef_construct = 100;
    if (d.m < 2 || d.m > 128 || d.ef_construct > 100000)
        return AG_EINVAL;
    hnsw_t *h = calloc(1, sizeof(*h));
    if (!h)
        return AG_ENOMEM;
    h->base.vt = &hnsw_vtable;
    h->base.vs = vs;
    h->base.dist = dist;
    h->m = d.m;
    h->m0 = 2 * d.m;
    h->ef_construct = d.ef_construct;
    h->ef_search = d.ef_search ? d.ef_search : d.ef_construct;
    h->full_scan = d.full_scan_threshold;
    h->ml = 1.0 / log((double)d.m);
    h->rng = d.seed ? d.seed : 0x5DEECE66Dull;
    h->entry = NO_NODE;
    h->lslot = NO_NODE;
    h->built = d.full_scan_threshold == 0;
    h->background = d.background;
    h->probe = !d.no_probe;
    h->pay = PAY_NONE;
    h->sk_factor = SKETCH_FACTOR;
    h->bstride = hdr_bytes(h);
    h->pay_off = pad64(h->bstride);
    *out = &h->base;
    return 0;
}

void ag_hnsw_stats(const ag_index_t *ix, ag_hnsw_stats_t *out)
{
    const hnsw_t *h = (const hnsw_t *)ix;
    memset(out, 0, sizeof(*out));
    out->live = h->built ? h->n_live : ag_vecstore_count(ix->vs);
    out->tombstones = h->n_tomb;
    out->max_level = h->entry == NO_NODE ? 0 : (uint32_t)h->max_level;
    out->built = h->built;
    out->pending = h->q_n;
    /* The blocks: headers count as the graph, int8 payloads as the codes. */
    size_t code = h->pay == PAY_CODE ? h->bstride - h->pay_off : 0;
    size_t mem = (size_t)h->cap * (h->bstride - code + sizeof(uint32_t *) + 2);
    for (uint32_t i = 0; i < h->cap; i++)
        mem += (size_t)h->level[i] * (h->m + 1) * sizeof(uint32_t);
    if (h->indeg)
        mem += (size_t)h->cap * sizeof(uint16_t);
    out->memory = mem;
    out->quant_memory = (size_t)h->cap * code + (size_t)h->sk_cap * h->sk_row;
    out->sketch_memory = (size_t)h->sk_cap * h->sk_row;
}

uint32_t ag_hnsw_reachable(const ag_index_t *ix)
{
    if (!ag_index_is_hnsw(ix))
        return 0;
    const hnsw_t *h = (const hnsw_t *)ix;
    if (h->entry == NO_NODE)
        return 0;
    uint8_t *seen = calloc(h->cap, 1);                   /* freed below */
    uint32_t *stack = malloc(h->cap * sizeof(uint32_t)); /* freed below */
    uint32_t live = 0, sn = 0;
    if (!seen || !stack) {
        free(seen);
        free(stack);
        return 0;
    }
    seen[h->entry] = 1;
    stack[sn++] = h->entry;
    while (sn > 0) { /* each node is pushed once: the stack never holds more than cap */
        uint32_t u = stack[--sn];
        live += h->state[u] == NODE_LIVE;
        const uint32_t *l = links_of(h, u, 0);
        for (uint32_t i = 1; i <= l[0]; i++)
            if (!seen[l[i]]) {
                seen[l[i]] = 1;
                stack[sn++] = l[i];
            }
    }
    free(seen);
    free(stack);
    return live;
}

/* ---- persistence ---------------------------------------------------------------------------- */

/*
 * Checkpoint files and incremental recovery (docs/RELIABILITY.md, "Crash recovery"). The file is a
 * cache: the stored vectors are the truth, and a node is reused at start-up only when the point it
 * was built for is still stored with a vector of the same hash; every other stored vector is
 * linked again, every other node dropped.
 */

#define FILE_MAGIC "AGHNSW02"
#define FILE_VERSION 2u

/* Fixed-size header, native byte order (the file is a cache of this machine's state: a file
 * from another architecture fails the checks and is rebuilt). Body: level[cap], state[cap],
 * level-0 lists, the upper lists of each node with a level (in slot order), then for each live
 * node in slot order its key (key_len bytes) and the hash of its vector (8 bytes). */
typedef struct file_header {
    char magic[8];
    uint32_t version, m, dim, dist;
    uint32_t cap, entry, n_live, n_tomb;
    int32_t max_level;
    uint32_t key_len;
    uint32_t crc; /* CRC-32 of the body */
    uint32_t reserved;
    uint64_t body_len;
} file_header_t;

#define MAX_KEY_LEN 256u

static uint32_t crc_table[256];
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;

static void crc_table_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = (c & 1u) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        crc_table[i] = c;
    }
}

/* CRC-32 (IEEE), continued from crc (start with 0). */
static uint32_t crc32_update(uint32_t crc, const void *data, size_t len)
{
    pthread_once(&crc_once, crc_table_init);
    const uint8_t *p = data;
    crc = ~crc;
    for (size_t i = 0; i < len; i++)
        crc = crc_table[(crc ^ p[i]) & 0xffu] ^ (crc >> 8);
    return ~crc;
}

/* A 64-bit hash of a vector's dim floats (their bit patterns): tells whether a point's vector is
 * the one its node was linked for. A collision would only leave one node with links chosen for
 * another vector (a recall matter: hits are always scored from the stored rows). */
static uint64_t row_hash(const float *row, uint32_t dim)
{
    uint64_t h = 0x9E3779B97F4A7C15ull ^ dim;
    uint32_t i = 0;
    for (; i + 2 <= dim; i += 2) {
        uint64_t x;
        memcpy(&x, row + i, sizeof(x));
        h = (h ^ x) * 0xff51afd7ed558ccdull;
        h ^= h >> 32;
    }
    if (i < dim) {
        uint32_t x;
        memcpy(&x, row + i, sizeof(x));
        h = (h ^ x) * 0xff51afd7ed558ccdull;
    }
    h ^= h >> 29;
    h *= 0xc4ceb9fe1a85ec53ull;
    return h ^ (h >> 32);
}

struct ag_hnsw_ckpt {
    uint8_t *buf; /* header + body, owned */
    size_t len;
    uint64_t mutations; /* the graph's mutation count when it was taken */
};

static uint8_t *put(uint8_t *p, const void *src, size_t n)
{
    if (n)
        memcpy(p, src, n);
    return p + n;
}

int ag_hnsw_checkpoint(const ag_index_t *ix, ag_hnsw_key_fn keys_of, void *ud, size_t key_len,
                       ag_hnsw_ckpt_t **out)
{
    if (!ag_index_is_hnsw(ix) || !out || (key_len && !keys_of) || key_len > MAX_KEY_LEN)
        return AG_EINVAL;
    const hnsw_t *h = (const hnsw_t *)ix;
    uint32_t cap = h->built ? h->cap : 0, live = 0;
    size_t words = (size_t)h->m0 + 1, body = 2 * (size_t)cap + (size_t)cap * words * 4;
    for (uint32_t i = 0; i < cap; i++) {
        body += (size_t)h->level[i] * (h->m + 1) * 4;
        live += h->state[i] == NODE_LIVE;
    }
    body += (size_t)live * (key_len + 8);
    ag_hnsw_ckpt_t *ck = calloc(1, sizeof(*ck));
    if (!ck || !(ck->buf = malloc(sizeof(file_header_t) + body))) {
        free(ck);
        return AG_ENOMEM;
    }
    ck->len = sizeof(file_header_t) + body;
    ck->mutations = h->mutations;
    uint8_t *b = ck->buf + sizeof(file_header_t), *p = b;
    if (cap) {
        p = put(p, h->level, cap);
        p = put(p, h->state, cap);
        for (uint32_t i = 0; i < cap; i++) /* the file keeps the links without payloads */
            p = put(p, links_of(h, i, 0), words * 4);
        for (uint32_t i = 0; i < cap; i++)
            if (h->level[i] > 0)
                p = put(p, h->up[i], (size_t)h->level[i] * (h->m + 1) * 4);
        ag_vecstore_view_t v;
        ag_vecstore_view(ix->vs, &v);
        for (uint32_t i = 0; i < cap; i++) {
            if (h->state[i] != NODE_LIVE)
                continue;
            if (key_len)
                keys_of(ud, i, p);
            p += key_len;
            /* A live node always has its row; 0 (never a row's hash in practice) otherwise. */
            uint64_t vh = i < v.capacity && ag_vecstore_has(ix->vs, i)
                              ? row_hash(ag_vecstore_view_row(&v, i), v.dim)
                              : 0;
            p = put(p, &vh, sizeof(vh));
        }
    }
    file_header_t hd = {0};
    memcpy(hd.magic, FILE_MAGIC, 8);
    hd.version = FILE_VERSION;
    hd.m = h->m;
    hd.dim = ag_vecstore_dim(ix->vs);
    hd.dist = (uint32_t)ix->dist;
    hd.cap = cap;
    hd.entry = cap ? h->entry : NO_NODE;
    hd.n_live = cap ? h->n_live : 0;
    hd.n_tomb = cap ? h->n_tomb : 0;
    hd.max_level = cap ? h->max_level : 0;
    hd.key_len = (uint32_t)key_len;
    hd.body_len = body;
    hd.crc = crc32_update(0, b, body);
    memcpy(ck->buf, &hd, sizeof(hd));
    *out = ck;
    return 0;
}

int ag_hnsw_checkpoint_write(const ag_hnsw_ckpt_t *ck, const char *path)
{
    if (!ck || !path)
        return AG_EINVAL;
    return ag_file_replace(path, ck->buf, ck->len, 0600);
}

void ag_hnsw_checkpoint_done(ag_index_t *ix, const ag_hnsw_ckpt_t *ck)
{
    atomic_store(&((hnsw_t *)ix)->saved_mutations, ck->mutations);
}

size_t ag_hnsw_checkpoint_size(const ag_hnsw_ckpt_t *ck)
{
    return ck ? ck->len : 0;
}

void ag_hnsw_checkpoint_free(ag_hnsw_ckpt_t *ck)
{
    if (!ck)
        return;
    free(ck->buf);
    free(ck);
}

int ag_hnsw_save(ag_index_t *ix, const char *path, ag_hnsw_key_fn keys_of, void *ud, size_t key_len)
{
    ag_hnsw_ckpt_t *ck;
    int rc = ag_hnsw_checkpoint(ix, keys_of, ud, key_len, &ck);
    if (rc)
        return rc;
    if ((rc = ag_hnsw_checkpoint_write(ck, path)) == 0)
        ag_hnsw_checkpoint_done(ix, ck);
    ag_hnsw_checkpoint_free(ck);
    return rc;
}

typedef struct rbuf {
    const uint8_t *p;
    size_t n, off;
} rbuf_t;

static const void *rtake(rbuf_t *r, size_t n)
{
    if (r->n - r->off < n)
        return NULL;
    const void *p = r->p + r->off;
    r->off += n;
    return p;
}

static bool link_ok(const hnsw_t *h, const uint32_t *l, int lc)
{
    if (l[0] > cap_of(h, lc))
        return false;
    for (uint32_t i = 1; i <= l[0]; i++)
        if (l[i] >= h->cap || h->state[l[i]] == NODE_EMPTY || h->level[l[i]] < lc)
            return false;
    return true;
}

/* Parses and checks the graph part of a body into g (fresh arrays, in the file's numbering);
 * AG_EINVAL if anything is inconsistent. r is left at the keys. */
static int body_read(hnsw_t *g, const file_header_t *hd, rbuf_t *r)
{
    g->cap = hd->cap;
    size_t words = (size_t)g->m0 + 1;
    const uint8_t *lv = rtake(r, g->cap), *st = rtake(r, g->cap);
    const uint8_t *l0 = rtake(r, (size_t)g->cap * words * sizeof(uint32_t));
    if (!lv || !st || !l0)
        return AG_EINVAL;
    g->level = malloc(g->cap ? g->cap : 1);
    g->state = malloc(g->cap ? g->cap : 1);
    /* g's blocks are headers only: no correction word, no payload, 4-byte aligned */
    g->bstride = words * sizeof(uint32_t);
    g->blk = malloc(g->cap ? (size_t)g->cap * words * sizeof(uint32_t) : 1);
    g->up = calloc(g->cap ? g->cap : 1, sizeof(uint32_t *));
    if (!g->level || !g->state || !g->blk || !g->up)
        return AG_ENOMEM;
    memcpy(g->level, lv, g->cap);
    memcpy(g->state, st, g->cap);
    memcpy(g->blk, l0, (size_t)g->cap * words * sizeof(uint32_t));
    uint32_t live = 0, tomb = 0;
    for (uint32_t i = 0; i < g->cap; i++) {
        if (g->state[i] > NODE_TOMB || g->level[i] > MAX_LEVEL)
            return AG_EINVAL;
        if (g->state[i] == NODE_EMPTY && g->level[i] != 0)
            return AG_EINVAL;
        live += g->state[i] == NODE_LIVE;
        tomb += g->state[i] == NODE_TOMB;
        if (g->level[i] > 0) {
            size_t n = (size_t)g->level[i] * (g->m + 1) * sizeof(uint32_t);
            const void *p = rtake(r, n);
            if (!p || !(g->up[i] = malloc(n)))
                return p ? AG_ENOMEM : AG_EINVAL;
            memcpy(g->up[i], p, n);
        }
    }
    if (live != hd->n_live || tomb != hd->n_tomb)
        return AG_EINVAL;
    for (uint32_t i = 0; i < g->cap; i++) {
        if (g->state[i] == NODE_EMPTY)
            continue;
        for (int lc = 0; lc <= g->level[i]; lc++)
            if (!link_ok(g, links_of(g, i, lc), lc))
                return AG_EINVAL;
    }
    if (hd->entry == NO_NODE) {
        if (live + tomb != 0)
            return AG_EINVAL;
    } else if (hd->entry >= g->cap || g->state[hd->entry] == NODE_EMPTY ||
               g->level[hd->entry] != hd->max_level) {
        return AG_EINVAL;
    }
    return 0;
}

static void graph_release(hnsw_t *g)
{
    if (g->up)
        for (uint32_t i = 0; i < g->cap; i++)
            free(g->up[i]);
    free(g->up);
    free(g->blk);
    free(g->level);
    free(g->state);
    free(g->indeg);
    g->indeg = NULL;
}

/* Reads and checks a checkpoint file: *body (owned by the caller, free) holds its body.
 * AG_ENOTFOUND, AG_EIO, AG_EINVAL (another format, other parameters, bad size or checksum),
 * AG_ENOMEM. */
static int file_read(const hnsw_t *h, const char *path, size_t key_len, file_header_t *hd,
                     uint8_t **body)
{
    *body = NULL;
    FILE *f = fopen(path, "rb");
    if (!f)
        return errno == ENOENT ? AG_ENOTFOUND : AG_EIO;
    int rc = AG_EINVAL;
    struct stat sb;
    if (fread(hd, sizeof(*hd), 1, f) != 1 || memcmp(hd->magic, FILE_MAGIC, 8) != 0 ||
        hd->version != FILE_VERSION || hd->m != h->m || hd->dim != ag_vecstore_dim(h->base.vs) ||
        hd->dist != (uint32_t)h->base.dist || hd->key_len != key_len || hd->max_level < 0 ||
        hd->max_level > MAX_LEVEL || hd->cap > AG_VECSTORE_MAX_SLOTS ||
        hd->body_len > (uint64_t)SIZE_MAX / 2 || fstat(fileno(f), &sb) != 0 ||
        (uint64_t)sb.st_size != sizeof(*hd) + hd->body_len)
        goto done;
    if (!(*body = malloc(hd->body_len ? (size_t)hd->body_len : 1))) {
        rc = AG_ENOMEM;
        goto done;
    }
    if (hd->body_len && fread(*body, 1, (size_t)hd->body_len, f) != hd->body_len) {
        rc = AG_EIO;
        goto done;
    }
    rc = crc32_update(0, *body, (size_t)hd->body_len) == hd->crc ? 0 : AG_EINVAL;
done:
    if (rc) {
        free(*body);
        *body = NULL;
    }
    fclose(f);
    return rc;
}

/* Empties the background queue (resume refills it from the vecstore). */
static void pend_clear(hnsw_t *h)
{
    for (uint32_t i = 0; i < h->q_n; i++)
        h->pend[h->queue[i]] = 0;
    h->q_n = 0;
}

/*
 * The graph g (file numbering, validated) becomes h's graph in the vecstore's numbering: map[o]
 * is the slot node o keeps, or a place past the vecstore's capacity for a node that is dropped
 * (it enters as a tombstone, so the repair can reconnect its neighbours through it). Takes g's
 * upper lists; the rest of g stays the caller's.
 */
static int install_mapped(hnsw_t *h, hnsw_t *g, const uint32_t *map, uint32_t ncap, uint32_t vcap,
                          uint32_t kept, uint32_t dropped, uint32_t entry)
{
    uint8_t *l0 = big_alloc((size_t)ncap * h->bstride); /* no overflow: a checkpoint's cap came
                                                          through the same sizes */
    if (l0)
        memset(l0, 0, (size_t)ncap * h->bstride);
    uint32_t **up = calloc(ncap, sizeof(uint32_t *));
    uint8_t *level = calloc(ncap, 1), *state = calloc(ncap, 1);
    if (!l0 || !up || !level || !state) {
        free(l0);
        free(up);
        free(level);
        free(state);
        return AG_ENOMEM;
    }
    for (uint32_t o = 0; o < g->cap; o++) {
        if (g->state[o] == NODE_EMPTY)
            continue;
        uint32_t p = map[o];
        level[p] = g->level[o];
        state[p] = p < vcap ? NODE_LIVE : NODE_TOMB;
        const uint32_t *src = links_of(g, o, 0);
        uint32_t *dst = (uint32_t *)(void *)(l0 + (size_t)p * h->bstride);
        dst[0] = src[0];
        for (uint32_t i = 1; i <= src[0]; i++)
            dst[i] = map[src[i]];
        up[p] = g->up[o];
        g->up[o] = NULL;
        for (int lc = 1; lc <= level[p]; lc++) {
            uint32_t *l = up[p] + (size_t)(lc - 1) * (h->m + 1);
            for (uint32_t i = 1; i <= l[0]; i++)
                l[i] = map[l[i]];
        }
    }
    graph_release(h);
    h->blk = l0;
    h->up = up;
    h->level = level;
    h->state = state;
    h->cap = ncap;
    h->entry = entry;
    h->max_level = entry == NO_NODE ? 0 : level[entry];
    h->n_live = kept;
    h->n_tomb = dropped;
    h->built = true;
    return 0;
}

int ag_hnsw_resume(ag_index_t *ix, const char *path, ag_hnsw_slot_fn slot_of, void *ud,
                   size_t key_len, ag_hnsw_resume_t *out)
{
    memset(out, 0, sizeof(*out));
    if (!ag_index_is_hnsw(ix) || !path || (key_len && !slot_of) || key_len > MAX_KEY_LEN)
        return AG_EINVAL;
    hnsw_t *h = (hnsw_t *)ix;
    file_header_t hd;
    uint8_t *body = NULL;
    int rc = file_read(h, path, key_len, &hd, &body);
    if (rc)
        return rc;
    if (hd.cap == 0) { /* saved before the graph was built: nothing to reuse */
        free(body);
        return hd.body_len == 0 && hd.n_live == 0 && hd.n_tomb == 0 ? 0 : AG_EINVAL;
    }
    hnsw_t g = *h;
    g.up = NULL;
    g.blk = NULL;
    g.level = g.state = NULL;
    g.indeg = NULL;
    rbuf_t r = {body, (size_t)hd.body_len, 0};
    uint32_t *map = NULL;
    uint8_t *claimed = NULL;
    if ((rc = body_read(&g, &hd, &r)) != 0)
        goto done;
    rc = AG_EINVAL;
    if (r.n - r.off != (size_t)hd.n_live * (key_len + 8))
        goto done;
    ag_vecstore_view_t v;
    ag_vecstore_view(ix->vs, &v);
    uint32_t vcap = v.capacity, kept = 0, dropped = 0;
    rc = AG_ENOMEM;
    map = malloc((size_t)g.cap * sizeof(uint32_t));
    claimed = calloc(vcap ? vcap : 1, 1);
    if (!map || !claimed)
        goto done;
    const uint8_t *kp = r.p + r.off;
    for (uint32_t o = 0; o < g.cap; o++) {
        map[o] = NO_NODE;
        if (g.state[o] == NODE_EMPTY)
            continue;
        if (g.state[o] == NODE_LIVE) {
            uint64_t vh;
            memcpy(&vh, kp + key_len, sizeof(vh));
            uint32_t n = key_len ? slot_of(ud, kp) : o;
            kp += key_len + 8;
            if (n < vcap && !claimed[n] && ag_vecstore_has(ix->vs, n) &&
                row_hash(ag_vecstore_view_row(&v, n), v.dim) == vh) {
                claimed[n] = 1;
                map[o] = n;
                kept++;
                continue;
            }
        }
        map[o] = vcap + dropped++; /* removed, changed, or a tombstone already */
    }
    if ((uint64_t)vcap + dropped > AG_VECSTORE_MAX_SLOTS)
        goto done;
    uint32_t ncap = AG_MAX(vcap + dropped, 1u);
    uint32_t entry = hd.entry == NO_NODE ? NO_NODE : map[hd.entry];
    if ((rc = install_mapped(h, &g, map, ncap, vcap, kept, dropped, entry)) != 0)
        goto done;
    sync_payload(h); /* the file has links only: payloads from the vecstore */
    pend_clear(h);
    h->deferred = false;
    /* Dropped nodes go now; the repair reconnects the nodes that linked to them. */
    if (h->n_tomb > 0)
        ag_hnsw_repair(ix);
    if (h->n_tomb > 0) { /* the repair ran out of memory; tombstones past vcap have no rows */
        rc = AG_ENOMEM;
        goto done;
    }
    if (vcap > 0 && h->cap > vcap)
        h->cap = vcap; /* the places past the vecstore are empty again */
    /* Every stored vector without a node of its own is linked again. */
    uint32_t requeued = 0;
    rc = 0;
    for (uint32_t w = 0; rc == 0 && w < (vcap + 63u) / 64u; w++) {
        uint64_t bits = v.present[w];
        while (bits && rc == 0) {
            uint32_t s = w * 64u + (unsigned)__builtin_ctzll(bits);
            bits &= bits - 1;
            if (s < h->cap && h->state[s] == NODE_LIVE)
                continue;
            requeued++;
            rc = h->background ? pend_push(h, s) : insert(h, s);
        }
    }
    h->mutations++;
    /* Current as loaded only if nothing was dropped or queued; else the next checkpoint is due. */
    atomic_store(&h->saved_mutations,
                 dropped == 0 && requeued == 0 ? h->mutations : h->mutations - 1);
    out->built = true;
    out->kept = kept;
    out->dropped = dropped;
    out->relinked = requeued;
done:
    graph_release(&g);
    free(map);
    free(claimed);
    free(body);
    return rc;
}

/* ---- start-up ------------------------------------------------------------------------------- */

void ag_hnsw_defer(ag_index_t *ix)
{
    hnsw_t *h = (hnsw_t *)ix;
    graph_release(h);
    h->up = NULL;
    h->blk = NULL;
    h->level = h->state = NULL;
    h->cap = 0;
    h->entry = NO_NODE;
    h->max_level = 0;
    h->n_live = h->n_tomb = 0;
    h->built = false;
    h->deferred = true;
    h->scan_codes =
        false; /* adds record nothing now: codes would go stale (finish lays them out) */
    sk_drop(h);
}

int ag_hnsw_finish(ag_index_t *ix, const char *path, ag_hnsw_slot_fn slot_of, void *ud,
                   size_t key_len)
{
    hnsw_t *h = (hnsw_t *)ix;
    h->deferred = false;
    if (h->quant && ag_quant_fit(h->quant, ix->vs) != 0)
        ag_log(AG_LOG_WARN, "hnsw: out of memory encoding the quantized vectors; searches rank "
                            "with the float vectors until the next write");
    sync_payload(h); /* the graph is empty here: just the block layout for the payload kind */
    uint32_t count = ag_vecstore_count(ix->vs);
    if (path) {
        double t0 = ag_now_mono();
        ag_hnsw_resume_t rs;
        int rc = ag_hnsw_resume(ix, path, slot_of, ud, key_len, &rs);
        if (rc == 0 && rs.built) {
            ag_log(AG_LOG_INFO,
                   "hnsw: resumed %s in %.2f s: %u points kept, %u dropped, %u to link again", path,
                   ag_now_mono() - t0, rs.kept, rs.dropped, rs.relinked);
            return 0;
        }
        if (rc == AG_ENOMEM) { /* the graph may be half made: exact scans until the next start */
            ag_hnsw_defer(ix);
            h->deferred = false;
            return rc;
        }
        if (rc != 0 && count > h->full_scan)
            ag_log(AG_LOG_INFO, "hnsw: %s is %s; rebuilding the graph", path,
                   rc == AG_ENOTFOUND ? "missing"
                   : rc == AG_EINVAL  ? "stale or corrupt"
                                      : "unreadable");
    }
    h->built = h->full_scan == 0;
    h->mutations++;
    if (count <= h->full_scan)
        return 0; /* stays a lazy exact index until the threshold is crossed */
    if (h->background) {
        /* Serve at once (queued slots are scored exactly) and link in the background. */
        h->built = false;
        ag_log(AG_LOG_INFO, "hnsw: %u points queued for background linking", count);
        return hnsw_add(ix, UINT32_MAX);
    }
    int rc = build_all(h);
    if (rc) { /* a partial graph would miss points: fall back to exact scans */
        ag_hnsw_defer(ix);
        h->deferred = false;
    }
    return rc;
}

bool ag_hnsw_dirty(const ag_index_t *ix)
{
    const hnsw_t *h = (const hnsw_t *)ix;
    return h->built && atomic_load(&h->saved_mutations) != h->mutations;
}
