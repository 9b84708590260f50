/*
 * ag_simd.h — the cap on the instruction sets of the hand-dispatched kernels.
 *
 * The int8 and binary kernels of ag_quant.c (dot/L2/L1, dot-plus-sum and its gathering form, the
 * encoder, Hamming counts, the sign sketch's top bits, the scan helpers) and ag_distance.c's
 * four-row rescoring pick their variant at run time from the CPU. The environment variable
 * AEGIS_SIMD caps that choice so the AVX2 and portable fallbacks can be run — and tested — on a
 * CPU that has AVX-512 (docs/ARCHITECTURE.md "SIMD levels"). The cap only lowers: every kernel
 * still checks the CPU for its own instructions. The float kernels cloned with target_clones
 * (ag_distance.c, ag_hnsw.c) are chosen by the loader and are not capped.
 *
 * Everything here is thread-safe and allocation-free.
 */
#ifndef AG_SIMD_H
#define AG_SIMD_H

#include "ag_base.h"

#include <stdatomic.h>

typedef enum { AG_SIMD_SCALAR = 0, AG_SIMD_AVX2 = 1, AG_SIMD_AVX512 = 2 } ag_simd_t;

/* The current cap, -1 until the first ag_simd_cap (shared with ag_simd.c only). */
extern _Atomic int ag__simd_cap;
ag_simd_t ag__simd_cap_first(void);

/* The cap: AEGIS_SIMD as read at the first call — "avx512" (or unset, or empty) leaves every
 * kernel at the best the CPU has, "avx2" stops at AVX2, "scalar" uses the portable loops — or what
 * ag_simd_cap_set chose since. Any other value caps at AG_SIMD_SCALAR (the variant that runs
 * everywhere) and makes ag_simd_env_check fail, which `aegis serve` turns into an exit. Inline
 * because the kernels' dispatch reads it on every call: one relaxed load. */
static inline ag_simd_t ag_simd_cap(void)
{
    int c = atomic_load_explicit(&ag__simd_cap, memory_order_relaxed);
    return c >= 0 ? (ag_simd_t)c : ag__simd_cap_first();
}

/* 0 when AEGIS_SIMD is unset or one of avx512, avx2, scalar; else AG_EINVAL with diag naming the
 * variable, the value and the allowed values. Never exits (the caller decides). */
int ag_simd_env_check(ag_diag_t *diag);

/* FOR TESTS ONLY: sets the cap for the whole process (every thread, from the next kernel call
 * on); level < 0 goes back to what AEGIS_SIMD says. A server never calls it: the cap is a
 * start-up setting. */
void ag_simd_cap_set(int level);

/* "avx512", "avx2", "scalar" (static; "?" for anything else). */
const char *ag_simd_name(ag_simd_t level);

/* One line naming the cap and the variant each dispatched kernel runs, for the start-up log:
 * "AEGIS_SIMD=avx512: int8 avx512-vnni, Hamming avx512-vpopcntq, ...". Writes at most n bytes
 * (NUL included) into out, which the caller owns. */
void ag_simd_describe(char *out, size_t n);

#endif
