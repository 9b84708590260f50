/*
 * bench_hnsw — the HNSW index beside the exact scan measured in the same run, single thread.
 *
 *   bench_hnsw [n [queries [glove-dir [minilm-dir]]]]   defaults: 100000 1000, no GloVe/MiniLM
 *
 * 1. Seeded clustered n x 128 float32 (Euclid) plus queries: build time (M=16, ef_construct=100),
 *    then recall@10 and queries/s at ef 16/32/64/128 against the exact index (ground truth and
 *    baseline). Best of 5 interleaved rounds (the machine is shared: the best is the least
 *    disturbed).
 * 2. Filtered search at selectivity 0.1/1/10/50/100 %: the index's planner (ef 64) beside exact
 *    search over the matching points, both as a predicate scan and with a candidate list.
 * 3. Optionally GloVe-100 angular (Cosine) from glove-dir (base.fvecs, query.fvecs, gt.ivecs),
 *    and MiniLM-384 (Cosine) from minilm-dir (embeddings.bin: every 10th row a query, the rest the
 *    base, exact ground truth): float32 rows ("aegis hnsw"), then the same graph with scalar int8
 *    quantization ("aegis int8", quantile 0.99, rescoring 2 x k candidates from the floats; "aegis
 *    int8 beam", the same with the whole beam rescored: oversampling ef / k), and
 *    the memory for vectors of both; then binary quantization on the same graph ("aegis binary",
 *    an oversampling sweep), and, when the set is below Qdrant's default full_scan_threshold
 *    (10000 KB of vectors), the path the server takes instead: no graph, a scan of the float rows
 *    ("aegis scan f32") or of the int8/binary codes with the best rescored ("aegis scan int8",
 *    with the sign-sketch prefilter — AEGIS_BENCH_SKETCH=<factor> sets its factor —, "aegis scan
 *    binary", and "aegis scan int8 nosketch", the int8 scan without the sketch as the same-run
 *    baseline). Every row names the path that ran.
 * hnswlib is not installed on this machine: its numbers are quoted from docs/BENCHMARKS.md
 * (reference figures); bench/compare_hnswlib.sh runs a native hnswlib beside the GloVe part.
 *
 * AEGIS_BENCH_CLOCK=cpu times with the process CPU clock instead of the monotonic clock: on a
 * shared machine this removes the time the bench waits for a core (the HNSW rows and the build are
 * single-threaded; the exact rows then count the CPU of every pool thread, i.e. their total cost).
 * AEGIS_BENCH_PROBE=0 builds the graphs without the reachability probe (docs/ARCHITECTURE.md
 * "Graph reachability"), the baseline for it.
 */
#include "ag_base.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <time.h>

#include "ag_clock.h"
#include "bench_clock.h"
#include "index/ag_hnsw.h"
#include "index/ag_index.h"
#include "index/ag_quant.h"

#define BENCH_RNG_SEED 0x9E3779B97F4A7C15ull
#include "bench_rand.h"

#define K 10
#define DIM 128
#define CLUSTERS 100
#define ROUNDS 5
#define NQ_EXACT 200 /* queries per exact-scan round (the scan is slow) */

static bool cpu_clock; /* AEGIS_BENCH_CLOCK=cpu */

/* Seconds on the clock chosen by AEGIS_BENCH_CLOCK (see the header comment). */
static double now(void)
{
    return bench_seconds(CLOCK_PROCESS_CPUTIME_ID);
}

static int parse_u32(const char *s, uint32_t lo, uint32_t hi, uint32_t *out)
{
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi)
        return AG_EINVAL;
    *out = (uint32_t)v;
    return 0;
}

/* Ground truth for nq queries into gt (nq * K slots; UINT32_MAX pads a short answer). */
static double run_queries(const ag_index_t *ix, const float *qs, uint32_t dim, uint32_t nq,
                          const ag_index_filter_t *flt, const ag_search_params_t *sp, uint32_t *ids)
{
    double t0 = now();
    for (uint32_t q = 0; q < nq; q++) {
        ag_hit_t h[K];
        size_t n = 0;
        if (ag_index_search(ix, qs + (size_t)q * dim, K, flt, sp, h, &n) != 0)
            n = 0;
        for (size_t i = 0; i < K; i++)
            ids[(size_t)q * K + i] = i < n ? h[i].slot : UINT32_MAX;
    }
    return now() - t0;
}

static double recall_of(const uint32_t *got, const uint32_t *gt, uint32_t nq, size_t gt_stride)
{
    size_t hit = 0, want = 0;
    for (uint32_t q = 0; q < nq; q++) {
        for (size_t i = 0; i < K; i++) {
            uint32_t g = gt[(size_t)q * gt_stride + i];
            if (g == UINT32_MAX)
                continue;
            want++;
            for (size_t j = 0; j < K; j++)
                if (got[(size_t)q * K + j] == g) {
                    hit++;
                    break;
                }
        }
    }
    return want ? (double)hit / (double)want : 1.0;
}

static ag_index_t *build(ag_vecstore_t *vs, ag_distance_t dist, uint32_t n, double *secs)
{
    /* AEGIS_BENCH_PROBE=0: built without the reachability probe (the baseline to compare) */
    const char *pr = getenv("AEGIS_BENCH_PROBE");
    ag_hnsw_params_t p = {.m = 16, .ef_construct = 100, .no_probe = pr && strcmp(pr, "0") == 0};
    ag_index_t *ix;
    if (ag_index_hnsw_new(vs, dist, &p, &ix) != 0)
        return NULL;
    double t0 = now();
    for (uint32_t s = 0; s < n; s++)
        if (ag_index_add(ix, s) != 0) {
            ag_index_free(ix);
            return NULL;
        }
    *secs = now() - t0;
    return ix;
}

static const uint32_t efs[] = {10, 16, 32, 64, 128};

#define MAX_CFG 3

/* The ef sweep: exact (ground truth, baseline) and HNSW rows, best of ROUNDS interleaved — the
 * configurations too (each round runs every ef of every one), so a change in the machine's load
 * hits them alike. labels name the HNSW rows; tmpls give the search parameters besides ef. */
static void sweep_cfgs(const ag_index_t *hnsw, const ag_index_t *exact, const float *qs,
                       uint32_t dim, uint32_t nq, const uint32_t *gt, size_t gt_stride,
                       uint32_t *scratch, bool quote, const char *const *labels,
                       const ag_search_params_t *tmpls, size_t ncfg)
{
    double best_exact = INFINITY, best[MAX_CFG][AG_ARRAY_LEN(efs)];
    double rec[MAX_CFG][AG_ARRAY_LEN(efs)];
    uint32_t ne = AG_MIN(nq, (uint32_t)NQ_EXACT);
    for (size_t c = 0; c < ncfg; c++)
        for (size_t e = 0; e < AG_ARRAY_LEN(efs); e++)
            best[c][e] = INFINITY;
    for (int r = 0; r < ROUNDS; r++) {
        best_exact = AG_MIN(best_exact, run_queries(exact, qs, dim, ne, NULL, NULL, scratch));
        for (size_t e = 0; e < AG_ARRAY_LEN(efs); e++) {
            for (size_t c = 0; c < ncfg; c++) {
                ag_search_params_t sp = tmpls[c];
                sp.ef = efs[e];
                if (sp.oversampling < 0) /* the whole beam rescored: oversampling ef / k */
                    sp.oversampling = (double)efs[e] / K;
                best[c][e] = AG_MIN(best[c][e], run_queries(hnsw, qs, dim, nq, NULL, &sp, scratch));
                rec[c][e] = recall_of(scratch, gt, nq, gt_stride);
            }
        }
    }
    double exact_qps = ne / best_exact;
    for (size_t c = 0; c < ncfg; c++) {
        printf("%-26s %9s %12s %10s\n", "search (1 thread)", "recall@10", "queries/s", "vs exact");
        printf("%-26s %9.4f %12.1f %9.1fx\n", "exact scan", 1.0, exact_qps, 1.0);
        for (size_t e = 0; e < AG_ARRAY_LEN(efs); e++) {
            char name[32];
            snprintf(name, sizeof(name), "%s ef=%u", labels[c], efs[e]);
            printf("%-26s %9.4f %12.1f %9.1fx\n", name, rec[c][e], nq / best[c][e],
                   nq / best[c][e] / exact_qps);
        }
        /* Queries/s at recall 0.95, interpolated between the two ef values that bracket it. */
        for (size_t e = 1; e < AG_ARRAY_LEN(efs); e++) {
            if (rec[c][e - 1] < 0.95 && rec[c][e] >= 0.95) {
                double t = (0.95 - rec[c][e - 1]) / (rec[c][e] - rec[c][e - 1]);
                double q0 = nq / best[c][e - 1], q1 = nq / best[c][e];
                double at = q0 + t * (q1 - q0);
                /* hnswlib's quoted points (0.935, 16859) and (0.967, 9876) the same way. */
                double ref = 16859.0 + (0.95 - 0.935) / (0.967 - 0.935) * (9876.0 - 16859.0);
                printf("%s at recall 0.95 (interpolated): %.0f q/s", labels[c], at);
                if (quote)
                    printf("; quoted hnswlib %.0f q/s; ratio %.2f (not the same vectors: "
                           "indicative)",
                           ref, at / ref);
                printf("\n");
            }
        }
    }
}

static void sweep(const ag_index_t *hnsw, const ag_index_t *exact, const float *qs, uint32_t dim,
                  uint32_t nq, const uint32_t *gt, size_t gt_stride, uint32_t *scratch, bool quote)
{
    static const char *const label[] = {"aegis hnsw"};
    ag_search_params_t sp = {0};
    sweep_cfgs(hnsw, exact, qs, dim, nq, gt, gt_stride, scratch, quote, label, &sp, 1);
}

/* The same graph searched on the float rows (quantization.ignore) and on int8 codes (quantile
 * 0.99, 2 x k rescored from the floats; and the whole beam of ef rescored), interleaved. */
static void sweep_quant(ag_index_t *hnsw, const ag_index_t *exact, const ag_vecstore_t *vs,
                        const float *qs, uint32_t dim, uint32_t nq, const uint32_t *gt,
                        size_t gt_stride, uint32_t *scratch)
{
    double t0 = now();
    if (ag_hnsw_set_quant(hnsw, 0.99) != 0) {
        printf("int8: out of memory\n");
        return;
    }
    double enc = now() - t0;
    ag_hnsw_stats_t st;
    ag_hnsw_stats(hnsw, &st);
    size_t fmem = ag_vecstore_memory(vs);
    printf("memory for vectors: float32 %.1f MB; int8 codes %.1f MB (%.0f %% of float32; encoded "
           "in %.3f s); graph %.1f MB\n",
           (double)fmem / 1048576.0, (double)st.quant_memory / 1048576.0,
           100.0 * (double)st.quant_memory / (double)fmem, enc, (double)st.memory / 1048576.0);
    printf("int8 dot kernel: %s\n", ag_u8_dot_kernel());
    static const char *const labels[] = {"aegis hnsw", "aegis int8", "aegis int8 beam"};
    const ag_search_params_t sp[] = {
        {.quant_ignore = true}, {.oversampling = 2.0}, {.oversampling = -1.0}};
    sweep_cfgs(hnsw, exact, qs, dim, nq, gt, gt_stride, scratch, false, labels, sp, 3);
    ag_hnsw_set_quant(hnsw, 0);
}

static const double oss[] = {1, 1.5, 2, 3, 4, 6, 8, 12, 20};
#define MAX_OS_CFG 4

/* An oversampling sweep (ef left to the index: at least ceil(oversampling * k)), best of ROUNDS
 * interleaved over the configurations; each row says which path the index took (graph walk, scan
 * of the codes, scan of the floats). tmpls[c].oversampling is ignored; nos[c] limits config c to
 * the first nos[c] values (1 for a configuration without quantization). */
static void sweep_os(ag_index_t *const *ix, const char *const *labels,
                     const ag_search_params_t *tmpls, const size_t *nos, size_t ncfg,
                     const float *qs, uint32_t dim, uint32_t nq, const uint32_t *gt,
                     size_t gt_stride, uint32_t *scratch)
{
    double best[MAX_OS_CFG][AG_ARRAY_LEN(oss)], rec[MAX_OS_CFG][AG_ARRAY_LEN(oss)];
    for (size_t c = 0; c < ncfg; c++)
        for (size_t o = 0; o < AG_ARRAY_LEN(oss); o++)
            best[c][o] = INFINITY;
    for (int r = 0; r < ROUNDS; r++)
        for (size_t o = 0; o < AG_ARRAY_LEN(oss); o++)
            for (size_t c = 0; c < ncfg; c++) {
                if (o >= nos[c])
                    continue;
                ag_search_params_t sp = tmpls[c];
                sp.oversampling = oss[o];
                best[c][o] =
                    AG_MIN(best[c][o], run_queries(ix[c], qs, dim, nq, NULL, &sp, scratch));
                rec[c][o] = recall_of(scratch, gt, nq, gt_stride);
            }
    printf("%-30s %9s %12s  %s\n", "search (1 thread)", "recall@10", "queries/s", "path");
    for (size_t c = 0; c < ncfg; c++)
        for (size_t o = 0; o < nos[c]; o++) {
            ag_search_params_t sp = tmpls[c];
            sp.oversampling = oss[o];
            ag_hnsw_stats_t st;
            ag_hnsw_stats(ix[c], &st);
            const char *path = ag_hnsw_scans_codes(ix[c], &sp) ? "scan of the codes + rescoring"
                               : st.built && !sp.exact         ? "graph walk"
                                                               : "scan of the float rows";
            char name[48];
            snprintf(name, sizeof(name), "%s os=%g", labels[c], oss[o]);
            printf("%-30s %9.4f %12.1f  %s\n", name, rec[c][o], nq / best[c][o], path);
        }
}

/* Binary quantization on the same graph (one bit a coordinate, Hamming walk, rescoring
 * ceil(oversampling * k) from the floats). */
static void sweep_binary(ag_index_t *hnsw, const float *qs, uint32_t dim, uint32_t nq,
                         const uint32_t *gt, size_t gt_stride, uint32_t *scratch)
{
    if (ag_hnsw_set_quant_kind(hnsw, AG_QUANT_BINARY, 0) != 0) {
        printf("binary: out of memory\n");
        return;
    }
    ag_hnsw_stats_t st;
    ag_hnsw_stats(hnsw, &st);
    printf("binary codes %.1f MB; Hamming kernel: %s\n", (double)st.quant_memory / 1048576.0,
           ag_bits_hamming_kernel());
    static const char *const labels[] = {"aegis binary"};
    const ag_search_params_t sp[] = {{.ef = 1}}; /* the beam: ceil(oversampling * k) */
    const size_t nos[] = {AG_ARRAY_LEN(oss)};
    ag_index_t *ix[] = {hnsw};
    sweep_os(ix, labels, sp, nos, 1, qs, dim, nq, gt, gt_stride, scratch);
    ag_hnsw_set_quant(hnsw, 0);
}

/* The path the server takes for a collection of n points with Qdrant's default
 * full_scan_threshold (10000 KB of vectors): at or below it there is no graph and every search is
 * a scan — of the float rows, or, quantized, of the codes with the best rescored. */
static void scan_rows(ag_vecstore_t *vs, uint32_t n, const float *qs, uint32_t dim, uint32_t nq,
                      const uint32_t *gt, size_t gt_stride, uint32_t *scratch)
{
    uint32_t fst = 10000u * 1024u / (dim * 4u);
    printf("server path: full_scan_threshold 10000 KB = %u points at dim %u; n=%u: %s\n", fst, dim,
           n, n <= fst ? "no graph, every search is a scan (rows below)" : "graph walk");
    if (n > fst)
        return;
    ag_hnsw_params_t p = {.m = 16, .ef_construct = 100, .full_scan_threshold = fst};
    ag_index_t *ix[4] = {NULL, NULL, NULL, NULL};
    /* AEGIS_BENCH_SKETCH=<factor>: the sketch's candidate factor for "scan int8" (default: the
     * index's own); "scan int8 nosketch" is the same scan without the sketch, the baseline */
    const char *skf = getenv("AEGIS_BENCH_SKETCH");
    for (int c = 0; c < 4; c++) {
        if (ag_index_hnsw_new(vs, AG_DIST_COSINE, &p, &ix[c]) != 0)
            goto out;
        if (((c == 1 || c == 3) && ag_hnsw_set_quant(ix[c], 0.99) != 0) ||
            (c == 2 && ag_hnsw_set_quant_kind(ix[c], AG_QUANT_BINARY, 0) != 0))
            goto out;
        if (c == 1 && skf)
            ag_hnsw_set_sketch(ix[c], atof(skf), false);
        if (c == 3)
            ag_hnsw_set_sketch(ix[c], 0, false);
        for (uint32_t s = 0; s < n; s++)
            if (ag_index_add(ix[c], s) != 0)
                goto out;
    }
    ag_hnsw_stats_t st;
    ag_hnsw_stats(ix[1], &st);
    printf("int8 scan: sign sketches %zu bytes (%zu a slot), codes %zu bytes\n", st.sketch_memory,
           st.sketch_memory ? AG_QUANT_BROW(dim) : 0, st.quant_memory - st.sketch_memory);
    static const char *const labels[] = {"aegis scan f32", "aegis scan int8", "aegis scan binary",
                                         "aegis scan int8 nosketch"};
    const ag_search_params_t sp[] = {{.ef = 0}, {.ef = 0}, {.ef = 0}, {.ef = 0}};
    const size_t nos[] = {1, AG_ARRAY_LEN(oss), AG_ARRAY_LEN(oss), AG_ARRAY_LEN(oss)};
    sweep_os(ix, labels, sp, nos, 4, qs, dim, nq, gt, gt_stride, scratch);
out:
    for (int c = 0; c < 4; c++)
        ag_index_free(ix[c]);
}

typedef struct bitmap_filter {
    const uint8_t *ok;
} bitmap_filter_t;

static bool accept_bitmap(const void *ud, uint32_t slot)
{
    return ((const bitmap_filter_t *)ud)->ok[slot] != 0;
}

static void filtered(const ag_index_t *hnsw, const ag_vecstore_t *vs, ag_distance_t dist,
                     const float *qs, uint32_t nq, uint32_t n)
{
    static const double sels[] = {0.001, 0.01, 0.1, 0.5, 1.0};
    uint8_t *ok = malloc(n);
    uint32_t *cand = malloc((size_t)n * sizeof(uint32_t));
    uint32_t *gt = malloc((size_t)nq * K * sizeof(uint32_t));
    uint32_t *got = malloc((size_t)nq * K * sizeof(uint32_t));
    if (!ok || !cand || !gt || !got)
        goto out;
    printf("\nfiltered search, k=10, 1 thread (index: planner, ef 64; exact: over the matching "
           "points)\n");
    printf("%-12s %8s | %9s %12s | %12s %12s | %8s\n", "selectivity", "matches", "recall@10",
           "index q/s", "exact(pred)", "exact(list)", "index/ex");
    for (size_t si = 0; si < AG_ARRAY_LEN(sels); si++) {
        uint32_t nc = 0;
        uint64_t cut = (uint64_t)(sels[si] * 4294967296.0);
        for (uint32_t s = 0; s < n; s++) {
            uint64_t h = (uint64_t)(s * 2654435761u ^ 0x5bd1e995u) * 0x9E3779B1u;
            ok[s] = ((h >> 8) & 0xffffffffu) < cut || sels[si] >= 1.0;
            if (ok[s])
                cand[nc++] = s;
        }
        bitmap_filter_t bf = {ok};
        ag_index_filter_t pred = {.accept = accept_bitmap, .ud = &bf};
        ag_index_filter_t list = {.accept = NULL, .candidates = cand, .n_candidates = nc};
        ag_search_params_t sp = {.ef = 64};
        /* Ground truth: exact over the matching points. */
        for (uint32_t q = 0; q < nq; q++) {
            ag_hit_t h[K];
            size_t m = 0;
            ag_index_score_candidates(vs, dist, qs + (size_t)q * DIM, K, &list, NULL, h, &m);
            for (size_t i = 0; i < K; i++)
                gt[(size_t)q * K + i] = i < m ? h[i].slot : UINT32_MAX;
        }
        uint32_t ne = sels[si] >= 0.1 ? AG_MIN(nq, (uint32_t)NQ_EXACT) : nq;
        double b_ix = INFINITY, b_pred = INFINITY, b_list = INFINITY, rec = 0;
        for (int r = 0; r < ROUNDS; r++) {
            double t0 = now();
            for (uint32_t q = 0; q < ne; q++) {
                ag_hit_t h[K];
                size_t m;
                ag_index_score_candidates(vs, dist, qs + (size_t)q * DIM, K, &pred, NULL, h, &m);
            }
            b_pred = AG_MIN(b_pred, now() - t0);
            t0 = now();
            for (uint32_t q = 0; q < ne; q++) {
                ag_hit_t h[K];
                size_t m;
                ag_index_score_candidates(vs, dist, qs + (size_t)q * DIM, K, &list, NULL, h, &m);
            }
            b_list = AG_MIN(b_list, now() - t0);
            b_ix = AG_MIN(b_ix, run_queries(hnsw, qs, DIM, nq, &pred, &sp, got));
            rec = recall_of(got, gt, nq, K);
        }
        double qi = nq / b_ix, qp = ne / b_pred, ql = ne / b_list;
        printf("%10.1f %% %8u | %9.4f %12.1f | %12.1f %12.1f | %7.2fx\n", sels[si] * 100, nc, rec,
               qi, qp, ql, qi / AG_MAX(qp, ql));
    }
out:
    free(ok);
    free(cand);
    free(gt);
    free(got);
}

/* Reads an .fvecs/.ivecs file (each record: int32 d, then d 4-byte values). */
static void *read_vecs(const char *path, uint32_t *n, uint32_t *d)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    int32_t dd;
    void *data = NULL;
    if (fread(&dd, 4, 1, f) != 1 || dd <= 0 || dd > AG_MAX_DIM)
        goto out;
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    size_t rec = 4 + 4 * (size_t)dd;
    if (size <= 0 || (size_t)size % rec)
        goto out;
    *n = (uint32_t)((size_t)size / rec);
    *d = (uint32_t)dd;
    data = malloc((size_t)*n * (size_t)dd * 4);
    for (uint32_t i = 0; data && i < *n; i++) {
        int32_t x;
        if (fread(&x, 4, 1, f) != 1 || x != dd ||
            fread((char *)data + (size_t)i * dd * 4, 4, (size_t)dd, f) != (size_t)dd) {
            free(data);
            data = NULL;
        }
    }
out:
    fclose(f);
    return data;
}

static void glove(const char *dir, uint32_t *scratch)
{
    char p[1024];
    uint32_t n, d, nq, dq, ng, dg;
    snprintf(p, sizeof(p), "%s/base.fvecs", dir);
    float *base = read_vecs(p, &n, &d);
    snprintf(p, sizeof(p), "%s/query.fvecs", dir);
    float *qs = read_vecs(p, &nq, &dq);
    snprintf(p, sizeof(p), "%s/gt.ivecs", dir);
    uint32_t *gt = read_vecs(p, &ng, &dg);
    ag_vecstore_t *vs = NULL;
    ag_index_t *hnsw = NULL, *exact = NULL;
    if (!base || !qs || !gt || d != dq || ng != nq || dg < K || nq > 1000) {
        printf("\nGloVe: cannot read %s, skipped\n", dir);
        goto out;
    }
    if (ag_vecstore_new(d, &vs) || ag_index_exact_new(vs, AG_DIST_COSINE, &exact))
        goto out;
    for (uint32_t i = 0; i < n; i++) {
        ag_vector_normalize(base + (size_t)i * d, d);
        ag_vecstore_set(vs, i, base + (size_t)i * d);
    }
    for (uint32_t i = 0; i < nq; i++)
        ag_vector_normalize(qs + (size_t)i * d, d);
    double secs = 0;
    if (!(hnsw = build(vs, AG_DIST_COSINE, n, &secs)))
        goto out;
    printf("\nGloVe-100 angular: n=%u dim=%u queries=%u (Cosine; recall vs the shipped gt.ivecs; "
           "%s)\n",
           n, d, nq, cpu_clock ? "process CPU clock" : "wall clock");
    printf("build (M=16, ef_construct=100, 1 thread): %.2f s\n", secs);
    sweep_quant(hnsw, exact, vs, qs, d, nq, gt, dg, scratch);
    sweep_binary(hnsw, qs, d, nq, gt, dg, scratch);
    scan_rows(vs, n, qs, d, nq, gt, dg, scratch);
out:
    ag_index_free(hnsw);
    ag_index_free(exact);
    ag_vecstore_free(vs);
    free(base);
    free(qs);
    free(gt);
}

/* MiniLM-384: embeddings.bin (n x 384 float32, unit rows); row i is a query when i % 10 == 9,
 * else in the base. The queries are repeated to about 1,000 so the timing is not too short. */
static void minilm(const char *dir, uint32_t *scratch)
{
    enum { D = 384 };
    char p[1024];
    snprintf(p, sizeof(p), "%s/embeddings.bin", dir);
    FILE *f = fopen(p, "rb");
    float *all = NULL, *base = NULL, *qs = NULL;
    uint32_t *gt = NULL;
    ag_vecstore_t *vs = NULL;
    ag_index_t *hnsw = NULL, *exact = NULL;
    long size = -1;
    if (f && fseek(f, 0, SEEK_END) == 0)
        size = ftell(f);
    if (!f || size <= 0 || size % (D * 4) || fseek(f, 0, SEEK_SET) != 0) {
        printf("\nMiniLM: cannot read %s, skipped\n", p);
        goto out;
    }
    uint32_t rows = (uint32_t)(size / (D * 4)), n = 0, nq1 = 0;
    all = malloc((size_t)size);
    if (!all || fread(all, 1, (size_t)size, f) != (size_t)size)
        goto out;
    uint32_t reps = 1000 / (rows / 10 + 1) + 1;
    base = malloc((size_t)size);
    qs = malloc((size_t)(rows / 10 + 1) * reps * D * sizeof(float));
    if (!base || !qs || ag_vecstore_new(D, &vs) || ag_index_exact_new(vs, AG_DIST_COSINE, &exact))
        goto out;
    for (uint32_t i = 0; i < rows; i++) {
        float *r = all + (size_t)i * D;
        ag_vector_normalize(r, D);
        if (i % 10 == 9)
            memcpy(qs + (size_t)nq1++ * D, r, D * sizeof(float));
        else
            memcpy(base + (size_t)n++ * D, r, D * sizeof(float));
    }
    for (uint32_t r = 1; r < reps; r++)
        memcpy(qs + (size_t)r * nq1 * D, qs, (size_t)nq1 * D * sizeof(float));
    uint32_t nq = AG_MIN(nq1 * reps, 1000u);
    for (uint32_t i = 0; i < n; i++)
        if (ag_vecstore_set(vs, i, base + (size_t)i * D))
            goto out;
    if (!(gt = malloc((size_t)nq * K * sizeof(uint32_t))))
        goto out;
    run_queries(exact, qs, D, nq, NULL, NULL, gt);
    double secs = 0;
    if (!(hnsw = build(vs, AG_DIST_COSINE, n, &secs)))
        goto out;
    printf("\nMiniLM-384: n=%u dim=%d queries=%u (%u held-out rows repeated; Cosine; recall vs "
           "exact; %s)\n",
           n, D, nq, nq1, cpu_clock ? "process CPU clock" : "wall clock");
    printf("build (M=16, ef_construct=100, 1 thread): %.2f s\n", secs);
    sweep_quant(hnsw, exact, vs, qs, D, nq, gt, K, scratch);
    sweep_binary(hnsw, qs, D, nq, gt, K, scratch);
    scan_rows(vs, n, qs, D, nq, gt, K, scratch);
out:
    if (f)
        fclose(f);
    ag_index_free(hnsw);
    ag_index_free(exact);
    ag_vecstore_free(vs);
    free(all);
    free(base);
    free(qs);
    free(gt);
}

int main(int argc, char **argv)
{
    uint32_t n = 100000, nq = 1000;
    if ((argc > 1 && parse_u32(argv[1], 100, AG_VECSTORE_MAX_SLOTS - 1, &n)) ||
        (argc > 2 && parse_u32(argv[2], 1, 1000, &nq)) || argc > 5) {
        fprintf(stderr, "usage: %s [n [queries [glove-dir [minilm-dir]]]]\n", argv[0]);
        return 2;
    }
    cpu_clock = bench_cpu_clock();
    int rc = 1;
    ag_vecstore_t *vs = NULL;
    ag_index_t *hnsw = NULL, *exact = NULL;
    float *centers = malloc((size_t)CLUSTERS * DIM * sizeof(float));
    float *qs = malloc((size_t)nq * DIM * sizeof(float));
    float *v = malloc(DIM * sizeof(float));
    uint32_t *gt = malloc((size_t)nq * K * sizeof(uint32_t));
    uint32_t *scratch = malloc((size_t)1000 * K * sizeof(uint32_t));
    if (!centers || !qs || !v || !gt || !scratch || ag_vecstore_new(DIM, &vs) ||
        ag_index_exact_new(vs, AG_DIST_EUCLID, &exact))
        goto out;
    for (size_t i = 0; i < (size_t)CLUSTERS * DIM; i++)
        centers[i] = (float)(unit() * 2.0 - 1.0);
    for (uint32_t s = 0; s < n + nq; s++) {
        const float *c = centers + (size_t)(next_u64() % CLUSTERS) * DIM;
        float *dst = s < n ? v : qs + (size_t)(s - n) * DIM;
        for (uint32_t j = 0; j < DIM; j++)
            dst[j] = c[j] + 0.2f * gauss();
        if (s < n && ag_vecstore_set(vs, s, v))
            goto out;
    }
    printf("bench_hnsw: clustered n=%u dim=%d Euclid, k=%d, queries=%u, single thread, %s\n", n,
           DIM, K, nq, cpu_clock ? "process CPU clock" : "wall clock");
    double secs = 0;
    if (!(hnsw = build(vs, AG_DIST_EUCLID, n, &secs)))
        goto out;
    ag_hnsw_stats_t st;
    ag_hnsw_stats(hnsw, &st);
    printf("build (M=16, ef_construct=100, 1 thread): %.2f s (%.0f points/s), graph %.1f MB, "
           "%u levels\n",
           secs, n / secs, (double)st.memory / 1048576.0, st.max_level + 1);
    run_queries(exact, qs, DIM, nq, NULL, NULL, gt);
    sweep(hnsw, exact, qs, DIM, nq, gt, K, scratch, true);
    printf(
        "reference, QUOTED from docs/BENCHMARKS.md (hnswlib 0.6.2, same machine, its own clustered "
        "100k x 128 set, not run here):\n"
        "  hnswlib build 14.7 s; ef=32 16,859 q/s at recall 0.935; ef=64 9,876 q/s at 0.967\n");
    filtered(hnsw, vs, AG_DIST_EUCLID, qs, nq, n);
    if (argc > 3 && argv[3][0])
        glove(argv[3], scratch);
    if (argc > 4)
        minilm(argv[4], scratch);
    rc = 0;
out:
    if (rc)
        fprintf(stderr, "bench_hnsw: out of memory or bad data\n");
    ag_index_free(hnsw);
    ag_index_free(exact);
    ag_vecstore_free(vs);
    free(centers);
    free(qs);
    free(v);
    free(gt);
    free(scratch);
    ag_hnsw_thread_release();
    return rc;
}
