/* Vector store, exact index (against a sort-everything oracle) and the worker pool. */
#include "ag_base.h"

#include <math.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "ag_clock.h"
#include "ag_pool.h"
#include "index/ag_index.h"

/* ---- helpers -------------------------------------------------------------------------------- */

typedef struct rng {
    uint64_t s;
} rng_t;

static uint64_t next_u64(rng_t *r)
{
    uint64_t x = r->s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return r->s = x;
}

static uint32_t below(rng_t *r, uint32_t n)
{
    return (uint32_t)(next_u64(r) % n);
}

static float frand(rng_t *r)
{
    return (float)((double)(next_u64(r) >> 11) / (double)(UINT64_C(1) << 53) * 2.0 - 1.0);
}

static void fill(rng_t *r, float *v, uint32_t dim)
{
    for (uint32_t i = 0; i < dim; i++)
        v[i] = frand(r);
}

static const ag_distance_t all_dists[] = {AG_DIST_COSINE, AG_DIST_DOT, AG_DIST_EUCLID,
                                          AG_DIST_MANHATTAN};

/* The oracle: score every eligible slot with ag_distance_score, sort everything, cut at k. */
typedef struct oracle_query {
    const ag_vecstore_t *vs;
    ag_distance_t dist;
    const float *q;
    ag_accept_fn accept;
    const void *ud;
    const uint32_t *cand;
    size_t ncand;
    bool use_cand;
    bool has_thr;
    float thr;
} oracle_query_t;

static ag_distance_t sort_dist;

static int cmp_oracle(const void *pa, const void *pb)
{
    const ag_hit_t *a = pa, *b = pb;
    if (a->score != b->score) {
        bool a_first =
            ag_distance_higher_is_better(sort_dist) ? a->score > b->score : a->score < b->score;
        return a_first ? -1 : 1;
    }
    return (a->slot > b->slot) - (a->slot < b->slot);
}

static bool oracle_eligible(const oracle_query_t *oq, const bool *in_cand, uint32_t slot)
{
    if (!ag_vecstore_get(oq->vs, slot))
        return false;
    if (oq->use_cand && !in_cand[slot])
        return false;
    return !oq->accept || oq->accept(oq->ud, slot);
}

/* Returns the number of hits written to out (room for k). */
static size_t oracle(const oracle_query_t *oq, size_t k, ag_hit_t *out)
{
    uint32_t cap = ag_vecstore_capacity(oq->vs);
    uint32_t dim = ag_vecstore_dim(oq->vs);
    ag_hit_t *all = malloc((cap + 1) * sizeof(*all));
    bool *in_cand = calloc(cap + 1, sizeof(bool));
    assert_non_null(all);
    assert_non_null(in_cand);
    for (size_t i = 0; oq->use_cand && i < oq->ncand; i++)
        if (oq->cand[i] < cap)
            in_cand[oq->cand[i]] = true;
    size_t n = 0;
    for (uint32_t s = 0; s < cap; s++) {
        if (!oracle_eligible(oq, in_cand, s))
            continue;
        float sc = ag_distance_score(oq->dist, oq->q, ag_vecstore_get(oq->vs, s), dim);
        if (oq->has_thr) {
            bool keep = ag_distance_higher_is_better(oq->dist) ? sc >= oq->thr : sc <= oq->thr;
            if (!keep)
                continue;
        }
        all[n++] = (ag_hit_t){s, sc};
    }
    sort_dist = oq->dist;
    qsort(all, n, sizeof(*all), cmp_oracle);
    n = AG_MIN(n, k);
    memcpy(out, all, n * sizeof(*out));
    free(all);
    free(in_cand);
    return n;
}

static void assert_same_hits(const ag_hit_t *got, size_t ngot, const ag_hit_t *want, size_t nwant)
{
    if (ngot != nwant)
        fail_msg("got %zu hits, want %zu", ngot, nwant);
    for (size_t i = 0; i < ngot; i++) {
        if (got[i].slot != want[i].slot || got[i].score != want[i].score)
            fail_msg("hit %zu: got (%u, %.9g) want (%u, %.9g)", i, got[i].slot,
                     (double)got[i].score, want[i].slot, (double)want[i].score);
    }
}

static bool accept_not_mod(const void *ud, uint32_t slot)
{
    return slot % *(const uint32_t *)ud != 0;
}

/* ---- vecstore ------------------------------------------------------------------------------- */

static void test_vecstore_basics(void **state)
{
    AG_UNUSED(state);
    ag_vecstore_t *vs = NULL;
    assert_int_equal(ag_vecstore_new(0, &vs), AG_EINVAL);
    assert_int_equal(ag_vecstore_new(AG_MAX_DIM + 1, &vs), AG_EINVAL);
    assert_int_equal(ag_vecstore_new(5, &vs), 0);
    assert_int_equal(ag_vecstore_dim(vs), 5);
    assert_int_equal(ag_vecstore_capacity(vs), 0);
    assert_int_equal(ag_vecstore_count(vs), 0);
    assert_null(ag_vecstore_get(vs, 0));
    ag_vecstore_clear(vs, 3); /* beyond capacity: no-op */

    float v[5] = {1, 2, 3, 4, 5};
    assert_int_equal(ag_vecstore_set(vs, 0, v), 0);
    assert_true(ag_vecstore_capacity(vs) >= 1);
    const float *g = ag_vecstore_get(vs, 0);
    assert_non_null(g);
    assert_memory_equal(g, v, sizeof(v));
    assert_int_equal((uintptr_t)g % 64, 0);
    assert_int_equal(ag_vecstore_count(vs), 1);
    /* replacing keeps the count */
    v[0] = 9;
    assert_int_equal(ag_vecstore_set(vs, 0, v), 0);
    assert_int_equal(ag_vecstore_count(vs), 1);
    assert_true(ag_vecstore_get(vs, 0)[0] == 9.0f);

    ag_vecstore_view_t view;
    ag_vecstore_view(vs, &view);
    assert_int_equal(view.stride, 16);
    for (size_t i = 5; i < view.stride; i++) /* padding is zero */
        assert_true(ag_vecstore_view_row(&view, 0)[i] == 0.0f);
    assert_true(ag_vecstore_view_has(&view, 0));
    assert_false(ag_vecstore_view_has(&view, 1));
    assert_false(ag_vecstore_view_has(&view, view.capacity));

    ag_vecstore_clear(vs, 0);
    assert_null(ag_vecstore_get(vs, 0));
    assert_int_equal(ag_vecstore_count(vs), 0);
    ag_vecstore_clear(vs, 0);
    assert_int_equal(ag_vecstore_count(vs), 0);

    assert_int_equal(ag_vecstore_set(vs, AG_VECSTORE_MAX_SLOTS, v), AG_EINVAL);
    ag_vecstore_free(vs);
    ag_vecstore_free(NULL);

    /* stride rounds up to 16 floats */
    assert_int_equal(ag_vecstore_new(16, &vs), 0);
    ag_vecstore_view(vs, &view);
    assert_int_equal(view.stride, 16);
    ag_vecstore_free(vs);
    assert_int_equal(ag_vecstore_new(17, &vs), 0);
    ag_vecstore_view(vs, &view);
    assert_int_equal(view.stride, 32);
    ag_vecstore_free(vs);
}

/* An external store (on_disk vectors) keeps presence only and asks its owner for every row;
 * the exact index scores through it like through in-memory rows. */
static _Alignas(64) float ext_rows[8][16];
static int ext_calls;
static const float *ext_fetch(void *ud, uint32_t slot)
{
    assert_ptr_equal(ud, ext_rows);
    ext_calls++;
    return ext_rows[slot];
}

static void test_vecstore_external(void **state)
{
    (void)state;
    ag_vecstore_t *vs = NULL, *ram = NULL;
    assert_int_equal(ag_vecstore_new(3, &vs), 0);
    assert_int_equal(ag_vecstore_new(3, &ram), 0);
    assert_int_equal(ag_vecstore_set_external(vs, ext_fetch, ext_rows), 0);
    for (uint32_t s = 0; s < 8; s++) {
        float v[3] = {(float)s, (float)(s * s) * 0.5f, -(float)s};
        memset(ext_rows[s], 0, sizeof(ext_rows[s]));
        memcpy(ext_rows[s], v, sizeof(v));
        if (s == 5)
            continue;
        assert_int_equal(ag_vecstore_set(vs, s, NULL), 0);
        assert_int_equal(ag_vecstore_set(ram, s, v), 0);
    }
    ext_calls = 0;
    assert_true(ag_vecstore_has(vs, 4));
    assert_false(ag_vecstore_has(vs, 5));
    assert_int_equal(ext_calls, 0); /* presence never reads a row */
    assert_null(ag_vecstore_get(vs, 5));
    assert_ptr_equal(ag_vecstore_get(vs, 4), ext_rows[4]);
    assert_int_equal(ext_calls, 1);
    /* no rows held: only the store and its presence words */
    assert_true(ag_vecstore_memory(vs) < ag_vecstore_memory(ram));
    ag_vecstore_t *other = NULL;
    assert_int_equal(ag_vecstore_new(3, &other), 0);
    assert_int_equal(ag_vecstore_set(other, 0, ext_rows[0]), 0);
    assert_int_equal(ag_vecstore_set_external(other, ext_fetch, ext_rows), AG_EINVAL);
    ag_vecstore_free(other);

    ag_index_t *a = NULL, *b = NULL;
    assert_int_equal(ag_index_exact_new(vs, AG_DIST_EUCLID, &a), 0);
    assert_int_equal(ag_index_exact_new(ram, AG_DIST_EUCLID, &b), 0);
    for (uint32_t s = 0; s < 8; s++) {
        if (s == 5)
            continue;
        assert_int_equal(ag_index_add(a, s), 0);
        assert_int_equal(ag_index_add(b, s), 0);
    }
    float q[3] = {2.2f, 1.0f, -2.0f};
    ag_hit_t ha[4], hb[4];
    size_t na = 0, nb = 0;
    assert_int_equal(ag_index_search(a, q, 4, NULL, NULL, ha, &na), 0);
    assert_int_equal(ag_index_search(b, q, 4, NULL, NULL, hb, &nb), 0);
    assert_int_equal(na, 4);
    assert_int_equal(nb, 4);
    for (size_t i = 0; i < 4; i++) {
        assert_int_equal(ha[i].slot, hb[i].slot);
        assert_true(ha[i].score == hb[i].score);
    }
    assert_true(ext_calls > 4);
    ag_index_free(a);
    ag_index_free(b);
    ag_vecstore_free(vs);
    ag_vecstore_free(ram);
}

static void test_vecstore_growth(void **state)
{
    AG_UNUSED(state);
    rng_t r = {0x1234567u};
    /* 40,000 rows of 192 bytes: the rows move from malloc to their own mapping (2 MB on) and
     * that mapping then grows by mremap twice; every row must survive each move. */
    const uint32_t dim = 33, n = 40000;
    ag_vecstore_t *vs;
    assert_int_equal(ag_vecstore_new(dim, &vs), 0);
    float *ref = calloc((size_t)n * dim, sizeof(float));
    bool *present = calloc(n, sizeof(bool));
    assert_non_null(ref);
    assert_non_null(present);
    uint32_t prev_cap = 0, count = 0;
    for (uint32_t s = 0; s < n; s++) {
        fill(&r, ref + (size_t)s * dim, dim);
        assert_int_equal(ag_vecstore_set(vs, s, ref + (size_t)s * dim), 0);
        present[s] = true;
        count++;
        uint32_t cap = ag_vecstore_capacity(vs);
        assert_true(cap > s);
        if (cap != prev_cap && prev_cap != 0)
            assert_int_equal(cap, prev_cap * 2); /* doubling */
        prev_cap = cap;
        if (s % 7 == 3) {
            uint32_t victim = below(&r, s + 1);
            ag_vecstore_clear(vs, victim);
            count -= present[victim];
            present[victim] = false;
        }
    }
    assert_int_equal(ag_vecstore_count(vs), count);
    for (uint32_t s = 0; s < n; s++) {
        const float *g = ag_vecstore_get(vs, s);
        if (!present[s]) {
            assert_null(g);
            continue;
        }
        assert_non_null(g);
        assert_int_equal((uintptr_t)g % 64, 0);
        assert_memory_equal(g, ref + (size_t)s * dim, dim * sizeof(float));
    }
    /* a sparse jump grows straight to a power of two above the slot */
    assert_int_equal(ag_vecstore_set(vs, 100000, ref), 0);
    assert_true(ag_vecstore_capacity(vs) > 100000);
    if (present[4999])
        assert_memory_equal(ag_vecstore_get(vs, 4999), ref + (size_t)4999 * dim,
                            dim * sizeof(float));
    assert_null(ag_vecstore_get(vs, 99999));
    assert_true(ag_vecstore_memory(vs) >= (size_t)ag_vecstore_capacity(vs) * 48 * sizeof(float));
    free(ref);
    free(present);
    ag_vecstore_free(vs);
}

/* ---- exact index vs oracle ------------------------------------------------------------------ */

typedef struct dataset {
    ag_vecstore_t *vs;
    uint32_t dim;
    uint32_t slots; /* slots [0, slots) were considered for insertion */
} dataset_t;

/* Holes (never set), removed slots, and exact duplicates (for ties). */
static void make_dataset(dataset_t *d, rng_t *r, uint32_t slots, uint32_t dim, ag_distance_t dist)
{
    d->dim = dim;
    d->slots = slots;
    assert_int_equal(ag_vecstore_new(dim, &d->vs), 0);
    float *v = malloc(dim * sizeof(float));
    assert_non_null(v);
    for (uint32_t s = 0; s < slots; s++) {
        if (below(r, 10) == 0)
            continue; /* hole */
        if (s % 50 == 49 && ag_vecstore_get(d->vs, s - 1))
            memcpy(v, ag_vecstore_get(d->vs, s - 1), dim * sizeof(float)); /* a tie */
        else
            fill(r, v, dim);
        if (dist == AG_DIST_COSINE)
            ag_vector_normalize(v, dim);
        assert_int_equal(ag_vecstore_set(d->vs, s, v), 0);
    }
    for (uint32_t s = 0; s < slots; s += 13)
        ag_vecstore_clear(d->vs, s); /* removed */
    free(v);
}

/* A threshold that cuts the full result list about a third of the way down. */
static float pick_threshold(const oracle_query_t *base, size_t total)
{
    ag_hit_t *all = malloc((total + 1) * sizeof(*all));
    assert_non_null(all);
    oracle_query_t oq = *base;
    oq.has_thr = false;
    size_t n = oracle(&oq, total, all);
    float t = n ? all[n / 3].score : 0.0f;
    free(all);
    return t;
}

static void check_query(const ag_index_t *ix, const oracle_query_t *oq, size_t k)
{
    ag_index_filter_t flt = {
        .accept = oq->accept,
        .ud = oq->ud,
        .candidates = oq->use_cand ? oq->cand : NULL,
        .n_candidates = oq->ncand,
    };
    ag_search_params_t params = {.has_threshold = oq->has_thr, .score_threshold = oq->thr};
    ag_hit_t *got = malloc((k + 1) * sizeof(*got));
    ag_hit_t *want = malloc((k + 1) * sizeof(*want));
    assert_non_null(got);
    assert_non_null(want);
    size_t ngot = 12345;
    assert_int_equal(ag_index_search(ix, oq->q, k, &flt, &params, got, &ngot), 0);
    size_t nwant = oracle(oq, k, want);
    assert_same_hits(got, ngot, want, nwant);
    /* the planner's direct entry point gives the same answer */
    ngot = 12345;
    assert_int_equal(
        ag_index_score_candidates(ix->vs, ix->dist, oq->q, k, &flt, &params, got, &ngot), 0);
    assert_same_hits(got, ngot, want, nwant);
    free(got);
    free(want);
}

static void run_oracle_suite(dataset_t *d, ag_distance_t dist, rng_t *r, unsigned queries)
{
    ag_index_t *ix;
    assert_int_equal(ag_index_exact_new(d->vs, dist, &ix), 0);
    assert_string_equal(ix->vt->name, "exact");
    uint32_t mod = 3;
    /* candidates: ascending, with absent slots, slots beyond capacity and a repeat */
    size_t ncand = 0;
    uint32_t *cand = malloc((d->slots + 8) * sizeof(uint32_t));
    assert_non_null(cand);
    for (uint32_t s = 0; s < d->slots; s++) {
        if (below(r, 4) == 0) {
            cand[ncand++] = s;
            if (s % 97 == 5)
                cand[ncand++] = s;
        }
    }
    cand[ncand++] = d->slots + 100000;
    float *q = malloc(d->dim * sizeof(float));
    assert_non_null(q);
    static const size_t ks[] = {1, 7, 10, 100000};
    for (unsigned qi = 0; qi < queries; qi++) {
        fill(r, q, d->dim);
        if (dist == AG_DIST_COSINE)
            ag_vector_normalize(q, d->dim);
        if (qi == 0) /* a query equal to a stored vector: distance 0 at the top */
            memcpy(q, ag_vecstore_get(d->vs, 1) ? ag_vecstore_get(d->vs, 1) : q,
                   d->dim * sizeof(float));
        for (unsigned variant = 0; variant < 8; variant++) {
            oracle_query_t oq = {.vs = d->vs, .dist = dist, .q = q};
            if (variant & 1) {
                oq.accept = accept_not_mod;
                oq.ud = &mod;
            }
            if (variant & 2) {
                oq.use_cand = true;
                oq.cand = cand;
                oq.ncand = ncand;
            }
            if (variant & 4) {
                oq.thr = pick_threshold(&oq, d->slots);
                oq.has_thr = true;
            }
            for (size_t ki = 0; ki < AG_ARRAY_LEN(ks); ki++)
                check_query(ix, &oq, ks[ki]);
        }
    }
    free(q);
    free(cand);
    ag_index_free(ix);
}

static void test_exact_vs_oracle(void **state)
{
    AG_UNUSED(state);
    rng_t r = {0xABCDEF12345ull};
    for (size_t di = 0; di < AG_ARRAY_LEN(all_dists); di++) {
        dataset_t d;
        make_dataset(&d, &r, 700, 19, all_dists[di]);
        run_oracle_suite(&d, all_dists[di], &r, 6);
        ag_vecstore_free(d.vs);
    }
}

static void test_exact_edge_cases(void **state)
{
    AG_UNUSED(state);
    ag_vecstore_t *vs;
    assert_int_equal(ag_vecstore_new(4, &vs), 0);
    ag_index_t *ix;
    assert_int_equal(ag_index_exact_new(vs, AG_DIST_EUCLID, &ix), 0);
    assert_int_equal(ag_index_exact_new(NULL, AG_DIST_EUCLID, &ix), AG_EINVAL);
    assert_int_equal(ag_index_exact_new(vs, (ag_distance_t)9, &ix), AG_EINVAL);
    float q[4] = {0, 0, 0, 0};
    ag_hit_t out[4];
    size_t n = 99;
    /* empty store */
    assert_int_equal(ag_index_search(ix, q, 4, NULL, NULL, out, &n), 0);
    assert_int_equal(n, 0);
    assert_int_equal(ag_index_add(ix, 0), AG_ENOTFOUND);

    float a[4] = {1, 0, 0, 0}, b[4] = {0, 2, 0, 0}, c[4] = {0, 0, 0, 3};
    assert_int_equal(ag_vecstore_set(vs, 2, a), 0);
    assert_int_equal(ag_vecstore_set(vs, 0, b), 0);
    assert_int_equal(ag_vecstore_set(vs, 5, c), 0);
    assert_int_equal(ag_index_add(ix, 2), 0);
    assert_int_equal(ag_index_add(ix, 0), 0);
    assert_int_equal(ag_index_add(ix, 5), 0);
    assert_int_equal(ag_index_search(ix, q, 4, NULL, NULL, out, &n), 0);
    assert_int_equal(n, 3);
    assert_int_equal(out[0].slot, 2);
    assert_true(out[0].score == 1.0f);
    assert_int_equal(out[1].slot, 0);
    assert_true(out[1].score == 2.0f);
    assert_int_equal(out[2].slot, 5);
    assert_true(out[2].score == 3.0f);

    /* k = 0, and NULL out with k = 0 */
    n = 99;
    assert_int_equal(ag_index_search(ix, q, 0, NULL, NULL, NULL, &n), 0);
    assert_int_equal(n, 0);
    /* bad arguments */
    assert_int_equal(ag_index_search(ix, NULL, 4, NULL, NULL, out, &n), AG_EINVAL);
    ag_search_params_t nan_thr = {.has_threshold = true, .score_threshold = NAN};
    assert_int_equal(ag_index_search(ix, q, 4, NULL, &nan_thr, out, &n), AG_EINVAL);
    /* an empty candidate list means no slot at all */
    uint32_t none = 0;
    ag_index_filter_t empty = {.candidates = &none, .n_candidates = 0};
    n = 99;
    assert_int_equal(ag_index_search(ix, q, 4, &empty, NULL, out, &n), 0);
    assert_int_equal(n, 0);
    /* threshold is inclusive: Euclid keeps score <= t */
    ag_search_params_t thr = {.has_threshold = true, .score_threshold = 2.0f};
    assert_int_equal(ag_index_search(ix, q, 4, NULL, &thr, out, &n), 0);
    assert_int_equal(n, 2);
    assert_int_equal(out[1].slot, 0);
    /* removal from the store is what removes a vector; remove itself never fails */
    ag_vecstore_clear(vs, 2);
    assert_int_equal(ag_index_remove(ix, 2), 0);
    assert_int_equal(ag_index_search(ix, q, 4, NULL, NULL, out, &n), 0);
    assert_int_equal(n, 2);
    assert_int_equal(out[0].slot, 0);
    ag_index_free(ix);
    ag_index_free(NULL);

    /* Dot: higher is better, threshold keeps score >= t */
    assert_int_equal(ag_index_exact_new(vs, AG_DIST_DOT, &ix), 0);
    float qd[4] = {1, 1, 1, 1};
    assert_int_equal(ag_index_search(ix, qd, 4, NULL, NULL, out, &n), 0);
    assert_int_equal(n, 2);
    assert_int_equal(out[0].slot, 5);
    assert_true(out[0].score == 3.0f);
    thr.score_threshold = 3.0f;
    assert_int_equal(ag_index_search(ix, qd, 4, NULL, &thr, out, &n), 0);
    assert_int_equal(n, 1);
    ag_index_free(ix);
    ag_vecstore_free(vs);
}

static void test_topk_collector(void **state)
{
    AG_UNUSED(state);
    rng_t r = {77};
    ag_hit_t buf[16], all[500];
    for (int round = 0; round < 50; round++) {
        size_t k = 1 + below(&r, 16);
        ag_topk_t t;
        ag_topk_init(&t, buf, k);
        for (uint32_t i = 0; i < 500; i++) {
            all[i] = (ag_hit_t){below(&r, 1000), (float)below(&r, 20)}; /* many ties */
            ag_topk_push(&t, all[i].slot, all[i].score);
        }
        ag_topk_push(&t, 3, NAN); /* dropped */
        size_t n = ag_topk_finish(&t);
        sort_dist = AG_DIST_DOT;
        qsort(all, 500, sizeof(*all), cmp_oracle);
        assert_same_hits(buf, n, all, k);
    }
    ag_topk_t t;
    ag_topk_init(&t, NULL, 0);
    ag_topk_push(&t, 1, 1.0f);
    assert_false(ag_topk_would_accept(&t, 1.0f));
    assert_int_equal(ag_topk_finish(&t), 0);
}

/* ---- the pool ------------------------------------------------------------------------------- */

typedef struct count_job {
    atomic_uint *hits;
    size_t n;
    bool nest;
} count_job_t;

static void count_fn(void *ud, size_t i)
{
    count_job_t *c = ud;
    atomic_fetch_add(&c->hits[i], 1u);
}

static void nesting_fn(void *ud, size_t i)
{
    count_job_t *c = ud;
    /* a task that itself uses the pool: must run (inline) rather than deadlock */
    count_job_t inner = {.hits = c->hits + i * 4, .n = 4};
    ag_pool_run(4, count_fn, &inner);
}

typedef struct pool_thread {
    uint64_t seed;
    int failures;
} pool_thread_t;

static void *pool_caller(void *arg)
{
    pool_thread_t *pt = arg;
    rng_t r = {pt->seed};
    for (int iter = 0; iter < 300; iter++) {
        size_t n = 1 + below(&r, 200);
        bool nest = below(&r, 4) == 0;
        size_t slots = nest ? n * 4 : n;
        atomic_uint *hits = calloc(slots, sizeof(*hits));
        if (!hits) {
            pt->failures++;
            continue;
        }
        count_job_t job = {.hits = hits, .n = n};
        ag_pool_run(n, nest ? nesting_fn : count_fn, &job);
        for (size_t i = 0; i < slots; i++)
            if (atomic_load(&hits[i]) != 1u)
                pt->failures++;
        free(hits);
    }
    return NULL;
}

static void run_concurrent_callers(void)
{
    enum { NT = 6 };
    pthread_t th[NT];
    pool_thread_t pt[NT];
    for (int i = 0; i < NT; i++) {
        pt[i] = (pool_thread_t){.seed = 0x5555u + (uint64_t)i * 7919u};
        assert_int_equal(pthread_create(&th[i], NULL, pool_caller, &pt[i]), 0);
    }
    for (int i = 0; i < NT; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(pt[i].failures, 0);
    }
}

/* Two tasks that each wait for the other: only completes if they run on different threads. */
static atomic_int rendezvous;
static atomic_int rendezvous_ok;

static void rendezvous_fn(void *ud, size_t i)
{
    AG_UNUSED(ud);
    AG_UNUSED(i);
    atomic_fetch_add(&rendezvous, 1);
    double until = ag_now_mono() + 10.0;
    while (atomic_load(&rendezvous) < 2 && ag_now_mono() < until)
        ;
    if (atomic_load(&rendezvous) >= 2)
        atomic_fetch_add(&rendezvous_ok, 1);
}

static void test_pool(void **state)
{
    AG_UNUSED(state);
    /* not running: inline */
    assert_int_equal(ag_pool_size(), 1);
    atomic_uint hits[10] = {0};
    count_job_t job = {.hits = hits, .n = 10};
    ag_pool_run(10, count_fn, &job);
    for (int i = 0; i < 10; i++)
        assert_int_equal(atomic_load(&hits[i]), 1);
    ag_pool_run(0, count_fn, &job);
    run_concurrent_callers();

    assert_int_equal(ag_pool_init(3), 0);
    assert_int_equal(ag_pool_size(), 3);
    assert_int_equal(ag_pool_init(7), 0); /* idempotent */
    assert_int_equal(ag_pool_size(), 3);

    atomic_store(&rendezvous, 0);
    atomic_store(&rendezvous_ok, 0);
    ag_pool_run(2, rendezvous_fn, NULL);
    assert_int_equal(atomic_load(&rendezvous_ok), 2);

    run_concurrent_callers();
    ag_pool_shutdown();
    ag_pool_shutdown(); /* no-op */
    assert_int_equal(ag_pool_size(), 1);
    run_concurrent_callers();

    assert_int_equal(ag_pool_init(0), 0);
    assert_true(ag_pool_size() >= 1);
    run_concurrent_callers();
    ag_pool_shutdown();
}

/* ---- big scans through the pool ------------------------------------------------------------- */

typedef struct search_thread {
    const ag_index_t *ix;
    const float *queries;
    const ag_hit_t *want; /* per query, K hits */
    const size_t *nwant;
    unsigned nq;
    uint32_t mod;
    int failures;
} search_thread_t;

#define BIG_K 10

static void *search_caller(void *arg)
{
    search_thread_t *st = arg;
    uint32_t dim = ag_vecstore_dim(st->ix->vs);
    for (int rep = 0; rep < 3; rep++) {
        for (unsigned qi = 0; qi < st->nq; qi++) {
            ag_index_filter_t flt = {.accept = accept_not_mod, .ud = &st->mod};
            ag_hit_t got[BIG_K];
            size_t n;
            if (ag_index_search(st->ix, st->queries + (size_t)qi * dim, BIG_K, &flt, NULL, got,
                                &n) != 0 ||
                n != st->nwant[qi]) {
                st->failures++;
                continue;
            }
            for (size_t i = 0; i < n; i++) {
                const ag_hit_t *w = &st->want[(size_t)qi * BIG_K + i];
                if (got[i].slot != w->slot || got[i].score != w->score)
                    st->failures++;
            }
        }
    }
    return NULL;
}

static void test_exact_parallel(void **state)
{
    AG_UNUSED(state);
    rng_t r = {0xFEEDu};
    dataset_t d;
    make_dataset(&d, &r, AG_EXACT_PARALLEL_MIN + 10000, 8, AG_DIST_EUCLID);
    assert_int_equal(ag_pool_init(2), 0);
    assert_int_equal(ag_pool_size(), 2);
    run_oracle_suite(&d, AG_DIST_EUCLID, &r, 1);

    enum { NQ = 4, NT = 4 };
    ag_index_t *ix;
    assert_int_equal(ag_index_exact_new(d.vs, AG_DIST_EUCLID, &ix), 0);
    float queries[NQ * 8];
    ag_hit_t want[NQ * BIG_K];
    size_t nwant[NQ];
    uint32_t mod = 5;
    for (unsigned qi = 0; qi < NQ; qi++) {
        fill(&r, queries + (size_t)qi * 8, 8);
        oracle_query_t oq = {.vs = d.vs,
                             .dist = AG_DIST_EUCLID,
                             .q = queries + (size_t)qi * 8,
                             .accept = accept_not_mod,
                             .ud = &mod};
        nwant[qi] = oracle(&oq, BIG_K, want + (size_t)qi * BIG_K);
        assert_int_equal(nwant[qi], BIG_K);
    }
    pthread_t th[NT];
    search_thread_t st[NT];
    for (int i = 0; i < NT; i++) {
        st[i] = (search_thread_t){
            .ix = ix, .queries = queries, .want = want, .nwant = nwant, .nq = NQ, .mod = mod};
        assert_int_equal(pthread_create(&th[i], NULL, search_caller, &st[i]), 0);
    }
    for (int i = 0; i < NT; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(st[i].failures, 0);
    }
    ag_index_free(ix);
    ag_pool_shutdown();
    ag_vecstore_free(d.vs);
}

/* An exact scan stops at its deadline (request cost): AG_ETIMEOUT and no hits, serial and split
 * across the pool alike; a deadline in the future changes nothing. */
static void test_exact_deadline(void **state)
{
    AG_UNUSED(state);
    ag_vecstore_t *vs;
    assert_int_equal(ag_vecstore_new(8, &vs), 0);
    float v[8];
    for (uint32_t s = 0; s < 3 * AG_EXACT_PARALLEL_MIN; s++) {
        for (int d = 0; d < 8; d++)
            v[d] = (float)((s * 7 + (uint32_t)d * 3) % 11);
        assert_int_equal(ag_vecstore_set(vs, s, v), 0);
    }
    float q[8] = {1, 1, 1, 1, 1, 1, 1, 1};
    ag_hit_t out[10];
    size_t n = 99;
    uint32_t cand[100];
    for (uint32_t i = 0; i < 100; i++)
        cand[i] = i * 3;
    ag_index_filter_t few = {.candidates = cand, .n_candidates = 100};
    for (int pool = 0; pool < 2; pool++) {
        if (pool)
            ag_pool_init(4);
        ag_search_params_t late = {.deadline = ag_now_mono() - 1.0};
        n = 99;
        assert_int_equal(ag_index_score_candidates(vs, AG_DIST_DOT, q, 10, NULL, &late, out, &n),
                         AG_ETIMEOUT);
        assert_int_equal(n, 0);
        assert_int_equal(ag_index_score_candidates(vs, AG_DIST_DOT, q, 10, &few, &late, out, &n),
                         AG_ETIMEOUT);
        ag_search_params_t later = {.deadline = ag_now_mono() + 3600.0};
        assert_int_equal(ag_index_score_candidates(vs, AG_DIST_DOT, q, 10, NULL, &later, out, &n),
                         0);
        assert_int_equal(n, 10);
        ag_search_params_t none = {0};
        ag_hit_t ref[10];
        size_t nref = 0;
        assert_int_equal(ag_index_score_candidates(vs, AG_DIST_DOT, q, 10, NULL, &none, ref, &nref),
                         0);
        assert_int_equal(nref, 10);
        for (size_t i = 0; i < 10; i++)
            assert_int_equal(ref[i].slot, out[i].slot);
    }
    ag_pool_shutdown();
    ag_vecstore_free(vs);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vecstore_basics),
        cmocka_unit_test(test_vecstore_growth),
        cmocka_unit_test(test_vecstore_external),
        cmocka_unit_test(test_topk_collector),
        cmocka_unit_test(test_exact_edge_cases),
        cmocka_unit_test(test_exact_vs_oracle),
        cmocka_unit_test(test_pool),
        cmocka_unit_test(test_exact_parallel),
        cmocka_unit_test(test_exact_deadline),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
