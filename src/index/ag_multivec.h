/*
 * ag_multivec.h — multivectors (Qdrant's `multivector_config: {"comparator": "max_sim"}`): per
 * slot, a list of one or more vectors of one dimension, scored by MaxSim, and the element types
 * a dense vector may declare (`datatype`). docs/COMPATIBILITY.md "Multivectors and datatypes".
 *
 * MaxSim of a query (rows q_1..q_n) against a point (rows d_1..d_m), in Qdrant's similarity
 * space (higher is better): sum over i of max over j of sim(q_i, d_j), with sim the dot product
 * for Cosine (rows normalized at input) and Dot, the negated squared L2 distance for Euclid and
 * the negated L1 distance for Manhattan. The score a client sees is that sum for Cosine/Dot, its
 * magnitude for Manhattan, and the square root of its magnitude for Euclid (so a single row gives
 * the ordinary distance).
 *
 * Served by exact scoring over the slots that hold a multivector (no graph): a search costs the
 * total number of rows stored times the query's rows.
 *
 * Ownership: the store owns one block per present slot. A block is made by ag_mv_block_new (the
 * caller owns it until ag_multivec_put takes it). Writers are serialized by the caller and
 * exclude readers (the collection's rwlock); readers may run concurrently.
 */
#ifndef AG_MULTIVEC_H
#define AG_MULTIVEC_H

#include "ag_base.h"

#include "ag_distance.h"
#include "ag_index.h"

/* Most rows one multivector may hold (a request-size guard, not a Qdrant limit). */
#define AG_MV_MAX_ROWS 4096u

/* ---- element types (`datatype`) ------------------------------------------------------------ */

typedef enum { AG_DTYPE_FLOAT32 = 0, AG_DTYPE_FLOAT16, AG_DTYPE_UINT8 } ag_dtype_t;

/* "float32", "float16", "uint8" into *out; AG_EINVAL otherwise (*out untouched). */
int ag_dtype_parse(const char *name, ag_dtype_t *out);
const char *ag_dtype_name(ag_dtype_t t);
/* The nearest IEEE half-precision value (ties to even), widened back to float. Values beyond the
 * half range become ±infinity, as a conversion to half does. */
float ag_f16_round(float x);
/* Qdrant's conversion to uint8 (Rust's `as u8`): toward zero, saturating at 0 and 255, NaN 0. */
float ag_u8_convert(float x);
/* Converts n values in place to what type t stores. AG_EINVAL (nothing promised about v) when a
 * float16 value overflows the half range; *bad then holds its index. */
int ag_dtype_convert(ag_dtype_t t, float *v, size_t n, size_t *bad);

/* ---- MaxSim -------------------------------------------------------------------------------- */

/* MaxSim in the similarity space (see above). q has qn rows, x has xn rows, each of dim floats
 * (rows contiguous). qn or xn 0 gives 0. */
float ag_maxsim(ag_distance_t d, const float *q, uint32_t qn, const float *x, uint32_t xn,
                uint32_t dim);
/* The score clients see for a MaxSim similarity s (Euclid: sqrt|s|, Manhattan: |s|). */
float ag_maxsim_score(ag_distance_t d, float s);

/* ---- the store ----------------------------------------------------------------------------- */

typedef struct ag_mv_block ag_mv_block_t;
typedef struct ag_multivec ag_multivec_t;

/* A block of rows*dim floats copied from data (rows >= 1). NULL when out of memory. The caller
 * owns it (ag_mv_block_free) until ag_multivec_put takes it. */
ag_mv_block_t *ag_mv_block_new(const float *data, uint32_t rows, uint32_t dim);
void ag_mv_block_free(ag_mv_block_t *b);

/* An empty store for rows of dim floats. *out is new (ag_multivec_free). AG_EINVAL, AG_ENOMEM. */
int ag_multivec_new(uint32_t dim, ag_multivec_t **out);
void ag_multivec_free(ag_multivec_t *mv);
/* Makes room for slots 0..slots-1 so that put allocates nothing. AG_ENOMEM (unchanged). */
int ag_multivec_reserve(ag_multivec_t *mv, uint32_t slots);
/* Stores b at slot (taking it; the old block is freed). The slot must be below the reserved
 * capacity: AG_EINVAL otherwise (b is then freed too). */
int ag_multivec_put(ag_multivec_t *mv, uint32_t slot, ag_mv_block_t *b);
/* Copies data (rows of dim floats) into slot, growing as needed (loading). AG_ENOMEM. */
int ag_multivec_set(ag_multivec_t *mv, uint32_t slot, const float *data, uint32_t rows);
void ag_multivec_clear(ag_multivec_t *mv, uint32_t slot);
/* The slot's rows (contiguous, *rows of them), or NULL when absent. Borrowed until the next
 * write of that slot. */
const float *ag_multivec_get(const ag_multivec_t *mv, uint32_t slot, uint32_t *rows);
uint32_t ag_multivec_dim(const ag_multivec_t *mv);
uint32_t ag_multivec_count(const ag_multivec_t *mv);
size_t ag_multivec_memory(const ag_multivec_t *mv);

/* Best k by MaxSim of the query (qn rows) with the contract of ag_index_search (index/ag_index.h):
 * over flt->candidates when given, else every present slot; flt->accept decides each slot; the
 * score threshold and deadline of params apply; hits carry the client score (Euclid/Manhattan:
 * lower is better). AG_EINVAL, AG_ETIMEOUT (*n_out 0 then). Allocates nothing. */
int ag_multivec_search(const ag_multivec_t *mv, ag_distance_t d, const float *q, uint32_t qn,
                       size_t k, const ag_index_filter_t *flt, const ag_search_params_t *params,
                       ag_hit_t *out, size_t *n_out);

#endif
