/* Sparse inverted index against a brute-force scan of reference copies. */
#include "ag_base.h"

#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "ag_clock.h"
#include "index/ag_sparse.h"

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

#define MAX_NNZ 25

/* Reference copy of one slot, kept sorted by index. */
typedef struct ref_vec {
    bool present;
    uint32_t n;
    uint32_t idx[MAX_NNZ];
    float val[MAX_NNZ];
} ref_vec_t;

/* Mostly a small vocabulary (so lists are long and overlap), sometimes any 32-bit index (so the
 * dimension table grows and collides). */
static uint32_t draw_index(rng_t *r)
{
    return below(r, 8) == 0 ? (uint32_t)next_u64(r) : below(r, 300);
}

/* n unique indices in random order, values in [-1, 1) (some exactly 0). */
static uint32_t draw_vector(rng_t *r, uint32_t max_n, uint32_t *idx, float *val)
{
    uint32_t n = below(r, max_n + 1);
    for (uint32_t i = 0; i < n; i++) {
        bool dup;
        do {
            idx[i] = draw_index(r);
            dup = false;
            for (uint32_t j = 0; j < i; j++)
                dup |= idx[j] == idx[i];
        } while (dup);
        val[i] = below(r, 20) == 0 ? 0.0f : frand(r);
    }
    return n;
}

static void ref_set(ref_vec_t *rv, const uint32_t *idx, const float *val, uint32_t n)
{
    rv->present = true;
    rv->n = n;
    /* insertion sort by index */
    for (uint32_t i = 0; i < n; i++) {
        uint32_t j = i;
        while (j > 0 && rv->idx[j - 1] > idx[i]) {
            rv->idx[j] = rv->idx[j - 1];
            rv->val[j] = rv->val[j - 1];
            j--;
        }
        rv->idx[j] = idx[i];
        rv->val[j] = val[i];
    }
}

/* Dot product the brute-force way: for each stored index (ascending), look the query up. */
static float ref_dot(const ref_vec_t *rv, const ref_vec_t *q)
{
    float acc = 0.0f;
    for (uint32_t i = 0; i < rv->n; i++)
        for (uint32_t j = 0; j < q->n; j++)
            if (q->idx[j] == rv->idx[i])
                acc += rv->val[i] * q->val[j];
    return acc;
}

static int cmp_hits(const void *pa, const void *pb)
{
    const ag_hit_t *a = pa, *b = pb;
    if (a->score != b->score)
        return a->score > b->score ? -1 : 1;
    return (a->slot > b->slot) - (a->slot < b->slot);
}

static bool accept_odd(const void *ud, uint32_t slot)
{
    AG_UNUSED(ud);
    return slot % 2 == 1;
}

typedef struct oracle_q {
    const ref_vec_t *refs;
    uint32_t nslots;
    const ref_vec_t *q;
    bool odd_only;
    const bool *in_cand; /* NULL = no candidate list */
    bool has_thr;
    float thr;
} oracle_q_t;

static size_t oracle(const oracle_q_t *o, size_t k, ag_hit_t *out)
{
    ag_hit_t *all = malloc((o->nslots + 1) * sizeof(*all));
    assert_non_null(all);
    size_t n = 0;
    for (uint32_t s = 0; s < o->nslots; s++) {
        if (!o->refs[s].present || (o->odd_only && s % 2 == 0) || (o->in_cand && !o->in_cand[s]))
            continue;
        float sc = ref_dot(&o->refs[s], o->q);
        if (sc == 0.0f || (o->has_thr && sc < o->thr))
            continue;
        all[n++] = (ag_hit_t){s, sc};
    }
    qsort(all, n, sizeof(*all), cmp_hits);
    n = AG_MIN(n, k);
    memcpy(out, all, n * sizeof(*out));
    free(all);
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

static void assert_stored(const ag_sparse_t *sp, const ref_vec_t *refs, uint32_t nslots)
{
    uint32_t count = 0;
    for (uint32_t s = 0; s < nslots; s++) {
        const uint32_t *idx = NULL;
        const float *val = NULL;
        uint32_t n = 0;
        bool has = ag_sparse_get(sp, s, &idx, &val, &n);
        assert_int_equal(has, refs[s].present);
        if (!has)
            continue;
        count++;
        assert_int_equal(n, refs[s].n);
        if (n) {
            assert_memory_equal(idx, refs[s].idx, n * sizeof(uint32_t));
            assert_memory_equal(val, refs[s].val, n * sizeof(float));
        }
    }
    assert_int_equal(ag_sparse_count(sp), count);
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

/* Distinct indices over all present reference vectors. */
static size_t ref_dim_count(const ref_vec_t *refs, uint32_t nslots)
{
    uint32_t *all = malloc(((size_t)nslots * MAX_NNZ + 1) * sizeof(uint32_t));
    assert_non_null(all);
    size_t n = 0;
    for (uint32_t s = 0; s < nslots; s++)
        for (uint32_t j = 0; refs[s].present && j < refs[s].n; j++)
            all[n++] = refs[s].idx[j];
    qsort(all, n, sizeof(uint32_t), cmp_u32);
    size_t distinct = 0;
    for (size_t i = 0; i < n; i++)
        distinct += i == 0 || all[i] != all[i - 1];
    free(all);
    return distinct;
}

static void test_sparse_basics(void **state)
{
    AG_UNUSED(state);
    ag_sparse_t *sp;
    assert_int_equal(ag_sparse_new(&sp), 0);
    const uint32_t *gi;
    const float *gv;
    uint32_t gn;
    assert_false(ag_sparse_get(sp, 0, &gi, &gv, &gn));

    uint32_t i1[] = {7, 2, 100};
    float v1[] = {1.0f, 2.0f, 3.0f};
    assert_int_equal(ag_sparse_set(sp, 4, i1, v1, 3), 0);
    assert_true(ag_sparse_get(sp, 4, &gi, &gv, &gn));
    assert_int_equal(gn, 3);
    assert_int_equal(gi[0], 2);
    assert_int_equal(gi[1], 7);
    assert_int_equal(gi[2], 100);
    assert_true(gv[0] == 2.0f && gv[1] == 1.0f && gv[2] == 3.0f);

    uint32_t i2[] = {2, 9};
    float v2[] = {-1.0f, 5.0f};
    assert_int_equal(ag_sparse_set(sp, 1, i2, v2, 2), 0);
    /* present but empty */
    assert_int_equal(ag_sparse_set(sp, 2, NULL, NULL, 0), 0);
    assert_true(ag_sparse_get(sp, 2, &gi, &gv, &gn));
    assert_int_equal(gn, 0);
    assert_int_equal(ag_sparse_count(sp), 3);

    uint32_t qi[] = {2};
    float qv[] = {1.0f};
    ag_hit_t out[8];
    size_t n = 99;
    assert_int_equal(ag_sparse_search(sp, qi, qv, 1, 8, NULL, NULL, out, &n), 0);
    assert_int_equal(n, 2);
    assert_int_equal(out[0].slot, 4);
    assert_true(out[0].score == 2.0f);
    assert_int_equal(out[1].slot, 1);
    assert_true(out[1].score == -1.0f);

    /* replacing drops the old postings */
    uint32_t i3[] = {9};
    float v3[] = {1.0f};
    assert_int_equal(ag_sparse_set(sp, 4, i3, v3, 1), 0);
    assert_int_equal(ag_sparse_search(sp, qi, qv, 1, 8, NULL, NULL, out, &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(out[0].slot, 1);
    assert_int_equal(ag_sparse_count(sp), 3);

    /* a repeated query index adds up: 9 -> 0.5 + 0.5 */
    uint32_t qd[] = {9, 9};
    float qdv[] = {0.5f, 0.5f};
    assert_int_equal(ag_sparse_search(sp, qd, qdv, 2, 8, NULL, NULL, out, &n), 0);
    assert_int_equal(n, 2);
    assert_int_equal(out[0].slot, 1);
    assert_true(out[0].score == 5.0f);
    assert_int_equal(out[1].slot, 4);
    assert_true(out[1].score == 1.0f);

    /* a score of exactly 0 is not a hit: 1*2 + 1*(-2) */
    uint32_t ic[] = {50, 51};
    float vc[] = {2.0f, -2.0f};
    assert_int_equal(ag_sparse_set(sp, 9, ic, vc, 2), 0);
    uint32_t qc[] = {51, 50};
    float qcv[] = {1.0f, 1.0f};
    assert_int_equal(ag_sparse_search(sp, qc, qcv, 2, 8, NULL, NULL, out, &n), 0);
    assert_int_equal(n, 0);

    /* clear */
    ag_sparse_clear(sp, 1);
    ag_sparse_clear(sp, 1);
    ag_sparse_clear(sp, 12345);
    assert_false(ag_sparse_get(sp, 1, &gi, &gv, &gn));
    assert_int_equal(ag_sparse_count(sp), 3);
    assert_int_equal(ag_sparse_search(sp, qi, qv, 1, 8, NULL, NULL, out, &n), 0);
    assert_int_equal(n, 0);

    /* arguments */
    n = 99;
    assert_int_equal(ag_sparse_search(sp, qi, qv, 0, 8, NULL, NULL, out, &n), 0);
    assert_int_equal(n, 0);
    assert_int_equal(ag_sparse_search(sp, qi, qv, 1, 0, NULL, NULL, NULL, &n), 0);
    assert_int_equal(n, 0);
    ag_search_params_t bad = {.has_threshold = true, .score_threshold = NAN};
    assert_int_equal(ag_sparse_search(sp, qi, qv, 1, 8, NULL, &bad, out, &n), AG_EINVAL);
    assert_int_equal(ag_sparse_search(sp, NULL, qv, 1, 8, NULL, NULL, out, &n), AG_EINVAL);
    assert_int_equal(ag_sparse_set(sp, AG_VECSTORE_MAX_SLOTS, i1, v1, 3), AG_EINVAL);
    ag_sparse_free(sp);
    ag_sparse_free(NULL);
}

static void test_sparse_dot(void **state)
{
    AG_UNUSED(state);
    uint32_t ai[] = {1, 3, 5, 9}, bi[] = {0, 3, 4, 9, 12};
    float av[] = {1, 2, 3, 4}, bv[] = {10, 20, 30, 40, 50};
    assert_true(ag_sparse_dot(ai, av, 4, bi, bv, 5) == 2 * 20 + 4 * 40);
    assert_true(ag_sparse_dot(bi, bv, 5, ai, av, 4) == 2 * 20 + 4 * 40);
    assert_true(ag_sparse_dot(ai, av, 0, bi, bv, 5) == 0);
    uint32_t ci[] = {2, 4};
    assert_true(ag_sparse_dot(ai, av, 4, ci, bv, 2) == 0);
}

static void check_search(const ag_sparse_t *sp, const oracle_q_t *o, const uint32_t *qi,
                         const float *qv, uint32_t qn, const uint32_t *cand, size_t ncand, size_t k)
{
    ag_index_filter_t flt = {
        .accept = o->odd_only ? accept_odd : NULL,
        .candidates = o->in_cand ? cand : NULL,
        .n_candidates = ncand,
    };
    ag_search_params_t params = {.has_threshold = o->has_thr, .score_threshold = o->thr};
    ag_hit_t *got = malloc((k + 1) * sizeof(*got));
    ag_hit_t *want = malloc((k + 1) * sizeof(*want));
    assert_non_null(got);
    assert_non_null(want);
    size_t ngot = 12345;
    assert_int_equal(ag_sparse_search(sp, qi, qv, qn, k, &flt, &params, got, &ngot), 0);
    size_t nwant = oracle(o, k, want);
    assert_same_hits(got, ngot, want, nwant);
    free(got);
    free(want);
}

static void test_sparse_vs_brute_force(void **state)
{
    AG_UNUSED(state);
    rng_t r = {0xC0FFEE123ull};
    enum { NSLOTS = 1500 };
    ref_vec_t *refs = calloc(NSLOTS, sizeof(*refs));
    bool *in_cand = calloc(NSLOTS, sizeof(bool));
    uint32_t *cand = malloc(NSLOTS * sizeof(uint32_t));
    assert_non_null(refs);
    assert_non_null(in_cand);
    assert_non_null(cand);
    ag_sparse_t *sp;
    assert_int_equal(ag_sparse_new(&sp), 0);

    uint32_t idx[MAX_NNZ];
    float val[MAX_NNZ];
    for (uint32_t s = 0; s < NSLOTS; s++) {
        if (below(&r, 6) == 0)
            continue;
        uint32_t n = draw_vector(&r, MAX_NNZ, idx, val);
        assert_int_equal(ag_sparse_set(sp, s, idx, val, n), 0);
        ref_set(&refs[s], idx, val, n);
    }
    assert_stored(sp, refs, NSLOTS);

    for (int round = 0; round < 4; round++) {
        /* churn: replacements (also in descending slot order) and removals */
        for (int op = 0; op < 400; op++) {
            uint32_t s = below(&r, NSLOTS);
            if (below(&r, 3) == 0) {
                ag_sparse_clear(sp, s);
                refs[s] = (ref_vec_t){0};
            } else {
                uint32_t n = draw_vector(&r, MAX_NNZ, idx, val);
                assert_int_equal(ag_sparse_set(sp, s, idx, val, n), 0);
                ref_set(&refs[s], idx, val, n);
            }
        }
        assert_stored(sp, refs, NSLOTS);
        assert_int_equal(ag_sparse_dim_count(sp), ref_dim_count(refs, NSLOTS));

        size_t ncand = 0;
        memset(in_cand, 0, NSLOTS * sizeof(bool));
        for (uint32_t s = 0; s < NSLOTS; s++) {
            if (below(&r, 3) == 0) {
                cand[ncand++] = s;
                in_cand[s] = true;
            }
        }
        for (int qn_i = 0; qn_i < 15; qn_i++) {
            uint32_t qi[16];
            float qv[16];
            uint32_t qn = 1 + draw_vector(&r, 15, qi, qv);
            /* at least one index some slot has (often a rare 32-bit one), maybe a repeat */
            const ref_vec_t *donor = &refs[below(&r, NSLOTS)];
            qi[qn - 1] =
                donor->present && donor->n ? donor->idx[below(&r, donor->n)] : below(&r, 300);
            qv[qn - 1] = frand(&r);
            for (uint32_t j = 0; j + 1 < qn; j++) {
                if (qi[j] == qi[qn - 1]) { /* keep the query unique for the reference */
                    qn--;
                    break;
                }
            }
            ref_vec_t q = {0};
            ref_set(&q, qi, qv, qn);
            /* the stored vectors score exactly as ag_sparse_dot says */
            for (uint32_t s = 0; s < NSLOTS; s += 37)
                if (refs[s].present)
                    assert_true(ref_dot(&refs[s], &q) == ag_sparse_dot(refs[s].idx, refs[s].val,
                                                                       refs[s].n, q.idx, q.val,
                                                                       q.n));
            for (unsigned variant = 0; variant < 8; variant++) {
                oracle_q_t o = {.refs = refs, .nslots = NSLOTS, .q = &q};
                o.odd_only = variant & 1;
                o.in_cand = (variant & 2) ? in_cand : NULL;
                if (variant & 4) {
                    ag_hit_t all[NSLOTS];
                    oracle_q_t full = o;
                    size_t n = oracle(&full, NSLOTS, all);
                    o.has_thr = true;
                    o.thr = n ? all[n / 3].score : 0.0f;
                }
                static const size_t ks[] = {1, 5, 10, 100000};
                for (size_t ki = 0; ki < AG_ARRAY_LEN(ks); ki++)
                    check_search(sp, &o, qi, qv, qn, cand, ncand, ks[ki]);
            }
        }
    }
    /* remove everything: the inverted index empties out */
    for (uint32_t s = 0; s < NSLOTS; s++) {
        ag_sparse_clear(sp, s);
        refs[s] = (ref_vec_t){0};
    }
    assert_int_equal(ag_sparse_count(sp), 0);
    assert_int_equal(ag_sparse_dim_count(sp), 0);
    uint32_t qi[] = {1, 2, 3};
    float qv[] = {1, 1, 1};
    ag_hit_t out[4];
    size_t n;
    assert_int_equal(ag_sparse_search(sp, qi, qv, 3, 4, NULL, NULL, out, &n), 0);
    assert_int_equal(n, 0);
    ag_sparse_free(sp);
    free(refs);
    free(in_cand);
    free(cand);
}

/* Many rare indices coming and going: exercises the dimension table's growth and its deletion
 * (backward shift, including runs that wrap around the end of the table). Every stored index
 * must stay findable. */
static void test_sparse_table_churn(void **state)
{
    AG_UNUSED(state);
    rng_t r = {0xDEADBEEFull};
    enum { N = 6000 };
    ag_sparse_t *sp;
    assert_int_equal(ag_sparse_new(&sp), 0);
    uint32_t *key = malloc(N * sizeof(uint32_t));
    bool *present = calloc(N, sizeof(bool));
    assert_non_null(key);
    assert_non_null(present);
    size_t live = 0;
    for (int op = 0; op < 60000; op++) {
        uint32_t s = below(&r, N);
        if (present[s] && below(&r, 2) == 0) {
            ag_sparse_clear(sp, s);
            present[s] = false;
            live--;
        } else {
            /* one index per slot, unique to it: slot in the low bits, noise above */
            uint32_t k = (uint32_t)(next_u64(&r) << 13) | s;
            float one = 1.0f;
            assert_int_equal(ag_sparse_set(sp, s, &k, &one, 1), 0);
            live += !present[s];
            present[s] = true;
            key[s] = k;
        }
        if (op % 5000 == 4999) {
            assert_int_equal(ag_sparse_dim_count(sp), live);
            for (uint32_t t = 0; t < N; t++) {
                if (!present[t])
                    continue;
                ag_hit_t hit[2];
                size_t n;
                float one = 1.0f;
                assert_int_equal(ag_sparse_search(sp, &key[t], &one, 1, 2, NULL, NULL, hit, &n), 0);
                assert_int_equal(n, 1);
                assert_int_equal(hit[0].slot, t);
            }
        }
    }
    for (uint32_t t = 0; t < N; t++)
        ag_sparse_clear(sp, t);
    assert_int_equal(ag_sparse_dim_count(sp), 0);
    ag_sparse_free(sp);
    free(key);
    free(present);
}

/* Request cost: a search over long posting lists gives up at its deadline (AG_ETIMEOUT, no hits)
 * and answers normally before it. */
static void test_sparse_deadline(void **state)
{
    (void)state;
    ag_sparse_t *sp;
    assert_int_equal(ag_sparse_new(&sp), 0);
    uint32_t idx[2] = {1, 2};
    float val[2] = {1.0f, 0.5f};
    for (uint32_t s = 0; s < 20000; s++) {
        val[0] = 1.0f + (float)(s % 97);
        assert_int_equal(ag_sparse_set(sp, s, idx, val, 2), 0);
    }
    uint32_t qi[2] = {1, 2};
    float qv[2] = {1.0f, 1.0f};
    ag_hit_t out[5];
    size_t n = 99;
    ag_search_params_t late = {.deadline = ag_now_mono() - 1.0};
    assert_int_equal(ag_sparse_search(sp, qi, qv, 2, 5, NULL, &late, out, &n), AG_ETIMEOUT);
    assert_int_equal(n, 0);
    ag_search_params_t later = {.deadline = ag_now_mono() + 3600.0};
    assert_int_equal(ag_sparse_search(sp, qi, qv, 2, 5, NULL, &later, out, &n), 0);
    assert_int_equal(n, 5);
    ag_sparse_free(sp);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sparse_basics),         cmocka_unit_test(test_sparse_dot),
        cmocka_unit_test(test_sparse_vs_brute_force), cmocka_unit_test(test_sparse_table_churn),
        cmocka_unit_test(test_sparse_deadline),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
