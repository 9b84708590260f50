/*
 * Pieces every read shares: the scope (the caller's filter AND the row restriction), output
 * selectors and point rendering, vector inputs, and order_by — one implementation for scroll and
 * the query API (docs/API.md).
 */
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>

#include "ag_grow.h"
#include "query/ag_query_int.h"
#include "store/ag_payload_index.h"
#include "store/ag_write.h"
#include "json/ag_json.h"

int ag_qctx_deadline(const ag_qctx_t *ctx)
{
    if (ag_now_mono() < ctx->deadline)
        return 0;
    return ag_fail(ctx->diag, AG_ETIMEOUT,
                   "Timeout error: the request did not finish within its timeout of %llu s",
                   (unsigned long long)ctx->timeout_s);
}

/* ---- scope --------------------------------------------------------------------------------- */

int ag_scope_init(ag_scope_t *sc, ag_collection_t *c, const ag_filter_t *restriction,
                  const json_t *filter_json, const char *path, ag_diag_t *diag)
{
    sc->c = c;
    sc->user = NULL;
    sc->restriction = restriction;
    if (!filter_json || json_is_null(filter_json))
        return 0;
    ag_diag_t d = {{0}};
    int rc = ag_filter_compile_budgeted(filter_json, &sc->user, &d);
    if (rc) {
        /* Filter diagnostics start at "filter"; prefix with where the filter sits. */
        if (path && *path)
            return ag_fail(diag, rc, "%s: %s", path, d.msg);
        return ag_fail(diag, rc, "%s", d.msg);
    }
    return 0;
}

void ag_scope_release(ag_scope_t *sc)
{
    ag_filter_free(sc->user);
    sc->user = NULL;
}

bool ag_scope_match(const ag_scope_t *sc, uint32_t slot)
{
    return ag_coll_match(sc->c, slot, sc->restriction) && ag_coll_match(sc->c, slot, sc->user);
}

bool ag_scope_accept(const void *ud, uint32_t slot)
{
    return ag_scope_match(ud, slot);
}

static atomic_uint_fast64_t examined_total;

void ag_scope_note_examined(uint64_t n)
{
    atomic_fetch_add_explicit(&examined_total, n, memory_order_relaxed);
}

uint64_t ag_scope_examined_total(void)
{
    return atomic_load(&examined_total);
}

bool ag_scope_candidates(const ag_scope_t *sc, ag_arena_t *arena, const json_t *filter_json,
                         uint32_t **out, size_t *n)
{
    return ag_scope_candidates_max(sc, arena, filter_json, SIZE_MAX, out, n);
}

bool ag_scope_candidates_max(const ag_scope_t *sc, ag_arena_t *arena, const json_t *filter_json,
                             size_t max, uint32_t **out, size_t *n)
{
    /* Count both sides first and build only the smaller list: every candidate passes the whole
     * scope anyway, so either is a correct superset. With an indexed restriction the work is
     * bounded by the points in scope, however many points elsewhere match the filter. */
    json_t *eq = sc->restriction ? ag_filter_required_equalities(sc->restriction) : NULL;
    const json_t *user = filter_json && !json_is_null(filter_json) ? filter_json : NULL;
    size_t nu = 0, nr = 0;
    bool have_u = user && ag_payload_candidates_count(sc->c, user, &nu);
    bool have_r = eq && ag_payload_candidates_count(sc->c, eq, &nr);
    bool ok = false;
    if ((have_r ? nr : SIZE_MAX) > max && (have_u ? nu : SIZE_MAX) > max)
        ok = false; /* not selective enough: the caller walks the graph (nothing built) */
    else if (have_r && (!have_u || nr <= nu))
        ok = ag_payload_candidates(sc->c, arena, eq, out, n);
    else if (have_u)
        ok = ag_payload_candidates(sc->c, arena, user, out, n);
    json_decref(eq);
    return ok;
}

/* ---- output selectors and rendering -------------------------------------------------------- */

int ag_parse_with_payload(const json_t *v, bool dflt, ag_payload_sel_t *out, ag_diag_t *diag)
{
    memset(out, 0, sizeof(*out));
    out->enabled = dflt;
    if (!v || json_is_null(v))
        return 0;
    if (json_is_boolean(v)) {
        out->enabled = json_is_true(v);
        return 0;
    }
    if (json_is_array(v)) {
        out->enabled = true;
        out->include = v;
    } else if (json_is_object(v)) {
        int rc = AG_JSON_ONLY(v, "with_payload", diag, "include", "exclude");
        if (rc)
            return rc;
        out->enabled = true;
        out->include = json_object_get(v, "include");
        out->exclude = json_object_get(v, "exclude");
        if (!out->include && !out->exclude)
            return ag_fail(diag, AG_EINVAL, "with_payload: expected include or exclude");
        if ((out->include && !json_is_array(out->include)) ||
            (out->exclude && !json_is_array(out->exclude)))
            return ag_fail(diag, AG_EINVAL, "with_payload: include/exclude must be arrays");
    } else {
        return ag_fail(diag, AG_EINVAL,
                       "with_payload: expected a boolean, a list of keys or include/exclude");
    }
    size_t i;
    json_t *k;
    const json_t *lists[2] = {out->include, out->exclude};
    for (int l = 0; l < 2; l++) {
        json_array_foreach(lists[l], i, k)
        {
            if (!json_is_string(k) || ag_payload_path_check(json_string_value(k), NULL) != 0)
                return ag_fail(diag, AG_EINVAL, "with_payload[%zu]: expected a payload key", i);
        }
    }
    return 0;
}

int ag_parse_with_vector(const json_t *v, bool *enabled, const json_t **which, ag_diag_t *diag)
{
    *which = NULL;
    if (!v || json_is_null(v))
        return 0;
    if (json_is_boolean(v)) {
        *enabled = json_is_true(v);
        return 0;
    }
    if (!json_is_array(v))
        return ag_fail(diag, AG_EINVAL, "with_vector: expected a boolean or a list of names");
    size_t i;
    json_t *k;
    json_array_foreach(v, i, k)
    {
        if (!json_is_string(k))
            return ag_fail(diag, AG_EINVAL, "with_vector[%zu]: expected a vector name", i);
    }
    *enabled = true;
    *which = v;
    return 0;
}

int ag_parse_output(const json_t *obj, const char *vector_key, bool payload_default,
                    ag_payload_sel_t *ps, bool *with_vector, const json_t **which, ag_diag_t *diag)
{
    int rc = ag_parse_with_payload(json_object_get(obj, "with_payload"), payload_default, ps, diag);
    const json_t *wv = json_object_get(obj, vector_key);
    /* Qdrant takes "with_vectors" as another spelling of "with_vector" (not both at once). */
    if (strcmp(vector_key, "with_vector") == 0 && json_object_get(obj, "with_vectors")) {
        if (wv)
            return ag_fail(diag, AG_EINVAL,
                           "with_vectors: give with_vector or with_vectors, not "
                           "both");
        wv = json_object_get(obj, "with_vectors");
    }
    if (rc == 0)
        rc = ag_parse_with_vector(wv, with_vector, which, diag);
    return rc;
}

/* Memory: takes payload (a decoded copy, or NULL when decoding ran out of memory) and returns a
 * new object. */
static json_t *render_payload(json_t *payload, const ag_payload_sel_t *ps)
{
    if (!payload || (!ps->include && !ps->exclude))
        return payload;
    json_t *out;
    size_t i;
    json_t *k;
    if (ps->include) {
        out = json_object();
        json_array_foreach(ps->include, i, k)
        {
            /* A key with dots in its own name is taken whole first, as a plain key. */
            const json_t *whole = json_object_get(payload, json_string_value(k));
            if (whole && strchr(json_string_value(k), '.'))
                json_object_set(out, json_string_value(k), (json_t *)whole);
            else
                ag_payload_include(out, payload, json_string_value(k));
        }
        json_t *copy = json_deep_copy(out);
        json_decref(out);
        out = copy;
    } else {
        out = json_incref(payload);
    }
    json_decref(payload);
    json_array_foreach(ps->exclude, i, k)
    {
        if (json_object_get(out, json_string_value(k)))
            json_object_del(out, json_string_value(k));
        else
            ag_payload_exclude(out, json_string_value(k));
    }
    return out;
}

json_t *ag_render_point(const ag_collection_t *c, uint32_t slot, const ag_payload_sel_t *ps,
                        bool with_vector, const json_t *which, bool has_score, float score)
{
    json_t *p = json_object();
    if (!p)
        return NULL;
    json_object_set_new(p, "id", ag_id_to_json(ag_coll_id(c, slot)));
    if (has_score) {
        json_object_set_new(p, "version", json_integer(0));
        json_object_set_new(p, "score", ag_json_f32(score));
    }
    json_object_set_new(p, "payload",
                        ps->enabled ? render_payload(ag_coll_payload_json(c, slot), ps)
                                    : json_null());
    json_object_set_new(p, "vector",
                        with_vector ? ag_coll_vectors_json(c, slot, which) : json_null());
    return p;
}

/* ---- vector inputs ------------------------------------------------------------------------- */

/* One row of a dense input, already checked for its length: normalized for Cosine, converted
 * to the vector's datatype. */
static int finish_row(const ag_dense_info_t *vc, float *a, const char *path, ag_diag_t *diag)
{
    if (vc->dist == AG_DIST_COSINE)
        ag_vector_normalize(a, vc->dim);
    size_t bad = 0;
    if (ag_dtype_convert(vc->dtype, a, vc->dim, &bad) != 0)
        return ag_fail(diag, AG_EINVAL, "%s[%zu]: value is outside the float16 range", path, bad);
    return 0;
}

int ag_parse_dense_rows(ag_arena_t *arena, const ag_collection_t *c, int vi, const json_t *v,
                        const char *path, float **out, uint32_t *rows, ag_diag_t *diag)
{
    ag_dense_info_t vc;
    ag_coll_dense_info(c, vi, &vc);
    float *f;
    uint32_t n;
    *out = NULL;
    *rows = 1;
    if (json_is_array(v) && json_is_array(json_array_get(v, 0))) {
        /* A list of vectors: Qdrant's multivector form. */
        if (!vc.multi)
            return ag_fail(diag, AG_EINVAL,
                           "Wrong input: %s: a multivector (a list of vectors) was given for "
                           "`%.200s`, a dense vector without multivector_config",
                           path, vc.name[0] ? vc.name : "(unnamed)");
        size_t nr = json_array_size(v), plen = strlen(path), nlen = strlen(vc.name);
        /* Qdrant names the vector field of the point ("points[0].vector.?.data"). */
        int base = (int)plen;
        if (nlen && plen > nlen && path[plen - nlen - 1] == '.' &&
            strcmp(path + plen - nlen, vc.name) == 0)
            base = (int)(plen - nlen - 1);
        if (nr > AG_MV_MAX_ROWS)
            return ag_fail(diag, AG_EINVAL, "%s: a multivector has at most %u vectors, got %zu",
                           path, AG_MV_MAX_ROWS, nr);
        float *a = ag_arena_alloc(arena, sizeof(float) * vc.dim * nr);
        if (!a)
            return AG_ENOMEM;
        size_t first = 0;
        for (size_t r = 0; r < nr; r++) {
            const json_t *row = json_array_get(v, r);
            char rp[AG_QUERY_PATH_LEN + 32];
            snprintf(rp, sizeof(rp), "%s[%zu]", path, r);
            if (!json_is_array(row))
                return ag_fail(diag, AG_EINVAL, "%s: expected an array of numbers", rp);
            size_t len = json_array_size(row);
            if (len == 0)
                return ag_fail(diag, AG_EINVAL,
                               "Validation error in JSON body: [%.*s.?.data: all vectors must be "
                               "non-empty] (%s is empty)",
                               base, path, rp);
            if (r == 0)
                first = len;
            else if (len != first)
                return ag_fail(diag, AG_EINVAL,
                               "Validation error in JSON body: [%.*s.?.data: all vectors must "
                               "have the same dimension, found vector with dimension %zu] (%s)",
                               base, path, len, rp);
            if (len != vc.dim)
                return ag_fail(
                    diag, AG_EINVAL,
                    "Wrong input: Vector dimension error: expected dim: %u, got %zu (%s)", vc.dim,
                    len, rp);
            int rc = ag_json_floats(row, rp, &f, &n, diag);
            if (rc)
                return rc;
            float *dst = a + r * vc.dim;
            memcpy(dst, f, sizeof(float) * n);
            free(f);
            if ((rc = finish_row(&vc, dst, rp, diag)) != 0)
                return rc;
        }
        *out = a;
        *rows = (uint32_t)nr;
        return 0;
    }
    int rc = ag_json_floats(v, path, &f, &n, diag);
    if (rc)
        return rc;
    if (n != vc.dim) {
        free(f);
        return ag_fail(diag, AG_EINVAL,
                       "Wrong input: Vector dimension error: expected dim: %u, got %u (%s)", vc.dim,
                       n, path);
    }
    float *a = ag_arena_alloc(arena, sizeof(float) * n);
    if (!a) {
        free(f);
        return AG_ENOMEM;
    }
    memcpy(a, f, sizeof(float) * n);
    free(f);
    if ((rc = finish_row(&vc, a, path, diag)) != 0)
        return rc;
    *out = a;
    return 0;
}

int ag_parse_dense(ag_arena_t *arena, const ag_collection_t *c, int vi, const json_t *v,
                   const char *path, float **out, ag_diag_t *diag)
{
    uint32_t rows;
    int rc = ag_parse_dense_rows(arena, c, vi, v, path, out, &rows, diag);
    if (rc == 0 && rows != 1)
        return ag_fail(diag, AG_EINVAL, "Wrong input: %s: expected one vector, not a multivector",
                       path);
    return rc;
}

static int cmp_pair(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

int ag_parse_sparse(ag_arena_t *arena, const json_t *v, const char *path, ag_sparse_vec_t *out,
                    ag_diag_t *diag)
{
    if (!json_is_object(v))
        return ag_fail(diag, AG_EINVAL, "%s: expected {indices, values}", path);
    int rc = AG_JSON_ONLY(v, path, diag, "indices", "values");
    if (rc)
        return rc;
    json_t *ix = json_object_get(v, "indices"), *vals = json_object_get(v, "values");
    if (!json_is_array(ix) || !json_is_array(vals))
        return ag_fail(diag, AG_EINVAL, "%s: indices and values must be arrays", path);
    size_t n = json_array_size(ix);
    if (n != json_array_size(vals))
        return ag_fail(diag, AG_EUNPROCESSABLE, "%s: indices and values must have the same length",
                       path);
    if (n > AG_MAX_DIM)
        return ag_fail(diag, AG_EINVAL, "%s: too many elements", path);
    /* pairs[2*i] = index, pairs[2*i+1] = bits of the value, sorted by index together. */
    uint32_t *pairs = ag_arena_alloc(arena, sizeof(uint32_t) * 2 * (n ? n : 1));
    out->indices = ag_arena_alloc(arena, sizeof(uint32_t) * (n ? n : 1));
    out->values = ag_arena_alloc(arena, sizeof(float) * (n ? n : 1));
    if (!pairs || !out->indices || !out->values)
        return AG_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        json_t *a = json_array_get(ix, i), *b = json_array_get(vals, i);
        if (!json_is_integer(a) || json_integer_value(a) < 0 ||
            json_integer_value(a) > (json_int_t)UINT32_MAX)
            return ag_fail(diag, AG_EINVAL,
                           "%s.indices[%zu]: expected an unsigned "
                           "32-bit integer",
                           path, i);
        if (!json_is_number(b))
            return ag_fail(diag, AG_EINVAL, "%s.values[%zu]: expected a number", path, i);
        float f = (float)json_number_value(b);
        if (f != f || f - f != 0.0f)
            return ag_fail(diag, AG_EINVAL, "%s.values[%zu]: not a finite float32", path, i);
        pairs[2 * i] = (uint32_t)json_integer_value(a);
        memcpy(&pairs[2 * i + 1], &f, sizeof(float));
    }
    qsort(pairs, n, 2 * sizeof(uint32_t), cmp_pair);
    for (size_t i = 0; i < n; i++) {
        if (i > 0 && pairs[2 * i] == pairs[2 * i - 2])
            return ag_fail(diag, AG_EUNPROCESSABLE, "%s.indices: index %u is repeated", path,
                           pairs[2 * i]);
        out->indices[i] = pairs[2 * i];
        memcpy(&out->values[i], &pairs[2 * i + 1], sizeof(float));
    }
    out->n = (uint32_t)n;
    return 0;
}

json_t *ag_order_value_json(double v)
{
    if (v == floor(v) && fabs(v) < 9.2e18)
        return json_integer((json_int_t)v);
    return json_real(v);
}

/* ---- order_by ------------------------------------------------------------------------------ */

static int parse_datetime(const char *s, size_t len, double *out)
{
    int64_t us;
    int rc = ag_datetime_parse(s, len, &us);
    if (rc == 0)
        *out = (double)us / 1e6;
    return rc;
}

int ag_order_by_parse(const json_t *ob, ag_order_by_t *out, ag_diag_t *diag)
{
    memset(out, 0, sizeof(*out));
    if (json_is_string(ob)) {
        out->key = json_string_value(ob);
    } else if (json_is_object(ob)) {
        int rc = AG_JSON_ONLY(ob, "order_by", diag, "key", "direction", "start_from");
        if (rc)
            return rc;
        if ((rc = ag_json_get_str(ob, "key", "order_by", &out->key, diag)) != 0)
            return rc;
        const char *dir = NULL;
        if ((rc = ag_json_get_str(ob, "direction", "order_by", &dir, diag)) != 0)
            return rc;
        if (dir && strcmp(dir, "asc") != 0 && strcmp(dir, "desc") != 0)
            return ag_fail(diag, AG_EINVAL, "order_by.direction: expected asc or desc");
        out->desc = dir && strcmp(dir, "desc") == 0;
        json_t *sf = json_object_get(ob, "start_from");
        if (sf && !json_is_null(sf)) {
            if (json_is_number(sf)) {
                out->start = json_number_value(sf);
            } else if (!json_is_string(sf) ||
                       parse_datetime(json_string_value(sf), strlen(json_string_value(sf)),
                                      &out->start) != 0) {
                return ag_fail(diag, AG_EINVAL,
                               "order_by.start_from: expected a number or an RFC 3339 datetime");
            }
            out->has_start = true;
        }
    } else {
        return ag_fail(diag, AG_EINVAL, "order_by: expected a key or an object");
    }
    if (!out->key || ag_payload_path_check(out->key, NULL) != 0)
        return ag_fail(diag, AG_EINVAL, "order_by.key: expected a payload key");
    return 0;
}

int ag_order_by_check(ag_collection_t *c, ag_order_by_t *ob, ag_diag_t *diag)
{
    char buf[AG_INDEX_TYPE_MAX];
    const char *type = ag_coll_index_type(c, ob->key, buf);
    if (!type || (strcmp(type, "integer") != 0 && strcmp(type, "float") != 0 &&
                  strcmp(type, "datetime") != 0))
        return ag_fail(diag, AG_EINVAL,
                       "Bad request: No range index for `order_by` key `%.200s` found. Please "
                       "create one to use `order_by`.",
                       ob->key);
    ob->datetime = strcmp(type, "datetime") == 0;
    return 0;
}

typedef struct first_value {
    bool found;
    bool datetime;
    double v;
} first_value_t;

/* The smallest number (or datetime, in seconds) at the key. */
static void take_value(const json_t *v, void *ud)
{
    first_value_t *f = ud;
    double x;
    if (json_is_number(v)) {
        x = json_number_value(v);
    } else if (!f->datetime || !json_is_string(v) ||
               parse_datetime(json_string_value(v), json_string_length(v), &x) != 0) {
        return;
    }
    if (!f->found || x < f->v) {
        f->v = x;
        f->found = true;
    }
}

bool ag_order_value(const json_t *payload, const char *key, bool datetime, double *out)
{
    first_value_t fv = {false, datetime, 0};
    ag_payload_path_each(payload, key, take_value, &fv);
    *out = fv.v;
    return fv.found;
}

static int cmp_ordered_asc(const void *a, const void *b)
{
    const ag_ordered_t *x = a, *y = b;
    if (x->value != y->value)
        return x->value < y->value ? -1 : 1;
    return ag_id_cmp(x->id, y->id);
}

static int cmp_ordered_desc(const void *a, const void *b)
{
    const ag_ordered_t *x = a, *y = b;
    if (x->value != y->value)
        return x->value > y->value ? -1 : 1;
    return ag_id_cmp(x->id, y->id);
}

size_t ag_order_sort(ag_ordered_t *o, size_t n, const ag_order_by_t *ob)
{
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        if (ob->has_start && (ob->desc ? o[i].value > ob->start : o[i].value < ob->start))
            continue;
        o[m++] = o[i];
    }
    qsort(o, m, sizeof(*o), ob->desc ? cmp_ordered_desc : cmp_ordered_asc);
    return m;
}

typedef struct each_value {
    ag_ordered_t *o; /* malloc'd while collecting */
    size_t n, cap;
    uint32_t slot;
    const ag_point_id_t *id;
    bool datetime, oom;
} each_value_t;

static void add_value(const json_t *v, void *ud)
{
    each_value_t *e = ud;
    double x;
    if (json_is_number(v)) {
        x = json_number_value(v);
    } else if (!e->datetime || !json_is_string(v) ||
               parse_datetime(json_string_value(v), json_string_length(v), &x) != 0) {
        return;
    }
    if (e->oom || AG_GROW(e->o, e->cap, e->n + 1, 64, SIZE_MAX / sizeof(ag_ordered_t)) != 0) {
        e->oom = true;
        return;
    }
    e->o[e->n++] = (ag_ordered_t){e->slot, x, e->id};
}

int ag_order_slots(ag_arena_t *arena, ag_collection_t *c, const uint32_t *slots, size_t n,
                   const ag_order_by_t *ob, bool each_value, ag_ordered_t **out, size_t *nout)
{
    if (each_value) {
        /* Scroll's order_by, as Qdrant: a point holding several values appears once per value. */
        each_value_t e = {NULL, 0, 0, 0, NULL, ob->datetime, false};
        for (size_t i = 0; i < n && !e.oom; i++) {
            e.slot = slots[i];
            e.id = ag_coll_id(c, slots[i]);
            if (ag_coll_payload_each(c, slots[i], ob->key, add_value, &e) == SIZE_MAX)
                e.oom = true;
        }
        ag_ordered_t *o = e.oom ? NULL : ag_arena_calloc(arena, e.n ? e.n : 1, sizeof(*o));
        if (o && e.n)
            memcpy(o, e.o, e.n * sizeof(*o));
        free(e.o);
        if (!o)
            return AG_ENOMEM;
        *out = o;
        *nout = ag_order_sort(o, e.n, ob);
        return 0;
    }
    ag_ordered_t *o = ag_arena_calloc(arena, n ? n : 1, sizeof(*o));
    if (!o)
        return AG_ENOMEM;
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        first_value_t fv = {false, ob->datetime, 0};
        if (ag_coll_payload_each(c, slots[i], ob->key, take_value, &fv) == SIZE_MAX)
            return AG_ENOMEM;
        if (!fv.found)
            continue;
        o[m++] = (ag_ordered_t){slots[i], fv.v, ag_coll_id(c, slots[i])};
    }
    *out = o;
    *nout = ag_order_sort(o, m, ob);
    return 0;
}

/* ---- walking a scope ------------------------------------------------------------------------ */

int ag_q__each_in_scope(const ag_qctx_t *ctx, const ag_scope_t *sc, const json_t *filter_json,
                        bool (*visit)(void *ud, uint32_t slot), void *ud)
{
    uint32_t *cand;
    size_t ncand, seen = 0;
    int rc = 0;
    bool indexed = ag_scope_candidates(sc, ctx->arena, filter_json, &cand, &ncand);
    size_t total = indexed ? ncand : ag_coll_nslots(sc->c);
    for (size_t i = 0; i < total; i++) {
        if (i % AG_QUERY_DEADLINE_EVERY == 0 && (rc = ag_qctx_deadline(ctx)) != 0)
            break;
        uint32_t s = indexed ? cand[i] : (uint32_t)i;
        if (indexed && i > 0 && cand[i - 1] == s)
            continue;
        seen++;
        if (ag_scope_match(sc, s) && !visit(ud, s))
            break;
    }
    ag_scope_note_examined(seen);
    return rc;
}
