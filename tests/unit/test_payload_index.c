/* Unit tests for the payload indexes kept by writes (store/ag_payload_index.h): seeded random
 * sequences of inserts, payload overwrites, payload-less upserts and deletes, after each of which
 * the maintained index must equal one built from scratch and every value's candidates must be
 * exactly the live points holding it (checked against the payloads themselves) — with no full
 * build in between. Then a deleted and re-declared index, and slot reuse. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "ag_arena.h"
#include "store/ag_payload_index.h"
#include "store/ag_store.h"
#include "store/ag_write.h"

static char dir[64];
static uint64_t rng = 0x243F6A8885A308D3ull;

static uint32_t rnd(uint32_t n)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng % n);
}

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof(dir), "/tmp/aegis-pidx-XXXXXX");
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

static ag_store_t *open_store(void)
{
    ag_store_config_t cfg = {dir, (size_t)1 << 30, 1.0};
    ag_store_t *st = NULL;
    ag_diag_t d = {{0}};
    assert_int_equal(ag_store_open(&cfg, &st, &d), 0);
    return st;
}

static ag_collection_t *make_collection(ag_store_t *st, const char *name)
{
    json_t *body = json_pack("{s:{s:i,s:s}}", "vectors", "size", 2, "distance", "Dot");
    json_t *params = NULL;
    ag_diag_t d = {{0}};
    assert_int_equal(ag_coll_parse_params(body, &params, &d), 0);
    assert_int_equal(ag_store_create(st, name, params, &d), 0);
    json_decref(params);
    json_decref(body);
    ag_collection_t *c = NULL;
    assert_int_equal(ag_store_get(st, name, &c, NULL), 0);
    return c;
}

static void set_index(ag_store_t *st, ag_collection_t *c, const char *field, const char *type)
{
    ag_diag_t d = {{0}};
    json_t *def = type ? json_pack("{s:s}", "data_type", type) : NULL;
    assert_int_equal(ag_coll_write_begin(c), 0);
    assert_int_equal(ag_store_set_index(st, c, field, def, NULL, &d), 0);
    ag_coll_write_end(c);
}

static const char *KW[] = {"red", "green", "blue", "teal", "plum"};
#define NKW 5
#define NINT 7
#define MAXID 60

/* A random payload: k (keyword, sometimes missing, sometimes an array), n (integer), other. */
static json_t *random_payload(void)
{
    json_t *p = json_object();
    switch (rnd(4)) {
    case 0:
        break;
    case 1: {
        json_t *a = json_array();
        for (uint32_t i = 0, m = rnd(4); i < m; i++) /* repeats allowed */
            json_array_append_new(a, json_string(KW[rnd(NKW)]));
        json_object_set_new(p, "k", a);
        break;
    }
    default:
        json_object_set_new(p, "k", json_string(KW[rnd(NKW)]));
    }
    if (rnd(5))
        json_object_set_new(p, "n", json_integer((json_int_t)rnd(NINT)));
    json_object_set_new(p, "other", json_integer((json_int_t)rnd(1000)));
    return p;
}

/* One batch of 1..4 random mutations on ids 0..MAXID-1. */
static void random_write(ag_collection_t *c)
{
    ag_mutation_t m[4];
    json_t *payloads[4] = {0};
    float vec[2] = {1, 0};
    size_t n = 1 + rnd(4);
    memset(m, 0, sizeof(m));
    for (size_t i = 0; i < n; i++) {
        m[i].id = (ag_point_id_t){.kind = AG_ID_NUM, .num = rnd(MAXID)};
        uint32_t op = rnd(10);
        if (op < 2) {
            m[i].delete_point = true;
        } else if (op < 3) {
            /* an upsert without a payload: a new point gets {}, an existing one keeps its own */
            m[i].dense_op[0] = AG_VEC_SET;
            m[i].dense[0] = vec;
        } else {
            m[i].payload = payloads[i] = random_payload();
            if (op < 6) {
                m[i].dense_op[0] = AG_VEC_SET;
                m[i].dense[0] = vec;
            }
        }
    }
    ag_diag_t d = {{0}};
    assert_int_equal(ag_coll_write_begin(c), 0);
    assert_int_equal(ag_coll_apply(c, m, n, false, &d), 0);
    ag_coll_write_end(c);
    for (size_t i = 0; i < n; i++)
        json_decref(payloads[i]);
}

typedef struct check {
    const char *field;
    json_t *value;
    uint32_t *want; /* slots holding value, from the payloads */
    size_t nwant, cap;
    bool ok;
} check_t;

static void holds(const json_t *v, void *ud)
{
    check_t *k = ud;
    if (json_equal(v, k->value))
        k->ok = true;
}

static bool visit(void *ud, uint32_t slot, const ag_point_id_t *id, const json_t *payload)
{
    (void)id;
    check_t *k = ud;
    k->ok = false;
    ag_payload_path_each(payload, k->field, holds, k);
    if (k->ok) {
        assert_true(k->nwant < k->cap);
        k->want[k->nwant++] = slot;
    }
    return true;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

/* Under the read lock: the candidates for {"must": {"key": field, "match": {"value": value}}},
 * repeats dropped, are exactly k->want; and the index equals a fresh build. */
static int compare(void *ud, ag_collection_t *c)
{
    check_t *k = ud;
    json_t *filter =
        json_pack("{s:{s:s,s:{s:O}}}", "must", "key", k->field, "match", "value", k->value);
    ag_arena_t arena;
    ag_arena_init(&arena, 1u << 20);
    uint32_t *cand = NULL;
    size_t n = 0, m = 0, count = SIZE_MAX;
    assert_true(ag_payload_candidates_count(c, filter, &count));
    assert_true(ag_payload_candidates(c, &arena, filter, &cand, &n));
    assert_int_equal(count, n);
    for (size_t i = 0; i < n; i++)
        if (i == 0 || cand[i] != cand[i - 1])
            cand[m++] = cand[i];
    assert_int_equal(m, k->nwant);
    for (size_t i = 0; i < m; i++)
        assert_int_equal(cand[i], k->want[i]);
    assert_true(ag_payload_index_verify(c, k->field));
    ag_arena_release(&arena);
    json_decref(filter);
    return 0;
}

static void check_value(ag_collection_t *c, const char *field, json_t *value)
{
    uint32_t want[MAXID + 8];
    check_t k = {.field = field, .value = value, .want = want, .cap = MAXID + 8};
    ag_coll_scan(c, visit, &k);
    qsort(want, k.nwant, sizeof(uint32_t), cmp_u32);
    assert_int_equal(ag_coll_read(c, compare, &k), 0);
    json_decref(value);
}

static void check_all(ag_collection_t *c)
{
    for (int i = 0; i < NKW; i++)
        check_value(c, "k", json_string(KW[i]));
    for (int i = 0; i < NINT; i++)
        check_value(c, "n", json_integer(i));
}

static void test_random_sequences_match_a_rebuild(void **state)
{
    (void)state;
    ag_store_t *st = open_store();
    ag_collection_t *c = make_collection(st, "seq");
    set_index(st, c, "k", "keyword");
    set_index(st, c, "n", "integer");
    for (int i = 0; i < 20; i++)
        random_write(c);
    check_all(c); /* builds both indexes once */
    uint64_t builds = ag_payload_index_builds();
    for (int round = 0; round < 300; round++) {
        random_write(c);
        check_all(c);
    }
    /* No search had to rebuild an index: the writes maintained them. */
    assert_int_equal(ag_payload_index_builds(), builds);
    ag_coll_unref(c);
    ag_store_close(st);
}

/* A deleted index is no longer kept; declared again, it is rebuilt from the payloads as they are
 * now (the writes in between are in it). */
static void test_dropped_and_declared_again(void **state)
{
    (void)state;
    ag_store_t *st = open_store();
    ag_collection_t *c = make_collection(st, "redeclare");
    set_index(st, c, "k", "keyword");
    for (int i = 0; i < 30; i++)
        random_write(c);
    for (int i = 0; i < NKW; i++)
        check_value(c, "k", json_string(KW[i]));
    set_index(st, c, "k", NULL);
    for (int i = 0; i < 30; i++)
        random_write(c);
    set_index(st, c, "k", "keyword");
    for (int i = 0; i < NKW; i++)
        check_value(c, "k", json_string(KW[i]));
    for (int i = 0; i < 50; i++)
        random_write(c);
    for (int i = 0; i < NKW; i++)
        check_value(c, "k", json_string(KW[i]));
    ag_coll_unref(c);
    ag_store_close(st);
}

/* A stale index (as after a failed maintenance step) is rebuilt by the next search, and from
 * then on maintained again. */
static int invalidate(void *ud, ag_collection_t *c)
{
    (void)ud;
    ag_payload_index_invalidate(c);
    return 0;
}

static void test_invalidated_index_is_rebuilt(void **state)
{
    (void)state;
    ag_store_t *st = open_store();
    ag_collection_t *c = make_collection(st, "stale");
    set_index(st, c, "n", "integer");
    for (int i = 0; i < 40; i++)
        random_write(c);
    check_value(c, "n", json_integer(3));
    assert_int_equal(ag_coll_read(c, invalidate, NULL), 0);
    uint64_t before = ag_payload_index_builds();
    for (int i = 0; i < 10; i++)
        random_write(c);
    check_value(c, "n", json_integer(3));
    assert_int_equal(ag_payload_index_builds(), before + 1); /* rebuilt once */
    before = ag_payload_index_builds();
    for (int i = 0; i < 40; i++) {
        random_write(c);
        check_value(c, "n", json_integer((json_int_t)(i % NINT)));
    }
    assert_int_equal(ag_payload_index_builds(), before); /* maintained again */
    ag_coll_unref(c);
    ag_store_close(st);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_random_sequences_match_a_rebuild, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dropped_and_declared_again, setup, teardown),
        cmocka_unit_test_setup_teardown(test_invalidated_index_is_rebuilt, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
