/* The answer writer's score text: the integer way (ag_jw_f32_text) must print exactly what the
 * printf way prints, and every text must read back as the same float (what a client parsing the
 * answer sees). */
#include <float.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "json/ag_jsonw.h"

static uint64_t rng = 0x9E3779B97F4A7C15ull;

static uint64_t next(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static float from_bits(uint32_t b)
{
    float f;
    memcpy(&f, &b, sizeof(f));
    return f;
}

static unsigned long checked;

/* Both ways give the same text, and it reads back as f (as a double too: clients in
 * JavaScript or Python parse a double, then the server's float32 is that double rounded). */
static void check(float f)
{
    char a[AG_JW_F32_MAX], b[AG_JW_F32_MAX];
    size_t na = ag_jw_f32_text(f, a), nb = ag_jw_f32_text_printf(f, b);
    if (na != nb || strcmp(a, b) != 0) {
        uint32_t bits;
        memcpy(&bits, &f, sizeof(bits));
        print_error("float 0x%08x: integer way \"%s\", printf way \"%s\"\n", bits, a, b);
        fail();
    }
    assert_int_equal(strlen(a), na);
    checked++;
    if (!isfinite(f)) {
        assert_string_equal(a, "null");
        return;
    }
    float back = strtof(a, NULL);
    double backd = strtod(a, NULL);
    if (memcmp(&back, &f, sizeof(f)) != 0 || (float)backd != f) {
        print_error("float %.9g printed \"%s\" reads back as %.9g\n", (double)f, a, (double)back);
        fail();
    }
    /* JSON: a number with a fraction or an exponent (jansson reads it as a real). */
    assert_true(strchr(a, '.') || strchr(a, 'e'));
    assert_null(strchr(a, '+'));
}

static void test_random_bits(void **state)
{
    (void)state;
    for (int i = 0; i < 1000000; i++)
        check(from_bits((uint32_t)next()));
}

static void test_scores(void **state)
{
    (void)state;
    /* Score-like values: cosine / dot in [-1, 1], distances up to a few thousand. */
    for (int i = 0; i < 1000000; i++) {
        double u = (double)(next() >> 11) / 9007199254740992.0;
        check((float)(2 * u - 1));
        check((float)(u * 4000));
        check((float)u * 1e-6f);
    }
}

static void test_special(void **state)
{
    (void)state;
    const float fixed[] = {
        0.0f,       -0.0f,      1.0f,       -1.0f,       0.5f,      0.1f,       0.3f,
        1e-5f,      1e-4f,      9.9999e-5f, 123456.0f,   999999.5f, 1e6f,       1048576.5f,
        8388607.5f, 8388608.0f, 16777215.f, 16777216.0f, 1e7f,      1e10f,      3e38f,
        FLT_MAX,    -FLT_MAX,   FLT_MIN,    -FLT_MIN,    1e-38f,    1e-45f,     FLT_TRUE_MIN,
        1e-20f,     7e-21f,     6e-21f,     0.99999994f, 0.999999f, 0.9999995f, 1.0000001f,
        INFINITY,   -INFINITY,  NAN,        2.5e-5f,     65504.0f};
    for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++)
        check(fixed[i]);
    /* Every power of two and its neighbours (the asymmetric rounding interval), every power of
     * ten and its neighbours (the exponent of the text changes there). */
    for (int e = -149; e <= 127; e++) {
        float p = ldexpf(1.0f, e);
        check(p);
        check(nextafterf(p, 0));
        check(nextafterf(p, INFINITY));
        check(-p);
    }
    for (int e = -45; e <= 38; e++) {
        float p = (float)pow(10.0, e);
        check(p);
        check(nextafterf(p, 0));
        check(nextafterf(p, INFINITY));
    }
    /* Dyadic values with few digits, where rounding to p digits can be an exact tie. */
    for (uint32_t v = 1; v < 200000; v += 7)
        for (int sh = 1; sh <= 12; sh++)
            check(ldexpf((float)v, -sh));
    /* Every subnormal near the bottom and a sweep of consecutive floats around 1. */
    for (uint32_t b = 0; b < 100000; b++)
        check(from_bits(b));
    for (uint32_t b = 0x3f7f0000u; b < 0x3f810000u; b++)
        check(from_bits(b));
}

static void test_writer(void **state)
{
    (void)state;
    ag_jw_t w = {0};
    ag_jw_f32(&w, 0.25f);
    ag_jw_lit(&w, ",");
    ag_jw_f32(&w, -1.5e-7f);
    ag_jw_lit(&w, ",");
    ag_jw_f32(&w, NAN);
    ag_jw_lit(&w, ",");
    ag_jw_f32(&w, 1e20f);
    size_t len = 0;
    char *s = ag_jw_take(&w, &len);
    assert_non_null(s);
    assert_string_equal(s, "0.25,-1.5e-7,null,1e20");
    assert_int_equal(len, strlen(s));
    free(s);
}

static void seconds_text(double s, char *out, size_t cap)
{
    ag_jw_t w = {0};
    ag_jw_seconds(&w, s);
    size_t len = 0;
    char *t = ag_jw_take(&w, &len);
    assert_non_null(t);
    snprintf(out, cap, "%s", t);
    free(t);
}

static void test_seconds(void **state)
{
    (void)state;
    static const struct {
        double s;
        const char *text;
    } cases[] = {{0, "0.0"},
                 {1, "1.0"},
                 {2.5, "2.5"},
                 {0.000123456, "0.000123456"},
                 {0.0001234564, "0.000123456"},
                 {0.0000000004, "0.0"},
                 {0.0000000006, "0.000000001"},
                 {59.999999999, "59.999999999"},
                 {86400.25, "86400.25"},
                 {-1, "-1.0"},
                 {1e12, "1000000000000.0"}};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char t[64];
        seconds_text(cases[i].s, t, sizeof(t));
        assert_string_equal(t, cases[i].text);
    }
    /* Random durations: the text is a JSON number within half a nanosecond of the value. */
    for (int i = 0; i < 200000; i++) {
        double s = (double)(next() >> 11) / 9007199254740992.0 * (i % 2 ? 1e-3 : 1e3);
        char t[64];
        seconds_text(s, t, sizeof(t));
        assert_non_null(strchr(t, '.'));
        assert_true(fabs(strtod(t, NULL) - s) <= 0.5e-9 + s * 1e-15);
    }
}

static int report(void **state)
{
    (void)state;
    printf("checked %lu floats\n", checked);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_random_bits), cmocka_unit_test(test_scores),
        cmocka_unit_test(test_special),     cmocka_unit_test(test_writer),
        cmocka_unit_test(test_seconds),
    };
    return cmocka_run_group_tests(tests, NULL, report);
}
