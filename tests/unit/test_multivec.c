/* Multivectors (MaxSim scoring, the store, the search) and the float16/uint8 conversions. */
#include "ag_base.h"

#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "ag_clock.h"
#include "index/ag_multivec.h"

/* ---- MaxSim -------------------------------------------------------------------------------- */

/* Qdrant's own Euclid example (tests/openapi/test_multi_vector.py): the point equal to the query
 * scores 0, the other sqrt(5 + 0 + 14) — the sum over query rows of the smallest squared
 * distance, square-rooted once. */
static void test_maxsim_euclid_qdrant_example(void **state)
{
    (void)state;
    const float q[] = {1, 2, 3, 3, 3, 3, 4, 5, 6};
    const float p1[] = {1, 2, 3, 3, 3, 3, 4, 5, 6};
    const float p2[] = {3, 3, 3, 4, 2, 1};
    float s1 = ag_maxsim(AG_DIST_EUCLID, q, 3, p1, 3, 3);
    float s2 = ag_maxsim(AG_DIST_EUCLID, q, 3, p2, 2, 3);
    assert_float_equal(s1, 0.0f, 0);
    assert_float_equal(s2, -19.0f, 1e-6);
    assert_float_equal(ag_maxsim_score(AG_DIST_EUCLID, s1), 0.0f, 0);
    assert_float_equal(ag_maxsim_score(AG_DIST_EUCLID, s2), 4.358899f, 1e-6);
}

static void test_maxsim_dot_manhattan(void **state)
{
    (void)state;
    /* q rows (1,0) and (0,1); point rows (2,1) and (-1,3): row 1 best 2 (vs -1), row 2 best 3. */
    const float q[] = {1, 0, 0, 1};
    const float x[] = {2, 1, -1, 3};
    assert_float_equal(ag_maxsim(AG_DIST_DOT, q, 2, x, 2, 2), 5.0f, 1e-6);
    assert_float_equal(ag_maxsim_score(AG_DIST_DOT, 5.0f), 5.0f, 0);
    /* L1: row 1 to (2,1) = 2, to (-1,3) = 5 → 2; row 2 to (2,1) = 2, to (-1,3) = 3 → 2. */
    float m = ag_maxsim(AG_DIST_MANHATTAN, q, 2, x, 2, 2);
    assert_float_equal(m, -4.0f, 1e-6);
    assert_float_equal(ag_maxsim_score(AG_DIST_MANHATTAN, m), 4.0f, 1e-6);
    /* One row each is the ordinary similarity. */
    assert_float_equal(ag_maxsim(AG_DIST_DOT, q, 1, x, 1, 2), 2.0f, 0);
    assert_float_equal(ag_maxsim_score(AG_DIST_EUCLID, ag_maxsim(AG_DIST_EUCLID, q, 1, x, 1, 2)),
                       sqrtf(2.0f), 1e-6);
    /* Order matters: MaxSim sums over the query's rows. */
    assert_float_equal(ag_maxsim(AG_DIST_DOT, x, 2, q, 2, 2), 2.0f + 3.0f, 1e-6);
    const float q1[] = {1, 1};
    assert_float_equal(ag_maxsim(AG_DIST_DOT, q1, 1, x, 2, 2), 3.0f, 1e-6);
    assert_float_equal(ag_maxsim(AG_DIST_DOT, x, 2, q1, 1, 2), 3.0f + 2.0f, 1e-6);
    /* No rows on the point side scores 0. */
    assert_float_equal(ag_maxsim(AG_DIST_DOT, q, 2, x, 0, 2), 0.0f, 0);
}

/* ---- the store and the search against a brute-force reference ----------------------------- */

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

static float frand(rng_t *r)
{
    return (float)((double)(next_u64(r) >> 11) / (double)(UINT64_C(1) << 53) * 2.0 - 1.0);
}

static void test_store_basics(void **state)
{
    (void)state;
    ag_multivec_t *mv;
    assert_int_equal(ag_multivec_new(0, &mv), AG_EINVAL);
    assert_int_equal(ag_multivec_new(2, &mv), 0);
    const float a[] = {1, 2, 3, 4, 5, 6};
    uint32_t rows = 0;
    assert_null(ag_multivec_get(mv, 0, &rows));
    /* put needs reserved room; it takes (and here frees) the block either way. */
    assert_int_equal(ag_multivec_put(mv, 3, ag_mv_block_new(a, 3, 2)), AG_EINVAL);
    assert_int_equal(ag_multivec_reserve(mv, 10), 0);
    assert_int_equal(ag_multivec_put(mv, 3, ag_mv_block_new(a, 3, 2)), 0);
    const float *g = ag_multivec_get(mv, 3, &rows);
    assert_non_null(g);
    assert_int_equal(rows, 3);
    assert_float_equal(g[5], 6.0f, 0);
    assert_int_equal(ag_multivec_count(mv), 1);
    size_t mem = ag_multivec_memory(mv);
    /* Replacing keeps one; set grows beyond the reservation. */
    assert_int_equal(ag_multivec_put(mv, 3, ag_mv_block_new(a + 4, 1, 2)), 0);
    assert_int_equal(ag_multivec_count(mv), 1);
    assert_true(ag_multivec_memory(mv) < mem);
    assert_non_null(ag_multivec_get(mv, 3, &rows));
    assert_int_equal(rows, 1);
    assert_int_equal(ag_multivec_set(mv, 5000, a, 2), 0);
    assert_int_equal(ag_multivec_count(mv), 2);
    assert_int_equal(ag_multivec_set(mv, 7, a, 0), AG_EINVAL);
    assert_null(ag_mv_block_new(a, AG_MV_MAX_ROWS + 1, 2));
    ag_multivec_clear(mv, 3);
    ag_multivec_clear(mv, 3);
    ag_multivec_clear(mv, 999999);
    assert_null(ag_multivec_get(mv, 3, &rows));
    assert_int_equal(ag_multivec_count(mv), 1);
    ag_multivec_free(mv);
}

static bool odd_only(const void *ud, uint32_t slot)
{
    (void)ud;
    return slot % 2 == 1;
}

#define DIM 5
#define SLOTS 300

/* Every distance, with and without an accept predicate, a candidate list and a threshold: the
 * search returns exactly the brute-force top k, best first, with client scores. */
static void test_search_vs_brute_force(void **state)
{
    (void)state;
    rng_t r = {0x9e3779b97f4a7c15u};
    static float data[SLOTS][8 * DIM];
    static uint32_t nrows[SLOTS];
    for (int d = 0; d < 4; d++) {
        ag_distance_t dist = (ag_distance_t)d;
        ag_multivec_t *mv;
        assert_int_equal(ag_multivec_new(DIM, &mv), 0);
        for (uint32_t s = 0; s < SLOTS; s++) {
            nrows[s] = (uint32_t)(next_u64(&r) % 8); /* 0 = the slot has none */
            for (uint32_t k = 0; k < nrows[s] * DIM; k++)
                data[s][k] = frand(&r);
            if (nrows[s])
                assert_int_equal(ag_multivec_set(mv, s, data[s], nrows[s]), 0);
        }
        float q[3 * DIM];
        for (int k = 0; k < 3 * DIM; k++)
            q[k] = frand(&r);
        bool higher = ag_distance_higher_is_better(dist);
        uint32_t cands[] = {1, 2, 2, 7, 8, 40, 41, 41, 299, 5000};
        for (int mode = 0; mode < 4; mode++) {
            ag_index_filter_t f = {0};
            if (mode == 1)
                f.accept = odd_only;
            if (mode == 2) {
                f.candidates = cands;
                f.n_candidates = AG_ARRAY_LEN(cands);
            }
            ag_search_params_t p = {0};
            /* The reference: every eligible slot's score. */
            float best[SLOTS];
            uint32_t order[SLOTS], n = 0;
            for (uint32_t s = 0; s < SLOTS; s++) {
                bool in = nrows[s] > 0 && (mode != 1 || s % 2 == 1);
                if (mode == 2) {
                    bool listed = false;
                    for (size_t i = 0; i < AG_ARRAY_LEN(cands); i++)
                        listed |= cands[i] == s;
                    in = in && listed;
                }
                if (!in)
                    continue;
                best[n] = ag_maxsim_score(dist, ag_maxsim(dist, q, 3, data[s], nrows[s], DIM));
                order[n++] = s;
            }
            if (mode == 3 && n > 0) { /* threshold at the median score */
                p.has_threshold = true;
                float sorted[SLOTS];
                memcpy(sorted, best, n * sizeof(float));
                for (uint32_t i = 0; i < n; i++)
                    for (uint32_t j = i + 1; j < n; j++)
                        if (sorted[j] < sorted[i]) {
                            float t = sorted[i];
                            sorted[i] = sorted[j];
                            sorted[j] = t;
                        }
                p.score_threshold = sorted[n / 2];
            }
            ag_hit_t out[10];
            size_t got = 99;
            assert_int_equal(ag_multivec_search(mv, dist, q, 3, 10, &f, &p, out, &got), 0);
            /* Expected: the eligible slots passing the threshold, best first. */
            uint32_t keep = 0;
            for (uint32_t i = 0; i < n; i++) {
                bool pass = !p.has_threshold ||
                            (higher ? best[i] >= p.score_threshold : best[i] <= p.score_threshold);
                if (pass) {
                    best[keep] = best[i];
                    order[keep++] = order[i];
                }
            }
            assert_int_equal(got, keep < 10 ? keep : 10);
            for (size_t i = 0; i < got; i++) {
                /* out[i] is in the reference with that score, and nothing better was left out. */
                uint32_t better = 0;
                bool found = false;
                for (uint32_t j = 0; j < keep; j++) {
                    if (order[j] == out[i].slot) {
                        found = true;
                        assert_float_equal(best[j], out[i].score, 1e-5);
                    }
                    if (higher ? best[j] > out[i].score : best[j] < out[i].score)
                        better++;
                }
                assert_true(found);
                assert_true(better <= i);
                if (i > 0)
                    assert_true(higher ? out[i - 1].score >= out[i].score
                                       : out[i - 1].score <= out[i].score);
            }
        }
        /* A deadline in the past stops the scan. */
        ag_search_params_t late = {.deadline = ag_now_mono() - 1.0};
        ag_hit_t out[3];
        size_t got = 99;
        assert_int_equal(ag_multivec_search(mv, dist, q, 3, 3, NULL, &late, out, &got),
                         AG_ETIMEOUT);
        assert_int_equal(got, 0);
        assert_int_equal(ag_multivec_search(mv, dist, q, 0, 3, NULL, NULL, out, &got), AG_EINVAL);
        ag_multivec_free(mv);
    }
}

/* ---- datatypes ----------------------------------------------------------------------------- */

static void test_dtype_names(void **state)
{
    (void)state;
    ag_dtype_t t = AG_DTYPE_UINT8;
    assert_int_equal(ag_dtype_parse("float32", &t), 0);
    assert_int_equal(t, AG_DTYPE_FLOAT32);
    assert_int_equal(ag_dtype_parse("float16", &t), 0);
    assert_int_equal(t, AG_DTYPE_FLOAT16);
    assert_int_equal(ag_dtype_parse("uint8", &t), 0);
    assert_int_equal(t, AG_DTYPE_UINT8);
    assert_int_equal(ag_dtype_parse("Uint8", &t), AG_EINVAL);
    assert_int_equal(ag_dtype_parse("float64", &t), AG_EINVAL);
    assert_int_equal(ag_dtype_parse(NULL, &t), AG_EINVAL);
    assert_int_equal(t, AG_DTYPE_UINT8);
    assert_string_equal(ag_dtype_name(AG_DTYPE_FLOAT16), "float16");
}

static void test_u8_convert(void **state)
{
    (void)state;
    /* Qdrant's own cases (test_multi_vector_uint8.py) and the edges of `as u8`. */
    assert_float_equal(ag_u8_convert(256.19f), 255.0f, 0);
    assert_float_equal(ag_u8_convert(1.81f), 1.0f, 0);
    assert_float_equal(ag_u8_convert(3.99f), 3.0f, 0);
    assert_float_equal(ag_u8_convert(255.0f), 255.0f, 0);
    assert_float_equal(ag_u8_convert(254.999f), 254.0f, 0);
    assert_float_equal(ag_u8_convert(0.7f), 0.0f, 0);
    assert_float_equal(ag_u8_convert(-0.7f), 0.0f, 0);
    assert_float_equal(ag_u8_convert(-300.0f), 0.0f, 0);
    assert_float_equal(ag_u8_convert(NAN), 0.0f, 0);
    assert_float_equal(ag_u8_convert(INFINITY), 255.0f, 0);
    float v[] = {1.05f, 1.61f, 300.0f, -2.0f};
    size_t bad = 99;
    assert_int_equal(ag_dtype_convert(AG_DTYPE_UINT8, v, 4, &bad), 0);
    assert_float_equal(v[0], 1.0f, 0);
    assert_float_equal(v[1], 1.0f, 0);
    assert_float_equal(v[2], 255.0f, 0);
    assert_float_equal(v[3], 0.0f, 0);
}

static void test_f16_round(void **state)
{
    (void)state;
    assert_true(ag_f16_round(1.0f) == 1.0f);
    assert_true(ag_f16_round(0.1f) == 0.0999755859375f);
    assert_true(ag_f16_round(-0.1f) == -0.0999755859375f);
    assert_true(ag_f16_round(65504.0f) == 65504.0f);
    assert_true(ag_f16_round(65519.0f) == 65504.0f);
    assert_true(isinf(ag_f16_round(65520.0f)) && ag_f16_round(-65520.0f) < 0);
    /* Ties go to the even neighbour: ulp at 1 is 2^-10. */
    assert_true(ag_f16_round(1.0f + 0x1p-11f) == 1.0f);
    assert_true(ag_f16_round(1.0f + 3 * 0x1p-11f) == 1.0f + 0x1p-9f);
    assert_true(ag_f16_round(1.0f + 0x1p-11f + 0x1p-20f) == 1.0f + 0x1p-10f);
    /* A carry into the exponent. */
    assert_true(ag_f16_round(2047.9f) == 2048.0f);
    /* Subnormal halves: steps of 2^-24, ties to even. */
    assert_true(ag_f16_round(0x1p-24f) == 0x1p-24f);
    assert_true(ag_f16_round(0x1p-25f) == 0.0f);
    assert_true(ag_f16_round(3 * 0x1p-25f) == 0x1p-23f);
    assert_true(ag_f16_round(0x1p-14f) == 0x1p-14f);
    assert_true(ag_f16_round(0x1p-14f - 0x1p-30f) == 0x1p-14f);
    assert_true(ag_f16_round(0.0f) == 0.0f);
    float v[] = {0.5f, 70000.0f};
    size_t bad = 99;
    assert_int_equal(ag_dtype_convert(AG_DTYPE_FLOAT16, v, 2, &bad), AG_EINVAL);
    assert_int_equal(bad, 1);
#ifdef __FLT16_MAX__
    /* Against the compiler's own conversion, over many magnitudes. */
    rng_t r = {12345};
    for (int i = 0; i < 200000; i++) {
        uint32_t bits = (uint32_t)next_u64(&r);
        float x;
        memcpy(&x, &bits, sizeof(x));
        if (!isfinite(x) || fabsf(x) >= 65520.0f)
            continue;
        __extension__ _Float16 h = (_Float16)x;
        float want = (float)h;
        assert_true(ag_f16_round(x) == want);
    }
#endif
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_maxsim_euclid_qdrant_example),
        cmocka_unit_test(test_maxsim_dot_manhattan),
        cmocka_unit_test(test_store_basics),
        cmocka_unit_test(test_search_vs_brute_force),
        cmocka_unit_test(test_dtype_names),
        cmocka_unit_test(test_u8_convert),
        cmocka_unit_test(test_f16_round),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
