#include "ag_base.h"

#include "ag_quant.h"

#include <math.h>
#include <stdatomic.h>
#include <sys/mman.h>

#include "ag_simd.h"

#if defined(__x86_64__) && defined(__GNUC__) && !defined(AG_NO_CLONES)
#include <immintrin.h>
#define QUANT_AVX2 1
#endif

#define HUGE_PAGE ((size_t)2 << 20)

typedef ag_u8_kernel_fn kern_fn;

struct ag_quant {
    ag_quant_kind_t kind;
    uint32_t dim;
    ag_distance_t dist;
    double quantile;
    size_t row;     /* AG_QUANT_ROW(dim), or AG_QUANT_BROW(dim) for binary */
    uint8_t *codes; /* cap * row bytes, 64-byte aligned */
    float *corr;    /* cap: lo * step * sum(codes) of the row (dot products only) */
    uint32_t cap;
    bool trained;
    uint32_t trained_rows;
    bool fit_only; /* ag_quant_fit: the range only, the caller keeps the codes */
    float lo, step, inv_step;
    kern_fn kern;           /* the kernel dist needs, for this CPU */
    ag_u8_dotsum_fn dotsum; /* dot product plus row sum, for this CPU */
};

/* ---- kernels -------------------------------------------------------------------------------- */

static uint32_t dot_generic(const uint8_t *a, const uint8_t *b, size_t n)
{
    uint32_t s = 0;
    for (size_t i = 0; i < n; i++)
        s += (uint32_t)a[i] * b[i];
    return s;
}

static uint32_t dotsum_generic(const uint8_t *a, const uint8_t *b, size_t n, uint32_t *sum_b)
{
    uint32_t s = 0, t = 0;
    for (size_t i = 0; i < n; i++) {
        s += (uint32_t)a[i] * b[i];
        t += b[i];
    }
    *sum_b = t;
    return s;
}

static uint32_t l2_generic(const uint8_t *a, const uint8_t *b, size_t n)
{
    uint32_t s = 0;
    for (size_t i = 0; i < n; i++) {
        int d = (int)a[i] - (int)b[i];
        s += (uint32_t)(d * d);
    }
    return s;
}

static uint32_t l1_generic(const uint8_t *a, const uint8_t *b, size_t n)
{
    uint32_t s = 0;
    for (size_t i = 0; i < n; i++)
        s += (uint32_t)abs((int)a[i] - (int)b[i]);
    return s;
}

#ifdef QUANT_AVX2
/* Bytes widened to 16 bits, multiplied and summed pairwise into 32-bit lanes (vpmaddwd): exact,
 * as 2 * 255 * 255 fits easily and a row of AG_MAX_DIM bytes cannot overflow 32 bits. */
__attribute__((target("avx2"))) static inline uint32_t hsum_epi32(__m256i v)
{
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4E));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xB1));
    return (uint32_t)_mm_cvtsi128_si32(s);
}

__attribute__((target("avx2"))) static uint32_t dot_avx2(const uint8_t *a, const uint8_t *b,
                                                         size_t n)
{
    __m256i acc0 = _mm256_setzero_si256(), acc1 = _mm256_setzero_si256();
    for (size_t i = 0; i < n; i += 32) {
        __m256i va = _mm256_load_si256((const __m256i *)(a + i));
        __m256i vb = _mm256_load_si256((const __m256i *)(b + i));
        __m256i a0 = _mm256_cvtepu8_epi16(_mm256_castsi256_si128(va));
        __m256i a1 = _mm256_cvtepu8_epi16(_mm256_extracti128_si256(va, 1));
        __m256i b0 = _mm256_cvtepu8_epi16(_mm256_castsi256_si128(vb));
        __m256i b1 = _mm256_cvtepu8_epi16(_mm256_extracti128_si256(vb, 1));
        acc0 = _mm256_add_epi32(acc0, _mm256_madd_epi16(a0, b0));
        acc1 = _mm256_add_epi32(acc1, _mm256_madd_epi16(a1, b1));
    }
    return hsum_epi32(_mm256_add_epi32(acc0, acc1));
}

__attribute__((target("avx2"))) static uint32_t l2_avx2(const uint8_t *a, const uint8_t *b,
                                                        size_t n)
{
    __m256i acc0 = _mm256_setzero_si256(), acc1 = _mm256_setzero_si256();
    for (size_t i = 0; i < n; i += 32) {
        __m256i va = _mm256_load_si256((const __m256i *)(a + i));
        __m256i vb = _mm256_load_si256((const __m256i *)(b + i));
        __m256i d0 = _mm256_sub_epi16(_mm256_cvtepu8_epi16(_mm256_castsi256_si128(va)),
                                      _mm256_cvtepu8_epi16(_mm256_castsi256_si128(vb)));
        __m256i d1 = _mm256_sub_epi16(_mm256_cvtepu8_epi16(_mm256_extracti128_si256(va, 1)),
                                      _mm256_cvtepu8_epi16(_mm256_extracti128_si256(vb, 1)));
        acc0 = _mm256_add_epi32(acc0, _mm256_madd_epi16(d0, d0));
        acc1 = _mm256_add_epi32(acc1, _mm256_madd_epi16(d1, d1));
    }
    return hsum_epi32(_mm256_add_epi32(acc0, acc1));
}

/* Sums of absolute byte differences (vpsadbw) land in four 64-bit lanes. */
__attribute__((target("avx2"))) static uint32_t l1_avx2(const uint8_t *a, const uint8_t *b,
                                                        size_t n)
{
    __m256i acc = _mm256_setzero_si256();
    for (size_t i = 0; i < n; i += 32) {
        __m256i va = _mm256_load_si256((const __m256i *)(a + i));
        __m256i vb = _mm256_load_si256((const __m256i *)(b + i));
        acc = _mm256_add_epi64(acc, _mm256_sad_epu8(va, vb));
    }
    __m128i s = _mm_add_epi64(_mm256_castsi256_si128(acc), _mm256_extracti128_si256(acc, 1));
    s = _mm_add_epi64(s, _mm_unpackhi_epi64(s, s));
    return (uint32_t)_mm_cvtsi128_si64(s);
}

/*
 * AVX-512 VNNI (vpdpbusd): each instruction multiplies 64 unsigned bytes by 64 signed bytes and
 * adds each group of four products into a 32-bit lane. Both our operands are unsigned, so b is
 * shifted into the signed range (b - 128, the same as flipping its top bit) and the shift is paid
 * back with 128 * sum(a), itself one vpdpbusd of a against bytes of 1:
 *   sum a*b = sum a*(b - 128) + 128 * sum a.
 * Exact: every partial sum stays far inside 32 bits for rows up to AG_MAX_DIM bytes. Rows are a
 * multiple of 32 bytes, so a row ends with at most one 32-byte half (masked load).
 */
/* Sum of the 16 lanes, wrapping like uint32_t (a full row of 255s overflows int32: the
 * compiler's _mm512_reduce_add_epi32 adds as signed int, which UBSan rightly reports). */
__attribute__((target("avx512f"))) static inline uint32_t hsum512(__m512i v)
{
    __m256i s = _mm256_add_epi32(_mm512_castsi512_si256(v), _mm512_extracti64x4_epi64(v, 1));
    __m128i t = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
    t = _mm_add_epi32(t, _mm_shuffle_epi32(t, 0x4E));
    t = _mm_add_epi32(t, _mm_shuffle_epi32(t, 0xB1));
    return (uint32_t)_mm_cvtsi128_si32(t);
}

__attribute__((target("avx512f,avx512bw,avx512vnni"))) static uint32_t
dot_vnni(const uint8_t *a, const uint8_t *b, size_t n)
{
    const __m512i flip = _mm512_set1_epi8((char)0x80), ones = _mm512_set1_epi8(1);
    __m512i acc = _mm512_setzero_si512(), sa = _mm512_setzero_si512();
    size_t i = 0;
    for (; i + 64 <= n; i += 64) {
        __m512i va = _mm512_loadu_si512((const void *)(a + i));
        __m512i vb = _mm512_xor_si512(_mm512_loadu_si512((const void *)(b + i)), flip);
        acc = _mm512_dpbusd_epi32(acc, va, vb);
        sa = _mm512_dpbusd_epi32(sa, va, ones);
    }
    if (i < n) {
        const __mmask64 m = (__mmask64)0xFFFFFFFFu; /* the remaining 32 bytes */
        __m512i va = _mm512_maskz_loadu_epi8(m, a + i);
        __m512i vb = _mm512_xor_si512(_mm512_maskz_loadu_epi8(m, b + i), flip);
        /* masked-off lanes: a = 0, so they add nothing to either sum */
        acc = _mm512_dpbusd_epi32(acc, va, vb);
        sa = _mm512_dpbusd_epi32(sa, va, ones);
    }
    acc = _mm512_add_epi32(acc, _mm512_slli_epi32(sa, 7));
    return hsum512(acc);
}

/* The same with b as the unsigned operand, which also yields sum(b) (b against bytes of 1):
 *   sum a*b = sum b*(a - 128) + 128 * sum b. */
__attribute__((target("avx512f,avx512bw,avx512vnni"))) static uint32_t
dotsum_vnni(const uint8_t *a, const uint8_t *b, size_t n, uint32_t *sum_b)
{
    const __m512i flip = _mm512_set1_epi8((char)0x80), ones = _mm512_set1_epi8(1);
    __m512i acc = _mm512_setzero_si512(), sb = _mm512_setzero_si512();
    size_t i = 0;
    for (; i + 64 <= n; i += 64) {
        __m512i vb = _mm512_loadu_si512((const void *)(b + i));
        __m512i va = _mm512_xor_si512(_mm512_loadu_si512((const void *)(a + i)), flip);
        acc = _mm512_dpbusd_epi32(acc, vb, va);
        sb = _mm512_dpbusd_epi32(sb, vb, ones);
    }
    if (i < n) {
        const __mmask64 m = (__mmask64)0xFFFFFFFFu;
        __m512i vb = _mm512_maskz_loadu_epi8(m, b + i); /* b = 0 past the row: adds nothing */
        __m512i va = _mm512_xor_si512(_mm512_maskz_loadu_epi8(m, a + i), flip);
        acc = _mm512_dpbusd_epi32(acc, vb, va);
        sb = _mm512_dpbusd_epi32(sb, vb, ones);
    }
    uint32_t t = hsum512(sb);
    *sum_b = t;
    return hsum512(acc) + 128u * t;
}

/* ag_u8_dotsum for many rows against one query (the int8 scan of a small collection): a row is
 * the unsigned operand against the query flipped to signed, so sum q*r = sum r*(q - 128) + 128 *
 * sum r, and sum r comes from vpsadbw (a cheap op per 64 bytes instead of a second dpbusd chain).
 * The flipped query is loaded once into registers (rows of up to GATHER_CHUNKS * 64 bytes), four
 * rows go per step as four independent chains, there is no call per row, and the results go to
 * arrays, so no branch waits on them. Rows are n bytes, a multiple of 32. */
#define GATHER_CHUNKS 8
/* The sums of the 16 32-bit lanes of v[0..3] as the four lanes of the result (wrapping). */
__attribute__((target("avx512f"), always_inline)) static inline __m128i hsum4_512(const __m512i *v)
{
    __m512i t01 = _mm512_add_epi32(_mm512_unpacklo_epi32(v[0], v[1]),
                                   _mm512_unpackhi_epi32(v[0], v[1])); /* a0 b0 a1 b1 per 128 */
    __m512i t23 =
        _mm512_add_epi32(_mm512_unpacklo_epi32(v[2], v[3]), _mm512_unpackhi_epi32(v[2], v[3]));
    __m512i t = _mm512_add_epi32(_mm512_unpacklo_epi64(t01, t23),
                                 _mm512_unpackhi_epi64(t01, t23)); /* v0 v1 v2 v3 per 128 */
    __m256i h = _mm256_add_epi32(_mm512_castsi512_si256(t), _mm512_extracti64x4_epi64(t, 1));
    return _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1));
}
__attribute__((target("avx512f,avx512bw,avx512vnni"), always_inline)) static inline void
dotsum_rows4_vnni(const __m512i *vq, size_t chunks, bool half, const uint8_t *const *r,
                  uint32_t *dot, uint32_t *sum)
{
    const __m512i zero = _mm512_setzero_si512();
    __m512i a[4] = {zero, zero, zero, zero}, b[4] = {zero, zero, zero, zero};
#pragma GCC unroll 8
    for (size_t c = 0; c < chunks; c++)
#pragma GCC unroll 4
        for (int j = 0; j < 4; j++) {
            __m512i v = _mm512_loadu_si512((const void *)(r[j] + 64 * c));
            a[j] = _mm512_dpbusd_epi32(a[j], v, vq[c]);
            b[j] = _mm512_add_epi64(b[j], _mm512_sad_epu8(v, zero));
        }
    if (half) /* the last 32 bytes: lanes past them load as 0 and add nothing */
#pragma GCC unroll 4
        for (int j = 0; j < 4; j++) {
            __m512i v = _mm512_maskz_loadu_epi8((__mmask64)0xFFFFFFFFu, r[j] + 64 * chunks);
            a[j] = _mm512_dpbusd_epi32(a[j], v, vq[chunks]);
            b[j] = _mm512_add_epi64(b[j], _mm512_sad_epu8(v, zero));
        }
        /* The byte sums are below 2^16 per 64-bit lane, so as 32-bit lanes they are (sum, 0) pairs
         * and 128 * sum r is added lane by lane; then both sets of four vectors are summed at once.
         */
#pragma GCC unroll 4
    for (int j = 0; j < 4; j++)
        a[j] = _mm512_add_epi32(a[j], _mm512_slli_epi32(b[j], 7));
    _mm_storeu_si128((__m128i *)(void *)dot, hsum4_512(a));
    _mm_storeu_si128((__m128i *)(void *)sum, hsum4_512(b));
}

/* The rows in steps of four (a short last step repeats its last row into scratch outputs). */
__attribute__((target("avx512f,avx512bw,avx512vnni"), always_inline)) static inline void
dotsum_gather_body(const __m512i *vq, size_t chunks, bool half, const uint8_t *base, size_t stride,
                   const uint32_t *ids, size_t n, uint32_t *dot, uint32_t *sum)
{
    size_t i = 0;
    for (; i + 4 <= n; i += 4) {
        const uint8_t *r[4];
        for (int j = 0; j < 4; j++)
            r[j] = base + (size_t)ids[i + (size_t)j] * stride;
        dotsum_rows4_vnni(vq, chunks, half, r, dot + i, sum + i);
    }
    if (i < n) {
        const uint8_t *r[4];
        uint32_t d[4], t[4];
        for (int j = 0; j < 4; j++)
            r[j] = base + (size_t)ids[AG_MIN(i + (size_t)j, n - 1)] * stride;
        dotsum_rows4_vnni(vq, chunks, half, r, d, t);
        for (size_t j = 0; i + j < n; j++) {
            dot[i + j] = d[j];
            sum[i + j] = t[j];
        }
    }
}

__attribute__((target("avx512f,avx512bw,avx512vnni"))) static void
dotsum_gather_vnni(const uint8_t *q, const uint8_t *base, size_t stride, const uint32_t *ids,
                   size_t n, size_t row, uint32_t *dot, uint32_t *sum)
{
    size_t chunks = row / 64;
    bool half = row % 64 != 0;
    if (chunks + half > GATHER_CHUNKS) { /* long rows: one at a time */
        for (size_t i = 0; i < n; i++)
            dot[i] = dotsum_vnni(q, base + (size_t)ids[i] * stride, row, &sum[i]);
        return;
    }
    const __m512i flip = _mm512_set1_epi8((char)0x80);
    __m512i vq[GATHER_CHUNKS];
    for (size_t c = 0; c < GATHER_CHUNKS; c++)
        vq[c] = c < chunks ? _mm512_xor_si512(_mm512_loadu_si512((const void *)(q + 64 * c)), flip)
                : c == chunks && half
                    ? _mm512_xor_si512(_mm512_maskz_loadu_epi8((__mmask64)0xFFFFFFFFu, q + 64 * c),
                                       flip)
                    : _mm512_setzero_si512();
    /* constant chunk counts for the common row sizes, so the loops unroll with vq in registers */
    switch (row) {
    case 128: /* 100-d GloVe, padded: the graph walk's neighbours */
        dotsum_gather_body(vq, 2, false, base, stride, ids, n, dot, sum);
        break;
    case 384:
        dotsum_gather_body(vq, 6, false, base, stride, ids, n, dot, sum);
        break;
    case 512:
        dotsum_gather_body(vq, 8, false, base, stride, ids, n, dot, sum);
        break;
    default:
        dotsum_gather_body(vq, chunks, half, base, stride, ids, n, dot, sum);
        break;
    }
}

/* vpsadbw against zero sums the bytes of b into four 64-bit lanes. */
__attribute__((target("avx2"))) static uint32_t dotsum_avx2(const uint8_t *a, const uint8_t *b,
                                                            size_t n, uint32_t *sum_b)
{
    __m256i acc0 = _mm256_setzero_si256(), acc1 = _mm256_setzero_si256();
    __m256i sb = _mm256_setzero_si256(), zero = _mm256_setzero_si256();
    for (size_t i = 0; i < n; i += 32) {
        __m256i va = _mm256_load_si256((const __m256i *)(a + i));
        __m256i vb = _mm256_load_si256((const __m256i *)(b + i));
        __m256i a0 = _mm256_cvtepu8_epi16(_mm256_castsi256_si128(va));
        __m256i a1 = _mm256_cvtepu8_epi16(_mm256_extracti128_si256(va, 1));
        __m256i b0 = _mm256_cvtepu8_epi16(_mm256_castsi256_si128(vb));
        __m256i b1 = _mm256_cvtepu8_epi16(_mm256_extracti128_si256(vb, 1));
        acc0 = _mm256_add_epi32(acc0, _mm256_madd_epi16(a0, b0));
        acc1 = _mm256_add_epi32(acc1, _mm256_madd_epi16(a1, b1));
        sb = _mm256_add_epi64(sb, _mm256_sad_epu8(vb, zero));
    }
    __m128i s = _mm_add_epi64(_mm256_castsi256_si128(sb), _mm256_extracti128_si256(sb, 1));
    s = _mm_add_epi64(s, _mm_unpackhi_epi64(s, s));
    *sum_b = (uint32_t)_mm_cvtsi128_si64(s);
    return hsum_epi32(_mm256_add_epi32(acc0, acc1));
}

/* 0 none, 1 AVX2, 2 AVX-512 VNNI; -1 not yet known. Threads that race to fill it in all store
 * the same answer (relaxed atomics: no ordering is needed, only no torn or racy access). The
 * CPU's level is cached; AEGIS_SIMD's cap (ag_simd.h, the same numbering) is applied per call. */
static _Atomic int cpu_level = -1;

static int cpu_simd(void)
{
    int known = atomic_load_explicit(&cpu_level, memory_order_relaxed);
    if (known < 0) {
        __builtin_cpu_init();
        int l = 0;
        if (__builtin_cpu_supports("avx2"))
            l = 1;
        if (l && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
            __builtin_cpu_supports("avx512vnni"))
            l = 2;
        atomic_store_explicit(&cpu_level, l, memory_order_relaxed);
        known = l;
    }
    return known;
}

/* What the dispatch uses: the CPU's level under the cap. The variants by name (_avx2) check the
 * CPU only, so tests reach them whatever the cap. */
static int simd_level(void)
{
    int l = cpu_simd(), cap = (int)ag_simd_cap();
    return l < cap ? l : cap;
}

static bool have_avx2(void)
{
    return simd_level() >= 1;
}

static bool cpu_avx2(void)
{
    return cpu_simd() >= 1;
}
#endif

uint32_t ag_u8_dot(const uint8_t *a, const uint8_t *b, size_t n)
{
#ifdef QUANT_AVX2
    if (simd_level() >= 2)
        return dot_vnni(a, b, n);
    if (have_avx2())
        return dot_avx2(a, b, n);
#endif
    return dot_generic(a, b, n);
}

uint32_t ag_u8_dot_scalar(const uint8_t *a, const uint8_t *b, size_t n)
{
    return dot_generic(a, b, n);
}

uint32_t ag_u8_dot_avx2(const uint8_t *a, const uint8_t *b, size_t n)
{
#ifdef QUANT_AVX2
    if (cpu_avx2())
        return dot_avx2(a, b, n);
#endif
    return dot_generic(a, b, n);
}

uint32_t ag_u8_dotsum(const uint8_t *a, const uint8_t *b, size_t n, uint32_t *sum_b)
{
#ifdef QUANT_AVX2
    if (simd_level() >= 2)
        return dotsum_vnni(a, b, n, sum_b);
    if (have_avx2())
        return dotsum_avx2(a, b, n, sum_b);
#endif
    return dotsum_generic(a, b, n, sum_b);
}

uint32_t ag_u8_dotsum_avx2(const uint8_t *a, const uint8_t *b, size_t n, uint32_t *sum_b)
{
#ifdef QUANT_AVX2
    if (cpu_avx2())
        return dotsum_avx2(a, b, n, sum_b);
#endif
    return dotsum_generic(a, b, n, sum_b);
}

static ag_u8_dotsum_fn pick_dotsum(void);

void ag_u8_dotsum_gather(const uint8_t *q, const uint8_t *base, size_t stride, const uint32_t *ids,
                         size_t n, size_t row, uint32_t *dot, uint32_t *sum)
{
#ifdef QUANT_AVX2
    if (simd_level() >= 2) {
        dotsum_gather_vnni(q, base, stride, ids, n, row, dot, sum);
        return;
    }
#endif
    ag_u8_dotsum_fn k = pick_dotsum();
    for (size_t i = 0; i < n; i++)
        dot[i] = k(q, base + (size_t)ids[i] * stride, row, &sum[i]);
}

static ag_u8_dotsum_fn pick_dotsum(void)
{
#ifdef QUANT_AVX2
    if (simd_level() >= 2)
        return dotsum_vnni;
    if (have_avx2())
        return dotsum_avx2;
#endif
    return dotsum_generic;
}

const char *ag_u8_dot_kernel(void)
{
#ifdef QUANT_AVX2
    if (simd_level() >= 2)
        return "avx512-vnni";
    if (have_avx2())
        return "avx2";
#endif
    return "scalar";
}

uint32_t ag_u8_l2sq(const uint8_t *a, const uint8_t *b, size_t n)
{
#ifdef QUANT_AVX2
    if (have_avx2())
        return l2_avx2(a, b, n);
#endif
    return l2_generic(a, b, n);
}

uint32_t ag_u8_l1(const uint8_t *a, const uint8_t *b, size_t n)
{
#ifdef QUANT_AVX2
    if (have_avx2())
        return l1_avx2(a, b, n);
#endif
    return l1_generic(a, b, n);
}

/* ---- binary (Hamming) kernels --------------------------------------------------------------- */

/* Bit counting without any instruction for it (the fallback and the tests' reference). */
static inline uint32_t pop64_portable(uint64_t x)
{
    x = x - ((x >> 1) & 0x5555555555555555ull);
    x = (x & 0x3333333333333333ull) + ((x >> 2) & 0x3333333333333333ull);
    x = (x + (x >> 4)) & 0x0F0F0F0F0F0F0F0Full;
    return (uint32_t)((x * 0x0101010101010101ull) >> 56);
}

static inline uint64_t load64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, sizeof(v));
    return v;
}

static uint32_t ham_generic(const uint8_t *a, const uint8_t *b, size_t n)
{
    uint32_t s = 0;
    for (size_t i = 0; i < n; i += 8)
        s += pop64_portable(load64(a + i) ^ load64(b + i));
    return s;
}

#ifdef QUANT_AVX2
__attribute__((target("popcnt"))) static uint32_t ham_popcnt(const uint8_t *a, const uint8_t *b,
                                                             size_t n)
{
    uint64_t s0 = 0, s1 = 0;
    for (size_t i = 0; i < n; i += 16) { /* rows are multiples of 32 bytes */
        s0 += (uint64_t)__builtin_popcountll(load64(a + i) ^ load64(b + i));
        s1 += (uint64_t)__builtin_popcountll(load64(a + i + 8) ^ load64(b + i + 8));
    }
    return (uint32_t)(s0 + s1);
}

/* Each byte's two nibbles looked up in a 16-entry table of bit counts (vpshufb), the byte counts
 * summed into four 64-bit lanes (vpsadbw). */
__attribute__((target("avx2"))) static uint32_t ham_avx2(const uint8_t *a, const uint8_t *b,
                                                         size_t n)
{
    const __m256i table = _mm256_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4, 0, 1, 1,
                                           2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4);
    const __m256i low = _mm256_set1_epi8(0x0F);
    __m256i acc = _mm256_setzero_si256();
    for (size_t i = 0; i < n; i += 32) {
        __m256i x = _mm256_xor_si256(_mm256_load_si256((const __m256i *)(a + i)),
                                     _mm256_load_si256((const __m256i *)(b + i)));
        __m256i c = _mm256_add_epi8(
            _mm256_shuffle_epi8(table, _mm256_and_si256(x, low)),
            _mm256_shuffle_epi8(table, _mm256_and_si256(_mm256_srli_epi16(x, 4), low)));
        acc = _mm256_add_epi64(acc, _mm256_sad_epu8(c, _mm256_setzero_si256()));
    }
    __m128i s = _mm_add_epi64(_mm256_castsi256_si128(acc), _mm256_extracti128_si256(acc, 1));
    s = _mm_add_epi64(s, _mm_unpackhi_epi64(s, s));
    return (uint32_t)_mm_cvtsi128_si64(s);
}

/* VPOPCNTQ counts the bits of eight 64-bit lanes at once; a row ends with at most one 32-byte
 * half (masked load: the lanes past it are zero in both rows, so they count nothing). */
__attribute__((target("avx512f,avx512vpopcntdq"))) static uint32_t
ham_avx512(const uint8_t *a, const uint8_t *b, size_t n)
{
    __m512i acc = _mm512_setzero_si512();
    size_t i = 0;
    for (; i + 64 <= n; i += 64)
        acc = _mm512_add_epi64(
            acc, _mm512_popcnt_epi64(_mm512_xor_si512(_mm512_loadu_si512((const void *)(a + i)),
                                                      _mm512_loadu_si512((const void *)(b + i)))));
    if (i < n) {
        const __mmask8 m = 0x0F;
        acc = _mm512_add_epi64(
            acc, _mm512_popcnt_epi64(_mm512_xor_si512(_mm512_maskz_loadu_epi64(m, a + i),
                                                      _mm512_maskz_loadu_epi64(m, b + i))));
    }
    return (uint32_t)_mm512_reduce_add_epi64(acc);
}

/* Many rows against one query, 64-byte rows (384..512 bits): the query stays in a register and
 * there is no call per row. */
__attribute__((target("avx512f,avx512vpopcntdq"))) static void
ham_gather64_avx512(const uint8_t *q, const uint8_t *base, size_t stride, const uint32_t *ids,
                    size_t n, uint32_t *out)
{
    const __m512i vq = _mm512_loadu_si512((const void *)q);
    size_t i = 0;
    /* eight rows a step: their eight lane-count vectors summed by a transposing tree (pairs of
     * rows within 128-bit blocks, then blocks across vectors) instead of a horizontal sum each */
#define HAM_ROW(j)                                                                                 \
    _mm512_popcnt_epi64(_mm512_xor_si512(                                                          \
        vq, _mm512_loadu_si512((const void *)(base + (size_t)ids[i + (j)] * stride))))
    for (; i + 8 <= n; i += 8) {
        __m512i p0 = HAM_ROW(0), p1 = HAM_ROW(1), p2 = HAM_ROW(2), p3 = HAM_ROW(3);
        __m512i p4 = HAM_ROW(4), p5 = HAM_ROW(5), p6 = HAM_ROW(6), p7 = HAM_ROW(7);
        /* each 128-bit block k of sAB: (A's lanes 2k + 2k+1, B's lanes 2k + 2k+1) */
        __m512i s01 =
            _mm512_add_epi64(_mm512_unpacklo_epi64(p0, p1), _mm512_unpackhi_epi64(p0, p1));
        __m512i s23 =
            _mm512_add_epi64(_mm512_unpacklo_epi64(p2, p3), _mm512_unpackhi_epi64(p2, p3));
        __m512i s45 =
            _mm512_add_epi64(_mm512_unpacklo_epi64(p4, p5), _mm512_unpackhi_epi64(p4, p5));
        __m512i s67 =
            _mm512_add_epi64(_mm512_unpacklo_epi64(p6, p7), _mm512_unpackhi_epi64(p6, p7));
        /* blocks (0,2) + (1,3): [s01 half, s01 half, s23 half, s23 half] */
        __m512i t0 = _mm512_add_epi64(_mm512_shuffle_i64x2(s01, s23, 0x88),
                                      _mm512_shuffle_i64x2(s01, s23, 0xDD));
        __m512i t1 = _mm512_add_epi64(_mm512_shuffle_i64x2(s45, s67, 0x88),
                                      _mm512_shuffle_i64x2(s45, s67, 0xDD));
        /* once more: lane j is row j's total */
        __m512i u = _mm512_add_epi64(_mm512_shuffle_i64x2(t0, t1, 0x88),
                                     _mm512_shuffle_i64x2(t0, t1, 0xDD));
        _mm256_storeu_si256((__m256i *)(void *)(out + i), _mm512_cvtepi64_epi32(u));
    }
#undef HAM_ROW
    for (; i < n; i++) {
        __m512i r = _mm512_loadu_si512((const void *)(base + (size_t)ids[i] * stride));
        out[i] = (uint32_t)_mm512_reduce_add_epi64(_mm512_popcnt_epi64(_mm512_xor_si512(vq, r)));
    }
}

/* 0 none, 1 popcnt, 2 AVX2, 3 AVX-512 VPOPCNTQ; -1 not yet known (same race rule as cpu_level).
 * AEGIS_SIMD's cap maps to scalar 0 (the portable loop: popcnt is not in baseline x86-64), avx2 2,
 * avx512 3. */
static _Atomic int bits_level = -1;

static int bits_cpu(void)
{
    int known = atomic_load_explicit(&bits_level, memory_order_relaxed);
    if (known < 0) {
        __builtin_cpu_init();
        int l = 0;
        if (__builtin_cpu_supports("popcnt"))
            l = 1;
        if (l && __builtin_cpu_supports("avx2"))
            l = 2;
        if (l == 2 && __builtin_cpu_supports("avx512f") &&
            __builtin_cpu_supports("avx512vpopcntdq"))
            l = 3;
        atomic_store_explicit(&bits_level, l, memory_order_relaxed);
        known = l;
    }
    return known;
}

/* The CPU's level under the cap (the variants by name check bits_cpu only). */
static int bits_simd(void)
{
    static const int caps[] = {[AG_SIMD_SCALAR] = 0, [AG_SIMD_AVX2] = 2, [AG_SIMD_AVX512] = 3};
    int l = bits_cpu(), cap = caps[ag_simd_cap()];
    return l < cap ? l : cap;
}
#endif

static kern_fn pick_hamming(void)
{
#ifdef QUANT_AVX2
    switch (bits_simd()) {
    case 3:
        return ham_avx512;
    case 2:
        return ham_avx2;
    case 1:
        return ham_popcnt;
    default:
        break;
    }
#endif
    return ham_generic;
}

uint32_t ag_bits_hamming(const uint8_t *a, const uint8_t *b, size_t n)
{
    return pick_hamming()(a, b, n);
}

uint32_t ag_bits_hamming_scalar(const uint8_t *a, const uint8_t *b, size_t n)
{
    return ham_generic(a, b, n);
}

uint32_t ag_bits_hamming_popcnt(const uint8_t *a, const uint8_t *b, size_t n)
{
#ifdef QUANT_AVX2
    if (bits_cpu() >= 1)
        return ham_popcnt(a, b, n);
#endif
    return ham_generic(a, b, n);
}

uint32_t ag_bits_hamming_avx2(const uint8_t *a, const uint8_t *b, size_t n)
{
#ifdef QUANT_AVX2
    if (bits_cpu() >= 2)
        return ham_avx2(a, b, n);
#endif
    return ham_generic(a, b, n);
}

uint32_t ag_bits_hamming_avx512(const uint8_t *a, const uint8_t *b, size_t n)
{
#ifdef QUANT_AVX2
    if (bits_cpu() >= 3)
        return ham_avx512(a, b, n);
#endif
    return ham_generic(a, b, n);
}

void ag_bits_hamming_gather(const uint8_t *q, const uint8_t *base, size_t stride,
                            const uint32_t *ids, size_t n, size_t row, uint32_t *out)
{
#ifdef QUANT_AVX2
    if (row == 64 && bits_simd() >= 3) {
        ham_gather64_avx512(q, base, stride, ids, n, out);
        return;
    }
#endif
    kern_fn k = pick_hamming();
    for (size_t i = 0; i < n; i++)
        out[i] = k(q, base + (size_t)ids[i] * stride, row);
}

const char *ag_bits_hamming_kernel(void)
{
#ifdef QUANT_AVX2
    static const char *const names[] = {"scalar", "popcnt", "avx2", "avx512-vpopcntq"};
    return names[bits_simd()];
#else
    return "scalar";
#endif
}

/* ---- the sign sketch of an int8 row --------------------------------------------------------- */

static void top_bits_generic(const uint8_t *code, size_t n, uint8_t *out)
{
    for (size_t b = 0; b < n / 8; b++) {
        unsigned x = 0;
        for (unsigned j = 0; j < 8; j++)
            x |= (unsigned)(code[8 * b + j] >> 7) << j;
        out[b] = (uint8_t)x;
    }
}

#ifdef QUANT_AVX2
/* vpmovmskb: bit j of the mask is the top bit of byte j, so 32 bytes give 4 sketch bytes. */
__attribute__((target("avx2"))) static void top_bits_avx2(const uint8_t *code, size_t n,
                                                          uint8_t *out)
{
    for (size_t i = 0; i < n; i += 32) {
        uint32_t m =
            (uint32_t)_mm256_movemask_epi8(_mm256_loadu_si256((const __m256i *)(code + i)));
        memcpy(out + i / 8, &m, sizeof(m));
    }
}
#endif

/* ---- scan helpers (the int8 scan's slot list and sketch selection) ------------------------- */

/* ag_u32_pick_below's rule from row i on, with n rows already kept at the front (n <= i, so the
 * in-place compaction never overwrites a row not yet read). Returns the rows kept in all. */
static size_t pick_below_from(const uint32_t *cnt, uint32_t *ids, size_t i, size_t m, size_t n,
                              uint32_t cut, size_t room)
{
    for (; i < m; i++) {
        uint32_t c = cnt[i];
        if (c > cut || (c == cut && room == 0))
            continue;
        if (c == cut)
            room--;
        ids[n++] = ids[i];
    }
    return n;
}

#ifdef QUANT_AVX2
/* Sixteen bits of a word at a time: VPCOMPRESSD stores the lane numbers of the set bits. */
__attribute__((target("avx512f"))) static size_t
bits_to_ids_avx512(const uint64_t *words, uint32_t nwords, uint32_t *out, size_t max)
{
    const __m512i iota = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    size_t m = 0;
    for (uint32_t w = 0; w < nwords; w++) {
        uint64_t bits = words[w];
        if ((size_t)__builtin_popcountll(bits) > max - m) { /* the room ends in this word */
            for (; bits && m < max; bits &= bits - 1)
                out[m++] = w * 64u + (uint32_t)__builtin_ctzll(bits);
            return m;
        }
        for (unsigned q = 0; q < 4 && bits; q++, bits >>= 16) {
            __mmask16 k = (__mmask16)(bits & 0xFFFF);
            __m512i ids = _mm512_add_epi32(iota, _mm512_set1_epi32((int)(w * 64u + 16u * q)));
            _mm512_mask_compressstoreu_epi32(out + m, k, ids);
            m += (size_t)__builtin_popcount(k);
        }
    }
    return m;
}

/* Sixteen rows a step: the rows below cut, and of those at it the first `room` (PDEP keeps the
 * lowest `room` set bits of the mask), compressed to the front. */
__attribute__((target("avx512f,bmi2"))) static size_t
pick_below_avx512(const uint32_t *cnt, uint32_t *ids, size_t m, uint32_t cut, size_t room)
{
    const __m512i vc = _mm512_set1_epi32((int)cut);
    size_t n = 0, i = 0;
    for (; i + 16 <= m; i += 16) {
        __m512i c = _mm512_loadu_si512((const void *)(cnt + i));
        __m512i v = _mm512_loadu_si512((const void *)(ids + i)); /* read before n..n+15 written */
        uint32_t lt = _mm512_cmplt_epu32_mask(c, vc), eq = _mm512_cmpeq_epu32_mask(c, vc);
        if (eq && room) {
            uint32_t first = room >= 16 ? 0xFFFFu : (1u << room) - 1u;
            eq = _pdep_u32(first, eq);
            room -= (size_t)__builtin_popcount(eq);
        } else {
            eq = 0;
        }
        __mmask16 k = (__mmask16)(lt | eq);
        _mm512_mask_compressstoreu_epi32(ids + n, k, v);
        n += (size_t)__builtin_popcount(k);
    }
    return pick_below_from(cnt, ids, i, m, n, cut, room);
}
#endif

size_t ag_bits_to_ids(const uint64_t *words, uint32_t nwords, uint32_t *out, size_t max)
{
#ifdef QUANT_AVX2
    if (bits_simd() >= 3)
        return bits_to_ids_avx512(words, nwords, out, max);
#endif
    size_t m = 0;
    for (uint32_t w = 0; w < nwords; w++)
        for (uint64_t bits = words[w]; bits && m < max; bits &= bits - 1)
            out[m++] = w * 64u + (uint32_t)__builtin_ctzll(bits);
    return m;
}

size_t ag_u32_pick_below(const uint32_t *cnt, uint32_t *ids, size_t m, uint32_t cut, size_t room)
{
#ifdef QUANT_AVX2
    if (bits_simd() >= 3 && __builtin_cpu_supports("bmi2"))
        return pick_below_avx512(cnt, ids, m, cut, room);
#endif
    return pick_below_from(cnt, ids, 0, m, 0, cut, room);
}

const char *ag_u32_scan_kernel(void)
{
#ifdef QUANT_AVX2
    if (bits_simd() >= 3)
        return "avx512";
#endif
    return "scalar";
}

void ag_u8_top_bits(const uint8_t *code, size_t n, uint8_t *out, size_t out_n)
{
#ifdef QUANT_AVX2
    if (have_avx2())
        top_bits_avx2(code, n, out);
    else
#endif
        top_bits_generic(code, n, out);
    memset(out + n / 8, 0, out_n - n / 8);
}

static kern_fn pick_kernel(ag_distance_t d)
{
#ifdef QUANT_AVX2
    if (d != AG_DIST_EUCLID && d != AG_DIST_MANHATTAN && simd_level() >= 2)
        return dot_vnni;
    if (have_avx2())
        return d == AG_DIST_EUCLID ? l2_avx2 : d == AG_DIST_MANHATTAN ? l1_avx2 : dot_avx2;
#endif
    return d == AG_DIST_EUCLID ? l2_generic : d == AG_DIST_MANHATTAN ? l1_generic : dot_generic;
}

/* ---- the quantizer -------------------------------------------------------------------------- */

int ag_quant_new(uint32_t dim, ag_distance_t dist, double quantile, ag_quant_t **out)
{
    if (!out || dim == 0 || dim > AG_MAX_DIM || (unsigned)dist > AG_DIST_MANHATTAN ||
        !(quantile >= 0.5 && quantile <= 1.0))
        return AG_EINVAL;
    ag_quant_t *q = calloc(1, sizeof(*q));
    if (!q)
        return AG_ENOMEM;
    q->dim = dim;
    q->dist = dist;
    q->quantile = quantile;
    q->row = AG_QUANT_ROW(dim);
    q->kern = pick_kernel(dist);
    q->dotsum = pick_dotsum();
    *out = q;
    return 0;
}

int ag_quant_new_binary(uint32_t dim, ag_distance_t dist, ag_quant_t **out)
{
    int rc = ag_quant_new(dim, dist, 1.0, out);
    if (rc)
        return rc;
    (*out)->kind = AG_QUANT_BINARY;
    (*out)->row = AG_QUANT_BROW(dim);
    (*out)->kern = pick_hamming();
    return 0;
}

ag_quant_kind_t ag_quant_kind(const ag_quant_t *q)
{
    return q->kind;
}

size_t ag_quant_row_bytes(const ag_quant_t *q)
{
    return q->row;
}

void ag_quant_free(ag_quant_t *q)
{
    if (!q)
        return;
    free(q->codes);
    free(q->corr);
    free(q);
}

bool ag_quant_trained(const ag_quant_t *q)
{
    return q->trained;
}

void ag_quant_reset(ag_quant_t *q)
{
    q->trained = false;
}

uint32_t ag_quant_trained_rows(const ag_quant_t *q)
{
    return q->trained ? q->trained_rows : 0;
}

void ag_quant_range(const ag_quant_t *q, float *lo, float *step)
{
    *lo = q->lo;
    *step = q->step;
}

uint32_t ag_quant_capacity(const ag_quant_t *q)
{
    return q->cap;
}

size_t ag_quant_memory(const ag_quant_t *q)
{
    return (size_t)q->cap * (q->row + sizeof(float));
}

/* Grows the arrays to at least need slots (doubling); new rows are zero. */
static int grow(ag_quant_t *q, uint32_t need)
{
    if (need <= q->cap)
        return 0;
    uint32_t nc = q->cap ? q->cap : 64;
    while (nc < need)
        nc = nc > UINT32_MAX / 2 ? need : nc * 2;
    size_t bytes = (size_t)nc * q->row;
    uint8_t *codes;
    if (bytes >= HUGE_PAGE) {
        /* Graph walks read rows at random: on 2 MB pages (where the kernel lets a process ask
         * for them) far fewer of those reads miss the TLB. */
        size_t whole = (bytes + HUGE_PAGE - 1) & ~(size_t)(HUGE_PAGE - 1);
        codes = aligned_alloc(HUGE_PAGE, whole);
        if (codes)
            (void)madvise(codes, whole, MADV_HUGEPAGE); /* a hint: failure changes nothing */
    } else {
        codes = aligned_alloc(64, (bytes + 63) & ~(size_t)63);
    }
    float *corr = malloc((size_t)nc * sizeof(float));
    if (!codes || !corr) {
        free(codes);
        free(corr);
        return AG_ENOMEM;
    }
    if (q->cap) {
        memcpy(codes, q->codes, (size_t)q->cap * q->row);
        memcpy(corr, q->corr, (size_t)q->cap * sizeof(float));
    }
    memset(codes + (size_t)q->cap * q->row, 0, bytes - (size_t)q->cap * q->row);
    memset(corr + q->cap, 0, (size_t)(nc - q->cap) * sizeof(float));
    free(q->codes);
    free(q->corr);
    q->codes = codes;
    q->corr = corr;
    q->cap = nc;
    return 0;
}

static inline uint8_t enc1(const ag_quant_t *q, float x)
{
    float c = (x - q->lo) * q->inv_step + 0.5f;
    if (!(c > 0.0f)) /* NaN too */
        return 0;
    return c >= (float)AG_QUANT_LEVELS - 1.0f ? AG_QUANT_LEVELS - 1 : (uint8_t)c;
}

/* Binary: bit i of the row (byte i / 8, bit i % 8) is set when vec[i] > 0 (NaN: clear). */
static void encode_bits(const ag_quant_t *q, const float *vec, uint8_t *code)
{
    memset(code, 0, q->row);
    uint32_t whole = q->dim / 8;
    for (uint32_t b = 0; b < whole; b++) { /* a byte at a time, without a branch */
        const float *v = vec + 8 * b;
        unsigned x = 0;
        for (unsigned j = 0; j < 8; j++)
            x |= (unsigned)(v[j] > 0.0f) << j;
        code[b] = (uint8_t)x;
    }
    for (uint32_t i = 8 * whole; i < q->dim; i++)
        code[i >> 3] |= (uint8_t)((vec[i] > 0.0f) << (i & 7));
}

#ifdef QUANT_AVX2
/* encode's int8 loop sixteen coordinates a step (the same operations, not fused, in the same
 * order per coordinate, so the codes equal the portable loop's); returns the byte sum. */
__attribute__((target("avx512f,avx512bw"))) static uint32_t
encode_avx512(const float *vec, uint32_t dim, float lo, float inv, uint8_t *code)
{
    const __m512i zero = _mm512_setzero_si512();
    const __m512 vlo = _mm512_set1_ps(lo), vinv = _mm512_set1_ps(inv), half = _mm512_set1_ps(0.5f),
                 top = _mm512_set1_ps((float)AG_QUANT_LEVELS - 1.0f);
    __m512i acc = zero;
    for (uint32_t i = 0; i < dim; i += 16) {
        __mmask16 k = dim - i >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (dim - i)) - 1u);
        __m512 v = _mm512_maskz_loadu_ps(k, vec + i);
        __m512 c = _mm512_add_ps(_mm512_mul_ps(_mm512_sub_ps(v, vlo), vinv), half);
        c = _mm512_max_ps(c, _mm512_setzero_ps()); /* NaN: the second operand, 0 */
        c = _mm512_min_ps(c, top);
        __m512i x = _mm512_maskz_cvttps_epi32(k, c);
        acc = _mm512_add_epi32(acc, x);
        _mm512_mask_cvtepi32_storeu_epi8(code + i, k, x);
    }
    return (uint32_t)_mm512_reduce_add_epi32(acc);
}
#endif

/* Encodes dim floats into code (zero tail) and returns the row's dot-product correction. */
static float encode(const ag_quant_t *q, const float *vec, uint8_t *code)
{
    if (q->kind == AG_QUANT_BINARY) {
        encode_bits(q, vec, code);
        return 0.0f;
    }
#ifdef QUANT_AVX2
    if (simd_level() >= 2) {
        uint32_t s = encode_avx512(vec, q->dim, q->lo, q->inv_step, code);
        memset(code + q->dim, 0, q->row - q->dim);
        return q->lo * q->step * (float)s;
    }
#endif
    /* enc1 written without branches, so the loop vectorizes (every query is encoded) */
    const float lo = q->lo, inv = q->inv_step, top = (float)AG_QUANT_LEVELS - 1.0f;
    uint32_t sum = 0;
#pragma omp simd reduction(+ : sum)
    for (uint32_t i = 0; i < q->dim; i++) {
        float c = (vec[i] - lo) * inv + 0.5f;
        c = c > 0.0f ? c : 0.0f; /* NaN too */
        c = c < top ? c : top;
        code[i] = (uint8_t)(int32_t)c;
        sum += code[i];
    }
    memset(code + q->dim, 0, q->row - q->dim);
    return q->lo * q->step * (float)sum;
}

int ag_quant_set(ag_quant_t *q, uint32_t slot, const float *vec)
{
    if (!q->trained || q->fit_only)
        return 0;
    if (slot >= AG_VECSTORE_MAX_SLOTS)
        return AG_EINVAL;
    int rc = grow(q, slot + 1);
    if (rc)
        return rc;
    q->corr[slot] = encode(q, vec, q->codes + (size_t)slot * q->row);
    return 0;
}

static int cmp_float(const void *pa, const void *pb)
{
    float a = *(const float *)pa, b = *(const float *)pb;
    return (a > b) - (a < b);
}

#define TRAIN_SAMPLE 65536u

/* Trains the range only (ag_quant_fit), or the range and every present row's code. */
static int train(ag_quant_t *q, const ag_vecstore_t *vs, bool codes)
{
    ag_vecstore_view_t v;
    ag_vecstore_view(vs, &v);
    uint32_t rows = ag_vecstore_count(vs);
    q->trained = false;
    if (rows == 0 || v.dim != q->dim)
        return 0;
    if (q->kind == AG_QUANT_BINARY) { /* nothing to learn: the bits depend on the row alone */
        int rc = codes ? grow(q, v.capacity) : 0;
        if (rc)
            return rc;
        q->trained = true;
        q->trained_rows = rows;
        q->fit_only = !codes;
        for (uint32_t slot = 0; codes && slot < v.capacity; slot++)
            if (ag_vecstore_view_has(&v, slot))
                encode_bits(q, ag_vecstore_view_row(&v, slot), q->codes + (size_t)slot * q->row);
        return 0;
    }
    /* Whole rows, every `every`-th present one, until about TRAIN_SAMPLE values. */
    size_t want_rows = AG_MAX((size_t)1, TRAIN_SAMPLE / q->dim);
    size_t every = AG_MAX((size_t)1, rows / want_rows);
    size_t cap = (AG_MIN((size_t)rows, want_rows) + 1) * q->dim;
    float *s = malloc(cap * sizeof(float));
    if (!s)
        return AG_ENOMEM;
    size_t n = 0, seen = 0;
    for (uint32_t slot = 0; slot < v.capacity && n + q->dim <= cap; slot++) {
        if (!ag_vecstore_view_has(&v, slot))
            continue;
        if (seen++ % every)
            continue;
        const float *r = ag_vecstore_view_row(&v, slot);
        for (uint32_t i = 0; i < q->dim; i++)
            if (isfinite(r[i]))
                s[n++] = r[i];
    }
    if (n == 0) {
        free(s);
        return 0;
    }
    qsort(s, n, sizeof(float), cmp_float);
    /* The central `quantile` of the values: (1 - quantile) / 2 is cut off at each end. */
    double cut = (1.0 - q->quantile) / 2.0 * (double)(n - 1);
    size_t lo_i = (size_t)floor(cut), hi_i = (n - 1) - (size_t)floor(cut);
    float lo = s[lo_i], hi = s[hi_i];
    free(s);
    if (!(hi > lo))
        hi = lo + 1e-6f * AG_MAX(1.0f, fabsf(lo));
    int rc = codes ? grow(q, v.capacity) : 0;
    if (rc)
        return rc;
    q->lo = lo;
    q->step = (hi - lo) / (float)(AG_QUANT_LEVELS - 1);
    q->inv_step = 1.0f / q->step;
    q->trained = true;
    q->trained_rows = rows;
    q->fit_only = !codes;
    if (!codes)
        return 0;
    for (uint32_t slot = 0; slot < v.capacity; slot++)
        if (ag_vecstore_view_has(&v, slot))
            q->corr[slot] =
                encode(q, ag_vecstore_view_row(&v, slot), q->codes + (size_t)slot * q->row);
    return 0;
}

int ag_quant_train(ag_quant_t *q, const ag_vecstore_t *vs)
{
    return train(q, vs, true);
}

int ag_quant_fit(ag_quant_t *q, const ag_vecstore_t *vs)
{
    int rc = train(q, vs, false);
    if (q->cap) { /* codes of an earlier training are stale and unused from now on */
        free(q->codes);
        free(q->corr);
        q->codes = NULL;
        q->corr = NULL;
        q->cap = 0;
    }
    return rc;
}

float ag_quant_encode_row(const ag_quant_t *q, const float *vec, uint8_t *code)
{
    return encode(q, vec, code);
}

/* Binary: the Hamming count of two rows as the distance's internal value (ag_quant.h). */
static void bits_scale(const ag_quant_t *q, float *scale, float *off)
{
    float d = (float)q->dim;
    if (q->dist == AG_DIST_COSINE || q->dist == AG_DIST_DOT) {
        *scale = 2.0f / d; /* -(1 - 2 ham / dim) */
        *off = -1.0f;
    } else {
        *scale = 4.0f / d;
        *off = 0.0f;
    }
}

void ag_quant_params(const ag_quant_t *q, ag_quant_params_t *out)
{
    out->kern = q->kern;
    out->bits = q->kind == AG_QUANT_BINARY;
    out->bscale = out->boff = 0.0f;
    if (out->bits)
        bits_scale(q, &out->bscale, &out->boff);
    out->dotsum = q->dotsum;
    out->dist = q->dist;
    out->step = q->step;
    out->lostep = q->lo * q->step;
    out->row = q->row;
}

void ag_quant_encode_query(const ag_quant_t *q, const float *vec, ag_quant_query_t *qq)
{
    float c = encode(q, vec, qq->code);
    if (q->kind == AG_QUANT_BINARY) {
        qq->corr = 0.0f;
        return;
    }
    /* dot(x, y) ~ sum (lo + s cx)(lo + s cy) = dim lo^2 + lo s (sum cx + sum cy) + s^2 cx.cy */
    qq->corr = c + (float)q->dim * q->lo * q->lo;
}

void ag_quant_decode(const ag_quant_t *q, uint32_t slot, float *out)
{
    const uint8_t *c = q->codes + (size_t)slot * q->row;
    if (q->kind == AG_QUANT_BINARY) {
        for (uint32_t i = 0; i < q->dim; i++)
            out[i] = (c[i >> 3] >> (i & 7)) & 1 ? 1.0f : -1.0f;
        return;
    }
    for (uint32_t i = 0; i < q->dim; i++)
        out[i] = q->lo + (float)c[i] * q->step;
}

void ag_quant_prefetch(const ag_quant_t *q, uint32_t slot)
{
    const char *p = (const char *)(q->codes + (size_t)slot * q->row);
    for (size_t off = 0; off < q->row; off += 64)
        __builtin_prefetch(p + off);
}

float ag_quant_dist(const ag_quant_t *q, const ag_quant_query_t *qq, uint32_t slot)
{
    uint32_t k = q->kern(qq->code, q->codes + (size_t)slot * q->row, q->row);
    if (q->kind == AG_QUANT_BINARY) {
        float scale, off;
        bits_scale(q, &scale, &off);
        return scale * (float)k + off;
    }
    switch (q->dist) {
    case AG_DIST_EUCLID:
        return q->step * q->step * (float)k;
    case AG_DIST_MANHATTAN:
        return q->step * (float)k;
    case AG_DIST_COSINE:
    case AG_DIST_DOT:
        break;
    }
    return -(qq->corr + q->corr[slot] + q->step * q->step * (float)k);
}

float ag_quant_score(const ag_quant_t *q, float dist)
{
    switch (q->dist) {
    case AG_DIST_EUCLID:
        return sqrtf(AG_MAX(dist, 0.0f));
    case AG_DIST_MANHATTAN:
        return dist;
    case AG_DIST_COSINE:
    case AG_DIST_DOT:
        break;
    }
    return -dist;
}
