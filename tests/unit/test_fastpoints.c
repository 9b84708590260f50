/* The upsert fast path: the same bits as the strict path for every number, and a refusal (so the
 * strict path reports the error) for everything outside the happy path. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>

#include <cmocka.h>

#include "json/ag_fastpoints.h"
#include "json/ag_json.h"

static uint64_t rng = 0x9E3779B97F4A7C15ull;

static uint64_t next(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static bool parse(const char *body, uint32_t dim, ag_arena_t *a, ag_fastpoint_t **pts, size_t *n)
{
    return ag_fastpoints_parse(body, strlen(body), dim, a, pts, n);
}

/* Random numbers in many spellings; each must convert exactly like jansson (strtod) + cast. */
static void test_numbers_match_strict_path(void **state)
{
    (void)state;
    ag_arena_t a;
    ag_arena_init(&a, 0);
    char body[8192], num[64];
    for (int round = 0; round < 3000; round++) {
        float want[8];
        size_t o =
            (size_t)snprintf(body, sizeof(body), "{\"points\":[{\"id\":%d,\"vector\":[", round);
        for (int i = 0; i < 8; i++) {
            uint64_t r = next();
            switch (r % 6) {
            case 0: /* shortest double repr, as JavaScript writes float32 values */
                snprintf(num, sizeof(num), "%.17g",
                         (double)(float)((double)(r >> 11) / 9.0e15 - 0.5));
                break;
            case 1:
                snprintf(num, sizeof(num), "%.9g", (double)(r >> 20) * 1e-7);
                break;
            case 2:
                snprintf(num, sizeof(num), "%lld", (long long)(r % 2000000) - 1000000);
                break;
            case 3:
                snprintf(num, sizeof(num), "%.3e", ((double)(r >> 12) - 2.2e15) * 1e-30);
                break;
            case 4:
                snprintf(num, sizeof(num), "-0.%06llu", (unsigned long long)(r % 1000000));
                break;
            default:
                snprintf(num, sizeof(num), "%.25f", (double)(r >> 40) / 3.0e6);
                break;
            }
            want[i] = (float)strtod(num, NULL);
            o += (size_t)snprintf(body + o, sizeof(body) - o, "%s%s", i ? ", " : "", num);
        }
        snprintf(body + o, sizeof(body) - o, "]}]}");
        ag_fastpoint_t *pts;
        size_t n;
        assert_true(parse(body, 8, &a, &pts, &n));
        assert_int_equal(n, 1);
        assert_memory_equal(pts[0].vector, want, sizeof(want));
        /* And the strict path (jansson) yields the same floats. */
        json_t *doc = NULL;
        ag_diag_t d;
        assert_int_equal(ag_json_parse_body(body, strlen(body), true, &doc, &d), 0);
        float *f;
        uint32_t fn;
        json_t *vec = json_object_get(json_array_get(json_object_get(doc, "points"), 0), "vector");
        assert_int_equal(ag_json_floats(vec, "v", &f, &fn, &d), 0);
        assert_memory_equal(f, want, sizeof(want));
        free(f);
        json_decref(doc);
        ag_fastpoints_release(pts, n);
    }
    ag_arena_release(&a);
}

static void test_happy_path(void **state)
{
    (void)state;
    ag_arena_t a;
    ag_arena_init(&a, 0);
    ag_fastpoint_t *pts;
    size_t n;
    const char *body = " { \"points\" : [ {\"id\": 7, \"vector\": [1, -2.5e0, 0.125],"
                       " \"payload\": {\"k\": \"v\", \"n\": [1, 2]}},"
                       " {\"payload\": {}, \"vector\": [0,0,0], \"id\": "
                       "\"550e8400-e29b-41d4-a716-446655440000\"},"
                       " {\"id\": 9223372036854775808, \"vector\": [1,1,1]} ] } ";
    assert_true(parse(body, 3, &a, &pts, &n));
    assert_int_equal(n, 3);
    assert_true(pts[0].id.kind == AG_ID_NUM && pts[0].id.num == 7);
    assert_true(pts[0].vector[1] == -2.5f);
    assert_string_equal(json_string_value(json_object_get(pts[0].payload, "k")), "v");
    assert_int_equal(pts[1].id.kind, AG_ID_UUID);
    assert_true(json_is_object(pts[2].payload) && json_object_size(pts[2].payload) == 0);
    assert_true(pts[2].id.num == 9223372036854775808ULL);
    ag_fastpoints_release(pts, n);
    assert_true(parse("{\"points\":[]}", 3, &a, &pts, &n));
    assert_int_equal(n, 0);
    ag_arena_release(&a);
}

static void test_declines(void **state)
{
    (void)state;
    const char *bad[] = {
        "",
        "{}",
        "{\"points\":[{\"id\":1,\"vector\":[1,2]}]}",            /* wrong dimension */
        "{\"points\":[{\"id\":1,\"vector\":[1,2,3,4]}]}",        /* wrong dimension */
        "{\"points\":[{\"id\":1,\"vector\":[1,2,3]}]} x",        /* trailing bytes */
        "{\"points\":[{\"id\":1,\"id\":2,\"vector\":[1,2,3]}]}", /* duplicate key */
        "{\"points\":[{\"id\":1,\"vector\":[1,2,3],\"vector\":[1,2,3]}]}",
        "{\"points\":[{\"id\":\"42\",\"vector\":[1,2,3]}]}", /* numeric string */
        "{\"points\":[{\"id\":-1,\"vector\":[1,2,3]}]}",
        "{\"points\":[{\"id\":1.5,\"vector\":[1,2,3]}]}",
        "{\"points\":[{\"id\":18446744073709551615,\"vector\":[1,2,3]}]}", /* 20 digits */
        "{\"points\":[{\"id\":1,\"vector\":[1,2,NaN]}]}",
        "{\"points\":[{\"id\":1,\"vector\":[1,2,1e39]}]}", /* not a float32 */
        "{\"points\":[{\"id\":1,\"vector\":[1,2,01]}]}",
        "{\"points\":[{\"id\":1,\"vector\":[1,2,.5]}]}",
        "{\"points\":[{\"id\":1,\"vector\":[1,2,3],\"extra\":1}]}",
        "{\"points\":[{\"id\":1,\"vector\":{\"\":[1,2,3]}}]}", /* named form */
        "{\"points\":[{\"id\":1,\"vector\":[1,2,3],\"payload\":{\"a\":1,\"a\":2}}]}",
        "{\"points\":[{\"id\":1,\"vector\":[1,2,3],\"payload\":[1]}]}",
        "{\"points\":[{\"vector\":[1,2,3]}]}", /* no id */
        "{\"points\":[{\"id\":1}]}",           /* no vector */
        "{\"points\":[{\"id\":1,\"vector\":[1,2,3]},]}",
        "{\"points\":[{\"id\":1,\"vector\":[1,2,3]}],\"shard_key\":1}",
        "{\"batch\":{\"ids\":[1],\"vectors\":[[1,2,3]]}}",
        "{\"points\":[{\"id\":\"550e8400-e29b-41d4-a716-44665544000\\u0030\",\"vector\":[1,2,3]}]}",
    };
    ag_arena_t a;
    ag_arena_init(&a, 0);
    /* A raw NUL inside an id string is invalid JSON (found by the fuzzer). */
    static const char nul_id[] = "{\"points\":[{\"id\":\"550e8400-e29b-41d4-a716-446655440000"
                                 "\0\",\"vector\":[1,2,3]}]}";
    ag_fastpoint_t *np = NULL;
    size_t nn = 0;
    assert_false(ag_fastpoints_parse(nul_id, sizeof(nul_id) - 1, 3, &a, &np, &nn));
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        ag_fastpoint_t *pts = NULL;
        size_t n = 0;
        if (parse(bad[i], 3, &a, &pts, &n)) {
            fprintf(stderr, "accepted: %s\n", bad[i]);
            fail();
        }
    }
    ag_arena_release(&a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_numbers_match_strict_path),
        cmocka_unit_test(test_happy_path),
        cmocka_unit_test(test_declines),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
