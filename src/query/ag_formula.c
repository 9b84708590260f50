/*
 * Score formulas (ag_formula.h; the language and its rules: docs/API.md "Formula queries").
 *
 * A formula is parsed into a tree of nodes in the request's arena. Values are computed in double
 * precision; constants, decay parameters and by_zero_default are float32 in Qdrant's API and are
 * narrowed to float first so both servers compute with the same numbers.
 */
#include "query/ag_formula.h"
#include "query/ag_query_int.h"

#include <math.h>
#include <stdio.h>

#include "json/ag_json.h"

typedef enum {
    F_CONST,
    F_SCORE, /* $score[i] */
    F_VAR,   /* a payload key, as a number */
    F_COND,  /* a filter condition: 1 or 0 */
    F_GEO,   /* metres from origin to the geo point at key */
    F_DTKEY, /* the datetime at key, in microseconds since the epoch */
    F_MULT,
    F_SUM,
    F_NEG,
    F_ABS,
    F_DIV,
    F_SQRT,
    F_POW,
    F_EXP,
    F_LOG10,
    F_LN,
    F_LIN_DECAY,
    F_EXP_DECAY,
    F_GAUSS_DECAY
} fkind_t;

typedef struct fnode fnode_t;
struct fnode {
    fkind_t kind;
    double c;          /* F_CONST; by_zero_default (F_DIV); lambda (decays) */
    bool has_c;        /* F_DIV: by_zero_default given */
    size_t idx;        /* F_SCORE */
    const char *key;   /* F_VAR, F_GEO, F_DTKEY (arena copy) */
    double lat, lon;   /* F_GEO origin */
    ag_filter_t *cond; /* F_COND (owned by the formula's list) */
    fnode_t **kid;     /* operands: MULT/SUM n; DIV, POW left/right; decays x and target */
    size_t nkid;
};

typedef struct fdefault {
    bool score; /* $score[idx], else a payload key */
    size_t idx;
    const char *key;
    const json_t *value; /* borrowed from the request */
} fdefault_t;

struct ag_formula {
    fnode_t *root;
    fdefault_t *defs;
    size_t ndefs;
    ag_filter_t **conds; /* every compiled condition, for release */
    size_t nconds, capconds;
    /* parsing only */
    ag_arena_t *arena;
    ag_diag_t *diag;
    size_t nodes;
};

#define PATH_LEN 256

static void sub(char *out, const char *path, const char *key)
{
    ag_q__pathf(out, PATH_LEN, "%s.%s", path, key);
}

static char *arena_strdup(ag_arena_t *a, const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = ag_arena_alloc(a, n);
    if (d)
        memcpy(d, s, n);
    return d;
}

/* "$score" / "$score[i]" -> *idx; a payload key path -> *score false. */
static int parse_variable(ag_formula_t *f, const char *s, const char *path, bool *score,
                          size_t *idx)
{
    if (s[0] != '$') {
        if (ag_payload_path_check(s, NULL) != 0)
            return ag_fail(f->diag, AG_EINVAL, "Bad request: %s: invalid payload variable: %.200s",
                           path, s);
        *score = false;
        return 0;
    }
    *score = true;
    *idx = 0;
    if (strcmp(s, "$score") == 0)
        return 0;
    if (strncmp(s, "$score[", 7) == 0) {
        const char *d = s + 7;
        size_t n = strspn(d, "0123456789");
        if (n > 0 && n <= 4 && d[n] == ']' && d[n + 1] == '\0') {
            *idx = (size_t)strtoul(d, NULL, 10);
            return 0;
        }
        return ag_fail(f->diag, AG_EINVAL, "Bad request: %s: invalid reserved variable: %.200s",
                       path, s);
    }
    return ag_fail(f->diag, AG_EINVAL,
                   "Bad request: %s: invalid reserved word: %.200s (only $score and $score[i])",
                   path, s);
}

static int parse_expr(ag_formula_t *f, const json_t *v, const char *path, int depth, fnode_t **out);

static fnode_t *new_node(ag_formula_t *f, fkind_t kind, size_t nkid)
{
    fnode_t *n = ag_arena_calloc(f->arena, 1, sizeof(*n));
    if (!n)
        return NULL;
    n->kind = kind;
    if (nkid) {
        if (!(n->kid = ag_arena_calloc(f->arena, nkid, sizeof(*n->kid))))
            return NULL;
        n->nkid = nkid;
    }
    return n;
}

/* A float32 field of Qdrant's API (absent or null: dflt). */
static int get_f32(ag_formula_t *f, const json_t *obj, const char *key, const char *path,
                   double dflt, bool *given, double *out)
{
    const json_t *v = json_object_get(obj, key);
    *out = dflt;
    if (given)
        *given = false;
    if (!v || json_is_null(v))
        return 0;
    float x = json_is_number(v) ? (float)json_number_value(v) : NAN;
    if (!isfinite(x))
        return ag_fail(f->diag, AG_EINVAL, "%s.%s: expected a finite number", path, key);
    *out = x;
    if (given)
        *given = true;
    return 0;
}

/* Qdrant's decay shapes, as one lambda: lin 1 - lambda * |x - t| (floored at 0), exp
 * e^(lambda * |x - t|), gauss e^(lambda * (x - t)^2), so that each is `midpoint` at scale. */
static int parse_decay(ag_formula_t *f, fkind_t kind, const json_t *p, const char *path, int depth,
                       fnode_t **out)
{
    if (!json_is_object(p))
        return ag_fail(f->diag, AG_EINVAL, "%s: expected {x, target, scale, midpoint}", path);
    int rc = AG_JSON_ONLY(p, path, f->diag, "x", "target", "scale", "midpoint");
    if (rc)
        return rc;
    double scale, mid;
    if ((rc = get_f32(f, p, "scale", path, 1.0, NULL, &scale)) != 0 ||
        (rc = get_f32(f, p, "midpoint", path, 0.5, NULL, &mid)) != 0)
        return rc;
    if (kind == F_LIN_DECAY && !(mid >= 0.0 && mid <= 1.0))
        return ag_fail(f->diag, AG_EINVAL,
                       "Bad request: %s.midpoint: linear decay midpoint should be in the range "
                       "[0.0, 1.0], got %g",
                       path, mid);
    if (kind != F_LIN_DECAY && !(mid > 0.0 && mid < 1.0))
        return ag_fail(f->diag, AG_EINVAL,
                       "Bad request: %s.midpoint: decay midpoint should be in the range (0.0, "
                       "1.0), got %g",
                       path, mid);
    if (!(scale > 0.0))
        return ag_fail(f->diag, AG_EINVAL,
                       "Bad request: %s.scale: decay scale should be non-zero positive, got %g",
                       path, scale);
    fnode_t *n = new_node(f, kind, 2);
    if (!n)
        return AG_ENOMEM;
    n->c = kind == F_LIN_DECAY   ? (1.0 - mid) / scale
           : kind == F_EXP_DECAY ? log(mid) / scale
                                 : log(mid) / (scale * scale);
    char p2[PATH_LEN];
    const json_t *x = json_object_get(p, "x");
    sub(p2, path, "x");
    if (!x)
        return ag_fail(f->diag, AG_EINVAL, "%s: field is required", p2);
    if ((rc = parse_expr(f, x, p2, depth + 1, &n->kid[0])) != 0)
        return rc;
    const json_t *t = json_object_get(p, "target");
    sub(p2, path, "target");
    if (t && !json_is_null(t) && (rc = parse_expr(f, t, p2, depth + 1, &n->kid[1])) != 0)
        return rc;
    *out = n;
    return 0;
}

static int keep_cond(ag_formula_t *f, ag_filter_t *cond)
{
    if (f->nconds == f->capconds) {
        size_t cap = f->capconds ? f->capconds * 2 : 8;
        ag_filter_t **g = ag_arena_calloc(f->arena, cap, sizeof(*g));
        if (!g) {
            ag_filter_free(cond);
            return AG_ENOMEM;
        }
        if (f->nconds)
            memcpy(g, f->conds, f->nconds * sizeof(*g));
        f->conds = g;
        f->capconds = cap;
    }
    f->conds[f->nconds++] = cond;
    return 0;
}

/* Any other object is a filter condition (a field condition, is_empty, has_id, nested, a
 * filter...), compiled as {"must": [it]} with the limits of a client's filter. */
static int parse_condition(ag_formula_t *f, const json_t *v, const char *path, fnode_t **out)
{
    json_t *wrap = json_pack("{s:[O]}", "must", v);
    if (!wrap)
        return AG_ENOMEM;
    ag_filter_t *cond = NULL;
    ag_diag_t d = {{0}};
    int rc = ag_filter_compile_budgeted(wrap, &cond, &d);
    json_decref(wrap);
    if (rc == AG_ENOMEM)
        return rc;
    if (rc) {
        /* the filter's message names its own path: put the formula's in its place */
        static const char pre[] = "filter.must[0]";
        bool ours = strncmp(d.msg, pre, sizeof(pre) - 1) == 0;
        return ag_fail(f->diag, rc,
                       "%s%s%s (an object that is not an operator is read as a filter "
                       "condition)",
                       path, ours ? "" : ": ", ours ? d.msg + sizeof(pre) - 1 : d.msg);
    }
    if ((rc = keep_cond(f, cond)) != 0)
        return rc;
    fnode_t *n = new_node(f, F_COND, 0);
    if (!n)
        return AG_ENOMEM;
    n->cond = cond;
    *out = n;
    return 0;
}

static int parse_geo(ag_formula_t *f, const json_t *g, const char *path, fnode_t **out)
{
    if (!json_is_object(g))
        return ag_fail(f->diag, AG_EINVAL, "%s: expected {origin, to}", path);
    int rc = AG_JSON_ONLY(g, path, f->diag, "origin", "to");
    if (rc)
        return rc;
    const json_t *o = json_object_get(g, "origin"), *to = json_object_get(g, "to");
    char p2[PATH_LEN];
    sub(p2, path, "origin");
    if (!json_is_object(o))
        return ag_fail(f->diag, AG_EINVAL, "%s: expected {lon, lat}", p2);
    if ((rc = AG_JSON_ONLY(o, p2, f->diag, "lon", "lat")) != 0)
        return rc;
    const json_t *lon = json_object_get(o, "lon"), *lat = json_object_get(o, "lat");
    if (!json_is_number(lon) || !json_is_number(lat) || fabs(json_number_value(lon)) > 180 ||
        fabs(json_number_value(lat)) > 90)
        return ag_fail(f->diag, AG_EINVAL, "%s: expected lon in [-180, 180] and lat in [-90, 90]",
                       p2);
    sub(p2, path, "to");
    if (!json_is_string(to) || ag_payload_path_check(json_string_value(to), NULL) != 0)
        return ag_fail(f->diag, AG_EINVAL, "%s: expected a payload key", p2);
    fnode_t *n = new_node(f, F_GEO, 0);
    if (!n || !(n->key = arena_strdup(f->arena, json_string_value(to))))
        return AG_ENOMEM;
    n->lon = json_number_value(lon);
    n->lat = json_number_value(lat);
    *out = n;
    return 0;
}

static int parse_datetime(ag_formula_t *f, const json_t *v, const char *path, fnode_t **out)
{
    int64_t us;
    if (!json_is_string(v) ||
        ag_datetime_parse(json_string_value(v), json_string_length(v), &us) != 0)
        return ag_fail(f->diag, AG_EINVAL, "Bad request: %s: expected an RFC 3339 datetime", path);
    fnode_t *n = new_node(f, F_CONST, 0);
    if (!n)
        return AG_ENOMEM;
    n->c = (double)us;
    *out = n;
    return 0;
}

/* Operators taking one expression. */
static const struct {
    const char *name;
    fkind_t kind;
} unary[] = {{"neg", F_NEG}, {"abs", F_ABS},     {"sqrt", F_SQRT},
             {"exp", F_EXP}, {"log10", F_LOG10}, {"ln", F_LN}};

static int parse_object(ag_formula_t *f, const json_t *v, const char *path, int depth,
                        fnode_t **out)
{
    char p2[PATH_LEN];
    int rc;
    const json_t *x;
    if (json_object_size(v) == 1) {
        const char *op = json_object_iter_key(json_object_iter((json_t *)v));
        x = json_object_iter_value(json_object_iter((json_t *)v));
        sub(p2, path, op);
        for (size_t i = 0; i < AG_ARRAY_LEN(unary); i++) {
            if (strcmp(op, unary[i].name) != 0)
                continue;
            fnode_t *n = new_node(f, unary[i].kind, 1);
            if (!n)
                return AG_ENOMEM;
            *out = n;
            return parse_expr(f, x, p2, depth + 1, &n->kid[0]);
        }
        if (strcmp(op, "mult") == 0 || strcmp(op, "sum") == 0) {
            if (!json_is_array(x))
                return ag_fail(f->diag, AG_EINVAL, "%s: expected an array of expressions", p2);
            size_t m = json_array_size(x);
            fnode_t *n = new_node(f, op[0] == 'm' ? F_MULT : F_SUM, m);
            if (!n)
                return AG_ENOMEM;
            for (size_t i = 0; i < m; i++) {
                char pe[PATH_LEN];
                ag_q__pathf(pe, sizeof(pe), "%s[%zu]", p2, i);
                if ((rc = parse_expr(f, json_array_get(x, i), pe, depth + 1, &n->kid[i])) != 0)
                    return rc;
            }
            *out = n;
            return 0;
        }
        if (strcmp(op, "div") == 0 || strcmp(op, "pow") == 0) {
            bool div = op[0] == 'd';
            const char *l = div ? "left" : "base", *r = div ? "right" : "exponent";
            if (!json_is_object(x))
                return ag_fail(f->diag, AG_EINVAL, "%s: expected {%s, %s}", p2, l, r);
            if ((rc = div ? AG_JSON_ONLY(x, p2, f->diag, "left", "right", "by_zero_default")
                          : AG_JSON_ONLY(x, p2, f->diag, "base", "exponent")) != 0)
                return rc;
            fnode_t *n = new_node(f, div ? F_DIV : F_POW, 2);
            if (!n)
                return AG_ENOMEM;
            if (div && (rc = get_f32(f, x, "by_zero_default", p2, 0, &n->has_c, &n->c)) != 0)
                return rc;
            const char *names[2] = {l, r};
            for (int i = 0; i < 2; i++) {
                char pe[PATH_LEN];
                sub(pe, p2, names[i]);
                const json_t *e = json_object_get(x, names[i]);
                if (!e)
                    return ag_fail(f->diag, AG_EINVAL, "%s: field is required", pe);
                if ((rc = parse_expr(f, e, pe, depth + 1, &n->kid[i])) != 0)
                    return rc;
            }
            *out = n;
            return 0;
        }
        if (strcmp(op, "lin_decay") == 0)
            return parse_decay(f, F_LIN_DECAY, x, p2, depth, out);
        if (strcmp(op, "exp_decay") == 0)
            return parse_decay(f, F_EXP_DECAY, x, p2, depth, out);
        if (strcmp(op, "gauss_decay") == 0)
            return parse_decay(f, F_GAUSS_DECAY, x, p2, depth, out);
        if (strcmp(op, "geo_distance") == 0)
            return parse_geo(f, x, p2, out);
        if (strcmp(op, "datetime") == 0)
            return parse_datetime(f, x, p2, out);
        if (strcmp(op, "datetime_key") == 0) {
            if (!json_is_string(x) || ag_payload_path_check(json_string_value(x), NULL) != 0)
                return ag_fail(f->diag, AG_EINVAL, "%s: expected a payload key", p2);
            fnode_t *n = new_node(f, F_DTKEY, 0);
            if (!n || !(n->key = arena_strdup(f->arena, json_string_value(x))))
                return AG_ENOMEM;
            *out = n;
            return 0;
        }
    }
    return parse_condition(f, v, path, out);
}

static int parse_expr(ag_formula_t *f, const json_t *v, const char *path, int depth, fnode_t **out)
{
    if (depth > AG_FORMULA_MAX_DEPTH)
        return ag_fail(f->diag, AG_EINVAL, "Bad request: %s: formula nested deeper than %d levels",
                       path, AG_FORMULA_MAX_DEPTH);
    if (++f->nodes > AG_FORMULA_MAX_NODES)
        return ag_fail(f->diag, AG_EINVAL, "Bad request: %s: a formula has at most %d expressions",
                       path, AG_FORMULA_MAX_NODES);
    if (json_is_number(v)) {
        float c = (float)json_number_value(v);
        if (!isfinite(c))
            return ag_fail(f->diag, AG_EINVAL, "%s: not a finite float32", path);
        fnode_t *n = new_node(f, F_CONST, 0);
        if (!n)
            return AG_ENOMEM;
        n->c = c;
        *out = n;
        return 0;
    }
    if (json_is_string(v)) {
        bool score;
        size_t idx = 0;
        int rc = parse_variable(f, json_string_value(v), path, &score, &idx);
        if (rc)
            return rc;
        fnode_t *n = new_node(f, score ? F_SCORE : F_VAR, 0);
        if (!n || (!score && !(n->key = arena_strdup(f->arena, json_string_value(v)))))
            return AG_ENOMEM;
        n->idx = idx;
        *out = n;
        return 0;
    }
    if (json_is_object(v))
        return parse_object(f, v, path, depth, out);
    return ag_fail(f->diag, AG_EINVAL,
                   "%s: expected a number, a variable (\"$score\", a payload key), an operator "
                   "object or a filter condition",
                   path);
}

static int parse_defaults(ag_formula_t *f, const json_t *defaults, const char *path)
{
    char p[PATH_LEN];
    sub(p, path, "defaults");
    if (!defaults || json_is_null(defaults))
        return 0;
    if (!json_is_object(defaults))
        return ag_fail(f->diag, AG_EINVAL, "%s: expected an object", p);
    size_t n = json_object_size(defaults);
    if (n && !(f->defs = ag_arena_calloc(f->arena, n, sizeof(*f->defs))))
        return AG_ENOMEM;
    const char *k;
    const json_t *v;
    json_object_foreach((json_t *)defaults, k, v)
    {
        fdefault_t *d = &f->defs[f->ndefs];
        char pk[PATH_LEN];
        sub(pk, p, k);
        int rc = parse_variable(f, k, pk, &d->score, &d->idx);
        if (rc)
            return rc;
        if (!d->score && !(d->key = arena_strdup(f->arena, k)))
            return AG_ENOMEM;
        d->value = v;
        f->ndefs++;
    }
    return 0;
}

int ag_formula_parse(ag_arena_t *arena, const json_t *formula, const json_t *defaults,
                     const char *path, ag_diag_t *diag, ag_formula_t **out)
{
    *out = NULL;
    ag_formula_t *f = ag_arena_calloc(arena, 1, sizeof(*f));
    if (!f)
        return AG_ENOMEM;
    f->arena = arena;
    f->diag = diag;
    *out = f;
    char p[PATH_LEN];
    sub(p, path, "formula");
    if (!formula)
        return ag_fail(diag, AG_EINVAL, "%s: field is required", p);
    int rc = parse_expr(f, formula, p, 0, &f->root);
    if (rc == 0)
        rc = parse_defaults(f, defaults, path);
    f->diag = NULL;
    return rc;
}

void ag_formula_release(ag_formula_t *f)
{
    if (!f)
        return;
    for (size_t i = 0; i < f->nconds; i++)
        ag_filter_free(f->conds[i]);
    f->nconds = 0;
}

/* ---- evaluation ----------------------------------------------------------------------------- */

#define EARTH_RADIUS_M 6371008.8 /* mean radius, the one filters use (ag_filter.h) */
#define DEG_TO_RAD (3.14159265358979323846 / 180.0)

static double haversine_m(double lat1, double lon1, double lat2, double lon2)
{
    double dlat = (lat2 - lat1) * DEG_TO_RAD, dlon = (lon2 - lon1) * DEG_TO_RAD;
    double sa = sin(dlat / 2), so = sin(dlon / 2);
    double h = sa * sa + cos(lat1 * DEG_TO_RAD) * cos(lat2 * DEG_TO_RAD) * so * so;
    return 2.0 * EARTH_RADIUS_M * asin(sqrt(h > 1.0 ? 1.0 : h));
}

typedef struct values {
    const json_t *one; /* the only value seen */
    size_t n;
} values_t;

static void take_value(const json_t *v, void *ud)
{
    values_t *vs = ud;
    if (json_is_null(v)) /* null is no value (a payload index holds nothing for it) */
        return;
    if (vs->n++ == 0)
        vs->one = v;
}

typedef enum { WANT_NUMBER, WANT_GEO, WANT_DATETIME } want_t;

static const char *want_name(want_t w)
{
    return w == WANT_NUMBER ? "number" : w == WANT_GEO ? "geo point" : "datetime";
}

static bool convert(const json_t *v, want_t want, double *a, double *b)
{
    switch (want) {
    case WANT_NUMBER:
        if (json_is_number(v)) {
            *a = json_number_value(v);
            return true;
        }
        /* an integer above 2^63, carried as a marker string (ag_json.h) */
        if (json_is_string(v) &&
            strncmp(json_string_value(v), AG_U64_MARKER, sizeof(AG_U64_MARKER) - 1) == 0) {
            *a = strtod(json_string_value(v) + sizeof(AG_U64_MARKER) - 1, NULL);
            return true;
        }
        return false;
    case WANT_GEO: {
        const json_t *lon = json_object_get(v, "lon"), *lat = json_object_get(v, "lat");
        if (!json_is_object(v) || !json_is_number(lon) || !json_is_number(lat))
            return false;
        *a = json_number_value(lat);
        *b = json_number_value(lon);
        return true;
    }
    case WANT_DATETIME: {
        int64_t us;
        if (!json_is_string(v) ||
            ag_datetime_parse(json_string_value(v), json_string_length(v), &us) != 0)
            return false;
        *a = (double)us;
        return true;
    }
    }
    return false;
}

/* The value at key: the point's (an array at the key counts as its elements, null as nothing;
 * exactly one value is needed), else the default, else an error, as Qdrant. */
static int payload_value(const ag_formula_t *f, const ag_formula_env_t *env, const char *key,
                         want_t want, double *a, double *b, ag_diag_t *diag)
{
    values_t vs = {NULL, 0};
    if (env->payload)
        ag_payload_path_each(env->payload, key, take_value, &vs);
    const json_t *v = vs.n == 1 ? vs.one : NULL;
    if (vs.n == 0)
        for (size_t i = 0; i < f->ndefs && !v; i++)
            if (!f->defs[i].score && strcmp(f->defs[i].key, key) == 0)
                v = f->defs[i].value;
    if (vs.n > 1)
        return ag_fail(diag, AG_EINVAL,
                       "Bad request: formula: expected a %s in payload key `%.200s`, got %zu "
                       "values",
                       want_name(want), key, vs.n);
    if (!v)
        return ag_fail(diag, AG_EINVAL,
                       "Bad request: formula: expected a %s in payload key `%.200s`: no value "
                       "found in the payload nor in defaults",
                       want_name(want), key);
    if (!convert(v, want, a, b))
        return ag_fail(diag, AG_EINVAL,
                       "Bad request: formula: expected a %s in payload key `%.200s`: the value "
                       "is not one",
                       want_name(want), key);
    return 0;
}

static int non_finite(ag_diag_t *diag, const char *what, double a, double b, double r)
{
    return ag_fail(diag, AG_EINVAL, "Bad request: formula: %s(%g, %g) = %g is not a finite number",
                   what, a, b, r);
}

static int eval(const ag_formula_t *f, const fnode_t *n, const ag_formula_env_t *env, double *out,
                ag_diag_t *diag)
{
    double a = 0, b = 0;
    int rc;
    switch (n->kind) {
    case F_CONST:
        *out = n->c;
        return 0;
    case F_SCORE:
        if (n->idx < env->nscores && !isnan(env->scores[n->idx])) {
            *out = env->scores[n->idx];
            return 0;
        }
        *out = 0.0; /* not in that prefetch: the default given for it, else 0 */
        for (size_t i = 0; i < f->ndefs; i++)
            if (f->defs[i].score && f->defs[i].idx == n->idx && json_is_number(f->defs[i].value))
                *out = json_number_value(f->defs[i].value);
        return 0;
    case F_VAR:
        return payload_value(f, env, n->key, WANT_NUMBER, out, &b, diag);
    case F_DTKEY:
        return payload_value(f, env, n->key, WANT_DATETIME, out, &b, diag);
    case F_GEO:
        if ((rc = payload_value(f, env, n->key, WANT_GEO, &a, &b, diag)) != 0)
            return rc;
        *out = haversine_m(n->lat, n->lon, a, b);
        return 0;
    case F_COND:
        *out = env->cond && env->cond(env->ud, n->cond) ? 1.0 : 0.0;
        return 0;
    case F_MULT:
        *out = 1.0;
        for (size_t i = 0; i < n->nkid; i++) {
            if ((rc = eval(f, n->kid[i], env, &a, diag)) != 0)
                return rc;
            if (a == 0.0) { /* as Qdrant: a zero factor ends the product */
                *out = 0.0;
                return 0;
            }
            *out *= a;
        }
        return 0;
    case F_SUM:
        *out = 0.0;
        for (size_t i = 0; i < n->nkid; i++) {
            if ((rc = eval(f, n->kid[i], env, &a, diag)) != 0)
                return rc;
            *out += a;
        }
        return 0;
    case F_DIV:
        if ((rc = eval(f, n->kid[0], env, &a, diag)) != 0)
            return rc;
        if (a == 0.0) { /* 0 / anything is 0, the divisor is not evaluated */
            *out = 0.0;
            return 0;
        }
        if ((rc = eval(f, n->kid[1], env, &b, diag)) != 0)
            return rc;
        if (b == 0.0 && n->has_c) {
            *out = n->c;
            return 0;
        }
        *out = a / b;
        return isfinite(*out) ? 0 : non_finite(diag, "div", a, b, *out);
    case F_POW:
        if ((rc = eval(f, n->kid[0], env, &a, diag)) != 0 ||
            (rc = eval(f, n->kid[1], env, &b, diag)) != 0)
            return rc;
        *out = pow(a, b);
        return isfinite(*out) ? 0 : non_finite(diag, "pow", a, b, *out);
    case F_LIN_DECAY:
    case F_EXP_DECAY:
    case F_GAUSS_DECAY:
        if ((rc = eval(f, n->kid[0], env, &a, diag)) != 0)
            return rc;
        if (n->kid[1] && (rc = eval(f, n->kid[1], env, &b, diag)) != 0)
            return rc;
        if (n->kind == F_LIN_DECAY) {
            double y = 1.0 - n->c * fabs(a - b);
            *out = y > 0.0 ? y : 0.0;
        } else if (n->kind == F_EXP_DECAY) {
            *out = exp(n->c * fabs(a - b));
        } else {
            *out = exp(n->c * (a - b) * (a - b));
        }
        if (isnan(*out)) /* an infinite distance times a zero lambda cannot happen; be safe */
            *out = 0.0;
        return 0;
    case F_NEG:
    case F_ABS:
    case F_SQRT:
    case F_EXP:
    case F_LOG10:
    case F_LN:
        break;
    }
    if ((rc = eval(f, n->kid[0], env, &a, diag)) != 0)
        return rc;
    const char *name = "";
    switch (n->kind) {
    case F_NEG:
        *out = -a;
        return 0;
    case F_ABS:
        *out = fabs(a);
        return 0;
    case F_SQRT:
        *out = sqrt(a);
        name = "sqrt";
        break;
    case F_EXP:
        *out = exp(a);
        name = "exp";
        break;
    case F_LOG10:
        *out = log10(a);
        name = "log10";
        break;
    default:
        *out = log(a);
        name = "ln";
        break;
    }
    if (isfinite(*out))
        return 0;
    return ag_fail(diag, AG_EINVAL, "Bad request: formula: %s(%g) = %g is not a finite number",
                   name, a, *out);
}

int ag_formula_eval(const ag_formula_t *f, const ag_formula_env_t *env, double *out,
                    ag_diag_t *diag)
{
    *out = 0.0;
    if (!f || !f->root)
        return ag_fail(diag, AG_EINTERNAL, "formula not parsed");
    return eval(f, f->root, env, out, diag);
}
