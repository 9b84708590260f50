/*
 * ag_quant.h — scalar int8 and binary quantization of dense vectors (docs/ARCHITECTURE.md
 * "Quantization", "Binary quantization").
 *
 * Binary (ag_quant_new_binary): one bit per coordinate, set when the coordinate is above zero; a
 * row is AG_QUANT_BROW(dim) bytes (a multiple of 32, zero tail). The distance between two rows is
 * the number of differing bits (Hamming), turned into the distance's scale: for Cosine/Dot the
 * cosine of two sign vectors, 1 - 2 * ham / dim; for Euclid/Manhattan 4 * ham / dim (what the
 * squared distance of two unit vectors with that cosine is). No training: the bits depend on the
 * vector alone. Everything below applies to both methods unless it says int8.
 *
 * Every coordinate of every vector is mapped onto 256 levels of one range [lo, lo + 255 * step]
 * shared by the whole vector field; the range is trained from a sample of the stored values,
 * clipped to the central `quantile` of them (1 = the whole range). A code row is dim bytes padded
 * with zeros to a multiple of 32, 64-byte aligned, plus one float per row (the part of a dot
 * product that depends only on that row). A query is encoded the same way, so a distance is an
 * integer kernel over two byte rows (AVX2 when the CPU has it) and a few float operations.
 *
 * The codes are a copy: the float vectors stay the truth, and a search rescoring its candidates
 * reads those. Codes are rebuilt from the vectors whenever the range is trained again.
 *
 * Not thread-safe for writers (the caller excludes readers while writing, as for ag_vecstore_t);
 * any number of concurrent readers.
 */
#ifndef AG_QUANT_H
#define AG_QUANT_H

#include "ag_base.h"

#include "ag_distance.h"
#include "ag_vecstore.h"

typedef struct ag_quant ag_quant_t;

/* Levels of a code: 0 .. AG_QUANT_LEVELS - 1. */
#define AG_QUANT_LEVELS 256

/* Bytes of one padded int8 code row for dim coordinates. */
#define AG_QUANT_ROW(dim) ((((size_t)(dim)) + 31u) & ~(size_t)31u)
/* Bytes of one padded binary code row: dim bits rounded up to 256. */
#define AG_QUANT_BROW(dim) (((((size_t)(dim)) + 255u) / 256u) * 32u)

typedef enum ag_quant_kind { AG_QUANT_INT8 = 0, AG_QUANT_BINARY = 1 } ag_quant_kind_t;

/* New empty (untrained) quantizer for dim-float vectors compared by dist. quantile in
 * [0.5, 1]. *out is owned by the caller (ag_quant_free). AG_EINVAL, AG_ENOMEM. */
int ag_quant_new(uint32_t dim, ag_distance_t dist, double quantile, ag_quant_t **out);
/* New binary quantizer (untrained until ag_quant_train/fit sees a vector; the training itself
 * learns nothing). *out owned by the caller (ag_quant_free). AG_EINVAL, AG_ENOMEM. */
int ag_quant_new_binary(uint32_t dim, ag_distance_t dist, ag_quant_t **out);
/* NULL is a no-op. */
void ag_quant_free(ag_quant_t *q);
ag_quant_kind_t ag_quant_kind(const ag_quant_t *q);
/* Bytes of one code row of q (AG_QUANT_ROW or AG_QUANT_BROW of its dim). */
size_t ag_quant_row_bytes(const ag_quant_t *q);

/* Trains the range from up to 64k values sampled from the present rows of vs (deterministic),
 * then encodes every present row. With no present row the quantizer stays untrained. AG_ENOMEM
 * (the quantizer is then untrained). */
int ag_quant_train(ag_quant_t *q, const ag_vecstore_t *vs);
bool ag_quant_trained(const ag_quant_t *q);
/* Forgets the training (searches then use the float rows until it is trained again). */
void ag_quant_reset(ag_quant_t *q);
/* Present rows of vs when it was last trained (0 if untrained). */
uint32_t ag_quant_trained_rows(const ag_quant_t *q);
/* Range of the last training, for tests: codes decode to lo + code * step. */
void ag_quant_range(const ag_quant_t *q, float *lo, float *step);

/* Encodes vec (dim floats) as slot's row, growing the code array (doubling) to hold it. Does
 * nothing on an untrained quantizer. AG_ENOMEM (codes unchanged). */
int ag_quant_set(ag_quant_t *q, uint32_t slot, const float *vec);

/* A query (or any vector) encoded for distances against the rows. */
typedef struct ag_quant_query {
    uint8_t *code; /* ag_quant_row_bytes bytes, 64-byte aligned; owned by whoever gave the buffer */
    float corr;    /* row-independent part of a dot product */
} ag_quant_query_t;

/* Encodes vec into qq->code (a caller buffer of ag_quant_row_bytes bytes, 64-byte aligned) and
 * qq->corr. The quantizer must be trained. Coordinates outside the range are clipped. */
void ag_quant_encode_query(const ag_quant_t *q, const float *vec, ag_quant_query_t *qq);
/* Decodes slot's row into out (dim floats; binary: +1 / -1): for tests. */
void ag_quant_decode(const ag_quant_t *q, uint32_t slot, float *out);

/* (ag_quant_dist and ag_quant_prefetch read the quantizer's own codes: ag_quant_train, not
 * ag_quant_fit.) Approximate internal distance (lower = closer: the negated dot product for
 * Cosine/Dot, the squared L2 for Euclid, L1 for Manhattan) between an encoded query and slot's row.
 * slot must be below the code capacity (every slot encoded since training is). Thread-safe. */
float ag_quant_dist(const ag_quant_t *q, const ag_quant_query_t *qq, uint32_t slot);
/* The Qdrant score (ag_distance_score's meaning) for an approximate internal distance. */
float ag_quant_score(const ag_quant_t *q, float dist);
/* Prefetches slot's code row. */
void ag_quant_prefetch(const ag_quant_t *q, uint32_t slot);
/* Slots the code array can address. */
uint32_t ag_quant_capacity(const ag_quant_t *q);
/* Bytes held by the codes and their per-row floats. */
size_t ag_quant_memory(const ag_quant_t *q);

/* Trains the range like ag_quant_train but keeps no codes (any earlier ones are freed): the caller
 * stores its own rows with ag_quant_encode_row (the HNSW graph keeps them beside each node's
 * links) and ag_quant_set does nothing. AG_ENOMEM (untrained). */
int ag_quant_fit(ag_quant_t *q, const ag_vecstore_t *vs);
/* Encodes vec (dim floats) into code (ag_quant_row_bytes bytes, zero tail) and returns the row's
 * correction term (the `corr` of a row, used by int8 Cosine/Dot; 0 for binary). The quantizer
 * must be trained. */
float ag_quant_encode_row(const ag_quant_t *q, const float *vec, uint8_t *code);

/* What a caller holding its own code rows needs to compute ag_quant_dist itself:
 *   k = kern(query code, row code, row)
 *   Euclid: step^2 * k;  Manhattan: step * k;  Cosine/Dot: -(query corr + row corr + step^2 * k)
 * where a row's corr (ag_quant_encode_row's result) is lostep * (sum of its code bytes): for
 * Cosine/Dot, dotsum gives k and that sum in one pass, so the row's corr need not be stored. */
typedef uint32_t (*ag_u8_kernel_fn)(const uint8_t *a, const uint8_t *b, size_t n);
typedef uint32_t (*ag_u8_dotsum_fn)(const uint8_t *a, const uint8_t *b, size_t n, uint32_t *sum_b);
/* Binary (bits true): the internal distance is bscale * kern(query code, row code, row) + boff,
 * kern being the Hamming kernel. */
typedef struct ag_quant_params {
    ag_u8_kernel_fn kern;   /* the kernel for this distance on this CPU */
    bool bits;              /* binary codes */
    float bscale, boff;     /* binary: Hamming count to internal distance */
    ag_u8_dotsum_fn dotsum; /* ag_u8_dotsum's kernel for this CPU */
    ag_distance_t dist;
    float step;
    float lostep; /* lo * step */
    size_t row;
} ag_quant_params_t;
void ag_quant_params(const ag_quant_t *q, ag_quant_params_t *out);

/* Raw kernels over n bytes (a multiple of 32, both rows 32-byte aligned). ag_u8_dot uses AVX-512
 * VNNI when the CPU has it, else AVX2, else a loop — never above AEGIS_SIMD's cap (ag_simd.h),
 * which every dispatched kernel in this file obeys; the _avx2 and _scalar variants are those
 * fallbacks by name (for tests and benchmarks; _avx2 is the loop on a CPU without AVX2; the
 * variants by name ignore the cap).
 * ag_u8_dot_kernel names the one ag_u8_dot picked ("avx512-vnni", "avx2", "scalar"). */
uint32_t ag_u8_dot(const uint8_t *a, const uint8_t *b, size_t n);
uint32_t ag_u8_dot_avx2(const uint8_t *a, const uint8_t *b, size_t n);
uint32_t ag_u8_dot_scalar(const uint8_t *a, const uint8_t *b, size_t n);
const char *ag_u8_dot_kernel(void);
/* sum a[i]*b[i] as ag_u8_dot, and sum b[i] into *sum_b, in one pass (VNNI, AVX2 or a loop); the
 * _avx2 variant is the fallback by name. */
uint32_t ag_u8_dotsum(const uint8_t *a, const uint8_t *b, size_t n, uint32_t *sum_b);
uint32_t ag_u8_dotsum_avx2(const uint8_t *a, const uint8_t *b, size_t n, uint32_t *sum_b);
/* dot[i] = ag_u8_dotsum(q, base + ids[i] * stride, row, &sum[i]) for i < n, in one call: the
 * int8 scan of a small collection and the quantized walk's neighbours of one node (with VNNI four
 * rows a step, the query flipped once and held in registers for rows up to 512 bytes; the same
 * integers as ag_u8_dotsum). As there, q and every row 32-byte aligned, row a multiple of 32. */
void ag_u8_dotsum_gather(const uint8_t *q, const uint8_t *base, size_t stride, const uint32_t *ids,
                         size_t n, size_t row, uint32_t *dot, uint32_t *sum);
uint32_t ag_u8_l2sq(const uint8_t *a, const uint8_t *b, size_t n);
uint32_t ag_u8_l1(const uint8_t *a, const uint8_t *b, size_t n);

/* Differing bits of two binary rows of n bytes (a multiple of 32, both 32-byte aligned):
 * AVX-512 VPOPCNTQ when the CPU has it, else AVX2 (nibble lookup), else the popcnt instruction,
 * else a portable loop; the variants by name are for tests and benchmarks (each falls back to the
 * loop on a CPU without its instructions). ag_bits_hamming_kernel names the one picked. */
uint32_t ag_bits_hamming(const uint8_t *a, const uint8_t *b, size_t n);
uint32_t ag_bits_hamming_scalar(const uint8_t *a, const uint8_t *b, size_t n);
uint32_t ag_bits_hamming_popcnt(const uint8_t *a, const uint8_t *b, size_t n);
uint32_t ag_bits_hamming_avx2(const uint8_t *a, const uint8_t *b, size_t n);
uint32_t ag_bits_hamming_avx512(const uint8_t *a, const uint8_t *b, size_t n);
const char *ag_bits_hamming_kernel(void);
/* out[i] = ag_bits_hamming(q, base + ids[i] * stride, row) for i < n, in one call (a loop kept in
 * registers for 64-byte rows with VPOPCNTQ). */
void ag_bits_hamming_gather(const uint8_t *q, const uint8_t *base, size_t stride,
                            const uint32_t *ids, size_t n, size_t row, uint32_t *out);

/* Scan helpers. ag_bits_to_ids: the positions of the set bits of nwords 64-bit words, in order,
 * into out (at most max; returns how many). ag_u32_pick_below: keeps, in order and in place,
 * the ids[i] with cnt[i] < cut and the first `room` with cnt[i] == cut; returns how many. Both
 * use AVX-512 compress stores when the CPU has them, else plain loops. */
size_t ag_bits_to_ids(const uint64_t *words, uint32_t nwords, uint32_t *out, size_t max);
size_t ag_u32_pick_below(const uint32_t *cnt, uint32_t *ids, size_t m, uint32_t cut, size_t room);
/* The variant the two helpers above run: "avx512" or "scalar". */
const char *ag_u32_scan_kernel(void);

/* The sign sketch of an int8 code row (docs/ARCHITECTURE.md "Small collections"): bit i (byte
 * i / 8, bit i % 8) of out is the top bit of code[i], i.e. whether coordinate i lies in the upper
 * half of the trained range. n is the code row (a multiple of 32); out has out_n >= n / 8 bytes,
 * the rest zeroed (AG_QUANT_BROW(dim) makes it a binary row for ag_bits_hamming*). */
void ag_u8_top_bits(const uint8_t *code, size_t n, uint8_t *out, size_t out_n);

#endif
