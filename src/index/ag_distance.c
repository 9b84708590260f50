#include "ag_base.h"

#include "ag_distance.h"

#include <math.h>

#include "ag_simd.h"

/*
 * One source loop per kernel; the compiler emits an AVX-512, an AVX2 and a baseline copy and an
 * ifunc resolver picks one when the program loads. `omp simd reduction` is what allows the
 * vectorizer to reorder the float sum (which -std=c11 without -ffast-math otherwise forbids), so
 * results differ from a sequential sum only by rounding.
 *
 * The clones are file-local and the exported names are one-jump wrappers: clang (at least up to
 * 14) names a cloned function's ifunc "<name>.ifunc", so callers in other files could not link
 * to an exported clone directly.
 */
#if defined(__x86_64__) && defined(__ELF__) && defined(__GNUC__) && !defined(AG_NO_CLONES)
#define AG_KERNEL static __attribute__((target_clones("avx512f", "avx2", "default")))
#else /* other targets: one portable copy (NEON on aarch64 is its baseline) */
#define AG_KERNEL static
#endif

AG_KERNEL float dot_kernel(const float *a, const float *b, uint32_t dim)
{
    float acc = 0.0f;
#pragma omp simd reduction(+ : acc)
    for (uint32_t i = 0; i < dim; i++)
        acc += a[i] * b[i];
    return acc;
}

AG_KERNEL float l2sq_kernel(const float *a, const float *b, uint32_t dim)
{
    float acc = 0.0f;
#pragma omp simd reduction(+ : acc)
    for (uint32_t i = 0; i < dim; i++) {
        float d = a[i] - b[i];
        acc += d * d;
    }
    return acc;
}

AG_KERNEL float l1_kernel(const float *a, const float *b, uint32_t dim)
{
    float acc = 0.0f;
#pragma omp simd reduction(+ : acc)
    for (uint32_t i = 0; i < dim; i++)
        acc += fabsf(a[i] - b[i]);
    return acc;
}

float ag_dot_f32(const float *a, const float *b, uint32_t dim)
{
    return dot_kernel(a, b, dim);
}

/*
 * Several rows' dot products with one query, each equal bit for bit to ag_dot_f32's (the exact
 * scores rescoring returns must not depend on how many rows were scored together). A lone
 * dot_kernel is one chain of dependent additions; four rows interleaved keep four chains in
 * flight. The four-row kernel below repeats, per row, the arithmetic GCC emits for dot_kernel's
 * AVX-512 clone (sixteen lane sums of products, not fused; the dim % 16 tail added into lane 0;
 * the lanes then summed in order from 0.0). Whether that holds for the build and CPU at hand is
 * not assumed: the first call compares the two on a range of lengths and uses the four-row
 * kernel only if every result is identical (docs/ARCHITECTURE.md "Small collections"), and only
 * when AEGIS_SIMD allows AVX-512 (ag_simd.h; checked per call, the self-check's answer is kept).
 */
#if defined(__x86_64__) && defined(__ELF__) && defined(__GNUC__) && !defined(AG_NO_CLONES)
#include <immintrin.h>
#include <stdatomic.h>
#define DOT_ROWS_AVX512 1

__attribute__((target("avx512f"))) static void dot4_avx512(const float *a, const float *const *b,
                                                           uint32_t dim, float *out)
{
    __m512 s0 = _mm512_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    uint32_t i = 0;
    for (; i + 16 <= dim; i += 16) {
        __m512 x = _mm512_loadu_ps(a + i);
        s0 = _mm512_add_ps(s0, _mm512_mul_ps(x, _mm512_loadu_ps(b[0] + i)));
        s1 = _mm512_add_ps(s1, _mm512_mul_ps(x, _mm512_loadu_ps(b[1] + i)));
        s2 = _mm512_add_ps(s2, _mm512_mul_ps(x, _mm512_loadu_ps(b[2] + i)));
        s3 = _mm512_add_ps(s3, _mm512_mul_ps(x, _mm512_loadu_ps(b[3] + i)));
    }
    float l[4][16];
    _mm512_storeu_ps(l[0], s0);
    _mm512_storeu_ps(l[1], s1);
    _mm512_storeu_ps(l[2], s2);
    _mm512_storeu_ps(l[3], s3);
    for (int r = 0; r < 4; r++) {
        for (uint32_t j = i; j < dim; j++) {
            float p = a[j] * b[r][j];
            l[r][0] = p + l[r][0];
        }
        float acc = 0.0f;
        for (int k = 0; k < 16; k++)
            acc += l[r][k];
        out[r] = acc;
    }
}

static _Atomic int dot4_state = -1; /* -1 unknown, 0 off, 1 on (racing threads agree) */

static bool dot4_usable(void)
{
    int st = atomic_load_explicit(&dot4_state, memory_order_relaxed);
    if (st >= 0)
        return st == 1;
    __builtin_cpu_init();
    bool ok = __builtin_cpu_supports("avx512f");
    enum { MAXD = 1536 };
    float *v = ok ? malloc(5 * MAXD * sizeof(float)) : NULL;
    ok = ok && v;
    uint64_t x = 0x9E3779B97F4A7C15ull;
    for (int i = 0; ok && i < 5 * MAXD; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v[i] = (float)((double)(x >> 11) / (double)(UINT64_C(1) << 53) - 0.5);
    }
    static const uint32_t dims[] = {1,   3,   15,  16,  17,  31,  33,  64,
                                    100, 128, 200, 384, 385, 768, 1536};
    for (size_t d = 0; ok && d < AG_ARRAY_LEN(dims); d++) {
        const float *rows[4] = {v + MAXD, v + 2 * MAXD, v + 3 * MAXD, v + 4 * MAXD};
        float got[4];
        dot4_avx512(v, rows, dims[d], got);
        for (int r = 0; r < 4; r++)
            ok = ok && got[r] == dot_kernel(v, rows[r], dims[d]);
    }
    free(v);
    atomic_store_explicit(&dot4_state, ok ? 1 : 0, memory_order_relaxed);
    return ok;
}
#endif

void ag_dot_f32_rows(const float *a, const float *const *rows, size_t n, uint32_t dim, float *out)
{
    size_t i = 0;
#ifdef DOT_ROWS_AVX512
    if (n >= 4 && ag_simd_cap() >= AG_SIMD_AVX512 && dot4_usable())
        for (; i + 4 <= n; i += 4)
            dot4_avx512(a, rows + i, dim, out + i);
#endif
    for (; i < n; i++)
        out[i] = dot_kernel(a, rows[i], dim);
}

bool ag_dot_f32_rows_batched(void)
{
#ifdef DOT_ROWS_AVX512
    return ag_simd_cap() >= AG_SIMD_AVX512 && dot4_usable();
#else
    return false;
#endif
}

float ag_l2sq_f32(const float *a, const float *b, uint32_t dim)
{
    return l2sq_kernel(a, b, dim);
}

float ag_l1_f32(const float *a, const float *b, uint32_t dim)
{
    return l1_kernel(a, b, dim);
}

static const char *const dist_names[] = {
    [AG_DIST_COSINE] = "Cosine",
    [AG_DIST_DOT] = "Dot",
    [AG_DIST_EUCLID] = "Euclid",
    [AG_DIST_MANHATTAN] = "Manhattan",
};

int ag_distance_parse(const char *name, ag_distance_t *out)
{
    if (!name || !out)
        return AG_EINVAL;
    for (size_t i = 0; i < AG_ARRAY_LEN(dist_names); i++) {
        if (strcmp(name, dist_names[i]) == 0) {
            *out = (ag_distance_t)i;
            return 0;
        }
    }
    return AG_EINVAL;
}

const char *ag_distance_name(ag_distance_t d)
{
    if ((unsigned)d >= AG_ARRAY_LEN(dist_names))
        return "Unknown";
    return dist_names[d];
}

float ag_distance_score(ag_distance_t d, const float *a, const float *b, uint32_t dim)
{
    switch (d) {
    case AG_DIST_COSINE:
    case AG_DIST_DOT:
        return ag_dot_f32(a, b, dim);
    case AG_DIST_EUCLID:
        return sqrtf(ag_l2sq_f32(a, b, dim));
    case AG_DIST_MANHATTAN:
        return ag_l1_f32(a, b, dim);
    }
    ag_assert(!"unknown distance");
}

bool ag_distance_higher_is_better(ag_distance_t d)
{
    return d == AG_DIST_COSINE || d == AG_DIST_DOT;
}

void ag_vector_normalize(float *v, uint32_t dim)
{
    /* Accumulate the norm in double: for large dims a float sum loses enough to leave the result
     * visibly off unit length, and this runs once per insert, not per comparison. */
    double sq = 0.0;
    for (uint32_t i = 0; i < dim; i++)
        sq += (double)v[i] * (double)v[i];
    if (sq == 0.0 || !isfinite(sq))
        return;
    double inv = 1.0 / sqrt(sq);
    for (uint32_t i = 0; i < dim; i++)
        v[i] = (float)((double)v[i] * inv);
}
