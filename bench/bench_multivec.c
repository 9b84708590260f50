/*
 * bench_multivec — exact MaxSim top-10 over multivectors (index/ag_multivec.h), beside a baseline
 * measured in the same run: the exact single-vector index (index/ag_index.h, one thread) scanning
 * the same rows as plain vectors, once per query row. MaxSim reads the same number of rows and
 * does the same multiply-adds, so the ratio shows what the per-point layout costs.
 *
 *   bench_multivec [points [rows [dim]]]    defaults: 2000 points x 32 rows x 128, Dot;
 *                                           20 queries of 32 rows
 *
 * Best and worst of 3 interleaved rounds, milliseconds per query.
 */
#include "ag_base.h"

#include <errno.h>
#include <stdio.h>

#include "ag_clock.h"
#include "index/ag_index.h"
#include "index/ag_multivec.h"

#define K 10
#define NQ 20
#define QROWS 32
#define ROUNDS 3

static uint64_t rng = 0x9E3779B97F4A7C15ull;

static float unit(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (float)((double)(rng >> 11) / (double)(UINT64_C(1) << 53)) * 2.0f - 1.0f;
}

static int parse_u32(const char *s, uint32_t lo, uint32_t hi, uint32_t *out)
{
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (errno || *end || v < lo || v > hi)
        return 1;
    *out = (uint32_t)v;
    return 0;
}

int main(int argc, char **argv)
{
    uint32_t n = 2000, rows = 32, dim = 128;
    if ((argc > 1 && parse_u32(argv[1], 1, 1u << 24, &n)) ||
        (argc > 2 && parse_u32(argv[2], 1, AG_MV_MAX_ROWS, &rows)) ||
        (argc > 3 && parse_u32(argv[3], 1, AG_MAX_DIM, &dim)) || argc > 4) {
        fprintf(stderr, "usage: %s [points [rows [dim]]]\n", argv[0]);
        return 2;
    }
    int rc = 1;
    ag_multivec_t *mv = NULL;
    ag_vecstore_t *vs = NULL;
    ag_index_t *ix = NULL;
    float *block = malloc((size_t)rows * dim * sizeof(float));
    float *q = malloc((size_t)NQ * QROWS * dim * sizeof(float));
    if (!block || !q || ag_multivec_new(dim, &mv) || ag_vecstore_new(dim, &vs) ||
        ag_index_exact_new(vs, AG_DIST_DOT, &ix)) {
        fprintf(stderr, "out of memory\n");
        goto out;
    }
    for (uint32_t p = 0; p < n; p++) {
        for (size_t i = 0; i < (size_t)rows * dim; i++)
            block[i] = unit();
        if (ag_multivec_set(mv, p, block, rows) != 0)
            goto oom;
        for (uint32_t r = 0; r < rows; r++)
            if (ag_vecstore_set(vs, p * rows + r, block + (size_t)r * dim) != 0 ||
                ag_index_add(ix, p * rows + r) != 0)
                goto oom;
    }
    for (size_t i = 0; i < (size_t)NQ * QROWS * dim; i++)
        q[i] = unit();
    printf("bench_multivec: %u points x %u rows x %u dims (Dot), %d queries of %d rows, top %d\n",
           n, rows, dim, NQ, QROWS, K);
    double best[2] = {1e30, 1e30}, worst[2] = {0, 0};
    ag_hit_t hits[K];
    size_t got;
    for (int round = 0; round < ROUNDS; round++) {
        for (int which = 0; which < 2; which++) {
            double t0 = ag_now_mono();
            for (int i = 0; i < NQ; i++) {
                const float *qi = q + (size_t)i * QROWS * dim;
                if (which == 0) {
                    for (int r = 0; r < QROWS; r++)
                        if (ag_index_search(ix, qi + (size_t)r * dim, K, NULL, NULL, hits, &got))
                            goto oom;
                } else if (ag_multivec_search(mv, AG_DIST_DOT, qi, QROWS, K, NULL, NULL, hits,
                                              &got)) {
                    goto oom;
                }
            }
            double ms = (ag_now_mono() - t0) * 1000.0 / NQ;
            best[which] = ms < best[which] ? ms : best[which];
            worst[which] = ms > worst[which] ? ms : worst[which];
        }
    }
    printf("  baseline: exact index, one scan per query row  %9.2f ms/query (worst %.2f)\n",
           best[0], worst[0]);
    printf("  MaxSim exact (ag_multivec_search)              %9.2f ms/query (worst %.2f)\n",
           best[1], worst[1]);
    rc = 0;
    goto out;
oom:
    fprintf(stderr, "out of memory or search failure\n");
out:
    ag_index_free(ix);
    ag_vecstore_free(vs);
    ag_multivec_free(mv);
    free(block);
    free(q);
    return rc;
}
