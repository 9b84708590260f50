/* Unit tests for the query layer (src/query/): the request parsers on a small collection, fusion
 * (RRF, DBSF) and order_by on hand-built inputs, and a few runs end to end without a server. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include <cmocka.h>
#include <math.h>

#include "query/ag_query.h"
#include "store/ag_store.h"

static char dir[64];
static ag_store_t *store;
static ag_collection_t *coll;

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof(dir), "/tmp/aegis-query-XXXXXX");
    assert_non_null(mkdtemp(dir));
    ag_store_config_t cfg = {dir, (size_t)1 << 28, 1.0};
    ag_diag_t d = {{0}};
    assert_int_equal(ag_store_open(&cfg, &store, &d), 0);
    json_t *body = json_loads("{\"vectors\":{\"size\":3,\"distance\":\"Dot\"},"
                              "\"sparse_vectors\":{\"s\":{}}}",
                              0, NULL);
    json_t *params = NULL;
    assert_int_equal(ag_coll_parse_params(body, &params, &d), 0);
    assert_int_equal(ag_store_create(store, "c", params, &d), 0);
    json_decref(params);
    json_decref(body);
    assert_int_equal(ag_store_get(store, "c", &coll, NULL), 0);
    /* Five points: payload n = 5 - id (point 5 has none), t a datetime, g a group. */
    float vecs[5][3] = {{1, 0, 0}, {0, 1, 0}, {0, 0, 1}, {1, 1, 0}, {0, 1, 1}};
    ag_mutation_t m[5];
    memset(m, 0, sizeof(m));
    for (int i = 0; i < 5; i++) {
        m[i].id = (ag_point_id_t){.kind = AG_ID_NUM, .num = (uint64_t)i + 1};
        m[i].payload = i == 4 ? json_object()
                              : json_pack("{s:i,s:s,s:s}", "n", 4 - i, "g", i % 2 ? "odd" : "even",
                                          "t", i == 0 ? "2024-01-02T00:00:00Z" : "2023-01-01");
        m[i].dense_op[0] = AG_VEC_SET;
        m[i].dense[0] = vecs[i];
        m[i].replace_vectors = true;
    }
    assert_int_equal(ag_coll_write_begin(coll), 0);
    assert_int_equal(ag_coll_apply(coll, m, 5, true, &d), 0);
    assert_int_equal(
        ag_store_set_index(store, coll, "n", json_pack("{s:s}", "data_type", "integer"), NULL, &d),
        0);
    ag_coll_write_end(coll);
    for (int i = 0; i < 5; i++)
        json_decref(m[i].payload);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    ag_coll_unref(coll);
    ag_store_close(store);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

/* A parse over a fresh arena; the query, arena and diag live in the fixture. */
typedef struct fixture {
    ag_arena_t arena;
    ag_diag_t diag;
    ag_qctx_t ctx;
    ag_query_t q;
    json_t *body;
} fixture_t;

static int parse(fixture_t *f, ag_qapi_t api, bool groups, const char *text)
{
    memset(f, 0, sizeof(*f));
    ag_arena_init(&f->arena, 1 << 20);
    f->ctx = (ag_qctx_t){&f->arena, &f->diag, ag_now_mono() + 60, 60, NULL, "c", NULL, NULL};
    json_error_t err;
    f->body = json_loads(text, 0, &err);
    assert_non_null(f->body);
    return ag_query_parse(&f->q, &f->ctx, coll, api, groups, f->body, "");
}

static void done(fixture_t *f)
{
    ag_query_release(&f->q);
    json_decref(f->body);
    ag_arena_release(&f->arena);
}

static void test_parse_search(void **state)
{
    (void)state;
    fixture_t f;
    assert_int_equal(parse(&f, AG_QAPI_SEARCH, false,
                           "{\"vector\":[1,2,3],\"limit\":4,\"offset\":1,\"with_payload\":[\"n\"],"
                           "\"filter\":{\"must\":[{\"key\":\"n\",\"match\":{\"value\":2}}]},"
                           "\"score_threshold\":0.5}"),
                     0);
    const ag_stage_t *st = f.q.root;
    assert_int_equal(st->kind, AG_Q_NEAREST);
    assert_int_equal(st->vi, 0);
    assert_int_equal(st->si, -1);
    assert_true(st->nearest.dense[2] == 3.0f);
    assert_non_null(st->scope.user);
    assert_true(st->params.has_threshold);
    assert_true(st->params.score_threshold == 0.5f);
    assert_int_equal(f.q.limit, 4);
    assert_int_equal(f.q.offset, 1);
    assert_true(f.q.ps.enabled);
    assert_non_null(f.q.ps.include);
    done(&f);
}

static void test_parse_errors(void **state)
{
    (void)state;
    static const struct {
        ag_qapi_t api;
        const char *body, *msg;
    } cases[] = {
        {AG_QAPI_SEARCH, "{\"vector\":[1,2]}", "Vector dimension error: expected dim: 3, got 2"},
        {AG_QAPI_SEARCH, "{\"vector\":{\"name\":\"x\",\"vector\":[1]}}",
         "Not existing vector name error: x"},
        {AG_QAPI_SEARCH, "{}", "vector: field is required"},
        {AG_QAPI_SEARCH, "{\"vector\":[1,2,3],\"limit\":0}",
         "limit: value 0 invalid, must be 1 or larger"},
        {AG_QAPI_QUERY, "{\"prefetch\":{\"query\":[1,2,3]}}", "A query is needed to merge"},
        {AG_QAPI_QUERY,
         "{\"prefetch\":{\"query\":[1,2,3]},\"query\":{\"fusion\":\"rrf\"},"
         "\"using\":\"s\"}",
         "Fusion queries cannot be combined with the 'using' field"},
        {AG_QAPI_QUERY,
         "{\"prefetch\":[{\"query\":[1,2,3]}],\"query\":{\"rrf\":{\"weights\":[1,2]}}}",
         "Number of weights in RRF should match number of pre-fetches: got 2, expected 1"},
        {AG_QAPI_QUERY, "{\"query\":{\"nearest\":{\"indices\":[1],\"values\":[1]}}}",
         "a sparse vector was given"},
        {AG_QAPI_QUERY, "{\"query\":{\"order_by\":\"n\"},\"score_threshold\":1}",
         "Can't use score_threshold with an order_by query"},
        {AG_QAPI_QUERY, "{\"query\":[1,2,3],\"timeout\":0}", "timeout: expected a whole number"},
        {AG_QAPI_RECOMMEND, "{\"negative\":[1]}", "Positive vectors should not be empty"},
        {AG_QAPI_QUERY, "{\"query\":{\"discover\":{}}}", "query.discover.target: required"},
        {AG_QAPI_QUERY, "{\"query\":{\"context\":[]}}", "at least one {positive, negative} pair"},
        {AG_QAPI_QUERY, "{\"query\":{\"formula\":\"$score\"}}",
         "cannot apply Formula without prefetches"},
        {AG_QAPI_QUERY, "{\"prefetch\":{},\"query\":{\"formula\":1,\"x\":2}}",
         "query: unknown field 'x'"},
        {AG_QAPI_QUERY, "{\"prefetch\":{},\"query\":{\"formula\":{\"sqrt\":[]}}}",
         "query.formula.sqrt: expected a number"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        fixture_t f;
        int rc = parse(&f, cases[i].api, false, cases[i].body);
        if (rc == 0 || !strstr(f.diag.msg, cases[i].msg))
            fail_msg("case %zu: rc %d, message \"%s\", expected \"%s\"", i, rc, f.diag.msg,
                     cases[i].msg);
        done(&f);
    }
}

static void test_parse_query_fusion(void **state)
{
    (void)state;
    fixture_t f;
    assert_int_equal(
        parse(&f, AG_QAPI_QUERY, false,
              "{\"prefetch\":[{\"query\":[1,0,0],\"limit\":3},"
              "{\"query\":{\"indices\":[1,5],\"values\":[0.5,1]},\"using\":\"s\","
              "\"prefetch\":{\"query\":[0,1,0]}}],"
              "\"query\":{\"rrf\":{\"k\":7,\"weights\":[1,0.5]}},\"limit\":2,\"timeout\":5}"),
        0);
    const ag_stage_t *st = f.q.root;
    assert_int_equal(st->kind, AG_Q_RRF);
    assert_int_equal(st->rrf_k, 7);
    assert_int_equal(st->npre, 2);
    assert_true(st->weights[1] == 0.5f);
    assert_int_equal(st->pre[0]->limit, 3);
    assert_int_equal(st->pre[1]->si, 0);
    assert_int_equal(st->pre[1]->nearest.sp.n, 2);
    assert_int_equal(st->pre[1]->npre, 1);
    assert_ptr_equal(st->pre[1]->pre[0]->parent, st->pre[1]);
    assert_int_equal(f.q.nall, 4);
    assert_non_null(f.q.timeout);
    done(&f);
}

static void test_parse_recommend_groups(void **state)
{
    (void)state;
    fixture_t f;
    assert_int_equal(parse(&f, AG_QAPI_RECOMMEND, true,
                           "{\"positive\":[1,[0,1,0]],\"negative\":[\"00000000-0000-0000-0000-"
                           "000000000002\"],\"strategy\":\"best_score\",\"group_by\":\"g\","
                           "\"group_size\":2,\"with_lookup\":\"other\"}"),
                     0);
    const ag_stage_t *st = f.q.root;
    assert_int_equal(st->kind, AG_Q_RECO);
    assert_int_equal(st->strategy, AG_RECO_BEST);
    assert_int_equal(st->npos, 2);
    assert_true(st->pos[0].by_id);
    assert_false(st->pos[1].by_id);
    assert_int_equal(st->nneg, 1);
    assert_int_equal(f.q.nexcl_ids, 2); /* example ids are never returned */
    assert_string_equal(f.q.group_by, "g");
    assert_int_equal(f.q.group_size, 2);
    assert_string_equal(f.q.wl_coll, "other");
    done(&f);
}

static void test_budgets(void **state)
{
    (void)state;
    ag_diag_t d = {{0}};
    json_t *ok = json_loads("{\"query\":[1,2,3],\"limit\":100}", 0, NULL);
    json_t *big = json_loads("{\"query\":[1,2,3],\"limit\":100000,\"group_size\":100}", 0, NULL);
    assert_int_equal(ag_query_check_budgets(AG_QAPI_QUERY, NULL, ok, false, &d), 0);
    assert_int_equal(ag_query_check_budgets(AG_QAPI_QUERY, NULL, big, true, &d), AG_EINVAL);
    assert_non_null(strstr(d.msg, "limit x group_size"));
    json_decref(ok);
    json_decref(big);
}

static ag_ranked_t list_of(ag_hit_t *h, size_t n, bool lower_better)
{
    return (ag_ranked_t){h, NULL, n, lower_better};
}

static void test_fuse_rrf(void **state)
{
    (void)state;
    ag_arena_t arena;
    ag_arena_init(&arena, 1 << 16);
    ag_hit_t a[] = {{10, 0.9f}, {20, 0.8f}, {30, 0.7f}};
    ag_hit_t b[] = {{30, 5.0f}, {10, 4.0f}};
    ag_ranked_t lists[] = {list_of(a, 3, false), list_of(b, 2, false)};
    ag_ranked_t out;
    /* k = 2: rank r scores 1 / (r + 2). 10: 1/2 + 1/3; 30: 1/4 + 1/2; 20: 1/3. */
    assert_int_equal(ag_query_fuse(&arena, AG_Q_RRF, 2, NULL, lists, 2, false, 0, 10, &out), 0);
    assert_int_equal(out.n, 3);
    assert_int_equal(out.h[0].slot, 10);
    assert_float_equal(out.h[0].score, 1.0 / 2 + 1.0 / 3, 1e-6);
    assert_int_equal(out.h[1].slot, 30);
    assert_float_equal(out.h[1].score, 0.75, 1e-6);
    assert_int_equal(out.h[2].slot, 20);
    /* Weights: rank r scores 1 / ((r + 1) / w + k - 1); weight 0 mutes a list. */
    float w[] = {0.0f, 2.0f};
    assert_int_equal(ag_query_fuse(&arena, AG_Q_RRF, 2, w, lists, 2, false, 0, 1, &out), 0);
    assert_int_equal(out.n, 1);
    assert_int_equal(out.h[0].slot, 30);
    assert_float_equal(out.h[0].score, 1.0 / 1.5, 1e-6);
    /* A threshold drops the weak points before the cut. */
    assert_int_equal(ag_query_fuse(&arena, AG_Q_RRF, 2, NULL, lists, 2, true, 0.5f, 10, &out), 0);
    assert_int_equal(out.n, 2);
    ag_arena_release(&arena);
}

static void test_fuse_dbsf(void **state)
{
    (void)state;
    ag_arena_t arena;
    ag_arena_init(&arena, 1 << 16);
    /* Distances (lower is better): negated first. Scores 1, 2, 3 → -1, -2, -3: mean -2, sample
     * sd 1, so [-5, 1] maps to [0, 1]: -1 → 4/6, -2 → 3/6, -3 → 2/6. */
    ag_hit_t a[] = {{1, 1.0f}, {2, 2.0f}, {3, 3.0f}};
    ag_hit_t b[] = {{3, 7.0f}}; /* a single point: 0.5 */
    ag_ranked_t lists[] = {list_of(a, 3, true), list_of(b, 1, false)};
    ag_ranked_t out;
    assert_int_equal(ag_query_fuse(&arena, AG_Q_DBSF, 2, NULL, lists, 2, false, 0, 10, &out), 0);
    assert_int_equal(out.n, 3);
    assert_int_equal(out.h[0].slot, 3);
    assert_float_equal(out.h[0].score, 2.0 / 6 + 0.5, 1e-6);
    assert_int_equal(out.h[1].slot, 1);
    assert_float_equal(out.h[1].score, 4.0 / 6, 1e-6);
    assert_int_equal(out.h[2].slot, 2);
    assert_float_equal(out.h[2].score, 0.5, 1e-6);
    ag_arena_release(&arena);
}

static void test_order_by(void **state)
{
    (void)state;
    ag_diag_t d = {{0}};
    ag_order_by_t ob;
    json_t *j = json_loads("{\"key\":\"n\",\"direction\":\"desc\",\"start_from\":3}", 0, NULL);
    assert_int_equal(ag_order_by_parse(j, &ob, &d), 0);
    assert_string_equal(ob.key, "n");
    assert_true(ob.desc && ob.has_start && ob.start == 3);
    json_decref(j);
    j = json_loads("{\"key\":\"n\",\"direction\":\"up\"}", 0, NULL);
    assert_int_equal(ag_order_by_parse(j, &ob, &d), AG_EINVAL);
    assert_non_null(strstr(d.msg, "order_by.direction"));
    json_decref(j);
    /* The smallest number at the key; datetimes only when asked. */
    json_t *p = json_loads("{\"n\":[4,2.5,\"x\"],\"t\":\"2024-01-01T00:00:01Z\"}", 0, NULL);
    double v;
    assert_true(ag_order_value(p, "n", false, &v));
    assert_true(v == 2.5);
    assert_false(ag_order_value(p, "t", false, &v));
    assert_true(ag_order_value(p, "t", true, &v));
    assert_true(v == 1704067201.0);
    json_decref(p);
    /* Sort: values then ids; start_from keeps >= start ascending, <= start descending. */
    ag_point_id_t ids[4] = {{.kind = AG_ID_NUM, .num = 4},
                            {.kind = AG_ID_NUM, .num = 1},
                            {.kind = AG_ID_NUM, .num = 3},
                            {.kind = AG_ID_NUM, .num = 2}};
    ag_ordered_t o[4] = {{0, 2, &ids[0]}, {1, 1, &ids[1]}, {2, 2, &ids[2]}, {3, 5, &ids[3]}};
    ag_order_by_t asc = {"n", false, true, false, 2};
    assert_int_equal(ag_order_sort(o, 4, &asc), 3);
    assert_int_equal(o[0].slot, 2); /* value 2, id 3 before id 4 */
    assert_int_equal(o[1].slot, 0);
    assert_int_equal(o[2].slot, 3);
    ag_ordered_t o2[4] = {{0, 2, &ids[0]}, {1, 1, &ids[1]}, {2, 2, &ids[2]}, {3, 5, &ids[3]}};
    ag_order_by_t desc = {"n", true, false, false, 0};
    assert_int_equal(ag_order_sort(o2, 4, &desc), 4);
    assert_int_equal(o2[0].slot, 3);
    assert_int_equal(o2[1].slot, 2);
    assert_int_equal(o2[3].slot, 1);
}

/* Runs a query end to end and returns the ids of its points, in order, as "1,2,..". */
static void run_ids(ag_qapi_t api, const char *text, char *out, size_t len)
{
    fixture_t f;
    int rc = parse(&f, api, false, text);
    if (rc)
        fail_msg("parse: %s", f.diag.msg);
    json_t *res = NULL;
    if ((rc = ag_query_run(&f.q, &res)) != 0)
        fail_msg("run: %s", f.diag.msg);
    json_t *pts = api == AG_QAPI_QUERY ? json_object_get(res, "points") : res;
    out[0] = '\0';
    size_t i, n = 0;
    json_t *p;
    json_array_foreach(pts, i, p)
    {
        n += (size_t)snprintf(out + n, len - n, "%s%lld", i ? "," : "",
                              (long long)json_integer_value(json_object_get(p, "id")));
    }
    json_decref(res);
    done(&f);
}

static void test_run(void **state)
{
    (void)state;
    char ids[64];
    run_ids(AG_QAPI_QUERY, "{\"query\":{\"order_by\":\"n\"}}", ids, sizeof(ids));
    assert_string_equal(ids, "4,3,2,1"); /* point 5 has no n */
    run_ids(AG_QAPI_QUERY,
            "{\"query\":{\"order_by\":{\"key\":\"n\",\"direction\":\"desc\"}},\"limit\":2}", ids,
            sizeof(ids));
    assert_string_equal(ids, "1,2");
    run_ids(AG_QAPI_SEARCH, "{\"vector\":[1,0.1,0],\"limit\":3}", ids, sizeof(ids));
    assert_string_equal(ids, "4,1,2"); /* 2 and 5 tie at 0.1: the smaller slot first */
    run_ids(AG_QAPI_QUERY,
            "{\"prefetch\":[{\"query\":[1,0,0],\"limit\":2},{\"query\":[0,0,1],\"limit\":2}],"
            "\"query\":{\"fusion\":\"rrf\"}}",
            ids, sizeof(ids));
    /* [1 or 4 first] and [3 or 5 first]: ranks 0 tie at 1/2, ranks 1 at 1/3. */
    assert_int_equal(strlen(ids), 7);
    run_ids(AG_QAPI_QUERY, "{\"filter\":{\"must\":{\"key\":\"g\",\"match\":{\"value\":\"odd\"}}}}",
            ids, sizeof(ids));
    assert_string_equal(ids, "2,4");
}

/* A formula over the prefetches: scores, payload values, and only points in scope. Point 5 has
 * no `n`, so a formula reading `n` without a default fails when point 5 is a candidate — and
 * succeeds when the row restriction (or a filter) leaves point 5 out: the formula never reads
 * the payload of a point outside the caller's scope. */
static void test_formula_run(void **state)
{
    (void)state;
    char ids[64];
    /* score = n (4,3,2,1 for ids 1..4) + $score of the one prefetch (all 0: id order) */
    run_ids(AG_QAPI_QUERY,
            "{\"prefetch\":{\"limit\":4},\"query\":{\"formula\":{\"sum\":[\"$score\",{\"neg\":"
            "\"n\"}]}}}",
            ids, sizeof(ids));
    assert_string_equal(ids, "4,3,2,1");
    run_ids(AG_QAPI_QUERY,
            "{\"prefetch\":{\"limit\":5},\"query\":{\"formula\":\"n\",\"defaults\":{\"n\":10}},"
            "\"score_threshold\":3}",
            ids, sizeof(ids));
    assert_string_equal(ids, "5,1,2"); /* 10 (default), 4, 3 */

    const char *q = "{\"prefetch\":{\"query\":[0,1,1],\"limit\":5},\"query\":{\"formula\":"
                    "{\"mult\":[\"n\",\"$score\"]}}}";
    fixture_t f;
    assert_int_equal(parse(&f, AG_QAPI_QUERY, false, q), 0);
    json_t *res = NULL;
    assert_int_equal(ag_query_run(&f.q, &res), AG_EINVAL);
    assert_non_null(strstr(f.diag.msg, "payload key `n`"));
    done(&f);

    /* the same formula under a restriction to points that have a group g (not point 5) */
    json_t *rj =
        json_loads("{\"must\":[{\"key\":\"g\",\"match\":{\"any\":[\"odd\",\"even\"]}}]}", 0, NULL);
    ag_filter_t *restriction = NULL;
    ag_diag_t d = {{0}};
    assert_int_equal(ag_filter_compile(rj, &restriction, &d), 0);
    json_decref(rj);
    memset(&f, 0, sizeof(f));
    ag_arena_init(&f.arena, 1 << 20);
    f.ctx = (ag_qctx_t){&f.arena, &f.diag, ag_now_mono() + 60, 60, restriction, "c", NULL, NULL};
    f.body = json_loads(q, 0, NULL);
    assert_int_equal(ag_query_parse(&f.q, &f.ctx, coll, AG_QAPI_QUERY, false, f.body, ""), 0);
    if (ag_query_run(&f.q, &res) != 0)
        fail_msg("run: %s", f.diag.msg);
    /* n * (y + z): id 2 3*1, id 3 2*1, id 4 1*1, id 1 4*0 */
    json_t *pts = json_object_get(res, "points");
    assert_int_equal(json_array_size(pts), 4);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(pts, 0), "id")), 2);
    assert_true(json_real_value(json_object_get(json_array_get(pts, 0), "score")) == 3.0);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(pts, 3), "id")), 1);
    json_decref(res);
    done(&f);
    ag_filter_free(restriction);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_search),
        cmocka_unit_test(test_parse_errors),
        cmocka_unit_test(test_parse_query_fusion),
        cmocka_unit_test(test_parse_recommend_groups),
        cmocka_unit_test(test_budgets),
        cmocka_unit_test(test_fuse_rrf),
        cmocka_unit_test(test_fuse_dbsf),
        cmocka_unit_test(test_order_by),
        cmocka_unit_test(test_run),
        cmocka_unit_test(test_formula_run),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
