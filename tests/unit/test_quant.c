/* Scalar int8 quantization (index/ag_quant.h) and its use by the HNSW index: the kernels against
 * plain loops, encode/decode error bounds, clipping, training, and recall of quantized graph
 * search against the exact index on a seeded synthetic set. */
#include "ag_base.h"

#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "index/ag_hnsw.h"
#include "index/ag_index.h"
#include "index/ag_quant.h"

#define TEST_RNG_SEED 0x243F6A8885A308D3ull
#include "test_rand.h"

static void test_kernels_match_loops(void **state)
{
    (void)state;
    for (size_t n = 32; n <= 512; n += 32) {
        size_t bytes = (n + 63) & ~(size_t)63;
        uint8_t *a = aligned_alloc(64, bytes), *b = aligned_alloc(64, bytes);
        assert_non_null(a);
        assert_non_null(b);
        for (int round = 0; round < 4; round++) {
            for (size_t i = 0; i < n; i++) {
                /* the extremes too: every lane at 0 or at the top level */
                a[i] = round == 0 ? AG_QUANT_LEVELS - 1 : (uint8_t)(next_u64() % AG_QUANT_LEVELS);
                b[i] = round == 1 ? 0 : (uint8_t)(next_u64() % AG_QUANT_LEVELS);
            }
            uint32_t dot = 0, l2 = 0, l1 = 0;
            for (size_t i = 0; i < n; i++) {
                int d = (int)a[i] - (int)b[i];
                dot += (uint32_t)a[i] * b[i];
                l2 += (uint32_t)(d * d);
                l1 += (uint32_t)abs(d);
            }
            assert_int_equal(ag_u8_dot(a, b, n), dot);
            assert_int_equal(ag_u8_l2sq(a, b, n), l2);
            assert_int_equal(ag_u8_l1(a, b, n), l1);
        }
        free(a);
        free(b);
    }
}

/* The dot kernel picked for this CPU (AVX-512 VNNI on the CI machine when it has it), the AVX2
 * fallback and the scalar loop (and the dot-plus-row-sum kernels the graph walk uses) agree exactly
 * on random rows of every length up to the largest dimension, including all-255 rows (the largest
 * sums) and rows that are not 64-byte multiples. */
static void test_dot_kernels_random(void **state)
{
    (void)state;
    print_message("int8 dot kernel: %s\n", ag_u8_dot_kernel());
    const size_t max = AG_QUANT_ROW(AG_MAX_DIM);
    uint8_t *a = aligned_alloc(64, max), *b = aligned_alloc(64, max);
    assert_non_null(a);
    assert_non_null(b);
    for (int round = 0; round < 300; round++) {
        size_t n = round < 3 ? max : 32 * (1 + next_u64() % (max / 32));
        if (round >= 3 && round < 40)
            n = 32 * (size_t)(round - 2); /* every short length in turn */
        for (size_t i = 0; i < n; i++) {
            a[i] = round == 0 ? 255 : (uint8_t)next_u64();
            b[i] = round == 0 ? 255 : round == 1 ? 0 : (uint8_t)next_u64();
        }
        uint32_t want = 0;
        for (size_t i = 0; i < n; i++)
            want += (uint32_t)a[i] * b[i];
        assert_int_equal(ag_u8_dot_scalar(a, b, n), want);
        assert_int_equal(ag_u8_dot_avx2(a, b, n), want);
        assert_int_equal(ag_u8_dot(a, b, n), want);
        uint32_t sum = 0, s1 = 1, s2 = 2;
        for (size_t i = 0; i < n; i++)
            sum += b[i];
        assert_int_equal(ag_u8_dotsum(a, b, n, &s1), want);
        assert_int_equal(s1, sum);
        assert_int_equal(ag_u8_dotsum_avx2(a, b, n, &s2), want);
        assert_int_equal(s2, sum);
    }
    free(a);
    free(b);
}

/* The gathering form the int8 scan uses (four rows a step with VNNI, the query kept in
 * registers for rows up to 512 bytes, one row at a time beyond) against the scalar loop: every
 * short row length, the sizes with their own unrolled loop (384, 512), long rows past the register
 * limit, all-255 rows, and row counts that leave a partial last step. */
static void test_dotsum_gather(void **state)
{
    (void)state;
    static const size_t rows[] = {32, 64, 96, 128, 160, 256, 384, 416, 480, 512, 544, 1024};
    static const size_t counts[] = {0, 1, 2, 3, 4, 5, 7, 33};
    const size_t n_slots = 40;
    for (size_t ri = 0; ri < AG_ARRAY_LEN(rows); ri++) {
        const size_t row = rows[ri], stride = ((row + 63) & ~(size_t)63) + 64;
        uint8_t *base = aligned_alloc(64, stride * n_slots + 64), *q = aligned_alloc(64, 1024 + 64);
        assert_non_null(base);
        assert_non_null(q);
        for (int round = 0; round < 3; round++) {
            for (size_t i = 0; i < stride * n_slots + 64; i++)
                base[i] = round == 0 ? 255 : (uint8_t)next_u64();
            for (size_t i = 0; i < 1024 + 64; i++)
                q[i] = round == 0 ? 255 : round == 1 ? 0 : (uint8_t)next_u64();
            for (size_t ci = 0; ci < AG_ARRAY_LEN(counts); ci++) {
                const size_t n = counts[ci];
                uint32_t ids[33], dot[33], sum[33];
                for (size_t i = 0; i < n; i++)
                    ids[i] = (uint32_t)(next_u64() % n_slots);
                for (size_t i = 0; i < 33; i++)
                    dot[i] = sum[i] = 7; /* past n: must stay untouched */
                ag_u8_dotsum_gather(q, base + 64, stride, ids, n, row, dot, sum);
                for (size_t i = 0; i < n; i++) {
                    const uint8_t *r = base + 64 + (size_t)ids[i] * stride;
                    uint32_t want = 0, s = 0;
                    for (size_t j = 0; j < row; j++) {
                        want += (uint32_t)q[j] * r[j];
                        s += r[j];
                    }
                    assert_int_equal(dot[i], want);
                    assert_int_equal(sum[i], s);
                }
                for (size_t i = n; i < 33; i++) {
                    assert_int_equal(dot[i], 7);
                    assert_int_equal(sum[i], 7);
                }
            }
        }
        free(base);
        free(q);
    }
}

/* The batched kernel the int8 graph walk uses (ag_u8_dotsum_gather): rows picked by id from a
 * block array whose stride is a multiple of 32 but often not of 64 (as the kernels require), every
 * row length from 32 to 320 bytes plus odd dimensions' padded rows, all-255 rows, and gathers of 0,
 * 1 and many ids (repeats allowed); each result equals the plain loop's dot product and byte sum
 * exactly. */
static void test_dotsum_gather_random(void **state)
{
    (void)state;
    enum { ROWS = 50, MAXROW = 320 };
    for (int round = 0; round < 60; round++) {
        size_t row = round < 10 ? 32 * (size_t)(round + 1)
                                : AG_QUANT_ROW(1 + next_u64() % 300); /* odd dims too */
        size_t stride = row + 32 * (next_u64() % 4);
        uint8_t *base = aligned_alloc(64, stride * ROWS), *q = aligned_alloc(64, MAXROW);
        assert_non_null(base);
        assert_non_null(q);
        bool top = round % 7 == 0; /* the largest sums */
        for (size_t i = 0; i < stride * ROWS; i++)
            base[i] = top ? 255 : (uint8_t)next_u64();
        for (size_t i = 0; i < row; i++)
            q[i] = top ? 255 : (uint8_t)next_u64();
        uint32_t ids[3 * ROWS], dots[3 * ROWS], sums[3 * ROWS];
        size_t n = round % 5 == 0 ? (size_t)(round % 2) : 1 + next_u64() % (3 * ROWS);
        for (size_t i = 0; i < n; i++)
            ids[i] = (uint32_t)(next_u64() % ROWS); /* repeats allowed, as any order */
        ag_u8_dotsum_gather(q, base, stride, ids, n, row, dots, sums);
        for (size_t i = 0; i < n; i++) {
            const uint8_t *b = base + (size_t)ids[i] * stride;
            uint32_t want = 0, sum = 0;
            for (size_t j = 0; j < row; j++) {
                want += (uint32_t)q[j] * b[j];
                sum += b[j];
            }
            assert_int_equal(dots[i], want);
            assert_int_equal(sums[i], sum);
        }
        free(base);
        free(q);
    }
}

/* Rows in [-1, 1) plus a few outliers at +-8. */
static ag_vecstore_t *filled(uint32_t n, uint32_t dim, bool outliers)
{
    ag_vecstore_t *vs;
    assert_int_equal(ag_vecstore_new(dim, &vs), 0);
    float *v = malloc(dim * sizeof(float));
    assert_non_null(v);
    for (uint32_t s = 0; s < n; s++) {
        for (uint32_t j = 0; j < dim; j++)
            v[j] = uni();
        if (outliers && s % 97 == 0)
            v[s % dim] = s % 2 ? 8.0f : -8.0f;
        assert_int_equal(ag_vecstore_set(vs, s, v), 0);
    }
    free(v);
    return vs;
}

static void test_encode_decode_bounds(void **state)
{
    (void)state;
    const uint32_t dim = 40, n = 500;
    ag_vecstore_t *vs = filled(n, dim, false);
    ag_quant_t *q;
    assert_int_equal(ag_quant_new(dim, AG_DIST_EUCLID, 1.0, &q), 0);
    assert_false(ag_quant_trained(q));
    assert_int_equal(ag_quant_train(q, vs), 0);
    assert_true(ag_quant_trained(q));
    assert_int_equal(ag_quant_trained_rows(q), n);
    float lo, step;
    ag_quant_range(q, &lo, &step);
    /* quantile 1: the whole range of the values, which are in [-1, 1) */
    assert_true(lo >= -1.0f && lo < -0.95f);
    assert_true(lo + step * (AG_QUANT_LEVELS - 1) <= 1.0f);
    assert_true(lo + step * (AG_QUANT_LEVELS - 1) > 0.95f);
    assert_true(ag_quant_memory(q) >= (size_t)n * AG_QUANT_ROW(dim));
    float out[40];
    for (uint32_t s = 0; s < n; s++) {
        ag_quant_decode(q, s, out);
        const float *row = ag_vecstore_get(vs, s);
        for (uint32_t j = 0; j < dim; j++)
            assert_true(fabsf(out[j] - row[j]) <= step / 2 + 1e-6f);
    }
    /* a vector set later is encoded with the same range; out-of-range values are clipped */
    float v[40];
    for (uint32_t j = 0; j < dim; j++)
        v[j] = j % 2 ? 100.0f : -100.0f;
    v[0] = NAN;
    assert_int_equal(ag_quant_set(q, 2000, v), 0);
    assert_true(ag_quant_capacity(q) > 2000);
    ag_quant_decode(q, 2000, out);
    assert_true(out[0] == lo); /* NaN encodes as the lowest level */
    for (uint32_t j = 1; j < dim; j++)
        assert_true(out[j] == (j % 2 ? lo + step * (AG_QUANT_LEVELS - 1) : lo));
    ag_quant_free(q);

    /* a quantile clips the outliers: the range stays near [-1, 1) */
    ag_vecstore_t *vo = filled(n, dim, true);
    assert_int_equal(ag_quant_new(dim, AG_DIST_EUCLID, 0.99, &q), 0);
    assert_int_equal(ag_quant_train(q, vo), 0);
    ag_quant_range(q, &lo, &step);
    assert_true(lo > -1.0f && lo + step * (AG_QUANT_LEVELS - 1) < 1.0f);
    ag_quant_free(q);
    assert_int_equal(ag_quant_new(dim, AG_DIST_EUCLID, 1.0, &q), 0);
    assert_int_equal(ag_quant_train(q, vo), 0);
    ag_quant_range(q, &lo, &step);
    assert_true(lo <= -8.0f);
    ag_quant_free(q);

    /* bad arguments */
    assert_int_equal(ag_quant_new(dim, AG_DIST_DOT, 0.4, &q), AG_EINVAL);
    assert_int_equal(ag_quant_new(dim, AG_DIST_DOT, 1.5, &q), AG_EINVAL);
    assert_int_equal(ag_quant_new(0, AG_DIST_DOT, 1.0, &q), AG_EINVAL);
    ag_vecstore_free(vs);
    ag_vecstore_free(vo);
}

/* The approximate distances track the exact ones, for each metric. */
static void test_distances_approximate(void **state)
{
    (void)state;
    const uint32_t dim = 64, n = 300;
    ag_vecstore_t *vs = filled(n, dim, false);
    static const ag_distance_t ds[] = {AG_DIST_DOT, AG_DIST_EUCLID, AG_DIST_MANHATTAN};
    for (size_t di = 0; di < AG_ARRAY_LEN(ds); di++) {
        ag_quant_t *q;
        assert_int_equal(ag_quant_new(dim, ds[di], 1.0, &q), 0);
        assert_int_equal(ag_quant_train(q, vs), 0);
        uint8_t *code = aligned_alloc(64, (AG_QUANT_ROW(dim) + 63) & ~(size_t)63);
        assert_non_null(code);
        ag_quant_query_t qq = {.code = code};
        const float *query = ag_vecstore_get(vs, 7);
        ag_quant_encode_query(q, query, &qq);
        double worst = 0;
        for (uint32_t s = 0; s < n; s++) {
            float exact = ag_distance_score(ds[di], query, ag_vecstore_get(vs, s), dim);
            float approx = ag_quant_score(q, ag_quant_dist(q, &qq, s));
            worst = fmax(worst, fabs((double)exact - approx));
        }
        /* step is 2/127: per coordinate the error is at most step/2 on each side */
        double bound = ds[di] == AG_DIST_MANHATTAN ? 0.02 * dim : ds[di] == AG_DIST_DOT ? 0.5 : 0.3;
        assert_true(worst < bound);
        /* a row against itself: Euclid and Manhattan exactly 0 */
        if (ds[di] != AG_DIST_DOT)
            assert_true(ag_quant_dist(q, &qq, 7) == 0.0f);
        free(code);
        ag_quant_free(q);
    }
    ag_vecstore_free(vs);
}

static double recall_at(const ag_index_t *ix, const ag_index_t *exact, const float *qs, uint32_t nq,
                        uint32_t dim, const ag_search_params_t *sp)
{
    size_t hit = 0;
    for (uint32_t i = 0; i < nq; i++) {
        ag_hit_t a[10], b[10];
        size_t na = 0, nb = 0;
        assert_int_equal(ag_index_search(ix, qs + (size_t)i * dim, 10, NULL, sp, a, &na), 0);
        assert_int_equal(ag_index_search(exact, qs + (size_t)i * dim, 10, NULL, NULL, b, &nb), 0);
        assert_int_equal(na, 10);
        for (size_t x = 0; x < nb; x++)
            for (size_t y = 0; y < na; y++)
                if (a[y].slot == b[x].slot) {
                    hit++;
                    break;
                }
    }
    return (double)hit / (10.0 * nq);
}

/* Turned on while the store is empty: trained by the first add, retrained as the store grows
 * fourfold (each vector then has a code for the range in use). */
static void test_hnsw_quant_trains_on_adds(void **state)
{
    (void)state;
    const uint32_t dim = 16;
    ag_vecstore_t *vs;
    ag_index_t *ix;
    assert_int_equal(ag_vecstore_new(dim, &vs), 0);
    assert_int_equal(ag_index_hnsw_new(vs, AG_DIST_EUCLID, NULL, &ix), 0);
    assert_int_equal(ag_hnsw_set_quant(ix, 1.0), 0);
    assert_false(ag_hnsw_quantized(ix));
    float v[16];
    for (uint32_t s = 0; s < 100; s++) {
        for (uint32_t j = 0; j < dim; j++)
            v[j] = (float)(s + 1) * uni(); /* the spread grows: a stale range would clip */
        assert_int_equal(ag_vecstore_set(vs, s, v), 0);
        assert_int_equal(ag_index_add(ix, s), 0);
        assert_true(ag_hnsw_quantized(ix));
    }
    /* the last vector is found by itself at distance 0 from the codes alone */
    ag_search_params_t raw = {.quant_no_rescore = true};
    ag_hit_t h[1];
    size_t nh = 0;
    assert_int_equal(ag_index_search(ix, v, 1, NULL, &raw, h, &nh), 0);
    assert_int_equal(nh, 1);
    assert_int_equal(h[0].slot, 99);
    assert_true(h[0].score == 0.0f);
    ag_index_free(ix);
    ag_vecstore_free(vs);
    ag_hnsw_thread_release();
}

/* Quantized graph search on a clustered set: recall against the exact index, rescored scores
 * equal to the exact ones, ignore and no-rescore honoured, on/off switch. */
static void test_hnsw_quantized_recall(void **state)
{
    (void)state;
    const uint32_t dim = 48, n = 4000, nq = 50, clusters = 40;
    float *centers = malloc((size_t)clusters * dim * sizeof(float));
    float *v = malloc(dim * sizeof(float));
    float *qs = malloc((size_t)nq * dim * sizeof(float));
    assert_non_null(centers);
    assert_non_null(v);
    assert_non_null(qs);
    for (size_t i = 0; i < (size_t)clusters * dim; i++)
        centers[i] = uni();
    ag_vecstore_t *vs;
    assert_int_equal(ag_vecstore_new(dim, &vs), 0);
    for (uint32_t s = 0; s < n + nq; s++) {
        const float *c = centers + (size_t)(next_u64() % clusters) * dim;
        float *dst = s < n ? v : qs + (size_t)(s - n) * dim;
        for (uint32_t j = 0; j < dim; j++)
            dst[j] = c[j] + 0.15f * uni();
        ag_vector_normalize(dst, dim);
        if (s < n)
            assert_int_equal(ag_vecstore_set(vs, s, v), 0);
    }
    ag_index_t *ix, *exact;
    ag_hnsw_params_t p = {.m = 16, .ef_construct = 100};
    assert_int_equal(ag_index_hnsw_new(vs, AG_DIST_COSINE, &p, &ix), 0);
    assert_int_equal(ag_index_exact_new(vs, AG_DIST_COSINE, &exact), 0);
    /* trained at once from the stored vectors */
    assert_int_equal(ag_hnsw_set_quant(ix, 0.99), 0);
    assert_true(ag_hnsw_quantized(ix));
    for (uint32_t s = 0; s < n; s++)
        assert_int_equal(ag_index_add(ix, s), 0);
    assert_true(ag_hnsw_quantized(ix));
    ag_hnsw_stats_t st;
    ag_hnsw_stats(ix, &st);
    assert_true(st.quant_memory >= (size_t)n * AG_QUANT_ROW(dim));

    /* Tight clusters: many near-ties, so the approximate order needs a wider rescoring than on
     * real embeddings (bench/compare_hnswlib.sh: GloVe loses < 0.01 at oversampling 2). */
    ag_search_params_t sp = {.ef = 64, .oversampling = 4.0};
    assert_true(recall_at(ix, exact, qs, nq, dim, &sp) >= 0.95);
    ag_search_params_t s1 = {.ef = 64, .oversampling = 1.0};
    assert_true(recall_at(ix, exact, qs, nq, dim, &s1) < recall_at(ix, exact, qs, nq, dim, &sp));
    /* rescored hits carry the exact scores */
    ag_hit_t h[10];
    size_t nh = 0;
    assert_int_equal(ag_index_search(ix, qs, 10, NULL, &sp, h, &nh), 0);
    for (size_t i = 0; i < nh; i++)
        assert_true(h[i].score ==
                    ag_distance_score(AG_DIST_COSINE, qs, ag_vecstore_get(vs, h[i].slot), dim));
    /* no rescoring: approximate scores, still best first */
    ag_search_params_t raw = {.ef = 64, .quant_no_rescore = true};
    assert_int_equal(ag_index_search(ix, qs, 10, NULL, &raw, h, &nh), 0);
    assert_int_equal(nh, 10);
    size_t differ = 0;
    for (size_t i = 0; i < nh; i++) {
        float e = ag_distance_score(AG_DIST_COSINE, qs, ag_vecstore_get(vs, h[i].slot), dim);
        assert_true(fabsf(h[i].score - e) < 0.05f);
        differ += h[i].score != e;
        if (i)
            assert_true(h[i - 1].score >= h[i].score);
    }
    assert_true(differ > 0);
    assert_true(recall_at(ix, exact, qs, nq, dim, &raw) >= 0.6);
    /* ignore: the float walk */
    ag_search_params_t ign = {.ef = 64, .quant_ignore = true, .quant_no_rescore = true};
    assert_int_equal(ag_index_search(ix, qs, 10, NULL, &ign, h, &nh), 0);
    for (size_t i = 0; i < nh; i++)
        assert_true(h[i].score ==
                    ag_distance_score(AG_DIST_COSINE, qs, ag_vecstore_get(vs, h[i].slot), dim));
    /* a vector replaced in place gets a new code: it is found by its own vector */
    const float *r500 = ag_vecstore_get(vs, 500), *r900 = ag_vecstore_get(vs, 900);
    for (uint32_t j = 0; j < dim; j++)
        v[j] = r500[j] + r900[j]; /* between two clusters, inside the trained range */
    ag_vector_normalize(v, dim);
    assert_int_equal(ag_index_remove(ix, 11), 0);
    assert_int_equal(ag_vecstore_set(vs, 11, v), 0);
    assert_int_equal(ag_index_add(ix, 11), 0);
    assert_int_equal(ag_index_search(ix, v, 1, NULL, &sp, h, &nh), 0);
    assert_int_equal(nh, 1);
    assert_int_equal(h[0].slot, 11);
    /* off */
    assert_int_equal(ag_hnsw_set_quant(ix, 0), 0);
    assert_false(ag_hnsw_quantized(ix));
    ag_hnsw_stats(ix, &st);
    assert_int_equal(st.quant_memory, 0);
    assert_int_equal(ag_hnsw_set_quant(ix, 0.2), AG_EINVAL);
    ag_index_free(ix);
    ag_index_free(exact);
    ag_vecstore_free(vs);
    free(centers);
    free(v);
    free(qs);
    ag_hnsw_thread_release();
}

/* An external store (on_disk vectors) over an in-memory one: every row read is counted. */
static ag_vecstore_t *ext_src;
static size_t ext_reads;
static const float *ext_row(void *ud, uint32_t slot)
{
    (void)ud;
    ext_reads++;
    return ag_vecstore_get(ext_src, slot);
}

/* Linking over external rows with trained int8 codes (docs/ARCHITECTURE.md "On-disk vectors")
 * scores the walk and the neighbour choice from the codes in the graph's blocks: for every
 * distance, a graph built that way reads about one row per link from its store, finds what the
 * graph built over the same codes in RAM finds, and its rescored hits carry the exact scores. */
static void test_hnsw_quant_external_linking(void **state)
{
    (void)state;
    const uint32_t dim = 40, n = 3000, nq = 50, clusters = 30;
    const ag_distance_t dists[] = {AG_DIST_EUCLID, AG_DIST_COSINE, AG_DIST_DOT, AG_DIST_MANHATTAN};
    float *centers = malloc((size_t)clusters * dim * sizeof(float));
    float *qs = malloc((size_t)nq * dim * sizeof(float));
    float *v = malloc(dim * sizeof(float));
    assert_non_null(centers);
    assert_non_null(qs);
    assert_non_null(v);
    for (size_t di = 0; di < AG_ARRAY_LEN(dists); di++) {
        ag_distance_t dist = dists[di];
        for (size_t i = 0; i < (size_t)clusters * dim; i++)
            centers[i] = uni();
        ag_vecstore_t *ram, *ext;
        assert_int_equal(ag_vecstore_new(dim, &ram), 0);
        assert_int_equal(ag_vecstore_new(dim, &ext), 0);
        assert_int_equal(ag_vecstore_set_external(ext, ext_row, NULL), 0);
        ext_src = ram;
        for (uint32_t s = 0; s < n + nq; s++) {
            const float *c = centers + (size_t)(next_u64() % clusters) * dim;
            float *dst = s < n ? v : qs + (size_t)(s - n) * dim;
            for (uint32_t j = 0; j < dim; j++)
                dst[j] = c[j] + 0.2f * uni();
            if (dist == AG_DIST_COSINE)
                ag_vector_normalize(dst, dim);
            if (s < n) {
                assert_int_equal(ag_vecstore_set(ram, s, v), 0);
                assert_int_equal(ag_vecstore_set(ext, s, NULL), 0);
            }
        }
        ag_hnsw_params_t p = {.m = 16, .ef_construct = 100};
        ag_index_t *in_ram, *on_ext, *exact;
        assert_int_equal(ag_index_hnsw_new(ram, dist, &p, &in_ram), 0);
        assert_int_equal(ag_index_hnsw_new(ext, dist, &p, &on_ext), 0);
        assert_int_equal(ag_index_exact_new(ram, dist, &exact), 0);
        assert_int_equal(ag_hnsw_set_quant(in_ram, 0.99), 0);
        assert_int_equal(ag_hnsw_set_quant(on_ext, 0.99), 0);
        assert_true(ag_hnsw_quantized(on_ext));
        ext_reads = 0;
        for (uint32_t s = 0; s < n; s++) {
            assert_int_equal(ag_index_add(in_ram, s), 0);
            assert_int_equal(ag_index_add(on_ext, s), 0);
        }
        /* the new row, for its code and the walk's query; never one per distance */
        print_message("  %-9s external linking: %zu rows read for %u links\n",
                      ag_distance_name(dist), ext_reads, n);
        assert_true(ext_reads <= 3 * (size_t)n);
        ag_search_params_t sp = {.ef = 64, .oversampling = 4.0};
        double r_ram = recall_at(in_ram, exact, qs, nq, dim, &sp);
        double r_ext = recall_at(on_ext, exact, qs, nq, dim, &sp);
        print_message("  %-9s recall@10 ef 64 os 4: in RAM %.3f, external %.3f\n",
                      ag_distance_name(dist), r_ram, r_ext);
        assert_true(r_ext >= 0.9);
        assert_true(r_ext >= r_ram - 0.03);
        ag_hit_t h[10];
        size_t nh = 0;
        assert_int_equal(ag_index_search(on_ext, qs, 10, NULL, &sp, h, &nh), 0);
        assert_int_equal(nh, 10);
        for (size_t i = 0; i < nh; i++)
            assert_true(h[i].score ==
                        ag_distance_score(dist, qs, ag_vecstore_get(ram, h[i].slot), dim));
        ag_index_free(in_ram);
        ag_index_free(on_ext);
        ag_index_free(exact);
        ag_vecstore_free(ext);
        ag_vecstore_free(ram);
    }
    free(centers);
    free(qs);
    free(v);
    ag_hnsw_thread_release();
}

/* The int8 codes live in the graph's level-0 blocks (docs/ARCHITECTURE.md "HNSW memory
 * layout"); a checkpoint keeps only the links. A graph resumed from a file into an index that is
 * quantized gets its codes again from the vectors: code-only searches answer exactly as the
 * saved index does, and each stored vector is its own nearest code at distance 0. */
static void test_hnsw_quant_resume(void **state)
{
    (void)state;
    const uint32_t dim = 24, n = 1500;
    ag_vecstore_t *vs = filled(n, dim, false);
    ag_index_t *ix, *back;
    assert_int_equal(ag_index_hnsw_new(vs, AG_DIST_EUCLID, NULL, &ix), 0);
    assert_int_equal(ag_hnsw_set_quant(ix, 1.0), 0);
    for (uint32_t s = 0; s < n; s++)
        assert_int_equal(ag_index_add(ix, s), 0);
    /* trained again over all the rows: the same range `back` will train */
    assert_int_equal(ag_hnsw_set_quant(ix, 1.0), 0);
    char path[512];
    const char *dir = getenv("TMPDIR");
    snprintf(path, sizeof(path), "%s/aegis_test_quant_%ld.hnsw", dir ? dir : "/tmp",
             (long)getpid());
    assert_int_equal(ag_hnsw_save(ix, path, NULL, NULL, 0), 0);
    assert_int_equal(ag_index_hnsw_new(vs, AG_DIST_EUCLID, NULL, &back), 0);
    assert_int_equal(ag_hnsw_set_quant(back, 1.0), 0);
    ag_hnsw_resume_t rs;
    assert_int_equal(ag_hnsw_resume(back, path, NULL, NULL, 0, &rs), 0);
    assert_int_equal(rs.kept, n);
    assert_true(ag_hnsw_quantized(back));
    ag_search_params_t raw = {.ef = 32, .quant_no_rescore = true};
    for (uint32_t s = 0; s < n; s += 7) {
        const float *q = ag_vecstore_get(vs, s);
        ag_hit_t h1[5], h2[5];
        size_t n1 = 0, n2 = 0;
        assert_int_equal(ag_index_search(ix, q, 5, NULL, &raw, h1, &n1), 0);
        assert_int_equal(ag_index_search(back, q, 5, NULL, &raw, h2, &n2), 0);
        assert_int_equal(n1, 5);
        assert_int_equal(n2, 5);
        for (size_t i = 0; i < n1; i++) {
            assert_int_equal(h1[i].slot, h2[i].slot);
            assert_true(h1[i].score == h2[i].score);
        }
        assert_true(h2[0].score == 0.0f); /* its own code */
    }
    /* Quantization off again: the float walk finds each vector itself, exactly scored. */
    assert_int_equal(ag_hnsw_set_quant(back, 0), 0);
    for (uint32_t s = 0; s < n; s += 11) {
        ag_hit_t h[1];
        size_t nh = 0;
        assert_int_equal(ag_index_search(back, ag_vecstore_get(vs, s), 1, NULL, &raw, h, &nh), 0);
        assert_int_equal(nh, 1);
        assert_int_equal(h[0].slot, s);
    }
    unlink(path);
    ag_index_free(ix);
    ag_index_free(back);
    ag_vecstore_free(vs);
    ag_hnsw_thread_release();
}

/* ---- binary quantization -------------------------------------------------------------------- */

static uint32_t ham_loop(const uint8_t *a, const uint8_t *b, size_t n)
{
    uint32_t s = 0;
    for (size_t i = 0; i < n; i++)
        for (int j = 0; j < 8; j++)
            s += ((a[i] ^ b[i]) >> j) & 1;
    return s;
}

/* Every Hamming kernel (the one picked for this CPU, VPOPCNTQ, AVX2, popcnt, the portable loop)
 * equals a bit-by-bit loop on random, all-ones and all-zero rows of every length. */
static void test_hamming_kernels(void **state)
{
    (void)state;
    for (size_t n = 32; n <= AG_QUANT_BROW(AG_MAX_DIM); n += 32) {
        uint8_t *a = aligned_alloc(64, (n + 63) & ~(size_t)63);
        uint8_t *b = aligned_alloc(64, (n + 63) & ~(size_t)63);
        assert_non_null(a);
        assert_non_null(b);
        for (int round = 0; round < 3; round++) {
            for (size_t i = 0; i < n; i++) {
                a[i] = round == 0 ? 0xFF : (uint8_t)next_u64();
                b[i] = round == 0 ? 0x00 : round == 1 ? 0xFF : (uint8_t)next_u64();
            }
            uint32_t want = ham_loop(a, b, n);
            if (round == 0)
                assert_int_equal(want, 8 * n);
            assert_int_equal(ag_bits_hamming(a, b, n), want);
            assert_int_equal(ag_bits_hamming_scalar(a, b, n), want);
            assert_int_equal(ag_bits_hamming_popcnt(a, b, n), want);
            assert_int_equal(ag_bits_hamming_avx2(a, b, n), want);
            assert_int_equal(ag_bits_hamming_avx512(a, b, n), want);
        }
        free(a);
        free(b);
        if (n > 512)
            n += 32 * 7; /* long rows: a sample of lengths is enough */
    }
    /* the gathering form, for the row sizes with their own loop (64) and others */
    static const size_t rows[] = {32, 64, 96};
    for (size_t ri = 0; ri < AG_ARRAY_LEN(rows); ri++) {
        const size_t row = rows[ri], stride = 192, n = 50;
        uint8_t *base = aligned_alloc(64, stride * n), *q = aligned_alloc(64, 128);
        assert_non_null(base);
        assert_non_null(q);
        for (size_t i = 0; i < stride * n; i++)
            base[i] = (uint8_t)next_u64();
        for (size_t i = 0; i < 128; i++)
            q[i] = (uint8_t)next_u64();
        uint32_t ids[20], out[21];
        for (size_t i = 0; i < 20; i++)
            ids[i] = (uint32_t)(next_u64() % n);
        for (size_t cnt = 0; cnt <= 20; cnt++) { /* every tail after the eight-row steps */
            out[cnt] = 0xDEADBEEF;
            ag_bits_hamming_gather(q, base + 64, stride, ids, cnt, row, out);
            for (size_t i = 0; i < cnt; i++)
                assert_int_equal(out[i], ham_loop(q, base + 64 + (size_t)ids[i] * stride, row));
            assert_int_equal(out[cnt], 0xDEADBEEF); /* nothing written past n */
        }
        free(base);
        free(q);
    }
    const char *k = ag_bits_hamming_kernel();
    assert_true(strcmp(k, "avx512-vpopcntq") == 0 || strcmp(k, "avx2") == 0 ||
                strcmp(k, "popcnt") == 0 || strcmp(k, "scalar") == 0);
}

/* Bits are the signs (above zero), the tail is zero, and the distance is the scaled count of
 * differing signs. */
static void test_binary_encode(void **state)
{
    (void)state;
    const uint32_t dim = 70;
    ag_vecstore_t *vs = filled(20, dim, false);
    ag_quant_t *q;
    assert_int_equal(ag_quant_new_binary(0, AG_DIST_COSINE, &q), AG_EINVAL);
    assert_int_equal(ag_quant_new_binary(dim, AG_DIST_COSINE, &q), 0);
    assert_int_equal(ag_quant_kind(q), AG_QUANT_BINARY);
    assert_int_equal(ag_quant_row_bytes(q), 32);
    assert_false(ag_quant_trained(q));
    assert_int_equal(ag_quant_train(q, vs), 0);
    assert_true(ag_quant_trained(q));
    float out[70];
    uint8_t code[64] __attribute__((aligned(64)));
    for (uint32_t s = 0; s < 20; s++) {
        const float *r = ag_vecstore_get(vs, s);
        ag_quant_decode(q, s, out);
        for (uint32_t i = 0; i < dim; i++)
            assert_true(out[i] == (r[i] > 0 ? 1.0f : -1.0f));
        assert_true(ag_quant_encode_row(q, r, code) == 0.0f);
        for (uint32_t i = dim; i < 256; i++)
            assert_int_equal((code[i >> 3] >> (i & 7)) & 1, 0);
    }
    ag_quant_query_t qq = {.code = code};
    const float *q0 = ag_vecstore_get(vs, 0), *q1 = ag_vecstore_get(vs, 1);
    ag_quant_encode_query(q, q0, &qq);
    assert_true(ag_quant_dist(q, &qq, 0) == -1.0f); /* itself: cosine of the signs is 1 */
    uint32_t diff = 0;
    for (uint32_t i = 0; i < dim; i++)
        diff += (q0[i] > 0) != (q1[i] > 0);
    assert_true(fabsf(ag_quant_dist(q, &qq, 1) - (2.0f * (float)diff / dim - 1.0f)) < 1e-6f);
    assert_true(fabsf(ag_quant_score(q, ag_quant_dist(q, &qq, 1)) -
                      (1.0f - 2.0f * (float)diff / dim)) < 1e-6f);
    ag_quant_free(q);
    ag_vecstore_free(vs);
}

/* Reads the MiniLM-384 embeddings (unit rows): every 10th row a query, the rest the base. NULL
 * when the data set is not there. */
static float *read_minilm(uint32_t *n_base, uint32_t *n_q, float **qs)
{
    const char *sh = getenv("AEGIS_SHARED");
    char p[1024];
    snprintf(p, sizeof(p), "%s/datasets/fiori-docs-minilm-384/embeddings.bin",
             sh ? sh : "../shared");
    FILE *f = fopen(p, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    float *all = malloc((size_t)size);
    assert_non_null(all);
    assert_int_equal(fread(all, 1, (size_t)size, f), (size_t)size);
    fclose(f);
    uint32_t rows = (uint32_t)((size_t)size / (384 * sizeof(float)));
    float *base = malloc((size_t)size), *q = malloc((size_t)size);
    assert_non_null(base);
    assert_non_null(q);
    *n_base = *n_q = 0;
    for (uint32_t i = 0; i < rows; i++) {
        float *dst = i % 10 == 9 ? q + (size_t)(*n_q)++ * 384 : base + (size_t)(*n_base)++ * 384;
        memcpy(dst, all + (size_t)i * 384, 384 * sizeof(float));
        ag_vector_normalize(dst, 384);
    }
    free(all);
    *qs = q;
    return base;
}

/* Binary quantization on real embeddings (MiniLM-384, 701 points): the graph ranked by Hamming
 * distance and rescored from the floats reaches recall@10 >= 0.95 at oversampling 4; rescoring
 * matters (without it recall is lower, scores approximate); the full-scan path over the codes
 * (below full_scan_threshold) does as well. */
static void test_binary_recall_minilm(void **state)
{
    (void)state;
    uint32_t n = 0, nq = 0;
    float *qs = NULL, *base = read_minilm(&n, &nq, &qs);
    if (!base) {
        print_message("MiniLM-384 data set not found: skipped\n");
        skip();
    }
    ag_vecstore_t *vs;
    assert_int_equal(ag_vecstore_new(384, &vs), 0);
    for (uint32_t i = 0; i < n; i++)
        assert_int_equal(ag_vecstore_set(vs, i, base + (size_t)i * 384), 0);
    ag_index_t *ix, *exact;
    ag_hnsw_params_t p = {.m = 16, .ef_construct = 100};
    assert_int_equal(ag_index_hnsw_new(vs, AG_DIST_COSINE, &p, &ix), 0);
    assert_int_equal(ag_index_exact_new(vs, AG_DIST_COSINE, &exact), 0);
    assert_int_equal(ag_hnsw_set_quant_kind(ix, AG_QUANT_BINARY, 0), 0);
    for (uint32_t s = 0; s < n; s++)
        assert_int_equal(ag_index_add(ix, s), 0);
    assert_true(ag_hnsw_quantized(ix));
    ag_hnsw_stats_t st;
    ag_hnsw_stats(ix, &st);
    assert_true(st.quant_memory >= (size_t)n * AG_QUANT_BROW(384));
    ag_search_params_t sp = {.ef = 64, .oversampling = 4.0};
    double r4 = recall_at(ix, exact, qs, nq, 384, &sp);
    ag_search_params_t raw = {.ef = 64, .quant_no_rescore = true};
    double r0 = recall_at(ix, exact, qs, nq, 384, &raw);
    print_message("MiniLM binary recall@10: oversampling 4 %.3f, no rescoring %.3f\n", r4, r0);
    assert_true(r4 >= 0.95);
    assert_true(r0 < r4);
    ag_hit_t h[10];
    size_t nh = 0;
    assert_int_equal(ag_index_search(ix, qs, 10, NULL, &sp, h, &nh), 0);
    for (size_t i = 0; i < nh; i++) /* rescored: the exact scores */
        assert_true(h[i].score ==
                    ag_distance_score(AG_DIST_COSINE, qs, ag_vecstore_get(vs, h[i].slot), 384));
    assert_int_equal(ag_index_search(ix, qs, 10, NULL, &raw, h, &nh), 0);
    for (size_t i = 1; i < nh; i++)
        assert_true(h[i - 1].score >= h[i].score && h[i].score <= 1.0f && h[i].score >= -1.0f);
    /* switching to int8 and back re-lays the blocks; searches keep working */
    assert_int_equal(ag_hnsw_set_quant(ix, 0.99), 0);
    assert_true(recall_at(ix, exact, qs, nq, 384, &sp) >= 0.95);
    assert_int_equal(ag_hnsw_set_quant_kind(ix, AG_QUANT_BINARY, 0), 0);
    assert_true(recall_at(ix, exact, qs, nq, 384, &sp) == r4);
    assert_int_equal(ag_hnsw_set_quant_kind(ix, (ag_quant_kind_t)7, 0), AG_EINVAL);
    ag_index_free(ix);
    ag_index_free(exact);
    ag_vecstore_free(vs);
    free(base);
    free(qs);
    ag_hnsw_thread_release();
}

/* Reads up to max rows of an .fvecs file; NULL when it is not there. */
static float *read_fvecs(const char *path, uint32_t max, uint32_t *n, uint32_t *d)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    int32_t dd = 0;
    float *out = NULL;
    *n = 0;
    if (fread(&dd, 4, 1, f) == 1 && dd > 0 && dd <= AG_MAX_DIM) {
        out = malloc((size_t)max * (size_t)dd * sizeof(float));
        assert_non_null(out);
        fseek(f, 0, SEEK_SET);
        int32_t x;
        while (*n < max && fread(&x, 4, 1, f) == 1 && x == dd &&
               fread(out + (size_t)*n * dd, 4, (size_t)dd, f) == (size_t)dd)
            (*n)++;
    }
    fclose(f);
    *d = (uint32_t)dd;
    return out;
}

/* Binary on a GloVe-100 sample (20k points): 100 bits are few, so the Hamming order is coarse
 * (docs/BENCHMARKS.md: binary is for high-dimensional embeddings); rescoring 500 candidates from
 * the floats still reaches recall@10 >= 0.9, and a wide oversampling beats a narrow one. */
static void test_binary_recall_glove(void **state)
{
    (void)state;
    const char *sh = getenv("AEGIS_SHARED");
    char p[1024];
    snprintf(p, sizeof(p), "%s/datasets/glove-100-angular-100k/base.fvecs", sh ? sh : "../shared");
    uint32_t n, d, nq, dq;
    float *base = read_fvecs(p, 20000, &n, &d);
    snprintf(p, sizeof(p), "%s/datasets/glove-100-angular-100k/query.fvecs", sh ? sh : "../shared");
    float *qs = read_fvecs(p, 100, &nq, &dq);
    if (!base || !qs) {
        free(base);
        free(qs);
        print_message("GloVe-100 data set not found: skipped\n");
        skip();
    }
    assert_int_equal(d, dq);
    ag_vecstore_t *vs;
    assert_int_equal(ag_vecstore_new(d, &vs), 0);
    for (uint32_t i = 0; i < n; i++) {
        ag_vector_normalize(base + (size_t)i * d, d);
        assert_int_equal(ag_vecstore_set(vs, i, base + (size_t)i * d), 0);
    }
    for (uint32_t i = 0; i < nq; i++)
        ag_vector_normalize(qs + (size_t)i * d, d);
    ag_index_t *ix, *exact;
    ag_hnsw_params_t hp = {.m = 16, .ef_construct = 100};
    assert_int_equal(ag_index_hnsw_new(vs, AG_DIST_COSINE, &hp, &ix), 0);
    assert_int_equal(ag_index_exact_new(vs, AG_DIST_COSINE, &exact), 0);
    for (uint32_t s = 0; s < n; s++)
        assert_int_equal(ag_index_add(ix, s), 0);
    assert_int_equal(ag_hnsw_set_quant_kind(ix, AG_QUANT_BINARY, 0), 0);
    ag_search_params_t wide = {.ef = 200, .oversampling = 50.0};
    ag_search_params_t narrow = {.ef = 200, .oversampling = 2.0};
    double rw = recall_at(ix, exact, qs, nq, d, &wide),
           rn = recall_at(ix, exact, qs, nq, d, &narrow);
    print_message("GloVe sample binary recall@10: oversampling 50 %.3f, 2 %.3f\n", rw, rn);
    assert_true(rw >= 0.9);
    assert_true(rw > rn);
    ag_index_free(ix);
    ag_index_free(exact);
    ag_vecstore_free(vs);
    free(base);
    free(qs);
    ag_hnsw_thread_release();
}

static bool accept_even(const void *ud, uint32_t slot)
{
    (void)ud;
    return slot % 2 == 0;
}

/* A graph that shrank to full_scan_threshold live points scans its codes too (every live node's
 * block holds its code): int8 and binary, Cosine, random rows. The scan's hits have the exact
 * index's scores bit for bit, removed points never come back, recall holds, and growing past the
 * threshold again returns to the walk. */
static void test_quant_scan_shrunk_graph(void **state)
{
    (void)state;
    const uint32_t dim = 96, n = 400, keep = 120, nq = 20;
    for (int kind = 0; kind < 2; kind++) {
        ag_vecstore_t *vs = filled(n + nq, dim, false);
        float *qs = malloc((size_t)nq * dim * sizeof(float));
        assert_non_null(qs);
        for (uint32_t i = 0; i < nq; i++) { /* the queries: the last nq rows, then not stored */
            memcpy(qs + (size_t)i * dim, ag_vecstore_get(vs, n + i), dim * sizeof(float));
            ag_vector_normalize(qs + (size_t)i * dim, dim);
            ag_vecstore_clear(vs, n + i);
        }
        for (uint32_t s = 0; s < n; s++) {
            float v[96];
            memcpy(v, ag_vecstore_get(vs, s), sizeof(v));
            ag_vector_normalize(v, dim);
            assert_int_equal(ag_vecstore_set(vs, s, v), 0);
        }
        ag_index_t *ix, *exact;
        ag_hnsw_params_t p = {.m = 8, .ef_construct = 64, .full_scan_threshold = 150};
        assert_int_equal(ag_index_hnsw_new(vs, AG_DIST_COSINE, &p, &ix), 0);
        assert_int_equal(ag_index_exact_new(vs, AG_DIST_COSINE, &exact), 0);
        assert_int_equal(
            ag_hnsw_set_quant_kind(ix, kind ? AG_QUANT_INT8 : AG_QUANT_BINARY, kind ? 0.99 : 0), 0);
        for (uint32_t s = 0; s < n; s++)
            assert_int_equal(ag_index_add(ix, s), 0);
        ag_search_params_t sp = {.oversampling = kind ? 2.0 : 6.0};
        ag_hnsw_stats_t st;
        ag_hnsw_stats(ix, &st);
        assert_true(st.built);
        assert_false(ag_hnsw_scans_codes(ix, &sp));
        for (uint32_t s = keep; s < n; s++) { /* down to 120 live points, below 150 */
            assert_int_equal(ag_index_remove(ix, s), 0);
            ag_vecstore_clear(vs, s);
        }
        assert_true(ag_hnsw_scans_codes(ix, &sp));
        ag_search_params_t ex = {.exact = true};
        assert_false(ag_hnsw_scans_codes(ix, &ex));
        double r = recall_at(ix, exact, qs, nq, dim, &sp);
        print_message("%s scan of a shrunk graph: recall@10 %.3f\n", kind ? "int8" : "binary", r);
        assert_true(r >= (kind ? 0.9 : 0.8));
        for (uint32_t i = 0; i < nq; i++) {
            ag_hit_t h[10];
            size_t nh = 0;
            assert_int_equal(ag_index_search(ix, qs + (size_t)i * dim, 10, NULL, &sp, h, &nh), 0);
            assert_int_equal(nh, 10);
            for (size_t j = 0; j < nh; j++) {
                assert_true(h[j].slot < keep);
                assert_true(h[j].score == ag_distance_score(AG_DIST_COSINE, qs + (size_t)i * dim,
                                                            ag_vecstore_get(vs, h[j].slot), dim));
            }
        }
        /* past the threshold again: the graph walks */
        for (uint32_t s = keep; s < n; s++) {
            float v[96];
            for (uint32_t j = 0; j < dim; j++)
                v[j] = uni();
            ag_vector_normalize(v, dim);
            assert_int_equal(ag_vecstore_set(vs, s, v), 0);
            assert_int_equal(ag_index_add(ix, s), 0);
        }
        assert_false(ag_hnsw_scans_codes(ix, &sp));
        assert_true(recall_at(ix, exact, qs, nq, dim, &sp) >= 0.8);
        ag_index_free(ix);
        ag_index_free(exact);
        ag_vecstore_free(vs);
        free(qs);
    }
    ag_hnsw_thread_release();
}

/* Below full_scan_threshold there is no graph: a quantized search scans every stored row's code
 * and rescores the best (Qdrant's small-segment path). On MiniLM-384, binary and int8: recall,
 * exact scores after rescoring, exact/ignore answer from the floats, a filter and a removal are
 * honoured, codes follow adds; crossing the threshold builds the graph and the walk takes over. */
static void test_quant_scan_small(void **state)
{
    (void)state;
    uint32_t n = 0, nq = 0;
    float *qs = NULL, *base = read_minilm(&n, &nq, &qs);
    if (!base) {
        print_message("MiniLM-384 data set not found: skipped\n");
        skip();
    }
    for (int kind = 0; kind < 2; kind++) {
        ag_vecstore_t *vs;
        assert_int_equal(ag_vecstore_new(384, &vs), 0);
        ag_index_t *ix, *exact;
        ag_hnsw_params_t p = {.m = 16, .ef_construct = 100, .full_scan_threshold = n};
        assert_int_equal(ag_index_hnsw_new(vs, AG_DIST_COSINE, &p, &ix), 0);
        assert_int_equal(ag_index_exact_new(vs, AG_DIST_COSINE, &exact), 0);
        /* turned on while empty: the codes follow the adds */
        assert_int_equal(
            ag_hnsw_set_quant_kind(ix, kind ? AG_QUANT_INT8 : AG_QUANT_BINARY, kind ? 0.99 : 0), 0);
        for (uint32_t i = 0; i < n; i++) {
            assert_int_equal(ag_vecstore_set(vs, i, base + (size_t)i * 384), 0);
            assert_int_equal(ag_index_add(ix, i), 0);
        }
        ag_search_params_t sp = {.oversampling = 4.0};
        assert_true(ag_hnsw_scans_codes(ix, &sp));
        ag_search_params_t ex = {.exact = true}, ign = {.quant_ignore = true};
        assert_false(ag_hnsw_scans_codes(ix, &ex));
        assert_false(ag_hnsw_scans_codes(ix, &ign));
        ag_hnsw_stats_t st;
        ag_hnsw_stats(ix, &st);
        assert_false(st.built);
        double r = recall_at(ix, exact, qs, nq, 384, &sp);
        print_message("%s code scan recall@10 at oversampling 4: %.3f\n", kind ? "int8" : "binary",
                      r);
        assert_true(r >= 0.95);
        ag_search_params_t raw = {.quant_no_rescore = true};
        assert_true(recall_at(ix, exact, qs, nq, 384, &raw) < r);
        assert_true(recall_at(ix, exact, qs, nq, 384, &ign) == 1.0);
        ag_hit_t h[10], e[10];
        size_t nh = 0, ne = 0;
        assert_int_equal(ag_index_search(ix, qs, 10, NULL, &sp, h, &nh), 0);
        assert_int_equal(nh, 10);
        for (size_t i = 0; i < nh; i++)
            assert_true(h[i].score ==
                        ag_distance_score(AG_DIST_COSINE, qs, ag_vecstore_get(vs, h[i].slot), 384));
        /* a filter: only accepted slots */
        ag_index_filter_t even = {.accept = accept_even};
        assert_int_equal(ag_index_search(ix, qs, 10, &even, &sp, h, &nh), 0);
        assert_int_equal(ag_index_search(exact, qs, 10, &even, NULL, e, &ne), 0);
        assert_int_equal(nh, 10);
        size_t same = 0;
        for (size_t i = 0; i < nh; i++) {
            assert_int_equal(h[i].slot % 2, 0);
            for (size_t j = 0; j < ne; j++)
                same += h[i].slot == e[j].slot;
        }
        assert_true(same >= 8);
        /* a removed point is never returned: find a query's best, remove it, ask again */
        uint32_t best = e[0].slot;
        assert_int_equal(ag_index_search(ix, ag_vecstore_get(vs, best), 1, NULL, &sp, h, &nh), 0);
        assert_int_equal(h[0].slot, best);
        float keep[384];
        memcpy(keep, ag_vecstore_get(vs, best), sizeof(keep));
        assert_int_equal(ag_index_remove(ix, best), 0);
        ag_vecstore_clear(vs, best);
        assert_int_equal(ag_index_search(ix, keep, 1, NULL, &sp, h, &nh), 0);
        assert_int_equal(nh, 1);
        assert_int_not_equal(h[0].slot, best);
        /* stored again under another vector (the negated one): found by that, with its own code */
        for (int j = 0; j < 384; j++)
            keep[j] = -keep[j];
        assert_int_equal(ag_vecstore_set(vs, best, keep), 0);
        assert_int_equal(ag_index_add(ix, best), 0);
        assert_int_equal(ag_index_search(ix, keep, 1, NULL, &raw, h, &nh), 0);
        assert_int_equal(h[0].slot, best);
        /* crossing the threshold: the graph is built and walked */
        float extra[384];
        for (int j = 0; j < 384; j++)
            extra[j] = base[j] + base[384 + j];
        ag_vector_normalize(extra, 384);
        assert_int_equal(ag_vecstore_set(vs, n, extra), 0);
        assert_int_equal(ag_index_add(ix, n), 0);
        ag_hnsw_stats(ix, &st);
        assert_true(st.built);
        assert_false(ag_hnsw_scans_codes(ix, &sp));
        assert_true(recall_at(ix, exact, qs, nq, 384, &sp) >= 0.9);
        ag_index_free(ix);
        ag_index_free(exact);
        ag_vecstore_free(vs);
    }
    free(base);
    free(qs);
    ag_hnsw_thread_release();
}

/* Every query's top-k from a and b: the same slots with the same scores, in the same order. */
static void assert_same_hits(const ag_index_t *a, const ag_index_t *b, const float *qs, uint32_t nq,
                             const ag_search_params_t *sp)
{
    for (uint32_t q = 0; q < nq; q++) {
        ag_hit_t ha[10], hb[10];
        size_t na = 0, nb = 0;
        assert_int_equal(ag_index_search(a, qs + (size_t)q * 384, 10, NULL, sp, ha, &na), 0);
        assert_int_equal(ag_index_search(b, qs + (size_t)q * 384, 10, NULL, sp, hb, &nb), 0);
        assert_int_equal(na, nb);
        for (size_t i = 0; i < na; i++) {
            assert_int_equal(ha[i].slot, hb[i].slot);
            assert_true(ha[i].score == hb[i].score);
        }
    }
}

static ag_index_t *scan_index(ag_vecstore_t *vs, uint32_t threshold)
{
    ag_index_t *ix;
    ag_hnsw_params_t p = {.m = 16, .ef_construct = 100, .full_scan_threshold = threshold};
    assert_int_equal(ag_index_hnsw_new(vs, AG_DIST_COSINE, &p, &ix), 0);
    return ix;
}

/* The sign-sketch prefilter of the int8 scan (docs/ARCHITECTURE.md "Small collections") on
 * MiniLM-384: kept by default for Cosine at 384 dimensions (64 bytes a slot); when its candidates
 * cover every row the answer equals the plain int8 scan's; at the default factor recall@10 stays
 * >= 0.95 at oversampling 1.5 and a narrow factor changes answers (the path is live); after
 * deletes, overwrites (with the negated vectors, then back), re-adds, a quantization change and a
 * restart (defer + finish) every stored row's sketch equals its code's top bits and the answers
 * equal a fresh index's over the same points; the sketch is dropped where it does not apply. */
static void test_sketch_scan(void **state)
{
    (void)state;
    uint32_t n = 0, nq = 0;
    float *qs = NULL, *base = read_minilm(&n, &nq, &qs);
    if (!base) {
        print_message("MiniLM-384 data set not found: skipped\n");
        skip();
    }
    ag_vecstore_t *vs, *vs2;
    assert_int_equal(ag_vecstore_new(384, &vs), 0);
    assert_int_equal(ag_vecstore_new(384, &vs2), 0);
    for (uint32_t i = 0; i < n; i++) {
        assert_int_equal(ag_vecstore_set(vs, i, base + (size_t)i * 384), 0);
        assert_int_equal(ag_vecstore_set(vs2, i, base + (size_t)i * 384), 0);
    }
    ag_index_t *ix = scan_index(vs, n), *plain = scan_index(vs, n), *exact;
    assert_int_equal(ag_index_exact_new(vs, AG_DIST_COSINE, &exact), 0);
    assert_int_equal(ag_hnsw_set_quant(ix, 0.99), 0);
    assert_int_equal(ag_hnsw_set_quant(plain, 0.99), 0);
    for (uint32_t i = 0; i < n; i++) {
        assert_int_equal(ag_index_add(ix, i), 0);
        assert_int_equal(ag_index_add(plain, i), 0);
    }
    ag_hnsw_set_sketch(plain, 0, false);
    ag_hnsw_stats_t st;
    ag_hnsw_stats(ix, &st);
    assert_true(st.sketch_memory >= (size_t)n * 64);
    assert_true(ag_hnsw_sketch_ok(ix));
    ag_hnsw_stats(plain, &st);
    assert_int_equal(st.sketch_memory, 0);
    assert_false(ag_hnsw_sketch_ok(plain));

    ag_search_params_t os15 = {.oversampling = 1.5}, os1 = {.oversampling = 1.0},
                       raw = {.quant_no_rescore = true};
    double r = recall_at(ix, exact, qs, nq, 384, &os15);
    double rp = recall_at(plain, exact, qs, nq, 384, &os1);
    print_message("int8 scan recall@10: sketch (factor 4) at oversampling 1.5 %.4f; plain at 1 "
                  "%.4f\n",
                  r, rp);
    assert_true(r >= 0.95);
    /* at the default oversampling (1) the sketch keeps at least SKETCH_MIN_KEEP candidates, so
     * it costs the plain scan's recall next to nothing */
    double r1 = recall_at(ix, exact, qs, nq, 384, &os1);
    print_message("int8 scan recall@10 at oversampling 1: sketch %.4f, plain %.4f\n", r1, rp);
    assert_true(r1 >= rp - 0.01);
    /* candidates covering every row: the plain scan's answer, scores and order */
    ag_hnsw_set_sketch(ix, 1000.0, true);
    assert_true(ag_hnsw_sketch_ok(ix));
    assert_same_hits(ix, plain, qs, nq, &os1);
    assert_same_hits(ix, plain, qs, nq, &raw);
    /* a narrow sketch drops true neighbours: the prefilter really runs */
    ag_hnsw_set_sketch(ix, 1.0, true);
    assert_true(recall_at(ix, exact, qs, nq, 384, &os1) < rp);
    ag_hnsw_set_sketch(ix, 4.0, false);

    /* writes: a fresh index over vs2 (the same points, untouched) is the reference */
    ag_index_t *fresh = scan_index(vs2, n);
    assert_int_equal(ag_hnsw_set_quant(fresh, 0.99), 0);
    for (uint32_t i = 0; i < n; i++)
        assert_int_equal(ag_index_add(fresh, i), 0);
    assert_same_hits(ix, fresh, qs, nq, &os15);
    float neg[384];
    for (uint32_t s = 0; s < n;
         s += 5) { /* overwritten with the negated vector (as a write does) */
        for (int j = 0; j < 384; j++)
            neg[j] = -base[(size_t)s * 384 + j];
        assert_int_equal(ag_index_remove(ix, s), 0);
        assert_int_equal(ag_vecstore_set(vs, s, neg), 0);
        assert_int_equal(ag_index_add(ix, s), 0);
    }
    for (uint32_t s = 3; s < n; s += 7) { /* deleted */
        assert_int_equal(ag_index_remove(ix, s), 0);
        ag_vecstore_clear(vs, s);
    }
    assert_true(ag_hnsw_sketch_ok(ix));
    assert_true(ag_hnsw_scans_codes(ix, &os15));
    /* a negated row is found by its own vector, and a deleted one is not */
    ag_hit_t h[1];
    size_t nh = 0;
    for (int j = 0; j < 384; j++)
        neg[j] = -base[5 * 384 + j];
    assert_int_equal(ag_index_search(ix, neg, 1, NULL, &os15, h, &nh), 0);
    assert_int_equal(h[0].slot, 5);
    assert_int_equal(ag_index_search(ix, base + 3 * 384, 1, NULL, &os15, h, &nh), 0);
    assert_int_not_equal(h[0].slot, 3);
    /* back to the original points (re-added, overwritten back): the fresh index's answers */
    for (uint32_t s = 0; s < n; s++) {
        if (s % 5 == 0 || (s >= 3 && (s - 3) % 7 == 0)) {
            assert_int_equal(ag_index_remove(ix, s), 0);
            assert_int_equal(ag_vecstore_set(vs, s, base + (size_t)s * 384), 0);
            assert_int_equal(ag_index_add(ix, s), 0);
        }
    }
    assert_true(ag_hnsw_sketch_ok(ix));
    assert_same_hits(ix, fresh, qs, nq, &os15);
    /* quantization changed and back: laid out again */
    assert_int_equal(ag_hnsw_set_quant_kind(ix, AG_QUANT_BINARY, 0), 0);
    ag_hnsw_stats(ix, &st);
    assert_int_equal(st.sketch_memory, 0);
    assert_int_equal(ag_hnsw_set_quant(ix, 0.99), 0);
    assert_true(ag_hnsw_sketch_ok(ix));
    assert_same_hits(ix, fresh, qs, nq, &os15);
    /* a restart: deferred, the points added again, finished */
    ag_hnsw_defer(ix);
    for (uint32_t i = 0; i < n; i++)
        assert_int_equal(ag_index_add(ix, i), 0);
    assert_int_equal(ag_hnsw_finish(ix, NULL, NULL, NULL, 0), 0);
    assert_true(ag_hnsw_sketch_ok(ix));
    assert_same_hits(ix, fresh, qs, nq, &os15);
    /* crossing the threshold: the graph takes over, the sketches are dropped */
    float extra[384];
    for (int j = 0; j < 384; j++)
        extra[j] = base[j] + base[384 + j];
    ag_vector_normalize(extra, 384);
    assert_int_equal(ag_vecstore_set(vs, n, extra), 0);
    assert_int_equal(ag_index_add(ix, n), 0);
    ag_hnsw_stats(ix, &st);
    assert_true(st.built);
    assert_int_equal(st.sketch_memory, 0);
    ag_index_free(fresh);
    ag_index_free(ix);
    ag_index_free(plain);

    /* not kept: Dot, Euclid, fewer than 256 dimensions (unless forced) */
    ag_distance_t others[] = {AG_DIST_DOT, AG_DIST_EUCLID};
    for (size_t d = 0; d < AG_ARRAY_LEN(others); d++) {
        ag_hnsw_params_t p = {.full_scan_threshold = n + 10};
        assert_int_equal(ag_index_hnsw_new(vs2, others[d], &p, &ix), 0);
        assert_int_equal(ag_hnsw_set_quant(ix, 0.99), 0);
        for (uint32_t i = 0; i < n; i++)
            assert_int_equal(ag_index_add(ix, i), 0);
        ag_hnsw_stats(ix, &st);
        assert_int_equal(st.sketch_memory, 0);
        ag_hnsw_set_sketch(ix, 4.0, true);
        ag_hnsw_stats(ix, &st);
        assert_true((st.sketch_memory > 0) == (others[d] == AG_DIST_DOT));
        ag_index_free(ix);
    }
    ag_index_free(exact);
    ag_vecstore_free(vs);
    ag_vecstore_free(vs2);
    free(base);
    free(qs);
    ag_hnsw_thread_release();
}

/* The int8 encoder (vectorized where the CPU allows) gives the portable formula's codes, with
 * clipping, NaN and dimensions that are not a multiple of 16. */
static void test_encode_matches_formula(void **state)
{
    (void)state;
    static const uint32_t dims[] = {1, 15, 16, 17, 100, 384, 385};
    for (size_t di = 0; di < AG_ARRAY_LEN(dims); di++) {
        uint32_t dim = dims[di];
        ag_vecstore_t *vs = filled(300, dim, false);
        ag_quant_t *q;
        assert_int_equal(ag_quant_new(dim, AG_DIST_DOT, 0.9, &q), 0);
        assert_int_equal(ag_quant_fit(q, vs), 0);
        float lo, step;
        ag_quant_range(q, &lo, &step);
        size_t row = ag_quant_row_bytes(q);
        uint8_t *code = aligned_alloc(64, (row + 63) & ~(size_t)63);
        float *v = malloc(dim * sizeof(float));
        assert_non_null(code);
        assert_non_null(v);
        for (int round = 0; round < 20; round++) {
            for (uint32_t i = 0; i < dim; i++)
                v[i] = 3.0f * uni();
            if (round % 4 == 1)
                v[round % dim] = NAN;
            float corr = ag_quant_encode_row(q, v, code);
            uint32_t sum = 0;
            for (uint32_t i = 0; i < dim; i++) {
                float c = (v[i] - lo) * (1.0f / step) + 0.5f;
                c = c > 0.0f ? c : 0.0f;
                c = c < 255.0f ? c : 255.0f;
                uint8_t want = (uint8_t)(int32_t)c;
                assert_int_equal(code[i], want); /* inv_step is 1.0f / step (ag_quant.c) */
                sum += code[i];
            }
            for (size_t i = dim; i < row; i++)
                assert_int_equal(code[i], 0);
            assert_true(corr == lo * step * (float)sum);
            /* the sketch: the codes' top bits, zero past dim */
            uint8_t sk[AG_QUANT_BROW(AG_MAX_DIM)];
            size_t skn = AG_QUANT_BROW(dim);
            ag_u8_top_bits(code, row, sk, skn);
            for (uint32_t i = 0; i < 8 * skn; i++)
                assert_int_equal((sk[i / 8] >> (i % 8)) & 1, i < dim ? code[i] >> 7 : 0);
        }
        free(code);
        free(v);
        ag_quant_free(q);
        ag_vecstore_free(vs);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kernels_match_loops),
        cmocka_unit_test(test_dot_kernels_random),
        cmocka_unit_test(test_encode_decode_bounds),
        cmocka_unit_test(test_distances_approximate),
        cmocka_unit_test(test_hnsw_quant_trains_on_adds),
        cmocka_unit_test(test_hnsw_quantized_recall),
        cmocka_unit_test(test_hnsw_quant_resume),
        cmocka_unit_test(test_hnsw_quant_external_linking),
        cmocka_unit_test(test_hamming_kernels),
        cmocka_unit_test(test_dotsum_gather),
        cmocka_unit_test(test_dotsum_gather_random),
        cmocka_unit_test(test_binary_encode),
        cmocka_unit_test(test_binary_recall_minilm),
        cmocka_unit_test(test_binary_recall_glove),
        cmocka_unit_test(test_quant_scan_small),
        cmocka_unit_test(test_quant_scan_shrunk_graph),
        cmocka_unit_test(test_sketch_scan),
        cmocka_unit_test(test_encode_matches_formula),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
