/*
 * Multivectors and vector element types (index/ag_multivec.h; docs/COMPATIBILITY.md
 * "Multivectors and datatypes").
 */
#include "ag_multivec.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ag_clock.h"
#include "ag_grow.h"

/* ---- element types ------------------------------------------------------------------------- */

static const char *const dtype_names[] = {
    [AG_DTYPE_FLOAT32] = "float32",
    [AG_DTYPE_FLOAT16] = "float16",
    [AG_DTYPE_UINT8] = "uint8",
};

int ag_dtype_parse(const char *name, ag_dtype_t *out)
{
    for (size_t i = 0; name && i < AG_ARRAY_LEN(dtype_names); i++) {
        if (strcmp(name, dtype_names[i]) == 0) {
            *out = (ag_dtype_t)i;
            return 0;
        }
    }
    return AG_EINVAL;
}

const char *ag_dtype_name(ag_dtype_t t)
{
    return (size_t)t < AG_ARRAY_LEN(dtype_names) ? dtype_names[t] : "unknown";
}

/*
 * float → half → float, on the bits. A half has 1 sign bit, 5 exponent bits (bias 15) and 10
 * fraction bits; a float has 8 exponent bits (bias 127) and 23 fraction bits. Normal halves keep
 * the top 10 fraction bits, rounded to nearest with ties to even on the 13 dropped; below 2^-14
 * the half is subnormal (fixed step 2^-24), rounded the same way; from 65520 on (the rounding
 * point above the largest half, 65504) the result is infinite.
 */
float ag_f16_round(float x)
{
    if (!isfinite(x))
        return x;
    float ax = fabsf(x);
    if (ax >= 65520.0f)
        return copysignf(INFINITY, x);
    if (ax < 0x1p-14f) {
        /* Subnormal half: a multiple of 2^-24, nearest with ties to even (rintf under the default
         * rounding mode). The scaling by 2^24 is exact. */
        float m = rintf(ax * 0x1p24f);
        return copysignf(m * 0x1p-24f, x);
    }
    uint32_t bits;
    memcpy(&bits, &ax, sizeof(bits));
    uint32_t drop = bits & 0x1fffu; /* the 13 fraction bits a half has no room for */
    bits &= ~0x1fffu;
    if (drop > 0x1000u || (drop == 0x1000u && (bits & 0x2000u)))
        bits += 0x2000u; /* a carry into the exponent is the right result too */
    float r;
    memcpy(&r, &bits, sizeof(r));
    return copysignf(r, x);
}

float ag_u8_convert(float x)
{
    if (isnan(x) || x <= 0.0f)
        return 0.0f;
    if (x >= 255.0f)
        return 255.0f;
    return truncf(x);
}

int ag_dtype_convert(ag_dtype_t t, float *v, size_t n, size_t *bad)
{
    for (size_t i = 0; i < n; i++) {
        if (t == AG_DTYPE_FLOAT16) {
            v[i] = ag_f16_round(v[i]);
            if (!isfinite(v[i])) {
                *bad = i;
                return AG_EINVAL;
            }
        } else if (t == AG_DTYPE_UINT8) {
            v[i] = ag_u8_convert(v[i]);
        }
    }
    return 0;
}

/* ---- MaxSim -------------------------------------------------------------------------------- */

static inline float sim(ag_distance_t d, const float *a, const float *b, uint32_t dim)
{
    switch (d) {
    case AG_DIST_EUCLID:
        return -ag_l2sq_f32(a, b, dim);
    case AG_DIST_MANHATTAN:
        return -ag_l1_f32(a, b, dim);
    case AG_DIST_COSINE:
    case AG_DIST_DOT:
        break;
    }
    return ag_dot_f32(a, b, dim);
}

float ag_maxsim(ag_distance_t d, const float *q, uint32_t qn, const float *x, uint32_t xn,
                uint32_t dim)
{
    float sum = 0;
    if (xn == 0)
        return 0;
    for (uint32_t i = 0; i < qn; i++) {
        const float *qi = q + (size_t)i * dim;
        float best = -INFINITY;
        for (uint32_t j = 0; j < xn; j++) {
            float s = sim(d, qi, x + (size_t)j * dim, dim);
            best = s > best ? s : best;
        }
        sum += best;
    }
    return sum;
}

float ag_maxsim_score(ag_distance_t d, float s)
{
    switch (d) {
    case AG_DIST_EUCLID:
        return sqrtf(fabsf(s));
    case AG_DIST_MANHATTAN:
        return fabsf(s);
    case AG_DIST_COSINE:
    case AG_DIST_DOT:
        break;
    }
    return s;
}

/* ---- the store ----------------------------------------------------------------------------- */

struct ag_mv_block {
    uint32_t rows;
    float data[];
};

struct ag_multivec {
    uint32_t dim;
    uint32_t count;
    size_t bytes;          /* held by the blocks */
    ag_mv_block_t **slots; /* owned array of owned blocks (NULL = absent) */
    size_t cap;
};

ag_mv_block_t *ag_mv_block_new(const float *data, uint32_t rows, uint32_t dim)
{
    if (rows == 0 || rows > AG_MV_MAX_ROWS || dim == 0 || dim > AG_MAX_DIM)
        return NULL;
    size_t n = (size_t)rows * dim;
    ag_mv_block_t *b = malloc(sizeof(*b) + n * sizeof(float));
    if (!b)
        return NULL;
    b->rows = rows;
    memcpy(b->data, data, n * sizeof(float));
    return b;
}

void ag_mv_block_free(ag_mv_block_t *b)
{
    free(b);
}

int ag_multivec_new(uint32_t dim, ag_multivec_t **out)
{
    *out = NULL;
    if (dim == 0 || dim > AG_MAX_DIM)
        return AG_EINVAL;
    ag_multivec_t *mv = calloc(1, sizeof(*mv));
    if (!mv)
        return AG_ENOMEM;
    mv->dim = dim;
    *out = mv;
    return 0;
}

void ag_multivec_free(ag_multivec_t *mv)
{
    if (!mv)
        return;
    for (size_t i = 0; i < mv->cap; i++)
        free(mv->slots[i]);
    free(mv->slots);
    free(mv);
}

int ag_multivec_reserve(ag_multivec_t *mv, uint32_t slots)
{
    if (slots <= mv->cap)
        return 0;
    size_t old = mv->cap;
    if (AG_GROW(mv->slots, mv->cap, slots, 1024, (size_t)INT32_MAX) != 0)
        return AG_ENOMEM;
    memset(mv->slots + old, 0, (mv->cap - old) * sizeof(*mv->slots));
    return 0;
}

static size_t block_bytes(const ag_multivec_t *mv, const ag_mv_block_t *b)
{
    return sizeof(*b) + (size_t)b->rows * mv->dim * sizeof(float);
}

void ag_multivec_clear(ag_multivec_t *mv, uint32_t slot)
{
    if (slot >= mv->cap || !mv->slots[slot])
        return;
    mv->bytes -= block_bytes(mv, mv->slots[slot]);
    free(mv->slots[slot]);
    mv->slots[slot] = NULL;
    mv->count--;
}

int ag_multivec_put(ag_multivec_t *mv, uint32_t slot, ag_mv_block_t *b)
{
    if (slot >= mv->cap || !b) {
        free(b);
        return AG_EINVAL;
    }
    ag_multivec_clear(mv, slot);
    mv->slots[slot] = b;
    mv->bytes += block_bytes(mv, b);
    mv->count++;
    return 0;
}

int ag_multivec_set(ag_multivec_t *mv, uint32_t slot, const float *data, uint32_t rows)
{
    if (slot >= (uint32_t)INT32_MAX)
        return AG_EINVAL;
    ag_mv_block_t *b = ag_mv_block_new(data, rows, mv->dim);
    if (!b)
        return rows == 0 || rows > AG_MV_MAX_ROWS ? AG_EINVAL : AG_ENOMEM;
    if (ag_multivec_reserve(mv, slot + 1) != 0) {
        free(b);
        return AG_ENOMEM;
    }
    return ag_multivec_put(mv, slot, b);
}

const float *ag_multivec_get(const ag_multivec_t *mv, uint32_t slot, uint32_t *rows)
{
    if (slot >= mv->cap || !mv->slots[slot])
        return NULL;
    *rows = mv->slots[slot]->rows;
    return mv->slots[slot]->data;
}

uint32_t ag_multivec_dim(const ag_multivec_t *mv)
{
    return mv->dim;
}

uint32_t ag_multivec_count(const ag_multivec_t *mv)
{
    return mv->count;
}

size_t ag_multivec_memory(const ag_multivec_t *mv)
{
    return mv->bytes + mv->cap * sizeof(*mv->slots);
}

/* Work (multiply-adds: query rows x point rows x dim) between two looks at the clock, about a
 * millisecond: a query and points with many rows make each slot costly. */
#define DEADLINE_WORK ((uint64_t)1 << 22)

int ag_multivec_search(const ag_multivec_t *mv, ag_distance_t d, const float *q, uint32_t qn,
                       size_t k, const ag_index_filter_t *flt, const ag_search_params_t *params,
                       ag_hit_t *out, size_t *n_out)
{
    if (!mv || !q || !n_out || (k > 0 && !out) || qn == 0)
        return AG_EINVAL;
    *n_out = 0;
    bool higher = ag_distance_higher_is_better(d);
    bool has_t = params && params->has_threshold;
    if (has_t && isnan(params->score_threshold))
        return AG_EINVAL;
    double deadline = params ? params->deadline : 0;
    if (k == 0)
        return 0;
    ag_topk_t t;
    ag_topk_init(&t, out, k);
    bool cand = flt && flt->candidates;
    size_t total = cand ? flt->n_candidates : mv->cap;
    uint64_t work = DEADLINE_WORK; /* look at the clock before the first slot */
    for (size_t i = 0; i < total; i++) {
        if (deadline > 0 && work >= DEADLINE_WORK) {
            if (ag_now_mono() >= deadline)
                return AG_ETIMEOUT;
            work = 0;
        }
        work += 16; /* even an absent slot costs a little */
        uint32_t slot = cand ? flt->candidates[i] : (uint32_t)i;
        if (cand && i > 0 && flt->candidates[i - 1] == slot)
            continue;
        if (slot >= mv->cap || !mv->slots[slot])
            continue;
        if (flt && flt->accept && !flt->accept(flt->ud, slot))
            continue;
        const ag_mv_block_t *b = mv->slots[slot];
        work += (uint64_t)qn * b->rows * mv->dim;
        float s = ag_maxsim_score(d, ag_maxsim(d, q, qn, b->data, b->rows, mv->dim));
        if (has_t && !(higher ? s >= params->score_threshold : s <= params->score_threshold))
            continue;
        ag_topk_push(&t, slot, higher ? s : -s);
    }
    size_t n = ag_topk_finish(&t);
    if (!higher)
        for (size_t i = 0; i < n; i++)
            out[i].score = -out[i].score;
    *n_out = n;
    return 0;
}
