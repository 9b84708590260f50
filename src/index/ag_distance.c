#include "ag_base.h"

#include "ag_distance.h"

#include <math.h>

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
