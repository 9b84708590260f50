/* base/ag_metrics: counters summed over stripes, the status and latency families of a route,
 * extremes, and many threads counting at once (this suite also runs under ThreadSanitizer). */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "ag_metrics.h"

enum { THREADS = 6, PER_THREAD = 20000 };

static void test_scalar(void **state)
{
    (void)state;
    uint64_t before = ag_metrics_get(AG_M_SNAPSHOTS);
    ag_metrics_add(AG_M_SNAPSHOTS, 1);
    ag_metrics_add(AG_M_SNAPSHOTS, 2);
    ag_metrics_add(AG_M_SNAPSHOTS, 0);
    assert_int_equal(ag_metrics_get(AG_M_SNAPSHOTS), before + 3);
    ag_metrics_add(AG_M_COUNT, 5); /* out of range: ignored */
    assert_int_equal(ag_metrics_get(AG_M_COUNT), 0);
}

static void test_route(void **state)
{
    (void)state;
    unsigned slot = 7;
    ag_metrics_request(slot, 200, 0.0002); /* first bucket (<= 0.5 ms) */
    ag_metrics_request(slot, 200, 0.003);  /* <= 5 ms */
    ag_metrics_request(slot, 404, 2.0);    /* <= 5 s */
    ag_metrics_request(slot, 418, 99.0);   /* +Inf, an uncounted status -> "other" */
    ag_metrics_decision(slot, true);
    ag_metrics_decision(slot, false);
    ag_metrics_decision(slot, false);
    ag_metrics_route_t r;
    ag_metrics_route(slot, &r);
    assert_int_equal(r.count, 4);
    assert_int_equal(r.status[0], 2); /* 200 is the first code counted */
    int i404 = -1;
    for (int i = 0; i < AG_METRICS_STATUSES; i++)
        if (ag_metrics_status_codes[i] == 404)
            i404 = i;
    assert_true(i404 >= 0);
    assert_int_equal(r.status[i404], 1);
    assert_int_equal(r.status[AG_METRICS_STATUSES - 1], 1);
    assert_int_equal(r.buckets[0], 1);
    assert_int_equal(r.buckets[AG_METRICS_BUCKETS], 1);
    uint64_t total = 0;
    for (int b = 0; b <= AG_METRICS_BUCKETS; b++)
        total += r.buckets[b];
    assert_int_equal(total, 4);
    assert_true(r.min_s > 0.0001 && r.min_s < 0.0003);
    assert_true(r.max_s > 98.0 && r.max_s < 100.0);
    assert_true(r.sum_s > 101.0 && r.sum_s < 101.01);
    assert_int_equal(r.allowed, 1);
    assert_int_equal(r.denied, 2);
    /* a slot past the table is the unmatched slot */
    ag_metrics_request(100000, 405, 0.001);
    ag_metrics_route(AG_METRICS_NO_ROUTE, &r);
    assert_true(r.count >= 1);
}

static void *counter(void *arg)
{
    (void)arg;
    for (int i = 0; i < PER_THREAD; i++) {
        ag_metrics_add(AG_M_VECTORS_LINKED, 1);
        ag_metrics_request(3, i % 2 ? 200 : 500, 0.001 * (i % 7));
        ag_metrics_decision(3, i % 3 != 0);
    }
    return NULL;
}

static void test_threads(void **state)
{
    (void)state;
    uint64_t before = ag_metrics_get(AG_M_VECTORS_LINKED);
    pthread_t t[THREADS];
    for (int i = 0; i < THREADS; i++)
        assert_int_equal(pthread_create(&t[i], NULL, counter, NULL), 0);
    for (int i = 0; i < THREADS; i++)
        pthread_join(t[i], NULL);
    assert_int_equal(ag_metrics_get(AG_M_VECTORS_LINKED), before + THREADS * PER_THREAD);
    ag_metrics_route_t r;
    ag_metrics_route(3, &r);
    assert_int_equal(r.count, THREADS * PER_THREAD);
    assert_int_equal(r.status[0], THREADS * PER_THREAD / 2);
    assert_int_equal(r.allowed + r.denied, THREADS * PER_THREAD);
    assert_true(r.max_s >= 0.0059 && r.min_s == 0.0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_scalar),
        cmocka_unit_test(test_route),
        cmocka_unit_test(test_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
