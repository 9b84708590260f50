/* Background linking: queued points are found exactly before they are linked, and recall holds
 * once they are. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>

#include <cmocka.h>

#include "index/ag_hnsw.h"
#include "index/ag_index.h"
#include "index/ag_vecstore.h"

static uint64_t rng = 88172645463325252ull;

static float frand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (float)(rng >> 40) / (float)(1u << 24) - 0.5f;
}

enum { DIM = 24, N = 6000, K = 10 };

static bool odd(const void *ud, uint32_t slot)
{
    (void)ud;
    return slot % 2 == 1;
}

static size_t overlap(const ag_hit_t *a, size_t na, const ag_hit_t *b, size_t nb)
{
    size_t same = 0;
    for (size_t i = 0; i < na; i++)
        for (size_t j = 0; j < nb; j++)
            same += a[i].slot == b[j].slot;
    return same;
}

static void test_queue_then_link(void **state)
{
    (void)state;
    ag_vecstore_t *vs;
    assert_int_equal(ag_vecstore_new(DIM, &vs), 0);
    ag_hnsw_params_t p = {
        .m = 16, .ef_construct = 64, .full_scan_threshold = 1000, .background = true};
    ag_index_t *ix, *ex;
    assert_int_equal(ag_index_hnsw_new(vs, AG_DIST_EUCLID, &p, &ix), 0);
    assert_int_equal(ag_index_exact_new(vs, AG_DIST_EUCLID, &ex), 0);
    float v[DIM];
    for (uint32_t s = 0; s < N; s++) {
        for (int d = 0; d < DIM; d++)
            v[d] = frand();
        assert_int_equal(ag_vecstore_set(vs, s, v), 0);
        assert_int_equal(ag_index_add(ix, s), 0);
        assert_int_equal(ag_index_add(ex, s), 0);
    }
    /* Past the threshold everything is queued, nothing linked yet. */
    assert_int_equal(ag_hnsw_pending(ix), N);
    /* A removed queued point leaves the queue. */
    assert_int_equal(ag_index_remove(ix, 5), 0);
    ag_vecstore_clear(vs, 5);
    assert_int_equal(ag_hnsw_pending(ix), N - 1);

    ag_search_params_t sp = {.ef = 64};
    ag_index_filter_t flt = {.accept = odd};
    ag_hit_t a[K], b[K];
    size_t na, nb;
    for (int q = 0; q < 20; q++) {
        for (int d = 0; d < DIM; d++)
            v[d] = frand();
        assert_int_equal(ag_index_search(ix, v, K, NULL, &sp, a, &na), 0);
        assert_int_equal(ag_index_search(ex, v, K, NULL, &sp, b, &nb), 0);
        assert_int_equal(na, nb);
        assert_int_equal(overlap(a, na, b, nb), K); /* queued points are scored exactly */
    }
    /* Link half, then search: graph + queue together. */
    assert_int_equal(ag_hnsw_link_pending(ix, N / 2), N / 2);
    assert_int_equal(ag_hnsw_pending(ix), N - 1 - N / 2);
    size_t hits = 0, total = 0;
    for (int q = 0; q < 50; q++) {
        for (int d = 0; d < DIM; d++)
            v[d] = frand();
        assert_int_equal(ag_index_search(ix, v, K, &flt, &sp, a, &na), 0);
        assert_int_equal(ag_index_search(ex, v, K, &flt, &sp, b, &nb), 0);
        for (size_t i = 0; i < na; i++)
            assert_true(a[i].slot % 2 == 1 && a[i].slot != 5);
        hits += overlap(a, na, b, nb);
        total += nb;
    }
    assert_true((double)hits / (double)total >= 0.95);
    /* Link the rest; nothing stays queued and recall holds. */
    while (ag_hnsw_link_pending(ix, 1000) > 0) {
    }
    assert_int_equal(ag_hnsw_pending(ix), 0);
    hits = total = 0;
    for (int q = 0; q < 50; q++) {
        for (int d = 0; d < DIM; d++)
            v[d] = frand();
        assert_int_equal(ag_index_search(ix, v, K, NULL, &sp, a, &na), 0);
        assert_int_equal(ag_index_search(ex, v, K, NULL, &sp, b, &nb), 0);
        hits += overlap(a, na, b, nb);
        total += nb;
    }
    assert_true((double)hits / (double)total >= 0.95);
    /* Every linked point is reachable through the level-0 links (the removed one is not in). */
    assert_int_equal(ag_hnsw_reachable(ix), N - 1);
    assert_int_equal(ag_hnsw_reachable(ex), 0); /* not a graph */
    ag_index_free(ix);
    ag_index_free(ex);
    ag_vecstore_free(vs);
    ag_hnsw_thread_release();
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_queue_then_link)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
