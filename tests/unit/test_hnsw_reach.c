/* HNSW graph reachability on clustered data (docs/ARCHITECTURE.md "Graph reachability"): every
 * stored vector sent back as a query must find itself. The set is bench/bench_graph_reach's
 * kind at CI size — a few tight clusters of structureless (uniform) noise in 128 dimensions,
 * thousands of points per cluster — where a graph built without the in-link guard leaves some
 * nodes with no path from the entry point and misses ~0.3 % of the self-searches. Seeded and
 * deterministic. AEGIS_TEST_REACH_N scales the point count (default 20000). */
#include "ag_base.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <cmocka.h>

#include "index/ag_hnsw.h"
#include "index/ag_index.h"
#include "index/ag_vecstore.h"

#define DIM 128
#define CLUSTERS 4
#define MAX_CLUSTERS 16

/* Self-searches: every 2nd point; every 8th under the sanitizers (the builds stay whole). */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define ASK_STRIDE 8
#else
#define ASK_STRIDE 2
#endif

static uint64_t rs;

static float frand(void) /* [0, 1), the bench's generator */
{
    rs ^= rs << 13;
    rs ^= rs >> 7;
    rs ^= rs << 17;
    return (float)(rs >> 40) / (float)(1u << 24);
}

static uint32_t points(void)
{
    const char *e = getenv("AEGIS_TEST_REACH_N");
    unsigned long n = e ? strtoul(e, NULL, 10) : 20000;
    return n >= 1000 && n <= 2000000 ? (uint32_t)n : 20000;
}

/* n rows around cl (<= MAX_CLUSTERS) centres in [-1, 1]^DIM, each coordinate off by a sum of
 * three uniforms (spread 0.2): the clusters are far apart and have no inner structure. The same
 * rows as bench/bench_graph_reach with REACH_CL=cl. */
static void fill(ag_vecstore_t *vs, uint32_t n, uint32_t cl)
{
    rs = 42;
    static float cen[MAX_CLUSTERS * DIM];
    float v[DIM];
    for (size_t i = 0; i < (size_t)cl * DIM; i++)
        cen[i] = frand() * 2 - 1;
    for (uint32_t i = 0; i < n; i++) {
        const float *c = cen + (size_t)(frand() * (float)cl) * DIM;
        for (uint32_t d = 0; d < DIM; d++)
            v[d] = c[d] + (frand() + frand() + frand() - 1.5f) * 0.2f;
        assert_int_equal(ag_vecstore_set(vs, i, v), 0);
    }
}

/* How many of the stored vectors 0, ASK_STRIDE, 2 * ASK_STRIDE, ... below n come back first when
 * searched for at ef; *asked: how many were searched. */
static uint32_t self_found(const ag_index_t *ix, const ag_vecstore_t *vs, uint32_t n, uint32_t ef,
                           uint32_t *asked)
{
    ag_search_params_t sp = {.ef = ef};
    uint32_t found = 0;
    *asked = 0;
    for (uint32_t s = 0; s < n; s += ASK_STRIDE, ++*asked) {
        ag_hit_t hit[1];
        size_t nh = 0;
        assert_int_equal(ag_index_search(ix, ag_vecstore_get(vs, s), 1, NULL, &sp, hit, &nh), 0);
        found += nh == 1 && hit[0].slot == s;
    }
    return found;
}

/* background: the points are queued and the linker links them (newest first), as the server
 * does when ingestion runs ahead of linking. */
static void reach_for(bool background)
{
    uint32_t n = points();
    ag_vecstore_t *vs;
    assert_int_equal(ag_vecstore_new(DIM, &vs), 0);
    fill(vs, n, CLUSTERS);
    ag_hnsw_params_t p = {.m = 16, .ef_construct = 100, .background = background};
    ag_index_t *ix;
    assert_int_equal(ag_index_hnsw_new(vs, AG_DIST_EUCLID, &p, &ix), 0);
    for (uint32_t s = 0; s < n; s++)
        assert_int_equal(ag_index_add(ix, s), 0);
    if (background)
        assert_int_equal(ag_hnsw_link_pending(ix, UINT32_MAX), n);
    /* Every node has a level-0 path from the entry point (the old build left ~0.2 % without). */
    uint32_t reach = ag_hnsw_reachable(ix);
    uint32_t asked;
    uint32_t found = self_found(ix, vs, n, 256, &asked);
    print_message("  %s n=%u: level-0 links reach %u, self-search (ef 256) finds %u of %u\n",
                  background ? "background" : "at once", n, reach, found, asked);
    assert_int_equal(reach, n);
    /* >= 99.9 % find themselves (measured 99.95-99.99 %; without the guard 99.7-99.8 %). */
    assert_true((uint64_t)found * 1000 >= (uint64_t)asked * 999);
    ag_index_free(ix);
    ag_vecstore_free(vs);
}

/* A build with one bad cluster (bench_graph_reach 40000 128 256 with REACH_CL=16 REACH_SEED=12):
 * without the reachability probe half of cluster 1 is linked only from its outlying points and
 * 1.65 % of the self-searches at ef 256 miss (98.35 % found); with it every one is found. */
static void test_reach_bad_cluster(void **state)
{
    AG_UNUSED(state);
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
    /* A 40k build takes minutes under the sanitizers; the two builds above run the probe there. */
    skip();
#endif
    const uint32_t n = 40000;
    ag_vecstore_t *vs;
    assert_int_equal(ag_vecstore_new(DIM, &vs), 0);
    fill(vs, n, 16);
    ag_hnsw_params_t p = {.m = 16, .ef_construct = 100, .seed = 12};
    ag_index_t *ix;
    assert_int_equal(ag_index_hnsw_new(vs, AG_DIST_EUCLID, &p, &ix), 0);
    for (uint32_t s = 0; s < n; s++)
        assert_int_equal(ag_index_add(ix, s), 0);
    uint32_t asked;
    uint32_t found = self_found(ix, vs, n, 256, &asked);
    print_message("  seed 12, 16 clusters, n=%u: self-search (ef 256) finds %u of %u\n", n, found,
                  asked);
    assert_true((uint64_t)found * 1000 >= (uint64_t)asked * 999);
    ag_index_free(ix);
    ag_vecstore_free(vs);
}

static void test_reach_at_once(void **state)
{
    AG_UNUSED(state);
    reach_for(false);
}

static void test_reach_background(void **state)
{
    AG_UNUSED(state);
    reach_for(true);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reach_at_once),
        cmocka_unit_test(test_reach_background),
        cmocka_unit_test(test_reach_bad_cluster),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    ag_hnsw_thread_release();
    return rc;
}
