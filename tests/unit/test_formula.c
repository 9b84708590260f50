/* Unit tests for score formulas (src/query/ag_formula.c): the parser and the evaluator on
 * hand-built points (scores, payloads, conditions), without a collection — operators, variables
 * and defaults, conditions, decays, geo and datetime values, and the refusals: bad expressions,
 * division by zero and other non-finite values, missing or ill-typed payload values, nesting and
 * size limits. Formulas over a collection (and a row restriction) are in test_query.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>

#include <cmocka.h>
#include <math.h>

#include "query/ag_formula.h"

typedef struct point {
    double scores[2];
    const char *payload; /* JSON text or NULL */
} point_t;

/* Conditions see the payload through the filter evaluator, as the collection's would. */
static bool cond_on_payload(void *ud, const ag_filter_t *f)
{
    ag_filter_subject_t s = {NULL, ud, NULL, NULL};
    return ag_filter_match(f, &s);
}

/* Parses `formula` (+ `defaults`) and evaluates it on pt. Returns the rc of the step that failed
 * (parse or eval), with the message in msg. */
static int run(const char *formula, const char *defaults, const point_t *pt, double *out, char *msg,
               size_t msglen)
{
    ag_arena_t arena;
    ag_arena_init(&arena, 1 << 22);
    ag_diag_t d = {{0}};
    json_error_t err;
    json_t *fj = json_loads(formula, JSON_DECODE_ANY, &err);
    if (!fj)
        fail_msg("bad test JSON %s: %s", formula, err.text);
    json_t *dj = defaults ? json_loads(defaults, 0, &err) : NULL;
    json_t *pj = pt && pt->payload ? json_loads(pt->payload, 0, &err) : NULL;
    ag_formula_t *f = NULL;
    int rc = ag_formula_parse(&arena, fj, dj, "query", &d, &f);
    if (rc == 0) {
        ag_formula_env_t env = {pt ? pt->scores : NULL, pt ? 2 : 0, pj, cond_on_payload,
                                (void *)pj};
        rc = ag_formula_eval(f, &env, out, &d);
    }
    snprintf(msg, msglen, "%s", d.msg);
    ag_formula_release(f);
    json_decref(fj);
    json_decref(dj);
    json_decref(pj);
    ag_arena_release(&arena);
    return rc;
}

static double value(const char *formula, const char *defaults, const point_t *pt)
{
    double v = NAN;
    char msg[512];
    int rc = run(formula, defaults, pt, &v, msg, sizeof(msg));
    if (rc)
        fail_msg("%s: rc %d: %s", formula, rc, msg);
    return v;
}

static void refused(const char *formula, const char *defaults, const point_t *pt, const char *want)
{
    double v;
    char msg[512];
    int rc = run(formula, defaults, pt, &v, msg, sizeof(msg));
    if (rc == 0)
        fail_msg("%s: accepted (%g), wanted an error with \"%s\"", formula, v, want);
    assert_int_equal(rc, AG_EINVAL);
    if (!strstr(msg, want))
        fail_msg("%s: message \"%s\" lacks \"%s\"", formula, msg, want);
}

static void near(double a, double b, int line)
{
    if (!(fabs(a - b) <= 1e-9 * (fabs(b) > 1 ? fabs(b) : 1)))
        fail_msg("line %d: got %.17g, want %.17g", line, a, b);
}
#define NEAR(a, b) near((a), (double)(b), __LINE__)

static void test_operators(void **state)
{
    (void)state;
    point_t p = {{0.5, NAN}, "{\"price\": 10, \"neg\": -4, \"arr\": [3], \"big\": 2.5}"};
    NEAR(value("2.5", NULL, &p), 2.5);
    NEAR(value("0.1", NULL, &p), (double)0.1f); /* constants are float32, as in Qdrant's API */
    NEAR(value("\"$score\"", NULL, &p), 0.5);
    NEAR(value("\"$score[0]\"", NULL, &p), 0.5);
    NEAR(value("\"price\"", NULL, &p), 10);
    NEAR(value("\"arr\"", NULL, &p), 3); /* a one-element array is its element */
    NEAR(value("{\"sum\": [{\"mult\": [\"$score\", 0.5]}, {\"mult\": [\"price\", 0.25]}]}", NULL,
               &p),
         0.25 + 2.5);
    NEAR(value("{\"sum\": []}", NULL, &p), 0);
    NEAR(value("{\"mult\": []}", NULL, &p), 1);
    NEAR(value("{\"neg\": \"price\"}", NULL, &p), -10);
    NEAR(value("{\"abs\": \"neg\"}", NULL, &p), 4);
    NEAR(value("{\"div\": {\"left\": \"price\", \"right\": 4}}", NULL, &p), 2.5);
    NEAR(value("{\"sqrt\": 16}", NULL, &p), 4);
    NEAR(value("{\"pow\": {\"base\": 2, \"exponent\": \"price\"}}", NULL, &p), 1024);
    NEAR(value("{\"exp\": 0}", NULL, &p), 1);
    NEAR(value("{\"log10\": 1000}", NULL, &p), 3);
    NEAR(value("{\"ln\": {\"exp\": 2}}", NULL, &p), 2);
    /* the fast sigmoid of Qdrant's test: price / (1 + |price|) */
    NEAR(value("{\"div\": {\"left\": \"price\", \"right\": {\"sum\": [1.0, {\"abs\": "
               "\"price\"}]}}}",
               NULL, &p),
         10.0 / 11.0);
}

static void test_variables_and_defaults(void **state)
{
    (void)state;
    point_t p = {{0.5, NAN}, "{\"a\": {\"b\": 7}, \"n\": null, \"e\": [], \"s\": \"x\"}"};
    NEAR(value("\"a.b\"", NULL, &p), 7);
    NEAR(value("\"missing\"", "{\"missing\": 3}", &p), 3);
    NEAR(value("\"n\"", "{\"n\": 1.5}", &p), 1.5); /* null is no value */
    NEAR(value("\"e\"", "{\"e\": 2}", &p), 2);     /* nor is an empty array */
    /* $score[1]: the point is not in the second prefetch -> its default, else 0 */
    NEAR(value("\"$score[1]\"", NULL, &p), 0);
    NEAR(value("\"$score[1]\"", "{\"$score[1]\": 0.25}", &p), 0.25);
    NEAR(value("\"$score[7]\"", NULL, &p), 0);
    NEAR(value("\"$score\"", "{\"$score\": 9}", &p), 0.5); /* present: the default is not used */
    refused("\"missing\"", NULL, &p, "no value found in the payload nor in defaults");
    refused("\"s\"", NULL, &p, "expected a number in payload key `s`");
    refused("\"a\"", NULL, &p, "expected a number in payload key `a`");
    refused("\"missing\"", "{\"missing\": \"text\"}", &p, "expected a number");
    point_t multi = {{0, 0}, "{\"v\": [1, 2]}"};
    refused("\"v\"", NULL, &multi, "got 2 values");
    refused("\"$scores\"", NULL, &p, "invalid reserved word");
    refused("\"$score[x]\"", NULL, &p, "invalid reserved variable");
    refused("\"$score[1][2]\"", NULL, &p, "invalid reserved variable");
    refused("\"a..b\"", NULL, &p, "invalid payload variable");
    refused("\"price\"", "{\"$other\": 1}", &p, "query.defaults.$other: invalid reserved word");
    refused("\"price\"", "[1]", &p, "query.defaults: expected an object");
}

static void test_division_and_non_finite(void **state)
{
    (void)state;
    point_t p = {{0.5, NAN}, "{\"zero\": 0, \"x\": 3}"};
    refused("{\"div\": {\"left\": 1, \"right\": \"zero\"}}", NULL, &p, "not a finite number");
    NEAR(value("{\"div\": {\"left\": 1, \"right\": \"zero\", \"by_zero_default\": 7}}", NULL, &p),
         7);
    /* a zero numerator is 0 whatever the divisor, which is not even evaluated */
    NEAR(value("{\"div\": {\"left\": 0, \"right\": \"missing\"}}", NULL, &p), 0);
    NEAR(value("{\"mult\": [0, \"missing\"]}", NULL, &p), 0); /* nor after a zero factor */
    refused("{\"mult\": [1, \"missing\"]}", NULL, &p, "missing");
    refused("{\"sqrt\": -1}", NULL, &p, "sqrt(-1)");
    refused("{\"ln\": 0}", NULL, &p, "ln(0)");
    refused("{\"log10\": -2}", NULL, &p, "log10(-2)");
    refused("{\"exp\": 1000}", NULL, &p, "exp(1000)");
    refused("{\"pow\": {\"base\": 0, \"exponent\": -1}}", NULL, &p, "pow(0, -1)");
    refused("{\"pow\": {\"base\": 10, \"exponent\": 400}}", NULL, &p, "is not a finite number");
}

static void test_conditions(void **state)
{
    (void)state;
    point_t p = {{1, NAN}, "{\"tag\": \"h1\", \"n\": 5}"};
    const char *boost = "{\"sum\": [\"$score\", {\"mult\": [0.5, {\"key\": \"tag\", \"match\": "
                        "{\"any\": [\"h1\", \"h2\"]}}]}]}";
    NEAR(value(boost, NULL, &p), 1.5);
    point_t q = {{1, NAN}, "{\"tag\": \"p\"}"};
    NEAR(value(boost, NULL, &q), 1.0);
    NEAR(value("{\"key\": \"n\", \"range\": {\"gte\": 5}}", NULL, &p), 1);
    NEAR(value("{\"must_not\": [{\"key\": \"n\", \"range\": {\"gte\": 5}}]}", NULL, &p), 0);
    NEAR(value("{\"is_empty\": {\"key\": \"missing\"}}", NULL, &p), 1);
    NEAR(value("{\"key\": \"n\", \"match\": {\"any\": []}}", NULL, &p), 0);
    /* anything else is refused with the filter's own message */
    refused("{\"key\": \"n\", \"match\": {\"valu\": 1}}", NULL, &p,
            "query.formula.match.valu: unknown field");
    refused("{\"summ\": [1]}", NULL, &p, "query.formula.summ: unknown field");
    refused("{\"sum\": [1], \"mult\": [2]}", NULL, &p, "read as a filter condition");
    refused("{\"sum\": 1}", NULL, &p, "query.formula.sum: expected an array");
    refused("[1, 2]", NULL, &p, "query.formula: expected a number");
    refused("true", NULL, &p, "expected a number");
    refused("null", NULL, &p, "expected a number");
    refused("{\"div\": {\"left\": 1}}", NULL, &p, "query.formula.div.right: field is required");
    refused("{\"div\": {\"left\": 1, \"right\": 2, \"x\": 3}}", NULL, &p, "unknown field");
    refused("{\"pow\": {\"base\": 1}}", NULL, &p, "exponent: field is required");
}

static void test_decay_geo_datetime(void **state)
{
    (void)state;
    point_t p = {{0, 0},
                 "{\"x\": 3, \"loc\": {\"lon\": 13.4050, \"lat\": 52.5200}, "
                 "\"t\": \"2024-01-02T00:00:00Z\", \"bad\": \"no date\"}"};
    /* at |x - target| == scale each decay is its midpoint */
    NEAR(value("{\"lin_decay\": {\"x\": \"x\", \"target\": 1, \"scale\": 2, \"midpoint\": 0.25}}",
               NULL, &p),
         0.25);
    NEAR(value("{\"exp_decay\": {\"x\": \"x\", \"target\": 1, \"scale\": 2, \"midpoint\": 0.25}}",
               NULL, &p),
         0.25);
    NEAR(value("{\"gauss_decay\": {\"x\": \"x\", \"target\": 5, \"scale\": 2, \"midpoint\": "
               "0.25}}",
               NULL, &p),
         0.25);
    /* defaults: target 0, scale 1, midpoint 0.5; linear decay stops at 0 */
    NEAR(value("{\"lin_decay\": {\"x\": 1}}", NULL, &p), 0.5);
    NEAR(value("{\"lin_decay\": {\"x\": 10}}", NULL, &p), 0);
    NEAR(value("{\"exp_decay\": {\"x\": 0}}", NULL, &p), 1);
    NEAR(value("{\"gauss_decay\": {\"x\": -1}}", NULL, &p), 0.5);
    refused("{\"lin_decay\": {\"x\": 1, \"midpoint\": 1.5}}", NULL, &p, "[0.0, 1.0]");
    refused("{\"exp_decay\": {\"x\": 1, \"midpoint\": 1}}", NULL, &p, "(0.0, 1.0)");
    refused("{\"gauss_decay\": {\"x\": 1, \"scale\": 0}}", NULL, &p, "non-zero positive");
    refused("{\"gauss_decay\": {\"target\": 1}}", NULL, &p, "gauss_decay.x: field is required");
    /* geo: Berlin to Paris, about 878 km (haversine, mean Earth radius) */
    double d = value("{\"geo_distance\": {\"origin\": {\"lon\": 2.3522, \"lat\": 48.8566}, "
                     "\"to\": \"loc\"}}",
                     NULL, &p);
    assert_true(d > 876000 && d < 880000);
    refused("{\"geo_distance\": {\"origin\": {\"lon\": 2, \"lat\": 48}, \"to\": \"x\"}}", NULL, &p,
            "expected a geo point in payload key `x`");
    refused("{\"geo_distance\": {\"origin\": {\"lon\": 200, \"lat\": 48}, \"to\": \"loc\"}}", NULL,
            &p, "origin: expected lon in [-180, 180]");
    /* datetimes are microseconds since the epoch, as Qdrant computes them */
    NEAR(value("{\"datetime\": \"1970-01-01T00:00:01Z\"}", NULL, &p), 1e6);
    NEAR(value("{\"sum\": [{\"datetime_key\": \"t\"}, {\"neg\": {\"datetime\": "
               "\"2024-01-01T00:00:00Z\"}}]}",
               NULL, &p),
         86400e6);
    refused("{\"datetime\": \"yesterday\"}", NULL, &p, "expected an RFC 3339 datetime");
    refused("{\"datetime_key\": \"bad\"}", NULL, &p, "expected a datetime in payload key `bad`");
    NEAR(value("{\"datetime_key\": \"none\"}", "{\"none\": \"1970-01-01T00:00:02Z\"}", &p), 2e6);
}

static void test_limits(void **state)
{
    (void)state;
    point_t p = {{1, 0}, "{}"};
    /* nesting: 64 levels are fine, 65 are refused (and nothing deeper is walked) */
    char deep[2048];
    for (int levels = 64; levels <= 65; levels++) {
        size_t o = 0;
        for (int i = 0; i < levels; i++)
            o += (size_t)snprintf(deep + o, sizeof(deep) - o, "{\"neg\": ");
        o += (size_t)snprintf(deep + o, sizeof(deep) - o, "1");
        for (int i = 0; i < levels; i++)
            o += (size_t)snprintf(deep + o, sizeof(deep) - o, "}");
        if (levels == 64)
            NEAR(value(deep, NULL, &p), 1);
        else
            refused(deep, NULL, &p, "formula nested deeper than 64 levels");
    }
    /* size: 10,000 expressions, not one more */
    size_t cap = 16 * AG_FORMULA_MAX_NODES;
    char *wide = malloc(cap);
    assert_non_null(wide);
    for (int n = AG_FORMULA_MAX_NODES - 1; n <= AG_FORMULA_MAX_NODES; n++) {
        size_t o = (size_t)snprintf(wide, cap, "{\"sum\": [");
        for (int i = 0; i < n; i++)
            o += (size_t)snprintf(wide + o, cap - o, "%s1", i ? "," : "");
        snprintf(wide + o, cap - o, "]}");
        if (n < AG_FORMULA_MAX_NODES)
            NEAR(value(wide, NULL, &p), (double)n); /* n constants + the sum itself */
        else
            refused(wide, NULL, &p, "at most 10000 expressions");
    }
    free(wide);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_operators),
        cmocka_unit_test(test_variables_and_defaults),
        cmocka_unit_test(test_division_and_non_finite),
        cmocka_unit_test(test_conditions),
        cmocka_unit_test(test_decay_geo_datetime),
        cmocka_unit_test(test_limits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
