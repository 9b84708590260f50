/* ag_filter_match_all: the strict evaluation row-level write checks rely on. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>

#include <cmocka.h>

#include "index/ag_filter.h"

static bool both(const char *filter, const char *payload, bool *normal)
{
    json_t *fj = json_loads(filter, 0, NULL), *pj = json_loads(payload, 0, NULL);
    assert_non_null(fj);
    assert_non_null(pj);
    ag_filter_t *f = NULL;
    ag_diag_t d;
    assert_int_equal(ag_filter_compile(fj, &f, &d), 0);
    ag_filter_subject_t s = {NULL, pj, NULL, NULL};
    *normal = ag_filter_match(f, &s);
    bool strict = ag_filter_match_all(f, &s);
    /* Strict must never accept what normal evaluation rejects. */
    assert_true(!strict || *normal);
    ag_filter_free(f);
    json_decref(fj);
    json_decref(pj);
    return strict;
}

static void test_multi_valued(void **state)
{
    (void)state;
    const char *acme = "{\"must\":[{\"key\":\"tenant\",\"match\":{\"value\":\"acme\"}}]}";
    bool normal;
    assert_true(both(acme, "{\"tenant\":\"acme\"}", &normal) && normal);
    assert_false(both(acme, "{\"tenant\":[\"acme\",\"beta\"]}", &normal));
    assert_true(normal); /* a read sees it, but a write may not create it */
    assert_true(both(acme, "{\"tenant\":[\"acme\",\"acme\"]}", &normal));
    assert_false(both(acme, "{\"tenant\":[]}", &normal));
    assert_false(normal);
    assert_false(both(acme, "{}", &normal));
}

static void test_negation_and_nesting(void **state)
{
    (void)state;
    bool normal;
    const char *not_beta = "{\"must_not\":[{\"key\":\"tenant\",\"match\":{\"value\":\"beta\"}}]}";
    assert_true(both(not_beta, "{\"tenant\":\"acme\"}", &normal));
    assert_false(both(not_beta, "{\"tenant\":[\"acme\",\"beta\"]}", &normal));
    assert_false(normal);
    /* must_not(must_not(x)) behaves like x under strict evaluation. */
    const char *dbl =
        "{\"must_not\":[{\"must_not\":[{\"key\":\"t\",\"match\":{\"value\":\"a\"}}]}]}";
    assert_false(both(dbl, "{\"t\":[\"a\",\"b\"]}", &normal));
    assert_true(normal);
    assert_true(both(dbl, "{\"t\":[\"a\"]}", &normal));
    const char *rng = "{\"must\":[{\"key\":\"n\",\"range\":{\"gte\":1,\"lte\":5}}]}";
    assert_false(both(rng, "{\"n\":[2,9]}", &normal));
    assert_true(normal);
    const char *nested =
        "{\"must\":[{\"nested\":{\"key\":\"o\",\"filter\":{\"must\":[{\"key\":\"k\",\"match\":"
        "{\"value\":1}}]}}}]}";
    assert_false(both(nested, "{\"o\":[{\"k\":1},{\"k\":2}]}", &normal));
    assert_true(normal);
    assert_true(both(nested, "{\"o\":[{\"k\":1},{\"k\":1}]}", &normal));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_multi_valued),
        cmocka_unit_test(test_negation_and_nesting),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
