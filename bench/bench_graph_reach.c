/*
 * bench_graph_reach — how many stored points an HNSW graph can reach: every (or every s-th)
 * stored vector is sent back as a query and counted as found when its own slot comes back first.
 * The same seeded clustered data (64 clusters, like bench/lib.mjs clustered) is built three ways
 * in one run, each timed (docs/BENCHMARKS-HISTORY.md "1M: recall 0.95, the
 * graph against hnswlib, start-up", unreachable points):
 *   seq    add() links at once, in slot order (the foreground path)
 *   bg     background: everything queued first, then ag_hnsw_link_pending drains the queue
 *   batch  background as the server runs it: upserts of 256 points queued, the linker links a
 *          share of the queue between them, the rest at the end
 *
 *   bench_graph_reach [n [dim [ef [stride]]]]   defaults: 100000 128 512 10
 *
 * Each row also gives how many nodes the level-0 links reach at all from the entry point
 * (ag_hnsw_reachable): a point missed although reachable is a navigation failure, not a hole.
 * Environment: AEGIS_BENCH_CLOCK=cpu times with the process CPU clock (single-threaded build);
 * REACH_MODES=1|2 runs only the first modes; REACH_SEED=s seeds the level generator (0 = the
 * index default); REACH_CLUSTERS=1 prints the misses by cluster and how many were answered from
 * the point's own cluster; REACH_DUMP=1 prints each miss and its answer; REACH_CL=c uses c
 * clusters (1..64); REACH_M / REACH_EFC set M and ef_construct (16 / 100); REACH_PROBE=0 builds
 * without the reachability probe (ag_hnsw_params_t.no_probe), for a baseline in the same run;
 * REACH_RECALL=q also draws q fresh queries like the points and prints recall@10 at ef 64 / 128 /
 * 256 against their exact neighbours (brute force, before the builds). bench/reach_hnswlib.cpp
 * runs the same self-search on hnswlib (docs/BENCHMARKS.md "Graph reachability: the fix").
 */
#include "ag_base.h"

#include <math.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "ag_clock.h"
#include "bench_clock.h"
#include "index/ag_hnsw.h"
#include "index/ag_index.h"
#include "index/ag_vecstore.h"

static uint64_t rs;

/* An unsigned number from text, or def when the text is missing. */
static uint64_t num(const char *txt, uint64_t def)
{
    return txt ? strtoull(txt, NULL, 10) : def;
}
static uint8_t *clus; /* n: each point's cluster */
static float *cen;    /* n_cl * dim: the centres (owned, freed at exit) */
static uint32_t n_cl; /* clusters (REACH_CL, 1..64; default 64) */

static float frand(void) /* [0, 1) */
{
    rs ^= rs << 13;
    rs ^= rs >> 7;
    rs ^= rs << 17;
    return (float)(rs >> 40) / (float)(1u << 24);
}

static bool cpu_clock; /* AEGIS_BENCH_CLOCK=cpu */

static double now_s(void)
{
    return bench_seconds(CLOCK_PROCESS_CPUTIME_ID);
}

/* Fills vs with n clustered rows; owns nothing. */
static void fill(ag_vecstore_t *vs, uint32_t n, uint32_t dim)
{
    rs = 42;
    const uint32_t CL = n_cl;
    cen = malloc((size_t)CL * dim * sizeof(float)); /* freed at exit */
    float *v = malloc(dim * sizeof(float));         /* freed below */
    if (!cen || !v)
        exit(1);
    for (size_t i = 0; i < (size_t)CL * dim; i++)
        cen[i] = frand() * 2 - 1;
    for (uint32_t i = 0; i < n; i++) {
        size_t ci = (size_t)(frand() * CL);
        clus[i] = (uint8_t)ci;
        const float *c = cen + ci * dim;
        for (uint32_t d = 0; d < dim; d++)
            v[d] = c[d] + (frand() + frand() + frand() - 1.5f) * 0.2f;
        if (ag_vecstore_set(vs, i, v) != 0)
            exit(1);
    }
    free(v);
}

/* REACH_RECALL=q: q fresh queries drawn like the points (the generator goes on where fill
 * stopped), into *qs (owned by the caller), and their exact 10 nearest points by squared L2 into
 * *gt (owned by the caller, q * 10). */
static void queries(const ag_vecstore_t *vs, uint32_t n, uint32_t dim, uint32_t q, float **qs,
                    uint32_t **gt)
{
    *qs = malloc((size_t)q * dim * sizeof(float));
    *gt = malloc((size_t)q * 10 * sizeof(uint32_t));
    if (!*qs || !*gt)
        exit(1);
    for (uint32_t i = 0; i < q; i++) {
        const float *c = cen + (size_t)(frand() * n_cl) * dim;
        for (uint32_t d = 0; d < dim; d++)
            (*qs)[(size_t)i * dim + d] = c[d] + (frand() + frand() + frand() - 1.5f) * 0.2f;
    }
    for (uint32_t i = 0; i < q; i++) {
        const float *x = *qs + (size_t)i * dim;
        float bd[10];
        uint32_t *bi = *gt + (size_t)i * 10;
        for (int k = 0; k < 10; k++)
            bd[k] = INFINITY, bi[k] = UINT32_MAX;
        for (uint32_t s = 0; s < n; s++) {
            const float *r = ag_vecstore_get(vs, s);
            float d2 = 0;
            for (uint32_t d = 0; d < dim; d++)
                d2 += (x[d] - r[d]) * (x[d] - r[d]);
            if (d2 >= bd[9])
                continue;
            int k = 9;
            for (; k > 0 && bd[k - 1] > d2; k--)
                bd[k] = bd[k - 1], bi[k] = bi[k - 1];
            bd[k] = d2, bi[k] = s;
        }
    }
}

/* recall@10 of ix at ef over the q queries. */
static double recall10(const ag_index_t *ix, const float *qs, const uint32_t *gt, uint32_t dim,
                       uint32_t q, uint32_t ef)
{
    ag_search_params_t sp = {.ef = ef};
    uint32_t hit = 0;
    for (uint32_t i = 0; i < q; i++) {
        ag_hit_t h[10];
        size_t nh = 0;
        if (ag_index_search(ix, qs + (size_t)i * dim, 10, NULL, &sp, h, &nh) != 0)
            exit(1);
        for (size_t a = 0; a < nh; a++)
            for (int b = 0; b < 10; b++)
                hit += h[a].slot == gt[(size_t)i * 10 + b];
    }
    return (double)hit / (10.0 * q);
}

static uint32_t reach(const ag_index_t *ix, const ag_vecstore_t *vs, uint32_t n, uint32_t ef,
                      uint32_t stride, uint32_t *asked)
{
    ag_search_params_t sp = {.ef = ef};
    uint32_t found = 0, q = 0, miss[64] = {0}, same = 0;
    for (uint32_t s = 0; s < n; s += stride) {
        ag_hit_t hit[1];
        size_t nh = 0;
        if (ag_index_search(ix, ag_vecstore_get(vs, s), 1, NULL, &sp, hit, &nh) != 0)
            exit(1);
        q++;
        bool ok = nh == 1 && hit[0].slot == s;
        found += ok;
        miss[clus[s]] += !ok;
        same += !ok && nh == 1 && clus[hit[0].slot] == clus[s];
        if (!ok && getenv("REACH_DUMP"))
            printf("  miss %u (cluster %u) -> %u\n", s, clus[s], nh ? hit[0].slot : UINT32_MAX);
    }
    if (getenv("REACH_CLUSTERS")) {
        printf("  misses by cluster:");
        for (int c = 0; c < 64; c++)
            if (miss[c])
                printf(" %d:%u", c, miss[c]);
        printf("\n  misses answered from the point's own cluster: %u\n", same);
    }
    *asked = q;
    return found;
}

int main(int argc, char **argv)
{
    uint32_t n = (uint32_t)num(argc > 1 ? argv[1] : NULL, 100000);
    uint32_t dim = (uint32_t)num(argc > 2 ? argv[2] : NULL, 128);
    uint32_t ef = (uint32_t)num(argc > 3 ? argv[3] : NULL, 512);
    uint32_t stride = (uint32_t)num(argc > 4 ? argv[4] : NULL, 10);
    if (n == 0 || dim == 0 || dim > 65536 || ef == 0 || stride == 0) {
        fprintf(stderr, "usage: %s [n [dim [ef [stride]]]]\n", argv[0]);
        return 2;
    }
    uint32_t modes_n = (uint32_t)AG_MIN(num(getenv("REACH_MODES"), 3), 3);
    uint64_t seed = num(getenv("REACH_SEED"), 0);
    n_cl = (uint32_t)AG_MAX(AG_MIN(num(getenv("REACH_CL"), 64), 64), 1);
    uint32_t m = (uint32_t)num(getenv("REACH_M"), 16);
    uint32_t efc = (uint32_t)num(getenv("REACH_EFC"), 100);
    bool no_probe = num(getenv("REACH_PROBE"), 1) == 0;
    cpu_clock = bench_cpu_clock();
    ag_vecstore_t *vs;
    if (ag_vecstore_new(dim, &vs) != 0)
        return 1;
    if (!(clus = malloc(n))) /* freed at exit */
        return 1;
    fill(vs, n, dim);
    uint32_t nq = (uint32_t)num(getenv("REACH_RECALL"), 0);
    float *qs = NULL;    /* nq * dim, freed at exit */
    uint32_t *gt = NULL; /* nq * 10, freed at exit */
    if (nq > 0)
        queries(vs, n, dim, nq, &qs, &gt);
    printf("n=%u dim=%u M=%u efc=%u, self-search ef=%u every %u-th point, probe %s\n", n, dim, m,
           efc, ef, stride, no_probe ? "off" : "on");
    const char *modes[] = {"seq", "bg", "batch"};
    for (uint32_t mode = 0; mode < modes_n; mode++) {
        ag_hnsw_params_t p = {.m = m,
                              .ef_construct = efc,
                              .background = mode > 0,
                              .seed = seed,
                              .no_probe = no_probe};
        ag_index_t *ix;
        if (ag_index_hnsw_new(vs, AG_DIST_EUCLID, &p, &ix) != 0)
            return 1;
        double t0 = now_s();
        if (mode < 2) {
            for (uint32_t s = 0; s < n; s++)
                if (ag_index_add(ix, s) != 0)
                    return 1;
            ag_hnsw_link_pending(ix, UINT32_MAX);
        } else {
            for (uint32_t s = 0; s < n; s += 256) {
                for (uint32_t i = s; i < n && i < s + 256; i++)
                    if (ag_index_add(ix, i) != 0)
                        return 1;
                ag_hnsw_link_pending(ix, 128); /* the linker falls behind the upserts */
            }
            ag_hnsw_link_pending(ix, UINT32_MAX);
        }
        double build = now_s() - t0;
        uint32_t asked;
        uint32_t found = reach(ix, vs, n, ef, stride, &asked);
        printf("%-6s build %.2f s  found %u / %u  (%.3f %% unreachable)  level-0 links reach %u of "
               "%u\n",
               modes[mode], build, found, asked, 100.0 * (asked - found) / asked,
               ag_hnsw_reachable(ix), n);
        if (nq > 0)
            printf("%-6s recall@10 over %u fresh queries: ef 64 %.4f  ef 128 %.4f  ef 256 %.4f\n",
                   modes[mode], nq, recall10(ix, qs, gt, dim, nq, 64),
                   recall10(ix, qs, gt, dim, nq, 128), recall10(ix, qs, gt, dim, nq, 256));
        fflush(stdout);
        ag_index_free(ix);
    }
    ag_vecstore_free(vs);
    free(qs);
    free(gt);
    free(cen);
    return 0;
}
