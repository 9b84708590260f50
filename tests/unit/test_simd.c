/* The AEGIS_SIMD cap (index/ag_simd.h): at every level (scalar, avx2, avx512; a level above the
 * CPU's runs what the CPU has) each hand-dispatched kernel — int8 dot/dotsum/L2/L1 and the
 * gathering dotsum, the encoder, Hamming and its gathering form, the sign sketch's top bits, the
 * scan helpers, the four-row float rescoring — gives exactly the result of a plain loop written
 * here, on random rows of many lengths, the all-zero / all-one extremes and empty inputs; and the
 * kernel names show the cap was obeyed. CTest runs this binary once per AEGIS_SIMD value too
 * (unit.test_simd.scalar / .avx2), which checks that the environment is read. */
#include "ag_base.h"

#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "index/ag_distance.h"
#include "index/ag_quant.h"
#include "index/ag_simd.h"
#include "index/ag_vecstore.h"

#define TEST_RNG_SEED 0x3C6EF372FE94F82Bull
#include "test_rand.h"

static void *alloc64(size_t n)
{
    void *p = aligned_alloc(64, (n + 63) & ~(size_t)63);
    assert_non_null(p);
    memset(p, 0, (n + 63) & ~(size_t)63);
    return p;
}

/* Fills n bytes by pattern: 0 random, 1 all 0x00, 2 all 0xFF, 3 mostly zero with a few bytes. */
static void fill(uint8_t *p, size_t n, int pattern)
{
    for (size_t i = 0; i < n; i++) {
        uint8_t r = (uint8_t)next_u64();
        p[i] = pattern == 1 ? 0 : pattern == 2 ? 0xFF : pattern == 3 ? (r < 8 ? r : 0) : r;
    }
}

static uint32_t ref_dot(const uint8_t *a, const uint8_t *b, size_t n, uint32_t *sum_b)
{
    uint32_t s = 0, sb = 0;
    for (size_t i = 0; i < n; i++) {
        s += (uint32_t)a[i] * b[i];
        sb += b[i];
    }
    if (sum_b)
        *sum_b = sb;
    return s;
}

static uint32_t ref_l2(const uint8_t *a, const uint8_t *b, size_t n)
{
    uint32_t s = 0;
    for (size_t i = 0; i < n; i++)
        s += (uint32_t)(((int)a[i] - (int)b[i]) * ((int)a[i] - (int)b[i]));
    return s;
}

static uint32_t ref_l1(const uint8_t *a, const uint8_t *b, size_t n)
{
    uint32_t s = 0;
    for (size_t i = 0; i < n; i++)
        s += (uint32_t)abs((int)a[i] - (int)b[i]);
    return s;
}

static uint32_t ref_ham(const uint8_t *a, const uint8_t *b, size_t n)
{
    uint32_t s = 0;
    for (size_t i = 0; i < n; i++)
        for (int j = 0; j < 8; j++)
            s += ((a[i] ^ b[i]) >> j) & 1;
    return s;
}

static const int levels[] = {AG_SIMD_SCALAR, AG_SIMD_AVX2, AG_SIMD_AVX512};

/* The names of what runs never exceed the cap. */
static void check_names(int level)
{
    const char *dot = ag_u8_dot_kernel(), *ham = ag_bits_hamming_kernel();
    const char *scan = ag_u32_scan_kernel();
    print_message("cap %s: int8 %s, Hamming %s, scan %s, rows %s\n", ag_simd_name((ag_simd_t)level),
                  dot, ham, scan, ag_dot_f32_rows_batched() ? "four" : "one");
    assert_int_equal(ag_simd_cap(), level);
    if (level == AG_SIMD_SCALAR) {
        assert_string_equal(dot, "scalar");
        assert_string_equal(ham, "scalar");
        assert_string_equal(scan, "scalar");
        assert_false(ag_dot_f32_rows_batched());
    } else if (level == AG_SIMD_AVX2) {
        assert_true(strcmp(dot, "avx2") == 0 || strcmp(dot, "scalar") == 0);
        assert_true(strcmp(ham, "avx2") == 0 || strcmp(ham, "popcnt") == 0 ||
                    strcmp(ham, "scalar") == 0);
        assert_string_equal(scan, "scalar");
        assert_false(ag_dot_f32_rows_batched());
    }
}

static void test_env_read(void **state)
{
    (void)state;
    /* CTest sets AEGIS_SIMD for the .scalar / .avx2 runs: the cap must be what it names. */
    const char *env = getenv("AEGIS_SIMD");
    ag_diag_t diag = {{0}};
    assert_int_equal(ag_simd_env_check(&diag), 0);
    int want = AG_SIMD_AVX512;
    if (env && strcmp(env, "scalar") == 0)
        want = AG_SIMD_SCALAR;
    else if (env && strcmp(env, "avx2") == 0)
        want = AG_SIMD_AVX2;
    assert_int_equal(ag_simd_cap(), want);
    check_names(want);
    ag_simd_cap_set(AG_SIMD_SCALAR);
    assert_int_equal(ag_simd_cap(), AG_SIMD_SCALAR);
    ag_simd_cap_set(-1); /* back to the environment's */
    assert_int_equal(ag_simd_cap(), want);
    assert_string_equal(ag_simd_name(AG_SIMD_AVX2), "avx2");
    assert_string_equal(ag_simd_name((ag_simd_t)7), "?");
    char line[256];
    ag_simd_describe(line, sizeof(line));
    assert_non_null(strstr(line, "AEGIS_SIMD="));
}

/* int8 kernels: dot, dotsum, L2, L1 through ag_u8_* and through ag_quant_params' pointers. */
static void test_int8_kernels(void **state)
{
    (void)state;
    const size_t max = AG_QUANT_ROW(AG_MAX_DIM);
    uint8_t *a = alloc64(max), *b = alloc64(max);
    for (size_t li = 0; li < AG_ARRAY_LEN(levels); li++) {
        ag_simd_cap_set(levels[li]);
        check_names(levels[li]);
        for (int round = 0; round < 120; round++) {
            size_t n = round < 40 ? 32 * (size_t)round : 32 * (1 + next_u64() % (max / 32));
            if (round == 40)
                n = max;
            fill(a, n, round % 4 == 2 ? 2 : round % 7 == 3 ? 3 : 0);
            fill(b, n, round % 4 == 2 ? 2 : round % 4 == 1 ? 1 : 0);
            uint32_t sum = 0, got_sum = 7;
            uint32_t want = ref_dot(a, b, n, &sum);
            assert_int_equal(ag_u8_dot(a, b, n), want);
            assert_int_equal(ag_u8_dotsum(a, b, n, &got_sum), want);
            assert_int_equal(got_sum, sum);
            assert_int_equal(ag_u8_l2sq(a, b, n), ref_l2(a, b, n));
            assert_int_equal(ag_u8_l1(a, b, n), ref_l1(a, b, n));
        }
    }
    ag_simd_cap_set(-1);
    free(a);
    free(b);
}

/* A quantizer picks its kernels when it is created (ag_quant_new), so one is made under each cap:
 * its distance and dot-plus-sum kernels (the graph walk's and the scan's) against the loops, and
 * the encoder against the formula (codes (v - lo) / step + 0.5 clamped to 0..255, zero tail). */
static void test_quant_params_and_encode(void **state)
{
    (void)state;
    static const uint32_t dims[] = {1, 17, 100, 385};
    static const ag_distance_t dists[] = {AG_DIST_DOT, AG_DIST_EUCLID, AG_DIST_MANHATTAN};
    for (size_t di = 0; di < AG_ARRAY_LEN(dims); di++) {
        const uint32_t dim = dims[di];
        ag_vecstore_t *vs;
        assert_int_equal(ag_vecstore_new(dim, &vs), 0);
        float *v = malloc(dim * sizeof(float));
        assert_non_null(v);
        for (uint32_t s = 0; s < 200; s++) {
            for (uint32_t j = 0; j < dim; j++)
                v[j] = uni();
            assert_int_equal(ag_vecstore_set(vs, s, v), 0);
        }
        for (size_t li = 0; li < AG_ARRAY_LEN(levels); li++) {
            ag_simd_cap_set(levels[li]);
            for (size_t k = 0; k <= AG_ARRAY_LEN(dists); k++) {
                const bool binary = k == AG_ARRAY_LEN(dists);
                ag_quant_t *q;
                if (binary)
                    assert_int_equal(ag_quant_new_binary(dim, AG_DIST_DOT, &q), 0);
                else
                    assert_int_equal(ag_quant_new(dim, dists[k], 0.95, &q), 0);
                assert_int_equal(ag_quant_fit(q, vs), 0);
                float lo = 0, step = 1;
                if (!binary)
                    ag_quant_range(q, &lo, &step);
                size_t row = ag_quant_row_bytes(q);
                uint8_t *code = alloc64(row), *other = alloc64(row);
                ag_quant_params_t p;
                ag_quant_params(q, &p);
                for (int round = 0; round < 10; round++) {
                    for (uint32_t j = 0; j < dim; j++)
                        v[j] = round == 0 ? 5.0f : round == 1 ? -5.0f : 1.5f * uni();
                    if (round == 3)
                        v[dim / 2] = NAN;
                    memset(code, 0xAB, row);
                    float corr = ag_quant_encode_row(q, v, code);
                    uint32_t sum = 0;
                    for (size_t i = 0; i < row; i++) {
                        uint8_t want = 0;
                        if (binary && i < (dim + 7) / 8) {
                            for (uint32_t j = 0; j < 8 && 8 * i + j < dim; j++)
                                want |= (uint8_t)((v[8 * i + j] > 0.0f) << j);
                        } else if (!binary && i < dim) {
                            float c = (v[i] - lo) * (1.0f / step) + 0.5f;
                            c = c > 0.0f ? c : 0.0f;
                            c = c < 255.0f ? c : 255.0f;
                            want = (uint8_t)(int32_t)c;
                        }
                        assert_int_equal(code[i], want);
                        sum += code[i];
                    }
                    if (!binary)
                        assert_true(corr == lo * step * (float)sum);
                    fill(other, row, round % 3 == 0 ? 2 : 0);
                    uint32_t want = binary                       ? ref_ham(code, other, row)
                                    : dists[k] == AG_DIST_EUCLID ? ref_l2(code, other, row)
                                    : dists[k] == AG_DIST_MANHATTAN
                                        ? ref_l1(code, other, row)
                                        : ref_dot(code, other, row, NULL);
                    assert_int_equal(p.kern(code, other, row), want);
                    if (!binary) {
                        uint32_t s_want = 0, got = 1;
                        uint32_t d = ref_dot(code, other, row, &s_want);
                        assert_int_equal(p.dotsum(code, other, row, &got), d);
                        assert_int_equal(got, s_want);
                    }
                }
                free(code);
                free(other);
                ag_quant_free(q);
            }
        }
        ag_simd_cap_set(-1);
        free(v);
        ag_vecstore_free(vs);
    }
}

/* The gathering dotsum (four rows a step with VNNI, one by one below): every row count 0..20
 * after the steps, row sizes with their own loops and past the register limit, nothing written
 * past n. */
static void test_dotsum_gather(void **state)
{
    (void)state;
    static const size_t rows[] = {32, 64, 128, 384, 512, 544, 1024};
    const size_t stride = 1088, nrows = 40;
    uint8_t *base = alloc64(stride * nrows), *q = alloc64(1024);
    for (size_t li = 0; li < AG_ARRAY_LEN(levels); li++) {
        ag_simd_cap_set(levels[li]);
        for (size_t ri = 0; ri < AG_ARRAY_LEN(rows); ri++) {
            const size_t row = rows[ri];
            fill(base, stride * nrows, ri % 3 == 2 ? 2 : 0);
            fill(q, 1024, ri == 1 ? 2 : 0);
            uint32_t ids[20], dot[21], sum[21];
            for (size_t i = 0; i < 20; i++)
                ids[i] = (uint32_t)(next_u64() % nrows);
            for (size_t cnt = 0; cnt <= 20; cnt++) {
                dot[cnt] = sum[cnt] = 0xDEADBEEF;
                ag_u8_dotsum_gather(q, base, stride, ids, cnt, row, dot, sum);
                for (size_t i = 0; i < cnt; i++) {
                    uint32_t s;
                    assert_int_equal(dot[i], ref_dot(q, base + (size_t)ids[i] * stride, row, &s));
                    assert_int_equal(sum[i], s);
                }
                assert_int_equal(dot[cnt], 0xDEADBEEF);
                assert_int_equal(sum[cnt], 0xDEADBEEF);
            }
        }
    }
    ag_simd_cap_set(-1);
    free(base);
    free(q);
}

/* Hamming counts and their gathering form (the 64-byte eight-row loop, other rows). */
static void test_hamming(void **state)
{
    (void)state;
    const size_t max = AG_QUANT_BROW(AG_MAX_DIM);
    uint8_t *a = alloc64(max), *b = alloc64(max);
    for (size_t li = 0; li < AG_ARRAY_LEN(levels); li++) {
        ag_simd_cap_set(levels[li]);
        for (size_t n = 0; n <= max; n += 32) {
            for (int pattern = 0; pattern < 4; pattern++) {
                fill(a, n, pattern);
                fill(b, n, pattern == 1 ? 2 : pattern == 2 ? 2 : 0);
                assert_int_equal(ag_bits_hamming(a, b, n), ref_ham(a, b, n));
            }
        }
        static const size_t rows[] = {32, 64, 96, 128};
        const size_t stride = 192, nrows = 50;
        uint8_t *base = alloc64(stride * nrows), *q = alloc64(128);
        for (size_t ri = 0; ri < AG_ARRAY_LEN(rows); ri++) {
            fill(base, stride * nrows, ri == 2 ? 2 : 0);
            fill(q, 128, ri == 3 ? 1 : 0);
            uint32_t ids[21], out[22];
            for (size_t i = 0; i < 21; i++)
                ids[i] = (uint32_t)(next_u64() % nrows);
            for (size_t cnt = 0; cnt <= 21; cnt++) {
                out[cnt] = 0xDEADBEEF;
                ag_bits_hamming_gather(q, base, stride, ids, cnt, rows[ri], out);
                for (size_t i = 0; i < cnt; i++)
                    assert_int_equal(out[i], ref_ham(q, base + (size_t)ids[i] * stride, rows[ri]));
                assert_int_equal(out[cnt], 0xDEADBEEF);
            }
        }
        free(base);
        free(q);
    }
    ag_simd_cap_set(-1);
    free(a);
    free(b);
}

/* The sign sketch: bit i of out is the top bit of code[i], the rest of out zero. */
static void test_top_bits(void **state)
{
    (void)state;
    const size_t max = AG_QUANT_ROW(AG_MAX_DIM);
    uint8_t *code = alloc64(max);
    uint8_t *out = malloc(max / 8 + 16);
    assert_non_null(out);
    for (size_t li = 0; li < AG_ARRAY_LEN(levels); li++) {
        ag_simd_cap_set(levels[li]);
        for (size_t n = 0; n <= max; n += n < 256 ? 32 : 32 * 13) {
            for (int pattern = 0; pattern < 4; pattern++) {
                fill(code, n, pattern);
                size_t out_n = n / 8 + (size_t)pattern * 3;
                memset(out, 0x5A, max / 8 + 16);
                ag_u8_top_bits(code, n, out, out_n);
                for (size_t i = 0; i < 8 * out_n; i++)
                    assert_int_equal((out[i / 8] >> (i % 8)) & 1, i < n ? code[i] >> 7 : 0);
                assert_int_equal(out[out_n], 0x5A); /* nothing past out_n */
            }
        }
    }
    ag_simd_cap_set(-1);
    free(code);
    free(out);
}

/* The scan helpers: the set bits' positions in order (up to max), and the in-place pick of the
 * rows below the cut plus the first `room` at it. */
static void test_scan_helpers(void **state)
{
    (void)state;
    enum { MAXW = 37, MAXM = 300 };
    uint64_t words[MAXW];
    uint32_t out[MAXW * 64 + 1], want[MAXW * 64];
    uint32_t cnt[MAXM], ids[MAXM], ids_ref[MAXM];
    for (size_t li = 0; li < AG_ARRAY_LEN(levels); li++) {
        ag_simd_cap_set(levels[li]);
        for (int round = 0; round < 400; round++) {
            uint32_t nwords = round < 38 ? (uint32_t)round : (uint32_t)(next_u64() % (MAXW + 1));
            for (uint32_t w = 0; w < nwords; w++) {
                uint64_t r = next_u64();
                int kind = (int)((round + w) % 5);
                words[w] = kind == 0   ? 0
                           : kind == 1 ? ~UINT64_C(0)
                           : kind == 2 ? r & next_u64() & next_u64() /* sparse */
                           : kind == 3 ? UINT64_C(1) << (r % 64)
                                       : r;
            }
            size_t total = 0;
            for (uint32_t w = 0; w < nwords; w++)
                for (uint64_t bits = words[w]; bits; bits &= bits - 1)
                    want[total++] = w * 64u + (uint32_t)__builtin_ctzll(bits);
            size_t max = round % 3 == 0 ? total : round % 3 == 1 ? next_u64() % (total + 1) : 0;
            if (round % 11 == 5)
                max = total + 10;
            out[max < total ? max : total] = 0xDEADBEEF;
            size_t got = ag_bits_to_ids(words, nwords, out, max);
            size_t expect = max < total ? max : total;
            assert_int_equal(got, expect);
            assert_memory_equal(out, want, expect * sizeof(uint32_t));
            assert_int_equal(out[expect], 0xDEADBEEF);
        }
        for (int round = 0; round < 400; round++) {
            size_t m = round < 40 ? (size_t)round : next_u64() % (MAXM + 1);
            uint32_t span = 1 + (uint32_t)(next_u64() % (round % 2 ? 4u : 40u));
            for (size_t i = 0; i < m; i++) {
                cnt[i] = (uint32_t)(next_u64() % span);
                ids[i] = ids_ref[i] = (uint32_t)next_u64();
            }
            uint32_t cut = (uint32_t)(next_u64() % (span + 1));
            size_t room = round % 4 == 0 ? 0 : round % 4 == 1 ? m : next_u64() % 20;
            size_t n = 0, r = room;
            for (size_t i = 0; i < m; i++) {
                if (cnt[i] > cut || (cnt[i] == cut && r == 0))
                    continue;
                if (cnt[i] == cut)
                    r--;
                ids_ref[n++] = ids_ref[i];
            }
            assert_int_equal(ag_u32_pick_below(cnt, ids, m, cut, room), n);
            assert_memory_equal(ids, ids_ref, n * sizeof(uint32_t));
        }
    }
    ag_simd_cap_set(-1);
}

/* Rescoring: every row's score from ag_dot_f32_rows equals ag_dot_f32's bit for bit, for every
 * row count (partial groups of four) and odd lengths. */
static void test_dot_rows(void **state)
{
    (void)state;
    static const uint32_t dims[] = {1, 3, 15, 16, 17, 33, 100, 385, 1536};
    enum { MAXD = 1536, STRIDE = MAXD + 4, NR = 11 };
    float *q = malloc((MAXD + 1) * sizeof(float)), *m = malloc((size_t)NR * STRIDE * sizeof(float));
    assert_non_null(q);
    assert_non_null(m);
    for (size_t i = 0; i < MAXD + 1; i++)
        q[i] = uni();
    for (size_t i = 0; i < (size_t)NR * STRIDE; i++)
        m[i] = uni() * 3.0f;
    const float *rows[NR];
    for (size_t li = 0; li < AG_ARRAY_LEN(levels); li++) {
        ag_simd_cap_set(levels[li]);
        for (size_t di = 0; di < AG_ARRAY_LEN(dims); di++) {
            const uint32_t dim = dims[di];
            const float *qv = q + di % 2; /* unaligned rows and query too */
            for (size_t n = 0; n <= NR; n++) {
                float out[NR + 1];
                for (size_t r = 0; r < n; r++)
                    rows[r] = m + ((r * 7 + di) % NR) * STRIDE + r % 3;
                out[n] = -1234.5f;
                ag_dot_f32_rows(qv, rows, n, dim, out);
                for (size_t r = 0; r < n; r++) {
                    float want = ag_dot_f32(qv, rows[r], dim);
                    assert_true(memcmp(&out[r], &want, sizeof(float)) == 0);
                }
                assert_true(out[n] == -1234.5f);
            }
        }
    }
    ag_simd_cap_set(-1);
    free(q);
    free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_env_read),
        cmocka_unit_test(test_int8_kernels),
        cmocka_unit_test(test_quant_params_and_encode),
        cmocka_unit_test(test_dotsum_gather),
        cmocka_unit_test(test_hamming),
        cmocka_unit_test(test_top_bits),
        cmocka_unit_test(test_scan_helpers),
        cmocka_unit_test(test_dot_rows),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
