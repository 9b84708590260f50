/* Unit tests for the filter compiler and evaluator (src/index/ag_filter.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <cmocka.h>

#include "index/ag_filter.h"

/* ---------- helpers ---------- */

static json_t *load(const char *text)
{
    json_error_t err;
    json_t *j = json_loads(text, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &err);
    if (!j)
        fail_msg("bad test JSON (%s): %s", err.text, text);
    return j;
}

static ag_filter_t *compile_ok(const char *text)
{
    json_t *j = load(text);
    ag_filter_t *f = NULL;
    ag_diag_t diag = {{0}};
    int rc = ag_filter_compile(j, &f, &diag);
    json_decref(j);
    if (rc != 0)
        fail_msg("filter rejected: %s -> %s", text, diag.msg);
    return f;
}

static const char *const test_vectors[] = {"", "image", NULL};

static bool has_vector_cb(const void *ud, const char *name)
{
    const char *const *names = ud;
    for (size_t i = 0; names[i]; i++)
        if (strcmp(names[i], name) == 0)
            return true;
    return false;
}

static bool match_with(const ag_filter_t *f, const char *payload, const ag_point_id_t *id)
{
    json_t *p = payload ? load(payload) : NULL;
    ag_filter_subject_t s = {
        .id = id, .payload = p, .has_vector = has_vector_cb, .ud = test_vectors};
    bool r = ag_filter_match(f, &s);
    json_decref(p);
    return r;
}

/* Compiles filter, evaluates it against payload (JSON text or NULL). */
static bool m(const char *filter, const char *payload)
{
    ag_filter_t *f = compile_ok(filter);
    bool r = match_with(f, payload, NULL);
    ag_filter_free(f);
    return r;
}

#define MATCH(f, p) assert_true(m(f, p))
#define NO_MATCH(f, p) assert_false(m(f, p))

static void expect_reject(const char *filter, const char *needle)
{
    json_t *j = load(filter);
    ag_filter_t *f = (ag_filter_t *)(uintptr_t)1;
    ag_diag_t diag = {{0}};
    int rc = ag_filter_compile(j, &f, &diag);
    json_decref(j);
    if (rc != AG_EINVAL || f != NULL)
        fail_msg("expected rejection of %s (rc %d)", filter, rc);
    if (!strstr(diag.msg, needle))
        fail_msg("diag for %s\n  was:      %s\n  expected: ...%s...", filter, diag.msg, needle);
}

/* ---------- clauses ---------- */

static void test_match_all(void **state)
{
    (void)state;
    ag_filter_t *f = (ag_filter_t *)(uintptr_t)1;
    assert_int_equal(ag_filter_compile(NULL, &f, NULL), 0);
    assert_null(f);
    json_t *null = json_null();
    f = (ag_filter_t *)(uintptr_t)1;
    assert_int_equal(ag_filter_compile(null, &f, NULL), 0);
    assert_null(f);
    json_decref(null);
    assert_true(match_with(NULL, "{\"a\":1}", NULL));
    assert_true(match_with(NULL, NULL, NULL));
    MATCH("{}", "{\"a\":1}");
    MATCH("{}", NULL);
    MATCH("{\"must\":null,\"should\":null,\"must_not\":null,\"min_should\":null}", "{}");
    MATCH("{\"must\":[]}", "{}");
    MATCH("{\"must_not\":[]}", "{}");
}

static const char *const cities[] = {
    "{\"city\":\"London\",\"color\":\"green\"}", "{\"city\":\"London\",\"color\":\"red\"}",
    "{\"city\":\"London\",\"color\":\"blue\"}",  "{\"city\":\"Berlin\",\"color\":\"red\"}",
    "{\"city\":\"Moscow\",\"color\":\"green\"}", "{\"city\":\"Moscow\",\"color\":\"blue\"}",
};

static unsigned mask_of(const char *filter)
{
    ag_filter_t *f = compile_ok(filter);
    unsigned mask = 0;
    for (size_t i = 0; i < AG_ARRAY_LEN(cities); i++)
        if (match_with(f, cities[i], NULL))
            mask |= 1u << i;
    ag_filter_free(f);
    return mask;
}

static void test_clauses(void **state)
{
    (void)state;
    const char *london = "{\"key\":\"city\",\"match\":{\"value\":\"London\"}}";
    const char *red = "{\"key\":\"color\",\"match\":{\"value\":\"red\"}}";
    char buf[512];
    snprintf(buf, sizeof(buf), "{\"must\":[%s,%s]}", london, red);
    assert_int_equal(mask_of(buf), 0x2);
    snprintf(buf, sizeof(buf), "{\"should\":[%s,%s]}", london, red);
    assert_int_equal(mask_of(buf), 0xF);
    snprintf(buf, sizeof(buf), "{\"must_not\":[%s,%s]}", london, red);
    assert_int_equal(mask_of(buf), 0x30);
    snprintf(buf, sizeof(buf), "{\"must\":[%s],\"must_not\":[%s]}", london, red);
    assert_int_equal(mask_of(buf), 0x5);
    /* a single condition instead of an array */
    snprintf(buf, sizeof(buf), "{\"must\":%s}", london);
    assert_int_equal(mask_of(buf), 0x7);
    snprintf(buf, sizeof(buf), "{\"must_not\":%s}", red);
    assert_int_equal(mask_of(buf), 0x35);
    /* nested clause: (London AND NOT red) OR Berlin */
    snprintf(buf, sizeof(buf),
             "{\"should\":[{\"must\":[%s],\"must_not\":[%s]},"
             "{\"key\":\"city\",\"match\":{\"value\":\"Berlin\"}}]}",
             london, red);
    assert_int_equal(mask_of(buf), 0xD);
    /* an empty should array matches nothing (Qdrant), an absent one everything */
    assert_int_equal(mask_of("{\"should\":[]}"), 0);
    assert_int_equal(mask_of("{\"should\":null}"), 0x3F);
    /* {} as a condition is a match-all sub-filter */
    assert_int_equal(mask_of("{\"must\":[{}]}"), 0x3F);
    assert_int_equal(mask_of("{\"must_not\":[{}]}"), 0);
}

static void test_min_should(void **state)
{
    (void)state;
    const char *conds = "[{\"key\":\"city\",\"match\":{\"value\":\"London\"}},"
                        "{\"key\":\"color\",\"match\":{\"value\":\"red\"}},"
                        "{\"key\":\"color\",\"match\":{\"any\":[\"red\",\"green\"]}}]";
    char buf[512];
    /* London+green: 2 hits; London+red: 3; London+blue: 1; Berlin+red: 2; Moscow+green: 1 */
    snprintf(buf, sizeof(buf), "{\"min_should\":{\"conditions\":%s,\"min_count\":2}}", conds);
    assert_int_equal(mask_of(buf), 0xB);
    snprintf(buf, sizeof(buf), "{\"min_should\":{\"conditions\":%s,\"min_count\":3}}", conds);
    assert_int_equal(mask_of(buf), 0x2);
    snprintf(buf, sizeof(buf), "{\"min_should\":{\"conditions\":%s,\"min_count\":4}}", conds);
    assert_int_equal(mask_of(buf), 0);
    snprintf(buf, sizeof(buf), "{\"min_should\":{\"conditions\":%s,\"min_count\":0}}", conds);
    assert_int_equal(mask_of(buf), 0x3F);
    assert_int_equal(mask_of("{\"min_should\":{\"conditions\":[],\"min_count\":1}}"), 0);
    /* combined with must */
    snprintf(buf, sizeof(buf),
             "{\"must\":{\"key\":\"city\",\"match\":{\"value\":\"London\"}},"
             "\"min_should\":{\"conditions\":%s,\"min_count\":2}}",
             conds);
    assert_int_equal(mask_of(buf), 0x3);
}

/* ---------- match ---------- */

static void test_match_value(void **state)
{
    (void)state;
    const char *s = "{\"must\":[{\"key\":\"a\",\"match\":{\"value\":\"x\"}}]}";
    MATCH(s, "{\"a\":\"x\"}");
    MATCH(s, "{\"a\":[\"y\",\"x\"]}");
    NO_MATCH(s, "{\"a\":\"X\"}");
    NO_MATCH(s, "{\"a\":\"xx\"}");
    NO_MATCH(s, "{\"a\":[[\"x\"]]}"); /* only one level of flattening */
    NO_MATCH(s, "{\"b\":\"x\"}");
    NO_MATCH(s, "{}");
    NO_MATCH(s, NULL);
    NO_MATCH(s, "{\"a\":{\"x\":1}}");
    const char *i = "{\"must\":[{\"key\":\"a\",\"match\":{\"value\":1}}]}";
    MATCH(i, "{\"a\":1}");
    MATCH(i, "{\"a\":[3,1]}");
    NO_MATCH(i, "{\"a\":1.0}");
    NO_MATCH(i, "{\"a\":1.5}");
    NO_MATCH(i, "{\"a\":\"1\"}");
    NO_MATCH(i, "{\"a\":true}");
    NO_MATCH(i, "{\"a\":2}");
    const char *neg = "{\"must\":[{\"key\":\"a\",\"match\":{\"value\":-9007199254740993}}]}";
    MATCH(neg, "{\"a\":-9007199254740993}");
    NO_MATCH(neg, "{\"a\":-9007199254740992}");
    const char *b = "{\"must\":[{\"key\":\"a\",\"match\":{\"value\":true}}]}";
    MATCH(b, "{\"a\":true}");
    MATCH(b, "{\"a\":[false,true]}");
    NO_MATCH(b, "{\"a\":false}");
    NO_MATCH(b, "{\"a\":1}");
    NO_MATCH(b, "{\"a\":\"true\"}");
    const char *f = "{\"must\":[{\"key\":\"a\",\"match\":{\"value\":false}}]}";
    MATCH(f, "{\"a\":false}");
    NO_MATCH(f, "{\"a\":null}");
    NO_MATCH(f, "{}");
    /* strings with embedded NULs compare by length */
    MATCH("{\"must\":[{\"key\":\"a\",\"match\":{\"value\":\"x\\u0000y\"}}]}",
          "{\"a\":\"x\\u0000y\"}");
    NO_MATCH("{\"must\":[{\"key\":\"a\",\"match\":{\"value\":\"x\\u0000y\"}}]}", "{\"a\":\"x\"}");
    MATCH("{\"must\":[{\"key\":\"a\",\"match\":{\"value\":\"\"}}]}", "{\"a\":\"\"}");
    NO_MATCH("{\"must\":[{\"key\":\"a\",\"match\":{\"value\":\"\"}}]}", "{\"a\":\"x\"}");
}

static void test_match_any(void **state)
{
    (void)state;
    const char *s = "{\"must\":[{\"key\":\"a\",\"match\":{\"any\":[\"x\",\"y\",\"zz\"]}}]}";
    MATCH(s, "{\"a\":\"x\"}");
    MATCH(s, "{\"a\":\"zz\"}");
    MATCH(s, "{\"a\":[\"q\",\"y\"]}");
    NO_MATCH(s, "{\"a\":\"z\"}");
    NO_MATCH(s, "{\"a\":[\"q\",\"w\"]}");
    NO_MATCH(s, "{\"a\":1}");
    NO_MATCH(s, "{}");
    const char *i = "{\"must\":[{\"key\":\"a\",\"match\":{\"any\":[5,-3,100,7]}}]}";
    MATCH(i, "{\"a\":-3}");
    MATCH(i, "{\"a\":[0,100]}");
    NO_MATCH(i, "{\"a\":5.0}");
    NO_MATCH(i, "{\"a\":\"5\"}");
    NO_MATCH(i, "{\"a\":6}");
    NO_MATCH("{\"must\":[{\"key\":\"a\",\"match\":{\"any\":[]}}]}", "{\"a\":\"x\"}");
    NO_MATCH("{\"must\":[{\"key\":\"a\",\"match\":{\"any\":[]}}]}", "{\"a\":1}");
    /* a long list (binary search path) */
    char buf[4096];
    size_t off =
        (size_t)snprintf(buf, sizeof(buf), "{\"must\":{\"key\":\"a\",\"match\":{\"any\":[");
    for (int k = 0; k < 200; k++)
        off += (size_t)snprintf(buf + off, sizeof(buf) - off, "%s%d", k ? "," : "", 3 * k);
    snprintf(buf + off, sizeof(buf) - off, "]}}}");
    MATCH(buf, "{\"a\":597}");
    MATCH(buf, "{\"a\":0}");
    NO_MATCH(buf, "{\"a\":598}");
    NO_MATCH(buf, "{\"a\":600}");
}

static void test_match_except(void **state)
{
    (void)state;
    const char *s = "{\"must\":[{\"key\":\"a\",\"match\":{\"except\":[\"black\",\"purple\"]}}]}";
    MATCH(s, "{\"a\":\"green\"}");
    NO_MATCH(s, "{\"a\":\"black\"}");
    /* Qdrant's array rule: at least one value outside the list */
    MATCH(s, "{\"a\":[\"black\",\"green\"]}");
    NO_MATCH(s, "{\"a\":[\"black\",\"purple\"]}");
    /* missing / null / empty: no values, no match */
    NO_MATCH(s, "{}");
    NO_MATCH(s, NULL);
    NO_MATCH(s, "{\"a\":null}");
    NO_MATCH(s, "{\"a\":[]}");
    NO_MATCH(s, "{\"a\":[null]}");
    MATCH(s, "{\"a\":[null,\"red\"]}");
    /* other types are "not in the list" */
    MATCH(s, "{\"a\":1}");
    MATCH(s, "{\"a\":true}");
    MATCH(s, "{\"a\":{\"x\":1}}");
    const char *i = "{\"must\":[{\"key\":\"a\",\"match\":{\"except\":[1,2]}}]}";
    MATCH(i, "{\"a\":3}");
    NO_MATCH(i, "{\"a\":2}");
    NO_MATCH(i, "{\"a\":[1,2,1]}");
    MATCH(i, "{\"a\":1.0}");
    MATCH(i, "{\"a\":\"1\"}");
    /* must_not + except is "is one of, or has no values" */
    const char *nn = "{\"must_not\":[{\"key\":\"a\",\"match\":{\"except\":[1,2]}}]}";
    MATCH(nn, "{\"a\":1}");
    MATCH(nn, "{}");
    NO_MATCH(nn, "{\"a\":5}");
    const char *e = "{\"must\":[{\"key\":\"a\",\"match\":{\"except\":[]}}]}";
    MATCH(e, "{\"a\":1}");
    MATCH(e, "{\"a\":\"x\"}");
    NO_MATCH(e, "{}");
}

static void test_match_text(void **state)
{
    (void)state;
    const char *t = "{\"must\":[{\"key\":\"d\",\"match\":{\"text\":\"good cheap\"}}]}";
    MATCH(t, "{\"d\":\"a good cheap phone\"}");
    NO_MATCH(t, "{\"d\":\"cheap good phone\"}");
    NO_MATCH(t, "{\"d\":\"good  cheap\"}");
    MATCH(t, "{\"d\":[\"x\",\"very good cheap\"]}");
    NO_MATCH(t, "{\"d\":5}");
    NO_MATCH(t, "{}");
    const char *p = "{\"must\":[{\"key\":\"d\",\"match\":{\"phrase\":\"ood ch\"}}]}";
    MATCH(p, "{\"d\":\"a good cheap phone\"}");
    NO_MATCH(p, "{\"d\":\"good\"}");
    const char *a = "{\"must\":[{\"key\":\"d\",\"match\":{\"text_any\":\"  cheap\\tfast  \"}}]}";
    MATCH(a, "{\"d\":\"really fast\"}");
    MATCH(a, "{\"d\":\"cheapest\"}");
    NO_MATCH(a, "{\"d\":\"slow and pricey\"}");
    NO_MATCH("{\"must\":[{\"key\":\"d\",\"match\":{\"text_any\":\"   \"}}]}", "{\"d\":\"x\"}");
    MATCH("{\"must\":[{\"key\":\"d\",\"match\":{\"text\":\"\"}}]}", "{\"d\":\"x\"}");
    MATCH("{\"must\":[{\"key\":\"d\",\"match\":{\"text\":\"\\u00e9t\\u00e9\"}}]}",
          "{\"d\":\"un \\u00e9t\\u00e9 chaud\"}");
}

/* ---------- range, values_count ---------- */

static void test_range_numbers(void **state)
{
    (void)state;
    const char *r = "{\"must\":[{\"key\":\"p\",\"range\":{\"gte\":10,\"lt\":20.5}}]}";
    MATCH(r, "{\"p\":10}");
    MATCH(r, "{\"p\":10.0}");
    MATCH(r, "{\"p\":20.4999}");
    NO_MATCH(r, "{\"p\":20.5}");
    NO_MATCH(r, "{\"p\":9.999}");
    MATCH(r, "{\"p\":[1,2,15]}");
    NO_MATCH(r, "{\"p\":[1,2,25]}");
    NO_MATCH(r, "{\"p\":\"15\"}");
    NO_MATCH(r, "{\"p\":true}");
    NO_MATCH(r, "{}");
    const char *g = "{\"must\":[{\"key\":\"p\",\"range\":{\"gt\":-1.5,\"lte\":0}}]}";
    MATCH(g, "{\"p\":0}");
    MATCH(g, "{\"p\":-1}");
    NO_MATCH(g, "{\"p\":-1.5}");
    NO_MATCH(g, "{\"p\":0.001}");
    /* no bounds: any number */
    MATCH("{\"must\":[{\"key\":\"p\",\"range\":{}}]}", "{\"p\":-1e300}");
    NO_MATCH("{\"must\":[{\"key\":\"p\",\"range\":{}}]}", "{\"p\":\"x\"}");
    MATCH("{\"must\":[{\"key\":\"p\",\"range\":{\"lt\":null,\"gt\":1}}]}", "{\"p\":2}");
}

static void test_range_datetime(void **state)
{
    (void)state;
    const char *r = "{\"must\":[{\"key\":\"t\",\"range\":{\"gte\":\"2023-02-08T10:49:00Z\"}}]}";
    MATCH(r, "{\"t\":\"2023-02-08T10:49:00Z\"}");
    MATCH(r, "{\"t\":\"2023-02-08T10:49:00.000001Z\"}");
    NO_MATCH(r, "{\"t\":\"2023-02-08T10:48:59.999999Z\"}");
    MATCH(r, "{\"t\":\"2023-02-08T11:49:00+01:00\"}");
    NO_MATCH(r, "{\"t\":\"2023-02-08T11:48:00+01:00\"}");
    MATCH(r, "{\"t\":\"2023-02-08T09:49:00-01:00\"}");
    MATCH(r, "{\"t\":\"2023-02-08T05:19:00-0530\"}");
    NO_MATCH(r, "{\"t\":\"2023-02-08T05:18:00-0530\"}");
    MATCH(r, "{\"t\":\"2023-02-08 10:49:00\"}");
    MATCH(r, "{\"t\":\"2023-02-08t10:49:00z\"}");
    MATCH(r, "{\"t\":\"2023-02-08T10:49\"}");
    NO_MATCH(r, "{\"t\":\"2023-02-08\"}");
    MATCH(r, "{\"t\":\"2023-02-09\"}");
    MATCH(r, "{\"t\":[\"2001-01-01\",\"2024-01-01\"]}");
    NO_MATCH(r, "{\"t\":\"garbage\"}");
    NO_MATCH(r, "{\"t\":\"2024-13-01\"}");
    NO_MATCH(r, "{\"t\":\"2024-02-30\"}");
    NO_MATCH(r, "{\"t\":\"2024-02-08T25:00:00Z\"}");
    NO_MATCH(r, "{\"t\":\"2024-02-08T10:00:00Zjunk\"}");
    NO_MATCH(r, "{\"t\":\"2024-02-08T10:00:00.Z\"}");
    NO_MATCH(r, "{\"t\":1675853340}");
    NO_MATCH(r, "{}");
    const char *d = "{\"must\":[{\"key\":\"t\",\"range\":{\"lt\":\"2023-02-08\","
                    "\"gt\":\"1969-12-31T23:59:58.5+00:00\"}}]}";
    MATCH(d, "{\"t\":\"2023-02-07T23:59:59.999999Z\"}");
    NO_MATCH(d, "{\"t\":\"2023-02-08T00:00:00Z\"}");
    MATCH(d, "{\"t\":\"1969-12-31T23:59:59Z\"}");
    NO_MATCH(d, "{\"t\":\"1969-12-31T23:59:58.5Z\"}");
    MATCH(d, "{\"t\":\"2020-02-29T12:00:00Z\"}");
    NO_MATCH(d, "{\"t\":\"2019-02-29T12:00:00Z\"}");
    /* fractions beyond microseconds are truncated */
    const char *f = "{\"must\":[{\"key\":\"t\",\"range\":{\"gt\":\"2023-02-08T10:49:00.5Z\"}}]}";
    MATCH(f, "{\"t\":\"2023-02-08T10:49:00.500001Z\"}");
    NO_MATCH(f, "{\"t\":\"2023-02-08T10:49:00.5000009Z\"}");
    NO_MATCH(f, "{\"t\":\"2023-02-08T10:49:00.5Z\"}");
}

static void test_values_count(void **state)
{
    (void)state;
    const char *c = "{\"must\":[{\"key\":\"c\",\"values_count\":{\"gt\":1,\"lte\":3}}]}";
    MATCH(c, "{\"c\":[1,2]}");
    MATCH(c, "{\"c\":[1,null,{\"x\":1}]}");
    NO_MATCH(c, "{\"c\":[1,2,3,4]}");
    NO_MATCH(c, "{\"c\":5}");
    NO_MATCH(c, "{\"c\":[5]}");
    NO_MATCH(c, "{}");
    const char *zero = "{\"must\":[{\"key\":\"c\",\"values_count\":{\"lt\":1}}]}";
    MATCH(zero, "{}");
    MATCH(zero, NULL);
    MATCH(zero, "{\"c\":null}");
    MATCH(zero, "{\"c\":[]}");
    NO_MATCH(zero, "{\"c\":\"x\"}");
    NO_MATCH(zero, "{\"c\":{}}");
    const char *one = "{\"must\":[{\"key\":\"c\",\"values_count\":{\"gte\":1,\"lt\":2}}]}";
    MATCH(one, "{\"c\":\"x\"}");
    MATCH(one, "{\"c\":[null]}");
    /* total over several values at the path */
    const char *tot = "{\"must\":[{\"key\":\"l[].c\",\"values_count\":{\"gte\":4}}]}";
    MATCH(tot, "{\"l\":[{\"c\":[1,2]},{\"c\":3},{\"c\":[4]}]}");
    NO_MATCH(tot, "{\"l\":[{\"c\":[1,2]},{\"c\":3},{\"d\":[4]}]}");
}

/* ---------- is_empty, is_null ---------- */

static void test_is_empty_is_null(void **state)
{
    (void)state;
    const char *e = "{\"must\":[{\"is_empty\":{\"key\":\"a\"}}]}";
    MATCH(e, "{}");
    MATCH(e, NULL);
    MATCH(e, "{\"a\":null}");
    MATCH(e, "{\"a\":[]}");
    NO_MATCH(e, "{\"a\":[null]}");
    NO_MATCH(e, "{\"a\":0}");
    NO_MATCH(e, "{\"a\":\"\"}");
    NO_MATCH(e, "{\"a\":{}}");
    NO_MATCH(e, "{\"a\":false}");
    const char *en = "{\"must\":[{\"is_empty\":{\"key\":\"l[].a\"}}]}";
    MATCH(en, "{\"l\":[{\"a\":[]},{\"a\":null},{\"b\":1}]}");
    NO_MATCH(en, "{\"l\":[{\"a\":[]},{\"a\":1}]}");

    const char *n = "{\"must\":[{\"is_null\":{\"key\":\"a\"}}]}";
    MATCH(n, "{\"a\":null}");
    NO_MATCH(n, "{}");
    NO_MATCH(n, NULL);
    NO_MATCH(n, "{\"a\":[]}");
    NO_MATCH(n, "{\"a\":[null]}"); /* Qdrant: an array is not null */
    NO_MATCH(n, "{\"a\":0}");
    NO_MATCH(n, "{\"a\":\"null\"}");
    const char *nn = "{\"must\":[{\"is_null\":{\"key\":\"l[].a\"}}]}";
    MATCH(nn, "{\"l\":[{\"a\":1},{\"a\":null}]}");
    NO_MATCH(nn, "{\"l\":[{\"a\":1},{\"b\":null}]}");
    MATCH("{\"must\":[{\"is_null\":{\"key\":\"a[]\"}}]}", "{\"a\":[1,null]}");

    /* field-condition forms: {"key": k, "is_empty": bool} */
    MATCH("{\"must\":[{\"key\":\"a\",\"is_empty\":true}]}", "{\"a\":[]}");
    NO_MATCH("{\"must\":[{\"key\":\"a\",\"is_empty\":true}]}", "{\"a\":1}");
    MATCH("{\"must\":[{\"key\":\"a\",\"is_empty\":false}]}", "{\"a\":1}");
    NO_MATCH("{\"must\":[{\"key\":\"a\",\"is_empty\":false}]}", "{}");
    MATCH("{\"must\":[{\"key\":\"a\",\"is_null\":true}]}", "{\"a\":null}");
    NO_MATCH("{\"must\":[{\"key\":\"a\",\"is_null\":false}]}", "{\"a\":null}");
    MATCH("{\"must\":[{\"key\":\"a\",\"is_null\":false}]}", "{}");
}

/* ---------- has_id, has_vector ---------- */

static void test_has_id(void **state)
{
    (void)state;
    ag_filter_t *f =
        compile_ok("{\"must\":[{\"has_id\":[7,1,\"550e8400-e29b-41d4-a716-446655440000\","
                   "9223372036854775807]}]}");
    ag_point_id_t id;
    assert_int_equal(ag_id_parse_str("7", &id, NULL), 0);
    assert_true(match_with(f, "{}", &id));
    assert_int_equal(ag_id_parse_str("9223372036854775807", &id, NULL), 0);
    assert_true(match_with(f, NULL, &id));
    assert_int_equal(ag_id_parse_str("550E8400E29B41D4A716446655440000", &id, NULL), 0);
    assert_true(match_with(f, "{}", &id));
    assert_int_equal(ag_id_parse_str("2", &id, NULL), 0);
    assert_false(match_with(f, "{}", &id));
    assert_int_equal(ag_id_parse_str("550e8400-e29b-41d4-a716-446655440001", &id, NULL), 0);
    assert_false(match_with(f, "{}", &id));
    assert_false(match_with(f, "{}", NULL));
    ag_filter_free(f);

    f = compile_ok("{\"must_not\":{\"has_id\":[1]}}");
    assert_int_equal(ag_id_parse_str("1", &id, NULL), 0);
    assert_false(match_with(f, "{}", &id));
    assert_int_equal(ag_id_parse_str("3", &id, NULL), 0);
    assert_true(match_with(f, "{}", &id));
    ag_filter_free(f);

    f = compile_ok("{\"must\":{\"has_id\":[]}}");
    assert_false(match_with(f, "{}", &id));
    ag_filter_free(f);
}

static void test_has_vector(void **state)
{
    (void)state;
    MATCH("{\"must\":[{\"has_vector\":\"image\"}]}", "{}");
    MATCH("{\"must\":[{\"has_vector\":\"\"}]}", "{}");
    NO_MATCH("{\"must\":[{\"has_vector\":\"text\"}]}", "{}");
    MATCH("{\"must_not\":[{\"has_vector\":\"text\"}]}", "{}");
    /* no callback: false */
    ag_filter_t *f = compile_ok("{\"must\":[{\"has_vector\":\"image\"}]}");
    ag_filter_subject_t s = {0};
    assert_false(ag_filter_match(f, &s));
    ag_filter_free(f);
}

/* ---------- paths and nested ---------- */

static void count_cb(const json_t *v, void *ud)
{
    (void)v;
    (*(int *)ud)++;
}

static size_t each(const char *payload, const char *path)
{
    json_t *p = load(payload);
    int calls = 0;
    size_t n = ag_payload_path_each(p, path, count_cb, &calls);
    assert_int_equal((size_t)calls, n);
    json_decref(p);
    return n;
}

static void sum_cb(const json_t *v, void *ud)
{
    *(json_int_t *)ud += json_integer_value(v);
}

static void test_paths(void **state)
{
    (void)state;
    const char *doc = "{\"a\":{\"b\":[1,2,3],\"c\":{\"d\":4}},\"arr\":[{\"x\":1,\"y\":[10,20]},"
                      "{\"x\":2},{\"z\":3},5],\"s\":\"v\",\"k.e y\":7,\"mat\":[[1,2],[3]]}";
    assert_int_equal(each(doc, "a.b"), 3);
    assert_int_equal(each(doc, "a.b[]"), 3);
    assert_int_equal(each(doc, "a.b[1]"), 1);
    assert_int_equal(each(doc, "a.b[3]"), 0);
    assert_int_equal(each(doc, "a.c.d"), 1);
    assert_int_equal(each(doc, "a.c"), 1);
    assert_int_equal(each(doc, "a"), 1);
    assert_int_equal(each(doc, "arr[].x"), 2);
    assert_int_equal(each(doc, "arr[].y"), 2);
    assert_int_equal(each(doc, "arr[]"), 4);
    assert_int_equal(each(doc, "arr"), 4);
    assert_int_equal(each(doc, "arr.x"), 0); /* no implicit descent into arrays */
    assert_int_equal(each(doc, "arr[0].y"), 2);
    assert_int_equal(each(doc, "arr[3]"), 1);
    assert_int_equal(each(doc, "s[]"), 0);
    assert_int_equal(each(doc, "s.x"), 0);
    assert_int_equal(each(doc, "\"k.e y\""), 1);
    assert_int_equal(each(doc, "mat"), 2);
    assert_int_equal(each(doc, "mat[]"), 3);
    assert_int_equal(each(doc, "mat[][]"), 3);
    assert_int_equal(each(doc, "missing"), 0);
    assert_int_equal(each(doc, "a["), 0);
    assert_int_equal(ag_payload_path_each(NULL, "a", count_cb, NULL), 0);
    json_t *p = load(doc);
    json_int_t sum = 0;
    assert_int_equal(ag_payload_path_each(p, "arr[].y", sum_cb, &sum), 2);
    assert_int_equal(sum, 30);
    sum = 0;
    assert_int_equal(ag_payload_path_each(p, "a.b", sum_cb, &sum), 3);
    assert_int_equal(sum, 6);
    assert_int_equal(ag_payload_path_each(p, "a.b", NULL, NULL), 3);
    json_decref(p);

    const char *good[] = {"a",
                          "a.b",
                          "a[].b",
                          "a[0].b",
                          "a[12][3]",
                          "a[][]",
                          "_x-1.Y_2",
                          "\"a.b\".c",
                          "a.\"[x]\"",
                          "\"\"",
                          "caf\xc3\xa9.t\xc3\xa9"};
    for (size_t i = 0; i < AG_ARRAY_LEN(good); i++)
        if (ag_payload_path_check(good[i], NULL) != 0)
            fail_msg("path %s rejected", good[i]);
    const char *badp[] = {
        "",    ".a",  "a.",   "a..b",  "a[",           "a[x]", "a[1",           "a]",
        "a b", "[0]", "a[]b", "a.\"b", "a.\"b\\\"c\"", "a$",   "a[1234567890]", "a[-1]"};
    for (size_t i = 0; i < AG_ARRAY_LEN(badp); i++) {
        ag_diag_t diag = {{0}};
        if (ag_payload_path_check(badp[i], &diag) != AG_EINVAL)
            fail_msg("path %s accepted", badp[i]);
        assert_non_null(strstr(diag.msg, "invalid key path"));
    }
    char longp[300];
    memset(longp, 'k', sizeof(longp));
    longp[255] = '\0';
    assert_int_equal(ag_payload_path_check(longp, NULL), 0);
    longp[255] = 'k';
    longp[256] = '\0';
    assert_int_equal(ag_payload_path_check(longp, NULL), AG_EINVAL);
    assert_int_equal(ag_payload_path_check(NULL, NULL), AG_EINVAL);

    /* the same paths through conditions */
    MATCH("{\"must\":{\"key\":\"arr[].x\",\"match\":{\"value\":2}}}", doc);
    NO_MATCH("{\"must\":{\"key\":\"arr[0].x\",\"match\":{\"value\":2}}}", doc);
    MATCH("{\"must\":{\"key\":\"arr[1].x\",\"match\":{\"value\":2}}}", doc);
    MATCH("{\"must\":{\"key\":\"arr[].y\",\"match\":{\"value\":20}}}", doc);
    MATCH("{\"must\":{\"key\":\"\\\"k.e y\\\"\",\"match\":{\"value\":7}}}", doc);
    MATCH("{\"must\":{\"key\":\"a.c.d\",\"range\":{\"gt\":3}}}", doc);
    NO_MATCH("{\"must\":{\"key\":\"arr.x\",\"match\":{\"value\":1}}}", doc);
}

static void test_nested(void **state)
{
    (void)state;
    const char *doc = "{\"dinos\":[{\"name\":\"t-rex\",\"likes\":\"meat\"},"
                      "{\"name\":\"diplo\",\"likes\":\"leaves\"}]}";
    /* plain array paths mix elements: both conditions hold, on different elements */
    MATCH("{\"must\":[{\"key\":\"dinos[].name\",\"match\":{\"value\":\"diplo\"}},"
          "{\"key\":\"dinos[].likes\",\"match\":{\"value\":\"meat\"}}]}",
          doc);
    /* nested evaluates the whole filter per element */
    const char *n = "{\"must\":[{\"nested\":{\"key\":\"dinos\",\"filter\":{\"must\":["
                    "{\"key\":\"name\",\"match\":{\"value\":\"diplo\"}},"
                    "{\"key\":\"likes\",\"match\":{\"value\":\"meat\"}}]}}}]}";
    NO_MATCH(n, doc);
    const char *n2 = "{\"must\":[{\"nested\":{\"key\":\"dinos[]\",\"filter\":{\"must\":["
                     "{\"key\":\"name\",\"match\":{\"value\":\"diplo\"}}],\"must_not\":["
                     "{\"key\":\"likes\",\"match\":{\"value\":\"meat\"}}]}}}]}";
    MATCH(n2, doc);
    NO_MATCH(n2, "{\"dinos\":{\"name\":\"diplo\"}}"); /* not an array */
    NO_MATCH(n2, "{\"dinos\":[\"diplo\",null]}");
    NO_MATCH(n2, "{}");
    NO_MATCH(n2, NULL);
    /* nested inside nested, keys relative to each element */
    const char *nn = "{\"must\":{\"nested\":{\"key\":\"a\",\"filter\":{\"must\":{\"nested\":{"
                     "\"key\":\"b\",\"filter\":{\"must\":[{\"key\":\"c\",\"match\":{\"value\":1}},"
                     "{\"key\":\"d\",\"match\":{\"value\":2}}]}}}}}}}";
    MATCH(nn, "{\"a\":[{\"b\":[{\"c\":1},{\"c\":1,\"d\":2}]}]}");
    NO_MATCH(nn, "{\"a\":[{\"b\":[{\"c\":1},{\"d\":2}]}]}");
    /* has_id inside nested is false (ids are not visible there) */
    ag_filter_t *f = compile_ok("{\"must\":{\"nested\":{\"key\":\"a\",\"filter\":{\"must_not\":"
                                "{\"has_id\":[1]}}}}}");
    ag_point_id_t id;
    assert_int_equal(ag_id_parse_str("1", &id, NULL), 0);
    assert_true(match_with(f, "{\"a\":[{}]}", &id));
    ag_filter_free(f);
    /* is_empty inside nested */
    MATCH("{\"must\":{\"nested\":{\"key\":\"a\",\"filter\":{\"must\":{\"is_empty\":{\"key\":\"x\"}}"
          "}}}}",
          "{\"a\":[{\"x\":1},{\"y\":1}]}");
}

/* ---------- geo ---------- */

static void test_geo(void **state)
{
    (void)state;
    const char *berlin = "{\"loc\":{\"lon\":13.404954,\"lat\":52.520008}}";
    const char *near = "{\"loc\":{\"lon\":13.41,\"lat\":52.52}}";
    const char *moscow = "{\"loc\":{\"lon\":37.6173,\"lat\":55.7558}}";
    const char *both = "{\"loc\":[{\"lon\":37.6173,\"lat\":55.7558},"
                       "{\"lon\":13.404954,\"lat\":52.520008}]}";
    const char *r = "{\"must\":{\"key\":\"loc\",\"geo_radius\":{\"center\":{\"lon\":13.404954,"
                    "\"lat\":52.520008},\"radius\":1000}}}";
    MATCH(r, berlin);
    MATCH(r, near);
    NO_MATCH(r, moscow);
    MATCH(r, both);
    NO_MATCH(r, "{\"loc\":\"Berlin\"}");
    NO_MATCH(r, "{\"loc\":{\"lon\":13.404954}}");
    NO_MATCH(r, "{}");
    /* Berlin - Moscow is about 1609 km */
    const char *far = "{\"must\":{\"key\":\"loc\",\"geo_radius\":{\"center\":{\"lon\":13.404954,"
                      "\"lat\":52.520008},\"radius\":1615000}}}";
    const char *short_ = "{\"must\":{\"key\":\"loc\",\"geo_radius\":{\"center\":{\"lon\":13.404954,"
                         "\"lat\":52.520008},\"radius\":1600000}}}";
    MATCH(far, moscow);
    NO_MATCH(short_, moscow);
    NO_MATCH("{\"must\":{\"key\":\"loc\",\"geo_radius\":{\"center\":{\"lon\":13.404954,"
             "\"lat\":52.520008},\"radius\":0}}}",
             berlin);

    const char *box = "{\"must\":{\"key\":\"loc\",\"geo_bounding_box\":{\"top_left\":{\"lon\":10,"
                      "\"lat\":55},\"bottom_right\":{\"lon\":20,\"lat\":50}}}}";
    MATCH(box, berlin);
    NO_MATCH(box, moscow);
    MATCH(box, both);
    NO_MATCH(box, "{\"loc\":{\"lon\":10,\"lat\":52}}"); /* edges are outside */
    const char *anti = "{\"must\":{\"key\":\"loc\",\"geo_bounding_box\":{\"top_left\":{\"lon\":170,"
                       "\"lat\":10},\"bottom_right\":{\"lon\":-170,\"lat\":-10}}}}";
    MATCH(anti, "{\"loc\":{\"lon\":175,\"lat\":0}}");
    MATCH(anti, "{\"loc\":{\"lon\":-175,\"lat\":5}}");
    NO_MATCH(anti, "{\"loc\":{\"lon\":0,\"lat\":0}}");
    NO_MATCH(anti, "{\"loc\":{\"lon\":175,\"lat\":11}}");

    const char *poly = "{\"must\":{\"key\":\"loc\",\"geo_polygon\":{\"exterior\":{\"points\":["
                       "{\"lon\":0,\"lat\":0},{\"lon\":10,\"lat\":0},{\"lon\":10,\"lat\":10},"
                       "{\"lon\":0,\"lat\":10},{\"lon\":0,\"lat\":0}]},\"interiors\":[{\"points\":["
                       "{\"lon\":4,\"lat\":4},{\"lon\":6,\"lat\":4},{\"lon\":6,\"lat\":6},"
                       "{\"lon\":4,\"lat\":6},{\"lon\":4,\"lat\":4}]}]}}}";
    MATCH(poly, "{\"loc\":{\"lon\":1,\"lat\":1}}");
    MATCH(poly, "{\"loc\":{\"lon\":9.5,\"lat\":5}}");
    NO_MATCH(poly, "{\"loc\":{\"lon\":5,\"lat\":5}}");
    NO_MATCH(poly, "{\"loc\":{\"lon\":11,\"lat\":5}}");
    NO_MATCH(poly, "{\"loc\":{\"lon\":5,\"lat\":-0.5}}");
    MATCH(poly, "{\"loc\":[{\"lon\":5,\"lat\":5},{\"lon\":1,\"lat\":2}]}");
    /* a concave (L-shaped) ring without interiors */
    const char *ell = "{\"must\":{\"key\":\"loc\",\"geo_polygon\":{\"exterior\":{\"points\":["
                      "{\"lon\":0,\"lat\":0},{\"lon\":4,\"lat\":0},{\"lon\":4,\"lat\":1},"
                      "{\"lon\":1,\"lat\":1},{\"lon\":1,\"lat\":4},{\"lon\":0,\"lat\":4},"
                      "{\"lon\":0,\"lat\":0}]},\"interiors\":null}}}";
    MATCH(ell, "{\"loc\":{\"lon\":0.5,\"lat\":3}}");
    MATCH(ell, "{\"loc\":{\"lon\":3,\"lat\":0.5}}");
    NO_MATCH(ell, "{\"loc\":{\"lon\":3,\"lat\":3}}");
}

/* ---------- rejection ---------- */

static void test_reject(void **state)
{
    (void)state;
    static const struct {
        const char *filter, *diag;
    } cases[] = {
        {"[1]", "filter: expected a filter object"},
        {"5", "filter: expected a filter object"},
        {"{\"foo\":1}", "filter.foo: unknown field"},
        {"{\"m\\u00fcst\":1}", "filter.m\xc3\xbcst: unknown field"},
        {"{\"should\":5}", "filter.should: expected a condition or an array of conditions"},
        {"{\"must\":[5]}", "filter.must[0]: expected a condition object"},
        {"{\"must\":[{\"key\":\"a\",\"match\":{\"value\":1}},{\"key\":\"b\",\"range\":{\"gte\":"
         "true}}]}",
         "filter.must[1].range.gte: expected a number"},
        {"{\"must\":[{\"key\":\"a\",\"match\":{\"value\":1}},{\"key\":\"b\",\"range\":{\"gte\":"
         "\"x\"}}]}",
         "filter.must[1].range.gte: expected an RFC 3339 datetime"},
        {"{\"must\":{\"key\":\"b\",\"range\":{\"gt\":\"2023-02-30\"}}}",
         "filter.must.range.gt: expected an RFC 3339 datetime"},
        {"{\"must\":[{\"key\":\"a\",\"range\":{\"gt\":1,\"lt\":\"2023-01-01\"}}]}",
         "filter.must[0].range.gt: expected an RFC 3339 datetime string like the other bounds"},
        {"{\"must\":[{\"key\":\"a\",\"range\":{\"gt\":1,\"from\":2}}]}",
         "filter.must[0].range.from: unknown field"},
        {"{\"must\":{\"key\":\"a\",\"match\":{\"valu\":1}}}",
         "filter.must.match.valu: unknown field"},
        {"{\"must\":[{\"key\":\"a\",\"match\":{\"value\":1.5}}]}",
         "filter.must[0].match.value: expected a string, an integer or a bool"},
        {"{\"must\":[{\"key\":\"a\",\"match\":{\"value\":null}}]}",
         "filter.must[0].match.value: expected a string"},
        {"{\"must\":[{\"key\":\"a\",\"match\":{\"any\":[1,\"x\"]}}]}",
         "filter.must[0].match.any[1]: expected an integer"},
        {"{\"must\":[{\"key\":\"a\",\"match\":{\"except\":[\"x\",true]}}]}",
         "filter.must[0].match.except[1]: expected a string or an integer"},
        {"{\"must\":[{\"key\":\"a\",\"match\":{\"any\":\"x\"}}]}",
         "filter.must[0].match.any: expected an array"},
        {"{\"must\":[{\"key\":\"a\",\"match\":{}}]}",
         "filter.must[0].match: expected exactly one of"},
        {"{\"must\":[{\"key\":\"a\",\"match\":{\"value\":1,\"any\":[1]}}]}",
         "filter.must[0].match: expected exactly one of"},
        {"{\"must\":[{\"key\":\"a\",\"match\":{\"text\":5}}]}",
         "filter.must[0].match.text: expected a string"},
        {"{\"must\":[{\"key\":\"a\",\"match\":5}]}", "filter.must[0].match: expected an object"},
        {"{\"must\":[{\"key\":\"a\",\"match\":{\"value\":1},\"range\":{\"gt\":1}}]}",
         "filter.must[0].range: only one condition"},
        {"{\"must\":[{\"key\":\"a\",\"match\":{\"value\":1},\"bogus\":1}]}",
         "filter.must[0].bogus: unknown field"},
        {"{\"must\":[{\"key\":\"\",\"match\":{\"value\":1}}]}",
         "filter.must[0].key: invalid key path: must not be empty"},
        {"{\"must\":[{\"key\":\"a[\",\"match\":{\"value\":1}}]}",
         "filter.must[0].key: invalid key path"},
        {"{\"must\":[{\"key\":\"a..b\",\"match\":{\"value\":1}}]}",
         "filter.must[0].key: invalid key path"},
        {"{\"must\":[{\"key\":\"a b\",\"match\":{\"value\":1}}]}",
         "filter.must[0].key: invalid key path"},
        {"{\"must\":[{\"key\":\"a\\u0000b\",\"match\":{\"value\":1}}]}",
         "filter.must[0].key: invalid key path"},
        {"{\"must\":[{\"key\":5,\"match\":{\"value\":1}}]}",
         "filter.must[0].key: expected a string"},
        {"{\"min_should\":{\"conditions\":[],\"min_count\":-1}}",
         "filter.min_should.min_count: expected a non-negative integer"},
        {"{\"min_should\":{\"conditions\":[]}}", "filter.min_should: missing field min_count"},
        {"{\"min_should\":{\"conditions\":{},\"min_count\":1}}",
         "filter.min_should.conditions: expected an array"},
        {"{\"min_should\":{\"conditions\":[{\"key\":\"a\",\"match\":{\"value\":1}},{\"x\":1}],"
         "\"min_count\":1}}",
         "filter.min_should.conditions[1].x: unknown field"},
        {"{\"min_should\":[]}", "filter.min_should: expected an object"},
        {"{\"must\":[{\"key\":\"a\",\"values_count\":{\"gt\":1.5}}]}",
         "filter.must[0].values_count.gt: expected a non-negative integer"},
        {"{\"must\":[{\"key\":\"a\",\"values_count\":{\"lt\":-1}}]}",
         "filter.must[0].values_count.lt: expected a non-negative integer"},
        {"{\"must\":[{\"key\":\"g\",\"geo_radius\":{\"center\":{\"lon\":200,\"lat\":0},\"radius\":"
         "5}}]}",
         "filter.must[0].geo_radius.center.lon: longitude must be between -180 and 180"},
        {"{\"must\":[{\"key\":\"g\",\"geo_radius\":{\"center\":{\"lon\":0,\"lat\":-90.5},"
         "\"radius\":5}}]}",
         "filter.must[0].geo_radius.center.lat: latitude must be between -90 and 90"},
        {"{\"must\":[{\"key\":\"g\",\"geo_radius\":{\"center\":{\"lon\":0,\"lat\":0},\"radius\":-1}"
         "}]}",
         "filter.must[0].geo_radius.radius: must not be negative"},
        {"{\"must\":[{\"key\":\"g\",\"geo_radius\":{\"center\":{\"lon\":0},\"radius\":1}}]}",
         "filter.must[0].geo_radius.center: missing field lat"},
        {"{\"must\":[{\"key\":\"g\",\"geo_radius\":{\"center\":{\"lon\":0,\"lat\":0,\"alt\":1},"
         "\"radius\":1}}]}",
         "filter.must[0].geo_radius.center.alt: unknown field"},
        {"{\"must\":[{\"key\":\"g\",\"geo_bounding_box\":{\"top_left\":{\"lon\":0,\"lat\":\"1\"},"
         "\"bottom_right\":{\"lon\":1,\"lat\":0}}}]}",
         "filter.must[0].geo_bounding_box.top_left.lat: expected a number"},
        {"{\"must\":[{\"key\":\"g\",\"geo_bounding_box\":{\"top_left\":{\"lon\":0,\"lat\":1}}}]}",
         "filter.must[0].geo_bounding_box: missing field bottom_right"},
        {"{\"must\":[{\"key\":\"g\",\"geo_polygon\":{\"exterior\":{\"points\":[{\"lon\":0,\"lat\":"
         "0},"
         "{\"lon\":1,\"lat\":0},{\"lon\":0,\"lat\":0}]}}}]}",
         "filter.must[0].geo_polygon.exterior.points: a polygon ring needs at least 4 points"},
        {"{\"must\":[{\"key\":\"g\",\"geo_polygon\":{\"exterior\":{\"points\":[{\"lon\":0,\"lat\":"
         "0},"
         "{\"lon\":1,\"lat\":0},{\"lon\":1,\"lat\":1},{\"lon\":0,\"lat\":1}]}}}]}",
         "filter.must[0].geo_polygon.exterior.points: the first and the last point must be the "
         "same"},
        {"{\"must\":[{\"key\":\"g\",\"geo_polygon\":{\"exterior\":{\"points\":[{\"lon\":0,\"lat\":"
         "0},"
         "{\"lon\":1,\"lat\":0},{\"lon\":1,\"lat\":1},{\"lon\":0,\"lat\":0}]},\"interiors\":[{"
         "\"points\":"
         "[{\"lon\":0,\"lat\":0},{\"lon\":1,\"lat\":0},{\"lon\":1,\"lat\":91},{\"lon\":0,\"lat\":0}"
         "]}]}}]}",
         "filter.must[0].geo_polygon.interiors[0].points[2].lat: latitude must be between"},
        {"{\"must\":[{\"key\":\"g\",\"geo_polygon\":{\"exterior\":{\"points\":[]},\"interiors\":5}}"
         "]}",
         "filter.must[0].geo_polygon.interiors: expected an array"},
        {"{\"must\":[{\"has_id\":[1,-1]}]}", "filter.must[0].has_id[1]: point id"},
        {"{\"must\":[{\"has_id\":[\"42\"]}]}", "filter.must[0].has_id[0]: point id"},
        {"{\"must\":[{\"has_id\":\"x\"}]}",
         "filter.must[0].has_id: expected an array of point ids"},
        {"{\"must\":[{\"has_vector\":1}]}", "filter.must[0].has_vector: expected a vector name"},
        {"{\"must\":[{\"has_vector\":\"v\",\"key2\":1}]}", "filter.must[0].key2: unknown field"},
        {"{\"must\":[{\"is_empty\":{\"key\":\"a\",\"x\":1}}]}",
         "filter.must[0].is_empty.x: unknown field"},
        {"{\"must\":[{\"is_null\":\"a\"}]}", "filter.must[0].is_null: expected an object with key"},
        {"{\"must\":[{\"is_null\":{}}]}", "filter.must[0].is_null: missing field key"},
        {"{\"must\":[{\"is_empty\":{\"key\":\"a\"},\"must\":[]}]}",
         "filter.must[0].must: unknown field"},
        {"{\"must\":[{\"key\":\"a\",\"is_empty\":1}]}", "filter.must[0].is_empty: expected a bool"},
        {"{\"must\":[{\"nested\":{\"key\":\"a\",\"filter\":{\"must\":[{\"key\":\"b\",\"match\":"
         "{\"vlue\":1}}]}}}]}",
         "filter.must[0].nested.filter.must[0].match.vlue: unknown field"},
        {"{\"must\":[{\"nested\":{\"key\":\"a\"}}]}",
         "filter.must[0].nested: missing field filter"},
        {"{\"must\":[{\"nested\":{\"key\":\"a.\",\"filter\":{}}}]}",
         "filter.must[0].nested.key: invalid key path"},
        {"{\"must\":[{\"nested\":{\"key\":\"a\",\"filter\":[]}}]}",
         "filter.must[0].nested.filter: expected a filter object"},
        {"{\"must\":[{\"must\":[{\"should\":{\"key\":\"a\",\"match\":{\"value\":1},\"x\":2}}]}]}",
         "filter.must[0].must[0].should.x: unknown field"},
    };
    for (size_t i = 0; i < AG_ARRAY_LEN(cases); i++)
        expect_reject(cases[i].filter, cases[i].diag);

    /* an overlong key and an overlong unknown field name are clipped, not overflowed */
    char buf[2048];
    char name[600];
    memset(name, 'x', sizeof(name) - 1);
    name[sizeof(name) - 1] = '\0';
    snprintf(buf, sizeof(buf), "{\"must\":{\"key\":\"%s\",\"match\":{\"value\":1}}}", name);
    expect_reject(buf, "filter.must.key: invalid key path: longer than 255 bytes");
    snprintf(buf, sizeof(buf), "{\"must\":{\"key\":\"a\",\"%s\":1}}", name);
    expect_reject(buf, "filter.must.xxxxxxxx");
    expect_reject(buf, "unknown field");
}

static char *nest_filters(int levels)
{
    /* levels filter objects, each the only must condition of the one around it */
    size_t cap = (size_t)levels * 16 + 128, off = 0;
    char *s = malloc(cap);
    assert_non_null(s);
    for (int i = 0; i < levels; i++)
        off += (size_t)snprintf(s + off, cap - off, "{\"must\":[");
    off += (size_t)snprintf(s + off, cap - off, "{\"key\":\"a\",\"match\":{\"value\":1}}");
    for (int i = 0; i < levels; i++)
        off += (size_t)snprintf(s + off, cap - off, "]}");
    return s;
}

static void test_depth(void **state)
{
    (void)state;
    char *ok = nest_filters(AG_MAX_FILTER_DEPTH);
    MATCH(ok, "{\"a\":1}");
    NO_MATCH(ok, "{\"a\":2}");
    free(ok);
    char *deep = nest_filters(AG_MAX_FILTER_DEPTH + 1);
    expect_reject(deep, "nested deeper than 32");
    free(deep);
    char *very = nest_filters(900);
    expect_reject(very, "nested deeper than 32");
    free(very);
    /* nested conditions count as levels too */
    char buf[8192];
    size_t off = 0;
    for (int i = 0; i < AG_MAX_FILTER_DEPTH; i++)
        off += (size_t)snprintf(buf + off, sizeof(buf) - off,
                                "{\"must\":{\"nested\":{\"key\":\"n\",\"filter\":");
    off += (size_t)snprintf(buf + off, sizeof(buf) - off, "{}");
    for (int i = 0; i < AG_MAX_FILTER_DEPTH; i++)
        off += (size_t)snprintf(buf + off, sizeof(buf) - off, "}}}");
    expect_reject(buf, "nested deeper than 32");
}

/* ---------- building and combining ---------- */

static ag_filter_t *value_filter(const char *key, json_t *v)
{
    ag_filter_t *f = NULL;
    assert_int_equal(ag_filter_match_value(key, v, &f), 0);
    assert_non_null(f);
    json_decref(v);
    return f;
}

static void test_match_value_builder(void **state)
{
    (void)state;
    ag_filter_t *f = value_filter("tenant", json_string("acme"));
    assert_true(match_with(f, "{\"tenant\":\"acme\"}", NULL));
    assert_true(match_with(f, "{\"tenant\":[\"x\",\"acme\"]}", NULL));
    assert_false(match_with(f, "{\"tenant\":\"other\"}", NULL));
    assert_false(match_with(f, "{}", NULL));
    assert_false(match_with(f, NULL, NULL));
    ag_filter_free(f);
    f = value_filter("org.level", json_integer(3));
    assert_true(match_with(f, "{\"org\":{\"level\":3}}", NULL));
    assert_false(match_with(f, "{\"org\":{\"level\":3.5}}", NULL));
    ag_filter_free(f);
    f = value_filter("teams[].active", json_true());
    assert_true(match_with(f, "{\"teams\":[{\"active\":false},{\"active\":true}]}", NULL));
    assert_false(match_with(f, "{\"teams\":[{\"active\":false}]}", NULL));
    ag_filter_free(f);

    json_t *real = json_real(1.5), *arr = json_array(), *str = json_string("x");
    f = (ag_filter_t *)(uintptr_t)1;
    assert_int_equal(ag_filter_match_value("a", real, &f), AG_EINVAL);
    assert_null(f);
    assert_int_equal(ag_filter_match_value("a", arr, &f), AG_EINVAL);
    assert_int_equal(ag_filter_match_value("a", json_null(), &f), AG_EINVAL);
    assert_int_equal(ag_filter_match_value("a[", str, &f), AG_EINVAL);
    assert_int_equal(ag_filter_match_value("", str, &f), AG_EINVAL);
    assert_null(f);
    json_decref(real);
    json_decref(arr);
    json_decref(str);
}

static void test_and_or(void **state)
{
    (void)state;
    int err = 0;
    assert_null(ag_filter_and(NULL, NULL, &err));
    assert_null(ag_filter_or(NULL, NULL, &err));
    assert_int_equal(err, 0);

    ag_filter_t *a = value_filter("t", json_string("a"));
    ag_filter_t *f = ag_filter_and(a, NULL, &err);
    assert_ptr_equal(f, a);
    f = ag_filter_and(NULL, f, &err);
    assert_ptr_equal(f, a);
    /* OR with match-all is match-all; the other side is freed (ASan checks) */
    assert_null(ag_filter_or(f, NULL, &err));
    assert_null(ag_filter_or(NULL, value_filter("t", json_string("b")), &err));

    /* (t = a OR t = b) AND NOT deleted, with a compiled filter that is not must-only */
    f = ag_filter_or(value_filter("t", json_string("a")), value_filter("t", json_string("b")),
                     &err);
    assert_non_null(f);
    ag_filter_t *live =
        compile_ok("{\"must_not\":{\"key\":\"deleted\",\"match\":{\"value\":true}}}");
    f = ag_filter_and(f, live, &err);
    assert_non_null(f);
    assert_true(match_with(f, "{\"t\":\"a\"}", NULL));
    assert_true(match_with(f, "{\"t\":\"b\",\"deleted\":false}", NULL));
    assert_false(match_with(f, "{\"t\":\"b\",\"deleted\":true}", NULL));
    assert_false(match_with(f, "{\"t\":\"c\"}", NULL));
    ag_filter_free(f);

    /* long chains stay flat: 1000 ANDs and 1000 ORs evaluate without deep recursion */
    f = NULL;
    for (int i = 0; i < 1000; i++) {
        char key[16];
        snprintf(key, sizeof(key), "k%d", i % 10);
        f = ag_filter_and(f, value_filter(key, json_integer(i % 10)), &err);
        assert_non_null(f);
    }
    assert_true(match_with(f,
                           "{\"k0\":0,\"k1\":1,\"k2\":2,\"k3\":3,\"k4\":4,\"k5\":5,\"k6\":6,"
                           "\"k7\":7,\"k8\":8,\"k9\":9}",
                           NULL));
    assert_false(match_with(f,
                            "{\"k0\":0,\"k1\":1,\"k2\":2,\"k3\":3,\"k4\":4,\"k5\":5,\"k6\":6,"
                            "\"k7\":7,\"k8\":8}",
                            NULL));
    ag_filter_free(f);
    f = value_filter("n", json_integer(-1));
    for (int i = 0; i < 1000; i++) {
        f = ag_filter_or(f, value_filter("n", json_integer(i)), &err);
        assert_non_null(f);
    }
    assert_true(match_with(f, "{\"n\":999}", NULL));
    assert_true(match_with(f, "{\"n\":-1}", NULL));
    assert_false(match_with(f, "{\"n\":1000}", NULL));
    ag_filter_free(f);

    /* OR of complex filters, then AND of that with a must-only filter and vice versa */
    ag_filter_t *x = compile_ok("{\"must\":{\"key\":\"a\",\"match\":{\"value\":1}},"
                                "\"must_not\":{\"key\":\"b\",\"match\":{\"value\":1}}}");
    ag_filter_t *y = compile_ok("{\"min_should\":{\"conditions\":[{\"key\":\"c\",\"match\":"
                                "{\"value\":1}}],\"min_count\":1}}");
    f = ag_filter_or(x, y, &err);
    assert_non_null(f);
    f = ag_filter_and(compile_ok("{\"must\":{\"key\":\"z\",\"match\":{\"value\":1}}}"), f, &err);
    assert_true(match_with(f, "{\"z\":1,\"a\":1}", NULL));
    assert_true(match_with(f, "{\"z\":1,\"c\":1,\"a\":1,\"b\":1}", NULL));
    assert_false(match_with(f, "{\"z\":1,\"a\":1,\"b\":1}", NULL));
    assert_false(match_with(f, "{\"a\":1}", NULL));
    ag_filter_free(f);
    /* an empty should (matches nothing) ORed with something is that something */
    f = ag_filter_or(compile_ok("{\"should\":[]}"), value_filter("t", json_string("a")), &err);
    assert_true(match_with(f, "{\"t\":\"a\"}", NULL));
    assert_false(match_with(f, "{\"t\":\"b\"}", NULL));
    ag_filter_free(f);
    assert_int_equal(err, 0);
}

/* ---------- brute-force cross-check ---------- */

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

static uint64_t xorshift(void)
{
    uint64_t x = rng_state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    rng_state = x;
    return x;
}

static unsigned pick(unsigned n)
{
    return (unsigned)(xorshift() % n);
}

static const char *const words[] = {"x", "y", "zx", "", "xyz"};

static json_t *rand_scalar(void)
{
    switch (pick(7)) {
    case 0:
        return json_null();
    case 1:
        return json_integer((json_int_t)pick(7) - 3);
    case 2:
        return json_real((double)((int)pick(7) - 3) + (pick(2) ? 0.5 : 0.0));
    case 3:
        return json_boolean(pick(2));
    case 4:
        return json_object();
    default:
        return json_string(words[pick(AG_ARRAY_LEN(words))]);
    }
}

static json_t *rand_value(void)
{
    if (pick(3) == 0) {
        json_t *a = json_array();
        for (unsigned i = 0, n = pick(4); i < n; i++)
            json_array_append_new(a, rand_scalar());
        return a;
    }
    return rand_scalar();
}

static json_t *rand_payload(void)
{
    json_t *p = json_object();
    static const char *const plain[] = {"a", "b"};
    for (size_t i = 0; i < AG_ARRAY_LEN(plain); i++)
        if (pick(5))
            json_object_set_new(p, plain[i], rand_value());
    if (pick(2)) {
        json_t *o = json_object();
        if (pick(4))
            json_object_set_new(o, "a", rand_value());
        json_object_set_new(p, "o", pick(5) ? o : (json_decref(o), rand_scalar()));
    }
    if (pick(2)) {
        json_t *l = json_array();
        for (unsigned i = 0, n = pick(4); i < n; i++) {
            if (pick(5) == 0) {
                json_array_append_new(l, rand_scalar());
                continue;
            }
            json_t *e = json_object();
            if (pick(4))
                json_object_set_new(e, "a", rand_value());
            json_array_append_new(l, e);
        }
        json_object_set_new(p, "l", l);
    }
    return p;
}

enum { T_VALUE, T_ANY, T_EXCEPT, T_RANGE, T_COUNT, T_EMPTY, T_NULL, T_TEXT, T_KINDS };
static const char *const tkeys[] = {"a", "b", "o.a", "l[].a", "l[0].a", "a[]", "l[1].a"};

typedef struct tcond {
    int kind;
    const char *key;
    json_t *arg; /* value / list / text */
    bool has[4];
    double bound[4]; /* lt gt gte lte */
} tcond_t;

#define MAX_VALS 64

typedef struct vals {
    const json_t *v[MAX_VALS];
    size_t n;
} vals_t;

static void push(vals_t *out, const json_t *v)
{
    assert_true(out->n < MAX_VALS);
    out->v[out->n++] = v;
}

/* Values at a test key, written out by hand for each key the generator uses. */
static void raw_values(const json_t *p, const char *key, vals_t *out)
{
    out->n = 0;
    const json_t *a = json_object_get(p, "a"), *o = json_object_get(p, "o"),
                 *l = json_object_get(p, "l");
    if (strcmp(key, "a") == 0 || strcmp(key, "b") == 0) {
        const json_t *v = json_object_get(p, key);
        if (v)
            push(out, v);
    } else if (strcmp(key, "o.a") == 0) {
        if (json_is_object(o) && json_object_get(o, "a"))
            push(out, json_object_get(o, "a"));
    } else if (strcmp(key, "l[].a") == 0) {
        for (size_t i = 0; json_is_array(l) && i < json_array_size(l); i++) {
            const json_t *e = json_array_get(l, i);
            if (json_is_object(e) && json_object_get(e, "a"))
                push(out, json_object_get(e, "a"));
        }
    } else if (strcmp(key, "l[0].a") == 0 || strcmp(key, "l[1].a") == 0) {
        size_t idx = key[2] == '0' ? 0 : 1;
        const json_t *e = json_is_array(l) ? json_array_get(l, idx) : NULL;
        if (json_is_object(e) && json_object_get(e, "a"))
            push(out, json_object_get(e, "a"));
    } else if (strcmp(key, "a[]") == 0) {
        for (size_t i = 0; json_is_array(a) && i < json_array_size(a); i++)
            push(out, json_array_get(a, i));
    } else {
        fail_msg("unknown test key %s", key);
    }
}

static void flat_values(const vals_t *raw, vals_t *out)
{
    out->n = 0;
    for (size_t i = 0; i < raw->n; i++) {
        if (json_is_array(raw->v[i]))
            for (size_t k = 0; k < json_array_size(raw->v[i]); k++)
                push(out, json_array_get(raw->v[i], k));
        else
            push(out, raw->v[i]);
    }
}

static bool same_scalar(const json_t *x, const json_t *y)
{
    if (json_is_string(x) && json_is_string(y))
        return strcmp(json_string_value(x), json_string_value(y)) == 0;
    if (json_is_integer(x) && json_is_integer(y))
        return json_integer_value(x) == json_integer_value(y);
    if (json_is_boolean(x) && json_is_boolean(y))
        return json_is_true(x) == json_is_true(y);
    return false;
}

static bool in_list(const json_t *list, const json_t *v)
{
    for (size_t i = 0; i < json_array_size(list); i++)
        if (same_scalar(json_array_get(list, i), v))
            return true;
    return false;
}

static bool ref_cond(const tcond_t *c, const json_t *payload)
{
    vals_t raw, flat;
    raw_values(payload, c->key, &raw);
    flat_values(&raw, &flat);
    bool list_ints = json_array_size(c->arg) > 0 && json_is_integer(json_array_get(c->arg, 0));
    switch (c->kind) {
    case T_VALUE:
        for (size_t i = 0; i < flat.n; i++)
            if (same_scalar(flat.v[i], c->arg))
                return true;
        return false;
    case T_ANY:
        for (size_t i = 0; i < flat.n; i++)
            if (in_list(c->arg, flat.v[i]))
                return true;
        return false;
    case T_EXCEPT:
        for (size_t i = 0; i < flat.n; i++) {
            const json_t *v = flat.v[i];
            if (json_is_null(v))
                continue;
            bool same_type = list_ints ? json_is_integer(v) : json_is_string(v);
            if (!same_type || !in_list(c->arg, v))
                return true;
        }
        return false;
    case T_RANGE:
        for (size_t i = 0; i < flat.n; i++) {
            if (!json_is_number(flat.v[i]))
                continue;
            double x = json_number_value(flat.v[i]);
            if ((!c->has[0] || x < c->bound[0]) && (!c->has[1] || x > c->bound[1]) &&
                (!c->has[2] || x >= c->bound[2]) && (!c->has[3] || x <= c->bound[3]))
                return true;
        }
        return false;
    case T_COUNT: {
        double n = 0;
        for (size_t i = 0; i < raw.n; i++)
            n += json_is_null(raw.v[i])    ? 0
                 : json_is_array(raw.v[i]) ? (double)json_array_size(raw.v[i])
                                           : 1;
        return (!c->has[0] || n < c->bound[0]) && (!c->has[1] || n > c->bound[1]) &&
               (!c->has[2] || n >= c->bound[2]) && (!c->has[3] || n <= c->bound[3]);
    }
    case T_EMPTY:
        for (size_t i = 0; i < raw.n; i++)
            if (!json_is_null(raw.v[i]) &&
                !(json_is_array(raw.v[i]) && json_array_size(raw.v[i]) == 0))
                return false;
        return true;
    case T_NULL:
        for (size_t i = 0; i < raw.n; i++)
            if (json_is_null(raw.v[i]))
                return true;
        return false;
    default: /* T_TEXT */
        for (size_t i = 0; i < flat.n; i++)
            if (json_is_string(flat.v[i]) &&
                strstr(json_string_value(flat.v[i]), json_string_value(c->arg)))
                return true;
        return false;
    }
}

static json_t *rand_list(void)
{
    json_t *l = json_array();
    bool ints = pick(2);
    for (unsigned i = 0, n = pick(4); i < n; i++)
        json_array_append_new(l, ints ? json_integer((json_int_t)pick(7) - 3)
                                      : json_string(words[pick(AG_ARRAY_LEN(words))]));
    return l;
}

static void rand_cond(tcond_t *c)
{
    memset(c, 0, sizeof(*c));
    c->kind = (int)pick(T_KINDS);
    c->key = tkeys[pick(AG_ARRAY_LEN(tkeys))];
    switch (c->kind) {
    case T_VALUE:
        switch (pick(3)) {
        case 0:
            c->arg = json_integer((json_int_t)pick(7) - 3);
            break;
        case 1:
            c->arg = json_boolean(pick(2));
            break;
        default:
            c->arg = json_string(words[pick(AG_ARRAY_LEN(words))]);
        }
        break;
    case T_ANY:
    case T_EXCEPT:
        c->arg = rand_list();
        break;
    case T_TEXT:
        c->arg = json_string(words[pick(AG_ARRAY_LEN(words))]);
        break;
    case T_RANGE:
    case T_COUNT:
        for (int b = 0; b < 4; b++) {
            c->has[b] = pick(3) == 0;
            c->bound[b] = c->kind == T_COUNT ? (double)pick(4) : ((double)pick(13) - 6) / 2;
        }
        break;
    default:
        break;
    }
}

static json_t *cond_json(const tcond_t *c)
{
    static const char *const bn[] = {"lt", "gt", "gte", "lte"};
    json_t *j = json_object();
    if (c->kind == T_EMPTY || c->kind == T_NULL) {
        json_t *k = json_object();
        json_object_set_new(k, "key", json_string(c->key));
        json_object_set_new(j, c->kind == T_EMPTY ? "is_empty" : "is_null", k);
        return j;
    }
    json_object_set_new(j, "key", json_string(c->key));
    json_t *body = json_object();
    switch (c->kind) {
    case T_VALUE:
        json_object_set(body, "value", c->arg);
        json_object_set_new(j, "match", body);
        break;
    case T_ANY:
        json_object_set(body, "any", c->arg);
        json_object_set_new(j, "match", body);
        break;
    case T_EXCEPT:
        json_object_set(body, "except", c->arg);
        json_object_set_new(j, "match", body);
        break;
    case T_TEXT:
        json_object_set(body, "text", c->arg);
        json_object_set_new(j, "match", body);
        break;
    default:
        for (int b = 0; b < 4; b++)
            if (c->has[b])
                json_object_set_new(body, bn[b],
                                    c->kind == T_COUNT ? json_integer((json_int_t)c->bound[b])
                                                       : json_real(c->bound[b]));
        json_object_set_new(j, c->kind == T_COUNT ? "values_count" : "range", body);
    }
    return j;
}

#define NCOND 3

static void test_bruteforce(void **state)
{
    (void)state;
    enum { PAYLOADS = 2000, FILTERS_PER = 12 };
    size_t matched = 0, total = 0;
    for (int pi = 0; pi < PAYLOADS; pi++) {
        json_t *payload = rand_payload();
        for (int fi = 0; fi < FILTERS_PER; fi++) {
            tcond_t c[NCOND];
            bool r[NCOND];
            for (int k = 0; k < NCOND; k++) {
                rand_cond(&c[k]);
                r[k] = ref_cond(&c[k], payload);
            }
            json_t *fj = json_object();
            bool expect;
            int shape = (int)pick(6);
            json_t *arr = json_array();
            switch (shape) {
            case 0: /* must [c0] */
                json_array_append_new(arr, cond_json(&c[0]));
                json_object_set_new(fj, "must", arr);
                expect = r[0];
                break;
            case 1: /* must_not [c0, c1] */
                json_array_append_new(arr, cond_json(&c[0]));
                json_array_append_new(arr, cond_json(&c[1]));
                json_object_set_new(fj, "must_not", arr);
                expect = !r[0] && !r[1];
                break;
            case 2: /* should [c0, c1] */
                json_array_append_new(arr, cond_json(&c[0]));
                json_array_append_new(arr, cond_json(&c[1]));
                json_object_set_new(fj, "should", arr);
                expect = r[0] || r[1];
                break;
            case 3: { /* must c0, must_not c1, should [c2, {must_not c0}] */
                json_object_set_new(fj, "must", cond_json(&c[0]));
                json_object_set_new(fj, "must_not", cond_json(&c[1]));
                json_t *sub = json_object();
                json_object_set_new(sub, "must_not", cond_json(&c[0]));
                json_array_append_new(arr, cond_json(&c[2]));
                json_array_append_new(arr, sub);
                json_object_set_new(fj, "should", arr);
                expect = r[0] && !r[1] && (r[2] || !r[0]);
                break;
            }
            case 4: { /* min_should 2 of 3 */
                json_t *ms = json_object();
                for (int k = 0; k < NCOND; k++)
                    json_array_append_new(arr, cond_json(&c[k]));
                json_object_set_new(ms, "conditions", arr);
                json_object_set_new(ms, "min_count", json_integer(2));
                json_object_set_new(fj, "min_should", ms);
                expect = (r[0] + r[1] + r[2]) >= 2;
                break;
            }
            default: { /* nested filter object: {should:[{must:[c0,c1]}, {must_not:c2}]} */
                json_t *s1 = json_object(), *s2 = json_object(), *m1 = json_array();
                json_array_append_new(m1, cond_json(&c[0]));
                json_array_append_new(m1, cond_json(&c[1]));
                json_object_set_new(s1, "must", m1);
                json_object_set_new(s2, "must_not", cond_json(&c[2]));
                json_array_append_new(arr, s1);
                json_array_append_new(arr, s2);
                json_object_set_new(fj, "should", arr);
                expect = (r[0] && r[1]) || !r[2];
                break;
            }
            }
            ag_filter_t *f = NULL;
            ag_diag_t diag = {{0}};
            if (ag_filter_compile(fj, &f, &diag) != 0) {
                char *t = json_dumps(fj, 0);
                fail_msg("generated filter rejected: %s: %s", t, diag.msg);
            }
            ag_filter_subject_t s = {.payload = payload};
            bool got = ag_filter_match(f, &s);
            if (got != expect) {
                char *pt = json_dumps(payload, JSON_SORT_KEYS), *ft = json_dumps(fj, 0);
                fail_msg("mismatch (got %d, expected %d)\n  payload %s\n  filter  %s", got, expect,
                         pt, ft);
            }
            matched += got;
            total++;
            ag_filter_free(f);
            json_decref(fj);
            for (int k = 0; k < NCOND; k++)
                json_decref(c[k].arg);
        }
        json_decref(payload);
    }
    /* the generator must exercise both outcomes */
    assert_true(matched > total / 10);
    assert_true(matched < total - total / 10);
}

/* Builds {"must":[{"key":"k","match":{kind:[n values]}}]} (or n conditions under should). */
static json_t *big_filter(const char *kind, size_t n, bool as_conditions)
{
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++) {
        if (as_conditions)
            json_array_append_new(
                arr, json_pack("{s:s,s:{s:I}}", "key", "k", "match", "value", (json_int_t)i));
        else
            json_array_append_new(arr, json_integer((json_int_t)i));
    }
    if (as_conditions)
        return json_pack("{s:o}", "should", arr);
    return json_pack("{s:[{s:s,s:{s:o}}]}", "must", "key", "k", "match", kind, arr);
}

static int compile_msg(json_t *j, char *msg, size_t len)
{
    ag_filter_t *f = NULL;
    ag_diag_t d = {{0}};
    /* Filters the server builds itself (tenant lists, restrictions) are not budgeted. */
    ag_filter_t *trusted = NULL;
    assert_int_equal(ag_filter_compile(j, &trusted, NULL), 0);
    ag_filter_free(trusted);
    int rc = ag_filter_compile_budgeted(j, &f, &d);
    snprintf(msg, len, "%s", d.msg);
    ag_filter_free(f);
    json_decref(j);
    return rc;
}

static void test_cost_limits(void **state)
{
    (void)state;
    char msg[512];
    assert_int_equal(compile_msg(big_filter("any", AG_MAX_MATCH_VALUES, false), msg, sizeof(msg)),
                     0);
    assert_int_equal(
        compile_msg(big_filter("any", AG_MAX_MATCH_VALUES + 1, false), msg, sizeof(msg)),
        AG_EINVAL);
    assert_non_null(strstr(msg, "filter.must[0].match.any: at most 10000 values"));
    assert_int_equal(
        compile_msg(big_filter("except", AG_MAX_MATCH_VALUES + 1, false), msg, sizeof(msg)),
        AG_EINVAL);
    assert_non_null(strstr(msg, "match.except"));
    assert_int_equal(
        compile_msg(big_filter("any", AG_MAX_FILTER_CONDITIONS, true), msg, sizeof(msg)), 0);
    assert_int_equal(
        compile_msg(big_filter("any", AG_MAX_FILTER_CONDITIONS + 1, true), msg, sizeof(msg)),
        AG_EINVAL);
    assert_non_null(strstr(msg, "filter.should: a filter has at most 10000 conditions"));
    /* Values add up across lists: eleven lists of 10,000. */
    json_t *should = json_array();
    for (int i = 0; i < 11; i++) {
        json_t *one = big_filter("any", AG_MAX_MATCH_VALUES, false);
        json_array_append(should, json_array_get(json_object_get(one, "must"), 0));
        json_decref(one);
    }
    assert_int_equal(compile_msg(json_pack("{s:o}", "should", should), msg, sizeof(msg)),
                     AG_EINVAL);
    assert_non_null(strstr(msg, "at most 100000 values"));
}

static char *equalities(const char *filter)
{
    json_t *j = json_loads(filter, 0, NULL);
    assert_non_null(j);
    ag_filter_t *f = NULL;
    assert_int_equal(ag_filter_compile(j, &f, NULL), 0);
    json_decref(j);
    json_t *eq = ag_filter_required_equalities(f);
    ag_filter_free(f);
    char *s = eq ? json_dumps(eq, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    json_decref(eq);
    return s;
}

static void expect_equalities(const char *filter, const char *want)
{
    char *got = equalities(filter);
    if (!want) {
        assert_null(got);
        return;
    }
    assert_non_null(got);
    assert_string_equal(got, want);
    free(got);
}

static void test_required_equalities(void **state)
{
    (void)state;
    expect_equalities("{\"must\":[{\"key\":\"tenant\",\"match\":{\"value\":\"a\"}}]}",
                      "{\"must\":[{\"key\":\"tenant\",\"match\":{\"value\":\"a\"}}]}");
    /* any (sorted), integers, booleans, sub-filters in must, the negated and optional left out */
    expect_equalities(
        "{\"must\":[{\"key\":\"n\",\"match\":{\"any\":[3,1]}},{\"must\":[{\"key\":\"b\","
        "\"match\":{\"value\":true}}]}],\"should\":[{\"key\":\"s\",\"match\":{\"value\":\"x\"}}],"
        "\"must_not\":[{\"key\":\"t\",\"match\":{\"value\":\"y\"}}]}",
        "{\"must\":[{\"key\":\"n\",\"match\":{\"any\":[1,3]}},{\"key\":\"b\",\"match\":{\"value\":"
        "true}}]}");
    expect_equalities("{\"must\":[{\"key\":\"a.b\",\"match\":{\"value\":1}}]}",
                      "{\"must\":[{\"key\":\"a.b\",\"match\":{\"value\":1}}]}");
    /* not plain key paths, not equalities, no must at all */
    expect_equalities("{\"must\":[{\"key\":\"a[].b\",\"match\":{\"value\":1}}]}", NULL);
    expect_equalities("{\"must\":[{\"key\":\"a\",\"match\":{\"except\":[1]}}]}", NULL);
    expect_equalities("{\"should\":[{\"key\":\"a\",\"match\":{\"value\":1}}]}", NULL);
    assert_null(ag_filter_required_equalities(NULL));
}

static void expect_code(const char *filter, int code, const char *needle)
{
    json_t *j = load(filter);
    ag_filter_t *f = NULL;
    ag_diag_t diag = {{0}};
    int rc = ag_filter_compile(j, &f, &diag);
    json_decref(j);
    ag_filter_free(f);
    if (rc != code)
        fail_msg("%s: expected rc %d, got %d (%s)", filter, code, rc, diag.msg);
    if (!strstr(diag.msg, needle))
        fail_msg("diag for %s\n  was:      %s\n  expected: ...%s...", filter, diag.msg, needle);
}

/* Qdrant's validation rules answer 422 with its wording; shape errors stay 400. */
static void test_validation_rules(void **state)
{
    (void)state;
    expect_code("{\"must\":[{\"key\":\"a\"}]}", AG_EUNPROCESSABLE,
                "Validation error in JSON body: filter.must[0]: At least one field condition");
    expect_code("{\"must\":[{\"slice\":{\"total\":4,\"index\":4}}]}", AG_EUNPROCESSABLE,
                "index: must be less than total");
    expect_code("{\"must\":[{\"slice\":{\"total\":0,\"index\":0}}]}", AG_EINVAL,
                "total: expected an integer");
    expect_code("{\"must\":[{\"slice\":{\"total\":2,\"index\":0,\"x\":1}}]}", AG_EINVAL,
                "unknown field");
}

/* slice: the parts of one total are disjoint and cover every id, numeric or UUID. */
static void test_slice(void **state)
{
    (void)state;
    char text[96];
    enum { TOTAL = 4, IDS = 400 };
    size_t per[TOTAL] = {0};
    ag_filter_t *parts[TOTAL];
    for (int i = 0; i < TOTAL; i++) {
        snprintf(text, sizeof(text), "{\"must\":[{\"slice\":{\"total\":%d,\"index\":%d}}]}", TOTAL,
                 i);
        parts[i] = compile_ok(text);
    }
    ag_filter_t *neg = compile_ok("{\"must_not\":[{\"slice\":{\"total\":4,\"index\":0}}]}");
    for (int k = 0; k < IDS; k++) {
        ag_point_id_t id;
        json_t *j = k % 2 ? json_integer(k) : NULL;
        if (!j) {
            snprintf(text, sizeof(text), "00000000-0000-0000-0000-%012x", k);
            j = json_string(text);
        }
        assert_int_equal(ag_id_parse(j, &id, "id", NULL), 0);
        json_decref(j);
        int hits = 0, which = -1;
        for (int i = 0; i < TOTAL; i++)
            if (match_with(parts[i], "{}", &id)) {
                hits++;
                which = i;
            }
        assert_int_equal(hits, 1);
        per[which]++;
        assert_int_equal(match_with(neg, "{}", &id), which != 0);
    }
    for (int i = 0; i < TOTAL; i++) {
        assert_true(per[i] > IDS / TOTAL / 2); /* a spread, not everything in one part */
        ag_filter_free(parts[i]);
    }
    ag_filter_free(neg);
}

static void expect_json(json_t *got, const char *want)
{
    json_t *w = load(want);
    if (!json_equal(got, w)) {
        char g[1024];
        size_t k = json_dumpb(got, g, sizeof(g) - 1, JSON_COMPACT | JSON_SORT_KEYS);
        g[k < sizeof(g) ? k : sizeof(g) - 1] = '\0';
        json_decref(w);
        fail_msg("got %.1000s, want %s", g, want);
    }
    json_decref(w);
}

/* Payload selectors and set-with-key step into arrays: "a[].b", "a[1].b". */
static void test_payload_array_paths(void **state)
{
    (void)state;
    const char *doc = "{\"c\":{\"name\":\"G\",\"cities\":[{\"name\":\"B\",\"pop\":3},"
                      "{\"name\":\"M\",\"pop\":1}]},\"x\":1}";
    json_t *p = load(doc);
    json_t *out = json_object();
    assert_int_equal(ag_payload_include(out, p, "c.cities[].name"), 0);
    expect_json(out, "{\"c\":{\"cities\":[{\"name\":\"B\"},{\"name\":\"M\"}]}}");
    assert_int_equal(ag_payload_include(out, p, "c.cities[].pop"), 0);
    assert_int_equal(ag_payload_include(out, p, "x"), 0);
    expect_json(out, "{\"c\":{\"cities\":[{\"name\":\"B\",\"pop\":3},{\"name\":\"M\","
                     "\"pop\":1}]},\"x\":1}");
    json_decref(out);
    out = json_object();
    assert_int_equal(ag_payload_include(out, p, "c.cities[1].name"), 0);
    assert_int_equal(ag_payload_include(out, p, "nothing.here"), 0);
    expect_json(out, "{\"c\":{\"cities\":[{\"name\":\"M\"}]}}");
    json_decref(out);
    out = json_object();
    assert_int_equal(ag_payload_include(out, p, "a["), AG_EINVAL);
    json_decref(out);

    json_t *q = json_deep_copy(p);
    ag_payload_exclude(q, "c.cities[].pop");
    ag_payload_exclude(q, "x");
    expect_json(q, "{\"c\":{\"name\":\"G\",\"cities\":[{\"name\":\"B\"},{\"name\":\"M\"}]}}");
    json_decref(q);

    q = json_deep_copy(p);
    json_t *set = load("{\"k\":\"v\"}");
    assert_int_equal(ag_payload_set_at(q, "c.cities[0].loc", set), 0);
    assert_int_equal(ag_payload_set_at(q, "c.cities[].tag", set), 0);
    assert_int_equal(ag_payload_set_at(q, "new.path", set), 0);
    expect_json(q, "{\"c\":{\"name\":\"G\",\"cities\":[{\"name\":\"B\",\"pop\":3,"
                   "\"loc\":{\"k\":\"v\"},\"tag\":{\"k\":\"v\"}},{\"name\":\"M\",\"pop\":1,"
                   "\"tag\":{\"k\":\"v\"}}]},\"x\":1,\"new\":{\"path\":{\"k\":\"v\"}}}");
    json_decref(set);
    json_decref(q);
    json_decref(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_match_all),
        cmocka_unit_test(test_clauses),
        cmocka_unit_test(test_min_should),
        cmocka_unit_test(test_match_value),
        cmocka_unit_test(test_match_any),
        cmocka_unit_test(test_match_except),
        cmocka_unit_test(test_match_text),
        cmocka_unit_test(test_range_numbers),
        cmocka_unit_test(test_range_datetime),
        cmocka_unit_test(test_values_count),
        cmocka_unit_test(test_is_empty_is_null),
        cmocka_unit_test(test_has_id),
        cmocka_unit_test(test_has_vector),
        cmocka_unit_test(test_paths),
        cmocka_unit_test(test_nested),
        cmocka_unit_test(test_geo),
        cmocka_unit_test(test_reject),
        cmocka_unit_test(test_depth),
        cmocka_unit_test(test_match_value_builder),
        cmocka_unit_test(test_and_or),
        cmocka_unit_test(test_bruteforce),
        cmocka_unit_test(test_cost_limits),
        cmocka_unit_test(test_required_equalities),
        cmocka_unit_test(test_validation_rules),
        cmocka_unit_test(test_slice),
        cmocka_unit_test(test_payload_array_paths),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
