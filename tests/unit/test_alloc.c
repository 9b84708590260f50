/*
 * Allocation-failure injection (docs/RELIABILITY.md): every malloc/calloc/realloc made by Aegis'
 * code in this executable goes through the wrappers below (the link uses -Wl,--wrap=…, see
 * tests/CMakeLists.txt) and so does jansson's (json_set_alloc_funcs). Each scenario runs once to
 * count its allocations, then once per allocation with exactly that one failing: it must return
 * an error or succeed, never crash, and free everything either way (the ASan preset's leak check
 * fails the test at exit otherwise).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include <cmocka.h>

#include <jansson.h>

#include "ag_arena.h"
#include "ag_clock.h"
#include "auth/ag_decide.h"
#include "auth/ag_jwt.h"
#include "auth/ag_perm.h"
#include "auth/ag_principal.h"
#include "index/ag_filter.h"
#include "index/ag_hnsw.h"
#include "query/ag_query.h"
#include "store/ag_store.h"
#include "json/ag_json.h"

void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t size);
void *__real_realloc(void *p, size_t n);
void *__wrap_malloc(size_t n);
void *__wrap_calloc(size_t n, size_t size);
void *__wrap_realloc(void *p, size_t n);

static bool armed;
static long counted, fail_at = -1;

static bool fail_now(void)
{
    return armed && counted++ == fail_at;
}

void *__wrap_malloc(size_t n)
{
    return fail_now() ? NULL : __real_malloc(n);
}

void *__wrap_calloc(size_t n, size_t size)
{
    return fail_now() ? NULL : __real_calloc(n, size);
}

void *__wrap_realloc(void *p, size_t n)
{
    return fail_now() ? NULL : __real_realloc(p, n);
}

static void *json_malloc(size_t n)
{
    return __wrap_malloc(n);
}

typedef int (*scenario_fn)(void);

/* Runs fn once per allocation it makes, failing that one; returns how many runs were made. */
static long inject(scenario_fn fn)
{
    counted = 0;
    fail_at = -1;
    armed = true;
    int rc = fn();
    armed = false;
    assert_int_equal(rc, 0); /* the clean run succeeds */
    long total = counted;
    assert_true(total > 0);
    for (long k = 0; k < total; k++) {
        counted = 0;
        fail_at = k;
        armed = true;
        rc = fn();
        armed = false;
        /* Any outcome but a crash or a leak is acceptable; an error must be an AG_E* code. */
        assert_true(rc <= 0);
    }
    return total;
}

/* ---- scenarios ---------------------------------------------------------------------------- */

static int filter_scenario(void)
{
    json_t *j = json_loads(
        "{\"must\":[{\"key\":\"city\",\"match\":{\"any\":[\"a\",\"b\",\"c\"]}},"
        "{\"key\":\"n\",\"range\":{\"gte\":1,\"lt\":9}},"
        "{\"nested\":{\"key\":\"items\",\"filter\":{\"must\":[{\"key\":\"x\",\"match\":{\"value\":"
        "1}}]}}}],"
        "\"should\":[{\"key\":\"t\",\"match\":{\"text\":\"hello world\"}},{\"has_id\":[1,2,3]}],"
        "\"must_not\":[{\"is_empty\":{\"key\":\"gone\"}}]}",
        0, NULL);
    if (!j)
        return AG_ENOMEM;
    ag_filter_t *f = NULL;
    int rc = ag_filter_compile(j, &f, NULL);
    json_decref(j);
    ag_filter_free(f);
    return rc;
}

static int perms_scenario(void)
{
    json_t *j =
        json_loads("[{\"action\":\"read:data\",\"collection\":\"Sales*\",\"filter\":{\"must\":"
                   "[{\"key\":\"team\",\"match\":{\"value\":\"red\"}}]}},"
                   "{\"action\":\"write:data\",\"collection\":\"*-prod\",\"tenant\":\"acme*\"},"
                   "{\"action\":\"manage:roles\",\"role\":\"team-*\"}]",
                   0, NULL);
    if (!j)
        return AG_ENOMEM;
    ag_perm_list_t perms = {0};
    int rc = ag_perm_list_parse(j, "permissions", &perms, NULL);
    ag_perm_list_release(&perms);
    json_decref(j);
    return rc;
}

static int jwt_scenario(void)
{
    json_t *claims = json_loads(
        "{\"sub\":\"svc\",\"exp\":4102444800,\"access\":[{\"collection\":\"c\",\"access\":\"rw\","
        "\"payload\":{\"tenant\":\"acme\"}},{\"collection\":\"d\",\"access\":\"prw\"}],"
        "\"roles\":[\"viewer\"],\"value_exists\":{\"collection\":\"users\",\"matches\":"
        "[{\"key\":\"role\",\"value\":\"admin\"}]}}",
        0, NULL);
    if (!claims)
        return AG_ENOMEM;
    ag_principal_t *p = NULL;
    int rc = ag_jwt_principal(claims, NULL, NULL, &p, NULL);
    json_decref(claims);
    ag_principal_unref(p);
    return rc;
}

static ag_principal_t *tenant_holder;

static int decide_scenario(void)
{
    json_t *tenants = json_loads("{\"acme\":{\"active\":true},\"acme-old\":{\"active\":false},"
                                 "\"beta\":{\"active\":true}}",
                                 0, NULL);
    if (!tenants)
        return AG_ENOMEM;
    ag_action_decl_t decl = AG_ACT(AG_VERB_READ, AG_RES_DATA);
    ag_request_action_t a;
    ag_request_action_init(&a, &decl);
    a.collection = "c";
    a.tenant_key = "tenant";
    ag_decision_t d;
    int rc = ag_decide_request(tenant_holder, &a, true, tenants, &d);
    ag_decision_release(&d);
    json_decref(tenants);
    return rc;
}

static int json_scenario(void)
{
    static const char body[] = "{\"points\":[{\"id\":1,\"vector\":[0.1,0.2,0.3],\"payload\":{\"a\":"
                               "{\"b\":[1,2,{\"c\":\"d\"}]}}},{\"id\":\"9f1c0f3e-0000-4000-8000-"
                               "000000000000\",\"vector\":[1,2,3]}]}";
    json_t *out = NULL;
    int rc = ag_json_parse_body(body, sizeof(body) - 1, true, &out, NULL);
    json_decref(out);
    return rc;
}

static char dir[64];
static ag_store_t *store;
static ag_collection_t *coll;

static int query_body(const char *text, ag_qapi_t api)
{
    ag_arena_t arena;
    ag_arena_init(&arena, 1 << 20);
    ag_diag_t diag = {{0}};
    ag_qctx_t ctx = {&arena, &diag, ag_now_mono() + 60, 60, NULL, "c", NULL, NULL};
    json_t *body = json_loads(text, 0, NULL);
    int rc = body ? 0 : AG_ENOMEM;
    ag_query_t q;
    memset(&q, 0, sizeof(q));
    json_t *out = NULL;
    if (rc == 0 && (rc = ag_query_parse(&q, &ctx, coll, api, false, body, "")) == 0)
        rc = ag_query_run(&q, &out);
    json_decref(out);
    ag_query_release(&q);
    json_decref(body);
    ag_arena_release(&arena);
    return rc;
}

static int query_scenario(void)
{
    int rc =
        query_body("{\"vector\":[1,0,0],\"limit\":3,\"with_payload\":true,\"filter\":{\"must\":"
                   "[{\"key\":\"n\",\"range\":{\"gte\":0}}]}}",
                   AG_QAPI_SEARCH);
    if (rc == 0)
        rc = query_body("{\"prefetch\":[{\"query\":[1,0,0],\"limit\":4},{\"query\":[0,1,0],"
                        "\"limit\":4}],\"query\":{\"fusion\":\"rrf\"},\"limit\":3}",
                        AG_QAPI_QUERY);
    return rc;
}

/* One write into a fresh collection of 1,022 points (so the batch makes the slot, id-map and
 * vector arrays grow), with allocation k failing (k < 0: none). Returns ag_coll_apply's result;
 * *live and *present tell what memory holds afterwards. */
static int write_once(long k, uint32_t *live, int *present)
{
    static int round;
    char name[32];
    snprintf(name, sizeof(name), "w%d", round++);
    ag_diag_t d = {{0}};
    json_t *body = json_loads("{\"vectors\":{\"size\":3,\"distance\":\"Dot\"}}", 0, NULL);
    json_t *params = NULL;
    assert_int_equal(ag_coll_parse_params(body, &params, &d), 0);
    assert_int_equal(ag_store_create(store, name, params, &d), 0);
    json_decref(params);
    json_decref(body);
    ag_collection_t *c;
    assert_int_equal(ag_store_get(store, name, &c, NULL), 0);
    static const float vec[3] = {1, 2, 3};
    enum { PREFILL = 1022, ADD = 3 };
    ag_mutation_t *m = calloc(PREFILL, sizeof(*m));
    assert_non_null(m);
    for (int i = 0; i < PREFILL; i++) {
        m[i].id = (ag_point_id_t){.kind = AG_ID_NUM, .num = (uint64_t)i + 1};
        m[i].dense_op[0] = AG_VEC_SET;
        m[i].dense[0] = vec;
        m[i].replace_vectors = true;
    }
    assert_int_equal(ag_coll_write_begin(c), 0);
    assert_int_equal(ag_coll_apply(c, m, PREFILL, false, &d), 0);
    memset(m, 0, ADD * sizeof(*m));
    for (int i = 0; i < ADD; i++) {
        m[i].id = (ag_point_id_t){.kind = AG_ID_NUM, .num = (uint64_t)100000 + i};
        m[i].dense_op[0] = AG_VEC_SET;
        m[i].dense[0] = vec;
        m[i].replace_vectors = true;
    }
    m[0].payload = json_pack("{s:i}", "a", 1); /* the others bring no payload */
    counted = 0;
    fail_at = k;
    armed = true;
    int rc = ag_coll_apply(c, m, ADD, false, &d);
    armed = false;
    ag_coll_write_end(c);
    *live = ag_coll_live(c);
    *present = 0;
    for (int i = 0; i < ADD; i++)
        *present += ag_coll_find(c, &m[i].id) != UINT32_MAX;
    json_decref(m[0].payload);
    free(m);
    ag_coll_unref(c);
    bool existed = false;
    assert_int_equal(ag_store_delete(store, name, &existed, &d), 0);
    return rc;
}

/* A write is refused whole or applied whole: never on disk but missing from memory. */
static void test_write_reserved_before_commit(void **state)
{
    (void)state;
    uint32_t live;
    int present;
    assert_int_equal(write_once(-1, &live, &present), 0);
    assert_int_equal(live, 1025);
    assert_int_equal(present, 3);
    long total = counted;
    assert_true(total > 3); /* the batch made arrays grow */
    for (long k = 0; k < total; k++) {
        int rc = write_once(k, &live, &present);
        if (rc == 0) {
            assert_int_equal(live, 1025);
            assert_int_equal(present, 3);
        } else {
            assert_int_equal(rc, AG_ENOMEM);
            assert_int_equal(live, 1022);
            assert_int_equal(present, 0);
        }
    }
}

/* Sparse vectors: a write into a collection whose inverted index already has lists (so the
 * batch both grows lists and makes new ones, and replaces one point's vector), with allocation k
 * failing. *count is the index's vector count afterwards, *replaced whether point 1 holds its new
 * vector; returns ag_coll_apply's result. */
static int sparse_write_once(long k, uint32_t *count, int *present, bool *replaced)
{
    static int round;
    char name[32];
    snprintf(name, sizeof(name), "s%d", round++);
    ag_diag_t d = {{0}};
    json_t *body = json_loads(
        "{\"vectors\":{\"size\":3,\"distance\":\"Dot\"},\"sparse_vectors\":{\"s\":{}}}", 0, NULL);
    json_t *params = NULL;
    assert_int_equal(ag_coll_parse_params(body, &params, &d), 0);
    assert_int_equal(ag_store_create(store, name, params, &d), 0);
    json_decref(params);
    json_decref(body);
    ag_collection_t *c;
    assert_int_equal(ag_store_get(store, name, &c, NULL), 0);
    static const float vec[3] = {1, 2, 3};
    /* prefill; then point 1's new vector and the new points' */
    static uint32_t idx[5][3] = {{1, 2, 3}, {2, 3, 4}, {7, 8, 9}, {3, 100, 2}, {9, 100, 5}};
    static float val[3] = {0.5f, 1.5f, 2.5f};
    enum { PREFILL = 60, ADD = 4 };
    ag_mutation_t *m = calloc(PREFILL, sizeof(*m));
    assert_non_null(m);
    for (int i = 0; i < PREFILL; i++) {
        m[i].id = (ag_point_id_t){.kind = AG_ID_NUM, .num = (uint64_t)i + 1};
        m[i].dense_op[0] = AG_VEC_SET;
        m[i].dense[0] = vec;
        m[i].sparse_op[0] = AG_VEC_SET;
        m[i].sparse[0] = (ag_sparse_vec_t){idx[0], val, 3};
        m[i].replace_vectors = true;
    }
    assert_int_equal(ag_coll_write_begin(c), 0);
    assert_int_equal(ag_coll_apply(c, m, PREFILL, false, &d), 0);
    memset(m, 0, ADD * sizeof(*m));
    for (int i = 0; i < ADD; i++) {
        /* point 1 (existing) gets a new vector; the others are new points */
        m[i].id = (ag_point_id_t){.kind = AG_ID_NUM, .num = i == 0 ? 1 : (uint64_t)100000 + i};
        m[i].sparse_op[0] = AG_VEC_SET;
        m[i].sparse[0] = (ag_sparse_vec_t){idx[i + 1], val, 3};
        m[i].replace_vectors = false;
    }
    counted = 0;
    fail_at = k;
    armed = true;
    int rc = ag_coll_apply(c, m, ADD, false, &d);
    armed = false;
    ag_coll_write_end(c);
    const ag_sparse_t *sp = ag_coll_sparse_index(c, 0);
    *count = ag_sparse_count(sp);
    *present = 0;
    for (int i = 1; i < ADD; i++)
        *present += ag_coll_find(c, &m[i].id) != UINT32_MAX;
    const uint32_t *gi;
    const float *gv;
    uint32_t gn = 0;
    *replaced = ag_sparse_get(sp, ag_coll_find(c, &m[0].id), &gi, &gv, &gn) && gn == 3 &&
                gi[0] == 2 && gi[2] == 4;
    /* The postings agree with the stored vectors: dimension 4 is held by point 1 alone when the
     * write went through, by nobody otherwise; dimension 1 by every prefilled point but point 1
     * (or by all of them). */
    ag_hit_t hits[PREFILL + ADD];
    size_t nh = 0;
    uint32_t q4 = 4, q1 = 1;
    float one = 1.0f;
    assert_int_equal(ag_sparse_search(sp, &q4, &one, 1, PREFILL + ADD, NULL, NULL, hits, &nh), 0);
    assert_int_equal(nh, rc == 0 ? 1 : 0);
    assert_int_equal(ag_sparse_search(sp, &q1, &one, 1, PREFILL + ADD, NULL, NULL, hits, &nh), 0);
    assert_int_equal(nh, rc == 0 ? PREFILL - 1 : PREFILL);
    free(m);
    ag_coll_unref(c);
    bool existed = false;
    assert_int_equal(ag_store_delete(store, name, &existed, &d), 0);
    return rc;
}

/* Sparse vectors are reserved for too: refused whole or applied whole. */
static void test_sparse_write_reserved_before_commit(void **state)
{
    (void)state;
    uint32_t count;
    int present;
    bool replaced;
    assert_int_equal(sparse_write_once(-1, &count, &present, &replaced), 0);
    assert_int_equal(count, 63);
    assert_int_equal(present, 3);
    assert_true(replaced);
    long total = counted;
    assert_true(total > 4);
    for (long k = 0; k < total; k++) {
        int rc = sparse_write_once(k, &count, &present, &replaced);
        if (rc == 0) {
            assert_int_equal(count, 63);
            assert_int_equal(present, 3);
            assert_true(replaced);
        } else {
            assert_int_equal(rc, AG_ENOMEM);
            assert_int_equal(count, 60);
            assert_int_equal(present, 0);
            assert_false(replaced);
        }
    }
}

/* Multivectors: a batch that replaces one point's rows and adds points, with allocation k
 * failing: refused whole (point 1 keeps its two rows, no new point) or applied whole. *rows is
 * point 1's row count afterwards, *present how many new points exist. */
static int multi_write_once(long k, uint32_t *rows, int *present)
{
    static int round;
    char name[32];
    snprintf(name, sizeof(name), "m%d", round++);
    ag_diag_t d = {{0}};
    json_t *body = json_loads("{\"vectors\":{\"m\":{\"size\":2,\"distance\":\"Dot\","
                              "\"multivector_config\":{\"comparator\":\"max_sim\"}}}}",
                              0, NULL);
    json_t *params = NULL;
    assert_int_equal(ag_coll_parse_params(body, &params, &d), 0);
    assert_int_equal(ag_store_create(store, name, params, &d), 0);
    json_decref(params);
    json_decref(body);
    ag_collection_t *c;
    assert_int_equal(ag_store_get(store, name, &c, NULL), 0);
    static const float rows6[6] = {1, 2, 3, 4, 5, 6};
    enum { PREFILL = 20, ADD = 4 };
    ag_mutation_t m[PREFILL];
    memset(m, 0, sizeof(m));
    for (int i = 0; i < PREFILL; i++) {
        m[i].id = (ag_point_id_t){.kind = AG_ID_NUM, .num = (uint64_t)i + 1};
        m[i].dense_op[0] = AG_VEC_SET;
        m[i].dense[0] = rows6;
        m[i].dense_rows[0] = 2;
    }
    assert_int_equal(ag_coll_write_begin(c), 0);
    assert_int_equal(ag_coll_apply(c, m, PREFILL, false, &d), 0);
    memset(m, 0, sizeof(m));
    for (int i = 0; i < ADD; i++) {
        m[i].id = (ag_point_id_t){.kind = AG_ID_NUM, .num = i == 0 ? 1 : (uint64_t)1000 + i};
        m[i].dense_op[0] = AG_VEC_SET;
        m[i].dense[0] = rows6;
        m[i].dense_rows[0] = i == 0 ? 3 : (uint32_t)i;
    }
    counted = 0;
    fail_at = k;
    armed = true;
    int rc = ag_coll_apply(c, m, ADD, false, &d);
    armed = false;
    ag_coll_write_end(c);
    *rows = 0;
    assert_non_null(ag_coll_dense_rows(c, 0, ag_coll_find(c, &m[0].id), rows));
    *present = 0;
    for (int i = 1; i < ADD; i++) {
        uint32_t s = ag_coll_find(c, &m[i].id), r = 0;
        if (s != UINT32_MAX) {
            (*present)++;
            assert_non_null(ag_coll_dense_rows(c, 0, s, &r));
            assert_int_equal(r, (uint32_t)i);
        }
    }
    ag_coll_unref(c);
    bool existed = false;
    assert_int_equal(ag_store_delete(store, name, &existed, &d), 0);
    return rc;
}

static void test_multi_write_reserved_before_commit(void **state)
{
    (void)state;
    uint32_t rows;
    int present;
    assert_int_equal(multi_write_once(-1, &rows, &present), 0);
    assert_int_equal(rows, 3);
    assert_int_equal(present, 3);
    long total = counted;
    assert_true(total > 3);
    for (long k = 0; k < total; k++) {
        int rc = multi_write_once(k, &rows, &present);
        if (rc == 0) {
            assert_int_equal(rows, 3);
            assert_int_equal(present, 3);
        } else {
            assert_int_equal(rc, AG_ENOMEM);
            assert_int_equal(rows, 2);
            assert_int_equal(present, 0);
        }
    }
}

/* A graph that links on add (no background indexer): once ag_index_reserve has succeeded, the
 * adds it was told of allocate nothing — checked by failing every allocation after the
 * reservation — both for a graph already built and for a batch that crosses the threshold and
 * builds it. Before that, allocation k of the reservation fails: a refusal, never a crash. */
static long reserve_allocs; /* made by the reservation in the last run */

static int hnsw_link_once(long k, uint32_t prefill, uint32_t threshold, long *after)
{
    enum { ADD = 5, DIM = 8 };
    ag_vecstore_t *vs = NULL;
    ag_index_t *ix = NULL;
    assert_int_equal(ag_vecstore_new(DIM, &vs), 0);
    ag_hnsw_params_t hp = {.m = 4, .ef_construct = 16, .full_scan_threshold = threshold};
    assert_int_equal(ag_index_hnsw_new(vs, AG_DIST_EUCLID, &hp, &ix), 0);
    float v[DIM];
    uint64_t x = 88172645463325252ull;
    for (uint32_t i = 0; i < prefill + ADD; i++) {
        for (int d = 0; d < DIM; d++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            v[d] = (float)(x % 1000) / 1000.0f;
        }
        if (i == prefill) { /* the batch */
            counted = 0;
            fail_at = k;
            armed = true;
            int rc = ag_vecstore_reserve(vs, prefill + ADD);
            if (rc == 0)
                rc = ag_index_reserve(ix, prefill + ADD, ADD);
            if (rc) {
                armed = false;
                ag_index_free(ix);
                ag_vecstore_free(vs);
                return rc;
            }
            reserve_allocs = counted;
            fail_at = 0; /* from here on every allocation fails */
            counted = 0;
        }
        assert_int_equal(ag_vecstore_set(vs, i, v), 0);
        assert_int_equal(ag_index_add(ix, i), 0);
    }
    armed = false;
    *after = counted; /* allocations attempted after the reservation */
    ag_hnsw_stats_t st;
    ag_hnsw_stats(ix, &st);
    assert_true(st.built);
    assert_int_equal(st.live, prefill + ADD);
    ag_index_free(ix);
    ag_vecstore_free(vs);
    return 0;
}

static void test_hnsw_link_reserved(void **state)
{
    (void)state;
    static const uint32_t cases[][2] = {{200, 0}, {200, 50}, {40, 42}}; /* prefill, threshold */
    for (size_t t = 0; t < AG_ARRAY_LEN(cases); t++) {
        long after = -1;
        assert_int_equal(hnsw_link_once(-1, cases[t][0], cases[t][1], &after), 0);
        assert_int_equal(after, 0);
        assert_true(reserve_allocs > 0);
        for (long k = 0; k < reserve_allocs; k++) {
            int rc = hnsw_link_once(k, cases[t][0], cases[t][1], &after);
            assert_true(rc == 0 || rc == AG_ENOMEM);
            if (rc == 0)
                assert_int_equal(after, 0);
        }
    }
}

static int open_store(void **state)
{
    (void)state;
    snprintf(dir, sizeof(dir), "/tmp/aegis-alloc-XXXXXX");
    assert_non_null(mkdtemp(dir));
    ag_store_config_t cfg = {dir, (size_t)1 << 28, 1.0};
    ag_diag_t d = {{0}};
    assert_int_equal(ag_store_open(&cfg, &store, &d), 0);
    json_t *body = json_loads("{\"vectors\":{\"size\":3,\"distance\":\"Dot\"}}", 0, NULL);
    json_t *params = NULL;
    assert_int_equal(ag_coll_parse_params(body, &params, &d), 0);
    assert_int_equal(ag_store_create(store, "c", params, &d), 0);
    json_decref(params);
    json_decref(body);
    assert_int_equal(ag_store_get(store, "c", &coll, NULL), 0);
    float vecs[4][3] = {{1, 0, 0}, {0, 1, 0}, {0, 0, 1}, {1, 1, 0}};
    ag_mutation_t m[4];
    memset(m, 0, sizeof(m));
    for (int i = 0; i < 4; i++) {
        m[i].id = (ag_point_id_t){.kind = AG_ID_NUM, .num = (uint64_t)i + 1};
        m[i].payload = json_pack("{s:i}", "n", i);
        m[i].dense_op[0] = AG_VEC_SET;
        m[i].dense[0] = vecs[i];
        m[i].replace_vectors = true;
    }
    assert_int_equal(ag_coll_write_begin(coll), 0);
    assert_int_equal(ag_coll_apply(coll, m, 4, true, &d), 0);
    ag_coll_write_end(coll);
    for (int i = 0; i < 4; i++)
        json_decref(m[i].payload);
    json_t *perms =
        json_loads("[{\"action\":\"read:data\",\"collection\":\"c\",\"tenant\":"
                   "\"acme*\"},{\"action\":\"read:data\",\"collection\":\"c\",\"filter\":"
                   "{\"must\":[{\"key\":\"n\",\"match\":{\"value\":1}}]}}]",
                   0, NULL);
    ag_perm_list_t list = {0};
    assert_int_equal(ag_perm_list_parse(perms, "permissions", &list, NULL), 0);
    assert_int_equal(ag_principal_new(AG_PRINCIPAL_USER, "u", &tenant_holder), 0);
    assert_int_equal(ag_principal_add_perms(tenant_holder, &list), 0);
    ag_perm_list_release(&list);
    json_decref(perms);
    return 0;
}

static int close_store(void **state)
{
    (void)state;
    ag_principal_unref(tenant_holder);
    ag_coll_unref(coll);
    ag_store_close(store);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

static void test_filter(void **state)
{
    (void)state;
    assert_true(inject(filter_scenario) > 10);
}

static void test_perms(void **state)
{
    (void)state;
    assert_true(inject(perms_scenario) > 5);
}

static void test_jwt(void **state)
{
    (void)state;
    assert_true(inject(jwt_scenario) > 5);
}

static void test_decide(void **state)
{
    (void)state;
    assert_true(inject(decide_scenario) > 3);
}

static void test_json(void **state)
{
    (void)state;
    assert_true(inject(json_scenario) > 5);
}

static void test_query(void **state)
{
    (void)state;
    assert_true(inject(query_scenario) > 10);
}

int main(void)
{
    json_set_alloc_funcs(json_malloc, free);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_filter),
        cmocka_unit_test(test_perms),
        cmocka_unit_test(test_jwt),
        cmocka_unit_test(test_decide),
        cmocka_unit_test(test_json),
        cmocka_unit_test(test_query),
        cmocka_unit_test(test_write_reserved_before_commit),
        cmocka_unit_test(test_sparse_write_reserved_before_commit),
        cmocka_unit_test(test_multi_write_reserved_before_commit),
        cmocka_unit_test(test_hnsw_link_reserved),
    };
    return cmocka_run_group_tests(tests, open_store, close_store);
}
