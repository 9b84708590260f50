/* Searches while writes and the background indexer run: through the store (real locks, real
 * indexer thread), several searching threads and one writer for a while; every hit must be a
 * live point, nothing may crash (this suite runs under ASan/UBSan too), and once the indexer has
 * caught up the graph must agree with an exact scan. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "ag_clock.h"
#include "index/ag_hnsw.h"
#include "store/ag_store.h"

enum { DIM = 16, IDS = 3000, SEARCHERS = 3 };

static char dir[64];
static ag_collection_t *coll;
static _Atomic bool stop;
static _Atomic long searches, bad_hits;

static float rnd(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return (float)(*s >> 40) / (float)(1u << 24) - 0.5f;
}

static bool alive(const void *ud, uint32_t slot)
{
    return ag_coll_match(ud, slot, NULL);
}

typedef struct one_search {
    const float *q;
    ag_hit_t *hits;
    size_t n;
} one_search_t;

/* Under the read lock: a graph search, every hit checked against the live points. */
static int search_locked(void *ud, ag_collection_t *c)
{
    one_search_t *o = ud;
    ag_dense_info_t v;
    ag_coll_dense_info(c, 0, &v);
    ag_index_filter_t flt = {.accept = alive, .ud = c};
    ag_search_params_t p = {.ef = 32};
    int rc = ag_index_search(v.index, o->q, 10, &flt, &p, o->hits, &o->n);
    for (size_t i = 0; rc == 0 && i < o->n; i++)
        if (!ag_coll_match(c, o->hits[i].slot, NULL) || !ag_coll_dense_get(c, 0, o->hits[i].slot))
            atomic_fetch_add(&bad_hits, 1);
    return rc;
}

static int pending_locked(void *ud, ag_collection_t *c)
{
    ag_dense_info_t v;
    ag_coll_dense_info(c, 0, &v);
    *(uint32_t *)ud = ag_hnsw_pending(v.index);
    return 0;
}

typedef struct compare {
    ag_index_t *exact;
    uint64_t *seed;
    size_t same, total;
} compare_t;

/* Under the read lock: the graph against an exact scan on 50 queries. */
static int compare_locked(void *ud, ag_collection_t *c)
{
    compare_t *cmp = ud;
    ag_dense_info_t v;
    ag_coll_dense_info(c, 0, &v);
    assert_int_equal(ag_hnsw_pending(v.index), 0);
    float q[DIM];
    for (int t = 0; t < 50; t++) {
        for (int k = 0; k < DIM; k++)
            q[k] = rnd(cmp->seed);
        ag_hit_t a[10], b[10];
        size_t na, nb;
        ag_search_params_t p = {.ef = 64};
        assert_int_equal(ag_index_search(v.index, q, 10, NULL, &p, a, &na), 0);
        assert_int_equal(ag_index_search(cmp->exact, q, 10, NULL, &p, b, &nb), 0);
        for (size_t i = 0; i < na; i++)
            for (size_t j = 0; j < nb; j++)
                cmp->same += a[i].slot == b[j].slot;
        cmp->total += nb;
    }
    return 0;
}

static void *searcher(void *arg)
{
    uint64_t seed = (uint64_t)(uintptr_t)arg * 7919 + 1;
    float q[DIM];
    ag_hit_t hits[10];
    while (!atomic_load(&stop)) {
        for (int d = 0; d < DIM; d++)
            q[d] = rnd(&seed);
        one_search_t o = {q, hits, 0};
        int rc = ag_coll_read(coll, search_locked, &o);
        if (rc != 0)
            atomic_fetch_add(&bad_hits, 1);
        atomic_fetch_add(&searches, 1);
    }
    return NULL;
}

/* A store in a new temporary directory (dir; *cfg is filled for reopening it) holding collection
 * name created from the JSON body; coll gets a reference to it. The caller closes the store. */
static ag_store_t *fresh_store(ag_store_config_t *cfg, const char *name, const char *body)
{
    snprintf(dir, sizeof(dir), "/tmp/aegis-conc-XXXXXX");
    assert_non_null(mkdtemp(dir));
    *cfg = (ag_store_config_t){dir, (size_t)1 << 30, 1.0};
    ag_store_t *st;
    ag_diag_t d = {{0}};
    assert_int_equal(ag_store_open(cfg, &st, &d), 0);
    json_t *b = json_loads(body, 0, NULL), *params = NULL;
    assert_int_equal(ag_coll_parse_params(b, &params, &d), 0);
    assert_int_equal(ag_store_create(st, name, params, &d), 0);
    json_decref(params);
    json_decref(b);
    assert_int_equal(ag_store_get(st, name, &coll, NULL), 0);
    return st;
}

static void test_search_during_writes(void **state)
{
    (void)state;
    ag_store_config_t cfg;
    ag_diag_t d = {{0}};
    ag_store_t *st = fresh_store(&cfg, "conc",
                                 "{\"vectors\":{\"size\":16,\"distance\":\"Euclid\"},"
                                 "\"hnsw_config\":{\"full_scan_threshold\":1,\"m\":8}}");
    ag_dense_info_t v0;
    ag_coll_dense_info(coll, 0, &v0);
    assert_true(ag_index_is_hnsw(v0.index));

    pthread_t th[SEARCHERS];
    for (uintptr_t i = 0; i < SEARCHERS; i++)
        assert_int_equal(pthread_create(&th[i], NULL, searcher, (void *)i), 0);

    enum { BATCH = 64 };
    ag_mutation_t m[BATCH];
    float vec[BATCH][DIM];
    json_t *empty = json_object();
    uint64_t seed = 42;
    double until = ag_now_mono() + 1.5;
    int rounds = 0;
    while (ag_now_mono() < until || rounds < 20) {
        memset(m, 0, sizeof(m));
        for (int i = 0; i < BATCH; i++) {
            m[i].id =
                (ag_point_id_t){.kind = AG_ID_NUM, .num = (uint64_t)((rnd(&seed) + 0.5f) * IDS)};
            if (rounds > 5 && i % 5 == 0) {
                m[i].delete_point = true; /* deletes reuse slots, updates re-add vectors */
                continue;
            }
            for (int k = 0; k < DIM; k++)
                vec[i][k] = rnd(&seed);
            m[i].payload = empty;
            m[i].dense_op[0] = AG_VEC_SET;
            m[i].dense[0] = vec[i];
        }
        assert_int_equal(ag_coll_write_begin(coll), 0);
        assert_int_equal(ag_coll_apply(coll, m, BATCH, false, &d), 0);
        ag_coll_write_end(coll);
        rounds++;
    }
    atomic_store(&stop, true);
    for (int i = 0; i < SEARCHERS; i++)
        pthread_join(th[i], NULL);
    assert_int_equal(atomic_load(&bad_hits), 0);
    assert_true(atomic_load(&searches) > 0);

    /* Let the indexer drain the queue, then compare the graph with an exact scan. */
    double deadline = ag_now_mono() + 60;
    for (;;) {
        uint32_t left = 0;
        ag_coll_read(coll, pending_locked, &left);
        if (left == 0 || ag_now_mono() > deadline)
            break;
        usleep(20000);
    }
    ag_index_t *exact;
    /* The exact index only reads the vectors; ag_index_exact_new is not const-typed. */
    assert_int_equal(ag_index_exact_new((ag_vecstore_t *)v0.vs, AG_DIST_EUCLID, &exact), 0);
    compare_t cmp = {exact, &seed, 0, 0};
    ag_coll_read(coll, compare_locked, &cmp);
    assert_true((double)cmp.same / (double)cmp.total >= 0.9);
    ag_index_free(exact);
    json_decref(empty);
    ag_coll_unref(coll);
    ag_store_close(st);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

/* Checkpoints while searches and slow writes go on (the indexer copies the graph under the read
 * lock and writes it with none held): at least one is written during the traffic (the collection
 * turns green between batches), and a collection closed when green resumes with every node kept. */
static void test_checkpoint_during_traffic(void **state)
{
    (void)state;
    ag_store_config_t cfg;
    ag_diag_t d = {{0}};
    ag_store_t *st = fresh_store(&cfg, "ckpt",
                                 "{\"vectors\":{\"size\":16,\"distance\":\"Euclid\"},"
                                 "\"hnsw_config\":{\"full_scan_threshold\":1,\"m\":8}}");
    atomic_store(&stop, false);
    atomic_store(&bad_hits, 0);
    pthread_t th[SEARCHERS];
    for (uintptr_t i = 0; i < SEARCHERS; i++)
        assert_int_equal(pthread_create(&th[i], NULL, searcher, (void *)i), 0);
    enum { BATCH = 16 };
    ag_mutation_t m[BATCH];
    float vec[BATCH][DIM];
    uint64_t seed = 7, next = 0;
    int greens = 0;
    double until = ag_now_mono() + 2.5;
    while (ag_now_mono() < until || greens == 0) {
        memset(m, 0, sizeof(m));
        for (int i = 0; i < BATCH; i++) {
            m[i].id = (ag_point_id_t){.kind = AG_ID_NUM, .num = next++};
            for (int k = 0; k < DIM; k++)
                vec[i][k] = rnd(&seed);
            m[i].dense_op[0] = AG_VEC_SET;
            m[i].dense[0] = vec[i];
        }
        assert_int_equal(ag_coll_write_begin(coll), 0);
        assert_int_equal(ag_coll_apply(coll, m, BATCH, false, &d), 0);
        ag_coll_write_end(coll);
        usleep(100000);
        ag_coll_stats_t cs;
        assert_int_equal(ag_coll_stats(coll, NULL, &cs), 0);
        greens += cs.queued == 0 && !cs.unsaved;
        json_decref(cs.params);
        json_decref(cs.schema);
        assert_true(ag_now_mono() < until + 60);
    }
    atomic_store(&stop, true);
    for (int i = 0; i < SEARCHERS; i++)
        pthread_join(th[i], NULL);
    assert_int_equal(atomic_load(&bad_hits), 0);
    assert_true(greens > 0);
    /* Green once more (the last points linked, their checkpoint written), then closed: the
     * next start resumes every node (points still queued at a close would be linked again). */
    for (double t0 = ag_now_mono();; usleep(20000)) {
        ag_coll_stats_t cs;
        assert_int_equal(ag_coll_stats(coll, NULL, &cs), 0);
        json_decref(cs.params);
        json_decref(cs.schema);
        if (cs.queued == 0 && !cs.unsaved)
            break;
        assert_true(ag_now_mono() - t0 < 60);
    }
    ag_coll_unref(coll);
    ag_store_close(st);

    assert_int_equal(ag_store_open(&cfg, &st, &d), 0);
    assert_int_equal(ag_store_get(st, "ckpt", &coll, NULL), 0);
    assert_int_equal(ag_coll_live(coll), next);
    ag_coll_stats_t cs;
    assert_int_equal(ag_coll_stats(coll, NULL, &cs), 0);
    assert_int_equal(cs.queued, 0); /* resumed: nothing to link again */
    assert_false(cs.unsaved);
    json_decref(cs.params);
    json_decref(cs.schema);
    ag_coll_unref(coll);
    ag_store_close(st);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

static _Atomic long seen_with, seen_without, bad_schema;

/* Reads the payload-index schema the ways requests do (strict mode, order_by/facets, stats)
 * while another thread changes it. */
static void *schema_reader(void *arg)
{
    (void)arg;
    while (!atomic_load(&stop)) {
        json_t *def = ag_coll_index_def(coll, "f");
        char type[AG_INDEX_TYPE_MAX];
        const char *t = ag_coll_index_type(coll, "f", type);
        size_t n = ag_coll_index_count(coll);
        ag_coll_stats_t cs;
        if (ag_coll_stats(coll, NULL, &cs) != 0 || n > 2 ||
            (def && strcmp(json_string_value(json_object_get(def, "data_type")), "keyword") != 0) ||
            (t && strcmp(t, "keyword") != 0) || !json_object_get(cs.schema, "g"))
            atomic_fetch_add(&bad_schema, 1);
        atomic_fetch_add(def ? &seen_with : &seen_without, 1);
        json_decref(def);
        json_decref(cs.params);
        json_decref(cs.schema);
    }
    return NULL;
}

/* A payload index created and dropped over and over while readers look at the schema: they see
 * whole states only, and (under TSan, label concurrency) no tree is read while it changes. */
static void test_schema_during_changes(void **state)
{
    (void)state;
    ag_store_config_t cfg;
    ag_diag_t d = {{0}};
    ag_store_t *st = fresh_store(&cfg, "schema", "{\"vectors\":{\"size\":4,\"distance\":\"Dot\"}}");
    assert_int_equal(ag_coll_write_begin(coll), 0);
    assert_int_equal(
        ag_store_set_index(st, coll, "g", json_pack("{s:s}", "data_type", "integer"), NULL, &d), 0);
    ag_coll_write_end(coll);
    atomic_store(&stop, false);
    pthread_t th[2];
    for (uintptr_t i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&th[i], NULL, schema_reader, (void *)i), 0);
    /* Ends after a drop (odd i), once both states were seen. */
    for (int i = 0;
         i < 200 || i % 2 == 1 || atomic_load(&seen_with) == 0 || atomic_load(&seen_without) == 0;
         i++) {
        json_t *def = i % 2 ? NULL : json_pack("{s:s}", "data_type", "keyword");
        bool existed = false;
        assert_int_equal(ag_coll_write_begin(coll), 0);
        assert_int_equal(ag_store_set_index(st, coll, "f", def, &existed, &d), 0);
        ag_coll_write_end(coll);
        assert_int_equal(existed, i % 2 == 1);
        assert_true(i < 100000);
    }
    atomic_store(&stop, true);
    for (int i = 0; i < 2; i++)
        pthread_join(th[i], NULL);
    assert_int_equal(atomic_load(&bad_schema), 0);
    char type[AG_INDEX_TYPE_MAX];
    assert_int_equal(ag_coll_index_count(coll), 1); /* the last change dropped f */
    assert_null(ag_coll_index_type(coll, "f", type));
    assert_string_equal(ag_coll_index_type(coll, "g", type), "integer");
    ag_coll_unref(coll);
    ag_store_close(st);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_search_during_writes),
                                       cmocka_unit_test(test_checkpoint_during_traffic),
                                       cmocka_unit_test(test_schema_during_changes)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
