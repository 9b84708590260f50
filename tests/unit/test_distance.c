/* Distance kernels against a double-precision reference. */
#include "ag_base.h"

#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "index/ag_distance.h"

static uint64_t rng_state = 0x9E3779B97F4A7C15u;

static uint64_t xorshift(void)
{
    uint64_t x = rng_state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return rng_state = x;
}

/* Uniform in [-1, 1). */
static float frand(void)
{
    return (float)((double)(xorshift() >> 11) / (double)(UINT64_C(1) << 53) * 2.0 - 1.0);
}

#define MAX_DIM 300
/* Room for the unaligned offsets tested below. */
static float buf_a[MAX_DIM + 8];
static float buf_b[MAX_DIM + 8];

static double ref_dot(const float *a, const float *b, uint32_t n, double *mag)
{
    double s = 0, m = 0;
    for (uint32_t i = 0; i < n; i++) {
        s += (double)a[i] * b[i];
        m += fabs((double)a[i] * b[i]);
    }
    *mag = m;
    return s;
}

static double ref_l2sq(const float *a, const float *b, uint32_t n)
{
    double s = 0;
    for (uint32_t i = 0; i < n; i++) {
        double d = (double)a[i] - b[i];
        s += d * d;
    }
    return s;
}

static double ref_norm(const float *a, uint32_t n)
{
    double s = 0;
    for (uint32_t i = 0; i < n; i++)
        s += (double)a[i] * a[i];
    return sqrt(s);
}

static double ref_l1(const float *a, const float *b, uint32_t n)
{
    double s = 0;
    for (uint32_t i = 0; i < n; i++)
        s += fabs((double)a[i] - b[i]);
    return s;
}

/* A float sum of n terms is within about n * eps of the exact one, relative to the sum of the
 * magnitudes; 4e-7 * n is a little over that and far below what one dropped term would cost. */
static void assert_close(double got, double want, double mag, uint32_t n)
{
    double tol = 4e-7 * (double)n * mag + 1e-30;
    if (fabs(got - want) > tol)
        fail_msg("dim %u: got %.9g want %.9g (tol %.3g)", n, got, want, tol);
}

static void fill(float *v, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++)
        v[i] = frand() * 4.0f;
}

static void test_kernels_vs_reference(void **state)
{
    AG_UNUSED(state);
    for (uint32_t dim = 1; dim <= MAX_DIM; dim++) {
        for (uint32_t off = 0; off < 3; off++) { /* misaligned starts too */
            float *a = buf_a + off, *b = buf_b + (off * 5) % 7;
            fill(a, dim);
            fill(b, dim);
            double mag;
            double dot = ref_dot(a, b, dim, &mag);
            assert_close(ag_dot_f32(a, b, dim), dot, mag, dim);
            double l2 = ref_l2sq(a, b, dim);
            assert_close(ag_l2sq_f32(a, b, dim), l2, l2, dim);
            double l1 = ref_l1(a, b, dim);
            assert_close(ag_l1_f32(a, b, dim), l1, l1, dim);

            assert_close(ag_distance_score(AG_DIST_DOT, a, b, dim), dot, mag, dim);
            assert_close(ag_distance_score(AG_DIST_COSINE, a, b, dim), dot, mag, dim);
            assert_close(ag_distance_score(AG_DIST_EUCLID, a, b, dim), sqrt(l2), sqrt(l2), dim);
            assert_close(ag_distance_score(AG_DIST_MANHATTAN, a, b, dim), l1, l1, dim);
        }
    }
}

static void test_kernels_edge_cases(void **state)
{
    AG_UNUSED(state);
    float a[5] = {1, 2, 3, 4, 5};
    float b[5] = {5, 4, 3, 2, 1};
    assert_true(ag_dot_f32(a, b, 0) == 0.0f);
    assert_true(ag_l2sq_f32(a, b, 0) == 0.0f);
    assert_true(ag_l1_f32(a, b, 0) == 0.0f);
    /* small integers are exact in any summation order */
    assert_true(ag_dot_f32(a, b, 5) == 35.0f);
    assert_true(ag_l2sq_f32(a, b, 5) == 40.0f);
    assert_true(ag_l1_f32(a, b, 5) == 12.0f);
    assert_true(ag_distance_score(AG_DIST_EUCLID, a, a, 5) == 0.0f);
    assert_true(ag_distance_score(AG_DIST_MANHATTAN, a, a, 5) == 0.0f);
    assert_true(ag_distance_score(AG_DIST_EUCLID, a, b, 5) == sqrtf(40.0f));
}

static void test_parse_and_name(void **state)
{
    AG_UNUSED(state);
    static const char *names[] = {"Cosine", "Dot", "Euclid", "Manhattan"};
    for (size_t i = 0; i < AG_ARRAY_LEN(names); i++) {
        ag_distance_t d = AG_DIST_MANHATTAN;
        assert_int_equal(ag_distance_parse(names[i], &d), 0);
        assert_int_equal(d, (ag_distance_t)i);
        assert_string_equal(ag_distance_name(d), names[i]);
    }
    static const char *bad[] = {"cosine", "COSINE", "Euclidean", "L2",
                                "",       "Dot ",   " Dot",      "Manhatan"};
    for (size_t i = 0; i < AG_ARRAY_LEN(bad); i++) {
        ag_distance_t d = AG_DIST_DOT;
        assert_int_equal(ag_distance_parse(bad[i], &d), AG_EINVAL);
        assert_int_equal(d, AG_DIST_DOT);
    }
    ag_distance_t d;
    assert_int_equal(ag_distance_parse(NULL, &d), AG_EINVAL);
    assert_string_equal(ag_distance_name((ag_distance_t)42), "Unknown");

    assert_true(ag_distance_higher_is_better(AG_DIST_COSINE));
    assert_true(ag_distance_higher_is_better(AG_DIST_DOT));
    assert_false(ag_distance_higher_is_better(AG_DIST_EUCLID));
    assert_false(ag_distance_higher_is_better(AG_DIST_MANHATTAN));
}

static void test_normalize(void **state)
{
    AG_UNUSED(state);
    for (uint32_t dim = 1; dim <= MAX_DIM; dim += 7) {
        float v[MAX_DIM];
        fill(v, dim);
        float orig[MAX_DIM];
        memcpy(orig, v, dim * sizeof(float));
        ag_vector_normalize(v, dim);
        double n2 = 0;
        for (uint32_t i = 0; i < dim; i++)
            n2 += (double)v[i] * v[i];
        assert_true(fabs(n2 - 1.0) < 1e-5);
        /* same direction: cosine with the original is 1 */
        double mag, dot = ref_dot(v, orig, dim, &mag);
        assert_true(fabs(dot / ref_norm(orig, dim) - 1.0) < 1e-5);
        /* once normalized, Cosine scores equal the cosine similarity */
        float w[MAX_DIM];
        fill(w, dim);
        double cw = ref_dot(orig, w, dim, &mag) / (ref_norm(orig, dim) * ref_norm(w, dim));
        ag_vector_normalize(w, dim);
        assert_true(fabs(ag_distance_score(AG_DIST_COSINE, v, w, dim) - cw) < 1e-5);
    }
    float z[7] = {0};
    ag_vector_normalize(z, 7);
    for (int i = 0; i < 7; i++)
        assert_true(z[i] == 0.0f);
    ag_vector_normalize(z, 0); /* no-op */
}

/* Several rows at once (rescoring): every result equal, bit for bit, to ag_dot_f32's on the same
 * pair, for many lengths and row counts (the four-row kernel and the leftovers). */
static void test_dot_rows_exact(void **state)
{
    (void)state;
    enum { N = 11, D = 1537 };
    float *q = malloc(D * sizeof(float)), *rows = malloc((size_t)N * D * sizeof(float));
    assert_non_null(q);
    assert_non_null(rows);
    for (size_t i = 0; i < D; i++)
        q[i] = frand();
    for (size_t i = 0; i < (size_t)N * D; i++)
        rows[i] = frand();
    for (uint32_t dim = 0; dim <= D; dim += dim < 40 ? 1 : 97) {
        for (size_t n = 0; n <= N; n++) {
            const float *ptr[N];
            float out[N + 1];
            for (size_t r = 0; r < n; r++)
                ptr[r] = rows + ((r * 7) % N) * D + (r % 3); /* any alignment */
            out[n] = 12345.0f;
            ag_dot_f32_rows(q + (dim % 5 == 0), ptr, n, dim, out);
            for (size_t r = 0; r < n; r++) {
                float want = ag_dot_f32(q + (dim % 5 == 0), ptr[r], dim);
                assert_memory_equal(&out[r], &want, sizeof(float));
            }
            assert_true(out[n] == 12345.0f);
        }
    }
    print_message("dot rows batched: %s\n", ag_dot_f32_rows_batched() ? "yes" : "no");
    free(q);
    free(rows);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kernels_vs_reference), cmocka_unit_test(test_kernels_edge_cases),
        cmocka_unit_test(test_parse_and_name),       cmocka_unit_test(test_normalize),
        cmocka_unit_test(test_dot_rows_exact),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
