/* The background indexer's progress lines (docs/API.md "Logs"): with a short interval and a low
 * threshold, a long queue is reported while it drains and once more when it is empty. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <unistd.h>

#include <cmocka.h>

#include "ag_clock.h"
#include "ag_log.h"
#include "store/ag_store.h"

enum { DIM = 32, POINTS = 4000, BATCH = 500 };

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static char lines[1 << 16];
static size_t nlines;

/* Called under the log's mutex, from the indexer thread. */
static void sink(const char *line, size_t len, void *ctx)
{
    (void)ctx;
    pthread_mutex_lock(&mu);
    if (strstr(line, "indexing: ") && nlines + len + 1 < sizeof(lines)) {
        memcpy(lines + nlines, line, len);
        nlines += len;
        lines[nlines] = '\0';
    }
    pthread_mutex_unlock(&mu);
}

static bool seen(const char *what)
{
    pthread_mutex_lock(&mu);
    bool found = strstr(lines, what) != NULL;
    pthread_mutex_unlock(&mu);
    return found;
}

static void test_progress_lines(void **state)
{
    (void)state;
    char dir[64];
    snprintf(dir, sizeof(dir), "/tmp/aegis-indexlog-XXXXXX");
    assert_non_null(mkdtemp(dir));
    ag_log_set_sink(sink, NULL);
    ag_store_config_t cfg = {.path = dir,
                             .map_size = (size_t)1 << 30,
                             .flush_interval_s = 1.0,
                             .progress_s = 0.02,
                             .progress_min = 1};
    ag_store_t *st;
    ag_diag_t d = {{0}};
    assert_int_equal(ag_store_open(&cfg, &st, &d), 0);
    json_t *body = json_loads("{\"vectors\":{\"size\":32,\"distance\":\"Cosine\"},"
                              "\"hnsw_config\":{\"full_scan_threshold\":1}}",
                              0, NULL),
           *params = NULL;
    assert_int_equal(ag_coll_parse_params(body, &params, &d), 0);
    assert_int_equal(ag_store_create(st, "q", params, &d), 0);
    json_decref(params);
    json_decref(body);
    ag_collection_t *c;
    assert_int_equal(ag_store_get(st, "q", &c, NULL), 0);
    static float vec[BATCH][DIM];
    ag_mutation_t m[BATCH];
    json_t *empty = json_object();
    uint64_t seed = 7;
    for (int b = 0; b < POINTS / BATCH; b++) {
        memset(m, 0, sizeof(m));
        for (int i = 0; i < BATCH; i++) {
            for (int k = 0; k < DIM; k++) {
                seed = seed * 6364136223846793005ull + 1442695040888963407ull;
                vec[i][k] = (float)(seed >> 40) / (float)(1u << 24);
            }
            m[i].id = (ag_point_id_t){.kind = AG_ID_NUM, .num = (uint64_t)(b * BATCH + i)};
            m[i].payload = empty;
            m[i].dense_op[0] = AG_VEC_SET;
            m[i].dense[0] = vec[i];
        }
        assert_int_equal(ag_coll_write_begin(c), 0);
        assert_int_equal(ag_coll_apply(c, m, BATCH, false, &d), 0);
        ag_coll_write_end(c);
    }
    double deadline = ag_now_mono() + 120;
    while (!seen("indexing: done") && ag_now_mono() < deadline)
        usleep(20000);
    assert_true(seen("vectors queued (most in 'q': "));
    assert_true(seen("indexing: done, every queued vector is linked"));
    ag_coll_counts_t k;
    ag_coll_counts(c, &k);
    assert_int_equal(k.queued, 0);
    assert_int_equal(k.points, POINTS);
    assert_int_equal(k.vectors, POINTS);
    json_decref(empty);
    ag_coll_unref(c);
    ag_store_close(st);
    ag_log_set_sink(NULL, NULL);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_progress_lines)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
