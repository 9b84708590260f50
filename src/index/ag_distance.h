/*
 * ag_distance.h — distance functions and the raw float32 kernels behind them.
 *
 * Scores follow Qdrant: Cosine and Dot report the dot product (Cosine vectors are normalized once,
 * at insert, so cosine similarity == dot product), Euclid reports the L2 distance (with the square
 * root), Manhattan the L1 distance. For Cosine/Dot higher is better; for Euclid/Manhattan lower.
 *
 * The kernels are portable loops vectorized by `#pragma omp simd` (compiled with -fopenmp-simd)
 * and cloned per instruction set with target_clones, so the best variant is picked at load time
 * without intrinsics and without -ffast-math. None of them allocate; all are thread-safe.
 */
#ifndef AG_DISTANCE_H
#define AG_DISTANCE_H

#include "ag_base.h"

typedef enum { AG_DIST_COSINE = 0, AG_DIST_DOT, AG_DIST_EUCLID, AG_DIST_MANHATTAN } ag_distance_t;

/* "Cosine", "Dot", "Euclid", "Manhattan" (exact, case-sensitive, as Qdrant spells them) into
 * *out; AG_EINVAL for anything else (including NULL), *out untouched. */
int ag_distance_parse(const char *name, ag_distance_t *out);
/* Static string as accepted by ag_distance_parse ("Unknown" for an out-of-range value). */
const char *ag_distance_name(ag_distance_t d);

/* The score Qdrant reports for a pair of vectors of `dim` floats (see the top of this file). */
float ag_distance_score(ag_distance_t d, const float *a, const float *b, uint32_t dim);
/* True for Cosine and Dot (a larger score is a better match). */
bool ag_distance_higher_is_better(ag_distance_t d);
/* Scales v in place to unit L2 norm; a zero vector stays zero. */
void ag_vector_normalize(float *v, uint32_t dim);

/* Raw kernels. dim may be 0 (the result is then 0). a and b need no particular alignment. */
float ag_dot_f32(const float *a, const float *b, uint32_t dim);  /* sum a[i]*b[i] */
float ag_l2sq_f32(const float *a, const float *b, uint32_t dim); /* sum (a[i]-b[i])^2 */
float ag_l1_f32(const float *a, const float *b, uint32_t dim);   /* sum |a[i]-b[i]| */
/* out[i] = ag_dot_f32(a, rows[i], dim) for i < n, bit for bit, several rows at once where a
 * startup self-check found the batched kernel identical (ag_dot_f32_rows_batched tells). */
void ag_dot_f32_rows(const float *a, const float *const *rows, size_t n, uint32_t dim, float *out);
bool ag_dot_f32_rows_batched(void);

#endif
