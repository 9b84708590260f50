/*
 * bench_exact — exact top-10 search over seeded clustered data, beside a baseline measured in
 * the same run: a plain scalar loop (vectorization disabled for that one function).
 *
 *   bench_exact [n [dim [distance]]]     defaults: 100000 128 Euclid; 1,000 queries
 *
 * Rows: the scalar baseline (single thread, over the first 200 queries to keep the run short),
 * the SIMD exact index on one thread (pool not started), and the same with the worker pool;
 * best and worst of 3 interleaved rounds.
 */
#include "ag_base.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>

#include "ag_clock.h"
#include "ag_pool.h"
#include "index/ag_index.h"

#define BENCH_RNG_SEED 0x2545F4914F6CDD1Dull
#include "bench_rand.h"

#define K 10
#define NQ 1000
#define NQ_BASELINE 200
#define CLUSTERS 100
#define ROUNDS 3

/* The baseline kernel: a straightforward loop the compiler must not vectorize. */
#if defined(__clang__)
#define SCALAR_FN __attribute__((noinline))
#define SCALAR_LOOP _Pragma("clang loop vectorize(disable) interleave(disable)")
#else
#define SCALAR_FN __attribute__((noinline, optimize("no-tree-vectorize")))
#define SCALAR_LOOP
#endif

SCALAR_FN static float scalar_score(ag_distance_t d, const float *a, const float *b, uint32_t n)
{
    float acc = 0.0f;
    switch (d) {
    case AG_DIST_EUCLID:
        SCALAR_LOOP
        for (uint32_t i = 0; i < n; i++)
            acc += (a[i] - b[i]) * (a[i] - b[i]);
        return sqrtf(acc);
    case AG_DIST_MANHATTAN:
        SCALAR_LOOP
        for (uint32_t i = 0; i < n; i++)
            acc += fabsf(a[i] - b[i]);
        return acc;
    case AG_DIST_COSINE:
    case AG_DIST_DOT:
        break;
    }
    SCALAR_LOOP
    for (uint32_t i = 0; i < n; i++)
        acc += a[i] * b[i];
    return acc;
}

/* Baseline search: every slot through the scalar kernel, top-k by insertion into a sorted list. */
static size_t scalar_search(const ag_vecstore_t *vs, ag_distance_t d, const float *q, ag_hit_t *out)
{
    bool higher = ag_distance_higher_is_better(d);
    uint32_t cap = ag_vecstore_capacity(vs), dim = ag_vecstore_dim(vs);
    size_t n = 0;
    for (uint32_t s = 0; s < cap; s++) {
        const float *row = ag_vecstore_get(vs, s);
        if (!row)
            continue;
        float sc = scalar_score(d, q, row, dim);
        float key = higher ? sc : -sc;
        if (n == K && !(key > (higher ? out[K - 1].score : -out[K - 1].score)))
            continue;
        size_t i = n < K ? n++ : K - 1;
        while (i > 0 && key > (higher ? out[i - 1].score : -out[i - 1].score)) {
            out[i] = out[i - 1];
            i--;
        }
        out[i] = (ag_hit_t){s, sc};
    }
    return n;
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

typedef struct row {
    const char *name;
    unsigned queries;
    double best; /* seconds for all queries, best round */
    double worst;
} row_t;

static void row_time(row_t *r, double seconds)
{
    r->best = AG_MIN(r->best, seconds);
    r->worst = AG_MAX(r->worst, seconds);
}

static void print_row(const row_t *r, const row_t *base)
{
    double ms = r->best * 1e3 / r->queries;
    double qps = r->queries / r->best;
    double base_ms = base->best * 1e3 / base->queries;
    printf("%-34s %8u %10.3f %10.1f %8.2fx %12.3f\n", r->name, r->queries, ms, qps, base_ms / ms,
           r->worst * 1e3 / r->queries);
}

int main(int argc, char **argv)
{
    uint32_t n = 100000, dim = 128;
    ag_distance_t dist = AG_DIST_EUCLID;
    if ((argc > 1 && parse_u32(argv[1], 1, AG_VECSTORE_MAX_SLOTS - 1, &n)) ||
        (argc > 2 && parse_u32(argv[2], 1, AG_MAX_DIM, &dim)) ||
        (argc > 3 && ag_distance_parse(argv[3], &dist)) || argc > 4) {
        fprintf(stderr, "usage: %s [n [dim [Cosine|Dot|Euclid|Manhattan]]]\n", argv[0]);
        return 2;
    }

    int rc = 1;
    ag_vecstore_t *vs = NULL;
    ag_index_t *ix = NULL;
    float *centers = malloc((size_t)CLUSTERS * dim * sizeof(float));
    float *queries = malloc((size_t)NQ * dim * sizeof(float));
    float *v = malloc((size_t)dim * sizeof(float));
    ag_hit_t *base_hits = malloc((size_t)NQ_BASELINE * K * sizeof(ag_hit_t));
    if (!centers || !queries || !v || !base_hits || ag_vecstore_new(dim, &vs) ||
        ag_index_exact_new(vs, dist, &ix)) {
        fprintf(stderr, "out of memory\n");
        goto out;
    }

    /* Seeded clustered data: points scattered around CLUSTERS random centres. */
    for (size_t i = 0; i < (size_t)CLUSTERS * dim; i++)
        centers[i] = (float)(unit() * 2.0 - 1.0);
    for (uint32_t s = 0; s < n + NQ; s++) {
        const float *c = centers + (size_t)(next_u64() % CLUSTERS) * dim;
        float *dst = s < n ? v : queries + (size_t)(s - n) * dim;
        for (uint32_t j = 0; j < dim; j++)
            dst[j] = c[j] + 0.2f * gauss();
        if (dist == AG_DIST_COSINE)
            ag_vector_normalize(dst, dim);
        if (s < n && ag_vecstore_set(vs, s, v)) {
            fprintf(stderr, "out of memory\n");
            goto out;
        }
    }
    printf("bench_exact: n=%u dim=%u distance=%s k=%d queries=%d (baseline %d)\n", n, dim,
           ag_distance_name(dist), K, NQ, NQ_BASELINE);
#if defined(__x86_64__) && defined(__GNUC__)
    __builtin_cpu_init();
    printf("kernel clone: %s\n", __builtin_cpu_supports("avx512f") ? "avx512f"
                                 : __builtin_cpu_supports("avx2")  ? "avx2"
                                                                   : "default");
#endif

    /* Rounds of: 1. the scalar baseline, 2. the SIMD exact index on one thread (pool not
     * started), 3. the same with the pool. Each row keeps its best round, so a burst of load
     * from elsewhere on the machine hurts every row alike rather than whichever ran during it.
     * Recall is against the baseline's answers (float sums in another order may swap
     * near-ties, so it need not be exactly 1). */
    row_t rows[3] = {{"scalar loop (no SIMD), 1 thread", NQ_BASELINE, INFINITY, 0},
                     {"exact index (SIMD), 1 thread", NQ, INFINITY, 0},
                     {"exact index (SIMD), pool", NQ, INFINITY, 0}};
    double recall[3] = {1, 0, 0};
    char pool_name[64] = "";
    for (int round = 0; round < ROUNDS; round++) {
        double t0 = ag_now_mono();
        for (unsigned q = 0; q < NQ_BASELINE; q++)
            scalar_search(vs, dist, queries + (size_t)q * dim, base_hits + (size_t)q * K);
        row_time(&rows[0], ag_now_mono() - t0);

        for (int r = 1; r < 3; r++) {
            if (r == 2) {
                if (ag_pool_init(0)) {
                    fprintf(stderr, "cannot start the pool\n");
                    goto out;
                }
                snprintf(pool_name, sizeof(pool_name), "exact index (SIMD), pool of %u",
                         ag_pool_size());
                rows[2].name = pool_name;
            }
            size_t found = 0;
            t0 = ag_now_mono();
            for (unsigned q = 0; q < NQ; q++) {
                ag_hit_t hits[K];
                size_t nh;
                if (ag_index_search(ix, queries + (size_t)q * dim, K, NULL, NULL, hits, &nh)) {
                    fprintf(stderr, "search failed\n");
                    goto out;
                }
                if (q < NQ_BASELINE) {
                    const ag_hit_t *b = base_hits + (size_t)q * K;
                    for (size_t i = 0; i < nh; i++)
                        for (size_t j = 0; j < K; j++)
                            found += hits[i].slot == b[j].slot;
                }
            }
            row_time(&rows[r], ag_now_mono() - t0);
            recall[r] = (double)found / ((double)NQ_BASELINE * AG_MIN(K, n));
            if (r == 2)
                ag_pool_shutdown();
        }
    }

    printf("best of %d rounds%18s %8s %10s %10s %9s %12s\n", ROUNDS, "", "queries", "ms/query",
           "q/s", "speedup", "worst ms/q");
    for (int r = 0; r < 3; r++)
        print_row(&rows[r], &rows[0]);
    printf("recall@%d vs baseline: 1 thread %.4f, pool %.4f\n", K, recall[1], recall[2]);
    rc = 0;
out:
    ag_pool_shutdown();
    ag_index_free(ix);
    ag_vecstore_free(vs);
    free(centers);
    free(queries);
    free(v);
    free(base_hits);
    return rc;
}
