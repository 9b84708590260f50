/* Unit tests for the storage layer: collections survive a reopen, batches compose, aliases are
 * all-or-nothing, deletes drop everything, the write session and payload edits, map growth. */
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

#include "store/ag_store.h"
#include "store/ag_write.h"

static char dir[64];

static ag_store_t *open_store(void)
{
    ag_store_config_t cfg = {dir, (size_t)1 << 30, 1.0};
    ag_store_t *st = NULL;
    ag_diag_t d = {{0}};
    assert_int_equal(ag_store_open(&cfg, &st, &d), 0);
    return st;
}

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof(dir), "/tmp/aegis-store-XXXXXX");
    assert_non_null(mkdtemp(dir));
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

static void create(ag_store_t *st, const char *name, const char *params_json)
{
    json_t *body = json_loads(params_json, 0, NULL), *params = NULL;
    ag_diag_t d = {{0}};
    assert_int_equal(ag_coll_parse_params(body, &params, &d), 0);
    assert_int_equal(ag_store_create(st, name, params, &d), 0);
    json_decref(params);
    json_decref(body);
}

static void test_persist_and_reload(void **state)
{
    (void)state;
    ag_store_t *st = open_store();
    create(st, "c",
           "{\"vectors\":{\"size\":3,\"distance\":\"Euclid\"},\"sparse_vectors\":{\"s\":{}}}");
    ag_collection_t *c;
    assert_int_equal(ag_store_get(st, "c", &c, NULL), 0);
    float v1[3] = {1, 2, 3}, v2[3] = {4, 5, 6};
    uint32_t si[2] = {3, 9};
    float sv[2] = {0.5f, -1.0f};
    ag_mutation_t m[4];
    memset(m, 0, sizeof(m));
    json_t *p1 = json_pack("{s:s}", "k", "one");
    json_t *p2 = json_pack("{s:i}", "n", 2);
    m[0].id = (ag_point_id_t){.kind = AG_ID_NUM, .num = 1};
    m[0].payload = p1;
    m[0].dense_op[0] = AG_VEC_SET;
    m[0].dense[0] = v1;
    m[0].sparse_op[0] = AG_VEC_SET;
    m[0].sparse[0] = (ag_sparse_vec_t){si, sv, 2};
    m[0].replace_vectors = true;
    m[1].id = (ag_point_id_t){.kind = AG_ID_NUM, .num = 2};
    m[1].payload = p2;
    m[1].dense_op[0] = AG_VEC_SET;
    m[1].dense[0] = v2;
    /* Same batch: point 3 is created and deleted again; point 2 gets its vector replaced. */
    m[2].id = (ag_point_id_t){.kind = AG_ID_NUM, .num = 3};
    m[2].payload = p2;
    m[3].id = (ag_point_id_t){.kind = AG_ID_NUM, .num = 3};
    m[3].delete_point = true;
    ag_diag_t d = {{0}};
    assert_int_equal(ag_coll_write_begin(c), 0);
    assert_int_equal(ag_coll_apply(c, m, 4, true, &d), 0);
    ag_coll_write_end(c);
    assert_int_equal(ag_coll_live(c), 2);
    ag_coll_unref(c);
    json_decref(p1);
    json_decref(p2);
    ag_store_close(st);

    st = open_store();
    assert_int_equal(ag_store_get(st, "c", &c, NULL), 0);
    assert_int_equal(ag_coll_live(c), 2);
    ag_point_id_t id1 = {.kind = AG_ID_NUM, .num = 1}, id3 = {.kind = AG_ID_NUM, .num = 3};
    uint32_t s = ag_coll_find(c, &id1);
    assert_true(s != UINT32_MAX);
    json_t *pl1 = ag_coll_payload_json(c, s);
    assert_string_equal(json_string_value(json_object_get(pl1, "k")), "one");
    json_decref(pl1);
    const float *got = ag_coll_dense_get(c, 0, s);
    assert_non_null(got);
    assert_memory_equal(got, v1, sizeof(v1));
    const uint32_t *gi;
    const float *gv;
    uint32_t gn;
    assert_true(ag_sparse_get(ag_coll_sparse_index(c, 0), s, &gi, &gv, &gn));
    assert_int_equal(gn, 2);
    assert_int_equal(gi[1], 9);
    assert_true(gv[1] == -1.0f);
    assert_true(ag_coll_find(c, &id3) == UINT32_MAX);
    ag_coll_unref(c);
    ag_store_close(st);
}

/* A multivector survives a reopen with its rows (record length = rows x dim floats), is rendered
 * as a list of lists, can be replaced by fewer rows and cleared; bad multivector settings are
 * refused at creation. */
static void test_multivector_persist(void **state)
{
    (void)state;
    ag_store_t *st = open_store();
    create(st, "m",
           "{\"vectors\":{\"mv\":{\"size\":2,\"distance\":\"Dot\",\"datatype\":\"float16\","
           "\"multivector_config\":{\"comparator\":\"max_sim\"}},"
           "\"d\":{\"size\":2,\"distance\":\"Euclid\"}}}");
    ag_collection_t *c;
    assert_int_equal(ag_store_get(st, "m", &c, NULL), 0);
    int mv = ag_coll_vector(c, "mv"), dv = ag_coll_vector(c, "d");
    assert_true(mv >= 0 && dv >= 0);
    ag_dense_info_t info;
    ag_coll_dense_info(c, mv, &info);
    assert_true(info.multi);
    assert_int_equal(info.dtype, AG_DTYPE_FLOAT16);
    float rows3[6] = {1, 2, 3, 4, 5, 6}, plain[2] = {7, 8};
    ag_mutation_t m[2];
    memset(m, 0, sizeof(m));
    m[0].id = (ag_point_id_t){.kind = AG_ID_NUM, .num = 1};
    m[0].dense_op[mv] = AG_VEC_SET;
    m[0].dense[mv] = rows3;
    m[0].dense_rows[mv] = 3;
    m[0].dense_op[dv] = AG_VEC_SET;
    m[0].dense[dv] = plain;
    m[1].id = (ag_point_id_t){.kind = AG_ID_NUM, .num = 2};
    m[1].dense_op[mv] = AG_VEC_SET;
    m[1].dense[mv] = plain; /* dense_rows 0: one row */
    ag_diag_t d = {{0}};
    assert_int_equal(ag_coll_write_begin(c), 0);
    assert_int_equal(ag_coll_apply(c, m, 2, true, &d), 0);
    ag_coll_write_end(c);
    ag_coll_unref(c);
    ag_store_close(st);

    st = open_store();
    assert_int_equal(ag_store_get(st, "m", &c, NULL), 0);
    ag_point_id_t id1 = {.kind = AG_ID_NUM, .num = 1}, id2 = {.kind = AG_ID_NUM, .num = 2};
    uint32_t s1 = ag_coll_find(c, &id1), s2 = ag_coll_find(c, &id2), rows = 0;
    const float *got = ag_coll_dense_rows(c, mv, s1, &rows);
    assert_non_null(got);
    assert_int_equal(rows, 3);
    assert_memory_equal(got, rows3, sizeof(rows3));
    assert_null(ag_coll_dense_get(c, mv, s1)); /* not a single vector */
    assert_non_null(ag_coll_dense_rows(c, mv, s2, &rows));
    assert_int_equal(rows, 1);
    got = ag_coll_dense_rows(c, dv, s1, &rows);
    assert_int_equal(rows, 1);
    assert_memory_equal(got, plain, sizeof(plain));
    json_t *vj = ag_coll_vectors_json(c, s1, NULL);
    char *text = json_dumps(vj, JSON_COMPACT | JSON_SORT_KEYS);
    assert_string_equal(text, "{\"d\":[7.0,8.0],\"mv\":[[1.0,2.0],[3.0,4.0],[5.0,6.0]]}");
    free(text);
    json_decref(vj);
    ag_coll_stats_t cs;
    assert_int_equal(ag_coll_stats(c, NULL, &cs), 0);
    assert_int_equal(cs.vectors, 3);
    json_decref(cs.params);
    json_decref(cs.schema);
    /* Replace point 1's multivector by one row; clear point 2's. */
    memset(m, 0, sizeof(m));
    m[0].id = id1;
    m[0].dense_op[mv] = AG_VEC_SET;
    m[0].dense[mv] = plain;
    m[0].dense_rows[mv] = 1;
    m[1].id = id2;
    m[1].dense_op[mv] = AG_VEC_CLEAR;
    assert_int_equal(ag_coll_write_begin(c), 0);
    assert_int_equal(ag_coll_apply(c, m, 2, true, &d), 0);
    ag_coll_write_end(c);
    ag_coll_unref(c);
    ag_store_close(st);

    st = open_store();
    assert_int_equal(ag_store_get(st, "m", &c, NULL), 0);
    s1 = ag_coll_find(c, &id1);
    s2 = ag_coll_find(c, &id2);
    got = ag_coll_dense_rows(c, mv, s1, &rows);
    assert_int_equal(rows, 1);
    assert_memory_equal(got, plain, sizeof(plain));
    assert_true(s2 != UINT32_MAX);
    assert_null(ag_coll_dense_rows(c, mv, s2, &rows));
    ag_coll_unref(c);
    ag_store_close(st);

    const char *bad[] = {
        "{\"vectors\":{\"size\":2,\"distance\":\"Dot\",\"multivector_config\":{}}}",
        "{\"vectors\":{\"size\":2,\"distance\":\"Dot\",\"multivector_config\":"
        "{\"comparator\":\"min_sim\"}}}",
        "{\"vectors\":{\"size\":2,\"distance\":\"Dot\",\"multivector_config\":"
        "{\"comparator\":\"max_sim\",\"x\":1}}}",
        "{\"vectors\":{\"size\":2,\"distance\":\"Dot\",\"datatype\":\"float64\"}}",
        "{\"vectors\":{\"size\":2,\"distance\":\"Cosine\",\"datatype\":\"uint8\"}}"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        json_t *b = json_loads(bad[i], 0, NULL), *p = NULL;
        assert_non_null(b);
        assert_true(ag_coll_parse_params(b, &p, &d) < 0);
        assert_null(p);
        json_decref(b);
    }
}

static void test_aliases_atomic(void **state)
{
    (void)state;
    ag_store_t *st = open_store();
    create(st, "a1", "{\"vectors\":{\"size\":2,\"distance\":\"Dot\"}}");
    ag_diag_t d = {{0}};
    json_t *ok = json_loads(
        "[{\"create_alias\":{\"collection_name\":\"a1\",\"alias_name\":\"x\"}}]", 0, NULL);
    assert_int_equal(ag_store_alias_actions(st, ok, NULL, NULL, &d), 0);
    /* Second action refers to a missing collection: nothing of the request may apply. */
    json_t *bad =
        json_loads("[{\"delete_alias\":{\"alias_name\":\"x\"}},"
                   "{\"create_alias\":{\"collection_name\":\"nope\",\"alias_name\":\"y\"}}]",
                   0, NULL);
    assert_int_equal(ag_store_alias_actions(st, bad, NULL, NULL, &d), AG_ENOTFOUND);
    char target[64];
    assert_int_equal(ag_store_alias_target(st, "x", target, sizeof(target)), 0);
    assert_string_equal(target, "a1");
    ag_collection_t *c;
    bool via = false;
    assert_int_equal(ag_store_get(st, "x", &c, &via), 0);
    assert_true(via);
    ag_coll_unref(c);
    json_decref(ok);
    json_decref(bad);
    ag_store_close(st);
    st = open_store();
    assert_int_equal(ag_store_alias_target(st, "x", target, sizeof(target)), 0);
    bool existed = false;
    assert_int_equal(ag_store_delete(st, "a1", &existed, &d), 0);
    assert_true(existed);
    assert_int_equal(ag_store_alias_target(st, "x", target, sizeof(target)), AG_ENOTFOUND);
    assert_int_equal(ag_store_get(st, "a1", &c, NULL), AG_ENOTFOUND);
    assert_int_equal(ag_store_delete(st, "a1", &existed, &d), 0);
    assert_false(existed);
    ag_store_close(st);
}

static void test_bad_params(void **state)
{
    (void)state;
    const char *bad[] = {"{\"vectors\":{\"size\":0,\"distance\":\"Dot\"}}",
                         "{\"vectors\":{\"size\":4,\"distance\":\"Cos\"}}",
                         "{\"vectors\":{\"size\":4,\"distance\":\"Dot\",\"extra\":1}}",
                         "{\"vectors\":{\"a/b\":{\"size\":4,\"distance\":\"Dot\"}}}",
                         "{\"unknown\":1}",
                         "{\"vectors\":{\"size\":70000,\"distance\":\"Dot\"}}"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        json_t *b = json_loads(bad[i], 0, NULL), *p = NULL;
        ag_diag_t d = {{0}};
        assert_non_null(b);
        assert_true(ag_coll_parse_params(b, &p, &d) < 0);
        assert_null(p);
        assert_true(d.msg[0] != '\0');
        json_decref(b);
    }
}

static void test_many_points_reuse_slots(void **state)
{
    (void)state;
    ag_store_t *st = open_store();
    create(st, "m", "{\"vectors\":{\"size\":4,\"distance\":\"Cosine\"}}");
    ag_collection_t *c;
    assert_int_equal(ag_store_get(st, "m", &c, NULL), 0);
    enum { N = 5000 };
    ag_mutation_t *m = calloc(N, sizeof(*m));
    float *vec = calloc(N * 4, sizeof(float));
    json_t *empty = json_object();
    for (int i = 0; i < N; i++) {
        m[i].id = (ag_point_id_t){.kind = AG_ID_NUM, .num = (uint64_t)i * 7919};
        m[i].payload = empty;
        vec[i * 4 + (i % 4)] = 1.0f;
        m[i].dense_op[0] = AG_VEC_SET;
        m[i].dense[0] = &vec[i * 4];
    }
    ag_diag_t d = {{0}};
    assert_int_equal(ag_coll_write_begin(c), 0);
    assert_int_equal(ag_coll_apply(c, m, N, false, &d), 0);
    for (int i = 0; i < N; i += 2)
        m[i].delete_point = true;
    assert_int_equal(ag_coll_apply(c, m, N, false, &d), 0); /* deletes evens, rewrites odds */
    ag_coll_write_end(c);
    assert_int_equal(ag_coll_live(c), N / 2);
    for (int i = 0; i < N; i++) {
        uint32_t s = ag_coll_find(c, &m[i].id);
        assert_true((i % 2 == 0) == (s == UINT32_MAX));
    }
    ag_coll_unref(c);
    ag_store_close(st);
    st = open_store();
    assert_int_equal(ag_store_get(st, "m", &c, NULL), 0);
    assert_int_equal(ag_coll_live(c), N / 2);
    ag_coll_unref(c);
    ag_store_close(st);
    json_decref(empty);
    free(m);
    free(vec);
}

/* ---- LMDB map growth (store/ag_env.h) ------------------------------------------------------ */

static int count_visit(void *ud, const ag_point_id_t *id, uint32_t slot)
{
    (void)id;
    (void)slot;
    (*(size_t *)ud)++;
    return 0;
}

static int walk_all(void *ud, ag_collection_t *c)
{
    return ag_coll_walk(c, NULL, count_visit, ud);
}

typedef struct walker {
    ag_collection_t *c;
    atomic_bool stop;
    size_t walks;
} walker_t;

/* Read transactions all along, so the growth has to wait for them and they for it. */
static void *walker_main(void *arg)
{
    walker_t *w = arg;
    while (!atomic_load(&w->stop)) {
        size_t n = 0;
        assert_int_equal(ag_coll_read(w->c, walk_all, &n), 0);
        w->walks++;
    }
    return NULL;
}

static int write_batch(ag_collection_t *c, uint64_t first, int n, ag_diag_t *d)
{
    enum { DIM = 64 };
    ag_mutation_t *m = calloc((size_t)n, sizeof(*m));
    float *vec = calloc((size_t)n * DIM, sizeof(float));
    assert_non_null(m);
    assert_non_null(vec);
    for (int i = 0; i < n; i++) {
        m[i].id = (ag_point_id_t){.kind = AG_ID_NUM, .num = first + (uint64_t)i};
        for (int k = 0; k < DIM; k++)
            vec[i * DIM + k] = (float)((first + (uint64_t)i) % 97) + (float)k;
        m[i].dense_op[0] = AG_VEC_SET;
        m[i].dense[0] = &vec[i * DIM];
    }
    assert_int_equal(ag_coll_write_begin(c), 0);
    int rc = ag_coll_apply(c, m, (size_t)n, false, d);
    ag_coll_write_end(c);
    free(m);
    free(vec);
    return rc;
}

/* A map of 1 MiB grows while points are written (with read transactions open all along), up to
 * the ceiling; past it a write is refused whole (507, naming the setting) and the data stays
 * readable; a reopen with a higher ceiling has every acknowledged point and takes writes again. */
static void test_map_growth(void **state)
{
    (void)state;
    ag_store_config_t cfg = {dir, (size_t)1 << 20, 1.0, (size_t)8 << 20};
    ag_store_t *st = NULL;
    ag_diag_t d = {{0}};
    assert_int_equal(ag_store_open(&cfg, &st, &d), 0);
    create(st, "g", "{\"vectors\":{\"size\":64,\"distance\":\"Euclid\"}}");
    ag_collection_t *c;
    assert_int_equal(ag_store_get(st, "g", &c, NULL), 0);
    walker_t w = {.c = c};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, walker_main, &w), 0);
    enum { BATCH = 250 };
    uint64_t written = 0;
    int rc = 0;
    for (int b = 0; b < 400 && rc == 0; b++) {
        rc = write_batch(c, written, BATCH, &d);
        if (rc == 0)
            written += BATCH;
    }
    atomic_store(&w.stop, true);
    pthread_join(th, NULL);
    assert_true(w.walks > 0);
    /* Far more than 1 MiB holds (a point takes a few hundred bytes), and then the ceiling. */
    assert_true(written >= 8000);
    assert_int_equal(rc, AG_ENOSPACE);
    assert_non_null(strstr(d.msg, "storage.map_size_gb"));
    assert_int_equal(ag_coll_live(c), written);
    d = (ag_diag_t){{0}};
    assert_int_equal(write_batch(c, written, BATCH, &d), AG_ENOSPACE); /* still full */
    assert_int_equal(ag_coll_live(c), written);
    size_t n = 0;
    assert_int_equal(ag_coll_read(c, walk_all, &n), 0);
    assert_int_equal(n, written);
    ag_coll_unref(c);
    ag_store_close(st);

    cfg.map_max = (size_t)64 << 20;
    assert_int_equal(ag_store_open(&cfg, &st, &d), 0);
    assert_int_equal(ag_store_get(st, "g", &c, NULL), 0);
    assert_int_equal(ag_coll_live(c), written);
    assert_int_equal(write_batch(c, written, BATCH, &d), 0);
    assert_int_equal(ag_coll_live(c), written + BATCH);
    ag_coll_unref(c);
    ag_store_close(st);
}

static int count_call(void *ud, ag_collection_t *c)
{
    (void)c;
    ++*(int *)ud;
    return AG_ECONFLICT;
}

/* ag_coll_write returns what its callback returns, and does not call it on a deleted collection;
 * a batch applies through it. */
static void test_write_session(void **state)
{
    (void)state;
    ag_store_t *st = open_store();
    create(st, "w", "{\"vectors\":{\"size\":2,\"distance\":\"Dot\"}}");
    ag_collection_t *c;
    assert_int_equal(ag_store_get(st, "w", &c, NULL), 0);
    int calls = 0;
    assert_int_equal(ag_coll_write(c, count_call, &calls), AG_ECONFLICT);
    assert_int_equal(calls, 1);

    ag_arena_t arena;
    ag_arena_init(&arena, (size_t)1 << 24);
    ag_batch_t b = {0};
    static const float v[2] = {1, 2};
    for (int i = 0; i < 100; i++) { /* grows past the first block */
        ag_mutation_t *m = ag_batch_add(&b, &arena);
        assert_non_null(m);
        m->id = (ag_point_id_t){.kind = AG_ID_NUM, .num = (uint64_t)i + 1};
        m->payload = json_pack("{s:i}", "i", i);
        m->dense_op[0] = AG_VEC_SET;
        m->dense[0] = v;
        m->replace_vectors = true;
    }
    ag_diag_t d = {{0}};
    assert_int_equal(ag_coll_write_begin(c), 0);
    assert_int_equal(ag_batch_apply(c, &b, false, &d), 0);
    ag_mutation_t keep = {.id = {.kind = AG_ID_NUM, .num = 7}};
    json_t *np = ag_coll_next_payload(c, &keep);
    assert_int_equal(json_integer_value(json_object_get(np, "i")), 6);
    json_decref(np);
    ag_mutation_t fresh = {.id = {.kind = AG_ID_NUM, .num = 1000}};
    np = ag_coll_next_payload(c, &fresh);
    assert_int_equal(json_object_size(np), 0);
    json_decref(np);
    ag_coll_write_end(c);
    ag_batch_release(&b);
    assert_int_equal(b.n, 0);
    assert_int_equal(ag_coll_live(c), 100);
    ag_arena_release(&arena);

    bool existed = false;
    assert_int_equal(ag_store_delete(st, "w", &existed, &d), 0);
    calls = 0;
    assert_int_equal(ag_coll_write(c, count_call, &calls), AG_ENOTFOUND);
    assert_int_equal(calls, 0);
    ag_coll_unref(c);
    ag_store_close(st);
}

static void test_payload_edits(void **state)
{
    (void)state;
    json_t *cur = json_loads("{\"a\":1,\"n\":{\"x\":1,\"y\":2},\"p.q\":3}", 0, NULL);
    json_t *add = json_loads("{\"b\":2}", 0, NULL);
    json_t *keys = json_loads("[\"n.x\",\"p.q\",\"missing.z\"]", 0, NULL);
    const char *want[] = {
        "{\"a\":1,\"n\":{\"x\":1,\"y\":2},\"p.q\":3,\"b\":2}",
        "{\"a\":1,\"n\":{\"x\":1,\"y\":2,\"deep\":{\"b\":2}},\"p.q\":3}",
        "{\"b\":2}",
        "{\"a\":1,\"n\":{\"y\":2}}",
        "{}",
    };
    ag_payload_edit_t edits[] = {
        {AG_PL_SET, add, NULL, NULL},       {AG_PL_SET, add, "n.deep", NULL},
        {AG_PL_OVERWRITE, add, NULL, NULL}, {AG_PL_DELETE_KEYS, NULL, NULL, keys},
        {AG_PL_CLEAR, NULL, NULL, NULL},
    };
    for (size_t i = 0; i < AG_ARRAY_LEN(edits); i++) {
        json_t *next = ag_payload_edit(cur, &edits[i]);
        json_t *expect = json_loads(want[i], 0, NULL);
        assert_non_null(next);
        if (!json_equal(next, expect)) {
            char *got = json_dumps(next, JSON_SORT_KEYS);
            fail_msg("edit %zu: got %s", i, got);
        }
        json_decref(expect);
        json_decref(next);
    }
    /* cur itself never changes */
    assert_int_equal(json_integer_value(json_object_get(json_object_get(cur, "n"), "x")), 1);
    json_decref(cur);
    json_decref(add);
    json_decref(keys);
}

/* on_disk vectors (store/ag_coll_disk.c): the same points written to an in-RAM and an on-disk
 * collection give the same stored vectors and the same exact (and rescored quantized graph)
 * answers, after deletes and replacements and across a reopen; rows are read inside and outside
 * a read scope. */
typedef struct od_search {
    const float *q;
    bool exact;
    ag_hit_t hits[10];
    size_t n;
} od_search_t;

static int od_run(void *ud, ag_collection_t *c)
{
    od_search_t *s = ud;
    ag_dense_info_t info;
    ag_coll_dense_info(c, 0, &info);
    ag_search_params_t p = {.exact = s->exact, .ef = 64, .oversampling = 3.0};
    /* a row held across the search (a scope copy) must stay intact */
    const float *held = ag_coll_dense_get(c, 0, 0);
    float before = held ? held[0] : 0;
    int rc = ag_index_search(info.index, s->q, 10, NULL, &p, s->hits, &s->n);
    if (held && held[0] != before)
        return -1;
    return rc;
}

static void od_compare(ag_collection_t *ram, ag_collection_t *disk, bool graph)
{
    uint32_t seed = 99;
    for (int qi = 0; qi < 12; qi++) {
        float q[20];
        for (int i = 0; i < 20; i++) {
            seed = seed * 1664525u + 1013904223u;
            q[i] = (float)(seed >> 8) / 16777216.0f - 0.5f;
        }
        od_search_t a = {q, true, {{0}}, 0}, b = {q, !graph, {{0}}, 0};
        assert_int_equal(ag_coll_read(ram, od_run, &a), 0);
        assert_int_equal(ag_coll_read(disk, od_run, &b), 0);
        assert_int_equal(a.n, 10);
        assert_int_equal(b.n, 10);
        size_t same = 0;
        for (size_t i = 0; i < 10; i++) {
            const ag_point_id_t *ia = ag_coll_id(ram, a.hits[i].slot);
            for (size_t j = 0; j < 10; j++) {
                const ag_point_id_t *ib = ag_coll_id(disk, b.hits[j].slot);
                if (ia->num == ib->num) {
                    same++;
                    assert_true(a.hits[i].score - b.hits[j].score < 1e-5f &&
                                b.hits[j].score - a.hits[i].score < 1e-5f);
                }
            }
        }
        if (graph)
            assert_true(same >= 8);
        else
            assert_int_equal(same, 10);
    }
    /* by id, outside any scope (one thread here, so no lock is needed) and inside one */
    for (uint64_t id = 1; id <= 300; id += 37) {
        ag_point_id_t pid = {.kind = AG_ID_NUM, .num = id};
        uint32_t sa = ag_coll_find(ram, &pid), sb = ag_coll_find(disk, &pid);
        assert_true((sa == UINT32_MAX) == (sb == UINT32_MAX));
        if (sa == UINT32_MAX)
            continue;
        const float *va = ag_coll_dense_get(ram, 0, sa), *vb = ag_coll_dense_get(disk, 0, sb);
        assert_non_null(vb);
        assert_memory_equal(va, vb, 20 * sizeof(float));
    }
}

static void od_write(ag_collection_t *c, uint64_t from, uint64_t n, uint32_t seed, bool del)
{
    ag_mutation_t *m = calloc(n, sizeof(*m));
    float *v = calloc(n * 20, sizeof(float));
    assert_non_null(m);
    assert_non_null(v);
    for (uint64_t i = 0; i < n; i++) {
        m[i].id = (ag_point_id_t){.kind = AG_ID_NUM, .num = from + i};
        if (del) {
            m[i].delete_point = true;
            continue;
        }
        for (int j = 0; j < 20; j++) {
            seed = seed * 1664525u + 1013904223u;
            v[i * 20 + (uint64_t)j] = (float)(seed >> 8) / 16777216.0f - 0.5f;
        }
        m[i].dense_op[0] = AG_VEC_SET;
        m[i].dense[0] = v + i * 20;
        m[i].replace_vectors = true;
    }
    ag_diag_t d = {{0}};
    assert_int_equal(ag_coll_write_begin(c), 0);
    assert_int_equal(ag_coll_apply(c, m, n, false, &d), 0);
    ag_coll_write_end(c);
    free(m);
    free(v);
}

static void od_case(const char *extra, bool graph)
{
    char ram_p[256], disk_p[256];
    snprintf(ram_p, sizeof(ram_p), "{\"vectors\":{\"size\":20,\"distance\":\"Euclid\"%s}}", extra);
    snprintf(disk_p, sizeof(disk_p),
             "{\"vectors\":{\"size\":20,\"distance\":\"Euclid\",\"on_disk\":true%s}}", extra);
    ag_store_t *st = open_store();
    create(st, "ram", ram_p);
    create(st, "disk", disk_p);
    ag_collection_t *ram, *disk;
    assert_int_equal(ag_store_get(st, "ram", &ram, NULL), 0);
    assert_int_equal(ag_store_get(st, "disk", &disk, NULL), 0);
    ag_collection_t *cs[2] = {ram, disk};
    for (int i = 0; i < 2; i++) {
        od_write(cs[i], 1, 300, 7, false);
        od_write(cs[i], 50, 20, 11, false); /* replaced */
        od_write(cs[i], 100, 10, 0, true);  /* deleted */
        while (ag_coll_index_step(cs[i], 1000) > 0) {
        }
    }
    od_compare(ram, disk, graph);
    ag_coll_unref(ram);
    ag_coll_unref(disk);
    ag_store_close(st);

    st = open_store();
    assert_int_equal(ag_store_get(st, "ram", &ram, NULL), 0);
    assert_int_equal(ag_store_get(st, "disk", &disk, NULL), 0);
    assert_int_equal(ag_coll_live(disk), 290);
    while (ag_coll_index_step(ram, 1000) + ag_coll_index_step(disk, 1000) > 0) {
    }
    od_compare(ram, disk, graph);
    ag_coll_unref(ram);
    ag_coll_unref(disk);
    ag_store_close(st);
}

static void test_on_disk(void **state)
{
    (void)state;
    od_case("", false);
}

static void test_on_disk_quantized_graph(void **state)
{
    (void)state;
    od_case(",\"hnsw_config\":{\"full_scan_threshold\":0},"
            "\"quantization_config\":{\"scalar\":{\"type\":\"int8\"}}",
            true);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_persist_and_reload, setup, teardown),
        cmocka_unit_test_setup_teardown(test_aliases_atomic, setup, teardown),
        cmocka_unit_test_setup_teardown(test_multivector_persist, setup, teardown),
        cmocka_unit_test(test_bad_params),
        cmocka_unit_test_setup_teardown(test_many_points_reuse_slots, setup, teardown),
        cmocka_unit_test_setup_teardown(test_map_growth, setup, teardown),
        cmocka_unit_test_setup_teardown(test_write_session, setup, teardown),
        cmocka_unit_test(test_payload_edits),
        cmocka_unit_test_setup_teardown(test_on_disk, setup, teardown),
        cmocka_unit_test_setup_teardown(test_on_disk_quantized_graph, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
