/* The upsert fast path: the same bits as the strict path for every number, and a refusal (so the
 * strict path reports the error) for everything outside the happy path. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>

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
        "{\"batch\":{\"ids\":[1],\"vectors\":[[1,2]]}}",
        "{\"batch\":{\"ids\":[1,2],\"vectors\":[[1,2,3]]}}",
        "{\"batch\":{\"ids\":[],\"vectors\":[]}}",
        "{\"batch\":{\"ids\":[1],\"vectors\":[[1,2,3]],\"payloads\":[]}}",
        "{\"batch\":{\"ids\":[1],\"vectors\":[[1,2,3]],\"payloads\":[1]}}",
        "{\"batch\":{\"ids\":[1],\"vectors\":{\"a\":[[1,2,3]]}}}", /* no named vector a */
        "{\"batch\":{\"ids\":[1],\"ids\":[1],\"vectors\":[[1,2,3]]}}",
        "{\"batch\":{\"ids\":[1],\"vectors\":[[1,2,3]]},\"points\":[]}",
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

/* Named vectors and the column form, against a collection of two named vectors. */
static void test_named_and_columns(void **state)
{
    (void)state;
    ag_arena_t a;
    ag_arena_init(&a, 0);
    ag_fastcols_t cols = {2, {"img", "txt"}, {3, 2}};
    ag_fastpoint_t *pts;
    size_t n;
    const char *rec = "{\"points\":[{\"id\":1,\"vector\":{\"txt\":[1,2],\"img\":[3,4,5]}},"
                      "{\"vector\":{\"txt\":[0.5,-1]},\"id\":2,\"payload\":{\"k\":1}}]}";
    assert_true(ag_fastpoints_parse_cols(rec, strlen(rec), &cols, &a, &pts, &n));
    assert_int_equal(n, 2);
    assert_true(pts[0].vecs[0][2] == 5.0f && pts[0].vecs[1][1] == 2.0f);
    assert_null(pts[1].vecs[0]);
    assert_true(pts[1].vecs[1][0] == 0.5f);
    assert_int_equal(json_integer_value(json_object_get(pts[1].payload, "k")), 1);
    ag_fastpoints_release(pts, n);
    const char *col = "{\"batch\":{\"payloads\":[null,{\"p\":\"x\"}],\"vectors\":{\"img\":[[1,2,3],"
                      "[4,5,6]]},\"ids\":[10,\"550e8400-e29b-41d4-a716-446655440000\"]}}";
    assert_true(ag_fastpoints_parse_cols(col, strlen(col), &cols, &a, &pts, &n));
    assert_int_equal(n, 2);
    assert_true(pts[0].id.num == 10 && pts[1].id.kind == AG_ID_UUID);
    assert_true(pts[1].vecs[0][0] == 4.0f && !pts[0].vecs[1]);
    assert_true(json_is_object(pts[0].payload) && json_object_size(pts[0].payload) == 0);
    assert_string_equal(json_string_value(json_object_get(pts[1].payload, "p")), "x");
    ag_fastpoints_release(pts, n);
    const char *bad[] = {
        "{\"points\":[{\"id\":1,\"vector\":[1,2,3]}]}",                 /* unnamed form */
        "{\"points\":[{\"id\":1,\"vector\":{\"img\":[1,2]}}]}",         /* wrong dimension */
        "{\"points\":[{\"id\":1,\"vector\":{\"im\\u0067\":[1,2,3]}}]}", /* escaped name */
        "{\"points\":[{\"id\":1,\"vector\":{\"img\":[1,2,3],\"img\":[1,2,3]}}]}",
        "{\"points\":[{\"id\":1,\"vector\":{}}]}",
        "{\"batch\":{\"ids\":[1],\"vectors\":[[1,2,3]]}}",
        "{\"batch\":{\"ids\":[1,2],\"vectors\":{\"img\":[[1,2,3]]}}}",
        "{\"batch\":{\"ids\":[1],\"vectors\":{\"img\":[null]}}}",
        "{\"batch\":{\"ids\":[1],\"vectors\":{}}}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (ag_fastpoints_parse_cols(bad[i], strlen(bad[i]), &cols, &a, &pts, &n)) {
            fprintf(stderr, "accepted: %s\n", bad[i]);
            fail();
        }
    }
    ag_arena_release(&a);
}

/* The search body reader: what it takes, and a decline for everything else. */
static void test_search_bodies(void **state)
{
    (void)state;
    ag_arena_t a;
    ag_arena_init(&a, 0);
    ag_fastsearch_t fs;
    const char *good = " {\"limit\": 5, \"vector\": [1, -2.5e0, 0.125], \"offset\":2,"
                       "\"params\":{\"exact\":false,\"hnsw_ef\":64},\"with_payload\":true,"
                       "\"with_vector\":false,\"score_threshold\":0.5,"
                       "\"filter\":{\"must\":[{\"key\":\"a\",\"match\":{\"value\":\"}\"}}]}} ";
    assert_true(ag_fastsearch_parse(good, strlen(good), "vector", 3, &a, &fs));
    assert_true(fs.vec[1] == -2.5f && fs.limit == 5 && fs.has_limit && fs.offset == 2);
    assert_true(fs.ef == 64 && !fs.exact && fs.with_payload && !fs.with_vector);
    assert_true(fs.has_threshold && fs.threshold == 0.5f);
    assert_non_null(fs.filter);
    assert_int_equal(fs.filter[fs.filter_len - 1], '}');
    assert_true(ag_fastsearch_parse("{\"query\":[1,2,3]}", 17, "query", 3, &a, &fs));
    assert_false(fs.has_limit || fs.filter);
    const char *bad[] = {
        "{\"vector\":[1,2]}",
        "{\"vector\":[1,2,3],\"limit\":1.0}",
        "{\"vector\":[1,2,3],\"limit\":-1}",
        "{\"vector\":[1,2,3],\"limit\":1,\"limit\":1}",
        "{\"vector\":[1,2,3],\"limit\":1234567890123456789}",
        "{\"vector\":[1,2,3],\"params\":{\"hnsw_ef\":0}}",
        "{\"vector\":[1,2,3],\"params\":{}}",
        "{\"vector\":[1,2,3],\"params\":{\"quantization\":{}}}",
        "{\"vector\":[1,2,3],\"with_payload\":[\"a\"]}",
        "{\"vector\":[1,2,3],\"with_vector\":truex}",
        "{\"vector\":[1,2,3],\"filter\":null}",
        "{\"vector\":[1,2,3],\"score_threshold\":null}",
        "{\"vector\":[1,2,3],\"timeout\":3}",
        "{\"vector\":[1,2,3]}{}",
        "{\"query\":[1,2,3]}",
        "{\"limit\":3}",
        "{}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (ag_fastsearch_parse(bad[i], strlen(bad[i]), "vector", 3, &a, &fs)) {
            fprintf(stderr, "accepted: %s\n", bad[i]);
            fail();
        }
    }
    ag_arena_release(&a);
}

/* Many digits (16 to 19 significant, as JavaScript and Python print float32 values, and more),
 * exponents across the range the x87 path takes and beyond, and decimals next to a midpoint
 * between two doubles that sits next to a float midpoint: always strtod's double, then the cast. */
static void test_long_numbers_match_strtod(void **state)
{
    (void)state;
    ag_arena_t a;
    ag_arena_init(&a, 0);
    char body[16384], num[96];
    size_t checked = 0;
    for (int round = 0; round < 20000; round++) {
        float want[16];
        size_t o =
            (size_t)snprintf(body, sizeof(body), "{\"points\":[{\"id\":%d,\"vector\":[", round);
        for (int i = 0; i < 16; i++) {
            uint64_t r = next();
            int e = (int)(next() % 70) - 35;
            switch (r % 5) {
            case 0: /* a random float32, shortest double spelling, scaled */
                snprintf(num, sizeof(num), "%.17g",
                         (double)(float)((double)(r >> 11) / 9.0e15 - 0.5) * pow(10, e % 20));
                break;
            case 1: /* 16..19 random significant digits, scientific */
                snprintf(num, sizeof(num), "%llu.%llue%d", (unsigned long long)(r % 9 + 1),
                         (unsigned long long)(next() % 1000000000000000000ull), e);
                break;
            case 2: { /* 19 digits next to the midpoint between the double at a float midpoint
                       * and the double above it: a wrong double there rounds to the wrong float */
                float f = (float)((double)(r >> 11) * 0x1p-53 + 0.5);
                double x = ((double)f + (double)nextafterf(f, 2.0f)) / 2, y = nextafter(x, 2.0);
                long double mid = ((long double)x + (long double)y) / 2;
                snprintf(num, sizeof(num), "%.19Lg", mid);
                break;
            }
            case 3: { /* near a midpoint between two floats: a few doubles either side, and
                       * (odd rounds) the two-rounding path's refusal margin and just past it */
                float x = (float)((double)(r >> 11) / 9.0e15 + 0.001);
                double mid = ((double)x + (double)nextafterf(x, 2.0f)) / 2;
                if (round % 2) {
                    int steps = (int)(next() % 13) - 6;
                    for (; steps > 0; steps--)
                        mid = nextafter(mid, 2.0);
                    for (; steps < 0; steps++)
                        mid = nextafter(mid, 0.0);
                    snprintf(num, sizeof(num), "%.17g", mid);
                } else {
                    snprintf(num, sizeof(num), "%.17g",
                             mid * (1.0 + (double)((int)(next() % 5) - 2) * 0x1p-52));
                }
                break;
            }
            default: /* 19-digit integers and fractions past 19 digits */
                snprintf(num, sizeof(num), "%llu.%llu", (unsigned long long)(r % 1000000000ull),
                         (unsigned long long)(next() % 10000000000000ull));
                break;
            }
            want[i] = (float)strtod(num, NULL);
            o += (size_t)snprintf(body + o, sizeof(body) - o, "%s%s", i ? "," : "", num);
        }
        snprintf(body + o, sizeof(body) - o, "]}]}");
        ag_fastpoint_t *pts;
        size_t n;
        assert_true(parse(body, 16, &a, &pts, &n));
        for (int i = 0; i < 16; i++)
            if (memcmp(&pts[0].vector[i], &want[i], sizeof(float)) != 0)
                fail_msg("%s: value %d is %a, strtod gives %a", body, i, (double)pts[0].vector[i],
                         (double)want[i]);
        checked += 16;
        ag_fastpoints_release(pts, n);
        ag_arena_release(&a);
    }
    assert_int_equal(checked, 320000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_numbers_match_strict_path),
        cmocka_unit_test(test_long_numbers_match_strtod),
        cmocka_unit_test(test_happy_path),
        cmocka_unit_test(test_declines),
        cmocka_unit_test(test_named_and_columns),
        cmocka_unit_test(test_search_bodies),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
