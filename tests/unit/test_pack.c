/* json/ag_pack: the packed payload form (round trips, exact types and key order, the reader) and
 * filters evaluated on it against the same filters on the jansson tree. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>

#include <cmocka.h>
#include <float.h>
#include <math.h>

#include "index/ag_filter.h"
#include "json/ag_pack.h"

/* ---- a small deterministic generator ------------------------------------------------------- */

static uint64_t rng = 0x9e3779b97f4a7c15ULL;

static uint32_t rnd(uint32_t n)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng % n);
}

static const char *const WORDS[] = {
    "a", "b", "t3", "x", "héllo", "日本", "", "new york", "2024-01-02T03:04:05Z"};
#define NWORDS (sizeof(WORDS) / sizeof(WORDS[0]))

static json_t *rand_scalar(void)
{
    switch (rnd(9)) {
    case 0:
        return json_null();
    case 1:
        return json_boolean(rnd(2));
    case 2:
        return json_integer((json_int_t)rnd(7) - 3);
    case 3: {
        static const json_int_t big[] = {INT64_MAX, INT64_MIN, 1LL << 53, -(1LL << 40), 127, 128};
        return json_integer(big[rnd(6)]);
    }
    case 4:
        return json_real((double)((int)rnd(9) - 4) / 2.0);
    case 5: {
        static const double odd[] = {-0.0, 1e308, 5e-324, 0.1, -2.5, 3.0};
        return json_real(odd[rnd(6)]);
    }
    case 6:
        return json_stringn("a\0b", 3);
    default:
        return json_string(WORDS[rnd(NWORDS)]);
    }
}

static json_t *rand_value(int depth);

static json_t *rand_object(int depth, size_t max)
{
    static const char *const KEYS[] = {"a", "b", "n", "t", "g", "o", "arr", "loc", "k y", "ключ"};
    json_t *o = json_object();
    size_t n = rnd((uint32_t)max + 1);
    for (size_t i = 0; i < n; i++)
        json_object_set_new(o, KEYS[rnd(10)], rand_value(depth + 1));
    if (rnd(6) == 0) /* a geo point sometimes */
        json_object_set_new(
            o, "loc",
            json_pack("{s:f,s:f}", "lon", (double)rnd(20) - 10.0, "lat", (double)rnd(20) - 10.0));
    return o;
}

static json_t *rand_value(int depth)
{
    uint32_t k = depth > 3 ? 0 : rnd(10);
    if (k == 8) {
        json_t *a = json_array();
        for (uint32_t i = 0, n = rnd(4); i < n; i++)
            json_array_append_new(a, rand_value(depth + 1));
        return a;
    }
    if (k == 9)
        return rand_object(depth, 4);
    return rand_scalar();
}

/* ---- round trips --------------------------------------------------------------------------- */

static void round_trip(const json_t *v)
{
    const uint8_t *p;
    size_t len;
    assert_int_equal(ag_pack_encode(v, &p, &len), 0);
    assert_int_equal(ag_pack_size(p), len);
    json_t *back = ag_pack_decode(p);
    assert_non_null(back);
    assert_true(json_equal(back, v));
    /* Same text: key order as stored, integer vs real kept. */
    char *a = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
    char *b = json_dumps(back, JSON_ENCODE_ANY | JSON_COMPACT);
    assert_string_equal(a, b);
    free(a);
    free(b);
    json_decref(back);
    ag_pack_free(p);
}

static void test_fixed(void **state)
{
    (void)state;
    const char *cases[] = {
        "{}",
        "{\"group\": 7, \"tag\": \"t3\"}",
        "{\"z\": 1, \"a\": 2, \"m\": 3}",
        "{\"i\": 1, \"f\": 1.0, \"neg\": -0.0, \"big\": 9223372036854775807, "
        "\"small\": -9223372036854775808, \"tiny\": 5e-324, \"huge\": 1.7976931348623157e308}",
        "{\"s\": \"h\\u00e9llo \\u65e5\\u672c \\ud83d\\ude00\", \"nul\": \"a\\u0000b\", \"e\": "
        "\"\"}",
        "{\"n\": null, \"t\": true, \"f\": false, \"arr\": [], \"obj\": {}}",
        "{\"deep\": [[[1, [2, {\"x\": [3.5, null, {\"y\": []}]}]]]], \"a\": [{\"b\": {\"c\": 1}}]}",
        "[1, \"two\", 3.0, null]",
        "\"just a string\"",
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        json_error_t err;
        json_t *v = json_loads(cases[i], JSON_DECODE_ANY | JSON_ALLOW_NUL, &err);
        assert_non_null(v);
        round_trip(v);
        json_decref(v);
    }
    /* The empty object costs no allocation. */
    json_t *e = json_object();
    const uint8_t *p;
    size_t len;
    assert_int_equal(ag_pack_encode(e, &p, &len), 0);
    assert_ptr_equal(p, ag_pack_empty);
    ag_pack_free(p);
    json_decref(e);
    /* Two small fields take a few bytes. */
    json_t *two = json_pack("{s:i,s:s}", "group", 7, "tag", "t3");
    assert_int_equal(ag_pack_encode(two, &p, &len), 0);
    assert_true(len <= 20);
    ag_pack_free(p);
    json_decref(two);
}

static void test_reader(void **state)
{
    (void)state;
    json_t *v =
        json_loads("{\"a\": {\"b\": [10, -20, \"x\"]}, \"r\": 2.5, \"s\": \"str\"}", 0, NULL);
    const uint8_t *p;
    size_t len;
    assert_int_equal(ag_pack_encode(v, &p, &len), 0);
    assert_int_equal(ag_pk_type(p), AG_PK_OBJECT);
    assert_int_equal(ag_pk_count(p), 3);
    const uint8_t *a = ag_pk_get(p, "a", 1);
    assert_non_null(a);
    const uint8_t *b = ag_pk_get(a, "b", 1);
    assert_int_equal(ag_pk_type(b), AG_PK_ARRAY);
    assert_int_equal(ag_pk_count(b), 3);
    assert_int_equal(ag_pk_int(ag_pk_at(b, 0)), 10);
    assert_int_equal(ag_pk_int(ag_pk_at(b, 1)), -20);
    size_t n;
    const char *s = ag_pk_str(ag_pk_at(b, 2), &n);
    assert_int_equal(n, 1);
    assert_memory_equal(s, "x", 1);
    assert_null(ag_pk_at(b, 3));
    assert_null(ag_pk_get(p, "missing", 7));
    assert_null(ag_pk_get(b, "a", 1)); /* not an object */
    assert_true(ag_pk_real(ag_pk_get(p, "r", 1)) == 2.5);
    assert_true(ag_pk_number(ag_pk_at(b, 1)) == -20.0);
    s = ag_pk_str(ag_pk_get(p, "s", 1), &n);
    assert_int_equal(n, 3);
    ag_pack_free(p);
    json_decref(v);
}

static void test_random_round_trip(void **state)
{
    (void)state;
    for (int i = 0; i < 5000; i++) {
        json_t *v = rand_object(0, 8);
        round_trip(v);
        json_decref(v);
    }
}

/* ---- filters: packed == jansson ------------------------------------------------------------ */

static const char *rand_key(void)
{
    static const char *const K[] = {"a",        "b",       "n",     "t",         "g",
                                    "o.a",      "o.n",     "arr[]", "arr[].a",   "arr[0]",
                                    "arr[1].n", "\"k y\"", "ключ",  "o.arr[].b", "missing"};
    return K[rnd(sizeof(K) / sizeof(K[0]))];
}

static json_t *rand_match_value(void)
{
    switch (rnd(3)) {
    case 0:
        return json_string(WORDS[rnd(NWORDS)]);
    case 1:
        return json_integer((json_int_t)rnd(7) - 3);
    default:
        return json_boolean(rnd(2));
    }
}

static json_t *rand_filter(int depth);

static json_t *rand_condition(int depth)
{
    json_t *c = json_object();
    uint32_t k = rnd(depth < 2 ? 14 : 12);
    if (k < 11)
        json_object_set_new(c, "key", json_string(rand_key()));
    switch (k) {
    case 0:
    case 1:
        json_object_set_new(c, "match", json_pack("{s:o}", "value", rand_match_value()));
        break;
    case 2: {
        json_t *l = json_array();
        bool ints = rnd(2);
        for (uint32_t i = 0, n = rnd(4); i < n; i++)
            json_array_append_new(l, ints ? json_integer((json_int_t)rnd(7) - 3)
                                          : json_string(WORDS[rnd(NWORDS)]));
        json_object_set_new(c, "match", json_pack("{s:o}", rnd(2) ? "any" : "except", l));
        break;
    }
    case 3:
        json_object_set_new(c, "match",
                            json_pack("{s:s}", rnd(2) ? "text" : "text_any", rnd(2) ? "l" : "a x"));
        break;
    case 4:
        json_object_set_new(c, "range",
                            json_pack("{s:f,s:i}", rnd(2) ? "gte" : "gt", (double)rnd(5) - 2.5,
                                      rnd(2) ? "lte" : "lt", (int)rnd(5)));
        break;
    case 5:
        json_object_set_new(c, "range", json_pack("{s:s}", "gte", "2024-01-01T00:00:00Z"));
        break;
    case 6:
        json_object_set_new(c, "values_count",
                            json_pack("{s:i}", rnd(2) ? "gte" : "lt", (int)rnd(3)));
        break;
    case 7:
        json_object_set_new(
            c, "geo_radius",
            json_pack("{s:{s:f,s:f},s:f}", "center", "lon", 0.0, "lat", 0.0, "radius", 600000.0));
        break;
    case 8:
        json_object_set_new(c, "geo_bounding_box",
                            json_pack("{s:{s:f,s:f},s:{s:f,s:f}}", "top_left", "lon", -5.0, "lat",
                                      5.0, "bottom_right", "lon", 5.0, "lat", -5.0));
        break;
    case 9:
        json_object_set_new(c, "match", json_pack("{s:b}", "value", rnd(2)));
        break;
    case 10:
        json_object_set_new(c, "match", json_pack("{s:i}", "value", (int)rnd(7) - 3));
        break;
    case 11: {
        json_decref(c);
        const char *which = rnd(2) ? "is_empty" : "is_null";
        return json_pack("{s:{s:s}}", which, "key", rand_key());
    }
    case 12:
        json_decref(c);
        return json_pack("{s:{s:s,s:o}}", "nested", "key", rnd(2) ? "arr" : "o.arr", "filter",
                         rand_filter(depth + 1));
    default:
        json_decref(c);
        return rand_filter(depth + 1);
    }
    return c;
}

static json_t *rand_filter(int depth)
{
    static const char *const CL[] = {"must", "should", "must_not"};
    json_t *f = json_object();
    for (int i = 0; i < 3; i++) {
        if (rnd(2))
            continue;
        json_t *l = json_array();
        for (uint32_t j = 0, n = 1 + rnd(3); j < n; j++)
            json_array_append_new(l, rand_condition(depth));
        json_object_set_new(f, CL[i], l);
    }
    return f;
}

static void test_filters_agree(void **state)
{
    (void)state;
    size_t matched = 0, strict = 0, total = 0;
    for (int i = 0; i < 3000; i++) {
        json_t *fj = rand_filter(0);
        ag_filter_t *f = NULL;
        ag_diag_t d;
        int rc = ag_filter_compile(fj, &f, &d);
        if (rc != 0) { /* e.g. a path this generator made invalid: nothing to compare */
            json_decref(fj);
            continue;
        }
        for (int j = 0; j < 20; j++) {
            json_t *pj = rand_object(0, 8);
            const uint8_t *pp;
            size_t len;
            assert_int_equal(ag_pack_encode(pj, &pp, &len), 0);
            ag_filter_subject_t sj = {.payload = pj}, sp = {.packed = pp};
            bool mj = ag_filter_match(f, &sj), mp = ag_filter_match(f, &sp);
            bool aj = ag_filter_match_all(f, &sj), ap = ag_filter_match_all(f, &sp);
            if (mj != mp || aj != ap) {
                char *ft = json_dumps(fj, JSON_COMPACT), *pt = json_dumps(pj, JSON_COMPACT);
                print_error("disagree: filter %s payload %s (%d/%d %d/%d)\n", ft, pt, mj, mp, aj,
                            ap);
                free(ft);
                free(pt);
                fail();
            }
            matched += mj;
            strict += aj;
            total++;
            ag_pack_free(pp);
            json_decref(pj);
        }
        ag_filter_free(f);
        json_decref(fj);
    }
    /* The generator must exercise both outcomes, or the comparison proves little. */
    assert_true(total > 30000);
    assert_true(matched > total / 20 && matched < total - total / 20);
    assert_true(strict > 0);
}

static void collect_ints(const uint8_t *v, void *ud)
{
    int64_t *sum = ud;
    if (ag_pk_type(v) == AG_PK_INT)
        *sum += ag_pk_int(v);
}

static void test_path_each_packed(void **state)
{
    (void)state;
    json_t *v = json_loads("{\"a\": [{\"b\": 1}, {\"b\": [2, 3]}, {\"c\": 9}], \"x\": 5}", 0, NULL);
    const uint8_t *p;
    size_t len;
    assert_int_equal(ag_pack_encode(v, &p, &len), 0);
    int64_t sum = 0;
    assert_int_equal(ag_payload_path_each_packed(p, "a[].b", collect_ints, &sum), 3);
    assert_int_equal(sum, 6);
    sum = 0;
    assert_int_equal(ag_payload_path_each_packed(p, "x", collect_ints, &sum), 1);
    assert_int_equal(sum, 5);
    assert_int_equal(ag_payload_path_each_packed(p, "a[2].c", collect_ints, &sum), 1);
    assert_int_equal(ag_payload_path_each_packed(p, "nope", collect_ints, &sum), 0);
    ag_pack_free(p);
    json_decref(v);
}

/* ---- text -> packed without a tree: byte-identical to jansson + ag_pack_encode --------------- */

static int n_accepted, n_declined_jansson_ok;

/* The direct encoder on text either declines, or gives exactly the bytes ag_pack_encode gives for
 * jansson's tree of the same text (loaded as the store loads it). Returns 1 when it accepted. */
static int text_agrees(const char *text, size_t len)
{
    const uint8_t *d;
    size_t dl;
    int rc = ag_pack_from_text(text, len, &d, &dl);
    json_error_t err;
    json_t *v = json_loadb(text, len, JSON_ALLOW_NUL, &err);
    bool jok = v && json_is_object(v);
    if (rc == AG_PACK_DECLINED) {
        assert_null(d);
        if (jok)
            n_declined_jansson_ok++;
        json_decref(v);
        return 0;
    }
    assert_int_equal(rc, 0);
    if (!jok)
        fail_msg("direct encoder accepted what jansson refuses: %.*s", (int)len, text);
    const uint8_t *j;
    size_t jl;
    assert_int_equal(ag_pack_encode(v, &j, &jl), 0);
    if (dl != jl || memcmp(d, j, jl) != 0)
        fail_msg("packed bytes differ for: %.*s", (int)len, text);
    assert_int_equal(d == ag_pack_empty, j == ag_pack_empty);
    ag_pack_free(d);
    ag_pack_free(j);
    json_decref(v);
    n_accepted++;
    return 1;
}

static void test_text_fixed(void **state)
{
    (void)state;
    const char *yes[] = {
        "{}",
        " \t\r\n{ } \n",
        "{\"group\":7,\"tag\":\"t3\"}",
        "{\"z\": 1, \"a\": 2, \"m\": {}}",
        "{\"i\": -0, \"f\": -0.0, \"e\": 1E+2, \"g\": 0.5e-3, \"h\": 123456789012345678, "
        "\"k\": -123456789012345678, \"max\": 9223372036854775807, \"min\": -9223372036854775808, "
        "\"r\": 3.141592653589793, \"x\": 1e308}",
        "{\"s\": \"h\\u00e9llo \\u65e5\\u672c \\ud83d\\ude00 \\uD83D\\uDE00\", \"nul\": "
        "\"a\\u0000b\", \"q\": \"\\\"\\\\\\/\\b\\f\\n\\r\\t\"}",
        "{\"raw\": \"héllo 日本 😀\", \"ключ\": [true, false, null, [], {}, [[1]]]}",
        "{\"deep\": [[[1, [2, {\"x\": [3.5, null, {\"y\": []}]}]]]]}",
    };
    for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++)
        if (!text_agrees(yes[i], strlen(yes[i])))
            fail_msg("declined: %s", yes[i]);
    /* Declined (jansson decides), or refused by both. */
    const char *no[] = {
        "",
        "[]",
        "\"s\"",
        "1",
        "{\"a\":1,\"a\":2}",
        "{\"\\u0061\":1}",
        "{\"a\":01}",
        "{\"a\":1.}",
        "{\"a\":.5}",
        "{\"a\":1e}",
        "{\"a\":-}",
        "{\"a\":9223372036854775808}",
        "{\"a\":-9223372036854775809}",
        "{\"a\":1e400}",
        "{\"a\":\"\\ud800\"}",
        "{\"a\":\"\\udc00x\"}",
        "{\"a\":\"\\x\"}",
        "{\"a\":\"\x01\"}",
        "{\"a\":\"\xc0\xaf\"}",
        "{\"a\":\"\xed\xa0\x80\"}",
        "{\"a\":\"\xf4\x90\x80\x80\"}",
        "{\"a\":1,}",
        "{\"a\":1} x",
        "{\"a\" 1}",
        "{\"a\":tru}",
        "{\"a\":[1,]}",
        "{\"a\":[1 2]}",
        "{'a':1}",
        "{\"a\":1",
    };
    for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++)
        if (text_agrees(no[i], strlen(no[i])))
            fail_msg("accepted: %s", no[i]);
    /* Nesting past 32 and more than 64 members are left to jansson. */
    char deep[200];
    int at = snprintf(deep, sizeof(deep), "{\"a\":");
    for (int i = 0; i < 40; i++)
        deep[at++] = '[';
    for (int i = 0; i < 40; i++)
        deep[at++] = ']';
    snprintf(deep + at, sizeof(deep) - (size_t)at, "}");
    assert_int_equal(text_agrees(deep, strlen(deep)), 0);
    char wide[2000], narrow[2000];
    size_t wl = (size_t)snprintf(wide, sizeof(wide), "{"), nl = wl;
    memcpy(narrow, wide, wl + 1);
    for (int i = 0; i < 65; i++) {
        wl += (size_t)snprintf(wide + wl, sizeof(wide) - wl, "%s\"k%d\":%d", i ? "," : "", i, i);
        if (i < 64)
            nl += (size_t)snprintf(narrow + nl, sizeof(narrow) - nl, "%s\"k%d\":%d", i ? "," : "",
                                   i, i);
    }
    snprintf(wide + wl, sizeof(wide) - wl, "}");
    snprintf(narrow + nl, sizeof(narrow) - nl, "}");
    assert_int_equal(text_agrees(wide, strlen(wide)), 0);
    assert_int_equal(text_agrees(narrow, strlen(narrow)), 1);
}

/* Random payloads dumped by jansson in every style the store and clients may produce, then
 * mangled byte by byte: whatever the direct encoder accepts must be jansson's bytes exactly. */
static void test_text_random(void **state)
{
    (void)state;
    static const size_t styles[] = {JSON_COMPACT,
                                    0,
                                    JSON_INDENT(2),
                                    JSON_ENSURE_ASCII,
                                    JSON_COMPACT | JSON_ENSURE_ASCII,
                                    JSON_INDENT(1) | JSON_SORT_KEYS};
    static const char MANGLE[] = "{}[]\",:\\u0123456789abcdefABCDEFeE.-+ \t\ntrufalsn\x01\x7f"
                                 "\x80\xbf\xc3\xa9\xed\xf0\xf4\xff";
    int dumped = 0, dumped_ok = 0, mangled_ok = 0;
    n_accepted = n_declined_jansson_ok = 0;
    for (int it = 0; it < 20000; it++) {
        json_t *o = rand_object(0, 6);
        char *text = json_dumps(o, styles[rnd(6)]);
        assert_non_null(text);
        size_t len = strlen(text);
        dumped++;
        dumped_ok += text_agrees(text, len);
        char buf[4096];
        if (len < sizeof(buf) - 8) {
            for (int m = 0; m < 4; m++) {
                memcpy(buf, text, len);
                size_t bl = len;
                for (uint32_t e = 0, ne = 1 + rnd(3); e < ne && bl > 0; e++) {
                    size_t at = rnd((uint32_t)bl);
                    char c = MANGLE[rnd(sizeof(MANGLE) - 1)];
                    switch (rnd(3)) {
                    case 0:
                        buf[at] = c;
                        break;
                    case 1:
                        memmove(buf + at + 1, buf + at, bl - at);
                        buf[at] = c;
                        bl++;
                        break;
                    default:
                        memmove(buf + at, buf + at + 1, bl - at - 1);
                        bl--;
                    }
                }
                mangled_ok += text_agrees(buf, bl);
            }
        }
        free(text);
        json_decref(o);
    }
    print_message("text -> packed: %d of %d dumps taken directly, %d mangled texts accepted "
                  "(each equal to jansson's), %d left to jansson that it took\n",
                  dumped_ok, dumped, mangled_ok, n_declined_jansson_ok);
    /* Among dumps only the generator's 5e-324 (underflow) and JSON_ENSURE_ASCII's escaped keys
     * (ключ) are declined. */
    assert_true(dumped_ok > dumped * 8 / 10);
    assert_true(mangled_ok > 1000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fixed),
        cmocka_unit_test(test_reader),
        cmocka_unit_test(test_random_round_trip),
        cmocka_unit_test(test_filters_agree),
        cmocka_unit_test(test_path_each_packed),
        cmocka_unit_test(test_text_fixed),
        cmocka_unit_test(test_text_random),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
