/*
 * bench_simd — what the AEGIS_SIMD levels cost (docs/ARCHITECTURE.md "SIMD levels"): each
 * hand-dispatched kernel and each quantized search path at avx512 (the CPU's best), avx2 and
 * scalar, measured in one process, the levels interleaved round by round (best of 5 rounds; the
 * machine is shared) and reported as a ratio to the avx512 row of the same run.
 *
 *   bench_simd [n [queries]]   defaults: 20000 500
 *
 * Data: seeded clustered 384-d vectors (MiniLM's size), normalized, Cosine.
 * 1. Kernels, ns per row: the int8 dot-plus-sum over gathered rows (the scan's and the quantized
 *    walk's), int8 L2, the 64-byte Hamming gather, the int8 encoder, the sign sketch's top bits,
 *    the scan helpers (slot list from presence bits, the pick at the cut; per slot), and the
 *    float rescoring of 64 rows (ag_dot_f32_rows).
 * 2. Searches, queries/s and recall@10 (k 10): the int8 graph walk (one graph built on the floats,
 *    the codes rebuilt under each cap since a quantizer picks its kernels when made; ef 64,
 *    oversampling 2), and below full_scan_threshold (6000 points) the int8 scan with the sign
 *    sketch and the binary scan (oversampling 4), one index per level.
 * The float kernels (target_clones) are not capped: the graph's construction and the rescoring's
 * one-row kernel run at the CPU's best in every row. AEGIS_BENCH_CLOCK=cpu uses the thread CPU
 * clock (everything here runs on one thread).
 */
#include "ag_base.h"

#include <math.h>
#include <stdio.h>
#include <time.h>

#include "bench_clock.h"
#include "index/ag_distance.h"
#include "index/ag_hnsw.h"
#include "index/ag_index.h"
#include "index/ag_quant.h"
#include "index/ag_simd.h"
#include "index/ag_vecstore.h"

#define BENCH_RNG_SEED 0x5851F42D4C957F2Dull
#include "bench_rand.h"

#define DIM 384
#define K 10
#define ROUNDS 5
#define CLUSTERS 64
#define SCAN_N 6000 /* below Qdrant's default full_scan_threshold at 384-d (6666 points) */
#define NLEVELS 3

static const int levels[NLEVELS] = {AG_SIMD_AVX512, AG_SIMD_AVX2, AG_SIMD_SCALAR};

static double now(void)
{
    return bench_seconds(CLOCK_THREAD_CPUTIME_ID);
}

static volatile uint32_t sink; /* keeps the kernels' results alive */

/* ---- 1. kernels ------------------------------------------------------------------------------ */

enum { KROWS = 4096, KIDS = 1024, KREP = 40 };

typedef struct kdata {
    uint8_t *codes; /* KROWS int8 rows of 384 bytes */
    uint8_t *bits;  /* KROWS binary rows of 64 bytes */
    uint8_t *q;
    float *f, *fq;
    uint32_t ids[KIDS];
    uint64_t *words; /* presence bits of KROWS * 8 slots */
    uint32_t *cnt, *pick;
    ag_quant_t *quant[NLEVELS];
} kdata_t;

#define NKERN 7
static const char *const kern_names[NKERN] = {
    "int8 dot+sum gather (384 B)",    "int8 L2 (384 B)",
    "Hamming gather (64 B)",          "int8 encode (384-d)",
    "sign sketch top bits",           "scan helpers (per slot)",
    "float rescoring, 4 rows a step",
};

/* ns per row of kernel k at the cap in force; li picks the quantizer made under that cap. */
static double run_kernel(kdata_t *d, int k, size_t li)
{
    uint32_t dot[KIDS], sum[KIDS];
    double t0 = now();
    size_t rows = 0;
    for (int rep = 0; rep < KREP; rep++) {
        switch (k) {
        case 0:
            ag_u8_dotsum_gather(d->q, d->codes, DIM, d->ids, KIDS, DIM, dot, sum);
            sink += dot[rep];
            rows += KIDS;
            break;
        case 1:
            for (size_t i = 0; i < KIDS; i++)
                sink += ag_u8_l2sq(d->q, d->codes + (size_t)d->ids[i] * DIM, DIM);
            rows += KIDS;
            break;
        case 2:
            ag_bits_hamming_gather(d->q, d->bits, 64, d->ids, KIDS, 64, dot);
            sink += dot[rep];
            rows += KIDS;
            break;
        case 3:
            for (size_t i = 0; i < 64; i++)
                sink += (uint32_t)ag_quant_encode_row(d->quant[li], d->f + (size_t)i * DIM,
                                                      d->codes + (size_t)(KROWS - 64 + i) * DIM);
            rows += 64;
            break;
        case 4: {
            uint8_t out[64];
            for (size_t i = 0; i < KIDS; i++) {
                ag_u8_top_bits(d->codes + (size_t)d->ids[i] * DIM, DIM, out, 64);
                sink += out[i % 48];
            }
            rows += KIDS;
            break;
        }
        case 5: {
            size_t m = ag_bits_to_ids(d->words, KROWS * 8 / 64, d->pick, KROWS * 8);
            sink += (uint32_t)ag_u32_pick_below(d->cnt, d->pick, m, 40, 100);
            rows += KROWS * 8;
            break;
        }
        case 6: {
            const float *r[64];
            float out[64];
            for (size_t i = 0; i < 64; i++)
                r[i] = d->f + (size_t)d->ids[i] % 64 * DIM;
            ag_dot_f32_rows(d->fq, r, 64, DIM, out);
            sink += (uint32_t)out[rep];
            rows += 64;
            break;
        }
        }
    }
    return (now() - t0) * 1e9 / (double)rows;
}

static int kernels(const ag_vecstore_t *vs)
{
    kdata_t d = {0};
    d.codes = aligned_alloc(64, (size_t)KROWS * DIM);
    d.bits = aligned_alloc(64, (size_t)KROWS * 64);
    d.q = aligned_alloc(64, DIM);
    d.f = malloc((size_t)64 * DIM * sizeof(float));
    d.fq = malloc(DIM * sizeof(float));
    d.words = malloc((size_t)KROWS * 8 / 64 * sizeof(uint64_t));
    d.cnt = malloc((size_t)KROWS * 8 * sizeof(uint32_t));
    d.pick = malloc((size_t)KROWS * 8 * sizeof(uint32_t));
    int rc = 1;
    if (!d.codes || !d.bits || !d.q || !d.f || !d.fq || !d.words || !d.cnt || !d.pick)
        goto out;
    for (size_t i = 0; i < (size_t)KROWS * DIM; i++)
        d.codes[i] = (uint8_t)next_u64();
    for (size_t i = 0; i < (size_t)KROWS * 64; i++)
        d.bits[i] = (uint8_t)next_u64();
    for (size_t i = 0; i < DIM; i++)
        d.q[i] = (uint8_t)next_u64();
    for (size_t i = 0; i < (size_t)64 * DIM; i++)
        d.f[i] = gauss();
    for (size_t i = 0; i < DIM; i++)
        d.fq[i] = gauss();
    for (size_t i = 0; i < KIDS; i++)
        d.ids[i] = (uint32_t)(next_u64() % KROWS);
    for (size_t i = 0; i < (size_t)KROWS * 8 / 64; i++)
        d.words[i] = next_u64() | next_u64(); /* three quarters present */
    for (size_t i = 0; i < (size_t)KROWS * 8; i++)
        d.cnt[i] = (uint32_t)(next_u64() % 128);
    for (size_t li = 0; li < NLEVELS; li++) {
        ag_simd_cap_set(levels[li]);
        if (ag_quant_new(DIM, AG_DIST_COSINE, 0.99, &d.quant[li]) != 0 ||
            ag_quant_fit(d.quant[li], vs) != 0)
            goto out;
    }
    double best[NKERN][NLEVELS];
    for (int k = 0; k < NKERN; k++)
        for (size_t li = 0; li < NLEVELS; li++)
            best[k][li] = INFINITY;
    for (int r = 0; r < ROUNDS; r++)
        for (int k = 0; k < NKERN; k++)
            for (size_t li = 0; li < NLEVELS; li++) {
                ag_simd_cap_set(levels[li]);
                best[k][li] = AG_MIN(best[k][li], run_kernel(&d, k, li));
            }
    printf("%-32s %18s %18s %18s\n", "kernel (ns per row)", "avx512", "avx2 (x avx512)",
           "scalar (x avx512)");
    for (int k = 0; k < NKERN; k++)
        printf("%-32s %18.2f %10.2f (%5.2fx) %10.2f (%5.2fx)\n", kern_names[k], best[k][0],
               best[k][1], best[k][1] / best[k][0], best[k][2], best[k][2] / best[k][0]);
    rc = 0;
out:
    for (size_t li = 0; li < NLEVELS; li++)
        ag_quant_free(d.quant[li]);
    free(d.codes);
    free(d.bits);
    free(d.q);
    free(d.f);
    free(d.fq);
    free(d.words);
    free(d.cnt);
    free(d.pick);
    return rc;
}

/* ---- 2. searches ----------------------------------------------------------------------------- */

/* Seconds for nq queries; ids gets K slots a query (UINT32_MAX pads). */
static double run_queries(const ag_index_t *ix, const float *qs, uint32_t nq,
                          const ag_search_params_t *sp, uint32_t *ids)
{
    double t0 = now();
    for (uint32_t q = 0; q < nq; q++) {
        ag_hit_t h[K];
        size_t n = 0;
        if (ag_index_search(ix, qs + (size_t)q * DIM, K, NULL, sp, h, &n) != 0)
            n = 0;
        for (size_t i = 0; i < K; i++)
            ids[(size_t)q * K + i] = i < n ? h[i].slot : UINT32_MAX;
    }
    return now() - t0;
}

static double recall_of(const uint32_t *got, const uint32_t *gt, uint32_t nq)
{
    size_t hit = 0, want = 0;
    for (size_t i = 0; i < (size_t)nq * K; i++) {
        if (gt[i] == UINT32_MAX)
            continue;
        want++;
        const uint32_t *row = got + i / K * K;
        for (size_t j = 0; j < K; j++)
            hit += row[j] == gt[i];
    }
    return want ? (double)hit / (double)want : 1.0;
}

static void print_row(const char *name, const double *secs, const double *rec, uint32_t nq)
{
    printf("%-32s", name);
    for (size_t li = 0; li < NLEVELS; li++)
        printf(" %9.1f q/s r=%.3f (%4.2fx)", nq / secs[li], rec[li], secs[li] / secs[0]);
    printf("\n");
}

static ag_index_t *new_index(ag_vecstore_t *vs, uint32_t n, uint32_t fst, int kind)
{
    ag_hnsw_params_t p = {.m = 16, .ef_construct = 100, .full_scan_threshold = fst};
    ag_index_t *ix;
    if (ag_index_hnsw_new(vs, AG_DIST_COSINE, &p, &ix) != 0)
        return NULL;
    if ((kind == 1 && ag_hnsw_set_quant(ix, 0.99) != 0) ||
        (kind == 2 && ag_hnsw_set_quant_kind(ix, AG_QUANT_BINARY, 0) != 0)) {
        ag_index_free(ix);
        return NULL;
    }
    for (uint32_t s = 0; s < n; s++)
        if (ag_index_add(ix, s) != 0) {
            ag_index_free(ix);
            return NULL;
        }
    return ix;
}

static int searches(ag_vecstore_t *vs, uint32_t n, const float *qs, uint32_t nq)
{
    int rc = 1;
    ag_index_t *exact = NULL, *graph = NULL, *scan[2][NLEVELS] = {{NULL}};
    ag_vecstore_t *small = NULL;
    ag_index_t *small_exact = NULL;
    uint32_t *gt = malloc((size_t)nq * K * sizeof(uint32_t));
    uint32_t *gt_small = malloc((size_t)nq * K * sizeof(uint32_t));
    uint32_t *got = malloc((size_t)nq * K * sizeof(uint32_t));
    if (!gt || !gt_small || !got || ag_index_exact_new(vs, AG_DIST_COSINE, &exact) != 0)
        goto out;
    run_queries(exact, qs, nq, NULL, gt);
    double t0 = bench_seconds(CLOCK_PROCESS_CPUTIME_ID); /* the build may use pool threads */
    if (!(graph = new_index(vs, n, 0, 0)))
        goto out;
    printf("graph of %u points built in %.1f s (float kernels, not capped)\n", n,
           bench_seconds(CLOCK_PROCESS_CPUTIME_ID) - t0);

    /* the small collection: the first SCAN_N points in a store of their own */
    if (ag_vecstore_new(DIM, &small) != 0 ||
        ag_index_exact_new(small, AG_DIST_COSINE, &small_exact))
        goto out;
    for (uint32_t s = 0; s < SCAN_N && s < n; s++)
        if (ag_vecstore_set(small, s, ag_vecstore_get(vs, s)) != 0)
            goto out;
    uint32_t sn = AG_MIN(n, SCAN_N), fst = 10000u * 1024u / (DIM * 4u);
    run_queries(small_exact, qs, nq, NULL, gt_small);
    for (size_t li = 0; li < NLEVELS; li++) {
        ag_simd_cap_set(levels[li]);
        if (!(scan[0][li] = new_index(small, sn, fst, 1)) ||
            !(scan[1][li] = new_index(small, sn, fst, 2)))
            goto out;
    }

    double best[3][NLEVELS], rec[3][NLEVELS];
    for (int c = 0; c < 3; c++)
        for (size_t li = 0; li < NLEVELS; li++)
            best[c][li] = INFINITY;
    const ag_search_params_t walk = {.ef = 64, .oversampling = 2.0};
    const ag_search_params_t sc = {.oversampling = 4.0};
    for (int r = 0; r < ROUNDS; r++)
        for (size_t li = 0; li < NLEVELS; li++) {
            ag_simd_cap_set(levels[li]);
            if (ag_hnsw_set_quant(graph, 0) != 0 || ag_hnsw_set_quant(graph, 0.99) != 0)
                goto out;
            best[0][li] = AG_MIN(best[0][li], run_queries(graph, qs, nq, &walk, got));
            rec[0][li] = recall_of(got, gt, nq);
            for (int c = 0; c < 2; c++) {
                best[1 + c][li] =
                    AG_MIN(best[1 + c][li], run_queries(scan[c][li], qs, nq, &sc, got));
                rec[1 + c][li] = recall_of(got, gt_small, nq);
            }
        }
    printf("%-32s %31s %31s %31s\n", "search (1 thread)", "avx512", "avx2 (x avx512 time)",
           "scalar (x avx512 time)");
    char name[64];
    snprintf(name, sizeof(name), "int8 graph walk n=%u ef=64", n);
    print_row(name, best[0], rec[0], nq);
    snprintf(name, sizeof(name), "int8 scan+sketch n=%u", sn);
    print_row(name, best[1], rec[1], nq);
    snprintf(name, sizeof(name), "binary scan n=%u", sn);
    print_row(name, best[2], rec[2], nq);
    rc = 0;
out:
    ag_simd_cap_set(-1);
    for (int c = 0; c < 2; c++)
        for (size_t li = 0; li < NLEVELS; li++)
            ag_index_free(scan[c][li]);
    ag_index_free(graph);
    ag_index_free(exact);
    ag_index_free(small_exact);
    ag_vecstore_free(small);
    free(gt);
    free(gt_small);
    free(got);
    return rc;
}

int main(int argc, char **argv)
{
    uint32_t n = argc > 1 ? (uint32_t)strtoul(argv[1], NULL, 10) : 20000;
    uint32_t nq = argc > 2 ? (uint32_t)strtoul(argv[2], NULL, 10) : 500;
    if (n < 100 || n > 2000000 || nq < 1 || nq > 100000) {
        fprintf(stderr, "usage: bench_simd [n (100..2000000) [queries (1..100000)]]\n");
        return 2;
    }
    ag_vecstore_t *vs;
    float *centers = malloc((size_t)CLUSTERS * DIM * sizeof(float));
    float *v = malloc(DIM * sizeof(float)), *qs = malloc((size_t)nq * DIM * sizeof(float));
    if (!centers || !v || !qs || ag_vecstore_new(DIM, &vs) != 0)
        return 1;
    for (size_t i = 0; i < (size_t)CLUSTERS * DIM; i++)
        centers[i] = gauss();
    for (uint32_t s = 0; s < n + nq; s++) {
        const float *c = centers + (size_t)(next_u64() % CLUSTERS) * DIM;
        float *dst = s < n ? v : qs + (size_t)(s - n) * DIM;
        for (uint32_t j = 0; j < DIM; j++)
            dst[j] = c[j] + 0.6f * gauss();
        ag_vector_normalize(dst, DIM);
        if (s < n && ag_vecstore_set(vs, s, v) != 0)
            return 1;
    }
    char line[256];
    ag_simd_cap_set(-1);
    ag_simd_describe(line, sizeof(line));
    printf("bench_simd: clustered n=%u dim=%d Cosine, k=%d, queries=%u, best of %d interleaved "
           "rounds, %s clock\nCPU at the cap from the environment: %s\n",
           n, DIM, K, nq, ROUNDS, bench_cpu_clock() ? "thread CPU" : "monotonic", line);
    int rc = kernels(vs) || searches(vs, n, qs, nq);
    ag_vecstore_free(vs);
    free(centers);
    free(v);
    free(qs);
    return rc;
}
